"""The named pairs that PyTorch's reductions along a dim return (`torch.return_types`):
`x.max(1)` is `max(values, indices)`, unpacked as `values, indices = x.max(1)`."""

from collections import namedtuple

_FIELDS = ["values", "indices"]
max, min, sort, median, mode, kthvalue, topk = (  # noqa: A001
    namedtuple(name, _FIELDS, module=__name__)
    for name in ("max", "min", "sort", "median", "mode", "kthvalue", "topk")
)
