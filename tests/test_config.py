"""Experiment files: schema, defaults, round trip, and errors that name the key path and the YAML line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from hwnas.config import (
    CAPACITY_METRICS,
    METRICS,
    STRATEGY_OPTIONS,
    ConfigError,
    Constraint,
    Experiment,
    HaNasOptions,
    MonasLqOptions,
    Nsga2Options,
    PsoOptions,
    SearchConfig,
    TrainingConfig,
    defaults_yaml,
    load_experiment,
    parse_experiment,
    reference_markdown,
)
from hwnas.cost.catalog import get_device
from hwnas.space.spec import SpaceConfig
from hwnas.train.trainer import TrainConfig

DOC = Path(__file__).parents[1] / "docs" / "config.md"

FULL = """\
name: amc-zynq
description: AMC on a Zynq
seed: 7
output: out/amc
task:
  name: amc-rml2016
  options: {per_pair: 200, val_fraction: 0.2}
space:
  family: cnn1d
  conv_blocks: {min: 1, max: 3}
  filters: [8, 16, 32]
  precision:
    mode: learned
    beta: 2e-5
objectives:
  - {metric: accuracy, direction: maximize}
  - {metric: luts, direction: minimize}
  - {metric: cpu_latency_ms, direction: minimize}
constraints:
  - {metric: luts, max: '50%'}
  - {metric: latency_cycles, max: 5000}
  - {metric: memory_kb, min: 1, max: 64}
hardware:
  target: pynq-z1
  model: finn
  clock_mhz: 125
  cpu_table: tables/cpu.json
training:
  epochs: 8
  lr: 2e-3
  schedule: cosine_restarts
  patience: 3
search:
  strategy: pso
  n_trials: 64
  options: {swarm_size: 16, inertia: 0.6}
storage:
  url: journal:///db/study.log
  heartbeat_s: 30
  retry_failed: 2
"""

MINIMAL = """\
name: tiny
task: {name: digits}
objectives:
  - metric: accuracy
    direction: maximize
