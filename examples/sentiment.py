"""Sentiment classification (many-to-one) on the sentence polarity data: mean vs last pooling.

10,662 movie-review snippets (Pang & Lee 2005; 5,331 positive, 5,331 negative), split 80/10/10
with a fixed seed. A snippet's words are embedded (learned from scratch) and read by an LSTM;
the sentence vector that the classifier sees is either

    last:  h_{n_b}                         the state at the snippet's own last word
    mean:  (1 / n_b) * sum_{t <= n_b} h_t  the average state over its words

(models.SequenceClassifier, with `lengths=` so that padding changes neither). Both models are
trained from the same initial weights on the same batches, with dropout on the embeddings and
on the sentence vector and a small L2 penalty (the model overfits 8,530 snippets quickly);
each keeps the epoch with the best validation accuracy, and is then scored once on the test
set.

    python examples/sentiment.py            # the default run, both poolings: about 2 minutes
    python examples/sentiment.py --quick    # a few seconds, for the test suite

Writes metrics.json and learning_curves.png (training loss, validation accuracy) to --out.
"""

import argparse
import time
from collections import Counter
from pathlib import Path

import bootstrap  # noqa: F401  (before NumPy: one BLAS thread, the repository importable)
import numpy as np
from apps_common import (
    Progress,
    Vocab,
    finished,
    length_batches,
    machine,
    pad,
    seeded_split,
    write_metrics,
)
from common import add_out_argument, output_folder, pyplot

import minigrad as mg
import minigrad.nn as nn
import minigrad.nn.functional as F
import minigrad.optim as optim
from models import SequenceClassifier

DATA = Path(__file__).resolve().parent / "data" / "sentence_polarity"
POOLINGS = ("mean", "last")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=12, help="passes over the training set (12)")
    p.add_argument("--batch", type=int, default=32, help="snippets per batch (32)")
    p.add_argument("--embed", type=int, default=100, help="word embedding size (100)")
    p.add_argument("--hidden", type=int, default=100, help="LSTM hidden size (100)")
    p.add_argument("--min-freq", type=int, default=2, help="vocabulary: min training count (2)")
    p.add_argument("--max-len", type=int, default=60, help="keep the first N words of a snippet")
    p.add_argument("--dropout", type=float, default=0.5, help="on embeddings and pooled state")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (2e-3)")
    p.add_argument("--weight-decay", type=float, default=1e-5, help="Adam L2 penalty (1e-5)")
    p.add_argument("--clip", type=float, default=5.0, help="gradient-norm clipping (5)")
    p.add_argument("--pooling", choices=("both",) + POOLINGS, default="both")
    p.add_argument("--seed", type=int, default=0, help="initialisation, dropout, batch order")
    p.add_argument("--split-seed", type=int, default=0, help="the 80/10/10 split")
    p.add_argument("--data", type=Path, default=DATA, help="folder with rt-polarity.pos/.neg")
    add_out_argument(p, "sentiment")
    p.add_argument("--quick", action="store_true", help="tiny run for the test suite")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.embed, args.hidden = 2, 16, 16
    for name in ("epochs", "batch", "embed", "hidden", "max_len"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if not 0 <= args.dropout < 1:
        p.error("--dropout must lie in [0, 1)")
    return args


# ----- data -------------------------------------------------------------------------------------
def read_snippets(path: Path) -> list:
    """One lower-cased, tokenised snippet per line -> a list of token lists.

    Split on '\\n' only (the files hold stray C1 control characters that str.splitlines would
    break on). Raises ValueError for an empty file or a blank line inside it.
    """
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the file
    if not lines:
        raise ValueError(f"{path}: no snippets")
    snippets = []
    for n, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens:
            raise ValueError(f"{path}:{n}: empty snippet")
        snippets.append(tokens)
    return snippets


def load_polarity(folder: Path, split_seed: int) -> dict:
    """{'train'|'val'|'test': (snippets, labels)}: a seeded 80/10/10 split of both files
    (label 1 = positive)."""
    pos = read_snippets(folder / "rt-polarity.pos")
    neg = read_snippets(folder / "rt-polarity.neg")
    texts = pos + neg
    labels = np.array([1] * len(pos) + [0] * len(neg), dtype=np.int64)
    parts = seeded_split(len(texts), (0.8, 0.1, 0.1), split_seed)
    return {
        name: ([texts[i] for i in idx], labels[idx])
        for name, idx in zip(("train", "val", "test"), parts, strict=True)
    }


class Encoded:
    def __init__(self, texts, labels, vocab: Vocab, max_len: int):
        self.ids = [vocab.encode(t[:max_len]) for t in texts]
        self.lengths = np.array([len(i) for i in self.ids])
        self.labels = labels

    def __len__(self):
        return len(self.ids)

    def batch(self, idx):
        x, lengths = pad([self.ids[i] for i in idx])
        return x, lengths, self.labels[idx]


# ----- model ------------------------------------------------------------------------------------
class SentimentLSTM(nn.Module):
    """Embedding -> dropout -> models.SequenceClassifier (LSTM, 'mean' or 'last' pooling)."""

    def __init__(self, vocab_size, embed, hidden, pooling, dropout):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.classifier = SequenceClassifier(embed, hidden, 2, pooling=pooling, dropout=dropout)

    def forward(self, x, lengths):
        return self.classifier(self.drop(self.embedding(x)), lengths=lengths)


def evaluate(model, data: Encoded, batch=256) -> tuple:
    """(accuracy, mean cross-entropy) over a split."""
    model.eval()
    right, loss = 0, 0.0
    with mg.no_grad():
        for idx in length_batches(data.lengths, batch):
            x, lengths, y = data.batch(idx)
            logits = model(x, lengths)
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            right += int((logits.numpy().argmax(axis=1) == y).sum())
    model.train()
    return right / len(data), loss / len(data)


def train(pooling, data, vocab, args) -> dict:
    """Train one model; return its history, best epoch and test accuracy at that epoch."""
    mg.manual_seed(args.seed)  # same initial weights and dropout draws for both poolings
    rng = np.random.default_rng(args.seed)  # same batches
    model = SentimentLSTM(len(vocab), args.embed, args.hidden, pooling, args.dropout)
    opt = optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    # The step size decays along a cosine, batch by batch, to 1/20 of --lr at the end.
    n_batches = len(length_batches(data["train"].lengths, args.batch))
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs * n_batches, args.lr / 20)
    history = {"train_loss": [], "train_accuracy": [], "val_loss": [], "val_accuracy": []}
    best, best_state, best_epoch = -1.0, None, 0
    t0 = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        batches = length_batches(data["train"].lengths, args.batch, rng)
        bar = Progress(len(batches), f"{pooling} epoch {epoch}")
        total, right = 0.0, 0
        for idx in batches:
            x, lengths, y = data["train"].batch(idx)
            logits = model(x, lengths)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            right += int((logits.numpy().argmax(axis=1) == y).sum())
            bar.update(1, loss=f"{loss.item():.3f}")
        bar.close()
        n = len(data["train"])
        val_acc, val_loss = evaluate(model, data["val"])
        for key, value in zip(history, (total / n, right / n, val_loss, val_acc), strict=True):
            history[key].append(value)
        print(
            f"  {pooling:4s} epoch {epoch}: train loss {total / n:.4f}, accuracy "
            f"{100 * right / n:.2f}%; validation loss {val_loss:.4f}, accuracy "
            f"{100 * val_acc:.2f}%  {time.perf_counter() - t0:.0f}s",
            flush=True,
        )
        if val_acc > best:
            best, best_state, best_epoch = val_acc, model.state_dict(), epoch
    model.load_state_dict(best_state)
    test_acc, test_loss = evaluate(model, data["test"])
    return {
        "test_accuracy": test_acc,
        "test_loss": test_loss,
        "val_accuracy": best,
        "best_epoch": best_epoch,
        "train_seconds": time.perf_counter() - t0,
        "history": history,
    }


