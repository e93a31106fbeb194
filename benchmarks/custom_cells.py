"""Two LSTM variants that no library ships as a layer, for torch_peers.py --custom: each written
as plain minigrad ops in a step function run by `mg.fuse(step).scan(xs, (h0, c0), weights)`,
the way a user writes a new cell (docs/fusion.md), with a twin in torch ops that serves only
as its float64 reference (the same equations and weights; never timed).

  minigrad_peephole   peephole LSTM (Gers & Schmidhuber 2000), gates i, f, g, o as PyTorch:
                        i = sigma(a_i + p_i * c_{t-1}),  f = sigma(a_f + p_f * c_{t-1})
                        c_t = f * c_{t-1} + i * tanh(a_g)
                        o = sigma(a_o + p_o * c_t),      h_t = o * tanh(c_t)
                      a = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh; p_i, p_f, p_o of shape (H,)
  minigrad_layernorm  layer-normalised LSTM (Ba, Kiros & Hinton 2016, "Layer Normalization",
                      section 3.2's LSTM, in PyTorch's gate order i, f, g, o):
                        a = LN(W_hh h_{t-1}; gamma_hh, beta_hh) + LN(W_ih x_t; gamma_ih, beta_ih)
                            + b_ih + b_hh
                        c_t = sigma(a_f) * c_{t-1} + sigma(a_i) * tanh(a_g)
                        h_t = sigma(a_o) * tanh(LN(c_t; gamma_c, beta_c))
                      LN(z; gamma, beta) = gamma * (z - mean(z)) / sqrt(var(z) + 1e-5) + beta,
                      mean and (biased) variance over the last axis: all 4H pre-activations for
                      the two gate terms, the H cells for c_t. LN(W_ih x_t) needs no state, so
                      it runs on all T steps before the loop, as the input projection does.

Their extra parameters come from a seeded generator and are saved with the other weights:
peepholes from U(-1/sqrt(H), 1/sqrt(H)) as the LSTM's weights, layer-norm gains from U(0.9, 1.1)
and shifts from U(-0.1, 0.1) (not exactly 1 and 0, so that the float64 check would see a gain or a
shift dropped or swapped). They add no matrix product: their GEMM floor is the LSTM's.
"""

import numpy as np

LN_EPS = 1e-5
CUSTOM = ["minigrad_peephole", "minigrad_layernorm"]
TWINS = {"minigrad_peephole": "torch_peephole", "minigrad_layernorm": "torch_layernorm"}
PEEPHOLE_KEYS = ("cell.peephole_i", "cell.peephole_f", "cell.peephole_o")
LAYERNORM_KEYS = (
    "cell.ln_ih.weight",
    "cell.ln_ih.bias",
    "cell.ln_hh.weight",
    "cell.ln_hh.bias",
    "cell.ln_c.weight",
    "cell.ln_c.bias",
)
EXTRA_KEYS = {
    "minigrad_peephole": PEEPHOLE_KEYS,
    "torch_peephole": PEEPHOLE_KEYS,
    "minigrad_layernorm": LAYERNORM_KEYS,
    "torch_layernorm": LAYERNORM_KEYS,
}
_PEEPHOLE_RECURRENT = ("rnn.weight_hh_l0", *PEEPHOLE_KEYS)
_LAYERNORM_RECURRENT = (
    "rnn.weight_hh_l0",
    "cell.ln_hh.weight",
    "cell.ln_hh.bias",
    "cell.ln_c.weight",
    "cell.ln_c.bias",
)


def extra_parameters(H: int, seed: int) -> dict:
    """The peepholes and layer-norm parameters, drawn as the module docstring says."""
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(H)
    params = {key: rng.uniform(-bound, bound, H) for key in PEEPHOLE_KEYS}
    for key in LAYERNORM_KEYS:
        width = H if ".ln_c." in key else 4 * H
        low, high = (0.9, 1.1) if key.endswith(".weight") else (-0.1, 0.1)
        params[key] = rng.uniform(low, high, width)
    return params


