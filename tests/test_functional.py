"""minigrad.nn.functional: losses, softmax family, embedding, dropout, linear, layer_norm.

Every loss is checked three ways: against a NumPy reference written from its definition,
by finite differences in float64, and for stability at logits of magnitude 1e4 in float32.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
import minigrad.nn.functional as F


def rng(seed=0):
    return np.random.default_rng(seed)


def t64(a, grad=True):
    return mg.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


# ----- NumPy references, from the definitions ----------------------------------------------------
def ref_log_softmax(z, axis):
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=axis, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=axis, keepdims=True))


def ref_cross_entropy(x, t, weight=None, ignore_index=-100, reduction="mean", smoothing=0.0):
    """PyTorch's definition, element by element: classes on axis 1 (axis 0 if x is 1-D)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x, t = x[None], np.asarray(t)[None]
    logp = np.moveaxis(ref_log_softmax(x, 1), 1, -1).reshape(-1, x.shape[1])
    t = np.asarray(t).reshape(-1)
    n_classes = x.shape[1]
    w = np.ones(n_classes) if weight is None else np.asarray(weight, dtype=np.float64)
    losses, wsum = [], 0.0
    for row, target in zip(logp, t, strict=True):
        if target == ignore_index:
            losses.append(0.0)
            continue
        nll = -w[target] * row[target]
        smooth = -(w * row).sum()
        losses.append((1 - smoothing) * nll + smoothing / n_classes * smooth)
        wsum += w[target]
    losses = np.array(losses)
    if reduction == "none":
        shape = np.asarray(x).shape
        return losses.reshape((shape[0],) + shape[2:]) if np.ndim(x) > 1 else losses
    return losses.sum() if reduction == "sum" else losses.sum() / wsum


def ref_bce(x, y, pos_weight=1.0):
    x = np.asarray(x, np.float64)
    sig = 1 / (1 + np.exp(-x))
    return -(pos_weight * y * np.log(sig) + (1 - y) * np.log(1 - sig))


CE_CASES = [
    ((6, 4), None),
    ((5, 3, 7), None),
    ((2, 5, 3, 2), None),
    ((4,), None),
    ((6, 4), "weight"),
    ((3, 4, 5), "weight"),
]


@pytest.mark.parametrize("shape,use_weight", CE_CASES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.25])
def test_cross_entropy_matches_reference_and_gradcheck(shape, use_weight, reduction, smoothing):
    r = rng(sum(shape) * 7 + len(reduction))
    x = r.standard_normal(shape) * 3
    n_classes = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    t = r.integers(0, n_classes, tshape)
    if t.ndim:
        t.reshape(-1)[::3] = -100  # some ignored targets
    w = r.random(n_classes) + 0.5 if use_weight else None
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    out = F.cross_entropy(t64(x), t, w, **kw)
    expect = ref_cross_entropy(x, t, w, reduction=reduction, smoothing=smoothing)
    np.testing.assert_allclose(out.data, expect, rtol=1e-12, atol=1e-12)
    assert mg.gradcheck(lambda x: F.cross_entropy(x, t, w, **kw), [t64(x)])


def test_cross_entropy_custom_ignore_index_and_all_ignored():
    x = rng().standard_normal((4, 3))
    t = np.array([0, 2, 2, 1])
    out = F.cross_entropy(t64(x), t, ignore_index=2)
    np.testing.assert_allclose(out.data, ref_cross_entropy(x, t, ignore_index=2), rtol=1e-12)
    # Every target ignored: the mean is 0/0, NaN as in PyTorch, and the gradient is zero.
    xt = t64(x)
    out = F.cross_entropy(xt, np.full(4, -100), label_smoothing=0.1)
    assert np.isnan(out.item())
    out.backward()
    assert np.all(xt.grad == 0)


