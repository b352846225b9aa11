"""One trial: build a point's model, train it, measure every metric, price it on the hardware, store it.

Contract:

* :class:`TrialContext` holds what every trial of one experiment shares: the validated experiment, the task
  and its seeded data (loaded once per worker), the search space, the device (the FPGA target), the QA-Score
  baseline, the optional CPU latency table, the output folder and the torch device trials train on
  (``training.device`` resolved on this machine, :attr:`TrialContext.train_device`: a CUDA GPU this machine does
  not have fails :meth:`TrialContext.create` with a one-line :class:`hwnas.train.device.DeviceError`). With
  ``space.task_options`` a point's data is the task's data loaded with ``task.options`` overridden by the point's
  task options (:func:`task_options_for`, :meth:`TrialContext.data_for`; the last few option sets are cached, so
  trials with the same readout window share one load); its model is built, trained, measured and priced on that
  data's input shape. The QA-Score baseline stays the task's baseline on the experiment's own options, so
  QA-Scores compare across options.
* :func:`train_and_measure` is the whole trial without Optuna (the MONAS-LQ and HA-NAS pipelines call it
  directly): the model of ``point`` is built and trained with the experiment's schedule and seed
  ``experiment.seed + number`` — with the point's searched training settings (``space.training``: ``lr``,
  ``l1``) in place of the experiment's, :func:`training_for` —; then :func:`measure` records the task metric on
  the validation split (``accuracy``; a task's own metric such as fidelity is stored under that name too) and the
  test split (``test_accuracy``), the model figures (MACs, BOPs, EBOPs, weight bits, parameters, memory, sparsity,
  QA-Score against the task's 8-bit baseline), the hardware estimate of the configured cost model
  (resources, their SNAC-Pack average ``avg_resource``, latency, throughput, energy) and, with a CPU table, the
  predicted CPU latency. With ``training.kfold: k`` the point trains k times instead, on the stratified folds of
  the train and validation splits together (:func:`hwnas.train.kfold.kfold`; fold ``j`` with seed
  ``experiment.seed + number + j``): ``accuracy`` is the mean of the folds' task metrics on their held-out
  parts, ``accuracy_std`` their standard deviation (``folds`` in the result: each fold's), and the model the
  trial keeps is the best fold's: ``test_accuracy``, the costs and the checkpoint are that model's; the test split
  is used for nothing else (never for a choice). The model trains and is evaluated on the trial's torch device; it
  is moved to the CPU before it is priced and saved, so costs and files do not depend on the device. The trained
  model is saved (:func:`hwnas.export.save_model`, with test inputs and the metadata ``task_options``: the
  options its data was loaded with, which every later stage loads again) under ``<output>/trials/<number>/``.
  With ``parents`` (finished trials, :class:`hwnas.search.inherit.ParentCandidate`) the training starts from
  the weights of the closest one with the same tensor shapes (:mod:`hwnas.search.inherit`); the result names
  it (``parent``) and every result carries its model's ``shape_key``.
  A training loss or metric that is not finite raises :class:`TrialDivergedError`.
* :func:`make_objective` wraps it for Optuna: the point comes from the space's define-by-run suggestion (or,
  with ``vector=True``, from integer parameters ``x0..`` decoded by the space — the PSO encoding); the
  record of the contract (``metrics``, ``constraints`` with ≤ 0 satisfied, ``point``, ``vector``,
  ``checkpoint``, ``estimate``, ``task_options``, ``training`` (the settings the trial trained with that differ
  per trial: its searched ``lr``/``l1``; empty when none are searched), ``folds`` (with ``training.kfold``: each
  fold's task metric), ``shape_key``, ``warm_start``) goes into the trial's user
  attributes; the return value is the objectives in order. With ``search.warm_start: closest`` the study's
  finished trials are the candidate parents (:func:`parent_candidates`). Exceptions propagate, so the study
  marks the trial FAILED (never a penalty value).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.runpaths import record_path, resolve_path

__all__ = ["TrialContext", "TrialDivergedError", "TrialResult", "composite_score", "configured_reuse", "cost_metrics",
           "finish_trial", "json_options", "make_objective", "measure", "model_task_data", "parent_candidates", "price",
           "record", "task_options_for", "train_and_measure", "training_for"]

log = logging.getLogger(__name__)


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
    task_options: dict[str, Any] = field(default_factory=dict)
    """The options the task data of this trial was loaded with (:func:`task_options_for`)."""
    shape_key: str = ""
    """:func:`hwnas.search.inherit.shape_key` of the model (trials with equal keys can share weights)."""
    parent: int | None = None
    """The trial whose weights the training started from (``search.warm_start``), or None: from scratch."""
    training: dict[str, float] = field(default_factory=dict)
    """The point's searched training settings it trained with (``space.training``: ``lr``, ``l1``); empty if none."""
    folds: list[float] | None = None
    """With ``training.kfold``: each fold's task metric on its held-out part (``accuracy`` is their mean)."""

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
    data_cache_size: int = 4
    """How many task data sets of searched task options :meth:`data_for` keeps (least recently used dropped)."""
    train_device: torch.device | None = None
    """Where trials train and are evaluated (``training.device`` resolved by :meth:`create`; None: the CPU)."""
    _data_cache: OrderedDict[str, Any] = field(default_factory=OrderedDict, repr=False)
    _baseline_cache: tuple[Any, Any] | None = field(default=None, repr=False)

    @classmethod
    def create(cls, experiment: Any, *, output: Path | None = None, progress: bool = False,
               save_models: bool = True, setup_progress: bool = False, data: Any = None) -> TrialContext:
        """Load the task data, build the space, resolve the device, baseline and CPU table.

        ``data``: the task data loaded with ``task.options`` already (it is not loaded again).

        With ``hardware.cpu_profile`` set and no file at ``hardware.cpu_table`` yet, the table is profiled
        into it first (:func:`hwnas.cost.cpu_profile.ensure_table`; a bar with ``setup_progress``). A table
        that cannot be loaded or profiled raises :class:`hwnas.cost.cpu_profile.CpuTableError` naming
        ``hardware.cpu_table``.
        """
        from hwnas.space import make_space
        from hwnas.tasks import get_task
        from hwnas.train.device import resolve_device

        train_device = resolve_device(experiment.training.device, "training.device")  # before any work
        task = get_task(experiment.task.name)
        if data is None:
            data = task.load(seed=experiment.seed, **experiment.task.options)
        shape_of = None
        if experiment.space.task_options:
            def shape_of(chosen: Mapping[str, Any]) -> tuple[int, ...]:
                return task.input_shape(**{**experiment.task.options, **chosen})
        space = make_space(experiment.space, data.input_shape, data.n_classes, shape_of=shape_of)  # space.family's
        if experiment.training.kfold and task.loss == "ce":  # every class must reach every fold
            from hwnas.train.kfold import check_folds

            check_folds(torch.cat([data.train.y, data.val.y]), experiment.training.kfold, data.classes,
                        where="training.kfold")
        device = experiment.device()
        out = Path(output) if output is not None else experiment.output_dir()
        table = None
        if experiment.hardware.cpu_table:
            from hwnas.cost.cpu_latency import LatencyTable
            from hwnas.cost.cpu_profile import CpuTableError, ensure_table

            grid, path = experiment.hardware.cpu_profile, experiment.cpu_table_path()
            try:
                if grid == "never":
                    table = LatencyTable.load(path)
                else:
                    if not path.is_file():
                        log.info("profiling the CPU latency table (%s grid) into %s", grid, path)
                    table, _ = ensure_table(path, grid=grid, progress=setup_progress)
            except (ValueError, OSError) as err:
                raise CpuTableError(f"hardware.cpu_table: {err}") from err
            if experiment.hardware.cpu_precision == "deployed":
                from hwnas.cost.cpu_latency import INT8_KINDS

                missing = sorted(set(INT8_KINDS) - table.kinds() - {"qtranspose_in", "qtranspose_out"})
                if missing:
                    raise CpuTableError(f"hardware.cpu_table: {path} has no int8 operator timings ({missing[0]}, …), "
                                        "which hardware.cpu_precision: deployed prices with; profile it again "
                                        "(hwnas profile-cpu --force, or delete it with hardware.cpu_profile set)")
        try:
            baseline = task.baseline(data)
        except Exception:  # a task without a baseline model: no QA-Score
            baseline = None
        return cls(experiment, task, data, space, device, out, baseline, table, progress, save_models,
                   train_device=train_device)

    def baseline_metrics(self) -> Any:
        """:func:`hwnas.cost.metrics.model_metrics` of :attr:`baseline` (measured once; the QA-Score's base)."""
        if self.baseline is None:
            raise ValueError(f"task {self.task.name!r} has no baseline model")
        if self._baseline_cache is None or self._baseline_cache[0] is not self.baseline:
            from hwnas.cost.metrics import model_metrics

            self._baseline_cache = (self.baseline, model_metrics(self.baseline, tuple(self.data.input_shape)))
        return self._baseline_cache[1]

    def task_options(self, point: Any = None) -> dict[str, Any]:
        """The options ``point``'s task data is loaded with (:func:`task_options_for`)."""
        return task_options_for(self.experiment, point)

    def input_shape_of(self, point: Any = None) -> tuple[int, ...]:
        """Per-sample input shape of ``point``'s model (its task options decide it when they are searched)."""
        if not getattr(point, "task_options", ()):
            return tuple(self.data.input_shape)
        return tuple(self.space.input_shape_of(point))

    def data_for(self, point: Any = None) -> Any:
        """The task data of ``point``: :attr:`data`, or for searched task options the data loaded with them.

        The last :attr:`data_cache_size` option sets stay loaded. Raises ``ValueError`` when the loaded data's
        input shape or class count differs from what the space expects of the point.
        """
        if not getattr(point, "task_options", ()):
            return self.data
        options = self.task_options(point)
        key = json.dumps(json_options(options), sort_keys=True)
        cache = self._data_cache
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        data = self.task.load(seed=self.experiment.seed, **options)
        want = self.input_shape_of(point)
        if tuple(data.input_shape) != want or data.n_classes != self.space.n_classes:
            raise ValueError(f"task {self.task.name!r} with options {point.task_option_dict()} gave samples of shape "
                             f"{tuple(data.input_shape)} in {data.n_classes} classes; the space expects {want} in "
                             f"{self.space.n_classes} (its input_shape disagrees with its data, or the option "
                             "changes the classes)")
        cache[key] = data
        while len(cache) > max(1, self.data_cache_size):
            cache.popitem(last=False)
        return data


