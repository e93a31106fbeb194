"""mg.fuse: fused functions give the values and gradients of the unfused ones.

Cells (LSTM, GRU in both forms, Elman tanh/relu) against their unfused selves in float64 (to
1e-12) and float32 (to a few ulp), and by finite differences; random elementwise DAGs reading
inputs whole, broadcast and as chunk slices; the float32 transcendentals of scalar.py against
NumPy to 1 ulp; replay, retracing, no_grad, aliasing, captured parameters, double backward and
the fused node in the graph; the errors a trace cannot support; the recurrent layers with
fuse=True against fuse=False; and where the generated source is written.

Every distinct fused group compiles a forward and a backward Numba kernel (a fraction of a
second each), so the behaviour tests reuse the cells' functions, and the random DAGs are few and
small.
"""

import hashlib
import math

import numba
import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import fusion
from minigrad.fusion import FusedOp
from minigrad.fusion.scalar import exp32, sigmoid32, tanh32
from models.cells import gru_step, gru_step_reset_before, lstm_step, rnn_step
from models.layers import GRU, LSTM, RNN

B, H = 2, 3  # the cells' batch and hidden sizes (kernels are compiled once per structure)

CELLS = {  # name: (step function, constant arguments after the tensors)
    "lstm": (lstm_step, ()),
    "gru": (gru_step, ()),
    "gru_reset_before": (gru_step_reset_before, ()),
    "rnn_tanh": (rnn_step, ("tanh",)),
    "rnn_relu": (rnn_step, ("relu",)),
}


def cell_arrays(kind, rng, batch=B):
    """float64 arguments for one step of `kind`: (gi, states..., weights and biases)."""

    def u(*shape):
        return rng.uniform(-1.0, 1.0, shape)

    if kind == "lstm":
        return [2 * u(batch, 4 * H), u(batch, H), u(batch, H), u(4 * H, H), u(4 * H)]
    if kind == "gru":
        return [2 * u(batch, 3 * H), u(batch, H), u(3 * H, H), u(3 * H)]
    if kind == "gru_reset_before":
        return [2 * u(batch, 3 * H), u(batch, H), u(2 * H, H), u(2 * H), u(H, H), u(H)]
    return [2 * u(batch, H), u(batch, H), u(H, H), u(H)]


def leaves(arrays, dtype=np.float64):
    return [mg.tensor(np.asarray(a, dtype=dtype), requires_grad=True) for a in arrays]


