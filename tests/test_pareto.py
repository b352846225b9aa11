"""Pareto archive: exact fronts on hand-made trials, constraints, selection rules, knee, hypervolume, export."""

import csv
import json
import math
import shutil

import numpy as np
import optuna
import pytest
import yaml
from optuna.trial import TrialState, create_trial

from hwnas.search.pareto import (
    NoSelectionError,
    ParetoArchive,
    hypervolume,
    nondominated_ranks,
    read_export,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

OBJECTIVES = [("accuracy", "maximize"), ("luts", "minimize")]


def _add(study, acc, luts, *, constraints=None, state=TrialState.COMPLETE, checkpoint=None, **metrics):
    dist = optuna.distributions.FloatDistribution(0, 1)
    attrs = {"metrics": {"accuracy": acc, "luts": luts, **metrics}, "point": {"width": int(luts)},
             "vector": [int(luts)]}
    if constraints is not None:
        attrs["constraints"] = constraints
    if checkpoint is not None:
        attrs["checkpoint"] = str(checkpoint)
    study.add_trial(create_trial(state=state, values=[acc, luts] if state == TrialState.COMPLETE else None,
                                 params={"p": acc}, distributions={"p": dist}, user_attrs=attrs))


def _model_file(path):
    import torch

    import hwnas.nn as hn
    from hwnas.export import save_model

    model = hn.QLinear(4, 2)
    model(torch.randn(8, 4))
    return save_model(model, path, (4,))


@pytest.fixture
def study(tmp_path):
    s = optuna.create_study(study_name="hand", directions=["maximize", "minimize"])
    ckpt = _model_file(tmp_path / "model_0.pt")
    bad = tmp_path / "model_9.pt"
    bad.write_bytes(b"weights-9")  # corrupt: never copied into the archive
    _add(s, 0.90, 100, constraints=[-0.1, -2.0], checkpoint=ckpt, latency_ms=3.0)  # 0 front
    _add(s, 0.95, 200, constraints=[-0.5, 0.0], latency_ms=5.0)  # 1 front (a constraint exactly 0 is met)
    _add(s, 0.85, 150, constraints=[-1.0, -1.0], latency_ms=1.0)  # 2 dominated by 0
    _add(s, 0.99, 50, constraints=[0.5, -1.0], latency_ms=0.5)  # 3 infeasible; would dominate everything
    _add(s, 0.95, 200, constraints=[-0.2, -0.2], checkpoint=tmp_path / "missing.pt", latency_ms=6.0)  # 4 = 1
    _add(s, 0.80, 40, latency_ms=2.0)  # 5 front, no constraints recorded: feasible
    _add(s, 0.0, 0, state=TrialState.FAIL)  # 6 failed: ignored
    _add(s, 0.95, 250, constraints=[-1.0, -1.0], latency_ms=4.0)  # 7 tie on accuracy, worse luts
    _add(s, 0.70, 30, constraints=[-1.0, math.nan])  # 8 NaN constraint: infeasible
    _add(s, 0.60, 20, constraints=[-1.0, -1.0], checkpoint=bad)  # 9 front
    return s


def _numbers(trials):
    return [t.number for t in trials]


def test_nondominated_ranks_ties_and_duplicates():
    losses = [[1, 5], [2, 2], [2, 2], [5, 1], [2, 3], [3, 3], [6, 6], [1, 5]]
    assert nondominated_ranks(losses).tolist() == [0, 0, 0, 0, 1, 2, 3, 0]
    assert nondominated_ranks(np.zeros((0, 2))).tolist() == []
    with pytest.raises(ValueError, match="NaN"):
        nondominated_ranks([[1, math.nan]])


def test_front_is_exact_and_excludes_infeasible(study):
    archive = ParetoArchive.from_study(study, OBJECTIVES)
    assert _numbers(archive.front) == [9, 5, 0, 1, 4]  # sorted by (accuracy, luts)
    assert _numbers(archive.infeasible) == [3, 8]
    assert _numbers(archive.feasible) == [0, 1, 2, 4, 5, 7, 9]
    assert archive.ranks[2] == 1 and archive.ranks[7] == 1
    assert 6 not in archive.ranks and archive.values(0) == (0.90, 100.0)

    unconstrained = ParetoArchive.from_study(study, OBJECTIVES, constraints=False)
    assert _numbers(unconstrained.front) == [9, 8, 5, 3]  # the infeasible 3 dominates 0, 1, 4
    assert unconstrained.infeasible == []


def test_missing_or_nan_objective_is_excluded_with_reason(study):
    study.add_trial(create_trial(values=[0.5, 10.0], user_attrs={"metrics": {"accuracy": math.nan, "luts": 10}}))
    study.add_trial(create_trial(values=[0.5, 1.0], user_attrs={"metrics": {"luts": 1.0}}))  # 11: no accuracy
    study.add_trial(create_trial(values=[0.5, 2.0]))  # 12: no metrics at all: the objective values are used
    archive = ParetoArchive.from_study(study, OBJECTIVES)
    assert "NaN" in archive.excluded[10]
    assert "no value for objective 'accuracy'" in archive.excluded[11]
    assert 12 not in archive.excluded and archive.values(12) == (0.5, 2.0)
    other = ParetoArchive.from_study(study, [("accuracy", "maximize"), ("latency_ms", "minimize")])
    assert "latency_ms" in other.excluded[9] and 9 not in _numbers(other.front)


def test_selection_rules(study):
    archive = ParetoArchive.from_study(study, OBJECTIVES)
    assert archive.best_under_budgets("accuracy", "maximize", {"luts": 150}).number == 0
    assert archive.best_under_budgets("accuracy", "maximize", {"luts": 200}).number == 1  # tie 1/4: lower number
    assert archive.best_under_budgets("accuracy", "maximize", {"luts": 300, "latency_ms": 4.5}).number == 7
    assert archive.best_under_budgets("luts", "minimize", {}).number == 9
    with pytest.raises(NoSelectionError, match=r"luts <= 10; closest: trial 9"):
        archive.best_under_budgets("accuracy", "maximize", {"luts": 10})
    with pytest.raises(NoSelectionError, match="no feasible trial has metric 'energy_mj'"):
        archive.best_under_budgets("energy_mj", "minimize", {})

    assert archive.cheapest_above("luts", "accuracy", 0.85).number == 0
    assert archive.cheapest_above("luts", "accuracy", 0.95).number == 1
    assert archive.cheapest_above("latency_ms", "accuracy", 0.8).number == 2
    with pytest.raises(NoSelectionError, match=r"accuracy >= 0.96; the highest is 0.95"):
        archive.cheapest_above("luts", "accuracy", 0.96)  # trial 3 (0.99) is infeasible


def test_knee_point_on_a_convex_front():
    for scale in (1.0, 1000.0):
        s = optuna.create_study(directions=["maximize", "minimize"])
        for k in range(11):
            t = k / 10
            s.add_trial(create_trial(values=[t, 0.0], user_attrs={"metrics": {"accuracy": t, "luts": scale * t * t}}))
        archive = ParetoArchive.from_study(s, OBJECTIVES)
        assert len(archive.front) == 11
        knee = archive.knee_point()
        # normalized minimized coords: x = 1 - acc, y = acc²; distance ∝ 1 - x - y = t(1 - t) → t = 0.5
        assert archive.values(knee)[0] == pytest.approx(0.5)

    s3 = optuna.create_study(directions=["minimize"] * 3)
    pts = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.1, 0.3, 0.3), (0.3, 0.1, 0.25), (0.25, 0.25, 0.05)]
    for p in pts:
        s3.add_trial(create_trial(values=[0.0, 0.0, 0.0], user_attrs={"metrics": dict(zip("abc", p, strict=True))}))
    a3 = ParetoArchive.from_study(s3, [("a", "minimize"), ("b", "minimize"), ("c", "minimize")])
    assert len(a3.front) == 6 and a3.knee_point().number == 5


