"""CPU latency lookup tables from operator profiling with onnxruntime (HA-NAS style).

Contract:

* :func:`profile_operators` times single-operator ONNX models (built with ``onnx.helper``) on the
  machine at hand, over a grid of shapes (:func:`default_grid`, ~13,300 operators with the int8 kinds, or
  :func:`quick_grid` for tests), and returns a :class:`LatencyTable`: operator key -> microseconds of one
  ``InferenceSession.run``, plus the :func:`machine_description` and the session settings.
* Every timing uses the same fixed session (:func:`session_options`): CPU execution provider,
  ``intra_op_num_threads=threads`` (1 by default), ``inter_op_num_threads=1``, sequential execution,
  ``ORT_ENABLE_ALL`` graph optimizations (fusions and the NCHWc layout transform, as real inference
  uses), the input fed as a numpy array through ``run``, the calling thread pinned to one CPU
  (:func:`pinned`, the last usable one by default). A timing is the median of single-run wall times
  (``time.perf_counter_ns``) after warm-up runs, counting only runs made while the CPU was quiet
  (:class:`QuietTimer`: shared/virtual machines have phases in which everything runs ~1.5× slower).
* :meth:`LatencyTable.predict_operator` returns the measured value for a key in the table; otherwise it
  interpolates multilinearly, in the raw parameters, between the measured grid points around the query
  (channels, output positions, kernel taps; stride, pooling window and linear rows select a measured
  group). Multilinear interpolation is exact for any cost that is a sum of products of those parameters
  (MACs, input/output/weight sizes, a constant), so it only errs where a kernel's efficiency changes
  between grid points. Queries outside the measured range are interpolated at the nearest point of the
  range and scaled by a per-kind cost model ``c0 + c1·MACs + c2·inputs + c3·outputs + c4·weights
  (+ c5·im2col)`` fitted by non-negative least squares (relative error) on the table; queries in a cell
  with an unmeasured corner, or in an unmeasured group, scale the nearest measured point the same way.
  (Held-out grid points: interpolation had about half the error of the fitted model alone.)
* :func:`predict_latency` reads a model's data flow (:func:`model_operators`: the torch.fx trace of
  :func:`hwnas.export.graph.trace`, layers as leaves, run once on a zero input, batch 1): every called
  operator layer and the functional operations between layers — a residual ``x + y`` (kind ``add``: ONNX
  ``Add``), ``torch.cat`` (``concat``: ``Concat``), ``x.mean(spatial axes)`` (``gavgpool``: what
  ``torch.onnx.export`` writes for it, ``ReduceMean``), ``torch.relu``, ``torch.flatten``/``view``/
  ``reshape`` (``flatten``). It predicts each operator and sums: total = the cost of a session call
  without nodes (the run time ``overhead_us`` of a 1-element ``Identity`` model minus one node,
  ``node_us``, the executor's per-node cost measured with chains of 1-element Relus,
  :func:`measure_node_cost`) + per node its predicted time minus the overhead plus one ``node_us``. Graph
  rewrites of ``ORT_ENABLE_ALL`` are mirrored along the data flow: an activation that reads a convolution's
  or linear layer's output, when nothing else reads it, is fused into it (ReLU then costs nothing, tanh and
  sigmoid their element-wise compute); on machines where onnxruntime uses the blocked NCHWc layout for 2-D
  convolutions and pools, layout reorders (their measured time above the overhead, plus one node) are
  charged once per tensor and layout where a reader needs the other layout, and taken out of single-op
  entries that paid them (:func:`nchwc_block`); there an ``add`` of two blocked tensors is fused into a
  blocked convolution whose output it alone reads (the convolution's ``Sum`` input, costing the add's
  per-element work) together with a ReLU after it, and a channel ``concat`` of whole channel blocks stays
  blocked. Identity activations and dropout export to no node and cost 0. A BatchNorm right after a
  convolution or linear layer is folded into it first (:func:`hwnas.nn.fold_batchnorm`, as hwnas deploys
  it; onnxruntime fuses a Conv+BatchNorm pair the same way); one anywhere else raises
  :class:`UnsupportedLayerError`. With ``precision="float"`` (the default) quantizers inside hwnas layers are
  ignored: the prediction is for the float graph of the same architecture (see below for ``"deployed"``).
  An unknown leaf module, another functional operation (or a constant operand, a mean over other axes) and
  a ``forward`` torch.fx cannot trace raise :class:`UnsupportedLayerError` naming it. A table without
  measurements of a kind the model needs — a table profiled before the ``add``/``concat``/``gavgpool``
  kinds existed, for a model with joins — raises :class:`MissingKindError` (an
  :class:`UnsupportedLayerError`) naming the layer and the kind and asking to profile the table again;
  such a table still loads and predicts chain models exactly as before. (No estimate from the element-wise
  kinds: a binary add, a copy per part and a reduction are other kernels than a unary activation, and a
  guessed cost would silently enter a search objective.)
* :func:`measure_latency` exports a model's float graph (hwnas quantizers left out, on a copy) with
  ``torch.onnx.export`` (TorchScript exporter, ``dynamo=False``; the dynamo exporter, which needs
  ``onnxscript``, only as a fallback) and times it with the same session settings and statistic.
* Latency that depends on the bits (``precision="deployed"`` in :func:`predict_latency`, :func:`measure_latency`,
  :func:`measure_latencies`, :func:`measure_nodes`). What the CPU can exploit: onnxruntime's x86 (and Arm) CPU
  kernels compute in int8 (uint8 activations × int8 weights, int32 accumulation) or in float; there is no
  integer kernel for wider data and none narrower for activations. So a convolution or linear layer whose
  weight quantizer and input are fixed-point or scaled-int of at most 8 bits (:func:`int8_layers`: the widest
  group, ``element_bits().max()``; a layer without an input quantizer reads its producer's output width along
  the data flow, as :mod:`hwnas.nn.metrics` passes ``upstream_bits``) deploys as int8 — 2- to 7-bit layers run
  as int8 too, as fast as 8-bit ones (they save memory, not time) — and wider (and float16, and float) layers
  run as float. (onnxruntime's ``MatMulNBits`` takes 4-bit weights, but with float activations — it is a
  weight-only kernel for large language-model matrices: on this project's machine it was never faster than the
  int8 ``QGemm`` from 64×16 to 4,096×512 — 36 µs, or 17 µs in its int8 compute mode, against 15 µs at
  1,024×256; 68 against 69 µs at 4,096×512 — and there is no 4-bit convolution. 4-bit layers are therefore
  priced as int8.)
  :func:`export_deployed_onnx` is the deployed model: the float graph (BatchNorm folded) quantized with
  ``onnxruntime.quantization.quantize_static`` (QDQ, per-channel int8 weights, uint8 activations calibrated on
  a few random inputs) at the int8 layers only; onnxruntime then fuses ``DequantizeLinear`` → node →
  ``QuantizeLinear`` into ``QLinearConv``/``QGemm``, runs int8 convolutions and pools channels-last (NHWC, with
  uint8 ``Transpose`` nodes where the layout changes), fuses adds, sigmoids, average pools and concatenations
  between int8 nodes into their int8 kernels, drops ReLUs before a ``QuantizeLinear`` and moves a
  ``QuantizeLinear`` above a max pool (which then runs on uint8: on NCHW data a much slower kernel). Its
  ``WeightBiasQuantization`` optimizer, which would also quantize the float weights of a wider layer between two
  int8 layers, is turned off in deployed sessions (:data:`DEPLOYED_DISABLED_OPTIMIZERS`), so layers over 8 bits
  stay float. :func:`predict_latency` mirrors all that along the
  data flow (:func:`_deployed_plan`, :class:`_Int8Flow`) with the table's int8 kinds (:data:`INT8_KINDS`,
  profiled on the same grid points as the float kinds, with the same session, timer and statistic): int8 nodes
  are priced with their int8 kind, float ones as before, and every float ↔ int8 boundary (model input and
  output included) pays a ``quantize``/``dequantize`` row, every layout change a ``qtranspose_in``/``_out``
  row. Tables profiled before the int8 kinds existed load and predict ``"float"`` exactly as before and raise
  :class:`MissingKindError` naming the kind for ``"deployed"``. Calibration factors (:func:`calibrate`) are
  fitted on float predictions: with ``"deployed"`` they apply to the float kinds and the session overhead,
  the int8 kinds are used as measured.

Known limit: single operators are timed with their weights hot in the CPU caches. Inside a model, the
other layers' data can evict a large layer's weights (hundreds of KB to a few MB, typically the first
dense layer after a flatten) between runs; such layers are then predicted too fast.

Requires ``onnx`` and ``onnxruntime`` (imported lazily, so ``import hwnas.cost`` works without them).
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import math
import os
import platform
import random
import re
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError

__all__ = [
    "CALIBRATION_GROUPS",
    "DEPLOYED_DISABLED_OPTIMIZERS",
    "FORMAT",
    "INPUT",
    "INT8_KINDS",
    "OP_KINDS",
    "PRECISIONS",
    "LatencyPrediction",
    "LatencyRow",
    "LatencyTable",
    "MissingKindError",
    "ModelOperator",
    "NodeTiming",
    "Operator",
    "ProfileGrid",
    "QuietTimer",
    "UnsupportedLayerError",
    "calibrate",
    "calibration_group",
    "default_grid",
    "export_deployed_onnx",
    "export_onnx",
    "int8_layers",
    "int8_nhwc",
    "machine_description",
    "measure_latencies",
    "measure_latency",
    "measure_node_cost",
    "measure_nodes",
    "model_operators",
    "nchwc_block",
    "pinned",
    "predict_latency",
    "profile_operators",
    "quick_grid",
    "session_options",
]

FORMAT = "hwnas-cpu-latency/1"
"""Identifier written into (and required from) saved tables."""

_OPSET = 17
_IR_VERSION = 8  # what opset 17 needs; newer onnx packages default to IR versions onnxruntime may reject

# operator kind -> parameter names (all per sample; the batch size is a table-wide setting)
_CONV1D = ("cin", "cout", "length", "kernel", "stride", "padding")
_DW1D = ("channels", "length", "kernel", "stride", "padding")
_CONV2D = ("cin", "cout", "height", "width", "kernel_h", "kernel_w", "stride_h", "stride_w", "pad_h", "pad_w")
_DW2D = ("channels", "height", "width", "kernel_h", "kernel_w", "stride_h", "stride_w", "pad_h", "pad_w")
_POOL1D = ("channels", "length", "kernel", "stride", "padding")
_POOL2D = ("channels", "height", "width", "kernel_h", "kernel_w", "stride_h", "stride_w", "pad_h", "pad_w")
_SCHEMA: dict[str, tuple[str, ...]] = {
    "conv1d": _CONV1D,
    "dwconv1d": _DW1D,
    "conv2d": _CONV2D,
    "dwconv2d": _DW2D,
    "linear": ("rows", "fin", "fout"),
    "maxpool1d": _POOL1D,
    "avgpool1d": _POOL1D,
    "maxpool2d": _POOL2D,
    "avgpool2d": _POOL2D,
    "relu": ("elements",),
    "tanh": ("elements",),
    "sigmoid": ("elements",),
    "identity": ("elements",),
    "flatten": ("elements",),
    "add": ("elements",),
    "concat": ("parts", "elements"),
    "gavgpool": ("channels", "positions"),
    "reorder_in": ("channels", "height", "width"),
    "reorder_out": ("channels", "height", "width"),
    # int8 kernels as onnxruntime runs a statically quantized model (uint8 activations, int8 weights)
    "qconv1d": _CONV1D,
    "qdwconv1d": _DW1D,
    "qconv2d": _CONV2D,
    "qdwconv2d": _DW2D,
    "qlinear": ("rows", "fin", "fout"),
    "qmaxpool1d": _POOL1D,
    "qmaxpool2d": _POOL2D,
    "qavgpool1d": _POOL1D,
    "qavgpool2d": _POOL2D,
    "qmaxpool1d_nchw": _POOL1D,
    "qmaxpool2d_nchw": _POOL2D,
    "qadd": ("elements",),
    "qsigmoid": ("elements",),
    "qconcat": ("parts", "elements"),
    "quantize": ("elements",),
    "dequantize": ("elements",),
    "qtranspose_in": ("channels", "positions"),
    "qtranspose_out": ("channels", "positions"),
}
OP_KINDS: tuple[str, ...] = tuple(_SCHEMA)
"""Operator kinds a table can hold (``dwconv`` = depthwise, ``groups == channels``; ``add``: element-wise sum of two
tensors, ``concat``: concatenation of ``parts`` tensors, ``gavgpool``: mean over the trailing axes, i.e. global
average pooling, ``channels`` × ``positions``). The ``q`` kinds are onnxruntime's int8 kernels (see
:data:`INT8_KINDS`)."""

_INT8_OF = {"conv1d": "qconv1d", "dwconv1d": "qdwconv1d", "conv2d": "qconv2d", "dwconv2d": "qdwconv2d",
            "linear": "qlinear", "maxpool1d": "qmaxpool1d", "maxpool2d": "qmaxpool2d", "avgpool1d": "qavgpool1d",
            "avgpool2d": "qavgpool2d", "add": "qadd", "sigmoid": "qsigmoid", "concat": "qconcat"}
_FLOAT_OF = {q: f for f, q in _INT8_OF.items()}  # int8 kind -> the float kind of the same shape parameters
_FLOAT_OF.update(qmaxpool1d_nchw="maxpool1d", qmaxpool2d_nchw="maxpool2d")
INT8_KINDS: tuple[str, ...] = (*_INT8_OF.values(), "qmaxpool1d_nchw", "qmaxpool2d_nchw", "quantize", "dequantize",
                               "qtranspose_in", "qtranspose_out")
"""The int8 kinds :func:`predict_latency` needs for ``precision="deployed"``: ``qconv1d``/``qconv2d``/``qdwconv1d``/
``qdwconv2d`` (``QLinearConv``, run channels-last), ``qlinear`` (``QGemm``: what onnxruntime fuses a statically
quantized ``Gemm`` into), ``qmaxpool1d``/``qmaxpool2d`` (uint8 max pooling, channels-last), ``qmaxpool1d_nchw``/
``qmaxpool2d_nchw`` (uint8 max pooling on NCHW data, a much slower kernel: what a float max pool becomes when
onnxruntime moves the ``QuantizeLinear`` after it, feeding an int8 layer, to its input), the ops onnxruntime fuses
with the ``DequantizeLinear`` before and the ``QuantizeLinear`` after them between int8 layers: ``qavgpool1d``/
``qavgpool2d`` (``QLinearAveragePool``), ``qadd`` (``QLinearAdd``), ``qsigmoid`` (``QLinearSigmoid``), ``qconcat``
(``QLinearConcat``); ``quantize``/``dequantize`` (``QuantizeLinear``/``DequantizeLinear`` of ``elements`` values:
float ↔ uint8 at the edges of an int8 region) and ``qtranspose_in``/``qtranspose_out`` (the uint8 ``Transpose`` of
``channels`` × ``positions`` into and out of the channels-last layout of onnxruntime's int8 convolutions and pools;
only on machines where it uses that layout, :func:`int8_nhwc`)."""

PRECISIONS: tuple[str, ...] = ("float", "deployed")
"""What :func:`predict_latency` and :func:`measure_latency` price: ``float`` (the float graph of the architecture)
or ``deployed`` (layers of <= 8-bit weights and inputs as onnxruntime's int8 kernels, the others as float)."""

INPUT = "input"
"""The name of the model input in :attr:`ModelOperator.inputs`."""

_ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")
_FUSES_ACTIVATION = ("conv1d", "dwconv1d", "conv2d", "dwconv2d", "linear")
_ONNX_ACT = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "identity": "Identity"}
_NCHWC_DOMAIN = "com.microsoft.nchwc"
_MS_DOMAIN = "com.microsoft"


class UnsupportedLayerError(HwnasError, ValueError):
    """A model holds a layer the latency model cannot predict; the message names the layer and its type."""


