"""The dtypes minigrad computes in, and the default one (float32)."""

import numpy as np

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)

_SUPPORTED = (float32, float64, int32, int64, bool_)
_default = float32


def as_dtype(dtype) -> np.dtype:
    """Resolve a dtype given as a NumPy dtype, a type or a name; reject what minigrad lacks."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    # `is None` first: `None in _SUPPORTED` is True, since np.dtype(None) means float64.
    if resolved is None or resolved not in _SUPPORTED:
        names = ", ".join(d.name for d in _SUPPORTED)
        raise TypeError(f"unsupported dtype {dtype!r}: minigrad supports {names}")
    return resolved


def set_default_dtype(dtype) -> None:
    """The dtype of new floating tensors and parameters: float32 (default) or float64."""
    global _default
    resolved = as_dtype(dtype)
    if resolved.kind != "f":
        raise TypeError(f"set_default_dtype: the default must be a float dtype, got {resolved}")
    _default = resolved


def get_default_dtype() -> np.dtype:
    return _default
