"""Post-training quantization of a trained float model (seed 002: PTQ of a CNN neural receiver).

:func:`post_training_quantize` copies a trained model and quantizes its weights — and optionally the
inputs of every layer — with scaled integers (int8/int4/…, symmetric, per-tensor or per-channel) or fp16,
calibrating activation ranges on a configurable number of samples; it reports the metric before and
after and a model-size table computed from what would be stored: integer codes at ``b`` bits, one
float32 scale (and zero point, if asymmetric) per group, biases and BatchNorm/LayerNorm parameters kept
in float32. :func:`layer_sensitivity` quantizes one layer at a time (the seed's motivation figure) and
:func:`weight_statistics` describes each layer's weight distribution.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from hwnas.nn import QLayer, set_quantizers
from hwnas.quant import Float16Quantizer, QuantizationError, ScaledIntQuantizer, calibrate

from .trainer import TrainError

__all__ = [
    "PTQResult",
    "SizeRow",
    "layer_sensitivity",
    "post_training_quantize",
    "size_table",
    "weight_statistics",
]

Metric = Callable[[nn.Module], float]
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)


def _weight_spec(bits: int | str, granularity: str, symmetric: bool) -> dict:
    if bits == "fp16":
        return {"kind": "fp16"}
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TrainError(f"weight_bits: expected an integer bit-width or 'fp16', got {bits!r}")
    return {"kind": "scaled", "bits": bits, "granularity": granularity, "symmetric": symmetric}


@dataclass(frozen=True)
class SizeRow:
    """Storage of one tensor of the quantized model."""

    name: str
    kind: str  # weight | bias | norm
    elements: int
    bits_per_element: float
    overhead_bits: int  # scales and zero points
    float_bits: int

    @property
    def bits(self) -> float:
        """Total stored bits (elements × bits + overhead)."""
        return self.elements * self.bits_per_element + self.overhead_bits

    def as_dict(self) -> dict:
        """Plain dict for tables."""
        return asdict(self) | {"bits": self.bits}


def size_table(model: nn.Module) -> list[SizeRow]:
    """One row per stored tensor: weights/biases of hwnas layers (by their quantizers) and norm layers.

    A scaled-int weight costs ``bits`` per element plus 32 bits per scale (and per zero point when
    asymmetric); fp16 costs 16; an unquantized tensor 32. Norm-layer parameters are kept in float32.
    """
    rows: list[SizeRow] = []
    for name, mod in model.named_modules():
        if isinstance(mod, QLayer):
            for kind in ("weight", "bias"):
                p = getattr(mod, kind, None)
                if p is None:
                    continue
                q = getattr(mod, f"{kind}_quantizer")
                n = p.numel()
                if q is None:
                    rows.append(SizeRow(f"{name}.{kind}", kind, n, 32.0, 0, 32 * n))
                elif isinstance(q, ScaledIntQuantizer):
                    if q.scale is None:
                        with torch.no_grad():
                            q(p)
                    groups = q.scale.numel()
                    overhead = 32 * groups * (1 if q.symmetric else 2)
                    rows.append(SizeRow(f"{name}.{kind}", kind, n, float(q.bits), overhead, 32 * n))
                elif isinstance(q, Float16Quantizer):
                    rows.append(SizeRow(f"{name}.{kind}", kind, n, 16.0, 0, 32 * n))
                else:  # fixed point: exact per-element widths, no scales
                    width = float(q.element_bits().detach().expand(p.shape).sum())
                    rows.append(SizeRow(f"{name}.{kind}", kind, n, width / n, 0, 32 * n))
        elif isinstance(mod, _NORMS):
            n = sum(t.numel() for t in mod.parameters()) + sum(
                t.numel() for b, t in mod.named_buffers() if b != "num_batches_tracked")
            rows.append(SizeRow(name, "norm", n, 32.0, 0, 32 * n))
    return rows


@dataclass
class PTQResult:
    """A quantized copy of the model, its metric next to the float one, and its size table."""

    model: nn.Module
    float_metric: float
    quant_metric: float
    sizes: list[SizeRow]
    description: str

    @property
    def drop(self) -> float:
        """Float metric minus quantized metric."""
        return self.float_metric - self.quant_metric

    @property
    def weight_compression(self) -> float:
        """float32 bits ÷ stored bits over weights only (codes, without scales)."""
        w = [r for r in self.sizes if r.kind == "weight"]
        return sum(r.float_bits for r in w) / sum(r.elements * r.bits_per_element for r in w)

    @property
    def model_compression(self) -> float:
        """float32 bits ÷ stored bits over every stored tensor, scales and kept float tensors included."""
        return sum(r.float_bits for r in self.sizes) / sum(r.bits for r in self.sizes)

    def table(self) -> str:
        """Markdown size table plus totals."""
        lines = [f"PTQ {self.description}: metric {self.float_metric:.4f} -> {self.quant_metric:.4f} "
                 f"(drop {self.drop:+.4f})", "",
                 "| tensor | kind | elements | bits/element | scale bits | bits | float32 bits |",
                 "|---|---|---:|---:|---:|---:|---:|"]
        for r in self.sizes:
            lines.append(f"| {r.name} | {r.kind} | {r.elements} | {r.bits_per_element:g} | {r.overhead_bits} | "
                         f"{r.bits:,.0f} | {r.float_bits:,} |")
        lines.append(f"\nweights {self.weight_compression:.2f}x smaller; whole model "
                     f"{self.model_compression:.2f}x smaller")
        return "\n".join(lines)


def post_training_quantize(
    model: nn.Module,
    metric: Metric,
    calibration_data: torch.Tensor,
    *,
    weight_bits: int | str = 8,
    granularity: str = "channel",
    symmetric: bool = True,
    activation_bits: int | str | None = None,
    activation_calibration: str = "percentile",
    calibration_size: int = 1024,
    output_bits: int | None = None,
) -> PTQResult:
    """Quantize a copy of the trained ``model``; ``metric(model) -> float`` scores it (higher is better).

    Weights of every hwnas layer get ``weight_bits`` (``int`` or ``"fp16"``) with ``granularity``
    ``"tensor"`` or ``"channel"`` scales; biases stay float32. With ``activation_bits`` every layer input is
    quantized too (per-tensor scales) and calibrated on the first ``calibration_size`` samples of
    ``calibration_data`` by ``activation_calibration`` (``minmax``/``percentile``/``mse``). With ``output_bits``
    the last layer's output is quantized too (per-tensor, calibrated the same way): integer logits, as an
    integer-only deployment returns them, which also makes exported artefacts bit-exact (a float output
    after non-power-of-two scales depends on the summation order).

    Everything runs on ``model``'s device (the quantized copy is made there; ``calibration_data`` may be on the
    CPU: each batch is moved).
    """
    if granularity not in ("tensor", "channel"):
        raise TrainError(f"granularity: expected 'tensor' or 'channel', got {granularity!r}")
    if isinstance(calibration_size, bool) or not isinstance(calibration_size, int) or calibration_size < 1:
        raise TrainError(f"calibration_size: must be a positive integer, got {calibration_size!r}")
    float_metric = metric(model)
    q = copy.deepcopy(model)
    try:
        set_quantizers(q, weight=_weight_spec(weight_bits, granularity, symmetric), bias=None)
        desc = f"weights {'fp16' if weight_bits == 'fp16' else f'int{weight_bits}'} per-{granularity}"
        if activation_bits is not None:
            act = ({"kind": "fp16"} if activation_bits == "fp16" else
                   {"kind": "scaled", "bits": activation_bits, "calibration": activation_calibration})
            if act["kind"] == "scaled" and (isinstance(activation_bits, bool) or not isinstance(activation_bits, int)):
                raise TrainError(f"activation_bits: expected an integer or 'fp16', got {activation_bits!r}")
            set_quantizers(q, input=act)
            desc += f", activations {'fp16' if activation_bits == 'fp16' else f'int{activation_bits}'}"
        if output_bits is not None:
            if isinstance(output_bits, bool) or not isinstance(output_bits, int) or output_bits < 2:
                raise TrainError(f"output_bits: expected an integer >= 2, got {output_bits!r}")
            last = [m for m in q.modules() if isinstance(m, QLayer)][-1:]
            if not last:
                raise TrainError("model: no hwnas layer whose output could be quantized")
            set_quantizers(last[0], output={"kind": "scaled", "bits": output_bits,
                                            "calibration": activation_calibration})
            desc += f", output int{output_bits}"
        if activation_bits is not None or output_bits is not None:
            calibrate(q, calibration_data[:calibration_size])
    except QuantizationError as err:
        raise TrainError(str(err)) from err
    return PTQResult(q, float_metric, metric(q), size_table(q), desc)


def layer_sensitivity(model: nn.Module, metric: Metric, bits: int = 4, granularity: str = "tensor") -> list[dict]:
    """Metric when only one layer's weights are quantized to ``bits`` (all others float), for every layer."""
    rows = []
    names = [n for n, m in model.named_modules() if isinstance(m, QLayer) and getattr(m, "weight", None) is not None]
    for name in names:
        q = copy.deepcopy(model)
        layer = q.get_submodule(name)
        set_quantizers(layer, weight=_weight_spec(bits, granularity, True))
        rows.append({"layer": name, "bits": bits, "metric": metric(q)})
    return rows


def weight_statistics(model: nn.Module) -> list[dict]:
    """Per layer: count, min, max, mean, std, max|w|/std (dynamic range) and excess kurtosis of the weights."""
    rows = []
    for name, mod in model.named_modules():
        w = getattr(mod, "weight", None) if isinstance(mod, QLayer) else None
        if w is None:
            continue
        v = w.detach().double().flatten()
        std = float(v.std()) if v.numel() > 1 else 0.0
        kurt = float(((v - v.mean()) ** 4).mean() / std**4 - 3) if std > 0 else math.nan
        rows.append({"layer": name, "count": v.numel(), "min": float(v.min()), "max": float(v.max()),
                     "mean": float(v.mean()), "std": std,
                     "range_over_std": float(v.abs().max()) / std if std > 0 else math.inf,
                     "excess_kurtosis": kurt})
    return rows
