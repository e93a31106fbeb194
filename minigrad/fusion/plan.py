"""A trace cut into replayable steps: the ops as recorded, and groups of elementwise ops that
become one fused node each (`node.py`). See the package's docstring for what is fused."""

from __future__ import annotations

import numpy as np

from ..ops.matmul import Linear, MatMul
from ..ops.shape import GetItem
from ..tensor import Tensor as _Tensor
from .node import FusedKernel, FusedOp, unstack


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
        self.reads = {}  # var -> (kind, leaf slot, offset, width)
        self.ops = {}  # output var -> (index of the trace's op, its output slot), for members
        # that are ops of the trace itself (the others are slices recomputed inline)
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
            group.ops[f"v{s}"] = (k, s)
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
            step.outputs = [s for _, s in step.ops.values() if s in live]
            if not step.outputs:
                continue
            step.prune()
            if len(step.members) < MIN_OPS and all(r[0] != "view" for r in step.reads.values()):
                for _, _, var in reversed(step.members):  # too little to fuse: run the ops
                    cls, in_slots, kwargs, s = ops[step.ops[var][0]]
                    kept.append((cls, in_slots, kwargs, s))
                    live.update(in_slots)
                continue
            kept.append(FusedKernel(step, values))
            live.update(r[1] for r in step.reads.values())
        self.steps = _absorb_producers(kept[::-1], self.out_slots)
        self.fuses = any(type(step) is not tuple for step in self.steps)
        last_read = {}
        for i, step in enumerate(self.steps):
            for s in _inputs(step):
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
                        env[s] = unstack(y, i)
            for s in done:  # as a plain Python function would, drop what is no longer read
                env[s] = None
        if self.out_type is None:
            return env[self.out_slots[0]]
        return self.out_type(env[s] for s in self.out_slots)


def _inputs(step):
    """The slots a plan step reads: an op's (cls, input slots, kwargs, slot) or a kernel."""
    return step[1] if type(step) is tuple else step.input_slots


# Ops a group may run inside its own node when nothing else reads their result. Deterministic
# ones only: moving a random op would reorder the draws from the generator.
_ABSORBABLE = (Linear, MatMul, GetItem)


def _absorb_producers(steps, out_slots):
    """Let each group run the matmul that feeds only it (an RNN's W_hh h): one node per step
    instead of two, as a fused LSTM kernel does its matmul and its gates together."""
    uses = {}
    for step in steps:
        for s in _inputs(step):
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
