"""Default baseline models of the built-in tasks, built from hwnas layers with static fixed-point quantizers.

Every baseline quantizes weights and layer inputs to ``bits`` bits (tensor-wise, static, RND/SAT, the
integer bits taken from the tensor's range) so it has well-defined BOPs/W-bits for QA-Score-style
comparisons; pass ``bits=None`` for a float model with the same architecture.
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

import hwnas.nn as hn
from hwnas.cost.metrics import vgg10_amc

__all__ = ["amc_vgg", "image_cnn", "mlp"]


def _q(bits: int | None) -> dict[str, Any] | None:
    if bits is None:
        return None
    return {"bits": bits, "learnable": False, "granularity": "tensor", "round_mode": "RND", "overflow_mode": "SAT"}


def _qargs(bits: int | None) -> dict[str, Any]:
    return {"input_quantizer": _q(bits), "weight_quantizer": _q(bits), "bias_quantizer": None}


def mlp(input_shape: tuple[int, ...], n_classes: int, hidden: tuple[int, ...] = (64, 32), bits: int | None = 8
        ) -> nn.Sequential:
    """Flatten → [QLinear → ReLU] per hidden width → QLinear to ``n_classes``."""
    layers: list[nn.Module] = [hn.Flatten()] if len(input_shape) > 1 else []
    fin = math.prod(input_shape)
    for width in hidden:
        layers += [hn.QLinear(fin, width, **_qargs(bits)), hn.QActivation("relu")]
        fin = width
    layers.append(hn.QLinear(fin, n_classes, **_qargs(bits)))
    return nn.Sequential(*layers)


def image_cnn(input_shape: tuple[int, ...], n_classes: int, channels: tuple[int, ...] = (16, 32),
              bits: int | None = 8) -> nn.Sequential:
    """[QConv2d 3×3 → BN → ReLU → MaxPool 2] per channel count → Flatten → QLinear (images (C, H, W))."""
    if len(input_shape) != 3:
        raise ValueError(f"input_shape: image_cnn needs (C, H, W), got {input_shape}")
    cin, h, w = input_shape
    layers: list[nn.Module] = []
    for cout in channels:
        layers += [hn.QConv2d(cin, cout, 3, padding=1, **_qargs(bits)), nn.BatchNorm2d(cout),
                   hn.QActivation("relu"), hn.QMaxPool2d(2)]
        cin, h, w = cout, h // 2, w // 2
    layers += [hn.Flatten(), hn.QLinear(cin * h * w, n_classes, **_qargs(bits))]
    return nn.Sequential(*layers)


def amc_vgg(input_shape: tuple[int, ...], n_classes: int, filters: int = 64, bits: int | None = 8) -> nn.Module:
    """The VGG10 AMC baseline (seed 000, [15]): 7 × [Conv1d k=3 → BN → ReLU → MaxPool 2], 3 dense layers.

    With ``bits=8`` and ``filters=64`` on (2, 1024) frames this is exactly the QA-Score baseline
    :func:`hwnas.cost.metrics.vgg10_amc`. The frame length must be a multiple of 128.
    """
    if len(input_shape) != 2 or input_shape[0] != 2 or input_shape[1] % 128:
        raise ValueError(f"input_shape: amc_vgg needs (2, L) with L a multiple of 128, got {input_shape}")
    if bits is None:
        model = vgg10_amc(filters=filters, bits=8, input_length=input_shape[1], classes=n_classes)
        hn.set_quantizers(model, input=None, weight=None, bias=None)
        return model
    return vgg10_amc(filters=filters, bits=bits, input_length=input_shape[1], classes=n_classes)
