"""Map-style datasets (indexable, sized), their combinations, and random_split."""

from __future__ import annotations

import bisect
import math
import numbers
import warnings
from itertools import accumulate

from .sampler import numpy_rng


class Dataset:
    """A map from indices to samples: subclasses define __getitem__ and __len__."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __add__(self, other) -> ConcatDataset:
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """A stream of samples: subclasses define __iter__; the DataLoader batches it in order."""

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")

    def __add__(self, other):
        raise TypeError("IterableDataset: + concatenates map-style datasets only")


class TensorDataset(Dataset):
    """Sample i is (t[i] for t in tensors): the tensors must agree in their first dimension."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: expected at least one tensor")
        if any(len(t.shape) == 0 for t in tensors):
            shapes = [tuple(t.shape) for t in tensors]
            raise ValueError(f"TensorDataset: every tensor needs a first dimension, got {shapes}")
        sizes = [t.shape[0] for t in tensors]
        if len(set(sizes)) > 1:
            raise ValueError(
                f"TensorDataset: size mismatch between tensors: first dimensions {sizes} "
                "must be equal (one entry per sample)"
            )
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]


class Subset(Dataset):
    """The samples of `dataset` at `indices`, in that order."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, indices

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __getitems__(self, indices: list) -> list:
        # The DataLoader fetches a batch in one call where the dataset can (as PyTorch's).
        if callable(getattr(self.dataset, "__getitems__", None)):
            return self.dataset.__getitems__([self.indices[i] for i in indices])
        return [self.dataset[self.indices[i]] for i in indices]

    def __len__(self) -> int:
        return len(self.indices)


class ConcatDataset(Dataset):
    """Datasets one after another; `cumulative_sizes[k]` is where dataset k ends."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets should not be an empty iterable")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise TypeError("ConcatDataset: does not support IterableDataset")
        self.cumulative_sizes = list(accumulate(len(d) for d in self.datasets))

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx):
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"ConcatDataset: index {idx} out of range for {n} samples")
        idx = idx + n if idx < 0 else idx
        k = bisect.bisect_right(self.cumulative_sizes, idx)
        return self.datasets[k][idx - (self.cumulative_sizes[k - 1] if k else 0)]


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _split_lengths(n: int, lengths) -> list:
    """Integer lengths, or fractions summing to 1 turned into lengths by PyTorch's rule: floor
    each, then hand the remainder out one by one from the first split on (round-robin)."""
    total = sum(lengths)
    # As PyTorch, even [1] means 100%; unlike it, a sum rounded just above 1 is accepted.
    if math.isclose(total, 1):
        for i, frac in enumerate(lengths):
            if not 0 <= frac <= 1:
                raise ValueError(f"random_split: fraction {frac} at index {i} is not in [0, 1]")
        sizes = [math.floor(n * frac) for frac in lengths]
        for i in range(n - sum(sizes)):
            sizes[i % len(sizes)] += 1
        for i, size in enumerate(sizes):
            if size == 0:
                warnings.warn(
                    f"random_split: the split at index {i} is empty ({n} samples, fractions "
                    f"{list(lengths)})",
                    stacklevel=3,
                )
        return sizes
    if not all(_is_int(x) for x in lengths):
        raise ValueError(
            f"random_split: lengths must be ints summing to the dataset's size ({n}) or "
            f"fractions summing to 1; got {list(lengths)}, which sum to {total}"
        )
    if any(x < 0 for x in lengths):
        raise ValueError(f"random_split: lengths must not be negative, got {list(lengths)}")
    if total != n:
        raise ValueError(
            f"random_split: lengths {list(lengths)} sum to {total}, but the dataset has {n} samples"
        )
    return [int(x) for x in lengths]


def random_split(dataset, lengths, generator=None) -> list:
    """Subsets of a random permutation of `dataset`, of the given lengths or fractions."""
    lengths = list(lengths)
    if not lengths:
        raise ValueError("random_split: expected at least one length")
    sizes = _split_lengths(len(dataset), lengths)
    order = numpy_rng(generator, "random_split").permutation(sum(sizes)).tolist()
    return [
        Subset(dataset, order[end - k : end])
        for end, k in zip(accumulate(sizes), sizes, strict=True)
    ]
