"""Backpropagation through time is backward() on the unrolled graph: see it, check it, measure it.

The Elman network of T. Hitendra Sarma's lecture notes "Recurrent Neural Networks"
(models.ElmanRNN, after Goodfellow et al. ch. 10), output at every step, softmax and
cross-entropy, trained here to predict the next character of a sentence:

    a_t = b + W h_{t-1} + U x_t,   h_t = tanh(a_t),   o_t = c + V h_t,
    L = -sum_t log softmax(o_t)[y_t]

1. Gradients. minigrad builds the graph of T copies of the step and runs its generic backward().
   models/reference_bptt.py computes the same gradients with the notes' hand-derived equations
   (dL/do_t = y^_t - 1_y, dL/dh_t = W^T diag(1 - h_{t+1}^2) dL/dh_{t+1} + V^T dL/do_t, ...), in
   plain NumPy. Both run in float64; the largest absolute difference is printed per parameter
   and for every dL/dh_t (read from autograd with retain_grad()).
2. Cost. The unrolled graph has a fixed number of nodes per step, and the arrays its nodes save
   for backward (the O(T) memory of BPTT in the notes) grow linearly with T; backward releases
   them. Measured for T = 10 .. 5000 (float32, batch 32, hidden 128): node count, bytes of saved
   arrays, memory traced by tracemalloc while the graph is alive, and time, as a table and a plot.
3. Picture. The graph for T = 3 is exported as Graphviz DOT (minigrad.graph.to_dot), and rendered
   to PNG when Graphviz's `dot` program is installed.

    python examples/bptt_from_scratch.py            # the default run: about 20 seconds on 2 cores
    python examples/bptt_from_scratch.py --quick    # a few seconds (the test suite runs this)

Writes to --out (default examples/results/bptt_from_scratch/, or bptt_from_scratch-quick/ with
--quick): metrics.json, graph_growth.png, graph_T3.dot (and graph_T3.png with Graphviz).
"""

import argparse
import math
import shutil
import subprocess
import time
import tracemalloc
from pathlib import Path

import bootstrap  # noqa: F401  (before NumPy: one BLAS thread, the repository importable)
import numpy as np
from common import (
    add_common_arguments,
    markdown_table,
    output_folder,
    progress,
    pyplot,
    save_figure,
    write_json,
)

import minigrad as mg
import minigrad.graph
import minigrad.nn.functional as F
from models import ElmanRNN
from models.reference_bptt import elman_bptt

NAME = "bptt_from_scratch"
TEXT = (
    "the back-propagation algorithm applied to the unrolled graph with o(tau) cost is called "
    "back-propagation through time or bptt. states computed in the forward pass must be stored "
    "until they are reused during the backward pass, so the memory cost is also o(tau)."
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_common_arguments(p, NAME)
    p.add_argument("--check-T", type=int, default=None, help="steps for the gradient check (40)")
    p.add_argument("--check-batch", type=int, default=4, help="sequences in the check (4)")
    p.add_argument("--check-hidden", type=int, default=None, help="hidden size, check (32)")
    p.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        default=None,
        help="T values for the growth table (default 10 20 50 100 200 500 1000 2000 5000)",
    )
    p.add_argument("--batch", type=int, default=None, help="batch for the growth table (32)")
    p.add_argument("--hidden", type=int, default=None, help="hidden size, growth table (128)")
    args = p.parse_args(argv)
    full = dict(
        check_T=40,
        check_hidden=32,
        lengths=[10, 20, 50, 100, 200, 500, 1000, 2000, 5000],
        batch=32,
        hidden=128,
    )
    quick = dict(check_T=12, check_hidden=8, lengths=[5, 10, 20, 40], batch=4, hidden=16)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if min(args.lengths) < 1 or args.check_T < 2:
        p.error("lengths must be positive and --check-T at least 2")
    return args


