"""Recurrent layers: a cell unrolled over a sequence, stacked and optionally bidirectional.

`RNN`, `LSTM` and `GRU` match `torch.nn` in arguments, shapes, parameter names and equations,
so a PyTorch state_dict converted to NumPy loads by name:

    weight_ih_l{k}  (G*H, input_size for k = 0, else num_directions*H)
    weight_hh_l{k}  (G*H, H)
    bias_ih_l{k}, bias_hh_l{k}  (G*H,)
    ... and the same with the suffix `_reverse` for the backward direction.

forward(x, h0=None, lengths=None) -> (output, h_n), LSTM (output, (h_n, c_n)):
    x       (T, B, input_size), or (B, T, input_size) with batch_first, or unbatched (T, input_size)
    h0      (num_layers*num_directions, B, H), zeros if None (LSTM: a pair (h0, c0))
    output  (T, B, num_directions*H): the last layer's h_t at every step (directions concatenated)
    h_n     (num_layers*num_directions, B, H): each layer's and direction's final state,
            indexed k*num_directions + d (batch_first does not apply to states)

Each layer runs in two parts. First the input's share of the gates for all T steps, as one
(T*B, in) @ (in, G*H) matrix product; then a loop of T steps, each one h @ W_hh^T plus the
cell's elementwise work (`_step`, the cell's equations in minigrad ops). The loop takes one
of two routes:
- `scan = True` (the default): the program of one step, traced once per shape by `mg.fuse`,
  runs over the T steps as one graph node (`Fused.scan`), its gate arithmetic compiled into
  one kernel (`fuse = True`, the default) or run op by op (`fuse = False`). Its backward runs
  the engine's reverse step over the program's nodes T times, in reverse.
- `scan = False`, and whenever a scan declines (under `mg.jvp`, inside another `mg.fuse`
  trace): the explicit unroll, one graph node per op per step, the graph that `graph.view`
  draws and the lessons teach.
Either way BPTT is the engine's `backward()` over the same ops' backward rules.

Variable lengths (`lengths[b]` = true length of sequence b, padded to T): the padding of x is
replaced by zeros first (a select, so NaN or inf there is never read), and at a padded step the
state is carried unchanged (`h = where(valid, h_new, h)`) and the output is zero, so padding
neither changes the state nor receives gradient, and h_n is each sequence's state at its own
last step. The backward direction walks t = T-1 .. 0 with the same rule, so each sequence
starts from h0 at its own last valid step. Steps where every sequence is valid use no mask.
"""

import math

import numpy as np

import minigrad as mg
import minigrad.nn as nn
import minigrad.nn.functional as F

from .cells import (
    NONLINEARITIES,
    check_sizes,
    describe,
    float_input,
    gru_step,
    gru_step_reset_before,
    is_state_tuple,
    lstm_step,
    rnn_step,
    split_reset_before,
)

__all__ = ["RNN", "LSTM", "GRU", "IRNN", "identity_init_", "make_rnn", "lengths_mask"]


