"""save/load: bitwise round trips, no pickle, atomic writes, clear errors on bad files."""

import functools
import io
import json
import os
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
import minigrad.serialization as serialization
from minigrad import nn, optim
from minigrad.serialization import load, save

DTYPES = ["float32", "float64", "float16", "int8", "int32", "int64", "uint8", "bool", "complex64"]


def assert_bitwise(a, b):
    assert type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def leftovers(directory):
    return sorted(f for f in os.listdir(directory) if f.endswith(".tmp"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_arrays_round_trip_bitwise(dtype, tmp_path):
    r = np.random.default_rng(0)
    arr = (r.standard_normal((3, 4)) * 100).astype(dtype)
    if arr.dtype.kind == "f":
        arr.flat[:3] = [np.nan, np.inf, -0.0]
    cases = [arr, arr.T, arr[::2, 1:], arr[0, 0].copy(), arr[:0], np.asfortranarray(arr)]
    save(cases, tmp_path / "a.npz")
    for a, b in zip(cases, load(tmp_path / "a.npz"), strict=True):
        assert_bitwise(np.ascontiguousarray(a), np.ascontiguousarray(b))


def test_nested_structure_round_trip(tmp_path):
    obj = {
        "model": nn.Linear(3, 2).state_dict(),
        "tensor": mg.tensor([[1.5, 2.5]], dtype=mg.float64),
        "param": nn.Parameter([1.0, 2.0]),
        "frozen": mg.tensor([1, 2, 3]),
        "scalars": [np.float32(1.25), np.int64(7), np.bool_(True)],
        "meta": {"epoch": 3, "lr": 1e-3, "best": float("inf"), "done": False, "note": None},
        "text": 'héllo\n"quoted"',
        1: ("tuple", [2, (3.0,)]),
        None: [],
        2.5: {},
        "bools": {True: "yes", False: "no"},
    }
    path = tmp_path / "ckpt.bin"
    save(obj, path)
    back = load(str(path))
    assert list(back) == list(obj)
    assert type(back["meta"]["epoch"]) is int and type(back["meta"]["lr"]) is float
    assert back["meta"] == obj["meta"] and back["text"] == obj["text"]
    assert back[1] == ("tuple", [2, (3.0,)]) and back[None] == [] and back[2.5] == {}
    assert [type(k) for k in back["bools"]] == [bool, bool] and back["bools"][True] == "yes"
    for k, v in obj["model"].items():
        assert_bitwise(v, back["model"][k])
    t = back["tensor"]
    assert type(t) is mg.Tensor and t.dtype == np.float64 and not t.requires_grad
    assert isinstance(back["param"], nn.Parameter) and back["param"].requires_grad
    np.testing.assert_array_equal(back["param"].data, [1.0, 2.0])
    assert back["frozen"].dtype == np.int64
    s = back["scalars"]
    assert type(s[0]) is np.float32 and s[0] == 1.25 and type(s[1]) is np.int64
    assert type(s[2]) is np.bool_


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=5),
    st.floats(allow_nan=False),
)  # fmt: skip
arrays = hnp.arrays(
    st.sampled_from([np.float32, np.float64, np.int32, np.bool_]),
    hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3),
)
trees = st.recursive(
    st.one_of(scalars, arrays),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=3), st.integers()), inner, max_size=3),
    ),
    max_leaves=8,
)


