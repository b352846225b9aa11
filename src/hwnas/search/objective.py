"""One trial: build a point's model, train it, measure every metric, price it on the hardware, store it.

Contract:

* :class:`TrialContext` holds what every trial of one experiment shares: the validated experiment, the task
  and its seeded data (loaded once per worker), the search space, the device, the QA-Score baseline, the
  optional CPU latency table and the output folder.
* :func:`train_and_measure` is the whole trial without Optuna (the MONAS-LQ and HA-NAS pipelines call it
  directly): the model of ``point`` is built and trained with the experiment's schedule and seed
  ``experiment.seed + number``; then :func:`measure` records the task metric on the validation split
  (``accuracy``; a task's own metric such as fidelity is stored under that name too) and the test split
  (``test_accuracy``), the model figures (MACs, BOPs, EBOPs, weight bits, parameters, memory, sparsity,
  QA-Score against the task's 8-bit baseline), the hardware estimate of the configured cost model
  (resources, latency, throughput, energy) and, with a CPU table, the predicted CPU latency. The trained
  model is saved (:func:`hwnas.export.save_model`, with test inputs) under ``<output>/trials/<number>/``.
  A training loss or metric that is not finite raises :class:`TrialDivergedError`.
* :func:`make_objective` wraps it for Optuna: the point comes from the space's define-by-run suggestion (or,
  with ``vector=True``, from integer parameters ``x0..`` decoded by the space — the PSO encoding); the
  record of the contract (``metrics``, ``constraints`` with ≤ 0 satisfied, ``point``, ``vector``,
  ``checkpoint``, ``estimate``) goes into the trial's user attributes; the return value is the objectives
  in order. Exceptions propagate, so the study marks the trial FAILED (never a penalty value).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["TrialContext", "TrialDivergedError", "TrialResult", "composite_score", "cost_metrics", "make_objective",
           "measure", "price", "record", "train_and_measure"]


class TrialDivergedError(RuntimeError):
    """Training produced a non-finite loss or metric (the trial is FAILED)."""


@dataclass
class TrialResult:
    """What one trained point measured."""

    point: Any
    metrics: dict[str, float]
    constraints: list[float]
    estimate: dict[str, Any] | None
    checkpoint: str | None
    seconds: float

    @property
    def feasible(self) -> bool:
        """Every constraint satisfied (value ≤ 0)."""
        return all(c <= 0 for c in self.constraints)


@dataclass
class TrialContext:
    """Everything the trials of one experiment share (built once per worker by :meth:`create`)."""

    experiment: Any
    task: Any
    data: Any
    space: Any
    device: Any
    output: Path
    baseline: nn.Module | None = None
    cpu_table: Any = None
    progress: bool = False
    save_models: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, experiment: Any, *, output: Path | None = None, progress: bool = False,
               save_models: bool = True) -> TrialContext:
        """Load the task data, build the space, resolve the device, baseline and CPU table."""
        from hwnas.space import SearchSpace
        from hwnas.tasks import get_task

        task = get_task(experiment.task.name)
        data = task.load(seed=experiment.seed, **experiment.task.options)
        space = SearchSpace(experiment.space, data.input_shape, data.n_classes)
        device = experiment.device()
        out = Path(output) if output is not None else experiment.output_dir()
        table = None
        if experiment.hardware.cpu_table:
            from hwnas.cost.cpu_latency import LatencyTable

            table = LatencyTable.load(experiment.cpu_table_path())
        try:
            baseline = task.baseline(data)
        except Exception:  # a task without a baseline model: no QA-Score
            baseline = None
        return cls(experiment, task, data, space, device, out, baseline, table, progress, save_models)


def _finite(name: str, value: float) -> float:
    if value is None or not math.isfinite(float(value)):
        raise TrialDivergedError(f"{name} is not finite ({value!r}): the training diverged")
    return float(value)


def _hardware(model: nn.Module, ctx: TrialContext, point: Any) -> tuple[dict[str, float], dict[str, Any] | None]:
    from hwnas.cost import estimate, fold_for_throughput
    from hwnas.nn import fold_batchnorm

    exp = ctx.experiment
    kind = exp.hardware.model
    if kind == "none":
        return {}, None
    shape = ctx.data.input_shape
    folded = fold_batchnorm(copy.deepcopy(model).eval())
    clock = exp.hardware.clock_mhz
    mapping = getattr(point, "mapping", None)
    if kind == "finn":
        target_fps = exp.hardware.target_fps or exp.space.mapping.target_fps
        folding = ctx.space.folding(point) if mapping else None
        if folding:
            est = estimate(folded, ctx.device, input_shape=shape, kind="finn", folding=folding, clock_mhz=clock)
        elif target_fps:
            _, est = fold_for_throughput(folded, ctx.device, shape, target_fps, clock_mhz=clock)
        else:
            est = estimate(folded, ctx.device, input_shape=shape, kind="finn", clock_mhz=clock)
    else:
        rf = ctx.space.reuse_factors(point) if mapping else 1
        est = estimate(folded, ctx.device, input_shape=shape, kind="hls4ml", reuse_factor=rf or 1, clock_mhz=clock)
    t = est.totals
    metrics = {r: float(t[r]) for r in ("luts", "ffs", "bram18", "uram", "dsps")}
    metrics.update(latency_cycles=float(est.latency_cycles), latency_ms=float(est.latency_ms),
                   initiation_interval=float(est.initiation_interval), throughput=float(est.throughput))
    if est.energy_mj is not None:
        metrics["energy_mj"] = float(est.energy_mj)
    summary = {"model": est.model, "device": est.device.name, "clock_mhz": est.clock_mhz, "verdict": est.verdict,
               "totals": {k: float(v) for k, v in t.items()}, "latency_cycles": int(est.latency_cycles),
               "initiation_interval": int(est.initiation_interval),
               "rows": [{"name": r.name, "type": r.type, "cycles": int(r.cycles), "luts": float(r.luts),
                         "bram18": float(r.bram18), "dsps": float(r.dsps)} for r in est.rows]}
    return metrics, summary


def cost_metrics(model: nn.Module, ctx: TrialContext, point: Any = None
                 ) -> tuple[dict[str, float], dict[str, Any] | None]:
    """The metrics of ``model`` that need no data, and the hardware estimate's summary.

    MACs, BOPs, EBOPs, weight bits, memory, sparsity, parameters, QA-Score, the hardware estimate and the
    CPU latency. The predictor-guided strategies price untrained candidates with it; for fixed precision the figures
    equal the trained model's (bit-widths do not change in training).
    """
    from hwnas.cost import model_metrics, qa_score

    shape = ctx.data.input_shape
    m = model_metrics(model, shape)
    n_params = sum(p.numel() for n, p in model.named_parameters() if not n.endswith((".f", ".i", ".k")))
    metrics: dict[str, float] = {
        "macs": float(m.macs), "bops": float(m.bops), "ebops": float(m.ebops), "wbits": float(m.weight_bits),
        "memory_kb": float(m.memory_bytes) / 1024.0, "sparsity": float(m.sparsity), "params": float(n_params)}
    if ctx.baseline is not None:
        metrics["qa_score"] = float(qa_score(model, shape, baseline=ctx.baseline, baseline_input_shape=shape))
    hw, summary = _hardware(model, ctx, point)
    metrics.update(hw)
    if ctx.cpu_table is not None:
        from hwnas.cost.cpu_latency import predict_latency

        metrics["cpu_latency_ms"] = float(predict_latency(model, shape, ctx.cpu_table).total_ms)
    return metrics, summary


def measure(model: nn.Module, ctx: TrialContext, point: Any = None) -> tuple[dict[str, float], dict[str, Any] | None]:
    """Every metric of a trained ``model`` (names from :data:`hwnas.config.METRICS`) and the estimate summary."""
    data, task = ctx.data, ctx.task
    model.eval()
    val = task.evaluate(model, data.val, classes=data.classes)
    test = task.evaluate(model, data.test, classes=data.classes)
    metrics: dict[str, float] = {"accuracy": _finite("accuracy", val[task.metric]),
                                 "test_accuracy": float(test[task.metric])}
    costs, summary = cost_metrics(model, ctx, point)
    metrics.update(costs)
    return metrics, summary


def price(point: Any, ctx: TrialContext, seed: int = 0) -> dict[str, float]:
    """:func:`cost_metrics` of ``point``'s freshly built (untrained) model."""
    model = ctx.space.build(point, seed=seed).eval()
    return cost_metrics(model, ctx, point)[0]