def lengths_mask(owner: str, lengths, T: int, B: int):
    """Per-step masks for a padded batch: a list of T entries, each None (all B sequences are
    valid at t) or a (B, 1) boolean array `t < lengths`; the lengths as an int64 array."""
    arr = np.asarray(lengths.numpy() if isinstance(lengths, mg.Tensor) else lengths)
    if arr.shape != (B,):
        raise ValueError(
            f"{owner}: lengths must hold one length per sequence, shape ({B},), "
            f"got shape {arr.shape}"
        )
    if arr.size and arr.dtype.kind not in "iu":
        if arr.dtype.kind != "f" or not np.array_equal(arr, np.round(arr)):
            raise TypeError(f"{owner}: lengths must be integers, got {arr.dtype} {arr}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() > T):
        raise ValueError(
            f"{owner}: lengths must lie in [0, {T}] (the padded length of the input), "
            f"got values from {arr.min()} to {arr.max()}"
        )
    masks = [None if (arr > t).all() else (arr > t)[:, None] for t in range(T)]
    return masks, arr


class _RNNBase(nn.Module):
    """Parameters, argument checks and the layer/direction loops shared by RNN, LSTM and GRU.

    A subclass sets `gates` (G) and `n_states` (1, or 2 for the LSTM's (h, c)), and defines
    `_input_bias`, `_recurrent` and `_step`: what one time step does with the projected input.
    """

    gates = 1
    n_states = 1
    # The time loop as one graph node running the step's program (see the module docstring);
    # False unrolls it, one node per op per step.
    scan = True

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        *,
        checkpoint_every=None,
        fuse=True,
    ):
        super().__init__()
        name = type(self).__name__
        check_sizes(name, input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
        if isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout must be a probability in [0, 1], got {dropout!r}")
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        if checkpoint_every is not None and (
            isinstance(checkpoint_every, bool)
            or int(checkpoint_every) != checkpoint_every
            or checkpoint_every < 1
        ):
            raise ValueError(
                f"{name}: checkpoint_every must be a positive number of steps or None, "
                f"got {checkpoint_every!r}"
            )
        # Memory-efficient BPTT: keep the state every k steps and recompute the steps between
        # in backward (mg.checkpoint); k ~ sqrt(T) holds O(sqrt(T)) recurrent activations.
        self.checkpoint_every = checkpoint_every
        # One step's elementwise gate arithmetic as one compiled kernel in the scanned program
        # (mg.fuse); off, the program runs each op as it is written.
        self.fuse = bool(fuse)
        self._program = mg.fuse(self._step)
        self.num_directions = 2 if bidirectional else 1
        G, H = self.gates, self.hidden_size
        for k in range(self.num_layers):
            layer_in = self.input_size if k == 0 else H * self.num_directions
            for suffix in self._suffixes():
                empty = lambda *shape: nn.Parameter(np.empty(shape, mg.get_default_dtype()))
                setattr(self, f"weight_ih_l{k}{suffix}", empty(G * H, layer_in))
                setattr(self, f"weight_hh_l{k}{suffix}", empty(G * H, H))
                if bias:
                    setattr(self, f"bias_ih_l{k}{suffix}", empty(G * H))
                    setattr(self, f"bias_hh_l{k}{suffix}", empty(G * H))
        self.reset_parameters()

    def _suffixes(self):
        return ("", "_reverse") if self.bidirectional else ("",)

    def reset_parameters(self):
        """Every weight and bias from U(-1/sqrt(H), 1/sqrt(H)), as PyTorch."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def layer_weights(self, k: int, d: int = 0):
        """(weight_ih, weight_hh, bias_ih, bias_hh) of layer k, direction d (biases may be None)."""
        suffix = self._suffixes()[d]
        get = lambda stem: getattr(self, f"{stem}_l{k}{suffix}", None)
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        defaults = dict(num_layers=1, bias=True, batch_first=False, dropout=0.0)
        defaults["bidirectional"] = False
        for key, default in defaults.items():
            if getattr(self, key) != default:
                s += f", {key}={getattr(self, key)}"
        return s

    # ----- what a subclass defines ----------------------------------------------------------
    def _input_bias(self, b_ih, b_hh):
        """The bias added to the input projection before the loop (None for none)."""
        raise NotImplementedError

    def _recurrent(self, w_hh, b_hh):
        """The recurrent weights as one step needs them, prepared once per sequence."""
        raise NotImplementedError

    def _step(self, gi, state, recurrent):
        """One time step: (projected input (B, G*H), state tuple) -> new state tuple."""
        raise NotImplementedError

    # ----- forward --------------------------------------------------------------------------
    def forward(self, x, h0=None, lengths=None):
        name = type(self).__name__
        x = float_input(name, x)
        shape = x.shape  # the caller's, for messages: x is transposed below
        if x.ndim not in (2, 3):
            n = self.input_size
            layout = f"(batch, seq, {n})" if self.batch_first else f"(seq, batch, {n})"
            raise ValueError(
                f"{name}: expected a 3-D input of shape {layout} or an unbatched 2-D "
                f"(seq, {n}), got shape {x.shape}"
            )
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"{name}: input.size(-1) must be equal to input_size. Expected "
                f"{self.input_size}, got {x.shape[-1]} (input of shape {x.shape})"
            )
        batched = x.ndim == 3
        if not batched:
            x = x.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        T, B = x.shape[0], x.shape[1]
        if T == 0:
            raise ValueError(f"{name}: the input has no time steps (shape {shape})")
        states = self._initial_states(h0, B, x.dtype, batched)
        masks = None
        if lengths is not None:
            masks, arr = lengths_mask(name, lengths, T, B)
            if any(m is not None for m in masks):  # the padding is never read, whatever it holds
                valid = np.arange(T)[:, None, None] < arr[None, :, None]
                x = mg.where(valid, x, 0.0)

        D = self.num_directions
        finals = []
        layer_input = x
        for k in range(self.num_layers):
            outputs = []
            for d in range(D):
                out, final = self._run(layer_input, k, d, states[k * D + d], masks)
                outputs.append(out)
                finals.append(final)
            layer_input = outputs[0] if D == 1 else mg.cat(outputs, axis=2)
            if self.dropout and self.training and k < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)
        output = layer_input

        h_n = tuple(mg.stack([f[i] for f in finals]) for i in range(self.n_states))
        if not batched:
            output = output.squeeze(1)
            h_n = tuple(s.squeeze(1) for s in h_n)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, (h_n if self.n_states > 1 else h_n[0])

    def _run(self, x, k, d, state, masks):
        """Layer k, direction d over the whole sequence: (outputs (T, B, H), final state).

        With checkpoint_every=k, the sequence runs as segments of k steps through
        mg.checkpoint, which keeps only each segment's inputs and recomputes its steps in
        backward; every segment is the same `_pass` as the whole sequence otherwise.
        """
        T, every = x.shape[0], self.checkpoint_every
        if every is None or every >= T or not mg.is_grad_enabled():
            out, *state = self._pass(x, *state, k=k, d=d, masks=masks, lo=0)
            return out, tuple(state)
        bounds = [(lo, min(lo + every, T)) for lo in range(0, T, every)]
        pieces = [None] * len(bounds)
        order = range(len(bounds)) if d == 0 else range(len(bounds) - 1, -1, -1)
        for i in order:
            lo, hi = bounds[i]
            segment = lambda x_seg, *st, lo=lo: self._pass(x_seg, *st, k=k, d=d, masks=masks, lo=lo)
            pieces[i], *state = mg.checkpoint(segment, x[lo:hi], *state)
        return mg.cat(pieces, axis=0), tuple(state)

    def _pass(self, x, *state, k, d, masks, lo):
        """Layer k, direction d over x, the steps lo .. lo + len(x) - 1 of the sequence:
        (outputs (len(x), B, H), *final state).

        Only parameters (leaves) are read besides the arguments, so a checkpointed segment's
        recomputed graph never reaches back into the outer one; the input projection is done
        here, per segment, so that no (T, B, G*H) array outlives a segment either.
        """
        w_ih, w_hh, b_ih, b_hh = self.layer_weights(k, d)
        # The input's share of every step's gates: one (T*B, in) @ (in, G*H) product.
        gi = F.linear(x, w_ih, self._input_bias(b_ih, b_hh))
        recurrent = self._recurrent(w_hh, b_hh)
        hi = lo + x.shape[0]
        part = None if masks is None else masks[lo:hi]
        if self.scan:  # one node for the whole loop
            result = self._program.scan(
                gi, state, recurrent, reverse=d == 1, masks=part, fused=self.fuse
            )
            if result is not None:
                return result
        times = range(lo, hi) if d == 0 else range(hi - 1, lo - 1, -1)
        outputs, state = self._unroll(gi, times, lo, state, recurrent, masks)
        return (mg.stack(outputs), *state)

    def _unroll(self, gi, times, first, state, recurrent, masks):
        """The steps `times` (in processing order) with gi[t - first] the projected input at t,
        each op its own graph node. Returns the outputs in time order and the final state."""
        outputs = [None] * len(times)
        for t in times:
            mask = None if masks is None else masks[t]
            if mask is None:
                state = self._step(gi[t - first], state, recurrent)
                outputs[t - first] = state[0]
            elif not mask.any():  # every sequence has ended: nothing to compute
                outputs[t - first] = mg.zeros_like(state[0])
            else:
                new = self._step(gi[t - first], state, recurrent)
                state = tuple(mg.where(mask, n, s) for n, s in zip(new, state, strict=True))
                outputs[t - first] = mg.where(mask, new[0], 0.0)
        return outputs, state

    def _initial_states(self, h0, B, dtype, batched):
        """A list, per (layer, direction), of the initial state tuple."""
        name = type(self).__name__
        L = self.num_layers * self.num_directions
        H = self.hidden_size
        if h0 is None:
            zeros = mg.zeros(B, H, dtype=dtype)
            return [(zeros,) * self.n_states] * L
        expected = (L, B, H) if batched else (L, H)
        dims = f"(num_layers*num_directions, {'batch, ' if batched else ''}hidden_size)"
        if self.n_states == 2:
            if not isinstance(h0, (tuple, list)) or len(h0) != 2:
                raise TypeError(
                    f"{name}: the initial state must be a pair (h0, c0) of tensors of shape "
                    f"{dims} = {expected} each, got {describe(h0)}"
                )
            parts, what = list(h0), ("h0", "c0")
        else:
            if is_state_tuple(h0):
                hint = "; (h0, c0) is an LSTM's state" if len(h0) == 2 else ""
                raise TypeError(
                    f"{name}: h0 must be a tensor of shape {dims} = {expected}, "
                    f"got {describe(h0)}{hint}"
                )
            parts, what = [h0], ("h0",)
        checked = []
        for part, label in zip(parts, what, strict=True):
            part = float_input(name, part, label)
            if part.shape != expected:
                raise ValueError(
                    f"{name}: Expected {label} of shape {dims} = {expected}, got {part.shape}"
                )
            checked.append(part if batched else part.unsqueeze(1))
        return [tuple(p[i] for p in checked) for i in range(L)]


class RNN(_RNNBase):
    """Elman RNN layer:  h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),  f = tanh or relu.

    RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False). See the module docstring for shapes.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", *args, **kw):
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, num_layers, *args, **kw)
        self.nonlinearity = nonlinearity

    def _input_bias(self, b_ih, b_hh):
        return None if b_ih is None else b_ih + b_hh  # both biases add: fold them in once

    def _recurrent(self, w_hh, b_hh):
        return w_hh

    def _step(self, gi, state, w_hh):
        return (rnn_step(gi, state[0], w_hh, None, self.nonlinearity),)

    def extra_repr(self):
        extra = "" if self.nonlinearity == "tanh" else f", nonlinearity={self.nonlinearity!r}"
        return super().extra_repr() + extra


