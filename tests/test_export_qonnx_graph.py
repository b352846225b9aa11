"""QONNX export through the export graph: DAG models (residual adds, concatenation, global pooling) and chains.

Every model is executed with qonnx's executor and compared with torch and with the graph's float64 reference
(:func:`hwnas.export.graph.run_reference`): 0 mismatching samples. Chain models must export as they did when
the exporter walked the torch model itself: the same op types in the same order (:data:`CHAIN_OPS`, recorded
from that exporter).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import hwnas.nn as hn
from hwnas.export import (
    ExportError,
    execute_qonnx,
    export_qonnx,
    extract,
    float32_exact,
    run_reference,
    verify_qonnx,
)
from hwnas.export.graph import Add, Concat, GlobalPool
from hwnas.export.qonnx import SOURCE_KEY

from .graph_models import GRAPH_MODELS, inputs
from .test_export_qonnx import fixed


def heterogeneous_channels(layer: nn.Module, seed: int) -> None:
    """Scale each output channel's weights by a random power of two, so its quantizer picks its own (i, f)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        scale = torch.exp2(torch.randint(-3, 4, (layer.weight.shape[0],), generator=g).float())
        layer.weight.mul_(scale.view(-1, *([1] * (layer.weight.dim() - 1))))


# ------------------------------------------------------------------------------------------ chain models
def _dense(round_mode: str, overflow_mode: str) -> Callable[[], tuple[nn.Module, torch.Tensor]]:
    def build() -> tuple[nn.Module, torch.Tensor]:
        torch.manual_seed(0)
        act = fixed(6, round_mode, overflow_mode)
        model = nn.Sequential(
            hn.QLinear(16, 24, input_quantizer=act, weight_quantizer=fixed(5, granularity="channel"),
                       bias_quantizer=fixed(8)),
            hn.QActivation("relu"),
            hn.QLinear(24, 5, input_quantizer=fixed(5, round_mode, overflow_mode, signed=False),
                       weight_quantizer=fixed(4), bias_quantizer=fixed(6), output_quantizer=fixed(10, round_mode)),
        )
        model(torch.randn(64, 16))
        heterogeneous_channels(model[0], seed=1)
        g = torch.Generator().manual_seed(11)
        x = torch.cat([torch.randn(64, 16, generator=g), torch.round(torch.randn(32, 16, generator=g) * 16) / 8,
                       torch.randn(32, 16, generator=g) * 4])
        return model, x
    return build


def _conv_pool_flatten() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(3)
    model = nn.Sequential(
        hn.QConv1d(2, 8, 5, padding=2, input_quantizer=fixed(8, "RND"),
                   weight_quantizer=fixed(6, granularity="channel"), bias_quantizer=fixed(8)),
        hn.QActivation("relu"), hn.QMaxPool1d(2),
        hn.QConv1d(8, 8, 3, stride=2, padding=1, groups=8, input_quantizer=fixed(7, signed=False),
                   weight_quantizer=fixed(5), bias=False),
        hn.QAvgPool1d(2, output_quantizer=fixed(9, "TRN")),
        nn.Flatten(),
        hn.QLinear(8 * 8, 4, input_quantizer=fixed(9), weight_quantizer=fixed(6), bias_quantizer=fixed(8)),
    )
    model(torch.randn(32, 2, 64))
    heterogeneous_channels(model[0], seed=4)
    g = torch.Generator().manual_seed(12)
    return model, torch.cat([torch.randn(48, 2, 64, generator=g), torch.randn(16, 2, 64, generator=g) * 4])


