"""English -> French translation on real sentences (Tatoeba), with and without attention.

Minlie Huang's lecture slides "Recurrent Neural Networks" (Tsinghua University) end with
attention for neural machine translation: to produce word t the decoder attends to the encoder
states h_j (e_tj = a(s_{t-1}, h_j), alpha_tj = softmax_j(e_tj), c_t = sum_j alpha_tj h_j,
s_t = f(s_{t-1}, y_{t-1}, c_t)). Bahdanau, Cho & Bengio (2015) introduced it because an
encoder-decoder that squeezes the source into one fixed vector (Cho et al. 2014) degrades as
sentences grow. This study trains both on the same data, at the same size and budget:

  attention  models.Seq2Seq(attention='additive'): c_t from Bahdanau attention
  none       models.Seq2Seq(attention='none'): c_t = [h->_S; h<-_1], the encoder's final states
             at every step (the same network minus the attention's three matrices)

Data: the Tatoeba English-French pairs in examples/data/tatoeba_eng_fra/ (CC BY 2.0 FR; see its
SOURCE.md): 76,037 pairs, English sentences of 1-9 words. Lower-cased, punctuation split off,
French elisions kept as tokens ("j'" "ai"). The English sentences are split (seeded) into
training, validation and test sentences, so no test sentence is seen in any translation; each
test sentence is scored against all of its French translations (multi-reference). Words seen
fewer than --src-min-freq / --tgt-min-freq times in training become <unk>.

Scored by corpus BLEU from sacrebleu (Post 2018, "A Call for Clarity in Reporting BLEU
Scores"; lower-cased, its 13a tokenisation; the signature is in metrics.json), for greedy
decoding and beam search, overall and by source length.

    python examples/translation.py            # both models (CPU hours; resumable)
    python examples/translation.py --report   # the tables of what is finished
    python examples/translation.py --quick    # seconds (the test suite runs this)

Writes to --out (default examples/results/translation/; translation-quick/ with --quick):
runs/, results.md, metrics.json, bleu_by_length.png, attention.png, learning_curves.png.
"""

import argparse
import gzip
import re
import time
import unicodedata
from collections import Counter
from pathlib import Path

import bootstrap  # noqa: F401  (before NumPy: one BLAS thread, the repository importable)
import numpy as np
from apps_common import Vocab, length_batches, pad
from common import (
    add_out_argument,
    markdown_table,
    output_folder,
    pyplot,
    write_json,
    write_text,
)
from study_runs import Run, RunStore, flushed_denormals, run_each

import minigrad as mg
import minigrad.nn as nn
import minigrad.nn.functional as F
import minigrad.optim as optim
from models import Seq2Seq

NAME = "translation"
DATA = Path(__file__).resolve().parent / "data" / "tatoeba_eng_fra" / "eng-fra.txt.gz"
MODELS = {"attention": "additive", "none": "none"}
LABELS = {"attention": "with attention (Bahdanau)", "none": "without attention (fixed context)"}
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")  # PAD 0, BOS 1, EOS 2, as Seq2Seq expects
BUCKETS = ((1, 3), (4, 4), (5, 5), (6, 6), (7, 7), (8, 99))
TOKEN = re.compile(r"\w+'|\w+(?:-\w+)*|[^\w\s]")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_out_argument(p, NAME)
    p.add_argument("--quick", action="store_true", help="a seconds-long smoke run (tests)")
    p.add_argument("--no-progress", action="store_true", help="(no progress bars are drawn)")
    p.add_argument("--models", nargs="+", choices=tuple(MODELS), default=list(MODELS))
    p.add_argument("--seeds", type=int, help="seeds per model (default 1)")
    p.add_argument("--steps", type=int, help="updates per run (default 6000)")
    p.add_argument("--batch", type=int, help="sentence pairs per update (default 64)")
    p.add_argument("--embed", type=int, help="embedding size (default 128)")
    p.add_argument("--hidden", type=int, help="encoder units per direction (default 128)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--clip", type=float, default=5.0, help="gradient-norm clip (default 5)")
    p.add_argument("--beam", type=int, default=5, help="beam size (default 5)")
    p.add_argument("--length-penalty", type=float, default=1.0, help="beam: score / len**this")
    p.add_argument("--src-min-freq", type=int, default=3, help="English words kept (>= 3)")
    p.add_argument("--tgt-min-freq", type=int, default=5, help="French words kept (>= 5)")
    p.add_argument("--test", type=int, help="held-out English sentences (default 2000)")
    p.add_argument("--eval-every", type=int, help="validation loss every N updates (500)")
    p.add_argument("--ckpt-seconds", type=float, default=60.0, help="checkpoint every N CPU s")
    p.add_argument("--report", action="store_true", help="only tabulate the finished runs")
    p.add_argument("--data", type=Path, default=DATA)
    args = p.parse_args(argv)
    full = dict(seeds=1, steps=6000, batch=64, embed=128, hidden=128, test=2000, eval_every=500)
    quick = dict(seeds=1, steps=8, batch=16, embed=8, hidden=8, test=40, eval_every=4)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick:
        args.beam, args.src_min_freq, args.tgt_min_freq = 2, 1, 1
    return args


