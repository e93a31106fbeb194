"""The graph node and the backward engine.

A node is a `Function` instance: it records the nodes (or leaf tensors) its inputs came from,
the shapes of those inputs, and in `saved` the arrays its backward needs. It never references
the tensors it produced, so the graph has no cycles and is freed by reference counting alone.
A node may have several outputs (a fused kernel's, a scan's outputs and final states, a
checkpointed segment's): its forward returns a tuple, and its backward takes one gradient per
output (None for an output no gradient reached) once all of them have arrived.

`backward()` orders the graph with Kahn's algorithm on an explicit stack (never recursion), so
an RNN unrolled for a million steps differentiates in time linear in the number of nodes. Each
node runs `reverse_step` and its input gradients go into a `gradients.Grads` table: the same
step and the same table that the scan over time (fusion/scan.py) and checkpointing run.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from .gradients import (
    _LAZY,
    Grads,
    ProductGrad,
    SparseGrad,
    add_into,
    dense,
    dense_copy,
    sum_to,
)
from .versions import (
    bump_version,
    check_versions,
    guard,
    share_version_with_view,
    version_counter,
)

__all__ = [
    "Function",
    "ProductGrad",
    "SparseGrad",
    "Grads",
    "sum_to",
    "bump_version",
    "version_counter",
    "share_version_with_view",
    "reverse_step",
    "run_backward",
    "grad",
]


class _State(threading.local):
    grad_enabled = True
    anomaly = False
    tracer = None  # a list while minigrad.fusion records the ops of a function
    forward = None  # while mg.jvp runs: a callable giving each op's output its tangent
    retain_graph = False  # while backward runs: whether it keeps the nodes' saved arrays
    reads = None  # while a checkpointed segment runs: the _Reads of the tensors it reads


_state = _State()


def is_grad_enabled() -> bool:
    return _state.grad_enabled


def is_retaining_graph() -> bool:
    """Inside a node's backward: whether this backward keeps saved arrays for another one (a
    node that frees its activations as it goes, fusion's Scan, must not if so)."""
    return _state.retain_graph


def is_forward_mode() -> bool:
    """Whether mg.jvp is propagating tangents through the ops applied now."""
    return _state.forward is not None


def is_tracing() -> bool:
    """Whether the ops applied now are being recorded (see `tracing`)."""
    return _state.tracer is not None


@contextlib.contextmanager
def tracing(records: list):
    """Append (op class, input tensors, kwargs, output tensor) to `records` for every op
    applied inside, in order: the trace `mg.fuse` plans from. Traces do not nest."""
    if _state.tracer is not None:
        raise RuntimeError("autograd.tracing: already recording a trace")
    _state.tracer = records
    try:
        yield records
    finally:
        _state.tracer = None


@contextlib.contextmanager
def _grad_mode(enabled: bool):
    previous = _state.grad_enabled
    _state.grad_enabled = enabled
    try:
        yield
    finally:
        _state.grad_enabled = previous


def no_grad():
    """Context manager: ops inside record no graph (evaluation, optimizer updates)."""
    return _grad_mode(False)


def enable_grad():
    return _grad_mode(True)


@contextlib.contextmanager
def detect_anomaly(enabled: bool = True):
    """Raise at the first op whose forward or backward produces NaN or inf, naming it."""
    previous = _state.anomaly
    _state.anomaly = enabled
    try:
        yield
    finally:
        _state.anomaly = previous


def set_detect_anomaly(enabled: bool) -> None:
    _state.anomaly = bool(enabled)


def _check_finite(arr: np.ndarray, what: str) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = "NaN" if np.isnan(arr).any() else "inf"
        raise FloatingPointError(f"anomaly: {what} produced {bad}")


wrap_output = None  # set by tensor.py to Tensor._wrap (tensor.py imports this module)


