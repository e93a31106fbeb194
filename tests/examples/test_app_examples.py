"""The application examples: POS tagging, sentiment, and date normalisation with seq2seq.

Each example runs end to end in its --quick mode (into a temporary folder) and must leave
finite metrics, accuracies in [0, 1], and its figures when matplotlib is installed. Their data
readers and the date generator are checked on their own, including bad input.
"""

import datetime as dt
import importlib.util
import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from example_modules import load_example

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name):
    return load_example(name, "")


def has_matplotlib():
    return importlib.util.find_spec("matplotlib") is not None


def check_outputs(out: Path, returned: dict, accuracies, figures):
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(accuracies) <= set(metrics)
    for key in accuracies:
        value = metrics[key]
        assert math.isfinite(value) and 0.0 <= value <= 1.0, (key, value)
        assert value == pytest.approx(returned[key], abs=1e-6)
    assert metrics["wall_seconds"] > 0
    for name in figures if has_matplotlib() else ():
        path = out / name
        assert path.stat().st_size > 1000, name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    return metrics


# ----- end to end ---------------------------------------------------------------------------------
def test_pos_tagging_quick(tmp_path):
    pos = load("pos_tagging")
    returned = pos.main(["--quick", "--out", str(tmp_path)])
    metrics = check_outputs(
        tmp_path,
        returned,
        ["dev_accuracy", "test_accuracy", "dev_oov_accuracy", "test_oov_accuracy"],
        ["confusion.png", "learning_curve.png"],
    )
    assert set(metrics["test_per_tag_accuracy"]) == set(pos.UPOS)
    assert all(0 <= a <= 1 for a in metrics["test_per_tag_accuracy"].values())
    assert metrics["test_tokens"] > metrics["test_oov_tokens"] > 0
    assert all(math.isfinite(x) and x > 0 for x in metrics["history"]["loss"])
    # Two epochs on 300 sentences are far from converged, but it must beat chance (1/17).
    assert metrics["test_accuracy"] > 0.1
    assert metrics["word_lstm"] == "bidirectional"


def test_pos_tagging_quick_unidirectional(tmp_path, capsys):
    pos = load("pos_tagging")
    returned = pos.main(["--quick", "--unidirectional", "--out", str(tmp_path)])
    assert "word-level LSTM: unidirectional (left to right only" in capsys.readouterr().out
    metrics = check_outputs(
        tmp_path,
        returned,
        ["dev_accuracy", "test_accuracy", "dev_oov_accuracy", "test_oov_accuracy"],
        ["confusion.png", "learning_curve.png"],
    )
    assert metrics["word_lstm"] == "unidirectional" and metrics["args"]["unidirectional"]
    assert len(metrics["history"]["dev"]) == 2
    assert all(math.isfinite(x) and x > 0 for x in metrics["history"]["loss"])
    # The same word-level LSTM size per direction, one direction instead of two: half its
    # weights, and the output layer reads H features instead of 2H; the char BiLSTM is the same.
    H, n_tags = 16, len(pos.UPOS)
    bi, uni = (pos.CharWordTagger(50, 30, n_tags, 16, 8, 8, H, 0.0, True, d) for d in (True, False))
    count = lambda m: sum(p.numel() for p in m.parameters())
    bi_rnn, uni_rnn = count(bi.tagger.encoder), count(uni.tagger.encoder)
    assert bi_rnn == 2 * uni_rnn and count(bi.char_rnn) == count(uni.char_rnn)
    assert count(bi) - count(uni) == uni_rnn + H * n_tags
    assert metrics["word_lstm_parameters"] == uni_rnn
    # Two epochs on 300 sentences teach a left-to-right tagger little (near 1/17 on test at
    # seed 0), so ask only that the training loss falls.
    assert metrics["history"]["loss"][1] < metrics["history"]["loss"][0]


