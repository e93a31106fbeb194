"""Layers: PyTorch's names and shapes, equations against NumPy (stacked and bidirectional),
gradcheck of every option, batch_first, dropout, loading by name, IRNN, clear errors."""

import re

import numpy as np
import pytest
from rnn_testing import float64_seeded, module_gradcheck, rng_fixture  # noqa: F401 (fixtures)

import minigrad as mg
from models import GRU, IRNN, LSTM, RNN, GRUCell, LSTMCell, RNNCell, identity_init_, make_rnn
from models import reference_bptt as ref

B, T, IN, H = 2, 3, 2, 3

KINDS = {
    "rnn_tanh": lambda **kw: RNN(IN, H, **kw),
    "rnn_relu": lambda **kw: RNN(IN, H, nonlinearity="relu", **kw),
    "lstm": lambda **kw: LSTM(IN, H, **kw),
    "gru": lambda **kw: GRU(IN, H, **kw),
    "gru_reset_before": lambda **kw: GRU(IN, H, reset_after=False, **kw),
}


def numpy_direction(layer, k, d, x, state):
    """One layer and direction by the reference NumPy forward; the reverse direction runs on
    the time-reversed input and its outputs are flipped back."""
    w = [None if p is None else p.data for p in layer.layer_weights(k, d)]
    xs = x[::-1] if d == 1 else x
    if isinstance(layer, LSTM):
        hs, (h, c), _ = ref.lstm_forward(xs, *w, *state)
        final = (h, c)
    elif isinstance(layer, GRU):
        hs, h = ref.gru_forward(xs, *w, h0=state[0], reset_after=layer.reset_after)
        final = (h,)
    else:
        hs, h = ref.rnn_forward(xs, *w, h0=state[0], nonlinearity=layer.nonlinearity)
        final = (h,)
    return (hs[::-1] if d == 1 else hs), final


def numpy_layer(layer, x, states):
    """The whole stacked (bidirectional) layer in NumPy. states: per (k, d) tuples."""
    D = layer.num_directions
    finals, inp = [], x
    for k in range(layer.num_layers):
        outs = []
        for d in range(D):
            out, final = numpy_direction(layer, k, d, inp, states[k * D + d])
            outs.append(out)
            finals.append(final)
        inp = np.concatenate(outs, axis=2)
    return inp, [np.stack([f[i] for f in finals]) for i in range(len(finals[0]))]


def test_parameter_names_and_shapes_are_pytorchs():
    lstm = LSTM(5, 4, num_layers=2, bidirectional=True)
    expected = []
    for k, layer_in in [(0, 5), (1, 8)]:
        for s in ("", "_reverse"):
            expected += [
                (f"weight_ih_l{k}{s}", (16, layer_in)),
                (f"weight_hh_l{k}{s}", (16, 4)),
                (f"bias_ih_l{k}{s}", (16,)),
                (f"bias_hh_l{k}{s}", (16,)),
            ]
    assert [(n, p.shape) for n, p in lstm.named_parameters()] == expected
    assert [n for n, _ in GRU(3, 2, bias=False).named_parameters()] == [
        "weight_ih_l0",
        "weight_hh_l0",
    ]
    assert all(np.abs(p.data).max() <= 1 / 2 for p in LSTM(3, 4).parameters())


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_layer_matches_numpy_equations(kind, bidirectional, rng):
    layer = KINDS[kind](num_layers=2, bidirectional=bidirectional)
    D, L = layer.num_directions, 2
    x = rng.standard_normal((T, B, IN))
    h0 = rng.standard_normal((L * D, B, H))
    c0 = rng.standard_normal((L * D, B, H))
    is_lstm = kind == "lstm"
    init = (mg.tensor(h0), mg.tensor(c0)) if is_lstm else mg.tensor(h0)
    output, h_n = layer(mg.tensor(x), init)
    states = [(h0[i], c0[i]) if is_lstm else (h0[i],) for i in range(L * D)]
    expected_out, expected_final = numpy_layer(layer, x, states)
    assert output.shape == (T, B, D * H)
    np.testing.assert_allclose(output.data, expected_out, rtol=0, atol=1e-13)
    got_final = h_n if is_lstm else (h_n,)
    for g, e in zip(got_final, expected_final, strict=True):
        assert g.shape == (L * D, B, H)
        np.testing.assert_allclose(g.data, e, rtol=0, atol=1e-13)


