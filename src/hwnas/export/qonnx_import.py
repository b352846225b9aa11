"""Import a QONNX file (Brevitas, QKeras through qonnx's converter, hwnas's own export) into hwnas layers.

Contract:

* :func:`import_qonnx` reads a QONNX model (a path, serialized bytes or an ``onnx.ModelProto``), runs qonnx's
  ``cleanup_model`` on a copy (batch size 1: shape inference, constant folding, transposes folded into weight
  ``Quant`` nodes; the form qonnx's executor runs) and returns ``(model, input_shape)``: an ``nn.Sequential`` of
  hwnas layers in eval mode and the per-sample input shape. The graph must be a chain (one data input, one
  output, every node reading the previous node's output): residual adds, concatenations and branches are
  refused.
* Node mapping: ``MatMul``/``Gemm`` (``transB`` either way, ``alpha = beta = 1``) → :class:`~hwnas.nn.QLinear`;
  ``Conv`` (1-D/2-D, symmetric pads, groups) → ``QConv1d``/``QConv2d``; an ``Add`` of a constant right after
  one of them is its bias (a second one is refused); a ``Mul`` of a computed tensor by a constant power of two
  (per tensor or per output channel) right after one of them is folded into its weight and bias (exact: scaling
  by 2^k is exact in float32); ``Relu`` → ``QActivation("relu")``; ``MaxPool``/``AveragePool`` (and their
  ``Global`` forms) → ``QMaxPool*``/``QAvgPool*``; ``Flatten(axis=1)`` and a ``Reshape`` that flattens →
  ``nn.Flatten``; ``Identity``/``Dropout`` are dropped. Constant subgraphs (weights and biases through
  ``Quant``/``BipolarQuant``, ``Transpose``, ``Reshape``, ``Mul`` by constants) are evaluated with qonnx's own
  ``Quant`` code in float32, so the layer holds exactly the values qonnx computes.
* Quantizers, mirroring :mod:`hwnas.export.qonnx`: a ``Quant`` whose scale is a power of two and whose zero
  point is 0 becomes a static :class:`~hwnas.quant.FixedPointQuantizer` (``f = -log2(scale)``, ``k = signed``,
  ``i = bits - k - f``; ``narrow`` signed → ``SAT_SYM``, else ``SAT``; per tensor, per channel (axis 0) or per
  element as the scale varies); on activations the rounding mode maps back (ROUND/HALF_EVEN → RND_CONV, FLOOR →
  TRN, DOWN → TRN_ZERO, HALF_DOWN → RND_ZERO), and the exporter's staged forms of RND, RND_MIN_INF and RND_INF
  (``Quant`` to the half-LSB grid, optional ``Add(±LSB/2)``, ``Quant``) are recognized as one quantizer. Any
  other scale becomes a :class:`~hwnas.quant.ScaledIntQuantizer` (2 to 16 bits, per tensor or per channel;
  activations: ROUND, zero point 0). ``BipolarQuant`` with scale 1 (and a signed 1-bit ``Quant`` with scale 1,
  which qonnx executes as bipolar) becomes a :class:`~hwnas.quant.BipolarQuantizer`. A ``Quant`` between two
  layers becomes the input quantizer of the layer after it (the output quantizer of the layer before it when a
  ``Flatten`` follows, or a ``QActivation("identity")`` when neither exists). A weight or bias without
  ``Quant`` stays float (no quantizer); so does a bias ``Quant`` wider than 16 bits with a scale that is not a
  power of two (Brevitas' Int32 bias: the values are exact, the cost counts 32 bits).
* Exactness: every weight and bias quantizer is checked to reproduce its constant's values bit for bit, and
  activation quantizers compute qonnx's formula in the same float32 arithmetic. Fixed-point (power of two)
  models are exact as far as float32 carries their sums, as for the exporter. After other scales the products
  are rounded, and onnxruntime and torch add them in their own orders (≈1 ULP apart): a float output can differ
  in its last bit, and a quantized value that lands within an ULP of a rounding boundary takes the
  neighbouring code (rare with real scales; :func:`verify_qonnx_import` counts it on data).
* Anything that cannot be mapped exactly raises one :class:`~hwnas.export.errors.ExportError` naming the node
  (its name in the file) and its op: unknown ops, rounding modes without an ``ap_fixed`` twin (CEIL, UP, a lone
  HALF_UP), activation zero points, unsigned ``narrow`` activations, activations wider than 24 bits, ``Mul``
  by a scale that is not a power of two on a computed tensor, transposes of computed tensors (QKeras convolution
  files converted with NHWC transposes), asymmetric pads, ``ceil_mode``, dilated pools.

Save the result as a model file with :func:`hwnas.export.save_model` (docs/extending.md).
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.errors import first_line
from hwnas.nn import QActivation, QConv1d, QConv2d, QLinear
from hwnas.nn.activation import QAvgPool1d, QAvgPool2d, QMaxPool1d, QMaxPool2d
from hwnas.nn.base import QLayer, make_quantizer
from hwnas.quant import BipolarQuantizer, FixedPointQuantizer, ScaledIntQuantizer
from hwnas.quant.base import Quantizer

from .errors import ExportError

__all__ = ["import_qonnx", "verify_qonnx_import"]

_ROUNDING = {"ROUND": "RND_CONV", "HALF_EVEN": "RND_CONV", "FLOOR": "TRN", "DOWN": "TRN_ZERO",
             "HALF_DOWN": "RND_ZERO"}
"""QONNX rounding modes with an exact ``ap_fixed`` twin (the exporter's mapping, reversed)."""
_NAME_TAG = "hwnas.import.name="
_MAX_ACT_BITS = 24  # qonnx clamps in float32: wider integer bounds are not exact
_SKIPPED = ("Identity", "Dropout")


# ------------------------------------------------------------------------------------------ loading
def _load(source: Any) -> Any:
    """An ``onnx.ModelProto`` (a copy) from a path, bytes or a ModelProto."""
    import onnx

    if isinstance(source, onnx.ModelProto):
        return copy.deepcopy(source)
    try:
        if isinstance(source, bytes | bytearray):
            return onnx.load_from_string(bytes(source))
        if isinstance(source, str | os.PathLike):
            return onnx.load(os.fspath(source))
    except Exception as err:  # a missing file, a truncated or foreign file
        raise ExportError(f"{source if not isinstance(source, bytes | bytearray) else 'bytes'}: cannot read it "
                          f"as an ONNX model ({first_line(err)})") from err
    raise ExportError(f"source: expected a path, bytes or an onnx.ModelProto, got {type(source).__name__}")


def _cleaned(proto: Any) -> Any:
    """The qonnx ``cleanup_model`` of ``proto`` at batch size 1 (node names kept in ``doc_string`` for messages)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    for node in proto.graph.node:
        node.doc_string = _NAME_TAG + (node.name or "")
    try:
        return cleanup_model(ModelWrapper(proto), override_inpsize=1)
    except Exception as err:
        raise ExportError(f"qonnx's cleanup_model failed on the file ({first_line(err)}); it is not a graph qonnx "
                          "can execute") from err


def _where(node: Any) -> str:
    name = node.doc_string[len(_NAME_TAG):] if node.doc_string.startswith(_NAME_TAG) else ""
    return f"node {name or node.name!r} ({node.op_type})"


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


# ------------------------------------------------------------------------------------------ constants
@dataclass
class _Fmt:
    """How a constant was quantized: a ``Quant`` (``int``) or ``BipolarQuant``; arrays broadcast to the values."""

    kind: str
    scale: np.ndarray
    zeropt: np.ndarray
    bits: int
    signed: bool
    narrow: bool
    where: str

    def map(self, fn: Any) -> _Fmt:
        """The format of the values rearranged by ``fn`` (a transpose, reshape or reduction)."""
        return _Fmt(self.kind, fn(self.scale), fn(self.zeropt), self.bits, self.signed, self.narrow, self.where)

    def scaled(self, factor: np.ndarray, shape: tuple[int, ...]) -> _Fmt:
        """The format of the values multiplied by ``factor`` (the codes and zero point stay), over ``shape``."""
        return _Fmt(self.kind, np.broadcast_to(self.scale * factor, shape).astype(np.float32),
                    np.broadcast_to(self.zeropt, shape), self.bits, self.signed, self.narrow, self.where)


@dataclass
class _Const:
    values: np.ndarray
    fmt: _Fmt | None = None


class _Constants:
    """Values of the graph's constant tensors: initializers and the nodes computed from them alone."""

    def __init__(self, wrapper: Any) -> None:
        self.w = wrapper
        self.producer = {out: node for node in wrapper.graph.node for out in node.output}
        self.cache: dict[str, _Const] = {}
        self.known: dict[str, bool] = {}

    def is_const(self, name: str) -> bool:
        """Whether ``name`` is computed from constants alone."""
        if name not in self.known:
            node = self.producer.get(name)
            self.known[name] = name == "" or self.w.get_initializer(name) is not None or (
                node is not None and all(self.is_const(t) for t in node.input))
        return self.known[name]

    def get(self, name: str, user: Any) -> _Const:
        if name not in self.cache:
            self.cache[name] = self._eval(name, user)
        return self.cache[name]

    def array(self, name: str, user: Any) -> np.ndarray:
        return self.get(name, user).values

    def _eval(self, name: str, user: Any) -> _Const:
        init = self.w.get_initializer(name)
        if init is not None:
            return _Const(np.asarray(init))
        node = self.producer.get(name)
        if node is None:
            raise ExportError(f"{_where(user)}: input {name!r} is neither the data input nor a constant")
        op, ins = node.op_type, list(node.input)
        a = _attrs(node)
        if op in ("Quant", "BipolarQuant"):
            return _eval_quant(node, [self.array(t, node) for t in ins], a)
        x = self.get(ins[0], node)
        if op in _SKIPPED:
            return x
        if op == "Transpose":
            perm = a.get("perm")
            return _Const(np.transpose(x.values, perm), x.fmt.map(lambda s: np.transpose(s, perm)) if x.fmt else None)
        if op == "Reshape":
            shape = tuple(int(d) for d in self.array(ins[1], node))
            values = np.reshape(x.values, shape)
            return _Const(values, x.fmt.map(lambda s: np.reshape(s, values.shape)) if x.fmt else None)
        if op == "Mul":
            y = self.get(ins[1], node)
            if x.fmt and y.fmt:
                raise ExportError(f"{_where(node)}: a product of two quantized constants is not imported")
            q, c = (x, y.values) if not y.fmt else (y, x.values)
            values = (x.values * y.values).astype(np.float32)
            if q.fmt is None:
                return _Const(values)
            return _Const(values, q.fmt.scaled(c, values.shape))
        raise ExportError(f"{_where(node)}: {op} on constants is not imported (weights may pass through Quant, "
                          "BipolarQuant, Transpose, Reshape and Mul)")


def _eval_quant(node: Any, inputs: list[np.ndarray], a: dict[str, Any]) -> _Const:
    """A ``Quant``/``BipolarQuant`` of a constant, computed with qonnx's own code (the executor's result)."""
    from qonnx.custom_op.general.bipolar_quant import binary_quant
    from qonnx.custom_op.general.quant import quant

    x = np.asarray(inputs[0], dtype=np.float32)
    if node.op_type == "BipolarQuant":
        values = np.asarray(binary_quant(x, inputs[1]), dtype=np.float32)
        scale = np.broadcast_to(np.asarray(inputs[1], dtype=np.float32), values.shape)
        return _Const(values, _Fmt("bipolar", scale, np.zeros(values.shape, np.float32), 1, True, False,
                                   _where(node)))
    scale, zeropt, bits = inputs[1], inputs[2], inputs[3]
    if np.size(bits) != 1 or float(np.asarray(bits).flat[0]) != int(np.asarray(bits).flat[0]):
        raise ExportError(f"{_where(node)}: the bit width must be one integer, got {np.asarray(bits).tolist()}")
    b = int(np.asarray(bits).flat[0])
    signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 0))
    values = np.asarray(quant(x, scale, zeropt, bits, int(signed), int(narrow), a.get("rounding_mode", "ROUND")),
                        dtype=np.float32)
    full = values.shape
    return _Const(values, _Fmt("int", np.broadcast_to(np.asarray(scale, dtype=np.float32), full),
                               np.broadcast_to(np.asarray(zeropt, dtype=np.float32), full), b, signed, narrow,
                               _where(node)))


