"""Matrix products: `MatMul` with NumPy's full semantics, and `Linear` (x @ W^T + b).

The gradient of a 2-D right operand is returned as a `ProductGrad` (x^T @ g kept as factors),
so a weight used at every time step gets its T terms as one product over all T*B rows.
"""

import math

import numpy as np

from .. import kernels
from ..autograd import Function, ProductGrad
from .tangent import lift, plus


class MatMul(Function):
    """z = x @ y.  dL/dx = g @ y^T, dL/dy = x^T @ g, in the 2-D form that 1-D operands are
    promoted to; broadcast batch dims are summed away by the engine."""

    def forward(self, x, y):
        if x.ndim == 0 or y.ndim == 0:
            raise ValueError(f"matmul: operands must be at least 1-D, got {x.shape} @ {y.shape}")
        try:
            out = np.matmul(x, y)
        except ValueError:
            n = y.shape[-2] if y.ndim > 1 else y.shape[0]
            why = f"{x.shape[-1]} != {n}" if x.shape[-1] != n else "batch dims do not broadcast"
            raise ValueError(
                f"matmul: shapes {x.shape} and {y.shape} are not aligned ({why})"
            ) from None
        self.saved = (x, y)
        return out

    def backward(self, g):
        x, y = self.saved
        x2 = x[None, :] if x.ndim == 1 else x  # (1, n)
        y2 = y[:, None] if y.ndim == 1 else y  # (n, 1)
        if y.ndim == 1:  # first: for 1-D @ 1-D, g is 0-d and has no axis -2 yet
            g = g[..., None]
        if x.ndim == 1:
            g = np.expand_dims(g, -2)
        gx = gy = None
        if self.needs[0]:
            gx = np.matmul(g, np.swapaxes(y2, -1, -2))
            if x.ndim == 1:
                gx = gx[..., 0, :]
        if self.needs[1]:
            if y2.ndim == 2:
                # y is shared by every row and batch: one product over all of them, deferred.
                rows = math.prod(g.shape[:-1])  # not -1: ambiguous when a dim is 0
                gy = ProductGrad(x2.reshape(rows, x2.shape[-1]), g.reshape(rows, g.shape[-1]))
                if y.ndim == 1:
                    gy = gy.dense()[:, 0]
            else:
                gy = np.matmul(np.swapaxes(x2, -1, -2), g)
                if y.ndim == 1:
                    gy = gy[..., 0]
        return gx, gy

    def jvp(self, out, tx, ty):
        # d(x @ y) = dx @ y + x @ dy, each direction of the K axis a batch dim in front. A
        # vector operand's tangent becomes a one-row (one-column) matrix, and every matrix is
        # lifted to the product's batch rank so that K never meets a batch dim.
        x, y = self.saved
        batch = out.ndim - (x.ndim > 1) - (y.ndim > 1)  # out's broadcast batch dims
        dx = dy = None
        if tx is not None:
            if x.ndim > 1:
                dx = np.matmul(lift(tx, batch + 2), y)
            elif y.ndim == 1:
                dx = np.matmul(tx, y)
            else:
                dx = np.matmul(lift(tx[:, None, :], batch + 2), y)[..., 0, :]
        if ty is not None:
            if y.ndim > 1:
                dy = np.matmul(x, lift(ty, batch + 2))
            else:
                dy = np.matmul(x, lift(ty[..., None], batch + 2))[..., 0]
        return plus(dx, dy)


class Linear(Function):
    """y = x W^T + b, x of shape (..., in), W (out, in), b (out,) or absent (PyTorch's layout),
    as one 2-D product over all leading dims.

    dL/dx = g W,  dL/dW = g^T x (deferred, summed over all rows),  dL/db = sum of g's rows.
    """

    def forward(self, x, w, b=None):
        if w.ndim != 2 or x.ndim == 0 or x.shape[-1] != w.shape[1]:
            raise ValueError(
                f"linear: input of shape {x.shape} does not match weight of shape {w.shape} "
                "(expected input (..., in_features) and weight (out_features, in_features))"
            )
        if b is not None and b.shape != (w.shape[0],):
            raise ValueError(f"linear: bias of shape {b.shape}, expected ({w.shape[0]},)")
        rows = math.prod(x.shape[:-1])  # not -1: a dim of size 0 makes -1 ambiguous
        x2 = x.reshape(rows, x.shape[-1])
        out = kernels.linear(x2, w, b)
        self.saved = (x2, w)
        return out.reshape(x.shape[:-1] + (w.shape[0],))

    def backward(self, g):
        x2, w = self.saved
        g2 = g.reshape(math.prod(g.shape[:-1]), w.shape[0])
        gx = (g2 @ w).reshape(g.shape[:-1] + (w.shape[1],)) if self.needs[0] else None
        gw = ProductGrad(g2, x2) if self.needs[1] else None
        gb = kernels.sum_rows(g2) if len(self.needs) > 2 and self.needs[2] else None
        return gx, gw, gb

    def jvp(self, out, tx, tw, tb=None):
        x2, w = self.saved
        k = (tx if tx is not None else tw if tw is not None else tb).shape[0]
        rows = np.zeros((k, x2.shape[0], w.shape[0]), dtype=out.dtype)
        if tx is not None:  # dx W^T over all rows at once
            rows += tx.reshape(k, x2.shape[0], w.shape[1]) @ w.T
        if tw is not None:  # x dW^T, one product per direction
            rows += np.matmul(x2, np.swapaxes(tw, -1, -2))
        if tb is not None:
            rows += tb[:, None, :]
        return rows.reshape((k,) + out.shape)
