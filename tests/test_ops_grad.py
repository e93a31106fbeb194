"""Backward of every core op: finite differences (mg.gradcheck, float64) over random small
shapes including broadcast operands, driven by the table in ops_table.py; float32 gradients keep
their dtype and agree with float64; backward writes into neither the inputs nor the incoming
gradient. And gradcheck itself must fail on a wrong backward, or none of this means anything.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ops_table import BINARY, INDEX_EXAMPLES, MATMUL_EXAMPLES, OPS

import minigrad as mg
from minigrad.autograd import Function

SMALL = (3, 3)  # max dims, max side: at most 27 elements per input, two evaluations each


def _outputs(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _leaves(op, in_shapes, rng, dtype=np.float64):
    values = [op.grad_domain(i).sample(rng, s, dtype) for i, s in enumerate(in_shapes)]
    return [mg.tensor(v, requires_grad=True) for v in values]


@pytest.mark.parametrize("op", OPS, ids=repr)
@settings(max_examples=20)
@given(data=st.data())
def test_gradcheck(op, data):
    in_shapes, kwargs = data.draw(op.cases(*SMALL), label="case")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    inputs = _leaves(op, in_shapes, rng)
    assert mg.gradcheck(lambda *xs: op.fn(*xs, **kwargs), inputs)
    for x in inputs:
        assert x.grad is not None and x.grad.shape == x.shape and x.grad.dtype == np.float64


@pytest.mark.parametrize("op", OPS, ids=repr)
@settings(max_examples=10)
@given(data=st.data())
def test_backward_keeps_dtype_matches_float64_and_mutates_nothing(op, data):
    """Inputs are computed tensors (x * 1), so the op's own backward output is observed through
    retain_grad before the engine casts anything for the leaves."""
    in_shapes, kwargs = data.draw(op.cases(*SMALL), label="case")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    values = [op.grad_domain(i).sample(rng, s, np.float32) for i, s in enumerate(in_shapes)]
    upstream = None
    grads = {}
    for dtype in (np.float32, np.float64):
        leaves = [mg.tensor(v, dtype=dtype, requires_grad=True) for v in values]
        inputs = [leaf * 1 for leaf in leaves]
        for x in inputs:
            x.retain_grad()
        outs = _outputs(op.fn(*inputs, **kwargs))
        if upstream is None:  # the same incoming gradient, exactly, in both precisions
            upstream = [rng.standard_normal(o.shape).astype(np.float32) for o in outs]
        ups = [u.astype(dtype) for u in upstream]
        kept = [u.copy() for u in ups]
        if len(outs) == 1:
            outs[0].backward(ups[0])
        else:
            sum((o * u).sum() for o, u in zip(outs, ups, strict=True)).backward()
        for leaf, v in zip(leaves, values, strict=True):
            np.testing.assert_array_equal(leaf.data, v.astype(dtype), "backward wrote into x")
            assert leaf.grad.dtype == dtype and leaf.grad.shape == leaf.shape
        for u, k in zip(ups, kept, strict=True):
            np.testing.assert_array_equal(u, k, "backward wrote into the incoming gradient")
        for x in inputs:
            assert x.grad.dtype == dtype, f"{op.name} sent a {x.grad.dtype} gradient for {dtype}"
            assert x.grad.shape == x.shape
        grads[dtype] = [x.grad for x in inputs]
    for g32, g64 in zip(grads[np.float32], grads[np.float64], strict=True):
        top = np.abs(g64).max(initial=1.0)
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-5 * top)


# ----- broadcasting, explicitly -------------------------------------------------------------------
BROADCAST_PAIRS = [
    ((3, 1), (1, 4)),
    ((2, 3, 4), (4,)),
    ((), (2, 3)),
    ((2, 1, 3), (4, 1)),
    ((1,), (0,)),
    ((2, 3), (2, 3)),
]


@pytest.mark.parametrize("shapes", BROADCAST_PAIRS, ids=repr)
@pytest.mark.parametrize("op", BINARY, ids=repr)
def test_binary_gradients_reduce_to_each_operand_shape(op, shapes):
    rng = np.random.default_rng(2)
    for in_shapes in (shapes, shapes[::-1]):
        inputs = _leaves(op, in_shapes, rng)
        assert mg.gradcheck(op.fn, inputs)
        assert [x.grad.shape for x in inputs] == list(in_shapes)


def test_bias_broadcast_sums_over_batch():
    x = mg.tensor(np.ones((5, 3)), requires_grad=True)
    b = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x + b).sum().backward()
    np.testing.assert_array_equal(b.grad, [5.0, 5.0, 5.0])
    np.testing.assert_array_equal(x.grad, np.ones((5, 3)))


# ----- explicit cases -----------------------------------------------------------------------------
@pytest.mark.parametrize("index", INDEX_EXAMPLES, ids=repr)
def test_getitem_gradient_examples(index):
    x = mg.tensor(np.random.default_rng(3).standard_normal((4, 5, 3)), requires_grad=True)
    assert mg.gradcheck(lambda t: t[index], [x])


def test_getitem_repeated_indices_add_up():
    x = mg.tensor(np.zeros((4, 2)), requires_grad=True)
    x[np.array([0, 2, 0, 0, -1])].sum().backward()
    np.testing.assert_array_equal(x.grad[:, 0], [3.0, 0.0, 1.0, 1.0])
    y = mg.tensor(np.zeros(3), requires_grad=True)
    (y[[1, 1]] * mg.tensor([2.0, 5.0])).sum().backward()
    np.testing.assert_array_equal(y.grad, [0.0, 7.0, 0.0])


@pytest.mark.parametrize("shapes", MATMUL_EXAMPLES, ids=repr)
def test_matmul_gradient_examples(shapes):
    rng = np.random.default_rng(4)
    inputs = [mg.tensor(rng.standard_normal(s), requires_grad=True) for s in shapes]
    assert mg.gradcheck(lambda a, b: a @ b, inputs)
    assert [x.grad.shape for x in inputs] == list(shapes)


def test_max_shares_gradient_among_ties():
    x = mg.tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]], requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0.0, 0.5, 0.5], [0.5, 0.0, 0.5]])
    y = mg.tensor([1.0, 1.0, 1.0, 0.0], requires_grad=True)
    y.min().backward()
    np.testing.assert_array_equal(y.grad, [0.0, 0.0, 0.0, 1.0])


def test_maximum_and_minimum_split_ties_evenly():
    a = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = mg.tensor([1.0, 5.0, 0.0], requires_grad=True)
    (mg.maximum(a, b) + 10 * mg.minimum(a, b)).sum().backward()
    np.testing.assert_array_equal(a.grad, [5.5, 10.0, 1.0])
    np.testing.assert_array_equal(b.grad, [5.5, 1.0, 10.0])


def test_kinks_follow_pytorch():
    x = mg.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    (x.relu() + x.abs() + x.clip(0.0, 2.0)).sum().backward()
    # relu'(0) = 0, abs'(0) = 0, and clip passes the gradient on its closed interval
    np.testing.assert_array_equal(x.grad, [-1.0, 1.0, 3.0])


def test_pow_gradients_at_a_zero_base():
    for p, want in ((0, 0.0), (0.0, 0.0), (1, 1.0), (2, 0.0), (3.0, 0.0)):
        x = mg.tensor([0.0, 2.0], requires_grad=True)
        (x**p).sum().backward()  # no 0 * inf, and no RuntimeWarning
        assert x.grad[0] == want, (p, x.grad)
        assert x.grad[1] == pytest.approx(p * 2.0 ** (p - 1))
    e = mg.tensor([0.0, 2.0], requires_grad=True)
    (mg.tensor([0.0, 3.0]) ** e).sum().backward()  # d/dy 0^y is taken as 0
    np.testing.assert_allclose(e.grad, [0.0, 9.0 * np.log(3.0)], rtol=1e-6)


def test_where_sends_gradient_to_the_chosen_side_only():
    x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = mg.tensor(10.0, requires_grad=True)
    mg.where(np.array([True, False, True]), x, y).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 0.0, 1.0])
    assert y.grad == 1.0


# ----- gradcheck can fail -------------------------------------------------------------------------
class _WrongSquare(Function):
    """x * x whose backward forgets the factor 2."""

    def forward(self, x):
        self.saved = x
        return x * x

    def backward(self, g):
        return (g * self.saved,)


class _WrongBroadcast(Function):
    """x + y whose backward sends y only the first row of its gradient, not the sum."""

    def forward(self, x, y):
        return x + y

    def backward(self, g):
        return g, g[:1]


def test_gradcheck_fails_on_a_wrong_backward():
    x = mg.tensor([0.5, -1.0, 2.0], dtype=mg.float64, requires_grad=True)
    with pytest.raises(mg.GradcheckError, match=r"input 0 .*autograd .*finite difference"):
        mg.gradcheck(_WrongSquare.apply, [x])
    assert mg.gradcheck(_WrongSquare.apply, [x], raise_exception=False) is False
    assert mg.gradcheck(lambda t: t * t, [x])


def test_gradcheck_fails_on_a_wrong_broadcast_reduction():
    x = mg.tensor(np.ones((3, 2)), requires_grad=True)
    y = mg.tensor(np.ones((1, 2)), requires_grad=True)
    with pytest.raises(mg.GradcheckError, match="input 1"):
        mg.gradcheck(_WrongBroadcast.apply, [x, y])


def test_gradcheck_catches_a_small_error():
    class OffByTiny(Function):
        def forward(self, x):
            return 3 * x

        def backward(self, g):
            return (g * 3.001,)

    x = mg.tensor(np.linspace(-1, 1, 5), requires_grad=True)
    with pytest.raises(mg.GradcheckError):
        mg.gradcheck(OffByTiny.apply, [x])