def training_for(point: Any = None) -> dict[str, float]:
    """The training settings ``point`` overrides (its searched ``space.training`` values; empty for None)."""
    return dict(point.training_dict()) if point is not None and hasattr(point, "training_dict") else {}


def task_options_for(experiment: Any, point: Any = None) -> dict[str, Any]:
    """The options a trial's task data is loaded with: ``task.options`` overridden by ``point``'s task options.

    ``point`` is a :class:`hwnas.space.Point` (or None: the experiment's own options).
    """
    options = dict(experiment.task.options)
    if point is not None:
        options.update(point.task_option_dict())
    return options


def _plain(value: Any) -> Any:
    """``value`` as JSON types: mappings, sequences, NumPy scalars, dataclasses as dicts, other objects as repr."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def json_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Task options as JSON types (dataclasses such as a ``ReadoutConfig`` as dicts; other objects as repr)."""
    return {str(k): _plain(v) for k, v in options.items()}


def model_task_data(experiment: Any, metadata: Mapping[str, Any] | None, cache: dict[str, Any] | None = None
                    ) -> tuple[Any, Any, dict[str, Any]]:
    """``(task, data, options)`` of a saved model: the task data loaded with the options in its metadata.

    A model saved by a trial carries ``metadata["task_options"]`` (the options its data was loaded with); a
    model without them (saved before task options could be searched, or by hand) gets the experiment's own
    ``task.options``. ``cache`` (a dict kept by the caller) shares loads between models with the same options.
    """
    from hwnas.tasks import get_task

    task = get_task(experiment.task.name)
    stored = (metadata or {}).get("task_options")
    options = dict(stored) if isinstance(stored, Mapping) else dict(experiment.task.options)
    key = json.dumps(json_options(options), sort_keys=True)
    if cache is not None and key in cache:
        return task, cache[key], options
    data = task.load(seed=experiment.seed, **options)
    if cache is not None:
        cache[key] = data
    return task, data, options


