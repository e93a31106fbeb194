"""Imported by every example before NumPy: one BLAS thread, and the repository importable.

An example runs as `python examples/<name>.py` from any folder, with or without minigrad
installed: examples/ (for common.py) and the repository root (for minigrad and models) go on
sys.path. Its imports sort this module ahead of NumPy, so the thread count is set before
OpenBLAS starts.
"""

import os
import sys
from pathlib import Path

# One BLAS thread unless told otherwise: OpenBLAS's threads spin while they wait, which made an
# LSTM step 5-30x slower when another job shared the two cores. On an idle machine a second
# thread helps (the char-LM trained at 1.2-1.4x the tokens/s, docs/examples.md): set
# OPENBLAS_NUM_THREADS to use it.
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

EXAMPLES = Path(__file__).resolve().parent
ROOT = EXAMPLES.parent
for _path in (str(ROOT), str(EXAMPLES)):
    if _path not in sys.path:
        sys.path.insert(0, _path)
