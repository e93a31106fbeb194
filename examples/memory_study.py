"""How long can each cell remember, at a real budget? The adding problem and the copy task at
T = 50 ... 1000, three seeds per length, with the settings the literature found to matter.

Minlie Huang's lecture slides "Recurrent Neural Networks" (Tsinghua University) give an
"empirical feasible length" of RNN 100, LSTM 500, GRU 1000 steps, without task or protocol.
`memory_tasks.py` shows the tasks at a budget of 1,500 updates and one seed; this study asks
the question properly and says for what budget each answer holds.

Tasks (the generators of memory_tasks.py; a fixed held-out set of --test sequences decides):
  adding  Arjovsky, Shah & Bengio (2016)'s placement of Le, Jaitly & Hinton (2015)'s adding
          problem: one marker uniform in the first half, one in the second; target the sum of
          the two marked numbers, read from the last state. Solved: test MSE < 0.01 (predicting
          1 gives 0.167).
  copy    Arjovsky et al. (2016)'s copying memory (after Hochreiter & Schmidhuber 1997):
          --copy-symbols S symbols of 8, a delay of T, then recall; cross-entropy on the S
          recall steps. Solved: recall accuracy > 0.95 (chance 0.125).

Settings (--settings; each one cell with its initialisation and optimiser):
  rnn          tanh RNN, PyTorch's U(-1/sqrt(H), 1/sqrt(H)) init, Adam (--lr), clip (--clip)
  rnn-orth     the tanh RNN with an orthogonal W_hh (Saxe, McClelland & Ganguli 2014; the rest
               PyTorch's init): every singular value 1, so a gradient is not shrunk by W_hh on
               its way back, only by tanh's derivative (not in the default study)
  irnn         ReLU RNN with W_hh = I, b = 0, input weights N(0, 0.001^2) (Le et al. 2015), Adam
  irnn-sgd     the IRNN trained as Le et al. (2015) trained it: plain SGD with gradient
               clipping (--sgd-lr, --sgd-clip; they searched both per task)
  lstm         LSTM with forget-gate bias 1 (Gers et al. 2000; Jozefowicz et al. 2015), Adam
  lstm-b0      LSTM with PyTorch's init (forget gate near 0.5 at the start), Adam
  lstm-chrono  LSTM with chrono initialisation for t_max = the task's lag (Tallec & Ollivier
               2018), Adam
  gru          GRU, PyTorch's init, Adam

Budget: each run stops when it solves the task (tested every --eval-every updates) or after
--steps updates or --cpu-budget CPU seconds, whichever comes first. The lengths run from short
to long, all settings and seeds at one length before the next; a setting goes on to a longer
length only while it solved the previous one in a majority of seeds (--stop-rule majority),
or in at least one (--stop-rule all), and a seed is skipped once the majority cannot be
reached. So the budget is spent where the answer is undecided: near each cell's limit.

    python examples/memory_study.py            # the default study (many CPU hours; resumable)
    python examples/memory_study.py            # again: skips finished runs, resumes the rest
    python examples/memory_study.py --report   # tables and figures of what is finished
    python examples/memory_study.py --quick    # seconds (the test suite runs this)

Writes to --out (default examples/results/memory_study/, memory_study-quick/ with --quick):
runs/ (one JSON per finished run, checkpoints of unfinished ones), results.md, metrics.json,
memory_study.png, and study.json: the settings that define a run (hidden size, batch, learning
rates, clips, budget of updates, test set). A folder takes runs of one such set only; a command
with other values is refused, naming them. Without --out, an Adam learning rate other than the
default 1e-3 gets its own subfolder, lr<value>/ of the default folder, so its runs stay out of
the default table:

    python examples/memory_study.py --tasks adding --settings rnn --lengths 100 200 --seeds 2 \
        --lr 1e-2                     # writes examples/results/memory_study/lr0.01/
"""

import argparse
import json
import math
import time
from pathlib import Path

import bootstrap  # noqa: F401  (before NumPy: one BLAS thread, the repository importable)
import numpy as np
from common import (
    add_common_arguments,
    output_folder,
    pyplot,
    save_figure,
    write_json,
    write_text,
)
from memory_schedule import (
    CLAIM,
    DEFAULT_SETTINGS,
    LABELS,
    SETTINGS,
    cell_text,
    eligible,
    lengths_of,
    longest,
    plan,
    report,
    run_key,
)
from memory_tasks import Task
from study_runs import Run, RunStore, Stop, flushed_denormals, rng_from_state, rng_state

