"""Attention: score, softmax, context. Weights sum to 1, masked positions get exactly 0,
the scores are the equations', and gradients check."""

import numpy as np
import pytest
from rnn_testing import float64_seeded, module_gradcheck, rng_fixture  # noqa: F401 (fixtures)

import minigrad as mg
from models import AdditiveAttention, MultiplicativeAttention, masked_softmax
from models import reference_bptt as ref

B, S, Q, K = 3, 4, 2, 3
MASK = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=bool)

MODULES = {
    "additive": lambda: AdditiveAttention(Q, K, 5),
    "general": lambda: MultiplicativeAttention(Q, K, mode="general"),
    "dot": lambda: MultiplicativeAttention(K, K, mode="dot"),
}


def inputs(kind, rng):
    q = rng.standard_normal((B, K if kind == "dot" else Q))
    return q, rng.standard_normal((B, S, K))


def numpy_scores(kind, attn, s, h):
    if kind == "additive":  # e_j = v^T tanh(W s + U h_j)
        W, U, v = attn.W.data, attn.U.data, attn.v.data
        return np.tanh((s @ W.T)[:, None, :] + h @ U.T) @ v
    if kind == "general":  # e_j = s^T W h_j
        return np.einsum("bq,qk,bsk->bs", s, attn.W.data, h)
    return np.einsum("bk,bsk->bs", s, h)  # e_j = s^T h_j


@pytest.mark.parametrize("kind", list(MODULES))
def test_attention_is_score_softmax_context(kind, rng):
    attn = MODULES[kind]()
    s, h = inputs(kind, rng)
    context, alpha = attn(mg.tensor(s), mg.tensor(h), MASK)
    e = numpy_scores(kind, attn, s, h)
    e = np.where(MASK, e, -np.inf)
    expected_alpha = ref.softmax(e)  # alpha_j = exp(e_j) / sum_k exp(e_k), valid k only
    np.testing.assert_allclose(alpha.data, expected_alpha, atol=1e-14)
    np.testing.assert_allclose(alpha.data.sum(axis=1), 1.0, atol=1e-14)
    assert not alpha.data[~MASK].any(), "masked positions must get weight exactly 0"
    # c = sum_j alpha_j h_j
    np.testing.assert_allclose(context.data, np.einsum("bs,bsk->bk", expected_alpha, h), atol=1e-14)
    unmasked = attn(mg.tensor(s), mg.tensor(h))[1].data
    np.testing.assert_allclose(unmasked.sum(axis=1), 1.0, atol=1e-14)
    assert (unmasked > 0).all()


@pytest.mark.parametrize("kind", list(MODULES))
def test_attention_gradcheck(kind, rng):
    attn = MODULES[kind]()
    s, h = (mg.tensor(a, requires_grad=True) for a in inputs(kind, rng))
    assert module_gradcheck(attn, lambda s, h: attn(s, h, MASK), s, h)


def test_masked_keys_do_not_matter(rng):
    attn = AdditiveAttention(Q, K, 4)
    s, h = inputs("additive", rng)
    h2 = np.where(MASK[:, :, None], h, 1e3)  # change only the masked keys
    a = attn(mg.tensor(s), mg.tensor(h), MASK)
    b = attn(mg.tensor(s), mg.tensor(h2), MASK)
    np.testing.assert_array_equal(a[0].data, b[0].data)
    keys = mg.tensor(h, requires_grad=True)
    attn(mg.tensor(s), keys, MASK)[0].sum().backward()
    assert not keys.grad[~MASK].any()


def test_prepared_keys_give_the_same_result(rng):
    attn = AdditiveAttention(Q, K, 4)
    s, h = (mg.tensor(a) for a in inputs("additive", rng))
    a = attn(s, h, MASK)
    b = attn(s, h, MASK, memory=attn.prepare(h))
    np.testing.assert_array_equal(a[1].data, b[1].data)


def test_attention_errors():
    with pytest.raises(ValueError, match=r"'dot' scores need query_size == key_size, got 2 and 3"):
        MultiplicativeAttention(2, 3, mode="dot")
    attn = AdditiveAttention(Q, K, 4)
    with pytest.raises(ValueError, match=r"AdditiveAttention: query must have shape \(batch, 2\)"):
        attn(mg.zeros(B, 5), mg.zeros(B, S, K))
    with pytest.raises(ValueError, match=r"AdditiveAttention: keys must have shape \(batch=3"):
        attn(mg.zeros(B, Q), mg.zeros(B, S, 7))
    bad = MASK.copy()
    bad[2] = False
    with pytest.raises(ValueError, match=r"AdditiveAttention: a row of the mask has no valid"):
        attn(mg.zeros(B, Q), mg.zeros(B, S, K), bad)
    with pytest.raises(ValueError, match=r"mask must be boolean of the scores' shape \(3, 4\)"):
        masked_softmax(mg.zeros(B, S), MASK[:, :2])
