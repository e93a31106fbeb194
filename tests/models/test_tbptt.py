"""Truncated BPTT: a window covering the whole sequence is full BPTT; a shorter window gives
the gradient of the truncated graph, which the hand-derived BPTT reproduces chunk by chunk
from the carried (constant) state."""

import numpy as np
import pytest
from rnn_testing import float64_seeded, rng_fixture  # noqa: F401 (fixtures)

import minigrad as mg
import minigrad.nn.functional as F
from models import ElmanRNN, LanguageModel, tbptt
from models import reference_bptt as ref

T, B, N_IN, H, K = 12, 2, 3, 4, 5


def elman_step(net):
    def step(x, y, h):
        o, h = net(x, h)
        n = x.shape[0] * x.shape[1]
        return F.cross_entropy(o.reshape(n, K), y.reshape(-1), reduction="sum"), h

    return step


def grads(module):
    return {n: p.grad.numpy().copy() for n, p in module.named_parameters()}


@pytest.mark.parametrize("window", [T, T + 5])
def test_window_at_least_the_sequence_is_full_bptt(window, rng):
    lm = LanguageModel(K, 3, H, num_layers=2)
    tokens = rng.integers(0, K, size=(T + 1, B))
    inputs, targets = tokens[:-1], tokens[1:]

    def step(x, y, state):
        logits, state = lm(x, state)
        return F.cross_entropy(logits.reshape(-1, K), y.reshape(-1), reduction="sum"), state

    step(inputs, targets, None)[0].backward()
    full = grads(lm)
    lm.zero_grad()
    losses, _ = tbptt.truncated_bptt(step, inputs, targets, size=window)
    assert len(losses) == 1
    for name, g in grads(lm).items():
        np.testing.assert_allclose(g, full[name], rtol=0, atol=1e-13, err_msg=name)


@pytest.mark.parametrize("window", [1, 3, 5])
def test_short_window_is_the_gradient_of_the_truncated_graph(window, rng):
    net = ElmanRNN(N_IN, H, K)
    x = rng.standard_normal((T, B, N_IN))
    y = rng.integers(0, K, size=(T, B))
    losses, h_last = tbptt.truncated_bptt(
        elman_step(net), mg.tensor(x), y, size=window
    )  # no optimizer: the chunks' gradients add up in .grad

    # Independent computation: hand BPTT on each chunk, starting from the state the previous
    # chunks produced, treated as a constant (no gradient flows into it).
    U, W, V, b, c = (p.data for p in (net.U, net.W, net.V, net.b, net.c))
    h0 = np.zeros((B, H))
    expected = {k: 0.0 for k in "UWVbc"}
    for i, start in enumerate(range(0, T, window)):
        xc, yc = x[start : start + window], y[start : start + window]
        loss, g = ref.elman_bptt(xc, yc, U, W, V, b, c, h0)
        assert abs(losses[i] - loss) < 1e-10
        for k in expected:
            expected[k] = expected[k] + g[k]
        h0 = ref.elman_forward(xc, U, W, V, b, c, h0)[0][-1]  # carry the value forward
    np.testing.assert_allclose(h_last.data, h0, atol=1e-13)
    for k in expected:
        np.testing.assert_allclose(getattr(net, k).grad, expected[k], atol=1e-10, err_msg=k)
    # ... and it is not the full gradient: truncation drops the paths across the cuts.
    _, full = ref.elman_bptt(x, y, U, W, V, b, c)
    assert np.abs(net.W.grad - full["W"]).max() > 1e-6


def test_carried_state_is_cut_from_the_graph(rng):
    net = ElmanRNN(N_IN, H, K)
    x = mg.tensor(rng.standard_normal((4, B, N_IN)), requires_grad=True)
    _, h = net(x[:2])
    h = tbptt.detach_state(h)
    o, _ = net(x[2:], h)
    o.sum().backward()
    assert not x.grad[:2].any() and x.grad[2:].any()


def test_detach_state_handles_nesting():
    a = mg.ones(2, 3, requires_grad=True) * 2
    state = [(a, a + 1), a]
    out = tbptt.detach_state(state)
    assert isinstance(out, list) and isinstance(out[0], tuple)
    assert all(not t.requires_grad for t in (out[0][0], out[0][1], out[1]))
    np.testing.assert_array_equal(out[0][1].data, a.data + 1)
    assert tbptt.detach_state(None) is None
    with pytest.raises(TypeError, match="detach_state: expected a Tensor"):
        tbptt.detach_state({"h": a})


def test_chunks_and_batchify():
    stream = np.arange(23)
    cols = tbptt.batchify(stream, 4)  # 4 contiguous columns of 5
    assert cols.shape == (5, 4)
    np.testing.assert_array_equal(cols[:, 1], np.arange(5, 10))
    pieces = list(tbptt.chunks(cols[:-1], cols[1:], size=3))
    assert [p[0].shape[0] for p in pieces] == [3, 1]
    np.testing.assert_array_equal(pieces[1][1], cols[4:5])
    assert [c.shape for c in tbptt.chunks(np.zeros((2, 7)), size=3, axis=1)] == [
        (2, 3),
        (2, 3),
        (2, 1),
    ]
    with pytest.raises(ValueError, match="chunks: sequences differ in length"):
        list(tbptt.chunks(np.zeros(3), np.zeros(4), size=2))
    with pytest.raises(ValueError, match="batchify: a stream of 3 is shorter than 4"):
        tbptt.batchify(np.arange(3), 4)
