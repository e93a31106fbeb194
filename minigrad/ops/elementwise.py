"""Elementwise ops: a table of derivatives.

Binary ops return gradients shaped like the broadcast output; the engine's `sum_to` reduces them
to each operand's shape. Where the derivative is a function of the output (exp, tanh, sigmoid,
sqrt) the output is saved rather than the input, so backward recomputes nothing.

`scalar` and `scalar_grads` are the same op written for one element (`{x}`, `{y}` the inputs,
`{out}` the output, `{g}` its gradient; `_0`, `_1`, `_2` typed constants): `minigrad.fusion`
compiles chains of such ops into one Numba loop. Ops without them are never fused. Where a
derivative is also a kernel (tanh, sigmoid), its template is made from the kernel's formula.

`jvp(out, *tangents)` is the forward-mode rule (see ops/tangent.py): for an elementwise op the
Jacobian is diagonal, so the tangent is scaled by the same derivative backward uses.
"""

import numpy as np

from .. import kernels
from ..autograd import Function
from ..kernels.formulas import sigmoid_grad, tanh_grad, template
from .tangent import lift, minus, plus, times


class Add(Function):
    scalar = "{x} + {y}"
    scalar_grads = ("{g}", "{g}")

    def forward(self, x, y):
        return x + y

    def backward(self, g):
        return g, g

    def jvp(self, out, tx, ty):
        return plus(tx, ty)


class Sub(Function):
    scalar = "{x} - {y}"
    scalar_grads = ("{g}", "-{g}")

    def forward(self, x, y):
        return x - y

    def backward(self, g):
        return g, (-g if self.needs[1] else None)

    def jvp(self, out, tx, ty):
        return minus(tx, ty)


class Mul(Function):
    scalar = "{x} * {y}"
    scalar_grads = ("{g} * {y}", "{g} * {x}")

    def forward(self, x, y):
        self.saved = (x, y)
        return x * y

    def backward(self, g):
        x, y = self.saved
        return (g * y if self.needs[0] else None), (g * x if self.needs[1] else None)

    def jvp(self, out, tx, ty):
        x, y = self.saved
        return plus(times(tx, y, out.ndim), times(ty, x, out.ndim))


class Div(Function):
    scalar = "{x} / {y}"
    scalar_grads = ("{g} / {y}", "-{g} * {out} / {y}")

    def forward(self, x, y):
        out = x / y
        self.saved = (y, out)
        return out

    def backward(self, g):
        y, out = self.saved
        gx = g / y
        return (gx if self.needs[0] else None), (-gx * out if self.needs[1] else None)

    def jvp(self, out, tx, ty):
        y, out = self.saved
        return minus(times(tx, 1 / y, out.ndim), times(ty, out / y, out.ndim))


class Neg(Function):
    scalar = "-{x}"
    scalar_grads = ("-{g}",)

    def forward(self, x):
        return -x

    def backward(self, g):
        return (-g,)

    def jvp(self, out, t):
        return -t


class Pow(Function):
    """x ** y; d/dx = y x^(y-1), d/dy = x^y log x (only asked for when y requires grad)."""

    def forward(self, x, y):
        out = x**y
        self.saved = (x, y, out)
        return out

    def backward(self, g):
        x, y, out = self.saved
        gx = None
        if self.needs[0]:
            # y = 0 has derivative 0 everywhere: x^(y-1) would be inf at x = 0, and 0 * inf NaN
            gx = g * y * x ** np.where(y == 0, 1, y - 1)
        gy = None
        if self.needs[1]:
            safe = np.where(x > 0, x, 1)  # x^y log x -> 0 where x == 0, undefined below
            gy = g * out * np.log(safe)
        return gx, gy

    def jvp(self, out, tx, ty):
        x, y, out = self.saved
        dx = None if tx is None else y * x ** np.where(y == 0, 1, y - 1)  # as in backward
        dy = None if ty is None else out * np.log(np.where(x > 0, x, 1))
        return plus(times(tx, dx, out.ndim), times(ty, dy, out.ndim))


class Exp(Function):
    scalar = "exp({x})"
    scalar_grads = ("{g} * {out}",)

    def forward(self, x):
        out = np.exp(x)
        self.saved = out
        return out

    def backward(self, g):
        return (g * self.saved,)

    def jvp(self, out, t):
        return t * self.saved


