"""Sequence heads: a language model that trains and samples reproducibly, many-to-one pooling
over the valid steps, a bidirectional tagger, and a hierarchical RNN that is exactly the
composition of its two levels."""

import numpy as np
import pytest
from rnn_testing import float64_seeded, module_gradcheck, rng_fixture  # noqa: F401 (fixtures)

import minigrad as mg
import minigrad.nn.functional as F
import minigrad.optim as optim
from models import (
    LSTM,
    HierarchicalRNN,
    LanguageModel,
    SequenceClassifier,
    SequenceTagger,
    tbptt,
)

V, E, H = 5, 4, 6


def test_lstm_language_model_learns_a_periodic_sequence():
    mg.set_default_dtype(mg.float32)
    lm = LanguageModel(V, E, H, cell="lstm")
    stream = tbptt.batchify(np.tile([0, 1, 2, 3, 4], 40), 4)  # (50, 4)
    opt = optim.Adam(lm.parameters(), lr=0.05)
    first = last = None
    for _ in range(6):
        state = None
        for x, y in tbptt.chunks(stream[:-1], stream[1:], size=10):
            state = tbptt.detach_state(state)
            logits, state = lm(x, state)
            loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            first = loss.item() if first is None else first
            last = loss.item()
    assert last < 0.2 * first and np.exp(last) < 1.5  # perplexity close to 1
    assert logits.dtype == np.float32
    # Greedy generation continues the pattern.
    np.testing.assert_array_equal(lm.sample([0, 1], 6, temperature=0), [0, 1, 2, 3, 4, 0, 1, 2])


def test_language_model_state_carries_across_calls(rng):
    lm = LanguageModel(V, E, H, num_layers=2, cell="gru")
    tokens = rng.integers(0, V, size=(8, 3))
    whole, _ = lm(tokens)
    first, state = lm(tokens[:5])
    second, _ = lm(tokens[5:], state)
    np.testing.assert_allclose(np.concatenate([first.data, second.data]), whole.data, atol=1e-13)
    assert whole.shape == (8, 3, V)
    bf = LanguageModel(V, E, H, num_layers=2, cell="gru", batch_first=True)
    bf.load_state_dict(lm.state_dict())
    np.testing.assert_allclose(bf(tokens.T)[0].data, whole.numpy().transpose(1, 0, 2), atol=1e-14)


