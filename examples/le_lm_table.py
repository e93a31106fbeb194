"""Le et al.'s language-model table at small scale: LSTM, IRNN and tanh RNN, deep or wide.

Alexandra Birch's lecture "Natural Language Understanding, Generation, and Machine Translation,
Lecture 5: Recurrent Neural Networks" quotes the table of Le, Jaitly & Hinton (2015, "A Simple
Way to Initialize Recurrent Networks of Rectified Linear Units"; word-level test perplexity):

    LSTM (1 layer, 512 units)                      68.8
    IRNN (4 layers, 512 units)                     69.4
    IRNN (1 layer, 1024 units + linear projection) 70.2
    RNN  (4 layers, 512 tanh units)                71.8
    RNN  (1 layer, 1024 tanh units + linear projection) 72.5

This study trains the same five kinds of model as character-level language models on
tiny-shakespeare (the main job's data and split: first 90% trains, last 10% validates), each
sized to the LSTM's parameter count (--lstm-hidden sets the scale), with the same step budget,
optimiser and seeds, and asks whether the table's ordering holds.

    embedding (65 -> --embed) -> recurrent part -> [linear projection] -> linear (-> 65)

lstm       one LSTM layer of --lstm-hidden units
irnn4      four ReLU layers, identity-initialised recurrent weights, zero biases (models.IRNN)
irnn1p     one wide IRNN layer, then a linear projection to half its width (no bias, no
           nonlinearity) before the output layer
rnn4       four tanh layers (PyTorch's init)
rnn1p      one wide tanh layer, then the same projection
gru        one GRU layer (not in Le et al.'s table: the notes' other gated cell, against the
           LSTM at the same parameter count, budget and seeds)

Training as the main job (truncated BPTT: --batch streams, --bptt characters per update, the
state carried across chunks), Adam (--lr) with gradient-norm clipping (--clip), --steps
updates; validation on the whole validation split every --eval-every updates. Runs are
resumable (examples/study_runs.py): rerunning the command continues where it stopped.

    python examples/le_lm_table.py            # 6 kinds x 3 seeds (CPU hours; resumable)
    python examples/le_lm_table.py --report   # the table of the finished runs
    python examples/le_lm_table.py --quick    # seconds (the test suite runs this)

Writes to --out (default examples/results/le_lm_table/; le_lm_table-quick/ with --quick):
runs/, results.md, metrics.json, le_lm_table.png.
"""

import argparse
import math
import time
from pathlib import Path

import bootstrap  # noqa: F401  (before NumPy: one BLAS thread, the repository importable)
import numpy as np
from common import (
    add_out_argument,
    markdown_table,
    output_folder,
    pyplot,
    save_figure,
    write_json,
    write_text,
)
from study_runs import Run, RunStore, flushed_denormals, run_each

import minigrad as mg
import minigrad.nn as nn
import minigrad.nn.functional as F
import minigrad.optim as optim
from models import GRU, IRNN, LSTM, RNN
from models.tbptt import detach_state

NAME = "le_lm_table"
DATA = Path(__file__).resolve().parent / "data" / "tinyshakespeare" / "input.txt"
TABLE_KINDS = ("lstm", "irnn4", "irnn1p", "rnn4", "rnn1p")  # the table's order, best first
KINDS = TABLE_KINDS + ("gru",)
LABELS = {
    "lstm": "LSTM, 1 layer",
    "irnn4": "IRNN, 4 layers",
    "irnn1p": "IRNN, 1 layer + projection",
    "rnn4": "tanh RNN, 4 layers",
    "rnn1p": "tanh RNN, 1 layer + projection",
    "gru": "GRU, 1 layer",
}
TABLE = {"lstm": 68.8, "irnn4": 69.4, "irnn1p": 70.2, "rnn4": 71.8, "rnn1p": 72.5}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_out_argument(p, NAME)
    p.add_argument("--quick", action="store_true", help="a seconds-long smoke run (tests)")
    p.add_argument("--no-progress", action="store_true", help="(no progress bars are drawn)")
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument("--seeds", type=int, help="seeds per kind (default 3)")
    p.add_argument("--steps", type=int, help="updates per run (default 10000)")
    p.add_argument("--embed", type=int, help="embedding size (default 64)")
    p.add_argument("--lstm-hidden", type=int, help="LSTM units; the others match (128)")
    p.add_argument("--batch", type=int, default=32, help="parallel streams (default 32)")
    p.add_argument("--bptt", type=int, help="characters per update (default 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip (default 1)")
    p.add_argument("--eval-every", type=int, help="validate every N updates (default 1000)")
    p.add_argument("--ckpt-seconds", type=float, default=60.0, help="checkpoint every N CPU s")
    p.add_argument("--report", action="store_true", help="only tabulate the finished runs")
    p.add_argument("--data", type=Path, default=DATA, help="a plain-text corpus")
    args = p.parse_args(argv)
    full = dict(seeds=3, steps=10000, embed=64, lstm_hidden=128, bptt=64, eval_every=1000)
    quick = dict(seeds=2, steps=6, embed=8, lstm_hidden=12, bptt=16, eval_every=3)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick:
        args.batch = min(args.batch, 4)
    return args