def as_list(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def weighted_loss(outs, seed=100):
    """sum_k <out_k, w_k> with fixed random w_k, so that every output element matters."""
    loss = None
    for k, o in enumerate(outs):
        w = np.random.default_rng(seed + k).standard_normal(o.shape).astype(o.dtype)
        term = (o * mg.tensor(w)).sum()
        loss = term if loss is None else loss + term
    return loss


def evaluate(fn, tensors, extra=()):
    """fn(*tensors, *extra): (output tensors, copies of the tensors' gradients)."""
    outs = as_list(fn(*tensors, *extra))
    weighted_loss(outs).backward()
    return outs, [None if t.grad is None else t.grad.numpy().copy() for t in tensors]


def assert_all_close(actual, expected, rtol, what):
    """Arrays (or Nones, which must match) agree to rtol, relative to the largest |expected|
    for elements near zero; dtypes and shapes must match."""
    assert len(actual) == len(expected), what
    for k, (a, e) in enumerate(zip(actual, expected, strict=True)):
        if e is None or a is None:
            assert a is None and e is None, f"{what}[{k}]: one side has no gradient"
            continue
        a, e = np.asarray(a), np.asarray(e)
        assert a.dtype == e.dtype and a.shape == e.shape, f"{what}[{k}]"
        scale = max(1.0, float(np.abs(e).max(initial=0.0)))
        np.testing.assert_allclose(a, e, rtol=rtol, atol=rtol * scale, err_msg=f"{what}[{k}]")


def op_names(t):
    nodes, _ = mg.graph.walk(t)
    return [node.name for node in nodes]


def fused_names(t):
    return [name for name in op_names(t) if name.startswith("Fused(")]


# ----- 1. cells: fused == unfused -----------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("kind", list(CELLS))
def test_fused_cell_step_equals_unfused(kind, dtype):
    step, extra = CELLS[kind]
    arrays = cell_arrays(kind, np.random.default_rng(0))
    fused = mg.fuse(step)
    outs, grads = evaluate(fused, leaves(arrays, dtype), extra)
    ref_outs, ref_grads = evaluate(step, leaves(arrays, dtype), extra)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    assert_all_close([o.data for o in outs], [o.data for o in ref_outs], rtol, f"{kind} values")
    assert_all_close(grads, ref_grads, rtol, f"{kind} gradients")
    assert all(g is not None for g in grads)  # every argument is differentiated
    assert len(fused.plans) == 1
    if kind.startswith("rnn"):  # two elementwise ops, fewer than MIN_OPS: replayed as they are
        assert not fused_names(outs[0]) and op_names(outs[0]) == op_names(ref_outs[0])
        return
    # ... the gated cells were fused: the elementwise ops (and the matmul) are one node.
    assert fused_names(outs[0]), op_names(outs[0])
    assert "Sigmoid" not in op_names(outs[0]) and "Tanh" not in op_names(outs[0])
    assert len(op_names(outs[0])) < len(op_names(ref_outs[0]))


@pytest.mark.parametrize("kind", list(CELLS))
def test_fused_cell_step_passes_gradcheck(kind):
    step, extra = CELLS[kind]
    fused = mg.fuse(step)
    inputs = leaves(cell_arrays(kind, np.random.default_rng(1)))
    assert mg.gradcheck(lambda *xs: fused(*xs, *extra), inputs)
    assert len(fused.plans) == 1  # the no_grad evaluations replayed the traced plan


# ----- 2. random elementwise DAGs -----------------------------------------------------------------
UNARY = ("neg", "exp", "log", "sqrt", "tanh", "sigmoid", "relu")
BINARY = ("add", "sub", "mul", "div")
POS, ANY = (0.5, 2.0), (-2.0, 2.0)  # leaf value ranges


def _interval(op, a, b=None):
    """Bounds of op's result from its operands' bounds, or None where op is out of its safe
    domain (log/sqrt/div need operands away from 0, exp a moderate argument)."""
    lo, hi = a
    if op == "neg":
        r = (-hi, -lo)
    elif op == "exp":
        r = (math.exp(lo), math.exp(hi)) if hi <= 8 else None
    elif op in ("log", "sqrt"):
        r = (
            ((math.log(lo), math.log(hi)) if op == "log" else (lo**0.5, hi**0.5))
            if lo >= 0.25
            else None
        )
    elif op == "tanh":
        r = (math.tanh(lo), math.tanh(hi))
    elif op == "sigmoid":
        r = (1 / (1 + math.exp(-lo)), 1 / (1 + math.exp(-hi)))
    elif op == "relu":
        r = (max(lo, 0.0), max(hi, 0.0))
    elif op == "add":
        r = (lo + b[0], hi + b[1])
    elif op == "sub":
        r = (lo - b[1], hi - b[0])
    elif op == "mul":
        p = [x * y for x in a for y in b]
        r = (min(p), max(p))
    else:  # div
        ok = b[0] >= 0.25 or b[1] <= -0.25
        q = [x / y for x in a for y in b] if ok else None
        r = (min(q), max(q)) if ok else None
    return r if r is not None and max(abs(r[0]), abs(r[1])) <= 1e4 else None


def _apply(op, a, b=None):
    if op == "neg":
        return -a
    if op in UNARY:
        return getattr(a, op)()
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    return a * b if op == "mul" else a / b


@st.composite
def dags(draw):
    """A random elementwise program over the inputs (x, row, s, col, wide, other):
    x of the full shape S, row (C,), s a 0-d scalar, col S[:-1] + (1,), and the k chunks of
    `wide op other` ((..., k*C), `op` one of the cheap ones, so the chunks are inlined).
    Every chunk is an operand of one of the first k ops; every value no later op reads is an
    output, so that no op is dead and every gradient path is compared."""
    shape = draw(st.sampled_from([(2, 3), (2, 2, 3)]), label="shape")
    k = draw(st.integers(2, 3), label="chunks")
    names = ("x", "row", "s", "col", "wide", "other")
    domains = {n: draw(st.sampled_from([POS, ANY]), label=f"domain {n}") for n in names}
    wide_op = draw(st.sampled_from(["add", "sub", "mul", "div", "neg", "none"]), label="wide op")
    other_kind = draw(st.sampled_from(["row", "full", "col", "scalar"]), label="other")
    if wide_op == "div":
        domains["other"] = POS
    wide_bounds = domains["wide"]
    if wide_op == "neg":
        wide_bounds = _interval("neg", wide_bounds)
    elif wide_op != "none":
        wide_bounds = _interval(wide_op, wide_bounds, domains["other"])
    bounds = [domains["x"], domains["row"], domains["s"], domains["col"]] + [wide_bounds] * k
    n_leaves = len(bounds)
    program = []
    n_ops = draw(st.integers(k, k + 3), label="ops")
    for n in range(n_ops):
        op = draw(st.sampled_from(UNARY + BINARY))
        i = 4 + n if n < k else draw(st.integers(0, len(bounds) - 1))
        j = draw(st.integers(0, len(bounds) - 1)) if op in BINARY else None
        if op == "div" and _interval(op, bounds[i], bounds[j]) is None:
            safe = [m for m, b in enumerate(bounds) if b[0] >= 0.25 or b[1] <= -0.25]
            j = draw(st.sampled_from(safe)) if safe else j
        r = _interval(op, bounds[i], None if j is None else bounds[j])
        if r is None:  # out of its domain: a tanh of the first operand instead
            op, j, r = "tanh", None, _interval("tanh", bounds[i])
        program.append((op, i, j))
        bounds.append(r)
    read = {m for _, i, j in program for m in (i, j)}
    outputs = [m for m in range(n_leaves, len(bounds)) if m not in read]
    return dict(
        shape=shape,
        k=k,
        domains=domains,
        wide_op=wide_op,
        other_kind=other_kind,
        program=program,
        outputs=outputs,
    )


def _dag_function(dag):
    def fn(x, row, s, col, wide, other):
        if dag["wide_op"] == "none":
            base = wide
        elif dag["wide_op"] == "neg":
            base = -wide
        else:
            base = _apply(dag["wide_op"], wide, other)
        values = [x, row, s, col, *base.chunk(dag["k"], axis=-1)]
        for op, i, j in dag["program"]:
            values.append(_apply(op, values[i], None if j is None else values[j]))
        outs = tuple(values[i] for i in dag["outputs"])
        return outs if len(outs) > 1 else outs[0]

    return fn


def _dag_inputs(dag, rng):
    shape, k = dag["shape"], dag["k"]
    C = shape[-1]
    wide = shape[:-1] + (k * C,)
    other = {"full": wide, "row": (k * C,), "col": shape[:-1] + (1,), "scalar": ()}
    shapes = {
        "x": shape,
        "row": (C,),
        "s": (),
        "col": shape[:-1] + (1,),
        "wide": wide,
        "other": other[dag["other_kind"]],
    }
    return [rng.uniform(*dag["domains"][n], size=shapes[n]) for n in shapes]


@pytest.fixture(scope="module")
def throwaway_cache(tmp_path_factory):
    """A directory for the random DAGs' kernels, which are never met again: compiled outside
    the user's cache."""
    return str(tmp_path_factory.mktemp("fused_dags"))


@settings(max_examples=20)
@given(dag=dags(), seed=st.integers(0, 2**32 - 1))
def test_random_elementwise_dags_fused_equal_unfused(throwaway_cache, dag, seed):
    rng = np.random.default_rng(seed)
    fn = _dag_function(dag)
    fused = mg.fuse(fn)
    for call in range(2):  # the trace's call, then a replay on new values
        arrays = _dag_inputs(dag, rng)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MINIGRAD_CACHE_DIR", throwaway_cache)
            outs, grads = evaluate(fused, leaves(arrays))
        ref_outs, ref_grads = evaluate(fn, leaves(arrays))
        assert_all_close([o.data for o in outs], [o.data for o in ref_outs], 1e-12, "values")
        assert_all_close(grads, ref_grads, 1e-11, f"gradients (call {call})")
    assert len(fused.plans) == 1
    nodes = {id(n) for o in outs for n in mg.graph.walk(o)[0] if n.name.startswith("Fused(")}
    event(f"fused nodes: {len(nodes)}")


def _linear_and_its_activation(h, w):
    pre = F.linear(h, w)  # read by the group and returned: not absorbed into it
    return pre.tanh() * 2, pre


def _matmul_read_whole_and_sliced(h, w):
    pre = h @ w  # absorbed into the group, which reads it as two leaves: whole and a view
    return (pre * pre[:, 0:3]).tanh()


STRUCTURES = {  # name: (function, argument shapes)
    "matmul_read_whole_and_sliced": (_matmul_read_whole_and_sliced, [(2, 3), (3, 3)]),
    "linear_also_returned": (_linear_and_its_activation, [(2, 3), (3, 3)]),
    "matmul_and_reduction": (lambda a, b: (a @ b).sigmoid() * a.sum(), [(2, 3), (3, 3)]),
    "chunks_of_a_sigmoid": (  # a transcendental base is read as views, not recomputed
        lambda a, b: [p * b for p in (a.sigmoid() * 2).chunk(2, axis=-1)],
        [(2, 6), (2, 3)],
    ),
    "uneven_split": (lambda a: [p.tanh() for p in (a * 2).split([1, 3], axis=-1)], [(2, 4)]),
    "middle_broadcast": (lambda a, m: (a * m).tanh() + a, [(2, 2, 3), (2, 1, 3)]),
    "first_axis_chunks": (lambda a: [p.tanh() * 2 for p in a.chunk(2, axis=0)], [(4, 3)]),
    "one_value_returned_twice": (lambda a: ((a * a).tanh(),) * 2, [(2, 3)]),
    "an_argument_returned": (lambda a, b: ((a * b).tanh(), a), [(2, 3), (2, 3)]),
}


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_assorted_structures_fused_equal_unfused(name):
    fn, shapes = STRUCTURES[name]
    rng = np.random.default_rng(20)
    fused = mg.fuse(fn)
    for _ in range(2):
        arrays = [rng.uniform(-1, 1, shape) for shape in shapes]
        outs, grads = evaluate(fused, leaves(arrays))
        ref_outs, ref_grads = evaluate(fn, leaves(arrays))
        assert_all_close([o.data for o in outs], [o.data for o in ref_outs], 1e-12, name)
        assert_all_close(grads, ref_grads, 1e-12, f"{name} gradients")
    assert len(fused.plans) == 1


def test_an_input_read_only_by_unused_ops_gets_no_gradient():
    def fn(x, y):
        unused = (x * 2).tanh()  # noqa: F841 (dead: not part of the result)
        return (y * y).sigmoid()

    for step in (fn, mg.fuse(fn)):
        x, y = leaves([np.ones((2, 3)), np.full((2, 3), 0.5)])
        step(x, y).sum().backward()
        assert y.grad is not None
        assert x.grad is None, f"{getattr(step, '__name__', step)}: x.grad = {x.grad}"


def test_a_group_pruned_to_one_op_runs_that_op():
    """The dead member comes first; the one left (y * 3) must be the op that runs."""

    def fn(x, y):
        unused = (x * 2).tanh()  # noqa: F841 (dead: not part of the result)
        return y * 3

    f = mg.fuse(fn)
    x, y = leaves([np.ones((2, 3)), np.full((2, 3), 0.5)])
    out = f(x, y)
    out.sum().backward()
    np.testing.assert_array_equal(out.data, np.full((2, 3), 1.5))
    np.testing.assert_array_equal(y.grad, np.full((2, 3), 3.0))
    assert x.grad is None


def test_python_runs_fn_only_to_trace_unless_nothing_fuses():
    calls = []

    def fusable(x, w):
        calls.append("fusable")
        return ((x @ w).tanh() * x).sigmoid()

    def too_small(x, w):  # add + tanh: fewer than MIN_OPS, so the plan fuses nothing
        calls.append("too_small")
        return (x @ w + x).tanh()

    x, w = leaves([np.full((2, 2), 0.5), np.eye(2)])
    for fn, expected in ((fusable, 1), (too_small, 3)):
        f = mg.fuse(fn)
        first, second = f(x, w), f(x, w)
        # A plan that fuses nothing is not replayed: fn itself runs, after the one trace.
        assert calls.count(fn.__name__) == expected
        assert bool(fused_names(second)) == (fn is fusable)
        np.testing.assert_array_equal(first.data, second.data)
        np.testing.assert_allclose(second.data, fn(x, w).data, rtol=1e-15)


# ----- 3. the float32 transcendentals of scalar.py ------------------------------------------------
@numba.njit(error_model="numpy")
def _transcendentals32(x):
    e, t, s = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    for i in range(x.size):
        e[i] = exp32(x[i])
        t[i] = tanh32(x[i])
        s[i] = sigmoid32(x[i])
    return e, t, s


def _ordered(a):
    """float32 bits as integers that count ulps (+0 and -0 both 0; inf one past the max)."""
    i = a.view(np.int32).astype(np.int64)
    return np.where(i < 0, -(i & 0x7FFFFFFF), i)


F32 = np.finfo(np.float32)
SPECIAL32 = np.array(
    [0.0, -0.0, 1e-30, -1e-30, 1e-45, -1e-45, F32.tiny, -F32.tiny, 1e-5, -1e-5, 1e-3, 0.5]
    + [88.72, 88.73, 89.0, 95.0, -87.3, -103.2, -103.97, -104.0, -110.0]
    + [1e30, -1e30, F32.max, -F32.max, np.inf, -np.inf],
    dtype=np.float32,
)


def _reference32(x):
    """exp, tanh and sigmoid in float64, rounded once to float32."""
    d = x.astype(np.float64)
    e = np.exp(-np.abs(d))  # the stable sigmoid: 1 / (1 + e) or e / (1 + e)
    sig = np.where(d >= 0, 1 / (1 + e), e / (1 + e))
    with np.errstate(over="ignore"):  # exp overflows float64, or float32 when rounded
        return [v.astype(np.float32) for v in (np.exp(d), np.tanh(d), sig)]


def test_float32_exp_tanh_sigmoid_within_one_ulp_of_numpy():
    rng = np.random.default_rng(0)
    magnitudes = 10.0 ** rng.uniform(-38, 2, 100_000)  # log-uniform: tiny to large, both signs
    x = np.concatenate(
        [
            np.linspace(-110, 95, 200_001, dtype=np.float32),
            (magnitudes * rng.choice([-1, 1], magnitudes.size)).astype(np.float32),
            SPECIAL32,
        ]
    )
    got = _transcendentals32(x)
    for name, g, want in zip(("exp", "tanh", "sigmoid"), got, _reference32(x), strict=True):
        assert g.dtype == np.float32
        ulps = np.abs(_ordered(g) - _ordered(want))
        worst = int(np.argmax(ulps))
        assert ulps.max() <= 1, f"{name}({x[worst]!r}) = {g[worst]!r}, expected {want[worst]!r}"
        # Correctly rounded but for rare near-ties (the float64 polynomial is ~1e-9 relative).
        assert np.mean(ulps == 0) > 0.99, f"{name}: {np.mean(ulps != 0):.2%} not exactly rounded"
        # The special values are exact: 0, +-1, inf, underflow to 0, tiny arguments.
        special = ulps[-SPECIAL32.size :]
        assert special.max() == 0, f"{name}: {SPECIAL32[special > 0]} are not exact"


def test_float32_transcendentals_at_the_edges():
    x = np.array([0.0, 95.0, 1e30, np.inf, -np.inf, -110.0, 1e-30, np.nan], np.float32)
    e, t, s = _transcendentals32(x)
    np.testing.assert_array_equal(e[:6], [1.0, np.inf, np.inf, np.inf, 0.0, 0.0])
    np.testing.assert_array_equal(t[:7], [0.0, 1.0, 1.0, 1.0, -1.0, -1.0, np.float32(1e-30)])
    np.testing.assert_array_equal(s[:6], [0.5, 1.0, 1.0, 1.0, 0.0, 0.0])
    assert np.isnan(e[-1]) and np.isnan(t[-1]) and np.isnan(s[-1])  # NaN passes through


def test_float32_tanh_keeps_the_sign_of_zero():
    # tanh is odd: NumPy (and the unfused float32 op, and the fused float64 kernel) give -0.0.
    _, t, _ = _transcendentals32(np.array([-0.0, 0.0], np.float32))
    assert np.signbit(t[0]) and not np.signbit(t[1]), t


# ----- 4. behaviour -------------------------------------------------------------------------------
def test_replay_reuses_the_plan_bit_for_bit_and_new_shapes_retrace():
    f = mg.fuse(lstm_step)
    arrays = cell_arrays("lstm", np.random.default_rng(2))
    first, first_grads = evaluate(f, leaves(arrays))
    second, second_grads = evaluate(f, leaves(arrays))
    assert len(f.plans) == 1
    for a, b in zip(first + first_grads, second + second_grads, strict=True):
        a = a.data if isinstance(a, mg.Tensor) else a
        b = b.data if isinstance(b, mg.Tensor) else b
        np.testing.assert_array_equal(a, b)  # the traced call ran the same kernels

    # New values, same signature: replayed, and right.
    arrays = cell_arrays("lstm", np.random.default_rng(3))
    outs, grads = evaluate(f, leaves(arrays))
    ref_outs, ref_grads = evaluate(lstm_step, leaves(arrays))
    assert len(f.plans) == 1
    assert_all_close([o.data for o in outs], [o.data for o in ref_outs], 1e-12, "replay")
    assert_all_close(grads, ref_grads, 1e-12, "replay gradients")

    # A new batch size is a new signature: traced again; the old one is kept.
    arrays = cell_arrays("lstm", np.random.default_rng(4), batch=5)
    outs, grads = evaluate(f, leaves(arrays))
    ref_outs, ref_grads = evaluate(lstm_step, leaves(arrays))
    assert len(f.plans) == 2
    assert outs[0].shape == (5, H)
    assert_all_close([o.data for o in outs], [o.data for o in ref_outs], 1e-12, "retrace")
    assert_all_close(grads, ref_grads, 1e-12, "retrace gradients")
    evaluate(f, leaves(cell_arrays("lstm", np.random.default_rng(5))))
    assert len(f.plans) == 2


def test_constant_arguments_are_part_of_the_signature():
    f = mg.fuse(rnn_step)
    arrays = cell_arrays("rnn_tanh", np.random.default_rng(6))
    for nonlinearity, n_plans in [("tanh", 1), ("relu", 2), ("tanh", 2)]:
        out = f(*leaves(arrays), nonlinearity)
        ref = rnn_step(*leaves(arrays), nonlinearity)
        assert len(f.plans) == n_plans
        np.testing.assert_allclose(out.data, ref.data, rtol=1e-12, atol=1e-12)
    assert (f(*leaves(arrays), "relu").data >= 0).all()


def test_no_grad_gives_no_graph_and_the_plan_serves_grad_mode_too():
    f = mg.fuse(lstm_step)
    arrays = cell_arrays("lstm", np.random.default_rng(7))
    with mg.no_grad():  # traced without a graph
        h, c = f(*leaves(arrays))
    assert not h.requires_grad and h._node is None and c._node is None
    ref_outs, ref_grads = evaluate(lstm_step, leaves(arrays))
    np.testing.assert_allclose(h.data, ref_outs[0].data, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c.data, ref_outs[1].data, rtol=1e-12, atol=1e-12)
    outs, grads = evaluate(f, leaves(arrays))  # the same plan, now recording a graph
    assert len(f.plans) == 1 and outs[0].requires_grad
    assert_all_close(grads, ref_grads, 1e-12, "gradients after a no_grad trace")
    with mg.no_grad():
        h2, _ = f(*leaves(arrays))
    assert h2._node is None
    np.testing.assert_array_equal(h2.data, outs[0].data)


def test_a_tensor_passed_twice():
    # A layer's first LSTM step gets the same zeros tensor as h and c.
    rng = np.random.default_rng(8)
    gi, z, _, w, b = cell_arrays("lstm", rng)
    f = mg.fuse(lstm_step)

    def twice(step):
        outs, grads = evaluate(
            lambda g_, z_, w_, b_: step(g_, z_, z_, w_, b_), leaves([gi, z, w, b])
        )
        return [o.data for o in outs], grads

    got, ref = twice(f), twice(lstm_step)
    assert_all_close(got[0], ref[0], 1e-12, "aliased values")
    assert_all_close(got[1], ref[1], 1e-12, "aliased gradients")  # z's: the sum of both uses
    # Distinct tensors (with z's value) get a plan of their own; the aliased one stays right.
    args = cell_arrays("lstm", rng)
    distinct, _ = evaluate(f, leaves(args))
    assert len(f.plans) == 2
    np.testing.assert_allclose(distinct[0].data, lstm_step(*leaves(args))[0].data, rtol=1e-12)
    again = twice(f)
    assert len(f.plans) == 2
    assert_all_close(again[0], ref[0], 1e-12, "aliased values after a distinct call")


def test_captured_parameters_are_read_by_reference():
    rng = np.random.default_rng(9)
    gi, h, c, w, b = cell_arrays("lstm", rng)
    W, bias = leaves([w, b])  # parameters: read from the closure, not passed

    def step(gi, h, c):
        return lstm_step(gi, h, c, W, bias)

    f = mg.fuse(step)

    def check(what):
        W.grad = bias.grad = None
        outs, grads = evaluate(f, leaves([gi, h, c]))
        fused = [o.data for o in outs] + grads + [W.grad.numpy().copy(), bias.grad.numpy().copy()]
        W.grad = bias.grad = None
        outs, grads = evaluate(step, leaves([gi, h, c]))
        ref = [o.data for o in outs] + grads + [W.grad.numpy().copy(), bias.grad.numpy().copy()]
        assert_all_close(fused, ref, 1e-12, what)
        return fused

    before = check("captured parameters")
    W.data *= 0.5  # in place
    after = check("after an in-place update")
    assert not np.allclose(before[0], after[0])
    bias.data = mg.from_numpy(rng.uniform(-1, 1, bias.shape))  # a new array of the same shape
    newest = check("after assigning .data")
    assert not np.allclose(after[0], newest[0])
    assert len(f.plans) == 1


def test_a_captured_tensor_that_was_also_an_argument_stays_captured():
    # An RNN whose learned initial state h0 is also pulled on at every step: the first step is
    # called with h = h0 itself. Later steps must still read the captured h0, not their h.
    rng = np.random.default_rng(10)
    h0 = mg.tensor(rng.uniform(-1, 1, (B, H)), requires_grad=True)

    def step(x, h):
        return (x + h + 0.5 * h0).tanh()

    f = mg.fuse(step)
    xs = [mg.tensor(rng.uniform(-1, 1, (B, H))) for _ in range(3)]
    h_fused = h_ref = h0
    for x in xs:
        h_fused, h_ref = f(x, h_fused), step(x, h_ref)
        np.testing.assert_allclose(h_fused.data, h_ref.data, rtol=1e-12, atol=1e-12)


def test_retain_graph_allows_a_second_backward():
    f = mg.fuse(lstm_step)
    xs = leaves(cell_arrays("lstm", np.random.default_rng(11)))
    loss = weighted_loss(as_list(f(*xs)))
    loss.backward(retain_graph=True)
    once = [x.grad.numpy().copy() for x in xs]
    loss.backward()
    for x, g in zip(xs, once, strict=True):
        np.testing.assert_allclose(x.grad, 2 * g, rtol=1e-14, atol=0)
    # Without retain_graph the fused node's saved arrays are freed, and it says so.
    y = mg.fuse(scaled_rnn_step)(*leaves(cell_arrays("rnn_tanh", np.random.default_rng(11))))
    y.backward(np.ones(y.shape))
    with pytest.raises(RuntimeError, match=r"Fused\(.*retain_graph"):
        y.backward(np.ones(y.shape))


def scaled_rnn_step(gi, h, w, b):
    """Three elementwise ops (add, tanh, mul): enough to be fused."""
    return rnn_step(gi, h, w, b, "tanh") * 0.5


def test_the_fused_node_is_in_the_graph():
    f = mg.fuse(scaled_rnn_step)
    gi, h, w, b = leaves(cell_arrays("rnn_tanh", np.random.default_rng(12)))
    y = f(gi, h, w, b)
    assert y._node.name.startswith("Fused(")
    assert "linear" in y._node.name and "tanh" in y._node.name  # the matmul is absorbed
    assert "Fused(" in mg.graph.to_dot(y)
    assert mg.graph.stats(y)["nodes"] == 1
    assert mg.graph.stats(scaled_rnn_step(gi, h, w, b))["nodes"] > 1
    # Multiple outputs come out of one node: h and c share it.
    h2, c2 = mg.fuse(lstm_step)(*leaves(cell_arrays("lstm", np.random.default_rng(12))))
    (node,) = [n for n in mg.graph.walk(h2)[0] if n.name.startswith("Fused(")]
    assert any(n is node for n in mg.graph.walk(c2)[0])


def test_random_ops_draw_as_unfused():
    def fn(x, y):
        return F.dropout(x * y, 0.5).tanh() * y

    f = mg.fuse(fn)
    rng = np.random.default_rng(13)
    x, y = rng.uniform(-1, 1, (4, 5)), rng.uniform(0.5, 1, (4, 5))
    mg.manual_seed(0)
    fused = [f(*leaves([x, y])).data for _ in range(3)]
    mg.manual_seed(0)
    ref = [fn(*leaves([x, y])).data for _ in range(3)]
    assert len(f.plans) == 1
    for a, b in zip(fused, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert not np.array_equal(fused[0] == 0, fused[1] == 0)  # a new mask each call


def test_nested_fuse_and_structured_arguments():
    inner = mg.fuse(lstm_step)

    def outer_fn(gi, state, weights):
        (h, c), (w, b) = state, weights
        return inner(gi, h, c, w, b)

    outer = mg.fuse(outer_fn)
    gi, h, c, w, b = cell_arrays("lstm", np.random.default_rng(14))

    def run(fn):
        ts = leaves([gi, h, c, w, b])
        return evaluate(lambda *x: fn(x[0], (x[1], x[2]), [x[3], x[4]]), ts)

    outs, grads = run(outer)
    ref_outs, ref_grads = run(lambda gi, state, weights: lstm_step(gi, *state, *weights))
    assert_all_close([o.data for o in outs], [o.data for o in ref_outs], 1e-12, "nested")
    assert_all_close(grads, ref_grads, 1e-12, "nested gradients")
    assert len(outer.plans) == 1 and len(inner.plans) == 0  # inner ran inside outer's trace
    assert fused_names(outs[0])


def test_empty_batch_and_non_contiguous_arguments():
    f = mg.fuse(lstm_step)
    arrays = cell_arrays("lstm", np.random.default_rng(15), batch=0)
    outs, grads = evaluate(f, leaves(arrays))
    assert outs[0].shape == (0, H) and grads[3].shape == (4 * H, H)
    assert not grads[3].any()

    gi, _, c, w, b = cell_arrays("lstm", np.random.default_rng(16), batch=3)
    wide = np.random.default_rng(17).uniform(-1, 1, (3, 2 * H))

    def run(step):
        ts = leaves([gi, wide, c, w, b])
        ts[0].data = mg.from_numpy(np.asfortranarray(ts[0].numpy()))  # column-major
        assert not ts[0].numpy().flags.c_contiguous

        def strided(gi, wide, c, w, b):
            h = wide[:, ::2]  # a strided view, made outside the fused function
            assert not h.numpy().flags.c_contiguous
            return step(gi, h, c, w, b)

        outs, grads = evaluate(strided, ts)
        return [o.data for o in outs], grads

    (outs, grads), (ref_outs, ref_grads) = run(f), run(lstm_step)
    assert_all_close(outs, ref_outs, 1e-12, "strided")
    assert_all_close(grads, ref_grads, 1e-12, "strided gradients")


# ----- 5. errors ----------------------------------------------------------------------------------
def test_fuse_needs_a_function():
    with pytest.raises(TypeError, match=r"mg\.fuse.*expected a function.*int"):
        mg.fuse(3)


@pytest.mark.parametrize(
    "bad", [{"a": 1}, np.ones(3), [np.ones(2)]], ids=["dict", "ndarray", "list"]
)
def test_unhashable_arguments_are_refused(bad):
    f = mg.fuse(lambda x, _: x.tanh() * x)
    with pytest.raises(TypeError, match=r"mg\.fuse.*hashable"):
        f(mg.tensor(np.ones(3)), bad)
    assert not f.plans


@pytest.mark.parametrize("which", ["where", "index array"])
def test_ops_taking_numpy_arrays_are_refused(which):
    mask = np.array([True, False, True])

    def fn(a, b):
        if which == "where":
            return mg.where(mask, a, b).tanh()
        return (a * b)[np.array([0, 2])]

    f = mg.fuse(fn)
    a, b = leaves([np.ones(3), np.full(3, 2.0)])
    with pytest.raises(TypeError, match=r"mg\.fuse\(.*fn\).*(Where|GetItem).*NumPy array"):
        f(a, b)
    assert not f.plans
    # A failed trace leaves nothing behind: ordinary ops record no trace, fusing still works.
    g = mg.fuse(lambda x: (x * x).tanh())
    np.testing.assert_allclose(g(a).data, np.tanh(1.0))
    assert len(g.plans) == 1


def test_a_tensor_computed_outside_must_be_an_argument():
    x = mg.tensor(np.ones((2, 3)), requires_grad=True)
    outside = x * 2

    def fn(y):
        return (y + outside).tanh()

    with pytest.raises(ValueError, match=r"mg\.fuse\(.*fn\).*\(2, 3\).*outside.*Mul.*argument"):
        mg.fuse(fn)(mg.tensor(np.ones((2, 3))))


def test_a_captured_tensor_that_changed_shape():
    rng = np.random.default_rng(18)
    gi, h, c, w, b = cell_arrays("lstm", rng)
    W, bias = leaves([w, b])

    def step(gi, h, c):
        return lstm_step(gi, h, c, W, bias)

    f = mg.fuse(step)
    f(*leaves([gi, h, c]))
    bias.data = mg.from_numpy(np.zeros(4 * H + 1))
    with pytest.raises(RuntimeError, match=r"mg\.fuse\(.*step\).*changed shape.*\(12,\).*\(13,\)"):
        f(*leaves([gi, h, c]))


# ----- 6. layers ----------------------------------------------------------------------------------
T, IN = 5, 2
LAYERS = {
    "rnn_tanh": lambda **kw: RNN(IN, H, **kw),
    "rnn_relu": lambda **kw: RNN(IN, H, nonlinearity="relu", **kw),
    "lstm": lambda **kw: LSTM(IN, H, **kw),
    "gru": lambda **kw: GRU(IN, H, **kw),
    "gru_reset_before": lambda **kw: GRU(IN, H, reset_after=False, **kw),
}
OPTIONS = {  # layer arguments, lengths, whether to pass h0
    "plain": ({}, None, False),
    "stacked_bidirectional_h0": ({"num_layers": 2, "bidirectional": True}, None, True),
    "stacked_bidirectional_lengths_h0": ({"num_layers": 2, "bidirectional": True}, [T, 2, 4], True),
    "dropout_between_layers": ({"num_layers": 2, "dropout": 0.5}, None, False),
    "checkpointed": ({"checkpoint_every": 2}, None, True),
    "checkpointed_lengths": ({"checkpoint_every": 2}, [3, T, 1], False),
}


def test_layers_fuse_by_default():
    for make in LAYERS.values():
        layer = make()
        assert layer.fuse is True and layer.scan is True
    assert LSTM(IN, H, fuse=False).fuse is False


def _layer_run(layer, x, h0, lengths):
    """Output, final states, the fused node count and every gradient of a weighted loss."""
    mg.manual_seed(3)  # the same dropout masks in every run
    xt = mg.tensor(x, requires_grad=True)
    h0t = None if h0 is None else leaves(h0)
    out, state = layer(xt, None if h0t is None else (h0t if len(h0t) == 2 else h0t[0]), lengths)
    states = list(state) if isinstance(state, tuple) else [state]
    n_fused = len(fused_names(out))
    weighted_loss([out, *states]).backward()
    grads = [p.grad.numpy().copy() for p in layer.parameters()] + [xt.grad]
    grads += [] if h0t is None else [t.grad for t in h0t]
    for p in layer.parameters():
        p.grad = None
    return [out.data, *[s.data for s in states]], grads, n_fused


@pytest.mark.parametrize("fuse", [True, False], ids=["scan", "scan_unfused"])
@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("kind", list(LAYERS))
def test_scanned_layers_equal_the_unrolled_graph(kind, option, fuse, default_float64, monkeypatch):
    """The layer's two routes: the step's program scanned over time (its gate arithmetic
    fused, or op by op) against the explicit unroll, one graph node per op per step."""
    kwargs, lengths, with_h0 = OPTIONS[option]
    mg.manual_seed(0)
    layer = LAYERS[kind](**kwargs)
    layer.fuse = fuse
    rng = np.random.default_rng(19)
    x = rng.uniform(-1, 1, (T, 3, IN))
    L = layer.num_layers * layer.num_directions
    h0 = [rng.uniform(-1, 1, (L, 3, H)) for _ in range(layer.n_states)] if with_h0 else None
    calls = {FusedOp: [], fusion.Scan: []}  # nodes run (inside checkpointed segments too)
    for cls in calls:

        def counted(self, *arrays, _forward=cls.forward, _calls=calls[cls], **kwargs):
            _calls.append(self)
            return _forward(self, *arrays, **kwargs)

        monkeypatch.setattr(cls, "forward", counted)
    assert layer.scan
    scanned, scanned_grads, _ = _layer_run(layer, x, h0, lengths)
    # An RNN step is two elementwise ops (add, tanh or relu): fewer than fusion.MIN_OPS, so
    # its plan runs them as they are; the gated cells' plans have one fused kernel, run once
    # per step inside each layer's and direction's (and checkpointed segment's) Scan node.
    gated = kind not in ("rnn_tanh", "rnn_relu")
    assert len(calls[fusion.Scan]) >= L
    if fuse and gated:
        assert len(calls[FusedOp]) >= T * L
    else:
        assert fusion.MIN_OPS > 2 and not calls[FusedOp]
    calls[FusedOp].clear()
    calls[fusion.Scan].clear()
    layer.scan = False
    ref, ref_grads, n_ref = _layer_run(layer, x, h0, lengths)
    assert not calls[FusedOp] and not calls[fusion.Scan]
    assert_all_close(scanned, ref, 1e-12, f"{kind} {option} outputs")
    assert_all_close(scanned_grads, ref_grads, 1e-12, f"{kind} {option} gradients")
    assert n_ref == 0
    if lengths is not None:  # the outputs past each sequence's end are zero
        for b, n in enumerate(lengths):
            assert not scanned[0][n:, b].any()


# ----- 7. the generated source --------------------------------------------------------------------
def test_generated_source_goes_to_the_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGRAD_CACHE_DIR", str(tmp_path))

    def chain(x):  # a chain no other test compiles, so its module is new to this process
        return -(-((x * x + 1).sqrt().log() / x)).exp()

    x = np.linspace(0.5, 2.0, 6, dtype=np.float32).reshape(2, 3)
    (y,), (g,) = evaluate(mg.fuse(chain), leaves([x], np.float32))
    (y_ref,), (g_ref,) = evaluate(chain, leaves([x], np.float32))
    assert_all_close([y.data, g], [y_ref.data, g_ref], 1e-5, "float32 chain")

    files = sorted(tmp_path.rglob("minigrad_fused_*.py"))
    sources = [f.read_text() for f in files]
    assert any("def forward(" in s for s in sources), files
    assert any("def backward(" in s for s in sources), files
    assert all("exp32" in s for s in sources)  # float32 kernels use scalar.py's exp
    for f, s in zip(files, sources, strict=True):  # named by their contents' hash
        assert f.stem == "minigrad_fused_" + hashlib.sha256(s.encode()).hexdigest()[:20]
    assert not list(tmp_path.rglob("*.tmp"))
