"""The autograd graph behind a tensor, exported as Graphviz DOT, and counted.

    import minigrad.graph
    dot_source = minigrad.graph.to_dot(loss, params=model.named_parameters())
    info = minigrad.graph.stats(loss)     # nodes, leaves, edges, bytes of saved arrays
    minigrad.graph.view(loss, steps=hs)   # in Jupyter: drawn collapsed by time step

The walk starts at the tensor's node and follows `Function.inputs`, where each entry is another
node, a leaf tensor (the accumulation target of a parameter) or None (an operand that needed no
gradient: data, constants). It uses an explicit stack, never recursion, so the graph of an RNN
unrolled over a hundred thousand steps exports as easily as a small one.

In the picture values flow forward, from the leaves to the tensor: an edge `a -> f` means that
node f took a's output as an operand, and is labelled with the operand's shape. Nodes are named
by their op (`node.name`) and the shape they produced; leaves by their parameter name (when
`params` gives one) and shape.
"""

from __future__ import annotations

import numpy as np

from .autograd import Function
from .tensor import Tensor

__all__ = ["to_dot", "stats", "walk", "by_step", "summary", "to_dot_by_step", "view", "GraphView"]


def walk(tensor: Tensor):
    """Every node reachable from `tensor`, as (nodes, leaves), each in first-visit order.

    nodes: the Function instances; leaves: the leaf tensors that receive gradients. Both are
    deduplicated by identity (a node used twice is listed once).
    """
    root = tensor._node
    if root is None:
        return [], ([tensor] if tensor.requires_grad else [])
    nodes, leaves = [root], []
    seen = {id(root)}
    stack = [root]
    while stack:
        node = stack.pop()
        for parent in _inputs(node):
            if parent is None or id(parent) in seen:
                continue
            seen.add(id(parent))
            if isinstance(parent, Function):
                nodes.append(parent)
                stack.append(parent)
            else:
                leaves.append(parent)
    return nodes, leaves


def _inputs(node: Function) -> tuple:
    return getattr(node, "inputs", None) or ()


def _arrays(saved):
    """The NumPy arrays inside a node's `saved` (an array, a tuple of them, or other values)."""
    stack = [saved]
    while stack:
        item = stack.pop()
        if isinstance(item, np.ndarray):
            yield item
        elif isinstance(item, (tuple, list)):
            stack.extend(item)


def _owner(arr: np.ndarray) -> np.ndarray:
    """The array that owns a view's memory (a view holds its base alive, not only its slice)."""
    while isinstance(arr.base, np.ndarray):
        arr = arr.base
    return arr


def stats(tensor: Tensor) -> dict:
    """Size of the graph behind `tensor` and of what it keeps alive for backward.

    Returns a dict: `nodes` (ops), `leaves` (tensors that receive gradients), `edges` (operand
    links that carry a gradient), `saved_arrays` and `saved_bytes` (the distinct arrays the
    nodes hold for their backward, counted once each at the size of the memory they keep alive;
    a node whose backward has run holds none) and `ops` (a count of nodes per op name).
    """
    nodes, leaves = walk(tensor)
    owners = {}
    ops: dict[str, int] = {}
    edges = 0
    for node in nodes:
        ops[node.name] = ops.get(node.name, 0) + 1
        edges += sum(p is not None for p in _inputs(node))
        for arr in _arrays(getattr(node, "saved", None)):
            base = _owner(arr)
            owners[id(base)] = base
    return {
        "nodes": len(nodes),
        "leaves": len(leaves),
        "edges": edges,
        "saved_arrays": len(owners),
        "saved_bytes": int(sum(a.nbytes for a in owners.values())),
        "ops": dict(sorted(ops.items())),
    }


