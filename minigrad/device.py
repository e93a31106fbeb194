"""`device`: minigrad computes on the CPU only, and says so where PyTorch code asks for more.

PyTorch programs pass devices everywhere (`torch.device("cpu")`, `device=` on factories,
`.to(device)`); accepting "cpu" lets them port unchanged, and refusing anything else with an
error keeps a program written for a GPU from silently running something it did not ask for.
"""

from __future__ import annotations


class device:
    """A device, spelled as in PyTorch: mg.device("cpu"), mg.device("cpu", 0) or "cpu:0"."""

    __slots__ = ("type", "index")

    def __init__(self, type_or_device, index=None):
        if isinstance(type_or_device, device):
            self.type, self.index = type_or_device.type, type_or_device.index
            return
        if not isinstance(type_or_device, str):
            raise TypeError(
                f"device: expected a string such as 'cpu' or a device, got "
                f"{type(type_or_device).__name__}"
            )
        name, _, number = type_or_device.partition(":")
        if number:
            if index is not None:
                raise ValueError(
                    f"device: index given twice in device({type_or_device!r}, {index})"
                )
            index = int(number) if number.isdigit() else number
        if name != "cpu" or index not in (None, 0):
            raise RuntimeError(
                f"device {type_or_device!r}"
                + (f" index {index}" if index not in (None, 0) and not number else "")
                + " is not available: minigrad computes with NumPy on the CPU, and the only "
                "device is 'cpu' (also written 'cpu:0' or mg.device('cpu'))"
            )
        self.type, self.index = "cpu", index

    def __eq__(self, other):
        try:
            return isinstance(other, (device, str)) and device(other).type == self.type
        except (RuntimeError, ValueError, TypeError):
            return False

    def __hash__(self):
        return hash(self.type)

    def __repr__(self):
        return f"device(type='{self.type}')"

    def __str__(self):
        return self.type


CPU = device("cpu")


def check_device(d, where: str) -> None:
    """Accept None or any spelling of the CPU; name `where` in the error for anything else."""
    if d is None:
        return
    try:
        device(d)
    except (RuntimeError, TypeError, ValueError) as e:
        raise type(e)(f"{where}: {e}") from None


def set_default_device(d) -> None:
    """PyTorch's default device for new tensors: only the CPU (or None, the default) exists."""
    check_device(d, "set_default_device")


def get_default_device() -> device:
    return CPU
