"""`import minigrad` sets glibc's malloc to keep freed memory, unless told not to."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):
        return False


GLIBC = sys.platform.startswith("linux") and _glibc()


def _tuned(env_value):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MINIGRAD_MALLOC_TUNING", None)
    if env_value is not None:
        env["MINIGRAD_MALLOC_TUNING"] = env_value
    code = "import minigrad; print(minigrad.allocator.tuned)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_import_tunes_glibc_malloc():
    assert _tuned(None) == "True"


def test_the_environment_variable_turns_it_off():
    assert _tuned("0") == "False"


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_tuning_twice_is_harmless():
    import minigrad

    assert minigrad.allocator.reuse_freed_memory() is minigrad.allocator.tuned
