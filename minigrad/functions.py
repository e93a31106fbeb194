"""Functions of several tensors: matmul, mm, where, cat, stack, split, chunk, and PyTorch's
function forms of max/min/sort (`mg.max(x, 1)` is `x.max(1)`)."""

from __future__ import annotations

import numpy as np

from .ops import elementwise as E
from .ops import shape as S
from .tensor import Tensor, as_tensor


def matmul(a, b) -> Tensor:
    return as_tensor(a).matmul(b)


def where(cond, x, y) -> Tensor:
    cond = np.asarray(cond._data if isinstance(cond, Tensor) else cond)
    if cond.dtype != np.bool_:
        raise TypeError(f"where: the condition must be boolean, got {cond.dtype}")
    if not isinstance(x, Tensor) and not isinstance(y, Tensor):
        x = as_tensor(x)
    x = as_tensor(x, like=y if isinstance(y, Tensor) else None)
    y = as_tensor(y, like=x)
    try:
        np.broadcast_shapes(cond.shape, x.shape, y.shape)
    except ValueError:
        raise ValueError(
            f"where: shapes cond {cond.shape}, x {x.shape}, y {y.shape} cannot be broadcast"
        ) from None
    return E.Where.apply(x, y, cond=cond)


def cat(tensors, axis: int = 0, *, dim=None) -> Tensor:
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    return S.Cat.apply(*tensors, axis=axis if dim is None else dim)


def stack(tensors, axis: int = 0, *, dim=None) -> Tensor:
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    return S.Stack.apply(*tensors, axis=axis if dim is None else dim)


def split(x: Tensor, split_size, axis: int = 0) -> list:
    """PyTorch's split (see Tensor.split)."""
    return as_tensor(x).split(split_size, axis)


def chunk(x: Tensor, chunks: int, axis: int = 0) -> list:
    return as_tensor(x).chunk(chunks, axis)


def bmm(a, b) -> Tensor:
    """Batched matrix product of (b, n, m) and (b, m, p) tensors, as torch.bmm."""
    return as_tensor(a).bmm(b)


def mm(a, b) -> Tensor:
    """The product of two matrices (2-D only, as torch.mm; mg.matmul broadcasts)."""
    return as_tensor(a).mm(b)


def max(input, dim=None, keepdim=False, *, axis=None, keepdims=None):  # noqa: A001
    """mg.max(x) the value; mg.max(x, dim) (values, indices); mg.max(a, b) elementwise."""
    return as_tensor(input).max(dim, keepdim, axis=axis, keepdims=keepdims)


def min(input, dim=None, keepdim=False, *, axis=None, keepdims=None):  # noqa: A001
    """mg.min(x) the value; mg.min(x, dim) (values, indices); mg.min(a, b) elementwise."""
    return as_tensor(input).min(dim, keepdim, axis=axis, keepdims=keepdims)


def sort(input, dim: int = -1, descending: bool = False, stable: bool = False):
    return as_tensor(input).sort(dim, descending, stable)


def topk(input, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):  # noqa: A002
    return as_tensor(input).topk(k, dim, largest, sorted)


def argmax(input, dim=None, keepdim: bool = False) -> Tensor:
    return as_tensor(input).argmax(dim=dim, keepdim=keepdim)


def argmin(input, dim=None, keepdim: bool = False) -> Tensor:
    return as_tensor(input).argmin(dim=dim, keepdim=keepdim)