# ----- data ----------------------------------------------------------------------------------
def load_corpus(path: Path, quick: bool):
    """Character ids of the text; the first 90% train, the last 10% validate (as char_lm)."""
    text = path.read_text(encoding="utf-8")
    chars = sorted(set(text))
    index = {ch: i for i, ch in enumerate(chars)}
    ids = np.array([index[ch] for ch in text], dtype=np.int64)
    split = int(0.9 * len(ids))
    train, val = ids[:split], ids[split:]
    if quick:
        train, val = train[:3000], val[:800]
    return len(chars), train, val


def streams(ids, batch, bptt):
    """`batch` contiguous streams (B, L) and the number of whole chunks of bptt + 1 in them."""
    length = len(ids) // batch
    return ids[: batch * length].reshape(batch, length), (length - 1) // bptt


def chunk(data, k, bptt):
    start = k * bptt
    return data[:, start : start + bptt].T, data[:, start + 1 : start + bptt + 1].T


# ----- the five models ---------------------------------------------------------------------------
class CharLM(nn.Module):
    def __init__(self, kind, vocab, embed, hidden, layers, projection=None):
        super().__init__()
        self.kind = kind
        self.embedding = nn.Embedding(vocab, embed)
        if kind == "lstm":
            self.rnn = LSTM(embed, hidden, num_layers=layers)
        elif kind == "gru":
            self.rnn = GRU(embed, hidden, num_layers=layers)
        elif kind.startswith("irnn"):
            self.rnn = IRNN(embed, hidden, num_layers=layers)
        else:
            self.rnn = RNN(embed, hidden, num_layers=layers)
        self.projection = None if projection is None else nn.Linear(hidden, projection, bias=False)
        self.out = nn.Linear(projection or hidden, vocab)

    def forward(self, tokens, state=None):
        h, state = self.rnn(self.embedding(tokens), state)
        if self.projection is not None:
            h = self.projection(h)
        return self.out(h), state


def shapes(kind, lstm_hidden):
    """(hidden, layers, projection) of a kind before matching; the width is then searched."""
    return {
        "lstm": (lstm_hidden, 1, None),
        "gru": (lstm_hidden, 1, None),
        "irnn4": (lstm_hidden, 4, None),
        "rnn4": (lstm_hidden, 4, None),
        "irnn1p": (2 * lstm_hidden, 1, lstm_hidden),
        "rnn1p": (2 * lstm_hidden, 1, lstm_hidden),
    }[kind]


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def n_params(kind, vocab, embed, hidden, layers, projection=None) -> int:
    """The parameter count of CharLM(kind, ...), without building it."""
    gates = {"lstm": 4, "gru": 3}.get(kind, 1)
    rnn = sum(gates * hidden * ((embed if k == 0 else hidden) + hidden + 2) for k in range(layers))
    proj = 0 if projection is None else hidden * projection
    return vocab * embed + rnn + proj + ((projection or hidden) + 1) * vocab


def build(kind, vocab, args):
    """The kind's model with the width whose parameter count is closest to the LSTM's."""
    target = n_params("lstm", vocab, args.embed, args.lstm_hidden, 1)
    _, layers, proj = shapes(kind, args.lstm_hidden)
    if kind == "lstm":
        return CharLM(kind, vocab, args.embed, args.lstm_hidden, 1)

    def size(h):
        p = None if proj is None else max(1, h // 2)
        return abs(n_params(kind, vocab, args.embed, h, layers, p) - target), h, p

    _, h, p = min(size(h) for h in range(4, 8 * args.lstm_hidden, 2))
    return CharLM(kind, vocab, args.embed, h, layers, p)


def describe(model) -> str:
    layers, h = model.rnn.num_layers, model.rnn.hidden_size
    text = f"{layers} x {h}" if layers > 1 else f"{h}"
    if model.projection is not None:
        text += f" -> projection {model.projection.out_features}"
    return text


# ----- one run -----------------------------------------------------------------------------------
def evaluate(model, data, n_chunks, bptt) -> float:
    """Mean cross-entropy (nats per character) over the split, state carried across chunks."""
    state, total, n = None, 0.0, 0
    with mg.no_grad(), np.errstate(over="ignore", invalid="ignore"):
        for k in range(n_chunks):
            x, y = chunk(data, k, bptt)
            logits, state = model(mg.tensor(x), state)
            total += F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
            ).item()
            n += y.size
    return total / n


