"""The fused kernels' on-disk cache: damaged files rewritten or discarded, unsafe directories
avoided (test_fusion_cache_trust.py: files other users could have written).

A fresh process is what reads the cache (one process compiles each source once), so the
end-to-end tests run a small fused computation in a subprocess, against the same computation
unfused in that process.
"""

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest

from minigrad.fusion import cache
from minigrad.kernels import _diskcache

SCRIPT = """
import json
import numpy as np
import minigrad as mg

def f(x, y):
    return (x * y + x).tanh() * y

def run(fn):
    x = mg.tensor(np.linspace(-1, 1, 6).reshape(2, 3), dtype=mg.float64, requires_grad=True)
    y = mg.tensor(np.linspace(0.5, 2, 6).reshape(2, 3), dtype=mg.float64, requires_grad=True)
    out = fn(x, y)
    out.sum().backward()
    fused = sum(n.name.startswith("Fused(") for n in mg.graph.walk(out)[0])
    return [out.data.tolist(), x.grad.tolist(), y.grad.tolist()], fused

(fused, n_fused), (plain, _) = run(mg.fuse(f)), run(f)
print(json.dumps({"fused": fused, "plain": plain, "fused_nodes": n_fused}))
"""


def run_fused(cache_dir, tmpdir=None):
    """Run SCRIPT in a fresh process; check its fused results equal its unfused ones."""
    env = dict(os.environ, MINIGRAD_CACHE_DIR=str(cache_dir))
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["fused_nodes"] >= 1  # the computation did run a generated kernel
    for got, want in zip(result["fused"], result["plain"], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    return proc.stderr


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    """A cache filled by one run of SCRIPT: the generated sources and Numba's files."""
    root = tmp_path_factory.mktemp("warm")
    run_fused(root)
    return root


def forward_file(cache_dir):
    (path,) = [p for p in (cache_dir / "fused").glob("*.py") if "def forward(" in p.read_text()]
    return path


def cut_before_output(text):  # still imports: forward just never writes its output
    return text[: text.index("            out[0, r, j]")]


def flip_a_sign(text):  # still imports: one addition becomes a subtraction
    edited = re.sub(r"= (v\d+) \+ (v\d+)", r"= \1 - \2", text, count=1)
    assert edited != text
    return edited


@pytest.mark.parametrize(
    "tamper",
    [
        cut_before_output,
        flip_a_sign,
        lambda text: "\x00garbage (((\n",
        lambda text: "",
        lambda text: text[: len(text) // 2],
    ],
    ids=["cut", "sign-flipped", "garbage", "empty", "half"],
)
def test_a_damaged_source_is_rewritten_and_gives_right_answers(tamper, warm_cache, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(warm_cache, cache)
    path = forward_file(cache)
    original = path.read_bytes()
    damaged = tamper(original.decode())
    if tamper in (cut_before_output, flip_a_sign):
        compile(damaged, str(path), "exec")  # would have run, silently wrong
    path.write_text(damaged)
    run_fused(cache)
    assert path.read_bytes() == original
    assert not list(cache.rglob("*.tmp"))


def _tiny_source(value):
    return f"X = {value}\n"


def _cache_file(cache_dir, source):
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    return cache_dir / "fused" / f"minigrad_fused_{digest}.py"


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """The cache module as in a new process, with its cache in tmp_path/cache and temporary
    directories under tmp_path/tmp."""
    for name, empty in (("_modules", {}), ("_refused", {}), ("_private", [])):
        monkeypatch.setattr(cache, name, empty)
    monkeypatch.setattr(_diskcache, "_warned", set())  # damaged files seen: warned about once
    monkeypatch.setenv("MINIGRAD_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    return tmp_path / "cache"


def test_an_edited_source_is_rewritten_and_not_run(fresh_cache):
    source = _tiny_source(1)
    path = _cache_file(fresh_cache, source)
    path.parent.mkdir(parents=True)
    path.write_text(_tiny_source(2))  # same length as the right text
    assert cache.load_module(source).X == 1
    assert path.read_text() == source


def test_a_correct_file_is_used_as_it_is(fresh_cache):
    source = _tiny_source(3)
    cache.load_module(source)
    path = _cache_file(fresh_cache, source)
    compiled = path.parent / "__pycache__" / f"{path.stem}.forward-25.py311.nbi"
    compiled.write_bytes(b"compiled")
    before = path.stat().st_mtime_ns
    cache._modules.clear()  # as a new process would
    assert cache.load_module(source).X == 3
    assert path.stat().st_mtime_ns == before and compiled.exists()


def test_the_source_is_fsynced_before_it_is_renamed_into_place(fresh_cache, monkeypatch):
    calls = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(cache.os, "fsync", lambda fd: calls.append("fsync") or fsync(fd))
    monkeypatch.setattr(cache.os, "replace", lambda a, b: calls.append("replace") or replace(a, b))
    cache.load_module(_tiny_source(4))
    assert calls[:2] == ["fsync", "replace"]
    assert calls.count("fsync") == 2  # the file, then its directory


def test_the_cache_directory_is_private(fresh_cache):
    cache.load_module(_tiny_source(5))
    for d in [fresh_cache / "fused", fresh_cache / "fused" / "__pycache__"]:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700


def _assert_fell_back(fresh_cache, source, value):
    private = fresh_cache.parent / "tmp"
    assert cache.load_module(source).X == value
    (used,) = private.iterdir()
    assert (used / _cache_file(fresh_cache, source).name).read_text() == source
    assert stat.S_IMODE(used.stat().st_mode) == 0o700
    assert not _cache_file(fresh_cache, source).exists()
    return used


@pytest.mark.parametrize("where", ["it", "its __pycache__"])
def test_a_directory_others_can_write_is_not_used(where, fresh_cache):
    pycache = fresh_cache / "fused" / "__pycache__"
    pycache.mkdir(parents=True)
    (pycache if where != "it" else pycache.parent).chmod(0o777)
    with pytest.warns(UserWarning, match=f"not caching .* others can write to {where} .mode 777"):
        _assert_fell_back(fresh_cache, _tiny_source(6), 6)


@pytest.mark.parametrize("where", ["it", "its __pycache__"])
def test_a_directory_of_another_user_is_not_used(where, fresh_cache, monkeypatch):
    pycache = fresh_cache / "fused" / "__pycache__"
    pycache.mkdir(parents=True)
    theirs = pycache if where != "it" else pycache.parent
    fstat, uid = os.fstat, os.geteuid() + 1

    def their_fstat(fd):  # theirs as far as the check can tell, whoever runs the tests
        st = fstat(fd)
        same = (st.st_dev, st.st_ino) == (theirs.stat().st_dev, theirs.stat().st_ino)
        return os.stat_result((*st[:4], uid, *st[5:10])) if same else st

    monkeypatch.setattr(cache.os, "fstat", their_fstat)
    with pytest.warns(UserWarning, match=f"{where} belongs to uid {uid}, not to this user"):
        _assert_fell_back(fresh_cache, _tiny_source(7), 7)


def test_a_failed_write_falls_back_to_a_private_directory(fresh_cache, monkeypatch):
    write = cache._write_atomically
    shared = str(fresh_cache / "fused")

    def read_only(path, data):  # what a directory made read-only after the check does
        if path.startswith(shared):
            raise PermissionError(13, "Permission denied", path)
        write(path, data)

    monkeypatch.setattr(cache, "_write_atomically", read_only)
    with pytest.warns(UserWarning, match="writing to it failed"):
        used = _assert_fell_back(fresh_cache, _tiny_source(8), 8)
    assert cache.load_module(_tiny_source(9)).X == 9  # later modules go there too
    assert (used / _cache_file(fresh_cache, _tiny_source(9)).name).exists()


def test_a_read_only_directory_falls_back(fresh_cache, monkeypatch):
    fused = fresh_cache / "fused"
    (fused / "__pycache__").mkdir(parents=True)
    fused.chmod(0o500)
    if os.geteuid() == 0:  # root writes anywhere: have os.access answer as for the owner
        access = os.access

        def owner_access(path, mode):
            writable = os.stat(path).st_mode & stat.S_IWUSR
            return access(path, mode) and (writable or not mode & os.W_OK)

        monkeypatch.setattr(cache.os, "access", owner_access)
    with pytest.warns(UserWarning, match="it is not writable"):
        _assert_fell_back(fresh_cache, _tiny_source(10), 10)


def test_an_uncreatable_directory_falls_back_and_is_cleaned_up_at_exit(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    stderr = run_fused(blocker / "cache", tmpdir=tmpdir)  # makedirs fails: not a directory
    assert "not caching compiled kernels" in stderr and "cannot create it" in stderr
    assert list(tmpdir.iterdir()) == []  # the private directory went at exit


# ----- Numba's files: what a power cut leaves, and how they are written -------------------------
def _damage(how, path):
    data = path.read_bytes()
    path.write_bytes(b"" if how == "empty" else data[: len(data) // 2])


@pytest.mark.parametrize("how", ["empty", "cut"])
@pytest.mark.parametrize("kind", ["index", "data"])
def test_a_damaged_numba_file_is_discarded_and_recompiled_with_one_warning(
    kind, how, warm_cache, tmp_path
):
    """Numba renames its files into place without fsync: after a power cut one can be empty
    or cut short, which made every later run fail (EOFError, UnpicklingError)."""
    cache_dir = tmp_path / "cache"
    shutil.copytree(warm_cache, cache_dir)
    pycache = cache_dir / "fused" / "__pycache__"
    damaged = sorted(pycache.glob("*.nbi" if kind == "index" else "*.nbc"))
    assert len(damaged) >= 2  # forward's and backward's
    for path in damaged:
        _damage(how, path)
    stderr = run_fused(cache_dir)
    assert stderr.count("discarded a damaged compiled-kernel file") == 1, stderr
    written = {p: p.stat().st_mtime_ns for p in pycache.iterdir()}
    assert all(p.stat().st_size > 0 for p in damaged)
    assert "discarded" not in run_fused(cache_dir)  # whole again: loaded, not rewritten
    assert {p: p.stat().st_mtime_ns for p in pycache.iterdir()} == written


def test_numba_files_are_fsynced_before_they_are_renamed_into_place(fresh_cache, monkeypatch):
    calls = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(cache.os, "fsync", lambda fd: calls.append("fsync") or fsync(fd))
    monkeypatch.setattr(cache.os, "replace", lambda a, b: calls.append(b) or replace(a, b))
    module = cache.load_module("from numba import njit\n\n\n@njit\ndef f(x):\n    return x + 1\n")
    assert module.f(1) == 2
    numba_files = [i for i, call in enumerate(calls) if call.endswith((".nbi", ".nbc"))]
    assert len(numba_files) == 2 and all(calls[i - 1] == "fsync" for i in numba_files)
    assert all(calls[i + 1] == "fsync" for i in numba_files)  # their directory
