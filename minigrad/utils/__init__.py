"""Utilities under PyTorch's names, so `import minigrad as torch` finds `torch.utils.data`."""

from . import data

__all__ = ["data"]
