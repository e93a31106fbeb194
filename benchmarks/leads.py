"""Two leads for a faster recurrent step, measured before building them.

    OPENBLAS_NUM_THREADS=1 python benchmarks/leads.py [--hidden 64 256 512]

1. A compiled loop over T that calls BLAS itself. Numba's own `np.dot` needs SciPy and its
   second OpenBLAS (whose thread pool fights NumPy's); NumPy's wheel exports its OpenBLAS's
   CBLAS as `scipy_cblas_sgemm64_`, which a Numba function can call through a ctypes function
   passed as an argument (so the compiled code still caches). Timed: the T products
   h @ W_hh^T of one forward (B=32, T=64) from one compiled loop, plain and turned round
   (W_hh @ h^T, as kernels.linear runs it), against NumPy's matmul in a Python loop.
2. The fused loops' float32 transcendentals (minigrad/fusion/scalar.py compute in float64 and
   round once, within 1 ulp) against NumPy's own float32 tanh, and against a variant computed
   in float32 throughout (range reduction and a degree-7 polynomial in float32): its speed on
   an LSTM's gate loop and its error in ulps of the correctly rounded value.
CPU time of this process; medians of 5 repeats.
"""

import argparse
import ctypes
import glob
import os
import time

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from minigrad.fusion.scalar import sigmoid32, tanh32

B, T = 32, 64
_jit = njit(cache=True, nogil=True, error_model="numpy")  # "numpy": no branch per division
_inline = njit(inline="always", error_model="numpy")


def numpy_sgemm():
    """NumPy's OpenBLAS sgemm as a ctypes function, or None where NumPy bundles none."""
    found = glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*openblas*.so*"))
    if not found:
        return None
    fn = getattr(ctypes.CDLL(found[0]), "scipy_cblas_sgemm64_", None)
    if fn is None:
        return None
    i64, f32, ptr = ctypes.c_int64, ctypes.c_float, ctypes.c_void_p
    fn.restype = None
    fn.argtypes = [ctypes.c_int] * 3 + [i64] * 3 + [f32, ptr, i64, ptr, i64, f32, ptr, i64]
    return fn


ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # CBLAS's enums, as literals in the loops below


def python_loop(h, w, out):
    for _ in range(T):
        np.matmul(h, w.T, out=out)


def python_loop_turned(h, w, out_t):
    for _ in range(T):
        np.matmul(w, h.T, out=out_t)


@_jit
def products(gemm, h, w, out, turned):
    """T times out = h @ w.T (out: (B, G)), or turned round out = w @ h.T (out: (G, B))."""
    rows, k = h.shape
    cols = w.shape[0]
    one, zero = np.float32(1.0), np.float32(0.0)
    a, b = (w, h) if turned else (h, w)
    m, n = (cols, rows) if turned else (rows, cols)
    for _ in range(T):
        gemm(101, 111, 112, m, n, k, one, a.ctypes.data, k, b.ctypes.data, k, zero,
             out.ctypes.data, n)  # fmt: skip


# ----- float32 transcendentals computed in float32 --------------------------------------------
def _bitcast(source, target):
    """An intrinsic that reinterprets a value's bits as another type of the same width."""

    @intrinsic
    def cast(typingctx, x):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(target))

        return target(source), codegen

    return cast


_as_float32 = _bitcast(types.int32, types.float32)
_as_int32 = _bitcast(types.float32, types.int32)


_F = np.float32
_LOG2E, _LN2_HI, _LN2_LO = _F(1.4426950408889634), _F(0.693359375), _F(-2.12194440e-4)
_ROUND = _F(12582912.0)  # 1.5 * 2**23: adding it rounds to an integer kept in the low bits


@_inline
def exp_f32(x):
    x = min(max(x, _F(-87.0)), _F(88.0))
    k = x * _LOG2E + _ROUND
    n = k - _ROUND
    r = x - n * _LN2_HI - n * _LN2_LO  # ln 2 in two parts: r keeps float32's precision
    p = _F(1 / 5040)
    for c in (1 / 720, 1 / 120, 1 / 24, 1 / 6, 1 / 2, 1.0, 1.0):
        p = p * r + _F(c)
    return p * _as_float32((_as_int32(k) - _as_int32(_ROUND) + 127) << 23)


@_inline
def sigmoid_f32(x):
    e = exp_f32(-abs(x))
    s = _F(1) / (_F(1) + e)
    return s if x >= _F(0) else e * s


@_inline
def tanh_f32(x):
    a = abs(x)
    e = exp_f32(_F(-2) * a)
    t = (_F(1) - e) / (_F(1) + e)
    t = a - a * a * a / _F(3) if a < _F(4e-3) else t
    return np.copysign(t, x)