# ------------------------------------------------------------------------------------------ quantizers
def _pot(scale: np.ndarray) -> bool:
    """Every element a positive power of two."""
    s = np.asarray(scale, dtype=np.float64)
    return bool(s.size) and bool(np.all(np.isfinite(s) & (s > 0))) and bool(np.all(np.frexp(s)[0] == 0.5))


def _granularity(arrays: list[np.ndarray]) -> tuple[str, list[np.ndarray]]:
    """``tensor``, ``channel`` (axis 0) or ``parameter`` for per-element arrays, and the arrays in that shape."""
    shape = arrays[0].shape
    if all(np.all(a == a.flat[0]) for a in arrays):
        return "tensor", [np.full((1,) * len(shape), a.flat[0], dtype=np.float64) for a in arrays]
    if len(shape) >= 1 and all(np.all(a == a[(slice(None),) + (slice(0, 1),) * (len(shape) - 1)]) for a in arrays):
        return "channel", [np.ascontiguousarray(a[(slice(None),) + (slice(0, 1),) * (len(shape) - 1)],
                                                dtype=np.float64) for a in arrays]
    return "parameter", [np.asarray(a, dtype=np.float64) for a in arrays]


def _fixed(scale: np.ndarray, bits: int, signed: bool, narrow: bool, round_mode: str, shape: tuple[int, ...],
           batch_dims: int) -> FixedPointQuantizer:
    """A static fixed-point quantizer with ``f = -log2(scale)`` per element of ``shape`` and total width ``bits``."""
    f = -np.log2(np.broadcast_to(np.asarray(scale, dtype=np.float64), shape))
    gran, (f_p,) = _granularity([np.asarray(f)])
    k = 1.0 if signed else 0.0
    q = FixedPointQuantizer(None, i=0, f=0, signed=signed, round_mode=round_mode,
                            overflow_mode="SAT_SYM" if narrow and signed else "SAT", granularity=gran,
                            learnable=False, element_shape=shape, batch_dims=batch_dims)
    f_t = torch.as_tensor(f_p, dtype=torch.float32)
    q.load_state_dict({"k": torch.full_like(f_t, k), "i": float(bits) - k - f_t, "f": f_t})
    return q


