"""A layer's whole time loop as one graph node: the program of one step, scanned over T.

`scan(step, xs, state, extra)` runs `state = step(xs[t], state, extra)` for every t (backwards
in time with reverse=True) and returns every step's first state, stacked in time order, and
the final state: the outputs of one `Scan` node. `step` is an `mg.fuse` function; what runs is
the plan of its trace (plan.py), a program of steps over slots, each step an op or a fused
kernel (`step.cls.apply(*ins, **kwargs)` on the unrolled graph). Here each is made a node and
run on arrays, with no Tensor, view or graph per time step.

Backward is the engine's own reverse step. For t in reverse, each of the program's nodes goes
through `autograd.reverse_step` (version checks, its backward rule) and its input gradients
into a `gradients.Grads` table keyed by slot (ownership, lazy products, reduction to shape):
what `backward()` does with the same nodes on the unrolled graph, driven by the program
instead of the tape. What leaves the node: the gradient of xs as one (T, ...) array; of the
initial state; and of each weight the step reads (an argument or a captured tensor), summed
over the T steps. A weight's T terms from a matrix product stay factors
(gradients.ProductGrad) and become one product over T*B rows. The fused kernel that computes
x_t's gradient writes it into a row buffer the scan lends it; where the kernel's adjoint of
x_t is also a weight product's left factor (the LSTM's `x_t + W_hh h`), the factor is that
same buffer. After the loop, when every step's activations are gone, the rows are copied into
the (T, ...) result and the factors moved with them, so the product reads x's gradient in
place. Each step's activations are released as soon as backward has passed it.

With masks (padded batches: per step None, or a boolean array that is False where a sequence
has ended), a masked step reads zeros for the ended sequences' inputs and carries their state
unchanged, and outputs zero there: selects, never a multiplication by the mask, so whatever
the padding holds (NaN included) contributes exactly nothing, forward or backward. A step
masked everywhere is skipped.

A step is scanned when it maps (x_t, state) to a state of the same shapes and dtype (which
all states share) and neither forward mode (mg.jvp) nor another trace is active; otherwise
`scan` returns None and the caller unrolls the steps (`scan_reason` says why). What mg.fuse
refuses to trace (an op taking a NumPy array) raises here as there.
"""

from __future__ import annotations

import numpy as np

from .. import autograd
from ..autograd import Function
from ..gradients import Grads, ProductGrad, dense, sum_to
from ..tensor import Tensor as _Tensor
from .node import FusedKernel

__all__ = ["scan", "scan_reason", "reason", "Scan"]


def reason(plan, n_states: int) -> str | None:
    """Why a step with this plan cannot be scanned, or None if it can."""
    trace = plan.trace
    if plan.out_type is None or len(plan.out_slots) != n_states:
        return f"the step returns {len(plan.out_slots)} value(s), not a state of {n_states}"
    first = trace.values[1]._data
    for s in list(range(1, 1 + n_states)) + plan.out_slots:
        t = trace.values[s]._data
        if t.shape != first.shape or t.dtype != first.dtype:
            return (
                f"its states differ in shape or dtype ({t.shape} {t.dtype} against "
                f"{first.shape} {first.dtype}): the scan carries them as one kind of array"
            )
    return None


