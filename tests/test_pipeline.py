"""hwnas run: every stage on a tiny experiment, artefacts agree, resume skips, the report renders."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hwnas.cli import main
from hwnas.config import load_experiment
from hwnas.export import load_model
from hwnas.pipeline import STAGES

ONE_EPOCH_ACCURACY_BOPS = """\
objectives:
  - {metric: accuracy, direction: maximize}
  - {metric: bops, direction: minimize}
hardware: {target: zcu104, model: hls4ml}
training: {epochs: 1}
"""
"""Objectives, hardware model and training shared by the experiments below."""

TINY = """\
name: tiny
seed: 5
output: out
task: {name: digits}
space:
  family: mlp
  dense_layers: {min: 1, max: 1}
  dense_units: [8, 16]
  precision: {weight_bits: {min: 3, max: 6}, act_bits: {min: 3, max: 6}}
""" + ONE_EPOCH_ACCURACY_BOPS + """search: {strategy: random, n_trials: 3}
run:
  select: [knee, best]
  export: [qonnx, hls4ml, rtl]
  hls4ml: {reuse_factor: 4}
  verify: [hls4ml]
  verify_samples: 50
  synth: auto
  local: {enabled: true, precisions: [[8, 3]], warmup_epochs: 1, iterations: 1, epochs_per_iteration: 1, max_drop: 1.0}
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, str]:
    """A tiny experiment run through every stage once (module-scoped: the tests read its folder)."""
    pytest.importorskip("hls4ml", reason="hls4ml is not installed (pip install 'hwnas[export]')")
    if shutil.which("g++") is None:
        pytest.skip("g++ is not on PATH (hls4ml's C emulation)")
    folder = tmp_path_factory.mktemp("run")
    path = folder / "exp.yaml"
    path.write_text(TINY)
    assert main(["run", str(path), "--quiet"]) == 0
    return path, ""


