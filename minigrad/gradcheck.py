"""Compare autograd's gradients with central finite differences, in float64."""

import numpy as np

from .autograd import no_grad
from .tensor import Tensor


class GradcheckError(AssertionError):
    pass


def _scalar(out) -> Tensor:
    """Reduce fn's output to a scalar with fixed random weights, so every output element counts."""
    outs = out if isinstance(out, (tuple, list)) else (out,)
    total = None
    for k, o in enumerate(outs):
        if not isinstance(o, Tensor) or o.dtype.kind != "f":
            continue
        w = np.random.default_rng(1234 + k).standard_normal(o.shape)
        term = (o * w).sum()
        total = term if total is None else total + term
    if total is None:
        raise TypeError("gradcheck: fn returned no floating tensor")
    return total


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, raise_exception=True):
    """Check d fn(*inputs) / d input for every input with requires_grad, by central differences.

    Inputs must be float64 (finite differences in float32 are meaningless). Non-scalar outputs
    are reduced by a fixed random weighting. Returns True, or raises `GradcheckError` naming the
    input, the worst element and both values (returns False instead if raise_exception=False).
    """
    inputs = list(inputs)
    targets = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not targets:
        raise ValueError("gradcheck: no input has requires_grad=True")
    for i in targets:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; use float64 inputs")
        inputs[i].grad = None

    _scalar(fn(*inputs)).backward()
    for i in targets:
        x = inputs[i]
        analytic = np.zeros_like(x._data) if x.grad is None else x.grad._data
        numeric = np.zeros_like(x._data)
        if not (x._data.flags.c_contiguous and x._data.flags.writeable):
            x._data = x._data.copy()  # not np.ascontiguousarray: it turns a 0-d array into 1-d
        flat = x._data.reshape(-1)  # a view: perturb in place, evaluate, restore
        with no_grad():
            for j in range(flat.size):
                orig = flat[j]
                flat[j] = orig + eps
                plus = _scalar(fn(*inputs)).item()
                flat[j] = orig - eps
                minus = _scalar(fn(*inputs)).item()
                flat[j] = orig
                numeric.reshape(-1)[j] = (plus - minus) / (2 * eps)
        err = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
        if err.size and err.max() > 0:
            j = np.unravel_index(int(np.argmax(err)), x.shape)
            msg = (
                f"gradcheck: input {i} (shape {x.shape}) disagrees at index {j}: "
                f"autograd {analytic[j]:.10g}, finite difference {numeric[j]:.10g}, "
                f"max abs difference {np.abs(analytic - numeric).max():.3g}"
            )
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True
