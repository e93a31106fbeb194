"""The table of minigrad's core ops: one row per op drives its forward, gradient, broadcasting,
dtype and no-mutation tests (tests/test_ops_forward.py and tests/test_ops_grad.py).

A row gives the minigrad callable, the NumPy reference (computed in float64), a hypothesis
strategy for its cases (input shapes and keyword arguments), the input domains (wide, with edge
values, for the forward; well-conditioned and away from kinks, for finite differences) and the
forward tolerance in ulps. Adding an op to minigrad means adding one row here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import Domain, axes, broadcast_shapes, indices, matmul_shapes, shapes

import minigrad as mg

# ----- domains ------------------------------------------------------------------------------------
REAL = Domain(-1e4, 1e4)
HUGE = Domain(-1e30, 1e30)  # sigmoid, tanh, logsumexp must not overflow anywhere
NONZERO = Domain(-1e4, 1e4, gap=1e-3)
POS = Domain(1e-6, 1e4)
EXP = Domain(-700.0, 700.0, lo32=-100.0, hi32=88.0)  # exp's finite range
BASE = Domain(1e-2, 1e2)
EXPONENT = Domain(-3.0, 3.0)
CLIP_BOUNDS = (-0.5, 0.5, 1.0)

G_REAL = Domain(-2.0, 2.0)
G_KINK = Domain(-2.0, 2.0, gap=0.05)  # abs and relu, away from 0
G_POS = Domain(0.2, 3.0)
G_NONZERO = Domain(-3.0, 3.0, gap=0.3)
G_CLIP = Domain(-2.0, 2.0, gap=0.05, avoid=CLIP_BOUNDS)


@dataclass(frozen=True)
class Op:
    name: str
    fn: Callable  # fn(*tensors, **kwargs) -> Tensor or list of Tensors
    ref: Callable  # ref(*float64 arrays, **kwargs) -> array or list of arrays
    cases: Callable  # cases(max_dims, max_side) -> strategy of (input shapes, kwargs)
    domains: tuple  # forward values, one per input (the last one repeats)
    grad_domains: tuple  # values for gradcheck
    ulps: float = 1.0
    scale: Callable | None = None  # scale(*|arrays|, **kwargs): magnitude of rounding errors
    binary: bool = False  # elementwise binary: also mixed with scalars and arrays

    def domain(self, i: int) -> Domain:
        return self.domains[min(i, len(self.domains) - 1)]

    def grad_domain(self, i: int) -> Domain:
        return self.grad_domains[min(i, len(self.grad_domains) - 1)]

    def __repr__(self) -> str:  # short test ids and hypothesis reports
        return self.name

    def _repr_pretty_(self, printer, cycle):
        printer.text(self.name)


# ----- case strategies ----------------------------------------------------------------------------
def elementwise(n, **kwargs):
    """n inputs of mutually broadcastable shapes; kwargs maps names to strategies."""

    def cases(max_dims, max_side):
        return st.tuples(
            broadcast_shapes(n, max_dims=max_dims, max_side=max_side),
            st.fixed_dictionaries(kwargs),
        )

    return cases


def where_cases(max_dims, max_side):
    @st.composite
    def draw_case(draw):
        cond_shape, x_shape, y_shape = draw(
            broadcast_shapes(3, max_dims=max_dims, max_side=max_side)
        )
        cond = draw(hnp.arrays(np.bool_, cond_shape))
        return (x_shape, y_shape), {"cond": cond, "cond_tensor": draw(st.booleans())}

    return draw_case()


def reduction(min_side, spellings):
    def cases(max_dims, max_side):
        @st.composite
        def draw_case(draw):
            shape = draw(shapes(0, max_dims, min_side, max_side))
            kwargs = {
                "axis": draw(axes(len(shape))),
                "keepdims": draw(st.booleans()),
                "spelling": draw(st.sampled_from(spellings)),
            }
            return (shape,), kwargs

        return draw_case()

    return cases


def matmul_cases(max_dims, max_side):
    return st.tuples(
        matmul_shapes(max_batch_dims=max(max_dims - 2, 1), max_side=max_side),
        st.fixed_dictionaries({"form": st.sampled_from(["@", "function", "method"])}),
    )


def reshape_cases(max_dims, max_side):
    @st.composite
    def draw_case(draw):
        shape = draw(shapes(0, max_dims, 0, max_side))
        n = math.prod(shape)
        if n == 0:
            dims = list(draw(st.permutations(shape)))
        else:
            dims, rest = [], n
            while rest > 1 and len(dims) < 3:
                d = draw(st.sampled_from([d for d in range(1, rest + 1) if rest % d == 0]))
                dims.append(d)
                rest //= d
            dims.append(rest)
            if draw(st.booleans()):
                dims.insert(draw(st.integers(0, len(dims))), 1)
            if draw(st.booleans()):
                dims[draw(st.integers(0, len(dims) - 1))] = -1
        form = draw(st.sampled_from(["args", "tuple", "view"]))
        return (shape,), {"new": tuple(dims), "form": form}

    return draw_case()


def permute_cases(max_dims, max_side):
    @st.composite
    def draw_case(draw):
        shape = draw(shapes(0, max_dims, 0, max_side))
        perm = [
            draw(st.sampled_from([a, a - len(shape)]))
            for a in draw(st.permutations(range(len(shape))))
        ]
        return (shape,), {"perm": tuple(perm), "form": draw(st.sampled_from(["args", "tuple"]))}

    return draw_case()


def transpose_cases(max_dims, max_side):
    @st.composite
    def draw_case(draw):
        shape = draw(shapes(2, max(max_dims, 2), 0, max_side))
        nd = len(shape)
        dims = draw(
            st.one_of(st.none(), st.tuples(st.integers(-nd, nd - 1), st.integers(-nd, nd - 1)))
        )
        return (shape,), {"dims": dims}

    return draw_case()


def expand_cases(max_dims, max_side):
    @st.composite
    def draw_case(draw):
        shape = draw(shapes(0, max_dims, 0, 3))
        lead = draw(st.integers(0, 2))
        target = [draw(st.integers(0, 3)) for _ in range(lead)]
        target += [draw(st.integers(0, 3)) if n == 1 else n for n in shape]
        form = draw(st.sampled_from(["args", "tuple", "broadcast_to"]))
        spelled = list(target)
        if form != "broadcast_to":
            for i in range(lead, len(target)):
                if target[i] == shape[i - lead] and draw(st.booleans()):
                    spelled[i] = -1  # PyTorch's "keep this dim"
        return (shape,), {"target": tuple(target), "spelled": tuple(spelled), "form": form}

    return draw_case()


def squeeze_cases(max_dims, max_side):
    @st.composite
    def draw_case(draw):
        shape = draw(st.lists(st.sampled_from([0, 1, 1, 2, 3]), max_size=max_dims).map(tuple))
        ones = [i for i, n in enumerate(shape) if n == 1]
        choice = st.sampled_from(ones).flatmap(lambda a: st.sampled_from([a, a - len(shape)]))
        axis = draw(st.none() | choice) if ones else None
        form = draw(st.sampled_from(["positional", "dim"]))
        return (shape,), {"axis": axis, "form": form}

    return draw_case()


def unsqueeze_cases(max_dims, max_side):
    @st.composite
    def draw_case(draw):
        shape = draw(shapes(0, max_dims, 0, max_side))
        return (shape,), {"axis": draw(st.integers(-len(shape) - 1, len(shape)))}

    return draw_case()


def getitem_cases(max_dims, max_side):
    @st.composite
    def draw_case(draw):
        shape = draw(shapes(1, max_dims, 0, max_side))
        return (shape,), {"index": draw(indices(shape))}

    return draw_case()


def cat_cases(max_dims, max_side):
    @st.composite
    def draw_case(draw):
        base = list(draw(shapes(1, max_dims, 0, max_side)))
        axis = draw(st.integers(-len(base), len(base) - 1))
        sizes = draw(st.lists(st.integers(0, max_side), min_size=1, max_size=3))
        in_shapes = []
        for s in sizes:
            base[axis] = s
            in_shapes.append(tuple(base))
        form = draw(st.sampled_from(["axis", "dim", "tuple"]))
        return tuple(in_shapes), {"axis": axis, "form": form}

    return draw_case()


def stack_cases(max_dims, max_side):
    @st.composite
    def draw_case(draw):
        shape = draw(shapes(0, max_dims, 0, max_side))
        n = draw(st.integers(1, 3))
        axis = draw(st.integers(-len(shape) - 1, len(shape)))
        return (shape,) * n, {"axis": axis, "form": draw(st.sampled_from(["axis", "dim"]))}

    return draw_case()


def split_cases(max_dims, max_side):
    @st.composite
    def draw_case(draw):
        shape = draw(shapes(1, max_dims, 1, max_side))
        axis = draw(st.integers(-len(shape), len(shape) - 1))
        n = shape[axis]
        if draw(st.booleans()):
            size = draw(st.integers(1, n + 1))
        else:
            cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
            size = [b - a for a, b in zip([0] + cuts, cuts + [n], strict=True)]
        form = draw(st.sampled_from(["method", "dim", "function"]))
        return (shape,), {"size": size, "axis": axis, "form": form}

    return draw_case()


def chunk_cases(max_dims, max_side):
    @st.composite
    def draw_case(draw):
        shape = draw(shapes(1, max_dims, 1, max_side))
        axis = draw(st.integers(-len(shape), len(shape) - 1))
        chunks = draw(st.integers(1, shape[axis] + 1))
        form = draw(st.sampled_from(["method", "dim", "function"]))
        return (shape,), {"chunks": chunks, "axis": axis, "form": form}

    return draw_case()


# ----- minigrad callables and NumPy references ----------------------------------------------------
def unary(method, ref, domain, grad_domain, ulps=1.0, scale=None, function=True):
    """x.method() and, where minigrad has one, mg.method(x)."""
    forms = ["method", "function"] if function else ["method"]

    def fn(x, form):
        return getattr(mg, method)(x) if form == "function" else getattr(x, method)()

    return Op(
        method,
        fn,
        lambda x, form: ref(x),
        elementwise(1, form=st.sampled_from(forms)),
        (domain,),
        (grad_domain,),
        ulps,
        scale,
    )


def _sigmoid_ref(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _logsumexp_ref(x, axis=None, keepdims=False, **_):
    m = np.max(x, axis=axis, keepdims=True)
    out = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)


def _reduce(method):
    def fn(x, axis, keepdims, spelling):
        if spelling == "numpy":
            return getattr(x, method)(axis=axis, keepdims=keepdims)
        if spelling == "torch" and method in ("max", "min"):
            # PyTorch's max(dim) takes one int and returns (values, indices); amax any dims.
            if isinstance(axis, int):
                return getattr(x, method)(dim=axis, keepdim=keepdims).values
            return getattr(x, "a" + method)(dim=axis, keepdim=keepdims)
        if spelling == "torch":
            return getattr(x, method)(dim=axis, keepdim=keepdims)
        return getattr(mg, method)(x, axis, keepdims)

    return fn


def _matmul(a, b, form):
    if form == "@":
        return a @ b
    return mg.matmul(a, b) if form == "function" else a.matmul(b)


def _reshape(x, new, form):
    if form == "args":
        return x.reshape(*new)
    return x.reshape(new) if form == "tuple" else x.view(*new)


def _transpose(x, dims):
    return x.transpose() if dims is None else x.transpose(*dims)


def _transpose_ref(x, dims):
    return np.swapaxes(x, *((-2, -1) if dims is None else dims))


def _expand(x, target, spelled, form):
    if form == "broadcast_to":
        return x.broadcast_to(target)
    return x.expand(*spelled) if form == "args" else x.expand(spelled)


def _squeeze(x, axis, form):
    return x.squeeze(axis) if form == "positional" else x.squeeze(dim=axis)


def _cat(*xs, axis, form):
    if form == "tuple":
        return mg.cat(tuple(xs), axis)
    return mg.cat(list(xs), axis) if form == "axis" else mg.cat(list(xs), dim=axis)


def _stack(*xs, axis, form):
    return mg.stack(list(xs), axis) if form == "axis" else mg.stack(list(xs), dim=axis)


def _split(x, size, axis, form):
    if form == "method":
        return x.split(size, axis)
    return x.split(size, dim=axis) if form == "dim" else mg.split(x, size, axis)


def _split_ref(x, size, axis, form):
    n = x.shape[axis]
    bounds = range(size, n, size) if isinstance(size, int) else np.cumsum(size)[:-1]
    return np.split(x, list(bounds), axis=axis)


def _chunk(x, chunks, axis, form):
    if form == "method":
        return x.chunk(chunks, axis)
    return x.chunk(chunks, dim=axis) if form == "dim" else mg.chunk(x, chunks, axis)


def _chunk_ref(x, chunks, axis, form):
    n = x.shape[axis]
    size = -(-n // chunks)
    return np.split(x, list(range(size, n, size)), axis=axis)


def _abs_sum(x, axis=None, keepdims=False, **_):
    return np.sum(np.abs(x), axis=axis, keepdims=keepdims)


def _abs_mean(x, axis=None, keepdims=False, **_):
    return np.mean(np.abs(x), axis=axis, keepdims=keepdims)


def _abs_max(x, axis=None, keepdims=False, **_):
    return np.max(np.abs(x), axis=axis, keepdims=keepdims) + 1.0


SPELLINGS = ["numpy", "torch"]

OPS = [
    # elementwise, binary (tensors of broadcast shapes; also scalars and arrays on either side)
    Op("add", lambda a, b: a + b, np.add, elementwise(2), (REAL,), (G_REAL,), binary=True),
    Op("sub", lambda a, b: a - b, np.subtract, elementwise(2), (REAL,), (G_REAL,), binary=True),
    Op("mul", lambda a, b: a * b, np.multiply, elementwise(2), (REAL,), (G_REAL,), binary=True),
    Op(
        "div",
        lambda a, b: a / b,
        np.divide,
        elementwise(2),
        (REAL, NONZERO),
        (G_REAL, G_NONZERO),
        binary=True,
    ),
    Op(
        "pow",
        lambda a, b: a**b,
        np.power,
        elementwise(2),
        (BASE, EXPONENT),
        (G_POS, G_REAL),
        ulps=8,
        binary=True,
    ),
    Op("maximum", mg.maximum, np.maximum, elementwise(2), (HUGE,), (G_REAL,), binary=True),
    Op("minimum", mg.minimum, np.minimum, elementwise(2), (HUGE,), (G_REAL,), binary=True),
    # elementwise, unary
    Op("neg", lambda x: -x, np.negative, elementwise(1), (HUGE,), (G_REAL,)),
    unary("exp", np.exp, EXP, G_REAL, ulps=4),
    unary("log", np.log, POS, G_POS, ulps=4, scale=lambda x, form: 1.0),
    unary("sqrt", np.sqrt, POS, G_POS, ulps=2),
    unary("abs", np.abs, HUGE, G_KINK),
    unary("tanh", np.tanh, HUGE, G_REAL, ulps=4),
    unary("sigmoid", _sigmoid_ref, HUGE, G_REAL, ulps=8),
    unary("relu", lambda x: np.maximum(x, 0), HUGE, G_KINK),
    Op(
        "pow_scalar",
        lambda x, p: x**p,
        lambda x, p: x**p,
        elementwise(1, p=st.sampled_from([-1.5, -1, 0, 0.5, 1, 2, 3.0])),
        (BASE,),
        (G_POS,),
        ulps=8,
    ),
    Op(
        "pow_int",
        lambda x, p: x**p,
        lambda x, p: x ** float(p),
        elementwise(1, p=st.sampled_from([-1, 2, 3])),
        (Domain(-1e2, 1e2, gap=1e-2),),
        (G_NONZERO,),
        ulps=8,
    ),
    Op(
        "rpow",
        lambda x, base: base**x,
        lambda x, base: base**x,
        elementwise(1, base=st.sampled_from([0.5, 2, 2.5, 10.0])),
        (Domain(-20.0, 20.0),),
        (G_REAL,),
        ulps=8,
    ),
    Op(
        "clip",
        lambda x, bounds, form: getattr(x, form)(*bounds),
        lambda x, bounds, form: np.clip(x, *bounds),
        elementwise(
            1,
            bounds=st.sampled_from([(-0.5, 0.5), (None, 0.5), (-0.5, None), (1.0, 1.0)]),
            form=st.sampled_from(["clip", "clamp"]),
        ),
        (HUGE,),
        (G_CLIP,),
    ),
    Op(
        "where",
        lambda x, y, cond, cond_tensor: mg.where(mg.tensor(cond) if cond_tensor else cond, x, y),
        lambda x, y, cond, cond_tensor: np.where(cond, x, y),
        where_cases,
        (HUGE,),
        (G_REAL,),
    ),
    # reductions
    Op(
        "sum",
        _reduce("sum"),
        lambda x, axis, keepdims, spelling: np.sum(x, axis=axis, keepdims=keepdims),
        reduction(0, SPELLINGS + ["function"]),
        (REAL,),
        (G_REAL,),
        ulps=8,
        scale=_abs_sum,
    ),
    Op(
        "mean",
        _reduce("mean"),
        lambda x, axis, keepdims, spelling: np.mean(x, axis=axis, keepdims=keepdims),
        reduction(1, SPELLINGS + ["function"]),
        (REAL,),
        (G_REAL,),
        ulps=8,
        scale=_abs_mean,
    ),
    Op(
        "max",
        _reduce("max"),
        lambda x, axis, keepdims, spelling: np.max(x, axis=axis, keepdims=keepdims),
        reduction(1, SPELLINGS),
        (HUGE,),
        (G_REAL,),
    ),
    Op(
        "min",
        _reduce("min"),
        lambda x, axis, keepdims, spelling: np.min(x, axis=axis, keepdims=keepdims),
        reduction(1, SPELLINGS),
        (HUGE,),
        (G_REAL,),
    ),
    Op(
        "logsumexp",
        _reduce("logsumexp"),
        _logsumexp_ref,
        reduction(1, SPELLINGS + ["function"]),
        (HUGE,),
        (G_REAL,),
        ulps=8,
        scale=_abs_max,
    ),
    # matmul
    Op(
        "matmul",
        _matmul,
        lambda a, b, form: np.matmul(a, b),
        matmul_cases,
        (REAL,),
        (G_REAL,),
        ulps=8,
        scale=lambda a, b, form: np.matmul(np.abs(a), np.abs(b)),
    ),
    # shape and indexing
    Op("reshape", _reshape, lambda x, new, form: x.reshape(new), reshape_cases, (HUGE,), (G_REAL,)),
    Op(
        "permute",
        lambda x, perm, form: x.permute(*perm) if form == "args" else x.permute(perm),
        lambda x, perm, form: np.transpose(x, perm),
        permute_cases,
        (HUGE,),
        (G_REAL,),
    ),
    Op("transpose", _transpose, _transpose_ref, transpose_cases, (HUGE,), (G_REAL,)),
    Op("T", lambda x: x.T, lambda x: x.T, elementwise(1), (HUGE,), (G_REAL,)),
    Op(
        "expand",
        _expand,
        lambda x, target, spelled, form: np.broadcast_to(x, target),
        expand_cases,
        (HUGE,),
        (G_REAL,),
    ),
    Op(
        "squeeze",
        _squeeze,
        lambda x, axis, form: np.squeeze(x, axis),
        squeeze_cases,
        (HUGE,),
        (G_REAL,),
    ),
    Op(
        "unsqueeze",
        lambda x, axis: x.unsqueeze(axis),
        lambda x, axis: np.expand_dims(x, axis),
        unsqueeze_cases,
        (HUGE,),
        (G_REAL,),
    ),
    Op(
        "getitem",
        lambda x, index: x[index],
        lambda x, index: x[index],
        getitem_cases,
        (HUGE,),
        (G_REAL,),
    ),
    Op(
        "cat", _cat, lambda *xs, axis, form: np.concatenate(xs, axis), cat_cases, (HUGE,), (G_REAL,)
    ),
    Op(
        "stack", _stack, lambda *xs, axis, form: np.stack(xs, axis), stack_cases, (HUGE,), (G_REAL,)
    ),
    Op("split", _split, _split_ref, split_cases, (HUGE,), (G_REAL,)),
    Op("chunk", _chunk, _chunk_ref, chunk_cases, (HUGE,), (G_REAL,)),
]

BINARY = [op for op in OPS if op.binary]

# Explicit index cases, the classic edge cases, checked whatever hypothesis draws.
INDEX_EXAMPLES = [  # into an array of shape (4, 5, 3)
    1,
    -1,
    slice(None, None, -1),
    (slice(3, 0, -2), Ellipsis, None),
    (None, Ellipsis, 0),
    (Ellipsis, slice(None, 2)),
    np.array([0, 2, 2, -1, 0]),
    np.array([[1, 1], [3, 0]]),
    (np.array([0, 0, 3]), slice(None), np.array([2, 2, 1])),
    (slice(None), np.array([4, 4, 0])),
    np.array([True, False, True, True]),
    (Ellipsis, np.array([True, False, True])),
    (1, np.array([True, False, True, False, True])),
    (slice(None, None, -1), np.array([[0], [4]]), np.array([1, 2, 2])),
]

MATMUL_EXAMPLES = [
    ((3,), (3,)),
    ((3,), (3, 4)),
    ((2, 3), (3,)),
    ((2, 3), (3, 4)),
    ((5, 2, 3), (5, 3, 4)),
    ((2, 1, 3, 4), (5, 4, 2)),
    ((4,), (2, 4, 3)),
    ((2, 3, 4), (4,)),
    ((3, 2, 4), (4, 5)),
    ((0, 3), (3, 2)),
    ((2, 0), (0, 3)),
]
