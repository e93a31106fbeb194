"""How long can each cell remember? The adding problem and the copy task at growing lengths.

Minlie Huang's lecture slides "Recurrent Neural Networks" (Tsinghua University) quote an
"empirical feasible length" of RNN 100, LSTM 500, GRU 1000 steps, without a task or protocol.
This example measures one protocol, on a CPU budget that is tiny next to the papers' (they
train for 10^5 - 10^6 updates; here at most --steps updates of --batch sequences per run), so
its lengths are lower bounds of what each cell can learn, not a replication.

Tasks (both generated fresh for every batch; a fixed held-out set of --test sequences decides):

adding  The adding problem in the version of Arjovsky, Shah & Bengio (2016, "uRNN", Sec. 4.2),
        which is Le, Jaitly & Hinton's (2015) two-channel form: x has T steps of 2 channels;
        channel 0 is uniform in [0, 1], channel 1 is zero except for two 1s, one placed
        uniformly in the first half [0, T/2) and one in the second half [T/2, T). The target is
        the sum of the two marked numbers, read from the last state through a linear layer;
        MSE loss. Predicting 1 gives MSE 1/6 = 0.167 (the baseline). Solved: test MSE < 0.01.
copy    The copying memory task of Arjovsky et al. (2016, Sec. 4.1; after Hochreiter &
        Schmidhuber 1997), with S symbols to copy (--copy-symbols, default 5; the paper uses 10)
        and delay T: categories 0 = blank, 1..8 = data, 9 = delimiter, fed one-hot. The input is
        S data symbols drawn uniformly from 1..8, then T - 1 blanks, the delimiter, and S blanks
        (T + 2S steps). The target is blank at the first T + S steps and then the S data
        symbols in order (9 output classes). Loss: cross-entropy on the S recall steps
        (--copy-loss recall, the default here) or averaged over all T + 2S steps as in the
        paper (--copy-loss all; its T + S trivial "blank" targets dilute the signal, and in
        trials here no cell solved even T = 10 within 800 updates that way). The memoryless
        baseline guesses: cross-entropy log 8 per recalled symbol, accuracy 1/8. Solved:
        accuracy on the recalled symbols of the test set > 0.95. The symbol to remember longest
        is read T + S steps after it was seen.

Cells (hidden --hidden, one layer, linear read-out): tanh RNN (models.RNN, PyTorch's
U(-1/sqrt(H), 1/sqrt(H)) init), IRNN (models.IRNN: ReLU, W_hh = I, b = 0, input weights
N(0, 0.001^2), Le et al. 2015), LSTM (models.LSTM, forget-gate bias b_if set to 1) and GRU
(models.GRU). All trained with Adam (--lr), global gradient-norm clipping (--clip) and the same
seeds. A run stops early once the test metric passes (checked every --eval-every steps); a
cell that fails a length is not run at the longer ones (marked "-": the budget is for finding
each cell's limit).

    python examples/memory_tasks.py           # the default run: 5-8 minutes on 2 cores
    python examples/memory_tasks.py --quick   # a few seconds (the test suite runs this)

Writes to --out (default examples/results/memory_tasks/, or memory_tasks-quick/ with --quick):
metrics.json, results.md (the tables), memory_tasks.png.
"""

import argparse
import math
import time
from pathlib import Path

import bootstrap  # noqa: F401  (before NumPy: one BLAS thread, the repository importable)
import numpy as np
from common import (
    add_common_arguments,
    adding_batch,
    markdown_table,
    output_folder,
    progress,
    pyplot,
    save_figure,
    write_json,
    write_text,
)

import minigrad as mg
import minigrad.nn as nn
import minigrad.nn.functional as F
import minigrad.optim as optim
from models import GRU, IRNN, LSTM, RNN

