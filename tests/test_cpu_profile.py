"""Profiling a CPU latency table once: ``hwnas profile-cpu``, ``ensure_table``, ``hardware.cpu_profile``, report."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("onnx", reason="onnx is not installed; the CPU latency table needs onnx and onnxruntime")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed; the CPU latency table needs it")

from optuna.trial import TrialState

from hwnas.cli import build_parser, main
from hwnas.config import ConfigError, load_experiment
from hwnas.cost.cpu_latency import FORMAT, LatencyTable
from hwnas.cost.cpu_profile import CpuTableError, ensure_table, profile_table
from hwnas.search.run import experiment_metadata, run_search


@pytest.fixture(scope="module")
def profiled(tmp_path_factory) -> Path:
    """A quick-grid table written by ``hwnas profile-cpu`` (module-scoped: profiled once)."""
    path = tmp_path_factory.mktemp("cli") / "tables" / "cpu.json"  # the folder does not exist yet
    assert main(["profile-cpu", str(path), "--grid", "quick", "--quiet"]) == 0
    return path


def test_profile_cpu_writes_a_loadable_table(profiled, capsys):
    table = LatencyTable.load(profiled)
    assert json.loads(profiled.read_text())["format"] == FORMAT
    assert len(table) > 20 and {"conv2d", "linear", "relu", "identity"} <= table.kinds()
    assert table.session["pinned_cpu"] is not None and table.machine["threads"] == 1
    assert not list(profiled.parent.glob("*.tmp"))  # the atomic write left no temporary file
    umask = os.umask(0)
    os.umask(umask)
    assert profiled.stat().st_mode & 0o777 == 0o666 & ~umask  # not private like a temporary file


def test_profile_cpu_keeps_an_existing_table_without_force(profiled, tmp_path, capsys):
    path = tmp_path / "cpu.json"
    shutil.copy(profiled, path)
    before = path.read_bytes()
    capsys.readouterr()
    assert main(["profile-cpu", str(path), "--grid", "quick", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "exists" in out and "kept (--force profiles again)" in out
    assert path.read_bytes() == before
    assert main(["profile-cpu", str(path), "--grid", "quick", "--quiet", "--force"]) == 0
    assert "operators timed in" in capsys.readouterr().out
    assert path.read_bytes() != before and len(LatencyTable.load(path)) == len(LatencyTable.load(profiled))


@pytest.mark.parametrize("content", ["not json at all\n", '{"format": "something-else"}\n',
                                     '{"format": "hwnas-cpu-latency/1", "entries": []}\n'])
def test_profile_cpu_refuses_a_file_that_is_not_a_table(tmp_path, capsys, content):
    path = tmp_path / "notes.json"
    path.write_text(content)
    assert main(["profile-cpu", str(path), "--grid", "quick", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"hwnas: error: {path}: " in err and "hwnas-cpu-latency/1 latency table" in err
    assert "the existing file is not overwritten" in err
    assert path.read_text() == content  # left as it was


def test_profile_cpu_errors(tmp_path, capsys):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert main(["profile-cpu", str(folder), "--quiet"]) == 2
    assert "exists and is not a file" in capsys.readouterr().err
    assert main(["profile-cpu", str(tmp_path / "t.json"), "--threads", "0", "--quiet"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()


def test_help_documents_profile_cpu():
    text = build_parser().format_help()
    assert "profile-cpu" in text and "hardware.cpu_table" in text
    sub = build_parser()._subparsers._group_actions[0].choices["profile-cpu"].format_help()
    for option in ("--grid", "--force", "--threads", "--cpu", "--quiet"):
        assert option in sub


def test_ensure_table_profiles_once_then_loads(tmp_path):
    path = tmp_path / "run" / "cpu.json"
    table, profiled = ensure_table(path, grid="quick", progress=False)
    assert profiled and path.is_file()
    assert not path.with_name("cpu.json.lock").exists()  # the lock goes once the table exists
    again, profiled = ensure_table(path, grid="quick", progress=False)
    assert not profiled and again.entries == table.entries and again.created == table.created


def test_ensure_table_never_overwrites_a_foreign_file(tmp_path):
    path = tmp_path / "cpu.json"
    path.write_text("[1, 2, 3]")
    with pytest.raises(ValueError, match="not a hwnas-cpu-latency/1 latency table"):
        ensure_table(path, grid="quick", progress=False)
    assert path.read_text() == "[1, 2, 3]"
    with pytest.raises(ValueError, match="is not a file"):
        ensure_table(tmp_path, grid="quick", progress=False)
    with pytest.raises(ValueError, match="grid must be one of"):
        ensure_table(tmp_path / "x.json", grid="huge", progress=False)  # type: ignore[arg-type]


def test_a_failed_save_leaves_no_half_written_table(profiled, tmp_path, monkeypatch):
    table = LatencyTable.load(profiled)
    path = tmp_path / "cpu.json"

    def broken(self: LatencyTable) -> dict:
        return {"format": FORMAT, "entries": {"a": object()}}  # json.dump fails half-way through

    monkeypatch.setattr(LatencyTable, "to_dict", broken)
    with pytest.raises(TypeError):
        table.save(path)
    assert list(tmp_path.iterdir()) == []  # neither the table nor the temporary file
    monkeypatch.undo()
    monkeypatch.setattr("hwnas.cost.cpu_profile.profile_operators", lambda *a, **k: table)
    assert profile_table(path, grid="quick", progress=False) is table
    assert LatencyTable.load(path).entries == table.entries


# ------------------------------------------------------------------------------------------------ config
EXP = """\
name: cpu
seed: 1
output: out
task: {name: digits}
space:
  family: mlp
  dense_layers: {min: 1, max: 2}
  dense_units: [8, 16, 32]
  precision: {weight_bits: [4, 8], act_bits: [4, 8]}
