"""`mg.fuse(fn)`: run a function of tensors with its elementwise chains compiled into one kernel.

The first call with a given set of argument shapes and dtypes runs `fn` on stand-ins for its
tensor arguments while the engine records every op it applies (`autograd.tracing`). `plan.py`
turns that trace into replayable steps by named passes (`trace.py`: the ops over numbered
slots; `groups.py`: the cut into groups; then liveness, absorption and frees). A group is a
maximal run of elementwise ops (those with `scalar` templates) producing one shape, which read
their inputs whole, broadcast, or as last-axis slices (what `chunk` and `split` make),
recomputing a cheap producer of a slice slice by slice. Each group becomes one graph node
(`node.py`) whose forward and backward are generated Numba loops (`codegen.py`), and which
also runs a matmul or slice that feeds only it; every other op is replayed as itself. A call
replays that plan when it fused something (else calling `fn` costs less): an LSTM step of 16
nodes becomes one fused node with two outputs, h and c, its gate arithmetic one pass each way.

As with any tracing JIT, the function must be a fixed sequence of ops on its arguments:
- Python control flow is decided at trace time: a branch on a tensor's values is not retraced.
- Tensors the function reads without taking them as arguments (parameters, constants) are
  captured by reference: the current values of the same tensor objects are used on each call.
  A tensor computed by an op outside the function must be passed as an argument.
- An op that takes a NumPy array argument (a `where` mask, an index array) cannot be traced:
  its array would be frozen at trace time. Calling such ops raises a TypeError.
Non-tensor arguments (ints, strings, None) are part of the signature: a new value retraces.

To see what fusion made of a function: `f.explain(*args)` returns the plan for those arguments
as text (`kernels=True` adds the generated loops' source), and MINIGRAD_PRINT_KERNELS=1 prints
each kernel's source as it is generated.

A recurrent step `state = f(x_t, state, weights)` runs over a whole sequence as one graph node
with `f.scan(xs, state, weights)` (scan.py): the plan replayed on arrays T times, forward and
backward, with no node per step.
"""

from __future__ import annotations

import functools

from .. import autograd
from .. import random as _random
from ..tensor import Tensor as _Tensor
from .node import FusedOp
from .plan import MIN_OPS, Plan
from .scan import Scan, scan, scan_reason

__all__ = ["fuse", "Fused", "FusedOp", "MIN_OPS", "Scan", "scan", "scan_reason"]


def fuse(fn):
    """Decorate a function of tensors (or tuples of tensors) so its elementwise ops fuse.

    Gradients are the same as the unfused function's, up to floating-point rounding.
    """
    if not callable(fn):
        raise TypeError(f"mg.fuse: expected a function, got {type(fn).__name__}")
    return Fused(fn)


class Fused:
    def __init__(self, fn):
        self.fn = fn
        self.plans = {}
        functools.update_wrapper(self, fn)

    def __get__(self, obj, objtype=None):  # @mg.fuse on a method: self is a constant
        return self if obj is None else functools.partial(self, obj)

    def __call__(self, *args, **kwargs):
        if kwargs:
            raise TypeError(
                f"mg.fuse({self.__qualname__}): pass arguments by position "
                f"(got keywords {sorted(kwargs)})"
            )
        if autograd.is_tracing():  # inside another trace: be part of it
            return self.fn(*args)
        if autograd.is_forward_mode():  # mg.jvp: the plain ops have tangent rules
            return self.fn(*args)
        flat, plan = self._plan(args)
        if not plan.fuses:  # nothing to fuse: calling fn costs less than replaying its ops
            return self.fn(*args)
        return plan.run(flat)

    def scan(self, xs, state, extra=None, reverse: bool = False, masks=None, fused=True):
        """Run `state = fn(xs[t], state, extra)` for t over xs's first axis as one graph node
        (scan.py): (every step's state[0] stacked in time order, *the final state); None if
        this function cannot be scanned (scan_reason), so the caller steps it itself. masks:
        per step None or a boolean array; where False, the state is kept and the output 0.
        fused=False scans the traced ops as they are, with no compiled kernel."""
        return scan(self, xs, tuple(state), extra, reverse, masks, fused)

    def explain(self, *args, kernels: bool = False) -> str:
        """The plan for these arguments as text (tracing them if no call has yet): its slots,
        steps and fused nodes; with kernels=True also the generated source of the loops."""
        return self._plan(args)[1].explain(kernels=kernels)

    def _plan(self, args, fused: bool = True):
        """The tensors of args, flattened, and the plan for their signature (traced if new);
        fused=False: the plan of the traced ops alone, no kernels."""
        flat, key = [], [fused]
        _flatten(args, flat, key)
        ids = [id(t) for t in flat]
        if len(set(ids)) != len(ids):  # one tensor passed twice: a plan of its own
            key.append(tuple(ids.index(i) for i in ids))
        key = tuple(key)
        plan = self.plans.get(key)
        if plan is None:
            plan = self.plans[key] = self._trace(args, flat, fused)
        return flat, plan

    def _trace(self, args, flat, fused: bool):
        """Record fn's ops on stand-ins for the tensor arguments (so that a tensor fn also
        reads from a closure stays captured, not tied to an argument), then restore the
        random generator, so that replaying the plan draws what the trace drew."""
        stand_ins = {}
        for t in flat:
            if id(t) not in stand_ins:
                s = stand_ins[id(t)] = _Tensor._wrap(t._data)
                s._requires_grad = t._requires_grad
        records, rng = [], _random.generator().bit_generator
        rng_state = rng.state
        try:
            with autograd.tracing(records):
                result = self.fn(*_substitute(args, stand_ins))
        finally:
            rng.state = rng_state
        return Plan(self.fn, [stand_ins[id(t)] for t in flat], records, result, fused)


def _substitute(args, stand_ins):
    return [
        type(a)(_substitute(a, stand_ins))
        if type(a) is tuple or type(a) is list
        else stand_ins.get(id(a), a)
        for a in args
    ]


def _flatten(args, flat, key) -> None:
    """The tensors of (nested) tuple and list arguments, in order, into `flat`; into `key`,
    each one's shape and dtype, and the rest of the arguments' structure and values."""
    for obj in args:
        kind = type(obj)
        if kind is tuple or kind is list:
            key.append(len(obj))
            _flatten(obj, flat, key)
        elif kind is _Tensor or isinstance(obj, _Tensor):  # parameters too
            data = obj._data
            flat.append(obj)
            key.append((data.shape, data.dtype))
        else:
            try:
                hash(obj)
            except TypeError:
                raise TypeError(
                    "mg.fuse: arguments must be tensors, tuples or lists of them, or hashable "
                    f"constants; got {type(obj).__name__}"
                ) from None
            key.append(("const", type(obj), obj))
