"""Functional autodiff with the conventions of `torch.func` and JAX: `grad`, `vjp`, `jacobian`.

Thin functions over the engine. Each differentiates with respect to fresh leaves made from the
arguments, so `.grad` of the caller's tensors (and of any parameter fn reads) is left as it was
and no tensor hook runs: the call has no side effects on the model. Results are tensors.

    g = mg.grad(f)(x)                    # df/dx, f returning a scalar
    y, pullback = mg.vjp(f, x, w)        # pullback(v) -> (v^T df/dx, v^T df/dw)
    J = mg.jacobian(f, x)                # shaped f(x).shape + x.shape
    J = mg.jacobian(f, x, mode="forward")   # the same from one batched jvp

Forward mode (`mg.jvp`) is in `forward_ad.py`.
"""

from __future__ import annotations

import numpy as np

from . import autograd
from .forward_ad import _flatten_outputs, _rebuild, jvp
from .tensor import Tensor

__all__ = ["grad", "vjp", "jacobian", "jvp"]


def _leaf(x, i: int, what: str) -> Tensor:
    """A fresh leaf holding a copy of x's values, requiring grad."""
    data = x._data if isinstance(x, Tensor) else Tensor(x)._data
    if data.dtype.kind != "f":
        raise TypeError(f"{what}: input {i} is {data.dtype}; only floating inputs have gradients")
    leaf = Tensor._wrap(np.array(data, copy=True))
    leaf._requires_grad = True
    return leaf


def _pull(outputs, cotangents, inputs) -> tuple:
    """(sum_i cotangent_i^T d output_i / d input_j for each input j): the engine's backward
    with the inputs captured, so no `.grad` and no hook of any tensor is touched."""
    pairs = [(o, ct) for o, ct in zip(outputs, cotangents, strict=True) if o._requires_grad]
    found = autograd.run_backward(
        [o for o, _ in pairs], [ct for _, ct in pairs], retain_graph=True, capture=list(inputs)
    )
    return tuple(
        Tensor._wrap(np.zeros_like(x._data) if g is None else g)
        for x, g in zip(inputs, found, strict=True)
    )


def vjp(fn, *primals, has_aux: bool = False):
    """(fn(*primals), pullback), torch.func.vjp's convention: pullback(cotangent) returns a
    tuple with one gradient per primal, cotangent^T d fn / d primal. The output may be a tensor
    or a tuple of tensors (then the cotangent is a tuple of the same structure). With
    has_aux=True, fn returns (output, aux) and vjp returns (output, pullback, aux)."""
    return _vjp(fn, primals, has_aux, "vjp")


def _vjp(fn, primals, has_aux: bool, what: str):
    if not callable(fn):
        raise TypeError(f"{what}: expected a function, got {type(fn).__name__}")
    leaves = tuple(_leaf(x, i, what) for i, x in enumerate(primals))
    with autograd.enable_grad():
        result = fn(*leaves)
    aux = None
    if has_aux:
        if not (isinstance(result, tuple) and len(result) == 2):
            raise TypeError(f"{what}: with has_aux=True, fn must return (output, aux)")
        result, aux = result
    outputs = _flatten_outputs(result, what)

    def pullback(cotangent):
        cts = _flatten_cotangents(cotangent)
        if len(cts) != len(outputs):
            raise ValueError(f"{what}: {len(outputs)} outputs but {len(cts)} cotangents")
        arrays = []
        for i, (o, ct) in enumerate(zip(outputs, cts, strict=True)):
            ct = np.asarray(ct._data if isinstance(ct, Tensor) else ct, dtype=o.dtype)
            if ct.shape != o.shape:
                raise ValueError(
                    f"{what}: cotangent {i} has shape {ct.shape}, the output {o.shape}"
                )
            arrays.append(ct)
        return _pull(outputs, arrays, leaves)

    out = _rebuild(result, (o.detach() for o in outputs))
    return (out, pullback, aux) if has_aux else (out, pullback)


def _flatten_cotangents(ct) -> list:
    if isinstance(ct, (tuple, list)):
        return [c for part in ct for c in _flatten_cotangents(part)]
    return [ct]


def grad(fn, argnums=0, has_aux: bool = False):
    """The function computing the gradient of scalar-valued fn with respect to argument
    `argnums` (an int, or a tuple of ints for a tuple of gradients), as torch.func.grad.
    With has_aux=True, fn returns (scalar, aux) and the new function returns (gradient, aux)."""
    what = "grad"
    if not callable(fn):
        raise TypeError(f"{what}: expected a function, got {type(fn).__name__}")
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)
    if not nums or not all(isinstance(n, int) for n in nums):
        raise TypeError(f"{what}: argnums must be an int or a tuple of ints, got {argnums!r}")

    def gradient(*args):
        for n in nums:
            if not -len(args) <= n < len(args):
                raise ValueError(f"{what}: argnums {n} is out of range for {len(args)} arguments")
        picked = [n % len(args) for n in nums]

        def partial(*xs):
            full = list(args)
            for n, x in zip(picked, xs, strict=True):
                full[n] = x
            return fn(*full)

        out, pullback, *aux = _vjp(partial, [args[n] for n in picked], has_aux, what)
        if not isinstance(out, Tensor) or out._data.size != 1:
            shape = getattr(out, "shape", type(out).__name__)
            raise ValueError(f"{what}: fn must return a tensor with one element, got {shape}")
        grads = pullback(np.ones_like(out._data))
        result = grads[0] if single else grads
        return (result, aux[0]) if has_aux else result

    return gradient


def jacobian(fn, inputs, *, mode: str = "reverse"):
    """d fn(inputs) / d inputs shaped fn(x).shape + x.shape, as torch.autograd.functional.
    inputs: a tensor (one Jacobian) or a tuple of tensors (a tuple of them). mode="reverse"
    runs one vjp per output element; mode="forward" one jvp with a direction per input element
    (cheaper when the output is larger than the input)."""
    what = "jacobian"
    several = isinstance(inputs, (tuple, list))
    xs = tuple(_leaf(x, i, what).detach() for i, x in enumerate(inputs if several else (inputs,)))
    if mode == "reverse":
        out, pullback = _vjp(fn, xs, False, what)
        _check_single(out, what)
        rows = [[] for _ in xs]
        for i in range(out._data.size):
            ct = np.zeros(out._data.size, dtype=out.dtype)
            ct[i] = 1
            for r, g in zip(rows, pullback(ct.reshape(out.shape)), strict=True):
                r.append(g._data)
        jac = [
            np.stack(r).reshape(out.shape + x.shape)
            if r
            else np.zeros(out.shape + x.shape, x.dtype)
            for r, x in zip(rows, xs, strict=True)
        ]
    elif mode == "forward":
        jac = []
        for j, x in enumerate(xs):

            def along(p, j=j):
                return fn(*xs[:j], p, *xs[j + 1 :])

            eye = np.eye(x._data.size, dtype=x.dtype).reshape((x._data.size,) + x.shape)
            out, cols = jvp(along, (x,), (eye,), batched=True)
            _check_single(out, what)
            jac.append(np.moveaxis(cols._data, 0, -1).reshape(out.shape + x.shape))
    else:
        raise ValueError(f"{what}: mode must be 'reverse' or 'forward', got {mode!r}")
    jac = tuple(Tensor._wrap(j) for j in jac)
    return jac if several else jac[0]


def _check_single(out, what: str) -> None:
    if not isinstance(out, Tensor):
        raise TypeError(f"{what}: fn must return one tensor, got {type(out).__name__}")
