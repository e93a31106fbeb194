"""minigrad.graph: the autograd graph as Graphviz DOT, and its size."""

import os
import re
import sys

import numpy as np
import pytest

import minigrad as mg
import minigrad.graph as G

NODE = re.compile(r'^\s*(\w+) \[label="((?:[^"\\]|\\.)*)"', re.M)
EDGE = re.compile(r"^\s*(\w+) -> (\w+)", re.M)


def parse(dot: str):
    """{dot id: label} and the list of (source, target) edges of a DOT string."""
    nodes = dict(NODE.findall(dot))
    edges = EDGE.findall(dot)
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    for a, b in edges:
        assert a in nodes and b in nodes, f"edge {a} -> {b} names an undeclared node"
    return nodes, edges


def by_label(nodes, prefix):
    return [i for i, label in nodes.items() if label.split("\\n")[0] == prefix]


def test_small_graph_nodes_edges_and_labels():
    x = mg.tensor(np.ones((2, 3)), requires_grad=True)
    w = mg.tensor(np.ones((3, 4)), requires_grad=True)
    y = ((x @ w).tanh() * 2.0).sum()
    nodes, edges = parse(G.to_dot(y, params={"x": x, "w": w}))
    # two named leaves, four ops, and one constant (the 2.0)
    assert sorted(label for label in nodes.values()) == sorted(
        [
            "x\\n(2, 3)",
            "w\\n(3, 4)",
            "MatMul\\n(2, 4)",
            "Tanh\\n(2, 4)",
            "Mul\\n(2, 4)",
            "Sum\\n()",
            "()",
        ]
    )
    ids = {label.split("\\n")[0]: i for i, label in nodes.items()}
    const = by_label(nodes, "()")[0]
    expected = {
        (ids["x"], ids["MatMul"]),
        (ids["w"], ids["MatMul"]),
        (ids["MatMul"], ids["Tanh"]),
        (ids["Tanh"], ids["Mul"]),
        (const, ids["Mul"]),
        (ids["Mul"], ids["Sum"]),
    }
    assert set(edges) == expected and len(edges) == len(expected)
    # the edge into Sum carries the operand's shape
    assert re.search(rf'{ids["Mul"]} -> {ids["Sum"]} \[label="\(2, 4\)"\]', G.to_dot(y))


def test_constants_can_be_hidden_and_unnamed_leaves_are_labelled_leaf():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * 3.0).sum()
    nodes, edges = parse(G.to_dot(y, show_constants=False))
    assert sorted(nodes.values()) == ["Mul\\n(2,)", "Sum\\n()", "leaf\\n(2,)"]
    assert len(edges) == 2


def test_a_reused_tensor_is_one_node_with_one_edge_per_use():
    a = mg.tensor([1.0, -1.0], requires_grad=True)
    b = a + a  # one leaf, used twice by the same node
    c = (b * b).sum()  # one node, used twice
    nodes, edges = parse(G.to_dot(c, params=[("a", a)]))
    assert len(by_label(nodes, "a")) == 1 and len(by_label(nodes, "Add")) == 1
    (add,), (mul,), (leaf,) = by_label(nodes, "Add"), by_label(nodes, "Mul"), by_label(nodes, "a")
    assert edges.count((leaf, add)) == 2 and edges.count((add, mul)) == 2


def test_labels_are_escaped():
    x = mg.tensor([1.0], requires_grad=True)
    dot = G.to_dot(x.sum(), params={'say "hi"\\': x}, title='a "title"')
    nodes, _ = parse(dot)
    assert 'say \\"hi\\"\\\\\\n(1,)' in nodes.values()
    assert 'label="a \\"title\\""' in dot


def test_leaf_and_detached_tensors():
    x = mg.tensor([1.0], requires_grad=True)
    nodes, edges = parse(G.to_dot(x, params={"x": x}))
    assert list(nodes.values()) == ["x\\n(1,)"] and edges == []
    nodes, edges = parse(G.to_dot(mg.tensor([1.0])))
    assert nodes == {} and edges == []


def test_stats_counts_nodes_and_saved_memory_and_sees_it_freed():
    x = mg.tensor(np.ones((8, 8), np.float32), requires_grad=True)
    y = x.tanh()  # saves its output: 8*8*4 bytes
    z = (y * y).sum()  # Mul saves both operands, the same array: counted once
    info = G.stats(z)
    assert info["nodes"] == 3 and info["leaves"] == 1 and info["edges"] == 4
    assert info["ops"] == {"Mul": 1, "Sum": 1, "Tanh": 1}
    assert info["saved_bytes"] >= 256 and info["saved_arrays"] >= 1
    assert info["saved_bytes"] == sum(a.nbytes for a in {id(a): a for a in _owners(z)}.values())
    z.backward()
    assert G.stats(z)["saved_bytes"] == 0  # backward released every saved array


def _owners(t):
    nodes, _ = G.walk(t)
    for node in nodes:
        saved = getattr(node, "saved", None)
        saved = saved if isinstance(saved, tuple) else (saved,)
        for a in saved:
            if isinstance(a, np.ndarray):
                while isinstance(a.base, np.ndarray):
                    a = a.base
                yield a