class Chars:
    """The sentence as one-hot inputs x_t and next-character targets y_t."""

    def __init__(self, text: str):
        self.text = text
        self.vocab = sorted(set(text))
        self.ids = np.array([self.vocab.index(ch) for ch in text], dtype=np.int64)

    @property
    def size(self) -> int:
        return len(self.vocab)

    def batch(self, T: int, B: int, rng, dtype):
        """x (T, B, K) one-hot characters, y (T, B) the character after each."""
        starts = rng.integers(0, len(self.ids) - T - 1, size=B)
        idx = starts[None, :] + np.arange(T)[:, None]
        x = np.eye(self.size, dtype=dtype)[self.ids[idx]]
        return x, self.ids[idx + 1]


# ----- 1. autograd against the hand-derived BPTT ---------------------------------------------
def gradient_check(chars: Chars, T: int, B: int, H: int, rng) -> dict:
    K = chars.size
    model = ElmanRNN(K, H, K).to(mg.float64)
    x, y = chars.batch(T, B, rng, np.float64)
    o, _, hidden = model(mg.tensor(x), return_hidden=True)
    for h in hidden:
        h.retain_grad()  # keep dL/dh_t on these intermediate tensors
    loss = F.cross_entropy(o.reshape(T * B, K), mg.tensor(y.reshape(-1)), reduction="sum")
    loss.backward()

    params = {name: p.numpy() for name, p in model.named_parameters()}
    ref_loss, ref = elman_bptt(x, y, **params)
    rows, diffs = [], {}
    for name in ("U", "W", "V", "b", "c"):
        got = getattr(model, name).grad
        diffs[name] = float(np.max(np.abs(got - ref[name])))
        rows.append(
            [name, str(tuple(got.shape)), f"{diffs[name]:.2e}", f"{np.max(np.abs(ref[name])):.3f}"]
        )
    dh = np.stack([h.grad for h in hidden])
    diffs["dL/dh_t"] = float(np.max(np.abs(dh - ref["h"])))
    rows.append(
        [
            "dL/dh_t (all t)",
            str(dh.shape),
            f"{diffs['dL/dh_t']:.2e}",
            f"{np.max(np.abs(ref['h'])):.3f}",
        ]
    )
    loss_diff = abs(loss.item() - ref_loss)
    rows.append(["loss L", "()", f"{loss_diff:.2e}", f"{ref_loss:.3f}"])
    table = markdown_table(["quantity", "shape", "max |autograd - hand BPTT|", "max |hand|"], rows)
    return {
        "T": T,
        "batch": B,
        "hidden": H,
        "vocab": K,
        "dtype": "float64",
        "loss": loss.item(),
        "max_abs_diff": diffs,
        "loss_abs_diff": loss_diff,
        "max_abs_diff_overall": max(max(diffs.values()), loss_diff),
        "table": table,
    }


# ----- 2. the graph grows linearly with T ----------------------------------------------------
def _forward_loss(model, x, y):
    T, B, K = x.shape
    o, _ = model(mg.tensor(x))
    return F.cross_entropy(o.reshape(T * B, K), mg.tensor(y.reshape(-1)))


