"""Ways in for a user's own data (docs/extending.md): a task module named by the experiment's ``task.module``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from hwnas.config import ConfigError, hash_payload, parse_experiment
from hwnas.tasks import get_task, load_task_module, registry, task_names

DOC = Path(__file__).parents[1] / "docs" / "extending.md"


@pytest.fixture
def isolated_tasks(monkeypatch):
    """Tasks and modules registered by a test vanish after it (the built-in ones are registered first)."""
    task_names()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_MODULE_TASKS", {})
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if not name.startswith(("hwnas", "torch", "optuna", "sklearn")):
            sys.modules.pop(name, None)


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)


def _experiment(module: str = "my_task") -> str:
    return f"""\
name: plug
task: {{name: my-task, module: {module}}}
space: {{family: mlp, dense_layers: {{min: 1, max: 1}}, dense_units: [8]}}
objectives:
  - {{metric: accuracy, direction: maximize}}
  - {{metric: bops, direction: minimize}}
"""


def test_the_documented_task_module_runs_a_search(tmp_path, isolated_tasks, capsys):
    from hwnas.cli import main

    (tmp_path / "my_task.py").write_text(_blocks("python")[0])
    experiment = _blocks("yaml")[0]
    assert "module: my_task" in experiment
    path = tmp_path / "my-search.yaml"
    path.write_text(experiment.replace("n_trials: 8", "n_trials: 1").replace("epochs: 10", "epochs: 1")
                    .replace("n: 1200", "n: 150"))
    assert main(["search", str(path), "--quiet"]) == 0
    assert "my-task" in task_names() and get_task("my-task").defaults == {"n": 1200}
    assert (tmp_path / "runs" / "my-search").is_dir()
    assert str(tmp_path) not in sys.path  # the folder was on the path only while the module was imported


def test_task_module_round_trips_and_stays_out_of_the_hash_when_unset(tmp_path, isolated_tasks):
    (tmp_path / "my_task.py").write_text(_blocks("python")[0])
    exp = parse_experiment(_experiment(), base_dir=tmp_path)
    assert exp.task.module == "my_task"
    assert parse_experiment(exp.to_yaml(), base_dir=tmp_path) == exp
    assert hash_payload(exp)["task"]["module"] == "my_task"
    plain = parse_experiment(_experiment().replace(", module: my_task", "").replace("my-task", "digits"))
    assert "module" not in hash_payload(plain)["task"]  # studies hashed before the key existed still match
    assert load_task_module("my_task") == ("my-task",)


@pytest.mark.parametrize("module, files, message", [
    ("no_such_mod", {}, r"task\.module: no module named 'no_such_mod' in Python's path or .*; install"),
    ("empty_mod", {"empty_mod.py": "X = 1\n"}, r"task\.module: importing 'empty_mod' registered no task"),
    ("broken_mod", {"broken_mod.py": "raise RuntimeError('boom')\n"},
     r"task\.module: importing 'broken_mod' failed: RuntimeError: boom"),
    ("needs_dep", {"needs_dep.py": "import not_installed_dep_xyz\n"},
     r"task\.module: importing 'needs_dep' failed: No module named 'not_installed_dep_xyz'"),
    ("my_task.py", {}, r"task\.module: 'my_task\.py' is not a dotted Python module name .*without \.py"),
])
def test_a_bad_task_module_is_one_line_naming_the_key(tmp_path, isolated_tasks, module, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as info:
        parse_experiment(_experiment(module), source="exp.yaml", base_dir=tmp_path)
    assert len(info.value.problems) == 1, str(info.value)
    assert re.match(rf"exp\.yaml:2: {message}", str(info.value)), str(info.value)


def test_readers_that_run_no_user_code_refuse_task_module(tmp_path, isolated_tasks):
    (tmp_path / "spy_mod.py").write_text("import sys\nsys.modules['hwnas_spy_imported'] = sys\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml:2: task\.module: modules of your own are not imported here"):
        parse_experiment(_experiment("spy_mod"), source="exp.yaml", base_dir=tmp_path, plugins=False)
    from hwnas.agent.experiments import ExperimentError, load
    from hwnas.agent.files import Root

    (tmp_path / "exp.yaml").write_text(_experiment("spy_mod"))
    with pytest.raises(ExperimentError, match=r"task\.module: modules of your own are not imported here"):
        load(Root(tmp_path), tmp_path / "exp.yaml")  # the MCP server's validate_experiment and start_job
    assert "hwnas_spy_imported" not in sys.modules and "spy_mod" not in sys.modules
