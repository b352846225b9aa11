"""AMC data generation speed: frames of a RadioML-like preset per second (``hwnas.tasks.amc.generate``).

    .venv/bin/python bench/amc_generation.py [--preset rml2016] [--per-pair 1000] [--workers 2] [--seed 0]

The default generates 220,000 ``rml2016`` frames (11 classes × 20 SNRs × 1000) with the full channel and
``unit_power`` normalization, in a pool of 2 worker processes; the goal is ≤ 180 s on a 2-core machine.
The time includes the process pool's start-up and the copy of every frame into the output array.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from hwnas.tasks.amc import PRESETS, generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="rml2016", choices=sorted(PRESETS))
    ap.add_argument("--per-pair", type=int, default=1000, help="frames per (class, SNR) pair (default 1000)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--progress", action="store_true", help="show the progress bar")
    args = ap.parse_args()
    p = PRESETS[args.preset]
    n = len(p.classes) * len(p.snrs) * args.per_pair
    print(f"numpy {np.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"workers={args.workers}")
    start = time.perf_counter()
    data = generate(p, args.per_pair, seed=args.seed, workers=args.workers, progress=args.progress)
    seconds = time.perf_counter() - start
    assert len(data) == n and np.all(np.isfinite(data.x))
    print(f"{args.preset}: {n} frames of {p.frame_length} samples ({data.x.nbytes / 2**20:.0f} MiB) "
          f"in {seconds:.1f} s = {n / seconds:,.0f} frames/s (goal for 220,000 rml2016 frames: <= 180 s)")


if __name__ == "__main__":
    main()
