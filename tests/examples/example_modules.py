"""Import an example program (examples/<name>.py; examples/ is not a package) as a module."""

import importlib.util
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str, prefix: str = ""):
    """The module examples/<name>.py, imported once per prefix: each test file keeps its own
    copy (its key in sys.modules is prefix + name), so one file's state never leaks into
    another's."""
    key = prefix + name
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]
