"""The report's tables in seed 000's layout (Table II, Table III, per-layer latency, Pareto CSV), on hand-built data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from hwnas.config import load_experiment
from hwnas.report import ReportData, SelectedModel, write_report
from hwnas.report.collect import BaselineResult, collect
from hwnas.report.tables import report_rows, table_rows, write_tables

EXPERIMENT = """\
name: tables
seed: 0
output: {output}
task: {{name: amc-rml2016}}
space:
  family: cnn1d
  conv_blocks: {{min: 1, max: 2}}
  filters: [8, 16]
  precision: {{weight_bits: {{min: 2, max: 8}}, act_bits: {{min: 2, max: 8}}}}
objectives:
  - {{metric: accuracy, direction: maximize}}
  - {{metric: qa_score, direction: minimize}}
hardware: {{target: ZC702, model: finn}}
search: {{strategy: monas_lq, n_trials: 40}}
run:
  select: [knee, best]
  baselines: [qcnn-64f, vgg10-32f-8b]
"""


def _estimate(cycles: list[int]) -> dict:
    return {"model": "finn", "device": "XC7Z020", "clock_mhz": 100.0, "totals": {}, "latency_cycles": sum(cycles),
            "rows": [{"name": f"l{i}", "type": "conv" if i < len(cycles) - 1 else "dense", "cycles": c,
                      "luts": 1.0, "bram18": 0.0, "dsps": 0.0} for i, c in enumerate(cycles)]}


# trial 0: front, QA-Score 0.30 (MLQ 2); trial 1: front, QA-Score 0.10 (MLQ 1), no BOPs, LUTs, latency_ms, energy;
# trial 2: infeasible; trial 3: feasible but dominated
TRIALS = [
    {"number": 0, "feasible": True, "front": True,
     "metrics": {"accuracy": 0.60, "qa_score": 0.30, "bops": 4.0e7, "wbits": 52000.0, "macs": 2.0e6,
                 "luts": 10640.0, "ffs": 21280.0, "bram18": 21.0, "dsps": 11.0, "test_accuracy": 0.5812,
                 "latency_ms": 0.35, "latency_cycles": 35000.0, "energy_mj": 0.07},
     "estimate": _estimate([10000, 20000, 5000])},
    {"number": 1, "feasible": True, "front": True,
     "metrics": {"accuracy": 0.50, "qa_score": 0.10, "macs": 1.0e6, "ffs": 5320.0, "bram18": 4.0, "dsps": 0.0,
                 "test_accuracy": 0.49, "latency_cycles": 4000.0},
     "estimate": _estimate([3000, 1000])},
    {"number": 2, "feasible": False, "front": False, "metrics": {"accuracy": 0.70, "qa_score": 0.05, "luts": 1.0e6},
     "estimate": None},
    {"number": 3, "feasible": True, "front": False, "metrics": {"accuracy": 0.40, "qa_score": 0.50, "memory_kb": 3.5},
     "estimate": None},
]
for _t in TRIALS:
    _t["objectives"] = {m: _t["metrics"].get(m) for m in ("accuracy", "qa_score")}

BASELINES = [
    BaselineResult(name="qcnn-64f", metrics={"macs": 8.0e6, "bops": 2.0e8, "luts": 53200.0, "bram18": 280.0,
                                             "latency_ms": 4.2, "test_accuracy": 0.61},
                   estimate=_estimate([100000, 300000, 20000]), accuracy={"samples": 100, "torch": 0.52, "qonnx": 0.50},
                   accuracy_per_snr={-10: 0.1, 0: 0.4, 10: 0.6}),
    BaselineResult(name="vgg10-32f-8b", metrics={"macs": 2.0e6, "luts": 26600.0}, estimate=None),
]


@pytest.fixture
def data(tmp_path: Path) -> ReportData:
    exp = load_experiment(EXPERIMENT.format(output=tmp_path / "out"))
    selected = [SelectedModel(number=0, rule="knee", metrics=TRIALS[0]["metrics"], point="p", checkpoint=None,
                              estimate=TRIALS[0]["estimate"],
                              exported_accuracy={"samples": 200, "torch": 0.55, "qonnx": 0.56, "hls4ml": 0.5})]
    capacity = {r: int(exp.device().capacity(r)) for r in ("luts", "ffs", "bram18", "dsps")}
    return ReportData(exp, [dict(t) for t in TRIALS], selected, capacity, {}, [], None, list(BASELINES))


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_rows_order_and_names(data: ReportData) -> None:
    rows = report_rows(data)
    assert [(r.name, r.kind, r.trial) for r in rows] == [
        ("MLQ 1", "searched", 1), ("MLQ 2", "searched", 0), ("qcnn-64f", "baseline", None),
        ("vgg10-32f-8b", "baseline", None)]
    assert rows[1].exported == {"samples": 200, "torch": 0.55, "qonnx": 0.56, "hls4ml": 0.5}
    assert rows[0].exported is None and rows[1].clock_mhz == 100.0
    other = table_rows(TRIALS, [("accuracy", "maximize"), ("qa_score", "minimize")], strategy="nsga2")
    assert [r.name for r in other] == ["front 1", "front 2"]
    # a maximized last objective: best (largest) first
    flipped = table_rows(TRIALS, [("qa_score", "minimize"), ("accuracy", "maximize")])
    assert [r.trial for r in flipped] == [0, 1]


def test_table2_cells(data: ReportData, tmp_path: Path) -> None:
    folder = tmp_path / "rep"
    folder.mkdir()
    write_tables(data, folder)
    rows = _read(folder / "table2.csv")
    ref = "MAC load [% of qcnn-64f]"
    cap, mlq1, mlq2, qcnn, vgg = rows
    assert cap["Model"] == "ZC702 capacity"
    assert (cap["LUTs"], cap["Regs"], cap["BRAM36"], cap["DSP"]) == ("53200", "106400", "140", "220")
    assert cap["LUTs [%]"] == "" and cap[ref] == ""
    assert (mlq2["Model"], mlq2["trial"]) == ("MLQ 2", "0")
    assert mlq2["BOPs"] == "40000000" and mlq2["W_bits"] == "52000" and mlq2["QA-Score"] == "0.3"
    assert mlq2["Total MACs"] == "2000000" and mlq2[ref] == "25.0"
    assert mlq2["LUTs"] == "10640" and mlq2["LUTs [%]"] == "20.0"  # of the ZC702's 53,200
    assert mlq2["Regs"] == "21280" and mlq2["Regs [%]"] == "20.0"
    assert mlq2["BRAM36"] == "10.5" and mlq2["BRAM36 [%]"] == "7.5"  # 21 BRAM18 of 140 BRAM36
    assert mlq2["DSP"] == "11" and mlq2["DSP [%]"] == "5.0"
    assert mlq1[ref] == "12.5" and mlq1["BRAM36"] == "2" and mlq1["DSP [%]"] == "0.0"
    assert mlq1["BOPs"] == "" and mlq1["LUTs"] == "" and mlq1["LUTs [%]"] == ""  # missing metrics: empty
    assert qcnn[ref] == "100.0" and qcnn["trial"] == "" and qcnn["BRAM36 [%]"] == "100.0"
    assert vgg[ref] == "25.0" and vgg["LUTs [%]"] == "50.0" and vgg["DSP"] == "" and vgg["BRAM36"] == ""
    md = (folder / "table2.md").read_text()
    assert md.startswith("| Model | trial | BOPs |") and "| MLQ 2 | 0 |" in md


def test_table2_reference_without_baselines(data: ReportData, tmp_path: Path) -> None:
    data.baselines = []
    folder = tmp_path / "rep"
    folder.mkdir()
    header, rows = write_tables(data, folder)["table2"]
    assert header[6] == "MAC load [% of MLQ 2]"
    assert [r[6] for r in rows] == ["", "50.0", "100.0"]


def test_table3_cells(data: ReportData, tmp_path: Path) -> None:
    folder = tmp_path / "rep"
    folder.mkdir()
    write_tables(data, folder)
    mlq1, mlq2, qcnn, vgg = _read(folder / "table3.csv")
    assert mlq2["expected latency [ms/sample]"] == "0.35" and mlq2["clock [MHz]"] == "100"
    assert mlq2["energy [mJ/sample]"] == "0.07" and mlq2["test accuracy [%]"] == "58.12"
    # finn: the qonnx path (what FINN ingests), against torch on the same 200 samples
    assert (mlq2["exported accuracy [%]"], mlq2["torch on the same samples [%]"], mlq2["ΔAcc [points]"]) == (
        "56.00", "55.00", "+1.00")
    assert (mlq2["path"], mlq2["samples"]) == ("qonnx", "200")
    assert qcnn["ΔAcc [points]"] == "-2.00" and qcnn["samples"] == "100" and qcnn["test accuracy [%]"] == "61.00"
    # trial 1 has no latency_ms: its latency_cycles at the estimate's clock
    assert mlq1["expected latency [ms/sample]"] == "0.04" and mlq1["energy [mJ/sample]"] == ""
    assert all(mlq1[k] == "" for k in ("exported accuracy [%]", "torch on the same samples [%]", "ΔAcc [points]",
                                       "path", "samples"))
    assert vgg["expected latency [ms/sample]"] == "" and vgg["clock [MHz]"] == "" and vgg["path"] == ""


def test_layers_and_pareto(data: ReportData, tmp_path: Path) -> None:
    folder = tmp_path / "rep"
    folder.mkdir()
    write_tables(data, folder)
    layers = _read(folder / "layers.csv")
    assert {r["model"] for r in layers} == {"MLQ 1", "MLQ 2", "qcnn-64f"}  # vgg10-32f-8b has no estimate
    for model in ("MLQ 1", "MLQ 2", "qcnn-64f"):
        shares = [float(r["share [%]"]) for r in layers if r["model"] == model]
        assert sum(shares) == pytest.approx(100.0, abs=0.02)
    mlq2 = [r for r in layers if r["model"] == "MLQ 2"]
    assert [(r["trial"], r["layer"], r["type"], r["cycles"], r["share [%]"], r["ms"]) for r in mlq2] == [
        ("0", "l0", "conv", "10000", "28.57", "0.1"), ("0", "l1", "conv", "20000", "57.14", "0.2"),
        ("0", "l2", "dense", "5000", "14.29", "0.05")]
    pareto = _read(folder / "pareto.csv")
    assert [r["number"] for r in pareto] == ["0", "1", "2", "3"]
    assert [(r["feasible"], r["front"]) for r in pareto] == [("true", "true"), ("true", "true"), ("false", "false"),
                                                             ("true", "false")]
    assert list(pareto[0])[:5] == ["number", "feasible", "front", "accuracy", "bops"]
    assert pareto[3]["memory_kb"] == "3.5" and pareto[0]["memory_kb"] == "" and pareto[2]["luts"] == "1000000.0"


def test_html_report(data: ReportData, tmp_path: Path) -> None:
    page = write_report(data, tmp_path / "report")
    text = page.read_text()
    assert "Table II" in text and "Table III" in text and "FPGA-measured latency is not available" in text
    assert "MLQ 1" in text and "qcnn-64f" in text
    for name in ("table2.csv", "table3.csv", "table2.md", "table3.md", "layers.csv", "pareto.csv",
                 "figures/layer_latency_models.png", "figures/accuracy_per_snr.png"):
        assert (page.parent / name).is_file(), name


def test_collect_reads_baselines_estimates_and_exported_accuracy(tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna")
    exp = load_experiment(EXPERIMENT.format(output=tmp_path / "out"))
    out = exp.output_dir()
    study = optuna.create_study(directions=["maximize", "minimize"])
    for t in TRIALS[:2]:
        study.add_trial(optuna.trial.create_trial(
            values=[t["metrics"]["accuracy"], t["metrics"]["qa_score"]],
            user_attrs={"metrics": t["metrics"], "estimate": t["estimate"]}))
    (out / "baselines").mkdir(parents=True)
    record = {"name": "qcnn-64f", "description": "QCNN", "model": "baselines/qcnn-64f/model.pt",
              "metrics": {"macs": 8.0e6}, "estimate": None, "accuracy_per_snr": {"-20": 0.04, "0": 0.3},
              "accuracy": {"samples": 10, "torch": 0.5, "qonnx": 0.4}, "seconds": 1.5, "epochs": 2}
    (out / "baselines" / "qcnn-64f.json").write_text(json.dumps(record))
    (out / "selection.json").write_text(json.dumps({"selected": [{"number": 0, "rule": "knee"}]}))
    (out / "verify").mkdir()
    (out / "verify" / "trial_00000.json").write_text(json.dumps(
        {"paths": [], "accuracy": {"samples": 200, "torch": 0.55, "qonnx": 0.56}}))
    data = collect(exp, study, details=False)
    assert [t["estimate"] for t in data.trials] == [TRIALS[0]["estimate"], TRIALS[1]["estimate"]]
    assert data.selected[0].exported_accuracy == {"samples": 200, "torch": 0.55, "qonnx": 0.56}
    (b,) = data.baselines
    assert (b.name, b.description, b.epochs, b.seconds) == ("qcnn-64f", "QCNN", 2, 1.5)
    assert b.model == str(out.absolute() / "baselines" / "qcnn-64f" / "model.pt")
    assert b.accuracy_per_snr == {-20: 0.04, 0: 0.3} and b.accuracy["qonnx"] == 0.4
    assert "baseline vgg10-32f-8b: not trained yet (run the baselines stage)" in data.notes


def test_a_local_search_model_gets_its_own_row_and_the_exported_accuracy(data: ReportData, tmp_path: Path) -> None:
    # the knee (trial 0) was refined by an HGQ β-sweep: the verified model is the local one
    data.selected[0].local = {"trial": 0, "method": "beta_sweep", "kept": "HGQ β-sweep epoch 4",
                              "metrics": {"accuracy": 0.59, "test_accuracy": 0.57, "qa_score": 0.12, "macs": 2.0e6,
                                          "luts": 5320.0, "latency_ms": 0.35},
                              "estimate": _estimate([10000, 20000, 5000])}
    rows = report_rows(data)
    assert [(r.name, r.kind, r.trial) for r in rows][:3] == [
        ("MLQ 1", "searched", 1), ("MLQ 2", "searched", 0), ("MLQ 2 → beta_sweep", "local", 0)]
    assert rows[1].exported is None and rows[2].exported["qonnx"] == 0.56
    write_tables(data, tmp_path)
    t2 = {r["Model"]: r for r in _read(tmp_path / "table2.csv")}
    assert t2["MLQ 2 → beta_sweep"]["LUTs [%]"] == "10.0" and t2["MLQ 2 → beta_sweep"]["QA-Score"] == "0.12"
    t3 = {r["Model"]: r for r in _read(tmp_path / "table3.csv")}
    assert t3["MLQ 2"]["exported accuracy [%]"] == "" and t3["MLQ 2 → beta_sweep"]["ΔAcc [points]"] == "+1.00"
    # a local record without prices (written before the local stage priced its model) adds no row
    data.selected[0].local = {"trial": 0, "method": "precision_pairs", "kept": "ap_fixed<8,3>"}
    assert [r.kind for r in report_rows(data)].count("local") == 0
