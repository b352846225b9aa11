"""The FINN path: QONNX that FINN executes exactly, its front end run for real, and a build folder for Vivado.

Contract (docs/export.md, "FINN"):

* :func:`export_finn_onnx` writes, from the export graph (the IR every exporter reads), the QONNX form FINN
  ingests: weights as ``Quant`` nodes (FINN folds them into integer weights), biases as constants, and every
  activation quantizer as a ``MultiThreshold`` node whose thresholds hwnas computes itself from the quantizer
  (:func:`thresholds`: the smallest input on the input's grid that reaches each code, for every ap_fixed
  rounding mode), then a ``Mul`` by the LSB. FINN's own handler for activation ``Quant`` nodes rounds its own
  way whatever ``rounding_mode`` says, and keeps wide ones as ``Quant``; thresholds leave it nothing to
  interpret. A ReLU followed by its quantizer is folded into the thresholds; a quantizer after a max pool or a
  flatten moves before it (both commute with a monotone element-wise function), as FINN's streamlining needs.
  1-D models are written as 2-D ones of height 1 (FINN's convolution and pooling layers are 2-D).
* :func:`finn_front_end` runs finn-plus's own transformations on it (no vendor tool): ``ConvertQONNXtoFINN``,
  tidy-up, ``Streamline`` (with convolution lowering, NHWC pooling, XNOR-popcount conversion as the builder's
  ``step_streamline``), the conversion to FINN's HW layers (MVAU, Thresholding, Requant, sliding window,
  padding, pooling) and a dataflow-partition check, then applies a folding (:func:`folding_config`) with
  FINN's ``ApplyConfig``. A MatMul left outside an MVAU, or a layer FINN cannot place in the dataflow
  partition, is an :class:`~hwnas.export.errors.ExportError` naming it.
* :func:`verify_finn` executes the HW-layer graph with FINN's Python execution sample by sample and compares
  with torch (0 mismatching samples, like the other paths); it reports FINN's ``get_exp_cycles`` per layer
  beside hwnas's FINN cost model.
* :func:`export_finn` writes ``finn/``: ``model.qonnx.onnx`` (the form above), ``folding_config.json`` (PE/SIMD
  per FINN node name of the converted graph), ``dataflow_build_config.json`` (a ``build_dataflow``
  configuration: one ``python -m finn.builder.build_dataflow`` command on a machine with Vivado makes the
  bitfile) and ``hwnas_finn.json`` (the layer ↔ node map and both cycle estimates).
* finn-plus is optional (it pins onnx/onnxruntime/protobuf versions and brevitas, whose setuptools pin
  conflicts with torch 2.13); without it the path is skipped with the install hint (docs/install.md).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ExportError, ToolMissingError
from .graph import (
    Conv,
    Dense,
    ExportGraph,
    FixedFormat,
    Flatten,
    Node,
    Pool,
    Quantize,
    ReLU,
    Table,
    extract,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .result import PathResult

__all__ = ["FINN_HINT", "FinnBuild", "execute_hw", "export_finn", "export_finn_onnx", "finn_front_end",
           "finn_missing", "folding_config", "matrix_layers", "thresholds", "verify_finn"]

FINN_HINT = ("finn-plus is not installed; install it beside hwnas with `pip install -r requirements-finn.txt` "
             "(docs/install.md: finn-plus 1.6.1 without brevitas, whose setuptools pin conflicts with torch 2.13)")
QONNX_DOMAIN = "qonnx.custom_op.general"
MAX_THRESHOLD_BITS = 16
"""Widest activation written as thresholds (2^16 - 1 per channel); FINN makes Requant layers of wide ones."""
REQUANT_BITS = 9
"""FINN's ``requant_bitwidth_threshold`` default: uniform thresholds this wide or wider become a Requant layer
(``floor(x·s + b + 0.5)``), which reproduces only evenly spaced thresholds."""
_OTHER_PATHS = "use the qonnx, hls4ml or RTL path, which carry it"


def finn_missing() -> str | None:
    """Why the FINN path cannot run here (finn-plus not importable), or None."""
    import importlib.util

    for name in ("finn", "qonnx"):
        try:
            if importlib.util.find_spec(name) is None:
                return FINN_HINT
        except (ImportError, ValueError):
            return FINN_HINT
    return None


# ----------------------------------------------------------------------------------------------- thresholds
def _codes(fmt: FixedFormat) -> tuple[int, int]:
    """The smallest and largest integer code of a uniform-width format (saturating)."""
    w = int(fmt.width.flat[0])
    if fmt.k.flat[0]:
        lo = -(2 ** (w - 1)) + (1 if fmt.overflow_mode == "SAT_SYM" else 0)
        return lo, 2 ** (w - 1) - 1
    return 0, 2 ** w - 1


def thresholds(fmt: FixedFormat, grid: np.ndarray | None) -> tuple[np.ndarray, int]:
    """``(T, cmin)``: per channel (axis 0 of ``fmt``) the thresholds of the quantizer, and its smallest code.

    ``T[c, j]`` is where code ``cmin + j + 1`` starts: with inputs on a grid of step ``grid[c]`` (a power of two)
    it is half a step below the smallest grid value that the quantizer maps to that code or higher, so
    ``x >= T`` decides exactly whatever scale FINN later divides out; with ``grid`` None (float32 inputs, the
    model input) it is the smallest float32 value that reaches the code. Every ap_fixed rounding mode changes
    code at one of ``(c-1)·lsb``, ``(c-½)·lsb`` or ``c·lsb`` (inclusive or not), so the candidates are the grid
    points at and just above those three; the quantizer itself (:meth:`FixedFormat.quantize`) picks.
    """
    if fmt.overflow_mode not in ("SAT", "SAT_SYM"):
        raise ExportError(f"{fmt.where}: overflow mode {fmt.overflow_mode} has no threshold form (thresholds "
                          f"saturate); {_OTHER_PATHS}")
    channels = fmt.shape[0] if fmt.shape else 1
    per = [fmt.k.reshape(channels, -1), fmt.i.reshape(channels, -1), fmt.f.reshape(channels, -1)]
    for a in per:
        if not np.all(a == a[:, :1]):
            raise ExportError(f"{fmt.where}: the activation format varies within a channel; FINN thresholds are "
                              f"per channel; {_OTHER_PATHS}")
    if not (np.all(fmt.width == fmt.width.flat[0]) and np.all(fmt.k == fmt.k.flat[0])):
        raise ExportError(f"{fmt.where}: the channels' widths or signs differ; a FINN layer has one output "
                          f"datatype; {_OTHER_PATHS}")
    w = int(fmt.width.flat[0])
    if w < 1 or w > MAX_THRESHOLD_BITS:
        raise ExportError(f"{fmt.where}: a {w}-bit activation; the FINN path writes 1 to {MAX_THRESHOLD_BITS}-bit "
                          f"activations as thresholds; {_OTHER_PATHS}")
    cmin, cmax = _codes(fmt)
    codes = np.arange(cmin + 1, cmax + 1, dtype=np.float64)
    out = np.empty((channels, len(codes)))
    for c in range(channels):
        k, i, f = (int(a[c, 0]) for a in per)
        lsb = 2.0 ** -f
        bases = [(codes - 1) * lsb, (codes - 0.5) * lsb, codes * lsb]
        if grid is None:
            cands = [v for b in bases for v in (np.float32(b), np.nextafter(np.float32(b), np.float32(np.inf)))]
        else:
            d = float(grid[c])
            cands = [v for b in bases for v in (np.ceil(b / d) * d, np.ceil(b / d) * d + d)]
        cand = np.stack([np.asarray(v, dtype=np.float64) for v in cands])  # (6, n)
        q = _quantize(cand, k, i, f, fmt)
        ok = q >= codes * lsb
        if not np.all(ok.any(axis=0)):
            raise ExportError(f"{fmt.where}: cannot place the thresholds of rounding mode {fmt.round_mode}")
        best = np.where(ok, cand, np.inf).min(axis=0)
        out[c] = best if grid is None else best - float(grid[c]) / 2
    return out, cmin


def _quantize(x: np.ndarray, k: int, i: int, f: int, fmt: FixedFormat) -> np.ndarray:
    from hwnas.quant.reference import quantize_fixed_np

    return quantize_fixed_np(x, np.int64(k), np.int64(i), np.int64(f), fmt.round_mode, fmt.overflow_mode)


def _dtype(fmt: FixedFormat) -> str:
    w = int(fmt.width.flat[0])
    return f"INT{w}" if fmt.k.flat[0] else f"UINT{w}"


# ------------------------------------------------------------------------------------------- normal form
@dataclass
class _Act:
    """One activation quantizer as FINN gets it: optionally a ReLU folded in, optionally bipolar."""

    name: str
    fmt: FixedFormat
    source: str
    """The graph tensor the quantizer read (its value bounds give the input grid)."""
    relu: bool = False
    bipolar: bool = False


def _normalise(graph: ExportGraph) -> list[Node | _Act]:
    """The chain's nodes in FINN's order: quantizers moved before max pools and flattens, ReLUs folded."""
    graph.require_chain("finn")
    nodes: list[Node | _Act] = []
    for node in graph.nodes:
        if isinstance(node, Quantize):
            if node.fmt.bipolar:  # the ±1 step of a bipolar quantizer (sign Quantize, "bipolar" Table, this)
                act = _last_act(nodes)
                if act is None or not act.bipolar:
                    raise ExportError(f"{node.name}: a bipolar format outside a bipolar quantizer")
                continue
            act = _Act(node.name, node.fmt, node.inputs[0])
            moved: list[Node] = []
            while nodes and (isinstance(nodes[-1], Flatten)
                             or (isinstance(nodes[-1], Pool) and nodes[-1].kind == "max")):
                if isinstance(nodes[-1], Flatten) and not node.fmt.uniform:
                    break
                moved.insert(0, nodes.pop())
            if moved and isinstance(moved[0], Pool) and not _channel_uniform(node.fmt):
                nodes.extend(moved)
                moved = []
            if nodes and isinstance(nodes[-1], ReLU):
                nodes.pop()
                act.relu = True
            act.fmt = _reshape_back(node.fmt, moved, graph)
            nodes.append(act)
            nodes.extend(moved)
        elif isinstance(node, Table) and node.kind == "bipolar":  # the sign step before it becomes ±1
            act = _last_act(nodes)
            if act is None:
                raise ExportError(f"{node.name}: a bipolar table without its sign quantizer")
            act.bipolar = True
        elif isinstance(node, Dense | Conv | ReLU | Pool | Flatten):
            nodes.append(node)
        else:
            raise ExportError(f"{node.name}: {type(node).__name__} has no FINN form in hwnas's FINN path (it carries "
                              f"Dense, Conv, ReLU, max/avg pooling, Flatten and quantizers); {_OTHER_PATHS}")
    return nodes


def _last_act(nodes: list[Node | _Act]) -> _Act | None:
    """The last quantizer, looking back over the max pools and flattens moved after it."""
    for node in reversed(nodes):
        if isinstance(node, _Act):
            return node
        if not isinstance(node, Flatten | Pool):
            return None
    return None


def _channel_uniform(fmt: FixedFormat) -> bool:
    c = fmt.shape[0] if fmt.shape else 1
    return all(np.all(a.reshape(c, -1) == a.reshape(c, -1)[:, :1]) for a in (fmt.k, fmt.i, fmt.f))


def _reshape_back(fmt: FixedFormat, moved: list[Node], graph: ExportGraph) -> FixedFormat:
    """The format for the tensor before the moved pools/flatten (channel-uniform, so any spatial size)."""
    if not moved:
        return fmt
    shape = graph.shape_of(moved[0].inputs[0])
    if fmt.uniform:
        def full(a: np.ndarray) -> np.ndarray:
            return np.full(shape, a.flat[0], dtype=np.int64)
        return FixedFormat(full(fmt.k), full(fmt.i), full(fmt.f), fmt.round_mode, fmt.overflow_mode, fmt.where)
    c = shape[0]
    def per(a: np.ndarray) -> np.ndarray:
        return np.broadcast_to(a.reshape(c, -1)[:, :1].reshape((c,) + (1,) * (len(shape) - 1)), shape).copy()
    return FixedFormat(per(fmt.k), per(fmt.i), per(fmt.f), fmt.round_mode, fmt.overflow_mode, fmt.where)


# ------------------------------------------------------------------------------------------------ emission
def _to2d(shape: tuple[int, ...], two_d: bool) -> tuple[int, ...]:
    return (shape[0], 1, *shape[1:]) if two_d and len(shape) == 2 else shape


def export_finn_onnx(model: nn.Module, input_shape: tuple[int, ...], *, graph: ExportGraph | None = None) -> Any:
    """The FINN form of ``model`` (module docstring) as an ``onnx.ModelProto`` (batch 1, FINN's convention)."""
    from onnx import TensorProto, helper

    from .qonnx import _fixed_static, _Graph, _value_bounds

    graph = graph if graph is not None else extract(model, tuple(input_shape))
    nodes = _normalise(graph)
    bounds = _value_bounds(graph)
    two_d = any(isinstance(n, Conv) and n.dims == 1 for n in nodes) or any(
        isinstance(n, Pool) and n.dims == 1 for n in nodes)
    g = _Graph()
    x = "global_in"
    bipolar = False  # the tensor x holds ±1 values
    for node in nodes:
        if isinstance(node, Conv) and bipolar and any(node.padding):
            raise ExportError(f"{node.name}: a padded convolution over a bipolar (±1) input; FINN pads with 0, "
                              "which its XNOR-popcount MVAU counts as −1 (torch adds nothing there): use padding 0 "
                              f"on convolutions after a bipolar activation, or {_OTHER_PATHS}")
        bipolar = (isinstance(node, _Act) and node.bipolar) or (bipolar and isinstance(node, Pool | Flatten))
        if isinstance(node, _Act):
            x = _emit_act(g, node, x, bounds, len(_to2d(node.fmt.shape, two_d)) + 1)
        elif isinstance(node, Dense):
            w = _fixed_static(g, node.weight_format, node.weight, transpose=True)
            x = g.node("MatMul", [x, w], "matmul")
            if node.bias is not None and np.any(node.bias != 0):
                x = g.node("Add", [x, g.const("bias", node.bias.reshape(1, -1))], "add")
        elif isinstance(node, Conv):
            weight, fmt = node.weight, node.weight_format
            kernel, stride, pad, dil = list(node.kernel), list(node.stride), list(node.padding), list(node.dilation)
            if node.dims == 1:
                weight = weight[:, :, None, :]
                fmt = fmt.reshaped(weight.shape)
                kernel, stride, pad, dil = [1, *kernel], [1, *stride], [0, *pad], [1, *dil]
            w = _fixed_static(g, fmt, weight)
            x = g.node("Conv", [x, w], "conv", kernel_shape=kernel, strides=stride, pads=pad * 2, dilations=dil,
                       group=node.groups)
            if node.bias is not None and np.any(node.bias != 0):
                x = g.node("Add", [x, g.const("bias", node.bias.reshape(1, -1, 1, 1))], "add")
        elif isinstance(node, ReLU):
            x = g.node("Relu", [x], "relu")
        elif isinstance(node, Pool):
            kernel, stride, pad = list(node.kernel), list(node.stride), list(node.padding)
            if node.dims == 1:
                kernel, stride, pad = [1, *kernel], [1, *stride], [0, *pad]
            if node.kind == "max":
                x = g.node("MaxPool", [x], "maxpool", kernel_shape=kernel, strides=stride, pads=pad * 2)
            else:
                x = g.node("AveragePool", [x], "avgpool", kernel_shape=kernel, strides=stride, pads=pad * 2,
                           count_include_pad=1)
        elif isinstance(node, Flatten):
            x = g.node("Flatten", [x], "flatten", axis=1)
        else:  # pragma: no cover - _normalise admits only the kinds above
            raise ExportError(f"{node.name}: no FINN form")
    out_shape = _to2d(graph.shape_of(graph.output), two_d)
    in_shape = _to2d(graph.input_shape, two_d)
    if g.nodes and g.nodes[-1].output[0] == x:
        g.nodes[-1].output[0] = "global_out"
        x = "global_out"
    onnx_graph = helper.make_graph(
        g.nodes, "hwnas_finn", [helper.make_tensor_value_info("global_in", TensorProto.FLOAT, [1, *in_shape])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, *out_shape])], initializer=g.inits)
    proto = helper.make_model(onnx_graph, producer_name="hwnas", opset_imports=[
        helper.make_opsetid("", 13), helper.make_opsetid(QONNX_DOMAIN, 1)])
    proto.ir_version = 8
    helper.set_model_props(proto, {"hwnas.finn.two_d": str(int(two_d))})
    return proto


