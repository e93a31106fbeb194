"""Pass 2 of planning: cut the trace into groups of elementwise ops, one fused node each.

Walking the ops in order, an elementwise op (one with a `scalar` template) of a float shape S
joins the open group of S and its dtype, provided it can read each input: whole, broadcast, or
as a last-axis slice (what `chunk` and `split` make). A group closes, taking its place among
the steps, when anything outside it consumes one of its values. A slice of a cheap elementwise
producer (the LSTM's `gi + W_hh h`, sliced into gates) is recomputed slice by slice inside the
group instead of being read, so the wide sum never exists in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from .trace import Op, Trace


class Read(NamedTuple):
    """How a group's loop reads a slot (see codegen.py for the access kinds)."""

    kind: str  # full, row, col, scalar or view
    slot: int
    offset: int  # first column read, for view and row reads inside a slice
    width: int  # the base's last dimension, for a view

    def __str__(self) -> str:
        if self.kind == "view":
            return f"s{self.slot}[..., {self.offset}:{self.offset}+C] (width {self.width})"
        return f"s{self.slot} {self.kind}" + (f" from column {self.offset}" if self.offset else "")


class Member(NamedTuple):
    """One elementwise op inside a group: local variable `out` = cls's scalar form of `ins`."""

    cls: type
    ins: tuple  # variable names
    out: str

    def __str__(self) -> str:
        return f"{self.out} = " + self.cls.scalar.format(x=self.ins[0], y=self.ins[-1])


@dataclass
class Group:
    shape: tuple
    dtype: object
    members: list = field(default_factory=list)  # Member, in execution order
    reads: dict = field(default_factory=dict)  # variable -> Read
    ops: dict = field(default_factory=dict)  # variable -> Op, for members that are ops of
    # the trace itself (the others are slices recomputed inline)
    outputs: list = field(default_factory=list)  # slots that later steps or the caller use
    made: set = field(default_factory=set)  # the members' variables

    def __str__(self) -> str:
        outs = ", ".join(f"s{s}" for s in self.outputs)
        lines = [f"group over {self.shape} {self.dtype}" + (f" -> {outs}" if outs else "")]
        lines += [f"    {var} = {r}" for var, r in self.reads.items()]
        lines += [f"    {m}" for m in self.members]
        return "\n".join(lines)

    def add(self, member: Member, op: Op | None = None) -> None:
        self.members.append(member)
        self.made.add(member.out)
        if op is not None:
            self.ops[member.out] = op

    def prune(self) -> None:
        """Drop the members no output depends on, and the reads only they made."""
        needed = {f"v{s}" for s in self.outputs}
        kept = []
        for member in reversed(self.members):
            if member.out in needed:
                kept.append(member)
                needed.update(member.ins)
        self.members = kept[::-1]
        self.made = {m.out for m in self.members}
        self.reads = {var: r for var, r in self.reads.items() if var in needed}


def _arithmetic(cls) -> bool:
    """Cheap enough to recompute per slice (no function call in its scalar form)."""
    scalar = getattr(cls, "scalar", None)
    return bool(scalar) and "(" not in scalar


def read(trace: Trace, s: int, shape, dtype, window=None) -> Read | None:
    """How a group of this shape reads slot s, or None if it cannot. With a window (a column),
    it reads the slice of s starting there: it is recomputing a wider op slice by slice."""
    t = trace.values[s]._data
    if t.dtype != dtype or t.ndim > len(shape):
        return None
    if window is None and s in trace.views:
        base, start = trace.views[s]
        bshape = trace.values[base].shape
        if t.shape == shape and bshape[:-1] == shape[:-1]:
            return Read("view", base, start, bshape[-1])
    if t.shape == shape:
        return Read("full", s, 0, 0) if window is None else Read("view", s, window, shape[-1])
    if t.size == 1:
        return Read("scalar", s, 0, 0)
    if t.shape[-1] == shape[-1] and all(n == 1 for n in t.shape[:-1]):
        return Read("row", s, window or 0, 0)
    if t.ndim == len(shape) and t.shape[:-1] == shape[:-1] and t.shape[-1] == 1:
        return Read("col", s, 0, 0)
    return None


