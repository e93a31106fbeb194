"""Part-of-speech tagging (sequence labelling) with a bidirectional LSTM on UD English-EWT.

Many-to-many, aligned: one UPOS tag (17 classes) for every word of a sentence. Each word is
represented by two vectors, concatenated:

    w_t = E_word[key(word_t)]                    a word embedding learned from scratch, keyed
                                                 on the lower-cased word with digits as 0
    c_t = [h->_L ; h<-_1] of a char BiLSTM        over the word's characters (case kept)

The word vocabulary holds the training words seen at least twice; any other word shares one
<unk> embedding, so its character vector is what tells "Obamacare" (PROPN) from "reorganised"
(VERB). Then models.SequenceTagger: a BiLSTM over [w_t; c_t] and a Linear layer at every step.

Sentences are batched with others of similar length, padded, and given to the LSTMs with
`lengths=`, so padding changes no state; the loss is F.cross_entropy with ignore_index on the
padded positions. The char BiLSTM reads each distinct word of a batch once.

    python examples/pos_tagging.py            # the default run: about 3 minutes on 2 cores
    python examples/pos_tagging.py --no-chars # the ablation: word embeddings only
    python examples/pos_tagging.py --unidirectional  # the word-level LSTM reads left to right
                                                     # only (the char BiLSTM is unchanged)
    python examples/pos_tagging.py --quick    # a few seconds, for the test suite

Reports token accuracy on dev and test (and on words outside the word vocabulary), writes
metrics.json, a learning-curve figure and a confusion matrix to --out.
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
    write_metrics,
)
from common import add_out_argument, output_folder, pyplot

import minigrad as mg
import minigrad.nn as nn
import minigrad.nn.functional as F
import minigrad.optim as optim
from models import LSTM, SequenceTagger

DATA = Path(__file__).resolve().parent / "data" / "ud_english_ewt"
UPOS = "ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split()
IGNORE = -100  # target of padded positions: F.cross_entropy skips them
UNK = 1  # the id of <unk> in the word vocabulary (after <pad>)
MAX_WORD_CHARS = 20  # longer words keep their first and last 10 characters


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=6, help="passes over the training set (6)")
    p.add_argument("--batch", type=int, default=32, help="sentences per batch (32)")
    p.add_argument("--max-tokens", type=int, default=1200, help="padded words per batch, at most")
    p.add_argument("--word-dim", type=int, default=80, help="word embedding size (80)")
    p.add_argument("--char-dim", type=int, default=24, help="character embedding size (24)")
    p.add_argument("--char-hidden", type=int, default=32, help="char BiLSTM size per direction")
    p.add_argument("--hidden", type=int, default=96, help="word BiLSTM size per direction (96)")
    p.add_argument("--no-chars", action="store_true", help="word embeddings only (an ablation)")
    p.add_argument(
        "--unidirectional",
        action="store_true",
        help="word-level LSTM left to right only, --hidden units (an ablation; the char\n"
        "BiLSTM that builds each word's vector stays bidirectional)",
    )
    p.add_argument("--min-freq", type=int, default=2, help="word vocabulary: min count (2)")
    p.add_argument("--max-vocab", type=int, default=15000, help="word vocabulary: cap (15000)")
    p.add_argument("--dropout", type=float, default=0.25, help="dropout on inputs and outputs")
    p.add_argument(
        "--word-dropout",
        type=float,
        default=0.0,
        help="probability of replacing a training word by <unk> (0)",
    )
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (3e-3)")
    p.add_argument("--clip", type=float, default=5.0, help="gradient-norm clipping (5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=Path, default=DATA, help="folder with en_ewt-upos-*.tsv")
    add_out_argument(p, "pos_tagging")
    p.add_argument("--quick", action="store_true", help="tiny run for the test suite")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.word_dim, args.char_dim, args.char_hidden, args.hidden = 2, 16, 8, 8, 16
        args.lr = 1e-2
    for name in ("epochs", "batch", "max_tokens", "word_dim", "char_dim", "char_hidden", "hidden"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    for name in ("dropout", "word_dropout"):
        if not 0 <= getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must lie in [0, 1)")
    return args


# ----- data -------------------------------------------------------------------------------------
def read_upos(path: Path) -> list:
    """A FORM<TAB>UPOS file (blank line between sentences) -> [(words, tags), ...].

    Raises ValueError naming the line for a line without exactly one tab, an empty form, or a
    tag that is not one of the 17 UPOS tags.
    """
    sentences, words, tags = [], [], []
    known = set(UPOS)
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                if words:
                    sentences.append((words, tags))
                    words, tags = [], []
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0]:
                raise ValueError(f"{path}:{n}: expected FORM<TAB>UPOS, got {line!r}")
            if parts[1] not in known:
                raise ValueError(f"{path}:{n}: {parts[1]!r} is not a UPOS tag")
            words.append(parts[0])
            tags.append(parts[1])
    if words:  # the last sentence has no blank line after it
        sentences.append((words, tags))
    if not sentences:
        raise ValueError(f"{path}: no sentences")
    return sentences


def word_key(word: str) -> str:
    """What the word embedding is keyed on: lower case, every digit as 0 (the char BiLSTM
    still sees the original form)."""
    return "".join("0" if ch.isdigit() else ch for ch in word.lower())


def clip_word(word: str) -> str:
    if len(word) <= MAX_WORD_CHARS:
        return word
    half = MAX_WORD_CHARS // 2
    return word[:half] + word[-half:]


class Encoded:
    """A split as arrays: per sentence the word ids, tag ids and form ids (forms index a table
    of character sequences shared by all splits)."""

    def __init__(self, sentences, words: Vocab, tags: Vocab, forms: dict):
        self.words = [words.encode([word_key(w) for w in ws]) for ws, _ in sentences]
        self.tags = [tags.encode(ts) for _, ts in sentences]
        self.forms = [
            np.array([forms.setdefault(w, len(forms)) for w in ws]) for ws, _ in sentences
        ]
        self.lengths = np.array([len(ws) for ws, _ in sentences])
        self.oov = [ids == words.unk for ids in self.words]

    def __len__(self):
        return len(self.words)


class Chars:
    """The character sequences of every word form, looked up by form id."""

    def __init__(self, forms: dict, chars: Vocab):
        self.ids = [None] * len(forms)
        for form, i in forms.items():
            self.ids[i] = chars.encode(clip_word(form))

    def batch(self, form_ids: np.ndarray) -> tuple:
        """(T, B) form ids -> the distinct forms' chars (L, U), their lengths (U,), and the
        (T, B) index of each position's form among the U distinct ones."""
        distinct, index = np.unique(form_ids, return_inverse=True)
        chars, lengths = pad([self.ids[f] for f in distinct])
        return chars, lengths, index.reshape(form_ids.shape)


