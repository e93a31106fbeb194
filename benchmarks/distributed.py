"""Data-parallel training over MPI: measured on this machine, extrapolated on paper.

    python benchmarks/distributed.py            # all measurements; updates benchmarks/README.md
    python benchmarks/distributed.py --quick    # a smoke run (few steps), README untouched

Measured (each configuration in its own processes, launched from here):
1. char-LM training steps (Embedding(65, 64) -> LSTM(64, H) -> Linear(H, 65), global batch
   B=32 streams, T=64, float32, Adam, clipping at 5, as examples/char_lm.py) at H=256:
   one rank with 2 OpenBLAS threads, one rank with 1, and 2 ranks with 1 each (16 streams
   per rank); tokens/s, and per step the gradient bytes allreduced and the time
   DistributedDataParallel spends on the critical path (copying gradients into buckets,
   starting allreduces, waiting for them), with the allreduces overlapping backward
   (post-accumulate hooks) and after it. Hidden share = 1 - (DDP time with overlap) /
   (DDP time without). Also a 2-layer LSTM, whose top layer finishes its gradients before
   the bottom layer's BPTT: what overlap can do when the engine allows it.
2. MPI_Allreduce of float32 buffers of the gradients' sizes on 2 ranks (shared memory).
3. One rank's step time against the per-rank batch b (1 ... 64) at H=256 and H=1024.

On paper (ring allreduce: Patarasuk & Yuan 2009, Thakur et al. 2005): p machines, n bytes
of gradient, bandwidth W, per-message latency a, k buckets:
    t_allreduce(p) = 2 (p - 1) / p * n / W + 2 (p - 1) * a * k
Scaling efficiency with b streams per machine = t_step(b) / (t_step(b) + t_allreduce(p)),
assuming no overlap (what was measured for the one-layer LSTM). The global batch is p * b.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SECTION = "## Data-parallel training over MPI (`distributed.py`)"
RESULTS = ROOT / "benchmarks" / "results" / "distributed.json"
V, E, T, B = 65, 64, 64, 32
BATCHES = (1, 2, 4, 8, 16, 32, 64)
MACHINES = (4, 16, 64)
ROUNDS = 3  # each configuration runs this many times, interleaved; medians reported
# Networks: bandwidth in Gbit/s and an assumed per-message latency (TCP over 10 GbE,
# RDMA over a 100 Gbit/s fabric); the latency term is small beside the bandwidth term here.
NETWORKS = ((10, 25e-6), (100, 5e-6))


# ----- workers (run in the launched processes) ----------------------------------------------------
def _model(H, layers):
    import minigrad as mg
    from models import LanguageModel

    mg.manual_seed(0)
    return LanguageModel(V, E, H, num_layers=layers, cell="lstm")


def worker_train(H, layers, steps, overlap, batch):
    """Time `steps` training steps; rank 0 prints one JSON line."""
    import minigrad as mg
    import minigrad.distributed as dist
    import minigrad.nn as nn
    import minigrad.nn.functional as F
    import minigrad.optim as optim
    from models.tbptt import detach_state

    world = dist.get_world_size()
    model = _model(H, layers)
    ddp = dist.DistributedDataParallel(model, overlap=overlap) if world > 1 else None
    opt = optim.Adam(model.parameters(), lr=2e-3)
    local = batch // world
    data = np.random.default_rng(dist.get_rank()).integers(0, V, size=(local, T * 4 + 1))
    state, times, phases = None, [], {"forward": [], "backward": [], "sync": [], "update": []}
    ddp_time = []  # per step: this rank's DDP time on the critical path
    for step in range(steps + 3):  # 3 warm-up steps
        k = step % 4
        x, y = data[:, k * T : (k + 1) * T].T, data[:, k * T + 1 : (k + 1) * T + 1].T
        before = (ddp.stats["launch_seconds"] + ddp.stats["wait_seconds"]) if ddp else 0.0
        t0 = time.perf_counter()
        logits, state = (ddp or model)(mg.tensor(x), state)
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t2 = time.perf_counter()
        if ddp:
            ddp.synchronize()
        t3 = time.perf_counter()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        state = detach_state(state)
        t4 = time.perf_counter()
        if step >= 3:
            times.append(t4 - t0)
            for name, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                phases[name].append(dt)
            if ddp:
                ddp_time.append(ddp.stats["launch_seconds"] + ddp.stats["wait_seconds"] - before)
    # The rank that finishes backward last waits for communication alone; the others also
    # wait for it (load imbalance, not communication): per step, the least over the ranks.
    comm = dist.all_gather(np.array(ddp_time)).min(axis=0) if ddp else np.zeros(1)
    if dist.get_rank() == 0:
        med = statistics.median
        print(
            json.dumps(
                {
                    "H": H,
                    "layers": layers,
                    "world": world,
                    "threads": os.environ.get("OPENBLAS_NUM_THREADS"),
                    "overlap": bool(ddp and ddp.overlap),
                    "batch": batch,
                    "step_ms": 1e3 * med(times),
                    "tokens_per_s": batch * T / med(times),
                    "phases_ms": {k: 1e3 * med(v) for k, v in phases.items()},
                    "ddp_ms": 1e3 * float(np.median(comm)),
                    "ddp_ms_rank0": 1e3 * med(ddp_time) if ddp_time else 0.0,
                    "bucket_bytes": ddp.bucket_sizes if ddp else [],
                    "finished_in_backward": ddp.stats["finished_in_backward"] if ddp else 0,
                }
            ),
            flush=True,
        )


def worker_allreduce(sizes, repeat):
    """Median time of a blocking MPI_Allreduce (sum) of float32 buffers of `sizes` bytes."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    out = {}
    for size in sizes:
        buf = np.ones(size // 4, np.float32)
        times = []
        for _ in range(repeat + 2):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, MPI.SUM)
            times.append(time.perf_counter() - t0)
        out[size] = 1e3 * statistics.median(times[2:])
    if comm.Get_rank() == 0:
        print(json.dumps({"allreduce_ms": out}), flush=True)


