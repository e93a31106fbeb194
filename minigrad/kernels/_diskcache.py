"""Numba's on-disk cache for minigrad's hand-written kernels, kept only where no other user can
have written it.

Numba's cache files are pickles, so reading one runs code. A function given to `disk_cached`
keeps its cache in the directory Numba itself would choose (NUMBA_CACHE_DIR's, else the
__pycache__ beside its source, else the user-wide one), but only if, by every path to it,
nothing in it can come from another user: every directory passed through from / down belongs
to this user or root and lets no one else write to it (a sticky one may: no one else can rename
or replace what is ours in it), every link followed on the way belongs to this user or root,
and the directory itself is this user's and writable by no one else. Otherwise the function is
compiled in each process instead, with one warning naming the directory and why.

Its files are read from that directory's real path, checked again before each read and each
write, and only if they are this user's and no one else can write them (one planted before the
directory was made safe is ignored, and replaced on the next write). They are written with
mode 0600 and fsync (Numba's own writes follow the umask and are not synced), and one that is
cut or empty (what a power cut leaves) is discarded and its function recompiled.

The checks are a few system calls per directory on the path, once per directory at import and
once per read or write: nothing next to a compile. Without POSIX owners and modes (Windows)
there is nothing to check, and Numba's cache is used as it is.

Only minigrad.kernels and minigrad.fusion use this module, which imports nothing from minigrad.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import pickle
import stat
import tempfile
import warnings

from numba.core import config
from numba.core.caching import FunctionCache, IndexDataCacheFile
from numba.core.dispatcher import Dispatcher

_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
_FILE_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
_MAX_LINKS = 40  # as Linux's path resolution
_POSIX = hasattr(os, "geteuid")

_checked: dict = {}  # directory -> (real path, why unsafe or None): the first check, at import
_warned: set = set()  # directories refused, and damage seen: each warned about once


def unsafe_level(st: os.stat_result, where: str, own: bool) -> str | None:
    """Why the directory `where` (whose fstat is st) lets another user change what lies under
    it, or None. `own`: it must be this user's, and writable by no one else even if sticky."""
    me, mode = os.geteuid(), stat.S_IMODE(st.st_mode)
    if st.st_uid != me and (own or st.st_uid != 0):
        whose = "this user" if own else "this user or root"
        return f"{where} belongs to uid {st.st_uid}, not to {whose}"
    if mode & 0o022 and (own or not mode & stat.S_ISVTX):
        fix = "; chmod 700 it" if own else ", not sticky"
        return f"group or others can write to {where} (mode {mode:o}{fix})"
    return None


def checked_dir(path: str, own: int = 1) -> tuple:
    """(the real path of the directory at `path`, why a file in it could come from another
    user, or None if none can): the path is resolved one name at a time from /, each directory
    opened from its checked parent without following links, each link followed only if it is
    this user's or root's (in a directory no one else can write, so no one else's to change).
    The last `own` directories must be this user's and writable by no one else."""
    if not _POSIX:
        return os.path.realpath(path), None
    if not os.path.isabs(path):
        path = os.path.join(os.getcwd(), path)
    todo = [name for name in reversed(path.split(os.sep)) if name]  # popped from the end
    real: list = []  # the names of the directories open in fds, after /
    fds = [os.open(os.sep, _DIR_FLAGS)]
    where, links, why = os.sep, 0, None
    try:
        why = unsafe_level(os.fstat(fds[0]), where, own=False)
        while todo and why is None:
            name = todo.pop()
            if name == ".":
                continue
            if name == "..":  # real has no links in it: its parent is the one above
                if real:
                    real.pop()
                    os.close(fds.pop())
                continue
            where = _path(real + [name])
            st = os.stat(name, dir_fd=fds[-1], follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                if st.st_uid not in (os.geteuid(), 0):
                    why = f"{where} is a link belonging to uid {st.st_uid}"
                    break
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
                target = os.readlink(name, dir_fd=fds[-1])
                if os.path.isabs(target):
                    while real:
                        real.pop()
                        os.close(fds.pop())
                todo.extend(part for part in reversed(target.split(os.sep)) if part)
                continue
            fds.append(os.open(name, _DIR_FLAGS, dir_fd=fds[-1]))
            real.append(name)
            why = unsafe_level(os.fstat(fds[-1]), where, own=False)
        for depth in range(max(len(fds) - own, 0), len(fds)):
            if why is None:
                where = _path(real[:depth])
                why = unsafe_level(os.fstat(fds[depth]), where, own=True)
    except OSError as e:  # gone, not a directory, a link loop, ...
        why = f"cannot open {where}: {e.strerror or e}"
    finally:
        for fd in fds:
            os.close(fd)
    return _path(real), why


def _path(names: list) -> str:
    return os.sep + os.sep.join(names)


def read_own(path: str) -> bytes | None:
    """The bytes of the file at path if it is a regular file, this user's, and no one else can
    write it; else None (missing, a link, another's, writable by others)."""
    try:
        fd = os.open(path, _FILE_FLAGS)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if _POSIX and (st.st_uid != os.geteuid() or st.st_mode & 0o022):
            return None
        return f.read()


def write_atomically(path: str, data: bytes) -> None:
    """Write data to path (mode 0600) so that no reader ever sees a partial file, and persist it."""
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # another process may race us to it: both write the same bytes
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    try:  # persist the rename too (POSIX); not possible everywhere
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _warn_once(key: str, message: str, stacklevel: int) -> None:
    """Warn, once per key; stacklevel counts from the caller."""
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, stacklevel=stacklevel + 1)


