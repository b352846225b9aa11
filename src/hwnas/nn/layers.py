"""Quantized compute layers: QLinear, QConv1d, QConv2d (grouped/depthwise).

Each layer quantizes its input, weight and bias with its own quantizers, runs the float op on the
quantized values (exact for fixed-point operands as long as the accumulation fits the float mantissa)
and optionally quantizes its output. Defaults follow HGQ: learnable per-parameter fixed-point weights
(8-bit initial width, round-to-nearest, WRAP with the integer bits re-derived from the weight on every
call, so weights never clip), learnable per-parameter inputs (8-bit initial width, saturation with
trainable integer bits), learnable per-parameter bias (12-bit initial width), no output quantizer.

Convolutions take ``batch_norm=True`` for a BatchNorm folded into the layer while it trains (fold-aware
quantization-aware training, Jacob et al. 2018): the weight and bias quantizers see the folded values
``w·γ/√(σ²+ε)`` and ``(b − μ)·γ/√(σ²+ε) + β`` — with the batch's statistics in training (the float function
is then exactly conv → BatchNorm, and the running statistics update as BatchNorm's do), the running ones in
eval. So the trained model is the deployed one: :func:`hwnas.nn.fold_batchnorm` turns the layer into a
plain convolution that computes the same values bit for bit, and the exporters read the folded
quantized weight and bias (:meth:`quantized_weight`, :meth:`quantized_bias`). A separate ``nn.BatchNorm``
after a quantized layer can only be folded afterwards, re-quantizing the scaled weights (lossy at low
bit-widths).
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
        return bits_of(self.input_quantizer, self._require_shape(), upstream, device=self.weight.device)

    def macs(self) -> int:
        """Multiplications per sample with a dense (unpruned) weight."""
        self._require_shape()
        w = self.weight
        return int(self._out_positions() * w.shape[0] * math.prod(w.shape[1:]))

    def ebops(self, upstream: torch.Tensor | None = None) -> torch.Tensor:
        """Σ b_x·b_w over every multiplication plus Σ max(b_acc, b_bias) over the bias additions."""
        bx = self._bits_in(upstream)
        bw = bits_of(self.weight_quantizer, tuple(self.weight.shape), device=self.weight.device)
        dtype = bw.dtype if bw.is_floating_point() else torch.float32
        mul = self._op(bx.to(dtype).unsqueeze(0), bw.to(dtype)).sum()
        if self.bias is None:
            return mul
        bb = bits_of(self.bias_quantizer, tuple(self.bias.shape), device=self.weight.device).to(dtype)
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
    bn: nn.Module | None

    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return self._conv_forward(x, w, b)  # type: ignore[attr-defined]

    def _init_batch_norm(self, batch_norm: bool, bias: bool, norm: type[nn.Module]) -> None:
        if batch_norm and not bias:
            raise ValueError("batch_norm=True needs bias=True: the folded BatchNorm shift is the layer's bias")
        self.bn = norm(self.out_channels) if batch_norm else None  # type: ignore[attr-defined]

    def _folded(self, x: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The (weight, bias) with the BatchNorm folded in: batch statistics of ``x`` in training, else running.

        In training the batch's mean and variance of the float convolution are measured (the running
        statistics updated as ``nn.BatchNorm`` updates them) and gradients flow through them, as through
        BatchNorm.
        """
        bn = self.bn
        assert bn is not None and self.bias is not None  # type: ignore[attr-defined]
        if x is not None and self.training and bn.track_running_stats:
            y = self._conv(x, self.weight, self.bias)  # type: ignore[attr-defined]
            dims = [0, *range(2, y.dim())]
            mean, var = y.mean(dims), y.var(dims, unbiased=False)
            with torch.no_grad():
                bn.num_batches_tracked.add_(1)
                momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
                n = y.numel() / y.shape[1]
                bn.running_mean.lerp_(mean.detach(), momentum)
                bn.running_var.lerp_(var.detach() * (n / max(n - 1, 1.0)), momentum)
        else:
            mean, var = bn.running_mean, bn.running_var
        scale = torch.rsqrt(var + bn.eps)
        if bn.affine:
            scale = scale * bn.weight
        shape = (-1,) + (1,) * (self.weight.dim() - 1)  # type: ignore[attr-defined]
        shift = (self.bias - mean) * scale  # type: ignore[attr-defined]
        if bn.affine:
            shift = shift + bn.bias
        return self.weight * scale.reshape(shape), shift  # type: ignore[attr-defined]

    @property
    def fused(self) -> bool:
        """Whether a BatchNorm is fused into this layer (models saved before fusing existed have no ``bn``)."""
        return getattr(self, "bn", None) is not None

    def quantizer_input(self, kind: str) -> torch.Tensor | None:
        """What the ``kind`` quantizer quantizes in eval mode: with a fused BatchNorm, the folded value.

        So :meth:`quantized_weight`/:meth:`quantized_bias` give the folded values with the running statistics.
        """
        if not self.fused:
            return super().quantizer_input(kind)
        return self._folded()[0 if kind == "weight" else 1]

    @torch.no_grad()
    def fold_batch_norm_(self) -> None:
        """Fold the fused BatchNorm into the weight and bias for good (eval values) and drop it; in place."""
        if not self.fused:
            return
        w, b = self._folded()
        self.weight.copy_(w)  # type: ignore[attr-defined]
        self.bias.copy_(b)  # type: ignore[attr-defined]
        self.bn = None

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
        """Quantized convolution (with a fused BatchNorm folded into the weight and bias first)."""
        x = self._qin(x)
        w, b = self._folded(x) if self.fused else (self.weight, self.bias)  # type: ignore[attr-defined]
        return self._qout(self._conv(x, self._quantize("weight", w), self._quantize("bias", b)))


class QConv1d(_QConvNd, nn.Conv1d):
    """``nn.Conv1d`` (groups supported: ``groups=in_channels`` is depthwise) with quantizer slots.

    ``batch_norm=True`` fuses a ``BatchNorm1d`` over the output channels (module docstring).
    """

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
        batch_norm: bool = False,
    ) -> None:
        nn.Conv1d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        self._init_batch_norm(batch_norm, bias, nn.BatchNorm1d)
        self._init_quantizers(input_quantizer, weight_quantizer, bias_quantizer, output_quantizer, input_shape)


class QConv2d(_QConvNd, nn.Conv2d):
    """``nn.Conv2d`` (groups supported: ``groups=in_channels`` is depthwise) with quantizer slots.

    ``batch_norm=True`` fuses a ``BatchNorm2d`` over the output channels (module docstring).
    """

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
        batch_norm: bool = False,
    ) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        self._init_batch_norm(batch_norm, bias, nn.BatchNorm2d)
        self._init_quantizers(input_quantizer, weight_quantizer, bias_quantizer, output_quantizer, input_shape)
