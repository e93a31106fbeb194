"""The main job, examples/char_lm.py, in its --quick mode: it trains, validates, checkpoints,
resumes onto the identical trajectory, and samples."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "char_lm.py"


@pytest.fixture(scope="module")
def char_lm():
    spec = importlib.util.spec_from_file_location("char_lm", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["char_lm"] = module
    spec.loader.exec_module(module)
    return module


def test_quick_run_trains_and_writes_its_outputs(char_lm, tmp_path, capsys):
    metrics = char_lm.main(["--quick", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "validation" in printed and "perplexity" in printed and "sample" in printed
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["steps"] == 40
    for key in ("train_loss", "val_loss_nats", "val_bits_per_char", "val_perplexity"):
        assert math.isfinite(saved[key]), key
    # 40 steps from a uniform guess (ln 65 = 4.17 nats) must already have learned something.
    assert saved["val_loss_nats"] < math.log(65)
    assert saved["val_bits_per_char"] == pytest.approx(saved["val_loss_nats"] / math.log(2))
    assert metrics["val_perplexity"] == pytest.approx(math.exp(saved["val_loss_nats"]))
    sample = (tmp_path / "sample.txt").read_text()
    assert sample.startswith("ROMEO:\n") and len(sample) == len("ROMEO:\n") + 80 + 1
    assert (tmp_path / "checkpoint.npz").exists()
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "loss.png").stat().st_size > 0


def test_resume_continues_on_the_identical_trajectory(char_lm, tmp_path):
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    char_lm.main(["--quick", "--out", str(straight)])
    char_lm.main(["--quick", "--steps", "20", "--out", str(halves)])
    char_lm.main(["--quick", "--resume", "--out", str(halves)])
    a, b = mg.load(straight / "checkpoint.npz"), mg.load(halves / "checkpoint.npz")
    assert a["step"] == b["step"] == 40
    for name, value in a["model"].items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(b["model"][name]))
    assert a["history"]["val"] == b["history"]["val"]


def test_bad_arguments_are_rejected(char_lm, tmp_path):
    with pytest.raises(SystemExit):
        char_lm.main(["--quick", "--steps", "0", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="no checkpoint"):
        char_lm.main(["--quick", "--resume", "--out", str(tmp_path / "empty")])
    with pytest.raises(ValueError, match="not in the corpus vocabulary"):
        char_lm.main(["--quick", "--prime", "\u00e9", "--out", str(tmp_path)])
