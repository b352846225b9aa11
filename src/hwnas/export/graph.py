"""The export graph: one immutable, framework-free description of a quantized model for every exporter.

Contract:

* :func:`extract` reads a model (an ``nn.Sequential`` chain of hwnas layers, ``Flatten``, ``ReLU``,
  ``Identity``/``Dropout``) in eval mode, once, and returns an :class:`ExportGraph`: the per-sample input
  shape, a tuple of nodes in execution order, and the output shape. It is the one place where exporters
  read precisions: every :class:`FixedFormat` holds the per-element ``(k, i, f)`` integer arrays of one
  quantizer, expanded to the full tensor shape, with its rounding and overflow modes, exactly as the
  quantizer object applies them. Weights and biases are stored already quantized (float64, exact).
* Nodes mirror :class:`hwnas.nn.QLayer`'s forward: :class:`Quantize` (input quantizer) → the operation
  (:class:`Dense`, :class:`Conv`, :class:`ReLU`, :class:`Table`, :class:`Pool`, :class:`Flatten`) →
  :class:`Quantize` (output quantizer). A tensor that is not re-quantized keeps its exact value (an
  accumulator of fixed-point products is itself fixed point), so every node is exact in fixed point.
* What no fixed-point exporter can reproduce raises :class:`hwnas.export.ExportError` naming the layer and
  the setting: a model input that is not quantized, float (unquantized) weights or biases, scaled-integer
  or float16 quantizers (non-power-of-two scales: QONNX only), float-mode tanh/sigmoid, unfolded BatchNorm,
  average pooling whose divisor is not a power of two or varies at the borders, ceil-mode pooling, string
  padding, non-zero padding modes, non-chain models and unknown layers.
* :func:`run_reference` executes the graph in NumPy/float64 — exact for every value the fixed-point types
  produce (up to 53 significant bits) — as the common reference all exported artefacts are compared with,
  and :func:`float32_exact` reports where torch's float32 arithmetic cannot be exact (an intermediate needs
  more than 24 significant bits), so a mismatch against torch can be told apart from an exporter bug.

Layout is torch's (channels first); exporters that need channels last (hls4ml) transpose themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwnas.nn import QActivation, QConv1d, QConv2d, QLinear
from hwnas.nn.activation import QAvgPool1d, QAvgPool2d, QMaxPool1d, QMaxPool2d
from hwnas.nn.base import QLayer
from hwnas.quant import FixedPointQuantizer
from hwnas.quant.reference import quantize_fixed_np

from .errors import ExportError

__all__ = [
    "Conv",
    "Dense",
    "ExportGraph",
    "FixedFormat",
    "Flatten",
    "Node",
    "Pool",
    "Quantize",
    "ReLU",
    "Table",
    "chain",
    "extract",
    "float32_exact",
    "layer_nodes",
    "run_node",
    "run_reference",
    "value_format",
]


# ------------------------------------------------------------------------------------------------ formats
@dataclass(frozen=True, eq=False)
class FixedFormat:
    """Per-element fixed-point format of one tensor: ``ap_fixed<k+i+f, k+i, round_mode, overflow_mode>``.

    ``k`` (sign bit, 0/1), ``i`` (integer bits without the sign) and ``f`` (fractional bits) are int64 arrays
    of the tensor's shape (per sample for activations, the parameter shape for weights). A pruned element
    (the quantizer's width ``k+i+f <= 0``) is stored as ``(0, 0, 0)``: it is always 0.
    """

    k: np.ndarray
    i: np.ndarray
    f: np.ndarray
    round_mode: str
    overflow_mode: str
    where: str = ""
    """The quantizer slot it came from, e.g. ``"0.input_quantizer"`` (for error messages)."""

    @property
    def shape(self) -> tuple[int, ...]:
        """The tensor shape the format covers."""
        return tuple(self.k.shape)

    @property
    def width(self) -> np.ndarray:
        """``max(k+i+f, 0)`` per element."""
        return np.maximum(self.k + self.i + self.f, 0)

    @property
    def uniform(self) -> bool:
        """Whether every element has the same (k, i, f)."""
        return all(a.size == 0 or bool(np.all(a == a.flat[0])) for a in (self.k, self.i, self.f))

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """``x`` (a batch: leading axis extra, or exactly the format's shape) quantized element-wise."""
        return quantize_fixed_np(x, self.k, self.i, self.f, self.round_mode, self.overflow_mode)

    def transposed(self, axes: tuple[int, ...]) -> FixedFormat:
        """The same format for the tensor permuted by ``axes`` (e.g. channels last)."""
        return FixedFormat(np.transpose(self.k, axes), np.transpose(self.i, axes), np.transpose(self.f, axes),
                           self.round_mode, self.overflow_mode, self.where)

    def reshaped(self, shape: tuple[int, ...]) -> FixedFormat:
        """The same format for the tensor reshaped to ``shape`` (C order)."""
        return FixedFormat(self.k.reshape(shape), self.i.reshape(shape), self.f.reshape(shape),
                           self.round_mode, self.overflow_mode, self.where)

    def describe(self) -> str:
        """Short text: the common type when uniform, else the width range."""
        if self.uniform and self.k.size:
            k, i, f = int(self.k.flat[0]), int(self.i.flat[0]), int(self.f.flat[0])
            return f"{'' if k else 'u'}fixed<{k + i + f},{k + i},{self.round_mode},{self.overflow_mode}>"
        w = self.width
        return f"heterogeneous fixed, {int(w.min())}..{int(w.max())} bits, {self.round_mode}, {self.overflow_mode}"


def value_format(values: np.ndarray, where: str = "") -> FixedFormat:
    """The narrowest exact fixed-point format of each element of a constant (weights, biases, table values).

    ``f`` is the number of fractional bits the value needs (>= 0), ``k`` is 1 for negative values and ``i``
    the integer bits that then hold its magnitude (``i + f`` magnitude bits; a negative value may use the
    most negative code); zeros get width 0.
    """
    v = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise ExportError(f"{where}: constant contains NaN or infinity")
    f = np.zeros(v.shape, dtype=np.int64)
    nz = v != 0
    for _ in range(1100):  # float64 values need at most 1074 fractional bits
        frac = nz & (np.mod(np.ldexp(v, f), 1.0) != 0)
        if not frac.any():
            break
        f = f + frac
    codes = np.abs(np.ldexp(v, f))
    k = (v < 0).astype(np.int64)
    # magnitude bits: bit_length(code) for positives, bit_length(code - 1) for negatives (code 2**n fits)
    mag = np.frexp(np.where(v < 0, codes - 1, codes))[1].astype(np.int64)
    i = np.where(nz, mag - f, 0)
    return FixedFormat(k, i, np.where(nz, f, 0), "TRN", "WRAP", where)


# ------------------------------------------------------------------------------------------------- nodes
@dataclass(frozen=True, eq=False)
class Node:
    """Base of graph nodes; ``name`` is the layer's name in the model (``"0"``, ``"block.2"``)."""

    name: str


@dataclass(frozen=True, eq=False)
class Quantize(Node):
    """Element-wise fixed-point quantization of the tensor (a quantizer slot)."""

    fmt: FixedFormat
    slot: str = "input"
    """``"input"`` or ``"output"``: which slot of the layer it is."""


@dataclass(frozen=True, eq=False)
class Dense(Node):
    """``y = x @ weight.T + bias`` on the last axis; weight (out, in) and bias (out,) already quantized."""

    weight: np.ndarray
    bias: np.ndarray | None
    weight_format: FixedFormat
    bias_format: FixedFormat | None


@dataclass(frozen=True, eq=False)
class Conv(Node):
    """1-D/2-D convolution, torch semantics (``groups == in_channels`` is depthwise)."""

    dims: int
    weight: np.ndarray
    """(out_channels, in_channels // groups, *kernel), already quantized."""
    bias: np.ndarray | None
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    weight_format: FixedFormat
    bias_format: FixedFormat | None

    @property
    def kernel(self) -> tuple[int, ...]:
        """Kernel size per spatial axis."""
        return tuple(self.weight.shape[2:])


@dataclass(frozen=True, eq=False)
class ReLU(Node):
    """``max(x, 0)``."""


@dataclass(frozen=True, eq=False)
class Table(Node):
    """A lookup-table activation (tanh/sigmoid of a quantized input, before the output quantizer).

    ``apply`` evaluates it the way the torch layer does (float64 function, rounded to float32), so a table
    built from it over every input code reproduces the model exactly.
    """

    kind: str
    in_format: FixedFormat

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The activation of ``x`` as the torch layer computes it (before its output quantizer)."""
        fn = {"tanh": torch.tanh, "sigmoid": torch.sigmoid}[self.kind]
        return fn(torch.as_tensor(np.asarray(x, dtype=np.float64))).to(torch.float32).double().numpy()


@dataclass(frozen=True, eq=False)
class Pool(Node):
    """Max or average pooling (average only with a power-of-two window and no variable border divisor)."""

    kind: str
    """``"max"`` or ``"avg"``."""
    dims: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class Flatten(Node):
    """Flatten everything after the batch axis (C order, so channel-major for channels-first tensors)."""


@dataclass(frozen=True, eq=False)
class ExportGraph:
    """A quantized model as exporters see it (see the module docstring)."""

    input_shape: tuple[int, ...]
    nodes: tuple[Node, ...]
    output_shape: tuple[int, ...]
    shapes: tuple[tuple[int, ...], ...] = field(default=())
    """Per-sample shape of each node's output, aligned with ``nodes``."""

    @property
    def input_format(self) -> FixedFormat:
        """The format of the model input (its first node is always the first layer's input quantizer)."""
        first = self.nodes[0]
        assert isinstance(first, Quantize)
        return first.fmt

    def layers(self) -> list[str]:
        """Layer names in order (each once)."""
        return list(dict.fromkeys(n.name for n in self.nodes))


# ------------------------------------------------------------------------------------------- extraction
def _fixed_format(q: Any, shape: tuple[int, ...], where: str) -> FixedFormat:
    if not isinstance(q, FixedPointQuantizer):
        kind = type(q).__name__
        hint = ("scaled-integer scales are not powers of two; export such models to QONNX"
                if "Scaled" in kind else "only fixed-point quantizers map to ap_fixed/RTL")
        raise ExportError(f"{where}: {kind} cannot be exported exactly to fixed point ({hint})")
    k, i, f = (t.detach().to(torch.float64) for t in q.kif())
    try:
        k, i, f = (np.broadcast_to(t.numpy(), shape).astype(np.int64) for t in (k, i, f))
    except ValueError as err:
        raise ExportError(f"{where}: quantizer parameters of shape {tuple(q.kif()[0].shape)} do not fit the "
                          f"tensor shape {shape}") from err
    pruned = k + i + f <= 0  # trained widths can go below 0: the element is pruned (always 0), stored as (0, 0, 0)
    k, i, f = (np.where(pruned, 0, a) for a in (k, i, f))
    return FixedFormat(k, i, f, q.round_mode.value, q.overflow_mode.value, where)


def _param(layer: QLayer, name: str, kind: str) -> tuple[np.ndarray | None, FixedFormat | None]:
    value = getattr(layer, kind, None)
    if value is None:
        return None, None
    q = getattr(layer, f"{kind}_quantizer")
    if q is None:
        raise ExportError(f"{name}.{kind}_quantizer: the {kind} is not quantized (float32); fixed-point export "
                          f"needs a fixed-point {kind} quantizer (or {kind}=False)")
    with torch.no_grad():
        qv = (layer.quantized_weight() if kind == "weight" else layer.quantized_bias()).detach()
    fmt = _fixed_format(q, tuple(qv.shape), f"{name}.{kind}_quantizer")
    return qv.double().numpy().copy(), fmt


def _tuple(v: Any, dims: int) -> tuple[int, ...]:
    return tuple(int(a) for a in v) if isinstance(v, tuple | list) else (int(v),) * dims


def _pool_node(name: str, layer: nn.Module, dims: int, kind: str) -> Pool:
    kernel = _tuple(layer.kernel_size, dims)
    stride = _tuple(layer.stride if layer.stride is not None else layer.kernel_size, dims)
    padding = _tuple(layer.padding, dims)
    if getattr(layer, "ceil_mode", False):
        raise ExportError(f"{name}: ceil_mode pooling is not supported")
    if kind == "max" and getattr(layer, "dilation", 1) not in (1, (1,), (1, 1)):
        raise ExportError(f"{name}: dilated max pooling is not supported")
    if kind == "avg":
        window = math.prod(kernel)
        if window & (window - 1):
            raise ExportError(f"{name}: average pooling over {window} elements divides by a non-power of two, "
                              "which fixed point cannot do exactly; use a power-of-two window or max pooling")
        if any(padding) and not getattr(layer, "count_include_pad", True):
            raise ExportError(f"{name}: average pooling with padding and count_include_pad=False divides by a "
                              "varying count at the borders; use count_include_pad=True or no padding")
        if getattr(layer, "divisor_override", None):
            raise ExportError(f"{name}: divisor_override is not supported")
    return Pool(name, kind, dims, kernel, stride, padding)


def layer_nodes(name: str, layer: nn.Module, sample: tuple[int, ...], out: tuple[int, ...]) -> list[Node]:
    """The graph nodes of one layer (``sample``/``out``: its per-sample input and output shapes); see the module doc."""
    if isinstance(layer, nn.Identity | nn.Dropout):
        return []
    if isinstance(layer, nn.Flatten):
        if layer.start_dim != 1 or layer.end_dim != -1:
            raise ExportError(f"{name}: only Flatten(start_dim=1, end_dim=-1) is supported")
        return [Flatten(name)]
    if isinstance(layer, nn.ReLU):
        return [ReLU(name)]
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        raise ExportError(f"{name}: BatchNorm must be folded first (hwnas.nn.fold_batchnorm)")
    if not isinstance(layer, QLayer):
        raise ExportError(f"{name}: {type(layer).__name__} is not supported by the fixed-point exporters")
    nodes: list[Node] = []
    if layer.input_quantizer is not None:
        nodes.append(Quantize(name, _fixed_format(layer.input_quantizer, sample, f"{name}.input_quantizer"), "input"))
    if isinstance(layer, QLinear):
        w, wf = _param(layer, name, "weight")
        b, bf = _param(layer, name, "bias")
        assert w is not None and wf is not None
        nodes.append(Dense(name, w, b, wf, bf))
    elif isinstance(layer, QConv1d | QConv2d):
        dims = 1 if isinstance(layer, QConv1d) else 2
        if isinstance(layer.padding, str):
            raise ExportError(f"{name}: string padding {layer.padding!r} is not supported; give integers")
        if layer.padding_mode != "zeros":
            raise ExportError(f"{name}: padding_mode {layer.padding_mode!r} is not supported (only zeros)")
        w, wf = _param(layer, name, "weight")
        b, bf = _param(layer, name, "bias")
        assert w is not None and wf is not None
        nodes.append(Conv(name, dims, w, b, _tuple(layer.stride, dims), _tuple(layer.padding, dims),
                          _tuple(layer.dilation, dims), int(layer.groups), wf, bf))
    elif isinstance(layer, QActivation):
        if layer.mode == "float":
            raise ExportError(f"{name}: {layer.kind} in float mode has no exact fixed-point form; use "
                              "mode='table' with a static fixed-point input quantizer and an output quantizer")
        if layer.kind == "relu":
            nodes.append(ReLU(name))
        elif layer.kind in ("tanh", "sigmoid"):
            fmt = nodes[-1].fmt if nodes and isinstance(nodes[-1], Quantize) else None
            if fmt is None:
                raise ExportError(f"{name}.input_quantizer: a table activation needs a fixed-point input quantizer")
            nodes.append(Table(name, layer.kind, fmt))
    elif isinstance(layer, QMaxPool1d | QMaxPool2d):
        nodes.append(_pool_node(name, layer, 1 if isinstance(layer, QMaxPool1d) else 2, "max"))
    elif isinstance(layer, QAvgPool1d | QAvgPool2d):
        nodes.append(_pool_node(name, layer, 1 if isinstance(layer, QAvgPool1d) else 2, "avg"))
    else:
        raise ExportError(f"{name}: {type(layer).__name__} is not supported by the fixed-point exporters")
    if layer.output_quantizer is not None:
        nodes.append(Quantize(name, _fixed_format(layer.output_quantizer, out, f"{name}.output_quantizer"), "output"))
    return nodes


def chain(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers of a (nested) ``nn.Sequential`` in order, with their dotted names."""
    if isinstance(model, nn.Sequential):
        out: list[tuple[str, nn.Module]] = []
        for name, child in model.named_children():
            if isinstance(child, nn.Sequential):
                out += [(f"{name}.{n}", m) for n, m in chain(child)]
            else:
                out.append((name, child))
        return out
    if isinstance(model, QLayer) or not list(model.children()):
        return [(type(model).__name__, model)]
    raise ExportError(f"{type(model).__name__}: only nn.Sequential chains of layers are exported; wrap the layers "
                      "in nn.Sequential")


def extract(model: nn.Module, input_shape: tuple[int, ...]) -> ExportGraph:
    """The :class:`ExportGraph` of ``model`` for per-sample ``input_shape`` (module docstring).

    The model is put in eval mode and run once on a zero sample (weight quantizers derive their integer
    bits from the weights at each call, activation quantizers materialize their shapes).
    """
    model.eval()
    sample = tuple(int(d) for d in input_shape)
    layers = chain(model)
    if not layers:
        raise ExportError("model: no layers to export")
    nodes: list[Node] = []
    shapes: list[tuple[int, ...]] = []
    x = torch.zeros((1, *sample))
    with torch.no_grad():
        for name, layer in layers:  # running each layer also settles weight quantizers' integer bits
            try:
                y = layer(x)
            except Exception as err:  # a shape error names the layer
                raise ExportError(f"{name}: cannot run on an input of shape {tuple(x.shape[1:])}: {err}") from err
            out = tuple(y.shape[1:])
            new = layer_nodes(name, layer, tuple(x.shape[1:]), out)
            for node in new:
                nodes.append(node)
                shapes.append(out if not isinstance(node, Quantize) or node.slot == "output" else tuple(x.shape[1:]))
            x = y
    if not nodes or not isinstance(nodes[0], Quantize) or nodes[0].slot != "input":
        first = layers[0][0]
        raise ExportError(f"{first}.input_quantizer: the model input must be quantized to fixed point (give the "
                          "first layer a fixed-point input quantizer); a float input has no ap_fixed/RTL form")
    return ExportGraph(sample, tuple(nodes), tuple(x.shape[1:]), tuple(shapes))


# -------------------------------------------------------------------------------------------- reference
def _conv(node: Conv, x: torch.Tensor) -> torch.Tensor:
    w = torch.as_tensor(node.weight)
    b = None if node.bias is None else torch.as_tensor(node.bias)
    fn = F.conv1d if node.dims == 1 else F.conv2d
    return fn(x, w, b, node.stride, node.padding, node.dilation, node.groups)


def _pool(node: Pool, x: torch.Tensor) -> torch.Tensor:
    if node.kind == "max":
        fn = F.max_pool1d if node.dims == 1 else F.max_pool2d
        return fn(x, node.kernel, node.stride, node.padding)
    fn = F.avg_pool1d if node.dims == 1 else F.avg_pool2d
    return fn(x, node.kernel, node.stride, node.padding)


def run_node(node: Node, x: np.ndarray) -> np.ndarray:
    """One node on a batch ``x`` (float64, exact)."""
    if isinstance(node, Quantize):
        return node.fmt.quantize(x)
    if isinstance(node, Dense):
        y = x @ node.weight.T
        return y + node.bias if node.bias is not None else y
    if isinstance(node, Conv):
        return _conv(node, torch.as_tensor(x)).numpy()
    if isinstance(node, ReLU):
        return np.maximum(x, 0.0)
    if isinstance(node, Table):
        return node.apply(x)
    if isinstance(node, Pool):
        return _pool(node, torch.as_tensor(x)).numpy()
    if isinstance(node, Flatten):
        return x.reshape(len(x), -1)
    raise TypeError(f"{node.name}: unknown node {type(node).__name__}")


def run_reference(graph: ExportGraph, x: np.ndarray | torch.Tensor, *, trace: bool = False) -> Any:
    """Execute ``graph`` on a batch (N, *input_shape) in float64.

    Returns the output, or with ``trace`` the list of ``(node, output)`` pairs in order.
    """
    h = np.asarray(x.detach().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if h.shape[1:] != graph.input_shape:
        raise ExportError(f"input: expected samples of shape {graph.input_shape}, got {h.shape[1:]}")
    if not np.all(np.isfinite(h)):
        raise ExportError("input: contains NaN or infinity")
    steps = []
    for node in graph.nodes:
        h = run_node(node, h)
        if trace:
            steps.append((node, h))
    return steps if trace else h


def float32_exact(graph: ExportGraph, x: np.ndarray | torch.Tensor) -> list[tuple[str, int]]:
    """Layers whose exact intermediate values do not fit float32 (more than 24 significant bits) on ``x``.

    Returns ``[(layer name, number of values affected)]``; empty when torch's float32 forward is exact, so
    torch and every fixed-point artefact must agree bit for bit.
    """
    bad: dict[str, int] = {}
    for node, h in run_reference(graph, x, trace=True):
        n = int(np.count_nonzero(h.astype(np.float32).astype(np.float64) != h))
        if n:
            bad[node.name] = bad.get(node.name, 0) + n
    return list(bad.items())
