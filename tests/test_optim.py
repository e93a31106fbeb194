"""minigrad.optim against the update equations of PyTorch's documentation, re-derived here in
plain NumPy (float64), over several steps with gradients that depend on the parameters."""

import copy
import math

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn, optim
from minigrad.optim import lr_scheduler
from minigrad.serialization import load, save

STEPS = 6
SHAPES = [(3, 4), (5,)]


def grad_fn(p, step):
    """A gradient that depends on the parameter and changes from step to step."""
    return np.sin(3 * p) + 0.3 * np.cos(step + np.arange(p.size).reshape(p.shape))


def initial_params():
    r = np.random.default_rng(0)
    return [r.standard_normal(s) for s in SHAPES]


def run_minigrad(make_opt):
    params = [nn.Parameter(mg.tensor(a, dtype=mg.float64)) for a in initial_params()]
    opt = make_opt(params)
    for step in range(STEPS):
        for p in params:
            p.grad = mg.from_numpy(grad_fn(p.numpy(), step))
        opt.step()
    return [p.data for p in params], opt


def run_reference(update):
    """update(p, g, state, t) -> new p, one parameter at a time, t counting from 1."""
    out = []
    for p in initial_params():
        state = {}
        for step in range(STEPS):
            p = update(p, grad_fn(p, step), state, step + 1)
        out.append(p)
    return out


def assert_same(make_opt, update):
    got, _ = run_minigrad(make_opt)
    for a, b in zip(got, run_reference(update), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


# ----- references, one per algorithm box ----------------------------------------------------------
def ref_sgd(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
    def update(p, g, state, t):
        g = -g if maximize else g
        g = g + weight_decay * p
        if momentum:
            b = g if t == 1 else momentum * state["b"] + (1 - dampening) * g
            state["b"] = b
            g = g + momentum * b if nesterov else b
        return p - lr * g

    return update


def ref_adam(lr, b1, b2, eps, weight_decay=0.0, amsgrad=False, decoupled=False, maximize=False):
    def update(p, g, state, t):
        g = -g if maximize else g
        if decoupled:
            p = p - lr * weight_decay * p
        else:
            g = g + weight_decay * p
        m = b1 * state.get("m", 0) + (1 - b1) * g
        v = b2 * state.get("v", 0) + (1 - b2) * g**2
        state["m"], state["v"] = m, v
        if amsgrad:
            v = state["vmax"] = np.maximum(state.get("vmax", 0), v)
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        return p - lr * m_hat / (np.sqrt(v_hat) + eps)

    return update


def ref_rmsprop(lr, alpha, eps, weight_decay=0.0, momentum=0.0, centered=False):
    def update(p, g, state, t):
        g = g + weight_decay * p
        v = state["v"] = alpha * state.get("v", 0) + (1 - alpha) * g**2
        if centered:
            avg = state["avg"] = alpha * state.get("avg", 0) + (1 - alpha) * g
            v = v - avg**2
        if momentum:
            b = state["b"] = momentum * state.get("b", 0) + g / (np.sqrt(v) + eps)
            return p - lr * b
        return p - lr * g / (np.sqrt(v) + eps)

    return update


def ref_adagrad(lr, lr_decay=0.0, weight_decay=0.0, init_acc=0.0, eps=1e-10):
    def update(p, g, state, t):
        lr_t = lr / (1 + (t - 1) * lr_decay)
        g = g + weight_decay * p
        s = state["s"] = state.get("s", init_acc) + g**2
        return p - lr_t * g / (np.sqrt(s) + eps)

    return update


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.8, dampening=0.3),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.1, weight_decay=0.01),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1),
    dict(lr=0.1, momentum=0.5, weight_decay=0.1, maximize=True),
]


@pytest.mark.parametrize("kw", SGD_CASES)
def test_sgd(kw):
    assert_same(lambda ps: optim.SGD(ps, **kw), ref_sgd(**kw))


