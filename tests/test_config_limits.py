"""Limits of experiment files and budgets: absurd values, oversized and alias-bomb YAML, budget raises, and what
``hwnas search``/``pareto``/``select`` say about the storage and failed trials."""

from __future__ import annotations

import types
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hwnas.cli import main
from hwnas.cli_search import _print_outcome, dashboard_url
from hwnas.config import MAX_FILE_BYTES, MAX_TRIALS, MAX_YAML_NODES, ConfigError, load_experiment, parse_experiment
from hwnas.errors import HwnasError
from hwnas.pipeline import PipelineError, run_pipeline
from hwnas.search.run import experiment_metadata
from hwnas.search.storage import resolve_storage
from hwnas.search.workers import (
    BUDGET_ATTR,
    StudyMismatchError,
    _check_recorded,
    create_study,
    extend_budget,
    failure_lines,
    join_study,
    run_worker,
)
from tests.experiments import tiny_mlp

BASE = """\
name: x
task: {name: digits}
objectives: [{metric: accuracy, direction: maximize}]
"""

TINY = tiny_mlp(trials=1)


def problems(text: str) -> str:
    with pytest.raises(ConfigError) as err:
        parse_experiment(text)
    assert isinstance(err.value, HwnasError)
    return str(err.value)


# ------------------------------------------------------------------------------------------- values
@pytest.mark.parametrize(("yaml_text", "expected"), [
    ("search: {n_trials: 1000000000000000000000000000000}",
     "search.n_trials: must be less than or equal to 100000"),
    ("search: {n_trials: 100001}", "search.n_trials: must be less than or equal to 100000"),
    ("search: {n_trials: 1e30}", "search.n_trials: must be a valid integer, got 1e+30"),
    ("search: {n_trials: 5.0}", "search.n_trials: must be a valid integer"),
    ("search: {n_trials: true}", "search.n_trials: must be a valid integer, got True"),
    ("search: {n_trials: .inf}", "search.n_trials: must be a valid integer"),
    ("search: {n_trials: 0}", "search.n_trials: must be greater than or equal to 1"),
    ("training: {epochs: 10001}", "training.epochs: must be less than or equal to 10000"),
    ("training: {epochs: 1e9}", "training.epochs: must be a valid integer"),
    ("training: {batch_size: 1048577}", "training.batch_size: must be less than or equal to 1048576"),
    ("training: {threads: 100000}", "training.threads: must be less than or equal to 1024"),
    ("training: {patience: 99999999}", "training.patience: must be less than or equal to 10000"),
    ("training: {lr: .nan}", "training.lr: must be a finite number"),
    ("training: {weight_decay: .inf}", "training.weight_decay: must be a finite number"),
    ("hardware: {clock_mhz: 1e30}", "hardware.clock_mhz: must be less than or equal to 10000"),
    ("search: {strategy: nsga2, options: {population_size: 100000000}}",
     "search.options.population_size: must be less than or equal to 10000"),
    ("search: {strategy: monas_lq, n_trials: 100, options: {candidates_per_round: 1000000000}}",
     "search.options.candidates_per_round: must be less than or equal to 1000000"),
    ("search: {strategy: monas_lq, n_trials: 100, options: {predictor_hidden: [64, 10000000]}}",
     "search.options.predictor_hidden[1]: must be less than or equal to 65536"),
    ("storage: {retry_failed: 1000000}", "storage.retry_failed: must be less than or equal to 100"),
    ("run: {verify_samples: 1000000000}", "run.verify_samples: must be less than or equal to 1000000"),
    ("run: {local: {iterations: 100000}}", "run.local.iterations: must be less than or equal to 1000"),
    ("constraints: [{metric: params, max: 1" + "0" * 400 + "}]", "constraints[0].max: must be a finite number"),
    ("space: {family: mlp, dense_units: [16, 10000000]}",
     "space.dense_units: 10,000,000 is above hwnas's limit of 65,536"),
    ("space: {family: mlp, dense_layers: {min: 0, max: 1000}}",
     "space.dense_layers: 1,000 is above hwnas's limit of 64"),
    ("space: {family: mlp, dense_units: {min: 1, max: 300000000}}",  # expanding this took a minute
     "space.dense_units: the range {min: 1, max: 300000000, step: 1} holds 300,000,000 values; at most 100,000"),
    ("seed: " + "1" * 5000, "YAML error: Exceeds the limit"),
])
def test_absurd_values_name_the_key_and_the_limit(yaml_text, expected):
    assert expected in problems(BASE + yaml_text + "\n")