def _scaled(scale: np.ndarray, zeropt: np.ndarray, bits: int, signed: bool, narrow: bool, shape: tuple[int, ...],
            where: str) -> ScaledIntQuantizer:
    gran, (s_p, z_p) = _granularity([np.broadcast_to(scale, shape), np.broadcast_to(zeropt, shape)])
    if gran == "parameter":
        raise ExportError(f"{where}: the scale or zero point varies within a channel; a scaled-integer quantizer "
                          "holds one per tensor or per channel (axis 0)")
    q = ScaledIntQuantizer(bits, signed=signed, symmetric=bool(np.all(z_p == 0)), narrow=narrow, granularity=gran)
    q.scale = torch.as_tensor(s_p, dtype=torch.float32)
    q.zero_point = torch.as_tensor(z_p, dtype=torch.float32)
    return q


def _static(c: _Const | None, what: str, where: str) -> Quantizer | None:
    """The quantizer that reproduces constant ``c`` (a weight or bias) bit for bit; None for float values."""
    if c is None or c.fmt is None:
        return None
    fmt = c.fmt
    shape = tuple(c.values.shape)
    q: Quantizer | None
    if fmt.kind == "bipolar" or (fmt.signed and fmt.bits == 1):
        if not (np.all(fmt.scale == 1) and np.all(fmt.zeropt == 0)):
            raise ExportError(f"{fmt.where}: a bipolar {what} with a scale other than 1 is not imported (hwnas's "
                              "bipolar quantizer is ±1)")
        q = BipolarQuantizer()
    elif _pot(fmt.scale) and np.all(fmt.zeropt == 0):
        q = _fixed(fmt.scale, fmt.bits, fmt.signed, fmt.narrow, "RND_CONV", shape, 0)
    elif 2 <= fmt.bits <= 16:
        q = _scaled(fmt.scale, fmt.zeropt, fmt.bits, fmt.signed, fmt.narrow, shape, fmt.where)
    elif what == "bias":
        return None  # e.g. Brevitas' Int32 bias: kept as its exact float32 values
    else:
        raise ExportError(f"{fmt.where}: a {fmt.bits}-bit {what} with a scale that is not a power of two; "
                          "scaled-integer quantizers take 2 to 16 bits")
    q.batch_dims = 0
    with torch.no_grad():
        got = q(torch.tensor(c.values)).numpy()
    if not np.array_equal(got, c.values):
        raise ExportError(f"{fmt.where}: the {what}'s quantized values cannot be reproduced by "
                          f"{type(q).__name__} ({q.describe()})")
    return q


