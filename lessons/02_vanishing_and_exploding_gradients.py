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
# Two changes from the slides, both deliberate. (1) Letters: Huang writes
# $h_t = f(U h_{t-1} + W x_t)$, with $U$ the recurrent matrix and $W$ the input one; we keep
# Sarma's letters of Lesson 1, $a_t = b + W h_{t-1} + U x_t$, so his $U$ is our $W$ here (and
# his $W$, the input matrix, plays no part in $\partial h_i/\partial h_{i-1}$). (2) The slides
# write $\mathrm{diag}[f'(h_{i-1})]$; the chain rule through $h_i = f(a_i)$ evaluates $f'$ at
# the pre-activation of step $i$, $a_i = b + W h_{i-1} + U x_i$ (for tanh,
# $f'(a_i) = 1 - h_i^2$), which is what we write and what the code computes.
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
# ## Why it vanishes so much faster than the bounds say
# This $W$ (PyTorch's default initialisation) is *not* a contraction: its spectral norm
# $\|W\|_2$ is above 1, so $\|W\|^{T-k}$ grows, and each $\gamma_i$ is only a little below 1.
# Yet the gradient falls by about six orders of magnitude in 29 steps. The bounds multiply
# per-step norms, the worst-case stretch of each step taken on its own; but the direction one
# step stretches most is not the direction the next step hands it, and over many steps only the
# eigenvalues survive: $\|W^n\|^{1/n} \to \rho(W)$, the spectral radius (largest $|\lambda|$).
# This is Huang's quotation of Pascanu et al.: it is *sufficient* for the largest eigenvalue of
# the recurrent matrix to be below 1 for long-term components to vanish. On top of that each
# step multiplies by $f'(a_i) = 1 - h_i^2 \le 1$.

# %%
W = rnn.weight_hh_l0.numpy()
norm_W = np.linalg.norm(W, 2)  # largest singular value
radius = np.abs(np.linalg.eigvals(W)).max()  # largest |eigenvalue|
rate = (sigma[0] / sigma[-1]) ** (1 / (T - 1))  # measured shrink factor per step
linear = np.linalg.norm(np.linalg.matrix_power(W, T - 1), 2)  # ||W^(T-1)||: tanh' taken as 1
print(f"||W||_2 = {norm_W:.2f}, spectral radius rho(W) = {radius:.2f}")
print(
    f"over {T - 1} steps: ||W||^{T - 1} = {norm_W ** (T - 1):.2e}, ||W^{T - 1}|| = {linear:.2e}, "
    f"rho^{T - 1} = {radius ** (T - 1):.2e}, measured sigma_max {sigma[0]:.2e}"
)
print(f"measured decay per step {rate:.2f}: below rho(W) = {radius:.2f}, since tanh' < 1 too")
assert norm_W > 1 > radius  # ||W|| < 1 is not what makes it vanish here; rho(W) < 1 is
assert rate < radius and sigma[0] < 1e-2 * linear < 1e-2 * norm_W ** (T - 1)

# %% [markdown]
# ## Exploding: a recurrent matrix with every singular value 3
# Now $\|W\| = \rho(W) = 3$: nothing stops the product from growing, and the gradient norm
# jumps by orders of magnitude. The inputs are scaled by 0.01, but that does *not* keep tanh
# in its linear range: the biases $b$ enter at every step whatever the input, $W$ triples the
# state each step, and soon a good share of the units sit in tanh's flat tails (we count
# $|h| > 0.99$). The gradient still explodes through the units that are not saturated, far
# less than the linear $3^{T-1}$, because the saturated ones pass almost nothing back.
# Clipping (`nn.utils.clip_grad_norm_`: if $\|g\| > \theta$ then
# $g \leftarrow \theta g / \|g\|$) keeps the update bounded while keeping its direction.

# %%
big = RNN(2, H)
nn.init.orthogonal_(big.weight_hh_l0, 3.0)
exploding = inspect(big, x * 0.01, loss_at_the_end)  # small inputs, but the biases remain
s = exploding.jacobian["singular_values"][..., 0].mean(axis=1)
saturated = np.mean(exploding.saturation[(0, 0)]["tanh"])  # share of units with |h| > 0.99
with mg.no_grad():
    h_bias_only, _ = big(mg.tensor(np.zeros_like(x)))  # no input at all: the biases alone
bias_only = np.mean(np.abs(h_bias_only.numpy()) > 0.99)
print(
    f"sigma_max of dh_T/dh_k: {s[-1]:.2f} at lag 0, {s[0]:.2e} at lag {T - 1} (3^{T - 1} = "
    f"{3.0 ** (T - 1):.1e} if tanh were linear)"
)
print(f"saturated tanh units: {saturated:.0%} with inputs x 0.01, {bias_only:.0%} with zero input")
assert s[0] > 1e3
assert saturated > 0.2 and bias_only > 0.2  # tanh is far from linear: the biases drive it
assert s[0] < 1e-3 * 3.0 ** (T - 1)

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
    plt.semilogy(
        lags, sigma, label=f"sigma_max(dh_T/dh_k), rho(W) = {radius:.2f}, ||W|| = {norm_W:.2f}"
    )
    plt.semilogy(lags, product, "--", label="prod gamma_i")
    plt.semilogy(lags, s, label="sigma_max(dh_T/dh_k), ||W|| = 3")
    plt.xlabel("T - k")
    plt.legend()
    plt.show()
except ImportError:
    print("matplotlib is not installed: no figure")
