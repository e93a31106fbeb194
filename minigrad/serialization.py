"""`save(obj, f)` / `load(f)`: checkpoints as .npz files, with no pickle anywhere.

An object is a tree of dicts, lists and tuples whose leaves are arrays, tensors, NumPy scalars,
Python numbers, bools, None and strings (a state_dict, an optimizer's state_dict, training
metadata), nested at most 100 containers deep. Each array becomes one .npz entry; the tree, with
each array replaced by a reference to its entry and each NumPy scalar by its dtype and bytes, is
one JSON document stored as a byte array in the entry `__minigrad__`. Nothing is unpickled, so a
checkpoint can never execute code.

Tensors come back as Tensors (with requires_grad as saved; nn.Parameters as Parameters),
arrays as arrays, NumPy scalars as NumPy scalars of the same type (np.float32(1.5) as an
np.float32, np.float64 as np.float64, not as a Python float), every dtype and bit exactly
preserved. dicts keep their order and their keys' types (str, int, float, bool, None); an
OrderedDict comes back as a plain dict.

`f` is a path or a binary file object (like torch.save/torch.load). Saving to a path is atomic:
the file is written under a temporary name in the same directory, flushed and fsynced, and only
then renamed onto the path (os.replace is atomic), so a crash during a save leaves the previous
checkpoint intact; a temporary left by a killed save is deleted by the next save to that path.
Saving to a file object writes straight into it, so it cannot be atomic.

`load` reads only the entries the header refers to, checks that each holds exactly what its
shape and dtype need before reading it, and refuses arrays compressed more than 64-fold and a
header compressed at all, past their first MiB (mg.save compresses nothing): what a hostile file
makes it allocate stays within a small multiple of the file's size. Any malformed file raises
ValueError naming it.
"""

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import zipfile
import zlib

import numpy as np

from .nn.module import Parameter
from .tensor import Tensor

try:
    import fcntl
except ImportError:  # Windows, where a file open in another process cannot be deleted anyway
    fcntl = None

_HEADER = "__minigrad__"
_FORMAT = "minigrad-checkpoint"
_VERSION = 1
_MAX_DEPTH = 100  # containers inside containers; far beyond any state_dict
# How much larger than its compressed bytes an entry may be, past a first MiB that may be
# anything. Parsed JSON takes about 20 times the memory of its text, so the header may not
# expand at all (mg.save compresses nothing; other zip tools reach 64-fold only on very
# repetitive data).
_MAX_EXPANSION = 64
_MAX_HEADER_EXPANSION = 1
_SLACK = 1 << 20


