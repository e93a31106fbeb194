"""Hot kernels on plain NumPy arrays: Numba where it measurably wins, NumPy everywhere else.

Every public function has NumPy semantics, takes arrays of any shape, and dispatches: the
Numba kernel runs for float32/float64 inputs at or above the size in `MIN_SIZE` (from
benchmarks/kernels.py: the size from which it beats the fastest NumPy expression), on
contiguous copies where an input is a strided view. Other dtypes, mixed dtypes and
broadcasting go to the function's plain NumPy definition in `reference.py`.

Nothing is compiled, and Numba is not even imported, until a call first takes a Numba path.
With NUMBA_DISABLE_JIT=1 the kernels would run as Python loops, so every threshold is set to
infinity and NumPy runs; tests can still force a kernel by setting its MIN_SIZE to 0 (and its
MAX_SIZE to infinity).
"""

import math
import os

import numpy as np

from . import reference

__all__ = [
    "MAX_SIZE",
    "MIN_SIZE",
    "addmm",
    "index_add",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "sum_rows",
    "tanh_backward",
]

# The sizes (elements; rows of src for index_add) at which each Numba kernel runs, set from
# `python benchmarks/kernels.py --sweep` and the table in benchmarks/README.md. Every kernel
# beat NumPy from size 1 up (by the 0.3-2 us of NumPy's call overhead at tiny sizes), so each
# starts at 1; math.inf in MIN_SIZE sends a kernel to NumPy.
MIN_SIZE = {
    "index_add": 1,
    "tanh_backward": 1,
    "sigmoid_backward": 1,
    "relu_backward": 1,
    "sigmoid": 1,
    "sum_rows": 1,
}

MAX_SIZE = dict.fromkeys(MIN_SIZE, math.inf)
# Past 2M elements sum_rows is bound by memory bandwidth either way and the kernel measured
# 0.7x-1.35x of NumPy depending on shape and run (float32 2048 x 2048 lost every time): NumPy
# keeps those.
MAX_SIZE["sum_rows"] = 1 << 21

if os.environ.get("NUMBA_DISABLE_JIT", "0").strip() not in ("", "0"):
    MIN_SIZE = dict.fromkeys(MIN_SIZE, math.inf)

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_nb = None


def _compiled():
    """The compiled kernels, imported (and Numba with them) on first use."""
    if _nb is None:
        _load()
    return _nb


def _load():
    global _nb
    from . import _numba

    _nb = _numba


def _same_float(a, b):
    return a.dtype == b.dtype and a.dtype in _FLOATS and a.shape == b.shape


# --- scatter-add -------------------------------------------------------------------------------


def index_add(out, idx, src):
    """In place: out[idx[i]] += src[i] along axis 0, duplicates accumulating (np.add.at).

    idx is an int array of any shape and src has shape idx.shape + out.shape[1:]. Returns out.
    """
    idx = np.asarray(idx)
    src = np.asarray(src)
    if not (
        out.ndim >= 1
        and out.dtype == src.dtype
        and out.dtype in _FLOATS
        and out.flags.writeable
        and src.shape == idx.shape + out.shape[1:]
        and (idx.dtype.kind == "i" or (idx.dtype.kind == "u" and idx.dtype.itemsize < 8))
        and idx.size >= MIN_SIZE["index_add"]
    ):
        return reference.index_add(out, idx, src)
    n = out.shape[0]
    d = math.prod(out.shape[1:])
    # A C-contiguous out reshapes to a view; any other is worked on as a copy and written back.
    in_place = out.flags.c_contiguous
    work = (out if in_place else np.ascontiguousarray(out)).reshape(n, d)
    flat_idx = idx.reshape(-1).astype(np.intp, copy=False)
    rows = np.ascontiguousarray(src).reshape(flat_idx.size, d)
    bad = _compiled().index_add_rows(work, flat_idx, rows)
    if bad >= 0:
        raise IndexError(f"index {flat_idx[bad]} is out of bounds for axis 0 with size {n}")
    if not in_place:
        out[...] = work.reshape(out.shape)
    return out


# --- elementwise backward ----------------------------------------------------------------------


def _fused(kernel, g, y):
    """Run a one-pass elementwise kernel on g and y (same float dtype and shape)."""
    out = np.empty(g.shape, g.dtype)
    # ravel() is a view of a C-contiguous array and a C-ordered copy of any other.
    kernel(g.ravel(), y.ravel(), out.ravel())
    return out


