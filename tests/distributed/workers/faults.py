"""Run under `mpiexec -n 2`: one failure scenario, named by the first argument.

    raise       rank 1 raises in the middle of training (rank 0 is in an allreduce)
    kill        rank 1 is killed by SIGKILL in the middle of training
    exit        rank 1 calls sys.exit(3) in the middle of training
    mismatch    rank 0 calls barrier() where rank 1 calls all_reduce()
    alone       rank 0 calls barrier(), rank 1 never does (MINIGRAD_DIST_TIMEOUT bounds it)
    shapes      the ranks build models of different hidden sizes and wrap them in DDP
    frozen      rank 1 freezes one weight (requires_grad=False) before wrapping in DDP
    swapped     rank 0 freezes one bias, rank 1 the other bias of the same shape
    caps        the ranks pass different bucket_cap_mb (one bucket on rank 0, 7 on rank 1)
    gather      rank 0 all_gathers a (2, 3) array, rank 1 a (3, 2) one
    ddp_vs_all_reduce, ddp_vs_barrier
                rank 0 runs a training step (DDP's gradient allreduce) where rank 1, out of
                data, calls all_reduce() or barrier() (the deadline is the default 600 s)
    checkpoint  rank 0 writes checkpoints without pause when rank 1 raises (argv[2]: the path)

Each scenario must end the job (the test runs it with a timeout) with a message naming the
rank; `checkpoint` must leave a complete, loadable checkpoint behind.
"""

import os
import signal
import sys
import time

import numpy as np

import minigrad as mg
import minigrad.distributed as dist
import minigrad.nn.functional as F
import minigrad.optim as optim
from models import LanguageModel

scenario = sys.argv[1]
dist.init_process_group()
rank = dist.get_rank()


def train(steps, on_step, frozen=(), bucket_cap_mb=1.0):
    mg.manual_seed(0)
    model = LanguageModel(7, 4, 8 if scenario != "shapes" else 8 + rank)
    for name, p in model.named_parameters():
        p.requires_grad = name not in frozen
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb)
    opt = optim.SGD(model.parameters(), lr=0.1)
    x = np.random.default_rng(rank).integers(0, 7, size=(5, 3))
    for step in range(steps):
        logits, _ = ddp(x)
        loss = F.cross_entropy(logits.reshape(-1, 7), x.reshape(-1))
        opt.zero_grad()
        loss.backward()
        ddp.synchronize()
        opt.step()
        on_step(step, model)


def fail_at(step, action):
    def on_step(s, model):
        if s == step and rank == 1:
            action()

    return on_step


if scenario == "raise":

    def boom():
        raise RuntimeError("a deliberate failure on one rank")

    train(1000, fail_at(3, boom))
elif scenario == "kill":
    train(1000, fail_at(3, lambda: os.kill(os.getpid(), signal.SIGKILL)))
elif scenario == "exit":
    train(1000, fail_at(3, lambda: sys.exit(3)))
elif scenario == "mismatch":
    if rank == 0:
        dist.barrier()
    else:
        dist.all_reduce(np.ones(3))
elif scenario == "alone":
    if rank == 0:
        dist.barrier()
    else:
        time.sleep(60)
elif scenario == "shapes":
    train(1, lambda s, m: None)
elif scenario == "frozen":
    train(2, lambda s, m: None, frozen={"encoder.rnn.weight_hh_l0"} if rank == 1 else ())
elif scenario == "swapped":
    train(2, lambda s, m: None, frozen={f"encoder.rnn.bias_{'ih' if rank == 0 else 'hh'}_l0"})
elif scenario == "caps":
    train(2, lambda s, m: None, bucket_cap_mb=1.0 if rank == 0 else 1e-5)
elif scenario == "gather":
    print(dist.all_gather(np.arange(6.0).reshape((2, 3) if rank == 0 else (3, 2))), flush=True)
elif scenario.startswith("ddp_vs_"):
    if rank == 0:
        train(1, lambda s, m: None)
    else:  # the same wrapper (its construction is collective), then no data for the step
        dist.DistributedDataParallel(LanguageModel(7, 4, 8))
        if scenario == "ddp_vs_all_reduce":
            dist.all_reduce(np.ones(3))
        else:
            dist.barrier()
elif scenario == "checkpoint":
    path = sys.argv[2]

    def save_then_fail(step, model):
        if step == 3 and rank == 1:
            raise RuntimeError("a deliberate failure while rank 0 writes checkpoints")
        if rank == 0:  # rank 0 saves again and again: the abort lands in the middle of a save
            for attempt in range(1000 if step == 3 else 1):
                big = np.full(2**21, 1000 * step + attempt)
                mg.save({"step": step, "attempt": attempt, "big": big}, path)

    train(1000, save_then_fail)
else:
    raise SystemExit(f"unknown scenario {scenario!r}")
print(f"rank {rank}: scenario {scenario} ran to its end", flush=True)
