"""Resumable runs for the long studies (memory_study, le_lm_table, translation).

A study is many independent training runs, each named by a key. Under the study's output
folder, `runs/<key>.json` holds a finished run's result and `runs/<key>.ckpt` the checkpoint of
an unfinished one (model, optimizer, data generator, step, CPU seconds used, curve), written
every `every_s` seconds of CPU time and when the process is asked to stop (Ctrl-C, SIGTERM).
Running the same command again skips the finished runs and continues the unfinished one from
its checkpoint, so a study's budget can be spent over several sessions. Several processes may
work in one folder at once: each run is held by one of them (a lock file per run).
"""

import contextlib
import fcntl
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
from common import write_json

import minigrad as mg


class Stop(Exception):
    """Raised out of a run after its checkpoint was written, when a stop was requested."""


class RunStore:
    def __init__(self, folder: Path, every_s: float = 60.0):
        self.folder = Path(folder) / "runs"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.every_s = every_s
        self.stop_requested = False

    # ----- several processes per folder, stopping cleanly -----------------------------------
    @contextlib.contextmanager
    def stopping(self):
        """Meanwhile, SIGINT/SIGTERM make the running run checkpoint and raise `Stop`."""

        def request_stop(signum, frame):
            self.stop_requested = True

        previous = {
            sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextlib.contextmanager
    def claim(self, key: str):
        """Yields True while this process holds run `key` (a lock file per run, released when
        the process ends however it ends), False if another process holds it or it finished
        meanwhile. So two processes started on one folder share its runs."""
        with open(self.folder / f".{key}.lock", "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            lock.truncate(0)
            lock.write(f"pid {os.getpid()}\n")
            lock.flush()
            yield self.result(key) is None

    # ----- finished runs ------------------------------------------------------------------
    def result(self, key: str):
        path = self.folder / f"{key}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def results(self) -> dict:
        return {p.stem: json.loads(p.read_text()) for p in sorted(self.folder.glob("*.json"))}

    def finish(self, key: str, result: dict) -> dict:
        write_json(self.folder / f"{key}.json", result)
        self.checkpoint_path(key).unlink(missing_ok=True)
        return result

    # ----- unfinished runs ----------------------------------------------------------------
    def checkpoint_path(self, key: str) -> Path:
        return self.folder / f"{key}.ckpt"

    def load(self, key: str):
        path = self.checkpoint_path(key)
        return mg.load(path) if path.exists() else None

    def pending(self) -> list:
        return sorted(p.name[: -len(".ckpt")] for p in self.folder.glob("*.ckpt"))


class Run:
    """The bookkeeping of one run: CPU time carried over resumes, periodic checkpoints.

    `state()` must return everything the run needs to continue (a dict for mg.save);
    `restore(saved)` is handed what the last checkpoint saved, or None for a fresh start."""

    def __init__(self, store: RunStore, key: str):
        self.store, self.key = store, key
        self.saved = store.load(key)
        self.cpu_before = float(self.saved["cpu_s"]) if self.saved else 0.0
        self._t0 = time.process_time()
        self._last = self._t0

    @property
    def resumed(self) -> bool:
        return self.saved is not None

    def cpu_s(self) -> float:
        return self.cpu_before + time.process_time() - self._t0

    def tick(self, state_fn) -> None:
        """Checkpoint if `every_s` CPU seconds passed or a stop was requested (then raise)."""
        now = time.process_time()
        if self.store.stop_requested or now - self._last >= self.store.every_s:
            self.save(state_fn)
            if self.store.stop_requested:
                raise Stop(self.key)

    def save(self, state_fn) -> None:
        """Checkpoint now."""
        self._last = time.process_time()
        state = dict(state_fn())
        state["cpu_s"] = self.cpu_s()
        mg.save(state, self.store.checkpoint_path(self.key))


def rng_state(rng: np.random.Generator) -> str:
    return json.dumps(rng.bit_generator.state)


def rng_from_state(text: str) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = json.loads(text)
    return rng


@contextlib.contextmanager
def flushed_denormals():
    """Within the block, flush subnormal floats to zero (the x86 MXCSR's FTZ and DAZ bits) in
    this thread, as `torch.set_flush_denormal(True)` does; the previous mode comes back after
    it. A gradient carried back through hundreds of steps of a gated cell decays below
    float32's smallest normal number (1.2e-38), and every operation on such subnormal numbers
    takes the CPU's slow path: without this an LSTM update at T = 200 (B = 32, H = 64) took 10x
    longer than at T = 170 on this project's machine, with it they differ by 15%. What is lost
    are gradient terms below 1e-38. Yields False (and changes nothing) where the platform is
    not x86-64 with a C library that has fegetenv."""
    import ctypes
    import ctypes.util
    import platform

    libm, saved = None, (ctypes.c_uint8 * 32)()  # glibc's x86-64 fenv_t: MXCSR in its last 4
    if platform.machine().lower() in ("x86_64", "amd64") and os.name == "posix":
        try:
            libm = ctypes.CDLL(ctypes.util.find_library("m"))
        except OSError:
            libm = None
    if libm is None or libm.fegetenv(saved) != 0:
        yield False
        return
    env = (ctypes.c_uint8 * 32)(*saved)
    mxcsr = int.from_bytes(bytes(env[28:32]), "little") | 0x8040  # FTZ (bit 15), DAZ (bit 6)
    env[28:32] = list(mxcsr.to_bytes(4, "little"))
    try:
        yield libm.fesetenv(env) == 0 and np.float32(1e-38) * np.float32(0.5) == 0.0
    finally:
        libm.fesetenv(saved)


def run_each(out, keys, every_s, train_one, describe) -> bool:
    """Train every (kind, seed) of `keys` not finished yet, claiming each run so that several
    processes share the work: train_one(store, key, kind, seed) -> result, describe(result) ->
    the line printed. True when a stop request (Ctrl-C, SIGTERM) checkpointed a run."""
    store = RunStore(out, every_s=every_s)
    try:
        with store.stopping():
            for kind, s in keys:
                key = f"{kind}-s{s}"
                with store.claim(key) as mine:
                    if not mine:
                        continue
                    state = "resuming" if store.checkpoint_path(key).exists() else "starting"
                    print(f"{key}: {state}", flush=True)
                    print(f"{key}: {describe(train_one(store, key, kind, s))}", flush=True)
    except Stop as e:
        print(f"stopped: {e} checkpointed; run the same command to continue")
        return True
    return False