"""


def line_of(text: str, fragment: str) -> int:
    """1-based number of the one line of ``text`` containing ``fragment``."""
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if fragment in line]
    assert len(hits) == 1, (fragment, hits)
    return hits[0]


def problems(text: str, **kw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_experiment(text, source="exp.yaml", **kw)
    assert str(info.value) == "\n".join(str(p) for p in info.value.problems)
    return [str(p) for p in info.value.problems]


def write_full(tmp_path: Path) -> Path:
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "cpu.json").write_text("{}")
    path = tmp_path / "exp.yaml"
    path.write_text(FULL)
    return path


# ------------------------------------------------------------------------------------------ valid files
def test_full_example_loads(tmp_path):
    exp = load_experiment(write_full(tmp_path))
    assert exp.name == "amc-zynq" and exp.seed == 7
    assert exp.task.options == {"per_pair": 200, "val_fraction": 0.2}
    assert exp.directions == ["maximize", "minimize", "minimize"]
    assert exp.space.precision.mode == "learned" and exp.space.precision.beta == 2e-5  # 2e-5 is a number
    assert exp.constraints[0].max == "50%" and exp.constraints[2].min == 1.0
    assert exp.device().name == "XC7Z020" and exp.hardware.clock() == 125
    assert isinstance(exp.search.options, PsoOptions)
    assert exp.search.options.swarm_size == 16 and exp.search.options.c1 == PsoOptions().c1
    assert exp.training.lr == 2e-3 and exp.training.batch_size == TrainingConfig().batch_size
    # relative paths are relative to the experiment file's folder
    assert exp.output_dir() == tmp_path / "out" / "amc"
    assert exp.cpu_table_path() == tmp_path / "tables" / "cpu.json"
    assert exp.storage_url() == f"journal:///{(tmp_path / 'db' / 'study.log').resolve()}"
    assert exp.study_name() == "amc-zynq"
    assert exp.sampler_seed(2) == 2007 and exp.trial_seed(5) == 12


def test_defaults_are_filled():
    exp = parse_experiment(MINIMAL, base_dir="/data/exp")
    assert exp.space == SpaceConfig() and exp.training == TrainingConfig() and exp.constraints == []
    assert exp.hardware.target == "XC7Z020" and exp.hardware.model == "finn"
    assert exp.search.strategy == "nsga2" and exp.search.options == Nsga2Options()
    assert exp.output_dir() == Path("/data/exp/runs/tiny")
    assert exp.storage_url() == f"sqlite:///{Path('/data/exp/runs/tiny/study.db').resolve()}"
    assert exp.hardware.clock() == get_device("XC7Z020").clock_mhz
    assert SearchConfig(strategy="monas_lq", n_trials=50).options == MonasLqOptions()


def test_absolute_and_server_storage_urls_pass_through():
    exp = parse_experiment(MINIMAL + "storage: {url: 'sqlite:////var/db/s.db'}\n", base_dir="/x")
    assert exp.storage_url() == "sqlite:////var/db/s.db"
    exp = parse_experiment(MINIMAL + "storage: {url: 'postgresql+psycopg2://u@h/db'}\n")
    assert exp.storage_url() == "postgresql+psycopg2://u@h/db"


def test_round_trip(tmp_path):
    path = write_full(tmp_path)
    exp = load_experiment(path)
    for comments in (False, True):
        again = tmp_path / f"again{comments}.yaml"
        again.write_text(exp.to_yaml(comments=comments))
        assert load_experiment(again) == exp
    assert parse_experiment(exp.to_yaml(), base_dir=tmp_path) == exp
    minimal = parse_experiment(MINIMAL)
    assert parse_experiment(minimal.to_yaml()) == minimal
    assert minimal != exp


def test_text_and_path_inputs(tmp_path):
    assert load_experiment(MINIMAL) == parse_experiment(MINIMAL)
    one_line = "{name: a, task: {name: digits}, objectives: [{metric: accuracy, direction: maximize}]}"
    assert load_experiment(one_line).name == "a"
    (tmp_path / "m.yml").write_text(MINIMAL)
    assert load_experiment(str(tmp_path / "m.yml")).output_dir() == tmp_path / "runs" / "tiny"
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read the experiment file"):
        load_experiment(tmp_path / "missing.yaml")


def test_train_config_mapping():
    exp = parse_experiment(FULL.replace("  cpu_table: tables/cpu.json\n", "").replace(
        "  - {metric: cpu_latency_ms, direction: minimize}\n", ""))
    cfg = exp.train_config(seed=exp.trial_seed(3), progress=False)
    assert isinstance(cfg, TrainConfig)
    cfg.validate()
    assert (cfg.epochs, cfg.lr, cfg.schedule, cfg.patience, cfg.seed, cfg.progress) == (
        8, 2e-3, "cosine_restarts", 3, 10, False)
    assert (cfg.beta, cfg.gamma) == (2e-5, exp.space.precision.gamma)  # learned precision: HGQ loss on
    assert cfg.loss == "ce"
    fixed = parse_experiment(MINIMAL).train_config(seed=1)
    assert (fixed.beta, fixed.gamma) == (0.0, 0.0)
    plain = TrainingConfig().to_train_config(4, False)
    for name in TrainingConfig.model_fields:
        if name != "kfold":  # how many times a trial trains, not how (hwnas.search.objective)
            assert getattr(plain, name) == getattr(TrainingConfig(), name)
    assert plain.seed == 4 and plain.progress is False
    searched = TrainingConfig(lr=1e-3, l1=1e-6).to_train_config(4, False, overrides={"lr": 2e-3, "l1": 1e-5})
    assert (searched.lr, searched.l1) == (2e-3, 1e-5)  # a trial's space.training choices replace the section's


# ------------------------------------------------------------------------------------------- constraints
def test_percent_constraints_resolve_against_the_device():
    con = Constraint(metric="luts", max="50%")
    assert con.absolute("XC7Z020") == (None, 26600.0)
    assert con.absolute(get_device("ZCU104")) == (None, 115200.0)
    assert Constraint(metric="dsps", min="10%", max=100).absolute("XC7Z020") == (22.0, 100.0)
    assert Constraint(metric="bram18", max=" 12.5 % ").max == "12.5%"


def test_constraint_values_signs_and_normalization():
    exp = parse_experiment(MINIMAL + """\
