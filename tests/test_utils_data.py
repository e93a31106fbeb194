"""minigrad.utils.data against torch.utils.data: split sizes, collated structure and dtypes,
batch counts and sequential order are PyTorch's; random orders are only checked to be
permutations, reproducible from a seed (the generators differ from PyTorch's)."""

import warnings
from collections import namedtuple

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad.utils.data import (
    BatchSampler,
    ConcatDataset,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    default_collate,
    get_worker_info,
    random_split,
)

Point = namedtuple("Point", ["x", "y"])


class Range(Dataset):
    """range(n) as a map-style dataset, defined identically for both libraries' loaders."""

    def __init__(self, n):
        self.n = n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return i

    def __len__(self):
        return self.n


class Stream(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(range(self.n))

    def __len__(self):
        return self.n


def plain(x):
    """A collated batch of either library as nested lists/dicts of ('T', dtype, values)."""
    if isinstance(x, mg.Tensor):
        return ("T", x.data.dtype.name, x.data.tolist())
    if type(x).__module__.startswith("torch") and hasattr(x, "numpy"):
        return ("T", str(x.dtype).removeprefix("torch."), x.numpy().tolist())
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [plain(v) for v in x])
    return x


def silently(fn, *args, **kwargs):
    with warnings.catch_warnings():  # the empty-split warning, in either library
        warnings.simplefilter("ignore", UserWarning)
        return fn(*args, **kwargs)


# ----- Generator ----------------------------------------------------------------------------
def test_generator_seeds_like_torch_and_is_reproducible():
    import torch

    g = mg.Generator()
    assert g.manual_seed(3) is g and g.initial_seed() == 3
    # An unseeded generator starts from PyTorch's fixed seed; negative seeds wrap the same way.
    assert mg.Generator().initial_seed() == torch.Generator().initial_seed()
    for seed in (-1, -(2**63), 2**64 - 1):
        assert mg.Generator().manual_seed(seed).initial_seed() == (
            torch.Generator().manual_seed(seed).initial_seed()
        )
    a, b = mg.Generator().manual_seed(7), mg.Generator().manual_seed(7)
    assert a.rng.random(5).tolist() == b.rng.random(5).tolist()
    state = a.get_state()
    first = a.rng.random(3).tolist()
    assert a.set_state(state).rng.random(3).tolist() == first
    mg.Generator("cpu")


@pytest.mark.parametrize("seed, error", [(1.5, TypeError), (True, TypeError), (2**64, ValueError)])
def test_generator_rejects_bad_seeds_by_name(seed, error):
    with pytest.raises(error, match="Generator.manual_seed"):
        mg.Generator().manual_seed(seed)


def test_a_torch_generator_is_refused_by_name():
    import torch

    with pytest.raises(TypeError, match=r"DataLoader: generator must be a minigrad.Generator"):
        DataLoader(Range(4), shuffle=True, generator=torch.Generator())
    with pytest.raises(TypeError, match="random_split: .*torch.*Generator"):
        random_split(Range(4), [2, 2], generator=torch.Generator())


# ----- datasets -----------------------------------------------------------------------------
def test_tensor_dataset_indexes_every_tensor_and_names_mismatched_sizes():
    x, y = mg.randn(5, 3), mg.arange(5)
    ds = TensorDataset(x, y)
    assert len(ds) == 5
    xi, yi = ds[2]
    np.testing.assert_array_equal(xi.data, x.data[2])
    assert yi.item() == 2
    with pytest.raises(ValueError, match=r"TensorDataset: .*\[5, 4\]"):
        TensorDataset(x, mg.arange(4))
    with pytest.raises(ValueError, match="TensorDataset"):
        TensorDataset(mg.tensor(1.0))
    with pytest.raises(ValueError, match="TensorDataset"):
        TensorDataset()


def test_subset_concat_and_add_index_as_torch():
    import torch.utils.data as tud

    class TorchRange(tud.Dataset):
        def __init__(self, n):
            self.n = n

        def __getitem__(self, i):
            return i

        def __len__(self):
            return self.n

    ours = Subset(Range(10), [7, 2, 5]) + Range(4) + Range(2)
    theirs = tud.Subset(TorchRange(10), [7, 2, 5]) + TorchRange(4) + TorchRange(2)
    assert isinstance(ours, ConcatDataset) and len(ours) == len(theirs) == 9
    assert ours.cumulative_sizes == theirs.cumulative_sizes
    for i in range(-9, 9):
        assert ours[i] == theirs[i]
    with pytest.raises(IndexError, match="ConcatDataset: index 9"):
        ours[9]
    with pytest.raises(IndexError, match="ConcatDataset: index -10"):
        ours[-10]
    with pytest.raises(ValueError, match="ConcatDataset"):
        ConcatDataset([])
    with pytest.raises(TypeError, match="IterableDataset"):
        ConcatDataset([Stream(3)])


