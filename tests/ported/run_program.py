"""Run a PyTorch program, as its files are, on PyTorch or on minigrad, and record what it did.

    python run_program.py SPEC.json

SPEC names the framework ("torch" or "minigrad"), the folder holding the program's files, its
scripts (files in that folder, run in order, each as `__main__`, with the folder on sys.path for
the program's own modules), the working directory holding the program's data, each script's
command-line arguments, the constant overrides (exact source substrings replaced before
compiling; each must occur exactly once, and check_programs.py counts them as changed lines) and
where to write the record. program_runs.py writes the SPEC, runs this once per framework and
compares the two records.

What makes the two runs comparable, all decided here and nowhere in the programs:

* Imports. Under minigrad, `ALIASES` below is the whole of "the imports changed": `torch`,
  `torch.nn`, ... resolve to minigrad's modules, and `nn.LSTM`, `nn.GRU`, ... to the recurrent
  layers of `models`.
* float64 is the default dtype in both.
* Weights. Every module the program defines is captured when its outermost constructor
  returns (any other module, e.g. a bare `nn.Linear`, at its first call): the torch run saves
  its state_dict, which is PyTorch's own initialisation, in creation order; the minigrad run
  loads the same arrays by name into the module it built at the same point of the program.
* Random draws. `manual_seed` also reseeds one NumPy generator, and `randn`, `rand` and dropout
  masks are drawn from it, in both frameworks. Python's `random`, NumPy's global generator and
  string hashing (PYTHONHASHSEED, set by the caller) are the same in both processes.
* The record: the value of every scalar `.backward()` is called on (the losses), what each
  `print` call printed (tensors as their values, at full precision), the final state of every
  captured module, and the exception that stopped the program, if one did.
"""

import builtins
import json
import os
import random
import sys
import traceback
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


# ----- the imports changed: PyTorch's module names -> minigrad's ------------------------------
def minigrad_aliases():
    """{module name a program imports: the minigrad module it gets}."""
    sys.path.insert(0, str(REPO))  # `models` lives at the repository root
    import minigrad
    import minigrad.autograd
    import minigrad.nn
    import minigrad.nn.functional
    import minigrad.onnx
    import minigrad.optim
    import minigrad.utils.data
    import models

    nn = types.ModuleType("torch.nn", minigrad.nn.__doc__)
    nn.__dict__.update({k: v for k, v in vars(minigrad.nn).items() if not k.startswith("__")})
    recurrent = ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"]
    nn.__dict__.update({name: getattr(models, name) for name in recurrent})
    torch = types.ModuleType("torch", minigrad.__doc__)
    torch.__dict__.update({k: v for k, v in vars(minigrad).items() if not k.startswith("__")})
    torch.nn = nn
    return {
        "torch": torch,
        "torch.nn": nn,
        "torch.nn.functional": minigrad.nn.functional,
        "torch.optim": minigrad.optim,
        "torch.autograd": minigrad.autograd,
        "torch.utils": minigrad.utils,
        "torch.utils.data": minigrad.utils.data,
        "torch.onnx": minigrad.onnx,
    }


# ----- one stream of random draws for both frameworks -----------------------------------------
class SharedDraws:
    """randn, rand and dropout masks drawn from one NumPy generator, reseeded by manual_seed."""

    def __init__(self, torch, functional):
        self.rng = np.random.default_rng(0)
        self.torch = torch
        self.original_seed = torch.manual_seed
        torch.manual_seed = self.manual_seed
        torch.randn = self.sampler(lambda shape: self.rng.standard_normal(shape))
        torch.rand = self.sampler(lambda shape: self.rng.random(shape))
        functional.dropout = self.dropout

    def manual_seed(self, seed):
        self.rng = np.random.default_rng(seed)
        return self.original_seed(seed)

    def sampler(self, draw):
        def sample(*size, dtype=None, requires_grad=False, **ignored):
            shape = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list)) else size
            shape = tuple(ignored.pop("size", shape))
            dtype = dtype or self.torch.get_default_dtype()
            return self.torch.tensor(draw(shape), dtype=dtype).requires_grad_(requires_grad)

        return sample

    def dropout(self, input, p=0.5, training=True, inplace=False):
        if not training or p == 0:
            return input
        keep = self.rng.random(tuple(input.shape)) >= p
        return input * self.torch.tensor(keep / (1 - p), dtype=input.dtype)


