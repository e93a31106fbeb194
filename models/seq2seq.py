"""Encoder-decoder with attention (Bahdanau et al. 2015; the lecture notes' NMT example).

Encoder: embeddings of the source tokens through a (by default bidirectional) GRU or LSTM,
giving one annotation h_j per source position (forward and backward states concatenated).

Decoder, one step per target token, from s_0 = tanh(W_s [h->_S; h<-_1]):

    e_tj    = a(s_{t-1}, h_j)                      score (additive, dot or general)
    alpha_t = softmax_j(e_tj)                      over the real source positions only
    c_t     = sum_j alpha_tj h_j                   context
    s_t     = f(s_{t-1}, [E y_{t-1}; c_t])         merge: a GRU/LSTM cell
    p(y_t | y_<t, x) = softmax(W_o [s_t; c_t; E y_{t-1}] + b_o)

Training feeds y_{t-1} = the target (teacher forcing) with probability `teacher_forcing_ratio`
at each step, else the model's own previous prediction. Decoding is greedy or by beam search;
both return the attention weights. attention='none' is the encoder-decoder without attention
(Cho et al. 2014, the baseline of Bahdanau et al. 2015): every step's context is the fixed
summary c = [h->_S; h<-_1], the encoder's final states, i.e. attention over that one vector
(its weights are all 1, shape (T, 1)); no attention parameters. Layout: src (S, B) and
tgt (T, B) token ids, or (B, S) and (B, T) with batch_first=True; the target excludes BOS (the
decoder starts from `bos_index`).
"""

from typing import NamedTuple

import numpy as np

import minigrad as mg
import minigrad.nn as nn
import minigrad.nn.functional as F

from .attention import AdditiveAttention, MultiplicativeAttention, lengths_to_mask
from .cells import GRUCell, LSTMCell, check_sizes
from .layers import make_rnn

__all__ = ["Seq2Seq", "Hypothesis"]


class Hypothesis(NamedTuple):
    """A decoded sequence: tokens (without BOS; ending with EOS if one was produced), the sum
    of their log-probabilities, and attention (len(tokens), S): step t's weights over the
    source positions."""

    tokens: np.ndarray
    score: float
    attention: np.ndarray


def _ids(owner, x, what):
    arr = np.asarray(x.numpy() if isinstance(x, mg.Tensor) else x)
    if arr.ndim != 2 or arr.dtype.kind not in "iu":
        raise ValueError(
            f"{owner}: {what} must be a 2-D array of token ids, got {arr.dtype} {arr.shape}"
        )
    return arr.astype(np.int64)