# ----- data --------------------------------------------------------------------------------------
def normalise(text: str) -> str:
    return unicodedata.normalize("NFC", text).replace("\u2019", "'").lower().strip()


def tokenize(text: str) -> list:
    """Words, elisions ("j'" "ai"), hyphenated words ("est-ce") and punctuation marks."""
    return TOKEN.findall(normalise(text))


def detokenize(tokens) -> str:
    """Tokens back to text: elisions join the next word; 13a tokenisation does the rest."""
    return re.sub(r"' ", "'", " ".join(tokens))


def read_pairs(path: Path, quick: bool) -> list:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        pairs = [tuple(line.rstrip("\n").split("\t")[:2]) for line in f if "\t" in line]
    if quick:  # the short sentences at the start and some longer ones further on
        pairs = pairs[:600] + pairs[40000:40600]
    return pairs


def split(pairs, n_test, seed=0):
    """Group the pairs by English sentence and split the sentences: (train pairs,
    validation pairs, test [(english, [french translations])])."""
    groups = {}
    for en, fr in pairs:
        groups.setdefault(en, []).append(fr)
    sentences = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(sentences))
    n_val = n_test // 4
    test = [sentences[i] for i in order[:n_test]]
    val = [sentences[i] for i in order[n_test : n_test + n_val]]
    train = [sentences[i] for i in order[n_test + n_val :]]
    flat = lambda names: [(en, fr) for en in names for fr in groups[en]]
    return flat(train), flat(val), [(en, groups[en]) for en in test]


class Data:
    def __init__(self, args):
        pairs = read_pairs(args.data, args.quick)
        train, val, self.test = split(pairs, args.test)
        tok = lambda rows: [(tokenize(en), tokenize(fr)) for en, fr in rows]
        self.train, self.val = tok(train), tok(val)
        self.src_vocab = Vocab.build(
            Counter(w for en, _ in self.train for w in en), args.src_min_freq, specials=SPECIALS
        )
        self.tgt_vocab = Vocab.build(
            Counter(w for _, fr in self.train for w in fr), args.tgt_min_freq, specials=SPECIALS
        )
        self.test_src = [tokenize(en) for en, _ in self.test]
        self.n_pairs = len(pairs)

    def encode(self, rows):
        src = [self.src_vocab.encode(en) for en, _ in rows]
        tgt = [np.append(self.tgt_vocab.encode(fr), 2) for _, fr in rows]  # ... EOS
        return src, tgt


def batch_order(lengths, batch, seed, epoch):
    """The batches of one epoch: similar lengths together, shuffled, fixed by (seed, epoch)."""
    return length_batches(lengths, batch, np.random.default_rng([seed, epoch]))