class LSTM(_RNNBase):
    """LSTM layer: the `LSTMCell` equations at every step (gates i, f, g, o):

        i_t = sigma(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
        f_t = sigma(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
        g_t = tanh (W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
        o_t = sigma(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * tanh(c_t)

    LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False); forward(x, (h0, c0)=None, lengths=None) -> (output, (h_n, c_n)).
    """

    gates = 4
    n_states = 2

    def _input_bias(self, b_ih, b_hh):
        return None if b_ih is None else b_ih + b_hh

    def _recurrent(self, w_hh, b_hh):
        return w_hh

    def _step(self, gi, state, w_hh):
        return lstm_step(gi, state[0], state[1], w_hh)


class GRU(_RNNBase):
    """GRU layer: the `GRUCell` equations at every step (gates r, z, n):

        r_t = sigma(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
        z_t = sigma(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
        n_t = tanh (W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))     reset_after=True
        n_t = tanh (W_in x_t + b_in + W_hn (r_t * h_{t-1}) + b_hn)     reset_after=False
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, *, reset_after=True): reset_after=True is PyTorch's (and cuDNN's)
    form, reset_after=False Cho et al.'s 2014 form; the parameters are the same either way.
    """

    gates = 3

    def __init__(self, *args, reset_after=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.reset_after = bool(reset_after)

    def _input_bias(self, b_ih, b_hh):
        return b_ih  # b_hn sits inside r * (...), so b_hh stays in the recurrent part

    def _recurrent(self, w_hh, b_hh):
        return (w_hh, b_hh) if self.reset_after else split_reset_before(w_hh, b_hh)

    def _step(self, gi, state, recurrent):
        if self.reset_after:
            return (gru_step(gi, state[0], *recurrent),)
        return (gru_step_reset_before(gi, state[0], *recurrent),)

    def extra_repr(self):
        return super().extra_repr() + ("" if self.reset_after else ", reset_after=False")


class IRNN(RNN):
    """ReLU RNN with identity recurrent weights and zero biases (Le, Jaitly, Hinton 2015):

        h_t = relu(W_ih x_t + W_hh h_{t-1} + b),   W_hh = scale * I,  b = 0 at initialisation.

    The input weights keep the default U(-1/sqrt(H), 1/sqrt(H)) unless `input_std` is given,
    in which case they are drawn from N(0, input_std^2): small Gaussian input weights, as in
    common reproductions of Le et al.'s pixel-MNIST experiment (e.g. input_std=0.001).
    `scale` < 1 gives the scaled-identity variant. Parameter names are those of `RNN`.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, scale=1.0, input_std=None, **kw):
        super().__init__(input_size, hidden_size, num_layers, nonlinearity="relu", **kw)
        self.scale = float(scale)
        self.input_std = input_std
        identity_init_(self, scale, input_std)

    def extra_repr(self):
        return super().extra_repr() + (f", scale={self.scale}" if self.scale != 1.0 else "")


def identity_init_(rnn, scale=1.0, input_std=None):
    """IRNN initialisation of an RNN layer in place: every weight_hh = scale * I, every bias
    0, and (if input_std is given) every weight_ih ~ N(0, input_std^2). Returns the layer."""
    for name, p in rnn.named_parameters():
        if name.startswith("weight_hh"):
            nn.init.eye_(p)
            p.data *= scale
        elif name.startswith("bias"):
            nn.init.zeros_(p)
        elif name.startswith("weight_ih") and input_std is not None:
            nn.init.normal_(p, 0.0, input_std)
    return rnn


CELL_TYPES = {"rnn": RNN, "rnn_tanh": RNN, "rnn_relu": RNN, "irnn": IRNN, "lstm": LSTM, "gru": GRU}


def make_rnn(cell: str, input_size, hidden_size, **kwargs):
    """A recurrent layer by name: 'rnn' (= 'rnn_tanh'), 'rnn_relu', 'irnn', 'lstm', 'gru'."""
    key = cell.lower() if isinstance(cell, str) else cell
    if key not in CELL_TYPES:
        raise ValueError(f"unknown cell {cell!r}: expected one of {sorted(CELL_TYPES)}")
    if key == "rnn_relu":
        kwargs["nonlinearity"] = "relu"
    return CELL_TYPES[key](input_size, hidden_size, **kwargs)
