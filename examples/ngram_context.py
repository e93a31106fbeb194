"""An LSTM language model against Kneser-Ney n-grams, and how much context the LSTM uses.

Alexandra Birch's lecture "Natural Language Understanding, Generation, and Machine Translation,
Lecture 5: Recurrent Neural Networks" motivates recurrent LMs by the n-gram model's Markov
assumption, P(w_i | w_1..w_{i-1}) ~ P(w_i | w_{i-n+1}..w_{i-1}): "long range dependencies can
never be captured using an n-gram model", while the RNN's probability depends "recursively
through h_i" on all of the history, "with no Markov assumption". This program puts numbers on
both halves at character level on tiny-shakespeare, with the main job's split (first 90%
trains, last 10% validates):

1. Interpolated Kneser-Ney n-grams (Kneser & Ney 1995; Chen & Goodman 1998's interpolated
   form, one discount per order D = n1 / (n1 + 2 n2), lower orders from continuation counts,
   the uniform distribution below the unigram) for n = 1..--orders, on the whole validation
   split.
2. An LSTM LM as le_lm_table.py's (embedding 64, 128 units, truncated BPTT 64 x 32 streams,
   Adam 1e-3, clip 1, --steps updates; resumable), on the whole validation split with its
   state carried (as le_lm_table.py reports), and with its context cut: at --positions random
   validation positions, the loss of the next character when the LSTM reads only the k
   characters before it (zero state k steps back), k = 1, 2, 4, .., --max-k, against the loss
   at the same positions with the state carried from the start of its stream (at least
   --max-k characters before). The n-gram of order k + 1, which also reads k characters, is
   scored at the same positions.

    python examples/ngram_context.py            # ~10 CPU minutes (the LSTM's training)
    python examples/ngram_context.py --quick    # seconds (the test suite runs this)

Writes to --out (default examples/results/ngram_context/): runs/ (the LSTM's run; its trained
weights as lstm-s0.model, not committed), results.md, metrics.json, ngram_context.png.
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
from le_lm_table import DATA, CharLM, chunk, load_corpus, streams
from study_runs import Run, RunStore, flushed_denormals

import minigrad as mg
import minigrad.nn as nn
import minigrad.nn.functional as F
import minigrad.optim as optim
from models.tbptt import detach_state

NAME = "ngram_context"
LN2 = math.log(2)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_out_argument(p, NAME)
    p.add_argument("--quick", action="store_true", help="a seconds-long smoke run (tests)")
    p.add_argument("--seed", type=int, default=0, help="seed of the LSTM and positions (0)")
    p.add_argument("--orders", type=int, help="largest n of the n-grams (default 8)")
    p.add_argument("--steps", type=int, help="LSTM updates (default 10000)")
    p.add_argument("--batch", type=int, help="parallel streams (default 32)")
    p.add_argument("--positions", type=int, help="positions scored with cut context (4096)")
    p.add_argument("--max-k", type=int, help="longest cut context (default 512)")
    p.add_argument(
        "--tolerance", type=float, default=0.01, help="'uses k chars': within this (0.01 bpc)"
    )
    p.add_argument("--ckpt-seconds", type=float, default=60.0, help="checkpoint every N CPU s")
    p.add_argument("--data", type=Path, default=DATA, help="a plain-text corpus")
    args = p.parse_args(argv)
    full = dict(orders=8, steps=10000, batch=32, positions=4096, max_k=512)
    quick = dict(orders=4, steps=30, batch=4, positions=64, max_k=16)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    # le_lm_table's LSTM and training settings
    args.embed, args.lstm_hidden, args.bptt, args.lr, args.clip = 64, 128, 64, 1e-3, 1.0
    if args.quick:
        args.embed, args.lstm_hidden, args.bptt = 8, 12, 16
    return args


# ----- interpolated Kneser-Ney ------------------------------------------------------------------
def codes(ids, m, V):
    """The m-gram ending at each position t >= m - 1, as one integer (base V)."""
    out = np.zeros(len(ids) - m + 1, np.int64)
    for j in range(m):
        out = out * V + ids[j : len(ids) - m + 1 + j]
    return out


class KneserNey:
    """Interpolated Kneser-Ney of order n over the integer symbols 0..V-1 of `train`."""

    def __init__(self, train, n, V):
        if V ** (n + 1) >= 2**62:
            raise ValueError(f"KneserNey: order {n} over {V} symbols overflows int64 codes")
        self.n, self.V, self.orders = n, V, []
        for m in range(1, n + 1):
            if m == n:  # the highest order counts occurrences
                keys, counts = np.unique(codes(train, m, V), return_counts=True)
            else:  # lower orders count the distinct characters seen before the m-gram
                longer = np.unique(codes(train, m + 1, V))
                keys, counts = np.unique(longer % V**m, return_counts=True)
            n1, n2 = np.sum(counts == 1), np.sum(counts == 2)
            D = n1 / (n1 + 2 * n2) if n1 + n2 > 0 else 0.5
            ctx, total = np.unique(keys // V, return_counts=False), None
            index = np.searchsorted(ctx, keys // V)
            total = np.bincount(index, weights=counts, minlength=len(ctx))
            types = np.bincount(index, minlength=len(ctx))
            self.orders.append(
                dict(keys=keys, counts=counts, D=D, ctx=ctx, total=total, types=types)
            )

    @staticmethod
    def _lookup(keys, q):
        i = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
        return i, keys[i] == q

    def log_prob(self, ids, positions):
        """ln P(ids[t] | the n - 1 symbols before it) for each t in positions (t >= n - 1)."""
        positions = np.asarray(positions)
        if positions.min() < self.n - 1:
            raise ValueError(f"KneserNey.log_prob: positions must be >= {self.n - 1}")
        p = np.full(len(positions), 1.0 / self.V)
        for m, o in enumerate(self.orders, start=1):
            q = codes(ids, m, self.V)[positions - m + 1]
            i, seen = self._lookup(o["keys"], q)
            c = np.where(seen, o["counts"][i], 0)
            j, has = self._lookup(o["ctx"], q // self.V)
            total = np.where(has, o["total"][j], 0.0)
            types = np.where(has, o["types"][j], 0)
            safe = np.maximum(total, 1.0)
            mixed = (np.maximum(c - o["D"], 0) + o["D"] * types * p) / safe
            p = np.where(total > 0, mixed, p)
        return np.log(p)


# ----- the LSTM ----------------------------------------------------------------------------------
def train_lstm(out, vocab, train_ids, args):
    """le_lm_table's LSTM run (resumable); returns the trained model and the run's record."""
    store = RunStore(out, every_s=args.ckpt_seconds)
    key, weights = f"lstm-s{args.seed}", store.folder / f"lstm-s{args.seed}.model"
    mg.manual_seed(1000 * args.seed + 7)
    model = CharLM("lstm", vocab, args.embed, args.lstm_hidden, 1)
    record = store.result(key)
    if record is not None and weights.exists():
        model.load_state_dict(mg.load(weights))
        return model, record
    run, opt = Run(store, key), optim.Adam(model.parameters(), lr=args.lr)
    data, n_chunks = streams(train_ids, args.batch, args.bptt)
    step, state, curve, running = 0, None, [], None
    if run.resumed:
        s = run.saved
        model.load_state_dict(s["model"])
        opt.load_state_dict(s["optim"])
        step, curve, running = int(s["step"]), list(s["curve"]), s["running"]
        state = None if s["state"] is None else tuple(mg.tensor(a) for a in s["state"])
    snapshot = lambda: dict(
        model=model.state_dict(),
        optim=opt.state_dict(),
        step=step,
        curve=curve,
        running=running,
        state=None if state is None else [t.detach().numpy() for t in state],
    )
    with store.stopping():
        while step < args.steps:
            k = step % n_chunks
            state = None if k == 0 else state
            x, y = chunk(data, k, args.bptt)
            logits, state = model(mg.tensor(x), state)
            loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            state = detach_state(state)
            step += 1
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            if step % 50 == 0:
                curve.append([step, running])
            run.tick(snapshot)
    mg.save(model.state_dict(), weights)
    record = store.finish(key, dict(steps=step, cpu_s=run.cpu_s(), curve=curve))
    return model, record


def carried_losses(model, data, bptt):
    """Per-character loss (nats) over streams (B, L) with the state carried from each stream's
    start: (B, L - 1), entry [b, j] the loss of data[b, j + 1]."""
    state, out = None, []
    with mg.no_grad():
        for k in range((data.shape[1] - 1 + bptt - 1) // bptt):
            x = data[:, k * bptt : (k + 1) * bptt].T
            y = data[:, k * bptt + 1 : (k + 1) * bptt + 1].T
            logits, state = model(mg.tensor(x[: len(y)]), state)
            loss = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none"
            )
            out.append(loss.numpy().reshape(y.shape).T)
    return np.concatenate(out, axis=1)


def window_losses(model, data, rows, cols, k, chunk_size=512):
    """Loss of data[rows, cols] when the LSTM reads only data[rows, cols - k : cols]."""
    losses = []
    with mg.no_grad():
        for s in range(0, len(rows), chunk_size):
            r, c = rows[s : s + chunk_size], cols[s : s + chunk_size]
            x = data[r[None, :], c[None, :] + np.arange(-k, 0)[:, None]]
            logits, _ = model(mg.tensor(x))
            loss = F.cross_entropy(logits[-1], data[r, c], reduction="none")
            losses.append(loss.numpy())
    return np.concatenate(losses)


# ----- the study ---------------------------------------------------------------------------------
def ks(args) -> list:
    return [2**i for i in range(int(math.log2(args.max_k)) + 1)]


def study(args) -> dict:
    out = output_folder(args.out, NAME, args.quick)
    started, cpu0 = time.perf_counter(), time.process_time()
    vocab, train_ids, val_ids = load_corpus(args.data, args.quick)
    text = np.concatenate([train_ids, val_ids])  # n-gram contexts may reach into train's end
    val_at = np.arange(len(train_ids), len(text))

    model, record = train_lstm(out, vocab, train_ids, args)
    data, _ = streams(val_ids, args.batch, args.bptt)
    carried = carried_losses(model, data, args.bptt)  # [b, j]: loss of data[b, j + 1]
    rng = np.random.default_rng(args.seed + 1)
    L = data.shape[1]
    rows = rng.integers(0, args.batch, args.positions)
    cols = rng.integers(args.max_k, L, args.positions)  # at least max_k characters before
    at = rows * L + cols  # the same characters' indices in val_ids
    cut = {k: window_losses(model, data, rows, cols, k) for k in ks(args)}
    full = carried[rows, cols - 1]

    ngram, ngram_at = {}, {}
    for n in range(1, args.orders + 1):
        lp = KneserNey(train_ids, n, vocab).log_prob(text, val_at)
        ngram[n] = float(-lp.mean() / LN2)
        ngram_at[n] = float(-lp[at].mean() / LN2)
    lstm_val = float(carried.mean() / LN2)
    cut_bpc = {k: float(v.mean() / LN2) for k, v in cut.items()}
    full_bpc = float(full.mean() / LN2)
    # paired standard error of (cut - full) at the same positions
    gap_se = {k: float((v - full).std(ddof=1) / math.sqrt(len(full)) / LN2) for k, v in cut.items()}
    best_n = min(ngram, key=ngram.get)

    rows_ngram = [[n, n - 1, f"{ngram[n]:.4f}", f"{ngram_at[n]:.4f}"] for n in ngram]
    rows_cut = [
        [
            k,
            f"{cut_bpc[k]:.4f}",
            f"{cut_bpc[k] - full_bpc:+.4f} ± {gap_se[k]:.4f}",
            f"{ngram_at[k + 1]:.4f}" if k + 1 in ngram_at else "-",
        ]
        for k in ks(args)
    ]
    rows_cut.append(["full (state from the stream's start)", f"{full_bpc:.4f}", "0", "-"])
    within = [k for k in ks(args) if cut_bpc[k] - full_bpc <= args.tolerance]
    text_md = (
        f"Validation bits/char; {len(val_ids):,} validation characters, {vocab} symbols.\n\n"
        + markdown_table(
            ["n", "context chars", "KN n-gram, whole split", f"at the {args.positions} positions"],
            rows_ngram,
        )
        + f"\n\nLSTM ({args.lstm_hidden} units, {record['steps']:,} updates): {lstm_val:.4f} "
        f"bits/char on the whole split, state carried; best n-gram: n = {best_n}, "
        f"{ngram[best_n]:.4f} ({ngram[best_n] - lstm_val:+.4f} against the LSTM).\n\n"
        "The LSTM with its context cut to k characters, at the same positions:\n\n"
        + markdown_table(
            ["k", "LSTM, k chars", "minus full (± s.e.)", "KN of order k + 1"], rows_cut
        )
        + f"\n\nShortest k whose cut loss is within {args.tolerance:g} bits/char of the full "
        "context's: " + (f"{within[0]}" if within else f"none up to {args.max_k}") + "."
    )
    print(text_md)
    write_text(out / "results.md", f"# n-grams against an LSTM, and its context\n\n{text_md}\n")
    figure = plot(ngram_at, cut_bpc, full_bpc, args, out)
    metrics = dict(
        example=NAME,
        quick=args.quick,
        settings={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        ngram_val_bpc=ngram,
        ngram_bpc_at_positions=ngram_at,
        best_ngram_order=best_n,
        lstm_val_bpc=lstm_val,
        lstm_steps=record["steps"],
        lstm_train_cpu_s=record["cpu_s"],
        lstm_cut_bpc=cut_bpc,
        lstm_full_bpc_at_positions=full_bpc,
        cut_minus_full_se=gap_se,
        shortest_k_within_tolerance=within[0] if within else None,
        tables=text_md,
        figure=None if figure is None else figure.name,
        cpu_s_this_process=time.process_time() - cpu0,
        wall_s=time.perf_counter() - started,
    )
    write_json(out / "metrics.json", metrics)
    print(f"wrote {out / 'results.md'}, {out / 'metrics.json'}, figure {figure}")
    return metrics


def plot(ngram_at, cut_bpc, full_bpc, args, out):
    plt = pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.3))
    k = np.array(ks(args))
    ax.semilogx(k, [cut_bpc[i] for i in k], "o-", base=2, label="LSTM reading k characters")
    nk = np.array([n - 1 for n in ngram_at if n > 1])
    ax.semilogx(
        nk, [ngram_at[n + 1] for n in nk], "s-", base=2, label="Kneser-Ney n-gram (n = k + 1)"
    )
    ax.axhline(full_bpc, color="C0", ls="--", label="LSTM, state carried (full context)")
    ax.set(
        xlabel="characters of context k",
        ylabel="bits/char at the same positions",
        title=f"Context used: {args.positions} validation positions",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, out / f"{NAME}.png")


def main(argv=None) -> dict:
    with flushed_denormals():
        return study(parse_args(argv))


if __name__ == "__main__":
    main()
