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
