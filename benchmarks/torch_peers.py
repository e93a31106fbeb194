"""The char-LM step against every way PyTorch runs an LSTM or a GRU, each peer in its own
process, with a roofline: each peer's achieved GFLOP/s against the measured GEMM floor.

    python benchmarks/torch_peers.py --hidden 64 256 --rounds 3 --steps 10
    python benchmarks/torch_peers.py --cell gru --hidden 64 256
    python benchmarks/torch_peers.py --hidden 64 --compile      # adds the torch.compile peers
    python benchmarks/torch_peers.py --hidden 64 --custom       # adds two cells no library ships
    python benchmarks/torch_peers.py --hidden 64 --json out.json  # every number, for a driver

The workload of benchmarks/lstm_lm.py (Embedding(65, 64) -> LSTM or GRU(64, H) -> Linear(H, 65),
B=32, T=64, float32, mean cross-entropy, backward, SGD), from the same initial weights. Peers
(--cell lstm|gru; the GRU in PyTorch's form r, z, n with n = tanh(W_in x + b_in + r * (W_hn h +
b_hn))):
  minigrad        models.LSTM / models.GRU, the cell a plain composition of ops, fused (the
                  default: the time loop as one scan node)
  minigrad_unrolled  the same with scan=False: the explicit unroll, one graph node per op per step
  numpy           the BPTT written by hand (benchmarks/numpy_baseline.py)
  torch_eager     the same cell written as torch ops, a Python loop over T
  torch_script    that cell under torch.jit.script
  torch_compile   that cell under torch.compile            (--compile: minutes to compile)
  torch_compile_seq  the whole loop over T under torch.compile  (--compile)
  torch_lstm / torch_gru  torch.nn.LSTM / torch.nn.GRU: PyTorch's fused C++ layer
With --custom (LSTM only), two LSTM variants that no library ships as a layer, a peephole LSTM
and a layer-normalised LSTM, each written as plain minigrad ops in a step function and run by
`mg.fuse(step).scan(...)` (benchmarks/custom_cells.py has their equations): their ratio to
minigrad's LSTM and to torch.nn.LSTM answers whether a cell of one's own runs as fast as a
library's LSTM of the same size.

Every peer runs in a fresh process (PyTorch's OpenMP threads spin against OpenBLAS's and slow
NumPy in the same process), --rounds times in rotating order; each process times --steps steps
after warm-up and reports their median; the table gives the median over rounds. Before timing,
each peer's loss and gradients are checked in float64 against the NumPy baseline; a custom
cell's against its twin written in torch ops (the same equations and weights, PyTorch's own
layer_norm), every gradient of both compared.

Roofline: the step's matrix products are listed with their exact shapes (forward, backward,
and the weight gradients as one product over T*B rows, as both minigrad and the NumPy baseline
compute them) and timed alone, in their own process, with NumPy and with PyTorch: the sum is
the GEMM floor of the step on this machine. "GFLOP/s" is the step's matmul FLOPs over its time;
"floor / step" is how close a peer comes to doing nothing but those products.

--json PATH writes every number measured (per H: each peer's ms per round and their median, the
seconds each peer's process took, the GEMM floors, the step's GFLOP, each peer's float64 max
difference and what it was checked against), rewritten after each H.
"""

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import custom_cells  # noqa: E402
from custom_cells import CUSTOM, EXTRA_KEYS, PEEPHOLE_KEYS, TWINS  # noqa: E402, F401

B, T, E, V = 32, 64, 64, 65
LR = 0.1
GATES = {"lstm": 4, "gru": 3}
COMPILED = ["torch_compile", "torch_compile_seq"]
# The weights every LSTM/GRU peer reads (PyTorch's names; lstm_lm.NAMES maps minigrad's here).
LAYER_KEYS = (
    "embed.weight",
    "rnn.weight_ih_l0",
    "rnn.weight_hh_l0",
    "rnn.bias_ih_l0",
    "rnn.bias_hh_l0",
    "fc.weight",
    "fc.bias",
)


