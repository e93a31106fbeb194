"""Backpropagation through time written by hand, in plain NumPy (no minigrad).

This module is the independent reference that the tests hold minigrad's autograd against, and
that the benchmarks time as "NumPy, BPTT written by hand". It follows the lecture notes
(Goodfellow et al., ch. 10) with one change of layout: a batch of B sequences is carried as
rows, so the notes' column-vector product `W h` is written `h @ W.T` here.

Elman network with a softmax output at every step (the notes' names):

    a_t = b + W h_{t-1} + U x_t
    h_t = tanh(a_t)
    o_t = c + V h_t
    y^_t = softmax(o_t)
    L = sum_t L_t = -sum_t log y^_t[y_t]

and its gradients, derived backwards from the last step:

    dL/do_t = y^_t - 1_{y_t}
    dL/dh_T = V^T dL/do_T
    dL/dh_t = W^T diag(1 - h_{t+1}^2) dL/dh_{t+1} + V^T dL/do_t
    dL/dc = sum_t dL/do_t
    dL/dV = sum_t dL/do_t h_t^T
    dL/db = sum_t diag(1 - h_t^2) dL/dh_t
    dL/dW = sum_t diag(1 - h_t^2) dL/dh_t h_{t-1}^T
    dL/dU = sum_t diag(1 - h_t^2) dL/dh_t x_t^T

LSTM (PyTorch's gate order i, f, g, o in the stacked weights):

    i_t = sigma(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
    f_t = sigma(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
    g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
    o_t = sigma(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)

whose gradients, with dh_t the total gradient reaching h_t and dc_t the one reaching c_t, are

    do_t = dh_t * tanh(c_t)
    dc_t = dc_t (from step t+1) + dh_t * o_t * (1 - tanh(c_t)^2)
    di_t = dc_t * g_t,  dg_t = dc_t * i_t,  df_t = dc_t * c_{t-1},  dc_{t-1} = dc_t * f_t
    da_t = [di * i(1-i), df * f(1-f), dg * (1-g^2), do * o(1-o)]    (pre-activation gates)
    dW_ih = sum_t da_t^T x_t,  dW_hh = sum_t da_t^T h_{t-1},  db_ih = db_hh = sum_t da_t
    dx_t = da_t W_ih,  dh_{t-1} += da_t W_hh

The weight gradients that are sums over t are formed after the loop as one matrix product
over all T*B rows, which is both the textbook sum and the fast way to compute it.
"""

import numpy as np

__all__ = [
    "sigmoid",
    "softmax",
    "softmax_cross_entropy",
    "elman_forward",
    "elman_bptt",
    "rnn_forward",
    "lstm_forward",
    "lstm_bptt",
    "gru_forward",
]


