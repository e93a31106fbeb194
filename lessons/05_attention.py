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
print("attention weights:\n", np.round(alpha.numpy(), 3))
assert np.allclose(alpha.numpy().sum(axis=1), 1.0)

# %% [markdown]
# ## The Jacobian of the context
# $h_j$ reaches $c = \sum_k \alpha_k h_k$ in two ways: as the term $\alpha_j h_j$, and
# through its score $e_j$, which moves *every* weight $\alpha_k$ (the softmax couples them:
# $\partial \alpha_k / \partial e_j = \alpha_k(\delta_{kj} - \alpha_j)$). With
# $t_j = \tanh(W s + U h_j)$, so that
# $\partial e_j / \partial h_j = U^\top \mathrm{diag}(1 - t_j^2)\, v$,
#
# $$\frac{\partial c}{\partial h_j} = \alpha_j I
#   + \sum_k h_k \frac{\partial \alpha_k}{\partial e_j}
#     \Big(\frac{\partial e_j}{\partial h_j}\Big)^{\!\top}
#   = \alpha_j I + \alpha_j\, (h_j - c)\, v^\top \mathrm{diag}(1 - t_j^2)\, U ,$$
#
# since $\sum_k h_k \alpha_k(\delta_{kj} - \alpha_j) = \alpha_j (h_j - c)$. `mg.jacobian`
# (autograd) must agree with this formula for every $j$.

# %%
J = mg.jacobian(lambda k: attn(s, k)[0], keys)  # shape (B, H) + (B, S, H)
W_a, U_a, v_a = attn.W.numpy(), attn.U.numpy(), attn.v.numpy()
worst = 0.0
for b in range(B):
    t = np.tanh(s.numpy()[b] @ W_a.T + keys.numpy()[b] @ U_a.T)  # (S, A): t_j for every j
    for j in range(S):
        h_j, a_j = keys.numpy()[b, j], alpha.numpy()[b, j]
        through_scores = a_j * np.outer(h_j - context.numpy()[b], (v_a * (1 - t[j] ** 2)) @ U_a)
        by_hand = a_j * np.eye(H) + through_scores
        worst = max(worst, np.abs(J.numpy()[b, :, b, j, :] - by_hand).max())
print("dc/dh_j for sequence 0, j = 2:\n", np.round(J.numpy()[0, :, 0, 2, :], 4))
print(f"autograd against the formula, all b and j: largest difference {worst:.1e}")
assert worst < 1e-12
one_term = max(
    np.abs(J.numpy()[0, :, 0, j, :] - alpha.numpy()[0, j] * np.eye(H)).max() for j in range(S)
)
assert one_term > 1e-3  # alpha_j I alone is not the derivative

# %% [markdown]
# With $v = 0$ every score is 0 whatever the $h_j$, $\alpha_j = 1/S$, and only the first term
# is left: $\partial c/\partial h_j = I / S$.

# %%
with mg.no_grad():
    attn.v.zero_()
J = mg.jacobian(lambda k: attn(s, k)[0], keys)
for j in range(S):
    assert np.allclose(J.numpy()[0, :, 0, j, :], np.eye(H) / S, atol=1e-14)
print("with v = 0: dc/dh_j = I / S for every j")

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
    first, last = np.linalg.norm(g.numpy()[0]), np.linalg.norm(g.numpy()[-1])
    print(f"{name:16s} ||dL/dx_1|| / ||dL/dx_40|| = {first / last:.1e}")
ratio_plain = np.linalg.norm(mg.grad(last_state_only)(x).numpy()[0])
ratio_attn = np.linalg.norm(mg.grad(with_attention)(x).numpy()[0])
assert ratio_attn > 100 * ratio_plain