def _layout(rank: int) -> dict[str, str]:
    """MultiThreshold's ``data_layout`` attribute for a tensor of ``rank`` (FINN's streamlining reads it)."""
    return {"data_layout": "NCHW"} if rank == 4 else {"data_layout": "NC"} if rank == 2 else {}


def _emit_act(g: Any, act: _Act, x: str, bounds: dict[str, Any], rank: int) -> str:
    """``MultiThreshold`` (+ ``Mul`` by the LSB) of one activation quantizer."""
    fmt = act.fmt
    channels = fmt.shape[0] if fmt.shape else 1
    b = bounds.get(act.source)
    grid = None
    if b is not None and np.all(np.isfinite(b.lo)) and np.all(np.isfinite(b.hi)):
        fin = np.asarray(b.f, dtype=np.float64).reshape(channels, -1).max(axis=1) if b.f.size else np.zeros(channels)
        grid = np.exp2(-fin)
    if act.relu and grid is None:  # an unbounded input: keep the ReLU as a node
        x = g.node("Relu", [x], "relu")
    if act.bipolar:
        # sign then ±1: x >= 0 → +1, else -1 (one threshold at 0, or half a grid step below it)
        t = np.full((channels, 1), 0.0 if grid is None else -float(np.min(grid)) / 2)
        if act.relu and grid is not None:
            t[:] = float(np.min(b.lo)) - 1.0
        y = g.node("MultiThreshold", [x, g.const("thresh", t)], "multithreshold", QONNX_DOMAIN,
                   out_dtype="BIPOLAR", out_scale=2.0, out_bias=-1.0, **_layout(rank))
        return y
    t, cmin = thresholds(fmt, grid)
    if act.relu and grid is not None:  # relu(x) >= T holds for every T <= 0
        t = np.where(t <= 0, float(np.min(b.lo)) - 1.0, t)
    if int(fmt.width.flat[0]) >= REQUANT_BITS and t.shape[1] > 1:
        steps = np.diff(t, axis=1)
        near = all(np.allclose(row, row[0], rtol=1e-2) for row in steps)  # FINN's test (InferRequantLayer)
        if near and not np.all(steps == steps[:, :1]):
            raise ExportError(f"{fmt.where}: a {int(fmt.width.flat[0])}-bit activation with rounding "
                              f"{fmt.round_mode}: its thresholds are spaced unevenly by less than 1 %, so FINN makes "
                              f"a Requant layer of it (activations of {REQUANT_BITS} bits or more), which rounds half "
                              f"up; use rounding RND or TRN for it, at most {REQUANT_BITS - 1} bits, or "
                              f"{_OTHER_PATHS}")
    if channels > 1 and np.all(t == t[:1]):
        t = t[:1]
    y = g.node("MultiThreshold", [x, g.const("thresh", t.astype(np.float32))], "multithreshold", QONNX_DOMAIN,
               out_dtype=_dtype(fmt), out_scale=1.0, out_bias=float(cmin), **_layout(rank))
    f = fmt.f.reshape(channels, -1)[:, 0].astype(np.float64)
    if np.all(f == f[0]):
        scale = np.array(2.0 ** -f[0])
    else:
        scale = np.exp2(-f).reshape((1, channels) + (1,) * (len(fmt.shape) - 1))
    return g.node("Mul", [y, g.const("lsb", scale)], "mul")


