"""In-place writes: index assignment recorded in the graph, and the `add_` family outside it.

Every in-place write bumps the tensor's version counter (see autograd.py), so a node that saved
the old values for its backward refuses to run on the new ones instead of computing a wrong
gradient. `x[index] = value` on a tensor in a graph is itself an op (SetItem, PyTorch's
CopySlices): the gradient reaching x afterwards flows to `value` at `index` and to x's earlier
value everywhere else. The `add_` family is for updates outside autograd (optimizer-like code,
running statistics, initialisation): while gradients are recorded it refuses a tensor that
requires grad, rather than recording something else.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import autograd, dtypes
from .autograd import bump_version, version_counter
from .ops.copy import SetItem


def _has_repeats(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    for p in parts:
        if isinstance(p, np.ndarray) and p.dtype.kind in "iu" and p.size > 1:
            if np.unique(p).size != p.size:
                return True
    return False


def setitem(x, index, value) -> None:
    """`x[index] = value`, recorded in the graph when either side needs a gradient."""
    value = x._operand(value)
    _check_writable(x, "setitem (x[index] = value)")
    try:  # NumPy's own rules, tried on a scratch array so that x is untouched on failure
        np.zeros(x.shape, np.bool_)[index] = np.zeros(value.shape, np.bool_)
    except (IndexError, ValueError) as e:
        raise type(e)(
            f"setitem: cannot assign a value of shape {value.shape} into x[index] of a tensor "
            f"of shape {x.shape}: {e}"
        ) from None
    if value.dtype.kind == "f" and x.dtype.kind in "iub":
        raise TypeError(
            f"setitem: cannot assign a {value.dtype} value into a {x.dtype} tensor "
            "(it would be truncated); convert one of them first"
        )
    _refuse_tangents("setitem (x[index] = value)", x, value)
    if not (autograd.is_grad_enabled() and (x._requires_grad or value._requires_grad)):
        x._data[index] = value._data
        bump_version(x)
        return
    if autograd.is_tracing():
        raise RuntimeError(
            "setitem: index assignment inside a function traced by mg.fuse is not supported; "
            "build the result with mg.stack/mg.cat/mg.where instead"
        )
    if x.is_leaf and x._requires_grad:
        raise RuntimeError(
            f"setitem: x[index] = value on a leaf tensor that requires grad (shape {x.shape}) "
            "would overwrite the values its gradient is taken with respect to; assign under "
            "`with mg.no_grad():` (initialising a parameter), or into a copy (y = x * 1)"
        )
    vc = version_counter(x)
    if x._data.base is not None or vc[1]:
        raise RuntimeError(
            f"setitem: x[index] = value on a tensor of shape {x.shape} that shares its memory "
            "with another tensor (a view such as x[t], x.reshape(...), x.T or x.detach() was "
            "taken) while gradients are recorded; minigrad does not rewrite the views' "
            "gradients as PyTorch does. Collect the steps in a list and use mg.stack, or "
            "assign into a fresh tensor (mg.zeros(...)) before taking views of it"
        )
    if value._requires_grad and _has_repeats(index):
        raise ValueError(
            "setitem: an index array with repeated positions in x[index] = value (only the "
            "last write survives, so the gradient of the others is ambiguous) while gradients "
            "are recorded; remove the repeats"
        )
    out = SetItem.apply(x, value.astype(x.dtype) if value.dtype != x.dtype else value, index=index)
    # The write happened in x's own array: x becomes the op's output.
    bump_version(x)
    x._requires_grad, x._node = out._requires_grad, out._node


def _refuse_tangents(name: str, *tensors) -> None:
    """Inside mg.jvp tangents follow tensor objects through ops: a write would leave one stale."""
    forward = autograd._state.forward
    if forward is not None and forward.carries(*tensors):
        raise NotImplementedError(
            f"{name}: in-place write into or from a tensor that carries a tangent inside mg.jvp; "
            "write it out of place (x = x + y, mg.stack/mg.cat/mg.where)"
        )


def _check_writable(x, name: str) -> None:
    if not x._data.flags.writeable:
        raise RuntimeError(
            f"{name}: this tensor of shape {x.shape} is a read-only view (made by expand or "
            "broadcast_to, whose elements share memory); write into a copy instead"
        )


def _rebind(x, new, name: str) -> None:
    """x becomes `new` (an in-place op while gradients are recorded, computed out of place).

    The nodes that saved x's old array keep it untouched; x takes new memory and a fresh
    version counter. Tensors sharing x's memory would not follow, so they are refused.
    """
    if autograd.is_tracing():
        raise RuntimeError(
            f"{name}: in-place updates inside a function traced by mg.fuse are not supported; "
            "write it out of place (x = x + y)"
        )
    if x.is_leaf and x._requires_grad:
        raise RuntimeError(
            f"{name}: in-place update of a leaf tensor that requires grad (shape {x.shape}) "
            "while gradients are recorded; update it under `with mg.no_grad():` (as an "
            "optimizer step does), or write it out of place"
        )
    if x._data.base is not None or (x._vc is not None and x._vc[1]):
        raise RuntimeError(
            f"{name}: in-place update of a tensor of shape {x.shape} that shares its memory "
            "with another tensor (a view such as x[t], x.reshape(...) or x.detach()) while "
            "gradients are recorded; write it out of place (x = x + y)"
        )
    if new.shape != x.shape:
        raise ValueError(
            f"{name}: the result has shape {new.shape}, which cannot be written in place into "
            f"a tensor of shape {x.shape}"
        )
    if new.dtype != x.dtype:
        new = new.astype(x.dtype)
    x._data, x._node, x._requires_grad, x._vc = new._data, new._node, new._requires_grad, None


_TORCH_NAMES = {"float32": "Float", "float64": "Double", "int64": "Long", "int32": "Int"}


def _check_cast(name: str, result: np.dtype, target: np.dtype, other) -> None:
    """PyTorch's rule for writing a result in place: never float into an integer tensor,
    nothing but bool into a bool one (narrowing within a kind, float64 into float32, is
    allowed). Refused whether or not gradients are recorded: a silent cast would truncate the
    values and drop their gradient (`total = mg.tensor([0]); total += loss`)."""
    if result.kind == "b" or (result.kind in "iu" and target.kind != "b") or target.kind == "f":
        return
    if result.kind == "f":  # as PyTorch names it: the float operand's dtype, else the default
        o = getattr(other, "dtype", None)
        result = o if o is not None and o.kind == "f" else dtypes.get_default_dtype()
    have, want = (_TORCH_NAMES.get(d.name, d.name.capitalize()) for d in (result, target))
    raise RuntimeError(
        f"{name}: result type {have} can't be cast to the desired output type {want} (an "
        "in-place op keeps the tensor's dtype; write it out of place, or convert the tensor "
        "first, e.g. total = mg.zeros(()) for a float sum)"
    )


class InPlaceMethods:
    """`add_`, `mul_`, `copy_` ...: PyTorch's in-place updates.

    Outside autograd (no_grad, or nothing requires grad) they write into the tensor's memory,
    which views share. While gradients are recorded they are recorded too: computed out of
    place and the tensor rebound to the result, for tensors that no view shares.
    """

    __slots__ = ()

    def _inplace(self, name: str, other, values, graph):
        """values(array of other) -> new array; graph(other as tensor) -> new tensor."""
        _refuse_tangents(name, self, other)
        recording = autograd.is_grad_enabled() and (
            self._requires_grad or getattr(other, "_requires_grad", False)
        )
        if recording:
            new = graph(None if other is None else self._operand(other))
            _check_cast(name, new.dtype, self.dtype, other)
            _rebind(self, new, name)
            return self
        _check_writable(self, name)
        o = getattr(other, "_data", other)
        if isinstance(o, (bool, int, float)):
            o = np.asarray(o, self.dtype if self.dtype.kind == "f" else None)
        new = np.asarray(values(None if o is None else np.asarray(o)))
        try:
            shape = np.broadcast_shapes(self.shape, new.shape)
        except ValueError:
            shape = None
        if shape != self.shape:
            raise ValueError(
                f"{name}: a value of shape {new.shape} cannot be written in place into a "
                f"tensor of shape {self.shape} (it would change the shape)"
            )
        _check_cast(name, new.dtype, self.dtype, other)
        self._data[...] = new
        bump_version(self)
        return self

    def add_(self, other, *legacy, alpha=1):
        other, alpha = _legacy_alpha("add_", other, legacy, alpha)
        return self._inplace(
            "add_", other, lambda o: self._data + alpha * o, lambda o: self + alpha * o
        )

    def sub_(self, other, *legacy, alpha=1):
        other, alpha = _legacy_alpha("sub_", other, legacy, alpha)
        return self._inplace(
            "sub_", other, lambda o: self._data - alpha * o, lambda o: self - alpha * o
        )

    def mul_(self, other):
        return self._inplace("mul_", other, lambda o: self._data * o, lambda o: self * o)

    def div_(self, other):
        return self._inplace("div_", other, lambda o: self._data / o, lambda o: self / o)

    def clamp_(self, min=None, max=None):
        if min is None and max is None:
            raise ValueError("clamp_: give at least one of min and max")
        return self._inplace(
            "clamp_", None, lambda _: np.clip(self._data, min, max), lambda _: self.clamp(min, max)
        )

    clip_ = clamp_

    def fill_(self, value):
        # In a graph: a constant, with a zero gradient to what the tensor was.
        return self._inplace("fill_", value, lambda o: o, lambda o: self * 0 + o)

    def zero_(self):
        return self.fill_(0)

    def copy_(self, src):
        """Copy src's values (broadcast, converted to this dtype) into this tensor."""
        return self._inplace(
            "copy_", src, lambda o: o.astype(self.dtype), lambda o: o.astype(self.dtype) + self * 0
        )

    # ----- in-place changes of shape, and detach_ -------------------------------------------
    def _restride(self, name: str, new):
        """self takes `new`'s shape: a view of its own memory, computed by the out-of-place
        op (so that, in a graph, self's gradient flows back through it)."""
        recording = autograd.is_grad_enabled() and self._requires_grad
        if recording and self.is_leaf:
            raise RuntimeError(
                f"{name}: a leaf tensor that requires grad is being used in an in-place "
                "operation; call it under `with mg.no_grad():`, or use the out-of-place form"
            )
        if self._node is not None and new._node is None:
            raise RuntimeError(
                f"{name}: on a tensor computed in a graph while gradients are not recorded; "
                "use the out-of-place form"
            )
        self._data, self._node, self._index = new._data, new._node, new._index
        return self

    def unsqueeze_(self, dim: int):
        return self._restride("unsqueeze_", self.unsqueeze(dim))

    def squeeze_(self, dim=None):
        return self._restride("squeeze_", self.squeeze(dim))

    def t_(self):
        return self._restride("t_", self.t())

    def detach_(self):
        """Cut this tensor from the graph, in place: it becomes a leaf that does not require
        grad (PyTorch's detach_)."""
        self._node, self._index, self._requires_grad = None, 0, False
        return self


def _legacy_alpha(name, other, legacy, alpha):
    """PyTorch's deprecated add_(value, other) / sub_(value, other), which old tutorials call as
    `p.data.add_(-lr, p.grad.data)`: the number first is alpha."""
    if not legacy:
        return other, alpha
    if len(legacy) != 1 or not isinstance(other, numbers.Number) or alpha != 1:
        raise TypeError(
            f"{name}: takes (other, *, alpha=1), or the deprecated (value, other) with a number "
            f"first; got {len(legacy) + 1} positional arguments"
        )
    return legacy[0], other
