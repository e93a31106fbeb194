"""Long-distance agreement ("the cat ... was" / "the cats ... were") in a trained language model.

T. Hitendra Sarma's lecture notes "Recurrent Neural Networks" give the example "The cat which
already ate ... was full" / "The cats which ... were full": to choose was or were, the network
must remember whether the subject was singular or plural across everything in between, which
"the basic RNN" finds hard (vanishing gradients) and gated cells make possible; Pranav Kant
Gaur's "Recurrent neural networks: An Introduction" uses the same singular/plural example for
the LSTM's cell state. This program measures it on a **synthetic grammar**, not English:

    the NOUN s_1 ... s_d VERB .

NOUN is one of four singular or four plural nouns (half each), each s_i a filler word (of 10)
or, with probability --attractors, an attractor noun of random number, VERB is 'was' after a
singular subject and 'were' after a plural one. A word-level LM (embedding 16, one recurrent
layer, a linear output) learns it by next-word prediction, the distractor length d of every
batch drawn uniformly from a training range (--spans): 0-16, where short spans give the
gradient a short path from the verb back to the subject, 8-16 and 16-32, where every path is
at least 8 or 16 steps long. At test, for each d from 0 to 8 times the longest trained d
(outside the range trained on is extrapolation), 1,000 fresh sentences: the LM prefers the
agreeing verb when its logit for it is above the other verb's. Reported for all sentences,
and for those whose last noun before the verb has the other number (an attractor: copying
the nearest noun's number gets these wrong).

tanh RNN, LSTM and GRU, matched in parameter count to the LSTM (--hidden units), the same
optimiser, budget and --seeds seeds each; runs are resumable (examples/study_runs.py).

    python examples/agreement.py            # ~10 CPU minutes
    python examples/agreement.py --quick    # seconds (the test suite runs this)

Writes to --out (default examples/results/agreement/): runs/, results.md, metrics.json,
agreement.png.
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
from study_runs import Run, RunStore, rng_from_state, rng_state, run_each

import minigrad as mg
import minigrad.nn as nn
import minigrad.nn.functional as F
import minigrad.optim as optim
from models import GRU, LSTM, RNN

NAME = "agreement"
SINGULAR = ["cat", "dog", "bird", "child"]
PLURAL = ["cats", "dogs", "birds", "children"]
FILLERS = ["which", "already", "ate", "some", "food", "near", "under", "big", "small", "and"]
WORDS = ["the"] + SINGULAR + PLURAL + FILLERS + ["was", "were", "."]
ID = {w: i for i, w in enumerate(WORDS)}
WAS, WERE = ID["was"], ID["were"]
CELLS = {"rnn": "tanh RNN", "lstm": "LSTM", "gru": "GRU"}
EMBED = 16


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_common_arguments(p, NAME)
    p.add_argument("--cells", nargs="+", choices=list(CELLS), default=list(CELLS))
    p.add_argument("--hidden", type=int, help="LSTM units; the others match its size (32)")
    p.add_argument("--spans", nargs="+", help="training ranges of d, LO-HI each (0-16 8-16 16-32)")
    p.add_argument("--attractors", type=float, default=0.25, help="attractor rate (0.25)")
    p.add_argument("--steps", type=int, help="updates per run (default 6000)")
    p.add_argument("--batch", type=int, default=64, help="sentences per update (default 64)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3)")
    p.add_argument("--seeds", type=int, help="seeds per cell (default 3)")
    p.add_argument("--test-n", type=int, help="test sentences per distance (default 1000)")
    args = p.parse_args(argv)
    full = dict(hidden=32, spans=["0-16", "8-16", "16-32"], steps=6000, seeds=3, test_n=1000)
    quick = dict(hidden=8, spans=["0-4", "4-8"], steps=40, seeds=1, test_n=200)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for span in args.spans:
        lo, _, hi = span.partition("-")
        if not (lo.isdigit() and hi.isdigit() and int(lo) <= int(hi)):
            p.error(f"--spans: expected LO-HI with 0 <= LO <= HI, got {span!r}")
    return args


def span_range(span: str):
    lo, _, hi = span.partition("-")
    return int(lo), int(hi)


def distances(args) -> list:
    """Test distances: 0, the spans' ends and powers of two, up to 8 times the longest span."""
    top = max(span_range(s)[1] for s in args.spans)
    ds = {0} | {d for s in args.spans for d in span_range(s)}
    return sorted(ds | {2**k for k in range(16) if 2**k <= 8 * top})


def sentences(d: int, n: int, attractors: float, rng):
    """n sentences with a distractor span of d words: tokens (d + 4, n), the subject's number
    (1 plural) and the number of the last noun before the verb (the subject's if none)."""
    plural = rng.integers(0, 2, n)
    nouns = np.array([[ID[w] for w in SINGULAR], [ID[w] for w in PLURAL]])
    tokens = np.empty((d + 4, n), np.int64)
    tokens[0] = ID["the"]
    tokens[1] = nouns[plural, rng.integers(0, 4, n)]
    last = plural.copy()
    for i in range(d):
        is_noun = rng.random(n) < attractors
        number = rng.integers(0, 2, n)
        filler = np.array([ID[w] for w in FILLERS])[rng.integers(0, len(FILLERS), n)]
        tokens[2 + i] = np.where(is_noun, nouns[number, rng.integers(0, 4, n)], filler)
        last = np.where(is_noun, number, last)
    tokens[d + 2] = np.where(plural == 1, WERE, WAS)
    tokens[d + 3] = ID["."]
    return tokens, plural, last