# ------------------------------------------------------------------------------------------------ front end
def _settings() -> None:
    """FINN's global settings, once per process, with its build folder in a temporary folder removed at exit.

    The front end and the Python execution write nothing there; FINN only insists on having one.
    """
    from finn.util import settings

    if getattr(settings, "_SETTINGS", None) is not None:
        return
    import atexit
    import shutil
    import tempfile

    build = tempfile.mkdtemp(prefix="hwnas-finn-build-")
    atexit.register(shutil.rmtree, build, True)
    os.environ["FINN_BUILD_DIR"] = build
    settings.initialize_dummy_settings()


@dataclass
class FinnBuild:
    """The result of :func:`finn_front_end`: the HW-layer model and how hwnas's layers map onto it."""

    model: Any
    """qonnx ``ModelWrapper`` of FINN's HW abstraction layers (executable with FINN's Python execution)."""
    specialized: Any = None
    """The same graph after FINN's ``SpecializeLayers`` for the part (``MVAU_hls_0``, ``Thresholding_rtl_0``, ...):
    the node names ``build_dataflow`` applies the folding config to, folded, for FINN's cycle/resource
    estimates."""
    layer_nodes: dict[str, str] = field(default_factory=dict)
    """hwnas Dense/Conv layer name → its specialized FINN node (``MVAU_hls_0``, ``VVAU_hls_0``, ...)."""
    folding: dict[str, dict[str, int]] = field(default_factory=dict)
    """The folding config (specialized FINN node name → PE/SIMD), as written to ``folding_config.json``."""
    exp_cycles: dict[str, int] = field(default_factory=dict)
    """FINN's ``get_exp_cycles`` per specialized HW node, at the folding."""
    resources: dict[str, dict[str, float]] = field(default_factory=dict)
    """FINN's resource estimates per specialized HW node (``res_estimation``: LUT, BRAM_18K, URAM, DSP)."""


