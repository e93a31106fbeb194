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
# for backward. And the truncated gradient is not the full one: the gradient of the losses in
# the second chunk with respect to the weights differs once the cut is honoured.

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
# Real-time recurrent learning (Williams & Zipser 1989; `models/rtrl.py`) gives the untruncated
# gradient online with memory independent of the stream's length, at a cost of
# $O(H^2 |\theta|)$ per step. `examples/rtrl_vs_bptt.py` measures all three side by side.
