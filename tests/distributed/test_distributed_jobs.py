"""Data-parallel training on 2 ranks, launched with mpiexec: the same trajectory as one
process with the whole batch, identical parameters on every rank, and failures that end the
whole job within seconds, naming the rank."""

import json
import re

import numpy as np
import pytest
from mpi_jobs import ROOT, WORKERS, run_job

import minigrad as mg

STEPS = 20
CASES = [
    f"{kind}:{dtype}:{mode}"
    for kind in ("lm", "tagger")
    for dtype in ("float64", "float32")
    for mode in ("overlap", "after")
]
TOLERANCE = {"float64": 1e-10, "float32": 1e-5}


@pytest.fixture(scope="module")
def trajectories():
    job = run_job(WORKERS / "trajectory.py", STEPS, *CASES)
    assert job.returncode == 0, job.output[-4000:]  # parameters differing between ranks abort
    results = [json.loads(line[7:]) for line in job.output.splitlines() if line[:7] == "RESULT "]
    return {f"{r['kind']}:{r['dtype']}:{r['mode']}": r for r in results}


@pytest.mark.parametrize("case", CASES)
def test_two_ranks_follow_the_one_process_trajectory(trajectories, case):
    r = trajectories[case]
    assert r["world"] == 2 and r["steps"] == STEPS
    assert r["loss_diff"] <= TOLERANCE[r["dtype"]], r
    assert r["param_diff"] <= TOLERANCE[r["dtype"]], r
    assert r["last_loss"] != r["first_loss"]  # it trained: the comparison is not vacuous
    assert r["reductions"] >= STEPS - STEPS // 5  # one per step (rank 0's count)
    if r["mode"] == "overlap":  # gradients were reduced inside backward, by the hooks
        assert r["finished_in_backward"] == r["reductions"]
    else:
        assert r["finished_in_backward"] == 0


def _pid_of(output, rank):
    found = re.search(rf"\b{rank}: pid (\d+) on ", output)
    assert found, output[-2000:]
    return found.group(1)


def test_a_rank_that_raises_ends_the_job_naming_it():
    job = run_job(WORKERS / "faults.py", "raise", timeout=60)
    assert job.returncode != 0
    assert "rank 1 of 2" in job.output and "raised RuntimeError" in job.output, job.output
    assert job.seconds < 30


def test_a_killed_rank_ends_the_job_and_its_pid_names_it():
    job = run_job(WORKERS / "faults.py", "kill", timeout=60)
    assert job.returncode != 0
    # The launcher reports the dead process by PID; rank 0's start-up line maps PIDs to ranks.
    assert f"PID {_pid_of(job.output, 1)} " in job.output, job.output
    assert "signal 9" in job.output or "EXIT CODE: 9" in job.output
    assert job.seconds < 30


def test_a_rank_that_exits_early_is_named_by_the_rank_left_waiting():
    job = run_job(WORKERS / "faults.py", "exit", timeout=60)
    assert job.returncode != 0
    assert "rank 0 of 2 waits in DistributedDataParallel's gradient allreduce" in job.output
    assert "for rank(s) [1], which left the program" in job.output, job.output
    assert job.seconds < 30


def test_ranks_calling_different_collectives_get_an_error():
    job = run_job(WORKERS / "faults.py", "mismatch", timeout=60)
    assert job.returncode != 0
    message = "rank 0 called barrier(); rank 1 called all_reduce(op='sum') on float64 of shape (3,)"
    assert message in job.output, job.output
    assert job.seconds < 30


def test_a_collective_called_on_one_rank_only_times_out_with_a_message():
    job = run_job(WORKERS / "faults.py", "alone", timeout=60, env={"MINIGRAD_DIST_TIMEOUT": "2"})
    assert job.returncode != 0
    assert "rank 0 of 2 waited 2 s in barrier" in job.output, job.output
    assert "not every rank joined" in job.output
    assert job.seconds < 30  # rank 1 would sleep 60 s: the abort ended it


def test_models_of_different_shapes_are_refused_on_every_rank():
    job = run_job(WORKERS / "faults.py", "shapes", timeout=60)
    assert job.returncode != 0
    message = (
        "the ranks' models differ: tensor #1 ('encoder.rnn.weight_ih_l0' on rank {}) has shape "
        "(32, 4) on rank 0 but (36, 4) on rank 1"
    )
    assert message.format(0) in job.output or message.format(1) in job.output, job.output


