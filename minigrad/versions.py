"""Version counters: an in-place write must not change what a node saved for its backward.

Each tensor's `_vc` is a list [count, shared]: `count` goes up at every in-place write,
`shared` is set once a view (same memory, another tensor) exists. Views share the list, so a
write through either bumps both, as with PyTorch's version counter. A node that saves
something keeps (counter, version then, which input or output, its memory) for each of its
inputs and outputs. Before its backward, if a version has moved, the node's saved state is
walked (arrays, tuples and lists of them, and the nodes a fused kernel or a scan keeps inside
itself) and the backward is refused if it holds that memory: the walk costs nothing unless
something was written.
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


def snapshot(tensors, results) -> tuple:
    """(counter, version now, input index or -1 - k for output k, id of its memory) for every
    input and output of a node that saves something. Cheap at record time; which of them the
    node's saved state holds is worked out only if one has changed when its backward runs
    (the ids stay valid: the saved state keeps what it holds alive)."""
    guards = []
    for i, t in (*enumerate(tensors), *[(-1 - k, r) for k, r in enumerate(results)]):
        vc = t._vc
        if vc is None:
            vc = t._vc = [0, False]
        d = t.data
        guards.append((vc, vc[0], i, id(d if d.base is None else d.base)))
    return tuple(guards)


def check_versions(node) -> None:
    """PyTorch's error if an input or output whose memory `node` saved has been written in
    place since it was saved."""
    changed = [g for g in node.versions if g[0][0] != g[1]]
    if not changed:
        return
    held = {id(r) for r in saved_roots(node.saved)}
    for vc, seen, i, memory in changed:
        if memory not in held:  # written, but not what this node reads: no harm
            continue
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