@given(
    n=st.integers(1, 6),
    c=st.integers(1, 6),
    smoothing=st.sampled_from([0.0, 0.1, 1.0]),
    seed=st.integers(0, 10_000),
)
def test_cross_entropy_hypothesis(n, c, smoothing, seed):
    r = rng(seed)
    x = r.standard_normal((n, c)) * 5
    t = r.integers(-1, c, n)  # -1 plays ignore_index
    out = F.cross_entropy(t64(x), t, ignore_index=-1, reduction="sum", label_smoothing=smoothing)
    expect = ref_cross_entropy(x, t, ignore_index=-1, reduction="sum", smoothing=smoothing)
    np.testing.assert_allclose(out.data, expect, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_stable_at_huge_logits_float32(smoothing):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4]], dtype=np.float32)
    t = np.array([1, 2, 0])
    xt = mg.tensor(x, requires_grad=True)
    out = F.cross_entropy(xt, t, label_smoothing=smoothing)
    out.backward()
    assert out.dtype == np.float32 and xt.grad.dtype == np.float32
    assert np.isfinite(out.item()) and np.isfinite(xt.grad).all()
    expect = ref_cross_entropy(x, t, smoothing=smoothing)
    np.testing.assert_allclose(out.item(), expect, rtol=1e-6)


def test_cross_entropy_gradient_is_softmax_minus_onehot():
    x = rng().standard_normal((5, 4))
    t = np.array([0, 3, 1, 1, 2])
    xt = t64(x)
    F.cross_entropy(xt, t, reduction="sum").backward()
    np.testing.assert_allclose(xt.grad, np.exp(ref_log_softmax(x, 1)) - np.eye(4)[t], atol=1e-12)


def test_cross_entropy_accepts_tensor_targets_and_module_form():
    x = rng().standard_normal((3, 4))
    t = mg.tensor([1, 0, 3])
    a = F.cross_entropy(t64(x), t)
    b = mg.nn.CrossEntropyLoss()(t64(x), t)
    assert a.item() == b.item() == pytest.approx(ref_cross_entropy(x, t.data))


@pytest.mark.parametrize(
    "x_shape,target,error,match",
    [
        ((4, 3), np.zeros(5, np.int64), ValueError, r"cross_entropy.*\(4, 3\).*\(4,\).*\(5,\)"),
        ((4, 3, 2), np.zeros(4, np.int64), ValueError, r"cross_entropy.*\(4, 2\)"),
        ((4, 3), np.array([0, 1, 3, 0]), IndexError, r"cross_entropy.*3 is out of range.*3 class"),
        ((4, 3), np.array([0, -2, 1, 0]), IndexError, r"cross_entropy.*-2"),
        ((4, 3), np.zeros(4, np.float32), TypeError, r"cross_entropy.*integer.*float32"),
    ],
)
def test_cross_entropy_bad_targets(x_shape, target, error, match):
    with pytest.raises(error, match=match):
        F.cross_entropy(mg.zeros(x_shape), target)


