"""`.grad` and `.data` are tensors, as PyTorch's: `.grad` is the memory backward adds into,
`.data` a detached tensor over the same memory that the version counter does not see; NumPy
reads tensors as their arrays and refuses to cut a recorded gradient."""

import numpy as np
import pytest
import torch

import minigrad as mg


def _leaf(values=(1.0, -2.0, 3.0)):
    return mg.tensor(list(values), dtype=mg.float64, requires_grad=True)


def test_grad_is_a_tensor_that_backward_accumulates_into():
    p = _leaf()
    (p * p).sum().backward()
    g = p.grad
    assert type(g) is mg.Tensor and not g.requires_grad
    np.testing.assert_array_equal(g, [2.0, -4.0, 6.0])
    (p * p).sum().backward()
    assert p.grad is g  # the same tensor, added into in place
    np.testing.assert_array_equal(g, [4.0, -8.0, 12.0])


def test_in_place_methods_on_grad_change_what_the_optimizer_reads():
    p = _leaf()
    (p * 3).sum().backward()
    p.grad[:] *= 0.5  # the hand-written clipping of PyTorch's char-RNN tutorials
    np.testing.assert_array_equal(p.grad, [1.5, 1.5, 1.5])
    p.grad.zero_()
    (p * 2).sum().backward()
    np.testing.assert_array_equal(p.grad, [2.0, 2.0, 2.0])
    mg.optim.SGD([p], lr=0.5).step()
    np.testing.assert_array_equal(p, [0.0, -3.0, 2.0])


def test_data_is_a_detached_tensor_over_the_same_memory():
    w = mg.nn.Parameter(mg.tensor([1.0, 2.0], dtype=mg.float64))
    d = w.data
    assert type(d) is mg.Tensor and not d.requires_grad and d.is_leaf
    assert np.shares_memory(d.numpy(), w.numpy()) and np.asarray(w) is w.numpy()
    w.grad = mg.tensor([1.0, 1.0], dtype=mg.float64)
    w.data.add_(w.grad, alpha=-0.25)  # PyTorch's manual SGD step
    np.testing.assert_array_equal(w, [0.75, 1.75])
    scores = mg.tensor([[0.25, 0.5, 0.125]], requires_grad=True)
    values, indices = scores.data.topk(1)
    assert indices.tolist() == [[1]] and values.tolist() == [[0.5]]


def test_writes_through_data_are_invisible_to_the_version_counter_as_in_pytorch():
    for framework in (mg, torch):
        x = framework.tensor([1.0, 2.0], dtype=framework.float64, requires_grad=True)
        y = (x * x).sum()
        before = x._version
        x.data.mul_(2)  # not counted: backward uses the new values, as PyTorch does
        assert x._version == before
        y.backward()
        np.testing.assert_array_equal(np.asarray(x.grad), [4.0, 8.0])
        z = (x * x).sum()
        x.detach().mul_(2)  # detach() shares the counter: this write is seen
        with pytest.raises(RuntimeError, match="modified by an in-?place operation"):
            z.backward()


def test_assigning_data_and_grad():
    p = _leaf()
    p.data = mg.tensor([5.0, 6.0], dtype=mg.float64)  # a new tensor of another shape, as PyTorch
    assert p.shape == (2,) and p.requires_grad
    with pytest.raises(TypeError, match=r"data: assign a tensor, not ndarray.*mg.from_numpy"):
        p.data = np.zeros(2)
    with pytest.raises(TypeError, match="grad: assign a tensor or None, not ndarray"):
        p.grad = np.zeros(2)
    with pytest.raises(RuntimeError, match=r"grad: assigned grad has shape \(3,\), the tensor"):
        p.grad = mg.zeros(3, dtype=mg.float64)
    with pytest.raises(RuntimeError, match="assigned grad has dtype float32, the tensor float64"):
        p.grad = mg.zeros(2, dtype=mg.float32)
    p.grad = mg.ones(2, dtype=mg.float64)
    (p * 1).sum().backward()
    np.testing.assert_array_equal(p.grad, [2.0, 2.0])


def test_hooks_receive_tensors():
    x = _leaf()
    seen = []
    x.register_hook(lambda g: seen.append(type(g)) or g.clamp(-1, 1))
    (x * 5).sum().backward()
    assert seen == [mg.Tensor]
    np.testing.assert_array_equal(x.grad, [1.0, 1.0, 1.0])


def test_numpy_operators_with_a_tensor_are_recorded_and_functions_refuse_a_recorded_one():
    w = _leaf()
    y = np.array([2.0, 2.0, 2.0]) * w  # NumPy's operator: the tensor's op, recorded
    assert isinstance(y, mg.Tensor) and y.requires_grad
    y.sum().backward()
    np.testing.assert_array_equal(w.grad, [2.0, 2.0, 2.0])
    assert (np.ones(3) < w).tolist() == [False, False, True]
    with pytest.raises(TypeError, match=r"np.exp on a tensor that requires grad.*t.exp\(\)"):
        np.exp(w)
    with pytest.raises(TypeError, match=r"np.stack on a tensor that requires grad.*mg.stack"):
        np.stack([w, w])
    with mg.no_grad():  # nothing is recorded: NumPy's answer, as an array
        assert isinstance(np.exp(w), np.ndarray) and np.sum(w) == 2.0
    assert np.linalg.norm(w.detach()) == pytest.approx(np.sqrt(14.0))
    out = np.zeros(3)
    np.abs(w.grad, out=out)
    np.testing.assert_array_equal(out, [2.0, 2.0, 2.0])


def test_a_manual_training_loop_written_for_pytorch_gives_pytorch_numbers():
    """The word-language-model idiom: p.data.add_(p.grad, alpha=-lr), then p.grad.zero_()."""
    rng = np.random.default_rng(0)
    w0, xs = rng.standard_normal((3, 2)), rng.standard_normal((5, 4, 3))

    def train(framework):
        w = framework.tensor(w0.copy(), requires_grad=True)
        losses = []
        for x in xs:
            loss = (framework.tensor(x) @ w).tanh().pow(2).mean()
            loss.backward()
            w.data.add_(w.grad, alpha=-0.5)
            w.grad.zero_()
            losses.append(loss.item())
        return losses, np.asarray(w.detach())

    (ours, w_ours), (theirs, w_theirs) = train(mg), train(torch)
    np.testing.assert_allclose(ours, theirs, rtol=1e-13)
    np.testing.assert_allclose(w_ours, w_theirs, rtol=1e-13)


@pytest.mark.filterwarnings("ignore:This overload of add_ is deprecated")
@pytest.mark.filterwarnings("ignore:This overload of sub_ is deprecated")
def test_the_deprecated_add_with_the_number_first_as_old_tutorials_write_it():
    """`p.data.add_(-learning_rate, p.grad.data)` (PyTorch's char-RNN generation tutorial)."""
    for framework in (mg, torch):
        p = framework.tensor([1.0, 2.0], dtype=framework.float64, requires_grad=True)
        (p * p).sum().backward()
        p.data.add_(-0.25, p.grad.data)
        p.data.sub_(0.5, p.grad.data)
        np.testing.assert_array_equal(np.asarray(p.detach()), [-0.5, -1.0])
    with pytest.raises(TypeError, match=r"add_: takes \(other, \*, alpha=1\), or the deprecated"):
        mg.zeros(2).add_(mg.ones(2), mg.ones(2))
