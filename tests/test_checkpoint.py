"""mg.checkpoint: identical gradients with the segment's activations recomputed in backward."""

import tracemalloc

import numpy as np

import minigrad as mg
import minigrad.nn.functional as F


def _segment(W):
    def run(h, c):
        for _ in range(3):
            h = (h @ W).tanh() * c
            c = c + h.sigmoid()
        return h, c

    return run


def _loss(x, W, every):
    seg = _segment(W)
    h, c = x, mg.ones(*x.shape)
    for _ in range(4):
        h, c = mg.checkpoint(seg, h, c) if every else seg(h, c)
    return (h * h).sum() + c.sum()


def test_checkpointed_gradients_equal_plain_ones(default_float64):
    mg.manual_seed(0)
    W = mg.randn(4, 4, requires_grad=True)
    x = mg.randn(3, 4, requires_grad=True)
    grads = []
    for every in (False, True):
        W.grad = x.grad = None
        _loss(x, W, every).backward()
        grads.append((W.grad.numpy().copy(), x.grad.numpy().copy()))
    # Equal up to the order of floating-point summation across segments.
    np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-12, atol=1e-13)
    assert mg.gradcheck(lambda x, W: _loss(x, W, True), [x, W])


def test_parameters_get_gradients_when_no_input_requires_grad(default_float64):
    W = mg.randn(4, 4, requires_grad=True)
    h0 = mg.ones(2, 4)  # a constant initial state, as h0 = 0 in an RNN
    mg.checkpoint(lambda h: (h @ W).tanh(), h0).sum().backward()
    expected = h0.data.T @ (1 - np.tanh(h0.data @ W.data) ** 2)
    np.testing.assert_allclose(W.grad, expected, rtol=1e-12)


def test_dropout_masks_are_replayed_in_the_recomputation(default_float64):
    mg.manual_seed(3)
    x = mg.randn(8, 8, requires_grad=True)
    out = mg.checkpoint(lambda x: F.dropout(x, 0.5, training=True) * 2.0, x)
    out.sum().backward()
    kept = out.data != 0  # where the forward kept x, the gradient is 2 / (1 - p) = 4
    np.testing.assert_array_equal(x.grad, np.where(kept, 4.0, 0.0))


def _peak_bytes(T, every):
    W = mg.tensor(mg.randn(64, 64).numpy() / 16, requires_grad=True)  # contractive: no overflow

    def steps(h, n):
        for _ in range(n):
            h = (h @ W).tanh()
        return h

    tracemalloc.start()
    h = mg.zeros(32, 64)
    if every:
        for _ in range(T // every):
            h = mg.checkpoint(steps, h, extra=(every,))
    else:
        h = steps(h, T)
    h.sum().backward()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_checkpointing_every_sqrt_t_steps_cuts_peak_memory():
    T = 256
    plain = _peak_bytes(T, 0)
    sqrt_t = _peak_bytes(T, 16)
    # Plain BPTT holds ~2 arrays of 32x64 per step (T*16 KiB = 4 MiB); checkpointing every
    # 16 steps holds 16 boundaries plus one segment: several times less.
    assert sqrt_t < plain / 4, (plain, sqrt_t)