ADAM_CASES = [
    dict(lr=0.01),
    dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.01, amsgrad=True),
    dict(lr=0.02, weight_decay=0.05, amsgrad=True, maximize=True),
]


def _adam_ref(kw, decoupled):
    b1, b2 = kw.get("betas", (0.9, 0.999))
    wd = kw.get("weight_decay", 1e-2 if decoupled else 0.0)
    return ref_adam(kw["lr"], b1, b2, kw.get("eps", 1e-8), wd, kw.get("amsgrad", False),
                    decoupled, kw.get("maximize", False))  # fmt: skip


@pytest.mark.parametrize("kw", ADAM_CASES)
def test_adam(kw):
    assert_same(lambda ps: optim.Adam(ps, **kw), _adam_ref(kw, decoupled=False))


@pytest.mark.parametrize("kw", ADAM_CASES)
def test_adamw(kw):
    assert_same(lambda ps: optim.AdamW(ps, **kw), _adam_ref(kw, decoupled=True))


def test_adamw_default_decay_differs_from_adam_l2():
    a, _ = run_minigrad(lambda ps: optim.AdamW(ps, lr=0.01, weight_decay=0.1))
    b, _ = run_minigrad(lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.1))
    assert not np.allclose(a[0], b[0])


RMSPROP_CASES = [
    dict(lr=0.01),
    dict(lr=0.01, alpha=0.9, weight_decay=0.1),
    dict(lr=0.01, centered=True),
    dict(lr=0.01, momentum=0.9),
    dict(lr=0.005, alpha=0.95, momentum=0.5, centered=True, weight_decay=0.01),
]


@pytest.mark.parametrize("kw", RMSPROP_CASES)
def test_rmsprop(kw):
    ref = ref_rmsprop(kw["lr"], kw.get("alpha", 0.99), 1e-8, kw.get("weight_decay", 0.0),
                      kw.get("momentum", 0.0), kw.get("centered", False))  # fmt: skip
    assert_same(lambda ps: optim.RMSprop(ps, **kw), ref)


ADAGRAD_CASES = [
    dict(lr=0.1),
    dict(lr=0.1, lr_decay=0.5),
    dict(lr=0.1, weight_decay=0.1, initial_accumulator_value=0.5),
    dict(lr=0.1, lr_decay=0.1, eps=1e-3),
]


@pytest.mark.parametrize("kw", ADAGRAD_CASES)
def test_adagrad(kw):
    ref = ref_adagrad(kw["lr"], kw.get("lr_decay", 0.0), kw.get("weight_decay", 0.0),
                      kw.get("initial_accumulator_value", 0.0), kw.get("eps", 1e-10))  # fmt: skip
    assert_same(lambda ps: optim.Adagrad(ps, **kw), ref)


# ----- the Optimizer machinery --------------------------------------------------------------------
def test_param_groups_have_their_own_hyperparameters():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    opt = optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5}], lr=0.1, momentum=0.0)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[1]["momentum"] == 0.0
    a.grad, b.grad = mg.ones(2), mg.ones(2)
    opt.step()
    np.testing.assert_allclose(a.data, 0.9)
    np.testing.assert_allclose(b.data, 0.5)


def test_zero_grad_and_parameters_without_gradient():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    opt = optim.Adam([a, b], lr=0.1)
    a.grad = mg.ones(2)
    opt.step()  # b has no gradient: skipped, and gets no state
    assert np.all(b.data == 1) and b not in opt.state and a in opt.state
    assert a.dtype == np.float32 and opt.state[a]["exp_avg"].dtype == np.float32
    opt.zero_grad()
    assert a.grad is None


