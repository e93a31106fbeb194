"""Forward mode: `mg.jvp`, the directional derivative computed alongside the forward pass.

While `jvp` runs, the engine hands every op it applies to a `_Tangents` (one check of
`autograd._state.forward` in `Function.apply`). If any input of the op carries a tangent, the
op's own rule, `jvp(out, *tangents)` next to its forward and backward in `minigrad/ops/`,
gives the output's tangent. Nothing is recorded for later: the tangent of h_t exists as soon
as h_t does, which is what real-time recurrent learning needs (`models/rtrl.py`).

Tangents attach to tensor objects, not to argument positions: a primal that `fn` also reads
from a closure (a module's parameter) carries its tangent there too. Internally each tangent
has a leading axis of K directions (K = 1 for a plain jvp), so `batched=True` pushes many
directions through one forward pass — a Jacobian's columns, or RTRL's sensitivity matrices.

Functions decorated with `mg.fuse` run unfused while tangents are propagated: a fused node
has no tangent rule of its own, and the plain ops it replaces each have one.
"""

from __future__ import annotations

import weakref

import numpy as np

from . import autograd
from .tensor import Tensor

__all__ = ["jvp"]


class _Tangents:
    """The tangent of each live tensor in one jvp call, keyed by identity. Entries leave with
    their tensors (a weakref callback), so an unrolled loop does not keep every step alive."""

    def __init__(self):
        self.table = {}

    def set(self, tensor, tangent) -> None:
        key, table = id(tensor), self.table
        ref = weakref.ref(tensor, lambda _, key=key: table.pop(key, None))
        table[key] = (ref, tangent)

    def get(self, tensor):
        entry = self.table.get(id(tensor))
        return None if entry is None else entry[1]

    def carries(self, *tensors) -> bool:
        return any(id(t) in self.table for t in tensors)

    def __call__(self, fn, tensors, result) -> None:
        table = self.table
        if not any(id(t) in table for t in tensors) or result._data.dtype.kind != "f":
            return
        rule = getattr(fn, "jvp", None)
        if rule is None:
            raise NotImplementedError(
                f"jvp: the op {fn.name} has no tangent rule (a `jvp` method next to its forward "
                "and backward), so forward mode cannot pass through it; compute this derivative "
                "with mg.vjp or mg.grad instead"
            )
        tangent = rule(result._data, *[self.get(t) for t in tensors])
        self.set(result, _conform(tangent, result._data))


def _conform(tangent, out):
    """A rule's tangent as (K,) + out.shape in out's dtype (rules may leave broadcasting)."""
    shape = tangent.shape[:1] + out.shape
    if tangent.ndim < len(shape):
        lead = (1,) * (len(shape) - tangent.ndim)
        tangent = tangent.reshape(tangent.shape[:1] + lead + tangent.shape[1:])
    if tangent.shape != shape:
        tangent = np.broadcast_to(tangent, shape)
    return tangent if tangent.dtype == out.dtype else tangent.astype(out.dtype)


def _flatten_outputs(out, what: str):
    """The tensors of fn's output: one tensor, or a (nested) tuple or list of them."""
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flatten_outputs(o, what)]
    raise TypeError(
        f"{what}: fn must return a tensor or a tuple of tensors, got {type(out).__name__}"
    )


def _rebuild(out, values):
    """out's structure with its tensors replaced by `values` (an iterator), in order."""
    if isinstance(out, Tensor):
        return next(values)
    return type(out)(_rebuild(o, values) for o in out)


def _primal(x, i: int, what: str) -> Tensor:
    t = x if isinstance(x, Tensor) else Tensor(x)
    if t.dtype.kind != "f":
        raise TypeError(f"{what}: primal {i} is {t.dtype}; only floating tensors have tangents")
    return t


def _as_tuple(xs, name: str, what: str) -> tuple:
    if not isinstance(xs, (tuple, list)):
        raise TypeError(
            f"{what}: {name} must be a tuple of tensors (as in torch.func.jvp), "
            f"got {type(xs).__name__}; write ({name[:-1]},) for one"
        )
    return tuple(xs)


def jvp(fn, primals, tangents, *, batched: bool = False):
    """(fn(*primals), the derivative of fn at primals along tangents), torch.func's convention.

    primals and tangents are tuples of equal length, each tangent shaped like its primal (or,
    with batched=True, with a leading axis of K directions, the same K for all, and the output
    tangent has that axis too). The output may be a tensor or a tuple of tensors; its tangent
    has the same structure. Tangents are NumPy arithmetic, not recorded: no reverse mode through
    them. A function decorated with mg.fuse runs unfused here.
    """
    what = "jvp"
    if not callable(fn):
        raise TypeError(f"{what}: expected a function, got {type(fn).__name__}")
    primals = tuple(_primal(x, i, what) for i, x in enumerate(_as_tuple(primals, "primals", what)))
    tangents = _as_tuple(tangents, "tangents", what)
    if len(tangents) != len(primals):
        raise ValueError(f"{what}: {len(primals)} primals but {len(tangents)} tangents")
    if len({id(p) for p in primals}) != len(primals):
        raise ValueError(f"{what}: the same tensor appears twice among the primals")
    if autograd._state.forward is not None:
        raise RuntimeError(f"{what}: nested jvp calls are not supported")
    state = _Tangents()
    k = None
    for i, (p, t) in enumerate(zip(primals, tangents, strict=True)):
        t = np.asarray(t._data if isinstance(t, Tensor) else t, dtype=p.dtype)
        expected = p.shape if not batched else (t.shape[:1] if t.ndim else ()) + p.shape
        if t.shape != expected or (batched and t.ndim == 0):
            want = f"(K,) + {p.shape}" if batched else str(p.shape)
            raise ValueError(f"{what}: tangent {i} has shape {t.shape}, expected {want}")
        if batched and k is not None and t.shape[0] != k:
            raise ValueError(f"{what}: tangent {i} has {t.shape[0]} directions, tangent 0 {k}")
        k = t.shape[0] if batched else 1
        state.set(p, t if batched else t[None])
    autograd._state.forward = state
    try:
        out = fn(*primals)
    finally:
        autograd._state.forward = None
    flat = _flatten_outputs(out, what)
    k = 1 if k is None else k
    derivs = []
    for o in flat:
        t = state.get(o)
        t = np.zeros((k,) + o.shape, dtype=o.dtype) if t is None else np.array(t)
        derivs.append(Tensor._wrap(t if batched else t[0]))
    state.table.clear()  # each entry's weakref callback refers to the table: break the cycle
    return out, _rebuild(out, iter(derivs))
