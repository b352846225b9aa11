"""SNAC-Pack's search knobs (seed 004): learning rate and L1 as search variables, k-fold trials, avg_resource."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState

from hwnas.config import ConfigError, load_experiment, parse_experiment
from hwnas.cost import AVG_RESOURCES, estimate, get_device
from hwnas.export import load_model
from hwnas.search.guided import point_features
from hwnas.search.objective import TrialContext, train_and_measure
from hwnas.search.run import run_search
from hwnas.space import Point, SearchSpace, SpaceConfig, SpaceError
from hwnas.train import TrainConfig, Trainer, TrainError, check_folds

from .experiments import tiny_mlp


def experiment(training_space: str = "{lr: [1.0e-3, 1.5e-3, 2.0e-3], l1: [0.0, 1.0e-6, 1.0e-5, 1.0e-4]}", *,
               strategy: str = "random", trials: int = 3, training: str = "{epochs: 1}",
               objectives: str = "avg_resource", seed: int = 3) -> str:
    """The tiny digits search of ``tests/experiments.py`` with ``space.training`` and a chosen strategy."""
    text = tiny_mlp(seed=seed, trials=trials, strategy=strategy, bits="[4, 6]", units="[8]")
    text = text.replace("  precision:", f"  training: {training_space}\n  precision:")
    text = text.replace("training: {epochs: 1}", f"training: {training}")
    return text.replace("{metric: bops, direction: minimize}", f"{{metric: {objectives}, direction: minimize}}")


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_experiment(text, source="exp.yaml")
    return [str(p) for p in info.value.problems]


# ---------------------------------------------------------------------------------------------- config
def test_experiment_file_takes_the_three_knobs():
    text = experiment(training="{epochs: 1, kfold: 3, l1: 1.0e-6}") + \
        "constraints:\n  - {metric: avg_resource, max: 5}\n  - {metric: accuracy_std, max: 0.1}\n"
    exp = parse_experiment(text)
    assert exp.space.training.lr == [1e-3, 1.5e-3, 2e-3] and exp.space.training.l1 == [0.0, 1e-6, 1e-5, 1e-4]
    assert exp.training.kfold == 3 and exp.training.l1 == 1e-6
    assert [o.metric for o in exp.objectives] == ["accuracy", "avg_resource"]
    assert parse_experiment(exp.to_yaml()) == exp
    ranged = parse_experiment(experiment("{lr: {min: 1.0e-4, max: 1.0e-2, log: true}, l1: {min: 0, max: 1.0e-4}}",
                                         strategy="tpe"))
    assert ranged.space.training.lr.log and ranged.space.training.l1.max == 1e-4
    assert parse_experiment(ranged.to_yaml()) == ranged
    # the per-trial config: the trial's choices replace training.lr / training.l1
    cfg = exp.train_config(seed=5, progress=False, overrides={"lr": 2e-3, "l1": 1e-5})
    assert (cfg.lr, cfg.l1, cfg.seed) == (2e-3, 1e-5, 5)
    assert exp.train_config(seed=5).l1 == 1e-6


@pytest.mark.parametrize(("change", "message"), [
    (("lr: [1.0e-3, 1.5e-3, 2.0e-3]", "lrr: [1.0e-3]"),
     "exp.yaml:9: space.training.lrr: unknown key (did you mean 'lr'?); keys here are: lr, l1"),
    (("lr: [1.0e-3, 1.5e-3, 2.0e-3]", "lr: [0, 1.0e-3]"), "exp.yaml:9: space.training.lr: every value must be > 0"),
    (("l1: [0.0, 1.0e-6, 1.0e-5, 1.0e-4]", "l1: [-1.0e-5]"),
     "exp.yaml:9: space.training.l1: every value must be >= 0"),
    (("lr: [1.0e-3, 1.5e-3, 2.0e-3]", "lr: {min: 0, max: 1.0e-2, log: true}"),
     "exp.yaml:9: space.training.lr: log: a log range needs min > 0"),
    (("lr: [1.0e-3, 1.5e-3, 2.0e-3]", "lr: {min: 1.0e-2, max: 1.0e-3}"),
     "exp.yaml:9: space.training.lr: max (0.001) must be above min (0.01)"),
    (("lr: [1.0e-3, 1.5e-3, 2.0e-3]", "lr: true"),
     "exp.yaml:9: space.training.lr: must be a number, a list of numbers or a mapping {min, max, log}, got True"),
    (("lr: [1.0e-3, 1.5e-3, 2.0e-3]", "lr: [.nan]"), "exp.yaml:9: space.training.lr: every value must be a finite"),
    (("training: {epochs: 1}", "training: {epochs: 1, kfold: 1}"),
     "exp.yaml:15: training.kfold: must be greater than or equal to 2, got 1"),
    (("training: {epochs: 1}", "training: {epochs: 1, kfold: 3.0}"),
     "exp.yaml:15: training.kfold: must be a valid integer, got 3.0"),
    (("training: {epochs: 1}", "training: {epochs: 1, kfold: 1000}"),
     "exp.yaml:15: training.kfold: must be less than or equal to 100, got 1000"),
    (("training: {epochs: 1}", "training: {epochs: 1, l1: -1}"),
     "exp.yaml:15: training.l1: must be greater than or equal to 0"),
    (("metric: avg_resource", "metric: accuracy_std"),
     "exp.yaml:13: objectives[1].metric: accuracy_std is the spread over the folds of training.kfold, which is "
     "not set"),
    (("metric: avg_resource", "metric: avg_resources"),
     "exp.yaml:13: objectives[1].metric: unknown metric 'avg_resources' (did you mean 'avg_resource'?)"),
    (("model: hls4ml", "model: none"),
     "exp.yaml:13: objectives[1].metric: 'avg_resource' is measured by a hardware cost model, but hardware.model "
     "is none"),
    (("strategy: random", "strategy: pso"), None),  # lists of choices: every strategy takes them
])
def test_bad_knobs_are_one_line_errors_naming_the_field(change, message):
    text = experiment().replace(*change)
    if message is None:
        parse_experiment(text)
        return
    found = problems(text)
    assert any(p.startswith(message) for p in found), found


def test_docs_snippets_are_valid():
    import re

    root = Path(__file__).parents[1]
    config = re.search(r"## SNAC-Pack's search knobs\n.*?```yaml\n(.*?)```", (root / "docs" / "config.md").read_text(),
                       re.S).group(1)
    exp = parse_experiment("name: snac\ntask: {name: digits}\nhardware: {target: vu13p, model: hls4ml}\n" + config)
    assert exp.training.kfold == 3 and exp.space.training.l1 == [0.0, 1e-6, 1e-5, 1e-4]
    search = re.search(r"### Searched learning rate and L1.*?```yaml\n(.*?)```",
                       (root / "docs" / "search.md").read_text(), re.S).group(1)
    exp = parse_experiment("name: snac\ntask: {name: digits}\nobjectives: [{metric: accuracy, direction: maximize}]\n"
                           + search)
    assert exp.space.training.lr == [1e-3, 1.5e-3, 2e-3]


@pytest.mark.parametrize("strategy", ["pso", "monas_lq", "ha_nas"])
def test_a_continuous_range_needs_a_define_by_run_strategy(strategy):
    text = experiment("{lr: {min: 1.0e-4, max: 1.0e-2, log: true}}", strategy=strategy, trials=40)
    assert problems(text) == [
        f"exp.yaml:9: space.training.lr: a continuous range {{min, max}} cannot be searched by {strategy!r}, which "
        "searches the space's integer vector: give a list of choices (e.g. [1e-3, 1.5e-3, 2e-3]) or use nsga2, tpe "
        "or random"]


# ---------------------------------------------------------------------------------------------- space
def test_training_variables_in_the_space_and_the_vector():
    cfg = SpaceConfig.model_validate({"family": "mlp", "dense_layers": 1, "dense_units": [8],
                                      "precision": {"weight_bits": 4, "act_bits": 4},
                                      "training": {"lr": [1e-3, 2e-3], "l1": [0, 1e-5, 1e-4]}})
    space = SearchSpace(cfg, (64,), 10)
    assert space.size() == 6 and [s.name for s in space.layout()][-2:] == ["training.lr", "training.l1"]
    points = {space.sample(np.random.default_rng(s)) for s in range(40)}
    assert len(points) == 6  # every combination, the architecture fixed
    for p in points:
        assert set(p.training_dict()) == {"lr", "l1"}
        assert space.decode(space.encode(p)) == p and space.from_params(space.params(p)) == p
        assert Point.from_dict(p.to_dict()) == p and "train[" in p.describe()
        assert set(space.params(p)) == {"training.lr", "training.l1"}
    p = next(iter(points))
    with pytest.raises(SpaceError, match=r"point\.training"):
        space.check(Point(p.family, p.conv, p.dense, p.dropout, p.learned, p.weight_bits, p.act_bits))
    assert len(point_features(p)) == len(point_features(Point(p.family, p.conv, p.dense, p.dropout, p.learned,
                                                                p.weight_bits, p.act_bits))) + 2


def test_a_continuous_range_is_suggest_float_and_has_no_vector_entry():
    cfg = SpaceConfig.model_validate({"family": "mlp", "dense_layers": 1, "dense_units": [8],
                                      "training": {"lr": {"min": 1e-4, "max": 1e-2, "log": True}, "l1": [0, 1e-5]}})
    space = SearchSpace(cfg, (64,), 10)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    trial = study.ask()
    point = space.suggest(trial)
    dist = trial.distributions["training.lr"]
    assert isinstance(dist, optuna.distributions.FloatDistribution) and dist.log and dist.low == 1e-4
    assert point.training_dict()["lr"] == trial.params["training.lr"]
    assert space.from_params(trial.params) == point
    assert "training.lr" not in [s.name for s in space.layout()]
    with pytest.raises(SpaceError, match=r"space.training.lr: a continuous range \{min, max\} has no integer vector"):
        space.decode(space.encode(point))
    with pytest.raises(SpaceError, match="infinitely many"):
        space.size()
    assert "infinitely many (continuous training.lr)" in space.describe()
    draws = [space.sample(np.random.default_rng(s)).training_dict()["lr"] for s in range(200)]
    assert all(1e-4 <= d <= 1e-2 for d in draws)
    assert 0.3 < np.mean(np.log10(draws) < -3) < 0.7  # log-uniform: half the draws below the geometric middle
    assert draws == [space.sample(np.random.default_rng(s)).training_dict()["lr"] for s in range(200)]


# ---------------------------------------------------------------------------------------------- trainer
def test_l1_penalty_shrinks_the_weight_matrices():
    torch.manual_seed(0)
    x, y = torch.randn(256, 16), torch.randint(0, 4, (256,))

    def fit(l1: float) -> torch.nn.Module:
        torch.manual_seed(1)
        model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
        Trainer(model, TrainConfig(epochs=5, batch_size=32, lr=1e-2, l1=l1, seed=0, progress=False)).fit((x, y))
        return model

    plain, sparse = fit(0.0), fit(1e-2)
    trainer = Trainer(plain, TrainConfig(l1=1e-2, progress=False))
    trainer._build_optimizer()
    assert [tuple(p.shape) for p in trainer._l1_params] == [(32, 16), (4, 32)]  # no biases
    norm = [sum(float(p.detach().abs().sum()) for p in m.parameters() if p.dim() > 1) for m in (plain, sparse)]
    assert norm[1] < 0.5 * norm[0]
    with pytest.raises(TrainError, match="l1: must be a finite number >= 0"):
        TrainConfig(l1=-1.0).validate()


# ---------------------------------------------------------------------------------------------- search
VECTOR_OPTIONS = {
    "pso": "{swarm_size: 3}",
    "ha_nas": "{warmup_trials: 2, population_size: 2, candidates_per_generation: 8, predictor_epochs: 10}",
    "monas_lq": "{hpo_trials: 0, bootstrap_size: 2, candidates_per_round: 20, train_fraction: 0.05, "
                "predictor_epochs: 10, swarm_size: 4}",
}


@pytest.mark.parametrize("strategy", ["random", "nsga2", "tpe", "pso", "ha_nas", "monas_lq"])
def test_each_trial_trains_with_its_sampled_lr_and_l1(tmp_path, strategy):
    text = experiment(strategy=strategy, trials=3)
    if strategy in VECTOR_OPTIONS:
        text = text.replace("n_trials: 3}", f"n_trials: 3, options: {VECTOR_OPTIONS[strategy]}}}")
    exp = load_experiment(write(tmp_path, text))
    study = run_search(exp, progress=False).study
    trials = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(trials) == 3
    seen = set()
    for t in trials:
        training = t.user_attrs["training"]
        assert training["lr"] in (1e-3, 1.5e-3, 2e-3) and training["l1"] in (0.0, 1e-6, 1e-5, 1e-4)
        assert t.user_attrs["point"]["training"] == training
        if strategy in VECTOR_OPTIONS:  # the integer vector: the last two entries index the choices
            assert t.user_attrs["vector"][-2:] == [[1e-3, 1.5e-3, 2e-3].index(training["lr"]),
                                                   [0.0, 1e-6, 1e-5, 1e-4].index(training["l1"])]
        else:
            assert (t.params["training.lr"], t.params["training.l1"]) == (training["lr"], training["l1"])
        bundle = load_model(exp.output_dir() / t.user_attrs["checkpoint"])
        assert bundle.metadata["training"] == training  # the local stage trains with them too
        metrics = t.user_attrs["metrics"]
        assert metrics["avg_resource"] > 0 and t.values[1] == metrics["avg_resource"]
        seen.add((training["lr"], training["l1"]))
    assert len(seen) > 1
    rows = list(csv.DictReader(open(tmp_path / "out" / "pareto" / "trials.csv")))
    assert {float(r["training.lr"]) for r in rows} == {lr for lr, _ in seen}
    # determinism: the same experiment in a new folder samples the same values
    again = tmp_path / "again"
    again.mkdir()
    exp2 = load_experiment(write(again, (tmp_path / "exp.yaml").read_text()))
    trials2 = [t for t in run_search(exp2, progress=False).study.trials if t.state == TrialState.COMPLETE]
    assert [t.user_attrs["training"] for t in trials2] == [t.user_attrs["training"] for t in trials]
    assert [t.values for t in trials2] == [t.values for t in trials]


@pytest.mark.parametrize("strategy", ["nsga2", "tpe"])
def test_continuous_ranges_are_sampled_per_trial(tmp_path, strategy):
    text = experiment("{lr: {min: 1.0e-4, max: 1.0e-2, log: true}, l1: {min: 0, max: 1.0e-4}}", strategy=strategy)
    exp = load_experiment(write(tmp_path, text))
    trials = [t for t in run_search(exp, progress=False).study.trials if t.state == TrialState.COMPLETE]
    assert len(trials) == 3 and len({t.user_attrs["training"]["lr"] for t in trials}) == 3
    for t in trials:
        lr, l1 = t.user_attrs["training"]["lr"], t.user_attrs["training"]["l1"]
        assert 1e-4 <= lr <= 1e-2 and 0 <= l1 <= 1e-4
        assert (t.params["training.lr"], t.params["training.l1"]) == (lr, l1)
        assert t.distributions["training.lr"].log and not t.distributions["training.l1"].log


def test_sampled_lr_and_l1_reach_the_trainer(tmp_path):
    exp = load_experiment(write(tmp_path, experiment("{lr: [1.0e-6, 3.0e-2], l1: [0.0, 1.0]}",
                                                     training="{epochs: 3}")))
    ctx = TrialContext.create(exp, save_models=False)
    base = ctx.space.sample(np.random.default_rng(0))
    results = {}
    for lr in (1e-6, 3e-2):
        for l1 in (0.0, 1.0):
            point = Point(base.family, base.conv, base.dense, base.dropout, base.learned, base.weight_bits,
                          base.act_bits, training=(("lr", lr), ("l1", l1)))
            results[lr, l1] = train_and_measure(point, ctx, 0).metrics["accuracy"]
    assert results[3e-2, 0.0] > results[1e-6, 0.0] + 0.3  # the learning rate is the trial's
    assert results[3e-2, 0.0] > results[3e-2, 1.0] + 0.3  # so is the (here crushing) L1 strength


# ---------------------------------------------------------------------------------------------- k-fold
def test_kfold_trial_records_the_mean_and_std_over_folds(tmp_path):
    single = load_experiment(write(tmp_path, experiment("{}", training="{epochs: 1}"), "single.yaml"))
    folded = load_experiment(write(tmp_path, experiment("{}", training="{epochs: 1, kfold: 3}"), "folded.yaml"))
    ctx_single = TrialContext.create(single, save_models=False)
    ctx_folded = TrialContext.create(folded, save_models=False)
    point = ctx_single.space.sample(np.random.default_rng(1))
    one = train_and_measure(point, ctx_single, 2)
    three = train_and_measure(point, ctx_folded, 2)
    assert one.folds is None and "accuracy_std" not in one.metrics
    assert len(three.folds) == 3 and len(set(three.folds)) > 1
    assert three.metrics["accuracy"] == pytest.approx(statistics.fmean(three.folds))
    assert three.metrics["accuracy_std"] == pytest.approx(statistics.pstdev(three.folds))
    assert three.metrics["accuracy"] != one.metrics["accuracy"]
    assert 0 <= three.metrics["test_accuracy"] <= 1 and three.metrics["bops"] == one.metrics["bops"]
    again = train_and_measure(point, TrialContext.create(folded, save_models=False), 2)
    assert again.folds == three.folds  # fold j trains with seed + j


def test_kfold_needs_every_class_in_every_fold(tmp_path):
    with pytest.raises(TrainError, match=r"folds: 3 stratified folds need at least 3 samples of every class; class "
                                         r"'b' has 2"):
        check_folds(torch.tensor([0, 0, 0, 1, 1, 2, 2, 2]), 3, ("a", "b", "c"))
    check_folds(torch.tensor([0, 0, 0, 1, 1, 1]), 3)
    # the experiment's data: with 90 % of digits held out for testing, train + val has ~18 samples per class
    text = experiment("{}", training="{epochs: 1, kfold: 40}").replace(
        "task: {name: digits}", "task: {name: digits, options: {test_fraction: 0.9, val_fraction: 0.05}}")
    exp = load_experiment(write(tmp_path, text))
    with pytest.raises(TrainError, match=r"^training.kfold: 40 stratified folds need at least 40 samples of every "
                                         r"class; class '\d' has \d+"):
        TrialContext.create(exp, save_models=False)


# ---------------------------------------------------------------------------------------------- avg_resource
def test_avg_resource_is_the_mean_of_the_four_utilizations(tmp_path):
    exp = load_experiment(write(tmp_path, experiment("{}") + "constraints:\n  - {metric: avg_resource, max: 1.0e-6}\n"))
    ctx = TrialContext.create(exp, save_models=False)
    point = ctx.space.sample(np.random.default_rng(0))
    result = train_and_measure(point, ctx, 0)
    m = result.metrics
    device = get_device("zcu104")
    shares = [m[r] / device.capacity(r) for r in ("luts", "ffs", "bram18", "dsps")]
    assert AVG_RESOURCES == ("luts", "ffs", "bram18", "dsps")
    assert m["avg_resource"] == pytest.approx(100 * sum(shares) / 4)
    assert result.constraints[0] == pytest.approx((m["avg_resource"] - 1e-6) / 1e-6)  # usable as a constraint
    # on a known model: a 64-16-10 MLP at 6 bits priced by hls4ml on the ZCU104
    cfg = SpaceConfig.model_validate({"family": "mlp", "dense_layers": 1, "dense_units": [16],
                                      "precision": {"weight_bits": 6, "act_bits": 6}})
    space = SearchSpace(cfg, (64,), 10)
    model = space.build(space.sample(np.random.default_rng(0)), seed=0).eval()
    est = estimate(model, "zcu104", input_shape=(64,), kind="hls4ml")
    util = est.utilization
    assert est.avg_resource == pytest.approx(25 * (util["luts"] + util["ffs"] + util["bram18"] + util["dsps"]))
    assert est.avg_resource > 0 and math.isfinite(est.avg_resource)


def test_local_stage_measures_max_drop_from_the_kfold_mean(tmp_path):
    # a k-fold trial's kept model trained on part of the validation split: the local stage's reference is the
    # trial's held-out k-fold mean, not that model's optimistic figure on the validation split
    from hwnas.pipeline import local_search_selected, select_models
    from hwnas.tasks import get_task

    text = experiment("{}", trials=2, training="{epochs: 1, kfold: 3}") + \
        "run: {local: {enabled: true, precisions: [[6, 2]], warmup_epochs: 1, iterations: 1, " \
        "epochs_per_iteration: 1}}\n"
    exp = load_experiment(write(tmp_path, text))
    selection = select_models(exp, run_search(exp, progress=False).study)
    records = local_search_selected(exp, selection, log=lambda _: None)
    task = get_task("digits")
    data = task.load(seed=exp.seed)
    for entry in selection:
        rec = records[int(entry["number"])]
        assert rec["searched_metric"] == entry["metrics"]["accuracy"]
        assert rec["searched_reference"] == "3-fold held-out mean"
        bundle = load_model(exp.output_dir() / entry["checkpoint"])
        assert rec["searched_val_metric"] == pytest.approx(
            task.evaluate(bundle.model, data.val, classes=data.classes)[task.metric])
    plain = load_experiment(write(tmp_path, text.replace(", kfold: 3", "").replace("output: out", "output: plain"),
                                  "plain.yaml"))
    records = local_search_selected(plain, select_models(plain, run_search(plain, progress=False).study),
                                    log=lambda _: None)
    for rec in records.values():
        assert rec["searched_reference"] == "validation split" and rec["searched_metric"] == rec["searched_val_metric"]
