"""One global generator for initialisation, dropout and sampling, reset by `manual_seed`."""

from __future__ import annotations

import numpy as np

from .device import check_device

_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    global _rng
    _rng = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    return _rng


class Generator:
    """A random stream of its own for `generator=` arguments (DataLoader, random_split), as
    torch.Generator: `Generator().manual_seed(0)` returns the generator itself.

    NumPy's PCG64 underneath, seeded as `manual_seed` seeds the global one: seeded streams are
    reproducible but differ from PyTorch's. An unseeded Generator starts, as PyTorch's does,
    from the fixed seed 67280421310721, so it too is reproducible.
    """

    def __init__(self, device=None):
        check_device(device, "Generator")
        self.manual_seed(67280421310721)

    def manual_seed(self, seed: int) -> Generator:
        # PyTorch takes seeds in [-2**63, 2**64) and wraps negative ones to 64 bits.
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"Generator.manual_seed: expected an int, got {seed!r}")
        if not -(2**63) <= seed < 2**64:
            raise ValueError(f"Generator.manual_seed: {seed} is outside [-2**63, 2**64)")
        self._seed = int(seed) % 2**64
        self.rng = np.random.default_rng(self._seed)
        return self

    def seed(self) -> int:
        """Reseed from fresh OS entropy and return the new seed, as torch.Generator.seed."""
        self.manual_seed(int(np.random.SeedSequence().generate_state(1, np.uint64)[0]))
        return self._seed

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> dict:
        """NumPy's bit-generator state (PyTorch returns a byte tensor): for set_state only."""
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> Generator:
        self.rng.bit_generator.state = state
        return self
