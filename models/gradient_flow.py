"""Gradient flow through a recurrent layer, measured in one backward.

`inspect(layer, x, loss_fn)` runs a `models.RNN`, `LSTM` or `GRU` layer over x step by step with
the layer's own step equations, calls `backward()` once on loss_fn(output) and reports:

- `state_grad_norms[(k, d)]`: ||dL/dh_t|| for every step t (T, B), layer k and direction d:
  the gradient that reached each hidden state, through every later step;
- `contributions[name]`: for each parameter, the norm of what step t added to its gradient
  (T,), and `step_grads[name]` those terms themselves (T, *shape): the layer reads each
  parameter at every step through its own per-step alias, so the T aliases' gradients are
  the T terms whose sum BPTT returns;
- `saturation[(k, d)]`: per step, the share of sigmoid gates within 0.01 of 0 or 1 and of tanh
  units beyond |0.99|, where the derivative is nearly zero;
- `jacobian`: for one layer and direction, the singular values of dh_t/dh_k (t the last step
  processed, every k), from vjps of h_t, beside the bound prod_{i=k+1..t} ||J_i||_2, J_i the
  Jacobian of one step's state (h, or the LSTM's (h, c)) from a jvp (for the tanh RNN,
  J_i = diag(1 - h_i^2) W, the lecture notes' gamma_i = ||J_i||; Minlie Huang, "Recurrent
  Neural Networks", lecture slides), and, for the tanh RNN, Pascanu et al.'s (2013)
  ||W||_2^(t-k).

Bengio et al. (1994) and Pascanu et al. (2013) explain the vanishing: each step multiplies the
gradient by a Jacobian whose norm is below one; this module lets one watch it happen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import minigrad as mg
import minigrad.nn.functional as F

from .layers import GRU, LSTM, RNN

__all__ = ["inspect", "GradientFlow"]

NEAR = 0.01  # a sigmoid within this of 0 or 1 counts as saturated
TANH_EDGE = 0.99  # a tanh beyond this in absolute value counts as saturated


@dataclass
class GradientFlow:
    loss: float
    output: np.ndarray
    state_grad_norms: dict = field(default_factory=dict)
    contributions: dict = field(default_factory=dict)
    step_grads: dict = field(default_factory=dict)
    saturation: dict = field(default_factory=dict)
    jacobian: dict = field(default_factory=dict)

    def summary(self) -> str:
        """A few lines a person can read: where the gradient is, and how it decays."""
        lines = [f"loss {self.loss:.4g}"]
        for (k, d), norms in self.state_grad_norms.items():
            g = _geo_mean(norms, axis=1)
            sat = self.saturation[(k, d)]
            lines.append(
                f"layer {k} direction {d}: ||dL/dh_t|| from {g[0]:.3g} (first step) to "
                f"{g[-1]:.3g} (last); saturated sigmoid gates {np.mean(sat['sigmoid']):.1%}, "
                f"tanh units {np.mean(sat['tanh']):.1%}"
            )
        j = self.jacobian
        if j:
            s = _geo_mean(j["singular_values"][..., 0], axis=1)
            lines.append(
                f"layer {j['layer']} direction {j['direction']}: largest singular value of "
                f"dh_t/dh_k {s[-1]:.3g} at lag 0 ... {s[0]:.3g} at lag {len(s) - 1}; the product "
                f"bound holds: {bool(j['bound_holds'])}"
            )
        return "\n".join(lines)


def _geo_mean(a, axis):
    a = np.maximum(np.asarray(a, dtype=np.float64), 1e-300)  # float32 would flush 1e-300 to 0
    return np.exp(np.mean(np.log(a), axis=axis))


def _alias(p):
    """A leaf sharing p's memory: its gradient is what one use of p contributes."""
    if p is None:
        return None
    a = p.detach()
    a.requires_grad = True
    return a


