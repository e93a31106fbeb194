"""Forward values of every core op against NumPy, driven by the table in ops_table.py.

References are computed in float64 from the same inputs; results must agree to a few ulps of the
result's dtype and keep it (float32 stays float32, also when mixed with Python scalars).
RuntimeWarnings are errors, so an overflow inside an op (sigmoid(-1e4)) fails its test.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ops_table import BINARY, INDEX_EXAMPLES, MATMUL_EXAMPLES, OPS
from strategies import FLOAT_DTYPES, Domain, arrays, assert_close, broadcast_shapes

import minigrad as mg


def _as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


@pytest.mark.parametrize("op", OPS, ids=repr)
@settings(max_examples=40)
@given(data=st.data())
def test_forward_matches_numpy(op, data):
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES), label="dtype")
    in_shapes, kwargs = data.draw(op.cases(4, 4), label="case")
    values = [data.draw(arrays(dtype, s, op.domain(i))) for i, s in enumerate(in_shapes)]
    requires = data.draw(st.lists(st.booleans(), min_size=len(values), max_size=len(values)))
    inputs = [mg.tensor(v, requires_grad=r) for v, r in zip(values, requires, strict=True)]

    outs = _as_list(op.fn(*inputs, **kwargs))

    f64 = [v.astype(np.float64) for v in values]
    expected = _as_list(op.ref(*f64, **kwargs))
    scale = op.scale(*[np.abs(v) for v in f64], **kwargs) if op.scale else None
    assert len(outs) == len(expected)
    for out, ref in zip(outs, expected, strict=True):
        assert isinstance(out, mg.Tensor)
        assert out.dtype == dtype, f"{op.name}: {dtype} in, {out.dtype} out"
        assert_close(out.data, ref, dtype, op.ulps, scale, what=op.name)
        assert out.requires_grad == any(requires)
        if not any(out is t for t in inputs):  # reshape to the same shape may return x itself
            assert (out.grad_fn is not None) == any(requires)
    for t, v in zip(inputs, values, strict=True):
        np.testing.assert_array_equal(t.data, v, err_msg=f"{op.name} modified its input")


# ----- Python scalars and NumPy arrays on either side ---------------------------------------------
OTHER_KINDS = ["int", "float", "numpy_scalar", "array32", "array64"]


def _other(op, position, kind, rng):
    """An operand that is not a Tensor, from the op's domain at `position`."""
    domain = op.domain(position)
    if kind in ("int", "float", "numpy_scalar"):
        pool = [2, 3, -2] if kind == "int" else [0.5, 2.5, -1.5]
        value = next(v for v in pool if domain.contains(v))
        return np.float64(value) if kind == "numpy_scalar" else value
    dtype = np.float32 if kind == "array32" else np.float64
    return domain.sample(rng, (3,) if kind == "array32" else (2, 1), dtype)


@pytest.mark.parametrize("kind", OTHER_KINDS)
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("op", BINARY, ids=repr)
def test_binary_ops_mix_with_scalars_and_arrays(op, side, kind):
    rng = np.random.default_rng(0)
    t_pos, o_pos = (1, 0) if side == "left" else (0, 1)
    t = mg.tensor(op.domain(t_pos).sample(rng, (2, 3), np.float32), requires_grad=True)
    other = _other(op, o_pos, kind, rng)
    args = (other, t) if side == "left" else (t, other)

    out = op.fn(*args)

    # Scalars take the tensor's dtype (as in PyTorch); arrays promote as NumPy does.
    expected_dtype = np.float64 if kind == "array64" else np.float32
    assert isinstance(out, mg.Tensor) and out.dtype == expected_dtype
    ref = op.ref(*[np.asarray(a.data if isinstance(a, mg.Tensor) else a, np.float64) for a in args])
    assert_close(out.data, ref, expected_dtype, op.ulps, what=f"{op.name} {side} {kind}")
    out.sum().backward()
    assert t.grad.shape == t.shape and t.grad.dtype == np.float32
    assert np.isfinite(t.grad).all()


