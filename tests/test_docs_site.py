"""The documentation site (mkdocs.yml, docs/): it builds with `mkdocs build --strict` (a broken
link, a warning or a lesson that raises fails it), every link inside the built site leads to a
file that is there, and in a real headless browser (Debian's chromium, driven by selenium and
served from localhost) the lessons' figures load with a non-zero size and the graph views are
drawn as SVG."""

import functools
import http.server
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
import types
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
LESSON_WITH_FIGURE = "lessons/02_vanishing_and_exploding_gradients/"
LESSON_WITH_GRAPH = "lessons/01_elman_and_bptt/"

pytest.importorskip("mkdocs", reason="the docs extra: pip install -e '.[docs]'")


def site_hooks():
    spec = importlib.util.spec_from_file_location("site_hooks", ROOT / "docs" / "site_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----- the build ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = build.stdout + build.stderr
    assert build.returncode == 0, log[-6000:]
    assert "WARNING" not in log, log[-6000:]
    return out


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value and (tag, name) in {("a", "href"), ("img", "src"), ("link", "href")}:
                self.links.append(value)
            if value and (tag, name) == ("script", "src"):
                self.links.append(value)


def test_every_link_inside_the_site_leads_to_a_file(site):
    broken = []
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 20  # home, lessons, API pages, guides
    for page in pages:
        parser = _Links()
        parser.feed(page.read_text(encoding="utf-8"))
        for link in parser.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or not parts.path or link.startswith("/"):
                continue  # another host, or an anchor in the same page
            target = (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page.relative_to(site)}: {link}")
    assert not broken, "links to nothing:\n" + "\n".join(broken[:30])


def test_readme_is_the_home_page_and_the_lessons_and_api_are_pages(site):
    home = (site / "index.html").read_text(encoding="utf-8")
    first_line = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()[0]
    assert first_line == "# minigrad" and '<h1 id="minigrad">minigrad' in home
    for lesson in sorted((ROOT / "lessons").glob("*.py")):
        page = site / "lessons" / lesson.stem / "index.html"
        assert page.is_file(), f"{lesson.name} has no page"
        assert "jp-OutputArea-output" in page.read_text(encoding="utf-8"), "not executed"
    api = (site / "api" / "fusion" / "index.html").read_text(encoding="utf-8")
    assert 'id="minigrad.fusion.fuse"' in api  # a docstring rendered by mkdocstrings


# ----- the hooks, piece by piece -----------------------------------------------------------------
def test_a_lesson_that_raises_stops_the_build_naming_it(tmp_path):
    hooks = site_hooks()
    lesson = tmp_path / "99_broken.py"
    lesson.write_text('# %%\nprint("before")\n\n# %%\nraise ValueError("the lesson is wrong")\n')
    with pytest.raises(hooks.PluginError, match=r"99_broken\.py(.|\n)*the lesson is wrong"):
        hooks.execute_lesson(lesson, tmp_path, timeout=120)
    assert not (tmp_path / "99_broken.ipynb").exists()


def test_links_into_the_repository_are_rewritten_and_missing_files_left_to_fail(tmp_path):
    hooks = site_hooks()
    figure = "examples/results/char_lm/loss.png"
    assert (ROOT / figure).is_file()
    hooks._site_path.update({ROOT / figure: f"repo/{figure}", ROOT / "docs" / "tour.md": "tour.md"})
    page = types.SimpleNamespace(
        file=types.SimpleNamespace(
            abs_src_path=str(ROOT / "docs" / "lessons" / "index.md"), src_uri="lessons/index.md"
        )
    )
    text = (
        f"![loss](../../{figure}) [tour](../tour.md#anchor) "
        '[gone](../../examples/no_such_file.png "title") [web](https://example.org/a.md)'
    )
    assert hooks.on_page_markdown(text, page, None, None) == (
        f"![loss](../repo/{figure}) [tour](../tour.md#anchor) "
        '[gone](../../examples/no_such_file.png "title") [web](https://example.org/a.md)'
    )


# ----- in a browser ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium: apt-get install -y chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def open_page(browser, url):
    browser.get(url)
    # The images of a page are loaded (or failed) once the load event has fired.
    browser.execute_script("return document.readyState")
    return browser


IMAGES = """
return Array.from(document.querySelectorAll(arguments[0])).map(img => ({
    src: img.currentSrc.slice(0, 60), complete: img.complete,
    width: img.naturalWidth, height: img.naturalHeight,
    shown: img.getBoundingClientRect().width}));
"""


def test_the_lessons_figures_load_in_the_browser(browser, served):
    open_page(browser, served + LESSON_WITH_FIGURE)
    images = browser.execute_script(IMAGES, ".jp-OutputArea-output img")
    assert images, "the lesson page shows no figure"
    for image in images:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
        assert image["shown"] > 0, image


def test_the_graph_views_are_drawn_as_svg_in_the_browser(browser, served):
    if shutil.which("dot") is None:
        pytest.skip("graph views are drawn by Graphviz's dot: apt-get install -y graphviz")
    open_page(browser, served + LESSON_WITH_GRAPH)
    svgs = browser.execute_script(
        """return Array.from(document.querySelectorAll('.jp-OutputArea-output svg')).map(s => ({
            nodes: s.querySelectorAll('g.node').length,
            edges: s.querySelectorAll('g.edge').length,
            width: s.getBoundingClientRect().width,
            height: s.getBoundingClientRect().height}));"""
    )
    assert svgs, "the lesson shows no SVG graph view"
    for svg in svgs:
        assert svg["nodes"] > 0 and svg["edges"] > 0, svg
        assert svg["width"] > 0 and svg["height"] > 0, svg


def test_the_home_pages_figures_load_in_the_browser(browser, served):
    open_page(browser, served)
    assert "minigrad" in browser.title
    images = browser.execute_script(IMAGES, "article img")
    assert images, "the home page shows no figure"
    for image in images:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
