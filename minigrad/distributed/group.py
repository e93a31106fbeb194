"""The process group: who this process is among the ranks, and waits that never hang.

Names follow `torch.distributed`. MPI moves every byte: mpi4py's buffer-interface calls on
NumPy arrays (upper-case `Iallreduce`, `Ibcast`, ...), nothing pickled. Three things are
added on top of MPI, all about failures:

- Every wait polls its request with a deadline (`timeout`, default 600 s, or the environment
  variable MINIGRAD_DIST_TIMEOUT), so a collective that some rank never calls ends in an
  error naming the waiting rank and the collective instead of a silent hang. MPI itself
  cannot tell a slow peer from an absent one; the deadline is the detection.
- The user-level collectives (collectives.py) and DistributedDataParallel's gradient
  reductions check that all ranks call the same one.
- A rank that raises an uncaught exception prints it with its rank and aborts the whole job
  (MPI_Abort), and a rank that leaves the program (sys.exit, or the end of its script) tells
  the others, so a peer still waiting for it stops within a second naming it. A rank killed
  by a signal cannot speak; the launcher ends the job at once and names its PID, which the
  start-up line printed by rank 0 maps to a rank.

Without a launcher nothing here touches MPI: get_rank() is 0, get_world_size() is 1.
"""

from __future__ import annotations

import atexit
import datetime
import functools
import os
import socket
import sys
import time

import numpy as np

from . import _mpi

DEFAULT_TIMEOUT = 600.0  # seconds; generous, since a legitimately slow rank looks the same
_DEPART_TAG = 7  # on the control communicator: "this rank has left the program"
_GRACE = 1.0  # seconds a started collective may still finish after a peer left
_ABORT_DELAY = 0.3  # seconds between printing why and MPI_Abort
_SPIN = 0.05  # seconds of busy polling (MPI progresses only inside MPI calls) before sleeping


class DistributedError(RuntimeError):
    """A collective could not complete: a rank left, timed out or called something else."""


class _Group:
    """The state of the one process group: communicators, rank, size, deadline."""

    def __init__(self, MPI, timeout: float):
        world = MPI.COMM_WORLD
        self.MPI = MPI
        self.comm = world.Dup()  # user-level collectives, apart from any other MPI user
        self.control = world.Dup()  # departure notices only
        self.rank, self.size = world.Get_rank(), world.Get_size()
        self.timeout = timeout
        self.calls = 0  # checked collectives so far, DDP's included (the same on every rank)
        self.departed: set[int] = set()
        self._notice = np.zeros(1, np.int64)
        self._notice_request = self.control.Irecv(self._notice, MPI.ANY_SOURCE, _DEPART_TAG)

    def who(self, rank=None) -> str:
        return f"rank {self.rank if rank is None else rank} of {self.size}"

    def poll_departures(self) -> None:
        """Record every departure notice that has arrived."""
        while self._notice_request.Test():
            self.departed.add(int(self._notice[0]))
            self._notice_request = self.control.Irecv(
                self._notice, self.MPI.ANY_SOURCE, _DEPART_TAG
            )

    def leave(self) -> None:
        """Tell every other rank that this one has left, then wait until all have (what
        MPI_Finalize would wait for anyway), so no notice is left unreceived."""
        MPI = self.MPI
        me = np.array([self.rank], np.int64)
        peers = [peer for peer in range(self.size) if peer != self.rank]
        sends = [self.control.Isend(me, peer, _DEPART_TAG) for peer in peers]
        deadline = time.monotonic() + self.timeout
        while len(self.departed | {self.rank}) < self.size:
            self.poll_departures()
            if time.monotonic() > deadline:
                missing = sorted(set(range(self.size)) - self.departed - {self.rank})
                _abort(
                    f"{self.who()} waited {self.timeout:.0f} s at the end of the program for "
                    f"ranks {missing}, which never got there"
                )
            time.sleep(0.001)
        MPI.Request.Waitall(sends)
        self._notice_request.Cancel()
        self._notice_request.Wait()
        self.control.Free()
        self.comm.Free()


_group: _Group | None = None


# ----- start and stop -------------------------------------------------------------------------
def _timeout_seconds(timeout) -> float:
    if timeout is None:
        timeout = os.environ.get("MINIGRAD_DIST_TIMEOUT", DEFAULT_TIMEOUT)
    if isinstance(timeout, datetime.timedelta):
        timeout = timeout.total_seconds()
    try:
        seconds = float(timeout)
    except (TypeError, ValueError):
        raise ValueError(f"timeout must be a number of seconds, got {timeout!r}") from None
    if not seconds > 0:
        raise ValueError(f"timeout must be positive, got {seconds}")
    return seconds