LAYOUTS = {
    # rank 1 freezes a weight: its buckets hold fewer elements than rank 0's
    "frozen": "tensor #2 ('encoder.rnn.weight_hh_l0' on rank {}) requires grad on rank 0 but "
    "not on rank 1",
    # same-shaped biases frozen crosswise: the same bucket sizes, different gradients in them
    "swapped": "tensor #3 ('encoder.rnn.bias_ih_l0' on rank {}) requires grad on rank 1 but "
    "not on rank 0",
    # the same parameters, bucketed differently
    "caps": "tensor #0 ('encoder.embedding.weight' on rank {}) is in gradient bucket 0 at "
    "element 511 on rank 0 but in bucket 6 at element 0 on rank 1",
}


@pytest.mark.parametrize("scenario", sorted(LAYOUTS))
def test_ranks_freezing_or_bucketing_differently_are_refused_on_every_rank(scenario):
    job = run_job(WORKERS / "faults.py", scenario, timeout=60)
    assert job.returncode != 0, job.output
    message = "the ranks' models differ: " + LAYOUTS[scenario]
    assert message.format(0) in job.output or message.format(1) in job.output, job.output
    assert "ran to its end" not in job.output  # no rank trained on mixed gradients


def test_all_gather_of_same_size_different_shapes_is_refused():
    job = run_job(WORKERS / "faults.py", "gather", timeout=60)
    assert job.returncode != 0, job.output
    assert (
        "rank 0 called all_gather() on float64 of shape (2, 3); "
        "rank 1 called all_gather() on float64 of shape (3, 2)"
    ) in job.output, job.output


@pytest.mark.parametrize("call", ["all_reduce(op='sum') on float64 of shape (3,)", "barrier()"])
def test_ddp_against_a_user_collective_is_caught_at_once(call):
    """Without the check both ranks wait out the 600 s deadline (the job's 60 s here)."""
    job = run_job(WORKERS / "faults.py", "ddp_vs_" + call.split("(")[0], timeout=60)
    assert job.returncode != 0, job.output
    assert (
        "rank 0 is in DistributedDataParallel's gradient allreduce (wrapper #1: 1 bucket, "
        f"539 elements); rank 1 called {call}"
    ) in job.output, job.output
    assert job.seconds < 30


def test_a_crash_while_rank_0_saves_leaves_a_complete_checkpoint(tmp_path):
    """Rank 0 saves without pause when rank 1 raises, so the abort usually lands inside a
    save (its hidden temporary stays behind until the next save removes it); the checkpoint
    is always the last complete one."""
    path = tmp_path / "checkpoint.npz"
    job = run_job(WORKERS / "faults.py", "checkpoint", path, timeout=60)
    assert job.returncode != 0 and "rank 1 of 2" in job.output, job.output
    saved = mg.load(path)
    assert saved["step"] in (2, 3)
    expected = 1000 * saved["step"] + saved["attempt"]
    np.testing.assert_array_equal(saved["big"], np.full(2**21, expected))


def test_the_docs_training_loop_runs_on_two_ranks(tmp_path):
    page = (ROOT / "docs" / "distributed.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    (loop,) = [b for b in blocks if "DistributedSampler(" in b]
    (tmp_path / "tagger.py").write_text(loop)
    job = run_job(tmp_path / "tagger.py", cwd=tmp_path, timeout=60)
    assert job.returncode == 0, job.output
    assert set(mg.load(tmp_path / "tagger.npz")["model"]) == {
        "encoder.embedding.weight",
        "encoder.rnn.weight_ih_l0",
        "encoder.rnn.weight_hh_l0",
        "encoder.rnn.bias_ih_l0",
        "encoder.rnn.bias_hh_l0",
        "encoder.rnn.weight_ih_l0_reverse",
        "encoder.rnn.weight_hh_l0_reverse",
        "encoder.rnn.bias_ih_l0_reverse",
        "encoder.rnn.bias_hh_l0_reverse",
        "tagger.weight",
        "tagger.bias",
    }


def test_no_sync_unused_parameters_and_the_collectives():
    job = run_job(WORKERS / "features.py", timeout=60)
    assert job.returncode == 0, job.output
    assert "rank 0: all checks passed" in job.output and "rank 1: all checks passed" in job.output
