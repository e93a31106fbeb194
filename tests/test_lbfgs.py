"""optim.LBFGS against torch.optim.LBFGS itself (float64): every loss the closure computes, the
losses step returns, the final parameters and the counters, over several steps, with and
without the strong Wolfe line search."""

import copy

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn, optim
from minigrad.optim.lbfgs import _cubic_interpolate
from minigrad.serialization import load, save

STEPS = 4
RTOL, ATOL = 1e-10, 1e-12


def _quadratic(lib):
    r = np.random.default_rng(1)
    m = r.standard_normal((7, 7))
    a, b = lib(m @ m.T + 0.5 * np.eye(7)), lib(r.standard_normal(7))

    def loss(x, y):  # two parameters: the flat vector spans both
        v = mg.cat([x.reshape(-1), y]) if isinstance(x, mg.Tensor) else _torch_cat(x, y)
        return 0.5 * (v @ a @ v) - (b * v).sum()

    return [r.standard_normal((2, 2)), r.standard_normal(3)], loss


def _torch_cat(x, y):
    import torch

    return torch.cat([x.reshape(-1), y])


def _rosenbrock(lib):
    def loss(x):
        return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()

    return [np.array([-1.2, 1.0, -0.5, 0.8, 1.5])], loss


def _tanh_net(lib):
    r = np.random.default_rng(2)
    xs, ys = lib(r.standard_normal((20, 3))), lib(np.sin(r.standard_normal((20, 1))))

    def loss(w1, b1, w2, b2):
        return (((xs @ w1 + b1).tanh() @ w2 + b2 - ys) ** 2).mean()

    shapes = [(3, 5), (5,), (5, 1), (1,)]
    return [0.5 * r.standard_normal(s) for s in shapes], loss


PROBLEMS = {"quadratic": _quadratic, "rosenbrock": _rosenbrock, "tanh_net": _tanh_net}
# (settings, steps): up to ~40 iterations in all. Two implementations round differently (NumPy's
# and PyTorch's dot products sum in different orders; PyTorch's add_ fuses multiply and add), and
# on Rosenbrock with lr=1 and no line search an ulp grows to ~1e-9 relative by 80 iterations.
SETTINGS = [
    (dict(), 2),
    (dict(line_search_fn="strong_wolfe"), 2),
    (dict(max_iter=10), 4),
    (dict(max_iter=10, line_search_fn="strong_wolfe"), 4),
    (dict(lr=0.5, max_iter=7, history_size=3), 4),
    (dict(lr=0.8, max_iter=9, history_size=2, line_search_fn="strong_wolfe"), 3),
    (dict(max_iter=5, max_eval=3, tolerance_change=1e-5), 4),
    # The line search's other paths: extrapolation (steps too short), zooming (too long),
    # and running out of its 25 evaluations (1e-30 needs more than 25 tenfold extrapolations).
    (dict(lr=0.01, max_iter=6, line_search_fn="strong_wolfe"), 3),
    (dict(lr=30, max_iter=6, line_search_fn="strong_wolfe"), 3),
    (dict(lr=1e-30, max_iter=3, line_search_fn="strong_wolfe"), 2),
]


def run_minigrad(problem, settings, steps=STEPS, opt=None, params=None):
    init, loss_fn = PROBLEMS[problem](lambda a: mg.tensor(a, dtype=mg.float64))
    if params is None:
        params = [nn.Parameter(mg.tensor(a, dtype=mg.float64)) for a in init]
    opt = opt or optim.LBFGS(params, **settings)
    seen = []

    def closure():
        opt.zero_grad()
        loss = loss_fn(*params)
        loss.backward()
        seen.append(float(loss))
        return loss

    returned = [float(opt.step(closure)) for _ in range(steps)]
    return returned, seen, [p.numpy().copy() for p in params], opt


def run_torch(problem, settings, steps=STEPS):
    import torch

    init, loss_fn = PROBLEMS[problem](lambda a: torch.tensor(a, dtype=torch.float64))
    params = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in init]
    opt = torch.optim.LBFGS(params, **settings)
    seen = []

    def closure():
        opt.zero_grad()
        loss = loss_fn(*params)
        loss.backward()
        seen.append(loss.item())
        return loss

    returned = [opt.step(closure).item() for _ in range(steps)]
    return returned, seen, [p.detach().numpy().copy() for p in params], opt


