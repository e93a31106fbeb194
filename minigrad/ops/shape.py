"""Shape and indexing ops. Their backward moves gradients, never computes new values; their
tangent rules (`jvp`) move tangents the same way as forward moves values."""

import math

import numpy as np

from .. import kernels
from ..autograd import Function, SparseGrad
from .tangent import lift, shifted, zeros_for


class Reshape(Function):
    def forward(self, x, shape=None):
        self.in_shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape {x.shape} into {tuple(shape)}") from None

    def backward(self, g):
        return (g.reshape(self.in_shape),)

    def jvp(self, out, t):
        return t.reshape(t.shape[:1] + out.shape)


class Permute(Function):
    def forward(self, x, axes=None):
        if axes is not None and sorted(a % max(x.ndim, 1) for a in axes) != list(range(x.ndim)):
            raise ValueError(f"permute: {tuple(axes)} is not a permutation of {x.ndim} dims")
        self.axes = axes
        return np.transpose(x, axes)

    def backward(self, g):
        inverse = None if self.axes is None else np.argsort([a % g.ndim for a in self.axes])
        return (np.transpose(g, inverse),)

    def jvp(self, out, t):
        n = t.ndim - 1
        axes = range(n - 1, -1, -1) if self.axes is None else [a % max(n, 1) for a in self.axes]
        return np.transpose(t, (0,) + shifted(axes))


class Expand(Function):
    """broadcast_to: a view; the engine's sum_to reduces the gradient back."""

    def forward(self, x, shape=None):
        try:
            return np.broadcast_to(x, shape)
        except ValueError:
            raise ValueError(f"expand: cannot broadcast {x.shape} to {tuple(shape)}") from None

    def backward(self, g):
        return (g,)

    def jvp(self, out, t):
        return np.broadcast_to(lift(t, out.ndim), t.shape[:1] + out.shape)


def _is_basic(index) -> bool:
    """Basic indexing (ints, slices, None, Ellipsis) selects each element at most once."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, np.integer, slice)) for p in parts)


def _has_no_duplicates(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    arrays = [p for p in parts if isinstance(p, np.ndarray)]
    return all(a.dtype == bool for a in arrays)


def scatter_add(out, index, values):
    """out[index] += values, adding where an index repeats."""
    if _is_basic(index) or _has_no_duplicates(index):
        out[index] += values
    elif isinstance(index, np.ndarray) and index.dtype.kind in "iu" and index.ndim >= 1:
        # Row gather (an embedding lookup): a compiled scatter-add beats np.add.at by ~20x.
        flat = index.reshape(-1)
        kernels.index_add(out, flat, values.reshape((flat.size,) + out.shape[1:]))
    else:
        np.add.at(out, index, values)


class GetItem(Function):
    """x[index]; backward scatters the gradient back (a SparseGrad the engine adds in place)."""

    def forward(self, x, index=None):
        self.index = index
        self.in_shape = x.shape
        try:
            return x[index]
        except IndexError as e:
            raise IndexError(f"getitem: {e} (tensor of shape {x.shape})") from None

    def backward(self, g):
        return (SparseGrad(self.in_shape, self.index, g, scatter_add),)

    def jvp(self, out, t):
        index = self.index if isinstance(self.index, tuple) else (self.index,)
        if _is_basic(index):  # a leading full slice keeps the K axis in front
            return t[(slice(None),) + index]
        # Advanced indexing may move the indexed dims to the front, so index the flat
        # positions instead: the same elements, in out's layout, for every direction.
        where = np.arange(math.prod(self.in_shape)).reshape(self.in_shape)[self.index]
        return t.reshape(t.shape[0], math.prod(self.in_shape))[:, where]


class Cat(Function):
    def forward(self, *xs, axis=0):
        try:
            out = np.concatenate(xs, axis=axis)
        except ValueError:
            shapes = ", ".join(str(x.shape) for x in xs)
            raise ValueError(f"cat: cannot concatenate shapes {shapes} along axis {axis}") from None
        self.axis = axis % out.ndim
        self.bounds = np.cumsum([x.shape[self.axis] for x in xs])[:-1]
        return out

    def backward(self, g):
        return tuple(np.split(g, self.bounds, axis=self.axis))

    def jvp(self, out, *ts):
        sizes = np.diff(np.concatenate([[0], self.bounds, [out.shape[self.axis]]]))
        first = next(t for t in ts if t is not None)
        parts = []
        for t, n in zip(ts, sizes, strict=True):
            shape = out.shape[: self.axis] + (int(n),) + out.shape[self.axis + 1 :]
            parts.append(zeros_for(first, shape) if t is None else t)
        return np.concatenate(parts, axis=self.axis + 1)


class Stack(Function):
    def forward(self, *xs, axis=0):
        try:
            out = np.stack(xs, axis=axis)
        except ValueError:
            shapes = ", ".join(str(x.shape) for x in xs)
            raise ValueError(f"stack: cannot stack shapes {shapes}") from None
        self.axis = axis % out.ndim
        return out

    def backward(self, g):
        return tuple(np.moveaxis(g, self.axis, 0))

    def jvp(self, out, *ts):
        first = next(t for t in ts if t is not None)
        shape = out.shape[: self.axis] + out.shape[self.axis + 1 :]
        return np.stack([zeros_for(first, shape) if t is None else t for t in ts], self.axis + 1)