def train(store, key, kind, seed, corpus, args) -> dict:
    vocab, train_ids, val_ids = corpus
    run = Run(store, key)
    mg.manual_seed(seed)
    model = build(kind, vocab, args)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    train_data, n_train = streams(train_ids, args.batch, args.bptt)
    val_data, n_val = streams(val_ids, args.batch, args.bptt)
    step, state, curve, val_curve, running = 0, None, [], [], None
    if run.resumed:
        s = run.saved
        model.load_state_dict(s["model"])
        opt.load_state_dict(s["optim"])
        step, curve, val_curve = int(s["step"]), s["curve"], s["val_curve"]
        running = s["running"]
        state = None if s["state"] is None else tuple(mg.tensor(a) for a in s["state"])
        state = state if state is None or kind == "lstm" else state[0]
    snapshot = lambda: dict(
        model=model.state_dict(),
        optim=opt.state_dict(),
        step=step,
        curve=curve,
        val_curve=val_curve,
        running=running,
        state=None
        if state is None
        else [t.numpy() for t in (state if isinstance(state, tuple) else (state,))],
    )
    diverged = False
    while step < args.steps:
        k = step % n_train
        if k == 0:
            state = None  # each pass over the streams starts from a zero state
        x, y = chunk(train_data, k, args.bptt)
        norm = math.nan
        with np.errstate(over="ignore", invalid="ignore"):
            logits, state = model(mg.tensor(x), state)
            loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
            value = loss.item()
            if math.isfinite(value):
                opt.zero_grad()
                loss.backward()
                norm = nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        if not (math.isfinite(value) and math.isfinite(norm)):
            diverged = True
            break
        opt.step()
        state = detach_state(state if isinstance(state, tuple) else (state,))
        state = state if kind == "lstm" else state[0]
        step += 1
        running = value if running is None else 0.98 * running + 0.02 * value
        if step % 50 == 0:
            curve.append([step, running])
        if step % args.eval_every == 0 or step == args.steps:
            v = evaluate(model, val_data, n_val, args.bptt)
            val_curve.append([step, v])
            print(f"  {key} step {step}: validation {v / math.log(2):.4f} bits/char", flush=True)
            if not math.isfinite(v):
                diverged = True
                break
        run.tick(snapshot)
    final = val_curve[-1][1] if val_curve and not diverged else math.nan
    return store.finish(
        key,
        dict(
            kind=kind,
            seed=seed,
            shape=describe(model),
            parameters=count(model),
            steps=step,
            diverged=diverged,
            val_nats=final,
            val_bpc=final / math.log(2),
            cpu_s=run.cpu_s(),
            curve=curve,
            val_curve=val_curve,
        ),
    )


# ----- report ------------------------------------------------------------------------------------
def summary(results, args):
    rows, means = [], {}
    for kind in args.kinds:
        rs = [results.get(f"{kind}-s{s}") for s in range(args.seeds)]
        rs = [r for r in rs if r]
        bpc = [r["val_bpc"] for r in rs if not r["diverged"]]
        if bpc:
            means[kind] = float(np.mean(bpc))
        spread = (
            f"{np.mean(bpc):.4f} ± {np.std(bpc, ddof=1):.4f}"
            if len(bpc) > 1
            else (f"{bpc[0]:.4f}" if bpc else "-")
        )
        seeds = ", ".join("diverged" if r["diverged"] else f"{r['val_bpc']:.4f}" for r in rs)
        shape = rs[0]["shape"] if rs else "-"
        params = f"{rs[0]['parameters']:,}" if rs else "-"
        cpu = f"{np.mean([r['cpu_s'] for r in rs]):.0f}" if rs else "-"
        rows.append(
            [
                LABELS[kind],
                shape,
                params,
                f"{len(rs)}/{args.seeds}",
                spread,
                seeds or "-",
                cpu,
                TABLE.get(kind, "-"),
            ]
        )
    return rows, means


def ordering(means, results, args) -> str:
    """Whether the measured order of the kinds is the table's, pair by pair (then the GRU)."""
    gru = gated_pair(means, results, args)
    kinds = [k for k in args.kinds if k in means and k in TABLE]
    if len(kinds) < 2:
        return "\n".join(["Too few finished kinds of the table to compare orderings."] + gru)
    measured = sorted(kinds, key=lambda k: means[k])
    lines = [
        "Measured order (lowest validation bits/char first): "
        + " < ".join(LABELS[k] for k in measured),
        "The table's order: " + " < ".join(LABELS[k] for k in TABLE_KINDS if k in kinds),
    ]
    agree, total = 0, 0
    for i, a in enumerate(kinds):
        for b in kinds[i + 1 :]:
            total += 1
            table_says = TABLE[a] < TABLE[b]
            sep = separated(results, a, b, args)
            holds = (means[a] < means[b]) == table_says
            agree += holds
            if not holds:
                better, worse = (a, b) if table_says else (b, a)
                lines.append(
                    f"- reversed: the table ranks {LABELS[better]} ahead of {LABELS[worse]}; "
                    "here it is behind" + sep
                )
    lines.append(f"{agree} of {total} pairs in the table's order.")
    return "\n".join(lines + gru)


