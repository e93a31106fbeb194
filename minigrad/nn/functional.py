"""Functions of tensors used to build networks, with PyTorch's names and semantics.

The differentiable work happens in the fused ops of `minigrad.ops.nn`; this module checks the
arguments and turns wrong shapes, dtypes and class indices into errors that name the function
and the shapes involved.
"""

import numpy as np

from ..ops import nn as ops
from ..ops.matmul import Linear
from ..tensor import Tensor, as_tensor

_REDUCTIONS = ("mean", "sum", "none")


def _float_input(fn, x):
    x = as_tensor(x)
    if x.dtype.kind != "f":
        raise TypeError(f"{fn}: input must be a floating tensor, got {x.dtype}")
    return x


def _array(x):
    return x._data if isinstance(x, Tensor) else np.asarray(x)


def _check_reduction(fn, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(loss, reduction):
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def _dim(fn, dim, ndim):
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise ValueError(f"{fn}: dim {dim} is out of range for a tensor of {ndim} dims")
    return dim % max(ndim, 1)


def _class_targets(fn, x, target, ignore_index):
    """Check integer class indices against logits (N, C, d1, ...) or (C,); return the array."""
    t = _array(target)
    if t.dtype.kind not in "iu":
        raise TypeError(
            f"{fn}: target must hold integer class indices (e.g. int64), got dtype {t.dtype}"
        )
    if x.ndim == 0:
        raise ValueError(f"{fn}: input must have a class dimension, got a 0-d tensor")
    expected = () if x.ndim == 1 else (x.shape[0],) + x.shape[2:]
    if t.shape != expected:
        raise ValueError(
            f"{fn}: input of shape {x.shape} (classes on dim {min(x.ndim - 1, 1)}) needs a "
            f"target of shape {expected}, got {t.shape}"
        )
    n_classes = x.shape[0 if x.ndim == 1 else 1]
    bad = (t != ignore_index) & ((t < 0) | (t >= n_classes))
    if bad.any():
        raise IndexError(
            f"{fn}: target value {t[bad].flat[0]} is out of range for {n_classes} classes "
            f"(input shape {x.shape}; valid values are 0..{n_classes - 1} or "
            f"ignore_index={ignore_index})"
        )
    return t


def _class_weight(fn, weight, x):
    if weight is None:
        return None
    w = np.asarray(_array(weight), dtype=x.dtype)
    n_classes = x.shape[0 if x.ndim == 1 else 1]
    if w.shape != (n_classes,):
        raise ValueError(f"{fn}: weight must have shape ({n_classes},), got {w.shape}")
    return w


# ----- layers -----------------------------------------------------------------------------------
def linear(input, weight, bias=None):
    """input @ weight.T + bias, weight of shape (out_features, in_features)."""
    x = _float_input("linear", input)
    if weight.ndim != 2 or x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input of shape {x.shape} does not match weight of shape {weight.shape} "
            "(the input's last dim must equal weight.shape[1])"
        )
    if bias is None:
        return Linear.apply(x, weight)
    if bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    return Linear.apply(x, weight, bias)


def embedding(input, weight, padding_idx=None):
    """Rows of `weight` selected by the integer indices `input`: output shape input.shape + (D,).

    Rows indexed by `padding_idx` receive no gradient."""
    idx = _array(input)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got dtype {idx.dtype}")
    n = weight.shape[0]
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = idx.min() if idx.min() < 0 else idx.max()
        raise IndexError(
            f"embedding: index {bad} is out of range for a weight of shape {weight.shape} "
            f"(indices of shape {idx.shape})"
        )
    if padding_idx is not None:
        if not -n <= padding_idx < n:
            raise ValueError(f"embedding: padding_idx {padding_idx} out of range for {n} rows")
        padding_idx %= n
    return ops.Embedding.apply(weight, idx=idx, padding_idx=padding_idx)


def dropout(input, p=0.5, training=True):
    """Inverted dropout; the identity when not training or p == 0."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0:
        return input
    return ops.Dropout.apply(_float_input("dropout", input), p=p)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the trailing `normalized_shape` dims, then scale and shift."""
    x = _float_input("layer_norm", input)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if x.shape[x.ndim - len(shape) :] != shape or len(shape) == 0:
        raise ValueError(f"layer_norm: input of shape {x.shape} does not end in {shape}")
    out = ops.Normalize.apply(x, n_axes=len(shape), eps=eps)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


