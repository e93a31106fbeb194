"""Recurrent cells: one time step of an Elman RNN, an LSTM and a GRU, as the equations say.

Each cell has PyTorch's parameters, stacked gate by gate: `weight_ih` (G*H, input_size),
`weight_hh` (G*H, H), `bias_ih` and `bias_hh` (G*H,), with G = 1 (RNN), 4 (LSTM: gates i, f, g,
o) or 3 (GRU: r, z, n); all are drawn from U(-1/sqrt(H), 1/sqrt(H)). A batch of B inputs is
carried as rows, so the equations' `W x` is computed as `x @ W.T` (`F.linear`).

The step functions (`rnn_step`, `lstm_step`, `gru_step`, `gru_step_reset_before`) are the
equations themselves. They take the input projection `gi = W_ih x + b_ih` already computed,
because a layer computes it for all time steps in one matrix product before its loop; a cell
computes it for its one step. Unrolling a cell over T steps builds T copies of these few ops,
and one `backward()` over them is backpropagation through time.
"""

import math

import numpy as np

import minigrad as mg
import minigrad.nn as nn
import minigrad.nn.functional as F

__all__ = [
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "rnn_step",
    "lstm_step",
    "gru_step",
    "gru_step_reset_before",
]

NONLINEARITIES = ("tanh", "relu")


# ----- the equations ----------------------------------------------------------------------------
def rnn_step(gi, h, weight_hh, bias_hh=None, nonlinearity="tanh"):
    """h' = f(W_ih x + b_ih + W_hh h + b_hh), with gi = W_ih x + b_ih and f = tanh or relu."""
    a = gi + F.linear(h, weight_hh, bias_hh)
    return a.tanh() if nonlinearity == "tanh" else a.relu()


def lstm_step(gi, h, c, weight_hh, bias_hh=None):
    """One LSTM step; gi = W_ih x + b_ih holds the input's share of the gates i, f, g, o."""
    i, f, g, o = (gi + F.linear(h, weight_hh, bias_hh)).chunk(4, axis=-1)
    i = i.sigmoid()  # i = sigma(W_ii x + b_ii + W_hi h + b_hi)   input gate
    f = f.sigmoid()  # f = sigma(W_if x + b_if + W_hf h + b_hf)   forget gate
    g = g.tanh()  # g = tanh(W_ig x + b_ig + W_hg h + b_hg)       candidate cell
    o = o.sigmoid()  # o = sigma(W_io x + b_io + W_ho h + b_ho)   output gate
    c = f * c + i * g  # c' = f * c + i * g
    h = o * c.tanh()  # h' = o * tanh(c')
    return h, c


def gru_step(gi, h, weight_hh, bias_hh=None):
    """One GRU step in PyTorch's form (the reset gate scales W_hn h + b_hn)."""
    i_r, i_z, i_n = gi.chunk(3, axis=-1)
    h_r, h_z, h_n = F.linear(h, weight_hh, bias_hh).chunk(3, axis=-1)
    r = (i_r + h_r).sigmoid()  # r = sigma(W_ir x + b_ir + W_hr h + b_hr)
    z = (i_z + h_z).sigmoid()  # z = sigma(W_iz x + b_iz + W_hz h + b_hz)
    n = (i_n + r * h_n).tanh()  # n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    return (1 - z) * n + z * h  # h' = (1 - z) * n + z * h


def gru_step_reset_before(gi, h, weight_hrz, bias_hrz, weight_hn, bias_hn):
    """One GRU step in Cho et al.'s 2014 form (the reset gate scales h before W_hn).

    The recurrent weights come split: `weight_hrz` = [W_hr; W_hz] (2H, H), `weight_hn` (H, H),
    so that W_hn can be applied to r * h after r is known.
    """
    i_rz, i_n = gi.split([2 * h.shape[-1], h.shape[-1]], axis=-1)
    # r = sigma(W_ir x + b_ir + W_hr h + b_hr),  z = sigma(W_iz x + b_iz + W_hz h + b_hz)
    r, z = (i_rz + F.linear(h, weight_hrz, bias_hrz)).sigmoid().chunk(2, axis=-1)
    # n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)
    n = (i_n + F.linear(r * h, weight_hn, bias_hn)).tanh()
    return (1 - z) * n + z * h  # h' = (1 - z) * n + z * h