def worker_batches(H, steps, batches):
    """One process: step time at each per-rank batch."""
    for b in batches:
        worker_train(H, 1, steps, False, b)


# ----- the driver ---------------------------------------------------------------------------
def _launch(args, ranks=1, threads=1):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, __file__, "--worker", *map(str, args)]
    if ranks > 1:
        command = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(ranks), *command]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def gradient_bytes(H, layers=1):
    lstm = sum(4 * H * ((E if i == 0 else H) + H) + 8 * H for i in range(layers))
    return 4 * (V * E + lstm + H * V + V)


def bucket_count(H, layers=1):
    """How many buckets DistributedDataParallel makes of this model's gradients (1 MiB cap)."""
    from minigrad.distributed.ddp import _make_buckets

    params = list(_model(H, layers).parameters())
    return len(_make_buckets(reversed(params), 2**20))


def ring_ms(n_bytes, p, gbit, latency, buckets):
    if p == 1:
        return 0.0
    bandwidth = gbit * 1e9 / 8
    return 1e3 * (2 * (p - 1) / p * n_bytes / bandwidth + 2 * (p - 1) * latency * buckets)


def paper(step_ms_by_batch, buckets):
    """Efficiency at 32 streams per machine, and the smallest global batch at >= 90%."""
    rows = []
    for H, by_b in step_ms_by_batch.items():
        n = gradient_bytes(H)
        k = buckets[H]
        for gbit, latency in NETWORKS:
            for p in MACHINES:
                comm = ring_ms(n, p, gbit, latency, k)
                eff = {b: t / (t + comm) for b, t in by_b.items()}
                ok = [b for b in sorted(by_b) if eff[b] >= 0.9]
                rows.append(
                    {
                        "H": H,
                        "gbit": gbit,
                        "latency_us": latency * 1e6,
                        "p": p,
                        "allreduce_ms": comm,
                        "efficiency_b32": eff[32],
                        "min_global_batch_90": ok[0] * p if ok else None,
                        "max_efficiency": max(eff.values()),
                    }
                )
    return rows


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: few steps, no README")
    parser.add_argument("--steps", type=int, help="timed steps per configuration (default 20)")
    parser.add_argument(
        "--readme-only", action="store_true", help="rewrite the README section from the JSON"
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.readme_only:
        from readme_section import write_section

        out = json.loads(RESULTS.read_text())
        out["step_ms_by_batch"] = {
            int(H): {int(b): t for b, t in row.items()}
            for H, row in out["step_ms_by_batch"].items()
        }
        write_section(SECTION, readme_body(out))
        return
    if args.worker:
        kind, *rest = args.worker
        if kind == "train":
            H, layers, steps, overlap, batch = rest
            worker_train(int(H), int(layers), int(steps), overlap == "on", int(batch))
        elif kind == "allreduce":
            worker_allreduce([int(s) for s in rest[:-1]], int(rest[-1]))
        else:
            worker_batches(int(rest[0]), int(rest[1]), [int(b) for b in rest[2:]])
        return
    steps = args.steps or (3 if args.quick else 20)
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "steps": steps}
    out["load_before"] = os.getloadavg()

    print("char-LM H=256: 1 rank x 2 threads, 1 rank x 1 thread, 2 ranks x 1 thread", flush=True)
    configs = {  # name: (layers, overlap, ranks, BLAS threads)
        "1 rank x 2 threads": (1, "on", 1, 2),
        "1 rank x 1 thread": (1, "on", 1, 1),
        "2 ranks x 1 thread, overlap": (1, "on", 2, 1),
        "2 ranks x 1 thread, after": (1, "off", 2, 1),
        "2 layers: 1 rank x 1 thread": (2, "on", 1, 1),
        "2 layers: 2 ranks, overlap": (2, "on", 2, 1),
        "2 layers: 2 ranks, after": (2, "off", 2, 1),
    }
    rounds = {name: [] for name in configs}
    for _ in range(1 if args.quick else ROUNDS):  # interleaved, so that noise hits all alike
        for name, (layers, overlap, ranks, threads) in configs.items():
            job = ["train", 256, layers, steps, overlap, B]
            rounds[name].append(_launch(job, ranks=ranks, threads=threads)[0])
    runs = []
    for name, results in rounds.items():
        middle = sorted(results, key=lambda r: r["step_ms"])[len(results) // 2]
        middle["ddp_ms"] = statistics.median(r["ddp_ms"] for r in results)
        runs.append((name, middle))
    out["runs"] = dict(runs)
    for name, r in runs:
        print(f"  {name:30s} {r['step_ms']:8.1f} ms/step {r['tokens_per_s']:9,.0f} tokens/s "
              f"DDP {r['ddp_ms']:6.2f} ms", flush=True)  # fmt: skip

    sizes = sorted(
        {
            gradient_bytes(256),
            gradient_bytes(1024),
            *out["runs"]["2 ranks x 1 thread, overlap"]["bucket_bytes"],
        }
    )
    print("MPI_Allreduce on 2 ranks:", flush=True)
    out["allreduce_ms"] = _launch(["allreduce", *sizes, 5 if args.quick else 30], ranks=2)[0][
        "allreduce_ms"
    ]
    for size, ms in out["allreduce_ms"].items():
        print(f"  {int(size):>10,d} bytes {ms:8.3f} ms", flush=True)

    print("one rank, step time against the per-rank batch:", flush=True)
    by_batch = {}
    for H in (256, 1024):
        batches = (1, 32) if args.quick else BATCHES
        rows = _launch(["batches", H, max(2, steps // 4) if H == 1024 else steps, *batches])
        by_batch[H] = {r["batch"]: r["step_ms"] for r in rows}
        print(f"  H={H}: " + ", ".join(f"b={b} {t:.0f} ms" for b, t in by_batch[H].items()))
    out["step_ms_by_batch"] = by_batch
    buckets = {H: bucket_count(H) for H in by_batch}
    out["paper"] = paper(by_batch, buckets)
    out["load_after"] = os.getloadavg()
    if args.quick:
        print(json.dumps(out["paper"][:2], indent=1))
        return
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    from readme_section import write_section

    write_section(SECTION, readme_body(out))
    print(f"wrote {RESULTS.relative_to(ROOT)} and the README section")


def _table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


PAPER_HEADERS = (
    "model",
    "network",
    "machines",
    "allreduce ms",
    "efficiency, 32 streams/machine",
    "smallest global batch at >= 90%",
)


def _verdict(out) -> str:
    """The paper table in one sentence per model."""
    lines = []
    for H in (256, 1024):
        rows = [r for r in out["paper"] if r["H"] == H and r["p"] == max(MACHINES)]
        parts = [f"{100 * r['efficiency_b32']:.0f}% at {r['gbit']} Gbit/s" for r in rows]
        lines.append(f"H={H}: {' and '.join(parts)}")
    return (
        f"At 32 streams per machine and {max(MACHINES)} machines (a global batch of "
        f"{32 * max(MACHINES):,}), the efficiency is " + "; ".join(lines) + "."
    )


def readme_body(out) -> str:
    runs = out["runs"]
    one = runs["1 rank x 1 thread"]
    two, after = runs["2 ranks x 1 thread, overlap"], runs["2 ranks x 1 thread, after"]
    deep, deep_after = runs["2 layers: 2 ranks, overlap"], runs["2 layers: 2 ranks, after"]

    def hidden(on, off):
        return f"{100 * (1 - on['ddp_ms'] / off['ddp_ms']):.0f}%" if off["ddp_ms"] > 0 else "-"

    run_rows = [
        (
            name,
            f"{r['step_ms']:.1f}",
            f"{r['tokens_per_s']:,.0f}",
            f"{sum(r['bucket_bytes']):,}" if r["bucket_bytes"] else "-",
            f"{r['ddp_ms']:.2f}" if r["world"] > 1 else "-",
        )
        for name, r in runs.items()
    ]
    allreduce_rows = [(f"{int(n):,}", f"{ms:.3f}") for n, ms in out["allreduce_ms"].items()]
    by_batch = out["step_ms_by_batch"]
    batch_rows = [(f"H={H}",) + tuple(f"{by_batch[H][b]:.0f}" for b in BATCHES) for H in by_batch]
    paper_rows = [
        (
            f"H={r['H']} ({gradient_bytes(r['H']) / 1e6:.1f} MB)",
            f"{r['gbit']} Gbit/s, {r['latency_us']:.0f} us",
            r["p"],
            f"{r['allreduce_ms']:.1f}",
            f"{100 * r['efficiency_b32']:.0f}%",
            f"{r['min_global_batch_90']:,}" if r["min_global_batch_90"] else
            f"never (at most {100 * r['max_efficiency']:.0f}%)",
        )
        for r in out["paper"]
    ]  # fmt: skip
    load = ", ".join(f"{x:.1f}" for x in out["load_before"])
    return f"""{SECTION}

`python benchmarks/distributed.py` (about 5 minutes) measured everything below on this
project's machine ({out["machine"]}; load average {load} when it started: other jobs shared
the cores, so compare rows of one run, not with other sections): each configuration
{ROUNDS} times, interleaved, {out["steps"]} timed steps each after 3 of warm-up (per run
the median step; below, the run with the median of those, and the median of the runs'
DDP times), and wrote `benchmarks/results/distributed.json`.

**The char-LM step data-parallel** (H=256, global batch 32 streams x 64 characters, float32,
Adam, clipping; 2 ranks read 16 streams each). "DDP ms" is the time DistributedDataParallel
keeps a step waiting (copying gradients into its buckets, starting the allreduces, waiting
for them), taken per step on the rank that finished backward last (the others also wait for
it, which is imbalance, not communication):

{_table(["configuration", "ms/step", "tokens/s", "allreduce bytes/step", "DDP ms/step"], run_rows)}

Gradients travel in {len(two["bucket_bytes"])} buckets of
{", ".join(f"{b:,}" for b in two["bucket_bytes"])} bytes (1 MiB cap). Share of the
communication hidden behind backward (1 - DDP time with the allreduces started by the
post-accumulate hooks / DDP time with all of them after backward): **{hidden(two, after)}
for the one-layer LSTM, {hidden(deep, deep_after)} for a two-layer one**. An LSTM's weights
are used at every time step, so their gradients are complete only when BPTT reaches t=1,
at the very end of backward: only the output layer's small bucket can travel while BPTT
runs. With two layers the top layer is complete half-way, and its buckets overlap the bottom
layer's BPTT. MPICH advances a non-blocking allreduce only inside MPI calls, which the
hooks make (MPI_Testall) each time a gradient completes; MPICH's progress thread
(MPIR_CVAR_ASYNC_PROGRESS=1) made steps 2-3x slower on these two shared cores.

On this machine the two ranks split the same two cores that one rank with two OpenBLAS
threads uses; 2 ranks x 1 thread against 1 rank x 1 thread is {one["step_ms"] / two["step_ms"]:.2f}x
the throughput. MPI_Allreduce (sum, float32) between the 2 ranks through shared memory:

{_table(["bytes", "ms"], allreduce_rows)}

**One rank's step time against its batch** (streams per rank, T=64, 1 thread), ms — the
compute that communication must be small beside:

{_table(["model"] + [f"b={b}" for b in BATCHES], batch_rows)}

**On paper: p machines, ring allreduce** (Patarasuk & Yuan 2009; Thakur, Rabenseifner &
Gropp 2005): each of n gradient bytes crosses each link 2(p-1)/p times, and each of the k
buckets pays 2(p-1) message latencies a:

    t_allreduce = 2 (p - 1) / p * n / bandwidth + 2 (p - 1) * a * k

with n = 4 bytes x parameters ({gradient_bytes(256):,} bytes at H=256, {gradient_bytes(1024):,}
at H=1024), k = 1 MiB buckets, a = 25 us for TCP over 10 GbE and 5 us over a 100 Gbit/s
RDMA fabric (assumed, not measured), and no overlap (as measured for one layer).
Efficiency = t_step(b) / (t_step(b) + t_allreduce) with b streams per machine, t_step
measured above on one of this machine's cores; the global batch is p x b. The last column
is the smallest global batch (b from the table above) that keeps the efficiency at 90% or
more: below it, efficiency drops under 90%.

{_table(PAPER_HEADERS, paper_rows)}

{_verdict(out)} The bandwidth term barely grows with p (2(p-1)/p < 2), the latency term
does, so many machines want few, large buckets. A faster step (a GPU, or minigrad made
faster) divides t_step and makes the same network look slower by the same factor. The
learning rate: the global batch is p x b, so keeping b fixed while adding machines grows
the batch; Goyal et al. (2017) scale the learning rate linearly with it, after a warm-up.
"""


if __name__ == "__main__":
    main()
