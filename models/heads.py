"""Sequence models built from a recurrent layer: the applications in the lecture notes.

    LanguageModel       many-to-many, next token:   Embedding -> RNN/LSTM/GRU -> Linear
    SequenceClassifier  many-to-one:                pool h_t over the valid steps ('last' or
                                                    'mean') -> Linear
    SequenceTagger      many-to-many, aligned:      bidirectional RNN -> Linear at every step
    HierarchicalRNN     a low-level RNN reads each segment (e.g. the words of a sentence); its
                        final states are the inputs of a high-level RNN over the segments

Inputs are time-major, (T, B) token ids or (T, B, input_size) features, like the layers;
`batch_first=True` takes (B, T, ...) instead. `cell` is 'lstm', 'gru', 'rnn' (tanh),
'rnn_relu' or 'irnn'.
"""

import numpy as np

import minigrad as mg
import minigrad.nn as nn

from .cells import check_sizes
from .layers import lengths_mask, make_rnn

__all__ = ["LanguageModel", "SequenceClassifier", "SequenceTagger", "HierarchicalRNN"]


def _final_h(h_n):
    """h_n of any layer type (LSTM gives (h_n, c_n)) -> the hidden states h_n."""
    return h_n[0] if isinstance(h_n, tuple) else h_n


def _last_layer_final(h_n, num_directions):
    """The last layer's final state(s), directions concatenated: (B, D*H)."""
    h = _final_h(h_n)
    if num_directions == 1:
        return h[h.shape[0] - 1]
    return mg.cat([h[h.shape[0] - 2], h[h.shape[0] - 1]], axis=-1)  # [h->_T; h<-_1]


class _Encoder(nn.Module):
    """Optional embedding, then a recurrent layer; shared by the heads."""

    def __init__(self, owner, input_size, hidden_size, vocab_size, cell, batch_first, **rnn_kw):
        super().__init__()
        check_sizes(owner, input_size=input_size, hidden_size=hidden_size)
        if vocab_size is not None:
            check_sizes(owner, vocab_size=vocab_size)
            self.embedding = nn.Embedding(vocab_size, input_size)
        else:
            self.embedding = None
        self.owner = owner
        self.batch_first = bool(batch_first)
        self.rnn = make_rnn(cell, input_size, hidden_size, **rnn_kw)

    def inputs(self, x):
        """(T, B[, in]) time-major, embedded if x holds token ids."""
        if self.batch_first:
            x = x.transpose(0, 1) if isinstance(x, mg.Tensor) else np.swapaxes(np.asarray(x), 0, 1)
        if self.embedding is not None:
            ids = np.asarray(x.numpy() if isinstance(x, mg.Tensor) else x)
            if ids.ndim != 2 or ids.dtype.kind not in "iu":
                raise ValueError(
                    f"{self.owner}: expected token ids of shape (seq, batch) (or (batch, seq) "
                    f"with batch_first), got {ids.dtype} {ids.shape}"
                )
            return self.embedding(ids)
        return x

    def forward(self, x, state=None, lengths=None):
        return self.rnn(self.inputs(x), state, lengths)


