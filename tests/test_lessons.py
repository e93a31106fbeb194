"""The lessons (lessons/*.py): each is a notebook in jupytext's percent format, one per topic
of the lecture notes, and runs top to bottom as a script (its own asserts check what it
teaches) in well under a minute, from its own folder as Jupyter would run it."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

LESSONS = Path(__file__).resolve().parent.parent / "lessons"
TOPICS = [
    "01_elman_and_bptt",
    "02_vanishing_and_exploding_gradients",
    "03_lstm_and_gru_gates",
    "04_bidirectional_and_stacked",
    "05_attention",
    "06_language_model_truncated_bptt",
]


def test_one_lesson_per_topic():
    assert sorted(p.stem for p in LESSONS.glob("*.py")) == TOPICS


@pytest.mark.parametrize("name", TOPICS)
def test_the_lesson_opens_as_a_notebook(name):
    jupytext = pytest.importorskip("jupytext")  # the `lessons` extra
    notebook = jupytext.read(LESSONS / f"{name}.py")
    kinds = [cell.cell_type for cell in notebook.cells]
    assert kinds[0] == "markdown" and notebook.cells[0].source.startswith(f"# Lesson {name[1]}.")
    assert kinds.count("markdown") >= 3 and kinds.count("code") >= 3
    assert notebook.metadata["kernelspec"]["language"] == "python"


@pytest.mark.parametrize("name", TOPICS)
def test_the_lesson_runs_top_to_bottom(name):
    env = dict(os.environ, MPLBACKEND="Agg")
    env.pop("PYTHONPATH", None)
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", f"{name}.py"],
        cwd=LESSONS,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert run.stdout.strip()  # it shows the learner something
    assert time.perf_counter() - start < 60


def test_the_lessons_name_graph_leaves_with_a_mapping_not_a_generator():
    """A notebook renders a cell's value twice (HTML, then SVG); a `named_parameters()`
    generator handed to `mg.graph.view(..., params=...)` is used up by the first rendering,
    and the second labels every leaf "leaf". The lessons materialise it (dict(...))."""
    import re

    for path in sorted(LESSONS.glob("*.py")):
        bare = re.findall(r"params=\s*[\w.]*named_parameters\(\)", path.read_text())
        assert not bare, f"{path.name}: pass dict(...named_parameters()), got {bare}"
