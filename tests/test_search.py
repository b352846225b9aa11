"""Search end to end: experiments on tiny tasks through every strategy, resume, workers, CLI errors."""

from __future__ import annotations

import csv
import datetime
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from hwnas.cli import main
from hwnas.config import load_experiment
from hwnas.export import load_model
from hwnas.search.guided import STOPPED_ATTR, PatienceStop, Schedule, crowding_distance
from hwnas.search.objective import TrialContext, composite_score
from hwnas.search.pareto import read_export
from hwnas.search.run import experiment_metadata, run_search

TINY = """\
name: tiny
seed: 3
output: out
task: {name: digits}
space:
  family: mlp
  dense_layers: {min: 0, max: 2}
  dense_units: [8, 16, 32]
  precision: {weight_bits: {min: 2, max: 6}, act_bits: {min: 2, max: 6}}
objectives:
  - {metric: accuracy, direction: maximize}
  - {metric: bops, direction: minimize}
constraints:
  - {metric: luts, max: '30%'}
hardware: {target: zcu104, model: hls4ml}
training: {epochs: 1}
search: {strategy: nsga2, n_trials: 5, options: {population_size: 4}}
"""

MONAS = """\
name: monas
seed: 1
output: out
task: {name: digits-image}
space:
  family: cnn2d
  conv_blocks: {min: 1, max: 2}
  filters: [4, 8]
  share_filters: true
  dense_layers: {min: 0, max: 1}
  dense_units: [16, 32]
  precision: {weight_bits: {min: 2, max: 8}, act_bits: {min: 2, max: 8}}
objectives:
  - {metric: accuracy, direction: maximize}
  - {metric: bops, direction: minimize}
hardware: {target: xc7z020, model: finn}
training: {epochs: 1}
search:
  strategy: monas_lq
  n_trials: 14
  options: {hpo_trials: 2, bootstrap_size: 6, candidates_per_round: 150, train_fraction: 0.02, patience: 5,
            predictor_epochs: 60, swarm_size: 10}
"""


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state == TrialState.COMPLETE]