# ----- training ----------------------------------------------------------------------------------
def make_model(kind, data, args):
    return Seq2Seq(
        len(data.src_vocab), len(data.tgt_vocab), args.embed, args.hidden, attention=MODELS[kind]
    )


def loss_of(model, src, tgt):
    s, s_len = pad(src)
    t, _ = pad(tgt)
    logits, _ = model(s, t, s_len)
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), t.reshape(-1), ignore_index=0)


def validation_loss(model, src, tgt, batch=256) -> float:
    total, n = 0.0, 0
    with mg.no_grad():
        for idx in length_batches([len(s) for s in src], batch):
            k = sum(int((tgt[i] != 0).sum()) for i in idx)
            total += loss_of(model, [src[i] for i in idx], [tgt[i] for i in idx]).item() * k
            n += k
    return total / n


def train(store, key, kind, seed, data, args) -> dict:
    run = Run(store, key)
    mg.manual_seed(seed)
    model = make_model(kind, data, args)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    src, tgt = data.encode(data.train)
    val_src, val_tgt = data.encode(data.val)
    lengths = [len(s) for s in src]
    step, curve, val_curve = 0, [], []
    if run.resumed:
        model.load_state_dict(run.saved["model"])
        opt.load_state_dict(run.saved["optim"])
        step, curve, val_curve = int(run.saved["step"]), run.saved["curve"], run.saved["val_curve"]
    snapshot = lambda: dict(
        model=model.state_dict(),
        optim=opt.state_dict(),
        step=step,
        curve=curve,
        val_curve=val_curve,
    )
    per_epoch = len(batch_order(lengths, args.batch, seed, 0))
    running = curve[-1][1] if curve else None
    while step < args.steps:
        epoch, pos = divmod(step, per_epoch)
        idx = batch_order(lengths, args.batch, seed, epoch)[pos]
        loss = loss_of(model, [src[i] for i in idx], [tgt[i] for i in idx])
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        step += 1
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 50 == 0:
            curve.append([step, running])
        if step % args.eval_every == 0 or step == args.steps:
            val_curve.append([step, validation_loss(model, val_src, val_tgt)])
            print(
                f"  {key} step {step}: train {running:.3f}, "
                f"validation {val_curve[-1][1]:.3f} nats/word",
                flush=True,
            )
        run.tick(snapshot)
    run.save(snapshot)  # the trained model, before the (long) evaluation
    result = dict(
        kind=kind,
        seed=seed,
        steps=step,
        parameters=sum(p.numel() for p in model.parameters()),
        train_cpu_s=run.cpu_s(),
        curve=curve,
        val_curve=val_curve,
    )
    result.update(evaluate(model, data, args))
    result["cpu_s"] = run.cpu_s()
    return store.finish(key, result)


# ----- evaluation --------------------------------------------------------------------------------
def translate(model, data, args, beam: int) -> list:
    """Decode every test sentence: [(tokens, attention (len, S))] in test order."""
    src = [data.src_vocab.encode(s) for s in data.test_src]
    out = [None] * len(src)
    for idx in length_batches([len(s) for s in src], 256):
        s, s_len = pad([src[i] for i in idx])
        if beam > 1:
            hyps = model.beam_search(
                s, s_len, beam_size=beam, max_len=30, length_penalty=args.length_penalty
            )
        else:
            hyps = model.greedy_decode(s, s_len, max_len=30)
        for i, h in zip(idx, hyps, strict=True):
            toks = [t for t in h.tokens.tolist() if t != 2]
            att = np.asarray(h.attention)  # (len, S of the batch), or (len, 1) without attention
            out[i] = (
                data.tgt_vocab.decode(toks),
                att if model.fixed_context else att[:, : len(src[i])],
            )
    return out


def bleu(hyps, refs):
    import sacrebleu

    streams = [[r[k] if k < len(r) else None for r in refs] for k in range(max(map(len, refs)))]
    score = sacrebleu.BLEU(lowercase=True)
    result = score.corpus_score(hyps, streams)
    return result.score, str(score.get_signature())


