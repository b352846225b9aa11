"""The export graph: one immutable, framework-free description of a quantized model for every exporter.

Contract:

* :func:`extract` reads a model — any ``nn.Module`` whose layers are hwnas layers (``Flatten``, ``ReLU``,
  ``Identity``/``Dropout`` too), wired in ``forward`` by the :data:`SUPPORTED_FUNCTIONS` (residual adds,
  concatenation, global pooling) — by tracing it with torch.fx, in eval mode, once, and returns an
  :class:`ExportGraph`: a DAG over named tensors (the model input is :data:`INPUT`), nodes in topological
  order each reading ``inputs`` and writing ``output``, the per-sample shapes. It is the one place where
  exporters and cost models read precisions: every :class:`FixedFormat` holds the per-element ``(k, i, f)``
  integer arrays of one quantizer, expanded to the full tensor shape, with its rounding and overflow modes,
  exactly as the quantizer object applies them. A bipolar quantizer (:class:`~hwnas.quant.BipolarQuantizer`)
  is two fixed-point steps: a weight or bias holds its ±1 values in ``ap_fixed<2,2>`` (``FixedFormat.bipolar``);
  an activation is ``Quantize`` to ``ap_fixed<1,1,TRN,SAT>`` (the sign: -1 below 0, else 0), a two-entry
  :class:`Table` of kind ``"bipolar"`` ({-1, 0} → {-1, +1}) and ``Quantize`` to the ``ap_fixed<2,2>`` of ±1
  (:func:`bipolar_formats`), so every fixed-point exporter carries it exactly. Weights and biases are stored
  already quantized (float64, exact). A chain (``nn.Sequential``) gives the nodes it always gave, now wired by
  name. docs/models.md lists the operations and rules.
* Nodes mirror :class:`hwnas.nn.QLayer`'s forward: :class:`Quantize` (input quantizer) → the operation
  (:class:`Dense`, :class:`Conv`, :class:`ReLU`, :class:`Table`, :class:`Pool`, :class:`Flatten`) →
  :class:`Quantize` (output quantizer). :class:`Softmax` and :class:`LayerNorm` are hls4ml's ``softmax_stable``
  and ``layernorm_1d`` with every intermediate ``ap_fixed`` type on the node (:mod:`hwnas.nn.normalization`).
  A tensor that is not re-quantized keeps its exact value (an accumulator of fixed-point products is itself
  fixed point), so every node is exact in fixed point; :class:`Add` (operands aligned on the finer grid, one
  more integer bit), :class:`Concat` and :class:`GlobalPool` (power-of-two counts only) keep that property.
* What no fixed-point exporter can reproduce raises :class:`hwnas.export.ExportError` naming the layer and
  the setting: a model input that is not quantized, float (unquantized) weights or biases, scaled-integer
  or float16 quantizers (non-power-of-two scales: QONNX only), float-mode tanh/sigmoid, unfolded BatchNorm,
  average pooling whose divisor is not a power of two or varies at the borders, ceil-mode pooling, string
  padding, non-zero padding modes, unknown layers and functions, plain torch layers (``nn.Linear``: use
  :func:`hwnas.nn.convert`), layers called twice, untraceable ``forward`` code.
* :func:`run_reference` executes the graph (any DAG) in NumPy/float64 — exact for every value the fixed-point types
  produce (up to 53 significant bits) — as the common reference all exported artefacts are compared with,
  and :func:`float32_exact` reports where torch's float32 arithmetic cannot be exact (an intermediate needs
  more than 24 significant bits), so a mismatch against torch can be told apart from an exporter bug.

Layout is torch's (channels first); exporters that need channels last (hls4ml) transpose themselves.
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwnas.errors import first_line
from hwnas.nn import QActivation, QConv1d, QConv2d, QLinear
from hwnas.nn.activation import QAvgPool1d, QAvgPool2d, QMaxPool1d, QMaxPool2d
from hwnas.nn.base import QLayer
from hwnas.nn.normalization import (
    LayerNormConfig,
    QLayerNorm,
    QSoftmax,
    SoftmaxConfig,
    layernorm_np,
    softmax_np,
)
from hwnas.quant import BipolarQuantizer, FixedPointQuantizer, QuantizationError
from hwnas.quant.reference import quantize_bipolar_np, quantize_fixed_np

from .errors import ExportError

__all__ = [
    "INPUT",
    "SUPPORTED_FUNCTIONS",
    "Add",
    "Concat",
    "Conv",
    "Dense",
    "ExportGraph",
    "FixedFormat",
    "Flatten",
    "GlobalPool",
    "LayerNorm",
    "Node",
    "Pool",
    "Quantize",
    "ReLU",
    "Softmax",
    "Table",
    "ValueRecorder",
    "bipolar_formats",
    "chain",
    "describe_target",
    "extract",
    "float32_exact",
    "is_layer",
    "layer_nodes",
    "layers_of",
    "op_kind",
    "run_node",
    "run_reference",
    "trace",
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
    bipolar: bool = False
    """The ±1 values of a bipolar quantizer, held in ``ap_fixed<2,2>`` (QONNX writes ``BipolarQuant`` for it)."""

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
                           self.round_mode, self.overflow_mode, self.where, self.bipolar)

    def reshaped(self, shape: tuple[int, ...]) -> FixedFormat:
        """The same format for the tensor reshaped to ``shape`` (C order)."""
        return FixedFormat(self.k.reshape(shape), self.i.reshape(shape), self.f.reshape(shape),
                           self.round_mode, self.overflow_mode, self.where, self.bipolar)

    def describe(self) -> str:
        """Short text: the common type when uniform, else the width range."""
        if self.uniform and self.k.size:
            k, i, f = int(self.k.flat[0]), int(self.i.flat[0]), int(self.f.flat[0])
            return f"{'' if k else 'u'}fixed<{k + i + f},{k + i},{self.round_mode},{self.overflow_mode}>"
        w = self.width
        return f"heterogeneous fixed, {int(w.min())}..{int(w.max())} bits, {self.round_mode}, {self.overflow_mode}"


def bipolar_formats(shape: tuple[int, ...], where: str = "") -> tuple[FixedFormat, FixedFormat]:
    """The two formats of a bipolar quantizer over ``shape``: (sign, values).

    ``sign`` is ``ap_fixed<1,1,TRN,SAT>``: floor, then saturate to [-1, 0], so -1 where ``x < 0`` and 0 elsewhere;
    ``values`` is ``ap_fixed<2,2,TRN,SAT>`` (``bipolar=True``), which holds -1 and +1.
    """

    def full(v: int) -> np.ndarray:
        return np.full(shape, v, dtype=np.int64)

    return (FixedFormat(full(1), full(0), full(0), "TRN", "SAT", where),
            FixedFormat(full(1), full(1), full(0), "TRN", "SAT", where, True))


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
    """Base of graph nodes.

    ``name`` is the layer's name in the model (``"0"``, ``"block.2"``) or, for a functional operation in a
    ``forward`` (``x + y``, ``torch.cat``), torch.fx's name for it (``"add"``, ``"cat_1"``). ``inputs`` are the
    names of the tensors it reads, ``output`` the name of the tensor it writes (unique in the graph).
    """

    name: str
    inputs: tuple[str, ...] = field(default=(), kw_only=True)
    output: str = field(default="", kw_only=True)


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
    built from it over every input code reproduces the model exactly. Kind ``"bipolar"`` is the middle step of
    a bipolar quantizer (:func:`bipolar_formats`): ``x >= 0 → +1``, else ``-1``, over the sign codes {-1, 0}.
    """

    kind: str
    in_format: FixedFormat

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The activation of ``x`` as the torch layer computes it (before its output quantizer)."""
        if self.kind == "bipolar":
            return quantize_bipolar_np(np.asarray(x, dtype=np.float64))
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
class Add(Node):
    """Element-wise sum of its inputs (two or more tensors of one shape), e.g. a residual connection.

    Exact in fixed point without any re-quantization: the operands are aligned on the finer grid (the larger
    ``f``) and the sum needs one integer bit more than the wider operand (:func:`add_format`); the sum is
    quantized only where a later layer's input quantizer says so.
    """


@dataclass(frozen=True, eq=False)
class Concat(Node):
    """Concatenation of its inputs along ``axis`` (a per-sample axis: 0 is channels); exact, values unchanged."""

    axis: int


@dataclass(frozen=True, eq=False)
class GlobalPool(Node):
    """Global pooling over every spatial axis: (C, *spatial) -> (C,).

    ``"avg"`` only where the number of spatial positions is a power of two (the division is then a shift,
    exact); ``"max"`` always.
    """

    kind: str
    dims: int
    size: tuple[int, ...]
    """The spatial extent pooled over."""


class _Configured:
    """Node kinds whose types and sizes live in one config object: its fields read as the node's own."""

    config: Any

    def __getattr__(self, name: str) -> Any:
        if name == "config" or name.startswith("__"):  # not set yet (construction, copying): no delegation
            raise AttributeError(name)
        return getattr(self.config, name)


