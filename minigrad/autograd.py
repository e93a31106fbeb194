"""The graph node and the backward engine.

A node is a `Function` instance: it records the nodes (or leaf tensors) its inputs came from,
the shapes of those inputs, and in `saved` the arrays its backward needs. It never references
the tensor it produced, so the graph has no cycles and is freed by reference counting alone.

`backward()` orders the graph with Kahn's algorithm on an explicit stack (never recursion), so
an RNN unrolled for a million steps differentiates in time linear in the number of nodes.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np


class _State(threading.local):
    grad_enabled = True
    anomaly = False
    tracer = None  # a list while minigrad.fusion records the ops of a function
    forward = None  # while mg.jvp runs: a callable giving each op's output its tangent
    retain_graph = False  # while backward runs: whether it keeps the nodes' saved arrays


_state = _State()


def is_grad_enabled() -> bool:
    return _state.grad_enabled


def is_retaining_graph() -> bool:
    """Inside a node's backward: whether this backward keeps saved arrays for another one (a
    node that frees its activations as it goes, fusion's Scan, must not if so)."""
    return _state.retain_graph


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


def sum_to(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Reduce a broadcast gradient back to an operand's shape (the one place this is done)."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, n in enumerate(shape) if n == 1 and grad.shape[i + lead] != 1
    )
    grad = grad.sum(axis=axes, keepdims=True) if axes else grad
    return grad.reshape(shape)


def _check_finite(arr: np.ndarray, what: str) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = "NaN" if np.isnan(arr).any() else "inf"
        raise FloatingPointError(f"anomaly: {what} produced {bad}")


wrap_output = None  # set by tensor.py to Tensor._wrap (tensor.py imports this module)


# ----- version counters: in-place writes must not change what a node saved for backward -------
# Each tensor's `_vc` is a list [count, shared]: `count` goes up at every in-place write,
# `shared` is set once a view (same memory, another tensor) exists. Views share the list, so a
# write through either bumps both, as with PyTorch's version counter.


def version_counter(t) -> list:
    vc = t._vc
    if vc is None:
        vc = t._vc = [0, False]
    return vc


def bump_version(t) -> None:
    """Record an in-place write into t's memory (only counted once something guards it)."""
    vc = t._vc
    if vc is not None:
        vc[0] += 1


def _root(a):
    return a if a.base is None else a.base


def share_version_with_view(tensors, result) -> None:
    """`result` is a view of an input's memory: give it that input's counter."""
    root = _root(result.data)
    for t in tensors:
        if _root(t.data) is root:
            vc = version_counter(t)
            vc[1] = True
            result._vc = vc
            return


def guard_saved(saved, tensors, result) -> tuple | None:
    """(counter, version now, input index or -1 for the output) for each input (or the output)
    whose memory `saved` holds. Runs for every recorded node, hence the plain loops."""
    roots = []
    for a in saved if type(saved) in (tuple, list) else (saved,):
        if type(a) is np.ndarray:
            roots.append(a if a.base is None else a.base)
        elif type(a) in (tuple, list):
            roots += [b if b.base is None else b.base for b in a if type(b) is np.ndarray]
    guards = []
    # The inputs by position, then the output as -1 (its version is 0: it was just made).
    for i, t in enumerate(tensors) if result is None else (*enumerate(tensors), (-1, result)):
        d = t.data
        r = d if d.base is None else d.base
        for x in roots:
            if x is r:
                vc = t._vc
                if vc is None:
                    vc = t._vc = [0, False]
                guards.append((vc, vc[0], i))
                break
    return tuple(guards) if guards else None


def _check_versions(node) -> None:
    for vc, seen, i in node.versions:
        if vc[0] != seen:
            what = "its output" if i < 0 else f"input {i} (shape {node.shapes[i]})"
            raise RuntimeError(
                f"one of the variables needed for gradient computation has been modified by an "
                f"in-place operation: {what} of {node.name} is at version {vc[0]}, it was at "
                f"version {seen} when {node.name} saved it. Write the new value into a new "
                "tensor (x = x + 1 instead of x += 1, or clone it before the in-place write), "
                "or run the in-place update (an optimizer step) after backward()."
            )


