"""The import arrows point one way: kernels <- ops <- tensor/autograd <- nn/optim <- models
<- examples, so each layer can be read and tested without the ones above it. Checked on the
source with `ast`, so nothing is imported or run; packages that do not exist yet are simply
not there to check.
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Third-party packages the framework may import at run time (pyproject's dependencies).
RUNTIME_DEPS = {"numpy", "numba", "scipy"}
# Optional extras, each imported by one module only, inside a function (so `import minigrad`
# works without them; tests/distributed checks that importing does not load mpi4py).
OPTIONAL = {"mpi4py": "minigrad/distributed/_mpi.py"}
# The layers below nn/optim; utilities above them (save/load) may use nn.
CORE = (
    "minigrad.kernels",
    "minigrad.ops",
    "minigrad.autograd",
    "minigrad.tensor",
    "minigrad.dtypes",
    "minigrad.random",
    "minigrad.gradcheck",
)
# Modules of the framework that models/ must not reach into: only the public API is theirs.
INTERNAL = ("minigrad.kernels", "minigrad.ops", "minigrad.autograd", "minigrad.tensor")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(source: str, module: str, is_package: bool = False):
    """(imported module, line) for every import in the source, relative ones made absolute.
    `from a import b` yields both `a` and `a.b` (b may be a submodule)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            yield target, node.lineno
            for alias in node.names:
                yield f"{target}.{alias.name}", node.lineno


def sources(*tops):
    for top in tops:
        base = ROOT / top
        if base.is_dir():
            yield from sorted(p for p in base.rglob("*.py") if "__pycache__" not in p.parts)
        elif base.with_suffix(".py").is_file():
            yield base.with_suffix(".py")


def all_imports(*tops):
    for path in sources(*tops):
        module = module_name(path)
        for target, line in imports(path.read_text(), module, path.name == "__init__.py"):
            yield path, line, target


def under(target: str, *packages) -> bool:
    return any(target == p or target.startswith(p + ".") for p in packages)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def report(bad):
    return "\n".join(f"{p.relative_to(ROOT)}:{line} imports {t}" for p, line, t in bad)


# ----- the checker itself -------------------------------------------------------------------------
def test_the_import_parser_resolves_relative_imports():
    src = "import numpy\nfrom .. import kernels\nfrom ..autograd import Function\nfrom . import x"
    found = {t for t, _ in imports(src, "minigrad.ops.shape")}
    assert {"numpy", "minigrad", "minigrad.kernels", "minigrad.autograd"} <= found
    assert "minigrad.autograd.Function" in found and "minigrad.ops.x" in found
    assert {t for t, _ in imports("from .tensor import T", "minigrad", is_package=True)} == {
        "minigrad.tensor",
        "minigrad.tensor.T",
    }


def test_the_layers_being_checked_exist():
    found = {module_name(p) for p in sources("minigrad")}
    assert {"minigrad", "minigrad.autograd", "minigrad.tensor", "minigrad.ops.elementwise"} <= found
    assert any(m.startswith("minigrad.kernels") for m in found)


# ----- the rules ----------------------------------------------------------------------------------
def test_kernels_import_nothing_from_minigrad_outside_kernels():
    bad = [
        (p, line, t)
        for p, line, t in all_imports("minigrad/kernels")
        if under(t, "minigrad") and not under(t, "minigrad.kernels")
    ]
    assert not bad, report(bad)


def test_ops_import_neither_tensors_nor_layers_above():
    bad = [
        (p, line, t)
        for p, line, t in all_imports("minigrad/ops")
        if under(t, "minigrad.tensor", "minigrad.nn", "minigrad.optim")
    ]
    assert not bad, report(bad)


def test_the_engine_imports_no_ops_tensors_or_layers_above():
    bad = [
        (p, line, t)
        for p, line, t in all_imports("minigrad/autograd")
        if under(t, "minigrad.ops", "minigrad.tensor", "minigrad.nn", "minigrad.optim")
    ]
    assert not bad, report(bad)


def test_core_modules_do_not_import_nn_or_optim():
    core = [p for p in sources("minigrad") if under(module_name(p), *CORE)]
    assert core
    bad = []
    for path in core:
        for t, line in imports(path.read_text(), module_name(path), path.name == "__init__.py"):
            if under(t, "minigrad.nn", "minigrad.optim"):
                bad.append((path, line, t))
    assert not bad, report(bad)


def test_minigrad_never_imports_models_or_examples():
    bad = [(p, line, t) for p, line, t in all_imports("minigrad") if under(t, "models", "examples")]
    assert not bad, report(bad)


def test_minigrad_imports_only_the_standard_library_and_its_dependencies():
    allowed = set(sys.stdlib_module_names) | RUNTIME_DEPS | {"minigrad"}
    bad = [
        (p, line, t)
        for p, line, t in all_imports("minigrad")
        if t.split(".")[0] not in allowed
        and p.relative_to(ROOT).as_posix() != OPTIONAL.get(t.split(".")[0])
    ]
    assert not bad, report(bad)


@pytest.mark.parametrize("package, module", sorted(OPTIONAL.items()))
def test_an_optional_dependency_is_imported_only_inside_functions(package, module):
    tree = ast.parse((ROOT / module).read_text())
    at_top = [
        node.lineno
        for node in tree.body  # module level, including under if/try at the top
        for node in ast.walk(node)
        if isinstance(node, (ast.Import, ast.ImportFrom)) and package in ast.unparse(node)
    ]
    inside = [
        inner.lineno
        for fn in ast.walk(tree)
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
        for inner in ast.walk(fn)
        if isinstance(inner, (ast.Import, ast.ImportFrom)) and package in ast.unparse(inner)
    ]
    assert inside, f"{module} no longer imports {package}: update OPTIONAL"
    assert sorted(set(at_top) - set(inside)) == [], f"{module} imports {package} at module level"


def test_nn_and_optim_do_not_import_models_or_examples():
    bad = [
        (p, line, t)
        for p, line, t in all_imports("minigrad/nn", "minigrad/optim")
        if under(t, "models", "examples")
    ]
    assert not bad, report(bad)


def test_models_use_only_the_public_api():
    bad = [
        (p, line, t)
        for p, line, t in all_imports("models")
        if under(t, "examples")
        or under(t, *INTERNAL)
        or (under(t, "minigrad") and any(_private(part) for part in t.split(".")))
    ]
    assert not bad, report(bad)


@pytest.mark.parametrize("top", ["minigrad", "models"])
def test_nothing_below_examples_imports_them(top):
    bad = [(p, line, t) for p, line, t in all_imports(top) if under(t, "examples")]
    assert not bad, report(bad)