def evaluate(model, data, args) -> dict:
    model.eval()
    refs = [[normalise(f) for f in frs] for _, frs in data.test]
    lengths = np.array([len([t for t in s if re.match(r"\w", t)]) for s in data.test_src])
    result = {}
    with mg.no_grad():
        for name, beam in (("greedy", 1), ("beam", args.beam)):
            decoded = translate(model, data, args, beam)
            hyps = [detokenize(toks) for toks, _ in decoded]
            score, signature = bleu(hyps, refs)
            by_length = {}
            for lo, hi in BUCKETS:
                sel = np.flatnonzero((lengths >= lo) & (lengths <= hi))
                if sel.size:
                    by_length[f"{lo}-{hi}" if hi != lo else str(lo)] = [
                        bleu([hyps[i] for i in sel], [refs[i] for i in sel])[0],
                        int(sel.size),
                    ]
            result[name] = dict(bleu=score, by_length=by_length, hypotheses=hyps)
            if name == "greedy":
                result["attention_examples"] = pick_examples(data, decoded, lengths)
    result["signature"] = signature
    model.train()
    return result


def pick_examples(data, decoded, lengths, n=4) -> list:
    """Four test sentences among the longest, with their decoding and attention."""
    order = np.argsort(-lengths, kind="stable")[: 10 * n]
    picks = sorted(order[::10][:n].tolist())
    return [
        dict(source=data.test_src[i], output=decoded[i][0], attention=decoded[i][1].tolist())
        for i in picks
    ]


# ----- report ------------------------------------------------------------------------------------
def tables(results, args, data) -> str:
    rows, length_rows = [], []
    buckets = [f"{lo}-{hi}" if hi != lo else str(lo) for lo, hi in BUCKETS]
    for r in results.values():
        rows.append(
            [
                LABELS[r["kind"]],
                r["seed"],
                f"{r['parameters']:,}",
                f"{r['steps']:,}",
                f"{r['val_curve'][-1][1]:.3f}",
                f"{r['greedy']['bleu']:.1f}",
                f"{r['beam']['bleu']:.1f}",
                f"{r['cpu_s']:.0f}",
            ]
        )
        for name in ("greedy", "beam"):
            by = r[name]["by_length"]
            length_rows.append(
                [f"{LABELS[r['kind']]}, {name}"]
                + [f"{by[b][0]:.1f}" if b in by else "-" for b in buckets]
            )
    counts = results and next(iter(results.values()))["greedy"]["by_length"]
    head = ["English words"] + [f"{b} ({counts[b][1]})" if b in counts else b for b in buckets]
    return (
        markdown_table(
            [
                "model",
                "seed",
                "parameters",
                "updates",
                "val loss",
                "BLEU greedy",
                f"BLEU beam {args.beam}",
                "CPU s",
            ],
            rows,
        )
        + "\n\nBLEU by the length of the English sentence (test sentences per bucket):\n\n"
        + markdown_table(head, length_rows)
    )


