"""Nothing the fused kernels' cache runs or unpickles can come from a file another user could
have written: not through a directory on the cache's path that others can write (and so swap
the cache for their own), not from a file in the cache that is not this user's, not through
NUMBA_CACHE_DIR.

The attacks plant a Numba index file whose unpickling makes a marker directory: the marker
appearing is planted code running. Where the tests run as root, "another user" is real: files
are chown'ed to nobody, and the swap of a cache directory is done by a shell running as nobody
(subprocess's user=). As any other user, files are given away by having os.fstat report them
as nobody's, and the swap runs as this user: refusing it depends on who can write to the
directory above, not on who did.
"""

import contextlib
import hashlib
import os
import pickle
import shutil
import stat
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numba
import numpy as np
import pytest
from numba.core import config as numba_config
from numba.core.caching import _CacheLocator

from minigrad.fusion import cache, codegen
from minigrad.kernels import _diskcache

NOBODY = 65534
ROOT = os.geteuid() == 0


@pytest.fixture
def top(monkeypatch):
    """The cache module as in a new process, MINIGRAD_CACHE_DIR=top/cache and TMPDIR=top/tmp,
    where top is a new directory any user can enter (pytest's tmp_path is private to us)."""
    path = Path(tempfile.mkdtemp(prefix="minigrad-trust-"))
    path.chmod(0o755)
    (path / "tmp").mkdir()
    for name, empty in (("_modules", {}), ("_refused", {}), ("_private", [])):
        monkeypatch.setattr(cache, name, empty)
    monkeypatch.setattr(_diskcache, "_warned", set())  # damaged files seen: warned about once
    monkeypatch.setenv("MINIGRAD_CACHE_DIR", str(path / "cache"))
    monkeypatch.setattr("tempfile.tempdir", str(path / "tmp"))
    yield path
    shutil.rmtree(path)


@pytest.fixture
def give_away(monkeypatch):
    """give_away(path) makes the file at path nobody's, as far as the cache can tell."""
    if ROOT:
        return lambda path: os.chown(path, NOBODY, NOBODY)
    given, fstat = set(), os.fstat

    def fake_fstat(fd):
        st = fstat(fd)
        if (st.st_dev, st.st_ino) not in given:
            return st
        return os.stat_result((*st[:4], NOBODY, *st[5:10]))

    monkeypatch.setattr(os, "fstat", fake_fstat)
    return lambda path: given.add((os.stat(path).st_dev, os.stat(path).st_ino))


def kernel_source(factor):
    """A generated module with one compiled function, as codegen writes them."""
    body = f"\n\n@_jit\ndef forward(x):\n    return x * {factor} + sigmoid(x)\n"
    return codegen._header("float64") + body


def check_kernel(factor):
    module = cache.load_module(kernel_source(factor))
    assert module.forward(0.5) == pytest.approx(0.5 * factor + 1 / (1 + np.exp(-0.5)), 1e-12)


def module_name(source):
    return "minigrad_fused_" + hashlib.sha256(source.encode()).hexdigest()[:20]


def index_name(source):
    """The name of Numba's index file for `forward` in source: all an attacker needs to know."""
    code = compile(source, "<source>", "exec")
    (forward,) = [c for c in code.co_consts if getattr(c, "co_name", "") == "forward"]
    version = f"py{sys.version_info[0]}{sys.version_info[1]}{sys.abiflags}"
    return f"{module_name(source)}.forward-{forward.co_firstlineno}.{version}.nbi"