def base_peers(cell):
    return [
        "minigrad",
        "minigrad_unrolled",
        "numpy",
        "torch_eager",
        "torch_script",
        f"torch_{cell}",
    ]


def known_peers(cell):
    return base_peers(cell) + COMPILED + (CUSTOM if cell == "lstm" else [])


def choose_peers(cell, compiled=False, custom=False, subset=None):
    """The peers to time: a subset as named, else the base ones plus those asked for."""
    if custom and cell != "lstm":
        raise ValueError("--custom: the custom cells are LSTM variants (use --cell lstm)")
    if subset:
        unknown = [p for p in subset if p not in known_peers(cell)]
        if unknown:
            raise ValueError(f"unknown peer(s) {unknown} for --cell {cell}: {known_peers(cell)}")
        return list(subset)
    return base_peers(cell) + (COMPILED if compiled else []) + (CUSTOM if custom else [])


def matmul_shapes(H, G=4):
    """(m, k, n) of every matrix product of one step: (m, k) @ (k, n); G = 4 (LSTM) or 3 (GRU).

    The two cells make the same products, G gate blocks wide: the GRU's W_hn h + b_hn is part
    of the step's h @ W_hh^T, and its backward sends all 3H gate gradients through W_hh at once.
    """
    TB = T * B
    forward = [(TB, E, G * H)] + [(B, H, G * H)] * T + [(TB, H, V)]
    backward = [(V, TB, H), (TB, V, H)]  # head: weight gradient, input gradient
    backward += [(B, G * H, H)] * T  # dh through W_hh at every step
    backward += [(G * H, TB, H), (G * H, TB, E), (TB, G * H, E)]  # dW_hh, dW_ih, dx
    return forward + backward


def step_flops(H, G=4) -> float:
    return float(sum(2 * m * k * n for m, k, n in matmul_shapes(H, G)))


# ----- the peers, each run in its own process (--run) -----------------------------------------
def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))


def _minigrad_peer(cell, params, H, dtype, scan=True):
    sys.path.insert(0, str(HERE))
    import lstm_lm

    import minigrad as mg

    dtype = mg.float64 if dtype == "float64" else mg.float32
    model, _ = lstm_lm.make_minigrad(cell, H, dtype, scan=scan)
    names = {v: k for k, v in lstm_lm.NAMES.items()}
    model.load_state_dict({names[k]: v for k, v in params.items()})

    def loss_of(tokens, targets):
        return lstm_lm.minigrad_loss(model, tokens, targets)

    named = {lstm_lm.NAMES[n]: p for n, p in model.named_parameters()}
    return _minigrad_training_step(loss_of, named)


def _minigrad_training_step(loss_of, named):
    """step(tokens, targets, update) -> (loss, {name: gradient}) for minigrad tensors `named`."""
    import minigrad as mg

    def step(tokens, targets, update=True):
        loss = loss_of(tokens, targets)
        for p in named.values():
            p.grad = None
        loss.backward()
        if update:
            with mg.no_grad():
                for p in named.values():
                    p.data -= LR * p.grad
        return loss.item(), {k: p.grad for k, p in named.items()}

    return step


def _minigrad_custom_peer(peer, params, H, dtype):
    """A custom LSTM cell (custom_cells.py): plain minigrad ops, the time loop one scan node."""
    return _minigrad_training_step(*custom_cells.minigrad_loss(peer, params, H, dtype, B, V))


def _numpy_peer(cell, params, H):
    sys.path.insert(0, str(HERE))
    import numpy_baseline

    p = dict(params)

    def step(tokens, targets, update=True):
        h0 = np.zeros((B, H), p["rnn.weight_hh_l0"].dtype)
        if cell == "gru":
            loss, grads, _ = numpy_baseline.gru_lm(p, tokens, targets, h0)
        else:
            loss, grads, _ = numpy_baseline.lstm_lm(p, tokens, targets, h0, h0)
        if update:
            numpy_baseline.sgd_step(p, grads, LR)
        return float(loss), grads

    return step


