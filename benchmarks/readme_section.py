"""Replace one `## ` section of benchmarks/README.md (or append it), leaving the rest as is."""

from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"


def write_section(title: str, body: str) -> None:
    """body starts with the `title` line; the section runs to the next `## ` heading."""
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    start = text.find(title)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + len(title))
        text = text[:start] + body + ("" if end < 0 else text[end:])
    README.write_text(text)
