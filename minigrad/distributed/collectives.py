"""Collectives over all ranks on NumPy arrays or tensors (in their memory), named as in
torch.distributed: barrier, all_reduce, broadcast, all_gather, and all_gather_rows for
arrays whose first dimension differs between ranks.

Each first exchanges a small fingerprint (which collective, dtype, shape, op or root) with an
allgather, so ranks that call different collectives at the same point, or the same one on
arrays of different shapes, get a clear error on every rank instead of MPI silently matching,
say, one rank's broadcast with another's allreduce, or reshaping one rank's array.
DistributedDataParallel's gradient reductions join the same sequence of fingerprints.
Without a launcher (a world of one) they return at once without MPI.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .group import DistributedError, _Group, _implicit_group, wait

_OPS = ("sum", "mean", "max", "min")


def _buffer(array):
    """The contiguous NumPy array to hand to MPI, and the array to copy the result back to."""
    target = getattr(array, "_data", array) if not isinstance(array, np.ndarray) else array
    if not isinstance(target, np.ndarray):
        target = np.array(target)
    if target.dtype.hasobject:
        raise TypeError("collectives take numeric arrays; this one has dtype object")
    contiguous = target if target.flags.c_contiguous else np.ascontiguousarray(target)
    return contiguous, target


_COLLECTIVES = ("barrier", "all_reduce", "broadcast", "all_gather", "all_gather_rows", "ddp")
_DIMS = 6  # shape columns; a longer shape keeps 5 dims and a hash of the rest (negative)


def _code(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=7).digest(), "little")


def fingerprint(group: _Group, name: str, dtype=None, shape=(), extra: int = -1) -> np.ndarray:
    """This rank's row for the agreement check: the call's number, which collective, dtype,
    extra (op, root, or which DDP wrapper), then the shape. Counts the call."""
    group.calls += 1
    row = np.full(5 + _DIMS, -1, np.int64)
    dtype_code = -1 if dtype is None else int.from_bytes(dtype.str.encode()[:8], "little")
    row[:5] = (group.calls, _COLLECTIVES.index(name), dtype_code, extra, len(shape))
    if len(shape) > _DIMS:
        shape = (*shape[: _DIMS - 1], -_code(str(shape[_DIMS - 1 :])))
    row[5 : 5 + len(shape)] = shape
    return row


def agree(group: _Group, row: np.ndarray, what: str) -> None:
    """Allgather every rank's fingerprint row and raise DistributedError on every rank if
    they differ. All rows have one size, so MPI pairs them whatever each rank is calling
    (a user collective, DDP's reduction): the mismatch is seen at once, not at the deadline."""
    everyone = np.empty((group.size, row.size), np.int64)
    wait([group.comm.Iallgather(row, everyone)], what)
    bad = [r for r in range(group.size) if not np.array_equal(everyone[r], everyone[0])]
    if bad:
        rows = "; ".join(_describe(r, everyone[r]) for r in [0] + bad)
        raise DistributedError(f"ranks disagree on collective #{int(row[0])}: {rows}")


def _agree(group: _Group, name: str, array: np.ndarray, extra: int = -1, shape=None) -> str:
    """Check that every rank is calling the same collective on a like array; its label."""
    row = fingerprint(group, name, array.dtype, array.shape if shape is None else shape, extra)
    what = f"{name} #{group.calls}"
    agree(group, row, what)
    return what


def _describe(rank, row) -> str:
    name = _COLLECTIVES[int(row[1])]
    dims = [int(d) for d in row[5 : 5 + min(int(row[4]), _DIMS)]]
    if name == "barrier":
        return f"rank {rank} called barrier()"
    if name == "ddp":
        buckets, elements = dims
        return (
            f"rank {rank} is in DistributedDataParallel's gradient allreduce (wrapper "
            f"#{int(row[3])}: {buckets} bucket{'s' * (buckets != 1)}, {elements} elements)"
        )
    text = ", ".join(str(d) if d >= 0 else "..." for d in dims)
    shape = f"({text},)" if len(dims) == 1 else f"({text})"
    dtype = np.dtype(int(row[2]).to_bytes(8, "little").rstrip(b"\0").decode()).name
    args = {"all_reduce": f"op={_OPS[int(row[3])]!r}", "broadcast": f"src={int(row[3])}"}
    of = "rows of shape" if name == "all_gather_rows" else "of shape"
    return f"rank {rank} called {name}({args.get(name, '')}) on {dtype} {of} {shape}"


def barrier() -> None:
    """Wait until every rank has called barrier()."""
    group = _implicit_group()
    if group is None:
        return
    what = _agree(group, "barrier", np.zeros(0))
    wait([group.comm.Ibarrier()], what)


def all_reduce(array, op: str = "sum"):
    """Reduce `array` over all ranks with op ('sum', 'mean', 'max', 'min').

    A NumPy array or a tensor is reduced in place (in its memory) and returned; anything else
    (a Python number, a list) is converted to a new array, which is returned.
    """
    if op not in _OPS:
        raise ValueError(f"all_reduce: op must be one of {_OPS}, got {op!r}")
    buf, target = _buffer(array)
    group = _implicit_group()
    if group is not None and group.size > 1:
        what = _agree(group, "all_reduce", buf, _OPS.index(op))
        mpi_op = {"max": group.MPI.MAX, "min": group.MPI.MIN}.get(op, group.MPI.SUM)
        wait([group.comm.Iallreduce(group.MPI.IN_PLACE, buf, mpi_op)], what)
        if op == "mean":
            buf /= group.size
    if buf is not target:
        target[...] = buf
    return target


def broadcast(array, src: int = 0):
    """Overwrite `array` (in place) on every rank with rank `src`'s; returns it."""
    buf, target = _buffer(array)
    group = _implicit_group()
    if group is None:
        if src != 0:
            raise ValueError(f"broadcast: src {src} does not exist in a world of one")
        return target
    if not 0 <= src < group.size:
        raise ValueError(f"broadcast: src must be a rank in [0, {group.size}), got {src}")
    if group.size > 1:
        what = _agree(group, "broadcast", buf, src)
        wait([group.comm.Ibcast(buf, src)], what)
        if buf is not target:
            target[...] = buf
    return target


def all_gather(array) -> np.ndarray:
    """Every rank's `array` (same shape and dtype on all, else DistributedError), stacked:
    (world_size, *shape)."""
    buf, _ = _buffer(array)
    group = _implicit_group()
    if group is None or group.size == 1:
        return buf[None].copy()
    what = _agree(group, "all_gather", buf)
    out = np.empty((group.size,) + buf.shape, buf.dtype)
    wait([group.comm.Iallgather(buf, out)], what)
    return out


def all_gather_rows(array) -> np.ndarray:
    """Every rank's `array` concatenated along axis 0, in rank order; the number of rows may
    differ between ranks, the other dims and the dtype may not."""
    buf, _ = _buffer(array)
    if buf.ndim == 0:
        raise ValueError("all_gather_rows: needs an array with at least one dimension")
    group = _implicit_group()
    if group is None or group.size == 1:
        return buf.copy()
    row = int(np.prod(buf.shape[1:], dtype=np.int64))
    what = _agree(group, "all_gather_rows", buf, shape=buf.shape[1:])
    counts = np.empty(group.size, np.int64)
    wait([group.comm.Iallgather(np.array([buf.shape[0]], np.int64), counts)], what)
    out = np.empty((int(counts.sum()),) + buf.shape[1:], buf.dtype)
    sizes = counts * row
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    wait([group.comm.Iallgatherv(buf, [out, (sizes, offsets)])], what)
    return out
