"""The ``local`` stage of ``hwnas run``: refine every selected model by ``run.local.method``.

Contract:

* ``precision_pairs``: fixed-point QAT per ``run.local.precisions`` pair + iterative magnitude pruning with
  rewinding (:func:`hwnas.train.local_search.local_search`); candidates are ranked by effective BOPs.
* ``beta_sweep``: one HGQ training of the selected model with β growing exponentially from ``beta0`` to
  ``beta1`` over ``sweep_epochs`` (:func:`hwnas.train.sweep.beta_sweep`); the calibrated (metric, EBOPs) front
  checkpoints are the candidates, ranked by EBOPs. A model with no learnable quantizer (a fixed-precision
  search: static layer-wise bits) is first converted by :func:`hwnas.nn.to_learnable` into learnable
  per-parameter HGQ quantizers starting exactly at its searched bits (same outputs before training); the sweep
  trains that copy, the checkpoints are loaded into copies of it, and ``kept`` says "HGQ β-sweep from the
  searched layer-wise bits". γ (the bit-width L1 weight): ``space.precision.gamma`` in both modes (the field
  exists, with its default 1e-6, for fixed precision too; ``experiment.train_config`` only applies it in mode
  learned, so it is set here for the converted model).
* ``ptq``: post-training quantization of the selected model per ``ptq_schemes``
  (:func:`hwnas.train.ptq.post_training_quantize`), calibrated on the training split; candidates are ranked by
  stored model bits; the per-layer sensitivity table (:func:`hwnas.train.ptq.layer_sensitivity`) and the size
  table of the kept model are recorded.
* Every candidate is trained and scored on the selected trial's own task data: the task loaded with the
  options its model file records (``task_options``: with ``space.task_options`` its searched readout window
  and so on), else with ``task.options``. Its trainings use the selected trial's own searched training
  settings (``space.training``: the ``training`` its model file records, e.g. its learning rate and L1 strength)
  in place of the experiment's ``training`` values.
* Every candidate is scored with the task's metric on the validation split. The kept model is the cheapest
  whose metric is at most ``max_drop`` below the searched model's; when none is, the most accurate one. The
  searched model's figure is its metric on the validation split, or with ``training.kfold`` the trial's k-fold
  ``accuracy`` (the mean over the held-out folds): the model a k-fold trial keeps trained on part of the
  validation split, so its metric there is optimistic (``searched_reference`` in the record says which;
  ``searched_val_metric`` is the validation-split figure either way).
  It is written to ``local/trial_<n>/model.pt`` (with the searched model's test inputs); the record, with a
  Markdown table of every candidate, to ``local/trial_<n>.json``. Later stages use that model. The record also
  prices the kept model as a trial is priced (``metrics``: its validation and test metric, MACs, BOPs, W_bits,
  QA-Score and the hardware estimate's figures at the trial's own input shape; ``estimate``: the per-layer rows;
  or ``unpriced`` with the reason), so the report's tables show it beside the searched model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwnas.runpaths import record_path, resolve_path

__all__ = ["Candidate", "local_dir", "local_search_selected"]


@dataclass
class Candidate:
    """One refined model the local search may keep."""

    model: nn.Module
    metric: float
    cost: float
    """What the method ranks by (effective BOPs, EBOPs or stored bits): lower is cheaper."""
    kept: str
    """How the model was made, in words (shown in the log and the report)."""
    extra: dict[str, Any] = field(default_factory=dict)


def local_dir(experiment: Any, number: int) -> Path:
    """``<output>/local/trial_<n>/``: the local search's files of selected trial ``number``."""
    return experiment.output_dir() / "local" / f"trial_{int(number):05d}"


def _precision_pairs(experiment: Any, model: nn.Module, data: Any, task: Any, work: Path, seed: int,
                     training: dict[str, float] | None = None) -> tuple[list[Candidate], str, str]:
    from hwnas.train.local_search import effective_bops, local_search, to_fixed_point

    cfg = experiment.run.local
    train_cfg = experiment.train_config(seed, progress=False, overrides=training)
    found = local_search(model, data.train.pair, data.val.pair, [tuple(p) for p in cfg.precisions],
                         config=train_cfg, warmup_epochs=cfg.warmup_epochs, iterations=cfg.iterations,
                         prune_rate=cfg.prune_rate, epochs_per_iteration=cfg.epochs_per_iteration)
    out = []
    for r in found.results:
        q = to_fixed_point(model, r.total_bits, r.int_bits)
        q.load_state_dict(r.best_state)
        q.eval()
        metric = task.evaluate(q, data.val, classes=data.classes)[task.metric]
        out.append(Candidate(q, float(metric), float(effective_bops(q)), f"ap_fixed<{r.total_bits},{r.int_bits}> "
                             f"(pruning iteration {r.best_iteration})",
                             {"precision": [r.total_bits, r.int_bits], "best_iteration": r.best_iteration}))
    return out, found.table(), "effective BOPs"


