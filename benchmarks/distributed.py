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


def worker_train(H, layers, steps, overlap, batch, warmup=3):
    """Time `steps` training steps after `warmup`; rank 0 prints one JSON line."""
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
    cpu = []  # per step: this process's CPU time (its cost on a core of its own)
    ddp_time = []  # per step: this rank's DDP time on the critical path
    for step in range(steps + warmup):
        k = step % 4
        x, y = data[:, k * T : (k + 1) * T].T, data[:, k * T + 1 : (k + 1) * T + 1].T
        before = (ddp.stats["launch_seconds"] + ddp.stats["wait_seconds"]) if ddp else 0.0
        c0, t0 = time.process_time(), time.perf_counter()
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
        if step >= warmup:
            times.append(t4 - t0)
            cpu.append(time.process_time() - c0)
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
                    "cpu_ms": 1e3 * med(cpu),
                    "tokens_per_s": batch * T / med(times),
                    "phases_ms": {k: 1e3 * med(v) for k, v in phases.items()},
                    "ddp_ms": 1e3 * float(np.median(comm)),
                    "ddp_ms_rank0": 1e3 * med(ddp_time) if ddp_time else 0.0,
                    "bucket_bytes": ddp.bucket_sizes if ddp else [],
                    "finished_in_backward": ddp.stats["finished_in_backward"] if ddp else 0,
                    "overlapped_bytes_share": (
                        ddp.stats["bytes_done_in_backward"] / ddp.stats["bytes_reduced"]
                        if ddp
                        else 0.0
                    ),
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
        out[size] = [1e3 * min(times[2:]), 1e3 * statistics.median(times[2:])]
    if comm.Get_rank() == 0:
        print(json.dumps({"allreduce_ms": out}), flush=True)


def worker_batches(H, steps, batches):
    """One process: step time at each per-rank batch."""
    for b in batches:
        worker_train(H, 1, steps, False, b, warmup=1)


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


CONFIGS = {  # name: (LSTM layers, overlap, ranks, BLAS threads)
    "1 rank x 2 threads": (1, "on", 1, 2),
    "1 rank x 1 thread": (1, "on", 1, 1),
    "2 ranks x 1 thread, overlap": (1, "on", 2, 1),
    "2 ranks x 1 thread, after": (1, "off", 2, 1),
    "2 layers: 1 rank x 1 thread": (2, "on", 1, 1),
    "2 layers: 2 ranks, overlap": (2, "on", 2, 1),
    "2 layers: 2 ranks, after": (2, "off", 2, 1),
}


