"""`mg.cuda`: what PyTorch programs ask of CUDA, answered for a machine without it.

minigrad computes with NumPy on the CPU, so `is_available()` is False and `device_count()` 0,
which sends the usual `device = "cuda" if torch.cuda.is_available() else "cpu"` to the CPU.
Seeding is accepted and does nothing (there is no CUDA generator to seed); anything that needs
a GPU raises an error that says so.
"""

_NO_GPU = "minigrad runs on the CPU only (NumPy); there is no CUDA device"


def is_available() -> bool:
    return False


def device_count() -> int:
    return 0


def _unavailable(name: str):
    def fn(*args, **kwargs):
        raise RuntimeError(f"mg.cuda.{name}: {_NO_GPU}; use device 'cpu'")

    fn.__name__ = name
    fn.__doc__ = f"Raises: {_NO_GPU}."
    return fn


current_device = _unavailable("current_device")
get_device_name = _unavailable("get_device_name")
set_device = _unavailable("set_device")
synchronize = _unavailable("synchronize")


def manual_seed(seed: int) -> None:
    """Does nothing: there is no CUDA generator (seed the CPU's with mg.manual_seed)."""


manual_seed_all = manual_seed