def test_hypervolume(study):
    archive = ParetoArchive.from_study(study, OBJECTIVES)
    # minimized (-acc, luts) front: (-.95,200) (-.9,100) (-.8,40) (-.6,20); reference (acc 0, luts 300)
    expected = 0.95 * 100 + 0.90 * 100 + 0.80 * 60 + 0.60 * 20
    assert archive.hypervolume([0.0, 300.0]) == pytest.approx(expected)
    assert archive.hypervolume([0.99, 10.0]) == 0.0  # nothing better than this reference

    rng = np.random.default_rng(0)
    from optuna._hypervolume import compute_hypervolume

    pts = rng.random((40, 2))
    assert hypervolume(pts, [1.0, 1.0]) == pytest.approx(compute_hypervolume(pts, np.ones(2)))
    assert hypervolume([[0.5, 0.5, 0.5], [2.0, 0.1, 0.1]], [1, 1, 1]) == pytest.approx(0.125)


def test_export_writes_rereadable_files_atomically(study, tmp_path, monkeypatch):
    archive = ParetoArchive.from_study(study, OBJECTIVES)
    out = tmp_path / "archive"
    paths = archive.export(out)
    assert paths["pareto_json"].exists()

    with open(out / "pareto.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["number"]) for r in rows] == [0, 1, 4, 5, 9]
    assert {float(r["objective.accuracy"]) for r in rows} == {0.9, 0.95, 0.8, 0.6}
    with open(out / "trials.csv") as f:
        all_rows = {int(r["number"]): r for r in csv.DictReader(f)}
    assert len(all_rows) == 10 and all_rows[6]["state"] == "FAIL"
    assert all_rows[3]["feasible"] == "False" and all_rows[3]["front"] == "False"
    assert float(all_rows[3]["violation"]) == 0.5 and all_rows[3]["constraint.0"] == "0.5"
    assert all_rows[8]["feasible"] == "False" and all_rows[2]["rank"] == "1"
    assert sum(r["knee"] == "True" for r in all_rows.values()) == 1

    data = read_export(out)
    assert [r["number"] for r in data["front"]] == [9, 5, 0, 1, 4]
    assert data["infeasible"] == [3, 8] and data["knee"] == archive.knee_point().number
    assert data["objectives"] == [{"metric": "accuracy", "direction": "maximize"},
                                  {"metric": "luts", "direction": "minimize"}]
    rec0 = next(r for r in data["front"] if r["number"] == 0)
    assert open(rec0["checkpoint"], "rb").read() == (tmp_path / "model_0.pt").read_bytes()
    rec9 = next(r for r in data["front"] if r["number"] == 9)
    assert rec9["checkpoint"] is None and "model_9.pt" in rec9["checkpoint_error"]
    assert rec0["constraints"] == [-0.1, -2.0] and rec0["point"] == {"width": 100}
    point = yaml.safe_load((out / "trial_00000" / "point.yaml").read_text())
    assert point["objectives"] == {"accuracy": 0.9, "luts": 100.0} and point["checkpoint"] == "trial_00000/model_0.pt"
    point4 = yaml.safe_load((out / "trial_00004" / "point.yaml").read_text())
    assert point4["checkpoint"] is None and point4["source_checkpoint"].endswith("missing.pt")
    assert json.loads((out / "pareto.json").read_text())["counts"]["front"] == 5

    # a failing export leaves the previous one untouched and no temporary folder behind
    def broken_copy(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copy2", broken_copy)
    _add(study, 0.97, 500, checkpoint=tmp_path / "model_0.pt")  # a new front trial whose copy fails
    with pytest.raises(OSError, match="disk full"):
        ParetoArchive.from_study(study, OBJECTIVES).export(out)
    assert [r["number"] for r in read_export(out)["front"]] == [9, 5, 0, 1, 4]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    monkeypatch.undo()

    ParetoArchive.from_study(study, OBJECTIVES).export(out)  # re-export replaces the folder whole
    assert 10 in [r["number"] for r in read_export(out)["front"]]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_knee_point_is_invariant_to_scaling_and_direction():
    rng = np.random.default_rng(1)
    w = rng.dirichlet([1.0, 1.0, 1.0], size=30)
    f = w ** 2  # a convex 3-objective front (every point non-dominated), extremes distinct
    scale = np.array([10.0, 0.001, 7.0])

    def knee(values, directions):
        s = optuna.create_study(directions=["minimize"] * 3)
        for v in values:
            s.add_trial(create_trial(values=[0.0] * 3, user_attrs={"metrics": dict(zip("abc", v, strict=True))}))
        a = ParetoArchive.from_study(s, list(zip("abc", directions, strict=True)))
        assert len(a.front) == 30
        return a.knee_point().number

    base = knee(f, ["minimize"] * 3)
    assert knee(f * scale + 5.0, ["minimize"] * 3) == base
    assert knee(f * [1.0, -1.0, 1.0], ["minimize", "maximize", "minimize"]) == base
    # the knee is the point with the most room below the plane through the three extremes
    assert f[base].sum() < np.median(f.sum(axis=1))