def test_sampling_is_reproducible_and_respects_top_k(rng):
    lm = LanguageModel(V, E, H)
    mg.manual_seed(11)
    a = lm.sample([1, 2, 3], 20, temperature=1.3)
    mg.manual_seed(11)
    b = lm.sample([1, 2, 3], 20, temperature=1.3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (23,) and a.dtype == np.int64 and list(a[:3]) == [1, 2, 3]
    assert lm.training  # sampling restores the mode
    out = lm.sample([4], 15, top_k=2)
    logits, _ = lm(out[:, None])  # each drawn token was among the 2 most probable there
    top2 = np.argsort(logits.data[:-1, 0], axis=1)[:, -2:]
    assert all(tok in top2[t] for t, tok in enumerate(out[1:]))
    greedy = lm.sample([4], 10, temperature=0)
    np.testing.assert_array_equal(lm.sample([4], 10, top_k=1), greedy)
    logits, _ = lm(greedy[:, None])
    np.testing.assert_array_equal(logits.data[:-1, 0].argmax(axis=1), greedy[1:])
    with pytest.raises(ValueError, match="LanguageModel.sample: prime must be a non-empty"):
        lm.sample([], 5)
    with pytest.raises(ValueError, match=r"top_k must lie in \[1, 5\]"):
        lm.sample([1], 5, top_k=9)


def test_tied_weights_are_one_parameter():
    lm = LanguageModel(V, H, H, tie_weights=True)
    assert lm.decoder.weight is lm.encoder.embedding.weight
    with pytest.raises(ValueError, match="tie_weights needs embed_size == hidden_size"):
        LanguageModel(V, E, H, tie_weights=True)


LENGTHS = [5, 2, 4]


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_classifier_pools_over_the_valid_steps(pooling, bidirectional, rng):
    clf = SequenceClassifier(3, H, 4, cell="gru", pooling=pooling, bidirectional=bidirectional)
    x = rng.standard_normal((5, 3, 3))
    logits = clf(mg.tensor(x), LENGTHS)
    assert logits.shape == (3, 4)
    rnn, W, b = clf.encoder.rnn, clf.classifier.weight.data, clf.classifier.bias.data
    for i, n in enumerate(LENGTHS):  # each sequence alone, no padding
        out, h_n = rnn(mg.tensor(x[:n, i : i + 1]))
        if pooling == "mean":
            pooled = out.data[:, 0].mean(axis=0)
        else:  # final states: forward at step n, backward at step 1
            pooled = h_n.data[:, 0].reshape(-1)
        np.testing.assert_allclose(logits.data[i], pooled @ W.T + b, atol=1e-13)


def test_classifier_on_tokens_with_gradient(rng):
    clf = SequenceClassifier(2, 3, 2, vocab_size=V, pooling="mean", batch_first=True)
    tokens = rng.integers(0, V, size=(2, 4))
    assert module_gradcheck(clf, lambda: clf(tokens, [4, 2]))
    with pytest.raises(ValueError, match="SequenceClassifier: expected token ids of shape"):
        clf(rng.standard_normal((2, 4)))
    with pytest.raises(ValueError, match="every sequence needs at least one step"):
        clf(tokens, [4, 0])


def test_tagger_is_bidirectional_and_aligned(rng):
    tagger = SequenceTagger(E, H, 3, vocab_size=V)
    tokens = rng.integers(0, V, size=(6, 2))
    logits = tagger(tokens, [6, 3])
    assert logits.shape == (6, 2, 3)
    assert tagger.encoder.rnn.bidirectional
    # The tag at step 1 depends on later tokens (the backward direction), within the length.
    changed = tokens.copy()
    changed[2, 1] = (changed[2, 1] + 1) % V
    other = tagger(changed, [6, 3])
    assert np.abs(other.data[0, 1] - logits.data[0, 1]).max() > 1e-8
    changed[4, 1] = (changed[4, 1] + 1) % V  # past the length: no effect
    np.testing.assert_array_equal(tagger(changed, [6, 3]).data[:3, 1], other.data[:3, 1])


def test_hierarchical_rnn_is_the_composition_of_its_levels(rng):
    model = HierarchicalRNN(2, 3, 4, cell="lstm", low_bidirectional=True)
    S, W, B = 3, 4, 2
    x = rng.standard_normal((S, W, B, 2))
    seg_lengths = np.array([[4, 2], [1, 3], [2, 0]])  # the last segment of doc 1 is padding
    doc_lengths = [3, 2]
    out, (h_n, _) = model(mg.tensor(x), seg_lengths, doc_lengths)
    low, high = model.low.rnn, model.high
    for b in range(B):
        summaries = []
        for s in range(doc_lengths[b]):
            n = seg_lengths[s, b]
            _, (h_low, _) = low(mg.tensor(x[s, :n, b : b + 1]))  # one segment alone
            summaries.append(h_low.data[:, 0].reshape(-1))  # [h->_n; h<-_1]
        seq = mg.tensor(np.stack(summaries)[:, None])
        out_b, (h_b, _) = high(seq)
        np.testing.assert_allclose(out.data[: doc_lengths[b], b], out_b.data[:, 0], atol=1e-13)
        np.testing.assert_allclose(h_n.data[:, b], h_b.data[:, 0], atol=1e-13)
    bf = HierarchicalRNN(2, 3, 4, cell="lstm", low_bidirectional=True, batch_first=True)
    bf.load_state_dict(model.state_dict())
    out_bf, _ = bf(mg.tensor(x.transpose(2, 0, 1, 3)), seg_lengths.T, doc_lengths)
    np.testing.assert_allclose(out_bf.data, out.data, atol=1e-14)
    small = HierarchicalRNN(2, 2, 2, cell="gru")
    xt = mg.tensor(rng.standard_normal((2, 3, 2, 2)), requires_grad=True)
    assert module_gradcheck(small, lambda xt: small(xt, [[3, 1], [2, 0]], [2, 1]), xt)


def test_heads_accept_any_cell():
    for cell in ["rnn", "rnn_relu", "irnn", "gru", "lstm"]:
        logits, _ = LanguageModel(V, E, H, cell=cell)(np.zeros((3, 2), dtype=np.int64))
        assert logits.shape == (3, 2, V)
    assert isinstance(LanguageModel(V, E, H).encoder.rnn, LSTM)
