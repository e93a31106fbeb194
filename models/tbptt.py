"""Truncated backpropagation through time: carry the state across chunks, cut the graph.

Full BPTT over a stream of T steps keeps every step's activations (memory O(T)) and runs one
backward through all of them per update. Truncated BPTT splits the stream into chunks of k
steps. The state at the end of a chunk is carried into the next one as a *value*, so the
forward pass still sees the whole past, but it is detached from the graph, so no gradient
flows back across the cut. Memory and work per update become O(k). Detaching every k steps and
backpropagating k steps is TBPTT(k, k) in Williams and Peng's notation (PyTorch's
word_language_model calls the detach `repackage_hidden`). A window k >= T is full BPTT.

The recipe, for a model whose forward is `model(x, state) -> (logits, state)`:

    state = None
    for x, y in tbptt.chunks(inputs, targets, size=35):
        state = tbptt.detach_state(state)        # keep the value, cut the graph
        logits, state = model(x, state)
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()                          # back through this chunk only
        opt.step()

`truncated_bptt` runs that loop for you, calling back after each chunk's backward.
"""

import numpy as np

import minigrad as mg

__all__ = ["detach_state", "chunks", "batchify", "truncated_bptt"]


def detach_state(state):
    """The same state with every tensor detached from the graph: works on None, a Tensor, and
    tuples/lists (nested, e.g. an LSTM's (h, c) or a list of per-layer states)."""
    if state is None:
        return None
    if isinstance(state, mg.Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    raise TypeError(
        f"detach_state: expected a Tensor or a tuple/list of them, got {type(state).__name__}"
    )


def chunks(*sequences, size, axis=0):
    """Yield aligned windows of `size` steps along `axis` (the last may be shorter).

    With one sequence, yields its windows; with several (inputs, targets, ...), which must
    have the same length along `axis`, yields tuples of windows. Works on Tensors and arrays.
    """
    if not sequences:
        raise ValueError("chunks: give at least one sequence")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
        raise ValueError(f"chunks: size must be a positive integer, got {size!r}")
    lengths = {s.shape[axis] for s in sequences}
    if len(lengths) != 1:
        shapes = ", ".join(str(tuple(s.shape)) for s in sequences)
        raise ValueError(f"chunks: sequences differ in length along axis {axis}: {shapes}")
    (n,) = lengths
    for start in range(0, n, size):
        window = tuple(
            s[(slice(None),) * (axis % s.ndim) + (slice(start, start + size),)] for s in sequences
        )
        yield window if len(window) > 1 else window[0]


def batchify(data, batch_size):
    """Cut a 1-D stream into `batch_size` contiguous columns: shape (len // batch_size, B).

    Column b is the b-th contiguous piece of the stream, so consecutive chunks along axis 0
    continue each column where the previous chunk stopped (what carrying the state assumes).
    The remainder that does not fill a row is dropped.
    """
    arr = np.asarray(data.numpy() if isinstance(data, mg.Tensor) else data)
    if arr.ndim != 1:
        raise ValueError(f"batchify: expected a 1-D stream, got shape {arr.shape}")
    rows = arr.shape[0] // batch_size
    if rows == 0:
        raise ValueError(f"batchify: a stream of {arr.shape[0]} is shorter than {batch_size}")
    return arr[: rows * batch_size].reshape(batch_size, rows).T.copy()


def truncated_bptt(step, *sequences, size, state=None, axis=0, after_backward=None):
    """Run TBPTT(size, size) over aligned sequences.

    step(*windows, state) -> (loss, new_state) computes one chunk. For each chunk the carried
    state is detached, `loss.backward()` is called, then `after_backward(loss)` (e.g. clip
    and take an optimizer step; without it, gradients accumulate over the chunks). Returns
    (list of chunk losses as floats, final state, detached).
    """
    losses = []
    for window in chunks(*sequences, size=size, axis=axis):
        window = window if isinstance(window, tuple) else (window,)
        loss, state = step(*window, detach_state(state))
        loss.backward()
        if after_backward is not None:
            after_backward(loss)
        losses.append(float(loss.item()))
    return losses, detach_state(state)
