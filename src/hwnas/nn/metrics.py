"""Model-level cost figures summed over the quantized layers of a network.

Layers are visited in module-definition order (the order of ``model.modules()``), which for sequential
networks is data-flow order: a layer without an input quantizer is charged the width of the last
quantized activation before it (or 32 bits for float data). All figures are per inference sample.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from torch import nn

from hwnas.quant import Quantizer

from .base import QLayer

__all__ = [
    "LayerCost",
    "bit_histogram",
    "bops",
    "ebops",
    "layer_costs",
    "macs",
    "regularization",
    "sparsity",
    "weight_bits",
]


def _walk(model: nn.Module) -> Iterator[tuple[str, QLayer, torch.Tensor | None]]:
    """Yield (name, layer, upstream width) for every QLayer in module order.

    The upstream width is only computed for layers without an input quantizer (the only ones that use
    it), which keeps the differentiable EBOPs graph small.
    """
    prev: QLayer | None = None
    prev_up: torch.Tensor | None = None
    for name, mod in model.named_modules():
        if not isinstance(mod, QLayer):
            continue
        up = prev.output_bits(prev_up) if (prev is not None and mod.input_quantizer is None) else None
        yield name or type(mod).__name__, mod, up
        prev, prev_up = mod, up


def ebops(model: nn.Module) -> torch.Tensor:
    """Effective bit operations of the whole model (HGQ eq. 11), differentiable in the bit-widths."""
    terms = [layer.ebops(up) for _, layer, up in _walk(model)]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def bops(model: nn.Module) -> float:
    """Σ MACs × weight bits × activation bits over the layers."""
    return float(sum(layer.bops(up) for _, layer, up in _walk(model)))


def macs(model: nn.Module) -> int:
    """Multiply-accumulates per sample."""
    return int(sum(layer.macs() for _, layer, _ in _walk(model)))


def weight_bits(model: nn.Module) -> float:
    """Σ parameters × bits over weights and biases (pruned elements are free, float counts 32)."""
    return float(sum(layer.weight_bits() for _, layer, _ in _walk(model)))


def sparsity(model: nn.Module) -> float:
    """Fraction of all weight elements (not biases) that quantize to zero."""
    zeros = 0
    total = 0
    with torch.no_grad():
        for _, layer, _ in _walk(model):
            qw = layer.quantized_weight()
            if qw is not None:
                zeros += int((qw == 0).sum())
                total += qw.numel()
    return zeros / total if total else 0.0


def regularization(model: nn.Module, beta: float, gamma: float = 0.0) -> torch.Tensor:
    """HGQ's resource term ``β·EBOPs + γ·Σ bit-widths`` (eq. 12), summed over learnable quantizers."""
    reg = beta * ebops(model) if beta else torch.zeros(())
    if gamma:
        widths = [q.element_bits().sum() for q in model.modules() if isinstance(q, Quantizer) and q.learnable]
        if widths:
            reg = reg + gamma * torch.stack(widths).sum()
    return reg


@dataclass(frozen=True)
class LayerCost:
    """Cost figures of one layer (per sample)."""

    name: str
    type: str
    macs: int
    bops: float
    ebops: float
    weight_bits: float
    params: int
    sparsity: float

    def as_dict(self) -> dict:
        """Plain dict (for tables and JSON)."""
        return asdict(self)


def layer_costs(model: nn.Module) -> list[LayerCost]:
    """One :class:`LayerCost` row per quantized layer, in module order."""
    rows = []
    with torch.no_grad():
        for name, layer, up in _walk(model):
            params = sum(p.numel() for n, p in layer.named_parameters(recurse=False))
            rows.append(LayerCost(name, type(layer).__name__, layer.macs(), layer.bops(up),
                                  float(layer.ebops(up)), layer.weight_bits(), params, layer.sparsity()))
    return rows


def bit_histogram(model: nn.Module, which: str = "weight") -> dict[int, int]:
    """Count of elements per bit-width: ``which`` is ``"weight"`` (weights and biases) or ``"activation"``.

    Activation counts are per element of one sample (the input shape each layer last saw).
    """
    if which not in ("weight", "activation"):
        raise ValueError(f"which: expected 'weight' or 'activation', got {which!r}")
    counts: Counter[int] = Counter()
    with torch.no_grad():
        for _, layer, _ in _walk(model):
            if which == "weight":
                pairs = [(layer.weight_quantizer, getattr(layer, "weight", None)),
                         (layer.bias_quantizer, getattr(layer, "bias", None))]
                for q, p in pairs:
                    if q is not None and p is not None:
                        counts.update(q.element_bits().expand(p.shape).round().int().flatten().tolist())
            elif layer.input_quantizer is not None and layer.input_shape is not None:
                b = layer.input_quantizer.element_bits().expand(layer.input_shape)
                counts.update(b.round().int().flatten().tolist())
    return dict(sorted(counts.items()))