def _finite(name: str, value: float) -> float:
    if value is None or not math.isfinite(float(value)):
        raise TrialDivergedError(f"{name} is not finite ({value!r}): the training diverged")
    return float(value)


def configured_reuse(experiment: Any, model: nn.Module, input_shape: tuple[int, ...]) -> int | dict[str, int]:
    """The hls4ml reuse factor of a point without a searched mapping: ``space.mapping.reuse_factor``.

    With ``space.mapping.kind: hls4ml``, ``folding: auto`` and one reuse factor ``r`` above 1, every Dense/Conv
    layer takes the largest reuse factor hls4ml accepts for it that is not above ``r`` — what the export stage
    writes for ``run.hls4ml.reuse_factor`` (:func:`hwnas.pipeline_export.reuse_per_layer`, Latency strategy) —,
    so the search prices the design it asks for. Otherwise 1 (fully parallel).
    """
    from hwnas.space.spec import int_choices

    mapping = experiment.space.mapping
    choices = int_choices(mapping.reuse_factor)
    if mapping.kind != "hls4ml" or len(choices) != 1 or choices[0] <= 1:
        return 1
    from hwnas.pipeline_export import reuse_per_layer

    return reuse_per_layer(model, tuple(input_shape), int(choices[0]), "Latency")


def _hardware(model: nn.Module, ctx: TrialContext, point: Any) -> tuple[dict[str, float], dict[str, Any] | None]:
    from hwnas.cost import estimate, fold_for_throughput
    from hwnas.nn import fold_batchnorm

    exp = ctx.experiment
    kind = exp.hardware.model
    if kind == "none":
        return {}, None
    shape = ctx.input_shape_of(point)
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
    elif kind in ("alkaid", "surrogate"):  # the RTL design, traced or predicted
        cutoff = exp.run.rtl.latency_cutoff_ns
        est = estimate(folded, ctx.device, input_shape=shape, kind=kind, clock_mhz=clock,
                       latency_cutoff_ns=cutoff if cutoff > 0 else None)
    else:
        rf = ctx.space.reuse_factors(point) if mapping else configured_reuse(exp, folded, shape)
        est = estimate(folded, ctx.device, input_shape=shape, kind="hls4ml", reuse_factor=rf or 1, clock_mhz=clock)
    t = est.totals
    metrics = {r: float(t[r]) for r in ("luts", "ffs", "bram18", "uram", "dsps")}
    metrics["avg_resource"] = float(est.avg_resource)
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


