"""DistributedDataParallel: every rank runs the whole model on its share of the batch, and
the gradients are averaged (or summed) over the ranks before the optimizer steps.

The design is PyTorch's DDP (Li et al. 2020, "PyTorch Distributed: Experiences on
Accelerating Data Parallel Training"), on MPI:

- At construction, every rank's parameters must match rank 0's in names, shapes, dtypes,
  requires_grad and their places in the gradient buckets (a ValueError on every rank naming
  the first difference otherwise), and rank 0's values are broadcast to all, so the ranks
  start identical; identical averaged gradients then keep them identical.
- Gradients travel in buckets of about `bucket_cap_mb`: flat NumPy buffers, one allreduce
  each (fewer, larger messages than one per tensor, which pays the latency once per bucket).
  Parameters are bucketed in reverse order of registration, the order in which backward
  tends to finish them.
- Overlap: a hook runs right after each parameter's gradient is complete
  (Tensor.register_post_accumulate_grad_hook); when a whole bucket is complete, its
  non-blocking allreduce (MPI_Iallreduce) starts while backward goes on with the rest.
  Buckets start strictly in order (bucket i only after bucket i - 1), so every rank issues
  the same collectives in the same order whatever order its gradients finish in.
- When the last bucket has started, the wrapper waits for all of them and writes the
  reduced gradients back into each parameter's .grad, still inside backward(): after
  `loss.backward()` returns, .grad holds the reduced gradient, as with PyTorch. Before it
  waits, it exchanges a fingerprint with the user collectives' check (collectives.py), so a
  rank left in all_reduce or barrier by another rank's backward gets an error at once.
- `synchronize()` finishes whatever backward did not: it reduces buckets some of whose
  parameters got no gradient in this pass (as zeros), and is a no-op when backward already
  finished everything. A rank with nothing to compute (an empty share of a final batch)
  calls it instead of forward and backward, so that it still contributes its zeros to the
  allreduce; where that can happen, every rank calls it after every backward. Calling it
  after every backward is always correct; the next forward raises if a reduction was left
  unfinished.
- `no_sync()`: backward passes inside it only accumulate locally (gradient accumulation);
  the first backward after it reduces the accumulated gradients.

reduce_op='mean' (the default, as DDP) averages, which equals the gradient of the global
mean loss when every rank's loss is the mean over the same number of examples.
reduce_op='sum' adds: with each rank's loss = (its sum of per-example or per-token losses)
/ (the global count, from all_reduce), the result is exactly the gradient of the global
mean even when the ranks' counts differ (uneven shares, padding, ignore_index).
"""

from __future__ import annotations

import contextlib
import itertools
import time

import numpy as np

from ..nn import Module
from ..tensor import Tensor
from . import collectives as c
from . import group as g
from .sync import broadcast_parameters, check_same_layout

_REDUCE_OPS = ("mean", "sum")
_serials = itertools.count(1)  # numbers the wrappers, to tell their reductions apart


class _Bucket:
    """Some parameters' gradients, reduced as one flat buffer by one allreduce."""

    def __init__(self, params):
        self.params = params
        self.sizes = [p._data.size for p in params]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)
        self.flat = np.empty(int(self.offsets[-1]), params[0]._data.dtype)
        self.request = None

    @property
    def nbytes(self) -> int:
        return self.flat.nbytes

    def launch(self, comm, MPI) -> None:
        for p, lo, hi in zip(self.params, self.offsets[:-1], self.offsets[1:], strict=True):
            if p.grad is None:
                self.flat[lo:hi] = 0  # no gradient on this rank in this pass
            else:
                self.flat[lo:hi] = p.grad._data.reshape(-1)
        self.request = comm.Iallreduce(MPI.IN_PLACE, self.flat, MPI.SUM)

    def unpack(self, scale) -> None:
        if scale != 1:
            self.flat *= scale
        for p, lo, hi in zip(self.params, self.offsets[:-1], self.offsets[1:], strict=True):
            view = self.flat[lo:hi].reshape(p._data.shape)
            if p.grad is None:
                p.grad = Tensor._wrap(view.copy())
            else:
                np.copyto(p.grad._data, view)
        self.request = None