class _Program:
    """A plan as the scan runs it: which of its steps need gradients (from which of the
    step's x, states, other arguments and captured tensors need one), and each slot's shape
    (backward rules return broadcast shapes, reduced here as the engine reduces them)."""

    def __init__(self, plan, n_states: int, requires: list):
        trace = plan.trace
        self.plan, self.steps, self.n_states = plan, plan.steps, n_states
        self.out_slots = plan.out_slots
        self.shapes = [t._data.shape for t in trace.values]
        self.captured = [s for s, _, _ in plan.externals]
        # requires: whether x, each state, each other argument, each captured tensor needs a
        # gradient (empty without grad mode)
        req = [False] * len(trace.values)
        for s, r in zip(list(range(plan.n_args)) + self.captured, requires, strict=False):
            req[s] = r
        self.needs = []  # per step: the tuple of its inputs' needs, or None if it needs none
        for step in self.steps:
            needs = tuple(req[i] for i in step.ins)
            self.needs.append(needs if True in needs else None)
            for s in step.outs:
                req[s] = True in needs
        self.needs_grad = any(needs is not None for needs in self.needs)
        self.outs = [tuple(step.outs) for step in self.steps]  # read per step and time step
        # Backward's walk, decided once: per step that needs gradients, in reverse order, its
        # index, its one output slot (None if several), its output slots, and (position,
        # slot, shape) of each input that needs a gradient.
        self.reverse = [
            (
                k,
                outs[0] if len(outs) == 1 else None,
                outs,
                tuple(
                    (p, s, self.shapes[s])
                    for p, (s, need) in enumerate(zip(step.ins, needs, strict=False))
                    if need
                ),
            )
            for k, (step, needs, outs) in reversed(
                list(enumerate(zip(self.steps, self.needs, self.outs, strict=True)))
            )
            if needs is not None
        ]
        # The fused kernel that backward meets first among the readers of x (slot 0) writes
        # x's gradient straight into its row of the (T, ...) result; the others add to it.
        self.x_writer = self.x_position = None
        readers = [k for k, step in enumerate(self.steps) if 0 in step.ins]
        if readers and isinstance(self.steps[readers[-1]], FusedKernel):
            self.x_writer = readers[-1]
            self.x_position = self.steps[self.x_writer].ins.index(0)

    def forward(self, env: list, save: bool):
        """One time step on the arrays of env (a fresh copy): each step's node, run on
        arrays; the nodes that backward will need, or None."""
        saved = [] if save else None
        for step, needs, outs in zip(self.steps, self.needs, self.outs, strict=True):
            fn = step.cls()
            out = fn.forward(*[env[i] for i in step.ins], **step.kwargs)
            if len(outs) == 1:
                env[outs[0]] = out
            else:
                for s, o in zip(outs, out, strict=True):
                    env[s] = o
            if save:
                fn.needs = needs
                saved.append(fn if needs is not None else None)
        return saved

    def backward(self, grads: Grads, nodes: list, release: bool, row) -> None:
        """One time step in reverse: grads holds the gradients of the step's results on entry
        and of its arguments and captured tensors on return. row: where x's gradient may be
        written (a zeroed row of the (T, ...) gradient), or None."""
        pop, reverse_step = grads.pop, autograd.reverse_step
        for k, out, outs, targets in self.reverse:
            fn = nodes[k]
            if fn is None:
                continue
            if out is not None:
                g = pop(out, None)
                if g is None:
                    continue
                if type(g) is not np.ndarray:
                    g = g.dense()
            else:
                g = tuple(pop(s, None) for s in outs)
                if all(gi is None for gi in g):
                    continue
                g = tuple(None if gi is None else dense(gi) for gi in g)
            if k == self.x_writer and row is not None:
                fn.into = {self.x_position: row}
            in_grads = reverse_step(fn, g, release)
            n = len(in_grads)
            for p, s, shape in targets:
                if p >= n:  # a backward may return fewer gradients than it has inputs
                    break
                ig = in_grads[p]
                if ig is None:
                    continue
                if type(ig) is np.ndarray and ig.shape != shape:
                    ig = sum_to(ig, shape)
                if s in grads:
                    grads.add(s, ig)
                else:  # the first term (a slot taken is never added to again)
                    grads[s] = ig


def _program(plan, n_states: int, requires: tuple) -> _Program:
    programs = plan.__dict__.setdefault("scan_programs", {})
    program = programs.get(requires)
    if program is None:
        program = programs[requires] = _Program(plan, n_states, list(requires))
    return program


