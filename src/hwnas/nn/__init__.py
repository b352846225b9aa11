"""Quantized layers that carry their quantizers and report their own MACs, BOPs and EBOPs.

Layers: :class:`QLinear`, :class:`QConv1d`, :class:`QConv2d` (``groups`` for depthwise),
:class:`QActivation`, :class:`QMaxPool1d`/``2d``, :class:`QAvgPool1d`/``2d``, ``Flatten`` (torch's), the
:class:`QResidualBlock` (models beyond a chain: docs/models.md), :class:`QSoftmax` and :class:`QLayerNorm`
(hls4ml's fixed-point algorithms, exact: docs/models.md), and
:func:`fold_batchnorm` for BatchNorm folding. Model-level figures: :func:`ebops` (differentiable),
:func:`bops`, :func:`macs`, :func:`weight_bits`, :func:`sparsity`, :func:`layer_costs`,
:func:`bit_histogram`, and the HGQ loss term :func:`regularization`. :func:`set_quantizers` swaps the
quantizers of every layer at once (post-training quantization of a trained model). :func:`convert` brings
an existing plain-torch model into hwnas (:class:`ConversionError` for what has no equivalent; docs/models.md).
:func:`to_learnable` turns a fixed-precision model's static quantizers into HGQ's learnable per-parameter ones.
"""

from torch.nn import Flatten

from .activation import QActivation, QAvgPool1d, QAvgPool2d, QMaxPool1d, QMaxPool2d
from .base import FLOAT_BITS, QLayer, QuantizerSpec, make_quantizer, set_quantizers
from .blocks import QResidualBlock
from .convert import ConversionError, convert
from .fold import fold_batchnorm
from .hgq import to_learnable
from .layers import DEFAULT_ACTIVATION, DEFAULT_BIAS, DEFAULT_WEIGHT, QConv1d, QConv2d, QLinear
from .metrics import (
    LayerCost,
    bit_histogram,
    bops,
    ebops,
    layer_costs,
    macs,
    regularization,
    sparsity,
    weight_bits,
)
from .normalization import FixedType, QLayerNorm, QSoftmax

__all__ = [
    "DEFAULT_ACTIVATION",
    "DEFAULT_BIAS",
    "DEFAULT_WEIGHT",
    "FLOAT_BITS",
    "ConversionError",
    "FixedType",
    "Flatten",
    "LayerCost",
    "QActivation",
    "QAvgPool1d",
    "QAvgPool2d",
    "QConv1d",
    "QConv2d",
    "QLayer",
    "QLayerNorm",
    "QLinear",
    "QMaxPool1d",
    "QMaxPool2d",
    "QResidualBlock",
    "QSoftmax",
    "QuantizerSpec",
    "bit_histogram",
    "bops",
    "convert",
    "ebops",
    "fold_batchnorm",
    "layer_costs",
    "macs",
    "make_quantizer",
    "regularization",
    "set_quantizers",
    "sparsity",
    "to_learnable",
    "weight_bits",
]