def _activation(node: Any, consts: _Constants, sample: tuple[int, ...], round_mode: str | None = None) -> Quantizer:
    """The quantizer of a ``Quant``/``BipolarQuant`` node on a computed tensor of per-sample shape ``sample``.

    ``round_mode``: the ap_fixed mode of a staged rounding (:func:`_staged`) instead of the node's own.
    """
    where = _where(node)
    a = _attrs(node)
    ins = [consts.array(t, node) for t in node.input[1:]]
    full = (1, *sample)

    def per_sample(arr: np.ndarray, what: str) -> np.ndarray:
        arr = np.asarray(arr, dtype=np.float32)
        try:
            out = np.broadcast_to(arr, np.broadcast_shapes(arr.shape, full))
        except ValueError:
            out = None
        if out is None or out.shape != full:
            raise ExportError(f"{where}: {what} of shape {arr.shape} does not fit the tensor's shape {full}")
        return out[0]

    if node.op_type == "BipolarQuant":
        if not np.all(ins[0] == 1):
            raise ExportError(f"{where}: a bipolar activation with a scale other than 1 is not imported (hwnas's "
                              "bipolar quantizer is ±1)")
        return BipolarQuantizer()
    s = per_sample(ins[0], "the scale")
    if np.any(per_sample(ins[1], "the zero point") != 0):
        raise ExportError(f"{where}: an activation zero point other than 0 is not imported: qonnx adds it before "
                          "rounding in float32, hwnas's scaled-integer quantizer after, which can differ by a code")
    if np.size(ins[2]) != 1:
        raise ExportError(f"{where}: the bit width must be one integer, got {np.asarray(ins[2]).tolist()}")
    b = int(np.asarray(ins[2]).flat[0])
    signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 0))
    mode = str(a.get("rounding_mode", "ROUND")).upper()
    if signed and b == 1:
        if not np.all(s == 1):
            raise ExportError(f"{where}: a signed 1-bit Quant (qonnx executes it as bipolar ±scale) with a scale "
                              "other than 1 is not imported")
        return BipolarQuantizer()
    if narrow and not signed:
        raise ExportError(f"{where}: unsigned narrow range (codes 0 to 2^b - 2) has no ap_fixed or scaled-integer "
                          "twin")
    if b < 1 or b > _MAX_ACT_BITS:
        raise ExportError(f"{where}: a {b}-bit activation; 1 to {_MAX_ACT_BITS} bits are imported (qonnx clamps "
                          "and rounds in float32)")
    if _pot(s):
        if round_mode is None:
            if mode not in _ROUNDING:
                raise ExportError(f"{where}: rounding mode {mode} has no ap_fixed twin that qonnx's float32 "
                                  f"arithmetic matches bit for bit; supported: {', '.join(_ROUNDING)}")
            round_mode = _ROUNDING[mode]
        return _fixed(s, b, signed, narrow, round_mode, sample, 1)
    if mode not in ("ROUND", "HALF_EVEN"):
        raise ExportError(f"{where}: rounding mode {mode} with a scale that is not a power of two; scaled-integer "
                          "quantizers round half to even (ROUND)")
    if b < 2 or b > 16:
        raise ExportError(f"{where}: a {b}-bit activation with a scale that is not a power of two; scaled-integer "
                          "quantizers take 2 to 16 bits")
    q = _scaled(s, np.zeros_like(s), b, signed, narrow, sample, where)
    q.batch_dims = 1
    return q


