"""Every example as a newcomer runs it: `python examples/<name>.py --quick` from any folder.

Each example imports `bootstrap` ahead of NumPy (one BLAS thread, the repository on sys.path)
and nothing else before its imports; a --quick run without --out writes to
examples/results/<name>-quick/, which git ignores, and leaves the committed results of the
full run in examples/results/<name>/ byte for byte and untouched.
"""

import ast
import hashlib
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PROGRAMS = [
    "bptt_from_scratch",
    "vanishing_gradients",
    "memory_tasks",
    "char_lm",
    "pos_tagging",
    "sentiment",
    "seq2seq_dates",
    "rtrl_vs_bptt",
    "memory_study",
    "le_lm_table",
    "translation",
    "agreement",
    "ngram_context",
    "jordan_vs_elman",
    "eigen_vs_singular",
]
HELPERS = ["bootstrap", "common", "apps_common", "study_runs", "memory_schedule"]


def test_every_example_is_listed_here():
    assert sorted(PROGRAMS + HELPERS) == sorted(p.stem for p in EXAMPLES.glob("*.py"))


def top_level_imports(tree) -> list:
    names = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [alias.name.partition(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module.partition(".")[0])
    return names


@pytest.mark.parametrize("name", PROGRAMS + ["common", "apps_common"])
def test_the_preamble_is_one_import(name):
    source = (EXAMPLES / f"{name}.py").read_text(encoding="utf-8")
    assert source.count("noqa") <= 1
    assert "sys.path" not in source and "OPENBLAS" not in source
    tree = ast.parse(source)
    statements = [n for n in tree.body if not isinstance(n, (ast.Import, ast.ImportFrom))]
    first_import = next(n.lineno for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)))
    # only the docstring comes before the imports
    assert [n for n in statements if n.lineno < first_import] == tree.body[:1]
    if name in PROGRAMS:
        imports = top_level_imports(tree)
        later = {"numpy", "minigrad", "models", "common", "apps_common"}
        first_numpy_user = min(i for i, m in enumerate(imports) if m in later)
        assert "bootstrap" in imports[:first_numpy_user], imports


def test_bootstrap_sets_one_blas_thread_unless_told_and_finds_the_repository(monkeypatch):
    import bootstrap

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(bootstrap.ROOT)])
    importlib.reload(bootstrap)
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    assert os.environ["MKL_NUM_THREADS"] == "3"  # a value the user set stays
    assert str(bootstrap.ROOT) in sys.path and str(EXAMPLES) in sys.path
    assert (bootstrap.ROOT / "minigrad" / "__init__.py").is_file()


def snapshot(folder: Path) -> dict:
    """path -> (sha256, mtime in ns) of every file under folder."""
    return {
        p.relative_to(folder): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("name", PROGRAMS)
def test_a_quick_run_from_another_folder_leaves_the_full_runs_results_alone(name, tmp_path):
    committed = EXAMPLES / "results" / name
    before = snapshot(committed)
    assert "metrics.json" in {str(p) for p in before}  # the full run's results to protect
    quick = EXAMPLES / "results" / f"{name}-quick"
    unset = ("PYTHONPATH", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    start = time.time()
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--quick"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert snapshot(committed) == before
    assert (quick / "metrics.json").stat().st_mtime >= start - 2  # written by this run
    if name == "rtrl_vs_bptt":
        check_rtrl_at_equal_updates(json.loads((quick / "metrics.json").read_text()))
    assert not list(tmp_path.iterdir())  # nothing lands in the folder it was started from
    try:
        ignored = subprocess.run(["git", "check-ignore", "-q", str(quick)], cwd=EXAMPLES)
    except OSError:
        return  # no git: nothing to check the ignore rules with
    if ignored.returncode != 128:  # 128: not a git checkout
        assert ignored.returncode == 0, f"{quick} is not ignored by git"


def check_rtrl_at_equal_updates(metrics):
    """rtrl_vs_bptt --quick (60 steps): RTRL updating every k steps recorded beside truncated
    BPTT with window k, both with ceil(60 / k) updates; RTRL every step with 60."""
    mse, updates = metrics["online_final_mse"], metrics["online_updates"]
    for kind in ("rnn", "lstm"):
        assert updates[f"{kind} rtrl"] == 60
        for k in (4, 8):
            assert updates[f"{kind} rtrl-every-{k}"] == updates[f"{kind} tbptt-{k}"] == -(-60 // k)
            assert 0 < mse[f"{kind} rtrl-every-{k}"] < 10
