"""Ten real PyTorch programs, vendored unmodified under tests/ported/, run on PyTorch and on
minigrad: the same source files, with only their imports pointed at minigrad (the alias table
in tests/ported/run_program.py) and, where a program trains for hours, a few documented
constants made smaller (`OVERRIDES` below; each replaced line counts as a changed line).

Each program runs twice, in its own process (tests/ported/run_program.py): once on PyTorch, once
on minigrad, in float64, from PyTorch's own initial weights and with the same random draws. The
test compares what the program did: every loss it called backward() on, everything it printed
(tensors at full precision), and the final weights of every module it built, to 1e-9 relative;
and checks that the program trains. The data a program would download is synthesised in a
temporary directory, small enough that each program runs in seconds.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

PORTED = Path(__file__).resolve().parent / "ported"
RTOL, ATOL = 1e-9, 1e-12
# Printed durations differ between runs; everything else printed must match exactly.
TIMINGS = [r"\d+m \d+s", r"ms/batch\s+[\d.]+", r"time:\s+[\d.]+s"]


# ----- synthesised data ---------------------------------------------------------------------
def wikitext(workdir):
    """data/{train,valid,test}.txt: a small wikitext-like corpus of repeating phrases."""
    words = "the cat sat on a mat and the dog ran to the park".split()
    rng = np.random.default_rng(0)
    (workdir / "data").mkdir()
    for name, lines in [("train", 60), ("valid", 12), ("test", 12)]:
        text = ""
        for i in range(lines):
            n = int(rng.integers(4, 10))
            text += " ".join(words[(i + j) % len(words)] for j in range(n)) + "\n"
        (workdir / "data" / f"{name}.txt").write_text(text)


NAMES = {
    "Italian": ["Abbascia", "Abbadelli", "Acconci", "Affini", "Agostini", "Albanesi", "Alberti"],
    "Russian": ["Ababkov", "Abakumov", "Abramov", "Adamovich", "Agafonov", "Akimov", "Zhukov"],
    "German": ["Abbing", "Abel", "Achterberg", "Adam", "Adler", "Bachmeier", "Schmidt"],
    "Spanish": ["Abana", "Abano", "Abarca", "Abaroa", "Abascal", "Sandoval", "Zamorano"],
    "Chinese": ["Ang", "Au-Yong", "Bai", "Chen", "Chung", "Huang", "Zhang"],
}


def names(workdir):
    """data/names/<Language>.txt, one name per line (with an accent, as the real files have)."""
    folder = workdir / "data" / "names"
    folder.mkdir(parents=True)
    for language, lines in NAMES.items():
        (folder / f"{language}.txt").write_text("\n".join(lines + ["Ślusàrski"]) + "\n")


ENG_FRA = [
    ("I am too cold.", "Je suis trop froid."),
    ("She is five years younger than me.", "Elle a cinq ans de moins que moi."),
    ("She is too short.", "Elle est trop petit."),
    ("I am not scared of dying.", "Je ne crains pas de mourir."),
    ("He is a talented young director.", "C'est un jeune directeur plein de talent."),
    ("You are very kind.", "Vous êtes très gentil."),
    ("We are happy.", "Nous sommes heureux."),
    ("They are here.", "Ils sont ici."),
    ("I am hungry.", "J'ai faim."),
    ("This is not a pair the filter keeps.", "Ce n'est pas une paire gardée."),
]


def eng_fra(workdir):
    """data/eng-fra.txt: tab-separated English-French pairs, holding every French word the
    tutorial's final evaluateAndShowAttention sentences use."""
    (workdir / "data").mkdir()
    lines = "\n".join(f"{en}\t{fr}" for en, fr in ENG_FRA) + "\n"
    (workdir / "data" / "eng-fra.txt").write_text(lines, encoding="utf-8")


def nothing(workdir):
    pass


# This version of the Bi-LSTM CRF tutorial concatenates 0-d tensors, which PyTorch refuses since
# 0.4 (it fails on PyTorch itself); the tutorial's later revisions add `.view(1)` at these two
# places, and so does this test (two changed lines).
CAT_OF_SCALARS = [
    (
        "alphas_t.append(log_sum_exp(next_tag_var))",
        "alphas_t.append(log_sum_exp(next_tag_var).view(1))",
    ),
    (
        "viterbivars_t.append(next_tag_var[0][best_tag_id])",
        "viterbivars_t.append(next_tag_var[0][best_tag_id].view(1))",
    ),
]


