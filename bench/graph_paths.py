"""Models beyond a chain on every export path: mismatches against torch and the time each path takes.

Runs :func:`hwnas.export.verify_model` on each model of the DAG test matrix (``tests/graph_models.py``:
residual 1-D CNN with global average pooling, DeepRx-like residual 2-D CNN, concat MLP, concat CNN) and an MLP
with QLayerNorm and QSoftmax along
every registered path (reference, QONNX, hls4ml C simulation, RTL through Verilator) and prints one row per
model and path: samples, mismatching samples, seconds, or why the path was skipped. Recorded in
docs/benchmarks.md.

    OMP_NUM_THREADS=1 .venv/bin/python bench/graph_paths.py [--samples N] [--paths reference,qonnx,...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from tests.graph_models import GRAPH_MODELS, _q, inputs
from torch import nn

import hwnas.nn as hn
from hwnas.export.verify import verify_model


def norm_mlp() -> tuple[nn.Module, tuple[int, ...]]:
    """QLinear -> QLayerNorm -> QLinear -> QSoftmax: hls4ml's algorithms, exact (QONNX cannot express them)."""
    torch.manual_seed(7)
    model = nn.Sequential(hn.QLinear(6, 8, **_q()), hn.QLayerNorm(8), hn.QLinear(8, 5, **_q()), hn.QSoftmax())
    return model.eval(), (6,)


MODELS = {**GRAPH_MODELS, "norm_mlp": norm_mlp}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=128, help="random samples per model (doubled by rounding ties)")
    ap.add_argument("--paths", default=None, help="comma-separated paths (default: every registered path)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated models of the matrix")
    args = ap.parse_args()
    paths = args.paths.split(",") if args.paths else None
    print(f"{'model':<12} {'path':<10} {'samples':>7} {'mismatch':>8} {'seconds':>8}  note")
    failed = 0
    for name in args.models.split(","):
        model, shape = MODELS[name]()
        x = inputs(shape, n=args.samples)
        start = time.perf_counter()
        report = verify_model(model, x, paths=paths, locate=False)
        for r in report.results:
            note = r.skipped or (r.error or "")
            mism = "-" if r.skipped else str(r.mismatches)
            print(f"{name:<12} {r.path:<10} {r.samples:>7} {mism:>8} {r.seconds:>8.1f}  {note[:90]}")
            failed += 0 if r.skipped else int(r.mismatches > 0 or bool(r.error))
        print(f"{name:<12} {'(total)':<10} {'':>7} {'':>8} {time.perf_counter() - start:>8.1f}")
    print(f"paths with mismatches or failures: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