def train_and_measure(point: Any, ctx: TrialContext, number: int, *,
                      checkpoint_dir: Path | None = None) -> TrialResult:
    """Build, train and measure ``point`` as trial ``number`` (seed ``experiment.seed + number``)."""
    from hwnas.export import save_model
    from hwnas.train import Trainer

    t0 = time.perf_counter()
    exp = ctx.experiment
    seed = exp.trial_seed(int(number))
    torch.manual_seed(seed)
    model = ctx.space.build(point, seed=seed)
    config = exp.train_config(seed, progress=ctx.progress)
    trainer = Trainer(model, config)
    history = trainer.fit(ctx.data.train.pair, ctx.data.val.pair)
    if history.records:
        _finite("training loss", history.records[-1].train_loss)
    metrics, summary = measure(model, ctx, point)
    constraints = [float(c) for c in exp.constraint_values(metrics, ctx.device)]
    checkpoint = None
    if ctx.save_models:
        folder = checkpoint_dir if checkpoint_dir is not None else ctx.output / "trials" / f"{number:05d}"
        path = save_model(model, folder / "model.pt", ctx.data.input_shape, test_inputs=ctx.data.test.x[:256],
                          metadata={"experiment": exp.name, "trial": number, "point": point.to_dict(),
                                    "metrics": metrics})
        checkpoint = str(path)
    return TrialResult(point, metrics, constraints, summary, checkpoint, time.perf_counter() - t0)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def record(trial: Any, result: TrialResult, vector: list[int] | None = None) -> None:
    """Store a :class:`TrialResult` in a trial's user attributes (the contract's record)."""
    trial.set_user_attr("metrics", _json_safe(result.metrics))
    trial.set_user_attr("constraints", list(result.constraints))
    if hasattr(trial, "set_constraint"):  # Optuna's own record (keys c0, c1, …): NSGA-II/TPE read it
        for i, value in enumerate(result.constraints):
            trial.set_constraint(f"c{i}", float(value))
    trial.set_user_attr("point", _json_safe(result.point.to_dict()))
    if vector is not None:
        trial.set_user_attr("vector", [int(v) for v in vector])
    trial.set_user_attr("checkpoint", result.checkpoint)
    trial.set_user_attr("estimate", _json_safe(result.estimate))
    trial.set_user_attr("seconds", float(result.seconds))