class LanguageModel(nn.Module):
    """Embedding -> RNN/LSTM/GRU -> Linear: logits for the next token at every step.

    LanguageModel(vocab_size, embed_size, hidden_size, num_layers=1, cell='lstm', dropout=0.0,
    tie_weights=False, batch_first=False). Dropout (if any) is applied to the embeddings,
    between layers and to the last layer's outputs. tie_weights shares the embedding matrix
    with the output layer (needs embed_size == hidden_size).

    forward(tokens (T, B), state=None) -> (logits (T, B, vocab_size), state). Carry `state`
    from one chunk to the next, detached (models.tbptt.detach_state), for truncated BPTT.
    The loss F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1)) is the average
    negative log-likelihood per token; exp of it is the perplexity.
    """

    def __init__(
        self,
        vocab_size,
        embed_size,
        hidden_size,
        num_layers=1,
        cell="lstm",
        dropout=0.0,
        tie_weights=False,
        batch_first=False,
    ):
        super().__init__()
        check_sizes("LanguageModel", vocab_size=vocab_size)
        self.vocab_size = vocab_size
        self.encoder = _Encoder(
            "LanguageModel", embed_size, hidden_size, vocab_size, cell, batch_first,
            num_layers=num_layers, dropout=dropout,
        )  # fmt: skip
        self.drop = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        if tie_weights:
            if embed_size != hidden_size:
                raise ValueError(
                    "LanguageModel: tie_weights needs embed_size == hidden_size, got "
                    f"{embed_size} and {hidden_size}"
                )
            self.decoder.weight = self.encoder.embedding.weight

    def forward(self, tokens, state=None):
        enc = self.encoder
        x = self.drop(enc.inputs(tokens))
        output, state = enc.rnn(x, state)
        logits = self.decoder(self.drop(output))
        if enc.batch_first:
            logits = logits.transpose(0, 1)
        return logits, state

    def sample(self, prime, length, temperature=1.0, top_k=None):
        """Generate `length` tokens after the token ids `prime` (a non-empty 1-D sequence).

        Each next token is drawn from softmax(logits / temperature), restricted to the top_k
        most probable tokens if top_k is given, with minigrad's global generator (so
        mg.manual_seed makes it reproducible); temperature=0 takes the argmax. Runs in eval
        mode without a graph. Returns the int64 array prime + generated tokens.
        """
        prime = np.asarray(prime.numpy() if isinstance(prime, mg.Tensor) else prime)
        if prime.ndim != 1 or prime.size == 0 or prime.dtype.kind not in "iu":
            raise ValueError(
                f"LanguageModel.sample: prime must be a non-empty 1-D sequence of token ids, "
                f"got {prime.dtype} {prime.shape}"
            )
        if temperature < 0:
            raise ValueError(f"LanguageModel.sample: temperature must be >= 0, got {temperature}")
        if top_k is not None and not 1 <= top_k <= self.vocab_size:
            raise ValueError(
                f"LanguageModel.sample: top_k must lie in [1, {self.vocab_size}], got {top_k}"
            )
        rng = mg.random.generator()
        shape = (1, -1) if self.encoder.batch_first else (-1, 1)
        was_training = self.training
        self.eval()
        out = list(prime.astype(np.int64))
        try:
            with mg.no_grad():
                logits, state = self(prime.astype(np.int64).reshape(shape))
                for _ in range(length):
                    z = logits.numpy().reshape(-1, self.vocab_size)[-1].astype(np.float64)
                    token = _draw(z, temperature, top_k, rng)
                    out.append(token)
                    logits, state = self(np.array([[token]]), state)
        finally:
            self.train(was_training)
        return np.array(out, dtype=np.int64)


def _draw(z, temperature, top_k, rng):
    """One token from logits z: argmax if temperature is 0, else a draw from
    softmax(z / temperature) over the top_k largest (all if top_k is None)."""
    if top_k is not None:
        cut = np.partition(z, -top_k)[-top_k]
        z = np.where(z >= cut, z, -np.inf)
    if temperature == 0:
        return int(np.argmax(z))
    z = z / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    return int(rng.choice(z.size, p=p))


class SequenceClassifier(nn.Module):
    """Many-to-one: read the whole sequence, then classify it from a pooled state.

    SequenceClassifier(input_size, hidden_size, num_classes, vocab_size=None, cell='lstm',
    num_layers=1, bidirectional=False, pooling='last', dropout=0.0, batch_first=False).
    With vocab_size, inputs are token ids embedded to input_size; else feature vectors.

    pooling='last': the final state of each sequence at its own last valid step (forward and
    backward final states concatenated if bidirectional). pooling='mean': the average of the
    last layer's outputs over each sequence's valid steps. forward(x, lengths=None) -> logits
    (B, num_classes).
    """

    def __init__(
        self,
        input_size,
        hidden_size,
        num_classes,
        vocab_size=None,
        cell="lstm",
        num_layers=1,
        bidirectional=False,
        pooling="last",
        dropout=0.0,
        batch_first=False,
    ):
        super().__init__()
        check_sizes("SequenceClassifier", num_classes=num_classes)
        if pooling not in ("last", "mean"):
            raise ValueError(
                f"SequenceClassifier: pooling must be 'last' or 'mean', got {pooling!r}"
            )
        self.pooling = pooling
        self.encoder = _Encoder(
            "SequenceClassifier", input_size, hidden_size, vocab_size, cell, batch_first,
            num_layers=num_layers, bidirectional=bidirectional, dropout=dropout,
        )  # fmt: skip
        self.drop = nn.Dropout(dropout)
        D = 2 if bidirectional else 1
        self.classifier = nn.Linear(D * hidden_size, num_classes)

    def forward(self, x, lengths=None):
        enc = self.encoder
        x = enc.inputs(x)
        T, B = x.shape[0], x.shape[1]
        if lengths is not None:
            lengths = lengths_mask("SequenceClassifier", lengths, T, B)[1]
            if (lengths == 0).any():
                raise ValueError("SequenceClassifier: every sequence needs at least one step")
        output, h_n = enc.rnn(x, None, lengths)
        if self.pooling == "last":
            pooled = _last_layer_final(h_n, enc.rnn.num_directions)
        elif lengths is None:
            pooled = output.mean(axis=0)
        else:  # outputs at padded steps are zero: sum, then divide by the true lengths
            pooled = output.sum(axis=0) / mg.tensor(lengths[:, None].astype(output.dtype))
        return self.classifier(self.drop(pooled))