def tanh_backward(g, y):
    """g * (1 - y*y), the gradient of tanh given its output y; g's dtype and shape."""
    if g.size >= MIN_SIZE["tanh_backward"] and _same_float(g, y):
        return _fused(_compiled().tanh_backward, g, y)
    # Empty or small arrays, other or mixed dtypes, broadcasting: the plain expression.
    return np.asarray(reference.tanh_backward(g, y))


def sigmoid_backward(g, y):
    """g * y * (1 - y), the gradient of sigmoid given its output y; g's dtype and shape."""
    if g.size >= MIN_SIZE["sigmoid_backward"] and _same_float(g, y):
        return _fused(_compiled().sigmoid_backward, g, y)
    return np.asarray(reference.sigmoid_backward(g, y))


def relu_backward(g, x):
    """g * (x > 0), the gradient of relu given its input x; g's dtype and shape."""
    if g.size >= MIN_SIZE["relu_backward"] and _same_float(g, x):
        return _fused(_compiled().relu_backward, g, x)
    return np.asarray(reference.relu_backward(g, x))


# --- sigmoid -----------------------------------------------------------------------------------


def sigmoid(x):
    """1 / (1 + exp(-x)) with no overflow for any x and relative accuracy of a few ulps.

    Both paths compute e = exp(-|x|), then (1 if x >= 0 else e) / (1 + e): exp never sees a
    positive argument (see `reference.sigmoid`, which the NumPy path is).
    """
    x = np.asarray(x)
    if x.size >= MIN_SIZE["sigmoid"] and x.dtype in _FLOATS:
        nb = _compiled()
        xf = x.ravel()
        e = np.empty(xf.shape, x.dtype)
        nb.neg_abs(xf, e)
        np.exp(e, out=e)
        nb.sigmoid_from_exp(xf, e)
        return e.reshape(x.shape)
    return reference.sigmoid(x)


# --- reductions --------------------------------------------------------------------------------


def sum_rows(g):
    """g.sum(axis=0) for a 2-D g (reduces a broadcast bias gradient)."""
    # The kernel adds row after row, as NumPy does for a C-contiguous g of two or more columns.
    # Other layouts, and a single column, NumPy sums pairwise along the columns: left to NumPy.
    if (
        g.ndim == 2
        and g.dtype in _FLOATS
        and g.flags.c_contiguous
        and g.shape[1] > 1
        and MIN_SIZE["sum_rows"] <= g.size <= MAX_SIZE["sum_rows"]
    ):
        out = np.empty(g.shape[1], g.dtype)
        _compiled().sum_rows(g, out)
        return out
    return np.add.reduce(g, axis=0)


# --- matmul ------------------------------------------------------------------------------------


def linear(x, w, b=None):
    """x @ w.T (+ b) for a 2-D x and weight w (out_features, in_features).

    A recurrent step multiplies a few rows (the batch) by a wide weight. OpenBLAS runs that
    product 1.1-2.0x faster in float32 the other way round, as w @ x.T, whose result is then
    copied transposed into place (8 to 32 rows, 256 or more output columns, one thread;
    benchmarks/gemm_orientation.py). Every other shape, and float64 (where the flip was slower
    up to 256 input columns and 1.1-1.3x faster only at 512), runs the plain form. The result
    is C-contiguous either way.
    """
    rows, cols = x.shape[0], w.shape[0]
    if 8 <= rows <= 32 and cols >= 256 and x.dtype == np.float32 == w.dtype:
        out = np.ascontiguousarray((w @ x.T).T)
        if b is not None:
            out += b
        return out
    return x @ w.T if b is None else addmm(b, x, w.T)


def addmm(c, a, b):
    """c + a @ b for 2-D a and b, c broadcastable to the product (a bias row or a matrix).

    NumPy only. Adding a bias row or a full c in place into the product saves allocating a
    second result, which for large products also means page faults (2x at 2048 x 2048). A
    Numba kernel (np.dot, which calls SciPy's own OpenBLAS, with a fused add) was measured and
    dropped: in a process that also uses NumPy's matmul, the two OpenBLAS thread pools fight
    for the cores and each switch between them costs milliseconds (benchmarks/README.md).
    """
    out = np.matmul(a, b)
    if (
        isinstance(c, np.ndarray)
        and c.dtype == out.dtype
        and (c.shape == out.shape or c.shape == out.shape[-1:])
    ):
        out += c
        return out
    return c + out
