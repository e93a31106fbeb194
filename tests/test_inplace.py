"""In-place writes: index assignment in the graph, the version counter, `add_` and friends,
hooks that change a gradient's shape, post-accumulate hooks."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import minigrad.nn as nn
import minigrad.optim as optim


@pytest.fixture(autouse=True)
def float64():
    previous = mg.get_default_dtype()
    mg.set_default_dtype(mg.float64)
    yield
    mg.set_default_dtype(previous)


# ----- index assignment recorded in the graph --------------------------------------------------
def _rnn_with_setitem(x, w):
    """The seq2seq tutorials' pattern: outputs written into a preallocated tensor."""
    T, B, H = x.shape[0], x.shape[1], w.shape[0]
    outs = mg.zeros(T, B, H)
    h = mg.zeros(B, H)
    for t in range(T):
        h = (x[t] + h @ w).tanh()
        outs[t] = h
    return outs


def _rnn_with_stack(x, w):
    h, hs = mg.zeros(x.shape[1], w.shape[0]), []
    for t in range(x.shape[0]):
        h = (x[t] + h @ w).tanh()
        hs.append(h)
    return mg.stack(hs)


def test_index_assignment_carries_the_gradient_of_the_assigned_values():
    rng = np.random.default_rng(0)
    x = mg.tensor(rng.standard_normal((5, 3, 4)), requires_grad=True)
    w = mg.tensor(rng.standard_normal((4, 4)) * 0.5, requires_grad=True)
    probe = rng.standard_normal((5, 3, 4))
    grads = []
    for build in (_rnn_with_setitem, _rnn_with_stack):
        x.grad = w.grad = None
        out = build(x, w)
        (out * mg.tensor(probe)).sum().backward()
        grads.append((x.grad.numpy().copy(), w.grad.numpy().copy(), out.numpy().copy()))
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)
    assert np.abs(grads[0][1]).max() > 1e-3  # the gradient is there, not dropped


def test_index_assignment_gradchecks():
    rng = np.random.default_rng(1)
    base = mg.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    v = mg.tensor(rng.standard_normal(3), requires_grad=True)
    idx = mg.tensor([[1.0], [2.0]], requires_grad=True)

    def f(base, v, idx):
        y = base * 2  # a non-leaf: assignment into it is recorded
        y[1] = v.tanh()
        y[2:, :1] = idx  # broadcast into a region
        y[np.array([0, 3]), 2] = v[0]
        return (y * y).sum()

    assert mg.gradcheck(f, (base, v, idx))


