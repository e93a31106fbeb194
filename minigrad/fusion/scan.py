"""A layer's whole time loop as one graph node: the plan of one fused step, scanned over T.

`scan(step, xs, state, extra)` runs `state = step(xs[t], state, extra)` for every t (backwards
in time with reverse=True) and returns every step's first state, stacked in time order, and
the final state. `step` is an `mg.fuse` function; what runs is the plan of its trace (plan.py)
replayed on arrays: each op's `forward`, each fused kernel's loop and the matmul it absorbed,
with no graph node, Tensor or view per step. The node saves what each step's ops saved, and
its backward walks the steps in reverse through the same plan, the ops' own `backward`s and
the kernels' generated backward loops: a small reverse-mode engine over the plan's slots.

What leaves the node: the gradient of xs as one (T, ...) array; of the initial state; and of
each weight the step reads (an argument or a captured tensor), summed over the T steps. A
weight's T terms from a matrix product stay factors (autograd.ProductGrad) and become one
product over T*B rows, as the engine does for the unrolled graph. When the step's kernel
writes the same adjoint for x_t and a matmul's output (the LSTM's `x_t + W_hh h`), that product's
left factor is x's (T, ...) gradient itself. Activations are released step by step as backward
passes them (unless the graph is retained), and x's gradient is assembled after the loop, so
the node's backward peaks no higher than the unrolled graph's.

With masks (padded batches: per step None, or a boolean array that is False where a sequence
has ended), a masked step carries the state unchanged where the mask is False and outputs zero
there, as `where(mask, new, old)` after the step would; a step masked everywhere is skipped.

A step is scanned when it maps (x_t, state) to a state of the same shapes and dtype (which
all states share) and neither forward mode (mg.jvp) nor another trace is active; otherwise
`scan` returns None and the caller runs the steps one by one (`scan_reason` says why). What
mg.fuse refuses to trace (an op taking a NumPy array) raises here as there.
"""

from __future__ import annotations

import numpy as np

from .. import autograd
from ..autograd import Function, ProductGrad
from ..tensor import Tensor as _Tensor
from .trace import Op

__all__ = ["scan", "scan_reason", "reason", "Scan"]


def _dense(g):
    return g if type(g) is np.ndarray else g.dense()


def _add(grads: dict, owned: set, s, g) -> None:
    """grads[s] += g; only arrays allocated here (owned) are written into."""
    old = grads.get(s)
    if old is None:
        grads[s] = g
    elif type(old) is ProductGrad and type(g) is ProductGrad:
        if s not in owned:  # extend a copy: the first term may be another edge's object too
            new = ProductGrad(None, None)
            new.lefts, new.rights = list(old.lefts), list(old.rights)
            old = grads[s] = new
            owned.add(s)
        old.extend(g)
    else:
        if type(old) is not np.ndarray or s not in owned:
            old = grads[s] = np.array(_dense(old), copy=True)
            owned.add(s)
        old += _dense(g)


def _ins(step) -> tuple:
    return step.ins if type(step) is Op else step.input_slots