def _gate_loop(sigmoid, tanh):
    """An LSTM's gate arithmetic over (R, C), as the fused kernel computes it."""

    @_jit
    def gates(gi, hh, c, out):
        R, C = c.shape
        for r in range(R):
            for j in range(C):
                i = sigmoid(gi[r, j] + hh[r, j])
                f = sigmoid(gi[r, C + j] + hh[r, C + j])
                g = tanh(gi[r, 2 * C + j] + hh[r, 2 * C + j])
                o = sigmoid(gi[r, 3 * C + j] + hh[r, 3 * C + j])
                c2 = f * c[r, j] + i * g
                out[0, r, j] = c2
                out[1, r, j] = o * tanh(c2)

    return gates


gates_now = _gate_loop(sigmoid32, tanh32)
gates_f32 = _gate_loop(sigmoid_f32, tanh_f32)


@_jit
def tanh_loop(x, out, float32_arithmetic):
    for i in range(x.size):
        out[i] = tanh_f32(x[i]) if float32_arithmetic else tanh32(x[i])


@_jit
def sigmoid_loop(x, out):
    for i in range(x.size):
        out[i] = sigmoid_f32(x[i])


# ----- measuring --------------------------------------------------------------------------------
def cpu_ms(fn, n, *args):
    """CPU ms of fn(*args), the median of 5 repeats of n calls."""
    fn(*args)
    times = []
    for _ in range(5):
        start = time.process_time()
        for _ in range(n):
            fn(*args)
        times.append((time.process_time() - start) / n)
    return float(np.median(times)) * 1e3


def ulps(got, want):
    def ordered(a):
        i = a.view(np.int32).astype(np.int64)
        return np.where(i < 0, -(i & 0x7FFFFFFF), i)

    return int(np.abs(ordered(got) - ordered(want)).max())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 256, 512])
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    gemm = numpy_sgemm()
    print("1. The T=64 recurrent products of one LSTM forward (B=32), ms\n")
    if gemm is None:
        print("NumPy here bundles no OpenBLAS with scipy_cblas_sgemm64_: not measured.\n")
    else:
        print("| H | NumPy, Python loop | turned round | compiled loop | turned round |")
        print("|---|---|---|---|---|")
        for H in args.hidden:
            h = rng.standard_normal((B, H), dtype=np.float32)
            w = rng.standard_normal((4 * H, H), dtype=np.float32)
            out, out_t = np.empty((B, 4 * H), np.float32), np.empty((4 * H, B), np.float32)

            products(gemm, h, w, out, False)
            products(gemm, h, w, out_t, True)
            assert np.allclose(out, h @ w.T, rtol=1e-4, atol=1e-3)
            assert np.allclose(out_t, w @ h.T, rtol=1e-4, atol=1e-3)
            n = max(2, 2000 // H)
            row = [
                cpu_ms(python_loop, n, h, w, out),
                cpu_ms(python_loop_turned, n, h, w, out_t),
                cpu_ms(products, n, gemm, h, w, out, False),
                cpu_ms(products, n, gemm, h, w, out_t, True),
            ]
            print(f"| {H} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    x = rng.standard_normal(B * 256, dtype=np.float32) * 4
    out = np.empty_like(x)
    print("\n2. float32 tanh over 8,192 elements, us\n")
    print("| NumPy np.tanh | fused loop (scalar.py, float64 inside) | float32 arithmetic |")
    print("|---|---|---|")
    row = [cpu_ms(np.tanh, 2000, x, out)]
    row += [cpu_ms(tanh_loop, 2000, x, out, f) for f in (False, True)]
    print("| " + " | ".join(f"{v * 1e3:.1f}" for v in row) + " |")
    grid = np.linspace(-30, 30, 600_001, dtype=np.float32)
    exact = grid.astype(np.float64)
    got_tanh, got_sigmoid = np.empty_like(grid), np.empty_like(grid)
    tanh_loop(grid, got_tanh, True)
    sigmoid_loop(grid, got_sigmoid)
    worst_tanh = ulps(got_tanh, np.tanh(exact).astype(np.float32))
    worst_sigmoid = ulps(got_sigmoid, (1 / (1 + np.exp(-exact))).astype(np.float32))
    print(
        f"\nFloat32 arithmetic on [-30, 30]: tanh within {worst_tanh} and sigmoid within "
        f"{worst_sigmoid} ulps of the correctly rounded value (scalar.py: 1)."
    )
    print("\nAn LSTM's fused gate loop (forward, B=32), us per time step\n")
    print("| H | scalar.py (float64 inside) | float32 arithmetic |")
    print("|---|---|---|")
    for H in args.hidden:
        gi = rng.standard_normal((B, 4 * H), dtype=np.float32) * 3
        hh = rng.standard_normal((B, 4 * H), dtype=np.float32)
        c = rng.standard_normal((B, H), dtype=np.float32)
        o1, o2 = np.empty((2, B, H), np.float32), np.empty((2, B, H), np.float32)
        now = cpu_ms(gates_now, 500, gi, hh, c, o1)
        f32 = cpu_ms(gates_f32, 500, gi, hh, c, o2)
        print(f"| {H} | {now * 1e3:.1f} | {f32 * 1e3:.1f} |")


if __name__ == "__main__":
    main()
