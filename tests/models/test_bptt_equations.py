"""The central claim: backward() over the unrolled graph IS backpropagation through time.

Autograd's gradients of the lecture notes' Elman network, and of an LSTM, equal to 1e-10 (in
float64) the gradients given by the hand-derived BPTT equations, computed independently in
NumPy by `models.reference_bptt` (which imports nothing from minigrad).

The network, with a softmax output at every step and L = sum_t L_t = -sum_t log y^_t[y_t]:

    a_t = b + W h_{t-1} + U x_t,   h_t = tanh(a_t),   o_t = c + V h_t,   y^_t = softmax(o_t)
"""

import numpy as np
import pytest
from rnn_testing import float64_seeded, rng_fixture  # noqa: F401 (fixtures)

import minigrad as mg
import minigrad.nn as nn
import minigrad.nn.functional as F
from models import LSTM, ElmanRNN, LSTMCell
from models import reference_bptt as ref

TOL = 1e-10


def assert_equal_to_hand(autograd, hand, what):
    err = np.abs(np.asarray(autograd) - np.asarray(hand)).max()
    assert err < TOL, f"{what}: autograd and hand-derived BPTT differ by {err:.3g}"


@pytest.mark.parametrize("with_h0", [False, True])
def test_elman_autograd_equals_hand_derived_bptt(rng, with_h0):
    T, B, n_in, H, K = 7, 3, 4, 5, 6
    net = ElmanRNN(n_in, H, K)
    x = rng.standard_normal((T, B, n_in))
    y = rng.integers(0, K, size=(T, B))
    h0 = mg.tensor(rng.standard_normal((B, H)), requires_grad=True) if with_h0 else None

    # Forward through the unrolled graph, keeping dL/dh_t of every step for inspection.
    o, _, hidden = net(mg.tensor(x), h0, return_hidden=True)
    for h in hidden:
        h.retain_grad()
    L = F.cross_entropy(o.reshape(T * B, K), y.reshape(-1), reduction="sum")  # L = sum_t L_t
    L.backward()

    # The same network's gradients from the hand-derived equations.
    U, W, V, b, c = (p.data for p in (net.U, net.W, net.V, net.b, net.c))
    loss, hand = ref.elman_bptt(x, y, U, W, V, b, c, None if h0 is None else h0.data)
    assert abs(L.item() - loss) < TOL

    # dL/dh_T = V^T dL/do_T and, going back, dL/dh_t = W^T diag(1 - h_{t+1}^2) dL/dh_{t+1}
    # + V^T dL/do_t: the gradient reaching each hidden state, step by step.
    for t in range(T):
        assert_equal_to_hand(hidden[t].grad, hand["h"][t], f"dL/dh_{t + 1}")
    # dL/dc = sum_t dL/do_t  and  dL/dV = sum_t dL/do_t h_t^T
    assert_equal_to_hand(net.c.grad, hand["c"], "dL/dc")
    assert_equal_to_hand(net.V.grad, hand["V"], "dL/dV")
    # dL/db = sum_t diag(1 - h_t^2) dL/dh_t
    assert_equal_to_hand(net.b.grad, hand["b"], "dL/db")
    # dL/dW = sum_t diag(1 - h_t^2) dL/dh_t h_{t-1}^T
    assert_equal_to_hand(net.W.grad, hand["W"], "dL/dW")
    # dL/dU = sum_t diag(1 - h_t^2) dL/dh_t x_t^T
    assert_equal_to_hand(net.U.grad, hand["U"], "dL/dU")
    if with_h0:
        assert_equal_to_hand(h0.grad, hand["h0"], "dL/dh_0")


