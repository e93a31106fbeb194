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
# # Lesson 2. Vanishing and exploding gradients, and clipping
#
# Minlie Huang, "Recurrent Neural Networks" (lecture slides), writes the gradient that a loss
# at step $t$ sends to an earlier state $h_k$ as a product of step Jacobians:
#
# $$\frac{\partial h_t}{\partial h_k} = \prod_{i=k+1}^{t} \frac{\partial h_i}{\partial h_{i-1}}
#   = \prod_{i=k+1}^{t} \mathrm{diag}\big(f'(a_i)\big)\, W, \qquad
#   \Big\|\frac{\partial h_t}{\partial h_k}\Big\| \le \prod_{i=k+1}^t \gamma_i \le
#   \big(\|W\|\,\max|f'|\big)^{t-k}.$$
#
# With every $\gamma_i < 1$ the gradient vanishes geometrically (Bengio et al. 1994); a
# large $\|W\|$ lets it explode (Pascanu et al. 2013). `models.gradient_flow.inspect` measures
# all of it in one backward: $\|\nabla_{h_t} L\|$, the singular values of
# $\partial h_t / \partial h_k$ (from vjps) and the step norms $\gamma_i$ (from jvps).

# %%
import numpy as np

import minigrad as mg
import minigrad.nn as nn
import minigrad.nn.functional as F
from models import RNN
from models.gradient_flow import inspect

mg.set_default_dtype(mg.float64)
mg.manual_seed(0)
T, B, H = 30, 8, 16
rng = np.random.default_rng(0)
x = rng.standard_normal((T, B, 2))
target = mg.tensor(rng.standard_normal((B, H)))
rnn = RNN(2, H)


def loss_at_the_end(out):  # L depends on h_T only, so dL/dh_k is (dh_T/dh_k)^T dL/dh_T
    return F.mse_loss(out[-1], target)


report = inspect(rnn, x, loss_at_the_end)
print(report.summary())

# %% [markdown]
# ## The measured Jacobian against its bounds
# `singular_values[k]` holds the singular values of $\partial h_T/\partial h_k$ per sequence;
# `product_bound` is $\prod \gamma_i$ and `pascanu_bound` is $\|W\|^{T-k}$.

# %%
j = report.jacobian
sigma = j["singular_values"][..., 0].mean(axis=1)  # largest, averaged over sequences
product = j["product_bound"].mean(axis=1)
for lag in (0, 5, 10, 20, T - 1):
    k = T - 1 - lag
    print(
        f"lag {lag:2d}: sigma_max {sigma[k]:.2e} <= prod gamma_i {product[k]:.2e} "
        f"<= ||W||^lag {j['pascanu_bound'][k]:.2e}"
    )
assert j["bound_holds"]
assert sigma[0] < 1e-2 * sigma[-1]  # it vanished: 29 steps cost orders of magnitude

# %% [markdown]
# ## Exploding: a recurrent matrix with every singular value 3
# Now $\|W\| = 3$: nothing stops the product from growing, and the gradient norm jumps by
# orders of magnitude. Clipping (`nn.utils.clip_grad_norm_`: if $\|g\| > \theta$ then
# $g \leftarrow \theta g / \|g\|$) keeps the update bounded while keeping its direction.

# %%
big = RNN(2, H)
nn.init.orthogonal_(big.weight_hh_l0, 3.0)
exploding = inspect(big, x * 0.01, loss_at_the_end)  # small inputs: tanh stays linear
s = exploding.jacobian["singular_values"][..., 0].mean(axis=1)
print(f"sigma_max of dh_T/dh_k: {s[-1]:.2f} at lag 0, {s[0]:.2e} at lag {T - 1}")
assert s[0] > 1e3

out, _ = big(mg.tensor(x * 0.01))
loss_at_the_end(out).backward()
params = list(big.parameters())
before = nn.utils.clip_grad_norm_(params, max_norm=1.0)
after = np.sqrt(sum((p.grad**2).sum() for p in params))
print(f"gradient norm {float(before):.3e} clipped to {after:.3f}")
assert after <= 1.0 + 1e-9

# %%
try:
    import matplotlib.pyplot as plt

    lags = np.arange(T)[::-1]
    plt.semilogy(lags, sigma, label="sigma_max(dh_T/dh_k), ||W|| < 1")
    plt.semilogy(lags, product, "--", label="prod gamma_i")
    plt.semilogy(lags, s, label="sigma_max(dh_T/dh_k), ||W|| = 3")
    plt.xlabel("T - k")
    plt.legend()
    plt.show()
except ImportError:
    print("matplotlib is not installed: no figure")
