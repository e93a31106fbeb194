"""Helpers for the ops' tangent rules (forward mode, `mg.jvp`).

Each op's `jvp(out, *tangents)` sits next to its forward and backward. `out` is the forward's
result; each tangent is None (that input carries none: a zero tangent) or an array shaped
(K,) + the input's shape, K directions propagated at once (K = 1 for a plain jvp). The rule
returns the output's tangent, shaped (K,) + something that broadcasts to `out.shape`; the
engine (`minigrad/forward_ad.py`) broadcasts and casts it. A leading K axis lets elementwise
rules broadcast tangents against the saved primal arrays unchanged; rules that name axes shift
them by one (`shifted`).
"""

from __future__ import annotations

import numpy as np


def lift(t, ndim: int):
    """A tangent (K,) + shape as (K, 1, ..., 1) + shape with `ndim` dims after K, so that it
    broadcasts like an operand of rank `ndim` would (size-1 dims go after the K axis)."""
    if t is None or t.ndim - 1 >= ndim:
        return t
    return t.reshape(t.shape[:1] + (1,) * (ndim - t.ndim + 1) + t.shape[1:])


def plus(a, b):
    """a + b where either may be None (a zero tangent); ranks are aligned first."""
    if a is None:
        return b
    if b is None:
        return a
    n = max(a.ndim, b.ndim) - 1
    return lift(a, n) + lift(b, n)


def minus(a, b):
    return plus(a, None if b is None else -b)


def times(t, factor, ndim: int):
    """t * factor with t lifted to `ndim` dims (None stays None)."""
    return None if t is None else lift(t, ndim) * factor


def shifted(axes) -> tuple:
    """Non-negative primal axes as the same axes of a tangent with its leading K axis."""
    return tuple(a + 1 for a in axes)


def zeros_for(like, shape):
    """A zero tangent (K,) + shape for an input without one among inputs with one (cat,
    stack), K and the dtype taken from `like`, a tangent that exists."""
    return np.zeros(like.shape[:1] + tuple(shape), dtype=like.dtype)
