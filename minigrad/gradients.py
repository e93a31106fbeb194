"""Gradients in flight: the lazy kinds, and the one table every reverse walk adds them into.

A backward rule may return a plain array, or one of two lazy gradients that the engine keeps
as they are until every term has arrived:
- `SparseGrad`: zero except at an index (getitem's backward), added straight into the
  operand's buffer, so T reads x[t] of a (T, ...) tensor cost one buffer, not T of them;
- `ProductGrad`: a sum of products a_i^T @ b_i (a matmul's weight gradient), so a weight used
  at each of T steps gets one product over T*B rows instead of T thin ones.

`Grads` is the accumulation rule: add with ownership (an array another edge may also hold is
never written into), lazy terms merged lazily, each gradient reduced to its operand's shape.
The tape (`autograd.run_backward`), the scan over time (`fusion/scan.py`) and checkpointing
all add their gradients through it.
"""

from __future__ import annotations

import numpy as np


def sum_to(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Reduce a broadcast gradient back to an operand's shape (the one place this is done)."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, n in enumerate(shape) if n == 1 and grad.shape[i + lead] != 1
    )
    grad = grad.sum(axis=axes, keepdims=True) if axes else grad
    return grad.reshape(shape)


class SparseGrad:
    """A gradient that is zero except at `index`; `scatter(out, index, values)` adds values
    into out at index."""

    __slots__ = ("shape", "index", "values", "scatter")

    def __init__(self, shape, index, values, scatter):
        self.shape, self.index, self.values, self.scatter = shape, index, values, scatter

    def add_into(self, out: np.ndarray) -> np.ndarray:
        self.scatter(out, self.index, self.values)
        return out

    def dense(self, dtype=None) -> np.ndarray:
        return self.add_into(np.zeros(self.shape, dtype=dtype or self.values.dtype))


def _pointer(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def _adjacent(parts: list):
    """One array viewing all of `parts` when they are consecutive rows of one contiguous
    buffer (in order or reversed: a scan's steps write x's gradient into one (T, ...) array,
    and its states are rows of its output), else None. Saves copying them into one."""
    first, base = parts[0], parts[0].base
    if base is None or not base.flags.c_contiguous:
        return None
    shape = first.shape
    for p in parts:  # the cheap tests first: pointers only for a real candidate
        if p.base is not base or p.shape != shape or not p.flags.c_contiguous:
            return None
    step = first.nbytes
    start = _pointer(first)
    sign = 1 if len(parts) == 1 or _pointer(parts[1]) >= start else -1
    for k, p in enumerate(parts):
        if _pointer(p) != start + sign * k * step:
            return None
    low = start if sign > 0 else start - (len(parts) - 1) * step
    offset = low - _pointer(base)
    flat = base.reshape(-1).view(np.uint8)[offset : offset + len(parts) * step]
    rows = flat.view(first.dtype).reshape((len(parts) * first.shape[0],) + first.shape[1:])
    return rows, sign


class ProductGrad:
    """A gradient sum_i a_i^T @ b_i, kept as factors until every term has arrived."""

    __slots__ = ("lefts", "rights")

    def __init__(self, left, right):
        self.lefts, self.rights = [left], [right]

    def copy(self) -> ProductGrad:
        new = ProductGrad(None, None)
        new.lefts, new.rights = list(self.lefts), list(self.rights)
        return new

    def relocate(self, moves: dict) -> None:
        """Factors that are the whole of a buffer in `moves` (id of the buffer -> an array of
        the same size holding the same numbers) become that array, shaped alike: a scan
        moving the row buffers it lent into one result."""
        for factors in (self.lefts, self.rights):
            for k, f in enumerate(factors):
                dest = None if f.base is None else moves.get(id(f.base))
                if dest is not None and dest.size == f.size:
                    factors[k] = dest.reshape(f.shape)

    def extend(self, other: ProductGrad) -> None:
        self.lefts += other.lefts
        self.rights += other.rights

    def dense(self, dtype=None) -> np.ndarray:
        if len(self.lefts) == 1:
            out = self.lefts[0].T @ self.rights[0]
        else:
            left, right = _stacked(self.lefts, self.rights)
            out = left.T @ right
        return out if dtype is None else out.astype(dtype, copy=False)


def _stacked(lefts: list, rights: list):
    """Both factors' terms stacked by rows, pairing term i with term i. Where one side already
    lies so in memory (a scan's x gradient rows, its states), it is used as it lies, in memory
    order, and the other side is copied in that same order (the sum does not depend on it)."""
    found_l, found_r = _adjacent(lefts), _adjacent(rights)
    sign = found_l[1] if found_l else found_r[1] if found_r else 1
    order = (lambda xs: xs) if sign > 0 else (lambda xs: xs[::-1])
    left = found_l[0] if found_l and found_l[1] == sign else np.concatenate(order(lefts))
    right = found_r[0] if found_r and found_r[1] == sign else np.concatenate(order(rights))
    return left, right


_LAZY = (SparseGrad, ProductGrad)


def dense(g, dtype=None) -> np.ndarray:
    """A gradient as a plain array (the array itself when it is one: not to be written into)."""
    if type(g) in _LAZY:
        return g.dense(dtype)
    return g if dtype is None or g.dtype == dtype else g.astype(dtype)


def dense_copy(g, dtype=None) -> np.ndarray:
    """A gradient as a fresh array that the caller may write into."""
    if type(g) in _LAZY:
        return g.dense(dtype)
    return np.array(g, dtype=dtype, copy=True)


def add_into(buf: np.ndarray, g) -> None:
    """buf += g, for each kind of gradient."""
    if type(g) is SparseGrad:
        g.add_into(buf)
    elif type(g) is ProductGrad:
        buf += g.dense()
    else:
        buf += g


class Grads(dict):
    """key -> the gradient summed so far, for one reverse walk (keys: nodes and leaves on the
    tape, slots in a scan's step). Only buffers this table allocated are written into: the
    first gradient of a key may be another edge's array (a step that passes its output
    gradient through, an alias a fused kernel returns), so a second term copies it first."""

    __slots__ = ("owned",)

    def __init__(self):
        super().__init__()
        self.owned = set()

    def add(self, key, g, own: bool = False) -> None:
        """self[key] += g. own: g is a fresh array nothing else holds (the first term only)."""
        old = self.get(key)
        if old is None:
            self[key] = g
            if own:
                self.owned.add(key)
            elif key in self.owned:  # owned once, taken since: this array is not ours
                self.owned.discard(key)
            return
        owned = key in self.owned
        if type(old) is ProductGrad and type(g) is ProductGrad:
            if not owned:
                old = self[key] = old.copy()
                self.owned.add(key)
            old.extend(g)
            return
        if type(old) is not np.ndarray or not owned:
            old = self[key] = dense_copy(old)
            self.owned.add(key)
        add_into(old, g)

    def take(self, key):
        """Remove and return key's gradient (None if none arrived)."""
        return self.pop(key, None)

    def reset(self) -> None:
        self.clear()
        self.owned.clear()
