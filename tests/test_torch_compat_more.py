"""More of what PyTorch programs expect, checked against PyTorch itself: the (values, indices)
pairs of reductions along a dim, the legacy constructors `mg.Tensor(2, 3)`/`mg.LongTensor`,
PyTorch's casting rule for in-place ops, and the names old tutorials call (`mg.cuda`,
`mg.autograd.Variable`, `Tensor.__index__`, ...)."""

import numpy as np
import pytest

import minigrad as mg

X = [[1.0, 3.0, 3.0, 0.0, 3.0], [2.0, 2.0, 0.0, 0.0, 1.0], [5.0, -1.0, 4.0, 2.0, 0.5]]


def _same(got, want):
    np.testing.assert_array_equal(got.numpy(), want.detach().numpy())
    assert got.shape == tuple(want.shape)


@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize(
    "call",
    [
        lambda x, f: f(x, 1),
        lambda x, f: f(x, dim=1),
        lambda x, f: f(x, 1, keepdim=True),
        lambda x, f: f(x, 0, True),
        lambda x, f: f(x, -1),
    ],
)
def test_max_and_min_along_a_dim_return_values_and_indices(name, call):
    import torch

    got = call(mg.tensor(X), lambda x, *a, **k: getattr(x, name)(*a, **k))
    want = call(torch.tensor(X), lambda x, *a, **k: getattr(x, name)(*a, **k))
    assert type(got).__name__ == name and type(got).__module__ == "minigrad.return_types"
    assert got._fields == ("values", "indices")
    _same(got.values, want.values)
    _same(got.indices, want.indices)
    assert got.indices.dtype == mg.int64
    values, indices = got  # unpacks as a pair
    assert values is got.values and indices is got.indices
    fn = getattr(mg, name)  # the function form: mg.max(x, dim)
    _same(call(mg.tensor(X), fn).indices, want.indices)


