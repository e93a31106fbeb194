"""MkDocs hooks (mkdocs.yml `hooks:`) that build the site from the repository as it stands.

- README.md is the site's home page (index.md), so the front page has one source.
- The lessons (lessons/*.py, jupytext percent scripts) are executed, each in a fresh Jupyter
  kernel started in lessons/ as Jupyter would run it, with NumPy's RuntimeWarnings as errors as
  in the tests; the executed notebooks become pages that mkdocs-jupyter renders (it executes
  nothing itself). A cell that raises stops the build, naming the lesson and the error.
- Pages link to the rest of the repository with the relative links that work on GitHub
  (`../examples/results/char_lm/loss.png`, `../lessons/01_elman_and_bptt.py`). Each such link
  is rewritten to the file's place in the site: a lesson to its rendered page, README to the
  home page, any other file to a copy under `repo/<its path>`. A link to a missing file is left
  as written, so `mkdocs build --strict` fails on it.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files, InclusionLevel

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"
# ](target) or ](target "title"): the target of a Markdown link or image.
LINK = re.compile(r"(\]\()([^()\s]+)((?:\s+\"[^\"]*\")?\))")
NOT_MIRRORED = {".git", ".venv", "site"}  # never copied into the site, even when linked

_site_path: dict[Path, str] = {}  # a real file -> its src_uri in the site
_executed: dict[str, Path] = {}  # hash of a lesson and the code it runs -> executed notebook
_scratch = tempfile.TemporaryDirectory(prefix="minigrad-docs-")


# ----- lessons: executed notebooks ----------------------------------------------------------------
def _code_hash(lesson: Path) -> str:
    """What a lesson's result depends on: its text and minigrad's and models' sources. A
    rebuild under `mkdocs serve` re-executes a lesson only when one of them changed."""
    digest = hashlib.sha256(lesson.read_bytes())
    for path in sorted([*(ROOT / "minigrad").rglob("*.py"), *(ROOT / "models").rglob("*.py")]):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def execute_lesson(lesson: Path, out_dir: Path, timeout: int = 300) -> Path:
    """Run one lesson as a notebook; write the executed .ipynb into out_dir and return it."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    notebook = jupytext.read(lesson)
    env = dict(os.environ, PYTHONWARNINGS="error::RuntimeWarning")
    # Figures inline, as PNG outputs, whatever backend the caller's environment names.
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=False,
        resources={"metadata": {"path": str(lesson.parent)}},  # the kernel's working folder
        # Quiet the kernel's note that its local TCP sockets are not encrypted.
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )
    try:
        client.execute(env=env)
    except (CellExecutionError, CellTimeoutError) as error:
        message = f"lesson {lesson.name} failed while the site was built:\n{error}"
        raise PluginError(message) from None  # the cell's traceback is in the message
    target = out_dir / f"{lesson.stem}.ipynb"
    nbformat.write(notebook, target)
    return target


def _executed_lessons(lessons: list[Path]) -> dict[Path, Path]:
    """Each lesson's executed notebook, two kernels at a time (the machines have two cores)."""
    keys = {lesson: _code_hash(lesson) for lesson in lessons}
    todo = [lesson for lesson in lessons if keys[lesson] not in _executed]
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = {}
        for lesson in todo:
            folder = Path(_scratch.name, keys[lesson], "lessons")
            folder.mkdir(parents=True, exist_ok=True)
            runs[lesson] = pool.submit(execute_lesson, lesson, folder)
        for lesson, run in runs.items():
            _executed[keys[lesson]] = run.result()
    return {lesson: _executed[keys[lesson]] for lesson in lessons}


# ----- the repository's files in the site -------------------------------------------------------
def _target(origin: Path, link: str) -> Path | None:
    """The repository file a relative link in the page at `origin` points to, or None."""
    if re.match(r"^[a-z][a-z0-9+.-]*:|^[#/]", link, re.I):
        return None  # a URL, an anchor in the page, or an absolute path: not a file link
    path = (origin.parent / link.split("#")[0]).resolve()
    if not path.is_file() or not path.is_relative_to(ROOT):
        return None
    if NOT_MIRRORED & set(path.relative_to(ROOT).parts):
        return None
    return path


def _add(files: Files, config, src_uri: str, real: Path, in_nav: bool = False) -> None:
    # A copied page (benchmarks/README.md) is reached by links, not listed in the nav.
    inclusion = InclusionLevel.UNDEFINED if in_nav else InclusionLevel.NOT_IN_NAV
    files.append(File.generated(config, src_uri, abs_src_path=str(real), inclusion=inclusion))
    _site_path[real] = src_uri


@event_priority(100)  # before mkdocs-jupyter's on_files, which must see the notebooks
def on_files(files: Files, config) -> Files:
    _site_path.clear()
    for file in files:
        if file.abs_src_path:
            _site_path[Path(file.abs_src_path).resolve()] = file.src_uri
    if "index.md" not in _site_path.values():
        _add(files, config, "index.md", ROOT / "README.md", in_nav=True)
    for lesson, notebook in _executed_lessons(sorted(LESSONS.glob("*.py"))).items():
        uri = f"lessons/{lesson.stem}.ipynb"
        # A File with a real src_dir (not File.generated): mkdocs-jupyter reads the notebook
        # through src_dir, which a generated file lacks.
        src_dir = str(notebook.parents[1])
        files.append(File(uri, src_dir, config["site_dir"], config["use_directory_urls"]))
        _site_path[lesson] = uri  # a link to the lesson's source opens its page
    # Copy in what the Markdown pages link to outside docs/, and what those copies link to.
    pages = [real for real, uri in _site_path.items() if uri.endswith(".md")]
    while pages:
        page = pages.pop()
        for match in LINK.finditer(page.read_text(encoding="utf-8")):
            target = _target(page, match.group(2))
            if target is not None and target not in _site_path:
                _add(files, config, "repo/" + target.relative_to(ROOT).as_posix(), target)
                if target.suffix == ".md":
                    pages.append(target)
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    origin = Path(page.file.abs_src_path).resolve()
    here = posixpath.dirname(page.file.src_uri)

    def rewrite(match: re.Match) -> str:
        link = match.group(2)
        target = _target(origin, link)
        if target is None or target not in _site_path:
            return match.group(0)
        anchor = link[len(link.split("#")[0]) :]
        new = posixpath.relpath(_site_path[target], here or ".") + anchor
        return match.group(1) + new + match.group(3)

    return LINK.sub(rewrite, markdown)
