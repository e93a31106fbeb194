"""Keeping the ranks' models identical: the same layout, the same start, the same bits.

- check_same_layout(module): every rank has parameters of the same names, shapes and dtypes
  (else a ValueError on every rank naming the first difference), checked before any
  gradient is exchanged, because an allreduce of mismatched buffers would silently mix
  unrelated numbers or overrun one. DistributedDataParallel also compares requires_grad and
  each gradient's place in the buckets, which a frozen parameter changes.
- broadcast_parameters(module): rank 0's parameters and buffers overwrite the others'.
- check_parameters_in_sync(module): a hash of every parameter, allgathered and compared, so
  "all ranks hold bitwise-identical parameters" is checked rather than assumed.
"""

from __future__ import annotations

import hashlib
import itertools

import numpy as np

from . import collectives as c
from . import group as g

_MAX_DIMS = 6


def _tensors(module):
    return list(module.named_parameters()) + list(module.named_buffers())


def _name_code(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=7).digest(), "little")


_EXTRA = 3  # requires_grad, gradient bucket, offset in it (-1 where not compared)


def _layout(named, placement) -> np.ndarray:
    """One row per tensor: hash of the name, hash of the dtype, ndim, the dims (padded),
    then, for DistributedDataParallel (placement: id -> (bucket, offset)), requires_grad and
    where the gradient sits in the buckets: all that decides the buckets."""
    table = np.full((len(named), 3 + _MAX_DIMS + _EXTRA), -1, np.int64)
    for i, (name, t) in enumerate(named):
        shape = t._data.shape
        if len(shape) > _MAX_DIMS:
            raise ValueError(f"parameter {name!r} has {len(shape)} dims; at most {_MAX_DIMS}")
        table[i, :3] = (_name_code(name), _name_code(t._data.dtype.str), len(shape))
        table[i, 3 : 3 + len(shape)] = shape
        if placement is not None:
            table[i, -3] = bool(t.requires_grad)
            table[i, -2:] = placement.get(id(t), (-1, -1))
    return table


def _shape_of(row) -> tuple:
    return tuple(int(d) for d in row[3 : 3 + int(row[2])])


def _difference(a, b, rank) -> str:
    """What differs between rank 0's row a and rank `rank`'s row b, in _layout's order."""
    same_model = "; every rank must build the same model"
    if a[0] != b[0]:
        return f"is named differently on rank 0 and rank {rank}" + same_model
    if a[1] != b[1]:
        return f"has different dtypes on rank 0 and rank {rank}" + same_model
    if _shape_of(a) != _shape_of(b):
        return f"has shape {_shape_of(a)} on rank 0 but {_shape_of(b)} on rank {rank}" + same_model
    if a[-3] != b[-3]:
        on, off = (0, rank) if a[-3] else (rank, 0)
        return (
            f"requires grad on rank {on} but not on rank {off}, so the ranks' gradient "
            "buckets would not line up; every rank must freeze the same parameters"
        )
    return (
        f"is in gradient bucket {a[-2]} at element {a[-1]} on rank 0 but in bucket {b[-2]} at "
        f"element {b[-1]} on rank {rank}; bucket_cap_mb must be the same on every rank"
    )


def check_same_layout(module, placement=None) -> None:
    """Raise ValueError on every rank if any rank's parameters or buffers differ in number,
    name, shape or dtype from rank 0's (with `placement`, DistributedDataParallel's map of
    parameter id -> (bucket, offset), also in requires_grad and in that placement)."""
    named = _tensors(module)
    counts = c.all_gather(np.array([len(named)], np.int64)).ravel()
    if (counts != counts[0]).any():
        per_rank = ", ".join(f"rank {r}: {int(c)}" for r, c in enumerate(counts))
        raise ValueError(f"the ranks' models have different numbers of tensors ({per_rank})")
    tables = c.all_gather(_layout(named, placement))
    # Placement last: one frozen parameter shifts the offsets of many; name the cause.
    for columns in (slice(0, -2), slice(None)):
        for rank, i in itertools.product(range(1, len(tables)), range(len(named))):
            a, b = tables[0][i], tables[rank][i]
            if np.array_equal(a[columns], b[columns]):
                continue
            name = named[i][0]  # this rank's name for tensor i; the hash says if it agrees
            raise ValueError(
                f"the ranks' models differ: tensor #{i} ({name!r} on rank {g.get_rank()}) "
                + _difference(a, b, rank)
            )


def broadcast_parameters(module, src: int = 0) -> None:
    """Overwrite every rank's parameters and buffers with rank `src`'s (same layout needed:
    call check_same_layout first if unsure)."""
    for _, t in _tensors(module):
        c.broadcast(t._data, src)


def parameter_digest(module) -> bytes:
    """A 16-byte hash of every parameter's and buffer's bytes, in order."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in _tensors(module):
        h.update(name.encode())
        h.update(np.ascontiguousarray(t._data).tobytes())
    return h.digest()


def check_parameters_in_sync(module) -> None:
    """Raise RuntimeError on every rank unless all ranks hold bitwise-identical parameters
    and buffers (compared through an allgather of a hash of their bytes)."""
    mine = np.frombuffer(parameter_digest(module), np.uint8)
    digests = c.all_gather(mine)
    differ = [r for r in range(len(digests)) if not np.array_equal(digests[r], digests[0])]
    if differ:
        raise RuntimeError(
            f"parameters differ between ranks: rank(s) {differ} do not hold rank 0's bits"
        )
