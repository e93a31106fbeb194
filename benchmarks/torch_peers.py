"""The char-LM step against every way PyTorch runs an LSTM, each peer in its own process,
with a roofline: each peer's achieved GFLOP/s against the measured GEMM floor of the step.

    python benchmarks/torch_peers.py --hidden 64 256 --rounds 3 --steps 10
    python benchmarks/torch_peers.py --hidden 64 --compile      # adds the torch.compile peers

The workload of benchmarks/lstm_lm.py (Embedding(65, 64) -> LSTM(64, H) -> Linear(H, 65),
B=32, T=64, float32, mean cross-entropy, backward, SGD), from the same initial weights. Peers:
  minigrad        models.LSTM, the cell a plain composition of ops, fused (the default: the
                  time loop as one scan node)
  minigrad_unrolled  the same with scan=False: the explicit unroll, one graph node per op per step
  numpy           the BPTT written by hand (benchmarks/numpy_baseline.py)
  torch_eager     the same cell written as torch ops, a Python loop over T
  torch_script    that cell under torch.jit.script
  torch_compile   that cell under torch.compile            (--compile: minutes to compile)
  torch_compile_seq  the whole loop over T under torch.compile  (--compile)
  torch_lstm      torch.nn.LSTM: PyTorch's fused C++ layer
Every peer runs in a fresh process (PyTorch's OpenMP threads spin against OpenBLAS's and slow
NumPy in the same process), --rounds times in rotating order; each process times --steps steps
after warm-up and reports their median; the table gives the median over rounds. Before timing,
each peer's loss and gradients are checked in float64 against the NumPy baseline.

Roofline: the step's matrix products are listed with their exact shapes (forward, backward,
and the weight gradients as one product over T*B rows, as both minigrad and the NumPy baseline
compute them) and timed alone, in their own process, with NumPy and with PyTorch: the sum is
the GEMM floor of the step on this machine. "GFLOP/s" is the step's matmul FLOPs over its time;
"floor / step" is how close a peer comes to doing nothing but those products.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
B, T, E, V = 32, 64, 64, 65
LR = 0.1
PEERS = ["minigrad", "minigrad_unrolled", "numpy", "torch_eager", "torch_script", "torch_lstm"]
COMPILED = ["torch_compile", "torch_compile_seq"]


def matmul_shapes(H, G=4):
    """(m, k, n) of every matrix product of one step: (m, k) @ (k, n)."""
    TB = T * B
    forward = [(TB, E, G * H)] + [(B, H, G * H)] * T + [(TB, H, V)]
    backward = [(V, TB, H), (TB, V, H)]  # head: weight gradient, input gradient
    backward += [(B, G * H, H)] * T  # dh through W_hh at every step
    backward += [(G * H, TB, H), (G * H, TB, E), (TB, G * H, E)]  # dW_hh, dW_ih, dx
    return forward + backward


def step_flops(H) -> float:
    return float(sum(2 * m * k * n for m, k, n in matmul_shapes(H)))


# ----- the peers, each run in its own process (--run) -----------------------------------------
def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))


def _minigrad_peer(params, H, dtype, scan=True):
    sys.path.insert(0, str(HERE))
    import lstm_lm

    import minigrad as mg

    dtype = mg.float64 if dtype == "float64" else mg.float32
    model, _ = lstm_lm.make_minigrad("lstm", H, dtype, scan=scan)
    names = {v: k for k, v in lstm_lm.NAMES.items()}
    model.load_state_dict({names[k]: v for k, v in params.items()})

    def step(tokens, targets, update=True):
        loss = lstm_lm.minigrad_loss(model, tokens, targets)
        for p in model.parameters():
            p.grad = None
        loss.backward()
        grads = {lstm_lm.NAMES[n]: p.grad for n, p in model.named_parameters()}
        if update:
            with mg.no_grad():
                for p in model.parameters():
                    p.data -= LR * p.grad
        return loss.item(), grads

    return step


def _numpy_peer(params, H, dtype):
    sys.path.insert(0, str(HERE))
    import numpy_baseline

    p = dict(params)

    def step(tokens, targets, update=True):
        h0 = np.zeros((B, H), p["rnn.weight_hh_l0"].dtype)
        loss, grads, _ = numpy_baseline.lstm_lm(p, tokens, targets, h0, h0)
        if update:
            numpy_baseline.sgd_step(p, grads, LR)
        return float(loss), grads

    return step


def _torch_peer(kind, params, H, dtype):
    import torch

    tdtype = torch.float64 if dtype == "float64" else torch.float32
    w = {k: torch.tensor(v, dtype=tdtype, requires_grad=True) for k, v in params.items()}

    def cell(gi, h, c, w_hh):
        i, f, g, o = (gi + h @ w_hh.t()).chunk(4, 1)
        i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
        c = f * c + i * g
        return o * c.tanh(), c

    if kind == "torch_script":
        cell = torch.jit.script(cell)
    elif kind == "torch_compile":
        cell = torch.compile(cell)

    def sequence(gi, h, c, w_hh):
        outs = []
        for t in range(gi.shape[0]):
            h, c = cell(gi[t], h, c, w_hh)
            outs.append(h)
        return torch.stack(outs)

    if kind == "torch_compile_seq":
        sequence = torch.compile(sequence)
    lstm = None
    if kind == "torch_lstm":
        lstm = torch.nn.LSTM(E, H).to(tdtype)
        with torch.no_grad():
            for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
                getattr(lstm, name).copy_(w["rnn." + name])
        w.update({"rnn." + n: p for n, p in lstm.named_parameters()})

    def step(tokens, targets, update=True):
        tokens, targets = torch.from_numpy(tokens), torch.from_numpy(targets)
        for p in w.values():
            p.grad = None
        x = w["embed.weight"][tokens]
        if lstm is not None:
            hs, _ = lstm(x)
        else:
            gi = x @ w["rnn.weight_ih_l0"].t() + w["rnn.bias_ih_l0"] + w["rnn.bias_hh_l0"]
            h0 = torch.zeros(B, H, dtype=tdtype)
            hs = sequence(gi, h0, h0, w["rnn.weight_hh_l0"])
        logits = hs @ w["fc.weight"].t() + w["fc.bias"]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
        loss.backward()
        if update:
            with torch.no_grad():
                for p in w.values():
                    p -= LR * p.grad
        return loss.item(), {k: p.grad.numpy() for k, p in w.items()}

    return step


def run_peer(peer, H, weights, steps, dtype, threads):
    """In this process: check (float64: loss and gradients) or time one peer."""
    params = {k: v.astype(dtype) for k, v in np.load(weights).items()}
    if peer.startswith("torch"):
        import torch

        torch.set_num_threads(threads)
        step = _torch_peer(peer, params, H, dtype)
    elif peer == "numpy":
        step = _numpy_peer(params, H, dtype)
    else:
        step = _minigrad_peer(params, H, dtype, scan=peer != "minigrad_unrolled")
    tokens, targets = _data()
    if dtype == "float64":
        loss, grads = step(tokens, targets, update=False)
        return {"loss": loss, "grads": {k: np.asarray(g).tolist() for k, g in grads.items()}}
    for _ in range(3):  # trace, compile, warm the caches
        step(tokens, targets)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step(tokens, targets)
        times.append(time.perf_counter() - t)
    return {"ms": float(np.median(times) * 1e3)}


def run_gemm_floor(H, library, threads, repeat=20):
    """Seconds for one step's matrix products, each timed alone (median of repeat)."""
    counts = {}
    for shape in matmul_shapes(H):
        counts[shape] = counts.get(shape, 0) + 1
    total = 0.0
    if library == "torch":
        import torch

        torch.set_num_threads(threads)
    for (m, k, n), count in counts.items():
        a = np.random.default_rng(0).standard_normal((m, k)).astype(np.float32)
        b = np.random.default_rng(1).standard_normal((k, n)).astype(np.float32)
        if library == "torch":
            a, b = torch.from_numpy(a), torch.from_numpy(b)
        times = []
        for i in range(repeat + 3):
            t = time.perf_counter()
            a @ b
            if i >= 3:
                times.append(time.perf_counter() - t)
        total += float(np.median(times)) * count
    return {"ms": total * 1e3}