def inspect(layer, x, loss_fn, jacobian_of=(0, 0)) -> GradientFlow:
    """The gradient flow of loss_fn(layer(x)[0]) (see the module docstring). x: (T, B, in),
    or (B, T, in) for a batch_first layer; loss_fn(output) -> a scalar tensor;
    jacobian_of: the (layer, direction) whose Jacobians dh_t/dh_k are measured, or None."""
    if not isinstance(layer, (RNN, LSTM, GRU)):
        raise TypeError(f"inspect: expected a models.RNN, LSTM or GRU, got {type(layer).__name__}")
    if getattr(layer, "nonlinearity", "tanh") != "tanh":
        raise ValueError("inspect: only tanh RNNs (and LSTM, GRU) are supported")
    x = mg.as_tensor(x)
    if x.ndim != 3:
        raise ValueError(f"inspect: expected a batched 3-D input, got shape {x.shape}")
    x = x.transpose(0, 1) if layer.batch_first else x
    D = layer.num_directions
    report = GradientFlow(loss=0.0, output=None)
    runs, layer_input = {}, x
    for k in range(layer.num_layers):
        outs = []
        for d in range(D):
            runs[(k, d)] = run = _unroll(layer, layer_input, k, d)
            outs.append(mg.stack(run["h"]))
        layer_input = outs[0] if D == 1 else mg.cat(outs, axis=2)
        if layer.dropout and layer.training and k < layer.num_layers - 1:
            layer_input = F.dropout(layer_input, layer.dropout, training=True)
    output = layer_input.transpose(0, 1) if layer.batch_first else layer_input
    loss = loss_fn(output)
    loss.backward(retain_graph=jacobian_of is not None)  # the Jacobians backpropagate again
    report.loss, report.output = float(loss.item()), output.numpy()
    for (k, d), run in runs.items():
        report.state_grad_norms[(k, d)] = np.stack(
            [
                np.linalg.norm(h.grad, axis=-1) if h.grad is not None else np.zeros(h.shape[0])
                for h in run["h"]
            ]
        )
        for name, aliases in run["aliases"].items():
            grads = np.stack([np.zeros(a.shape) if a.grad is None else a.grad for a in aliases])
            report.step_grads[name] = grads
            report.contributions[name] = np.linalg.norm(grads.reshape(len(grads), -1), axis=1)
        report.saturation[(k, d)] = _saturation(layer, run)
    if jacobian_of is not None:
        report.jacobian = _jacobians(layer, runs[tuple(jacobian_of)], *jacobian_of)
    return report