def init_process_group(backend: str = "mpi", timeout=None) -> None:
    """Join the ranks that the MPI launcher started (a world of one without a launcher).

    `backend` can only be "mpi". `timeout` (seconds or a timedelta) bounds every wait of a
    collective. Calling it again does nothing. Under a launcher, the first call of
    get_rank(), get_world_size() or any collective calls it implicitly.
    """
    global _group
    if backend != "mpi":
        raise ValueError(f"init_process_group: the only backend is 'mpi', got {backend!r}")
    seconds = _timeout_seconds(timeout)
    if _group is not None:
        return
    MPI = _mpi.mpi()
    _group = _Group(MPI, seconds)
    if _group.size > 1:
        _install_fault_handlers()
        _announce()


def destroy_process_group() -> None:
    """Leave the group (waiting for every rank to leave too); called at exit if needed."""
    global _group
    if _group is not None and _group.size > 1:
        _group.leave()
    _group = None


def _install_fault_handlers() -> None:
    previous = sys.excepthook

    def excepthook(kind, value, traceback):
        previous(kind, value, traceback)
        _abort(f"raised {kind.__name__}: {value}" if str(value) else f"raised {kind.__name__}")

    sys.excepthook = excepthook
    # atexit runs handlers last-in first-out: this one runs before mpi4py's MPI_Finalize.
    atexit.register(destroy_process_group)


def _abort(message: str) -> None:
    """Print why, naming this rank, and end every rank of the job."""
    group = _group
    who = group.who() if group is not None else "a rank"
    print(
        f"minigrad.distributed: {who} (pid {os.getpid()} on {socket.gethostname()}) {message}; "
        "aborting the job",
        file=sys.stderr,
        flush=True,
    )
    sys.stdout.flush()
    # MPI_Abort makes the launcher kill every process at once, and output still in the pipes
    # to it can be lost: give it a moment to forward this message first.
    time.sleep(_ABORT_DELAY)
    _mpi.mpi().COMM_WORLD.Abort(1)


def _announce() -> None:
    """One line from rank 0 mapping ranks to PIDs and hosts (a killed rank is named by PID)."""
    group = _group
    mine = np.zeros(9, np.int64)  # the PID, then the host name's first 64 bytes
    mine[0] = os.getpid()
    host = socket.gethostname().encode()[:64]
    mine.view(np.uint8)[8 : 8 + len(host)] = np.frombuffer(host, np.uint8)
    table = np.empty((group.size, 9), np.int64)
    wait([group.comm.Iallgather(mine, table)], "the start-up")
    if group.rank == 0:
        hosts = [bytes(row[1:].view(np.uint8)).rstrip(b"\0").decode() for row in table]
        pairs = enumerate(zip(table[:, 0], hosts, strict=True))
        ranks = ", ".join(f"{r}: pid {p} on {h}" for r, (p, h) in pairs)
        print(f"minigrad.distributed: {group.size} ranks ({ranks})", file=sys.stderr, flush=True)


# ----- who am I --------------------------------------------------------------------------------
def is_available() -> bool:
    """True if mpi4py is installed."""
    return _mpi.is_available()


def is_initialized() -> bool:
    return _group is not None


def _implicit_group() -> _Group | None:
    if _group is None and _mpi.launched_by_mpi():
        init_process_group()
    return _group


def get_rank() -> int:
    """This process's rank: 0 without a launcher."""
    group = _implicit_group()
    return group.rank if group is not None else 0


def get_world_size() -> int:
    """The number of ranks: 1 without a launcher."""
    group = _implicit_group()
    return group.size if group is not None else 1


def is_main_process() -> bool:
    """True on rank 0, the rank that logs, draws progress bars and writes checkpoints."""
    return get_rank() == 0


def rank_zero_only(fn):
    """Decorator: fn runs on rank 0 only and returns None on the other ranks."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs) if is_main_process() else None

    return wrapper


def _required_group() -> _Group:
    if _group is None:
        init_process_group()
    return _group


# ----- waiting ----------------------------------------------------------------------------------
def wait(requests, what: str) -> None:
    """Wait for MPI requests, polling so that a departed peer or the deadline ends the wait
    with a DistributedError naming this rank and `what` instead of a hang."""
    group = _group
    MPI = group.MPI
    start = time.monotonic()
    deadline = start + group.timeout
    gone_since = None
    while not MPI.Request.Testall(requests):
        now = time.monotonic()
        if now - start > _SPIN:
            time.sleep(0.0005)  # a peer is late: stop burning the core it may need
            group.poll_departures()
            if group.departed and gone_since is None:
                gone_since = now  # what it sent before leaving may still complete the wait
            if gone_since is not None and now - gone_since > _GRACE:
                raise DistributedError(
                    f"{group.who()} waits in {what} for rank(s) {sorted(group.departed)}, "
                    "which left the program (sys.exit, or the end of the script) without "
                    "calling it; every rank must call the same collectives in the same order"
                )
            if now > deadline:
                raise DistributedError(
                    f"{group.who()} waited {group.timeout:.0f} s in {what} and not every rank "
                    "joined: a collective called on some ranks only, or a rank stuck or far "
                    "behind (raise the limit with init_process_group(timeout=...) or "
                    "MINIGRAD_DIST_TIMEOUT)"
                )
