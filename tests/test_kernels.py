"""minigrad.kernels: every public function equals its NumPy reference on both dispatch paths."""

import contextlib
import math
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
import minigrad.graph
import minigrad.kernels as K
from minigrad.kernels import formulas as F
from minigrad.kernels import reference as R

ROOT = pathlib.Path(__file__).resolve().parents[1]
PATHS = ["numpy", "numba"]
DTYPES = [np.float32, np.float64]

# A first call compiles (about a second); hypothesis must not count that against a deadline.
SETTINGS = settings(deadline=None, max_examples=60)


@contextlib.contextmanager
def forced(path):
    """Send every kernel down one dispatch path, whatever the size."""
    saved_min, saved_max = dict(K.MIN_SIZE), dict(K.MAX_SIZE)
    K.MIN_SIZE.update(dict.fromkeys(saved_min, 0 if path == "numba" else math.inf))
    K.MAX_SIZE.update(dict.fromkeys(saved_max, math.inf))
    try:
        yield
    finally:
        K.MIN_SIZE.update(saved_min)
        K.MAX_SIZE.update(saved_max)


def finite(dtype, bound=10.0):
    width = 32 if dtype == np.float32 else 64
    return st.floats(-bound, bound, width=width)


def float_arrays(dtype, shape, bound=10.0):
    return hnp.arrays(dtype, shape, elements=finite(dtype, bound))


shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=9)


