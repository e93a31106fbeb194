"""The headline workload: one char-LM training step, minigrad against its peers, side by side.

    python benchmarks/lstm_lm.py                       # LSTM at H = 64..512, GRU and RNN at 128
    python benchmarks/lstm_lm.py --cells lstm --hidden 256 --repeat 10
    python benchmarks/lstm_lm.py --cells irnn gru_rb --json results.json   # figures for scripts

Embedding(65, 64) -> recurrent layer(64, H) -> Linear(H, 65), mean cross-entropy over B*T tokens,
backward, SGD update; B=32, T=64, float32. The cells (--cells):
  lstm     LSTM
  gru      GRU, PyTorch's form: n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
  gru_rb   GRU, Cho et al.'s 2014 form: n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)
  rnn      Elman RNN, tanh
  irnn     Elman RNN, relu, W_hh = I and zero biases at the start (Le, Jaitly & Hinton 2015),
           small input weights and embedding (IRNN_INPUT_STD: plain SGD would overflow otherwise)
Peers, all from the same initial weights:
- minigrad: models.LanguageModel, the cell a plain composition of ops, BPTT = backward();
  the layer's default (the time loop as one scan node running the step's program, its gate
  arithmetic one fused kernel), the scan unfused (fuse=False: the program's ops as they are)
  and the explicit unroll (scan=False: one graph node per op per step);
- NumPy: the BPTT written by hand (benchmarks/numpy_baseline.py), zero framework overhead;
- PyTorch's fused torch.nn.LSTM/GRU/RNN, when torch is installed (an optional peer; PyTorch has
  no reset-before GRU, so gru_rb has no PyTorch column).
Before timing, each configuration checks in float64 that minigrad's loss and gradients equal
the NumPy baseline's (and PyTorch's). Timings are medians of --repeat steps, interleaved
round-robin so that machine noise hits all peers alike (PyTorch runs in its own block: its
spinning OpenMP threads would slow the next peer); compare ratios within one run.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import minigrad as mg
import minigrad.nn.functional as F
from models import LanguageModel, identity_init_

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy_baseline  # noqa: E402

B, T, E, V = 32, 64, 64, 65
# minigrad's parameter names -> the baseline's (PyTorch-style) names
NAMES = {
    "encoder.embedding.weight": "embed.weight",
    "encoder.rnn.weight_ih_l0": "rnn.weight_ih_l0",
    "encoder.rnn.weight_hh_l0": "rnn.weight_hh_l0",
    "encoder.rnn.bias_ih_l0": "rnn.bias_ih_l0",
    "encoder.rnn.bias_hh_l0": "rnn.bias_hh_l0",
    "decoder.weight": "fc.weight",
    "decoder.bias": "fc.bias",
}
LR = 0.1
# The IRNN's input scale. Plain SGD at lr 0.1 without the gradient clipping Le et al. train
# with lifts the identity recurrence's spectral radius above 1, and the relu state overflows:
# NaN within 3 steps (H = 64, 256, 512) with PyTorch's default input weights and embedding
# N(0, 1), near step 20 (H = 512) with W_ih ~ N(0, 0.001^2) alone. Small input weights and an
# embedding scaled by 0.1 (which also slows W_ih's learning, its gradient being proportional to
# the embedding) keep every value finite: 43 steps of minigrad and 300 of the NumPy BPTT in
# float32 at all three sizes.
IRNN_INPUT_STD = 1e-3
IRNN_EMBEDDING_SCALE = 0.1
CELLS = ("lstm", "gru", "gru_rb", "rnn", "irnn")
# PyTorch's layer for each cell it has (none computes the reset-before GRU): (name, kwargs)
TORCH_LAYERS = {
    "lstm": ("LSTM", {}),
    "gru": ("GRU", {}),
    "rnn": ("RNN", {}),
    "irnn": ("RNN", {"nonlinearity": "relu"}),
}


def make_minigrad(cell, H, dtype, fuse=True, scan=True):
    previous = mg.get_default_dtype()
    mg.set_default_dtype(dtype)
    try:
        mg.manual_seed(0)
        lm_cell = {"gru_rb": "gru", "irnn": "rnn_relu"}.get(cell, cell)
        model = LanguageModel(V, E, H, cell=lm_cell)
        if cell == "irnn":  # W_hh = I and zero biases after construction, as Le et al.
            identity_init_(model.encoder.rnn, input_std=IRNN_INPUT_STD)
            with mg.no_grad():
                model.encoder.embedding.weight.data *= IRNN_EMBEDDING_SCALE
    finally:
        mg.set_default_dtype(previous)
    if cell == "gru_rb":
        # LanguageModel passes no GRU options on; both forms have the same parameters and the
        # layer reads the flag at each step, so switching it before the first step gives Cho et
        # al.'s form (check_equal holds it to the NumPy baseline's reset-before equations).
        model.encoder.rnn.reset_after = False
    model.encoder.rnn.fuse = fuse
    model.encoder.rnn.scan = scan
    params = {NAMES[k]: np.array(v) for k, v in model.state_dict().items()}
    return model, params


def minigrad_loss(model, tokens, targets):
    logits, _ = model(tokens)
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))


def minigrad_step(model, tokens, targets):
    loss = minigrad_loss(model, tokens, targets)
    for p in model.parameters():
        p.grad = None
    loss.backward()
    with mg.no_grad():
        for p in model.parameters():
            p.data -= LR * p.grad
    return loss


def numpy_loss_and_grads(cell, p, tokens, targets, H, dtype):
    """The hand-written BPTT of `cell` from a zero state: (loss, gradients by parameter name)."""
    h0 = np.zeros((B, H), dtype)
    if cell == "lstm":
        loss, grads, _ = numpy_baseline.lstm_lm(p, tokens, targets, h0, h0)
    elif cell in ("gru", "gru_rb"):
        loss, grads, _ = numpy_baseline.gru_lm(p, tokens, targets, h0, reset_after=cell == "gru")
    else:
        nonlinearity = "relu" if cell == "irnn" else "tanh"
        loss, grads, _ = numpy_baseline.rnn_lm(p, tokens, targets, h0, nonlinearity)
    return loss, grads


def numpy_step(cell, p, tokens, targets, H, dtype):
    loss, grads = numpy_loss_and_grads(cell, p, tokens, targets, H, dtype)
    numpy_baseline.sgd_step(p, grads, LR)
    return loss, grads


def make_torch(cell, params, dtype):
    import torch

    torch.set_num_threads(2)
    name, options = TORCH_LAYERS[cell]
    layer = getattr(torch.nn, name)
    H = params["rnn.weight_hh_l0"].shape[1]
    tdtype = torch.float64 if dtype == np.float64 else torch.float32

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(V, E)
            self.rnn = layer(E, H, **options)
            self.fc = torch.nn.Linear(H, V)

        def forward(self, x):
            out, _ = self.rnn(self.embed(x))
            return self.fc(out)

    model = LM().to(tdtype)
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()})
    return model


def torch_step(model, tokens, targets):
    import torch

    model.zero_grad(set_to_none=True)
    logits = model(tokens)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= LR * p.grad
    return loss


def have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def check_equal(cell, H, use_torch, fuse=True) -> float:
    """Max abs difference of loss and gradients, minigrad vs NumPy (and torch), in float64."""
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, V, (T, B))
    targets = rng.integers(0, V, (T, B))
    model, params = make_minigrad(cell, H, mg.float64, fuse)
    mg_loss = minigrad_loss(model, tokens, targets)
    mg_loss.backward()
    loss = mg_loss.item()
    ref_loss, ref_grads = numpy_loss_and_grads(cell, params, tokens, targets, H, np.float64)
    worst = abs(loss - ref_loss)
    grads = {NAMES[n]: p.grad for n, p in model.named_parameters()}
    for name, g in ref_grads.items():
        worst = max(worst, float(np.abs(grads[name] - g).max()))
    if use_torch and cell in TORCH_LAYERS:
        import torch

        tmodel = make_torch(cell, params, np.float64)
        tloss = torch.nn.functional.cross_entropy(
            tmodel(torch.from_numpy(tokens)).reshape(-1, V), torch.from_numpy(targets).reshape(-1)
        )
        tloss.backward()
        worst = max(worst, abs(tloss.item() - loss))
        for name, p in tmodel.named_parameters():
            worst = max(worst, float(np.abs(grads[name] - p.grad.numpy()).max()))
    return worst


def time_peers(cell, H, repeat, use_torch, clock=time.perf_counter):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, V, (T, B))
    targets = rng.integers(0, V, (T, B))
    model, params = make_minigrad(cell, H, mg.float32)
    unfused, _ = make_minigrad(cell, H, mg.float32, fuse=False)
    unrolled, _ = make_minigrad(cell, H, mg.float32, scan=False)
    peers = {
        "minigrad": lambda: minigrad_step(model, tokens, targets),
        "unrolled": lambda: minigrad_step(unrolled, tokens, targets),
        "unfused": lambda: minigrad_step(unfused, tokens, targets),
        "numpy": lambda: numpy_step(cell, params, tokens, targets, H, np.float32),
    }
    times = {name: [] for name in peers}
    for step in peers.values():  # warm-up: compile kernels, fill caches
        for _ in range(3):
            step()
    names = list(peers)
    for r in range(repeat):  # round-robin, each round starting with the next peer
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t = clock()
            peers[name]()
            times[name].append(clock() - t)
    result = {name: float(np.median(ts) * 1e3) for name, ts in times.items()}
    if use_torch and cell in TORCH_LAYERS:
        # PyTorch on its own, after the others: its OpenMP threads keep spinning on both cores
        # after each call, which slowed whichever peer ran next by up to 1.5-2x.
        import torch

        tmodel = make_torch(cell, {k: v.copy() for k, v in params.items()}, np.float32)
        tt, ty = torch.from_numpy(tokens), torch.from_numpy(targets)
        ts = []
        for i in range(repeat + 3):
            t = time.perf_counter()
            torch_step(tmodel, tt, ty)
            if i >= 3:
                ts.append(time.perf_counter() - t)
        result["torch"] = float(np.median(ts) * 1e3)
    return result


def table_header(use_torch):
    header = "| cell | H | minigrad ms | unrolled ms | scan unfused ms | NumPy BPTT ms "
    header += "| minigrad / NumPy | minigrad / unrolled |"
    rule = "|---|---|---|---|---|---|---|---|"
    if use_torch:
        header += " torch fused ms | minigrad / torch |"
        rule += "---|---|"
    header += " tokens/s (minigrad) | max diff float64 |"
    rule += "---|---|"
    return [header, rule]


def ratios(t):
    """minigrad's time over each reference peer's, of those that ran."""
    out = {"minigrad/numpy": t["minigrad"] / t["numpy"]}
    out["minigrad/unrolled"] = t["minigrad"] / t["unrolled"]
    if "torch" in t:
        out["minigrad/torch"] = t["minigrad"] / t["torch"]
    return out


def table_row(cell, H, t, diff, use_torch):
    r = ratios(t)
    row = f"| {cell} | {H} | {t['minigrad']:.1f} | {t['unrolled']:.1f} | {t['unfused']:.1f} "
    row += f"| {t['numpy']:.1f} | {r['minigrad/numpy']:.2f} | {r['minigrad/unrolled']:.2f} |"
    if use_torch:  # a cell PyTorch has no layer for gets a dash, not a figure
        if "torch" in t:
            row += f" {t['torch']:.1f} | {r['minigrad/torch']:.2f} |"
        else:
            row += " — | — |"
    row += f" {B * T / t['minigrad'] * 1e3:,.0f} | {diff:.1e} |"
    return row


def json_record(cell, H, t, diff, clock_kind, repeat):
    """One row's measured figures for other scripts: milliseconds per step by peer (median)."""
    return {
        "cell": cell,
        "H": H,
        "ms": dict(t),
        "ratios": ratios(t),
        "tokens_per_s": B * T / t["minigrad"] * 1e3,
        "max_diff_float64": diff,
        "clock": clock_kind,
        "repeat": repeat,
    }


