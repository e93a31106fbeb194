"""Tensor methods that PyTorch programs call, with PyTorch's meaning, so that they port by
changing their imports: `to`/`cpu`/`device`, `new_*`, `type`, `t`, `contiguous`, `narrow`,
`topk`, `bmm`, `clone`, `requires_grad_`.

What is deliberately different: `.data` is the NumPy array itself (writing into it bypasses
the version counter, as writing into PyTorch's `.data` does), and the only device is the CPU.
"""

from __future__ import annotations

import numpy as np

from . import dtypes
from .device import CPU, check_device, device
from .ops.copy import Clone


def parse_to_arguments(args, kwargs):
    """Tensor.to's spellings: to(dtype), to(device), to(device, dtype), to(tensor), keywords."""
    dtype, dev = kwargs.pop("dtype", None), kwargs.pop("device", None)
    kwargs.pop("non_blocking", None)
    copy = kwargs.pop("copy", False)
    if kwargs:
        raise TypeError(f"to: unexpected keyword arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, (str, device)):
            dev = a
        elif hasattr(a, "data") and hasattr(a, "dtype") and not isinstance(a, np.ndarray):
            dtype = a.dtype  # to(other): other's dtype (and device, always the CPU)
        else:
            dtype = a
    return dtype, dev, copy


class TorchMethods:
    __slots__ = ()

    @property
    def device(self) -> device:
        return CPU

    @property
    def is_cuda(self) -> bool:
        return False

    def to(self, *args, **kwargs):
        dtype, dev, copy = parse_to_arguments(args, kwargs)
        check_device(dev, "to")
        out = self if dtype is None else self.astype(dtype)
        return out.clone() if copy and out is self else out

    def cpu(self):
        return self

    def type(self, dtype=None):
        """With no argument, the type's name (as PyTorch's 'torch.FloatTensor'); else a cast."""
        if dtype is None:
            names = {"float32": "Float", "float64": "Double", "int64": "Long", "int32": "Int"}
            return f"minigrad.{names.get(self.dtype.name, 'Bool')}Tensor"
        return self.astype(dtype)

    def clone(self):
        return Clone.apply(self)

    def requires_grad_(self, requires_grad: bool = True):
        self.requires_grad = requires_grad
        return self

    def contiguous(self):
        return self if self.data.flags.c_contiguous else Clone.apply(self, order="C")

    def _new(self, arr, dtype, dev, requires_grad, where):
        check_device(dev, where)
        dtype = self.dtype if dtype is None else dtypes.as_dtype(dtype)
        return type(self)(np.asarray(arr, dtype), requires_grad=requires_grad)

    def new_tensor(self, data, dtype=None, device=None, requires_grad=False):
        return self._new(getattr(data, "data", data), dtype, device, requires_grad, "new_tensor")

    def new_zeros(self, *size, dtype=None, device=None, requires_grad=False):
        return self._new(np.zeros(_size(size)), dtype, device, requires_grad, "new_zeros")

    def new_ones(self, *size, dtype=None, device=None, requires_grad=False):
        return self._new(np.ones(_size(size)), dtype, device, requires_grad, "new_ones")

    def new_full(self, size, fill_value, dtype=None, device=None, requires_grad=False):
        return self._new(
            np.full(_size((size,)), fill_value), dtype, device, requires_grad, "new_full"
        )

    def new_empty(self, *size, dtype=None, device=None, requires_grad=False):
        return self.new_zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)

    def t(self):
        if self.ndim > 2:
            raise ValueError(f"t(): expects a tensor of at most 2 dims, got shape {self.shape}")
        return self.T

    def narrow(self, dim: int, start: int, length: int):
        if not -self.ndim <= dim < self.ndim:
            raise IndexError(f"narrow: dim {dim} out of range for shape {self.shape}")
        n = self.shape[dim]
        start = start + n if start < 0 else start
        if not (0 <= start <= n and 0 <= length and start + length <= n):
            raise IndexError(
                f"narrow: start {start} and length {length} out of range for dim {dim} of size {n}"
            )
        return self[(slice(None),) * (dim % self.ndim) + (slice(start, start + length),)]

    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
        """(values, indices) of the k largest (or smallest) along dim; values carry gradient."""
        if self.ndim == 0 or not -self.ndim <= dim < self.ndim:
            raise IndexError(f"topk: dim {dim} out of range for shape {self.shape}")
        dim %= self.ndim
        if not 0 <= k <= self.shape[dim]:
            raise ValueError(f"topk: k={k} out of range for dim {dim} of size {self.shape[dim]}")
        keys = -self.data if largest else self.data
        # A stable sort: ties keep their first positions, as the k smallest keys.
        order = np.argsort(keys, axis=dim, kind="stable")
        idx = np.take(order, np.arange(k), axis=dim)
        grids = list(np.indices(idx.shape, sparse=True))
        grids[dim] = idx
        return self[tuple(grids)], type(self)._wrap(idx.astype(np.int64))

    def bmm(self, other):
        other_shape = getattr(other, "shape", None)
        if self.ndim != 3 or len(other_shape or ()) != 3 or self.shape[0] != other_shape[0]:
            raise ValueError(
                f"bmm: expects two 3-D tensors with the same batch size, (b, n, m) and "
                f"(b, m, p); got {self.shape} and {other_shape}"
            )
        return self @ other


def _size(size) -> tuple:
    size = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list)) else size
    return tuple(int(n) for n in size)