class Function:
    """One op: `forward` on arrays and `backward` from the output gradient, side by side.

    Subclasses set `self.saved` to what backward needs (freed after backward runs) and may set
    other small attributes (axes, shapes). `backward(g)` returns one gradient (or None) per
    input, shaped like the output's broadcast; the engine reduces it to the input's shape. A
    forward that returns a tuple makes a node of several outputs: `backward(*gs)` then gets
    one gradient per output, None for those no gradient reached.
    """

    # Defaults shared by every node (a recorded node sets inputs, shapes and needs itself).
    saved = None
    versions = None  # (counter, version when saved, what) per tensor whose data `saved` holds
    hooks = None  # (output index, hook) for each tensor hook registered on an output
    retained = None  # (output index, weakref) for each output that called retain_grad()
    freed = False
    n_outputs = 1
    indices = None  # which output of its node each input is, if any is not output 0

    def forward(self, *arrays):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    @property
    def name(self) -> str:
        return type(self).__name__

    @classmethod
    def apply(cls, *tensors, **kwargs):
        # The per-op hot path: kept to plain loops and attribute reads.
        fn = cls()
        out = fn.forward(*[t._data for t in tensors], **kwargs)
        if type(out) is tuple:
            return _apply_several(fn, tensors, kwargs, out)
        state = _state
        if state.anomaly:
            _check_finite(out, f"forward of {fn.name}")
        result = wrap_output(out)
        if state.forward is not None:  # forward mode (minigrad/forward_ad.py)
            state.forward(fn, tensors, result)
        if out.base is not None:
            share_version_with_view(tensors, result)
        if state.tracer is not None:
            state.tracer.append((cls, tensors, kwargs, result))
        if state.reads is not None:
            state.reads.note(tensors, (result,))
        if state.grad_enabled:
            _record(fn, tensors, (result,))
        return result


def _record(fn, tensors, results) -> None:
    """Make fn the node of `results` if any input needs a gradient."""
    # Tuples of bools and ints: the garbage collector stops tracking them.
    needs = tuple([t._requires_grad for t in tensors])
    if True not in needs:
        return
    # A leaf is its own accumulation target; a computed tensor hands over its node.
    fn.inputs = [
        (t if t._node is None else t._node) if n else None
        for t, n in zip(tensors, needs, strict=True)
    ]
    indices = tuple([t._index for t in tensors])
    if any(indices):
        fn.indices = indices
    fn.shapes = tuple([t._data.shape for t in tensors])
    fn.needs = needs
    if fn.saved is not None:
        fn.versions = guard(fn.saved, tensors, results)
    for i, r in enumerate(results):
        r._requires_grad = True
        r._node = fn
        r._index = i


def _apply_several(fn, tensors, kwargs, outs):
    """Function.apply for a forward that returned a tuple: one tensor per output."""
    state = _state
    fn.n_outputs = len(outs)
    results = tuple(wrap_output(o) for o in outs)
    for out, result in zip(outs, results, strict=True):
        if state.anomaly:
            _check_finite(out, f"forward of {fn.name}")
        if out.base is not None:
            share_version_with_view(tensors, result)
    if state.forward is not None and state.forward.carries(*tensors):
        raise NotImplementedError(
            f"jvp: {fn.name} has several outputs and no tangent rule; forward mode runs the "
            "plain ops it is made of (mg.fuse and the scan step aside under mg.jvp)"
        )
    if state.tracer is not None:
        raise TypeError(f"mg.fuse cannot trace {fn.name}, an op with several outputs")
    if state.reads is not None:
        state.reads.note(tensors, results)
    if state.grad_enabled:
        _record(fn, tensors, results)
    return results


class _Reads:
    """The tensors a segment of code reads without computing them (its parameters, its
    inputs), with their versions: what a checkpointed segment will read again in backward."""

    def __init__(self):
        self.made = set()  # ids of tensors the segment computed (alive while it runs)
        self.tensors = {}  # id -> tensor, in order of first read

    def note(self, tensors, results) -> None:
        made = self.made
        for t in tensors:
            if id(t) not in made and id(t) not in self.tensors:
                self.tensors[id(t)] = t
        made.update(id(r) for r in results)


@contextlib.contextmanager
def recording_reads():
    """Collect, in a `_Reads`, every tensor the ops applied inside read but did not make."""
    previous, reads = _state.reads, _Reads()
    _state.reads = reads
    try:
        yield reads
    finally:
        _state.reads = previous


