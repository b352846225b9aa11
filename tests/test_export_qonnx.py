"""QONNX export: executing the exported file with qonnx reproduces the torch model bit for bit."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import hwnas.nn as hn
from hwnas.export import QONNX_DOMAIN, ExportError, export_qonnx, verify_qonnx


def fixed(bits: int, round_mode: str = "RND_CONV", overflow_mode: str = "SAT", **kw) -> dict:
    return dict(bits=bits, learnable=False, round_mode=round_mode, overflow_mode=overflow_mode, **kw)


def heterogeneous_channels(layer: nn.Module, seed: int) -> None:
    """Scale each output channel's weights by a random power of two, so its quantizer picks its own (i, f)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        scale = torch.exp2(torch.randint(-3, 4, (layer.weight.shape[0],), generator=g).float())
        layer.weight.mul_(scale.view(-1, *([1] * (layer.weight.dim() - 1))))
        layer(torch.zeros(1, *layer.input_shape)) if layer.input_shape else None
    f = layer.weight_quantizer.kif()[2]
    assert len(torch.unique(f)) > 1  # the channels really differ


def check(model: nn.Module, x: torch.Tensor) -> None:
    result = verify_qonnx(model, x)
    assert result["samples"] == len(x)
    assert result["mismatches"] == 0, result
    assert result["max_abs_diff"] == 0.0


ROUND_MODES = ["RND_CONV", "TRN", "TRN_ZERO", "RND_INF", "RND_ZERO", "RND", "RND_MIN_INF"]


@pytest.mark.parametrize("round_mode", ROUND_MODES)
@pytest.mark.parametrize("overflow_mode", ["SAT", "SAT_SYM"])
def test_dense_model_is_bit_exact(round_mode: str, overflow_mode: str) -> None:
    torch.manual_seed(0)
    act = fixed(6, round_mode, overflow_mode)
    model = nn.Sequential(
        hn.QLinear(16, 24, input_quantizer=act, weight_quantizer=fixed(5, granularity="channel"),
                   bias_quantizer=fixed(8)),
        hn.QActivation("relu"),
        hn.QLinear(24, 5, input_quantizer=fixed(5, round_mode, overflow_mode, signed=False),
                   weight_quantizer=fixed(4), bias_quantizer=fixed(6), output_quantizer=fixed(10, round_mode)),
    )
    model(torch.randn(64, 16))  # static activation quantizers take their ranges from the first data
    heterogeneous_channels(model[0], seed=1)
    # inputs inside the ranges, on the grid (ties) and far outside (saturation)
    x = torch.cat([torch.randn(100, 16), torch.round(torch.randn(56, 16) * 16) / 8, torch.randn(100, 16) * 4])
    check(model, x)


@pytest.mark.parametrize("round_mode", ROUND_MODES)
@pytest.mark.parametrize("signed", [True, False])
def test_ties_and_the_float32_trap_round_exactly(round_mode: str, signed: bool) -> None:
    """Inputs a hair below, at and above every half LSB; 0.49999997 LSB is where a float32 ``floor(|y| + 0.5)``
    (QONNX's HALF_UP) rounds up although the tie is not reached."""
    torch.manual_seed(2)
    q = fixed(6, round_mode, signed=signed)
    model = nn.Sequential(hn.QLinear(8, 3, input_quantizer=q, weight_quantizer=fixed(6), bias_quantizer=None,
                                     output_quantizer=fixed(12, round_mode)))
    model(torch.randn(64, 8))
    lsb = float(torch.exp2(-model[0].input_quantizer.kif()[2]).max())
    hair = float(np.float32(0.49999997))
    codes = torch.arange(-12, 12, dtype=torch.float32)
    offsets = torch.tensor([-0.5, -hair, 0.0, hair, 0.5, 0.75])
    grid = ((codes[:, None] + offsets[None, :]) * lsb).reshape(-1)
    x = grid[torch.randint(len(grid), (256, 8), generator=torch.Generator().manual_seed(3))]
    assert (x / lsb - torch.floor(x / lsb) == hair).any()  # the trap is in the data
    check(model, torch.cat([x, torch.randn(64, 8) * 4]))


def test_staged_rounding_node_layout() -> None:
    """RND is Quant(FLOOR, LSB/2) → Add(+LSB/2) → Quant(FLOOR, LSB), the bit width two more on the half grid."""
    torch.manual_seed(4)
    model = nn.Sequential(hn.QLinear(4, 2, input_quantizer=fixed(6, "RND"), weight_quantizer=fixed(4),
                                     bias_quantizer=None))
    model(torch.randn(16, 4))
    proto = export_qonnx(model, (4,))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    first = proto.graph.node[:3]
    assert [n.op_type for n in first] == ["Quant", "Add", "Quant"]
    modes = [onnx.helper.get_attribute_value(a) for n in (first[0], first[2]) for a in n.attribute
             if a.name == "rounding_mode"]
    assert modes == [b"FLOOR", b"FLOOR"]
    scale_pre, scale = inits[first[0].input[1]], inits[first[2].input[1]]
    assert scale_pre * 2 == scale and inits[first[1].input[1]] == scale / 2
    assert inits[first[0].input[3]] == inits[first[2].input[3]] + 2


