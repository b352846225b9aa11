"""Strategy factory: one Optuna sampler per ``search.strategy``, so every strategy shares storage and workers.

Contract:

* :func:`make_strategy` returns a :class:`Strategy`: the worker's sampler (seeded
  ``experiment.sampler_seed(worker)``, except PSO and the predictor-guided pipelines: their proposals must
  agree between workers (trial ``n`` is one particle / one round slot whoever runs it), so they use the
  experiment seed), whether the objective samples the integer vector
  (``vector=True``: PSO, MONAS-LQ, HA-NAS) or the define-by-run parameters, and the trial callbacks.
* ``nsga2``: Optuna's :class:`~optuna.samplers.NSGAIISampler` with the options' population and operator
  probabilities; ``tpe``: :class:`~optuna.samplers.TPESampler`; ``random``: :class:`~optuna.samplers.RandomSampler`;
  ``pso``: :class:`hwnas.search.pso.PSOSampler` over ``x0 … x{n−1}``, minimizing the single objective or, with
  several, the composite score ``w·(1 − accuracy) + (1 − w)·qa_score``; with ``generations`` set, a callback
  stops the worker after ``swarm_size·generations`` trials. ``monas_lq`` / ``ha_nas``:
  :class:`hwnas.search.guided.GuidedSampler` (+ :class:`~hwnas.search.guided.PatienceStop` for MONAS-LQ).
  ``supernet``: :class:`hwnas.supernet.search.SupernetSampler` with its own objective (sub-nets extracted from the
  trained supernet instead of trained) and ``prepare`` (train, evaluate, predict, plan; docs/supernet.md).
* Constraints: the objective records each constraint with ``trial.set_constraint("c<i>", value)`` (Optuna 5's
  record, ≤ 0 satisfied), which NSGA-II's constrained domination and TPE read; the PSO sampler gets
  ``constraints_func`` reading ``user_attrs["constraints"]``; the guided pipelines rank candidates by
  feasibility themselves. Infeasible trials stay in the study, never selected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import IntDistribution
from optuna.trial import FrozenTrial

from .guided import GuidedSampler, PatienceStop
from .objective import TrialContext, composite_score
from .pso import PSOSampler

__all__ = ["Strategy", "make_strategy", "trial_constraints"]


def trial_constraints(trial: FrozenTrial) -> Sequence[float]:
    """A finished trial's constraint values (``user_attrs["constraints"]``; none recorded: none)."""
    return [float(c) for c in trial.user_attrs.get("constraints", [])]


@dataclass
class Strategy:
    """A worker's sampler, its encoding and its callbacks."""

    name: str
    sampler: optuna.samplers.BaseSampler
    vector: bool
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] = field(default_factory=list)
    prepare: Callable[[], Any] | None = None
    """Work before the first trial, once per worker (the supernet strategy trains and plans here)."""
    objective: Callable[[Any], tuple[float, ...]] | None = None
    """The strategy's own objective (None: :func:`hwnas.search.objective.make_objective`)."""


class _StopAfter:
    """Callback: stop a worker once the study holds ``n`` finished trials (PSO ``generations``)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        if len(finished) >= self.n:
            study.stop()


def make_strategy(ctx: TrialContext, worker: int = 0, resumed: int = 0, progress: bool = False) -> Strategy:
    """The sampler, encoding and callbacks of ``ctx.experiment.search.strategy`` for worker ``worker``.

    ``resumed``: trials the study had finished when this worker started. A worker that joins or restarts on a
    study with finished trials seeds its Optuna sampler with ``sampler_seed(worker) + 7919·resumed`` (mod 2³²),
    so a restarted worker does not draw again the points its earlier run drew; a fresh study (0) keeps the seed.
    ``progress``: progress bars of a strategy's own long phases (the supernet's training and evaluation).
    """
    exp = ctx.experiment
    name = exp.search.strategy
    opts = exp.search.options
    seed = (exp.sampler_seed(worker) + 7919 * int(resumed)) % 2**32
    cons: Callable[[FrozenTrial], Sequence[float]] | None = trial_constraints if exp.constraints else None
    if name == "nsga2":
        sampler: optuna.samplers.BaseSampler = optuna.samplers.NSGAIISampler(
            population_size=opts.population_size, crossover_prob=opts.crossover_prob,
            mutation_prob=opts.mutation_prob, swapping_prob=opts.swapping_prob, seed=seed)
        return Strategy(name, sampler, vector=False)
    if name == "tpe":
        sampler = optuna.samplers.TPESampler(n_startup_trials=opts.n_startup_trials, multivariate=opts.multivariate,
                                             seed=seed)
        return Strategy(name, sampler, vector=False)
    if name == "random":
        return Strategy(name, optuna.samplers.RandomSampler(seed=seed), vector=False)
    if name == "pso":
        # a slot with one value (a fixed depth, a single filter choice) is no swarm coordinate: the objective
        # still suggests it, and the sampler's independent draw of a one-value distribution is that value
        space = {f"x{j}": IntDistribution(lo, hi) for j, (lo, hi) in enumerate(ctx.space.bounds()) if hi > lo}
        score_fn = None
        if len(exp.objectives) > 1:
            if ctx.baseline is None:
                raise ValueError(f"search.strategy pso with several objectives scalarizes them by the composite "
                                 f"score, which needs qa_score; task {exp.task.name!r} has no baseline model")
            weight = opts.score_weight

            def score_fn(t: FrozenTrial) -> float:
                return composite_score(t.user_attrs["metrics"], weight)

        sampler = PSOSampler(opts.swarm_size, seed=exp.seed, inertia=opts.inertia, c1=opts.c1, c2=opts.c2,
                             velocity_clamp=opts.velocity_clamp, mutation=opts.mutation, search_space=space,
                             score_fn=score_fn, constraints_func=cons)
        callbacks: list[Any] = []
        if opts.generations is not None:
            callbacks.append(_StopAfter(opts.swarm_size * opts.generations))
        return Strategy(name, sampler, vector=True, callbacks=callbacks)
    if name in ("monas_lq", "ha_nas"):
        guided = GuidedSampler(ctx, name, opts, exp.seed)
        callbacks = [PatienceStop(guided, opts.patience)] if name == "monas_lq" else []
        return Strategy(name, guided, vector=True, callbacks=callbacks)
    if name == "supernet":
        from hwnas.supernet.search import SupernetSampler, SupernetSearch, make_objective

        search = SupernetSearch(ctx, progress=progress)
        return Strategy(name, SupernetSampler(search), vector=True, prepare=search.plan,
                        objective=make_objective(ctx, search))
    raise ValueError(f"search.strategy: unknown strategy {name!r}")
