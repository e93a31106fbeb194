"""Encoder-decoder with attention: gradients check, teacher forcing and its ratio mean what
they say, beam search with beam 1 is greedy decoding, scores are log-probabilities, and the
attention weights are distributions over the real source positions."""

import numpy as np
import pytest
from rnn_testing import float64_seeded, module_gradcheck, rng_fixture  # noqa: F401 (fixtures)

import minigrad as mg
import minigrad.nn.functional as F
from models import Seq2Seq

SRC_V, TGT_V, S, T, B = 7, 6, 5, 4, 3
LENGTHS = [5, 3, 2]


def batch(rng):
    src = rng.integers(3, SRC_V, size=(S, B))
    for b, n in enumerate(LENGTHS):
        src[n:, b] = 0  # pad
    return src, rng.integers(3, TGT_V, size=(T, B))


@pytest.mark.parametrize(
    "attention,cell", [("additive", "gru"), ("general", "lstm"), ("dot", "gru")]
)
def test_seq2seq_gradcheck(attention, cell, rng):
    model = Seq2Seq(5, 4, 2, 2, attention=attention, cell=cell)
    src = np.array([[3, 4], [4, 0], [3, 0]])
    tgt = np.array([[2, 3], [3, 2]])
    assert module_gradcheck(model, lambda: model(src, tgt, [3, 1])[0])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_teacher_forcing_feeds_the_targets(cell, rng):
    model = Seq2Seq(SRC_V, TGT_V, 4, 3, cell=cell)
    src, tgt = batch(rng)
    logits, attn = model(src, tgt, LENGTHS)
    keys, mask, state = model.encode(src, LENGTHS)
    y_prev = np.full(B, model.bos_index)
    for t in range(T):  # the definition, step by step: feed the previous target
        step, state, alpha = model.decode_step(y_prev, state, keys, mask)
        np.testing.assert_allclose(logits.data[t], step.data, atol=1e-14)
        np.testing.assert_allclose(attn.data[:, t], alpha.data, atol=1e-14)
        y_prev = tgt[t]
    assert attn.shape == (B, T, S)
    np.testing.assert_allclose(attn.data.sum(axis=2), 1.0, atol=1e-14)
    for b, n in enumerate(LENGTHS):
        assert not attn.data[b, :, n:].any(), "padded source positions get no attention"


def test_teacher_forcing_ratio(rng):
    model = Seq2Seq(SRC_V, TGT_V, 4, 3)
    src, tgt = batch(rng)
    # Ratio 0: the model is fed its own argmax, so its logits are those of greedy decoding.
    free, _ = model(src, tgt, LENGTHS, teacher_forcing_ratio=0.0)
    greedy = model.greedy_decode(src, LENGTHS, max_len=T)
    for b, hyp in enumerate(greedy):
        n = len(hyp.tokens)
        np.testing.assert_array_equal(free.data[:n, b].argmax(axis=1), hyp.tokens)
    # Ratio 1 draws nothing from the generator; a ratio in between draws once per step and
    # gives, each step, either the teacher-forced or the free-running input.
    state = mg.random.generator().bit_generator.state
    forced, _ = model(src, tgt, LENGTHS, teacher_forcing_ratio=1.0)
    assert mg.random.generator().bit_generator.state == state
    mg.manual_seed(3)
    mixed, _ = model(src, tgt, LENGTHS, teacher_forcing_ratio=0.5)
    mg.manual_seed(3)
    coins = mg.random.generator().random(T) < 0.5
    np.testing.assert_array_equal(mixed.data[0], forced.data[0])  # step 0 is fed BOS
    if coins[0]:  # step 1's input was tgt[0], as under teacher forcing
        np.testing.assert_allclose(mixed.data[1], forced.data[1], atol=1e-14)
    else:
        np.testing.assert_allclose(mixed.data[1], free.data[1], atol=1e-14)
    with pytest.raises(ValueError, match="teacher_forcing_ratio must lie in"):
        model(src, tgt, LENGTHS, teacher_forcing_ratio=1.5)


@pytest.mark.parametrize(
    "attention,cell", [("additive", "gru"), ("general", "lstm"), ("dot", "lstm")]
)
def test_beam_of_one_is_greedy(attention, cell, rng):
    for seed in range(3):
        mg.manual_seed(seed)
        model = Seq2Seq(SRC_V, TGT_V, 4, 3, attention=attention, cell=cell)
        src, _ = batch(rng)
        greedy = model.greedy_decode(src, LENGTHS, max_len=6)
        beam = model.beam_search(src, LENGTHS, beam_size=1, max_len=6)
        for g, b in zip(greedy, beam, strict=True):
            np.testing.assert_array_equal(g.tokens, b.tokens)
            assert abs(g.score - b.score) < 1e-10
            np.testing.assert_allclose(g.attention, b.attention, atol=1e-12)


def test_beam_scores_are_log_probabilities(rng):
    model = Seq2Seq(SRC_V, TGT_V, 4, 3)
    src, _ = batch(rng)
    for b, hyp in enumerate(model.beam_search(src, LENGTHS, beam_size=3, max_len=6)):
        # Score the hypothesis again, teacher-forced: the sum of log p(y_t | y_<t, x).
        n = S if b == 0 else LENGTHS[b]
        logits, attn = model(src[:n, b : b + 1], hyp.tokens[:, None], [n])
        logp = F.log_softmax(logits, dim=-1).data[:, 0]
        assert abs(logp[np.arange(len(hyp.tokens)), hyp.tokens].sum() - hyp.score) < 1e-10
        np.testing.assert_allclose(hyp.attention[:, :n], attn.data[0], atol=1e-12)
        assert hyp.tokens[-1] == model.eos_index or len(hyp.tokens) == 6


def test_batch_first_layout(rng):
    tm = Seq2Seq(SRC_V, TGT_V, 4, 3)
    bf = Seq2Seq(SRC_V, TGT_V, 4, 3, batch_first=True)
    bf.load_state_dict(tm.state_dict())
    src, tgt = batch(rng)
    a, attn_a = tm(src, tgt, LENGTHS)
    b, attn_b = bf(src.T, tgt.T, LENGTHS)
    np.testing.assert_allclose(b.data, a.numpy().transpose(1, 0, 2), atol=1e-14)
    np.testing.assert_allclose(attn_b.data, attn_a.data, atol=1e-14)


def test_seq2seq_errors():
    with pytest.raises(ValueError, match="Seq2Seq: attention must be 'additive', 'dot' or"):
        Seq2Seq(5, 5, 2, 2, attention="cosine")
    with pytest.raises(ValueError, match="Seq2Seq: eos_index 9 is not a token of tgt_vocab=5"):
        Seq2Seq(5, 5, 2, 2, eos_index=9)
    model = Seq2Seq(5, 5, 2, 2)
    with pytest.raises(ValueError, match=r"Seq2Seq: src \(3, 2\) and tgt \(2, 3\) hold different"):
        model(np.zeros((3, 2), dtype=int), np.zeros((2, 3), dtype=int))
    with pytest.raises(ValueError, match=r"Seq2Seq: src must be a 2-D array of token ids"):
        model(np.zeros((3, 2)), np.zeros((2, 2), dtype=int))