@pytest.mark.parametrize("settings, steps", SETTINGS, ids=str)
@pytest.mark.parametrize("problem", PROBLEMS)
def test_matches_pytorch_loss_for_loss(problem, settings, steps):
    got_ret, got_seen, got_params, opt = run_minigrad(problem, settings, steps)
    want_ret, want_seen, want_params, topt = run_torch(problem, settings, steps)
    assert len(got_seen) == len(want_seen)  # the same number of closure evaluations
    np.testing.assert_allclose(got_seen, want_seen, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got_ret, want_ret, rtol=RTOL, atol=ATOL)
    for a, b in zip(got_params, want_params, strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    state = opt.state[opt.param_groups[0]["params"][0]]
    tstate = next(iter(topt.state.values()))
    assert (state["n_iter"], state["func_evals"]) == (tstate["n_iter"], tstate["func_evals"])
    assert len(state["old_dirs"]) == len(tstate["old_dirs"])
    np.testing.assert_allclose(state["d"], tstate["d"].numpy(), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(float(state["t"]), float(tstate["t"]), rtol=1e-9)
    # H_diag = s'y / y'y cancels badly once s and y are tiny, near the minimum.
    np.testing.assert_allclose(float(state["H_diag"]), float(tstate["H_diag"]), rtol=1e-6)


def test_rosenbrock_converges_with_strong_wolfe():
    settings = dict(max_iter=200, tolerance_change=1e-14, line_search_fn="strong_wolfe")
    _, seen, params, _ = run_minigrad("rosenbrock", settings, steps=1)
    np.testing.assert_allclose(params[0], np.ones(5), atol=1e-8)
    assert seen[-1] < 1e-16


def test_cubic_interpolate_finds_the_minimum_of_a_cubic():
    f = lambda x: x**3 - 3 * x  # minimum at 1  # noqa: E731
    g = lambda x: 3 * x**2 - 3  # noqa: E731
    assert _cubic_interpolate(0.0, f(0.0), g(0.0), 2.0, f(2.0), g(2.0)) == pytest.approx(1.0)
    assert _cubic_interpolate(2.0, f(2.0), g(2.0), 0.0, f(0.0), g(0.0)) == pytest.approx(1.0)
    assert _cubic_interpolate(0.0, f(0.0), g(0.0), 2.0, f(2.0), g(2.0), (1.5, 3)) == 1.5


def test_an_optimal_point_returns_at_once():
    p = nn.Parameter(mg.tensor(np.zeros(3), dtype=mg.float64))
    opt = optim.LBFGS([p])

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    assert float(opt.step(closure)) == 0.0
    assert opt.state[p] == {"func_evals": 1, "n_iter": 0}


def test_a_parameter_without_gradient_stays_and_a_graph_saved_before_the_step_is_stale():
    p, unused = (nn.Parameter(mg.tensor(np.ones(2), dtype=mg.float64)) for _ in range(2))
    opt = optim.LBFGS([p, unused], max_iter=3)

    def closure():
        opt.zero_grad()
        loss = ((p - 3) ** 2).sum()
        loss.backward()
        return loss

    stale = (p * p).sum()  # saves p, which the step then changes in place
    opt.step(closure)
    np.testing.assert_array_equal(unused.data, np.ones(2))
    np.testing.assert_allclose(p.data, [3.0, 3.0])
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        stale.backward()


def test_errors_name_the_problem():
    p = nn.Parameter(mg.tensor(np.ones(2), dtype=mg.float64))
    with pytest.raises(RuntimeError, match="LBFGS needs a closure"):
        optim.LBFGS([p]).step()
    with pytest.raises(ValueError, match="lr"):
        optim.LBFGS([p], lr=-1)
    with pytest.raises(ValueError, match="line_search_fn"):
        optim.LBFGS([p], line_search_fn="armijo")
    for bad in (dict(max_iter=0), dict(max_eval=0), dict(history_size=1.5)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            optim.LBFGS([p], **bad)
    for bad in (dict(tolerance_grad=-1), dict(tolerance_change=-1)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            optim.LBFGS([p], **bad)
    q = nn.Parameter(mg.tensor(np.ones(2), dtype=mg.float64))
    with pytest.raises(ValueError, match="parameter groups"):
        optim.LBFGS([{"params": [p]}, {"params": [q]}])
    with pytest.raises(ValueError, match="parameter groups"):
        optim.LBFGS([p]).add_param_group({"params": [q]})


@pytest.mark.parametrize("settings", [SETTINGS[4][0], SETTINGS[5][0]], ids=str)
def test_state_dict_resumes_exactly(tmp_path, settings):
    _, _, want, _ = run_minigrad("tanh_net", settings, steps=4)
    _, _, _, opt = run_minigrad("tanh_net", settings, steps=2)
    params = [nn.Parameter(mg.tensor(a, dtype=mg.float64)) for a in opt._all_params()]
    for p, a in zip(params, opt._all_params(), strict=True):
        p.data[...] = a.data
    sd = opt.state_dict()
    frozen = copy.deepcopy(sd)
    run_minigrad("tanh_net", settings, steps=1, opt=opt, params=opt._all_params())
    for k in ("old_dirs", "d", "n_iter"):  # the snapshot does not move with the optimizer
        np.testing.assert_equal(sd["state"][0][k], frozen["state"][0][k])
    save(sd, tmp_path / "opt.npz")
    fresh = optim.LBFGS(params, **settings)
    fresh.load_state_dict(load(tmp_path / "opt.npz"))
    _, _, got, _ = run_minigrad("tanh_net", settings, steps=2, opt=fresh, params=params)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_bad_state_dict_changes_nothing():
    _, _, _, opt = run_minigrad("quadratic", dict(history_size=3), steps=2)
    good = opt.state_dict()
    before = copy.deepcopy(opt.state_dict())
    bad_cases = [
        ("d", np.zeros(3), "'d' must be a floating vector of the 7"),
        ("prev_flat_grad", np.zeros(7, np.int64), "'prev_flat_grad' must be a floating"),
        ("old_dirs", good["state"][0]["old_dirs"][:-1], "equally long lists"),
        ("old_stps", [np.zeros(6)] * len(good["state"][0]["old_stps"]), "'old_stps'"),
        ("ro", ["x"] * len(good["state"][0]["ro"]), "'ro' must be a real number"),
        ("n_iter", -1, "'n_iter' must be a count"),
        ("t", "fast", "'t' must be a real number"),
    ]
    for key, value, message in bad_cases:
        sd = copy.deepcopy(good)
        sd["state"][0][key] = value
        with pytest.raises(ValueError, match=message):
            opt.load_state_dict(sd)
        sd = copy.deepcopy(good)
        sd["param_groups"][0]["params"] = [0]  # checked by Optimizer, after LBFGS's own checks
        with pytest.raises(ValueError, match="parameters"):
            opt.load_state_dict(sd)
        after = opt.state_dict()
        np.testing.assert_equal(after["state"], before["state"])


def _bumpy(seed):
    """A 1-D function with a few Gaussian bumps on a wide bowl: value and derivative."""
    r = np.random.default_rng(seed)
    c, a, w = r.uniform(-3, 8, 6), r.uniform(-2, 2, 6), r.uniform(0.2, 2, 6)

    def f(x):
        e = a * np.exp(-(((x - c) / w) ** 2))
        return float(0.02 * x * x + e.sum()), float(0.04 * x + (e * -2 * (x - c) / w**2).sum())

    return f, r.uniform(0.01, 50)


# Seeds whose searches reach the zoom's rarer branches (pushed off an end of the bracket after
# too little progress, the old high becoming the new low) besides the common ones.
@pytest.mark.parametrize("seed", [4, 5, 7, 20, 32, 67, 124, 138])
def test_strong_wolfe_matches_pytorch_on_bumpy_lines(seed):
    import torch
    from torch.optim.lbfgs import _strong_wolfe as torch_strong_wolfe

    from minigrad.optim.lbfgs import _strong_wolfe

    f, t0 = _bumpy(seed)
    f0, g0 = f(0.0)
    assert g0 < 0

    def ours(t):
        value, slope = f(t)
        return value, np.array([slope])

    def theirs(x, t, d):
        value, slope = f(float(t))
        return value, torch.tensor([slope], dtype=torch.float64)

    got = _strong_wolfe(ours, t0, np.ones(1), f0, np.array([g0]), g0)
    one = torch.ones(1, dtype=torch.float64)
    want = torch_strong_wolfe(theirs, None, t0, one, f0, torch.tensor([g0]).double(), g0)
    assert got[3] == want[3]  # the same number of evaluations
    np.testing.assert_allclose([got[0], float(got[2])], [want[0], float(want[2])], rtol=1e-12)