def _quote(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _shape(shape) -> str:
    return str(tuple(int(n) for n in shape))


def to_dot(
    tensor: Tensor,
    params=None,
    show_constants: bool = True,
    rankdir: str = "LR",
    title: str | None = None,
) -> str:
    """The graph that produced `tensor`, as Graphviz DOT source (render with `dot -Tpng`).

    params: names for leaf tensors, as a dict {name: tensor} or an iterable of (name, tensor)
        pairs (e.g. `module.named_parameters()`); unnamed leaves are labelled "leaf".
    show_constants: also draw the operands that needed no gradient (data, zeros, constants),
        one small grey box per use, since the graph keeps no identity for them.
    rankdir: Graphviz layout direction, "LR" (left to right, good for unrolled sequences) or
        "TB" (top to bottom).
    title: an optional caption for the picture.
    """
    names = {}
    if params is not None:
        items = params.items() if isinstance(params, dict) else params
        names = {id(t): name for name, t in items}
    nodes, leaves = walk(tensor)
    ident = {}  # id(node or leaf) -> DOT node id
    for i, leaf in enumerate(leaves):
        ident[id(leaf)] = f"p{i}"
    for i, node in enumerate(nodes):
        ident[id(node)] = f"n{i}"
    # A node does not keep the tensor it produced; its consumers keep that tensor's shape.
    out_shape = {}
    if nodes:
        out_shape[id(nodes[0])] = tensor.shape
    for node in nodes:
        for parent, shape in zip(_inputs(node), getattr(node, "shapes", ()), strict=False):
            if parent is not None:
                out_shape.setdefault(id(parent), shape)

    lines = ["digraph minigrad {", f"  rankdir={rankdir};"]
    lines.append('  node [fontname="Helvetica", fontsize=10];')
    lines.append('  edge [fontname="Helvetica", fontsize=8];')
    if title:
        lines.append(f"  label={_quote(title)}; labelloc=t;")
    for leaf in leaves:
        label = f"{names.get(id(leaf), 'leaf')}\n{_shape(leaf.shape)}"
        lines.append(
            f"  {ident[id(leaf)]} [label={_quote(label)}, shape=box, style=filled, "
            'fillcolor="lightblue"];'
        )
    if tensor._node is None and tensor.requires_grad:
        lines.append("}")
        return "\n".join(lines) + "\n"
    constants = 0
    for node in nodes:
        shape = out_shape.get(id(node))
        label = node.name if shape is None else f"{node.name}\n{_shape(shape)}"
        extra = ', style=filled, fillcolor="gold"' if node is nodes[0] else ""
        lines.append(f"  {ident[id(node)]} [label={_quote(label)}, shape=ellipse{extra}];")
    for node in nodes:
        target = ident[id(node)]
        for parent, shape in zip(_inputs(node), getattr(node, "shapes", ()), strict=False):
            if parent is None:
                if not show_constants:
                    continue
                source = f"k{constants}"
                constants += 1
                lines.append(
                    f"  {source} [label={_quote(_shape(shape))}, shape=box, fontsize=8, "
                    'style=filled, fillcolor="gray90", color="gray60"];'
                )
                lines.append(f'  {source} -> {target} [color="gray60"];')
                continue
            lines.append(f"  {ident[id(parent)]} -> {target} [label={_quote(_shape(shape))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ----- views by time step -------------------------------------------------------------------------
def _kept_bytes(nodes, leaves=()) -> int:
    """Bytes of the distinct arrays `nodes` save for their backward, each at its own size (a
    step's slice x[t] of an input counts as the slice), leaving out the leaves' arrays
    (parameters exist anyway, whatever the graph)."""
    skip = {id(_owner(leaf._data)) for leaf in leaves}
    kept = {}
    for node in nodes:
        for a in _arrays(getattr(node, "saved", None)):
            if id(_owner(a)) not in skip:
                kept[id(a)] = a
    return int(sum(a.nbytes for a in kept.values()))


def by_step(tensor: Tensor, steps) -> list:
    """The nodes of `tensor`'s graph grouped by time step: steps is the sequence of the state
    tensors h_1, ..., h_T (a layer's outputs, a cell's returns). Group t holds the nodes h_t
    depends on that h_{t-1} does not: the t-th copy of the cell. A last group holds the nodes
    after (or beside) the steps: the loss, a read-out. Returns [(label, [nodes])]."""
    seen, groups = set(), []
    for t, h in enumerate(steps, start=1):
        fresh, stack = [], [h._node] if h._node is not None and id(h._node) not in seen else []
        if stack:
            seen.add(id(h._node))
        while stack:
            node = stack.pop()
            fresh.append(node)
            for parent in _inputs(node):
                if isinstance(parent, Function) and id(parent) not in seen:
                    seen.add(id(parent))
                    stack.append(parent)
        groups.append((f"step {t}", fresh))
    rest = [n for n in walk(tensor)[0] if id(n) not in seen]
    if rest:
        groups.append(("after the steps", rest))
    return groups


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if nbytes < 1024 or unit == "MiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024


def _signature(nodes) -> tuple:
    counts: dict[str, int] = {}
    for n in nodes:
        counts[n.name] = counts.get(n.name, 0) + 1
    return tuple(sorted(counts.items()))


def _describe(sig) -> str:
    return ", ".join(f"{name} {count}" if count > 1 else name for name, count in sig)


def summary(tensor: Tensor, steps=None) -> str:
    """A text account of the graph: size, ops, bytes kept for backward and, given the state
    tensors of each step, one line per run of steps whose cells are the same ops (the bytes
    each step's nodes keep, the parameters' own arrays left out)."""
    info = stats(tensor)
    lines = [
        f"graph of a tensor of shape {_shape(tensor.shape)}: {info['nodes']} ops, "
        f"{info['leaves']} leaves, {_size(info['saved_bytes'])} kept for backward",
        "ops: " + _describe(tuple(info["ops"].items())),
    ]
    if steps is None:
        return "\n".join(lines)
    groups, leaves = by_step(tensor, steps), walk(tensor)[1]
    i = 0
    while i < len(groups):
        label, nodes = groups[i]
        sig, j = _signature(nodes), i + 1
        while (
            j < len(groups) and groups[j][0].startswith("step") and _signature(groups[j][1]) == sig
        ):
            j += 1
        size = _size(_kept_bytes(nodes, leaves))
        span = label if j == i + 1 else f"steps {label.split()[1]}-{groups[j - 1][0].split()[1]}"
        same = "" if j == i + 1 else " each (the same cell at every step)"
        lines.append(f"{span}: {len(nodes)} ops, {size}{same}: {_describe(sig)}")
        i = j
    return "\n".join(lines)


def to_dot_by_step(tensor: Tensor, steps, params=None, rankdir: str = "LR") -> str:
    """The unrolled graph collapsed by time step: one box per step (its op count, the bytes
    it keeps for backward, its ops, marked when it repeats the first step's cell), an edge
    where one step feeds the next, and the parameters with an edge to each step reading them."""
    names = {}
    if params is not None:
        items = params.items() if isinstance(params, dict) else params
        names = {id(t): name for name, t in items}
    groups, params_kept = by_step(tensor, steps), walk(tensor)[1]
    where = {id(n): g for g, (_, nodes) in enumerate(groups) for n in nodes}
    first = _signature(groups[0][1]) if groups else ()
    lines = ["digraph minigrad_steps {", f"  rankdir={rankdir};"]
    lines.append('  node [fontname="Helvetica", fontsize=10, shape=box];')
    leaves, links = {}, set()
    for g, (label, nodes) in enumerate(groups):
        sig = _signature(nodes)
        size = _size(_kept_bytes(nodes, params_kept))
        mark = "\n(the cell of step 1)" if g and sig == first and label.startswith("step") else ""
        text = f"{label}: {len(nodes)} ops, {size}\n{_describe(sig)}{mark}"
        colour = "gold" if not label.startswith("step") else "white"
        lines.append(f"  s{g} [label={_quote(text)}, style=filled, fillcolor={_quote(colour)}];")
        for node in nodes:
            for parent in _inputs(node):
                if isinstance(parent, Function) and where.get(id(parent), g) != g:
                    links.add((where[id(parent)], g))
                elif parent is not None and not isinstance(parent, Function):
                    leaves.setdefault(id(parent), (parent, set()))[1].add(g)
    for i, (leaf, users) in enumerate(leaves.values()):
        label = f"{names.get(id(leaf), 'leaf')}\n{_shape(leaf.shape)}"
        lines.append(f'  p{i} [label={_quote(label)}, style=filled, fillcolor="lightblue"];')
        lines += [f'  p{i} -> s{g} [color="gray60"];' for g in sorted(users)]
    lines += [f"  s{a} -> s{b};" for a, b in sorted(links)]
    lines.append("}")
    return "\n".join(lines) + "\n"


class GraphView:
    """What Jupyter shows for `mg.graph.view(tensor, steps=...)`: the graph drawn by Graphviz
    (collapsed by time step when steps are given) if its `dot` program is installed, else the
    text summary. `str(view)` is always the text."""

    def __init__(self, tensor: Tensor, steps=None, params=None):
        # Kept as lists and dicts: a view is drawn more than once (Jupyter renders the HTML,
        # then the SVG), and a generator such as named_parameters() would be used up by the
        # first drawing, leaving every leaf unnamed in the second.
        if params is not None and not isinstance(params, dict):
            params = dict(params)
        self.tensor, self.params = tensor, params
        self.steps = None if steps is None else list(steps)

    def dot(self) -> str:
        if self.steps is None:
            return to_dot(self.tensor, params=self.params)
        return to_dot_by_step(self.tensor, self.steps, params=self.params)

    def __str__(self) -> str:
        return summary(self.tensor, self.steps)

    __repr__ = __str__

    def _repr_svg_(self):
        import shutil
        import subprocess

        if shutil.which("dot") is None:
            return None  # Jupyter then shows the HTML (text) form
        run = subprocess.run(["dot", "-Tsvg"], input=self.dot(), capture_output=True, text=True)
        return run.stdout if run.returncode == 0 else None

    def _repr_html_(self) -> str:
        import html

        svg = self._repr_svg_()
        return svg if svg is not None else f"<pre>{html.escape(str(self))}</pre>"


def view(tensor: Tensor, steps=None, params=None) -> GraphView:
    """The graph behind `tensor` for a notebook (the last expression of a cell shows it):
    drawn when Graphviz is installed, summarised as text otherwise. steps: the states h_1..h_T
    to collapse it by time step; params: names for the leaves (`module.named_parameters()`).
    The view draws the graph as it is when shown: take it before backward(), which frees what
    the nodes saved (its byte counts then read 0)."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"graph.view: expected a Tensor, got {type(tensor).__name__}")
    return GraphView(tensor, steps, params)
