"""`Tensor`: a NumPy array, its gradient, and the node that produced it.

Methods and operators only convert their arguments and dispatch to an op in `ops/`.
"""

from __future__ import annotations

import numbers
import weakref

import numpy as np

from . import autograd, dtypes
from .device import check_device
from .inplace import InPlaceMethods, setitem
from .numpy_interop import array_function, array_ufunc
from .ops import elementwise as E
from .ops import reduce as R
from .ops import shape as S
from .ops.copy import Cast
from .shape_methods import ShapeMethods
from .torch_methods import TorchMethods


def _axis_args(axis, keepdims, dim, keepdim):
    """Accept NumPy's (axis, keepdims) and PyTorch's (dim, keepdim) spellings."""
    return (axis if dim is None else dim), (keepdims if keepdim is None else keepdim)


class Tensor(ShapeMethods, InPlaceMethods, TorchMethods):
    # _data: the NumPy array; `.data` and `.numpy()` hand it out (see `data`).
    # _grad: the accumulated gradient, a Tensor or None (see `grad`).
    # _vc: the version counter shared with views, made when first needed (autograd.py).
    # _index: which output of `_node` this tensor is (a node may have several).
    __slots__ = ("_data", "_grad", "_requires_grad", "_node", "_index", "_hooks", "_vc")
    __slots__ += ("__weakref__",)

    def __init__(self, *data, dtype=None, requires_grad: bool = False, device=None):
        """PyTorch's legacy constructor, for code that calls `torch.Tensor(...)`: ints alone
        are sizes (`Tensor(2, 3)` is a (2, 3) tensor of zeros, `Tensor()` an empty one), a list
        or tuple is data in the default float dtype (`Tensor([5])`). With a dtype, or given an
        array, a tensor or a scalar, the data keeps its dtype as `mg.tensor` infers it."""
        check_device(device, "Tensor")
        if len(data) == 1 and not (dtype is None and type(data[0]) is int):
            data = data[0]
            if dtype is None and isinstance(data, (list, tuple)):
                dtype = dtypes.get_default_dtype()
        elif all(type(n) is int for n in data):
            data = np.zeros(data if data else (0,), dtype or dtypes.get_default_dtype())
        else:
            raise TypeError(
                "Tensor(*sizes) takes ints, Tensor(data) one list, array or tensor; got "
                f"({', '.join(type(d).__name__ for d in data)}); mg.tensor(data) infers the dtype"
            )
        self._init(data, dtype, requires_grad)

    @classmethod
    def _from_data(cls, data, dtype=None, requires_grad: bool = False) -> Tensor:
        """A tensor of data, the dtype inferred as mg.tensor does (a list of ints is int64)."""
        t = object.__new__(cls)
        t._init(data, dtype, requires_grad)
        return t

    def _init(self, data, dtype, requires_grad: bool) -> None:
        if isinstance(data, Tensor):
            data = data._data
        if dtype is not None:
            arr = np.array(data, dtype=dtypes.as_dtype(dtype))
        elif isinstance(data, np.ndarray) or isinstance(data, np.generic):
            arr = np.array(data)
            if arr.dtype not in dtypes._SUPPORTED:
                arr = arr.astype(_default_for(arr), copy=False)
        else:
            # Python numbers and lists: floats take the default dtype, as in PyTorch.
            arr = np.array(data)
            kind = arr.dtype.kind
            target = dtypes.get_default_dtype() if kind == "f" else _default_for(arr)
            arr = arr.astype(target, copy=False)
        self._data = arr
        self._grad = None
        self._requires_grad = False
        self._node = None
        self._index = 0  # which output of _node this is
        self._hooks = None
        self._vc = None
        self.requires_grad = requires_grad

    def _operand(self, x) -> Tensor:
        """x as a tensor beside this one (a Python number takes this one's dtype): what the
        method mixins ask of the class instead of importing this module."""
        return as_tensor(x, like=self)

    @classmethod
    def _wrap(cls, arr) -> Tensor:
        """Fast path for op outputs: no conversion, no checks."""
        t = object.__new__(cls)
        t._data = arr if type(arr) is np.ndarray else np.asarray(arr)
        t._grad = None
        t._requires_grad = False
        t._node = None
        t._index = 0
        t._hooks = None
        t._vc = None
        return t

    # ----- data and grad: tensors over the engine's arrays, as in PyTorch ---------------------
    @property
    def data(self) -> Tensor:
        """This tensor's memory as a new tensor outside the graph and outside the version
        counter, as PyTorch's `.data`: writing into it changes this tensor without counting as
        an in-place write, so backward cannot detect it (`detach()` shares the counter)."""
        return Tensor._wrap(self._data)

    @data.setter
    def data(self, value) -> None:
        if not isinstance(value, Tensor):
            raise TypeError(
                f"data: assign a tensor, not {type(value).__name__} (mg.from_numpy(array) or "
                "mg.tensor(values) makes one)"
            )
        if self._requires_grad and value._data.dtype.kind != "f":
            raise TypeError(
                f"data: a tensor that requires grad cannot hold {value._data.dtype} data"
            )
        self._data = value._data

    @property
    def grad(self) -> Tensor | None:
        """The gradient backward accumulated into this leaf (or a retained non-leaf): a tensor
        whose memory the engine adds into, so `p.grad.zero_()` and `p.grad *= s` act on it."""
        return self._grad

    @grad.setter
    def grad(self, value) -> None:
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(
                    f"grad: assign a tensor or None, not {type(value).__name__} "
                    "(mg.from_numpy(array) makes a tensor of an array without a copy)"
                )
            if value.shape != self.shape:
                raise RuntimeError(
                    f"grad: assigned grad has shape {value.shape}, the tensor {self.shape}"
                )
            if value.dtype != self.dtype:
                raise RuntimeError(
                    f"grad: assigned grad has dtype {value.dtype}, the tensor {self.dtype}"
                )
        self._grad = value

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return array_ufunc(Tensor, ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return array_function(Tensor, func, args, kwargs)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """NumPy reads a tensor as its array (np.asarray(t), np.testing on tensors)."""
        if copy:
            return np.array(self._data, dtype=dtype, copy=True)
        return self._data if dtype is None else self._data.astype(dtype, copy=False)

    # ----- autograd -------------------------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and self._data.dtype.kind != "f":
            raise TypeError(
                f"only floating tensors can require grad, this one is {self._data.dtype}; "
                "convert it first, e.g. t.float() or mg.tensor(data, dtype=mg.float32)"
            )
        if not value and self._node is not None:
            raise RuntimeError("requires_grad can only be turned off on a leaf; use detach()")
        self._requires_grad = bool(value)

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self):
        return self._node

    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's `.grad` that requires grad."""
        if not self._requires_grad:
            raise RuntimeError(
                "backward(): this tensor does not require grad and was not computed from one "
                "that does; set requires_grad=True on the inputs you differentiate"
            )
        if grad is None:
            if self._data.size != 1:
                raise RuntimeError(
                    f"backward() on a tensor of shape {self.shape} needs a gradient of the same "
                    "shape; reduce it to a scalar first (e.g. .sum()) or pass grad="
                )
            grad = np.ones_like(self._data)
        else:
            grad = np.asarray(grad._data if isinstance(grad, Tensor) else grad, self._data.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward(): grad has shape {grad.shape}, tensor {self.shape}")
        autograd.run_backward([self], [grad], retain_graph=retain_graph)

    def detach(self) -> Tensor:
        """The same data, cut from the graph (truncated BPTT carries state this way)."""
        t = Tensor._wrap(self._data)
        t._vc = vc = autograd.version_counter(self)  # the same memory: one version counter
        vc[1] = True
        return t

    @property
    def _version(self) -> int:
        """How many in-place writes this tensor's memory has had (PyTorch's `_version`)."""
        return 0 if self._vc is None else self._vc[0]

    def retain_grad(self) -> None:
        """Keep `.grad` on a non-leaf after backward (leaves always keep theirs)."""
        if self._node is not None:
            node = self._node
            node.retained = (node.retained or ()) + ((self._index, weakref.ref(self)),)

    def register_hook(self, hook) -> None:
        """hook(grad) -> new grad of the same shape, or None; called when this tensor's
        gradient is computed."""
        if not self._requires_grad:
            raise RuntimeError("register_hook on a tensor that does not require grad")
        if self._node is not None:
            self._node.hooks = (self._node.hooks or ()) + ((self._index, hook),)
        else:
            self._hooks = (self._hooks or []) + [hook]

    def register_post_accumulate_grad_hook(self, hook) -> None:
        """hook(tensor), called on a leaf once backward has accumulated its whole gradient
        into `.grad` (data-parallel training starts communicating it there)."""
        if not self._requires_grad or self._node is not None:
            raise RuntimeError(
                "register_post_accumulate_grad_hook: only leaf tensors that require grad have "
                "their gradient accumulated"
            )
        self._hooks = (self._hooks or []) + [autograd.PostAccumulateGradHook(hook)]

    def zero_grad(self) -> None:
        self._grad = None

    # ----- array-like -----------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self._data.shape

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def ndim(self) -> int:
        return self._data.ndim

    def size(self, dim=None):
        return self._data.shape if dim is None else self._data.shape[dim]

    def numel(self) -> int:
        return self._data.size

    def dim(self) -> int:
        return self._data.ndim

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def numpy(self) -> np.ndarray:
        return self._data

    def item(self):
        if self._data.size != 1:
            raise ValueError(f"item(): tensor of shape {self.shape} has {self._data.size} elements")
        return self._data.reshape(()).item()

    def tolist(self):
        return self._data.tolist()

    def astype(self, dtype) -> Tensor:
        dtype = dtypes.as_dtype(dtype)
        if dtype == self.dtype:
            return self
        if (self._requires_grad or autograd.is_forward_mode()) and dtype.kind == "f":
            return Cast.apply(self, dtype=dtype)  # recorded, or its tangent follows (mg.jvp)
        return Tensor._wrap(self._data.astype(dtype))

    def float(self) -> Tensor:
        return self.astype(dtypes.float32)

    def double(self) -> Tensor:
        return self.astype(dtypes.float64)

    def long(self) -> Tensor:
        return self.astype(dtypes.int64)

    def __repr__(self) -> str:
        body = np.array2string(self._data, separator=", ", prefix="tensor(")
        extra = f", dtype={self.dtype}" if self.dtype != dtypes.get_default_dtype() else ""
        if self._node is not None:
            extra += f", grad_fn=<{self._node.name}>"
        elif self._requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def __bool__(self) -> bool:
        if self._data.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self._data)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        """An integer tensor of one element used as a Python index (`letters[topi]`)."""
        if self._data.dtype.kind not in "iub" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self._data.reshape(()).item())

    __hash__ = object.__hash__

    # ----- arithmetic -----------------------------------------------------------------------
    def __add__(self, other):
        return _binary(E.Add, self, other, "add")

    def __radd__(self, other):
        return _binary(E.Add, other, self, "add")

    def __sub__(self, other):
        return _binary(E.Sub, self, other, "sub")

    def __rsub__(self, other):
        return _binary(E.Sub, other, self, "sub")

    def __mul__(self, other):
        return _binary(E.Mul, self, other, "mul")

    def __rmul__(self, other):
        return _binary(E.Mul, other, self, "mul")

    def __truediv__(self, other):
        return _binary(E.Div, self, other, "div")

    def __rtruediv__(self, other):
        return _binary(E.Div, other, self, "div")

    def __pow__(self, other):
        return _binary(E.Pow, self, other, "pow")

    def __rpow__(self, other):
        return _binary(E.Pow, other, self, "pow")

    def pow(self, exponent):
        return _binary(E.Pow, self, exponent, "pow")

    def __matmul__(self, other):
        return self.matmul(other)

    def __rmatmul__(self, other):
        return self._operand(other).matmul(self)

    def __neg__(self):
        return E.Neg.apply(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return self.abs()

    # Comparisons give boolean tensors and carry no gradient.
    def __lt__(self, other):
        return _compare(np.less, self, other)

    def __le__(self, other):
        return _compare(np.less_equal, self, other)

    def __gt__(self, other):
        return _compare(np.greater, self, other)

    def __ge__(self, other):
        return _compare(np.greater_equal, self, other)

    def __eq__(self, other):
        return _compare(np.equal, self, other)

    def __ne__(self, other):
        return _compare(np.not_equal, self, other)

    def exp(self):
        return E.Exp.apply(self)

    def log(self):
        return E.Log.apply(self)

    def sqrt(self):
        return E.Sqrt.apply(self)

    def abs(self):
        return E.Abs.apply(self)

    def tanh(self):
        return E.Tanh.apply(self)

    def sigmoid(self):
        return E.Sigmoid.apply(self)

    def relu(self):
        return E.Relu.apply(self)

    def maximum(self, other):
        return _binary(E.Maximum, self, other, "maximum")

    def minimum(self, other):
        return _binary(E.Minimum, self, other, "minimum")

    def clip(self, min=None, max=None):
        if min is None and max is None:
            raise ValueError("clip: give at least one of min and max")
        if min is not None and max is not None and min > max:
            raise ValueError(f"clip: min {min} is greater than max {max}")
        return E.Clip.apply(self, lo=min, hi=max)

    clamp = clip

    # ----- reductions -----------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
        return R.Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
        return R.Mean.apply(self, axis=axis, keepdims=keepdims)

    def max(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """PyTorch's max: x.max() the value; x.max(dim) (values, indices) along dim;
        x.max(other) the elementwise maximum. NumPy's axis= (any axes) gives the values only."""
        return _extreme(self, "max", dim, keepdim, axis, keepdims)

    def min(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """As max: x.min(), x.min(dim) -> (values, indices), x.min(other), x.min(axis=)."""
        return _extreme(self, "min", dim, keepdim, axis, keepdims)

    def amax(self, dim=None, keepdim=False):
        """The largest values over dim (an int, a tuple, or None for all); ties share the
        gradient equally, as PyTorch's amax."""
        return R.Max.apply(self, axis=dim, keepdims=keepdim)

    def amin(self, dim=None, keepdim=False):
        return R.Min.apply(self, axis=dim, keepdims=keepdim)

    def logsumexp(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
        return R.LogSumExp.apply(self, axis=axis, keepdims=keepdims)

    def any(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """Whether any element (along dim) is nonzero: a bool tensor, as PyTorch's any."""
        axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
        return Tensor._wrap(np.any(self._data, axis=axis, keepdims=keepdims))

    def all(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
        return Tensor._wrap(np.all(self._data, axis=axis, keepdims=keepdims))

    def argmax(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
        return Tensor._wrap(np.argmax(self._data, axis=axis, keepdims=keepdims))

    def argmin(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
        return Tensor._wrap(np.argmin(self._data, axis=axis, keepdims=keepdims))

    def __getitem__(self, index):
        return S.GetItem.apply(self, index=_as_index(index))

    def __setitem__(self, index, value):
        setitem(self, _as_index(index), value)

    def __iadd__(self, other):
        return self.add_(other)

    def __isub__(self, other):
        return self.sub_(other)

    def __imul__(self, other):
        return self.mul_(other)

    def __itruediv__(self, other):
        return self.div_(other)


def _default_for(arr: np.ndarray) -> np.dtype:
    kind = arr.dtype.kind
    if kind == "f":
        return dtypes.get_default_dtype() if arr.dtype not in dtypes._SUPPORTED else arr.dtype
    if kind in "iu":
        return dtypes.int64
    if kind == "b":
        return dtypes.bool_
    raise TypeError(f"cannot make a tensor from data of dtype {arr.dtype}")


def as_tensor(x, like: Tensor | None = None) -> Tensor:
    """An operand as a Tensor: Python numbers take the dtype of the tensor they meet."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, numbers.Number):
        if like is not None and like.dtype.kind == "f":
            dtype = like.dtype
        elif isinstance(x, bool):
            return Tensor._from_data(x)
        elif isinstance(x, numbers.Integral):
            # An int keeps an integer tensor integer: `lengths - 1` must still index.
            dtype = like.dtype if like is not None and like.dtype.kind in "iu" else dtypes.int64
        else:
            dtype = dtypes.get_default_dtype()
        return Tensor._wrap(np.asarray(x, dtype=dtype))
    if isinstance(x, (np.ndarray, np.generic)):
        arr = np.asarray(x)
        if like is not None and like.dtype.kind == "f" and arr.dtype.kind != "f":
            arr = arr.astype(like.dtype)
        return Tensor(arr)
    if isinstance(x, (list, tuple)):
        return Tensor._from_data(x, dtype=like.dtype if like is not None else None)
    raise TypeError(f"cannot use an object of type {type(x).__name__} as a tensor")


def _extreme(x, name, dim, keepdim, axis, keepdims):
    if isinstance(dim, (Tensor, np.ndarray)):  # x.max(other): PyTorch's elementwise form
        return x.maximum(dim) if name == "max" else x.minimum(dim)
    keepdim = keepdim if keepdims is None else keepdims
    if axis is not None or dim is None:  # NumPy's spelling, or over all: the values only
        return (R.Max if name == "max" else R.Min).apply(x, axis=axis, keepdims=keepdim)
    return x._extreme_along(name, dim, keepdim)


def _binary(fn, a, b, name):
    if type(a) is not Tensor:
        a = as_tensor(a, like=b)
    if type(b) is not Tensor:
        b = as_tensor(b, like=a)
    try:
        return fn.apply(a, b)
    except ValueError:
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(
                f"{name}: shapes {a.shape} and {b.shape} cannot be broadcast together"
            ) from None
        raise


def _compare(ufunc, a, b):
    try:
        b = as_tensor(b, like=a)
    except TypeError:
        return NotImplemented  # let the other object compare (pytest.approx, say)
    try:
        return Tensor._wrap(ufunc(a._data, b._data))
    except ValueError:
        raise ValueError(
            f"{ufunc.__name__}: shapes {a.shape} and {b.shape} cannot be broadcast together"
        ) from None


def _as_index(index):
    """Tensors and lists inside an index become NumPy arrays; the rest is NumPy's own."""
    if isinstance(index, tuple):
        return tuple(_as_index(i) for i in index)
    if isinstance(index, Tensor):
        index = index._data
    elif isinstance(index, list):
        index = np.asarray(index)
    if isinstance(index, np.ndarray) and index.dtype.kind not in "iub":
        raise IndexError(f"getitem: index arrays must be integer or boolean, got {index.dtype}")
    return index


autograd.wrap_output = Tensor._wrap  # ops make Tensors without importing this module


def Variable(data, requires_grad: bool = False, volatile: bool = False) -> Tensor:  # noqa: N802
    """Old PyTorch's `autograd.Variable(t, requires_grad=...)`: since PyTorch 0.4 a tensor is
    its own Variable, so this returns the tensor itself (with requires_grad set if asked)."""
    t = data if isinstance(data, Tensor) else Tensor._from_data(data)
    if requires_grad:
        t.requires_grad = True
    return t


autograd.Variable = Variable  # mg.autograd.Variable, for the tutorials that still call it