def _conv2d_depthwise() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(5)
    model = nn.Sequential(
        hn.QConv2d(1, 4, 3, padding=1, input_quantizer=fixed(8), weight_quantizer=fixed(6), bias_quantizer=fixed(8)),
        hn.QActivation("relu"),
        hn.QConv2d(4, 4, 3, stride=2, padding=1, groups=4, input_quantizer=fixed(6, "TRN", signed=False),
                   weight_quantizer=fixed(5, granularity="channel"), bias_quantizer=fixed(7)),
        hn.QMaxPool2d(2), nn.Flatten(),
        hn.QLinear(4 * 2 * 2, 3, input_quantizer=fixed(8, "RND_INF"), weight_quantizer=fixed(6), bias=False),
    )
    model(torch.rand(16, 1, 8, 8))
    g = torch.Generator().manual_seed(13)
    return model, torch.cat([torch.rand(32, 1, 8, 8, generator=g), torch.rand(8, 1, 8, 8, generator=g) * 4])


def _per_channel_staged() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(8)
    model = nn.Sequential(hn.QConv1d(2, 4, 3, padding=1, input_quantizer=fixed(6, "RND_MIN_INF", granularity="channel"),
                                     weight_quantizer=fixed(5), bias_quantizer=fixed(8),
                                     output_quantizer=fixed(8, "RND_MIN_INF", granularity="channel")))
    g = torch.Generator().manual_seed(14)
    x = torch.randn(48, 2, 16, generator=g) * torch.tensor([0.1, 3.0]).view(1, 2, 1)
    model(x)
    return model, torch.cat([x, x * 3])


def _zero_bias_identity() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(2)
    model = nn.Sequential(hn.QLinear(6, 5, input_quantizer=fixed(6, "TRN_ZERO", "SAT_SYM"), weight_quantizer=fixed(4),
                                     bias_quantizer=fixed(1, signed=True, i=0, f=0)),
                          hn.QActivation("identity", output_quantizer=fixed(7, "RND_ZERO")),
                          nn.ReLU(),
                          hn.QLinear(5, 3, input_quantizer=fixed(6, signed=False), weight_quantizer=fixed(4),
                                     bias_quantizer=fixed(6)))
    with torch.no_grad():
        model[0].bias.zero_()
    g = torch.Generator().manual_seed(15)
    x = torch.randn(64, 6, generator=g)
    model(x)
    return model, x


def _float_bias() -> tuple[nn.Module, torch.Tensor]:
    """A float (unquantized) bias: the export graph refuses it, QONNX carries it as a float32 constant."""
    torch.manual_seed(9)
    model = nn.Sequential(hn.QConv1d(2, 3, 3, padding=1, input_quantizer=fixed(6, "RND"), weight_quantizer=fixed(5),
                                     bias_quantizer=None, output_quantizer=fixed(10)),
                          hn.QActivation("relu"), nn.Flatten(),
                          hn.QLinear(3 * 8, 2, input_quantizer=fixed(8, signed=False), weight_quantizer=fixed(5),
                                     bias_quantizer=fixed(8)))
    g = torch.Generator().manual_seed(16)
    x = torch.randn(64, 2, 8, generator=g) * 2
    model(x)
    return model, x


CHAIN_MODELS: dict[str, Callable[[], tuple[nn.Module, torch.Tensor]]] = {
    "dense_rnd_satsym": _dense("RND", "SAT_SYM"),
    "dense_rndinf_sat": _dense("RND_INF", "SAT"),
    "dense_rndconv_satsym": _dense("RND_CONV", "SAT_SYM"),
    "conv_pool_flatten": _conv_pool_flatten,
    "conv2d_depthwise": _conv2d_depthwise,
    "per_channel_staged": _per_channel_staged,
    "zero_bias_identity": _zero_bias_identity,
    "float_bias": _float_bias,
}
"""Chain models (name → builder of (model, inputs)) whose exports must not change with the graph exporter."""

