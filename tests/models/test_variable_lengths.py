"""Variable-length batches: a padded batch with `lengths` behaves exactly like each sequence
run alone (outputs, final states and gradients), padding receives no gradient, and a
bidirectional layer's backward direction starts at each sequence's own last step."""

import numpy as np
import pytest
from rnn_testing import float64_seeded, graph_op_names, rng_fixture  # noqa: F401 (fixtures)

import minigrad as mg
from models import GRU, LSTM, RNN

T, IN, H = 5, 2, 3
LENGTHS = [5, 2, 4, 1]
B = len(LENGTHS)

KINDS = {
    "rnn": lambda **kw: RNN(IN, H, **kw),
    "lstm": lambda **kw: LSTM(IN, H, **kw),
    "gru": lambda **kw: GRU(IN, H, **kw),
    "gru_reset_before": lambda **kw: GRU(IN, H, reset_after=False, **kw),
}


def h_of(h_n):
    return h_n if isinstance(h_n, mg.Tensor) else h_n[0]


def weighted_loss(output, h_n, w_out, w_fin):
    """A scalar that depends on every output and final state (h and c)."""
    loss = (output * mg.tensor(w_out)).sum()
    for s, w in zip(h_n if isinstance(h_n, tuple) else (h_n,), w_fin, strict=False):
        loss = loss + (s * mg.tensor(w)).sum()
    return loss


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("kind", list(KINDS))
def test_padded_batch_equals_each_sequence_alone(kind, bidirectional, rng):
    layer = KINDS[kind](num_layers=2, bidirectional=bidirectional)
    D = layer.num_directions
    x = rng.standard_normal((T, B, IN))
    for b, n in enumerate(LENGTHS):
        x[n:, b] = 1e3 * rng.standard_normal((T - n, IN))  # garbage in the padding
    w_out = rng.standard_normal((T, B, D * H))
    w_fin = [rng.standard_normal((2 * D, B, H)) for _ in range(2)]

    xt = mg.tensor(x, requires_grad=True)
    output, h_n = layer(xt, lengths=LENGTHS)
    weighted_loss(output, h_n, w_out, w_fin).backward()
    batch_grads = {n: p.grad.numpy().copy() for n, p in layer.named_parameters()}

    layer.zero_grad()
    for b, n in enumerate(LENGTHS):
        xb = mg.tensor(x[:n, b : b + 1], requires_grad=True)
        out_b, h_b = layer(xb)
        np.testing.assert_allclose(output.data[:n, b], out_b.data[:, 0], atol=1e-13)
        assert not output.data[n:, b].any(), "outputs at padded steps must be zero"
        finals = h_n if isinstance(h_n, tuple) else (h_n,)
        finals_b = h_b if isinstance(h_b, tuple) else (h_b,)
        for f, fb in zip(finals, finals_b, strict=True):
            np.testing.assert_allclose(f.data[:, b], fb.data[:, 0], atol=1e-13)
        fin_w = [w[:, b : b + 1] for w in w_fin]
        weighted_loss(out_b, h_b, w_out[:n, b : b + 1], fin_w).backward()
        np.testing.assert_allclose(xt.grad[:n, b], xb.grad[:, 0], atol=1e-12)
        assert not xt.grad[n:, b].any(), "padded inputs must receive no gradient"
    for name, p in layer.named_parameters():  # per-sequence gradients accumulated
        np.testing.assert_allclose(batch_grads[name], p.grad, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("kind", list(KINDS))
def test_bidirectional_is_forward_plus_backward_on_reversed_sequences(kind, rng):
    bi = KINDS[kind](bidirectional=True)
    fwd, bwd = KINDS[kind](), KINDS[kind]()
    sd = bi.state_dict()
    fwd.load_state_dict({k: v for k, v in sd.items() if not k.endswith("_reverse")})
    bwd.load_state_dict({k[: -len("_reverse")]: v for k, v in sd.items() if k.endswith("_reverse")})
    x = rng.standard_normal((T, B, IN))
    out, h_n = bi(mg.tensor(x), lengths=LENGTHS)
    out_f, h_f = fwd(mg.tensor(x), lengths=LENGTHS)
    # Reverse each sequence within its own length; padding stays at the end.
    x_rev = x.copy()
    for b, n in enumerate(LENGTHS):
        x_rev[:n, b] = x[:n, b][::-1]
    out_r, h_r = bwd(mg.tensor(x_rev), lengths=LENGTHS)
    out_b = out_r.numpy().copy()
    for b, n in enumerate(LENGTHS):
        out_b[:n, b] = out_r.data[:n, b][::-1]
    np.testing.assert_allclose(out.data, np.concatenate([out_f.data, out_b], axis=2), atol=1e-13)
    np.testing.assert_allclose(h_of(h_n).data[0], h_of(h_f).data[0], atol=1e-13)
    np.testing.assert_allclose(h_of(h_n).data[1], h_of(h_r).data[0], atol=1e-13)


def test_zero_length_keeps_the_initial_state(rng):
    lstm = LSTM(IN, H, bidirectional=True)
    h0, c0 = rng.standard_normal((2, 2, H)), rng.standard_normal((2, 2, H))
    out, (h_n, c_n) = lstm(
        mg.tensor(rng.standard_normal((T, 2, IN))), (mg.tensor(h0), mg.tensor(c0)), [0, 3]
    )
    assert not out.data[:, 0].any()
    np.testing.assert_array_equal(h_n.data[:, 0], h0[:, 0])
    np.testing.assert_array_equal(c_n.data[:, 0], c0[:, 0])


def test_full_lengths_change_nothing_and_mask_nothing(rng):
    lstm = LSTM(IN, H, num_layers=2, bidirectional=True)
    x = mg.tensor(rng.standard_normal((T, B, IN)), requires_grad=True)
    plain, _ = lstm(x)
    full, _ = lstm(x, lengths=[T] * B)
    np.testing.assert_array_equal(plain.data, full.data)
    # No masking op when lengths is None or every sequence is full (seen on the per-step
    # path, where masking is a `where` node; the whole-sequence node masks inside itself).
    lstm.scan = False
    plain, _ = lstm(x)
    full, _ = lstm(x, lengths=[T] * B)
    assert "Where" not in graph_op_names(plain) and "Where" not in graph_op_names(full)
    padded, _ = lstm(x, lengths=LENGTHS)
    assert "Where" in graph_op_names(padded)


def test_lengths_accept_arrays_and_tensors(rng):
    gru = GRU(IN, H)
    x = mg.tensor(rng.standard_normal((T, B, IN)))
    a = gru(x, lengths=np.array(LENGTHS))[0].data
    b = gru(x, lengths=mg.tensor(LENGTHS))[0].data
    np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="GRU: lengths must be integers"):
        gru(x, lengths=[1.5, 2, 3, 4])
