"""Model-level cost figures summed over the quantized layers of a network.

A layer without an input quantizer is charged the width of the activation reaching it: the output width of
its PRODUCER in the model's data-flow graph (a :func:`hwnas.export.graph.trace` of ``forward``), or 32 bits
for float data. Between layers, ``x + y`` carries one bit more than its wider operand, ``torch.cat`` the
widest operand, and everything else (ReLU, flatten, reshape, a global mean, torch modules other than hwnas
layers) passes its input's width through; an unquantized operand makes the result float. For an
``nn.Sequential`` this is module order. The trace is cached per model object (weakly, keyed by the
model; rebuilt when its module structure or training mode changes), so the differentiable EBOPs of a training
step cost no more than before; a model whose ``forward`` torch.fx cannot trace falls back to module-definition
order (the order of ``model.modules()``). Layers are visited once each, in call order. All figures are per
inference sample.

Only hwnas layers are counted. A plain torch compute layer (``nn.Linear``, ``nn.Conv*``, ``nn.ConvTranspose*``,
``nn.Bilinear``, recurrent layers, ``nn.MultiheadAttention``) would otherwise be left out and a model of them
priced at 0 MACs/BOPs: the cost figures here (:func:`macs`, :func:`bops`, :func:`weight_bits`, :func:`sparsity`,
:func:`layer_costs`, :func:`bit_histogram`, and so :func:`hwnas.cost.model_metrics`) raise
:class:`~hwnas.nn.ConversionError` instead, naming the first such layer and pointing to :func:`hwnas.nn.convert`.
:func:`ebops` and :func:`regularization` are training terms (the trainer records EBOPs every epoch, of plain
torch models too): they sum the hwnas layers' learnable figures, 0 where there are none.
"""

from __future__ import annotations

import functools
import weakref
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from torch import nn

from hwnas.quant import Quantizer

from .base import QLayer, module_device

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

_INPUT = "input"


@dataclass(frozen=True)
class _Step:
    """One value of the data-flow graph: how it is made (``op``) from which values (``srcs``)."""

    out: str
    op: str  # layer | pass | add | cat | float
    srcs: tuple[str, ...] = ()
    layer: str = ""  # dotted module name (op == "layer")
    first: bool = True  # the layer's first call (later calls of a shared layer are not counted again)


_FLOWS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, tuple[_Step, ...] | None]] = weakref.WeakKeyDictionary()


def _build_flow(model: nn.Module) -> tuple[_Step, ...] | None:
    """The data-flow steps of ``model``'s forward, or None when torch.fx cannot trace it."""
    from hwnas.export.errors import ExportError
    from hwnas.export.graph import op_kind, trace

    try:
        gm = trace(model)
    except ExportError:
        return None
    steps: list[_Step] = []
    name: dict[torch.fx.Node, str] = {}
    called: set[str] = set()
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            name[n] = _INPUT if _INPUT not in name.values() else n.name
            continue
        if n.op == "output":
            break
        name[n] = n.name
        srcs = tuple(name[a] for a in n.all_input_nodes if a in name)
        if n.op == "call_module":
            target = str(n.target)
            if isinstance(gm.get_submodule(target), QLayer):
                steps.append(_Step(n.name, "layer", srcs[:1], target, target not in called))
                called.add(target)
            else:  # torch modules between layers pass the width through, as in module order
                steps.append(_Step(n.name, "pass", srcs[:1]))
            continue
        kind = op_kind(n) if n.op in ("call_function", "call_method") else None
        if kind == "add" and len(srcs) > 1:
            steps.append(_Step(n.name, "add", srcs))
        elif kind == "cat":
            parts = n.args[0] if n.args else n.kwargs.get("tensors", ())
            steps.append(_Step(n.name, "cat", tuple(name[p] for p in parts if p in name)))
        elif n.op == "get_attr" or not srcs:
            steps.append(_Step(n.name, "float"))
        else:
            steps.append(_Step(n.name, "pass", srcs[:1]))
    return tuple(steps)


def _flow(model: nn.Module, modules: dict[str, nn.Module]) -> tuple[_Step, ...] | None:
    """The cached data-flow steps of ``model`` (None: untraceable, or a single layer: walk in module order)."""
    from hwnas.export.graph import is_layer

    if is_layer(model):
        return None
    key = (model.training, *((n, type(m)) for n, m in modules.items()))
    hit = _FLOWS.get(model)
    if hit is not None and hit[0] == key:
        return hit[1]
    flow = _build_flow(model)
    _FLOWS[model] = (key, flow)
    return flow