CHAIN_OPS: dict[str, list[str]] = {
    "dense_rnd_satsym": ["Quant", "Add", "Quant", "Quant", "Quant", "MatMul", "Add", "Relu", "Quant", "Add", "Quant",
                         "Quant", "Quant", "MatMul", "Add", "Quant", "Add", "Quant"],
    "dense_rndinf_sat": ["Quant", "Quant", "Quant", "Quant", "MatMul", "Add", "Relu", "Quant", "Quant", "Quant",
                         "Quant", "MatMul", "Add", "Quant", "Quant"],
    "dense_rndconv_satsym": ["Quant", "Quant", "Quant", "MatMul", "Add", "Relu", "Quant", "Quant", "Quant", "MatMul",
                             "Add", "Quant"],
    "conv_pool_flatten": ["Quant", "Add", "Quant", "Quant", "Quant", "Conv", "Relu", "MaxPool", "Quant", "Quant",
                          "Conv", "AveragePool", "Quant", "Flatten", "Quant", "Quant", "Quant", "MatMul", "Add"],
    "conv2d_depthwise": ["Quant", "Quant", "Quant", "Conv", "Relu", "Quant", "Quant", "Quant", "Conv", "MaxPool",
                         "Flatten", "Quant", "Quant", "Quant", "MatMul"],
    "per_channel_staged": ["Quant", "Add", "Quant", "Quant", "Quant", "Conv", "Quant", "Add", "Quant"],
    "zero_bias_identity": ["Quant", "Quant", "MatMul", "Add", "Quant", "Relu", "Quant", "Quant", "Quant", "MatMul",
                           "Add"],
    "float_bias": ["Quant", "Add", "Quant", "Quant", "Conv", "Quant", "Relu", "Flatten", "Quant", "Quant", "Quant",
                   "MatMul", "Add"],
}
"""The op types of each chain model's export, in order, as the exporter wrote them before it read the graph."""


def source(proto) -> str:
    return {p.key: p.value for p in proto.metadata_props}[SOURCE_KEY]


def mismatches(got: np.ndarray, want: np.ndarray) -> int:
    got = np.asarray(got, dtype=np.float64).reshape(want.shape)
    return int(np.count_nonzero(np.any((got != want).reshape(len(want), -1), axis=1)))


# ------------------------------------------------------------------------------------------------ DAGs
@pytest.mark.parametrize("name", list(GRAPH_MODELS))
def test_dag_model_is_bit_exact_against_torch_and_the_reference(name: str) -> None:
    model, shape = GRAPH_MODELS[name]()
    x = inputs(shape)
    proto = export_qonnx(model, shape)
    assert source(proto) == "export graph"
    got = execute_qonnx(proto, x.numpy())
    graph = extract(model, shape)
    with torch.no_grad():
        want = model(x).double().numpy()
    assert mismatches(got, run_reference(graph, x)) == 0
    assert mismatches(got, want) == 0
    assert verify_qonnx(model, x)["mismatches"] == 0


@pytest.mark.parametrize("name", list(GRAPH_MODELS))
def test_dag_wiring_follows_the_graph(name: str) -> None:
    """Each graph node's last ONNX node writes the graph's tensor name; joins read exactly the graph's operands."""
    model, shape = GRAPH_MODELS[name]()
    graph = extract(model, shape)
    proto = export_qonnx(model, shape)
    writer = {n.output[0]: n for n in proto.graph.node}
    assert proto.graph.output[0].name == graph.output
    kinds = {Add: "Add", Concat: "Concat", GlobalPool: "Flatten"}
    for node in graph.nodes:
        assert node.output in writer, node.output
        onnx_node = writer[node.output]
        if type(node) in kinds:
            assert onnx_node.op_type == kinds[type(node)]
        if isinstance(node, Add | Concat):
            assert list(onnx_node.input) == list(node.inputs)
        if isinstance(node, Concat):
            assert onnx.helper.get_attribute_value(onnx_node.attribute[0]) == node.axis + 1
        if isinstance(node, GlobalPool):
            pool = writer[onnx_node.input[0]]
            assert pool.op_type == "GlobalAveragePool" and list(pool.input) == list(node.inputs)
    ops = [n.op_type for n in proto.graph.node]
    expected = {"residual1d": {"GlobalAveragePool": 1}, "residual2d": {"GlobalAveragePool": 0},
                "concat_mlp": {"Concat": 1}, "concat_cnn": {"Concat": 1}}[name]
    for op, count in expected.items():
        assert ops.count(op) == count
    residual_adds = [n for n in graph.nodes if isinstance(n, Add)]
    assert len(residual_adds) == (2 if name.startswith("residual") else 0)


