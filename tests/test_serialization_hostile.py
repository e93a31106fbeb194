"""mg.load on hostile checkpoints: whatever a file holds, loading it allocates at most 64 times
its size plus 1 MiB, counted over the whole load and not only entry by entry, and raises nothing
but ValueError naming the file. The files are written member by member with zipfile, as an
attacker would; legitimate checkpoints of many small entries must still load."""

import io
import json
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_serialization import peak_memory_of

import minigrad as mg
import minigrad.serialization as serialization
from minigrad import nn, optim
from minigrad.serialization import load, save

MIB = 1 << 20


def budget(path):
    """What loading `path` may allocate: 64 times its size plus 1 MiB."""
    return 64 * path.stat().st_size + MIB


def npy_bytes(arr):
    f = io.BytesIO()
    np.save(f, arr)
    return f.getvalue()


ONE_MIB_OF_ZEROS = npy_bytes(np.zeros(MIB // 8 - 16))  # with its 128-byte header; 1 KiB deflated


def npy_with_header(text, data=b""):
    """A version 1.0 .npy file whose header is `text`, whatever it says."""
    raw = text.encode("latin1")
    return b"\x93NUMPY\x01\x00" + len(raw).to_bytes(2, "little") + raw + data


def npy_header(descr, shape="(1,)"):
    return f"{{'descr': {descr}, 'fortran_order': False, 'shape': {shape}, }}"


def write(path, root, entries=(), compress_header=False):
    """A checkpoint of the tree `root` and the entries given as (name, bytes, deflated)."""
    text = json.dumps({"format": "minigrad-checkpoint", "version": 1, "root": root})
    header = npy_bytes(np.frombuffer(text.encode(), np.uint8))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(
            "__minigrad__.npy",
            header,
            zipfile.ZIP_DEFLATED if compress_header else zipfile.ZIP_STORED,
        )
        for name, data, deflated in entries:
            z.writestr(name, data, zipfile.ZIP_DEFLATED if deflated else zipfile.ZIP_STORED)
    return path


def refused(path, match):
    with pytest.raises(ValueError, match=match) as info:
        load(path)
    assert str(info.value).startswith(f"load: {path} ")


def items(nodes):
    return {"kind": "list", "items": nodes}


# ----- the whole load within 64 times the file's size plus 1 MiB ---------------------------------
def test_many_entries_each_within_its_allowance_cannot_add_up_past_the_budget(tmp_path):
    # Each entry expands 1 KiB to 1 MiB, within "64-fold past its first MiB"; 100 of them made
    # load allocate 100 MiB from a 120 KiB file (at 400 entries, 847 times a 486 KiB file).
    entries = [(f"{i}.npy", ONE_MIB_OF_ZEROS, True) for i in range(100)]
    nodes = [{"kind": "array", "entry": str(i)} for i in range(100)]
    path = write(tmp_path / "many.npz", items(nodes), entries)
    assert path.stat().st_size < 150 << 10
    peak = peak_memory_of(lambda: refused(path, "past 64 times the file's"))
    assert peak < budget(path) + MIB
    one = write(tmp_path / "one.npz", nodes[0], entries[:1])  # one alone is within it
    assert load(one).nbytes == MIB - 128


def test_a_compressed_header_of_many_small_objects_is_refused_before_parsing(tmp_path):
    # 380 KiB of JSON, deflated to 1 KiB: json.loads and the tree would make 4 MiB of objects.
    path = write(tmp_path / "objects.npz", items([items([])] * 12_000), compress_header=True)
    assert path.stat().st_size < 4 << 10
    peak = peak_memory_of(lambda: refused(path, "the header's JSON would take"))
    assert peak < budget(path) + MIB
    # At 940 KiB, even its text is past the budget.
    path = write(tmp_path / "text.npz", items([items([])] * 30_000), compress_header=True)
    peak = peak_memory_of(lambda: refused(path, "the header's text would take"))
    assert peak < budget(path) + MIB


@pytest.mark.parametrize("kind", ["tensor", "parameter", "scalar"])
def test_each_reference_to_an_entry_is_charged_its_copy(kind, tmp_path):
    # Tensor() copies its array (Parameter(Tensor()) three times) and a scalar its bytes, for
    # each node that names the entry: 1 MiB (a scalar's 256 KiB), deflated, named 100 times.
    data = npy_bytes(np.zeros((), f"V{1 << 18}")) if kind == "scalar" else ONE_MIB_OF_ZEROS
    node = {"kind": kind, "entry": "0", "grad": False}
    path = write(tmp_path / "refs.npz", items([node] * 100), [("0.npy", data, True)])
    peak = peak_memory_of(lambda: refused(path, f"a {kind} would take"))
    assert peak < budget(path) + MIB


def test_a_tensor_of_a_dtype_tensors_lack_is_refused(tmp_path):
    # Tensor() would turn the int8 into int64, 8 times the bytes; save writes no such tensor.
    entry = ("0.npy", npy_bytes(np.zeros(10, np.int8)), False)
    path = write(tmp_path / "i8.npz", {"kind": "tensor", "entry": "0", "grad": False}, [entry])
    refused(path, "a tensor of dtype int8, which tensors do not have")


# ----- nothing but ValueError: dtype strings and .npy headers checked before NumPy parses them ---
BAD_DTYPES = [
    "01", "(2)i4", "i4,", "f8,O", "|O", "O", "f8", "<f8 ", "<f8\n", "<i3", "<M8[01s]", "V1,V1",
    "[('a', '<f8')]", "<U-1", "", "<f8," + "(1)" * 200,
]  # fmt: skip


@pytest.mark.parametrize("dtype", BAD_DTYPES)
def test_a_scalar_of_a_dtype_save_never_writes_raises_value_error(dtype, tmp_path):
    path = write(tmp_path / "s.npz", {"kind": "scalar", "dtype": dtype, "bytes": "00" * 8})
    refused(path, "which save never writes")


BAD_NPY_HEADERS = {
    "dtype 01": npy_header("'01'"),  # NumPy raised SyntaxError
    "dtype (2)i4": npy_header("'(2)i4'"),  # a DeprecationWarning, then a structured dtype
    "dtype i4,": npy_header("'i4,'"),
    "dtype object": npy_header("'|O'"),
    "a field of dtype object": npy_header("[('a', '|O')]"),
    "a field of dtype 01": npy_header("[('a', '01')]"),
    "a field's name an int": npy_header("[(1, '<f8')]"),
    "a field's shape negative": npy_header("[('a', '<f8', (-1,))]"),
    "fields nested 40 deep": npy_header("[('a', " * 40 + "'<f8'" + ")]" * 40),
    "no fields": npy_header("[]"),
    "9000 minus signs": "-" * 9000 + "1",  # ast's parser raised MemoryError
    "a sum of 3000 terms": "1" + "+1" * 3000,  # RecursionError
    "a call": "__import__('os').getcwd()",
    "a bytes literal": npy_header("b'<f8'"),
    "negative shape": npy_header("'<f8'", "(-1, -1)"),
    "a bool in the shape": npy_header("'<f8'", "(True,)"),
    "not a dict": "[1, 2]",
    "an extra key": npy_header("'<f8'")[:-1] + "'x': 1}",
    "too long": npy_header("'<f8'") + " " * 10_000,
    "unterminated": "{'descr': '<f8",
    "a null byte": npy_header("'<f8\x00'"),
    "nested 300 deep": "(" * 300 + ")" * 300,
}


@pytest.mark.parametrize("case", BAD_NPY_HEADERS)
def test_a_malformed_npy_header_raises_value_error(case, tmp_path):
    entry = ("0.npy", npy_with_header(BAD_NPY_HEADERS[case], bytes(8)), False)
    path = write(tmp_path / "h.npz", {"kind": "array", "entry": "0"}, [entry])
    refused(path, r"the entry 0\.npy")


dtype_strings = st.text(alphabet="<>|=,()[]' 0123456789bifucSUVMmO", max_size=12)


@settings(max_examples=200)
@given(dtype=dtype_strings, header=st.text(alphabet="{}[](),:'\"-+ 0123456789<f8Tru", max_size=40))
def test_any_dtype_string_or_npy_header_loads_or_raises_value_error(
    dtype, header, tmp_path_factory
):
    directory = tmp_path_factory.mktemp("d")
    scalar = {"kind": "scalar", "dtype": dtype, "bytes": "00" * 8}
    entries = [
        ("0.npy", npy_with_header(npy_header(repr(dtype)), bytes(8)), False),
        ("1.npy", npy_with_header(npy_header(f"[('a', {dtype!r})]"), bytes(8)), False),
        ("2.npy", npy_with_header(header, bytes(8)), False),
    ]
    nodes = [scalar] + [{"kind": "array", "entry": str(i)} for i in range(3)]
    for i, node in enumerate(nodes):
        path = write(directory / f"{i}.npz", node, entries)
        try:
            load(path)
        except ValueError as e:
            assert str(e).startswith(f"load: {path} ")


# ----- legitimate checkpoints still load, and the count bounds what loading allocates ------------
def model_and_optimizer():
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    opt = optim.Adam(model.parameters(), lr=0.01)
    model(mg.ones(2, 3)).sum().backward()
    opt.step()
    return {"model": model.state_dict(), "optim": opt.state_dict(), "epoch": 3}


STRUCTURED = np.dtype(
    {"names": ["a", "b"], "formats": ["<i4", ("<f8", (2,))], "offsets": [0, 8], "itemsize": 32,
     "titles": ["A title", None]}
)  # fmt: skip
CHECKPOINTS = {
    "a model and its optimizer": model_and_optimizer,
    "many small entries with step counters": lambda: {
        i: {"step": np.int64(5), "exp_avg": np.zeros(1, np.float32), "sq": np.zeros((), np.float32)}
        for i in range(2000)
    },
    "many one-element parameters": lambda: [nn.Parameter([float(i)]) for i in range(2000)],
    "many numpy scalars": lambda: [np.float64(i) / 7 for i in range(5000)],
    "many small containers": lambda: {i: [{}, (), [i, str(i), None]] for i in range(3000)},
    "large arrays": lambda: {"w": np.ones((256, 512), np.float32), "p": nn.Parameter(np.ones(9))},
    "every dtype": lambda: [
        np.zeros((2, 3), STRUCTURED),
        np.arange(4).astype("M8[10s]"),
        np.arange(3).astype("m8[ns]"),
        np.array(["ab", "c"]),
        np.array([b"ab"]),
        np.zeros(2, "V4"),
        np.ones(2, np.longdouble),
        np.ones(2, np.clongdouble),
        np.arange(3, dtype=">i4"),
        np.ones(2, np.float16),
        np.arange(2, dtype=np.uint64),
        np.zeros(0, "U3"),
        np.zeros((), STRUCTURED)[()],
        np.datetime64(7, "D"),
        np.void(b"\x00\x01"),
        np.str_("é"),
        np.bytes_(b"x"),
    ],  # fmt: skip
}


def assert_same(a, b):
    assert type(b) is (dict if isinstance(a, dict) else type(a))  # OrderedDicts come back dicts
    if isinstance(a, (dict, list, tuple)):
        assert len(a) == len(b) and (not isinstance(a, dict) or list(a) == list(b))
        for x, y in zip(a.values() if isinstance(a, dict) else a,
                        b.values() if isinstance(b, dict) else b, strict=True):  # fmt: skip
            assert_same(x, y)
    elif isinstance(a, mg.Tensor):
        assert a.requires_grad == b.requires_grad
        assert_same(a.numpy(), b.numpy())
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape
        if a.dtype.names:  # field by field: numpy leaves the padding between fields unread
            for field in a.dtype.names:
                assert_same(a[field], b[field])
        else:
            assert a.tobytes() == b.tobytes()
    else:
        assert a == b


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_legitimate_checkpoints_load_and_the_count_bounds_what_loading_allocates(
    name, tmp_path, monkeypatch
):
    obj = CHECKPOINTS[name]()
    path = tmp_path / "c.npz"
    save(obj, path)
    charged, charge = [], serialization._Reader.charge
    monkeypatch.setattr(
        serialization._Reader, "charge", lambda self, n, what: charged.append(n) or charge(
            self, n, what)
    )  # fmt: skip
    result = []
    peak = peak_memory_of(lambda: result.append(load(path)))
    assert_same(obj, result[0])
    assert peak < budget(path)
    # What it counted covers what it allocated (a tiny array takes far more than its bytes),
    # but for what one entry's reading needs for a moment (numpy reads through 256 KiB).
    assert peak < sum(charged) + MIB
