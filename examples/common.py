"""Small helpers shared by the examples: the output folder (all of them), and for the study
examples (bptt_from_scratch, vanishing_gradients, memory_tasks) a progress bar, plotting and
the metrics file.

tqdm and matplotlib are optional extras (`pip install minigrad-rnn[examples]`): without tqdm the
progress is printed every tenth of the way, without matplotlib no figure is drawn and the
example says so.
"""

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def output_folder(out, name: str, quick: bool = False) -> Path:
    """The folder an example writes into: `out` if given, else examples/results/<name>/, where
    the default run's outputs are committed (the README shows them), or for a --quick run
    examples/results/<name>-quick/ (ignored by git), so that trying an example never
    overwrites the results of its full run."""
    folder = Path(out) if out is not None else RESULTS / (f"{name}-quick" if quick else name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def progress(iterable, total=None, desc="", enabled=True):
    """tqdm over `iterable` when tqdm is installed, else a line printed every 10%."""
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return _printed_progress(iterable, total, desc)
    return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stdout, mininterval=0.5)


def _printed_progress(iterable, total, desc):
    total = total if total is not None else len(iterable)
    every = max(1, total // 10)
    start = time.perf_counter()
    for i, item in enumerate(iterable):
        yield item
        if (i + 1) % every == 0 or i + 1 == total:
            print(f"  {desc} {i + 1}/{total} ({time.perf_counter() - start:.1f} s)", flush=True)


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend, or None if matplotlib is absent."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no figure drawn (pip install matplotlib)")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Lay the figure out, write it to path (PNG, 110 dpi) and free it; returns path."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt  # there is a figure: matplotlib is installed

    plt.close(fig)
    return path


def _plain(value):
    """A JSON-safe copy: NumPy scalars and arrays as Python values, NaN/inf as strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf": JSON has no such numbers
    return value


def write_text(path: Path, text: str) -> Path:
    """Write through a temporary file and a rename, so that a stop mid-write (or a second
    process of the same study writing too) never leaves a half-written file behind."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_json(path: Path, data) -> Path:
    return write_text(path, json.dumps(_plain(data), indent=2, allow_nan=False) + "\n")


def markdown_table(headers, rows) -> str:
    """A GitHub-flavoured markdown table, columns padded for reading as plain text."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def add_out_argument(parser, name: str) -> None:
    """--out, whose default `output_folder` resolves once --quick is known."""
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"output folder (default examples/results/{name}/; with --quick, {name}-quick/)",
    )


def add_common_arguments(parser, name: str) -> None:
    add_out_argument(parser, name)
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run (tests)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def adding_batch(T: int, B: int, rng, dtype=np.float32):
    """The adding problem as Arjovsky, Shah & Bengio (2016) generate it (Le et al.'s 2015
    two-channel form): x (T, B, 2), channel 0 uniform in [0, 1], channel 1 zero except for one
    1 uniformly placed in the first half [0, T/2) and one in the second half [T/2, T). The
    target y (B, 1) is the sum of the two marked numbers. Predicting 1 gives MSE 1/6 ~ 0.167."""
    x = np.zeros((T, B, 2), dtype)
    x[:, :, 0] = rng.random((T, B))
    rows = np.arange(B)
    x[rng.integers(0, T // 2, B), rows, 1] = 1.0
    x[rng.integers(T // 2, T, B), rows, 1] = 1.0
    y = (x[:, :, 0] * x[:, :, 1]).sum(axis=0, keepdims=False)[:, None].astype(dtype)
    return x, y