class SequenceTagger(nn.Module):
    """Many-to-many aligned: one label per input step, from a (bidirectional) RNN.

    SequenceTagger(input_size, hidden_size, num_tags, vocab_size=None, cell='lstm',
    num_layers=1, bidirectional=True, dropout=0.0, batch_first=False).
    forward(x, lengths=None) -> logits (T, B, num_tags). Positions past a sequence's length
    carry no information; give them the target `ignore_index` in F.cross_entropy.
    """

    def __init__(
        self,
        input_size,
        hidden_size,
        num_tags,
        vocab_size=None,
        cell="lstm",
        num_layers=1,
        bidirectional=True,
        dropout=0.0,
        batch_first=False,
    ):
        super().__init__()
        check_sizes("SequenceTagger", num_tags=num_tags)
        self.encoder = _Encoder(
            "SequenceTagger", input_size, hidden_size, vocab_size, cell, batch_first,
            num_layers=num_layers, bidirectional=bidirectional, dropout=dropout,
        )  # fmt: skip
        self.drop = nn.Dropout(dropout)
        D = 2 if bidirectional else 1
        self.tagger = nn.Linear(D * hidden_size, num_tags)

    def forward(self, x, lengths=None):
        output, _ = self.encoder(x, None, lengths)
        logits = self.tagger(self.drop(output))
        return logits.transpose(0, 1) if self.encoder.batch_first else logits


class HierarchicalRNN(nn.Module):
    """Two levels of recurrence: a low-level RNN reads each segment (the words of a
    sentence); its final state summarises the segment; a high-level RNN reads those
    summaries in order (the sentences of a document).

        u_s = final state of RNN_low over the tokens of segment s
        (v_1..v_S, v_n) = RNN_high(u_1, ..., u_S)

    HierarchicalRNN(input_size, low_hidden_size, high_hidden_size, vocab_size=None,
    cell='lstm', low_bidirectional=False, high_bidirectional=False, batch_first=False).

    forward(x, segment_lengths=None, lengths=None): x (S, W, B) token ids or (S, W, B,
    input_size) features: S segments of up to W steps; batch_first takes (B, S, W, ...).
    segment_lengths (S, B) (or (B, S)): valid steps of each segment (0 for a padded
    segment); lengths (B,): number of valid segments. Returns the high level's
    (output (S, B, D*high_hidden_size), h_n).
    """

    def __init__(
        self,
        input_size,
        low_hidden_size,
        high_hidden_size,
        vocab_size=None,
        cell="lstm",
        low_bidirectional=False,
        high_bidirectional=False,
        batch_first=False,
    ):
        super().__init__()
        self.low = _Encoder(
            "HierarchicalRNN", input_size, low_hidden_size, vocab_size, cell, False,
            bidirectional=low_bidirectional,
        )  # fmt: skip
        D = 2 if low_bidirectional else 1
        self.high = make_rnn(
            cell, D * low_hidden_size, high_hidden_size, bidirectional=high_bidirectional
        )
        self.batch_first = bool(batch_first)
        self.embedded = vocab_size is not None

    def forward(self, x, segment_lengths=None, lengths=None):
        if not isinstance(x, mg.Tensor):
            x = np.asarray(x)
        core = 3 if self.embedded else 4
        if x.ndim != core:
            what = "token ids" if self.embedded else "features"
            raise ValueError(
                f"HierarchicalRNN: expected {what} of {core} dims (segments, steps, batch"
                f"{'' if self.embedded else ', input_size'}), got shape {x.shape}"
            )
        if self.batch_first:  # (B, S, W, ...) -> (S, W, B, ...)
            axes = (1, 2, 0) + tuple(range(3, x.ndim))
            x = x.permute(axes) if isinstance(x, mg.Tensor) else np.transpose(x, axes)
            if segment_lengths is not None:
                segment_lengths = np.asarray(segment_lengths).T
        S, W, B = x.shape[:3]
        # The low level reads all S*B segments as one batch: (W, S*B, ...).
        axes = (1, 0, 2) + tuple(range(3, x.ndim))
        if isinstance(x, mg.Tensor):
            flat = x.permute(axes).reshape((W, S * B) + x.shape[3:])
        else:
            flat = np.transpose(x, axes).reshape((W, S * B) + x.shape[3:])
        seg_len = None
        if segment_lengths is not None:
            seg_len = np.asarray(segment_lengths)
            if seg_len.shape != (S, B):
                raise ValueError(
                    f"HierarchicalRNN: segment_lengths must have shape {(S, B)}, got "
                    f"{seg_len.shape}"
                )
            seg_len = seg_len.reshape(S * B)
        _, h_low = self.low(flat, None, seg_len)
        summaries = _last_layer_final(h_low, self.low.rnn.num_directions)  # u_s: (S*B, D*H)
        summaries = summaries.reshape(S, B, summaries.shape[-1])
        return self.high(summaries, None, lengths)
