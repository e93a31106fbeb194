"""Where one char-LM training step spends its time: per phase, per op, and what is left (Python).

    OPENBLAS_NUM_THREADS=1 python benchmarks/profile_step.py [--hidden 64 512] [--steps 10]
    python benchmarks/profile_step.py --hidden 64 --cprofile     # also the top Python functions

The workload of benchmarks/lstm_lm.py (B=32, T=64, float32, SGD), fused (the layers' default:
the time loop as one scan node), with --per-step (the fused step as one node per time step) or
with --unfused. Every op's forward and backward, the fused groups' compiled loops and the
engine's deferred weight-gradient products are wrapped with timers that keep exclusive time (a
nested timer's time is taken out of its caller's), so that each array computation is counted
once. What no timer covers is Python: the plan replay, node creation, views, the engine's
bookkeeping: the step's time less the timed parts and less the timers' own cost (calibrated
on an empty function). Steps with and without timers alternate; both times are printed.
"""

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lstm_lm import LR, B, T, V, make_minigrad, minigrad_loss  # noqa: E402

import minigrad as mg  # noqa: E402
from minigrad import autograd  # noqa: E402
from minigrad.fusion import codegen  # noqa: E402

_own = defaultdict(float)  # key -> exclusive seconds
_calls = defaultdict(int)
_stack = []  # time spent in nested timers, per open timer
_originals = []  # (owner, attribute, original) to undo the wrapping


def _timed(key, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        _stack.append(0.0)
        try:
            return fn(*args, **kwargs)
        finally:
            spent = time.perf_counter() - start
            _own[key] += spent - _stack.pop()
            _calls[key] += 1
            if _stack:
                _stack[-1] += spent

    return wrapper


def _subclasses(cls):
    todo, seen = [cls], []
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in seen:
                seen.append(sub)
                todo.append(sub)
    return seen


def install() -> None:
    """Wrap the array work: every op's forward/backward, the fused loops, deferred products."""
    for cls in _subclasses(autograd.Function):
        for phase in ("forward", "backward"):
            if phase in cls.__dict__:
                _originals.append((cls, phase, cls.__dict__[phase]))
                setattr(cls, phase, _timed((cls.__name__, phase), cls.__dict__[phase]))
    dense = autograd.ProductGrad.dense
    _originals.append((autograd.ProductGrad, "dense", dense))
    autograd.ProductGrad.dense = _timed(("weight-gradient product", "backward"), dense)
    for name in ("forward_kernel", "backward_kernel"):
        make = getattr(codegen, name)
        _originals.append((codegen, name, make))
        phase = name.split("_")[0]
        setattr(
            codegen,
            name,
            lambda *a, make=make, phase=phase: _timed(("fused loop", phase), make(*a)),
        )


def uninstall() -> None:
    for owner, attribute, original in reversed(_originals):
        setattr(owner, attribute, original)
    _originals.clear()


def _timer_cost(n=20000) -> float:
    """Seconds a timer adds to one call, measured on a function that does nothing."""
    key = ("calibration", "forward")
    empty = _timed(key, lambda: None)
    start = time.perf_counter()
    for _ in range(n):
        empty()
    spent = (time.perf_counter() - start) / n
    _own.pop(key)
    _calls.pop(key)
    return spent


def _phases(model, tokens, targets):
    """One training step, timed by phase: forward, backward, update (seconds)."""
    t0 = time.perf_counter()
    loss = minigrad_loss(model, tokens, targets)
    t1 = time.perf_counter()
    for p in model.parameters():
        p.grad = None
    loss.backward()
    t2 = time.perf_counter()
    with mg.no_grad():
        for p in model.parameters():
            p.data -= LR * p.grad
    return t1 - t0, t2 - t1, time.perf_counter() - t2


_MATMULS = {"Linear", "MatMul", "weight-gradient product"}


def category(key) -> str:
    name, phase = key
    if name in _MATMULS:
        return f"matmuls (BLAS), {phase}"
    if name == "fused loop":
        return f"fused gate loops (Numba), {phase}"
    if name == "Scan":
        return f"scan node's own loop (Python, copies), {phase}"
    return f"other ops' arrays, {phase} ({name})"


def profile(H, steps, fuse, scan=True):
    model, _ = make_minigrad("lstm", H, np.float32, fuse=fuse, scan=scan)
    rng = np.random.default_rng(0)
    tokens, targets = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    for _ in range(3):  # trace, compile, warm caches
        _phases(model, tokens, targets)
    # A second model, so that its fused kernels are created (and wrapped) under install().
    timed_model, _ = make_minigrad("lstm", H, np.float32, fuse=fuse, scan=scan)
    install()
    _phases(timed_model, tokens, targets)
    uninstall()
    _own.clear()
    _calls.clear()
    plain, timed = [], []
    for _ in range(steps):  # alternating, so that machine noise hits both alike
        plain.append(_phases(model, tokens, targets))
        install()
        timed.append(_phases(timed_model, tokens, targets))
        uninstall()
    # Means, not medians: the parts are sums over the steps, so the total must be too.
    plain, timed = np.mean(plain, axis=0), np.mean(timed, axis=0)
    parts = defaultdict(float)
    calls = defaultdict(int)
    for key, seconds in _own.items():
        parts[category(key)] += seconds / steps
        calls[category(key)] += _calls[key] // steps
    update = timed[2]
    arrays = sum(parts.values())
    total = float(timed.sum())
    rows = sorted(parts.items(), key=lambda kv: -kv[1])
    rows.append(("SGD update (NumPy)", update))
    # Python is what the timers left, less their own cost (calibrated on an empty function).
    python = total - arrays - update - sum(calls.values()) * _timer_cost()
    rows.append(("Python: the engine, plan replay, nodes, views (the rest)", python))
    return {
        "plain": float(plain.sum()),
        "total": total,
        "rows": rows,
        "calls": calls,
        "python": python,
    }


def report(H, path, r) -> None:
    print(
        f"\n### H={H}, {path}: {r['plain'] * 1e3:.1f} ms/step, {r['total'] * 1e3:.1f} ms with "
        "the timers (their cost is taken out of the Python row)\n"
    )
    print("| part | ms/step | share | calls/step |")
    print("|---|---|---|---|")
    for name, seconds in r["rows"]:
        n = r["calls"].get(name, "")
        print(f"| {name} | {seconds * 1e3:.2f} | {seconds / r['total']:.0%} | {n} |")
    print(f"\nPython per time step: {r['python'] / T * 1e6:.0f} us (T={T}).")


def top_python(H, fuse, steps, n=15, scan=True) -> None:
    model, _ = make_minigrad("lstm", H, np.float32, fuse=fuse, scan=scan)
    rng = np.random.default_rng(0)
    tokens, targets = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    for _ in range(3):
        _phases(model, tokens, targets)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(steps):
        _phases(model, tokens, targets)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(n)
    print(f"\ncProfile, H={H}, {steps} steps, own time (a compiled loop's time is its caller's):")
    print("\n".join(out.getvalue().splitlines()[6:]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 512])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--unfused", action="store_true", help="profile the fuse=False path")
    ap.add_argument("--unrolled", action="store_true", help="profile the scan=False path")
    ap.add_argument("--cprofile", action="store_true", help="also list top Python functions")
    args = ap.parse_args(argv)
    fuse, scan = not args.unfused, not args.unrolled
    path = "unrolled" if not scan else "scan, unfused" if not fuse else "scan, fused"
    for H in args.hidden:
        report(H, path, profile(H, args.steps, fuse, scan))
        if args.cprofile:
            top_python(H, fuse, args.steps, scan=scan)


if __name__ == "__main__":
    main()