@st.composite
def pairs(draw, bound=10.0):
    """Two arrays of one float dtype and shape, sometimes views that are not contiguous."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(shapes)
    a = draw(float_arrays(dtype, shape, bound))
    b = draw(float_arrays(dtype, shape, bound))
    if a.ndim >= 2 and draw(st.booleans()):
        a, b = a.T, b.T
    return a, b


def assert_same(actual, expected):
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)


# --- elementwise backward ----------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", ["tanh_backward", "sigmoid_backward", "relu_backward"])
@SETTINGS
@given(ab=pairs())
def test_elementwise_backward_matches_reference(path, name, ab):
    g, y = ab
    with forced(path):
        out = getattr(K, name)(g, y)
    assert isinstance(out, np.ndarray)  # also for 0-d inputs, where NumPy gives a scalar
    # Same operations in the same order, so equal bit for bit.
    assert_same(out, getattr(R, name)(g, y))
    assert not np.shares_memory(out, g) and not np.shares_memory(out, y)


@pytest.mark.parametrize("path", PATHS)
def test_relu_backward_keeps_numpy_semantics_at_special_values(path):
    g = np.array([1.0, -2.0, np.nan, 3.0, -4.0, 5.0], np.float32)
    x = np.array([1.0, -1.0, 2.0, 0.0, -0.0, np.nan], np.float32)
    with forced(path):
        out = K.relu_backward(g, x)
    assert_same(out, R.relu_backward(g, x))
    assert np.signbit(out[1])  # -2 * 0 is -0.0, as in NumPy


@pytest.mark.parametrize("path", PATHS)
def test_mixed_dtypes_return_g_dtype(path):
    g = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    y = np.linspace(-0.9, 0.9, 12).reshape(3, 4)  # float64
    with forced(path):
        for name in ["tanh_backward", "sigmoid_backward", "relu_backward"]:
            assert_same(getattr(K, name)(g, y), getattr(R, name)(g, y))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_large_arrays(path, dtype):
    # Past the measured thresholds and across many vector widths, with a remainder.
    rng = np.random.default_rng(0)
    g, y = (rng.standard_normal((33, 517)).astype(dtype) for _ in range(2))
    with forced(path):
        for name in ["tanh_backward", "sigmoid_backward", "relu_backward"]:
            assert_same(getattr(K, name)(g, y), getattr(R, name)(g, y))


# --- sigmoid -----------------------------------------------------------------------------------


def exact_sigmoid(x):
    """sigmoid in a wider type (float64 for float32, x87 long double for float64)."""
    wide = np.float64 if x.dtype == np.float32 else np.longdouble
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x.astype(wide)))


@pytest.mark.parametrize("path", PATHS)
@SETTINGS
@given(
    x=st.sampled_from(DTYPES).flatmap(
        lambda dt: hnp.arrays(
            dt, shapes, elements=st.floats(width=32 if dt == np.float32 else 64, allow_nan=False)
        )
    )
)
def test_sigmoid_matches_reference_and_is_accurate(path, x):
    with forced(path):
        out = K.sigmoid(x)  # any RuntimeWarning (overflow) is an error in this suite
    with np.errstate(over="ignore"):
        ref = R.sigmoid(x)
    assert_same(out, ref)
    info = np.finfo(x.dtype)
    # Relative accuracy of a few ulps everywhere, down to results that underflow.
    np.testing.assert_allclose(out, exact_sigmoid(x), rtol=4 * info.eps, atol=info.tiny)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_special_values(path, dtype):
    x = np.array([-np.inf, -1e30, -50, -0.0, 0.0, 50, 1e30, np.inf, np.nan], dtype)
    with forced(path):
        out = K.sigmoid(x)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out[[0, 1, 3, 4, 6, 7]], [0, 0, 0.5, 0.5, 1, 1])
    assert 0 < out[2] < 1e-21 and out[5] == 1 and np.isnan(out[8])
    np.testing.assert_allclose(out[2], np.exp(dtype(-50)), rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("path", PATHS)
def test_sigmoid_of_a_non_contiguous_view(path):
    gates = np.random.default_rng(1).standard_normal((8, 40)).astype(np.float32)
    with forced(path):
        out = K.sigmoid(gates[:, :30])
    assert_same(out, R.sigmoid(gates[:, :30]))


def test_sigmoid_of_integers_is_float64():
    np.testing.assert_allclose(K.sigmoid(np.array([0, 1])), [0.5, 1 / (1 + np.exp(-1))])


# --- the formulas' copies, tied together over every binary exponent ------------------------------


def grid(dtype):
    """Three mantissas at every exponent from the smallest subnormal to the largest finite
    value, both signs, and the special values."""
    info = np.finfo(dtype)
    exponents = np.arange(info.minexp - info.nmant, info.maxexp)
    mantissas = np.array([1.0, 1.5, 2.0 - 2.0**-10], dtype)
    positive = np.ldexp(mantissas[:, None], exponents[None, :]).ravel()
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, info.max, -info.max], dtype)
    return np.concatenate([positive, -positive, special]).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_numba_kernel_and_its_numpy_twin_agree_everywhere(dtype):
    x = grid(dtype)
    with forced("numba"):
        kernel = K.sigmoid(x)
    assert_same(kernel, R.sigmoid(x))  # NaN where x is NaN, in both
    finite = ~np.isnan(x)
    info = np.finfo(dtype)
    expected = exact_sigmoid(x[finite])
    np.testing.assert_allclose(kernel[finite], expected, rtol=4 * info.eps, atol=info.tiny)


@pytest.mark.parametrize("name", ["tanh_backward", "sigmoid_backward"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_kernels_equal_their_formula_everywhere(name, dtype):
    """The Numba loop inlines the formula the NumPy path evaluates: equal bit for bit on every
    exponent against every other, overflow to inf and NaN included."""
    x = grid(dtype)
    g, y = np.repeat(x, 7), np.tile(x, 7)[::-1].copy()
    with np.errstate(all="ignore"), forced("numba"):  # inf * 0 and overflow are the point here
        kernel = getattr(K, name)(g, y)
    with np.errstate(all="ignore"):
        assert_same(kernel, getattr(R, name)(g, y))


@pytest.mark.needs_jit
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_sigmoid_agrees_with_the_kernel_everywhere(dtype):
    """The fused loops' sigmoid (minigrad/fusion/scalar.py's in float32, libm's exp in
    float64) against the kernel's, forward and backward, from subnormals to inf."""
    x = grid(dtype)
    x = x[~np.isnan(x)]
    step = mg.fuse(lambda t: (t * 1).sigmoid() * 1)  # exact multiplications: three ops fuse
    t = mg.tensor(x, requires_grad=True)
    out = step(t)
    assert [node.name for node in minigrad.graph.walk(out)[0]] == ["Fused(mul, sigmoid, mul)"]
    out.sum().backward()
    expected = K.sigmoid(x)
    eps, tiny = np.finfo(dtype).eps, np.finfo(dtype).tiny
    np.testing.assert_allclose(out.data, expected, rtol=4 * eps, atol=tiny)
    # 1 - s amplifies a last-bit difference of s near 1: the gradient agrees to eps absolutely.
    grad = K.sigmoid_backward(np.ones_like(expected), expected)
    np.testing.assert_allclose(t.grad, grad, rtol=4 * eps, atol=2 * eps)


@pytest.mark.parametrize("formula", [F.tanh_grad, F.sigmoid_grad])
@pytest.mark.parametrize("dtype", DTYPES)
def test_fusion_template_computes_the_formula(formula, dtype):
    """The fused loops' source is made from the formula; evaluated, it computes the formula."""
    x = grid(dtype)
    g, out = np.repeat(x, 5), np.tile(x, 5)
    source = F.template(formula).format(g="g", out="out")
    one = dtype(1)
    with np.errstate(all="ignore"):
        assert_same(eval(source, {"g": g, "out": out, "_1": one}), formula(g, out, one))


