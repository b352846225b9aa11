"""CPU latency model on models beyond a chain: residual adds, concatenations and global average pooling.

Deterministic checks run on a synthetic table (entries from a formula, so every operator costs more than the
session overhead and chain predictions can be pinned); the rest on a quick-grid table profiled here.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnx", reason="onnx is not installed; the CPU latency table needs onnx and onnxruntime")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed; the CPU latency table needs it")

import hwnas.nn as hn
from hwnas.cost.cpu_latency import (
    INPUT,
    LatencyTable,
    MissingKindError,
    Operator,
    UnsupportedLayerError,
    export_onnx,
    measure_latency,
    measure_nodes,
    model_operators,
    predict_latency,
    profile_operators,
    quick_grid,
)

from .graph_models import GRAPH_MODELS

OFF = dict(input_quantizer=None, weight_quantizer=None, bias_quantizer=None)
JOINS = ("add", "concat", "gavgpool")
EXPECTED_JOINS = {"residual1d": {"add": 2, "gavgpool": 1}, "residual2d": {"add": 2},
                  "concat_mlp": {"concat": 1}, "concat_cnn": {"concat": 1}}


@pytest.fixture(scope="module")
def table() -> LatencyTable:
    return profile_operators(quick_grid(), repeats=20, passes=1)


def synthetic_table(block: int) -> LatencyTable:
    """Quick-grid operators priced 1 µs + 1e-4 µs × the product of their parameters (NCHWc ``block``)."""
    entries = {op.key: 1.0 + 1e-4 * math.prod(max(v, 1) for _, v in op.params)
               for op in quick_grid().operators(block)}
    return LatencyTable(entries=entries, machine={}, session={"nchwc_block": block},
                        overhead_us=entries["identity(elements=1)"], node_us=0.2)


def base_kind(kind: str) -> str:
    return kind.removesuffix("+fused")


class Residual(nn.Module):
    """stem → conv → ReLU → conv (+ the stem's output when ``residual``) → ReLU, in 1-D or 2-D."""

    def __init__(self, dims: int, channels: int, residual: bool = True) -> None:
        super().__init__()
        conv = hn.QConv1d if dims == 1 else hn.QConv2d
        self.stem = conv(channels, channels, 3, padding=1, **OFF)
        self.conv1 = conv(channels, channels, 3, padding=1, **OFF)
        self.act1 = hn.QActivation("relu")
        self.conv2 = conv(channels, channels, 3, padding=1, **OFF)
        self.act2 = hn.QActivation("relu")
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        h = self.conv2(self.act1(self.conv1(x)))
        return self.act2(h + x if self.residual else h)


# ------------------------------------------------------------------------------------ the data flow is read
@pytest.mark.parametrize("block", [16, 0])
@pytest.mark.parametrize("name", list(GRAPH_MODELS))
def test_graph_models_price_their_joins(name, block):
    model, shape = GRAPH_MODELS[name]()
    pred = predict_latency(model, shape, synthetic_table(block))
    joins = [r for r in pred.rows if base_kind(r.kind) in JOINS]
    counts = {k: sum(base_kind(r.kind) == k for r in joins) for k in JOINS}
    assert {k: v for k, v in counts.items() if v} == EXPECTED_JOINS[name]
    assert all(r.us > 0 for r in joins), [(r.name, r.kind, r.us) for r in joins]
    # fused into the preceding blocked convolution only where onnxruntime does: 2-D with the NCHWc layout
    assert any(r.kind == "add+fused" for r in joins) == (name == "residual2d" and block > 0)
    assert pred.total_us == pytest.approx(pred.overhead_us + sum(r.us for r in pred.rows))


def test_graph_models_on_a_profiled_table(table):
    # a small operator is 0.1-0.5 µs above the session overhead, within a busy machine's noise: its row may clamp
    # to 0 (as a small ReLU's does), so only the synthetic table above pins the rows' signs
    for name, build in GRAPH_MODELS.items():
        pred = predict_latency(*build(), table)
        joins = [r for r in pred.rows if base_kind(r.kind) in JOINS]
        assert len(joins) == sum(EXPECTED_JOINS[name].values()), name
        assert all(r.operator.kind in JOINS and r.us >= 0 for r in joins), name
        assert pred.total_ms > 0


def test_residual1d_operators_follow_the_data_flow():
    model, shape = GRAPH_MODELS["residual1d"]()
    ops = {o.name: o for o in model_operators(model, shape)}
    assert ops["stem"].inputs == (INPUT,)
    assert ops["add"].inputs == ("block1.conv2", "act") and ops["add"].operator.key == "add(elements=64)"
    assert ops["act"].consumers == 2  # block1.conv1 and the identity skip of the add
    assert ops["add_1"].inputs == ("block2.conv2", "block2.skip")
    assert ops["mean"].operator.key == "gavgpool(channels=6,positions=16)"
    assert ops["head"].inputs == ("mean",) and ops["head"].output and ops["head"].consumers == 1
    assert not ops["block1.act2"].fused and ops["block1.act1"].fused  # after the add: nothing to fuse into


@pytest.mark.parametrize("block", [16, 0])
@pytest.mark.parametrize("dims", [1, 2])
def test_a_residual_add_costs_more_than_the_same_layers_without_it(dims, block):
    shape = (16, 64) if dims == 1 else (16, 8, 8)
    table = synthetic_table(block)
    torch.manual_seed(0)
    with_add = predict_latency(Residual(dims, 16).eval(), shape, table)
    without = predict_latency(Residual(dims, 16, residual=False).eval(), shape, table)
    assert with_add.total_us > without.total_us
    assert [r.kind for r in with_add.rows if base_kind(r.kind) == "add"] == (
        ["add+fused"] if dims == 2 and block else ["add"])


def test_a_residual_add_costs_more_on_a_profiled_table(table):
    torch.manual_seed(0)  # 64 × 64 = 4096 elements: the add and the ReLU after it are well above the noise
    with_add = predict_latency(Residual(1, 64).eval(), (64, 64), table)
    without = predict_latency(Residual(1, 64, residual=False).eval(), (64, 64), table)
    assert with_add.total_us > without.total_us
    # the add and the activation after it (no longer fused into conv2) are the difference
    extra = sum(r.us for r in with_add.rows if r.name in ("add", "act2"))
    assert with_add.total_us - without.total_us == pytest.approx(extra - without.rows[-1].us)


class Interleaved(nn.Module):
    """``relu`` reads conv ``a``'s output although conv ``b`` was called after ``a``."""

    def __init__(self) -> None:
        super().__init__()
        self.a = hn.QConv1d(4, 4, 3, padding=1, **OFF)
        self.b = hn.QConv1d(4, 4, 3, padding=1, **OFF)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.a(x), self.b(x)
        return torch.relu(a) + b


class SharedOutput(nn.Module):
    """The convolution's output is read by the activation and by the add: onnxruntime cannot fuse them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = hn.QConv1d(4, 4, 3, padding=1, **OFF)
        self.act = hn.QActivation("relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return self.act(h) + h


def test_activation_fusion_follows_the_data_flow():
    ops = {o.name: o for o in model_operators(Interleaved(), (4, 8))}
    assert ops["relu"].inputs == ("a",) and ops["relu"].fused  # data flow, not the previous module
    ops = {o.name: o for o in model_operators(SharedOutput(), (4, 8))}
    assert ops["conv"].consumers == 2 and not ops["act"].fused
    mlp = nn.Sequential(hn.QLinear(8, 8, **OFF), nn.Identity(), hn.QActivation("tanh"))
    ops = model_operators(mlp, (8,))
    assert [o.fused for o in ops] == [False, False, True]  # an identity passes its input through
    assert ops[2].inputs == ("0",)


def test_mean_over_trailing_axes_is_global_average_pooling():
    class Mean(nn.Module):
        def __init__(self, dims: object, keepdim: bool = False) -> None:
            super().__init__()
            self.act = hn.QActivation("relu")
            self.dims, self.keepdim = dims, keepdim

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(x).mean(dim=self.dims, keepdim=self.keepdim)

    assert model_operators(Mean((-2, -1)), (8, 4, 6))[1].operator.key == "gavgpool(channels=8,positions=24)"
    assert model_operators(Mean((2, 3), True), (8, 4, 6))[1].operator.key == "gavgpool(channels=8,positions=24)"
    assert model_operators(Mean(-1), (8, 16))[1].operator.key == "gavgpool(channels=8,positions=16)"
    with pytest.raises(UnsupportedLayerError, match=r"mean over axes \[1\]"):
        model_operators(Mean(1), (8, 16))


def test_unsupported_operations_are_named():
    class Sigmoid(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dense = hn.QLinear(4, 4, **OFF)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.dense(x))

    class Branchy(Sigmoid):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.dense(x) if x.sum() > 0 else x

    with pytest.raises(UnsupportedLayerError, match=r"sigmoid.*no CPU latency model \(supported between layers"):
        model_operators(Sigmoid(), (4,))
    with pytest.raises(UnsupportedLayerError, match=r"model Branchy.*torch\.fx"):
        model_operators(Branchy(), (4,))
    with pytest.raises(UnsupportedLayerError, match=r"'1'.*LayerNorm"):
        model_operators(nn.Sequential(hn.QLinear(4, 4, **OFF), nn.LayerNorm(4)), (4,))


# --------------------------------------------------------------------------------- chains are unchanged
# predict_latency of these chains before the data-flow walk (the chain-only module, same synthetic table)
PINNED = {
    ("cnn1d", 16): (21.828100000000003, ["conv1d", "relu+fused", "maxpool1d", "conv1d", "tanh+fused", "avgpool1d",
                                         "flatten", "linear", "relu+fused", "identity", "linear"]),
    ("cnn2d", 16): (17.363200000000003, ["conv2d", "relu+fused", "maxpool2d", "conv2d", "identity", "sigmoid+fused",
                                         "avgpool2d", "flatten", "linear"]),
    ("separable2d", 16): (9.933133333333332, ["conv2d", "relu+fused", "dwconv2d", "relu+fused", "conv2dx2",
                                              "relu+fused", "maxpool2d", "flatten", "linear"]),
    ("mlp", 16): (1.7261000000000004, ["linear", "relu+fused", "identity", "linear", "tanh+fused", "linear"]),
    ("cnn1d", 0): (21.828100000000003, ["conv1d", "relu+fused", "maxpool1d", "conv1d", "tanh+fused", "avgpool1d",
                                        "flatten", "linear", "relu+fused", "identity", "linear"]),
    ("cnn2d", 0): (22.863400000000013, ["conv2d", "relu+fused", "maxpool2d", "conv2d", "identity", "sigmoid+fused",
                                        "avgpool2d", "flatten", "linear"]),
    ("separable2d", 0): (12.081000000000003, ["conv2d", "relu+fused", "dwconv2d", "relu+fused", "conv2dx2",
                                              "relu+fused", "maxpool2d", "flatten", "linear"]),
    ("mlp", 0): (1.7261000000000004, ["linear", "relu+fused", "identity", "linear", "tanh+fused", "linear"]),
}


def chains() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    torch.manual_seed(0)
    return {
        "cnn1d": (nn.Sequential(
            hn.QConv1d(2, 16, 3, padding=1, **OFF), hn.QActivation("relu"), hn.QMaxPool1d(2),
            hn.QConv1d(16, 32, 3, padding=1, **OFF), hn.QActivation("tanh"), hn.QAvgPool1d(2),
            hn.Flatten(), hn.QLinear(32 * 32, 64, **OFF), hn.QActivation("relu"), hn.QActivation("identity"),
            hn.QLinear(64, 11, **OFF)), (2, 128)),
        "cnn2d": (nn.Sequential(
            hn.QConv2d(1, 16, 3, padding=1, **OFF), hn.QActivation("relu"), hn.QMaxPool2d(2),
            hn.QConv2d(16, 16, 3, padding=1, **OFF), nn.BatchNorm2d(16), hn.QActivation("sigmoid"),
            hn.QAvgPool2d(2), hn.Flatten(), hn.QLinear(16 * 4 * 4, 10, **OFF)), (1, 16, 16)),
        "separable2d": (nn.Sequential(
            hn.QConv2d(3, 16, 3, padding=1, **OFF), hn.QActivation("relu"),
            hn.QConv2d(16, 16, 3, padding=1, groups=16, **OFF), hn.QActivation("relu"),
            hn.QConv2d(16, 32, 1, groups=2, **OFF), hn.QActivation("relu"), hn.QMaxPool2d(2), hn.Flatten(),
            hn.QLinear(32 * 4 * 4, 10, **OFF)), (3, 8, 8)),
        "mlp": (nn.Sequential(hn.QLinear(16, 64, **OFF), hn.QActivation("relu"), nn.Dropout(0.1),
                              hn.QLinear(64, 32, **OFF), hn.QActivation("tanh"), hn.QLinear(32, 5, **OFF)), (16,)),
    }


@pytest.mark.parametrize("block", [16, 0])
def test_chain_predictions_are_unchanged(block):
    table = synthetic_table(block)
    for name, (model, shape) in chains().items():
        pred = predict_latency(model.eval(), shape, table)
        total, kinds = PINNED[(name, block)]
        assert pred.total_us == pytest.approx(total, rel=1e-12, abs=0), name
        assert [r.kind for r in pred.rows] == kinds, name


# ------------------------------------------------------------------------- tables without the join kinds
def test_a_table_without_the_join_kinds_still_predicts_chains(table, tmp_path):
    stripped = replace(table, entries={k: v for k, v in table.entries.items() if k.partition("(")[0] not in JOINS})
    old = LatencyTable.load(stripped.save(tmp_path / "old.json"))  # a table written before the join kinds loads
    assert not set(JOINS) & old.kinds()
    for model, shape in chains().values():
        model.eval()
        assert predict_latency(model, shape, stripped).total_us == predict_latency(model, shape, table).total_us
        # (saving sorts the entries: the fits' sums run in another order)
        assert predict_latency(model, shape, old).total_us == pytest.approx(
            predict_latency(model, shape, table).total_us, rel=1e-12)
    for name, kind in (("residual1d", "add"), ("concat_mlp", "concat")):
        with pytest.raises(MissingKindError, match=rf"no {kind} measurements.*profile it again") as info:
            predict_latency(*GRAPH_MODELS[name](), old)
        assert info.value.kind == kind and isinstance(info.value, UnsupportedLayerError)
    with pytest.raises(MissingKindError, match=r"layer 'mean'.*gavgpool"):
        predict_latency(Pooled(), (2, 16), old)


class Pooled(nn.Module):
    """A convolution and a global average pool (``mean`` over the length)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = hn.QConv1d(2, 4, 3, padding=1, **OFF)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=-1)