class _Cutter:
    """The state of the walk: the steps so far, the open group of each (shape, dtype), which
    group made each slot, and which slots can be recomputed slice by slice (memoised)."""

    def __init__(self, trace: Trace):
        self.trace = trace
        self.steps = []  # Op or Group, in execution order
        self.producer = {}  # slot -> the Group that computes it
        self.open = {}  # (shape, dtype) -> Group
        self.inlinable_memo = {}  # (slot, dtype) -> bool

    def close(self, s: int, keep=None) -> None:
        """Something other than `keep` reads slot s: its group must run before it."""
        group = self.producer.get(s)
        if group is not None and group is not keep:
            if self.open.get((group.shape, group.dtype)) is group:
                del self.open[(group.shape, group.dtype)]
                self.steps.append(group)

    def _same_shape_inputs(self, op: Op) -> list:
        shape = self.trace.values[op.out].shape
        return [i for i in op.ins if self.trace.values[i].shape == shape]

    def inlinable(self, s: int, dtype) -> bool:
        """Whether the slices of s can be recomputed inside a group: s is made by cheap
        elementwise ops from arrays that can be read slice by slice. Post-order, memoised:
        each slot is decided once, however many paths reach it."""
        memo, values, defs = self.inlinable_memo, self.trace.values, self.trace.defs
        stack = [(s, False)]
        while stack:
            x, expanded = stack.pop()
            if (x, dtype) in memo:
                continue
            op = defs.get(x)
            if op is None or not _arithmetic(op.cls):
                memo[(x, dtype)] = False
                continue
            same = self._same_shape_inputs(op)
            if not expanded:
                stack.append((x, True))
                stack.extend((i, False) for i in same)
                continue
            bshape = values[x].shape
            memo[(x, dtype)] = all(
                (i in same and memo[(i, dtype)])
                or read(self.trace, i, bshape, dtype, window=0) is not None
                for i in op.ins
            )
        return memo[(s, dtype)]

    def inline(self, group: Group, s: int, lo: int) -> str:
        """Recompute columns lo.. of slot s inside group (the slice of a sum is the sum of the
        slices); returns the variable holding them. Post-order over s's inlinable producers."""
        trace, dtype = self.trace, group.dtype
        stack = [(s, False)]
        while stack:
            x, expanded = stack.pop()
            if f"v{x}_{lo}" in group.made:
                continue
            op = trace.defs[x]
            sub = [i for i in self._same_shape_inputs(op) if self.inlinable(i, dtype)]
            if not expanded:
                stack.append((x, True))
                stack.extend((i, False) for i in reversed(sub))
                continue
            in_vars = []
            for i in op.ins:
                if i in sub:
                    in_vars.append(f"v{i}_{lo}")
                    continue
                r = read(trace, i, trace.values[x].shape, dtype, window=lo)
                self.close(r.slot, keep=group)
                var = f"v{i}_{lo}" if r.kind in ("view", "row") else f"v{i}"
                group.reads[var] = r
                in_vars.append(var)
            group.add(Member(op.cls, tuple(in_vars), f"v{x}_{lo}"))
        return f"v{s}_{lo}"

    def use(self, group: Group, s: int) -> str:
        """The variable through which group reads slot s, adding the reads it needs."""
        if self.producer.get(s) is group:
            return f"v{s}"
        r = read(self.trace, s, group.shape, group.dtype)
        if r.kind == "view" and r.width != group.shape[-1] and self.inlinable(r.slot, group.dtype):
            return self.inline(group, r.slot, r.offset)
        self.close(r.slot, keep=group)
        group.reads[f"v{s}"] = r
        return f"v{s}"

    def add(self, op: Op) -> None:
        out = self.trace.values[op.out]
        shape, dtype = out.shape, out.dtype
        fusable = getattr(op.cls, "scalar", None) and dtype.kind == "f" and out.ndim >= 1
        if not fusable or any(read(self.trace, i, shape, dtype) is None for i in op.ins):
            for i in op.ins:
                self.close(i)
            self.steps.append(op)
            return
        group = self.open.get((shape, dtype))
        if group is None:
            group = self.open[(shape, dtype)] = Group(shape, dtype)
        in_vars = tuple(self.use(group, i) for i in op.ins)
        group.add(Member(op.cls, in_vars, f"v{op.out}"), op)
        self.producer[op.out] = group


def cut(trace: Trace) -> list:
    """The trace's ops in execution order, runs of elementwise ops replaced by Groups."""
    cutter = _Cutter(trace)
    for op in trace.ops:
        cutter.add(op)
    return cutter.steps + list(cutter.open.values())