# ----- random_split -------------------------------------------------------------------------
@given(
    n=st.integers(0, 300),
    weights=st.lists(st.integers(1, 100), min_size=1, max_size=6),
)
def test_fraction_split_sizes_equal_torchs(n, weights):
    import torch.utils.data as tud

    fractions = [w / sum(weights) for w in weights]
    ours = silently(random_split, Range(n), fractions, generator=mg.Generator().manual_seed(0))
    if sum(fractions) <= 1:  # PyTorch refuses a sum rounded just above 1; minigrad does not
        theirs = silently(tud.random_split, range(n), fractions)
        assert [len(s) for s in ours] == [len(s) for s in theirs]
    assert sorted(i for s in ours for i in s.indices) == list(range(n))


def test_the_remainder_goes_round_robin_from_the_first_split():
    sizes = [len(s) for s in random_split(Range(11), [0.25, 0.25, 0.5])]
    assert sizes == [3, 3, 5]  # floors 2, 2, 5, then the two left over to splits 0 and 1
    assert [len(s) for s in random_split(Range(5), [1])] == [5]  # [1] sums to 1: 100%, as torch


def test_an_empty_fraction_split_warns():
    with pytest.warns(UserWarning, match="random_split: the split at index 1 is empty"):
        random_split(Range(2), [0.9, 0.1])


@given(n=st.integers(0, 60), data=st.data())
def test_integer_splits_partition_the_dataset_reproducibly(n, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=4)))
    lengths = [b - a for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    # (n == 1: lengths summing to 1 are read as fractions, as PyTorch, and may warn)
    a = silently(random_split, Range(n), lengths, generator=mg.Generator().manual_seed(1))
    b = silently(random_split, Range(n), lengths, generator=mg.Generator().manual_seed(1))
    assert [s.indices for s in a] == [s.indices for s in b]
    assert [len(s) for s in a] == lengths
    assert sorted(i for s in a for i in s.indices) == list(range(n))
    assert [list(s) for s in a] == [s.indices for s in a]  # a Subset of range reads its indices


def test_random_split_without_a_generator_follows_manual_seed():
    mg.manual_seed(5)
    first = [s.indices for s in random_split(Range(20), [0.5, 0.5])]
    mg.manual_seed(5)
    assert [s.indices for s in random_split(Range(20), [0.5, 0.5])] == first


@pytest.mark.parametrize(
    "lengths, match",
    [
        ([3, 4], r"random_split: lengths \[3, 4\] sum to 7, but the dataset has 10 samples"),
        ([0.5, 0.3], r"fractions summing to 1; got \[0.5, 0.3\], which sum to 0.8"),
        ([12, -2], r"random_split: lengths must not be negative, got \[12, -2\]"),
        ([1.5, -0.5], r"random_split: fraction 1.5 at index 0 is not in \[0, 1\]"),
        ([], "random_split: expected at least one length"),
    ],
)
def test_random_split_errors_name_the_lengths(lengths, match):
    with pytest.raises(ValueError, match=match):
        random_split(Range(10), lengths)


# ----- default_collate ----------------------------------------------------------------------
def _samples():
    """Batches built twice, once per library (tensors differ), with numbers, arrays, strings
    and containers of them."""
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(3)]
    return [
        lambda T: [1, 2, 3],
        lambda T: [1.5, 2.5],
        lambda T: [True, False],
        lambda T: [1, 2.5],
        lambda T: [np.float32(1), np.float32(2)],
        lambda T: [np.int32(1), np.int32(2)],
        lambda T: [np.float64(1), np.float64(2)],
        lambda T: [a.astype(np.float64) for a in arrays],
        lambda T: [np.arange(3), np.arange(3)],
        lambda T: [T(a) for a in arrays],
        lambda T: [(T(a), i) for i, a in enumerate(arrays)],
        lambda T: [[T(a), float(i), "s"] for i, a in enumerate(arrays)],
        lambda T: [{"x": T(a), "y": i, "name": f"n{i}"} for i, a in enumerate(arrays)],
        lambda T: [Point(T(a), i) for i, a in enumerate(arrays)],
        lambda T: [("a", b"b"), ("c", b"d")],
        lambda T: ["a", "b"],
        lambda T: [{"nested": [(1, 2.0), (3, 4.0)]}, {"nested": [(5, 6.0), (7, 8.0)]}],
    ]