# ----- the programs -------------------------------------------------------------------------
# name: (folder, data, [(script, args, overrides)], how the program shows it trained)
WLM_ARGS = ["--data", "data", "--emsize", "16", "--nhid", "16", "--epochs", "2"]
WLM_ARGS += ["--batch_size", "4", "--bptt", "8", "--dropout", "0", "--log-interval", "5"]
PROGRAMS = {
    "word_language_model": ("word_language_model", wikitext, [("main.py", WLM_ARGS, [])]),
    "time_sequence_prediction": (
        "time_sequence_prediction",
        nothing,
        [
            ("generate_sine_wave.py", [], [("L = 1000", "L = 40"), ("N = 100", "N = 8")]),
            ("train.py", ["--steps", "2"], [("future = 1000", "future = 10")]),
        ],
    ),
    "seq2seq_translation": (
        "seq2seq_translation_tutorial",
        eng_fra,
        [
            (
                "seq2seq_translation_tutorial.py",
                [],
                [
                    ("hidden_size = 256", "hidden_size = 32"),
                    (
                        "trainIters(encoder1, attn_decoder1, 75000, print_every=5000)",
                        "trainIters(encoder1, attn_decoder1, 60, print_every=10)",
                    ),
                ],
            )
        ],
    ),
    "char_rnn_classification": (
        "char_rnn_classification_tutorial",
        names,
        [
            (
                "char_rnn_classification_tutorial.py",
                [],
                [
                    ("n_iters = 100000", "n_iters = 400"),
                    ("print_every = 5000", "print_every = 50"),
                    ("plot_every = 1000", "plot_every = 50"),
                    ("n_confusion = 10000", "n_confusion = 50"),
                ],
            )
        ],
    ),
    "char_rnn_generation": (
        "char_rnn_generation_tutorial",
        names,
        [
            (
                "char_rnn_generation_tutorial.py",
                [],
                [
                    ("n_iters = 100000", "n_iters = 300"),
                    ("print_every = 5000", "print_every = 50"),
                    ("plot_every = 500", "plot_every = 50"),
                ],
            )
        ],
    ),
    "lstm_tagger": (
        "sequence_models_tutorial",
        nothing,
        [("sequence_models_tutorial.py", [], [])],
    ),
    "bilstm_crf": (
        "advanced_tutorial",
        nothing,
        [("advanced_tutorial.py", [], [*CAT_OF_SCALARS, ("        300):", "        30):")])],
    ),
    "bag_of_words": ("deep_learning_tutorial", nothing, [("deep_learning_tutorial.py", [], [])]),
    "ngram_language_model": (
        "word_embeddings_tutorial",
        nothing,
        [("word_embeddings_tutorial.py", [], [])],
    ),
    "tensor_introduction": ("pytorch_tutorial", nothing, [("pytorch_tutorial.py", [], [])]),
}


# ----- running and comparing ----------------------------------------------------------------
def run(name, framework, workdir):
    folder, make_data, scripts = PROGRAMS[name]
    spec = {
        "framework": framework,
        "program": str(PORTED / folder),
        "workdir": str(workdir / framework),
        "weights": str(workdir / "weights.json"),
        "record": str(workdir / f"{framework}.json"),
        "scripts": [{"file": f, "args": a, "overrides": o} for f, a, o in scripts],
    }
    (workdir / framework).mkdir()
    make_data(workdir / framework)
    (workdir / f"{framework}-spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg", "PYTHONIOENCODING": "utf-8"}
    # time_sequence_prediction torch.load()s the NumPy array it saved, which PyTorch >= 2.6
    # refuses by default (weights_only=True); this is PyTorch's documented switch back.
    env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    env["OMP_NUM_THREADS"] = "1"  # one process per core is faster on small ops than threads
    launcher = PORTED / "run_program.py"
    result = subprocess.run(
        [sys.executable, str(launcher), str(workdir / f"{framework}-spec.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads(Path(spec["record"]).read_text())
    record["output"] = result.stdout + result.stderr
    return record


def assert_same(ours, theirs, where):
    """Printed values: strings equal once durations are masked; numbers to RTOL."""
    if isinstance(theirs, str):
        assert isinstance(ours, str), (where, ours, theirs)
        mask = [re.sub("|".join(TIMINGS), "<time>", s) for s in (ours, theirs)]
        assert mask[0] == mask[1], where
    elif isinstance(theirs, dict) and "tensor" in theirs:
        assert isinstance(ours, dict) and "tensor" in ours, (where, ours, theirs)
        a, b = np.asarray(ours["tensor"]), np.asarray(theirs["tensor"])
        assert a.shape == b.shape, (where, a.shape, b.shape)
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=where)
    elif isinstance(theirs, dict):
        assert isinstance(ours, dict) and ours.keys() == theirs.keys(), (where, ours, theirs)
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), (where, ours, theirs)
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(theirs, float) and not isinstance(theirs, bool):
        assert isinstance(ours, (int, float)), (where, ours, theirs)
        np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL, err_msg=where)
    else:
        assert ours == theirs, (where, ours, theirs)