# ------------------------------------------------------------------------------------ measuring and ORT
def test_single_operator_models_compute_the_join():
    import onnxruntime as ort

    from hwnas.cost.cpu_latency import _onnx_model

    for op, check in (
        (Operator.make("add", elements=10), lambda x, y: y.shape == (1, 10)),
        (Operator.make("concat", parts=3, elements=10), lambda x, y: y.shape == (1, 10) and
         np.array_equal(y[:, :4], x)),
        (Operator.make("gavgpool", channels=4, positions=6), lambda x, y: np.allclose(y, x.mean(axis=-1))),
    ):
        model, feed = _onnx_model(op, 1)
        assert list(feed) == ["x"]  # one input: the others are initializers
        y = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)[0]
        assert check(feed["x"], y), op.key


def test_measure_latency_runs_on_residual_models():
    import onnx

    expected = {"residual1d": {"Add", "ReduceMean"}, "residual2d": {"Add"}, "concat_cnn": {"Concat", "Flatten"}}
    for name, want in expected.items():
        model, shape = GRAPH_MODELS[name]()  # quantized and never run: the float graph is exported
        ops = {n.op_type for n in onnx.load_from_string(export_onnx(model, shape)).graph.node}
        assert want <= ops and not ops & {"Round", "Floor", "Clip"}, (name, ops)
        assert any(m.input_quantizer is not None for m in model.modules() if hasattr(m, "input_quantizer"))
    with warnings.catch_warnings():  # a busy machine only makes the timing noisier
        warnings.simplefilter("ignore", RuntimeWarning)
        ms = measure_latency(GRAPH_MODELS["residual1d"]()[0], (2, 16), repeats=20, warmup=2, max_seconds=1.0)
    assert 0 < ms < 100


def test_nchwc_add_fusion_matches_onnxruntime(table):
    if not table.nchwc_block:
        pytest.skip("onnxruntime does not use the NCHWc layout on this machine")
    torch.manual_seed(0)
    model = Residual(2, 16).eval()
    kinds = [r.kind for r in predict_latency(model, (16, 8, 8), table).rows]
    assert kinds[-2:] == ["add+fused", "relu+fused"]
    ops = [n.op_type for n in measure_nodes(model, (16, 8, 8), runs=5)]
    assert "Add" not in ops and "Relu" not in ops, ops  # the sum and its ReLU run inside the last convolution
