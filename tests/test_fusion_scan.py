"""Fused.scan: a recurrent step's whole time loop as one graph node.

The node replays the traced step's plan on arrays T times, forward and backward. Checked here:
gradcheck in float64 through the node; equality with the same step run one fused call per time
step and with the plain unfused ops (values and every gradient, forwards and backwards in
time); user-written cells the library does not ship (a peephole LSTM, an LSTM with layer
normalisation inside, both reading captured parameters); the graph it makes; no_grad; the
version counter; and the steps it declines (then the layers step the cell themselves).
"""

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn as nn
import minigrad.nn.functional as F
from minigrad import fusion, gradients
from minigrad.autograd import ProductGrad
from models import LSTM
from models.cells import gru_step, lstm_step

T, B, H = 4, 2, 3


def lstm(x, state, w):
    return lstm_step(x, state[0], state[1], w)


def gru(x, state, recurrent):
    return (gru_step(x, state[0], *recurrent),)


PEEP = mg.tensor(np.random.default_rng(5).uniform(-1, 1, H), requires_grad=True)


def peephole(x, state, w):  # the README's cell: a peephole on the forget gate, p captured
    h, c = state
    i, f, g, o = (x + h @ w).chunk(4, axis=-1)
    c = (f + PEEP * c).sigmoid() * c + i.sigmoid() * g.tanh()
    return o.sigmoid() * c.tanh(), c


NORM = nn.LayerNorm(4 * H).to(mg.float64)
NORM.weight.data[:] = np.random.default_rng(6).uniform(0.5, 1.5, 4 * H)


def layer_norm_lstm(x, state, w):  # layer normalisation of the recurrent pre-activation
    h, c = state
    i, f, g, o = (x + NORM(F.linear(h, w))).chunk(4, axis=-1)
    c = f.sigmoid() * c + i.sigmoid() * g.tanh()
    return o.sigmoid() * c.tanh(), c


def inputs(kind, rng, dtype=np.float64):
    """(xs, state, extra) as leaf tensors needing gradients."""
    u = lambda *shape: mg.tensor(rng.uniform(-1, 1, shape).astype(dtype), requires_grad=True)
    if kind == "gru":
        return u(T, B, 3 * H), (u(B, H),), (u(3 * H, H), u(3 * H))
    w = u(H, 4 * H) if kind == "peephole" else u(4 * H, H)
    return u(T, B, 4 * H), (u(B, H), u(B, H)), w


STEPS = {"lstm": lstm, "gru": gru, "peephole": peephole, "layer_norm_lstm": layer_norm_lstm}


def flat(xs, state, extra):
    return [xs, *state, *(extra if isinstance(extra, tuple) else (extra,))]


def per_step(step, xs, state, extra, reverse):
    """The loop the scan replaces: one call of `step` per time step."""
    outs = [None] * xs.shape[0]
    for t in reversed(range(xs.shape[0])) if reverse else range(xs.shape[0]):
        state = step(xs[t], state, extra)
        outs[t] = state[0]
    return (mg.stack(outs), *state)


def run(results, tensors):
    """Values and gradients of a weighted sum of the results (fixed random weights)."""
    for t in tensors:
        t.grad = None
    loss = None
    for k, r in enumerate(results):
        w = np.random.default_rng(50 + k).standard_normal(r.shape).astype(r.dtype)
        term = (r * mg.tensor(w)).sum()
        loss = term if loss is None else loss + term
    loss.backward()
    return [r.numpy().copy() for r in results], [t.grad.numpy().copy() for t in tensors]


def close(a, b, rtol):
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * max(1.0, np.abs(y).max()))


