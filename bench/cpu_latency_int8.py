"""CPU latency of int8 models: predicted vs measured deployed latency, and the int8-vs-float speed-up.

Profiles an operator latency table with the int8 kinds on this machine (or loads a cached one), builds a
handful of small hwnas models — MLPs, 1-D CNNs on 2×128 and 2×1024 I/Q frames, 2-D CNNs on 1×28×28 and
3×32×32 images, a depthwise-separable stack, a residual 1-D CNN — each with fixed-point quantizers of 8 bits
(every layer deploys as int8), of 16 bits (every layer float) and mixed (first and last layer 16 bits, the rest
8), and for each one measures the deployed model (``measure_latencies(..., precision="deployed")``: the float
graph with the <= 8-bit layers quantized by ``onnxruntime.quantization.quantize_static``; the smallest of
``--rounds`` interleaved medians of ``--repeats`` runs with the table's session settings) and predicts it
(``predict_latency(..., precision="deployed")``) in the same run. It also measures the float graph of each
architecture, to report the measured and the predicted speed-up of the 8-bit model over float.

    .venv/bin/python bench/cpu_latency_int8.py [--table PATH] [--quick] [--repeats 200] [--rounds 3]
        [--threads 1] [--calibrate] [--verbose]

``--table PATH`` loads PATH if it exists (warning when it was measured on another machine) and otherwise
profiles and saves it there. ``--quick`` profiles the small test grid instead of the full one. ``--calibrate``
first fits the float calibration (:func:`hwnas.cost.cpu_latency.calibrate`) on the 36 models of
``model_zoo(1000)`` and predicts with it too (it scales the float rows and the session overhead; the int8 rows
are used as profiled).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import hwnas.nn as hn
from hwnas.cost.cpu_latency import (
    calibrate,
    measure_latencies,
    predict_latency,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_latency import open_table, table_arguments  # the same options and table as bench/cpu_latency.py

Bits = Callable[[int], int]  # layer index -> bits


def q(bits: int) -> dict:
    """Fixed-point input and per-channel weight quantizers of ``bits`` (what a searched hwnas layer carries)."""
    return {"input_quantizer": {"bits": bits, "learnable": False, "signed": True},
            "weight_quantizer": {"bits": bits, "learnable": False, "granularity": "channel"},
            "bias_quantizer": None}


def mlp(widths: list[int], bits: Bits) -> nn.Module:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(hn.QLinear(a, b, **q(bits(i))))
        if i < len(widths) - 2:
            layers.append(hn.QActivation("relu"))
    return nn.Sequential(*layers)


def cnn1d(channels: list[int], length: int, classes: int, bits: Bits) -> nn.Module:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(channels)):
        layers += [hn.QConv1d(a, b, 3, padding=1, **q(bits(i))), hn.QActivation("relu"), hn.QMaxPool1d(2)]
        length //= 2
    n = len(channels) - 1
    layers += [hn.Flatten(), hn.QLinear(channels[-1] * length, 64, **q(bits(n))), hn.QActivation("relu"),
               hn.QLinear(64, classes, **q(bits(n + 1)))]
    return nn.Sequential(*layers)


def cnn2d(channels: list[int], side: int, classes: int, bits: Bits, depthwise: bool = False) -> nn.Module:
    layers: list[nn.Module] = []
    i = 0
    for a, b in itertools.pairwise(channels):
        if depthwise and a > 3:
            layers += [hn.QConv2d(a, a, 3, padding=1, groups=a, **q(bits(i))), hn.QActivation("relu"),
                       hn.QConv2d(a, b, 1, **q(bits(i + 1))), hn.QActivation("relu"), hn.QMaxPool2d(2)]
            i += 2
        else:
            layers += [hn.QConv2d(a, b, 3, padding=1, **q(bits(i))), hn.QActivation("relu"), hn.QMaxPool2d(2)]
            i += 1
        side //= 2
    layers += [hn.Flatten(), hn.QLinear(channels[-1] * side * side, classes, **q(bits(i)))]
    return nn.Sequential(*layers)


class Residual1d(nn.Module):
    """A 1-D residual CNN: stem, two blocks of conv-ReLU-conv + skip, ReLU, pool; flatten, linear."""

    def __init__(self, channels: int, length: int, classes: int, bits: Bits) -> None:
        super().__init__()
        self.stem = hn.QConv1d(2, channels, 3, padding=1, **q(bits(0)))
        self.blocks = nn.ModuleList()
        for j in range(2):
            self.blocks.append(nn.ModuleList([
                hn.QConv1d(channels, channels, 3, padding=1, **q(bits(1 + 2 * j))), hn.QActivation("relu"),
                hn.QConv1d(channels, channels, 3, padding=1, **q(bits(2 + 2 * j))), hn.QActivation("relu"),
                hn.QMaxPool1d(2)]))
        self.flat = hn.Flatten()
        self.head = hn.QLinear(channels * length // 4, classes, **q(bits(5)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for conv1, act1, conv2, act2, pool in self.blocks:
            x = pool(act2(conv2(act1(conv1(x))) + x))
        return self.head(self.flat(x))


def architectures() -> list[tuple[str, Callable[[Bits], nn.Module], tuple[int, ...], int]]:
    """(name, builder from a per-layer bits function, input shape, number of conv/linear layers)."""
    return [
        ("mlp 16-64-32-5", lambda b: mlp([16, 64, 32, 5], b), (16,), 3),
        ("mlp 256-256-128-10", lambda b: mlp([256, 256, 128, 10], b), (256,), 3),
        ("cnn1d 2x128 16-32", lambda b: cnn1d([2, 16, 32], 128, 11, b), (2, 128), 4),
        ("cnn1d 2x1024 32-64-64", lambda b: cnn1d([2, 32, 64, 64], 1024, 11, b), (2, 1024), 5),
        ("cnn2d 1x28x28 16-32", lambda b: cnn2d([1, 16, 32], 28, 10, b), (1, 28, 28), 3),
        ("cnn2d 3x32x32 32-64-64", lambda b: cnn2d([3, 32, 64, 64], 32, 10, b), (3, 32, 32), 4),
        ("dw-sep 3x32x32 16-32-64", lambda b: cnn2d([3, 16, 32, 64], 32, 10, b, depthwise=True), (3, 32, 32), 6),
        ("residual1d 2x128 32", lambda b: Residual1d(32, 128, 11, b), (2, 128), 6),
    ]


def summary(label: str, errors: list[float]) -> None:
    n = len(errors)
    within10 = sum(abs(e) <= 10.0 for e in errors)
    within20 = sum(abs(e) <= 20.0 for e in errors)
    print(f"{label:14s} within ±10 %: {within10}/{n}, within ±20 %: {within20}/{n}; median |error| "
          f"{statistics.median(abs(e) for e in errors):.1f} %, mean {statistics.mean(errors):+.1f} %, "
          f"max |error| {max(abs(e) for e in errors):.1f} %")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    table_arguments(parser)
    parser.add_argument("--calibrate", action="store_true", help="also predict with the float calibration fitted "
                        "on model_zoo(1000)")
    parser.add_argument("--verbose", action="store_true", help="print per-layer rows of each deployed prediction")
    args = parser.parse_args()
    t0 = time.perf_counter()
    table = open_table(args)
    floor = table.session.get("probe_floor_us")
    calibrated = None
    if args.calibrate:
        from hwnas.cost.latency_zoo import model_zoo

        t1 = time.perf_counter()
        calibrated = calibrate(table, [(build().eval(), shape) for _, build, shape in model_zoo(1000)],
                               repeats=args.repeats, rounds=args.rounds)
        factors = ", ".join(f"{g} {f:.2f}" for g, f in calibrated.calibration.items())
        print(f"calibrated on the 36 models of model_zoo(1000) in {time.perf_counter() - t1:.0f} s: {factors}")
    variants: dict[str, Callable[[int], Bits]] = {
        "8": lambda n: lambda i: 8,
        "16": lambda n: lambda i: 16,
        "mixed": lambda n: lambda i: 16 if i in (0, n - 1) else 8,
    }
    specs = []  # (name, variant, model, shape)
    for name, build, shape, n in architectures():
        for variant, bits in variants.items():
            torch.manual_seed(0)
            specs.append((name, variant, build(bits(n)).eval(), shape))
    models = [(model, shape) for _, _, model, shape in specs]
    t1 = time.perf_counter()
    deployed = measure_latencies(models, args.repeats, rounds=args.rounds, threads=args.threads, floor_us=floor,
                                 precision="deployed")
    float_ms = measure_latencies([(model, shape) for _, v, model, shape in specs if v == "8"], args.repeats,
                                 rounds=args.rounds, threads=args.threads, floor_us=floor)
    print(f"measured {len(models)} deployed and {len(float_ms)} float models in {time.perf_counter() - t1:.0f} s")
    floats = iter(float_ms)
    print(f"{'model':26s} {'bits':>5s} {'meas ms':>9s} {'pred ms':>9s} {'err %':>7s} "
          + (f"{'cal ms':>9s} {'err %':>7s} " if calibrated else "")
          + f"| {'float ms':>9s} {'speed-up meas':>13s} {'pred':>6s}")
    errors: dict[str, list[float]] = {v: [] for v in variants}
    cal_errors: dict[str, list[float]] = {v: [] for v in variants}
    speedups = []
    for (name, variant, model, shape), meas in zip(specs, deployed, strict=True):
        pred = predict_latency(model, shape, table, precision="deployed")
        err = 100.0 * (pred.total_ms - meas) / meas
        errors[variant].append(err)
        line = f"{name:26s} {variant:>5s} {meas:9.4f} {pred.total_ms:9.4f} {err:+7.1f}"
        if calibrated is not None:
            cal = predict_latency(model, shape, calibrated, precision="deployed").total_ms
            cal_errors[variant].append(100.0 * (cal - meas) / meas)
            line += f" {cal:9.4f} {cal_errors[variant][-1]:+7.1f}"
        if variant == "8":
            fl = next(floats)
            pred_float = predict_latency(model, shape, table).total_ms
            speedups.append((fl / meas, pred_float / pred.total_ms))
            line += f" | {fl:9.4f} {fl / meas:13.2f} {pred_float / pred.total_ms:6.2f}"
        elif calibrated is not None:
            line += " |"
        print(line)
        if args.verbose:
            print(pred.table())
    print()
    for variant, errs in errors.items():
        summary(f"{variant}-bit" if variant != "mixed" else "mixed 16/8", errs)
    summary("all", [e for errs in errors.values() for e in errs])
    if calibrated is not None:
        for variant, errs in cal_errors.items():
            summary(f"cal. {variant}", errs)
        summary("cal. all", [e for errs in cal_errors.values() for e in errs])
    ratio_err = [100.0 * (p - s) / s for s, p in speedups]
    print(f"int8 speed-up over float, measured: {min(s for s, _ in speedups):.2f}–{max(s for s, _ in speedups):.2f}×; "
          f"predicted ratio error median {statistics.median(abs(e) for e in ratio_err):.1f} %, "
          f"max {max(abs(e) for e in ratio_err):.1f} %")
    print(f"total time: {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
