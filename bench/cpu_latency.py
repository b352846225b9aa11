"""CPU latency lookup table: predicted vs measured onnxruntime latency of ≥ 30 small models.

Profiles an operator latency table on this machine (or loads a cached one), builds a seeded set of
varied models from hwnas layers with their quantizers off — 1-D CNNs on RadioML-sized I/Q frames
(2×128, 2×1024), 2-D CNNs on 1×28×28 and 3×32×32 images, depthwise-separable stacks, MLPs — then for
each model measures its real latency (exported with ``torch.onnx.export``, median of ``--repeats`` runs
in onnxruntime with the table's session settings) and predicts it from the table in the same run.
Prints one line per model (predicted ms, measured ms, error %) and then the share of models predicted
within ±10 % (project goal: ≥ 95 %) and the median absolute error.

    .venv/bin/python bench/cpu_latency.py [--table PATH] [--quick] [--repeats 300] [--threads 1] [--seed 0]

``--table PATH`` loads PATH if it exists (warning when it was measured on another machine) and otherwise
profiles and saves it there. ``--quick`` profiles the small test grid instead of the full one.
"""

from __future__ import annotations

import argparse
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import hwnas.nn as hn
from hwnas.cost.cpu_latency import (
    LatencyTable,
    default_grid,
    measure_latency,
    predict_latency,
    profile_operators,
    quick_grid,
)

OFF = dict(input_quantizer=None, weight_quantizer=None, bias_quantizer=None)
Spec = tuple[str, Callable[[], nn.Module], tuple[int, ...]]


