"""README's Python snippets run as written (in a temporary folder), so the docs stay true."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_snippets():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_snippet_runs(index, tmp_path, monkeypatch):
    code = BLOCKS[index]
    if code.lstrip().startswith("def "):
        # A condensed excerpt of models/cells.py: it must parse and name a real function.
        compile(code, f"README block {index}", "exec")
        name = code.split("(")[0].split()[-1]
        cells = README.parent / "models" / "cells.py"
        assert f"def {name}(" in cells.read_text()
        return
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README block {index}", "exec"), {"__name__": "readme"})