class MissingKindError(UnsupportedLayerError):
    """The latency table has no measurements of an operator kind the model needs (:attr:`kind`).

    Tables profiled before hwnas predicted residual adds, concatenations and global average pooling lack the
    ``add``, ``concat`` and ``gavgpool`` kinds: they still predict chain models, and a model that needs a kind
    they lack raises this error naming the layer and the kind. Profile the table again to predict it. Tables
    profiled before the int8 kinds (:data:`INT8_KINDS`) raise it, naming the kind, for ``precision="deployed"``.
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


# ---------------------------------------------------------------------------------------------- operators
@dataclass(frozen=True)
class Operator:
    """One operator instance: a kind from :data:`OP_KINDS` and its integer shape parameters (per sample)."""

    kind: str
    params: tuple[tuple[str, int], ...]

    @classmethod
    def make(cls, kind: str, **params: int) -> Operator:
        """Build and validate an operator, e.g. ``Operator.make("linear", rows=1, fin=64, fout=10)``."""
        if kind not in _SCHEMA:
            raise ValueError(f"kind: unknown operator kind {kind!r}; expected one of {list(OP_KINDS)}")
        names = _SCHEMA[kind]
        if set(params) != set(names):
            raise ValueError(f"{kind}: parameters must be {list(names)}, got {sorted(params)}")
        values = tuple((n, int(params[n])) for n in names)
        if any(v < 0 for _, v in values) or any(v < 1 for n, v in values if not n.startswith("pad")):
            raise ValueError(f"{kind}: parameters must be positive (padding non-negative), got {dict(values)}")
        op = cls(kind, values)
        op._check_output()
        return op

    @property
    def p(self) -> dict[str, int]:
        """The parameters as a dict."""
        return dict(self.params)

    @property
    def key(self) -> str:
        """Canonical text key, e.g. ``linear(rows=1,fin=64,fout=10)``."""
        return f"{self.kind}(" + ",".join(f"{n}={v}" for n, v in self.params) + ")"

    @classmethod
    def from_key(cls, key: str) -> Operator:
        """Parse a key written by :attr:`key`."""
        kind, _, rest = key.partition("(")
        params = dict(item.split("=") for item in rest.rstrip(")").split(",") if item)
        return cls.make(kind, **{k: int(v) for k, v in params.items()})

    def _check_output(self) -> None:
        if self.kind in _FLOAT_OF:
            Operator(_FLOAT_OF[self.kind], self.params)._check_output()
        elif self.kind in ("conv1d", "dwconv1d", "maxpool1d", "avgpool1d"):
            if _out_len(**_sub(self.p, "length", "kernel", "stride", "padding")) < 1:
                raise ValueError(f"{self.key}: empty output")
        elif self.kind in ("conv2d", "dwconv2d", "maxpool2d", "avgpool2d"):
            if min(self.out_hw()) < 1:
                raise ValueError(f"{self.key}: empty output")
        elif self.kind == "concat" and self.p["elements"] < self.p["parts"]:
            raise ValueError(f"{self.key}: fewer elements than parts")

    def out_hw(self) -> tuple[int, int]:
        """Output height and width of a 2-D operator."""
        p = self.p
        return (_out_len(p["height"], p["kernel_h"], p["stride_h"], p["pad_h"]),
                _out_len(p["width"], p["kernel_w"], p["stride_w"], p["pad_w"]))

    def out_len(self) -> int:
        """Output length of a 1-D operator."""
        p = self.p
        return _out_len(p["length"], p["kernel"], p["stride"], p["padding"])


def _sub(d: dict[str, int], *names: str) -> dict[str, int]:
    return {n: d[n] for n in names}


def _out_len(length: int, kernel: int, stride: int, padding: int) -> int:
    return (length + 2 * padding - kernel) // stride + 1


# ------------------------------------------------------------------------- coordinates and the cost basis
def _ceil_to(n: int, block: int) -> int:
    return -(-n // block) * block if block else n


def _coords(op: Operator, block: int = 0) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """(exact group, continuous coordinates) used for interpolation.

    Coordinates use output positions, not input sizes, so a padding other than the grid's "same" padding
    maps onto the grid point with the same amount of work. With an NCHWc ``block`` the channels a 2-D
    convolution really computes are used: output (and blocked input) channels rounded up to the block.
    """
    p, k = op.p, op.kind
    if k in _FLOAT_OF:  # int8 kernels: the float kind's coordinates (their channels-last layout has no block)
        return _coords(Operator(_FLOAT_OF[k], op.params), 0)
    if k == "conv1d":
        return (p["stride"],), (p["cin"], p["cout"], op.out_len(), p["kernel"])
    if k == "dwconv1d":
        return (p["stride"],), (p["channels"], op.out_len(), p["kernel"])
    if k == "conv2d":
        ho, wo = op.out_hw()
        cin = _ceil_to(p["cin"], block) if p["cin"] >= block else p["cin"]
        return (p["stride_h"], p["stride_w"]), (cin, _ceil_to(p["cout"], block), ho * wo, p["kernel_h"] * p["kernel_w"])
    if k == "dwconv2d":
        ho, wo = op.out_hw()
        return (p["stride_h"], p["stride_w"]), (_ceil_to(p["channels"], block), ho * wo, p["kernel_h"] * p["kernel_w"])
    if k == "linear":
        return (p["rows"],), (p["fin"], p["fout"])
    if k in ("maxpool1d", "avgpool1d"):
        return (p["kernel"], p["stride"]), (p["channels"], op.out_len())
    if k in ("maxpool2d", "avgpool2d"):
        ho, wo = op.out_hw()
        return (p["kernel_h"], p["kernel_w"], p["stride_h"], p["stride_w"]), (p["channels"], ho * wo)
    if k in ("reorder_in", "reorder_out"):
        return (), (p["channels"], p["height"] * p["width"])
    if k in ("qtranspose_in", "qtranspose_out"):
        return (), (p["channels"], p["positions"])
    if k == "concat":
        return (p["parts"],), (p["elements"],)
    if k == "gavgpool":
        return (), (p["channels"], p["positions"])
    return (), (p["elements"],)


def _basis(kind: str, exact: tuple[int, ...], c: tuple[float, ...]) -> np.ndarray:
    """Cost-model features: constant, MACs (or element work), inputs, outputs, weights, im2col size."""
    kind = _FLOAT_OF.get(kind, kind)
    if kind == "conv1d":
        (s,), (cin, cout, lo, kk) = exact, c
        return np.array([1.0, cin * cout * kk * lo, cin * lo * s, cout * lo, cin * cout * kk, cin * kk * lo])
    if kind == "conv2d":
        (sh, sw), (cin, cout, po, ka) = exact, c
        return np.array([1.0, cin * cout * ka * po, cin * po * sh * sw, cout * po, cin * cout * ka, cin * ka * po])
    if kind in ("dwconv1d", "dwconv2d"):
        s = math.prod(exact)
        ch, po, ka = c
        return np.array([1.0, ch * ka * po, ch * po * s, ch * po, ch * ka])
    if kind == "linear":
        (rows,), (fin, fout) = exact, c
        return np.array([1.0, rows * fin * fout, rows * fin, rows * fout, fin * fout])
    if kind.endswith("pool1d") or kind.endswith("pool2d"):
        half = len(exact) // 2
        window, s = math.prod(exact[:half]), math.prod(exact[half:])
        ch, po = c
        return np.array([1.0, ch * po * window, ch * po * s, ch * po])
    if kind == "gavgpool":  # a reduction: every input element read once, one output per channel
        ch, po = c
        return np.array([1.0, ch * po, ch])
    return np.array([1.0, math.prod(c)])  # element-wise kinds (activations, flatten, add, concat): the elements


def _nnls_relative(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares on relative error (rows scaled by 1/y), by an active-set loop."""
    A = x / y[:, None]
    b = np.ones_like(y)
    scale = np.maximum(np.abs(A).max(axis=0), 1e-30)
    A = A / scale
    active = list(range(x.shape[1]))
    coef = np.zeros(x.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(A[:, active], b, rcond=None)
        if (sol >= 0).all():
            coef[:] = 0.0
            coef[active] = sol
            break
        active.pop(int(np.argmin(sol)))
    return coef / scale


# ------------------------------------------------------------------------------------ machine and session
def machine_description(threads: int = 1) -> dict[str, Any]:
    """The machine and software a table is measured on: CPU model, cores, versions, threads, platform."""
    cpu, flags = platform.processor() or "unknown", []
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and cpu in ("unknown", "x86_64", ""):
                cpu = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                wanted = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "neon", "asimd")
                flags = sorted(set(value.split()) & set(wanted))
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {
        "cpu_model": cpu,
        "cpu_flags": flags,
        "logical_cores": os.cpu_count() or 1,
        "usable_cores": usable,
        "threads": int(threads),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": _version("onnx"),
        "onnxruntime": _version("onnxruntime"),
        "numpy": np.__version__,
    }


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as err:  # pragma: no cover - exercised only without the package
        raise ImportError("hwnas.cost.cpu_latency needs onnxruntime: pip install onnxruntime") from err
    return onnxruntime


def session_options(threads: int = 1) -> Any:
    """The fixed onnxruntime session options every timing uses (see the module docstring)."""
    ort = _ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return so


def _session(model_bytes: bytes, threads: int, disabled: Sequence[str] = ()) -> Any:
    ort = _ort()
    return ort.InferenceSession(model_bytes, session_options(threads), providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(disabled))


DEPLOYED_DISABLED_OPTIMIZERS: tuple[str, ...] = ("WeightBiasQuantization",)
"""onnxruntime graph optimizers turned off in sessions of deployed (int8) models: ``WeightBiasQuantization``
(onnxruntime >= 1.20) quantizes the float weights of a layer that sits between ``DequantizeLinear`` and
``QuantizeLinear`` nodes to int8, i.e. it would run a layer wider than 8 bits between two int8 layers as int8.
(onnxruntime ignores names it does not know.)"""


_PROBE_FLOOR: dict[int, float] = {}  # threads -> fastest probe (µs) seen in this process


