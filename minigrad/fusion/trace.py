"""Pass 1 of planning: the ops one call recorded, as a graph over numbered slots.

Every tensor the trace saw gets a slot: first the function's tensor arguments, then each op's
output in order, with captured tensors (parameters, constants the function reads without taking
them as arguments) numbered as they are first read. Later passes and the replay work on slots
only, never on the trace-time tensors themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..ops.shape import GetItem
from ..tensor import Tensor as _Tensor


class Op(NamedTuple):
    """One recorded op: slot `out` = `cls.apply(*[slot i for i in ins], **kwargs)`."""

    index: int  # its position in the trace
    cls: type
    ins: tuple
    kwargs: dict
    out: int

    @property
    def outs(self) -> tuple:
        return (self.out,)

    def __str__(self) -> str:
        if self.cls is GetItem and set(self.kwargs) == {"index"}:
            return f"s{self.out} = s{self.ins[0]}[{_index_text(self.kwargs['index'])}]"
        args = [f"s{i}" for i in self.ins] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"s{self.out} = {self.cls.__name__}({', '.join(args)})"


def _index_text(index) -> str:
    """An index as Python writes it: (slice(None), slice(0, 16)) as `:, 0:16`."""
    parts = index if isinstance(index, tuple) else (index,)

    def one(p):
        if type(p) is not slice:
            return "..." if p is Ellipsis else repr(p)
        text = ("" if p.start is None else str(p.start)) + ":"
        text += "" if p.stop is None else str(p.stop)
        return text + ("" if p.step is None else f":{p.step}")

    return ", ".join(one(p) for p in parts)


class View(NamedTuple):
    """Slot made by a step-1 slice of the last axis of `base`, starting at column `lo`."""

    base: int
    lo: int


@dataclass
class Trace:
    name: str  # the function's name, for messages
    values: list  # the trace-time tensor of each slot
    n_args: int  # slots 0 .. n_args - 1 are the arguments
    externals: list = field(default_factory=list)  # slots of captured tensors
    ops: list = field(default_factory=list)  # Op, in execution order
    views: dict = field(default_factory=dict)  # slot -> View, for last-axis slices
    defs: dict = field(default_factory=dict)  # slot -> the elementwise Op that made it
    out_slots: list = field(default_factory=list)  # the function's results
    out_type: type | None = None  # tuple or list if it returned several, else None

    def __str__(self) -> str:
        lines = [f"trace of {self.name}: {len(self.ops)} ops"]
        lines.append("  arguments: " + ", ".join(self.describe(s) for s in range(self.n_args)))
        if self.externals:
            lines.append("  captured:  " + ", ".join(self.describe(s) for s in self.externals))
        lines += [f"  {op}" for op in self.ops]
        outs = ", ".join(f"s{s}" for s in self.out_slots)
        lines.append(f"  returns {outs}" if self.out_type is None else f"  returns ({outs})")
        return "\n".join(lines)

    def describe(self, s: int) -> str:
        t = self.values[s]._data
        return f"s{s} {t.shape} {t.dtype}"


def _holds_array(value) -> bool:
    todo = [value]
    while todo:
        v = todo.pop()
        if isinstance(v, np.ndarray):
            return True
        if isinstance(v, (tuple, list)):
            todo.extend(v)
    return False


def last_axis_slice(kwargs, x):
    """(lo, width) if x[index] is a step-1 slice of the last axis with every other axis whole."""
    index = kwargs.get("index")
    parts = index if isinstance(index, tuple) else (index,)
    if x.ndim == 0 or len(parts) != x.ndim or not all(type(p) is slice for p in parts):
        return None
    if any(p != slice(None) for p in parts[:-1]):
        return None
    lo, hi, step = parts[-1].indices(x.shape[-1])
    return (lo, hi - lo) if step == 1 and hi > lo else None


def record(name: str, flat: list, records: list, result) -> Trace:
    """The trace as slots. flat: the stand-ins of the tensor arguments; records: what
    `autograd.tracing` recorded, (op class, input tensors, kwargs, output tensor) per op."""
    trace = Trace(name, list(flat), len(flat))
    slot = {id(t): i for i, t in reversed(list(enumerate(flat)))}

    def slot_of(t) -> int:
        s = slot.get(id(t))
        if s is None:
            if t._node is not None:
                raise ValueError(
                    f"mg.fuse({name}): the function reads a tensor of shape {t.shape} "
                    f"computed outside it by {t._node.name}; pass it as an argument"
                )
            s = slot[id(t)] = len(trace.values)
            trace.values.append(t)
            trace.externals.append(s)
        return s

    for cls, ins, kwargs, out in records:
        if any(_holds_array(v) for v in kwargs.values()):
            raise TypeError(
                f"mg.fuse({name}): {cls.__name__} takes a NumPy array argument, which a "
                "trace would freeze at its first value; call it outside the fused function"
            )
        in_slots = tuple(slot_of(t) for t in ins)
        s = slot[id(out)] = len(trace.values)
        trace.values.append(out)
        op = Op(len(trace.ops), cls, in_slots, kwargs, s)
        trace.ops.append(op)
        if cls is GetItem:
            view = last_axis_slice(kwargs, ins[0])
            if view is not None:
                trace.views[s] = View(in_slots[0], view[0])
        elif getattr(cls, "scalar", None):
            trace.defs[s] = op

    outs = result if isinstance(result, (tuple, list)) else (result,)
    if not all(isinstance(t, _Tensor) for t in outs):
        raise TypeError(
            f"mg.fuse({name}): the function must return a tensor or a flat tuple or list "
            f"of tensors, got {type(result).__name__} of "
            f"{', '.join(type(t).__name__ for t in outs)}"
        )
    trace.out_type = type(result) if isinstance(result, (tuple, list)) else None
    trace.out_slots = [slot_of(t) for t in outs]
    return trace
