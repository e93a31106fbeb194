"""Character-level LSTM language model on tiny-shakespeare: minigrad's main job.

Embedding(65, 64) -> LSTM(64, 256) -> Linear(256, 65), trained with truncated BPTT: the corpus
is cut into B parallel streams, each step reads the next T characters of every stream, and the
LSTM state is carried from one chunk to the next with the graph cut between them (detach), so
the gradient flows back at most T steps while the state remembers further.

    python examples/char_lm.py                 # the default run: 5,000 steps (about 10 epochs)
    python examples/char_lm.py --resume        # go on from the last checkpoint, same trajectory
    python examples/char_lm.py --quick         # a few seconds, for the test suite
    mpiexec -n 2 python examples/char_lm.py    # data-parallel on 2 ranks, the same global batch

Prints training loss and tokens/s, validation loss in nats and bits per character and
perplexity; checkpoints every --ckpt-every steps and on Ctrl-C; ends by sampling text.
Under mpiexec each rank trains on its block of the B streams (minigrad.distributed), the
gradients are reduced across ranks, and only rank 0 prints and writes; a checkpoint resumes
on any number of ranks (B must be at least the number of ranks).
Writes to --out (default examples/results/char_lm/, or char_lm-quick/ with --quick): metrics.json,
sample.txt, loss.png and checkpoint.npz.
"""

import argparse
import json
import math
import signal
import sys
import time
from pathlib import Path

import bootstrap  # noqa: F401  (before NumPy: one BLAS thread, the repository importable)
import numpy as np
from common import add_out_argument, output_folder, pyplot

import minigrad as mg
import minigrad.distributed as dist
import minigrad.nn as nn
import minigrad.nn.functional as F
import minigrad.optim as optim
from models import LanguageModel
from models.tbptt import detach_state

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "tinyshakespeare" / "input.txt"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, help="training steps (default 5000; --quick 40)")
    p.add_argument("--batch", type=int, default=32, help="parallel streams B (default 32)")
    p.add_argument("--bptt", type=int, default=64, help="characters per chunk T (default 64)")
    p.add_argument("--embed", type=int, help="embedding size (default 64; --quick 16)")
    p.add_argument("--hidden", type=int, help="LSTM hidden size (default 256; --quick 32)")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 2e-3)")
    p.add_argument("--clip", type=float, default=5.0, help="gradient-norm clipping (default 5)")
    p.add_argument("--eval-every", type=int, help="validate every N steps (default 1000)")
    p.add_argument("--ckpt-every", type=int, help="checkpoint every N steps (default 500)")
    p.add_argument("--seed", type=int, default=0)
    add_out_argument(p, "char_lm")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    p.add_argument("--prime", default="ROMEO:\n", help="text the sample starts from")
    p.add_argument("--sample-len", type=int, help="characters to sample (default 600)")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--data", type=Path, default=DATA, help="a plain-text corpus")
    p.add_argument("--quick", action="store_true", help="tiny run for the test suite")
    args = p.parse_args(argv)
    defaults = dict(
        steps=5000, hidden=256, embed=64, eval_every=1000, ckpt_every=500, sample_len=600
    )
    if args.quick:
        defaults = dict(steps=40, hidden=32, embed=16, eval_every=20, ckpt_every=20, sample_len=80)
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in (
        "steps",
        "batch",
        "bptt",
        "hidden",
        "embed",
        "eval_every",
        "ckpt_every",
        "sample_len",
    ):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    return args


class Corpus:
    """Characters as ids; the first 90% trains, the last 10% validates."""

    def __init__(self, path: Path, quick: bool = False):
        text = path.read_text(encoding="utf-8")
        self.chars = sorted(set(text))
        self.index = {ch: i for i, ch in enumerate(self.chars)}
        ids = np.array([self.index[ch] for ch in text], dtype=np.int64)
        split = int(0.9 * len(ids))
        self.train, self.val = ids[:split], ids[split:]
        if quick:
            self.train, self.val = self.train[:20000], self.val[:4000]

    def encode(self, text: str) -> np.ndarray:
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            raise ValueError(f"characters {unknown!r} are not in the corpus vocabulary")
        return np.array([self.index[ch] for ch in text], dtype=np.int64)

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)


