"""Sequence to sequence with attention: human-written dates -> ISO 8601 (YYYY-MM-DD).

A character-level encoder-decoder (models.Seq2Seq): a bidirectional GRU reads the date as
written, and a GRU decoder writes the ten characters of the ISO date, attending at every step
to the encoder's states with additive (Bahdanau) attention:

    e_tj = v^T tanh(W s_{t-1} + U h_j)      score
    alpha_tj = softmax_j(e_tj)             softmax
    c_t = sum_j alpha_tj h_j               context
    s_t = GRU(s_{t-1}, [E y_{t-1}; c_t])   merge

The data is synthetic, from a generator with real variety: 20 layouts ("3 March 2021",
"March 3rd, 2021", "03/03/2021", "Wednesday, March 3, 2021", "3rd of mar 21", "2021/03/03",
"03MAR2021", ...), full and abbreviated month and weekday names, ordinals, two-digit years,
and lower, title and upper case. Conventions, so that every input has one answer: slashes are
month first (US), dots day first; two-digit years mean 1950-2049, the range of all dates.

Training uses teacher forcing with a ratio: at each decoder step the previous *target*
character is fed with probability --teacher-forcing, else the model's own previous guess.
The held-out set (source strings that never occur in training) is decoded greedily and with
beam search; the score is exact match of the whole ISO string.

    python examples/seq2seq_dates.py            # the default run: about 1 minute on 2 cores
    python examples/seq2seq_dates.py --quick    # a few seconds, for the test suite

Writes metrics.json, learning_curve.png, attention.png (heatmaps) and the held-out errors.
"""

import argparse
import datetime as dt
import re
import string
import time
from pathlib import Path

import bootstrap  # noqa: F401  (before NumPy: one BLAS thread, the repository importable)
import numpy as np
from apps_common import Progress, Vocab, finished, machine, pad, write_metrics
from common import add_out_argument, output_folder, pyplot

import minigrad as mg
import minigrad.nn as nn
import minigrad.nn.functional as F
import minigrad.optim as optim
from models import Seq2Seq

# ----- the date generator -----------------------------------------------------------------------
FIRST, LAST = dt.date(1950, 1, 1), dt.date(2049, 12, 31)  # two-digit years are unambiguous
MONTHS = (
    "January February March April May June July August September October November December"
).split()
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()

# {D} 3, {DD} 03, {Dth} 3rd; {M} 3, {MM} 03, {Month} March, {Mon} Mar; {YYYY} 2021, {YY} 21;
# {Weekday} Wednesday, {Wkd} Wed. Slashes: month first; dots: day first.
LAYOUTS = (
    "{D} {Month} {YYYY}",
    "{Dth} {Month} {YYYY}",
    "{Month} {D}, {YYYY}",
    "{Month} {Dth}, {YYYY}",
    "{Weekday}, {Month} {D}, {YYYY}",
    "{Wkd}, {D} {Mon} {YYYY}",
    "{Weekday} {Dth} {Month} {YYYY}",
    "the {Dth} of {Month}, {YYYY}",
    "{Dth} of {Mon} {YY}",
    "{Mon} {D} {YYYY}",
    "{Mon}. {D}, {YYYY}",
    "{D}-{Mon}-{YY}",
    "{DD}{Mon}{YYYY}",
    "{MM}/{DD}/{YYYY}",
    "{M}/{D}/{YYYY}",
    "{M}/{D}/{YY}",
    "{DD}.{MM}.{YYYY}",
    "{D}.{M}.{YY}",
    "{YYYY}-{MM}-{DD}",
    "{YYYY}/{MM}/{DD}",
)
CASINGS = ("title", "lower", "upper")
CASING_P = (0.6, 0.25, 0.15)