def _beta_sweep(experiment: Any, model: nn.Module, data: Any, task: Any, work: Path, seed: int,
                training: dict[str, float] | None = None) -> tuple[list[Candidate], str, str]:
    from hwnas.nn import ebops, to_learnable
    from hwnas.quant import Quantizer
    from hwnas.train.sweep import beta_sweep
    from hwnas.train.trainer import load_saved

    cfg = experiment.run.local
    train_cfg = replace(experiment.train_config(seed, progress=False, overrides=training), epochs=cfg.sweep_epochs)
    from_fixed = not any(isinstance(m, Quantizer) and m.learnable for m in model.modules())
    if from_fixed:  # a fixed-precision search: HGQ starts from the searched layer-wise bits (module docstring)
        model = to_learnable(model)
        train_cfg = replace(train_cfg, gamma=experiment.space.precision.gamma)
    start = copy.deepcopy(model)
    result = beta_sweep(start, data.train.pair, data.val.pair, work / "sweep", config=train_cfg,
                        beta0=cfg.beta0, beta1=cfg.beta1)
    how = "HGQ β-sweep from the searched layer-wise bits," if from_fixed else "HGQ β-sweep"
    out = []
    for c in result.checkpoints:
        q = copy.deepcopy(model)
        q.load_state_dict(load_saved(c.path))
        q.eval()
        metric = task.evaluate(q, data.val, classes=data.classes)[task.metric]
        with torch.no_grad():
            cost = float(ebops(q))
        out.append(Candidate(q, float(metric), cost, f"{how} epoch {c.epoch} (β = {c.beta:.3g})",
                             {"epoch": c.epoch, "beta": c.beta, "ebops": cost, "from_fixed_precision": from_fixed}))
    return out, result.table(), "EBOPs"


def _ptq(experiment: Any, model: nn.Module, data: Any, task: Any, work: Path, seed: int,
         training: dict[str, float] | None = None) -> tuple[list[Candidate], str, str]:
    from hwnas.train.ptq import layer_sensitivity, post_training_quantize

    cfg = experiment.run.local

    def metric(m: nn.Module) -> float:
        return float(task.evaluate(m, data.val, classes=data.classes)[task.metric])

    torch.manual_seed(seed)
    out = []
    lines = ["| scheme | val metric | drop | weights smaller | model smaller | stored KiB |",
             "|---|---:|---:|---:|---:|---:|"]
    for scheme in cfg.ptq_schemes:
        bits: int | str = "fp16" if scheme == "fp16" else int(scheme.split("-")[0][3:])
        granularity = "tensor" if scheme == "fp16" else scheme.split("-")[1]
        r = post_training_quantize(model, metric, data.train.x, weight_bits=bits, granularity=granularity,
                                   activation_bits=cfg.ptq_activation_bits, output_bits=cfg.ptq_activation_bits)
        stored = sum(row.bits for row in r.sizes)
        lines.append(f"| {r.description} | {r.quant_metric:.4f} | {r.drop:+.4f} | {r.weight_compression:.2f}x | "
                     f"{r.model_compression:.2f}x | {stored / 8192:.2f} |")
        out.append(Candidate(r.model, r.quant_metric, float(stored), f"PTQ {r.description}",
                             {"scheme": scheme, "stored_bits": stored, "size_table": r.table()}))
    sens = layer_sensitivity(model, metric, bits=cfg.sensitivity_bits)
    lines += ["", f"sensitivity: only one layer's weights at int{cfg.sensitivity_bits} per-tensor "
              f"(searched model {metric(model):.4f})", "", "| layer | val metric |", "|---|---:|"]
    lines += [f"| {s['layer']} | {s['metric']:.4f} |" for s in sens]
    return out, "\n".join(lines), "stored bits"


_METHODS: dict[str, Callable[..., tuple[list[Candidate], str, str]]] = {
    "precision_pairs": _precision_pairs, "beta_sweep": _beta_sweep, "ptq": _ptq}


