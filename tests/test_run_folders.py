"""Run folders are relocatable: recorded paths are relative, and a moved or copied folder uses its own files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest

from hwnas.cli import main
from hwnas.config import load_experiment
from hwnas.export import load_model
from hwnas.runpaths import record_path, resolve_path
from tests.experiments import tiny_mlp

EXPERIMENT = tiny_mlp(name="reloc", seed=2, dense_min=1, bits="{min: 3, max: 6}", extra="""\
run:
  select: [knee, best]
  export: [qonnx]
  verify: [qonnx]
  verify_samples: 20
  synth: "off"
""")


def test_record_and_resolve_paths(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert record_path(out / "trials" / "00003" / "model.pt", out) == "trials/00003/model.pt"
    assert record_path(tmp_path / "elsewhere.pt", out) == str(tmp_path / "elsewhere.pt")
    assert resolve_path("trials/00003/model.pt", out) == out / "trials" / "00003" / "model.pt"
    copy = tmp_path / "copy"
    (copy / "trials" / "00003").mkdir(parents=True)
    (copy / "trials" / "00003" / "model.pt").write_bytes(b"x")
    old = str(out / "trials" / "00003" / "model.pt")  # an absolute record of an older hwnas, in another folder
    assert resolve_path(old, copy) == copy / "trials" / "00003" / "model.pt"
    assert resolve_path(old, tmp_path / "empty") == Path(old)  # nothing of that name here: left as recorded


def test_copied_and_moved_run_folders_use_their_own_models(tmp_path: Path, capsys) -> None:
    pytest.importorskip("qonnx")
    first = tmp_path / "first"
    first.mkdir()
    (first / "exp.yaml").write_text(EXPERIMENT)
    assert main(["run", str(first / "exp.yaml"), "--quiet", "--stages", "search,select"]) == 0
    exp = load_experiment(first / "exp.yaml")
    study = optuna.load_study(study_name="reloc", storage=exp.storage_url())
    recorded = [t.user_attrs["checkpoint"] for t in study.trials]
    assert all(not Path(r).is_absolute() and r.startswith("trials/") for r in recorded)

    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    # damage the original's models: a copy that read them would fail (or, worse, verify the wrong models)
    for r in recorded:
        (first / "out" / r).write_bytes(b"damaged")
    capsys.readouterr()
    assert main(["run", str(copy / "exp.yaml"), "--quiet", "--stages", "export,verify"]) == 0
    copy_out = copy / "out"
    for sel in json.loads((copy_out / "selection.json").read_text())["selected"]:
        n = sel["number"]
        ver = json.loads((copy_out / "verify" / f"trial_{n:05d}.json").read_text())
        assert ver["model"] == f"trials/{n:05d}/model.pt" and ver["passed"]
        assert load_model(copy_out / ver["model"]).metadata["trial"] == n
    assert main(["pareto", str(copy / "exp.yaml")]) == 0
    front = json.loads((copy_out / "pareto" / "pareto.json").read_text())["front"]
    assert front and all(rec["checkpoint"] and "checkpoint_error" not in rec for rec in front)

    moved = tmp_path / "moved"
    shutil.move(copy, moved)
    assert main(["run", str(moved / "exp.yaml"), "--quiet", "--stages", "verify", "--force"]) == 0
    assert main(["report", str(moved / "exp.yaml"), "--quiet", "--force"]) == 0
    assert (moved / "out" / "report" / "index.html").is_file()
    # the damaged original is still refused, by name, without a traceback
    assert main(["pareto", str(first / "exp.yaml")]) == 0
    front = json.loads((first / "out" / "pareto" / "pareto.json").read_text())["front"]
    assert all(rec["checkpoint"] is None and "model.pt" in rec["checkpoint_error"] for rec in front)
