"""Start-up: seconds from `python examples/char_lm.py` to its first finished training step.

    python benchmarks/first_step.py [--runs 3]

Cold: an empty Numba cache (a fresh NUMBA_CACHE_DIR, also MINIGRAD_CACHE_DIR for the fused
kernels), so every kernel the first step uses is
compiled. Warm: the same cache directory again, so Numba loads the compiled code. Also the time
of `import minigrad` alone. Each figure is the median of --runs fresh processes.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def to_first_step(env: dict, out: str) -> float:
    cmd = [sys.executable, str(ROOT / "examples" / "char_lm.py"), "--steps", "1",
           "--sample-len", "1", "--out", out]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    elapsed = None
    for line in proc.stdout:
        if line.startswith("first training step finished"):
            elapsed = time.perf_counter() - t0
            proc.kill()
            break
    proc.wait()
    if elapsed is None:
        raise RuntimeError("char_lm.py ended without finishing a training step")
    return elapsed


def import_time(env: dict) -> float:
    code = "import time; t = time.perf_counter(); import minigrad; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=ROOT)  # fmt: skip
    return float(out.stdout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    cold, warm, imports = [], [], []
    with tempfile.TemporaryDirectory() as out:
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as cache:
                env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
                env["MINIGRAD_CACHE_DIR"] = cache  # the fused kernels' generated sources
                cold.append(to_first_step(env, out))
                warm.append(to_first_step(env, out))
                imports.append(import_time(env))
    print(f"| measurement | seconds (median of {args.runs}) |")
    print("|---|---|")
    print(f"| `import minigrad` | {statistics.median(imports):.2f} |")
    print(f"| start to first training step, cold Numba cache | {statistics.median(cold):.2f} |")
    print(f"| start to first training step, warm Numba cache | {statistics.median(warm):.2f} |")


if __name__ == "__main__":
    main()
