"""Derivatives written once, for one element, and used by every implementation of them.

A formula is a plain Python function of `g` (the gradient of the output), `out` (the output)
and `_1` (one, typed by the caller). The same function
- runs on whole NumPy arrays (minigrad.kernels' NumPy path, with `_1 = 1`, which takes the
  arrays' dtype),
- is inlined into the Numba kernels' loops (minigrad.kernels._numba, `_1` of the data's dtype),
- becomes the fused loops' source (`template`, read by ops/elementwise.py's `scalar_grads`).

Numba's on-disk cache of the kernels does not notice an edit here: after one, delete
minigrad/kernels/__pycache__ (the tests comparing both kernel paths bit for bit would fail).
"""

import inspect


def tanh_grad(g, out, _1):
    """d tanh(x) / dx = 1 - tanh(x)^2, from the output."""
    return g * (_1 - out * out)


def sigmoid_grad(g, out, _1):
    """d sigmoid(x) / dx = sigmoid(x) (1 - sigmoid(x)), from the output."""
    return g * out * (_1 - out)


class _Source:
    """Source text that arithmetic extends: calling a formula on these writes it out, with
    every operation in parentheses, so the text evaluates in exactly the formula's order."""

    def __init__(self, text):
        self.text = text

    def _binary(self, op, other, reverse=False):
        a, b = (other, self) if reverse else (self, other)
        return _Source(f"({a} {op} {b})")

    def __add__(self, other):
        return self._binary("+", other)

    def __sub__(self, other):
        return self._binary("-", other)

    def __mul__(self, other):
        return self._binary("*", other)

    def __truediv__(self, other):
        return self._binary("/", other)

    def __radd__(self, other):
        return self._binary("+", other, reverse=True)

    def __rsub__(self, other):
        return self._binary("-", other, reverse=True)

    def __rmul__(self, other):
        return self._binary("*", other, reverse=True)

    def __rtruediv__(self, other):
        return self._binary("/", other, reverse=True)

    def __neg__(self):
        return _Source(f"(-{self})")

    def __str__(self):
        return self.text


def template(formula) -> str:
    """The formula as a fusion template: argument `g` becomes the field `{g}` and so on, and
    arguments named like `_1` stay names (the generated module's typed constants)."""
    names = inspect.signature(formula).parameters
    return str(formula(*(_Source(n if n.startswith("_") else f"{{{n}}}") for n in names)))
