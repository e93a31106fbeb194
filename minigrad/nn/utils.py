"""Gradient clipping, the standard remedy for exploding gradients in BPTT."""

import math

import numpy as np

from ..tensor import Tensor


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Rescale gradients in place so that their joint norm is at most max_norm.

    The total norm is the norm of all gradients concatenated into one vector (norm_type may be
    any p > 0 or inf). If it exceeds max_norm, every gradient is multiplied by
    max_norm / (total + 1e-6), as in PyTorch. Returns the total norm before clipping, as a
    NumPy float64 (it is a float, and has .item()).
    """
    grads = _grads(parameters)
    norm_type = float(norm_type)
    if not grads:
        return np.float64(0.0)
    if norm_type == math.inf:
        total = max(np.max(np.abs(g)).astype(np.float64) if g.size else 0.0 for g in grads)
    else:
        # In float64 so that squares of large float32 gradients do not overflow.
        per = [np.sum(np.abs(g.astype(np.float64)) ** norm_type) for g in grads]
        total = math.fsum(per) ** (1 / norm_type)
    total = np.float64(total)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(
            f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is {total}; "
            "pass error_if_nonfinite=False to clip anyway"
        )
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        with np.errstate(invalid="ignore"):  # an inf gradient times 0 is NaN, as in PyTorch
            for g in grads:
                g *= g.dtype.type(coef)
    return total


def clip_grad_value_(parameters, clip_value):
    """Clip every gradient element into [-clip_value, clip_value], in place."""
    clip_value = float(clip_value)
    for g in _grads(parameters):
        np.clip(g, -clip_value, clip_value, out=g)
