"""Export a quantized model to QONNX: ONNX with ``Quant`` nodes (domain ``qonnx.custom_op.general``).

Contract:

* :func:`export_qonnx` reads a fixed-point model through the export graph (:func:`hwnas.export.graph.extract`,
  the IR every exporter reads: chains and DAGs — residual adds, concatenations, global pooling) and emits the
  ONNX nodes of each graph node, one function per node kind, wired by the graph's tensor names (the last ONNX
  node of a graph node writes the graph's tensor name, e.g. ``block1.conv1/input_q``): ``Quantize`` → ``Quant``
  (or the staged form below), ``Dense`` → ``MatMul`` (+ ``Add``) and ``Conv`` with ``Quant``-ed weight and bias
  initializers, ``ReLU`` → ``Relu``, ``Pool`` → ``MaxPool``/``AveragePool``, ``Flatten`` → ``Flatten``, ``Add`` →
  ``Add`` (chained for three or more operands), ``Concat`` → ``Concat(axis + 1)``, ``GlobalPool`` →
  ``GlobalAveragePool``/``GlobalMaxPool`` then ``Flatten`` to (N, C); ``Table`` is refused (below), except a
  bipolar quantizer's (``BipolarQuant``, below). A chain exports as one node group per layer in the order of
  :class:`hwnas.nn.QLayer`'s forward, as it always has.
* Models the export graph does not hold go through a walker that reads the torch layers itself and emits, per
  layer, the same node group (:func:`_layer`), one reader per model kind: the chain walker
  (:func:`_walk_chain`) reads an ``nn.Sequential`` chain — a model with a scaled-integer or float16 quantizer
  (or none at all), or a chain the graph refuses although QONNX carries it in float32 (a float, unquantized,
  model input, weight or bias; average pooling over a window that is not a power of two); the DAG walker
  (:func:`_walk_dag`) reads any other model with a scaled-integer or float16 quantizer (a PTQ'd residual
  network such as :func:`hwnas.tasks.ofdm.deeprx`): it traces ``forward`` with torch.fx as the export graph
  does (layers are leaves, a :class:`~hwnas.nn.QResidualBlock` is its convolutions, activations and add) and
  emits each layer call's node group and each functional node between layers (``x + y`` → ``Add``,
  ``torch.cat`` → ``Concat``, ``flatten``/``view(batch, -1)`` → ``Flatten``, ``relu`` → ``Relu``, the spatial
  ``mean`` → ``GlobalAveragePool`` [+ ``Flatten``]), wired by the data flow; the last ONNX node of a layer call
  writes ``<layer>/out``, of a functional node ``<fx node>/<op>``. Refused: a graph without any quantizer
  (``only nn.Sequential chains``) and a fixed-point graph the export graph refuses (the graph's reason).
  ``metadata_props`` key ``hwnas.qonnx.source`` of the file says which reader wrote it (``export graph``,
  ``chain walker: why`` or ``DAG walker: why``).
* A fixed-point quantizer (k, i, f) becomes ``Quant(x, scale=2^-f, zeropt=0, bitwidth=k+i+f)`` with
  ``signed=k`` and ``narrow`` for signed SAT_SYM (unsigned SAT_SYM is SAT). QONNX clips before it rounds and
  ap_fixed rounds before it saturates; for saturating modes both give the same value. Weights and biases are
  stored already quantized, so their ``Quant`` nodes are exact whatever the rounding and overflow mode;
  per-channel weights get a per-channel scale and the widest channel's width. Activations map their rounding
  mode to QONNX's where one ``Quant`` node is exact, float32 arithmetic included (RND_CONV → ROUND, TRN →
  FLOOR, TRN_ZERO → DOWN, RND_ZERO → HALF_DOWN). The other three go in stages, first to the half-LSB grid
  (which keeps every tie and makes the next steps exact in float32): RND (ties to +∞, the hwnas default) →
  ``Quant(FLOOR, 2^-(f+1))``, ``Add(+2^-(f+1))``, ``Quant(FLOOR)``; RND_MIN_INF → the mirror image with CEIL
  and ``Add(-2^-(f+1))``; RND_INF → ``Quant(DOWN, 2^-(f+1))``, ``Quant(HALF_UP)`` (QONNX's HALF_UP computes
  ``floor(|y| + 0.5)`` in float32 and rounds 0.49999997 up; on the half-LSB grid it cannot).
* A bipolar quantizer (:class:`~hwnas.quant.BipolarQuantizer`, ±1) becomes ``BipolarQuant(x, scale=1)``, which
  qonnx executes as ``where(x >= 0, 1, -1)``, the quantizer's own rule: on a weight or bias (the graph's
  ``FixedFormat.bipolar``) over the stored ±1 values; on an activation in place of the graph's three steps (the
  sign ``Quantize`` and the ±1 ``Quantize`` around the ``"bipolar"`` ``Table`` emit nothing, the table emits the
  ``BipolarQuant`` of the sign step's input).
* A scaled-integer quantizer becomes ``Quant(x, scale, zeropt, bits)`` with its own scale(s), signedness and
  narrow range, rounding ROUND (half to even, as torch rounds); activations must be symmetric (zero point 0).
* A float16 quantizer (:class:`~hwnas.quant.Float16Quantizer`) becomes ``FloatQuant(x, scale=1, exponent
  bits 5, mantissa bits 10, exponent bias 15, max_val 65504)`` with ``has_inf``, ``has_subnormal``, no
  saturation, rounding ROUND: qonnx's execution equals ``x.half().float()`` on every float32 (ties to even,
  subnormals, overflow to ±inf); on a weight or bias over the stored float16 values.
* The walkers' element-wise nodes (``Add``, ``Relu``, ``Quant``) round as torch's float32 ones do. With
  non-power-of-two scales (scaled integers, float16 values) the sums of ``MatMul``/``Conv``/``AveragePool``/
  ``GlobalAveragePool`` are not exact in float32: onnxruntime adds in another order than torch, about one ULP
  apart, which a later quantizer hides unless the sum lies within those ULPs of its rounding boundary (then
  that code differs by one); a float tensor that is not quantized again (logits) differs by the ULPs.
* QONNX executes in float32. A residual ``Add`` and a global average pool's sum are exact only while every
  operand, partial sum and result fits 24 significant bits; the exporter bounds them statically from the
  formats and the weights (:func:`_value_bounds`: interval arithmetic per element, the finest grid of the
  operands) and refuses the node otherwise. ``MatMul``/``Conv``/``AveragePool`` accumulate in float32 as torch
  does, unchecked as before (:func:`hwnas.export.graph.float32_exact` reports where an input needs more).
* What QONNX cannot express raises :class:`ExportError` naming the layer and slot and pointing to the hls4ml
  or RTL path: per-parameter widths, per-channel activation widths that differ, WRAP or SAT_ZERO overflow,
  signed 1-bit fixed-point values {-1, 0} (QONNX executes a signed 1-bit ``Quant`` as bipolar ±1), staged
  roundings wider than 22 bits, table activations, sums that outgrow float32, asymmetric scaled-int activations,
  unfolded BatchNorm, layers it does not know and (DAG walker) operations between layers other than those above.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwnas.errors import first_line
from hwnas.nn import QActivation, QConv1d, QConv2d, QLinear
from hwnas.nn.activation import QAvgPool1d, QAvgPool2d, QMaxPool1d, QMaxPool2d
from hwnas.nn.base import QLayer
from hwnas.quant import BipolarQuantizer, FixedPointQuantizer, Float16Quantizer, ScaledIntQuantizer
from hwnas.quant.base import Quantizer

from .errors import ExportError
from .folders import write_file
from .graph import (
    INPUT,
    Add,
    Concat,
    Conv,
    Dense,
    ExportGraph,
    FixedFormat,
    Flatten,
    GlobalPool,
    Node,
    Pool,
    Quantize,
    ReLU,
    Table,
    extract,
    value_format,
)

__all__ = ["QONNX_DOMAIN", "SOURCE_KEY", "ExportError", "execute_qonnx", "export_qonnx", "verify_qonnx"]

QONNX_DOMAIN = "qonnx.custom_op.general"
SOURCE_KEY = "hwnas.qonnx.source"
"""``metadata_props`` key naming the reader that wrote the file (``export graph``, ``chain walker: why`` or
``DAG walker: why``)."""
_OPSET = 13
_IR_VERSION = 8

# ap_fixed rounding modes QONNX executes exactly in one Quant node (float32 arithmetic included)
_ROUNDING = {"RND_CONV": "ROUND", "TRN": "FLOOR", "TRN_ZERO": "DOWN", "RND_ZERO": "HALF_DOWN"}
# the others in stages: Quant to half an LSB (pre), optionally add ±half an LSB, Quant to the LSB (final)
_TIE_STAGES = {"RND": ("FLOOR", 0.5, "FLOOR"), "RND_MIN_INF": ("CEIL", -0.5, "CEIL"),
               "RND_INF": ("DOWN", 0.0, "HALF_UP")}
_FLOAT32_BITS = 24
_OTHER_PATHS = "use the hls4ml or RTL export, which carry it exactly"


class _Graph:
    """Nodes and initializers under construction, with unique tensor names."""

    def __init__(self) -> None:
        from onnx import helper

        self.helper = helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0

    def name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def const(self, stem: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], stem: str, domain: str = "", **attrs: Any) -> str:
        out = self.name(stem)
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=out, domain=domain, **attrs))
        return out

    def rename_last(self, tensor: str, name: str, since: int) -> str:
        """Give ``tensor`` the name ``name`` when the last node (added after ``since`` nodes) writes it."""
        if len(self.nodes) > since and self.nodes[-1].output[0] == tensor:
            self.nodes[-1].output[0] = name
            self.nodes[-1].name = name
            return name
        return tensor


# ------------------------------------------------------------------------------------------ Quant nodes
def _varying_axes(*arrays: np.ndarray) -> set[int]:
    axes: set[int] = set()
    for a in arrays:
        for ax in range(a.ndim):
            if not np.all(a == a.take([0], axis=ax)):
                axes.add(ax)
    return axes


def _check_overflow(fmt: FixedFormat) -> bool:
    mode = fmt.overflow_mode
    if mode not in ("SAT", "SAT_SYM"):
        raise ExportError(f"{fmt.where}: overflow mode {mode} cannot be expressed by a QONNX Quant node "
                          f"(it saturates); {_OTHER_PATHS}")
    return mode == "SAT_SYM"


def _quant(g: _Graph, x: str, scale: np.ndarray, bits: int, signed: bool, narrow: bool, mode: str) -> str:
    """A ``Quant`` node of ``x`` with zero point 0."""
    return g.node("Quant", [x, g.const("scale", scale), g.const("zeropt", np.zeros(())),
                            g.const("bitwidth", np.array(float(bits)))], "quant", QONNX_DOMAIN,
                  signed=int(signed), narrow=int(narrow), rounding_mode=mode)


def _bipolar(g: _Graph, x: str) -> str:
    """A ``BipolarQuant`` node of ``x`` with scale 1: ``+1`` where ``x >= 0``, else ``-1``."""
    return g.node("BipolarQuant", [x, g.const("scale", np.ones(()))], "bipolar", QONNX_DOMAIN)


def _float16(g: _Graph, x: str) -> str:
    """A ``FloatQuant`` node of ``x`` in IEEE half precision: what ``x.half().float()`` computes.

    5 exponent bits (bias 15), 10 mantissa bits, subnormals down to 2^-24, rounding half to even, no saturation:
    a value that rounds above 65504 becomes ±inf (``has_inf``), as torch's cast does.
    """
    ins = [x, g.const("scale", np.ones(())), g.const("exponent_bitwidth", np.array(5.0)),
           g.const("mantissa_bitwidth", np.array(10.0)), g.const("exponent_bias", np.array(15.0)),
           g.const("max_val", np.array(65504.0))]
    return g.node("FloatQuant", ins, "floatquant", QONNX_DOMAIN, rounding_mode="ROUND", has_inf=1, has_nan=1,
                  has_subnormal=1, saturation=0)


def _fixed_static(g: _Graph, fmt: FixedFormat, value: np.ndarray, transpose: bool = False) -> str:
    """An already-quantized parameter (``value``, in ``fmt``) followed by a ``Quant`` node that reproduces it."""
    if fmt.bipolar:  # the ±1 values of a bipolar quantizer
        return _bipolar(g, g.const("param", value.T if transpose else value))
    shape = tuple(value.shape)
    k, i, f = fmt.k, fmt.i, fmt.f
    # the stored values are final (wrapped or saturated already), so the overflow mode does not matter here
    narrow = fmt.overflow_mode == "SAT_SYM"
    varying = _varying_axes(f, i, k)
    if varying - {0}:
        raise ExportError(f"{fmt.where}: bit-widths vary within a channel (per-parameter); QONNX Quant carries one "
                          f"width per tensor and one scale per channel; {_OTHER_PATHS}")
    signed = bool(np.any(k > 0))
    narrow = narrow and signed  # ap_ufixed SAT_SYM is plain SAT
    width = int(np.max(i + f)) + (1 if signed else 0)
    if width < 1:
        width = 1
    data = np.asarray(value, dtype=np.float64)
    if signed and width == 1:
        if not np.any(data != 0):  # all zero (a pruned bias): a constant, exact without Quant
            return g.const("param", data.T if transpose else data)
        raise ExportError(f"{fmt.where}: signed 1-bit values execute as bipolar ±1 in QONNX; {_OTHER_PATHS}")
    scale = np.exp2(-f.astype(np.float64))
    if 0 in varying:
        scale = scale[(slice(None),) + (0,) * (len(shape) - 1)].reshape((-1,) + (1,) * (len(shape) - 1))
    else:
        scale = np.array(scale.flat[0])
    if transpose:
        data, scale = data.T, (scale.T if scale.ndim else scale)
    return _quant(g, g.const("param", data), scale, width, signed, narrow, "ROUND")


def _fixed_activation(g: _Graph, fmt: FixedFormat, x: str) -> str:
    """``Quant`` node(s) applying ``fmt`` (the per-sample shape) to the activation tensor ``x``."""
    sample = fmt.shape
    k, i, f = fmt.k, fmt.i, fmt.f
    narrow = _check_overflow(fmt)
    varying = _varying_axes(f, i, k)
    width = k + i + f
    if varying - {0} or (0 in varying and not (np.all(width == width.flat[0]) and np.all(k == k.flat[0]))):
        raise ExportError(f"{fmt.where}: the activation quantizer's widths or signs differ between elements; QONNX "
                          f"Quant carries one width and sign per tensor; {_OTHER_PATHS}")
    signed = bool(k.flat[0] > 0)
    narrow = narrow and signed  # ap_ufixed SAT_SYM is plain SAT
    bits = int(width.flat[0])
    if bits < 1:
        raise ExportError(f"{fmt.where}: zero-width (pruned) activation; {_OTHER_PATHS}")
    if signed and bits == 1:
        raise ExportError(f"{fmt.where}: signed 1-bit values execute as bipolar ±1 in QONNX; {_OTHER_PATHS}")
    rnd = fmt.round_mode
    scale = np.exp2(-f.astype(np.float64))
    if 0 in varying:
        scale = scale.reshape(sample)[(slice(None),) + (0,) * (len(sample) - 1)]
        scale = scale.reshape((1, -1) + (1,) * (len(sample) - 1))
    else:
        scale = np.array(scale.flat[0])
    if rnd in _ROUNDING:
        return _quant(g, x, scale, bits, signed, narrow, _ROUNDING[rnd])
    if bits + 2 > _FLOAT32_BITS:
        raise ExportError(f"{fmt.where}: {bits}-bit activation with rounding mode {rnd} needs a {bits + 2}-bit "
                          f"intermediate, more than float32 carries exactly; {_OTHER_PATHS}")
    pre, offset, final = _TIE_STAGES[rnd]
    # values on the half-LSB grid keep every tie of the final rounding and are exact in float32
    x = _quant(g, x, scale / 2, bits + 2, signed, False, pre)
    if offset:
        x = g.node("Add", [x, g.const("half_lsb", offset * scale)], "add")
    return _quant(g, x, scale, bits, signed, narrow, final)


# ------------------------------------------------------------------------------- float32 bounds (DAG nodes)
@dataclass(frozen=True)
class _Bound:
    """Per-element bounds of a tensor's values: ``lo <= v <= hi`` and ``v`` a multiple of ``2^-f``."""

    lo: np.ndarray
    hi: np.ndarray
    f: np.ndarray

    @property
    def codes(self) -> np.ndarray:
        """The largest integer code ``|v|·2^f`` per element (float32 is exact up to 2^24)."""
        return np.maximum(np.abs(self.lo), np.abs(self.hi)) * np.exp2(self.f)


