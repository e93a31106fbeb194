"""`Optimizer`: parameter groups, per-parameter state, and state_dicts, as in PyTorch.

Subclasses write one method, `_update(p, grad, state, group)`, the update rule for one
parameter; the base class walks the groups, skips parameters without a gradient and runs every
update in place on `p.data` under no_grad.
"""

import numpy as np

from ..autograd import bump_version, enable_grad, no_grad
from ..tensor import Tensor


class Optimizer:
    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state = {}  # parameter -> dict of its state (buffers, step count)
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError(
                f"{type(self).__name__}: params must be an iterable of tensors or of dicts, "
                "not a single tensor; use [tensor] or model.parameters()"
            )
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        for group in params:
            self.add_param_group(group)

    def add_param_group(self, group: dict) -> None:
        """Add a dict with key 'params' and any hyperparameters overriding the defaults."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{type(self).__name__}: a parameter group is a dict with 'params'")
        group = dict(group)
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__} can only optimize Tensors, got {type(p)}")
            if p.dtype.kind != "f" or not p.is_leaf:
                raise ValueError(
                    f"{type(self).__name__} can only optimize floating leaf tensors "
                    f"(got dtype {p.dtype}, leaf={p.is_leaf})"
                )
            if id(p) in seen:
                raise ValueError(f"{type(self).__name__}: a parameter appears in two groups")
            seen.add(id(p))
        group["params"] = params
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def step(self, closure=None):
        """One update of every parameter that has a gradient. `closure`, if given, recomputes
        the loss (with gradients) first; its value is returned."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        self._update(p, p.grad, self.state.setdefault(p, {}), group)
                        bump_version(p)  # a graph that saved p before the step must not use it
        return loss

    def _update(self, p, grad, state, group):
        raise NotImplementedError

    # ----- state --------------------------------------------------------------------------------
    def _all_params(self):
        return [p for g in self.param_groups for p in g["params"]]

    def state_dict(self) -> dict:
        """{'state': {param index: {name: array or number}}, 'param_groups': [hyperparameters,
        'params': [indices]]}: parameters by their position, so it loads into a fresh model."""
        index = {id(p): i for i, p in enumerate(self._all_params())}
        state = {
            index[id(p)]: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
            for p, s in self.state.items()
        }
        groups = []
        for g in self.param_groups:
            entry = {k: v for k, v in g.items() if k != "params"}
            entry["params"] = [index[id(p)] for p in g["params"]]
            groups.append(entry)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: {len(groups)} parameter groups in the "
                f"state_dict, {len(self.param_groups)} in the optimizer"
            )
        for i, (saved, own) in enumerate(zip(groups, self.param_groups, strict=True)):
            if len(saved["params"]) != len(own["params"]):
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: group {i} has "
                    f"{len(saved['params'])} parameters in the state_dict, {len(own['params'])} "
                    "in the optimizer"
                )
        by_index = {}
        for saved, own in zip(groups, self.param_groups, strict=True):
            by_index.update(zip(saved["params"], own["params"], strict=True))
        self.state = {}
        for i, s in state_dict["state"].items():
            p = by_index[int(i)]
            self.state[p] = {k: self._restore(p, k, v) for k, v in s.items()}
        for saved, own in zip(groups, self.param_groups, strict=True):
            own.update({k: v for k, v in saved.items() if k != "params"})

    @staticmethod
    def _restore(p, key, value):
        if isinstance(value, Tensor):
            value = value.data
        if isinstance(value, np.ndarray):
            if value.shape != p.shape and value.ndim > 0:
                raise ValueError(
                    f"optimizer state '{key}' has shape {value.shape}, parameter {p.shape}"
                )
            dtype = p.dtype if value.dtype.kind == "f" else value.dtype
            return np.array(value, dtype=dtype)  # a copy, in the parameter's dtype
        return value

    def __repr__(self) -> str:
        lines = [type(self).__name__ + " ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params"]
        return "\n".join(lines) + "\n)"


def _check(name, value, low, high=None, low_open=False):
    """Raise a ValueError naming the hyperparameter unless low <= value (< or <=) high."""
    bad = value < low or (low_open and value == low) or (high is not None and value >= high)
    if bad:
        rng = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'})"
        raise ValueError(f"invalid {name}: {value} (must be in {rng})")
