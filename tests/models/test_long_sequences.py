"""Long unrolls: a gradient through 5,000 LSTM steps completes (the engine never recurses),
and the memory of BPTT grows linearly with the number of steps, as the textbook says."""

import tracemalloc

import numpy as np
from rnn_testing import float64_seeded, rng_fixture  # noqa: F401 (fixtures)

import minigrad as mg
from models import LSTM


def test_gradient_through_5000_lstm_steps(rng):
    T = 5000
    lstm = LSTM(1, 4)
    x = mg.tensor(rng.standard_normal((T, 1, 1)), requires_grad=True)
    output, (h_n, c_n) = lstm(x)
    (output[-1].sum() + c_n.sum()).backward()
    assert all(np.isfinite(p.grad).all() for p in lstm.parameters())
    assert x.grad.shape == (T, 1, 1) and x.grad[-1].any()


def _peak_bytes(T, rng):
    lstm = LSTM(1, 4)
    x = mg.tensor(rng.standard_normal((T, 1, 1)), requires_grad=True)
    tracemalloc.start()
    try:
        output, _ = lstm(x)
        output.sum().backward()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_bptt_memory_grows_linearly(rng):
    small, large = _peak_bytes(200, rng), _peak_bytes(800, rng)
    ratio = large / small
    # 4x the steps: about 4x the memory (activations are O(T)); O(T^2) would give ~16x.
    assert ratio < 6, f"peak memory grew {ratio:.1f}x for 4x the steps"