def assert_same_tree(a, b):
    assert type(a) is type(b)
    if isinstance(a, np.ndarray):
        assert_bitwise(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same_tree(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_tree(x, y)
    else:
        assert a == b


@given(tree=trees)
def test_any_tree_round_trips(tree, tmp_path_factory):
    path = tmp_path_factory.mktemp("h") / "t.npz"
    save(tree, path)
    assert_same_tree(tree, load(path))


def test_model_and_optimizer_checkpoint(tmp_path):
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    opt = optim.Adam(model.parameters(), lr=0.01)
    model(mg.ones(2, 3)).sum().backward()
    opt.step()
    save({"model": model.state_dict(), "optim": opt.state_dict()}, tmp_path / "c.npz")
    ckpt = load(tmp_path / "c.npz")
    mg.manual_seed(1)
    model2 = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    model2.load_state_dict(ckpt["model"])
    opt2 = optim.Adam(model2.parameters(), lr=0.5)
    opt2.load_state_dict(ckpt["optim"])
    assert opt2.param_groups[0]["betas"] == (0.9, 0.999)  # the tuple survives
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        np.testing.assert_array_equal(p.data, q.data)
        np.testing.assert_array_equal(opt.state[p]["exp_avg"], opt2.state[q]["exp_avg"])


def test_file_contains_no_pickle_and_loads_with_plain_numpy(tmp_path):
    save({"w": np.arange(3.0)}, tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz", allow_pickle=False) as npz:
        assert "__minigrad__" in npz.files
        np.testing.assert_array_equal(npz["0"], [0.0, 1.0, 2.0])


# ----- atomic writes ------------------------------------------------------------------------------
def test_crash_in_the_middle_of_writing_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    save({"version": 1, "w": np.ones(1000)}, path)
    before = path.read_bytes()

    def write_half_then_die(f, arrays):
        f.write(b"PK\x03\x04 partial zip data")
        raise KeyboardInterrupt  # e.g. the user presses Ctrl-C mid-save

    monkeypatch.setattr(serialization, "_write", write_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        save({"version": 2, "w": np.zeros(1000)}, path)
    assert path.read_bytes() == before and load(path)["version"] == 1
    assert leftovers(tmp_path) == []


def test_crash_at_the_rename_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    save({"version": 1}, path)

    def failing_replace(src, dst):
        raise OSError("disk unplugged")

    monkeypatch.setattr(serialization.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk unplugged"):
        save({"version": 2}, path)
    monkeypatch.undo()
    assert load(path)["version"] == 1 and leftovers(tmp_path) == []


def test_unsupported_objects_fail_before_touching_the_file(tmp_path):
    path = tmp_path / "c.npz"
    save({"ok": 1}, path)
    with pytest.raises(TypeError, match=r"set at obj\['a'\]\[1\]"):
        save({"a": [1, {2}]}, path)
    with pytest.raises(TypeError, match="dtype object"):
        save(np.array([None, 1]), path)
    with pytest.raises(TypeError, match="dict key"):
        save({(1, 2): 3}, path)
    assert load(path) == {"ok": 1} and leftovers(tmp_path) == []


# ----- bad files ----------------------------------------------------------------------------------
@pytest.mark.parametrize("cut", [0, 5, 100, 0.5, -20, -1])
def test_truncated_file_raises_value_error_naming_the_path(cut, tmp_path):
    path = tmp_path / "c.npz"
    save({"w": np.arange(1000.0), "m": {"x": np.ones(10)}}, path)
    data = path.read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else cut % len(data) if cut else 0
    path.write_bytes(data[:n])
    with pytest.raises(ValueError, match=f"load: {path}"):
        load(path)


def test_corrupted_byte_is_detected(tmp_path):
    path = tmp_path / "c.npz"
    save({"w": np.arange(1000.0)}, path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        load(path)


def test_foreign_files_raise_value_error(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    npy = tmp_path / "a.npy"
    np.save(npy, np.ones(3))
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.ones(3))
    other_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(other_zip, "w") as z:
        z.writestr("hello.txt", "hi")
    bad_header = tmp_path / "bad_header.npz"
    np.savez(bad_header, __minigrad__=np.frombuffer(b"{not json", np.uint8))
    for path, match in [
        (text, "not a minigrad checkpoint"),
        (npy, "single .npy array"),
        (plain, "not a minigrad checkpoint"),
        (other_zip, "not a minigrad checkpoint"),
        (bad_header, "malformed minigrad checkpoint"),
    ]:
        with pytest.raises(ValueError, match=match) as info:
            load(path)
        assert str(path) in str(info.value)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.npz")


def test_numpy_scalars_come_back_as_the_same_numpy_type(tmp_path):
    scalars = [
        np.float64(1.5), np.float32(1.5), np.float16(-0.0), np.int64(-3), np.uint8(200),
        np.bool_(False), np.complex128(1 + 2j), np.str_("héllo"), np.bytes_(b"\x00ab"),
        np.datetime64("2020-01-02T03:04"), np.float64("nan"), np.str_(""), np.dtype(">i4").type(7),
    ]  # fmt: skip
    save({"s": scalars, "t": tuple(scalars)}, tmp_path / "s.npz")
    back = load(tmp_path / "s.npz")
    for a, b in zip(scalars + scalars, back["s"] + list(back["t"]), strict=True):
        assert type(b) is type(a) and np.asarray(b).dtype == np.asarray(a).dtype
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    assert type(load_roundtrip(tmp_path, {np.float64(2.5): 1})) is dict


def test_numpy_scalars_are_stored_in_the_header(tmp_path):
    losses = [np.float64(i) / 7 for i in range(1000)]  # e.g. a training history
    save(losses, tmp_path / "h.npz")
    assert zipfile.ZipFile(tmp_path / "h.npz").namelist() == ["__minigrad__.npy"]
    assert load(tmp_path / "h.npz") == losses
    path = write_checkpoint(tmp_path / "old.npz", {"kind": "scalar", "entry": "2"}, ENTRY)
    back = load(path)  # a scalar as an entry of its own, as earlier versions wrote them
    assert type(back) is np.float64 and back == 1.0


def load_roundtrip(tmp_path, obj):
    save(obj, tmp_path / "r.npz")
    return load(tmp_path / "r.npz")


# ----- file objects -------------------------------------------------------------------------------
class Stream(io.RawIOBase):
    """A pipe-like binary stream: no seek, no tell."""

    def __init__(self, data=b""):
        self.buffer, self.position = bytearray(data), 0

    def readable(self):
        return True

    def writable(self):
        return True

    def readinto(self, b):
        n = min(len(b), len(self.buffer) - self.position)
        b[:n] = self.buffer[self.position : self.position + n]
        self.position += n
        return n

    def write(self, b):
        self.buffer += b
        return len(b)


def test_save_and_load_with_file_objects(tmp_path):
    obj = {"w": np.arange(6.0).reshape(2, 3), "p": nn.Parameter([1.0]), "n": np.int32(4)}
    buffer = io.BytesIO()
    save(obj, buffer)
    buffer.seek(0)
    assert_same_tree(obj["w"], load(buffer)["w"])
    with open(tmp_path / "c.bin", "wb") as f:
        save(obj, f)
        assert not f.closed  # the caller's file stays the caller's
    with open(tmp_path / "c.bin", "rb") as f:
        back = load(f)
    assert type(back["n"]) is np.int32 and isinstance(back["p"], nn.Parameter)
    assert (tmp_path / "c.bin").read_bytes() == buffer.getvalue()
    stream = Stream()
    save(obj, stream)  # a stream that cannot seek, both ways
    assert_same_tree(obj["w"], load(Stream(bytes(stream.buffer)))["w"])


def test_bad_file_objects_raise_value_error_naming_them(tmp_path):
    with pytest.raises(ValueError, match="load: the BytesIO given is not a minigrad checkpoint"):
        load(io.BytesIO(b"not a zip"))
    (tmp_path / "x.npz").write_bytes(b"PK\x03\x04 cut")
    with open(tmp_path / "x.npz", "rb") as f, pytest.raises(ValueError, match=str(f.name)):
        load(f)


# ----- temporaries --------------------------------------------------------------------------------
def temporary(directory, target, token="0123abcd"):
    return directory / f"{serialization._temporary_prefix(str(directory / target))}{token}.tmp"


def test_temporaries_a_killed_save_left_are_removed_by_the_next(tmp_path):
    stale = temporary(tmp_path, "ckpt.npz")
    old_version = tmp_path / ".ckpt.npz.0123456789ab.tmp"  # what earlier versions named them
    others = [temporary(tmp_path, "other.npz"), tmp_path / ".ckpt.npz.notmine.tmp"]
    for p in [stale, old_version, *others]:
        p.write_bytes(b"PK\x03\x04 half a checkpoint")
    save({"x": 1}, tmp_path / "ckpt.npz")
    assert not stale.exists() and not old_version.exists()
    assert all(p.exists() for p in others)
    assert sorted(os.listdir(tmp_path)) == sorted(["ckpt.npz"] + [p.name for p in others])


def test_a_temporary_another_save_is_writing_is_kept(tmp_path):
    fcntl = pytest.importorskip("fcntl")  # POSIX; elsewhere an open file cannot be deleted
    busy = temporary(tmp_path, "ckpt.npz")
    fd = os.open(busy, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a save in progress
        save({"x": 1}, tmp_path / "ckpt.npz")
        assert busy.exists() and load(tmp_path / "ckpt.npz") == {"x": 1}
    finally:
        os.close(fd)


def test_saving_into_a_missing_directory_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"save: cannot write {tmp_path}/no/c.npz"):
        save({}, tmp_path / "no" / "c.npz")


def test_a_file_name_of_the_maximal_length_saves(tmp_path):
    name = "c" * (os.pathconf(tmp_path, "PC_NAME_MAX") if hasattr(os, "pathconf") else 255)
    save({"w": np.ones(2)}, tmp_path / name)
    np.testing.assert_array_equal(load(tmp_path / name)["w"], [1.0, 1.0])
    assert os.listdir(tmp_path) == [name]


def test_too_deep_an_object_is_refused_by_save(tmp_path):
    obj = 1
    for _ in range(101):
        obj = [obj]
    with pytest.raises(ValueError, match="save: obj.* nested more than 100 containers deep"):
        save(obj, tmp_path / "deep.npz")
    assert not os.listdir(tmp_path)
    save(obj[0], tmp_path / "ok.npz")  # 100 levels: fine
    assert load(tmp_path / "ok.npz") == obj[0]


# ----- malformed files ----------------------------------------------------------------------------
def write_checkpoint(path, root, members=None, header=None):
    """A checkpoint whose header and entries are whatever the test says."""
    if header is None:
        header = json.dumps({"format": "minigrad-checkpoint", "version": 1, "root": root})
    if isinstance(header, str):
        header = np.frombuffer(header.encode(), np.uint8)
    np.savez(path, __minigrad__=header, **(members or {}))
    return path


def nested(depth, leaf=1):
    for _ in range(depth):
        leaf = {"kind": "list", "items": [leaf]}
    return leaf


ENTRY = {"0": np.arange(3.0), "1": np.arange(3), "2": np.float64(1.0)}
MALFORMED = {
    "JSON nested 100,000 deep": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "tree nested 101 deep": (nested(101), "nested more than 100"),
    "header not an object": ("[1, 2]", "format tag"),
    "wrong format tag": ({"format": "other", "version": 1, "root": 1}, "format tag"),
    "version a string": ({"format": "minigrad-checkpoint", "version": "1", "root": 1}, "'1'"),
    "version from the future": ({"format": "minigrad-checkpoint", "version": 9}, "version 9"),
    "no root": ({"format": "minigrad-checkpoint", "version": 1}, "no root"),
    "a bare list in the tree": ([1, 2], "unexpected list"),
    "unknown kind": ({"kind": "set", "items": []}, "unknown node kind 'set'"),
    "items not a list": ({"kind": "list", "items": 5}, "list of items"),
    "dict item not a pair": ({"kind": "dict", "items": [[1]]}, "pair"),
    "dict key a list": ({"kind": "dict", "items": [[[1], 2]]}, "dict key of type list"),
    "entry a number": ({"kind": "array", "entry": 0}, "bad entry reference 0"),
    "entry missing": ({"kind": "array", "entry": "7"}, "entry 7.npy is missing"),
    "entry the header": ({"kind": "array", "entry": "__minigrad__"}, "bad entry"),
    "grad not a bool": ({"kind": "tensor", "entry": "0", "grad": "yes"}, "not a bool"),
    "integer tensor needing grad": ({"kind": "tensor", "entry": "1", "grad": True}, "floating"),
    "scalar not 0-d": ({"kind": "scalar", "entry": "0"}, "shape"),
    "scalar without bytes": ({"kind": "scalar", "dtype": "<f8"}, "hex string"),
    "scalar of the wrong size": ({"kind": "scalar", "dtype": "<f8", "bytes": "00"}, "1 bytes"),
    "scalar of dtype object": ({"kind": "scalar", "dtype": "|O", "bytes": "00" * 8}, r"'\|O'"),
    "scalar of no dtype": ({"kind": "scalar", "dtype": "nonsense", "bytes": ""}, "nonsense"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_header_raises_value_error_naming_the_file(case, tmp_path):
    content, match = MALFORMED[case]
    if isinstance(content, str):
        path = write_checkpoint(tmp_path / "m.npz", None, ENTRY, header=content)
    elif isinstance(content, dict) and "format" in content:
        path = write_checkpoint(tmp_path / "m.npz", None, ENTRY, header=json.dumps(content))
    else:
        path = write_checkpoint(tmp_path / "m.npz", content, ENTRY)
    with pytest.raises(ValueError, match=match) as info:
        load(path)
    assert str(info.value).startswith(f"load: {path} is a corrupt or malformed")


def test_malformed_entries_raise_value_error(tmp_path):
    as_entry = {"kind": "array", "entry": "0"}
    cases = [
        (np.array([None, 1], dtype=object), r"dtype '\|O'"),  # a pickle inside the .npz
    ]
    for member, match in cases:
        path = write_checkpoint(tmp_path / "e.npz", as_entry, {"0": member})
        with pytest.raises(ValueError, match=match):
            load(path)
    path = write_checkpoint(tmp_path / "h.npz", None, header=np.zeros(3))
    with pytest.raises(ValueError, match="header is a float64 array"):
        load(path)


def test_an_entry_longer_than_its_shape_is_refused_before_reading(tmp_path):
    path = tmp_path / "long.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("__minigrad__.npy", npy_bytes(header_array({"kind": "array", "entry": "0"})))
        z.writestr("0.npy", npy_bytes(np.arange(10.0)) + bytes(8000))
    with pytest.raises(ValueError, match=r"holds 8208 bytes, but an array of shape \(10,\)"):
        load(path)


def header_array(root):
    text = json.dumps({"format": "minigrad-checkpoint", "version": 1, "root": root})
    return np.frombuffer(text.encode(), np.uint8)


def npy_bytes(arr):
    f = io.BytesIO()
    np.save(f, arr)
    return f.getvalue()


def write_zeros_entry(z, name, nbytes, declared=None):
    """A deflated .npy entry of `nbytes` zero bytes (about 1000 times smaller compressed)."""
    with z.open(name, "w", force_zip64=True) as f:
        header = {"descr": "<f8", "fortran_order": False, "shape": (declared or nbytes // 8,)}
        np.lib.format.write_array_header_1_0(f, header)
        chunk = bytes(1 << 20)
        for _ in range(nbytes >> 20):
            f.write(chunk)


def peak_memory_of(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_entries_the_header_does_not_name_are_never_read(tmp_path, monkeypatch):
    path = tmp_path / "bomb.npz"
    save({"w": np.ones(3)}, path)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z:
        write_zeros_entry(z, "1.npy", 200 << 20)  # 200 MiB in about 200 KiB
    assert path.stat().st_size < 1 << 20
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(
        zipfile.ZipFile, "open", lambda self, name, *a, **k: opened.append(name) or real_open(
            self, name, *a, **k)
    )  # fmt: skip
    result = []
    peak = peak_memory_of(lambda: result.append(load(path)))
    np.testing.assert_array_equal(result[0]["w"], np.ones(3))
    assert [getattr(n, "filename", n) for n in opened] == ["__minigrad__.npy", "0.npy"]
    assert peak < 4 << 20


def test_an_entry_expanding_too_much_is_refused_before_reading(tmp_path):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("__minigrad__.npy", npy_bytes(header_array({"kind": "array", "entry": "0"})))
        write_zeros_entry(z, "0.npy", 200 << 20)  # consistent with its shape, but a bomb
    peak = peak_memory_of(lambda: refused(path, "more than 64-fold"))
    assert peak < 4 << 20


def test_a_compressed_header_expanding_past_its_first_mib_is_refused(tmp_path):
    path = tmp_path / "header_bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("__minigrad__.npy", npy_bytes(header_array("x" * (3 << 20))))
    refused(path, "more than 1-fold past its first MiB")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("__minigrad__.npy", npy_bytes(header_array("x" * (1 << 19))))
    assert load(path) == "x" * (1 << 19)  # a small one may be compressed


def refused(path, match):
    with pytest.raises(ValueError, match=match) as info:
        load(path)
    assert str(path) in str(info.value)


def test_zip_sizes_past_the_end_of_the_file_are_refused(tmp_path):
    path = tmp_path / "lies.npz"
    save({"w": np.ones(3)}, path)
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")
    while data[entry + 46 : entry + 51] != b"0.npy":  # the central directory's record of it
        entry = data.index(b"PK\x01\x02", entry + 4)
    data[entry + 20 : entry + 28] = struct.pack("<II", 2**31, 2**31)  # compressed, full size
    path.write_bytes(bytes(data))
    peak = peak_memory_of(lambda: refused(path, "past the end of the file"))
    assert peak < 4 << 20


@functools.cache
def valid_checkpoint(directory):
    path = directory / "valid.npz"
    save(
        {"w": np.arange(4.0), "m": {"s": np.float32(2), "t": (1, "x")}, "p": nn.Parameter([1.0])},
        path,
    )
    return path.read_bytes()


@settings(max_examples=300)
@given(data=st.data())
def test_damaged_checkpoints_load_or_raise_value_error(data, tmp_path_factory):
    damaged = bytearray(valid_checkpoint(tmp_path_factory.getbasetemp()))
    for _ in range(data.draw(st.integers(1, 4))):
        how = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = data.draw(st.integers(0, max(len(damaged) - 1, 0)))
        if how == "flip" and damaged:
            damaged[at] ^= data.draw(st.integers(1, 255))
        elif how == "cut":
            del damaged[at:]
        elif how == "insert":
            damaged[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del damaged[at : at + data.draw(st.integers(1, 64))]
    path = tmp_path_factory.mktemp("d") / "c.npz"
    path.write_bytes(bytes(damaged))
    try:
        load(path)
    except ValueError as e:
        assert str(e).startswith(f"load: {path} ")


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(), st.text(max_size=3),
              st.sampled_from(["0", "1", "2", "9", "__minigrad__", "kind", "<f8", "|O", "<U1",
                              "0000803f", "00" * 8])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["kind", "items", "entry", "x"]), inner, max_size=4),
        st.fixed_dictionaries(
            {"kind": st.sampled_from(["dict", "list", "tuple", "array", "scalar", "tensor",
                                      "parameter", "other"])},
            optional={"items": inner, "entry": inner, "grad": inner, "dtype": inner,
                      "bytes": inner},
        ),
    ),
    max_leaves=12,
)  # fmt: skip


@given(root=json_values)
def test_any_header_loads_or_raises_value_error(root, tmp_path_factory):
    path = write_checkpoint(tmp_path_factory.mktemp("j") / "c.npz", root, ENTRY)
    try:
        load(path)
    except ValueError as e:
        assert str(e).startswith(f"load: {path} is a corrupt or malformed")