class Seq2Seq(nn.Module):
    """Seq2Seq(src_vocab, tgt_vocab, embed_size, hidden_size, attention='additive',
    cell='gru', bidirectional=True, attention_size=None, bos_index=1, eos_index=2,
    pad_index=0, batch_first=False).

    attention: 'additive' (Bahdanau), 'dot' or 'general' (Luong), or 'none' (a fixed context:
    the encoder's final states). The decoder's hidden size is the annotation size
    (num_directions * hidden_size), so 'dot' scores are defined.
    """

    def __init__(
        self,
        src_vocab,
        tgt_vocab,
        embed_size,
        hidden_size,
        attention="additive",
        cell="gru",
        bidirectional=True,
        attention_size=None,
        bos_index=1,
        eos_index=2,
        pad_index=0,
        batch_first=False,
    ):
        super().__init__()
        check_sizes(
            "Seq2Seq",
            src_vocab=src_vocab,
            tgt_vocab=tgt_vocab,
            embed_size=embed_size,
            hidden_size=hidden_size,
        )
        if cell not in ("gru", "lstm"):
            raise ValueError(f"Seq2Seq: cell must be 'gru' or 'lstm', got {cell!r}")
        if attention not in ("additive", "dot", "general", "none"):
            raise ValueError(
                "Seq2Seq: attention must be 'additive', 'dot' or 'general' (or 'none' for a "
                f"fixed context), got {attention!r}"
            )
        for name, idx in dict(bos_index=bos_index, eos_index=eos_index).items():
            if not 0 <= idx < tgt_vocab:
                raise ValueError(f"Seq2Seq: {name} {idx} is not a token of tgt_vocab={tgt_vocab}")
        self.cell_type, self.batch_first = cell, batch_first
        self.bos_index, self.eos_index, self.pad_index = bos_index, eos_index, pad_index
        self.tgt_vocab = tgt_vocab
        D = 2 if bidirectional else 1
        K = D * hidden_size  # size of an annotation h_j, and of the decoder state
        self.src_embed = nn.Embedding(src_vocab, embed_size, padding_idx=pad_index)
        self.encoder = make_rnn(cell, embed_size, hidden_size, bidirectional=bidirectional)
        self.bridge = nn.Linear(K, K)  # s_0 = tanh(W_s [h->_S; h<-_1] + b_s)
        self.tgt_embed = nn.Embedding(tgt_vocab, embed_size)
        self.fixed_context = attention == "none"
        if attention == "additive":
            self.attention = AdditiveAttention(K, K, attention_size or K)
        else:  # 'none': dot scores over the one summary vector give it weight 1, no parameters
            self.attention = MultiplicativeAttention(
                K, K, mode="dot" if attention == "none" else attention
            )
        Cell = GRUCell if cell == "gru" else LSTMCell
        self.decoder = Cell(embed_size + K, K)  # s_t = f(s_{t-1}, [E y_{t-1}; c_t])
        self.out = nn.Linear(K + K + embed_size, tgt_vocab)  # g(s_t, c_t, E y_{t-1})

    # ----- the pieces -------------------------------------------------------------------------
    def encode(self, src, src_lengths=None):
        """src (S, B) ids -> (annotations (B, S, K), mask (B, S), initial decoder state)."""
        S, B = src.shape
        lengths = None if src_lengths is None else np.asarray(src_lengths)
        x = self.src_embed(src)  # (S, B, E)
        out, h_n = self.encoder(x, lengths=lengths)
        h_n = h_n[0] if self.cell_type == "lstm" else h_n
        final = mg.cat([h_n[0], h_n[1]], axis=1) if h_n.shape[0] == 2 else h_n[0]  # [h->_S; h<-_1]
        s0 = self.bridge(final).tanh()
        state = s0 if self.cell_type == "gru" else (s0, mg.zeros_like(s0))
        mask = None if lengths is None else lengths_to_mask(lengths, S)
        if self.fixed_context:
            return final.unsqueeze(1), None, state  # one annotation: the summary c
        return out.transpose(0, 1), mask, state

    def decode_step(self, y_prev, state, keys, mask, memory=None):
        """One decoder step: previous tokens (B,) -> (logits (B, V), new state, alpha (B, S))."""
        s = state[0] if self.cell_type == "lstm" else state
        emb = self.tgt_embed(y_prev)  # E y_{t-1}
        context, alpha = self.attention(s, keys, mask, memory)  # e_tj, alpha_tj, c_t
        state = self.decoder(mg.cat([emb, context], axis=1), state)  # s_t
        s = state[0] if self.cell_type == "lstm" else state
        logits = self.out(mg.cat([s, context, emb], axis=1))  # g(y_{t-1}, s_t, c_t)
        return logits, state, alpha

    def _layout(self, arr):
        return arr.T if self.batch_first else arr

    # ----- training -----------------------------------------------------------------------
    def forward(self, src, tgt, src_lengths=None, teacher_forcing_ratio=1.0):
        """Logits for every target position, and the attention weights.

        src (S, B), tgt (T, B) (transposed with batch_first). At step t the decoder is fed
        tgt[t-1] (BOS at t = 0) with probability teacher_forcing_ratio, else its own previous
        prediction (argmax, no gradient through the choice); the draws use mg's generator.
        Returns logits (T, B, V) and attention (B, T, S) ((B, T, V) logits with batch_first).
        """
        if not 0.0 <= teacher_forcing_ratio <= 1.0:
            raise ValueError(
                f"Seq2Seq: teacher_forcing_ratio must lie in [0, 1], got {teacher_forcing_ratio}"
            )
        src = self._layout(_ids("Seq2Seq", src, "src"))
        tgt = self._layout(_ids("Seq2Seq", tgt, "tgt"))
        if src.shape[1] != tgt.shape[1]:
            raise ValueError(
                f"Seq2Seq: src {src.shape} and tgt {tgt.shape} hold different batch sizes"
            )
        keys, mask, state = self.encode(src, src_lengths)
        memory = self.attention.prepare(keys)
        T, B = tgt.shape
        rng = mg.random.generator()
        y_prev = np.full(B, self.bos_index, dtype=np.int64)
        logits, alphas = [], []
        for t in range(T):
            step_logits, state, alpha = self.decode_step(y_prev, state, keys, mask, memory)
            logits.append(step_logits)
            alphas.append(alpha)
            teacher = teacher_forcing_ratio == 1.0 or (
                teacher_forcing_ratio > 0.0 and rng.random() < teacher_forcing_ratio
            )
            y_prev = tgt[t] if teacher else step_logits.numpy().argmax(axis=1)
        logits = mg.stack(logits, axis=1 if self.batch_first else 0)
        return logits, mg.stack(alphas, axis=1)

    # ----- decoding -----------------------------------------------------------------------
    def _source(self, src):
        return self._layout(_ids("Seq2Seq", src, "src"))

    def greedy_decode(self, src, src_lengths=None, max_len=50):
        """Pick the most probable token at every step, until EOS or max_len. Returns one
        `Hypothesis` per source sequence."""
        if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"Seq2Seq.greedy_decode: max_len must be >= 1, got {max_len!r}")
        src = self._source(src)
        B = src.shape[1]
        with mg.no_grad():
            keys, mask, state = self.encode(src, src_lengths)
            memory = self.attention.prepare(keys)
            y_prev = np.full(B, self.bos_index, dtype=np.int64)
            tokens, attn, scores = [], [], np.zeros(B)
            done = np.zeros(B, dtype=bool)
            for _ in range(max_len):
                logits, state, alpha = self.decode_step(y_prev, state, keys, mask, memory)
                logp = F.log_softmax(logits, dim=-1).numpy()
                y_prev = logp.argmax(axis=1)
                scores += np.where(done, 0.0, logp[np.arange(B), y_prev])
                tokens.append(np.where(done, self.pad_index, y_prev))
                attn.append(alpha.numpy())
                done |= y_prev == self.eos_index
                if done.all():
                    break
        tokens, attn = np.stack(tokens, axis=1), np.stack(attn, axis=1)
        hyps = []
        for b in range(B):
            ends = np.flatnonzero(tokens[b] == self.eos_index)
            n = ends[0] + 1 if ends.size else tokens.shape[1]
            hyps.append(Hypothesis(tokens[b, :n], float(scores[b]), attn[b, :n]))
        return hyps

    def beam_search(self, src, src_lengths=None, beam_size=4, max_len=50, length_penalty=0.0):
        """Beam search in which a finished hypothesis keeps its slot: at every step the best
        continuations of the live prefixes are taken in order of probability until the live and
        the finished ones together number beam_size; a prefix that ends in EOS is finished, so
        the live beam narrows as hypotheses finish. The search stops when beam_size are
        finished, none is live, or at max_len (then the unfinished compete too). The best is
        chosen by log-probability / length**length_penalty. Returns one `Hypothesis` per source
        sequence. beam_size=1 is greedy decoding."""
        if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
            raise ValueError(f"Seq2Seq.beam_search: beam_size must be >= 1, got {beam_size!r}")
        if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"Seq2Seq.beam_search: max_len must be >= 1, got {max_len!r}")
        src = self._source(src)
        with mg.no_grad():
            keys, mask, state = self.encode(src, src_lengths)
            return [
                self._beam_one(b, keys, mask, state, beam_size, max_len, length_penalty)
                for b in range(src.shape[1])
            ]

    def _beam_one(self, b, keys, mask, state, k, max_len, length_penalty):
        pick = lambda t, rows: mg.tensor(t.numpy()[rows])  # select hypotheses' rows (no graph)
        keys = pick(keys, [b])
        mask = None if mask is None else mask[[b]]
        state = tuple(pick(s, [b]) for s in state) if isinstance(state, tuple) else pick(state, [b])
        memory = self.attention.prepare(keys)
        # The live beams: their tokens, log-probabilities and attention rows so far.
        beams = [([], 0.0, [])]
        finished = []
        for _ in range(max_len):
            n = len(beams)
            rows = [0] * n
            keys_n = pick(keys, rows)
            mem_n = None if memory is None else pick(memory, rows)
            mask_n = None if mask is None else mask[rows]
            y_prev = np.array([bm[0][-1] if bm[0] else self.bos_index for bm in beams])
            logits, new_state, alpha = self.decode_step(y_prev, state, keys_n, mask_n, mem_n)
            logp = F.log_softmax(logits, dim=-1).numpy()
            total = np.array([bm[1] for bm in beams])[:, None] + logp  # (n, V)
            order = np.argsort(-total, axis=None, kind="stable")
            survivors, keep = [], []
            for flat in order:
                i, tok = divmod(int(flat), logp.shape[1])
                tokens = beams[i][0] + [tok]
                attn = beams[i][2] + [alpha.numpy()[i]]
                if tok == self.eos_index:
                    finished.append((tokens, float(total[i, tok]), attn))
                else:
                    survivors.append((tokens, float(total[i, tok]), attn))
                    keep.append(i)
                if len(survivors) + len(finished) >= k:
                    break
            if len(finished) >= k or not survivors:
                break
            beams = survivors
            if isinstance(new_state, tuple):
                state = tuple(pick(s, keep) for s in new_state)
            else:
                state = pick(new_state, keep)
        else:
            finished.extend(beams)  # max_len reached: the unfinished ones compete too
        best = max(finished, key=lambda h: h[1] / max(len(h[0]), 1) ** length_penalty)
        return Hypothesis(np.array(best[0], dtype=np.int64), best[1], np.stack(best[2]))