import minigrad as mg
import minigrad.nn as nn
import minigrad.optim as optim
from models import GRU, IRNN, LSTM, RNN, chrono_init_, forget_bias_init_

NAME = "memory_study"
DEFAULT_LR = 1e-3
# What a run is: the runs of one folder share these, or its tables would mix them.
RUN_DEFINING = ("hidden", "batch", "lr", "clip", "sgd_lr", "sgd_clip", "steps", "eval_every")
RUN_DEFINING += ("test", "copy_symbols")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_common_arguments(p, NAME)
    p.add_argument("--tasks", nargs="+", choices=("adding", "copy"), default=["adding", "copy"])
    p.add_argument("--settings", nargs="+", choices=SETTINGS, default=DEFAULT_SETTINGS)
    p.add_argument("--lengths", type=int, nargs="+", help="adding: T (50 100 200 500 1000)")
    p.add_argument(
        "--copy-lengths", type=int, nargs="+", help="copy: T (10 25 50 100 200 500 1000)"
    )
    p.add_argument("--seeds", type=int, help="seeds per length (default 3)")
    p.add_argument("--steps", type=int, help="most updates per run (default 20000)")
    p.add_argument(
        "--cpu-budget",
        type=float,
        help="most CPU seconds per run (default 3600, a safeguard: --steps should bind)",
    )
    p.add_argument("--hidden", type=int, help="hidden units (default 64)")
    p.add_argument("--batch", type=int, help="sequences per update (default 32)")
    p.add_argument("--lr", type=float, default=DEFAULT_LR, help="Adam learning rate (1e-3)")
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip (default 1)")
    p.add_argument("--sgd-lr", type=float, default=1e-2, help="irnn-sgd learning rate (1e-2)")
    p.add_argument("--sgd-clip", type=float, default=1.0, help="irnn-sgd clip (default 1)")
    p.add_argument("--eval-every", type=int, help="test every N updates (default 100)")
    p.add_argument("--test", type=int, help="held-out sequences (default 1000)")
    p.add_argument("--copy-symbols", type=int, default=10, help="S, symbols to copy (10)")
    p.add_argument("--stop-rule", choices=("majority", "all"), default="majority")
    p.add_argument("--ckpt-seconds", type=float, default=60.0, help="checkpoint every N CPU s")
    p.add_argument("--report", action="store_true", help="only tabulate the finished runs")
    args = p.parse_args(argv)
    full = dict(lengths=[50, 100, 200, 500, 1000], copy_lengths=[10, 25, 50, 100, 200, 500, 1000])
    full.update(seeds=3, steps=20000, cpu_budget=3600.0)
    full.update(hidden=64, batch=32, eval_every=100, test=1000)
    quick = dict(
        lengths=[4, 8], copy_lengths=[4, 8], seeds=2, steps=30, cpu_budget=60.0, hidden=8, batch=8
    )
    quick.update(eval_every=10, test=32, copy_symbols=3)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key, None) is None or (args.quick and key == "copy_symbols"):
            setattr(args, key, value)
    for lengths in (args.lengths, args.copy_lengths):
        if sorted(set(lengths)) != lengths or min(lengths) < 2:
            p.error("--lengths and --copy-lengths must be increasing and at least 2")
    args.copy_loss = "recall"
    return args


# ----- one run -------------------------------------------------------------------------------
class Model(nn.Module):
    def __init__(self, setting, task: Task, hidden: int):
        super().__init__()
        n_in, lag = task.input_size, task.T + (task.S if task.name == "copy" else 0)
        if setting in ("rnn", "rnn-orth"):
            self.rnn = RNN(n_in, hidden)
            if setting == "rnn-orth":
                nn.init.orthogonal_(self.rnn.weight_hh_l0)
        elif setting.startswith("irnn"):
            self.rnn = IRNN(n_in, hidden, input_std=0.001)
        elif setting.startswith("lstm"):
            self.rnn = LSTM(n_in, hidden)
            if setting == "lstm":
                forget_bias_init_(self.rnn, 1.0)
            elif setting == "lstm-chrono":
                chrono_init_(self.rnn, max(lag, 3))
        else:
            self.rnn = GRU(n_in, hidden)
        self.head = nn.Linear(hidden, task.output_size)
        self.read = 1 if task.name == "adding" else task.S  # steps read out at the end

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[-self.read :])


