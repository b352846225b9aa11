"""Search: experiments run as Optuna studies shared by workers, with every strategy as a sampler.

* :mod:`hwnas.search.objective` — one trial: build, train, measure, price, save, record.
* :mod:`hwnas.search.strategies` — the sampler (and encoding, callbacks) of each ``search.strategy``.
* :mod:`hwnas.search.pso` — particle swarm: ask/tell :class:`~hwnas.search.pso.ParticleSwarm` and
  :class:`~hwnas.search.pso.PSOSampler`.
* :mod:`hwnas.search.predictor` — the MOLP multi-output predictor.
* :mod:`hwnas.search.guided` — MONAS-LQ (stages 1–4) and HA-NAS as Optuna samplers; patience stop.
* :mod:`hwnas.search.storage`, :mod:`hwnas.search.workers` — storage URLs, study creation with the whole
  budget enqueued, workers with heartbeats and retries.
* :mod:`hwnas.search.pareto` — the Pareto archive, its export and selection rules.
* :mod:`hwnas.search.run` — ``hwnas search`` / ``hwnas worker``: create or join, run, export.

See ``docs/search.md``.
"""

from typing import Any

__all__ = ["SearchOutcome", "experiment_metadata", "open_study", "run_search", "write_results"]


def __getattr__(name: str) -> Any:
    # imported on first use: the storage and worker modules (a worker process, `hwnas worker` joining a study)
    # then load without torch and the training stack behind .run
    if name in __all__:
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