@pytest.mark.parametrize("make", _samples())
def test_default_collate_gives_torchs_structure_and_dtypes(make):
    import torch
    from torch.utils.data import default_collate as torch_collate

    ours = default_collate(make(lambda a: mg.tensor(a)))
    theirs = torch_collate(make(lambda a: torch.tensor(a)))
    assert plain(ours) == plain(theirs)
    if isinstance(theirs, Point):
        assert isinstance(ours, Point)


def test_default_collate_errors_name_what_they_found():
    with pytest.raises(RuntimeError, match=r"equal size, got sizes \[2, 3\]"):
        default_collate([[1, 2], [1, 2, 3]])
    with pytest.raises(TypeError, match="default_collate: .*found <class 'object'>"):
        default_collate([object(), object()])
    with pytest.raises(TypeError, match="default_collate: .*found <U1"):
        default_collate([np.array(["a"]), np.array(["b"])])


def test_collating_tensors_that_require_grad_keeps_the_graph():
    w = mg.ones(3, requires_grad=True)
    default_collate([w * 2, w * 3]).sum().backward()
    np.testing.assert_array_equal(w.grad.data, [5.0, 5.0, 5.0])


# ----- DataLoader ---------------------------------------------------------------------------
@given(n=st.integers(0, 50), batch_size=st.integers(1, 12), drop_last=st.booleans())
def test_sequential_batches_and_counts_equal_torchs(n, batch_size, drop_last):
    import torch.utils.data as tud

    ours = DataLoader(Range(n), batch_size=batch_size, drop_last=drop_last)
    theirs = tud.DataLoader(Range(n), batch_size=batch_size, drop_last=drop_last)
    assert len(ours) == len(theirs)
    assert [b.data.tolist() for b in ours] == [b.tolist() for b in theirs]
    assert all(b.dtype == mg.int64 for b in ours)


@given(n=st.integers(1, 40), batch_size=st.integers(1, 9), drop_last=st.booleans())
def test_a_shuffled_epoch_is_a_permutation_reproducible_from_the_seed(n, batch_size, drop_last):
    def epochs(seed):
        loader = DataLoader(
            Range(n),
            batch_size=batch_size,
            shuffle=True,
            drop_last=drop_last,
            generator=mg.Generator().manual_seed(seed),
        )
        return [[i for b in loader for i in b.data.tolist()] for _ in range(3)]

    first = epochs(0)
    assert first == epochs(0)
    kept = n - n % batch_size if drop_last else n
    for order in first:
        assert len(order) == kept and len(set(order)) == kept and set(order) <= set(range(n))


def test_shuffle_without_a_generator_follows_manual_seed_and_changes_per_epoch():
    loader = DataLoader(Range(30), batch_size=30, shuffle=True)
    mg.manual_seed(0)
    a, b = next(iter(loader)).data.tolist(), next(iter(loader)).data.tolist()
    mg.manual_seed(0)
    assert next(iter(loader)).data.tolist() == a
    assert a != b and sorted(a) == sorted(b) == list(range(30))


def test_tensor_dataset_batches_stack_each_tensor():
    x, y = mg.randn(10, 3), mg.arange(10)
    batches = list(DataLoader(TensorDataset(x, y), batch_size=4))
    assert [tuple(bx.shape) for bx, _ in batches] == [(4, 3), (4, 3), (2, 3)]
    assert isinstance(batches[0], list)  # a tuple sample gives a list, as in PyTorch
    np.testing.assert_array_equal(mg.cat([bx for bx, _ in batches]).data, x.data)
    assert mg.cat([by for _, by in batches]).data.tolist() == list(range(10))


def test_batch_size_none_yields_converted_samples():
    import torch.utils.data as tud

    data = [np.arange(2), np.arange(2) + 2]

    class Arrays(Dataset):
        def __getitem__(self, i):
            return (data[i], i)

        def __len__(self):
            return 2

    ours = list(DataLoader(Arrays(), batch_size=None))
    theirs = list(tud.DataLoader(Arrays(), batch_size=None))
    assert len(DataLoader(Arrays(), batch_size=None)) == 2
    assert plain(ours) == plain(theirs)