def test_max_values_send_the_gradient_to_the_arg_max_as_pytorch():
    import torch

    x, t = mg.tensor(X, requires_grad=True), torch.tensor(X, requires_grad=True)
    (x.max(1).values * mg.tensor([1.0, 2.0, 3.0])).sum().backward()
    (t.max(1).values * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_array_equal(x.grad, t.grad.numpy())
    x.grad = None
    x.min(0, keepdim=True).values.sum().backward()
    assert x.grad.sum() == 5 and x.grad[2, 1] == 1  # one position per column


def test_max_without_a_dim_and_the_elementwise_forms_follow_pytorch():
    import torch

    x, t = mg.tensor(X), torch.tensor(X)
    assert x.max().item() == t.max().item() and mg.min(x).item() == torch.min(t).item()
    y = mg.tensor(X) * 0 + 2
    _same(mg.max(x, y), torch.max(t, t * 0 + 2))
    _same(x.min(y), t.min(t * 0 + 2))
    # NumPy's spelling stays the values only, over any axes; amax/amin as in PyTorch.
    np.testing.assert_array_equal(x.max(axis=(0, 1)).numpy(), 5.0)
    _same(x.max(axis=1), t.amax(1))
    _same(x.amax((0, 1)), t.amax((0, 1)))
    _same(x.amin(1, keepdim=True), t.amin(1, keepdim=True))
    assert mg.tensor(3.0).max(0).indices.item() == 0
    with pytest.raises(TypeError, match="one int dim.*amax"):
        x.max(dim=(0, 1))
    with pytest.raises(ValueError, match="max.*empty"):
        mg.zeros(2, 0).max(1)


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_sort_matches_pytorch_including_ties_and_nan(descending, dim):
    import torch

    data = [row + [float("nan")] for row in X]
    got = mg.tensor(data).sort(dim, descending=descending)
    want = torch.tensor(data).sort(dim=dim, descending=descending, stable=True)
    assert type(got).__name__ == "sort"
    _same(got.values, want.values)
    _same(got.indices, want.indices)
    _same(mg.sort(mg.tensor(data), dim, descending).indices, want.indices)
    _same(mg.tensor(data).argsort(dim, descending), want.indices)


def test_median_mode_and_kthvalue_match_pytorch():
    import torch

    x, t = mg.tensor(X, requires_grad=True), torch.tensor(X, requires_grad=True)
    for dim in (0, 1):
        for name in ("median", "mode"):
            got, want = getattr(x, name)(dim), getattr(t, name)(dim)
            assert type(got).__name__ == name
            _same(got.values, want.values)
            _same(got.indices, want.indices)
    got, want = x.median(1, keepdim=True), t.median(1, keepdim=True)
    _same(got.values, want.values)
    assert x.median().item() == t.median().item()  # no dim: the lower median's value
    distinct = [[4.0, 1.0, 3.0, 2.0], [0.0, -1.0, 7.0, 5.0]]
    for k in (1, 2, 4):
        got = mg.tensor(distinct).kthvalue(k, 1)
        want = torch.tensor(distinct).kthvalue(k, 1)
        assert type(got).__name__ == "kthvalue"
        _same(got.values, want.values)
        _same(got.indices, want.indices)
    # Among ties the index may differ from PyTorch's, but it points at an equal element.
    got = x.kthvalue(2, 1)
    np.testing.assert_array_equal(
        np.take_along_axis(x.numpy(), got.indices.numpy()[:, None], 1)[:, 0], got.values.numpy()
    )
    x.median(1).values.sum().backward()
    t.median(1).values.sum().backward()
    np.testing.assert_array_equal(x.grad, t.grad.numpy())
    with pytest.raises(IndexError, match="kthvalue.*k=6"):
        x.kthvalue(6, 1)


def test_topk_is_a_named_pair_too():
    values, indices = mg.tensor(X).topk(2)
    assert type(mg.tensor(X).topk(2)).__name__ == "topk" and indices.dtype == mg.int64
    assert mg.topk(mg.tensor(X), 1).values.tolist() == [[3.0], [2.0], [5.0]]


# ----- the legacy constructors ------------------------------------------------------------------
def test_the_legacy_constructor_takes_sizes_or_float_data_as_pytorch():
    import torch

    for args in [(5,), (2, 3), ([5],), ([1, 2],), ((2, 3),), ([[1.5, 2], [3, 4]],), ()]:
        got, want = mg.Tensor(*args), torch.Tensor(*args)
        assert got.shape == tuple(want.shape) and got.dtype == mg.float32, args
        if args and not all(type(a) is int for a in args):
            _same(got, want)
    assert mg.Tensor(2, 3).tolist() == [[0.0] * 3] * 2  # zeros, never uninitialised memory
    mg.set_default_dtype(mg.float64)
    try:
        assert mg.Tensor(2).dtype == mg.Tensor([1]).dtype == mg.float64
    finally:
        mg.set_default_dtype(mg.float32)
    with pytest.raises(TypeError, match="sizes.*ints"):
        mg.Tensor(2, 3.0)


def test_internal_constructions_keep_inferring_the_dtype():
    assert mg.Tensor(np.arange(3)).dtype == mg.int64  # arrays keep their dtype
    assert mg.Tensor(np.float64(2.5)).dtype == mg.float64
    assert mg.Tensor(5, dtype=mg.int64).shape == ()  # with a dtype an int is data
    assert mg.Tensor([1, 2], dtype=mg.int64).dtype == mg.int64
    assert mg.tensor([1, 2]).dtype == mg.int64 and mg.tensor(5).shape == ()
    assert mg.as_tensor([1, 2]).dtype == mg.int64
    t = mg.Tensor(np.ones(2, np.float32), requires_grad=True)
    assert t.requires_grad and mg.Tensor(t).shape == (2,)
    assert (mg.tensor([1, 2]) + 1).dtype == mg.int64


@pytest.mark.parametrize(
    "name", ["FloatTensor", "DoubleTensor", "LongTensor", "IntTensor", "BoolTensor"]
)
def test_the_typed_legacy_constructors(name):
    import torch

    for args in [(3,), (2, 2), ([0, 2, 1],), ([[1.7, -2.2]],)]:
        got, want = getattr(mg, name)(*args), getattr(torch, name)(*args)
        assert got.shape == tuple(want.shape)
        assert got.dtype.name == str(want.dtype).removeprefix("torch.").replace("bool", "bool")
        if not all(type(a) is int for a in args):
            _same(got, want)
    t = getattr(mg, name)([1])
    assert isinstance(t, getattr(mg, name)) and isinstance(t, mg.Tensor)
    assert not isinstance(t, mg.FloatTensor if name != "FloatTensor" else mg.LongTensor)
    assert mg.ones(2).type(getattr(mg, name)).dtype == t.dtype
    assert mg.ones(2).type(f"torch.{name}").dtype == t.dtype


# ----- names old programs call --------------------------------------------------------------
def test_cuda_says_there_is_none():
    assert mg.cuda.is_available() is False and mg.cuda.device_count() == 0
    mg.cuda.manual_seed_all(0)  # accepted, as PyTorch without a GPU
    for call in (mg.cuda.current_device, mg.cuda.get_device_name, lambda: mg.cuda.set_device(0)):
        with pytest.raises(RuntimeError, match="minigrad runs on the CPU"):
            call()
    model = mg.nn.Linear(2, 2)
    assert model.cpu() is model
    with pytest.raises(RuntimeError, match=r"Linear.cuda: device 'cuda' is not available.*'cpu'"):
        model.cuda()  # at the line that asks for the GPU, not an AttributeError


def test_default_device_is_the_cpu_only():
    assert mg.get_default_device() == "cpu"
    mg.set_default_device("cpu")
    mg.set_default_device(mg.device("cpu"))
    mg.set_default_device(None)
    with pytest.raises(RuntimeError, match="set_default_device.*cuda.*only.*'cpu'"):
        mg.set_default_device("cuda")


def test_mm_and_from_numpy():
    import torch

    a, b = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(3, 4)
    _same(mg.mm(mg.tensor(a), mg.tensor(b)), torch.mm(torch.tensor(a), torch.tensor(b)))
    with pytest.raises(ValueError, match="mm.*2-D"):
        mg.mm(mg.ones(2, 2, 2), mg.ones(2, 2))
    arr = np.zeros(3, np.float32)
    t = mg.from_numpy(arr)
    arr[0] = 1.0
    t[1] = 2.0
    assert t.tolist() == [1.0, 2.0, 0.0] and arr.tolist() == [1.0, 2.0, 0.0]
    assert mg.from_numpy(np.arange(2)).dtype == mg.int64
    with pytest.raises(TypeError, match="unsupported dtype"):
        mg.from_numpy(np.zeros(2, np.complex64))


def test_an_integer_tensor_of_one_element_is_a_python_index():
    import torch

    letters = "abcde"
    topv, topi = mg.tensor([[0.1, 0.7, 0.2]]).topk(1)
    assert letters[topi[0][0]] == letters[torch.tensor([[0.1, 0.7, 0.2]]).topk(1)[1][0][0]] == "b"
    assert letters[mg.tensor(3)] == "d" and letters[mg.tensor([4])] == "e"
    assert list(range(mg.tensor(2))) == [0, 1] and letters[mg.tensor(True)] == "b"
    for bad in (mg.tensor(1.0), mg.tensor([1, 2])):
        with pytest.raises(TypeError, match="only integer tensors of a single element"):
            letters[bad]


# ----- in-place ops keep the tensor's dtype, as PyTorch ---------------------------------------
@pytest.mark.parametrize("recording", [True, False])
@pytest.mark.parametrize(
    "make, want",
    [
        (lambda: mg.LongTensor([0]), "Float.*Long"),
        (lambda: mg.tensor([0]), "Float.*Long"),
        (lambda: mg.tensor(0), "Float.*Long"),
        (lambda: mg.tensor([0], dtype=mg.int32), "Float.*Int"),
    ],
)
def test_an_in_place_op_may_not_cast_a_float_result_into_an_integer_tensor(make, want, recording):
    import torch

    w = mg.ones(2, requires_grad=True)
    total = make()
    with pytest.raises(RuntimeError, match=f"add_: result type {want}"):
        if recording:
            total += (w * 2).sum()
        else:
            with mg.no_grad():
                total += (w * 2).sum()
    assert total.dtype in (mg.int64, mg.int32) and total.tolist() in ([0], 0)  # untouched
    with pytest.raises(RuntimeError, match="result type Float can't be cast.*Long"):
        t = torch.tensor([0])
        t += torch.ones(2, requires_grad=True).sum()


def test_the_in_place_casting_rule_follows_pytorch():
    import torch

    cases = [
        (lambda m: m.tensor([True]), lambda x, m: x.add_(m.tensor([1]))),  # Long -> Bool
        (lambda m: m.tensor([4]), lambda x, m: x.div_(2)),  # true division gives Float
        (lambda m: m.tensor([4]), lambda x, m: x.mul_(0.5)),
    ]
    for make, op in cases:
        with pytest.raises(RuntimeError, match="can't be cast to the desired output type") as e:
            op(make(mg), mg)
        with pytest.raises(RuntimeError) as t:
            op(make(torch), torch)
        assert str(t.value) in str(e.value)
    allowed = [  # within a kind, or integer into float: written, as PyTorch
        (lambda m: m.tensor([1]), lambda x, m: x.add_(m.tensor([2], dtype=m.int32))),
        (lambda m: m.zeros(2), lambda x, m: x.add_(m.ones(2, dtype=m.float64))),
        (lambda m: m.zeros(2), lambda x, m: x.add_(m.tensor([1, 2]))),
        (lambda m: m.tensor([True]), lambda x, m: x.mul_(m.tensor([False]))),
    ]
    for make, op in allowed:
        got, want = op(make(mg), mg), op(make(torch), torch)
        assert got.tolist() == want.tolist() and got.dtype.name == str(want.dtype)[6:]
    # The tutorials' float accumulator keeps its gradient.
    w = mg.ones(2, requires_grad=True)
    loss = mg.Tensor([0])
    loss += (w * 3).sum()
    loss.backward()
    assert w.grad.tolist() == [3.0, 3.0]


def test_randn_and_rand_take_size_as_a_keyword():
    assert mg.randn(size=(2, 3)).shape == (2, 3) and mg.rand(size=[4]).shape == (4,)
    mg.manual_seed(0)
    a = mg.randn(size=(3,))
    mg.manual_seed(0)
    assert a.tolist() == mg.randn(3).tolist()


def test_multinomial_draws_indices_as_pytorch():
    probs = mg.tensor([[0.0, 1.0, 3.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    mg.manual_seed(0)
    once = mg.multinomial(probs, 2)
    assert once.dtype == mg.int64 and once.shape == (2, 2)
    assert set(once[0].tolist()) == {1, 2} and len(set(once[1].tolist())) == 2  # no repeats
    many = probs[0].multinomial(4000, replacement=True).numpy()
    assert set(many.tolist()) <= {1, 2} and 0.7 < (many == 2).mean() < 0.8
    with pytest.raises(ValueError, match="without replacement"):
        mg.multinomial(probs, 3)
    with pytest.raises(ValueError, match="non-negative"):
        mg.multinomial(mg.tensor([1.0, -1.0]), 1)


def test_in_place_shape_changes_and_detach_():
    import torch

    for name, args in [("unsqueeze_", (0,)), ("squeeze_", ()), ("squeeze_", (1,)), ("t_", ())]:
        x, t = mg.ones(2, 1), torch.ones(2, 1)
        assert getattr(x, name)(*args) is x and x.shape == tuple(getattr(t, name)(*args).shape)
    w = mg.ones(3, requires_grad=True)
    h = w * 2
    h.unsqueeze_(0)
    assert h.shape == (1, 3)
    (h * mg.tensor([[1.0, 2.0, 3.0]])).sum().backward()
    assert w.grad.tolist() == [2.0, 4.0, 6.0]
    with pytest.raises(RuntimeError, match="unsqueeze_.*leaf.*requires grad"):
        w.unsqueeze_(0)
    d = w * 2
    assert d.detach_() is d and d.is_leaf and not d.requires_grad
    with mg.no_grad():
        w.unsqueeze_(0)
    assert w.shape == (1, 3)


def test_old_tutorial_names_variable_and_load_weights_only(tmp_path):
    from minigrad.autograd import Variable

    t = mg.ones(2)
    assert Variable(t) is t and not t.requires_grad
    assert mg.autograd.Variable(t, requires_grad=True) is t and t.requires_grad
    assert Variable([1.0, 2.0]).tolist() == [1.0, 2.0]
    mg.save({"w": mg.ones(2)}, tmp_path / "w.pt")
    for weights_only in (True, False, None):
        got = mg.load(tmp_path / "w.pt", weights_only=weights_only)
        assert got["w"].tolist() == [1.0, 1.0]


def test_cuda_tensors_are_refused():
    with pytest.raises(RuntimeError, match="cuda.*only.*'cpu'"):
        mg.ones(2).cuda()
    assert mg.ones(2, 3).mm(mg.ones(3, 1)).shape == (2, 1)


def test_what_minigrad_lacks_raises_at_the_line_that_uses_it_not_at_import():
    import minigrad.nn as nn

    class Unused(nn.Transformer):  # a program's model file may define one and never build it
        pass

    with pytest.raises(NotImplementedError, match="nn.Transformer: minigrad has no Transformer"):
        Unused()
    with pytest.raises(NotImplementedError, match=r"onnx.export\(Linear.*state_dict"):
        mg.onnx.export(nn.Linear(2, 2), mg.zeros(1, 2), "model.onnx")
    with pytest.raises(TypeError, match=r"cannot store an object of type Linear.*state_dict\(\)"):
        mg.save(nn.Linear(2, 2), "never-written.pt")
