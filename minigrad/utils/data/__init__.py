"""Datasets, samplers and the DataLoader, as torch.utils.data.

The semantics are PyTorch's where they are deterministic (split sizes, batch counts,
sequential order, collated structure and dtypes). Random orders (shuffle, RandomSampler,
random_split) come from NumPy's generator, so a seeded run is reproducible but does not
match PyTorch's permutations bit for bit.
"""

from .collate import default_collate, default_convert
from .dataloader import DataLoader, get_worker_info
from .dataset import (
    ConcatDataset,
    Dataset,
    IterableDataset,
    Subset,
    TensorDataset,
    random_split,
)
from .sampler import (
    BatchSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
)

__all__ = [
    "BatchSampler",
    "ConcatDataset",
    "DataLoader",
    "Dataset",
    "IterableDataset",
    "RandomSampler",
    "Sampler",
    "SequentialSampler",
    "Subset",
    "SubsetRandomSampler",
    "TensorDataset",
    "default_collate",
    "default_convert",
    "get_worker_info",
    "random_split",
]
