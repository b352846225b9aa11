"""Run an experiment's search: create the study once, run a worker on it, export the Pareto archive.

Contract:

* :func:`experiment_metadata` is what every worker of one study must agree on: a SHA-256 of the experiment's
  settings without ``search.n_trials`` (the budget is checked on its own, so a larger budget gives a clear
  "budget" error), ``storage`` and ``output`` (where a worker runs does not change the study), ``run``
  (what happens after the search) and ``hardware.cpu_profile`` (how a missing CPU table is made, not what a
  trial measures), plus the strategy name. An existing study whose recorded hash is an earlier form of the
  same experiment's (:func:`accepted_hashes`: keys of :data:`hwnas.config.HASH_NEUTRAL` hashed at their
  neutral value, as hwnas did before they were left out) is resumed with its recorded metadata.
* :func:`run_search` (``hwnas search``) creates the study if needed (:func:`hwnas.search.workers.create_study`,
  idempotent: re-running resumes the same study), then runs worker ``worker`` until no trial is left and
  every running trial of other workers has finished, then exports the archive. :func:`run_search` with
  ``create=False`` (``hwnas worker``) only joins: the study must exist. A study stopped early by a pipeline
  (``hwnas:stopped``) runs no more trials. With ``raise_budget`` (``hwnas search --n-trials N``, the experiment
  carrying ``search.n_trials = N``) an existing study's budget is raised to N before the worker runs; the budget
  is not part of the experiment hash, so the raised study is resumed later with ``--n-trials N`` or with
  ``search.n_trials: N`` in the file.
* The archive export (``<output>/pareto/``: CSV, JSON, per-trial folders; :meth:`ParetoArchive.export`) and
  ``<output>/search.json`` (the study summary, the worker's report, the knee point and, for strategies with
  a composite score, the best composite trial; with ``search.strategy: supernet`` the supernet's phase report
  under ``supernet``) are written atomically after the worker finishes.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from .guided import STOPPED_ATTR
from .objective import TrialContext, composite_score, make_objective
from .pareto import NoSelectionError, ParetoArchive
from .storage import StudyNotFoundError, describe_storage, read_errors, resolve_storage
from .strategies import make_strategy
from .workers import METADATA_ATTR, WorkerReport, create_study, join_study, run_worker, study_summary

__all__ = ["SearchOutcome", "accepted_hashes", "experiment_metadata", "open_study", "run_search", "write_json",
           "write_results"]

log = logging.getLogger(__name__)


def _settings_hash(data: dict[str, Any]) -> str:
    """The digest of an experiment payload without what no trial depends on (module docstring)."""
    from hwnas.config import payload_digest

    kept = {k: v for k, v in data.items() if k not in ("storage", "output", "run")}
    if isinstance(kept.get("search"), dict):
        kept["search"] = {k: v for k, v in kept["search"].items() if k != "n_trials"}
    return payload_digest(kept)


def experiment_metadata(experiment: Any) -> dict[str, Any]:
    """The settings every worker of the study must share (module docstring)."""
    from hwnas.config import hash_payload

    return {"experiment": experiment.name, "strategy": experiment.search.strategy,
            "experiment_hash": _settings_hash(hash_payload(experiment))}


def accepted_hashes(experiment: Any) -> set[str]:
    """Every experiment hash a study of ``experiment`` may carry: the current one and its earlier forms.

    The earlier forms come from :func:`hwnas.config.hash_payload_forms` (neutral keys hashed at their value).
    """
    from hwnas.config import hash_payload_forms

    return {_settings_hash(data) for data in hash_payload_forms(experiment)}


def _study_metadata(experiment: Any, name: str, storage: optuna.storages.BaseStorage) -> dict[str, Any]:
    """:func:`experiment_metadata`, with the study's recorded hash when that is an earlier form of it."""
    meta = experiment_metadata(experiment)
    try:
        recorded = optuna.load_study(study_name=name, storage=storage).user_attrs.get(METADATA_ATTR, {})
    except KeyError:  # no such study yet
        return meta
    old = recorded.get("experiment_hash")
    if old != meta["experiment_hash"] and old in accepted_hashes(experiment):
        log.info("study %r: experiment hash recorded in an earlier form (%s); resuming it", name, old)
        return {**meta, "experiment_hash": old}
    return meta


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temporary sibling, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def _storage(experiment: Any, *, create: bool) -> optuna.storages.BaseStorage:
    """The experiment's storage; ``create=False``: a missing study file is an error and nothing is created."""
    st = experiment.storage
    try:
        return resolve_storage(experiment.storage_url(), experiment.output_dir(), heartbeat_s=st.heartbeat_s,
                               grace_s=st.grace_s, create=create)
    except StudyNotFoundError as err:
        raise StudyNotFoundError(err.path, experiment.study_name()) from None


def _where(experiment: Any) -> str:
    return describe_storage(experiment.storage_url(), experiment.output_dir())