def train(store, key, setting, task: Task, args, seed) -> dict:
    run = Run(store, key)
    mg.manual_seed(seed)
    model = Model(setting, task, args.hidden)
    if setting == "irnn-sgd":
        opt, clip = optim.SGD(model.parameters(), lr=args.sgd_lr), args.sgd_clip
    else:
        opt, clip = optim.Adam(model.parameters(), lr=args.lr), args.clip
    rng, step, curve, metric = np.random.default_rng(seed), 0, [], math.nan
    if run.resumed:
        s = run.saved
        model.load_state_dict(s["model"])
        opt.load_state_dict(s["optim"])
        rng, step, curve = rng_from_state(s["rng"]), int(s["step"]), [list(c) for c in s["curve"]]
        metric = curve[-1][2] if curve else math.nan
    norm = math.nan
    state = lambda: dict(
        model=model.state_dict(),
        optim=opt.state_dict(),
        rng=rng_state(rng),
        step=step,
        curve=curve,
    )
    x_test, y_test = task.test_set
    solved_at, diverged, stopped_by = None, False, "steps"
    while step < args.steps:
        if run.cpu_s() >= args.cpu_budget:
            stopped_by = "cpu"
            break
        x, y = task.batch(args.batch, rng)
        with np.errstate(over="ignore", invalid="ignore"):  # a blow-up is a result, not a crash
            out = model(mg.tensor(x))
            loss = task.loss(out, y[-model.read :] if task.name == "copy" else y)
            value = loss.item()
            if math.isfinite(value):
                opt.zero_grad()
                loss.backward()
                norm = nn.utils.clip_grad_norm_(model.parameters(), clip)
        if not (math.isfinite(value) and math.isfinite(norm)):
            diverged, stopped_by = True, "diverged"
            break
        opt.step()
        step += 1
        if step % args.eval_every == 0 or step == args.steps:
            with mg.no_grad(), np.errstate(over="ignore", invalid="ignore"):
                metric = evaluate(model, task, x_test, y_test, args.batch)
            curve.append([step, value, metric])
            if task.solved(metric):
                solved_at, stopped_by = step, "solved"
                break
        run.tick(state)
    return store.finish(
        key,
        dict(
            task=task.name,
            setting=setting,
            T=task.T,
            seed=seed,
            solved=solved_at is not None,
            solved_at_step=solved_at,
            steps=step,
            test_metric=metric,
            diverged=diverged,
            stopped_by=stopped_by,
            cpu_s=run.cpu_s(),
            curve=curve,
        ),
    )


def evaluate(model, task, x_test, y_test, batch) -> float:
    """The test metric, computed in slices of 8 batches (bounded memory at T = 1000)."""
    outs = [
        model(mg.tensor(x_test[:, i : i + 8 * batch])).numpy()
        for i in range(0, len(x_test[0]), 8 * batch)
    ]
    out = np.concatenate(outs, axis=1)
    if task.name == "adding":
        return float(np.mean((out[-1] - y_test) ** 2))
    return float(np.mean(out.argmax(-1) == y_test[-task.S :]))


def run_study(args, out: Path) -> None:
    """Run the first eligible run of the plan, again and again. Other processes started with
    the same command share the work: a run one of them holds is skipped (and waited for when
    nothing else is left)."""
    store = RunStore(out, every_s=args.ckpt_seconds)
    with store.stopping():
        while True:
            ran, held_elsewhere = False, False
            results = store.results()
            for task_name, setting, T, seed in plan(args):
                key = run_key(task_name, setting, T, seed)
                if key in results or not eligible(results, task_name, setting, T, seed, args):
                    continue
                with store.claim(key) as mine:
                    if not mine:
                        held_elsewhere = True
                        continue
                    resuming = store.checkpoint_path(key).exists()
                    print(f"{key}: {'resuming' if resuming else 'starting'}", flush=True)
                    task = Task(task_name, T, args, np.random.default_rng(10_000 + T))
                    r = train(store, key, setting, task, args, 1000 * seed + T)
                    print(
                        f"{key}: {cell_text(r)}, {r['steps']} updates, {r['cpu_s']:.0f} CPU s "
                        f"(stopped by {r['stopped_by']})",
                        flush=True,
                    )
                    ran = True
                    break  # from the top: what is eligible may have changed
            if not ran:
                if not held_elsewhere:
                    return
                time.sleep(30)


