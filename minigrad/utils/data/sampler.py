"""Samplers: which indices the DataLoader reads, and in which batches."""

from __future__ import annotations

import itertools
import numbers

import numpy as np

from ... import random as _random


def numpy_rng(generator, where: str) -> np.random.Generator:
    """The NumPy stream behind a `generator=` argument; None means minigrad's global one."""
    if generator is None:
        return _random.generator()
    if not isinstance(generator, _random.Generator):
        raise TypeError(
            f"{where}: generator must be a minigrad.Generator (or None), "
            f"got {type(generator).__module__}.{type(generator).__name__}"
        )
    return generator.rng


def _positive_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool) and x > 0


class Sampler:
    """Iterates over indices (or lists of indices); __len__ is optional."""

    def __init__(self, data_source=None):
        pass

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")


class SequentialSampler(Sampler):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """A fresh permutation per pass (or draws with replacement), `num_samples` indices long.

    Without a generator each pass seeds a new stream from minigrad's global one, as PyTorch
    does, so `mg.manual_seed` makes the order reproducible (but not PyTorch's order).
    """

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None):
        self.data_source, self.replacement = data_source, replacement
        self._num_samples, self.generator = num_samples, generator
        if not isinstance(replacement, bool):
            raise TypeError(f"RandomSampler: replacement must be a bool, got {replacement!r}")
        if not _positive_int(self.num_samples):
            raise ValueError(
                f"RandomSampler: num_samples must be a positive int, got {self.num_samples!r}"
            )
        numpy_rng(generator, "RandomSampler")  # a wrong type fails here, not mid-epoch

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self):
        n, count = len(self.data_source), self.num_samples
        if self.generator is None:
            rng = np.random.default_rng(int(_random.generator().integers(2**63)))
        else:
            rng = self.generator.rng
        if self.replacement:
            yield from rng.integers(0, n, size=count).tolist()
            return
        for _ in range(count // n):
            yield from rng.permutation(n).tolist()
        yield from rng.permutation(n)[: count % n].tolist()

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given indices in a random order."""

    def __init__(self, indices, generator=None):
        self.indices, self.generator = indices, generator
        numpy_rng(generator, "SubsetRandomSampler")

    def __iter__(self):
        order = numpy_rng(self.generator, "SubsetRandomSampler").permutation(len(self.indices))
        return (self.indices[i] for i in order.tolist())

    def __len__(self) -> int:
        return len(self.indices)


class BatchSampler(Sampler):
    """Lists of `batch_size` indices from `sampler`; the last is shorter unless dropped."""

    def __init__(self, sampler, batch_size, drop_last):
        if not _positive_int(batch_size):
            raise ValueError(f"BatchSampler: batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"BatchSampler: drop_last must be a bool, got {drop_last!r}")
        self.sampler, self.batch_size, self.drop_last = sampler, int(batch_size), drop_last

    def __iter__(self):
        it = iter(self.sampler)
        while batch := list(itertools.islice(it, self.batch_size)):
            if len(batch) < self.batch_size and self.drop_last:
                return
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
