"""Keeping the ranks' models identical: the same layout, the same start, the same bits.

- check_same_layout(module): every rank has parameters of the same names, shapes and dtypes
  (else a ValueError on every rank naming the first difference), checked before any
  gradient is exchanged, because an allreduce of mismatched buffers would silently mix
  unrelated numbers or overrun one.
- broadcast_parameters(module): rank 0's parameters and buffers overwrite the others'.
- check_parameters_in_sync(module): a hash of every parameter, allgathered and compared, so
  "all ranks hold bitwise-identical parameters" is checked rather than assumed.
"""

from __future__ import annotations

import hashlib

import numpy as np

from . import collectives as c
from . import group as g

_MAX_DIMS = 6


def _tensors(module):
    return list(module.named_parameters()) + list(module.named_buffers())


def _name_code(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=7).digest(), "little")


def _layout(named) -> np.ndarray:
    """One row per tensor: hash of the name, hash of the dtype, ndim, the dims (padded)."""
    table = np.full((len(named), 3 + _MAX_DIMS), -1, np.int64)
    for i, (name, t) in enumerate(named):
        shape = t.data.shape
        if len(shape) > _MAX_DIMS:
            raise ValueError(f"parameter {name!r} has {len(shape)} dims; at most {_MAX_DIMS}")
        table[i, :3] = (_name_code(name), _name_code(t.data.dtype.str), len(shape))
        table[i, 3 : 3 + len(shape)] = shape
    return table


def _shape_of(row) -> tuple:
    return tuple(int(d) for d in row[3 : 3 + int(row[2])])


def check_same_layout(module) -> None:
    """Raise ValueError on every rank if any rank's parameters or buffers differ in number,
    name, shape or dtype from rank 0's."""
    named = _tensors(module)
    counts = c.all_gather(np.array([len(named)], np.int64)).ravel()
    if (counts != counts[0]).any():
        per_rank = ", ".join(f"rank {r}: {int(c)}" for r, c in enumerate(counts))
        raise ValueError(f"the ranks' models have different numbers of tensors ({per_rank})")
    tables = c.all_gather(_layout(named))
    for rank in range(1, len(tables)):
        for i in range(len(named)):
            a, b = tables[0][i], tables[rank][i]
            if np.array_equal(a, b):
                continue
            name = named[i][0]  # this rank's name for tensor i; the hash says if it agrees
            if a[0] != b[0]:
                problem = f"is named differently on rank 0 and rank {rank}"
            elif a[1] != b[1]:
                problem = f"has different dtypes on rank 0 and rank {rank}"
            else:
                problem = f"has shape {_shape_of(a)} on rank 0 but {_shape_of(b)} on rank {rank}"
            raise ValueError(
                f"the ranks' models differ: tensor #{i} ({name!r} on rank {g.get_rank()}) "
                f"{problem}; every rank must build the same model"
            )


def broadcast_parameters(module, src: int = 0) -> None:
    """Overwrite every rank's parameters and buffers with rank `src`'s (same layout needed:
    call check_same_layout first if unsure)."""
    for _, t in _tensors(module):
        c.broadcast(t.data, src)


def parameter_digest(module) -> bytes:
    """A 16-byte hash of every parameter's and buffer's bytes, in order."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in _tensors(module):
        h.update(name.encode())
        h.update(np.ascontiguousarray(t.data).tobytes())
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
