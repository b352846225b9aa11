"""QONNX import: hwnas's own exports and Brevitas/QKeras-shaped files come back as hwnas layers, bit-exact on qonnx."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import hwnas.nn as hn
from hwnas.export import ExportError, export_qonnx, import_qonnx, load_model, save_model, verify_qonnx_import
from hwnas.quant import BipolarQuantizer, FixedPointQuantizer, ScaledIntQuantizer
from tests.test_export_qonnx import depthwise_cnn2d, fixed

DOMAIN = "qonnx.custom_op.general"


def check(source, model: nn.Module, x: torch.Tensor) -> None:
    result = verify_qonnx_import(source, model, x)
    assert result["samples"] == len(x)
    assert result["mismatches"] == 0, result
    assert result["max_abs_diff"] == 0.0


def round_trip(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Export, import, and compare the import with the original (torch) and with qonnx's executor."""
    model.eval()
    proto = export_qonnx(model, tuple(x.shape[1:]))
    imported, shape = import_qonnx(proto)
    assert shape == tuple(x.shape[1:])
    assert all(isinstance(m, hn.QLayer | nn.Flatten) for m in imported)
    with torch.no_grad():
        assert torch.equal(imported(x), model(x))
    check(proto, imported, x)
    return imported


# ------------------------------------------------------------------------------------------ round trips
def test_round_trip_dense_every_rounding_mode():
    """All seven ap_fixed rounding modes, staged ones (RND, RND_MIN_INF, RND_INF) included, SAT and SAT_SYM."""
    torch.manual_seed(0)
    model = nn.Sequential(
        hn.QLinear(12, 10, input_quantizer=fixed(6, "RND"), weight_quantizer=fixed(5, granularity="channel"),
                   bias_quantizer=fixed(8), output_quantizer=fixed(9, "RND_MIN_INF", "SAT_SYM")),
        hn.QActivation("relu", output_quantizer=fixed(6, "RND_INF", signed=False)),
        hn.QLinear(10, 8, input_quantizer=None, weight_quantizer=fixed(4, overflow_mode="SAT_SYM"),
                   bias_quantizer=fixed(6), output_quantizer=fixed(8, "TRN")),
        hn.QActivation("relu", output_quantizer=fixed(6, "TRN_ZERO")),
        hn.QLinear(8, 3, input_quantizer=fixed(6, "RND_ZERO"), weight_quantizer=fixed(6), bias_quantizer=None,
                   output_quantizer=fixed(10)),
    )
    model(torch.randn(64, 12))  # static activation quantizers take their ranges from the first data
    x = torch.cat([torch.randn(96, 12), torch.round(torch.randn(32, 12) * 16) / 8, torch.randn(32, 12) * 4])
    imported = round_trip(model, x)
    quantizers = [q for q in imported.modules() if isinstance(q, FixedPointQuantizer)]
    modes = {q.round_mode.value for q in quantizers if q.batch_dims == 1}
    assert modes == {"RND", "RND_MIN_INF", "RND_INF", "TRN", "TRN_ZERO", "RND_ZERO", "RND_CONV"}
    assert imported[0].weight_quantizer.granularity.describe().startswith("channel")
    assert "SAT_SYM" in {q.overflow_mode.value for q in quantizers}


def test_round_trip_conv1d_pool_flatten_and_conv2d():
    torch.manual_seed(3)
    conv1d = nn.Sequential(
        hn.QConv1d(2, 6, 5, padding=2, input_quantizer=fixed(8, "RND"),
                   weight_quantizer=fixed(6, granularity="channel"), bias_quantizer=fixed(8)),
        hn.QActivation("relu"), hn.QMaxPool1d(2),
        hn.QConv1d(6, 6, 3, stride=2, padding=1, groups=6, input_quantizer=fixed(7, signed=False),
                   weight_quantizer=fixed(5), bias_quantizer=None),
        hn.QAvgPool1d(2, output_quantizer=fixed(9)), nn.Flatten(),
        hn.QLinear(6 * 4, 4, input_quantizer=fixed(9), weight_quantizer=fixed(6), bias_quantizer=fixed(8)),
    )
    conv1d(torch.randn(32, 2, 32))
    round_trip(conv1d, torch.cat([torch.randn(48, 2, 32), torch.randn(8, 2, 32) * 4]))
    conv2d = depthwise_cnn2d()
    imported = round_trip(conv2d, torch.cat([torch.rand(32, 1, 8, 8), torch.rand(8, 1, 8, 8) * 4]))
    assert isinstance(imported[0], hn.QConv2d) and imported[2].groups == 4


