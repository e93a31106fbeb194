"""A fused group at run time: its compiled loops (`FusedKernel`, a step of a plan) and the
graph node that runs them (`FusedOp`, a node of one output per group result)."""

from __future__ import annotations

import numpy as np

from .. import autograd
from ..autograd import Function
from . import codegen


class FusedKernel:
    """One group's compiled loops and how to hand them its arrays: a step of a plan.

    Like every step (trace.Op too), it reads the slots `ins` and writes the slots `outs` by
    `cls.apply(*ins, **kwargs)`, here a `FusedOp` node. Its `ins` are first the inputs of
    absorbed producer ops (whose forward and backward it runs itself, their saved arrays
    guarded as any node's), then one per leaf the loops read directly.
    """

    cls = None  # FusedOp, set below

    def __init__(self, group, values):
        self.shape = group.shape
        self.dtype = group.dtype
        self.C = group.shape[-1]
        self.R = int(np.prod(group.shape[:-1], dtype=np.int64))
        # Variables renamed in order of appearance: the same cell at any step (and any hidden
        # size) then has the same Spec, hence the same source and one compiled kernel.
        names = {}

        def rename(var):
            return names.setdefault(var, f"v{len(names)}")

        leaves, reads = [], []
        for var, (kind, s, lo, width) in group.reads.items():
            leaf = (kind, s, width)
            if leaf not in leaves:
                leaves.append(leaf)
            # A multiple of C (what chunk makes) stays symbolic, so that one compiled kernel
            # serves every hidden size; other offsets are literals.
            offset = f"{lo // self.C} * C" if lo and lo % self.C == 0 else str(lo)
            reads.append((rename(var), leaves.index(leaf), offset))
        members = tuple(
            (cls.scalar, cls.scalar_grads, tuple(rename(v) for v in ins), rename(out))
            for cls, ins, out in group.members
        )
        self.spec = codegen.Spec(
            dtype=group.dtype.name,
            leaves=tuple(kind for kind, _, _ in leaves),
            reads=tuple(reads),
            members=members,
            outputs=tuple(rename(f"v{s}") for s in group.outputs),
        )
        self.kinds = [kind for kind, _, _ in leaves]
        self.leaf_slots = [s for _, s, _ in leaves]
        # Each leaf's array as the loops index it: (R, C), (R, W) for a view's base, or flat.
        R, C = self.R, self.C
        self.leaf_shapes = [values[s].shape for s in self.leaf_slots]
        self.loop_shapes = loop_shapes = [
            (R, C) if kind == "full" else (R, width) if kind == "view" else (values[s]._data.size,)
            for kind, s, width in leaves
        ]
        self.loop_sizes = [int(np.prod(shape, dtype=np.int64)) for shape in loop_shapes]
        self.prologue = []  # (op class, kwargs, positions of its inputs, output slot)
        self.outs = list(group.outputs)
        self.n_saved = len(self.spec.saved_vars())
        # Backward is handed only the leaves it reads (not an LSTM's (B, 4H) pre-activations);
        # for the others a one-element array of the same dimensions, which it never reads.
        self.keep = self.spec.leaves_read_by_backward()
        self.stand_ins = [
            None if keep else np.zeros((1,) * len(shape), self.dtype)
            for keep, shape in zip(self.keep, self.loop_shapes, strict=True)
        ]
        self.names = ", ".join(cls.__name__.lower() for cls, _, _ in group.members)
        self.group, self.var_names = group, names  # for explain()
        self._layout()
        self._forward = None
        self._backward = {}
        self.kwargs = {"kernel": self}  # FusedOp.apply(*ins, kernel=self), as every step runs

    def absorb(self, op) -> None:
        """Run `op` (a trace.Op whose result only this kernel reads) inside the node."""
        self.prologue.append((op.cls, op.kwargs, op.ins, op.out))
        self.names = f"{op.cls.__name__.lower()}, {self.names}"
        self._layout()

    def explain(self) -> str:
        g = self.group
        outs = ", ".join(f"s{s}" for s in self.outs)
        lines = [f"fused node -> {outs}: {g.dtype} loops over {g.shape} (R={self.R}, C={self.C})"]
        for cls, kwargs, in_slots, s in self.prologue:
            args = [f"s{i}" for i in in_slots] + [f"{k}={v!r}" for k, v in kwargs.items()]
            lines.append(f"    first runs s{s} = {cls.__name__}({', '.join(args)})")
        lines.append("    node inputs: " + ", ".join(f"s{s}" for s in self.ins))
        # Variables as the generated loops name them (renamed in order of appearance).
        names = self.var_names
        lines += [f"    {names[var]} = {r}" for var, r in g.reads.items()]
        lines += [
            f"    {type(m)(m.cls, tuple(names[v] for v in m.ins), names[m.out])}" for m in g.members
        ]
        saved = self.spec.saved_vars()
        lines.append(f"    saves {len(saved)} intermediate(s) for backward")
        return "\n".join(lines)

    def _layout(self):
        made = {s: j for j, (_, _, _, s) in enumerate(self.prologue)}
        self.ins, self.calls = [], []
        for cls, kwargs, in_slots, _ in self.prologue:
            start = len(self.ins)
            self.ins += in_slots
            self.calls.append((cls, kwargs, range(start, start + len(in_slots))))
        # Each leaf comes from a prologue op (j, None) or is an input of the node (None, pos).
        self.sources = []
        for s in self.leaf_slots:
            if s in made:
                self.sources.append((made[s], None))
            else:
                self.sources.append((None, len(self.ins)))
                self.ins.append(s)

    def forward(self, arrays, save):
        if self._forward is None:
            self._forward = codegen.forward_kernel(self.spec)
        fns, made = [], []
        for cls, kwargs, positions in self.calls:
            fn = cls()
            made.append(fn.forward(*[arrays[p] for p in positions], **kwargs))
            fns.append(fn)
        leaves = [
            (arrays[pos] if j is None else made[j]).reshape(shape)
            for (j, pos), shape in zip(self.sources, self.loop_shapes, strict=True)
        ]
        R, C, k = self.R, self.C, len(self.outs)
        out = np.empty((k, R, C), dtype=self.dtype)
        scratch = np.empty((self.n_saved if save else 0, R, C), dtype=self.dtype)
        self._forward(R, C, *leaves, out, scratch, save)
        result = out.reshape(self.shape) if k == 1 else out.reshape((k,) + self.shape)
        if not save:
            return result, None
        kept = [a if b is None else b for a, b in zip(leaves, self.stand_ins, strict=True)]
        return result, (kept, scratch, out, fns)

    def _backward_plan(self, needs):
        """For one pattern of inputs needing gradients: the compiled loop; for each leaf
        gradient, the leaf's index, where its gradient goes, and the leaf whose array it
        shares (its own index unless its gradient equals an earlier leaf's)."""
        leaf_needs = tuple(
            needs[pos] if j is None else any(needs[p] for p in self.calls[j][2])
            for j, pos in self.sources
        )
        writes = codegen.adjoint_writes(self.spec, leaf_needs)
        aliases = [-1] * len(writes)
        for i, w in enumerate(writes):
            for k in range(i):
                if w is not None and aliases[k] < 0 and writes[k] == w:
                    if self.loop_shapes[k] == self.loop_shapes[i]:
                        aliases[i] = k
                        break
        kernel = codegen.backward_kernel(self.spec, leaf_needs, tuple(aliases))
        routes = [
            (j, pos, self.leaf_shapes[i], i if aliases[i] < 0 else aliases[i])
            for i, ((j, pos), n) in enumerate(zip(self.sources, leaf_needs, strict=True))
            if n
        ]
        calls = [(positions, tuple(needs[p] for p in positions)) for _, _, positions in self.calls]
        order = tuple(dict.fromkeys(home for _, _, _, home in routes))  # the arrays it writes
        home_of = {pos: home for j, pos, _, home in routes if j is None}  # by input position
        return kernel, routes, calls, order, home_of

    def backward(self, g, saved, needs, into=None):
        """Gradients for the node's inputs, given which of them need one. g: (k, R, C), one
        gradient per output. into: {input position: a zeroed array} to write that input's
        gradient in (a scan's row of x's gradient), where its shape allows."""
        leaves, scratch, out, fns = saved
        plan = self._backward.get(needs)
        if plan is None:
            plan = self._backward[needs] = self._backward_plan(needs)
        kernel, routes, calls, order, home_of = plan
        dtype = self.dtype
        arrays = dict.fromkeys(order)  # one zeroed array per leaf gradient, in kernel order
        for pos, buf in (into or {}).items():  # a gradient the caller has a place for goes there
            home = home_of.get(pos)
            if home is not None and buf.size == self.loop_sizes[home]:
                arrays[home] = buf.reshape(self.loop_shapes[home])
        for home, a in arrays.items():
            if a is None:
                arrays[home] = np.zeros(self.loop_shapes[home], dtype=dtype)
        gout = np.ascontiguousarray(g, dtype=dtype).reshape(len(self.outs), self.R, self.C)
        kernel(self.R, self.C, out, scratch, *leaves, *arrays.values(), gout)

        result = [None] * len(needs)
        made = [None] * len(fns)
        for j, pos, shape, home in routes:
            grad = arrays[home].reshape(shape)
            if j is None:
                result[pos] = grad
            else:  # a prologue output read as several leaves gets their sum
                made[j] = grad if made[j] is None else made[j] + grad
        for fn, (positions, fn_needs), grad in zip(fns, calls, made, strict=True):
            if grad is not None:
                fn.needs = fn_needs
                for p, ig in zip(positions, fn.backward(grad), strict=False):
                    result[p] = ig
        return result


class FusedOp(Function):
    """A group of elementwise ops as one node, with one output per result of the group."""

    into = None  # see FusedKernel.backward

    def forward(self, *arrays, kernel=None):
        self.kernel = kernel
        self.n_outputs = k = len(kernel.outs)
        result, self.saved = kernel.forward(arrays, autograd.is_grad_enabled())
        return result if k == 1 else tuple(result)

    def backward(self, *gs):
        kernel = self.kernel
        if len(gs) == 1:
            g = gs[0]
        else:
            shape = (len(gs), kernel.R, kernel.C)
            g = np.empty(shape, kernel.dtype)
            for i, gi in enumerate(gs):
                g[i] = 0 if gi is None else gi.reshape(shape[1:])
        return kernel.backward(g, self.saved, self.needs, self.into)

    @property
    def name(self) -> str:
        return f"Fused({self.kernel.names})"


FusedKernel.cls = FusedOp
