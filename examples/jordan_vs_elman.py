"""Output-to-hidden (Jordan) recurrence against hidden-to-hidden (Elman): memory and parallelism.

T. Hitendra Sarma's lecture notes "Recurrent Neural Networks" (after Goodfellow, Bengio &
Courville, ch. 10) make two claims about the network whose only recurrence runs from the output
at one step to the hidden units at the next (models.OutputToHiddenRNN):

1. It "is strictly less powerful because it lacks hidden-to-hidden recurrent connections ...
   it requires that the output units capture all of the information about the past that the
   network will use to predict the future."
2. With teacher forcing, "all the time steps are decoupled. Training can thus be parallelized,
   with the gradient for each step t computed in isolation."

Part 1 trains both networks (same hidden size, Adam, --seeds seeds) on two tasks over random bit
strings x_1..x_T (each step's input: the bit, and a flag marking the last step), with three
output classes (0, 1 and a fixed 'blank'):

    running-parity   y_t = x_1 xor ... xor x_t at every step: the output carries the state
    final-parity     y_t = blank for t < T, y_T = the parity of all T bits: the outputs before
                     the last are fixed, so they carry nothing about the bits
    running-recall   y_t = x_1 at every step (the output carries the bit to remember)
    final-recall     y_t = blank for t < T, y_T = x_1 (it must be remembered elsewhere)

The Elman net (models.ElmanRNN) trains by BPTT, the Jordan net teacher-forced (the previous
target fed back, all steps in one pass); both are tested on fresh strings, the Jordan net also
running free (its own previous prediction fed back). Chance on the final tasks is 50%.

Part 2 measures claim 2 on one Jordan net in float64: the gradient of the teacher-forced loss
computed in one batched pass over all T steps against a step-by-step unroll that feeds the same
targets (their largest difference), and the CPU time of forward + backward of each (median
of --repeats, in this process, after a warm-up), at --time-T steps.

    python examples/jordan_vs_elman.py            # a few CPU minutes
    python examples/jordan_vs_elman.py --quick    # seconds (the test suite runs this)

Writes to --out (default examples/results/jordan_vs_elman/): runs/, results.md, metrics.json,
jordan_vs_elman.png.
"""

import argparse
import time

import bootstrap  # noqa: F401  (before NumPy: one BLAS thread, the repository importable)
import numpy as np
from common import (
    add_common_arguments,
    markdown_table,
    output_folder,
    pyplot,
    save_figure,
    write_json,
    write_text,
)
from study_runs import RunStore, run_each

import minigrad as mg
import minigrad.nn.functional as F
import minigrad.optim as optim
from models import ElmanRNN, OutputToHiddenRNN
from models.elman import matvec

NAME = "jordan_vs_elman"
NETS = {"elman": "Elman (hidden-to-hidden)", "jordan": "Jordan (output-to-hidden)"}
TASKS = {
    "running-parity": "parity so far, every step",
    "final-parity": "parity, last step only",
    "running-recall": "first bit, every step",
    "final-recall": "first bit, last step only",
}
BLANK = 2


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_common_arguments(p, NAME)
    p.add_argument("--T", type=int, help="bits per string (default 8)")
    p.add_argument("--hidden", type=int, help="hidden units of both nets (default 32)")
    p.add_argument("--steps", type=int, help="updates per run (default 3000)")
    p.add_argument("--batch", type=int, default=64, help="strings per update (default 64)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3)")
    p.add_argument("--seeds", type=int, help="seeds per net and task (default 3)")
    p.add_argument("--time-T", type=int, help="steps of the timed sequences (default 256)")
    p.add_argument("--repeats", type=int, help="timed repeats (default 20)")
    args = p.parse_args(argv)
    full = dict(T=8, hidden=32, steps=3000, seeds=3, time_T=256, repeats=20)
    quick = dict(T=4, hidden=16, steps=300, seeds=1, time_T=32, repeats=3)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def bits_batch(task, T, B, rng):
    """x (T, B, 3): the bit one-hot, and a flag on the last step (so that neither net needs to
    count steps to know where the answer is due); y (T, B) classes: the task's answer at every
    step ('running-'), or blanks then the answer ('final-')."""
    bits = rng.integers(0, 2, (T, B))
    when, what = task.split("-")
    answer = np.cumsum(bits, axis=0) % 2 if what == "parity" else np.broadcast_to(bits[0], (T, B))
    last = np.arange(T)[:, None] == T - 1
    y = answer if when == "running" else np.where(last, answer, BLANK)
    x = np.zeros((T, B, 3), mg.get_default_dtype())
    x[..., :2] = np.eye(2)[bits]
    x[-1, :, 2] = 1.0
    return x, y.astype(np.int64)