def test_sentiment_quick(tmp_path):
    returned = load("sentiment").main(["--quick", "--out", str(tmp_path)])
    metrics = check_outputs(
        tmp_path,
        returned,
        ["mean_test_accuracy", "last_test_accuracy"],
        ["learning_curves.png"],
    )
    for pooling in ("mean", "last"):
        model = metrics["models"][pooling]
        assert 1 <= model["best_epoch"] <= 2
        assert len(model["history"]["val_accuracy"]) == 2
        assert all(math.isfinite(x) for x in model["history"]["train_loss"])
    assert metrics["split_sizes"] == {"train": 400, "val": 100, "test": 100}


def test_seq2seq_dates_quick(tmp_path):
    returned = load("seq2seq_dates").main(["--quick", "--out", str(tmp_path)])
    metrics = check_outputs(
        tmp_path,
        returned,
        ["greedy_accuracy", "beam_accuracy"],
        ["attention.png", "learning_curve.png"],
    )
    assert math.isfinite(metrics["final_training_loss"]) and metrics["final_training_loss"] > 0
    assert metrics["history"]["eval_step"][-1] == metrics["history"]["step"][-1]
    # errors.txt: a header line per decoder, then one line per wrong date
    lines = iter((tmp_path / "errors.txt").read_text().splitlines())
    n = metrics["test_size"]
    for name in ("greedy", "beam"):
        wrong = round((1 - metrics[f"{name}_accuracy"]) * n)
        assert next(lines) == f"{name} decoding: {wrong} of {n} held-out dates wrong"
        for _ in range(wrong):
            source, expected, got = next(lines).split("\t")
            assert expected.startswith("expected ") and got != "got " + expected[9:]
    assert next(lines, None) is None


@pytest.mark.parametrize("name", ["pos_tagging", "sentiment", "seq2seq_dates"])
def test_help_and_bad_arguments(name, capsys):
    module = load(name)
    with pytest.raises(SystemExit) as exit_:
        module.parse_args(["--help"])
    assert exit_.value.code == 0
    assert "--quick" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        module.parse_args(["--epochs", "0"])
    assert exit_.value.code == 2
    assert "--epochs must be positive" in capsys.readouterr().err


# ----- the date generator -------------------------------------------------------------------------
def test_ordinals():
    sd = load("seq2seq_dates")
    expected = {
        1: "1st",
        2: "2nd",
        3: "3rd",
        4: "4th",
        11: "11th",
        12: "12th",
        13: "13th",
        21: "21st",
        22: "22nd",
        23: "23rd",
        30: "30th",
        31: "31st",
        111: "111th",
    }
    assert {n: sd.ordinal(n) for n in expected} == expected


def test_render_the_documented_date_formats():
    sd = load("seq2seq_dates")
    d = dt.date(2021, 3, 3)  # a Wednesday
    assert sd.render("{D} {Month} {YYYY}", d) == "3 March 2021"
    assert sd.render("{Month} {Dth}, {YYYY}", d) == "March 3rd, 2021"
    assert sd.render("{MM}/{DD}/{YYYY}", d) == "03/03/2021"
    assert sd.render("{Weekday}, {Month} {D}, {YYYY}", d) == "Wednesday, March 3, 2021"
    assert sd.render("{Dth} of {Mon} {YY}", d, "lower") == "3rd of mar 21"
    assert sd.render("{DD}{Mon}{YYYY}", dt.date(1999, 12, 31), "upper") == "31DEC1999"
    assert sd.render("{Wkd}, {D} {Mon} {YYYY}", dt.date(1950, 1, 1)) == "Sun, 1 Jan 1950"
    assert sd.iso(dt.date(1950, 1, 2)) == "1950-01-02"
    with pytest.raises(ValueError, match="casing"):
        sd.render("{D}", d, "shouting")


def parse_independently(text: str) -> dt.date:
    """Read a generated date back by the documented conventions, without the generator."""
    months = [m.lower() for m in load("seq2seq_dates").MONTHS]
    low = text.lower()
    numbers = re.findall(r"\d+", low)
    words = [w for w in re.findall(r"[a-z]+", low) if w[:3] in [m[:3] for m in months]]
    year = lambda s: int(s) if len(s) == 4 else (1900 if int(s) >= 50 else 2000) + int(s)
    if words:  # a month name: the day comes before the year
        assert len(words) == 1 and len(numbers) == 2, text
        month = [m[:3] for m in months].index(words[0][:3]) + 1
        return dt.date(year(numbers[1]), month, int(numbers[0]))
    assert len(numbers) == 3, text
    if len(numbers[0]) == 4:  # year first: YYYY-MM-DD or YYYY/MM/DD
        return dt.date(int(numbers[0]), int(numbers[1]), int(numbers[2]))
    if "/" in text:  # month first
        return dt.date(year(numbers[2]), int(numbers[0]), int(numbers[1]))
    assert "." in text, text  # day first
    return dt.date(year(numbers[2]), int(numbers[1]), int(numbers[0]))


