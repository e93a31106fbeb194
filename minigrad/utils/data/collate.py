"""default_collate: a list of samples into one batch, as PyTorch's.

Tensors are stacked along a new first dimension; NumPy arrays and scalars become tensors
first; Python ints give int64 (bools bool) and Python floats float64 (PyTorch's choice too,
not the default float dtype); strings and bytes pass through as the batch's list (or tuple)
of them; mappings, namedtuples and sequences are collated field by field (a tuple gives a
list, as in PyTorch).
"""

from __future__ import annotations

import collections.abc
import copy

import numpy as np

from ...creation import tensor  # mg.tensor infers int64 from ints; mg.Tensor([1]) is float
from ...dtypes import float64
from ...functions import stack
from ...tensor import Tensor

_ERROR = (
    "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"
)


def _numeric_array(arr: np.ndarray) -> bool:
    return arr.dtype.kind in "biuf"


def default_collate(batch):
    elem = batch[0]
    if isinstance(elem, Tensor):
        return stack(batch, 0)
    if isinstance(elem, np.ndarray):
        if not _numeric_array(elem):
            raise TypeError(_ERROR.format(elem.dtype))
        return stack([tensor(b) for b in batch], 0)
    if isinstance(elem, (np.bool_, np.number)):  # before float: np.float64 subclasses it
        return tensor(np.asarray(batch))
    if isinstance(elem, float):
        return tensor(batch, dtype=float64)
    if isinstance(elem, int):
        return tensor(batch)  # int64, or bool for bools; a mix with floats gives the default
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        collated = {key: default_collate([d[key] for d in batch]) for key in elem}
        return _rebuild_mapping(elem, collated)
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return type(elem)(*(default_collate(s) for s in zip(*batch, strict=True)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(e) != size for e in batch):
            raise RuntimeError(
                "default_collate: each element in list of batch should be of equal size, got "
                f"sizes {[len(e) for e in batch]}"
            )
        fields = [default_collate(s) for s in zip(*batch, strict=True)]
        return fields if isinstance(elem, tuple) else _rebuild_sequence(elem, fields)
    raise TypeError(_ERROR.format(type(elem)))


def _rebuild_mapping(elem, collated: dict):
    # Keep the sample's mapping type where it can be rebuilt (PyTorch copies and updates).
    try:
        if isinstance(elem, collections.abc.MutableMapping):
            clone = copy.copy(elem)
            clone.update(collated)
            return clone
        return type(elem)(collated)
    except TypeError:
        return collated


def _rebuild_sequence(elem, fields: list):
    try:
        if isinstance(elem, collections.abc.MutableSequence):
            clone = copy.copy(elem)
            clone[:] = fields
            return clone
        return type(elem)(fields)
    except TypeError:
        return fields


def default_convert(data):
    """What the DataLoader yields per sample when batch_size=None: NumPy arrays and scalars
    become tensors, containers are converted element-wise, the rest passes through."""
    if isinstance(data, np.ndarray):
        return tensor(data) if _numeric_array(data) else data
    if isinstance(data, np.generic):
        return tensor(data) if _numeric_array(np.asarray(data)) else data
    if isinstance(data, (str, bytes, Tensor)):
        return data
    if isinstance(data, collections.abc.Mapping):
        return _rebuild_mapping(data, {k: default_convert(v) for k, v in data.items()})
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence):
        return _rebuild_sequence(data, [default_convert(d) for d in data])
    return data