# ----- the same initial weights in both ----------------------------------------------------
class SharedWeights:
    """Captures each module once: saves its state (torch) or loads the saved one (minigrad)."""

    def __init__(self, framework, torch, path, program_dir):
        self.framework, self.torch, self.path = framework, torch, path
        self.modules, self.captured, self.done = [], set(), set()
        self.saved = json.loads(Path(path).read_text()) if framework == "minigrad" else []
        Module = torch.nn.Module
        depth = [0]
        capture = self.capture

        def init_subclass(cls, **kwargs):
            init = cls.__dict__.get("__init__")
            defined_in = getattr(sys.modules.get(cls.__module__), "__file__", None) or ""
            by_program = cls.__module__ == "__main__" or defined_in.startswith(program_dir)
            if init is not None and by_program:

                def __init__(self, *args, **kw):
                    depth[0] += 1
                    try:
                        init(self, *args, **kw)
                    finally:
                        depth[0] -= 1
                    if depth[0] == 0:
                        capture(self)

                cls.__init__ = __init__

        Module.__init_subclass__ = classmethod(init_subclass)
        call = Module.__call__

        def first_call(self, *args, **kwargs):
            if depth[0] == 0:
                capture(self)
            return call(self, *args, **kwargs)

        Module.__call__ = first_call

    def capture(self, module):
        if id(module) in self.captured:
            return
        params = list(module.parameters())
        if not params or all(id(p) in self.done for p in params):
            return
        index = len(self.modules)
        if self.framework == "torch":
            state = {k: v.detach().numpy().tolist() for k, v in module.state_dict().items()}
            self.saved.append({"class": type(module).__name__, "state": state})
        else:
            if index >= len(self.saved):
                raise RuntimeError(
                    f"{type(module).__name__}: PyTorch's run built no module #{index}"
                )
            entry = self.saved[index]
            if entry["class"] != type(module).__name__:
                raise RuntimeError(
                    f"module #{index} is a {type(module).__name__} here, a {entry['class']} in "
                    "PyTorch's run"
                )
            state = {k: np.array(v, dtype=np.float64) for k, v in entry["state"].items()}
            module.load_state_dict(state)
        self.modules.append(module)
        self.captured.add(id(module))
        self.done.update(id(p) for p in params)

    def finish(self):
        if self.framework == "torch":
            Path(self.path).write_text(json.dumps(self.saved))
        return [{k: as_array(v).tolist() for k, v in m.state_dict().items()} for m in self.modules]


def as_array(value):
    if isinstance(value, np.ndarray):
        return value
    return value.detach().cpu().numpy()


# ----- what the program did ---------------------------------------------------------------
class Recorder:
    def __init__(self, torch):
        self.torch, self.losses, self.prints = torch, [], []
        Tensor = torch.Tensor
        backward = Tensor.backward
        losses = self.losses

        def recording_backward(self, *args, **kwargs):
            if self.numel() == 1:
                losses.append(float(self.detach().reshape(-1)[0].item()))
            return backward(self, *args, **kwargs)

        Tensor.backward = recording_backward

    def print(self, *args, **kwargs):
        self.prints.append([self.encode(a) for a in args])
        builtins.print(*args, **kwargs)

    def encode(self, x):
        """A JSON-able value: tensors and arrays as their numbers, any other object as a tag."""
        if isinstance(x, self.torch.Tensor):
            return {"tensor": as_array(x).tolist()}
        if isinstance(x, np.ndarray):
            return {"tensor": x.tolist()}
        if isinstance(x, np.generic):
            return x.item()
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        if isinstance(x, (list, tuple)):
            return [self.encode(v) for v in x]
        if isinstance(x, dict):
            return {"dict": [[self.encode(k), self.encode(v)] for k, v in x.items()]}
        if type(x).__name__ == "device":
            return str(x)
        return {"object": "other"}  # e.g. a grad_fn, whose class and address differ by design


# ----- running ----------------------------------------------------------------------------
def load_framework(name):
    if name == "torch":
        import torch
        import torch.nn.functional

        functional = torch.nn.functional
    else:
        aliases = minigrad_aliases()
        sys.modules.update(aliases)
        torch, functional = aliases["torch"], aliases["torch.nn.functional"]
    torch.set_default_dtype(torch.float64)
    return torch, functional


def source_with_overrides(path, overrides):
    text = path.read_text(encoding="utf-8")
    for old, new in overrides:
        if text.count(old) != 1:
            raise ValueError(
                f"{path.name}: override {old!r} occurs {text.count(old)} times, not once"
            )
        text = text.replace(old, new)
    return text


def where_it_stopped(error, program_dir):
    frames = [
        f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith(program_dir)
    ]
    last = frames[-1] if frames else None
    return {
        "type": type(error).__name__,
        "message": str(error),
        "file": Path(last.filename).name if last else None,
        "line": last.lineno if last else None,
        "code": last.line if last else None,
    }


def main(spec_path):
    spec = json.loads(Path(spec_path).read_text())
    random.seed(0)
    np.random.seed(0)
    torch, functional = load_framework(spec["framework"])
    SharedDraws(torch, functional)
    program_dir = str(Path(spec["program"]).resolve())
    weights = SharedWeights(spec["framework"], torch, spec["weights"], program_dir)
    recorder = Recorder(torch)
    sys.path.insert(0, program_dir)
    os.chdir(spec["workdir"])
    error = None
    try:
        for script in spec["scripts"]:
            path = Path(program_dir) / script["file"]
            code = compile(
                source_with_overrides(path, script.get("overrides", [])), str(path), "exec"
            )
            sys.argv = [str(path), *script.get("args", [])]
            exec(code, {"__name__": "__main__", "__file__": str(path), "print": recorder.print})
    except Exception as e:  # the record says where and why; the caller decides if expected
        error = where_it_stopped(e, program_dir)
        traceback.print_exc()
    record = {
        "losses": recorder.losses,
        "prints": recorder.prints,
        "final_state": weights.finish(),
        "error": error,
    }
    Path(spec["record"]).write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1])
