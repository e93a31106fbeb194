"""One engine: nodes of several outputs, one reverse step for the tape, the scan over time and
checkpointing, and the guarantees that come with it everywhere (version checks, padding)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
import minigrad.optim as optim
from minigrad import autograd
from minigrad.autograd import Function
from minigrad.gradients import ProductGrad
from minigrad.ops.matmul import Linear
from models import GRU, LSTM, RNN

LAYERS = [LSTM, GRU, RNN]


class SplitScale(Function):
    """(a * x, b * x): a node of two outputs."""

    def forward(self, x, a=1.0, b=1.0):
        self.a, self.b = a, b
        return a * x, b * x

    def backward(self, ga, gb):
        self.seen = (ga is None, gb is None)
        g = 0
        if ga is not None:
            g = g + self.a * ga
        if gb is not None:
            g = g + self.b * gb
        return (g,)


def test_a_node_of_two_outputs_gets_both_gradients_at_once():
    x = mg.tensor([1.0, 2.0], dtype=mg.float64, requires_grad=True)
    p, q = SplitScale.apply(x, a=2.0, b=3.0)
    assert p._node is q._node and (p._index, q._index) == (0, 1)
    (p * q).sum().backward()  # d/dx (6 x^2) = 12 x
    np.testing.assert_array_equal(x.grad, [12.0, 24.0])


def test_an_unused_output_arrives_as_none():
    x = mg.tensor([1.0, 2.0], dtype=mg.float64, requires_grad=True)
    p, q = SplitScale.apply(x, a=2.0, b=3.0)
    node = q._node
    q.sum().backward()
    assert node.seen == (True, False)
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])


def test_hooks_and_retain_grad_act_on_their_own_output():
    x = mg.tensor([1.0, 2.0], dtype=mg.float64, requires_grad=True)
    p, q = SplitScale.apply(x, a=2.0, b=3.0)
    q.register_hook(lambda g: 10 * g)
    p.retain_grad()
    (p.sum() + q.sum()).backward()
    np.testing.assert_array_equal(p.grad, [1.0, 1.0])
    np.testing.assert_array_equal(x.grad, [2.0 + 30.0, 2.0 + 30.0])


def test_autograd_grad_returns_gradients_and_writes_no_grad():
    w = mg.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=mg.float64, requires_grad=True)
    x = mg.tensor([1.0, -1.0], dtype=mg.float64, requires_grad=True)
    y = ((w @ x) ** 2).sum()
    (gw,) = autograd.grad(y, [w])
    np.testing.assert_allclose(gw, 2 * np.outer(w.numpy() @ x.numpy(), x.numpy()))
    assert w.grad is None and x.grad is None


def test_a_lazy_product_reads_adjacent_rows_in_place_and_sums_the_same():
    rng = np.random.default_rng(0)
    rows_l, rows_r = rng.standard_normal((6, 4, 3)), rng.standard_normal((6, 4, 5))
    order = [5, 4, 3, 2, 1, 0]  # as a backward through time meets them
    g = ProductGrad(rows_l[order[0]], rows_r[order[0]])
    for t in order[1:]:
        g.extend(ProductGrad(rows_l[t], rows_r[t]))
    expected = sum(rows_l[t].T @ rows_r[t] for t in range(6))
    np.testing.assert_allclose(g.dense(), expected, rtol=1e-13)
    loose = ProductGrad(rows_l[5], rng.standard_normal((4, 5)))  # right side not adjacent
    loose.extend(ProductGrad(rows_l[4], loose.rights[0] + 1))
    np.testing.assert_allclose(
        loose.dense(), rows_l[5].T @ loose.rights[0] + rows_l[4].T @ (loose.rights[0] + 1)
    )


# ----- the default path's backward is the engine's own reverse step ----------------------------
def _lstm_run(T=5, **kw):
    mg.manual_seed(0)
    layer = LSTM(3, 4, **kw).to(mg.float64)
    x = mg.randn(T, 2, 3, dtype=mg.float64, requires_grad=True)
    out, (h, c) = layer(x)
    (out.sum() + c.sum()).backward()
    return layer, x


def test_the_default_lstm_backward_runs_the_engines_reverse_step(monkeypatch):
    calls = []
    step = autograd.reverse_step

    def counting(node, g, release):
        calls.append(node.name)
        return step(node, g, release)

    monkeypatch.setattr(autograd, "reverse_step", counting)
    T = 5
    layer, _ = _lstm_run(T)
    assert layer.scan and layer.fuse  # the default route
    assert sum(name.startswith("Fused(linear") for name in calls) == T  # one per time step
    assert calls.count("Scan(LSTM._step)") == 1


def test_changing_an_ops_backward_rule_changes_the_default_paths_gradients(monkeypatch):
    layer, x = _lstm_run()
    before_hh, before_ih, before_x = (
        layer.weight_hh_l0.grad.numpy().copy(),
        layer.weight_ih_l0.grad.numpy().copy(),
        x.grad.numpy().copy(),
    )
    rule = Linear.backward

    def doubled_weight_gradient(self, g):
        gx, gw, gb = rule(self, g)
        return gx, (None if gw is None else ProductGrad(2 * gw.lefts[0], gw.rights[0])), gb

    monkeypatch.setattr(Linear, "backward", doubled_weight_gradient)
    layer, x = _lstm_run()
    np.testing.assert_allclose(layer.weight_hh_l0.grad, 2 * before_hh, rtol=1e-12)
    np.testing.assert_allclose(layer.weight_ih_l0.grad, 2 * before_ih, rtol=1e-12)
    np.testing.assert_allclose(x.grad, before_x, rtol=1e-12)


# ----- guards by construction --------------------------------------------------------------------
def test_a_weight_inside_a_fused_matmul_is_version_checked():
    """The README's peephole cell under mg.fuse, its weight stepped between forward and
    backward: the matmul the fused node absorbed saved w, so backward refuses."""

    @mg.fuse
    def peephole_step(x, h, c, w, p):
        i, f, g, o = (x + h @ w).chunk(4, axis=-1)
        c = (f + p * c).sigmoid() * c + i.sigmoid() * g.tanh()
        return o.sigmoid() * c.tanh(), c

    x, h0, c0 = mg.randn(8, 64), mg.randn(8, 16), mg.randn(8, 16)
    w = mg.randn(16, 64, requires_grad=True)
    p = mg.randn(16, requires_grad=True)
    h, c = peephole_step(x, h0, c0, w, p)
    assert "Fused(matmul" in h._node.name
    opt = optim.SGD([w, p], lr=0.1)
    w.grad, p.grad = mg.ones_like(w), mg.ones_like(p)
    opt.step()
    with pytest.raises(RuntimeError, match=r"modified by an in-place operation: input \d .*Fused"):
        (h.sum() + c.sum()).backward()


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("route", ["scan", "scan unfused", "unroll", "checkpoint", "padded"])
def test_a_recurrent_weight_changed_before_backward_is_refused(cls, route):
    layer = cls(3, 4)
    layer.scan = route != "unroll"
    layer.fuse = route != "scan unfused"
    if route == "checkpoint":
        layer.checkpoint_every = 2
    x = mg.randn(6, 2, 3, requires_grad=True)
    out, _ = layer(x, lengths=[6, 4] if route == "padded" else None)
    with mg.no_grad():
        layer.weight_hh_l0.add_(0.1)  # only the recurrent weight
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        out.sum().backward()


@pytest.mark.parametrize("cls", LAYERS)
def test_checkpointed_segments_refuse_an_optimizer_step_or_a_load_before_backward(cls):
    for change in ("step", "load"):
        layer = cls(3, 4, checkpoint_every=2)
        x = mg.randn(6, 2, 3, requires_grad=True)
        out, _ = layer(x)
        if change == "step":
            opt = optim.SGD(layer.parameters(), lr=0.1)
            for q in layer.parameters():
                q.grad = mg.ones_like(q)
            opt.step()
        else:
            layer.load_state_dict({k: np.asarray(v) + 1 for k, v in layer.state_dict().items()})
        with pytest.raises(RuntimeError, match=r"modified by an in-place operation.*Checkpoint"):
            out.sum().backward()


def test_checkpointed_parameters_get_their_gradient_through_the_node():
    mg.manual_seed(0)
    plain = LSTM(3, 4).to(mg.float64)
    ckpt = LSTM(3, 4, checkpoint_every=2).to(mg.float64)
    ckpt.load_state_dict(plain.state_dict())
    x = mg.randn(7, 2, 3, dtype=mg.float64)
    for layer in (plain, ckpt):
        out, (h, c) = layer(x)
        (out.sum() + c.sum()).backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        np.testing.assert_allclose(a.grad, b.grad, rtol=1e-12, atol=1e-14, err_msg=name)


# ----- padding never reaches a gradient ----------------------------------------------------------
MODES = {
    "scan": dict(),
    "scan unfused": dict(fuse=False),
    "unroll": dict(scan=False),
    "checkpoint": dict(checkpoint_every=2),
    "bidirectional, 2 layers": dict(bidirectional=True, num_layers=2),
}


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("fill", [np.nan, np.inf, 1e30])
def test_padding_holding_nan_or_inf_gives_the_same_gradients_as_zero_padding(cls, mode, fill):
    opts = dict(MODES[mode])
    scan = opts.pop("scan", True)
    lengths = [6, 3, 1]
    results = []
    for pad in (0.0, fill):
        mg.manual_seed(0)
        layer = cls(3, 4, **opts).to(mg.float64)
        layer.scan = scan
        data = np.random.default_rng(1).standard_normal((6, 3, 3))
        for b, n in enumerate(lengths):
            data[n:, b] = pad
        x = mg.tensor(data, requires_grad=True)
        out, _ = layer(x, lengths=lengths)
        out.sum().backward()
        results.append([x.grad] + [q.grad for q in layer.parameters()])
    for zero_padded, filled in zip(*results, strict=True):
        assert np.isfinite(filled).all()
        np.testing.assert_array_equal(zero_padded, filled)


# ----- the program, printed at each pass ---------------------------------------------------------
def test_the_docs_show_the_lstm_steps_program_as_minigrad_debug_plan_prints_it():
    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "fusion.md").read_text()
    shown = re.search(r"```text\n(--- mg\.fuse\(LSTM\._step\) after record:.*?)```", page, re.S)
    assert shown, "docs/fusion.md has no MINIGRAD_DEBUG=plan listing of the LSTM step"
    code = (
        "import minigrad as mg\nfrom models import LSTM\n"
        "layer = LSTM(8, 16)\nout, (h, c) = layer(mg.randn(5, 3, 8))\n"
    )
    env = {**os.environ, "MINIGRAD_DEBUG": "plan"}
    printed = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True
    ).stdout
    passes = re.findall(r"--- mg\.fuse\(LSTM\._step\) after (\w+):", printed)
    assert passes == ["record", "cut", "keep_live", "absorb_producers", "schedule_frees"]
    assert printed == shown.group(1)