objectives:
  - {metric: accuracy, direction: maximize}
  - {metric: cpu_latency_ms, direction: minimize}
constraints:
  - {metric: memory_kb, max: 1.5}
hardware: {model: none, cpu_table: tables/cpu.json, cpu_profile: PROFILE}
training: {epochs: 1}
search:
  strategy: ha_nas
  n_trials: 6
  options: {warmup_trials: 4, population_size: 2, candidates_per_generation: 12, predictor_epochs: 20}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_missing_table_without_profiling_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_experiment(_write(tmp_path, EXP.replace("PROFILE", "never")))
    text = str(info.value)
    assert "exp.yaml:15: hardware.cpu_table: no such file: " in text
    assert f"hwnas profile-cpu {tmp_path / 'tables' / 'cpu.json'}" in text and "hardware.cpu_profile" in text
    with pytest.raises(ConfigError, match=r"hardware\.cpu_table: no such file"):  # never is the default
        load_experiment(_write(tmp_path, EXP.replace(", cpu_profile: PROFILE", "")))


@pytest.mark.parametrize("profile", ["quick", "default"])
def test_missing_table_with_profiling_validates(tmp_path, profile):
    exp = load_experiment(_write(tmp_path, EXP.replace("PROFILE", profile)))
    assert exp.hardware.cpu_profile == profile and exp.cpu_table_path() == tmp_path / "tables" / "cpu.json"
    assert not exp.cpu_table_path().exists()  # validating profiles nothing


def test_cpu_profile_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"hardware.cpu_profile: 'quick' needs hardware.cpu_table"):
        load_experiment(_write(tmp_path, EXP.replace("cpu_table: tables/cpu.json, cpu_profile: PROFILE",
                                                     "cpu_profile: quick").replace(
            "  - {metric: cpu_latency_ms, direction: minimize}\n", "")))
    with pytest.raises(ConfigError, match=r"hardware\.cpu_profile: must be 'never', 'default' or 'quick'"):
        load_experiment(_write(tmp_path, EXP.replace("PROFILE", "always")))
    (tmp_path / "tables" / "cpu.json").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"hardware\.cpu_table: .*cpu\.json is not a file"):
        load_experiment(_write(tmp_path, EXP.replace("PROFILE", "quick")))


def test_cpu_profile_does_not_change_the_study(tmp_path, profiled):
    (tmp_path / "tables").mkdir()
    shutil.copy(profiled, tmp_path / "tables" / "cpu.json")
    never = load_experiment(_write(tmp_path, EXP.replace("PROFILE", "never")))
    quick = load_experiment(_write(tmp_path, EXP.replace("PROFILE", "quick")))
    assert experiment_metadata(never) == experiment_metadata(quick)


# -------------------------------------------------------------------------------------- search and report
def test_ha_nas_profiles_the_missing_table_before_the_search(tmp_path):
    exp = load_experiment(_write(tmp_path, EXP.replace("PROFILE", "quick")))
    table_path = tmp_path / "tables" / "cpu.json"
    assert not table_path.exists()
    study = run_search(exp, progress=False).study
    assert table_path.is_file() and len(LatencyTable.load(table_path)) > 20
    trials = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(trials) == 6 and all(t.user_attrs["metrics"]["cpu_latency_ms"] > 0 for t in trials)
    assert any(t.user_attrs["guided"]["stage"] == "round" for t in trials)
    created = LatencyTable.load(table_path).created
    run_search(exp, progress=False)  # resumed: the table is loaded, not profiled again
    assert LatencyTable.load(table_path).created == created


def test_an_unreadable_table_fails_the_search_naming_the_field(tmp_path, capsys):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "cpu.json").write_text('{"format": "hwnas-cpu-latency/1"}')
    path = _write(tmp_path, EXP.replace("PROFILE", "quick"))
    with pytest.raises(CpuTableError, match=r"hardware\.cpu_table: .*malformed"):
        run_search(load_experiment(path), progress=False)
    assert main(["search", str(path), "--quiet"]) == 2
    assert "hwnas: error: hardware.cpu_table: " in capsys.readouterr().err
    assert not (tmp_path / "out" / "study.db").exists()


REPORT = """\
name: cpu-report
seed: 0
output: out
task: {name: digits-image}
space:
  family: cnn2d
  conv_blocks: 1
  filters: [4]
  kernel: [3]
  dense_layers: 0
  precision: {weight_bits: [8], act_bits: [8], per_layer: false}
objectives:
  - {metric: accuracy, direction: maximize}
  - {metric: cpu_latency_ms, direction: minimize}
hardware: {model: none, cpu_table: cpu.json}
training: {epochs: 1}
search: {strategy: random, n_trials: 1}
run: {select: [best], export: [], verify: [], synth: off}
"""


def test_report_breaks_the_cpu_latency_down_per_layer(tmp_path, profiled):
    shutil.copy(profiled, tmp_path / "cpu.json")
    path = _write(tmp_path, REPORT)
    assert main(["run", str(path), "--quiet"]) == 0
    report = tmp_path / "out" / "report"
    page = (report / "index.html").read_text()
    assert "CPU latency table" in page and f"{(tmp_path / 'cpu.json').resolve()}: " in page
    assert "CPU latency (onnxruntime, predicted from the latency table)" in page
    assert "measured on this machine" in page or "not measured" in page
    assert (report / "figures" / "cpu_latency_00000.png").is_file() and "figures/cpu_latency_00000.png" in page
    for cell in (">conv2d<", ">relu+fused<", ">maxpool2d<", ">linear<", ">(session overhead)<"):
        assert cell in page
    # no FPGA cost model: no resource section of zeros
    assert "Resource utilization" not in page and "no FPGA cost model" in page
