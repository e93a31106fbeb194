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
# same with one update gate $z_t$ that mixes the old state with a candidate $n_t$ (the notes
# write $\tilde h_t$ or $\tilde c_t$), and here the two conventions in use are each other's
# mirror image:
#
# $$\text{the notes:}\quad h_t = z_t \odot \tilde h_t + (1 - z_t) \odot h_{t-1}, \qquad
#   \text{PyTorch:}\quad h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}.$$
#
# Minlie Huang's slides and T. Hitendra Sarma's notes (where $z_t$ is called $\Gamma_u$) both
# use the first: $z_t \approx 1$ takes the new candidate. PyTorch, and `models.GRU` and
# `models.GRUCell` with it, use the second: $z_t \approx 1$ *keeps* the old state, and it is
# then $\partial h_t/\partial h_{t-1} \approx \mathrm{diag}(z_t)$ that carries the gradient.
# The two are the same model with $z_t$ replaced by $1 - z_t$, i.e. with the update gate's
# weights and biases negated ($1 - \sigma(u) = \sigma(-u)$); only the reading of a trained
# gate, and of its bias initialisation, changes. The first code cell below checks this on
# `models.GRU`.

# %%
import numpy as np

import minigrad as mg
import minigrad.nn.functional as F
from models import GRU, LSTM, RNN, LSTMCell, forget_bias_init_
from models.gradient_flow import inspect

mg.set_default_dtype(mg.float64)
rng = np.random.default_rng(0)

# %% [markdown]
# ## Which GRU update `models.GRU` computes
# One step of a GRU layer from $h_0$, against both formulas evaluated by hand from its
# weights (stacked $r, z, n$ as in PyTorch).

# %%
mg.manual_seed(0)
gru = GRU(3, 4)
draw = np.random.default_rng(1)  # its own generator: the cells below see the same rng
x_1, h_0 = draw.standard_normal((1, 3)), draw.standard_normal((1, 4))
_, h_1 = gru(mg.tensor(x_1[None]), mg.tensor(h_0[None]))  # one step, batch of 1
gi = x_1 @ gru.weight_ih_l0.numpy().T + gru.bias_ih_l0.numpy()
gh = h_0 @ gru.weight_hh_l0.numpy().T + gru.bias_hh_l0.numpy()
r = 1 / (1 + np.exp(-(gi[:, :4] + gh[:, :4])))
u = gi[:, 4:8] + gh[:, 4:8]  # the update gate's pre-activation
n = np.tanh(gi[:, 8:] + r * gh[:, 8:])  # the candidate
z_torch = 1 / (1 + np.exp(-u))
z_notes = 1 / (1 + np.exp(u))  # the notes' gate for the same layer: sigma(-u) = 1 - z_torch
torch_form = (1 - z_torch) * n + z_torch * h_0
notes_form = z_notes * n + (1 - z_notes) * h_0
print("models.GRU h_1             :", np.round(h_1.numpy()[0, 0], 4))
print("PyTorch's formula         :", np.round(torch_form[0], 4))
print("the notes', with z = 1 - z:", np.round(notes_form[0], 4))
assert np.allclose(h_1.numpy()[0], torch_form, atol=1e-12)  # models.GRU is PyTorch's form
assert np.allclose(torch_form, notes_form, atol=1e-12)  # the notes' form, gate negated
assert not np.allclose(h_1.numpy()[0], z_torch * n + (1 - z_torch) * h_0)  # same z, other form

# %% [markdown]
# ## The cell-state Jacobian is diag(f)
# `mg.jacobian` differentiates one LSTM step with respect to $c_{t-1}$ (forward mode here:
# one jvp per direction); we compare it with the forget gate computed by hand.

# %%
mg.manual_seed(0)
cell = LSTMCell(3, 4)
x_t, h_prev, c_prev = (mg.tensor(rng.standard_normal(s)) for s in ((1, 3), (1, 4), (1, 4)))
J = mg.jacobian(lambda c: cell(x_t, (h_prev, c))[1], c_prev, mode="forward")
pre = x_t.numpy() @ cell.weight_ih.numpy().T + cell.bias_ih.numpy()
pre += h_prev.numpy() @ cell.weight_hh.numpy().T + cell.bias_hh.numpy()
f = 1 / (1 + np.exp(-pre[0, 4:8]))  # gates are stacked i, f, g, o
print("dc_t/dc_(t-1) diagonal:", np.round(np.diag(J.numpy()[0, :, 0, :]), 4))
print("forget gate f_t       :", np.round(f, 4))
assert np.allclose(J.numpy()[0, :, 0, :], np.diag(f), atol=1e-12)

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
