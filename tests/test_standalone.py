"""The repository stands alone: its code and docs cite nothing a reader of it cannot open.

Papers, public documentation and the lecture notes are cited by author and title; notes kept
outside the repository (planning documents, a shared folder, numbered source files) are not
cited at all, since a reader has no way to follow them. Every tracked .py and .md file is
scanned, and each hit is reported as file:line.
"""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Written in pieces so that this file does not match its own patterns.
FORBIDDEN = [re.escape(name + ".md") for name in ("PERFORMANCE", "DESIGN", "STYLE")] + [
    re.escape("../" + "shared"),
    r"\bthe " + "brief" + r"\b",
    r"\bseed " + "00",
]
PATTERN = re.compile("|".join(FORBIDDEN), re.IGNORECASE)


def tracked_sources() -> list:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--", "*.py", "*.md"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        paths = [ROOT / p for p in listed.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every source file
        paths = [
            p
            for pattern in ("*.py", "*.md")
            for p in ROOT.rglob(pattern)
            if not {".venv", "__pycache__"} & set(p.relative_to(ROOT).parts)
        ]
    return [p for p in paths if p.is_file() and p != Path(__file__).resolve()]


def references(paths) -> list:
    """'file:line: text' for every line that cites something outside the repository."""
    hits = []
    for path in paths:
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if PATTERN.search(line):
                hits.append(f"{name}:{number}: {line.strip()}")
    return hits


def test_no_file_cites_documents_outside_the_repository():
    paths = tracked_sources()
    assert any(p.name == "README.md" for p in paths)  # the listing found the sources
    hits = references(paths)
    assert not hits, "references a reader cannot follow:\n" + "\n".join(hits)


def test_the_scan_finds_and_locates_each_kind_of_reference(tmp_path):
    bad = [
        "see " + "PERFORMANCE" + ".md",
        "(" + "DESIGN" + ".md)",
        "per " + "STYLE" + ".md",
        "in ../" + "shared/seeds",
        "as The " + "Brief says",
        "lecture notes (seed " + "001)",
    ]
    # Near misses that must not be flagged: ordinary words close to the patterns above.
    fine = ["random seed 7", "a short note", "memory shared by views", "design", "a summary"]
    source = tmp_path / "example.py"
    source.write_text("\n".join(fine + bad) + "\n")
    hits = references([source])
    assert [h[len(str(source)) :].split(":")[1] for h in hits] == [
        str(len(fine) + i + 1) for i in range(len(bad))
    ]
    assert all(h.startswith(f"{source}:") for h in hits)
