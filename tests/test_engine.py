"""The backward engine: depth, accumulation, graph modes, hooks, memory, anomaly detection."""

import gc
import tracemalloc
import weakref

import numpy as np
import pytest

import minigrad as mg
from minigrad.autograd import Function


@pytest.fixture
def no_cyclic_gc():
    """Run with the cyclic garbage collector off: minigrad's graphs have no reference cycles,
    so everything must be freed by reference counting alone (and building a million nodes is
    not slowed by repeated full collections)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# ----- depth --------------------------------------------------------------------------------------
def test_a_chain_of_a_million_ops_differentiates(no_cyclic_gc):
    x = mg.tensor([0.5], requires_grad=True)
    y = x
    for _ in range(1_000_001):  # an odd number of negations: d y / d x = -1
        y = -y
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [-1.0])
    del y  # freeing the chain must not recurse either


# ----- accumulation -------------------------------------------------------------------------------
def test_gradients_accumulate_across_backward_calls():
    x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x * x).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [4.0, 8.0, 12.0])
    x.zero_grad()
    (3 * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0, 3.0])


def test_a_value_used_many_times_sums_its_gradients():
    w = mg.tensor([2.0, -1.0], requires_grad=True)
    a = mg.tensor([1.0, 3.0])
    b = mg.tensor([5.0, 7.0])
    (w * a + w * b + w * w).sum().backward()
    np.testing.assert_array_equal(w.grad, a.data + b.data + 2 * w.data)


def test_unrolled_recurrence_with_shared_weights_is_bptt():
    """h_t = tanh(x_t W_x + h_{t-1} W_h + b) over 6 steps: every weight is used at each step."""
    rng = np.random.default_rng(5)
    xs = mg.tensor(rng.standard_normal((6, 2, 3)), requires_grad=True)
    w_x = mg.tensor(rng.standard_normal((3, 4)) * 0.5, requires_grad=True)
    w_h = mg.tensor(rng.standard_normal((4, 4)) * 0.5, requires_grad=True)
    b = mg.tensor(rng.standard_normal(4) * 0.1, requires_grad=True)
    h0 = mg.tensor(rng.standard_normal((2, 4)), requires_grad=True)

    def unroll(xs, w_x, w_h, b, h0):
        h, outputs = h0, []
        for t in range(xs.shape[0]):
            h = (xs[t] @ w_x + h @ w_h + b).tanh()
            outputs.append(h)
        return mg.stack(outputs)

    assert mg.gradcheck(unroll, [xs, w_x, w_h, b, h0])


def test_leaves_without_requires_grad_get_no_gradient():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    c = mg.tensor([3.0, 4.0])
    (x * c).sum().backward()
    assert c.grad is None and not c.requires_grad
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])


def test_backward_with_an_explicit_gradient_and_on_a_leaf():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).backward(np.array([1.0, -1.0], np.float32))
    np.testing.assert_array_equal(x.grad, [3.0, -3.0])
    s = mg.tensor(2.0, requires_grad=True)
    s.backward()
    assert s.grad == 1.0


def test_an_edge_without_gradient_does_not_stall_the_others():
    """A backward may return None for an input it is flat in; gradients reaching that input
    along other paths must still flow on."""

    class StopGradient(Function):
        def forward(self, x):
            return x.copy()

        def backward(self, g):
            return (None,)

    x = mg.tensor([1.0, 2.0], requires_grad=True)
    a = x * 2
    (StopGradient.apply(a) + a * 3).sum().backward()
    np.testing.assert_array_equal(x.grad, [6.0, 6.0])
    y = mg.tensor([1.0], requires_grad=True)
    z = (y * 2).exp()
    (StopGradient.apply(z * 5) + y).sum().backward()
    np.testing.assert_array_equal(y.grad, [1.0])


def test_cast_sends_the_gradient_back_in_the_input_dtype():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = x.double() * 2
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])


# ----- graph modes --------------------------------------------------------------------------------
def test_no_grad_records_nothing():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    with mg.no_grad():
        assert not mg.is_grad_enabled()
        y = (x * 2).tanh().sum()
        with mg.enable_grad():
            z = x * 2
    assert mg.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn is not None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()
    assert x.grad is None


def test_no_grad_is_restored_after_an_exception():
    with pytest.raises(KeyError), mg.no_grad():
        raise KeyError("inside no_grad")
    assert mg.is_grad_enabled()


def test_retain_grad_on_a_non_leaf():
    x = mg.tensor([1.0, -2.0], requires_grad=True)
    h = x * 3
    h.retain_grad()
    other = h + 1
    (other * other).sum().backward()
    np.testing.assert_array_equal(h.grad, 2 * (h.data + 1))
    assert other.grad is None  # not retained
    np.testing.assert_array_equal(x.grad, 3 * h.grad)


def test_hook_on_a_leaf_sees_the_total_gradient_once_and_can_replace_it():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    seen = []

    def hook(g):
        seen.append(g.clone())
        return g * 10

    x.register_hook(hook)
    (x * 2 + x * 3).sum().backward()
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], [5.0, 5.0])
    np.testing.assert_array_equal(x.grad, [50.0, 50.0])


def test_hook_on_a_non_leaf_changes_what_flows_upstream():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    h = x * x
    seen = []
    h.register_hook(lambda g: seen.append(g.clone()))  # returns None: gradient unchanged
    h.register_hook(lambda g: -g)
    (h * 4).sum().backward()
    np.testing.assert_array_equal(seen[0], [4.0, 4.0])
    np.testing.assert_array_equal(x.grad, -8 * x.data)


def test_detach_cuts_the_graph_and_shares_data():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and d.grad_fn is None and d.is_leaf
    assert np.shares_memory(d.data, x.data)
    (x * 2 + d * 3).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])
    h = (x * 5).detach()
    assert h.grad_fn is None and not h.requires_grad


def test_retain_graph_allows_a_second_backward():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    loss = (x.tanh() * x).sum()
    loss.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    loss.backward()
    np.testing.assert_allclose(x.grad, 2 * first)
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        loss.backward()


# ----- dtype and randomness -----------------------------------------------------------------------
def test_set_default_dtype_float64(default_float64):
    assert mg.get_default_dtype() == np.float64
    for t in (mg.tensor([1.0]), mg.zeros(2), mg.ones(2), mg.randn(2), mg.rand(2), mg.full(2, 3)):
        assert t.dtype == np.float64
    assert mg.tensor([1, 2]).dtype == np.int64
    assert (mg.tensor([1.0]) + 1).dtype == np.float64


def test_default_dtype_is_float32_and_restored():
    assert mg.get_default_dtype() == np.float32  # the fixture above restored it
    mg.set_default_dtype("float64")
    assert mg.tensor(1.5).dtype == np.float64
    mg.set_default_dtype(mg.float32)
    assert mg.tensor(1.5).dtype == np.float32 and mg.zeros(1).dtype == np.float32


def test_manual_seed_makes_sampling_reproducible():
    def draw():
        return mg.randn(3, 4).numpy(), mg.rand(5).numpy(), mg.randint(0, 100, (6,)).numpy()

    mg.manual_seed(1234)
    first = draw()
    mg.manual_seed(1234)
    second = draw()
    mg.manual_seed(1235)
    third = draw()
    for a, b, c in zip(first, second, third, strict=True):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


# ----- anomaly detection --------------------------------------------------------------------------
def test_anomaly_names_the_first_forward_that_overflows():
    x = mg.tensor([1.0, 100.0], requires_grad=True)
    with np.errstate(over="ignore"), mg.detect_anomaly():
        y = x * 2  # fine
        with pytest.raises(FloatingPointError, match="forward of Exp produced inf"):
            (y.exp() * 0).sum()  # exp overflows first; inf * 0 would be NaN in Mul


def test_anomaly_names_a_forward_that_makes_nan():
    a = mg.tensor([0.0, 1.0], requires_grad=True)
    b = mg.tensor([np.inf, 1.0])
    with np.errstate(invalid="ignore"), mg.detect_anomaly():
        with pytest.raises(FloatingPointError, match="forward of Mul produced NaN"):
            a * b


def test_anomaly_names_the_first_backward_that_produces_inf():
    x = mg.tensor([0.0, 4.0], requires_grad=True)
    with mg.detect_anomaly():
        loss = (x.sqrt() * 3).sum()  # the forward is finite; d sqrt(x)/dx at 0 is not
        with np.errstate(divide="ignore"), pytest.raises(FloatingPointError) as info:
            loss.backward()
    assert "backward of Sqrt produced inf" in str(info.value)


def test_without_anomaly_mode_non_finite_values_pass_silently():
    x = mg.tensor([0.0, 4.0], requires_grad=True)
    with np.errstate(divide="ignore", over="ignore"):
        (x.sqrt() * 3).sum().backward()
        big = (mg.tensor([1000.0]) * 1).exp()
    assert np.isinf(x.grad[0]) and np.isinf(big.data[0])


def test_anomaly_mode_is_restored():
    with pytest.raises(FloatingPointError), mg.detect_anomaly(), np.errstate(over="ignore"):
        mg.tensor([1000.0]).exp()
    with np.errstate(over="ignore"):
        assert np.isinf(mg.tensor([1000.0]).exp().data[0])  # no longer checked
    mg.set_detect_anomaly(True)
    with pytest.raises(FloatingPointError), np.errstate(over="ignore"):
        mg.tensor([1000.0]).exp()
    mg.set_detect_anomaly(False)


# ----- memory -------------------------------------------------------------------------------------
def _recurrence(x, w, steps):
    """h <- tanh(h * w) `steps` times; returns the loss and weak references to every h's data
    (each one is saved by its tanh, as its output, and by the next step's mul, as its input)."""
    refs, h = [], x
    for _ in range(steps):
        h = (h * w).tanh()
        refs.append(weakref.ref(h.numpy()))
    return h.sum(), refs


def test_backward_releases_saved_activations(no_cyclic_gc):
    x = mg.randn(1000, requires_grad=True)
    w = mg.rand(1000, requires_grad=True)
    loss, refs = _recurrence(x, w, 20)
    assert all(r() is not None for r in refs)  # the graph holds them
    loss.backward()
    assert loss.grad_fn is not None  # the loss and its graph are still referenced ...
    assert all(r() is None for r in refs)  # ... but not its saved arrays
    assert x.grad.shape == (1000,) and w.grad.shape == (1000,)


def test_retain_graph_keeps_saved_activations(no_cyclic_gc):
    x = mg.randn(1000, requires_grad=True)
    w = mg.rand(1000, requires_grad=True)
    loss, refs = _recurrence(x, w, 20)
    loss.backward(retain_graph=True)
    assert all(r() is not None for r in refs)
    loss.backward()
    assert all(r() is None for r in refs)


def test_dropping_the_output_frees_the_graph_without_the_garbage_collector(no_cyclic_gc):
    x = mg.randn(1000, requires_grad=True)
    w = mg.rand(1000, requires_grad=True)
    loss, refs = _recurrence(x, w, 5)
    out = weakref.ref(loss)
    del loss
    assert out() is None and all(r() is None for r in refs)


@pytest.mark.parametrize("retain_graph", [False, True])
def test_memory_after_backward_is_measured_with_tracemalloc(no_cyclic_gc, retain_graph):
    """20 steps of 200,000 float64 activations (1.6 MB each): after backward only the two
    gradients remain, and backward never needs much more than the forward's activations."""
    n, steps, size = 200_000, 20, 200_000 * 8
    rng = np.random.default_rng(0)
    tracemalloc.start()
    try:
        x = mg.tensor(rng.standard_normal(n), dtype=mg.float64, requires_grad=True)
        w = mg.tensor(rng.random(n), dtype=mg.float64, requires_grad=True)
        base = tracemalloc.get_traced_memory()[0]
        loss, _ = _recurrence(x, w, steps)
        forward = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.reset_peak()
        loss.backward(retain_graph=retain_graph)
        after, peak = (m - base for m in tracemalloc.get_traced_memory())
    finally:
        tracemalloc.stop()
    assert forward >= 0.95 * steps * size  # one saved activation per step
    assert peak <= forward + 6 * size  # a few gradient buffers on top, not a second copy
    if retain_graph:
        assert after >= forward
    else:
        assert after <= 3 * size, f"{after / 1e6:.1f} MB left after backward"
    del loss