def cost_metrics(model: nn.Module, ctx: TrialContext, point: Any = None, *, hardware: bool = True
                 ) -> tuple[dict[str, float], dict[str, Any] | None]:
    """The metrics of ``model`` that need no data, and the hardware estimate's summary.

    ``hardware=False`` leaves the hardware estimate out (summary None), e.g. for a model the hardware model
    cannot price.

    MACs, BOPs, EBOPs, weight bits, memory, sparsity, parameters, QA-Score, the hardware estimate and the
    CPU latency. The predictor-guided strategies price untrained candidates with it; for fixed precision the figures
    equal the trained model's (bit-widths do not change in training).
    """
    from hwnas.cost.metrics import model_metrics, qa_score_of

    shape = ctx.input_shape_of(point)
    m = model_metrics(model, shape)
    n_params = sum(p.numel() for n, p in model.named_parameters() if not n.endswith((".f", ".i", ".k")))
    metrics: dict[str, float] = {
        "macs": float(m.macs), "bops": float(m.bops), "ebops": float(m.ebops), "wbits": float(m.weight_bits),
        "memory_kb": float(m.memory_bytes) / 1024.0, "sparsity": float(m.sparsity), "params": float(n_params)}
    if ctx.baseline is not None:
        metrics["qa_score"] = float(qa_score_of(m, ctx.baseline_metrics()))
    hw, summary = _hardware(model, ctx, point) if hardware else ({}, None)
    metrics.update(hw)
    if ctx.cpu_table is not None:
        from hwnas.cost.cpu_latency import predict_latency

        metrics["cpu_latency_ms"] = float(predict_latency(model, shape, ctx.cpu_table,
                                                          precision=ctx.experiment.hardware.cpu_precision).total_ms)
    return metrics, summary


