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
singular subject and 'were' after a plural one. A character-free, word-level LM (embedding 16,
one recurrent layer, a linear output) learns it by next-word prediction with the distractor
length d drawn uniformly from 0..--train-d for every batch. At test, for each d (up to twice
--train-d: beyond --train-d is extrapolation), 1,000 fresh sentences: the LM prefers the
agreeing verb when its logit for it is above the other verb's. Reported for all sentences, and
for those whose last noun before the verb has the other number (an attractor: copying the
nearest noun's number gets these wrong).

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
    p.add_argument("--train-d", type=int, help="longest distractor span trained on (16)")
    p.add_argument("--attractors", type=float, default=0.25, help="attractor rate (0.25)")
    p.add_argument("--steps", type=int, help="updates per run (default 6000)")
    p.add_argument("--batch", type=int, default=64, help="sentences per update (default 64)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3)")
    p.add_argument("--seeds", type=int, help="seeds per cell (default 3)")
    p.add_argument("--test-n", type=int, help="test sentences per distance (default 1000)")
    args = p.parse_args(argv)
    full = dict(hidden=32, train_d=16, steps=6000, seeds=3, test_n=1000)
    quick = dict(hidden=8, train_d=4, steps=40, seeds=1, test_n=200)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def distances(args) -> list:
    """Test distances: powers of two and --train-d, then beyond it up to twice it."""
    ds = {0, args.train_d, 2 * args.train_d, (3 * args.train_d) // 2}
    ds |= {2**k for k in range(10) if 2**k <= 2 * args.train_d}
    return sorted(ds)


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


def train(store, key, cell, seed, args) -> dict:
    run = Run(store, key)
    mg.manual_seed(seed)
    model = WordLM(cell, width(cell, args.hidden))
    opt = optim.Adam(model.parameters(), lr=args.lr)
    rng, step, curve = np.random.default_rng(seed), 0, []
    if run.resumed:
        s = run.saved
        model.load_state_dict(s["model"])
        opt.load_state_dict(s["optim"])
        step, curve, rng = int(s["step"]), list(s["curve"]), rng_from_state(s["rng"])
    snapshot = lambda: dict(
        model=model.state_dict(), optim=opt.state_dict(), step=step, curve=curve, rng=rng_state(rng)
    )
    while step < args.steps:
        tokens, _, _ = sentences(
            int(rng.integers(0, args.train_d + 1)), args.batch, args.attractors, rng
        )
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
    """cell -> {'accuracy': (seeds, distances) array, 'attractor': the same, None as NaN}."""
    out = {}
    for cell in args.cells:
        rs = [r for s in range(args.seeds) if (r := results.get(f"{cell}-s{s}"))]
        if rs:
            get = lambda r, d, k: r["by_distance"][str(d)][k]
            out[cell] = dict(
                runs=rs,
                accuracy=np.array([[get(r, d, "accuracy") for d in distances(args)] for r in rs]),
                attractor=np.array(
                    [
                        [
                            np.nan if (a := get(r, d, "attractor_accuracy")) is None else a
                            for d in distances(args)
                        ]
                        for r in rs
                    ]
                ),
            )
    return out


def report(gathered, args) -> str:
    ds = distances(args)
    headers = ["cell", "hidden", "parameters", "runs"] + [
        f"d={d}" + ("*" if d > args.train_d else "") for d in ds
    ]
    rows, rows_attr = [], []
    for cell, g in gathered.items():
        r0 = g["runs"][0]
        head = [CELLS[cell], r0["hidden"], f"{r0['parameters']:,}", len(g["runs"])]
        rows.append(head + [cell_text(g["accuracy"][:, i]) for i in range(len(ds))])
        rows_attr.append(head + [cell_text(g["attractor"][:, i]) for i in range(len(ds))])
    return (
        "Share of test sentences whose LM prefers the agreeing verb (mean over seeds, min-max "
        f"in brackets; * beyond the trained d <= {args.train_d}):\n\n"
        + markdown_table(headers, rows)
        + "\n\nThe same on the sentences whose last noun before the verb has the other number "
        "(an attractor; '-' where fewer than 50):\n\n" + markdown_table(headers, rows_attr)
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
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2), sharey=True)
    for ax, what, title in (
        (axes[0], "accuracy", "all test sentences"),
        (axes[1], "attractor", "last noun of the other number"),
    ):
        for i, (cell, g) in enumerate(gathered.items()):
            for s, row in enumerate(g[what]):
                ax.plot(
                    ds,
                    row,
                    "o-",
                    color=f"C{i}",
                    alpha=0.6,
                    ms=3,
                    label=CELLS[cell] if s == 0 else None,
                )
        ax.axhline(0.5, color="k", lw=0.7, ls=":")
        ax.axvspan(args.train_d + 0.5, ds.max() + 0.5, color="0.9", zorder=0)
        ax.set(xlabel="distractor words d between subject and verb", title=title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("prefers the agreeing verb")
    axes[0].legend(fontsize=8)
    fig.suptitle("Agreement across d words (each seed a line; grey: longer than trained)")
    fig.tight_layout()
    path = out / f"{NAME}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = output_folder(args.out, NAME, args.quick)
    started = time.perf_counter()
    keys = [(cell, s) for s in range(args.seeds) for cell in args.cells]
    stopped = run_each(
        out,
        keys,
        60.0,
        lambda store, key, cell, s: train(store, key, cell, 1000 * s + 3, args),
        lambda r: f"{r['parameters']:,} parameters, {r['cpu_s']:.0f} CPU s",
    )
    wanted = {f"{c}-s{s}" for c, s in keys}
    results = {k: r for k, r in RunStore(out).results().items() if k in wanted}
    gathered = gather(results, args)
    text = (
        f"Synthetic grammar 'the NOUN s_1..s_d VERB .', attractor rate {args.attractors:g}; "
        f"{args.steps:,} updates of {args.batch} sentences (d uniform in 0..{args.train_d}), "
        f"Adam lr {args.lr:g}, clip 1; {args.test_n} test sentences per d; "
        f"{len(results)} of {len(keys)} runs done.\n\n{report(gathered, args)}"
    )
    print(text)
    write_text(out / "results.md", f"# Long-distance agreement\n\n{text}\n")
    figure = plot(gathered, args, out)
    metrics = dict(
        example=NAME,
        quick=args.quick,
        complete=len(results) == len(keys),
        stopped=stopped,
        settings={k: str(v) if k == "out" else v for k, v in vars(args).items()},
        distances=distances(args),
        mean_accuracy={c: g["accuracy"].mean(axis=0) for c, g in gathered.items()},
        mean_attractor_accuracy={
            c: [
                float(np.nanmean(col)) if not np.isnan(col).all() else None
                for col in g["attractor"].T
            ]
            for c, g in gathered.items()
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