# ----- the driver ---------------------------------------------------------------------------
def _spawn(args, threads):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    env["MKL_NUM_THREADS"] = str(threads)
    out = subprocess.run(
        [sys.executable, __file__, *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def check(peers, H, weights, threads):
    ref = _spawn(["--run", "numpy", "--hidden", str(H), "--weights", weights, "--dtype",
                  "float64"], threads)  # fmt: skip
    worst = 0.0
    for peer in peers:
        if peer == "numpy":
            continue
        got = _spawn(["--run", peer, "--hidden", str(H), "--weights", weights, "--dtype",
                      "float64"], threads)  # fmt: skip
        diff = abs(got["loss"] - ref["loss"])
        for k, g in ref["grads"].items():
            diff = max(diff, float(np.abs(np.asarray(got["grads"][k]) - np.asarray(g)).max()))
        worst = max(worst, diff)
    return worst


def initial_weights(H, path):
    sys.path.insert(0, str(HERE))
    import lstm_lm

    import minigrad as mg

    _, params = lstm_lm.make_minigrad("lstm", H, mg.float64)
    np.savez(path, **params)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads of every peer")
    ap.add_argument("--compile", action="store_true", help="add the torch.compile peers")
    ap.add_argument("--peers", nargs="+", default=None, help="a subset of the peers")
    ap.add_argument("--run", help=argparse.SUPPRESS)  # inside a peer's process
    ap.add_argument("--gemm", help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    ap.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.run:
        result = run_peer(
            args.run, args.hidden[0], args.weights, args.steps, args.dtype, args.threads
        )
        print(json.dumps(result))
        return
    if args.gemm:
        print(json.dumps(run_gemm_floor(args.hidden[0], args.gemm, args.threads)))
        return
    peers = args.peers or PEERS + (COMPILED if args.compile else [])
    header = "| H | " + " | ".join(peers) + " | GEMM floor NumPy | GEMM floor torch |"
    print(f"ms per step (median of {args.rounds} rounds x {args.steps} steps, {args.threads} "
          "thread(s) each); ratios to minigrad in parentheses\n")  # fmt: skip
    print(header)
    print("|---" * (len(peers) + 3) + "|")
    roofline = []
    with tempfile.TemporaryDirectory() as tmp:
        for H in args.hidden:
            weights = os.path.join(tmp, f"w{H}.npz")
            initial_weights(H, weights)
            diff = check(peers, H, weights, args.threads)
            times = {p: [] for p in peers + ["gemm_numpy", "gemm_torch"]}
            for r in range(args.rounds):
                order = peers[r % len(peers) :] + peers[: r % len(peers)]
                for peer in order:
                    got = _spawn(["--run", peer, "--hidden", str(H), "--weights", weights,
                                  "--steps", str(args.steps)], args.threads)  # fmt: skip
                    times[peer].append(got["ms"])
                for lib in ("numpy", "torch"):
                    got = _spawn(["--gemm", lib, "--hidden", str(H)], args.threads)
                    times[f"gemm_{lib}"].append(got["ms"])
            ms = {p: float(np.median(v)) for p, v in times.items()}
            base = ms.get("minigrad", ms[peers[0]])
            cells = [f"{ms[p]:.1f} ({ms[p] / base:.2f})" for p in peers]
            floors = [f"{ms['gemm_numpy']:.1f}", f"{ms['gemm_torch']:.1f}"]
            print(f"| {H} | " + " | ".join(cells + floors) + f" |  max diff float64 {diff:.1e}")
            flops = step_flops(H)
            floor = min(ms["gemm_numpy"], ms["gemm_torch"])
            roofline.append((H, flops, floor, {p: ms[p] for p in peers}))
    print("\nRoofline: achieved GFLOP/s of the step's matmul FLOPs (floor / step time)\n")
    print("| H | GFLOP per step | floor GFLOP/s | " + " | ".join(peers) + " |")
    print("|---" * (len(peers) + 3) + "|")
    for H, flops, floor, ms in roofline:
        cells = [f"{flops / ms[p] / 1e6:.0f} ({floor / ms[p]:.2f})" for p in peers]
        print(
            f"| {H} | {flops / 1e9:.2f} | {flops / floor / 1e6:.0f} | " + " | ".join(cells) + " |"
        )


if __name__ == "__main__":
    main()
