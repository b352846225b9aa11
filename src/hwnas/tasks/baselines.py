"""Default baseline models of the built-in tasks, built from hwnas layers with static fixed-point quantizers.

Every baseline quantizes weights and layer inputs to ``bits`` bits (tensor-wise, static, RND/SAT, the
integer bits taken from the tensor's range) so it has well-defined BOPs/W-bits for QA-Score-style
comparisons; pass ``bits=None`` for a float model with the same architecture.

:data:`NAMED` holds the reference models an experiment trains beside its search (``run.baselines``, the
pipeline's ``baselines`` stage): each builds for a task's input shape and class count, or raises
``ValueError`` naming what does not fit. Their definitions and what is guessed: docs/reproductions.md (seed 000).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

import hwnas.nn as hn
from hwnas.cost.metrics import vgg10_amc

__all__ = ["NAMED", "QCNN_BITS", "NamedBaseline", "amc_vgg", "build_named", "image_cnn", "mlp", "vgg10"]


def _q(bits: int | None) -> dict[str, Any] | None:
    if bits is None:
        return None
    return {"bits": bits, "learnable": False, "granularity": "tensor", "round_mode": "RND", "overflow_mode": "SAT"}


def _qargs(bits: int | None, bias_bits: int | None = None) -> dict[str, Any]:
    return {"input_quantizer": _q(bits), "weight_quantizer": _q(bits),
            "bias_quantizer": _q(bias_bits) if bits is not None else None}


def mlp(input_shape: tuple[int, ...], n_classes: int, hidden: tuple[int, ...] = (64, 32), bits: int | None = 8,
        bias_bits: int | None = None) -> nn.Sequential:
    """Flatten → [QLinear → ReLU] per hidden width → QLinear to ``n_classes``.

    ``bias_bits``: a fixed-point bias of that width (the model then exports as is); None: float biases.
    """
    layers: list[nn.Module] = [hn.Flatten()] if len(input_shape) > 1 else []
    fin = math.prod(input_shape)
    for width in hidden:
        layers += [hn.QLinear(fin, width, **_qargs(bits, bias_bits)), hn.QActivation("relu")]
        fin = width
    layers.append(hn.QLinear(fin, n_classes, **_qargs(bits, bias_bits)))
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


QCNN_BITS: dict[str, tuple[int, int]] = {"conv1": (8, 6), "conv": (3, 6), "dense": (2, 6), "output": (5, 6)}
"""(weight bits, input bits) of the QCNN baselines per layer group: the first conv, the other convs, the hidden
dense layers, the output layer. Seed 000 cites QCNN [7] without its bit allocation; this one is guessed: a
simple allocation whose BOPs and weight bits land within 1 % of the seed's Table II for both QCNN-32F and
QCNN-64F (fitted to those cost columns, never to an accuracy; hwnas's W_bits also counts the 16-bit biases)."""


def vgg10(input_shape: tuple[int, ...], n_classes: int, filters: int = 32,
          bits: int | Mapping[str, tuple[int, int]] | None = 8, bias_bits: int = 16) -> nn.Module:
    """VGG10 for AMC as hwnas trains and deploys it: :func:`hwnas.cost.metrics.vgg10_amc`'s layers, deployable.

    BatchNorm is fused into each conv (``batch_norm=True``) and every layer has a ``bias_bits``-bit fixed-point
    bias, so the trained model exports as is. ``bits``: one width for weights and inputs, a mapping of layer
    group (``conv1``, ``conv``, ``dense``, ``output``) to (weight bits, input bits) as :data:`QCNN_BITS`, or None
    for float (float biases too). The frame length must be a multiple of 128.
    """
    if len(input_shape) != 2 or input_shape[0] != 2 or input_shape[1] % 128:
        raise ValueError(f"input_shape: VGG10 needs (2, L) with L a multiple of 128, got {input_shape}")
    one = bits is None or isinstance(bits, int)
    return vgg10_amc(filters=filters, bits=bits if one else None, input_length=input_shape[1], classes=n_classes,
                     layer_bits=None if one else bits, bias_bits=None if bits is None else bias_bits,
                     fuse_batchnorm=True)


@dataclass(frozen=True)
class NamedBaseline:
    """A reference model ``run.baselines`` can name: its builder and what it stands for."""

    name: str
    build: Callable[[tuple[int, ...], int], nn.Module]
    description: str


NAMED: dict[str, NamedBaseline] = {b.name: b for b in (
    NamedBaseline("vgg10-float", lambda s, n: vgg10(s, n, filters=64, bits=None),
                  "VGG10 for AMC with 64 filters in float (O'Shea et al.; seed 000 [15])"),
    NamedBaseline("vgg10-64f-8b", lambda s, n: vgg10(s, n, filters=64, bits=8),
                  "VGG10 with 64 filters, 8-bit weights and inputs: the QA-Score reference of seed 000"),
    NamedBaseline("vgg10-32f-8b", lambda s, n: vgg10(s, n, filters=32, bits=8),
                  "VGG10-32F/8b of seed 000's Tables II and III: 32 filters, 8-bit weights and inputs"),
    NamedBaseline("qcnn-32f", lambda s, n: vgg10(s, n, filters=32, bits=QCNN_BITS),
                  "QCNN-32F of seed 000: VGG10 topology, 32 filters, layer-wise bits (guessed allocation)"),
    NamedBaseline("qcnn-64f", lambda s, n: vgg10(s, n, filters=64, bits=QCNN_BITS),
                  "QCNN-64F of seed 000: VGG10 topology, 64 filters, layer-wise bits (guessed allocation)"),
    NamedBaseline("mlp-32-16-8b", lambda s, n: mlp(s, n, hidden=(32, 16), bits=8, bias_bits=16),
                  "MLP with hidden layers 32-16, 8-bit weights and inputs: SNAC-Pack's qubit-readout baseline "
                  "(seed 004: 800-32-16-2 on a 400-sample window)"),
    NamedBaseline("mlp-64-32-32-8b", lambda s, n: mlp(s, n, hidden=(64, 32, 32), bits=8, bias_bits=16),
                  "MLP with hidden layers 64-32-32, 8-bit weights and inputs: the jet-tagging model of seeds 001 "
                  "and 004 (16-64-32-32-5 on the HLFs)"),
)}
"""The baselines ``run.baselines`` can name (the AMC ones need (2, L) inputs, L a multiple of 128; the MLPs take
any input shape, flattened)."""


def build_named(name: str, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """Build :data:`NAMED` ``name`` for ``input_shape`` / ``n_classes``; ``ValueError`` names what does not fit."""
    if name not in NAMED:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(sorted(NAMED))}")
    return NAMED[name].build(tuple(input_shape), int(n_classes))