def test_samplers_batch_samplers_and_workers():
    order = [3, 1, 2]
    loader = DataLoader(Range(4), batch_size=2, sampler=order)
    assert [b.data.tolist() for b in loader] == [[3, 1], [2]]
    loader = DataLoader(Range(6), batch_sampler=[[0, 5], [2], [1, 3, 4]])
    assert [b.data.tolist() for b in loader] == [[0, 5], [2], [1, 3, 4]]
    assert len(loader) == 3
    seq = [b.data.tolist() for b in DataLoader(Range(7), batch_size=3)]
    for workers in (1, 4):  # accepted, run in-process: the same batches
        kw = dict(num_workers=workers, pin_memory=True, persistent_workers=True, prefetch_factor=2)
        assert [b.data.tolist() for b in DataLoader(Range(7), batch_size=3, **kw)] == seq
    assert get_worker_info() is None
    loader = DataLoader(Range(5), batch_size=2, collate_fn=lambda b: tuple(b))
    assert list(loader) == [(0, 1), (2, 3), (4,)]


def test_iterable_datasets_are_batched_in_order():
    import torch.utils.data as tud

    class TorchStream(tud.IterableDataset):
        def __iter__(self):
            return iter(range(7))

        def __len__(self):
            return 7

    for drop_last in (False, True):
        ours = DataLoader(Stream(7), batch_size=3, drop_last=drop_last)
        theirs = tud.DataLoader(TorchStream(), batch_size=3, drop_last=drop_last)
        assert len(ours) == len(theirs)
        assert [b.data.tolist() for b in ours] == [b.tolist() for b in theirs]
    assert list(DataLoader(Stream(3), batch_size=None)) == [0, 1, 2]
    with pytest.raises(ValueError, match="IterableDataset takes no shuffle"):
        DataLoader(Stream(3), shuffle=True)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0), "DataLoader: batch_size must be an int >= 1 or None, got 0"),
        (dict(batch_size=2.0), "DataLoader: batch_size must be an int >= 1 or None, got 2.0"),
        (dict(num_workers=-1), "DataLoader: num_workers must be an int >= 0, got -1"),
        (dict(sampler=[0, 1], shuffle=True), "sampler option is mutually exclusive"),
        (dict(batch_sampler=[[0]], batch_size=2), "batch_sampler option is mutually exclusive"),
        (dict(batch_size=None, drop_last=True), "drop_last=True needs a batch_size"),
    ],
)
def test_dataloader_rejects_bad_arguments_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DataLoader(Range(4), **kwargs)


# ----- samplers -----------------------------------------------------------------------------
@given(n=st.integers(0, 30), batch_size=st.integers(1, 8), drop_last=st.booleans())
def test_batch_sampler_equals_torchs(n, batch_size, drop_last):
    import torch.utils.data as tud

    ours = BatchSampler(SequentialSampler(range(n)), batch_size, drop_last)
    theirs = tud.BatchSampler(tud.SequentialSampler(range(n)), batch_size, drop_last)
    assert list(ours) == list(theirs) and len(ours) == len(theirs)


def test_random_samplers_draw_the_requested_indices():
    g = mg.Generator().manual_seed(0)
    assert sorted(RandomSampler(range(5), generator=g)) == list(range(5))
    many = list(RandomSampler(range(3), num_samples=8, generator=g))
    assert len(many) == 8 and sorted(many[:6]) == [0, 0, 1, 1, 2, 2]  # two whole permutations
    drawn = list(RandomSampler(range(4), replacement=True, num_samples=50, generator=g))
    assert len(drawn) == 50 and set(drawn) <= set(range(4))
    assert sorted(SubsetRandomSampler([10, 20, 30], generator=g)) == [10, 20, 30]
    with pytest.raises(ValueError, match="RandomSampler: num_samples must be a positive int"):
        RandomSampler(range(0))
    with pytest.raises(TypeError, match="RandomSampler: replacement must be a bool"):
        RandomSampler(range(3), replacement=1)
    with pytest.raises(ValueError, match="BatchSampler: batch_size must be a positive int, got 0"):
        BatchSampler(range(3), 0, False)


# ----- a ported program ---------------------------------------------------------------------
def test_a_training_loop_over_a_dataloader_fits_a_linear_model():
    import minigrad as torch  # as a ported program spells it
    from minigrad.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    train, val = torch.utils.data.random_split(TensorDataset(x, y), [0.75, 0.25])
    loader = DataLoader(
        train, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.MSELoss()
    assert len(loader) == 6
    for _ in range(20):
        for xb, yb in loader:
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
    with torch.no_grad():
        xv, yv = next(iter(DataLoader(val, batch_size=len(val))))
        assert loss_fn(model(xv), yv).item() < 1e-3