def minigrad_cells():
    """name -> (step of the scan, its gate input for all T steps, the recurrent weights' keys)."""
    import minigrad.nn.functional as F

    def peephole_step(x, state, weights):
        h, c = state
        w_hh, p_i, p_f, p_o = weights
        a_i, a_f, a_g, a_o = (x + F.linear(h, w_hh)).chunk(4, axis=-1)
        i = (a_i + p_i * c).sigmoid()
        f = (a_f + p_f * c).sigmoid()
        c = f * c + i * a_g.tanh()
        o = (a_o + p_o * c).sigmoid()
        return o * c.tanh(), c

    def layernorm_step(x, state, weights):
        h, c = state
        w_hh, gamma_hh, beta_hh, gamma_c, beta_c = weights
        recurrent = F.layer_norm(F.linear(h, w_hh), w_hh.shape[0], gamma_hh, beta_hh, LN_EPS)
        a_i, a_f, a_g, a_o = (x + recurrent).chunk(4, axis=-1)
        c = a_f.sigmoid() * c + a_i.sigmoid() * a_g.tanh()
        normed = F.layer_norm(c, c.shape[-1], gamma_c, beta_c, LN_EPS)
        return a_o.sigmoid() * normed.tanh(), c

    def lstm_input(w, x):
        return F.linear(x, w["rnn.weight_ih_l0"], w["rnn.bias_ih_l0"] + w["rnn.bias_hh_l0"])

    def layernorm_input(w, x):
        projected = F.linear(x, w["rnn.weight_ih_l0"])
        normed = F.layer_norm(
            projected, projected.shape[-1], w["cell.ln_ih.weight"], w["cell.ln_ih.bias"], LN_EPS
        )
        return normed + (w["rnn.bias_ih_l0"] + w["rnn.bias_hh_l0"])

    return {
        "minigrad_peephole": (peephole_step, lstm_input, _PEEPHOLE_RECURRENT),
        "minigrad_layernorm": (layernorm_step, layernorm_input, _LAYERNORM_RECURRENT),
    }


def minigrad_loss(peer, params, H, dtype, B, V):
    """(loss_of(tokens, targets), the parameters as minigrad tensors by name) for a custom cell:
    plain minigrad ops, the time loop one scan node."""
    import minigrad as mg
    import minigrad.nn.functional as F
    from minigrad.fusion.scan import scan_reason

    mg_dtype = mg.float64 if dtype == "float64" else mg.float32
    w = {k: mg.tensor(v, dtype=mg_dtype, requires_grad=True) for k, v in params.items()}
    cell_step, gate_input, recurrent_keys = minigrad_cells()[peer]
    program = mg.fuse(cell_step)
    recurrent = tuple(w[k] for k in recurrent_keys)

    def loss_of(tokens, targets):
        gi = gate_input(w, F.embedding(tokens, w["embed.weight"]))
        zeros = mg.zeros(B, H, dtype=mg_dtype)
        scanned = program.scan(gi, (zeros, zeros), recurrent)
        if scanned is None:  # time the scan or nothing: an unroll would be another peer
            why = scan_reason(program, gi, (zeros, zeros), recurrent)
            raise RuntimeError(f"{peer}: the step cannot be scanned: {why}")
        logits = F.linear(scanned[0], w["fc.weight"], w["fc.bias"])
        return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))

    return loss_of, w


def torch_twins(torch, lstm_input):
    """The twins in torch ops, as torch_peers.py's cells: name -> (cell(x_t, *state,
    *weights) -> new state tuple, the recurrent weights' keys, the gate input for all T steps)."""
    layer_norm = torch.nn.functional.layer_norm

    def peephole_cell(gi, h, c, w_hh, p_i, p_f, p_o):
        a_i, a_f, a_g, a_o = (gi + h @ w_hh.t()).chunk(4, 1)
        i = (a_i + p_i * c).sigmoid()
        f = (a_f + p_f * c).sigmoid()
        c = f * c + i * a_g.tanh()
        o = (a_o + p_o * c).sigmoid()
        return o * c.tanh(), c

    def layernorm_cell(gi, h, c, w_hh, gamma_hh, beta_hh, gamma_c, beta_c):
        a = gi + layer_norm(h @ w_hh.t(), gamma_hh.shape, gamma_hh, beta_hh, LN_EPS)
        a_i, a_f, a_g, a_o = a.chunk(4, 1)
        c = a_f.sigmoid() * c + a_i.sigmoid() * a_g.tanh()
        return a_o.sigmoid() * layer_norm(c, gamma_c.shape, gamma_c, beta_c, LN_EPS).tanh(), c

    def layernorm_input(w, x):
        gamma, beta = w["cell.ln_ih.weight"], w["cell.ln_ih.bias"]
        normed = layer_norm(x @ w["rnn.weight_ih_l0"].t(), gamma.shape, gamma, beta, LN_EPS)
        return normed + w["rnn.bias_ih_l0"] + w["rnn.bias_hh_l0"]

    return {
        "torch_peephole": (peephole_cell, _PEEPHOLE_RECURRENT, lstm_input),
        "torch_layernorm": (layernorm_cell, _LAYERNORM_RECURRENT, layernorm_input),
    }
