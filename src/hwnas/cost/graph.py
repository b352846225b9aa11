"""Read a hwnas model into layer descriptions (shapes, operand widths, data flow) for the cost models.

The data-flow graph comes from :func:`hwnas.export.graph.trace` (torch.fx with the layers as leaves): each
``call_module`` node is a layer, and the functional operations between layers become entries of their own —
``add`` (an element-wise sum such as a residual connection), ``concat`` (``torch.cat``), ``gpool`` (global
pooling: ``x.mean(spatial axes)`` or an adaptive pool to size 1), ``act`` (``torch.relu``) and ``flatten``
(``torch.flatten``/``view``/``reshape``). Every entry names its producers in ``inputs`` (``"input"`` for the
model input), so a cost model can follow branches and joins. A zero sample of ``input_shape`` is run through
the traced graph once (eval mode) for every shape.

Widths come from the same quantizer objects the layers use (the one source of numeric truth): weights from
the weight quantizer's widest element; the input activation from the layer's input quantizer or, failing
that, the width flowing out of its PRODUCER in the data flow (``out_bits``; :data:`~hwnas.nn.FLOAT_BITS` for
an unquantized value, e.g. a convolution's raw accumulator). The joins:

* ``add``: one adder per output element (per extra operand) at ``act_bits``, the widest operand's width; the
  sum is one bit wider (``out_bits`` = widest operand ``out_bits`` + 1). An operand that is an unquantized
  accumulator is costed (``act_bits``) at the fixed-point width the accumulator really has,
  ``ceil(log2 n_in) + w + a (+1 with a bias)`` (:func:`operand_bits`), while the sum's ``out_bits`` stays
  :data:`~hwnas.nn.FLOAT_BITS` as for any unquantized value (so a consumer sees what :mod:`hwnas.nn.metrics`
  charges it).
* ``concat``: wiring, no compute; ``act_bits``/``out_bits`` the widest operand.
* ``gpool``: ``positions − 1`` adders (or comparators) per channel at the operand width (``act_bits``); the
  average keeps the operand's ``out_bits`` (the division by a power-of-two count is a shift; its extra
  fractional bits are dropped as the consumer's input quantizer would).

The normalization layers of :mod:`hwnas.nn.normalization` are entries of their own: ``softmax`` (``QSoftmax``)
and ``layernorm`` (``QLayerNorm``), with their element counts (``elements``, and ``rows`` of the normalized last
axis), the layer's MACs (softmax: one product per element; LayerNorm: the layer's ``macs()``, gamma included),
``weight_bits`` the gamma width for LayerNorm; the intermediate types and table sizes are on the module.

A leaf module without a cost model (plain ``nn.Linear``, ``nn.Conv2d``, ``nn.GELU``, ...) is an error naming
it — never counted as free — and so is a functional operation outside the list above; a ``forward`` that
torch.fx cannot trace is an error naming the model and the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hwnas.nn import FLOAT_BITS, QActivation, QLayer
from hwnas.nn.activation import _QPool
from hwnas.nn.layers import QConv1d, QConv2d, QLinear
from hwnas.nn.normalization import QLayerNorm, QSoftmax
from hwnas.quant import Quantizer

from .catalog import CostError

__all__ = ["INPUT", "LayerInfo", "critical_path", "describe_model", "operand_bits"]

INPUT = "input"
"""The name of the model input in :attr:`LayerInfo.inputs`."""

_GLOBAL_POOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
_FUNCTION_TYPES = {"add": "Add", "concat": "Concat", "gpool": "GlobalAvgPool", "act": "ReLU", "flatten": "Flatten"}


@dataclass(frozen=True)
class LayerInfo:
    """One layer or functional operation as the cost models see it (shapes exclude the batch dimension)."""

    name: str
    kind: str  # conv | linear | act | pool | flatten | norm | add | concat | gpool | softmax | layernorm
    module: nn.Module | None  # None for a functional operation (torch.relu, x + y, torch.cat, x.mean)
    in_shape: tuple[int, ...]  # of the first input
    out_shape: tuple[int, ...]
    weight_bits: float  # widest weight element (0 if none)
    act_bits: float  # width of the input activation (add/concat/gpool: of the widest operand)
    out_bits: float  # width of the output as the next layer sees it (FLOAT_BITS: unquantized)
    macs: int
    inputs: tuple[str, ...] = (INPUT,)
    """Names of the producing layers/operations (``"input"`` for the model input), one per operand."""

    @property
    def type_name(self) -> str:
        """The module's class name, or ``Add``/``Concat``/``GlobalAvgPool``/``ReLU``/``Flatten`` for a function."""
        return type(self.module).__name__ if self.module is not None else _FUNCTION_TYPES.get(self.kind, self.kind)

    @property
    def elements(self) -> int:
        """Output elements per sample (an add's adders per operand pair, a concat's wires)."""
        return math.prod(self.out_shape)

    @property
    def rows(self) -> int:
        """Rows of the last axis (a softmax's / layer norm's independent normalizations per sample)."""
        return math.prod(self.out_shape[:-1]) if self.out_shape else 1

    @property
    def positions(self) -> int:
        """Spatial positions of the first input (a global pool's positions reduced per channel)."""
        return math.prod(self.in_shape[1:]) if len(self.in_shape) > 1 else 1


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
    if isinstance(mod, _GLOBAL_POOLS):
        return "gpool"
    if isinstance(mod, QSoftmax):
        return "softmax"
    if isinstance(mod, QLayerNorm):
        return "layernorm"
    return None