constraints:
  - {metric: luts, max: '50%'}
  - {metric: latency_cycles, max: 1000}
  - {metric: memory_kb, min: 2, max: 8}
  - {metric: dsps, max: 0}
""")
    ok = exp.constraint_values({"luts": 13300, "latency_cycles": 1000, "memory_kb": 4, "dsps": 0})
    assert ok == pytest.approx([-0.5, 0.0, -0.5, 0.0])
    assert all(v <= 0 for v in ok)
    bad = exp.constraint_values({"luts": 53200, "latency_cycles": 1100, "memory_kb": 1, "dsps": 3})
    assert bad == pytest.approx([1.0, 0.1, 0.5, 3.0])
    assert all(v > 0 for v in bad)
    # a larger device makes the same LUT count feasible
    assert exp.constraint_values({"luts": 53200, "latency_cycles": 0, "memory_kb": 4, "dsps": 0}, "VU13P")[0] < 0
    with pytest.raises(ValueError, match=r"constraints\[1\]: metric 'latency_cycles' is missing"):
        exp.constraint_values({"luts": 1, "memory_kb": 4, "dsps": 0})
    with pytest.raises(ValueError, match=r"constraints\[0\]: metric 'luts' is NaN"):
        exp.constraint_values({"luts": float("nan"), "latency_cycles": 0, "memory_kb": 4, "dsps": 0})


# ---------------------------------------------------------------------------------------------- errors
def test_errors_name_key_path_and_line():
    text = MINIMAL + "training:\n  epochs: 0\n  lr: fast\n  optimizr: adam\n"
    got = problems(text)
    assert got == [
        f"exp.yaml:{line_of(text, 'epochs')}: training.epochs: must be greater than or equal to 1, got 0",
        f"exp.yaml:{line_of(text, 'lr: fast')}: training.lr: must be a valid number, got 'fast'",
        f"exp.yaml:{line_of(text, 'optimizr')}: training.optimizr: unknown key (did you mean 'optimizer'?); "
        "keys here are: " + ", ".join(TrainingConfig.model_fields),
    ]


@pytest.mark.parametrize(("edit", "fragment", "path", "message"), [
    (("  - metric: accuracy\n    direction: maximize\n",
      "  - metric: accuracy\n    direction: maximize\n  - {metric: lutz, direction: minimize}\n"),
     "lutz", "objectives[1].metric", "unknown metric 'lutz' (did you mean 'luts'?)"),
    (("task: {name: digits}", "task: {name: digitz}"), "digitz", "task.name",
     "unknown task 'digitz' (did you mean 'digits'?); tasks are: "),
    (("task: {name: digits}", "task:\n  name: amc-rml2016\n  options:\n    per_pair_x: 3"), "per_pair_x",
     "task.options.per_pair_x", "task 'amc-rml2016' has no option 'per_pair_x' (did you mean 'per_pair'?)"),
    (("task: {name: digits}", "task:\n  name: amc-rml2016\n  options: {per_pair: many}"), "per_pair",
     "task.options.per_pair", "must be an integer (default 1000), got 'many'"),
    (("name: tiny", "name: tiny\nhardware: {target: XC9999}"), "XC9999", "hardware.target",
     "unknown device 'XC9999'; known: XC7Z020"),
    (("name: tiny", "name: tiny\nconstraints:\n  - {metric: memory_kb, min: 9, max: 4}"), "memory_kb",
     "constraints[0].min", "min (9) is above max (4): no trial can satisfy it"),
    (("name: tiny", "name: tiny\nconstraints:\n  - {metric: luts, min: '60%', max: 20000}"), "60%",
     "constraints[0].min", "min (60% = 31920) is above max (20000 = 20000) on XC7Z020"),
    (("name: tiny", "name: tiny\nconstraints:\n  - {metric: luts, max: '150%'}"), "150%",
     "constraints[0].max", "a device share must be in (0, 100] %, got '150%'"),
    (("name: tiny", "name: tiny\nconstraints:\n  - {metric: luts, max: '0%'}"), "0%",
     "constraints[0].max", "a device share must be in (0, 100] %"),
    (("name: tiny", "name: tiny\nconstraints:\n  - {metric: latency_cycles, max: '50%'}"), "latency_cycles",
     "constraints[0].max", "a device share (50%) needs a metric with a device capacity"),
    (("name: tiny", "name: tiny\nconstraints:\n  - {metric: uram, max: '5%'}"), "uram",
     "constraints[0].max", "XC7Z020 has no uram"),
    (("name: tiny", "name: tiny\nconstraints:\n  - {metric: dsps}"), "dsps",
     "constraints[0]", "constraint on 'dsps' needs max, min or both"),
    (("name: tiny", "name: tiny\nconstraints:\n  - {metric: test_accuracy, min: 0.9}"), "test_accuracy",
     "constraints[0].metric", "only reported"),
    (("    direction: maximize\n", "    direction: maximize\n  - {metric: accuracy, direction: minimize}\n"),
     "direction: minimize", "objectives[1].metric", "'accuracy' is already objectives[0]"),
    (("    direction: maximize\n", "    direction: maximize\n  - {metric: cpu_latency_ms, direction: minimize}\n"),
     "cpu_latency_ms", "objectives[1].metric", "cpu_latency_ms needs hardware.cpu_table"),
    (("name: tiny", "name: tiny\nhardware: {cpu_table: none.json}"), "cpu_table", "hardware.cpu_table",
     "no such file: "),
    (("name: tiny", "name: tiny\nhardware: {model: none}\nconstraints: [{metric: luts, max: 100}]"), "luts",
     "constraints[0].metric", "'luts' is measured by a hardware cost model, but hardware.model is none"),
    (("name: tiny", "name: tiny\nsearch: {strategy: pso, options: {swarm: 4}}"), "swarm", "search.options.swarm",
     "strategy 'pso' has no option 'swarm' (did you mean 'swarm_size'?); its options are: swarm_size"),
    (("name: tiny", "name: tiny\nsearch: {strategy: nsga2, options: {inertia: 0.5}}"), "inertia",
     "search.options.inertia", "strategy 'nsga2' has no option 'inertia'"),
    (("name: tiny", "name: tiny\nsearch:\n  strategy: nsga2\n  options:\n    crossover_prob: 1.5"),
     "crossover_prob", "search.options.crossover_prob", "must be less than or equal to 1, got 1.5"),
    (("name: tiny", "name: tiny\nsearch: {strategy: random, options: {x: 1}}"), "random", "search.options.x",
     "strategy 'random' has no option 'x'; its options are: (none)"),
    (("name: tiny", "name: tiny\nsearch: {strategy: anneal}"), "anneal", "search.strategy",
     "must be 'nsga2', 'random', 'tpe', 'pso', 'monas_lq', 'ha_nas' or 'supernet', got 'anneal'"),
    (("name: tiny", "name: tiny\nsearch:\n  strategy: monas_lq\n  n_trials: 20\n  options: {bootstrap_size: 16}"),
     "bootstrap_size", "search.options.bootstrap_size", "hpo_trials + bootstrap_size (20) leave none"),
    (("name: tiny", "name: tiny\nspace:\n  filters: abc"), "filters", "space.filters",
     "must be an integer, a list of integers or a mapping {min, max, step}, got 'abc'"),
    (("name: tiny", "name: tiny\nspace:\n  kernel: [3, '5']"), "kernel", "space.kernel[1]",
     "must be a valid integer, got '5'"),
    (("name: tiny", "name: tiny\nspace:\n  dense_units: {min: 16}"), "dense_units", "space.dense_units.max",
     "required key is missing"),
    (("name: tiny", "name: tiny\nspace:\n  conv_blocks: {min: 4, max: 2}"), "conv_blocks", "space.conv_blocks",
     "max (2) is below min (4)"),
    (("name: tiny", "name: tiny\nspace:\n  share_filters: yes_please"), "share_filters", "space.share_filters",
     "must be a valid boolean, got 'yes_please'"),
    (("name: tiny", "name: tiny\nspace:\n  mapping: {kind: hls4ml}"), "hls4ml", "space.mapping.kind",
     "mapping 'hls4ml' does not fit hardware.model 'finn'"),
    (("name: tiny", "name: tiny\nseed: true"), "seed", "seed", "must be a valid integer, got True"),
    (("name: tiny", "name: tiny\nstorage: {url: 'redis://host'}"), "redis", "storage.url",
     "unsupported storage URL 'redis://host'"),
    (("name: tiny", "name: tiny\nstorage: {heartbeat_s: 30, grace_s: 10}"), "grace_s", "storage.grace_s",
     "grace_s (10.0) must exceed heartbeat_s (30.0)"),
    (("name: tiny", "name: 'my run'"), "my run", "name", "must start with a letter or digit"),
    (("name: tiny", "name: tiny\nflavour: vanilla"), "flavour", "flavour", "unknown key; keys here are: name,"),
    (("name: tiny", "name: tiny\ntraining: {threads: 0}"), "threads", "training.threads",
     "must be greater than or equal to 1, got 0"),
])
def test_each_error_class(edit, fragment, path, message):
    old, new = edit
    assert old in MINIMAL
    text = MINIMAL.replace(old, new)
    got = problems(text)
    assert len(got) == 1, got
    prefix = f"exp.yaml:{line_of(text, fragment)}: {path}: "
    assert got[0].startswith(prefix), got[0]
    assert message in got[0][len(prefix):], got[0]


def test_missing_key_points_at_its_parent():
    text = "seed: 1\ntask:\n  options: {}\nobjectives:\n  - direction: maximize\n"
    assert problems(text) == [
        "exp.yaml:1: name: required key is missing",
        "exp.yaml:2: task.name: required key is missing",
        "exp.yaml:5: objectives[0].metric: required key is missing",
    ]


def test_several_errors_reported_together_in_line_order():
    text = """\
