"""Experiment files for the MCP server: validate one (every problem with file, line and key path), write one.

Contract (``docs/agent.md``, tools ``validate_experiment`` and ``write_experiment``):

* :func:`validate` parses a file (or text) with :func:`hwnas.config.parse_experiment` and adds the server's own
  rule: every path the experiment writes or reads (``output``, a ``sqlite``/``journal`` ``storage.url``,
  ``hardware.cpu_table``, a task option naming a file or folder) must resolve inside the root; a database server
  URL is refused. Problems come back as ``{file, line, column, key, message}`` (``file`` relative to the root).
* :func:`write` builds an experiment from a task, a trial budget and a hardware target (plus optional objectives,
  constraints, epochs, family and ``overrides`` merged into the sections), validates it like :func:`validate` and
  only then writes it (atomically; an existing file only with ``overwrite``). It returns the YAML.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from hwnas.agent.files import AgentError, Root

__all__ = ["ExperimentError", "load", "summary", "validate", "write"]

_PATH_OPTION = re.compile(r"(^|_)(dir|path|file|folder|cache|table)$")
_FILE_URL_RE = re.compile(r"^(sqlite|journal):///(.+)$")  # storage.url's file form (hwnas.config)


class ExperimentError(AgentError):
    """An experiment that is not valid (or not confined to the root); :attr:`problems` as dictionaries."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        self.problems = problems
        super().__init__("; ".join(_problem_text(p) for p in problems))


def _problem_text(p: dict[str, Any]) -> str:
    where = p["file"] + (f":{p['line']}" if p.get("line") else "")
    return f"{where}: {p['key']}: {p['message']}" if p.get("key") else f"{where}: {p['message']}"


def _node_line(text: str, keys: tuple[str, ...]) -> int | None:
    """The 1-based line of the value at ``keys`` in the YAML ``text`` (its deepest existing key), or None."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            break
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                line, node = k.start_mark.line + 1, v
                break
        else:
            break
    return line


def _confinement_problems(root: Root, exp: Any, text: str, source: str) -> list[dict[str, Any]]:
    """The paths of a valid experiment that leave the root (each as a problem naming its key)."""
    found: list[tuple[tuple[str, ...], str]] = []

    def check(keys: tuple[str, ...], path: Path, given: str) -> None:
        if not root.inside(path):
            found.append((keys, f"{given!r} resolves to {path.resolve()}, outside the server's root {root.path}; "
                                "use a path inside the root"))

    check(("output",), exp.output_dir(), exp.output or f"runs/{exp.name}")
    url = exp.storage.url
    if url is not None:
        m = _FILE_URL_RE.match(url)
        if m is None:
            found.append((("storage", "url"), f"{url.split('://')[0]}:// storage is not used by the MCP server; use "
                          "a sqlite:/// or journal:/// file inside the root (or null)"))
        elif m.group(2) != ":memory:":
            check(("storage", "url"), exp.base_dir / m.group(2), url)
    if exp.hardware.cpu_table is not None:
        check(("hardware", "cpu_table"), exp.cpu_table_path(), exp.hardware.cpu_table)
    for key, value in (exp.task.options or {}).items():
        if isinstance(value, str) and _PATH_OPTION.search(str(key)):
            # the job runs in the root: a relative task path is relative to it
            given = Path(value).expanduser()
            check(("task", "options", str(key)), given if given.is_absolute() else root.path / given, value)
    return [{"file": source, "line": _node_line(text, keys), "column": None, "key": ".".join(keys),
             "message": message} for keys, message in found]


def load(root: Root, path: Path | None, text: str | None = None) -> tuple[Any, str, str]:
    """Parse an experiment file inside the root (or ``text``, as if it were that file): (experiment, text, source).

    Raises:
        ExperimentError: every problem of the file, confinement to the root included.
    """
    from hwnas.config import MAX_FILE_BYTES, ConfigError, parse_experiment

    source = root.rel(path) if path is not None else "<text>"
    if text is None:
        if path is None or not path.is_file():
            raise AgentError(f"{source}: no such experiment file")
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ExperimentError([{"file": source, "line": None, "column": None, "key": "",
                                       "message": f"not UTF-8 text ({err.reason})"}]) from None
    base_dir = path.parent if path is not None else root.path
    try:
        exp = parse_experiment(text, source=source, base_dir=base_dir, plugins=False)  # no user code
    except ConfigError as err:
        raise ExperimentError([{"file": p.source, "line": p.line, "column": p.column, "key": p.path,
                                   "message": p.message} for p in err.problems]) from None
    problems = _confinement_problems(root, exp, text, source)
    if problems:
        raise ExperimentError(problems)
    return exp, text, source


def summary(root: Root, exp: Any) -> dict[str, Any]:
    """What a valid experiment does, in a few keys."""
    return {"name": exp.name, "task": exp.task.name,
            "objectives": [f"{o.metric}:{o.direction}" for o in exp.objectives],
            "constraints": [{k: v for k, v in c.model_dump().items() if v is not None} for c in exp.constraints],
            "strategy": exp.search.strategy, "n_trials": exp.search.n_trials, "epochs": exp.training.epochs,
            "target": exp.hardware.target, "hardware_model": exp.hardware.model, "output": root.rel(exp.output_dir())}


def validate(root: Root, path: Path | None, text: str | None = None) -> dict[str, Any]:
    """``{"valid": True, "summary": ...}`` or ``{"valid": False, "errors": [...]}``; never raises for a bad file."""
    try:
        exp, _, source = load(root, path, text)
    except ExperimentError as err:
        return {"valid": False, "file": root.rel(path) if path is not None else "<text>", "errors": err.problems}
    return {"valid": True, "file": source, "errors": [], "summary": summary(root, exp)}


def _family(task_name: str) -> str:
    """The space family that fits the task's input: mlp (vectors), cnn1d (channels × length), cnn2d (images)."""
    from hwnas.tasks import TaskError, get_task

    task = get_task(task_name)
    guess = "cnn1d" if "amc" in task_name or "radioml" in task_name else "mlp"  # a task that reads a file first
    if task.shape is None:
        return guess
    try:
        rank = len(task.shape(dict(task.defaults)))
    except (TaskError, ValueError, TypeError, KeyError):
        return guess
    return {1: "mlp", 2: "cnn1d"}.get(rank, "cnn2d")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _objective(text: str, i: int) -> dict[str, str]:
    metric, _, direction = text.partition(":")
    direction = {"max": "maximize", "min": "minimize"}.get(direction.strip(), direction.strip())
    if not metric.strip() or direction not in ("maximize", "minimize"):
        raise AgentError(f"objectives[{i}]: {text!r}; expected 'metric:maximize' or 'metric:minimize' "
                         "(max/min also accepted)")
    return {"metric": metric.strip(), "direction": direction}


