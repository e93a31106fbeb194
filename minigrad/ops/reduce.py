"""Reductions over any axes, with keepdims.

Backward first restores the reduced axes as size-1 dims (`_expand`), after which NumPy
broadcasting spreads the gradient over them. The tangent rules (`jvp`) reduce the tangent
over the same axes, shifted past its leading axis of directions.
"""

import numpy as np

from ..autograd import Function
from .tangent import shifted


def normalize_axes(axis, ndim: int, op: str):
    """None -> all axes; ints (negative allowed) -> a sorted tuple; out of range -> clear error."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    n = max(ndim, 1)  # a 0-d tensor takes axis 0 or -1, as in PyTorch, and reduces nothing
    for a in axes:
        if not -n <= a < n:
            raise ValueError(f"{op}: axis {a} is out of range for a tensor of {ndim} dims")
        out.append(int(a) % n)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {axis}")
    return tuple(sorted(out)) if ndim else ()


def _expand(g, in_shape, axes, keepdims):
    """Reshape an output gradient so it broadcasts against the input (reduced axes -> 1)."""
    if keepdims:
        return g
    shape = [1 if i in axes else n for i, n in enumerate(in_shape)]
    return g.reshape(shape)


class Sum(Function):
    def forward(self, x, axis=None, keepdims=False):
        self.axes = normalize_axes(axis, x.ndim, "sum")
        self.keepdims = keepdims
        self.in_shape = x.shape
        return np.sum(x, axis=self.axes, keepdims=keepdims)

    def backward(self, g):
        g = _expand(g, self.in_shape, self.axes, self.keepdims)
        return (np.broadcast_to(g, self.in_shape),)

    def jvp(self, out, t):
        return np.sum(t, axis=shifted(self.axes), keepdims=self.keepdims)


class Mean(Function):
    def forward(self, x, axis=None, keepdims=False):
        self.axes = normalize_axes(axis, x.ndim, "mean")
        self.keepdims = keepdims
        self.in_shape = x.shape
        self.count = int(np.prod([x.shape[a] for a in self.axes]))
        if self.count == 0:
            raise ValueError(f"mean: reducing over an empty axis of shape {x.shape}")
        return np.mean(x, axis=self.axes, keepdims=keepdims)

    def backward(self, g):
        g = _expand(g, self.in_shape, self.axes, self.keepdims) / self.count
        return (np.broadcast_to(g, self.in_shape),)

    def jvp(self, out, t):
        return np.mean(t, axis=shifted(self.axes), keepdims=self.keepdims)


class _Extreme(Function):
    """max / min: the gradient is shared equally among the elements that attain the extreme."""

    reducer = None

    def forward(self, x, axis=None, keepdims=False):
        name = type(self).__name__.lower()
        self.axes = normalize_axes(axis, x.ndim, name)
        if any(x.shape[a] == 0 for a in self.axes):
            raise ValueError(f"{name}: reducing over an empty axis of shape {x.shape}")
        self.keepdims = keepdims
        out = self.reducer(x, axis=self.axes, keepdims=True)
        self.saved = (x, out)
        return out if keepdims else np.squeeze(out, axis=self.axes)

    def backward(self, g):
        x, out = self.saved
        mask = x == out
        count = mask.sum(axis=self.axes, keepdims=True, dtype=g.dtype)  # int would give float64
        g = _expand(g, x.shape, self.axes, self.keepdims)
        return (mask * (g / count),)

    def jvp(self, out, t):
        # The tangent of the elements attaining the extreme, averaged over ties (backward's
        # equal shares, transposed).
        x, top = self.saved
        mask = x == top
        count = mask.sum(axis=self.axes, keepdims=True, dtype=out.dtype)
        return np.sum(t * (mask / count), axis=shifted(self.axes), keepdims=self.keepdims)


class Max(_Extreme):
    reducer = staticmethod(np.max)


class Min(_Extreme):
    reducer = staticmethod(np.min)


class LogSumExp(Function):
    """log sum exp(x), shifted by the max so that no exp overflows; d/dx = softmax(x)."""

    def forward(self, x, axis=None, keepdims=False):
        self.axes = normalize_axes(axis, x.ndim, "logsumexp")
        if any(x.shape[a] == 0 for a in self.axes):
            raise ValueError(f"logsumexp: reducing over an empty axis of shape {x.shape}")
        self.keepdims = keepdims
        m = np.max(x, axis=self.axes, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        with np.errstate(divide="ignore"):  # a row of all -inf has logsumexp -inf, not an error
            out = np.log(np.sum(np.exp(x - m), axis=self.axes, keepdims=True)) + m
        self.saved = (x, out)
        return out if keepdims else np.squeeze(out, axis=self.axes)

    def backward(self, g):
        x, out = self.saved
        g = _expand(g, x.shape, self.axes, self.keepdims)
        return (g * np.exp(x - out),)

    def jvp(self, out, t):
        x, lse = self.saved
        return np.sum(t * np.exp(x - lse), axis=shifted(self.axes), keepdims=self.keepdims)
