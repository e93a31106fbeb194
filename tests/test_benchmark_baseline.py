"""The benchmark's hand-written NumPy BPTT computes the same loss and gradients as minigrad
(float64), so the headline comparison compares equal work."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lstm_lm  # noqa: E402


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_numpy_baseline_equals_minigrad_in_float64(cell):
    assert lstm_lm.check_equal(cell, 8, use_torch=False) < 1e-12
    assert lstm_lm.check_equal(cell, 8, use_torch=False, fuse=False) < 1e-12