def test_round_trip_scaled_int_model():
    from hwnas.quant import calibrate

    torch.manual_seed(9)
    model = nn.Sequential(
        hn.QConv1d(2, 6, 3, padding=1, input_quantizer=None, weight_quantizer=None, bias_quantizer=None),
        hn.QActivation("relu"), hn.QMaxPool1d(2), nn.Flatten(),
        hn.QLinear(6 * 8, 4, input_quantizer=None, weight_quantizer=None, bias_quantizer=None),
    )
    hn.set_quantizers(model, weight=dict(kind="scaled", bits=8, granularity="channel"),
                      input=dict(kind="scaled", bits=8), layers=(hn.QConv1d, hn.QLinear))
    hn.set_quantizers(model, output=dict(kind="scaled", bits=8), layers=(hn.QLinear,))
    x = torch.randn(48, 2, 16)
    calibrate(model, x)
    imported = round_trip(model, torch.cat([x, torch.randn(16, 2, 16) * 5]))
    assert isinstance(imported[0].weight_quantizer, ScaledIntQuantizer)
    assert isinstance(imported[-1].output_quantizer, ScaledIntQuantizer)


# ------------------------------------------------------------------------------------------ hand-built files
class Builder:
    """A QONNX graph in the shape Brevitas and qonnx's QKeras converter write, built with onnx.helper."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []
        self.n = 0

    def name(self, stem: str) -> str:
        self.n += 1
        return f"{stem}_{self.n}"

    def const(self, value, stem: str = "c", dtype=np.float32) -> str:
        name = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: list[str], domain: str = "", name: str | None = None, **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=name or out, domain=domain, **attrs))
        return out

    def quant(self, x: str, scale, bits: int, signed: bool = True, narrow: bool = False, mode: str = "ROUND",
              zeropt=0.0, name: str | None = None) -> str:
        return self.node("Quant", [x, self.const(scale, "scale"), self.const(zeropt, "zeropt"),
                                   self.const(float(bits), "bitwidth")], DOMAIN, name=name,
                         signed=int(signed), narrow=int(narrow), rounding_mode=mode)

    def model(self, x_shape: tuple[int, ...], out: str, out_shape: tuple[int, ...]) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "torch_jit", [helper.make_tensor_value_info(
            "inp.1", TensorProto.FLOAT, list(x_shape))], [helper.make_tensor_value_info(
                out, TensorProto.FLOAT, list(out_shape))], self.inits)
        proto = helper.make_model(graph, producer_name="pytorch", opset_imports=[helper.make_opsetid("", 13)])
        proto.ir_version = 8
        return proto


def test_brevitas_float_scale_gemm_file(tmp_path):
    """Brevitas defaults: float per-tensor activation scales, per-channel narrow int4 weights in Gemm(transB=1), an
    Int32 bias quantized at s_in·s_w, QuantReLU (Relu then unsigned Quant), MatMul with a transposed weight."""
    rng = np.random.default_rng(0)
    b = Builder()
    s_in, s_w = np.float32(0.0371), rng.uniform(0.02, 0.09, (16, 1)).astype(np.float32)
    x = b.quant("inp.1", s_in, 8, name="/input_quant/export_handler/Quant")
    w = b.quant(b.const(rng.normal(0, 0.2, (16, 10))), s_w, 4, narrow=True)
    bias = b.quant(b.const(rng.normal(0, 0.1, 16)), (s_in * s_w).reshape(16), 32)
    y = b.node("Gemm", [x, w, bias], name="/fc1/Gemm", transB=1)
    y = b.quant(b.node("Relu", [y]), np.float32(0.113), 4, signed=False)
    w2 = b.node("Transpose", [b.quant(b.const(rng.normal(0, 0.2, (3, 16))), np.float32(0.05), 6, narrow=True)],
                perm=[1, 0])
    y = b.node("MatMul", [y, w2], name="/fc2/MatMul")
    y = b.node("Add", [y, b.const(rng.normal(0, 0.1, 3))])
    out = b.quant(y, np.float32(0.07), 8)
    path = tmp_path / "brevitas.onnx"
    onnx.save(b.model((1, 10), out, (1, 3)), path)
    model, shape = import_qonnx(path)
    assert shape == (10,)
    fc1 = model[0]
    assert isinstance(fc1, hn.QLinear) and isinstance(fc1.input_quantizer, ScaledIntQuantizer)
    assert isinstance(fc1.weight_quantizer, ScaledIntQuantizer) and fc1.weight_quantizer.narrow
    assert fc1.weight_quantizer.scale.shape == (16, 1) and fc1.bias_quantizer is None  # Int32 bias: exact floats
    assert model[-1].output_quantizer.bits == 8 and model[-1].bias_quantizer is None
    torch.manual_seed(0)
    data = torch.cat([torch.randn(96, 10), torch.randn(32, 10) * 8])
    check(path, model, data)
    save_model(model, tmp_path / "model.pt", input_shape=shape)
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path / "model.pt").model(data), model(data))


def test_brevitas_float_scale_conv2d_file():
    """QuantConv2d (per-channel float scales, float bias) → QuantReLU → MaxPool → flatten → QuantLinear."""
    rng = np.random.default_rng(3)
    b = Builder()
    x = b.quant("inp.1", np.float32(0.0213), 8)
    w = b.quant(b.const(rng.normal(0, 0.3, (6, 3, 3, 3))), rng.uniform(0.02, 0.09, (6, 1, 1, 1)), 6, narrow=True)
    y = b.node("Conv", [x, w, b.const(rng.normal(0, 0.1, 6))], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    y = b.quant(b.node("Relu", [y]), np.float32(0.137), 4, signed=False)
    y = b.node("Flatten", [b.node("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])], axis=1)
    w2 = b.quant(b.const(rng.normal(0, 0.2, (5, 6 * 4 * 4))), np.float32(0.0417), 6, narrow=True)
    out = b.quant(b.node("Gemm", [y, w2], transB=1), np.float32(0.0629), 8)
    proto = b.model((1, 3, 8, 8), out, (1, 5))
    model, _ = import_qonnx(proto)
    assert isinstance(model[0], hn.QConv2d) and model[0].weight_quantizer.scale.shape == (6, 1, 1, 1)
    torch.manual_seed(1)
    check(proto, model, torch.randn(200, 3, 8, 8))


def test_pot_scale_conv2d_file_with_folded_scale_and_flatten_reshape():
    """Power-of-two scales (Brevitas *FixedPoint quantizers, QKeras quantized_bits): fixed-point quantizers; a Mul
    by 2^-k after the convolution folds into it; the bias is an Add of a Quant-ed constant; a view() flattens."""
    rng = np.random.default_rng(1)
    b = Builder()
    x = b.quant("inp.1", 2.0**-5, 8)
    w = b.quant(b.const(rng.normal(0, 0.5, (4, 2, 3, 3))), np.exp2(-rng.integers(2, 5, (4, 1, 1, 1))), 6)
    y = b.node("Conv", [x, w], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
    y = b.node("Mul", [y, b.const(np.full((1, 4, 1, 1), 0.5))])
    y = b.node("Add", [y, b.quant(b.const(rng.normal(0, 0.3, (1, 4, 1, 1))), 2.0**-6, 8)])
    y = b.quant(b.node("Relu", [y]), 2.0**-3, 5, signed=False, mode="FLOOR")
    y = b.node("MaxPool", [b.node("Identity", [y])], kernel_shape=[2, 2], strides=[2, 2])
    # x.view(x.size(0), -1) as torch.onnx writes it: Shape → Gather → Unsqueeze → Concat → Reshape
    batch = b.node("Unsqueeze", [b.node("Gather", [b.node("Shape", [y]), b.const(0, "i", np.int64)], axis=0),
                                 b.const([0], "axes", np.int64)])
    y = b.node("Reshape", [y, b.node("Concat", [batch, b.const([-1], "rest", np.int64)], axis=0)])
    w2 = b.quant(b.const(rng.normal(0, 0.3, (4 * 3 * 3, 5))), 2.0**-4, 5, narrow=True)
    y = b.node("Add", [b.node("MatMul", [y, w2]), b.quant(b.const(rng.normal(0, 0.3, 5)), 2.0**-5, 8)])
    out = b.quant(y, 2.0**-4, 10, mode="HALF_DOWN")
    proto = b.model((1, 2, 6, 6), out, (1, 5))
    model, shape = import_qonnx(proto.SerializeToString())
    assert shape == (2, 6, 6)
    assert [type(m).__name__ for m in model] == ["QConv2d", "QActivation", "QMaxPool2d", "Flatten", "QLinear"]
    conv = model[0]
    assert all(isinstance(q, FixedPointQuantizer) for q in (conv.input_quantizer, conv.weight_quantizer,
                                                            conv.bias_quantizer))
    assert conv.weight_quantizer.granularity.describe().startswith("channel")
    assert model[2].input_quantizer.round_mode.value == "TRN"  # a Quant goes on the next layer's input
    assert model[-1].output_quantizer.round_mode.value == "RND_ZERO"
    assert model[-1].weight_quantizer.overflow_mode.value == "SAT_SYM"
    assert hn.bops(model) > 0
    check(proto, model, torch.cat([torch.randn(48, 2, 6, 6), torch.randn(16, 2, 6, 6) * 8]))


def test_bipolar_and_conv1d_average_pool_file():
    rng = np.random.default_rng(2)
    b = Builder()
    x = b.node("BipolarQuant", ["inp.1", b.const(1.0)], DOMAIN)
    w = b.node("BipolarQuant", [b.const(rng.normal(0, 1, (4, 3, 3))), b.const(1.0)], DOMAIN)
    y = b.node("Conv", [x, w, b.const(rng.integers(-2, 3, 4))], kernel_shape=[3], pads=[1, 1], group=1)
    y = b.node("AveragePool", [y], kernel_shape=[2], strides=[2])
    y = b.quant(b.node("GlobalMaxPool", [y]), 2.0**-1, 6)
    out = b.node("Flatten", [y], axis=1)
    proto = b.model((1, 3, 8), out, (1, 4))
    model, _ = import_qonnx(proto)
    assert isinstance(model[0].input_quantizer, BipolarQuantizer)
    assert isinstance(model[0].weight_quantizer, BipolarQuantizer)
    check(proto, model, torch.randn(64, 3, 8))


def _one_layer(op_after: str | None = None, **quant) -> onnx.ModelProto:
    """Quant → MatMul → (op_after) → output: a tiny file for the refusals."""
    b = Builder()
    opts = dict(scale=2.0**-4, bits=8) | quant
    x = b.quant("inp.1", name="/act/Quant", **opts)
    y = b.node("MatMul", [x, b.quant(b.const(np.eye(4)), 2.0**-2, 4)], name="/fc/MatMul")
    if op_after == "residual":
        y = b.node("Add", [y, x], name="/res/Add")
    elif op_after == "Mul":
        y = b.node("Mul", [y, b.const(0.3)], name="/scale/Mul")
    elif op_after == "Transpose":
        y = b.node("Transpose", [y], name="/t/Transpose", perm=[1, 0])
    elif op_after is not None:
        y = b.node(op_after, [y], name=f"/act2/{op_after}")
    return b.model((1, 4), y, (1, 4) if op_after != "Transpose" else (4, 1))


@pytest.mark.parametrize("proto, message", [
    (_one_layer("Sigmoid"), r"node '/act2/Sigmoid' \(Sigmoid\): Sigmoid is not imported"),
    (_one_layer("residual"), r"node '/res/Add' \(Add\): reads 2 computed tensors"),
    (_one_layer("Mul"), r"node '/scale/Mul' \(Mul\): .*powers of two"),
    (_one_layer("Transpose"), r"node '/t/Transpose' \(Transpose\): a transpose of a computed tensor"),
    (_one_layer(mode="CEIL"), r"node '/act/Quant' \(Quant\): rounding mode CEIL has no ap_fixed twin"),
    (_one_layer(zeropt=3.0), r"node '/act/Quant' \(Quant\): an activation zero point"),
    (_one_layer(signed=False, narrow=True), r"node '/act/Quant' \(Quant\): unsigned narrow"),
    (_one_layer(scale=0.3, mode="FLOOR"), r"node '/act/Quant' \(Quant\): rounding mode FLOOR with a scale"),
])
def test_what_cannot_be_mapped_is_one_error_naming_the_node(proto, message):
    with pytest.raises(ExportError, match=message) as info:
        import_qonnx(proto)
    assert "\n" not in str(info.value)


def test_unreadable_file_is_an_export_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(ExportError, match="cannot read it as an ONNX model"):
        import_qonnx(bad)
