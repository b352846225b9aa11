"""Quantized compute layers: QLinear, QConv1d, QConv2d (grouped/depthwise).

Each layer quantizes its input, weight and bias with its own quantizers, runs the float op on the
quantized values (exact for fixed-point operands as long as the accumulation fits the float mantissa)
and optionally quantizes its output. Defaults follow HGQ: learnable per-parameter fixed-point weights
(8-bit initial width, round-to-nearest, WRAP with the integer bits re-derived from the weight on every
call, so weights never clip), learnable per-parameter inputs (8-bit initial width, saturation with
trainable integer bits), learnable per-parameter bias (12-bit initial width), no output quantizer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import QLayer, QuantizerSpec, bits_of

__all__ = ["DEFAULT_ACTIVATION", "DEFAULT_BIAS", "DEFAULT_WEIGHT", "QConv1d", "QConv2d", "QLinear"]

DEFAULT_WEIGHT: dict = {"kind": "fixed", "bits": 8, "granularity": "parameter", "round_mode": "RND",
                        "overflow_mode": "WRAP", "learnable": True}
DEFAULT_BIAS: dict = {"kind": "fixed", "bits": 12, "granularity": "parameter", "round_mode": "RND",
                      "overflow_mode": "WRAP", "learnable": True}
DEFAULT_ACTIVATION: dict = {"kind": "fixed", "bits": 8, "granularity": "parameter", "round_mode": "RND",
                            "overflow_mode": "SAT", "learnable": True}


class _QWeighted(QLayer):
    """Shared cost formulas of weight layers; subclasses provide ``_op(x, w)`` without bias."""

    def _op(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _out_positions(self) -> int:
        return 1

    def _bits_in(self, upstream: torch.Tensor | None) -> torch.Tensor:
        return bits_of(self.input_quantizer, self._require_shape(), upstream)

    def macs(self) -> int:
        """Multiplications per sample with a dense (unpruned) weight."""
        self._require_shape()
        w = self.weight
        return int(self._out_positions() * w.shape[0] * math.prod(w.shape[1:]))

    def ebops(self, upstream: torch.Tensor | None = None) -> torch.Tensor:
        """Σ b_x·b_w over every multiplication plus Σ max(b_acc, b_bias) over the bias additions."""
        bx = self._bits_in(upstream)
        bw = bits_of(self.weight_quantizer, tuple(self.weight.shape))
        dtype = bw.dtype if bw.is_floating_point() else torch.float32
        mul = self._op(bx.to(dtype).unsqueeze(0), bw.to(dtype)).sum()
        if self.bias is None:
            return mul
        bb = bits_of(self.bias_quantizer, tuple(self.bias.shape)).to(dtype)
        # accumulator width: at least the widest product reaching each output
        bacc = bw.reshape(bw.shape[0], -1).amax(dim=1) + bx.max()
        return mul + torch.maximum(bacc, bb).sum() * self._out_positions()

    def bops(self, upstream: torch.Tensor | None = None) -> float:
        """MACs × widest weight × widest input."""
        bx = float(self._bits_in(upstream).detach().max())
        bw = float(bits_of(self.weight_quantizer, tuple(self.weight.shape)).detach().max())
        return float(self.macs()) * bw * bx


class QLinear(_QWeighted, nn.Linear):
    """``nn.Linear`` with input/weight/bias/output quantizers (see :mod:`hwnas.nn.base`)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        input_quantizer: QuantizerSpec = DEFAULT_ACTIVATION,
        weight_quantizer: QuantizerSpec = DEFAULT_WEIGHT,
        bias_quantizer: QuantizerSpec = DEFAULT_BIAS,
        output_quantizer: QuantizerSpec = None,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias)
        self._init_quantizers(input_quantizer, weight_quantizer, bias_quantizer, output_quantizer,
                              input_shape=(in_features,))

    def _op(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.linear(x, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Quantized ``x @ W.T + b``."""
        x = self._qin(x)
        return self._qout(F.linear(x, self.quantized_weight(), self.quantized_bias()))


class _QConvNd(_QWeighted):
    _nd = 0

    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return self._conv_forward(x, w, b)  # type: ignore[attr-defined]

    def _op(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self._conv(x, w, None)

    def _out_positions(self) -> int:
        shape = self._require_shape()
        spatial = shape[1:]
        out = 1
        for d, n in enumerate(spatial):
            pad = self.padding[d] if isinstance(self.padding, tuple) else 0  # type: ignore[attr-defined]
            if self.padding == "same":  # type: ignore[attr-defined]
                size = n
            else:
                k = self.kernel_size[d]  # type: ignore[attr-defined]
                s = self.stride[d]  # type: ignore[attr-defined]
                dil = self.dilation[d]  # type: ignore[attr-defined]
                size = (n + 2 * pad - dil * (k - 1) - 1) // s + 1
            out *= size
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Quantized convolution."""
        x = self._qin(x)
        return self._qout(self._conv(x, self.quantized_weight(), self.quantized_bias()))


class QConv1d(_QConvNd, nn.Conv1d):
    """``nn.Conv1d`` (groups supported: ``groups=in_channels`` is depthwise) with quantizer slots."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int | str = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        input_quantizer: QuantizerSpec = DEFAULT_ACTIVATION,
        weight_quantizer: QuantizerSpec = DEFAULT_WEIGHT,
        bias_quantizer: QuantizerSpec = DEFAULT_BIAS,
        output_quantizer: QuantizerSpec = None,
        input_shape: tuple[int, ...] | None = None,
    ) -> None:
        nn.Conv1d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        self._init_quantizers(input_quantizer, weight_quantizer, bias_quantizer, output_quantizer, input_shape)


class QConv2d(_QConvNd, nn.Conv2d):
    """``nn.Conv2d`` (groups supported: ``groups=in_channels`` is depthwise) with quantizer slots."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        input_quantizer: QuantizerSpec = DEFAULT_ACTIVATION,
        weight_quantizer: QuantizerSpec = DEFAULT_WEIGHT,
        bias_quantizer: QuantizerSpec = DEFAULT_BIAS,
        output_quantizer: QuantizerSpec = None,
        input_shape: tuple[int, ...] | None = None,
    ) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        self._init_quantizers(input_quantizer, weight_quantizer, bias_quantizer, output_quantizer, input_shape)