def growth(chars: Chars, lengths, B: int, H: int, rng, show_progress: bool) -> list:
    K = chars.size
    model = ElmanRNN(K, H, K)  # float32, the training default
    rows = []
    for T in progress(lengths, desc="graph size vs T", enabled=show_progress):
        text = Chars((chars.text + " ") * (T // len(chars.text) + 2))
        x, y = text.batch(T, B, rng, np.float32)
        # time, without tracing: the best of 3 (a shared machine adds noise, never speed)
        t_fwd = t_bwd = math.inf
        for _ in range(3):
            start = time.perf_counter()
            loss = _forward_loss(model, x, y)
            t_fwd = min(t_fwd, time.perf_counter() - start)
            info = minigrad.graph.stats(loss)
            start = time.perf_counter()
            loss.backward()
            t_bwd = min(t_bwd, time.perf_counter() - start)
            after = minigrad.graph.stats(loss)["saved_bytes"]
            model.zero_grad()
            del loss
        # memory traced by tracemalloc (NumPy reports its buffers to it)
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        loss = _forward_loss(model, x, y)
        held = tracemalloc.get_traced_memory()[0] - base
        loss.backward()
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        model.zero_grad()
        del loss
        rows.append(
            {
                "T": T,
                "nodes": info["nodes"],
                "edges": info["edges"],
                "saved_arrays": info["saved_arrays"],
                "saved_bytes": info["saved_bytes"],
                "saved_bytes_after_backward": after,
                "traced_bytes_graph_alive": held,
                "traced_peak_bytes_fwd_bwd": peak,
                "forward_s": t_fwd,
                "backward_s": t_bwd,
                "ops": info["ops"],
            }
        )
    return rows


def linear_fit(T, values) -> dict:
    """values ~ slope * T + intercept, with the largest relative deviation from the line."""
    T, values = np.asarray(T, float), np.asarray(values, float)
    slope, intercept = np.polyfit(T, values, 1)
    fitted = slope * T + intercept
    dev = float(np.max(np.abs(values - fitted) / np.maximum(np.abs(values), 1e-300)))
    return {"slope_per_step": float(slope), "intercept": float(intercept), "max_rel_dev": dev}


# ----- 3. the unrolled graph for T = 3 -------------------------------------------------------
def export_graph(chars: Chars, out: Path, rng) -> dict:
    T, K = 3, chars.size
    model = ElmanRNN(K, 4, K)
    x, y = chars.batch(T, 1, rng, np.float32)
    o, _ = model(mg.tensor(x))
    loss = F.cross_entropy(o.reshape(T, K), mg.tensor(y.reshape(-1)), reduction="sum")
    dot_source = minigrad.graph.to_dot(
        loss,
        params=model.named_parameters(),
        title="Elman RNN unrolled over T = 3 steps (hidden 4): a_t = b + W h_{t-1} + U x_t, "
        "h_t = tanh(a_t), o_t = c + V h_t, L = sum_t CE(o_t, y_t)",
    )
    dot_path = out / "graph_T3.dot"
    dot_path.write_text(dot_source, encoding="utf-8")
    result = {"dot": dot_path.name, "nodes": minigrad.graph.stats(loss)["nodes"], "png": None}
    dot_bin = shutil.which("dot")
    if dot_bin is None:
        print(
            f"Graphviz `dot` not found: wrote {dot_path} only "
            f"(render it with: dot -Tpng {dot_path.name} -o graph_T3.png)"
        )
    else:
        png = out / "graph_T3.png"
        subprocess.run([dot_bin, "-Tpng", str(dot_path), "-o", str(png)], check=True)
        result["png"] = png.name
        print(f"rendered {png}")
    return result


def plot_growth(rows, out: Path):
    plt = pyplot()
    if plt is None:
        return None
    T = [r["T"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    axes[0].plot(T, [r["nodes"] for r in rows], "o-")
    axes[0].set(xlabel="sequence length T", ylabel="graph nodes", title="Nodes in the graph")
    mb = 1 / 2**20
    axes[1].plot(T, [r["saved_bytes"] * mb for r in rows], "o-", label="saved for backward")
    axes[1].plot(
        T,
        [r["traced_bytes_graph_alive"] * mb for r in rows],
        "s--",
        label="tracemalloc, graph alive",
    )
    axes[1].plot(
        T,
        [r["traced_peak_bytes_fwd_bwd"] * mb for r in rows],
        "^:",
        label="tracemalloc, peak fwd+bwd",
    )
    axes[1].plot(
        T, [r["saved_bytes_after_backward"] * mb for r in rows], "x-", label="saved, after backward"
    )
    axes[1].set(xlabel="sequence length T", ylabel="MiB", title="Memory held by the graph")
    axes[1].legend(fontsize=8)
    axes[2].plot(T, [r["forward_s"] * 1e3 for r in rows], "o-", label="forward")
    axes[2].plot(T, [r["backward_s"] * 1e3 for r in rows], "s-", label="backward (BPTT)")
    axes[2].set(xlabel="sequence length T", ylabel="ms", title="Time")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle("Elman RNN: the unrolled graph and its memory grow linearly with T (O(tau))")
    return save_figure(fig, out / "graph_growth.png")


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = output_folder(args.out, NAME, args.quick)
    started = time.perf_counter()
    mg.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    chars = Chars(TEXT)

    print(
        f"1. autograd vs hand-derived BPTT (Elman RNN, float64, T={args.check_T}, "
        f"B={args.check_batch}, H={args.check_hidden}, vocabulary {chars.size})"
    )
    check = gradient_check(chars, args.check_T, args.check_batch, args.check_hidden, rng)
    print(check["table"])
    print(f"largest difference: {check['max_abs_diff_overall']:.2e}\n")

    print(f"2. graph size and memory vs T (float32, B={args.batch}, H={args.hidden})")
    rows = growth(chars, args.lengths, args.batch, args.hidden, rng, not args.no_progress)
    mib = 2**20
    table = markdown_table(
        [
            "T",
            "nodes",
            "saved arrays",
            "saved MiB",
            "traced MiB (graph alive)",
            "peak MiB (fwd+bwd)",
            "saved after bwd",
            "fwd ms",
            "bwd ms",
        ],
        [
            [
                r["T"],
                r["nodes"],
                r["saved_arrays"],
                f"{r['saved_bytes'] / mib:.2f}",
                f"{r['traced_bytes_graph_alive'] / mib:.2f}",
                f"{r['traced_peak_bytes_fwd_bwd'] / mib:.2f}",
                r["saved_bytes_after_backward"],
                f"{r['forward_s'] * 1e3:.1f}",
                f"{r['backward_s'] * 1e3:.1f}",
            ]
            for r in rows
        ],
    )
    print(table)
    T = [r["T"] for r in rows]
    fits = {
        "nodes": linear_fit(T, [r["nodes"] for r in rows]),
        "saved_bytes": linear_fit(T, [r["saved_bytes"] for r in rows]),
        "traced_bytes_graph_alive": linear_fit(T, [r["traced_bytes_graph_alive"] for r in rows]),
    }
    per_step = rows[-1]["ops"]
    print(
        f"nodes = {fits['nodes']['slope_per_step']:.2f} * T + {fits['nodes']['intercept']:.1f} "
        f"(largest deviation from the line {fits['nodes']['max_rel_dev']:.1e}); ops at "
        f"T={rows[-1]['T']}: {per_step}"
    )
    K = chars.size
    print(
        f"saved for backward = {fits['saved_bytes']['slope_per_step'] / 1024:.1f} KiB per step"
        f" (largest deviation from the line {fits['saved_bytes']['max_rel_dev']:.1e}): each step"
        f" keeps h_t for W's gradient and tanh' (B*H*4 = {args.batch * args.hidden * 4 / 1024:.1f}"
        " KiB) and its share of x, of the stacked h and of log-softmax(o)"
        f" (B*(H + 2K)*4 = {args.batch * (args.hidden + 2 * K) * 4 / 1024:.1f} KiB)"
    )
    print(
        "after backward() the graph holds "
        f"{max(r['saved_bytes_after_backward'] for r in rows)} bytes: saved arrays are freed "
        "as each node's backward runs\n"
    )

    print("3. the unrolled graph for T = 3")
    graph = export_graph(chars, out, rng)
    figure = plot_growth(rows, out)
    if figure is not None:
        print(f"figure: {figure}")

    metrics = {
        "example": NAME,
        "quick": args.quick,
        "seed": args.seed,
        "gradient_check": check,
        "growth": {
            "batch": args.batch,
            "hidden": args.hidden,
            "dtype": "float32",
            "rows": rows,
            "linear_fits": fits,
            "table": table,
        },
        "graph_T3": graph,
        "figure": None if figure is None else figure.name,
        "wall_s": time.perf_counter() - started,
    }
    path = write_json(out / "metrics.json", metrics)
    print(f"metrics: {path}  (wall time {metrics['wall_s']:.1f} s)")
    return metrics


if __name__ == "__main__":
    main()