def _torch_cells(torch):
    """name -> (cell(x_t, *state, *weights) -> new state tuple, the recurrent weights' keys,
    the gate input for all T steps from the embedded tokens); the custom cells' twins too."""

    def lstm_cell(gi, h, c, w_hh):
        i, f, g, o = (gi + h @ w_hh.t()).chunk(4, 1)
        i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
        c = f * c + i * g
        return o * c.tanh(), c

    def gru_cell(gi, h, w_hh, b_hh):
        i_r, i_z, i_n = gi.chunk(3, 1)
        h_r, h_z, h_n = (h @ w_hh.t() + b_hh).chunk(3, 1)
        r = (i_r + h_r).sigmoid()
        z = (i_z + h_z).sigmoid()
        n = (i_n + r * h_n).tanh()
        return ((1 - z) * n + z * h,)

    def lstm_input(w, x):
        return x @ w["rnn.weight_ih_l0"].t() + w["rnn.bias_ih_l0"] + w["rnn.bias_hh_l0"]

    def gru_input(w, x):  # b_hn stays inside r * (...): b_hh is the cell's
        return x @ w["rnn.weight_ih_l0"].t() + w["rnn.bias_ih_l0"]

    return {
        "lstm": (lstm_cell, ("rnn.weight_hh_l0",), lstm_input),
        "gru": (gru_cell, ("rnn.weight_hh_l0", "rnn.bias_hh_l0"), gru_input),
        **custom_cells.torch_twins(torch, lstm_input),
    }


def _torch_peer(kind, cell, params, H, dtype):
    import torch

    tdtype = torch.float64 if dtype == "float64" else torch.float32
    w = {k: torch.tensor(v, dtype=tdtype, requires_grad=True) for k, v in params.items()}
    twin = kind in TWINS.values()
    step_cell, recurrent_keys, gate_input = _torch_cells(torch)[kind if twin else cell]
    if kind == "torch_script":
        step_cell = torch.jit.script(step_cell)
    elif kind == "torch_compile":
        step_cell = torch.compile(step_cell)
    n_states = 2 if cell == "lstm" else 1

    def sequence(gi, state, weights):
        outs = []
        for t in range(gi.shape[0]):
            state = step_cell(gi[t], *state, *weights)
            outs.append(state[0])
        return torch.stack(outs)

    if kind == "torch_compile_seq":
        sequence = torch.compile(sequence)
    layer = None
    if kind == f"torch_{cell}":
        layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](E, H).to(tdtype)
        with torch.no_grad():
            for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
                getattr(layer, name).copy_(w["rnn." + name])
        w.update({"rnn." + n: p for n, p in layer.named_parameters()})

    def step(tokens, targets, update=True):
        tokens, targets = torch.from_numpy(tokens), torch.from_numpy(targets)
        for p in w.values():
            p.grad = None
        x = w["embed.weight"][tokens]
        if layer is not None:
            hs, _ = layer(x)
        else:
            h0 = torch.zeros(B, H, dtype=tdtype)
            weights = tuple(w[k] for k in recurrent_keys)
            hs = sequence(gate_input(w, x), (h0,) * n_states, weights)
        logits = hs @ w["fc.weight"].t() + w["fc.bias"]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
        loss.backward()
        if update:
            with torch.no_grad():
                for p in w.values():
                    p -= LR * p.grad
        return loss.item(), {k: p.grad.numpy() for k, p in w.items()}

    return step


