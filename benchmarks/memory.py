"""Peak memory and time of one LSTM-LM training step against T, with and without checkpointing.

    python benchmarks/memory.py [--lengths 64 256 1024 4096] [--hidden 256]

The char-LM of benchmarks/lstm_lm.py (B=32, E=64, H=256, V=65, float32), forward + backward at
sequence length T. Peak memory is what tracemalloc saw NumPy allocate during the step (NumPy
reports its buffers to tracemalloc), above what was allocated before it. "checkpointed" sets
the LSTM's checkpoint_every to round(sqrt(T)). The gradients of both are checked equal.

    python benchmarks/memory.py --fusion --lengths 512

instead compares plain BPTT on the layer's two routes: the loop as one scan node (the default,
its gate arithmetic fused; and op by op, fuse=False) and the explicit unroll (scan=False), the
peaks of forward and backward apart.
"""

import argparse
import math
import time
import tracemalloc

import numpy as np

import minigrad as mg
import minigrad.nn.functional as F
from models import LanguageModel

B, E, V = 32, 64, 65


def step(model, tokens, targets):
    for p in model.parameters():
        p.grad = None
    logits, _ = model(tokens)
    loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    loss.backward()


def measure(model, tokens, targets, every):
    model.encoder.rnn.checkpoint_every = every
    step(model, tokens, targets)  # warm-up (kernels compiled, caches filled)
    tracemalloc.start()
    t = time.perf_counter()
    step(model, tokens, targets)
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    grads = [p.grad.numpy().copy() for p in model.parameters()]
    return peak, seconds, grads


def phase_peaks(model, tokens, targets):
    """Peak MiB traced during the forward and during the backward (both above the start)."""
    step(model, tokens, targets)  # warm-up
    for p in model.parameters():
        p.grad = None
    tracemalloc.start()
    logits, _ = model(tokens)
    loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    forward = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    loss.backward()
    backward = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return forward / 2**20, backward / 2**20


def compare_fusion(lengths, hidden):
    """Peaks of plain BPTT: the layer's loop as one scan node (the default), the same scan op
    by op (fuse=False), and the explicit unroll (scan=False, one node per op per step)."""
    variants = {"scan": (True, True), "scan unfused": (False, True), "unrolled": (True, False)}
    head = " | ".join(f"{name} forward / backward peak MiB" for name in variants)
    print(f"| T | {head} | scan / unrolled (step peak) | scan unfused / unrolled |")
    print("|---|" + "---|" * (len(variants) + 2))
    rng = np.random.default_rng(0)
    for T in lengths:
        tokens, targets = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
        peaks = []
        for fuse, scan in variants.values():
            mg.manual_seed(0)
            model = LanguageModel(V, E, hidden)
            model.encoder.rnn.fuse, model.encoder.rnn.scan = fuse, scan
            peaks.append(phase_peaks(model, tokens, targets))
        cells = " | ".join(f"{f:.1f} / {b:.1f}" for f, b in peaks)
        scan_peak, unfused_peak, unrolled_peak = (max(p) for p in peaks)
        print(
            f"| {T} | {cells} | {scan_peak / unrolled_peak:.2f} | "
            f"{unfused_peak / unrolled_peak:.2f} |",
            flush=True,
        )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--lengths", nargs="+", type=int, default=[64, 256, 1024, 4096])
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--fusion", action="store_true", help="plain BPTT, fused against unfused")
    args = p.parse_args(argv)
    if args.fusion:
        compare_fusion(args.lengths, args.hidden)
        return
    mg.manual_seed(0)
    model = LanguageModel(V, E, args.hidden)
    rng = np.random.default_rng(0)
    print(
        "| T | plain BPTT peak MiB | plain s/step | checkpoint every | checkpointed peak MiB "
        "| checkpointed s/step | memory ratio | time ratio | max grad diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for T in args.lengths:
        tokens = rng.integers(0, V, (T, B))
        targets = rng.integers(0, V, (T, B))
        every = max(1, round(math.sqrt(T)))
        peak0, t0, g0 = measure(model, tokens, targets, None)
        peak1, t1, g1 = measure(model, tokens, targets, every)
        diff = max(float(np.abs(a - b).max()) for a, b in zip(g0, g1, strict=True))
        print(
            f"| {T} | {peak0 / 2**20:.1f} | {t0:.2f} | {every} | {peak1 / 2**20:.1f} | "
            f"{t1:.2f} | {peak1 / peak0:.2f} | {t1 / t0:.2f} | {diff:.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