class Log(Function):
    scalar = "log({x})"
    scalar_grads = ("{g} / {x}",)

    def forward(self, x):
        self.saved = x
        return np.log(x)

    def backward(self, g):
        return (g / self.saved,)

    def jvp(self, out, t):
        return t / self.saved


class Sqrt(Function):
    scalar = "sqrt({x})"
    scalar_grads = ("{g} / (_2 * {out})",)

    def forward(self, x):
        out = np.sqrt(x)
        self.saved = out
        return out

    def backward(self, g):
        return (g / (2 * self.saved),)

    def jvp(self, out, t):
        return t / (2 * self.saved)


class Abs(Function):
    def forward(self, x):
        self.saved = x
        return np.abs(x)

    def backward(self, g):
        return (g * np.sign(self.saved),)

    def jvp(self, out, t):
        return t * np.sign(self.saved)


class Tanh(Function):
    scalar = "tanh({x})"
    scalar_grads = (template(tanh_grad),)

    def forward(self, x):
        out = np.tanh(x)
        self.saved = out
        return out

    def backward(self, g):
        return (kernels.tanh_backward(g, self.saved),)

    def jvp(self, out, t):
        return tanh_grad(t, self.saved, 1)


class Sigmoid(Function):
    scalar = "sigmoid({x})"
    scalar_grads = (template(sigmoid_grad),)

    def forward(self, x):
        out = kernels.sigmoid(x)
        self.saved = out
        return out

    def backward(self, g):
        return (kernels.sigmoid_backward(g, self.saved),)

    def jvp(self, out, t):
        return sigmoid_grad(t, self.saved, 1)


class Relu(Function):
    scalar = "relu({x})"
    scalar_grads = ("{g} if {x} > _0 else _0",)

    def forward(self, x):
        self.saved = x
        return np.maximum(x, 0)

    def backward(self, g):
        return (kernels.relu_backward(g, self.saved),)

    def jvp(self, out, t):
        return t * (self.saved > 0)


class Maximum(Function):
    """Elementwise max; a tie sends half the gradient to each side (as PyTorch does)."""

    def forward(self, x, y):
        self.saved = (x, y)
        return np.maximum(x, y)

    def backward(self, g):
        x, y = self.saved
        share = (x > y) + g.dtype.type(0.5) * (x == y)  # a bare 0.5 would make it float64
        return g * share, g * (1 - share)

    def jvp(self, out, tx, ty):
        x, y = self.saved
        share = (x > y) + out.dtype.type(0.5) * (x == y)
        return plus(times(tx, share, out.ndim), times(ty, 1 - share, out.ndim))


class Minimum(Function):
    def forward(self, x, y):
        self.saved = (x, y)
        return np.minimum(x, y)

    def backward(self, g):
        x, y = self.saved
        share = (x < y) + g.dtype.type(0.5) * (x == y)
        return g * share, g * (1 - share)

    def jvp(self, out, tx, ty):
        x, y = self.saved
        share = (x < y) + out.dtype.type(0.5) * (x == y)
        return plus(times(tx, share, out.ndim), times(ty, 1 - share, out.ndim))


class Clip(Function):
    """clip(x, lo, hi): gradient passes where lo <= x <= hi."""

    def forward(self, x, lo=None, hi=None):
        self.saved = x
        self.lo, self.hi = lo, hi
        return np.clip(x, lo, hi)

    def backward(self, g):
        x = self.saved
        inside = np.ones(x.shape, dtype=bool)
        if self.lo is not None:
            inside &= x >= self.lo
        if self.hi is not None:
            inside &= x <= self.hi
        return (g * inside,)

    def jvp(self, out, t):
        x = self.saved
        inside = np.ones(x.shape, dtype=bool)
        if self.lo is not None:
            inside &= x >= self.lo
        if self.hi is not None:
            inside &= x <= self.hi
        return t * inside


class Where(Function):
    """where(cond, x, y); cond is a boolean array, not differentiated."""

    def forward(self, x, y, cond=None):
        self.saved = cond
        return np.where(cond, x, y)

    def backward(self, g):
        cond = self.saved
        zero = np.zeros((), dtype=g.dtype)
        return (
            np.where(cond, g, zero) if self.needs[0] else None,
            np.where(cond, zero, g) if self.needs[1] else None,
        )

    def jvp(self, out, tx, ty):
        cond = self.saved
        zero = np.zeros((), dtype=out.dtype)
        tx = zero if tx is None else lift(tx, out.ndim)
        ty = zero if ty is None else lift(ty, out.ndim)
        return np.where(cond, tx, ty)
