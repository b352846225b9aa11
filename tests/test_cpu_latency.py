"""CPU latency lookup table: profiling, persistence, interpolation, model walk and measurement."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

pytest.importorskip("onnx", reason="onnx is not installed; the CPU latency table needs onnx and onnxruntime")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed; the CPU latency table needs it")

import itertools

import hwnas.nn as hn
from hwnas.cost.cpu_latency import (
    LatencyTable,
    Operator,
    UnsupportedLayerError,
    machine_description,
    measure_latency,
    model_operators,
    predict_latency,
    profile_operators,
    quick_grid,
)

OFF = dict(input_quantizer=None, weight_quantizer=None, bias_quantizer=None)


@pytest.fixture(scope="module")
def table() -> LatencyTable:
    return profile_operators(quick_grid(), repeats=20)


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        hn.QConv1d(2, 16, 3, padding=1, **OFF), hn.QActivation("relu"), hn.QMaxPool1d(2),
        hn.QConv1d(16, 32, 3, padding=1, **OFF), hn.QActivation("tanh"), hn.QAvgPool1d(2),
        hn.Flatten(), hn.QLinear(32 * 32, 64, **OFF), hn.QActivation("relu"), hn.QActivation("identity"),
        hn.QLinear(64, 11, **OFF),
    ).eval()


def test_machine_description_fields():
    desc = machine_description(threads=1)
    for key in ("cpu_model", "logical_cores", "threads", "platform", "torch", "onnxruntime"):
        assert key in desc
    assert desc["threads"] == 1 and desc["logical_cores"] >= 1
    assert desc["torch"] == torch.__version__


def test_quick_grid_profiles_every_operator_kind(table):
    expected = {op.key for op in quick_grid().operators(table.nchwc_block)}
    assert expected <= set(table.entries)
    assert {"conv1d", "conv2d", "dwconv1d", "dwconv2d", "linear", "maxpool1d", "avgpool2d", "relu", "tanh",
            "sigmoid", "identity", "flatten", "add", "concat", "gavgpool"} <= table.kinds()
    assert all(v > 0 and math.isfinite(v) for v in table.entries.values())
    assert table.overhead_us == table.entries[Operator.make("identity", elements=1).key]
    assert table.machine == machine_description(threads=1) | {"threads": 1}


def test_save_load_round_trip(table, tmp_path):
    path = table.save(tmp_path / "sub" / "table.json")
    assert not list(path.parent.glob("*.tmp"))  # atomic write leaves no temporary file
    loaded = LatencyTable.load(path)
    assert loaded.entries == table.entries
    assert loaded.machine == table.machine
    assert loaded.session == table.session
    assert loaded.overhead_us == table.overhead_us and loaded.batch_size == table.batch_size
    assert json.loads(path.read_text())["format"] == "hwnas-cpu-latency/1"


def test_load_rejects_foreign_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"entries": {}}))
    with pytest.raises(ValueError, match="not a"):
        LatencyTable.load(bad)


def test_exact_keys_return_measured_values(table):
    for key, value in list(table.entries.items())[:20]:
        assert table.predict_operator(Operator.from_key(key)) == value
        assert table.predict_operator(key) == value
    op = Operator.make("linear", rows=1, fin=64, fout=16)
    assert table.predict_operator("linear", rows=1, fin=64, fout=16) == table.entries[op.key]


def test_interpolation_is_between_neighbours(table):
    lo = table.predict_operator("linear", rows=1, fin=64, fout=64)
    hi = table.predict_operator("linear", rows=1, fin=512, fout=64)
    mid = table.predict_operator("linear", rows=1, fin=256, fout=64)
    assert min(lo, hi) <= mid <= max(lo, hi)


def test_predictions_positive_and_monotone_in_work(table):
    def conv(cout: int, length: int) -> float:
        return table.predict_operator("conv1d", cin=16, cout=cout, length=length, kernel=3, stride=1, padding=1)

    # neighbouring grid points can differ by less than the timing noise: allow 3 % (and 0.3 µs) of slack
    def not_less(values: list[float]) -> bool:
        return all(b >= 0.97 * a - 0.3 for a, b in itertools.pairwise(values))

    lengths = [8, 32, 64, 100, 128, 256, 600, 1024]  # inside and outside the quick grid's range
    for cout in (8, 20, 32, 64):
        values = [conv(cout, n) for n in lengths]
        assert all(v > 0 for v in values)
        assert not_less(values), (cout, values)
        assert values[-1] > 2 * values[0]  # 128× the work is clearly slower
    for n in (32, 128, 1024):
        by_width = [conv(c, n) for c in (8, 20, 32, 64)]
        assert not_less(by_width), (n, by_width)
    assert conv(64, 1024) > conv(8, 8)


def test_predict_latency_rows_and_total(table):
    model = small_cnn()
    pred = predict_latency(model, (2, 128), table)
    layers = [m for m in model if not isinstance(m, nn.Sequential)]
    assert len(pred.rows) == len(layers) == 11
    assert [r.name for r in pred.rows] == [str(i) for i in range(11)]
    assert pred.rows[0].kind == "conv1d" and pred.rows[0].shape == (2, 128)
    assert pred.rows[1].kind == "relu+fused" and pred.rows[4].kind == "tanh+fused"
    assert pred.rows[9].kind == "identity" and pred.rows[9].us == 0.0
    assert all(r.us >= 0 for r in pred.rows)
    assert pred.total_us == pytest.approx(pred.overhead_us + sum(r.us for r in pred.rows))
    assert pred.total_ms == pytest.approx(pred.total_us / 1e3)
    assert pred.total_ms > 0
    assert "total" in pred.table()


def test_model_operators_skip_quantizers_and_detect_groups():
    model = nn.Sequential(hn.QConv2d(8, 8, 3, padding=1, groups=8), hn.QConv2d(8, 16, 1, groups=2),
                          hn.QActivation("relu"), hn.Flatten())
    ops = model_operators(model, (8, 6, 6))
    assert [o.operator.kind for o in ops] == ["dwconv2d", "conv2d", "relu", "flatten"]
    assert ops[1].repeats == 2 and ops[1].operator.p["cin"] == 4
    assert ops[2].fused and not ops[3].fused


def test_batchnorm_after_a_layer_is_folded_as_deployed(table):
    torch.manual_seed(0)
    with_bn = nn.Sequential(hn.QConv2d(1, 8, 3, padding=1, **OFF), nn.BatchNorm2d(8), hn.QActivation("relu"),
                            hn.QMaxPool2d(2), hn.Flatten(), hn.QLinear(8 * 4 * 4, 16, **OFF), nn.BatchNorm1d(16),
                            hn.QLinear(16, 10, **OFF)).eval()
    plain = nn.Sequential(*[nn.Identity() if isinstance(m, nn.modules.batchnorm._BatchNorm) else m
                            for m in with_bn]).eval()
    pred, ref = predict_latency(with_bn, (1, 8, 8), table), predict_latency(plain, (1, 8, 8), table)
    assert [r.kind for r in pred.rows] == [r.kind for r in ref.rows]
    assert [r.kind for r in pred.rows][:3] == ["conv2d", "identity", "relu+fused"]  # the fold keeps ReLU fused
    assert pred.total_us == pytest.approx(ref.total_us)
    assert isinstance(with_bn[1], nn.BatchNorm2d)  # the caller's model is not changed
    lone = nn.Sequential(hn.QActivation("relu"), nn.BatchNorm1d(8))
    with pytest.raises(UnsupportedLayerError, match=r"'1'.*BatchNorm1d"):
        predict_latency(lone, (8,), table)


def test_unknown_layer_raises_naming_it(table):
    model = nn.Sequential(hn.QLinear(8, 8, **OFF), nn.LayerNorm(8))
    with pytest.raises(UnsupportedLayerError, match=r"'1'.*LayerNorm"):
        predict_latency(model, (8,), table)
    assert issubclass(UnsupportedLayerError, ValueError)


def test_measure_latency_positive():
    ms = measure_latency(small_cnn(), (2, 128), repeats=30)
    assert 0 < ms < 100


def test_prediction_within_generous_factor_of_measurement(table):
    model = small_cnn()
    predicted = predict_latency(model, (2, 128), table).total_ms
    measured = measure_latency(model, (2, 128), repeats=100)
    assert measured / 3 <= predicted <= measured * 3, (predicted, measured)


def small_mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(hn.QLinear(16, 64, **OFF), hn.QActivation("relu"), hn.QLinear(64, 5, **OFF)).eval()


def test_calibration_recovers_a_known_scale(table, tmp_path):
    from hwnas.cost.cpu_latency import CALIBRATION_GROUPS, NCHWC_GROUPS, calibrate, calibration_group

    cnn2d = nn.Sequential(hn.QConv2d(1, 8, 3, padding=1, **OFF), hn.QActivation("relu"), hn.QMaxPool2d(2),
                          hn.Flatten(), hn.QLinear(8 * 14 * 14, 10, **OFF)).eval()
    models = [(small_cnn(), (2, 128)), (small_mlp(), (16,)), (cnn2d, (1, 28, 28))]
    base = [predict_latency(m, s, table) for m, s in models]
    cal = calibrate(table, models, measured_ms=[2.0 * p.total_ms for p in base], ridge=0.0)
    assert set(CALIBRATION_GROUPS) <= set(cal.calibration)
    assert set(cal.calibration) - set(CALIBRATION_GROUPS) <= {f"nchwc_{g}_us" for g in NCHWC_GROUPS}
    assert not table.calibration  # the input table is unchanged
    for (m, s), p in zip(models, base, strict=True):
        assert predict_latency(m, s, cal).total_ms == pytest.approx(2.0 * p.total_ms, rel=1e-6)
    assert cal.calibration["dwconv2d"] == 1.0  # no such operator in the models: left alone
    assert calibration_group("conv2dx4") == "conv2d" and calibration_group("tanh+fused") == "fused_activation"
    assert calibration_group("maxpool1d") == "pool"
    again = LatencyTable.load(cal.save(tmp_path / "cal.json"))
    assert again.calibration == cal.calibration
    # a ridge pulls the factors toward 1
    pulled = calibrate(table, models, measured_ms=[2.0 * p.total_ms for p in base], ridge=5.0)
    assert all(1.0 <= pulled.calibration[g] < 2.0 for g in CALIBRATION_GROUPS if g != "dwconv2d")


def test_calibration_recovers_a_per_node_offset_of_blocked_layers(table):
    from hwnas.cost.cpu_latency import calibrate

    if not table.nchwc_block:
        pytest.skip("onnxruntime does not use the NCHWc layout on this machine: no blocked nodes to offset")
    # models with 1..4 blocked 2-D convolutions: the "measured" time is the prediction plus 0.7 µs per blocked
    # convolution, which only an offset (not a factor) can explain
    def model(n_conv2d: int, size: int) -> tuple[nn.Module, tuple[int, ...]]:
        layers: list[nn.Module] = [hn.QConv2d(4, 16, 3, padding=1, **OFF), hn.QActivation("relu")]
        layers += [m for _ in range(n_conv2d) for m in (hn.QConv2d(16, 16, 1, **OFF), hn.QActivation("relu"))]
        layers += [hn.Flatten(), hn.QLinear(16 * size * size, 10, **OFF)]
        return nn.Sequential(*layers).eval(), (4, size, size)

    # groups used: overhead, conv2d, activation (flatten), linear, and the offset: 8 models identify them
    models = [model(n, size) for size in (8, 4) for n in range(4)]
    base = [predict_latency(m, s, table) for m, s in models]
    blocked = [sum(r.blocked for r in p.rows) for p in base]
    assert blocked == [1, 2, 3, 4] * 2
    target = [(p.total_us + 0.7 * b) / 1e3 for p, b in zip(base, blocked, strict=True)]
    cal = calibrate(table, models, measured_ms=target, ridge=0.0)
    assert cal.calibration["nchwc_conv2d_us"] == pytest.approx(0.7, abs=1e-4)
    assert cal.calibration["conv2d"] == pytest.approx(1.0, abs=1e-4)
    for (m, s), want in zip(models, target, strict=True):
        assert predict_latency(m, s, cal).total_ms == pytest.approx(want, rel=1e-6)
    # and a negative offset (the usual case: a lone NCHWc node pays set-up that a chain shares)
    target = [(p.total_us - 0.2 * b) / 1e3 for p, b in zip(base, blocked, strict=True)]
    assert calibrate(table, models, measured_ms=target, ridge=0.0).calibration["nchwc_conv2d_us"] == pytest.approx(
        -0.2, abs=1e-4)


def test_node_cost_is_measured_and_charged_per_node(table):
    from dataclasses import replace

    from hwnas.cost.cpu_latency import measure_node_cost

    assert 0.0 <= table.node_us < table.overhead_us  # below timer noise on a busy machine it measures 0
    d = measure_node_cost(repeats=50, warmup=10)
    assert 0.0 <= d < table.overhead_us
    with pytest.raises(ValueError, match="nodes"):
        measure_node_cost(nodes=1)
    # an MLP of two linear nodes (activation fused): total = (overhead - d) + Σ (entry - overhead + d).
    # Timings on a busy machine can put a measured entry at or below the overhead (its row then clamps to 0
    # and hides d), so the arithmetic is checked on a table whose operator entries lie well above it.
    lifted = replace(table, entries={k: v + 100.0 for k, v in table.entries.items()})
    mlp = small_mlp()
    without = predict_latency(mlp, (16,), replace(lifted, node_us=0.0))
    with_d = predict_latency(mlp, (16,), replace(lifted, node_us=0.5))
    nodes = sum(1 for r in without.rows if r.operator is not None and not r.kind.endswith("+fused"))
    assert nodes == 2
    assert all(r.us > 0 for r in without.rows if r.operator is not None and not r.kind.endswith("+fused"))
    assert with_d.overhead_us == pytest.approx(table.overhead_us - 0.5)
    assert with_d.total_us - without.total_us == pytest.approx(0.5 * (nodes - 1))


def test_calibration_on_real_measurements_and_errors(table):
    from hwnas.cost.cpu_latency import calibrate

    cal = calibrate(table, [(small_mlp(), (16,)), (small_cnn(), (2, 128))], repeats=20)
    assert all(math.isfinite(f) and f >= 0 for f in cal.calibration.values())
    with pytest.raises(ValueError, match="models"):
        calibrate(table, [])
    with pytest.raises(ValueError, match="measured_ms"):
        calibrate(table, [(small_mlp(), (16,))], measured_ms=[1.0, 2.0])
    with pytest.raises(ValueError, match="measured_ms"):
        calibrate(table, [(small_mlp(), (16,))], measured_ms=[float("nan")])
    with pytest.raises(ValueError, match="ridge"):
        calibrate(table, [(small_mlp(), (16,))], measured_ms=[1.0], ridge=-1)


def test_model_zoo_is_seeded_and_runs():
    from hwnas.cost.latency_zoo import model_zoo

    zoo = model_zoo(0)
    assert len(zoo) == 36 and [n for n, *_ in zoo] == [n for n, *_ in model_zoo(0)]
    assert [n for n, *_ in zoo] != [n for n, *_ in model_zoo(1000)]
    for _, build, shape in zoo[::5]:
        out = build().eval()(torch.zeros(1, *shape))
        assert out.ndim == 2 and out.shape[1] in (5, 10, 11, 24)


def test_measure_latencies_interleaves_rounds():
    from hwnas.cost.cpu_latency import measure_latencies

    times = measure_latencies([(small_mlp(), (16,)), (small_cnn(), (2, 128))], repeats=10, rounds=2, warmup=2)
    assert len(times) == 2 and all(0 < t < 100 for t in times)
    with pytest.raises(ValueError, match="rounds"):
        measure_latencies([(small_mlp(), (16,))], rounds=0)


def test_measure_nodes_reports_the_optimized_graph():
    from hwnas.cost.cpu_latency import measure_nodes

    nodes = measure_nodes(small_cnn(), (2, 128), runs=20)
    ops = [n.op_type for n in nodes]
    assert "FusedConv" in ops or "Conv" in ops
    assert any(op in ("Gemm", "FusedGemm") for op in ops)
    assert all(n.median_us >= 0 and n.runs == 20 for n in nodes)
    with pytest.raises(ValueError, match="runs"):
        measure_nodes(small_cnn(), (2, 128), runs=0)
