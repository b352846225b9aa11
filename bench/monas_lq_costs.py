"""Seed 000's baselines priced by hwnas's FINN model beside the seed's Table II / Table III (no training needed).

The fixed-point figures (MACs, BOPs, W_bits, QA-Score) and the FINN dataflow model's resources, latency and energy
at PE = SIMD = 1, 100 MHz on the ZC702 depend on the architecture and bit-widths only, so the untrained models
give the same figures a trained one does. Prints one row per model: ours, the seed's, and the ratio.

    OMP_NUM_THREADS=1 .venv/bin/python bench/monas_lq_costs.py

Results: docs/reproductions.md (seed 000).
"""

from __future__ import annotations

import sys
import time

SEED = {  # Table II (BOPs, W_bits, QA-Score, MACs, LUTs, Regs, BRAM36, DSP) and Table III (expected ms, mJ)
    "vgg10-32f-8b": (213_100_928, 564_424, 0.358, 3_345_408, 14_168, 25_256, 94, 10, 35.16, 19.60),
    "qcnn-32f": (65_900_672, 171_152, 0.109, 3_345_408, 16_021, 28_488, 72, 10, 35.16, 19.62),
    "qcnn-64f": (243_566_768, 400_588, 0.311, 12_864_512, 20_349, 39_940, 107, 10, 131.98, 52.72),
}
COLUMNS = ("BOPs", "W_bits", "QA-Score", "MACs", "LUTs", "Regs", "BRAM36", "DSP", "latency ms", "energy mJ")


def main() -> int:
    from hwnas.cost import estimate
    from hwnas.cost.metrics import model_metrics, qa_score_of, vgg10_amc
    from hwnas.nn import fold_batchnorm
    from hwnas.tasks.baselines import build_named

    shape = (2, 1024)
    base = model_metrics(vgg10_amc(), shape)
    t0 = time.perf_counter()
    print(f"{'model':14s} {'column':11s} {'hwnas':>14s} {'seed':>14s} {'ratio':>7s}")
    for name, seed in SEED.items():
        model = build_named(name, shape, 24).eval()
        m = model_metrics(model, shape)  # one forward: the input quantizers take their shapes
        model = fold_batchnorm(model)
        est = estimate(model, "ZC702", input_shape=shape, kind="finn", clock_mhz=100)
        t = est.totals
        ours = (m.bops, m.weight_bits, qa_score_of(m, base), m.macs, t["luts"], t["ffs"], t["bram18"] / 2, t["dsps"],
                est.latency_ms, est.energy_mj)
        for col, a, b in zip(COLUMNS, ours, seed, strict=True):
            ratio = f"{a / b:7.3f}" if b else "      -"
            print(f"{name:14s} {col:11s} {a:14,.4g} {b:14,.4g} {ratio}")
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
