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
shape and dtype need before reading it, accepts only the dtypes `save` writes (checked before
NumPy parses them), and refuses arrays compressed more than 64-fold and a header compressed at
all, past their first MiB (mg.save compresses nothing). It counts what the whole load allocates
(the entries' bytes and array objects, the zip's directory, the Python objects of the JSON
description, the tensors' copies) before allocating it, and refuses a file that would take it
past 64 times the file's size plus 1 MiB, however many entries share that. Any malformed file
raises ValueError naming it.
"""

import ast
import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import struct
import zipfile

import numpy as np

from . import dtypes
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
# The whole load may allocate at most _MAX_EXPANSION times the file's size plus _SLACK, counted
# before each allocation with these costs (measured with tracemalloc on CPython 3.11):
_ENTRY_COST = 512  # a zip directory record (490 B), a tiny array and its dtype, a tensor (360 B)
_TOKEN_COST = 96  # json's and _decode's objects per [ { , : of the JSON text (at most 82 B)


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
        return {"kind": kind, "entry": _add(arrays, obj._data, where), "grad": obj.requires_grad}
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
def load(f, weights_only=None):
    """Read an object written by `save` from f: a path or a binary file object open for
    reading. A file that is not a checkpoint, or is truncated, corrupt or malformed in any way,
    raises ValueError naming it. `weights_only=` is accepted for PyTorch's calls and changes
    nothing: minigrad never unpickles, so a file can only ever hold tensors, numbers, strings
    and containers of them (True and False mean the same)."""
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


@contextlib.contextmanager
def _malformed(message):
    """ValueError(message) for whatever parsing the file raises (zipfile, zlib, ast, json and
    NumPy raise a dozen types), but MemoryError: the machine's fault, not the file's."""
    try:
        yield
    except MemoryError:
        raise
    except Exception as e:
        raise ValueError(f"{message} ({e})") from e


def _load(file, label):
    start = file.tell()
    magic = file.read(6)
    file.seek(start)
    if magic == b"\x93NUMPY":
        raise ValueError(f"load: {label} holds a single .npy array, not a minigrad checkpoint")
    # Text, pickles, empty files and zips cut short all end here.
    with _malformed(f"load: {label} is not a minigrad checkpoint, or is truncated"):
        archive = zipfile.ZipFile(file)
    with archive:
        if _HEADER + ".npy" not in archive.NameToInfo:
            raise ValueError(f"load: {label} is a zip or .npz file but not a minigrad checkpoint")
        with _malformed(f"load: {label} is a corrupt or malformed minigrad checkpoint"):
            reader = _Reader(archive, file.seek(0, os.SEEK_END))
            header = _read_header(reader)
            return _decode(header["root"], reader)


def _read_header(reader):
    data = reader.read(_HEADER, _MAX_HEADER_EXPANSION)
    if data.dtype != np.uint8 or data.ndim != 1:
        raise ValueError(f"the header is a {data.dtype} array of shape {data.shape}")
    # Its text as a str: 1 byte a character if ASCII (as save writes it), else up to 4.
    reader.charge((1 if data.max(initial=0) < 0x80 else 4) * data.size, "the header's text")
    text = str(data, "utf-8")
    reader.left += data.size  # the array, freed here
    del data
    reader.charge(_parsed_size(text), "the header's JSON")
    try:
        header = json.loads(text)
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


def _parsed_size(text):
    """At least what json.loads(text) and _decode allocate: measured (tracemalloc, CPython 3.11)
    at most 82 bytes per [ { , : (an empty dict, a dict item, a pointer), plus the strings'
    characters: 1 byte each in ASCII text without escapes, up to 5 with them."""
    plain = text.isascii() and "\\" not in text
    return _TOKEN_COST * sum(map(text.count, "[{,:")) + (1 if plain else 6) * len(text)


class _Reader:
    """Reads an entry when the tree first refers to it (each at most once), and keeps the
    running total of what the load allocates, charging each allocation before it is made."""

    def __init__(self, archive, size):
        self.archive, self.size, self.arrays = archive, size, {}
        self.left = _MAX_EXPANSION * size + _SLACK
        # zipfile has already built one object for each entry of the directory: count them.
        self.charge(_ENTRY_COST * len(archive.filelist), "the zip's directory")

    def charge(self, nbytes, what):
        self.left -= nbytes
        if self.left < 0:
            raise ValueError(
                f"{what} would take loading past {_MAX_EXPANSION} times the file's "
                f"{self.size} bytes plus 1 MiB"
            )

    def __call__(self, entry):
        if not isinstance(entry, str) or entry == _HEADER:
            raise ValueError(f"bad entry reference {entry!r}")
        if entry not in self.arrays:
            self.arrays[entry] = self.read(entry, _MAX_EXPANSION)
        return self.arrays[entry]

    def read(self, entry, max_expansion):
        """The array stored as entry.npy, after checking that the zip's sizes are consistent
        with each other, with the file, and with the array's own declared shape and dtype."""
        name = entry + ".npy"
        info = self.archive.NameToInfo.get(name)
        if info is None:
            raise ValueError(f"the entry {name} is missing")
        if info.header_offset + info.compress_size > self.size:
            raise ValueError(f"the entry {name} extends past the end of the file")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise ValueError(f"the entry {name} is stored but its two sizes differ")
        if info.file_size > max_expansion * info.compress_size + _SLACK:
            raise ValueError(
                f"the entry {name} would expand {info.compress_size} bytes to {info.file_size} "
                f"(more than {max_expansion}-fold past its first MiB)"
            )
        self.charge(info.file_size + _ENTRY_COST, f"the entry {name}")
        with self.archive.open(info) as member:
            shape, dtype, header_length = _npy_header(member, name)
            if header_length:  # a structured dtype's objects: up to 36 bytes a character
                self.charge(40 * header_length, f"the dtype of {name}")
            expected = member.tell() + int(np.prod(shape, dtype=object)) * dtype.itemsize
            if info.file_size != expected:
                raise ValueError(
                    f"the entry {name} holds {info.file_size} bytes, but an array of shape "
                    f"{shape} and dtype {dtype} needs {expected}"
                )
            # numpy reads through a buffer of 256 KiB or one item, which zipfile builds piece
            # by piece (up to 3 times its size): past 256 KiB, counted until read.
            buffer = 3 * max(min(dtype.itemsize, info.file_size) - (1 << 18), 0)
            self.charge(buffer, f"reading the entry {name}")
            member.seek(0)
            arr = np.lib.format.read_array(member, allow_pickle=False)
            self.left += buffer
            return arr


# The dtype strings save writes (dtype.str of every dtype but object ones); NumPy parses others
# as expressions (with ast: "01" raises SyntaxError) or as lists of fields.
_DTYPE = re.compile(
    r"[<>|](b1|[iu][1248]|f(2|4|8|12|16)|c(8|16|24|32)|[SUV](0|[1-9]\d{0,9})"
    r"|[mM]8(\[([1-9]\d{0,9})?([YMWDhms]|[munpfa]s|generic)\])?)"
)
_NPY_VERSIONS = {(1, 0): ("<H", "latin1"), (2, 0): ("<I", "latin1"), (3, 0): ("<I", "utf8")}
_NPY_MAX_HEADER = 10_000  # numpy's own limit without allow_pickle
# A .npy header is a dict of strings, ints, tuples, lists and bools; anything else (unary
# minus signs by the thousand make ast's parser raise MemoryError) is refused unparsed.
_PY_STRING = re.compile(r"'(?:[^'\\\n]|\\.)*'" r'|"(?:[^"\\\n]|\\.)*"')
_NPY_SKELETON = re.compile(r"(?:[\s{}\[\](),:0-9']|True|False)*")


def _npy_header(member, name):
    """The shape and dtype of a .npy entry, and its header's length if the dtype is structured
    (else 0): the header is read and checked here, before NumPy parses any of it."""
    magic = member.read(8)
    length_format, encoding = _NPY_VERSIONS.get(tuple(magic[6:]), (None, None))
    if magic[:6] != b"\x93NUMPY" or length_format is None:
        raise ValueError(f"the entry {name} is not a .npy array")
    (length,) = struct.unpack(length_format, member.read(struct.calcsize(length_format)))
    text, header = member.read(min(length, _NPY_MAX_HEADER + 1)).decode(encoding), None
    if len(text) <= _NPY_MAX_HEADER and _NPY_SKELETON.fullmatch(_PY_STRING.sub("''", text)):
        with contextlib.suppress(SyntaxError, ValueError):  # (literals only: evaluates no code)
            header = ast.literal_eval(text)
    keys = header.keys() if isinstance(header, dict) else ()
    if keys != {"descr", "fortran_order", "shape"} or not (
        _is_shape(header["shape"]) and isinstance(header["fortran_order"], bool)
    ):
        raise ValueError(f"the entry {name} has a malformed .npy header {text!r:.80}")
    descr = header["descr"]
    if not _is_descr(descr):
        raise ValueError(f"the entry {name} has dtype {descr!r:.60}, which save never writes")
    return header["shape"], np.lib.format.descr_to_dtype(descr), isinstance(descr, list) * length


def _is_shape(shape):
    return isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)


def _is_descr(descr, depth=0):
    """Whether descr is a dtype string save writes, or a structured dtype as .npy headers give
    it: a list of (name or (title, name), descr[, shape]) fields."""
    if isinstance(descr, str):
        return _DTYPE.fullmatch(descr) is not None
    return isinstance(descr, list) and 0 < len(descr) and depth < 32 and all(
        isinstance(f, tuple) and len(f) in (2, 3) and _is_descr(f[1], depth + 1)
        and all(isinstance(n, str) for n in (f[0] if _is_pair(f[0]) else [f[0]]))
        and (len(f) == 2 or _is_shape(f[2]))
        for f in descr
    )  # fmt: skip


def _is_pair(name):  # a field's (title, name)
    return isinstance(name, tuple) and len(name) == 2


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
        return arr  # the same object however often the tree refers to it: nothing allocated
    if kind == "scalar":
        if arr.ndim != 0:
            raise ValueError(f"a scalar stored as an array of shape {arr.shape}")
        read.charge(arr.nbytes + _ENTRY_COST, "a scalar")  # a copy for each reference
        return arr[()]
    grad = node.get("grad")
    if not isinstance(grad, bool):
        raise ValueError(f"a {kind} whose 'grad' is {grad!r:.40}, not a bool")
    # Tensor() would convert other dtypes (int8 to int64: 8 times the bytes); save writes none.
    if arr.dtype.newbyteorder("=") not in dtypes._SUPPORTED:
        raise ValueError(f"a {kind} of dtype {arr.dtype}, which tensors do not have")
    # Tensor() copies the array, Parameter(Tensor()) three times, for each reference to it.
    read.charge((1 if kind == "tensor" else 3) * arr.nbytes + _ENTRY_COST, f"a {kind}")
    if kind == "tensor":
        return Tensor(arr, requires_grad=grad)
    return Parameter(Tensor(arr), requires_grad=grad)


def _inline_scalar(dtype, hex_bytes):
    if not (isinstance(dtype, str) and isinstance(hex_bytes, str)):
        raise ValueError("a scalar without a dtype string and a hex string of its bytes")
    if not _DTYPE.fullmatch(dtype):
        raise ValueError(f"a scalar of dtype {dtype!r:.40}, which save never writes")
    dtype, data = np.dtype(dtype), bytes.fromhex(hex_bytes)
    if len(data) != dtype.itemsize:
        raise ValueError(f"a scalar of dtype {dtype} given as {len(data)} bytes")
    return np.frombuffer(data, dtype)[0]
