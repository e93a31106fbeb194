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
# # Lesson 4. Bidirectional and stacked (deep) recurrent networks
#
# A bidirectional RNN (Minlie Huang, "Recurrent Neural Networks"; T. Hitendra Sarma,
# "Recurrent Neural Networks") runs one recurrence forwards, $\overrightarrow{h}_t =
# f(\overrightarrow{h}_{t-1}, x_t)$, and one backwards, $\overleftarrow{h}_t =
# f(\overleftarrow{h}_{t+1}, x_t)$, and concatenates them, so the output at $t$ sees the whole
# sequence. Stacking feeds one layer's outputs to the next as its inputs.

# %%
import numpy as np

import minigrad as mg
import minigrad.nn.functional as F
from models import LSTM
from models.gradient_flow import inspect

mg.set_default_dtype(mg.float64)
mg.manual_seed(0)
T, B, n_in, H = 10, 3, 4, 5
rng = np.random.default_rng(0)
x = rng.standard_normal((T, B, n_in))
net = LSTM(n_in, H, num_layers=2, bidirectional=True)
out, (h_n, c_n) = net(mg.tensor(x))
print("output", out.shape, "(T, B, 2H);  h_n", h_n.shape, "(layers * directions, B, H)")

# %% [markdown]
# ## The backward direction is the forward recurrence on the reversed sequence
# We copy layer 0's `_reverse` weights into a one-directional LSTM and run it on $x$ reversed
# in time: its outputs, reversed back, are the second half of layer 0's output.

# %%
layer0 = LSTM(n_in, H, num_layers=1, bidirectional=True)
layer0.load_state_dict({k: v for k, v in net.state_dict().items() if "_l0" in k})
backward_only = LSTM(n_in, H)
backward_only.load_state_dict(
    {k.replace("_reverse", ""): v for k, v in layer0.state_dict().items() if "_reverse" in k}
)
both, _ = layer0(mg.tensor(x))
rev, _ = backward_only(mg.tensor(x[::-1].copy()))
diff = np.abs(both.numpy()[:, :, H:] - rev.numpy()[::-1]).max()
print("largest difference:", diff)
assert diff < 1e-12

# %% [markdown]
# ## Where the gradient goes
# A loss read at the middle step $t_0$ only. In the forward direction it can reach the states
# $h_k$ with $k \le t_0$ (they came before), in the backward direction those with
# $k \ge t_0$; layer 1 reaches every step of layer 0 through its two directions.

# %%
t0 = T // 2
target = mg.tensor(rng.standard_normal((B, 2 * H)))
report = inspect(net, x, lambda o: F.mse_loss(o[t0], target), jacobian_of=(1, 1))
for (k, d), norms in report.state_grad_norms.items():
    row = norms.mean(axis=1)
    print(
        f"layer {k}, {'forward ' if d == 0 else 'backward'}:",
        " ".join("    0" if v == 0 else f"{v:.0e}" for v in row),
    )
fwd, bwd = report.state_grad_norms[(1, 0)], report.state_grad_norms[(1, 1)]
assert np.all(fwd[t0 + 1 :] == 0) and np.all(fwd[: t0 + 1] > 0)
assert np.all(bwd[:t0] == 0) and np.all(bwd[t0:] > 0)
assert np.all(report.state_grad_norms[(0, 0)] > 0)  # layer 0 hears from both directions above