def test_table_activation_in_a_residual_block_names_the_layer() -> None:
    model, shape = GRAPH_MODELS["residual1d"]()
    model.block1.act2 = hn.QActivation("tanh", input_quantizer=fixed(8, "RND", i=3), output_quantizer=fixed(8, i=1))
    with pytest.raises(ExportError, match=r"block1\.act2: tanh \(table\) has no exact QONNX form"):
        export_qonnx(model, shape)


def test_staged_rounding_limits_hold_inside_a_dag() -> None:
    """The Quant restrictions name the layer and slot wherever the quantizer sits in the graph."""
    model, shape = GRAPH_MODELS["concat_mlp"]()
    model.b[0] = hn.QLinear(8, 3, input_quantizer=fixed(23, "RND"), weight_quantizer=fixed(6), bias_quantizer=fixed(8))
    with pytest.raises(ExportError, match=r"b\.0\.input_quantizer: 23-bit activation with rounding mode RND"):
        export_qonnx(model, shape)
    model, shape = GRAPH_MODELS["concat_cnn"]()
    model.head = hn.QLinear(5 * 8, 3, input_quantizer=fixed(8, overflow_mode="WRAP"), weight_quantizer=fixed(6),
                            bias_quantizer=fixed(8))
    with pytest.raises(ExportError, match=r"head\.input_quantizer: overflow mode WRAP"):
        export_qonnx(model, shape)


