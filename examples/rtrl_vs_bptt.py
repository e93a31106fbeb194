"""BPTT is reverse mode, RTRL is forward mode, on the same unrolled graph: equal gradients,
opposite costs, and truncated BPTT between them.

Part 1. A tanh RNN and an LSTM (float64) get the gradient of sum_t L_t over a whole sequence
twice: by BPTT (`backward()` on the unrolled graph) and by real-time recurrent learning
(Williams & Zipser 1989; `models/rtrl.py`), which carries S_t = dh_t/dtheta forward with
`mg.jvp`. The largest difference is printed; the tests hold it under 1e-10.

Part 2. Costs, measured: peak memory (tracemalloc, NumPy's arrays included) and wall time per
step of BPTT, truncated BPTT (k steps per backward, state carried) and RTRL, as T grows at
fixed H and as H grows at fixed T. BPTT keeps every step's activations, O(T H); RTRL keeps
the sensitivities, O(H |theta|) whatever T, and pays O(H^2 |theta|) time per step.

Part 3. Online learning of a delayed recall, y_t = x_{t-d}: RTRL updates at every step with the
exact gradient of the past; truncated BPTT with a window k <= d cannot see the lag at all; a
window k > d can. A tanh RNN and an LSTM, each trained online with RTRL. RTRL at every step
makes k times more updates than truncated BPTT with window k, so RTRL is also run summing its
gradient over k steps and updating once per k steps ("rtrl-every-k"): equal numbers of updates.

    python examples/rtrl_vs_bptt.py           # the default run: a few minutes on 2 cores
    python examples/rtrl_vs_bptt.py --quick   # seconds (the test suite runs this)

Writes to --out (default examples/results/rtrl_vs_bptt/, or rtrl_vs_bptt-quick/ with
--quick): metrics.json, costs.md (the cost table), online.md (part 3: updates and final MSE),
rtrl_vs_bptt.png (memory, time, and learning for each cell).
"""

import argparse
import time
import tracemalloc

import bootstrap  # noqa: F401  (before NumPy: one BLAS thread, the repository importable)
import numpy as np
from common import (
    add_common_arguments,
    markdown_table,
    output_folder,
    progress,
    pyplot,
    write_json,
)

import minigrad as mg
import minigrad.nn as nn
import minigrad.nn.functional as F
import minigrad.optim as optim
from models import LSTMCell, RNNCell
from models.rtrl import RTRL, bptt_gradients

NAME = "rtrl_vs_bptt"
CELLS = {"rnn": RNNCell, "lstm": LSTMCell}
INPUT = 4


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_common_arguments(p, NAME)
    p.add_argument("--batch", type=int, default=4, help="sequences per batch, part 2 (4)")
    p.add_argument("--window", type=int, default=8, help="truncated BPTT window k (8)")
    p.add_argument("--delay", type=int, default=4, help="lag d of the recall task, part 3 (4)")
    p.add_argument("--online-steps", type=int, default=None, help="stream length, part 3 (3000)")
    args = p.parse_args(argv)
    if args.quick:
        args.Ts, args.T_hidden, args.Hs, args.H_length = [8, 16], 4, [4, 8], 8
        args.online_steps = args.online_steps or 60
    else:
        args.Ts, args.T_hidden, args.Hs, args.H_length = (
            [16, 32, 64, 128, 256],
            16,
            [8, 16, 32, 64],
            32,
        )
        args.online_steps = args.online_steps or 3000
    return args


def make(kind, hidden, seed, dtype=mg.float64):
    mg.manual_seed(seed)
    return CELLS[kind](INPUT, hidden).to(dtype), nn.Linear(hidden, 1).to(dtype)


def params(*modules):
    return [p for m in modules for p in m.parameters()]


def cell_step(cell, x, state):
    """One step with the state as a tuple, (h,) or (h, c), None at the start."""
    if isinstance(cell, LSTMCell):
        return cell(mg.tensor(x), state)
    return (cell(mg.tensor(x), None if state is None else state[0]),)