def _whole(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether a and b are both the whole of one contiguous buffer (the same numbers)."""
    root = b if b.base is None else b.base
    return (
        (a if a.base is None else a.base) is root
        and a.size == b.size == root.size
        and a.flags.c_contiguous
        and b.flags.c_contiguous
        and root.flags.c_contiguous
    )


def _joined(grad, rows: list, gx: np.ndarray, times):
    """A weight's ProductGrad whose T left factors are the steps' gradients of x (the
    LSTM's `W_hh h` shares its adjoint with x_t, and the kernel one array for both) becomes
    one product whose left factor is gx, the array those rows are copied into."""
    if type(grad) is not ProductGrad or len(grad.lefts) != len(times):
        return grad
    for left, t in zip(grad.lefts, times, strict=True):
        row = rows[t]
        if type(row) is not np.ndarray or not _whole(left, row):
            return grad
    order = sorted(range(len(times)), key=lambda k: times[k])
    joined = ProductGrad(gx.reshape(-1, gx.shape[-1]), None)
    joined.rights = [np.concatenate([grad.rights[k] for k in order])]
    return joined


def reason(plan, n_states: int) -> str | None:
    """Why a step with this plan cannot be scanned, or None if it can."""
    trace = plan.trace
    if plan.out_type is None or len(plan.out_slots) != n_states:
        return f"the step returns {len(plan.out_slots)} value(s), not a state of {n_states}"
    first = trace.values[1].data
    for s in list(range(1, 1 + n_states)) + plan.out_slots:
        t = trace.values[s].data
        if t.shape != first.shape or t.dtype != first.dtype:
            return (
                f"its states differ in shape or dtype ({t.shape} {t.dtype} against "
                f"{first.shape} {first.dtype}): the scan stacks them into one array"
            )
    return None


class _Program:
    """A plan as the scan runs it: which of its steps need gradients (from which of the
    step's x, states, other arguments and captured tensors need one), and each slot's shape
    (op backwards return broadcast shapes, reduced here as the engine reduces them)."""

    def __init__(self, plan, n_states: int, requires: list):
        trace = plan.trace
        self.plan, self.steps, self.n_states = plan, plan.steps, n_states
        self.out_slots = plan.out_slots
        self.shapes = [t.data.shape for t in trace.values]
        self.captured = [s for s, _, _ in plan.externals]
        # requires: whether x, each state, each other argument, each captured tensor needs a
        # gradient (empty without grad mode)
        req = [False] * len(trace.values)
        for s, r in zip(list(range(plan.n_args)) + self.captured, requires, strict=False):
            req[s] = r
        self.needs = []  # per step: the tuple of its inputs' needs, or None if it needs none
        for step in self.steps:
            needs = tuple(req[i] for i in _ins(step))
            self.needs.append(needs if True in needs else None)
            for s in [step.out] if type(step) is Op else step.out_slots:
                req[s] = True in needs
        self.needs_grad = any(needs is not None for needs in self.needs)
        self.distinct_outs = len(set(self.out_slots)) == len(self.out_slots)

    def forward(self, env: list, save: bool):
        """One step on the arrays of env (a fresh copy); what it saved, or None."""
        saved = [] if save else None
        for step, needs in zip(self.steps, self.needs, strict=True):
            if type(step) is Op:
                fn = step.cls()
                env[step.out] = fn.forward(*[env[i] for i in step.ins], **step.kwargs)
                if save:
                    if needs is not None:
                        fn.needs = needs
                    saved.append(fn if needs is not None else None)
                continue
            y, rec = step.forward([env[i] for i in step.input_slots], save and needs is not None)
            if len(step.out_slots) == 1:
                env[step.out_slots[0]] = y
            else:
                for i, s in enumerate(step.out_slots):
                    env[s] = y[i]
            if save:
                saved.append(rec)
        return saved

    def backward(self, grads: dict, saved: list, owned: set) -> dict:
        """Through one step in reverse: grads maps slots to gradients (the step's results'
        on entry, its arguments' and captured tensors' on return); owned: the slots whose
        arrays may be written into."""
        shapes = self.shapes
        for k in range(len(self.steps) - 1, -1, -1):
            rec, step, needs = saved[k], self.steps[k], self.needs[k]
            if rec is None:
                continue
            if type(step) is Op:
                g = grads.pop(step.out, None)
                if g is None:
                    continue
                in_slots, in_grads = step.ins, rec.backward(_dense(g))
            else:
                outs = [grads.pop(s, None) for s in step.out_slots]
                if all(g is None for g in outs):
                    continue
                if len(outs) == 1:
                    gout = _dense(outs[0])
                else:
                    gout = np.empty((len(outs),) + shapes[step.out_slots[0]], step.dtype)
                    for i, g in enumerate(outs):
                        gout[i] = 0 if g is None else _dense(g)
                in_slots, in_grads = step.input_slots, step.backward(gout, rec, needs)
            for s, need, ig in zip(in_slots, needs, in_grads, strict=False):
                if not need or ig is None:
                    continue
                if type(ig) is np.ndarray and ig.shape != shapes[s]:
                    ig = autograd.sum_to(ig, shapes[s])
                _add(grads, owned, s, ig)
        return grads


def _program(plan, n_states: int, requires: tuple) -> _Program:
    programs = plan.__dict__.setdefault("scan_programs", {})
    program = programs.get(requires)
    if program is None:
        program = programs[requires] = _Program(plan, n_states, list(requires))
    return program


def _prepare(step, xs, state, extra):
    """The step's plan for these arguments (traced if new) and its tensor arguments."""
    x0 = _Tensor._wrap(xs.data[0])
    x0._requires_grad = xs._requires_grad
    # Distinct stand-ins: the layers pass one zeros tensor as both h0 and c0.
    states = tuple(_Tensor._wrap(s.data) for s in state)
    flat, plan = step._plan((x0, states, extra) if extra is not None else (x0, states))
    return flat, plan


def scan_reason(step, xs, state, extra=None) -> str | None:
    """Why `step.scan(xs, state, extra)` would decline (None if it would not): another trace
    or forward mode active, or a step whose states cannot be stacked (see reason)."""
    if autograd.is_tracing():
        return "inside another mg.fuse trace: the steps become part of it"
    if autograd._state.forward is not None:
        return "forward mode (mg.jvp) is active: the ops run unfused with their tangent rules"
    return reason(_prepare(step, xs, tuple(state), extra)[1], len(state))


def scan(step, xs, state, extra, reverse: bool = False, masks=None):
    """(outputs (T, *S), *final state) of `state = step(xs[t], state, extra)` over t, as one
    graph node, or None when the step cannot be scanned (then run it step by step).

    step: an mg.fuse function of (x_t, state tuple, extra); xs: (T, ...); state: a tuple of
    tensors of one shape S; extra: a tensor or a tuple of tensors (the weights), or None.
    masks: None, or per time step None (every sequence valid) or a boolean array that
    broadcasts against S (a padded batch): where it is False the state is carried unchanged
    and the output is zero; a step where it is False everywhere is not computed.
    """
    if autograd.is_tracing() or autograd._state.forward is not None:
        return None
    T, S = xs.shape[0], len(state)
    flat, plan = _prepare(step, xs, state, extra)
    if reason(plan, S) is not None:
        return None
    inputs = [xs, *state, *flat[1 + S :]]
    captured = [t for _, t, _ in plan.externals]
    for _, t, shape in plan.externals:  # the kernels index them without bounds checks
        if t.data.shape != shape:
            raise RuntimeError(
                f"mg.fuse({plan.name}): a tensor the function captured changed shape from "
                f"{shape} to {t.data.shape} since it was traced"
            )
    requires = ()
    if autograd.is_grad_enabled():
        fixed = [t._requires_grad for t in flat[1 + S :] + captured]
        any_state = any(t._requires_grad for t in [xs, *state]) or any(fixed)
        requires = (xs._requires_grad, *[any_state] * S, *fixed)
    program = _program(plan, S, requires)
    if masks is not None and all(m is None for m in masks):
        masks = None
    y = Scan.apply(*inputs, *captured, program=program, T=T, reverse=bool(reverse), masks=masks)
    node = y._node
    if node is not None:  # the version guards are taken: keep only what backward reads
        node.saved = node.saved[0]
    return (y[:T], *[y[T + i] for i in range(S)])


class Scan(Function):
    """The node: inputs xs, the initial states, the step's other tensor arguments, then the
    tensors its plan captured; its output stacks every step's first state (T rows, in time
    order) and then the final states."""

    def forward(self, *arrays, program=None, T=0, reverse=False, masks=None):
        S, n = program.n_states, program.plan.n_args
        xs, state, fixed = arrays[0], list(arrays[1 : 1 + S]), list(arrays[1 + S : n])
        base = [None] * len(program.shapes)
        for s, a in zip(program.captured, arrays[n:], strict=True):
            base[s] = a
        y = np.empty((T + S,) + state[0].shape, dtype=state[0].dtype)
        save = autograd.is_grad_enabled() and program.needs_grad
        saved = [None] * T
        outs = program.out_slots
        for t in range(T - 1, -1, -1) if reverse else range(T):
            m = None if masks is None else masks[t]
            if m is not None and not m.any():  # every sequence has ended: nothing to compute
                y[t] = 0
                continue
            env = base[:]
            env[0] = xs[t]
            env[1 : 1 + S] = state
            env[1 + S : n] = fixed
            saved[t] = program.forward(env, save)
            if m is not None:  # padded sequences keep their state and output zero
                y[t] = np.where(m, env[outs[0]], 0)
                state = [np.where(m, env[s], old) for s, old in zip(outs, state, strict=True)]
                continue
            state = [env[s] for s in outs]
            y[t] = state[0]
            state[0] = y[t]  # what the next step saves is then a view of y, not of a kernel's
            # stacked outputs: those are freed step by step in backward
        for i, s in enumerate(state):
            y[T + i] = s
        self.program, self.T, self.reverse, self.masks = program, T, reverse, masks
        if save:
            # With the inputs and output beside the steps' records, so that apply's version
            # guards cover them; scan() then drops them, keeping the records only.
            self.saved = (saved, [*arrays, y])
        self.x = (xs.shape, xs.dtype)
        return y

    def backward(self, g):
        steps = self.saved
        release = not autograd.is_retaining_graph()
        program, T = self.program, self.T
        S, n = program.n_states, program.plan.n_args
        carry = [g[T + i] for i in range(S)]
        # Each step's gradient of x as its own array, joined into one at the end: the
        # (T, ...) array is then allocated once the steps' activations are gone.
        rows = [None] * T if self.needs[0] else None
        totals, owned = {}, set()
        weights = list(range(1 + S, n)) + program.captured
        outs = program.out_slots
        times = range(T) if self.reverse else range(T - 1, -1, -1)
        masks = self.masks
        for t in times:
            m, kept = None if masks is None else masks[t], None
            if m is None:  # a new array: the only one the step may write into
                top = [carry[0] + g[t], *carry[1:]]
            elif not m.any():  # not computed: the state passed through, the output was zero
                continue
            else:  # the step's results reach the valid sequences; the rest carry on
                top = [np.where(m, c, 0) for c in carry]
                top[0] += np.where(m, g[t], 0)
                kept = [np.where(m, 0, c) for c in carry]
            if program.distinct_outs:
                grads = dict(zip(outs, top, strict=True))
                mine = {outs[0]} if m is None else set(outs)
            else:
                grads, mine = {}, set()
                for s, c in zip(outs, top, strict=True):
                    _add(grads, mine, s, c)
            grads = program.backward(grads, steps[t], mine)
            if release:  # this step's activations, as soon as they are used
                steps[t] = None
            if rows is not None:
                rows[t] = grads.pop(0, None)
            carry = []
            for i in range(S):
                c = grads.pop(1 + i, None)
                c = np.zeros_like(g[T]) if c is None else _dense(c)
                carry.append(c if kept is None else c + kept[i])
            for s in weights:
                c = grads.pop(s, None)
                if c is not None:
                    _add(totals, owned, s, c)
        results = [totals.pop(s, None) for s in weights]
        gx = None
        if rows is not None:
            gx = np.empty(*self.x)
            results = [_joined(r, rows, gx, times) for r in results]
            for t in range(T):
                row, rows[t] = rows[t], None
                if row is None:
                    gx[t] = 0
                else:
                    gx[t] = _dense(row)
        return [gx, *carry, *results]

    @property
    def name(self) -> str:
        return f"Scan({self.program.plan.name})"
