"""Version counters: an in-place write must not change what a node saved for its backward.

Each tensor's `_vc` is a list [count, shared]: `count` goes up at every in-place write,
`shared` is set once a view (same memory, another tensor) exists. Views share the list, so a
write through either bumps both, as with PyTorch's version counter. A recorded node keeps
(counter, version then, which input) for every input or output whose memory its saved state
holds, found by walking that state (arrays, tuples and lists of them, and the nodes a fused
kernel runs inside itself), and the reverse step refuses to run if any has moved since.
"""

from __future__ import annotations

import numpy as np


def version_counter(t) -> list:
    vc = t._vc
    if vc is None:
        vc = t._vc = [0, False]
    return vc


def bump_version(t) -> None:
    """Record an in-place write into t's memory (only counted once something guards it)."""
    vc = t._vc
    if vc is not None:
        vc[0] += 1


def _root(a):
    return a if a.base is None else a.base


def share_version_with_view(tensors, result) -> None:
    """`result` is a view of an input's memory: give it that input's counter."""
    root = _root(result.data)
    for t in tensors:
        if _root(t.data) is root:
            vc = version_counter(t)
            vc[1] = True
            result._vc = vc
            return


def saved_roots(saved) -> list:
    """The memory (base arrays) a node's saved state holds, walking tuples and lists and the
    saved state of nodes it keeps (an absorbed matmul's inside a fused kernel)."""
    roots, todo = {}, [saved]
    while todo:
        a = todo.pop()
        kind = type(a)
        if kind is np.ndarray:
            r = a if a.base is None else a.base
            roots[id(r)] = r
        elif kind is tuple or kind is list:
            todo.extend(a)
        elif a is not None and hasattr(a, "saved"):
            todo.append(a.saved)
    return list(roots.values())


def guard_saved(saved, tensors, results) -> tuple | None:
    """(counter, version now, input index, or -1 - k for output k) for each input or output
    whose memory `saved` holds. Runs for every recorded node that saves, hence plain loops."""
    roots = saved_roots(saved)
    if not roots:
        return None
    guards = []
    # The inputs by position, then the outputs as -1, -2, ... (version 0: just made).
    candidates = list(enumerate(tensors)) + [(-1 - k, r) for k, r in enumerate(results)]
    for i, t in candidates:
        d = t.data
        r = d if d.base is None else d.base
        for x in roots:
            if x is r:
                vc = t._vc
                if vc is None:
                    vc = t._vc = [0, False]
                guards.append((vc, vc[0], i))
                break
    return tuple(guards) if guards else None


def check_versions(node) -> None:
    """PyTorch's error if an input or output `node` saved has been written in place since."""
    for vc, seen, i in node.versions:
        if vc[0] != seen:
            if i >= 0:
                what = f"input {i} (shape {node.shapes[i]})"
            else:
                what = "its output" if i == -1 else f"its output {-1 - i}"
            raise RuntimeError(
                f"one of the variables needed for gradient computation has been modified by an "
                f"in-place operation: {what} of {node.name} is at version {vc[0]}, it was at "
                f"version {seen} when {node.name} saved it. Write the new value into a new "
                "tensor (x = x + 1 instead of x += 1, or clone it before the in-place write), "
                "or run the in-place update (an optimizer step) after backward()."
            )