def measure(model: nn.Module, ctx: TrialContext, point: Any = None, folds: Sequence[float] | None = None, *,
            hardware: bool = True) -> tuple[dict[str, float], dict[str, Any] | None]:
    """Every metric of a trained ``model`` (names from :data:`hwnas.config.METRICS`) and the estimate summary.

    ``folds`` (k-fold): the folds' task metrics; ``accuracy`` is then their mean and ``accuracy_std`` their
    (population) standard deviation instead of the model's metric on the validation split.

    The task metrics are measured on the model's device; the model is then moved to the CPU (in place: it stays
    there), where it is priced.
    """
    import statistics

    data, task = ctx.data_for(point), ctx.task
    model.eval()
    test = task.evaluate(model, data.test, classes=data.classes)
    if folds:
        metrics: dict[str, float] = {"accuracy": _finite("accuracy", statistics.fmean(folds)),
                                     "accuracy_std": float(statistics.pstdev(folds))}
    else:
        val = task.evaluate(model, data.val, classes=data.classes)
        metrics = {"accuracy": _finite("accuracy", val[task.metric])}
    metrics["test_accuracy"] = float(test[task.metric])
    model.cpu()  # everything that leaves the trial (costs, the saved model, exports) sees CPU tensors
    costs, summary = cost_metrics(model, ctx, point, hardware=hardware)
    metrics.update(costs)
    return metrics, summary


def price(point: Any, ctx: TrialContext, seed: int = 0) -> dict[str, float]:
    """:func:`cost_metrics` of ``point``'s freshly built (untrained) model."""
    model = ctx.space.build(point, seed=seed).eval()
    return cost_metrics(model, ctx, point)[0]


def train_and_measure(point: Any, ctx: TrialContext, number: int, *, checkpoint_dir: Path | None = None,
                      parents: Sequence[Any] | None = None, vector: Sequence[int] | None = None) -> TrialResult:
    """Build, train and measure ``point`` as trial ``number`` (seed ``experiment.seed + number``).

    ``parents``: finished trials to warm-start from (module docstring); ``vector``: the point's search vector
    (default: the space's encoding), the distance to a parent is measured on it.
    """
    from hwnas.train import Trainer

    from .inherit import choose_parent, inherit, shape_key

    t0 = time.perf_counter()
    exp = ctx.experiment
    seed = exp.trial_seed(int(number))
    torch.manual_seed(seed)
    model = ctx.space.build(point, seed=seed)
    data = ctx.data_for(point)
    key = shape_key(model)
    parent = None
    if parents:
        vec = list(vector) if vector is not None else list(ctx.space.encode(point))
        parent = choose_parent(parents, key, vec)
        if parent is not None and not exp.training.kfold:  # k-fold: every fold's model inherits (_train_folds)
            inherit(model, parent.checkpoint, data.train.x[:WARM_START_CALIBRATION])
    config = exp.train_config(seed, progress=ctx.progress, overrides=training_for(point))
    if ctx.train_device is not None:
        config = dataclasses.replace(config, device=str(ctx.train_device))
    folds = None
    if exp.training.kfold:
        model, folds = _train_folds(point, ctx, data, config, parent)
    else:
        trainer = Trainer(model, config)
        history = trainer.fit(data.train.pair, data.val.pair)
        if history.records:
            _finite("training loss", history.records[-1].train_loss)
    return finish_trial(model, point, ctx, number, t0, checkpoint_dir=checkpoint_dir, folds=folds,
                        parent=None if parent is None else parent.number, shape=key)


