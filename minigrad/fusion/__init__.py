"""`mg.fuse(fn)`: run a function of tensors with its elementwise chains compiled into one kernel.

The first call with a given set of argument shapes and dtypes runs `fn` as usual while the
engine records every op it applies (a trace). The trace is then cut into groups: maximal runs
of elementwise ops (those with `scalar` templates) producing one shape, which read their
inputs either whole, broadcast, or as last-axis slices (what `chunk` and `split` make). Each
group becomes a single graph node whose forward and backward are generated Numba loops
(`codegen.py`); every other op is replayed as itself. Later calls with the same signature
replay that plan, so an LSTM step of ~16 nodes becomes about 6, and its gate arithmetic one
pass over memory each way.

As with any tracing JIT, the function must be a fixed sequence of ops on its arguments:
- Python control flow is decided at trace time: a branch on a tensor's values is not retraced.
- Tensors the function reads without taking them as arguments (parameters, constants) are
  captured by reference: the current values of the same tensor objects are used on each call.
  A tensor computed by an op outside the function must be passed as an argument.
- An op that takes a NumPy array argument (a `where` mask, an index array) cannot be traced:
  its array would be frozen at trace time. Calling such ops raises a TypeError.
Non-tensor arguments (ints, strings, None) are part of the signature: a new value retraces.
"""

from __future__ import annotations

import functools

import numpy as np

from .. import autograd
from .. import random as _random
from ..autograd import Function
from ..ops.matmul import Linear, MatMul
from ..ops.shape import GetItem
from ..tensor import Tensor as _Tensor
from . import codegen

__all__ = ["fuse"]


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
        if autograd._state.tracer is not None:  # inside another trace: be part of it
            return self.fn(*args)
        flat, key = [], []
        _flatten(args, flat, key)
        ids = [id(t) for t in flat]
        if len(set(ids)) != len(ids):  # one tensor passed twice: a plan of its own
            key.append(tuple(ids.index(i) for i in ids))
        key = tuple(key)
        plan = self.plans.get(key)
        if plan is None:
            plan = self.plans[key] = self._trace(args, flat)
        return plan.run(flat)

    def _trace(self, args, flat):
        """Record fn's ops on stand-ins for the tensor arguments (so that a tensor fn also
        reads from a closure stays captured, not tied to an argument), then restore the
        random generator, so that replaying the plan draws what the trace drew."""
        stand_ins = {}
        for t in flat:
            if id(t) not in stand_ins:
                s = stand_ins[id(t)] = _Tensor._wrap(t.data)
                s._requires_grad = t._requires_grad
        records, rng = [], _random.generator().bit_generator
        rng_state = rng.state
        autograd._state.tracer = records
        try:
            result = self.fn(*_substitute(args, stand_ins))
        finally:
            autograd._state.tracer = None
            rng.state = rng_state
        return Plan(self.fn, [stand_ins[id(t)] for t in flat], records, result)


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
            data = obj.data
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


def _holds_array(value) -> bool:
    if isinstance(value, np.ndarray):
        return True
    return isinstance(value, (tuple, list)) and any(_holds_array(v) for v in value)


def _view_of(kwargs, x):
    """(lo, width) if x[index] is a step-1 slice of the last axis with every other axis whole."""
    index = kwargs.get("index")
    parts = index if isinstance(index, tuple) else (index,)
    if x.ndim == 0 or len(parts) != x.ndim or not all(type(p) is slice for p in parts):
        return None
    if any(p != slice(None) for p in parts[:-1]):
        return None
    lo, hi, step = parts[-1].indices(x.shape[-1])
    return (lo, hi - lo) if step == 1 and hi > lo else None


# A group of fewer ops that reads no slices runs as those ops: for a tanh RNN's `gi + W h` and
# tanh, NumPy's two ufuncs beat the fused loop, whose tanh is slower than NumPy's
# (benchmarks/README.md, "Fusion").
MIN_OPS = 3


class _Group:
    def __init__(self, shape, dtype):
        self.shape, self.dtype = shape, dtype
        self.members = []  # (op class, input vars, output var), in execution order
        self.slots = {}  # output var -> slot, for members that are ops of the trace itself
        self.reads = {}  # var -> (kind, leaf slot, offset, width)
        self.ops = {}  # output var -> index of the trace's op, for members that are one
        self.outputs = []  # slots that later steps or the caller use

    def prune(self) -> None:
        """Drop the members no output depends on, and the reads only they made."""
        needed = {f"v{s}" for s in self.outputs}
        kept = []
        for member in reversed(self.members):
            if member[2] in needed:
                kept.append(member)
                needed.update(member[1])
        self.members = kept[::-1]
        self.reads = {var: r for var, r in self.reads.items() if var in needed}