def test_generated_pairs_are_correct_and_varied():
    sd = load("seq2seq_dates")
    rng = np.random.default_rng(1)
    pairs = [sd.random_example(rng) for _ in range(2000)]
    for src, tgt in pairs:
        date = parse_independently(src)
        assert tgt == date.isoformat(), src
        assert sd.FIRST <= date <= sd.LAST
        for weekday in sd.WEEKDAYS:  # a weekday, when written, is the right one
            if weekday[:3].lower() in src.lower():
                assert sd.WEEKDAYS[date.weekday()] == weekday, src
        sd.encode_source([src])  # every character is in the source vocabulary
    shapes = Counter(re.sub(r"[a-z]+", "a", re.sub(r"\d+", "9", s.lower())) for s, _ in pairs)
    assert len(shapes) >= 15
    assert any(s.isupper() for s, _ in pairs) and any(s.islower() for s, _ in pairs)
    assert len({t[:4] for _, t in pairs}) > 80  # years across the century


def test_held_out_dates_are_not_in_training():
    sd = load("seq2seq_dates")
    train, test = sd.make_sets(3000, 300, seed=5)
    assert len(train) == 3000 and len(test) == 300
    assert not {s for s, _ in train} & {s for s, _ in test}
    assert (train, test) == sd.make_sets(3000, 300, seed=5)


def test_date_encoding_and_errors():
    sd = load("seq2seq_dates")
    src, lengths = sd.encode_source(["3 March 2021", "1/2/99"])
    assert src.shape == (12, 2) and lengths.tolist() == [12, 6]
    assert (src[6:, 1] == 0).all()  # padding
    tgt = sd.encode_target(["2021-03-03"])
    assert tgt.shape == (11, 1) and tgt[-1, 0] == sd.TGT.stoi[sd.EOS]
    assert sd.decode_target(tgt[:, 0]) == "2021-03-03"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        sd.encode_source(["3 März 2021"])
    with pytest.raises(ValueError, match="10-character"):
        sd.encode_target(["2021-3-3"])


# ----- data readers -------------------------------------------------------------------------------
def test_read_upos_real_and_bad_files(tmp_path):
    pos = load("pos_tagging")
    dev = pos.read_upos(EXAMPLES / "data" / "ud_english_ewt" / "en_ewt-upos-dev.tsv")
    assert len(dev) == 2001 and sum(len(w) for w, _ in dev) == 25147  # as SOURCE.md says
    assert dev[0] == (
        ["From", "the", "AP", "comes", "this", "story", ":"],
        ["ADP", "DET", "PROPN", "VERB", "DET", "NOUN", "PUNCT"],
    )

    good = tmp_path / "good.tsv"
    good.write_text("Hi\tINTJ\n!\tPUNCT\n\nBye\tINTJ")  # no blank line at the end
    assert pos.read_upos(good) == [(["Hi", "!"], ["INTJ", "PUNCT"]), (["Bye"], ["INTJ"])]
    for text, message in [
        ("Hi INTJ\n", r"bad.tsv:1: expected FORM<TAB>UPOS"),
        ("Hi\tINTJ\nthere\tNN\n", r"bad.tsv:2: 'NN' is not a UPOS tag"),
        ("Hi\tINTJ\tx\n", "expected FORM<TAB>UPOS"),
        ("\n\n", "no sentences"),
    ]:
        bad = tmp_path / "bad.tsv"
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            pos.read_upos(bad)