def finn_front_end(proto: Any, *, folding: dict[str, tuple[int, int]] | None = None,
                   layers: list[str] | None = None, part: str = "xc7z020clg400-1") -> FinnBuild:
    """FINN's front end on the FINN form ``proto`` (module docstring).

    ``folding``: hwnas layer → (PE, SIMD); ``layers``: the hwnas Dense/Conv layer names in order (one MVAU/VVAU
    each); ``part``: the FPGA part FINN specializes the layers for (HLS or RTL variants, as its builder would).
    """
    if finn_missing():
        raise ToolMissingError(FINN_HINT)
    _settings()
    import finn.transformation.streamline.absorb as absorb
    from finn.transformation.fpgadataflow.convert_to_hw.binary_matrix_vector_activation import (
        InferBinaryMatrixVectorActivation,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.conv_inp_gen import InferConvInpGen
    from finn.transformation.fpgadataflow.convert_to_hw.fm_padding import InferFMPadding
    from finn.transformation.fpgadataflow.convert_to_hw.pool import InferPool
    from finn.transformation.fpgadataflow.convert_to_hw.quantized_matrix_vector_activation import (
        InferQuantizedMatrixVectorActivation,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.requant import InferRequantLayer
    from finn.transformation.fpgadataflow.convert_to_hw.thresholding import InferThresholdingLayer
    from finn.transformation.move_reshape import RemoveCNVtoFCFlatten
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from finn.transformation.streamline import Streamline
    from finn.transformation.streamline.reorder import MakeMaxPoolNHWC
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.bipolar_to_xnor import ConvertBipolarMatMulToXnorPopcount
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import (
        GiveReadableTensorNames,
        GiveUniqueNodeNames,
        RemoveStaticGraphInputs,
        RemoveUnusedTensors,
    )
    from qonnx.transformation.infer_data_layouts import InferDataLayouts
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul
    from qonnx.util.cleanup import cleanup_model

    m = cleanup_model(ModelWrapper(proto))
    m = m.transform(ConvertQONNXtoFINN())
    for t in (InferShapes(), FoldConstants(), GiveUniqueNodeNames(), GiveReadableTensorNames(), InferDataTypes(),
              RemoveStaticGraphInputs()):
        m = m.transform(t)
    m = m.transform(absorb.AbsorbScalarBiasIntoMultiThreshold())
    m = m.transform(Streamline())
    if m.get_nodes_by_op_type("Conv"):
        for t in (LowerConvsToMatMul(), MakeMaxPoolNHWC(), absorb.AbsorbTransposeIntoMultiThreshold(),
                  MakeMaxPoolNHWC(), absorb.AbsorbConsecutiveTransposes()):
            m = m.transform(t)
    m = m.transform(ConvertBipolarMatMulToXnorPopcount())
    m = m.transform(Streamline())
    m = m.transform(InferDataLayouts())
    m = m.transform(RemoveUnusedTensors())
    for t in (InferBinaryMatrixVectorActivation(), InferQuantizedMatrixVectorActivation(),
              InferRequantLayer(bitwidth_threshold=REQUANT_BITS), InferThresholdingLayer(), InferFMPadding(),
              InferPool(), InferConvInpGen(), RemoveCNVtoFCFlatten(), absorb.AbsorbConsecutiveTransposes()):
        m = m.transform(t)
    for t in (GiveUniqueNodeNames(), InferDataLayouts(), InferDataTypes(), InferShapes()):
        m = m.transform(t)
    left = [n.name for n in m.graph.node if n.op_type in ("MatMul", "XnorPopcountMatMul", "Conv", "Im2Col")]
    if left:
        raise ExportError(f"FINN could not turn {', '.join(left)} into HW layers after streamlining (a scale or "
                          "bias it cannot move, e.g. per-channel activation LSBs); use one LSB per activation "
                          f"tensor, or {_OTHER_PATHS}")
    _check_partition(m)
    from finn.analysis.fpgadataflow.res_estimation import res_estimation
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from finn.transformation.general import ApplyConfig
    from qonnx.custom_op.registry import getCustomOp

    spec = m.transform(SpecializeLayers(part)).transform(GiveUniqueNodeNames())
    hw = [n for n in m.graph.node if _is_hw(n)]
    hw_spec = [n for n in spec.graph.node if _is_hw(n)]
    if len(hw) != len(hw_spec):  # pragma: no cover - SpecializeLayers replaces node for node
        raise ExportError("FINN's SpecializeLayers changed the number of HW layers")
    rename = {a.name: b.name for a, b in zip(hw, hw_spec, strict=True)}
    mvaus = [n for n in m.graph.node if n.op_type in ("MVAU", "VVAU")]
    names = list(layers or [])
    if names and len(names) != len(mvaus):
        raise ExportError(f"FINN made {len(mvaus)} matrix layers of {len(names)} hwnas Dense/Conv layers "
                          f"({', '.join(n.name for n in mvaus)})")
    abstract = folding_config(m, folding or {}, {name: n.name for name, n in zip(names, mvaus, strict=True)})
    build = FinnBuild(model=m.transform(ApplyConfig(copy.deepcopy(abstract))))  # ApplyConfig edits its dict
    build.layer_nodes = {name: rename[n.name] for name, n in zip(names, mvaus, strict=True)}
    build.folding = {rename[k]: v for k, v in abstract.items()}
    build.specialized = spec.transform(ApplyConfig(copy.deepcopy(build.folding)))
    for n in build.specialized.graph.node:
        if _is_hw(n):
            build.exp_cycles[n.name] = int(getCustomOp(n).get_exp_cycles())
    est = build.specialized.analysis(lambda mw: res_estimation(mw, part))
    build.resources = {k: {r: float(v[r]) for r in ("LUT", "BRAM_18K", "URAM", "DSP") if r in v}
                       for k, v in est.items()}
    return build


def _is_hw(node: Any) -> bool:
    return str(node.domain).startswith("finn.custom_op.fpgadataflow")


def _check_partition(m: Any) -> None:
    """FINN's rule for a dataflow partition: no non-HW node between HW nodes."""
    from finn.analysis.fpgadataflow.unsupported_layers import unsupported_layers

    ok, node = m.analysis(unsupported_layers)
    if ok is False and node is not None:
        raise ExportError(f"FINN cannot place {node.name} ({node.op_type}) between its HW layers")


def folding_config(m: Any, folding: dict[str, tuple[int, int]], layer_nodes: dict[str, str]
                   ) -> dict[str, dict[str, int]]:
    """FINN's ``folding_config.json`` contents for the HW-layer model ``m``: PE/SIMD per node name.

    Each MVAU/VVAU takes its hwnas layer's (PE, SIMD) from ``folding`` (layers not named stay at 1, 1, as in
    hwnas's FINN cost model); the sliding window and padding feeding it take ``gcd(SIMD, channels)``, a
    standalone Thresholding after it ``gcd(PE, channels)``. An (PE, SIMD) FINN would refuse (not dividing the
    matrix height/width) is an :class:`ExportError` naming the layer.
    """
    from qonnx.custom_op.registry import getCustomOp

    config: dict[str, dict[str, int]] = {}
    for layer, node_name in layer_nodes.items():
        pe, simd = (int(v) for v in folding.get(layer, (1, 1)))
        node = m.get_node_from_name(node_name)
        inst = getCustomOp(node)
        if node.op_type == "MVAU":
            mh, mw = int(inst.get_nodeattr("MH")), int(inst.get_nodeattr("MW"))
        else:
            mh, mw = int(inst.get_nodeattr("Channels")), int(np.prod(inst.get_nodeattr("Kernel")))
        if mh % pe or mw % simd:
            raise ExportError(f"layer {layer}: PE={pe}, SIMD={simd} must divide the matrix height {mh} and width "
                              f"{mw} of {node.name}")
        config[node.name] = {"PE": pe, "SIMD": simd}
        prev = m.find_producer(node.input[0])
        while prev is not None and prev.op_type in ("ConvolutionInputGenerator", "FMPadding"):
            ch = int(getCustomOp(prev).get_nodeattr("IFMChannels" if prev.op_type != "FMPadding" else "NumChannels"))
            config[prev.name] = {"SIMD": math.gcd(simd, ch)}
            prev = m.find_producer(prev.input[0])
        nxt = m.find_consumer(node.output[0])
        if nxt is not None and nxt.op_type == "Thresholding":
            config[nxt.name] = {"PE": math.gcd(pe, int(getCustomOp(nxt).get_nodeattr("NumChannels")))}
    return config


# --------------------------------------------------------------------------------------------- verification
def matrix_layers(graph: ExportGraph) -> list[str]:
    """The Dense/Conv layer names in order: one FINN MVAU/VVAU each (``finn_front_end(layers=...)``)."""
    return [n.name for n in graph.nodes if isinstance(n, Dense | Conv)]


def execute_hw(m: Any, x: np.ndarray) -> np.ndarray:
    """FINN's Python execution of the HW-layer model, one sample at a time (FINN models take batch 1)."""
    from finn.core.onnx_exec import execute_onnx

    iname, oname = m.graph.input[0].name, m.graph.output[0].name
    shape = tuple(m.get_tensor_shape(iname))
    outs = [np.asarray(execute_onnx(m, {iname: s.reshape(shape).astype(np.float32)})[oname]).reshape(-1)
            for s in x]
    return np.stack(outs) if outs else np.zeros((0,))


def hwnas_estimate(model: nn.Module, input_shape: tuple[int, ...], folding: dict[str, tuple[int, int]],
                   target: str) -> dict[str, dict[str, float]]:
    """The FINN cost model of hwnas at ``folding`` on ``target``: cycles, LUTs, BRAM18, DSPs per stage row."""
    from hwnas.cost.finn import Folding, finn_estimate

    est = finn_estimate(model, target, tuple(input_shape),
                        folding={k: Folding(int(v[0]), int(v[1])) for k, v in folding.items()})
    return {r.name: {"cycles": int(r.cycles), "luts": float(r.luts), "bram18": float(r.bram18),
                     "dsps": float(r.dsps)} for r in est.rows}


def verify_finn(model: nn.Module, x: torch.Tensor, graph: ExportGraph, ref: np.ndarray, lsb: Any, workdir: Path,
                options: dict[str, Any]) -> PathResult:
    """The ``finn`` path of :mod:`hwnas.export.paths`: export, FINN's front end, FINN's Python execution."""
    from .result import compare

    t0 = time.perf_counter()
    from .folders import claim_folder

    build, files = _build(model, tuple(x.shape[1:]), graph, options)
    folder = claim_folder(Path(workdir) / "finn", replace=True)
    _write_files(folder, files)
    got = execute_hw(build.model, x.detach().cpu().numpy())
    return compare("finn", ref, got, lsb=lsb, seconds=time.perf_counter() - t0, artefact=str(folder))


def export_finn(model: nn.Module, input_shape: tuple[int, ...], out: str | Path, *, replace: bool = True,
                **options: Any) -> str:
    """Write the ``finn/`` folder (module docstring) at ``out`` (the rule of :mod:`hwnas.export.folders`)."""
    from .folders import check_folder, claim_folder

    out = Path(out)
    check_folder(out, replace=replace)
    build, files = _build(model, tuple(input_shape), None, options)
    folder = claim_folder(out, replace=replace)
    _write_files(folder, files)
    n = len(build.layer_nodes)
    return f"FINN folder written to {folder} ({n} MVAU/VVAU layers, folding_config.json, dataflow_build_config.json)"


def _write_files(folder: Path, files: dict[str, bytes]) -> None:
    from .folders import write_file

    for name, data in files.items():
        write_file(folder / name, data)


def _build(model: nn.Module, input_shape: tuple[int, ...], graph: ExportGraph | None,
           options: dict[str, Any]) -> tuple[FinnBuild, dict[str, bytes]]:
    """The FINN form, FINN's front end on it and the folder's files by name."""
    graph = graph if graph is not None else extract(model, input_shape)
    proto = export_finn_onnx(model, input_shape, graph=graph)
    folding = {k: (int(v[0]), int(v[1])) for k, v in (options.get("folding") or {}).items()}
    part = options.get("part") or "xc7z020clg400-1"
    build = finn_front_end(proto, folding=folding, layers=matrix_layers(graph), part=part)
    clock_ns = float(options.get("clock_period") or 10.0)
    cfg = {"output_dir": "build", "synth_clk_period_ns": clock_ns, "fpga_part": part,
           "folding_config_file": "folding_config.json", "standalone_thresholds": False,
           "requant_bitwidth_threshold": REQUANT_BITS, "minimize_bit_width": True,
           "generate_outputs": ["estimate_reports", "stitched_ip", "out_of_context_synth"]}
    record: dict[str, Any] = {"part": part, "layers": build.layer_nodes, "folding": build.folding,
                              "finn_exp_cycles": build.exp_cycles, "finn_resources": build.resources,
                              "command": "python -m finn.builder.build_dataflow (docs/export.md, FINN): run "
                                         "`finn build dataflow_build_config.json model.qonnx.onnx` in this folder"}
    target = options.get("target")
    if target:
        record["hwnas"] = hwnas_estimate(model, input_shape, folding, str(target))
    files = {"model.qonnx.onnx": proto.SerializeToString(),
             "folding_config.json": (json.dumps(build.folding, indent=2) + "\n").encode(),
             "dataflow_build_config.json": (json.dumps(cfg, indent=2) + "\n").encode(),
             "hwnas_finn.json": (json.dumps(record, indent=2) + "\n").encode()}
    return build, files
