"""save/load: bitwise round trips, no pickle, atomic writes, clear errors on bad files."""

import os
import zipfile

import numpy as np
import pytest
from hypothesis import given
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
        (bad_header, "malformed minigrad header"),
    ]:
        with pytest.raises(ValueError, match=match) as info:
            load(path)
        assert str(path) in str(info.value)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.npz")
