"""CPU latency that depends on the bits: int8 operator kinds, ``precision="deployed"`` and the int8 measurement."""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

pytest.importorskip("onnx", reason="onnx is not installed; the CPU latency table needs onnx and onnxruntime")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed; the CPU latency table needs it")

import onnx

import hwnas.nn as hn
from hwnas.cost.cpu_latency import (
    INT8_KINDS,
    LatencyTable,
    MissingKindError,
    Operator,
    export_deployed_onnx,
    export_onnx,
    int8_layers,
    int8_nhwc,
    measure_latency,
    measure_nodes,
    predict_latency,
    profile_operators,
    quick_grid,
    session_options,
)


def q(bits: int, *, inp: bool = True, out: int | None = None) -> dict:
    """Fixed-point quantizers of ``bits`` for a layer's weights (per channel) and, with ``inp``, its input."""
    spec: dict = {"weight_quantizer": {"bits": bits, "learnable": False, "granularity": "channel"},
                  "bias_quantizer": None,
                  "input_quantizer": {"bits": bits, "learnable": False, "signed": True} if inp else None}
    if out is not None:
        spec["output_quantizer"] = {"bits": out, "learnable": False, "signed": True}
    return spec


def cnn(bits: int, middle: int | None = None, first: int | None = None) -> nn.Module:
    """A 1-D CNN on 2×128 (shapes on the quick grid); ``middle``, ``first``: other widths of the convolutions."""
    torch.manual_seed(0)
    return nn.Sequential(
        hn.QConv1d(2, 16, 3, padding=1, **q(first or bits)), hn.QActivation("relu"), hn.QMaxPool1d(2),
        hn.QConv1d(16, 32, 3, padding=1, **q(middle or bits)), hn.QActivation("relu"), hn.QMaxPool1d(2),
        hn.Flatten(), hn.QLinear(32 * 32, 64, **q(bits)), hn.QActivation("relu"), hn.QLinear(64, 16, **q(bits)),
    ).eval()


