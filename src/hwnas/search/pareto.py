"""Pareto archive of a study: the non-dominated feasible trials, their export, and selection rules.

Contract:

* :meth:`ParetoArchive.from_study` (or the constructor, on any list of trials) reads the COMPLETE trials of a
  study. A trial's objective values are, per objective ``(metric, direction)``, its ``user_attrs["metrics"]
  [metric]``; only a trial without any ``metrics`` attribute (e.g. added by hand) falls back to ``values[i]``
  for objective ``i``, when the study has as many objectives. A trial with a missing or NaN objective value
  cannot be ranked and is listed in :attr:`ParetoArchive.excluded` with the reason (infinities are valid).
* Feasibility (``constraints=True``): a trial is infeasible when any of its constraint values
  (``user_attrs["constraints"]``, else the ``constraints`` system attribute Optuna's ``constraints_func``
  writes) is > 0 or NaN; no constraint values means feasible. Infeasible trials are kept
  (:attr:`~ParetoArchive.infeasible`, ``trials.csv``) but never on the front nor selected. With
  ``constraints=False`` every ranked trial is feasible.
* Non-dominated sorting (:func:`nondominated_ranks`, own code): objectives are turned into minimization,
  ``a`` dominates ``b`` when it is no worse on every objective and better on one; equal points do not
  dominate each other, so duplicates share a rank. Rank 0 is the front; :attr:`~ParetoArchive.front` is
  sorted by the objective values (then trial number).
* Selection rules return one :class:`~optuna.trial.FrozenTrial` among the feasible trials, or raise
  :class:`NoSelectionError` (a ``LookupError``) that says why; ties go to the lower trial number:

  - :meth:`~ParetoArchive.best_under_budgets`: the best ``metric`` among trials within every budget
    ``metric <= max``;
  - :meth:`~ParetoArchive.cheapest_above`: the lowest ``cost_metric`` among trials with
    ``floor_metric >= floor`` (ties: higher ``floor_metric``);
  - :meth:`~ParetoArchive.knee_point`: objectives turned into minimization and scaled to [0, 1] over the
    front (ideal → 0, nadir → 1); the hyperplane through the front's extreme points (for objective ``i`` the
    front point best on ``i``) is ``a·x = 1``; the knee is the front point farthest from it on the ideal's
    side, i.e. with the largest ``(1 − a·x) / ‖a‖``. With two objectives the extremes are (0, 1) and (1, 0),
    the hyperplane is the chord between them and this is the classic maximum distance to the chord (Das
    1999; Deb & Gupta 2011). Where the extreme points do not span a hyperplane with a positive normal
    (coincident extremes, a flat objective) ``a = (1, …, 1)`` is used. Ties: smaller sum of scaled
    objectives, then trial number.
  - :meth:`~ParetoArchive.hypervolume`: the volume dominated by the feasible front and bounded by the
    reference point (in the objectives' own units and directions); points not better than the reference on
    every objective add nothing. Two objectives: own sweep; more: Optuna's exact WFG
    (``optuna._hypervolume.compute_hypervolume``).
* :meth:`ParetoArchive.export` writes, atomically (into a temporary sibling folder, then renamed into
  place; a previous export is replaced whole): ``pareto.csv`` (front rows), ``trials.csv`` (every trial of
  the study, any state, one schema for both: ``number, state, feasible, front, knee, rank, violation,
  excluded, objective.<metric>…, constraint.<i>…, metric.<name>…, param.<name>…, task.<option>…,
  training.<setting>…, checkpoint, warm_start, error``; ``warm_start`` is the trial a warm-started training
  began from (``search.warm_start``; empty: from scratch); ``task.<option>`` are the options each trial's task
  data was loaded with, its ``task_options`` user attribute: the experiment's ``task.options`` and the searched
  ``space.task_options``; ``training.<setting>`` are the searched training settings each trial trained with, its
  ``training`` user attribute (``space.training``: ``lr``, ``l1``; for every strategy, also those whose
  parameters are the integer vector)), ``pareto.json`` (objectives, counts, knee, infeasible numbers, and per
  front trial its objectives, params, metrics, constraints, point, vector, estimate, task options, training,
  folds, checkpoint and warm start) and per front trial a folder ``trial_<number:05d>/`` with ``point.yaml``
  (the same record) and a copy of its checkpoint when the path exists (the record's ``checkpoint`` is then the
  copy's path relative to the export folder, ``source_checkpoint`` the original). Non-finite numbers are
  written as ``null`` in JSON, ``.inf``/``.nan`` in YAML and ``inf``/``nan`` in CSV. :func:`read_export` reads
  ``pareto.json`` back.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hwnas.errors import HwnasError
from hwnas.runpaths import resolve_path

__all__ = [
    "NoSelectionError",
    "ParetoArchive",
    "constraint_values",
    "hypervolume",
    "is_feasible",
    "nondominated_ranks",
    "read_export",
]


class NoSelectionError(HwnasError, LookupError):
    """No feasible trial satisfies a selection rule (the message says what was closest)."""


def _direction(direction: str | StudyDirection, where: str) -> str:
    if isinstance(direction, StudyDirection):
        if direction == StudyDirection.NOT_SET:
            raise ValueError(f"{where}: direction is NOT_SET")
        return direction.name.lower()
    d = str(direction).lower()
    if d not in ("minimize", "maximize"):
        raise ValueError(f"{where}: direction must be 'minimize' or 'maximize', got {direction!r}")
    return d


def constraint_values(trial: FrozenTrial) -> list[float]:
    """A trial's constraint values (``user_attrs["constraints"]``, else Optuna's system attribute); ≤ 0 = met."""
    raw = trial.user_attrs.get("constraints")
    if raw is None:
        raw = trial.system_attrs.get("constraints")
    if raw is None:
        return []
    if isinstance(raw, int | float):
        raw = [raw]
    try:
        return [float(c) for c in raw]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"trial {trial.number}: user_attrs['constraints'] must be a list of numbers, "
                         f"got {raw!r}") from exc


def is_feasible(trial: FrozenTrial) -> bool:
    """True when every constraint value of the trial is ≤ 0 (NaN counts as violated)."""
    return all(c <= 0 for c in constraint_values(trial))  # NaN <= 0 is False


def _violation(trial: FrozenTrial) -> float:
    cs = constraint_values(trial)
    return float(sum(max(c, 0.0) if not math.isnan(c) else math.inf for c in cs))


def nondominated_ranks(losses: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Non-domination rank of each row of ``losses`` (all objectives minimized); 0 is the Pareto front.

    Row ``a`` dominates row ``b`` when ``a <= b`` everywhere and ``a < b`` somewhere; identical rows do not
    dominate each other and get the same rank. NaN is not allowed.
    """
    y = np.asarray(losses, dtype=float)
    if y.ndim != 2:
        raise ValueError(f"losses must be a 2-D array (points × objectives), got shape {y.shape}")
    if np.isnan(y).any():
        raise ValueError("losses contain NaN; such points cannot be ranked")
    n = len(y)
    if n == 0:
        return np.zeros(0, dtype=int)
    dominates = np.zeros((n, n), dtype=bool)  # [i, j]: i dominates j
    chunk = max(1, 4_000_000 // max(1, n * y.shape[1]))
    for start in range(0, n, chunk):
        a = y[start:start + chunk, None, :]
        dominates[start:start + chunk] = (a <= y[None]).all(-1) & (a < y[None]).any(-1)
    dominated_by = dominates.sum(axis=0)
    ranks = np.full(n, -1, dtype=int)
    current = np.flatnonzero(dominated_by == 0)
    rank = 0
    while current.size:
        ranks[current] = rank
        dominated_by = dominated_by - dominates[current].sum(axis=0)
        current = np.flatnonzero((dominated_by == 0) & (ranks < 0))
        rank += 1
    assert (ranks >= 0).all()
    return ranks


def hypervolume(losses: np.ndarray | Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Hypervolume dominated by ``losses`` (minimized) and bounded by ``reference``; worse points add 0."""
    y = np.asarray(losses, dtype=float).reshape(-1, len(reference))
    ref = np.asarray(reference, dtype=float)
    if np.isnan(ref).any() or np.isnan(y).any():
        raise ValueError("hypervolume: NaN in the points or the reference")
    y = y[(y < ref).all(axis=1)]
    if len(y) == 0:
        return 0.0
    if y.shape[1] == 1:
        return float(ref[0] - y[:, 0].min())
    if y.shape[1] == 2:
        order = np.lexsort((y[:, 1], y[:, 0]))  # by first objective, then second
        volume, level = 0.0, ref[1]
        for f1, f2 in y[order]:
            if f2 < level:
                volume += (ref[0] - f1) * (level - f2)
                level = f2
        return float(volume)
    from optuna._hypervolume import compute_hypervolume

    return float(compute_hypervolume(y, ref))


def _finite_or_none(value: Any) -> Any:
    """JSON-safe copy: non-finite floats → None, tuples → lists, numpy scalars → Python numbers."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, str | int | bool) or value is None:
        return value
    return str(value)


def _yaml_safe(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Mapping):
        return {str(k): _yaml_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_yaml_safe(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


class ParetoArchive:
    """The COMPLETE trials of a study ranked by non-domination, with feasibility; see the module docstring.

    Args:
        trials: trials of any state (only COMPLETE ones are ranked; all are listed in ``trials.csv``).
        objectives: ``(metric, direction)`` per objective, direction ``"minimize"`` or ``"maximize"``.
        constraints: exclude trials with a positive constraint value from the front and the selections.
        n_study_objectives: the study's number of objectives; when it equals ``len(objectives)``, a trial
            without a ``metrics`` user attribute uses ``trial.values[i]`` for objective ``i``.
        study_name: recorded in ``pareto.json``.
    """

    def __init__(self, trials: Iterable[FrozenTrial], objectives: Sequence[tuple[str, str | StudyDirection]], *,
                 constraints: bool = True, n_study_objectives: int | None = None,
                 study_name: str | None = None) -> None:
        if not objectives:
            raise ValueError("objectives: at least one (metric, direction) is needed")
        self.objectives: list[tuple[str, str]] = []
        for i, item in enumerate(objectives):
            try:
                metric, direction = item
            except (TypeError, ValueError) as exc:
                raise ValueError(f"objectives[{i}]: expected (metric, direction), got {item!r}") from exc
            self.objectives.append((str(metric), _direction(direction, f"objectives[{i}] ({metric})")))
        self.constraints = constraints
        self.study_name = study_name
        self._n_study_objectives = n_study_objectives
        self.trials: list[FrozenTrial] = sorted(trials, key=lambda t: t.number)
        self.excluded: dict[int, str] = {}
        self._values: dict[int, tuple[float, ...]] = {}
        ranked: list[FrozenTrial] = []
        for t in self.trials:
            if t.state != TrialState.COMPLETE:
                continue
            vals, reason = self._objective_values(t)
            if reason is not None:
                self.excluded[t.number] = reason
                continue
            self._values[t.number] = vals
            ranked.append(t)
        self.feasible: list[FrozenTrial] = [t for t in ranked if not constraints or is_feasible(t)]
        self.infeasible: list[FrozenTrial] = [t for t in ranked if constraints and not is_feasible(t)]
        self.ranks: dict[int, int] = {}
        if self.feasible:
            ranks = nondominated_ranks(self._losses(self.feasible))
            self.ranks = {t.number: int(r) for t, r in zip(self.feasible, ranks, strict=True)}
        self.front: list[FrozenTrial] = sorted((t for t in self.feasible if self.ranks[t.number] == 0),
                                               key=lambda t: (self._values[t.number], t.number))

    @classmethod
    def from_study(cls, study: optuna.Study, objectives: Sequence[tuple[str, str | StudyDirection]], *,
                   constraints: bool = True) -> ParetoArchive:
        """The archive of a study's trials (see the class docstring)."""
        return cls(study.get_trials(deepcopy=False), objectives, constraints=constraints,
                   n_study_objectives=len(study.directions), study_name=study.study_name)

    # --------------------------------------------------------------------------------- values
    def _objective_values(self, trial: FrozenTrial) -> tuple[tuple[float, ...], str | None]:
        metrics = trial.user_attrs.get("metrics") or {}
        out = []
        for i, (metric, _) in enumerate(self.objectives):
            if metric in metrics and metrics[metric] is not None:
                v = metrics[metric]
            elif ("metrics" not in trial.user_attrs and self._n_study_objectives == len(self.objectives)
                  and trial.values is not None and i < len(trial.values)):
                v = trial.values[i]
            else:
                return (), f"no value for objective {metric!r} (metrics: {', '.join(sorted(metrics)) or 'none'})"
            try:
                v = float(v)
            except (TypeError, ValueError):
                return (), f"objective {metric!r} is not a number: {v!r}"
            if math.isnan(v):
                return (), f"objective {metric!r} is NaN"
            out.append(v)
        return tuple(out), None

    def values(self, trial: FrozenTrial | int) -> tuple[float, ...]:
        """The objective values of a ranked trial (a trial or its number), in the objectives' own units."""
        number = trial if isinstance(trial, int) else trial.number
        if number not in self._values:
            raise KeyError(f"trial {number} is not ranked (not COMPLETE, or {self.excluded.get(number, 'unknown')})")
        return self._values[number]

    def _losses(self, trials: Sequence[FrozenTrial]) -> np.ndarray:
        sign = np.array([1.0 if d == "minimize" else -1.0 for _, d in self.objectives])
        return np.array([self._values[t.number] for t in trials], dtype=float).reshape(-1, len(sign)) * sign

    @staticmethod
    def metric(trial: FrozenTrial, name: str) -> float | None:
        """``user_attrs["metrics"][name]`` as a float, or None when absent/NaN."""
        v = (trial.user_attrs.get("metrics") or {}).get(name)
        try:
            f = float(v) if v is not None else None
        except (TypeError, ValueError):
            return None
        return None if f is None or math.isnan(f) else f

    def _metric_or_objective(self, trial: FrozenTrial, name: str) -> float | None:
        v = self.metric(trial, name)
        if v is None:
            for i, (metric, _) in enumerate(self.objectives):
                if metric == name and trial.number in self._values:
                    return self._values[trial.number][i]
        return v

    def _require_metric(self, name: str, where: str) -> None:
        if not any(self._metric_or_objective(t, name) is not None for t in self.feasible):
            known = sorted({k for t in self.feasible for k in (t.user_attrs.get("metrics") or {})})
            raise NoSelectionError(f"{where}: no feasible trial has metric {name!r} "
                                  f"(metrics present: {', '.join(known) or 'none'})")

    # -------------------------------------------------------------------------------- selection
    def best_under_budgets(self, metric: str, direction: str | StudyDirection,
                           budgets: Mapping[str, float]) -> FrozenTrial:
        """The feasible trial with the best ``metric`` among those with ``budget_metric <= max`` for all budgets."""
        d = _direction(direction, f"best_under_budgets({metric!r})")
        self._require_metric(metric, "best_under_budgets")
        for b in budgets:
            self._require_metric(b, "best_under_budgets budgets")
        best: tuple[float, int] | None = None
        chosen = None
        closest: tuple[float, int] | None = None
        for t in self.feasible:
            v = self._metric_or_objective(t, metric)
            if v is None:
                continue
            over = 0.0
            for name, limit in budgets.items():
                b = self._metric_or_objective(t, name)
                if b is None:
                    over = math.inf
                    break
                if b > limit:
                    over += (b - limit) / abs(limit) if limit else (b - limit)
            if over > 0:
                if closest is None or (over, t.number) < closest:
                    closest = (over, t.number)
                continue
            key = (-v if d == "maximize" else v, t.number)
            if best is None or key < best:
                best, chosen = key, t
        if chosen is None:
            hint = f"; closest: trial {closest[1]} ({closest[0]:.3g} relative over budget)" if closest else ""
            budget_text = ", ".join(f"{k} <= {v:g}" for k, v in budgets.items())
            raise NoSelectionError(f"best_under_budgets: no feasible trial has {budget_text}{hint}")
        return chosen

    def cheapest_above(self, cost_metric: str, floor_metric: str, floor: float) -> FrozenTrial:
        """The feasible trial with the lowest ``cost_metric`` among those with ``floor_metric >= floor``."""
        self._require_metric(cost_metric, "cheapest_above")
        self._require_metric(floor_metric, "cheapest_above")
        best: tuple[float, float, int] | None = None
        chosen = None
        top: tuple[float, int] | None = None
        for t in self.feasible:
            c, f = self._metric_or_objective(t, cost_metric), self._metric_or_objective(t, floor_metric)
            if c is None or f is None:
                continue
            if top is None or (-f, t.number) < (-top[0], top[1]):
                top = (f, t.number)
            if f < floor:
                continue
            key = (c, -f, t.number)
            if best is None or key < best:
                best, chosen = key, t
        if chosen is None:
            hint = f"; the highest is {top[0]:g} (trial {top[1]})" if top else ""
            raise NoSelectionError(f"cheapest_above: no feasible trial has {floor_metric} >= {floor:g}{hint}")
        return chosen

    def knee_point(self) -> FrozenTrial:
        """The front trial farthest from the hyperplane through the extreme points (see the module docstring)."""
        if not self.front:
            raise NoSelectionError("knee_point: the feasible front is empty")
        y = self._losses(self.front)
        if len(self.front) == 1:
            return self.front[0]
        lo, hi = y.min(axis=0), y.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        span = np.where(np.isfinite(span), span, 1.0)
        x = np.where(hi > lo, (y - lo) / span, 0.0)
        x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0)
        m = x.shape[1]
        extremes = []
        for i in range(m):
            others = x.sum(axis=1) - x[:, i]
            extremes.append(int(np.lexsort((others, x[:, i]))[0]))
        normal = np.ones(m)
        if len(set(extremes)) == m:
            try:
                a = np.linalg.solve(x[extremes], np.ones(m))
                if np.all(np.isfinite(a)) and np.all(a > 0):
                    normal = a
            except np.linalg.LinAlgError:
                pass
        distance = (1.0 - x @ normal) / np.linalg.norm(normal)
        order = sorted(range(len(self.front)),
                       key=lambda k: (-round(float(distance[k]), 12), float(x[k].sum()), self.front[k].number))
        return self.front[order[0]]

    def hypervolume(self, reference: Sequence[float]) -> float:
        """Hypervolume of the feasible front w.r.t. ``reference`` (objectives' own units and directions)."""
        if len(reference) != len(self.objectives):
            raise ValueError(f"hypervolume: reference has {len(reference)} values for {len(self.objectives)} "
                             "objectives")
        sign = np.array([1.0 if d == "minimize" else -1.0 for _, d in self.objectives])
        if not self.front:
            return 0.0
        return hypervolume(self._losses(self.front), np.asarray(reference, dtype=float) * sign)

    # ----------------------------------------------------------------------------------- export
    def _record(self, trial: FrozenTrial) -> dict[str, Any]:
        ua = trial.user_attrs
        return {
            "number": trial.number,
            "objectives": {m: self._values[trial.number][i] for i, (m, _) in enumerate(self.objectives)},
            "params": dict(trial.params),
            "metrics": dict(ua.get("metrics") or {}),
            "constraints": constraint_values(trial),
            "feasible": is_feasible(trial),
            "point": ua.get("point"),
            "vector": ua.get("vector"),
            "estimate": ua.get("estimate"),
            "task_options": ua.get("task_options"),
            "training": ua.get("training") or {},
            "folds": ua.get("folds"),
            "checkpoint": ua.get("checkpoint"),
            "warm_start": ua.get("warm_start"),
        }

    def _rows(self, knee: int | None) -> tuple[list[str], list[dict[str, Any]]]:
        front = {t.number for t in self.front}
        n_cons = max((len(constraint_values(t)) for t in self.trials), default=0)
        metric_names = sorted({k for t in self.trials for k in (t.user_attrs.get("metrics") or {})})
        param_names = sorted({k for t in self.trials for k in t.params})
        option_names = list(dict.fromkeys(k for t in self.trials for k in (t.user_attrs.get("task_options") or {})))
        train_names = list(dict.fromkeys(k for t in self.trials for k in (t.user_attrs.get("training") or {})))
        header = (["number", "state", "feasible", "front", "knee", "rank", "violation", "excluded"]
                  + [f"objective.{m}" for m, _ in self.objectives] + [f"constraint.{i}" for i in range(n_cons)]
                  + [f"metric.{k}" for k in metric_names] + [f"param.{k}" for k in param_names]
                  + [f"task.{k}" for k in option_names] + [f"training.{k}" for k in train_names]
                  + ["checkpoint", "warm_start", "error"])
        rows = []
        for t in self.trials:
            ranked = t.number in self._values
            cons = constraint_values(t)
            row: dict[str, Any] = {
                "number": t.number, "state": t.state.name,
                "feasible": is_feasible(t) if t.state == TrialState.COMPLETE else "",
                "front": t.number in front, "knee": t.number == knee,
                "rank": self.ranks.get(t.number, ""),
                "violation": _violation(t) if cons else 0.0,
                "excluded": self.excluded.get(t.number, ""),
                "checkpoint": t.user_attrs.get("checkpoint") or "",
                "warm_start": "" if t.user_attrs.get("warm_start") is None else t.user_attrs["warm_start"],
                "error": t.user_attrs.get("error") or "",
            }
            for i, (m, _) in enumerate(self.objectives):
                row[f"objective.{m}"] = self._values[t.number][i] if ranked else ""
            for i in range(n_cons):
                row[f"constraint.{i}"] = cons[i] if i < len(cons) else ""
            metrics = t.user_attrs.get("metrics") or {}
            for k in metric_names:
                row[f"metric.{k}"] = metrics.get(k, "")
            for k in param_names:
                row[f"param.{k}"] = t.params.get(k, "")
            options = t.user_attrs.get("task_options") or {}
            for k in option_names:
                value = options.get(k, "")
                row[f"task.{k}"] = json.dumps(value) if isinstance(value, dict | list) or value is None else value
            training = t.user_attrs.get("training") or {}
            for k in train_names:
                row[f"training.{k}"] = training.get(k, "")
            rows.append(row)
        return header, rows

    def export(self, folder: Path | str, base: Path | str | None = None) -> dict[str, Path]:
        """Write the archive to ``folder`` atomically (see the module docstring); returns the written paths.

        ``base``: the run folder that recorded checkpoint paths are relative to. A front model file that cannot be
        read (corrupt, altered, unsafe) is not copied: its record says why in ``checkpoint_error``.
        """
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            knee = self.knee_point().number if self.front else None
            header, rows = self._rows(knee)
            for name, subset in (("trials.csv", rows), ("pareto.csv", [r for r in rows if r["front"]])):
                with open(tmp / name, "w", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=header)
                    w.writeheader()
                    w.writerows(subset)
            front_records = []
            for t in self.front:
                rec = self._record(t)
                sub = f"trial_{t.number:05d}"
                (tmp / sub).mkdir()
                recorded = rec["checkpoint"]
                rec["source_checkpoint"] = recorded
                rec["checkpoint"] = None
                src = (resolve_path(recorded, base) if base is not None else Path(recorded)) if recorded else None
                problem = _unreadable_model(src) if src is not None and src.is_file() else None
                if problem:
                    rec["checkpoint_error"] = problem
                elif src is not None and src.exists():
                    dst = tmp / sub / src.name
                    if src.is_dir():
                        shutil.copytree(src, dst)
                    else:
                        shutil.copy2(src, dst)
                    rec["checkpoint"] = f"{sub}/{src.name}"
                with open(tmp / sub / "point.yaml", "w") as f:
                    yaml.safe_dump(_yaml_safe(rec), f, sort_keys=False)
                front_records.append(rec)
            summary = {
                "study": self.study_name,
                "objectives": [{"metric": m, "direction": d} for m, d in self.objectives],
                "constraints_applied": self.constraints,
                "counts": {"trials": len(self.trials),
                           "complete": sum(t.state == TrialState.COMPLETE for t in self.trials),
                           "feasible": len(self.feasible), "infeasible": len(self.infeasible),
                           "excluded": len(self.excluded), "front": len(self.front)},
                "knee": knee,
                "front": front_records,
                "infeasible": [t.number for t in self.infeasible],
                "excluded": {str(k): v for k, v in self.excluded.items()},
            }
            with open(tmp / "pareto.json", "w") as f:
                json.dump(_finite_or_none(summary), f, indent=2, allow_nan=False)
            old = None
            if folder.exists():
                old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
                os.rename(folder, old)
            os.rename(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        paths = {"folder": folder, "pareto_csv": folder / "pareto.csv", "pareto_json": folder / "pareto.json",
                 "trials_csv": folder / "trials.csv"}
        paths.update({f"trial_{t.number}": folder / f"trial_{t.number:05d}" for t in self.front})
        return paths


def _unreadable_model(path: Path) -> str | None:
    """Why the model file at ``path`` cannot be read (corrupt, altered, unsafe), or None: never copy a bad one."""
    from hwnas.errors import HwnasError
    from hwnas.export import load_model

    try:
        load_model(path)
    except HwnasError as err:
        return str(err)
    return None


def read_export(folder: Path | str) -> dict[str, Any]:
    """``pareto.json`` of an export folder (the front records, with checkpoint paths made absolute)."""
    folder = Path(folder)
    path = folder / "pareto.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: not a Pareto export folder (no pareto.json)")
    data = json.loads(path.read_text())
    for rec in data.get("front", []):
        if rec.get("checkpoint"):
            rec["checkpoint"] = str(folder / rec["checkpoint"])
    return data
