"""Gradient checkpointing: keep a segment's inputs, not its activations, and recompute them.

`checkpoint(fn, *inputs)` runs fn without recording a graph, noting every tensor it reads
that it did not compute (its inputs, the parameters it reads from a closure). One node stands
for the segment: its inputs are those tensors, its outputs fn's outputs. Its backward runs fn
again with the graph on and drives the engine's own backward over the recomputed segment,
capturing the gradients that reach those tensors (`autograd.run_backward(..., capture=)`), so
every parameter's gradient leaves through the node like any other op's. Because the node's
saved state is the arrays of everything the segment reads, the engine's version checks cover
them: an optimizer step or `load_state_dict` between forward and backward is refused, as it
is without checkpointing, instead of recomputing from the new weights.

Checkpointing every k of T recurrent steps holds T/k segment boundaries plus one segment's
activations: O(sqrt(T)) memory for k = sqrt(T), at the price of one extra forward. Gradients
are identical, dropout included (the global generator is replayed).
"""

from . import autograd
from . import random as _random
from .tensor import Tensor


class _Checkpoint(autograd.Function):
    """The segment as one node: forward hands over what fn computed (without a graph)."""

    def forward(self, *arrays, fn=None, extra=(), outs=(), reads=(), rng_state=None):
        self.fn, self.extra, self.reads, self.rng_state = fn, extra, reads, rng_state
        self.n_inputs = len(arrays) - len(reads)
        self.n_outputs = len(outs)
        self.saved = arrays  # what backward reads again: guarded against in-place writes
        return outs[0]._data if len(outs) == 1 else tuple(o._data for o in outs)

    @property
    def name(self) -> str:
        return "Checkpoint"

    def backward(self, *gs):
        arrays, needs, k = self.saved, self.needs, self.n_inputs
        inputs = [
            Tensor(a, requires_grad=need) if need else Tensor._wrap(a)
            for a, need in zip(arrays[:k], needs, strict=False)
        ]
        rng = _random.generator().bit_generator
        now, rng.state = rng.state, self.rng_state  # the same dropout masks
        try:
            with autograd.enable_grad():
                outs = self.fn(*inputs, *self.extra)
        finally:
            rng.state = now
        outs = outs if isinstance(outs, tuple) else (outs,)
        pairs = [(o, g) for o, g in zip(outs, gs, strict=True) if g is not None]
        pairs = [(o, g) for o, g in pairs if o._requires_grad]
        wanted = [t for t, need in zip(inputs + list(self.reads), needs, strict=True) if need]
        found = iter(
            autograd.run_backward([o for o, _ in pairs], [g for _, g in pairs], capture=wanted)
        )
        return tuple(next(found) if need else None for need in needs)


def checkpoint(fn, *inputs, extra=()):
    """fn(*inputs, *extra) with its activations recomputed in backward instead of stored.

    inputs are the tensors gradients flow to (parameters fn reads directly get theirs too);
    extra are other arguments passed through unchanged. fn returns a tensor or a tuple of them.
    """
    inputs = [x if isinstance(x, Tensor) else Tensor(x) for x in inputs]
    if not autograd.is_grad_enabled():
        return fn(*inputs, *extra)
    rng_state = _random.generator().bit_generator.state
    with autograd.no_grad(), autograd.recording_reads() as reads:
        outs = fn(*inputs, *extra)
    mine = {id(x) for x in inputs}
    read = tuple(t for i, t in reads.tensors.items() if i not in mine)
    single = not isinstance(outs, tuple)
    outs = (outs,) if single else outs
    if not all(isinstance(o, Tensor) for o in outs):
        raise TypeError(
            "checkpoint: fn must return a tensor or a tuple of tensors, got "
            + ", ".join(type(o).__name__ for o in outs)
        )
    result = _Checkpoint.apply(
        *inputs, *read, fn=fn, extra=tuple(extra), outs=outs, reads=read, rng_state=rng_state
    )
    return result if single or isinstance(result, tuple) else (result,)