@pytest.mark.parametrize("reverse", [False, True], ids=["forwards", "backwards"])
@pytest.mark.parametrize("kind", list(STEPS))
def test_scan_equals_the_per_step_fused_loop_and_the_unfused_ops(kind, reverse):
    step = STEPS[kind]
    fused = mg.fuse(step)
    xs, state, extra = inputs(kind, np.random.default_rng(1))
    tensors = flat(xs, state, extra) + ([PEEP] if kind == "peephole" else [])
    tensors += list(NORM.parameters()) if kind == "layer_norm_lstm" else []
    scanned = fused.scan(xs, state, extra, reverse=reverse)
    assert scanned is not None
    names = [node.name for node in mg.graph.walk(scanned[0])[0]]
    assert names.count(f"Scan({step.__qualname__})") == 1  # one node for the whole loop
    assert not any(name.startswith("Fused(") for name in names)
    got = run(scanned, tensors)
    stepped = run(per_step(fused, xs, state, extra, reverse), tensors)
    plain = run(per_step(step, xs, state, extra, reverse), tensors)
    close(got[0] + got[1], stepped[0] + stepped[1], 1e-12)
    close(got[0] + got[1], plain[0] + plain[1], 1e-12)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_scan_float32_equals_the_unfused_ops(kind):
    step = STEPS[kind]
    xs, state, extra = inputs(kind, np.random.default_rng(2), np.float32)
    tensors = flat(xs, state, extra)
    got = run(mg.fuse(step).scan(xs, state, extra), tensors)
    plain = run(per_step(step, xs, state, extra, False), tensors)
    assert all(a.dtype == np.float32 for a in got[0] + got[1])
    close(got[0] + got[1], plain[0] + plain[1], 2e-5)


@pytest.mark.parametrize("kind", list(STEPS))
def test_scan_passes_gradcheck(kind):
    fused = mg.fuse(STEPS[kind])
    xs, state, extra = inputs(kind, np.random.default_rng(3))
    n = len(state)

    def fn(xs, *rest):
        extra = tuple(rest[n:]) if kind == "gru" else rest[n]
        return fused.scan(xs, rest[:n], extra, reverse=True)

    assert mg.gradcheck(fn, flat(xs, state, extra))
    if kind == "peephole":  # the captured parameter's gradient too
        assert mg.gradcheck(lambda p: fused.scan(xs, state, extra)[0] * 1.0, [PEEP])


def test_no_grad_records_nothing_and_computes_the_same():
    fused = mg.fuse(lstm)
    xs, state, w = inputs("lstm", np.random.default_rng(4))
    with_grad = fused.scan(xs, state, w)
    with mg.no_grad():
        without = fused.scan(xs, state, w)
    assert all(r._node is None for r in without)
    for a, b in zip(with_grad, without, strict=True):
        assert np.array_equal(a.data, b.data)


def test_an_in_place_write_to_a_weight_before_backward_is_refused():
    fused = mg.fuse(lstm)
    xs, state, w = inputs("lstm", np.random.default_rng(4))
    out = fused.scan(xs, state, w)[0]
    with mg.no_grad():
        w.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an in-place operation.*Scan"):
        out.sum().backward()


def test_one_zeros_tensor_as_both_states_and_initial_states_without_gradient():
    fused = mg.fuse(lstm)
    xs, _, w = inputs("lstm", np.random.default_rng(7))
    zeros = mg.zeros(B, H, dtype=mg.float64)  # what the layers pass as (h0, c0) by default
    got = run(fused.scan(xs, (zeros, zeros), w), [xs, w])
    plain = run(per_step(lstm, xs, (zeros, zeros), w, False), [xs, w])
    close(got[0] + got[1], plain[0] + plain[1], 1e-12)
    assert zeros.grad is None


def test_steps_the_scan_declines():
    def mixed(x, state, w):  # states of two shapes cannot be stacked into one array
        h, s = state
        h = (x + h @ w).tanh()
        return h, s + h.sum(axis=-1, keepdims=True)

    rng = np.random.default_rng(8)
    xs = mg.tensor(rng.standard_normal((T, B, H)), requires_grad=True)
    h0, s0, w = mg.zeros(B, H), mg.zeros(B, 1), mg.tensor(rng.standard_normal((H, H)))
    fused = mg.fuse(mixed)
    assert "carries them as one kind of array" in fusion.scan_reason(fused, xs, (h0, s0), w)
    assert fused.scan(xs, (h0, s0), w) is None

    # Under forward mode (mg.jvp) the step's ops run unfused, with their tangent rules.
    fused_lstm = mg.fuse(lstm)
    xs, state, w = inputs("lstm", rng)
    assert fusion.scan_reason(fused_lstm, xs, state, w) is None
    seen = []

    def loop(x):
        seen.append(fused_lstm.scan(x, state, w))
        return per_step(fused_lstm, x, state, w, False)[0]

    out, tangent = mg.jvp(loop, (xs,), (mg.ones_like(xs),))
    assert seen == [None] and tangent.shape == out.shape
    assert "forward mode" in fusion.scan_reason.__doc__


