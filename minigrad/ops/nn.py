"""Fused neural-network ops: each is one node whose backward is written in closed form.

Fusing matters for two reasons: stability (log_softmax never exponentiates an unshifted logit,
cross_entropy never takes the log of a softmax that underflowed to 0) and speed (one node and
one pass over the logits instead of the six or seven a composite would record).

Arguments that are not differentiated (targets, indices, masks, class weights) arrive as
keyword arrays; `minigrad.nn.functional` validates them and gives the error messages.
"""

import numpy as np

from .. import kernels
from .. import random as _random
from ..autograd import Function
from .tangent import plus, times


def _log_softmax(z, axis):
    """z - logsumexp(z) along axis, shifted by the max so that exp never overflows."""
    if z.shape[axis] == 0:  # np.max has no identity; PyTorch returns an empty result
        return np.empty_like(z)
    m = np.max(z, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)  # a row of -inf stays -inf instead of becoming NaN
    shifted = z - m
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _softplus_neg(x):
    """log(1 + exp(-x)) = max(-x, 0) + log1p(exp(-|x|)), finite for any finite x."""
    return np.maximum(-x, 0) + np.log1p(np.exp(-np.abs(x)))


class LogSoftmax(Function):
    """log_softmax(x) = x - logsumexp(x);  dL/dx = g - softmax(x) * sum(g)."""

    def forward(self, x, axis=-1):
        self.axis = axis
        out = _log_softmax(x, axis)
        self.saved = out
        return out

    def backward(self, g):
        out = self.saved
        return (g - np.exp(out) * np.sum(g, axis=self.axis, keepdims=True),)

    def jvp(self, out, t):
        axis = self.axis % out.ndim + 1
        return t - np.sum(np.exp(out) * t, axis=axis, keepdims=True)


class Softmax(Function):
    """s = softmax(x);  dL/dx = s * (g - sum(g * s)) (the Jacobian never materialised)."""

    def forward(self, x, axis=-1):
        self.axis = axis
        out = np.exp(_log_softmax(x, axis))
        self.saved = out
        return out

    def backward(self, g):
        s = self.saved
        return (s * (g - np.sum(g * s, axis=self.axis, keepdims=True)),)

    def jvp(self, out, t):
        axis = self.axis % out.ndim + 1
        return out * (t - np.sum(out * t, axis=axis, keepdims=True))


def _move_classes_last(x):
    """Logits (N, C, d1, ...) -> (N, d1, ..., C); a 1-D input (C,) is one unbatched sample."""
    return x if x.ndim == 1 else np.moveaxis(x, 1, -1)


def _move_classes_back(x, ndim):
    return x if ndim == 1 else np.moveaxis(x, -1, 1)


def _reduce(loss, wt, reduction):
    """Reduce per-element losses; 'mean' divides by the total weight of non-ignored targets.

    Returns (output, per-element scale of the incoming gradient). If every target is ignored
    the mean is NaN, as in PyTorch, and the gradient is zero.
    """
    if reduction == "none":
        return loss, None
    total = loss.sum(dtype=loss.dtype)
    if reduction == "sum":
        return np.asarray(total), 1
    denom = wt.sum(dtype=loss.dtype)
    if denom == 0:
        return np.asarray(np.nan, dtype=loss.dtype), 0
    return np.asarray(total / denom), 1 / denom


def _loss_jvp(node, out, t):
    """Tangent of a loss of logits: each loss element depends on its own row of classes only,
    so its derivative along t is <its gradient, t> over that row, the gradient being what
    backward gives for a unit output gradient (then summed over rows unless reduction='none')."""
    grad = node.backward(np.ones(out.shape, dtype=out.dtype))[0]
    prod = t * grad
    axes = tuple(range(1, prod.ndim)) if out.ndim == 0 else (1 if node.ndim == 1 else 2)
    return np.sum(prod, axis=axes)


