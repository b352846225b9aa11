"""``search.strategy: supernet``: train once, rank thousands of sub-nets, NSGA-II on a predictor, measure the front.

Contract (docs/supernet.md):

* :class:`SupernetSearch` runs the phases of one experiment into ``<output>/supernet/`` — each resumable, each
  skipped when its result is already there:

  1. **train** (``supernet.pt``): :func:`hwnas.supernet.train_supernet` on the task's training split with the
     experiment's ``training`` lr/batch size/optimizer/weight decay and the strategy's epochs, seed
     ``experiment.seed``; resumed after a kill.
  2. **evaluate** (``evaluations.jsonl``, one line per sub-net, appended as they finish): ``subnets`` distinct
     points drawn uniformly (``numpy.random.default_rng([seed, 7])``; the largest and the smallest first) are
     extracted (BatchNorm and activation ranges calibrated on the first ``calibration_batches`` training batches)
     and scored on the first ``eval_samples`` validation samples with the task's metric.
  3. **predict** (``predictor.pt``, ``report.json``): a :class:`hwnas.search.predictor.MultiOutputPredictor`
     (target ``accuracy``; inputs :meth:`SupernetSearch.features`: the point's summary — depths, mean widths,
     bit-width minimum and mean, … — and its integer vector, standardized) fitted on a seeded 80 % of the
     evaluations; its Kendall τ, Spearman ρ and R² on the other 20 % are reported.
  4. **search** (``plan.json``): Optuna's NSGA-II (in memory, seeded) over the integer vector for
     ``population_size × generations`` candidates: ``accuracy`` predicted (a candidate evaluated in phase 2 keeps
     its measured supernet accuracy), every other objective and constraint priced exactly by
     :func:`hwnas.search.objective.cost_metrics` on the candidate's model (fixed precision: the trained model's
     figures). Distinct candidates are ordered feasible first, then by non-dominated rank, then by crowding
     distance (a front's ends first): trial ``n`` of the study is plan entry ``n``.

  Phases 1–4 run once per output folder, under a file lock (``plan.json.lock``,
  :func:`hwnas.runpaths.file_lock`): workers that join wait for the plan.
* :meth:`SupernetSearch.run_trial` extracts plan entry ``n``'s sub-net from the trained banks (bit-exact copy of
  the shared weights, statistics calibrated as in phase 2), fine-tunes it for ``finetune_epochs`` with the
  experiment's training settings (seed ``experiment.seed + n``) when asked, and measures, prices and saves it like
  any trial (:func:`hwnas.search.objective.finish_trial`), so selection, export, verification and the report treat
  it as a trained trial. The trial records ``supernet``: the predicted and supernet-measured accuracy.
* :class:`SupernetSampler` is the Optuna sampler of the strategy: parameter ``x{j}`` of trial ``n`` is entry ``j``
  of plan vector ``n`` (the plan must exist: :meth:`SupernetSearch.plan` runs before the worker).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from torch import nn
from tqdm.auto import tqdm

from hwnas.runpaths import file_lock
from hwnas.space.point import Point

from .model import Supernet, SupernetError
from .training import SupernetTrainConfig, load_supernet, train_supernet

__all__ = ["SupernetSampler", "SupernetSearch", "crowding_order", "make_objective"]

PLAN_FORMAT = "hwnas-supernet-plan/1"

log = logging.getLogger(__name__)


def crowding_order(losses: np.ndarray) -> list[int]:
    """Indices ordered by non-dominated rank, then by crowding distance (largest first; a front's ends first)."""
    from hwnas.search.pareto import nondominated_ranks

    losses = np.asarray(losses, dtype=float)
    if len(losses) == 0:
        return []
    ranks = nondominated_ranks(losses)
    crowd = np.zeros(len(losses))
    for r in np.unique(ranks):
        idx = np.flatnonzero(ranks == r)
        for m in range(losses.shape[1]):
            vals = losses[idx, m]
            order = idx[np.argsort(vals, kind="stable")]
            crowd[order[0]] = crowd[order[-1]] = math.inf
            span = float(vals.max() - vals.min())
            if span > 0 and len(order) > 2:
                for a, b, c in zip(order[:-2], order[1:-1], order[2:], strict=True):
                    crowd[b] += (losses[c, m] - losses[a, m]) / span
    return sorted(range(len(losses)), key=lambda i: (int(ranks[i]), -crowd[i], i))


class SupernetSearch:
    """The phases of ``search.strategy: supernet`` for one experiment (module docstring).

    Args:
        ctx: the experiment's trial context (task data, space, cost models, output folder).
        progress: progress bars for training, evaluation and the predictor search.
    """

    def __init__(self, ctx: Any, progress: bool = False) -> None:
        from .model import check_space

        self.ctx = ctx
        self.exp = ctx.experiment
        self.opts = self.exp.search.options
        self.space = ctx.space
        check_space(self.space)
        self.folder = Path(ctx.output) / "supernet"
        self.progress = progress
        self._supernet: Supernet | None = None
        self._plan: list[dict[str, Any]] | None = None
        self.report: dict[str, Any] = {}

    # ------------------------------------------------------------------ pieces
    def train_config(self) -> SupernetTrainConfig:
        """The supernet's training settings: the experiment's ``training`` section and the strategy options."""
        base = self.exp.train_config(self.exp.seed, progress=False)
        device = getattr(self.ctx, "train_device", None)  # training.device resolved at the run's start
        o = self.opts
        return SupernetTrainConfig(epochs=o.epochs, warmup_epochs=o.warmup_epochs, random_subnets=o.random_subnets,
                                   distill=o.distill, sort_channels=o.sort_channels, batch_size=base.batch_size,
                                   lr=base.lr, optimizer=base.optimizer, momentum=base.momentum,
                                   weight_decay=base.weight_decay, seed=self.exp.seed, threads=base.threads,
                                   device=base.device if device is None else str(device))

    def new_supernet(self) -> Supernet:
        """An untrained supernet of the experiment's space (banks seeded with ``experiment.seed``)."""
        return Supernet(self.space, kernel_transform=self.opts.kernel_transform, seed=self.exp.seed)

    def calibration_inputs(self) -> torch.Tensor:
        """The training inputs every sub-net's statistics are measured on (the first batches, fixed)."""
        data = self.ctx.data
        return data.train.x[:self.opts.calibration_batches * self.train_config().batch_size]

    def supernet(self) -> Supernet:
        """The trained supernet: trained (or resumed) into ``supernet.pt`` unless finished there."""
        if self._supernet is not None:
            return self._supernet
        data = self.ctx.data
        if data.train.y.dtype not in (torch.int64, torch.int32):
            raise SupernetError(f"task {self.exp.task.name!r}: search.strategy supernet trains classifiers "
                                "(integer labels)")
        sn = self.new_supernet()
        config = self.train_config()
        log.info("supernet: %s; training %d epochs", sn.describe(), config.epochs)
        t0 = time.perf_counter()
        history = train_supernet(sn, data.train.x, data.train.y, config, checkpoint=self.folder / "supernet.pt",
                                 resume=True, progress=self.progress)
        self.report["train"] = {**history.to_dict(), "epochs_planned": config.epochs,
                                "seconds_this_run": time.perf_counter() - t0}
        sn.eval()
        self._supernet = sn
        return sn

    def loaded_supernet(self) -> Supernet:
        """The trained banks from ``supernet.pt`` (a worker that did not train them)."""
        if self._supernet is None:
            sn = self.new_supernet()
            load_supernet(sn, self.folder / "supernet.pt")
            if getattr(self.ctx, "train_device", None) is not None:
                sn.to(self.ctx.train_device)  # sub-nets are extracted and scored there
            sn.eval()
            self._supernet = sn
        return self._supernet

    def _val(self) -> tuple[Any, Any]:
        from hwnas.tasks import Split

        data = self.ctx.data
        n = self.opts.eval_samples
        val = data.val if n is None else Split(data.val.x[:n], data.val.y[:n])
        return val, data.classes

    def score(self, model: nn.Module) -> float:
        """The task metric of an extracted sub-net on the evaluation samples."""
        val, classes = self._val()
        return float(self.ctx.task.evaluate(model, val, classes=classes)[self.ctx.task.metric])

    def sample_points(self) -> list[Point]:
        """The ``subnets`` distinct points phase 2 evaluates (the largest and the smallest first)."""
        rng = np.random.default_rng([self.exp.seed, 7])
        sn_l, sn_s = self.space.extreme(True), self.space.extreme(False)
        points: dict[Point, None] = {sn_l: None, sn_s: None}
        try:
            size = self.space.size()
        except Exception:  # a continuous training range: unbounded (check_space refuses it anyway)
            size = None
        target = self.opts.subnets if size is None else min(self.opts.subnets, size)
        tries = 0
        while len(points) < target and tries < 50 * target:
            points.setdefault(self.space.sample(rng), None)
            tries += 1
        return list(points)[:target]

    def evaluate(self) -> list[dict[str, Any]]:
        """Phase 2: the evaluated sub-nets (read back from ``evaluations.jsonl``, the missing ones evaluated)."""
        path = self.folder / "evaluations.jsonl"
        points = self.sample_points()
        done: dict[int, dict[str, Any]] = {}
        if path.is_file():
            with open(path) as fh:
                for line in fh:
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut by a kill
                    done[int(row["index"])] = row
        sn = self.supernet()
        calib = self.calibration_inputs()
        todo = [i for i in range(len(points)) if i not in done]
        log.info("supernet: evaluating %d sub-nets (%d done earlier)", len(todo), len(points) - len(todo))
        t0 = time.perf_counter()
        with open(path, "a") as fh:
            for i in tqdm(todo, desc="sub-nets", disable=not self.progress, leave=False):
                s0 = time.perf_counter()
                model = sn.extract(points[i], calib)
                acc = self.score(model)
                if not math.isfinite(acc):
                    raise SupernetError(f"sub-net {i}: its {self.ctx.task.metric} is not finite")
                row = {"index": i, "vector": [int(v) for v in self.space.encode(points[i])], "accuracy": acc,
                       "seconds": time.perf_counter() - s0}
                fh.write(json.dumps(row) + "\n")
                fh.flush()
                done[i] = row
        rows = [done[i] for i in range(len(points))]
        secs = [r["seconds"] for r in rows]
        self.report["evaluate"] = {"subnets": len(rows), "seconds_this_run": time.perf_counter() - t0,
                                   "seconds_per_subnet": float(np.median(secs)) if secs else 0.0,
                                   "samples": len(self._val()[0].y)}
        return rows

    def fit_predictor(self, rows: Sequence[dict[str, Any]]) -> Any:
        """Phase 3: the accuracy predictor (fitted on 80 % of ``rows``; rank correlation on the other 20 %)."""
        from scipy.stats import kendalltau, spearmanr

        from hwnas.search.predictor import MultiOutputPredictor

        x = self.features([r["vector"] for r in rows])
        y = np.asarray([r["accuracy"] for r in rows], dtype=float)
        order = np.random.default_rng([self.exp.seed, 11]).permutation(len(rows))
        n_hold = max(2, len(rows) // 5) if len(rows) >= 10 else 0
        hold, fit = order[:n_hold], order[n_hold:]
        t0 = time.perf_counter()
        pred = MultiOutputPredictor(("accuracy",), hidden=tuple(self.opts.predictor_hidden),
                                    epochs=self.opts.predictor_epochs, seed=self.exp.seed, progress=self.progress)
        fit_report = pred.fit(x[fit], {"accuracy": y[fit]})
        report: dict[str, Any] = {"fitted_on": len(fit), "held_out": len(hold),
                                  "seconds": time.perf_counter() - t0}
        if len(hold) >= 2:
            p = pred.predict(x[hold])["accuracy"]
            tau, rho = kendalltau(p, y[hold]).statistic, spearmanr(p, y[hold]).statistic
            ss = float(((y[hold] - y[hold].mean()) ** 2).sum())
            r2 = 1.0 - float(((y[hold] - p) ** 2).sum()) / ss if ss > 0 else float("nan")
            report.update(kendall_tau=_num(tau), spearman=_num(rho), r2=_num(r2))
        report["fit"] = {"r2": {k: _num(v) for k, v in fit_report.r2.items()}}
        pred.save(self.folder / "predictor.pt")
        self.report["predictor"] = report
        log.info("supernet: accuracy predictor, Kendall tau %s on %d held-out sub-nets", report.get("kendall_tau"),
                 len(hold))
        return pred

    def features(self, vectors: Sequence[Sequence[int]]) -> np.ndarray:
        """Predictor inputs: each decoded point's summary, then its integer vector.

        The summary is :func:`hwnas.search.guided.point_features` (depths, mean widths, bit-width minimum/mean, …).
        """
        from hwnas.search.guided import point_features

        return np.asarray([point_features(self.space.decode(list(v))) + [float(e) for e in v] for v in vectors],
                          dtype=float)

    def _losses(self, metrics: dict[str, float]) -> list[float]:
        return [(-1.0 if o.direction == "maximize" else 1.0) * float(metrics[o.metric]) for o in self.exp.objectives]

    def search(self, predictor: Any, measured: dict[tuple[int, ...], float]) -> list[dict[str, Any]]:
        """Phase 4: NSGA-II on predicted accuracy and exact costs; the ordered plan (module docstring)."""
        from hwnas.search.objective import cost_metrics

        exp, space, o = self.exp, self.space, self.opts
        bounds = space.bounds()
        priced: dict[Point, dict[str, float]] = {}
        entries: dict[Point, dict[str, Any]] = {}

        def evaluate(vector: list[int]) -> dict[str, Any]:
            point = space.decode(vector)
            if point not in entries:
                if point not in priced:
                    model = space.build(point, seed=0).eval()
                    priced[point] = cost_metrics(model, self.ctx, point)[0]
                canon = tuple(int(v) for v in space.encode(point))
                metrics = dict(priced[point])
                predicted = float(predictor.predict(self.features([canon]))["accuracy"][0])
                metrics["accuracy"] = measured.get(canon, predicted)
                missing = [ob.metric for ob in exp.objectives if ob.metric not in metrics]
                if missing:
                    raise SupernetError(f"objectives: metric(s) {missing} were not priced (check hardware.model / "
                                        "hardware.cpu_table)")
                constraints = [float(c) for c in exp.constraint_values(metrics, self.ctx.device)]
                entries[point] = {"vector": list(canon), "point": point.to_dict(), "metrics": metrics,
                                  "predicted_accuracy": predicted, "supernet_accuracy": measured.get(canon),
                                  "constraints": constraints}
            return entries[point]

        def objective(trial: optuna.Trial) -> tuple[float, ...]:
            vec = [trial.suggest_int(f"x{j}", lo, hi) for j, (lo, hi) in enumerate(bounds)]
            entry = evaluate(vec)
            for i, value in enumerate(entry["constraints"]):  # Optuna's record: NSGA-II's constrained domination
                trial.set_constraint(f"c{i}", float(value))
            return tuple(float(entry["metrics"][ob.metric]) for ob in exp.objectives)

        sampler = optuna.samplers.NSGAIISampler(population_size=o.population_size, seed=exp.seed)
        t0 = time.perf_counter()
        with _quiet_optuna():
            study = optuna.create_study(directions=exp.directions, sampler=sampler)
            for vec in sorted(measured, key=lambda v: -measured[v])[:o.population_size]:
                study.enqueue_trial({f"x{j}": int(v) for j, v in enumerate(vec)})  # the best measured seed it
            study.optimize(objective, n_trials=o.population_size * o.generations,
                           show_progress_bar=self.progress)
        pool = list(entries.values())
        infeasible = [max(0.0, *e["constraints"]) if e["constraints"] else 0.0 for e in pool]
        feasible = [i for i, v in enumerate(infeasible) if v <= 0]
        rest = sorted((i for i, v in enumerate(infeasible) if v > 0), key=lambda i: infeasible[i])
        order = [feasible[i] for i in crowding_order(np.asarray([self._losses(pool[i]["metrics"]) for i in feasible]))]
        plan = [pool[i] for i in order + rest]
        for rank, entry in enumerate(plan):
            entry["plan_rank"] = rank
        self.report["search"] = {"candidates": len(pool), "feasible": len(feasible),
                                 "nsga2_trials": o.population_size * o.generations,
                                 "seconds": time.perf_counter() - t0}
        return plan

    # ------------------------------------------------------------------ the pipeline
    def plan(self) -> list[dict[str, Any]]:
        """Phases 1–4 (once per output folder, under the lock); the plan's entries in trial order."""
        if self._plan is not None:
            return self._plan
        from hwnas.search.run import write_json

        path = self.folder / "plan.json"
        with file_lock(path):
            if not path.is_file():
                t0 = time.perf_counter()
                self.report = {}
                rows = self.evaluate()
                predictor = self.fit_predictor(rows)
                measured = {tuple(r["vector"]): float(r["accuracy"]) for r in rows}
                plan = self.search(predictor, measured)
                self.report["seconds"] = time.perf_counter() - t0
                self.report["plain_epoch_seconds"] = self.plain_epoch_seconds()
                write_json(self.folder / "report.json", self.report)
                write_json(path, {"format": PLAN_FORMAT, "experiment": self.exp.name, "entries": plan})
            data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise SupernetError(f"{path}: not a supernet plan of this hwnas; delete it to plan again")
        self._plan = list(data["entries"])
        if not self._plan:
            raise SupernetError(f"{path}: the plan is empty")
        return self._plan

    def plain_epoch_seconds(self) -> float:
        """Seconds of one epoch of plain training of the largest sub-net (the reference for the supernet's)."""
        from hwnas.train import Trainer

        data = self.ctx.data
        model = self.space.build(self.space.extreme(True), seed=self.exp.seed)
        config = replace(self.exp.train_config(self.exp.seed, progress=False), epochs=1, patience=None)
        t0 = time.perf_counter()
        Trainer(model, config).fit(data.train.pair, None)
        return time.perf_counter() - t0

    def entry(self, number: int) -> dict[str, Any]:
        """Plan entry of trial ``number`` (wrapping around a plan shorter than the budget)."""
        plan = self.plan()
        return plan[number % len(plan)]

    def run_trial(self, point: Point, number: int) -> tuple[Any, float]:
        """Extract, optionally fine-tune, measure and save ``point`` as trial ``number`` (module docstring).

        Returns the :class:`~hwnas.search.objective.TrialResult` and the sub-net's accuracy on the shared weights
        (before fine-tuning).
        """
        from hwnas.search.objective import finish_trial
        from hwnas.train import Trainer

        t0 = time.perf_counter()
        sn = self.loaded_supernet()
        model = sn.extract(point, self.calibration_inputs())
        supernet_acc = self.score(model)
        if self.opts.finetune_epochs:
            data = self.ctx.data
            config = replace(self.exp.train_config(self.exp.trial_seed(number), progress=self.ctx.progress),
                             epochs=self.opts.finetune_epochs)
            torch.manual_seed(self.exp.trial_seed(number))
            Trainer(model, config).fit(data.train.pair, data.val.pair)
        return finish_trial(model, point, self.ctx, number, t0,
                            metadata={"supernet": {"supernet_accuracy": supernet_acc,
                                                   "finetune_epochs": self.opts.finetune_epochs}}), supernet_acc


def _num(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


class SupernetSampler(optuna.samplers.BaseSampler):
    """Trial ``n`` takes plan vector ``n`` (parameters ``x0 … x{n−1}``); see the module docstring."""

    def __init__(self, search: SupernetSearch) -> None:
        self.search = search

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial
                                    ) -> dict[str, optuna.distributions.BaseDistribution]:
        """Nothing is sampled jointly: every parameter comes from the plan."""
        return {}

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                        search_space: dict[str, optuna.distributions.BaseDistribution]) -> dict[str, Any]:
        """Nothing (see :meth:`infer_relative_search_space`)."""
        return {}

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str,
                           param_distribution: optuna.distributions.BaseDistribution) -> Any:
        """Entry ``j`` of the trial's plan vector for parameter ``x{j}``."""
        vector = self.search.entry(trial.number)["vector"]
        j = int(param_name[1:])
        return int(vector[j])


def make_objective(ctx: Any, search: SupernetSearch) -> Any:
    """The Optuna objective of the strategy: trial ``n`` measures plan entry ``n``'s extracted sub-net."""
    from hwnas.search.objective import _finite, record

    objectives = list(ctx.experiment.objectives)
    bounds = ctx.space.bounds()

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        vec = [trial.suggest_int(f"x{j}", lo, hi) for j, (lo, hi) in enumerate(bounds)]
        point = ctx.space.decode(vec)
        entry = search.entry(trial.number)
        result, supernet_acc = search.run_trial(point, trial.number)
        record(trial, result, vec)
        trial.set_user_attr("supernet", {"predicted_accuracy": entry["predicted_accuracy"],
                                         "supernet_accuracy": supernet_acc, "plan_rank": entry["plan_rank"],
                                         "finetune_epochs": search.opts.finetune_epochs})
        missing = [o.metric for o in objectives if o.metric not in result.metrics]
        if missing:
            raise KeyError(f"objectives: metric(s) {missing} were not measured (check hardware.model / cpu_table)")
        return tuple(_finite(o.metric, result.metrics[o.metric]) for o in objectives)

    return objective
