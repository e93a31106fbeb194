"""Tensor methods that change a tensor's shape or view it (each dispatches to an op)."""

from __future__ import annotations

import numpy as np

from .ops import matmul as M
from .ops import reduce as R
from .ops import shape as S


class ShapeMethods:
    """Mixed into Tensor. Required of the class: `shape`, `ndim`, `__getitem__`, and
    `_operand(x)`, x as a tensor of this one's kind (a Python number takes its dtype); nothing
    here imports tensor.py, so the arrows point one way."""

    __slots__ = ()

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        if tuple(shape) == self.shape:
            return self
        return S.Reshape.apply(self, shape=tuple(shape))

    view = reshape

    def flatten(self, start_dim: int = 0):
        start = start_dim % max(self.ndim, 1)
        return self.reshape(self.shape[:start] + (-1,))

    def permute(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return S.Permute.apply(self, axes=tuple(axes))

    def transpose(self, dim0: int = -2, dim1: int = -1):
        if self.ndim < 2:
            return self
        axes = list(range(self.ndim))
        axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
        return S.Permute.apply(self, axes=tuple(axes))

    @property
    def T(self):
        return self if self.ndim < 2 else S.Permute.apply(self, axes=None)

    def expand(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        # PyTorch's -1 keeps a dim as it is.
        lead = len(shape) - self.ndim
        shape = tuple(self.shape[i - lead] if n == -1 else n for i, n in enumerate(shape))
        if shape == self.shape:
            return self
        return S.Expand.apply(self, shape=shape)

    def broadcast_to(self, shape):
        return self.expand(tuple(shape))

    def squeeze(self, axis=None, *, dim=None):
        axis = axis if dim is None else dim
        if axis is None:
            shape = tuple(n for n in self.shape if n != 1)
        else:
            axes = R.normalize_axes(axis, self.ndim, "squeeze")
            for a in axes:
                if self.shape[a] != 1:
                    raise ValueError(f"squeeze: dim {a} of shape {self.shape} is not 1")
            shape = tuple(n for i, n in enumerate(self.shape) if i not in axes)
        return self.reshape(shape)

    def unsqueeze(self, axis: int):
        if not -self.ndim - 1 <= axis <= self.ndim:
            raise ValueError(f"unsqueeze: axis {axis} out of range for {self.ndim} dims")
        axis = axis % (self.ndim + 1)
        return self.reshape(self.shape[:axis] + (1,) + self.shape[axis:])

    def split(self, split_size, axis: int = 0, *, dim=None) -> list:
        """PyTorch's split: an int is the size of each piece (the last may be smaller),
        a list gives each piece's size and must add up to the dim."""
        axis = axis if dim is None else dim
        n = self.shape[axis]
        if isinstance(split_size, (int, np.integer)):
            if split_size <= 0:
                raise ValueError(f"split: split_size must be positive, got {split_size}")
            sizes = [min(split_size, n - s) for s in range(0, n, split_size)]
        else:
            sizes = list(split_size)
            if sum(sizes) != n:
                raise ValueError(
                    f"split: sizes {sizes} do not add up to dim {axis} of {self.shape}"
                )
        pieces, start = [], 0
        lead = (slice(None),) * (axis % self.ndim)
        for size in sizes:
            pieces.append(self[lead + (slice(start, start + size),)])
            start += size
        return pieces

    def chunk(self, chunks: int, axis: int = 0, *, dim=None) -> list:
        axis = axis if dim is None else dim
        if chunks <= 0:
            raise ValueError(f"chunk: chunks must be positive, got {chunks}")
        n = self.shape[axis]
        return self.split(max(1, -(-n // chunks)), axis)

    def matmul(self, other):
        return M.MatMul.apply(self, self._operand(other))