def test_limits_accept_their_boundary():
    exp = parse_experiment(BASE + f"search: {{n_trials: {MAX_TRIALS}}}\ntraining: {{epochs: 10000, batch_size: "
                           "1048576}\nspace: {family: mlp, dense_units: {min: 1, max: 65536, step: 1}}\n")
    assert exp.search.n_trials == MAX_TRIALS and exp.training.epochs == 10000


@pytest.mark.parametrize(("task", "option", "value", "limit"), [
    ("amc-rml2016", "per_pair", 100_000_000, "[1, 100,000]"),
    ("amc-rml2018", "workers", 100_000, "[1, 256]"),
    ("amc-rml2016", "workers", 0, "[1, 256]"),
    ("qubit-readout", "n_shots", 10**12, "[1, 1,000,000]"),
])
def test_data_sizes_of_task_options_are_bounded(task, option, value, limit):
    text = f"name: x\ntask: {{name: {task}, options: {{{option}: {value}}}}}\n" \
           "objectives: [{metric: accuracy, direction: maximize}]\n"
    assert f"task.options.{option}: must be in {limit} (hwnas's limit for '{option}')" in problems(text)


def test_searched_task_option_choices_are_bounded():
    text = "name: x\ntask: {name: qubit-readout}\nspace: {family: mlp, task_options: {n_shots: [100, 100000000]}}\n" \
           "objectives: [{metric: accuracy, direction: maximize}]\n"
    assert "space.task_options.n_shots: must be in [1, 1,000,000]" in problems(text)


def test_experiment_name_length():
    assert "name: has 300 characters; at most 128" in problems(BASE.replace("name: x", "name: " + "a" * 300))