name: tiny
seed: -3
task:
  name: digits
  options: {image: maybe, colour: red}
objectives:
  - {metric: accuracy, direction: maximize}
  - {metric: luts, direction: sideways}
  - {metric: accuracy, direction: minimize}
constraints:
  - {metric: luts, max: '200%'}
training: {epochs: 1.5}
search: {strategy: pso, options: {swarm_size: 1}}
"""
    got = problems(text)
    assert [g.split(": ")[0:2] for g in got] == [
        ["exp.yaml:2", "seed"],
        ["exp.yaml:5", "task.options.colour"],
        ["exp.yaml:5", "task.options.image"],
        ["exp.yaml:8", "objectives[1].direction"],
        ["exp.yaml:9", "objectives[2].metric"],  # a duplicate, found although other parts are invalid
        ["exp.yaml:11", "constraints[0].max"],
        ["exp.yaml:12", "training.epochs"],
        ["exp.yaml:13", "search.options.swarm_size"],
    ]


def test_yaml_syntax_errors_give_line_and_column():
    text = MINIMAL + "training:\n  epochs: 3\n   lr: 0.1\n"
    (only,) = problems(text)
    assert re.match(rf"exp\.yaml:{line_of(text, 'lr: 0.1')}:\d+: YAML syntax error: ", only), only
    (only,) = problems("name: [a, b\ntask: {name: digits}\n")
    assert only.startswith("exp.yaml:") and "YAML syntax error" in only
    (only,) = problems(MINIMAL + "seed: !!python/object:os.system 1\n")
    assert only.startswith(f"exp.yaml:{len(MINIMAL.splitlines()) + 1}:") and "constructor" in only


def test_duplicate_keys_empty_files_and_non_mappings():
    text = MINIMAL + "name: other\n"
    assert problems(text) == [f"exp.yaml:{len(MINIMAL.splitlines()) + 1}: name: duplicate key (first at line 1)"]
    assert problems("") == ["exp.yaml:1: the experiment file is empty"]
    assert problems("- a\n- b\n") == ["exp.yaml:1: (top level): must be a mapping of sections, got list"]


def test_python_construction_validates_too():
    with pytest.raises(ValidationError, match="already objectives"):
        Experiment(name="x", task={"name": "digits"},
                   objectives=[{"metric": "accuracy", "direction": "maximize"},
                               {"metric": "accuracy", "direction": "minimize"}])
    with pytest.raises(ValidationError, match="has no option 'swarm'"):
        SearchConfig(strategy="pso", options={"swarm": 3})
    with pytest.raises(ValidationError, match="candidates_per_generation"):
        HaNasOptions(population_size=50, candidates_per_generation=10)
    assert issubclass(ConfigError, ValueError)


# ---------------------------------------------------------------------------------------- documentation
def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Every pydantic model class named anywhere in a field's type."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _all_models() -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []
    todo = [Experiment, *STRATEGY_OPTIONS.values()]
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.append(cls)
            todo += [m for info in cls.model_fields.values() for m in _models_in(info.annotation)]
    return seen


def _key_paths() -> list[str]:
    """Every key path of the schema: ``training.lr``, ``objectives[].metric``, ``search.options.c1``, ..."""
    out: list[str] = []

    def walk(cls: type[BaseModel], prefix: str) -> None:
        for name, info in cls.model_fields.items():
            out.append(prefix + name)
            for model in _models_in(info.annotation):
                if model.__name__ in ("IntRange", "FloatRange", "StrategyOptions"):
                    continue
                is_list = get_origin(info.annotation) is list
                walk(model, prefix + name + ("[]." if is_list else "."))

    walk(Experiment, "")
    for cls in STRATEGY_OPTIONS.values():
        walk(cls, "search.options.")
    return out


def test_every_field_has_a_description():
    models = _all_models()
    assert SpaceConfig in models and MonasLqOptions in models and Constraint in models
    for cls in models:
        for name, info in cls.model_fields.items():
            assert info.description, f"{cls.__name__}.{name} has no description"


def test_defaults_yaml_is_a_valid_commented_experiment():
    text = defaults_yaml()
    exp = parse_experiment(text)
    assert exp.space == SpaceConfig() and exp.training == TrainingConfig() and exp.search == SearchConfig()
    for path in _key_paths():
        key = path.split(".")[-1].removesuffix("[]")
        assert re.search(rf"^\s*(#\s+)*(- )?{key}:", text, re.M), f"{path} missing from defaults_yaml()"
    flat = re.sub(r"\n[\s#]*#\s", " ", text)  # descriptions are wrapped over (nested) comment lines
    for cls in (TrainingConfig, PsoOptions, SpaceConfig):
        for info in cls.model_fields.values():
            assert info.description in flat
    assert "(required)" in text
    raw = yaml.safe_load(text)
    assert set(raw) == set(Experiment.model_fields)


def test_docs_mention_every_key_and_metric():
    doc = DOC.read_text()
    for path in _key_paths():
        assert f"`{path}`" in doc, f"docs/config.md does not mention `{path}` (regenerate its Reference part " \
                                   "from hwnas.config.reference_markdown())"
    for metric in METRICS:
        assert f"`{metric}`" in doc
    for metric in CAPACITY_METRICS:
        assert metric in reference_markdown()


def test_docs_example_is_valid():
    block = re.search(r"## A complete example\n\n```yaml\n(.*?)```", DOC.read_text(), re.S).group(1)
    exp = parse_experiment(block, source="docs/config.md")
    assert exp.name == "amc-zynq" and len(exp.constraints) == 4
    assert parse_experiment(exp.to_yaml()) == exp


def test_run_section_reads_yaml_on_off_as_synth_modes():
    for text, mode in (("off", "off"), ("on", "on"), ("auto", "auto"), ("false", "off")):
        exp = parse_experiment(MINIMAL + f"run: {{synth: {text}}}\n")
        assert exp.run.synth == mode
    with pytest.raises(ConfigError, match=r"run\.local\.precisions\[0\]"):
        parse_experiment(MINIMAL + "run: {local: {precisions: [[8]]}}\n")


# ------------------------------------------------------------------------------------------ task options
QUBIT = """\
name: q
task:
  name: qubit-readout
  options: {n_shots: 2000}