def _arithmetic(cls) -> bool:
    """Cheap enough to recompute per slice (no function call in its scalar form)."""
    scalar = getattr(cls, "scalar", None)
    return bool(scalar) and "(" not in scalar


class Plan:
    """The trace of one call, cut into replayable steps: ops and fused groups."""

    def __init__(self, fn, flat, records, result):
        name = getattr(fn, "__qualname__", type(fn).__name__)
        slot = {id(t): i for i, t in reversed(list(enumerate(flat)))}
        values = list(flat)  # the trace-time tensor in each slot
        self.n_args = len(flat)
        externals = []

        def slot_of(t):
            s = slot.get(id(t))
            if s is None:
                if t._node is not None:
                    raise ValueError(
                        f"mg.fuse({name}): the function reads a tensor of shape {t.shape} "
                        f"computed outside it by {t._node.name}; pass it as an argument"
                    )
                s = slot[id(t)] = len(values)
                values.append(t)
                externals.append(s)
            return s

        ops = []  # (cls, input slots, kwargs, output slot)
        views = {}  # output slot of a last-axis slice -> (base slot, lo)
        defs = {}  # output slot of an elementwise op -> (cls, input slots)
        for cls, ins, kwargs, out in records:
            if any(_holds_array(v) for v in kwargs.values()):
                raise TypeError(
                    f"mg.fuse({name}): {cls.__name__} takes a NumPy array argument, which a "
                    "trace would freeze at its first value; call it outside the fused function"
                )
            in_slots = tuple(slot_of(t) for t in ins)
            s = slot[id(out)] = len(values)
            values.append(out)
            ops.append((cls, in_slots, kwargs, s))
            if cls is GetItem:
                view = _view_of(kwargs, ins[0])
                if view is not None:
                    views[s] = (in_slots[0], view[0])
            elif getattr(cls, "scalar", None):
                defs[s] = (cls, in_slots)

        def read(s, shape, dtype, window=None):
            """How a group of this shape reads slot s, or None if it cannot. With a window
            (a column), it reads the slice of s starting there: it is inlining a wider op."""
            t = values[s].data
            if t.dtype != dtype or t.ndim > len(shape):
                return None
            if window is None and s in views:
                base, start = views[s]
                bshape = values[base].shape
                if t.shape == shape and bshape[:-1] == shape[:-1]:
                    return ("view", base, start, bshape[-1])
            if t.shape == shape:
                return ("full", s, 0, 0) if window is None else ("view", s, window, shape[-1])
            if t.size == 1:
                return ("scalar", s, 0, 0)
            if t.shape[-1] == shape[-1] and all(n == 1 for n in t.shape[:-1]):
                return ("row", s, window or 0, 0)
            if t.ndim == len(shape) and t.shape[:-1] == shape[:-1] and t.shape[-1] == 1:
                return ("col", s, 0, 0)
            return None

        def inlinable(s, shape, dtype):
            """Whether the slices of s can be recomputed inside a group: s is made by cheap
            elementwise ops from arrays that can be read slice by slice."""
            if s not in defs or not _arithmetic(defs[s][0]):
                return False
            bshape = values[s].shape
            for i in defs[s][1]:
                if values[i].shape == bshape and inlinable(i, shape, dtype):
                    continue
                if read(i, bshape, dtype, window=0) is None:
                    return False
            return True

        # Cut into groups: an elementwise op joins the open group of its shape and dtype; a
        # group closes (takes its place in the plan) when anything else consumes its values.
        steps, producer, open_groups = [], {}, {}

        def close(s, keep=None):
            group = producer.get(s)
            if group is not None and group is not keep:
                if open_groups.get((group.shape, group.dtype)) is group:
                    del open_groups[(group.shape, group.dtype)]
                    steps.append(group)

        def use(group, s):
            """The variable through which `group` reads slot s, adding the reads it needs."""
            if producer.get(s) is group:
                return f"v{s}"
            r = read(s, group.shape, group.dtype)
            if r[0] == "view" and r[3] != group.shape[-1]:
                base, lo = r[1], r[2]
                if inlinable(base, group.shape, group.dtype):
                    return inline(group, base, lo)
            close(r[1], keep=group)
            group.reads[f"v{s}"] = r
            return f"v{s}"

        def inline(group, s, lo):
            """Recompute columns lo.. of slot s inside group: the slice of a sum is the sum
            of the slices, so an LSTM's `gi + W_hh h` never needs to exist whole."""
            var = f"v{s}_{lo}"
            if any(m[2] == var for m in group.members):
                return var
            cls, in_slots = defs[s]
            bshape = values[s].shape
            in_vars = []
            for i in in_slots:
                if values[i].shape == bshape and inlinable(i, group.shape, group.dtype):
                    in_vars.append(inline(group, i, lo))
                    continue
                r = read(i, bshape, group.dtype, window=lo)
                close(r[1], keep=group)
                v = f"v{i}_{lo}" if r[0] in ("view", "row") else f"v{i}"
                group.reads[v] = r
                in_vars.append(v)
            group.members.append((cls, tuple(in_vars), var))
            return var

        for k, (cls, in_slots, _, s) in enumerate(ops):
            out = values[s]
            shape, dtype = out.shape, out.dtype
            fusable = getattr(cls, "scalar", None) and dtype.kind == "f" and out.ndim >= 1
            if not fusable or any(read(i, shape, dtype) is None for i in in_slots):
                for i in in_slots:
                    close(i)
                steps.append(k)
                continue
            group = open_groups.get((shape, dtype))
            if group is None:
                group = open_groups[(shape, dtype)] = _Group(shape, dtype)
            in_vars = tuple(use(group, i) for i in in_slots)
            group.members.append((cls, in_vars, f"v{s}"))
            group.slots[f"v{s}"] = s
            group.ops[f"v{s}"] = k
            producer[s] = group
        steps += list(open_groups.values())

        # Only fn's results and what later steps read stay live; the rest is dropped (the
        # slices a group reads through its own view of their base, for example).
        outs = result if isinstance(result, (tuple, list)) else (result,)
        if not all(isinstance(t, _Tensor) for t in outs):
            raise TypeError(
                f"mg.fuse({name}): the function must return a tensor or a flat tuple or list "
                f"of tensors, got {type(result).__name__} of "
                f"{', '.join(type(t).__name__ for t in outs)}"
            )
        self.out_type = type(result) if isinstance(result, (tuple, list)) else None
        self.out_slots = [slot_of(t) for t in outs]
        live = set(self.out_slots)
        kept = []
        for step in reversed(steps):
            if isinstance(step, int):
                cls, in_slots, kwargs, s = ops[step]
                if s in live:
                    kept.append((cls, in_slots, kwargs, s))
                    live.update(in_slots)
                continue
            step.outputs = [s for s in step.slots.values() if s in live]
            if not step.outputs:
                continue
            step.prune()
            if len(step.members) < MIN_OPS and all(r[0] != "view" for r in step.reads.values()):
                for _, _, var in reversed(step.members):  # too little to fuse: run the ops
                    cls, in_slots, kwargs, s = ops[step.ops[var]]
                    kept.append((cls, in_slots, kwargs, s))
                    live.update(in_slots)
                continue
            kept.append(_Kernel(step, values))
            live.update(r[1] for r in step.reads.values())
        self.steps = _absorb_producers(kept[::-1], self.out_slots)
        last_read = {}
        for i, step in enumerate(self.steps):
            for s in step[1] if type(step) is tuple else step.input_slots:
                last_read[s] = i
        self.frees = [[] for _ in self.steps]
        for s, i in last_read.items():
            if s not in self.out_slots:
                self.frees[i].append(s)
        self.template = [None] * len(values)
        self.externals = [(s, values[s], values[s].shape) for s in externals]
        for s, t, _ in self.externals:
            self.template[s] = t
        self.name = name

    def run(self, flat):
        env = self.template[:]
        env[: self.n_args] = flat
        for _, t, shape in self.externals:
            if t.data.shape != shape:
                raise RuntimeError(
                    f"mg.fuse({self.name}): a tensor the function captured changed shape from "
                    f"{shape} to {t.data.shape} since it was traced"
                )
        for step, done in zip(self.steps, self.frees, strict=True):
            if type(step) is tuple:
                cls, in_slots, kwargs, s = step
                env[s] = cls.apply(*[env[i] for i in in_slots], **kwargs)
            else:
                y = FusedOp.apply(*[env[i] for i in step.input_slots], kernel=step)
                if len(step.out_slots) == 1:
                    env[step.out_slots[0]] = y
                else:
                    for i, s in enumerate(step.out_slots):
                        env[s] = _unstack(y, i)
            for s in done:  # as a plain Python function would, drop what is no longer read
                env[s] = None
        if self.out_type is None:
            return env[self.out_slots[0]]
        return self.out_type(env[s] for s in self.out_slots)


