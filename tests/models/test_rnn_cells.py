"""Cells: equations against an independent NumPy forward, gradcheck over unrolled steps,
PyTorch's parameter names and shapes, and errors that name the cell and the shapes."""

import numpy as np
import pytest
from rnn_testing import float64_seeded, module_gradcheck, rng_fixture  # noqa: F401 (fixtures)

import minigrad as mg
from models import GRUCell, LSTMCell, RNNCell
from models import reference_bptt as ref

B, T, IN, H = 2, 3, 2, 3

CELLS = {
    "rnn_tanh": lambda: RNNCell(IN, H),
    "rnn_relu": lambda: RNNCell(IN, H, nonlinearity="relu"),
    "lstm": lambda: LSTMCell(IN, H),
    "gru": lambda: GRUCell(IN, H),
    "gru_reset_before": lambda: GRUCell(IN, H, reset_after=False),
}


def numpy_step(kind, cell, x, state):
    """One step by the reference NumPy forward (a sequence of length 1)."""
    w = [p.data for p in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
    if kind.startswith("rnn"):
        return ref.rnn_forward(x[None], *w, h0=state, nonlinearity=cell.nonlinearity)[1]
    if kind == "lstm":
        return ref.lstm_forward(x[None], *w, *state)[1]
    return ref.gru_forward(x[None], *w, h0=state, reset_after=cell.reset_after)[1]


@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_matches_numpy_equations(kind, rng):
    cell = CELLS[kind]()
    x = rng.standard_normal((B, IN))
    if kind == "lstm":
        state = (rng.standard_normal((B, H)), rng.standard_normal((B, H)))
        got = cell(mg.tensor(x), tuple(mg.tensor(s) for s in state))
        for g, e in zip(got, numpy_step(kind, cell, x, state), strict=True):
            np.testing.assert_allclose(g.data, e, rtol=0, atol=1e-14)
    else:
        state = rng.standard_normal((B, H))
        got = cell(mg.tensor(x), mg.tensor(state))
        np.testing.assert_allclose(got.data, numpy_step(kind, cell, x, state), rtol=0, atol=1e-14)


@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_gradcheck_through_unrolled_steps(kind, rng):
    cell = CELLS[kind]()
    xs = mg.tensor(rng.standard_normal((T, B, IN)), requires_grad=True)
    h0 = mg.tensor(rng.standard_normal((B, H)), requires_grad=True)
    c0 = mg.tensor(rng.standard_normal((B, H)), requires_grad=True)

    def unroll(xs, h0, c0):
        state = (h0, c0) if kind == "lstm" else h0
        outs = []
        for t in range(T):
            state = cell(xs[t], state)
            outs.append(state[0] if kind == "lstm" else state)
        return mg.stack(outs) if kind != "lstm" else (mg.stack(outs), state[1])

    assert module_gradcheck(cell, unroll, xs, h0, c0)


@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_parameters_are_pytorchs(kind):
    cell = CELLS[kind]()
    G = {"lstm": 4, "gru": 3, "gru_reset_before": 3}.get(kind, 1)
    shapes = {n: p.shape for n, p in cell.named_parameters()}
    assert shapes == {
        "weight_ih": (G * H, IN),
        "weight_hh": (G * H, H),
        "bias_ih": (G * H,),
        "bias_hh": (G * H,),
    }
    bound = 1 / np.sqrt(H)
    assert all(np.abs(p.data).max() <= bound for p in cell.parameters())
    no_bias = type(cell)(IN, H, bias=False)
    assert [n for n, _ in no_bias.named_parameters()] == ["weight_ih", "weight_hh"]


@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_unbatched_and_default_state(kind, rng):
    cell = CELLS[kind]()
    x = rng.standard_normal(IN)
    one = cell(mg.tensor(x))
    batch = cell(mg.tensor(x[None]))
    if kind == "lstm":
        assert one[0].shape == (H,) and one[1].shape == (H,)
        np.testing.assert_allclose(one[0].data, batch[0].data[0], atol=1e-15)
    else:
        assert one.shape == (H,)
        np.testing.assert_allclose(one.data, batch.data[0], atol=1e-15)
    zeros = mg.zeros(1, H)
    explicit = cell(mg.tensor(x[None]), (zeros, zeros) if kind == "lstm" else zeros)
    first = lambda s: s[0] if kind == "lstm" else s
    np.testing.assert_array_equal(first(explicit).data, first(batch).data)


def test_gru_seed_convention_is_pytorch_form_with_negated_update_gate(rng):
    """The lecture notes write h' = (1 - z) h + z n; PyTorch writes h' = (1 - z) n + z h.
    sigma(-a) = 1 - sigma(a), so negating the update gate's weights and biases maps one onto
    the other (here in the notes' reset-before form, Cho et al. 2014)."""
    cell = GRUCell(IN, H, reset_after=False)
    x, h = rng.standard_normal((B, IN)), rng.standard_normal((B, H))
    Wi, Wh = cell.weight_ih.data, cell.weight_hh.data
    bi, bh = cell.bias_ih.data, cell.bias_hh.data
    z_rows = slice(H, 2 * H)
    r = ref.sigmoid(x @ Wi[:H].T + bi[:H] + h @ Wh[:H].T + bh[:H])
    z_seed = ref.sigmoid(-(x @ Wi[z_rows].T + bi[z_rows] + h @ Wh[z_rows].T + bh[z_rows]))
    n = np.tanh(x @ Wi[2 * H :].T + bi[2 * H :] + (r * h) @ Wh[2 * H :].T + bh[2 * H :])
    seed_form = (1 - z_seed) * h + z_seed * n  # the notes' update, with negated z weights
    np.testing.assert_allclose(cell(mg.tensor(x), mg.tensor(h)).data, seed_form, atol=1e-14)


def test_gru_forms_differ(rng):
    after, before = GRUCell(IN, H), GRUCell(IN, H, reset_after=False)
    before.load_state_dict(after.state_dict())
    x, h = mg.tensor(rng.standard_normal((B, IN))), mg.tensor(rng.standard_normal((B, H)))
    assert np.abs(after(x, h).data - before(x, h).data).max() > 1e-6


def test_cell_errors_name_the_cell_and_shapes():
    cell = LSTMCell(4, 3)
    with pytest.raises(ValueError, match=r"LSTMCell: input has 5 features but input_size is 4"):
        cell(mg.zeros(2, 5))
    with pytest.raises(ValueError, match=r"LSTMCell: c must have shape \(2, 3\).*got \(2, 4\)"):
        cell(mg.zeros(2, 4), (mg.zeros(2, 3), mg.zeros(2, 4)))
    with pytest.raises(ValueError, match=r"GRUCell: expected input of shape \(batch, 4\)"):
        GRUCell(4, 3)(mg.zeros(1, 2, 4))
    with pytest.raises(TypeError, match=r"RNNCell: input must be a floating tensor.*Embedding"):
        RNNCell(4, 3)(mg.tensor([[1, 2, 3, 4]]))
    with pytest.raises(ValueError, match=r"RNNCell: nonlinearity must be 'tanh' or 'relu'"):
        RNNCell(4, 3, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match=r"GRUCell: hidden_size must be a positive integer"):
        GRUCell(4, 0)