def _grid(values: np.ndarray) -> np.ndarray:
    """Fractional bits per output channel (axis 0) that every constant of the channel needs."""
    f = value_format(values).f
    return f.reshape(len(f), -1).max(axis=1) if f.size else np.zeros(len(f), dtype=np.int64)


def _bound_weighted(node: Dense | Conv, x: _Bound) -> _Bound:
    wp, wn = np.maximum(node.weight, 0.0), np.minimum(node.weight, 0.0)
    fw = _grid(node.weight) + int(np.max(x.f))
    fb = _grid(node.bias) if node.bias is not None else fw
    f_out = np.maximum(fw, fb)
    bias = node.bias if node.bias is not None else np.zeros(len(node.weight))
    if isinstance(node, Dense):
        hi = x.hi @ wp.T + x.lo @ wn.T + bias
        lo = x.lo @ wp.T + x.hi @ wn.T + bias
        return _Bound(lo, hi, np.broadcast_to(f_out, hi.shape))
    fn = F.conv1d if node.dims == 1 else F.conv2d

    def conv(a: np.ndarray, w: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(a[None], dtype=torch.float64)
        return fn(t, torch.as_tensor(w), None, node.stride, node.padding, node.dilation, node.groups)[0].numpy()

    spatial = (1,) * node.dims
    hi = conv(x.hi, wp) + conv(x.lo, wn) + bias.reshape(-1, *spatial)
    lo = conv(x.lo, wp) + conv(x.hi, wn) + bias.reshape(-1, *spatial)
    return _Bound(lo, hi, np.broadcast_to(f_out.reshape(-1, *spatial), hi.shape))


def _bound_pool(node: Pool, x: _Bound) -> _Bound:
    mx = F.max_pool1d if node.dims == 1 else F.max_pool2d

    def pool(a: np.ndarray, fn: Callable[..., torch.Tensor]) -> np.ndarray:
        return fn(torch.as_tensor(a[None], dtype=torch.float64), node.kernel, node.stride, node.padding)[0].numpy()

    f = pool(x.f.astype(np.float64), mx)
    if node.kind == "max":
        return _Bound(-pool(-x.lo, mx), pool(x.hi, mx), f)
    avg = F.avg_pool1d if node.dims == 1 else F.avg_pool2d
    return _Bound(pool(x.lo, avg), pool(x.hi, avg), f + math.log2(math.prod(node.kernel)))


def _bound_quantize(fmt: FixedFormat, x: _Bound) -> _Bound:
    """The format's range; narrowed to the input's bounds (± one LSB of rounding) where it saturates (monotone)."""
    lsb = np.exp2(-fmt.f.astype(np.float64))
    top = np.exp2(fmt.i.astype(np.float64))
    lo, hi = -fmt.k * top, top - lsb
    if fmt.overflow_mode in ("SAT", "SAT_SYM"):
        x_lo, x_hi = np.nan_to_num(x.lo, nan=-np.inf), np.nan_to_num(x.hi, nan=np.inf)
        lo, hi = np.clip(x_lo - lsb, lo, hi), np.clip(x_hi + lsb, lo, hi)
    return _Bound(lo, hi, fmt.f.astype(np.float64))


def _value_bounds(graph: ExportGraph) -> dict[str, _Bound]:
    """Static per-element bounds of every tensor of ``graph`` (the model input is unbounded)."""
    inf = np.full(graph.input_shape, np.inf)
    env = {INPUT: _Bound(-inf, inf, np.zeros(graph.input_shape))}
    for node in graph.nodes:
        xs = [env[t] for t in node.inputs]
        x = xs[0]
        if isinstance(node, Quantize):
            b = _bound_quantize(node.fmt, x)
        elif isinstance(node, Dense | Conv):
            b = _bound_weighted(node, x)
        elif isinstance(node, ReLU):
            b = _Bound(np.maximum(x.lo, 0.0), np.maximum(x.hi, 0.0), x.f)
        elif isinstance(node, Pool):
            b = _bound_pool(node, x)
        elif isinstance(node, Flatten):
            b = _Bound(x.lo.reshape(-1), x.hi.reshape(-1), x.f.reshape(-1))
        elif isinstance(node, Add):
            b = _Bound(sum(a.lo for a in xs), sum(a.hi for a in xs), np.maximum.reduce([a.f for a in xs]))
        elif isinstance(node, Concat):
            b = _Bound(*(np.concatenate([getattr(a, k) for a in xs], axis=node.axis) for k in ("lo", "hi", "f")))
        elif isinstance(node, GlobalPool):
            axes = tuple(range(1, x.lo.ndim))
            f = x.f.max(axis=axes)
            if node.kind == "avg":
                b = _Bound(x.lo.mean(axis=axes), x.hi.mean(axis=axes), f + math.log2(math.prod(node.size)))
            else:
                b = _Bound(x.lo.max(axis=axes), x.hi.max(axis=axes), f)
        else:  # a table (tanh/sigmoid in [-1, 1], float32 values) or a kind added later: no bound
            shape = graph.shape_of(node.output)
            b = _Bound(np.full(shape, -np.inf), np.full(shape, np.inf), np.zeros(shape))
        env[node.output] = b
    return env


def _require_float32(node: Node, what: str, codes: np.ndarray) -> None:
    worst = float(np.max(np.where(np.isnan(codes), np.inf, codes))) if codes.size else 0.0  # nan: unbounded
    if worst > 2.0 ** _FLOAT32_BITS:
        bits = "unbounded" if not math.isfinite(worst) else f"up to {math.ceil(math.log2(worst + 1))}"
        raise ExportError(f"{node.name}: {what} needs {bits} significant bits, more than the {_FLOAT32_BITS} "
                          "float32 carries exactly, and QONNX executes in float32; quantize the operands (an "
                          f"input or output quantizer on the branches) to fewer bits or {_OTHER_PATHS}")


# ---------------------------------------------------------------------------------------- graph emitters
@dataclass
class _Emit:
    """What the emitters share: the ONNX graph under construction, the export graph and its value bounds."""

    g: _Graph
    graph: ExportGraph
    bounds: dict[str, _Bound] | None = None

    def bound(self, tensor: str) -> _Bound:
        if self.bounds is None:
            self.bounds = _value_bounds(self.graph)
        return self.bounds[tensor]


def _emit_quantize(e: _Emit, node: Quantize, xs: list[str]) -> str:
    producer = e.graph.producer(node.inputs[0])
    readers = e.graph.consumers(node.output)
    if (node.fmt.bipolar and isinstance(producer, Table) and producer.kind == "bipolar") or (
            readers and all(isinstance(r, Table) and r.kind == "bipolar" for r in readers)):
        return xs[0]  # a bipolar quantizer's sign and ±1 steps: the table's BipolarQuant does both
    return _fixed_activation(e.g, node.fmt, xs[0])


def _params(e: _Emit, node: Dense | Conv, transpose: bool) -> tuple[str, str | None]:
    w = _fixed_static(e.g, node.weight_format, node.weight, transpose)
    if node.bias is None or node.bias_format is None:
        return w, None
    return w, _fixed_static(e.g, node.bias_format, node.bias)


def _emit_dense(e: _Emit, node: Dense, xs: list[str]) -> str:
    w, b = _params(e, node, transpose=True)
    y = e.g.node("MatMul", [xs[0], w], "matmul")
    return e.g.node("Add", [y, b], "add") if b is not None else y


def _emit_conv(e: _Emit, node: Conv, xs: list[str]) -> str:
    w, b = _params(e, node, transpose=False)
    return e.g.node("Conv", [xs[0], w] + ([b] if b is not None else []), "conv", kernel_shape=list(node.kernel),
                    strides=list(node.stride), pads=list(node.padding) * 2, dilations=list(node.dilation),
                    group=node.groups)


def _emit_relu(e: _Emit, node: ReLU, xs: list[str]) -> str:
    return e.g.node("Relu", xs, "relu")


def _emit_table(e: _Emit, node: Table, xs: list[str]) -> str:
    if node.kind == "bipolar":  # xs[0] is the sign step's input (_emit_quantize passed it through)
        return _bipolar(e.g, xs[0])
    raise ExportError(f"{node.name}: {node.kind} (table) has no exact QONNX form (a lookup table over the input "
                      f"codes); {_OTHER_PATHS}")


def _emit_pool(e: _Emit, node: Pool, xs: list[str]) -> str:
    attrs = {"kernel_shape": list(node.kernel), "strides": list(node.stride), "pads": list(node.padding) * 2}
    if node.kind == "max":
        return e.g.node("MaxPool", xs, "maxpool", **attrs)
    # the graph holds average pooling with padding only where the padding counts (count_include_pad=True)
    return e.g.node("AveragePool", xs, "avgpool", count_include_pad=1, **attrs)


def _emit_flatten(e: _Emit, node: Flatten, xs: list[str]) -> str:
    return e.g.node("Flatten", xs, "flatten", axis=1)


def _emit_add(e: _Emit, node: Add, xs: list[str]) -> str:
    ops = [e.bound(t) for t in node.inputs]
    total = ops[0]
    _require_float32(node, f"the operand {node.inputs[0]}", total.codes)
    y = xs[0]
    for t, b, x in zip(node.inputs[1:], ops[1:], xs[1:], strict=True):
        _require_float32(node, f"the operand {t}", b.codes)
        total = _Bound(total.lo + b.lo, total.hi + b.hi, np.maximum(total.f, b.f))
        _require_float32(node, "the sum", total.codes)
        y = e.g.node("Add", [y, x], "add")
    return y


def _emit_concat(e: _Emit, node: Concat, xs: list[str]) -> str:
    return e.g.node("Concat", xs, "concat", axis=node.axis + 1)


def _emit_global_pool(e: _Emit, node: GlobalPool, xs: list[str]) -> str:
    if node.kind == "avg":  # the sum over the positions (then a power-of-two division, exact) must fit float32
        x = e.bound(node.inputs[0])
        axes = tuple(range(1, x.lo.ndim))
        peak = np.maximum(np.abs(x.lo), np.abs(x.hi)).sum(axis=axes) * np.exp2(x.f.max(axis=axes))
        _require_float32(node, "the sum over the pooled positions", peak)
    y = e.g.node("GlobalAveragePool" if node.kind == "avg" else "GlobalMaxPool", xs, "gpool")
    return e.g.node("Flatten", [y], "flatten", axis=1)  # (N, C, 1[, 1]) -> (N, C)


_EMITTERS: dict[type[Node], Callable[[_Emit, Any, list[str]], str]] = {
    Quantize: _emit_quantize, Dense: _emit_dense, Conv: _emit_conv, ReLU: _emit_relu, Table: _emit_table,
    Pool: _emit_pool, Flatten: _emit_flatten, Add: _emit_add, Concat: _emit_concat, GlobalPool: _emit_global_pool,
}
"""The ONNX emitter of each export-graph node kind: ``(context, node, ONNX input names) -> ONNX output name``."""


def _from_graph(g: _Graph, graph: ExportGraph) -> tuple[str, tuple[int, ...]]:
    """Emit ``graph``'s nodes into ``g``; returns the output tensor's ONNX name and per-sample shape."""
    e = _Emit(g, graph)
    env = {INPUT: INPUT}
    for node in graph.nodes:
        emit = _EMITTERS.get(type(node))
        if emit is None:
            raise ExportError(f"{node.name}: {type(node).__name__} nodes are not supported by the QONNX exporter; "
                              f"{_OTHER_PATHS}")
        since = len(g.nodes)
        out = emit(e, node, [env[t] for t in node.inputs])
        env[node.output] = g.rename_last(out, node.output, since)
    return env[graph.output or graph.nodes[-1].output], graph.output_shape


# ------------------------------------------------------------------------------------------ chain walker
def _kif(q: FixedPointQuantizer, shape: tuple[int, ...], where: str) -> FixedFormat:
    """The quantizer's format over ``shape`` as the quantizer holds it (pruned elements keep their values)."""
    k, i, f = (t.detach().double().expand(shape).numpy() if t.dim() else np.full(shape, float(t))
               for t in q.kif())
    return FixedFormat(k.astype(np.int64), i.astype(np.int64), f.astype(np.int64), q.round_mode.value,
                       q.overflow_mode.value, where)


def _scaled_static(g: _Graph, q: ScaledIntQuantizer, value: torch.Tensor, transpose: bool) -> str:
    data = value.detach().double().numpy()
    scale = q.scale.detach().double().numpy()
    zp = q.zero_point.detach().double().numpy()
    if transpose:
        data, scale, zp = data.T, scale.T if scale.ndim == 2 else scale, zp.T if zp.ndim == 2 else zp
    return g.node("Quant", [g.const("param", data), g.const("scale", scale), g.const("zeropt", zp),
                            g.const("bitwidth", np.array(float(q.bits)))], "quant", QONNX_DOMAIN,
                  signed=int(q.signed), narrow=int(q.narrow and q.signed), rounding_mode="ROUND")


def _quant_static(g: _Graph, q: Any, value: torch.Tensor, where: str, transpose: bool = False) -> str:
    """An already-quantized parameter followed by a ``Quant`` node that reproduces it exactly."""
    if isinstance(q, BipolarQuantizer):
        data = value.detach().double().numpy()
        return _bipolar(g, g.const("param", data.T if transpose else data))
    if isinstance(q, ScaledIntQuantizer):
        return _scaled_static(g, q, value, transpose)
    if isinstance(q, Float16Quantizer):  # the stored values are float16 already: FloatQuant reproduces them
        data = value.detach().double().numpy()
        return _float16(g, g.const("param", data.T if transpose else data))
    if not isinstance(q, FixedPointQuantizer):
        raise ExportError(f"{where}: {type(q).__name__} has no QONNX Quant form; {_OTHER_PATHS}")
    return _fixed_static(g, _kif(q, tuple(value.shape), where), value.detach().double().numpy(), transpose)


def _quant_activation(g: _Graph, q: Any, x: str, sample: tuple[int, ...], where: str) -> str:
    if q is None:
        return x
    if isinstance(q, BipolarQuantizer):
        return _bipolar(g, x)
    if isinstance(q, ScaledIntQuantizer):
        return _scaled_activation(g, q, x, where)
    if isinstance(q, Float16Quantizer):
        return _float16(g, x)
    if not isinstance(q, FixedPointQuantizer):
        raise ExportError(f"{where}: {type(q).__name__} has no QONNX Quant form; {_OTHER_PATHS}")
    return _fixed_activation(g, _kif(q, sample, where), x)


def _scaled_activation(g: _Graph, q: ScaledIntQuantizer, x: str, where: str) -> str:
    if q.scale is None:
        raise ExportError(f"{where}: the scaled-int quantizer is not calibrated (run hwnas.quant.calibrate)")
    if torch.any(q.zero_point != 0):
        raise ExportError(f"{where}: asymmetric activation quantization (zero point ≠ 0) is not exported: QONNX "
                          "adds the zero point before rounding, torch after, which can differ by one code; use "
                          "symmetric=True")
    scale = q.scale.detach().double().numpy()
    scale = scale.reshape((1, *scale.shape)) if scale.ndim else scale
    return _quant(g, x, scale, q.bits, q.signed, q.narrow and q.signed, "ROUND")


def _weights(g: _Graph, layer: QLayer, name: str, transpose: bool = False) -> tuple[str, str | None]:
    w = layer.quantized_weight().detach()  # a fused BatchNorm folded in; the weight itself if not quantized
    qw = layer.weight_quantizer
    if qw is None:
        w_name = g.const("weight", w.numpy().T if transpose else w.numpy())
    else:
        w_name = _quant_static(g, qw, w, f"{name}.weight_quantizer", transpose)
    if getattr(layer, "bias", None) is None:
        return w_name, None
    b = layer.quantized_bias().detach()
    qb = layer.bias_quantizer
    if qb is None:
        return w_name, g.const("bias", b.numpy())
    return w_name, _quant_static(g, qb, b, f"{name}.bias_quantizer")


def _pool_attrs(layer: nn.Module, dims: int) -> dict[str, Any]:
    def tup(v: Any) -> list[int]:
        return list(v) if isinstance(v, tuple | list) else [int(v)] * dims

    kernel = tup(layer.kernel_size)
    stride = tup(layer.stride if layer.stride is not None else layer.kernel_size)
    pad = tup(layer.padding)
    if getattr(layer, "ceil_mode", False):
        raise ExportError(f"{type(layer).__name__}: ceil_mode is not supported")
    return {"kernel_shape": kernel, "strides": stride, "pads": pad + pad}


def _layer(g: _Graph, name: str, layer: nn.Module, x: str, sample: tuple[int, ...]) -> str:
    if isinstance(layer, nn.Identity | nn.Dropout):
        return x
    if isinstance(layer, nn.Flatten):
        if layer.start_dim != 1 or layer.end_dim != -1:
            raise ExportError(f"{name}: only Flatten(start_dim=1) is supported")
        return g.node("Flatten", [x], "flatten", axis=1)
    if isinstance(layer, nn.ReLU):
        return g.node("Relu", [x], "relu")
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        raise ExportError(f"{name}: BatchNorm must be folded first (hwnas.nn.fold_batchnorm)")
    if not isinstance(layer, QLayer):
        raise ExportError(f"{name}: {type(layer).__name__} is not supported by the QONNX exporter")
    x = _quant_activation(g, layer.input_quantizer, x, sample, f"{name}.input_quantizer")
    if isinstance(layer, QLinear):
        w, b = _weights(g, layer, name, transpose=True)
        y = g.node("MatMul", [x, w], "matmul")
        if b is not None:
            y = g.node("Add", [y, b], "add")
    elif isinstance(layer, QConv1d | QConv2d):
        if isinstance(layer.padding, str):
            raise ExportError(f"{name}: string padding {layer.padding!r} is not supported; give integers")
        if layer.padding_mode != "zeros":
            raise ExportError(f"{name}: padding_mode {layer.padding_mode!r} is not supported")
        w, b = _weights(g, layer, name)
        pads = list(layer.padding)
        y = g.node("Conv", [x, w] + ([b] if b is not None else []), "conv", kernel_shape=list(layer.kernel_size),
                   strides=list(layer.stride), pads=pads + pads, dilations=list(layer.dilation), group=layer.groups)
    elif isinstance(layer, QActivation):
        ok, why = layer.exportable
        if not ok or layer.kind not in ("relu", "identity"):
            raise ExportError(f"{name}: {layer.kind} ({layer.mode}) has no exact QONNX form ({why or 'table'}); "
                              f"{_OTHER_PATHS}")
        y = g.node("Relu", [x], "relu") if layer.kind == "relu" else x
    elif isinstance(layer, QMaxPool1d | QMaxPool2d):
        y = g.node("MaxPool", [x], "maxpool", **_pool_attrs(layer, 1 if isinstance(layer, QMaxPool1d) else 2))
    elif isinstance(layer, QAvgPool1d | QAvgPool2d):
        attrs = _pool_attrs(layer, 1 if isinstance(layer, QAvgPool1d) else 2)
        y = g.node("AveragePool", [x], "avgpool", count_include_pad=int(layer.count_include_pad), **attrs)
    else:
        raise ExportError(f"{name}: {type(layer).__name__} is not supported by the QONNX exporter")
    return _quant_activation(g, layer.output_quantizer, y, _out_sample(layer, sample), f"{name}.output_quantizer")


def _out_sample(layer: nn.Module, sample: tuple[int, ...]) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(layer(torch.zeros((1, *sample))).shape[1:])


def _chain(model: nn.Module) -> list[tuple[str, nn.Module]]:
    if isinstance(model, nn.Sequential):
        out: list[tuple[str, nn.Module]] = []
        for name, child in model.named_children():
            out += [(f"{name}.{n}" if n else name, m) for n, m in _chain(child)] if isinstance(
                child, nn.Sequential) else [(name, child)]
        return out
    if isinstance(model, QLayer) or not list(model.children()):
        return [("", model)]
    raise ExportError(f"{type(model).__name__}: only nn.Sequential chains of layers are exported to QONNX when the "
                      "model has no quantizer (graphs are read by the export graph, for fixed-point models, and by "
                      "the DAG walker, for scaled-integer or float16 ones); quantize it or wrap the layers in "
                      "nn.Sequential")


def _walk_chain(g: _Graph, model: nn.Module, sample: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """Emit the layers of a chain read from torch (models the export graph does not hold); see the module doc."""
    with torch.no_grad():
        model(torch.zeros((1, *sample)))  # weight quantizers derive their integer bits from the weights
    x = INPUT
    for name, layer in _chain(model):
        x_next = _layer(g, name or type(layer).__name__, layer, x, sample)
        sample = _out_sample(layer, sample)
        x = x_next
    if x == INPUT:
        x = g.node("Identity", [x], "identity")
    return x, sample


# -------------------------------------------------------------------------------------------- DAG walker
def _dag_tensor(g: _Graph, names: set[str], stem: str, tensor: str, since: int) -> str:
    """Name the ONNX tensor of one fx node ``stem`` (``#k`` appended when taken) when a node just wrote it."""
    name, k = stem, 1
    while name in names:
        k += 1
        name = f"{stem}#{k}"
    out = g.rename_last(tensor, name, since)
    if out == name:
        names.add(name)
    return out


def _walk_dag(g: _Graph, model: nn.Module, sample: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """Emit a model that is not a chain, read from torch through torch.fx (see the module docstring).

    ``forward`` is traced as :func:`hwnas.export.graph.extract` traces it (layers are leaves, so a
    :class:`~hwnas.nn.QResidualBlock` is its convolutions, activations and add); each layer call emits the chain
    walker's node group (:func:`_layer`), each functional node between layers its ONNX node: ``x + y`` → ``Add``,
    ``torch.cat`` → ``Concat``, ``flatten(x, 1)``/``view(batch, -1)`` → ``Flatten``, ``relu`` → ``Relu``, the mean
    over the spatial axes → ``GlobalAveragePool`` (then ``Flatten`` unless ``keepdim``). The last ONNX node of a
    layer call writes ``<layer>/out``, of a functional node ``<fx node>/<op>``.
    """
    from .graph import SUPPORTED_FUNCTIONS, ValueRecorder, describe_target, op_kind, trace

    gm = trace(model)
    if sum(n.op == "placeholder" for n in gm.graph.nodes) != 1:
        raise ExportError(f"{type(model).__name__}: forward must take exactly one tensor to be exported")
    rec = ValueRecorder(gm)
    try:
        with torch.no_grad():  # weight quantizers derive their ranges from the weights; the shapes of each tensor
            rec.run(torch.zeros((1, *sample)))
    except Exception as err:  # an uncalibrated quantizer, a shape that does not fit, ...
        where = next((str(n.target) if n.op == "call_module" else n.name for n in gm.graph.nodes
                      if n.op not in ("placeholder", "output") and n not in rec.values), type(model).__name__)
        raise ExportError(f"{where}: cannot run on a sample of shape {sample}: {first_line(err)}") from err

    def shape(n: Any) -> tuple[int, ...]:
        return tuple(rec.values[n].shape[1:])

    env: dict[torch.fx.Node, str] = {}
    names: set[str] = set()

    def source(a: Any, n: torch.fx.Node) -> str:
        if not isinstance(a, torch.fx.Node) or a not in env:
            raise ExportError(f"{n.name}: {describe_target(n)} with a constant operand ({a!r}) is not exported to "
                              "QONNX; fold constants into a layer's weights or bias")
        return env[a]

    for n in gm.graph.nodes:
        if n.op == "placeholder":
            env[n] = INPUT
            continue
        if n.op == "output":
            out = n.args[0]
            if not isinstance(out, torch.fx.Node) or out not in env:
                raise ExportError(f"{type(model).__name__}: forward must return one tensor, got {type(out).__name__}")
            y = env[out]
            return (g.node("Identity", [y], "identity") if y == INPUT else y), shape(out)
        if n.op == "get_attr":
            raise ExportError(f"{n.target}: a tensor attribute used directly in forward is not exported to QONNX; "
                              "use a layer")
        since = len(g.nodes)
        if n.op == "call_module":
            target = str(n.target)
            if len(n.args) != 1 or n.kwargs:
                raise ExportError(f"{target}: layers take one tensor input")
            y = _layer(g, target, gm.get_submodule(target), source(n.args[0], n), shape(n.args[0]))
            env[n] = _dag_tensor(g, names, f"{target}/out", y, since)
            continue
        kind = op_kind(n)
        if kind is None:
            raise ExportError(f"{n.name}: {describe_target(n)} is not supported by the QONNX exporter (supported "
                              f"between layers: {'; '.join(SUPPORTED_FUNCTIONS)})")
        value = rec.values.get(n)
        if kind == "meta" and isinstance(value, torch.Tensor):
            raise ExportError(f"{n.name}: indexing or slicing a tensor is not supported by the QONNX exporter")
        if kind == "meta" or not isinstance(value, torch.Tensor):
            continue  # sizes and shapes: they only feed reshape, whose result shape is checked below
        first = n.args[0] if n.args else None
        if kind == "identity":
            env[n] = source(first, n)
            continue
        if kind == "add":
            if "alpha" in n.kwargs or len(n.args) != 2:
                raise ExportError(f"{n.name}: add with alpha is not supported; scale inside a layer instead")
            a, b = source(n.args[0], n), source(n.args[1], n)
            if shape(n.args[0]) != shape(n.args[1]):
                raise ExportError(f"{n.name}: adding tensors of shapes {shape(n.args[0])} and {shape(n.args[1])} "
                                  "(broadcasting) is not supported; the operands of a residual add must have one shape")
            y = g.node("Add", [a, b], "add")  # element-wise float32, rounded as torch rounds it
        elif kind == "cat":
            parts = [source(p, n) for p in _arg(n, 0, "tensors", ())]
            dim = int(_arg(n, 1, "dim", 0))
            dim = dim + len(shape(n)) + 1 if dim < 0 else dim
            if dim == 0:
                raise ExportError(f"{n.name}: concatenation along the batch axis is not supported")
            y = g.node("Concat", parts, "concat", axis=dim) if len(parts) > 1 else parts[0]
        elif kind in ("flatten", "reshape"):
            x = source(first, n)
            if kind == "flatten" and (int(_arg(n, 1, "start_dim", 0)), int(_arg(n, 2, "end_dim", -1))) != (1, -1):
                raise ExportError(f"{n.name}: only flatten(x, 1) (everything after the batch axis) is supported")
            if kind == "reshape" and shape(n) != (math.prod(shape(first)),):
                raise ExportError(f"{n.name}: {describe_target(n)} to per-sample shape {shape(n)} is not supported; "
                                  "only flattening to (batch, -1) is")
            y = x if len(shape(first)) == 1 else g.node("Flatten", [x], "flatten", axis=1)
        elif kind == "relu":
            y = g.node("Relu", [source(first, n)], "relu")
        else:  # mean
            x = source(first, n)
            dims = _arg(n, 1, "dim", None)
            rank = len(shape(first)) + 1
            axes = None if dims is None else sorted(
                {(int(d) + rank) % rank for d in (dims if isinstance(dims, tuple | list) else (dims,))})
            if axes != list(range(2, rank)) or rank < 3:
                raise ExportError(f"{n.name}: mean over axes {axes} is not supported; only the mean over every "
                                  f"spatial axis ({list(range(2, rank))}) is (global average pooling)")
            y = g.node("GlobalAveragePool", [x], "gpool")
            if not _arg(n, 2, "keepdim", False):
                y = g.node("Flatten", [y], "flatten", axis=1)  # (N, C, 1[, 1]) -> (N, C)
        env[n] = _dag_tensor(g, names, f"{n.name}/{kind}", y, since)
    raise ExportError("model: forward has no output")  # pragma: no cover - fx graphs end with an output node


def _arg(n: torch.fx.Node, index: int, key: str, default: Any) -> Any:
    return n.args[index] if len(n.args) > index else n.kwargs.get(key, default)


def _not_fixed_point(model: nn.Module) -> list[str]:
    """The class names of ``model``'s quantizers that are not fixed point (scaled integers, float16), sorted."""
    return sorted({type(q).__name__ for q in model.modules()
                   if isinstance(q, Quantizer) and not isinstance(q, FixedPointQuantizer | BipolarQuantizer)})


def _source(model: nn.Module, sample: tuple[int, ...]) -> ExportGraph | str:
    """The export graph of a fixed-point model, or why a walker exports it (module docstring)."""
    other = _not_fixed_point(model)
    if other:
        return f"{', '.join(other)} (not fixed point)"
    if not any(isinstance(m, Quantizer) for m in model.modules()):
        return "no quantizer"
    try:
        return extract(model, sample)
    except ExportError as err:
        if not _is_chain(model):
            raise  # no walker reads a fixed-point graph: the export graph's reason is the one that helps
        return f"not in the export graph ({err})"


def _is_chain(model: nn.Module) -> bool:
    try:
        _chain(model)
    except ExportError:
        return False
    return True


def export_qonnx(model: nn.Module, input_shape: tuple[int, ...], path: str | os.PathLike[str] | None = None,
                 *, batch_size: int = 1, replace: bool = True, graph: ExportGraph | None = None) -> Any:
    """The QONNX ``onnx.ModelProto`` of ``model`` for per-sample ``input_shape``; also written to ``path``.

    The model is put in eval mode and read through the export graph (the chain or DAG walker for what the graph
    does not hold; module docstring). Raises :class:`ExportError` naming the layer for anything QONNX cannot express
    exactly. Written atomically (temporary file, then rename) with :func:`hwnas.export.folders.write_file`: an
    existing file is overwritten only with ``replace`` (the command line's ``--force``); a folder at ``path``
    raises :class:`~hwnas.export.folders.FolderError`. ``graph``: the model's export graph when the caller
    already extracted it (verification), so it is not traced twice.
    """
    from onnx import TensorProto, checker, helper

    model.eval()
    sample = tuple(int(d) for d in input_shape)
    source = graph if graph is not None else _source(model, sample)
    g = _Graph()
    if isinstance(source, ExportGraph):
        out, out_shape = _from_graph(g, source)
        how = "export graph"
    elif _is_chain(model) or not _not_fixed_point(model):  # a graph without quantizers: _walk_chain refuses it
        out, out_shape = _walk_chain(g, model, sample)
        how = f"chain walker: {source}"
    else:
        out, out_shape = _walk_dag(g, model, sample)
        how = f"DAG walker: {source}"
    graph = helper.make_graph(
        g.nodes, "hwnas", [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [batch_size, *sample])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [batch_size, *out_shape])], g.inits)
    proto = helper.make_model(graph, producer_name="hwnas", opset_imports=[
        helper.make_opsetid("", _OPSET), helper.make_opsetid(QONNX_DOMAIN, 1)])
    proto.ir_version = _IR_VERSION
    helper.set_model_props(proto, {SOURCE_KEY: how})
    checker.check_model(proto)
    if path is not None:
        write_file(path, proto.SerializeToString(), replace=replace)
    return proto


def execute_qonnx(proto: Any, x: np.ndarray) -> np.ndarray:
    """Run an exported model with qonnx's executor (after qonnx's cleanup) on a batch ``x`` (N, ...).

    The executor runs ``Quant`` nodes with qonnx's own implementation and standard nodes with onnxruntime,
    one node at a time; the batch size of the graph is set to ``len(x)``.
    """
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    x = np.ascontiguousarray(x, dtype=np.float32)
    wrapper = cleanup_model(ModelWrapper(proto), override_inpsize=len(x))
    out = execute_onnx(wrapper, {wrapper.graph.input[0].name: x})
    return np.asarray(out[wrapper.graph.output[0].name])


def verify_qonnx(model: nn.Module, x: torch.Tensor, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Export ``model``, execute the export on ``x`` and count mismatching samples against torch (expected 0).

    Returns ``{"path": "qonnx", "samples", "mismatches", "max_abs_diff", "first_mismatch"}`` (the index of
    the first differing sample, or None).
    """
    proto = export_qonnx(model, tuple(x.shape[1:]), path)  # also puts the model in eval mode
    with torch.no_grad():
        ref = model(x).detach().double().numpy()
    got = execute_qonnx(proto, x.detach().numpy()).astype(np.float64).reshape(ref.shape)
    bad = np.flatnonzero(np.any((got != ref).reshape(len(ref), -1), axis=1))
    return {"path": "qonnx", "samples": len(ref), "mismatches": int(bad.size),
            "max_abs_diff": float(np.max(np.abs(got - ref))) if got.size else 0.0,
            "first_mismatch": int(bad[0]) if bad.size else None}
