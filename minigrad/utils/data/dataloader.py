"""DataLoader: batches of a dataset, in sampler order, collated into tensors."""

from __future__ import annotations

import itertools
import math
import numbers

from .collate import default_collate, default_convert
from .dataset import IterableDataset
from .sampler import BatchSampler, RandomSampler, SequentialSampler, numpy_rng


def get_worker_info():
    """None: minigrad loads in the main process (see DataLoader), never in a worker."""
    return None


class DataLoader:
    """torch.utils.data.DataLoader's arguments and iteration, loading in the main process.

    `num_workers > 0` is accepted and runs in-process like `num_workers=0` (same batches, same
    order; no parallelism, worker_init_fn is not called); pin_memory, timeout,
    prefetch_factor, persistent_workers and the like are accepted and have no effect.
    Shuffling draws from `generator`, else from minigrad's global generator (`mg.manual_seed`):
    reproducible, but not PyTorch's permutation.
    """

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None,
                 num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, timeout=0,
                 worker_init_fn=None, multiprocessing_context=None, generator=None, *,
                 prefetch_factor=None, persistent_workers=False, pin_memory_device="",
                 in_order=True):  # fmt: skip
        if not isinstance(num_workers, numbers.Integral) or num_workers < 0:
            raise ValueError(f"DataLoader: num_workers must be an int >= 0, got {num_workers!r}")
        if timeout < 0:
            raise ValueError(f"DataLoader: timeout must be non-negative, got {timeout!r}")
        if batch_size is not None and not (
            isinstance(batch_size, numbers.Integral)
            and not isinstance(batch_size, bool)
            and batch_size >= 1
        ):
            raise ValueError(
                f"DataLoader: batch_size must be an int >= 1 or None, got {batch_size!r}"
            )
        numpy_rng(generator, "DataLoader")  # reject a foreign generator now
        self.dataset, self.num_workers, self.generator = dataset, num_workers, generator
        self.pin_memory, self.timeout, self.worker_init_fn = pin_memory, timeout, worker_init_fn
        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            # A stream has its own order: PyTorch refuses to shuffle or sample it too.
            if shuffle not in (False, None) or sampler is not None or batch_sampler is not None:
                raise ValueError(
                    "DataLoader: an IterableDataset takes no shuffle, sampler or batch_sampler, "
                    f"got shuffle={shuffle!r}, sampler={sampler!r}, batch_sampler={batch_sampler!r}"
                )
        elif sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError(
                    "DataLoader: batch_sampler option is mutually exclusive with batch_size, "
                    f"shuffle, sampler, and drop_last (got batch_size={batch_size!r}, "
                    f"shuffle={shuffle!r}, sampler={sampler!r}, drop_last={drop_last!r})"
                )
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("DataLoader: drop_last=True needs a batch_size (got None)")
        if sampler is None and not self._iterable:
            sampler = (
                RandomSampler(dataset, generator=generator)
                if shuffle
                else SequentialSampler(dataset)
            )
        if batch_size is not None and batch_sampler is None and not self._iterable:
            batch_sampler = BatchSampler(sampler, batch_size, bool(drop_last))
        self.batch_size, self.drop_last = batch_size, bool(drop_last)
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self._auto_collation = batch_sampler is not None or (self._iterable and batch_size)
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn

    def _fetch(self, indices: list) -> list:
        # A dataset may fetch a whole batch at once (__getitems__), as in PyTorch.
        getitems = getattr(self.dataset, "__getitems__", None)
        if callable(getitems):
            return getitems(indices)
        return [self.dataset[i] for i in indices]

    def __iter__(self):
        if self._iterable:
            return self._iter_stream()
        if self._auto_collation:
            return (self.collate_fn(self._fetch(b)) for b in self.batch_sampler)
        return (self.collate_fn(self.dataset[i]) for i in self.sampler)

    def _iter_stream(self):
        it = iter(self.dataset)
        if not self._auto_collation:
            yield from map(self.collate_fn, it)
            return
        while batch := list(itertools.islice(it, self.batch_size)):
            if len(batch) < self.batch_size and self.drop_last:
                return
            yield self.collate_fn(batch)

    def __len__(self) -> int:
        if self._iterable:
            n = len(self.dataset)  # a TypeError if the stream has no length, as in PyTorch
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        return len(self.batch_sampler if self._auto_collation else self.sampler)