class Payload:
    """Unpickling it makes the directory `marker`: what a planted Numba file could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker, 0o777, True))


def plant(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(Payload(marker)))
    path.chmod(0o644)


def as_another_user(script, *args):
    """Run a shell script as nobody where this is root (else as this user: see the top)."""
    user = dict(user=NOBODY, group=NOBODY, extra_groups=[]) if ROOT else {}
    proc = subprocess.run(["sh", "-c", script, "sh", *map(str, args)], **user, capture_output=True)
    assert proc.returncode == 0, proc.stderr


@contextlib.contextmanager
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ----- the directories on the cache's path -------------------------------------------------------
@pytest.mark.parametrize(
    "mode", [0o777, 0o775, 0o757, 0o1777, 0o1755, 0o755, 0o700], ids=lambda mode: f"{mode:o}"
)
def test_a_directory_above_the_cache_that_others_can_write_is_refused_unless_sticky(top, mode):
    base = top / "cache"
    base.mkdir()
    base.chmod(mode)
    source = "X = 1\n"
    if mode & 0o022 and not mode & stat.S_ISVTX:
        with pytest.warns(UserWarning, match=f"others can write to {base} .mode {mode:o}, not st"):
            assert cache.load_module(source).X == 1
        assert not list(base.rglob("*.py")) and len(list((top / "tmp").rglob("*.py"))) == 1
    else:  # no one else can rename what is ours in a sticky directory
        with no_warnings():
            assert cache.load_module(source).X == 1
        assert (base / "fused" / f"{module_name(source)}.py").read_text() == source


def test_a_directory_above_the_cache_of_another_user_is_refused(top, give_away):
    base = top / "cache"
    base.mkdir(mode=0o755)
    give_away(base)  # its owner could rename fused/ and put their own in its place
    with pytest.warns(UserWarning, match=f"{base} belongs to uid {NOBODY}, not to this user or"):
        assert cache.load_module("X = 2\n").X == 2
    assert not (base / "fused").exists() or not list((base / "fused").glob("*.py"))


def test_a_link_on_the_path_is_resolved_once_and_checked_where_it_leads(top, monkeypatch):
    (top / "real").mkdir(mode=0o755)
    (top / "link").symlink_to(top / "real")
    monkeypatch.setenv("MINIGRAD_CACHE_DIR", str(top / "link"))
    source = "X = 3\n"
    with no_warnings():
        assert cache.load_module(source).X == 3
    assert (top / "real" / "fused" / f"{module_name(source)}.py").exists()
    (top / "real").chmod(0o777)  # checked where the link leads
    with pytest.warns(UserWarning, match=f"others can write to {top / 'real'} "):
        assert cache.load_module("X = 4\n").X == 4


# ----- the swap: fused/ renamed away and another's put in its place ------------------------------
SWAP = """set -e
mv "$1/fused" "$1/moved"
mkdir -p "$1/fused/__pycache__"
cp "$2" "$1/fused/$3.py"
cp "$4" "$1/fused/__pycache__/$5"
"""


@pytest.mark.parametrize("writable", ["from the start", "since the check", "since the import"])
def test_a_cache_swapped_after_the_check_runs_none_of_the_planted_files(writable, top):
    """The cache dir's parent is writable by others without a sticky bit: after the process
    checked fused/, another user swaps it for a copy holding the exact source of a kernel not
    compiled yet and a Numba index file of theirs for it. The process checks the path again
    before each module it loads and each Numba read, so the parent's mode is seen whenever it
    changed: before the first kernel, before the second, or after the second was imported
    but before it compiles (its source already checked and in memory)."""
    base, marker, staging = top / "cache", top / "marker", top / "staging"
    base.mkdir()
    base.chmod(0o777 if writable == "from the start" else 0o755)
    staging.mkdir(mode=0o755)
    second = kernel_source(2)
    (staging / "source").write_text(second)
    (staging / "source").chmod(0o644)
    plant(staging / "index", marker)
    with pytest.warns(UserWarning, match=f"others can write to {base} .mode 777, not sticky"):
        check_kernel(1)
        if writable == "since the import":
            cache.load_module(second)
        if writable != "from the start":
            base.chmod(0o777)
        name = module_name(second)
        as_another_user(SWAP, base, staging / "source", name, staging / "index", index_name(second))
        check_kernel(2)
        assert not marker.exists(), "the planted index file was unpickled"
    assert os.listdir(base / "fused" / "__pycache__") == [index_name(second)]
    compiled_in_private = list((top / "tmp").rglob(index_name(second)))
    assert len(compiled_in_private) == (writable != "since the import")  # else: not cached


def test_with_no_safe_directory_nothing_is_kept_on_disk(top):
    (top / "cache").mkdir(mode=0o777)
    (top / "cache").chmod(0o777)
    (top / "tmp").chmod(0o777)  # TMPDIR: the private directory could be swapped too
    with pytest.warns(UserWarning) as caught:
        check_kernel(5)
    assert [str(w.message).split(";")[-1] for w in caught] == [
        " this process uses a private temporary directory, deleted at exit",
        " nothing is cached on disk",
    ]
    assert not [p for p in top.rglob("*") if p.is_file()]


# ----- files in a safe cache directory -----------------------------------------------------------
@pytest.mark.parametrize("how", ["another user's", "writable by others"])
def test_a_cache_file_someone_else_could_have_written_is_not_read(how, top, give_away):
    """E.g. left from a time the directory was not safe: it is ignored, then replaced."""
    source, marker = kernel_source(3), top / "marker"
    fused = top / "cache" / "fused"
    index = fused / "__pycache__" / index_name(source)
    plant(index, marker)
    (fused / f"{module_name(source)}.py").write_text(source)  # the right text: it stays
    fused.chmod(0o700)
    index.parent.chmod(0o700)
    if how == "another user's":
        give_away(index)
    else:
        index.chmod(0o666)
    with no_warnings():
        check_kernel(3)
    assert not marker.exists(), "the planted index file was unpickled"
    st = index.stat()  # replaced by this process's own
    assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o600
    with open(index, "rb") as f:
        assert pickle.load(f) == numba.__version__


def test_numba_cache_dir_is_not_where_the_kernels_cache_goes(top, monkeypatch):
    """NUMBA_CACHE_DIR (read into numba's config at import) would send Numba's files for the
    kernels to a directory minigrad does not check: there a planted file runs with no race."""
    numba_dir, marker, source = top / "numba", top / "marker", kernel_source(4)
    monkeypatch.setattr(numba_config, "CACHE_DIR", str(numba_dir))
    fused = top / "cache" / "fused"
    subpath = _CacheLocator.get_suitable_cache_subpath(str(fused / f"{module_name(source)}.py"))
    plant(numba_dir / subpath / index_name(source), marker)
    check_kernel(4)
    assert not marker.exists(), "the index file in NUMBA_CACHE_DIR was unpickled"
    assert (fused / "__pycache__" / index_name(source)).exists()
    assert [p.name for p in numba_dir.rglob("*") if p.is_file()] == [index_name(source)]
