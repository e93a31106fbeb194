"""Hypothesis strategies and value domains for the op tests, and an ulp-based comparison.

Everything here is generic: shapes, broadcasting, axes, NumPy indices, value domains. Op-specific
tables live beside the tests that use them (tests/ops_table.py). A plain module, not conftest.py:
`from conftest import ...` finds whichever conftest pytest loaded last (tests/examples/ has one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ----- shapes -------------------------------------------------------------------------------------
def shapes(min_dims=0, max_dims=3, min_side=0, max_side=4):
    return hnp.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    )


def broadcast_shapes(num_shapes, min_dims=0, max_dims=3, min_side=0, max_side=4):
    """Tuples of `num_shapes` shapes that broadcast together (size-0 and size-1 dims included)."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes,
        min_dims=min_dims,
        max_dims=max_dims,
        min_side=min_side,
        max_side=max_side,
    ).map(lambda r: r.input_shapes)


def matmul_shapes(max_batch_dims=2, min_side=0, max_side=4):
    """Operand shapes for NumPy's matmul: 1-D or 2-D operands, batch dims that broadcast."""
    return hnp.mutually_broadcastable_shapes(
        signature="(m?,n),(n,p?)->(m?,p?)",
        max_dims=max_batch_dims,
        min_side=min_side,
        max_side=max_side,
    ).map(lambda r: r.input_shapes)


@st.composite
def axes(draw, ndim, allow_none=True):
    """An `axis` argument for a reduction: None, one int or a tuple, negative ints included."""
    options = ["int", "tuple"] if ndim else []
    kind = draw(st.sampled_from((["none"] if allow_none or not options else []) + options))
    if kind == "none":
        return None
    signed = st.integers(0, ndim - 1).flatmap(lambda a: st.sampled_from([a, a - ndim]))
    if kind == "int":
        return draw(signed)
    picked = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(draw(st.sampled_from([a, a - ndim])) for a in picked)


@st.composite
def indices(draw, shape):
    """A NumPy index for an array of `shape`: basic (ints, slices with any step, None,
    Ellipsis), a bare integer array (with repeats), a boolean mask, a tuple of integer arrays,
    or a tuple mixing all of these."""
    kinds = ["basic"]
    if shape and min(shape) > 0:
        kinds += ["int_array", "bool_mask", "array_tuple", "mixed"]
    kind = draw(st.sampled_from(kinds))
    if kind == "basic":
        return draw(hnp.basic_indices(shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True))
    if kind == "int_array":
        n = shape[0]
        idx_shape = draw(shapes(min_dims=1, max_dims=2, min_side=1, max_side=5))
        return draw(hnp.arrays(np.int64, idx_shape, elements=st.integers(-n, n - 1)))
    if kind == "bool_mask":
        k = draw(st.integers(1, len(shape)))
        return draw(hnp.arrays(np.bool_, shape[:k]))
    if kind == "array_tuple":
        result = draw(shapes(min_dims=0, max_dims=2, min_side=1, max_side=4))
        return draw(hnp.integer_array_indices(shape, result_shape=st.just(result)))
    # mixed: one entry per dim, optionally with a leading None or Ellipsis
    length = draw(st.integers(1, 4))
    parts = []
    for n in shape:
        part = draw(st.sampled_from(["int", "slice", "array", "full"]))
        if part == "int":
            parts.append(draw(st.integers(-n, n - 1)))
        elif part == "slice":
            step = draw(st.sampled_from([1, 2, -1, -2]))
            start = draw(st.one_of(st.none(), st.integers(-n, n - 1)))
            parts.append(slice(start, None, step))
        elif part == "array":
            arr = draw(hnp.arrays(np.int64, (length,), elements=st.integers(-n, n - 1)))
            parts.append(arr)
        else:
            parts.append(slice(None))
    if draw(st.booleans()):
        mask_dim = draw(st.integers(0, len(shape) - 1))
        if not any(isinstance(p, np.ndarray) for p in parts):
            parts[mask_dim] = draw(hnp.arrays(np.bool_, (shape[mask_dim],)))
    prefix = draw(st.sampled_from([(), (None,), (Ellipsis,)]))
    if prefix == (Ellipsis,):
        parts = parts[draw(st.integers(0, len(parts))) :]
    return prefix + tuple(parts)


# ----- values -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Domain:
    """Values an op accepts: [lo, hi] minus (-gap, gap), and minus `gap` around `avoid` points
    (kinks where finite differences are meaningless). `lo32`/`hi32` narrow the range in float32
    (exp overflows float32 above 88.7)."""

    lo: float
    hi: float
    gap: float = 0.0
    avoid: tuple = ()
    lo32: float | None = None
    hi32: float | None = None

    def bounds(self, dtype):
        if np.dtype(dtype) == np.float32:
            lo = self.lo if self.lo32 is None else self.lo32
            hi = self.hi if self.hi32 is None else self.hi32
            return float(np.float32(lo)), float(np.float32(hi))
        return float(self.lo), float(self.hi)

    def clear(self, v) -> bool:
        """v keeps out of the gap around zero and away from the avoided points."""
        return abs(v) >= self.gap and all(abs(v - a) >= self.gap for a in self.avoid)

    def contains(self, v) -> bool:
        return self.lo <= v <= self.hi and self.clear(v)

    def elements(self, dtype):
        """A hypothesis strategy for one element: the bounds, zero, tiny and huge values."""
        lo, hi = self.bounds(dtype)
        width = np.dtype(dtype).itemsize * 8
        if self.gap > 0 and lo < 0 < hi:
            gap = float(np.asarray(self.gap, dtype))
            return st.one_of(
                st.floats(lo, -gap, width=width), st.floats(gap, hi, width=width)
            ).filter(self.clear)
        return st.floats(lo, hi, width=width).filter(self.clear)

    def sample(self, rng, shape, dtype=np.float64):
        """Well-spread random values (for gradient checks), away from gaps and kinks."""
        lo, hi = self.bounds(dtype)
        out = np.empty(shape, dtype)
        bad = np.ones(shape, bool)
        while bad.any():
            out[bad] = rng.uniform(lo, hi, size=int(bad.sum()))
            bad = np.abs(out) < self.gap
            for a in self.avoid:
                bad |= np.abs(out - a) < self.gap
        return out


def arrays(dtype, shape, domain: Domain):
    return hnp.arrays(dtype, shape, elements=domain.elements(dtype))


def assert_close(actual, expected, dtype, ulps=1.0, scale=None, what=""):
    """|actual - expected| <= ulps * eps(dtype) * (|expected| + scale), elementwise.

    `expected` is computed in float64; `scale` is the magnitude that rounding errors grow with
    when it is larger than the result (the sum of |x| for a sum, |a| @ |b| for a matmul).
    A floor of `ulps` smallest normals admits subnormal results.
    """
    info = np.finfo(dtype)
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    magnitude = np.abs(expected) if scale is None else np.abs(expected) + np.asarray(scale)
    tol = ulps * float(info.eps) * magnitude + ulps * float(info.smallest_normal)
    both_inf = np.isinf(expected) & (actual == expected)
    with np.errstate(invalid="ignore"):
        err = np.abs(actual.astype(np.float64) - expected)
    bad = ~((err <= tol) | both_inf)
    if bad.any():
        i = tuple(int(j) for j in np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} elements differ, first at {i}: "
            f"got {actual[i]!r}, expected {expected[i]!r} (tolerance {tol[i]:.3g})"
        )