def test_pos_char_batches():
    pos = load("pos_tagging")
    assert pos.word_key("Obama2012") == "obama0000"
    assert pos.clip_word("x" * 25 + "ing") == "x" * 10 + "x" * 7 + "ing"
    sents = [(["The", "cat", "The"], ["DET", "NOUN", "DET"]), (["Cats"], ["NOUN"])]
    words = pos.Vocab.build(Counter(pos.word_key(w) for ws, _ in sents for w in ws), min_freq=2)
    chars = pos.Vocab.build(Counter("Thecat"))
    forms = {}
    data = pos.Encoded(sents, words, pos.Vocab(pos.UPOS, specials=(), unk=None), forms)
    batch = pos.make_batch(data, pos.Chars(forms, chars), [0, 1])
    assert batch["words"].shape == (3, 2) and batch["lengths"].tolist() == [3, 1]
    assert batch["tags"][1:, 1].tolist() == [pos.IGNORE, pos.IGNORE]
    # distinct forms are read once: "The", "cat", "Cats"; padding points at some form
    assert batch["chars"].shape[1] == 3 and sorted(batch["char_lengths"]) == [3, 3, 4]
    index = batch["form_index"]
    assert index[0, 0] == index[2, 0] != index[1, 0]
    assert words.itos == ["<pad>", "<unk>", "the"]  # "cat" and "cats" are seen once
    assert [o.tolist() for o in data.oov] == [[False, True, False], [True]]


def test_read_polarity_real_and_bad_files(tmp_path):
    sentiment = load("sentiment")
    folder = EXAMPLES / "data" / "sentence_polarity"
    pos = sentiment.read_snippets(folder / "rt-polarity.pos")
    neg = sentiment.read_snippets(folder / "rt-polarity.neg")
    assert len(pos) == len(neg) == 5331
    assert neg[0] == "simplistic , silly and tedious .".split()
    splits = sentiment.load_polarity(folder, split_seed=0)
    sizes = {k: len(t) for k, (t, _) in splits.items()}
    assert sizes == {"train": 8530, "val": 1066, "test": 1066}
    assert sentiment.load_polarity(folder, 0)["test"][0] == splits["test"][0]
    assert sentiment.load_polarity(folder, 1)["test"][0] != splits["test"][0]
    assert 0.45 < splits["train"][1].mean() < 0.55

    for text, message in [("", "no snippets"), ("good film\n\nbad film\n", ":2: empty snippet")]:
        bad = tmp_path / "bad.txt"
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            sentiment.read_snippets(bad)
    with pytest.raises(FileNotFoundError):
        sentiment.load_polarity(tmp_path, 0)


# ----- shared helpers -----------------------------------------------------------------------------
def test_apps_common_helpers():
    common = load("apps_common")
    vocab = common.Vocab.build(Counter({"b": 2, "a": 2, "c": 5, "d": 1}), min_freq=2)
    assert vocab.itos == ["<pad>", "<unk>", "c", "a", "b"]
    assert vocab.encode(["a", "zzz"]).tolist() == [3, 1]
    closed = common.Vocab("ab", specials=(), unk=None)
    with pytest.raises(ValueError, match=r"\['z'\] are not in the vocabulary"):
        closed.encode("abz")

    x, lengths = common.pad([[1, 2, 3], [4]])
    assert x.tolist() == [[1, 4], [2, 0], [3, 0]] and lengths.tolist() == [3, 1]
    with pytest.raises(ValueError, match="at least one element"):
        common.pad([[1], []])

    lens = np.random.default_rng(0).integers(1, 50, size=300)
    batches = common.length_batches(lens, 16, np.random.default_rng(1), max_tokens=200)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(300))
    assert all(len(b) <= 16 and (len(b) == 1 or lens[b].max() * len(b) <= 200) for b in batches)
    assert np.mean([lens[b].max() - lens[b].min() for b in batches]) < 3  # similar lengths

    parts = common.seeded_split(100, (0.8, 0.1, 0.1), seed=3)
    assert [len(p) for p in parts] == [80, 10, 10]
    assert sorted(np.concatenate(parts).tolist()) == list(range(100))
    with pytest.raises(ValueError, match="sum to 1"):
        common.seeded_split(10, (0.5, 0.4), seed=0)
