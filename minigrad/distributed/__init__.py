"""Data-parallel training over MPI (`pip install 'minigrad-rnn[distributed]'`).

Names follow torch.distributed. Launch N copies of a script with `mpiexec -n N python
script.py`; each is one rank. Run without a launcher, the same script is a world of one and
nothing here touches MPI (mpi4py is imported on first use, so `import minigrad` works without
it; a call that needs MPI without mpi4py installed raises an ImportError naming the extra).

    import minigrad.distributed as dist

    model = dist.DistributedDataParallel(model)        # same start on every rank
    sampler = dist.DistributedSampler(len(data), seed=0)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for idx in sampler.batches(global_batch_size):  # this rank's share of each batch
            loss = ...; opt.zero_grad(); loss.backward()  # gradients averaged in backward
            model.synchronize(); opt.step()
        if dist.is_main_process():
            mg.save(...)                                  # only rank 0 writes

- group: init_process_group, get_rank, get_world_size, is_initialized, is_available,
  is_main_process, rank_zero_only, destroy_process_group; failures end the job naming the
  rank.
- collectives: barrier, all_reduce, broadcast, all_gather, all_gather_rows.
- ddp: DistributedDataParallel (bucketed allreduce overlapping backward).
- sync: broadcast_parameters, check_same_layout, check_parameters_in_sync.
- sampler: DistributedSampler (by epoch, every example once), StreamSharder (token streams).
"""

from ._mpi import launched_by_mpi
from .collectives import all_gather, all_gather_rows, all_reduce, barrier, broadcast
from .ddp import DistributedDataParallel
from .group import (
    DistributedError,
    destroy_process_group,
    get_rank,
    get_world_size,
    init_process_group,
    is_available,
    is_initialized,
    is_main_process,
    rank_zero_only,
)
from .sampler import DistributedSampler, StreamSharder
from .sync import broadcast_parameters, check_parameters_in_sync, check_same_layout

__all__ = [
    "init_process_group",
    "destroy_process_group",
    "is_available",
    "is_initialized",
    "launched_by_mpi",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "rank_zero_only",
    "barrier",
    "all_reduce",
    "broadcast",
    "all_gather",
    "all_gather_rows",
    "DistributedError",
    "DistributedDataParallel",
    "broadcast_parameters",
    "check_same_layout",
    "check_parameters_in_sync",
    "DistributedSampler",
    "StreamSharder",
]