def streams(ids: np.ndarray, batch: int, bptt: int) -> tuple:
    """Cut ids into `batch` contiguous streams; return them and the number of chunks per pass."""
    length = len(ids) // batch
    if length < bptt + 1:
        raise ValueError(f"{len(ids)} characters are too few for {batch} streams of {bptt + 1}")
    return ids[: batch * length].reshape(batch, length), (length - 1) // bptt


def chunk(data: np.ndarray, k: int, bptt: int) -> tuple:
    """Inputs and next-character targets of chunk k, time-major (T, B)."""
    start = k * bptt
    return data[:, start : start + bptt].T, data[:, start + 1 : start + bptt + 1].T


def evaluate(model, data, n_chunks, bptt) -> float:
    """Mean cross-entropy in nats per character over the whole split, state carried across
    (each rank reads its own streams; the sums are added over the ranks)."""
    model.eval()
    state, total, count = None, 0.0, 0
    with mg.no_grad():
        for k in range(n_chunks):
            x, y = chunk(data, k, bptt)
            logits, state = model(mg.tensor(x), state)
            total += F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
            ).item()
            count += y.size
    model.train()
    total, count = dist.all_reduce(np.array([total, count], np.float64))
    return float(total / count)


def save_checkpoint(path, model, opt, step, state, history, running, shard):
    """Written by rank 0 alone (mg.save is atomic); the carried state of all B streams is
    gathered first, so that any number of ranks can resume it."""
    if state is not None:
        state = [shard.gather(s.numpy(), axis=1) for s in state]  # (layers, B, H) each
    if not dist.is_main_process():
        return
    mg.save(
        {
            "model": model.state_dict(),
            "optim": opt.state_dict(),
            "step": step,
            "running": running,
            "state": state,
            "history": history,
        },
        path,
    )