# ----- shared plumbing --------------------------------------------------------------------------
def _parameter(*shape):
    return nn.Parameter(np.empty(shape, mg.get_default_dtype()))


def check_sizes(owner: str, **sizes) -> None:
    """Constructor arguments that must be positive integers."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")


def float_input(owner: str, x, what: str = "input"):
    """x as a floating Tensor, or an error that says what was expected."""
    x = mg.as_tensor(x)
    if x.dtype.kind != "f":
        hint = "; integer token ids go through an nn.Embedding first" if what == "input" else ""
        raise TypeError(
            f"{owner}: {what} must be a floating tensor, got dtype {x.dtype} (shape {x.shape})"
            + hint
        )
    return x


def describe(value) -> str:
    """What an argument was, for an error message: 'a tensor of shape (2, 3)', 'a tuple of 2'."""
    if isinstance(value, (mg.Tensor, np.ndarray)):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"{type(value).__name__} {value!r}"


def is_state_tuple(value) -> bool:
    """A tuple or list of tensors (or Nones): an (h, c) pair or the like, not nested numbers."""
    return isinstance(value, (tuple, list)) and all(
        v is None or isinstance(v, (mg.Tensor, np.ndarray)) for v in value
    )


class _Cell(nn.Module):
    """Parameters and argument checks shared by the three cells; G gates of H units each."""

    gates = 1
    n_states = 1  # 2 for the LSTM's (h, c)

    def __init__(self, input_size, hidden_size, bias=True):
        super().__init__()
        name = type(self).__name__
        check_sizes(name, input_size=input_size, hidden_size=hidden_size)
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.bias = bool(bias)
        G, H = self.gates, self.hidden_size
        self.weight_ih = _parameter(G * H, self.input_size)
        self.weight_hh = _parameter(G * H, H)
        self.bias_ih = _parameter(G * H) if bias else None
        self.bias_hh = _parameter(G * H) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        """Every weight and bias from U(-1/sqrt(H), 1/sqrt(H)), as PyTorch."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")

    def _inputs(self, x, state):
        """Check x (B, input_size) or (input_size,) and the state: h, or the LSTM's pair (h, c),
        each (B, H) or (H,); a missing state is zeros. Returns (x, [h] or [h, c], batched),
        with a batch dim added to each if absent."""
        name = type(self).__name__
        x = float_input(name, x)
        if x.ndim not in (1, 2):
            raise ValueError(
                f"{name}: expected input of shape (batch, {self.input_size}) or "
                f"({self.input_size},), got {x.shape}"
            )
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"{name}: input has {x.shape[-1]} features but input_size is {self.input_size} "
                f"(input of shape {x.shape})"
            )
        batched = x.ndim == 2
        if not batched:
            x = x.unsqueeze(0)
        B, H = x.shape[0], self.hidden_size
        expected = (B, H) if batched else (H,)
        dims = "(batch, hidden_size)" if batched else "(hidden_size,)"
        if self.n_states == 2:
            if state is None:
                state = (None, None)
            elif not (isinstance(state, (tuple, list)) and len(state) == 2):
                raise TypeError(
                    f"{name}: the state must be a pair (h, c) of tensors of shape {dims} = "
                    f"{expected} each, got {describe(state)}"
                )
            names = ("h", "c")
        else:
            if is_state_tuple(state):
                hint = "; (h, c) is an LSTMCell's state" if len(state) == 2 else ""
                raise TypeError(
                    f"{name}: h must be a tensor of shape {dims} = {expected}, "
                    f"got {describe(state)}{hint}"
                )
            state, names = (state,), ("h",)
        out = []
        for part, what in zip(state, names, strict=True):
            if part is None:
                out.append(mg.zeros(B, H, dtype=x.dtype))
                continue
            part = float_input(name, part, what)
            if part.shape != expected:
                raise ValueError(
                    f"{name}: {what} must have shape {expected} for input of shape "
                    f"{x.shape if batched else x.shape[1:]}, got {part.shape}"
                )
            out.append(part if batched else part.unsqueeze(0))
        return x, out, batched


