"""Version counters: an in-place write must not change what a node saved for its backward.

Each tensor's `_vc` is a list [count, shared]: `count` goes up at every in-place write,
`shared` is set once a view (same memory, another tensor) exists. Views share the list, so a
write through either bumps both, as with PyTorch's version counter. A node that saves
something keeps (counter, version then, which input or output) for each input or output whose
memory its saved state holds, and the reverse step refuses to run its backward if one has
moved. A plain op's saved arrays are matched when it is recorded; a deep saved state (the
nodes a fused kernel or a scan keeps inside itself, a checkpoint's inputs) is walked only if
some input's or output's version has moved by the time backward runs, so a scan's T steps cost
no walk unless something was written.
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
    root = _root(result._data)
    for t in tensors:
        if _root(t._data) is root:
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


def _flat_roots(saved):
    """The memory a plain op's saved state holds (an array, or a tuple or list of arrays and
    None), or None when it holds something deeper (nodes, lists of nodes: a fused kernel's, a
    scan's), whose walk waits until a version has moved."""
    if type(saved) is np.ndarray:
        return (saved if saved.base is None else saved.base,)
    if type(saved) is not tuple and type(saved) is not list:
        return None
    roots = []
    for a in saved:
        if type(a) is np.ndarray:
            roots.append(a if a.base is None else a.base)
        elif type(a) is tuple or type(a) is list:  # one level of arrays (or numbers) inside
            for b in a:
                if type(b) is np.ndarray:
                    roots.append(b if b.base is None else b.base)
                elif b is not None and not isinstance(b, (int, float)):
                    return None
        elif a is not None and not isinstance(a, (int, float)):
            return None
    return roots


def guard(saved, tensors, results):
    """What a node that saves something keeps to check its versions before backward:
    (counter, version now, input index or -1 - k for output k, memory) per input or output.
    For a plain op, only those whose memory the saved arrays hold, with memory None (known to
    be held); for a deep saved state, every input and output with the id of its memory, and
    which of them the state holds is worked out only if one has moved when backward runs
    (the ids stay valid: the saved state keeps what it holds alive). A plain op's check thus
    costs its few arrays, a scan's no walk over its T steps."""
    roots = _flat_roots(saved)
    guards = []
    for i, t in (*enumerate(tensors), *[(-1 - k, r) for k, r in enumerate(results)]):
        d = t._data
        r = d if d.base is None else d.base
        if roots is not None and not any(x is r for x in roots):
            continue
        vc = t._vc
        if vc is None:
            vc = t._vc = [0, False]
        guards.append((vc, vc[0], i, None if roots is not None else id(r)))
    return tuple(guards) if guards else None


def check_versions(node) -> None:
    """PyTorch's error if an input or output whose memory `node` saved has been written in
    place since it was saved."""
    changed = [g for g in node.versions if g[0][0] != g[1]]
    if not changed:
        return
    held = None
    for vc, seen, i, memory in changed:
        if memory is not None:  # a deep saved state: does it hold this memory?
            held = {id(r) for r in saved_roots(node.saved)} if held is None else held
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
