"""The on-disk cache of fused kernels: the generated sources, and Numba's compiled code for them.

Numba's files are pickles, so reading one runs code: every file read from the cache must be one
that no other user can have written, by any path to it. So a cache directory is used only if
every directory on its path, from / down, belongs to this user or root and lets no one else
write to it (a sticky one may: no one else can rename or replace what is ours in it), and it
and its __pycache__ are this user's own; each is opened from its checked parent without
following links, so what is checked is what the path leads to. That is checked again before
each module is loaded and each time Numba reads or writes its files, which notices a directory
made unsafe since (and with it, one swapped for another's). Otherwise, or when it cannot be
written, a private temporary directory serves this process and is deleted at exit; if even
that is unsafe (an unsafe TMPDIR), nothing is kept on disk.

Numba's files for these kernels live only in the checked directory, whatever NUMBA_CACHE_DIR
or NUMBA_CACHE_LOCATOR_CLASSES say, and are read only if they are this user's and no one
else can write them. They are written with fsync (Numba's own writes are not), and one that
is cut or empty (what a power cut leaves) is discarded and its kernel recompiled.

The code run is the source text in memory, never the file: the file (named by its text's
hash, which also keys Numba's files) is there for tracebacks and for reading.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import sys
import tempfile
import types
import warnings

from numba.core.caching import CompileResultCacheImpl, FunctionCache
from numba.core.dispatcher import Dispatcher

# The checks and files shared with the hand-written kernels' cache.
from ..kernels._diskcache import TrustedFiles
from ..kernels._diskcache import unsafe_level as _unsafe_level
from ..kernels._diskcache import write_atomically as _write_atomically

_modules: dict = {}  # source hash -> module, so that each is loaded once per process
_refused: dict = {}  # directory -> why it is not used (warned once)
_private: list = []  # this process's fallback directory, made on first need

_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)


def _configured_dir() -> str:
    base = os.environ.get("MINIGRAD_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "minigrad"
    )
    return os.path.join(base, "fused")


def _unsafe(path: str) -> str | None:
    """Why files in the directory at `path` (a real path) or its __pycache__ could come from
    another user, or None if they cannot (see the module docstring)."""
    if hasattr(os, "geteuid"):  # Windows has no POSIX owners or modes to check
        why = _unsafe_path(path)
        if why:
            return why
    pycache = os.path.join(path, "__pycache__")
    if not all(os.access(p, os.W_OK | os.X_OK) for p in (path, pycache)):
        return "it is not writable"
    return None


def _unsafe_path(path: str) -> str | None:
    """Each directory from / down to path/__pycache__, opened from its checked parent."""
    names = [name for name in path.split(os.sep) if name] + ["__pycache__"]
    fd, where = -1, os.sep
    try:
        fd = os.open(os.sep, _DIR_FLAGS)
        for depth in range(len(names) + 1):
            if depth:
                where = os.sep + os.path.join(*names[:depth])
                parent, fd = fd, -1
                try:
                    fd = os.open(names[depth - 1], _DIR_FLAGS, dir_fd=parent)
                finally:
                    os.close(parent)
            own = depth >= len(names) - 1
            if own:
                where = "it" if depth == len(names) - 1 else "its __pycache__"
            why = _unsafe_level(os.fstat(fd), where, own)
            if why:
                return why
    except OSError as e:  # gone, or a link put in place since realpath saw the path
        return f"cannot open {where}: {e.strerror or e}"
    finally:
        if fd >= 0:
            os.close(fd)
    return None


def _checked(path: str) -> tuple:
    """(path's real path, why it cannot hold the cache or None), making it if need be."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.makedirs(os.path.join(path, "__pycache__"), mode=0o700, exist_ok=True)
    except OSError as e:
        return path, f"cannot create it: {e.strerror or e}"
    real = os.path.realpath(path)  # from here on: no link on the path is followed again
    return real, _unsafe(real)


def _refuse(path: str, why: str) -> None:
    _refused[path] = why
    then = (
        "nothing is cached on disk"
        if path in _private
        else "this process uses a private temporary directory, deleted at exit"
    )
    warnings.warn(
        f"minigrad.fuse: not caching compiled kernels in {path} ({why}); {then}", stacklevel=4
    )


def _private_dir() -> str:
    if not _private:
        path = os.path.realpath(tempfile.mkdtemp(prefix="minigrad-fused-"))  # mode 0700
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        _private.append(path)
    return _private[0]


def _cache_dir() -> str | None:
    """The real path of the directory for the sources and Numba's files, checked just now (a
    few system calls: nothing next to a compile); None if none is safe."""
    for path in (_configured_dir(), None):
        path = path or _private_dir()
        if path in _refused:
            continue
        real, why = _checked(path)
        if real in _refused:  # found unsafe by a Numba read or write, and warned about then
            _refused[path] = _refused[real]
        elif why is None:
            return real
        else:
            _refuse(path, why)
    return None


def _ensure_source(path: str, data: bytes) -> None:
    """Make the file at path hold exactly data, rewriting a missing, cut or edited one."""
    try:
        with open(path, "rb") as f:
            if f.read(len(data) + 1) == data:
                return
    except OSError:  # missing (the usual case), or unreadable
        pass
    _write_atomically(path, data)


class _Files(TrustedFiles):
    """Numba's files for one generated function, in the checked directory's __pycache__: read
    only while that directory is still safe by this module's rule (and then only if this user
    wrote them), written with fsync, discarded if damaged (see TrustedFiles)."""

    owner = "minigrad.fuse"

    def __init__(self, directory: str, filename_base: str, stamp: str):
        super().__init__(os.path.join(directory, "__pycache__"), filename_base, stamp)
        self._checked_dir = directory

    def _safe(self) -> bool:
        why = _unsafe(self._checked_dir)
        if why and self._checked_dir not in _refused:
            _refuse(self._checked_dir, why)
        return why is None


class _Locator:
    """What Numba asks of a cache locator, for a function whose directory is already chosen."""

    def __init__(self, py_func, cache_path: str):
        self._py_file = py_func.__code__.co_filename  # named in Numba's warnings
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = cache_path

    def ensure_cache_path(self):
        pass  # made by _cache_dir, and checked before each write by _Files.save

    def get_cache_path(self):
        return self._cache_path

    def get_disambiguator(self):
        return str(self._lineno)


class _Impl(CompileResultCacheImpl):
    def __init__(self, py_func, cache_path: str):  # Numba's picks a place by the environment
        self._lineno = py_func.__code__.co_firstlineno
        self._locator = _Locator(py_func, cache_path)
        fullname = f"{py_func.__module__}.{py_func.__qualname__}"
        self._filename_base = self.get_filename_base(fullname, getattr(sys, "abiflags", ""))


class _Cache(FunctionCache):
    """Numba's on-disk cache of one generated function, in the checked directory only. Its
    stamp is the hash of the text run (Numba's would be the file's, which is not what runs)."""

    def __init__(self, py_func, directory: str, stamp: str):
        self._name = repr(py_func)
        self._py_func = py_func
        self._impl = _Impl(py_func, os.path.join(directory, "__pycache__"))
        self._cache_path = self._impl.locator.get_cache_path()
        self._cache_file = _Files(directory, self._impl.filename_base, stamp)
        self.enable()


def load_module(source: str):
    """Import `source` as a module kept in the cache dir, once per process."""
    data = source.encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()[:20]
    module = _modules.get(digest)
    if module is not None:
        return module
    name = f"minigrad_fused_{digest}"
    directory = _cache_dir()
    try:
        if directory is not None:
            _ensure_source(os.path.join(directory, name + ".py"), data)
    except OSError as e:  # e.g. a full disk, or a directory made read-only since
        if _configured_dir() in _refused:
            raise
        _refuse(_configured_dir(), f"writing to it failed: {e}")
        directory = _cache_dir()
        if directory is not None:
            _ensure_source(os.path.join(directory, name + ".py"), data)
    path = os.path.join(directory, name + ".py") if directory is not None else f"<{name}>"
    module = types.ModuleType(name)
    module.__file__ = path
    sys.modules[name] = module
    exec(compile(source, path, "exec"), module.__dict__)  # the text in memory, not the file
    if directory is not None:  # its jitted functions get their disk cache here, not by cache=True
        for value in list(vars(module).values()):
            if isinstance(value, Dispatcher) and value.py_func.__module__ == name:
                value._cache = _Cache(value.py_func, directory, digest)
    _modules[digest] = module
    return module