def make_batch(data: Encoded, chars: Chars, idx) -> dict:
    words, lengths = pad([data.words[i] for i in idx])
    forms, _ = pad([data.forms[i] for i in idx])
    tags, _ = pad([data.tags[i] for i in idx], value=IGNORE)
    char_ids, char_lengths, form_index = chars.batch(forms)
    return dict(
        words=words,
        lengths=lengths,
        chars=char_ids,
        char_lengths=char_lengths,
        form_index=form_index,
        tags=tags,
    )


# ----- model ------------------------------------------------------------------------------------
class CharWordTagger(nn.Module):
    """[word embedding; char-BiLSTM vector] at every position -> models.SequenceTagger."""

    def __init__(
        self,
        n_words,
        n_chars,
        n_tags,
        word_dim,
        char_dim,
        char_hidden,
        hidden,
        dropout,
        use_chars=True,
        bidirectional=True,
    ):
        super().__init__()
        self.word_emb = nn.Embedding(n_words, word_dim, padding_idx=0)
        self.use_chars = use_chars
        feat = word_dim
        if use_chars:
            self.char_emb = nn.Embedding(n_chars, char_dim, padding_idx=0)
            self.char_rnn = LSTM(char_dim, char_hidden, bidirectional=True)
            feat += 2 * char_hidden
        self.drop = nn.Dropout(dropout)
        self.tagger = SequenceTagger(
            feat, hidden, n_tags, bidirectional=bidirectional, dropout=dropout
        )

    def char_vectors(self, chars, char_lengths):
        """(L, U) chars of U distinct words -> (U, 2*char_hidden): [h->_L; h<-_1]."""
        _, (h_n, _) = self.char_rnn(self.char_emb(chars), lengths=char_lengths)
        return mg.cat([h_n[0], h_n[1]], axis=1)

    def forward(self, b):
        x = self.word_emb(b["words"])  # (T, B, word_dim)
        if self.use_chars:
            c = self.char_vectors(b["chars"], b["char_lengths"])[b["form_index"]]  # (T, B, 2Hc)
            x = mg.cat([x, c], axis=2)
        return self.tagger(self.drop(x), lengths=b["lengths"])  # (T, B, n_tags)