def finish_trial(model: nn.Module, point: Any, ctx: TrialContext, number: int, t0: float, *,
                 checkpoint_dir: Path | None = None, folds: Sequence[float] | None = None, parent: int | None = None,
                 shape: str | None = None, metadata: Mapping[str, Any] | None = None) -> TrialResult:
    """Measure a trained ``model`` of ``point`` as trial ``number``, save it and return its :class:`TrialResult`.

    The second half of :func:`train_and_measure`, for strategies whose models come from elsewhere (a supernet):
    ``t0`` is when the trial started (``time.perf_counter``); ``metadata`` adds keys to the saved model's.
    """
    from hwnas.export import save_model

    from .inherit import shape_key

    exp = ctx.experiment
    data = ctx.data_for(point)
    options = json_options(ctx.task_options(point))
    training = training_for(point)
    metrics, summary = measure(model, ctx, point, folds=folds)
    constraints = [float(c) for c in exp.constraint_values(metrics, ctx.device)]
    checkpoint = None
    if ctx.save_models:
        folder = checkpoint_dir if checkpoint_dir is not None else ctx.output / "trials" / f"{number:05d}"
        path = save_model(model, folder / "model.pt", data.input_shape, test_inputs=data.test.x[:256],
                          metadata={"experiment": exp.name, "trial": number, "point": point.to_dict(),
                                    "metrics": metrics, "task_options": options, "training": training,
                                    "folds": None if folds is None else list(folds), "warm_start": parent,
                                    **({"target": ctx.device.name, "part": ctx.device.part}
                                       if getattr(ctx.device, "part", None) else {}),
                                    **dict(metadata or {})})
        checkpoint = record_path(path, ctx.output)
    return TrialResult(point, metrics, constraints, summary, checkpoint, time.perf_counter() - t0, options,
                       shape if shape is not None else shape_key(model), parent, training,
                       None if folds is None else list(folds))


def _train_folds(point: Any, ctx: TrialContext, data: Any, config: Any, parent: Any) -> tuple[nn.Module, list[float]]:
    """``training.kfold``: the best fold's model and the folds' task metrics (module docstring).

    ``point`` trains on each stratified fold of the train and validation splits together.
    """
    from hwnas.tasks import Split
    from hwnas.train.kfold import check_folds, kfold

    from .inherit import inherit

    exp, task = ctx.experiment, ctx.task
    k = int(exp.training.kfold)
    x, y = torch.cat([data.train.x, data.val.x]), torch.cat([data.train.y, data.val.y])
    if config.loss == "ce":
        check_folds(y, k, data.classes, where="training.kfold")

    def build() -> nn.Module:  # fold j: weights from the global seed kfold sets (trial seed + j)
        model = ctx.space.build(point)
        if parent is not None:
            inherit(model, parent.checkpoint, data.train.x[:WARM_START_CALIBRATION])
        return model

    def score(model: nn.Module, xv: torch.Tensor, yv: torch.Tensor) -> float:
        return _finite("fold accuracy", task.evaluate(model, Split(xv, yv), classes=data.classes)[task.metric])

    result = kfold(build, x, y, config, folds=k, score=score, keep_models=True)
    for history in result.histories:
        if history.records:
            _finite("training loss", history.records[-1].train_loss)
    return result.models[result.best], [float(m) for m in result.fold_metrics]


