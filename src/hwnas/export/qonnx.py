"""Export a chain of hwnas layers to QONNX: ONNX with ``Quant`` nodes (domain ``qonnx.custom_op.general``).

Contract:

* :func:`export_qonnx` takes a model whose forward is a chain (``nn.Sequential`` of hwnas layers, ``Flatten``,
  ``ReLU``, ``Identity``/``Dropout``) in eval mode, runs it once on a zero sample (weight quantizers derive their
  integer bits from the weights at each call) and writes one node group per layer: ``Quant`` on the layer input,
  ``MatMul``/``Add`` or ``Conv`` with ``Quant``-ed weight and bias initializers, the activation or pooling node,
  and ``Quant`` on the layer output, mirroring the order of :class:`hwnas.nn.QLayer`'s forward.
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
* A scaled-integer quantizer becomes ``Quant(x, scale, zeropt, bits)`` with its own scale(s), signedness and
  narrow range, rounding ROUND (half to even, as torch rounds); activations must be symmetric (zero point 0).
* What QONNX cannot express raises :class:`ExportError` naming the layer and slot and pointing to the hls4ml
  or RTL path: per-parameter widths, per-channel activation widths that differ, WRAP or SAT_ZERO overflow,
  signed 1-bit values (QONNX executes them as bipolar ±1), staged roundings wider than 22 bits, table
  activations, asymmetric scaled-int activations, float16 quantizers, unfolded BatchNorm, and layers it does not know.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.nn import QActivation, QConv1d, QConv2d, QLinear
from hwnas.nn.activation import QAvgPool1d, QAvgPool2d, QMaxPool1d, QMaxPool2d
from hwnas.nn.base import QLayer
from hwnas.quant import FixedPointQuantizer, ScaledIntQuantizer

from .errors import ExportError
from .folders import write_file

__all__ = ["QONNX_DOMAIN", "ExportError", "execute_qonnx", "export_qonnx", "verify_qonnx"]

QONNX_DOMAIN = "qonnx.custom_op.general"
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


def _kif(q: FixedPointQuantizer, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k, i, f = (t.detach().double().expand(shape).numpy() if t.dim() else np.full(shape, float(t))
               for t in q.kif())
    return k, i, f


def _varying_axes(*arrays: np.ndarray) -> set[int]:
    axes: set[int] = set()
    for a in arrays:
        for ax in range(a.ndim):
            if not np.all(a == a.take([0], axis=ax)):
                axes.add(ax)
    return axes


def _check_overflow(q: FixedPointQuantizer, where: str) -> bool:
    mode = q.overflow_mode.value
    if mode not in ("SAT", "SAT_SYM"):
        raise ExportError(f"{where}: overflow mode {mode} cannot be expressed by a QONNX Quant node "
                          f"(it saturates); {_OTHER_PATHS}")
    return mode == "SAT_SYM"


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
    if isinstance(q, ScaledIntQuantizer):
        return _scaled_static(g, q, value, transpose)
    if not isinstance(q, FixedPointQuantizer):
        raise ExportError(f"{where}: {type(q).__name__} has no QONNX Quant form; {_OTHER_PATHS}")
    shape = tuple(value.shape)
    k, i, f = _kif(q, shape)
    # the stored values are final (wrapped or saturated already), so the overflow mode does not matter here
    narrow = q.overflow_mode.value == "SAT_SYM"
    varying = _varying_axes(f, i, k)
    if varying - {0}:
        raise ExportError(f"{where}: bit-widths vary within a channel (per-parameter); QONNX Quant carries one "
                          f"width per tensor and one scale per channel; {_OTHER_PATHS}")
    signed = bool(np.any(k > 0))
    narrow = narrow and signed  # ap_ufixed SAT_SYM is plain SAT
    width = int(np.max(i + f)) + (1 if signed else 0)
    if width < 1:
        width = 1
    if signed and width == 1:
        if not bool(torch.any(value.detach() != 0)):  # all zero (a pruned bias): a constant, exact without Quant
            zeros = value.detach().double().numpy()
            return g.const("param", zeros.T if transpose else zeros)
        raise ExportError(f"{where}: signed 1-bit values execute as bipolar ±1 in QONNX; {_OTHER_PATHS}")
    scale = np.exp2(-f)
    if 0 in varying:
        scale = scale[(slice(None),) + (0,) * (len(shape) - 1)].reshape((-1,) + (1,) * (len(shape) - 1))
    else:
        scale = np.array(scale.flat[0])
    data = value.detach().double().numpy()
    if transpose:
        data, scale = data.T, (scale.T if scale.ndim else scale)
    return _quant(g, g.const("param", data), scale, width, signed, narrow, "ROUND")


def _quant_activation(g: _Graph, q: Any, x: str, sample: tuple[int, ...], where: str) -> str:
    if q is None:
        return x
    if isinstance(q, ScaledIntQuantizer):
        return _scaled_activation(g, q, x, where)
    if not isinstance(q, FixedPointQuantizer):
        raise ExportError(f"{where}: {type(q).__name__} has no QONNX Quant form; {_OTHER_PATHS}")
    k, i, f = _kif(q, sample)
    narrow = _check_overflow(q, where)
    varying = _varying_axes(f, i, k)
    width = k + i + f
    if varying - {0} or (0 in varying and not (np.all(width == width.flat[0]) and np.all(k == k.flat[0]))):
        raise ExportError(f"{where}: the activation quantizer's widths or signs differ between elements; QONNX "
                          f"Quant carries one width and sign per tensor; {_OTHER_PATHS}")
    signed = bool(k.flat[0] > 0)
    narrow = narrow and signed  # ap_ufixed SAT_SYM is plain SAT
    bits = int(width.flat[0])
    if bits < 1:
        raise ExportError(f"{where}: zero-width (pruned) activation; {_OTHER_PATHS}")
    if signed and bits == 1:
        raise ExportError(f"{where}: signed 1-bit values execute as bipolar ±1 in QONNX; {_OTHER_PATHS}")
    rnd = q.round_mode.value
    scale = np.exp2(-f)
    if 0 in varying:
        scale = scale.reshape(sample)[(slice(None),) + (0,) * (len(sample) - 1)]
        scale = scale.reshape((1, -1) + (1,) * (len(sample) - 1))
    else:
        scale = np.array(scale.flat[0])
    if rnd in _ROUNDING:
        return _quant(g, x, scale, bits, signed, narrow, _ROUNDING[rnd])
    if bits + 2 > _FLOAT32_BITS:
        raise ExportError(f"{where}: {bits}-bit activation with rounding mode {rnd} needs a {bits + 2}-bit "
                          f"intermediate, more than float32 carries exactly; {_OTHER_PATHS}")
    pre, offset, final = _TIE_STAGES[rnd]
    # values on the half-LSB grid keep every tie of the final rounding and are exact in float32
    x = _quant(g, x, scale / 2, bits + 2, signed, False, pre)
    if offset:
        x = g.node("Add", [x, g.const("half_lsb", offset * scale)], "add")
    return _quant(g, x, scale, bits, signed, narrow, final)


def _quant(g: _Graph, x: str, scale: np.ndarray, bits: int, signed: bool, narrow: bool, mode: str) -> str:
    """A ``Quant`` node of ``x`` with zero point 0."""
    return g.node("Quant", [x, g.const("scale", scale), g.const("zeropt", np.zeros(())),
                            g.const("bitwidth", np.array(float(bits)))], "quant", QONNX_DOMAIN,
                  signed=int(signed), narrow=int(narrow), rounding_mode=mode)


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
    raise ExportError(f"{type(model).__name__}: only nn.Sequential chains of layers are exported to QONNX; "
                      "wrap the layers in nn.Sequential")


def export_qonnx(model: nn.Module, input_shape: tuple[int, ...], path: str | os.PathLike[str] | None = None,
                 *, batch_size: int = 1, replace: bool = True) -> Any:
    """The QONNX ``onnx.ModelProto`` of ``model`` for per-sample ``input_shape``; also written to ``path``.

    The model is put in eval mode. Raises :class:`ExportError` naming the layer for anything QONNX cannot
    express exactly (module docstring). Written atomically (temporary file, then rename) with
    :func:`hwnas.export.folders.write_file`: an existing file is overwritten only with ``replace`` (the
    command line's ``--force``); a folder at ``path`` raises :class:`~hwnas.export.folders.FolderError`.
    """
    from onnx import TensorProto, checker, helper

    model.eval()
    sample = tuple(int(d) for d in input_shape)
    with torch.no_grad():
        model(torch.zeros((1, *sample)))  # weight quantizers derive their integer bits from the weights
    g = _Graph()
    x = "input"
    for name, layer in _chain(model):
        x_next = _layer(g, name or type(layer).__name__, layer, x, sample)
        with torch.no_grad():
            sample = tuple(layer(torch.zeros((1, *sample))).shape[1:])
        x = x_next
    if x == "input":
        x = g.node("Identity", [x], "identity")
    graph = helper.make_graph(
        g.nodes, "hwnas", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch_size, *input_shape])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [batch_size, *sample])], g.inits)
    proto = helper.make_model(graph, producer_name="hwnas", opset_imports=[
        helper.make_opsetid("", _OPSET), helper.make_opsetid(QONNX_DOMAIN, 1)])
    proto.ir_version = _IR_VERSION
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