@dataclass(frozen=True, eq=False)
class Softmax(_Configured, Node):
    """hls4ml's ``softmax_stable`` over the last axis of a ``data_t`` tensor, before the output quantizer (res_T).

    ``config`` (:class:`~hwnas.nn.normalization.SoftmaxConfig`: ``n``, ``data_t``, ``inp_norm_t``, ``exp_table_t``,
    ``accum_t``, ``inv_inp_t``, ``inv_table_t``, table sizes, ``exp_scale``; its fields read as the node's) holds
    every type, a scalar :class:`~hwnas.nn.normalization.FixedType`; the tables are those hls4ml builds
    (``config.exp_table()`` / ``.inv_table()``). The output is the exact product ``exp_res · inv``
    (``accum_t`` × ``inv_table_t``), which the layer's output ``Quantize`` casts.
    """

    config: SoftmaxConfig

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The node on a batch of ``data_t`` values (float64, exact)."""
        return softmax_np(x, self.config)


@dataclass(frozen=True, eq=False)
class LayerNorm(_Configured, Node):
    """hls4ml's ``layernorm_1d`` over the last axis, before the output quantizer (res_T).

    ``config`` (:class:`~hwnas.nn.normalization.LayerNormConfig`: ``n``, ``accum_t``, ``table_t``, ``table_size``,
    ``table_range_power2``, ``epsilon_power_of_10``; its fields read as the node's); ``scale`` (gamma) and
    ``bias`` (beta) are already quantized (``(n,)``, float64, exact) with their formats; the table is hls4ml's
    1/sqrt table (``config.table()``). The output is the exact value ``diff · table[index] · scale + bias``.
    """

    config: LayerNormConfig
    scale: np.ndarray
    bias: np.ndarray
    scale_format: FixedFormat
    bias_format: FixedFormat

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The node on a batch (float64, exact)."""
        return layernorm_np(x, self.config, self.scale, self.bias)


INPUT = "input"
"""The name of the model-input tensor in every graph."""


@dataclass(frozen=True, eq=False)
class ExportGraph:
    """A quantized model as exporters see it (see the module docstring): a DAG of nodes over named tensors.

    ``nodes`` are in a topological order (each node after the producers of its inputs), ending with the
    producer of the output tensor; every node contributes to the output.
    """

    input_shape: tuple[int, ...]
    nodes: tuple[Node, ...]
    output_shape: tuple[int, ...]
    shapes: tuple[tuple[int, ...], ...] = field(default=())
    """Per-sample shape of each node's output, aligned with ``nodes``."""
    output: str = ""
    """The name of the output tensor (the last node's output)."""

    @property
    def input_format(self) -> FixedFormat:
        """The format of the model input: the quantizer(s) that read it (extraction checks they agree)."""
        for node in self.nodes:
            if isinstance(node, Quantize) and INPUT in node.inputs:
                return node.fmt
        raise ExportError("input: the model input is not quantized")

    @property
    def output_node(self) -> Node:
        """The node that produces the model output."""
        return self.nodes[-1]

    @property
    def is_chain(self) -> bool:
        """Whether every node reads exactly the previous node's output (the model input for the first)."""
        prev = INPUT
        for node in self.nodes:
            if node.inputs != (prev,):
                return False
            prev = node.output
        return True

    def require_chain(self, path: str) -> None:
        """Raise :class:`ExportError` naming the first node that branches or joins, for a path that exports chains."""
        prev = INPUT
        readers: dict[str, int] = {}
        for node in self.nodes:
            for t in node.inputs:
                readers[t] = readers.get(t, 0) + 1
        for node in self.nodes:
            if node.inputs != (prev,) or readers.get(node.output, 0) > 1:
                what = type(node).__name__
                raise ExportError(f"{node.name}: the {path} path exports chains of layers only, and this {what} node "
                                  "joins or feeds several branches; use a path that expresses graphs")
            prev = node.output
        if readers.get(INPUT, 0) > 1:
            raise ExportError(f"input: the {path} path exports chains of layers only; the model input feeds "
                              "several branches")

    def shape_of(self, tensor: str) -> tuple[int, ...]:
        """Per-sample shape of a tensor (the model input or a node's output)."""
        if tensor == INPUT:
            return self.input_shape
        for node, shape in zip(self.nodes, self.shapes, strict=True):
            if node.output == tensor:
                return shape
        raise KeyError(tensor)

    def producer(self, tensor: str) -> Node | None:
        """The node that writes ``tensor`` (None for the model input)."""
        for node in self.nodes:
            if node.output == tensor:
                return node
        if tensor == INPUT:
            return None
        raise KeyError(tensor)

    def consumers(self, tensor: str) -> list[Node]:
        """The nodes that read ``tensor``, in graph order."""
        return [n for n in self.nodes if tensor in n.inputs]

    def layers(self) -> list[str]:
        """Layer names in order (each once)."""
        return list(dict.fromkeys(n.name for n in self.nodes))


# ------------------------------------------------------------------------------------------- extraction
def _fixed_format(q: Any, shape: tuple[int, ...], where: str) -> FixedFormat:
    if isinstance(q, BipolarQuantizer):  # a weight or bias: its ±1 values (activations: _quantize_nodes)
        return bipolar_formats(shape, where)[1]
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


def _quantize_nodes(name: str, q: Any, shape: tuple[int, ...], where: str, slot: str) -> list[Node]:
    """The nodes of an activation quantizer: one ``Quantize``, or the three steps of a bipolar one."""
    if isinstance(q, BipolarQuantizer):
        sign, values = bipolar_formats(shape, where)
        return [Quantize(name, sign, slot), Table(name, "bipolar", sign), Quantize(name, values, slot)]
    return [Quantize(name, _fixed_format(q, shape, where), slot)]


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
    if isinstance(layer, nn.Softmax | nn.LayerNorm):
        kind = "QSoftmax" if isinstance(layer, nn.Softmax) else "QLayerNorm"
        raise ExportError(f"{name}: {type(layer).__name__} is not supported by the fixed-point exporters (torch's is "
                          f"float); use hwnas.nn.normalization.{kind}, hls4ml's fixed-point algorithm, bit-exact")
    if not isinstance(layer, QLayer):
        raise ExportError(f"{name}: {type(layer).__name__} is not supported by the fixed-point exporters")
    nodes: list[Node] = []
    if layer.input_quantizer is not None:
        nodes += _quantize_nodes(name, layer.input_quantizer, sample, f"{name}.input_quantizer", "input")
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
    elif isinstance(layer, QSoftmax):
        try:
            sc = layer.config(sample)
        except QuantizationError as err:
            raise ExportError(f"{name}.{err}") from err
        nodes.append(Softmax(name, sc))
    elif isinstance(layer, QLayerNorm):
        scale, sf = _param(layer, name, "weight")
        shift, bf = _param(layer, name, "bias")
        assert scale is not None and sf is not None and shift is not None and bf is not None
        lc = layer.config()
        try:
            lc.check_params(scale, shift)
        except QuantizationError as err:
            raise ExportError(f"{name}.{err}") from err
        nodes.append(LayerNorm(name, lc, scale, shift, sf, bf))
    else:
        raise ExportError(f"{name}: {type(layer).__name__} is not supported by the fixed-point exporters")
    if layer.output_quantizer is not None:
        nodes += _quantize_nodes(name, layer.output_quantizer, out, f"{name}.output_quantizer", "output")
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


# --------------------------------------------------------------------------------------------- tracing
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_SUFFIX = {Dense: "dense", Conv: "conv", ReLU: "relu", Table: "table", Pool: "pool", Flatten: "flatten",
           Add: "add", Concat: "concat", GlobalPool: "gpool", Softmax: "softmax", LayerNorm: "layernorm"}
SUPPORTED_FUNCTIONS = ("x + y (operator.add, torch.add, Tensor.add)", "torch.cat", "torch.flatten(x, 1)",
                       "x.view/reshape(batch, -1)", "torch.relu / F.relu", "x.mean(spatial axes)")
"""The functional operations a ``forward`` may use besides layers (for error messages and docs)."""


def is_layer(module: nn.Module) -> bool:
    """Layers are leaves: hwnas layers, childless modules and torch's own (non-container) modules."""
    if isinstance(module, QLayer):
        return True
    if isinstance(module, _CONTAINERS):
        return False
    return not any(True for _ in module.children()) or type(module).__module__.startswith("torch.nn")


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return is_layer(m)


def _root(model: nn.Module) -> nn.Module:
    """A module fx can trace into: a model that is itself a single layer is wrapped, keeping its class name."""
    if is_layer(model):
        from collections import OrderedDict

        return nn.Sequential(OrderedDict([(type(model).__name__, model)]))
    return model


def trace(model: nn.Module) -> torch.fx.GraphModule:
    """The torch.fx graph of ``model`` with its layers (hwnas layers, torch modules) as leaves.

    Raises :class:`ExportError` when ``forward`` cannot be traced symbolically (data-dependent control flow).
    """
    root = _root(model)
    try:
        g = _Tracer().trace(root)
    except Exception as err:  # fx raises TraceError, TypeError, RuntimeError, ... for untraceable code
        raise ExportError(f"{type(model).__name__}: its forward cannot be traced by torch.fx ({type(err).__name__}: "
                          f"{first_line(err)}); write forward without data-dependent Python control flow") \
            from err
    return torch.fx.GraphModule(root, g)


def layers_of(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers (leaf modules) ``model``'s forward calls, in call order, with their dotted names."""
    gm = trace(model)
    seen: dict[str, nn.Module] = {}
    for n in gm.graph.nodes:
        if n.op == "call_module":
            seen.setdefault(str(n.target), gm.get_submodule(str(n.target)))
    return list(seen.items())


class ValueRecorder(torch.fx.Interpreter):
    """Runs a traced model once, recording every fx node's value (``values``: to read shapes); errors propagate."""

    def __init__(self, gm: torch.fx.GraphModule) -> None:
        super().__init__(gm)
        self.values: dict[torch.fx.Node, Any] = {}

    def run_node(self, n: torch.fx.Node) -> Any:
        """Run one node and keep its value."""
        out = super().run_node(n)
        self.values[n] = out
        return out


class _Shapes(torch.fx.Interpreter):
    """Runs the traced model once, recording every fx node's value (to read shapes) and naming failures."""

    def __init__(self, gm: torch.fx.GraphModule) -> None:
        super().__init__(gm)
        self.values: dict[torch.fx.Node, Any] = {}

    def run_node(self, n: torch.fx.Node) -> Any:
        try:
            out = super().run_node(n)
        except ExportError:
            raise
        except Exception as err:
            shapes = [tuple(self.values[a].shape[1:]) for a in n.all_input_nodes
                      if isinstance(self.values.get(a), torch.Tensor)]
            raise ExportError(f"{n.target if n.op == 'call_module' else n.name}: cannot run on input(s) of shape "
                              f"{', '.join(map(str, shapes)) or '?'}: {first_line(err)}") from err
        self.values[n] = out
        return out


def _arg(n: torch.fx.Node, index: int, key: str, default: Any) -> Any:
    if len(n.args) > index:
        return n.args[index]
    return n.kwargs.get(key, default)


def op_kind(n: torch.fx.Node) -> str | None:
    """The graph operation a functional fx node is, or None when unsupported."""
    t = n.target
    if n.op == "call_function":
        if t in (operator.add, operator.iadd, torch.add):
            return "add"
        if t in (torch.cat, torch.concat, getattr(torch, "concatenate", torch.cat)):
            return "cat"
        if t is torch.flatten:
            return "flatten"
        if t in (torch.relu, F.relu, torch.relu_):
            return "relu"
        if t is torch.mean:
            return "mean"
        if t in (torch.reshape,):
            return "reshape"
        if t in (operator.getitem, getattr) :
            return "meta"
        return None
    if n.op == "call_method":
        return {"add": "add", "add_": "add", "__add__": "add", "flatten": "flatten", "view": "reshape",
                "reshape": "reshape", "relu": "relu", "relu_": "relu", "mean": "mean", "size": "meta",
                "dim": "meta", "contiguous": "identity"}.get(str(t))
    return None


def describe_target(n: torch.fx.Node) -> str:
    """A functional fx node's operation as users write it (``Tensor.view``, ``sigmoid``), for messages."""
    t = n.target
    if n.op == "call_method":
        return f"Tensor.{t}"
    return getattr(t, "__qualname__", None) or getattr(t, "__name__", None) or str(t)


def extract(model: nn.Module, input_shape: tuple[int, ...]) -> ExportGraph:
    """The :class:`ExportGraph` of ``model`` for per-sample ``input_shape`` (module docstring).

    ``forward`` is traced with torch.fx (layers are leaves, :data:`SUPPORTED_FUNCTIONS` the functional
    operations between them); the model is put in eval mode and run once on a zero sample (weight quantizers
    derive their integer bits from the weights at each call, activation quantizers materialize their shapes).
    """
    model.eval()
    sample = tuple(int(d) for d in input_shape)
    gm = trace(model)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ExportError(f"{type(model).__name__}: forward takes {len(placeholders)} inputs; exported models "
                          "take exactly one tensor")
    if not any(n.op == "call_module" for n in gm.graph.nodes):
        raise ExportError("model: no layers to export")
    interp = _Shapes(gm)
    with torch.no_grad():
        interp.run(torch.zeros((1, *sample)))
    values = interp.values

    def shape(n: torch.fx.Node) -> tuple[int, ...]:
        return tuple(values[n].shape[1:])

    nodes: list[Node] = []
    shapes: list[tuple[int, ...]] = []
    tensor: dict[torch.fx.Node, str] = {}
    used_modules: dict[str, str] = {}

    def emit(node: Node, ins: tuple[str, ...], out_shape: tuple[int, ...]) -> str:
        suffix = node.slot + "_q" if isinstance(node, Quantize) else _SUFFIX[type(node)]
        name = f"{node.name}/{suffix}"
        taken = {m.output for m in nodes}
        base, k = name, 1
        while name in taken:
            k += 1
            name = f"{base}#{k}"
        nodes.append(replace(node, inputs=ins, output=name))
        shapes.append(out_shape)
        return name

    def source(a: Any, n: torch.fx.Node) -> str:
        if not isinstance(a, torch.fx.Node) or a not in tensor:
            raise ExportError(f"{n.name}: {describe_target(n)} with a constant operand ({a!r}) is not supported; "
                              "fold constants into a layer's weights or bias")
        return tensor[a]

    for n in gm.graph.nodes:
        if n.op == "placeholder":
            tensor[n] = INPUT
            continue
        if n.op == "output":
            out = n.args[0]
            if not isinstance(out, torch.fx.Node) or out not in tensor:
                raise ExportError(f"{type(model).__name__}: forward must return one tensor, got {type(out).__name__}")
            out_name, out_shape = tensor[out], shape(out)
            break
        if n.op == "get_attr":
            raise ExportError(f"{n.target}: a tensor attribute used directly in forward is not supported; use a layer")
        value = values.get(n)
        if n.op == "call_module":
            target = str(n.target)
            if target in used_modules:
                raise ExportError(f"{target}: the layer is called twice in forward (shared weights); exported models "
                                  "use each layer once: make a second layer")
            used_modules[target] = n.name
            layer = gm.get_submodule(target)
            if len(n.args) != 1 or n.kwargs:
                raise ExportError(f"{target}: layers take one tensor input")
            x = source(n.args[0], n)
            sample_in = shape(n.args[0])
            if isinstance(layer, nn.AdaptiveAvgPool1d | nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool1d
                          | nn.AdaptiveMaxPool2d):
                new = [_adaptive_pool(target, layer, sample_in, shape(n))]
            else:
                new = layer_nodes(target, layer, sample_in, shape(n))
            node_shape = sample_in
            for node in new:  # element-wise nodes (quantizers, tables) keep their input's shape
                node_shape = node_shape if isinstance(node, Quantize | Table) else shape(n)
                x = emit(node, (x,), node_shape)
            tensor[n] = x
            continue
        kind = op_kind(n)
        if kind is None:
            raise ExportError(f"{n.name}: {describe_target(n)} is not supported by the fixed-point exporters "
                              f"(supported between layers: {'; '.join(SUPPORTED_FUNCTIONS)})")
        if kind == "meta":
            if isinstance(value, torch.Tensor):
                raise ExportError(f"{n.name}: indexing or slicing a tensor is not supported by the fixed-point "
                                  "exporters")
            continue  # sizes and shapes: only feed reshape, whose result shape is checked below
        if not isinstance(value, torch.Tensor):
            continue
        first = n.args[0] if n.args else None
        if kind == "identity":
            tensor[n] = source(first, n)
        elif kind == "add":
            if "alpha" in n.kwargs or len(n.args) > 2:
                raise ExportError(f"{n.name}: add with alpha is not supported; scale inside a layer instead")
            a, b = n.args[0], n.args[1]
            ins = (source(a, n), source(b, n))
            if shape(a) != shape(b):
                raise ExportError(f"{n.name}: adding tensors of shapes {shape(a)} and {shape(b)} (broadcasting) is "
                                  "not supported; the operands of a residual add must have one shape")
            tensor[n] = emit(Add(n.name), ins, shape(n))
        elif kind == "cat":
            parts = _arg(n, 0, "tensors", ())
            dim = int(_arg(n, 1, "dim", 0))
            rank = len(shape(n)) + 1
            dim = dim + rank if dim < 0 else dim
            if dim == 0:
                raise ExportError(f"{n.name}: concatenation along the batch axis is not supported")
            ins = tuple(source(p, n) for p in parts)
            tensor[n] = emit(Concat(n.name, axis=dim - 1), ins, shape(n)) if len(ins) > 1 else ins[0]
        elif kind in ("flatten", "reshape"):
            x = source(first, n)
            if kind == "flatten":
                start = int(_arg(n, 1, "start_dim", 0))
                end = int(_arg(n, 2, "end_dim", -1))
                if start != 1 or end != -1:
                    raise ExportError(f"{n.name}: only flatten(x, 1) (everything after the batch axis) is supported")
            elif len(shape(n)) != 1 or shape(n)[0] != math.prod(shape(first)):
                raise ExportError(f"{n.name}: {describe_target(n)} to per-sample shape {shape(n)} is not supported; "
                                  "only flattening to (batch, -1) is")
            tensor[n] = x if len(shape(first)) == 1 else emit(Flatten(n.name), (x,), shape(n))
        elif kind == "relu":
            tensor[n] = emit(ReLU(n.name), (source(first, n),), shape(n))
        elif kind == "mean":
            x = source(first, n)
            tensor[n] = emit(_mean_node(n, shape(first), shape(n)), (x,), shape(n))
    else:  # pragma: no cover - fx graphs always end with an output node
        raise ExportError("model: forward has no output")
    nodes, shapes = _live(nodes, shapes, out_name)
    graph = ExportGraph(sample, tuple(nodes), out_shape, tuple(shapes), out_name)
    _check_input(graph)
    return graph


def _adaptive_pool(name: str, layer: nn.Module, sample: tuple[int, ...], out: tuple[int, ...]) -> Pool:
    dims = 1 if isinstance(layer, nn.AdaptiveAvgPool1d | nn.AdaptiveMaxPool1d) else 2
    kind = "avg" if isinstance(layer, nn.AdaptiveAvgPool1d | nn.AdaptiveAvgPool2d) else "max"
    spatial = sample[1:]
    if any(o != 1 for o in out[1:]):
        raise ExportError(f"{name}: adaptive pooling is exported only with output size 1 (global pooling); got "
                          f"{out[1:]}")
    if kind == "avg" and math.prod(spatial) & (math.prod(spatial) - 1):
        raise ExportError(f"{name}: global average pooling over {math.prod(spatial)} positions divides by a "
                          "non-power of two, which fixed point cannot do exactly; make the spatial size a power "
                          "of two or use max pooling")
    return Pool(name, kind, dims, tuple(spatial), tuple(spatial), (0,) * dims)


def _mean_node(n: torch.fx.Node, sample: tuple[int, ...], out: tuple[int, ...]) -> Node:
    dims = _arg(n, 1, "dim", None)
    keep = bool(_arg(n, 2, "keepdim", False))
    rank = len(sample) + 1
    if dims is None:
        raise ExportError(f"{n.name}: a mean over every axis (batch included) is not supported; give the spatial axes")
    axes = sorted({(int(d) + rank) % rank for d in (dims if isinstance(dims, tuple | list) else (dims,))})
    spatial = list(range(2, rank))
    if axes != spatial or len(sample) < 2:
        raise ExportError(f"{n.name}: mean over axes {axes} is not supported; only the mean over every spatial axis "
                          f"({spatial}) is (global average pooling)")
    size = tuple(sample[1:])
    count = math.prod(size)
    if count & (count - 1):
        raise ExportError(f"{n.name}: global average pooling over {count} positions divides by a non-power of two, "
                          "which fixed point cannot do exactly; make the spatial size a power of two or use max "
                          "pooling")
    if keep:
        return Pool(n.name, "avg", len(size), size, size, (0,) * len(size))
    return GlobalPool(n.name, "avg", len(size), size)


def _live(nodes: list[Node], shapes: list[tuple[int, ...]], out: str) -> tuple[list[Node], list[tuple[int, ...]]]:
    """Only the nodes the output depends on (in order), the producer of ``out`` last."""
    need = {out}
    keep = [False] * len(nodes)
    for idx in range(len(nodes) - 1, -1, -1):
        if nodes[idx].output in need:
            keep[idx] = True
            need.update(nodes[idx].inputs)
    pairs = [(nd, sh) for nd, sh, k in zip(nodes, shapes, keep, strict=True) if k]
    if out == INPUT or not pairs:
        raise ExportError("model: the output does not depend on any layer")
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _check_input(graph: ExportGraph) -> None:
    readers = graph.consumers(INPUT)
    bad = [n for n in readers if not (isinstance(n, Quantize) and n.slot == "input")]
    if bad or not readers:
        first = (bad or [graph.nodes[0]])[0].name
        raise ExportError(f"{first}.input_quantizer: the model input must be quantized to fixed point (give the "
                          "first layer a fixed-point input quantizer); a float input has no ap_fixed/RTL form")
    fmt = readers[0].fmt  # type: ignore[attr-defined]
    for other in readers[1:]:
        o = other.fmt  # type: ignore[attr-defined]
        same = (o.round_mode, o.overflow_mode) == (fmt.round_mode, fmt.overflow_mode) and all(
            np.array_equal(a, b) for a, b in ((o.k, fmt.k), (o.i, fmt.i), (o.f, fmt.f)))
        if not same:
            raise ExportError(f"{other.name}.input_quantizer: the model input is read by several layers whose input "
                              f"quantizers differ ({fmt.describe()} in {readers[0].name}, {o.describe()} here); give "
                              "them the same format, or quantize the input once in a first layer")


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


@functools.singledispatch
def run_node(node: Node, *xs: np.ndarray) -> np.ndarray:
    """One node on its input batch(es) (float64, exact); one implementation per node kind (singledispatch)."""
    raise TypeError(f"{node.name}: unknown node {type(node).__name__}")


@run_node.register
def _(node: Quantize, x: np.ndarray) -> np.ndarray:
    return node.fmt.quantize(x)


@run_node.register
def _(node: Dense, x: np.ndarray) -> np.ndarray:
    y = x @ node.weight.T
    return y + node.bias if node.bias is not None else y


@run_node.register
def _(node: Conv, x: np.ndarray) -> np.ndarray:
    return _conv(node, torch.as_tensor(x)).numpy()


@run_node.register
def _(node: ReLU, x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


@run_node.register(Table)
@run_node.register(Softmax)
@run_node.register(LayerNorm)
def _(node: Table | Softmax | LayerNorm, x: np.ndarray) -> np.ndarray:
    return node.apply(x)


@run_node.register
def _(node: Pool, x: np.ndarray) -> np.ndarray:
    return _pool(node, torch.as_tensor(x)).numpy()


@run_node.register
def _(node: Flatten, x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)


@run_node.register
def _(node: Add, *xs: np.ndarray) -> np.ndarray:
    total = xs[0]
    for other in xs[1:]:
        total = total + other
    return total


@run_node.register
def _(node: Concat, *xs: np.ndarray) -> np.ndarray:
    return np.concatenate(xs, axis=node.axis + 1)


@run_node.register
def _(node: GlobalPool, x: np.ndarray) -> np.ndarray:
    axes = tuple(range(2, x.ndim))
    return x.mean(axis=axes) if node.kind == "avg" else x.max(axis=axes)


def run_reference(graph: ExportGraph, x: np.ndarray | torch.Tensor, *, trace: bool = False) -> Any:
    """Execute ``graph`` on a batch (N, *input_shape) in float64.

    Returns the output, or with ``trace`` the list of ``(node, output)`` pairs in graph order.
    """
    h = np.asarray(x.detach().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if h.shape[1:] != graph.input_shape:
        raise ExportError(f"input: expected samples of shape {graph.input_shape}, got {h.shape[1:]}")
    if not np.all(np.isfinite(h)):
        raise ExportError("input: contains NaN or infinity")
    env: dict[str, np.ndarray] = {INPUT: h}
    steps = []
    for node in graph.nodes:
        h = run_node(node, *(env[t] for t in node.inputs)) if node.inputs else run_node(node, h)
        env[node.output] = h
        if trace:
            steps.append((node, h))
    return steps if trace else env[graph.output or graph.nodes[-1].output]


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