def test_template_keeps_the_order_of_operations():
    def formula(g, x, _2):
        return -g / (_2 - x) + 1 - 3 * x

    assert F.template(formula) == "((((-{g}) / (_2 - {x})) + 1) - (3 * {x}))"


# --- sum_rows ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@SETTINGS
@given(
    g=st.sampled_from(DTYPES).flatmap(
        lambda dt: float_arrays(dt, st.tuples(st.integers(0, 40), st.integers(0, 40)))
    ),
    transpose=st.booleans(),
)
def test_sum_rows_matches_reference(path, g, transpose):
    if transpose:
        g = g.T
    with forced(path):
        out = K.sum_rows(g)
    assert_same(out, R.sum_rows(g))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2048, 65), (37, 300), (5, 3), (1, 7), (0, 4), (4, 0)])
def test_sum_rows_shapes(path, dtype, shape):
    g = np.random.default_rng(2).standard_normal(shape).astype(dtype)
    with forced(path):
        assert_same(K.sum_rows(g), R.sum_rows(g))


# --- index_add ---------------------------------------------------------------------------------


@st.composite
def scatter_cases(draw):
    """out (n, ...), idx of any shape with many duplicates and negative indices, src to match."""
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(1, 6))
    rest = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=5))
    idx_shape = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=12))
    idx_dtype = draw(st.sampled_from([np.int64, np.int32, np.uint8]))
    low = 0 if idx_dtype == np.uint8 else -n
    idx = draw(hnp.arrays(idx_dtype, idx_shape, elements=st.integers(low, n - 1)))
    out = draw(float_arrays(dtype, (n, *rest)))
    src = draw(float_arrays(dtype, idx_shape + rest))
    return out, idx, src


@pytest.mark.parametrize("path", PATHS)
@SETTINGS
@given(case=scatter_cases(), layout=st.sampled_from(["C", "F", "slice"]))
def test_index_add_matches_np_add_at(path, case, layout):
    out, idx, src = case
    expected = out.copy()
    np.add.at(expected, idx, src)
    if layout == "F":
        out = np.asfortranarray(out)
    elif layout == "slice":  # a strided view into a larger array: must be updated in place
        big = np.zeros((out.shape[0], 2, *out.shape[1:]), out.dtype)
        big[:, 0] = out
        out = big[:, 0]
    with forced(path):
        result = K.index_add(out, idx, src)
    assert result is out
    # np.add.at adds in index order, as the kernel does: equal bit for bit.
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_index_add_embedding_gradient(path, dtype):
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 65, 2048)
    src = rng.standard_normal((2048, 64)).astype(dtype)
    out, expected = np.zeros((65, 64), dtype), np.zeros((65, 64), dtype)
    with forced(path):
        K.index_add(out, idx, src)
    R.index_add(expected, idx, src)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("bad", [5, -6, 100])
def test_index_add_out_of_bounds_raises_and_writes_nothing(path, bad):
    out = np.zeros((5, 3))
    idx = np.array([0, 1, bad, 2])
    with forced(path), pytest.raises(IndexError):
        K.index_add(out, idx, np.ones((4, 3)))
    if path == "numba":  # the kernel checks every index before it writes
        assert not out.any()


@pytest.mark.parametrize("path", PATHS)
def test_index_add_casts_like_np_add_at(path):
    out = np.zeros((3, 2), np.float32)
    src = np.arange(8.0).reshape(4, 2)  # float64 into float32: NumPy's path
    expected = out.copy()
    np.add.at(expected, [0, 2, 2, 1], src)
    with forced(path):
        K.index_add(out, [0, 2, 2, 1], src)
    np.testing.assert_array_equal(out, expected)


# --- addmm -------------------------------------------------------------------------------------


@SETTINGS
@given(
    dtype=st.sampled_from(DTYPES),
    mkn=st.tuples(*[st.integers(0, 9)] * 3),
    c_kind=st.sampled_from(["row", "full", "column", "scalar", "python", "float32 row"]),
    b_transposed=st.booleans(),
    data=st.data(),
)
def test_addmm_matches_reference(dtype, mkn, c_kind, b_transposed, data):
    m, k, n = mkn
    a = data.draw(float_arrays(dtype, (m, k)))
    b = data.draw(float_arrays(dtype, (n, k) if b_transposed else (k, n)))
    b = b.T if b_transposed else b
    c = {
        "row": lambda: data.draw(float_arrays(dtype, (n,))),
        "full": lambda: data.draw(float_arrays(dtype, (m, n))),
        "column": lambda: data.draw(float_arrays(dtype, (m, 1))),
        "scalar": lambda: np.array(1.5, dtype),
        "python": lambda: 1.5,
        "float32 row": lambda: data.draw(float_arrays(np.float32, (n,))),
    }[c_kind]()
    assert_same(K.addmm(c, a, b), R.addmm(c, a, b))


