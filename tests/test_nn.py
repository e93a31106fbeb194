"""minigrad.nn: Module bookkeeping, layers, init, gradient clipping, and an MLP that learns."""

import math
from collections import OrderedDict

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn, optim
from minigrad.nn import init
from minigrad.nn.utils import clip_grad_norm_, clip_grad_value_


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 4)
        self.norm = nn.LayerNorm(4)
        self.scale = nn.Parameter(np.ones(4))
        self.register_buffer("count", mg.zeros(1))

    def forward(self, x):
        return self.norm(self.proj(x)) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 3, padding_idx=0)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Sequential(nn.Tanh(), nn.Dropout(0.1), nn.Linear(4, 2, bias=False))

    def forward(self, idx):
        h = self.embed(idx)
        for block in self.blocks:
            h = block(h[..., :3] if h.shape[-1] != 3 else h)
        return self.head(h)


NET_PARAMS = [
    "embed.weight",
    "blocks.0.scale",
    "blocks.0.proj.weight",
    "blocks.0.proj.bias",
    "blocks.0.norm.weight",
    "blocks.0.norm.bias",
    "blocks.1.scale",
    "blocks.1.proj.weight",
    "blocks.1.proj.bias",
    "blocks.1.norm.weight",
    "blocks.1.norm.bias",
    "head.2.weight",
]


# ----- Parameter and registration -----------------------------------------------------------------
def test_parameter_defaults():
    p = nn.Parameter(np.arange(3.0))  # float64 data -> the default dtype
    assert p.requires_grad and p.dtype == np.float32 and p.is_leaf
    assert isinstance(p, mg.Tensor)
    assert nn.Parameter(mg.tensor([1.0], dtype=mg.float64)).dtype == np.float64
    assert not nn.Parameter([1.0], requires_grad=False).requires_grad
    assert repr(nn.Parameter([1.0])).startswith("Parameter containing:\ntensor(")


def test_parameter_in_float64_default(default_float64):
    assert nn.Parameter([1.0]).dtype == np.float64
    assert nn.Linear(2, 3).weight.dtype == np.float64


def test_named_parameters_dotted_names_in_nested_model():
    net = Net()
    assert [name for name, _ in net.named_parameters()] == NET_PARAMS
    assert len(list(net.parameters())) == len(NET_PARAMS)
    assert [n for n, _ in net.named_children()] == ["embed", "blocks", "head"]
    assert [n for n, _ in net.named_buffers()] == ["blocks.0.count", "blocks.1.count"]
    names = [n for n, _ in net.named_modules()]
    assert names[:4] == ["", "embed", "blocks", "blocks.0"] and "head.2" in names
    assert [n for n, _ in net.blocks[0].named_parameters(prefix="b")][0] == "b.scale"
    assert [n for n, _ in net.blocks[0].named_parameters(recurse=False)] == ["scale"]


def test_shared_parameter_is_listed_once():
    a = nn.Linear(2, 2)
    seq = nn.Sequential(a, nn.Tanh(), a)
    assert len(list(seq.parameters())) == 2
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_reassignment_and_deletion():
    m = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="parameter 'weight'"):
        m.weight = mg.zeros((2, 2))
    m.bias = None
    assert [n for n, _ in m.named_parameters()] == ["weight"]
    m.extra = nn.Parameter([1.0])
    del m.extra
    assert [n for n, _ in m.named_parameters()] == ["weight"]
    m.weight = nn.Parameter(np.zeros((2, 2)))
    assert np.all(m(mg.ones(1, 2)).data == 0)


def test_forgetting_super_init_is_a_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter([1.0])

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Bad()


def test_train_eval_zero_grad_apply():
    net = Net()
    assert net.training and net.head[1].training
    net.eval()
    assert not any(m.training for m in net.modules())
    x = mg.tensor(np.ones((2, 4), np.float32))
    np.testing.assert_array_equal(net.head(x).data, net.head(x).data)  # no dropout in eval
    net.train()
    assert all(m.training for m in net.modules())
    net(np.array([[1, 2]])).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    seen = []
    net.head.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Tanh", "Dropout", "Linear", "Sequential"]


def test_to_double_float_keeps_parameter_objects():
    net = Net()
    params = list(net.parameters())
    net.double()
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert all(a is b for a, b in zip(params, net.parameters(), strict=True))
    assert net.blocks[0].count.dtype == np.float64
    assert net(np.array([[1, 2]])).dtype == np.float64
    net.float()
    assert all(p.dtype == np.float32 for p in net.parameters())


