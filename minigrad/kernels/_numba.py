"""The compiled side of minigrad.kernels: Numba functions on contiguous arrays.

Only minigrad.kernels imports this module, and only on the first call that takes a Numba path,
so `import minigrad.kernels` neither imports Numba nor compiles anything. Each function
compiles on its first call for each argument type and is cached on disk as `cache=True` would,
but only in a directory no other user can have written to, whatever NUMBA_CACHE_DIR says
(`_diskcache.disk_cached`; otherwise it is compiled in each process, with one warning).

Conventions, all for speed (measured in benchmarks/README.md):
- Elementwise kernels take C-contiguous 1-D arrays and write into a caller-supplied `out`, with
  no branches in the loop body (conditionals are written so that they become selects), so that
  LLVM vectorises them. `error_model="numpy"` removes the division-by-zero check.
- Constants are made with `x.dtype.type(...)`: a bare `1` or `1.0` would promote float32
  arithmetic to float64 and the results would no longer match NumPy's bit for bit.
- No fastmath: it would let LLVM reorder or contract operations, and results would drift from
  the NumPy reference by more than rounding.
"""

from numba import njit

from . import formulas
from ._diskcache import disk_cached

OPTIONS = {"nogil": True, "error_model": "numpy"}
_njit = njit(**OPTIONS)  # no cache=True: Numba's cache files are pickles, read only if trusted


def _jit(function):
    return disk_cached(_njit(function))


# The derivatives' one definition, inlined into the loops (Numba IR inlining, so LLVM sees
# the same loop body it would for the formula written in place).
_tanh_grad = njit(inline="always", **OPTIONS)(formulas.tanh_grad)
_sigmoid_grad = njit(inline="always", **OPTIONS)(formulas.sigmoid_grad)


@_jit
def index_add_rows(out, idx, src):
    """out[idx[i]] += src[i] row by row, in order; returns -1, or the position of a bad index.

    All indices are checked before anything is written, so a bad one leaves `out` untouched
    (the caller raises IndexError). Negative indices count from the end, as in NumPy.
    """
    n, d = out.shape
    for i in range(idx.size):
        if idx[i] < -n or idx[i] >= n:
            return i
    for i in range(idx.size):
        j = idx[i]
        if j < 0:
            j += n
        for k in range(d):
            out[j, k] += src[i, k]
    return -1


@_jit
def tanh_backward(g, y, out):
    one = y.dtype.type(1)
    for i in range(g.size):
        out[i] = _tanh_grad(g[i], y[i], one)


@_jit
def sigmoid_backward(g, y, out):
    one = y.dtype.type(1)
    for i in range(g.size):
        out[i] = _sigmoid_grad(g[i], y[i], one)


@_jit
def relu_backward(g, x, out):
    # A select, then a multiply: the same as NumPy's g * (x > 0), NaN and -0.0 included.
    one = g.dtype.type(1)
    zero = g.dtype.type(0)
    for i in range(g.size):
        out[i] = g[i] * (one if x[i] > 0 else zero)


@_jit
def neg_abs(x, out):
    for i in range(x.size):
        out[i] = -abs(x[i])


@_jit
def sigmoid_from_exp(x, e):
    """In place: e = exp(-|x|) becomes sigmoid(x) = (1 or e) / (1 + e).

    The twin of reference.sigmoid's last steps, whose select is an np.maximum; tests hold the
    two equal bit for bit from the smallest subnormal to inf, in float32 and float64. np.exp
    runs outside (inside njit it is a scalar libm call that does not vectorise); this pass
    fuses the rest, which NumPy would spend four passes and a slow np.where on.
    """
    one = e.dtype.type(1)
    for i in range(x.size):
        ei = e[i]
        e[i] = (one if x[i] >= 0 else ei) / (one + ei)


@_jit
def sum_rows(g, out):
    """out = g.sum(axis=0) for a C-contiguous g.

    Adds the rows one after another, as NumPy does for this layout, so results match it bit for
    bit. Four rows per sweep keep the running sums in registers for four additions instead of
    one; each column still sees the same additions in the same order.
    """
    m, d = g.shape
    for k in range(d):
        out[k] = g[0, k] if m > 0 else 0
    i = 1
    while i + 4 <= m:
        for k in range(d):
            out[k] = (((out[k] + g[i, k]) + g[i + 1, k]) + g[i + 2, k]) + g[i + 3, k]
        i += 4
    while i < m:
        for k in range(d):
            out[k] += g[i, k]
        i += 1