def write_json(path, records, repeat, clock_kind):
    document = {
        "workload": {"B": B, "T": T, "E": E, "V": V, "dtype": "float32", "lr": LR},
        "clock": clock_kind,
        "repeat": repeat,
        "machine": platform.processor() or platform.machine(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "malloc_tuned": bool(mg.allocator.tuned),
        "rows": records,
    }
    Path(path).write_text(json.dumps(document, indent=2) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cells", nargs="+", default=None, choices=CELLS)
    p.add_argument("--hidden", nargs="+", type=int, default=None)
    p.add_argument("--repeat", type=int, default=20, help="timed steps per peer (median)")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument(
        "--cpu",
        action="store_true",
        help="time CPU seconds of this process, not wall-clock: with OPENBLAS_NUM_THREADS=1 "
        "the cost of a step whatever else loads a shared machine (PyTorch is left out)",
    )
    p.add_argument(
        "--json",
        metavar="PATH",
        help="also write every row's figures to PATH as JSON (rewritten after each row)",
    )
    args = p.parse_args(argv)
    clock = time.process_time if args.cpu else time.perf_counter
    clock_kind = "cpu" if args.cpu else "wall"
    if args.cpu:
        args.no_torch = True
    use_torch = have_torch() and not args.no_torch
    if args.cells is None and args.hidden is None:
        configs = [("lstm", h) for h in (64, 128, 256, 512)] + [("gru", 128), ("rnn", 128)]
    else:
        configs = [(c, h) for c in (args.cells or ["lstm"]) for h in (args.hidden or [128])]

    lines = table_header(use_torch)
    for line in lines:
        print(line, flush=True)
    records = []
    for cell, H in configs:
        diff = max(check_equal(cell, H, use_torch), check_equal(cell, H, use_torch, False))
        t = time_peers(cell, H, args.repeat, use_torch, clock)
        lines.append(table_row(cell, H, t, diff, use_torch))
        print(lines[-1], flush=True)
        records.append(json_record(cell, H, t, diff, clock_kind, args.repeat))
        if args.json:
            write_json(args.json, records, args.repeat, clock_kind)
    note = (
        f"\n{platform.processor() or platform.machine()}, {mg.__name__} on NumPy "
        f"{np.__version__}, Python {platform.python_version()}; B={B}, T={T}, E={E}, V={V}, "
        f"float32, median of {args.repeat} steps ({'CPU' if args.cpu else 'wall-clock'} time); "
        "malloc keeps freed memory: "
        f"{mg.allocator.tuned}."
    )
    print(note)
    return lines


if __name__ == "__main__":
    main()