def test_reflected_operators_with_scalars():
    t = mg.tensor([1.0, 2.0, 4.0])
    np.testing.assert_array_equal((2 - t).data, [1.0, 0.0, -2.0])
    np.testing.assert_array_equal((8 / t).data, [8.0, 4.0, 2.0])
    np.testing.assert_array_equal((2**t).data, [2.0, 4.0, 16.0])
    np.testing.assert_array_equal((t / 4).data, [0.25, 0.5, 1.0])
    np.testing.assert_array_equal((np.array([1.0, 1.0, 1.0]) - t).data, [0.0, -1.0, -3.0])
    result = np.ones((2, 3), np.float32) * t  # NumPy defers to the Tensor
    assert isinstance(result, mg.Tensor) and result.shape == (2, 3)
    assert isinstance(np.eye(3, dtype=np.float32) @ t, mg.Tensor)


def test_integer_tensors_stay_integer_with_integer_scalars():
    i = mg.tensor([3, 1, 2])
    assert i.dtype == np.int64
    for result in (i + 1, 1 + i, i - 1, 2 * i, i * 2, -i):
        assert result.dtype == np.int64, result.dtype
    np.testing.assert_array_equal((i - 1).data, [2, 0, 1])
    assert (i / 2).dtype.kind == "f"
    assert (i + 0.5).dtype.kind == "f"
    x = mg.arange(6).reshape(2, 3)
    last = mg.tensor([2, 1]) - 1  # the last valid step of each sequence, as an index
    np.testing.assert_array_equal(x[mg.arange(2), last].data, [1, 3])


def test_python_floats_take_the_default_dtype(default_float64):
    assert mg.tensor([1.0, 2.0]).dtype == np.float64
    assert mg.zeros(2).dtype == np.float64 and mg.randn(2).dtype == np.float64
    t = mg.tensor([1.0, 2.0], dtype=mg.float32)
    assert (t * 0.5).dtype == np.float32 and (0.5 * t).dtype == np.float32


# ----- comparisons --------------------------------------------------------------------------------
COMPARISONS = [
    ("<", lambda a, b: a < b, np.less),
    ("<=", lambda a, b: a <= b, np.less_equal),
    (">", lambda a, b: a > b, np.greater),
    (">=", lambda a, b: a >= b, np.greater_equal),
    ("==", lambda a, b: a == b, np.equal),
    ("!=", lambda a, b: a != b, np.not_equal),
]


@pytest.mark.parametrize("name, fn, ref", COMPARISONS, ids=[c[0] for c in COMPARISONS])
def test_comparisons_give_bool_tensors_without_gradient(name, fn, ref):
    a = np.array([[0.0, 1.0, 2.0]], np.float32)
    b = np.array([[1.0], [2.0]], np.float32)
    t = mg.tensor(a, requires_grad=True)
    u = mg.tensor(b, requires_grad=True)
    cases = [
        (fn(t, u), ref(a, b)),
        (fn(t, 1.0), ref(a, 1.0)),
        (fn(1.0, t), ref(1.0, a)),
        (fn(t, b), ref(a, b)),
        (fn(b, t), ref(b, a)),
    ]
    for got, want in cases:
        assert isinstance(got, mg.Tensor)
        assert got.dtype == np.bool_
        assert not got.requires_grad and got.grad_fn is None
        np.testing.assert_array_equal(got.data, want)


@pytest.mark.parametrize("name, fn, ref", COMPARISONS, ids=[c[0] for c in COMPARISONS])
@settings(max_examples=20)
@given(data=st.data())
def test_comparisons_match_numpy(name, fn, ref, data):
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES))
    a_shape, b_shape = data.draw(broadcast_shapes(2))
    small = Domain(-3.0, 3.0)  # few distinct values, so that ties are common
    a, b = (data.draw(arrays(dtype, s, small)).round() for s in (a_shape, b_shape))
    got = fn(mg.tensor(a), mg.tensor(b))
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got.data, ref(a, b))


def test_where_mixes_tensors_with_scalars():
    cond = np.array([True, False, True])
    t = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for out, want in (
        (mg.where(cond, t, 0.0), [1.0, 0.0, 3.0]),
        (mg.where(cond, -1, t), [-1.0, 2.0, -1.0]),
    ):
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out.data, want)
    both = mg.where(cond, 1.0, 2.0)
    assert both.dtype == np.float32 and both.tolist() == [1.0, 2.0, 1.0]