# ------------------------------------------------------------------------------------------- files
def test_file_size_cap(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text(BASE + "description: '" + "x" * MAX_FILE_BYTES + "'\n")
    with pytest.raises(ConfigError, match=r"big.yaml: the experiment file is larger than 1,048,576 bytes"):
        load_experiment(big)
    assert "at most 1,048,576" in problems(big.read_text())


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_an_endless_file_is_not_read_to_its_end():
    with pytest.raises(ConfigError, match="larger than 1,048,576 bytes"):
        load_experiment(Path("/dev/zero"))


def _laughs(levels: int, width: int = 10) -> str:
    """A billion-laughs document: ``width ** levels`` nodes once expanded, a few hundred bytes written."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("where", ["description", "task_options"])
def test_billion_laughs_is_refused_before_expanding(where):
    # 10^9 nodes once expanded (minutes and gigabytes if anything walked them); refused after one pass
    bomb = _laughs(9)
    assert len(bomb) < 1000
    tail = "description: *l9\n" if where == "description" else "space: {task_options: {x: *l9}}\n"
    text = problems(bomb + BASE + tail)
    assert f"YAML aliases expand to more than {MAX_YAML_NODES:,} nodes" in text


def test_merge_key_bomb_is_refused():
    # each level merges the previous mapping twice: 2^40 pairs once the merges are flattened
    lines = ["m0: &m0 {k0: 1, k1: 2}"] + [f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}]}}" for i in range(1, 41)]
    assert "YAML aliases expand to more than" in problems("\n".join(lines) + "\n" + BASE)


def test_many_plain_nodes_and_deep_nesting_and_cycles():
    flat = BASE + "description: [" + ", ".join(["0"] * (MAX_YAML_NODES + 1)) + "]\n"
    assert f"the YAML document has more than {MAX_YAML_NODES:,} nodes" in problems(flat)
    assert "nested too deeply" in problems(BASE + "description: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "4: YAML alias cycle" in problems(BASE + "description: &c [*c]\n")
    assert "YAML alias cycle" in problems(BASE.replace("task: {name: digits}", "task: &t {name: digits, options: "
                                                       "{x: *t}}"))


def test_aliases_within_the_limit_still_load_and_duplicates_are_reported_once():
    exp = parse_experiment(BASE + "hardware: {target: &dev ZCU104}\nrun: {hls4ml: {part: *dev}}\n")
    assert exp.run.hls4ml.part == exp.hardware.target == "ZCU104"
    text = "t: &t {epochs: 1, epochs: 2}\n" + BASE + "training: *t\n"
    lines = [line for line in problems(text).splitlines() if "duplicate key" in line]
    assert len(lines) == 1 and lines[0].startswith("<string>:1: t.epochs: duplicate key")


# ------------------------------------------------------------------------------------------- budgets
def test_with_n_trials_checks_the_flag_like_the_file():
    exp = parse_experiment(BASE)
    assert exp.with_n_trials(50).search.n_trials == 50 and exp.search.n_trials == 20
    assert exp.with_n_trials(50).output_dir() == exp.output_dir()
    for bad, message in ((0, "greater than or equal to 1"), (MAX_TRIALS + 1, "less than or equal to 100000"),
                         (True, "valid integer"), (1.5, "valid integer")):
        with pytest.raises(ConfigError, match=f"--n-trials: search.n_trials: must be .*{message}"):
            exp.with_n_trials(bad)
    monas = parse_experiment(BASE + "search: {strategy: monas_lq, n_trials: 30, options: {bootstrap_size: 8}}\n")
    with pytest.raises(ConfigError, match=r"--n-trials: search\.options\.bootstrap_size: hpo_trials"):
        monas.with_n_trials(10)


def test_extend_budget_refuses_lowering_and_completes_an_interrupted_raise(tmp_path):
    storage = resolve_storage("sqlite:///s.db", tmp_path)
    study = create_study("s", storage, ["minimize"], budget=3, metadata={})
    with pytest.raises(StudyMismatchError, match="budget 2 of study 's' is too low: the study's budget is 3"):
        extend_budget(study, 2)
    with pytest.raises(ValueError, match="above hwnas's limit of 100,000"):
        extend_budget(study, 10**30)
    with pytest.raises(ValueError, match="above hwnas's limit"):
        create_study("big", storage, ["minimize"], budget=MAX_TRIALS + 1, metadata={})
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING))  # a raise to 4 cut short
    with pytest.raises(StudyMismatchError, match="already holds 4 trials"):
        extend_budget(study, 3)
    assert extend_budget(study, 6) == 2
    assert len(join_study("s", storage, budget=6).trials) == 6
    assert extend_budget(study, 6) == 0


def test_not_ready_names_the_storage_without_a_placeholder(tmp_path):
    storage = resolve_storage("sqlite:///s.db", tmp_path)
    half = optuna.create_study(study_name="half", storage=storage)
    half.set_user_attr(BUDGET_ATTR, 3)
    with pytest.raises(StudyMismatchError) as err:
        join_study("half", storage)
    message = str(err.value)
    assert "<url>" not in message and f"--storage 'sqlite:///{(tmp_path / 's.db').resolve()}'" in message
    # a server URL shows up with its password hidden
    server = types.SimpleNamespace(url="postgresql://hwnas:s3cret@db.example:5432/studies")
    fake = types.SimpleNamespace(user_attrs={BUDGET_ATTR: 3}, study_name="half",
                                 _storage=types.SimpleNamespace(_backend=server))
    with pytest.raises(StudyMismatchError) as err:
        _check_recorded(fake, budget=None, metadata=None, where="join_study")  # type: ignore[arg-type]
    assert "s3cret" not in str(err.value) and "'postgresql://hwnas:***@db.example:5432/studies'" in str(err.value)


def test_cli_n_trials_raises_the_budget_and_resumes(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text(TINY)
    assert main(["search", str(path), "--quiet"]) == 0
    exp = load_experiment(path)
    assert len(optuna.load_study(study_name="tiny", storage=exp.storage_url()).trials) == 1
    capsys.readouterr()
    assert main(["search", str(path), "--quiet", "--n-trials", "2"]) == 0
    assert "study 'tiny': 2 complete" in capsys.readouterr().out
    study = optuna.load_study(study_name="tiny", storage=exp.storage_url())
    assert len(study.trials) == 2 and study.user_attrs[BUDGET_ATTR] == 2
    # the yaml still says 1: refused with what to do; the flag or an updated yaml resume it
    assert main(["search", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "budget 1 differs from the study's 2" in err and "--n-trials 2" in err and "search.n_trials: 2" in err
    assert main(["pareto", str(path), "--n-trials", "2"]) == 0
    assert main(["search", str(path), "--quiet", "--n-trials", "1"]) == 2
    assert "too low: the study's budget is 2" in capsys.readouterr().err
    assert main(["search", str(path), "--quiet", "--n-trials", "1000000"]) == 2
    assert "--n-trials: search.n_trials: must be less than or equal to 100000" in capsys.readouterr().err
    path.write_text(TINY.replace("n_trials: 1", "n_trials: 2"))
    assert main(["search", str(path), "--quiet"]) == 0
    assert len(optuna.load_study(study_name="tiny", storage=exp.storage_url()).trials) == 2
    # a study made with the flag from scratch takes the flag's budget
    other = tmp_path / "other"
    other.mkdir()
    (other / "exp.yaml").write_text(TINY)
    assert main(["search", str(other / "exp.yaml"), "--quiet", "--n-trials", "2"]) == 0
    assert "study 'tiny': 2 complete" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- output
def _trial(number: int, error: str | None) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={} if error is None else {"error": error})


def test_failure_lines_group_and_truncate():
    trials = []
    for n in range(30):
        t = _trial(n, f"ValueError: reason {n % 12}\ntraceback line" if n % 12 else None)
        t.number = n
        trials.append(t)
    lines = failure_lines(trials)
    assert len(lines) == 11 and lines[-1] == "  ... and 2 more reason(s) (4 trials)"
    assert lines[0] == "  trials 0, 12, 24: no reason recorded (failed outside hwnas, or its process was killed)"
    assert "traceback line" not in "\n".join(lines)
    many = [_trial(n, "RuntimeError: " + "x" * 500) for n in range(8)]
    for n, t in enumerate(many):
        t.number = n
    (line,) = failure_lines(many)
    assert line.startswith("  trials 0, 1, 2, 3, 4, ... (3 more): RuntimeError: xxx") and len(line) < 260


def test_outcome_redacts_the_dashboard_password_and_lists_failures(tmp_path, capsys):
    exp = parse_experiment(BASE + "output: out\nstorage: {url: 'postgresql://hwnas:s3cret@db.example/studies'}\n",
                           base_dir=tmp_path)
    assert dashboard_url(exp) == "postgresql://hwnas:***@db.example/studies"
    failed = [_trial(0, "RuntimeError: CUDA out of memory"), _trial(1, "RuntimeError: CUDA out of memory")]
    for n, t in enumerate(failed):
        t.number = n
    study = types.SimpleNamespace(get_trials=lambda deepcopy=True, states=None: failed)
    summary = {"study_name": "x", "states": {"COMPLETE": 0, "FAIL": 2}, "remaining": 0, "feasible": 0,
               "infeasible": 0}
    outcome = types.SimpleNamespace(summary=summary, study=study, archive=types.SimpleNamespace(front=[]),
                                    files={"summary": tmp_path / "out" / "search.json"})
    assert _print_outcome(outcome, exp) == 1
    out = capsys.readouterr().out
    assert "s3cret" not in out and "dashboard: optuna-dashboard postgresql://hwnas:***@db.example/studies" in out
    lines = out.splitlines()
    assert lines[1] == "failed trials (2), by reason:"
    assert lines[2] == "  trials 0, 1: RuntimeError: CUDA out of memory"
    journal = parse_experiment(BASE + "storage: {url: 'journal:///j.log'}\n", base_dir=tmp_path)
    assert dashboard_url(journal) == str((tmp_path / "j.log").resolve())


def test_pareto_and_select_report_failed_trials(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text(TINY.replace("n_trials: 1", "n_trials: 3"))
    exp = load_experiment(path)
    storage = resolve_storage(exp.storage_url(), exp.output_dir())
    create_study("tiny", storage, exp.directions, budget=3, metadata=experiment_metadata(exp))

    def boom(trial):
        trial.suggest_int("x", 0, 3)
        raise RuntimeError("data loader exploded" if trial.number < 2 else "disk full")

    run_worker("tiny", storage, boom, sampler=optuna.samplers.RandomSampler(seed=0), budget=3, worker_id=0,
               metadata=experiment_metadata(exp), progress=False)
    assert main(["pareto", str(path)]) == 1  # no feasible trial
    out = capsys.readouterr().out
    assert "failed trials (3), by reason:\n  trials 0, 1: RuntimeError: data loader exploded\n" \
           "  trial 2: RuntimeError: disk full\n" in out
    logged: list[str] = []
    with pytest.raises(PipelineError, match="no feasible trial"):
        run_pipeline(exp, stages=["select"], log=logged.append)
    assert "[select] 3 of 3 trials failed; most common reason (2 of them): RuntimeError: data loader exploded" \
        in logged