def truncated_pass(cell, head, xs, ys, window, after_window=None) -> list:
    """Truncated BPTT over the whole sequence: a backward every `window` steps, the state
    carried as a value across the cut. Returns the per-step losses."""
    state, losses = None, []
    for a in range(0, len(xs), window):
        state = None if state is None else tuple(s.detach() for s in state)
        total = 0
        for t in range(a, min(a + window, len(xs))):
            state = cell_step(cell, xs[t], state)
            loss = F.mse_loss(head(state[0]), mg.tensor(ys[t]))
            losses.append(loss.item())
            total = total + loss
        total.backward()
        if after_window is not None:
            after_window()
    return losses


# ----- part 1 ---------------------------------------------------------------------------------
def agreement(kind, T, hidden, batch, seed) -> float:
    cell, head = make(kind, hidden, seed)
    rng = np.random.default_rng(seed)
    xs, ys = rng.standard_normal((T, batch, INPUT)), rng.standard_normal((T, batch, 1))
    bptt_gradients(cell, head, F.mse_loss, xs, ys)
    reverse = [p.grad.numpy().copy() for p in params(cell, head)]
    for p in params(cell, head):
        p.grad = None
    rtrl = RTRL(cell, head, F.mse_loss)
    rtrl.reset(batch)
    for x, y in zip(xs, ys, strict=True):
        rtrl.step(x, y)
    return max(
        float(np.abs(p.grad - g).max()) for p, g in zip(params(cell, head), reverse, strict=True)
    )


# ----- part 2 ---------------------------------------------------------------------------------
def measure(run):
    """(peak bytes allocated while `run` ran, seconds)."""
    tracemalloc.start()
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, seconds


def cost_row(kind, T, hidden, batch, window, seed) -> dict:
    cell, head = make(kind, hidden, seed)
    rng = np.random.default_rng(seed)
    xs, ys = rng.standard_normal((T, batch, INPUT)), rng.standard_normal((T, batch, 1))

    rtrl = RTRL(cell, head, F.mse_loss)

    def forward_mode():
        rtrl.reset(batch)
        for x, y in zip(xs, ys, strict=True):
            rtrl.step(x, y)

    row = {"cell": kind, "T": T, "H": hidden, "params": rtrl.K + hidden + 1}
    for name, run in (
        ("bptt", lambda: bptt_gradients(cell, head, F.mse_loss, xs, ys)),
        ("tbptt", lambda: truncated_pass(cell, head, xs, ys, window)),
        ("rtrl", forward_mode),
    ):
        peak, seconds = measure(run)
        row[f"{name}_peak_kib"] = peak / 1024
        row[f"{name}_ms_per_step"] = 1e3 * seconds / T
    row["rtrl_sensitivities_kib"] = rtrl.sensitivity_bytes / 1024
    return row


def costs(args) -> list:
    grid = [(kind, T, args.T_hidden) for kind in CELLS for T in args.Ts]
    grid += [(kind, args.H_length, H) for kind in CELLS for H in args.Hs if H != args.T_hidden]
    rows = []
    for kind, T, H in progress(grid, desc="costs", enabled=not args.no_progress):
        rows.append(cost_row(kind, T, H, args.batch, args.window, args.seed))
    return rows