def _staged(chain: list[Any], i: int, consts: _Constants, sample: tuple[int, ...]) -> tuple[Quantizer, int] | None:
    """The exporter's staged rounding starting at ``chain[i]`` as one quantizer, and the nodes it spans."""
    stages = {("FLOOR", 0.5, "FLOOR"): "RND", ("CEIL", -0.5, "CEIL"): "RND_MIN_INF",
              ("DOWN", 0.0, "HALF_UP"): "RND_INF"}
    pre = chain[i]
    if pre.op_type != "Quant" or i + 1 >= len(chain):
        return None
    add = chain[i + 1] if chain[i + 1].op_type == "Add" else None
    j = i + 2 if add is not None else i + 1
    if j >= len(chain) or chain[j].op_type != "Quant":
        return None
    final = chain[j]
    pa, fa = _attrs(pre), _attrs(final)
    if any(not consts.is_const(t) for n in (pre, final) for t in n.input[1:]):
        return None
    p_scale, p_zp, p_bits = (np.asarray(consts.array(t, pre), dtype=np.float64) for t in pre.input[1:])
    f_scale, f_zp, f_bits = (np.asarray(consts.array(t, final), dtype=np.float64) for t in final.input[1:])
    offset = 0.0
    if add is not None:
        other = [t for t in add.input if t != pre.output[0]]
        if len(other) != 1 or not consts.is_const(other[0]):
            return None
        half = np.asarray(consts.array(other[0], add), dtype=np.float64)
        if p_scale.shape != f_scale.shape or half.shape != f_scale.shape or not np.all(half != 0):
            return None
        ratio = half / f_scale
        if not np.all(ratio == ratio.flat[0]):
            return None
        offset = float(ratio.flat[0])
    key = (str(pa.get("rounding_mode", "ROUND")).upper(), offset, str(fa.get("rounding_mode", "ROUND")).upper())
    if key not in stages or not _pot(f_scale) or p_scale.shape != f_scale.shape or not np.all(p_scale * 2 == f_scale):
        return None
    if np.any(p_zp != 0) or np.any(f_zp != 0) or p_bits.size != 1 or f_bits.size != 1:
        return None
    if int(p_bits.flat[0]) != int(f_bits.flat[0]) + 2 or pa.get("narrow", 0) or \
            pa.get("signed", 1) != fa.get("signed", 1):
        return None
    return _activation(final, consts, sample, round_mode=stages[key]), j - i + 1


# ------------------------------------------------------------------------------------------ layers
@dataclass
class _Weighted:
    """A MatMul/Gemm/Conv with its constant weight (torch layout), bias and settings, while it is assembled."""

    kind: str  # linear | conv
    where: str
    weight: _Const
    bias: _Const | None = None
    conv: dict[str, Any] = field(default_factory=dict)
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    closed: bool = False  # a node after it that is not a bias Add or scale Mul


def _transpose(c: _Const) -> _Const:
    return _Const(np.ascontiguousarray(c.values.T), c.fmt.map(lambda s: np.ascontiguousarray(s.T)) if c.fmt else None)


def _per_channel(node: Any, arr: np.ndarray, out_shape: tuple[int, ...], what: str) -> np.ndarray | None:
    """``arr`` (a constant added to or multiplying a layer's output) as one value per output channel, or None."""
    arr = np.asarray(arr)
    full = (1, *out_shape)
    try:
        b = np.broadcast_to(arr, full)
    except ValueError:
        return None
    if arr.ndim > len(full) or b.shape != full:
        return None
    per = b[(0, slice(None)) + (0,) * (len(full) - 2)]
    if not np.all(b == per.reshape((1, -1) + (1,) * (len(full) - 2))):
        raise ExportError(f"{_where(node)}: the {what} varies along a spatial axis; one value per output channel "
                          "is imported")
    return np.ascontiguousarray(per)


