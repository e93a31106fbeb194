"""`LBFGS`: limited-memory BFGS with PyTorch's arguments, state and iteration order.

One `step(closure)` runs up to `max_iter` quasi-Newton iterations on the parameters flattened
into one vector. The search direction is the two-loop recursion (Nocedal & Wright, Numerical
Optimization, Alg. 7.4) over the last `history_size` curvature pairs, scaled by
H0 = s'y / y'y; the step is `lr` (the first ever is shortened to lr / |g|_1 when |g|_1 > 1), or
a strong Wolfe line search (Alg. 3.5 and 3.6, cubic interpolation) with
`line_search_fn="strong_wolfe"`. Every test and constant matches torch.optim.LBFGS, so the same
problem gives the same losses and parameters.
"""

import math
import numbers

import numpy as np

from ..autograd import bump_version, enable_grad, no_grad
from .optimizer import Optimizer, _check, _index

_VECTORS = ("d", "prev_flat_grad")  # flat vectors over all parameters, or None
_HISTORY = ("old_dirs", "old_stps")  # lists of flat vectors: y (gradient changes), s (steps)
_NUMBERS = ("t", "H_diag", "prev_loss", "n_iter", "func_evals")
_COUNTS = ("max_iter", "max_eval", "history_size")


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """The minimiser of the cubic through (x1, f1) and (x2, f2) with slopes g1, g2 (N&W eq.
    3.59), clipped to bounds (default: between x1 and x2); their midpoint if it has none."""
    lo, hi = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 * d1 - g1 * g2
    if d2_square < 0:
        return (lo + hi) / 2.0
    d2 = math.sqrt(d2_square)
    if x1 <= x2:
        x = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        x = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(x, lo), hi)


def _strong_wolfe(evaluate, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """Step length t along d satisfying the strong Wolfe conditions: sufficient decrease
    f(t) <= f + c1 t gtd and curvature |g(t)'d| <= c2 |gtd|. evaluate(t) -> (loss, flat grad)
    at x + t d. Returns (loss, grad, t, evaluations)."""
    d_norm = np.abs(d).max()
    f_new, g_new = evaluate(t)
    evals, gtd_new = 1, float(g_new @ d)
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done, ls_iter = False, 0
    # Bracketing (Alg. 3.5): grow t until an interval must hold an acceptable step.
    while ls_iter < max_ls:
        # A minimum lies in [t_prev, t] if f(t) is too high (or rising), or if the slope is
        # uphill and the curvature condition fails (PyTorch tests sufficient decrease, then
        # curvature, then the slope, in that order).
        curvature_met = abs(gtd_new) <= -c2 * gtd
        too_high = f_new > f + c1 * t * gtd or (ls_iter > 1 and f_new >= f_prev)
        if too_high or (gtd_new >= 0 and not curvature_met):
            bracket, b_f = [t_prev, t], [f_prev, f_new]
            b_g, b_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        if curvature_met:
            bracket, b_f, b_g, done = [t], [f_new], [g_new], True
            break
        # Extrapolate: the cubic's minimiser, at least 1% beyond t and at most 10 t.
        bounds = (t + 0.01 * (t - t_prev), t * 10)
        t_prev, t = t, _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds)
        f_prev, g_prev, gtd_prev = f_new, g_new, gtd_new
        f_new, g_new = evaluate(t)
        evals, gtd_new, ls_iter = evals + 1, float(g_new @ d), ls_iter + 1
    if ls_iter == max_ls:  # out of evaluations: as PyTorch, no zoom follows
        bracket, b_f, b_g = [0.0, t], [f, f_new], [g, g_new]
    # Zoom (Alg. 3.6): shrink [low, high], low always the lower loss so far.
    insuf_progress = False
    low, high = (0, 1) if b_f[0] <= b_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], b_f[0], b_gtd[0], bracket[1], b_f[1], b_gtd[1])
        # Keep t off the ends (within 10% of the width) when it hugs one twice running or
        # lands on it, so the interval keeps shrinking.
        b_max, b_min = max(bracket), min(bracket)
        eps = 0.1 * (b_max - b_min)
        if min(b_max - t, t - b_min) < eps:
            if insuf_progress or t >= b_max or t <= b_min:
                t = b_max - eps if abs(t - b_max) < abs(t - b_min) else b_min + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = evaluate(t)
        evals, gtd_new, ls_iter = evals + 1, float(g_new @ d), ls_iter + 1
        if f_new > f + c1 * t * gtd or f_new >= b_f[low]:
            bracket[high], b_f[high], b_g[high], b_gtd[high] = t, f_new, g_new, gtd_new
            low, high = (0, 1) if b_f[0] <= b_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high] - bracket[low]) >= 0:
                bracket[high], b_f[high] = bracket[low], b_f[low]
                b_g[high], b_gtd[high] = b_g[low], b_gtd[low]
            bracket[low], b_f[low], b_g[low], b_gtd[low] = t, f_new, g_new, gtd_new
    return b_f[low], b_g[low], bracket[low], evals