# ----- the cells --------------------------------------------------------------------------------
class RNNCell(_Cell):
    """Elman cell:  h' = f(W_ih x + b_ih + W_hh h + b_hh),  f = tanh (default) or relu.

    In the lecture notes' names, W_ih = U, W_hh = W and b_ih + b_hh = b:
    a = b + W h + U x,  h' = tanh(a).

    forward(x, h=None): x (B, input_size) or (input_size,); h defaults to zeros. Returns h'.
    """

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh"):
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}"
            )
        super().__init__(input_size, hidden_size, bias)
        self.nonlinearity = nonlinearity

    def forward(self, x, h=None):
        x, (h,), batched = self._inputs(x, h)
        gi = F.linear(x, self.weight_ih, self.bias_ih)
        h = rnn_step(gi, h, self.weight_hh, self.bias_hh, self.nonlinearity)
        return h if batched else h.squeeze(0)

    def extra_repr(self):
        extra = "" if self.nonlinearity == "tanh" else f", nonlinearity={self.nonlinearity!r}"
        return super().extra_repr() + extra


class LSTMCell(_Cell):
    """Long short-term memory cell (gates stacked i, f, g, o in the weights):

        i  = sigma(W_ii x + b_ii + W_hi h + b_hi)      input gate
        f  = sigma(W_if x + b_if + W_hf h + b_hf)      forget gate
        g  = tanh (W_ig x + b_ig + W_hg h + b_hg)      candidate cell state
        o  = sigma(W_io x + b_io + W_ho h + b_ho)      output gate
        c' = f * c + i * g
        h' = o * tanh(c')

    forward(x, state=None): state = (h, c), zeros by default. Returns (h', c').
    """

    gates = 4
    n_states = 2

    def forward(self, x, state=None):
        x, (h, c), batched = self._inputs(x, state)
        gi = F.linear(x, self.weight_ih, self.bias_ih)
        h, c = lstm_step(gi, h, c, self.weight_hh, self.bias_hh)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(_Cell):
    """Gated recurrent unit (gates stacked r, z, n in the weights):

        r  = sigma(W_ir x + b_ir + W_hr h + b_hr)      reset gate
        z  = sigma(W_iz x + b_iz + W_hz h + b_hz)      update gate
        n  = tanh (W_in x + b_in + r * (W_hn h + b_hn))      reset_after=True (PyTorch, cuDNN)
        n  = tanh (W_in x + b_in + W_hn (r * h) + b_hn)      reset_after=False (Cho et al. 2014)
        h' = (1 - z) * n + z * h

    The two forms differ only in where the reset gate acts; their weights have the same shapes
    but are not interchangeable. (Some texts, the lecture notes among them, write the update
    as h' = z * n + (1 - z) * h: the same model with z replaced by 1 - z, i.e. with the update
    gate's weights and biases negated.)

    forward(x, h=None): h defaults to zeros. Returns h'.
    """

    gates = 3

    def __init__(self, input_size, hidden_size, bias=True, reset_after=True):
        super().__init__(input_size, hidden_size, bias)
        self.reset_after = bool(reset_after)

    def forward(self, x, h=None):
        x, (h,), batched = self._inputs(x, h)
        gi = F.linear(x, self.weight_ih, self.bias_ih)
        if self.reset_after:
            h = gru_step(gi, h, self.weight_hh, self.bias_hh)
        else:
            h = gru_step_reset_before(gi, h, *split_reset_before(self.weight_hh, self.bias_hh))
        return h if batched else h.squeeze(0)

    def extra_repr(self):
        return super().extra_repr() + ("" if self.reset_after else ", reset_after=False")


def split_reset_before(weight_hh, bias_hh):
    """[W_hr; W_hz; W_hn] -> ([W_hr; W_hz], b_hrz, W_hn, b_hn) for `gru_step_reset_before`."""
    H = weight_hh.shape[1]
    w_rz, w_n = weight_hh[: 2 * H], weight_hh[2 * H :]
    if bias_hh is None:
        return w_rz, None, w_n, None
    return w_rz, bias_hh[: 2 * H], w_n, bias_hh[2 * H :]