def write(root: Root, path: Path, *, task: str, n_trials: int, target: str, hardware_model: str = "hls4ml",
          objectives: list[str] | None = None, constraints: dict[str, Any] | None = None,
          epochs: int | None = None, strategy: str | None = None, family: str | None = None,
          name: str | None = None, description: str = "", output: str | None = None,
          overrides: dict[str, Any] | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Build, validate and write an experiment (module docstring); the written YAML and its summary."""
    from hwnas.tasks import TaskError, get_task

    if path.suffix not in (".yaml", ".yml"):
        raise AgentError(f"path: {root.rel(path)!r} must end in .yaml or .yml")
    if path.exists() and not overwrite:
        raise AgentError(f"path: {root.rel(path)} exists; give overwrite=true to replace it, or another path")
    try:
        get_task(task)
    except TaskError as err:
        raise AgentError(f"task: {err}") from None
    objs = ([_objective(o, i) for i, o in enumerate(objectives)] if objectives else
            [{"metric": "accuracy", "direction": "maximize"},  # the task's own metric (fidelity, ...) goes by it
             {"metric": "bops" if hardware_model == "none" else "luts", "direction": "minimize"}])
    data: dict[str, Any] = {
        "name": name or re.sub(r"[^A-Za-z0-9._-]", "-", path.stem).strip("-._") or "experiment",
        "description": description}
    if output is not None:
        data["output"] = output
    data.update({
        "task": {"name": task},
        "space": {"family": family or _family(task)},
        "objectives": objs,
        "constraints": [{"metric": m, "max": v} for m, v in (constraints or {}).items()],
        "hardware": {"target": target, "model": hardware_model},
        "training": {} if epochs is None else {"epochs": epochs},
        "search": {"n_trials": n_trials, **({"strategy": strategy} if strategy else {})},
    })
    if overrides:
        if not isinstance(overrides, dict):
            raise AgentError("overrides: expected a mapping of sections (e.g. {\"run\": {\"synth\": \"off\"}})")
        data = _merge(data, overrides)
    data = {k: v for k, v in data.items() if v != {} or k in ("task", "space")}
    header = "# written by hwnas mcp (write_experiment)" + (f": {description}" if description else "") + "\n"
    text = header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True, width=100)
    exp, _, _ = load(root, path, text)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return {"path": root.rel(path), "valid": True, "yaml": text, "summary": summary(root, exp)}
