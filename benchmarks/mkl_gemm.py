"""Would oneMKL's GEMM (plain or packed) beat NumPy's OpenBLAS on the char-LM step's products?

    pip download --no-deps mkl -d /tmp/mkl && (cd /tmp/mkl && unzip -q mkl-*.whl)
    OPENBLAS_NUM_THREADS=1 python benchmarks/mkl_gemm.py /tmp/mkl/mkl-*.data/data/lib

Calls MKL's cblas_sgemm (and cblas_sgemm_pack / cblas_sgemm_compute, the packed-weight
interface meant for a weight reused at every time step) through ctypes, sequential, on the
step's three kinds of product at B=32: the recurrent forward h @ W_hh^T, its backward g @ W_hh,
and a weight gradient over T*B = 2048 rows; prints CPU microseconds against NumPy's `@`.
Nothing in minigrad uses MKL: this is the measurement that decided against it.
"""

import ctypes
import os
import sys
import time

import numpy as np

ROW_MAJOR, NO_TRANS, TRANS, B_MATRIX, PACKED = 101, 111, 112, 162, 151


def cpu_us(fn, n):
    for _ in range(20):
        fn()
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n * 1e6


def main(libdir):
    os.environ["MKL_THREADING_LAYER"] = "SEQUENTIAL"
    mkl = ctypes.CDLL(os.path.join(libdir, "libmkl_rt.so.3"), mode=ctypes.RTLD_GLOBAL)
    i, f, p = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    gemm = mkl.cblas_sgemm
    gemm.argtypes = [i, i, i, i, i, i, f, p, i, p, i, f, p, i]
    pack_size = mkl.cblas_sgemm_pack_get_size
    pack_size.restype, pack_size.argtypes = ctypes.c_size_t, [i, i, i, i]
    pack = mkl.cblas_sgemm_pack
    pack.argtypes = [i, i, i, i, i, i, f, p, i, p]
    compute = mkl.cblas_sgemm_compute
    compute.argtypes = [i, i, i, i, i, i, p, i, p, i, f, p, i]
    rng = np.random.default_rng(0)
    print("| H | h @ W.T numpy | mkl | mkl packed | g @ W numpy | mkl | dW numpy | mkl |")
    print("|---|---|---|---|---|---|---|---|")
    for H in (64, 128, 256, 512):
        row = measure(H, rng, gemm, pack_size, pack, compute)
        print(f"| {H} | " + " | ".join(f"{v:.1f}" for v in row) + " |", flush=True)


def measure(H, rng, gemm, pack_size, pack, compute):
    """CPU microseconds of the three products at hidden size H, NumPy's beside MKL's."""
    h = rng.standard_normal((32, H), dtype=np.float32)
    w = rng.standard_normal((4 * H, H), dtype=np.float32)
    g = rng.standard_normal((32, 4 * H), dtype=np.float32)
    gs = rng.standard_normal((2048, 4 * H), dtype=np.float32)
    xs = rng.standard_normal((2048, H), dtype=np.float32)
    out, gout, wout = (np.empty(s, np.float32) for s in ((32, 4 * H), (32, H), (4 * H, H)))
    M, N, K = 32, 4 * H, H
    packed = np.empty(pack_size(B_MATRIX, M, N, K) // 4 + 16, np.float32)
    pack(ROW_MAJOR, B_MATRIX, TRANS, M, N, K, 1.0, w.ctypes.data, K, packed.ctypes.data)

    def fwd():
        gemm(ROW_MAJOR, NO_TRANS, TRANS, M, N, K, 1.0, h.ctypes.data, K, w.ctypes.data, K,
             0.0, out.ctypes.data, N)  # fmt: skip

    def fwd_packed():
        compute(ROW_MAJOR, NO_TRANS, PACKED, M, N, K, h.ctypes.data, K, packed.ctypes.data,
                N, 0.0, out.ctypes.data, N)  # fmt: skip

    def bwd():
        gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, M, K, N, 1.0, g.ctypes.data, N, w.ctypes.data, K,
             0.0, gout.ctypes.data, K)  # fmt: skip

    def dw():
        gemm(ROW_MAJOR, TRANS, NO_TRANS, N, K, 2048, 1.0, gs.ctypes.data, N, xs.ctypes.data,
             K, 0.0, wout.ctypes.data, K)  # fmt: skip

    for fn in (fwd, fwd_packed):
        fn()
        np.testing.assert_allclose(out, h @ w.T, rtol=1e-3, atol=1e-3)
    bwd()
    np.testing.assert_allclose(gout, g @ w, rtol=1e-3, atol=1e-3)
    dw()
    np.testing.assert_allclose(wout, gs.T @ xs, rtol=1e-3, atol=1e-2)
    row = [cpu_us(lambda: h @ w.T, 2000), cpu_us(fwd, 2000), cpu_us(fwd_packed, 2000)]
    row += [cpu_us(lambda: g @ w, 2000), cpu_us(bwd, 2000)]
    return row + [cpu_us(lambda: gs.T @ xs, 50), cpu_us(dw, 50)]


if __name__ == "__main__":
    main(sys.argv[1])