def ordinal(n: int) -> str:
    """1 -> '1st', 2 -> '2nd', 3 -> '3rd', 11 -> '11th', 22 -> '22nd'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def render(layout: str, date: dt.date, casing: str = "title") -> str:
    """Write `date` in `layout` (see LAYOUTS) with 'title', 'lower' or 'upper' casing."""
    if casing not in CASINGS:
        raise ValueError(f"render: casing must be one of {CASINGS}, got {casing!r}")
    month, weekday = MONTHS[date.month - 1], WEEKDAYS[date.weekday()]
    text = layout.format(
        D=date.day,
        DD=f"{date.day:02d}",
        Dth=ordinal(date.day),
        M=date.month,
        MM=f"{date.month:02d}",
        Month=month,
        Mon=month[:3],
        YYYY=f"{date.year:04d}",
        YY=f"{date.year % 100:02d}",
        Weekday=weekday,
        Wkd=weekday[:3],
    )
    return {"title": text, "lower": text.lower(), "upper": text.upper()}[casing]


def iso(date: dt.date) -> str:
    return date.isoformat()


def random_date(rng) -> dt.date:
    return FIRST + dt.timedelta(days=int(rng.integers((LAST - FIRST).days + 1)))


def random_example(rng) -> tuple:
    """(human-written date, its ISO form): a uniform date, layout and weighted casing."""
    date = random_date(rng)
    layout = LAYOUTS[rng.integers(len(LAYOUTS))]
    casing = CASINGS[rng.choice(len(CASINGS), p=CASING_P)]
    return render(layout, date, casing), iso(date)


def make_sets(n_train: int, n_test: int, seed: int) -> tuple:
    """Distinct training pairs and held-out pairs whose source strings are not in training."""
    rng = np.random.default_rng(seed)
    seen, train, test = set(), [], []
    while len(train) < n_train:
        src, tgt = random_example(rng)
        if src not in seen:
            seen.add(src)
            train.append((src, tgt))
    while len(test) < n_test:
        src, tgt = random_example(rng)
        if src not in seen:
            seen.add(src)
            test.append((src, tgt))
    return train, test


# ----- vocabularies -----------------------------------------------------------------------------
PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SRC = Vocab(string.ascii_letters + string.digits + " ,./-", specials=(PAD,), unk=None)
TGT = Vocab("0123456789-", specials=(PAD, BOS, EOS), unk=None)  # ids: PAD 0, BOS 1, EOS 2


def encode_source(texts) -> tuple:
    """Strings -> (S, B) character ids and lengths; ValueError for a character outside SRC."""
    return pad([SRC.encode(t) for t in texts])


def encode_target(texts) -> np.ndarray:
    """ISO strings -> (11, B) ids: the ten characters, then EOS."""
    if any(len(t) != 10 for t in texts):
        raise ValueError("encode_target: every target must be a 10-character YYYY-MM-DD")
    return np.stack([np.append(TGT.encode(t), TGT.stoi[EOS]) for t in texts], axis=1)


def decode_target(ids) -> str:
    """Token ids (ending at EOS, if any) -> the string before EOS."""
    out = []
    for i in ids:
        if i == TGT.stoi[EOS]:
            break
        out.append(TGT.itos[i] if i >= 3 else "?")
    return "".join(out)


# ----- training and evaluation ------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--train-size", type=int, default=20000, help="training pairs (20000)")
    p.add_argument("--test-size", type=int, default=1000, help="held-out pairs (1000)")
    p.add_argument("--epochs", type=int, default=3, help="passes over the training set (3)")
    p.add_argument("--batch", type=int, default=64, help="pairs per batch (64)")
    p.add_argument("--embed", type=int, default=32, help="character embedding size (32)")
    p.add_argument("--hidden", type=int, default=64, help="encoder GRU size per direction (64)")
    p.add_argument(
        "--teacher-forcing",
        type=float,
        default=0.5,
        help="probability of feeding the true previous character (0.5)",
    )
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (3e-3)")
    p.add_argument("--clip", type=float, default=5.0, help="gradient-norm clipping (5)")
    p.add_argument("--eval-every", type=int, default=25, help="probe held-out dates every N steps")
    p.add_argument("--beam", type=int, default=4, help="beam size (4)")
    p.add_argument("--seed", type=int, default=0, help="data, initialisation, batch order")
    add_out_argument(p, "seq2seq_dates")
    p.add_argument("--quick", action="store_true", help="tiny run for the test suite")
    args = p.parse_args(argv)
    if args.quick:
        args.train_size, args.test_size, args.epochs = 512, 32, 1
        args.embed, args.hidden = 8, 16
    names = ("train_size", "test_size", "epochs", "batch", "embed", "hidden", "eval_every", "beam")
    for name in names:
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if not 0 <= args.teacher_forcing <= 1:
        p.error("--teacher-forcing must lie in [0, 1]")
    return args


def evaluate(model, pairs, beam, batch=256) -> dict:
    """Exact-match accuracy of greedy and beam-search decoding; the hypotheses."""
    model.eval()
    greedy, beams = [], []
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        src, lengths = encode_source([s for s, _ in chunk])
        greedy += model.greedy_decode(src, lengths, max_len=12)
        if beam > 1:
            beams += model.beam_search(src, lengths, beam_size=beam, max_len=12)
    model.train()
    result = {}
    for name, hyps in (("greedy", greedy), ("beam", beams)):
        if not hyps:
            continue
        outputs = [decode_target(h.tokens) for h in hyps]
        right = [o == t for o, (_, t) in zip(outputs, pairs, strict=True)]
        result[name] = {
            "accuracy": float(np.mean(right)),
            "outputs": outputs,
            "hyps": hyps,
            "errors": [
                (s, t, o) for (s, t), o, r in zip(pairs, outputs, right, strict=True) if not r
            ],
        }
    return result


def plot_curve(history, out: Path, plt) -> str:
    fig, ax1 = plt.subplots(figsize=(6, 4))
    ax1.plot(history["step"], history["loss"], color="tab:blue", label="training loss")
    ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_ylabel("cross-entropy per character", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(history["eval_step"], [100 * a for a in history["greedy"]], "s-", color="tab:red")
    ax2.set_ylabel(f"exact match on {history['probe']} held-out dates, greedy (%)", color="tab:red")
    ax2.set_ylim(-2, 102)
    ax1.set_title("Date normalisation: encoder-decoder with attention")
    fig.tight_layout()
    fig.savefig(out / "learning_curve.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "learning_curve.png"


def plot_attention(examples, out: Path, plt) -> str:
    """One heatmap per (source, output, attention (T, S)) example."""
    cols = 2
    rows = (len(examples) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 3.2 * rows), squeeze=False)
    for ax, (src, out_text, attn) in zip(axes.flat, examples, strict=False):
        shown = list(out_text) + ["<eos>"]
        attn = attn[: len(shown), : len(src)]
        ax.imshow(attn, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(src)), [c if c != " " else "\u2423" for c in src], fontsize=8)
        ax.set_yticks(range(len(attn)), shown[: len(attn)], fontsize=8)
        ax.set_title(f"{src!r} -> {out_text}", fontsize=9)
    for ax in list(axes.flat)[len(examples) :]:
        ax.axis("off")
    fig.suptitle("Attention weights alpha_tj (rows: output characters, columns: input)")
    fig.tight_layout()
    fig.savefig(out / "attention.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "attention.png"


# The heatmaps show one held-out date of each of these kinds (the first that matches).
SHOWCASE = (
    r"^[A-Za-z]+day, ",  # Wednesday, March 3, 2021
    r" of ",  # 3rd of mar 21 / the 3rd of March, 2021
    r"^\d+/\d+/\d+$",  # 3/3/2021: month first
    r"^\d+[A-Za-z]{3}\d{4}$",  # 03MAR2021
)


def pick_examples(pairs, errors) -> list:
    """Indices of the showcase dates in `pairs`; the first error (if any) replaces the last."""
    picks = []
    for pattern in SHOWCASE:
        i = next((i for i, (s, _) in enumerate(pairs) if re.search(pattern, s)), None)
        if i is not None and i not in picks:
            picks.append(i)
    if errors and pairs.index(errors[0]) not in picks:
        picks[-1:] = [pairs.index(errors[0])]
    return picks or [0]


def main(argv=None) -> dict:
    args = parse_args(argv)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    args.out = output_folder(args.out, "seq2seq_dates", args.quick)
    train, test = make_sets(args.train_size, args.test_size, args.seed)
    print(f"{len(train):,} training and {len(test):,} held-out pairs, e.g.")
    for src, tgt in train[:6]:
        print(f"  {src!r:36} -> {tgt}")

    mg.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed + 1)
    model = Seq2Seq(
        len(SRC),
        len(TGT),
        args.embed,
        args.hidden,
        attention="additive",
        cell="gru",
        bidirectional=True,
        bos_index=TGT.stoi[BOS],
        eos_index=TGT.stoi[EOS],
        pad_index=0,
    )
    opt = optim.Adam(model.parameters(), lr=args.lr)
    n_batches = (len(train) + args.batch - 1) // args.batch
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs * n_batches, args.lr / 20)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{model}\n{n_params:,} parameters")

    probe = test[: min(len(test), 200)]  # followed during training
    history = {"step": [], "loss": [], "eval_step": [], "greedy": [], "probe": len(probe)}
    step, running, acc, t_train = 0, None, 0.0, time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(train))
        bar = Progress(n_batches, f"epoch {epoch}")
        for k in range(n_batches):
            chunk = [train[i] for i in order[k * args.batch : (k + 1) * args.batch]]
            src, lengths = encode_source([s for s, _ in chunk])
            tgt = encode_target([t for _, t in chunk])
            logits, _ = model(src, tgt, lengths, teacher_forcing_ratio=args.teacher_forcing)
            loss = F.cross_entropy(logits.reshape(-1, len(TGT)), tgt.reshape(-1))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            sched.step()
            step += 1
            running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
            if step % 10 == 0 or k == n_batches - 1:
                history["step"].append(step)
                history["loss"].append(running)
            if step % args.eval_every == 0 or k == n_batches - 1:
                acc = evaluate(model, probe, beam=1)["greedy"]["accuracy"]
                history["eval_step"].append(step)
                history["greedy"].append(acc)
            bar.update(1, loss=f"{running:.4f}", exact=f"{100 * acc:.1f}%")
        bar.close()
        print(
            f"epoch {epoch}: training loss {running:.4f}; greedy exact match on "
            f"{len(probe)} held-out dates {100 * acc:.1f}%  "
            f"{time.perf_counter() - t_train:.0f}s",
            flush=True,
        )
    train_seconds = time.perf_counter() - t_train

    t_eval = time.perf_counter()
    result = evaluate(model, test, args.beam)
    eval_seconds = time.perf_counter() - t_eval
    metrics = {
        "greedy_accuracy": result["greedy"]["accuracy"],
        "beam_accuracy": result["beam"]["accuracy"] if "beam" in result else None,
        "beam_size": args.beam,
        "test_size": len(test),
        "train_size": len(train),
        "final_training_loss": running,
        "history": history,
        "parameters": n_params,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "wall_seconds": time.perf_counter() - t_start,
        "cpu_seconds": time.process_time() - cpu_start,
        "machine": machine(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    report = []
    for name, r in result.items():
        report.append(f"{name} decoding: {len(r['errors'])} of {len(test)} held-out dates wrong\n")
        report += [f"{s!r}\texpected {t}\tgot {o}\n" for s, t, o in r["errors"]]
    (args.out / "errors.txt").write_text("".join(report))
    figures = []
    plt = pyplot()
    if plt is not None:
        figures.append(plot_curve(history, args.out, plt))
        errors = [(s, t) for s, t, _ in result["greedy"]["errors"]]
        picks = pick_examples(test, errors)  # the heatmaps show greedy decoding
        hyps, outs = result["greedy"]["hyps"], result["greedy"]["outputs"]
        examples = [(test[i][0], outs[i], hyps[i].attention) for i in picks]
        figures.append(plot_attention(examples, args.out, plt))
    write_metrics(args.out, metrics)
    print(
        f"held-out exact match ({len(test):,} dates): greedy "
        f"{100 * metrics['greedy_accuracy']:.2f}%"
        + (
            f", beam search (k={args.beam}) {100 * metrics['beam_accuracy']:.2f}%"
            if metrics["beam_accuracy"] is not None
            else ""
        )
    )
    print(finished(metrics, ["metrics.json", "errors.txt", *figures], args.out))
    return metrics


if __name__ == "__main__":
    main()
