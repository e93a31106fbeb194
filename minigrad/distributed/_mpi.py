"""mpi4py, imported on first use, and what the environment says about the launcher.

`import minigrad` never imports mpi4py: the core depends on NumPy and Numba only. The first
call that needs MPI imports it here, or raises an ImportError that names the extra to install.
"""

import os

# Set by the launchers this module knows: MPICH's Hydra (and Intel MPI) and Slurm's PMI set
# PMI_RANK and PMI_SIZE, Open MPI sets OMPI_COMM_WORLD_SIZE, PMIx-based launchers PMIX_RANK.
_LAUNCHER_VARIABLES = (
    "PMI_SIZE",
    "PMI_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "MPI_LOCALNRANKS",
    "PMIX_RANK",
)

# pip's name for this project ([project] name in pyproject.toml; a test keeps them equal).
DISTRIBUTION = "minigrad-rnn"


def install_hint() -> str:
    return (
        "minigrad.distributed needs mpi4py and an MPI library: "
        f"pip install '{DISTRIBUTION}[distributed]' (mpi4py plus MPICH's wheel, which "
        "provides `mpiexec`)"
    )


def is_available() -> bool:
    """True if mpi4py can be imported (MPI itself is not initialised by this check)."""
    try:
        import importlib.util

        return importlib.util.find_spec("mpi4py") is not None
    except (ImportError, ValueError):
        return False


def launched_by_mpi() -> bool:
    """True if an MPI launcher (mpiexec, mpirun, srun) started this process."""
    return any(name in os.environ for name in _LAUNCHER_VARIABLES)


def mpi():
    """The mpi4py.MPI module (importing it initialises MPI), or an ImportError saying what
    to install."""
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(install_hint()) from error
    return MPI