def test_step_with_closure_returns_loss():
    w = nn.Parameter(np.array([2.0]))
    opt = optim.SGD([w], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 4.0 and w.data[0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
        lambda ps: optim.Adam(ps, lr=0.01, amsgrad=True),
        lambda ps: optim.AdamW(ps, lr=0.01),
        lambda ps: optim.RMSprop(ps, lr=0.01, momentum=0.5, centered=True),
        lambda ps: optim.Adagrad(ps, lr=0.1, lr_decay=0.1),
    ],
)
def test_state_dict_resumes_exactly(make, tmp_path):
    """Train 3 steps, checkpoint (through save/load), resume in fresh objects: the next steps
    equal those of an uninterrupted run."""

    def params():
        return [nn.Parameter(mg.tensor(a, dtype=mg.float64)) for a in initial_params()]

    def steps(opt, ps, start, stop):
        for step in range(start, stop):
            for p in ps:
                p.grad = mg.from_numpy(grad_fn(p.numpy(), step))
            opt.step()

    straight = params()
    opt = make(straight)
    steps(opt, straight, 0, STEPS)

    first = params()
    opt1 = make(first)
    steps(opt1, first, 0, 3)
    save({"params": [p.data for p in first], "optim": opt1.state_dict()}, tmp_path / "ckpt")
    ckpt = load(tmp_path / "ckpt")
    resumed = [nn.Parameter(mg.tensor(a)) for a in ckpt["params"]]
    opt2 = make(resumed)
    opt2.param_groups[0]["lr"] = 123.0  # overwritten by the loaded hyperparameters
    opt2.load_state_dict(ckpt["optim"])
    assert opt2.param_groups[0]["lr"] == opt1.param_groups[0]["lr"]
    steps(opt2, resumed, 3, STEPS)
    for a, b in zip(straight, resumed, strict=True):
        np.testing.assert_array_equal(a.data, b.data)


def test_state_dict_layout_and_mismatch_errors():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(3))
    opt = optim.SGD([a, b], lr=0.1, momentum=0.9)
    a.grad = mg.ones(2)
    opt.step()
    sd = opt.state_dict()
    assert list(sd["state"]) == [0] and list(sd["state"][0]) == ["momentum_buffer"]
    assert sd["param_groups"][0]["params"] == [0, 1] and sd["param_groups"][0]["lr"] == 0.1
    sd["state"][0]["momentum_buffer"][0] = 7  # a copy
    assert opt.state[a]["momentum_buffer"][0] == 1
    with pytest.raises(ValueError, match="group 0 has 2 parameters in the state_dict, 1"):
        optim.SGD([a], lr=0.1).load_state_dict(sd)


def _adam_with_state():
    a, b = nn.Parameter(np.ones((2, 3), np.float32)), nn.Parameter(np.ones(4, np.float32))
    opt = optim.Adam([{"params": [a]}, {"params": [b], "lr": 0.5}], amsgrad=True)
    a.grad, b.grad = mg.full((2, 3), 0.5), mg.full((4,), -2.0)
    opt.step()
    return opt, a, b


def _assert_same_bits(x, y):
    """Nested dicts/lists/arrays equal bit for bit: same types, dtypes, shapes and bytes."""
    assert type(x) is type(y)
    if isinstance(x, dict):
        assert list(x) == list(y)
        for k in x:
            _assert_same_bits(x[k], y[k])
    elif isinstance(x, list | tuple):
        assert len(x) == len(y)
        for u, v in zip(x, y, strict=True):
            _assert_same_bits(u, v)
    elif isinstance(x, np.ndarray):
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
    else:
        assert x == y