class _WideResidual(nn.Module):
    """A residual sum of two unquantized 16-bit × 14-bit accumulators: more than float32's 24 bits."""

    def __init__(self) -> None:
        super().__init__()
        self.q = hn.QActivation("identity", input_quantizer=fixed(16, "RND", i=3))
        self.a = hn.QConv1d(2, 2, 3, padding=1, input_quantizer=None, weight_quantizer=fixed(14), bias=False)
        self.head = hn.QLinear(2 * 8, 2, input_quantizer=fixed(8, i=5), weight_quantizer=fixed(6),
                               bias_quantizer=fixed(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.q(x)
        return self.head(torch.flatten(self.a(h) + h, 1))


class _WideMean(nn.Module):
    """A global average over 64 positions of 22-bit values: the sum needs 28 bits."""

    def __init__(self) -> None:
        super().__init__()
        self.a = hn.QActivation("identity", input_quantizer=fixed(22, i=10))
        self.head = hn.QLinear(2, 2, input_quantizer=fixed(8, i=5), weight_quantizer=fixed(6), bias_quantizer=fixed(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.a(x).mean(-1))


@pytest.mark.parametrize(("cls", "message"), [
    (_WideResidual, r"add: the operand a/conv needs up to \d+ significant bits, more than the 24"),
    (_WideMean, r"mean: the sum over the pooled positions needs up to \d+ significant bits"),
])
def test_sums_that_outgrow_float32_are_refused(cls, message: str) -> None:
    torch.manual_seed(1)
    model = cls().eval()
    shape = (2, 8) if cls is _WideResidual else (2, 64)
    with pytest.raises(ExportError, match=message):
        export_qonnx(model, shape)
    # rightly: on data over the formats' ranges the exact values do not fit float32
    assert float32_exact(extract(model, shape), torch.randn(64, *shape) * 512)


def test_scaled_int_dag_goes_through_the_dag_walker_and_float_tensors_in_a_fixed_one_are_refused() -> None:
    """Scaled integers in a DAG: the DAG walker (torch.fx) writes it, bit-exact. A fixed-point DAG that the export
    graph refuses (a float bias) keeps the graph's reason: the walkers read chains and non-fixed-point graphs only."""
    from hwnas.quant import calibrate

    model, shape = GRAPH_MODELS["concat_mlp"]()
    hn.set_quantizers(model, input=dict(kind="scaled", bits=8), layers=(hn.QLinear,))
    calibrate(model, inputs(shape))
    x = inputs(shape, n=16)
    proto = export_qonnx(model, shape)
    assert source(proto) == "DAG walker: ScaledIntQuantizer (not fixed point)"
    assert [n.op_type for n in proto.graph.node].count("Concat") == 1
    assert verify_qonnx(model, x)["mismatches"] == 0
    model, shape = GRAPH_MODELS["concat_mlp"]()
    model.a = hn.QLinear(8, 4, input_quantizer=fixed(8), weight_quantizer=fixed(6), bias_quantizer=None)
    with pytest.raises(ExportError, match=r"a\.bias_quantizer: the bias is not quantized"):
        export_qonnx(model, shape)


# ---------------------------------------------------------------------------------------------- chains
@pytest.mark.parametrize("name", list(CHAIN_MODELS))
def test_chain_export_is_unchanged(name: str) -> None:
    model, x = CHAIN_MODELS[name]()
    proto = export_qonnx(model, tuple(x.shape[1:]))
    assert [n.op_type for n in proto.graph.node] == CHAIN_OPS[name]
    assert source(proto) == ("export graph" if name != "float_bias" else
                             "chain walker: not in the export graph (0.bias_quantizer: the bias is not quantized "
                             "(float32); fixed-point export needs a fixed-point bias quantizer (or bias=False))")
    with torch.no_grad():
        want = model(x).double().numpy()
    assert mismatches(execute_qonnx(proto, x.numpy()), want) == 0


ROUND_MODES = ["RND_CONV", "TRN", "TRN_ZERO", "RND_INF", "RND_ZERO", "RND", "RND_MIN_INF"]


@pytest.mark.parametrize("round_mode", ROUND_MODES)
def test_ties_and_the_float32_trap_through_the_graph(round_mode: str) -> None:
    """Half-LSB ties and 0.49999997 LSB on a chain that the export graph reads (quantized bias)."""
    torch.manual_seed(2)
    model = nn.Sequential(hn.QLinear(8, 3, input_quantizer=fixed(6, round_mode), weight_quantizer=fixed(6),
                                     bias_quantizer=fixed(8), output_quantizer=fixed(12, round_mode)))
    model(torch.randn(64, 8))
    lsb = float(torch.exp2(-model[0].input_quantizer.kif()[2]).max())
    hair = float(np.float32(0.49999997))
    codes = torch.arange(-12, 12, dtype=torch.float32)
    offsets = torch.tensor([-0.5, -hair, 0.0, hair, 0.5, 0.75])
    grid = ((codes[:, None] + offsets[None, :]) * lsb).reshape(-1)
    x = grid[torch.randint(len(grid), (256, 8), generator=torch.Generator().manual_seed(3))]
    proto = export_qonnx(model, (8,))
    assert source(proto) == "export graph"
    with torch.no_grad():
        want = model(x).double().numpy()
    assert mismatches(execute_qonnx(proto, x.numpy()), want) == 0


@pytest.mark.parametrize("name", list(GRAPH_MODELS))
def test_static_bounds_hold_every_value(name: str) -> None:
    """The float32 check's bounds (per element: range and grid) contain what the reference computes."""
    from hwnas.export.qonnx import _value_bounds

    model, shape = GRAPH_MODELS[name]()
    graph = extract(model, shape)
    bounds = _value_bounds(graph)
    x = torch.cat([inputs(shape), inputs(shape, seed=1) * 8])
    for node, h in run_reference(graph, x, trace=True):
        b = bounds[node.output]
        assert np.all(h >= b.lo) and np.all(h <= b.hi), node.output
        scaled = h * np.exp2(b.f)
        assert np.array_equal(scaled, np.round(scaled)), node.output


# ------------------------------------------------------------------------- scaled-int and float16 DAGs (DAG walker)
RX_SHAPE = (5, 4, 4)
"""Receiver inputs on a 4×4 grid (the small preset's 5 planes): DeepRx is fully convolutional, a small grid is fast."""


def _ptq_receiver(variant: str) -> tuple[nn.Module, torch.Tensor]:
    """A tiny DeepRx receiver quantized as the study quantizes it, plus int8 outputs (``output_bits``: integer LLRs,
    so that float32 summation order, onnxruntime's or torch's, is hidden by the last quantizer)."""
    from hwnas.tasks.ofdm import LinkConfig, deeprx
    from hwnas.tasks.ofdm.study import PTQ_VARIANTS
    from hwnas.train import post_training_quantize

    model = deeprx(LinkConfig.from_options("small"), channels=4, blocks=2, seed=0).eval()
    g = torch.Generator().manual_seed(0)
    calib = torch.randn(32, *RX_SHAPE, generator=g)
    res = post_training_quantize(model, lambda m: 0.0, calib, calibration_size=len(calib), output_bits=8,
                                 **PTQ_VARIANTS[variant])
    return res.model.eval(), torch.randn(8, *RX_SHAPE, generator=g) * 1.5


@pytest.mark.parametrize("variant", ["fp16", "int8-tensor", "int8-channel", "int4-tensor", "int4-channel"])
def test_ptq_receiver_exports_through_the_dag_walker(variant: str) -> None:
    """Each quantizer is one Quant (FloatQuant for fp16) node; the residual adds read the block's conv and skip."""
    from hwnas.quant.base import Quantizer

    model, x = _ptq_receiver(variant)
    proto = export_qonnx(model, RX_SHAPE)
    kinds = "Float16Quantizer, ScaledIntQuantizer" if variant == "fp16" else "ScaledIntQuantizer"
    assert source(proto) == f"DAG walker: {kinds} (not fixed point)"
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Conv") == 6 and ops.count("Add") == 2
    quantizers = [m for m in model.modules() if isinstance(m, Quantizer)]
    assert ops.count("Quant") + ops.count("FloatQuant") == len(quantizers)
    assert ops.count("FloatQuant") == (6 if variant == "fp16" else 0)
    assert [list(n.input) for n in proto.graph.node if n.op_type == "Add"] == [
        ["blocks.0.conv2/out", "stem/out"], ["blocks.1.conv2/out", "blocks.0.act2/out"]]
    result = verify_qonnx(model, x)
    assert result["mismatches"] == 0 and result["max_abs_diff"] == 0.0, result


def test_ptq_receiver_with_int8_activations_verifies_on_qonnx_only() -> None:
    """``verify_model``: QONNX runs bit-exact; every fixed-point path says why it cannot express the model."""
    from hwnas.export.verify import verify_model

    model, x = _ptq_receiver("int8-channel-act8")
    report = verify_model(model, x)
    by = {r.path: r for r in report.results}
    assert [r.path for r in report.ran] == ["qonnx"] and report.passed
    assert by["qonnx"].mismatches == 0 and by["qonnx"].max_abs_diff == 0.0
    for path, r in by.items():
        if path != "qonnx":
            assert r.skipped is not None and "stem.input_quantizer: ScaledIntQuantizer cannot be exported exactly" \
                in r.skipped, (path, r.skipped)


def _requantize(model: nn.Module, how: str, x: torch.Tensor) -> nn.Module:
    from hwnas.quant import calibrate

    layers = (hn.QConv1d, hn.QConv2d, hn.QLinear, hn.QActivation)
    if how == "scaled":  # int8 activations around every add, int4 per-channel weights, float biases
        hn.set_quantizers(model, input=dict(kind="scaled", bits=8), weight=dict(kind="scaled", bits=4,
                          granularity="channel"), bias=None, output=None, layers=layers)
    elif how == "fp16":  # float16 weights, biases and activations
        hn.set_quantizers(model, input=dict(kind="fp16"), weight=dict(kind="fp16"), bias=dict(kind="fp16"),
                          output=None, layers=layers)
    else:  # weights only: float activations around the adds
        hn.set_quantizers(model, input=None, weight=dict(kind="scaled", bits=8), bias=None, output=None,
                          layers=layers)
    head = model.head
    hn.set_quantizers(head, output=dict(kind="scaled", bits=8))
    calibrate(model, x)
    return model


@pytest.mark.parametrize(("name", "how"), [("residual1d", "scaled"), ("residual2d", "fp16"),
                                           ("residual1d", "weights")])
def test_residual_blocks_with_scaled_and_float16_quantizers(name: str, how: str) -> None:
    """Identity and 1×1-conv skips, 1-D and 2-D, quantized and float activations around the add, mean, relu."""
    model, shape = GRAPH_MODELS[name]()
    x = inputs(shape, n=16)
    model = _requantize(model, how, x)
    proto = export_qonnx(model, shape)
    assert source(proto).startswith("DAG walker: ")
    ops = [n.op_type for n in proto.graph.node]
    assert sum(n.output[0].endswith("/add") for n in proto.graph.node) == 2  # the residual adds
    assert ops.count("Conv") == sum(isinstance(m, hn.QConv1d | hn.QConv2d) for m in model.modules())
    assert ops.count("GlobalAveragePool") == (1 if name == "residual1d" else 0)
    assert ops.count("FloatQuant") > 0 if how == "fp16" else "FloatQuant" not in ops
    result = verify_qonnx(model, x)
    assert result["mismatches"] == 0 and result["max_abs_diff"] == 0.0, result


class _Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        fp16 = {f"{slot}_quantizer": dict(kind="fp16") for slot in ("input", "weight", "bias")}
        self.a = hn.QLinear(4, 4, **fp16)
        self.head = hn.QLinear(4, 2, **fp16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.sigmoid(self.a(x)))


def test_what_the_dag_walker_cannot_express_names_the_layer() -> None:
    from hwnas.quant import calibrate

    with pytest.raises(ExportError, match=r"^sigmoid: \S*sigmoid is not supported by the QONNX exporter \(supported"):
        export_qonnx(_Gated(), (4,))
    model, shape = GRAPH_MODELS["residual2d"]()
    model = _requantize(model, "scaled", inputs(shape, n=8))
    hn.set_quantizers(model.blocks[1].conv2, input=dict(kind="scaled", bits=8, symmetric=False))
    calibrate(model, inputs(shape, n=8))
    with pytest.raises(ExportError, match=r"^blocks\.1\.conv2\.input_quantizer: asymmetric activation quantization"):
        export_qonnx(model, shape)


def test_float16_quantizer_rounds_as_torch_casts() -> None:
    """FloatQuant (5 exponent, 10 mantissa bits) as ``x.half().float()``: every float16 of four binades (subnormals
    included), the ties between neighbours and one float32 ULP either side of them, overflow to ±inf."""
    model = nn.Sequential(hn.QActivation("identity", input_quantizer=dict(kind="fp16")))
    codes = np.concatenate([np.arange(0, 0x800), np.arange(0x3C00, 0x4000), np.arange(0x7800, 0x7C00)])
    h = codes.astype(np.uint16).view(np.float16).astype(np.float64)
    mid = np.float32((h[:-1] + h[1:]) / 2)
    vals = [np.float32(h), mid, np.nextafter(mid, np.float32(np.inf)), np.nextafter(mid, np.float32(-np.inf)),
            np.float32([65519.99, 65520.0, 1e6, 1e-40, 2.0 ** -25])]
    x = np.concatenate([v for part in vals for v in (part, -part)])
    x = np.concatenate([x, np.zeros(-len(x) % 64, np.float32)]).reshape(-1, 64)
    proto = export_qonnx(model, (64,))
    assert source(proto) == "chain walker: Float16Quantizer (not fixed point)"
    want = torch.from_numpy(x).half().float().numpy()
    assert np.isinf(want).any() and np.array_equal(execute_qonnx(proto, x), want)