def _prepare(step, xs, state, extra, fused: bool):
    """The step's plan for these arguments (traced if new) and its tensor arguments."""
    x0 = _Tensor._wrap(xs._data[0])
    x0._requires_grad = xs._requires_grad
    # Distinct stand-ins: the layers pass one zeros tensor as both h0 and c0.
    states = tuple(_Tensor._wrap(s._data) for s in state)
    args = (x0, states, extra) if extra is not None else (x0, states)
    return step._plan(args, fused)


def _declines() -> str | None:
    if autograd.is_tracing():
        return "inside another mg.fuse trace: the steps become part of it"
    if autograd.is_forward_mode():
        return "forward mode (mg.jvp) is active: the ops run unfused with their tangent rules"
    return None


def scan_reason(step, xs, state, extra=None, fused: bool = True) -> str | None:
    """Why `step.scan(xs, state, extra)` would decline (None if it would not): another trace
    or forward mode active, or a step whose states cannot be carried (see reason)."""
    why = _declines()
    if why is not None:
        return why
    return reason(_prepare(step, xs, tuple(state), extra, fused)[1], len(state))


def scan(step, xs, state, extra, reverse: bool = False, masks=None, fused: bool = True):
    """(outputs (T, *S), *final state) of `state = step(xs[t], state, extra)` over t, as one
    graph node, or None when the step cannot be scanned (then unroll it step by step).

    step: an mg.fuse function of (x_t, state tuple, extra); xs: (T, ...); state: a tuple of
    tensors of one shape S; extra: a tensor or a tuple of tensors (the weights), or None.
    masks: None, or per time step None (every sequence valid) or a boolean array that
    broadcasts against S (a padded batch): where it is False the state is carried unchanged
    and the output is zero; a step where it is False everywhere is not computed.
    fused=False runs the traced ops as they are, without compiled kernels.
    """
    if _declines() is not None:
        return None
    T, S = xs.shape[0], len(state)
    flat, plan = _prepare(step, xs, state, extra, fused)
    if reason(plan, S) is not None:
        return None
    inputs = [xs, *state, *flat[1 + S :]]
    captured = [t for _, t, _ in plan.externals]
    for _, t, shape in plan.externals:  # the kernels index them without bounds checks
        if t._data.shape != shape:
            raise RuntimeError(
                f"mg.fuse({plan.name}): a tensor the function captured changed shape from "
                f"{shape} to {t._data.shape} since it was traced"
            )
    requires = ()
    if autograd.is_grad_enabled():
        fixed = [t._requires_grad for t in flat[1 + S :] + captured]
        any_state = any(t._requires_grad for t in [xs, *state]) or any(fixed)
        requires = (xs._requires_grad, *[any_state] * S, *fixed)
    program = _program(plan, S, requires)
    if masks is not None and all(m is None for m in masks):
        masks = None
    return Scan.apply(*inputs, *captured, program=program, T=T, reverse=bool(reverse), masks=masks)


