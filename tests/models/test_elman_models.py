"""The lecture notes' networks: the Elman RNN under its textbook names is `RNN` + a linear
head, and the output-to-hidden network does what teacher forcing and free running mean."""

import numpy as np
import pytest
from rnn_testing import float64_seeded, module_gradcheck, rng_fixture  # noqa: F401 (fixtures)

import minigrad as mg
import minigrad.nn as nn
from models import RNN, ElmanRNN, OutputToHiddenRNN

T, B, N_IN, H, K = 5, 2, 3, 4, 3


def test_elman_is_rnn_with_a_linear_head(rng):
    net = ElmanRNN(N_IN, H, K)
    rnn, head = RNN(N_IN, H), nn.Linear(H, K)
    # U = weight_ih, W = weight_hh, b = bias_ih + bias_hh, V and c the head.
    rnn.load_state_dict(
        {
            "weight_ih_l0": net.U.data,
            "weight_hh_l0": net.W.data,
            "bias_ih_l0": net.b.data,
            "bias_hh_l0": np.zeros(H),
        }
    )
    head.load_state_dict({"weight": net.V.data, "bias": net.c.data})
    x = mg.tensor(rng.standard_normal((T, B, N_IN)), requires_grad=True)
    h0 = mg.tensor(rng.standard_normal((B, H)), requires_grad=True)
    o, h_T = net(x, h0)
    out, h_n = rnn(x, h0.unsqueeze(0))
    np.testing.assert_allclose(o.data, head(out).data, atol=1e-14)
    np.testing.assert_allclose(h_T.data, h_n.data[0], atol=1e-14)
    assert module_gradcheck(net, lambda x, h0: net(x, h0), x, h0)


def one_hot(y, k):
    return np.eye(k)[y]


def params(net):
    return [p.data for p in (net.U, net.W, net.V, net.b, net.c)]


def test_teacher_forcing_feeds_the_previous_target(rng):
    net = OutputToHiddenRNN(N_IN, H, K)
    x = rng.standard_normal((T, B, N_IN))
    y = rng.integers(0, K, size=(T, B))
    U, W, V, b, c = params(net)
    fed = np.zeros((B, K))  # y_0 = 0
    expected = []
    for t in range(T):
        h = np.tanh(b + fed @ W.T + x[t] @ U.T)  # h_t = tanh(b + W y_{t-1} + U x_t)
        expected.append(c + h @ V.T)  # o_t = c + V h_t
        fed = one_hot(y[t], K)
    np.testing.assert_allclose(net(mg.tensor(x), y).data, np.stack(expected), atol=1e-14)


def test_free_running_feeds_back_its_own_prediction(rng):
    net = OutputToHiddenRNN(N_IN, H, K)
    x = rng.standard_normal((T, B, N_IN))
    U, W, V, b, c = params(net)
    fed = np.zeros((B, K))
    expected = []
    for t in range(T):
        h = np.tanh(b + fed @ W.T + x[t] @ U.T)  # h_t = tanh(b + W o_{t-1} + U x_t)
        o = c + h @ V.T
        expected.append(o)
        fed = one_hot(o.argmax(axis=1), K)  # the model's own prediction
    free = net(mg.tensor(x))
    np.testing.assert_allclose(free.data, np.stack(expected), atol=1e-14)
    # Teacher forcing with the model's own predictions as targets is free running.
    own = free.data.argmax(axis=2)
    np.testing.assert_allclose(net(mg.tensor(x), own).data, free.data, atol=1e-14)


def test_real_outputs_free_running_backpropagates_through_outputs(rng):
    net = OutputToHiddenRNN(N_IN, H, K, targets="real")
    x = mg.tensor(rng.standard_normal((T, B, N_IN)), requires_grad=True)
    y = mg.tensor(rng.standard_normal((T, B, K)))
    U, W, V, b, c = params(net)
    fed, expected = np.zeros((B, K)), []
    for t in range(T):
        o = c + np.tanh(b + fed @ W.T + x.data[t] @ U.T) @ V.T
        expected.append(o)
        fed = o  # the output itself is fed back
    np.testing.assert_allclose(net(x).data, np.stack(expected), atol=1e-14)

    # Teacher forcing decouples the steps: o_T depends on x_T only. Free running does not.
    net(x, y)[-1].sum().backward()
    assert not x.grad[:-1].any() and x.grad[-1].any()
    x.grad = None
    net(x)[-1].sum().backward()
    assert x.grad[0].any()
    assert module_gradcheck(net, lambda x: net(x), x)
    assert module_gradcheck(net, lambda x: net(x, y), x)


def test_output_to_hidden_errors():
    net = OutputToHiddenRNN(N_IN, H, K)
    with pytest.raises(ValueError, match=r"class targets must be integers of shape \(5, 2\)"):
        net(mg.zeros(T, B, N_IN), np.zeros((T, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"OutputToHiddenRNN: class targets must lie in \[0, 3\)"):
        net(mg.zeros(T, B, N_IN), np.full((T, B), 3))
    with pytest.raises(ValueError, match=r"ElmanRNN: expected input of shape \(seq, batch, 3\)"):
        ElmanRNN(N_IN, H, K)(mg.zeros(T, B, 4))
    with pytest.raises(ValueError, match=r"targets must be 'classes' or 'real'"):
        OutputToHiddenRNN(N_IN, H, K, targets="tokens")