def plot(results, out: Path) -> list:
    plt = pyplot()
    if plt is None:
        return []
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for (pooling, r), color in zip(results.items(), ("tab:blue", "tab:orange"), strict=False):
        h = r["history"]
        epochs = range(1, len(h["train_loss"]) + 1)
        ax1.plot(epochs, h["train_loss"], "o-", color=color, label=f"{pooling}: training")
        ax1.plot(epochs, h["val_loss"], "s--", color=color, label=f"{pooling}: validation")
        ax2.plot(
            epochs,
            [100 * a for a in h["train_accuracy"]],
            "o-",
            color=color,
            label=f"{pooling}: training",
        )
        ax2.plot(
            epochs,
            [100 * a for a in h["val_accuracy"]],
            "s--",
            color=color,
            label=f"{pooling}: validation",
        )
        ax2.plot(
            [r["best_epoch"]],
            [100 * r["test_accuracy"]],
            "*",
            color=color,
            ms=14,
            label=f"{pooling}: test, at best validation epoch",
        )
    ax1.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("LSTM sentiment classifier on sentence polarity: mean vs last pooling")
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return ["learning_curves.png"]


def main(argv=None) -> dict:
    args = parse_args(argv)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    args.out = output_folder(args.out, "sentiment", args.quick)
    splits = load_polarity(args.data, args.split_seed)
    if args.quick:
        splits = {
            k: (t[:n], y[:n])
            for (k, (t, y)), n in zip(splits.items(), (400, 100, 100), strict=True)
        }
    counts = Counter(w for text in splits["train"][0] for w in text)
    vocab = Vocab.build(counts, args.min_freq)
    data = {k: Encoded(t, y, vocab, args.max_len) for k, (t, y) in splits.items()}
    print(
        f"sentence polarity: {', '.join(f'{k} {len(d):,}' for k, d in data.items())} snippets; "
        f"{len(vocab):,} words in the vocabulary"
    )

    poolings = POOLINGS if args.pooling == "both" else (args.pooling,)
    results = {}
    for pooling in poolings:
        print(f"LSTM with {pooling} pooling:")
        results[pooling] = train(pooling, data, vocab, args)
    metrics = {
        **{f"{p}_test_accuracy": r["test_accuracy"] for p, r in results.items()},
        "models": results,
        "split_sizes": {k: len(d) for k, d in data.items()},
        "vocab": len(vocab),
        "wall_seconds": time.perf_counter() - t_start,
        "cpu_seconds": time.process_time() - cpu_start,
        "machine": machine(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    figures = plot(results, args.out)
    write_metrics(args.out, metrics)
    for p, r in results.items():
        print(
            f"{p:4s} pooling: test accuracy {100 * r['test_accuracy']:.2f}% (validation "
            f"{100 * r['val_accuracy']:.2f}% at epoch {r['best_epoch']})"
        )
    print(finished(metrics, ["metrics.json", *figures], args.out))
    return metrics


if __name__ == "__main__":
    main()
