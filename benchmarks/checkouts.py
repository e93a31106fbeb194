"""A change's speed, before and after, in one run: the char-LM training step of two checkouts.

    python benchmarks/checkouts.py /path/to/other/checkout            # every cell, H = 64..512
    python benchmarks/checkouts.py /path/to/other --cells lstm --hidden 256 --rounds 5

Each checkout's own `benchmarks/lstm_lm.py` builds its default model and times its step
(`make_minigrad`, `minigrad_step`: Embedding -> cell -> Linear, B=32, T=64, float32, SGD) in a
process of its own, importing only that checkout's minigrad; the two alternate for --rounds
rounds, so that machine noise falls on both alike. Printed: the median of the rounds'
medians, ms per step, wall-clock and CPU time of the process (with OPENBLAS_NUM_THREADS=1 the
CPU time is what the step costs, whatever else loads a shared machine), and after / before.
Make the other checkout with `git worktree add <dir> <commit>`.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent

WORKER = """
import sys, time
import numpy as np
sys.path.insert(0, "benchmarks")
import lstm_lm as L
import minigrad as mg
cell, H, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
tokens, targets = rng.integers(0, L.V, (L.T, L.B)), rng.integers(0, L.V, (L.T, L.B))
model, _ = L.make_minigrad(cell, H, mg.float32)
for _ in range(3):
    L.minigrad_step(model, tokens, targets)
wall, cpu = [], []
for _ in range(repeat):
    t, c = time.perf_counter(), time.process_time()
    L.minigrad_step(model, tokens, targets)
    wall.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
print(float(np.median(wall)) * 1e3, float(np.median(cpu)) * 1e3)
"""


def time_checkout(root: Path, cell: str, H: int, repeat: int) -> tuple:
    """(wall ms, CPU ms) per step, medians over `repeat` steps in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", WORKER, cell, str(H), str(repeat)],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    wall, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("before", type=Path, help="the other checkout (the 'before')")
    p.add_argument("--cells", nargs="+", default=["lstm", "gru", "rnn"])
    p.add_argument("--hidden", nargs="+", type=int, default=[64, 128, 256, 512])
    p.add_argument("--rounds", type=int, default=3, help="alternating processes per checkout")
    p.add_argument("--repeat", type=int, default=10, help="timed steps per process (median)")
    args = p.parse_args(argv)
    if not (args.before / "minigrad").is_dir():
        sys.exit(f"checkouts.py: {args.before} holds no minigrad/ package")
    lines = [
        "| cell | H | before ms | after ms | after / before | before CPU ms | after CPU ms "
        "| after / before (CPU) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for cell in args.cells:
        for H in args.hidden:
            runs = {"before": [], "after": []}
            for _ in range(args.rounds):
                runs["before"].append(time_checkout(args.before, cell, H, args.repeat))
                runs["after"].append(time_checkout(HERE, cell, H, args.repeat))
            (b, bc), (a, ac) = (np.median(runs[k], axis=0) for k in ("before", "after"))
            lines.append(
                f"| {cell} | {H} | {b:.1f} | {a:.1f} | {a / b:.2f} | {bc:.1f} | {ac:.1f} "
                f"| {ac / bc:.2f} |"
            )
            print(lines[-1], flush=True)
    return lines


if __name__ == "__main__":
    main()