NAME = "memory_tasks"
CELLS = ("rnn", "irnn", "lstm", "gru")
LABELS = {"rnn": "tanh RNN", "irnn": "IRNN", "lstm": "LSTM", "gru": "GRU"}
CLAIM = {"rnn": "100", "irnn": "-", "lstm": "500", "gru": "1000"}  # Huang's slides
TASKS = ("adding", "copy")
ADDING_SOLVED = 0.01  # test MSE below this (baseline 0.167)
COPY_SOLVED = 0.95  # accuracy on the recalled symbols above this (chance 0.125)
BLANK, DELIMITER, N_IN, N_OUT = 0, 9, 10, 9


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_common_arguments(p, NAME)
    p.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        default=None,
        help="T values, increasing (default 10 25 50 100 200)",
    )
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    p.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS))
    p.add_argument("--hidden", type=int, default=None, help="hidden units (default 64)")
    p.add_argument("--batch", type=int, default=None, help="sequences per update (default 32)")
    p.add_argument("--steps", type=int, default=None, help="most updates per run (default 1500)")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default 1e-2)")
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip (default 1.0)")
    p.add_argument("--eval-every", type=int, default=None, help="test every N updates (25)")
    p.add_argument("--test", type=int, default=None, help="held-out sequences (default 500)")
    p.add_argument("--copy-symbols", type=int, default=5, help="S, symbols to copy (default 5)")
    p.add_argument(
        "--copy-loss",
        choices=("all", "recall"),
        default="recall",
        help="cross-entropy over all T + 2S steps (the paper) or the S recall steps only",
    )
    p.add_argument(
        "--keep-going",
        action="store_true",
        help="run every length even after a cell fails a shorter one",
    )
    args = p.parse_args(argv)
    full = dict(
        lengths=[10, 25, 50, 100, 200], hidden=64, batch=32, steps=1500, eval_every=25, test=500
    )
    quick = dict(lengths=[4, 8], hidden=8, batch=8, steps=12, eval_every=6, test=32)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if sorted(args.lengths) != args.lengths or min(args.lengths) < 2:
        p.error("--lengths must be increasing and at least 2")
    return args


# ----- data ------------------------------------------------------------------------------------
def copy_batch(T: int, S: int, B: int, rng):
    """Copying memory (Arjovsky et al. 2016): x (T + 2S, B, 10) one-hot, y (T + 2S, B) ints."""
    L = T + 2 * S
    symbols = rng.integers(1, 9, size=(S, B))
    ids = np.full((L, B), BLANK, np.int64)
    ids[:S] = symbols
    ids[S + T - 1] = DELIMITER
    y = np.full((L, B), BLANK, np.int64)
    y[-S:] = symbols
    return np.eye(N_IN, dtype=np.float32)[ids], y


class Task:
    """One task at one length: batches, the loss, and the test metric."""

    def __init__(self, name: str, T: int, args, rng):
        self.name, self.T, self.S = name, T, args.copy_symbols
        self.recall_only = args.copy_loss == "recall"
        self.input_size = 2 if name == "adding" else N_IN
        self.output_size = 1 if name == "adding" else N_OUT
        self.test_set = self.batch(args.test, rng)

    def batch(self, B, rng):
        if self.name == "adding":
            return adding_batch(self.T, B, rng)
        return copy_batch(self.T, self.S, B, rng)

    def loss(self, out, y):
        """out: the recurrent layer's outputs (L, B, H) already read out to (L, B, K)."""
        if self.name == "adding":
            return F.mse_loss(out[-1], mg.tensor(y))
        if self.recall_only:
            out, y = out[-self.S :], y[-self.S :]
        L, B, K = out.shape
        return F.cross_entropy(out.reshape(L * B, K), mg.tensor(y.reshape(-1)))

    def metric(self, out, y) -> float:
        if self.name == "adding":
            return float(np.mean((out[-1] - y) ** 2))
        return float(np.mean(out[-self.S :].argmax(-1) == y[-self.S :]))

    def solved(self, metric: float) -> bool:
        return metric < ADDING_SOLVED if self.name == "adding" else metric > COPY_SOLVED


class Model(nn.Module):
    def __init__(self, cell: str, input_size: int, hidden: int, output_size: int):
        super().__init__()
        if cell == "rnn":
            self.rnn = RNN(input_size, hidden)
        elif cell == "irnn":
            self.rnn = IRNN(input_size, hidden, input_std=0.001)
        elif cell == "lstm":
            self.rnn = LSTM(input_size, hidden)
            self.rnn.bias_ih_l0.data[hidden : 2 * hidden] = 1.0  # forget-gate bias 1
        else:
            self.rnn = GRU(input_size, hidden)
        self.head = nn.Linear(hidden, output_size)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out)  # (L, B, K); the adding task reads only the last step