def test_cross_entropy_bad_arguments():
    x, t = mg.zeros((2, 3)), np.array([0, 1])
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(x, t, reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(x, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        F.cross_entropy(x, t, np.ones(4))
    with pytest.raises(TypeError, match="floating"):
        F.cross_entropy(mg.tensor([[1, 2]]), np.array([0]))


# ----- nll_loss ---------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_of_log_softmax_is_cross_entropy(reduction):
    r = rng(3)
    x = r.standard_normal((4, 5, 3))
    t = r.integers(0, 5, (4, 3))
    t[0, 0] = -100
    w = r.random(5) + 0.1
    a = F.nll_loss(F.log_softmax(t64(x), dim=1), t, w, reduction=reduction)
    b = F.cross_entropy(t64(x), t, w, reduction=reduction)
    np.testing.assert_allclose(a.data, b.data, rtol=1e-12)
    assert mg.gradcheck(lambda z: F.nll_loss(z, t, w, reduction=reduction), [t64(x)])


def test_nll_loss_errors():
    with pytest.raises(IndexError, match="nll_loss"):
        F.nll_loss(mg.zeros((2, 3)), np.array([0, 7]))


# ----- softmax family -----------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_log_softmax_and_softmax(dim):
    x = rng(1).standard_normal((3, 4, 5))
    np.testing.assert_allclose(F.log_softmax(t64(x), dim).data, ref_log_softmax(x, dim), atol=1e-12)
    np.testing.assert_allclose(
        F.softmax(t64(x), dim).data, np.exp(ref_log_softmax(x, dim)), atol=1e-12
    )
    assert mg.gradcheck(lambda z: F.log_softmax(z, dim), [t64(x)])
    assert mg.gradcheck(lambda z: F.softmax(z, dim), [t64(x)])


def test_softmax_family_stable_at_huge_logits_float32():
    x = mg.tensor([[1e4, -1e4, 1e4 - 1], [-1e4, -1e4, -1e4]], requires_grad=True)
    ls = F.log_softmax(x, -1)
    s = F.softmax(x, -1)
    assert np.isfinite(ls.data).all() and np.isfinite(s.data).all()
    np.testing.assert_allclose(s.data.sum(-1), 1, rtol=1e-6)
    lse = np.log1p(np.exp(-1))
    np.testing.assert_allclose(ls.data[0], [-lse, -2e4 - lse, -1 - lse], rtol=1e-6)
    (ls.sum() + (s * s).sum()).backward()
    assert np.isfinite(x.grad).all()


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
@pytest.mark.parametrize(("shape", "dim"), [((2, 0, 3), 1), ((0,), 0), ((0, 3), 0), ((0, 3), 1)])
def test_softmax_family_over_an_empty_axis_is_empty(fn, shape, dim):
    # As PyTorch: an empty result of the input's shape and dtype, not NumPy's "zero-size array
    # to reduction operation maximum" error; backward gives an empty gradient.
    x = mg.zeros(shape, requires_grad=True)
    y = fn(x, dim)
    assert y.shape == shape and y.dtype == x.dtype
    (y * 2).sum().backward()
    assert x.grad.shape == shape and x.grad.dtype == x.dtype


def test_softmax_bad_dim():
    with pytest.raises(ValueError, match="softmax: dim 2"):
        F.softmax(mg.zeros((2, 3)), dim=2)


# ----- binary cross-entropy with logits -----------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_reference_and_gradcheck(reduction):
    r = rng(5)
    x, y = r.standard_normal((4, 3)) * 3, r.random((4, 3))
    pw, w = np.array([1.0, 2.0, 0.5]), r.random((4, 3))
    for kwargs, expect in [
        ({}, ref_bce(x, y)),
        ({"pos_weight": pw}, ref_bce(x, y, pw)),
        ({"weight": w}, w * ref_bce(x, y)),
    ]:
        out = F.binary_cross_entropy_with_logits(t64(x), t64(y), reduction=reduction, **kwargs)
        red = {"none": expect, "sum": expect.sum(), "mean": expect.mean()}[reduction]
        np.testing.assert_allclose(out.data, red, rtol=1e-12)

        def fn(a, b, kwargs=kwargs):
            return F.binary_cross_entropy_with_logits(a, b, reduction=reduction, **kwargs)

        assert mg.gradcheck(fn, [t64(x), t64(y)])


def test_bce_with_logits_stable_at_huge_logits_float32():
    x = mg.tensor([1e4, -1e4, 1e4, -1e4, 0.0], requires_grad=True)
    y = mg.tensor([1.0, 0.0, 0.0, 1.0, 0.5])
    out = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    np.testing.assert_allclose(out.data, [0, 0, 1e4, 1e4, np.log(2)], rtol=1e-6)
    out.sum().backward()
    np.testing.assert_allclose(x.grad, [0, 0, 1, -1, 0], atol=1e-6)


def test_bce_with_logits_shape_error():
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits.*\(3,\).*\(2,\)"):
        F.binary_cross_entropy_with_logits(mg.zeros(2), mg.zeros(3))


# ----- mse ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss(reduction):
    r = rng(6)
    x, y = r.standard_normal((3, 4)), r.standard_normal((3, 4))
    out = F.mse_loss(t64(x), t64(y), reduction)
    d2 = (x - y) ** 2
    np.testing.assert_allclose(
        out.data, {"none": d2, "sum": d2.sum(), "mean": d2.mean()}[reduction]
    )
    assert mg.gradcheck(lambda a, b: F.mse_loss(a, b, reduction), [t64(x), t64(y)])
    with pytest.raises(ValueError, match="mse_loss"):
        F.mse_loss(mg.zeros(3), mg.zeros((3, 1)))


# ----- linear, layer_norm, embedding, dropout ---------------------------------------------------
@pytest.mark.parametrize("x_shape", [(5,), (4, 5), (2, 3, 5)])
def test_linear(x_shape):
    r = rng(7)
    x, w, b = r.standard_normal(x_shape), r.standard_normal((3, 5)), r.standard_normal(3)
    np.testing.assert_allclose(F.linear(t64(x), t64(w), t64(b)).data, x @ w.T + b, atol=1e-12)
    assert mg.gradcheck(F.linear, [t64(x), t64(w), t64(b)])
    assert mg.gradcheck(F.linear, [t64(x), t64(w)])
    with pytest.raises(ValueError, match=r"linear: input of shape \(2, 4\).*\(3, 5\)"):
        F.linear(mg.zeros((2, 4)), mg.zeros((3, 5)))


def test_layer_norm():
    r = rng(8)
    x, g, b = r.standard_normal((3, 4, 5)), r.standard_normal(5), r.standard_normal(5)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    expect = (x - mu) / np.sqrt(var + 1e-5) * g + b
    np.testing.assert_allclose(F.layer_norm(t64(x), 5, t64(g), t64(b)).data, expect, atol=1e-12)
    assert mg.gradcheck(lambda x, g, b: F.layer_norm(x, (5,), g, b), [t64(x), t64(g), t64(b)])
    assert mg.gradcheck(lambda x: F.layer_norm(x, (4, 5)), [t64(x)])
    with pytest.raises(ValueError, match="layer_norm"):
        F.layer_norm(mg.zeros((2, 3)), 4)


def test_embedding_gradient_is_scatter_add_and_padding_gets_none():
    r = rng(9)
    w = r.standard_normal((6, 3))
    idx = np.array([[1, 2, 1], [0, 5, 1]])
    wt = t64(w)
    out = F.embedding(idx, wt, padding_idx=1)
    np.testing.assert_array_equal(out.data, w[idx])
    g = r.standard_normal(out.shape)
    out.backward(g)
    expect = np.zeros_like(w)
    np.add.at(expect, idx, g)
    expect[1] = 0
    np.testing.assert_allclose(wt.grad, expect, atol=1e-12)
    assert mg.gradcheck(lambda w: F.embedding(idx, w), [t64(w)])


def test_embedding_errors():
    w = mg.zeros((4, 2))
    with pytest.raises(IndexError, match=r"embedding: index 4 .*\(4, 2\)"):
        F.embedding(np.array([0, 4]), w)
    with pytest.raises(TypeError, match="embedding: indices must be integers"):
        F.embedding(np.array([0.0]), w)


def test_dropout():
    mg.manual_seed(0)
    x = mg.ones(200, 100, requires_grad=True)
    y = F.dropout(x, 0.3)
    kept = y.data != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y.data[kept], 1 / 0.7, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, y.data)  # gradient goes through the same mask
    assert F.dropout(x, 0.3, training=False) is x
    assert F.dropout(x, 0.0) is x
    assert np.all(F.dropout(x, 1.0).data == 0)
    with pytest.raises(ValueError, match="dropout: p"):
        F.dropout(x, 1.5)
    mg.manual_seed(3)
    a = F.dropout(x, 0.5).data
    mg.manual_seed(3)
    np.testing.assert_array_equal(a, F.dropout(x, 0.5).data)  # the global seed controls it


def test_activations_and_one_hot():
    x = mg.tensor([-1.0, 0.5])
    np.testing.assert_allclose(F.relu(x).data, [0, 0.5])
    np.testing.assert_allclose(F.tanh(x).data, np.tanh([-1.0, 0.5]), rtol=1e-6)
    np.testing.assert_allclose(F.sigmoid(x).data, 1 / (1 + np.exp([1.0, -0.5])), rtol=1e-6)
    np.testing.assert_array_equal(F.one_hot(mg.tensor([2, 0]), 3).data, [[0, 0, 1], [1, 0, 0]])


@pytest.mark.parametrize("n_in, n_out", [(0, 3), (2, 0), (0, 0)])
def test_linear_with_an_empty_dimension_runs_both_ways(n_in, n_out):
    x = mg.ones(4, n_in, requires_grad=True)
    w = mg.ones(n_out, n_in, requires_grad=True)
    b = mg.ones(n_out, requires_grad=True)
    y = F.linear(x, w, b)
    (y * 2).sum().backward()
    assert y.shape == (4, n_out)
    np.testing.assert_array_equal(y.data, np.ones((4, n_out)))  # the empty product is 0
    assert x.grad.shape == (4, n_in) and w.grad.shape == (n_out, n_in)
    np.testing.assert_array_equal(b.grad, np.full(n_out, 8.0))