def plot(results, args, out):
    plt = pyplot()
    if plt is None or not results:
        return []
    files = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results.values():
        for name, style in (("greedy", "o-"), ("beam", "s--")):
            by = r[name]["by_length"]
            ax.plot(
                list(by), [v[0] for v in by.values()], style, label=f"{LABELS[r['kind']]}, {name}"
            )
    ax.set(
        xlabel="English sentence length (words)",
        ylabel="corpus BLEU",
        title="BLEU against sentence length (held-out Tatoeba sentences)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "bleu_by_length.png", dpi=110)
    plt.close(fig)
    files.append("bleu_by_length.png")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results.values():
        steps, v = np.array(r["val_curve"]).T
        ax.plot(steps, v, "o-", label=LABELS[r["kind"]])
    ax.set(xlabel="update", ylabel="validation cross-entropy (nats/word)", title="Learning curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png", dpi=110)
    plt.close(fig)
    files.append("learning_curves.png")
    att = next((r for r in results.values() if r["kind"] == "attention"), None)
    if att is not None:
        ex = att["attention_examples"]
        fig, axes = plt.subplots(1, len(ex), figsize=(4.2 * len(ex), 4.2), squeeze=False)
        for a, e in zip(axes[0], ex, strict=True):
            w = np.array(e["attention"])[: len(e["output"]) + 1, : len(e["source"])]
            a.imshow(w, cmap="viridis", vmin=0, vmax=1, aspect="auto")
            a.set_xticks(range(len(e["source"])), e["source"], rotation=60, fontsize=8)
            a.set_yticks(range(len(w)), (e["output"] + ["<eos>"])[: len(w)], fontsize=8)
        fig.suptitle("Attention weights alpha_tj on held-out sentences (rows: French words)")
        fig.tight_layout()
        fig.savefig(out / "attention.png", dpi=110)
        plt.close(fig)
        files.append("attention.png")
    return files


def main(argv=None) -> dict:
    with flushed_denormals() as ftz:  # 10x faster long-lag backward; see study_runs
        return study(parse_args(argv), ftz)


def study(args, ftz) -> dict:
    out = output_folder(args.out, NAME, args.quick)
    started = time.perf_counter()
    data = Data(args)
    print(
        f"{NAME}: {data.n_pairs:,} pairs; {len(data.train):,} training and "
        f"{len(data.val):,} validation pairs, {len(data.test):,} test sentences; vocabularies "
        f"{len(data.src_vocab):,} English and {len(data.tgt_vocab):,} French"
    )
    keys = [(kind, s) for s in range(args.seeds) for kind in args.models]
    stopped = not args.report and run_each(
        out,
        keys,
        args.ckpt_seconds,
        lambda store, key, kind, s: train(store, key, kind, 1000 * s + 11, data, args),
        lambda r: (
            f"BLEU greedy {r['greedy']['bleu']:.2f}, beam {r['beam']['bleu']:.2f}, "
            f"{r['cpu_s']:.0f} CPU s"
        ),
    )
    wanted = {f"{k}-s{s}" for k, s in keys}
    results = {k: r for k, r in RunStore(out).results().items() if k in wanted}
    status = (
        "all runs done"
        if len(results) == len(keys)
        else f"**partial: {len(results)} of {len(keys)} runs done**"
    )
    text = (
        f"Budget: {args.steps:,} updates of {args.batch} pairs per run, Adam lr {args.lr:g}, "
        f"clip {args.clip:g}; bidirectional GRU encoder {args.hidden} per direction, "
        f"embeddings {args.embed}; {status}.\n\n" + (tables(results, args, data) if results else "")
    )
    print("\n" + text)
    write_text(out / "results.md", f"# Translation with and without attention\n\n{text}\n")
    figures = plot(results, args, out)
    metrics = dict(
        example=NAME,
        quick=args.quick,
        flush_denormals=ftz,
        complete=len(results) == len(keys),
        stopped=stopped,
        settings={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        data=dict(
            pairs=data.n_pairs,
            train_pairs=len(data.train),
            val_pairs=len(data.val),
            test_sentences=len(data.test),
            src_vocab=len(data.src_vocab),
            tgt_vocab=len(data.tgt_vocab),
        ),
        runs={
            k: {f: v for f, v in r.items() if f not in ("greedy", "beam")}
            | {
                n: {"bleu": r[n]["bleu"], "by_length": r[n]["by_length"]}
                for n in ("greedy", "beam")
            }
            for k, r in results.items()
        },
        tables=text,
        figures=figures,
        wall_s=time.perf_counter() - started,
    )
    write_json(out / "metrics.json", metrics)
    print(f"wrote {out / 'results.md'}, {out / 'metrics.json'}, figures {figures}")
    return metrics


if __name__ == "__main__":
    main()