class Function:
    """One op: `forward` on arrays and `backward` from the output gradient, side by side.

    Subclasses set `self.saved` to what backward needs (freed after backward runs) and may set
    other small attributes (axes, shapes). `backward(g)` returns one gradient (or None) per
    input, shaped like the output's broadcast; the engine reduces it to the input's shape.
    """

    # Defaults shared by every node (a recorded node sets inputs, shapes and needs itself).
    saved = None
    versions = None  # (counter, version when saved, what) per tensor whose data `saved` holds
    hooks = None  # tensor hooks registered on this node's output
    retained = None  # weakref to the output tensor, if retain_grad() was called on it
    freed = False

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
        out = fn.forward(*[t.data for t in tensors], **kwargs)
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
        if state.grad_enabled:
            # Tuples of bools and ints: the garbage collector stops tracking them.
            needs = tuple([t._requires_grad for t in tensors])
            if True in needs:
                # A leaf is its own accumulation target; a computed tensor hands over its node.
                fn.inputs = [
                    (t if t._node is None else t._node) if n else None
                    for t, n in zip(tensors, needs, strict=True)
                ]
                fn.shapes = tuple([t.data.shape for t in tensors])
                fn.needs = needs
                if fn.saved is not None:
                    fn.versions = guard_saved(fn.saved, tensors, result)
                result._requires_grad = True
                result._node = fn
        return result


def _collect(root: Function) -> dict:
    """Count, for every node and leaf reachable from root, how many consumers will send it a
    gradient: each is processed once that many have arrived."""
    pending = {root: 0}
    stack = [root]
    while stack:
        node = stack.pop()
        for parent in node.inputs:
            if parent is None:
                continue
            if parent in pending:
                pending[parent] += 1
            else:
                pending[parent] = 1
                if isinstance(parent, Function):
                    stack.append(parent)
    return pending


class SparseGrad:
    """A gradient that is zero except at `index` (what getitem's backward produces).

    The engine adds it straight into the operand's gradient buffer, so T reads x[t] of a
    (T, ...) tensor cost one buffer and T slice additions, not T full-size zero arrays.
    `scatter(out, index, values)` adds values into out at index.
    """

    __slots__ = ("shape", "index", "values", "scatter")

    def __init__(self, shape, index, values, scatter):
        self.shape, self.index, self.values, self.scatter = shape, index, values, scatter

    def add_into(self, out: np.ndarray) -> np.ndarray:
        self.scatter(out, self.index, self.values)
        return out

    def dense(self, dtype=None) -> np.ndarray:
        return self.add_into(np.zeros(self.shape, dtype=dtype or self.values.dtype))


class ProductGrad:
    """A gradient sum_i a_i^T @ b_i, kept as factors until every term has arrived.

    A weight used at each of T steps gets T gradient terms g_t^T x_t of B rows each; stacking
    the factors turns them into one product over T*B rows, which BLAS runs far faster than T
    thin products and T additions of a full weight-sized array.
    """

    __slots__ = ("lefts", "rights")

    def __init__(self, left, right):
        self.lefts, self.rights = [left], [right]

    def extend(self, other: ProductGrad) -> None:
        self.lefts += other.lefts
        self.rights += other.rights

    def dense(self, dtype=None) -> np.ndarray:
        if len(self.lefts) == 1:
            out = self.lefts[0].T @ self.rights[0]
        else:
            out = np.concatenate(self.lefts).T @ np.concatenate(self.rights)
        return out if dtype is None else out.astype(dtype, copy=False)


_LAZY = (SparseGrad, ProductGrad)


def _dense(g, dtype=None) -> np.ndarray:
    """A gradient as a plain array that the engine may write into."""
    if type(g) in _LAZY:
        return g.dense(dtype)
    return np.array(g, dtype=dtype, copy=True)


def _add_into(buf: np.ndarray, g) -> None:
    """buf += g, for each kind of gradient the engine passes around."""
    if type(g) is SparseGrad:
        g.add_into(buf)
    elif type(g) is ProductGrad:
        buf += g.dense()
    else:
        buf += g


def _merge(grads: dict, owned: set, key, g) -> None:
    """Add gradient g into grads[key]; only engine-allocated (owned) buffers are written into."""
    buf = grads.get(key)
    if buf is None:
        grads[key] = g  # may alias another edge's gradient: not ours to write into yet
        return
    if type(buf) is ProductGrad and type(g) is ProductGrad:
        buf.extend(g)
        return
    if type(buf) is not np.ndarray or key not in owned:
        buf = _dense(buf)
        grads[key] = buf
        owned.add(key)
    _add_into(buf, g)