def _accumulator_bits(li: LayerInfo) -> float:
    """Fixed-point width of a conv/linear layer's unquantized output: ceil(log2 n_in) + w + a (+1 with a bias)."""
    m = li.module
    assert m is not None
    n_in = math.prod(m.weight.shape[1:])
    bias = 1 if getattr(m, "bias", None) is not None else 0
    return math.ceil(math.log2(max(n_in, 1))) + li.weight_bits + li.act_bits + bias


def operand_bits(infos: dict[str, LayerInfo], name: str) -> float:
    """The fixed-point width of the value ``name`` produces, for costing the adders that read it.

    ``out_bits`` where the value is quantized; the accumulator width (:func:`_accumulator_bits`) of a conv/linear
    layer with fixed-point operands and no output quantizer, read through pass-through layers (ReLU, identity,
    pooling, flatten) without quantizers; otherwise :data:`~hwnas.nn.FLOAT_BITS`.
    """
    while name != INPUT:
        li = infos[name]
        if li.out_bits < FLOAT_BITS:
            return li.out_bits
        if li.kind in ("conv", "linear"):
            return _accumulator_bits(li) if max(li.act_bits, li.weight_bits) < FLOAT_BITS else FLOAT_BITS
        if li.kind not in ("act", "pool", "flatten") or not getattr(li.module, "passes_through", True):
            return FLOAT_BITS
        name = li.inputs[0]
    return FLOAT_BITS


def critical_path(cycles: list[int], after: list[tuple[int, ...]]) -> int:
    """Longest path of ``cycles`` through a DAG whose entry ``i`` starts after the entries ``after[i]``.

    The first-sample latency of hardware whose branches run concurrently; for a chain (each entry after the
    previous one) it is the plain sum.
    """
    finish: list[int] = []
    for c, deps in zip(cycles, after, strict=True):
        finish.append(c + max((finish[d] for d in deps), default=0))
    return max(finish, default=0)


def _trace(model: nn.Module) -> torch.fx.GraphModule:
    from hwnas.export.errors import ExportError
    from hwnas.export.graph import trace

    try:
        return trace(model)
    except ExportError as err:
        raise CostError(f"model {type(model).__name__}: the cost models read its data flow with torch.fx, which "
                        f"failed: {err}") from err


def _unsupported(name: str, mod: nn.Module) -> CostError:
    return CostError(f"layer {name}: {type(mod).__name__} has no hardware cost model (use the hwnas.nn layers; "
                     "hwnas.nn.convert turns plain torch layers into them)")