def _corrupt(sd, how):
    """A bad state_dict whose first entries are valid and different (so a partial load shows)."""
    sd["state"][0]["exp_avg"] += 1
    sd["param_groups"][0]["lr"] = 9.0
    state1, groups = sd["state"][1], sd["param_groups"]
    if how == "index":
        sd["state"][5] = sd["state"].pop(1)
    elif how == "shape":
        state1["exp_avg_sq"] = np.zeros(3, np.float32)
    elif how == "int8":
        state1["exp_avg"] = np.ones(4, np.int8)
    elif how == "range":
        state1["max_exp_avg_sq"] = np.full(4, 1e300)
    elif how == "groups":
        groups.append({"params": []})
    elif how == "params":
        groups[1]["params"].append(7)
    elif how == "twice":
        groups[1]["params"] = [0]
    elif how == "entry":
        sd["state"][1] = [1, 2]
    elif how == "step":
        state1["step"] = np.ones(4)
    return sd


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("index", r"a state entry for parameter index 5, but the param groups list only \[0, 1\]"),
        ("shape", r"param 0 \(index 1\): 'exp_avg_sq' has shape \(3,\), expected the.* \(4,\)"),
        ("int8", r"group 1, param 0 \(index 1\): 'exp_avg' has dtype int8, expected a floating"),
        ("range", r"'max_exp_avg_sq' has values beyond the range of float32"),
        ("groups", r"3 parameter groups in the state_dict, 2 in the optimizer"),
        ("params", r"group 1 has 2 parameters in the state_dict, 1 in the optimizer"),
        ("twice", r"parameter index 0 is in the state_dict twice"),
        ("entry", r"the state of group 1, param 0 \(index 1\) is a list"),
        ("step", r"'step' must be a real number, got a float64 array of shape \(4,\)"),
    ],
)
def test_failed_load_state_dict_names_the_entry_and_changes_nothing(how, message):
    opt, a, b = _adam_with_state()
    before = opt.state_dict()
    bad = _corrupt(copy.deepcopy(before), how)
    with pytest.raises(ValueError, match=r"Adam.load_state_dict: .*" + message):
        opt.load_state_dict(bad)
    _assert_same_bits(opt.state_dict(), before)
    assert opt.state[a]["exp_avg"] is not None and opt.param_groups[0]["lr"] == 1e-3


def test_load_state_dict_casts_float_moments_to_the_parameters_dtype():
    opt, a, b = _adam_with_state()
    sd = opt.state_dict()
    sd["state"]["1"] = sd["state"].pop(1)  # str keys, as JSON gives them
    for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        sd["state"][0][k] = mg.tensor(sd["state"][0][k], dtype=mg.float64)
        sd["state"]["1"][k] = sd["state"]["1"][k].astype(np.float16)
    opt2, a2, b2 = _adam_with_state()
    opt2.load_state_dict(sd)
    for p in (a2, b2):
        assert all(opt2.state[p][k].dtype == np.float32 for k in ("exp_avg", "exp_avg_sq"))
    a2.grad, b2.grad = mg.ones(2, 3), mg.ones(4)
    opt2.step()
    assert a2.data.dtype == np.float32 and np.isfinite(b2.data).all()


def test_bad_optimizer_arguments():
    p = nn.Parameter(np.ones(2))
    with pytest.raises(ValueError, match="invalid lr: -1"):
        optim.SGD([p], lr=-1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="invalid beta2: 1.0"):
        optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(TypeError, match="not a single tensor"):
        optim.Adam(p)
    with pytest.raises(ValueError, match="floating leaf"):
        optim.SGD([mg.tensor([1, 2])], lr=0.1)
    with pytest.raises(ValueError, match="two groups"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)


def test_matches_torch_if_available():
    torch = pytest.importorskip("torch")
    for make_mg, make_torch in [
        (lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.1, amsgrad=True),
         lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.1, amsgrad=True)),
        (lambda ps: optim.RMSprop(ps, lr=0.01, momentum=0.5, centered=True),
         lambda ps: torch.optim.RMSprop(ps, lr=0.01, momentum=0.5, centered=True)),
        (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
         lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ]:  # fmt: skip
        got, _ = run_minigrad(make_mg)
        tps = [torch.tensor(a, requires_grad=True) for a in initial_params()]
        topt = make_torch(tps)
        for step in range(STEPS):
            for p in tps:
                p.grad = torch.tensor(grad_fn(p.detach().numpy(), step))
            topt.step()
        for a, b in zip(got, tps, strict=True):
            np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-10, atol=1e-12)


# ----- learning-rate schedules ------------------------------------------------------------------
def _opt(lrs=(1.0, 0.1)):
    return optim.SGD([{"params": [nn.Parameter([0.0])], "lr": lr} for lr in lrs], lr=1.0)


