"""Time each minigrad kernel's Numba path against the NumPy it replaces, at the RNN's shapes.

    python benchmarks/kernels.py --float64   # the table (B=32, H in 64..512); updates README.md
    python benchmarks/kernels.py --sweep     # crossover sizes, to set kernels.MIN_SIZE

Both dispatch paths are timed through the public function (MIN_SIZE forced to 0 or to
infinity), so the wrapper's overhead counts. They and the plain NumPy reference are timed in
turns in one run and their medians compared: the machine is shared and noisy, so only ratios
within one run mean anything.
"""

import argparse
import importlib.util
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import time
from functools import partial

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from readme_section import write_section  # noqa: E402

SECTION = "## Kernels vs NumPy"
HS = [64, 128, 256, 512]


def load_kernels():
    """minigrad.kernels and its reference module, even while the rest of minigrad does not
    import (it is written concurrently): then straight from the files."""
    sys.path.insert(0, str(ROOT))
    try:
        import minigrad.kernels as kernels
        import minigrad.kernels.reference as reference
    except Exception:
        path = ROOT / "minigrad" / "kernels" / "__init__.py"
        spec = importlib.util.spec_from_file_location(
            "minigrad_kernels", path, submodule_search_locations=[str(path.parent)]
        )
        kernels = importlib.util.module_from_spec(spec)
        sys.modules["minigrad_kernels"] = kernels
        spec.loader.exec_module(kernels)
        import minigrad_kernels.reference as reference
    return kernels, reference


K, R = load_kernels()


def timeit(fns, repeats, budget=2e-4):
    """Median seconds per call of each function, timed in turns (a, b, c, a, b, c, ...)."""
    for f in fns.values():  # warm up: compile, fault pages in
        f()
        f()
    t = time.perf_counter()
    next(iter(fns.values()))()
    number = max(1, int(budget / max(time.perf_counter() - t, 1e-7)))  # calls per sample
    samples = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            for _ in range(number):
                f()
            samples[k].append((time.perf_counter() - t) / number)
    return {k: float(np.median(v)) for k, v in samples.items()}


def forced(name, path, call):
    """call, with kernel `name` forced onto `path` ('numba' or 'numpy') whatever the size."""
    value = 0 if path == "numba" else math.inf

    def run():
        saved = K.MIN_SIZE[name], K.MAX_SIZE[name]
        K.MIN_SIZE[name], K.MAX_SIZE[name] = value, math.inf
        try:
            return call()
        finally:
            K.MIN_SIZE[name], K.MAX_SIZE[name] = saved

    return run


def case(name, label, size, *args):
    """A row of the table: reference vs the public function forced down each path."""
    call = partial(getattr(K, name), *args)
    return {
        "name": name,
        "label": label,
        "size": size,
        "ref": partial(getattr(R, name), *args),
        "numpy": forced(name, "numpy", call),
        "numba": forced(name, "numba", call),
    }


_addmm_numba = None


def addmm_numba(c, a, b):
    """The kernel measured for addmm and not kept: np.dot (SciPy's BLAS), then + c, fused."""
    global _addmm_numba
    if _addmm_numba is None:
        from numba import njit

        @njit(cache=True, error_model="numpy")
        def kernel(c, a, b):
            out = np.dot(a, b)
            for i in range(out.shape[0]):
                for k in range(out.shape[1]):
                    out[i, k] += c[k]
            return out

        _addmm_numba = kernel
    return _addmm_numba(c, a, b)


def addmm_shapes():
    """Recurrent step (32, H) @ (H, 4H); input projection of all T*B rows, (2048, 64) @ (64, 4H);
    output layer (2048, 512) @ (512, 65); and a toy size."""
    step = [(32, h, 4 * h) for h in HS]
    projection = [(2048, 64, 4 * h) for h in HS]
    return step + projection + [(2048, 512, 65), (4, 8, 16)]


def addmm_operands(rng, m, k, n, dt):
    a = rng.standard_normal((m, k)).astype(dt)
    # Weights are stored (out, in) and used transposed, so b is F-contiguous, as in a layer.
    b = rng.standard_normal((n, k)).astype(dt).T
    c = rng.standard_normal(n).astype(dt)
    return c, a, b


