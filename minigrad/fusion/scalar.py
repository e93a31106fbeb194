"""exp, tanh and sigmoid for one float32 element, written so that LLVM vectorises a loop of them.

Inside `@njit`, `np.exp` and `np.tanh` are scalar calls into libm (pip's llvmlite has no SVML),
which made a fused LSTM gate loop 15x slower than its arithmetic. These use only arithmetic,
selects and bit casts, so a loop of them becomes AVX vector code.

They compute in float64 and round once to float32 at the end: exp's range reduction and its
degree-7 polynomial are accurate to ~1e-9 relative, far inside float32's rounding (6e-8), so
results are float32's correctly rounded value in all but rare ties (tests measure it against
NumPy). Float64 kernels keep libm: there accuracy matters more than speed (gradcheck runs there).
"""

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from ..kernels._diskcache import disk_cached

# No cache=True: Numba's cache files are pickles, so they are kept and read only in a directory
# no other user can have written to, whatever NUMBA_CACHE_DIR says (minigrad/kernels/_diskcache.py).
_njit = njit(inline="always", error_model="numpy")


def _inline(function):
    return disk_cached(_njit(function))


@intrinsic
def _as_int64(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return types.int64(types.float64), codegen


@intrinsic
def _as_float64(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return types.float64(types.int64), codegen


_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453
_ROUND = 6755399441055744.0  # 1.5 * 2**52: adding it rounds to an integer kept in the low bits


@_inline
def exp64(d):
    """e**d in float64 to ~1e-9 relative, for d in [-104, 89] (clamped: float32's range)."""
    d = min(max(d, -104.0), 89.0)
    k = d * _LOG2E + _ROUND  # n = round(d / ln 2) sits in k's low mantissa bits
    n = k - _ROUND
    r = d - n * _LN2  # |r| <= ln(2) / 2
    p = 1.0 + r * (
        1.0
        + r * (1 / 2 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (1 / 720 + r * (1 / 5040))))))
    )
    # 2**n built from its bits: n's low 12 bits plus the bias, moved into the exponent field
    scale = _as_float64((_as_int64(k) + 1023) << 52)
    return p * scale


@_inline
def exp32(x):
    return np.float32(exp64(np.float64(x)))


@_inline
def sigmoid32(x):
    d = np.float64(x)
    e = exp64(-abs(d))  # in (0, 1]: the stable form for both signs, chosen by a select
    s = 1.0 / (1.0 + e)
    return np.float32(s if d >= 0.0 else e * s)


@_inline
def tanh32(x):
    d = np.float64(x)
    a = abs(d)
    e = exp64(-2.0 * a)
    t = (1.0 - e) / (1.0 + e)
    # Below 1e-5, 1 - e loses digits; there tanh(a) = a - a^3/3 to 1e-21 relative.
    t = a - a * a * a / 3.0 if a < 1e-5 else t
    return np.float32(np.copysign(t, d))  # tanh(-0.0) is -0.0
