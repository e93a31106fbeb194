"""Seq2Seq(attention='none'): the encoder-decoder without attention (Cho et al. 2014). Every
decoder step sees the same context, the encoder's final states [h->_S; h<-_1] of each sequence's
own length; no attention parameters; gradients check; decoding works and reports weights 1."""

import numpy as np
import pytest
from rnn_testing import float64_seeded, module_gradcheck, rng_fixture  # noqa: F401 (fixtures)

from models import Seq2Seq

SRC_V, TGT_V, S, T, B = 7, 6, 5, 4, 3
LENGTHS = [5, 3, 2]


def batch(rng):
    src = rng.integers(3, SRC_V, size=(S, B))
    for b, n in enumerate(LENGTHS):
        src[n:, b] = 0  # pad
    return src, rng.integers(3, TGT_V, size=(T, B))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_context_is_the_encoders_final_states_at_every_step(cell, rng):
    model = Seq2Seq(SRC_V, TGT_V, 4, 3, attention="none", cell=cell)
    assert not [n for n, _ in model.named_parameters() if n.startswith("attention")]
    src, tgt = batch(rng)
    logits, attn = model(src, tgt, LENGTHS)
    assert attn.shape == (B, T, 1)
    np.testing.assert_array_equal(attn.data, 1.0)
    keys, mask, _ = model.encode(src, LENGTHS)
    out, h_n = model.encoder(model.src_embed(src), lengths=np.array(LENGTHS))
    h_n = h_n[0] if cell == "lstm" else h_n
    np.testing.assert_allclose(keys.data[:, 0], np.concatenate([h_n.data[0], h_n.data[1]], 1))
    assert mask is None and keys.shape == (B, 1, 6)
    # each sequence alone (no padding) gives the same logits: padding does not leak in
    for b, n in enumerate(LENGTHS):
        alone, _ = model(src[:n, b : b + 1], tgt[:, b : b + 1])
        np.testing.assert_allclose(alone.data[:, 0], logits.data[:, b], atol=1e-5)


def test_the_source_reaches_the_decoder_only_through_the_summary(rng):
    """Changing a middle source token changes the logits only through the final states: two
    sources whose summaries are made equal give equal logits."""
    model = Seq2Seq(SRC_V, TGT_V, 4, 3, attention="none")
    src, tgt = batch(rng)
    keys, _, state = model.encode(src, LENGTHS)
    y_prev = np.full(B, model.bos_index)
    step_logits, _, alpha = model.decode_step(y_prev, state, keys, None)
    other = keys.numpy().copy()
    other[0, 0, 0] += 1.0  # another summary for sequence 0
    moved, _, _ = model.decode_step(y_prev, state, keys * 0 + other, None)
    assert not np.allclose(moved.data[0], step_logits.data[0])
    np.testing.assert_allclose(moved.data[1:], step_logits.data[1:], atol=1e-6)
    np.testing.assert_array_equal(alpha.data, 1.0)


def test_fixed_context_gradcheck(rng):
    model = Seq2Seq(5, 4, 2, 2, attention="none", cell="gru")
    src = np.array([[3, 4], [4, 0], [3, 0]])
    tgt = np.array([[2, 3], [3, 2]])
    assert module_gradcheck(model, lambda: model(src, tgt, [3, 1])[0])


def test_fixed_context_decoding(rng):
    model = Seq2Seq(SRC_V, TGT_V, 4, 3, attention="none")
    src, _ = batch(rng)
    greedy = model.greedy_decode(src, LENGTHS, max_len=6)
    beam1 = model.beam_search(src, LENGTHS, beam_size=1, max_len=6)
    for g, b in zip(greedy, beam1, strict=True):
        np.testing.assert_array_equal(g.tokens, b.tokens)
        assert g.attention.shape == (len(g.tokens), 1)
        np.testing.assert_array_equal(g.attention, 1.0)
    assert len(model.beam_search(src, LENGTHS, beam_size=3, max_len=6)) == B
