"""minigrad: reverse-mode autodiff on NumPy, with Numba kernels, for recurrent networks."""

from . import cuda, graph, nn, onnx, optim, return_types, utils
from .allocator import reuse_freed_memory
from .autograd import detect_anomaly, enable_grad, is_grad_enabled, no_grad, set_detect_anomaly
from .checkpoint import checkpoint
from .creation import (
    BoolTensor,
    DoubleTensor,
    FloatTensor,
    IntTensor,
    LongTensor,
    arange,
    empty,
    from_numpy,
    full,
    multinomial,
    ones,
    ones_like,
    rand,
    randint,
    randn,
    tensor,
    zeros,
    zeros_like,
)
from .device import device, get_default_device, set_default_device
from .dtypes import bool_, float32, float64, get_default_dtype, int32, int64, set_default_dtype
from .func import grad, jacobian, jvp, vjp
from .functions import (
    argmax,
    argmin,
    bmm,
    cat,
    chunk,
    matmul,
    max,
    min,
    mm,
    sort,
    split,
    stack,
    topk,
    where,
)
from .fusion import fuse
from .gradcheck import GradcheckError, gradcheck
from .random import Generator, manual_seed
from .serialization import load, save
from .tensor import Tensor, as_tensor

# PyTorch's dtype names (they shadow the builtins only as attributes of this module).
float, double, long, int, bool = float32, float64, int64, int32, bool_  # noqa: A001

__version__ = "0.1.0"

reuse_freed_memory()  # see allocator.py; MINIGRAD_MALLOC_TUNING=0 keeps glibc's defaults


def _unary(method):
    def fn(x):
        return getattr(as_tensor(x), method)()

    fn.__name__ = method
    fn.__doc__ = f"mg.{method}(x) is x.{method}()."
    return fn


exp, log, sqrt, abs, tanh, sigmoid, relu = map(
    _unary, ["exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu"]
)


def maximum(x, y):
    return as_tensor(x, like=y if isinstance(y, Tensor) else None).maximum(y)


def minimum(x, y):
    return as_tensor(x, like=y if isinstance(y, Tensor) else None).minimum(y)


def clip(x, min=None, max=None):  # noqa: F811 (PyTorch's keywords shadow mg.min, mg.max)
    return as_tensor(x).clip(min, max)


def sum(x, axis=None, keepdims=False):
    return as_tensor(x).sum(axis, keepdims)


def mean(x, axis=None, keepdims=False):
    return as_tensor(x).mean(axis, keepdims)


def logsumexp(x, axis=None, keepdims=False):
    return as_tensor(x).logsumexp(axis, keepdims)
