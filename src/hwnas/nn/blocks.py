"""Composite blocks built from hwnas layers: models beyond a chain (docs/models.md).

Contract: a block is a plain ``nn.Module`` whose leaves are hwnas layers and whose ``forward`` uses only the
functional operations the export graph traces (:data:`hwnas.export.graph.SUPPORTED_FUNCTIONS`), so every
exporter, cost model and the NumPy reference read it through :func:`hwnas.export.graph.extract`.

* :class:`QResidualBlock` — ``relu(conv2(relu(conv1(x))) + skip(x))`` in 1-D or 2-D with "same" padding
  (the 2-D form is DeepRx's building block). ``skip`` is the identity when the channel counts agree, else a
  1×1 convolution. The sum is exact in fixed point (the operands are aligned on the finer grid, one more
  integer bit); it is quantized by the output activation's input quantizer. ``separable=True`` makes each
  convolution depthwise-separable: a depthwise ``k``-wide convolution (``groups = channels``) then a pointwise
  1×1 one, the depthwise output quantized at the block's activation format (as the search space's separable
  blocks do) — ``k²·C + C²`` weights instead of ``k²·C²``.
"""

from __future__ import annotations

import torch
from torch import nn

from .activation import QActivation
from .base import QuantizerSpec
from .layers import DEFAULT_ACTIVATION, DEFAULT_BIAS, DEFAULT_WEIGHT, QConv1d, QConv2d

__all__ = ["QResidualBlock"]


class QResidualBlock(nn.Module):
    """Residual block ``relu(conv2(relu(conv1(x))) + skip(x))`` (module docstring).

    Args:
        dims: 1 or 2 (``QConv1d`` or ``QConv2d``).
        in_channels, out_channels: channel counts; they differ → a 1×1 convolution on the skip path.
        kernel_size: odd kernel of both convolutions ("same" padding, ``dilation`` included).
        input_quantizer: input quantizer of ``conv1`` and of the skip convolution (the block's input).
        activation_quantizer: input quantizer of ``conv2`` and of the output activation (which quantizes
            the sum).
        weight_quantizer, bias_quantizer: of every convolution.
        batch_norm: fuse a BatchNorm into each convolution (fold before export: :func:`hwnas.nn.fold_batchnorm`).
        separable: each of the two convolutions as depthwise ``kernel_size`` + pointwise 1×1 (``nn.Sequential``
            of the two); the depthwise output is quantized by ``activation_quantizer``'s spec.
    """

    def __init__(self, dims: int, in_channels: int, out_channels: int, kernel_size: int = 3, *, dilation: int = 1,
                 input_quantizer: QuantizerSpec = DEFAULT_ACTIVATION,
                 activation_quantizer: QuantizerSpec = DEFAULT_ACTIVATION,
                 weight_quantizer: QuantizerSpec = DEFAULT_WEIGHT, bias_quantizer: QuantizerSpec = DEFAULT_BIAS,
                 batch_norm: bool = False, separable: bool = False) -> None:
        super().__init__()
        if dims not in (1, 2):
            raise ValueError(f"dims: 1 or 2, got {dims}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: an odd size keeps the shape ('same' padding), got {kernel_size}")
        conv = QConv1d if dims == 1 else QConv2d
        pad = dilation * (kernel_size - 1) // 2
        wq = {"weight_quantizer": weight_quantizer, "bias_quantizer": bias_quantizer, "batch_norm": batch_norm}
        def spatial(c_in: int, c_out: int, iq: QuantizerSpec) -> nn.Module:
            if not separable:
                return conv(c_in, c_out, kernel_size, padding=pad, dilation=dilation, input_quantizer=iq, **wq)
            return nn.Sequential(
                conv(c_in, c_in, kernel_size, padding=pad, dilation=dilation, groups=c_in, input_quantizer=iq,
                     **wq),
                conv(c_in, c_out, 1, input_quantizer=activation_quantizer, **wq))

        self.separable = separable
        self.conv1 = spatial(in_channels, out_channels, input_quantizer)
        self.act1 = QActivation("relu")
        self.conv2 = spatial(out_channels, out_channels, activation_quantizer)
        self.skip = (conv(in_channels, out_channels, 1, input_quantizer=input_quantizer, **wq)
                     if in_channels != out_channels else None)
        self.act2 = QActivation("relu", input_quantizer=activation_quantizer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block on a batch (N, C, L) or (N, C, H, W)."""
        h = self.conv2(self.act1(self.conv1(x)))
        s = x if self.skip is None else self.skip(x)
        return self.act2(h + s)
