"""LSTM gate-bias initialisations: forget-gate bias and chrono initialisation (Tallec & Ollivier
2018), on every layer and direction, reproducible from mg.manual_seed, refused on other cells."""

import numpy as np
import pytest

import minigrad as mg
from models import GRU, LSTM, LSTMCell, chrono_init_, forget_bias_init_

H = 5


def gate(bias, k):
    """Gate k (0 i, 1 f, 2 g, 3 o) of a (4H,) bias."""
    return bias.data[k * H : (k + 1) * H]


@pytest.mark.parametrize("bidirectional", [False, True])
def test_forget_bias_sets_b_if_plus_b_hf_on_every_layer_and_direction(bidirectional):
    lstm = LSTM(3, H, num_layers=2, bidirectional=bidirectional)
    before = {n: p.numpy().copy() for n, p in lstm.named_parameters()}
    assert forget_bias_init_(lstm, 1.0) is lstm
    names = [n for n in before if n.startswith("bias_ih")]
    assert len(names) == 2 * (2 if bidirectional else 1)
    for name in names:
        b_ih, b_hh = getattr(lstm, name), getattr(lstm, name.replace("_ih", "_hh"))
        np.testing.assert_array_equal(gate(b_ih, 1) + gate(b_hh, 1), np.ones(H))
        for k in (0, 2, 3):  # the other gates keep their values
            np.testing.assert_array_equal(gate(b_ih, k), before[name][k * H : (k + 1) * H])
    for name, value in before.items():
        if not name.startswith("bias"):
            np.testing.assert_array_equal(getattr(lstm, name).data, value)


def test_forget_bias_one_opens_the_forget_gate_at_the_first_step():
    mg.manual_seed(0)
    cell = forget_bias_init_(LSTMCell(2, H), 3.0)
    for name, p in cell.named_parameters():
        if name.startswith("weight"):
            p.data[:] = 0.0
    c0 = mg.ones(1, H)
    _, c = cell(mg.zeros(1, 2), (mg.zeros(1, H), c0))
    # with zero weights c = f * c0 + i * g = sigma(3) * 1 + sigma(b_i) * tanh(b_g)
    b = cell.bias_ih.data + cell.bias_hh.data
    sig = lambda z: 1 / (1 + np.exp(-z))
    expected = sig(3.0) + sig(b[:H]) * np.tanh(b[2 * H : 3 * H])
    np.testing.assert_allclose(c.data[0], expected, rtol=1e-6)


def test_chrono_draws_log_uniform_forget_biases_and_the_opposite_input_biases():
    mg.manual_seed(3)
    lstm = chrono_init_(LSTM(2, 400), t_max=100)
    b_ih, b_hh = lstm.bias_ih_l0.data, lstm.bias_hh_l0.data
    b_i, b_f = b_ih[:400], b_ih[400:800]
    np.testing.assert_array_equal(b_i, -b_f)
    np.testing.assert_array_equal(b_hh[:800], np.zeros(800))
    assert b_f.min() >= 0.0 and b_f.max() <= np.log(99.0) + 1e-6
    u = np.exp(b_f.astype(np.float64))  # U(1, 99): mean 50, and spread over the whole range
    assert abs(u.mean() - 50.0) < 5.0 and u.min() < 5.0 and u.max() > 90.0
    mg.manual_seed(3)
    again = chrono_init_(LSTM(2, 400), t_max=100)
    np.testing.assert_array_equal(again.bias_ih_l0.data, lstm.bias_ih_l0.data)


@pytest.mark.parametrize(
    "init",
    [lambda m: forget_bias_init_(m), lambda m: chrono_init_(m, 10)],
    ids=["forget", "chrono"],
)
def test_other_cells_and_layers_without_bias_are_refused(init):
    with pytest.raises(ValueError, match="needs an LSTM"):
        init(GRU(2, H))
    with pytest.raises(ValueError, match="needs an LSTM"):
        init(LSTM(2, H, bias=False))


def test_chrono_needs_a_horizon_above_two():
    with pytest.raises(ValueError, match="t_max must exceed 2"):
        chrono_init_(LSTM(2, H), 2)