def plot(history, out: Path) -> None:
    plt = pyplot()
    if plt is None:
        return  # plotting is an optional extra
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(history["step"], history["train"], label="train (running mean)")
    if history["val_step"]:
        ax.plot(history["val_step"], history["val"], "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/char)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=100)
    plt.close(fig)


def progress(total, initial):
    try:
        from tqdm import tqdm

        return tqdm(
            total=total,
            initial=initial,
            unit="step",
            dynamic_ncols=True,
            disable=not sys.stderr.isatty(),
        )
    except ImportError:
        return None


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.out = output_folder(args.out, "char_lm", args.quick)
    ckpt = args.out / "checkpoint.npz"
    corpus = Corpus(args.data, quick=args.quick)
    prime = corpus.encode(args.prime)  # checked before training, not after
    vocab = len(corpus.chars)
    train, n_train = streams(corpus.train, args.batch, args.bptt)
    val, n_val = streams(corpus.val, args.batch, args.bptt)
    # Data parallelism: this rank's block of the B streams (all of them on a single rank).
    log = dist.rank_zero_only(print)
    shard = dist.StreamSharder(args.batch)
    train, val = shard.shard(train), shard.shard(val)
    share = len(train) / args.batch  # the fraction of the global batch's tokens read here

    mg.manual_seed(args.seed)
    model = LanguageModel(vocab, args.embed, args.hidden, cell="lstm")
    opt = optim.Adam(model.parameters(), lr=args.lr)
    step, state, running = 0, None, None
    history = {"step": [], "train": [], "val_step": [], "val": []}
    if args.resume:
        if not ckpt.exists():
            sys.exit(f"--resume: no checkpoint at {ckpt}")
        saved = mg.load(ckpt)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optim"])
        step, history, running = int(saved["step"]), saved["history"], saved["running"]
        state = saved["state"]
        state = tuple(mg.tensor(shard.shard(s, axis=1)) for s in state) if state else None
        log(f"resumed from {ckpt} at step {step}")
    # Same start on every rank (rank 0's parameters), gradients summed over the ranks.
    ddp = dist.DistributedDataParallel(model, reduce_op="sum") if shard.num_replicas > 1 else None
    log(
        f"{model}\n{sum(p.numel() for p in model.parameters()):,} parameters; "
        f"{len(corpus.train):,} training and {len(corpus.val):,} validation characters; "
        f"{n_train} chunks of {args.batch}x{args.bptt} per epoch"
        + (f", {len(train)} streams on each of {shard.num_replicas} ranks" if ddp else "")
    )

    # Ctrl-C finishes the current step, then checkpoints and stops.
    interrupted = []
    previous_handler = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    bar = progress(args.steps, step) if dist.is_main_process() else None
    tokens, t0 = 0, time.perf_counter()
    try:
        while step < args.steps and not interrupted:
            k = step % n_train
            if k == 0:
                state = None  # a new pass over the streams starts from a zero state
            x, y = chunk(train, k, args.bptt)
            logits, state = (ddp or model)(mg.tensor(x), state)
            # This rank's mean times its share: summed over the ranks, the global batch's mean.
            loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1)) * share
            opt.zero_grad()
            loss.backward()
            if ddp is not None:
                ddp.synchronize()  # summed gradients (done inside backward when it overlaps)
            nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            state = detach_state(state)  # truncated BPTT: carry the state, cut the graph
            step += 1
            if tokens == 0:
                log("first training step finished", flush=True)  # benchmarks/startup.py
            tokens += args.batch * args.bptt
            # The global loss, and a Ctrl-C seen on any rank stops all of them at this step.
            value, stop = dist.all_reduce(np.array([loss.item(), len(interrupted)], np.float64))
            if stop and not interrupted:
                interrupted.append(True)
            value = float(value)
            running = value if running is None else 0.98 * running + 0.02 * value
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{running:.3f}")
            if step % 50 == 0 or step == args.steps:
                history["step"].append(step)
                history["train"].append(running)
            if step % 100 == 0 and (bar is None or bar.disable):
                rate = tokens / (time.perf_counter() - t0)
                log(f"step {step:5d}  train loss {running:.4f}  {rate:,.0f} tokens/s", flush=True)
            if step % args.eval_every == 0 or step == args.steps:
                v = evaluate(model, val, n_val, args.bptt)
                history["val_step"].append(step)
                history["val"].append(v)
                log(
                    f"step {step:5d}  validation {v:.4f} nats/char = {v / math.log(2):.4f} "
                    f"bits/char, perplexity {math.exp(v):.3f}",
                    flush=True,
                )
            if step % args.ckpt_every == 0:
                save_checkpoint(ckpt, model, opt, step, state, history, running, shard)
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    save_checkpoint(ckpt, model, opt, step, state, history, running, shard)
    if interrupted:
        log(f"interrupted at step {step}; checkpoint saved to {ckpt} (continue with --resume)")

    if not dist.is_main_process():
        return None  # rank 0 samples, reports and writes the results
    sample = corpus.decode(
        model.sample(prime, args.sample_len, temperature=args.temperature, top_k=args.top_k)
    )
    print(f"--- sample (temperature {args.temperature}, top-k {args.top_k}) ---\n{sample}\n---")
    val_loss = history["val"][-1] if history["val"] else float("nan")
    metrics = {
        "steps": step,
        "train_loss": running,
        "val_loss_nats": val_loss,
        "val_bits_per_char": val_loss / math.log(2),
        "val_perplexity": math.exp(val_loss),
        "tokens_per_second": tokens / seconds if seconds > 0 else float("nan"),
        "seconds": seconds,
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (args.out / "sample.txt").write_text(sample + "\n")
    plot(history, args.out)
    print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    main()
