"""Matrix product with NumPy's full semantics (1-D, 2-D, batched, broadcast batch dims)."""

import numpy as np

from ..autograd import Function


class MatMul(Function):
    """z = x @ y.  dL/dx = g @ y^T, dL/dy = x^T @ g, in the 2-D form that 1-D operands are
    promoted to; broadcast batch dims are summed away by the engine."""

    def forward(self, x, y):
        if x.ndim == 0 or y.ndim == 0:
            raise ValueError(f"matmul: operands must be at least 1-D, got {x.shape} @ {y.shape}")
        try:
            out = np.matmul(x, y)
        except ValueError:
            raise ValueError(
                f"matmul: shapes {x.shape} and {y.shape} are not aligned "
                f"({x.shape[-1]} != {y.shape[-2] if y.ndim > 1 else y.shape[0]})"
            ) from None
        self.saved = (x, y)
        return out

    def backward(self, g):
        x, y = self.saved
        x2 = x[None, :] if x.ndim == 1 else x  # (1, n)
        y2 = y[:, None] if y.ndim == 1 else y  # (n, 1)
        if x.ndim == 1:
            g = np.expand_dims(g, -2)
        if y.ndim == 1:
            g = g[..., None]
        gx = gy = None
        if self.needs[0]:
            gx = np.matmul(g, np.swapaxes(y2, -1, -2))
            if x.ndim == 1:
                gx = gx[..., 0, :]
        if self.needs[1]:
            if y2.ndim == 2 and x2.ndim > 2:
                # y is shared by every batch: one large product over all rows, not many small.
                gy = x2.reshape(-1, x2.shape[-1]).T @ g.reshape(-1, g.shape[-1])
            else:
                gy = np.matmul(np.swapaxes(x2, -1, -2), g)
            if y.ndim == 1:
                gy = gy[..., 0]
        return gx, gy
