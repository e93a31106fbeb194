"""Run under `mpiexec -n 2`: DistributedDataParallel's less travelled paths, checked with
asserts on every rank (a failed assert aborts the job, naming the rank).

- no_sync(): two micro-batches accumulated locally, then reduced once, give the gradient of
  one reduction of both (summed).
- A parameter that gets no gradient on some rank: backward leaves the reduction unfinished,
  the next forward says so, synchronize() finishes it (the missing gradient counts as zero).
- The collectives: all_reduce ops, broadcast from rank 1, all_gather, all_gather_rows with
  different row counts, barrier.
"""

import numpy as np

import minigrad as mg
import minigrad.distributed as dist
import minigrad.nn as nn

dist.init_process_group()
rank, world = dist.get_rank(), dist.get_world_size()
assert world == 2
mg.set_default_dtype(mg.float64)
rng = np.random.default_rng(rank)


# ----- no_sync: accumulate, then reduce once ----------------------------------------------------
mg.manual_seed(0)
model = nn.Linear(3, 2)
ddp = dist.DistributedDataParallel(model, reduce_op="sum")
a, b = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
with ddp.no_sync():
    ddp(mg.tensor(a)).sum().backward()
assert ddp.stats["reductions"] == 0  # nothing sent inside no_sync
ddp(mg.tensor(b)).sum().backward()  # accumulates b's gradient, then reduces a's + b's
ddp.synchronize()
assert ddp.stats["reductions"] == 1
local = np.concatenate([a, b]).sum(axis=0)
expected = dist.all_reduce(np.tile(local, (2, 1)))  # d(sum)/dW = column sums, per output
np.testing.assert_allclose(model.weight.grad, expected, rtol=1e-12)


# ----- a parameter without gradient on one rank -----------------------------------------------
class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.left, self.right = nn.Linear(3, 1), nn.Linear(3, 1)

    def forward(self, x, use_right):
        return (self.right if use_right else self.left)(x)


mg.manual_seed(0)
heads = TwoHeads()
ddp = dist.DistributedDataParallel(heads, reduce_op="sum", bucket_cap_mb=1e-5)  # 1 per bucket
x = mg.tensor(np.ones((2, 3)))
ddp(x, use_right=(rank == 1)).sum().backward()  # rank 0 leaves `right` without gradient
try:
    ddp(x, use_right=False)
    raise AssertionError("a forward after an unfinished reduction must raise")
except RuntimeError as error:
    assert "call ddp.synchronize() after backward" in str(error), error
ddp.synchronize()
for head in (heads.left, heads.right):  # one rank's 2 rows of ones, the other's zeros
    np.testing.assert_array_equal(head.weight.grad, np.full((1, 3), 2.0))
    np.testing.assert_array_equal(head.bias.grad, np.full(1, 2.0))


# ----- the collectives ---------------------------------------------------------------------------
v = np.array([1.0 + rank, -2.0 * rank])
assert dist.all_reduce(v.copy(), op="sum").tolist() == [3.0, -2.0]
assert dist.all_reduce(v.copy(), op="mean").tolist() == [1.5, -1.0]
t = mg.tensor(v)  # a tensor (p.grad, say) is reduced in its own memory, as in torch.distributed
dist.all_reduce(t)
assert t.tolist() == [3.0, -2.0]
dist.all_reduce(heads.left.bias.grad, op="mean")
np.testing.assert_array_equal(heads.left.bias.grad, np.full(1, 2.0))  # the same on both ranks
assert dist.all_reduce(v.copy(), op="max").tolist() == [2.0, 0.0]
assert dist.all_reduce(v.copy(), op="min").tolist() == [1.0, -2.0]
t = mg.tensor(np.full(3, float(rank)))
dist.broadcast(t, src=1)  # a Tensor's data, in place
assert t.numpy().tolist() == [1.0, 1.0, 1.0]
strided = np.zeros((4, 2))[:, 0]  # not contiguous: reduced through a copy, written back
strided[:] = rank + 1
dist.all_reduce(strided)
assert strided.tolist() == [3.0] * 4
assert dist.all_gather(np.array([rank, 10 * rank])).tolist() == [[0, 0], [1, 10]]
rows = dist.all_gather_rows(np.full((1 + 2 * rank, 2), rank, np.int32))
assert rows.tolist() == [[0, 0], [1, 1], [1, 1], [1, 1]]
dist.barrier()
dist.check_parameters_in_sync(heads)
print(f"rank {rank}: all checks passed", flush=True)
