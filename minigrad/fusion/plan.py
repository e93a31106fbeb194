"""A trace cut into replayable steps, by named passes; `Plan.run` replays it, `str(plan)` shows it.

    trace.record      the recorded ops as a graph over numbered slots    -> Trace
    groups.cut        runs of elementwise ops become Groups               -> [Op | Group]
    keep_live         drop what no result needs; small groups run as
                      their ops; each group left becomes a FusedKernel    -> [Op | FusedKernel]
    absorb_producers  a matmul or slice feeding only one kernel runs inside it
    schedule_frees    after each step, the slots no later step reads      -> [[slot]]

Each pass is a function of the previous one's result, and every walk is a loop over the steps
or an explicit stack (never recursion), linear in the size of the trace. Every stage prints
with one printer, `show`; with MINIGRAD_DEBUG=plan each new plan prints after every pass.
"""

from __future__ import annotations

import os

from ..ops.matmul import Linear, MatMul
from ..ops.shape import GetItem
from . import codegen
from .groups import Group, cut
from .node import FusedKernel
from .trace import Op, Trace, record

# A group of fewer ops that reads no slices runs as those ops: for a tanh RNN's `gi + W h` and
# tanh, NumPy's two ufuncs beat the fused loop, whose tanh is slower than NumPy's
# (benchmarks/README.md, "Fusion").
MIN_OPS = 3

# Ops a kernel may run inside its own node when nothing else reads their result. Deterministic
# ones only: moving a random op would reorder the draws from the generator.
_ABSORBABLE = (Linear, MatMul, GetItem)


def keep_live(trace: Trace, steps: list) -> list:
    """Walking back from the results: the steps some result depends on. A group keeps only
    its live members, and runs as its ops if fewer than MIN_OPS are left and it reads no
    slice; every other group becomes a FusedKernel."""
    live = set(trace.out_slots)
    kept = []
    for step in reversed(steps):
        if type(step) is Op:
            if step.out in live:
                kept.append(step)
                live.update(step.ins)
            continue
        step.outputs = [op.out for op in step.ops.values() if op.out in live]
        if not step.outputs:
            continue
        step.prune()
        if len(step.members) < MIN_OPS and all(r.kind != "view" for r in step.reads.values()):
            for member in reversed(step.members):  # too little to fuse: run the ops
                op = step.ops[member.out]
                kept.append(op)
                live.update(op.ins)
            continue
        kept.append(FusedKernel(step, trace.values))
        live.update(r.slot for r in step.reads.values())
    return kept[::-1]


def absorb_producers(steps: list, out_slots: list) -> list:
    """Let each kernel run the matmul (or slice) that feeds only it (an RNN's W_hh h): one
    node per time step instead of two, as a fused LSTM kernel does its matmul and gates."""
    uses = {}
    for step in steps:
        for s in step.ins:
            uses[s] = uses.get(s, 0) + 1
    for s in out_slots:
        uses[s] = uses.get(s, 0) + 1
    made_by = {step.out: step for step in steps if type(step) is Op}
    absorbed = set()
    for step in steps:
        if type(step) is Op:
            continue
        for s in sorted(set(step.ins)):
            producer = made_by.get(s)
            if (
                producer is not None
                and producer.cls in _ABSORBABLE
                and uses[s] == step.ins.count(s)
            ):
                step.absorb(producer)
                absorbed.add(producer.index)
    return [step for step in steps if type(step) is not Op or step.index not in absorbed]


def schedule_frees(steps: list, out_slots: list) -> list:
    """Per step, the slots read for the last time there (dropped after it, as a plain Python
    function drops its locals), except the results."""
    last_read = {}
    for i, step in enumerate(steps):
        for s in step.ins:
            last_read[s] = i
    frees = [[] for _ in steps]
    for s, i in last_read.items():
        if s not in out_slots:
            frees[i].append(s)
    return frees


def show(stage) -> str:
    """Any stage of planning as text: a Trace, a list of steps (Op, Group, FusedKernel), a
    list of frees, a Plan."""
    if not isinstance(stage, list):
        return str(stage)
    lines = []
    for k, step in enumerate(stage):
        if isinstance(step, list):  # schedule_frees: the slots dropped after step k
            text = "drop " + ", ".join(f"s{s}" for s in sorted(step)) if step else "drop nothing"
        else:
            text = step.explain() if isinstance(step, FusedKernel) else str(step)
        first, *rest = text.splitlines()
        lines += [f"  [{k}] {first}"] + [" " * 5 + line for line in rest]
    return "\n".join(lines)


