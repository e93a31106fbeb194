"""What the scan costs per time step beyond its arrays: the recurrent layers at a size where
the arrays cost almost nothing (B=4, H=8, T=256), forward and backward apart.

    OPENBLAS_NUM_THREADS=1 python benchmarks/step_overhead.py [--rounds 3]

CPU microseconds per time step (medians of 30 forward+backward passes), the layer's default
(its time loop as one scan node). What is left at this size is the Python that runs each
step's program: node objects, the gradient table, the engine's reverse step. Another
checkout's figures, to compare: run this file with `PYTHONPATH=<that checkout>` from its root.
"""

import argparse
import time

import numpy as np

import minigrad as mg
import models

B, H, T = 4, 8, 256
LAYERS = {"rnn": models.RNN, "lstm": models.LSTM, "gru": models.GRU}


def per_step_us(cell: str, passes: int = 30) -> tuple:
    """(forward, backward) CPU microseconds per time step, medians over passes."""
    mg.manual_seed(0)
    layer = LAYERS[cell](H, H)
    x = mg.randn(T, B, H, requires_grad=True)
    forward, backward = [], []
    for i in range(passes + 3):  # three to trace, compile and warm up
        start = time.process_time()
        loss = layer(x)[0].sum()
        middle = time.process_time()
        loss.backward()
        end = time.process_time()
        if i >= 3:
            forward.append(middle - start)
            backward.append(end - middle)
    return float(np.median(forward)) / T * 1e6, float(np.median(backward)) / T * 1e6


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="rounds over the cells (median)")
    args = ap.parse_args(argv)
    found = {cell: [] for cell in LAYERS}
    for _ in range(args.rounds):
        for cell in LAYERS:
            found[cell].append(per_step_us(cell))
    print(f"CPU us per time step (B={B}, H={H}, T={T}; median of {args.rounds} rounds)\n")
    print("| cell | forward | backward | both |")
    print("|---|---|---|---|")
    for cell, runs in found.items():
        f, b = np.median([r[0] for r in runs]), np.median([r[1] for r in runs])
        print(f"| {cell} | {f:.1f} | {b:.1f} | {f + b:.1f} |")


if __name__ == "__main__":
    main()
