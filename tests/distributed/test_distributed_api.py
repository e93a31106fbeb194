"""minigrad.distributed in one process: the import without mpi4py, the world of one without
a launcher, and the samplers' guarantees (which need no MPI: each rank computes its share
from (seed, epoch, rank) alone)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minigrad.distributed as dist
import minigrad.nn as nn
from minigrad.distributed import DistributedSampler, StreamSharder

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER_VARIABLES = (
    "PMI_SIZE",
    "PMI_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "MPI_LOCALNRANKS",
    "PMIX_RANK",
)


def run_python(code, env=None):
    """Run code in a fresh interpreter without any MPI launcher variables; return stdout."""
    environment = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    environment["PYTHONPATH"] = str(ROOT)
    environment.update(env or {})
    done = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


BLOCK_MPI4PY = "import sys; sys.modules['mpi4py'] = None  # as if it were not installed\n"


def test_minigrad_imports_without_mpi4py_and_the_error_names_the_extra():
    name = re.search(r'(?m)^name = "([^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    out = run_python(
        BLOCK_MPI4PY
        + """
import minigrad, minigrad.distributed as dist, minigrad.nn as nn
print(dist.is_available(), dist.get_rank(), dist.get_world_size(), dist.is_main_process())
for call in (dist.init_process_group, lambda: dist.DistributedDataParallel(nn.Linear(2, 2))):
    try:
        call()
    except ImportError as e:
        print(e)
"""
    )
    lines = out.splitlines()
    assert lines[0] == "False 0 1 True"
    hint = f"pip install '{name}[distributed]'"
    assert len(lines) == 3 and all(hint in line for line in lines[1:]), out


def test_under_a_launcher_without_mpi4py_the_rank_query_fails_instead_of_guessing():
    out = run_python(
        BLOCK_MPI4PY
        + """
import minigrad.distributed as dist
try:
    dist.get_world_size()
except ImportError as e:
    print("ImportError", e)
""",
        env={"PMI_SIZE": "2", "PMI_RANK": "1"},
    )
    assert out.startswith("ImportError") and "[distributed]'" in out


def test_import_minigrad_does_not_import_mpi4py():
    out = run_python("import sys, minigrad, minigrad.distributed; print('mpi4py' in sys.modules)")
    assert out.strip() == "False"


def test_without_a_launcher_the_api_is_a_world_of_one():
    out = run_python(
        """
import numpy as np, minigrad as mg, minigrad.distributed as dist, minigrad.nn as nn
import sys
print(dist.get_world_size(), dist.is_initialized(), 'mpi4py' in sys.modules)
dist.init_process_group()  # explicit: MPI starts as a singleton
model = nn.Linear(3, 2)
ddp = dist.DistributedDataParallel(model)
x = mg.tensor(np.ones((4, 3), np.float32))
ddp(x).sum().backward()
ddp.synchronize()
dist.barrier()
print(dist.get_rank(), dist.get_world_size(), dist.is_initialized())
print(model.bias.grad.tolist(), dist.all_reduce(np.array([2.5]), op="mean").tolist())
print(dist.all_gather(np.arange(3)).tolist(), dist.rank_zero_only(lambda: "main")())
try:
    dist.DistributedDataParallel(model)
except ValueError as e:
    print(e)