def run_peer(peer, cell, H, weights, steps, dtype, threads):
    """In this process: check (float64: loss and gradients) or time one peer."""
    keys = LAYER_KEYS + EXTRA_KEYS.get(peer, ())
    stored = np.load(weights)
    params = {k: stored[k].astype(dtype) for k in keys}
    if peer.startswith("torch"):
        import torch

        torch.set_num_threads(threads)
        step = _torch_peer(peer, cell, params, H, dtype)
    elif peer == "numpy":
        step = _numpy_peer(cell, params, H)
    elif peer in CUSTOM:
        step = _minigrad_custom_peer(peer, params, H, dtype)
    else:
        step = _minigrad_peer(cell, params, H, dtype, scan=peer != "minigrad_unrolled")
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


def run_gemm_floor(H, G, library, threads, repeat=20):
    """Seconds for one step's matrix products, each timed alone (median of repeat)."""
    counts = {}
    for shape in matmul_shapes(H, G):
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
    """Run this script with args in a fresh process: (its JSON result, wall seconds taken)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    env["MKL_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1]), seconds


def _run_args(peer, cell, H, weights, *more):
    return ["--run", peer, "--cell", cell, "--hidden", str(H), "--weights", weights, *more]


def max_difference(got, ref):
    """Largest absolute difference of loss and of every gradient; both must name the same."""
    if set(got["grads"]) != set(ref["grads"]):
        raise RuntimeError(f"gradients of {sorted(got['grads'])} against {sorted(ref['grads'])}")
    diff = abs(got["loss"] - ref["loss"])
    for k, g in ref["grads"].items():
        diff = max(diff, float(np.abs(np.asarray(got["grads"][k]) - np.asarray(g)).max()))
    return diff


def check(peers, cell, H, weights, threads):
    """{peer: (float64 max difference from its reference, the reference, seconds taken)}; the
    reference is the NumPy baseline, a custom cell's its torch twin (NumPy itself: None)."""
    results, refs = {}, {}

    def float64_run(name):
        return _spawn(_run_args(name, cell, H, weights, "--dtype", "float64"), threads)

    for peer in peers:
        reference = TWINS.get(peer, "numpy")
        if peer == reference:
            results[peer] = (None, None, 0.0)
            continue
        if reference not in refs:
            refs[reference] = float64_run(reference)[0]
        got, seconds = float64_run(peer)
        results[peer] = (max_difference(got, refs[reference]), reference, seconds)
    return results


def initial_weights(cell, H, path, seed=2000):
    """The layer's weights as minigrad initialises them, and (for the LSTM) the custom cells'
    peepholes and layer-norm parameters from a seeded generator, saved to path (.npz)."""
    sys.path.insert(0, str(HERE))
    import lstm_lm

    import minigrad as mg

    _, params = lstm_lm.make_minigrad(cell, H, mg.float64)
    if cell == "lstm":
        params.update(custom_cells.extra_parameters(H, seed))
    np.savez(path, **params)


def measure(args, peers, H, weights):
    """One size: check every peer, then time peers and GEMM floors round by round."""
    G = GATES[args.cell]
    checked = check(peers, args.cell, H, weights, args.threads)
    times = {p: [] for p in peers}
    seconds = {p: [] for p in peers}
    floors = {"numpy": [], "torch": []}
    for r in range(args.rounds):
        order = peers[r % len(peers) :] + peers[: r % len(peers)]
        for peer in order:
            more = ("--steps", str(args.steps))
            got, took = _spawn(_run_args(peer, args.cell, H, weights, *more), args.threads)
            times[peer].append(got["ms"])
            seconds[peer].append(took)
        for lib in floors:
            gemm = ["--gemm", lib, "--cell", args.cell, "--hidden", str(H)]
            floors[lib].append(_spawn(gemm, args.threads)[0]["ms"])
    return {
        "hidden": H,
        "step_gflop": step_flops(H, G) / 1e9,
        "ms": times,
        "median_ms": {p: float(np.median(v)) for p, v in times.items()},
        "process_s": seconds,
        "gemm_floor_ms": floors,
        "gemm_floor_median_ms": {lib: float(np.median(v)) for lib, v in floors.items()},
        "max_diff_float64": {p: checked[p][0] for p in peers},
        "checked_against": {p: checked[p][1] for p in peers},
        "check_process_s": {p: checked[p][2] for p in peers},
    }