space:
  family: mlp
  task_options:
    window_start: {min: 0, max: 300, step: 50}
    window_size: [50, 100, 400]
objectives:
  - {metric: accuracy, direction: maximize}
"""


def test_task_options_are_parsed_and_round_trip():
    exp = parse_experiment(QUBIT)
    assert list(exp.space.task_options) == ["window_start", "window_size"]
    assert parse_experiment(exp.to_yaml()) == exp
    assert "task_options: {}" in defaults_yaml()
    # any option of the task may be searched when it is not fixed in task.options too (here the shot count)
    other = parse_experiment(QUBIT.replace("{n_shots: 2000}", "{}").replace("window_size: [50, 100, 400]",
                                                                           "n_shots: [1000, 2000]"))
    assert other.space.task_options["n_shots"] == [1000, 2000]


@pytest.mark.parametrize(("edit", "fragment", "path", "message"), [
    (("window_size: [50, 100, 400]", "window_sise: [50, 100, 400]"), "window_sise", "space.task_options.window_sise",
     "task 'qubit-readout' has no option 'window_sise' (did you mean 'window_size'?); its options are: n_shots, "),
    (("{min: 0, max: 300, step: 50}", "{min: 300, max: 0}"), "window_start", "space.task_options.window_start",
     "max (0) is below min (300)"),
    (("{min: 0, max: 300, step: 50}", "{min: 0, max: 300, step: 0}"), "window_start",
     "space.task_options.window_start.step", "must be greater than or equal to 1, got 0"),
    (("{min: 0, max: 300, step: 50}", "[]"), "window_start", "space.task_options.window_start",
     "needs at least one choice"),
    (("{min: 0, max: 300, step: 50}", "100"), "window_start", "space.task_options.window_start",
     "must be a list of choices or a mapping {min, max, step}, got 100"),
    (("window_size: [50, 100, 400]", "window_size: [50, 'wide']"), "window_size", "space.task_options.window_size",
     "must be an integer (default 400), got 'wide'"),
    (("{n_shots: 2000}", "{n_shots: 2000, window_size: 200}"), "window_size: [", "space.task_options.window_size",
     "also fixed in task.options (200); a searched option takes each trial's choice"),
    (("window_size: [50, 100, 400]", "window_size: [50, 100, 500]"), "task_options", "space.task_options",
     "window_start 300, window_size 500: task 'qubit-readout': window_start 300 + window_size 500 = 800 runs "
     "past the 770 samples of a shot (every combination of the choices must be valid)"),
])
def test_task_option_errors_name_the_key_path(edit, fragment, path, message):
    old, new = edit
    assert old in QUBIT
    text = QUBIT.replace(old, new)
    got = problems(text)
    assert len(got) == 1, got
    prefix = f"exp.yaml:{line_of(text, fragment)}: {path}: "
    assert got[0].startswith(prefix), got[0]
    assert message in got[0][len(prefix):], got[0]


def test_task_options_of_a_task_without_a_shape_function():
    text = QUBIT.replace("name: qubit-readout\n  options: {n_shots: 2000}", "name: radioml2016")
    text = text.replace("window_start: {min: 0, max: 300, step: 50}\n    window_size: [50, 100, 400]",
                        "split_seed: [1, 2]")
    got = problems(text)
    assert got == [f"exp.yaml:{line_of(text, 'task_options')}: space.task_options: task 'radioml2016' cannot tell "
                   "its input shape without loading its data, so its options cannot be searched"]
