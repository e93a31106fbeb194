"""Run under `mpiexec -n N`: N ranks with a share of every global batch follow the same
trajectory as one process with the whole batch.

    python trajectory.py STEPS CASE [CASE ...]
    CASE = {lm,tagger}:{float64,float32}:{overlap,after}

Every rank trains the model data-parallel for STEPS optimizer steps and, alone, the same
model on the whole batch (the reference); after every step the ranks' parameters are
compared bit for bit (an allgather of a hash), which aborts the job if they differ. Rank 0
prints one JSON line per case with the largest differences from the reference. overlap:
gradients reduced during backward (post-accumulate hooks); after: after it, in synchronize().

lm: the char-LM's model (Embedding -> LSTM -> Linear) on B parallel token streams with
truncated BPTT (state carried, graph cut), each rank owning B/N streams, the mean loss per
rank and DistributedDataParallel's default averaging (equal shares), gradient-norm clipping
and Adam as examples/char_lm.py (see make_optimizer for float32).

tagger: a bidirectional GRU tagger with `lengths=` on padded batches from a
DistributedSampler with a global batch that the ranks cannot share evenly (and a final batch
too small for every rank to get an example): each rank's loss is its sum over valid tokens
divided by the global count of valid tokens, the gradients are summed (reduce_op='sum').
"""

import json
import sys

import numpy as np

import minigrad as mg
import minigrad.distributed as dist
import minigrad.nn as nn
import minigrad.nn.functional as F
import minigrad.optim as optim
from models import LanguageModel, SequenceTagger
from models.tbptt import detach_state

steps = int(sys.argv[1])
dist.init_process_group()
rank, world = dist.get_rank(), dist.get_world_size()
rng = np.random.default_rng(0)


def make_optimizer(params):
    """Adam in float64, as the char-LM example. In float32, SGD with momentum: Adam divides
    each gradient element by sqrt(v) + 1e-8, so an element that is ~0 up to rounding turns
    its last-bit differences (a sum over two half batches instead of one whole batch) into
    steps of up to lr: one process summing the two halves itself ends 9e-5 away from the
    whole-batch run after 20 steps, exactly where two ranks end."""
    if mg.get_default_dtype() == mg.float64:
        return optim.Adam(params, lr=1e-2)
    return optim.SGD(params, lr=0.05, momentum=0.9)


def params_of(model):
    return {name: p.numpy().copy() for name, p in model.named_parameters()}


# ----- the char-LM model on token streams ---------------------------------------------------------
V, T, B = 11, 6, 4
streams = rng.integers(0, V, size=(B, T * steps + 1))


def lm_model():
    mg.manual_seed(rank)  # different on purpose: DDP must broadcast rank 0's initial values
    return LanguageModel(V, 8, 16, cell="lstm")


def lm_train(model, rows, step_fn, forward=None):
    opt = make_optimizer(model.parameters())
    data, state, losses = streams[rows], None, []
    for k in range(steps):
        x, y = data[:, k * T : (k + 1) * T].T, data[:, k * T + 1 : (k + 1) * T + 1].T
        logits, state = (forward or model)(mg.tensor(x), state)
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        losses.append(step_fn(loss))
        nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        opt.step()
        state = detach_state(state)
        check_sync(model)
    return losses


# ----- the bidirectional GRU tagger on padded batches ------------------------------------------
N_SEQ, VOCAB, TAGS, GLOBAL_BATCH = 21, 13, 5, 5  # 5 batches per epoch, the last of one example
lengths_all = rng.integers(1, 8, size=N_SEQ)
tokens_all = [rng.integers(0, VOCAB, size=n) for n in lengths_all]
tags_all = [rng.integers(0, TAGS, size=n) for n in lengths_all]


def padded(idx):
    lengths = lengths_all[idx]
    Tmax = int(lengths.max())
    x = np.zeros((Tmax, len(idx)), np.int64)
    y = np.full((Tmax, len(idx)), -100, np.int64)
    for j, i in enumerate(idx):
        x[: lengths_all[i], j] = tokens_all[i]
        y[: lengths_all[i], j] = tags_all[i]
    return x, y, lengths


def tagger_model():
    mg.manual_seed(rank)
    return SequenceTagger(8, 10, TAGS, vocab_size=VOCAB, cell="gru", bidirectional=True)


def tagger_batches(num_replicas, rank_):
    sampler = dist.DistributedSampler(N_SEQ, num_replicas, rank_, shuffle=True, seed=3)
    per_epoch = sampler.num_batches(GLOBAL_BATCH)
    for step in range(steps):
        epoch, k = divmod(step, per_epoch)
        sampler.set_epoch(epoch)
        yield next(iter(sampler.batches(GLOBAL_BATCH, start=k)))


def tagger_train(model, batches, ddp=None):
    opt = make_optimizer(model.parameters())
    losses = []
    for idx in batches:
        opt.zero_grad()
        # The global count of valid tokens: the loss is the mean over the whole global batch.
        count = np.array([lengths_all[idx].sum()], np.float64)
        count = (dist.all_reduce(count) if ddp is not None else count)[0]
        local = 0.0
        if len(idx):
            x, y, lengths = padded(idx)
            logits = (ddp or model)(x, lengths=lengths)
            loss = F.cross_entropy(logits.reshape(-1, TAGS), y.reshape(-1), reduction="sum")
            loss = loss / float(count)
            loss.backward()
            local = loss.item()
        if ddp is not None:
            ddp.synchronize()
            local = dist.all_reduce(np.array([local], np.float64))[0]
        losses.append(local)
        opt.step()
        check_sync(model)
    return losses


# ----- checks ---------------------------------------------------------------------------------
def check_sync(model):
    if world > 1:
        dist.check_parameters_in_sync(model)


def run(kind, dtype_name, mode):
    mg.set_default_dtype(getattr(mg, dtype_name))
    if kind == "lm":
        ref = lm_model()
        dist.broadcast_parameters(ref)  # start where DDP starts: from rank 0's parameters
        ref_losses = lm_train(ref, slice(None), lambda loss: loss.item())
        model = lm_model()
        ddp = dist.DistributedDataParallel(model, overlap=(mode == "overlap"))
        rows = dist.StreamSharder(B).rows

        def step_fn(loss):
            ddp.synchronize()
            return dist.all_reduce(np.array([loss.item()], np.float64), op="mean")[0]

        losses = lm_train(model, rows, step_fn, forward=ddp)
    else:
        ref = tagger_model()
        dist.broadcast_parameters(ref)  # start where DDP starts: from rank 0's parameters
        ref_losses = tagger_train(ref, tagger_batches(1, 0))
        model = tagger_model()
        ddp = dist.DistributedDataParallel(model, reduce_op="sum", overlap=(mode == "overlap"))
        losses = tagger_train(model, tagger_batches(world, rank), ddp)
    got, want = params_of(model), params_of(ref)
    param_diff = max(float(np.abs(got[k] - want[k]).max()) for k in want)
    loss_diff = float(np.abs(np.array(losses) - np.array(ref_losses)).max())
    result = {
        "kind": kind,
        "dtype": dtype_name,
        "mode": mode,
        "world": world,
        "steps": len(losses),
        "loss_diff": loss_diff,
        "param_diff": param_diff,
        "first_loss": ref_losses[0],
        "last_loss": ref_losses[-1],
        "reductions": ddp.stats["reductions"],
        "finished_in_backward": ddp.stats["finished_in_backward"],
    }
    if rank == 0:
        print("RESULT " + json.dumps(result), flush=True)


for case in sys.argv[2:]:
    run(*case.split(":"))