def test_a_chain_of_100k_nodes_exports_without_recursion():
    limit = sys.getrecursionlimit()
    x = mg.tensor([1.0], requires_grad=True)
    y = x
    n = 100_000
    for _ in range(n):
        y = y * 1.0
    try:
        sys.setrecursionlimit(200)  # any recursion over the chain would fail at once
        dot = G.to_dot(y, params={"x": x}, show_constants=False)
        info = G.stats(y)
    finally:
        sys.setrecursionlimit(limit)
    assert info["nodes"] == n and info["edges"] == n
    assert dot.count(" -> ") == n  # n - 1 between the Muls, one from the leaf
    assert dot.count('label="Mul\\n(1,)"') == n


def test_unrolled_elman_graph_has_five_nodes_per_step():
    from models import ElmanRNN

    mg.manual_seed(0)
    model = ElmanRNN(3, 4, 3)
    counts = []
    for T in (2, 3, 7):
        o, _ = model(mg.tensor(np.zeros((T, 1, 3), np.float32)))
        counts.append(G.stats(o.sum())["nodes"])
    assert counts[1] - counts[0] == 5 and counts[2] - counts[1] == 4 * 5
    o, _ = model(mg.tensor(np.zeros((3, 1, 3), np.float32)))
    nodes, _ = parse(G.to_dot(o.sum(), params=model.named_parameters()))
    assert {"U", "W", "V", "b", "c"} <= {label.split("\\n")[0] for label in nodes.values()}
    assert len(by_label(nodes, "Tanh")) == 3


# ----- views by time step -------------------------------------------------------------------------
def _unrolled(T=4):
    from models import RNNCell

    mg.manual_seed(0)
    cell = RNNCell(3, 4)
    x = mg.randn(T, 2, 3)
    h, hs = None, []
    for t in range(T):
        h = cell(x[t], h)
        hs.append(h)
    return cell, hs, (h**2).sum()


def test_by_step_finds_one_copy_of_the_cell_per_step():
    cell, hs, loss = _unrolled()
    groups = G.by_step(loss, hs)
    assert [label for label, _ in groups] == [
        "step 1",
        "step 2",
        "step 3",
        "step 4",
        "after the steps",
    ]
    assert [sorted(n.name for n in nodes) for _, nodes in groups[:4]] == [
        ["Add", "Linear", "Linear", "Tanh"]
    ] * 4
    assert sorted(n.name for n in groups[-1][1]) == ["Pow", "Sum"]
    assert sum(len(nodes) for _, nodes in groups) == G.stats(loss)["nodes"]


def test_summary_and_collapsed_dot():
    cell, hs, loss = _unrolled()
    text = G.summary(loss, hs)
    saved = G._kept_bytes(G.by_step(loss, hs)[0][1], G.walk(loss)[1])
    # each step saves x[t] (2, 3), h_{t-1} (2, 4) and tanh's output (2, 4), in float32
    assert saved == (6 + 8 + 8) * 4
    assert f"steps 1-4: 4 ops, {saved} B each (the same cell at every step)" in text
    assert "after the steps: 2 ops" in text and "18 ops, 4 leaves" in text
    nodes, edges = parse(G.to_dot_by_step(loss, hs, params=cell.named_parameters()))
    steps = [i for i, label in nodes.items() if label.startswith("step")]
    assert len(steps) == 4
    assert sum("(the cell of step 1)" in nodes[i] for i in steps) == 3
    # the steps form a chain, and each parameter feeds every step
    chain = [(a, b) for a, b in edges if a in steps and b in steps]
    assert len(chain) == 3
    w = by_label(nodes, "weight_hh")[0]
    assert sorted(b for a, b in edges if a == w) == sorted(steps)


def test_view_shows_text_without_graphviz(monkeypatch):
    import shutil

    cell, hs, loss = _unrolled(T=2)
    view = mg.graph.view(loss, steps=hs)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert view._repr_svg_() is None
    html = view._repr_html_()
    assert (
        html.startswith("<pre>") and "steps 1-2" in html and str(view) in html.replace("&gt;", ">")
    )
    with pytest.raises(TypeError, match="graph.view: expected a Tensor"):
        mg.graph.view(3.0)


def test_view_draws_with_graphviz_when_dot_exists(tmp_path, monkeypatch):
    """A stand-in `dot` on PATH (Graphviz is not a dependency): the view pipes its DOT to it."""
    fake = tmp_path / "dot"
    body = 'import sys\nprint("<svg>" + str(sys.stdin.read().count("->")) + "</svg>")\n'
    fake.write_text(f"#!{sys.executable}\n{body}")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    cell, hs, loss = _unrolled(T=3)
    view = mg.graph.view(loss, steps=hs)
    edges = view.dot().count("->")
    assert view._repr_svg_().strip() == f"<svg>{edges}</svg>"
    assert view._repr_html_() == view._repr_svg_()


def test_a_view_given_a_generator_of_names_keeps_them_for_every_drawing():
    import minigrad as mg
    from minigrad.graph import view

    w = mg.randn(3, 3, requires_grad=True)
    loss = (mg.randn(2, 3) @ w).tanh().sum()
    shown = view(loss, params=(name for name in [("w", w)]))
    first, second = shown.dot(), shown.dot()  # Jupyter draws the HTML, then the SVG
    assert first == second
    assert 'label="w\\n(3, 3)"' in second
