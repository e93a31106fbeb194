"""Imported by every example before NumPy: one BLAS thread, and the repository importable.

An example runs as `python examples/<name>.py` from any folder, with or without minigrad
installed: examples/ (for common.py) and the repository root (for minigrad and models) go on
sys.path. Its imports sort this module ahead of NumPy, so the thread count is set before
OpenBLAS starts.
"""

import os
import sys
from pathlib import Path

# These models multiply small matrices (B <= 64, H <= 256), which run fastest on one BLAS
# thread: on two cores OpenBLAS's second thread bought nothing on a quiet machine, and its
# spinning made an LSTM step 5-30x slower when another job shared the cores. Setting the
# variable overrides this.
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

EXAMPLES = Path(__file__).resolve().parent
ROOT = EXAMPLES.parent
for _path in (str(ROOT), str(EXAMPLES)):
    if _path not in sys.path:
        sys.path.insert(0, _path)