# ----- state_dict -------------------------------------------------------------------------------
def test_state_dict_round_trip():
    mg.manual_seed(0)
    a = Net()
    mg.manual_seed(1)
    b = Net()
    idx = np.array([[1, 2, 3]])
    a.eval(), b.eval()
    assert not np.allclose(a(idx).data, b(idx).data)
    sd = a.state_dict()
    assert list(sd) == NET_PARAMS[:1] + [
        "blocks.0.scale", "blocks.0.count", "blocks.0.proj.weight", "blocks.0.proj.bias",
        "blocks.0.norm.weight", "blocks.0.norm.bias",
        "blocks.1.scale", "blocks.1.count", "blocks.1.proj.weight", "blocks.1.proj.bias",
        "blocks.1.norm.weight", "blocks.1.norm.bias", "head.2.weight",
    ]  # fmt: skip
    assert isinstance(sd, OrderedDict) and all(isinstance(v, np.ndarray) for v in sd.values())
    sd["embed.weight"][0, 0] = 99  # a copy: editing it does not touch the model
    assert a.embed.weight.data[0, 0] == 0
    sd["embed.weight"][0, 0] = 0
    result = b.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    np.testing.assert_array_equal(a(idx).data, b(idx).data)


def test_load_state_dict_accepts_tensors_and_casts_dtype():
    m = nn.Linear(2, 3)
    w = np.arange(6, dtype=np.float64).reshape(3, 2)  # e.g. a converted PyTorch float64 weight
    m.load_state_dict({"weight": w, "bias": mg.tensor([1.0, 2.0, 3.0], dtype=mg.float64)})
    assert m.weight.dtype == np.float32 and m.bias.dtype == np.float32
    np.testing.assert_array_equal(m.weight.data, w)
    np.testing.assert_array_equal(m.bias.data, [1, 2, 3])


def test_load_state_dict_strict_errors_name_every_key_and_both_shapes():
    m = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    before = m.state_dict()
    bad = {
        "0.weight": np.zeros((4, 2)),  # wrong shape
        "0.bias": np.zeros(3),
        "1.weight": np.zeros((1, 5)),  # wrong shape
        "2.weight": np.zeros(1),  # unexpected; and 1.bias is missing
        "extra": np.zeros(1),  # unexpected
    }
    with pytest.raises(RuntimeError) as info:
        m.load_state_dict(bad)
    msg = str(info.value)
    for text in [
        "0.weight: shape (4, 2) in the checkpoint, (3, 2) in the model",
        "1.weight: shape (1, 5) in the checkpoint, (1, 3) in the model",
        "missing key: 1.bias",
        "unexpected key: 2.weight",
        "unexpected key: extra",
    ]:
        assert text in msg
    for k, v in m.state_dict().items():  # nothing was loaded
        np.testing.assert_array_equal(v, before[k])


def test_load_state_dict_non_strict():
    m = nn.Linear(2, 3)
    result = m.load_state_dict({"weight": np.ones((3, 2)), "other": np.ones(1)}, strict=False)
    assert result.missing_keys == ["bias"] and result.unexpected_keys == ["other"]
    assert np.all(m.weight.data == 1)
    with pytest.raises(RuntimeError, match=r"weight: shape \(2, 2\)"):  # shapes are always checked
        m.load_state_dict({"weight": np.ones((2, 2))}, strict=False)


# ----- repr ---------------------------------------------------------------------------------------
def test_repr_like_pytorch():
    model = nn.Sequential(
        nn.Embedding(100, 8, padding_idx=0),
        nn.Linear(8, 16),
        nn.ReLU(),
        nn.Dropout(0.25),
        nn.ModuleList([nn.LayerNorm(16), nn.Linear(16, 4, bias=False)]),
    )
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Embedding(100, 8, padding_idx=0)\n"
        "  (1): Linear(in_features=8, out_features=16, bias=True)\n"
        "  (2): ReLU()\n"
        "  (3): Dropout(p=0.25)\n"
        "  (4): ModuleList(\n"
        "    (0): LayerNorm((16,), eps=1e-05, elementwise_affine=True)\n"
        "    (1): Linear(in_features=16, out_features=4, bias=False)\n"
        "  )\n"
        ")"
    )


# ----- layers -----------------------------------------------------------------------------------
def test_linear_init_and_forward():
    mg.manual_seed(0)
    m = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    assert m.weight.shape == (300, 400) and m.bias.shape == (300,)
    for p in (m.weight, m.bias):
        assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.95 * bound
    assert abs(m.weight.numpy().std() - bound / math.sqrt(3)) < 0.01 * bound
    x = np.ones((2, 5, 400), np.float32)
    np.testing.assert_allclose(m(x).data, x @ m.weight.data.T + m.bias.data, atol=1e-5)