def _refuse(directory: str, why: str, stacklevel: int = 3) -> None:
    named = ""
    if config.CACHE_DIR and directory.startswith(config.CACHE_DIR):
        named = f" (NUMBA_CACHE_DIR is {config.CACHE_DIR})"
    _warn_once(
        directory,
        f"minigrad.kernels: not caching compiled kernels on disk in {directory}{named}: {why}; "
        "they are compiled in each process instead",
        stacklevel + 1,
    )


class TrustedFiles(IndexDataCacheFile):
    """Numba's index and data files for one function, read only from a directory that is still
    safe and only if this user wrote them; written with mode 0600 and fsync; discarded if
    damaged. `own`: as for checked_dir. A subclass may judge the directory its own way
    (`_safe`) and name itself in warnings (`owner`)."""

    owner = "minigrad.kernels"

    def __init__(self, directory: str, filename_base: str, stamp, own: int = 1):
        super().__init__(directory, filename_base, stamp)
        self._directory = directory
        self._own = own

    def _safe(self) -> bool:
        why = checked_dir(self._directory, self._own)[1]
        if why:
            _refuse(self._directory, why)
        return why is None

    def _unpickle(self, path: str, parse):
        raw = read_own(path) if self._safe() else None
        if raw is None:
            return None
        try:
            return parse(io.BytesIO(raw))
        except Exception as e:  # cut or empty: EOFError, UnpicklingError, ... (our own file)
            with contextlib.suppress(OSError):
                os.remove(path)
            _warn_once(
                f"{self.owner}: damaged",
                f"{self.owner}: discarded a damaged compiled-kernel file {path} "
                f"({type(e).__name__}: {e}; a power cut can leave one) to recompile it; "
                "any others are discarded silently",
                4,
            )
            return None

    def _parse_index(self, f):
        if pickle.load(f) != self._version:
            return None  # another Numba's: the rest may not unpickle here
        stamp, overloads = pickle.loads(f.read())
        return overloads if stamp == self._source_stamp else None

    def _load_index(self):
        return self._unpickle(self._index_path, self._parse_index) or {}

    def _load_data(self, name):
        return self._unpickle(self._data_path(name), lambda f: pickle.loads(f.read()))

    def save(self, key, data):
        if self._safe():
            super().save(key, data)

    @contextlib.contextmanager
    def _open_for_write(self, filepath):
        buffer = io.BytesIO()
        yield buffer
        write_atomically(filepath, buffer.getvalue())


def disk_cached(function):
    """Give `function` (made by njit without cache=True) Numba's disk cache as cache=True would,
    in the directory Numba chooses, if that directory is safe (see the module docstring); if
    it is not, or Numba finds no directory it can write, none. Returns function.

    Under NUMBA_DISABLE_JIT=1 njit returns the Python function itself: returned as it is."""
    if not isinstance(function, Dispatcher):
        return function
    try:  # Numba picks the directory and makes it; nothing is read from it yet
        cache = FunctionCache(function.py_func)
    except (RuntimeError, OSError) as e:  # no directory it can write to (cache=True would raise)
        _warn_once(
            "no-locator",
            f"minigrad.kernels: not caching compiled kernels on disk: {e}; "
            "they are compiled in each process instead",
            3,  # the line that defines the kernel: disk_cached's caller's caller
        )
        return function
    if not _POSIX:
        function._cache = cache
        return function
    directory = cache.cache_path
    if directory not in _checked:
        _checked[directory] = checked_dir(directory)
    real, why = _checked[directory]
    if why:
        _refuse(directory, why, 3)
        return function  # its cache stays Numba's NullCache
    files = cache._cache_file
    cache._cache_file = TrustedFiles(real, cache._impl.filename_base, files._source_stamp)
    cache._cache_path = real
    function._cache = cache  # what Dispatcher.enable_caching does, with our files
    return function
