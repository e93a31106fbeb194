"""`save(obj, path)` / `load(path)`: checkpoints as .npz files, with no pickle anywhere.

An object is a tree of dicts, lists and tuples whose leaves are arrays, tensors, NumPy scalars,
Python numbers, bools, None and strings (a state_dict, an optimizer's state_dict, training
metadata). Each array becomes one .npz entry; the tree, with each array replaced by a reference
to its entry, is one JSON document stored as a byte array in the entry `__minigrad__`. Loading
uses `allow_pickle=False`, so a checkpoint can never execute code.

Tensors come back as Tensors (with requires_grad as saved; nn.Parameters as Parameters),
arrays as arrays, NumPy scalars as NumPy scalars, every dtype and bit exactly preserved. dicts
keep their order and their keys' types (str, int, float, bool, None); an OrderedDict comes back
as a plain dict.

Writes are atomic: the file is written under a temporary name in the same directory, flushed
and fsynced, and only then renamed onto `path` (os.replace is atomic), so a crash during a save
leaves the previous checkpoint intact.
"""

import json
import os
import secrets
import zipfile

import numpy as np

from .nn.module import Parameter
from .tensor import Tensor

_HEADER = "__minigrad__"
_FORMAT = "minigrad-checkpoint"
_VERSION = 1


def _encode(obj, arrays, where):
    """The JSON-able description of obj; arrays found in it are appended to `arrays`."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj  # JSON keeps these apart: 1, 1.0, true, "1", null
    if isinstance(obj, Tensor):
        kind = "parameter" if isinstance(obj, Parameter) else "tensor"
        return {"kind": kind, "entry": _add(arrays, obj.data, where), "grad": obj.requires_grad}
    if isinstance(obj, np.ndarray):
        return {"kind": "array", "entry": _add(arrays, obj, where)}
    if isinstance(obj, np.generic):
        return {"kind": "scalar", "entry": _add(arrays, np.asarray(obj), where)}
    if isinstance(obj, dict):
        items = []
        for key, value in obj.items():
            if not (key is None or isinstance(key, (bool, int, float, str))):
                raise TypeError(
                    f"save: dict key {key!r} at {where} is a {type(key).__name__}; keys must be "
                    "str, int, float, bool or None"
                )
            items.append([key, _encode(value, arrays, f"{where}[{key!r}]")])
        return {"kind": "dict", "items": items}
    if isinstance(obj, (list, tuple)):
        kind = "list" if isinstance(obj, list) else "tuple"
        items = [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]
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


def save(obj, path) -> None:
    """Write obj to path (any file name; no suffix is added) atomically."""
    arrays = {}
    tree = _encode(obj, arrays, "obj")
    header = json.dumps({"format": _FORMAT, "version": _VERSION, "root": tree})
    arrays[_HEADER] = np.frombuffer(header.encode("utf-8"), dtype=np.uint8)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    # A fresh, hidden name beside the target (a rename is only atomic within one file system);
    # os.open applies the umask, so the checkpoint gets the permissions of any new file.
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            _write(f, arrays)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them visible
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_directory(directory)


def _write(f, arrays):
    np.savez(f, **arrays)


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


def load(path):
    """Read an object written by `save`. A file that is not one, or is truncated or corrupt,
    raises ValueError naming the path."""
    path = os.fspath(path)
    # The file is opened here, not by np.load, which leaks its handle when a zip is corrupt.
    with open(path, "rb") as f:
        try:
            npz = np.load(f, allow_pickle=False)
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
            # Text, pickles, empty files and zips cut short all end here.
            raise ValueError(
                f"load: {path} is not a minigrad checkpoint, or is truncated ({e})"
            ) from e
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError(f"load: {path} holds a single .npy array, not a minigrad checkpoint")
        with npz:
            if _HEADER not in npz.files:
                raise ValueError(f"load: {path} is an .npz file but not a minigrad checkpoint")
            try:
                arrays = {name: npz[name] for name in npz.files}
            except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
                raise ValueError(f"load: {path} is truncated or corrupt ({e})") from e
    try:
        header = json.loads(arrays.pop(_HEADER).tobytes().decode("utf-8"))
        if header.get("format") != _FORMAT:
            raise ValueError("wrong format tag")
        if header.get("version", 0) > _VERSION:
            raise ValueError(f"version {header['version']} is newer than this minigrad reads")
        return _decode(header["root"], arrays)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"load: {path} has a malformed minigrad header ({e})") from e


def _decode(node, arrays):
    if not isinstance(node, dict):
        return node
    kind = node["kind"]
    if kind == "dict":
        return {key: _decode(value, arrays) for key, value in node["items"]}
    if kind in ("list", "tuple"):
        items = [_decode(v, arrays) for v in node["items"]]
        return items if kind == "list" else tuple(items)
    arr = arrays[node["entry"]]
    if kind == "array":
        return arr
    if kind == "scalar":
        return arr[()]
    if kind == "tensor":
        return Tensor(arr, requires_grad=node["grad"])
    if kind == "parameter":
        return Parameter(Tensor(arr), requires_grad=node["grad"])
    raise ValueError(f"unknown node kind {kind!r}")
