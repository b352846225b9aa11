"""CPU latency lookup table: predicted vs measured onnxruntime latency of ≥ 30 small models.

Profiles an operator latency table on this machine (or loads a cached one), builds a seeded set of
varied models from hwnas layers with their quantizers off — 1-D CNNs on RadioML-sized I/Q frames
(2×128, 2×1024), 2-D CNNs on 1×28×28 and 3×32×32 images, depthwise-separable stacks, MLPs — then for
each model measures its real latency (exported with ``torch.onnx.export``; the smallest of ``--rounds``
interleaved medians of ``--repeats`` runs in onnxruntime with the table's session settings) and predicts
it from the table in the same run, once with the table alone and once after
:func:`hwnas.cost.cpu_latency.calibrate` has fitted per-group factors on 36 *other* models (the zoo with
seed + 1000; never the evaluated ones). Prints one line per model and, for both, the share of models
predicted within ±10 % (project goal: ≥ 95 %) and the median error.

    .venv/bin/python bench/cpu_latency.py [--table PATH] [--quick] [--repeats 200] [--rounds 3]
        [--threads 1] [--seed 0] [--no-calibration]

``--table PATH`` loads PATH if it exists (warning when it was measured on another machine) and otherwise
profiles and saves it there. ``--quick`` profiles the small test grid instead of the full one.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from hwnas.cost.cpu_latency import (
    INT8_KINDS,
    LatencyTable,
    calibrate,
    default_grid,
    measure_latencies,
    predict_latency,
    profile_operators,
    quick_grid,
)
from hwnas.cost.latency_zoo import model_zoo


def get_table(path: str | None, quick: bool, threads: int) -> LatencyTable:
    if path and Path(path).exists():
        table = LatencyTable.load(path)
        print(f"loaded {len(table)} operator timings from {path} (measured {table.created})")
        if not table.same_machine():
            print("WARNING: the table was measured on another machine/runtime; predictions may be off")
        return table
    grid = quick_grid() if quick else default_grid()
    t0 = time.perf_counter()
    table = profile_operators(grid, threads=threads)
    int8 = sum(k.partition("(")[0] in INT8_KINDS for k in table.entries)
    print(f"profiled {len(table)} operators ({int8} of them int8 kinds) in {time.perf_counter() - t0:.1f} s "
          f"(session overhead {table.overhead_us:.2f} µs, per node {table.node_us:.3f} µs, "
          f"int8 channels-last: {table.int8_nhwc})")
    if path:
        table.save(path)
        print(f"saved to {path}")
    return table


def table_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every CPU latency bench takes: the table, its grid, timing repeats and threads."""
    parser.add_argument("--table", help="JSON table: loaded if present, else profiled and saved here")
    parser.add_argument("--quick", action="store_true", help="profile the small test grid")
    parser.add_argument("--repeats", type=int, default=200, help="timed quiet runs per model (median)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per model (min of medians)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")


def open_table(args: argparse.Namespace) -> LatencyTable:
    """Print the command line, load or profile the table (:func:`get_table`) and print the machine it describes."""
    print("$ " + " ".join(shlex.quote(a) for a in [".venv/bin/python", *sys.argv]))
    table = get_table(args.table, args.quick, args.threads)
    m = table.machine
    print(f"machine: {m['cpu_model']}, {m['logical_cores']} cores, {m['threads']} thread(s), "
          f"onnxruntime {m['onnxruntime']}, torch {m['torch']}")
    return table


def summary(label: str, errors: list[float]) -> None:
    within = sum(abs(e) <= 10.0 for e in errors)
    print(f"{label:11s} within ±10 %: {within}/{len(errors)} = {100.0 * within / len(errors):.1f} % (goal ≥ 95 %); "
          f"median |error| {statistics.median(abs(e) for e in errors):.1f} %, mean {statistics.mean(errors):+.1f} %, "
          f"max |error| {max(abs(e) for e in errors):.1f} %")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    table_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the model set")
    parser.add_argument("--no-calibration", action="store_true", help="skip the model-level calibration")
    parser.add_argument("--verbose", action="store_true", help="print per-layer rows of each prediction")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    table = open_table(args)
    floor = table.session.get("probe_floor_us")
    calibrated = None
    if not args.no_calibration:
        cal_seed = args.seed + 1000
        cal_models = [(build().eval(), shape) for _, build, shape in model_zoo(cal_seed)]
        t1 = time.perf_counter()
        calibrated = calibrate(table, cal_models, repeats=args.repeats, rounds=args.rounds)
        factors = ", ".join(f"{g} {f:.2f}" for g, f in calibrated.calibration.items())
        print(f"calibrated on {len(cal_models)} other models (zoo seed {cal_seed}) in "
              f"{time.perf_counter() - t1:.0f} s: {factors}")
    specs = [(name, build().eval(), shape) for name, build, shape in model_zoo(args.seed)]
    measured = measure_latencies([(m, shape) for _, m, shape in specs], args.repeats, rounds=args.rounds,
                                 threads=args.threads, floor_us=floor)
    print(f"{'model':44s} {'ops':>4s} {'meas ms':>9s} {'pred ms':>9s} {'err %':>7s} {'cal ms':>9s} {'err %':>7s}")
    errors, cal_errors = [], []
    for (name, model, shape), meas in zip(specs, measured, strict=True):
        pred = predict_latency(model, shape, table)
        err = 100.0 * (pred.total_ms - meas) / meas
        errors.append(err)
        line = f"{name:44s} {len(pred.rows):4d} {meas:9.4f} {pred.total_ms:9.4f} {err:+7.1f}"
        if calibrated is not None:
            cal = predict_latency(model, shape, calibrated)
            cal_errors.append(100.0 * (cal.total_ms - meas) / meas)
            line += f" {cal.total_ms:9.4f} {cal_errors[-1]:+7.1f}"
        print(line)
        if args.verbose:
            print(pred.table())
    print(f"\nmodels: {len(errors)}")
    summary("table only", errors)
    if cal_errors:
        summary("calibrated", cal_errors)
    print(f"total time: {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