def cases(dtypes):
    rng = np.random.default_rng(0)
    for dt in dtypes:
        tag = np.dtype(dt).name
        # Embedding gradient: one step's 32 tokens, and all T*B = 2048 of a batch.
        for m in (32, 2048):
            out = np.zeros((65, 64), dt)
            idx = rng.integers(0, 65, m)
            src = rng.standard_normal((m, 64)).astype(dt)
            yield case("index_add", f"{m}x64 into 65x64 {tag}", m, out, idx, src)
        for h in HS:
            shape = (32, 4 * h)
            label = f"32x{4 * h} {tag}"
            g = rng.standard_normal(shape).astype(dt)
            x = rng.standard_normal(shape).astype(dt)
            yield case("tanh_backward", label, g.size, g, np.tanh(x))
            yield case("sigmoid_backward", label, g.size, g, 1 / (1 + np.exp(-x)))
            yield case("relu_backward", label, g.size, g, x)
            yield case("sigmoid", label, x.size, 4 * x)
        # Bias gradients: one step (32 rows), all T*B rows, the output layer's 65 columns.
        for rows, cols in [(32, 256), (32, 2048), (2048, 65)] + [(2048, 4 * h) for h in HS[1:]]:
            g = rng.standard_normal((rows, cols)).astype(dt)
            yield case("sum_rows", f"{rows}x{cols} {tag}", g.size, g)
        for m, k, n in addmm_shapes():
            c, a, b = addmm_operands(rng, m, k, n, dt)
            yield {
                "name": "addmm",
                "label": f"({m}x{k})@({k}x{n})+bias {tag}",
                "size": None,  # no Numba path: see the addmm table
                "ref": partial(R.addmm, c, a, b),
                "numpy": partial(K.addmm, c, a, b),
            }