def test_embedding_layer():
    mg.manual_seed(0)
    e = nn.Embedding(1000, 50, padding_idx=-1)
    assert e.padding_idx == 999 and np.all(e.weight.data[999] == 0)
    assert abs(e.weight.numpy().std() - 1) < 0.02 and abs(e.weight.data.mean()) < 0.02
    out = e(mg.tensor([[3, 999, 3]]))
    assert out.shape == (1, 3, 50)
    out.sum().backward()
    assert np.all(e.weight.grad[3] == 2) and np.all(e.weight.grad[999] == 0)
    frozen = nn.Embedding.from_pretrained(np.eye(3))
    assert not frozen.weight.requires_grad
    np.testing.assert_array_equal(frozen(np.array([2])).data, [[0, 0, 1]])


def test_containers():
    layers = [nn.Linear(2, 2) for _ in range(3)]
    seq = nn.Sequential(*layers)
    assert len(seq) == 3 and seq[-1] is layers[2] and list(seq) == layers
    assert isinstance(seq[1:], nn.Sequential) and len(seq[1:]) == 2
    named = nn.Sequential(OrderedDict([("a", nn.Tanh()), ("b", nn.Sigmoid())]))
    assert [n for n, _ in named.named_children()] == ["a", "b"]
    ml = nn.ModuleList(layers[:2])
    ml.append(layers[2])
    assert len(ml) == 3 and ml[-1] is layers[2]
    with pytest.raises(IndexError, match="ModuleList"):
        ml[3]
    ml[0] = nn.Identity()
    assert len(list(ml.parameters())) == 4


def test_activation_modules():
    x = mg.tensor([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(nn.ReLU()(x).data, [0, 0, 3])
    np.testing.assert_allclose(nn.Tanh()(x).data, np.tanh(x.data), rtol=1e-6)
    np.testing.assert_allclose(nn.Sigmoid()(x).data, 1 / (1 + np.exp(-x.data)), rtol=1e-6)
    np.testing.assert_allclose(nn.Softmax(-1)(x).data.sum(), 1, rtol=1e-6)


def test_layer_errors():
    with pytest.raises(ValueError, match="Dropout"):
        nn.Dropout(-0.1)
    with pytest.raises(ValueError, match="padding_idx"):
        nn.Embedding(3, 2, padding_idx=3)
    message = (
        r"Linear\(in_features=2, out_features=5\): expected input of shape \(\.\.\., 2\), got "
    )
    with pytest.raises(ValueError, match=message + r"\(4, 3\)"):
        nn.Linear(2, 5)(mg.zeros((4, 3)))
    with pytest.raises(ValueError, match=message + r"\(\)"):
        nn.Linear(2, 5)(mg.tensor(1.0))
    with pytest.raises(ValueError, match=message + r"\(2, 0\)"):
        nn.Linear(2, 5)(np.zeros((2, 0)))
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(ValueError, match=rf"Linear: in_features must be a non-negative "
                                             rf"integer, got {bad!r}"):  # fmt: skip
            nn.Linear(bad, 5)
        with pytest.raises(ValueError, match=rf"Linear: out_features .* got {bad!r}"):
            nn.Linear(2, bad)


@pytest.mark.parametrize("sizes", [(0, 3), (4, 0), (0, 0)])
def test_linear_with_zero_features_is_an_empty_product(sizes):
    """As torch.nn.Linear: no input features gives y = b (zero at initialisation), no output
    features an empty (..., 0) result; gradients have the parameters' shapes."""
    n_in, n_out = sizes
    layer = nn.Linear(n_in, n_out)
    assert n_in > 0 or not layer.bias.numpy().any()  # its bound 1/sqrt(in_features) is 0
    layer.bias.data[...] = np.arange(n_out)
    x = mg.tensor(np.ones((2, 5, n_in), np.float32), requires_grad=True)
    y = layer(x)
    assert y.shape == (2, 5, n_out) and y.dtype == np.float32
    np.testing.assert_array_equal(y.data, np.broadcast_to(np.arange(n_out), (2, 5, n_out)))
    (y * 2).sum().backward()
    assert x.grad.shape == x.shape and not x.grad.numpy().any()
    assert layer.weight.grad.shape == (n_out, n_in)
    np.testing.assert_array_equal(layer.bias.grad, np.full(n_out, 20.0))
    unbatched = nn.Linear(n_in, n_out, bias=False)(np.zeros(n_in, np.float32))
    assert unbatched.shape == (n_out,) and not unbatched.numpy().any()


# ----- init ---------------------------------------------------------------------------------------
def test_calculate_gain():
    assert init.calculate_gain("linear") == 1 and init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01**2)))
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.calculate_gain("swish")


