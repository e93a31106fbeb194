"""What mg.fuse buys per time step, and what its float32 transcendentals cost against NumPy's.

    OPENBLAS_NUM_THREADS=1 python benchmarks/fusion.py [--hidden 64 128 256 512] [--repeat 300]

1. One step of each cell of models/cells.py (B=32, float32), forward and backward through the
   step alone: as written (one node per op) against `mg.fuse` of the same function (one node:
   the matmul, the slices and the gate arithmetic). "nodes": graph nodes, unfused -> fused,
   including the 2-4 of the loss (sums of the outputs).
2. The vectorisable float32 exp/tanh/sigmoid of minigrad/fusion/scalar.py in a Numba loop
   against NumPy's ufuncs (whose SIMD code Numba cannot call), at 32 x 512 elements, and
   their largest error in float32 ulps against float64 NumPy rounded to float32.
"""

import argparse
import time

import numba
import numpy as np

import minigrad as mg
from minigrad import graph
from minigrad.fusion.scalar import exp32, sigmoid32, tanh32
from models.cells import gru_step, lstm_step, rnn_step

B = 32


def _cells(H, rng):
    def t(*shape, grad=True):
        data = rng.standard_normal(shape).astype(np.float32) * 0.5
        return mg.tensor(data, requires_grad=grad)

    return {
        "lstm": (lstm_step, (t(B, 4 * H, grad=False), t(B, H), t(B, H), t(4 * H, H))),
        "gru": (gru_step, (t(B, 3 * H, grad=False), t(B, H), t(3 * H, H), t(3 * H))),
        "rnn": (rnn_step, (t(B, H, grad=False), t(B, H), t(H, H))),
    }


def _step_time(fn, args, repeat):
    def once():
        out = fn(*args)
        outs = out if isinstance(out, tuple) else (out,)
        total = outs[0].sum()
        for o in outs[1:]:
            total = total + o.sum()
        total.backward()
        return total

    once()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        once()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e6), graph.stats(once())["nodes"]


@numba.njit(error_model="numpy")
def _loop(f, x, out):
    for i in range(x.size):
        out[i] = f(x[i])


def _ulps(got, x64, ref):
    want = ref(x64).astype(np.float32)
    spacing = np.spacing(np.abs(want)).astype(np.float64)
    return float(np.max(np.abs(got.astype(np.float64) - want) / spacing))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--hidden", nargs="+", type=int, default=[64, 128, 256, 512])
    p.add_argument("--repeat", type=int, default=300)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)

    print("| cell | H | unfused us/step | fused us/step | unfused / fused | nodes |")
    print("|---|---|---|---|---|---|")
    for H in args.hidden:
        for name, (fn, inputs) in _cells(H, rng).items():
            plain, n_plain = _step_time(fn, inputs, args.repeat)
            fused, n_fused = _step_time(mg.fuse(fn), inputs, args.repeat)
            print(
                f"| {name} | {H} | {plain:.1f} | {fused:.1f} | {plain / fused:.2f} | "
                f"{n_plain} -> {n_fused} |",
                flush=True,
            )

    x = rng.standard_normal(B * 512).astype(np.float32) * 4
    wide = np.concatenate([np.linspace(-110, 95, 200_001), rng.standard_normal(200_000) * 3])
    wide32 = wide.astype(np.float32)
    refs = {
        "exp": (exp32, np.exp, np.exp),
        "tanh": (tanh32, np.tanh, np.tanh),
        "sigmoid": (sigmoid32, lambda v: 1 / (1 + np.exp(-v)), lambda v: 1 / (1 + np.exp(-v))),
    }
    print()
    print("| function (32 x 512 float32) | Numba loop us | NumPy us | max error (ulps, -110..95) |")
    print("|---|---|---|---|")
    with np.errstate(over="ignore"):
        for name, (scalar, numpy_fn, ref64) in refs.items():
            out = np.empty_like(x)
            _loop(scalar, x, out)
            loop = min(_timeit(_loop, scalar, x, out) for _ in range(5))
            ufunc = min(_timeit(numpy_fn, x) for _ in range(5))
            got = np.empty_like(wide32)
            _loop(scalar, wide32, got)
            finite = np.isfinite(ref64(wide32.astype(np.float64)).astype(np.float32))
            err = _ulps(got[finite], wide32[finite].astype(np.float64), ref64)
            print(f"| {name} | {loop:.1f} | {ufunc:.1f} | {err:.1f} |")


def _timeit(fn, *args, n=2000):
    t = time.perf_counter()
    for _ in range(n):
        fn(*args)
    return (time.perf_counter() - t) / n * 1e6


if __name__ == "__main__":
    main()
