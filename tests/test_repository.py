"""The repository's own rules: short modules, the pinned lint tool, CI's no-skip rule, and
what the package installs."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 500
CODE_DIRS = ("minigrad", "models", "examples", "benchmarks")


def test_modules_are_at_most_500_lines():
    lengths = {
        path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for top in CODE_DIRS
        for path in sorted((ROOT / top).rglob("*.py"))
    }
    assert lengths, "no modules found"
    too_long = [f"{path}: {n} lines" for path, n in lengths.items() if n > MAX_LINES]
    assert not too_long, f"modules over {MAX_LINES} lines (split them):\n" + "\n".join(too_long)


def pyproject() -> str:
    return (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_lint_runs_the_pinned_ruff():
    pinned = re.findall(r'"ruff==([^"]+)"', pyproject())
    required = re.findall(r'required-version = "==([^"]+)"', pyproject())
    assert len(pinned) == 1 and required == pinned, "the test extra's pin and ruff's own setting"
    assert metadata.version("ruff") == pinned[0]


# ----- MINIGRAD_NO_SKIPS: a skip fails CI -------------------------------------------------------
SKIPPING_TESTS = """
import pytest

def test_passes():
    pass

def test_skips():
    pytest.skip("stands for any skip a real test might make")

@pytest.mark.skipif(True, reason="a condition")
def test_skipif():
    pass

def test_optional_dependency():
    pytest.importorskip("a_module_that_is_not_installed")

@pytest.mark.needs_jit
def test_inspects_compiled_code():
    pass
"""


def run_pytest(folder: Path, *args: str, **env: str):
    # The suite's conftest (and the module it imports) beside the generated tests.
    for name in ("conftest.py", "strategies.py"):
        shutil.copy(ROOT / "tests" / name, folder / name)
    outer = ("MINIGRAD_NO_SKIPS", "NUMBA_DISABLE_JIT")  # this run's own settings do not leak
    clean = {k: v for k, v in os.environ.items() if k not in outer}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", *args],
        cwd=folder,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def outcomes(result) -> dict:
    """{test name: PASSED/FAILED/ERROR/SKIPPED} from pytest's -v lines."""
    return dict(re.findall(r"^\S+::(test_\w+) ([A-Z]+)", result.stdout, re.M))


def test_a_skip_fails_under_minigrad_no_skips(tmp_path):
    (tmp_path / "test_generated.py").write_text(SKIPPING_TESTS)
    result = run_pytest(tmp_path, "test_generated.py", MINIGRAD_NO_SKIPS="1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert outcomes(result) == {
        "test_passes": "PASSED",
        "test_skips": "FAILED",
        "test_skipif": "ERROR",  # skipped in setup: failing there is an error
        "test_optional_dependency": "FAILED",
        "test_inspects_compiled_code": "PASSED",
    }, result.stdout
    assert "MINIGRAD_NO_SKIPS=1 allows no skips" in result.stdout


def test_only_needs_jit_may_skip_and_only_with_the_jit_off(tmp_path):
    (tmp_path / "test_generated.py").write_text(SKIPPING_TESTS)
    result = run_pytest(tmp_path, "test_generated.py", MINIGRAD_NO_SKIPS="1", NUMBA_DISABLE_JIT="1")
    assert result.returncode == 1
    found = outcomes(result)
    assert found["test_inspects_compiled_code"] == "SKIPPED", result.stdout
    assert found["test_skips"] == "FAILED", result.stdout


def test_a_module_skipped_at_import_fails_under_minigrad_no_skips(tmp_path):
    (tmp_path / "test_generated.py").write_text(
        'import pytest\ntorch = pytest.importorskip("a_module_that_is_not_installed")\n\n'
        "def test_parity():\n    pass\n"
    )
    result = run_pytest(tmp_path, "test_generated.py", MINIGRAD_NO_SKIPS="1")
    assert result.returncode != 0
    assert "test_generated.py was skipped" in result.stdout, result.stdout


def test_skips_stay_skips_without_minigrad_no_skips(tmp_path):
    (tmp_path / "test_generated.py").write_text(SKIPPING_TESTS)
    result = run_pytest(tmp_path, "test_generated.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(outcomes(result).values()).count("SKIPPED") == 3, result.stdout


# ----- packaging ----------------------------------------------------------------------------------
def test_the_wheel_installs_only_minigrad_under_its_own_name(tmp_path):
    """`models` is a common name on PyPI: the wheel must not put it into site-packages."""
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc")
    for name in ("minigrad", "models"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*build, "-w", str(tmp_path), str(source)], check=True, timeout=300)
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name.startswith("minigrad_rnn-")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"minigrad", wheel.name.split("-py")[0] + ".dist-info"}, tops
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Name: minigrad-rnn" in meta
    # PyTorch and MPI stay optional: required only through their extras.
    for dep in ("torch", "mpi4py"):
        lines = [ln for ln in meta.splitlines() if ln.startswith(f"Requires-Dist: {dep}")]
        assert lines and all("extra ==" in ln for ln in lines), dep


@pytest.mark.parametrize("module", ["models", "models.reference_bptt"])
def test_models_is_imported_from_the_repository(module):
    spec = importlib.util.find_spec(module)
    assert spec is not None and Path(spec.origin).is_relative_to(ROOT / "models")
