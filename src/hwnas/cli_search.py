"""``hwnas config``, ``hwnas search``, ``hwnas worker`` and ``hwnas pareto``: experiments and their studies.

Exit status (:mod:`hwnas.errors`): 0 success, 2 bad input (a malformed experiment names the key path and line; a
storage that cannot be opened; a study of another experiment), 1 a failure (a search that finished without any
feasible trial; a stage of ``hwnas run`` that failed its check, or whose tool is missing), 130 interrupted.
``hwnas search --n-trials N`` raises the study's budget to N for this run (never lowers it); ``hwnas worker``
and ``hwnas pareto`` take the raised budget with the same flag. ``search`` and ``pareto`` list the failed
trials by reason after the summary line; the ``dashboard:`` line hides a storage password as ``***``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_run_commands", "add_search_commands", "dashboard_url"]


def _error(message: str, code: int = 2) -> int:
    print(f"hwnas: error: {message}", file=sys.stderr)
    return code


def _load(path: str) -> Any:
    from hwnas.config import load_experiment

    return load_experiment(path)


def _config(args: argparse.Namespace) -> int:
    from hwnas.config import ConfigError, defaults_yaml, reference_markdown

    if args.defaults:
        print(defaults_yaml(), end="")
        return 0
    if args.reference:
        print(reference_markdown(), end="")
        return 0
    if args.file is None:
        return _error("config: name an experiment file, or use --defaults / --reference")
    try:
        exp = _load(args.file)
    except ConfigError as err:
        return _error(str(err))
    print(exp.to_yaml(comments=args.comments), end="")
    print(f"# valid: {len(exp.objectives)} objective(s), {len(exp.constraints)} constraint(s), strategy "
          f"{exp.search.strategy}, {exp.search.n_trials} trials, output {exp.output_dir()}", file=sys.stderr)
    return 0


def dashboard_url(experiment: Any) -> str:
    """What to give ``optuna-dashboard`` for the experiment's study: its storage URL, any password as ``***``.

    A journal file is given as its path (optuna-dashboard opens a journal file by path).
    """
    from hwnas.search.storage import _redact

    url = experiment.storage_url()
    if url.startswith("journal:///"):
        return url[len("journal:///"):]
    return url if url.startswith("sqlite:") else _redact(url)  # a file URL has no password (and keeps its slashes)


def _print_failures(study: Any, out: Any) -> None:
    from optuna.trial import TrialState

    from hwnas.search.workers import failure_lines

    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    if not failed:
        return
    print(f"failed trials ({len(failed)}), by reason:")
    for line in failure_lines(failed):
        print(line)
    print(f"  (every trial's error: {out / 'pareto' / 'trials.csv'}, column error; tracebacks in optuna-dashboard)")


def _print_outcome(outcome: Any, experiment: Any) -> int:
    s = outcome.summary
    states = s["states"]
    print(f"study {s['study_name']!r}: {states['COMPLETE']} complete, {states['FAIL']} failed, "
          f"{s['remaining']} not run, {s['feasible']} feasible, {s['infeasible']} infeasible"
          + (f"; stopped early ({s['stopped']})" if s.get("stopped") else ""))
    _print_failures(outcome.study, outcome.files["summary"].parent)
    metrics = [o.metric for o in experiment.objectives]
    if outcome.archive.front:
        print(f"Pareto front ({len(outcome.archive.front)} trials):")
        print("  trial  " + "  ".join(f"{m:>14s}" for m in metrics) + "  point")
        for t in outcome.archive.front:
            vals = outcome.archive.values(t)
            mark = "*" if t.number == s.get("knee") else " "
            point = t.user_attrs.get("point")
            desc = ""
            if point is not None:
                from hwnas.space import Point

                try:
                    desc = Point.from_dict(point).describe()
                except Exception:  # a point written by another version: show nothing rather than fail
                    desc = ""
            print(f"  {t.number:5d}{mark} " + "  ".join(f"{v:14.6g}" for v in vals) + f"  {desc}")
        print("  (* knee point)")
    best = s.get("best_composite")
    if best:
        print(f"best composite score: trial {best['number']} (score {best['score']:.4f})")
    print(f"results: {outcome.files['summary'].parent / 'pareto'}  (pareto.csv, trials.csv, pareto.json)")
    print(f"dashboard: optuna-dashboard {dashboard_url(experiment)}")
    return 0 if s["feasible"] else 1


def _run(args: argparse.Namespace, create: bool) -> int:
    import logging

    from hwnas.config import ConfigError
    from hwnas.cost.cpu_profile import CpuTableError
    from hwnas.search.run import run_search
    from hwnas.search.storage import StorageError
    from hwnas.search.workers import StudyMismatchError
    from hwnas.space import SpaceError
    from hwnas.tasks import TaskError

    try:
        exp = _load(args.experiment)
        if args.n_trials is not None:
            exp = exp.with_n_trials(args.n_trials)
    except ConfigError as err:
        return _error(str(err))
    import optuna

    # hwnas's loggers follow -v/-q/--log-level (hwnas.cli_util; -v: one line per trial); Optuna's own only at DEBUG
    debug = getattr(args, "log_level_value", logging.WARNING) <= logging.DEBUG
    optuna.logging.set_verbosity(optuna.logging.INFO if debug else optuna.logging.WARNING)
    try:
        if not create and getattr(args, "wait", 0):
            wait_for_study(exp, float(args.wait))
        outcome = run_search(exp, worker=args.id, create=create, progress=not args.quiet,
                             timeout_s=args.timeout, raise_budget=create and args.n_trials is not None)
    except (StorageError, StudyMismatchError, SpaceError, TaskError, CpuTableError) as err:
        return _error(str(err), err.exit_code)
    return _print_outcome(outcome, exp)


def _search(args: argparse.Namespace) -> int:
    return _run(args, create=True)


def wait_for_study(experiment: Any, seconds: float, poll_s: float = 0.5) -> None:
    """Wait up to ``seconds`` for ``hwnas search`` to create the experiment's study.

    For the workers of a job array that start together with it. Waits while there is no study (file) yet or its
    creation is still enqueueing trials; any other refusal (another experiment's study, a bad storage URL) is
    raised at once, and so is the last one when the time is up.
    """
    import time

    from hwnas.search.run import open_study
    from hwnas.search.storage import StudyNotFoundError
    from hwnas.search.workers import StudyNotReadyError

    deadline = time.monotonic() + max(0.0, seconds)
    while True:
        try:
            open_study(experiment)
            return
        except (StudyNotFoundError, StudyNotReadyError):
            if time.monotonic() + poll_s > deadline:
                raise
            time.sleep(poll_s)


def _worker(args: argparse.Namespace) -> int:
    if args.id < 1:
        return _error("worker: --worker must be >= 1 (worker 0 is the hwnas search process)")
    return _run(args, create=False)


def _pareto(args: argparse.Namespace) -> int:
    from hwnas.config import ConfigError
    from hwnas.search.run import open_study, write_results
    from hwnas.search.storage import StorageError
    from hwnas.search.workers import StudyMismatchError

    try:
        exp = _load(args.experiment)
        if args.n_trials is not None:
            exp = exp.with_n_trials(args.n_trials)
        study = open_study(exp)
    except ConfigError as err:
        return _error(str(err))
    except (StorageError, StudyMismatchError) as err:
        return _error(str(err))
    outcome = write_results(exp, study)
    if args.json:
        print(json.dumps(outcome.summary, indent=2, default=str))
        return 0
    return _print_outcome(outcome, exp)


def add_search_commands(sub: Any) -> None:
    """Register ``config``, ``search``, ``worker`` and ``pareto`` on the ``hwnas`` sub-command parser."""
    cfg = sub.add_parser("config", help="validate an experiment file and print it with every default filled in",
                         usage="%(prog)s (EXPERIMENT.yaml [--comments] | --defaults | --reference)")
    what = cfg.add_mutually_exclusive_group(required=True)  # one of the three: shown so in the usage line
    what.add_argument("file", nargs="?", help="experiment YAML")
    what.add_argument("--defaults", action="store_true", help="print the complete default experiment (commented)")
    what.add_argument("--reference", action="store_true", help="print the reference of every key (Markdown)")
    cfg.add_argument("--comments", action="store_true", help="add each key's description as a comment")
    cfg.set_defaults(func=_config)

    for name, helptext, func in (
            ("search", "create the experiment's study (or resume it) and run worker 0 until the budget is spent",
             _search),
            ("worker", "join an existing study from another process or machine and run trials", _worker)):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("experiment", help="experiment YAML")
        if name == "worker":
            p.add_argument("--worker", "--id", dest="id", type=int, required=True,
                           help="this worker's index (>= 1, distinct per worker): seeds its sampler")
        else:
            p.set_defaults(id=0)
        if name == "search":
            p.add_argument("--n-trials", type=int, default=None, metavar="N",
                           help="the study's budget for this run instead of search.n_trials: raises an existing "
                                "study's budget to N (never lowers it); resume later with --n-trials N or with "
                                "search.n_trials: N in the file")
        else:
            p.add_argument("--n-trials", type=int, default=None, metavar="N",
                           help="the study's budget when `hwnas search --n-trials N` raised it above search.n_trials")
        p.add_argument("--timeout", type=float, default=None, help="stop claiming trials after this many seconds")
        if name == "worker":
            p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                           help="wait up to SECONDS for `hwnas search` to create the study (a job array's workers "
                                "start with it); default: refuse at once when there is none")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--verbose", action="store_true", help="log every trial (as hwnas -v)")
        p.set_defaults(func=func)

    par = sub.add_parser("pareto", help="export the study's Pareto archive again and print the front")
    par.add_argument("experiment", help="experiment YAML")
    par.add_argument("--json", action="store_true", help="print the summary as JSON")
    par.add_argument("--n-trials", type=int, default=None, metavar="N",
                     help="the study's budget when `hwnas search --n-trials N` raised it above search.n_trials")
    par.set_defaults(func=_pareto)


def _pipeline(args: argparse.Namespace) -> int:
    from hwnas.config import ConfigError
    from hwnas.cost.cpu_profile import CpuTableError
    from hwnas.export.errors import ExportError
    from hwnas.pipeline import STAGES, PipelineError, run_pipeline
    from hwnas.search.storage import StorageError
    from hwnas.search.workers import StudyMismatchError

    try:
        exp = _load(args.experiment)
    except ConfigError as err:
        return _error(str(err))
    import optuna

    from hwnas.cli_util import quiet, say

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stages = list(STAGES) if args.command == "run" else [args.command]
    if args.command == "run" and args.stages:
        stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    try:  # the stage lines are status lines (hwnas -q hides them); the results are printed below when quiet
        produced = run_pipeline(exp, stages=stages, force=args.force, progress=not args.quiet, log=say)
    except (PipelineError, StorageError, StudyMismatchError, ExportError, CpuTableError) as err:
        return _error(str(err), err.exit_code)
    if quiet():
        search = produced.get("search") or {}
        if search.get("remaining") or search.get("running"):
            print(f"[search] {search.get('remaining', 0)} trials left: not finished")
        if produced.get("report"):
            from pathlib import Path

            print(f"[report] {Path(produced['report']).resolve()}")
    return 0


def add_run_commands(sub: Any) -> None:
    """Register ``run``, ``select`` and ``report`` on the ``hwnas`` sub-command parser."""
    for name, helptext in (
            ("run", "the whole flow on one resumable output folder: search, select, local, export, verify, "
                    "synth, report"),
            ("select", "apply the experiment's run.select rules to its study (selection.json)"),
            ("local", "the local search (run.local) on the experiment's selected models"),
            ("report", "write the HTML report of an experiment's output folder (report/index.html)")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("experiment", help="experiment YAML")
        if name == "run":
            p.add_argument("--stages", help="comma-separated subset of search,select,local,export,verify,synth,report "
                           "(default all)")
        p.add_argument("--force", action="store_true", help="run the stage(s) again even if done")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.set_defaults(func=_pipeline)
