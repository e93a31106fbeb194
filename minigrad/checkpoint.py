"""Gradient checkpointing: keep a segment's inputs, not its activations, and recompute them.

`checkpoint(fn, *inputs)` runs fn without recording a graph; its backward runs fn again with
the graph on and backpropagates through that. Checkpointing every k of T recurrent steps holds
T/k segment boundaries plus one segment's activations: O(sqrt(T)) memory for k = sqrt(T), at
the price of one extra forward. Gradients are identical, dropout included (the global
generator is replayed).
"""

import numpy as np

from . import autograd
from . import random as _random
from .tensor import Tensor


class _Checkpoint(autograd.Function):
    """One node for a whole segment; its output is every output of fn, raveled and joined."""

    def forward(self, *arrays, fn=None, extra=()):
        self.fn, self.extra = fn, extra
        self.rng_state = _random.generator().bit_generator.state
        with autograd.no_grad():
            outs = fn(*[Tensor._wrap(a) for a in arrays[:-1]], *extra)  # the last is the anchor
        outs = outs if isinstance(outs, tuple) else (outs,)
        self.layout = [(o.shape, o.dtype) for o in outs]
        self.saved = arrays
        return np.concatenate([o.data.ravel() for o in outs]) if len(outs) > 1 else outs[0].data

    def backward(self, g):
        arrays = self.saved
        inputs = [
            Tensor(a, requires_grad=need) if need else Tensor._wrap(a)
            for a, need in zip(arrays, self.needs, strict=False)
        ]
        now = _random.generator().bit_generator.state
        _random.generator().bit_generator.state = self.rng_state  # same dropout masks
        try:
            with autograd.enable_grad():
                outs = self.fn(*inputs[:-1], *self.extra)
        finally:
            _random.generator().bit_generator.state = now
        outs = outs if isinstance(outs, tuple) else (outs,)
        pieces = _unjoin(g, self.layout) if len(outs) > 1 else [g]
        # Backpropagate all outputs at once through a weighted sum: d(sum <out_i, g_i>) = g_i.
        total = None
        for out, piece in zip(outs, pieces, strict=False):
            if out.requires_grad:
                term = (out * Tensor._wrap(piece)).sum()
                total = term if total is None else total + term
        if total is not None:
            total.backward()
        return tuple(x.grad if need else None for x, need in zip(inputs, self.needs, strict=False))


def _unjoin(flat, layout):
    """Cut a 1-D array or tensor back into the pieces `layout` lists (shape, dtype)."""
    pieces, start = [], 0
    for shape, _ in layout:
        size = int(np.prod(shape))
        pieces.append(flat[start : start + size].reshape(shape))
        start += size
    return pieces


def checkpoint(fn, *inputs, extra=()):
    """fn(*inputs, *extra) with its activations recomputed in backward instead of stored.

    inputs are the tensors gradients flow to (parameters fn reads directly get theirs too);
    extra are other arguments passed through unchanged. fn returns a tensor or a tuple of them.
    """
    inputs = [x if isinstance(x, Tensor) else Tensor(x) for x in inputs]
    if not autograd.is_grad_enabled():
        return fn(*inputs, *extra)
    # A constant that "requires grad" makes sure the node is recorded even when no input needs
    # a gradient, since the parameters fn reads do (the recurrent weights, starting from h0=0).
    anchor = Tensor(np.zeros(0), requires_grad=True)
    joined = _Checkpoint.apply(*inputs, anchor, fn=fn, extra=tuple(extra))
    layout = joined._node.layout
    if len(layout) == 1:
        return joined
    return tuple(_unjoin(joined, layout))  # slicing a Tensor records the graph for each output
