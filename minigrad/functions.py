"""Functions of several tensors: matmul, where, cat, stack, split, chunk."""

from __future__ import annotations

import numpy as np

from .ops import elementwise as E
from .ops import matmul as M
from .ops import shape as S
from .tensor import Tensor, as_tensor


def matmul(a, b) -> Tensor:
    a = as_tensor(a)
    b = as_tensor(b, like=a)
    return M.MatMul.apply(a, b)


def where(cond, x, y) -> Tensor:
    cond = np.asarray(cond.data if isinstance(cond, Tensor) else cond)
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
    """PyTorch's split: an int is the size of each piece (the last may be smaller),
    a list gives each piece's size and must add up to the dim."""
    n = x.shape[axis]
    if isinstance(split_size, (int, np.integer)):
        if split_size <= 0:
            raise ValueError(f"split: split_size must be positive, got {split_size}")
        sizes = [min(split_size, n - s) for s in range(0, n, split_size)]
    else:
        sizes = list(split_size)
        if sum(sizes) != n:
            raise ValueError(f"split: sizes {sizes} do not add up to dim {axis} of {x.shape}")
    pieces, start = [], 0
    lead = (slice(None),) * (axis % x.ndim)
    for size in sizes:
        pieces.append(x[lead + (slice(start, start + size),)])
        start += size
    return pieces


def chunk(x: Tensor, chunks: int, axis: int = 0) -> list:
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    n = x.shape[axis]
    return split(x, max(1, -(-n // chunks)), axis)


def bmm(a, b) -> Tensor:
    """Batched matrix product of (b, n, m) and (b, m, p) tensors, as torch.bmm."""
    return as_tensor(a).bmm(b)