# Ops a group may run inside its own node when nothing else reads their result. Deterministic
# ones only: moving a random op would reorder the draws from the generator.
_ABSORBABLE = (Linear, MatMul, GetItem)


def _absorb_producers(steps, out_slots):
    """Let each group run the matmul that feeds only it (an RNN's W_hh h): one node per step
    instead of two, as a fused LSTM kernel does its matmul and its gates together."""
    uses = {}
    for step in steps:
        for s in step[1] if type(step) is tuple else step.input_slots:
            uses[s] = uses.get(s, 0) + 1
    for s in out_slots:
        uses[s] = uses.get(s, 0) + 1
    made_by = {step[3]: step for step in steps if type(step) is tuple}
    absorbed = set()
    for step in steps:
        if type(step) is tuple:
            continue
        for s in set(step.input_slots):
            producer = made_by.get(s)
            if (
                producer is not None
                and producer[0] in _ABSORBABLE
                and uses[s] == step.input_slots.count(s)
            ):
                step.absorb(producer)
                absorbed.add(id(producer))
    return [step for step in steps if id(step) not in absorbed]


def _unstack(y, i):
    """y[i] for a fused node's stacked outputs: GetItem's node, made without apply's
    generality (this runs for every output of every fused call)."""
    data = y.data
    t = _Tensor._wrap(data[i])
    if y._node is not None:
        node = GetItem()
        node.index, node.in_shape = i, data.shape
        node.inputs, node.shapes, node.needs = [y._node], (data.shape,), (True,)
        t._requires_grad = True
        t._node = node
    return t


