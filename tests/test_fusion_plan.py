"""mg.fuse's planning passes: linear-time walks, the printable plan, the kernels' source on
request, the engine's tracing hook, and version counters of the fused node's outputs."""

import numpy as np
import pytest

import minigrad as mg
from minigrad import autograd
from minigrad.fusion import codegen, groups
from models.cells import lstm_step


def self_feeding(n):
    """n ops, each reading the previous value twice, then a chunk: the slices of a value
    that reaches the chunk by 2**n paths are recomputed inside the group."""

    def fn(x):
        for _ in range(n):
            x = x * x - 0.5  # stays in [-0.5, 0.5] for x in [-1, 1]
        a, b = x.chunk(2, axis=-1)
        return a.sigmoid() * b.tanh()

    return fn


def test_tracing_a_value_that_feeds_itself_twice_is_linear(monkeypatch):
    """Deciding what can be recomputed per slice visits each slot once (memoised), not once
    per path: counted, so the test needs no clock."""
    calls = []
    original = groups._arithmetic
    monkeypatch.setattr(groups, "_arithmetic", lambda cls: calls.append(cls) or original(cls))
    for n in (4, 8, 16):
        calls.clear()
        x = mg.tensor(np.linspace(-1, 1, 12).reshape(2, 6))
        mg.fuse(self_feeding(n)).explain(x)
        assert 0 < len(calls) <= 2 * (2 * n + 4), (n, len(calls))  # 2n + 4 ops traced


def test_a_forty_op_self_feeding_function_fuses_and_equals_unfused():
    fn = self_feeding(20)  # 40 ops before the chunk; 2**20 paths reach it
    data = np.linspace(-0.2, 0.2, 12).reshape(2, 6)
    x1, x2 = (mg.tensor(data, requires_grad=True) for _ in range(2))
    fused = mg.fuse(fn)
    out = fused(x1)
    ref = fn(x2)
    np.testing.assert_allclose(out.data, ref.data, rtol=1e-12, atol=1e-300)
    out.sum().backward()
    ref.sum().backward()
    np.testing.assert_allclose(x1.grad, x2.grad, rtol=1e-10)
    assert "fused node" in fused.explain(x1)


def lstm_args(dtype=np.float64):
    rng = np.random.default_rng(0)
    gi = mg.tensor(rng.standard_normal((3, 16)).astype(dtype))
    h, c = (mg.tensor(rng.standard_normal((3, 4)).astype(dtype)) for _ in range(2))
    w = mg.tensor(rng.standard_normal((16, 4)).astype(dtype), requires_grad=True)
    return gi, h, c, w


def test_explain_shows_the_plan_and_the_call_replays_it():
    step = mg.fuse(lstm_step)
    args = lstm_args()
    text = step.explain(*args)
    assert len(step.plans) == 1
    assert "traced ops -> 1 steps (1 fused)" in text
    assert "first runs s" in text and "Linear(" in text  # the recurrent product inside
    assert text.count("sigmoid(") == 3 and text.count("tanh(") == 2
    assert "returns (" in text
    h, c = step(*args)
    assert len(step.plans) == 1  # explain's trace is the plan the call used
    assert str(step.plans[next(iter(step.plans))]) == text
    source = step.explain(*args, kernels=True)
    assert source.startswith(text)
    assert "def forward(R, C," in source and "def backward(R, C," in source


def test_print_kernels_env_prints_each_generated_loop(monkeypatch, capsys):
    monkeypatch.setenv("MINIGRAD_PRINT_KERNELS", "1")
    codegen.forward_kernel.cache_clear()  # generate again in this process
    codegen.backward_kernel.cache_clear()
    h, c = mg.fuse(lstm_step)(*lstm_args())
    (h.sum() + c.sum()).backward()
    printed = capsys.readouterr().out
    assert printed.count("# ---- minigrad.fuse kernel ----") == 2
    assert "def forward(R, C," in printed and "def backward(R, C," in printed
    monkeypatch.setenv("MINIGRAD_PRINT_KERNELS", "0")
    codegen.forward_kernel.cache_clear()
    mg.fuse(lstm_step)(*lstm_args())
    assert "minigrad.fuse kernel" not in capsys.readouterr().out


def test_the_tracing_hook_records_ops_and_does_not_nest():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    records = []
    assert not autograd.is_tracing()
    with autograd.tracing(records):
        assert autograd.is_tracing()
        y = (x * 2).tanh()
        with pytest.raises(RuntimeError, match="already recording"):
            with autograd.tracing([]):
                pass
    assert not autograd.is_tracing()
    assert [r[0].__name__ for r in records] == ["Mul", "Tanh"]
    assert records[1][3] is y and records[0][1][0] is x


def test_a_write_into_a_fused_output_is_caught_by_backward():
    """h and c are views of the fused node's stacked output, which its backward reads: they
    share its version counter, as GetItem's views do."""
    gi, h0, c0, w = lstm_args()
    h, c = mg.fuse(lstm_step)(gi, h0, c0, w)
    loss = h.sum() + c.sum()
    with mg.no_grad():
        h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        loss.backward()
    h, c = mg.fuse(lstm_step)(gi, h0, c0, w)
    (h.sum() + c.sum()).backward()  # untouched: fine
    assert w.grad is not None