class QuietTimer:
    """Times ``InferenceSession.run`` calls, keeping only runs made while the CPU is undisturbed.

    Shared and virtual machines alternate between quiet phases and phases where every instruction
    runs ~1.5× slower (another tenant on the same physical core); such phases last from milliseconds to
    seconds. Each timed run is bracketed by two probes — the fastest of 3 runs of a 1-element
    ``Identity`` session — and kept only when both probes are within ``tolerance`` of the probe floor:
    the fastest probe seen in this process, or ``floor_us`` (e.g. a table's ``probe_floor_us``) if lower.
    A timing is the median of the kept runs; if too few runs are kept before ``max_seconds``, it is the
    median of all runs and :attr:`disturbed` counts it.
    """

    def __init__(self, threads: int = 1, tolerance: float = 1.3, floor_us: float | None = None) -> None:
        model, feed = _onnx_model(Operator.make("identity", elements=1), 1)
        self._probe_run = _session(model, threads).run
        self._probe_feed = feed
        self.threads = threads
        self.tolerance = tolerance
        if floor_us is not None:
            _PROBE_FLOOR[threads] = min(_PROBE_FLOOR.get(threads, math.inf), float(floor_us))
        self.disturbed = 0
        self.timings = 0
        for _ in range(200):
            self.probe()

    @property
    def floor_us(self) -> float:
        """The fastest probe (µs) known for this thread count."""
        return _PROBE_FLOOR.get(self.threads, math.inf)

    def probe(self) -> float:
        """Fastest of 3 probe runs in µs (also lowers the floor)."""
        clock, run, feed = time.perf_counter_ns, self._probe_run, self._probe_feed
        best = math.inf
        for _ in range(3):
            t0 = clock()
            run(None, feed)
            best = min(best, clock() - t0)
        best /= 1e3
        if best < self.floor_us:
            _PROBE_FLOOR[self.threads] = best
        return best

    def quiet(self) -> bool:
        """Whether a probe now runs at most ``tolerance`` × the probe floor."""
        return self.probe() <= self.tolerance * self.floor_us

    def time(self, sess: Any, feed: dict[str, np.ndarray], repeats: int, warmup: int,
             budget_s: float | None = None, max_seconds: float = 0.5) -> float:
        """Median µs of up to ``repeats`` quiet runs after ``warmup`` runs (see the class docstring).

        With ``budget_s`` the number of runs shrinks for slow operators (never below 5).
        """
        run, clock = sess.run, time.perf_counter_ns
        start = time.perf_counter()
        done = 0
        while done < warmup or (time.perf_counter() - start < 0.0005 and done < 50 * max(warmup, 1)):
            run(None, feed)
            done += 1
        per_run = (time.perf_counter() - start) / max(done, 1)
        n = repeats if budget_s is None else max(5, min(repeats, int(budget_s / max(per_run, 1e-9))))
        kept: list[int] = []
        every: list[int] = []
        deadline = time.perf_counter() + max_seconds
        while len(kept) < n:
            if time.perf_counter() > deadline:  # no quiet phase in time: take what the machine gives
                for _ in range(n - len(every)):
                    t0 = clock()
                    run(None, feed)
                    every.append(clock() - t0)
                break
            if not self.quiet():
                continue
            t0 = clock()
            run(None, feed)
            elapsed = clock() - t0
            every.append(elapsed)
            if self.quiet():
                kept.append(elapsed)
        self.timings += 1
        if len(kept) < max(3, n // 2):
            self.disturbed += 1
            kept = every
        return statistics.median(kept) / 1e3


@contextlib.contextmanager
def pinned(cpu: int | None) -> Iterator[int | None]:
    """Pin the calling thread to one CPU for the block (``-1``: the last usable one; None: leave as is).

    A thread the scheduler moves between cores mid-measurement loses its caches, and on a shared or virtual
    machine the cores are not equally disturbed; pinning keeps a table and later measurements on one core.
    Yields the CPU used (None when not pinned).
    """
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        yield None
        return
    before = os.sched_getaffinity(0)
    usable = sorted(before)
    chosen = usable[cpu] if -len(usable) <= cpu < len(usable) and cpu < 0 else cpu
    if chosen not in before:
        raise ValueError(f"cpu: {cpu} is not one of the usable CPUs {usable}")
    os.sched_setaffinity(0, {chosen})
    try:
        yield chosen
    finally:
        os.sched_setaffinity(0, before)


# ------------------------------------------------------------------------------------ single-op ONNX models
def _onnx_model(op: Operator, batch: int, seed: int = 0, block: int = 16,
                nhwc: bool = True) -> tuple[bytes, dict[str, np.ndarray]]:
    """A one-node ONNX model for ``op`` (weights as initializers) and its input feed.

    The int8 kinds (:data:`INT8_KINDS`) are built by :func:`_int8_onnx_model` (``nhwc``: in the channels-last
    form onnxruntime runs its int8 convolutions and max pools in).

    ``reorder_in``/``reorder_out`` are onnxruntime's NCHWc layout conversions (``com.microsoft.nchwc``
    domain); ``block`` is the NCHWc channel block the ``reorder_out`` input is padded to. The joins read
    their other operands from initializers, so every model has one input (the feed cost of further inputs
    is not part of an operator inside a model): ``add`` is ``Add(x, w)`` on two (batch, elements) tensors,
    ``concat`` is ``Concat(axis=1)`` of ``parts`` (batch, elements / parts) tensors (the batch-1 channel or
    feature concatenation: one contiguous copy per part), ``gavgpool`` is what ``torch.onnx.export`` writes
    for ``x.mean(dim=spatial axes)``: ``ReduceMean(keepdims=0)`` over the last axis of a (batch, channels,
    positions) tensor (onnxruntime reduces a 2-D image's two trailing axes as one).
    """
    from onnx import TensorProto, helper, numpy_helper

    if op.kind in INT8_KINDS:
        return _int8_onnx_model(op, batch, seed, nhwc)
    rng = np.random.default_rng(seed)
    p, kind = op.p, op.kind

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    inits: list[np.ndarray] = []
    attrs: dict[str, Any] = {}
    if kind in ("conv1d", "dwconv1d"):
        cin = p.get("cin", p.get("channels"))
        cout = p.get("cout", p.get("channels"))
        group = cin if kind == "dwconv1d" else 1
        x = rand(batch, cin, p["length"])
        inits = [rand(cout, cin // group, p["kernel"]), rand(cout)]
        attrs = dict(kernel_shape=[p["kernel"]], strides=[p["stride"]], pads=[p["padding"]] * 2, group=group)
        node_type = "Conv"
    elif kind in ("conv2d", "dwconv2d"):
        cin = p.get("cin", p.get("channels"))
        cout = p.get("cout", p.get("channels"))
        group = cin if kind == "dwconv2d" else 1
        x = rand(batch, cin, p["height"], p["width"])
        inits = [rand(cout, cin // group, p["kernel_h"], p["kernel_w"]), rand(cout)]
        attrs = dict(kernel_shape=[p["kernel_h"], p["kernel_w"]], strides=[p["stride_h"], p["stride_w"]],
                     pads=[p["pad_h"], p["pad_w"], p["pad_h"], p["pad_w"]], group=group)
        node_type = "Conv"
    elif kind == "linear":  # what torch.onnx.export writes for nn.Linear on 2-D input
        x = rand(batch * p["rows"], p["fin"])
        inits = [rand(p["fout"], p["fin"]), rand(p["fout"])]
        attrs = dict(alpha=1.0, beta=1.0, transB=1)
        node_type = "Gemm"
    elif kind in ("maxpool1d", "avgpool1d"):
        x = rand(batch, p["channels"], p["length"])
        attrs = dict(kernel_shape=[p["kernel"]], strides=[p["stride"]], pads=[p["padding"]] * 2)
        node_type = "MaxPool" if kind == "maxpool1d" else "AveragePool"
    elif kind in ("maxpool2d", "avgpool2d"):
        x = rand(batch, p["channels"], p["height"], p["width"])
        attrs = dict(kernel_shape=[p["kernel_h"], p["kernel_w"]], strides=[p["stride_h"], p["stride_w"]],
                     pads=[p["pad_h"], p["pad_w"], p["pad_h"], p["pad_w"]])
        node_type = "MaxPool" if kind == "maxpool2d" else "AveragePool"
    elif kind in ("reorder_in", "reorder_out"):
        ch = p["channels"] if kind == "reorder_in" else -(-p["channels"] // block) * block
        x = rand(batch, ch, p["height"], p["width"])
        attrs = {} if kind == "reorder_in" else dict(channels=p["channels"])
        node_type = "ReorderInput" if kind == "reorder_in" else "ReorderOutput"
    elif kind == "flatten":
        x = rand(batch, 1, p["elements"])
        attrs = dict(axis=1)
        node_type = "Flatten"
    elif kind == "add":
        x = rand(batch, p["elements"])
        inits = [rand(batch, p["elements"])]
        node_type = "Add"
    elif kind == "concat":
        n, parts = p["elements"], p["parts"]
        sizes = [n // parts + (1 if i < n % parts else 0) for i in range(parts)]
        x = rand(batch, sizes[0])
        inits = [rand(batch, size) for size in sizes[1:]]
        attrs = dict(axis=1)
        node_type = "Concat"
    elif kind == "gavgpool":
        x = rand(batch, p["channels"], p["positions"])
        attrs = dict(axes=[-1], keepdims=0)
        node_type = "ReduceMean"
    else:
        x = rand(batch, p["elements"])
        node_type = _ONNX_ACT[kind]
    names = [f"w{i}" for i in range(len(inits))]
    domain = _NCHWC_DOMAIN if kind.startswith("reorder") else ""
    graph = helper.make_graph(
        [helper.make_node(node_type, ["x", *names], ["y"], domain=domain, **attrs)], op.kind,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(a, n) for a, n in zip(inits, names, strict=True)],
    )
    opsets = [helper.make_opsetid("", _OPSET), helper.make_opsetid(_NCHWC_DOMAIN, 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=_IR_VERSION)
    return model.SerializeToString(), {"x": x}


def _int8_onnx_model(op: Operator, batch: int, seed: int = 0,
                     nhwc: bool = True) -> tuple[bytes, dict[str, np.ndarray]]:
    """A one-node ONNX model of an int8 kind, as onnxruntime runs it inside a statically quantized model.

    Activations are uint8 (zero point 128), weights int8 with per-output-channel scales and zero points 0 (what
    ``onnxruntime.quantization.quantize_static`` writes by default), biases int32. ``qconv*``: ``QLinearConv``;
    with ``nhwc`` the ``com.microsoft`` form with ``channels_last=1`` on a (batch, positions…, channels) input,
    which is what onnxruntime's NHWC transformer turns every ``QLinearConv`` into (so the entry holds no layout
    transposes; a model pays them where its layout changes: ``qtranspose_in``/``qtranspose_out``), else the
    ONNX ``QLinearConv`` on NCHW. ``qlinear``: ``com.microsoft`` ``QGemm`` (transB=1, uint8 output), what
    onnxruntime fuses a quantized ``Gemm`` into. ``qmaxpool*``: ``com.microsoft`` ``NhwcMaxPool`` on uint8 (with
    ``nhwc``), else (and for ``qmaxpool*_nchw``) ``MaxPool`` on uint8; ``qavgpool*``: ``QLinearAveragePool``
    (``channels_last`` with ``nhwc``).
    ``qadd``: ``QLinearAdd`` of the input and a uint8 initializer; ``qsigmoid``: ``QLinearSigmoid``; ``qconcat``:
    ``QLinearConcat`` along axis 1 like ``concat`` (the input and ``parts`` − 1 initializers). ``quantize``:
    ``QuantizeLinear`` float → uint8; ``dequantize``: ``DequantizeLinear`` uint8 → float; ``qtranspose_in``:
    uint8 ``Transpose`` (batch, channels, positions) → (batch, positions, channels); ``qtranspose_out`` the way
    back.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    p, kind = op.p, op.kind

    def u8(*shape: int) -> np.ndarray:
        return rng.integers(0, 256, shape, dtype=np.uint8)

    def scalar(name: str, value: float | int, dtype: Any) -> Any:
        return numpy_helper.from_array(np.array(value, dtype=dtype), name)

    x_q = [scalar("x_scale", 0.02, np.float32), scalar("x_zero", 128, np.uint8)]
    y_q = [scalar("y_scale", 0.05, np.float32), scalar("y_zero", 128, np.uint8)]

    def weights(cout: int, *shape: int) -> list[Any]:
        w = rng.integers(-127, 128, (cout, *shape), dtype=np.int8)
        return [numpy_helper.from_array(w, "w"),
                numpy_helper.from_array(np.full(cout, 0.002, np.float32), "w_scale"),
                numpy_helper.from_array(np.zeros(cout, np.int8), "w_zero")]

    def bias(n: int) -> Any:
        return numpy_helper.from_array(rng.integers(-1000, 1000, n, dtype=np.int32), "b")

    in_type, out_type, domain, attrs = TensorProto.UINT8, TensorProto.UINT8, "", {}
    inits: list[Any] = []
    if kind in ("qconv1d", "qdwconv1d", "qconv2d", "qdwconv2d"):
        two = kind in ("qconv2d", "qdwconv2d")
        cin = p.get("cin", p.get("channels"))
        cout = p.get("cout", p.get("channels"))
        group = cin if kind.startswith("qdw") else 1
        if two:
            spatial, kernel = [p["height"], p["width"]], [p["kernel_h"], p["kernel_w"]]
            strides, pads = [p["stride_h"], p["stride_w"]], [p["pad_h"], p["pad_w"]] * 2
        else:
            spatial, kernel, strides, pads = [p["length"]], [p["kernel"]], [p["stride"]], [p["padding"]] * 2
        x = u8(batch, *spatial, cin) if nhwc else u8(batch, cin, *spatial)
        inits = [*x_q, *weights(cout, cin // group, *kernel), *y_q, bias(cout)]
        names = ["x_scale", "x_zero", "w", "w_scale", "w_zero", "y_scale", "y_zero", "b"]
        attrs = dict(kernel_shape=kernel, strides=strides, pads=pads, group=group)
        if nhwc:
            attrs["channels_last"] = 1
            domain = _MS_DOMAIN
        node_type = "QLinearConv"
    elif kind == "qlinear":
        x = u8(batch * p["rows"], p["fin"])
        w = weights(p["fout"], p["fin"])
        inits = [*x_q, *w, bias(p["fout"]), *y_q]
        names = ["x_scale", "x_zero", "w", "w_scale", "w_zero", "b", "y_scale", "y_zero"]
        attrs, domain, node_type = dict(transB=1), _MS_DOMAIN, "QGemm"
    elif kind in ("qmaxpool1d", "qmaxpool2d", "qavgpool1d", "qavgpool2d", "qmaxpool1d_nchw", "qmaxpool2d_nchw"):
        nhwc = nhwc and not kind.endswith("_nchw")
        if "2d" in kind:
            spatial, kernel = [p["height"], p["width"]], [p["kernel_h"], p["kernel_w"]]
            strides, pads = [p["stride_h"], p["stride_w"]], [p["pad_h"], p["pad_w"]] * 2
        else:
            spatial, kernel, strides, pads = [p["length"]], [p["kernel"]], [p["stride"]], [p["padding"]] * 2
        x = u8(batch, *spatial, p["channels"]) if nhwc else u8(batch, p["channels"], *spatial)
        names = []
        attrs = dict(kernel_shape=kernel, strides=strides, pads=pads)
        if kind.startswith("qmax"):
            node_type, domain = ("NhwcMaxPool", _MS_DOMAIN) if nhwc else ("MaxPool", "")
        else:
            inits, names = [*x_q, *y_q], ["x_scale", "x_zero", "y_scale", "y_zero"]
            node_type, domain = "QLinearAveragePool", _MS_DOMAIN
            attrs["channels_last"] = int(nhwc)
    elif kind == "qadd":
        x = u8(batch, p["elements"])
        inits = [*x_q, numpy_helper.from_array(u8(batch, p["elements"]), "b"), scalar("b_scale", 0.03, np.float32),
                 scalar("b_zero", 128, np.uint8), *y_q]
        names = ["x_scale", "x_zero", "b", "b_scale", "b_zero", "y_scale", "y_zero"]
        node_type, domain = "QLinearAdd", _MS_DOMAIN
    elif kind == "qsigmoid":
        x = u8(batch, p["elements"])
        inits, names = [*x_q, *y_q], ["x_scale", "x_zero", "y_scale", "y_zero"]
        node_type, domain = "QLinearSigmoid", _MS_DOMAIN
    elif kind == "qconcat":
        n, parts = p["elements"], p["parts"]
        sizes = [n // parts + (1 if i < n % parts else 0) for i in range(parts)]
        x = u8(batch, sizes[0])
        inits = [*x_q, *y_q, *(numpy_helper.from_array(u8(batch, size), f"p{i}") for i, size in enumerate(sizes[1:]))]
        # QLinearConcat(y_scale, y_zero, x, x_scale, x_zero, p0, x_scale, x_zero, …): one scale for every part
        names = ["y_scale", "y_zero", "x", "x_scale", "x_zero"]
        for i in range(parts - 1):
            names += [f"p{i}", "x_scale", "x_zero"]
        attrs, node_type, domain = dict(axis=1), "QLinearConcat", _MS_DOMAIN
    elif kind == "quantize":
        x = (rng.standard_normal((batch, p["elements"])) * 0.5).astype(np.float32)
        in_type, inits, names, node_type = TensorProto.FLOAT, y_q, ["y_scale", "y_zero"], "QuantizeLinear"
    elif kind == "dequantize":
        x = u8(batch, p["elements"])
        out_type, inits, names, node_type = TensorProto.FLOAT, x_q, ["x_scale", "x_zero"], "DequantizeLinear"
    elif kind in ("qtranspose_in", "qtranspose_out"):
        c, n = p["channels"], p["positions"]
        x = u8(batch, c, n) if kind == "qtranspose_in" else u8(batch, n, c)
        names, attrs, node_type = [], dict(perm=[0, 2, 1]), "Transpose"
    else:  # pragma: no cover - guarded by the caller
        raise ValueError(f"{op.key}: not an int8 kind")
    inputs = names if kind == "qconcat" else ["x", *names]
    graph = helper.make_graph(
        [helper.make_node(node_type, inputs, ["y"], domain=domain, **attrs)], op.kind,
        [helper.make_tensor_value_info("x", in_type, list(x.shape))],
        [helper.make_tensor_value_info("y", out_type, None)], inits)
    opsets = [helper.make_opsetid("", _OPSET), helper.make_opsetid(_MS_DOMAIN, 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=_IR_VERSION)
    return model.SerializeToString(), {"x": x}


def int8_nhwc(threads: int = 1) -> bool:
    """Whether onnxruntime runs int8 convolutions channels-last (NHWC) on this machine.

    Found by letting onnxruntime optimize an ONNX ``QLinearConv`` model: its NHWC transformer (x86 and Arm CPUs)
    rewrites it into the ``com.microsoft`` ``QLinearConv`` with ``channels_last=1`` between two ``Transpose``
    nodes; a model then pays a uint8 transpose where data enters or leaves that layout.
    """
    import onnx

    ort = _ort()
    op = Operator.make("qconv1d", cin=8, cout=8, length=16, kernel=3, stride=1, padding=1)
    model, _ = _int8_onnx_model(op, 1, nhwc=False)
    with tempfile.TemporaryDirectory() as tmp:
        so = session_options(threads)
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        nodes = onnx.load(so.optimized_model_filepath).graph.node
    return any(n.op_type == "QLinearConv" and n.domain == _MS_DOMAIN
               and any(a.name == "channels_last" and a.i == 1 for a in n.attribute) for n in nodes)


def nchwc_block(threads: int = 1) -> int:
    """Channel block of onnxruntime's NCHWc layout on this machine, 0 if it does not use that layout.

    Found by letting onnxruntime optimize 2-D max-pool models with 4, 8, 16 and 32 channels: the smallest
    channel count it rewrites into the ``com.microsoft.nchwc`` domain is the block.
    """
    import onnx

    ort = _ort()
    for block in (4, 8, 16, 32):
        op = Operator.make("maxpool2d", channels=block, height=8, width=8, kernel_h=2, kernel_w=2, stride_h=2,
                           stride_w=2, pad_h=0, pad_w=0)
        model, _ = _onnx_model(op, 1)
        with tempfile.TemporaryDirectory() as tmp:
            so = session_options(threads)
            so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
            ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
            domains = {node.domain for node in onnx.load(so.optimized_model_filepath).graph.node}
        if _NCHWC_DOMAIN in domains:
            return block
    return 0


def _implausible(entries: dict[str, float], block: int, slack: float = 1.15) -> list[Operator]:
    """Entries more than ``slack`` × costlier than the next grid point up along one coordinate.

    More channels, positions or kernel taps never make an operator cheaper by much, so such an entry was
    most likely timed while the machine was disturbed.
    """
    groups: dict[tuple[str, tuple[int, ...]], dict[tuple[float, ...], tuple[str, float]]] = {}
    for key, value in entries.items():
        op = Operator.from_key(key)
        exact, coords = _coords(op, block)
        groups.setdefault((op.kind, exact), {})[coords] = (key, value)
    suspects = []
    for points in groups.values():
        axes = [sorted({c[i] for c in points}) for i in range(len(next(iter(points))))]
        following = [dict(itertools.pairwise(ax)) for ax in axes]
        for coords, (key, value) in points.items():
            for i, nxt in enumerate(following):
                if coords[i] not in nxt:
                    continue
                up = points.get((*coords[:i], nxt[coords[i]], *coords[i + 1:]))
                if up is not None and value > slack * up[1] + 0.3:
                    suspects.append(Operator.from_key(key))
                    break
    return suspects


def _measure_operator(op: Operator, timer: QuietTimer, *, batch: int, threads: int, repeats: int, warmup: int,
                      budget_s: float, block: int = 16, nhwc: bool = True) -> float:
    model, feed = _onnx_model(op, batch, block=block, nhwc=nhwc)
    return timer.time(_session(model, threads), feed, repeats, warmup, budget_s, max_seconds=0.1)


def _relu_chain(nodes: int) -> bytes:
    """A model of ``nodes`` chained 1-element ``Relu`` nodes (nothing to fuse, negligible compute)."""
    from onnx import TensorProto, helper

    names = ["x", *(f"t{k}" for k in range(nodes - 1)), "y"]
    graph = helper.make_graph(
        [helper.make_node("Relu", [a], [b]) for a, b in itertools.pairwise(names)], "relu_chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)],
                             ir_version=_IR_VERSION).SerializeToString()


def measure_node_cost(timer: QuietTimer | None = None, *, threads: int = 1, nodes: int = 9,
                      repeats: int = 400, warmup: int = 50) -> float:
    """Executor cost of one extra node (µs): (run time of ``nodes`` chained 1-element Relus − one Relu) / (nodes − 1).

    Every node of a model costs this beyond its arithmetic (kernel dispatch, allocation planning); a single-op
    table entry contains it once for its operator and once per layout reorder onnxruntime wraps around it.
    """
    if nodes < 2:
        raise ValueError(f"nodes: need at least 2, got {nodes}")
    timer = timer or QuietTimer(threads)
    feed = {"x": np.ones((1, 1), dtype=np.float32)}
    one = timer.time(_session(_relu_chain(1), threads), feed, repeats, warmup, 1.0)
    many = timer.time(_session(_relu_chain(nodes), threads), feed, repeats, warmup, 1.0)
    return max(0.0, (many - one) / (nodes - 1))


# ------------------------------------------------------------------------------------------------ grids
@dataclass(frozen=True)
class ProfileGrid:
    """Shape grids to profile; every product of the listed values becomes one operator (minus the capped).

    1-D lengths and 2-D sides are *output* sizes; inputs are sized so "same" padding (``kernel // 2``, odd
    kernels) with the given stride produces them. ``max_macs`` drops grid points above that many MACs per
    sample (their neighbours are then extrapolated with the fitted cost model); so do inputs longer than
    ``max_input_length`` or wider than ``max_input_side`` (plus 8, so a kernel's halo still fits).
    ``elements`` sizes the element-wise kinds (activations, flatten, ``add``) and, with ``concat_parts``, the
    concatenations (at least one element per part); ``gpool_channels`` × ``gpool_positions`` the global
    average poolings. With ``int8`` (the default) every convolution, linear and max-pool point is profiled a
    second time as its int8 kind (:data:`INT8_KINDS`), ``quantize``/``dequantize`` over ``elements``, and the
    channels-last transposes over ``transpose_channels`` × ``transpose_positions``.
    """

    conv1d_cin: tuple[int, ...]
    conv1d_cout: tuple[int, ...]
    conv1d_length: tuple[int, ...]
    conv2d_cin: tuple[int, ...]
    conv2d_cout: tuple[int, ...]
    conv2d_side: tuple[int, ...]
    dw_channels: tuple[int, ...]
    kernels: tuple[int, ...] = (1, 3, 5, 7)
    strides: tuple[int, ...] = (1, 2)
    dw_length: tuple[int, ...] = ()
    dw_side: tuple[int, ...] = ()
    linear_fin: tuple[int, ...] = ()
    linear_fout: tuple[int, ...] = ()
    pool_channels: tuple[int, ...] = ()
    pool_length: tuple[int, ...] = ()
    pool_side: tuple[int, ...] = ()
    pool_windows: tuple[tuple[int, int], ...] = ((2, 2),)  # (kernel, stride)
    elements: tuple[int, ...] = ()
    reorder_channels: tuple[int, ...] = ()
    reorder_side: tuple[int, ...] = ()
    concat_parts: tuple[int, ...] = ()
    gpool_channels: tuple[int, ...] = ()
    gpool_positions: tuple[int, ...] = ()
    transpose_channels: tuple[int, ...] = ()
    transpose_positions: tuple[int, ...] = ()
    int8: bool = True
    max_macs: int = 1 << 26
    max_input_length: int = 1024
    max_input_side: int = 64
    extra: tuple[str, ...] = field(default=())  # additional operator keys

    def operators(self, nchwc_block: int = 16, int8_nhwc: bool = True) -> list[Operator]:
        """All operators of the grid, deduplicated, in a fixed order.

        No reorders if ``nchwc_block`` is 0, no channels-last transposes if not ``int8_nhwc`` (:func:`int8_nhwc`).
        """
        ops: dict[str, Operator] = {}
        reorders = self._reorders() if nchwc_block else iter(())
        int8 = self._int8(int8_nhwc) if self.int8 else iter(())
        for op in itertools.chain(self._convs(), self._linears(), self._pools(), self._elementwise(), self._joins(),
                                  reorders, int8):
            p = op.p
            too_long = p.get("length", 0) > self.max_input_length + 8
            too_wide = max(p.get("height", 0), p.get("width", 0)) > self.max_input_side + 8
            if _macs(op) <= self.max_macs and not too_long and not too_wide:
                ops.setdefault(op.key, op)
        for key in self.extra:
            op = Operator.from_key(key)
            ops.setdefault(op.key, op)
        return list(ops.values())

    def _convs(self) -> Iterator[Operator]:
        for k, s in itertools.product(self.kernels, self.strides):
            pad = k // 2
            for cin, cout, lo in itertools.product(self.conv1d_cin, self.conv1d_cout, self.conv1d_length):
                yield Operator.make("conv1d", cin=cin, cout=cout, length=_in_size(lo, k, s, pad), kernel=k,
                                    stride=s, padding=pad)
            for cin, cout, so in itertools.product(self.conv2d_cin, self.conv2d_cout, self.conv2d_side):
                n = _in_size(so, k, s, pad)
                yield Operator.make("conv2d", cin=cin, cout=cout, height=n, width=n, kernel_h=k, kernel_w=k,
                                    stride_h=s, stride_w=s, pad_h=pad, pad_w=pad)
            for ch, lo in itertools.product(self.dw_channels, self.dw_length):
                yield Operator.make("dwconv1d", channels=ch, length=_in_size(lo, k, s, pad), kernel=k, stride=s,
                                    padding=pad)
            for ch, so in itertools.product(self.dw_channels, self.dw_side):
                n = _in_size(so, k, s, pad)
                yield Operator.make("dwconv2d", channels=ch, height=n, width=n, kernel_h=k, kernel_w=k,
                                    stride_h=s, stride_w=s, pad_h=pad, pad_w=pad)

    def _linears(self) -> Iterator[Operator]:
        for fin, fout in itertools.product(self.linear_fin, self.linear_fout):
            yield Operator.make("linear", rows=1, fin=fin, fout=fout)

    def _pools(self) -> Iterator[Operator]:
        for (k, s), ch in itertools.product(self.pool_windows, self.pool_channels):
            for kind in ("maxpool1d", "avgpool1d"):
                for lo in self.pool_length:
                    yield Operator.make(kind, channels=ch, length=(lo - 1) * s + k, kernel=k, stride=s, padding=0)
            for kind in ("maxpool2d", "avgpool2d"):
                for so in self.pool_side:
                    n = (so - 1) * s + k
                    yield Operator.make(kind, channels=ch, height=n, width=n, kernel_h=k, kernel_w=k,
                                        stride_h=s, stride_w=s, pad_h=0, pad_w=0)

    def _reorders(self) -> Iterator[Operator]:
        for kind, ch, side in itertools.product(("reorder_in", "reorder_out"), self.reorder_channels,
                                                self.reorder_side):
            yield Operator.make(kind, channels=ch, height=side, width=side)

    def _int8(self, nhwc: bool) -> Iterator[Operator]:
        for op in itertools.chain(self._convs(), self._linears(), self._pools(), self._elementwise(), self._joins()):
            if op.kind in _INT8_OF:
                yield Operator(_INT8_OF[op.kind], op.params)
            if op.kind in ("maxpool1d", "maxpool2d"):
                yield Operator(f"q{op.kind}_nchw", op.params)
        for kind, n in itertools.product(("quantize", "dequantize"), self.elements):
            yield Operator.make(kind, elements=n)
        if nhwc:
            for kind, ch, positions in itertools.product(("qtranspose_in", "qtranspose_out"), self.transpose_channels,
                                                         self.transpose_positions):
                yield Operator.make(kind, channels=ch, positions=positions)

    def _elementwise(self) -> Iterator[Operator]:
        for kind in ("identity", "relu", "tanh", "sigmoid", "flatten", "add"):
            for n in self.elements:
                yield Operator.make(kind, elements=n)

    def _joins(self) -> Iterator[Operator]:
        for parts, n in itertools.product(self.concat_parts, self.elements):
            yield Operator.make("concat", parts=parts, elements=max(n, parts))
        for ch, positions in itertools.product(self.gpool_channels, self.gpool_positions):
            yield Operator.make("gavgpool", channels=ch, positions=positions)


def _in_size(out: int, kernel: int, stride: int, pad: int) -> int:
    """Smallest input size giving ``out`` outputs; for stride 1 and odd kernels with pad k//2 it is ``out``."""
    return max((out - 1) * stride + kernel - 2 * pad, 1)


def _macs(op: Operator) -> int:
    exact, c = _coords(op)
    return int(_basis(op.kind, exact, c)[1])


def default_grid() -> ProfileGrid:
    """The full grid: channels 1–256, lengths 8–1024, images up to 64×64, kernels 1/3/5/7, strides 1/2.

    Joins: ``add`` and ``concat`` (2–4 parts) over the element-wise sizes 1–262,144, ``gavgpool`` over 1–256
    channels × 1–4,096 positions (a 64×64 image). The int8 kinds on the same points; channels-last transposes of
    1–256 channels × 1–4,096 positions.
    """
    return ProfileGrid(
        conv1d_cin=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        conv1d_cout=(8, 16, 32, 64, 128, 256),
        conv1d_length=(8, 16, 32, 64, 128, 256, 512, 1024),
        conv2d_cin=(1, 3, 8, 16, 32, 64, 128),
        conv2d_cout=(8, 16, 32, 64, 128),
        conv2d_side=(4, 7, 8, 14, 16, 28, 32, 64),
        dw_channels=(8, 16, 32, 64, 128, 256),
        dw_length=(8, 32, 128, 512, 1024),
        dw_side=(4, 7, 8, 14, 16, 28, 32, 64),
        linear_fin=(8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192),
        linear_fout=(4, 8, 16, 32, 64, 128, 256, 512),
        pool_channels=(1, 4, 16, 32, 64, 128, 256),
        pool_length=(4, 16, 64, 256, 512),
        pool_side=(2, 4, 7, 8, 14, 16, 32),
        pool_windows=((2, 2), (3, 2), (4, 4)),
        elements=(1, 64, 256, 1024, 4096, 16384, 65536, 262144),
        reorder_channels=(16, 32, 64, 128, 256),
        reorder_side=(2, 4, 7, 8, 14, 16, 28, 32, 64),
        concat_parts=(2, 3, 4),
        gpool_channels=(1, 4, 16, 32, 64, 128, 256),
        gpool_positions=(1, 4, 16, 64, 256, 1024, 4096),
        transpose_channels=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        transpose_positions=(1, 4, 16, 64, 256, 1024, 4096),
    )


def quick_grid() -> ProfileGrid:
    """A small grid (a few seconds) for tests and smoke runs."""
    return ProfileGrid(
        conv1d_cin=(2, 16),
        conv1d_cout=(8, 32),
        conv1d_length=(32, 128),
        conv2d_cin=(1, 8),
        conv2d_cout=(8,),
        conv2d_side=(8, 16),
        dw_channels=(16,),
        kernels=(3,),
        strides=(1,),
        dw_length=(32, 128),
        dw_side=(8, 16),
        linear_fin=(64, 512),
        linear_fout=(16, 64),
        pool_channels=(8, 16),
        pool_length=(16, 64),
        pool_side=(4, 8),
        elements=(1, 1024, 4096),
        reorder_channels=(16, 32),
        reorder_side=(8, 16),
        concat_parts=(2,),
        gpool_channels=(4, 16),
        gpool_positions=(16, 64),
        transpose_channels=(2, 16),
        transpose_positions=(16, 128),
    )


# ------------------------------------------------------------------------------------------------- table
@dataclass
class LatencyTable:
    """Measured operator latencies (key -> median µs per ``run``) with the machine they were measured on.

    ``overhead_us`` is the time of one ``run`` of a 1-element ``Identity`` model: the fixed cost of a session
    call that every single-op measurement contains once and a whole model pays once. ``node_us`` is the
    executor's cost per extra node of a graph (:func:`measure_node_cost`): a single-op entry whose optimized
    graph has layout reorders around its operator pays it for each of them, and a model pays it per node;
    0.0 in tables written before it was measured (predictions then ignore it, as they used to).
    """

    entries: dict[str, float]
    machine: dict[str, Any]
    session: dict[str, Any]
    overhead_us: float
    batch_size: int = 1
    created: str = ""
    calibration: dict[str, float] = field(default_factory=dict)
    """Per operator group factors fitted on measured models by :func:`calibrate` (empty: uncalibrated)."""
    node_us: float = 0.0
    """Executor cost of one extra graph node (µs); see the class docstring."""
    _index: dict[tuple[str, tuple[int, ...]], dict[tuple[float, ...], float]] | None = field(
        default=None, init=False, repr=False, compare=False)
    _fits: dict[str, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)
    _axes_cache: dict[tuple[str, tuple[int, ...]], list[list[float]]] | None = field(
        default=None, init=False, repr=False, compare=False)

    # -- persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready contents."""
        return {"format": FORMAT, "created": self.created, "batch_size": self.batch_size,
                "overhead_us": self.overhead_us, "node_us": self.node_us, "machine": self.machine,
                "session": self.session,
                "calibration": dict(sorted(self.calibration.items())),
                "entries": dict(sorted(self.entries.items()))}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the table as JSON atomically (temporary file in the same folder, then rename).

        The file gets the permissions of a plainly created file (``0o666`` less the umask; a temporary file
        alone would be private), so other users and workers can read the machine's table.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                umask = os.umask(0)
                os.umask(umask)
                os.fchmod(fh.fileno(), 0o666 & ~umask)
                json.dump(self.to_dict(), fh, indent=1)
                fh.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LatencyTable:
        """Read a table written by :meth:`save`.

        Raises:
            ValueError: naming the file, when it is not JSON, not in :data:`FORMAT`, or has a malformed key or
                field.
            OSError: the file cannot be read.
        """
        try:
            data = json.loads(Path(path).read_text())
        except ValueError as err:  # not JSON (or not text)
            raise ValueError(f"{path}: not a {FORMAT} latency table (not JSON: {err})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} latency table")
        try:
            entries = {Operator.from_key(k).key: float(v) for k, v in data["entries"].items()}
            return cls(entries=entries, machine=dict(data["machine"]), session=dict(data["session"]),
                       overhead_us=float(data["overhead_us"]), node_us=float(data.get("node_us", 0.0)),
                       batch_size=int(data["batch_size"]),
                       created=str(data.get("created", "")),
                       calibration={str(k): float(v) for k, v in data.get("calibration", {}).items()})
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            what = f"missing field {err}" if isinstance(err, KeyError) else str(err)
            raise ValueError(f"{path}: malformed {FORMAT} latency table ({what})") from None

    # -- queries
    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, op: object) -> bool:
        return isinstance(op, Operator) and op.key in self.entries

    @property
    def nchwc_block(self) -> int:
        """Channel block of onnxruntime's NCHWc layout on the table's machine (0: layout not used)."""
        return int(self.session.get("nchwc_block", 0))

    @property
    def int8_nhwc(self) -> bool:
        """Whether the table's int8 convolutions and max pools were run channels-last (:func:`int8_nhwc`)."""
        return bool(self.session.get("int8_nhwc", False))

    def kinds(self) -> set[str]:
        """Operator kinds present in the table."""
        return {key.partition("(")[0] for key in self.entries}

    def same_machine(self, other: dict[str, Any] | None = None) -> bool:
        """Whether ``other`` (default: this machine now) has the CPU, cores, threads and runtime of the table."""
        other = other if other is not None else machine_description(self.machine.get("threads", 1))
        fields = ("cpu_model", "logical_cores", "threads", "onnxruntime", "machine")
        return all(self.machine.get(f) == other.get(f) for f in fields)

    def predict_operator(self, op: Operator | str, **params: int) -> float:
        """Predicted µs of one ``run`` of the single-op model: exact entry, else interpolation (module doc).

        Call as ``predict_operator(Operator.make(...))``, ``predict_operator("conv1d(...)")`` or
        ``predict_operator("conv1d", cin=..., ...)``.
        """
        if isinstance(op, str):
            op = Operator.make(op, **params) if params or "(" not in op else Operator.from_key(op)
        if op.key in self.entries:
            return self.entries[op.key]
        exact, coords = _coords(op, self.nchwc_block)
        groups = self._group_index(op.kind)
        if not groups:
            raise KeyError(f"{op.key}: the table has no {op.kind} measurements")
        points = groups.get(exact)
        if points is not None:
            axes = self._axes(op.kind, exact, points)
            inside = tuple(min(max(v, ax[0]), ax[-1]) for v, ax in zip(coords, axes, strict=True))
            value = _multilinear(points, inside, axes)
            if value is not None:
                return value if inside == coords else value * self._fit_ratio(op.kind, exact, coords, exact, inside)
        return self._anchored(op.kind, exact, coords, groups)

    def fitted_coefficients(self, kind: str) -> np.ndarray:
        """Coefficients of the per-kind cost model (order of the basis in the module docstring)."""
        if self._fits is None:
            self._fits = {}
        if kind not in self._fits:
            rows, ys = [], []
            for (exact, points) in self._group_index(kind).items():
                for coords, value in points.items():
                    rows.append(_basis(kind, exact, coords))
                    ys.append(value)
            if not rows:
                raise KeyError(f"the table has no {kind} measurements")
            self._fits[kind] = _nnls_relative(np.array(rows), np.array(ys))
        return self._fits[kind]

    def fitted_operator(self, op: Operator) -> float:
        """The per-kind least-squares cost model's prediction for ``op`` (µs)."""
        exact, coords = _coords(op, self.nchwc_block)
        return float(_basis(op.kind, exact, coords) @ self.fitted_coefficients(op.kind))

    def _axes(self, kind: str, exact: tuple[int, ...], points: dict[tuple[float, ...], float]) -> list[list[float]]:
        if self._axes_cache is None:
            self._axes_cache = {}
        key = (kind, exact)
        if key not in self._axes_cache:
            self._axes_cache[key] = [sorted({c[i] for c in points}) for i in range(len(next(iter(points))))]
        return self._axes_cache[key]

    def _group_index(self, kind: str) -> dict[tuple[int, ...], dict[tuple[float, ...], float]]:
        if self._index is None:
            samples: dict[tuple[str, tuple[int, ...]], dict[tuple[float, ...], list[float]]] = {}
            for key, value in self.entries.items():
                op = Operator.from_key(key)
                exact, coords = _coords(op, self.nchwc_block)
                samples.setdefault((op.kind, exact), {}).setdefault(coords, []).append(value)
            # operators that share coordinates (e.g. 8 and 16 output channels padded to one block) are averaged
            self._index = {g: {c: statistics.fmean(v) for c, v in pts.items()} for g, pts in samples.items()}
        return {exact: pts for (k, exact), pts in self._index.items() if k == kind}

    def _anchored(self, kind: str, exact: tuple[int, ...], coords: tuple[float, ...],
                  groups: dict[tuple[int, ...], dict[tuple[float, ...], float]]) -> float:
        """Nearest measured point (log distance, same group preferred) scaled by the fitted cost model."""

        def distance(g: tuple[int, ...], c: tuple[float, ...]) -> float:
            d = sum(math.log(a / b) ** 2 for a, b in zip(coords, c, strict=True))
            return d + sum(math.log(a / b) ** 2 for a, b in zip(exact, g, strict=True)) * 4.0

        best = min(((g, c) for g, pts in groups.items() for c in pts), key=lambda gc: distance(*gc))
        return groups[best[0]][best[1]] * self._fit_ratio(kind, exact, coords, *best)

    def _fit_ratio(self, kind: str, exact: tuple[int, ...], coords: tuple[float, ...], exact_ref: tuple[int, ...],
                   coords_ref: tuple[float, ...]) -> float:
        """Fitted cost at (exact, coords) over fitted cost at the reference point."""
        coef = self.fitted_coefficients(kind)
        f_query = float(_basis(kind, exact, coords) @ coef)
        f_ref = float(_basis(kind, exact_ref, coords_ref) @ coef)
        return f_query / f_ref if f_query > 0 and f_ref > 0 else 1.0


def _multilinear(points: dict[tuple[float, ...], float], q: tuple[float, ...],
                 axes: list[list[float]]) -> float | None:
    """Multilinear interpolation on the grid cell around ``q`` (``axes``: each axis' sorted grid values).

    None if ``q`` is off the grid's range or a corner of its cell was not measured.
    """
    brackets = []
    for i, v in enumerate(q):
        vals = axes[i]
        if v < vals[0] or v > vals[-1]:
            return None
        j = int(np.searchsorted(vals, v))
        if vals[j] == v:
            brackets.append(((vals[j], 1.0),))
        else:
            lo, hi = vals[j - 1], vals[j]
            t = (v - lo) / (hi - lo)
            brackets.append(((lo, 1.0 - t), (hi, t)))
    total = 0.0
    for corner in itertools.product(*brackets):
        key = tuple(c for c, _ in corner)
        if key not in points:
            return None
        total += math.prod(w for _, w in corner) * points[key]
    return total


# ---------------------------------------------------------------------------------------------- profiling
def profile_operators(grid: ProfileGrid | Iterable[Operator] | None = None, *, threads: int = 1,
                      batch_size: int = 1, repeats: int = 25, warmup: int = 5, budget_s: float = 0.02,
                      passes: int = 2, cpu: int | None = -1, seed: int = 0,
                      progress: Callable[[int, int, Operator, float], None] | None = None) -> LatencyTable:
    """Time every operator of ``grid`` (default :func:`default_grid`) and return the table.

    Each operator gets its own session and is timed by a :class:`QuietTimer`: the median of up to
    ``repeats`` quiet runs after ``warmup`` runs (fewer runs for slow operators, so one timing takes about
    ``budget_s``). With ``passes`` > 1 the grid is timed again in other seeded orders and the smallest
    median is kept; operators timed only while the machine was disturbed are timed once more at the end.
    The thread is pinned to ``cpu`` (see :func:`pinned`). ``progress(i, n, op, us)`` follows each timing.
    The int8 kinds are built in the layout onnxruntime runs them in here (:func:`int8_nhwc`, recorded in the
    table's ``session["int8_nhwc"]``).
    """
    block = nchwc_block(threads)
    nhwc = int8_nhwc(threads)
    if grid is None or isinstance(grid, ProfileGrid):
        ops = (grid or default_grid()).operators(block, nhwc)
    else:
        ops = [op for op in grid if (block or not op.kind.startswith("reorder"))
               and (nhwc or not op.kind.startswith("qtranspose"))]
    overhead_op = Operator.make("identity", elements=1)
    ops = [overhead_op, *(op for op in dict.fromkeys(ops) if op != overhead_op)]
    entries: dict[str, float] = {}
    redo: dict[str, Operator] = {}
    floor_then: dict[str, float] = {}
    rng = random.Random(seed)
    with pinned(cpu) as used_cpu:
        timer = QuietTimer(threads)
        schedule = [ops[:1] + rng.sample(ops[1:], len(ops) - 1) for _ in range(passes)]
        total, done = len(ops) * passes, 0
        for order in schedule:
            for op in order:
                before = timer.disturbed
                us = _measure_operator(op, timer, batch=batch_size, threads=threads, warmup=warmup,
                                       repeats=max(repeats, 200) if op is overhead_op else repeats,
                                       budget_s=budget_s, block=block, nhwc=nhwc)
                if timer.disturbed > before:
                    redo[op.key] = op
                else:
                    redo.pop(op.key, None)
                entries[op.key] = min(us, entries.get(op.key, math.inf))
                floor_then[op.key] = timer.floor_us
                done += 1
                if progress is not None:
                    progress(done, total, op, us)
        # timed while the machine was busy, or before the probe had seen a quiet phase: once more
        redo.update({op.key: op for op in ops if floor_then[op.key] > 1.1 * timer.floor_us})
        retried = len(redo)
        for _ in range(3):  # then entries costlier than a neighbour with more work in every respect
            for op in redo.values():
                us = _measure_operator(op, timer, batch=batch_size, threads=threads, repeats=repeats,
                                       warmup=warmup, budget_s=budget_s, block=block, nhwc=nhwc)
                entries[op.key] = min(us, entries[op.key])
            redo = {op.key: op for op in _implausible(entries, block)}
            retried += len(redo)
        node_us = min(measure_node_cost(timer, threads=threads) for _ in range(3))
    session = {"provider": "CPUExecutionProvider", "intra_op_num_threads": threads, "inter_op_num_threads": 1,
               "execution_mode": "ORT_SEQUENTIAL", "graph_optimization_level": "ORT_ENABLE_ALL",
               "opset": _OPSET, "statistic": "median of quiet runs (QuietTimer), smallest over passes",
               "repeats": repeats, "warmup": warmup, "passes": passes, "pinned_cpu": used_cpu,
               "probe_floor_us": timer.floor_us, "quiet_tolerance": timer.tolerance,
               "disturbed_timings": timer.disturbed, "retried": retried, "nchwc_block": block,
               "int8_nhwc": nhwc}
    return LatencyTable(entries=entries, machine=machine_description(threads), session=session,
                        overhead_us=entries[overhead_op.key], node_us=node_us, batch_size=batch_size,
                        created=datetime.now(UTC).isoformat(timespec="seconds"))


# --------------------------------------------------------------------------------------------- prediction
@dataclass(frozen=True)
class LatencyRow:
    """One operator of a model and the predicted µs it adds to a run.

    ``kind`` ends in ``+fused`` when the operator is folded into the previous convolution/linear node;
    ``shape`` is its per-sample input shape; ``blocked`` marks a node that runs in onnxruntime's NCHWc layout.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    us: float
    operator: Operator | None = None
    blocked: bool = False


@dataclass(frozen=True)
class LatencyPrediction:
    """Per-layer rows plus the fixed session overhead; ``total_ms`` = overhead + Σ rows."""

    rows: tuple[LatencyRow, ...]
    overhead_us: float

    @property
    def total_us(self) -> float:
        """Predicted µs of one inference run."""
        return self.overhead_us + sum(r.us for r in self.rows)

    @property
    def total_ms(self) -> float:
        """Predicted ms of one inference run."""
        return self.total_us / 1e3

    def table(self) -> str:
        """Rows as aligned text."""
        lines = [f"{'layer':24s} {'op':18s} {'input shape':18s} {'µs':>9s}"]
        lines += [f"{r.name:24s} {r.kind:18s} {'x'.join(map(str, r.shape)):18s} {r.us:9.2f}" for r in self.rows]
        lines.append(f"{'(session overhead)':24s} {'':18s} {'':18s} {self.overhead_us:9.2f}")
        lines.append(f"{'total':24s} {'':18s} {'':18s} {self.total_us:9.2f}")
        return "\n".join(lines)


_PASSTHROUGH = (nn.Identity, nn.Dropout)


def _activation_kind(mod: nn.Module) -> str | None:
    from hwnas.nn import QActivation

    if isinstance(mod, QActivation):
        return mod.kind
    for cls, kind in ((nn.ReLU, "relu"), (nn.Tanh, "tanh"), (nn.Sigmoid, "sigmoid")):
        if isinstance(mod, cls):
            return kind
    if isinstance(mod, _PASSTHROUGH):
        return "identity"
    return None


def _is_operator_module(mod: nn.Module) -> bool:
    known = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.Flatten)
    return isinstance(mod, known) or _activation_kind(mod) is not None


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (int(v[0]), int(v[-1])) if isinstance(v, tuple | list) else (int(v), int(v))


def _pad_for(n_in: int, n_out: int, kernel: int, stride: int, padding: Any) -> int:
    """Symmetric padding reproducing the observed output size (handles ``"same"``/``"valid"``)."""
    if isinstance(padding, str):
        return max(0, ((n_out - 1) * stride + kernel - n_in + 1) // 2)
    return int(padding)


def _module_operator(name: str, mod: nn.Module, ishape: tuple[int, ...],
                     oshape: tuple[int, ...]) -> tuple[Operator | None, int]:
    """Operator for one called module (None for an identity) and how many times it repeats (groups)."""
    act = _activation_kind(mod)
    if act is not None:
        return (None if act == "identity" else Operator.make(act, elements=math.prod(ishape))), 1
    if isinstance(mod, nn.Flatten):
        return Operator.make("flatten", elements=math.prod(ishape)), 1
    if isinstance(mod, nn.Linear):
        return Operator.make("linear", rows=math.prod(ishape[:-1]), fin=ishape[-1], fout=oshape[-1]), 1
    if isinstance(mod, nn.Conv1d):
        return _conv1d_operator(mod, ishape, oshape)
    if isinstance(mod, nn.Conv2d):
        return _conv2d_operator(mod, ishape, oshape)
    if isinstance(mod, nn.MaxPool1d | nn.AvgPool1d):
        k, s, pad = (_pair(getattr(mod, a))[0] for a in ("kernel_size", "stride", "padding"))
        kind = "maxpool1d" if isinstance(mod, nn.MaxPool1d) else "avgpool1d"
        return Operator.make(kind, channels=ishape[0], length=ishape[-1], kernel=k, stride=s, padding=pad), 1
    if isinstance(mod, nn.MaxPool2d | nn.AvgPool2d):
        (kh, kw), (sh, sw), (ph, pw) = (_pair(getattr(mod, a)) for a in ("kernel_size", "stride", "padding"))
        kind = "maxpool2d" if isinstance(mod, nn.MaxPool2d) else "avgpool2d"
        return Operator.make(kind, channels=ishape[0], height=ishape[1], width=ishape[2], kernel_h=kh,
                             kernel_w=kw, stride_h=sh, stride_w=sw, pad_h=ph, pad_w=pw), 1
    raise UnsupportedLayerError(f"layer {name!r}: {type(mod).__name__} has no CPU latency model")


def _conv1d_operator(mod: nn.Conv1d, ishape: tuple[int, ...], oshape: tuple[int, ...]) -> tuple[Operator, int]:
    cin, cout, g = mod.in_channels, mod.out_channels, mod.groups
    k, s = mod.kernel_size[0], mod.stride[0]
    pad = _pad_for(ishape[-1], oshape[-1], k, s, mod.padding if isinstance(mod.padding, str) else mod.padding[0])
    if g > 1 and g == cin == cout:
        return Operator.make("dwconv1d", channels=cin, length=ishape[-1], kernel=k, stride=s, padding=pad), 1
    return Operator.make("conv1d", cin=cin // g, cout=cout // g, length=ishape[-1], kernel=k, stride=s,
                         padding=pad), g


def _conv2d_operator(mod: nn.Conv2d, ishape: tuple[int, ...], oshape: tuple[int, ...]) -> tuple[Operator, int]:
    cin, cout, g = mod.in_channels, mod.out_channels, mod.groups
    (kh, kw), (sh, sw) = _pair(mod.kernel_size), _pair(mod.stride)
    pads = ("same", "same") if isinstance(mod.padding, str) else _pair(mod.padding)
    ph = _pad_for(ishape[1], oshape[1], kh, sh, mod.padding if isinstance(mod.padding, str) else pads[0])
    pw = _pad_for(ishape[2], oshape[2], kw, sw, mod.padding if isinstance(mod.padding, str) else pads[1])
    dims = dict(height=ishape[1], width=ishape[2], kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw,
                pad_h=ph, pad_w=pw)
    if g > 1 and g == cin == cout:
        return Operator.make("dwconv2d", channels=cin, **dims), 1
    return Operator.make("conv2d", cin=cin // g, cout=cout // g, **dims), g


def _data_flow(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[torch.fx.GraphModule, dict[Any, Any]]:
    """The model's torch.fx graph and every node's value on a zero input (batch 1, eval mode).

    The graph is :func:`hwnas.export.graph.trace`'s (layers as leaves). Leaves without a latency model are
    refused before anything runs.
    """
    from hwnas.export.errors import ExportError
    from hwnas.export.graph import ValueRecorder, trace
    from hwnas.quant import Quantizer

    try:
        gm = trace(model)
    except ExportError as err:
        raise UnsupportedLayerError(f"model {type(model).__name__}: the CPU latency model reads its data flow with "
                                    f"torch.fx, which failed: {err}") from err
    for n in gm.graph.nodes:
        if n.op == "call_module":
            mod = gm.get_submodule(str(n.target))
            if not (_is_operator_module(mod) or isinstance(mod, Quantizer)):
                raise UnsupportedLayerError(f"layer {str(n.target)!r}: {type(mod).__name__} has no CPU latency model")
    interp = ValueRecorder(gm)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            interp.run(torch.zeros((1, *input_shape)))
    finally:
        model.train(was_training)
    return gm, interp.values


@dataclass(frozen=True)
class ModelOperator:
    """One operator of a model as :func:`predict_latency` sees it: a called layer or a functional operation.

    ``operator`` is None for layers that export to no node (identity activations, dropout); ``repeats``
    is the group count of a grouped (not depthwise) convolution, predicted as that many smaller ones;
    ``fused`` marks an activation that onnxruntime folds into the convolution/linear node whose output it
    reads (and nothing else reads). Shapes are per sample; ``in_shape`` is the first operand's. ``inputs``
    names the operators whose outputs it reads (:data:`INPUT` for the model input; layers that export to no
    node pass their input through), ``consumers`` counts the reads of its output (a model output counts as
    one; 0 for a layer without a node), ``output`` marks a model output.
    """

    name: str
    operator: Operator | None
    repeats: int
    fused: bool
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    inputs: tuple[str, ...] = (INPUT,)
    consumers: int = 1
    output: bool = False


def model_operators(model: nn.Module, input_shape: tuple[int, ...]) -> list[ModelOperator]:
    """The operators of ``model`` on an input of per-sample ``input_shape``, in execution (topological) order.

    The data flow comes from the torch.fx trace (:func:`hwnas.export.graph.trace`: hwnas layers and torch
    modules are leaves): every called operator layer, and the functional operations between layers —
    ``x + y`` (``add``), ``torch.cat`` (``concat``; of one tensor: nothing), ``x.mean(trailing axes)``
    (``gavgpool``), ``torch.relu`` (``relu``), ``torch.flatten``/``view``/``reshape`` (``flatten``: one
    Flatten or Reshape node). Quantizer modules and ``contiguous`` pass their input through.

    Raises:
        UnsupportedLayerError: naming the layer or operation without a latency model (another function, a
            constant operand, a mean over the batch or non-trailing axes, ``torch.add`` with ``alpha``, a
            leaf module such as ``nn.LayerNorm``), or the model when torch.fx cannot trace its ``forward``.
    """
    from hwnas.export.graph import SUPPORTED_FUNCTIONS, describe_target, op_kind
    from hwnas.quant import Quantizer

    gm, values = _data_flow(model, tuple(input_shape))

    def shape(a: Any) -> tuple[int, ...]:
        v = values.get(a)
        return tuple(v.shape[1:]) if isinstance(v, torch.Tensor) else ()

    tensor: dict[torch.fx.Node, str] = {}  # fx node -> name of the operator producing its value
    names = {INPUT}
    found: list[tuple[str, Operator | None, int, tuple[int, ...], tuple[int, ...], tuple[str, ...]]] = []
    outputs: list[str] = []

    def unique(name: str) -> str:
        base, k = name, 1
        while name in names:
            k += 1
            name = f"{base}#{k}"
        names.add(name)
        return name

    def source(a: Any, n: torch.fx.Node) -> str:
        if isinstance(a, torch.fx.Node) and a in tensor:
            return tensor[a]
        raise UnsupportedLayerError(f"{n.name}: {describe_target(n)} with a constant operand ({a!r}) has no CPU "
                                    "latency model; fold constants into a layer's weights or bias")

    for n in gm.graph.nodes:
        if n.op == "placeholder":
            tensor[n] = INPUT
            continue
        if n.op == "output":
            torch.fx.node.map_arg(n.args[0], lambda a: outputs.append(tensor[a]) if a in tensor else None)
            break
        if n.op == "get_attr":
            raise UnsupportedLayerError(f"{n.target}: a tensor attribute used directly in forward has no CPU latency "
                                        "model; use a layer")
        first = n.args[0] if n.args else next(iter(n.kwargs.values()), None)
        if n.op == "call_module":
            target = str(n.target)
            mod = gm.get_submodule(target)
            src = source(first, n)
            if isinstance(mod, Quantizer):
                tensor[n] = src
                continue
            op, times = _module_operator(target, mod, shape(first), shape(n))
            found.append((unique(target), op, times, shape(first), shape(n), (src,)))
            tensor[n] = src if op is None else found[-1][0]
            continue
        kind = op_kind(n)
        if kind is None:
            raise UnsupportedLayerError(f"{n.name}: {describe_target(n)} has no CPU latency model (supported between "
                                        f"layers: {'; '.join(SUPPORTED_FUNCTIONS)})")
        if kind == "meta":
            if isinstance(values.get(n), torch.Tensor):
                raise UnsupportedLayerError(f"{n.name}: {describe_target(n)} on a tensor (indexing) has no CPU latency "
                                            "model")
            continue  # sizes and shapes only feed reshapes
        if kind == "identity":
            tensor[n] = source(first, n)
            continue
        if kind == "add":
            if "alpha" in n.kwargs or len(n.args) > 2:
                raise UnsupportedLayerError(f"{n.name}: add with alpha has no CPU latency model; scale inside a layer")
            other = n.args[1] if len(n.args) > 1 else n.kwargs.get("other")
            srcs = (source(first, n), source(other, n))
            op = Operator.make("add", elements=math.prod(shape(n)))
        elif kind == "cat":
            parts = first if first is not None else ()
            srcs = tuple(source(p, n) for p in parts)
            if len(srcs) == 1:
                tensor[n] = srcs[0]
                continue
            first = parts[0]
            op = Operator.make("concat", parts=len(srcs), elements=math.prod(shape(n)))
        elif kind == "mean":
            srcs = (source(first, n),)
            op = _mean_operator(n, shape(first))
        else:  # relu; flatten, reshape
            srcs = (source(first, n),)
            elements = math.prod(shape(first))
            op = Operator.make("relu" if kind == "relu" else "flatten", elements=elements)
        found.append((unique(n.name), op, 1, shape(first), shape(n), srcs))
        tensor[n] = found[-1][0]

    reads: dict[str, int] = {}
    for _, op, _, _, _, srcs in found:
        if op is not None:
            for s in srcs:
                reads[s] = reads.get(s, 0) + 1
    for s in outputs:
        reads[s] = reads.get(s, 0) + 1
    # ORT_ENABLE_ALL fuses an activation into the convolution/linear node whose output it reads, when nothing
    # else reads that output (not even the model output) and the node has no activation yet
    kinds = {name: op.kind for name, op, *_ in found if op is not None}
    taken: set[str] = set()
    result = []
    for name, op, times, ishape, oshape, srcs in found:
        fused = False
        if op is not None and op.kind in _ACTIVATIONS:
            src = srcs[0]
            fused = kinds.get(src) in _FUSES_ACTIVATION and reads.get(src) == 1 and src not in taken
            if fused:
                taken.add(src)
        result.append(ModelOperator(name, op, times, fused, ishape, oshape, srcs,
                                    reads.get(name, 0) if op is not None else 0, name in outputs))
    return result


def _mean_operator(n: torch.fx.Node, ishape: tuple[int, ...]) -> Operator:
    """``gavgpool`` for a mean over trailing per-sample axes (global average pooling); else an error."""
    dims = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
    rank = len(ishape) + 1
    if dims is None:
        raise UnsupportedLayerError(f"{n.name}: a mean over every axis (the batch too) has no CPU latency model; "
                                    "give the spatial axes")
    axes = sorted({int(d) % rank for d in (dims if isinstance(dims, tuple | list) else (dims,))})
    if not axes or axes[0] == 0 or axes != list(range(rank - len(axes), rank)):
        raise UnsupportedLayerError(f"{n.name}: a mean over axes {axes} has no CPU latency model; only a mean over "
                                    "the trailing (spatial) axes is (global average pooling)")
    kept = len(ishape) - len(axes)
    return Operator.make("gavgpool", channels=math.prod(ishape[:kept]), positions=math.prod(ishape[kept:]))


def _missing_kind(where: str, kind: str, deployed: bool = False) -> MissingKindError:
    why = ("a table profiled before hwnas priced onnxruntime's int8 kernels, which precision='deployed' needs"
           if deployed else f"a table profiled before hwnas predicted {kind}")
    return MissingKindError(
        f"{where}: the CPU latency table has no {kind} measurements ({why}, or with a grid without it); profile it "
        "again: hwnas profile-cpu <table> --force (or profile_operators(default_grid()))", kind)


def _require_kinds(plan: Sequence[ModelOperator], table: LatencyTable, deployed: bool = False) -> None:
    """Raise :class:`MissingKindError` for the first operator whose kind the table has no measurements of.

    With ``deployed`` the table must also hold the float ↔ int8 conversions (``quantize``, ``dequantize``) and,
    where onnxruntime runs int8 convolutions channels-last, its transposes.
    """
    have = table.kinds()
    for item in plan:
        op = item.operator
        if op is None or (item.fused and op.kind in ("relu", "identity")) or op.kind in have:
            continue
        raise _missing_kind(f"layer {item.name!r}", op.kind, deployed and op.kind in INT8_KINDS)
    if deployed:
        needed = ["quantize", "dequantize"] + (["qtranspose_in", "qtranspose_out"] if table.int8_nhwc else [])
        for kind in needed:
            if kind not in have:
                raise _missing_kind("precision='deployed'", kind, deployed=True)


def _fits_int8(q: Any, upstream: torch.Tensor | None = None) -> bool:
    """Whether an operand quantized by ``q`` (or, without one, ``upstream`` bits wide) runs as int8 in onnxruntime.

    Fixed-point and scaled-int quantizers of at most 8 bits (widest group) do; float16, wider ones and float do not.
    """
    from hwnas.quant import FixedPointQuantizer, ScaledIntQuantizer

    if q is None:
        return upstream is not None and float(upstream) <= 8.0
    return isinstance(q, FixedPointQuantizer | ScaledIntQuantizer) and q.max_bits() <= 8.0


def _layer_widths(model: nn.Module) -> dict[str, tuple[nn.Module, bool]]:
    """Every convolution and linear hwnas layer by call name, and whether it deploys as int8 (model already run)."""
    from hwnas.nn.metrics import _walk

    out: dict[str, tuple[nn.Module, bool]] = {}
    with torch.no_grad():
        for name, layer, upstream in _walk(model):
            if isinstance(layer, nn.Conv1d | nn.Conv2d | nn.Linear):
                out[name] = (layer, _fits_int8(layer.weight_quantizer) and _fits_int8(layer.input_quantizer, upstream))
    return out


def int8_layers(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> dict[str, bool]:
    """Which convolution and linear layers of ``model`` deploy as onnxruntime int8 kernels (by module name).

    A layer does when its weight quantizer and its input are fixed-point or scaled-int of at most 8 bits (the
    widest group, :meth:`~hwnas.quant.FixedPointQuantizer.element_bits`): the input quantizer's width, or, for a
    layer without one, the width of the activation reaching it along the data flow (its producer's output width,
    as :mod:`hwnas.nn.metrics` passes ``upstream_bits``; float data is 32 bits). With ``input_shape`` the model
    runs once on a zero input first (eval mode), so lazily created quantizer state exists. Layers that are not
    hwnas layers (plain ``nn.Conv1d`` …) are float and not listed.
    """
    if input_shape is not None:
        _run_once(model, tuple(input_shape))
    return {name: int8 for name, (_, int8) in _layer_widths(model).items()}


def _run_once(model: nn.Module, input_shape: tuple[int, ...]) -> None:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape)))
    finally:
        model.train(was_training)


_QDQ_FUSABLE = ("add", "sigmoid", "avgpool1d", "avgpool2d", "concat")
"""Float kinds onnxruntime fuses into an int8 kernel when ``DequantizeLinear`` nodes feed all their inputs and a
``QuantizeLinear`` takes their output (``QLinearAdd``, ``QLinearSigmoid``, ``QLinearAveragePool``,
``QLinearConcat``); tanh and the global average pool (``ReduceMean``) have no such kernel."""

_PASS_U8 = ("maxpool1d", "maxpool2d", "flatten", "relu")
"""Kinds ``quantize_static`` (QDQ) quantizes where their input is quantized (flatten: ``Flatten``/``Reshape``)."""


def _deployed_plan(plan: Sequence[ModelOperator], int8: dict[str, bool]) -> tuple[list[ModelOperator], set[str]]:
    """``plan`` as deployed (its int8 operators as their int8 kinds) and the quantized tensors.

    A quantized tensor has a ``QuantizeLinear`` → ``DequantizeLinear`` pair in the deployed model: every reader of
    it reads the uint8 value (an int8 kernel) or its dequantized copy (a float node). The tensors and kinds mirror
    ``quantize_static`` (QDQ, :func:`export_deployed_onnx`) and onnxruntime's graph optimizations:

    1. ``quantize_static``, in data-flow order: the input and the output of every convolution and linear layer in
       ``int8`` are quantized; so is the output of a max pool, flatten or ReLU whose input is.
    2. onnxruntime moves a ``QuantizeLinear`` after a max pool that is no model output above it, when the pool's
       input has no other reader (QDQ propagation): the input is quantized too, and so on upwards.
    3. A ReLU whose output is quantized and input is not is dropped and its input quantized (ReLU +
       ``QuantizeLinear`` fusion), when the input has no other reader.
    4. Kinds: an int8 layer runs as ``QLinearConv``/``QGemm`` (its ``q`` kind); a max pool, flatten or ReLU between
       quantized tensors on uint8 (``qmaxpool*``; a flatten costs what it did; a ReLU is gone: 0); an ``add``,
       sigmoid, average pool or ``concat`` (:data:`_QDQ_FUSABLE`) whose inputs and output are all quantized as its
       int8 kernel; everything else float — an activation is not fused into an int8 kernel.
    """
    base = re.compile(r"#\d+$")
    items = {item.name: item for item in plan if item.operator is not None}
    ops = list(items.values())
    kernels = {name for name, item in items.items()
               if item.operator.kind in _FUSES_ACTIVATION and int8.get(base.sub("", name), False)}
    readers: dict[str, list[ModelOperator]] = {}
    for item in ops:
        for t in dict.fromkeys(item.inputs):
            readers.setdefault(t, []).append(item)

    def alone(t: str) -> bool:  # read by one node only, and no model output
        return t == INPUT or (len(readers.get(t, ())) == 1 and not items[t].output)

    quantized: set[str] = set()
    for item in ops:  # 1. quantize_static
        if item.name in kernels:
            quantized.update((item.inputs[0], item.name))
        elif item.inputs[0] in quantized and item.operator.kind in _PASS_U8:
            quantized.add(item.name)
    for item in reversed(ops):  # 2. QuantizeLinear moved above max pools
        src = item.inputs[0]
        if (item.operator.kind in ("maxpool1d", "maxpool2d") and item.name in quantized and not item.output
                and src not in quantized and alone(src)):
            quantized.add(src)
    dropped: set[str] = set()
    for item in ops:  # 3. ReLU + QuantizeLinear
        src = item.inputs[0]
        if item.operator.kind == "relu" and item.name in quantized and src not in quantized and src != INPUT \
                and alone(src):
            quantized.add(src)
            dropped.add(item.name)
    runs_int8: set[str] = set()
    out = []
    for item in plan:  # 4. kinds
        op = item.operator
        if op is None:
            out.append(item)
            continue
        ins = item.inputs
        between = item.name in quantized and all(t in quantized for t in ins)
        if item.name in kernels:
            item = replace(item, operator=Operator(_INT8_OF[op.kind], op.params))
        elif between and op.kind in ("maxpool1d", "maxpool2d", "flatten"):
            item = replace(item, operator=Operator(_INT8_OF.get(op.kind, op.kind), op.params))
        elif op.kind == "relu" and (between or item.name in dropped):
            item = replace(item, fused=True)
            if item.name in dropped:
                out.append(item)
                continue
        elif between and op.kind in _QDQ_FUSABLE:
            item = replace(item, operator=Operator(_INT8_OF[op.kind], op.params), fused=False)
        else:
            if item.fused and ins[0] in runs_int8:  # an int8 kernel fuses no activation
                item = replace(item, fused=False)
            out.append(item)
            continue
        runs_int8.add(item.name)
        out.append(item)
    return out, quantized


_AGNOSTIC = (*_ACTIVATIONS, "add", "concat", "qadd", "qsigmoid", "qconcat")
"""Kinds onnxruntime's transpose optimizer can run in either layout (element-wise, or a concatenation)."""

_CHANNELS_LAST = ("qconv1d", "qdwconv1d", "qconv2d", "qdwconv2d", "qmaxpool1d", "qmaxpool2d", "qavgpool1d",
                  "qavgpool2d")


class _Int8Flow:
    """The float ↔ int8 conversions and channels-last transposes of a deployed model, along its data flow.

    :func:`_deployed_plan` gives the int8 operators and the quantized tensors. A quantized tensor made by a float
    node (or the model input) pays one ``quantize`` (its ``QuantizeLinear``, shared by its readers), and every
    float node that reads a quantized tensor one ``dequantize`` (onnxruntime gives each reader its own
    ``DequantizeLinear``); a model output that is quantized is dequantized. Int8 convolutions and pools run
    channels-last (NHWC, where onnxruntime does, :func:`int8_nhwc`) and a reader that needs the other layout pays
    one uint8 transpose per tensor and layout (onnxruntime's transpose optimizer cancels the transposes between
    channels-last nodes and moves them through layout-agnostic nodes, leaving the rest on the uint8 side). Int8
    convolutions and average pools read NHWC, ``QGemm`` and flatten NCHW, other float nodes NCHW; a uint8 max pool
    runs channels-last when its input is (else it is the slower NCHW kernel, ``qmaxpool*_nchw``). Layout-agnostic
    nodes (activations, adds, concatenations; float or int8) whose inputs are all channels-last stay channels-last
    when their output reaches a channels-last node through such nodes, and read NCHW otherwise (the transposes stay
    on their inputs). Model outputs are float NCHW. Each conversion is a row: its table time above the overhead
    plus one node.
    """

    def __init__(self, table: LatencyTable, input_shape: tuple[int, ...], plan: Sequence[ModelOperator],
                 quantized: set[str]) -> None:
        self.table = table
        self.nhwc = table.int8_nhwc
        self.quantized = quantized
        self.plan = list(plan)
        self.shapes = {INPUT: tuple(input_shape), **{i.name: i.out_shape for i in plan if i.operator is not None}}
        self.layout: dict[str, str] = {INPUT: "nchw"}  # produced layout
        self.layouts: dict[str, set[str]] = {INPUT: {"nchw"}}  # layouts made (transposes charged)
        self.made_u8: set[str] = set()  # tensors produced by int8 nodes, or quantized (quantize charged)
        self.dequantized: set[tuple[str, str]] = set()  # (tensor, reader)
        self.readers: dict[str, list[ModelOperator]] = {}
        for item in plan:
            if item.operator is not None:
                for t in dict.fromkeys(item.inputs):
                    self.readers.setdefault(t, []).append(item)

    def _channels_last(self, kind: str) -> bool:
        return self.nhwc and kind in _CHANNELS_LAST

    def _reaches_channels_last(self, tensor: str) -> bool:
        """Whether a channels-last node reads ``tensor``, directly or through layout-agnostic nodes."""
        return any(self._channels_last(r.operator.kind)
                   or (r.operator.kind in _AGNOSTIC and self._reaches_channels_last(r.name))
                   for r in self.readers.get(tensor, ()))

    def _row(self, tensor: str, kind: str) -> LatencyRow:
        shape = self.shapes[tensor]
        if kind in ("quantize", "dequantize"):
            op = Operator.make(kind, elements=math.prod(shape))
        else:
            op = Operator.make(kind, channels=shape[0], positions=math.prod(shape[1:]))
        us = max(0.0, self.table.predict_operator(op) - self.table.overhead_us) + self.table.node_us
        return LatencyRow(f"{tensor}:{kind}", kind, shape, us, op)

    def _need(self, tensor: str, u8: bool, layout: str | None, reader: str) -> list[LatencyRow]:
        rows = []
        if tensor in self.quantized and tensor not in self.made_u8:
            self.made_u8.add(tensor)
            rows.append(self._row(tensor, "quantize"))
        if not u8 and tensor in self.quantized and (tensor, reader) not in self.dequantized:
            self.dequantized.add((tensor, reader))
            rows.append(self._row(tensor, "dequantize"))
        if layout is not None and len(self.shapes[tensor]) >= 2 and layout not in self.layouts[tensor]:
            self.layouts[tensor].add(layout)
            rows.append(self._row(tensor, "qtranspose_in" if layout == "nhwc" else "qtranspose_out"))
        return rows

    def _step(self, item: ModelOperator, int8: bool) -> tuple[ModelOperator, list[LatencyRow]]:
        op = item.operator
        assert op is not None
        srcs = list(dict.fromkeys(item.inputs))
        layouts = {self.layout[t] for t in srcs}
        if op.kind in ("qmaxpool1d", "qmaxpool2d") and self.nhwc and layouts != {"nhwc"}:
            op = Operator(op.kind + "_nchw", op.params)  # a uint8 max pool on NCHW data: not converted to NHWC
            item = replace(item, operator=op)
        kind = op.kind
        channels_last = self._channels_last(kind)
        neutral = (kind in _AGNOSTIC or (item.fused and kind == "relu")) and (
            layouts == {"nchw"} or (layouts == {"nhwc"} and self._reaches_channels_last(item.name)))
        need = "nhwc" if channels_last else (None if neutral else "nchw")
        rows = [row for t in srcs for row in self._need(t, int8, need, item.name)]
        produced = "nhwc" if channels_last else (self.layout[srcs[0]] if neutral else "nchw")
        self.layout[item.name] = produced if len(item.out_shape) >= 2 else "nchw"
        self.layouts[item.name] = {self.layout[item.name]}
        if int8:
            self.made_u8.add(item.name)
        return item, rows

    def run(self) -> tuple[list[ModelOperator], dict[str, list[LatencyRow]], list[LatencyRow]]:
        """The plan (uint8 max pools on NCHW data renamed), the conversion rows before each node, and at the end."""
        plan, before = [], {}
        for item in self.plan:
            if item.operator is None:
                plan.append(item)
                continue
            kind, quantized = item.operator.kind, self.quantized
            int8 = kind in INT8_KINDS or (  # a uint8 flatten, a ReLU dropped between quantized tensors
                item.name in quantized and ((kind == "flatten" and all(t in quantized for t in item.inputs))
                                            or (kind == "relu" and item.fused)))
            item, before[item.name] = self._step(item, int8)
            plan.append(item)
        outputs = [item.name for item in plan if item.output]
        return plan, before, [row for t in dict.fromkeys(outputs) for row in self._need(t, False, "nchw", "")]


def predict_latency(model: nn.Module, input_shape: tuple[int, ...], table: LatencyTable,
                    precision: str = "float") -> LatencyPrediction:
    """Predict one inference run of ``model`` on an input of per-sample ``input_shape`` (see module doc).

    BatchNorm layers after a convolution or linear layer are folded into it first (a copy; ``model`` is
    left as it is). A model needing an operator kind the table lacks raises :class:`MissingKindError`.

    ``precision`` (:data:`PRECISIONS`): ``"float"`` (default) predicts the float graph of the architecture,
    quantizers ignored. ``"deployed"`` predicts the model as :func:`measure_latency` ``(precision="deployed")``
    deploys it: every convolution and linear layer whose weights and input are at most 8 bits wide
    (:func:`int8_layers`) runs as onnxruntime's int8 kernel (the ``q`` kinds), wider and float ones as float,
    and data passing between int8 and float nodes (model input and output too) pays a ``quantize`` or
    ``dequantize`` row (and, where int8 convolutions run channels-last, uint8 transposes) — see
    :class:`_Int8Flow`. onnxruntime on x86 has int8 kernels only: 2- to 7-bit layers run as int8, as fast as
    8-bit ones (their gain is memory, not time), and layers over 8 bits run as float. A table without the int8
    kinds (profiled before they existed) raises :class:`MissingKindError` for ``"deployed"``, naming the kind.
    """
    from hwnas.nn import fold_batchnorm

    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {list(PRECISIONS)}, got {precision!r}")
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        model = fold_batchnorm(model)
    plan = model_operators(model, input_shape)
    before: dict[str, list[LatencyRow]] = {}
    finish: list[LatencyRow] = []
    if precision == "deployed":
        plan, quantized = _deployed_plan(plan, {n: int8 for n, (_, int8) in _layer_widths(model).items()})
        _require_kinds(plan, table, deployed=True)
        plan, before, finish = _Int8Flow(table, tuple(input_shape), plan, quantized).run()
        _require_kinds(plan, table, deployed=True)  # uint8 max pools on NCHW data
    else:
        _require_kinds(plan, table)
    layout = _Layout(table, tuple(input_shape), plan)
    base_us = table.overhead_us - table.node_us  # a session call without any node
    absorbs: set[str] = set()  # adds fused into an NCHWc convolution that can still take an activation
    rows = []
    for item in plan:
        op = item.operator
        if op is None:
            rows.append(LatencyRow(item.name, "identity", item.in_shape, 0.0))
            continue
        rows += before.get(item.name, [])
        extra, sum_fused = layout.step(item)
        fused = item.fused or sum_fused or (op.kind in _ACTIVATIONS and item.inputs[0] in absorbs)
        if fused:
            us = _fused_cost(table, op)
            kind = op.kind + "+fused"
        else:
            # the operator's own node: its table time above the overhead (which holds one node) plus one node
            us = max(0.0, table.predict_operator(op) - table.overhead_us + table.node_us) * item.repeats
            kind = op.kind if item.repeats == 1 else f"{op.kind}x{item.repeats}"
        if sum_fused and item.consumers == 1:
            absorbs.add(item.name)
        us = max(0.0, us + extra)
        blocked = not fused and layout.runs_blocked(op)
        rows.append(LatencyRow(item.name, kind, item.in_shape, us, op, blocked=blocked))
    if rows and plan:
        last = rows[-1]
        rows[-1] = replace(last, us=last.us + layout.finish([item.name for item in plan if item.output]))
    rows += finish
    if table.calibration:
        cal = table.calibration
        rows = [replace(r, us=max(0.0, r.us * cal.get(calibration_group(r.kind), 1.0)
                                  + (cal.get(_offset_key(calibration_group(r.kind)), 0.0) if r.blocked else 0.0)))
                for r in rows]
        return LatencyPrediction(tuple(rows), base_us * cal.get("overhead", 1.0))
    return LatencyPrediction(tuple(rows), base_us)


_GROUPS = {"maxpool1d": "pool", "avgpool1d": "pool", "maxpool2d": "pool", "avgpool2d": "pool",
           "relu": "activation", "tanh": "activation", "sigmoid": "activation", "flatten": "activation",
           "identity": "activation", "add": "activation", "concat": "activation", "gavgpool": "pool"}
CALIBRATION_GROUPS: tuple[str, ...] = ("overhead", "conv1d", "dwconv1d", "conv2d", "dwconv2d", "linear", "pool",
                                       "activation", "fused_activation")
"""Groups a calibration fits one factor for (``overhead``: the session overhead)."""
NCHWC_GROUPS: tuple[str, ...] = ("conv2d", "dwconv2d", "pool")
"""Groups whose NCHWc-domain nodes get a signed per-node offset from :func:`calibrate`
(calibration entries ``nchwc_<group>_us``)."""


def _offset_key(group: str) -> str:
    return f"nchwc_{group}_us"


def calibration_group(row_kind: str) -> str:
    """The calibration group of a :class:`LatencyRow` kind (``conv2dx4`` → ``conv2d``, ``tanh+fused`` → …)."""
    if row_kind.endswith("+fused"):
        return "fused_activation"
    base = re.sub(r"x\d+$", "", row_kind)
    return _GROUPS.get(base, base)


def calibrate(table: LatencyTable, models: Sequence[tuple[nn.Module, tuple[int, ...]]],
              measured_ms: Sequence[float] | None = None, *, repeats: int = 100, rounds: int = 3,
              ridge: float = 0.3, progress: bool = False) -> LatencyTable:
    """A copy of ``table`` whose predictions are corrected by per-group factors fitted on measured models.

    Single operators are timed alone with hot caches; inside a model they see the neighbours' data in the
    caches, fused epilogues and layout changes. ``calibrate`` measures ``models`` (each ``(model,
    input_shape)``, with :func:`measure_latencies`; or takes ``measured_ms``), predicts them with the
    uncalibrated table, and fits one factor per :data:`CALIBRATION_GROUPS` entry and, for every group of
    :data:`NCHWC_GROUPS` with NCHWc-domain nodes in the models, a signed µs offset per such node (entry
    ``nchwc_<group>_us``), so that Σ_groups factor · (predicted µs of the group) + Σ offset · (blocked nodes)
    matches the measured total, by non-negative least squares on the relative error (an offset as the
    difference of two non-negative columns) with a ridge term pulling each factor toward 1 and each offset
    toward 0 (``ridge``: its weight, as if ``ridge``² extra models said "1"). Use models disjoint from the
    ones you evaluate (e.g.
    :func:`hwnas.cost.latency_zoo.model_zoo` with another seed).
    """
    from scipy.optimize import nnls

    if not models:
        raise ValueError("models: need at least one (model, input_shape) to calibrate on")
    if measured_ms is not None and len(measured_ms) != len(models):
        raise ValueError(f"measured_ms: {len(measured_ms)} values for {len(models)} models")
    if ridge < 0:
        raise ValueError(f"ridge: must be >= 0, got {ridge}")
    base = replace(table, calibration={})
    if measured_ms is None:
        floor = table.session.get("probe_floor_us")
        measured_ms = measure_latencies(models, repeats, rounds=rounds, threads=int(table.machine.get("threads", 1)),
                                        floor_us=floor, progress=progress)
    col = {g: j for j, g in enumerate(CALIBRATION_GROUPS)}
    a = np.zeros((len(models), len(col)))
    off_col = {g: j for j, g in enumerate(NCHWC_GROUPS)}
    blocked = np.zeros((len(models), len(off_col)))
    for i, (model, shape) in enumerate(models):
        pred = predict_latency(model, shape, base)
        a[i, col["overhead"]] = pred.overhead_us
        for r in pred.rows:
            group = calibration_group(r.kind)
            if group in col:
                a[i, col[group]] += r.us
            if r.blocked and group in off_col:
                blocked[i, off_col[group]] += 1
    y = np.asarray(measured_ms, dtype=np.float64) * 1e3
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("measured_ms: every value must be a positive, finite time")
    used = a.any(axis=0)
    k = int(used.sum())
    # factors (non-negative) and a signed µs offset per NCHWc node of each group seen (a pair of
    # non-negative columns each); the ridge pulls factors toward 1 and offsets toward 0
    offsets = [g for g, j in off_col.items() if blocked[:, j].any()]
    b = blocked[:, [off_col[g] for g in offsets]]
    a_rel = np.hstack([a[:, used], b, -b]) / y[:, None]
    rhs = np.ones(len(y))
    if ridge > 0:
        m = len(offsets)
        prior = np.zeros((k + m, k + 2 * m))
        prior[:k, :k] = ridge * np.eye(k)
        prior[k:, k:k + m] = ridge * np.eye(m)
        prior[k:, k + m:] = -ridge * np.eye(m)
        a_rel = np.vstack([a_rel, prior])
        rhs = np.concatenate([rhs, ridge * np.ones(k), np.zeros(m)])
    coef, _ = nnls(a_rel, rhs)
    factors = dict.fromkeys(CALIBRATION_GROUPS, 1.0)
    factors.update({g: float(c) for g, c in zip(np.array(CALIBRATION_GROUPS)[used], coef[:k], strict=True)})
    m = len(offsets)
    factors.update({_offset_key(g): float(coef[k + j] - coef[k + m + j]) for j, g in enumerate(offsets)})
    return replace(table, calibration=factors)


def _progress(items: Sequence[Any], enabled: bool, desc: str) -> Iterable[Any]:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc)


def _fused_cost(table: LatencyTable, op: Operator) -> float:
    """Cost of an activation fused into the preceding node.

    ReLU is free (applied in the kernel's epilogue); tanh and sigmoid cost their element-wise compute: their
    table time minus their time at the smallest measured size. An add fused into a blocked convolution (its
    Sum input, read in the epilogue) costs its per-element work: the slope of the fitted ``add`` cost model
    times its elements (a difference of two single-op timings is below their noise for small tensors).
    """
    if op.kind in ("relu", "identity"):
        return 0.0
    if op.kind == "add":
        return float(table.fitted_coefficients("add")[1]) * op.p["elements"]
    smallest = _smallest_elements(table, op.kind)
    return max(0.0, table.predict_operator(op) - table.predict_operator(op.kind, elements=smallest))


def _smallest_elements(table: LatencyTable, kind: str) -> int:
    sizes = [Operator.from_key(k).p["elements"] for k in table.entries if k.startswith(kind + "(")]
    if not sizes:
        raise KeyError(f"the table has no {kind} measurements")
    return min(sizes)


class _Layout:
    """Mirror of onnxruntime's NCHWc layout transform (x86 with AVX2/AVX-512) over a model's data flow.

    2-D convolutions run in the blocked NCHWc layout (input channels below the block are read as NCHW;
    depthwise always reorders its input); 2-D pools do when their channels are a multiple of the block;
    element-wise activations keep the layout their input was produced in; an ``add`` whose operands were
    both produced blocked (one shape) runs blocked, and is fused into an operand's blocked convolution (as its
    ``Sum`` input) when that convolution's output has no other reader; a channel ``concat`` of blocked
    operands with whole channel blocks runs blocked; everything else needs NCHW. A reorder is charged once
    per tensor and layout (onnxruntime shares it among the tensor's readers). A single-op table entry
    contains the reorders its lone operator needs; within a model a reorder is only paid where the layout
    changes. :meth:`step` returns the µs to add to an operator's table-based cost.
    """

    def __init__(self, table: LatencyTable, input_shape: tuple[int, ...] = (),
                 plan: Sequence[ModelOperator] = ()) -> None:
        self.table = table
        self.block = table.nchwc_block
        self.native: dict[str, bool] = {INPUT: False}  # tensor -> produced in the blocked layout
        self.copies: dict[str, set[bool]] = {INPUT: {False}}  # tensor -> layouts it exists in (reorders made)
        self.shapes: dict[str, tuple[int, ...]] = {INPUT: tuple(input_shape)}
        self.items = {item.name: item for item in plan if item.operator is not None}
        self.with_sum: set[str] = set()  # convolutions that took an add as their Sum input

    def _reorder(self, kind: str, shape: tuple[int, ...]) -> float:
        """A reorder node's cost: its table time above the overhead plus the executor's cost of the node.

        The measured (interpolated) entry, not the linear fit: large reorders cost more than linear once
        their data leaves the L2 cache, and the fit underestimated them by up to 30 %.
        """
        c, h, w = shape if len(shape) == 3 else (shape[0], math.prod(shape[1:]), 1)
        op = Operator.make(kind, channels=c, height=h, width=w)
        return max(0.0, self.table.predict_operator(op) - self.table.overhead_us) + self.table.node_us

    def _needs(self, op: Operator) -> bool | None:
        """True: needs NCHWc input, False: needs NCHW, None: either."""
        p, b = op.p, self.block
        if op.kind == "conv2d":
            return p["cin"] >= b
        if op.kind == "dwconv2d":
            return True
        if op.kind in ("maxpool2d", "avgpool2d"):
            return p["channels"] % b == 0
        if op.kind in _ACTIVATIONS:
            return None
        return False

    def _needs_item(self, item: ModelOperator) -> bool | None:
        """:meth:`_needs`, for the joins from their operands.

        onnxruntime keeps a join blocked only when every operand was produced blocked.
        """
        op = item.operator
        assert op is not None
        if op.kind == "add":
            return all(self.native[t] and self.shapes[t] == item.out_shape for t in item.inputs)
        if op.kind == "concat":
            out = item.out_shape
            return len(out) == 3 and all(
                self.native[t] and len(self.shapes[t]) == 3 and self.shapes[t][1:] == out[1:]
                and self.shapes[t][0] % self.block == 0 for t in item.inputs)
        return self._needs(op)

    def _takes_sum(self, tensor: str) -> bool:
        """Whether ``tensor`` is the output of a blocked convolution that can take an add as its Sum input."""
        item = self.items.get(tensor)
        if item is None or item.operator is None or item.consumers != 1 or tensor in self.with_sum:
            return False
        return item.operator.kind in ("conv2d", "dwconv2d") and self.runs_blocked(item.operator)

    def step(self, item: ModelOperator) -> tuple[float, bool]:
        """µs to add to ``item``'s cost for layout changes, and whether ``item`` is fused into a convolution.

        The µs are negative where the table entry paid reorders the model does not; only an ``add`` fuses (into
        a blocked convolution, as its Sum input).
        """
        if not self.block:
            return 0.0, False
        op = item.operator
        assert op is not None
        needs = self._needs_item(item)
        extra = 0.0
        if needs is not None:
            for t in dict.fromkeys(item.inputs):
                if needs not in self.copies[t]:
                    extra += self._reorder("reorder_in" if needs else "reorder_out", self.shapes[t])
                    self.copies[t].add(needs)
        blocked = self.native[item.inputs[0]] if needs is None else needs or op.kind == "conv2d"
        self.native[item.name], self.copies[item.name] = blocked, {blocked}
        self.shapes[item.name] = item.out_shape
        fused = False
        if op.kind == "add" and needs:
            sums = [t for t in item.inputs if self._takes_sum(t)]
            if sums:
                self.with_sum.add(sums[0])
                fused = True
        if op.kind in ("conv2d", "dwconv2d") or (needs and op.kind in ("maxpool2d", "avgpool2d")):
            # what the single-op table entry paid for its own layout changes
            if needs:
                extra -= self._reorder("reorder_in", item.in_shape)
            extra -= self._reorder("reorder_out", item.out_shape)
        return extra, fused

    def runs_blocked(self, op: Operator) -> bool:
        """Whether ``op`` runs as an NCHWc-domain node (2-D convolutions; pools on whole channel blocks)."""
        return bool(self.block) and (op.kind in ("conv2d", "dwconv2d") or (
            op.kind in ("maxpool2d", "avgpool2d") and bool(self._needs(op))))

    def finish(self, outputs: Sequence[str]) -> float:
        """Cost of returning the model outputs to NCHW."""
        if not self.block:
            return 0.0
        extra = 0.0
        for t in dict.fromkeys(outputs):
            if False not in self.copies[t]:
                extra += self._reorder("reorder_out", self.shapes[t])
        return extra


# ---------------------------------------------------------------------------------------------- measuring
def _float_model(model: nn.Module, input_shape: tuple[int, ...]) -> nn.Module:
    """``model`` itself when no hwnas layer has a quantizer, else a copy without them (the float graph).

    The model runs once on a zero input first (eval mode): quantizers create some of their state lazily, and
    a module with uninitialized parameters can be neither copied nor exported.
    """
    from hwnas.nn import QLayer, set_quantizers

    slots = ("input_quantizer", "weight_quantizer", "bias_quantizer", "output_quantizer")
    if not any(isinstance(m, QLayer) and any(getattr(m, s, None) is not None for s in slots)
               for m in model.modules()):
        return model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape)))
        copied = copy.deepcopy(model)
    finally:
        model.train(was_training)
    return set_quantizers(copied, input=None, weight=None, bias=None, output=None)


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1) -> bytes:
    """The model's float graph as ONNX bytes (TorchScript exporter; the dynamo exporter only if that one is missing).

    hwnas quantizers are left out (on a copy; ``model`` keeps them): the float graph of the architecture is
    what :func:`predict_latency` predicts, and the quantizers' rounding functions do not export to ONNX.
    Functional operations in ``forward`` export as themselves (``x + y`` → ``Add``, ``torch.cat`` →
    ``Concat``, ``x.mean(spatial axes)`` → ``ReduceMean``).
    """
    model = _float_model(model, tuple(input_shape))
    x = torch.zeros((batch_size, *input_shape))
    was_training = model.training
    model.eval()
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=_OPSET,
                                  input_names=["x"], output_names=["y"])
            except TypeError:  # a torch without the dynamo switch or without the TorchScript exporter
                buf = io.BytesIO()
                torch.onnx.export(model, (x,), buf, input_names=["x"], output_names=["y"])
    finally:
        model.train(was_training)
    return buf.getvalue()


_QDQ_OPS = ("Conv", "Gemm", "MatMul", "MaxPool", "Flatten", "Reshape", "Relu")
"""ONNX node types :func:`export_deployed_onnx` lets ``quantize_static`` quantize: the int8 layers' ``Conv``/
``Gemm``/``MatMul`` and the nodes that run on uint8 when their input is uint8 (and a ReLU it removes)."""


def export_deployed_onnx(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1, *,
                         calibration_inputs: int = 8, seed: int = 0) -> bytes:
    """The model as deployed on a CPU: its float graph with the <= 8-bit layers statically quantized to int8.

    BatchNorm layers after a convolution or linear layer are folded first (:func:`hwnas.nn.fold_batchnorm`, on a
    copy), the float graph is exported (:func:`export_onnx`) and ``onnxruntime.quantization.quantize_static``
    quantizes it in the QDQ format (uint8 activations, int8 weights per output channel, min-max ranges calibrated
    on ``calibration_inputs`` seeded standard-normal inputs) — only the ``Conv``/``Gemm``/``MatMul`` nodes of the
    layers :func:`int8_layers` marks, plus max pools, flattens, reshapes and ReLUs, which ``quantize_static``
    quantizes only where their input already is (a ReLU right after an int8 node is removed). onnxruntime fuses
    each ``DequantizeLinear`` → node → ``QuantizeLinear`` group into its int8 kernel (``QLinearConv``, ``QGemm``)
    when the session is made. A model without int8 layers is the float graph.

    Raises:
        UnsupportedLayerError: an int8 layer's node is not found in the exported graph (by its weight).
    """
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from hwnas.nn import fold_batchnorm

    shape = tuple(input_shape)
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        model = fold_batchnorm(model)
    _run_once(model, shape)
    module_names = {id(m): n for n, m in model.named_modules()}
    int8 = {name: layer for name, (layer, fits) in _layer_widths(model).items() if fits}
    data = export_onnx(model, shape, batch_size)
    if not int8:
        return data
    proto = onnx.load_from_string(data)
    by_weight = {(f"{module_names[id(layer)]}.weight" if module_names[id(layer)] else "weight"): name
                 for name, layer in int8.items()}
    inits = {init.name: init for init in proto.graph.initializer}
    found: set[str] = set()
    nodes = []
    for node in proto.graph.node:
        weight = node.input[1] if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1 else None
        if weight in by_weight:
            found.add(by_weight[weight])
            nodes.append(node.name)
        elif node.op_type == "MatMul" and weight in inits:  # a linear layer on more than 2-D input: W transposed
            w = numpy_helper.to_array(inits[weight])
            for name, layer in int8.items():
                if isinstance(layer, nn.Linear) and w.shape == tuple(layer.weight.shape[::-1]) and np.allclose(
                        w, layer.weight.detach().numpy().T):
                    found.add(name)
                    nodes.append(node.name)
                    break
        elif node.op_type in _QDQ_OPS[3:]:
            nodes.append(node.name)
    missing = sorted(set(int8) - found)
    if missing:
        raise UnsupportedLayerError(f"layer {missing[0]!r}: its node was not found in the exported ONNX graph, so it "
                                    "cannot be quantized to measure the deployed model")
    x_name = proto.graph.input[0].name
    rng = np.random.default_rng(seed)
    batches = [{x_name: rng.standard_normal((batch_size, *shape)).astype(np.float32)}
               for _ in range(max(1, calibration_inputs))]

    class _Inputs(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), _root_logging_off():
        warnings.simplefilter("ignore")
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(data)
        quantize_static(str(src), str(dst), _Inputs(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
                        op_types_to_quantize=list(_QDQ_OPS))
        return dst.read_bytes()


@contextlib.contextmanager
def _root_logging_off() -> Iterator[None]:
    """Silence the root logger for the block without letting ``logging.warning`` configure it.

    ``quantize_static`` advises pre-processing through ``logging.warning``, which installs a handler on an
    unconfigured root logger (``basicConfig``); a temporary null handler prevents that.
    """
    import logging

    root, null = logging.getLogger(), logging.NullHandler()
    before = logging.root.manager.disable
    root.addHandler(null)
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(before)
        root.removeHandler(null)


def _model_session(model: nn.Module, input_shape: tuple[int, ...], batch_size: int, precision: str,
                   threads: int) -> Any:
    """An inference session of the exported model (float graph, or the deployed int8 model)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "deployed":
        return _session(export_deployed_onnx(model, input_shape, batch_size), threads, DEPLOYED_DISABLED_OPTIMIZERS)
    return _session(export_onnx(model, input_shape, batch_size), threads)


def measure_latency(model: nn.Module, input_shape: tuple[int, ...], repeats: int = 200, *, warmup: int = 20,
                    threads: int = 1, batch_size: int = 1, cpu: int | None = -1, max_seconds: float = 10.0,
                    floor_us: float | None = None, precision: str = "float") -> float:
    """Measured ms of one onnxruntime run of the exported model, with the table's session settings.

    The model is exported (:func:`export_onnx`; with ``precision="deployed"`` :func:`export_deployed_onnx`: the
    <= 8-bit layers quantized to int8, what ``predict_latency(..., precision="deployed")`` predicts), run
    ``warmup`` times, and timed by a :class:`QuietTimer` (``floor_us``: a known quiet probe time, e.g.
    ``table.session["probe_floor_us"]``; a deployed model's session has :data:`DEPLOYED_DISABLED_OPTIMIZERS` off,
    so its wider layers stay float): the median of ``repeats`` quiet runs, or of all runs with a warning if
    fewer than half were quiet within ``max_seconds``. The thread is pinned to ``cpu`` (see :func:`pinned`).
    """
    sess = _model_session(model, tuple(input_shape), batch_size, precision, threads)
    x = np.random.default_rng(0).standard_normal((batch_size, *input_shape)).astype(np.float32)
    with pinned(cpu):
        timer = QuietTimer(threads, floor_us=floor_us)
        us = timer.time(sess, {sess.get_inputs()[0].name: x}, repeats, warmup, max_seconds=max_seconds)
    if timer.disturbed:
        warnings.warn(f"measure_latency: the CPU was busy for {max_seconds} s; the timing includes disturbed runs",
                      RuntimeWarning, stacklevel=2)
    return us / 1e3


def measure_latencies(models: Sequence[tuple[nn.Module, tuple[int, ...]]], repeats: int = 200, *, rounds: int = 3,
                      warmup: int = 20, threads: int = 1, cpu: int | None = -1, max_seconds: float = 10.0,
                      floor_us: float | None = None, progress: bool = False, precision: str = "float") -> list[float]:
    """Measured ms of each model, robust to slow phases of a shared machine.

    Every model is exported once (``precision`` as in :func:`measure_latency`); then ``rounds`` passes time every
    model in turn (as :func:`measure_latency` does: the median of ``repeats`` quiet runs), and each model's result
    is the smallest of its round medians. Interleaving spreads a model's rounds over minutes, so a slow phase of
    the machine (which only ever makes runs slower) rarely covers all of them.
    """
    if rounds < 1:
        raise ValueError(f"rounds: must be >= 1, got {rounds}")
    sessions = []
    rng = np.random.default_rng(0)
    for model, shape in models:
        sess = _model_session(model, tuple(shape), 1, precision, threads)
        x = rng.standard_normal((1, *shape)).astype(np.float32)
        sessions.append((sess, {sess.get_inputs()[0].name: x}))
    best = [math.inf] * len(sessions)
    steps = _progress(range(rounds * len(sessions)), progress, "measuring models")
    with pinned(cpu):
        timer = QuietTimer(threads, floor_us=floor_us)
        for step in steps:
            i = step % len(sessions)
            sess, feed = sessions[i]
            best[i] = min(best[i], timer.time(sess, feed, repeats, warmup, max_seconds=max_seconds))
    if timer.disturbed:
        warnings.warn(f"measure_latencies: {timer.disturbed} of {rounds * len(sessions)} timings include disturbed "
                      "runs (the CPU was busy)", RuntimeWarning, stacklevel=2)
    return [us / 1e3 for us in best]


@dataclass(frozen=True)
class NodeTiming:
    """One ONNX node of an exported model as onnxruntime's profiler saw it (µs are kernel times)."""

    name: str
    op_type: str
    median_us: float
    runs: int


def measure_nodes(model: nn.Module, input_shape: tuple[int, ...], runs: int = 500, *, threads: int = 1,
                  cpu: int | None = -1, precision: str = "float") -> list[NodeTiming]:
    """Per-node kernel times of the exported model inside a whole-model run (onnxruntime's profiler).

    The graph is the optimized one (fused ``FusedConv``/``FusedGemm`` nodes, NCHWc ``Reorder*`` nodes), in
    execution order. Use it to see where a model's time goes and to compare with the rows of
    :func:`predict_latency`: unlike the single-operator table, these times include the model context (data
    the other nodes evicted from the caches, layout reorders). The profiler adds a few µs per node to the
    whole run; the kernel times themselves are what it reports. ``precision="deployed"`` profiles the int8
    model of :func:`export_deployed_onnx` (``QLinearConv``, ``QGemm``, ``QuantizeLinear`` … nodes).
    """
    if runs < 1:
        raise ValueError(f"runs: must be >= 1, got {runs}")
    ort = _ort()
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {list(PRECISIONS)}, got {precision!r}")
    options = session_options(threads)
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "hwnas")
        deployed = precision == "deployed"
        data = export_deployed_onnx(model, tuple(input_shape)) if deployed else export_onnx(model, tuple(input_shape))
        sess = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=list(DEPLOYED_DISABLED_OPTIMIZERS if deployed else ()))
        x = np.random.default_rng(0).standard_normal((1, *input_shape)).astype(np.float32)
        feed = {sess.get_inputs()[0].name: x}
        with pinned(cpu):
            for _ in range(runs):
                sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    samples: dict[str, tuple[str, list[float]]] = {}
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            node = e["name"][: -len("_kernel_time")]
            samples.setdefault(node, (str(e.get("args", {}).get("op_name", "")), []))[1].append(float(e["dur"]))
    return [NodeTiming(n, op, statistics.median(v), len(v)) for n, (op, v) in samples.items()]