def _unroll(layer, x, k, d) -> dict:
    """Layer k, direction d, one step at a time with per-step parameter aliases. Returns the
    states in time order, the projected inputs and the aliases, by parameter name."""
    weights = layer.layer_weights(k, d)
    suffix = "_reverse" if d == 1 else ""
    names = [f"{stem}_l{k}{suffix}" for stem in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    T, B, H = x.shape[0], x.shape[1], layer.hidden_size
    state = tuple(mg.zeros(B, H, dtype=x.dtype) for _ in range(layer.n_states))
    hs, cs, gis, prev = [None] * T, [None] * T, [None] * T, [None] * T
    aliases = {n: [None] * T for n, w in zip(names, weights, strict=True) if w is not None}
    for t in range(T) if d == 0 else range(T - 1, -1, -1):
        w_ih, w_hh, b_ih, b_hh = [_alias(w) for w in weights]
        for n, a in zip(names, (w_ih, w_hh, b_ih, b_hh), strict=True):
            if a is not None:
                aliases[n][t] = a
        gi = F.linear(x[t], w_ih, layer._input_bias(b_ih, b_hh))
        prev[t] = state
        state = layer._step(gi, state, layer._recurrent(w_hh, b_hh))
        state[0].retain_grad()
        hs[t], gis[t] = state[0], gi
        cs[t] = state[1] if len(state) > 1 else None
    return {"h": hs, "c": cs, "gi": gis, "prev": prev, "aliases": aliases, "weights": weights}


def _sigmoid(a):
    return 0.5 * (1 + np.tanh(0.5 * a))  # no overflow for large |a|


def _saturation(layer, run) -> dict:
    """Per step: the share of saturated sigmoid gates and of saturated tanh units."""
    w_hh, b_hh = run["weights"][1].numpy(), run["weights"][3]
    b_hh = 0 if b_hh is None else b_hh.numpy()
    H, sig, tanh = layer.hidden_size, [], []
    for t, gi in enumerate(run["gi"]):
        h_prev = run["prev"][t][0].numpy()
        rec = h_prev @ w_hh.T
        if isinstance(layer, LSTM):  # b_hh is inside gi already
            a = gi.numpy() + rec
            gates = _sigmoid(np.concatenate([a[:, : 2 * H], a[:, 3 * H :]], axis=1))
            units = np.concatenate(
                [np.tanh(a[:, 2 * H : 3 * H]), np.tanh(run["c"][t].numpy())], axis=1
            )
        elif isinstance(layer, GRU):
            rz = _sigmoid(gi.numpy()[:, : 2 * H] + rec[:, : 2 * H] + np.asarray(b_hh)[..., : 2 * H])
            gates = rz
            if layer.reset_after:
                n = np.tanh(
                    gi.numpy()[:, 2 * H :]
                    + rz[:, :H] * (rec[:, 2 * H :] + np.asarray(b_hh)[..., 2 * H :])
                )
            else:
                n = np.tanh(
                    gi.numpy()[:, 2 * H :]
                    + (rz[:, :H] * h_prev) @ w_hh[2 * H :].T
                    + np.asarray(b_hh)[..., 2 * H :]
                )
            units = n
        else:
            gates, units = None, run["h"][t].numpy()
        sig.append(0.0 if gates is None else float(np.mean((gates < NEAR) | (gates > 1 - NEAR))))
        tanh.append(float(np.mean(np.abs(units) > TANH_EDGE)))
    return {"sigmoid": np.array(sig), "tanh": np.array(tanh)}


def _jacobians(layer, run, k, d) -> dict:
    """Singular values of dh_t/dh_j for the last step t processed and every j, by vjps of h_t
    (one backward per unit of h_t, all sequences of the batch at once), and the bound from
    each step's own state Jacobian, by jvps (one batched jvp per step)."""
    order = list(range(len(run["h"]))) if d == 0 else list(range(len(run["h"]) - 1, -1, -1))
    hs = [run["h"][t] for t in order]  # in processing order
    B, H = hs[-1].shape
    # Rows of dh_t/dh_j for every j: retained gradients after a backward of e_u from h_t.
    rows = np.zeros((len(hs), B, H, H))
    for u in range(H):
        for h in hs:
            h.grad = None
        cot = np.zeros((B, H), hs[-1].dtype)
        cot[:, u] = 1
        hs[-1].backward(cot, retain_graph=True)
        for j, h in enumerate(hs):
            rows[j, :, u, :] = 0 if h.grad is None else h.grad
    singular = np.linalg.svd(rows, compute_uv=False)  # (T, B, H), by lag from the end
    # Each step's Jacobian of the whole state (h, or the LSTM's (h, c)) by one batched jvp:
    # a direction per state unit. Its norm bounds the step's factor in dh_t/dh_j.
    step_norms = np.zeros((len(hs), B))
    weights = run["weights"]
    recurrent = layer._recurrent(weights[1], weights[3])
    n = layer.n_states
    eye = np.broadcast_to(np.eye(n * H, dtype=hs[0].dtype)[:, None, :], (n * H, B, n * H))
    for i, t in enumerate(order):
        state, gi = run["prev"][t], run["gi"][t].detach()
        with mg.no_grad():
            _, tangents = mg.jvp(
                lambda *s, gi=gi: layer._step(gi, s, recurrent),
                tuple(s.detach() for s in state),
                tuple(eye[..., m * H : (m + 1) * H] for m in range(n)),
                batched=True,
            )
        jac = np.concatenate([np.transpose(tn.numpy(), (1, 2, 0)) for tn in tangents], axis=1)
        step_norms[i] = np.linalg.norm(jac, ord=2, axis=(-2, -1))  # (B,): ||J_i||_2
    # prod_{i=j+1..t} ||J_i|| for j = 0..t (empty product 1 at j = t)
    bound = np.concatenate([np.cumprod(step_norms[:0:-1], axis=0)[::-1], np.ones((1, B))])
    out = {
        "layer": k,
        "direction": d,
        "singular_values": singular,
        "step_norms": step_norms,
        "product_bound": bound,
        "bound_holds": bool((singular[..., 0] <= bound * (1 + 1e-9) + 1e-12).all()),
    }
    if isinstance(layer, RNN):  # Pascanu et al.: ||W||^(t-j), since |tanh'| <= 1
        w = np.linalg.norm(weights[1].numpy(), 2)
        out["pascanu_bound"] = w ** np.arange(len(hs) - 1, -1, -1, dtype=np.float64)
    return out
