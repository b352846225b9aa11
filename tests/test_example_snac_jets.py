"""examples/snac_jets.yaml at its smallest: jets generated fresh, NSGA-II with lr/L1 searched, 3-fold trials,
avg_resource, the local search and an hls4ml export verified bit for bit (docs/run.md)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from hwnas.cli import main

EXAMPLE = Path(__file__).parents[1] / "examples" / "snac_jets.yaml"


def test_snac_jets_example_runs_end_to_end_at_its_smallest(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HWNAS_DATA", str(tmp_path / "data"))
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["output"] = "out"
    doc["task"]["options"].update(n_per_class=12, classes=["q", "w", "t"], events_per_shard=40, workers=1)
    doc["space"]["dense_layers"] = {"min": 1, "max": 2}
    doc["space"]["dense_units"] = [8, 16]
    doc["training"]["epochs"] = 1
    doc["search"].update(n_trials=2, options={"population_size": 2})
    doc["run"]["select"] = ["best"]
    doc["run"]["local"].update(precisions=[[8, 3]], warmup_epochs=1, iterations=1, epochs_per_iteration=1)
    doc["run"]["export"] = ["hls4ml"]
    doc["run"]["verify_samples"] = 20
    doc["run"]["synth"] = "off"
    path = tmp_path / "snac_jets.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert main(["run", str(path), "--quiet"]) == 0
    out = tmp_path / "out"
    # both trials ran, each with its sampled lr/L1 and 3-fold accuracy
    import optuna

    study = optuna.load_study(study_name=None, storage=f"sqlite:///{out / 'study.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2
    for t in done:
        assert t.params["training.lr"] in (1.0e-3, 1.5e-3, 2.0e-3)
        assert t.params["training.l1"] in (0.0, 1.0e-6, 1.0e-5, 1.0e-4)
        assert len(t.user_attrs["folds"]) == 3
    verify = [json.loads(p.read_text()) for p in (out / "verify").glob("trial_*.json")]
    assert verify and all(v["passed"] and "hls4ml" in v["ran"] for v in verify), verify
    assert all(p["mismatches"] == 0 for v in verify for p in v["paths"])
    assert (out / "export").is_dir() and list((out / "local").glob("trial_*.json"))
    assert "avg_resource" in (out / "report" / "index.html").read_text()