def test_init_distributions():
    mg.manual_seed(0)
    w = mg.zeros(300, 200)
    fan_in, fan_out = 200, 300
    assert init.xavier_uniform_(w, gain=2.0) is w
    bound = 2.0 * math.sqrt(6 / (fan_in + fan_out))
    assert np.abs(w.data).max() <= bound and np.abs(w.data).max() > 0.99 * bound
    init.xavier_normal_(w)
    assert w.numpy().std() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.02)
    init.kaiming_uniform_(w, a=math.sqrt(5))  # what PyTorch's Linear uses: bound 1/sqrt(fan_in)
    assert np.abs(w.data).max() == pytest.approx(1 / math.sqrt(fan_in), rel=0.01)
    init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert w.numpy().std() == pytest.approx(math.sqrt(2 / fan_out), rel=0.02)
    init.normal_(w, 1.0, 0.5)
    assert w.data.mean() == pytest.approx(1.0, abs=0.01) and w.dtype == np.float32
    init.uniform_(w, -3, -2)
    assert -3 <= w.data.min() and w.data.max() <= -2
    for fn, value in [(init.zeros_, 0), (init.ones_, 1), (lambda t: init.constant_(t, 0.5), 0.5)]:
        assert np.all(fn(w).data == value)


def test_init_orthogonal_and_eye():
    mg.manual_seed(0)
    for shape in [(5, 5), (3, 7), (7, 3)]:
        w = init.orthogonal_(mg.zeros(*shape, dtype=mg.float64), gain=2.0)
        q = w.data / 2
        small = q @ q.T if shape[0] <= shape[1] else q.T @ q
        np.testing.assert_allclose(small, np.eye(min(shape)), atol=1e-12)
    np.testing.assert_array_equal(init.eye_(mg.zeros(2, 3)).data, np.eye(2, 3))
    with pytest.raises(ValueError, match="eye_"):
        init.eye_(mg.zeros(2))
    with pytest.raises(ValueError, match="fan in and fan out"):
        init.xavier_uniform_(mg.zeros(3))


def test_init_is_reproducible_with_manual_seed():
    mg.manual_seed(42)
    a = nn.Linear(3, 3).weight.numpy().copy()
    mg.manual_seed(42)
    np.testing.assert_array_equal(a, nn.Linear(3, 3).weight.data)


# ----- gradient clipping --------------------------------------------------------------------------
def _params_with_grads(grads):
    ps = []
    for g in grads:
        p = nn.Parameter(np.zeros(g.shape))
        p.grad = mg.from_numpy(np.array(g, dtype=np.float32))
        ps.append(p)
    return ps


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_formula(norm_type, max_norm):
    r = np.random.default_rng(0)
    grads = [r.standard_normal((3, 4)), r.standard_normal(5), r.standard_normal((2, 2, 2))]
    params = _params_with_grads(grads) + [nn.Parameter([1.0])]  # one without a gradient
    flat = np.concatenate([np.asarray(g, np.float32).astype(np.float64).ravel() for g in grads])
    if norm_type == math.inf:
        total = np.abs(flat).max()
    else:
        total = (np.abs(flat) ** norm_type).sum() ** (1 / norm_type)
    out = clip_grad_norm_(params, max_norm, norm_type)
    assert float(out) == pytest.approx(total, rel=1e-6)
    scale = min(1.0, max_norm / (total + 1e-6))
    for p, g in zip(params, grads, strict=False):
        np.testing.assert_allclose(p.grad, np.float32(g) * scale, rtol=1e-6)
    clipped = np.concatenate([p.grad.numpy().ravel() for p in params[:3]]).astype(np.float64)
    norm_after = np.abs(clipped).max() if norm_type == math.inf else np.sum(
        np.abs(clipped) ** norm_type) ** (1 / norm_type)  # fmt: skip
    assert norm_after <= max_norm * (1 + 1e-5)


