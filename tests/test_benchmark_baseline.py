"""The benchmark's hand-written NumPy BPTT computes the same loss and gradients as minigrad
(float64), so the headline comparison compares equal work."""

import sys
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lstm_lm  # noqa: E402


@pytest.mark.parametrize("cell", lstm_lm.CELLS)
def test_numpy_baseline_equals_minigrad_in_float64(cell):
    assert lstm_lm.check_equal(cell, 8, use_torch=False) < 1e-12
    assert lstm_lm.check_equal(cell, 8, use_torch=False, fuse=False) < 1e-12


def test_irnn_starts_from_identity_and_stays_finite_over_the_timed_steps():
    """Le et al.'s initialisation, and 3 warm-up + 40 timed SGD steps at lr 0.1 in float32
    leave every parameter finite in both minigrad and the NumPy baseline (relu can overflow)."""
    H = 64
    model, params = lstm_lm.make_minigrad("irnn", H, mg.float32)
    assert model.encoder.rnn.nonlinearity == "relu"
    np.testing.assert_array_equal(params["rnn.weight_hh_l0"], np.eye(H))
    assert not params["rnn.bias_ih_l0"].any() and not params["rnn.bias_hh_l0"].any()
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, lstm_lm.V, (lstm_lm.T, lstm_lm.B))
    targets = rng.integers(0, lstm_lm.V, (lstm_lm.T, lstm_lm.B))
    for _ in range(43):
        lstm_lm.minigrad_step(model, tokens, targets)
        lstm_lm.numpy_step("irnn", params, tokens, targets, H, np.float32)
    assert all(np.isfinite(p.numpy()).all() for p in model.parameters())
    assert all(np.isfinite(p).all() for p in params.values())