def _versions():
    found = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        found["torch"] = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        found["torch"] = None
    return found


def _ratio_base(peers):
    return "minigrad" if "minigrad" in peers else peers[0]


def _table_row(size, peers):
    ms = size["median_ms"]
    base = ms[_ratio_base(peers)]
    cells = [f"{ms[p]:.1f} ({ms[p] / base:.2f})" for p in peers]
    floors = [f"{size['gemm_floor_median_ms'][lib]:.1f}" for lib in ("numpy", "torch")]
    diffs = [d for d in size["max_diff_float64"].values() if d is not None]
    worst = f"{max(diffs):.1e}" if diffs else "-"
    return f"| {size['hidden']} | " + " | ".join(cells + floors + [worst]) + " |"


def _print_roofline(sizes, peers):
    print("\nRoofline: achieved GFLOP/s of the step's matmul FLOPs (floor / step time)\n")
    print("| H | GFLOP per step | floor GFLOP/s | " + " | ".join(peers) + " |")
    print("|---" * (len(peers) + 3) + "|")
    for size in sizes:
        flops = size["step_gflop"] * 1e9
        floor = min(size["gemm_floor_median_ms"].values())
        ms = size["median_ms"]
        cells = [f"{flops / ms[p] / 1e6:.0f} ({floor / ms[p]:.2f})" for p in peers]
        print(
            f"| {size['hidden']} | {flops / 1e9:.2f} | {flops / floor / 1e6:.0f} | "
            + " | ".join(cells)
            + " |"
        )


def _parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cell", choices=sorted(GATES), default="lstm")
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads of every peer")
    ap.add_argument("--compile", action="store_true", help="add the torch.compile peers")
    ap.add_argument("--custom", action="store_true", help="add the custom LSTM cells (lstm)")
    ap.add_argument("--peers", nargs="+", default=None, help="a subset of the peers")
    ap.add_argument("--json", metavar="PATH", help="write every measured number here as JSON")
    ap.add_argument("--run", help=argparse.SUPPRESS)  # inside a peer's process
    ap.add_argument("--gemm", help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    ap.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    return ap


def main(argv=None):
    ap = _parser()
    args = ap.parse_args(argv)
    if args.run:
        result = run_peer(
            args.run, args.cell, args.hidden[0], args.weights, args.steps, args.dtype, args.threads
        )
        print(json.dumps(result))
        return None
    if args.gemm:
        floor = run_gemm_floor(args.hidden[0], GATES[args.cell], args.gemm, args.threads)
        print(json.dumps(floor))
        return None
    try:
        peers = choose_peers(args.cell, args.compile, args.custom, args.peers)
    except ValueError as e:
        ap.error(str(e))
    report = {
        "cell": args.cell,
        "threads": args.threads,
        "rounds": args.rounds,
        "steps": args.steps,
        "batch": B,
        "seq_len": T,
        "embed": E,
        "vocab": V,
        "dtype": "float32",
        "peers": peers,
        "versions": _versions(),
        "sizes": [],
    }
    print(
        f"{args.cell.upper()}: ms per step (median of {args.rounds} rounds x {args.steps} steps, "
        f"{args.threads} thread(s) each); ratios to {_ratio_base(peers)} in parentheses\n"
    )
    columns = peers + ["GEMM floor NumPy", "GEMM floor torch", "max diff float64"]
    print("| H | " + " | ".join(columns) + " |")
    print("|---" * (len(peers) + 4) + "|", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for H in args.hidden:
            weights = os.path.join(tmp, f"w{H}.npz")
            initial_weights(args.cell, H, weights)
            size = measure(args, peers, H, weights)
            report["sizes"].append(size)
            print(_table_row(size, peers), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    _print_roofline(report["sizes"], peers)
    return report


if __name__ == "__main__":
    main()
