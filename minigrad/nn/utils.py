"""Gradient clipping, the standard remedy for exploding gradients in BPTT."""

import math

import numpy as np

from ..tensor import Tensor


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p._grad._data for p in parameters if p._grad is not None]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Rescale gradients in place so that their joint norm is at most max_norm.

    The total norm is the norm of all gradients concatenated into one vector (norm_type may be
    any p > 0 or inf). As in PyTorch, every gradient is multiplied by
    min(max_norm / (total + 1e-6), 1), so a NaN total makes every gradient NaN and an inf one
    makes finite gradients 0; error_if_nonfinite=True raises a RuntimeError instead. Returns
    the total norm before clipping, as a NumPy float64 (it is a float, and has .item()).
    """
    grads = _grads(parameters)
    norm_type = float(norm_type)
    if not grads:
        return np.float64(0.0)
    with np.errstate(over="ignore"):  # a norm past float64's range is inf, as in PyTorch
        if norm_type == math.inf:
            # np.max, not max(): Python's max drops a NaN that is not first.
            total = np.max([np.max(np.abs(g)) if g.size else 0.0 for g in grads])
        else:
            # In float64 so that squares of large float32 gradients do not overflow.
            per = [np.sum(np.abs(g.astype(np.float64)) ** norm_type) for g in grads]
            try:
                total = math.fsum(per)
            except OverflowError:  # fsum refuses a finite sum past float64's range
                total = np.sum(per)
            total = np.float64(total) ** (1 / norm_type)
    total = np.float64(total)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is "
            f"non-finite ({total}), so it cannot be clipped. To disable this error and scale "
            "the gradients by the non-finite norm anyway, set `error_if_nonfinite=False`"
        )
    with np.errstate(invalid="ignore"):  # inf / inf, and inf * 0 = NaN, as in PyTorch
        coef = np.minimum(max_norm / (total + 1e-6), 1.0)  # NaN stays NaN, as torch.clamp
        if coef != 1.0:  # a NaN coefficient is applied too: no gradient escapes unclipped
            for g in grads:
                g *= g.dtype.type(coef)
    return total


def clip_grad_value_(parameters, clip_value):
    """Clip every gradient element into [-clip_value, clip_value], in place."""
    clip_value = float(clip_value)
    for g in _grads(parameters):
        np.clip(g, -clip_value, clip_value, out=g)