def _debug_plan() -> bool:
    return "plan" in os.environ.get("MINIGRAD_DEBUG", "").split(",")


def _after(name: str, stage, of: str):
    """A pass's result, printed under MINIGRAD_DEBUG=plan, as tinygrad names each rewrite."""
    if _debug_plan():
        print(f"--- mg.fuse({of}) after {name}:\n{show(stage)}", flush=True)
    return stage


class Plan:
    """The trace of one call, cut into replayable steps: ops and fused kernels."""

    def __init__(self, fn, flat, records, result, fused: bool = True):
        name = getattr(fn, "__qualname__", type(fn).__name__)
        self.trace = trace = _after("record", record(name, flat, records, result), name)
        self.name, self.n_args = name, trace.n_args
        self.out_slots, self.out_type = trace.out_slots, trace.out_type
        if fused:
            steps = _after("cut", cut(trace), name)
            steps = _after("keep_live", keep_live(trace, steps), name)
            steps = _after("absorb_producers", absorb_producers(steps, trace.out_slots), name)
        else:  # the traced ops as they are (a scan of the unfused step)
            steps = _after("keep_live", keep_live(trace, list(trace.ops)), name)
        self.steps = steps
        self.frees = _after("schedule_frees", schedule_frees(steps, trace.out_slots), name)
        self.fuses = any(type(step) is not Op for step in self.steps)
        self.template = [None] * len(trace.values)
        self.externals = [(s, trace.values[s], trace.values[s].shape) for s in trace.externals]
        for s, t, _ in self.externals:
            self.template[s] = t

    def run(self, flat):
        env = self.template[:]
        env[: self.n_args] = flat
        for _, t, shape in self.externals:
            if t._data.shape != shape:
                raise RuntimeError(
                    f"mg.fuse({self.name}): a tensor the function captured changed shape from "
                    f"{shape} to {t._data.shape} since it was traced"
                )
        for step, done in zip(self.steps, self.frees, strict=True):
            y = step.cls.apply(*[env[i] for i in step.ins], **step.kwargs)
            if len(step.outs) == 1:
                env[step.outs[0]] = y
            else:
                for s, t in zip(step.outs, y, strict=True):
                    env[s] = t
            for s in done:  # as a plain Python function would, drop what is no longer read
                env[s] = None
        if self.out_type is None:
            return env[self.out_slots[0]]
        return self.out_type(env[s] for s in self.out_slots)

    def explain(self, kernels: bool = False) -> str:
        """The plan as text: its slots, each step, what each fused node computes and reads;
        with kernels=True, also the generated source of each distinct kernel's loops."""
        trace = self.trace
        n_fused = sum(type(step) is not Op for step in self.steps)
        lines = [
            f"mg.fuse plan of {self.name}: {len(trace.ops)} traced ops -> {len(self.steps)} "
            f"steps ({n_fused} fused)",
            "  arguments: " + ", ".join(trace.describe(s) for s in range(trace.n_args)),
        ]
        if trace.externals:
            lines.append("  captured:  " + ", ".join(trace.describe(s) for s in trace.externals))
        sources = {}
        for k, (step, done) in enumerate(zip(self.steps, self.frees, strict=True)):
            lines.append(show([step]).replace("  [0]", f"  [{k}]", 1))
            if isinstance(step, FusedKernel):
                sources.setdefault(step.spec, step)
            if done:
                lines.append("       then drop " + ", ".join(f"s{s}" for s in sorted(done)))
        outs = ", ".join(f"s{s}" for s in self.out_slots)
        lines.append(f"  returns {outs}" if self.out_type is None else f"  returns ({outs})")
        if kernels:
            for spec in sources:
                lines += ["", codegen.forward_source(spec)]
                lines.append(codegen.backward_source(spec, (True,) * len(spec.leaves)))
        return "\n".join(lines)

    __str__ = explain

    def __repr__(self) -> str:
        return f"<Plan of {self.name}: {len(self.steps)} steps>"


__all__ = ["MIN_OPS", "Plan", "Group", "show", "keep_live", "absorb_producers", "schedule_frees"]
