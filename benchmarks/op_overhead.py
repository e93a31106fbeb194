"""Per-op overhead: one small op through minigrad (forward + backward) against bare NumPy.

    python benchmarks/op_overhead.py [--repeat 20000]

For each op, the NumPy column does the same arithmetic as minigrad's forward and backward
together (e.g. for mul: x*y, then g*y and g*x), so the difference is what the framework costs:
node creation, dispatch, the engine's bookkeeping. Shapes are an LSTM gate block at B=32, H=64.
"""

import argparse
import time

import numpy as np

import minigrad as mg


def _median_us(fn, repeat: int) -> float:
    for _ in range(max(10, repeat // 20)):
        fn()
    rounds = []
    per_round = max(1, repeat // 10)
    for _ in range(10):
        t = time.perf_counter()
        for _ in range(per_round):
            fn()
        rounds.append((time.perf_counter() - t) / per_round)
    return float(np.median(rounds) * 1e6)


def cases(shape=(32, 64)):
    rng = np.random.default_rng(0)
    a_np = rng.standard_normal(shape).astype(np.float32)
    b_np = rng.standard_normal(shape).astype(np.float32)
    w_np = rng.standard_normal((shape[1], shape[1])).astype(np.float32)
    g = np.ones(shape, np.float32)
    a = mg.tensor(a_np, requires_grad=True)
    b = mg.tensor(b_np, requires_grad=True)
    w = mg.tensor(w_np, requires_grad=True)

    def run(make):
        def step():
            make().sum().backward()

        return step

    yield "add", run(lambda: a + b), lambda: (a_np + b_np, g.copy(), g.copy())
    yield "mul", run(lambda: a * b), lambda: (a_np * b_np, g * b_np, g * a_np)
    yield "tanh", run(lambda: a.tanh()), lambda: (lambda y: g * (1 - y * y))(np.tanh(a_np))
    yield (
        "sigmoid",
        run(lambda: a.sigmoid()),
        lambda: (lambda y: g * y * (1 - y))(0.5 * (1 + np.tanh(0.5 * a_np))),
    )
    yield "matmul", run(lambda: a @ w), lambda: (a_np @ w_np, g @ w_np.T, a_np.T @ g)
    yield "getitem a[3]", run(lambda: a[3]), lambda: (a_np[3], np.zeros(shape, np.float32))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeat", type=int, default=20000)
    args = p.parse_args()
    print(
        "| op (32x64 float32) | minigrad fwd+bwd (us) | NumPy same arithmetic (us) "
        "| overhead (us) |"
    )
    print("|---|---|---|---|")
    for name, ours, bare in cases():
        t_ours = _median_us(ours, args.repeat)
        t_bare = _median_us(bare, args.repeat)
        print(f"| {name} | {t_ours:.1f} | {t_bare:.1f} | {t_ours - t_bare:.1f} |")
    print("\n(minigrad's column includes the .sum() and backward() the NumPy column omits)")


if __name__ == "__main__":
    main()
