"""RTRL (forward mode, models/rtrl.py) against BPTT (reverse mode) on the same network: the
gradient over a whole sequence agrees to 1e-10 in float64 for the tanh RNN, the LSTM and the
GRU, whatever the chunking of the directions; and at every step t RTRL already holds the
gradient of the losses up to t."""

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn as nn
import minigrad.nn.functional as F
from models import GRUCell, LSTMCell, RNNCell
from models.rtrl import RTRL, bptt_gradients

T, B, I, H = 12, 2, 3, 4


def _net(cell_cls, seed=0):
    mg.manual_seed(seed)
    return cell_cls(I, H).to(mg.float64), nn.Linear(H, 2).to(mg.float64)


def _data(seed=1, steps=T):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((steps, B, I)), rng.standard_normal((steps, B, 2))


def _grads(*modules):
    return [p.grad.numpy().copy() for m in modules for p in m.parameters()]


def _zero(*modules):
    for m in modules:
        for p in m.parameters():
            p.grad = None


@pytest.mark.parametrize("cell_cls", [RNNCell, LSTMCell, GRUCell], ids=["rnn", "lstm", "gru"])
@pytest.mark.parametrize("chunk", [None, 7])
def test_rtrl_gradient_equals_bptt_over_a_whole_sequence(cell_cls, chunk):
    cell, readout = _net(cell_cls)
    xs, ys = _data()
    bptt_loss = bptt_gradients(cell, readout, F.mse_loss, xs, ys)
    expected = _grads(cell, readout)
    _zero(cell, readout)
    rtrl = RTRL(cell, readout, F.mse_loss, chunk=chunk)
    rtrl.reset(B)
    losses = [rtrl.step(x, y).item() for x, y in zip(xs, ys, strict=True)]
    assert sum(losses) == pytest.approx(bptt_loss.item(), rel=1e-13)
    got = _grads(cell, readout)
    assert len(got) == len(expected) == 6
    for g, e in zip(got, expected, strict=True):
        assert np.abs(e).max() > 1e-3  # every parameter gets a real gradient
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-10)
    assert rtrl.sensitivity_bytes == rtrl.n_states * rtrl.K * B * H * 8


def test_rtrl_holds_the_gradient_so_far_at_every_step():
    cell, readout = _net(LSTMCell, seed=3)
    xs, ys = _data(seed=4)
    rtrl = RTRL(cell, readout, F.mse_loss)
    rtrl.reset(B)
    for t in range(5):
        rtrl.step(xs[t], ys[t])
    online = _grads(cell, readout)
    _zero(cell, readout)
    bptt_gradients(cell, readout, F.mse_loss, xs[:5], ys[:5])
    for g, e in zip(online, _grads(cell, readout), strict=True):
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-10)


def test_rtrl_memory_does_not_grow_with_the_sequence():
    cell, readout = _net(RNNCell)
    xs, ys = _data(steps=30)
    rtrl = RTRL(cell, readout, F.mse_loss)
    rtrl.reset(B)
    sizes = set()
    for x, y in zip(xs, ys, strict=True):
        rtrl.step(x, y)
        sizes.add(rtrl.sensitivity_bytes)
    assert sizes == {rtrl.K * B * H * 8}
    assert rtrl.K == H * I + H * H + 2 * H


def test_rtrl_errors():
    with pytest.raises(TypeError, match="RTRL: expected an RNNCell, LSTMCell or GRUCell"):
        RTRL(nn.Linear(2, 2), None, F.mse_loss)
    cell, readout = _net(RNNCell)
    with pytest.raises(ValueError, match="RTRL: chunk must be a positive number"):
        RTRL(cell, readout, F.mse_loss, chunk=0)
    with pytest.raises(RuntimeError, match=r"RTRL: call reset\(batch_size\)"):
        RTRL(cell, readout, F.mse_loss).step(np.zeros((B, I)), np.zeros((B, 2)))


def test_the_example_measures_what_it_claims(tmp_path):
    """examples/rtrl_vs_bptt.py --quick: equal gradients, BPTT memory linear in T, RTRL's flat."""
    import importlib.util
    import sys
    from pathlib import Path

    examples = Path(__file__).resolve().parent.parent / "examples"
    sys.path.insert(0, str(examples))
    try:
        spec = importlib.util.spec_from_file_location("rtrl_example", examples / "rtrl_vs_bptt.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        metrics = module.main(["--quick", "--no-progress", "--out", str(tmp_path)])
    finally:
        sys.path.remove(str(examples))
    assert max(metrics["agreement_max_abs_diff"].values()) < 1e-10
    for kind in ("rnn", "lstm"):
        fits = metrics["exponents"][kind]
        assert 0.8 < fits["bptt_memory_vs_T"] < 1.2
        assert abs(fits["rtrl_memory_vs_T"]) < 0.3
    rows = metrics["costs"]
    assert all(r["rtrl_sensitivities_kib"] > 0 for r in rows)
    assert (tmp_path / "costs.md").read_text().count("\n") == len(rows) + 2