def test_index_assignment_refuses_what_it_cannot_record():
    leaf = mg.zeros(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf.*no_grad"):
        leaf[0] = 1.0
    h = mg.ones(2, requires_grad=True) * 2
    outs = mg.zeros(3, 2)
    first = outs[0]  # a view of outs' memory
    with pytest.raises(RuntimeError, match="shares its memory.*mg.stack"):
        outs[1] = h
    del first
    y = mg.ones(4, requires_grad=True) * 1
    with pytest.raises(ValueError, match="repeated"):
        y[np.array([1, 1])] = mg.ones(2, requires_grad=True) * 3
    with pytest.raises(ValueError, match=r"setitem.*\(5,\).*\(3, 2\)"):
        mg.zeros(3, 2)[0] = mg.ones(5)
    ints = mg.zeros(3, dtype=mg.int64)
    with pytest.raises(TypeError, match="setitem.*float64.*int64"):
        ints[0] = mg.tensor([1.5])
    with pytest.raises(RuntimeError, match="read-only"):
        mg.ones(3).expand(2, 3)[0] = 1.0


def test_index_assignment_inside_a_fused_function_is_refused():
    @mg.fuse
    def f(x):
        y = x * 2
        y[0] = x[1]
        return y.tanh()

    with pytest.raises(RuntimeError, match="mg.fuse"):
        f(mg.ones(3, 2, requires_grad=True))


# ----- the version counter -----------------------------------------------------------------------
def test_a_write_into_a_saved_input_is_caught_at_backward():
    a = mg.tensor([1.0, 2.0, 3.0])
    w = mg.tensor([0.5, -1.0, 2.0], requires_grad=True)
    loss = (a * w).sum()
    with mg.no_grad():
        a[0] = 10.0
    with pytest.raises(RuntimeError, match=r"modified by an in-place operation.*Mul.*version 1"):
        loss.backward()


@pytest.mark.parametrize("write", ["add_", "setitem_view", "iadd", "copy_"])
def test_every_in_place_path_bumps_the_version(write):
    a = mg.tensor([1.0, 2.0, 3.0])
    w = mg.tensor([0.5, -1.0, 2.0], requires_grad=True)
    loss = (w * a).sum()
    before = a._version
    if write == "add_":
        a.add_(1.0)
    elif write == "setitem_view":
        view = a[1:]  # shares a's memory and its version counter
        view[0] = 7.0
    elif write == "iadd":
        a += 1
    else:
        a.copy_(mg.tensor([0.0, 0.0, 0.0]))
    assert a._version == before + 1
    with pytest.raises(RuntimeError, match="Mul"):
        loss.backward()


def test_an_optimizer_step_between_forward_and_backward_is_caught():
    lin = nn.Linear(3, 2)
    opt = optim.SGD(lin.parameters(), lr=0.1)
    x = mg.randn(4, 3)
    lin(x).sum().backward()
    loss = lin(x).sum()  # saves the weight for its backward
    opt.step()
    with pytest.raises(RuntimeError, match="in-place operation.*step"):
        loss.backward()


def test_writes_that_touch_nothing_saved_are_allowed():
    x = mg.tensor([0.1, 0.2], requires_grad=True)
    y = x.sigmoid()  # saves its output, not x
    with mg.no_grad():
        x.add_(1.0)
    y.sum().backward()
    s = 1 / (1 + np.exp(-np.array([0.1, 0.2])))
    np.testing.assert_allclose(x.grad, s * (1 - s))


# ----- add_ and friends ----------------------------------------------------------------------
finite = st.floats(-100, 100, allow_nan=False)


@settings(max_examples=30, deadline=None)
@given(st.lists(finite, min_size=1, max_size=6), finite)
def test_in_place_methods_equal_numpy(values, c):
    a = np.array(values)
    cases = {
        "add_": (lambda t: t.add_(c, alpha=2.0), a + 2.0 * c),
        "sub_": (lambda t: t.sub_(c), a - c),
        "mul_": (lambda t: t.mul_(c), a * c),
        "clamp_": (lambda t: t.clamp_(-1.0, 1.0), np.clip(a, -1, 1)),
        "fill_": (lambda t: t.fill_(c), np.full_like(a, c)),
        "zero_": (lambda t: t.zero_(), np.zeros_like(a)),
        "copy_": (lambda t: t.copy_(a[::-1].copy()), a[::-1]),
    }
    if abs(c) >= 0.5:
        cases["div_"] = (lambda t: t.div_(c), a / c)  # |c| >= 0.5 below: no overflow
    for name, (op, want) in cases.items():
        t = mg.tensor(a.copy())
        assert op(t) is t, name
        np.testing.assert_array_equal(t.data, want, err_msg=name)


def test_in_place_methods_write_through_views():
    a = mg.zeros(2, 3)
    a[1].fill_(4.0)
    np.testing.assert_array_equal(a.data, [[0, 0, 0], [4, 4, 4]])


def test_in_place_methods_in_a_graph_are_recorded():
    rng = np.random.default_rng(2)
    x = mg.tensor(rng.standard_normal(4), requires_grad=True)
    w = mg.tensor(rng.standard_normal(4), requires_grad=True)

    def f(x, w):
        y = x * 1
        y.mul_(w)
        y += x.tanh()
        y.clamp_(-0.9, 5.0)
        return y

    assert mg.gradcheck(f, (x, w))
    x.grad = None
    loss = 0
    for t in range(3):  # the tutorials' `loss += criterion(...)`
        loss += (x * t).sum()
    loss.backward()
    np.testing.assert_allclose(x.grad, np.full(4, 3.0))


def test_in_place_methods_refuse_what_they_cannot_do():
    leaf = mg.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="add_.*leaf.*no_grad"):
        leaf.add_(1.0)
    with pytest.raises(ValueError, match=r"add_.*\(2, 3\).*\(3,\)"):
        mg.ones(3).add_(mg.ones(2, 3))
    with pytest.raises(RuntimeError, match="add_: result type Double can't be cast to.*Long"):
        mg.zeros(3, dtype=mg.long).add_(0.5)
    with pytest.raises(RuntimeError, match="mul_.*read-only"):
        mg.ones(3).expand(2, 3).mul_(2.0)
    with pytest.raises(ValueError, match="clamp_"):
        mg.ones(3).clamp_()
    shared = mg.ones(3, requires_grad=True) * 1
    view = shared.reshape(3, 1)
    with pytest.raises(RuntimeError, match="mul_.*shares its memory"):
        shared.mul_(2.0)
    del view


# ----- hooks ---------------------------------------------------------------------------------
def test_a_hook_that_changes_the_shape_is_named():
    def bad_hook(g):
        return g.sum(axis=0)

    leaf = mg.ones(2, 3, requires_grad=True)
    leaf.register_hook(bad_hook)
    with pytest.raises(RuntimeError, match=r"bad_hook.*\(3,\).*\(2, 3\)"):
        (leaf * 2).sum().backward()
    assert leaf.grad is None
    inner = mg.ones(2, 3, requires_grad=True) * 2
    inner.register_hook(bad_hook)
    with pytest.raises(RuntimeError, match=r"bad_hook.*Mul"):
        inner.sum().backward()


def test_post_accumulate_hooks_see_the_whole_gradient_as_soon_as_it_is_complete():
    w_early = mg.tensor([2.0], requires_grad=True)  # used only by the last op
    w_shared = mg.tensor([0.5], requires_grad=True)  # used at every step
    order = []

    def record(name):
        def hook(t):
            order.append((name, t.grad.numpy().copy(), w_shared.grad is None))

        return hook

    w_early.register_post_accumulate_grad_hook(record("early"))
    w_shared.register_post_accumulate_grad_hook(record("shared"))
    h = mg.tensor([1.0])
    for _ in range(3):
        h = h * w_shared
    (h * w_early).sum().backward()
    assert [name for name, _, _ in order] == ["early", "shared"]
    assert order[0][2]  # w_early's hook ran while w_shared's gradient was still incomplete
    np.testing.assert_allclose(order[1][1], [3 * 0.5**2 * 2.0])
    with pytest.raises(RuntimeError, match="leaf"):
        (w_early * 2).register_post_accumulate_grad_hook(lambda t: None)
