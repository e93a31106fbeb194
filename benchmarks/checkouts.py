"""A change's speed, before and after, in one run: the char-LM training step of two checkouts.

    python benchmarks/checkouts.py /path/to/other/checkout            # every cell, H = 64..512
    python benchmarks/checkouts.py /path/to/other --cells lstm --hidden 256 --rounds 5

Each checkout's own `benchmarks/lstm_lm.py` builds its default model and times its step
(`make_minigrad`, `minigrad_step`: Embedding -> cell -> Linear, B=32, T=64, float32, SGD) in a
process of its own, importing only that checkout's minigrad; the two alternate for --rounds
rounds, so that machine noise falls on both alike. Printed: the median of the rounds'
medians, ms per step, and after / before. Make the other checkout with `git worktree add`.
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
times = []
for _ in range(repeat):
    t = time.perf_counter()
    L.minigrad_step(model, tokens, targets)
    times.append(time.perf_counter() - t)
print(float(np.median(times)) * 1e3)
"""


def time_checkout(root: Path, cell: str, H: int, repeat: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", WORKER, cell, str(H), str(repeat)],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


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
    lines = ["| cell | H | before ms | after ms | after / before |", "|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for cell in args.cells:
        for H in args.hidden:
            runs = {"before": [], "after": []}
            for _ in range(args.rounds):
                runs["before"].append(time_checkout(args.before, cell, H, args.repeat))
                runs["after"].append(time_checkout(HERE, cell, H, args.repeat))
            b, a = (float(np.median(runs[k])) for k in ("before", "after"))
            lines.append(f"| {cell} | {H} | {b:.1f} | {a:.1f} | {a / b:.2f} |")
            print(lines[-1], flush=True)
    return lines


if __name__ == "__main__":
    main()
