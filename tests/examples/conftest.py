"""The examples are programs, not a package: they import their helpers (bootstrap, common,
apps_common) from examples/, which `python examples/<name>.py` puts first on sys.path. Tests
that load an example as a module need the same."""

import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    """examples/results/ moved to a temporary folder: an example run without --out writes there
    by its default rules, and the committed results stay as they are."""
    import common

    folder = tmp_path / "results"
    monkeypatch.setattr(common, "RESULTS", folder)
    return folder