class PostAccumulateGradHook:
    """A leaf's hook(tensor), called once its `.grad` holds the whole gradient of a backward."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn


def _hook_name(hook) -> str:
    return getattr(hook, "__qualname__", None) or repr(hook)


def run_hook(hook, grad: np.ndarray, what: str) -> np.ndarray:
    """hook(grad as a tensor) may return a new gradient (a tensor or an array of its shape)."""
    new = hook(wrap_output(grad))
    if new is None:
        return grad
    new = np.asarray(new)
    if new.shape != grad.shape:
        raise RuntimeError(
            f"hook {_hook_name(hook)} registered on {what} returned a gradient of shape "
            f"{new.shape}; it must keep the gradient's shape {grad.shape}"
        )
    return new if new.dtype == grad.dtype else new.astype(grad.dtype)


def _accumulate_leaf(leaf, grad) -> None:
    dtype = leaf._data.dtype
    hooks = leaf._hooks
    if hooks:
        grad = dense(grad, dtype)
        for hook in hooks:
            if type(hook) is not PostAccumulateGradHook:
                grad = run_hook(hook, grad, f"a leaf tensor of shape {leaf._data.shape}")
    if leaf._grad is None:
        # A private copy: the same array may be another edge's gradient, and .grad is added into.
        leaf._grad = wrap_output(dense_copy(grad, dtype))
    else:
        add_into(leaf._grad._data, grad)
    if hooks:
        for hook in hooks:
            if type(hook) is PostAccumulateGradHook:
                hook.fn(leaf)


def reverse_step(node, g, release: bool):
    """One node's backward: the one reverse step of minigrad, which the tape below, the scan
    over time and checkpointing all run. g: the output's gradient (a tuple of them, None for
    unused outputs, for a node of several). Checks that nothing the node saved was written in
    place since, calls its backward, and releases its saved arrays unless told not to.
    Returns its inputs' gradients (arrays or lazy gradients, broadcast shapes allowed)."""
    if node.freed:
        raise RuntimeError(
            f"backward through {node.name} a second time: its saved arrays were freed by "
            "the first backward(); pass retain_graph=True to the first call to keep them"
        )
    if node.versions is not None:
        check_versions(node)
    in_grads = node.backward(g) if node.n_outputs == 1 else node.backward(*g)
    if release:
        node.saved = None  # release the activations as soon as they are used
        node.freed = True
    return in_grads


def key_of(t):
    """Where a tensor's gradient is summed: the leaf itself, its node, or (node, output)."""
    node = t._node
    if node is None:
        return t
    return node if node.n_outputs == 1 else (node, t._index)


def _collect(roots, stop) -> dict:
    """Count, for every node and leaf reachable from the roots, how many consumers will send
    it a gradient: each is processed once that many have arrived. Nodes in `stop` are not
    walked through (their gradient is wanted, not their inputs')."""
    pending = dict.fromkeys(roots, 0)
    stack = [r for r in roots if isinstance(r, Function) and r not in stop]
    while stack:
        node = stack.pop()
        for parent in node.inputs:
            if parent is None:
                continue
            if parent in pending:
                pending[parent] += 1
            else:
                pending[parent] = 1
                if isinstance(parent, Function) and parent not in stop:
                    stack.append(parent)
    return pending


def _edge_without_gradient(start, pending: dict, arrived: set, ready: list, stop) -> None:
    """A consumer of `start` sent it no gradient (its backward returned None for it).

    Count the edge as done, or `start` would wait forever and gradients from its other
    consumers would never flow on. A node none of whose consumers sent a gradient passes the
    same on to its own inputs (iteratively, like the rest of the engine).
    """
    stack = [start]
    while stack:
        node = stack.pop()
        pending[node] -= 1
        if pending[node] == 0:
            if node in arrived:
                ready.append(node)
            elif isinstance(node, Function) and node not in stop:
                stack.extend(p for p in node.inputs if p is not None)


def _node_gradient(node, grads: Grads):
    """The whole gradient of a node's output(s), taken from the table."""
    if node.n_outputs == 1:
        g = grads.take(node)
        return g.dense() if type(g) in _LAZY else g
    gs = tuple(grads.take((node, i)) for i in range(node.n_outputs))
    return tuple(g.dense() if type(g) in _LAZY else g for g in gs)


