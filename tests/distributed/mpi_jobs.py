"""Launching MPI jobs from the tests: `run_job(script, *args, n=2)` runs
`mpiexec -n 2 python script args` with a timeout, so a hang fails a test instead of the
suite. mpiexec is the one installed beside this Python (MPICH's wheel, the `distributed`
extra); if it is missing the tests fail saying what to install, they do not skip.
"""

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKERS = Path(__file__).resolve().parent / "workers"


def mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.fail("no mpiexec: install the MPI extra, pip install 'minigrad-rnn[distributed]'")
    return found


@dataclass
class Job:
    returncode: int
    output: str  # stdout and stderr, interleaved as the launcher forwarded them
    seconds: float


def run_job(script, *args, n=2, timeout=90, env=None, cwd=ROOT) -> Job:
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "OPENBLAS_NUM_THREADS": "1",  # n ranks share this machine's cores
        **(env or {}),
    }
    command = [mpiexec(), "-n", str(n), sys.executable, str(script), *map(str, args)]
    start = time.monotonic()
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as hung:
        out = hung.output.decode() if isinstance(hung.output, bytes) else hung.output or ""
        pytest.fail(f"the MPI job hung past {timeout} s: {' '.join(command)}\n{out[-3000:]}")
    return Job(done.returncode, done.stdout, time.monotonic() - start)
