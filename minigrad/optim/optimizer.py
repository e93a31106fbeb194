"""`Optimizer`: parameter groups, per-parameter state, and state_dicts, as in PyTorch.

Subclasses write one method, `_update(p, grad, state, group)`, the update rule for one
parameter; the base class walks the groups, skips parameters without a gradient and runs every
update in place on the parameter's array under no_grad.
"""

import operator

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
                    p._grad._data[...] = 0

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
                        self._update(p, p._grad._data, self.state.setdefault(p, {}), group)
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
        """Load what state_dict() returned. Everything is checked before anything changes: a
        bad entry raises a ValueError naming it and leaves the optimizer as it was."""
        name = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= state_dict.keys():
            raise ValueError(f"{name}: expected a dict with 'state' and 'param_groups'")
        groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"{name}: {len(groups)} parameter groups in the state_dict, "
                f"{len(self.param_groups)} in the optimizer"
            )
        by_index = {}  # saved index -> (parameter, where it is, for messages)
        for g, (saved, own) in enumerate(zip(groups, self.param_groups, strict=True)):
            if not isinstance(saved, dict) or "params" not in saved:
                raise ValueError(f"{name}: group {g} of the state_dict has no 'params'")
            if len(saved["params"]) != len(own["params"]):
                raise ValueError(
                    f"{name}: group {g} has {len(saved['params'])} parameters in the "
                    f"state_dict, {len(own['params'])} in the optimizer"
                )
            for j, (i, p) in enumerate(zip(saved["params"], own["params"], strict=True)):
                i = _index(name, i, f"group {g}, param {j}")
                if i in by_index:
                    raise ValueError(f"{name}: parameter index {i} is in the state_dict twice")
                by_index[i] = (p, f"group {g}, param {j} (index {i})")
        new_state = {}
        for i, entry in saved_state.items():
            i = _index(name, i, "a state entry")
            if i not in by_index:
                raise ValueError(
                    f"{name}: a state entry for parameter index {i}, but the param groups "
                    f"list only {sorted(by_index)}"
                )
            p, where = by_index[i]
            if not isinstance(entry, dict):
                raise ValueError(f"{name}: the state of {where} is a {type(entry).__name__}")
            new_state[p] = {k: _restore(f"{name}: {where}", p, k, v) for k, v in entry.items()}
        self.state = new_state
        for saved, own in zip(groups, self.param_groups, strict=True):
            own.update({k: v for k, v in saved.items() if k != "params"})

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


def _index(name, i, what):
    """A parameter index of a state_dict as an int (JSON turns the state's keys into str)."""
    try:
        return int(i) if isinstance(i, str) else operator.index(i)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {what} has parameter index {i!r}, not an int") from None


def _restore(where, p, key, value):
    """A copy of one state entry for parameter p. An array of p's shape is a moment: it must be
    floating and is cast to p's dtype, so the next step computes in p's dtype."""
    if isinstance(value, Tensor):
        value = value._data
    if not isinstance(value, np.ndarray):
        return value  # a number (the step count) or whatever a subclass keeps
    if key == "step" or (value.ndim == 0 and p.ndim > 0):  # a count or scalar statistic
        if value.ndim or value.dtype.kind not in "iuf":
            raise ValueError(
                f"{where}: '{key}' must be a real number, got a {value.dtype} array of shape "
                f"{value.shape}"
            )
        return value.copy()  # in its own dtype: a float16 step count would lose steps
    if value.shape != p.shape:
        raise ValueError(
            f"{where}: '{key}' has shape {value.shape}, expected the parameter's {p.shape}"
        )
    if value.dtype.kind != "f":
        raise ValueError(
            f"{where}: '{key}' has dtype {value.dtype}, expected a floating array "
            f"(it is cast to the parameter's {p.dtype})"
        )
    with np.errstate(over="ignore"):
        out = value.astype(p.dtype)  # a copy
    if not np.array_equal(np.isfinite(out), np.isfinite(value)):
        raise ValueError(f"{where}: '{key}' has values beyond the range of {p.dtype}")
    return out