def test_conv_pool_flatten_model_is_bit_exact() -> None:
    torch.manual_seed(3)
    act = fixed(8)
    model = nn.Sequential(
        hn.QConv1d(2, 8, 5, padding=2, input_quantizer=act, weight_quantizer=fixed(6, granularity="channel"),
                   bias_quantizer=fixed(8)),
        hn.QActivation("relu"), hn.QMaxPool1d(2),
        hn.QConv1d(8, 8, 3, stride=2, padding=1, groups=8, input_quantizer=fixed(7, signed=False),
                   weight_quantizer=fixed(5), bias_quantizer=None),
        hn.QAvgPool1d(2, output_quantizer=fixed(9)),
        nn.Flatten(),
        hn.QLinear(8 * 8, 4, input_quantizer=fixed(9), weight_quantizer=fixed(6), bias_quantizer=fixed(8)),
    )
    model(torch.randn(32, 2, 64))
    heterogeneous_channels(model[0], seed=4)
    check(model, torch.cat([torch.randn(64, 2, 64), torch.randn(16, 2, 64) * 4]))


def depthwise_cnn2d() -> nn.Sequential:
    """A 2-D CNN on 1×8×8: conv, ReLU, depthwise strided conv (TRN input, per-channel weights), max pool, dense."""
    model = nn.Sequential(
        hn.QConv2d(1, 4, 3, padding=1, input_quantizer=fixed(8), weight_quantizer=fixed(6), bias_quantizer=fixed(8)),
        hn.QActivation("relu"),
        hn.QConv2d(4, 4, 3, stride=2, padding=1, groups=4, input_quantizer=fixed(6, "TRN", signed=False),
                   weight_quantizer=fixed(5, granularity="channel"), bias_quantizer=None),
        hn.QMaxPool2d(2), nn.Flatten(),
        hn.QLinear(4 * 2 * 2, 3, input_quantizer=fixed(8), weight_quantizer=fixed(6), bias_quantizer=None),
    )
    model(torch.rand(16, 1, 8, 8))
    return model


def test_conv2d_depthwise_model_is_bit_exact() -> None:
    torch.manual_seed(5)
    model = depthwise_cnn2d()
    check(model, torch.cat([torch.rand(32, 1, 8, 8), torch.rand(8, 1, 8, 8) * 4]))


def test_file_is_qonnx_with_explicit_quant_attributes(tmp_path) -> None:
    torch.manual_seed(6)
    model = nn.Sequential(hn.QLinear(4, 2, input_quantizer=fixed(6, "TRN", "SAT_SYM"), weight_quantizer=fixed(4),
                                     bias_quantizer=None))
    path = tmp_path / "model.onnx"
    export_qonnx(model, (4,), path)
    proto = onnx.load(path)
    assert not list(tmp_path.glob("*.tmp"))
    quants = [n for n in proto.graph.node if n.op_type == "Quant"]
    assert len(quants) == 2 and all(n.domain == QONNX_DOMAIN for n in quants)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in quants[0].attribute}
    assert attrs["signed"] == 1 and attrs["narrow"] == 1 and attrs["rounding_mode"] == b"FLOOR"
    # op types a FINN flow starts from (its streamlining converts them further)
    assert {n.op_type for n in proto.graph.node} <= {"Quant", "MatMul", "Add", "Conv", "Relu", "MaxPool",
                                                     "AveragePool", "Flatten", "Identity"}


@pytest.mark.parametrize(("layer", "message"), [
    (lambda: hn.QLinear(4, 2, input_quantizer=fixed(6)), r"0\.weight_quantizer: bit-widths vary within a channel"),
    (lambda: hn.QLinear(4, 2, input_quantizer=fixed(6, overflow_mode="WRAP"), weight_quantizer=fixed(4)),
     r"0\.input_quantizer: overflow mode WRAP"),
    (lambda: hn.QLinear(4, 2, input_quantizer=fixed(23, "RND"), weight_quantizer=fixed(4)),
     r"0\.input_quantizer: 23-bit activation with rounding mode RND needs a 25-bit intermediate"),
    (lambda: hn.QLinear(4, 2, input_quantizer=fixed(1), weight_quantizer=fixed(4)), r"signed 1-bit"),
    (lambda: hn.QActivation("tanh", input_quantizer=fixed(6), output_quantizer=fixed(6)), r"0: tanh \(table\)"),
    (lambda: nn.BatchNorm1d(4), r"0: BatchNorm must be folded first"),
    (lambda: nn.GELU(), r"0: GELU is not supported"),
])
def test_unsupported_features_name_the_layer(layer, message) -> None:
    torch.manual_seed(7)
    with pytest.raises(ExportError, match=message):
        export_qonnx(nn.Sequential(layer()), (4,))


