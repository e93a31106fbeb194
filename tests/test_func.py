"""mg.grad, mg.vjp, mg.jacobian: torch.func's conventions and values (checked against torch.func
when torch is installed), no side effects on .grad or hooks, and the errors."""

import numpy as np
import pytest

import minigrad as mg

torch = pytest.importorskip("torch")
tfunc = pytest.importorskip("torch.func")

RNG = np.random.default_rng(0)
X = RNG.standard_normal((3, 4))
W = RNG.standard_normal((4, 2))


def f_mg(x, w):
    return ((x @ w).tanh() * x.sum(1, keepdims=True)).sigmoid()


def f_torch(x, w):
    return torch.sigmoid(torch.tanh(x @ w) * x.sum(1, keepdim=True))


def _t(a):
    return torch.tensor(a, dtype=torch.float64)


def test_grad_matches_torch_func_with_argnums():
    loss_mg = lambda x, w: f_mg(x, w).logsumexp()  # noqa: E731
    loss_t = lambda x, w: torch.logsumexp(f_torch(x, w).reshape(-1), 0)  # noqa: E731
    gx = mg.grad(loss_mg)(mg.tensor(X), mg.tensor(W))
    np.testing.assert_allclose(gx.data, tfunc.grad(loss_t)(_t(X), _t(W)).numpy(), rtol=1e-12)
    gx, gw = mg.grad(loss_mg, argnums=(0, 1))(X, W)  # NumPy arrays are accepted too
    tx, tw = tfunc.grad(loss_t, argnums=(0, 1))(_t(X), _t(W))
    np.testing.assert_allclose(gx.data, tx.numpy(), rtol=1e-12)
    np.testing.assert_allclose(gw.data, tw.numpy(), rtol=1e-12)
    gw = mg.grad(loss_mg, argnums=-1)(X, W)
    np.testing.assert_allclose(gw.data, tw.numpy(), rtol=1e-12)


def test_grad_has_aux():
    g, aux = mg.grad(lambda x: ((x * x).sum(), x.shape), has_aux=True)(mg.tensor([1.0, 2.0]))
    np.testing.assert_array_equal(g.data, [2.0, 4.0])
    assert aux == (2,)


def test_vjp_matches_torch_func_for_tuple_outputs():
    u1, u2 = RNG.standard_normal((3, 2)), RNG.standard_normal(4)

    def two_mg(x, w):
        return f_mg(x, w), (x * x).sum(0)

    def two_t(x, w):
        return f_torch(x, w), (x * x).sum(0)

    (o1, o2), pull = mg.vjp(two_mg, mg.tensor(X), mg.tensor(W))
    (t1, t2), tpull = tfunc.vjp(two_t, _t(X), _t(W))
    np.testing.assert_allclose(o1.data, t1.numpy(), rtol=1e-14)
    assert not o1.requires_grad  # outputs come back detached, as values
    for mine, theirs in zip(pull((u1, u2)), tpull((_t(u1), _t(u2))), strict=True):
        np.testing.assert_allclose(mine.data, theirs.numpy(), rtol=1e-12)
    # the pullback can be called again (the graph is kept), with another cotangent
    again = pull((2 * u1, 2 * u2))
    np.testing.assert_allclose(again[0].data, 2 * pull((u1, u2))[0].data, rtol=1e-14)


def test_jacobian_shapes_and_values_match_torch_both_modes():
    expected = torch.autograd.functional.jacobian(f_torch, (_t(X), _t(W)))
    for mode in ("reverse", "forward"):
        jx, jw = mg.jacobian(f_mg, (mg.tensor(X), mg.tensor(W)), mode=mode)
        assert jx.shape == (3, 2, 3, 4) and jw.shape == (3, 2, 4, 2)
        np.testing.assert_allclose(jx.data, expected[0].numpy(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(jw.data, expected[1].numpy(), rtol=1e-12, atol=1e-15)
    j = mg.jacobian(lambda x: x.exp(), np.array([0.0, 1.0]))  # one input: one Jacobian
    np.testing.assert_allclose(j.data, np.diag(np.exp([0.0, 1.0])), rtol=1e-15)


def test_jvp_matches_torch_func():
    vx, vw = RNG.standard_normal(X.shape), RNG.standard_normal(W.shape)
    out, t = mg.jvp(f_mg, (mg.tensor(X), mg.tensor(W)), (vx, vw))
    tout, tt = tfunc.jvp(f_torch, (_t(X), _t(W)), (_t(vx), _t(vw)))
    np.testing.assert_allclose(out.data, tout.numpy(), rtol=1e-14)
    np.testing.assert_allclose(t.data, tt.numpy(), rtol=1e-12)


def test_no_side_effects_on_grads_and_hooks():
    """A parameter fn reads keeps its .grad; its hooks do not run; the input's .grad is
    untouched (the gradient is with respect to a fresh copy)."""
    w = mg.tensor(W, requires_grad=True)
    w.grad = mg.tensor(np.full(W.shape, 7.0))
    calls = []
    w.register_hook(lambda g: calls.append(1))
    x = mg.tensor(X, requires_grad=True)
    g = mg.grad(lambda x: (x @ w).sum())(x)
    np.testing.assert_allclose(g.data, np.broadcast_to(W.sum(1), X.shape))
    np.testing.assert_array_equal(w.grad, np.full(W.shape, 7.0))
    assert calls == [] and x.grad is None
    (x @ w).sum().backward()  # the hooks were put back
    assert calls == [1]


def test_an_input_that_does_not_reach_the_output_gets_zeros():
    gx, gy = mg.grad(lambda x, y: (x * 2).sum(), argnums=(0, 1))(np.ones(2), np.ones(3))
    np.testing.assert_array_equal(gy.data, np.zeros(3))
    np.testing.assert_array_equal(gx.data, [2.0, 2.0])


def test_errors_name_the_function():
    x = mg.tensor([1.0, 2.0])
    with pytest.raises(ValueError, match="grad: fn must return a tensor with one element"):
        mg.grad(lambda x: x * 2)(x)
    with pytest.raises(TypeError, match="grad: argnums must be an int or a tuple"):
        mg.grad(lambda x: x.sum(), argnums="0")
    with pytest.raises(ValueError, match="grad: argnums 2 is out of range for 1 arguments"):
        mg.grad(lambda x: x.sum(), argnums=2)(x)
    with pytest.raises(TypeError, match="grad: input 0 is int64"):
        mg.grad(lambda x: x.sum())(mg.tensor([1, 2]))
    with pytest.raises(TypeError, match="vjp: expected a function"):
        mg.vjp(3, x)
    _, pull = mg.vjp(lambda x: x * 2, x)
    with pytest.raises(ValueError, match=r"vjp: cotangent 0 has shape \(3,\), the output \(2,\)"):
        pull(np.ones(3))
    with pytest.raises(ValueError, match="jacobian: mode must be 'reverse' or 'forward'"):
        mg.jacobian(lambda x: x, x, mode="sideways")
    with pytest.raises(TypeError, match="jacobian: fn must return one tensor"):
        mg.jacobian(lambda x: (x, x), x)