def _weighted(node: Any, consts: _Constants, shape: Any) -> _Weighted:
    where, a = _where(node), _attrs(node)
    x_shape, y_shape = shape(node.input[0]), shape(node.output[0])
    ins = list(node.input)
    if any(not consts.is_const(t) for t in ins[1:]):
        raise ExportError(f"{where}: its weights are computed, not constant")
    w = consts.get(ins[1], node)
    if node.op_type in ("MatMul", "Gemm"):
        if len(x_shape) != 2 or w.values.ndim != 2:
            raise ExportError(f"{where}: only (batch, features) @ (features, outputs) products are imported (input "
                              f"shape {tuple(x_shape)}, weight shape {w.values.shape})")
        if node.op_type == "Gemm":
            if a.get("transA", 0) or float(a.get("alpha", 1.0)) != 1.0 or float(a.get("beta", 1.0)) != 1.0:
                raise ExportError(f"{where}: only Gemm with transA=0, alpha=1 and beta=1 is imported")
        if not (node.op_type == "Gemm" and a.get("transB", 0)):
            w = _transpose(w)  # torch layout (outputs, features)
        step = _Weighted("linear", where, w, in_shape=tuple(x_shape[1:]), out_shape=tuple(y_shape[1:]))
        if node.op_type == "Gemm" and len(ins) > 2 and ins[2]:
            bias = consts.get(ins[2], node)
            step.bias = _bias(node, bias, step.out_shape)
            if step.bias is None:
                raise ExportError(f"{where}: bias of shape {bias.values.shape} is not one value per output")
        return step
    # Conv
    dims = w.values.ndim - 2
    if dims not in (1, 2):
        raise ExportError(f"{where}: {dims}-D convolution; 1-D and 2-D are imported")
    kernel = list(a.get("kernel_shape", w.values.shape[2:]))
    stride = list(a.get("strides", [1] * dims))
    dilation = list(a.get("dilations", [1] * dims))
    auto_pad = str(a.get("auto_pad", "NOTSET"))
    if auto_pad not in ("NOTSET", "VALID"):
        raise ExportError(f"{where}: auto_pad {auto_pad} is not imported; give explicit pads")
    pads = list(a.get("pads", [0] * 2 * dims)) if auto_pad == "NOTSET" else [0] * 2 * dims
    if pads[:dims] != pads[dims:]:
        raise ExportError(f"{where}: asymmetric pads {pads}; hwnas convolutions pad both sides equally")
    step = _Weighted("conv", where, w, in_shape=tuple(x_shape[1:]), out_shape=tuple(y_shape[1:]),
                     conv={"dims": dims, "kernel": kernel, "stride": stride, "padding": pads[:dims],
                           "dilation": dilation, "groups": int(a.get("group", 1))})
    if len(ins) > 2 and ins[2]:
        step.bias = consts.get(ins[2], node)
        if step.bias.values.shape != (w.values.shape[0],):
            raise ExportError(f"{where}: bias of shape {step.bias.values.shape}; expected ({w.values.shape[0]},)")
    return step


def _bias(node: Any, c: _Const, out_shape: tuple[int, ...]) -> _Const | None:
    """A constant added to a layer's output as one bias value per output channel (its format likewise), or None."""
    per = _per_channel(node, c.values, out_shape, "bias")
    if per is None:
        return None
    if c.fmt is None:
        return _Const(per.astype(np.float32))
    return _Const(per.astype(np.float32), c.fmt.map(lambda s: _per_channel(node, s, out_shape, "bias format")))


def _scale_output(node: Any, step: _Weighted, consts: _Constants, const_name: str) -> None:
    """Fold ``Mul(layer output, 2^k)`` into the layer's weight and bias (exact in float32)."""
    c = consts.get(const_name, node)
    per = _per_channel(node, c.values, step.out_shape, "scale")
    if per is None or not _pot(per):
        raise ExportError(f"{_where(node)}: a Mul of a computed tensor by a constant is imported only for powers of "
                          "two (per tensor or per output channel) right after a MatMul/Gemm/Conv (folded into its "
                          "weight and bias, exact in float32); this scale is not, so qonnx's float32 product cannot "
                          "be moved into the weights exactly")
    per = per.astype(np.float32)
    w_shape = (-1,) + (1,) * (step.weight.values.ndim - 1)
    w = step.weight
    step.weight = _Const((w.values * per.reshape(w_shape)).astype(np.float32),
                         w.fmt.scaled(per.reshape(w_shape), w.values.shape) if w.fmt else None)
    if step.bias is not None:
        b = step.bias
        step.bias = _Const((b.values * per).astype(np.float32), b.fmt.scaled(per, b.values.shape) if b.fmt else None)


def _build_weighted(step: _Weighted) -> QLayer:
    w = step.weight.values
    has_bias = step.bias is not None
    layer: QLayer
    if step.kind == "linear":
        layer = QLinear(w.shape[1], w.shape[0], has_bias, input_quantizer=None, weight_quantizer=None,
                        bias_quantizer=None)
    else:
        c = step.conv
        cls = QConv1d if c["dims"] == 1 else QConv2d
        one = (lambda v: int(v[0])) if c["dims"] == 1 else tuple
        layer = cls(w.shape[1] * c["groups"], w.shape[0], one(c["kernel"]), one(c["stride"]), one(c["padding"]),
                    one(c["dilation"]), c["groups"], has_bias, input_quantizer=None, weight_quantizer=None,
                    bias_quantizer=None, input_shape=step.in_shape)
        if tuple(layer.weight.shape) != w.shape:
            raise ExportError(f"{step.where}: weight of shape {w.shape} does not fit group={c['groups']}")
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(w))
        if has_bias:
            layer.bias.copy_(torch.tensor(step.bias.values))  # type: ignore[union-attr]
    for kind, c in (("weight", step.weight), ("bias", step.bias)):
        q = _static(c, kind, step.where)
        if q is not None:
            setattr(layer, f"{kind}_quantizer", make_quantizer(q, slot=f"{kind}_quantizer", batch_dims=0,
                                                               element_shape=tuple(c.values.shape)))
    layer.input_shape = step.in_shape
    return layer


