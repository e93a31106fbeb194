"""Which examples each rank reads: a dataset sampler and a token-stream sharder.

DistributedSampler(dataset_len, num_replicas, rank, shuffle, seed, drop_last) follows
torch.utils.data.DistributedSampler, with one difference on purpose: no example is repeated
to pad the epoch. Each epoch is one permutation of range(dataset_len), drawn from
(seed, epoch) alone, so every rank computes the same one without communicating and
set_epoch(e) gives the same order on any number of ranks. Rank r reads positions r, r + n,
r + 2n, ... of it (n = num_replicas): every example exactly once per epoch across the ranks.
When dataset_len is not divisible by n the first dataset_len % n ranks read one example
more; drop_last=True instead drops the permutation's last dataset_len % n examples (a
different few each epoch) so that every rank reads the same number.

For training, `batches(global_batch_size)` cuts the epoch's permutation into global batches
of consecutive positions (the same batches whatever the number of ranks) and yields this
rank's share of each: positions r, r + n, ... of the batch. Every rank yields the same
number of batches, so collectives stay matched; in a final short batch a share may be
smaller or even empty (drop_last=True drops that batch). `batches(..., start=k)` skips the
first k batches: a run stopped after k batches resumes on the same sequence, even with a
different number of ranks.

StreamSharder(num_streams) serves language models trained on B parallel token streams
(truncated BPTT): rank r owns a contiguous block of the streams (sizes differ by at most
one), its rows of every chunk and of the carried state; `gather` reassembles the full
(B, ...) state, e.g. for a checkpoint that another number of ranks will resume.
"""

from __future__ import annotations

import numpy as np

from . import collectives as c
from . import group as g


def _replicas_and_rank(num_replicas, rank):
    if num_replicas is None:
        num_replicas = g.get_world_size()
    if rank is None:
        rank = g.get_rank()
    if not isinstance(num_replicas, (int, np.integer)) or num_replicas < 1:
        raise ValueError(f"num_replicas must be a positive int, got {num_replicas!r}")
    if not isinstance(rank, (int, np.integer)) or not 0 <= rank < num_replicas:
        raise ValueError(f"rank must be an int in [0, {num_replicas}), got {rank!r}")
    return int(num_replicas), int(rank)


class DistributedSampler:
    """Deterministic, epoch-dependent sharding of range(dataset_len) (see the module doc)."""

    def __init__(self, dataset_len, num_replicas=None, rank=None, shuffle=True, seed=0,
                 drop_last=False):  # fmt: skip
        if not isinstance(dataset_len, (int, np.integer)) or dataset_len < 0:
            raise ValueError(f"dataset_len must be a non-negative int, got {dataset_len!r}")
        self.num_replicas, self.rank = _replicas_and_rank(num_replicas, rank)
        self.dataset_len = int(dataset_len)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch's permutation; call it at the start of every epoch."""
        if not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        self.epoch = int(epoch)

    def permutation(self) -> np.ndarray:
        """The whole epoch's order, the same on every rank."""
        if not self.shuffle:
            return np.arange(self.dataset_len)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.dataset_len)

    def _kept(self) -> np.ndarray:
        order = self.permutation()
        if self.drop_last:
            order = order[: len(order) - len(order) % self.num_replicas]
        return order

    def __iter__(self):
        return iter(self._kept()[self.rank :: self.num_replicas].tolist())

    def __len__(self) -> int:
        n = len(self._kept())
        return max(0, -(-(n - self.rank) // self.num_replicas))

    def num_batches(self, global_batch_size: int) -> int:
        """How many batches batches(global_batch_size) yields per epoch (on every rank)."""
        self._check_batch(global_batch_size)
        n = self.dataset_len
        return n // global_batch_size if self.drop_last else -(-n // global_batch_size)

    def batches(self, global_batch_size: int, start: int = 0):
        """Yield this rank's share (an int64 index array) of every global batch of the epoch
        from batch `start` on."""
        count = self.num_batches(global_batch_size)
        if not isinstance(start, (int, np.integer)) or not 0 <= start <= count:
            raise ValueError(f"start must be an int in [0, {count}], got {start!r}")
        order = self.permutation()
        for k in range(start, count):
            batch = order[k * global_batch_size : (k + 1) * global_batch_size]
            yield batch[self.rank :: self.num_replicas]

    def _check_batch(self, global_batch_size) -> None:
        if not isinstance(global_batch_size, (int, np.integer)) or global_batch_size < 1:
            raise ValueError(f"global_batch_size must be a positive int, got {global_batch_size!r}")
        if global_batch_size < self.num_replicas:
            raise ValueError(
                f"a global batch of {global_batch_size} cannot give each of {self.num_replicas} "
                "ranks an example; use a global batch at least as large as the number of ranks"
            )


class StreamSharder:
    """Rank r's contiguous block of `num_streams` parallel streams (see the module doc)."""

    def __init__(self, num_streams: int, num_replicas=None, rank=None):
        self.num_replicas, self.rank = _replicas_and_rank(num_replicas, rank)
        if not isinstance(num_streams, (int, np.integer)) or num_streams < self.num_replicas:
            raise ValueError(
                f"{num_streams!r} streams cannot be shared by {self.num_replicas} ranks: each "
                "rank needs at least one (use a batch at least as large as the number of ranks)"
            )
        self.num_streams = int(num_streams)
        bounds = [self.num_streams * r // self.num_replicas for r in range(self.num_replicas + 1)]
        self.rows = slice(bounds[self.rank], bounds[self.rank + 1])
        self.counts = np.diff(bounds)

    def shard(self, array, axis: int = 0) -> np.ndarray:
        """This rank's streams of an array whose `axis` has one entry per stream."""
        array = np.asarray(array)
        if array.shape[axis] != self.num_streams:
            raise ValueError(
                f"shard: axis {axis} has {array.shape[axis]} entries, expected one per stream "
                f"({self.num_streams})"
            )
        index = [slice(None)] * array.ndim
        index[axis] = self.rows
        return array[tuple(index)]

    def gather(self, local, axis: int = 0) -> np.ndarray:
        """Every rank's block of `local` (this rank's streams along `axis`), reassembled into
        the full array on every rank."""
        local = np.asarray(local)
        if g.get_world_size() != self.num_replicas:
            raise ValueError(
                f"gather: the sharder was made for {self.num_replicas} ranks, the job has "
                f"{g.get_world_size()}"
            )
        if local.shape[axis] != self.counts[self.rank]:
            raise ValueError(
                f"gather: axis {axis} has {local.shape[axis]} entries, this rank owns "
                f"{self.counts[self.rank]} streams"
            )
        full = c.all_gather_rows(np.moveaxis(local, axis, 0))
        return np.moveaxis(full, 0, axis)