def _make_buckets(params, cap_bytes):
    """Consecutive parameters of one dtype, up to cap_bytes per bucket (at least one each)."""
    buckets, current, size = [], [], 0
    for p in params:
        if current and (size + p._data.nbytes > cap_bytes or p._data.dtype != current[0].dtype):
            buckets.append(_Bucket(current))
            current, size = [], 0
        current.append(p)
        size += p._data.nbytes
    if current:
        buckets.append(_Bucket(current))
    return buckets


class DistributedDataParallel(Module):
    """Wrap `module` for data-parallel training over all ranks.

    DistributedDataParallel(module, bucket_cap_mb=1.0, reduce_op='mean', overlap=True).
    Call it like the module; `.module` is the wrapped model (save `ddp.module.state_dict()`
    so that a checkpoint loads into a plain model and onto any number of ranks).
    overlap=False reduces all buckets after backward instead of during it (a baseline for
    measuring the overlap; also what happens when the engine has no post-accumulate hook).
    """

    def __init__(self, module, bucket_cap_mb: float = 1.0, reduce_op: str = "mean",
                 overlap: bool = True):  # fmt: skip
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(
                f"DistributedDataParallel wraps an nn.Module, got {type(module).__name__}"
            )
        if reduce_op not in _REDUCE_OPS:
            raise ValueError(f"reduce_op must be one of {_REDUCE_OPS}, got {reduce_op!r}")
        if not bucket_cap_mb > 0:
            raise ValueError(f"bucket_cap_mb must be positive, got {bucket_cap_mb}")
        if getattr(module, "_wrapped_by_ddp", False):
            # Its parameters already carry one wrapper's hooks (they cannot be removed): a
            # second wrapper would reduce every gradient twice.
            raise ValueError("this module is already wrapped by a DistributedDataParallel")
        self.module = module
        group = g._required_group()
        self.world_size = group.size
        self.reduce_op = reduce_op
        params = [p for p in module.parameters() if p.requires_grad]
        self._buckets = _make_buckets(reversed(params), bucket_cap_mb * 2**20)
        self._bucket_of = {id(p): i for i, b in enumerate(self._buckets) for p in b.params}
        # Compared on every rank before any gradient moves: what decides the buckets.
        placement = {
            id(p): (i, int(b.offsets[j]))
            for i, b in enumerate(self._buckets)
            for j, p in enumerate(b.params)
        }
        check_same_layout(module, placement)
        if not params:  # after the check, so that every rank raises it
            raise ValueError("DistributedDataParallel: the module has no parameter to train")
        broadcast_parameters(module)
        self._group = group
        self._serial = next(_serials)  # the same on every rank: construction is collective
        self._MPI = group.MPI
        self._comm = group.comm.Dup()  # the buckets' own channel, apart from user collectives
        self.overlap = bool(overlap) and hasattr(Tensor, "register_post_accumulate_grad_hook")
        self._enabled = True  # False inside no_sync()
        self._reduced_in_backward = False  # set when backward's hooks finished the reduction
        self._reset()
        # Where the time goes (benchmarks/distributed.py reads these).
        self.stats = {
            "launch_seconds": 0.0,  # copying gradients into buckets, starting allreduces
            "wait_seconds": 0.0,  # waiting for allreduces to finish, copying back
            "reductions": 0,
            "finished_in_backward": 0,  # reductions completed by backward's hooks
            "bytes_reduced": 0,
            "bytes_done_in_backward": 0,  # reduced before backward's last gradient was ready
        }
        if self.overlap:
            for p in params:
                p.register_post_accumulate_grad_hook(self._on_grad_ready)
        object.__setattr__(module, "_wrapped_by_ddp", True)

    # ----- the reduction of one backward pass --------------------------------------------------
    def _reset(self) -> None:
        self._ready = [set() for _ in self._buckets]
        self._next = 0  # the next bucket to launch; launches go strictly in order

    @property
    def bucket_sizes(self) -> list:
        """Bytes per bucket, in launch order."""
        return [b.nbytes for b in self._buckets]

    def _on_grad_ready(self, param) -> None:
        if not self._enabled:
            return
        i = self._bucket_of[id(param)]
        self._ready[i].add(id(param))
        earlier = self._next  # buckets already travelling before this gradient completed
        while self._next < len(self._buckets) and len(self._ready[self._next]) == len(
            self._buckets[self._next].params
        ):
            self._launch(self._next)
        started = [b.request for b in self._buckets[: self._next]]
        self._MPI.Request.Testall(started)  # MPI progresses only inside MPI calls
        if self._next == len(self._buckets):
            # Backward's last gradient is here: what has already arrived was fully overlapped.
            done = [b for b in self._buckets[:earlier] if b.request.Test()]
            self.stats["bytes_done_in_backward"] += sum(b.nbytes for b in done)
            self._finish()
            self._reduced_in_backward = True
            self.stats["finished_in_backward"] += 1

    def _launch(self, i) -> None:
        t0 = time.perf_counter()
        self._buckets[i].launch(self._comm, self._MPI)
        self._next = i + 1
        self.stats["launch_seconds"] += time.perf_counter() - t0

    def _agree(self) -> str:
        """Check that every rank waits in this reduction, not in a user collective or another
        wrapper's reduction: one fingerprint joins the user collectives' sequence, so such a
        mismatch is named at once instead of at the deadline. One per reduction, here where
        it blocks, not one per bucket: a bucket launched before a user collective on one rank
        and after it on another is harmless as long as neither waits for it in between."""
        group = self._group
        elements = sum(b.flat.size for b in self._buckets)
        row = c.fingerprint(group, "ddp", None, (len(self._buckets), elements), self._serial)
        what = f"DistributedDataParallel's gradient allreduce (collective #{group.calls})"
        c.agree(group, row, what)
        return what

    def _finish(self) -> None:
        t0 = time.perf_counter()
        what = self._agree() if self.world_size > 1 else "the gradient allreduce"
        g.wait([b.request for b in self._buckets], what)
        scale = 1.0 / self.world_size if self.reduce_op == "mean" else 1.0
        for b in self._buckets:
            b.unpack(scale)
        self._reset()
        self.stats["wait_seconds"] += time.perf_counter() - t0
        self.stats["reductions"] += 1
        self.stats["bytes_reduced"] += sum(self.bucket_sizes)

    def _in_progress(self) -> bool:
        return self._next > 0 or any(self._ready)

    def synchronize(self) -> None:
        """Finish this step's gradient reduction: a no-op if backward finished it, else the
        remaining buckets are reduced (a parameter without gradient counts as zeros)."""
        if not self._enabled:
            raise RuntimeError("synchronize() inside no_sync(): leave no_sync() first")
        if self._reduced_in_backward:
            self._reduced_in_backward = False
            return
        while self._next < len(self._buckets):
            self._launch(self._next)
        self._finish()

    @contextlib.contextmanager
    def no_sync(self):
        """Backward passes inside accumulate gradients locally, without communication."""
        if self._in_progress():
            raise RuntimeError("no_sync(): a gradient reduction is in progress; synchronize()")
        self._enabled = False
        try:
            yield
        finally:
            self._enabled = True

    def forward(self, *args, **kwargs):
        if self._in_progress():
            raise RuntimeError(
                "DistributedDataParallel: the previous backward left its gradient reduction "
                "unfinished (some parameters got no gradient on this rank); call "
                "ddp.synchronize() after backward, before the optimizer step"
            )
        self._reduced_in_backward = False
        return self.module(*args, **kwargs)
