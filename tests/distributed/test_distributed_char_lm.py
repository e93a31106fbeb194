"""The main job, examples/char_lm.py, under `mpiexec -n 2`: the same global batch split over
two ranks trains the same model as one process, and a checkpoint written by either resumes
on the other number of ranks onto the same trajectory."""

import subprocess
import sys

import numpy as np
import pytest
from mpi_jobs import ROOT, run_job

import minigrad as mg

EXAMPLE = ROOT / "examples" / "char_lm.py"
# float32 throughout: the two ranks add their halves of each gradient where one process sums
# the whole batch at once, so results agree to rounding, not bit for bit.
TOLERANCE = 1e-4


# The quick run, shortened: 12 steps, validation and a checkpoint every 6.
QUICK = ("--quick", "--steps", 12, "--eval-every", 6, "--ckpt-every", 6)


def one_process(*args):
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), *map(str, QUICK), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def two_ranks(*args):
    job = run_job(EXAMPLE, *QUICK, *args, timeout=120)
    assert job.returncode == 0, job.output[-3000:]
    return job.output


def assert_same_run(a_dir, b_dir):
    a, b = mg.load(a_dir / "checkpoint.npz"), mg.load(b_dir / "checkpoint.npz")
    assert a["step"] == b["step"]
    for name, value in a["model"].items():
        np.testing.assert_allclose(b["model"][name], value, rtol=0, atol=TOLERANCE, err_msg=name)
    for x, y in zip(a["state"], b["state"], strict=True):  # all 32 streams' carried state
        assert x.shape == y.shape
        np.testing.assert_allclose(y, x, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(b["history"]["val"], a["history"]["val"], rtol=0, atol=TOLERANCE)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """One process, 12 steps: the reference trajectory."""
    out = tmp_path_factory.mktemp("straight")
    one_process("--out", out)
    return out


def test_two_ranks_train_what_one_process_trains(straight, tmp_path):
    printed = two_ranks("--out", tmp_path)
    assert "16 streams on each of 2 ranks" in printed
    assert printed.count("step    12  validation") == 1  # rank 0 alone reports
    assert (tmp_path / "metrics.json").exists() and (tmp_path / "sample.txt").exists()
    assert_same_run(straight, tmp_path)


def test_a_two_rank_checkpoint_resumes_on_one_process(straight, tmp_path):
    two_ranks("--steps", 6, "--out", tmp_path)
    assert mg.load(tmp_path / "checkpoint.npz")["state"][0].shape == (1, 32, 32)
    assert "resumed from" in one_process("--resume", "--out", tmp_path)
    assert_same_run(straight, tmp_path)


def test_a_one_process_checkpoint_resumes_on_two_ranks(straight, tmp_path):
    one_process("--steps", 6, "--out", tmp_path)
    assert "resumed from" in two_ranks("--resume", "--out", tmp_path)
    assert_same_run(straight, tmp_path)