# ----- training and evaluation ------------------------------------------------------------------
def evaluate(model, data: Encoded, chars: Chars, n_tags, batch, max_tokens) -> dict:
    """Token accuracy overall and on out-of-vocabulary words, and the confusion matrix."""
    model.eval()
    confusion = np.zeros((n_tags, n_tags), dtype=np.int64)
    oov_right = oov_total = 0
    with mg.no_grad():
        for idx in length_batches(data.lengths, batch, max_tokens=max_tokens):
            b = make_batch(data, chars, idx)
            pred = model(b).numpy().argmax(axis=-1)
            valid = b["tags"] != IGNORE
            np.add.at(confusion, (b["tags"][valid], pred[valid]), 1)
            oov, _ = pad([data.oov[i].astype(np.int64) for i in idx])
            oov = oov.astype(bool) & valid
            oov_right += int((pred[oov] == b["tags"][oov]).sum())
            oov_total += int(oov.sum())
    model.train()
    return {
        "accuracy": float(np.trace(confusion) / confusion.sum()),
        "oov_accuracy": oov_right / oov_total if oov_total else float("nan"),
        "oov_tokens": oov_total,
        "tokens": int(confusion.sum()),
        "confusion": confusion,
    }


def train_epoch(model, opt, sched, data, chars, args, rng, epoch):
    batches = length_batches(data.lengths, args.batch, rng, args.max_tokens)
    bar = Progress(len(batches), f"epoch {epoch}")
    total, count = 0.0, 0
    for idx in batches:
        b = make_batch(data, chars, idx)
        if args.word_dropout:  # known words sometimes look unknown, as test words will
            hide = (rng.random(b["words"].shape) < args.word_dropout) & (b["words"] > 0)
            b["words"] = np.where(hide, UNK, b["words"])
        logits = model(b)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), b["tags"].reshape(-1), ignore_index=IGNORE
        )
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        sched.step()
        n = int(b["lengths"].sum())
        total, count = total + loss.item() * n, count + n
        bar.update(1, loss=f"{total / count:.3f}")
    bar.close()
    return total / count


def plot(history, confusion, tags, out: Path, name="BiLSTM") -> list:
    plt = pyplot()
    if plt is None:
        return []
    fig, ax1 = plt.subplots(figsize=(6, 4))
    epochs = range(1, len(history["loss"]) + 1)
    ax1.plot(epochs, history["loss"], "o-", color="tab:blue", label="training loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy per word", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [100 * a for a in history["dev"]], "s-", color="tab:red", label="dev")
    ax2.set_ylabel("dev token accuracy (%)", color="tab:red")
    ax1.set_title(f"{name} POS tagger on UD English-EWT")
    fig.tight_layout()
    fig.savefig(out / "learning_curve.png", dpi=100, bbox_inches="tight")
    plt.close(fig)

    rows = confusion.sum(axis=1, keepdims=True)
    norm = confusion / np.maximum(rows, 1)
    per_tag = np.diag(norm)
    fig, ax = plt.subplots(figsize=(8, 7))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(tags)), tags, rotation=90)
    ax.set_yticks(
        range(len(tags)), [f"{t} {100 * a:.1f}%" for t, a in zip(tags, per_tag, strict=True)]
    )
    ax.set_xlabel("predicted tag")
    ax.set_ylabel("true tag (per-tag accuracy)")
    for i in range(len(tags)):
        for j in range(len(tags)):
            if i != j and norm[i, j] >= 0.02:
                ax.text(j, i, f"{100 * norm[i, j]:.0f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true tag's tokens")
    ax.set_title("Test confusion matrix (rows normalised; off-diagonal >= 2% in %)")
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return ["learning_curve.png", "confusion.png"]


