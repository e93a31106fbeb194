"""Helpers for the recurrent models' tests: float64 by default, a fixed seed, gradcheck.

Not a conftest.py: the framework's tests import names from tests/conftest.py as the module
`conftest`, which a second conftest.py here would shadow. Test files import what they use
from here (the autouse fixture `float64_seeded` included).

Sizes are tiny on purpose (B=2, T=3, H=3): gradcheck perturbs every parameter twice.
"""

import numpy as np
import pytest

import minigrad as mg


@pytest.fixture(autouse=True)
def float64_seeded():
    """Every test here runs in float64 (gradients are compared to 1e-10) from seed 0."""
    previous = mg.get_default_dtype()
    mg.set_default_dtype(mg.float64)
    mg.manual_seed(0)
    yield
    mg.set_default_dtype(previous)


@pytest.fixture(name="rng")
def rng_fixture():
    """A NumPy generator for test data (independent of minigrad's own generator)."""
    return np.random.default_rng(1234)


def module_gradcheck(module, fn, *inputs):
    """gradcheck of fn(*inputs) with respect to the inputs that require grad and to every
    parameter of module (which fn must use)."""
    params = [p for p in module.parameters() if p.requires_grad]
    n = len(inputs)
    return mg.gradcheck(lambda *args: fn(*args[:n]), list(inputs) + params)


def graph_op_names(t):
    """Names of every op in the graph that produced t (walked with an explicit stack)."""
    names, seen, stack = [], set(), [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen or not hasattr(node, "inputs"):
            continue
        seen.add(id(node))
        names.append(node.name)
        stack.extend(node.inputs)
    return names
