"""Predictor-guided strategies as Optuna samplers: the MONAS-LQ pipeline and the HA-NAS flavour.

Contract:

* :class:`GuidedSampler` samples the search space's fixed-length integer vector (Optuna parameters
  ``x0 … x{n−1}``, decoded by :meth:`hwnas.space.SearchSpace.decode`; the objective is
  :func:`hwnas.search.objective.make_objective` with ``vector=True``). Like :class:`~hwnas.search.pso.PSOSampler`
  it keeps no state that a restart would lose: what trial ``n`` evaluates follows from ``n`` and the
  study's finished trials, so one study is shared by several workers and survives restarts.
* Trials are numbered into stages (:class:`Schedule`):

  - **stage 1** (MONAS-LQ only; ``hpo_trials`` trials, when the space has filter variables): the backbone —
    every slot at its middle choice, every bit-width at its largest value up to 8 — with the filter
    variables at choice ``n mod len(filters)``. Of the stage-1 trials whose accuracy is within
    ``hpo_tolerance`` of the best, the one with the most MACs (ties: the more accurate, then the earlier)
    fixes the filter choice of every later trial — a 5-epoch accuracy difference below the tolerance is
    noise, and the wider backbone leaves the later stages more to trade through the bits (MONAS-LQ's
    hyper-parameter pre-selection of the backbone width; cost is left to the later stages, which search
    the bits). With ``hpo_keep: close`` every filter choice from the lowest to the highest of those within
    the tolerance stays a search value (the width is a cost lever of the front too); only clearly worse
    widths are dropped.
  - **stage 2** (``bootstrap_size`` / ``warmup_trials`` trials): with ``bootstrap_design: random`` (HA-NAS
    always) random vectors from ``numpy.random.default_rng([seed, n])``; with ``stratified`` (MONAS-LQ's
    default) row ``n − hpo`` of a Latin hypercube over the vector (:func:`stratified_design`, seeded
    ``[seed, 2]``), canonicalized; a row equal to an earlier one falls back to a random vector. With
    ``factorial`` the same, the depth slots (:data:`DEPTH_SLOTS`) crossed: every combination of depths
    equally often when there are no more combinations than bootstrap trials. With ``bootstrap_bits: upper``
    the bit-width slots of the design span the upper half of their ranges.
  - **rounds** of ``round_size`` trials (MONAS-LQ: ``max(1, ⌊candidates_per_round·train_fraction⌋)``;
    HA-NAS: ``population_size``). Round ``r`` is proposed once from the COMPLETE trials numbered below its
    first trial: a predictor (:class:`~hwnas.search.predictor.MultiOutputPredictor`) is fitted on their
    vectors, candidates are generated and scored on it, a shortlist is priced exactly by the cost models
    (:func:`hwnas.search.objective.price`: an untrained model has the trained model's BOPs, resources and
    latency when precision is fixed), and the best ``round_size`` distinct, untrained candidates are
    trained. Slot ``j`` of the round is trial ``first + j``.

* **MONAS-LQ rounds** (stage 3 MOLP + stage 4 hybrid PSO): the MOLP predicts ``accuracy``, ``bops`` and the
  composite score ``w·(1 − accuracy) + (1 − w)·qa_score`` (lower is better); a
  :class:`~hwnas.search.pso.ParticleSwarm` seeded ``[seed, r]`` (half its particles started at the best
  trained vectors) minimizes the predicted score over ``candidates_per_round`` evaluations; every evaluated
  position is a candidate. The shortlist is the best ``4·round_size`` by predicted score plus the best
  ``4·round_size`` by predicted (accuracy, BOPs) dominance.
* **HA-NAS rounds** (one generation): the predictor predicts ``accuracy`` only; ``candidates_per_generation``
  children of the best trained vectors (binary tournament on feasibility then dominance rank, uniform
  crossover, per-coordinate mutation with probability 1/n) are all priced exactly (CPU latency from the
  table, memory, hardware) — the latency/memory budgets are checked exactly, not predicted.
* **Accuracy model** (MONAS-LQ ``accuracy_model: gp``): a Gaussian process on the trained points replaces the
  MOLP's accuracy for the selection (mean − ``accuracy_lcb``·std); its inputs are the vectors scaled to
  [0, 1], or with ``accuracy_features: summary`` the :func:`point_features` of the decoded points scaled to
  [0, 1] over trained points and candidates. With ``accuracy_acquisition: thompson`` the round instead draws
  ``round_size`` joint samples of the GP posterior over its candidates (seeded ``[seed, 3, r]``): the
  shortlist gains, per draw, the ``4·round_size`` candidates adding most to the trained (accuracy, BOPs)
  front under that draw, and slot ``j`` is the largest hypervolume improvement under draw ``j`` (earlier
  picks joining the front at their draw-``j`` values); a draw under which nothing improves leaves its slot
  to the bound's greedy choice (mean accuracy). With ``accuracy_acquisition: ehvi`` (two objectives: the
  accuracy and one priced cost) the shortlist gains the ``4·round_size`` candidates of largest expected
  hypervolume improvement (MOLP BOPs standing in for the cost) and the round is chosen greedily by
  :func:`expected_improvement_order` on the exact costs, each pick joining the front at its mean.
* **Selection** of a round: candidates whose exact costs violate a constraint (accuracy constraints use the
  predicted accuracy) come last. The feasible ones are chosen greedily by the largest hypervolume they add
  to the feasible front of the trained points (objectives scaled to [0, 1] over trained points and
  candidates, reference 1.1; accuracy predicted, the others exact), each choice joining the front before
  the next; once no candidate adds volume, the rest follow by non-dominated rank and crowding distance.
  Fewer candidates than slots: the remaining slots are random vectors.
* **Patience** (MONAS-LQ): :class:`PatienceStop` is a trial callback; once ``patience`` consecutive finished
  rounds added no point to the feasible Pareto front it records ``hwnas:stopped`` on the study and stops the
  worker (every worker stops after its current trial; the remaining WAITING trials stay unused).
* Each guided trial records in ``user_attrs["guided"]`` its stage, round and (for rounds) the prediction it
  was chosen by and the predictor's R² (``predictor``: ``r2``, ``split`` — ``"validation"``, 20 % held
  out, from 20 trained points on; ``"train"`` below that — and the sample counts).

Errors name the option: a composite score without ``qa_score`` (a task without baseline model), a vector of
another length than the space's.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

from .objective import TrialContext, composite_score, price
from .pareto import hypervolume, nondominated_ranks
from .predictor import MultiOutputPredictor
from .pso import ParticleSwarm

__all__ = ["DEPTH_SLOTS", "STOPPED_ATTR", "TRAINED_METRICS", "GuidedSampler", "PatienceStop", "Schedule",
           "crowding_distance", "expected_improvement_order", "improvement_order", "point_features",
           "stratified_design"]

TRAINED_METRICS = frozenset({"accuracy", "test_accuracy"})
"""Metrics that need a trained model (predicted for candidates); every other metric is priced exactly."""
DEPTH_SLOTS = frozenset({"conv_blocks", "dense_layers"})
"""Vector slots a ``factorial`` bootstrap crosses (every combination of depths)."""
STOPPED_ATTR = "hwnas:stopped"
"""Study user attribute: why a pipeline stopped early (patience)."""
_GUIDED_ATTR = "guided"


@dataclass(frozen=True)
class Schedule:
    """Which stage a trial number belongs to."""

    hpo: int
    warmup: int
    round_size: int

    def stage(self, number: int) -> tuple[str, int, int]:
        """``(stage, round, slot)``: ``"hpo"``, ``"bootstrap"`` (HA-NAS's warm-up too) or ``"round"``.

        Round and slot are −1 outside rounds.
        """
        if number < self.hpo:
            return "hpo", -1, -1
        if number < self.hpo + self.warmup:
            return "bootstrap", -1, -1
        r, j = divmod(number - self.hpo - self.warmup, self.round_size)
        return "round", r, j

    def round_start(self, r: int) -> int:
        """The first trial number of round ``r``."""
        return self.hpo + self.warmup + r * self.round_size


def crowding_distance(losses: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each row of ``losses`` (one front; extremes get infinity)."""
    n, m = losses.shape
    out = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(losses[:, k], kind="stable")
        col = losses[order, k]
        span = col[-1] - col[0]
        out[order[0]] = out[order[-1]] = np.inf
        if span > 0:
            out[order[1:-1]] += (col[2:] - col[:-2]) / span
    return out


def stratified_design(bounds: Sequence[tuple[int, int]], rows: int, rng: np.random.Generator,
                      joint: Sequence[int] = ()) -> np.ndarray:
    """A Latin hypercube of ``rows`` integer vectors within ``bounds`` (inclusive), ``joint`` columns crossed.

    Column ``j`` splits ``[0, 1)`` into ``rows`` strata, puts one uniform draw in each, shuffles them and maps
    each onto the ``hi − lo + 1`` values of the slot: every value appears ``⌊rows / values⌋`` or
    ``⌈rows / values⌉`` times (or, with more values than rows, no two rows share a stratum).

    The ``joint`` columns (indices) are covered together when their combinations are no more than ``rows``:
    every combination appears ``⌊rows / combinations⌋`` times, a random subset of them once more, in shuffled
    rows (a full factorial design on those columns). With more combinations than rows they stay Latin columns.
    """
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    out = np.empty((rows, len(bounds)), dtype=int)
    for j, (lo, hi) in enumerate(bounds):
        n = hi - lo + 1
        u = (rng.permutation(rows) + rng.random(rows)) / rows
        out[:, j] = lo + np.minimum((u * n).astype(int), n - 1)
    joint = [j for j in dict.fromkeys(int(j) for j in joint) if bounds[j][1] > bounds[j][0]]
    if joint:
        combos = list(itertools.product(*(range(bounds[j][0], bounds[j][1] + 1) for j in joint)))
        if len(combos) <= rows:
            reps, rest = divmod(rows, len(combos))
            chosen = [c for c in combos for _ in range(reps)]
            chosen += [combos[i] for i in rng.choice(len(combos), rest, replace=False)]
            out[:, joint] = np.array(chosen, dtype=int)[rng.permutation(rows)]
    return out


def point_features(point: Any) -> list[float]:
    """Summary features of a space point for an accuracy model (the same length for every point of a space).

    Depth (conv blocks, hidden dense layers), mean log2 filters / units / kernel, the shares of separable,
    batch-normed and unpooled blocks, dropout, and the bit-widths of the layers that exist: weight bits
    minimum, mean, first and last layer; activation bits minimum and mean (learned precision: zeros). Unlike
    the integer vector, a layer the point does not have contributes nothing (its vector slot holds a
    normalized filler value that a model would read as a choice). Numeric task options of the point, when it
    has any (``task_options``), follow in name order, then its searched training settings (``training``: lr, l1)
    as log10 (0 as -12).
    """
    conv, dense = tuple(point.conv), tuple(point.dense)

    def mean(values: Sequence[float]) -> float:
        return float(np.mean(values)) if len(values) else 0.0

    w, a = [float(b) for b in point.weight_bits], [float(b) for b in point.act_bits]
    feats = [float(len(conv)), float(len(dense)),
             mean([math.log2(c.filters) for c in conv]), mean([math.log2(d.units) for d in dense]),
             mean([math.log2(c.kernel) for c in conv]),
             mean([float(c.separable) for c in conv]), mean([float(c.batch_norm) for c in conv]),
             mean([float(c.pooling == "none") for c in conv]), float(point.dropout),
             min(w, default=0.0), mean(w), w[0] if w else 0.0, w[-1] if w else 0.0,
             min(a, default=0.0), mean(a)]
    extra = getattr(point, "task_options", None) or {}
    items = extra.items() if isinstance(extra, dict) else extra
    for _name, value in sorted(items):
        if isinstance(value, int | float) and not isinstance(value, bool):
            feats.append(float(value))
    for _name, value in sorted(getattr(point, "training", None) or ()):
        feats.append(math.log10(value) if value > 0 else -12.0)
    return feats


@dataclass
class _Trained:
    number: int
    vector: tuple[int, ...]
    metrics: dict[str, float]
    constraints: list[float]

    @property
    def violation(self) -> float:
        return float(sum(max(c, 0.0) for c in self.constraints))


def _trained(study: optuna.Study, below: int | None = None) -> list[_Trained]:
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if below is not None and t.number >= below:
            continue
        vec, metrics = t.user_attrs.get("vector"), t.user_attrs.get("metrics")
        if vec is None or not metrics:
            continue
        out.append(_Trained(t.number, tuple(int(v) for v in vec), dict(metrics),
                            [float(c) for c in t.user_attrs.get("constraints", [])]))
    return sorted(out, key=lambda d: d.number)


class GuidedSampler(BaseSampler):
    """MONAS-LQ (``kind="monas_lq"``) or HA-NAS (``kind="ha_nas"``) over a space's integer vector.

    Args:
        ctx: the experiment's trial context (space, cost models, constraints).
        kind: ``"monas_lq"`` or ``"ha_nas"``.
        options: the strategy's options (:class:`hwnas.config.MonasLqOptions` / :class:`~hwnas.config.HaNasOptions`).
        seed: the experiment seed (every worker must use the same one: proposals depend only on it and the
            finished trials).
    """

    def __init__(self, ctx: TrialContext, kind: str, options: Any, seed: int) -> None:
        if kind not in ("monas_lq", "ha_nas"):
            raise ValueError(f"kind must be 'monas_lq' or 'ha_nas', got {kind!r}")
        self.ctx, self.kind, self.options, self.seed = ctx, kind, options, int(seed)
        space = ctx.space
        self.layout = space.layout()
        self.bounds = [(int(lo), int(hi)) for lo, hi in space.bounds()]
        self.names = [f"x{j}" for j in range(len(self.bounds))]
        self._dists = {n: IntDistribution(lo, hi) for n, (lo, hi) in zip(self.names, self.bounds, strict=True)}
        self.filter_slots = [j for j, s in enumerate(self.layout)
                             if (s.name == "filters" or s.name.endswith(".filters")) and s.high > s.low]
        self.depth_slots = [j for j, s in enumerate(self.layout) if s.name in DEPTH_SLOTS and s.high > s.low]
        self.bit_slots = [j for j, s in enumerate(self.layout) if s.name.endswith(("weight_bits", "act_bits"))]
        exp = ctx.experiment
        self.objectives = [(o.metric, o.direction) for o in exp.objectives]
        trained = [i for i, (m, _) in enumerate(self.objectives) if m in TRAINED_METRICS]
        self._uncertain = trained[0] if trained else -1
        if getattr(options, "accuracy_acquisition", "bound") == "ehvi" and (len(self.objectives) != 2
                                                                             or len(trained) != 1):
            raise ValueError("search.options.accuracy_acquisition: ehvi needs exactly two objectives, one of them "
                             f"the trained accuracy and one a priced cost; got {[m for m, _ in self.objectives]}")
        if kind == "monas_lq":
            hpo = options.hpo_trials if self.filter_slots else 0
            size = max(1, math.floor(options.candidates_per_round * options.train_fraction))
            self.schedule = Schedule(hpo, options.bootstrap_size, size)
            if ctx.baseline is None:
                raise ValueError(f"search.strategy monas_lq: task {exp.task.name!r} has no baseline model, so no "
                                 "qa_score for the composite score")
        else:
            self.schedule = Schedule(0, options.warmup_trials, options.population_size)
        self._rounds: dict[int, list[tuple[tuple[int, ...], dict[str, Any]]]] = {}
        self._predictor_r2: dict[int, dict[str, Any]] = {}
        self._fixed: dict[int, tuple[int, int]] | None = None  # stage 1's range of each filter slot
        self._random = RandomSampler(seed=self.seed)
        self._design: list[tuple[int, ...]] | None = None
        self._near: list[tuple[int, ...]] = []

    # -- Optuna interface -----------------------------------------------------------------------------------
    def reseed_rng(self) -> None:
        """Nothing to reseed: every draw derives from the seed and the trial number."""

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """The vector parameters ``x0 … x{n−1}``."""
        return dict(self._dists)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        """The vector of trial ``trial.number`` (module docstring), recorded in ``user_attrs["guided"]``."""
        if not search_space:
            return {}
        vec, info = self.propose(study, trial.number)
        study._storage.set_trial_user_attr(trial._trial_id, _GUIDED_ATTR, info)
        return {n: int(v) for n, v in zip(self.names, vec, strict=True) if n in search_space}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        """Parameters outside the vector: at random."""
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    # -- vectors ------------------------------------------------------------------------------------------------
    def canonical(self, vec: Sequence[float]) -> tuple[int, ...]:
        """The vector as the space encodes its point (inactive slots normalized), filter choice applied.

        The encoding writes the filter slot of a block the depth does not reach as the slot's lowest choice;
        with stage 1's filter range fixed that padding is put back inside the range (decoding ignores it), so
        every canonical vector lies within the bounds the swarm searches.
        """
        v = [round(float(x)) for x in vec]
        v = [min(max(x, lo), hi) for x, (lo, hi) in zip(v, self.bounds, strict=True)]
        if self._fixed:
            for j, (lo, hi) in self._fixed.items():
                v[j] = min(max(v[j], lo), hi)
        out = [int(x) for x in self.ctx.space.encode(self.ctx.space.decode(v))]
        if self._fixed:
            for j, (lo, hi) in self._fixed.items():
                out[j] = min(max(out[j], lo), hi)
        return tuple(out)

    def backbone(self, choice: int) -> tuple[int, ...]:
        """Stage 1's backbone vector with the filter slots at ``choice`` (modulo each slot's choices)."""
        v = []
        for j, s in enumerate(self.layout):
            if j in self.bit_slots:
                vals = [c for c in range(s.low, s.high + 1) if c <= 8] or [s.low]
                v.append(max(vals))
            elif j in self.filter_slots:
                v.append(s.low + choice % (s.high - s.low + 1))
            else:
                v.append((s.low + s.high + 1) // 2)
        return tuple(int(x) for x in self.ctx.space.encode(self.ctx.space.decode(v)))

    def _random_vector(self, number: int, salt: int = 0) -> tuple[int, ...]:
        rng = np.random.default_rng([self.seed, number, salt])
        point = self.ctx.space.sample(rng)
        return self.canonical(self.ctx.space.encode(point))

    def _stratified_vector(self, number: int) -> tuple[int, ...]:
        """Row ``number − hpo`` of the bootstrap's Latin hypercube (module docstring)."""
        if self._design is None:
            joint = self.depth_slots if self.options.bootstrap_design == "factorial" else ()
            bounds = list(self.bounds)
            for j, span in (self._fixed or {}).items():  # stage 1's filter choices (spread over when several)
                bounds[j] = span
            if getattr(self.options, "bootstrap_bits", "full") == "upper":
                for j in self.bit_slots:
                    lo, hi = bounds[j]
                    bounds[j] = ((lo + hi + 1) // 2, hi)
            rows = stratified_design(bounds, self.schedule.warmup, np.random.default_rng([self.seed, 2]), joint=joint)
            design: list[tuple[int, ...]] = []
            for i, row in enumerate(rows):
                v = self.canonical(row)
                design.append(v if v not in design else self._random_vector(self.schedule.hpo + i))
            self._design = design
        return self._design[number - self.schedule.hpo]

    def _score(self, metrics: dict[str, float]) -> float:
        return composite_score(metrics, self.options.score_weight)

    def _filter_choice(self, study: optuna.Study) -> dict[int, tuple[int, int]] | None:
        """Each filter slot's (low, high) values kept by stage 1 (None before stage 1 finished or without it)."""
        if self._fixed is not None or self.schedule.hpo == 0:
            return self._fixed
        done = _trained(study, below=self.schedule.hpo)
        finished = [t for t in study.get_trials(deepcopy=False) if t.number < self.schedule.hpo
                    and t.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)]
        if len(finished) < self.schedule.hpo or not done:
            return None
        top = max(float(d.metrics["accuracy"]) for d in done)
        tol = float(getattr(self.options, "hpo_tolerance", 0.0))
        close = [d for d in done if float(d.metrics["accuracy"]) >= top - tol]
        if getattr(self.options, "hpo_keep", "widest") == "close":  # every width within the tolerance
            self._fixed = {j: (min(d.vector[j] for d in close), max(d.vector[j] for d in close))
                           for j in self.filter_slots}
            return self._fixed
        best = min(close, key=lambda d: (-float(d.metrics.get("macs", 0.0)), -float(d.metrics["accuracy"]), d.number))
        self._fixed = {j: (best.vector[j], best.vector[j]) for j in self.filter_slots}
        return self._fixed

    def propose(self, study: optuna.Study, number: int) -> tuple[tuple[int, ...], dict[str, Any]]:
        """The vector trial ``number`` evaluates and the record of why."""
        stage, r, j = self.schedule.stage(number)
        if stage == "hpo":
            return self.backbone(number), {"stage": "hpo", "filter_choice": number}
        self._filter_choice(study)
        if stage == "bootstrap":
            design = getattr(self.options, "bootstrap_design", "random")
            if design in ("stratified", "factorial"):
                return self._stratified_vector(number), {"stage": "bootstrap", "design": design}
            return self._random_vector(number), {"stage": "bootstrap"}
        proposals = self._round(study, r)
        if j < len(proposals):
            vec, why = proposals[j]
            return vec, {"stage": "round", "round": r, **why, "predictor": self._predictor_r2.get(r, {})}
        return self._random_vector(number, salt=1), {"stage": "round", "round": r, "fallback": "random"}

    # -- rounds ---------------------------------------------------------------------------------------------
    def _round(self, study: optuna.Study, r: int) -> list[tuple[tuple[int, ...], dict[str, Any]]]:
        if r in self._rounds:
            return self._rounds[r]
        data = _trained(study, below=self.schedule.round_start(r))
        if len(data) < 4:
            self._rounds[r] = []
            return []
        pool = self._monas_pool(data, r) if self.kind == "monas_lq" else self._hanas_pool(data, r)
        seen = {d.vector for d in data}
        for t in study.get_trials(deepcopy=False):  # vectors already claimed by running or waiting trials
            if t.params and len(t.params) == len(self.names):
                seen.add(tuple(int(t.params[n]) for n in self.names))
        pool = {v: p for v, p in pool.items() if v not in seen}
        self._rounds[r] = self._select(pool, self.schedule.round_size, data)
        return self._rounds[r]

    def _fit(self, data: list[_Trained], targets: tuple[str, ...], r: int) -> MultiOutputPredictor:
        x = np.array([d.vector for d in data], dtype=float)
        y: dict[str, list[float]] = {t: [] for t in targets}
        for d in data:
            for t in targets:
                y[t].append(self._score(d.metrics) if t == "score" else max(float(d.metrics[t]), 1e-12)
                            if t == "bops" else float(d.metrics[t]))
        opts = self.options
        hidden = tuple(getattr(opts, "predictor_hidden", (64, 64)))
        lr = float(getattr(opts, "predictor_lr", 3e-3))
        epochs = int(opts.predictor_epochs)
        pred = MultiOutputPredictor(targets, bounds=self.bounds, hidden=hidden, epochs=epochs, lr=lr,
                                    patience=max(20, epochs // 5), seed=self.seed + r,
                                    ensemble=int(getattr(opts, "predictor_ensemble", 1)),
                                    validation_fraction=0.2 if len(data) >= 20 else 0.0)
        report = pred.fit(x, y)
        self._predictor_r2[r] = {"r2": {k: round(float(v), 4) for k, v in report.r2.items()},
                                 "split": report.split, "n_train": report.n_train,
                                 "n_validation": report.n_validation}
        return pred

    def _monas_pool(self, data: list[_Trained], r: int) -> dict[tuple[int, ...], dict[str, float]]:
        opts = self.options
        pred = self._fit(data, ("accuracy", "bops", "score"), r)
        kappa = float(getattr(opts, "accuracy_lcb", 0.0))
        bounds = list(self.bounds)
        for j, span in (self._fixed or {}).items():
            bounds[j] = span
        swarm_size = int(opts.swarm_size)
        best = sorted(data, key=lambda d: (d.violation > 0, self._score(d.metrics)))[: swarm_size // 2]
        swarm = ParticleSwarm(bounds, swarm_size=swarm_size, seed=self.seed * 7919 + r, mutation=0.05,
                              initial_positions=list(dict.fromkeys(self.canonical(d.vector) for d in best)))
        generations = max(1, math.ceil(opts.candidates_per_round / swarm_size))
        pool: dict[tuple[int, ...], dict[str, float]] = {}
        for _ in range(generations):
            positions = [self.canonical(p) for p in swarm.ask()]
            rows = self._predicted(pred, positions, kappa)
            swarm.tell([row["score"] for row in rows])
            for v, row in zip(positions, rows, strict=True):
                pool.setdefault(v, row)
        self._near = self.front_neighbours(data, int(getattr(opts, "front_neighbours", 0)))
        new = [v for v in self._near if v not in pool]
        if new:
            pool.update(zip(new, self._predicted(pred, new, kappa), strict=True))
        if getattr(opts, "accuracy_model", "molp") == "gp" and pool:
            self._gp_accuracy(data, pool, kappa, r)
        return pool

    @staticmethod
    def _predicted(pred: MultiOutputPredictor, vecs: list[tuple[int, ...]], kappa: float) -> list[dict[str, float]]:
        """The predictor's row per vector; with ``kappa`` > 0 the accuracy is mean − kappa·std (both kept)."""
        out, std = pred.predict(np.array(vecs, dtype=float), return_std=True)
        rows = []
        for i in range(len(vecs)):
            row = {t: float(out[t][i]) for t in out}
            if kappa > 0:
                row["accuracy_mean"], row["accuracy_std"] = row["accuracy"], float(std["accuracy"][i])
                row["accuracy"] -= kappa * row["accuracy_std"]
            rows.append(row)
        return rows

    def front_neighbours(self, data: list[_Trained], limit: int) -> list[tuple[int, ...]]:
        """Up to ``limit`` untrained vectors one move away from the trained feasible Pareto front.

        Moves, cheapest first: every bit-width one lower, every bit-width two lower, one bit-width one lower
        (each slot), one architecture or mapping slot one lower or higher (each slot; stage 1's filter choice
        stays), one bit-width one higher. The front points take turns, the best in the first objective
        first, so every front point gets its cheapest moves before any gets its dearer ones.
        """
        if limit <= 0:
            return []
        feasible = [d for d in data if d.violation <= 0]
        if not feasible:
            return []
        losses = np.array([self._losses_of(d.metrics) for d in feasible])
        ranks = nondominated_ranks(losses)
        front = sorted((d for d, rk in zip(feasible, ranks, strict=True) if rk == 0),
                       key=lambda d: (self._losses_of(d.metrics)[0], d.number))
        bits = [j for j in self.bit_slots if self.layout[j].high > self.layout[j].low]
        fixed = {j for j, (lo, hi) in (self._fixed or {}).items() if lo == hi}  # stage 1 left one value
        arch = [j for j, s in enumerate(self.layout)
                if j not in bits and s.high > s.low and j not in fixed]

        def moves(vec: tuple[int, ...]) -> list[list[int]]:
            out = []
            for step in (1, 2):
                out.append([v - step if j in bits else v for j, v in enumerate(vec)])
            for j in bits:
                out.append([v - 1 if i == j else v for i, v in enumerate(vec)])
            for j in arch:
                for step in (-1, 1):
                    out.append([v + step if i == j else v for i, v in enumerate(vec)])
            for j in bits:
                out.append([v + 1 if i == j else v for i, v in enumerate(vec)])
            return out

        trained = {d.vector for d in data}
        lists = [moves(d.vector) for d in front]
        found: list[tuple[int, ...]] = []
        for i in range(max((len(m) for m in lists), default=0)):
            for m in lists:
                if i < len(m) and len(found) < limit:
                    v = self.canonical(m[i])
                    if v not in trained and v not in found:
                        found.append(v)
        return found

    def _gp_accuracy(self, data: list[_Trained], pool: dict[tuple[int, ...], dict[str, Any]], kappa: float,
                     r: int = 0) -> None:
        """Replace the pool's predicted accuracy by a Gaussian process's (mean − kappa·std) on the trained points.

        The GP (Matérn 5/2 with a fitted noise term, inputs scaled to [0, 1] per coordinate, accuracy
        centred on the trained mean) reverts to that mean away from the data instead of extrapolating. With
        ``accuracy_trend: log_bops`` it models the residual of a least-squares line in log2 BOPs (slope
        clipped at 0; candidates at the MOLP's predicted BOPs), so away from the data it reverts to the
        accuracy typical of the candidate's cost rather than to the overall mean: an unexplored cheap model
        is not assumed as accurate as the average trained one.
        """
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        vecs = list(pool)
        if getattr(self.options, "accuracy_features", "vector") == "summary":
            space = self.ctx.space
            feats = np.array([point_features(space.decode(list(v))) for v in [d.vector for d in data] + vecs])
            lo, hi = feats.min(axis=0), feats.max(axis=0)
            scaled = (feats - lo) / np.where(hi > lo, hi - lo, 1.0)
            x, xc = scaled[: len(data)], scaled[len(data):]
        else:
            lo = np.array([b[0] for b in self.bounds], dtype=float)
            span = np.maximum(np.array([b[1] for b in self.bounds], dtype=float) - lo, 1.0)
            x = (np.array([d.vector for d in data], dtype=float) - lo) / span
            xc = (np.array(vecs, dtype=float) - lo) / span
        y = np.array([float(d.metrics["accuracy"]) for d in data])
        trend_y, trend_c = np.zeros(len(data)), np.zeros(len(vecs))
        if getattr(self.options, "accuracy_trend", "none") == "log_bops":
            lb = np.log2(np.array([max(float(d.metrics["bops"]), 1.0) for d in data]))
            lbc = np.log2(np.array([max(float(pool[v]["bops"]), 1.0) for v in vecs]))
            slope, intercept = np.polyfit(lb, y, 1) if np.ptp(lb) > 0 else (0.0, float(y.mean()))
            slope = max(float(slope), 0.0)  # accuracy never falls with cost: a noisy negative fit is no trend
            intercept = float(y.mean() - slope * lb.mean())
            trend_y, trend_c = intercept + slope * lb, intercept + slope * lbc
        kernel = ConstantKernel(1.0, (1e-3, 1e2)) * Matern(length_scale=np.ones(x.shape[1]), length_scale_bounds=(
            0.05, 20.0), nu=2.5) + WhiteKernel(1e-2, (1e-6, 1.0))
        gp = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=2,
                                      random_state=int(self.seed) % (2**31))
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gp.fit(x, y - trend_y)
        mean, std = gp.predict(xc, return_std=True)
        mean = mean + trend_c
        acquisition = getattr(self.options, "accuracy_acquisition", "bound")
        thompson = acquisition == "thompson"
        if thompson:  # one joint posterior draw per training of the round (seeded by seed and round)
            seed = int(np.random.default_rng([self.seed, 3, r]).integers(2**31 - 1))
            draws = gp.sample_y(xc, n_samples=self.schedule.round_size, random_state=seed)
            draws = draws.reshape(len(vecs), -1) + trend_c[:, None]
        for i, (v, m, sd) in enumerate(zip(vecs, mean, std, strict=True)):
            pool[v]["accuracy_molp"] = pool[v].get("accuracy_mean", pool[v]["accuracy"])
            pool[v]["accuracy_mean"], pool[v]["accuracy_std"] = float(m), float(sd)
            pool[v]["accuracy"] = float(m) if acquisition != "bound" else float(m - kappa * sd)
            if thompson:
                pool[v]["accuracy_draws"] = [float(x) for x in draws[i]]

    def _hanas_pool(self, data: list[_Trained], r: int) -> dict[tuple[int, ...], dict[str, float]]:
        opts = self.options
        pred = self._fit(data, ("accuracy",), r)
        rng = np.random.default_rng([self.seed, 1, r])
        losses = np.array([self._losses_of(d.metrics) for d in data])
        ranks = nondominated_ranks(losses)
        key = [(d.violation > 0, d.violation, int(rk)) for d, rk in zip(data, ranks, strict=True)]
        order = sorted(range(len(data)), key=lambda i: (key[i], data[i].number))
        parents = [data[i].vector for i in order[: max(2, opts.population_size)]]
        rank_of = {data[i].vector: pos for pos, i in enumerate(order)}
        d = len(self.bounds)
        vecs: list[tuple[int, ...]] = []
        seen: set[tuple[int, ...]] = set()
        attempts = 0
        while len(vecs) < opts.candidates_per_generation and attempts < 20 * opts.candidates_per_generation:
            attempts += 1
            a, b = (min(rng.choice(len(parents), 2, replace=False), key=lambda i: rank_of[parents[i]])
                    for _ in range(2))
            pa, pb = np.array(parents[a]), np.array(parents[b])
            child = np.where(rng.random(d) < 0.5, pa, pb)
            mutate = rng.random(d) < 1.0 / d
            for k in np.flatnonzero(mutate):
                lo, hi = self.bounds[k]
                child[k] = rng.integers(lo, hi + 1)
            v = self.canonical(child)
            if v not in seen:
                seen.add(v)
                vecs.append(v)
        if not vecs:
            return {}
        out = pred.predict(np.array(vecs, dtype=float))
        return {v: {"accuracy": float(out["accuracy"][i])} for i, v in enumerate(vecs)}

    def _losses_of(self, metrics: dict[str, float]) -> list[float]:
        return [(-1.0 if direction == "maximize" else 1.0) * float(metrics.get(m, math.nan))
                for m, direction in self.objectives]

    def _front_losses(self, data: list[_Trained]) -> np.ndarray:
        """The objectives' losses of the feasible trained points, one row each."""
        known = [self._losses_of(d.metrics) for d in data if d.violation <= 0]
        return np.array(known, dtype=float).reshape(-1, len(self.objectives))

    def _by_improvement(self, rows: list[tuple[Any, ...]], data: list[_Trained], k: int,
                        fill: bool = True) -> list[tuple[Any, ...]]:
        """Up to ``k`` feasible rows: greedy largest hypervolume improvement, then (``fill``) rank and crowding."""
        if not rows:
            return []
        cand = np.array([self._losses_of(row[1]) for row in rows])
        return [rows[i] for i in improvement_order(cand, self._front_losses(data), k, fill=fill)]

    def _by_thompson(self, rows: list[tuple[Any, ...]], data: list[_Trained], k: int) -> list[tuple[Any, ...]]:
        """Up to ``k`` feasible rows, row ``j`` the largest improvement under posterior draw ``j``.

        Each pick sees the trained front plus the earlier picks (at their values in the same draw); the
        draws differ, so the picks of one round spread where the model is unsure. A draw under which no row
        adds volume picks nothing.
        """
        def drawn(row: tuple[Any, ...], j: int) -> tuple[Any, ...]:
            draws = row[3]["predicted"]["accuracy_draws"]
            value = draws[j % len(draws)]
            return (row[0], {**row[1], **{m: value for m in TRAINED_METRICS if m in row[1]}}, row[2], row[3])

        chosen: list[tuple[Any, ...]] = []
        for j in range(k):
            left = [row for row in rows if all(row[0] != c[0] for c in chosen)]
            picked = [_Trained(-1, c[0], drawn(c, j)[1], []) for c in chosen]
            best = self._by_improvement([drawn(row, j) for row in left], data + picked, 1, fill=False)
            if best:
                chosen.append(next(row for row in left if row[0] == best[0][0]))
        return chosen

    def _by_expected(self, rows: list[tuple[Any, ...]], data: list[_Trained], k: int) -> list[tuple[Any, ...]]:
        """Up to ``k`` feasible rows by greedy expected hypervolume improvement (the GP's mean and std)."""
        if not rows:
            return []
        cand = np.array([self._losses_of(row[1]) for row in rows])
        sd = np.array([float(row[3]["predicted"].get("accuracy_std", 0.0)) for row in rows])
        order = expected_improvement_order(cand, sd, self._uncertain, self._front_losses(data), k)
        return [rows[i] for i in order]

    def _select(self, pool: dict[tuple[int, ...], dict[str, Any]], k: int, data: list[_Trained]
                ) -> list[tuple[tuple[int, ...], dict[str, Any]]]:
        if not pool:
            return []
        vecs = list(pool)
        acquisition = getattr(self.options, "accuracy_acquisition", "bound") if self.kind == "monas_lq" else "bound"
        thompson, ehvi = acquisition == "thompson", acquisition == "ehvi"  # the config allows both with a gp only
        if self.kind == "monas_lq":
            by_score = sorted(vecs, key=lambda v: pool[v]["score"])[: 4 * k]
            two = np.array([[-pool[v]["accuracy"], pool[v]["bops"]] for v in vecs])
            ranks = nondominated_ranks(two)
            by_front = [vecs[i] for i in sorted(range(len(vecs)), key=lambda i: (ranks[i], -two[i, 0]))][: 4 * k]
            by_draw: list[tuple[int, ...]] = []
            # the trained (accuracy, BOPs) front the explorative shortlists measure their gains against
            known = np.array([[-float(d.metrics["accuracy"]), float(d.metrics.get("bops", math.nan))]
                              for d in data if d.violation <= 0], dtype=float).reshape(-1, 2)
            if thompson:  # per draw, the candidates adding most to that front
                for j in range(len(next(iter(pool.values()))["accuracy_draws"])):
                    drawn = np.array([[-pool[v]["accuracy_draws"][j], pool[v]["bops"]] for v in vecs])
                    by_draw += [vecs[i] for i in improvement_order(drawn, known, 4 * k)]
            if ehvi:  # the candidates of largest expected gain with the MOLP's BOPs standing in for the cost
                means = np.array([[-pool[v]["accuracy"], pool[v]["bops"]] for v in vecs])
                sds = np.array([pool[v].get("accuracy_std", 0.0) for v in vecs])
                by_draw += [vecs[i] for i in expected_improvement_order(means, sds, 0, known, 4 * k)]
            shortlist = list(dict.fromkeys(by_score + by_front + by_draw + [v for v in self._near if v in pool]))
        else:
            shortlist = vecs
        exp = self.ctx.experiment
        rows = []
        for v in shortlist:
            point = self.ctx.space.decode(list(v))
            metrics = price(point, self.ctx, seed=self.seed)
            for name in TRAINED_METRICS:
                if name in pool[v]:
                    metrics[name] = pool[v][name]
                elif name == "test_accuracy" and "accuracy" in pool[v]:
                    metrics[name] = pool[v]["accuracy"]
            cons = exp.constraint_values(metrics, self.ctx.device) if exp.constraints else []
            violation = float(sum(max(c, 0.0) for c in cons))
            record = {"predicted": dict(pool[v]),
                      "priced": {m: float(metrics[m]) for m, _ in self.objectives
                                 if m in metrics and m not in TRAINED_METRICS}}
            rows.append((v, metrics, violation, record))
        feasible = [row for row in rows if row[2] <= 0]
        infeasible = sorted((row for row in rows if row[2] > 0), key=lambda row: row[2])
        pick = self._by_thompson if thompson else self._by_expected if ehvi else self._by_improvement
        chosen = [(row[0], row[3]) for row in pick(feasible, data, k)]
        if thompson and len(chosen) < k:  # nothing improves under the draws: fill as the bound does
            taken = {c[0] for c in chosen}
            chosen += [(row[0], row[3]) for row in self._by_improvement(
                [row for row in feasible if row[0] not in taken], data, k - len(chosen))]
        for row in infeasible:
            if len(chosen) >= k:
                break
            chosen.append((row[0], {**row[3], "violation": row[2]}))  # predicted infeasible: last resort
        return chosen[:k]


def _scaled(cand: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidates and the finite known rows scaled to [0, 1] over both: (cand, front, front unscaled, scale)."""
    front = known[np.isfinite(known).all(axis=1)] if len(known) else known.reshape(0, cand.shape[1])
    both = np.vstack([cand, front])
    lo, hi = both.min(axis=0), both.max(axis=0)
    scale = np.where(hi > lo, hi - lo, 1.0)
    return (cand - lo) / scale, (front - lo) / scale, front, scale


def _greedy(norm_c: np.ndarray, norm_f: np.ndarray, k: int,
            gains_for: Callable[[np.ndarray], Callable[[int], float]]) -> list[int]:
    """Up to ``k`` rows, each the largest positive gain given the front and the earlier picks (joined to it)."""
    picked: list[int] = []
    while len(picked) < k:
        gain_of = gains_for(norm_f)
        best, gain = -1, 0.0
        for i in range(len(norm_c)):
            if i in picked:
                continue
            g = gain_of(i)
            if g > gain + 1e-12:
                best, gain = i, g
        if best < 0:
            break
        picked.append(best)
        norm_f = np.vstack([norm_f, norm_c[best:best + 1]])
    return picked


def improvement_order(cand: np.ndarray, known: np.ndarray, k: int, *, fill: bool = True) -> list[int]:
    """Up to ``k`` row indices of ``cand`` (losses, lower is better) by greedy hypervolume improvement.

    Objectives are scaled to [0, 1] over ``cand`` and the finite rows of ``known`` (the trained front's
    losses), reference 1.1 in every objective; each pick joins the front before the next. Once no row adds
    volume, with ``fill`` the rest follow by non-dominated rank and, within a rank, crowding distance
    (without, fewer than ``k`` come back).
    """
    if len(cand) == 0 or k <= 0:
        return []
    norm_c, norm_f, _, _ = _scaled(cand, known)
    ref = np.full(cand.shape[1], 1.1)

    def gains_for(front: np.ndarray) -> Callable[[int], float]:
        base = hypervolume(front, ref) if len(front) else 0.0
        return lambda i: hypervolume(np.vstack([front, norm_c[i:i + 1]]), ref) - base

    picked = _greedy(norm_c, norm_f, k, gains_for)
    if fill and len(picked) < k:  # nothing improves the front any more: spread along the dominance ranks
        rest = [i for i in range(len(cand)) if i not in picked]
        ranks = nondominated_ranks(cand[rest])
        for rank in sorted({int(x) for x in ranks}):
            idx = [rest[j] for j in range(len(rest)) if ranks[j] == rank]
            crowd = crowding_distance(cand[idx])
            picked += [idx[j] for j in sorted(range(len(idx)), key=lambda t: -crowd[t])]
            if len(picked) >= k:
                break
    return picked[:k]


def _expected_gain(x: float, m: float, sd: float, xs: np.ndarray, ys: np.ndarray, ref: float) -> float:
    """Expected hypervolume a point at exact coordinate ``x`` and loss ~ N(m, sd²) adds to a 2-D front.

    ``xs`` ascending and ``ys`` their running minimum (the front's staircase; losses, lower is better), both
    scaled, ``ref`` the reference in both coordinates. The gain is ∫ₓ^ref max(0, g(t) − L) dt with g the
    staircase; its expectation is a sum over the staircase's segments of the normal's partial expectation.
    """
    if x >= ref:
        return 0.0
    knots = [x] + [float(v) for v in xs if x < v < ref] + [ref]
    total = 0.0
    for a, b in itertools.pairwise(knots):
        below = ys[xs <= a]
        g = min(ref, float(below[-1])) if len(below) else ref
        if sd > 0:
            z = (g - m) / sd
            part = (g - m) * 0.5 * math.erfc(-z / math.sqrt(2.0)) + sd * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        else:
            part = max(0.0, g - m)
        total += (b - a) * part
    return total


def expected_improvement_order(cand: np.ndarray, sd: np.ndarray, uncertain: int, known: np.ndarray, k: int, *,
                               fill: bool = True) -> list[int]:
    """Up to ``k`` row indices of ``cand`` (two losses) by greedy expected hypervolume improvement (EHVI).

    Column ``uncertain`` of ``cand`` is a predicted mean with standard deviation ``sd`` (normal), the other
    column exact. Scaling and reference as :func:`improvement_order`; each pick joins the front at its mean
    before the next (a "believer" batch). With every expected gain zero, ``fill`` goes on as
    :func:`improvement_order` on the means.
    """
    if len(cand) == 0 or k <= 0:
        return []
    if cand.shape[1] != 2:
        raise ValueError(f"expected improvement needs two objectives, got {cand.shape[1]}")
    norm_c, norm_f, front, scale = _scaled(cand, known)
    nsd = np.asarray(sd, dtype=float) / scale[uncertain]
    exact = 1 - uncertain

    def gains_for(points: np.ndarray) -> Callable[[int], float]:
        order = np.argsort(points[:, exact], kind="stable")
        xs = points[order, exact]
        ys = np.minimum.accumulate(points[order, uncertain]) if len(order) else xs
        return lambda i: _expected_gain(float(norm_c[i, exact]), float(norm_c[i, uncertain]), float(nsd[i]), xs,
                                        ys, 1.1)

    picked = _greedy(norm_c, norm_f, k, gains_for)
    if fill and len(picked) < k:
        rest = [i for i in range(len(cand)) if i not in picked]
        more = improvement_order(cand[rest], np.vstack([front, cand[picked]]) if picked else front, k - len(picked))
        picked += [rest[i] for i in more]
    return picked[:k]


class PatienceStop:
    """Trial callback: stop once ``patience`` finished rounds in a row added no feasible Pareto point."""

    def __init__(self, sampler: GuidedSampler, patience: int) -> None:
        self.sampler, self.patience = sampler, int(patience)

    def stale_rounds(self, study: optuna.Study) -> int:
        """Consecutive finished rounds, counted from the last, without a new point on the feasible front."""
        sched = self.sampler.schedule
        trials = study.get_trials(deepcopy=False)
        finished = {t.number for t in trials if t.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)}
        data = _trained(study)
        feasible = [d for d in data if d.violation <= 0]
        stale, r = 0, 0
        while True:
            start, end = sched.round_start(r), sched.round_start(r + 1)
            if not all(n in finished for n in range(start, end)) or end > len(trials):
                break
            upto = [d for d in feasible if d.number < end]
            new = False
            if upto:
                losses = np.array([self.sampler._losses_of(d.metrics) for d in upto])
                ranks = nondominated_ranks(losses)
                new = any(rk == 0 and d.number >= start for d, rk in zip(upto, ranks, strict=True))
            stale = 0 if new else stale + 1
            r += 1
        return stale

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Stop the worker when the study is stopped or the patience ran out."""
        if study.user_attrs.get(STOPPED_ATTR):
            study.stop()
            return
        stale = self.stale_rounds(study)
        if stale >= self.patience:
            study.set_user_attr(STOPPED_ATTR, f"patience: {stale} rounds without a new Pareto point")
            study.stop()