def plot(results, args, out: Path):
    plt = pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(
        1, len(args.tasks), figsize=(6.5 * len(args.tasks), 4.8), squeeze=False
    )
    for ax, task in zip(axes[0], args.tasks, strict=True):
        for setting in args.settings:
            pts = [
                (r["T"], r["solved_at_step"])
                for r in results.values()
                if r["task"] == task and r["setting"] == setting and r["solved"]
            ]
            color = f"C{SETTINGS.index(setting)}"  # one colour per setting in both panels
            failed = [
                (r["T"], r["steps"])
                for r in results.values()
                if r["task"] == task and r["setting"] == setting and not r["solved"]
            ]
            if failed:  # where each unsolved run stopped (the CPU cap can come first)
                label = None if pts else f"{LABELS[setting]} (solved nothing)"
                ax.plot(*np.array(failed).T, "x", color=color, alpha=0.7, label=label)
            if not pts:
                continue
            T, n = np.array(pts).T
            ax.plot(T, n, "o", alpha=0.5, color=color)
            Ts = sorted(set(T))
            median = [np.median(n[T == t]) for t in Ts]
            ax.plot(Ts, median, "o-" if len(Ts) == 1 else "-", color=color, label=LABELS[setting])
        ax.axhline(args.steps, color="gray", ls=":", label=f"update budget {args.steps:,}")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="length T",
            ylabel="updates to solve",
            title=f"{task}: updates to solve (dots; line: median), x: unsolved",
        )
        ax.set_xticks(lengths_of(args, task), [str(T) for T in lengths_of(args, task)])
        ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return save_figure(fig, out / "memory_study.png")


def main(argv=None) -> dict:
    with flushed_denormals() as ftz:  # 10x faster long-lag backward; see study_runs
        return study(parse_args(argv), ftz)


def study_folder(args) -> Path:
    """--out, else the default folder, or its subfolder lr<value>/ for a learning rate other
    than the default (kept apart: a folder's table is one learning rate's)."""
    out = output_folder(args.out, NAME, args.quick)
    if args.out is None and args.lr != DEFAULT_LR:
        out = output_folder(out / f"lr{args.lr:g}", NAME)
    return out


def check_folder(out: Path, args) -> None:
    """Record the run-defining settings in study.json at a folder's first use; afterwards
    refuse (naming them) settings that differ, before any run is trained or tabulated."""
    path, mine = out / "study.json", {k: getattr(args, k) for k in RUN_DEFINING}
    if not path.exists():
        write_json(path, mine)
        return
    saved = json.loads(path.read_text())
    differ = [
        f"--{k.replace('_', '-')} {mine[k]:g} (its runs: {saved[k]:g})"
        for k in RUN_DEFINING
        if k in saved and saved[k] != mine[k]
    ]
    if differ:
        raise SystemExit(
            f"{NAME}: {out} holds runs of other settings: {', '.join(differ)}; "
            "give another --out (or leave --out out: a learning rate gets its own folder)"
        )


def study(args, ftz) -> dict:
    out = study_folder(args)
    check_folder(out, args)
    started = time.perf_counter()
    print(
        f"{NAME}: tasks {args.tasks}, settings {args.settings}, lengths {args.lengths} "
        f"(copy {args.copy_lengths}), "
        f"{args.seeds} seeds, at most {args.steps} updates / {args.cpu_budget:g} CPU s per run"
    )
    stopped = False
    if not args.report:
        try:
            run_study(args, out)
        except Stop as e:
            print(f"stopped: {e} checkpointed; run the same command to continue")
            stopped = True
    results = RunStore(out).results()
    keys = {run_key(*p) for p in plan(args)}
    results = {k: r for k, r in results.items() if k in keys}
    tables, complete = report(results, args)
    print("\n" + tables)
    write_text(out / "results.md", f"# Memory study\n\n{tables}\n")
    figure = plot(results, args, out)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    metrics = dict(
        example=NAME,
        quick=args.quick,
        flush_denormals=ftz,
        complete=complete,
        stopped=stopped,
        settings=settings,
        notes_claim=CLAIM,
        runs=sorted(results.values(), key=lambda r: (r["T"], r["seed"])),
        longest_solved={
            t: {s: longest(results, t, s, args) for s in args.settings} for t in args.tasks
        },
        cpu_s_total=sum(r["cpu_s"] for r in results.values()),
        tables=tables,
        figure=None if figure is None else figure.name,
        wall_s=time.perf_counter() - started,
    )
    write_json(out / "metrics.json", metrics)
    print(f"wrote {out / 'results.md'}, {out / 'metrics.json'}, figure {figure}")
    return metrics


if __name__ == "__main__":
    main()