class _Kernel:
    """One group's compiled loops and how to hand them its arrays.

    Its node's inputs are `input_slots`: first the inputs of absorbed producer ops (whose
    forward and backward it runs itself), then one per leaf the loops read directly.
    """

    def __init__(self, group: _Group, values):
        self.shape = group.shape
        self.dtype = group.dtype
        self.C = group.shape[-1]
        self.R = int(np.prod(group.shape[:-1], dtype=np.int64))
        # Variables renamed in order of appearance: the same cell at any step (and any hidden
        # size) then has the same Spec, hence the same source and one compiled kernel.
        names = {}

        def rename(var):
            return names.setdefault(var, f"v{len(names)}")

        leaves, reads = [], []
        for var, (kind, s, lo, width) in group.reads.items():
            leaf = (kind, s, width)
            if leaf not in leaves:
                leaves.append(leaf)
            # A multiple of C (what chunk makes) stays symbolic, so that one compiled kernel
            # serves every hidden size; other offsets are literals.
            offset = f"{lo // self.C} * C" if lo and lo % self.C == 0 else str(lo)
            reads.append((rename(var), leaves.index(leaf), offset))
        members = tuple(
            (cls.scalar, cls.scalar_grads, tuple(rename(v) for v in ins), rename(out))
            for cls, ins, out in group.members
        )
        self.spec = codegen.Spec(
            dtype=group.dtype.name,
            leaves=tuple(kind for kind, _, _ in leaves),
            reads=tuple(reads),
            members=members,
            outputs=tuple(rename(f"v{s}") for s in group.outputs),
        )
        self.kinds = [kind for kind, _, _ in leaves]
        self.leaf_slots = [s for _, s, _ in leaves]
        # Each leaf's array as the loops index it: (R, C), (R, W) for a view's base, or flat.
        R, C = self.R, self.C
        self.leaf_shapes = [values[s].shape for s in self.leaf_slots]
        self.loop_shapes = [
            (R, C) if kind == "full" else (R, width) if kind == "view" else (-1,)
            for kind, _, width in leaves
        ]
        self.prologue = []  # (op class, kwargs, positions of its inputs, output slot)
        self.input_slots = list(self.leaf_slots)
        self.out_slots = list(group.outputs)
        self.n_saved = len(self.spec.saved_vars())
        self.keep = self.spec.leaves_read_by_backward()
        self.names = ", ".join(cls.__name__.lower() for cls, _, _ in group.members)
        self._layout()
        self._forward = None
        self._backward = {}

    def absorb(self, op) -> None:
        cls, in_slots, kwargs, s = op
        self.prologue.append((cls, kwargs, in_slots, s))
        self.names = f"{cls.__name__.lower()}, {self.names}"
        self._layout()

    def _layout(self):
        made = {s: j for j, (_, _, _, s) in enumerate(self.prologue)}
        self.input_slots, self.calls = [], []
        for cls, kwargs, in_slots, _ in self.prologue:
            start = len(self.input_slots)
            self.input_slots += in_slots
            self.calls.append((cls, kwargs, range(start, start + len(in_slots))))
        # Each leaf comes from a prologue op (j, None) or is an input of the node (None, pos).
        self.sources = []
        for s in self.leaf_slots:
            if s in made:
                self.sources.append((made[s], None))
            else:
                self.sources.append((None, len(self.input_slots)))
                self.input_slots.append(s)

    def forward(self, arrays, save):
        if self._forward is None:
            self._forward = codegen.forward_kernel(self.spec)
        fns, made = [], []
        for cls, kwargs, positions in self.calls:
            fn = cls()
            made.append(fn.forward(*[arrays[p] for p in positions], **kwargs))
            fns.append(fn)
        leaves = [
            (arrays[pos] if j is None else made[j]).reshape(shape)
            for (j, pos), shape in zip(self.sources, self.loop_shapes, strict=True)
        ]
        R, C, k = self.R, self.C, len(self.out_slots)
        out = np.empty((k, R, C), dtype=self.dtype)
        scratch = np.empty((self.n_saved if save else 0, R, C), dtype=self.dtype)
        self._forward(R, C, *leaves, out, scratch, save)
        result = out.reshape(self.shape) if k == 1 else out.reshape((k,) + self.shape)
        if not save:
            return result, None
        # Keep only the leaves backward reads (an LSTM's (B, 4H) pre-activations it does not);
        # the others are passed to it as one-element stand-ins of the same type.
        kept = [a if keep else a.shape for a, keep in zip(leaves, self.keep, strict=True)]
        return result, (kept, scratch, out, fns)

    def _backward_plan(self, needs):
        """For one pattern of inputs needing gradients: the compiled loop, and for each leaf
        gradient it writes, the leaf's index and where its gradient goes."""
        leaf_needs = tuple(
            needs[pos] if j is None else any(needs[p] for p in self.calls[j][2])
            for j, pos in self.sources
        )
        kernel = codegen.backward_kernel(self.spec, leaf_needs)
        routes = [
            (i, j, pos, self.leaf_shapes[i])
            for i, ((j, pos), n) in enumerate(zip(self.sources, leaf_needs, strict=True))
            if n
        ]
        calls = [(positions, tuple(needs[p] for p in positions)) for _, _, positions in self.calls]
        return kernel, routes, calls

    def backward(self, g, saved, needs):
        """Gradients for the node's inputs, given which of them need one."""
        kept, scratch, out, fns = saved
        plan = self._backward.get(needs)
        if plan is None:
            plan = self._backward[needs] = self._backward_plan(needs)
        kernel, routes, calls = plan
        dtype = self.dtype
        shapes = [a if type(a) is tuple else a.shape for a in kept]
        leaves = [np.zeros((1,) * len(a), dtype) if type(a) is tuple else a for a in kept]
        grads = [np.zeros(shapes[i], dtype=dtype) for i, _, _, _ in routes]
        gout = np.ascontiguousarray(g, dtype=dtype).reshape(len(self.out_slots), self.R, self.C)
        kernel(self.R, self.C, out, scratch, *leaves, *grads, gout)

        result = [None] * len(needs)
        made = [None] * len(fns)
        for (_, j, pos, shape), grad in zip(routes, grads, strict=True):
            grad = grad.reshape(shape)
            if j is None:
                result[pos] = grad
            else:  # a prologue output read as several leaves gets their sum
                made[j] = grad if made[j] is None else made[j] + grad
        for fn, (positions, fn_needs), grad in zip(fns, calls, made, strict=True):
            if grad is not None:
                fn.needs = fn_needs
                for p, ig in zip(positions, fn.backward(grad), strict=False):
                    result[p] = ig
        return result


class FusedOp(Function):
    """A group of elementwise ops as one node; several outputs come stacked on axis 0."""

    def forward(self, *arrays, kernel=None):
        self.kernel = kernel
        result, self.saved = kernel.forward(arrays, autograd._state.grad_enabled)
        return result

    def backward(self, g):
        return self.kernel.backward(g, self.saved, self.needs)

    @property
    def name(self) -> str:
        return f"Fused({self.kernel.names})"
