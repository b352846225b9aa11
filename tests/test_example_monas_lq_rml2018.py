"""examples/monas_lq_rml2018.yaml validates as shipped, and at its smallest runs every stage: the MONAS-LQ
search, the four seed-000 baselines trained on the same data, QONNX export verified with its accuracy, and the
report's Table II / Table III in the seed's layout (docs/reproductions.md, seed 000)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from hwnas.cli import main
from hwnas.config import load_experiment

EXAMPLE = Path(__file__).parents[1] / "examples" / "monas_lq_rml2018.yaml"


def test_the_example_is_the_seed_scale():
    exp = load_experiment(EXAMPLE)
    assert exp.task.name == "amc-rml2018" and exp.task.options["per_pair"] == 410  # 255,840 frames ≈ the 10 % subset
    assert exp.search.strategy == "monas_lq" and [o.metric for o in exp.objectives] == ["accuracy", "qa_score"]
    assert exp.hardware.target == "ZC702" and exp.hardware.model == "finn" and exp.hardware.clock() == 100
    assert exp.run.baselines == ["vgg10-float", "vgg10-32f-8b", "qcnn-32f", "qcnn-64f"]


def test_smallest_run_writes_the_seed_tables_with_baselines(tmp_path: Path, capsys) -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["output"] = "out"
    doc["task"]["options"].update(per_pair=10, snrs=[0, 20], workers=1)
    doc["space"]["conv_blocks"] = {"min": 5, "max": 6}
    doc["space"]["filters"] = [4, 8]
    doc["space"]["dense_units"] = [16]
    doc["training"].update(epochs=1, batch_size=64)
    doc["search"].update(n_trials=4)
    doc["search"]["options"].update(hpo_trials=1, bootstrap_size=2, candidates_per_round=50, train_fraction=0.02,
                                    predictor_epochs=10, swarm_size=4, patience=1)
    doc["run"].update(select=["knee"], export=["qonnx"], verify=["qonnx"], verify_samples=12,
                      baselines=["vgg10-float", "qcnn-32f", "qcnn-64f"])  # vgg10-32f-8b: the path of qcnn-32f
    path = tmp_path / "monas.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert main(["run", str(path), "--quiet"]) == 0
    out = tmp_path / "out"
    records = {p.stem: json.loads(p.read_text()) for p in (out / "baselines").glob("*.json")}
    assert set(records) == {"vgg10-float", "qcnn-32f", "qcnn-64f"}
    assert records["qcnn-64f"]["metrics"]["macs"] == 12_864_512 and records["qcnn-32f"]["estimate"]["rows"]
    for name in ("qcnn-32f", "qcnn-64f"):  # fixed point: exported and verified bit for bit
        acc = records[name]["accuracy"]
        assert acc["samples"] == 12 and acc["qonnx"] == acc["torch"], (name, acc)
    assert records["vgg10-float"]["accuracy"] is None and records["vgg10-float"]["estimate"] is None
    assert records["vgg10-float"]["verification"].startswith("not verified: ")
    assert "FINN" in records["vgg10-float"]["unpriced"] and records["vgg10-float"]["metrics"]["test_accuracy"] >= 0
    assert set(records["qcnn-32f"]["accuracy_per_snr"]) == {"0", "20"}
    with open(out / "report" / "table2.csv") as fh:
        table2 = list(csv.DictReader(fh))
    names = [r["Model"] for r in table2]
    assert names[0] == "ZC702 capacity" and names[1].startswith("MLQ 1")
    assert names[-3:] == ["vgg10-float", "qcnn-32f", "qcnn-64f"]
    assert any(k == "MAC load [% of qcnn-64f]" for k in table2[0])
    ref = next(r for r in table2 if r["Model"] == "qcnn-64f")
    assert float(next(v for k, v in ref.items() if k.startswith("MAC load"))) == 100.0
    with open(out / "report" / "table3.csv") as fh:
        table3 = {r["Model"]: r for r in csv.DictReader(fh)}
    assert table3["qcnn-32f"]["ΔAcc [points]"] in ("+0.00", "0.00", "-0.00")
    page = (out / "report" / "index.html").read_text()
    assert "Table II" in page and "qcnn-64f" in page and "Baselines trained on the same data" in page
    assert "qcnn-32f" in (out / "report" / "baselines.md").read_text()
    # the measuring settings changed (fewer verification samples): measured again, not retrained
    doc["run"]["verify_samples"] = 5
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    capsys.readouterr()
    assert main(["run", str(path), "--stages", "baselines", "--quiet"]) == 0
    log = capsys.readouterr().out
    assert log.count("trained earlier; measuring again") == 3 and "training 1 epoch" not in log
    again = {p.stem: json.loads(p.read_text()) for p in (out / "baselines").glob("*.json")}
    assert again["qcnn-32f"]["accuracy"]["samples"] == 5
    assert again["qcnn-32f"]["metrics"]["test_accuracy"] == records["qcnn-32f"]["metrics"]["test_accuracy"]
    assert again["qcnn-32f"]["epochs"] == 1
    assert main(["run", str(path), "--stages", "baselines", "--force", "--quiet"]) == 0
    assert capsys.readouterr().out.count("trained and measured earlier; kept") == 3
