"""Attention over a sequence of encoder states h_1..h_S, for a decoder state s (the query).

The lecture notes' four steps; the first three are here, the merge is in the decoder:

    e_j     = a(s, h_j)                           score of source position j
    alpha_j = exp(e_j) / sum_k exp(e_k)           softmax over the valid positions only
    c       = sum_j alpha_j h_j                   context vector
    s'      = f(s, y, c)                          merge (see `seq2seq.AttentionDecoder`)

Score functions a(s, h):

    additive   (Bahdanau et al. 2015)   a(s, h) = v^T tanh(W s + U h)
    dot        (Luong et al. 2015)      a(s, h) = s^T h
    general    (Luong et al. 2015)      a(s, h) = s^T W h

Shapes: query s (B, Q), keys h (B, S, K), mask (B, S) boolean with True at real (not padded)
source positions. forward returns (context (B, K), weights alpha (B, S)); padded positions get
weight exactly 0, and every row of weights sums to 1.
"""

import math

import numpy as np

import minigrad as mg
import minigrad.nn as nn
import minigrad.nn.functional as F

from .cells import check_sizes, float_input
from .elman import matvec

__all__ = ["AdditiveAttention", "MultiplicativeAttention", "masked_softmax", "lengths_to_mask"]


def lengths_to_mask(lengths, S):
    """(B,) lengths -> (B, S) boolean mask, True at positions j < lengths[b]."""
    arr = np.asarray(lengths.numpy() if isinstance(lengths, mg.Tensor) else lengths)
    return np.arange(S)[None, :] < arr[:, None]


def masked_softmax(scores, mask=None, owner="masked_softmax"):
    """softmax over the last axis, with masked-out positions (mask False) given weight 0."""
    if mask is None:
        return F.softmax(scores, dim=-1)
    mask = np.asarray(mask.numpy() if isinstance(mask, mg.Tensor) else mask)
    if mask.dtype != np.bool_ or mask.shape != scores.shape:
        raise ValueError(
            f"{owner}: mask must be boolean of the scores' shape {scores.shape} "
            f"(True = attend), got {mask.dtype} {mask.shape}"
        )
    if not mask.any(axis=-1).all():
        raise ValueError(f"{owner}: a row of the mask has no valid position to attend to")
    return F.softmax(mg.where(mask, scores, -np.inf), dim=-1)


class _Attention(nn.Module):
    """score -> masked softmax -> context. Subclasses define `score(query, keys, memory)`."""

    def prepare(self, keys):
        """Work that depends on the keys only, done once per source sequence (None if none)."""
        return None

    def score(self, query, keys, memory=None):
        raise NotImplementedError

    def forward(self, query, keys, mask=None, memory=None):
        """(query (B, Q), keys (B, S, K), mask (B, S)) -> (context (B, K), weights (B, S))."""
        name = type(self).__name__
        query, keys = float_input(name, query, "query"), float_input(name, keys, "keys")
        if query.ndim != 2 or query.shape[1] != self.query_size:
            raise ValueError(
                f"{name}: query must have shape (batch, {self.query_size}), got {query.shape}"
            )
        if keys.ndim != 3 or keys.shape[2] != self.key_size or keys.shape[0] != query.shape[0]:
            raise ValueError(
                f"{name}: keys must have shape (batch={query.shape[0]}, source_len, "
                f"{self.key_size}), got {keys.shape}"
            )
        e = self.score(query, keys, memory)  # e_j = a(s, h_j)
        alpha = masked_softmax(e, mask, owner=name)  # alpha_j = exp(e_j) / sum_k exp(e_k)
        context = (alpha.unsqueeze(1) @ keys).squeeze(1)  # c = sum_j alpha_j h_j
        return context, alpha


def _uniform(shape, fan_in):
    p = nn.Parameter(np.empty(shape, mg.get_default_dtype()))
    bound = 1.0 / math.sqrt(fan_in)
    nn.init.uniform_(p, -bound, bound)
    return p


class AdditiveAttention(_Attention):
    """Bahdanau attention: e_j = v^T tanh(W s + U h_j).

    W (attention_size, query_size), U (attention_size, key_size), v (attention_size,).
    `prepare(keys)` computes U h_j for all j once per source sequence; pass it as `memory`
    to each decoder step's forward.
    """

    def __init__(self, query_size, key_size, attention_size):
        super().__init__()
        check_sizes(
            "AdditiveAttention",
            query_size=query_size,
            key_size=key_size,
            attention_size=attention_size,
        )
        self.query_size, self.key_size = query_size, key_size
        self.attention_size = attention_size
        self.W = _uniform((attention_size, query_size), query_size)
        self.U = _uniform((attention_size, key_size), key_size)
        self.v = _uniform((attention_size,), attention_size)

    def prepare(self, keys):
        return matvec(self.U, keys)  # U h_j for every j: (B, S, A)

    def score(self, query, keys, memory=None):
        Uh = self.prepare(keys) if memory is None else memory
        Ws = matvec(self.W, query).unsqueeze(1)  # (B, 1, A), broadcast over j
        return (Ws + Uh).tanh() @ self.v  # e_j = v^T tanh(W s + U h_j): (B, S)

    def extra_repr(self):
        return f"query_size={self.query_size}, key_size={self.key_size}, " + (
            f"attention_size={self.attention_size}"
        )


class MultiplicativeAttention(_Attention):
    """Luong attention: e_j = s^T h_j ('dot', needs query_size == key_size) or
    e_j = s^T W h_j ('general', W of shape (query_size, key_size))."""

    def __init__(self, query_size, key_size, mode="general"):
        super().__init__()
        check_sizes("MultiplicativeAttention", query_size=query_size, key_size=key_size)
        if mode not in ("dot", "general"):
            raise ValueError(
                f"MultiplicativeAttention: mode must be 'dot' or 'general', got {mode!r}"
            )
        if mode == "dot" and query_size != key_size:
            raise ValueError(
                "MultiplicativeAttention: 'dot' scores need query_size == key_size, got "
                f"{query_size} and {key_size}; use mode='general'"
            )
        self.query_size, self.key_size, self.mode = query_size, key_size, mode
        if mode == "general":
            self.W = _uniform((query_size, key_size), key_size)

    def score(self, query, keys, memory=None):
        q = query if self.mode == "dot" else query @ self.W  # s^T, or s^T W: (B, K)
        return (keys @ q.unsqueeze(2)).squeeze(2)  # e_j = (s^T W) h_j: (B, S)

    def extra_repr(self):
        return f"query_size={self.query_size}, key_size={self.key_size}, mode={self.mode!r}"