class WordLM(nn.Module):
    def __init__(self, cell, hidden):
        super().__init__()
        self.embedding = nn.Embedding(len(WORDS), EMBED)
        self.rnn = {"rnn": RNN, "lstm": LSTM, "gru": GRU}[cell](EMBED, hidden)
        self.out = nn.Linear(hidden, len(WORDS))

    def forward(self, tokens):
        return self.out(self.rnn(self.embedding(mg.tensor(tokens)))[0])


def n_params(cell, hidden) -> int:
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    V = len(WORDS)
    return V * EMBED + gates * hidden * (EMBED + hidden + 2) + (hidden + 1) * V


def width(cell, lstm_hidden) -> int:
    """The cell's hidden size whose parameter count is closest to the LSTM's."""
    target = n_params("lstm", lstm_hidden)
    return min(range(2, 8 * lstm_hidden), key=lambda h: abs(n_params(cell, h) - target))


def preference(model, d, args, rng) -> dict:
    """Share of test sentences whose verb logit prefers the agreeing verb: all, and those whose
    last noun before the verb has the other number (None when fewer than 50 have)."""
    tokens, plural, last = sentences(d, args.test_n, args.attractors, rng)
    with mg.no_grad():
        logits = model(tokens[:-1]).numpy()[d + 1]  # the prediction of the verb
    margin = logits[:, WERE] - logits[:, WAS]
    right = (margin > 0) == (plural == 1)
    misleading = last != plural
    return dict(
        accuracy=float(right.mean()),
        attractor_accuracy=float(right[misleading].mean()) if misleading.sum() >= 50 else None,
        attractor_n=int(misleading.sum()),
    )