class LBFGS(Optimizer):
    """torch.optim.LBFGS: `step(closure)` where the closure zeroes the gradients, computes the
    loss, calls backward and returns the loss; step returns the closure's first loss. One
    parameter group only; state (history, direction, counters) carries across steps."""

    def __init__(
        self,
        params,
        lr=1,
        max_iter=20,
        max_eval=None,
        tolerance_grad=1e-7,
        tolerance_change=1e-9,
        history_size=100,
        line_search_fn=None,
    ):
        _check("lr", lr, 0)
        if max_eval is None:
            max_eval = max_iter * 5 // 4  # PyTorch's default
        for name, value in zip(_COUNTS, (max_iter, max_eval, history_size), strict=True):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"invalid {name}: {value!r} (must be an int >= 1)")
        _check("tolerance_grad", tolerance_grad, 0)
        _check("tolerance_change", tolerance_change, 0)
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError(
                f"LBFGS: line_search_fn must be None or 'strong_wolfe', got {line_search_fn!r}"
            )
        defaults = dict(
            lr=lr,
            max_iter=max_iter,
            max_eval=max_eval,
            tolerance_grad=tolerance_grad,
            tolerance_change=tolerance_change,
            history_size=history_size,
            line_search_fn=line_search_fn,
        )
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        self._params = self.param_groups[0]["params"]

    def add_param_group(self, group):
        if self.param_groups:  # the flat vector spans one group's parameters
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        super().add_param_group(group)

    # ----- the parameters as one flat vector ----------------------------------------------------
    def _numel(self):
        return sum(p._data.size for p in self._params)

    def _gather_flat_grad(self):
        """All gradients in one new vector; a parameter without one contributes zeros."""
        ps = self._params
        return np.concatenate(
            [
                np.zeros(p._data.size, p.dtype) if p.grad is None else p.grad._data.ravel()
                for p in ps
            ]
        )

    def _add_grad(self, t, d):
        """p <- p + t d, in place (version bumped: a graph that saved p must not use it)."""
        offset = 0
        for p in self._params:
            n = p._data.size
            p._data += t * d[offset : offset + n].reshape(p._data.shape)
            bump_version(p)
            offset += n

    def _set_params(self, xs):
        for p, x in zip(self._params, xs, strict=True):
            p._data[...] = x
            bump_version(p)

    def _evaluate(self, closure):
        with enable_grad():
            loss = float(closure())
        return loss, self._gather_flat_grad()

    # ----- the iteration ------------------------------------------------------------------------
    def step(self, closure=None):
        if closure is None:
            raise RuntimeError(
                "LBFGS needs a closure: step(closure) where closure() zeroes the gradients, "
                "computes the loss, calls backward() and returns the loss"
            )
        with no_grad():
            return self._step(closure)

    def _step(self, closure):
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tol_grad, tol_change = group["tolerance_grad"], group["tolerance_change"]
        state = self.state.setdefault(self._params[0], {})
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        with enable_grad():
            orig_loss = closure()
        loss, flat_grad = float(orig_loss), self._gather_flat_grad()
        current_evals = 1
        state["func_evals"] += 1
        if np.abs(flat_grad).max() <= tol_grad:  # already optimal
            return orig_loss

        d, t = state.get("d"), state.get("t")
        old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
        H_diag, prev_flat_grad = state.get("H_diag"), state.get("prev_flat_grad")
        prev_loss = state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:  # the very first iteration: steepest descent
                d, old_dirs, old_stps, ro, H_diag = -flat_grad, [], [], [], 1.0
            else:
                y, s = flat_grad - prev_flat_grad, d * t
                ys = float(y @ s)
                if ys > 1e-10:  # keep the pair only if it has positive curvature
                    if len(old_dirs) == group["history_size"]:
                        old_dirs.pop(0), old_stps.pop(0), ro.pop(0)
                    old_dirs.append(y), old_stps.append(s), ro.append(1.0 / ys)
                    H_diag = ys / float(y @ y)
                # Two-loop recursion: d = -H g with H the L-BFGS inverse Hessian (Alg. 7.4).
                al = [0.0] * len(old_dirs)
                q = -flat_grad
                for i in range(len(old_dirs) - 1, -1, -1):
                    al[i] = float(old_stps[i] @ q) * ro[i]
                    q -= al[i] * old_dirs[i]
                d = q * H_diag
                for i in range(len(old_dirs)):
                    be_i = float(old_dirs[i] @ d) * ro[i]
                    d += (al[i] - be_i) * old_stps[i]
            prev_flat_grad, prev_loss = flat_grad.copy(), loss

            # The first step ever is at most lr / |g|_1 long: no curvature is known yet.
            t = min(1.0, 1.0 / float(np.abs(flat_grad).sum())) * lr if state["n_iter"] == 1 else lr
            gtd = float(flat_grad @ d)
            if gtd > -tol_change:  # not a descent direction (to tolerance)
                break

            ls_evals = 0
            if group["line_search_fn"] is not None:
                x0 = [p._data.copy() for p in self._params]

                def evaluate(step, x0=x0, d=d):
                    self._add_grad(step, d)
                    out = self._evaluate(closure)
                    self._set_params(x0)
                    return out

                # The search may spend only what is left of max_eval (as PyTorch 2.x does).
                budget = max_eval - current_evals
                loss, flat_grad, t, ls_evals = _strong_wolfe(
                    evaluate, t, d, loss, flat_grad, gtd, max_ls=budget
                )
                self._add_grad(t, d)
                opt_cond = np.abs(flat_grad).max() <= tol_grad
            else:
                self._add_grad(t, d)
                opt_cond = False
                if n_iter != max_iter:  # the last iteration's loss is left to the next step
                    loss, flat_grad = self._evaluate(closure)
                    opt_cond = np.abs(flat_grad).max() <= tol_grad
                    ls_evals = 1
            current_evals += ls_evals
            state["func_evals"] += ls_evals

            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if np.abs(d * t).max() <= tol_change or abs(loss - prev_loss) < tol_change:
                break  # no progress in the parameters or in the loss

        state.update(d=d, t=t, H_diag=H_diag, prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        state.update(old_dirs=old_dirs, old_stps=old_stps, ro=ro)
        return orig_loss

    # ----- state --------------------------------------------------------------------------------
    def state_dict(self):
        out = super().state_dict()
        for entry in out["state"].values():  # the history lists are mutated by later steps
            for key in ("old_dirs", "old_stps", "ro"):
                if isinstance(entry.get(key), list):
                    entry[key] = [v.copy() if isinstance(v, np.ndarray) else v for v in entry[key]]
        return out

    def load_state_dict(self, state_dict):
        """As Optimizer.load_state_dict, with the flat vectors and history checked here (they
        have the length of all parameters together, not one parameter's shape)."""
        name = "LBFGS.load_state_dict"
        if not isinstance(state_dict, dict) or not isinstance(state_dict.get("state"), dict):
            raise ValueError(f"{name}: expected a dict with 'state' and 'param_groups'")
        n, dtype = self._numel(), np.result_type(*[p.dtype for p in self._params])
        ours, rest = {}, {}
        for key, entry in state_dict["state"].items():
            i = _index(name, key, "a state entry")
            if not isinstance(entry, dict):
                raise ValueError(f"{name}: the state of parameter index {i!r} is not a dict")
            where = f"{name}: state of parameter index {i!r}"
            ours[i] = {k: _vector(where, k, entry[k], n, dtype) for k in _VECTORS if k in entry}
            for k in _NUMBERS:
                if k in entry:
                    ours[i][k] = _number(where, k, entry[k])
            if any(k in entry for k in (*_HISTORY, "ro")):
                lists = [entry.get(k) for k in (*_HISTORY, "ro")]
                if not all(isinstance(v, list) for v in lists) or len({*map(len, lists)}) != 1:
                    raise ValueError(
                        f"{where}: old_dirs, old_stps and ro must be equally long lists"
                    )
                for k, v in zip(_HISTORY, lists, strict=False):
                    ours[i][k] = [_vector(where, k, x, n, dtype) for x in v]
                ours[i]["ro"] = [_number(where, "ro", x) for x in lists[2]]
            rest[key] = {k: v for k, v in entry.items() if k not in ours[i]}
        super().load_state_dict({**state_dict, "state": rest})  # checks groups; raises first
        saved = [_index(name, i, "") for g in state_dict["param_groups"] for i in g["params"]]
        for i, p in zip(saved, self._all_params(), strict=True):
            if i in ours:
                self.state[p].update(ours[i])
        self._params = self.param_groups[0]["params"]


def _vector(where, key, value, n, dtype):
    if value is None:
        return None
    value = np.asarray(getattr(value, "_data", value))
    if value.shape != (n,) or value.dtype.kind != "f":
        raise ValueError(
            f"{where}: '{key}' must be a floating vector of the {n} parameter entries, got "
            f"{value.dtype} of shape {value.shape}"
        )
    return value.astype(dtype)  # a copy


def _number(where, key, value):
    value = getattr(value, "_data", value)
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if value is None and key in ("t", "H_diag", "prev_loss"):
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{where}: '{key}' must be a real number, got {value!r}")
    if key in ("n_iter", "func_evals") and (not isinstance(value, numbers.Integral) or value < 0):
        raise ValueError(f"{where}: '{key}' must be a count (an int >= 0), got {value!r}")
    return value
