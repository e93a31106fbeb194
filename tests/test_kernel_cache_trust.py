"""Nothing the hand-written kernels' disk cache unpickles can come from a file another user
could have written, whatever NUMBA_CACHE_DIR says, and wherever the package is installed.

The attacks plant a Numba index file, under the exact name Numba gives it, for every compiled
function of minigrad/kernels/_numba.py and minigrad/fusion/scalar.py; unpickling one creates a
marker file: the marker appearing is planted code running. Each attack runs in a new process
(`import minigrad`, then every one of those functions called), as the kernels are compiled and
cached once per process. "Others" is group or others: the tests make directories writable by
them, which works the same as root and as any other user.
"""

import inspect
import os
import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numba
import pytest
from numba.core.caching import _CacheLocator
from numba.core.dispatcher import Dispatcher

from minigrad.fusion import scalar
from minigrad.kernels import _diskcache, _numba

pytestmark = pytest.mark.needs_jit  # with the JIT off nothing is compiled, so nothing cached

ROOT = Path(__file__).resolve().parents[1]

# Calls every compiled function of the two modules and checks what they return.
CALL_EVERY_KERNEL = """
import warnings
warnings.simplefilter("always")
import numpy as np
import minigrad
from minigrad import kernels
from minigrad.fusion import scalar
from minigrad.kernels import reference

x = np.linspace(-3.0, 3.0, 64)
g = np.cos(x)
np.testing.assert_allclose(kernels.sigmoid(x), reference.sigmoid(x), rtol=1e-15)
np.testing.assert_allclose(kernels.tanh_backward(g, x), g * (1 - x * x), rtol=1e-15)
np.testing.assert_allclose(kernels.sigmoid_backward(g, x), g * x * (1 - x), rtol=1e-15)
np.testing.assert_array_equal(kernels.relu_backward(g, x), g * (x > 0))
np.testing.assert_allclose(kernels.sum_rows(g.reshape(8, 8)), g.reshape(8, 8).sum(0))
out = np.zeros((4, 2))
kernels.index_add(out, np.array([0, 3, 0]), np.ones((3, 2)))
np.testing.assert_array_equal(out[:, 0], [2, 0, 0, 1])
one = np.float32(1)
assert abs(scalar.exp64(1.0) - np.e) < 1e-8 and abs(scalar.exp32(one) - np.float32(np.e)) < 1e-6
assert abs(scalar.tanh32(one) - np.tanh(one)) < 1e-6
assert abs(scalar.sigmoid32(one) - 1 / (1 + np.exp(-one))) < 1e-6
print("kernels ok")
"""


def compiled_functions():
    """The Numba dispatcher of each function the two modules compile."""
    for module in (_numba, scalar):
        for value in vars(module).values():
            if isinstance(value, Dispatcher) and value.py_func.__module__ == module.__name__:
                yield value


def index_files(cache_dir=None):
    """Where Numba keeps each function's index file: under cache_dir (NUMBA_CACHE_DIR), in the
    subdirectory Numba derives from the source's directory, or beside the source."""
    version = f"py{sys.version_info[0]}{sys.version_info[1]}{sys.abiflags}"
    for function in compiled_functions():
        source = inspect.getfile(function.py_func)
        if cache_dir is None:
            directory = Path(source).parent / "__pycache__"
        else:
            directory = Path(cache_dir) / _CacheLocator.get_suitable_cache_subpath(source)
        stem = Path(source).stem
        name = f"{stem}.{function.py_func.__qualname__}-{function.py_func.__code__.co_firstlineno}"
        yield directory / f"{name}.{version}.nbi"