class Residual(nn.Module):
    """stem → conv → ReLU → conv, + the stem (an add between int8 layers), ReLU, conv, flatten, linear."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.stem = hn.QConv1d(2, 16, 3, padding=1, **q(bits))
        self.conv1 = hn.QConv1d(16, 16, 3, padding=1, **q(bits))
        self.act1 = hn.QActivation("relu")
        self.conv2 = hn.QConv1d(16, 16, 3, padding=1, **q(bits))
        self.act2 = hn.QActivation("relu")
        self.conv3 = hn.QConv1d(16, 8, 3, padding=1, **q(bits))
        self.head = hn.QLinear(8 * 128, 16, **q(bits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.act2(self.conv2(self.act1(self.conv1(x))) + x)
        return self.head(torch.flatten(self.conv3(y), 1))


@pytest.fixture(scope="module")
def table() -> LatencyTable:
    return profile_operators(quick_grid(), repeats=10, passes=1)


# ------------------------------------------------------------------------------------------ the int8 kinds
def test_int8_kinds_profile_and_round_trip(table, tmp_path):
    nhwc = int8_nhwc()
    assert table.session["int8_nhwc"] is nhwc and table.int8_nhwc is nhwc
    wanted = {k for k in INT8_KINDS if nhwc or not k.startswith("qtranspose")}
    assert wanted <= table.kinds()
    int8 = {k: v for k, v in table.entries.items() if k.partition("(")[0] in INT8_KINDS}
    assert all(v > 0 and math.isfinite(v) for v in int8.values())
    # the same grid points as the float kinds: every quick-grid convolution has its int8 twin
    convs = [op for op in quick_grid().operators(table.nchwc_block, nhwc) if op.kind in ("conv1d", "conv2d", "linear")]
    assert convs and all(Operator("q" + op.kind, op.params).key in table.entries for op in convs)
    assert not any(op.kind in INT8_KINDS for op in replace(quick_grid(), int8=False).operators())
    loaded = LatencyTable.load(table.save(tmp_path / "int8.json"))
    assert {k: v for k, v in loaded.entries.items() if k in int8} == int8
    assert loaded.int8_nhwc is nhwc
    key = next(iter(int8))
    assert loaded.predict_operator(key) == int8[key]


def test_int8_single_operators_are_what_onnxruntime_runs():
    """A quantized convolution is optimized into the very node a profiled ``qconv1d`` entry times (no transposes)."""
    import onnxruntime as ort

    from hwnas.cost.cpu_latency import _int8_onnx_model, _session

    op = Operator.make("qconv1d", cin=8, cout=16, length=32, kernel=3, stride=1, padding=1)
    model, feed = _int8_onnx_model(op, 1, nhwc=int8_nhwc())
    with tempfile.TemporaryDirectory() as tmp:
        so = session_options()
        so.optimized_model_filepath = str(Path(tmp) / "o.onnx")
        ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        nodes = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    assert nodes == ["QLinearConv"]
    for kind, params in (("qlinear", dict(rows=1, fin=64, fout=16)), ("quantize", dict(elements=64)),
                         ("dequantize", dict(elements=64)), ("qadd", dict(elements=64)),
                         ("qconcat", dict(parts=3, elements=64))):
        model, feed = _int8_onnx_model(Operator.make(kind, **params), 1)
        (y,) = _session(model, 1).run(None, feed)
        assert y.size == (params.get("fout") or params["elements"])


# ------------------------------------------------------------------------------------- deployed prediction
def test_widths_decide_which_layers_run_int8():
    assert set(int8_layers(cnn(8), (2, 128)).values()) == {True}
    assert set(int8_layers(cnn(4), (2, 128)).values()) == {True}  # narrower widths run as int8 too
    assert set(int8_layers(cnn(16), (2, 128)).values()) == {False}
    assert int8_layers(cnn(8, middle=9), (2, 128)) == {"0": True, "3": False, "7": True, "9": True}
    # a layer without its own input quantizer reads its producer's output width along the data flow
    chain = nn.Sequential(hn.QLinear(16, 8, **q(8, out=8)), hn.QLinear(8, 8, **q(8, inp=False)),
                          hn.QLinear(8, 4, **q(8, inp=False))).eval()
    assert int8_layers(chain, (16,)) == {"0": True, "1": True, "2": False}  # "1" has no output quantizer
    wide = nn.Sequential(hn.QLinear(16, 8, **q(8, out=12)), hn.QLinear(8, 4, **q(8, inp=False))).eval()
    assert int8_layers(wide, (16,)) == {"0": True, "1": False}
    float_weights = nn.Sequential(hn.QLinear(16, 8, input_quantizer={"bits": 8, "learnable": False},
                                             weight_quantizer=None, bias_quantizer=None)).eval()
    assert int8_layers(float_weights, (16,)) == {"0": False}


def test_bits_change_the_deployed_prediction_only(table):
    shape = (2, 128)
    p8, p16, p4 = (predict_latency(cnn(b), shape, table) for b in (8, 16, 4))
    assert p8.total_us == p16.total_us == p4.total_us  # the float graph ignores the bits
    d8, d16, d4 = (predict_latency(cnn(b), shape, table, precision="deployed") for b in (8, 16, 4))
    assert d16.total_us == p16.total_us and [r.kind for r in d16.rows] == [r.kind for r in p16.rows]
    assert d8.total_us != p8.total_us
    kinds = [r.kind for r in d8.rows]
    assert kinds.count("qconv1d") == 2 and kinds.count("qlinear") == 2 and kinds.count("qmaxpool1d") == 2
    assert kinds[0] == "quantize" and kinds[-1] == "dequantize"  # float model input, float model output
    assert "conv1d" not in kinds and "linear" not in kinds
    assert d4.total_us == d8.total_us  # 4-bit layers run on the same int8 kernels: no extra speed-up
    assert d8.total_us == pytest.approx(d8.overhead_us + sum(r.us for r in d8.rows))
    with pytest.raises(ValueError, match="precision"):
        predict_latency(cnn(8), shape, table, precision="int4")


def test_a_float_layer_between_int8_layers_pays_the_conversions(table):
    shape = (2, 128)
    mixed = predict_latency(cnn(8, middle=16), shape, table, precision="deployed")
    kinds = [r.kind for r in mixed.rows]
    assert kinds.count("quantize") == 2 and kinds.count("dequantize") == 2  # in, out, and around the float layer
    at = kinds.index("conv1d")  # the 16-bit layer runs float: its input is dequantized right before it
    assert "dequantize" in kinds[at - 2:at] and kinds[:at].count("qconv1d") == 1
    quant = next(r for r in mixed.rows if r.kind == "quantize" and r.name != "input:quantize")
    assert quant.name == "6:quantize" and quant.shape == (32 * 32,)  # the flattened float data, before the linear
    op = Operator.make("quantize", elements=32 * 32)
    assert quant.us == pytest.approx(max(0.0, table.predict_operator(op) - table.overhead_us) + table.node_us)

# predicted row kind -> the node onnxruntime runs for it in the deployed model
NODES = {"quantize": "QuantizeLinear", "dequantize": "DequantizeLinear", "qtranspose_in": "Transpose",
         "qtranspose_out": "Transpose", "qconv1d": "QLinearConv", "qlinear": "QGemm", "qmaxpool1d": "NhwcMaxPool",
         "qmaxpool1d_nchw": "MaxPool", "maxpool1d": "MaxPool", "qadd": "QLinearAdd", "add": "Add",
         "flatten": "Flatten", "conv1d": "Conv", "linear": "Gemm", "relu": "Relu"}


def mlp_8_16_8() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(hn.QLinear(16, 64, **q(8)), hn.QActivation("relu"), hn.QLinear(64, 64, **q(16)),
                         hn.QActivation("relu"), hn.QLinear(64, 16, **q(8))).eval()


@pytest.mark.parametrize("name", ["float middle", "float first", "residual", "mlp 8/16/8"])
def test_the_predicted_nodes_are_the_ones_onnxruntime_runs(table, name):
    """Every int8, conversion, transpose, pool and join node predicted is one of the deployed model's nodes.

    "float first": a float convolution, then a max pool read by an int8 layer: onnxruntime moves the
    QuantizeLinear above the pool, which then runs on uint8 in NCHW (a slow kernel). "mlp 8/16/8": the 16-bit
    layer between int8 ones stays float (onnxruntime would quantize its weights unless told not to).
    """
    model, shape = {"float middle": (cnn(8, middle=16), (2, 128)), "float first": (cnn(8, first=16), (2, 128)),
                    "residual": (Residual(8).eval(), (2, 128)), "mlp 8/16/8": (mlp_8_16_8(), (16,))}[name]
    names = dict(NODES)
    if not table.int8_nhwc:
        names.update(qmaxpool1d="MaxPool", qtranspose_in="-", qtranspose_out="-")
    rows = predict_latency(model, shape, table, precision="deployed").rows
    pred = Counter(names[r.kind.removesuffix("+fused")] for r in rows
                   if r.kind.removesuffix("+fused") in names and not r.kind.endswith("+fused"))
    real = Counter({"FusedConv": "Conv", "FusedGemm": "Gemm"}.get(n.op_type, n.op_type)
                   for n in measure_nodes(model, shape, runs=3, precision="deployed"))
    real = Counter({k: v for k, v in real.items() if k in set(names.values())})
    assert pred == real, (name, pred, real)
    kinds = {r.kind for r in rows}
    if name == "residual":
        assert "qadd" in kinds
    if name == "float first" and table.int8_nhwc:
        assert "qmaxpool1d_nchw" in kinds
    if name == "mlp 8/16/8":
        assert [r.kind for r in rows if "linear" in r.kind] == ["qlinear", "linear", "qlinear"]


def test_an_old_table_predicts_float_as_before_and_refuses_deployed(table, tmp_path):
    old_entries = {k: v for k, v in table.entries.items() if k.partition("(")[0] not in INT8_KINDS}
    session = {k: v for k, v in table.session.items() if k != "int8_nhwc"}
    stripped = replace(table, entries=old_entries, session=session)
    old = LatencyTable.load(stripped.save(tmp_path / "old.json"))
    assert not set(INT8_KINDS) & old.kinds()
    for model in (cnn(8), cnn(16), Residual(8).eval()):
        assert predict_latency(model, (2, 128), stripped).total_us == predict_latency(model, (2, 128), table).total_us
        assert predict_latency(model, (2, 128), old).total_us == pytest.approx(
            predict_latency(model, (2, 128), table).total_us, rel=1e-12)
    with pytest.raises(MissingKindError, match=r"layer '0'.*no qconv1d measurements.*profile-cpu") as info:
        predict_latency(cnn(8), (2, 128), old, precision="deployed")
    assert info.value.kind == "qconv1d"
    with pytest.raises(MissingKindError, match=r"no quantize measurements.*int8") as info:
        predict_latency(cnn(16), (2, 128), old, precision="deployed")  # no int8 layer: still an old table
    assert info.value.kind == "quantize"


def test_cost_metrics_price_the_configured_precision(table):
    from hwnas.config import HardwareConfig
    from hwnas.search.objective import cost_metrics

    assert HardwareConfig().cpu_precision == "float"
    model, shape = cnn(8), (2, 128)
    got = {}
    for precision in ("float", "deployed"):
        ctx = SimpleNamespace(input_shape_of=lambda point: shape, baseline=None, cpu_table=table,
                              experiment=SimpleNamespace(hardware=SimpleNamespace(cpu_precision=precision)))
        got[precision] = cost_metrics(model, ctx, hardware=False)[0]["cpu_latency_ms"]
        assert got[precision] == pytest.approx(predict_latency(model, shape, table, precision=precision).total_ms)
    assert got["float"] != got["deployed"]


def test_the_new_key_keeps_existing_experiment_hashes():
    from hwnas.config import hash_payload, parse_experiment

    from .experiments import tiny_mlp

    exp = parse_experiment(tiny_mlp())
    assert exp.hardware.cpu_precision == "float"
    assert "cpu_precision" not in hash_payload(exp)["hardware"]  # the default: the hash of before the key existed
    deployed = exp.model_copy(update={"hardware": exp.hardware.model_copy(update={"cpu_precision": "deployed"})})
    assert hash_payload(deployed)["hardware"]["cpu_precision"] == "deployed"


# --------------------------------------------------------------------------------------- deployed measuring
def test_measure_latency_deployed_runs_a_real_int8_model():
    model = cnn(8)
    data = export_deployed_onnx(model, (2, 128))
    graph = onnx.load_from_string(data).graph
    types = Counter(n.op_type for n in graph.node)
    assert types["QuantizeLinear"] >= 4 and types["DequantizeLinear"] >= 8  # activations and weights
    weight_scales = [i for i in graph.initializer if i.name.endswith("weight_scale")]
    assert weight_scales and all(len(i.dims) == 1 and i.dims[0] > 1 for i in weight_scales)  # per channel
    nodes = [n.op_type for n in measure_nodes(model, (2, 128), runs=3, precision="deployed")]
    assert nodes.count("QLinearConv") == 2 and nodes.count("QGemm") == 2 and "Conv" not in nodes
    ms = measure_latency(model, (2, 128), repeats=20, warmup=5, precision="deployed")
    assert 0 < ms < 100
    # no int8 layer: the deployed model is the float graph
    plain = {n.op_type for n in onnx.load_from_string(export_deployed_onnx(cnn(16), (2, 128))).graph.node}
    assert plain == {n.op_type for n in onnx.load_from_string(export_onnx(cnn(16), (2, 128))).graph.node}
    with pytest.raises(ValueError, match="precision"):
        measure_latency(model, (2, 128), precision="int8")
