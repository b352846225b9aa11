"""A seeded zoo of small, varied models for CPU latency benchmarks and for calibrating a latency table.

Families: RadioML-style 1-D CNNs on 2×128 and 2×1024 I/Q frames, VGG10 on 2×1024, 2-D CNNs on 1×28×28 and
3×32×32 images, depthwise-separable 1-D and 2-D stacks and MLPs — built from hwnas layers with their quantizers
off (the latency table predicts the float graph). :func:`model_zoo` returns (name, builder, input shape).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
from torch import nn

import hwnas.nn as hn

__all__ = ["Spec", "model_zoo"]

OFF = dict(input_quantizer=None, weight_quantizer=None, bias_quantizer=None)
Spec = tuple[str, Callable[[], nn.Module], tuple[int, ...]]
"""(name, builder, per-sample input shape)."""


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


def model_zoo(seed: int) -> list[Spec]:
    """36 seeded models across the families above (the benchmark uses seed 0, calibration another seed)."""
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