# ----- activations ------------------------------------------------------------------------------
def softmax(input, dim=-1):
    x = _float_input("softmax", input)
    return ops.Softmax.apply(x, axis=_dim("softmax", dim, x.ndim))


def log_softmax(input, dim=-1):
    """x - logsumexp(x) along dim: finite for any finite input (no log of an underflowed 0)."""
    x = _float_input("log_softmax", input)
    return ops.LogSoftmax.apply(x, axis=_dim("log_softmax", dim, x.ndim))


def tanh(input):
    return as_tensor(input).tanh()


def sigmoid(input):
    return as_tensor(input).sigmoid()


def relu(input):
    return as_tensor(input).relu()


def one_hot(tensor, num_classes=-1):
    """Integer indices of any shape -> int64 tensor of shape tensor.shape + (num_classes,)."""
    idx = _array(tensor)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"one_hot: indices must be integers, got dtype {idx.dtype}")
    n = int(idx.max()) + 1 if num_classes == -1 else num_classes
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise IndexError(f"one_hot: indices must be in [0, {n}), got {idx.min()}..{idx.max()}")
    return Tensor(np.eye(n, dtype=np.int64)[idx])


# ----- losses -----------------------------------------------------------------------------------
def cross_entropy(
    input, target, weight=None, *, ignore_index=-100, reduction="mean", label_smoothing=0.0
):
    """Cross-entropy between logits and integer class targets, as `torch.nn.functional`.

    input (N, C), (N, C, d1, ...) or (C,); target (N,), (N, d1, ...) or (). Targets equal to
    `ignore_index` contribute nothing, and 'mean' averages over the others only (weighted by
    `weight[target]` if class weights are given). With label_smoothing e the target becomes
    (1 - e) one_hot + e / C, averaged the same way. If every target is ignored, 'mean' gives
    NaN (as PyTorch does).
    """
    x = _float_input("cross_entropy", input)
    _check_reduction("cross_entropy", reduction)
    if not 0 <= label_smoothing <= 1:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    t = _class_targets("cross_entropy", x, target, ignore_index)
    w = _class_weight("cross_entropy", weight, x)
    return ops.CrossEntropy.apply(
        x,
        target=t,
        weight=w,
        ignore_index=ignore_index,
        reduction=reduction,
        smoothing=float(label_smoothing),
    )


def nll_loss(input, target, weight=None, *, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of log-probabilities (e.g. log_softmax output); shapes and
    ignore_index as in `cross_entropy`."""
    x = _float_input("nll_loss", input)
    _check_reduction("nll_loss", reduction)
    t = _class_targets("nll_loss", x, target, ignore_index)
    w = _class_weight("nll_loss", weight, x)
    return ops.NLLLoss.apply(x, target=t, weight=w, ignore_index=ignore_index, reduction=reduction)


def mse_loss(input, target, reduction="mean"):
    x = _float_input("mse_loss", input)
    _check_reduction("mse_loss", reduction)
    y = as_tensor(target, like=x)
    if x.shape != y.shape:
        raise ValueError(f"mse_loss: input of shape {x.shape} and target of shape {y.shape} differ")
    d = x - y
    return _reduce(d * d, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """Sigmoid + binary cross-entropy in one stable expression (finite for logits of any size).

    `weight` rescales each element's loss; `pos_weight` weighs the positive term (broadcast
    over the last dim, one entry per class), as in PyTorch.
    """
    x = _float_input("binary_cross_entropy_with_logits", input)
    _check_reduction("binary_cross_entropy_with_logits", reduction)
    y = as_tensor(target, like=x)
    if y.dtype != x.dtype:
        if y.dtype.kind == "f" and y.requires_grad:
            raise TypeError(
                f"binary_cross_entropy_with_logits: target is {y.dtype}, input {x.dtype}"
            )
        y = y.astype(x.dtype)
    if x.shape != y.shape:
        raise ValueError(
            f"binary_cross_entropy_with_logits: target of shape {y.shape} must have the "
            f"input's shape {x.shape}"
        )
    pw = None if pos_weight is None else np.asarray(_array(pos_weight), dtype=x.dtype)
    loss = ops.BCEWithLogits.apply(x, y, pos_weight=pw)
    if weight is not None:
        loss = loss * as_tensor(weight, like=x)
    return _reduce(loss, reduction)