def _run_hooks(node, g):
    """Tensor hooks and retain_grad() of the node's outputs, before its backward."""
    gs = list(g) if node.n_outputs > 1 else [g]
    for i, hook in node.hooks or ():
        if gs[i] is not None:
            gs[i] = run_hook(hook, gs[i], f"the output of {node.name}")
    for i, ref in node.retained or ():
        kept = ref()
        if kept is not None and gs[i] is not None:
            g = gs[i] if kept._grad is None else kept._grad._data + gs[i]
            kept._grad = wrap_output(g.copy() if g is gs[i] else g)
    return tuple(gs) if node.n_outputs > 1 else gs[0]


def run_backward(tensors, grads, retain_graph: bool = False, capture=None):
    """Backpropagate grads[i] from tensors[i] through the graph to every leaf's `.grad`.

    With `capture` (a list of tensors), nothing is written to any `.grad`: the gradients that
    reach those tensors are returned instead, in order (None where none arrived), and the walk
    stops at them, as `torch.autograd.grad` does."""
    previous = _state.retain_graph
    _state.retain_graph = retain_graph
    try:
        return _run_backward(list(tensors), list(grads), retain_graph, capture)
    finally:
        _state.retain_graph = previous


def grad(outputs, inputs, grad_outputs=None, retain_graph: bool = False) -> tuple:
    """The gradients of outputs (weighted by grad_outputs, ones by default) with respect to
    inputs, as arrays (None for an input the outputs do not depend on); no `.grad` changes."""
    outputs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
    if grad_outputs is None:
        grad_outputs = [np.ones_like(o._data) for o in outputs]
    inputs = list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]
    return tuple(run_backward(outputs, grad_outputs, retain_graph, capture=inputs))


def _run_backward(tensors, seeds, retain_graph: bool, capture):
    grads = Grads()  # node, (node, output) or leaf -> its gradient so far
    arrived = set()  # nodes and leaves some gradient has reached
    for t, g in zip(tensors, seeds, strict=True):
        if t._requires_grad:
            grads.add(key_of(t), g)
            arrived.add(t if t._node is None else t._node)
    wanted = {}  # captured key -> its positions in capture
    for i, t in enumerate(capture or ()):
        wanted.setdefault(key_of(t), []).append(i)
    stop = {k if type(k) is not tuple else k[0] for k in wanted}
    found = [None] * len(capture or ())
    roots = list(dict.fromkeys(arrived))
    pending = _collect(roots, stop)
    ready = [r for r in roots if pending[r] == 0]  # all of whose gradient has arrived
    anomaly, release = _state.anomaly, not retain_graph
    while ready:
        node = ready.pop()
        if node in stop or not isinstance(node, Function):
            _finish(node, grads, wanted, found, capture)
            continue
        g = _node_gradient(node, grads)
        if node.hooks is not None or node.retained is not None:
            g = _run_hooks(node, g)
        in_grads = reverse_step(node, g, release)
        indices = node.indices
        edges = zip(node.inputs, node.shapes, in_grads, strict=False)
        for k, (parent, shape, ig) in enumerate(edges):
            if parent is None:
                continue
            if ig is None:  # no gradient on this edge; the parent must still count it as done
                _edge_without_gradient(parent, pending, arrived, ready, stop)
                continue
            if type(ig) is np.ndarray and ig.shape != shape:
                ig = sum_to(ig, shape)
            if anomaly:
                _check_finite(dense(ig), f"backward of {node.name}")
            if isinstance(parent, Function) and parent.n_outputs > 1:
                grads.add((parent, 0 if indices is None else indices[k]), ig)
            else:
                grads.add(parent, ig)
            arrived.add(parent)
            left = pending[parent] - 1
            pending[parent] = left
            if left == 0:
                ready.append(parent)
    return found if capture is not None else None


def _finish(end, grads: Grads, wanted: dict, found: list, capture) -> None:
    """A leaf (or a captured node) all of whose gradient has arrived."""
    if capture is None:
        # A leaf, complete once its last consumer has run (a weight shared by T steps has its
        # T terms summed first): hooks, .grad, then post-accumulate hooks, which may start
        # communicating this gradient while backward goes on.
        _accumulate_leaf(end, grads.take(end))
        return
    keys = (
        [end]
        if not isinstance(end, Function) or end.n_outputs == 1
        else [(end, i) for i in range(end.n_outputs)]
    )
    for key in keys:
        g = grads.take(key)
        for i in wanted.get(key, ()) if g is not None else ():
            found[i] = dense_copy(g, capture[i]._data.dtype)