def train(store, key, cell, span, seed, args) -> dict:
    run = Run(store, key)
    mg.manual_seed(seed)
    model = WordLM(cell, width(cell, args.hidden))
    opt = optim.Adam(model.parameters(), lr=args.lr)
    rng, step, curve = np.random.default_rng(seed), 0, []
    lo, hi = span_range(span)
    if run.resumed:
        s = run.saved
        model.load_state_dict(s["model"])
        opt.load_state_dict(s["optim"])
        step, curve, rng = int(s["step"]), list(s["curve"]), rng_from_state(s["rng"])
    snapshot = lambda: dict(
        model=model.state_dict(), optim=opt.state_dict(), step=step, curve=curve, rng=rng_state(rng)
    )
    while step < args.steps:
        d = int(rng.integers(lo, hi + 1))
        tokens, _, _ = sentences(d, args.batch, args.attractors, rng)
        logits = model(tokens[:-1])
        loss = F.cross_entropy(logits.reshape(-1, len(WORDS)), tokens[1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            curve.append([step, loss.item()])
        run.tick(snapshot)
    test = np.random.default_rng(seed + 10_000)
    by_d = {str(d): preference(model, d, args, test) for d in distances(args)}
    return store.finish(
        key,
        dict(
            cell=cell,
            span=span,
            seed=seed,
            hidden=model.rnn.hidden_size,
            parameters=sum(p.numel() for p in model.parameters()),
            steps=step,
            by_distance=by_d,
            cpu_s=run.cpu_s(),
            curve=curve,
        ),
    )


# ----- report ------------------------------------------------------------------------------------
def gather(results, args):
    """(span, cell) -> {'runs', 'accuracy': (seeds, distances) array, 'attractor': the same on
    the attractor sentences, NaN where too few}."""
    out = {}
    for span in args.spans:
        for cell in args.cells:
            rs = [r for s in range(args.seeds) if (r := results.get(f"{cell}@{span}-s{s}"))]
            if not rs:
                continue
            get = lambda r, d, k: r["by_distance"][str(d)][k]
            nan = lambda v: np.nan if v is None else v
            out[span, cell] = dict(
                runs=rs,
                accuracy=np.array([[get(r, d, "accuracy") for d in distances(args)] for r in rs]),
                attractor=np.array(
                    [[nan(get(r, d, "attractor_accuracy")) for d in distances(args)] for r in rs]
                ),
            )
    return out


def report(gathered, args) -> str:
    ds = distances(args)
    tables = []
    for what, title in (
        ("accuracy", "Share of test sentences whose LM prefers the agreeing verb"),
        (
            "attractor",
            "The same on the sentences whose last noun before the verb has the "
            "other number (an attractor; '-' where fewer than 50)",
        ),
    ):
        rows = []
        for (span, cell), g in gathered.items():
            r0 = g["runs"][0]
            rows.append(
                [span, CELLS[cell], f"{r0['parameters']:,}", len(g["runs"])]
                + [cell_text(g[what][:, i]) for i in range(len(ds))]
            )
        headers = ["trained d", "cell", "parameters", "runs"] + [f"d={d}" for d in ds]
        tables.append(
            f"{title} (mean over seeds, min-max in brackets):\n\n" + markdown_table(headers, rows)
        )
    return "\n\n".join(tables)


def learned(gathered, args) -> dict:
    """(span, cell) -> seeds whose LM prefers the agreeing verb in >= 95% of the test
    sentences at the longest trained d, out of the seeds run."""
    ds = distances(args)
    out = {}
    for (span, cell), g in gathered.items():
        at = ds.index(span_range(span)[1])
        out[f"{cell}@{span}"] = [int((g["accuracy"][:, at] >= 0.95).sum()), len(g["runs"])]
    return out


def learned_table(counts, args) -> str:
    rows = [
        [span, CELLS[cell]] + [f"{a} of {n}" for a, n in [counts.get(f"{cell}@{span}", [0, 0])]]
        for span in args.spans
        for cell in args.cells
    ]
    return "Seeds that learned agreement (>= 95% at the longest trained d):\n\n" + markdown_table(
        ["trained d", "cell", "seeds"], rows
    )


def cell_text(values) -> str:
    v = values[~np.isnan(values)]
    if len(v) == 0:
        return "-"
    return f"{v.mean():.3f}" + (f" [{v.min():.2f}-{v.max():.2f}]" if len(v) > 1 else "")


def plot(gathered, args, out):
    plt = pyplot()
    if plt is None or not gathered:
        return None
    ds = np.array(distances(args))
    fig, axes = plt.subplots(
        2, len(args.spans), figsize=(5.2 * len(args.spans), 7.5), sharey=True, squeeze=False
    )
    for j, span in enumerate(args.spans):
        lo, hi = span_range(span)
        for ax, what, title in (
            (axes[0, j], "accuracy", "all test sentences"),
            (axes[1, j], "attractor", "last noun of the other number"),
        ):
            for i, cell in enumerate(args.cells):
                for s, row in enumerate(gathered.get((span, cell), {}).get(what, [])):
                    ax.semilogx(
                        ds + 1,
                        row,
                        "o-",
                        color=f"C{i}",
                        alpha=0.6,
                        ms=3,
                        label=CELLS[cell] if s == 0 else None,
                    )
            ax.axhline(0.5, color="k", lw=0.7, ls=":")
            ax.axvspan(lo + 1, hi + 1, color="0.9", zorder=0)
            ax.set(
                title=f"trained on d in {lo}..{hi}: {title}", xlabel="d + 1 (d distractor words)"
            )
            ax.grid(alpha=0.3)
        axes[0, j].legend(fontsize=8)
    for row in axes:
        row[0].set_ylabel("prefers the agreeing verb")
    fig.suptitle("Agreement across d words (each seed a line; grey: the d trained on)")
    return save_figure(fig, out / f"{NAME}.png")


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = output_folder(args.out, NAME, args.quick)
    started = time.perf_counter()
    kinds = [f"{cell}@{span}" for span in args.spans for cell in args.cells]
    keys = [(kind, s) for s in range(args.seeds) for kind in kinds]
    stopped = run_each(
        out,
        keys,
        60.0,
        lambda store, key, kind, s: train(store, key, *kind.split("@"), 1000 * s + 3, args),
        lambda r: f"{r['parameters']:,} parameters, {r['cpu_s']:.0f} CPU s",
    )
    wanted = {f"{k}-s{s}" for k, s in keys}
    results = {k: r for k, r in RunStore(out).results().items() if k in wanted}
    gathered = gather(results, args)
    counts = learned(gathered, args)
    text = (
        f"Synthetic grammar 'the NOUN s_1..s_d VERB .', attractor rate {args.attractors:g}; "
        f"{args.steps:,} updates of {args.batch} sentences (d uniform in the trained range), "
        f"Adam lr {args.lr:g}, clip 1; {args.test_n} test sentences per d; "
        f"{len(results)} of {len(keys)} runs done.\n\n{learned_table(counts, args)}\n\n"
        f"{report(gathered, args)}"
    )
    print(text)
    write_text(out / "results.md", f"# Long-distance agreement\n\n{text}\n")
    figure = plot(gathered, args, out)
    nanmean = lambda col: None if np.isnan(col).all() else float(np.nanmean(col))
    metrics = dict(
        example=NAME,
        quick=args.quick,
        complete=len(results) == len(keys),
        stopped=stopped,
        settings={k: str(v) if k == "out" else v for k, v in vars(args).items()},
        distances=distances(args),
        seeds_learned=counts,
        mean_accuracy={f"{c}@{sp}": g["accuracy"].mean(axis=0) for (sp, c), g in gathered.items()},
        mean_attractor_accuracy={
            f"{c}@{sp}": [nanmean(col) for col in g["attractor"].T]
            for (sp, c), g in gathered.items()
        },
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
