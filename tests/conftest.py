"""Shared fixtures, hypothesis settings and the no-skip rule for minigrad's tests (the
strategies and comparisons they share are in strategies.py).

Hypothesis runs with no deadline: the first call of a Numba kernel compiles it (or loads it from
the cache), which can take longer than hypothesis' default 200 ms for one example.

With MINIGRAD_NO_SKIPS=1 (set by `tasks.py test`, so in CI) a skipped test fails instead: a
missing optional dependency (torch, mpi4py) or a skip condition gone wrong would otherwise
leave a tested path unrun behind a green result. The one allowed skip: tests marked
`needs_jit` under NUMBA_DISABLE_JIT=1 (the kernel tests' second pass), which inspect or call
compiled code that does not exist there.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# Kept importable from here for tests written before strategies.py; import from it instead.
from strategies import FLOAT_DTYPES, Domain, arrays, assert_close, broadcast_shapes  # noqa: F401

import minigrad as mg

settings.register_profile(
    "minigrad", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("minigrad")


# ----- skips: none unnoticed ----------------------------------------------------------------------
def _env_flag(name: str) -> bool:
    return os.environ.get(name, "0").strip() not in ("", "0")


NO_SKIPS = _env_flag("MINIGRAD_NO_SKIPS")
JIT_DISABLED = _env_flag("NUMBA_DISABLE_JIT")
NEEDS_JIT = "needs the JIT, which NUMBA_DISABLE_JIT=1 turns off"


def pytest_configure(config):
    config.addinivalue_line("markers", f"needs_jit: skipped when it {NEEDS_JIT}")


def pytest_collection_modifyitems(items):
    if JIT_DISABLED:
        for item in items:
            if item.get_closest_marker("needs_jit"):
                item.add_marker(pytest.mark.skip(reason=NEEDS_JIT))


def _allowed_skip(item) -> bool:
    return JIT_DISABLED and item.get_closest_marker("needs_jit") is not None


def _skip_failure(report, where: str) -> None:
    """Turn a skip report into a failure that says why."""
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"{where} skipped ({reason}), and MINIGRAD_NO_SKIPS=1 allows no skips"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if NO_SKIPS and report.skipped and not hasattr(report, "wasxfail"):
        if not _allowed_skip(item):
            _skip_failure(report, "test")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    report = (yield).get_result()
    if NO_SKIPS and report.skipped:  # a module-level importorskip or skip
        _skip_failure(report, f"{collector.nodeid} was")


# ----- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _isolate_global_state():
    """Every test starts from, and leaves behind, float32 default, grad on, anomaly off."""
    dtype = mg.get_default_dtype()
    yield
    mg.set_default_dtype(dtype)
    mg.set_detect_anomaly(False)


@pytest.fixture
def default_float64():
    """Run a test with float64 as the default dtype; the previous default is restored after."""
    previous = mg.get_default_dtype()
    mg.set_default_dtype(mg.float64)
    try:
        yield mg.float64
    finally:
        mg.set_default_dtype(previous)