def _pool(node: Any, sample: tuple[int, ...]) -> QLayer:
    where, a = _where(node), _attrs(node)
    dims = len(sample) - 1
    if dims not in (1, 2):
        raise ExportError(f"{where}: {dims}-D pooling; 1-D and 2-D are imported")
    avg = "Average" in node.op_type
    if node.op_type.startswith("Global"):
        kernel, stride, pads = list(sample[1:]), list(sample[1:]), [0] * 2 * dims
    else:
        kernel = list(a["kernel_shape"])
        stride = list(a.get("strides", [1] * dims))
        pads = list(a.get("pads", [0] * 2 * dims))
        if str(a.get("auto_pad", "NOTSET")) not in ("NOTSET", "VALID"):
            raise ExportError(f"{where}: auto_pad {a['auto_pad']} is not imported; give explicit pads")
        if a.get("ceil_mode", 0):
            raise ExportError(f"{where}: ceil_mode is not imported")
        if any(d != 1 for d in a.get("dilations", [1] * dims)):
            raise ExportError(f"{where}: dilated pooling is not imported")
        if pads[:dims] != pads[dims:]:
            raise ExportError(f"{where}: asymmetric pads {pads}; hwnas pooling pads both sides equally")
        if any(2 * p > k for p, k in zip(pads[:dims], kernel, strict=True)):
            raise ExportError(f"{where}: pads {pads} wider than half the kernel {kernel}")
        if avg and any(pads) and not a.get("count_include_pad", 0):
            raise ExportError(f"{where}: padded average pooling with count_include_pad=0; hwnas averages over the "
                              "padded window (count_include_pad=1)")
    one = (lambda v: int(v[0])) if dims == 1 else tuple
    cls = {(False, 1): QMaxPool1d, (False, 2): QMaxPool2d, (True, 1): QAvgPool1d, (True, 2): QAvgPool2d}[(avg, dims)]
    layer = cls(one(kernel), one(stride), one(pads[:dims]))
    layer.input_shape = sample
    return layer


def _flattens(node: Any, consts: _Constants, sample: tuple[int, ...], out: tuple[int, ...]) -> bool:
    """Whether a Flatten/Reshape node turns (1, *sample) into (1, prod(sample))."""
    if node.op_type == "Flatten" and int(_attrs(node).get("axis", 1)) != 1:
        return False
    if node.op_type == "Reshape" and not consts.is_const(node.input[1]):
        return False
    return tuple(out) == (math.prod(sample),)


# ------------------------------------------------------------------------------------------ entry points
def _chain(wrapper: Any, consts: _Constants) -> list[Any]:
    """The nodes that compute on the data, in order; refuses graphs that are not a chain."""
    graph = wrapper.graph
    inputs = [t.name for t in graph.input if wrapper.get_initializer(t.name) is None]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ExportError(f"the graph has {len(inputs)} data inputs and {len(graph.output)} outputs; one of each "
                          "is imported")
    cur = inputs[0]
    chain = []
    for node in graph.node:
        data = [t for t in node.input if t and not consts.is_const(t)]
        if not data:
            continue
        if data != [cur]:
            what = f"reads {len(data)} computed tensors (a residual add or a concatenation)" if len(data) > 1 else \
                f"reads {data[0]!r}, not the previous node's output (a branch)"
            raise ExportError(f"{_where(node)}: {what}; only chains of layers are imported")
        chain.append(node)
        cur = node.output[0]
    if cur != graph.output[0].name:
        raise ExportError(f"the graph output {graph.output[0].name!r} is not the end of the chain ({cur!r}); only "
                          "chains of layers are imported")
    return chain


