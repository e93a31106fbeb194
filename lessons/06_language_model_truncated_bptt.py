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
# # Lesson 6. Language modelling with truncated BPTT
#
# An RNN language model (Alexandra Birch, "Natural Language Understanding, Generation, and
# Machine Translation, Lecture 5: Recurrent Neural Networks") predicts each token from the
# whole history, without the Markov assumption of n-grams:
# $P(w_1 \dots w_n) = \prod_t P(w_t \mid h_{t-1})$ with $h_t = f(h_{t-1}, w_t)$. Trained on a
# long stream, full BPTT would keep the entire stream's activations. Truncated BPTT cuts the
# stream into chunks of $k$ steps, carries the state across cuts as a value and
# backpropagates within each chunk: memory $O(k)$, but no gradient older than $k$ steps.

# %%
from pathlib import Path

import numpy as np

import minigrad as mg
import minigrad.nn.functional as F
import minigrad.optim as optim
from models import LanguageModel, tbptt

here = Path.cwd() if "__file__" not in globals() else Path(__file__).resolve().parent
text = (here.parent / "examples" / "data" / "tinyshakespeare" / "input.txt").read_text()[:12000]
vocab = sorted(set(text))
ids = np.array([vocab.index(ch) for ch in text])
V = len(vocab)
counts = np.bincount(ids, minlength=V) / len(ids)
unigram = -(counts[counts > 0] * np.log(counts[counts > 0])).sum()
print(f"{len(text)} characters, {V} symbols; unigram entropy {unigram:.3f} nats/char")

# %% [markdown]
# ## Training with truncated BPTT
# `tbptt.batchify` cuts the stream into $B$ parallel columns; `tbptt.truncated_bptt` runs
# the loop: detach the state, forward $k$ steps, backward, update.

# %%
mg.manual_seed(0)
model = LanguageModel(V, 16, 64, cell="lstm")
opt = optim.Adam(model.parameters(), lr=1e-2)
data = tbptt.batchify(ids, 16)  # (steps, 16)
inputs, targets = data[:-1], data[1:]
k = 20


def step(x, y, state):
    logits, state = model(mg.tensor(x), state)
    return F.cross_entropy(logits.reshape(-1, V), y.reshape(-1)), state


losses = []
for _epoch in range(2):
    chunk_losses, _ = tbptt.truncated_bptt(
        step, inputs, targets, size=k, after_backward=lambda loss: (opt.step(), opt.zero_grad())
    )
    losses += chunk_losses
print(f"loss: first chunk {losses[0]:.3f}, last ten chunks {np.mean(losses[-10:]):.3f} nats/char")
print(f"perplexity {np.exp(np.mean(losses[-10:])):.1f} (a uniform guess: {V})")
assert np.mean(losses[-10:]) < unigram  # it uses the history, not just symbol frequencies

# %% [markdown]
# ## What truncation keeps, and what it drops
# The graph of one chunk holds $k$ copies of the step; `mg.graph.stats` counts the bytes kept
# for backward; the truncated graph of the second chunk keeps only its own $k$ steps.

# %%
x = mg.tensor(inputs[: 2 * k])
logits, _ = model(x)
full = F.cross_entropy(logits.reshape(-1, V), targets[: 2 * k].reshape(-1))
info_full = mg.graph.stats(full)
logits1, state = model(mg.tensor(inputs[:k]))
logits2, _ = model(mg.tensor(inputs[k : 2 * k]), tbptt.detach_state(state))
info_chunk = mg.graph.stats(F.cross_entropy(logits2.reshape(-1, V), targets[k : 2 * k].reshape(-1)))
print(
    f"kept for backward: {info_full['saved_bytes'] / 1024:.0f} KiB for {2 * k} steps, "
    f"{info_chunk['saved_bytes'] / 1024:.0f} KiB for one chunk of {k}"
)
assert info_chunk["saved_bytes"] < 0.75 * info_full["saved_bytes"]

