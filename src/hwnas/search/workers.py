"""Workers on one shared study: creation once, a global trial budget, heartbeats, failures, retries.

Contract:

* :func:`create_study` creates the study once and **pre-enqueues the whole budget**: ``budget`` trials in
  state WAITING (the first ones carrying ``initial_params`` as Optuna ``fixed_params``), then records in
  the study's user attributes ``hwnas:budget``, ``hwnas:metadata`` (the caller's experiment metadata, e.g.
  a hash of the experiment file) and finally ``hwnas:ready``. Called again with the same directions,
  budget and metadata it returns the existing study and adds nothing; any difference raises
  :class:`StudyMismatchError` naming it. A study whose creation was interrupted (no ``hwnas:ready``) is
  refused: delete it (``optuna delete-study --study-name NAME --storage URL``) or use another name.
* :func:`join_study` loads a study for a worker and refuses (:class:`StudyMismatchError`) one that is
  missing, not created by :func:`create_study`, not ready, or recorded with another budget or metadata.
  :func:`extend_budget` adds WAITING trials to raise the budget (call it from one process only).
* :func:`run_worker` **never creates trials**: it claims WAITING trials with
  ``storage.set_trial_state_values(trial_id, RUNNING)``, which succeeds for exactly one caller (the
  storage serializes the WAITING → RUNNING transition: a row lock on PostgreSQL/MySQL, ``BEGIN IMMEDIATE``
  on SQLite (:mod:`hwnas.search.storage`), the ordered append-only log on a journal file), wraps the claimed
  trial in :class:`optuna.trial.Trial` (so the worker's sampler, independent or relative such as NSGA-II,
  samples it as in ``study.optimize``) and tells the result. The study therefore never holds more than
  ``budget`` trials (plus any :func:`extend_budget` added), whatever the number of workers, and every
  trial is run by one worker. A worker stops when no WAITING trial is left (``stopped_by="budget"``);
  with ``wait=True`` (heartbeat storages) it first waits until no trial is RUNNING, failing stale ones, so
  that when it returns every trial is finished. Optuna's ``MaxTrialsCallback`` is not used: it counts
  trials after the fact and two workers racing past the count overrun the budget.
* **Heartbeats and dead workers**: while a trial runs, a daemon thread records its heartbeat every
  ``heartbeat_s`` (one is recorded just before the claim too, so a worker killed right after claiming
  still leaves a heartbeat). Before every claim (and while waiting) a worker runs :func:`fail_stale`: each
  RUNNING trial without a heartbeat for ``grace_s`` gets ``user_attrs["error"]`` saying its worker was
  lost and becomes FAIL (a compare-and-set: exactly one worker fails it). A killed worker therefore costs
  one FAIL trial of the budget and the study goes on. A worker whose own trial was failed that way while
  it was still alive (its heartbeats starved) finds it finished when it tells; the trial stays FAIL and is
  listed in ``WorkerReport.lost``.
* **Failures**: an objective that raises an exception in ``catch`` → FAIL with ``user_attrs["error"]``
  (``"<Type>: <message>"``) and ``user_attrs["traceback"]``, and the worker goes on; other exceptions
  → FAIL with the error recorded, then re-raised. ``KeyboardInterrupt`` (Ctrl-C) is not a failure: see *Ctrl-C*.
  A returned value that is None, not a number, of the wrong count, NaN or infinite (a diverged training) → FAIL
  with the reason in ``user_attrs["error"]``, never a penalty value. ``optuna.TrialPruned`` → PRUNED.
* **Retries** (``retry_failed=N``, default 0): a FAIL trial (any cause: error, non-finite value, dead
  worker) is re-run with the same parameters up to ``N`` times, each retry **taking one of the budget's
  WAITING trials** (``fixed_params`` set on it before sampling, Optuna's ``failed_trial`` and
  ``retry_history`` system attributes and ``user_attrs["retry_of"]`` set as Optuna's
  ``RetryHeartbeatStaleTrialCallback`` does) — retries never add trials. Which failed trials are owed a
  re-run is read from the study itself (:func:`_pending_retries`), not kept in a worker's memory: any worker,
  a restarted one included, takes the oldest owed re-run with its next claimed trial (claim-then-look, so no
  failed trial is re-run twice), and a worker killed before running a retry loses none. When no WAITING trial
  is left, the owed re-runs are listed in ``WorkerReport.unretried``.
* **Ctrl-C** (``KeyboardInterrupt`` anywhere while a trial is claimed: in the objective, the sampler or the
  bookkeeping) is not the trial's fault and costs no budget: the heartbeat stops, the trial goes back from
  RUNNING to WAITING (:func:`_release`; ``hwnas:interruptions`` counts how often) and the interrupt is re-raised.
  The next claim of any worker — the restarted ``hwnas search`` first, since it claims the lowest number — runs
  it again with the same number (so the same training seed) and the parameters it had already drawn; it is never
  FAIL, never counted in ``retry_failed``. Only if the storage refuses that transition is the trial FAIL with
  ``hwnas:interrupted``, and then re-run by the next claim whatever ``retry_failed`` is (the earlier behaviour,
  still honoured for studies written by older versions).
* Every trial records ``user_attrs["worker"] = {"id", "host", "pid"}``. The sampler is the caller's,
  seeded ``seed + 1000·worker_id``; trial ``n`` should train with seed ``seed + n`` (its number is fixed
  at creation, so this does not depend on which worker runs it).
* :func:`study_summary` counts trials by state and gives the budget, the best feasible trial (one
  objective) or the size of the feasible non-dominated set (several).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.exceptions import DuplicatedStudyError, TrialPruned, UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hwnas.errors import HwnasError

from .pareto import is_feasible, nondominated_ranks
from .storage import HeartbeatJournalStorage, StorageError, database_failure, heartbeat_ages, heartbeat_grace

__all__ = [
    "BUDGET_ATTR",
    "METADATA_ATTR",
    "READY_ATTR",
    "StudyMismatchError",
    "StudyNotReadyError",
    "WorkerReport",
    "create_study",
    "extend_budget",
    "fail_stale",
    "failure_lines",
    "failure_reason",
    "join_study",
    "run_worker",
    "study_summary",
]

log = logging.getLogger(__name__)

BUDGET_ATTR = "hwnas:budget"
"""Study user attribute: the global trial budget."""
METADATA_ATTR = "hwnas:metadata"
"""Study user attribute: the experiment metadata the study was created with."""
READY_ATTR = "hwnas:ready"
"""Study user attribute: True once every budgeted trial is enqueued."""

_TRACEBACK_CHARS = 8000
_FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


class StudyMismatchError(HwnasError, ValueError):
    """The study in the storage does not match this experiment or worker (or is missing / not ready)."""


class StudyNotReadyError(StudyMismatchError):
    """No such study yet, or its creation is still enqueueing trials: what a worker may wait for (``--wait``)."""


# ------------------------------------------------------------------------------------------ helpers
def _directions(directions: Sequence[str | StudyDirection] | str | StudyDirection) -> list[str]:
    if isinstance(directions, str | StudyDirection):
        directions = [directions]
    out = []
    for i, d in enumerate(directions):
        name = d.name.lower() if isinstance(d, StudyDirection) else str(d).lower()
        if name not in ("minimize", "maximize"):
            raise ValueError(f"directions[{i}]: must be 'minimize' or 'maximize', got {d!r}")
        out.append(name)
    if not out:
        raise ValueError("directions: at least one objective direction is needed")
    return out


def _normalize_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(dict(metadata or {}), sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata must be JSON-serializable (finite numbers, strings, lists, dicts): {exc}") \
            from exc


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_budget(budget: int, name: str = "budget") -> int:
    from hwnas.config import MAX_TRIALS  # every budgeted trial is enqueued at once: a typo must not enqueue 1e30

    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 1:
        raise ValueError(f"{name} must be a positive integer (trials across all workers), got {_short(budget)}")
    if budget > MAX_TRIALS:
        raise ValueError(f"{name} {int(budget):,} is above hwnas's limit of {MAX_TRIALS:,} trials per study")
    return int(budget)


def _waiting_template(params: Mapping[str, Any] | None) -> FrozenTrial:
    system_attrs = {"fixed_params": dict(params)} if params else {}
    return optuna.trial.create_trial(state=TrialState.WAITING, system_attrs=system_attrs)


def _check_recorded(study: optuna.Study, *, budget: int | None, metadata: dict[str, Any] | None,
                    where: str) -> None:
    attrs = study.user_attrs
    if BUDGET_ATTR not in attrs:
        raise StudyMismatchError(f"{where}: study {study.study_name!r} was not created by hwnas (no {BUDGET_ATTR!r} "
                                 "user attribute); use another study name")
    if not attrs.get(READY_ATTR):
        from .storage import _redact

        store, url, path = study._storage, None, None
        for _ in range(3):  # Optuna wraps an RDB storage in a cache; a journal storage holds its file backend
            if isinstance(getattr(store, "url", None), str):  # _redact would drop a slash of sqlite:////abs
                url = store.url if store.url.startswith("sqlite:") else _redact(store.url)
                break
            if isinstance(getattr(store, "_file_path", None), str):
                path = os.path.abspath(store._file_path)
                break
            store = getattr(store, "_backend", None)
        if url is not None:
            storage = f"'{url}'" + (" (put the password back in for ***)" if "***" in url else "")
        elif path is not None:
            storage = f"'{path}'"
        else:
            storage = "<the storage URL> (storage.url of the experiment)"
        raise StudyNotReadyError(
            f"{where}: study {study.study_name!r} is not ready: its creation was interrupted before all "
            f"{attrs[BUDGET_ATTR]} trials were enqueued (or is still running). Delete it with `optuna delete-study "
            f"--study-name '{study.study_name}' --storage {storage}` or use another study name")
    recorded = int(attrs[BUDGET_ATTR])
    if budget is not None and recorded != budget:
        hint = (f"to raise the budget to {budget}, run `hwnas search <experiment> --n-trials {budget}`"
                if budget > recorded else "a budget cannot be lowered")
        raise StudyMismatchError(f"{where}: budget {budget} differs from the study's {recorded} (study "
                                 f"{study.study_name!r}): set search.n_trials: {recorded} in the experiment (or pass "
                                 f"--n-trials {recorded}); {hint}")
    if metadata is not None:
        recorded_meta = attrs.get(METADATA_ATTR, {})
        if recorded_meta != metadata:
            diffs = [f"{k}: study has {_short(recorded_meta.get(k))}, this one has {_short(metadata.get(k))}"
                     for k in sorted(set(recorded_meta) | set(metadata)) if recorded_meta.get(k) != metadata.get(k)]
            raise StudyMismatchError(f"{where}: the experiment differs from the one study {study.study_name!r} was "
                                     f"created with ({'; '.join(diffs)}); refusing to mix trials of different "
                                     "experiments in one study: give the changed experiment another output "
                                     "folder (or storage / study name), or delete the old study to start afresh")


# ------------------------------------------------------------------------------------- study life
def create_study(name: str, storage: BaseStorage, directions: Sequence[str | StudyDirection], *, budget: int,
                 metadata: Mapping[str, Any], initial_params: Sequence[Mapping[str, Any]] = (),
                 sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """Create the study once with ``budget`` WAITING trials; idempotent with the same settings.

    Args:
        name: study name.
        storage: from :func:`hwnas.search.storage.resolve_storage`.
        directions: ``"minimize"``/``"maximize"`` per objective.
        budget: total number of trials across all workers.
        metadata: JSON-serializable experiment metadata (e.g. ``{"experiment_hash": ...}``) that every
            worker must match.
        initial_params: parameters fixed on the first trials (e.g. known good points), at most ``budget``.
        sampler: sampler of the returned study object (workers bring their own).

    Raises:
        StudyMismatchError: the study exists with other directions, budget or metadata, or is not ready.
    """
    dirs = _directions(directions)
    budget = _check_budget(budget)
    meta = _normalize_metadata(metadata)
    initial = [dict(p) for p in initial_params]
    if len(initial) > budget:
        raise ValueError(f"initial_params: {len(initial)} points for a budget of {budget} trials")
    _normalize_metadata({"initial_params": initial})  # JSON-serializable?
    try:
        study = optuna.create_study(study_name=name, storage=storage, directions=dirs, sampler=sampler)
    except DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        existing = [d.name.lower() for d in study.directions]
        if existing != dirs:
            raise StudyMismatchError(f"create_study: study {name!r} exists with directions {existing}, not {dirs}; "
                                     "use another study name (storage.study_name)") from None
        _check_recorded(study, budget=budget, metadata=meta, where="create_study")
        return study
    study.set_user_attr(BUDGET_ATTR, budget)
    study.set_user_attr(METADATA_ATTR, meta)
    for i in range(budget):
        study.add_trial(_waiting_template(initial[i] if i < len(initial) else None))
    study.set_user_attr(READY_ATTR, True)
    log.info("created study %r: %d trials enqueued, directions %s", name, budget, dirs)
    return study


def join_study(name: str, storage: BaseStorage, *, sampler: optuna.samplers.BaseSampler | None = None,
               budget: int | None = None, metadata: Mapping[str, Any] | None = None) -> optuna.Study:
    """Load a study created by :func:`create_study`, checking its budget and metadata when given.

    Raises:
        StudyMismatchError: no such study, not created by hwnas, not ready, or another budget/metadata.
    """
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    except KeyError:
        raise StudyNotReadyError(f"no study named {name!r} in the storage: create it first (hwnas search ...), "
                                 "or check storage.url and storage.study_name") from None
    _check_recorded(study, budget=None if budget is None else _check_budget(budget),
                    metadata=None if metadata is None else _normalize_metadata(metadata), where="join_study")
    return study


def extend_budget(study: optuna.Study, budget: int) -> int:
    """Raise the study's budget to ``budget`` by enqueuing WAITING trials; returns how many were added.

    Only one process may call this at a time (two concurrent calls would both add trials). The trials are
    counted on the study (it holds exactly its budget of trials), so a call interrupted half-way is completed
    by the next one. Workers already running keep their budget: they run the new trials too (they claim any
    WAITING trial) but a worker started with the old budget is refused (:class:`StudyMismatchError`).

    Raises:
        StudyMismatchError: the study was not made by :func:`create_study`, or ``budget`` is below its budget.
    """
    budget = _check_budget(budget)
    _check_recorded(study, budget=None, metadata=None, where="extend_budget")
    current = int(study.user_attrs[BUDGET_ATTR])
    held = len(study._storage.get_all_trials(study._study_id, deepcopy=False))
    if budget < max(current, held):
        why = (f"the study's budget is {current}" if current >= held else
               f"the study already holds {held} trials (an earlier raise to {held} was interrupted)")
        raise StudyMismatchError(f"budget {budget} of study {study.study_name!r} is too low: {why}, and trials cannot "
                                 f"be removed; give {max(current, held)} or more")
    for _ in range(budget - held):
        study.add_trial(_waiting_template(None))
    study.set_user_attr(BUDGET_ATTR, budget)
    if budget != current:
        log.info("study %r: budget raised from %d to %d trials", study.study_name, current, budget)
    return budget - held


# ------------------------------------------------------------------------------------- heartbeats
class _Heartbeat:
    """Record a trial's heartbeat now and then every ``interval`` seconds in a daemon thread."""

    def __init__(self, storage: BaseStorage, trial_id: int, interval: float | None) -> None:
        self._storage, self._trial_id, self._interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False

    def _beat(self) -> None:
        try:
            self._storage.record_heartbeat(self._trial_id)  # type: ignore[attr-defined]
        except Exception as exc:  # a busy database must not kill the trial; the next beat retries
            if not self._warned:
                log.warning("heartbeat of trial id %d failed: %s", self._trial_id, exc)
                self._warned = True

    def _loop(self) -> None:
        assert self._interval is not None
        while not self._stop.wait(self._interval):
            self._beat()

    def __enter__(self) -> _Heartbeat:
        if self._interval is not None:
            self._beat()
            self._thread = threading.Thread(target=self._loop, name=f"hwnas-heartbeat-{self._trial_id}",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def _heartbeat_interval(storage: BaseStorage) -> float | None:
    if not is_heartbeat_enabled(storage):
        return None
    assert isinstance(storage, BaseHeartbeat)
    return float(storage.get_heartbeat_interval())  # type: ignore[arg-type]


def fail_stale(study: optuna.Study) -> list[FrozenTrial]:
    """Mark FAILED every RUNNING trial whose heartbeat is older than the grace period; returns those this call failed.

    Each gets ``user_attrs["error"]`` first. Like :func:`optuna.storages.fail_stale_trials` (and it runs the
    storage's stale-trial callback), but returns the trials, which the retry logic needs. No-op on storages
    without heartbeats.
    """
    storage = study._storage
    if not is_heartbeat_enabled(storage):
        return []
    assert isinstance(storage, BaseHeartbeat)
    failed = []
    for trial_id in storage._get_stale_trial_ids(study._study_id):
        try:
            storage.set_trial_user_attr(trial_id, "error", "worker lost: no heartbeat within the grace period "
                                        "(the worker was killed, crashed or lost the storage); marked FAILED by "
                                        f"worker pid {os.getpid()} on {socket.gethostname()}")
            if storage.set_trial_state_values(trial_id, TrialState.FAIL):
                failed.append(storage.get_trial(trial_id))
        except UpdateFinishedTrialError:
            continue  # another worker failed it, or its worker finished it just now
    callback = storage.get_heartbeat_stale_trial_callback()
    for trial in failed:
        log.warning("trial %d: worker lost (no heartbeat), marked FAILED", trial.number)
        if callback is not None:
            callback(study, trial)
    return failed


def _claim(study: optuna.Study, interval: float | None) -> int | None:
    """Atomically take one WAITING trial (WAITING → RUNNING); None when none is left."""
    storage = study._storage
    pre_beat = interval is not None and not isinstance(storage, HeartbeatJournalStorage)
    for trial in storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if pre_beat:  # RDB staleness needs a heartbeat row; a journal trial counts from its start time
                storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
            if storage.set_trial_state_values(trial._trial_id, TrialState.RUNNING):
                return trial._trial_id
        except UpdateFinishedTrialError:
            continue
    return None


RETRY_CLAIM_ATTR = "hwnas:retry_claim"
"""System attribute of a claimed trial: the number of the FAIL trial it is about to re-run (a tentative claim)."""

INTERRUPTED_ATTR = "hwnas:interrupted"
"""System attribute of a FAIL trial stopped by Ctrl-C (SIGINT) that could not be put back to WAITING (or was stopped
by an older hwnas): re-run by the next worker whatever ``retry_failed`` is."""

INTERRUPTIONS_ATTR = "hwnas:interruptions"
"""System attribute: how many times Ctrl-C stopped the trial and :func:`_release` put it back to WAITING."""


def _release(study: optuna.Study, trial_id: int) -> bool:
    """Put the claimed trial ``trial_id`` back to WAITING after Ctrl-C; True when done (module docstring, *Ctrl-C*).

    Nothing happens to a trial that is no longer RUNNING (told already, or failed as stale by another worker). If
    the storage refuses, the trial is FAIL with :data:`INTERRUPTED_ATTR` instead, which any worker re-runs.
    """
    storage = study._storage
    try:
        trial = storage.get_trial(trial_id)
        if trial.state != TrialState.RUNNING:
            return False
        count = trial.system_attrs.get(INTERRUPTIONS_ATTR, 0)
        storage.set_trial_system_attr(trial_id, INTERRUPTIONS_ATTR, (count if isinstance(count, int) else 0) + 1)
        storage.set_trial_state_values(trial_id, TrialState.WAITING)
        log.info("trial %d interrupted (Ctrl-C): back to waiting, it runs again on the next claim", trial.number)
        return True
    except UpdateFinishedTrialError:
        return False
    except Exception as exc:  # a storage that refuses RUNNING -> WAITING: fail it, marked to be re-run
        log.warning("trial id %d interrupted; could not put it back to waiting (%s): failed, re-run next time",
                    trial_id, exc)
        with contextlib.suppress(Exception):
            storage.set_trial_system_attr(trial_id, INTERRUPTED_ATTR, True)
            storage.set_trial_user_attr(trial_id, "error", "interrupted (Ctrl-C): re-run by the next worker")
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        return False


def _pending_retries(trials: Sequence[FrozenTrial], retry_max: int) -> list[FrozenTrial]:
    """FAIL trials still owed a re-run, oldest first; derived from the study alone, so a dead worker loses none.

    A FAIL trial is owed one when it was interrupted (Ctrl-C) or has had fewer than ``retry_max`` retries, and no
    other trial re-runs it: one that records it as ``retry_of`` (the retry started), or a RUNNING trial that claims
    it (``hwnas:retry_claim``, about to start).
    """
    taken: set[int] = set()
    for t in trials:
        if isinstance(t.user_attrs.get("retry_of"), int):
            taken.add(t.user_attrs["retry_of"])
        claim = t.system_attrs.get(RETRY_CLAIM_ATTR)
        if isinstance(claim, int) and t.state == TrialState.RUNNING:
            taken.add(claim)
    return [t for t in trials if t.state == TrialState.FAIL and t.number not in taken
            and (t.system_attrs.get(INTERRUPTED_ATTR) or len(t.system_attrs.get("retry_history", [])) < retry_max)]


def _take_retry(study: optuna.Study, trial_id: int, retry_max: int) -> FrozenTrial | None:
    """The FAIL trial the claimed trial ``trial_id`` re-runs, or None (fresh parameters).

    Claim, then look: the claim is written first, then every other trial is read; a claim of the same failed
    trial by another RUNNING trial, or a retry already started, makes this one step aside. Of two workers racing
    for one failed trial at least the later one sees the earlier's claim, so no failed trial is re-run twice (at
    worst both step aside and a later claim re-runs it).
    """
    storage = study._storage
    if storage.get_trial(trial_id).system_attrs.get(INTERRUPTIONS_ATTR):
        return None  # an interrupted trial runs again as it was (its parameters, and its retry_of if any)
    for failed in _pending_retries(storage.get_all_trials(study._study_id, deepcopy=False), retry_max):
        storage.set_trial_system_attr(trial_id, RETRY_CLAIM_ATTR, failed.number)
        rivals = [t for t in storage.get_all_trials(study._study_id, deepcopy=False)
                  if t._trial_id != trial_id and (t.user_attrs.get("retry_of") == failed.number or (
                      t.state == TrialState.RUNNING and t.system_attrs.get(RETRY_CLAIM_ATTR) == failed.number))]
        if not rivals:
            return failed
        storage.set_trial_system_attr(trial_id, RETRY_CLAIM_ATTR, None)
    return None


# ---------------------------------------------------------------------------------------- workers
@dataclasses.dataclass
class WorkerReport:
    """What one :func:`run_worker` call did."""

    worker_id: int
    study_name: str
    trials: list[int] = dataclasses.field(default_factory=list)
    """Numbers of the trials this worker ran, in order."""
    complete: int = 0
    failed: int = 0
    pruned: int = 0
    lost: list[int] = dataclasses.field(default_factory=list)
    """Trials of this worker failed as stale by another worker while this one still ran them."""
    stale_failed: list[int] = dataclasses.field(default_factory=list)
    """Trials of dead workers that this worker marked FAILED."""
    retried: dict[int, int] = dataclasses.field(default_factory=dict)
    """Retry trial number → the failed trial number it re-ran."""
    unretried: list[int] = dataclasses.field(default_factory=list)
    """Failed trials that could not be retried because no WAITING trial was left."""
    elapsed_s: float = 0.0
    stopped_by: str = ""
    """``"budget"`` (no trial left), ``"timeout"`` or ``"stopped"`` (``study.stop()`` in a callback)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        d = dataclasses.asdict(self)
        d["retried"] = {str(k): v for k, v in self.retried.items()}
        return d


def _check_values(result: Any, n_objectives: int) -> tuple[list[float] | None, str | None]:
    """The objective's return value as floats, or the reason it is not acceptable."""
    if result is None:
        return None, "objective returned None"
    if isinstance(result, int | float | np.number) and not isinstance(result, bool):
        items: list[Any] = [result]
    else:
        try:
            items = list(result)
        except TypeError:
            return None, f"objective returned {type(result).__name__} {_short(result)}, not a number or sequence"
    if len(items) != n_objectives:
        return None, f"objective returned {len(items)} values for {n_objectives} objectives"
    values = []
    for i, v in enumerate(items):
        try:
            f = float(v)
        except (TypeError, ValueError):
            return None, f"objective value #{i} is not a number: {_short(v)}"
        if not math.isfinite(f):
            return None, f"objective value #{i} is {f} (non-finite: diverged training?)"
        values.append(f)
    return values, None


def _set_attr(storage: BaseStorage, trial_id: int, key: str, value: Any) -> None:
    try:
        storage.set_trial_user_attr(trial_id, key, value)
    except UpdateFinishedTrialError:
        pass


def _run_one(study: optuna.Study, trial_id: int, objective: Callable[[optuna.trial.Trial], Any], *,
             catch: tuple[type[BaseException], ...], interval: float | None, identity: dict[str, Any],
             retry_of: FrozenTrial | None) -> tuple[FrozenTrial, bool]:
    """Run the objective on a claimed trial and tell the result; returns the stored trial and whether it was lost.

    The final ``tell`` is the compare-and-set that decides: it fails (``UpdateFinishedTrialError``, or
    Optuna's "Cannot tell a FAIL trial") exactly when another worker failed the trial first.
    """
    storage = study._storage
    try:
        if retry_of is not None:
            history = [*retry_of.system_attrs.get("retry_history", []), retry_of.number]
            storage.set_trial_system_attr(trial_id, "fixed_params", dict(retry_of.params))
            storage.set_trial_system_attr(trial_id, "failed_trial", history[0])
            storage.set_trial_system_attr(trial_id, "retry_history", history)
            storage.set_trial_user_attr(trial_id, "retry_of", retry_of.number)
        storage.set_trial_user_attr(trial_id, "worker", identity)
    except UpdateFinishedTrialError:
        return storage.get_trial(trial_id), True
    state, values, error, tb = TrialState.COMPLETE, None, None, None
    reraise: BaseException | None = None
    with _Heartbeat(storage, trial_id, interval):
        try:
            trial = optuna.trial.Trial(study, trial_id)
        except UpdateFinishedTrialError:
            return storage.get_trial(trial_id), True
        except KeyboardInterrupt:  # run_worker puts the trial back to WAITING
            raise
        except BaseException as exc:  # the sampler failed before the objective ran: fatal
            _set_attr(storage, trial_id, "error", f"sampler failed: {type(exc).__name__}: {exc}")
            try:
                storage.set_trial_state_values(trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                pass
            raise
        try:
            result = objective(trial)
            values, error = _check_values(result, len(study.directions))
            if error is not None:
                state = TrialState.FAIL
        except TrialPruned:
            state = TrialState.PRUNED
        except UpdateFinishedTrialError:  # the objective wrote to its trial after another worker failed it
            return storage.get_trial(trial_id), True
        except KeyboardInterrupt:  # the user stopped it, not the trial's fault: run_worker puts it back to WAITING
            raise
        except BaseException as exc:
            state, error = TrialState.FAIL, f"{type(exc).__name__}: {exc}"
            tb = traceback.format_exc()[-_TRACEBACK_CHARS:]
            if not isinstance(exc, catch):
                reraise = exc
    lost = False
    try:
        if error is not None:
            storage.set_trial_user_attr(trial_id, "error", error)
        if tb is not None:
            storage.set_trial_user_attr(trial_id, "traceback", tb)
        if state == TrialState.COMPLETE:
            assert values is not None
            study.tell(trial, values if len(values) > 1 else values[0])
        else:
            study.tell(trial, state=state)
    except UpdateFinishedTrialError:
        lost = True
    except ValueError:
        if not storage.get_trial(trial_id).state.is_finished():
            raise
        lost = True  # "Cannot tell a FAIL trial": finished by another worker before this tell
    frozen = storage.get_trial(trial_id)
    if reraise is not None:
        raise reraise
    return frozen, lost


def _finished_count(study: optuna.Study) -> tuple[int, int]:
    trials = study._storage.get_all_trials(study._study_id, deepcopy=False)
    finished = sum(t.state in _FINISHED for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return finished, running


WAIT_NOTE_S = 15.0
"""A worker waiting for silent trials of other workers says so at most this often (and checks this often)."""


def _waiting_note(study: optuna.Study, worker_id: int, interval: float) -> tuple[str, float] | None:
    """What a worker waiting at the end says about the silent RUNNING trials of other workers.

    A trial is silent when its heartbeat is older than ``interval`` plus a margin (max(1 s, interval / 4)).
    Returns the message and the seconds until the first of them is reclaimed; None when none is silent.
    """
    storage = study._storage
    try:
        ages = heartbeat_ages(storage, study._study_id)
    except Exception as exc:  # a diagnostic only: it never stops the worker
        log.debug("worker %d: cannot read the heartbeats of running trials: %s", worker_id, exc)
        return None
    grace = heartbeat_grace(storage) or 2.0 * interval
    silent_after = interval + max(1.0, 0.25 * interval)
    silent = {trial_id: age for trial_id, age in ages.items() if age >= silent_after}
    if not silent:
        return None
    running = {t._trial_id: t for t in storage.get_all_trials(study._study_id, deepcopy=False,
                                                               states=(TrialState.RUNNING,))}
    parts, soonest = [], math.inf
    for trial_id, age in sorted(silent.items(), key=lambda item: -item[1]):
        trial = running.get(trial_id)
        if trial is None:  # finished meanwhile
            continue
        left = max(0.0, grace - age)
        soonest = min(soonest, left)
        who = trial.user_attrs.get("worker")
        who = (f"silent worker {who.get('id')} ({who.get('host')}, pid {who.get('pid')})" if isinstance(who, dict)
               else "a silent worker")
        parts.append(f"trial {trial.number} of {who}, no heartbeat for {age:.0f} s: reclaimed in "
                     f"{left:.0f} s if no heartbeat comes")
    if not parts:
        return None
    return f"worker {worker_id}: waiting for {'; '.join(parts)}", soonest


def run_worker(study_name: str, storage: BaseStorage, objective: Callable[[optuna.trial.Trial], Any], *,
               sampler: optuna.samplers.BaseSampler, budget: int, worker_id: int,
               catch: Sequence[type[Exception]] | type[Exception] = (Exception,),
               callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (), progress: bool = True,
               timeout_s: float | None = None, metadata: Mapping[str, Any] | None = None, retry_failed: int = 0,
               wait: bool = True, poll_s: float | None = None) -> WorkerReport:
    """Join the study and run its WAITING trials until none is left (the global budget); see the module docstring.

    A database server that fails under the worker (restart, failover, network) stops it with one
    :class:`~hwnas.search.storage.StorageError` line; see :func:`_run_worker` for the arguments.
    """
    try:
        return _run_worker(study_name, storage, objective, sampler=sampler, budget=budget, worker_id=worker_id,
                           catch=catch, callbacks=callbacks, progress=progress, timeout_s=timeout_s,
                           metadata=metadata, retry_failed=retry_failed, wait=wait, poll_s=poll_s)
    except Exception as exc:
        cause = database_failure(exc)
        if cause is not None:  # the server went away mid-operation
            raise StorageError(f"worker {worker_id}: the study's database failed mid-search "
                               f"({cause}); finished trials are kept, a trial this worker was "
                               "running is failed by the other workers' heartbeat check: start the worker again to "
                               "resume") from exc
        raise


def _run_worker(study_name: str, storage: BaseStorage, objective: Callable[[optuna.trial.Trial], Any], *,
                sampler: optuna.samplers.BaseSampler, budget: int, worker_id: int,
                catch: Sequence[type[Exception]] | type[Exception], callbacks: Sequence[Callable[..., None]],
                progress: bool, timeout_s: float | None, metadata: Mapping[str, Any] | None, retry_failed: int,
                wait: bool, poll_s: float | None) -> WorkerReport:
    """Join the study and run its WAITING trials until none is left (the global budget); see the module docstring.

    Args:
        study_name: the study, created beforehand by :func:`create_study`.
        storage: from :func:`hwnas.search.storage.resolve_storage` (opened in this process).
        objective: ``trial -> value or values`` (the study's objectives in order).
        sampler: this worker's sampler, seeded ``seed + 1000·worker_id`` by the caller.
        budget: the experiment's budget; must equal the study's.
        worker_id: this worker's index (recorded on its trials).
        catch: exceptions that fail a trial without stopping the worker.
        callbacks: called as ``callback(study, frozen_trial)`` after each trial of this worker.
        progress: show a progress bar of the finished trials of all workers.
        timeout_s: stop claiming new trials after this many seconds (a running trial is finished).
        metadata: when given, must equal the study's recorded metadata (same experiment).
        retry_failed: re-run a FAILED trial with the same parameters up to this many times (budget-neutral).
        wait: once no trial is left, wait until the other workers' trials finish or go stale.
        poll_s: seconds between checks while waiting (default: the heartbeat interval; at most
            :data:`WAIT_NOTE_S`). While it waits for a RUNNING trial of another worker whose heartbeat has
            stopped, the worker logs a warning naming the trial, its worker and the seconds until it is
            reclaimed (at most every :data:`WAIT_NOTE_S`), and wakes up when that time is over.

    Raises:
        StudyMismatchError: the study is missing, not ready, or of another experiment/budget.
    """
    study = join_study(study_name, storage, sampler=sampler, budget=budget, metadata=metadata)
    catch_t = tuple(catch) if isinstance(catch, Sequence) else (catch,)
    retry_max = int(retry_failed)
    if retry_max < 0:
        raise ValueError(f"retry_failed must be >= 0, got {retry_failed}")
    store = study._storage
    interval = _heartbeat_interval(store)
    poll = poll_s if poll_s is not None else (interval if interval is not None else 1.0)
    identity = {"id": worker_id, "host": socket.gethostname(), "pid": os.getpid()}
    report = WorkerReport(worker_id=worker_id, study_name=study_name)

    from tqdm.auto import tqdm

    start = time.monotonic()
    bar = tqdm(total=budget, desc=f"{study_name} (worker {worker_id})", unit="trial", disable=not progress,
               initial=_finished_count(study)[0])
    study._thread_local.in_optimize_loop = True  # lets a callback call study.stop(), as in study.optimize
    next_note = 0.0  # when a waiting worker may next say which silent trials it waits for
    try:
        while True:
            if study._stop_flag:
                report.stopped_by = "stopped"
                break
            if timeout_s is not None and time.monotonic() - start >= timeout_s:
                report.stopped_by = "timeout"
                break
            for trial in fail_stale(study):
                report.stale_failed.append(trial.number)
            trial_id = _claim(study, interval)
            if trial_id is None:
                finished, running = _finished_count(study)
                bar.n = finished
                bar.refresh()
                if wait and interval is not None and running:
                    pause = min(poll, WAIT_NOTE_S)
                    note = _waiting_note(study, worker_id, interval)
                    if note is not None:  # a worker died: say when its trial is reclaimed, wake up then
                        text, soonest = note
                        pause = min(pause, max(0.25, soonest + 0.1))
                        if time.monotonic() >= next_note:
                            log.warning(text)
                            bar.set_postfix_str(f"waiting for a silent worker: {soonest:.0f} s", refresh=True)
                            next_note = time.monotonic() + WAIT_NOTE_S
                    time.sleep(pause)
                    continue
                report.stopped_by = "budget"
                break
            try:
                try:
                    retry_of = _take_retry(study, trial_id, retry_max)
                except UpdateFinishedTrialError:  # failed as stale while choosing (heartbeats starved): next one
                    continue
                t0 = time.monotonic()
                frozen, lost = _run_one(study, trial_id, objective, catch=catch_t, interval=interval,
                                        identity=identity, retry_of=retry_of)
            except KeyboardInterrupt:  # Ctrl-C: the trial goes back to WAITING and costs no budget
                _release(study, trial_id)
                raise
            report.trials.append(frozen.number)
            if retry_of is not None:
                report.retried[frozen.number] = retry_of.number
            if lost:  # the worker that failed it decides about its retry
                report.lost.append(frozen.number)
                log.warning("trial %d was failed by another worker while this one ran it (heartbeats starved?)",
                            frozen.number)
            elif frozen.state == TrialState.COMPLETE:
                report.complete += 1
            elif frozen.state == TrialState.PRUNED:
                report.pruned += 1
            else:
                report.failed += 1
            log.info("worker %d: trial %d %s %s(%.1f s)", worker_id, frozen.number, frozen.state.name,
                     f"values={frozen.values} " if frozen.values else
                     f"({frozen.user_attrs.get('error', '')}) ", time.monotonic() - t0)
            for callback in callbacks:
                callback(study, frozen)
            bar.n = _finished_count(study)[0]
            bar.refresh()
    finally:
        study._thread_local.in_optimize_loop = False
        study._stop_flag = False
        bar.close()
        report.elapsed_s = time.monotonic() - start
    if report.stopped_by == "budget":
        owed = _pending_retries(store.get_all_trials(study._study_id, deepcopy=False), retry_max)
        report.unretried = [t.number for t in owed]
        if owed:
            log.warning("no trial left in the budget to retry failed trials %s", report.unretried)
    return report


# ---------------------------------------------------------------------------------------- summary
_FAILURE_LINES = 10
_REASON_CHARS = 200


def failure_reason(trial: Any) -> str:
    """A failed trial's reason on one line: the first line of ``user_attrs["error"]`` (see the workers)."""
    error = trial.user_attrs.get("error")
    if not isinstance(error, str) or not error.strip():
        return "no reason recorded (failed outside hwnas, or its process was killed)"
    text = error.strip().splitlines()[0].strip()
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS - 3] + "..."


def failure_lines(trials: list[Any], limit: int = _FAILURE_LINES) -> list[str]:
    """The failed trials grouped by reason, most frequent first, at most ``limit`` reasons (then how many more)."""
    groups: dict[str, list[int]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        groups.setdefault(failure_reason(t), []).append(t.number)
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[1][0]))
    lines = []
    for reason, numbers in ordered[:limit]:
        shown = ", ".join(str(n) for n in numbers[:5]) + (f", ... ({len(numbers) - 5} more)" if len(numbers) > 5
                                                          else "")
        lines.append(f"  {'trial' if len(numbers) == 1 else 'trials'} {shown}: {reason}")
    rest = ordered[limit:]
    if rest:
        lines.append(f"  ... and {len(rest)} more reason(s) ({sum(len(n) for _, n in rest)} trials)")
    return lines


def study_summary(study: optuna.Study) -> dict[str, Any]:
    """Counts by state, budget, metadata and the best feasible trial (1 objective) or Pareto size (several)."""
    trials = study.get_trials(deepcopy=False)
    states = {s.name: 0 for s in TrialState}
    for t in trials:
        states[t.state.name] += 1
    directions = [d.name.lower() for d in study.directions]
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
    feasible = [t for t in complete if is_feasible(t)]
    summary: dict[str, Any] = {
        "study_name": study.study_name,
        "directions": directions,
        "budget": study.user_attrs.get(BUDGET_ATTR),
        "n_trials": len(trials),
        "states": states,
        "finished": sum(states[s.name] for s in _FINISHED),
        "remaining": states["WAITING"],
        "running": states["RUNNING"],
        "feasible": len(feasible),
        "infeasible": len(complete) - len(feasible),
        "metadata": study.user_attrs.get(METADATA_ATTR),
        "best": None,
        "pareto_size": 0,
    }
    if feasible:
        sign = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
        losses = np.array([t.values for t in feasible], dtype=float) * sign
        ranks = nondominated_ranks(losses)
        summary["pareto_size"] = int((ranks == 0).sum())
        if len(directions) == 1:
            k = min(range(len(feasible)), key=lambda i: (losses[i, 0], feasible[i].number))
            best = feasible[k]
            summary["best"] = {"number": best.number, "value": best.values[0], "params": dict(best.params)}
    return summary
