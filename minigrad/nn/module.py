"""`Module` and `Parameter`: the bookkeeping that lets a network be written as plain attributes.

Assigning a `Parameter` or a `Module` to an attribute registers it, so that `parameters()`,
`state_dict()`, `train()` and `to()` reach every weight of a nested model by its dotted name
(`encoder.layers.0.weight`), the names PyTorch would give the same model.
"""

from collections import OrderedDict, namedtuple

import numpy as np

from .. import dtypes
from ..autograd import bump_version
from ..device import check_device
from ..tensor import Tensor
from ..torch_methods import parse_to_arguments


class Parameter(Tensor):
    """A Tensor that a Module registers as a learnable weight: requires_grad=True by default.

    Data that is not already a Tensor (lists, NumPy arrays of any float dtype) is stored in the
    default dtype, so `Parameter(np.random.randn(3))` is float32 unless set otherwise.
    """

    __slots__ = ()

    def __init__(self, data=None, requires_grad: bool = True):
        if data is None:
            data = np.empty(0, dtypes.get_default_dtype())
        if isinstance(data, Tensor):
            data = data._data.copy()
        else:
            data = np.array(data, dtype=dtypes.get_default_dtype())
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of every layer and model: subclass it, assign parameters and submodules in
    `__init__` (after `super().__init__()`), and write `forward`."""

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())

    # ----- registration -------------------------------------------------------------------------
    # Registered objects live in the ordered registries (for traversal) and also in __dict__, so
    # reading `self.weight` in a forward that runs a thousand times per sequence is a plain
    # attribute lookup rather than a __getattr__ call.
    def _registries(self):
        return self._parameters, self._buffers, self._modules

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            if isinstance(value, (Parameter, Module)):
                raise AttributeError(
                    f"{type(self).__name__}: call super().__init__() at the start of __init__, "
                    f"before assigning parameters or submodules (assigning '{name}')"
                )
            object.__setattr__(self, name, value)
            return
        params, buffers, modules = self._registries()
        if isinstance(value, Parameter):
            self._forget(name)
            params[name] = value
        elif isinstance(value, Module):
            self._forget(name)
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} to parameter '{name}' of "
                    f"{type(self).__name__}; assign an nn.Parameter or None"
                )
            params[name] = None
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} to submodule '{name}'")
            modules[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"buffer '{name}' must be a Tensor or None")
            buffers[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._forget(name)
        object.__delattr__(self, name)

    def _forget(self, name):
        for registry in self._registries():
            registry.pop(name, None)
        self._non_persistent.discard(name)

    def register_parameter(self, name: str, param) -> None:
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: '{name}' must be a Parameter or None")
        self._forget(name)
        self._parameters[name] = param
        object.__setattr__(self, name, param)

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """A tensor that is state but not learnable (e.g. running statistics); persistent
        buffers are saved in state_dict and moved by to()."""
        if tensor is not None and not isinstance(tensor, Tensor):
            tensor = Tensor(tensor)
        self._forget(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)
        object.__setattr__(self, name, tensor)

    def add_module(self, name: str, module) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: '{name}' must be a Module, got {type(module).__name__}")
        self._forget(name)
        self._modules[name] = module
        object.__setattr__(self, name, module)

    # ----- calling ------------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ----- traversal ----------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix: str = ""):
        """(dotted name, module) for self and every descendant, each module once."""
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self):
        for _, child in self.named_children():
            yield child

    def _named_members(self, registry, recurse):
        seen = set()  # a weight shared by two layers is listed (and optimised) once
        modules = self.named_modules() if recurse else [("", self)]
        for prefix, module in modules:
            for name, t in getattr(module, registry).items():
                if t is not None and id(t) not in seen:
                    seen.add(id(t))
                    yield (f"{prefix}.{name}" if prefix else name), t

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        for name, p in self._named_members("_parameters", recurse):
            yield (f"{prefix}.{name}" if prefix else name), p

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True):
        for name, b in self._named_members("_buffers", recurse):
            yield (f"{prefix}.{name}" if prefix else name), b

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn):
        """Call fn on every submodule (children first) and then on self; returns self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ----- modes and gradients ------------------------------------------------------------------
    def train(self, mode: bool = True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p._grad._data[...] = 0

    def requires_grad_(self, requires_grad: bool = True):
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    # ----- dtype --------------------------------------------------------------------------------
    def to(self, *args, **kwargs):
        """Cast every floating parameter, gradient and buffer to a dtype, in place (the Parameter
        objects stay the same, so an optimizer built earlier still holds them). As in PyTorch,
        to(dtype), to(device), to(device, dtype) and keywords; the only device is the CPU."""
        dtype, dev, _ = parse_to_arguments(args, kwargs)
        check_device(dev, f"{type(self).__name__}.to")
        if dtype is None:
            return self
        dtype = dtypes.as_dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"to: modules can only be cast to a float dtype, got {dtype}")
        for t in list(self.parameters()) + list(self.buffers()):
            if t.dtype.kind == "f":
                t._data = t._data.astype(dtype)
                if t._grad is not None:
                    t._grad = Tensor._wrap(t._grad._data.astype(dtype))
        return self

    def double(self):
        return self.to(dtypes.float64)

    def float(self):
        return self.to(dtypes.float32)

    def cpu(self):
        return self

    def cuda(self, device=None):
        """PyTorch's model.cuda(): an error saying that the CPU is the only device."""
        check_device("cuda" if device is None else device, f"{type(self).__name__}.cuda")

    # ----- state --------------------------------------------------------------------------------
    def _state_tensors(self, prefix=""):
        """(name, tensor) for every parameter and persistent buffer, by the path that reaches
        it; a shared module appears under each of its names, as in PyTorch."""
        for name, p in self._parameters.items():
            if p is not None:
                yield prefix + name, p
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent:
                yield prefix + name, b
        for name, child in self._modules.items():
            if child is not None:
                yield from child._state_tensors(f"{prefix}{name}.")

    def state_dict(self):
        """OrderedDict of dotted name -> a copy of the array (parameters, then buffers)."""
        return OrderedDict((name, t._data.copy()) for name, t in self._state_tensors())

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy arrays (NumPy arrays or Tensors) into the parameters and buffers, by name.

        Values are cast to each parameter's dtype. Shape mismatches always raise; with
        strict=True, missing and unexpected keys raise too. The error lists every offending
        key (with both shapes for a mismatch) and nothing is modified unless all checks pass.
        Returns (missing_keys, unexpected_keys).
        """
        own = OrderedDict(self._state_tensors())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        values, problems = {}, []
        for name, t in own.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            arr = value._data if isinstance(value, Tensor) else np.asarray(value)
            if arr.dtype.kind not in "biuf":
                problems.append(f"  {name}: cannot load an array of dtype {arr.dtype}")
            elif arr.shape != t.shape:
                problems.append(
                    f"  {name}: shape {arr.shape} in the checkpoint, {t.shape} in the model"
                )
            values[name] = arr
        if strict:
            problems += [f"  missing key: {k}" for k in missing]
            problems += [f"  unexpected key: {k}" for k in unexpected]
        if problems:
            raise RuntimeError(
                f"load_state_dict for {type(self).__name__} failed:\n" + "\n".join(problems)
            )
        for name, arr in values.items():
            np.copyto(own[name]._data, arr, casting="unsafe")
            bump_version(own[name])
        return IncompatibleKeys(missing, unexpected)

    # ----- printing -----------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [line for line in self.extra_repr().split("\n") if line]
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"({name}): {child_repr}")
        if not self._modules and len(lines) <= 1:
            return f"{type(self).__name__}({''.join(lines)})"
        return type(self).__name__ + "(\n  " + "\n  ".join(lines) + "\n)"