def gated_pair(means, results, args) -> list:
    """The GRU against the LSTM (not a pair of Le et al.'s table), when both have runs."""
    if "gru" not in means or "lstm" not in means:
        return []
    gap = means["gru"] - means["lstm"]
    ahead = "GRU, 1 layer" if gap < 0 else "LSTM, 1 layer"
    return [
        f"GRU against LSTM: {ahead} ahead by {abs(gap):.4f} bits/char (means)"
        + separated(results, "gru", "lstm", args)
        + "."
    ]


def separated(results, a, b, args) -> str:
    """' (every seed)' if every seed of one kind is below every seed of the other (two seeds
    each at least), ' (seeds overlap)', or ' (one seed so far)'."""
    va, vb = (
        [
            r["val_bpc"]
            for s in range(args.seeds)
            if (r := results.get(f"{k}-s{s}")) and not r["diverged"]
        ]
        for k in (a, b)
    )
    if min(len(va), len(vb)) < 2:
        return " (one seed so far)"
    return " (every seed)" if max(va) < min(vb) or max(vb) < min(va) else " (seeds overlap)"


def plot(results, args, out):
    plt = pyplot()
    if plt is None or not any(r["val_curve"] for r in results.values()):
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, kind in enumerate(args.kinds):
        for s in range(args.seeds):
            r = results.get(f"{kind}-s{s}")
            if r and r["val_curve"]:
                steps, v = np.array(r["val_curve"]).T
                ax.plot(
                    steps,
                    v / math.log(2),
                    "o-",
                    color=f"C{i}",
                    alpha=0.7,
                    label=LABELS[kind] if s == 0 else None,
                )
    ax.set(
        xlabel="update",
        ylabel="validation bits/char",
        title="Le et al.'s five kinds and a GRU as char-level LMs (each seed a line)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, out / "le_lm_table.png")


def main(argv=None) -> dict:
    with flushed_denormals() as ftz:  # 10x faster long-lag backward; see study_runs
        return study(parse_args(argv), ftz)


def study(args, ftz) -> dict:
    out = output_folder(args.out, NAME, args.quick)
    started = time.perf_counter()
    corpus = load_corpus(args.data, args.quick)
    print(
        f"{NAME}: kinds {args.kinds}, {args.seeds} seeds, {args.steps} updates of "
        f"{args.batch}x{args.bptt} characters each"
    )
    keys = [(kind, s) for s in range(args.seeds) for kind in args.kinds]
    stopped = not args.report and run_each(
        out,
        keys,
        args.ckpt_seconds,
        lambda store, key, kind, s: train(store, key, kind, 1000 * s + 7, corpus, args),
        lambda r: (
            f"{r['shape']}, {r['parameters']:,} parameters, "
            f"{r['val_bpc']:.4f} bits/char, {r['cpu_s']:.0f} CPU s"
        ),
    )
    results = {
        k: r
        for k, r in RunStore(out).results().items()
        if tuple(k.rsplit("-s", 1)) in {(kd, str(s)) for kd, s in keys}
    }
    rows, means = summary(results, args)
    done = len(results)
    status = (
        "all runs done" if done == len(keys) else f"**partial: {done} of {len(keys)} runs done**"
    )
    table = markdown_table(
        [
            "model",
            "shape",
            "parameters",
            "runs",
            "val bits/char (mean ± sd)",
            "per seed",
            "CPU s/run",
            "Le et al. perplexity",
        ],
        rows,
    )
    text = (
        f"Budget: {args.steps:,} updates of {args.batch} x {args.bptt} characters per run, "
        f"Adam lr {args.lr:g}, clip {args.clip:g}, embedding {args.embed}; {status}.\n\n"
        f"{table}\n\n{ordering(means, results, args)}"
    )
    print("\n" + text)
    write_text(out / "results.md", f"# Le et al.'s table as char-level LMs\n\n{text}\n")
    figure = plot(results, args, out)
    metrics = dict(
        example=NAME,
        quick=args.quick,
        flush_denormals=ftz,
        complete=done == len(keys),
        stopped=stopped,
        settings={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        le_et_al_perplexity=TABLE,
        mean_val_bpc=means,
        runs=list(results.values()),
        tables=text,
        figure=None if figure is None else figure.name,
        wall_s=time.perf_counter() - started,
    )
    write_json(out / "metrics.json", metrics)
    print(f"wrote {out / 'results.md'}, {out / 'metrics.json'}, figure {figure}")
    return metrics


if __name__ == "__main__":
    main()
