"""What the in-place safety costs: the char-LM step with version guards on and off.

    python benchmarks/version_counter.py [--hidden 64 256] [--repeat 30]

Every recorded node that saves arrays for backward notes the version of each tensor whose
memory it saved, and backward compares them (minigrad/autograd.py). Here the same training step
(benchmarks/lstm_lm.py's workload, fused and unfused) runs alternately with that bookkeeping
and with it switched off (guard_saved and share_version_with_view replaced by no-ops), in one
process, so that the ratio is what the check costs.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lstm_lm import B, T, V, make_minigrad, minigrad_step  # noqa: E402

from minigrad import autograd  # noqa: E402

GUARD, SHARE = autograd.guard_saved, autograd.share_version_with_view


def guards(on: bool) -> None:
    autograd.guard_saved = GUARD if on else (lambda saved, tensors, result: None)
    autograd.share_version_with_view = SHARE if on else (lambda tensors, result: None)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args(argv)
    print("| H | path | guards on ms | guards off ms | on / off |")
    print("|---|---|---|---|---|")
    for H in args.hidden:
        for fuse in (True, False):
            model, _ = make_minigrad("lstm", H, np.float32, fuse=fuse)
            rng = np.random.default_rng(0)
            tokens, targets = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
            times = {True: [], False: []}
            for r in range(2 * args.repeat + 4):
                on = r % 2 == 0
                guards(on)
                t = time.perf_counter()
                minigrad_step(model, tokens, targets)
                if r >= 4:  # the first rounds trace and compile
                    times[on].append(time.perf_counter() - t)
            guards(True)
            on, off = (np.median(times[k]) * 1e3 for k in (True, False))
            path = "fused" if fuse else "unfused"
            print(f"| {H} | {path} | {on:.1f} | {off:.1f} | {on / off:.3f} |")


if __name__ == "__main__":
    main()