WARM_START_CALIBRATION = 2048
"""Training inputs a warm-started model's ranges are calibrated on before it trains."""


def parent_candidates(study: Any, objectives: Sequence[Any], exclude: int | None = None,
                      output_dir: Path | None = None) -> list[Any]:
    """The finished trials of ``study`` a warm start may start from (:class:`hwnas.search.inherit.ParentCandidate`).

    Complete trials that recorded a shape key, a vector and a checkpoint file that still exists; ranked by
    the first objective measured by training (``accuracy``, …; else the first objective) in its direction.
    Recorded checkpoint paths are resolved against ``output_dir`` (:func:`hwnas.runpaths.resolve_path`).
    """
    import optuna

    from .guided import TRAINED_METRICS
    from .inherit import ParentCandidate

    objectives = list(objectives)
    rank = next((o for o in objectives if o.metric in TRAINED_METRICS), objectives[0] if objectives else None)
    out = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        attrs = t.user_attrs
        key, vec, ckpt = attrs.get("shape_key"), attrs.get("vector"), attrs.get("checkpoint")
        if t.number == exclude or not key or vec is None or not ckpt:
            continue
        ckpt = resolve_path(ckpt, output_dir) if output_dir is not None else Path(ckpt)
        if not ckpt.is_file():
            continue
        value = float((attrs.get("metrics") or {}).get(rank.metric, 0.0)) if rank is not None else 0.0
        score = value if rank is None or rank.direction == "maximize" else -value
        out.append(ParentCandidate(t.number, tuple(int(v) for v in vec), str(key), str(ckpt),
                                   score if math.isfinite(score) else -math.inf))
    return out


def record(trial: Any, result: TrialResult, vector: list[int] | None = None) -> None:
    """Store a :class:`TrialResult` in a trial's user attributes (the contract's record)."""
    trial.set_user_attr("metrics", _plain(result.metrics))
    trial.set_user_attr("constraints", list(result.constraints))
    if hasattr(trial, "set_constraint"):  # Optuna's own record (keys c0, c1, …): NSGA-II/TPE read it
        for i, value in enumerate(result.constraints):
            trial.set_constraint(f"c{i}", float(value))
    trial.set_user_attr("point", _plain(result.point.to_dict()))
    if vector is not None:
        trial.set_user_attr("vector", [int(v) for v in vector])
    trial.set_user_attr("checkpoint", result.checkpoint)
    trial.set_user_attr("task_options", json_options(result.task_options))
    trial.set_user_attr("training", {k: float(v) for k, v in result.training.items()})
    if result.folds is not None:
        trial.set_user_attr("folds", [float(v) for v in result.folds])
    trial.set_user_attr("estimate", _plain(result.estimate))
    trial.set_user_attr("seconds", float(result.seconds))
    trial.set_user_attr("shape_key", result.shape_key)
    trial.set_user_attr("warm_start", result.parent)


def make_objective(ctx: TrialContext, *, vector: bool = False) -> Callable[[Any], tuple[float, ...]]:
    """The Optuna objective of ``ctx``'s experiment (module docstring)."""
    objectives = list(ctx.experiment.objectives)
    bounds = ctx.space.bounds() if vector else None
    warm = ctx.experiment.search.warm_start == "closest" and ctx.save_models

    def objective(trial: Any) -> tuple[float, ...]:
        if bounds is not None:
            vec = [trial.suggest_int(f"x{j}", lo, hi) for j, (lo, hi) in enumerate(bounds)]
            point = ctx.space.decode(vec)
        else:
            point = ctx.space.suggest(trial)
            vec = ctx.space.encode(point)
        parents = parent_candidates(trial.study, objectives, trial.number, ctx.output) if warm else None
        result = train_and_measure(point, ctx, trial.number, parents=parents, vector=vec)
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
