"""Forward mode: every op's tangent rule, driven by the op table (tests/ops_table.py), against
central differences and against the Jacobian from reverse mode (J v from jvp equals the rows of
vjp's), in float64; batched directions; broadcasting, matmul and indexing edge cases; the
errors; and jvp through the recurrent layers, fused and unfused.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ops_table import BINARY, INDEX_EXAMPLES, MATMUL_EXAMPLES, OPS

import minigrad as mg
from minigrad.autograd import Function

SMALL = (3, 3)


def _flat(out):
    """One tensor or a list of tensors (split, chunk) as one flat tensor."""
    if isinstance(out, (list, tuple)):
        return mg.cat([o.reshape(-1) for o in out]) if out else mg.zeros(0, dtype=mg.float64)
    return out.reshape(-1)


def _case(op, data):
    in_shapes, kwargs = data.draw(op.cases(*SMALL), label="case")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    xs = [mg.tensor(op.grad_domain(i).sample(rng, s)) for i, s in enumerate(in_shapes)]
    return xs, kwargs, rng


def _finite_difference(f, xs, vs, eps=1e-6):
    plus = f(*[mg.tensor(x.data + eps * v) for x, v in zip(xs, vs, strict=True)]).data
    minus = f(*[mg.tensor(x.data - eps * v) for x, v in zip(xs, vs, strict=True)]).data
    return (plus - minus) / (2 * eps)


@pytest.mark.parametrize("op", OPS, ids=repr)
@settings(max_examples=15)
@given(data=st.data())
def test_jvp_matches_finite_differences(op, data):
    xs, kwargs, rng = _case(op, data)
    vs = [rng.standard_normal(x.shape) for x in xs]

    def f(*ts):
        return _flat(op.fn(*ts, **kwargs))

    out, tangent = mg.jvp(f, tuple(xs), tuple(vs))
    assert tangent.shape == out.shape and tangent.dtype == np.float64
    expected = _finite_difference(f, xs, vs)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(tangent.data, expected, rtol=1e-6, atol=1e-7 * scale)


@pytest.mark.parametrize("op", OPS, ids=repr)
@settings(max_examples=10)
@given(data=st.data())
def test_forward_jacobian_equals_the_rows_of_vjp(op, data):
    """One batched jvp (a direction per input element) against one vjp per output element."""
    xs, kwargs, _ = _case(op, data)

    def f(*ts):
        return _flat(op.fn(*ts, **kwargs))

    forward = mg.jacobian(f, tuple(xs), mode="forward")
    reverse = mg.jacobian(f, tuple(xs), mode="reverse")
    for jf, jr, x in zip(forward, reverse, xs, strict=True):
        assert jf.shape == jr.shape == f(*xs).shape + x.shape
        np.testing.assert_allclose(jf.data, jr.data, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("op", OPS, ids=repr)
@settings(max_examples=5)
@given(data=st.data())
def test_float32_tangents_stay_float32_and_agree_with_float64(op, data):
    xs, kwargs, rng = _case(op, data)
    vs = [rng.standard_normal(x.shape) for x in xs]
    tangents = {}
    for dtype in (mg.float32, mg.float64):
        primals = tuple(x.to(dtype) for x in xs)
        out, t = mg.jvp(lambda *ts: _flat(op.fn(*ts, **kwargs)), primals, tuple(vs))
        assert t.dtype == out.dtype == dtype and t.shape == out.shape
        tangents[dtype] = t.data
    top = np.abs(tangents[mg.float64]).max(initial=1.0)
    np.testing.assert_allclose(
        tangents[mg.float32], tangents[mg.float64], rtol=1e-4, atol=1e-5 * top
    )


# ----- explicit cases -----------------------------------------------------------------------------
def _check_against_reverse(f, xs):
    forward = mg.jacobian(f, tuple(xs), mode="forward")
    reverse = mg.jacobian(f, tuple(xs), mode="reverse")
    for jf, jr in zip(forward, reverse, strict=True):
        np.testing.assert_allclose(jf.data, jr.data, rtol=1e-12, atol=1e-12)


BROADCAST_PAIRS = [((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((), (2, 3)), ((2, 1, 3), (4, 1))]


@pytest.mark.parametrize("shapes", BROADCAST_PAIRS, ids=repr)
@pytest.mark.parametrize("op", BINARY, ids=repr)
def test_binary_tangents_broadcast_either_way(op, shapes):
    rng = np.random.default_rng(2)
    for in_shapes in (shapes, shapes[::-1]):
        xs = [mg.tensor(op.grad_domain(i).sample(rng, s)) for i, s in enumerate(in_shapes)]
        _check_against_reverse(op.fn, xs)


@pytest.mark.parametrize("shapes", MATMUL_EXAMPLES, ids=repr)
def test_matmul_tangent_examples(shapes):
    rng = np.random.default_rng(4)
    _check_against_reverse(lambda a, b: a @ b, [mg.tensor(rng.standard_normal(s)) for s in shapes])


@pytest.mark.parametrize("index", INDEX_EXAMPLES, ids=repr)
def test_getitem_tangent_examples(index):
    x = mg.tensor(np.random.default_rng(3).standard_normal((4, 5, 3)))
    _check_against_reverse(lambda t: t[index], [x])


def test_nn_functional_tangents():
    import minigrad.nn.functional as F

    rng = np.random.default_rng(6)
    x = mg.tensor(rng.standard_normal((4, 5)))
    w = mg.tensor(rng.standard_normal((3, 5)))
    b = mg.tensor(rng.standard_normal(3))
    y = mg.tensor(rng.uniform(0, 1, (4, 3)))
    emb = mg.tensor(rng.standard_normal((6, 3)))
    target = np.array([0, 2, 1, 2])
    cases = [
        (lambda x, w, b: F.linear(x, w, b), [x, w, b]),
        (lambda x: F.softmax(x, 1), [x]),
        (lambda x: F.log_softmax(x, 0), [x]),
        (lambda x, w: F.cross_entropy(F.linear(x, w), target, label_smoothing=0.1), [x, w]),
        (lambda x, w: F.cross_entropy(F.linear(x, w), target, reduction="none"), [x, w]),
        (lambda x: F.nll_loss(F.log_softmax(x, 1), target, reduction="sum"), [x]),
        (lambda x, w, y: F.binary_cross_entropy_with_logits(F.linear(x, w), y), [x, w, y]),
        (lambda e: F.embedding(mg.tensor(np.array([[1, 0], [5, 1]])), e, padding_idx=1), [emb]),
        (lambda x: mg.nn.LayerNorm(5).double()(x), [x]),
        (lambda x: x.double().float().double(), [x]),
        (lambda x: x.clone() * 2, [x]),
    ]
    for f, xs in cases:
        _check_against_reverse(f, xs)


def test_batched_directions_equal_one_jvp_each():
    rng = np.random.default_rng(7)
    x, w = mg.tensor(rng.standard_normal((2, 3))), mg.tensor(rng.standard_normal((3, 3)))
    vx, vw = rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 3, 3))

    def f(x, w):
        return (x @ w).tanh().sum(0), x.exp()

    _, (batched_a, batched_b) = mg.jvp(f, (x, w), (vx, vw), batched=True)
    assert batched_a.shape == (4, 3) and batched_b.shape == (4, 2, 3)
    for k in range(4):
        _, (a, b) = mg.jvp(f, (x, w), (vx[k], vw[k]))
        np.testing.assert_allclose(batched_a.data[k], a.data, rtol=1e-14)
        np.testing.assert_allclose(batched_b.data[k], b.data, rtol=1e-14)


def test_tangents_follow_tensors_read_from_a_closure():
    """A parameter passed as a primal carries its tangent where fn reads it by name."""
    lin = mg.nn.Linear(3, 2).double()
    x = mg.tensor(np.ones((1, 3)))
    v = np.ones_like(lin.weight.data)
    _, t = mg.jvp(lambda w: lin(x), (lin.weight,), (v,))
    np.testing.assert_allclose(t.data, np.full((1, 2), 3.0))


def test_output_without_a_tangent_gets_zeros_and_leaves_are_untouched():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    c = mg.tensor([5.0, 6.0])
    out, (tx, tc) = mg.jvp(lambda a: (a * 2, c), (x,), (np.ones(2),))
    np.testing.assert_array_equal(tx.data, [2.0, 2.0])
    np.testing.assert_array_equal(tc.data, [0.0, 0.0])
    assert x.grad is None


# ----- errors -------------------------------------------------------------------------------------
class _NoTangent(Function):
    def forward(self, x):
        return x * 3

    def backward(self, g):
        return (g * 3,)


def test_an_op_without_a_tangent_rule_is_named():
    with pytest.raises(NotImplementedError, match="_NoTangent has no tangent rule"):
        mg.jvp(lambda x: _NoTangent.apply(x), (mg.tensor([1.0]),), (np.ones(1),))
    # ops on tensors without tangents need no rule
    out, t = mg.jvp(
        lambda x: x + _NoTangent.apply(mg.tensor([1.0])), (mg.tensor([1.0]),), (np.ones(1),)
    )
    assert out.item() == 4.0 and t.item() == 1.0


def test_jvp_errors_name_the_function():
    x = mg.tensor([1.0, 2.0])
    with pytest.raises(TypeError, match="jvp: primals must be a tuple"):
        mg.jvp(lambda a: a, x, np.ones(2))
    with pytest.raises(ValueError, match=r"jvp: tangent 0 has shape \(3,\), expected \(2,\)"):
        mg.jvp(lambda a: a, (x,), (np.ones(3),))
    with pytest.raises(ValueError, match="jvp: 1 primals but 2 tangents"):
        mg.jvp(lambda a: a, (x,), (np.ones(2), np.ones(2)))
    with pytest.raises(TypeError, match="jvp: primal 0 is int64"):
        mg.jvp(lambda a: a, (mg.tensor([1, 2]),), (np.ones(2),))
    with pytest.raises(ValueError, match="jvp: tangent 1 has 2 directions, tangent 0 3"):
        mg.jvp(lambda a, b: a + b, (x, x * 1), (np.ones((3, 2)), np.ones((2, 2))), batched=True)
    with pytest.raises(RuntimeError, match="nested"):
        mg.jvp(lambda a: mg.jvp(lambda b: b, (a,), (np.ones(2),))[1], (x,), (np.ones(2),))
    with pytest.raises(TypeError, match="jvp: fn must return a tensor"):
        mg.jvp(lambda a: 3.0, (x,), (np.ones(2),))
    out, _ = mg.jvp(lambda a: a * 2, (x,), (np.ones(2),))  # the state was restored
    assert (x * 2).data.tolist() == out.data.tolist() == [2.0, 4.0]


# ----- recurrent layers, fused and unfused --------------------------------------------------------
@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize(
    "kind, options",
    [("LSTM", {}), ("GRU", {}), ("RNN", {}), ("LSTM", {"num_layers": 2, "bidirectional": True})],
    ids=["lstm", "gru", "rnn", "lstm-2-layer-bidirectional"],
)
def test_jvp_through_recurrent_layers(kind, options, fuse):
    """<u, J v> from jvp equals <J^T u, v> from vjp, for the input and every parameter."""
    import models

    mg.manual_seed(0)
    layer = getattr(models, kind)(3, 4, fuse=fuse, **options).to(mg.float64)
    rng = np.random.default_rng(8)
    x = mg.tensor(rng.standard_normal((5, 2, 3)))
    params = tuple(layer.parameters())
    primals = (x,) + params
    vs = tuple(rng.standard_normal(p.shape) for p in primals)

    def f(x, *ps):
        return layer(x)[0]

    out, t = mg.jvp(f, primals, vs)
    assert out.shape == t.shape == (5, 2, 4 * (2 if options.get("bidirectional") else 1))
    u = rng.standard_normal(out.shape)
    _, pullback = mg.vjp(lambda x: layer(x)[0], x)
    (gx,) = pullback(u)
    # The parameters' part: reverse mode through the same layer.
    for p in params:
        p.grad = None
    layer(x)[0].backward(u)
    reverse = np.sum(gx.data * vs[0]) + sum(
        np.sum(p.grad * v) for p, v in zip(params, vs[1:], strict=True)
    )
    np.testing.assert_allclose(np.sum(u * t.data), reverse, rtol=1e-10)