def open_study(experiment: Any) -> optuna.Study:
    """The experiment's existing study (read-only use: reports, exports); creates nothing.

    Raises:
        StudyNotFoundError: no study file yet (``hwnas search`` has not run); nothing is created.
        StorageError: the study file cannot be read (empty, foreign, corrupt, read-only).
        StudyMismatchError: no such study in the storage, or one of another experiment.
    """
    storage, name = _storage(experiment, create=False), experiment.study_name()
    with read_errors(_where(experiment)):
        return join_study(name, storage, budget=experiment.search.n_trials,
                          metadata=_study_metadata(experiment, name, storage))


@dataclass
class SearchOutcome:
    """What :func:`run_search` did and wrote."""

    study: optuna.Study
    report: WorkerReport | None
    archive: ParetoArchive
    summary: dict[str, Any]
    files: dict[str, Path]


def _best_composite(archive: ParetoArchive, weight: float) -> dict[str, Any] | None:
    best = None
    for t in archive.feasible:
        try:
            s = composite_score(t.user_attrs["metrics"], weight)
        except KeyError:
            return None
        if best is None or s < best[0]:
            best = (s, t)
    if best is None:
        return None
    return {"number": best[1].number, "score": best[0], "point": best[1].user_attrs.get("point"),
            "metrics": best[1].user_attrs.get("metrics")}


def write_results(experiment: Any, study: optuna.Study, report: WorkerReport | None = None) -> SearchOutcome:
    """Export the archive to ``<output>/pareto`` and the summary to ``<output>/search.json``."""
    out = experiment.output_dir()
    archive = ParetoArchive.from_study(study, [(o.metric, o.direction) for o in experiment.objectives])
    files = archive.export(out / "pareto", base=out)
    summary = study_summary(study)
    summary["strategy"] = experiment.search.strategy
    summary["stopped"] = study.user_attrs.get(STOPPED_ATTR)
    summary["front"] = [t.number for t in archive.front]
    try:
        summary["knee"] = archive.knee_point().number
    except NoSelectionError:
        summary["knee"] = None
    weight = getattr(experiment.search.options, "score_weight", None)
    summary["best_composite"] = _best_composite(archive, weight) if weight is not None else None
    summary["report"] = report.to_dict() if report is not None else None
    supernet = out / "supernet" / "report.json"
    if experiment.search.strategy == "supernet" and supernet.is_file():
        summary["supernet"] = json.loads(supernet.read_text())
    path = out / "search.json"
    write_json(path, summary)
    files = dict(files)
    files["summary"] = path
    return SearchOutcome(study, report, archive, summary, files)


def _raise_budget(name: str, storage: optuna.storages.BaseStorage, budget: int, meta: dict[str, Any]) -> None:
    """Raise the existing study ``name`` (of this experiment) to ``budget`` trials; nothing when there is none yet."""
    from .workers import extend_budget

    try:
        optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return  # create_study makes it with this budget
    added = extend_budget(join_study(name, storage, metadata=meta), budget)
    if added:
        log.info("study %r: budget raised to %d (%d trials added)", name, budget, added)


def run_search(experiment: Any, *, worker: int = 0, create: bool = True, progress: bool = True,
               timeout_s: float | None = None, ctx: TrialContext | None = None,
               raise_budget: bool = False) -> SearchOutcome:
    """Create (or join, ``create=False``) the study and run one worker on it (module docstring).

    ``raise_budget`` (``hwnas search --n-trials``): an existing study whose budget is below
    ``experiment.search.n_trials`` is raised to it first (:func:`hwnas.search.workers.extend_budget`); one above
    it is refused. Only the creating process (``create=True``) may raise a budget.

    Raises:
        StorageError: the storage URL cannot be opened.
        StudyMismatchError: the study exists with other settings, or (``create=False``) does not exist, or
            ``raise_budget`` would lower its budget.
    """
    # space errors (and profiling a missing CPU table) come before the study exists
    ctx = ctx if ctx is not None else TrialContext.create(experiment, setup_progress=progress)
    strategy = make_strategy(ctx, worker, progress=progress)
    storage = _storage(experiment, create=create)
    name, budget = experiment.study_name(), experiment.search.n_trials
    with read_errors(_where(experiment)):
        meta = _study_metadata(experiment, name, storage)
    if create:
        if raise_budget:
            _raise_budget(name, storage, budget, meta)
        study = create_study(name, storage, experiment.directions, budget=budget, metadata=meta)
    else:
        study = join_study(name, storage, budget=budget, metadata=meta)
    finished = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    if finished and strategy.name in ("nsga2", "tpe", "random"):  # a restart must not re-draw its earlier points
        strategy = make_strategy(ctx, worker, resumed=finished, progress=progress)
    report = None
    if study.user_attrs.get(STOPPED_ATTR):
        log.info("study %r was stopped (%s): no more trials", name, study.user_attrs[STOPPED_ATTR])
    else:
        if strategy.prepare is not None:
            strategy.prepare()
        objective = strategy.objective or make_objective(ctx, vector=strategy.vector)
        report = run_worker(name, storage, objective, sampler=strategy.sampler,
                            budget=budget, worker_id=worker, callbacks=strategy.callbacks, progress=progress,
                            timeout_s=timeout_s, metadata=meta, retry_failed=experiment.storage.retry_failed,
                            wait=True)
    study = join_study(name, storage)
    return write_results(experiment, study, report)