GRADCHECK_OPTIONS = {
    "stacked_bidirectional_h0_lengths": dict(num_layers=2, bidirectional=True),
    "batch_first": dict(batch_first=True),
    "no_bias": dict(bias=False),
}


@pytest.mark.parametrize("option", list(GRADCHECK_OPTIONS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_layer_gradcheck(kind, option, rng):
    layer = KINDS[kind](**GRADCHECK_OPTIONS[option])
    L = layer.num_layers * layer.num_directions
    shape = (B, T, IN) if layer.batch_first else (T, B, IN)
    x = mg.tensor(rng.standard_normal(shape), requires_grad=True)
    h0 = mg.tensor(rng.standard_normal((L, B, H)), requires_grad=True)
    c0 = mg.tensor(rng.standard_normal((L, B, H)), requires_grad=True)
    lengths = [T, 1] if option.endswith("lengths") else None

    def run(x, h0, c0=None):
        output, h_n = layer(x, (h0, c0) if kind == "lstm" else h0, lengths=lengths)
        return (output,) + (h_n if kind == "lstm" else (h_n,))

    inputs = (x, h0, c0) if kind == "lstm" else (x, h0)
    assert module_gradcheck(layer, run, *inputs)


@pytest.mark.parametrize("kind", list(KINDS))
def test_batch_first_is_a_transpose(kind, rng):
    tm = KINDS[kind](num_layers=2, bidirectional=True)
    bf = KINDS[kind](num_layers=2, bidirectional=True, batch_first=True)
    bf.load_state_dict(tm.state_dict())
    x = rng.standard_normal((T, B, IN))
    out_tm, h_tm = tm(mg.tensor(x))
    out_bf, h_bf = bf(mg.tensor(x.transpose(1, 0, 2)))
    np.testing.assert_array_equal(out_bf.data, out_tm.numpy().transpose(1, 0, 2))
    h_tm, h_bf = (h_tm, h_bf) if kind == "lstm" else ((h_tm,), (h_bf,))
    for a, b in zip(h_tm, h_bf, strict=True):  # batch_first does not apply to states
        np.testing.assert_array_equal(a.data, b.data)


@pytest.mark.parametrize("kind", list(KINDS))
def test_unbatched_input_is_a_batch_of_one(kind, rng):
    layer = KINDS[kind](num_layers=2, bidirectional=True)
    x = rng.standard_normal((T, IN))
    out1, h1 = layer(mg.tensor(x))
    outb, hb = layer(mg.tensor(x[:, None]))
    assert out1.shape == (T, 2 * H)
    np.testing.assert_allclose(out1.data, outb.data[:, 0], atol=1e-15)
    first = (lambda s: s[0]) if kind == "lstm" else (lambda s: s)
    assert first(h1).shape == (4, H)
    np.testing.assert_allclose(first(h1).data, first(hb).data[:, 0], atol=1e-15)


def test_dropout_only_between_layers_and_only_in_training(rng):
    x = mg.tensor(rng.standard_normal((T, B, IN)))
    deep = LSTM(IN, H, num_layers=2, dropout=0.5)
    plain = LSTM(IN, H, num_layers=2)
    plain.load_state_dict(deep.state_dict())
    train_out = deep(x)[0].data
    assert np.abs(train_out - plain(x)[0].data).max() > 1e-6  # masks were drawn
    deep.eval()
    np.testing.assert_array_equal(deep(x)[0].data, plain(x)[0].data)
    one = LSTM(IN, H, num_layers=1, dropout=0.5)  # nothing between layers: no effect
    same = LSTM(IN, H)
    same.load_state_dict(one.state_dict())
    np.testing.assert_array_equal(one(x)[0].data, same(x)[0].data)
    deep.train()
    mg.manual_seed(7)
    a = deep(x)[0].data
    mg.manual_seed(7)
    np.testing.assert_array_equal(deep(x)[0].data, a)  # the global generator draws the masks


def test_pytorch_state_dict_as_numpy_loads_by_name(rng):
    """A PyTorch state_dict converted with .numpy() is a dict of these names and arrays."""
    names = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    shapes = [(3 * H, IN), (3 * H, H), (3 * H,), (3 * H,)]
    sd = {n: rng.standard_normal(s).astype(np.float32) for n, s in zip(names, shapes, strict=True)}
    sd.update({n + "_reverse": rng.standard_normal(s) for n, s in zip(names, shapes, strict=True)})
    gru = GRU(IN, H, bidirectional=True)
    gru.load_state_dict(sd)
    x = rng.standard_normal((T, B, IN))
    out, _ = gru(mg.tensor(x))
    fwd, _ = ref.gru_forward(x, *(sd[n].astype(np.float64) for n in names))
    bwd, _ = ref.gru_forward(x[::-1], *(sd[n + "_reverse"] for n in names))
    np.testing.assert_allclose(out.data, np.concatenate([fwd, bwd[::-1]], axis=2), atol=1e-13)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_relu"])
def test_matches_torch_packed_sequences_when_available(kind, rng):
    """Outputs, final states and every gradient equal torch.nn's, weights loaded by name;
    `lengths` gives what a packed sequence gives in PyTorch."""
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    theirs_cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn_relu": torch.nn.RNN}[kind]
    kw = dict(num_layers=2, bidirectional=True)
    ours = KINDS[kind](**kw)
    if kind == "rnn_relu":
        kw["nonlinearity"] = "relu"
    theirs = theirs_cls(IN, H, **kw).double()
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    Bt, lengths = 3, [3, 1, 2]
    x = rng.standard_normal((T, Bt, IN))
    w = rng.standard_normal((T, Bt, 2 * H))

    xt = torch.from_numpy(x)
    packed = pack_padded_sequence(xt, torch.tensor(lengths), enforce_sorted=False)
    out_p, h_t = theirs(packed)
    out_t, _ = pad_packed_sequence(out_p, total_length=T)
    h_t = h_t if kind == "lstm" else (h_t,)
    (out_t * torch.from_numpy(w)).sum().add(sum(s.sum() for s in h_t)).backward()

    out, h_n = ours(mg.tensor(x), lengths=lengths)
    h_n = h_n if kind == "lstm" else (h_n,)
    ((out * mg.tensor(w)).sum() + sum(s.sum() for s in h_n)).backward()
    np.testing.assert_allclose(out.data, out_t.detach().numpy(), atol=1e-12)
    for a, b in zip(h_n, h_t, strict=True):
        np.testing.assert_allclose(a.data, b.detach().numpy(), atol=1e-12)
    for name, p in theirs.named_parameters():
        np.testing.assert_allclose(
            getattr(ours, name).grad, p.grad.numpy(), atol=1e-11, err_msg=name
        )


def test_irnn_identity_recurrence_zero_biases(rng):
    irnn = IRNN(IN, H, input_std=0.001)
    np.testing.assert_array_equal(irnn.weight_hh_l0.data, np.eye(H))
    assert not irnn.bias_ih_l0.numpy().any() and not irnn.bias_hh_l0.numpy().any()
    assert irnn.nonlinearity == "relu"
    assert np.abs(irnn.weight_ih_l0.data).max() < 0.01
    # With no input, h_t = relu(I h_{t-1}) = h_{t-1}: a non-negative state is remembered.
    h0 = np.abs(rng.standard_normal((1, B, H)))
    out, h_n = irnn(mg.zeros(50, B, IN), mg.tensor(h0))
    np.testing.assert_array_equal(out.data, np.broadcast_to(h0, (50, B, H)))
    scaled = identity_init_(RNN(IN, H, nonlinearity="relu", num_layers=2), scale=0.5)
    np.testing.assert_array_equal(scaled.weight_hh_l1.data, 0.5 * np.eye(H))
    assert isinstance(make_rnn("irnn", IN, H), IRNN)


def test_layer_errors_name_the_layer_and_shapes():
    lstm = LSTM(4, 3, num_layers=2)
    with pytest.raises(ValueError, match=r"LSTM: input.size\(-1\) must be equal to input_size. "
                       r"Expected 4, got 5 \(input of shape \(6, 2, 5\)\)"):  # fmt: skip
        lstm(mg.zeros(6, 2, 5))
    with pytest.raises(
        ValueError, match=r"LSTM: Expected h0 of shape .* = \(2, 2, 3\), got \(1, 2, 3\)"
    ):
        lstm(mg.zeros(6, 2, 4), (mg.zeros(1, 2, 3), mg.zeros(2, 2, 3)))
    with pytest.raises(TypeError, match=r"LSTM: the initial state must be a pair \(h0, c0\)"):
        lstm(mg.zeros(6, 2, 4), mg.zeros(2, 2, 3))
    with pytest.raises(ValueError, match=r"GRU: expected a 3-D input of shape \(seq, batch, 4\) "
                       r"or an unbatched 2-D \(seq, 4\), got shape \(4,\)"):  # fmt: skip
        GRU(4, 3)(mg.zeros(4))
    with pytest.raises(ValueError, match=r"RNN: lengths must lie in \[0, 6\].*from 1 to 7"):
        RNN(4, 3)(mg.zeros(6, 2, 4), lengths=[1, 7])
    with pytest.raises(ValueError, match=r"RNN: lengths must hold one length per sequence, "
                       r"shape \(2,\), got shape \(3,\)"):  # fmt: skip
        RNN(4, 3)(mg.zeros(6, 2, 4), lengths=[1, 2, 3])
    with pytest.raises(TypeError, match=r"GRU: input must be a floating tensor.*Embedding"):
        GRU(4, 3)(mg.tensor(np.zeros((6, 2, 4), dtype=np.int64)))
    with pytest.raises(ValueError, match=r"RNN: nonlinearity must be 'tanh' or 'relu'"):
        RNN(4, 3, nonlinearity="gelu")
    with pytest.raises(ValueError, match=r"LSTM: dropout must be a probability"):
        LSTM(4, 3, dropout=1.5)
    with pytest.raises(ValueError, match=r"unknown cell 'transformer'"):
        make_rnn("transformer", 4, 3)


@pytest.mark.parametrize(
    ("batch_first", "shape"), [(True, (3, 0, 4)), (False, (0, 3, 4)), (False, (0, 4))]
)
def test_no_time_steps_error_shows_the_callers_shape(batch_first, shape):
    # batch_first and unbatched inputs are reshaped inside forward; the message must not be.
    match = r"LSTM: the input has no time steps \(shape " + re.escape(str(shape)) + r"\)"
    with pytest.raises(ValueError, match=match):
        LSTM(4, 8, batch_first=batch_first)(mg.randn(*shape))


# ----- a state of the wrong kind or shape, an input of the wrong shape ----------------------------
STATE = r"\(num_layers\*num_directions, batch, hidden_size\)"


@pytest.mark.parametrize("kind", ["rnn_tanh", "gru", "gru_reset_before"])
def test_a_one_state_layer_given_an_lstm_pair(kind):
    layer = KINDS[kind]()
    name = type(layer).__name__
    x, h = mg.zeros(5, B, IN), mg.zeros(1, B, H)
    message = rf"{name}: h0 must be a tensor of shape {STATE} = \(1, {B}, {H}\), got a tuple"
    with pytest.raises(TypeError, match=message + r" of 2; \(h0, c0\) is an LSTM's state"):
        layer(x, (h, h))
    with pytest.raises(TypeError, match=rf"{name}: h0 must be a tensor .* got a list of 1$"):
        layer(x, [h])
    # A nested list of numbers is still an array-like state, checked by its shape.
    assert layer(x, h.data.tolist())[1].shape == (1, B, H)


def test_an_lstm_given_one_tensor_or_a_wrong_tuple():
    lstm = LSTM(IN, H, num_layers=2, bidirectional=True)
    x, h = mg.zeros(5, B, IN), mg.zeros(4, B, H)
    pair = rf"LSTM: the initial state must be a pair \(h0, c0\) of tensors of shape {STATE} = "
    with pytest.raises(TypeError, match=pair + rf"\(4, {B}, {H}\) each, got a tensor of shape "
                       rf"\(4, {B}, {H}\)"):  # fmt: skip
        lstm(x, h)
    with pytest.raises(TypeError, match=pair + r".* got a tuple of 3"):
        lstm(x, (h, h, h))
    with pytest.raises(TypeError, match=pair + r".* got a tuple of 1"):
        lstm(x, (h,))
    with pytest.raises(ValueError, match=rf"LSTM: Expected c0 of shape {STATE} = "
                       rf"\(4, {B}, {H}\), got \({B}, {H}\)"):  # fmt: skip
        lstm(x, (h, mg.zeros(B, H)))


@pytest.mark.parametrize("kind", list(KINDS))
def test_wrong_shapes_name_the_layer_and_the_expected_shapes(kind):
    layer = KINDS[kind](num_layers=2, bidirectional=True)
    name = type(layer).__name__
    states = lambda *shape: tuple(mg.zeros(*shape) for _ in range(layer.n_states))
    wrap = lambda s: s if layer.n_states == 2 else s[0]
    with pytest.raises(ValueError, match=rf"{name}: Expected h0 of shape {STATE} = "
                       rf"\(4, {B}, {H}\), got \(2, {B}, {H}\)"):  # fmt: skip
        layer(mg.zeros(5, B, IN), wrap(states(2, B, H)))
    # unbatched input: the states have no batch dim either
    unbatched = r"\(num_layers\*num_directions, hidden_size\)"
    with pytest.raises(ValueError, match=rf"{name}: Expected h0 of shape {unbatched} = "
                       rf"\(4, {H}\), got \(4, 1, {H}\)"):  # fmt: skip
        layer(mg.zeros(5, IN), wrap(states(4, 1, H)))
    assert layer(mg.zeros(5, IN), wrap(states(4, H)))[0].shape == (5, 2 * H)
    with pytest.raises(ValueError, match=rf"{name}: input.size\(-1\) must be equal to "
                       rf"input_size. Expected {IN}, got 7"):  # fmt: skip
        layer(mg.zeros(5, B, 7))
    for shape in [(IN,), (5, B, 1, IN), ()]:
        with pytest.raises(ValueError, match=rf"{name}: expected a 3-D input of shape "
                           rf"\(seq, batch, {IN}\) or an unbatched 2-D \(seq, {IN}\), "
                           rf"got shape {re.escape(str(shape))}"):  # fmt: skip
            layer(mg.zeros(*shape))
    batch_first = KINDS[kind](batch_first=True)
    with pytest.raises(ValueError, match=rf"3-D input of shape \(batch, seq, {IN}\)"):
        batch_first(mg.zeros(1, 1, 1, IN))


CELLS = {
    "RNNCell": lambda: RNNCell(IN, H),
    "LSTMCell": lambda: LSTMCell(IN, H),
    "GRUCell": lambda: GRUCell(IN, H),
    "GRUCell(reset_after=False)": lambda: GRUCell(IN, H, reset_after=False),
}


@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_errors_name_the_cell_and_the_expected_shapes(kind):
    cell = CELLS[kind]()
    name = type(cell).__name__
    x, h = mg.zeros(B, IN), mg.zeros(B, H)
    if cell.n_states == 2:
        pair = rf"{name}: the state must be a pair \(h, c\) of tensors of shape "
        with pytest.raises(TypeError, match=pair + rf"\(batch, hidden_size\) = \({B}, {H}\) "
                           rf"each, got a tensor of shape \({B}, {H}\)"):  # fmt: skip
            cell(x, h)
        with pytest.raises(TypeError, match=pair + r".* got a tuple of 1"):
            cell(x, (h,))
        with pytest.raises(TypeError, match=pair + rf"\(hidden_size,\) = \({H},\) each"):
            cell(mg.zeros(IN), mg.zeros(H))  # unbatched
        good, wrong = (lambda s: (s, s)), (lambda s, ok=h: (ok, s))
    else:
        with pytest.raises(TypeError, match=rf"{name}: h must be a tensor of shape \(batch, "
                           rf"hidden_size\) = \({B}, {H}\), got a tuple of 2; \(h, c\) is an "
                           rf"LSTMCell's state"):  # fmt: skip
            cell(x, (h, h))
        good, wrong = (lambda s: s), (lambda s, ok=h: s)
    what = "c" if cell.n_states == 2 else "h"
    with pytest.raises(ValueError, match=rf"{name}: {what} must have shape \({B}, {H}\) for "
                       rf"input of shape \({B}, {IN}\), got \(1, {B}, {H}\)"):  # fmt: skip
        cell(x, wrong(mg.zeros(1, B, H)))
    with pytest.raises(ValueError, match=rf"{name}: {what} must have shape \({H},\) for input "
                       rf"of shape \({IN},\), got \({B}, {H}\)"):  # fmt: skip
        cell(mg.zeros(IN), wrong(h, mg.zeros(H)))
    with pytest.raises(ValueError, match=rf"{name}: input has 7 features but input_size is {IN}"):
        cell(mg.zeros(B, 7), good(h))
    for shape in [(), (1, B, IN)]:
        with pytest.raises(ValueError, match=rf"{name}: expected input of shape \(batch, {IN}\) "
                           rf"or \({IN},\), got {re.escape(str(shape))}"):  # fmt: skip
            cell(mg.zeros(*shape))
    out = cell(x, good(h))
    assert (out[0] if cell.n_states == 2 else out).shape == (B, H)
