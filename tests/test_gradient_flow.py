"""models.gradient_flow.inspect: its numbers against independent computations — the layer's own
output and gradients, the hand-written tanh-RNN Jacobian diag(1 - h^2) W, dL/dh_k = J^T dL/dh_T
for a loss at the last step, and saturation at its two extremes."""

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn as nn
from models import GRU, IRNN, LSTM, RNN
from models.gradient_flow import inspect

RNG = np.random.default_rng(0)
X = RNG.standard_normal((6, 3, 2))


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU], ids=["rnn", "lstm", "gru"])
def test_step_terms_sum_to_the_layers_own_gradient(cls):
    mg.manual_seed(0)
    layer = cls(2, 4, num_layers=2, bidirectional=True).to(mg.float64)
    u = RNG.standard_normal((6, 3, 8))
    report = inspect(layer, X, lambda out: (out * mg.tensor(u)).sum(), jacobian_of=(1, 1))
    out = layer(mg.tensor(X))[0]
    np.testing.assert_allclose(report.output, out.data, rtol=0, atol=1e-14)
    (out * mg.tensor(u)).sum().backward()
    for name, p in layer.named_parameters():
        assert report.step_grads[name].shape == (6,) + p.shape
        np.testing.assert_allclose(report.step_grads[name].sum(0), p.grad, rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            report.contributions[name], [np.linalg.norm(g) for g in report.step_grads[name]]
        )
    assert set(report.state_grad_norms) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert report.jacobian["bound_holds"]
    assert "layer 1 direction 1" in report.summary()


def test_rnn_jacobians_are_the_notes_gamma_and_give_dl_dh():
    """For L = <u, h_T>: dL/dh_k = (dh_T/dh_k)^T u, and ||J_i|| = ||diag(1 - h_i^2) W||_2."""
    mg.manual_seed(1)
    layer = RNN(2, 5).to(mg.float64)
    u = RNG.standard_normal((3, 5))
    report = inspect(layer, X, lambda out: (out[-1] * mg.tensor(u)).sum())
    W = layer.weight_hh_l0.data
    hs = layer(mg.tensor(X))[0].data
    gamma = [np.linalg.norm((1 - h**2)[..., None] * W, ord=2, axis=(-2, -1)) for h in hs]
    np.testing.assert_allclose(report.jacobian["step_norms"], np.stack(gamma), rtol=1e-12)
    # rows[j, b] = dh_T/dh_j for sequence b; its largest singular value is the first one
    norms = report.state_grad_norms[(0, 0)]
    assert norms.shape == (6, 3)
    np.testing.assert_allclose(norms[-1], np.linalg.norm(u, axis=1), rtol=1e-12)
    sv = report.jacobian["singular_values"]
    assert sv.shape == (6, 3, 5)
    np.testing.assert_allclose(sv[-1], 1.0, rtol=1e-12)  # dh_T/dh_T = I
    assert np.all(norms <= sv[..., 0] * np.linalg.norm(u, axis=1) * (1 + 1e-12))
    bounds = report.jacobian["pascanu_bound"]
    assert np.all(report.jacobian["product_bound"] <= bounds[:, None] * (1 + 1e-12))
    assert np.all(sv[..., 0] <= report.jacobian["product_bound"] * (1 + 1e-12))


def test_saturation_counts_gates_near_their_limits():
    mg.manual_seed(2)
    layer = LSTM(2, 4).to(mg.float64)
    small = inspect(layer, X * 1e-3, lambda out: out.sum(), jacobian_of=None)
    with mg.no_grad():
        for p in layer.parameters():
            p.mul_(1e3)
    big = inspect(layer, X, lambda out: out.sum(), jacobian_of=None)
    assert small.saturation[(0, 0)]["sigmoid"].max() == 0.0
    assert small.saturation[(0, 0)]["tanh"].max() == 0.0
    assert big.saturation[(0, 0)]["sigmoid"].mean() > 0.9
    assert big.saturation[(0, 0)]["tanh"].mean() > 0.4  # g and tanh(c); c = 0 is not saturated
    assert small.jacobian == {}
    rnn = RNN(2, 4).to(mg.float64)
    with mg.no_grad():
        for p in rnn.parameters():
            p.mul_(1e3)
    report = inspect(rnn, X, lambda out: out.sum(), jacobian_of=None)
    assert report.saturation[(0, 0)]["tanh"].mean() > 0.95
    assert report.saturation[(0, 0)]["sigmoid"].max() == 0.0  # a tanh RNN has no gates


def test_errors_name_the_function():
    with pytest.raises(TypeError, match="inspect: expected a models.RNN, LSTM or GRU"):
        inspect(nn.Linear(2, 2), X, lambda out: out.sum())
    with pytest.raises(ValueError, match="inspect: only tanh RNNs"):
        inspect(IRNN(2, 3), X, lambda out: out.sum())
    with pytest.raises(ValueError, match="inspect: expected a batched 3-D input"):
        inspect(RNN(2, 3), X[0], lambda out: out.sum())
