"""Tensor methods that PyTorch programs call, with PyTorch's meaning, so that they port by
changing their imports: `to`/`cpu`/`device`, `new_*`, `type`, `t`, `contiguous`, `narrow`,
`topk`, `bmm`, `clone`, `requires_grad_`, and the reductions along a dim that return
(values, indices) pairs: `max(dim)`/`min(dim)` (through tensor.py), `sort`, `median`,
`mode`, `kthvalue`.

What is deliberately different: the only device is the CPU (`to("cuda")` raises).
"""

from __future__ import annotations

import numpy as np

from . import dtypes, return_types
from . import random as _random
from .device import CPU, check_device, device
from .ops.copy import Clone
from .ops.reduce import normalize_axes


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
        if isinstance(dtype, str) and dtype.endswith("Tensor"):  # "torch.LongTensor"
            names = {"Float": "float32", "Double": "float64", "Long": "int64", "Int": "int32"}
            dtype = names.get(dtype.rpartition(".")[2][: -len("Tensor")], dtype)
            dtype = "bool" if dtype.endswith("BoolTensor") else dtype
        return self.astype(getattr(dtype, "_legacy_dtype", dtype))  # mg.LongTensor

    def clone(self):
        return Clone.apply(self)

    def requires_grad_(self, requires_grad: bool = True):
        self.requires_grad = requires_grad
        return self

    def contiguous(self):
        return self if self._data.flags.c_contiguous else Clone.apply(self, order="C")

    def _new(self, arr, dtype, dev, requires_grad, where):
        check_device(dev, where)
        dtype = self.dtype if dtype is None else dtypes.as_dtype(dtype)
        return type(self)(np.asarray(arr, dtype), requires_grad=requires_grad)

    def new_tensor(self, data, dtype=None, device=None, requires_grad=False):
        return self._new(getattr(data, "_data", data), dtype, device, requires_grad, "new_tensor")

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
        order = _stable_order(self._data, dim, descending=largest)
        return self._pick(return_types.topk, np.take(order, np.arange(k), axis=dim), dim, True)

    # ----- (values, indices) along a dim ----------------------------------------------------
    def _pick(self, kind, idx, dim: int, keepdim: bool):
        """kind(values, indices): the elements at positions idx along dim (idx has the
        tensor's shape but along dim). The values are gathered by indexing, so their gradient
        flows to exactly those positions, as in PyTorch."""
        grids = list(np.indices(idx.shape, sparse=True))
        grids[dim] = idx
        values, idx = self[tuple(grids)], idx.astype(np.int64)
        if not keepdim:
            values, idx = values.squeeze(dim), np.squeeze(idx, dim)
        return kind(values, type(self)._wrap(idx))

    def _along(self, name: str, dim, keepdim: bool, positions):
        """kind(values, indices) of one element per slice along dim, chosen by
        positions(array, dim) -> indices with keepdims (a 0-d tensor is its own slice)."""
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
            raise TypeError(
                f"{name}(dim) takes one int dim and returns (values, indices), got dim={dim!r}"
                + ("; for several dims use amax/amin(dim=...)" if name in ("max", "min") else "")
            )
        kind = getattr(return_types, name)
        if self.ndim == 0:
            normalize_axes(dim, 0, name)
            out = self.reshape(1)._along(name, 0, False, positions)
            return kind(out.values.reshape(()), out.indices.reshape(()))
        (dim,) = normalize_axes(dim, self.ndim, name)
        if self.shape[dim] == 0:
            raise ValueError(f"{name}: reducing over an empty axis of shape {self.shape}")
        return self._pick(kind, positions(self._data, dim), dim, keepdim)

    def _extreme_along(self, name: str, dim, keepdim: bool):
        """max(dim)/min(dim): the first position of the extreme (a NaN counts as one)."""
        arg = np.argmax if name == "max" else np.argmin
        return self._along(name, dim, keepdim, lambda a, d: arg(a, axis=d, keepdims=True))

    def sort(self, dim: int = -1, descending: bool = False, stable: bool = False):
        """(values, indices), sorted along dim; ties keep their order (PyTorch's stable=True),
        NaN sorts as the largest value."""
        (dim,) = normalize_axes(dim, max(self.ndim, 1), "sort")
        if self.ndim == 0:
            return return_types.sort(self * 1, type(self)._wrap(np.zeros((), np.int64)))
        order = _stable_order(self._data, dim, descending)
        return self._pick(return_types.sort, order, dim, True)

    def argsort(self, dim: int = -1, descending: bool = False, stable: bool = False):
        return self.sort(dim, descending).indices

    def kthvalue(self, k: int, dim: int = -1, keepdim: bool = False):
        """(values, indices) of the k-th smallest element along dim (k counts from 1).
        Among equal values the index may differ from PyTorch's (which leaves it unspecified),
        but it always points at an element equal to the value."""
        n = self.shape[dim] if self.ndim else 1
        if not 1 <= k <= n:
            raise IndexError(f"kthvalue: k={k} out of range for a dim of size {n}")
        return self._along(
            "kthvalue", dim, keepdim, lambda a, d: np.take(_stable_order(a, d), [k - 1], axis=d)
        )

    def median(self, dim=None, keepdim: bool = False):
        """The lower median (the smaller of the two middle values for an even count), as
        PyTorch: the value over all elements, or (values, indices) along dim."""
        if dim is None:
            flat = self.reshape(-1)
            if flat.shape[0] == 0:
                raise ValueError("median: of an empty tensor")
            return flat.median(0).values
        return self._along(
            "median",
            dim,
            keepdim,
            lambda a, d: np.take(_stable_order(a, d), [(a.shape[d] - 1) // 2], axis=d),
        )

    def mode(self, dim: int = -1, keepdim: bool = False):
        """(values, indices) of the most frequent value along dim (the smallest among equally
        frequent ones) and, as PyTorch, the last position where it occurs."""
        return self._along("mode", dim, keepdim, _mode_positions)

    def multinomial(self, num_samples: int, replacement: bool = False):
        """Indices (int64) drawn from each row of this tensor's weights (see mg.multinomial)."""
        return type(self)._wrap(sample_multinomial(self._data, num_samples, replacement))

    def mm(self, other):
        """The product of two matrices (2-D only, as torch.mm; matmul broadcasts)."""
        other = self._operand(other)
        if self.ndim != 2 or other.ndim != 2:
            raise ValueError(
                f"mm: expects two 2-D tensors, got shapes {self.shape} and {other.shape}"
            )
        return self.matmul(other)

    def cuda(self, device=None, non_blocking: bool = False):
        check_device("cuda" if device is None else device, "cuda")

    def bmm(self, other):
        other_shape = getattr(other, "shape", None)
        if self.ndim != 3 or len(other_shape or ()) != 3 or self.shape[0] != other_shape[0]:
            raise ValueError(
                f"bmm: expects two 3-D tensors with the same batch size, (b, n, m) and "
                f"(b, m, p); got {self.shape} and {other_shape}"
            )
        return self @ other


def sample_multinomial(probs, num_samples: int, replacement: bool) -> np.ndarray:
    """torch.multinomial on an array of weights (1-D or 2-D, non-negative, any scale)."""
    p = np.asarray(probs, np.float64)
    if p.ndim not in (1, 2) or p.shape[-1] == 0:
        raise ValueError(f"multinomial: probs must be 1-D or 2-D and non-empty, got {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(p.sum(-1) <= 0):
        raise ValueError("multinomial: probs must be finite, non-negative, with a positive sum")
    if not replacement and num_samples > np.min(np.count_nonzero(p, -1)):
        raise ValueError(
            f"multinomial: cannot draw {num_samples} samples without replacement from a row "
            "with fewer non-zero weights"
        )
    rng = _random.generator()
    rows = p.reshape(-1, p.shape[-1])
    out = [rng.choice(len(r), num_samples, replace=replacement, p=r / r.sum()) for r in rows]
    return np.asarray(out, np.int64).reshape(p.shape[:-1] + (num_samples,))


def _stable_order(a: np.ndarray, dim: int, descending: bool = False) -> np.ndarray:
    """argsort along dim keeping equal elements in order, NaN last ascending (first
    descending): the descending order is the ascending one of the reversed array, reversed."""
    if not descending:
        return np.argsort(a, axis=dim, kind="stable")
    rev = np.flip(np.argsort(np.flip(a, dim), axis=dim, kind="stable"), dim)
    return a.shape[dim] - 1 - rev


def _mode_positions(a: np.ndarray, dim: int) -> np.ndarray:
    rows = np.moveaxis(a, dim, -1).reshape(-1, a.shape[dim])
    out = np.empty(len(rows), np.int64)
    for i, row in enumerate(rows):
        values, counts = np.unique(row, return_counts=True)
        top = values[np.argmax(counts)]
        out[i] = len(row) - 1 - np.argmax((row == top)[::-1])
    shape = np.moveaxis(a, dim, -1).shape[:-1] + (1,)
    return np.moveaxis(out.reshape(shape), -1, dim)


def _size(size) -> tuple:
    size = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list)) else size
    return tuple(int(n) for n in size)