"""
    )
    assert out.splitlines() == [
        "1 False False",
        "0 1 True",
        "[4.0, 4.0] [2.5]",
        "[[0, 1, 2]] main",
        "this module is already wrapped by a DistributedDataParallel",
    ]


# ----- DistributedSampler -------------------------------------------------------------------
SHAPES = [(0, 1), (1, 1), (10, 1), (10, 2), (11, 2), (23, 4), (5, 8), (64, 3)]


@pytest.mark.parametrize("n, replicas", SHAPES)
@pytest.mark.parametrize("shuffle", [True, False])
def test_every_example_once_per_epoch_across_ranks(n, replicas, shuffle):
    for epoch in range(3):
        shares = []
        for rank in range(replicas):
            s = DistributedSampler(n, replicas, rank, shuffle=shuffle, seed=5)
            s.set_epoch(epoch)
            shares.append(list(s))
            assert len(s) == len(shares[-1])
        seen = sorted(i for share in shares for i in share)
        assert seen == list(range(n))  # exactly once: no padding, no repeats
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


@pytest.mark.parametrize("n, replicas", SHAPES)
def test_drop_last_gives_every_rank_the_same_number(n, replicas):
    shares = []
    for rank in range(replicas):
        s = DistributedSampler(n, replicas, rank, drop_last=True, seed=1)
        s.set_epoch(2)
        shares.append(list(s))
    assert {len(share) for share in shares} == {n // replicas}
    flat = [i for share in shares for i in share]
    assert len(set(flat)) == len(flat) == n - n % replicas


def test_the_order_depends_on_seed_and_epoch_only():
    a, b = DistributedSampler(50, 2, 1, seed=7), DistributedSampler(50, 2, 1, seed=7)
    a.set_epoch(4), b.set_epoch(4)
    assert list(a) == list(b)
    b.set_epoch(5)
    assert list(a) != list(b)  # reshuffled every epoch
    c = DistributedSampler(50, 2, 1, seed=8)
    c.set_epoch(4)
    assert list(a) != list(c)
    assert list(DistributedSampler(6, 2, 0, shuffle=False)) == [0, 2, 4]


@pytest.mark.parametrize("n, batch", [(21, 5), (20, 5), (7, 4), (9, 3)])
@pytest.mark.parametrize("replicas", [2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_global_batches_are_the_same_on_any_number_of_ranks(n, batch, replicas, drop_last):
    one = DistributedSampler(n, 1, 0, seed=3, drop_last=drop_last)
    one.set_epoch(1)
    whole = list(one.batches(batch))
    shares = []
    for rank in range(replicas):
        s = DistributedSampler(n, replicas, rank, seed=3, drop_last=drop_last)
        s.set_epoch(1)
        shares.append(list(s.batches(batch)))
        assert len(shares[-1]) == s.num_batches(batch) == len(whole)  # collectives stay matched
    for k, batch_k in enumerate(whole):
        merged = np.concatenate([share[k] for share in shares])
        assert sorted(merged.tolist()) == sorted(batch_k.tolist())
    seen = [i for b in whole for i in b.tolist()]
    assert len(seen) == len(set(seen)) == (n - n % batch if drop_last else n)


def test_resuming_at_batch_k_continues_the_same_sequence():
    s = DistributedSampler(40, 2, 1, seed=9)
    s.set_epoch(3)
    full = [b.tolist() for b in s.batches(6)]
    for k in range(len(full) + 1):
        resumed = DistributedSampler(40, 2, 1, seed=9)
        resumed.set_epoch(3)
        assert [b.tolist() for b in resumed.batches(6, start=k)] == full[k:]


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_replicas"):
        DistributedSampler(10, 0, 0)
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, 2\)"):
        DistributedSampler(10, 2, 2)
    with pytest.raises(ValueError, match="dataset_len"):
        DistributedSampler(-1, 1, 0)
    with pytest.raises(ValueError, match="epoch"):
        DistributedSampler(10, 1, 0).set_epoch(-1)
    with pytest.raises(ValueError, match="at least as large as the number of ranks"):
        DistributedSampler(10, 4, 0).num_batches(3)
    with pytest.raises(ValueError, match=r"start must be an int in \[0, 4\]"):
        next(DistributedSampler(10, 1, 0).batches(3, start=5))


# ----- StreamSharder ------------------------------------------------------------------------
@pytest.mark.parametrize("streams, replicas", [(32, 1), (32, 2), (32, 3), (5, 5), (7, 2)])
def test_streams_are_split_into_contiguous_blocks(streams, replicas):
    data = np.arange(streams * 4).reshape(streams, 4)
    blocks = [StreamSharder(streams, replicas, r).shard(data) for r in range(replicas)]
    np.testing.assert_array_equal(np.concatenate(blocks), data)
    sizes = [len(b) for b in blocks]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    state = np.zeros((2, streams, 3))  # a carried state: streams on axis 1
    assert StreamSharder(streams, replicas, 0).shard(state, axis=1).shape == (2, sizes[0], 3)


def test_stream_sharder_errors():
    with pytest.raises(ValueError, match="cannot be shared by 4 ranks"):
        StreamSharder(3, 4, 0)
    with pytest.raises(ValueError, match="expected one per stream"):
        StreamSharder(8, 2, 0).shard(np.zeros((7, 2)))
    with pytest.raises(ValueError, match="made for 2 ranks, the job has 1"):
        StreamSharder(8, 2, 0).gather(np.zeros((4, 2)))


def test_collective_arguments_are_checked_without_mpi():
    with pytest.raises(ValueError, match="op must be one of"):
        dist.all_reduce(np.ones(2), op="prod")
    with pytest.raises(ValueError, match="src 1 does not exist"):
        dist.broadcast(np.ones(2), src=1)


def test_bad_arguments_are_refused_before_mpi_is_touched():
    model = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="wraps an nn.Module, got int"):
        dist.DistributedDataParallel(3)
    with pytest.raises(ValueError, match="reduce_op must be one of"):
        dist.DistributedDataParallel(model, reduce_op="max")
    with pytest.raises(ValueError, match="bucket_cap_mb must be positive"):
        dist.DistributedDataParallel(model, bucket_cap_mb=0)
    with pytest.raises(ValueError, match="the only backend is 'mpi'"):
        dist.init_process_group("nccl")
    with pytest.raises(ValueError, match="timeout must be positive"):
        dist.init_process_group(timeout=0)
    assert not dist.is_initialized()
