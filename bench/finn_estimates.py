"""hwnas's FINN cost model against FINN's own estimates, and the FINN path's exactness, on the same designs.

For MLPs, 1-D CNNs of the MONAS-LQ space (2×128 I/Q frames) and 2-D CNNs (1×16×16 images) at several
bit-widths, each fully folded (PE = SIMD = 1) and at the cheapest folding hwnas finds for a frame rate
(``fold_for_throughput``), this runs the ``finn`` path (hwnas's FINN form → finn-plus's front end →
SpecializeLayers for the part → ApplyConfig with the folding) and compares, in one run:

* first-sample latency: FINN's critical path (Σ ``get_exp_cycles`` of the chain's HW layers) vs hwnas's
  ``latency_cycles``; initiation interval: FINN's max stage cycles vs hwnas's;
* MVAU cycles per layer (should be equal: the same formula);
* LUTs and BRAM18 in total: FINN's ``res_estimation`` (its HLS/RTL estimators) vs hwnas's FINN model;
* the FINN path's mismatching samples against torch (FINN's Python execution of the HW layers).

Needs finn-plus (`make test` builds .venv-finn with it):

    OMP_NUM_THREADS=1 .venv-finn/bin/python bench/finn_estimates.py [--samples 64] [--target ZC702]
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import statistics
import sys
import time

import numpy as np
import torch

import hwnas.nn as hn
from hwnas.cost import fold_for_throughput
from hwnas.cost.finn import finn_estimate
from hwnas.export.finn import execute_hw, export_finn_onnx, finn_front_end, finn_missing, matrix_layers
from hwnas.export.graph import extract
from hwnas.space.build import build_model
from hwnas.space.point import ConvBlock, DenseLayer, Point


def fixed(bits: int, **kw) -> dict:
    return dict(bits=bits, learnable=False, **kw)


def mlp(w: int, a: int, widths: tuple[int, ...]) -> torch.nn.Module:
    layers: list[torch.nn.Module] = []
    for j, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        layers.append(hn.QLinear(n_in, n_out, input_quantizer=fixed(8 if j == 0 else a, signed=j == 0),
                                 weight_quantizer=fixed(w), bias_quantizer=fixed(8)))
        if j < len(widths) - 2:
            layers.append(hn.QActivation("relu"))
    model = torch.nn.Sequential(*layers)
    model(torch.randn(64, widths[0]))
    return model.eval()


def cnn(family: str, filters: tuple[int, ...], w: int, a: int, shape: tuple[int, ...], classes: int
        ) -> torch.nn.Module:
    n = len(filters)
    point = Point(family=family, conv=tuple(ConvBlock(f, 3) for f in filters), dense=(DenseLayer(16),),
                  weight_bits=(w,) * (n + 2), act_bits=(a,) * (n + 1))
    model = build_model(point, shape, classes, seed=0)
    model(torch.randn(32, *shape))
    return model.eval()


def designs() -> list[tuple[str, torch.nn.Module, tuple[int, ...]]]:
    out = []
    for w, a in ((2, 2), (4, 4), (8, 8)):
        out.append((f"mlp 16-64-32-5 w{w}a{a}", mlp(w, a, (16, 64, 32, 5)), (16,)))
        out.append((f"cnn1d 16-16 w{w}a{a} (AMC 2x128)", cnn("cnn1d", (16, 16), w, a, (2, 128), 11), (2, 128)))
        out.append((f"cnn2d 8-16 w{w}a{a} (1x16x16)", cnn("cnn2d", (8, 16), w, a, (1, 16, 16), 10), (1, 16, 16)))
    return out


def finn_totals(build) -> dict[str, float]:
    """FINN's numbers for a chain: Σ and max of ``get_exp_cycles`` (what its ``dataflow_performance`` computes on
    the dataflow partition), Σ of ``res_estimation``."""
    cycles = list(build.exp_cycles.values())
    res = build.resources
    return {"latency": float(sum(cycles)), "ii": float(max(cycles)),
            "luts": sum(r.get("LUT", 0.0) for r in res.values()),
            "bram18": sum(r.get("BRAM_18K", 0.0) for r in res.values())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--target", default="ZC702")
    ap.add_argument("--fps", type=float, default=1e5, help="frame rate for the folded designs")
    args = ap.parse_args(argv)
    if finn_missing():
        print(finn_missing(), file=sys.stderr)
        return 1
    from hwnas.cost.catalog import get_device

    part = get_device(args.target).part
    print(f"# {' '.join(shlex.quote(a) for a in ['bench/finn_estimates.py', *(argv or sys.argv[1:])])}")
    print(f"# target {args.target} ({part}); folded designs: cheapest folding reaching {args.fps:g} frames/s")
    header = (f"{'design':34s} {'fold':>6s} {'lat hw':>8s} {'lat FINN':>9s} {'II hw':>7s} {'II FINN':>8s} "
              f"{'MVAU eq':>7s} {'LUT hw':>7s} {'LUT FINN':>8s} {'BRAM hw':>7s} {'BRAM F':>6s} {'mism':>5s} {'s':>5s}")
    print(header)
    ratios: dict[str, list[float]] = {"latency": [], "ii": [], "luts": [], "bram18": []}
    mvau_equal = mvau_total = mism_total = 0
    g = torch.Generator().manual_seed(0)
    for name, model, shape in designs():
        x = torch.randn(args.samples, *shape, generator=g)
        with torch.no_grad():
            ref = model(x).double().numpy()
        graph = extract(model, shape)
        layers = matrix_layers(graph)
        fps_fold, _ = fold_for_throughput(model, args.target, shape, args.fps)
        for label, folding in (("1/1", {}), ("fps", {k: (f.pe, f.simd) for k, f in fps_fold.items()})):
            t0 = time.perf_counter()
            build = finn_front_end(export_finn_onnx(model, shape, graph=graph), folding=folding, layers=layers,
                                   part=part)
            got = execute_hw(build.model, x.numpy()).reshape(ref.shape)
            seconds = time.perf_counter() - t0
            mism = int(np.sum(np.any(got != ref, axis=1)))
            mism_total += mism
            from hwnas.cost.finn import Folding

            est = finn_estimate(model, args.target, shape,
                                folding={k: Folding(*v) for k, v in folding.items()})
            hw = {"latency": float(est.latency_cycles), "ii": float(est.initiation_interval),
                  "luts": float(sum(r.luts for r in est.rows)), "bram18": float(sum(r.bram18 for r in est.rows))}
            fi = finn_totals(build)
            for k in ratios:
                if fi[k] > 0:
                    ratios[k].append(hw[k] / fi[k])
            eq = 0
            for layer in layers:
                rows = [r.cycles for r in est.rows if r.name == f"{layer}:mvau" or r.name == f"{layer}:vvau"]
                if rows and rows[0] == build.exp_cycles[build.layer_nodes[layer]]:
                    eq += 1
            mvau_equal += eq
            mvau_total += len(layers)
            print(f"{name:34s} {label:>6s} {hw['latency']:8.0f} {fi['latency']:9.0f} {hw['ii']:7.0f} {fi['ii']:8.0f} "
                  f"{eq:3d}/{len(layers):<3d} {hw['luts']:7.0f} {fi['luts']:8.0f} {hw['bram18']:7.0f} "
                  f"{fi['bram18']:6.0f} {mism:5d} {seconds:5.1f}")
    print()
    for k, v in ratios.items():
        if v:
            print(f"hwnas / FINN {k:8s}: median {statistics.median(v):.3f}, min {min(v):.3f}, max {max(v):.3f} "
                  f"({len(v)} designs)")
    print(f"MVAU cycles equal on {mvau_equal}/{mvau_total} layers; FINN path mismatching samples: {mism_total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
