"""Run one PyTorch program on PyTorch and on minigrad (each in its own process, through
run_program.py) and compare what the two runs did.

Used by check_programs.py, for real programs in a user's clones of PyTorch's repositories, and by
tests/test_ported_programs.py, for small programs written in this repository.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LAUNCHER = Path(__file__).resolve().parent / "run_program.py"
RTOL, ATOL = 1e-9, 1e-12
# Printed durations differ between runs; everything else printed must match exactly.
TIMINGS = [r"\d+m \d+s", r"ms/batch\s+[\d.]+", r"time:\s+[\d.]+s"]


@dataclass(frozen=True)
class Script:
    """One script of a program: run as __main__ with these arguments, after replacing each
    `old` source substring (which must occur exactly once) by `new`."""

    file: str
    args: tuple[str, ...] = ()
    overrides: tuple[tuple[str, str], ...] = ()


def run(program_dir, scripts, framework, workdir, make_data=None, timeout=600):
    """The record of one run ("torch" or "minigrad"): losses, prints, final_state, error, and
    the process's output. A launcher that itself fails (not the program) raises."""
    workdir = Path(workdir)
    spec = {
        "framework": framework,
        "program": str(program_dir),
        "workdir": str(workdir / framework),
        "weights": str(workdir / "weights.json"),  # written by the torch run, read by minigrad's
        "record": str(workdir / f"{framework}.json"),
        "scripts": [
            {"file": s.file, "args": list(s.args), "overrides": [list(o) for o in s.overrides]}
            for s in scripts
        ],
    }
    (workdir / framework).mkdir(parents=True)
    if make_data is not None:
        make_data(workdir / framework)
    spec_path = workdir / f"{framework}-spec.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg", "PYTHONIOENCODING": "utf-8"}
    # time_sequence_prediction torch.load()s the NumPy array it saved, which PyTorch >= 2.6
    # refuses by default (weights_only=True); this is PyTorch's documented switch back.
    env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    env["OMP_NUM_THREADS"] = "1"  # one process per core is faster on small ops than threads
    result = subprocess.run(
        [sys.executable, str(LAUNCHER), str(spec_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"run_program.py ({framework}) exited {result.returncode}:\n{output}")
    record = json.loads(Path(spec["record"]).read_text())
    record["output"] = output
    return record


def run_both(program_dir, scripts, workdir, make_data=None):
    """(minigrad's record, PyTorch's record); PyTorch's run goes first, since it saves the
    initial weights minigrad's run loads."""
    theirs = run(program_dir, scripts, "torch", workdir, make_data)
    return run(program_dir, scripts, "minigrad", workdir, make_data), theirs


# ----- comparing two records ----------------------------------------------------------------
class Mismatch(AssertionError):
    """minigrad's record differs from PyTorch's; the message says where."""


@dataclass
class Agreement:
    """What a comparison found equal, and how close: each loss's relative difference, and each
    other tensor's (or number's) largest difference relative to its largest entry."""

    losses: int = 0
    prints: int = 0
    modules: int = 0
    loss_relative_difference: float = 0.0
    tensor_relative_difference: float = 0.0


def relative_difference(ours, theirs):
    """max |ours - theirs| / max |theirs| (0 where theirs is all 0 and ours equals it)."""
    a, b = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    difference = float(np.max(np.abs(a - b), initial=0.0))
    scale = float(np.max(np.abs(b), initial=0.0))
    return difference / scale if scale else (0.0 if difference == 0 else math.inf)


def _same_numbers(ours, theirs, where, agreement):
    """Equal to RTOL relative (ATOL absolute for entries near 0), entry by entry."""
    a, b = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    if a.shape != b.shape:
        raise Mismatch(f"{where}: shape {a.shape} here, {b.shape} in PyTorch's run")
    close = np.isclose(a, b, rtol=RTOL, atol=ATOL) | (np.isnan(a) & np.isnan(b))
    if not close.all():
        i = tuple(int(j) for j in np.unravel_index(np.argmin(close), a.shape))
        index = f"[{', '.join(map(str, i))}]" if i else ""
        raise Mismatch(
            f"{where}{index}: {float(a[i])!r} here, {float(b[i])!r} in PyTorch's run "
            f"(relative tolerance {RTOL})"
        )
    finite = np.isfinite(a) & np.isfinite(b)
    agreement.tensor_relative_difference = max(
        agreement.tensor_relative_difference, relative_difference(a[finite], b[finite])
    )


def _same(ours, theirs, where, agreement):
    """Printed strings equal once durations are masked; numbers to RTOL; structure equal."""
    if isinstance(theirs, str):
        masked = [re.sub("|".join(TIMINGS), "<time>", s) if isinstance(s, str) else s
                  for s in (ours, theirs)]  # fmt: skip
        if masked[0] != masked[1]:
            raise Mismatch(f"{where}: {ours!r} here, {theirs!r} in PyTorch's run")
    elif isinstance(theirs, dict) and "tensor" in theirs:
        if not (isinstance(ours, dict) and "tensor" in ours):
            raise Mismatch(f"{where}: {ours!r} here, a tensor in PyTorch's run")
        _same_numbers(ours["tensor"], theirs["tensor"], where, agreement)
    elif isinstance(theirs, dict):
        if not (isinstance(ours, dict) and ours.keys() == theirs.keys()):
            raise Mismatch(f"{where}: {ours!r} here, {theirs!r} in PyTorch's run")
        for key in theirs:
            _same(ours[key], theirs[key], f"{where}.{key}", agreement)
    elif isinstance(theirs, list):
        if not (isinstance(ours, list) and len(ours) == len(theirs)):
            raise Mismatch(f"{where}: {ours!r} here, {theirs!r} in PyTorch's run")
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            _same(a, b, f"{where}[{i}]", agreement)
    elif isinstance(theirs, float):
        if isinstance(ours, bool) or not isinstance(ours, (int, float)):
            raise Mismatch(f"{where}: {ours!r} here, {theirs!r} in PyTorch's run")
        _same_numbers(ours, theirs, where, agreement)
    elif ours != theirs:
        raise Mismatch(f"{where}: {ours!r} here, {theirs!r} in PyTorch's run")


def compare(ours, theirs, complete=True):
    """minigrad's record against PyTorch's: every loss, every print and (for a complete run)
    the final weights of every captured module. A run that stopped early (complete=False) must
    match PyTorch's as far as it went. Raises Mismatch at the first difference."""
    agreement = Agreement(losses=len(ours["losses"]), prints=len(ours["prints"]))
    if complete:
        for key in ("losses", "prints"):
            if len(ours[key]) != len(theirs[key]):
                raise Mismatch(f"{key}: {len(ours[key])} here, {len(theirs[key])} in PyTorch's run")
    elif len(ours["losses"]) > len(theirs["losses"]) or len(ours["prints"]) > len(theirs["prints"]):
        raise Mismatch("the run went further than PyTorch's")
    for i, (a, b) in enumerate(
        zip(ours["losses"], theirs["losses"][: agreement.losses], strict=True)
    ):
        _same_numbers(a, b, f"losses[{i}]", agreement)
    agreement.loss_relative_difference = agreement.tensor_relative_difference
    agreement.tensor_relative_difference = 0.0  # from here: the prints and the weights
    _same(ours["prints"], theirs["prints"][: agreement.prints], "prints", agreement)
    if complete:
        _same_weights(ours["final_state"], theirs["final_state"], agreement)
    return agreement


def _same_weights(ours, theirs, agreement):
    """Each captured module's final state_dict: the same names, the same values to RTOL."""
    if len(ours) != len(theirs):
        raise Mismatch(f"final_state: {len(ours)} modules here, {len(theirs)} in PyTorch's run")
    for m, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if list(a) != list(b):
            raise Mismatch(f"final_state[{m}]: {list(a)} here, {list(b)} in PyTorch's run")
        for name in b:
            _same_numbers(a[name], b[name], f"final_state[{m}].{name}", agreement)
    agreement.modules = len(ours)


def trained(losses, k):
    """The mean of the last k losses is below that of the first k."""
    return len(losses) >= 2 * k and math.fsum(losses[-k:]) < math.fsum(losses[:k])