def test_non_sequential_models_are_refused() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            return self.a(x) + self.b(x)

    with pytest.raises(ExportError, match=r"Branchy: only nn\.Sequential"):
        export_qonnx(Branchy(), (4,))


def test_exported_model_is_deterministic() -> None:
    torch.manual_seed(8)
    model = nn.Sequential(hn.QLinear(4, 2, input_quantizer=fixed(6), weight_quantizer=fixed(4)))
    a = export_qonnx(model, (4,)).SerializeToString()
    b = export_qonnx(model, (4,)).SerializeToString()
    assert a == b and np.frombuffer(a, dtype=np.uint8).size > 0


def test_scaled_int_ptq_model_is_bit_exact() -> None:
    from hwnas.quant import calibrate

    torch.manual_seed(9)
    model = nn.Sequential(
        hn.QConv1d(2, 8, 3, padding=1, input_quantizer=None, weight_quantizer=None, bias_quantizer=None),
        hn.QActivation("relu"), hn.QMaxPool1d(2), nn.Flatten(),
        hn.QLinear(8 * 16, 4, input_quantizer=None, weight_quantizer=None, bias_quantizer=None),
    )
    hn.set_quantizers(model, weight=dict(kind="scaled", bits=8, granularity="channel"),
                      input=dict(kind="scaled", bits=8), layers=(hn.QConv1d, hn.QLinear))
    # the deployed int model's logits are int8 codes: a float output after non-power-of-two scales is summed
    # in a different order by onnxruntime and torch (≈1 ULP apart), so only quantized tensors can be bit-exact
    hn.set_quantizers(model, weight=dict(kind="scaled", bits=4, symmetric=False),
                      output=dict(kind="scaled", bits=8), layers=(hn.QLinear,))
    x = torch.randn(64, 2, 32)
    calibrate(model, x)
    check(model, torch.cat([x, torch.randn(16, 2, 32) * 5]))


def test_asymmetric_scaled_activation_is_refused() -> None:
    from hwnas.quant import calibrate

    torch.manual_seed(10)
    model = nn.Sequential(hn.QLinear(4, 2, input_quantizer=dict(kind="scaled", bits=8, symmetric=False),
                                     weight_quantizer=fixed(4), bias_quantizer=None))
    calibrate(model, torch.randn(32, 4))
    with pytest.raises(ExportError, match=r"0\.input_quantizer: asymmetric"):
        export_qonnx(model, (4,))


@pytest.mark.parametrize("round_mode", ["RND", "RND_MIN_INF", "RND_INF"])
def test_staged_rounding_with_per_channel_activation_ranges(round_mode: str) -> None:
    """Channels of one activation with their own (i, f): the half-LSB stage gets one scale per channel."""
    torch.manual_seed(8)
    model = nn.Sequential(hn.QConv1d(2, 4, 3, padding=1, input_quantizer=fixed(6, round_mode, granularity="channel"),
                                     weight_quantizer=fixed(5), bias_quantizer=None,
                                     output_quantizer=fixed(8, round_mode, granularity="channel")))
    x = torch.randn(64, 2, 16) * torch.tensor([0.1, 3.0]).view(1, 2, 1)
    model(x)
    assert len(torch.unique(model[0].input_quantizer.kif()[2])) == 2
    check(model, torch.cat([x, x * 3]))


def test_all_zero_signed_one_bit_bias_is_a_constant() -> None:
    """A pruned bias (signed 1-bit quantizer, every value 0) exports as a constant: exact, no bipolar Quant."""
    torch.manual_seed(2)
    model = nn.Sequential(hn.QLinear(6, 5, input_quantizer=fixed(6), weight_quantizer=fixed(4),
                                     bias_quantizer=fixed(1, signed=True, i=0, f=0)),
                          hn.QActivation("relu"),
                          hn.QLinear(5, 3, input_quantizer=fixed(6, signed=False), weight_quantizer=fixed(4),
                                     bias_quantizer=fixed(6)))
    with torch.no_grad():
        model[0].bias.zero_()
    x = torch.randn(40, 6)
    model(x)
    model.eval()
    assert not model[0].quantized_bias().any()
    check(model, x)
    with torch.no_grad():
        model[0].bias[0] = -1.0  # a real signed 1-bit value is still refused (QONNX would execute it as ±1)
    with pytest.raises(ExportError, match="bipolar"):
        export_qonnx(model, (6,))