def describe_model(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerInfo]:
    """Layer/operation descriptions in execution (topological) order (module docstring).

    An unsupported leaf module or functional operation is an error naming it; so is a ``forward`` that
    torch.fx cannot trace (naming the model and the reason).
    """
    from hwnas.export.graph import SUPPORTED_FUNCTIONS, ValueRecorder, describe_target, op_kind

    gm = _trace(model)
    # check every leaf before running anything, so the error names the layer (not a shape failure after it)
    for n in gm.graph.nodes:
        if n.op == "call_module":
            mod = gm.get_submodule(str(n.target))
            if _kind(mod) is None and not isinstance(mod, Quantizer | nn.Identity | nn.Dropout):
                raise _unsupported(str(n.target), mod)
    was = model.training
    model.eval()
    try:
        interp = ValueRecorder(gm)
        with torch.no_grad():
            interp.run(torch.zeros((1, *input_shape)))
    finally:
        model.train(was)
    values = interp.values

    def shape(a: Any) -> tuple[int, ...]:
        v = values.get(a)
        return tuple(v.shape[1:]) if isinstance(v, torch.Tensor) else ()

    infos: dict[str, LayerInfo] = {}
    tensor: dict[torch.fx.Node, str] = {}  # fx node -> name of the LayerInfo that produces it

    def unique(name: str) -> str:
        base, k = name, 1
        while name in infos or name == INPUT:
            k += 1
            name = f"{base}#{k}"
        return name

    def source(a: Any, n: torch.fx.Node) -> str:
        if not isinstance(a, torch.fx.Node) or a not in tensor:
            raise CostError(f"{n.name}: {describe_target(n)} with a constant operand ({a!r}) has no hardware cost "
                            "model; fold constants into a layer's weights or bias")
        return tensor[a]

    def bits_in(src: str) -> float:
        return FLOAT_BITS if src == INPUT else infos[src].out_bits

    def add(li: LayerInfo, n: torch.fx.Node) -> None:
        infos[li.name] = li
        tensor[n] = li.name

    for n in gm.graph.nodes:
        if n.op == "placeholder":
            tensor[n] = INPUT
            continue
        if n.op == "output":
            break
        if n.op == "get_attr":
            raise CostError(f"{n.target}: a tensor attribute used directly in forward has no hardware cost model; "
                            "use a layer")
        if n.op == "call_module":
            target = str(n.target)
            mod = gm.get_submodule(target)
            kind = _kind(mod)
            src = source(n.args[0], n) if n.args else INPUT
            if kind is None:  # Quantizer, Identity, Dropout: no hardware of their own (checked above)
                tensor[n] = src
                continue
            ishape, oshape = shape(n.args[0]), shape(n)
            if kind == "gpool" and any(d != 1 for d in oshape[1:]):
                raise CostError(f"layer {target}: {type(mod).__name__} to size {oshape[1:]} has no hardware cost "
                                "model; only global pooling (output size 1) has")
            up = bits_in(src)
            wb, macs = 0.0, 0
            if isinstance(mod, QLayer):
                ab = float(mod.input_quantizer.max_bits()) if mod.input_quantizer is not None else up
                if getattr(mod, "weight", None) is not None:
                    wb = float(mod.weight_quantizer.max_bits()) if mod.weight_quantizer is not None else FLOAT_BITS
                    macs = mod.macs()
                if kind == "softmax":
                    macs = mod.macs()  # exp_res · inv, one per element
                ob = mod.output_bits(torch.tensor(ab))
                out_bits = float(ob.detach()) if ob is not None else FLOAT_BITS
            else:
                ab = out_bits = up
            name = unique(target)
            if kind == "gpool":
                ab = operand_bits(infos, src)
            add(LayerInfo(name, kind, mod, ishape, oshape, wb, ab, out_bits, macs, (src,)), n)
            continue
        op = op_kind(n)
        if op is None:
            raise CostError(f"{n.name}: {describe_target(n)} has no hardware cost model (supported between layers: "
                            f"{'; '.join(SUPPORTED_FUNCTIONS)})")
        if op == "meta" or not isinstance(values.get(n), torch.Tensor):
            continue  # sizes and shapes only feed reshapes
        first = n.args[0] if n.args else n.kwargs.get("input")
        if op == "identity":
            tensor[n] = source(first, n)
            continue
        name = unique(n.name)
        if op == "add":
            if "alpha" in n.kwargs or len(n.args) > 2:
                raise CostError(f"{n.name}: add with alpha has no hardware cost model; scale inside a layer instead")
            srcs = (source(n.args[0], n), source(n.args[1], n))
            outs = [bits_in(s) for s in srcs]
            ab = max(operand_bits(infos, s) for s in srcs)
            ob = max(outs) + 1 if max(outs) < FLOAT_BITS else FLOAT_BITS
            add(LayerInfo(name, "add", None, shape(n.args[0]), shape(n), 0.0, ab, min(ob, FLOAT_BITS), 0, srcs), n)
        elif op == "cat":
            parts = n.args[0] if n.args else n.kwargs.get("tensors", ())
            srcs = tuple(source(p, n) for p in parts)
            if len(srcs) == 1:
                tensor[n] = srcs[0]
                continue
            ab = max(operand_bits(infos, s) for s in srcs)
            ob = max(bits_in(s) for s in srcs)
            add(LayerInfo(name, "concat", None, shape(parts[0]), shape(n), 0.0, ab, ob, 0, srcs), n)
        elif op == "mean":
            src = source(first, n)
            ishape, oshape = shape(first), shape(n)
            dims = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
            rank = len(ishape) + 1
            axes = sorted({int(d) % rank for d in (dims if isinstance(dims, tuple | list) else (dims,))}) \
                if dims is not None else []
            if len(ishape) < 2 or axes != list(range(2, rank)):
                raise CostError(f"{n.name}: a mean that is not over every spatial axis (global average pooling) has "
                                "no hardware cost model")
            add(LayerInfo(name, "gpool", None, ishape, oshape, 0.0, operand_bits(infos, src), bits_in(src), 0,
                          (src,)), n)
        else:  # relu, flatten, reshape: element-wise or wiring, the width passes through
            src = source(first, n)
            kind = "act" if op == "relu" else "flatten"
            up = bits_in(src)
            add(LayerInfo(name, kind, None, shape(first), shape(n), 0.0, up, up, 0, (src,)), n)
    return list(infos.values())
