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
# # Lesson 1. The Elman network and backpropagation through time
#
# We follow the notation of T. Hitendra Sarma, "Recurrent Neural Networks" (lecture notes).
# For inputs $x^{(1)}, \dots, x^{(\tau)}$ the network computes, at every step $t$,
#
# $$a^{(t)} = b + W h^{(t-1)} + U x^{(t)}, \qquad h^{(t)} = \tanh(a^{(t)}), \qquad
#   o^{(t)} = c + V h^{(t)}, \qquad \hat y^{(t)} = \mathrm{softmax}(o^{(t)}),$$
#
# and the loss is $L = \sum_t L^{(t)} = -\sum_t \log \hat y^{(t)}_{y^{(t)}}$.
# BPTT is the chain rule applied backwards through this unrolled graph:
#
# $$\nabla_{o^{(t)}} L = \hat y^{(t)} - \mathbf 1_{y^{(t)}}, \qquad
#   \nabla_{h^{(\tau)}} L = V^\top \nabla_{o^{(\tau)}} L, \qquad
#   \nabla_{h^{(t)}} L = W^\top \mathrm{diag}\big(1 - (h^{(t+1)})^2\big) \nabla_{h^{(t+1)}} L
#       + V^\top \nabla_{o^{(t)}} L .$$
#
# In minigrad the network is ordinary code (`models.ElmanRNN`), and `backward()` on the
# unrolled graph *is* BPTT. This lesson checks that claim against the equations above.

# %%
import re

import numpy as np

import minigrad as mg
import minigrad.nn.functional as F
from models import ElmanRNN
from models.reference_bptt import elman_bptt

mg.set_default_dtype(mg.float64)  # exact comparisons
mg.manual_seed(0)
tau, B, n_in, H, K = 6, 2, 3, 5, 4  # steps, sequences, inputs, hidden units, classes
rng = np.random.default_rng(0)
x = rng.standard_normal((tau, B, n_in))
y = rng.integers(0, K, (tau, B))

net = ElmanRNN(n_in, H, K)  # parameters U, W, V, b, c
o, h_last, hs = net(mg.tensor(x), return_hidden=True)
for h in hs:
    h.retain_grad()  # keep dL/dh^(t) for inspection
L = F.cross_entropy(o.reshape(-1, K), y.reshape(-1), reduction="sum")
print("L =", L.item())

# %% [markdown]
# ## The unrolled graph, one copy of the cell per step
# `mg.graph.view` groups the graph by time step; in Jupyter it is drawn when Graphviz is
# installed. Each step is the same few ops, and each keeps its activations for backward: the
# bytes shown per step are those saved arrays ($x^{(t)}$, $h^{(t-1)}$, $h^{(t)}$). We look
# *before* calling `backward()`, because backward frees every saved array as it goes (unless
# asked to keep them with `retain_graph=True`); afterwards the same view would show 0 B.
# The parameter names are passed as a `dict`: a notebook renders the cell's value twice
# (HTML, then SVG), and a bare `named_parameters()` generator would be used up by the first.

# %%
view = mg.graph.view(L, steps=hs, params=dict(net.named_parameters()))
print(view)
assert "the same cell at every step" in str(view)
per_step = re.search(r"steps 1-6: \d+ ops, (\d+) B each", str(view))
assert per_step and int(per_step.group(1)) == 8 * B * (n_in + 2 * H)  # x, h_prev, h in float64
first, second = view.dot(), view.dot()  # as Jupyter renders it: HTML first, then SVG
assert first == second and '"leaf\\n' not in second  # every parameter drawn with its name
saved_before = mg.graph.stats(L)["saved_bytes"]
view  # noqa: B018  (a notebook draws the last expression of a cell)

# %% [markdown]
# ## Autograd against the hand-derived equations
# `backward()` runs BPTT over the graph above and releases what it saved.
# `models.reference_bptt.elman_bptt` implements the equations above in plain NumPy.

# %%
L.backward()
saved_after = mg.graph.stats(L)["saved_bytes"]
print(f"kept for backward: {saved_before} B before backward(), {saved_after} B after")
assert saved_before > 0 and saved_after == 0
loss_ref, grads = elman_bptt(x, y, *(p.numpy() for p in (net.U, net.W, net.V, net.b, net.c)))
for name in "UWVbc":
    diff = np.abs(getattr(net, name).grad - grads[name]).max()
    print(f"dL/d{name}: largest difference {diff:.1e}")
    assert diff < 1e-10
dh = np.stack([h.grad for h in hs])
assert np.abs(dh - grads["h"]).max() < 1e-10
print("||dL/dh^(t)|| for t = 1..tau:", np.round(np.linalg.norm(dh, axis=(1, 2)), 4))

# %% [markdown]
# ## Reverse mode and forward mode
# BPTT is reverse mode: one backward pass gives $\nabla_W L$ for every direction at once.
# Forward mode (`mg.jvp`) gives the derivative along one direction $v$ during the forward
# pass, $\frac{d}{d\epsilon} L(W + \epsilon v)$. Both must agree: it equals
# $\langle \nabla_W L, v\rangle$. Carrying *every* direction forward in time is real-time
# recurrent learning (Williams & Zipser 1989), the subject of `examples/rtrl_vs_bptt.py`.

# %%
v = rng.standard_normal(net.W.shape)


def loss_of(_W):  # reads net.W, which carries the tangent v inside mg.jvp
    out, _ = net(mg.tensor(x))
    return F.cross_entropy(out.reshape(-1, K), y.reshape(-1), reduction="sum")


_, directional = mg.jvp(loss_of, (net.W,), (v,))
print("forward mode:", directional.item(), " reverse mode:", float((net.W.grad * v).sum()))
assert abs(directional.item() - (net.W.grad * v).sum()) < 1e-10
