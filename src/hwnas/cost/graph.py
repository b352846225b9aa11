"""Walk a hwnas model into a list of layer descriptions (shapes, operand widths) for the cost models.

A zero input of ``input_shape`` (one sample) is pushed through the model with forward hooks, so every
layer's input and output shapes are known; widths come from the same quantizer objects the layers use
(the one source of numeric truth): weights from the weight quantizer's widest element, activations
from the layer's input quantizer or, failing that, the width flowing out of the previous layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hwnas.nn import FLOAT_BITS, QActivation, QLayer
from hwnas.nn.activation import _QPool
from hwnas.nn.layers import QConv1d, QConv2d, QLinear
from hwnas.quant import Quantizer

from .catalog import CostError

__all__ = ["LayerInfo", "describe_model"]


@dataclass(frozen=True)
class LayerInfo:
    """One layer as the cost models see it (shapes exclude the batch dimension)."""

    name: str
    kind: str  # conv | linear | act | pool | flatten | norm
    module: nn.Module
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    weight_bits: float  # widest weight element (0 if none)
    act_bits: float  # width of the input activation
    out_bits: float  # width of the output as the next layer sees it
    macs: int


def _kind(mod: nn.Module) -> str | None:
    if isinstance(mod, QConv1d | QConv2d):
        return "conv"
    if isinstance(mod, QLinear):
        return "linear"
    if isinstance(mod, QActivation | nn.ReLU):
        return "act"
    if isinstance(mod, _QPool):
        return "pool"
    if isinstance(mod, nn.Flatten):
        return "flatten"
    if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d):
        return "norm"
    return None


def describe_model(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerInfo]:
    """Layer descriptions in execution order; an unsupported leaf module is an error naming it."""
    seen: list[tuple[str, nn.Module, tuple[int, ...], tuple[int, ...]]] = []
    handles = []
    for name, mod in model.named_modules():
        if not name:
            continue
        if _kind(mod) is None:
            if isinstance(mod, Quantizer | nn.Identity | nn.Dropout) or any(True for _ in mod.children()):
                continue  # quantizers live inside layers; containers are walked through
            raise CostError(f"layer {name}: {type(mod).__name__} has no hardware cost model "
                            "(use the hwnas.nn layers)")

        def hook(m, inp, out, name=name):
            seen.append((name, m, tuple(inp[0].shape[1:]), tuple(out.shape[1:])))

        handles.append(mod.register_forward_hook(hook))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape)))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    infos: list[LayerInfo] = []
    upstream = FLOAT_BITS
    for name, mod, ishape, oshape in seen:
        kind = _kind(mod)
        assert kind is not None
        wb = 0.0
        macs = 0
        if isinstance(mod, QLayer):
            ab = float(mod.input_quantizer.max_bits()) if mod.input_quantizer is not None else upstream
            if getattr(mod, "weight", None) is not None:
                wb = float(mod.weight_quantizer.max_bits()) if mod.weight_quantizer is not None else FLOAT_BITS
                macs = mod.macs()
            ob = mod.output_bits(torch.tensor(ab))
            out_bits = float(ob) if ob is not None else FLOAT_BITS
        else:
            ab = upstream
            out_bits = upstream
        infos.append(LayerInfo(name, kind, mod, ishape, oshape, wb, ab, out_bits, macs))
        upstream = out_bits
    return infos