def test_nsga2_search_cli_resume_and_artefacts(tmp_path, capsys):
    path = write(tmp_path, TINY)
    assert main(["search", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "study 'tiny': 5 complete" in out and "Pareto front" in out and "optuna-dashboard sqlite:///" in out
    exp = load_experiment(path)
    study = optuna.load_study(study_name="tiny", storage=exp.storage_url())
    assert len(study.trials) == 5 and len(complete(study)) == 5
    for t in study.trials:
        attrs = t.user_attrs
        assert set(attrs) >= {"metrics", "constraints", "point", "vector", "checkpoint", "estimate", "worker"}
        assert {"accuracy", "test_accuracy", "bops", "luts", "qa_score"} <= set(attrs["metrics"])
        assert t.values == [attrs["metrics"]["accuracy"], attrs["metrics"]["bops"]]
        assert t.constraints == {"c0": attrs["constraints"][0]}  # Optuna's own record for NSGA-II
        assert (exp.output_dir() / attrs["checkpoint"]).is_file()  # recorded relative to the run folder
    # the exported front: feasible, non-dominated, checkpoints copied and loadable
    export = read_export(tmp_path / "out" / "pareto")
    front = [row["number"] for row in export["front"]]
    assert front and all(study.trials[n].user_attrs["constraints"][0] <= 0 for n in front)
    summary = json.loads((tmp_path / "out" / "search.json").read_text())
    assert summary["front"] == front and summary["knee"] in front
    bundle = load_model(tmp_path / "out" / "pareto" / f"trial_{front[0]:05d}" / "model.pt")
    assert tuple(bundle.input_shape) == (64,)
    # resume: the study is complete, nothing more runs and nothing is duplicated
    assert main(["search", str(path), "--quiet"]) == 0
    assert len(optuna.load_study(study_name="tiny", storage=exp.storage_url()).trials) == 5
    # another experiment in the same study is refused, naming the difference
    write(tmp_path, TINY.replace("epochs: 1", "epochs: 2"))
    assert main(["search", str(path), "--quiet"]) == 2
    assert "experiment_hash" in capsys.readouterr().err


def test_search_is_deterministic(tmp_path):
    runs = []
    for k in range(2):
        folder = tmp_path / str(k)
        folder.mkdir()
        exp = load_experiment(write(folder, TINY.replace("n_trials: 5", "n_trials: 3")))
        study = run_search(exp, progress=False).study
        runs.append([(t.params, t.values) for t in study.trials])
    assert runs[0] == runs[1]


def test_malformed_experiment_fails_before_any_work(tmp_path, capsys):
    path = write(tmp_path, TINY.replace("epochs: 1", "epochs: 0").replace("population_size", "populaton_size"))
    assert main(["search", str(path)]) == 2
    err = capsys.readouterr().err
    assert "exp.yaml:16: training.epochs: must be greater than or equal to 1" in err
    assert "search.options.populaton_size: strategy 'nsga2' has no option" in err
    assert not (tmp_path / "out").exists()
    # a space the task cannot feed fails before the study is created
    path = write(tmp_path, TINY.replace("family: mlp", "family: cnn2d"))
    assert main(["search", str(path)]) == 2
    assert "space.family: cnn2d needs (channels, height, width)" in capsys.readouterr().err
    assert not (tmp_path / "out" / "study.db").exists()
    # a worker cannot join a study that was never created
    path = write(tmp_path, TINY)
    assert main(["worker", str(path), "--worker", "1"]) == 2
    assert "no study named 'tiny'" in capsys.readouterr().err


def test_config_command(tmp_path, capsys):
    path = write(tmp_path, TINY)
    assert main(["config", str(path)]) == 0
    cap = capsys.readouterr()
    assert "strategy: nsga2" in cap.out and "heartbeat_s: 60.0" in cap.out and "# valid: 2 objective(s)" in cap.err
    assert main(["config", "--defaults"]) == 0
    assert "search:" in capsys.readouterr().out
    assert main(["config", str(write(tmp_path, "name: x\n", "bad.yaml"))]) == 2
    assert "bad.yaml:1: task: required key is missing" in capsys.readouterr().err


def test_pso_strategy_samples_the_vector(tmp_path):
    text = TINY.replace("strategy: nsga2", "strategy: pso").replace("{population_size: 4}", "{swarm_size: 3}")
    exp = load_experiment(write(tmp_path, text.replace("n_trials: 5", "n_trials: 6")))
    outcome = run_search(exp, progress=False)
    trials = complete(outcome.study)
    assert len(trials) == 6
    for t in trials:
        assert sorted(t.params) == sorted(f"x{j}" for j in range(len(t.user_attrs["vector"])))
        assert [t.params[f"x{j}"] for j in range(len(t.params))] == t.user_attrs["vector"]
        assert t.system_attrs["pso:generation"] == t.number // 3
    assert outcome.summary["best_composite"]["number"] in {t.number for t in outcome.archive.feasible}


def test_pso_strategy_leaves_one_value_slots_out_of_the_swarm(tmp_path):
    text = TINY.replace("strategy: nsga2", "strategy: pso").replace("{population_size: 4}", "{swarm_size: 2}")
    text = text.replace("dense_layers: {min: 0, max: 2}", "dense_layers: 1").replace("n_trials: 5", "n_trials: 4")
    exp = load_experiment(write(tmp_path, text))
    ctx = TrialContext.create(exp)
    single = [j for j, (lo, hi) in enumerate(ctx.space.bounds()) if lo == hi]
    assert single  # the fixed depth (and the slots of the absent layer) hold one value
    trials = complete(run_search(exp, progress=False).study)
    assert len(trials) == 4
    for t in trials:  # every slot still suggested, a one-value slot at its value; the swarm moves the rest
        assert [t.params[f"x{j}"] for j in range(len(t.params))] == t.user_attrs["vector"]
        assert all(t.params[f"x{j}"] == ctx.space.bounds()[j][0] for j in single)
        assert len(t.user_attrs["point"]["dense"]) == 1


MONAS_MOLP = MONAS.replace("swarm_size: 10}", "swarm_size: 10, accuracy_model: molp, accuracy_lcb: 0}")


def test_monas_lq_pipeline_stages(tmp_path):
    exp = load_experiment(write(tmp_path, MONAS_MOLP))  # the MOLP's accuracy head chooses (the default is a GP)
    outcome = run_search(exp, progress=False)
    study = outcome.study
    trials = complete(study)
    assert len(trials) == 14
    stages = [t.user_attrs["guided"]["stage"] for t in study.trials]
    assert stages == ["hpo"] * 2 + ["bootstrap"] * 6 + ["round"] * 6
    # stage 1: one backbone per filter count, 8-bit; the most accurate fixes the filter choice afterwards
    ctx = TrialContext.create(exp)
    filt = next(j for j, s in enumerate(ctx.space.layout()) if s.name == "filters")
    hpo = study.trials[:2]
    assert [t.user_attrs["vector"][filt] for t in hpo] == [0, 1]
    # stage 2: a stratified bootstrap (the default) covers every depth
    boot = study.trials[2:8]
    assert all(t.user_attrs["guided"].get("design") == "stratified" for t in boot)
    depth = next(j for j, s in enumerate(ctx.space.layout()) if s.name == "conv_blocks")
    assert sorted(t.user_attrs["vector"][depth] for t in boot) == [1, 1, 1, 2, 2, 2]
    for t in hpo:
        point = t.user_attrs["point"]
        assert set(point["weight_bits"]) == {8} and set(point["act_bits"]) == {8}
    # of the backbones within hpo_tolerance (default 0.02) of the best accuracy, the one with the most MACs
    top = max(t.user_attrs["metrics"]["accuracy"] for t in hpo)
    close = [t for t in hpo if t.user_attrs["metrics"]["accuracy"] >= top - 0.02]
    chosen = min(close, key=lambda t: (-t.user_attrs["metrics"]["macs"], -t.user_attrs["metrics"]["accuracy"],
                                       t.number)).user_attrs["vector"][filt]
    assert all(t.user_attrs["vector"][filt] == chosen for t in study.trials[2:])
    # rounds of 3 trials proposed by the MOLP + swarm: new vectors, with the prediction recorded
    rounds = study.trials[8:]
    assert [t.user_attrs["guided"]["round"] for t in rounds] == [0, 0, 0, 1, 1, 1]
    earlier = [tuple(t.user_attrs["vector"]) for t in study.trials[:8]]
    for t in rounds:
        g = t.user_attrs["guided"]
        assert set(g["predicted"]) == {"accuracy", "bops", "score"} and "bops" in g["priced"]
        assert g["priced"]["bops"] == pytest.approx(t.user_attrs["metrics"]["bops"])  # exact for fixed precision
        assert tuple(t.user_attrs["vector"]) not in earlier
    assert len({tuple(t.user_attrs["vector"]) for t in rounds}) == 6
    best = outcome.summary["best_composite"]
    assert best["score"] == min(composite_score(t.user_attrs["metrics"]) for t in trials)
    # the same seed proposes the same candidates again (serial run)
    again = tmp_path / "again"
    again.mkdir()
    study2 = run_search(load_experiment(write(again, MONAS_MOLP)), progress=False).study
    assert [t.user_attrs["vector"] for t in study2.trials] == [t.user_attrs["vector"] for t in study.trials]


@pytest.mark.parametrize(("features", "trend"), [("vector", "none"), ("summary", "log_bops")])
def test_monas_lq_gaussian_process_accuracy_with_lower_confidence_bound(tmp_path, features, trend):
    text = MONAS.replace("n_trials: 14", "n_trials: 11").replace(
        "swarm_size: 10}", "swarm_size: 10,\n            accuracy_model: gp, accuracy_lcb: 1.0, hpo_tolerance: 0.0,"
        f"\n            accuracy_features: {features}, accuracy_trend: {trend}}}")
    exp = load_experiment(write(tmp_path, text))
    assert exp.search.options.accuracy_model == "gp"
    assert (exp.search.options.accuracy_features, exp.search.options.accuracy_trend) == (features, trend)
    study = run_search(exp, progress=False).study
    hpo = study.trials[:2]
    ctx = TrialContext.create(exp)
    filt = next(j for j, s in enumerate(ctx.space.layout()) if s.name == "filters")
    # tolerance 0: the most accurate backbone; an exact tie goes to the one with more MACs
    best = min(hpo, key=lambda t: (-t.user_attrs["metrics"]["accuracy"], -t.user_attrs["metrics"]["macs"]))
    assert all(t.user_attrs["vector"][filt] == best.user_attrs["vector"][filt] for t in study.trials[2:])
    trained = [t.user_attrs["metrics"]["accuracy"] for t in study.trials[:8]]
    for t in study.trials[8:]:
        g = t.user_attrs["guided"]["predicted"]
        # the round chose by the GP's mean − 1·std; the GP stays within reach of the trained accuracies
        assert g["accuracy"] == pytest.approx(g["accuracy_mean"] - g["accuracy_std"])
        assert g["accuracy_std"] > 0 and "accuracy_molp" in g
        assert min(trained) - 0.5 < g["accuracy_mean"] < max(trained) + 0.5


@pytest.mark.parametrize(("acquisition", "design", "keep"), [("thompson", "factorial", "widest"),
                                                            ("ehvi", "stratified", "close")])
def test_monas_lq_acquisitions_and_bootstrap_designs(tmp_path, acquisition, design, keep):
    text = MONAS.replace("n_trials: 14", "n_trials: 11").replace(
        "swarm_size: 10}", f"swarm_size: 10,\n            accuracy_acquisition: {acquisition}, bootstrap_design: "
                           f"{design}, hpo_keep: {keep}, hpo_tolerance: 0.5}}")
    exp = load_experiment(write(tmp_path, text))
    study = run_search(exp, progress=False).study
    assert len(study.trials) == 11 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    ctx = TrialContext.create(exp)
    names = [s.name for s in ctx.space.layout()]
    # tolerance 0.5: both stage-1 backbones are close; widest fixes the wider one, close keeps both widths
    filt = names.index("filters")
    later = {t.user_attrs["vector"][filt] for t in study.trials[2:]}
    assert later == ({1} if keep == "widest" else {0, 1})  # the stratified bootstrap spreads over both
    depth = [names.index("conv_blocks"), names.index("dense_layers")]
    boot = [t for t in study.trials if t.user_attrs["guided"]["stage"] == "bootstrap"]
    assert all(t.user_attrs["guided"]["design"] == design for t in boot)
    if design == "factorial":  # 6 bootstrap trials over 2 x 2 depth combinations: every one at least once
        assert {tuple(t.user_attrs["vector"][j] for j in depth) for t in boot} == {(1, 0), (1, 1), (2, 0), (2, 1)}
    rounds = [t for t in study.trials if t.user_attrs["guided"]["stage"] == "round"]
    assert len(rounds) == 3
    for t in rounds:
        g = t.user_attrs["guided"]["predicted"]
        assert g["accuracy"] == g["accuracy_mean"] and g["accuracy_std"] >= 0  # no bound applied
        if acquisition == "thompson":  # each training of the round chosen on one posterior draw (3: round size)
            assert len(g["accuracy_draws"]) == 3
        else:
            assert "accuracy_draws" not in g
    vectors = [tuple(t.user_attrs["vector"]) for t in study.trials]
    assert len(set(vectors)) == len(vectors)


def test_monas_lq_ehvi_needs_accuracy_and_one_cost(tmp_path):
    text = MONAS.replace("swarm_size: 10}", "swarm_size: 10, accuracy_acquisition: ehvi}").replace(
        "  - {metric: bops, direction: minimize}\n", "  - {metric: bops, direction: minimize}\n"
        "  - {metric: luts, direction: minimize}\n")
    exp = load_experiment(write(tmp_path, text))
    with pytest.raises(ValueError, match=r"accuracy_acquisition: ehvi needs exactly two objectives"):
        run_search(exp, progress=False)
    assert not (tmp_path / "out").exists()  # refused before any study or training


def _add(study: optuna.Study, number_metrics: list[tuple[float, float]]) -> None:
    for acc, bops in number_metrics:
        study.add_trial(optuna.trial.create_trial(
            values=[acc, bops], user_attrs={"metrics": {"accuracy": acc, "bops": bops}, "constraints": [],
                                            "vector": [0]}))


class _Stub:
    """Just what PatienceStop reads from a sampler: the schedule and the objectives' loss vector."""

    def __init__(self) -> None:
        self.schedule = Schedule(hpo=0, warmup=2, round_size=2)

    def _losses_of(self, m: dict[str, float]) -> list[float]:
        return [-m["accuracy"], m["bops"]]


def test_patience_counts_rounds_without_a_new_front_point():
    study = optuna.create_study(directions=["maximize", "minimize"])
    stop = PatienceStop(_Stub(), patience=2)  # type: ignore[arg-type]
    _add(study, [(0.5, 100.0), (0.6, 200.0)])  # warm-up
    _add(study, [(0.7, 300.0), (0.4, 500.0)])  # round 0: (0.7, 300) is new on the front
    assert stop.stale_rounds(study) == 0
    _add(study, [(0.3, 900.0), (0.2, 800.0)])  # round 1: dominated
    assert stop.stale_rounds(study) == 1
    _add(study, [(0.55, 250.0)])  # round 2 unfinished: not counted
    assert stop.stale_rounds(study) == 1
    _add(study, [(0.1, 1000.0)])  # round 2 finished, dominated
    assert stop.stale_rounds(study) == 2


def test_patience_stops_the_optimization_loop():
    study = optuna.create_study(directions=["maximize", "minimize"])
    _add(study, [(0.5, 100.0), (0.6, 200.0), (0.7, 300.0), (0.4, 500.0)])  # warm-up + a new front point

    def dominated(trial: optuna.Trial) -> tuple[float, float]:
        acc, bops = 0.1, 1000.0 + trial.number
        trial.set_user_attr("metrics", {"accuracy": acc, "bops": bops})
        trial.set_user_attr("vector", [0])
        return acc, bops

    study.optimize(dominated, n_trials=20, callbacks=[PatienceStop(_Stub(), patience=2)])  # type: ignore[arg-type]
    assert len(study.trials) == 4 + 4  # two stale rounds of two trials, then stopped
    assert study.user_attrs[STOPPED_ATTR] == "patience: 2 rounds without a new Pareto point"


def test_crowding_distance_prefers_spread_points():
    losses = np.array([[0.0, 1.0], [0.1, 0.9], [0.5, 0.5], [1.0, 0.0]])
    d = crowding_distance(losses)
    assert np.isinf(d[0]) and np.isinf(d[3]) and d[2] > d[1]


@pytest.fixture(scope="module")
def cpu_table(tmp_path_factory) -> Path:
    pytest.importorskip("onnxruntime", reason="the CPU latency table needs onnxruntime")
    from hwnas.cost.cpu_latency import profile_operators, quick_grid

    path = tmp_path_factory.mktemp("table") / "cpu.json"
    profile_operators(quick_grid(), repeats=5).save(path)
    return path


def test_ha_nas_under_cpu_latency_and_memory_budgets(tmp_path, cpu_table):
    text = f"""\
name: hanas
seed: 2
output: out
task: {{name: digits}}
space:
  family: mlp
  dense_layers: {{min: 1, max: 3}}
  dense_units: [8, 16, 32, 64]
  precision: {{weight_bits: [4, 8], act_bits: [4, 8]}}
objectives:
  - {{metric: accuracy, direction: maximize}}
  - {{metric: cpu_latency_ms, direction: minimize}}
constraints:
  - {{metric: memory_kb, max: 1.5}}
hardware: {{model: none, cpu_table: {cpu_table}}}
training: {{epochs: 1}}
search:
  strategy: ha_nas
  n_trials: 12
  options: {{warmup_trials: 6, population_size: 3, candidates_per_generation: 30, predictor_epochs: 50}}
"""
    exp = load_experiment(write(tmp_path, text))
    study = run_search(exp, progress=False).study
    trials = complete(study)
    assert len(trials) == 12 and all("cpu_latency_ms" in t.user_attrs["metrics"] for t in trials)
    guided = [t for t in trials if t.user_attrs["guided"]["stage"] == "round"]
    assert len(guided) == 6
    warm = [t for t in trials if t.user_attrs["guided"]["stage"] == "bootstrap"]
    # candidates are priced exactly before training: every proposed one within the memory budget
    # (while random warm-up points were not all within it — the budget is binding)
    assert any(t.user_attrs["metrics"]["memory_kb"] > 1.5 for t in warm)
    for t in guided:
        assert t.user_attrs["metrics"]["memory_kb"] <= 1.5
        assert "violation" not in t.user_attrs["guided"]
        assert t.user_attrs["guided"]["priced"]["cpu_latency_ms"] == pytest.approx(
            t.user_attrs["metrics"]["cpu_latency_ms"])


def test_deployed_cpu_precision_prices_bits_and_refuses_a_table_without_int8_timings(tmp_path, cpu_table):
    from dataclasses import replace

    from hwnas.cost.cpu_latency import INT8_KINDS, LatencyTable
    from hwnas.cost.cpu_profile import CpuTableError
    from hwnas.search.objective import price

    text = f"""\
name: deployed
seed: 2
output: out
task: {{name: digits}}
space:
  family: mlp
  dense_layers: 1
  dense_units: [32]
  precision: {{weight_bits: [8, 16], act_bits: [8, 16], per_layer: false}}
objectives:
  - {{metric: accuracy, direction: maximize}}
  - {{metric: cpu_latency_ms, direction: minimize}}
hardware: {{model: none, cpu_table: {cpu_table}, cpu_precision: deployed}}
training: {{epochs: 1}}
"""
    ctx = TrialContext.create(load_experiment(write(tmp_path, text)))
    low, high = ctx.space.extreme(False), ctx.space.extreme(True)
    assert low.weight_bits == (8, 8) and high.weight_bits == (16, 16)
    # the same architecture: int8 kernels at 8 bits, float ones at 16 — different predicted latencies
    assert price(low, ctx)["cpu_latency_ms"] != price(high, ctx)["cpu_latency_ms"]
    table = LatencyTable.load(cpu_table)
    old = replace(table, entries={k: v for k, v in table.entries.items() if k.partition("(")[0] not in INT8_KINDS})
    old.save(tmp_path / "old.json")
    with pytest.raises(CpuTableError, match=r"hardware\.cpu_table: .*no int8 operator timings"):
        TrialContext.create(load_experiment(write(tmp_path, text.replace(str(cpu_table), str(tmp_path / "old.json")))))


def test_experiment_metadata_ignores_budget_output_and_storage(tmp_path):
    a = load_experiment(write(tmp_path, TINY))
    b = load_experiment(write(tmp_path, TINY.replace("n_trials: 5", "n_trials: 9").replace("output: out",
                                                                                          "output: elsewhere")))
    c = load_experiment(write(tmp_path, TINY.replace("seed: 3", "seed: 4")))
    assert experiment_metadata(a) == experiment_metadata(b) != experiment_metadata(c)


def test_experiment_hash_leaves_out_keys_at_their_neutral_value(tmp_path):
    import hashlib
    import json

    from hwnas.config import HASH_NEUTRAL, hash_payload

    assert ("search", "options", "accuracy_acquisition") in HASH_NEUTRAL
    base = load_experiment(write(tmp_path, MONAS))
    bound = load_experiment(write(tmp_path, MONAS.replace("swarm_size: 10}", "swarm_size: 10, accuracy_acquisition: "
                                                                           "bound}")))
    ehvi = load_experiment(write(tmp_path, MONAS.replace("swarm_size: 10}", "swarm_size: 10, accuracy_acquisition: "
                                                                          "ehvi}")))
    # a study made before the keys existed (MONAS at their neutral values): its dump had none of them
    old = base.model_dump()
    for key in ("accuracy_acquisition", "accuracy_trend", "front_neighbours", "bootstrap_bits", "hpo_keep"):
        old["search"]["options"].pop(key)
    old["hardware"].pop("cpu_profile")
    old["space"].pop("task_options")
    old["training"].pop("threads")
    old["search"].pop("warm_start")
    old["space"].pop("training")  # HASH_NEW_NEUTRAL: neutral since they were added
    old["training"].pop("l1")
    old["training"].pop("kfold")
    old["run"].pop("baselines")
    old["run"].pop("synth_max_macs")
    old["hardware"].pop("cpu_precision")
    old["task"].pop("module")
    old["space"].pop("module")  # HASH_NEW_NEUTRAL (plug-in families)
    old["space"].pop("family_options")
    old["run"]["rtl"].pop("optimize")  # HASH_NEW_NEUTRAL (run.rtl.optimize)
    old["training"].pop("device")  # HASH_NEVER: never hashed
    assert len(HASH_NEUTRAL) == 9  # a key added to HASH_NEUTRAL is added above too
    assert hash_payload(base) == old and hash_payload(bound) == old
    assert hash_payload(ehvi)["search"]["options"]["accuracy_acquisition"] == "ehvi"
    for key in ("n_trials",):
        old["search"].pop(key)
    for key in ("storage", "output", "run"):
        old.pop(key)
    want = hashlib.sha256(json.dumps(old, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert experiment_metadata(base)["experiment_hash"] == want == experiment_metadata(bound)["experiment_hash"]
    assert experiment_metadata(ehvi)["experiment_hash"] != want
    trend = load_experiment(write(tmp_path, MONAS.replace("swarm_size: 10}", "swarm_size: 10, accuracy_trend: "
                                                                           "log_bops}")))
    assert hash_payload(trend)["search"]["options"]["accuracy_trend"] == "log_bops"


def test_a_study_hashed_before_a_key_became_neutral_still_resumes(tmp_path):
    import hashlib
    import json

    from hwnas.config import HASH_NEUTRAL, HASH_NEW_NEUTRAL, hash_payload, hash_payload_forms
    from hwnas.pipeline import _hashes
    from hwnas.search.run import accepted_hashes, open_study
    from hwnas.search.storage import resolve_storage
    from hwnas.search.workers import StudyMismatchError, create_study

    exp = load_experiment(write(tmp_path, MONAS.replace("output: out", f"output: {tmp_path / 'out'}")))
    forms = hash_payload_forms(exp)
    assert forms[0] == hash_payload(exp) and len(forms) == 2 ** len(HASH_NEUTRAL)  # every neutral key is there
    before = exp.model_dump()  # the form before any was neutral: without the keys neutral since they were added
    for path in HASH_NEW_NEUTRAL:
        node = before
        for key in path[:-1]:
            node = node[key]
        node.pop(path[-1])
    before["training"].pop("device")  # HASH_NEVER: no hash ever held it
    assert before["run"] is not None and before in forms

    def settings_hash(data):  # what experiment_metadata hashed before the neutral keys existed
        data = {k: v for k, v in data.items() if k not in ("storage", "output", "run")}
        data["search"] = {k: v for k, v in data["search"].items() if k != "n_trials"}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]

    # a study made while accuracy_trend and front_neighbours were hashed (at their neutral values)
    between = hash_payload(exp)
    between["search"]["options"].update(accuracy_trend="none", front_neighbours=0)
    old_hash = settings_hash(between)
    meta = experiment_metadata(exp)
    assert old_hash != meta["experiment_hash"] and old_hash in accepted_hashes(exp)
    assert settings_hash(before) in accepted_hashes(exp)
    storage = resolve_storage(exp.storage_url(), exp.output_dir())
    create_study(exp.study_name(), storage, exp.directions, budget=exp.search.n_trials,
                 metadata={**meta, "experiment_hash": old_hash})
    assert open_study(exp).user_attrs["hwnas:metadata"]["experiment_hash"] == old_hash  # resumes
    # a study of another experiment is still refused
    other = load_experiment(write(tmp_path, MONAS.replace("output: out", f"output: {tmp_path / 'other'}"),
                                  "other.yaml"))
    create_study(other.study_name(), resolve_storage(other.storage_url(), other.output_dir()), other.directions,
                 budget=other.search.n_trials, metadata={**meta, "experiment_hash": "0" * 16})
    with pytest.raises(StudyMismatchError, match="experiment_hash"):
        open_study(other)
    # the pipeline's stage marks accept the earlier forms too, the current one first
    assert len(set(_hashes(exp))) == len(forms) and len(_hashes(exp)[0]) == 16


def test_search_and_worker_processes_share_one_journal_study(tmp_path):
    # two model shapes (one hidden layer of 8 or 16 units) and warm start: parents come from either process
    text = TINY.replace("n_trials: 5", "n_trials: 10, warm_start: closest").replace("epochs: 1", "epochs: 6") \
        .replace("dense_layers: {min: 0, max: 2}", "dense_layers: {min: 1, max: 1}") \
        .replace("dense_units: [8, 16, 32]", "dense_units: [8, 16]") + \
        "storage: {url: 'journal:///study.log', heartbeat_s: 2}\n"
    path = write(tmp_path, text)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    cmd = [sys.executable, "-m", "hwnas"]
    search = subprocess.Popen([*cmd, "search", str(path), "--quiet"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env)
    log = tmp_path / "study.log"  # relative to the experiment file's folder
    deadline = time.time() + 60
    while time.time() < deadline and (not log.exists() or "hwnas:ready" not in log.read_text()):
        time.sleep(0.2)
    assert log.exists(), "hwnas search did not create the study"
    worker = subprocess.Popen([*cmd, "worker", str(path), "--worker", "1", "--quiet"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env)
    out_s, _ = search.communicate(timeout=600)
    out_w, _ = worker.communicate(timeout=600)
    assert search.returncode == 0, out_s
    assert worker.returncode == 0, out_w
    exp = load_experiment(path)
    from hwnas.search.storage import resolve_storage

    study = optuna.load_study(study_name="tiny", storage=resolve_storage(exp.storage_url(), exp.output_dir()))
    assert len(study.trials) == 10 and len(complete(study)) == 10
    assert sorted(t.number for t in study.trials) == list(range(10))
    ids = {t.user_attrs["worker"]["id"] for t in study.trials}
    assert ids <= {0, 1} and ids
    assert "study 'tiny': 10 complete" in out_w  # the worker waited for the search's trials to finish
    # every parent is a trial of the same shapes that had finished when its child began; with 2 shapes and
    # one process running at least 5 trials in a row, its 4th trial has a parent among its own earlier ones
    by_number = {t.number: t for t in study.trials}
    parents = [(t, t.user_attrs["warm_start"]) for t in study.trials if t.user_attrs["warm_start"] is not None]
    assert parents
    for child, number in parents:
        parent = by_number[number]
        assert parent.user_attrs["shape_key"] == child.user_attrs["shape_key"]
        # the child's training began `seconds` before it completed, after its parents were looked up
        began = child.datetime_complete - datetime.timedelta(seconds=child.user_attrs["seconds"])
        assert parent.datetime_complete <= began + datetime.timedelta(seconds=0.05)


def test_learned_precision_search_trains_with_the_ebops_loss(tmp_path):
    text = TINY.replace("precision: {weight_bits: {min: 2, max: 6}, act_bits: {min: 2, max: 6}}",
                        "precision: {mode: learned, beta: 1e-4, init_bits: 6}").replace("n_trials: 5", "n_trials: 2")
    text = text.replace("{metric: bops, direction: minimize}", "{metric: ebops, direction: minimize}")
    exp = load_experiment(write(tmp_path, text))
    assert exp.train_config(0).beta == 1e-4
    study = run_search(exp, progress=False).study
    for t in complete(study):
        assert t.user_attrs["point"]["learned"] is True
        m = t.user_attrs["metrics"]
        assert 0 < m["ebops"] and t.values[1] == m["ebops"]
        bundle = load_model(exp.output_dir() / t.user_attrs["checkpoint"])
        assert any(n.endswith(".f") for n, _ in bundle.model.named_parameters())  # learnable bit-widths


WINDOW = """\
name: window
seed: 2
output: out
task:
  name: qubit-readout
  options: {n_shots: 600}
space:
  family: mlp
  dense_layers: [1, 2]
  dense_units: [4, 8]
  precision: {weight_bits: [4, 6], act_bits: [4], input_bits: 8}
  mapping: {kind: hls4ml, reuse_factor: 4}
  task_options:
    window_start: {min: 100, max: 300, step: 100}
    window_size: [10, 20, 40]
objectives:
  - {metric: accuracy, direction: maximize}
  - {metric: luts, direction: minimize}
hardware: {target: zcu102, model: hls4ml}
training: {epochs: 1}
search: {strategy: random, n_trials: 6}
"""


@pytest.mark.parametrize("strategy", ["random", "pso"])
def test_searched_task_options_give_each_trial_its_own_data(tmp_path, strategy):
    text = WINDOW if strategy == "random" else WINDOW.replace("strategy: random", "strategy: pso, options: "
                                                              "{swarm_size: 3}")
    exp = load_experiment(write(tmp_path, text))
    outcome = run_search(exp, progress=False)
    trials = complete(outcome.study)
    assert len(trials) == 6
    sizes = set()
    ctx = TrialContext.create(exp, save_models=False)
    for t in trials:
        attrs = t.user_attrs
        opts = attrs["task_options"]  # the options its data was loaded with: task.options + its own window
        assert opts == {"n_shots": 600, **attrs["point"]["task_options"]}
        size = opts["window_size"]
        sizes.add(size)
        if strategy == "random":  # define-by-run parameters; PSO's are the vector x0.. (window slots last)
            assert t.params["task.window_size"] == size and t.params["task.window_start"] == opts["window_start"]
        else:
            assert attrs["vector"][-1] == [10, 20, 40].index(size)
        bundle = load_model(exp.output_dir() / attrs["checkpoint"])
        assert tuple(bundle.input_shape) == (2 * size,) and bundle.metadata["task_options"] == opts
        data = ctx.data_for(ctx.space.decode(attrs["vector"]))
        assert torch_equal(bundle.test_inputs, data.test.x[:256])  # the trial's own window of the test shots
        units = [d["units"] for d in attrs["point"]["dense"]]
        widths = [2 * size, *units, 2]  # the cost models price the model as built: the input follows the window
        assert attrs["metrics"]["macs"] == sum(a * b for a, b in itertools.pairwise(widths))
    assert len(sizes) > 1, sizes
    rows = list(csv.DictReader(open(tmp_path / "out" / "pareto" / "trials.csv")))
    assert {"task.window_start", "task.window_size", "task.n_shots"} <= set(rows[0])
    assert {int(r["task.window_size"]) for r in rows} == sizes
    front = read_export(tmp_path / "out" / "pareto")["front"]
    assert all(rec["task_options"]["window_size"] == rec["point"]["task_options"]["window_size"] for rec in front)


def test_single_reuse_factor_prices_every_trial_at_it(tmp_path):
    # mapping {kind: hls4ml, reuse_factor: 4}, folding auto: the trials are priced at reuse factor 4 (every layer
    # takes the largest valid one not above it, as the export stage writes run.hls4ml.reuse_factor), not at 1
    from hwnas.cost import estimate
    from hwnas.pipeline_export import reuse_per_layer
    from hwnas.search.objective import configured_reuse

    exp = load_experiment(write(tmp_path, WINDOW.replace("n_trials: 6", "n_trials: 2")))
    trials = complete(run_search(exp, progress=False).study)
    assert len(trials) == 2
    for t in trials:
        bundle = load_model(exp.output_dir() / t.user_attrs["checkpoint"])
        shape = tuple(bundle.input_shape)
        rf = configured_reuse(exp, bundle.model, shape)
        assert rf == reuse_per_layer(bundle.model, shape, 4, "Latency") and set(rf.values()) == {4}
        est = estimate(bundle.model, "ZCU102", input_shape=shape, kind="hls4ml", reuse_factor=rf)
        assert t.user_attrs["estimate"]["initiation_interval"] == 4
        assert t.user_attrs["metrics"]["luts"] == est.totals["luts"]
        assert t.user_attrs["metrics"]["latency_cycles"] == est.latency_cycles
    plain = load_experiment(write(tmp_path, WINDOW.replace("{kind: hls4ml, reuse_factor: 4}", "{kind: hls4ml}"),
                                  "plain.yaml"))
    assert configured_reuse(plain, bundle.model, shape) == 1


def torch_equal(a, b) -> bool:
    import torch

    return a.shape == b.shape and bool(torch.equal(a, b))


def test_trial_context_caches_task_data_per_option_set(tmp_path):
    exp = load_experiment(write(tmp_path, WINDOW))
    ctx = TrialContext.create(exp, save_models=False)
    ctx.data_cache_size = 2
    rng = np.random.default_rng(0)
    points = [ctx.space.sample(rng) for _ in range(12)]
    first = points[0]
    vec = ctx.space.encode(first)
    vec[1] = 1 - vec[1]  # dense0.units: another model on the same window
    same = ctx.space.decode(vec)
    assert same != first and same.task_options == first.task_options
    assert ctx.data_for(first) is ctx.data_for(same)  # same window: the data is loaded once
    size = first.task_option_dict()["window_size"]
    assert ctx.data_for(first).input_shape == ctx.input_shape_of(first) == (2 * size,)
    for p in points:
        ctx.data_for(p)
    assert len(ctx._data_cache) <= 2
    assert ctx.data_for(None) is ctx.data  # the experiment's own options
