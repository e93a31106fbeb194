"""Recurrent layers with checkpoint_every: the same gradients in less activation memory."""

import tracemalloc

import numpy as np
import pytest
from rnn_testing import float64_seeded  # noqa: F401 (an autouse fixture: float64, seed 0)

import minigrad as mg
from models import GRU, LSTM, RNN


def _grads(layer, x, lengths):
    for p in layer.parameters():
        p.grad = None
    x.grad = None
    out, state = layer(x, lengths=lengths)
    h_n = state[0] if isinstance(state, tuple) else state
    ((out * out).sum() + h_n.sum()).backward()
    return [out.numpy().copy(), x.grad.numpy().copy()] + [
        p.grad.numpy().copy() for p in layer.parameters()
    ]


@pytest.mark.parametrize(
    "cls, kw",
    [
        (LSTM, {}),
        (GRU, {}),
        (GRU, {"reset_after": False}),
        (RNN, {"nonlinearity": "relu"}),
        (LSTM, {"num_layers": 2, "bidirectional": True}),
    ],
)
@pytest.mark.parametrize("every", [1, 3, 4])
def test_checkpointed_layer_gives_the_same_outputs_and_gradients(cls, kw, every):
    mg.manual_seed(0)
    layer = cls(3, 4, **kw)
    x = mg.randn(9, 2, 3, requires_grad=True)
    lengths = [9, 6]
    plain = _grads(layer, x, lengths)
    layer.checkpoint_every = every
    checkpointed = _grads(layer, x, lengths)
    for a, b in zip(plain, checkpointed, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def _peak(T, every):
    mg.manual_seed(0)
    layer = LSTM(8, 64, checkpoint_every=every)
    x = mg.randn(T, 16, 8)
    tracemalloc.start()
    out, _ = layer(x)
    out.sum().backward()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_checkpointing_every_sqrt_t_steps_holds_less_memory():
    plain, sqrt_t = _peak(400, None), _peak(400, 20)
    # What remains is O(T) only in the layer's own input and output (16 x 8 and 16 x 64 per
    # step); the per-step gate activations are kept for one 20-step segment at a time.
    assert sqrt_t < plain / 3, (plain, sqrt_t)


def test_bad_checkpoint_interval_is_rejected():
    with pytest.raises(ValueError, match="checkpoint_every"):
        LSTM(3, 4, checkpoint_every=0)