def _lstm_hand_gradients(x, y, W_ih, W_hh, b_ih, b_hh, V, c, h0, c0):
    """Loss and gradients of LSTM -> o_t = c + V h_t -> softmax cross-entropy, by hand."""
    hs, _, cache = ref.lstm_forward(x, W_ih, W_hh, b_ih, b_hh, h0, c0)
    o = c + hs @ V.T
    loss, d_o = ref.softmax_cross_entropy(o, y)  # dL/do_t = y^_t - 1_{y_t}
    rows = lambda z: z.reshape(-1, z.shape[-1])
    grads = ref.lstm_bptt(cache, d_o @ V)  # each h_t receives V^T dL/do_t directly
    grads["V"] = rows(d_o).T @ rows(hs)  # sum_t dL/do_t h_t^T
    grads["c"] = d_o.sum(axis=(0, 1))  # sum_t dL/do_t
    return loss, grads


@pytest.mark.parametrize("unroll", ["layer", "cell"])
def test_lstm_autograd_equals_hand_derived_bptt(rng, unroll):
    T, B, n_in, H, K = 6, 3, 4, 5, 6
    x = mg.tensor(rng.standard_normal((T, B, n_in)), requires_grad=True)
    y = rng.integers(0, K, size=(T, B))
    h0 = mg.tensor(rng.standard_normal((B, H)), requires_grad=True)
    c0 = mg.tensor(rng.standard_normal((B, H)), requires_grad=True)
    head = nn.Linear(H, K)  # o_t = c + V h_t

    if unroll == "layer":  # the layer: one input projection for all steps, then the loop
        lstm = LSTM(n_in, H)
        output, _ = lstm(x, (h0.unsqueeze(0), c0.unsqueeze(0)))
        W_ih, W_hh, b_ih, b_hh = lstm.layer_weights(0)
    else:  # the cell, unrolled by hand
        lstm = LSTMCell(n_in, H)
        state, hs = (h0, c0), []
        for t in range(T):
            state = lstm(x[t], state)
            hs.append(state[0])
        output = mg.stack(hs)
        W_ih, W_hh, b_ih, b_hh = lstm.weight_ih, lstm.weight_hh, lstm.bias_ih, lstm.bias_hh
    L = F.cross_entropy(head(output).reshape(T * B, K), y.reshape(-1), reduction="sum")
    L.backward()

    params = [p.data for p in (W_ih, W_hh, b_ih, b_hh, head.weight, head.bias)]
    loss, hand = _lstm_hand_gradients(x.data, y, *params, h0.data, c0.data)
    assert abs(L.item() - loss) < TOL
    for name, p in [("W_ih", W_ih), ("W_hh", W_hh), ("b_ih", b_ih), ("b_hh", b_hh)]:
        assert_equal_to_hand(p.grad, hand[name], f"dL/d{name}")
    assert_equal_to_hand(head.weight.grad, hand["V"], "dL/dV")
    assert_equal_to_hand(head.bias.grad, hand["c"], "dL/dc")
    assert_equal_to_hand(x.grad, hand["x"], "dL/dx")
    assert_equal_to_hand(h0.grad, hand["h0"], "dL/dh_0")
    assert_equal_to_hand(c0.grad, hand["c0"], "dL/dc_0")


def test_hand_bptt_is_itself_right(rng):
    """The reference is checked too: its dL/dW against central differences of its own loss."""
    T, B, n_in, H, K = 4, 2, 3, 4, 5
    x = rng.standard_normal((T, B, n_in))
    y = rng.integers(0, K, size=(T, B))
    U, W = rng.standard_normal((H, n_in)), rng.standard_normal((H, H)) * 0.5
    V, b, c = rng.standard_normal((K, H)), rng.standard_normal(H), rng.standard_normal(K)
    _, hand = ref.elman_bptt(x, y, U, W, V, b, c)
    eps, numeric = 1e-6, np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        Wp, Wm = W.copy(), W.copy()
        Wp[idx] += eps
        Wm[idx] -= eps
        lp = ref.elman_bptt(x, y, U, Wp, V, b, c)[0]
        lm = ref.elman_bptt(x, y, U, Wm, V, b, c)[0]
        numeric[idx] = (lp - lm) / (2 * eps)
    assert np.abs(numeric - hand["W"]).max() < 1e-6
