"""Import time of minigrad.kernels, and first-call (compile) time of each kernel.

    python benchmarks/startup.py             # prints tables; updates benchmarks/README.md

Each measurement runs in a fresh Python process. Compile times are taken twice with the same
temporary NUMBA_CACHE_DIR: first with an empty cache (Numba compiles), then in a second process
(Numba loads the machine code that the first one cached).
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from readme_section import write_section  # noqa: E402

SECTION = "## Import and compile time"

# Imports minigrad.kernels as part of the package ("package"), or straight from its files
# ("standalone", or as a fallback while the rest of minigrad, written concurrently, does not
# import). The standalone time is the kernel layer's own cost.
LOAD = f"""
import importlib.util, sys, time
sys.path.insert(0, {str(ROOT)!r})
t0 = time.perf_counter()
try:
    if MODE == "standalone":
        raise ImportError
    import minigrad.kernels as K
except Exception:
    p = {str(ROOT / "minigrad" / "kernels" / "__init__.py")!r}
    spec = importlib.util.spec_from_file_location(
        "minigrad_kernels", p, submodule_search_locations=[p.rsplit("/", 1)[0]])
    K = importlib.util.module_from_spec(spec)
    sys.modules["minigrad_kernels"] = K
    # Numba's cache records the module name: kernels compiled under this alias must not land
    # in the package's cache, or `import minigrad` would later load them and fail.
    import os, tempfile
    os.environ.setdefault(
        "NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "minigrad-kernels-alias"))
    spec.loader.exec_module(K)
t_import = time.perf_counter() - t0
"""

IMPORT_ONLY = LOAD + "print(t_import, 'numba' in sys.modules, K.__name__)"

BASELINE = """
import sys, time
t0 = time.perf_counter()
import {}
print(time.perf_counter() - t0)
"""

# First call of each kernel through its public function, Numba path forced, float32 then float64.
FIRST_CALLS = (
    "MODE = 'standalone'\n"
    + LOAD
    + """
import json
import numpy as np
out = {}
t = time.perf_counter()
K._compiled()
out["import Numba + kernel module"] = time.perf_counter() - t
for name in K.MIN_SIZE:
    K.MIN_SIZE[name] = 0
for dt in (np.float32, np.float64):
    g = np.linspace(-3, 3, 64, dtype=dt).reshape(8, 8)
    y = np.tanh(g)
    calls = {
        "index_add": lambda: K.index_add(np.zeros((5, 8), dt), np.arange(8) % 5, g),
        "tanh_backward": lambda: K.tanh_backward(g, y),
        "sigmoid_backward": lambda: K.sigmoid_backward(g, y),
        "relu_backward": lambda: K.relu_backward(g, y),
        "sigmoid": lambda: K.sigmoid(g),
        "sum_rows": lambda: K.sum_rows(g),
    }
    for name, call in calls.items():
        t = time.perf_counter()
        call()
        out[f"{name} {np.dtype(dt).name}"] = time.perf_counter() - t
print(json.dumps(out))
"""
)


def run(code, env=None, repeats=1):
    results = []
    for _ in range(repeats):
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **(env or {})},
        )
        results.append(proc.stdout.strip())
    return results


def measure(repeats):
    imports = {}  # mode: (median ms, Numba imported?), or None where the package fails
    for mode in ("standalone", "package"):
        runs = [line.split() for line in run(f"MODE = {mode!r}" + IMPORT_ONLY, repeats=repeats)]
        loaded_as = runs[0][2]
        if mode == "package" and loaded_as != "minigrad.kernels":
            imports[mode] = None
        else:
            ms = statistics.median(float(r[0]) for r in runs) * 1e3
            imports[mode] = (ms, runs[0][1] == "True")
    base = {
        name: statistics.median(float(t) for t in run(BASELINE.format(name), repeats=repeats)) * 1e3
        for name in ("numpy", "numba")
    }
    with tempfile.TemporaryDirectory() as cache:
        env = {"NUMBA_CACHE_DIR": cache}
        cold = json.loads(run(FIRST_CALLS, env)[0])
        warm = [json.loads(line) for line in run(FIRST_CALLS, env, repeats=3)]
    warm = {k: statistics.median(w[k] for w in warm) for k in cold}
    return imports, base, cold, warm


def report(imports, base, cold, warm, repeats):
    def row(what, result):
        if result is None:
            return f"| {what} | (does not import yet) | |"
        return f"| {what} | {result[0]:.0f} | {'yes' if result[1] else 'no'} |"

    lines = [
        f"| import, fresh process (median of {repeats}) | ms | imports Numba |",
        "|---|---:|---|",
        row("minigrad/kernels alone, from its files (NumPy included)", imports["standalone"]),
        row("`import minigrad.kernels` (imports package `minigrad` first)", imports["package"]),
        f"| `import numpy` alone | {base['numpy']:.0f} | no |",
        f"| `import numba` alone (NumPy included) | {base['numba']:.0f} | yes |",
        "",
        "| first call (Numba path forced, tiny arrays) | cold cache (ms) | warm cache (ms) |",
        "|---|---:|---:|",
    ]
    first = next(k for k in cold if k != "import Numba + kernel module")
    for key in cold:
        label = f"{key} (the first Numba call: Numba's one-time setup)" if key == first else key
        lines.append(f"| {label} | {cold[key] * 1e3:.0f} | {warm[key] * 1e3:.1f} |")
    total_cold = sum(cold.values()) * 1e3
    total_warm = sum(warm.values()) * 1e3
    lines.append(f"| **all of the above** | **{total_cold:.0f}** | **{total_warm:.0f}** |")
    return lines


def write_readme(lines, command, load):
    body = "\n".join(
        [
            SECTION,
            "",
            f"Command: `{command}` (from the repository root); Python "
            f"{platform.python_version()}, {platform.machine()}, shared two-core machine",
            f"(1-minute load average {load:.1f} when the run started).",
            'Every number comes from a fresh process. "Cold" is the first process with an',
            'empty temporary NUMBA_CACHE_DIR (Numba compiles and writes the cache); "warm" is',
            "the median of three later processes with the same directory (Numba loads the cached",
            "code). A kernel compiles once per dtype; each first call is timed on its own.",
            "",
            *lines,
            "",
        ]
    )
    write_section(SECTION, body)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=11, help="processes per import median")
    p.add_argument("--no-write", action="store_true", help="do not update benchmarks/README.md")
    args = p.parse_args()
    load = os.getloadavg()[0]
    lines = report(*measure(args.repeats), args.repeats)
    print("\n".join(lines))
    if not args.no_write:
        command = " ".join(["python benchmarks/startup.py", *sys.argv[1:]])
        write_readme(lines, command, load)


if __name__ == "__main__":
    main()
