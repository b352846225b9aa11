"""The report page a person reads (issue 29): relative links, readable numbers, all trials, convergence, baselines on
the Pareto plot, synthesized counts, version and stage times, a warning near chance; LUTs vs EBOPs (issue 25).

Built from a hand-made run folder (no training): the trials of ``test_report_tables`` in an in-memory study, the
records the stages write (selection, export with QONNX/hls4ml/RTL, verify, synth with its Yosys log, a baseline,
stages.json), collected with :func:`hwnas.report.collect` and rendered once; the width and the sorting are checked
in Chromium by ``tests/test_pipeline.py::test_report_fits_the_window_width``.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest

from hwnas import __version__
from hwnas.config import load_experiment
from hwnas.report import ReportData, SelectedModel, collect, plots, tables, write_report
from hwnas.report import html as html_page
from hwnas.report.html import NEAR_CHANCE, chance_warning, metric_text, readable
from hwnas.report.tables import hypervolume, hypervolume_curve

from .test_report_tables import EXPERIMENT, TRIALS

optuna = pytest.importorskip("optuna")

STAGES = {"search": {"hash": "h", "finished": "2026-12-07 19:46:53", "seconds": 428.1},
          "select": {"hash": "h", "finished": "2026-12-07 19:46:54", "seconds": 0.2},
          "export": {"hash": "h", "finished": "2026-12-07 19:51:12", "seconds": 258.7},
          "synth": {"hash": "h", "finished": "2026-12-07 19:56:40", "seconds": 328.0}}
VGG = {"name": "vgg10-32f-8b", "description": "8-bit VGG10", "model": "baselines/vgg10-32f-8b/model.pt",
       "metrics": {"accuracy": 0.55, "qa_score": 1.0, "macs": 2.0e6, "luts": 26600.0}, "estimate": None,
       "accuracy_per_snr": {}, "accuracy": None, "seconds": 12.0, "epochs": 3}
SYNTH_TOTALS = {"luts": 9120.0, "ffs": 15000.0, "bram18": 0.0, "dsps": 4.0}


def _write(path: Path, text: str | bytes = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _run_folder(out: Path) -> None:
    """The records and artefacts the stages would have written for the knee, trial 0."""
    for n in (0, 1, 2, 3):
        _write(out / "trials" / f"{n:05d}" / "model.pt", b"model")
    _write(out / "pareto" / "trials.csv", "number\n0\n1\n2\n3\n4\n")
    _write(out / "pareto" / "pareto.csv", "number\n0\n1\n")
    _write(out / "selection.json", json.dumps({"selected": [{"number": 0, "rule": "knee"}]}))
    export = out / "export" / "trial_00000"
    _write(export / "model.qonnx.onnx", b"onnx")
    _write(export / "hls4ml" / "firmware" / "myproject.cpp", "// hls")
    _write(export / "rtl" / "top.v", "module top; endmodule")
    paths = [{"path": p, "artefact": str(export / a), "digest": "c6873e0da778b07baf5aeeda0d14b53c", "skipped": None,
              "error": None} for p, a in (("qonnx", "model.qonnx.onnx"), ("hls4ml", "hls4ml"), ("rtl", "rtl"))]
    _write(out / "export" / "trial_00000.json", json.dumps({"trial": 0, "model": "trials/00000/model.pt",
                                                            "paths": paths}))
    _write(out / "verify" / "trial_00000.json", json.dumps({"paths": [
        {"path": "qonnx", "samples": 50, "mismatches": 0, "max_lsb": 0, "skipped": None, "error": None,
         "same_as_export": True}], "accuracy": {"samples": 50, "torch": 0.6, "qonnx": 0.6}}))
    _write(out / "synth" / "trial_00000.json", json.dumps({
        "trial": 0, "model": "trials/00000/model.pt", "device": "XC7Z020", "totals": SYNTH_TOTALS,
        "summary": "Yosys synth_xilinx: 9,120 LUT", "distributed_arithmetic": "no comparison: test"}))
    _write(out / "synth" / "trial_00000_work" / "synth" / "yosys.log", "yosys log")
    _write(out / "baselines" / "vgg10-32f-8b.json", json.dumps(VGG))
    _write(out / "baselines" / "vgg10-32f-8b" / "model.pt", b"model")
    _write(out / "stages.json", json.dumps(STAGES))


def _study() -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for t in TRIALS:
        m = t["metrics"]
        study.add_trial(optuna.trial.create_trial(
            values=[m["accuracy"], m["qa_score"]],
            user_attrs={"metrics": m, "estimate": t["estimate"], "checkpoint": f"trials/{t['number']:05d}/model.pt",
                        "constraints": [0.0 if t["feasible"] else 1.0]}))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL,
                                              user_attrs={"error": "RuntimeError: diverged <nan>"}))
    return study


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[Path, str, ReportData]:
    """The report of the hand-made run folder: its page path, its text and the collected data."""
    folder = tmp_path_factory.mktemp("page")
    exp = load_experiment(EXPERIMENT.format(output=folder / "out"))
    out = exp.output_dir()
    _run_folder(out)
    data = collect(exp, _study(), details=False)
    data.n_classes = 11  # details=False evaluates no model: the class count of amc-rml2016
    path = write_report(data)
    return path, path.read_text(), data


def _hrefs(text: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', text)


def test_collect_reads_stages_failed_trials_and_artefacts(page) -> None:
    _, _, data = page
    assert data.version == __version__ and data.stages == STAGES
    assert data.incomplete == [{"number": 4, "state": "FAIL", "error": "RuntimeError: diverged <nan>"}]
    out = data.output_dir
    found = {(a.group, a.label): a.path.relative_to(out).as_posix() for a in data.artefacts}
    assert found[("run", "every trial (CSV)")] == "pareto/trials.csv"
    assert found[("run", "stage record (times)")] == "stages.json"
    assert found[("trial #0 (knee)", "searched model file")] == "trials/00000/model.pt"
    assert found[("trial #0 (knee)", "QONNX file")] == "export/trial_00000/model.qonnx.onnx"
    assert found[("trial #0 (knee)", "hls4ml project")] == "export/trial_00000/hls4ml"
    assert found[("trial #0 (knee)", "RTL folder")] == "export/trial_00000/rtl"
    assert found[("trial #0 (knee)", "synthesis log (yosys.log)")] == "synth/trial_00000_work/synth/yosys.log"
    assert found[("baseline vgg10-32f-8b", "model file")] == "baselines/vgg10-32f-8b/model.pt"


def test_every_artefact_is_a_relative_link_that_survives_a_move(page, tmp_path) -> None:
    path, text, data = page
    out = data.output_dir
    assert str(out.parent) not in text  # no absolute path of the run folder anywhere in the page
    hrefs = _hrefs(text)
    assert not [h for h in hrefs if h.startswith(("/", "file:", "http"))]
    for rel in ("../trials/00000/model.pt", "../trials/00003/model.pt", "../export/trial_00000/model.qonnx.onnx",
                "../export/trial_00000/hls4ml/", "../export/trial_00000/rtl/", "../pareto/trials.csv",
                "../pareto/pareto.csv", "../synth/trial_00000_work/synth/yosys.log",
                "../baselines/vgg10-32f-8b/model.pt", "table2.csv", "selected.csv", "pareto.csv", "hypervolume.csv"):
        assert f'href="{rel}"' in text, rel
    # the export table links its artefacts too (the record holds absolute paths, as the export stage writes them)
    assert '<a href="../export/trial_00000/hls4ml/">export/trial_00000/hls4ml</a>' in text
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(out, moved)
    report = moved / path.parent.relative_to(out)
    for h in hrefs:
        assert (report / unquote(h)).exists(), h


def test_numbers_are_readable_with_units(page) -> None:
    path, text, _ = page
    body = re.sub(r"<script>.*?</script>", "", text, flags=re.S)
    assert not re.findall(r"\d(?:\.\d+)?e[+-]\d", body)  # the old page had 4e+07 (BOPs) and 1.064e+04 (LUTs)
    selected = body[body.index("<h2>Selected models</h2>"):body.index("<h2>All trials</h2>")]
    for cell in ("60.00 %", "58.12 %", "40 M", "52,000", "10,640", "35,000", "350 µs", "70 µJ"):
        assert f">{cell}<" in selected, cell
    assert ">wbits [bit]<" in selected
    assert metric_text("latency_ms", 1.2) == "1.2 ms" and metric_text("energy_mj", 0.0034) == "3.4 µJ"
    assert metric_text("luts", 18780.0) == "18,780 LUT" and readable(18780.0) == "18,780"
    assert readable(0.0157244) == "0.01572" and readable(4667.4) == "4,667" and readable(1.23e-7) == "0.000000123"
    # Table II in the page readable, its CSV full precision
    assert ">40,000,000<" in body and ">2,000,000<" in body and ">21,280<" in body
    with open(path.parent / "table2.csv", newline="") as fh:
        assert next(r for r in csv.DictReader(fh) if r["trial"] == "0")["BOPs"] == "40000000"


def test_all_trials_are_a_sortable_table_that_opens_offline(page) -> None:
    _, text, _ = page
    table = text[text.index('<table class="sortable" id="trials">'):]
    table = table[:table.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", table[table.index("<tbody>"):])
    assert len(rows) == 5  # four complete trials and the failed one
    assert [re.search(r">#(\d+)<", r).group(1) for r in rows] == ["0", "1", "2", "3", "4"]
    assert 'data-v="40000000"' in rows[0] and ">knee<" in rows[0] and 'href="../trials/00000/model.pt"' in rows[0]
    assert ">FAIL<" in rows[4] and "diverged &lt;nan&gt;" in rows[4]
    assert "addEventListener('click'" in text and "table.sortable" in text
    assert not re.search(r"<script[^>]*\ssrc=|<link[^>]*href=\"https?:", text)  # nothing fetched from a network


def test_hypervolume_over_trials(page, monkeypatch) -> None:
    path, text, _ = page
    assert hypervolume([(0.0, 0.5), (0.5, 0.0)], [1.0, 1.0]) == pytest.approx(0.75)
    assert hypervolume([(0.5, 0.0, 0.0), (0.0, 0.5, 0.5)], [1.0, 1.0, 1.0]) == pytest.approx(0.625)
    objectives = [("accuracy", "maximize"), ("qa_score", "minimize")]
    reference, curve = hypervolume_curve(TRIALS, objectives)
    # feasible: trials 0 (0.60, 0.30), 1 (0.50, 0.10), 3 (0.40, 0.50); worst 0.40 / 0.50, range 0.20 / 0.40
    assert reference == pytest.approx({"accuracy": 0.38, "qa_score": 0.54})
    box = 1.1 * 1.1
    first = (1.1 - 0.0) * (1.1 - 0.5) / box  # trial 0 scaled to (0, 0.5)
    both = hypervolume([(0.0, 0.5), (0.5, 0.0)], [1.1, 1.1]) / box
    assert [(n, ok) for n, ok, _ in curve] == [(0, True), (1, True), (2, False), (3, True)]
    assert [hv for _, _, hv in curve] == pytest.approx([first, both, both, both])
    # four or more objectives: a seeded Monte Carlo estimate of the same volume
    four = [{"number": n, "feasible": True, "metrics": {f"m{k}": ((n * 7 + k * 3) % 11) / 10 for k in range(4)}}
            for n in range(12)]
    exact = hypervolume_curve(four, [(f"m{k}", "minimize") for k in range(4)])[1]
    monkeypatch.setattr(tables, "HV_EXACT_OBJECTIVES", 2)
    estimated = hypervolume_curve(four, [(f"m{k}", "minimize") for k in range(4)])[1]
    assert [hv for _, _, hv in estimated] == pytest.approx([hv for _, _, hv in exact], abs=0.01)
    assert (path.parent / "figures" / "hypervolume.png").is_file() and 'src="figures/hypervolume.png"' in text
    assert "reference point lies 10 % of that range beyond the worst value: accuracy 38.00 %" in text
    with open(path.parent / "hypervolume.csv", newline="") as fh:
        assert [r["trial"] for r in csv.DictReader(fh)] == ["0", "1", "2", "3"]


def test_baselines_are_marked_on_the_pareto_plots(page, tmp_path, monkeypatch) -> None:
    _, text, data = page
    assert "green stars, labelled with their name: vgg10-32f-8b" in text
    from matplotlib.axes import Axes

    labels: list[str] = []
    stars: list[tuple[float, float]] = []
    annotate, scatter = Axes.annotate, Axes.scatter

    def spy_annotate(self, text, *args, **kwargs):
        labels.append(text)
        return annotate(self, text, *args, **kwargs)

    def spy_scatter(self, x, y, *args, **kwargs):
        if kwargs.get("marker") == "*":
            stars.append((x[0], y[0]))
        return scatter(self, x, y, *args, **kwargs)

    monkeypatch.setattr(Axes, "annotate", spy_annotate)
    monkeypatch.setattr(Axes, "scatter", spy_scatter)
    plots.pareto_pairs(data.trials, [("accuracy", "maximize"), ("qa_score", "minimize")], {0: "knee"}, tmp_path,
                       baselines=data.baselines)
    assert stars == [(0.55, 1.0)] and "vgg10-32f-8b" in labels


def test_resource_chart_shows_synthesized_counts_beside_the_estimate(page, tmp_path, monkeypatch) -> None:
    _, text, data = page
    assert "beside it (hatched) the counts Yosys synthesized for #0" in text
    assert ">9,120 LUT (17.1 %)<" in text  # the resource table: synthesized LUTs of the ZC702's 53,200
    from matplotlib.axes import Axes

    bars: list[tuple[str, object]] = []
    bar = Axes.bar

    def spy(self, *args, **kwargs):
        bars.append((kwargs.get("label"), kwargs.get("hatch")))
        return bar(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "bar", spy)
    sel = SelectedModel(number=0, rule="knee", metrics={}, point="p", checkpoint=None,
                        estimate={"totals": {"luts": 10640.0, "ffs": 21280.0, "bram18": 21.0, "dsps": 11.0}},
                        synthesis={"totals": SYNTH_TOTALS})
    plots.resources([sel], data.capacity, tmp_path)
    assert bars == [("#0 estimate", None), ("#0 synthesis (Yosys)", "//")]
    from hwnas.report.html import _estimate_error

    # the resource table's "estimate error" row: signed error of the cost model against Yosys, per resource
    assert [_estimate_error(sel.estimate["totals"][r], SYNTH_TOTALS[r]) for r in ("luts", "ffs", "bram18", "dsps")] \
        == ["+17 %", "+42 %", "—", "+175 %"]
    assert _estimate_error(None, 10.0) == "—"


def test_version_date_and_stage_times(page) -> None:
    _, text, _ = page
    head = text[:text.index("<h2>Pareto fronts</h2>")]
    assert re.search(rf"hwnas {re.escape(__version__)}; report written \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d; "
                     r"run 2026-12-07 19:46:53 … 2026-12-07 19:56:40", head)
    for stage, elapsed in (("search", "7 min 08 s"), ("select", "0.2 s"), ("export", "4 min 18 s"),
                           ("synth", "5 min 28 s"), ("total", "16 min 55 s")):
        assert re.search(rf">{stage}</td>.*?>{elapsed}</td>", head), stage


def test_a_near_chance_best_model_is_warned_about(page, tmp_path) -> None:
    _, text, data = page
    assert "near-chance" not in text  # 70 % on 11 classes
    # the README's tiny example of issue 29: its front at 18 % / 22 % on 10 classes
    trials = [{"number": n, "feasible": True, "front": True, "metrics": {"accuracy": a, "qa_score": q},
               "objectives": {"accuracy": a, "qa_score": q}, "estimate": None} for n, (a, q) in
              enumerate([(0.18, 0.1), (0.22, 0.3)])]
    low = ReportData(data.experiment, trials, [], data.capacity, {}, [], None, [], n_classes=10)
    warning = chance_warning(low)
    assert warning and "trial #1" in warning and "22.0 %" in warning and "chance = 1/10 classes = 10.0 %" in warning
    assert "accuracy ≤ 23.5 %" in warning
    low.n_classes = 4  # 22 % on 4 classes: below chance
    assert chance_warning(low)
    low.n_classes = None  # class count unknown: no claim
    assert chance_warning(low) is None
    low.n_classes = 10
    fidelity = ReportData(data.experiment, trials, [], data.capacity, {}, [], None, [], task_metric="fidelity")
    trials[1]["metrics"]["accuracy"] = 0.5 + 0.5 * NEAR_CHANCE  # F = 0.575: 1 − P(e|g) − P(g|e) = 0.15
    assert "readout fidelity" in chance_warning(fidelity)
    trials[1]["metrics"]["accuracy"] = 0.9
    assert chance_warning(fidelity) is None
    trials[1]["metrics"]["accuracy"] = 0.22
    page_text = write_report(low, tmp_path / "report").read_text()
    assert "<div class='warn' id='near-chance'><b>Warning.</b> Near chance: the best model (trial #1)" in page_text


def test_luts_vs_ebops_of_the_synthesized_models(page, tmp_path) -> None:
    """Seed 001's figure (issue 25): the page's synthesized knee has no EBOPs, so only a note; with EBOPs the figure."""
    _, text, data = page
    assert "<h2>LUTs vs EBOPs (seed 001)</h2><p class='note'>Synthesized but not drawn: #0 knee: no EBOPs" in text
    assert 'src="figures/lut_vs_ebops.png"' not in text and not (page[0].parent / "lut_ebops.csv").exists()
    import dataclasses

    sel = dataclasses.replace(data.selected[0], metrics={**data.selected[0].metrics, "ebops": 1000.0},
                              synthesis={"device": "XC7Z020", "totals": {"luts": 0.4 * 1000.0 ** 0.9}})
    refs = [dataclasses.replace(data.baselines[0], name=f"ref-{x:g}", metrics={"ebops": x},
                                synthesis={"device": "XC7Z020", "totals": {"luts": 0.4 * x ** 0.9}})
            for x in (8000.0, 50000.0)]
    two = dataclasses.replace(data, selected=[sel], baselines=refs[:1], output_dir=None, artefacts=[])
    section = html_page._lut_ebops_html(two, tmp_path, tmp_path / "figures")
    assert (tmp_path / "figures" / "lut_vs_ebops.png").is_file() and (tmp_path / "lut_ebops.csv").is_file()
    assert "<b>No fit:</b> a fit needs ≥ 3 synthesized models with distinct EBOPs; this run has 2." in section
    assert "Grey: the design dataset designs-v1 (250 small MLPs and CNNs, Yosys 0.70" in section
    three = dataclasses.replace(two, baselines=refs)
    page_text = write_report(three, tmp_path / "report").read_text()
    assert 'src="figures/lut_vs_ebops.png"' in page_text
    assert (tmp_path / "report" / "figures" / "lut_vs_ebops.png").is_file()
    assert "over the 3 models: <b>a = 0.4, b = 0.900</b> (LUT = 0.400·EBOPs^0.900, solid)" in page_text
    assert '<a href="lut_ebops.csv">lut_ebops.csv</a> (LUTs vs EBOPs)' in page_text
    with open(tmp_path / "report" / "lut_ebops.csv", newline="") as fh:
        assert [r["model"] for r in csv.DictReader(fh)] == ["#0 knee", "ref-8000", "ref-50000"]
