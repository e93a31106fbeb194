#!/usr/bin/env python3
"""The project's commands, runnable with nothing but Python 3.10+:

    python3 tasks.py train    # train the default example (char-level LSTM on tiny-shakespeare)
    python3 tasks.py test     # the whole test suite (CI runs it after `lint`)
    python3 tasks.py lint     # ruff check and ruff format --check
    python3 tasks.py bench    # the headline benchmark (the others: benchmarks/README.md)
    python3 tasks.py docs     # the documentation site, built strictly into site/
    python3 tasks.py docs --serve   # the same, served at http://127.0.0.1:8000 while you edit

Each command first makes a virtual environment in .venv (so it works where the system Python
refuses `pip install`) and installs the project into it with the extras the test suite uses
(EXTRAS: PyTorch, MPI and the documentation tools included, so that no test is skipped for
want of them), again only when pyproject.toml has changed. The repository root goes on the
environment's path: `models` is imported from there, not installed. Extra arguments go to the
program that is run.
"""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
STAMP = VENV / ".minigrad-installed"
EXTRAS = "test,examples,torch,distributed,lessons,docs"


def ensure_env() -> None:
    if sys.version_info < (3, 10):  # noqa: UP036 (the system Python may be older)
        sys.exit(f"minigrad needs Python 3.10 or newer, this is {sys.version.split()[0]}")
    if not PY.exists():
        print("tasks.py: creating .venv", flush=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        except subprocess.CalledProcessError:
            sys.exit(
                "tasks.py: `python3 -m venv` failed; on Debian/Ubuntu install it with "
                "`apt-get install python3-venv` and run again"
            )
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    print(f"tasks.py: installing minigrad-rnn[{EXTRAS}] into .venv", flush=True)
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["-e", f"{ROOT}[{EXTRAS}]"], check=True)
    site = subprocess.run(
        [str(PY), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # A .pth line puts the root on sys.path in every process of .venv: `import models` works
    # in the examples, benchmarks and tests however they are started.
    Path(site, "minigrad-repository.pth").write_text(f"{ROOT}\n")
    STAMP.write_text(digest)


def environment(**extra: str) -> dict:
    """os.environ with .venv's scripts (mpiexec from the mpich wheel) first on PATH."""
    scripts = str(PY.parent)
    return {**os.environ, "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")]), **extra}


def run(*args: str, env=None) -> None:
    code = subprocess.run([str(PY), *args], cwd=ROOT, env=env or environment()).returncode
    if code:
        sys.exit(code)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("train", "test", "lint", "bench", "docs"):
        sys.exit(__doc__)
    task, extra = sys.argv[1], sys.argv[2:]
    ensure_env()
    if task == "train":
        run("examples/char_lm.py", *extra)
    elif task == "lint":
        run("-m", "ruff", "check", ".")
        run("-m", "ruff", "format", "--check", ".")
    elif task == "test":
        # Every test runs: a skip fails (tests/conftest.py), save the kernel tests that need
        # compiled code in the second pass.
        strict = environment(MINIGRAD_NO_SKIPS="1")
        pytest = ["-m", "pytest", "-W", "error::RuntimeWarning"]
        run(*pytest, *(extra or ["tests"]), env=strict)
        # Once more with the JIT off, so the kernels' Python bodies are covered line by line
        # and checked against NumPy just as the compiled ones are.
        run(*pytest, "tests/test_kernels.py", env={**strict, "NUMBA_DISABLE_JIT": "1"})
    elif task == "bench":
        run("benchmarks/lstm_lm.py", *extra)
    elif task == "docs":
        # mkdocs.yml sets strict: a warning (a broken link, a docstring it cannot parse) or a
        # lesson that raises fails the build. Material's notice about MkDocs 2.0 is silenced.
        env = environment(NO_MKDOCS_2_WARNING="1")
        if "--serve" in extra:
            run("-m", "mkdocs", "serve", *[a for a in extra if a != "--serve"], env=env)
        else:
            run("-m", "mkdocs", "build", "--strict", *extra, env=env)


if __name__ == "__main__":
    main()
