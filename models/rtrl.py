"""Real-time recurrent learning (Williams & Zipser 1989): the gradient of an RNN by forward mode.

BPTT is reverse mode on the unrolled graph: it stores every step and, at the end, sends dL/dh_T
back through the steps. RTRL is forward mode on the same graph: it carries the sensitivities

    S_t = dh_t/dtheta      (for an LSTM also dc_t/dtheta)

forward in time, one (H x |theta|) matrix per state per sequence, by the chain rule

    S_t = (dh_t/dh_{t-1}) S_{t-1} + (immediate dh_t/dtheta at fixed h_{t-1}),

which is exactly a Jacobian-vector product of the cell's step with the tangents (S_{t-1}, I):
`mg.jvp` with one direction per parameter element. The loss of step t then gives its share of
the gradient at once, dL_t/dtheta = (dL_t/dh_t) S_t, with nothing of the past stored: memory is
O(H |theta|) whatever the sequence length, against BPTT's O(T H); the price is time, O(H^2
|theta|) per step (O(H^4) for H units) against BPTT's O(H^2).

The directions are pushed through in chunks of `chunk` at a time, so that the identity block
(a one-hot tangent per parameter element) never exists whole: chunk x |theta| numbers, O(H
|theta|) for chunks of O(H) directions.

    rtrl = RTRL(cell, readout, loss_fn)
    rtrl.reset(batch_size)
    for x_t, y_t in zip(xs, ys):
        loss = rtrl.step(x_t, y_t)    # cell and readout .grad now hold the gradient so far
        # (online learning: opt.step(); opt.zero_grad() here, at every step)
"""

from __future__ import annotations

import numpy as np

import minigrad as mg

from .cells import GRUCell, LSTMCell, RNNCell

__all__ = ["RTRL", "bptt_gradients"]


def _states(cell):
    if not isinstance(cell, (RNNCell, LSTMCell, GRUCell)):
        raise TypeError(
            f"RTRL: expected an RNNCell, LSTMCell or GRUCell, got {type(cell).__name__}"
        )
    return 2 if isinstance(cell, LSTMCell) else 1


class RTRL:
    """Online gradients of sum_t loss_fn(readout(h_t), y_t) for a cell, by forward mode.

    cell: an RNNCell, LSTMCell or GRUCell; readout: a module (or function) of h_t; loss_fn:
    loss_fn(prediction, target) -> scalar tensor. `step` adds each step's gradient into the
    `.grad` of the cell's parameters (through the sensitivities) and of the readout's (by a
    one-step backward, which needs no history).
    """

    def __init__(self, cell, readout, loss_fn, chunk: int | None = None):
        self.n_states = _states(cell)
        self.cell, self.readout, self.loss_fn = cell, readout, loss_fn
        self.params = [p for p in cell.parameters()]
        self.sizes = [p.numpy().size for p in self.params]
        self.offsets = np.cumsum([0] + self.sizes)
        self.K = int(self.offsets[-1])  # |theta|: one direction per parameter element
        self.chunk = int(chunk) if chunk is not None else 4 * cell.hidden_size
        if self.chunk < 1:
            raise ValueError(f"RTRL: chunk must be a positive number of directions, got {chunk}")
        self.state = self.sens = None

    def reset(self, batch_size: int) -> None:
        """Start a sequence: zero state and zero sensitivities (h_0 does not depend on theta)."""
        H, dtype = self.cell.hidden_size, self.params[0].dtype
        self.state = [mg.zeros(batch_size, H, dtype=dtype) for _ in range(self.n_states)]
        self.sens = [np.zeros((self.K, batch_size, H), dtype) for _ in range(self.n_states)]

    @property
    def sensitivity_bytes(self) -> int:
        """What RTRL carries from step to step besides the state: the S_t matrices."""
        return sum(s.nbytes for s in self.sens)

    def _call_cell(self, x, state):
        out = self.cell(x, tuple(state) if self.n_states == 2 else state[0])
        return out if self.n_states == 2 else (out,)

    def advance(self, x) -> list:
        """h_t (and c_t) from x_t, and S_t from S_{t-1}, one chunk of directions at a time."""
        if self.state is None:
            raise RuntimeError("RTRL: call reset(batch_size) before the first step")
        x = mg.as_tensor(x)
        new_sens = [np.empty_like(s) for s in self.sens]
        new_state = None
        with mg.no_grad():
            for a in range(0, self.K, self.chunk):
                b = min(a + self.chunk, self.K)
                primals, tangents = list(self.state), [s[a:b] for s in self.sens]
                for p, lo, hi in zip(self.params, self.offsets[:-1], self.offsets[1:], strict=True):
                    if lo < b and a < hi:  # this parameter has elements among directions a..b
                        eye = np.zeros((b - a, hi - lo), p.dtype)
                        rows = np.arange(max(a, lo), min(b, hi))
                        eye[rows - a, rows - lo] = 1
                        primals.append(p)
                        tangents.append(eye.reshape((b - a,) + p.shape))
                n = self.n_states

                def step(*args, n=n):
                    return self._call_cell(x, args[:n])

                new_state, derivs = mg.jvp(step, tuple(primals), tuple(tangents), batched=True)
                for out, d in zip(new_sens, derivs, strict=True):
                    out[a:b] = d.numpy()
        self.state, self.sens = list(new_state), new_sens
        return self.state

    def step(self, x, y):
        """One time step: advance, then add dL_t/dtheta to the parameters' .grad. Returns L_t."""
        self.advance(x)
        h = mg.tensor(self.state[0].numpy(), requires_grad=True)  # a leaf: the backward stops here
        loss = self.loss_fn(self.readout(h), y)
        loss.backward()  # the readout's gradient, and dL_t/dh_t in h.grad
        flat = np.tensordot(self.sens[0], h.grad, axes=([1, 2], [0, 1]))  # (dL_t/dh_t) S_t
        for p, lo, hi in zip(self.params, self.offsets[:-1], self.offsets[1:], strict=True):
            g = flat[lo:hi].reshape(p.shape).astype(p.dtype, copy=False)
            if p.grad is None:
                p.grad = mg.from_numpy(g.copy())
            else:
                p.grad.add_(g)  # accumulated in place, as backward() does
        return loss


def bptt_gradients(cell, readout, loss_fn, xs, ys):
    """The same total loss sum_t loss_fn(readout(h_t), y_t) by BPTT: unroll, one backward.
    Gradients go into .grad as usual; returns the loss."""
    n = _states(cell)
    state = None
    total = 0
    for x, y in zip(xs, ys, strict=True):
        state = cell(mg.as_tensor(x), state)
        h = state[0] if n == 2 else state
        total = total + loss_fn(readout(h), y)
    total.backward()
    return total
