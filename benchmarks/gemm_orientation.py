"""Which way round BLAS should run a recurrent step's product x @ W^T (x: a few batch rows,
W: (out, in)): as written, or as W @ x^T whose result is then copied transposed into place.

    OPENBLAS_NUM_THREADS=1 python benchmarks/gemm_orientation.py
    OPENBLAS_NUM_THREADS=1 python benchmarks/gemm_orientation.py --rows 32 --dtype float64

Prints, per shape, the CPU time of each form (median of --rounds rounds of --repeat calls) and
their ratio (> 1: the flipped form is faster). minigrad.kernels.linear flips where this table
showed it faster on the machine it was written on (float32, 8-32 rows, >= 256 output columns);
NumPy's BLAS here is OpenBLAS, and another BLAS may prefer other shapes.
"""

import argparse
import time

import numpy as np

SHAPES = [(256, 64), (384, 128), (768, 256), (1024, 256), (1536, 512), (2048, 512), (65, 64)]


def cpu_us(fn, repeat, rounds):
    for _ in range(20):
        fn()
    times = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(repeat):
            fn()
        times.append((time.process_time() - start) / repeat * 1e6)
    return float(np.median(times))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 8, 16, 32, 64, 128])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--repeat", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"{args.dtype}, CPU microseconds per product")
    print("| rows | out | in | x @ W.T | (W @ x.T).T, copied | ratio |")
    print("|---|---|---|---|---|---|")
    for rows in args.rows:
        for out, k in SHAPES:
            x = rng.standard_normal((rows, k)).astype(args.dtype)
            w = rng.standard_normal((out, k)).astype(args.dtype)
            plain = cpu_us(lambda x=x, w=w: x @ w.T, args.repeat, args.rounds)
            flipped = cpu_us(
                lambda x=x, w=w: np.ascontiguousarray((w @ x.T).T), args.repeat, args.rounds
            )
            print(f"| {rows} | {out} | {k} | {plain:.1f} | {flipped:.1f} | {plain / flipped:.2f} |")


if __name__ == "__main__":
    main()