def test_addmm_promotes_like_numpy():
    a = np.ones((2, 3), np.float32)
    b = np.ones((3, 4), np.float32)
    out = K.addmm(np.zeros(4), a, b)  # float64 bias: the result is float64, as c + a @ b
    assert out.dtype == np.float64
    with pytest.raises(ValueError):
        K.addmm(np.zeros(5), a, b)


# --- the Numba layer itself --------------------------------------------------------------------


@pytest.mark.needs_jit
@pytest.mark.parametrize("name", ["tanh_backward", "sigmoid_backward", "relu_backward", "neg_abs"])
def test_elementwise_kernels_vectorise(name):
    """A branch or a float64 constant in the loop body would stop LLVM vectorising."""
    from numba import njit

    nb = K._compiled()
    # Compiled afresh, as Numba shows no IR for code loaded from its cache.
    kernel = njit(**nb.OPTIONS)(getattr(nb, name).py_func)
    x = np.ones(64, np.float32)
    kernel(*([x] * (kernel.py_func.__code__.co_argcount - 1)), np.empty_like(x))
    ir = kernel.inspect_llvm(kernel.signatures[0])
    assert re.search(r"<\d+ x float>", ir), f"{name} did not vectorise"


def run_python(code, **env):
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
        check=True,
    ).stdout


# Loads the kernel package from its files alone, so that what the rest of minigrad imports
# does not count.
STANDALONE = f"""
import importlib.util, sys
p = {str(ROOT / "minigrad" / "kernels" / "__init__.py")!r}
spec = importlib.util.spec_from_file_location(
    "minigrad_kernels", p, submodule_search_locations=[p.rsplit("/", 1)[0]])
K = importlib.util.module_from_spec(spec)
sys.modules["minigrad_kernels"] = K
# Numba's cache records the module name: kernels compiled under this alias must not land
# in the package's cache, or `import minigrad` would later load them and fail.
import os, tempfile
os.environ["NUMBA_CACHE_DIR"] = os.path.join(
    tempfile.gettempdir(), "minigrad-kernels-alias")
spec.loader.exec_module(K)
"""


def test_import_neither_imports_numba_nor_compiles():
    out = run_python(STANDALONE + "print('numba' in sys.modules, K._nb is None)")
    assert out.split() == ["False", "True"]


def test_works_with_jit_disabled():
    code = (
        STANDALONE
        + """
import math
import numpy as np
assert all(v == math.inf for v in K.MIN_SIZE.values())   # NumPy everywhere by default
K.MIN_SIZE.update(dict.fromkeys(K.MIN_SIZE, 0))         # the kernels as plain Python still work
g = np.linspace(-2, 2, 12).reshape(3, 4)
y = np.tanh(g)
assert np.array_equal(K.tanh_backward(g, y), g * (1 - y * y))
assert np.array_equal(K.relu_backward(g, y), g * (y > 0))
assert np.allclose(K.sigmoid(g), 1 / (1 + np.exp(-g)))
assert np.array_equal(K.sum_rows(g), g.sum(axis=0))
out = np.zeros((2, 4)); K.index_add(out, [1, 0, 1], g)
ref = np.zeros((2, 4)); np.add.at(ref, [1, 0, 1], g)
assert np.array_equal(out, ref)
print("ok")
"""
    )
    assert run_python(code, NUMBA_DISABLE_JIT="1").strip() == "ok"


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 40),
    cols=st.sampled_from([3, 255, 256, 300]),
    k=st.integers(1, 20),
    dtype=st.sampled_from([np.float32, np.float64]),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_linear_equals_x_times_w_transposed_in_either_orientation(rows, cols, k, dtype, bias, seed):
    """kernels.linear runs some products as (w @ x.T).T (a faster BLAS orientation): the values
    are NumPy's x @ w.T + b to rounding, and the result is C-contiguous like NumPy's."""
    rng = np.random.default_rng(seed)
    x, w = (
        rng.standard_normal((rows, k)).astype(dtype),
        rng.standard_normal((cols, k)).astype(dtype),
    )
    b = rng.standard_normal(cols).astype(dtype) if bias else None
    out = K.linear(x, w, b)
    expected = x @ w.T + (0 if b is None else b)
    assert out.dtype == dtype and out.shape == (rows, cols) and out.flags.c_contiguous
    np.testing.assert_allclose(
        out,
        expected,
        rtol=1e-4 if dtype == np.float32 else 1e-12,
        atol=1e-4 if dtype == np.float32 else 1e-12,
    )