def table(dtypes, repeats):
    rows = [
        "| kernel | shape | NumPy reference (us) | NumPy path (us) | Numba path (us) "
        "| Numba vs reference | Numba vs NumPy path | dispatcher uses |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for c in cases(dtypes):
        name = c["name"]
        t = timeit({k: c[k] for k in ("ref", "numpy", "numba") if k in c}, repeats)
        cells = [c["name"], c["label"], f"{t['ref'] * 1e6:.1f}", f"{t['numpy'] * 1e6:.1f}"]
        if "numba" in c:
            cells += [
                f"{t['numba'] * 1e6:.1f}",
                f"{t['ref'] / t['numba']:.2f}x",
                f"{t['numpy'] / t['numba']:.2f}x",
                "Numba" if K.MIN_SIZE[name] <= c["size"] <= K.MAX_SIZE[name] else "NumPy",
            ]
        else:
            cells += ["-", "-", "-", "NumPy"]
        rows.append("| " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    return rows


def addmm_alternation(repeats):
    """Per shape: the NumPy path twice in a row, then the NumPy path and the Numba kernel."""
    rng = np.random.default_rng(1)
    result = {}
    for m, k, n in addmm_shapes():
        args = addmm_operands(rng, m, k, n, np.float32)
        numpy_path, numba = partial(K.addmm, *args), partial(addmm_numba, *args)
        pair_np = timeit({"x": lambda f=numpy_path: (f(), f())}, repeats)["x"]
        pair_nb = timeit({"x": lambda f=numpy_path, g=numba: (f(), g())}, repeats)["x"]
        result[f"{m},{k},{n}"] = (pair_np, pair_nb)
    return result


def addmm_table(repeats):
    """The dropped Numba addmm against the NumPy path: alone, and alternating with NumPy."""
    # Alternation is measured with OpenBLAS's default threads, whatever --blas-threads says:
    # the thread pools are what it is about.
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    cmd = [sys.executable, __file__, "--alternation-json", "--repeats", str(repeats)]
    alternation = json.loads(subprocess.run(cmd, env=env, capture_output=True, check=True).stdout)
    rows = [
        "| shape (float32) | NumPy path (us) | Numba kernel (us) | Numba vs NumPy "
        "| NumPy path, then NumPy path (us) | NumPy path, then Numba kernel (us) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rng = np.random.default_rng(1)
    for m, k, n in addmm_shapes():
        args = addmm_operands(rng, m, k, n, np.float32)
        alone_np = timeit({"x": partial(K.addmm, *args)}, repeats)["x"]
        alone_nb = timeit({"x": partial(addmm_numba, *args)}, repeats)["x"]
        pair_np, pair_nb = alternation[f"{m},{k},{n}"]
        rows.append(
            f"| ({m}x{k})@({k}x{n})+bias | {alone_np * 1e6:.1f} | {alone_nb * 1e6:.1f} "
            f"| {alone_np / alone_nb:.2f}x | {pair_np * 1e6:.1f} | {pair_nb * 1e6:.1f} |"
        )
        print(rows[-1], flush=True)
    return rows


def sigmoid_formulas(repeats):
    """The kernel against the fastest NumPy formula, which is not accurate enough to use."""
    rows = [
        "| sigmoid at 32x2048 | kernel (us) | 0.5 * (1 + tanh(x / 2)) in NumPy (us) "
        "| kernel's max relative error | tanh formula's max relative error |",
        "|---|---:|---:|---:|---:|",
    ]

    def tanh_formula(x):
        t = np.multiply(x, 0.5)
        np.tanh(t, out=t)
        t += 1
        t *= 0.5
        return t

    rng = np.random.default_rng(2)
    for dt in (np.float32, np.float64):
        x = (4 * rng.standard_normal((32, 2048))).astype(dt)
        t = timeit({"k": partial(K.sigmoid, x), "t": partial(tanh_formula, x)}, repeats)
        wide = np.float64 if dt == np.float32 else np.longdouble
        exact = 1 / (1 + np.exp(-x.astype(wide)))
        eps = np.finfo(dt).eps

        def error(y, exact=exact, eps=eps):
            e = float(np.max(np.abs(y - exact) / exact))
            return f"{e:.1e} ({e / eps:.0f} ulps)"

        rows.append(
            f"| {np.dtype(dt).name} | {t['k'] * 1e6:.1f} | {t['t'] * 1e6:.1f} "
            f"| {error(K.sigmoid(x))} | {error(tanh_formula(x))} |"
        )
        print(rows[-1], flush=True)
    return rows


def sweep(repeats):
    """NumPy path vs Numba path over sizes, to find where the Numba path starts to win."""
    rng = np.random.default_rng(0)

    def pair(name, call):
        paths = {"numpy": forced(name, "numpy", call), "numba": forced(name, "numba", call)}
        t = timeit(paths, repeats)
        return f"{t['numpy'] * 1e6:.1f}/{t['numba'] * 1e6:.1f}"

    for dt in (np.float32, np.float64):
        print(f"\n{np.dtype(dt).name}: size: NumPy path us / Numba path us")
        for name in ["tanh_backward", "sigmoid_backward", "relu_backward", "sigmoid"]:
            line = []
            for n in [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144]:
                g = rng.standard_normal(n).astype(dt)
                args = (g,) if name == "sigmoid" else (g, np.tanh(g))
                line.append(f"{n}: {pair(name, partial(getattr(K, name), *args))}")
            print(f"  {name}:", ", ".join(line), flush=True)
        for d in (64, 256, 2048):
            sums, scatters = [], []
            for m in [1, 2, 4, 8, 32, 128, 2048]:
                g = rng.standard_normal((m, d)).astype(dt)
                idx = rng.integers(0, 65, m)
                sums.append(f"{m}: {pair('sum_rows', partial(K.sum_rows, g))}")
                add = partial(K.index_add, np.zeros((65, d), dt), idx, g)
                scatters.append(f"{m}: {pair('index_add', add)}")
            print(f"  sum_rows (m x {d}):", ", ".join(sums), flush=True)
            print(f"  index_add (m x {d} into 65 x {d}):", ", ".join(scatters), flush=True)


NOTES = """\
How to read it:
- The elementwise backward kernels make one vectorised pass where NumPy makes three or four,
  each with a temporary: about 2x at the gate sizes, more at the larger ones.
- `sigmoid` is NumPy's exp (vectorised, unlike exp inside `@njit`) between two small fused
  passes computing (1 or e) / (1 + e) with e = exp(-|x|): no overflow, and a few ulps of
  relative error everywhere. Its "NumPy path" is the same formula in NumPy ufuncs; the
  reference uses np.where, which is slow on unpredictable masks. The faster NumPy formula
  0.5 * (1 + tanh(x / 2)) wins in float32 but has no relative accuracy left for very negative
  x (in float32 it returns 0 or multiples of 2^-24 there; table above), so it is not used.
- `index_add` replaces np.add.at, which is slow (per-element dispatch) for row scatters.
- `sum_rows` adds four rows per sweep in registers, in NumPy's order (results bit-identical).
  Past 2M elements both are bound by memory bandwidth and the kernel measured 0.7x-1.35x of
  NumPy depending on shape and run, so the dispatcher leaves those to NumPy (MAX_SIZE); rows
  of 8 MB and more vary between runs on this machine.
- `addmm` has no Numba path. np.dot inside `@njit` calls SciPy's OpenBLAS, a second copy of
  OpenBLAS beside NumPy's; on two cores the two libraries' spinning thread pools fight whenever a
  program alternates between them, as a model does, and each switch costs milliseconds (last
  column: compare the small shapes). Alone, the kernel loses at the recurrent step's shapes
  (M = 32) and at best ties at M = 2048; at toy sizes it saves about 1 us of call overhead,
  not worth a second BLAS in the process. The NumPy path adds c in place into the product,
  which beats `c + a @ b` at large outputs by not allocating (and page-faulting) a second one.
- Matmul rows are the noisiest. With OpenBLAS's two threads on this shared machine, a product
  often stalls for a multiple of the 4 ms scheduler tick (hence --blas-threads 1 for the
  table); and outputs of 8-16 MB (2048 x 1024 and 2048 x 2048) are fresh memory at every call,
  so page faults make those rows vary several-fold between runs. The other kernels' ratios
  are stable from run to run.
"""


def write_readme(lines, command, load, threads):
    body = "\n".join(
        [
            SECTION,
            "",
            f"Command: `{command}` (from the repository root). Python",
            f"{platform.python_version()}, NumPy {np.__version__}, {platform.machine()}, shared",
            f"two-core machine (1-minute load average {load:.1f} when the run started), OpenBLAS",
            f"threads: {threads or 'default (2)'}. Absolute times drift between runs; compare",
            "within a row. Median time per call; the columns of a row are timed in turns in one",
            'run. "NumPy reference" is the plain expression (minigrad/kernels/reference.py);',
            '"NumPy path" and "Numba path" are the public function forced down each dispatch path',
            "(wrapper included). The dispatcher's size limits are `minigrad.kernels.MIN_SIZE` and",
            "`MAX_SIZE`, set from `python benchmarks/kernels.py --sweep` and this table.",
            "",
            *lines,
            "",
            NOTES,
        ]
    )
    write_section(SECTION, body)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sweep", action="store_true", help="print crossover sizes instead")
    p.add_argument("--repeats", type=int, default=41, help="samples per median (default 41)")
    p.add_argument("--float64", action="store_true", help="also time float64")
    p.add_argument(
        "--blas-threads",
        type=int,
        help="OpenBLAS threads for this run; 1 keeps matmul timings stable on a busy machine",
    )
    p.add_argument("--no-write", action="store_true", help="do not update benchmarks/README.md")
    p.add_argument("--alternation-json", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    threads = str(args.blas_threads) if args.blas_threads else None
    if threads and os.environ.get("OPENBLAS_NUM_THREADS") != threads:
        # OpenBLAS reads its thread count once, when NumPy loads it: start again with it set.
        env = {**os.environ, "OPENBLAS_NUM_THREADS": threads}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    if args.alternation_json:
        print(json.dumps(addmm_alternation(args.repeats)))
        return
    if args.sweep:
        sweep(args.repeats)
        return
    load = os.getloadavg()[0]
    lines = table((np.float32, np.float64) if args.float64 else (np.float32,), args.repeats)
    extra = [
        "",
        "sigmoid: the kernel against the fastest NumPy formula (timed in turns; error relative",
        "to a float64 / long double evaluation, over x ~ 4 N(0, 1)):",
        "",
        *sigmoid_formulas(args.repeats),
        "",
        "addmm: the Numba kernel measured and dropped (np.dot inside `@njit`, then + c), each",
        "path timed alone; then, in a process with OpenBLAS's default threads, each alternating",
        "with the NumPy path as it would in a model:",
        "",
        *addmm_table(args.repeats),
    ]
    if not args.no_write:
        command = " ".join(["python benchmarks/kernels.py", *sys.argv[1:]])
        write_readme(lines + extra, command, load, threads)


if __name__ == "__main__":
    main()
