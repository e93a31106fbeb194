"""Ops that copy or write a tensor's memory: a cast, a clone, an index assignment."""

import numpy as np

from ..autograd import Function


class Cast(Function):
    """Change floating precision; the gradient is cast back."""

    def forward(self, x, dtype=None):
        self.in_dtype = x.dtype
        return x.astype(dtype)

    def backward(self, g):
        return (g.astype(self.in_dtype),)

    def jvp(self, out, t):
        return t.astype(out.dtype)


class Clone(Function):
    """A copy that stays in the graph (PyTorch's clone)."""

    def forward(self, x, order="K"):
        return np.array(x, copy=True, order=order)

    def backward(self, g):
        return (g,)

    def jvp(self, out, t):
        return t


class SetItem(Function):
    """x[index] = v, in place; x's gradient is g with index zeroed, v's is g[index]."""

    def forward(self, x, v, index=None):
        self.index, self.v_shape, self.v_dtype = index, v.shape, v.dtype
        x[index] = v
        return x

    def backward(self, g):
        index = self.index
        gx = None
        if self.needs[0]:
            gx = np.array(g, copy=True)
            gx[index] = 0
        gv = None
        if self.needs[1]:
            gv = np.asarray(g[index])
            # NumPy lets a value with extra leading 1-dims fill a smaller region.
            if gv.ndim < len(self.v_shape):
                gv = gv.reshape((1,) * (len(self.v_shape) - gv.ndim) + gv.shape)
            gv = gv.astype(self.v_dtype, copy=False)
        return gx, gv