def test_the_lstm_layer_is_one_scan_node_per_layer_and_direction():
    layer = LSTM(2, H, num_layers=2, bidirectional=True)
    out, _ = layer(mg.randn(5, B, 2))
    names = [node.name for node in mg.graph.walk(out)[0]]
    assert sum(name.startswith("Scan(") for name in names) == 4
    assert not any(name.startswith("Fused(") for name in names)


def test_retain_graph_keeps_the_steps_for_a_second_backward():
    fused = mg.fuse(lstm)
    xs, state, w = inputs("lstm", np.random.default_rng(9))
    out = fused.scan(xs, state, w)[0]
    loss = (out * out).sum()
    loss.backward(retain_graph=True)
    first = [xs.grad.numpy().copy(), w.grad.numpy().copy()]
    loss.backward()  # the steps' records were kept: the same gradients again
    np.testing.assert_allclose(xs.grad, 2 * first[0], rtol=1e-12)
    np.testing.assert_allclose(w.grad, 2 * first[1], rtol=1e-12)
    with pytest.raises(RuntimeError, match="a second time"):
        loss.backward()
    # mg.vjp pulls back several cotangents through one graph (retain_graph inside)
    _, pullback = mg.vjp(lambda xs: fused.scan(xs, state, w)[0], xs)
    once, again = (np.asarray(pullback(mg.ones(T, B, H, dtype=mg.float64))[0]) for _ in range(2))
    assert np.abs(once).max() > 0
    np.testing.assert_array_equal(once, again)


@pytest.mark.parametrize("reverse", [False, True], ids=["forwards", "backwards"])
def test_masked_steps_keep_the_state_and_output_zero(reverse):
    fused = mg.fuse(lstm)
    xs, state, w = inputs("lstm", np.random.default_rng(10))
    lengths = np.array([T, 1])  # sequence 1 ends after its first step
    masks = [None if (lengths > t).all() else (lengths > t)[:, None] for t in range(T)]
    masks[2] = np.zeros((B, 1), bool)  # a step where every sequence is padding
    tensors = [xs, *state, w]
    got = run(fused.scan(xs, state, w, reverse=reverse, masks=masks), tensors)

    outs, st = [None] * T, state  # the loop the layers run with lengths=
    for t in reversed(range(T)) if reverse else range(T):
        if masks[t] is None:
            st = lstm(xs[t], st, w)
            outs[t] = st[0]
        elif not masks[t].any():
            outs[t] = mg.zeros_like(st[0])
        else:
            new = lstm(xs[t], st, w)
            st = tuple(mg.where(masks[t], a, b) for a, b in zip(new, st, strict=True))
            outs[t] = mg.where(masks[t], new[0], 0.0)
    plain = run((mg.stack(outs), *st), tensors)
    close(got[0] + got[1], plain[0] + plain[1], 1e-12)
    assert not got[0][0][2].any() and not got[1][0][2].any()  # the skipped step


def test_the_recurrent_weight_gradient_is_one_product_over_the_input_gradient():
    # The LSTM kernel writes the one adjoint of `x + W_hh h` once, into the row of x's
    # gradient the scan hands it; W_hh's T gradient terms then are those rows, and the
    # product reads them in place: one product over T*B rows, no copy of the T factors.
    fused = mg.fuse(lstm)
    xs, state, w = inputs("lstm", np.random.default_rng(11))
    out = fused.scan(xs, state, w)[0]
    node = out._node
    assert isinstance(node, fusion.Scan)
    gx, _, _, gw = node.backward(np.ones((T, B, H)), None, None)
    assert type(gw) is ProductGrad and len(gw.lefts) == T
    rows, _ = gradients._adjacent(gw.lefts)
    assert rows.base is gx and rows.shape == (T * B, 4 * H)


def test_a_captured_tensor_that_changed_shape_is_refused():
    fused = mg.fuse(peephole)
    xs, state, w = inputs("peephole", np.random.default_rng(12))
    fused.scan(xs, state, w)
    kept = PEEP.data
    try:
        PEEP.data = mg.from_numpy(np.zeros(H + 1))
        with pytest.raises(RuntimeError, match="captured changed shape from"):
            fused.scan(xs, state, w)
    finally:
        PEEP.data = kept
