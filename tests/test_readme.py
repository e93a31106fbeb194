"""The Python snippets of README.md and of every page of the documentation site (docs/**/*.md)
run as written (each in a temporary folder), so the docs stay true."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCKS = [
    (page.relative_to(ROOT).as_posix(), index, code)
    for page in PAGES
    for index, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))
]


def test_the_docs_have_snippets():
    assert len(BLOCKS) >= 10
    assert {page for page, _, _ in BLOCKS} >= {"README.md"}


@pytest.mark.parametrize(
    ("page", "index", "code"), BLOCKS, ids=[f"{page}:{index}" for page, index, _ in BLOCKS]
)
def test_snippet_runs(page, index, code, tmp_path, monkeypatch):
    name = f"{page} block {index}"
    if code.lstrip().startswith("def "):
        # A condensed excerpt of models/cells.py: it must parse and name a real function.
        compile(code, name, "exec")
        function = code.split("(")[0].split()[-1]
        assert f"def {function}(" in (ROOT / "models" / "cells.py").read_text()
        return
    monkeypatch.chdir(tmp_path)
    exec(compile(code, name, "exec"), {"__name__": "readme"})
