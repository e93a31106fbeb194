"""NumPy functions applied to tensors, as NumPy treats PyTorch's.

`np.asarray(t)` is the tensor's array (no copy). A NumPy operator between an array and a
tensor (`array + t`, `array < t`, also spelled `np.add(array, t)`) is the tensor's op, so the
result is a tensor and, if `t` requires grad, it is recorded. Any other ufunc (`np.abs(t)`,
`np.exp(t)`) and any NumPy function (`np.sum(t)`, `np.stack([a, b])`, `np.linalg.norm(t)`)
computes on the arrays and returns an array, as on NumPy data; where that would drop a gradient
that is being recorded, it raises instead of returning a detached answer.
"""

from __future__ import annotations

import operator

import numpy as np

from . import autograd

# ufunc -> the Python operator whose tensor method it becomes.
_OPERATORS = {
    np.add: operator.add,
    np.subtract: operator.sub,
    np.multiply: operator.mul,
    np.true_divide: operator.truediv,
    np.power: operator.pow,
    np.matmul: operator.matmul,
    np.less: operator.lt,
    np.less_equal: operator.le,
    np.greater: operator.gt,
    np.greater_equal: operator.ge,
    np.equal: operator.eq,
    np.not_equal: operator.ne,
}


def array_ufunc(tensor_type, ufunc, method, inputs, kwargs):
    """Tensor.__array_ufunc__: see the module's docstring."""
    op = _OPERATORS.get(ufunc)
    if op is not None and method == "__call__" and not kwargs and len(inputs) == 2:
        a, b = inputs
        if not isinstance(a, tensor_type):
            a = b._operand(a)  # an array or number beside a tensor: the tensor's op, recorded
        return op(a, b)
    if ufunc is np.negative and method == "__call__" and not kwargs and len(inputs) == 1:
        return -inputs[0]
    arrays = [_array_of(tensor_type, x, ufunc) for x in inputs]
    written = []
    if "out" in kwargs:
        outs = kwargs["out"]
        written = [o for o in outs if isinstance(o, tensor_type)]
        kwargs = dict(kwargs, out=tuple(_array_of(tensor_type, o, ufunc) for o in outs))
    result = getattr(ufunc, method)(*arrays, **kwargs)
    for t in written:
        autograd.bump_version(t)  # an in-place write into the tensor's memory
    return result


def _array_of(tensor_type, x, func):
    """x's array if x is a tensor (refused while its gradient is recorded), else x itself."""
    if not isinstance(x, tensor_type):
        return x
    if x._requires_grad and autograd.is_grad_enabled():
        name = getattr(func, "__name__", "function")
        raise TypeError(
            f"np.{name} on a tensor that requires grad would return an array without its "
            f"gradient; use minigrad's op (t.{name}() or mg.{name}, where there is one), or "
            f"np.{name}(t.detach()) for the values only"
        )
    return x._data


def array_function(tensor_type, func, args, kwargs):
    """Tensor.__array_function__: NumPy's functions (np.sum, np.stack, np.linalg.norm, ...) on
    tensors run on their arrays and return NumPy's result; a tensor whose gradient is being
    recorded is refused, since the result would be cut from the graph."""

    def arrays(x):
        if isinstance(x, tensor_type):
            return _array_of(tensor_type, x, func)
        if isinstance(x, (list, tuple)):
            return type(x)(arrays(v) for v in x)
        if isinstance(x, dict):
            return {k: arrays(v) for k, v in x.items()}
        return x

    return func(*arrays(args), **arrays(kwargs))