def run(cell: str, task: Task, args, seed: int) -> dict:
    mg.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = Model(cell, task.input_size, args.hidden, task.output_size)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    x_test, y_test = task.test_set
    curve, steps_done, solved_at, diverged = [], 0, None, False
    start = time.perf_counter()
    metric = math.nan
    label = f"{task.name} {LABELS[cell]} T={task.T}"
    for step in progress(range(1, args.steps + 1), desc=label, enabled=args.progress):
        x, y = task.batch(args.batch, rng)
        # A run that blows up (the IRNN can) must be reported, not crash: test finiteness.
        with np.errstate(over="ignore", invalid="ignore"):
            loss = task.loss(model(mg.tensor(x)), y)
            value = loss.item()
            if not math.isfinite(value):
                diverged = True
                break
            opt.zero_grad()
            loss.backward()
            norm = nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        if not math.isfinite(norm):
            diverged = True
            break
        opt.step()
        steps_done = step
        if step % args.eval_every == 0 or step == args.steps:
            with mg.no_grad(), np.errstate(over="ignore", invalid="ignore"):
                metric = task.metric(model(mg.tensor(x_test)).numpy(), y_test)
            curve.append((step, value, metric))
            if task.solved(metric):
                solved_at = step
                break
    return {
        "cell": cell,
        "task": task.name,
        "T": task.T,
        "solved": solved_at is not None,
        "solved_at_step": solved_at,
        "steps": steps_done,
        "sequences_seen": steps_done * args.batch,
        "test_metric": metric,
        "diverged": diverged,
        "seconds": time.perf_counter() - start,
        "curve": curve,
    }


# ----- report ----------------------------------------------------------------------------------
def cell_text(r) -> str:
    if r is None:
        return "-"
    if r["diverged"]:
        return "diverged"
    if r["solved"]:
        return f"yes ({r['solved_at_step']})"
    fmt = "{:.3f}" if r["task"] == "adding" else "{:.2f}"
    return "no (" + fmt.format(r["test_metric"]) + ")"


def tables(results: dict, args) -> str:
    parts = []
    for task in args.tasks:
        what = (
            "test MSE < 0.01 (baseline 0.167)"
            if task == "adding"
            else f"recall accuracy > 0.95 (chance 0.125), S = {args.copy_symbols}"
        )
        rows = []
        for cell in args.cells:
            runs = [results.get((task, cell, T)) for T in args.lengths]
            best = max([r["T"] for r in runs if r and r["solved"]], default=None)
            rows.append(
                [LABELS[cell]]
                + [cell_text(r) for r in runs]
                + ["none" if best is None else str(best)]
            )
        headers = ["cell"] + [f"T={T}" for T in args.lengths] + ["longest solved"]
        parts.append(
            f"### {task}: solved = {what}; 'yes (n)' = solved after n updates, "
            f"'no (m)' = test metric m after {args.steps} updates\n\n"
            + markdown_table(headers, rows)
        )
    longest = []
    for cell in args.cells:
        row = [LABELS[cell]]
        for task in args.tasks:
            runs = [results.get((task, cell, T)) for T in args.lengths]
            solved = [r["T"] for r in runs if r and r["solved"]]
            row.append(str(max(solved)) if solved else "none")
        longest.append(row + [CLAIM[cell]])
    parts.append(
        f"### longest length solved within {args.steps} updates of {args.batch} sequences, "
        f"hidden {args.hidden}, beside the notes' claim\n\n"
        + markdown_table(
            ["cell"] + [f"{t} (this run)" for t in args.tasks] + ["notes' feasible length"], longest
        )
    )
    return "\n\n".join(parts)


