"""Five of the lecture notes' claims: agreement, n-grams and context, Jordan against Elman, the GRU
row of the LM table, eigenvalues against singular values.

Each program runs end to end in its --quick mode into a temporary folder; beside that, the
pieces its verdict rests on are checked where a mistake would show: the grammar and the position
the verb is scored at, Kneser-Ney distributions that sum to one, the cut-context loss equal to
the carried one where the window reaches the stream's start, the teacher-forced gradient equal
step by step and batched, a Jordan net unable to recall what its outputs do not carry, matrices
with the spectral radius and singular value asked for, and ||W^T|| = rho^T for a normal W.
"""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from example_modules import load_example


def load(name):
    return load_example(name, "notes_claims_")


def finite_numbers(tree, path=""):
    if isinstance(tree, dict):
        for k, v in tree.items():
            finite_numbers(v, f"{path}/{k}")
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            finite_numbers(v, f"{path}[{i}]")
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        assert math.isfinite(tree), f"{path} = {tree}"


def png_or_told(out: Path, name: str, printed: str):
    if importlib.util.find_spec("matplotlib") is None:
        assert "matplotlib is not installed" in printed
        return
    data = (out / name).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name


def quick(name, tmp_path, capsys, *extra):
    metrics = load(name).main(["--quick", "--out", str(tmp_path), *extra])
    printed = capsys.readouterr().out
    assert json.loads((tmp_path / "metrics.json").read_text())["wall_s"] > 0
    finite_numbers(metrics)
    png_or_told(tmp_path, f"{name}.png", printed)
    return metrics, printed


# ----- eigen_vs_singular -------------------------------------------------------------------------
def test_eigen_vs_singular_quick(tmp_path, capsys):
    ex = load("eigen_vs_singular")
    metrics, printed = quick("eigen_vs_singular", tmp_path, capsys)
    assert metrics["jvp_vs_hand_max_rel"] < 1e-10  # forward mode = the hand Jacobian product
    T = metrics["settings"]["steps"]
    conds = metrics["conditions"]
    for label, rho, sigma in ex.CONDITIONS:
        for m in conds[label]["matrices"]:
            assert m["rho"] == pytest.approx(rho, rel=1e-6)
            assert m["sigma_1"] == pytest.approx(sigma, rel=1e-6)
            norms = np.array(m["linear"]["norms"])
            assert norms.shape == (T,) and norms[0] == pytest.approx(sigma, rel=1e-9)
    # a normal matrix: ||W^T|| = rho^T exactly, no transient
    for m in conds["rho = sigma_1 < 1 (normal)"]["matrices"]:
        np.testing.assert_allclose(m["linear"]["norms"], 0.9 ** np.arange(1, T + 1), rtol=1e-9)
    # rho < 1 < sigma_1: the norm grows above 1 first, then decays at about rho per step
    for m in conds["rho < 1 < sigma_1"]["matrices"]:
        lin = m["linear"]
        assert lin["peak"] > 1 and lin["peak_T"] > 1 and lin["norm_at_T"] < lin["peak"]
    assert metrics["linear_rate_minus_rho_max"] < 0.05
    assert "impossible" in printed


def test_matrix_with_refuses_sigma_below_rho():
    ex = load("eigen_vs_singular")
    with pytest.raises(ValueError, match="impossible"):
        ex.matrix_with(1.1, 0.9, 4, np.random.default_rng(0))


# ----- jordan_vs_elman ---------------------------------------------------------------------------
def test_jordan_vs_elman_quick(tmp_path, capsys):
    metrics, printed = quick("jordan_vs_elman", tmp_path, capsys)
    par = metrics["teacher_forcing_parallel"]
    assert max(par["max_abs_diff"].values()) < 1e-9 * par["max_abs_grad"]
    assert par["batched_s"] > 0 and par["stepwise_s"] > 0
    acc = {k: v["max"] for k, v in metrics["accuracy"].items()}
    # the Jordan net sees only x_T and fed-back blanks at the last step: chance, at best
    assert acc["jordan-final-recall"] < 0.6
    # where the output carries what must be remembered, it learns; the Elman net recalls
    assert metrics["accuracy"]["jordan-running-recall"]["min"] > 0.95
    assert metrics["accuracy"]["jordan-running-parity"]["min"] > 0.95
    assert metrics["accuracy"]["elman-final-recall"]["min"] > 0.9
    assert "Teacher forcing in one batched pass" in printed


def test_bits_batch_tasks():
    ex = load("jordan_vs_elman")
    rng = np.random.default_rng(0)
    T, B = 6, 50
    for task in ex.TASKS:
        x, y = ex.bits_batch(task, T, np.int64(B), np.random.default_rng(1))
        bits = x[..., 1].astype(int)
        assert x.shape == (T, B, 3) and np.all(x[..., :2].sum(-1) == 1)
        assert np.all(x[:-1, :, 2] == 0) and np.all(x[-1, :, 2] == 1)
        answer = np.cumsum(bits, 0) % 2 if task.endswith("parity") else np.tile(bits[0], (T, 1))
        if task.startswith("running"):
            assert np.array_equal(y, answer)
        else:
            assert np.all(y[:-1] == ex.BLANK) and np.array_equal(y[-1], answer[-1])
    assert rng is not None