def local_search_selected(experiment: Any, selection: list[dict[str, Any]],
                          log: Callable[[str], None] = print) -> dict[int, dict[str, Any]] | str:
    """``run.local`` on every selected model; the results, or why the stage did nothing (module docstring)."""
    from hwnas.cost import model_metrics
    from hwnas.export import load_model, save_model
    from hwnas.nn import ebops
    from hwnas.pipeline import ModelProgress
    from hwnas.search.objective import model_task_data
    from hwnas.search.run import write_json
    from hwnas.train.device import resolve_device
    from hwnas.train.local_search import effective_bops

    cfg = experiment.run.local
    if not cfg.enabled:
        return "run.local.enabled is false"
    device = resolve_device(experiment.training.device, "training.device")  # the candidates train there
    results = {}
    loaded: dict[str, Any] = {}
    contexts: dict[str, Any] = {"loaded": loaded}
    step = ModelProgress("local search", len(selection), log)  # local search trial 12 (1 of 2, ...): method
    for entry in selection:
        n = int(entry["number"])
        step(f"trial {n}", cfg.method)
        bundle = load_model(resolve_path(entry["checkpoint"], experiment.output_dir()))
        task, data, _ = model_task_data(experiment, bundle.metadata, loaded)  # the trial's own options
        if tuple(data.input_shape) != tuple(bundle.input_shape):
            raise ValueError(f"local: trial {n}'s model takes inputs of shape {tuple(bundle.input_shape)}, its task "
                             f"data has {tuple(data.input_shape)}")
        val_metric = float(task.evaluate(bundle.model, data.val, classes=data.classes)[task.metric])
        base, reference = val_metric, "validation split"
        kfold_mean = (entry.get("metrics") or {}).get("accuracy")
        if experiment.training.kfold and kfold_mean is not None:
            # the kept fold's model trained on part of the validation split: its figure there is optimistic
            base, reference = float(kfold_mean), f"{experiment.training.kfold}-fold held-out mean"
        work = local_dir(experiment, n)
        stored = (bundle.metadata or {}).get("training")  # the trial's searched training settings (space.training)
        training = {str(k): float(v) for k, v in stored.items()} if isinstance(stored, dict) else None
        candidates, table, ranked_by = _METHODS[cfg.method](experiment, bundle.model.to(device), data, task, work,
                                                            experiment.trial_seed(n), training=training)
        for c in candidates:  # trained and scored on the device; saved, priced and exported from the CPU
            c.model.cpu()
        within = [c for c in candidates if c.metric >= base - cfg.max_drop]
        best = min(within, key=lambda c: c.cost) if within else max(candidates, key=lambda c: c.metric)
        with torch.no_grad():
            best.model(bundle.test_inputs[:1] if bundle.test_inputs is not None
                       else torch.zeros(1, *bundle.input_shape))
        path = save_model(best.model, work / "model.pt", bundle.input_shape, test_inputs=bundle.test_inputs,
                          metadata={**bundle.metadata, "local_search": best.kept})
        m = model_metrics(best.model, bundle.input_shape)
        with torch.no_grad():
            eb = float(ebops(best.model))
        extra = {k: v for k, v in best.extra.items() if k != "size_table"}
        record = {"trial": n, "method": cfg.method, "kept": best.kept, "searched_metric": base,
                  "searched_reference": reference, "searched_val_metric": val_metric,
                  "metric": best.metric, "within_max_drop": bool(within), "ranked_by": ranked_by,
                  "cost": best.cost, "candidates": len(candidates), "bops": float(m.bops),
                  "effective_bops": float(effective_bops(best.model)), "ebops": eb,
                  "sparsity": float(m.sparsity), "checkpoint": record_path(path, experiment.output_dir()),
                  "table": table + ("\n\n" + best.extra["size_table"] if "size_table" in best.extra else ""),
                  **extra}
        record.update(_price(experiment, best.model, bundle.metadata, task, data, best.metric, contexts))
        write_json(experiment.output_dir() / "local" / f"trial_{n:05d}.json", record)
        results[n] = record
    return results


def _price(experiment: Any, model: nn.Module, metadata: dict[str, Any] | None, task: Any, data: Any, metric: float,
           contexts: dict[str, Any]) -> dict[str, Any]:
    """The kept model priced like a trial (module docstring), in one trial context per stage.

    The context (``contexts["ctx"]``) is built on the task data in the stage's cache (``contexts["loaded"]``).
    ``metrics``: its validation and test metric, MACs/BOPs/W_bits/QA-Score and the hardware estimate's figures;
    ``estimate``: the per-layer rows; or ``unpriced`` saying why the hardware model could not price it.
    """
    from hwnas.cost import CostError
    from hwnas.search.objective import TrialContext, cost_metrics, model_task_data
    from hwnas.space import Point

    if "ctx" not in contexts:  # the experiment's own task data: from the stage's cache when a model used it
        _, own, _ = model_task_data(experiment, None, contexts["loaded"])
        contexts["ctx"] = TrialContext.create(experiment, progress=False, save_models=False, data=own)
    ctx = contexts["ctx"]
    stored = (metadata or {}).get("point")
    point = Point.from_dict(stored) if isinstance(stored, dict) else None  # its task options decide the input
    metrics = {"accuracy": float(metric),
               "test_accuracy": float(task.evaluate(model, data.test, classes=data.classes)[task.metric])}
    try:
        costs, summary = cost_metrics(model, ctx, point)
    except (CostError, ValueError) as err:
        return {"metrics": metrics, "estimate": None, "unpriced": f"not priced by hardware.model "
                f"{experiment.hardware.model}: {err}"}
    return {"metrics": {**metrics, **costs}, "estimate": summary}
