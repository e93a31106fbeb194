"""The zero-framework-overhead baseline: char-LM training steps with BPTT written by hand in NumPy.

Embedding -> recurrent layer -> Linear -> mean cross-entropy over T*B tokens; the layer an LSTM,
a GRU (PyTorch's form or Cho et al.'s) or an Elman RNN (tanh or relu), with PyTorch's equations
and parameter layout. Each function returns the loss, the gradients (named as the
minigrad/PyTorch parameters) and the final state. It uses the same large-matmul tricks a careful
hand implementation would: one input projection for all steps, and one weight gradient product
over all T*B rows.
"""

import numpy as np


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _head_forward_backward(p, hs, targets):
    """Linear + mean cross-entropy on the hidden states hs (T, B, H); returns loss, dhs, grads."""
    T, B, H = hs.shape
    flat = hs.reshape(T * B, H)
    logits = flat @ p["fc.weight"].T + p["fc.bias"]
    shifted = logits - logits.max(axis=1, keepdims=True)
    logz = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    logp = shifted - logz
    n = T * B
    y = targets.reshape(n)
    loss = -logp[np.arange(n), y].mean()
    dlogits = np.exp(logp)
    dlogits[np.arange(n), y] -= 1.0
    dlogits /= n
    grads = {"fc.weight": dlogits.T @ flat, "fc.bias": dlogits.sum(axis=0)}
    return loss, (dlogits @ p["fc.weight"]).reshape(T, B, H), grads


def _embedding_backward(p, tokens, dx, grads):
    # A one-hot product: the fastest pure-NumPy scatter-add for a small vocabulary.
    flat = tokens.reshape(-1)
    onehot = np.zeros((p["embed.weight"].shape[0], flat.size), dx.dtype)
    onehot[flat, np.arange(flat.size)] = 1
    grads["embed.weight"] = onehot @ dx.reshape(flat.size, -1)


def lstm_lm(p, tokens, targets, h0, c0):
    """tokens, targets: (T, B) ints; h0, c0: (B, H). PyTorch gate order i, f, g, o."""
    T, B = tokens.shape
    H = h0.shape[1]
    x = p["embed.weight"][tokens]  # (T, B, E)
    xp = (
        x.reshape(T * B, -1) @ p["rnn.weight_ih_l0"].T + p["rnn.bias_ih_l0"] + p["rnn.bias_hh_l0"]
    ).reshape(T, B, 4 * H)
    w_hh = p["rnn.weight_hh_l0"]
    hs = np.empty((T + 1, B, H), h0.dtype)
    cs = np.empty((T + 1, B, H), h0.dtype)
    acts = np.empty((T, B, 4 * H), h0.dtype)  # i, f, g, o after their nonlinearities
    hs[0], cs[0] = h0, c0
    for t in range(T):
        a = xp[t] + hs[t] @ w_hh.T
        acts[t, :, : 2 * H] = _sigmoid(a[:, : 2 * H])
        acts[t, :, 2 * H : 3 * H] = np.tanh(a[:, 2 * H : 3 * H])
        acts[t, :, 3 * H :] = _sigmoid(a[:, 3 * H :])
        i, f, g, o = np.split(acts[t], 4, axis=1)
        cs[t + 1] = f * cs[t] + i * g
        hs[t + 1] = o * np.tanh(cs[t + 1])
    loss, dhs, grads = _head_forward_backward(p, hs[1:], targets)

    da = np.empty_like(acts)  # gradients of the pre-activations
    dh_next = np.zeros_like(h0)
    dc_next = np.zeros_like(c0)
    for t in reversed(range(T)):
        i, f, g, o = np.split(acts[t], 4, axis=1)
        dh = dhs[t] + dh_next
        tc = np.tanh(cs[t + 1])
        dc = dc_next + dh * o * (1 - tc * tc)
        da[t, :, :H] = dc * g * i * (1 - i)
        da[t, :, H : 2 * H] = dc * cs[t] * f * (1 - f)
        da[t, :, 2 * H : 3 * H] = dc * i * (1 - g * g)
        da[t, :, 3 * H :] = dh * tc * o * (1 - o)
        dh_next = da[t] @ w_hh
        dc_next = dc * f
    _recurrent_weight_grads(p, grads, x, hs[:-1], da)
    _embedding_backward(
        p, tokens, (da.reshape(T * B, -1) @ p["rnn.weight_ih_l0"]).reshape(x.shape), grads
    )
    return loss, grads, (hs[T], cs[T])


