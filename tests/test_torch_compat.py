"""What PyTorch programs expect of a tensor: devices, `new_*`, `type`, `t`, `narrow`, `topk`,
`bmm`, `argmax(dim=)`, the dtype aliases, `to`/`cpu`; checked against PyTorch itself."""

import numpy as np
import pytest
import torch

import minigrad as mg
import minigrad.nn as nn


def test_the_cpu_is_accepted_wherever_pytorch_takes_a_device():
    cpu = mg.device("cpu")
    assert cpu == "cpu" and cpu == mg.device("cpu:0") and str(cpu) == "cpu"
    for make in (
        lambda d: mg.zeros(2, 3, device=d),
        lambda d: mg.ones(2, device=d),
        lambda d: mg.full((2,), 1.5, device=d),
        lambda d: mg.randn(2, device=d),
        lambda d: mg.rand(2, device=d),
        lambda d: mg.arange(3, device=d),
        lambda d: mg.tensor([1.0], device=d),
        lambda d: mg.zeros_like(mg.ones(2), device=d),
        lambda d: mg.ones(2).new_zeros(3, device=d),
    ):
        for d in ("cpu", cpu, "cpu:0", None):
            assert make(d).device == cpu
    x = mg.ones(2, requires_grad=True)
    assert x.to("cpu") is x and x.cpu() is x and x.to(cpu, mg.float64).dtype == mg.float64
    lin = nn.Linear(2, 3)
    assert lin.to("cpu") is lin and lin.cpu() is lin
    assert lin.to("cpu", dtype=mg.float64).weight.dtype == mg.float64


@pytest.mark.parametrize("bad", ["cuda", "cuda:0", "mps", "cpu:1"])
def test_any_other_device_is_an_error_naming_what_exists(bad):
    with pytest.raises(RuntimeError, match=f"zeros.*{bad}.*only.*'cpu'"):
        mg.zeros(2, device=bad)
    with pytest.raises(RuntimeError, match="to.*only.*'cpu'"):
        mg.ones(2).to(bad)
    with pytest.raises(RuntimeError, match="Linear.to.*'cpu'"):
        nn.Linear(2, 2).to(bad)
    with pytest.raises(RuntimeError, match="only.*'cpu'"):
        mg.device(bad)


def test_dtype_aliases_are_pytorchs():
    assert (mg.float, mg.double, mg.long, mg.int) == (mg.float32, mg.float64, mg.int64, mg.int32)
    x = mg.tensor([1.5, -2.0])
    assert x.type() == "minigrad.FloatTensor" and x.type(mg.long).dtype == mg.int64
    assert x.to(mg.double).type() == "minigrad.DoubleTensor"
    assert x.to(mg.ones(1, dtype=mg.float64)).dtype == mg.float64


def test_new_factories_keep_dtype_unless_told():
    x = mg.ones(2, dtype=mg.float64)
    assert x.new_zeros(2, 3).dtype == mg.float64 and x.new_zeros((2, 3)).shape == (2, 3)
    assert x.new_ones(4, dtype=mg.float32).dtype == mg.float32
    np.testing.assert_array_equal(x.new_full((2,), 7.0).data, [7.0, 7.0])
    t = x.new_tensor([1, 2])
    assert t.dtype == mg.float64 and t.new_zeros(1, requires_grad=True).requires_grad


def _pair(shape, seed=0):
    a = np.random.default_rng(seed).standard_normal(shape)
    return mg.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


@pytest.mark.parametrize("dim, k, largest", [(-1, 2, True), (0, 3, False), (1, 1, True)])
def test_topk_values_indices_and_gradient_equal_pytorchs(dim, k, largest):
    x, xt = _pair((4, 5, 3))
    v, i = x.topk(k, dim=dim, largest=largest)
    vt, it = xt.topk(k, dim=dim, largest=largest)
    np.testing.assert_array_equal(v.data, vt.detach().numpy())
    np.testing.assert_array_equal(i.data, it.numpy())
    probe = np.random.default_rng(1).standard_normal(v.shape)
    (v * mg.tensor(probe)).sum().backward()
    (vt * torch.tensor(probe)).sum().backward()
    np.testing.assert_array_equal(x.grad, xt.grad.numpy())
    with pytest.raises(ValueError, match="topk: k=9"):
        x.topk(9, dim=dim)


def test_narrow_t_bmm_contiguous_argmax_equal_pytorchs():
    x, xt = _pair((4, 6))
    for dim, start, length in [(0, 1, 2), (1, -3, 3), (1, 0, 0)]:
        np.testing.assert_array_equal(
            x.narrow(dim, start, length).data, xt.narrow(dim, start, length).detach().numpy()
        )
    with pytest.raises(IndexError, match="narrow"):
        x.narrow(1, 4, 3)
    np.testing.assert_array_equal(x.t().data, xt.t().detach().numpy())
    with pytest.raises(ValueError, match="t\\(\\)"):
        mg.ones(2, 2, 2).t()
    a, at = _pair((3, 2, 4), 2)
    b, bt = _pair((3, 4, 5), 3)
    np.testing.assert_allclose(a.bmm(b).data, at.bmm(bt).detach().numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="bmm"):
        a.bmm(mg.ones(4, 5))
    tr = x.T
    assert not tr.numpy().flags.c_contiguous and tr.contiguous().numpy().flags.c_contiguous
    for kw in ({"dim": 0}, {"dim": 1, "keepdim": True}, {}):
        np.testing.assert_array_equal(x.argmax(**kw).data, xt.argmax(**kw).numpy())
        np.testing.assert_array_equal(x.argmin(**kw).data, xt.argmin(**kw).numpy())


def test_clone_and_requires_grad_are_pytorchs():
    x = mg.ones(3).requires_grad_()
    y = x.clone()
    assert y.numpy() is not x.numpy() and y.requires_grad
    (y * 2).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0, 2.0])