def make_objective(ctx: TrialContext, *, vector: bool = False) -> Callable[[Any], tuple[float, ...]]:
    """The Optuna objective of ``ctx``'s experiment (module docstring)."""
    objectives = list(ctx.experiment.objectives)
    bounds = ctx.space.bounds() if vector else None

    def objective(trial: Any) -> tuple[float, ...]:
        if bounds is not None:
            vec = [trial.suggest_int(f"x{j}", lo, hi) for j, (lo, hi) in enumerate(bounds)]
            point = ctx.space.decode(vec)
        else:
            point = ctx.space.suggest(trial)
            vec = ctx.space.encode(point)
        result = train_and_measure(point, ctx, trial.number)
        record(trial, result, vec)
        missing = [o.metric for o in objectives if o.metric not in result.metrics]
        if missing:
            raise KeyError(f"objectives: metric(s) {missing} were not measured (check hardware.model / cpu_table)")
        return tuple(_finite(o.metric, result.metrics[o.metric]) for o in objectives)

    return objective


def composite_score(metrics: dict[str, float], weight: float = 0.5) -> float:
    """MONAS-LQ's composite objective (lower is better): ``w·(1 − accuracy) + (1 − w)·qa_score``.

    Raises a ``KeyError`` naming the missing metric (``qa_score`` needs a task with a baseline model).
    """
    for name in ("accuracy", "qa_score"):
        if name not in metrics:
            raise KeyError(f"composite score: metric {name!r} was not measured (qa_score needs a task with a "
                           "baseline model)")
    return float(weight * (1.0 - metrics["accuracy"]) + (1.0 - weight) * metrics["qa_score"])