def measure_runs(steps, rounds):
    """Every configuration `rounds` times, interleaved so that machine noise hits all alike;
    per configuration the run with the median step time, and the median DDP time."""
    results = {name: [] for name in CONFIGS}
    for _ in range(rounds):
        for name, (layers, overlap, ranks, threads) in CONFIGS.items():
            job = ["train", 256, layers, steps, overlap, B]
            results[name].append(_launch(job, ranks=ranks, threads=threads)[0])
    runs = {}
    for name, rs in results.items():
        runs[name] = sorted(rs, key=lambda r: r["step_ms"])[len(rs) // 2]
        runs[name]["ddp_ms"] = statistics.median(r["ddp_ms"] for r in rs)
        r = runs[name]
        line = f"{r['step_ms']:8.1f} ms/step (CPU {r['cpu_ms']:6.1f})"
        line += f" {r['tokens_per_s']:9,.0f} tokens/s, DDP {r['ddp_ms']:6.2f} ms"
        print(f"  {name:30s} {line}", flush=True)
    return runs


def measure_batches(steps, batches):
    """Per H: one rank's step at each per-rank batch, wall and CPU ms."""
    out = {}
    for H in (256, 1024):
        rows = _launch(["batches", H, max(2, steps // 4) if H == 1024 else steps, *batches])
        out[H] = {r["batch"]: {"wall": r["step_ms"], "cpu": r["cpu_ms"]} for r in rows}
        cells = [f"b={b} {t['cpu']:.0f}" for b, t in out[H].items()]
        print(f"  H={H}, CPU ms: " + ", ".join(cells), flush=True)
    return out


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
    from readme_section import write_section

    if args.readme_only:
        out = json.loads(RESULTS.read_text())
        out["by_batch"] = {
            int(H): {int(b): t for b, t in row.items()} for H, row in out["by_batch"].items()
        }
        write_section(SECTION, readme_body(out))
        return
    steps = args.steps or (3 if args.quick else 20)
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "steps": steps}
    out["load_before"] = os.getloadavg()
    print("char-LM, H=256, global batch 32:", flush=True)
    out["runs"] = measure_runs(steps, 1 if args.quick else ROUNDS)
    sizes = sorted({gradient_bytes(256), gradient_bytes(1024), *_buckets_of(out["runs"])})
    print("MPI_Allreduce on 2 ranks, min and median ms:", flush=True)
    job = ["allreduce", *sizes, 5 if args.quick else 30]
    out["allreduce_ms"] = _launch(job, ranks=2)[0]["allreduce_ms"]
    for size, (low, mid) in out["allreduce_ms"].items():
        print(f"  {int(size):>10,d} bytes {low:8.3f} {mid:8.3f}", flush=True)
    print("one rank, step time against the per-rank batch:", flush=True)
    out["by_batch"] = measure_batches(steps, (1, 32) if args.quick else BATCHES)
    cpu = {H: {b: t["cpu"] for b, t in row.items()} for H, row in out["by_batch"].items()}
    out["paper"] = paper(cpu, {H: bucket_count(H) for H in cpu})
    out["load_after"] = os.getloadavg()
    if args.quick:
        print(json.dumps(out["paper"][:2], indent=1))
        return
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    write_section(SECTION, readme_body(out))
    print(f"wrote {RESULTS.relative_to(ROOT)} and the README section")


def _buckets_of(runs):
    return runs["2 ranks x 1 thread, overlap"]["bucket_bytes"]


def _table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


RUN_HEADERS = (
    "configuration",
    "ms/step",
    "CPU ms/step",
    "tokens/s",
    "allreduce bytes/step",
    "DDP ms/step",
)
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
        share = 1 - on["ddp_ms"] / off["ddp_ms"] if off["ddp_ms"] > 0 else float("nan")
        return f"{100 * share:.0f}%"

    run_rows = [
        (
            name,
            f"{r['step_ms']:.1f}",
            f"{r['cpu_ms']:.1f}",
            f"{r['tokens_per_s']:,.0f}",
            f"{sum(r['bucket_bytes']):,}" if r["bucket_bytes"] else "-",
            f"{r['ddp_ms']:.2f}" if r["world"] > 1 else "-",
        )
        for name, r in runs.items()
    ]
    allreduce_rows = [
        (f"{int(n):,}", f"{low:.3f}", f"{mid:.3f}") for n, (low, mid) in out["allreduce_ms"].items()
    ]
    by_batch = out["by_batch"]
    batch_rows = [
        (f"H={H}, {kind}",) + tuple(f"{by_batch[H][b][kind]:.0f}" for b in BATCHES)
        for H in by_batch
        for kind in ("cpu", "wall")
    ]
    paper_rows = [
        (
            f"H={r['H']} ({gradient_bytes(r['H']) / 1e6:.1f} MB)",
            f"{r['gbit']} Gbit/s, {r['latency_us']:.0f} us",
            r["p"],
            f"{r['allreduce_ms']:.1f}",
            f"{100 * r['efficiency_b32']:.0f}%",
            f"{r['min_global_batch_90']:,}" if r["min_global_batch_90"] else
            f"none up to {64 * r['p']:,} (at most {100 * r['max_efficiency']:.0f}%)",
        )
        for r in out["paper"]
    ]  # fmt: skip
    load = ", ".join(f"{x:.1f}" for x in out["load_before"])
    launched_early = _launched_mid_backward(deep["bucket_bytes"])
    return f"""{SECTION}

`python benchmarks/distributed.py` measured everything below on this project's machine
({out["machine"]}), each configuration {ROUNDS} times, interleaved, {out["steps"]} timed
steps each after 3 of warm-up; shown is the run with the median step time and the median of
the runs' DDP times. It writes `benchmarks/results/distributed.json` and this section
(`--readme-only` rewrites the section from the JSON). **The machine was not quiet**: load
average {load} when the run started (long example runs of other work shared the two cores),
so wall times are several times what the steps cost, and the 2-rank configurations, which
need both cores at once, suffer most. A process's CPU time per step is what the step costs
on a core of its own; the on-paper model below uses it.

**The char-LM step data-parallel** (H=256, global batch 32 streams x 64 characters, float32,
Adam, clipping; 2 ranks read 16 streams each). "DDP ms" is the time DistributedDataParallel
keeps a step waiting (copying gradients into its buckets, starting the allreduces, waiting
for them), per step on the rank that finished backward last (the other one also waits for
it, which is imbalance, not communication):

{_table(RUN_HEADERS, run_rows)}

- Throughput, 2 ranks x 1 thread against 1 rank x 1 thread: {one["step_ms"] / two["step_ms"]:.2f}x
  by wall time under this load; {one["cpu_ms"] / two["cpu_ms"]:.2f}x by CPU time per step (each rank
  computes half the batch and joins the allreduce), the estimate for a core per rank.
  1 rank x 2 OpenBLAS threads is the slowest by far here: OpenBLAS's threads spin while
  they wait for a core (the effect the examples avoid by defaulting to one thread).
- Bytes: {sum(two["bucket_bytes"]):,} per step (every parameter's gradient in float32) in
  {len(two["bucket_bytes"])} buckets of {", ".join(f"{b:,}" for b in two["bucket_bytes"])} bytes
  (1 MiB cap); {sum(deep["bucket_bytes"]):,} in {len(deep["bucket_bytes"])} buckets with two layers.
- With this load, the DDP times (tens of ms) measure the scheduler, not the network: MPI's
  own allreduce of the 1.4 MB took 0.24 ms when the machine was quieter (below). The time
  saved by overlapping, 1 - (DDP ms with overlap) / (DDP ms after backward), came out as
  {hidden(two, after)} (one layer) and {hidden(deep, deep_after)} (two layers): noise.

**Communication hidden behind backward: little, for two reasons.** (1) An LSTM's weights are
used at every time step, so their gradients are complete only when BPTT reaches the first
step, at the very end of backward. With one layer, the first bucket (the output layer with
the LSTM's biases) is complete only then too: nothing can travel during backward. With two
layers the top layer is complete half-way, and {launched_early} of the
{sum(deep["bucket_bytes"]):,} bytes start their allreduce while the bottom layer's BPTT runs.
(2) MPICH advances a non-blocking allreduce only inside MPI calls; DDP's hooks make them
(MPI_Testall) whenever a gradient completes, but none completes during the bottom layer's
BPTT, so those buckets mostly move at the final wait: the share of bytes whose allreduce
had finished before backward's last gradient was {_pct(deep["overlapped_bytes_share"])} with two
layers ({_pct(two["overlapped_bytes_share"])} with one). MPICH's own progress thread
(`MPIR_CVAR_ASYNC_PROGRESS=1`, a spinning thread per rank) made the two-layer step 2.7x
slower in one measurement on these two cores
(`MPIR_CVAR_ASYNC_PROGRESS=1 mpiexec -n 2 python benchmarks/distributed.py --worker train
256 2 15 on 32`), so it is not used. What would hide more: a thread of DDP's own polling
the outstanding requests during backward, or buckets cut by layer for deep stacks.

MPI_Allreduce (sum, float32) between the 2 ranks through shared memory, 30 repetitions,
this run (under load); at load 1.6 earlier the same day, `python benchmarks/distributed.py
--quick` measured 0.02 ms for 75 KB, 0.18 ms for 1 MiB, 0.24 ms for the 1.4 MB gradient and
6.5 ms for 18 MB:

{_table(["bytes", "min ms", "median ms"], allreduce_rows)}

**One rank's step against its batch** (b streams, T=64, 1 thread; CPU ms, and wall ms
under the load): the compute that communication must stay small beside.

{_table(["model"] + [f"b={b}" for b in BATCHES], batch_rows)}

**On paper: p machines, ring allreduce** (Patarasuk & Yuan 2009; Thakur, Rabenseifner &
Gropp 2005): each of n gradient bytes crosses each link 2(p-1)/p times, and each of the k
buckets pays 2(p-1) message latencies a:

    t_allreduce = 2 (p - 1) / p * n / bandwidth + 2 (p - 1) * a * k

n = 4 bytes per parameter ({gradient_bytes(256):,} bytes at H=256, {gradient_bytes(1024):,}
at H=1024), k = DDP's 1 MiB buckets ({bucket_count(256)} and {bucket_count(1024)}), a = 25 us for
TCP over 10 GbE and 5 us over a 100 Gbit/s RDMA fabric (assumed, not measured), no overlap
(as measured). Efficiency = t_step(b) / (t_step(b) + t_allreduce), with b streams per
machine and t_step the CPU time per step above; the global batch is p x b. The last column
is the smallest global batch p x b (b from the table above) at which efficiency is still
90% or more: below it, efficiency drops under 90%.

{_table(PAPER_HEADERS, paper_rows)}

{_verdict(out)} The bandwidth term barely grows with p (2(p-1)/p < 2); the latency term
does, so many machines want few, large buckets. These CPU steps are slow (t_step of 10 ms
to 1.4 s), which is what makes even 10 Gbit/s look fast: a step 10x faster (a GPU, or
minigrad made faster) makes the same network look 10x slower. Adding machines at a fixed b
grows the global batch (p x b); Goyal et al. (2017) scale the learning rate linearly with
it, after a warm-up.
"""


def _pct(share) -> str:
    return f"{100 * share:.0f}%"


def _launched_mid_backward(buckets) -> str:
    """Two layers: the buckets before the bottom layer's (output layer, top layer) in bytes."""
    top = buckets[:3]  # [output + top biases], [top W_hh], [top W_ih] at a 1 MiB cap
    return f"{sum(top):,}"


if __name__ == "__main__":
    main()