def _walk_modules(model: nn.Module) -> Iterator[tuple[str, QLayer, torch.Tensor | None]]:
    """Module-definition order (the fallback for a forward torch.fx cannot trace)."""
    prev: QLayer | None = None
    prev_up: torch.Tensor | None = None
    for name, mod in model.named_modules():
        if not isinstance(mod, QLayer):
            continue
        up = prev.output_bits(prev_up) if (prev is not None and mod.input_quantizer is None) else None
        yield name or type(mod).__name__, mod, up
        prev, prev_up = mod, up


def _widest(widths: list[torch.Tensor | None]) -> torch.Tensor | None:
    if any(w is None for w in widths):
        return None
    return functools.reduce(torch.maximum, [torch.as_tensor(w) for w in widths])  # type: ignore[misc]


_PLAIN_COMPUTE = (nn.Linear, nn.Bilinear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                  nn.ConvTranspose3d, nn.RNNBase, nn.MultiheadAttention)
"""Torch layers that multiply-accumulate: uncounted unless they are hwnas layers (QLinear subclasses nn.Linear)."""


def _refuse_plain(modules: dict[str, nn.Module]) -> None:
    """Raise for the first plain torch compute layer: its MACs would be counted as 0 (module docstring)."""
    for name, mod in modules.items():
        if isinstance(mod, _PLAIN_COMPUTE) and not isinstance(mod, QLayer):
            from .convert import ConversionError

            where = f"layer {name!r}" if name else "the model"
            raise ConversionError(
                f"{where} is a plain torch.nn.{type(mod).__name__}: hwnas counts MACs/BOPs/EBOPs only in hwnas "
                "layers, so it would count as 0; convert the model first with hwnas.nn.convert(model) "
                "(docs/models.md)")


def _walk(model: nn.Module, strict: bool = True) -> Iterator[tuple[str, QLayer, torch.Tensor | None]]:
    """Yield (name, layer, upstream width) for every QLayer, in call order along the data flow.

    The upstream width (the producer's output width) is only computed for layers without an input quantizer
    (the only ones that use it), which keeps the differentiable EBOPs graph small. ``strict``: a plain torch
    compute layer raises (:func:`_refuse_plain`) instead of being left out.
    """
    modules = dict(model.named_modules())
    if strict:
        _refuse_plain(modules)
    flow = _flow(model, modules)
    if flow is None:
        yield from _walk_modules(model)
        return
    layers = {s.out: modules[s.layer] for s in flow if s.op == "layer"}
    # which widths are needed: a layer without an input quantizer reads its producer's, and so on upstream
    needed: set[str] = set()
    for s in reversed(flow):
        if s.op == "layer":
            if layers[s.out].input_quantizer is None:
                needed.update(s.srcs)
        elif s.out in needed:
            needed.update(s.srcs)
    width: dict[str, torch.Tensor | None] = {_INPUT: None}
    for s in flow:
        if s.op == "layer":
            layer = layers[s.out]
            up = width.get(s.srcs[0]) if (s.srcs and layer.input_quantizer is None) else None
            if s.first:
                yield s.layer, layer, up
            if s.out in needed:
                width[s.out] = layer.output_bits(up)
        elif s.out in needed:
            if s.op == "pass":
                width[s.out] = width.get(s.srcs[0]) if s.srcs else None
            elif s.op == "add":
                w = _widest([width.get(x) for x in s.srcs])
                width[s.out] = None if w is None else w + 1
            elif s.op == "cat":
                width[s.out] = _widest([width.get(x) for x in s.srcs])
            else:
                width[s.out] = None


def ebops(model: nn.Module) -> torch.Tensor:
    """Effective bit operations of the whole model (HGQ eq. 11), differentiable in the bit-widths.

    A training term: plain torch layers are left out (module docstring), unlike :func:`macs`/:func:`bops`.
    """
    dev = module_device(model)
    walked = _walk(model, strict=False)  # the trainer records it for plain torch models too
    terms = [layer.ebops(up).to(dev) for _, layer, up in walked]  # parameterless layers report CPU scalars
    return torch.stack(terms).sum() if terms else torch.zeros((), device=dev)


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
    reg = beta * ebops(model) if beta else torch.zeros((), device=module_device(model))
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
    """One :class:`LayerCost` row per quantized layer, in call order (module order for a chain)."""
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
