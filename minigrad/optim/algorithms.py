"""SGD, Adam, AdamW, RMSprop and Adagrad: each `_update` is the algorithm box of PyTorch's
documentation for one parameter, line by line (g is the gradient, p the parameter, t the step).
"""

import numpy as np

from .optimizer import Optimizer, _check


class SGD(Optimizer):
    """g <- g + wd p;  b <- momentum b + (1 - dampening) g  (b = g at the first step);
    g <- g + momentum b if nesterov else b;  p <- p - lr g.   maximize negates the gradient
    first (so weight decay still pulls towards zero), as PyTorch's implementation does."""

    def __init__(
        self,
        params,
        lr=1e-3,
        momentum=0.0,
        dampening=0.0,
        weight_decay=0.0,
        nesterov=False,
        *,
        maximize=False,
    ):
        _check("lr", lr, 0)
        _check("momentum", momentum, 0)
        _check("weight_decay", weight_decay, 0)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov momentum needs momentum > 0 and dampening = 0")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _update(self, p, g, state, group):
        momentum, wd = group["momentum"], group["weight_decay"]
        if group["maximize"]:
            g = -g
        if wd:
            g = g + wd * p._data
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(g, copy=True)
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * g
            g = g + momentum * buf if group["nesterov"] else buf
        p._data -= group["lr"] * g


class Adam(Optimizer):
    """m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  (amsgrad: vmax <- max(vmax, v), used
    for v);  p <- p - lr m_hat / (sqrt(v_hat) + eps), with m_hat = m / (1 - b1^t) and
    v_hat = v / (1 - b2^t).  weight_decay adds wd p to g (L2 penalty; AdamW decouples it)."""

    decoupled = False

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        amsgrad=False,
        *,
        maximize=False,
    ):
        _check("lr", lr, 0)
        _check("eps", eps, 0)
        _check("beta1", betas[0], 0, 1)
        _check("beta2", betas[1], 0, 1)
        _check("weight_decay", weight_decay, 0)
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _update(self, p, g, state, group):
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        b1, b2 = group["betas"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p._data)
            state["exp_avg_sq"] = np.zeros_like(p._data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(p._data)
        state["step"] += 1
        t = state["step"]
        if group["maximize"]:
            g = -g
        if wd and self.decoupled:
            p._data *= 1 - lr * wd  # AdamW: decay the weights directly, outside the moments
        elif wd:
            g = g + wd * p._data
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * (g * g)
        if group["amsgrad"]:
            v = np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        denom = np.sqrt(v) / np.sqrt(1 - b2**t) + eps
        p._data -= (lr / (1 - b1**t)) * m / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): p <- p (1 - lr wd) before the
    Adam step, instead of adding wd p to the gradient."""

    decoupled = True

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=1e-2,
        amsgrad=False,
        *,
        maximize=False,
    ):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)


class RMSprop(Optimizer):
    """v <- alpha v + (1 - alpha) g^2;  centered: a <- alpha a + (1 - alpha) g, v~ = v - a^2;
    with momentum: b <- momentum b + g / (sqrt(v~) + eps), p <- p - lr b;
    else p <- p - lr g / (sqrt(v~) + eps)."""

    def __init__(
        self,
        params,
        lr=1e-2,
        alpha=0.99,
        eps=1e-8,
        weight_decay=0.0,
        momentum=0.0,
        centered=False,
        *,
        maximize=False,
    ):
        _check("lr", lr, 0)
        _check("alpha", alpha, 0)
        _check("eps", eps, 0)
        _check("momentum", momentum, 0)
        _check("weight_decay", weight_decay, 0)
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _update(self, p, g, state, group):
        alpha, momentum, wd = group["alpha"], group["momentum"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["square_avg"] = np.zeros_like(p._data)
            if momentum > 0:
                state["momentum_buffer"] = np.zeros_like(p._data)
            if group["centered"]:
                state["grad_avg"] = np.zeros_like(p._data)
        state["step"] += 1
        if group["maximize"]:
            g = -g
        if wd:
            g = g + wd * p._data
        v = state["square_avg"]
        v *= alpha
        v += (1 - alpha) * (g * g)
        if group["centered"]:
            a = state["grad_avg"]
            a *= alpha
            a += (1 - alpha) * g
            # v - a^2 >= 0 in exact arithmetic; clamp so rounding cannot make sqrt NaN.
            avg = np.sqrt(np.maximum(v - a * a, 0)) + group["eps"]
        else:
            avg = np.sqrt(v) + group["eps"]
        if momentum > 0:
            buf = state["momentum_buffer"]
            buf *= momentum
            buf += g / avg
            p._data -= group["lr"] * buf
        else:
            p._data -= group["lr"] * (g / avg)


class Adagrad(Optimizer):
    """lr_t = lr / (1 + (t - 1) lr_decay);  s <- s + g^2 (s starts at
    initial_accumulator_value);  p <- p - lr_t g / (sqrt(s) + eps)."""

    def __init__(
        self,
        params,
        lr=1e-2,
        lr_decay=0.0,
        weight_decay=0.0,
        initial_accumulator_value=0.0,
        eps=1e-10,
        *,
        maximize=False,
    ):
        _check("lr", lr, 0)
        _check("lr_decay", lr_decay, 0)
        _check("weight_decay", weight_decay, 0)
        _check("initial_accumulator_value", initial_accumulator_value, 0)
        _check("eps", eps, 0)
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            eps=eps,
            initial_accumulator_value=initial_accumulator_value,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _update(self, p, g, state, group):
        if not state:
            state["step"] = 0
            state["sum"] = np.full_like(p._data, group["initial_accumulator_value"])
        state["step"] += 1
        if group["maximize"]:
            g = -g
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p._data
        lr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        s = state["sum"]
        s += g * g
        p._data -= lr * (g / (np.sqrt(s) + group["eps"]))