def slope(xs, ys) -> float:
    """The exponent p of a power law y ~ x^p fitted on log-log axes."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


# ----- part 3 ---------------------------------------------------------------------------------
def online(kind, method, args, hidden=16, batch=8):
    """Squared error at each step of an online run on y_t = x_{t-d}, and the number of Adam
    updates made. method: "rtrl" (an update every step), "rtrl-every-k" (RTRL's gradient summed
    over k steps, an update every k steps: as many updates as truncated BPTT with window k) or
    "tbptt-k" (an update at the end of each window of k steps, the window's losses summed)."""
    cell, head = make(kind, hidden, args.seed, dtype=mg.float32)
    opt = optim.Adam(params(cell, head), lr=3e-3)
    rng = np.random.default_rng(args.seed + 7)
    stream = rng.standard_normal((args.online_steps + args.delay, batch, INPUT)).astype(np.float32)
    xs, ys = stream[args.delay :], stream[: -args.delay, :, :1]  # recall input 0, d steps late
    errors = np.empty(args.online_steps)
    updates = 0

    def update():
        nonlocal updates
        opt.step()
        opt.zero_grad()  # RTRL.step and backward() add into .grad: cleared after each update
        updates += 1

    if method == "rtrl" or method.startswith("rtrl-every-"):
        every = 1 if method == "rtrl" else int(method.rsplit("-", 1)[1])
        rtrl = RTRL(cell, head, F.mse_loss, chunk=1024)
        rtrl.reset(batch)
        for t in range(args.online_steps):
            errors[t] = rtrl.step(xs[t], ys[t]).item()  # adds dL_t/dtheta into .grad
            if (t + 1) % every == 0 or t == args.online_steps - 1:
                update()  # the sum over the last `every` steps, as truncated BPTT's window
        return errors, updates

    window = int(method.split("-")[1])
    return np.array(truncated_pass(cell, head, xs, ys, window, after_window=update)), updates


def online_methods(delay) -> list:
    """RTRL every step; truncated BPTT with k = d and 2d; RTRL updating every k steps too."""
    ks = [delay, 2 * delay]
    return ["rtrl"] + [f"tbptt-{k}" for k in ks] + [f"rtrl-every-{k}" for k in ks]


def main(argv=None):
    args = parse_args(argv)
    out = output_folder(args.out, NAME, args.quick)
    started = time.perf_counter()
    metrics = {"agreement_max_abs_diff": {}}
    for kind in CELLS:
        diff = agreement(kind, T=12 if args.quick else 100, hidden=8, batch=3, seed=args.seed)
        metrics["agreement_max_abs_diff"][kind] = diff
        print(f"{kind}: RTRL and BPTT gradients differ by at most {diff:.1e} (float64)")

    rows = costs(args)
    metrics["costs"] = rows
    headers = ["cell", "T", "H", "|theta|", "BPTT KiB", "TBPTT KiB", "RTRL KiB", "RTRL S_t KiB"]
    headers += ["BPTT ms/step", "TBPTT ms/step", "RTRL ms/step"]
    table = markdown_table(
        headers,
        [
            [r["cell"], r["T"], r["H"], r["params"]]
            + [f"{r[k]:,.0f}" for k in ("bptt_peak_kib", "tbptt_peak_kib", "rtrl_peak_kib")]
            + [f"{r['rtrl_sensitivities_kib']:,.0f}"]
            + [f"{r[k]:.2f}" for k in ("bptt_ms_per_step", "tbptt_ms_per_step", "rtrl_ms_per_step")]
            for r in rows
        ],
    )
    (out / "costs.md").write_text(table + "\n")
    print(table)
    fits = {}
    for kind in CELLS:
        by_T = [r for r in rows if r["cell"] == kind and r["H"] == args.T_hidden]
        by_H = sorted(
            (r for r in rows if r["cell"] == kind and r["T"] == args.H_length), key=lambda r: r["H"]
        )
        Ts, Hs = [r["T"] for r in by_T], [r["H"] for r in by_H]
        fits[kind] = {
            "bptt_memory_vs_T": slope(Ts, [r["bptt_peak_kib"] for r in by_T]),
            "rtrl_memory_vs_T": slope(Ts, [r["rtrl_peak_kib"] for r in by_T]),
            "rtrl_time_vs_H": slope(Hs, [r["rtrl_ms_per_step"] for r in by_H]),
            "bptt_time_vs_H": slope(Hs, [r["bptt_ms_per_step"] for r in by_H]),
        }
        print(f"{kind}: power-law exponents {fits[kind]}")
    metrics["exponents"] = fits

    curves, online_rows = {}, []
    for kind in CELLS:
        for method in online_methods(args.delay):
            began = time.perf_counter()
            errors, updates = online(kind, method, args)
            seconds = time.perf_counter() - began
            name = f"{kind} {method}"
            curves[name] = errors
            tail = float(errors[-len(errors) // 5 :].mean())
            metrics.setdefault("online_final_mse", {})[name] = tail
            metrics.setdefault("online_updates", {})[name] = updates
            metrics.setdefault("online_seconds", {})[name] = seconds
            online_rows.append([kind, method, f"{updates:,}", f"{tail:.3f}"])
            print(f"{name}: {updates} updates, MSE over the last fifth of the stream {tail:.3f}")
    online_table = markdown_table(
        ["cell", "method", "Adam updates", "MSE, last fifth of the stream"], online_rows
    )
    (out / "online.md").write_text(
        f"Online recall of x(t-{args.delay}) over {args.online_steps:,} steps, batch 8, H=16"
        " (`online_final_mse` and `online_updates` in metrics.json). rtrl-every-k sums RTRL's"
        " gradient over k steps and updates once per k steps, as often as tbptt-k.\n\n"
        + online_table
        + "\n"
    )
    print(online_table)
    metrics["wall_s"] = time.perf_counter() - started
    write_json(out / "metrics.json", metrics)
    plot(out, rows, curves, args)
    print(f"wrote {out}")
    return metrics


def plot(out, rows, curves, args) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, 2 + len(CELLS), figsize=(5 * (2 + len(CELLS)), 4.2))
    for kind, style in (("rnn", "-"), ("lstm", "--")):
        by_T = [r for r in rows if r["cell"] == kind and r["H"] == args.T_hidden]
        by_H = sorted(
            (r for r in rows if r["cell"] == kind and r["T"] == args.H_length), key=lambda r: r["H"]
        )
        for method, color in (("bptt", "C0"), ("tbptt", "C2"), ("rtrl", "C3")):
            label = f"{kind} {method.upper()}"
            axes[0].plot(
                [r["T"] for r in by_T],
                [r[f"{method}_peak_kib"] for r in by_T],
                style,
                color=color,
                marker="o",
                label=label,
            )
            axes[1].plot(
                [r["H"] for r in by_H],
                [r[f"{method}_ms_per_step"] for r in by_H],
                style,
                color=color,
                marker="o",
                label=label,
            )
    axes[0].set(
        xscale="log",
        yscale="log",
        xlabel="T",
        ylabel="peak memory (KiB)",
        title=f"memory vs T (H={args.T_hidden})",
    )
    axes[1].set(
        xscale="log",
        yscale="log",
        xlabel="H",
        ylabel="ms per step",
        title=f"time per step vs H (T={args.H_length})",
    )
    window = max(1, args.online_steps // 50)
    colors = {"rtrl": "C3", f"tbptt-{args.delay}": "C0", f"tbptt-{2 * args.delay}": "C2"}
    colors |= {f"rtrl-every-{args.delay}": "C1", f"rtrl-every-{2 * args.delay}": "C4"}
    for ax, kind in zip(axes[2:], CELLS, strict=True):
        for name, errors in curves.items():
            cell, method = name.split(" ", 1)
            if cell != kind:
                continue
            smooth = np.convolve(errors, np.ones(window) / window, mode="valid")
            style = "--" if method.startswith("rtrl-every") else "-"
            ax.plot(smooth, style, color=colors.get(method), label=method)
        ax.set(
            yscale="log",
            xlabel="step of the stream",
            ylabel="squared error (moving mean)",
            title=f"{kind}: online recall of x(t-{args.delay})",
        )
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "rtrl_vs_bptt.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
