"""Plain NumPy definitions of every kernel in minigrad.kernels.

These are the specifications: tests check the dispatching functions (both their NumPy and their
Numba paths) against them, and benchmarks/kernels.py times the kernels against them. They are
written for clarity, not speed.
"""

import numpy as np


def index_add(out, idx, src):
    """out[idx[i]] += src[i] along axis 0, duplicates accumulating (in place)."""
    np.add.at(out, idx, src)
    return out


def index_add_rows(out, idx, src):
    np.add.at(out, idx, src)
    return out


def tanh_backward(g, y):
    """Gradient of y = tanh(x) given y: g * (1 - y**2)."""
    return (g * (1 - y * y)).astype(g.dtype, copy=False)


def sigmoid_backward(g, y):
    """Gradient of y = sigmoid(x) given y: g * y * (1 - y)."""
    return (g * y * (1 - y)).astype(g.dtype, copy=False)


def relu_backward(g, x):
    """Gradient of relu(x) given x: g where x > 0, else 0."""
    return (g * (x > 0)).astype(g.dtype, copy=False)


def sigmoid(x):
    """1 / (1 + exp(-x)), written so that exp never overflows and small results keep their
    relative accuracy: with e = exp(-|x|), sigmoid(x) = 1 / (1 + e) for x >= 0, e / (1 + e) else.
    """
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e) / (1 + e)


def addmm(c, a, b):
    """c + a @ b."""
    return c + a @ b


def sum_rows(g):
    """Sum over axis 0."""
    return g.sum(axis=0)