class CrossEntropy(Function):
    """Cross-entropy from logits, fused with log_softmax; classes on axis 1 (axis 0 if 1-D).

    With log-probabilities l = log_softmax(x), target t, smoothing e over C classes and class
    weights w (all ones if not given), each non-ignored element contributes

        loss = -(1 - e) w[t] l[t] - (e / C) sum_c w[c] l[c]   = -sum_c a_c l[c],

    and its gradient is dL/dx_c = softmax(x)_c * sum(a) - a_c. 'mean' divides by the sum of
    w[t] over non-ignored elements (PyTorch's rule, for the smoothing term too).
    """

    def forward(
        self, x, target=None, weight=None, ignore_index=-100, reduction="mean", smoothing=0.0
    ):
        z = _move_classes_last(x)
        n_classes = z.shape[-1]
        logp = _log_softmax(z, -1)
        keep = target != ignore_index
        t = np.where(keep, target, 0)[..., None]  # ignored rows gather class 0, then weigh 0
        wt = keep.astype(x.dtype) if weight is None else keep * weight[t[..., 0]]
        # np.where, not a product with the 0/1 mask: an ignored row may hold -inf, and 0 * -inf
        # would be NaN.
        picked = np.where(keep, np.take_along_axis(logp, t, -1)[..., 0], 0)
        loss = (-(1 - smoothing)) * wt * picked
        if smoothing:
            lsum = logp.sum(-1) if weight is None else logp @ weight
            loss -= (smoothing / n_classes) * np.where(keep, lsum, 0)
        out, self.scale = _reduce(loss, wt, reduction)
        self.saved = (logp, t, wt, keep, weight)
        self.smoothing = smoothing
        self.ndim = x.ndim
        return out.astype(x.dtype, copy=False)

    def backward(self, g):
        logp, t, wt, keep, weight = self.saved
        e, n_classes = self.smoothing, logp.shape[-1]
        a_sum = (1 - e) * wt  # sum over classes of a: (1 - e) w[t] + (e / C) sum(w)
        if e:
            a_sum = a_sum + (e / n_classes) * keep * (n_classes if weight is None else weight.sum())
        grad = np.exp(logp)
        grad *= a_sum[..., None]
        picked = np.take_along_axis(grad, t, -1) - ((1 - e) * wt)[..., None]
        np.put_along_axis(grad, t, picked, -1)
        if e:
            grad -= (e / n_classes) * keep[..., None] * (1 if weight is None else weight)
        scale = g if self.scale is None else g * self.scale
        grad *= np.asarray(scale, dtype=grad.dtype)[..., None]
        return (_move_classes_back(grad, self.ndim),)

    def jvp(self, out, t):
        return _loss_jvp(self, out, t)


class NLLLoss(Function):
    """Negative log-likelihood of log-probabilities: loss = -w[t] x[t] (classes on axis 1)."""

    def forward(self, x, target=None, weight=None, ignore_index=-100, reduction="mean"):
        z = _move_classes_last(x)
        keep = target != ignore_index
        t = np.where(keep, target, 0)[..., None]
        wt = keep.astype(x.dtype) if weight is None else keep * weight[t[..., 0]]
        loss = -wt * np.where(keep, np.take_along_axis(z, t, -1)[..., 0], 0)
        out, self.scale = _reduce(loss, wt, reduction)
        self.saved = (z.shape, t, wt)
        self.ndim = x.ndim
        return out.astype(x.dtype, copy=False)

    def backward(self, g):
        shape, t, wt = self.saved
        scale = g if self.scale is None else g * self.scale
        grad = np.zeros(shape, dtype=g.dtype)
        np.put_along_axis(grad, t, (-wt * scale).astype(g.dtype)[..., None], -1)
        return (_move_classes_back(grad, self.ndim),)

    def jvp(self, out, t):
        return _loss_jvp(self, out, t)


