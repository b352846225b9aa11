"""Model-level cost figures and MONAS-LQ's QA-Score against a named baseline model.

QA-Score (seed 000 eq. 1) = ½·BOPs/BOPs_base + ½·Wbits/Wbits_base, lower is better; the default
baseline for modulation classification is the 8-bit VGG10 with 64 filters on 1024×2 I/Q:
7 × [Conv1d k=3 → BatchNorm → ReLU → MaxPool 2], then 512 → 128 → 128 → 24.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import hwnas.nn as hn

from .catalog import CostError

__all__ = ["BASELINES", "ModelMetrics", "model_metrics", "qa_score", "qa_score_of", "vgg10_amc"]


def vgg10_amc(filters: int = 64, bits: int | None = 8, input_length: int = 1024, classes: int = 24, *,
              layer_bits: Mapping[str, tuple[int, int]] | None = None, bias_bits: int | None = None,
              fuse_batchnorm: bool = False) -> nn.Sequential:
    """The VGG10 AMC baseline with static ``bits``-bit fixed-point weights and layer inputs.

    ``layer_bits`` maps a layer group (``conv1``, ``conv``, ``dense``, ``output``) to (weight bits, input bits)
    instead of one ``bits``; ``bits=None`` without it: float. ``bias_bits``: fixed-point biases (None: float).
    ``fuse_batchnorm``: BatchNorm inside each convolution (``batch_norm=True``, as hwnas trains and deploys it)
    instead of a separate ``nn.BatchNorm1d`` after it.
    """

    def q(b: int | None) -> dict[str, Any] | None:
        return None if b is None else {"bits": b, "learnable": False, "granularity": "tensor", "round_mode": "RND",
                                       "overflow_mode": "SAT"}

    def args(group: str) -> dict[str, Any]:
        w, a = layer_bits[group] if layer_bits is not None else (bits, bits)
        return {"input_quantizer": q(a), "weight_quantizer": q(w),
                "bias_quantizer": q(bias_bits) if w is not None else None}

    layers: list[nn.Module] = []
    cin = 2
    for i in range(7):
        conv = hn.QConv1d(cin, filters, 3, padding=1, batch_norm=fuse_batchnorm, **args("conv" if i else "conv1"))
        layers += [conv] if fuse_batchnorm else [conv, nn.BatchNorm1d(filters)]
        layers += [hn.QActivation("relu"), hn.QMaxPool1d(2)]
        cin = filters
    length = input_length // 2**7
    layers += [hn.Flatten(), hn.QLinear(filters * length, 128, **args("dense")), hn.QActivation("relu"),
               hn.QLinear(128, 128, **args("dense")), hn.QActivation("relu"),
               hn.QLinear(128, classes, **args("output"))]
    return nn.Sequential(*layers)


BASELINES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "vgg10_amc": (vgg10_amc, (2, 1024)),
}
"""Named baselines: builder and input shape (one sample)."""


@dataclass(frozen=True)
class ModelMetrics:
    """Per-sample MACs, BOPs, EBOPs, weight bits, parameter memory (bytes) and weight sparsity."""

    macs: int
    bops: float
    ebops: float
    weight_bits: float
    memory_bytes: float
    sparsity: float


def model_metrics(model: nn.Module, input_shape: tuple[int, ...]) -> ModelMetrics:
    """Every model-level figure after one forward pass on a zero sample of ``input_shape``."""
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros((1, *input_shape)))
        wbits = hn.weight_bits(model)
        m = ModelMetrics(hn.macs(model), hn.bops(model), float(hn.ebops(model)), wbits, wbits / 8,
                         hn.sparsity(model))
    model.train(was)
    return m


def qa_score(model: nn.Module, input_shape: tuple[int, ...], baseline: str | nn.Module = "vgg10_amc",
             baseline_input_shape: tuple[int, ...] | None = None) -> float:
    """½·BOPs/BOPs_base + ½·Wbits/Wbits_base (lower is better); 1.0 for the baseline itself."""
    if isinstance(baseline, str):
        if baseline not in BASELINES:
            raise CostError(f"baseline: unknown {baseline!r}; known {sorted(BASELINES)}")
        build, shape = BASELINES[baseline]
        base_model, base_shape = build(), shape
    else:
        if baseline_input_shape is None:
            raise CostError("baseline_input_shape: required with a baseline model")
        base_model, base_shape = baseline, baseline_input_shape
    return qa_score_of(model_metrics(model, input_shape), model_metrics(base_model, base_shape))


def qa_score_of(mine: ModelMetrics, base: ModelMetrics) -> float:
    """:func:`qa_score` from already measured figures (e.g. a baseline's, measured once for many models)."""
    return 0.5 * mine.bops / base.bops + 0.5 * mine.weight_bits / base.weight_bits