def plot(results: dict, args, out: Path):
    plt = pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(
        2, len(args.tasks), figsize=(6.5 * len(args.tasks), 8.5), squeeze=False
    )
    for j, task in enumerate(args.tasks):
        top, bottom = axes[0, j], axes[1, j]
        for cell in args.cells:
            runs = [r for T in args.lengths if (r := results.get((task, cell, T)))]
            if not runs:
                continue
            T = [r["T"] for r in runs]
            top.plot(T, [r["test_metric"] for r in runs], "o-", label=LABELS[cell])
            solved = [r for r in runs if r["solved"]]
            bottom.plot(
                [r["T"] for r in solved],
                [r["solved_at_step"] for r in solved],
                "o-",
                label=LABELS[cell],
            )
        if task == "adding":
            top.axhline(ADDING_SOLVED, color="k", ls="--", label="solved: MSE < 0.01")
            top.axhline(1 / 6, color="gray", ls=":", label="baseline 0.167")
            top.set_yscale("log")
            top.set_ylabel("test MSE (final)")
        else:
            top.axhline(COPY_SOLVED, color="k", ls="--", label="solved: accuracy > 0.95")
            top.axhline(1 / 8, color="gray", ls=":", label="chance 0.125")
            top.set_ylabel("recall accuracy (final)")
        top.set(xscale="log", xlabel="length T", title=f"{task}: test metric at the end of the run")
        bottom.set(
            xscale="log",
            xlabel="length T",
            ylabel="updates to solve",
            title=f"{task}: updates needed (solved runs; budget {args.steps})",
        )
        bottom.axhline(args.steps, color="gray", ls=":")
        for ax in (top, bottom):
            ax.set_xticks(args.lengths, [str(T) for T in args.lengths])
            ax.xaxis.set_minor_locator(plt.NullLocator())
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
    fig.suptitle(
        f"Memory tasks: hidden {args.hidden}, Adam lr {args.lr:g}, clip {args.clip:g}, "
        f"batch {args.batch}, at most {args.steps} updates per run"
    )
    return save_figure(fig, out / "memory_tasks.png")


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = output_folder(args.out, NAME, args.quick)
    started = time.perf_counter()
    print(
        f"lengths {args.lengths}; cells {args.cells}; hidden {args.hidden}, batch {args.batch},"
        f" at most {args.steps} updates per run, Adam lr {args.lr:g}, clip {args.clip:g}"
    )
    results = {}
    plan = [(task, cell) for task in args.tasks for cell in args.cells]
    args.progress = not args.no_progress
    for i, (task_name, cell) in enumerate(plan):
        for T in args.lengths:
            seed = args.seed * 1000 + T
            task = Task(task_name, T, args, np.random.default_rng(seed + 500))
            r = run(cell, task, args, seed)
            results[(task_name, cell, T)] = r
            print(
                f"[{i + 1}/{len(plan)}] {task_name:6s} {LABELS[cell]:8s} T={T:<4d} "
                f"{cell_text(r):16s} {r['steps']:5d} updates {r['seconds']:6.1f} s",
                flush=True,
            )
            if not r["solved"] and not args.keep_going:
                break
    report = tables(results, args)
    print("\n" + report)
    note = (
        "\nThe notes' lengths come with no task or protocol; the papers behind such numbers "
        "train for 10^5-10^6 updates (Le et al. 2015, Arjovsky et al. 2016), this run for at "
        f"most {args.steps}. A 'none' or a short length here is a statement about this budget, "
        "not about the cell."
    )
    print(note)
    md = out / "results.md"
    write_text(
        md, f"# Memory tasks ({'quick' if args.quick else 'default'} run)\n\n{report}\n{note}\n"
    )
    figure = plot(results, args, out)
    metrics = {
        "example": NAME,
        "quick": args.quick,
        "seed": args.seed,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "thresholds": {"adding_mse_below": ADDING_SOLVED, "copy_accuracy_above": COPY_SOLVED},
        "notes_claim": CLAIM,
        "runs": list(results.values()),
        "longest_solved": {
            task: {
                cell: max(
                    [
                        T
                        for (t, c, T), r in results.items()
                        if t == task and c == cell and r["solved"]
                    ],
                    default=None,
                )
                for cell in args.cells
            }
            for task in args.tasks
        },
        "tables": report,
        "figure": None if figure is None else figure.name,
        "wall_s": time.perf_counter() - started,
    }
    path = write_json(out / "metrics.json", metrics)
    print(f"tables: {md}; figure: {figure}; metrics: {path} (wall time {metrics['wall_s']:.1f} s)")
    return metrics


if __name__ == "__main__":
    main()
