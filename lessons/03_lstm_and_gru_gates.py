# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 3. LSTM and GRU: gates that keep the gradient alive
#
# The LSTM (Pranav Kant Gaur, "Recurrent neural networks: An Introduction"; Ayesha Ashraf,
# "Recurrent Neural Network, LSTM, GRU") adds a cell state $c_t$ updated additively:
#
# $$i_t = \sigma(\cdot),\quad f_t = \sigma(\cdot),\quad o_t = \sigma(\cdot),\quad
#   g_t = \tanh(\cdot),\qquad c_t = f_t \odot c_{t-1} + i_t \odot g_t,\qquad
#   h_t = o_t \odot \tanh(c_t),$$
#
# each gate reading $W_{x\cdot} x_t + W_{h\cdot} h_{t-1} + b_\cdot$. Along the cell state the
# step Jacobian is $\partial c_t / \partial c_{t-1} = \mathrm{diag}(f_t)$: no squashing and no
# weight matrix, so with $f_t \approx 1$ the gradient passes through many steps. The GRU does the
# same with one update gate: $h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}$.

# %%
import numpy as np

import minigrad as mg
import minigrad.nn.functional as F
from models import GRU, LSTM, RNN, LSTMCell, forget_bias_init_
from models.gradient_flow import inspect

mg.set_default_dtype(mg.float64)
rng = np.random.default_rng(0)

# %% [markdown]
# ## The cell-state Jacobian is diag(f)
# `mg.jacobian` differentiates one LSTM step with respect to $c_{t-1}$ (forward mode here:
# one jvp per direction); we compare it with the forget gate computed by hand.

# %%
mg.manual_seed(0)
cell = LSTMCell(3, 4)
x_t, h_prev, c_prev = (mg.tensor(rng.standard_normal(s)) for s in ((1, 3), (1, 4), (1, 4)))
J = mg.jacobian(lambda c: cell(x_t, (h_prev, c))[1], c_prev, mode="forward")
pre = x_t.data @ cell.weight_ih.data.T + cell.bias_ih.data
pre += h_prev.data @ cell.weight_hh.data.T + cell.bias_hh.data
f = 1 / (1 + np.exp(-pre[0, 4:8]))  # gates are stacked i, f, g, o
print("dc_t/dc_(t-1) diagonal:", np.round(np.diag(J.data[0, :, 0, :]), 4))
print("forget gate f_t       :", np.round(f, 4))
assert np.allclose(J.data[0, :, 0, :], np.diag(f), atol=1e-12)

# %% [markdown]
# ## How far back does the gradient reach?
# A loss on the last step of a 60-step sequence; `inspect` reports $\|\nabla_{h_k} L\|$ for
# every $k$. We compare a tanh RNN, an LSTM (forget-gate bias 0 and 1: Gers et al.'s advice
# to start with gates open) and a GRU at initialisation.

# %%
T, B, H = 60, 8, 16
x = rng.standard_normal((T, B, 3))
target = mg.tensor(rng.standard_normal((B, H)))
layers = {}
for name, make in [("tanh RNN", RNN), ("LSTM", LSTM), ("LSTM, forget bias 1", LSTM), ("GRU", GRU)]:
    mg.manual_seed(1)
    layers[name] = make(3, H)
forget_bias_init_(layers["LSTM, forget bias 1"], 1.0)
reach = {}
for name, layer in layers.items():
    report = inspect(layer, x, lambda out: F.mse_loss(out[-1], target), jacobian_of=None)
    norms = report.state_grad_norms[(0, 0)].mean(axis=1)
    reach[name] = norms[0] / norms[-1]  # what is left 59 steps back
    sat = report.saturation[(0, 0)]
    print(
        f"{name:20s} ||dL/dh_1|| / ||dL/dh_T|| = {reach[name]:.1e}; "
        f"saturated sigmoid gates {sat['sigmoid'].mean():.1%}"
    )
assert reach["LSTM, forget bias 1"] > 100 * reach["tanh RNN"]
assert reach["LSTM, forget bias 1"] > reach["LSTM"]

# %% [markdown]
# Saturated gates (near 0 or 1) have a derivative near 0: a gate stuck at 1 passes the
# gradient along the cell state but learns nothing itself. The inspector counts them, so
# one can watch training push the forget gates towards 1 where long memory pays off.