def import_qonnx(source: str | os.PathLike[str] | bytes | Any) -> tuple[nn.Sequential, tuple[int, ...]]:
    """An ``nn.Sequential`` of hwnas layers computing what the QONNX model ``source`` computes, and its input shape.

    ``source``: a path, serialized bytes or an ``onnx.ModelProto`` (not modified). The model is returned in eval
    mode; the input shape is per sample (without the batch dimension). Raises
    :class:`~hwnas.export.errors.ExportError` naming the node and op of anything it cannot map exactly (module
    docstring). ``hwnas.export.save_model(model, "model.pt", input_shape=input_shape)`` makes it a model file
    the command line reads.
    """
    wrapper = _cleaned(_load(source))
    consts = _Constants(wrapper)

    def shape(name: str) -> tuple[int, ...]:
        s = wrapper.get_tensor_shape(name)
        if s is None or any(not isinstance(d, int) or d <= 0 for d in s):
            raise ExportError(f"tensor {name!r}: its shape is unknown after qonnx's shape inference")
        return tuple(int(d) for d in s)

    in_name = next(t.name for t in wrapper.graph.input if wrapper.get_initializer(t.name) is None)
    input_shape = shape(in_name)[1:]
    chain = _chain(wrapper, consts)

    steps: list[Any] = []  # _Weighted, ("quant", Quantizer), ("layer", nn.Module)
    i = 0
    while i < len(chain):
        node = chain[i]
        op, where = node.op_type, _where(node)
        sample = shape(next(t for t in node.input if t and not consts.is_const(t)))[1:]
        last = steps[-1] if steps else None
        open_layer = last if isinstance(last, _Weighted) and not last.closed else None
        if op in ("Quant", "BipolarQuant"):
            if any(not consts.is_const(t) for t in node.input[1:]):
                raise ExportError(f"{where}: its scale, zero point or bit width is computed, not constant")
            staged = _staged(chain, i, consts, sample) if op == "Quant" else None
            if staged is not None:
                steps.append(("quant", staged[0]))
                i += staged[1]
                continue
            steps.append(("quant", _activation(node, consts, sample)))
        elif op in ("MatMul", "Gemm", "Conv"):
            steps.append(_weighted(node, consts, shape))
        elif op in ("Add", "Mul"):
            const = [t for t in node.input if consts.is_const(t)]
            if open_layer is None or len(const) != 1:
                raise ExportError(f"{where}: an {op} is imported only as the bias (Add) or a power-of-two scale (Mul) "
                                  "of the MatMul/Gemm/Conv right before it")
            if op == "Mul":
                _scale_output(node, open_layer, consts, const[0])
            else:
                if open_layer.bias is not None:
                    raise ExportError(f"{where}: a second bias after {open_layer.where}")
                c = consts.get(const[0], node)
                open_layer.bias = _bias(node, c, open_layer.out_shape)
                if open_layer.bias is None:
                    raise ExportError(f"{where}: an Add of shape {c.values.shape} is not a bias of "
                                      f"{open_layer.where} (one value per output channel)")
            i += 1
            continue
        elif op == "Relu":
            act = QActivation("relu")
            act.input_shape = sample
            steps.append(("layer", act))
        elif op in ("MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool"):
            if len(node.output) > 1 and node.output[1]:
                raise ExportError(f"{where}: pooling indices are not imported")
            steps.append(("layer", _pool(node, sample)))
        elif op in ("Flatten", "Reshape"):
            out = shape(node.output[0])[1:]
            if tuple(out) == tuple(sample) and op == "Reshape":
                pass  # a no-op reshape
            elif _flattens(node, consts, sample, out):
                steps.append(("flatten", nn.Flatten()))
            else:
                raise ExportError(f"{where}: only flattening to (batch, features) is imported (per-sample shape "
                                  f"{tuple(sample)} → {tuple(out)})")
        elif op in _SKIPPED:
            pass
        elif op == "Transpose":
            raise ExportError(f"{where}: a transpose of a computed tensor (e.g. NHWC ↔ NCHW from a Keras "
                              "converter) is not imported; hwnas layers are channels-first (N, C, ...)")
        else:
            raise ExportError(f"{where}: {op} is not imported (MatMul, Gemm, Conv, Add/Mul after them, Quant, "
                              "BipolarQuant, Relu, MaxPool, AveragePool, their Global forms, Flatten, Reshape)")
        if open_layer is not None:
            open_layer.closed = True
        i += 1
    model = nn.Sequential(*_assemble(steps))
    model.eval()
    out_shape = shape(wrapper.graph.output[0].name)[1:]
    with torch.no_grad():
        got = tuple(model(torch.zeros((1, *input_shape))).shape[1:])
    if got != out_shape:  # pragma: no cover - a mapping error, not a user error
        raise ExportError(f"the imported model gives outputs of shape {got}, the file {out_shape}")
    return model, input_shape


def _assemble(steps: list[Any]) -> list[nn.Module]:
    """Modules from the steps: each quantizer on the next layer's input, else the previous layer's output."""
    layers: list[nn.Module] = []
    pending: Quantizer | None = None

    def flush() -> None:
        nonlocal pending
        if pending is None:
            return
        prev = layers[-1] if layers else None
        if isinstance(prev, QLayer) and prev.output_quantizer is None:
            prev.output_quantizer = make_quantizer(pending, slot="output_quantizer", batch_dims=1)
        else:
            layers.append(QActivation("identity", input_quantizer=pending))
        pending = None

    for step in steps:
        if isinstance(step, tuple) and step[0] == "quant":
            flush()
            pending = step[1]
            continue
        if isinstance(step, _Weighted):
            module: nn.Module = _build_weighted(step)
        else:
            module = step[1]
        if isinstance(module, QLayer) and pending is not None:
            module.input_quantizer = make_quantizer(pending, slot="input_quantizer", batch_dims=1)
            pending = None
        else:
            flush()
        layers.append(module)
    flush()
    return layers


def verify_qonnx_import(source: str | os.PathLike[str] | bytes | Any, model: nn.Module,
                        x: torch.Tensor) -> dict[str, Any]:
    """Run ``source`` with qonnx's executor (after ``cleanup_model``) and ``model`` on ``x``; count the differences.

    Returns ``{"samples", "mismatches", "max_abs_diff", "first_mismatch"}`` like
    :func:`hwnas.export.verify_qonnx` (``mismatches``: samples whose outputs differ in any bit; expected 0).
    """
    from .qonnx import execute_qonnx

    proto = _load(source)
    model.eval()
    with torch.no_grad():
        ref = model(x).detach().double().numpy()
    got = execute_qonnx(proto, x.detach().numpy()).astype(np.float64).reshape(ref.shape)
    bad = np.flatnonzero(np.any((got != ref).reshape(len(ref), -1), axis=1))
    return {"samples": len(ref), "mismatches": int(bad.size),
            "max_abs_diff": float(np.max(np.abs(got - ref))) if got.size else 0.0,
            "first_mismatch": int(bad[0]) if bad.size else None}