class Payload:
    """Unpickling it creates the file `marker`: what a planted Numba file could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def plant(paths, marker, mode=0o644):
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(Payload(marker)))
        path.chmod(mode)


def run(code=CALL_EVERY_KERNEL, cache_dir=None, package=ROOT):
    """Run code in a new Python importing minigrad from `package`'s directory, with
    NUMBA_CACHE_DIR=cache_dir (or unset)."""
    drop = ("NUMBA_CACHE_DIR", "NUMBA_DISABLE_JIT", "NUMBA_CACHE_LOCATOR_CLASSES")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package), env.get("PYTHONPATH")]))
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def unsafe_dir(tmp_path, name="shared"):
    """A directory others can write to, with no sticky bit."""
    path = tmp_path / name
    path.mkdir()
    path.chmod(0o777)  # not subject to the umask, unlike mkdir's mode
    return path


def test_the_planted_names_are_the_ones_numba_uses(tmp_path):
    """The attacks below are only as good as the names they plant under."""
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir(mode=0o700)
    run(cache_dir=cache_dir)
    written = {p.relative_to(cache_dir) for p in cache_dir.rglob("*.nbi")}
    assert written == {p.relative_to(cache_dir) for p in index_files(cache_dir)}
    assert len(written) == len(list(compiled_functions())) >= 11


# ----- NUMBA_CACHE_DIR ----------------------------------------------------------------------------
@pytest.mark.parametrize("reached", ["directly", "through a link"])
def test_a_numba_cache_dir_others_can_write_is_not_read(tmp_path, reached):
    shared, marker = unsafe_dir(tmp_path), tmp_path / "planted-code-ran"
    plant(index_files(shared), marker)
    cache_dir = shared
    if reached == "through a link":  # the link is safe; where it leads is not
        (tmp_path / "mine").mkdir(mode=0o700)
        cache_dir = tmp_path / "mine" / "cache"
        cache_dir.symlink_to(shared)
    result = run(cache_dir=cache_dir)
    assert "kernels ok" in result.stdout
    assert not marker.exists(), "a planted index file was unpickled"
    assert f"others can write to {shared} (mode 777, not sticky)" in result.stderr
    assert "not caching compiled kernels on disk" in result.stderr
    assert not list(shared.rglob("*.nbc")), "compiled code was written where others can write"


def test_a_safe_numba_cache_dir_caches_and_is_read_back(tmp_path):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir(mode=0o700)
    stats = "from minigrad.kernels import _numba\nprint(dict(_numba.neg_abs.stats.cache_hits))"
    first = run(CALL_EVERY_KERNEL + stats, cache_dir=cache_dir)
    assert "kernels ok" in first.stdout and "Warning" not in first.stderr, first.stderr
    assert first.stdout.strip().endswith("{}")  # compiled: nothing to read yet
    files = list(cache_dir.rglob("*.nbc"))
    assert len(files) >= len(list(compiled_functions()))
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files + list(cache_dir.rglob("*.nbi")))
    second = run(CALL_EVERY_KERNEL + stats, cache_dir=cache_dir)
    assert "kernels ok" in second.stdout and "Warning" not in second.stderr, second.stderr
    assert ": 1}" in second.stdout.splitlines()[-1]  # read back from the cache


def test_a_file_others_can_write_in_a_safe_cache_dir_is_not_read_but_replaced(tmp_path):
    """Left there while the directory was still open to others, say."""
    cache_dir, marker = tmp_path / "cache", tmp_path / "planted-code-ran"
    cache_dir.mkdir(mode=0o700)
    planted = list(index_files(cache_dir))
    plant(planted, marker, mode=0o666)
    result = run(cache_dir=cache_dir)
    assert "kernels ok" in result.stdout and "Warning" not in result.stderr, result.stderr
    assert not marker.exists(), "a planted index file was unpickled"
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in planted)  # ours now, and read back
    assert pickle.loads(planted[0].read_bytes()) == numba.__version__  # Numba's first pickle


# ----- the default: the __pycache__ beside the installed package ----------------------------------
def test_a_package_installed_where_others_can_write_is_not_read_from(tmp_path):
    site, marker = unsafe_dir(tmp_path, "site-packages"), tmp_path / "planted-code-ran"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc")
    shutil.copytree(ROOT / "minigrad", site / "minigrad", ignore=ignore)
    planted = [
        site / p.relative_to(ROOT) for p in index_files() if p.is_relative_to(ROOT / "minigrad")
    ]
    assert len(planted) == len(list(compiled_functions()))
    plant(planted, marker)
    result = run(package=site)
    assert "kernels ok" in result.stdout
    assert not marker.exists(), "a planted index file was unpickled"
    assert f"others can write to {site} (mode 777, not sticky)" in result.stderr
    assert "__pycache__" in result.stderr


# ----- the checks themselves, in this process -----------------------------------------------------
def test_checked_dir_follows_every_path_to_the_directory(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    assert _diskcache.checked_dir(str(mine)) == (str(mine), None)
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)  # like /tmp: no one else can rename what is ours in it
    (sticky / "mine").mkdir(mode=0o700)
    assert _diskcache.checked_dir(str(sticky / "mine")) == (str(sticky / "mine"), None)
    assert "mode 1777; chmod 700 it" in _diskcache.checked_dir(str(sticky))[1]
    (mine / "up").symlink_to("..")  # resolved where it leads, not by the name
    (mine / "to-sticky").symlink_to(sticky / "mine")
    assert _diskcache.checked_dir(str(mine / "up" / "sticky" / "mine"))[1] is None
    assert _diskcache.checked_dir(str(mine / "to-sticky" / ".." / ".." / "mine")) == (
        str(mine),
        None,
    )
    shared = unsafe_dir(tmp_path)
    (shared / "below").mkdir(mode=0o700)
    (mine / "to-shared").symlink_to(shared / "below")
    for path in (shared / "below", mine / "to-shared"):
        assert "others can write to" in _diskcache.checked_dir(str(path))[1]
    (mine / "loop").symlink_to("loop")
    assert "cannot open" in _diskcache.checked_dir(str(mine / "loop"))[1]
    assert "cannot open" in _diskcache.checked_dir(str(mine / "missing"))[1]


def test_read_own_reads_only_this_users_files_no_one_else_can_write(tmp_path, monkeypatch):
    path = tmp_path / "file"
    path.write_bytes(b"data")
    path.chmod(0o644)
    assert _diskcache.read_own(str(path)) == b"data"
    path.chmod(0o664)
    assert _diskcache.read_own(str(path)) is None
    path.chmod(0o600)
    (tmp_path / "link").symlink_to(path)
    assert _diskcache.read_own(str(tmp_path / "link")) is None
    fstat, ino, other = os.fstat, path.stat().st_ino, os.geteuid() + 1

    def given_away(fd):  # the file another user's, as far as fstat can tell
        st = fstat(fd)
        return st if st.st_ino != ino else os.stat_result((*st[:4], other, *st[5:10]))

    monkeypatch.setattr(os, "fstat", given_away)
    assert _diskcache.read_own(str(path)) is None


def test_the_warning_names_the_directory_once(tmp_path, monkeypatch):
    monkeypatch.setattr(_diskcache, "_warned", set())
    shared = unsafe_dir(tmp_path)
    with pytest.warns(UserWarning, match="not caching compiled kernels on disk in .*shared") as w:
        _diskcache._refuse(str(shared), "why")
        _diskcache._refuse(str(shared), "why")
    assert len(w) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _diskcache._refuse(str(shared), "why")


def test_a_damaged_file_of_ours_is_discarded_once_with_a_warning(tmp_path, monkeypatch):
    """What a power cut can leave: cut or empty. Numba's own loader would raise."""
    monkeypatch.setattr(_diskcache, "_warned", set())
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir(mode=0o700)
    files = _diskcache.TrustedFiles(str(cache_dir), "f-1.py311", "stamp")
    index = cache_dir / "f-1.py311.nbi"
    for content in (pickle.dumps(numba.__version__) + b"\x80\x05", b""):
        index.write_bytes(content)
        index.chmod(0o600)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            assert files._load_index() == {}
        assert not index.exists()
        assert len(w) == (1 if content else 0)  # one warning for all
    files.save("key", ("data",))
    assert files.load("key") == ("data",)
    assert {p.stat().st_mode & 0o777 for p in cache_dir.iterdir()} == {0o600}