# %% [markdown]
# ## The truncated gradient is not the full one
# Take the loss $L_2$ of the second chunk (steps $k+1 \dots 2k$) of a small tanh RNN language
# model. Full BPTT differentiates it through all $2k$ steps; truncated BPTT starts the second
# chunk from the state $h_k$ as a constant, so it keeps the terms of
# $\partial L_2/\partial\theta$ that arise inside the chunk and drops those that reach $\theta$
# through $h_k$:
#
# $$\nabla_\theta L_2^{\text{full}} = \nabla_\theta L_2^{\text{truncated}}
#   + \Big(\frac{\partial h_k}{\partial \theta}\Big)^{\!\top}
#     \frac{\partial L_2}{\partial h_k} .$$
#
# We compute the full and the truncated gradient, the difference between them, and check
# that the difference is exactly the dropped term (a vector-Jacobian product of the first
# chunk with $\partial L_2 / \partial h_k$). Float64 here, so the check can be tight.

# %%
default_dtype = mg.get_default_dtype()
mg.set_default_dtype(mg.float64)
mg.manual_seed(0)
small = LanguageModel(V, 8, 16, cell="rnn")
x1, x2 = mg.tensor(inputs[:k]), mg.tensor(inputs[k : 2 * k])
y2 = targets[k : 2 * k].reshape(-1)


def gradient(loss):
    small.zero_grad()
    loss.backward()
    return {
        name: np.zeros_like(p.numpy()) if p.grad is None else p.grad.numpy().copy()  # None: no path
        for name, p in small.named_parameters()
    }


logits_full, _ = small(mg.tensor(inputs[: 2 * k]))  # all 2k steps in one graph
g_full = gradient(F.cross_entropy(logits_full[k:].reshape(-1, V), y2))
_, h_k = small(x1)
h_cut = h_k.detach().requires_grad_()  # the cut: h_k enters chunk 2 as a constant
logits2, _ = small(x2, h_cut)
g_trunc = gradient(F.cross_entropy(logits2.reshape(-1, V), y2))
dL2_dhk = h_cut.grad  # what the truncated backward stops at
g_dropped = gradient((h_k * mg.tensor(dL2_dhk)).sum())  # (dh_k/dtheta)^T dL2/dh_k

print(f"{'parameter':28s} {'||full||':>9s} {'||truncated||':>13s} {'relative difference':>19s}")
for name in g_full:
    full_norm = np.linalg.norm(g_full[name])
    diff = np.linalg.norm(g_full[name] - g_trunc[name]) / full_norm
    print(f"{name:28s} {full_norm:9.3e} {np.linalg.norm(g_trunc[name]):13.3e} {diff:19.1%}")
    dropped = g_full[name] - g_trunc[name] - g_dropped[name]
    assert np.abs(dropped).max() <= 1e-10 * full_norm
W_hh = "encoder.rnn.weight_hh_l0"
assert np.linalg.norm(g_full[W_hh] - g_trunc[W_hh]) > 0.05 * np.linalg.norm(g_full[W_hh])
assert np.allclose(g_full["decoder.weight"], g_trunc["decoder.weight"])  # read-out: no path via h_k
mg.set_default_dtype(default_dtype)

# %% [markdown]
# The read-out ($V$, $c$ in Lesson 1's letters) gets the same gradient either way: it has no
# path through $h_k$. Every weight the recurrence uses loses several percent here: the term
# that crosses the cut, which for the chunk's first loss is everything before its own step.
# How much that matters depends on how far back the gradient still reaches (Lesson 2): the
# closer to vanishing, the less truncation loses.

# %% [markdown]
# Real-time recurrent learning (Williams & Zipser 1989; `models/rtrl.py`) gives the untruncated
# gradient online with memory independent of the stream's length, at a cost of
# $O(H^2 |\theta|)$ per step. `examples/rtrl_vs_bptt.py` measures all three side by side.