def sigmoid(x):
    """1 / (1 + exp(-x)), with exp only ever taken of -|x| (no overflow)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0, e) / (1.0 + e)


def softmax(o, axis=-1):
    z = np.exp(o - o.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def softmax_cross_entropy(o, y):
    """Loss L = -sum log softmax(o)[y] over all leading positions, and dL/do = y^ - 1_y.

    o: (..., K) unnormalised log-probabilities; y: (...) integer targets.
    """
    y_hat = softmax(o)
    flat = y_hat.reshape(-1, o.shape[-1])
    rows = np.arange(flat.shape[0])
    loss = -np.log(flat[rows, y.reshape(-1)]).sum()
    d_o = flat.copy()
    d_o[rows, y.reshape(-1)] -= 1.0  # dL/do_t = y^_t - 1_{y_t}
    return loss, d_o.reshape(o.shape)


# ----- Elman network ----------------------------------------------------------------------------
def elman_forward(x, U, W, V, b, c, h0=None):
    """Forward pass. x: (T, B, n_in). Returns hs (T+1, B, H) with hs[0] = h0, and o (T, B, K)."""
    T, B, _ = x.shape
    H = W.shape[0]
    hs = np.zeros((T + 1, B, H), dtype=x.dtype)
    if h0 is not None:
        hs[0] = h0
    for t in range(T):
        a = b + hs[t] @ W.T + x[t] @ U.T  # a_t = b + W h_{t-1} + U x_t
        hs[t + 1] = np.tanh(a)  # h_t = tanh(a_t)
    o = c + hs[1:] @ V.T  # o_t = c + V h_t
    return hs, o


def elman_bptt(x, y, U, W, V, b, c, h0=None):
    """Loss and gradients of the Elman network by the hand-derived BPTT equations.

    x: (T, B, n_in) inputs, y: (T, B) integer targets. Returns (loss, grads) with grads a dict
    of dL/dU, dL/dW, dL/dV, dL/db, dL/dc, dL/dh0 and dL/dh (T, B, H), the gradient reaching
    each hidden state.
    """
    T = x.shape[0]
    hs, o = elman_forward(x, U, W, V, b, c, h0)
    loss, d_o = softmax_cross_entropy(o, y)  # dL/do_t = y^_t - 1_{y_t}
    h = hs[1:]  # h_1 .. h_T
    d_h = np.zeros_like(h)
    d_h[T - 1] = d_o[T - 1] @ V  # dL/dh_T = V^T dL/do_T
    for t in range(T - 2, -1, -1):
        # dL/dh_t = W^T diag(1 - h_{t+1}^2) dL/dh_{t+1} + V^T dL/do_t
        d_h[t] = ((1 - h[t + 1] ** 2) * d_h[t + 1]) @ W + d_o[t] @ V
    d_a = (1 - h**2) * d_h  # diag(1 - h_t^2) dL/dh_t, for every t
    rows = lambda z: z.reshape(-1, z.shape[-1])  # (T, B, n) -> (T*B, n): the sum over t and b
    grads = {
        "c": d_o.sum(axis=(0, 1)),  # sum_t dL/do_t
        "V": rows(d_o).T @ rows(h),  # sum_t dL/do_t h_t^T
        "b": d_a.sum(axis=(0, 1)),  # sum_t diag(1 - h_t^2) dL/dh_t
        "W": rows(d_a).T @ rows(hs[:-1]),  # sum_t diag(1 - h_t^2) dL/dh_t h_{t-1}^T
        "U": rows(d_a).T @ rows(x),  # sum_t diag(1 - h_t^2) dL/dh_t x_t^T
        "h0": d_a[0] @ W,  # the state before step 1 feeds a_1 through W
        "h": d_h,
    }
    return loss, grads


# ----- plain forward passes of the other cells (for equation checks) ---------------------------
def rnn_forward(x, W_ih, W_hh, b_ih=None, b_hh=None, h0=None, nonlinearity="tanh"):
    """h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), f = tanh or relu.

    Returns (hs (T, B, H), h_T)."""
    f = np.tanh if nonlinearity == "tanh" else (lambda a: np.maximum(a, 0.0))
    T, B, _ = x.shape
    H = W_hh.shape[1]
    h = np.zeros((B, H), x.dtype) if h0 is None else h0
    out = []
    for t in range(T):
        a = x[t] @ W_ih.T + h @ W_hh.T
        if b_ih is not None:
            a = a + b_ih + b_hh
        h = f(a)
        out.append(h)
    return np.stack(out), h


def lstm_forward(x, W_ih, W_hh, b_ih=None, b_hh=None, h0=None, c0=None):
    """The LSTM over a sequence. x: (T, B, n_in). Returns (hs (T, B, H), (h_T, c_T), cache)."""
    T, B, _ = x.shape
    H = W_hh.shape[1]
    h = np.zeros((B, H), x.dtype) if h0 is None else h0
    c = np.zeros((B, H), x.dtype) if c0 is None else c0
    # The input projection of every step at once: one (T*B, n_in) @ (n_in, 4H) product.
    gx = (x.reshape(T * B, -1) @ W_ih.T).reshape(T, B, 4 * H)
    if b_ih is not None:
        gx += b_ih + b_hh
    hs = np.empty((T + 1, B, H), x.dtype)
    cs = np.empty((T + 1, B, H), x.dtype)
    gates = np.empty((T, B, 4 * H), x.dtype)  # activated i, f, g, o
    tanh_c = np.empty((T, B, H), x.dtype)
    hs[0], cs[0] = h, c
    for t in range(T):
        a = gx[t] + hs[t] @ W_hh.T
        i = sigmoid(a[:, :H])
        f = sigmoid(a[:, H : 2 * H])
        g = np.tanh(a[:, 2 * H : 3 * H])
        o = sigmoid(a[:, 3 * H :])
        cs[t + 1] = f * cs[t] + i * g  # c_t = f_t * c_{t-1} + i_t * g_t
        tanh_c[t] = np.tanh(cs[t + 1])
        hs[t + 1] = o * tanh_c[t]  # h_t = o_t * tanh(c_t)
        gates[t, :, :H], gates[t, :, H : 2 * H] = i, f
        gates[t, :, 2 * H : 3 * H], gates[t, :, 3 * H :] = g, o
    cache = (x, W_ih, W_hh, hs, cs, gates, tanh_c)
    return hs[1:], (hs[T], cs[T]), cache


def lstm_bptt(cache, d_out, d_hT=None, d_cT=None):
    """Gradients of an LSTM by the hand-derived equations above.

    cache: from `lstm_forward`; d_out: (T, B, H), the gradient a loss sends each output h_t
    directly (e.g. V^T dL/do_t); d_hT, d_cT: gradients reaching the final state, if any.
    Returns a dict of dL/dW_ih, dL/dW_hh, dL/db_ih, dL/db_hh, dL/dx, dL/dh0, dL/dc0.
    """
    x, W_ih, W_hh, hs, cs, gates, tanh_c = cache
    T, B, H = d_out.shape
    d_gates = np.empty((T, B, 4 * H), x.dtype)
    d_h_next = np.zeros((B, H), x.dtype) if d_hT is None else d_hT.copy()
    d_c_next = np.zeros((B, H), x.dtype) if d_cT is None else d_cT.copy()
    for t in range(T - 1, -1, -1):
        i, f = gates[t, :, :H], gates[t, :, H : 2 * H]
        g, o = gates[t, :, 2 * H : 3 * H], gates[t, :, 3 * H :]
        d_h = d_out[t] + d_h_next  # the loss at t, and everything after t through h_t
        d_o = d_h * tanh_c[t]
        d_c = d_c_next + d_h * o * (1 - tanh_c[t] ** 2)
        d_i, d_g, d_f = d_c * g, d_c * i, d_c * cs[t]
        d_c_next = d_c * f  # dL/dc_{t-1}
        d_gates[t, :, :H] = d_i * i * (1 - i)
        d_gates[t, :, H : 2 * H] = d_f * f * (1 - f)
        d_gates[t, :, 2 * H : 3 * H] = d_g * (1 - g**2)
        d_gates[t, :, 3 * H :] = d_o * o * (1 - o)
        d_h_next = d_gates[t] @ W_hh  # dL/dh_{t-1} through the recurrence
    rows = d_gates.reshape(T * B, 4 * H)
    d_b = rows.sum(axis=0)
    return {
        "W_ih": rows.T @ x.reshape(T * B, -1),  # sum_t da_t^T x_t, one product
        "W_hh": rows.T @ hs[:-1].reshape(T * B, H),  # sum_t da_t^T h_{t-1}
        "b_ih": d_b,
        "b_hh": d_b.copy(),
        "x": (rows @ W_ih).reshape(x.shape),
        "h0": d_h_next,
        "c0": d_c_next,
    }


def gru_forward(x, W_ih, W_hh, b_ih=None, b_hh=None, h0=None, reset_after=True):
    """The GRU over a sequence (gate order r, z, n). Returns (hs (T, B, H), h_T).

    reset_after=True:  n = tanh(W_in x + b_in + r * (W_hn h + b_hn))   (PyTorch, cuDNN)
    reset_after=False: n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)   (Cho et al. 2014)
    """
    T, B, _ = x.shape
    H = W_hh.shape[1]
    h = np.zeros((B, H), x.dtype) if h0 is None else h0
    if b_ih is None:
        b_ih = b_hh = np.zeros(3 * H, x.dtype)
    W_hr, W_hz, W_hn = W_hh[:H], W_hh[H : 2 * H], W_hh[2 * H :]
    b_hr, b_hz, b_hn = b_hh[:H], b_hh[H : 2 * H], b_hh[2 * H :]
    out = []
    for t in range(T):
        gi = x[t] @ W_ih.T + b_ih
        r = sigmoid(gi[:, :H] + h @ W_hr.T + b_hr)
        z = sigmoid(gi[:, H : 2 * H] + h @ W_hz.T + b_hz)
        if reset_after:
            n = np.tanh(gi[:, 2 * H :] + r * (h @ W_hn.T + b_hn))
        else:
            n = np.tanh(gi[:, 2 * H :] + (r * h) @ W_hn.T + b_hn)
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out), h
