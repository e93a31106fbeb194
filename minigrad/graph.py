"""The autograd graph behind a tensor, exported as Graphviz DOT, and counted.

    import minigrad.graph
    dot_source = minigrad.graph.to_dot(loss, params=model.named_parameters())
    info = minigrad.graph.stats(loss)     # nodes, leaves, edges, bytes of saved arrays

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

__all__ = ["to_dot", "stats", "walk"]


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
