"""Plain NumPy definitions of every kernel in minigrad.kernels.

minigrad.kernels runs these wherever its Numba kernels do not (other dtypes, broadcasting,
NUMBA_DISABLE_JIT=1), and the tests hold both paths equal bit for bit; benchmarks/kernels.py
times the kernels against them. The derivatives come from `formulas`, as the Numba kernels'
do; the sigmoid's Numba twin is `_numba.sigmoid_from_exp`.
"""

import numpy as np

from .formulas import sigmoid_grad, tanh_grad


def index_add(out, idx, src):
    """out[idx[i]] += src[i] along axis 0, duplicates accumulating (in place)."""
    np.add.at(out, idx, src)
    return out


def tanh_backward(g, y):
    """Gradient of y = tanh(x) given y, in g's dtype."""
    return tanh_grad(g, y, 1).astype(g.dtype, copy=False)


def sigmoid_backward(g, y):
    """Gradient of y = sigmoid(x) given y, in g's dtype."""
    return sigmoid_grad(g, y, 1).astype(g.dtype, copy=False)


def relu_backward(g, x):
    """Gradient of relu(x) given x: g where x > 0, else 0."""
    return (g * (x > 0)).astype(g.dtype, copy=False)


def sigmoid(x):
    """1 / (1 + exp(-x)), written so that exp never overflows and small results keep their
    relative accuracy: with e = exp(-|x|), sigmoid(x) = 1 / (1 + e) for x >= 0, e / (1 + e) else.
    (The faster 0.5 * (1 + tanh(x / 2)) is off by thousands of ulps below x = -5.)
    """
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    e = np.empty(x.shape, x.dtype)  # ufuncs given out= return arrays, even 0-d ones
    np.abs(x, out=e)
    np.negative(e, out=e)
    np.exp(e, out=e)
    # max(e, 1) = 1 and max(e, 0) = e because 0 < e <= 1: a select without np.where, which is
    # slow on unpredictable masks. NaN propagates through np.maximum.
    num = np.maximum(e, x >= 0, out=np.empty_like(e))
    e += 1
    return np.divide(num, e, out=num)


def addmm(c, a, b):
    """c + a @ b."""
    return c + a @ b


def sum_rows(g):
    """Sum over axis 0."""
    return g.sum(axis=0)