def compare(ours, theirs, complete=True):
    """minigrad's record against PyTorch's; a run that stopped early (complete=False) must
    match PyTorch's as far as it went."""
    n_losses, n_prints = len(ours["losses"]), len(ours["prints"])
    if complete:
        assert n_losses == len(theirs["losses"]) and n_prints == len(theirs["prints"])
        assert_same(ours["final_state"], theirs["final_state"], "final_state")
    np.testing.assert_allclose(
        ours["losses"], theirs["losses"][:n_losses], rtol=RTOL, atol=ATOL, err_msg="losses"
    )
    assert_same(ours["prints"], theirs["prints"][:n_prints], "prints")


def both(name, tmp_path):
    theirs = run(name, "torch", tmp_path)
    assert theirs["error"] is None, theirs["output"]
    return run(name, "minigrad", tmp_path), theirs


def trained(losses, k):
    """The mean of the last k losses is below that of the first k."""
    return np.mean(losses[-k:]) < np.mean(losses[:k])


# ----- the tests ----------------------------------------------------------------------------
def test_word_language_model_trains_until_it_pickles_the_whole_model(tmp_path):
    """pytorch/examples word_language_model: a 2-layer LSTM language model. minigrad runs its
    first epoch (training with repackage_hidden, clip_grad_norm_ and the hand-written update
    `p.data.add_(p.grad, alpha=-lr)`, then validation) with PyTorch's numbers, and stops where
    main.py saves the whole module object: minigrad's checkpoints never pickle (see
    minigrad/serialization.py), so `torch.save(model, f)` raises a clear TypeError there."""
    ours, theirs = both("word_language_model", tmp_path)
    assert ours["error"] is not None, "minigrad was expected to stop at torch.save(model, f)"
    assert ours["error"]["type"] == "TypeError", ours["output"]
    assert (ours["error"]["file"], ours["error"]["code"]) == ("main.py", "torch.save(model, f)")
    assert "for a model, save model.state_dict()" in ours["error"]["message"]
    compare(ours, theirs, complete=False)
    assert len(ours["losses"]) == len(theirs["losses"]) // 2  # the whole first epoch of two
    assert any("valid loss" in str(p) for p in ours["prints"])  # its validation too
    assert trained(ours["losses"], 5)


@pytest.mark.parametrize(
    "name, k",
    [
        ("time_sequence_prediction", 3),
        ("seq2seq_translation", 10),
        ("char_rnn_classification", 50),
        pytest.param(
            "char_rnn_generation",
            50,
            marks=pytest.mark.xfail(
                strict=True,
                reason="minigrad's Tensor.add_ lacks PyTorch's legacy add_(scalar, tensor) form, "
                "which the tutorial's update `p.data.add_(-learning_rate, p.grad.data)` uses",
            ),
        ),
        ("lstm_tagger", 20),
        ("bilstm_crf", 20),
        ("bag_of_words", 20),
        ("ngram_language_model", 100),
    ],
)
def test_program_gives_pytorchs_numbers_and_trains(name, k, tmp_path):
    ours, theirs = both(name, tmp_path)
    assert ours["error"] is None, ours["output"]
    compare(ours, theirs)
    assert len(theirs["losses"]) >= 2 * k
    assert trained(ours["losses"], k)


def test_tensor_introduction_prints_pytorchs_values(tmp_path):
    """pytorch_tutorial.py trains nothing: it builds, indexes, reshapes and differentiates
    tensors, and prints them; every printed value must be PyTorch's."""
    ours, theirs = both("tensor_introduction", tmp_path)
    assert ours["error"] is None, ours["output"]
    compare(ours, theirs)
    assert len(theirs["prints"]) > 20 and theirs["losses"] == ours["losses"]