class PostAccumulateGradHook:
    """A leaf's hook(tensor), called once its `.grad` holds the whole gradient of a backward."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn


def _hook_name(hook) -> str:
    return getattr(hook, "__qualname__", None) or repr(hook)


def run_hook(hook, grad: np.ndarray, what: str) -> np.ndarray:
    """A tensor hook may return a new gradient: it must keep the shape (and be an array)."""
    new = hook(grad)
    if new is None:
        return grad
    new = np.asarray(getattr(new, "data", new))
    if new.shape != grad.shape:
        raise RuntimeError(
            f"hook {_hook_name(hook)} registered on {what} returned a gradient of shape "
            f"{new.shape}; it must keep the gradient's shape {grad.shape}"
        )
    return new if new.dtype == grad.dtype else new.astype(grad.dtype)


def _accumulate_leaf(leaf, grad) -> None:
    dtype = leaf.data.dtype
    hooks = leaf._hooks
    if hooks:
        grad = grad if type(grad) is np.ndarray else _dense(grad, dtype)
        for hook in hooks:
            if type(hook) is not PostAccumulateGradHook:
                grad = run_hook(hook, grad, f"a leaf tensor of shape {leaf.data.shape}")
    if leaf.grad is None:
        # A private copy: the same array may be another edge's gradient, and .grad is added into.
        leaf.grad = _dense(grad, dtype)
    else:
        _add_into(leaf.grad, grad)
    if hooks:
        for hook in hooks:
            if type(hook) is PostAccumulateGradHook:
                hook.fn(leaf)


def _edge_without_gradient(start, pending: dict, grads: dict, ready: list) -> None:
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
            if node in grads:
                ready.append(node)
            elif isinstance(node, Function):
                stack.extend(p for p in node.inputs if p is not None)


def run_backward(tensor, grad: np.ndarray, retain_graph: bool = False) -> None:
    previous = _state.retain_graph
    _state.retain_graph = retain_graph
    try:
        _run_backward(tensor, grad, retain_graph)
    finally:
        _state.retain_graph = previous


def _run_backward(tensor, grad: np.ndarray, retain_graph: bool) -> None:
    node = tensor._node
    if node is None:
        _accumulate_leaf(tensor, grad)
        return
    pending = _collect(node)
    grads = {node: grad}  # node or leaf tensor -> its gradient so far
    owned = set()  # keys whose buffer in `grads` the engine allocated
    ready = [node]  # nodes and leaves all of whose gradient has arrived
    anomaly = _state.anomaly
    while ready:
        node = ready.pop()
        g = grads.pop(node)
        if not isinstance(node, Function):
            # A leaf, complete once its last consumer has run (a weight shared by T steps has
            # its T terms summed first): hooks, .grad, then post-accumulate hooks, which may
            # start communicating this gradient while backward goes on.
            _accumulate_leaf(node, g)
            continue
        if type(g) in _LAZY:
            g = g.dense()
        if node.freed:
            raise RuntimeError(
                f"backward through {node.name} a second time: its saved arrays were freed by "
                "the first backward(); pass retain_graph=True to the first call to keep them"
            )
        if node.hooks:
            for hook in node.hooks:
                g = run_hook(hook, g, f"the output of {node.name}")
        if node.retained is not None:
            kept = node.retained()
            if kept is not None:
                kept.grad = g.copy() if kept.grad is None else kept.grad + g
        if node.versions is not None:
            _check_versions(node)
        in_grads = node.backward(g)
        if not retain_graph:
            node.saved = None  # release the activations as soon as they are used
            node.freed = True
        for parent, shape, ig in zip(node.inputs, node.shapes, in_grads, strict=False):
            if parent is None:
                continue
            if ig is None:  # no gradient on this edge; the parent must still count it as done
                _edge_without_gradient(parent, pending, grads, ready)
                continue
            lazy = type(ig) in _LAZY
            if not lazy and ig.shape != shape:
                ig = sum_to(ig, shape)
            if anomaly:
                ig = ig.dense() if lazy else ig
                _check_finite(ig, f"backward of {node.name}")
            if parent in grads:
                _merge(grads, owned, parent, ig)
            else:
                grads[parent] = ig  # may alias another edge's gradient: not ours to write into
            left = pending[parent] - 1
            pending[parent] = left
            if left == 0:
                ready.append(parent)
