"""Small helpers shared by the application examples (pos_tagging, sentiment, seq2seq_dates).

Nothing here is part of minigrad: vocabularies, padding, length-bucketed batches, a progress
bar that falls back to periodic prints, and metrics.json (matplotlib and the output folder
come from common.py, shared with all the examples).
"""

import json
import math
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np


class Vocab:
    """Token <-> id, with the special tokens first (PAD = 0 by convention of these examples).

    Built from a Counter: tokens seen at least `min_freq` times, the `max_size` most frequent
    (ties broken alphabetically, so the vocabulary does not depend on the input order).
    `encode` maps an unknown token to `unk` if the vocabulary has one, else raises ValueError.
    """

    def __init__(self, tokens, specials=("<pad>", "<unk>"), unk="<unk>"):
        self.itos = list(specials) + [t for t in tokens if t not in specials]
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("Vocab: duplicate tokens")
        self.unk = self.stoi.get(unk) if unk is not None else None

    @classmethod
    def build(cls, counts: Counter, min_freq=1, max_size=None, **kw):
        ranked = sorted(
            (t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t)
        )
        return cls(ranked[:max_size] if max_size else ranked, **kw)

    def __len__(self):
        return len(self.itos)

    def __contains__(self, token):
        return token in self.stoi

    def encode(self, tokens) -> np.ndarray:
        ids = [self.stoi.get(t, self.unk) for t in tokens]
        if self.unk is None and None in ids:
            bad = sorted({t for t in tokens if t not in self.stoi})
            raise ValueError(f"tokens {bad!r} are not in the vocabulary")
        return np.array(ids, dtype=np.int64)

    def decode(self, ids) -> list:
        return [self.itos[i] for i in ids]


def pad(seqs, value=0, length=None) -> tuple:
    """Sequences of ids -> a time-major (T, B) int64 array padded with `value`, and the lengths."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    if lengths.size == 0 or lengths.min() == 0:
        raise ValueError("pad: every sequence needs at least one element")
    T = int(lengths.max()) if length is None else length
    out = np.full((T, len(seqs)), value, dtype=np.int64)
    for b, s in enumerate(seqs):
        out[: len(s), b] = s
    return out, lengths


def length_batches(lengths, batch_size, rng=None, max_tokens=None) -> list:
    """Index batches of sequences of similar length (little padding), in random order.

    Sequences are sorted by length (ties broken at random when rng is given), cut into runs of
    `batch_size` (or fewer, so that no batch holds more than `max_tokens` padded tokens), and
    the batches shuffled with rng. Without rng the order is deterministic (for evaluation).
    """
    lengths = np.asarray(lengths)
    tie = rng.random(lengths.size) if rng is not None else np.arange(lengths.size)
    order = np.lexsort((tie, lengths))
    batches, start = [], 0
    while start < order.size:
        stop = min(start + batch_size, order.size)
        if max_tokens:
            while stop - start > 1 and lengths[order[stop - 1]] * (stop - start) > max_tokens:
                stop -= 1
        batches.append(order[start:stop])
        start = stop
    if rng is not None:
        rng.shuffle(batches)
    return batches


def seeded_split(n, fractions, seed) -> list:
    """Shuffle range(n) with `seed` and cut it into parts of the given fractions (summing to 1)."""
    if not math.isclose(sum(fractions), 1.0) or min(fractions) <= 0:
        raise ValueError(f"seeded_split: fractions must be positive and sum to 1, got {fractions}")
    perm = np.random.default_rng(seed).permutation(n)
    cuts = np.round(np.cumsum(fractions)[:-1] * n).astype(int)
    return np.split(perm, cuts)


class Progress:
    """A tqdm bar on an interactive terminal, else a line every `every` seconds (for logs)."""

    def __init__(self, total, desc, unit="batch", every=15.0):
        self.total, self.desc, self.every = total, desc, every
        self.n, self.postfix = 0, ""
        self.t0 = self.last = time.perf_counter()
        self.bar = None
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)
            except ImportError:
                pass

    def update(self, n=1, **postfix):
        self.n += n
        self.postfix = "  ".join(f"{k} {v}" for k, v in postfix.items())
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix_str(self.postfix, refresh=False)
            return
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            print(
                f"  {self.desc}: {self.n}/{self.total}  {now - self.t0:.0f}s  {self.postfix}",
                flush=True,
            )

    def close(self):
        if self.bar is not None:
            self.bar.close()


def write_metrics(out: Path, metrics: dict) -> Path:
    """Write metrics.json (floats rounded to 6 digits) into `out` and return its path."""

    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, (float, np.floating)):
            return round(float(v), 6)
        if isinstance(v, np.integer):
            return int(v)
        return v

    path = out / "metrics.json"
    path.write_text(json.dumps(clean(metrics), indent=2) + "\n")
    return path


def finished(metrics: dict, files, out: Path) -> str:
    """The last line of an example's report: its time and what it wrote where."""
    return (
        f"wall time {metrics['wall_seconds']:.0f}s (CPU {metrics['cpu_seconds']:.0f}s); "
        f"wrote {', '.join(files)} to {out}"
    )


def machine() -> str:
    """A short description of where the run happened, for metrics.json."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores, Python {platform.python_version()}, NumPy {np.__version__}"
