"""Models beyond a chain, shared by every consumer's tests (reference, QONNX, hls4ml, RTL, costs).

Each builder returns ``(model, input_shape)`` with trained-looking random weights (seeded) and fixed-point
quantizers everywhere a consumer needs them. :data:`GRAPH_MODELS` is the matrix the tests parametrize over.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

import hwnas.nn as hn


def fixed(bits: int, **kw) -> dict:
    return dict(bits=bits, learnable=False, **kw)


ACT = fixed(8, i=3, round_mode="RND", overflow_mode="SAT")
WEIGHT = fixed(6)
BIAS = fixed(8)


def _q(**over) -> dict:
    return {"input_quantizer": ACT, "weight_quantizer": WEIGHT, "bias_quantizer": BIAS, **over}


class ResidualCNN1d(nn.Module):
    """stem conv → residual block (identity skip) → residual block (1×1 conv skip) → global avg pool → dense."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = hn.QConv1d(2, 4, 3, padding=1, **_q())
        self.act = hn.QActivation("relu")
        self.block1 = hn.QResidualBlock(1, 4, 4, 3, input_quantizer=ACT, activation_quantizer=ACT,
                                        weight_quantizer=WEIGHT, bias_quantizer=BIAS)
        self.block2 = hn.QResidualBlock(1, 4, 6, 3, dilation=2, input_quantizer=ACT, activation_quantizer=ACT,
                                        weight_quantizer=WEIGHT, bias_quantizer=BIAS)
        self.head = hn.QLinear(6, 3, **_q(output_quantizer=fixed(10, i=4)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block2(self.block1(self.act(self.stem(x))))
        return self.head(h.mean(dim=-1))


class ResidualCNN2d(nn.Module):
    """A DeepRx-like 2-D residual CNN: stem → two residual blocks → 1×1 conv head (per-position output)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = hn.QConv2d(2, 4, 3, padding=1, **_q())
        self.blocks = nn.Sequential(
            hn.QResidualBlock(2, 4, 4, 3, input_quantizer=ACT, activation_quantizer=ACT, weight_quantizer=WEIGHT,
                              bias_quantizer=BIAS),
            hn.QResidualBlock(2, 4, 5, 3, input_quantizer=ACT, activation_quantizer=ACT, weight_quantizer=WEIGHT,
                              bias_quantizer=BIAS))
        self.head = hn.QConv2d(5, 2, 1, **_q(output_quantizer=fixed(10, i=4)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(torch.relu(self.stem(x))))


class ConcatMLP(nn.Module):
    """Two branches from one quantized trunk, concatenated, then a dense head (an Inception/DenseNet join)."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = hn.QLinear(6, 8, **_q())
        self.a = hn.QLinear(8, 4, **_q())
        self.b = nn.Sequential(hn.QLinear(8, 3, **_q()), hn.QActivation("relu"))
        self.head = hn.QLinear(7, 2, **_q(output_quantizer=fixed(10, i=4)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.relu(self.trunk(x))
        return self.head(torch.cat([self.a(t), self.b(t)], dim=1))


class ConcatCNN(nn.Module):
    """Channel concatenation of two convolutions on one input, flattened into a dense head."""

    def __init__(self) -> None:
        super().__init__()
        self.a = hn.QConv1d(2, 3, 3, padding=1, **_q())
        self.b = hn.QConv1d(2, 2, 1, **_q())
        self.head = hn.QLinear(5 * 8, 3, **_q(output_quantizer=fixed(10, i=4)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat((self.a(x), self.b(x)), dim=1)
        return self.head(torch.flatten(torch.relu(h), 1))


def _seeded(cls: type[nn.Module], shape: tuple[int, ...]) -> Callable[[], tuple[nn.Module, tuple[int, ...]]]:
    def build() -> tuple[nn.Module, tuple[int, ...]]:
        torch.manual_seed(7)
        model = cls().eval()
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(2.0)  # spread the weights over more codes than the default init uses
        return model, shape

    build.__name__ = cls.__name__
    return build


GRAPH_MODELS: dict[str, Callable[[], tuple[nn.Module, tuple[int, ...]]]] = {
    "residual1d": _seeded(ResidualCNN1d, (2, 16)),
    "residual2d": _seeded(ResidualCNN2d, (2, 6, 4)),
    "concat_mlp": _seeded(ConcatMLP, (6,)),
    "concat_cnn": _seeded(ConcatCNN, (2, 8)),
}
"""The DAG test matrix: name → builder of (model in eval mode, per-sample input shape)."""


def inputs(shape: tuple[int, ...], n: int = 64, seed: int = 0) -> torch.Tensor:
    """Random inputs over the input quantizer's range and beyond (saturation), with rounding ties."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn((n, *shape), generator=g) * 3
    ties = torch.round(torch.randn((n, *shape), generator=g) * 16) / 64
    return torch.cat([base, ties])
