"""Tensor constructors, with PyTorch's signatures (`device=` accepts the CPU only)."""

from __future__ import annotations

import numpy as np

from . import dtypes
from . import random as _random
from .device import check_device
from .tensor import Tensor
from .torch_methods import sample_multinomial


def _shape(shape):
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape


def _float_dtype(dtype):
    return dtypes.get_default_dtype() if dtype is None else dtypes.as_dtype(dtype)


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    check_device(device, "tensor")
    return Tensor._from_data(data, dtype=dtype, requires_grad=requires_grad)


def from_numpy(arr: np.ndarray) -> Tensor:
    """A tensor sharing arr's memory (writes to either show in both), as torch.from_numpy."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"from_numpy: expected a NumPy array, got {type(arr).__name__}")
    dtypes.as_dtype(arr.dtype)  # an unsupported dtype is an error naming those supported
    return Tensor._wrap(arr)


class _LegacyType(type):
    """mg.FloatTensor and its kin: constructors (sizes or data, as mg.Tensor, in one dtype),
    isinstance checks by dtype, and arguments to Tensor.type()."""

    def __instancecheck__(cls, obj):
        return isinstance(obj, Tensor) and obj.dtype == cls._legacy_dtype

    def __call__(cls, *data, device=None):
        check_device(device, cls.__name__)
        if len(data) == 1 and type(data[0]) is not int:
            return Tensor._from_data(data[0], dtype=cls._legacy_dtype)
        if not all(type(n) is int for n in data):
            raise TypeError(f"{cls.__name__}(*sizes) takes ints, or one list, array or tensor")
        return Tensor(np.zeros(data if data else (0,), cls._legacy_dtype))


def _legacy(name, dtype):
    return _LegacyType(name, (), {"_legacy_dtype": dtype, "__module__": __name__})


FloatTensor = _legacy("FloatTensor", dtypes.float32)
DoubleTensor = _legacy("DoubleTensor", dtypes.float64)
LongTensor = _legacy("LongTensor", dtypes.int64)
IntTensor = _legacy("IntTensor", dtypes.int32)
BoolTensor = _legacy("BoolTensor", dtypes.bool_)


def zeros(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device, "zeros")
    return Tensor(np.zeros(_shape(shape), _float_dtype(dtype)), requires_grad=requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device, "ones")
    return Tensor(np.ones(_shape(shape), _float_dtype(dtype)), requires_grad=requires_grad)


def empty(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Zeros: minigrad never hands out uninitialised memory."""
    check_device(device, "empty")
    return zeros(*shape, dtype=dtype, requires_grad=requires_grad)


def full(shape, value, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device, "full")
    return Tensor(np.full(shape, value, _float_dtype(dtype)), requires_grad=requires_grad)


def _like(fill, name, t, dtype, device, requires_grad):
    check_device(device, name)
    dtype = t.dtype if dtype is None else dtypes.as_dtype(dtype)
    return Tensor(fill(t.shape, dtype), requires_grad=requires_grad)


def zeros_like(t: Tensor, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _like(np.zeros, "zeros_like", t, dtype, device, requires_grad)


def ones_like(t: Tensor, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _like(np.ones, "ones_like", t, dtype, device, requires_grad)


def arange(start, stop=None, step=1, dtype=None, device=None) -> Tensor:
    check_device(device, "arange")
    arr = np.arange(start, stop, step) if stop is not None else np.arange(start)
    return Tensor(arr, dtype=dtype)


def randn(*shape, size=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device, "randn")
    arr = (
        _random.generator()
        .standard_normal(_shape(shape) if size is None else tuple(size))
        .astype(_float_dtype(dtype))
    )
    return Tensor(arr, requires_grad=requires_grad)


def rand(*shape, size=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device, "rand")
    arr = (
        _random.generator()
        .random(_shape(shape) if size is None else tuple(size))
        .astype(_float_dtype(dtype))
    )
    return Tensor(arr, requires_grad=requires_grad)


def randint(low, high, shape, dtype=None, device=None) -> Tensor:
    check_device(device, "randint")
    arr = _random.generator().integers(low, high, size=shape, dtype=np.int64)
    return Tensor(arr, dtype=dtype)


def multinomial(probs, num_samples: int, replacement: bool = False) -> Tensor:
    """Indices (int64) drawn from each row of probs (weights: non-negative, any scale), as
    torch.multinomial: without replacement no index repeats within a row."""
    return Tensor._wrap(
        sample_multinomial(getattr(probs, "_data", probs), num_samples, replacement)
    )