def test_clip_grad_norm_edge_cases():
    assert clip_grad_norm_([nn.Parameter([1.0])], 1.0) == 0.0  # no gradients at all
    p = _params_with_grads([np.array([3e20, 4e20])])[0]  # squares overflow float32
    assert float(clip_grad_norm_(p, 1.0)) == pytest.approx(5e20, rel=1e-6)
    np.testing.assert_allclose(p.grad, [0.6, 0.8], rtol=1e-5)
    q = _params_with_grads([np.array([np.inf, 1.0])])[0]
    with pytest.raises(RuntimeError, match="total norm"):
        clip_grad_norm_([q], 1.0, error_if_nonfinite=True)
    assert clip_grad_norm_([q], 1.0) == math.inf


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
def test_clip_grad_norm_nan_total_makes_every_gradient_nan(norm_type):
    # As PyTorch: the coefficient min(max_norm / (NaN + 1e-6), 1) is NaN and is applied, so
    # finite gradients never reach the optimizer unclipped. The NaN is last so that a
    # NaN-dropping max() would miss it.
    ps = _params_with_grads([np.array([3.0, 4.0]), np.array([1.0, np.nan])])
    assert math.isnan(clip_grad_norm_(ps, 1.0, norm_type))
    assert all(np.isnan(p.grad).all() for p in ps)
    ps = _params_with_grads([np.array([3.0, 4.0]), np.array([1.0, np.nan])])
    with pytest.raises(RuntimeError, match=rf"total norm of order {norm_type} .* non-finite "
                       r"\(nan\), so it cannot be clipped.*error_if_nonfinite=False"):  # fmt: skip
        clip_grad_norm_(ps, 1.0, norm_type, error_if_nonfinite=True)
    np.testing.assert_array_equal(ps[0].grad, [3.0, 4.0])  # the error leaves them unchanged


def test_clip_grad_norm_float64_sum_past_float64_range_is_inf():
    p = nn.Parameter(mg.zeros(2, dtype=mg.float64))
    p.grad = mg.tensor([1e200, 1e200], dtype=mg.float64)  # squares overflow; fsum would raise
    assert clip_grad_norm_([p], 1.0) == math.inf
    np.testing.assert_array_equal(p.grad, [0.0, 0.0])


@pytest.mark.parametrize(
    "grads",
    [
        [[np.nan, 1.0], [1.0, 2.0]],
        [[np.inf, 1.0], [1.0, 2.0]],
        [[-np.inf, np.inf], [np.nan, 0.0]],
        [[0.0, 0.0], [0.0, -0.0]],
        [[1e-40, 1e-41], [0.0, 3e-45]],  # float32 denormals: a total far below max_norm
        [[1e-40, 1e-41], [1.0, 2.0]],  # denormals scaled down with the rest
        [[3.0, 4.0], [1.0, 2.0]],
    ],
)
@pytest.mark.parametrize("norm_type", [2.0, math.inf])
def test_clip_grad_norm_matches_torch_at_nonfinite_zero_and_denormal_totals(grads, norm_type):
    torch = pytest.importorskip("torch")
    ps = _params_with_grads([np.array(g) for g in grads])
    tps = []
    for g in grads:
        t = torch.nn.Parameter(torch.zeros(len(g)))
        t.grad = torch.tensor(np.array(g, np.float32))
        tps.append(t)
    # The total is the norm in float64 (torch's float32 one underflows to 0 for denormals).
    flat = torch.cat([t.grad.double() for t in tps])
    expected = torch.linalg.vector_norm(flat, norm_type).item()
    np.testing.assert_allclose(clip_grad_norm_(ps, 1.0, norm_type), expected, rtol=1e-6)
    torch.nn.utils.clip_grad_norm_(tps, 1.0, norm_type)
    for p, t in zip(ps, tps, strict=True):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-6, atol=0)


def test_clip_grad_value():
    (p,) = _params_with_grads([np.array([-3.0, 0.5, 2.0])])
    clip_grad_value_([p], 1.0)
    np.testing.assert_array_equal(p.grad, [-1.0, 0.5, 1.0])


# ----- learning -----------------------------------------------------------------------------------
def two_spirals(n, seed):
    """Two interleaved spirals of 1.5 turns: not separable by any linear model."""
    r = np.random.default_rng(seed)
    t = np.sqrt(r.random(n)) * 3 * np.pi
    arm = np.stack([t * np.cos(t), t * np.sin(t)], 1) / (3 * np.pi)
    x = np.concatenate([arm, -arm]) + r.normal(0, 0.02, (2 * n, 2))
    return x.astype(np.float32), np.repeat([0, 1], n)


def test_mlp_learns_two_spirals():
    mg.manual_seed(0)
    x, y = two_spirals(200, 0)
    model = nn.Sequential(
        nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2)
    )
    opt = optim.Adam(model.parameters(), lr=0.01)
    xt = mg.tensor(x)
    for _ in range(250):
        opt.zero_grad()
        F.cross_entropy(model(xt), y).backward()
        opt.step()
    with mg.no_grad():
        train_acc = (model(xt).data.argmax(1) == y).mean()
        xv, yv = two_spirals(200, 1)
        test_acc = (model(mg.tensor(xv)).data.argmax(1) == yv).mean()
    assert train_acc > 0.95 and test_acc > 0.95