def _schedule(scheduler, opt, epochs):
    seen = [scheduler.get_last_lr()]
    for _ in range(epochs):
        opt.step()
        scheduler.step()
        seen.append(scheduler.get_last_lr())
        assert seen[-1] == [g["lr"] for g in opt.param_groups]
    return np.array(seen)


def test_step_lr():
    opt = _opt()
    got = _schedule(lr_scheduler.StepLR(opt, step_size=3, gamma=0.5), opt, 10)
    epochs = np.arange(11)[:, None]
    np.testing.assert_allclose(got, np.array([1.0, 0.1]) * 0.5 ** (epochs // 3), rtol=1e-14)


def test_exponential_lr():
    opt = _opt()
    got = _schedule(lr_scheduler.ExponentialLR(opt, gamma=0.9), opt, 10)
    np.testing.assert_allclose(
        got, np.array([1.0, 0.1]) * 0.9 ** np.arange(11)[:, None], rtol=1e-13
    )


def test_cosine_annealing_lr():
    opt = _opt()
    got = _schedule(lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.01), opt, 25)
    t = np.arange(26)[:, None]
    expect = 0.01 + (np.array([1.0, 0.1]) - 0.01) * (1 + np.cos(np.pi * t / 10)) / 2
    np.testing.assert_allclose(got, expect, rtol=1e-13)
    assert got[10, 0] == pytest.approx(0.01) and got[20, 0] == pytest.approx(1.0)


def test_reduce_lr_on_plateau_patience_cooldown_min_lr():
    opt = _opt((1.0,))
    sched = lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2, cooldown=1, min_lr=0.1)
    lrs = []
    for metric in [10, 9] + [9] * 18:
        sched.step(metric)
        lrs.append(sched.get_last_lr()[0])
    expect = [1.0] * 4 + [0.5] * 4 + [0.25] * 4 + [0.125] * 4 + [0.1] * 4
    assert lrs == expect


def test_reduce_lr_on_plateau_max_mode_abs_threshold():
    opt = _opt((1.0,))
    sched = lr_scheduler.ReduceLROnPlateau(
        opt, mode="max", factor=0.1, patience=0, threshold=0.1, threshold_mode="abs"
    )
    lrs = []
    for metric in [1.0, 1.05, 1.2, 1.25]:
        sched.step(mg.tensor(metric))  # a 0-d tensor works as a metric
        lrs.append(sched.get_last_lr()[0])
    np.testing.assert_allclose(lrs, [1.0, 0.1, 0.1, 0.01])


def test_scheduler_state_dict_resumes():
    opt = _opt()
    sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(3):
        sched.step()
    state = sched.state_dict()
    assert "optimizer" not in state and state["last_epoch"] == 3
    opt2 = _opt()
    opt2.load_state_dict(opt.state_dict())
    sched2 = lr_scheduler.StepLR(opt2, step_size=2, gamma=0.5)
    sched2.load_state_dict(state)
    sched.step(), sched2.step()
    assert sched.get_last_lr() == sched2.get_last_lr() == [0.25, 0.025]
    plateau = lr_scheduler.ReduceLROnPlateau(opt)
    plateau.step(1.0)
    assert lr_scheduler.ReduceLROnPlateau(opt).state_dict().keys() == plateau.state_dict().keys()


def test_bad_scheduler_arguments():
    with pytest.raises(TypeError, match="not an Optimizer"):
        lr_scheduler.StepLR(object(), step_size=1)
    with pytest.raises(ValueError, match="step_size"):
        lr_scheduler.StepLR(_opt(), step_size=0)
    with pytest.raises(ValueError, match="factor"):
        lr_scheduler.ReduceLROnPlateau(_opt(), factor=1.5)
    with pytest.raises(ValueError, match="2 groups"):
        lr_scheduler.ReduceLROnPlateau(_opt(), min_lr=[0.1])
    assert math.isinf(lr_scheduler.ReduceLROnPlateau(_opt()).best)