# ----- edge values and explicit cases -------------------------------------------------------------
EXTREMES = np.array([-1e30, -1e4, -100.0, -20.0, -1.0, 0.0, 1.0, 20.0, 100.0, 1e4, 1e30])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_sigmoid_and_tanh_are_finite_and_warning_free_at_extremes(dtype):
    x = mg.tensor(EXTREMES, dtype=dtype, requires_grad=True)
    s = x.sigmoid()
    assert s.dtype == dtype
    with np.errstate(over="ignore"):
        expected = 1.0 / (1.0 + np.exp(-EXTREMES))
    assert_close(s.data, expected, dtype, ulps=8, what="sigmoid")
    assert s.data[0] == 0.0 and s.data[-1] == 1.0
    (s.sum() + x.tanh().sum()).backward()
    assert np.isfinite(x.grad).all()
    np.testing.assert_array_equal(x.tanh().data, np.tanh(EXTREMES).astype(dtype))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_logsumexp_is_stable_at_large_magnitudes(dtype):
    x = mg.tensor([[1e4, 1e4], [-1e4, -1e4], [1e4, -1e4], [1e30, 0.0]], dtype=dtype)
    log2 = np.log(2.0)
    assert_close(x.logsumexp(axis=1).data, [1e4 + log2, -1e4 + log2, 1e4, 1e30], dtype, ulps=4)
    assert_close(x.logsumexp(dim=0, keepdim=True).data, [[1e30, 1e4]], dtype, ulps=4)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_exp_covers_its_finite_range(dtype):
    top = 88.0 if dtype == np.float32 else 709.0
    x = mg.tensor([-top, -1.0, 0.0, 1.0, top], dtype=dtype)
    assert_close(x.exp().data, np.exp(np.array([-top, -1.0, 0.0, 1.0, top])), dtype, ulps=4)


@pytest.mark.parametrize("index", INDEX_EXAMPLES, ids=repr)
def test_getitem_examples(index):
    x = np.arange(60, dtype=np.float32).reshape(4, 5, 3)
    np.testing.assert_array_equal(mg.tensor(x)[index].data, x[index])


def test_getitem_accepts_lists_and_tensors_as_indices():
    x = np.arange(12.0).reshape(4, 3)
    t = mg.tensor(x)
    np.testing.assert_array_equal(t[[0, 0, 3]].data, x[[0, 0, 3]])
    np.testing.assert_array_equal(t[mg.tensor([2, -1])].data, x[[2, -1]])
    np.testing.assert_array_equal(t[t > 5.0].data, x[x > 5.0])
    np.testing.assert_array_equal(t[mg.tensor([1, 2]), [0, 2]].data, x[[1, 2], [0, 2]])


@pytest.mark.parametrize("shapes", MATMUL_EXAMPLES, ids=repr)
def test_matmul_examples(shapes):
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal(s) for s in shapes)
    out = mg.tensor(a) @ mg.tensor(b)
    assert out.shape == np.matmul(a, b).shape
    assert_close(out.data, np.matmul(a, b), np.float32, ulps=8, scale=np.abs(a) @ np.abs(b))


def test_split_and_chunk_follow_pytorch():
    x = mg.arange(7)
    assert [p.tolist() for p in x.split(3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [p.tolist() for p in x.split([2, 0, 5])] == [[0, 1], [], [2, 3, 4, 5, 6]]
    assert [len(p) for p in mg.arange(6).chunk(4)] == [2, 2, 2]
    assert [p.shape for p in mg.zeros(2, 5).chunk(2, dim=1)] == [(2, 3), (2, 2)]


def test_reductions_of_a_scalar_accept_dim_0_and_minus_1():
    s = mg.tensor(3.0, requires_grad=True)
    for method in ("sum", "mean", "max", "min", "logsumexp"):
        for dim in (0, -1, None):
            out = getattr(s, method)(dim=dim)
            if method in ("max", "min") and dim is not None:  # (values, indices), as PyTorch
                out, index = out
                assert index.shape == () and index.item() == 0
            assert out.shape == () and out.item() == pytest.approx(3.0)
    s.sum(0).backward()
    assert s.grad == 1.0