def conv1d(cin: int, cout: int, k: int, stride: int = 1, padding: int | None = None, groups: int = 1) -> nn.Module:
    return hn.QConv1d(cin, cout, k, stride, k // 2 if padding is None else padding, groups=groups, **OFF)


def conv2d(cin: int, cout: int, k: int, stride: int = 1, padding: int | None = None, groups: int = 1) -> nn.Module:
    return hn.QConv2d(cin, cout, k, stride, k // 2 if padding is None else padding, groups=groups, **OFF)


def linear(fin: int, fout: int) -> nn.Module:
    return hn.QLinear(fin, fout, **OFF)


def act(kind: str) -> nn.Module:
    return hn.QActivation(kind)


def flat_size(layers: list[nn.Module], shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return nn.Sequential(*layers)(torch.zeros(1, *shape)).numel()


def cnn1d(rng: random.Random, length: int) -> Spec:
    """RadioML-style classifier: conv blocks (conv, activation, pooling), flatten, 1–2 dense layers."""
    blocks = rng.randint(2, 4) if length <= 128 else rng.randint(4, 7)
    width = rng.choice([8, 16, 24, 32, 48, 64, 96, 128])
    k = rng.choice([3, 5, 7])
    fn = rng.choice(["relu", "relu", "tanh", "sigmoid"])
    pool = rng.choice([hn.QMaxPool1d, hn.QMaxPool1d, hn.QAvgPool1d])
    layers: list[nn.Module] = []
    cin = 2
    for b in range(blocks):
        cout = width if b < blocks // 2 else min(2 * width, 256)
        layers += [conv1d(cin, cout, k, padding=rng.choice([k // 2, k // 2, 0])), act(fn), pool(2)]
        cin = cout
    layers.append(nn.Flatten())
    n = flat_size(layers, (2, length))
    hidden = rng.choice([32, 64, 128])
    layers += [linear(n, hidden), act("relu"), linear(hidden, 11)]
    name = f"cnn1d L{length} {blocks}x{width} k{k} {fn} {pool.__name__[1:4]}"
    return name, lambda: nn.Sequential(*layers), (2, length)


def vgg10_1024(width: int) -> Spec:
    """VGG10-like RadioML 2018 model: 7 × (conv k3, ReLU, maxpool 2) on 2×1024, then 3 dense layers."""
    layers: list[nn.Module] = []
    cin = 2
    for _ in range(7):
        layers += [conv1d(cin, width, 3), act("relu"), hn.QMaxPool1d(2)]
        cin = width
    layers += [nn.Flatten(), linear(width * 8, 128), act("relu"), linear(128, 128), act("relu"), linear(128, 24)]
    return f"vgg10 2x1024 w{width}", lambda: nn.Sequential(*layers), (2, 1024)


def cnn2d(rng: random.Random, shape: tuple[int, int, int]) -> Spec:
    """Small image classifier: 2–3 conv blocks with optional stride-2 downsampling, then dense layers."""
    blocks = rng.randint(2, 3)
    width = rng.choice([8, 16, 24, 32, 64])
    k = rng.choice([3, 3, 5])
    fn = rng.choice(["relu", "relu", "tanh"])
    layers: list[nn.Module] = []
    cin = shape[0]
    for b in range(blocks):
        cout = width * (2 ** min(b, 1))
        if rng.random() < 0.3:
            layers += [conv2d(cin, cout, k, stride=2), act(fn)]
        else:
            layers += [conv2d(cin, cout, k), act(fn), rng.choice([hn.QMaxPool2d, hn.QAvgPool2d])(2)]
        cin = cout
    layers.append(nn.Flatten())
    n = flat_size(layers, shape)
    hidden = rng.choice([32, 64, 128])
    layers += [linear(n, hidden), act("relu"), linear(hidden, 10)]
    name = f"cnn2d {'x'.join(map(str, shape))} {blocks}x{width} k{k} {fn}"
    return name, lambda: nn.Sequential(*layers), shape


def separable1d(rng: random.Random, length: int) -> Spec:
    """Depthwise-separable 1-D stack: stem conv, then (depthwise k, pointwise 1×1, ReLU, pool) blocks."""
    width = rng.choice([16, 32, 64, 128])
    k = rng.choice([3, 5, 7])
    blocks = rng.randint(2, 4)
    layers: list[nn.Module] = [conv1d(2, width, 3), act("relu")]
    for _ in range(blocks):
        layers += [conv1d(width, width, k, groups=width), conv1d(width, width, 1), act("relu"), hn.QMaxPool1d(2)]
    layers += [nn.Flatten()]
    layers += [linear(flat_size(layers, (2, length)), 11)]
    return f"sep1d L{length} {blocks}x{width} k{k}", lambda: nn.Sequential(*layers), (2, length)


def separable2d(rng: random.Random, shape: tuple[int, int, int]) -> Spec:
    """MobileNet-like 2-D stack: stem conv (stride 2 or not), depthwise 3×3 + pointwise blocks."""
    width = rng.choice([16, 32, 64])
    blocks = rng.randint(2, 3)
    layers: list[nn.Module] = [conv2d(shape[0], width, 3, stride=rng.choice([1, 2])), act("relu")]
    for b in range(blocks):
        stride = 2 if b > 0 else 1
        layers += [conv2d(width, width, 3, stride=stride, groups=width), act("relu"),
                   conv2d(width, 2 * width if b == blocks - 1 else width, 1), act("relu")]
        width = 2 * width if b == blocks - 1 else width
    layers += [hn.QAvgPool2d(2), nn.Flatten()]
    layers += [linear(flat_size(layers, shape), 10)]
    return f"sep2d {'x'.join(map(str, shape))} {blocks}x{width} ", lambda: nn.Sequential(*layers), shape


def mlp(rng: random.Random) -> Spec:
    """Plain MLP: 16 (jet tagging), 128, 784 or 2×128 (flattened I/Q) inputs, 1–4 hidden layers."""
    fin = rng.choice([16, 64, 784, 256])
    depth = rng.randint(1, 4)
    fn = rng.choice(["relu", "relu", "tanh", "sigmoid"])
    widths = [rng.choice([16, 32, 64, 128, 256, 512]) for _ in range(depth)]
    layers: list[nn.Module] = []
    cin = fin
    for w in widths:
        layers += [linear(cin, w), act(fn)]
        cin = w
    layers.append(linear(cin, rng.choice([5, 10, 11])))
    return f"mlp {fin}-{'-'.join(map(str, widths))} {fn}", lambda: nn.Sequential(*layers), (fin,)


def models(seed: int) -> list[Spec]:
    """The benchmark set: 36 seeded models across the families above."""
    rng = random.Random(seed)
    specs: list[Spec] = []
    specs += [cnn1d(rng, 128) for _ in range(8)]
    specs += [cnn1d(rng, 1024) for _ in range(4)]
    specs += [vgg10_1024(width) for width in (32, 64)]
    specs += [cnn2d(rng, (1, 28, 28)) for _ in range(5)]
    specs += [cnn2d(rng, (3, 32, 32)) for _ in range(5)]
    specs += [separable1d(rng, rng.choice([128, 1024])) for _ in range(3)]
    specs += [separable2d(rng, rng.choice([(1, 28, 28), (3, 32, 32)])) for _ in range(3)]
    specs += [mlp(rng) for _ in range(6)]
    return specs


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
    print(f"profiled {len(table)} operators in {time.perf_counter() - t0:.1f} s "
          f"(session overhead {table.overhead_us:.2f} µs)")
    if path:
        table.save(path)
        print(f"saved to {path}")
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", help="JSON table: loaded if present, else profiled and saved here")
    parser.add_argument("--quick", action="store_true", help="profile the small test grid")
    parser.add_argument("--repeats", type=int, default=200, help="timed quiet runs per model (median)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model set")
    parser.add_argument("--verbose", action="store_true", help="print per-layer rows of each prediction")
    args = parser.parse_args()
    print("$ " + " ".join(shlex.quote(a) for a in [".venv/bin/python", *sys.argv]))
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    table = get_table(args.table, args.quick, args.threads)
    m = table.machine
    print(f"machine: {m['cpu_model']}, {m['logical_cores']} cores, {m['threads']} thread(s), "
          f"onnxruntime {m['onnxruntime']}, torch {m['torch']}")
    specs = [(name, build().eval(), shape) for name, build, shape in models(args.seed)]
    floor = table.session.get("probe_floor_us")
    measured = [measure_latency(model, shape, repeats=args.repeats, threads=args.threads, floor_us=floor)
                for _, model, shape in specs]
    print(f"{'model':44s} {'ops':>4s} {'pred ms':>9s} {'meas ms':>9s} {'err %':>7s}")
    errors = []
    for (name, model, shape), meas in zip(specs, measured, strict=True):
        pred = predict_latency(model, shape, table)
        err = 100.0 * (pred.total_ms - meas) / meas
        errors.append(err)
        print(f"{name:44s} {len(pred.rows):4d} {pred.total_ms:9.4f} {meas:9.4f} {err:+7.1f}")
        if args.verbose:
            print(pred.table())
    within = sum(abs(e) <= 10.0 for e in errors)
    print(f"\nmodels: {len(errors)}")
    print(f"within ±10 %: {within}/{len(errors)} = {100.0 * within / len(errors):.1f} % (goal ≥ 95 %)")
    print(f"median |error|: {statistics.median(abs(e) for e in errors):.1f} %   "
          f"mean error: {statistics.mean(errors):+.1f} %   max |error|: {max(abs(e) for e in errors):.1f} %")
    print(f"total time: {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
