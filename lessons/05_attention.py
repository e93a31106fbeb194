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
# # Lesson 5. Attention: a short path for the gradient
#
# An encoder-decoder squeezes the source into its last state; attention (Bahdanau et al.,
# as in Minlie Huang, "Recurrent Neural Networks") lets each decoder step $s$ read every
# encoder state $h_j$:
#
# $$e_j = v^\top \tanh(W s + U h_j), \qquad \alpha_j = \frac{\exp e_j}{\sum_k \exp e_k},
#   \qquad c = \sum_j \alpha_j h_j .$$
#
# Besides choosing what to read, this gives the gradient a path of length one from the
# output to every $h_j$, instead of a product of step Jacobians.

# %%
import numpy as np

import minigrad as mg
from models import RNN, AdditiveAttention

mg.set_default_dtype(mg.float64)
mg.manual_seed(0)
rng = np.random.default_rng(0)
B, S, H, A = 2, 6, 4, 5
attn = AdditiveAttention(query_size=H, key_size=H, attention_size=A)
s = mg.tensor(rng.standard_normal((B, H)))
keys = mg.tensor(rng.standard_normal((B, S, H)))
context, alpha = attn(s, keys)
print("attention weights:\n", np.round(alpha.data, 3))
assert np.allclose(alpha.data.sum(axis=1), 1.0)

# %% [markdown]
# ## The Jacobian of the context
# $\partial c / \partial h_j = \alpha_j I + h_j\,(\partial \alpha_j/\partial h_j)^\top$-like terms
# through the scores. With $v = 0$ every score is 0, $\alpha_j = 1/S$ and only the first term
# is left: $\partial c/\partial h_j = I / S$. `mg.jacobian` confirms it.

# %%
with mg.no_grad():
    attn.v.zero_()
J = mg.jacobian(lambda k: attn(s, k)[0], keys)  # shape (B, H) + (B, S, H)
print("dc/dh_j for sequence 0, j = 2:\n", np.round(J.data[0, :, 0, 2, :], 4))
for j in range(S):
    assert np.allclose(J.data[0, :, 0, j, :], np.eye(H) / S, atol=1e-14)

# %% [markdown]
# ## Gradient reaching the first input, with and without attention
# An RNN encoder reads 40 steps. A loss on its last state alone must send the gradient
# through 40 step Jacobians to reach $x_1$; a loss on an attention context over all states
# reaches $h_1$ directly. `mg.grad` gives $\nabla_x L$ for each.

# %%
mg.manual_seed(1)
encoder = RNN(3, H)
attn = AdditiveAttention(H, H, A)
x = rng.standard_normal((40, B, 3))


def last_state_only(x):
    out, _ = encoder(x)
    return (out[-1] ** 2).sum()


def with_attention(x):
    out, _ = encoder(x)
    states = out.transpose(0, 1)  # (B, S, H)
    ctx, _ = attn(out[-1], states)
    return (ctx**2).sum()


for name, loss in [("last state only", last_state_only), ("attention", with_attention)]:
    g = mg.grad(loss)(x)
    first, last = np.linalg.norm(g.data[0]), np.linalg.norm(g.data[-1])
    print(f"{name:16s} ||dL/dx_1|| / ||dL/dx_40|| = {first / last:.1e}")
ratio_plain = np.linalg.norm(mg.grad(last_state_only)(x).data[0])
ratio_attn = np.linalg.norm(mg.grad(with_attention)(x).data[0])
assert ratio_attn > 100 * ratio_plain