def gru_lm(p, tokens, targets, h0, reset_after=True):
    """The GRU, gates r, z, n; h' = (1 - z) * n + z * h. reset_after=True is PyTorch's form,
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); False is Cho et al.'s 2014 form,
    n = tanh(W_in x + b_in + W_hn (r * h) + b_hn). Both take the same parameters."""
    T, B = tokens.shape
    H = h0.shape[1]
    x = p["embed.weight"][tokens]
    xp = (x.reshape(T * B, -1) @ p["rnn.weight_ih_l0"].T + p["rnn.bias_ih_l0"]).reshape(T, B, 3 * H)
    w_hh, b_hh = p["rnn.weight_hh_l0"], p["rnn.bias_hh_l0"]
    hs = np.empty((T + 1, B, H), h0.dtype)
    hs[0] = h0
    # reset-before: r * h at every step, W_hn's input, kept for W_hn's gradient product
    rh = None if reset_after else np.empty((T, B, H), h0.dtype)
    saved = []
    for t in range(T):
        if reset_after:
            hp = hs[t] @ w_hh.T + b_hh
            r = _sigmoid(xp[t, :, :H] + hp[:, :H])
            z = _sigmoid(xp[t, :, H : 2 * H] + hp[:, H : 2 * H])
            hn = hp[:, 2 * H :]  # W_hn h + b_hn, for dr
            n = np.tanh(xp[t, :, 2 * H :] + r * hn)
        else:
            hp = hs[t] @ w_hh[: 2 * H].T + b_hh[: 2 * H]
            r = _sigmoid(xp[t, :, :H] + hp[:, :H])
            z = _sigmoid(xp[t, :, H : 2 * H] + hp[:, H:])
            np.multiply(r, hs[t], out=rh[t])
            n = np.tanh(xp[t, :, 2 * H :] + rh[t] @ w_hh[2 * H :].T + b_hh[2 * H :])
            hn = None  # dr needs h instead
        hs[t + 1] = (1 - z) * n + z * hs[t]
        saved.append((r, z, n, hn))
    loss, dhs, grads = _head_forward_backward(p, hs[1:], targets)

    dxp = np.empty((T, B, 3 * H), h0.dtype)  # d(input projection)
    # d(the recurrent products + b_hh): in the reset-before form the same as dxp
    dhp = np.empty((T, B, 3 * H), h0.dtype) if reset_after else dxp
    dh_next = np.zeros_like(h0)
    for t in reversed(range(T)):
        r, z, n, hn = saved[t]
        dh = dhs[t] + dh_next
        dn = dh * (1 - z) * (1 - n * n)
        dz = dh * (hs[t] - n) * z * (1 - z)
        if reset_after:
            dr = dn * hn * r * (1 - r)
        else:
            d_rh = dn @ w_hh[2 * H :]  # d(r * h)
            dr = d_rh * hs[t] * r * (1 - r)
        np.concatenate([dr, dz, dn], axis=1, out=dxp[t])
        if reset_after:
            np.concatenate([dr, dz, dn * r], axis=1, out=dhp[t])
            dh_next = dh * z + dhp[t] @ w_hh
        else:
            dh_next = dh * z + d_rh * r + dhp[t, :, : 2 * H] @ w_hh[: 2 * H]
    flat_dxp = dxp.reshape(T * B, -1)
    flat_dhp = dhp.reshape(T * B, -1)
    grads["rnn.weight_ih_l0"] = flat_dxp.T @ x.reshape(T * B, -1)
    grads["rnn.bias_ih_l0"] = flat_dxp.sum(axis=0)
    flat_h = hs[:-1].reshape(T * B, -1)
    if reset_after:
        grads["rnn.weight_hh_l0"] = flat_dhp.T @ flat_h
    else:  # W_hn multiplies r * h, not h
        grads["rnn.weight_hh_l0"] = np.concatenate(
            [flat_dhp[:, : 2 * H].T @ flat_h, flat_dhp[:, 2 * H :].T @ rh.reshape(T * B, -1)]
        )
    grads["rnn.bias_hh_l0"] = flat_dhp.sum(axis=0)
    _embedding_backward(p, tokens, (flat_dxp @ p["rnn.weight_ih_l0"]).reshape(x.shape), grads)
    return loss, grads, hs[T]


def rnn_lm(p, tokens, targets, h0, nonlinearity="tanh"):
    """Elman RNN: h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), f = tanh or relu (the IRNN's
    cell; its identity initialisation is the caller's)."""
    T, B = tokens.shape
    H = h0.shape[1]
    x = p["embed.weight"][tokens]
    xp = (
        x.reshape(T * B, -1) @ p["rnn.weight_ih_l0"].T + p["rnn.bias_ih_l0"] + p["rnn.bias_hh_l0"]
    ).reshape(T, B, H)
    w_hh = p["rnn.weight_hh_l0"]
    hs = np.empty((T + 1, B, H), h0.dtype)
    hs[0] = h0
    for t in range(T):
        a = xp[t] + hs[t] @ w_hh.T
        if nonlinearity == "tanh":
            np.tanh(a, out=hs[t + 1])
        else:
            np.maximum(a, 0, out=hs[t + 1])
    loss, dhs, grads = _head_forward_backward(p, hs[1:], targets)
    da = np.empty((T, B, H), h0.dtype)
    dh_next = np.zeros_like(h0)
    for t in reversed(range(T)):
        h = hs[t + 1]
        # f'(a) from f(a): 1 - h^2 for tanh, (a > 0) = (h > 0) for relu
        slope = 1 - h * h if nonlinearity == "tanh" else h > 0
        da[t] = (dhs[t] + dh_next) * slope
        dh_next = da[t] @ w_hh
    _recurrent_weight_grads(p, grads, x, hs[:-1], da)
    _embedding_backward(
        p, tokens, (da.reshape(T * B, -1) @ p["rnn.weight_ih_l0"]).reshape(x.shape), grads
    )
    return loss, grads, hs[T]


def _recurrent_weight_grads(p, grads, x, hprev, da):
    """Weight gradients summed over time as one product over all T*B rows each."""
    rows = da.shape[0] * da.shape[1]
    flat = da.reshape(rows, -1)
    grads["rnn.weight_ih_l0"] = flat.T @ x.reshape(rows, -1)
    grads["rnn.weight_hh_l0"] = flat.T @ hprev.reshape(rows, -1)
    grads["rnn.bias_ih_l0"] = flat.sum(axis=0)
    grads["rnn.bias_hh_l0"] = grads["rnn.bias_ih_l0"].copy()


def sgd_step(p, grads, lr):
    for name, g in grads.items():
        p[name] -= lr * g