def main(argv=None) -> dict:
    args = parse_args(argv)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    args.out = output_folder(args.out, "pos_tagging", args.quick)
    splits = {s: read_upos(args.data / f"en_ewt-upos-{s}.tsv") for s in ("train", "dev", "test")}
    if args.quick:
        splits = {
            "train": splits["train"][:300],
            "dev": splits["dev"][:100],
            "test": splits["test"][:100],
        }

    train_words = Counter(word_key(w) for ws, _ in splits["train"] for w in ws)
    words = Vocab.build(train_words, args.min_freq, args.max_vocab)
    assert words.unk == UNK
    char_counts = Counter(ch for ws, _ in splits["train"] for w in ws for ch in w)
    chars_vocab = Vocab.build(char_counts, min_freq=2)
    tags = Vocab(UPOS, specials=(), unk=None)
    forms = {}
    data = {s: Encoded(sents, words, tags, forms) for s, sents in splits.items()}
    chars = Chars(forms, chars_vocab)
    print(
        f"UD English-EWT: {', '.join(f'{s} {len(d):,} sentences' for s, d in data.items())}; "
        f"{len(words):,} words, {len(chars_vocab)} characters in the vocabularies"
    )

    mg.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = CharWordTagger(
        len(words),
        len(chars_vocab),
        len(tags),
        args.word_dim,
        args.char_dim,
        args.char_hidden,
        args.hidden,
        args.dropout,
        not args.no_chars,
        not args.unidirectional,
    )
    opt = optim.Adam(model.parameters(), lr=args.lr)
    # The step size decays along a cosine, batch by batch, to 1/20 of --lr at the end.
    n_batches = len(length_batches(data["train"].lengths, args.batch, None, args.max_tokens))
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs * n_batches, args.lr / 20)
    n_params = sum(p.numel() for p in model.parameters())
    word_rnn_params = sum(p.numel() for p in model.tagger.encoder.parameters())
    direction = "unidirectional" if args.unidirectional else "bidirectional"
    print(f"{model}\n{n_params:,} parameters")
    reads = "left to right only" if args.unidirectional else "both ways"
    char_vectors = "none" if args.no_chars else "bidirectional LSTM, unchanged"
    print(
        f"word-level LSTM: {direction} ({reads}, {args.hidden} units per direction, "
        f"{word_rnn_params:,} parameters); char-level word vectors: {char_vectors}",
        flush=True,
    )

    history = {"loss": [], "dev": [], "dev_oov": [], "seconds": []}
    best, best_state = -1.0, None
    ev = lambda split: evaluate(
        model, data[split], chars, len(tags), 4 * args.batch, 4 * args.max_tokens
    )
    t_train = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        loss = train_epoch(model, opt, sched, data["train"], chars, args, rng, epoch)
        dev = ev("dev")
        history["loss"].append(loss)
        history["dev"].append(dev["accuracy"])
        history["dev_oov"].append(dev["oov_accuracy"])
        history["seconds"].append(time.perf_counter() - t_train)
        print(
            f"epoch {epoch}: train loss {loss:.4f}  dev accuracy {100 * dev['accuracy']:.2f}% "
            f"(unknown words {100 * dev['oov_accuracy']:.2f}%)  "
            f"{history['seconds'][-1]:.0f}s",
            flush=True,
        )
        if dev["accuracy"] > best:
            best, best_state = dev["accuracy"], model.state_dict()
    model.load_state_dict(best_state)
    dev, test = ev("dev"), ev("test")
    per_tag = test["confusion"].diagonal() / np.maximum(test["confusion"].sum(axis=1), 1)
    metrics = {
        "dev_accuracy": dev["accuracy"],
        "test_accuracy": test["accuracy"],
        "dev_oov_accuracy": dev["oov_accuracy"],
        "test_oov_accuracy": test["oov_accuracy"],
        "test_oov_tokens": test["oov_tokens"],
        "test_tokens": test["tokens"],
        "test_per_tag_accuracy": dict(zip(UPOS, per_tag.tolist(), strict=True)),
        "best_epoch": int(np.argmax(history["dev"])) + 1,
        "history": history,
        "word_vocab": len(words),
        "parameters": n_params,
        "word_lstm": direction,
        "word_lstm_parameters": word_rnn_params,
        "train_seconds": history["seconds"][-1],
        "wall_seconds": time.perf_counter() - t_start,
        "cpu_seconds": time.process_time() - cpu_start,
        "machine": machine(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    name = "Left-to-right LSTM" if args.unidirectional else "BiLSTM"
    figures = plot(history, test["confusion"], UPOS, args.out, name)
    write_metrics(args.out, metrics)
    print(
        f"dev accuracy {100 * dev['accuracy']:.2f}%, test accuracy "
        f"{100 * test['accuracy']:.2f}% ({test['tokens']:,} tokens; "
        f"{100 * test['oov_accuracy']:.2f}% on {test['oov_tokens']:,} unknown words)"
    )
    print(finished(metrics, ["metrics.json", *figures], args.out))
    return metrics


if __name__ == "__main__":
    main()