def test_every_stage_leaves_agreeing_artefacts(finished):
    path, _ = finished
    exp = load_experiment(path)
    out = exp.output_dir()
    marks = json.loads((out / "stages.json").read_text())
    assert list(marks) == ["search", "select", "local", "export", "verify", "synth", "baselines", "report"]
    selection = json.loads((out / "selection.json").read_text())["selected"]
    assert selection and all(e["rule"] for e in selection)
    numbers = {e["number"] for e in selection}
    # verified model == the local search's model of the selected trial; zero mismatches on the path that ran
    for e in selection:
        local = json.loads((out / "local" / f"trial_{e['number']:05d}.json").read_text())
        assert local["precision"] == [8, 3] and (out / local["checkpoint"]).is_file()
        # the kept model priced like a trial (the report's tables put it beside the searched one)
        assert local["metrics"]["accuracy"] == local["metric"] and local["metrics"]["bops"] == local["bops"]
        assert local["metrics"]["luts"] > 0 and local["estimate"]["rows"]
        assert load_model(out / local["checkpoint"]).metadata["local_search"].startswith("ap_fixed<8,3>")
        ver = json.loads((out / "verify" / f"trial_{e['number']:05d}.json").read_text())
        assert ver["model"] == local["checkpoint"]
        assert ver["trial"] == e["number"] and ver["passed"] and "hls4ml" in ver["ran"]
        hls = next(p for p in ver["paths"] if p["path"] == "hls4ml")
        assert hls["samples"] == 50 and hls["mismatches"] == 0
        # the record's top-1 accuracy on those samples: the bit-exact artefact classifies exactly as torch does
        assert ver["accuracy"]["samples"] == 50 and ver["accuracy"]["hls4ml"] == ver["accuracy"]["torch"]
        assert 0.0 < ver["accuracy"]["torch"] <= 1.0
        # exported == verified: the export stage's hls4ml project is the one compiled, its sources unchanged
        exp_rec = json.loads((out / "export" / f"trial_{e['number']:05d}.json").read_text())
        assert exp_rec["model"] == local["checkpoint"]
        by_path = {p["path"]: p for p in exp_rec["paths"]}
        assert set(by_path) == {"qonnx", "hls4ml", "rtl"}
        project = out / "export" / f"trial_{e['number']:05d}" / "hls4ml"
        assert by_path["hls4ml"]["artefact"] == str(project) and hls["same_as_export"] is True
        assert hls["artefact"] == str(project) and (project / "firmware").is_dir()
        assert all(rf <= 4 for rf in exp_rec["options"]["hls4ml"]["reuse_factor"].values())
        assert "ReuseFactor: 4" in (project / "hls4ml_config.yml").read_text() or max(
            exp_rec["options"]["hls4ml"]["reuse_factor"].values()) < 4
        assert (out / "export" / f"trial_{e['number']:05d}" / "rtl").is_dir() and by_path["rtl"]["digest"]
        assert by_path["qonnx"]["skipped"] or by_path["qonnx"]["digest"]
        bundle = load_model(out / e["checkpoint"])
        assert bundle.metadata["trial"] == e["number"]
        assert bundle.metadata["part"] and bundle.metadata["target"]  # `hwnas export` of the file takes its part
    # report == selection: the selected table lists exactly the selected trials
    with open(out / "report" / "selected.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {int(r["trial"].lstrip("#")) for r in rows} == numbers
    page = (out / "report" / "index.html").read_text()
    for n in numbers:
        assert f"Trial #{n}" in page
    for img in ("pareto_accuracy_bops.png", "resources.png"):
        assert (out / "report" / "figures" / img).is_file() and f"figures/{img}" in page
    assert "verification" in page.lower() and "0 mismatching" not in page  # table cells, not log text
    assert (out / "report" / "verification.md").read_text().count("| hls4ml | 50 | 0 | 0 | ok |") == len(numbers)
    # synthesis (Yosys from the export extra): one result per selected model, shown beside the estimate
    for n in numbers:
        syn = json.loads((out / "synth" / f"trial_{n:05d}.json").read_text())
        assert syn["trial"] == n and syn["model"].endswith(f"local/trial_{n:05d}/model.pt")
        assert syn["totals"]["luts"] > 0
        assert {r["resource"] for r in syn["distributed_arithmetic"]["rows"]} >= {"luts", "dsps"}
    assert "estimate (distributed arithmetic)" in page and f"{n} synthesis" in page
    # seed 001's LUTs vs EBOPs (issue 25): each synthesized local-search model at its own EBOPs and Yosys LUTs
    assert "<h2>LUTs vs EBOPs (seed 001)</h2>" in page and "figures/lut_vs_ebops.png" in page
    assert (out / "report" / "figures" / "lut_vs_ebops.png").is_file()
    with open(out / "report" / "lut_ebops.csv") as fh:
        points = {int(r["trial"]): r for r in csv.DictReader(fh)}
    assert set(points) == numbers
    for n, r in points.items():
        local = json.loads((out / "local" / f"trial_{n:05d}.json").read_text())
        syn = json.loads((out / "synth" / f"trial_{n:05d}.json").read_text())
        assert r["kind"] == "local" and float(r["ebops"]) == local["ebops"]
        assert float(r["luts_yosys"]) == syn["totals"]["luts"]
    assert "a fit needs ≥ 3 synthesized models" in page  # knee and best: at most 2 points
    assert "local search (precision_pairs): kept ap_fixed&lt;8,3&gt;" in page
    assert ">exported</th>" in page and "artefact = export" in page


def test_rerun_skips_finished_stages_and_force_repeats(finished, capsys):
    path, _ = finished
    capsys.readouterr()
    assert main(["run", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped") == len(STAGES) and "[verify] running" not in out
    assert main(["report", str(path), "--force"]) == 0
    assert "[report] running" in capsys.readouterr().out


def test_malformed_experiment_fails_before_any_work(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text(TINY.replace("select: [knee, best]", "select: [knee, fastest]"))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    line = TINY.splitlines().index("  select: [knee, best]") + 1
    assert f"exp.yaml:{line}: run.select[1]: must be 'knee', 'best' or 'cheapest', got 'fastest'" in err
    assert not (tmp_path / "out").exists()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_renders_in_headless_chromium_with_its_images(finished, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); report not rendered")
    path, _ = finished
    page = load_experiment(path).output_dir() / "report" / "index.html"
    shot = tmp_path / "shot.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files",
           "--window-size=1100,2400", f"--screenshot={shot}", page.as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    # the Pareto front's orange markers (#d9480f) exist only inside the loaded PNG figures
    orange = np.abs(pixels - np.array([0xD9, 0x48, 0x0F])).sum(axis=1) < 40
    assert orange.sum() > 50, "the report's figures did not load in Chromium"


_PROBE = """<script>var d=document,w=window.innerWidth,bad=0,sorted=0,t=d.getElementById('trials');
d.querySelectorAll('table').forEach(function(e){var b=e.closest('.scroll');
if(!b||b.getBoundingClientRect().right>w+1)bad++;});
if(t){var h=t.tHead.rows[0].cells[0];h.click();h.click();
var v=[].map.call(t.tBodies[0].rows,function(r){return Number(r.cells[0].getAttribute('data-v'));});
sorted=v.length>1&&v[0]>v[v.length-1]&&v.every(function(x,i){return !i||v[i-1]>=x;})?1:2;}
d.title='W'+d.documentElement.scrollWidth+'/'+w+' X'+bad+' S'+sorted;</script>"""
"""Writes into the title: the page's width / the window's, the tables outside a scroll box that fits the window, and
whether the trials table sorts (1: two clicks on its trial header put the largest trial first; 0: no such table)."""


@pytest.mark.parametrize("width", [1400, 800])
def test_report_fits_the_window_width(finished, tmp_path, width):
    """No table widens the page: at 1400 and 800 px the document is no wider than the window (wide tables, the
    selected models' and all trials' included, scroll inside their own box that fits the window). Measured by
    Chromium itself: a copy of the page writes its scrollWidth into the title; the same start clicks the all-trials
    table's header twice and checks it sorted descending (the inline script; the page opens offline)."""
    browser = _chromium()
    if browser is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); report not rendered")
    path, _ = finished
    page = load_experiment(path).output_dir() / "report" / "index.html"
    probe = page.with_name(f"probe_{width}.html")
    probe.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    try:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files",
               f"--window-size={width},900", "--dump-dom", probe.as_uri()]
        dom = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout
    finally:
        probe.unlink()
    found = re.search(r"<title>W(\d+)/(\d+) X(\d+) S(\d)</title>", dom)
    assert found, dom[:500]
    scroll, inner = int(found.group(1)), int(found.group(2))
    assert inner > 0 and scroll <= inner, f"the page is {scroll} px wide in a {inner} px window"
    assert found.group(3) == "0", f"{found.group(3)} tables outside a scroll box that fits the window"
    assert 'id="trials"' in dom and found.group(4) == "1", "the all-trials table did not sort on a header click"


def test_example_experiments_are_valid():
    examples = sorted((Path(__file__).parents[1] / "examples").glob("*.yaml"))
    assert examples
    for path in examples:
        exp = load_experiment(path)  # a ConfigError names the file, line and key
        assert exp.output_dir().parent.name == "runs"


def test_stage_commands_take_the_experiment(finished, capsys):
    path, _ = finished
    capsys.readouterr()
    assert main(["export", str(path), "--force", "--quiet"]) == 0
    out = capsys.readouterr().out
    # export forced: it and every later stage run again; the verified project is still the exported one
    assert "[export] running" in out and "[verify] running" not in out  # one stage only
    assert main(["verify", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "[verify] running" in out and "0 mismatching of 50" in out
    assert main(["local", str(path), "--quiet"]) == 0
    assert "[local] done earlier" in capsys.readouterr().out


def _run_single(tmp_path: Path, text: str) -> tuple[Path, dict]:
    """Run a one-trial experiment (output ``out``) through every stage; its folder and local-search record."""
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    assert main(["run", str(path), "--quiet"]) == 0
    out = tmp_path / "out"
    return out, json.loads((out / "local" / "trial_00000.json").read_text())


LEARNED = """\
name: tiny-hgq
seed: 3
output: out
task: {name: digits}
space:
  family: mlp
  dense_layers: {min: 1, max: 1}
  dense_units: [16]
  precision: {mode: learned, beta: 1.0e-6}
objectives:
  - {metric: accuracy, direction: maximize}
  - {metric: ebops, direction: minimize}
hardware: {target: zcu104, model: none}
training: {epochs: 3}
search: {strategy: random, n_trials: 1}
run:
  select: [best]
  local: {enabled: true, method: beta_sweep, beta0: 1.0e-6, beta1: 1.0e-3, sweep_epochs: 4, max_drop: 1.0}
  export: [qonnx, hls4ml]
  verify: [hls4ml]
  verify_samples: 40
  synth: off
"""


def test_beta_sweep_local_search_keeps_the_cheapest_front_model(tmp_path):
    pytest.importorskip("hls4ml", reason="hls4ml is not installed (pip install 'hwnas[export]')")
    out, rec = _run_single(tmp_path, LEARNED)
    assert rec["method"] == "beta_sweep" and rec["kept"].startswith("HGQ β-sweep epoch")
    assert rec["ranked_by"] == "EBOPs" and rec["candidates"] >= 1 and "| epoch | beta |" in rec["table"]
    # max_drop 1.0 admits every front model: the kept one is the one of fewest EBOPs, and its EBOPs are the
    # saved model's
    model = load_model(out / rec["checkpoint"]).model
    import torch

    from hwnas.nn import ebops

    with torch.no_grad():
        assert float(ebops(model)) == pytest.approx(rec["ebops"], rel=1e-6)
    assert rec["ebops"] <= rec["cost"] + 1e-6
    ver = json.loads((out / "verify" / "trial_00000.json").read_text())
    hls = next(p for p in ver["paths"] if p["path"] == "hls4ml")
    assert hls["mismatches"] == 0 and hls["same_as_export"] is True


def test_beta_sweep_accepts_fixed_precision(tmp_path):
    # a fixed-precision search's model is converted to learnable HGQ bit-widths (hwnas.nn.to_learnable) for the
    # sweep (run end to end in tests/test_hgq_from_fixed.py); the experiment used to be refused
    path = tmp_path / "exp.yaml"
    path.write_text(LEARNED.replace("precision: {mode: learned, beta: 1.0e-6}", "precision: {weight_bits: [4]}")
                    .replace("metric: ebops", "metric: bops"))
    exp = load_experiment(path)
    assert exp.space.precision.mode == "fixed" and exp.run.local.method == "beta_sweep"


PTQ = """\
name: tiny-ptq
seed: 3
output: out
task: {name: digits}
space:
  family: mlp
  dense_layers: {min: 1, max: 1}
  dense_units: [16]
  precision: {weight_bits: [16], act_bits: [16], input_bits: 16}
objectives:
  - {metric: accuracy, direction: maximize}
  - {metric: params, direction: minimize}
hardware: {target: zcu104, model: none}
training: {epochs: 3}
search: {strategy: random, n_trials: 1}
run:
  select: [best]
  local: {enabled: true, method: ptq, ptq_schemes: [int8-channel, int4-tensor, fp16], ptq_activation_bits: 8,
          max_drop: 1.0}
  export: [qonnx, hls4ml]
  verify: [qonnx]
  verify_samples: 50
  synth: off
"""


def test_ptq_local_search_tables_and_bit_exact_qonnx(tmp_path):
    pytest.importorskip("qonnx", reason="qonnx is not installed (pip install 'hwnas[export]')")
    out, rec = _run_single(tmp_path, PTQ)
    # max_drop 1.0: the smallest scheme (int4 per-tensor) is kept; the table lists every scheme and layer
    assert rec["method"] == "ptq" and rec["scheme"] == "int4-tensor"
    assert rec["kept"] == "PTQ weights int4 per-tensor, activations int8, output int8"
    for row in ("weights int8 per-channel", "weights int4 per-tensor", "weights fp16 per-tensor", "sensitivity"):
        assert row in rec["table"]
    assert "| 0.weight | weight |" in rec["table"]
    exp_rec = json.loads((out / "export" / "trial_00000.json").read_text())
    by_path = {p["path"]: p for p in exp_rec["paths"]}
    assert by_path["qonnx"]["digest"] and "ScaledIntQuantizer" in by_path["hls4ml"]["skipped"]
    ver = json.loads((out / "verify" / "trial_00000.json").read_text())
    qonnx = next(p for p in ver["paths"] if p["path"] == "qonnx")
    assert ver["passed"] and qonnx["samples"] == 50 and qonnx["mismatches"] == 0 and qonnx["same_as_export"]
    ref = next(p for p in ver["paths"] if p["path"] == "reference")
    assert "ScaledIntQuantizer" in ref["skipped"]


def test_unknown_ptq_scheme_is_named(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text(PTQ.replace("int4-tensor, fp16]", "int4-layer, fp16]"))
    assert main(["run", str(path)]) == 2
    assert "run.local.ptq_schemes: unknown PTQ scheme(s) ['int4-layer']" in capsys.readouterr().err


BATCHNORM = """\
name: tiny-bn
seed: 3
output: out
task: {name: amc-rml2016, options: {per_pair: 10, snrs: [10, 18], progress: false}}
space:
  family: cnn1d
  conv_blocks: {min: 1, max: 1}
  filters: [8]
  kernel: [3]
  batch_norm: [true]
  separable: [false, true]
  dense_layers: {min: 0, max: 0}
  precision: {weight_bits: {min: 3, max: 4}, act_bits: {min: 3, max: 4}}
""" + ONE_EPOCH_ACCURACY_BOPS + """search: {strategy: random, n_trials: 2}
run:
  select: [best]
  export: [qonnx]
  verify: [qonnx]
  verify_samples: 20
  synth: off
"""


def test_a_searched_batchnorm_model_exports_and_verifies_as_trained(tmp_path):
    """BatchNorm in the space: the conv trains it fused, the selected model exports as it is and every sample
    of the export and of the graph reference equals torch (before, every path skipped such a model)."""
    pytest.importorskip("qonnx", reason="qonnx is not installed (pip install 'hwnas[export]')")
    path = tmp_path / "exp.yaml"
    path.write_text(BATCHNORM)
    assert main(["run", str(path), "--quiet"]) == 0
    out = tmp_path / "out"
    n = json.loads((out / "selection.json").read_text())["selected"][0]["number"]
    model = load_model(out / "trials" / f"{n:05d}" / "model.pt").model
    assert any(getattr(m, "bn", None) is not None for m in model.modules())  # fused, not a separate module
    exp_rec = json.loads((out / "export" / f"trial_{n:05d}.json").read_text())
    assert exp_rec["paths"][0]["digest"] and exp_rec["paths"][0]["skipped"] is None
    ver = json.loads((out / "verify" / f"trial_{n:05d}.json").read_text())
    assert ver["passed"] and ver["ran"] == ["qonnx"]
    assert [p["path"] for p in ver["paths"]] == ["reference", "qonnx"]
    assert all(p["samples"] == 20 and p["mismatches"] == 0 for p in ver["paths"])


WINDOW = """\
name: tiny-window
seed: 4
output: out
task:
  name: qubit-readout
  options: {n_shots: 800}
space:
  family: mlp
  dense_layers: 1
  dense_units: [4]
  precision: {weight_bits: [4], act_bits: [4], input_bits: 8}
  task_options:
    window_start: [100, 200]
    window_size: [8, 24]
objectives:
  - {metric: accuracy, direction: maximize}
  - {metric: luts, direction: minimize}
hardware: {target: zcu102, model: hls4ml}
training: {epochs: 1}
search: {strategy: random, n_trials: 3}
run:
  select: [knee, best]
  local: {enabled: true, precisions: [[8, 3]], warmup_epochs: 1, iterations: 1, epochs_per_iteration: 1, max_drop: 1.0}
  export: [hls4ml]
  hls4ml: {reuse_factor: 4}
  verify: [hls4ml]
  verify_samples: 40
  synth: off
"""


def test_searched_readout_window_reaches_every_stage(tmp_path):
    pytest.importorskip("hls4ml", reason="hls4ml is not installed (pip install 'hwnas[export]')")
    if shutil.which("g++") is None:
        pytest.skip("g++ is not on PATH (hls4ml's C emulation)")
    import optuna
    import torch

    from hwnas.tasks import get_task

    path = tmp_path / "exp.yaml"
    path.write_text(WINDOW)
    assert main(["run", str(path), "--quiet"]) == 0
    exp = load_experiment(path)
    out = tmp_path / "out"
    study = optuna.load_study(study_name=exp.study_name(), storage=exp.storage_url())
    selected = json.loads((out / "selection.json").read_text())["selected"]
    rows = {r["trial"]: r for r in csv.DictReader(open(out / "report" / "selected.csv"))}
    for entry in selected:
        n = entry["number"]
        opts = study.trials[n].user_attrs["task_options"]
        start, size = opts["window_start"], opts["window_size"]
        data = get_task("qubit-readout").load(seed=exp.seed, **opts)
        # the local search trained on the trial's window and its model carries it to export, verify and report
        local = load_model(out / "local" / f"trial_{n:05d}" / "model.pt")
        assert tuple(local.input_shape) == (2 * size,) and local.metadata["task_options"] == opts
        assert torch.equal(local.test_inputs, data.test.x[:256])
        ver = json.loads((out / "verify" / f"trial_{n:05d}.json").read_text())
        paths = {p["path"]: p for p in ver["paths"]}
        assert ver["passed"] and ver["model"].endswith(f"local/trial_{n:05d}/model.pt")
        for name in ("reference", "hls4ml"):
            assert paths[name]["samples"] == 40 and paths[name]["mismatches"] == 0, paths[name]
        assert (out / "export" / f"trial_{n:05d}" / "hls4ml").is_dir()
        row = rows[f"#{n}"]
        assert (int(row["window_start"]), int(row["window_size"])) == (start, size)
        assert f"window_size={size},window_start={start}" in row["point"]
    html = (out / "report" / "index.html").read_text()
    assert "searched: window_start [100, 200], window_size [8, 24]" in html
