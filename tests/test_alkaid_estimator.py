"""The alkaid hardware model (hwnas.cost.alkaid_model) and the design dataset's resume logic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("alkaid")

import hwnas.nn as hn
from hwnas.config import ConfigError, parse_experiment
from hwnas.cost import CALIBRATION, CostError, alkaid_trace, estimate
from hwnas.cost.alkaid_model import AlkaidCalibration


def fixed(bits: int, **kw) -> dict:
    return dict(bits=bits, learnable=False, **kw)


def tiny_mlp() -> nn.Module:
    torch.manual_seed(3)
    model = nn.Sequential(
        hn.QLinear(6, 8, input_quantizer=fixed(5), weight_quantizer=fixed(4), bias_quantizer=fixed(6)),
        hn.QActivation("relu"),
        hn.QLinear(8, 3, input_quantizer=fixed(5, signed=False), weight_quantizer=fixed(3), bias_quantizer=fixed(5)))
    model(torch.randn(64, 6))
    return model.eval()


def test_luts_are_comb_cost_times_the_factors_and_latency_is_positive() -> None:
    from alkaid.trace import trace

    from hwnas.export.alkaid_plugin import trace_hwnas

    model = tiny_mlp()
    inp, out, _ = trace_hwnas(model, (6,))
    comb = trace(inp, out)
    cost, muxes = float(comb.cost), sum(op.opcode == 6 for op in comb.ops)  # opcode 6: multiplexer (the ReLU)
    assert muxes > 0
    est = estimate(model, "ZCU104", input_shape=(6,), kind="alkaid", latency_cutoff_ns=2.0)
    assert est.totals["luts"] == pytest.approx(cost * CALIBRATION.lut + muxes * CALIBRATION.lut_per_mux)
    assert est.rows[0].extra["multiplexers"] == muxes
    assert est.rows[0].extra["cost"] == pytest.approx(cost)
    assert est.latency_cycles > 0 and est.initiation_interval == 1
    assert est.totals["ffs"] == pytest.approx(est.rows[0].extra["reg_bits"] * CALIBRATION.ff) and est.totals["ffs"] > 0
    assert est.totals["dsps"] == 0 and est.totals["bram18"] == 0
    assert est.totals["macs"] == 6 * 8 + 8 * 3
    # another calibration scales the figures; the clock period is the default cut-off (a longer one: fewer cycles)
    cal = AlkaidCalibration(lut=2.0, lut_per_mux=0.0, ff=0.5, dataset="test", designs=0, tool="none")
    est2 = estimate(model, "ZCU104", input_shape=(6,), kind="alkaid", latency_cutoff_ns=2.0, calibration=cal)
    assert est2.totals["luts"] == pytest.approx(2.0 * cost)  # LUTs = comb.cost × factor without the mux term
    assert est2.totals["ffs"] == pytest.approx(0.5 * est.rows[0].extra["reg_bits"])
    slow = estimate(model, "ZCU104", input_shape=(6,), kind="alkaid", clock_mhz=50)
    assert slow.assumptions["latency_cutoff_ns"] == pytest.approx(20.0)
    assert 0 < slow.latency_cycles <= est.latency_cycles


def test_register_bits_equal_the_rtl_export(tmp_path: Path) -> None:
    from hwnas.export.rtl import export_rtl

    model = tiny_mlp()
    tr = alkaid_trace(model, (6,), 2.0)
    project = export_rtl(model, (6,), tmp_path / "rtl", latency_cutoff=2.0)
    assert tr.reg_bits == project.summary.reg_bits
    assert tr.latency_cycles == project.summary.latency
    assert tr.cost == pytest.approx(project.summary.cost)


def test_untraceable_models_raise_cost_errors_naming_the_layer() -> None:
    float_w = nn.Sequential(hn.QLinear(4, 4, input_quantizer=fixed(6), weight_quantizer=None))
    float_w(torch.randn(8, 4))
    with pytest.raises(CostError, match=r"^0\.weight_quantizer: the weight is not quantized"):
        estimate(float_w, "ZCU104", input_shape=(4,), kind="alkaid")
    scaled = nn.Sequential(hn.QLinear(4, 4, input_quantizer=fixed(6), weight_quantizer=dict(kind="scaled", bits=4)))
    scaled(torch.randn(8, 4))
    with pytest.raises(CostError, match=r"^0\.weight_quantizer: ScaledIntQuantizer"):
        estimate(scaled, "ZCU104", input_shape=(4,), kind="alkaid")
    float_tanh = nn.Sequential(hn.QLinear(4, 4, input_quantizer=fixed(6)), hn.QActivation("tanh"))
    float_tanh(torch.randn(8, 4))
    with pytest.raises(CostError, match=r"^1: tanh in float mode"):
        estimate(float_tanh, "ZCU104", input_shape=(4,), kind="alkaid")


def test_config_accepts_alkaid() -> None:
    base = "name: tiny\ntask: {name: digits}\nobjectives:\n  - metric: luts\n    direction: minimize\n"
    exp = parse_experiment(base + "hardware:\n  model: alkaid\n")
    assert exp.hardware.model == "alkaid"
    with pytest.raises(ConfigError, match=r"hardware\.model"):
        parse_experiment(base + "hardware:\n  model: alkaidd\n")


# ------------------------------------------------------------------------------------------ the dataset
def test_dataset_specs_are_deterministic_and_models_rebuild(dataset) -> None:
    a, b = dataset.design_spec(5, 3, 200), dataset.design_spec(5, 3, 200)
    assert a == b and dataset._key(a) == dataset._key(b) != dataset._key(dataset.design_spec(5, 4, 200))
    m1, shape = dataset.build_model(a)
    m2, _ = dataset.build_model(a)
    assert alkaid_trace(m1, shape, 3.0).cost == alkaid_trace(m2, shape, 3.0).cost


def test_an_internal_alkaid_failure_is_a_cost_error_that_says_so(dataset, monkeypatch) -> None:
    # design 183 of the dataset's seed 1: an HGQ 1-D CNN with pruned weights whose products over the padding alone
    # made alkaid's cmvm raise StopIteration; the plugin now multiplies those rows element-wise, so it is priced
    model, shape = dataset.build_model(dataset.design_spec(1, 183, 500))
    assert alkaid_trace(model, shape, 2.0).cost > 0
    # any other failure inside alkaid's tracer is a cost error that says it is the tool's, not the model's
    import hwnas.export.alkaid_plugin as plugin
    from hwnas.export import ToolFailureError

    def failing(*args, **kwargs):
        try:
            raise StopIteration
        except StopIteration as err:
            raise ToolFailureError("layer '0': alkaid raised StopIteration") from err

    monkeypatch.setattr(plugin, "trace_hwnas", failing)
    with pytest.raises(CostError, match=r"^model: alkaid failed inside while tracing \(StopIteration"):
        alkaid_trace(model, shape, 2.0)


def test_dataset_resume_skips_existing_designs_and_repairs_a_partial_line(dataset, tmp_path: Path) -> None:
    path = tmp_path / "designs.jsonl"
    first = dataset.design_spec(9, 0, 150)
    kept = {"key": dataset._key(first), "spec": first, "note": "written earlier"}
    path.write_text(json.dumps(kept) + "\n" + '{"key": "cut-off by a kil')  # a kill mid-append
    assert dataset.existing_keys(path) == {kept["key"]}
    assert [s["index"] for s in dataset.pending_specs(path, 3, 9, 150)] == [1, 2]
    new = dataset.run(path, 3, 9, max_macs=150, synth=False, progress=False)  # real trace and estimators, no Yosys
    assert [r["spec"]["index"] for r in new] == [1, 2]
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["note"] == "written earlier"  # partial line gone
    assert all("features" in json.loads(line) or "error" in json.loads(line) for line in lines[1:])
    assert dataset.run(path, 3, 9, max_macs=150, synth=False, progress=False) == []
    assert len(dataset.read_designs(path)) == 3