class BCEWithLogits(Function):
    """Binary cross-entropy on logits x against targets y in [0, 1], elementwise:

        loss = (1 - y) x + (1 + (p - 1) y) softplus(-x)        (p = pos_weight, default 1)

    written with softplus(-x) = max(-x, 0) + log1p(exp(-|x|)) so no exp can overflow.
    dL/dx = (1 - y) - (1 + (p - 1) y) sigmoid(-x),  dL/dy = -x + (p - 1) softplus(-x).
    """

    def forward(self, x, y, pos_weight=None):
        sp = _softplus_neg(x)
        coef = 1 if pos_weight is None else 1 + (pos_weight - 1) * y
        self.saved = (x, y, sp, coef, pos_weight)
        return (1 - y) * x + coef * sp

    def backward(self, g):
        x, y, sp, coef, pw = self.saved
        gx = g * ((1 - y) - coef * kernels.sigmoid(-x)) if self.needs[0] else None
        gy = None
        if self.needs[1]:
            gy = g * (-x if pw is None else -x + (pw - 1) * sp)
        return gx, gy

    def jvp(self, out, tx, ty):
        x, y, sp, coef, pw = self.saved
        dx = None if tx is None else (1 - y) - coef * kernels.sigmoid(-x)
        dy = None if ty is None else (-x if pw is None else -x + (pw - 1) * sp)
        return plus(times(tx, dx, out.ndim), times(ty, dy, out.ndim))


class Embedding(Function):
    """out = weight[idx] (a row gather); backward scatter-adds each output row's gradient into
    the row it came from (a token used k times gets k contributions). The padding row, if any,
    receives no gradient."""

    def forward(self, weight, idx=None, padding_idx=None):
        self.idx = idx
        self.padding_idx = padding_idx
        self.w_shape = weight.shape
        return np.take(weight, idx, axis=0)

    def backward(self, g):
        gw = np.zeros(self.w_shape, dtype=g.dtype)
        kernels.index_add(gw, self.idx, g)
        if self.padding_idx is not None:
            gw[self.padding_idx] = 0
        return (gw,)

    def jvp(self, out, t):
        rows = np.take(t, self.idx, axis=1)
        if self.padding_idx is not None:  # the padding row is a constant, as in backward
            rows = rows * (self.idx != self.padding_idx)[..., None]
        return rows


class Dropout(Function):
    """Inverted dropout: zero each element with probability p and scale the survivors by
    1 / (1 - p), so the expected output equals the input and evaluation needs no rescaling."""

    def forward(self, x, p=0.5):
        if p >= 1:
            mask = np.zeros_like(x)
        else:
            keep = _random.generator().random(x.shape, dtype=np.float32) >= p
            mask = keep * x.dtype.type(1 / (1 - p))
        self.saved = mask
        return x * mask

    def backward(self, g):
        return (g * self.saved,)

    def jvp(self, out, t):
        return t * self.saved


class Normalize(Function):
    """(x - mean) / sqrt(var + eps) over the last `n_axes` axes (LayerNorm before its affine).

    With xh the output and r = 1/sqrt(var + eps):  dL/dx = r (g - mean(g) - xh mean(g xh)).
    """

    def forward(self, x, n_axes=1, eps=1e-5):
        self.axes = tuple(range(-n_axes, 0))
        xc = x - x.mean(axis=self.axes, keepdims=True)
        rstd = 1 / np.sqrt((xc * xc).mean(axis=self.axes, keepdims=True) + x.dtype.type(eps))
        out = xc * rstd
        self.saved = (out, rstd)
        return out

    def backward(self, g):
        xh, rstd = self.saved
        mean_g = g.mean(axis=self.axes, keepdims=True)
        mean_gx = (g * xh).mean(axis=self.axes, keepdims=True)
        return (rstd * (g - mean_g - xh * mean_gx),)

    def jvp(self, out, t):
        # The Jacobian is symmetric: the tangent maps as backward maps a gradient.
        xh, rstd = self.saved
        mean_t = t.mean(axis=self.axes, keepdims=True)
        return rstd * (t - mean_t - xh * (t * xh).mean(axis=self.axes, keepdims=True))