# ----- saving -------------------------------------------------------------------------------------
def _encode(obj, arrays, where, depth=0):
    """The JSON-able description of obj; arrays found in it are appended to `arrays`."""
    # NumPy scalars first: np.float64 is a float and np.str_ a str, but must come back as such.
    if isinstance(obj, np.generic):
        dtype = obj.dtype
        if dtype.itemsize and dtype.fields is None:  # inline, not one .npz entry per number
            return {"kind": "scalar", "dtype": dtype.str, "bytes": obj.tobytes().hex()}
        return {"kind": "scalar", "entry": _add(arrays, np.asarray(obj), where)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj  # JSON keeps these apart: 1, 1.0, true, "1", null
    if isinstance(obj, Tensor):
        kind = "parameter" if isinstance(obj, Parameter) else "tensor"
        return {"kind": kind, "entry": _add(arrays, obj.data, where), "grad": obj.requires_grad}
    if isinstance(obj, np.ndarray):
        return {"kind": "array", "entry": _add(arrays, obj, where)}
    if isinstance(obj, (dict, list, tuple)) and depth >= _MAX_DEPTH:
        raise ValueError(f"save: {where} is nested more than {_MAX_DEPTH} containers deep")
    if isinstance(obj, dict):
        items = []
        for key, value in obj.items():
            if not (key is None or isinstance(key, (bool, int, float, str))):
                raise TypeError(
                    f"save: dict key {key!r} at {where} is a {type(key).__name__}; keys must be "
                    "str, int, float, bool or None"
                )
            key = key.item() if isinstance(key, np.generic) else key  # np.float64 keys
            items.append([key, _encode(value, arrays, f"{where}[{key!r}]", depth + 1)])
        return {"kind": "dict", "items": items}
    if isinstance(obj, (list, tuple)):
        kind = "list" if isinstance(obj, list) else "tuple"
        items = [_encode(v, arrays, f"{where}[{i}]", depth + 1) for i, v in enumerate(obj)]
        return {"kind": kind, "items": items}
    raise TypeError(
        f"save: cannot store an object of type {type(obj).__name__} at {where} (supported: "
        "dicts, lists, tuples, arrays, tensors, numbers, bools, None, strings; for a model, "
        "save model.state_dict())"
    )


def _add(arrays, arr, where):
    if arr.dtype.hasobject:
        raise TypeError(f"save: the array at {where} has dtype object, which needs pickle")
    name = str(len(arrays))
    arrays[name] = arr
    return name


def save(obj, f) -> None:
    """Write obj to f: a path (any file name; no suffix is added), replaced atomically, or a
    binary file object open for writing, written from its current position (not atomic)."""
    arrays = {}
    tree = _encode(obj, arrays, "obj")
    header = json.dumps({"format": _FORMAT, "version": _VERSION, "root": tree})
    arrays[_HEADER] = np.frombuffer(header.encode("utf-8"), dtype=np.uint8)
    if hasattr(f, "write"):
        _write(f, arrays)
        f.flush()
        return
    path = os.fsdecode(os.fspath(f))
    directory = os.path.dirname(os.path.abspath(path))
    prefix = _temporary_prefix(path)
    _remove_abandoned_temporaries(directory, path, prefix)
    try:
        fd, tmp = _create_temporary(directory, prefix)
    except OSError as e:  # name the file asked for, not the temporary
        raise OSError(e.errno, f"save: cannot write {path}: {e.strerror}") from e
    try:
        with os.fdopen(fd, "wb") as file:
            _write(file, arrays)
            file.flush()
            os.fsync(file.fileno())  # the bytes are on disk before the rename makes them visible
            if fcntl is not None:
                os.replace(tmp, path)  # while still locked, so no other save takes it for stale
        if fcntl is None:
            os.replace(tmp, path)  # (Windows renames no file that is open)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_directory(directory)


def _write(f, arrays):
    np.savez(f, **arrays)


def _temporary_prefix(path):
    """The start of the hidden names a save to `path` writes under: the same for every save
    to it, so that the next one finds a temporary a killed save left, and short (a hash of the
    name), so that a file name of the maximal length still leaves room for it."""
    digest = hashlib.sha256(os.fsencode(os.path.basename(path))).hexdigest()[:16]
    return f".minigrad-{digest}-"


def _create_temporary(directory, prefix):
    """A new file named prefix + random + '.tmp', locked for as long as it is open."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f"{prefix}{secrets.token_hex(4)}.tmp")
        # os.open applies the umask, so the checkpoint gets the permissions of any new file.
        fd = os.open(tmp, flags, 0o666)
        if fcntl is None:
            return fd, tmp
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits only while another save checks it: a moment
        try:
            if os.path.samestat(os.fstat(fd), os.stat(tmp)):
                return fd, tmp
        except FileNotFoundError:
            pass
        os.close(fd)  # another save took it for abandoned before the lock: take a new name


def _remove_abandoned_temporaries(directory, path, prefix):
    """Delete the temporaries of saves to `path` that were killed (their lock died with them);
    also those of earlier minigrad versions, named '.<name>.<12 hex digits>.tmp'."""
    old_style = re.compile(re.escape(f".{os.path.basename(path)}.") + r"[0-9a-f]{12}\.tmp")
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if (name.startswith(prefix) and name.endswith(".tmp")) or old_style.fullmatch(name):
            _remove_if_abandoned(os.path.join(directory, name))


def _remove_if_abandoned(tmp):
    if fcntl is None:  # Windows: removing fails while the save writing it has it open
        with contextlib.suppress(OSError):
            os.remove(tmp)
        return
    try:
        fd = os.open(tmp, os.O_RDWR)  # (NFS emulates flock with locks that need write access)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: a save is still writing it
        os.remove(tmp)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_directory(directory):
    """Persist the rename itself (POSIX); not possible, nor needed, everywhere."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----- loading ------------------------------------------------------------------------------------
def load(f):
    """Read an object written by `save` from f: a path or a binary file object open for
    reading. A file that is not a checkpoint, or is truncated, corrupt or malformed in any way,
    raises ValueError naming it."""
    if hasattr(f, "read"):
        name = getattr(f, "name", None)
        label = name if isinstance(name, str) else f"the {type(f).__name__} given"
        if not (hasattr(f, "seekable") and f.seekable()):
            f = io.BytesIO(f.read())  # zip needs to seek (its directory is at the end)
        return _load(f, label)
    path = os.fsdecode(os.fspath(f))
    # The file is opened here, so that it is closed on every error.
    with open(path, "rb") as file:
        return _load(file, path)


# What zipfile, zlib, numpy and json raise on bad bytes (zipfile raises NotImplementedError for
# an unknown compression method, RuntimeError for an encrypted entry, OSError for a seek to a
# bad offset; json RecursionError for deeply nested text).
_MALFORMED = (
    ValueError, KeyError, TypeError, IndexError, AttributeError, EOFError, OSError,
    OverflowError, NotImplementedError, RuntimeError, zipfile.BadZipFile, zlib.error,
)  # fmt: skip


def _load(file, label):
    start = file.tell()
    magic = file.read(6)
    file.seek(start)
    if magic == b"\x93NUMPY":
        raise ValueError(f"load: {label} holds a single .npy array, not a minigrad checkpoint")
    try:
        archive = zipfile.ZipFile(file)
    except _MALFORMED as e:  # text, pickles, empty files and zips cut short all end here
        raise ValueError(
            f"load: {label} is not a minigrad checkpoint, or is truncated ({e})"
        ) from e
    with archive:
        if _HEADER + ".npy" not in archive.NameToInfo:
            raise ValueError(f"load: {label} is a zip or .npz file but not a minigrad checkpoint")
        size = file.seek(0, os.SEEK_END)
        try:
            header = _read_header(archive, size)
            return _decode(header["root"], _EntryReader(archive, size))
        except _MALFORMED as e:
            raise ValueError(
                f"load: {label} is a corrupt or malformed minigrad checkpoint ({e})"
            ) from e


def _read_header(archive, size):
    data = _read_entry(archive, _HEADER, size, _MAX_HEADER_EXPANSION)
    if data.dtype != np.uint8 or data.ndim != 1:
        raise ValueError(f"the header is a {data.dtype} array of shape {data.shape}")
    try:
        header = json.loads(data.tobytes().decode("utf-8"))
    except RecursionError:
        raise ValueError("the header is nested too deeply") from None
    if not isinstance(header, dict) or header.get("format") != _FORMAT:
        raise ValueError("the header lacks the minigrad format tag")
    version = header.get("version")
    if type(version) is not int or version > _VERSION:
        raise ValueError(f"version {version!r} is not one this minigrad reads (<= {_VERSION})")
    if "root" not in header:
        raise ValueError("the header has no root")
    return header


class _EntryReader:
    """Reads an entry when the tree first refers to it (each at most once)."""

    def __init__(self, archive, size):
        self.archive, self.size, self.arrays = archive, size, {}

    def __call__(self, entry):
        if not isinstance(entry, str) or entry == _HEADER:
            raise ValueError(f"bad entry reference {entry!r}")
        if entry not in self.arrays:
            self.arrays[entry] = _read_entry(self.archive, entry, self.size, _MAX_EXPANSION)
        return self.arrays[entry]


def _read_entry(archive, entry, size, max_expansion):
    """The array stored as entry.npy, after checking that the zip's sizes are consistent with
    each other, with the file, and with the array's own declared shape and dtype."""
    name = entry + ".npy"
    info = archive.NameToInfo.get(name)
    if info is None:
        raise ValueError(f"the entry {name} is missing")
    if info.header_offset + info.compress_size > size:
        raise ValueError(f"the entry {name} extends past the end of the file")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise ValueError(f"the entry {name} is stored but its two sizes differ")
    if info.file_size > max_expansion * info.compress_size + _SLACK:
        raise ValueError(
            f"the entry {name} would expand {info.compress_size} bytes to {info.file_size} "
            f"(more than {max_expansion}-fold past its first MiB)"
        )
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(member)
        if dtype.hasobject:
            raise ValueError(f"the entry {name} has dtype object, which needs pickle")
        expected = member.tell() + int(np.prod(shape, dtype=object)) * dtype.itemsize
        if info.file_size != expected:
            raise ValueError(
                f"the entry {name} holds {info.file_size} bytes, but an array of shape {shape} "
                f"and dtype {dtype} needs {expected}"
            )
        member.seek(0)
        return np.lib.format.read_array(member, allow_pickle=False)


def _decode(node, read, depth=0):
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if not isinstance(node, dict):
        raise ValueError(f"unexpected {type(node).__name__} in the tree")
    kind = node.get("kind")
    if kind in ("dict", "list", "tuple"):
        if depth >= _MAX_DEPTH:
            raise ValueError(f"the tree is nested more than {_MAX_DEPTH} containers deep")
        items = node.get("items")
        if not isinstance(items, list):
            raise ValueError(f"a {kind} without a list of items")
        if kind != "dict":
            values = [_decode(v, read, depth + 1) for v in items]
            return values if kind == "list" else tuple(values)
        out = {}
        for item in items:
            if not (isinstance(item, list) and len(item) == 2):
                raise ValueError(f"a dict item {item!r:.40} is not a [key, value] pair")
            key, value = item
            if not (key is None or isinstance(key, (bool, int, float, str))):
                raise ValueError(f"a dict key of type {type(key).__name__}")
            out[key] = _decode(value, read, depth + 1)
        return out
    if kind not in ("array", "scalar", "tensor", "parameter"):
        raise ValueError(f"unknown node kind {kind!r:.40}")
    if kind == "scalar" and "entry" not in node:
        return _inline_scalar(node.get("dtype"), node.get("bytes"))
    arr = read(node.get("entry"))
    if kind == "array":
        return arr
    if kind == "scalar":
        if arr.ndim != 0:
            raise ValueError(f"a scalar stored as an array of shape {arr.shape}")
        return arr[()]
    grad = node.get("grad")
    if not isinstance(grad, bool):
        raise ValueError(f"a {kind} whose 'grad' is {grad!r:.40}, not a bool")
    if kind == "tensor":
        return Tensor(arr, requires_grad=grad)
    return Parameter(Tensor(arr), requires_grad=grad)


def _inline_scalar(dtype, hex_bytes):
    if not (isinstance(dtype, str) and isinstance(hex_bytes, str)):
        raise ValueError("a scalar without a dtype string and a hex string of its bytes")
    dtype, data = np.dtype(dtype), bytes.fromhex(hex_bytes)
    if dtype.hasobject or dtype.fields is not None or len(data) != dtype.itemsize:
        raise ValueError(f"a scalar of dtype {dtype} given as {len(data)} bytes")
    return np.frombuffer(data, dtype)[0]