# ----- agreement ---------------------------------------------------------------------------------
def test_agreement_grammar():
    ex = load("agreement")
    tokens, plural, last = ex.sentences(7, 400, 0.5, np.random.default_rng(0))
    assert tokens.shape == (11, 400)
    assert np.all(tokens[0] == ex.ID["the"]) and np.all(tokens[-1] == ex.ID["."])
    verbs = np.where(plural == 1, ex.WERE, ex.WAS)
    assert np.array_equal(tokens[9], verbs)
    subj = [ex.WORDS[t] for t in tokens[1]]
    assert all((w in ex.PLURAL) == bool(p) for w, p in zip(subj, plural, strict=True))
    for col in range(400):  # the last noun before the verb, or the subject's number
        nouns = [ex.WORDS[t] for t in tokens[1:9, col] if ex.WORDS[t] in ex.SINGULAR + ex.PLURAL]
        assert last[col] == (nouns[-1] in ex.PLURAL)
    assert (last != plural).sum() > 50  # attractors that disagree exist


def test_agreement_scores_the_verb_position():
    """A fake LM that knows the answer only at the verb's position scores 1.0; read one position
    off, it would not."""
    ex = load("agreement")
    import minigrad as mg

    class Oracle:
        def __call__(self, tokens):
            logits = np.random.default_rng(0).normal(size=tokens.shape + (len(ex.WORDS),))
            plural = np.isin(tokens[1], [ex.ID[w] for w in ex.PLURAL])
            d = tokens.shape[0] - 3
            logits[d + 1, :, ex.WERE] = np.where(plural, 9.0, -9.0)
            logits[d + 1, :, ex.WAS] = np.where(plural, -9.0, 9.0)
            return mg.tensor(logits)

    args = ex.parse_args(["--quick"])
    for d in (0, 3, 9):
        r = ex.preference(Oracle(), d, args, np.random.default_rng(d))
        assert r["accuracy"] == 1.0


def test_agreement_quick_and_matched_sizes(tmp_path, capsys):
    ex = load("agreement")
    metrics, printed = quick("agreement", tmp_path, capsys)
    assert metrics["complete"] and len(metrics["runs"]) == 3 * 2  # 3 cells, 2 spans
    for r in metrics["runs"]:
        assert set(r["by_distance"]) == {str(d) for d in metrics["distances"]}
        assert all(0 <= v["accuracy"] <= 1 for v in r["by_distance"].values())
    for cell in ex.CELLS:
        h = ex.width(cell, 32)
        assert abs(ex.n_params(cell, h) - ex.n_params("lstm", 32)) < 0.03 * ex.n_params("lstm", 32)
        assert ex.n_params(cell, h) == sum(p.numel() for p in ex.WordLM(cell, h).parameters())
    assert "last noun before the verb has the other number" in printed
    load("agreement").main(["--quick", "--out", str(tmp_path)])
    assert "starting" not in capsys.readouterr().out  # finished runs are not trained again


# ----- ngram_context ----------------------------------------------------------------------------
def test_kneser_ney_distributions_sum_to_one():
    ex = load("ngram_context")
    rng = np.random.default_rng(0)
    V = 7
    train = rng.integers(0, V - 1, 3000)  # the last symbol never occurs in training
    for n in (1, 2, 4):
        kn = ex.KneserNey(train, n, V)
        for history in (train[100 : 100 + n - 1], np.full(n - 1, V - 1), rng.integers(0, V, n - 1)):
            seqs = np.array([np.append(history, w) for w in range(V)])
            p = [np.exp(kn.log_prob(s, [n - 1])[0]) for s in seqs]
            assert sum(p) == pytest.approx(1.0, abs=1e-12) and min(p) > 0


def test_ngram_context_quick(tmp_path, capsys):
    metrics, printed = quick("ngram_context", tmp_path, capsys)
    ngram = {int(k): v for k, v in metrics["ngram_val_bpc"].items()}
    assert ngram[2] < ngram[1] < math.log2(65)  # context helps even on the quick corpus
    cut = {int(k): v for k, v in metrics["lstm_cut_bpc"].items()}
    assert sorted(cut) == [1, 2, 4, 8, 16]
    assert "KN of order k + 1" in printed


def test_cut_context_equals_carried_state_from_the_streams_start():
    ex = load("ngram_context")
    import minigrad as mg

    mg.manual_seed(0)
    model = ex.CharLM("lstm", 11, 6, 9, 1)
    data = np.random.default_rng(0).integers(0, 11, (3, 40))
    carried = ex.carried_losses(model, data, 8)
    for j in (1, 5, 8, 17):  # the window of j characters is the whole stream before data[:, j]
        rows = np.arange(3)
        np.testing.assert_allclose(
            ex.window_losses(model, data, rows, np.full(3, j), j), carried[:, j - 1], rtol=1e-5
        )
    assert not np.allclose(ex.window_losses(model, data, rows, np.full(3, 17), 2), carried[:, 16])


# ----- le_lm_table's GRU row ---------------------------------------------------------------------
def test_le_lm_table_gru_kind_quick(tmp_path, capsys):
    lm = load("le_lm_table")
    metrics = lm.main(["--quick", "--out", str(tmp_path), "--kinds", "lstm", "gru"])
    printed = capsys.readouterr().out
    assert metrics["complete"] and {r["kind"] for r in metrics["runs"]} == {"lstm", "gru"}
    assert "GRU against LSTM" in printed and "| GRU, 1 layer" in printed
    args = lm.parse_args([])
    lstm, gru = lm.build("lstm", 65, args), lm.build("gru", 65, args)
    assert type(gru.rnn).__name__ == "GRU" and abs(
        lm.count(gru) - lm.count(lstm)
    ) < 0.02 * lm.count(lstm)
    assert lm.n_params("gru", 65, args.embed, gru.rnn.hidden_size, 1) == lm.count(gru)