class Scan(Function):
    """The node: inputs xs, the initial states, the step's other tensor arguments, then the
    tensors its plan captured; outputs every step's first state (T rows, in time order), then
    the final states."""

    def forward(self, *arrays, program=None, T=0, reverse=False, masks=None):
        S, n = program.n_states, program.plan.n_args
        xs, state, fixed = arrays[0], list(arrays[1 : 1 + S]), list(arrays[1 + S : n])
        base = [None] * len(program.shapes)
        for s, a in zip(program.captured, arrays[n:], strict=True):
            base[s] = a
        ys = np.empty((T,) + state[0].shape, dtype=state[0].dtype)
        save = autograd.is_grad_enabled() and program.needs_grad
        nodes = [None] * T
        outs = program.out_slots
        for t in range(T - 1, -1, -1) if reverse else range(T):
            m = None if masks is None else masks[t]
            if m is not None and not m.any():  # every sequence has ended: nothing to compute
                ys[t] = 0
                continue
            env = base[:]
            env[0] = xs[t] if m is None else np.where(m, xs[t], 0)  # padding never read
            env[1 : 1 + S] = state
            env[1 + S : n] = fixed
            nodes[t] = program.forward(env, save)
            if m is not None:  # ended sequences keep their state and output zero
                ys[t] = np.where(m, env[outs[0]], 0)
                state = [np.where(m, env[s], old) for s, old in zip(outs, state, strict=True)]
                continue
            state = [env[s] for s in outs]
            ys[t] = state[0]
            state[0] = ys[t]  # what the next step saves is a row of ys: its products read
            # the rows in place (gradients.ProductGrad)
        self.program, self.T, self.reverse, self.masks = program, T, reverse, masks
        self.n_outputs = 1 + S
        self.x, self.state = (xs.shape, xs.dtype), (state[0].shape, state[0].dtype)
        if save:
            self.saved = nodes
        return (ys, *[np.array(s, copy=True) for s in state])

    def backward(self, g_ys, *g_finals):
        nodes, program, T = self.saved, self.program, self.T
        release = not autograd.is_retaining_graph()
        S, n = program.n_states, program.plan.n_args
        zeros = np.zeros(*self.state)  # the gradient of a state nothing reached
        carry = [zeros if g is None else g for g in g_finals]
        rows = [None] * T if self.needs[0] else None  # x's gradient, step by step
        totals, grads = Grads(), Grads()
        weights = list(range(1 + S, n)) + program.captured
        outs, masks = program.out_slots, self.masks
        for t in range(T) if self.reverse else range(T - 1, -1, -1):
            m, kept = None if masks is None else masks[t], None
            if m is None:
                top = [carry[0] if g_ys is None else carry[0] + g_ys[t], *carry[1:]]
            elif not m.any():  # not computed: the state passed through, the output was zero
                continue
            else:  # the step's results reach the valid sequences; the rest carry on
                top = [np.where(m, c, 0) for c in carry]
                if g_ys is not None:
                    top[0] += np.where(m, g_ys[t], 0)
                kept = [np.where(m, 0, c) for c in carry]
            grads.reset()
            for i, (s, c) in enumerate(zip(outs, top, strict=True)):
                grads.add(s, c, own=(i == 0 and g_ys is not None) or kept is not None)
            row = None  # a buffer lent to the kernel that writes x's gradient
            if rows is not None and program.x_writer is not None:
                row = np.zeros(self.x[0][1:], self.x[1])
            program.backward(grads, nodes[t], release, row)
            if release:  # this step's activations, as soon as they are used
                nodes[t] = None
            if rows is not None:
                g0 = grads.pop(0, None)
                rows[t] = None if g0 is None else dense(g0)
            carry = []
            for i in range(S):
                c = grads.pop(1 + i, None)
                c = zeros if c is None else dense(c)
                carry.append(c if kept is None else c + kept[i])
            for s in weights:
                c = grads.pop(s, None)
                if c is not None:
                    totals.add(s, c)
        results = [totals.take(s) for s in weights]
        gx = None if rows is None else _assembled(rows, results, self.x)
        return [gx, *carry, *results]

    @property
    def name(self) -> str:
        return f"Scan({self.program.plan.name})"


def _assembled(rows: list, results: list, x) -> np.ndarray:
    """x's gradient as one (T, ...) array, its rows copied in one by one and each freed at
    once: allocated only now, when the steps' activations are gone. A row may also be a left
    factor of a weight's product (the LSTM's `x_t + W_hh h` has one adjoint for both, written
    into the buffer lent to its kernel; an unfused step passes one array to both): factors
    that are the whole of a row's buffer move to that row of the result, so the buffer can go
    and the product reads the rows in place."""
    gx = np.empty(*x)
    moves = {}  # id of a row's buffer -> its row of gx
    for t, row in enumerate(rows):
        if row is not None:
            root = row if row.base is None else row.base
            if root.size == row.size:  # the row is all of its buffer: the same numbers
                moves[id(root)] = gx[t]
    for r in results:
        if type(r) is ProductGrad and moves:
            r.relocate(moves)
    for t in range(len(rows)):
        row, rows[t] = rows[t], None
        gx[t] = 0 if row is None else row
    return gx