def make_net(kind, hidden):
    cls = ElmanRNN if kind == "elman" else OutputToHiddenRNN
    return cls(3, hidden, 3)


def logits(net, kind, x, y=None):
    """The net's outputs (T, B, 3): Elman by BPTT; Jordan teacher-forced given y, else free."""
    return net(mg.tensor(x))[0] if kind == "elman" else net(mg.tensor(x), y)


def accuracy(net, kind, task, T, rng, n=2000, teacher=True) -> float:
    """Test accuracy: on every step (running tasks) or on the last step (final tasks)."""
    x, y = bits_batch(task, T, n, rng)
    with mg.no_grad():
        pred = logits(net, kind, x, y if teacher else None).numpy().argmax(-1)
    every = task.startswith("running")
    return float((pred == y).mean() if every else (pred[-1] == y[-1]).mean())


def train(store, key, kind, task, seed, args) -> dict:
    mg.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = make_net(kind, args.hidden)
    opt = optim.Adam(net.parameters(), lr=args.lr)
    cpu0, curve = time.process_time(), []
    for step in range(1, args.steps + 1):
        x, y = bits_batch(task, args.T, args.batch, rng)
        loss = F.cross_entropy(logits(net, kind, x, y).reshape(-1, 3), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            curve.append([step, loss.item()])
    test = np.random.default_rng(seed + 10_000)
    result = dict(
        net=kind,
        task=task,
        seed=seed,
        steps=args.steps,
        parameters=sum(p.numel() for p in net.parameters()),
        accuracy=accuracy(net, kind, task, args.T, test),
        cpu_s=time.process_time() - cpu0,
        curve=curve,
    )
    if kind == "jordan":
        result["accuracy_free_running"] = accuracy(net, kind, task, args.T, test, teacher=False)
    return store.finish(key, result)


# ----- part 2: the teacher-forced gradient, batched against step by step -----------------------
def unrolled_teacher_forced(net, x, y_vectors):
    """The same outputs as net.teacher_forced, one step at a time (what BPTT would do)."""
    U, W, V, b, c = net.U, net.W, net.V, net.b, net.c
    fed, outputs = mg.zeros(x.shape[1], net.output_size, dtype=x.dtype), []
    for t in range(x.shape[0]):
        h = (b + matvec(W, fed) + matvec(U, x[t])).tanh()
        outputs.append(c + matvec(V, h))
        fed = y_vectors[t]
    return mg.stack(outputs)


def gradient_and_time(net, x, y, y_vectors, route, repeats):
    """Gradients of the summed cross-entropy by `route` and the median forward+backward time."""

    def once():
        for p in net.parameters():
            p.grad = None
        o = net.teacher_forced(x, y_vectors) if route == "batched" else None
        o = o if o is not None else unrolled_teacher_forced(net, x, y_vectors)
        F.cross_entropy(o.reshape(-1, 3), y.reshape(-1), reduction="sum").backward()
        return {n: np.array(np.asarray(p.grad)) for n, p in net.named_parameters()}

    grads = once()  # warm-up, and the gradient compared
    times = []
    for _ in range(repeats):
        t0 = time.process_time()  # CPU time: other jobs on the machine do not count
        once()
        times.append(time.process_time() - t0)
    return grads, float(np.median(times))


def parallel_check(args) -> dict:
    previous = mg.get_default_dtype()
    mg.set_default_dtype(mg.float64)
    try:
        mg.manual_seed(args.seed)
        net = OutputToHiddenRNN(3, 64, 3)
        x, y = bits_batch("running-parity", args.time_T, 32, np.random.default_rng(args.seed))
        y_vectors = mg.tensor(np.eye(3)[y])
        x = mg.tensor(x)
        batched, t_batched = gradient_and_time(net, x, y, y_vectors, "batched", args.repeats)
        stepwise, t_step = gradient_and_time(net, x, y, y_vectors, "stepwise", args.repeats)
    finally:
        mg.set_default_dtype(previous)
    diff = {n: float(np.abs(batched[n] - stepwise[n]).max()) for n in batched}
    scale = max(float(np.abs(g).max()) for g in batched.values())
    return dict(
        T=args.time_T,
        batch=32,
        hidden=64,
        dtype="float64",
        max_abs_diff=diff,
        max_abs_grad=scale,
        batched_s=t_batched,
        stepwise_s=t_step,
        speedup=t_step / t_batched,
    )


# ----- report ------------------------------------------------------------------------------------
def summary(results, args):
    rows, verdicts = [], {}
    for task in TASKS:
        for kind in NETS:
            rs = [results.get(f"{kind}-{task}-s{s}") for s in range(args.seeds)]
            rs = [r for r in rs if r]
            if not rs:
                continue
            acc = [r["accuracy"] for r in rs]
            free = [r.get("accuracy_free_running") for r in rs if kind == "jordan"]
            rows.append(
                [
                    TASKS[task],
                    NETS[kind],
                    rs[0]["parameters"],
                    ", ".join(f"{a:.3f}" for a in acc),
                    ", ".join(f"{a:.3f}" for a in free) if free else "-",
                    f"{np.mean([r['cpu_s'] for r in rs]):.0f}",
                ]
            )
            verdicts[f"{kind}-{task}"] = dict(min=min(acc), max=max(acc), runs=len(acc))
    headers = ["task", "net", "parameters", "test accuracy per seed", "running free", "CPU s"]
    return markdown_table(headers, rows), verdicts


def plot(results, args, out):
    plt = pyplot()
    if plt is None or not results:
        return None
    fig, axes = plt.subplots(1, len(TASKS), figsize=(4.2 * len(TASKS), 3.8), sharey=True)
    for ax, task in zip(axes, TASKS, strict=True):
        for i, kind in enumerate(NETS):
            for s in range(args.seeds):
                r = results.get(f"{kind}-{task}-s{s}")
                if r and r["curve"]:
                    steps, loss = np.array(r["curve"]).T
                    ax.plot(steps, loss, color=f"C{i}", alpha=0.7, label=NETS[kind] * (s == 0))
        ax.set(xlabel="update", title=f"{TASKS[task]} (T = {args.T})")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("training cross-entropy (nats/step)")
    axes[0].legend(fontsize=8)
    return save_figure(fig, out / f"{NAME}.png")


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = output_folder(args.out, NAME, args.quick)
    started = time.perf_counter()
    keys = [(f"{kind}-{task}", s) for s in range(args.seeds) for task in TASKS for kind in NETS]
    run_each(
        out,
        keys,
        60.0,
        lambda store, key, name, s: train(store, key, *name.split("-", 1), 100 * s + 1, args),
        lambda r: f"test accuracy {r['accuracy']:.3f}, {r['cpu_s']:.0f} CPU s",
    )
    wanted = {f"{name}-s{s}" for name, s in keys}
    results = {k: r for k, r in RunStore(out).results().items() if k in wanted}
    table, verdicts = summary(results, args)
    par = parallel_check(args)
    worst = max(par["max_abs_diff"].values())
    text = (
        f"T = {args.T} bits, {args.hidden} hidden units, {args.steps} updates of "
        f"{args.batch} strings, Adam lr {args.lr:g}; test on 2,000 fresh strings "
        "(running tasks: every step; final tasks: the last step, chance 0.5).\n\n"
        f"{table}\n\nTeacher forcing in one batched pass against a step-by-step unroll "
        f"(Jordan net, T = {par['T']}, batch 32, 64 hidden units, float64): largest gradient "
        f"difference {worst:.2e} (largest gradient entry {par['max_abs_grad']:.3g}); forward + "
        f"backward {1e3 * par['batched_s']:.2f} ms batched, {1e3 * par['stepwise_s']:.2f} ms "
        f"step by step: {par['speedup']:.1f}x (median of {args.repeats}, CPU time)."
    )
    print(text)
    write_text(out / "results.md", f"# Jordan against Elman recurrence\n\n{text}\n")
    figure = plot(results, args, out)
    metrics = dict(
        example=NAME,
        quick=args.quick,
        complete=len(results) == len(keys),
        settings={k: str(v) if k == "out" else v for k, v in vars(args).items()},
        accuracy=verdicts,
        runs=list(results.values()),
        teacher_forcing_parallel=par,
        tables=text,
        figure=None if figure is None else figure.name,
        wall_s=time.perf_counter() - started,
    )
    write_json(out / "metrics.json", metrics)
    print(f"wrote {out / 'results.md'}, {out / 'metrics.json'}, figure {figure}")
    return metrics


if __name__ == "__main__":
    main()
