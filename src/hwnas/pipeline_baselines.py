"""The ``baselines`` stage of ``hwnas run``: the reference models of ``run.baselines``, trained and priced like trials.

Contract: every name in ``run.baselines`` (:data:`hwnas.tasks.baselines.NAMED`) is built for the task's input
shape and class count, trained with the experiment's ``training`` section on the trials' own splits (seed
``experiment.seed``), measured with the trials' :func:`hwnas.search.objective.measure` (validation and test
accuracy, MACs/BOPs/W_bits/QA-Score, the hardware estimate with its per-layer rows; a model the hardware model
cannot price, e.g. a float one on FINN, keeps the rest and says why in ``unpriced``), evaluated per SNR where
the task reports it, and verified along ``run.verify`` on the first ``run.verify_samples`` test samples (top-1
accuracy of torch and of every path on those samples; a float model, which has no fixed-point graph, is not
verified and ``verification`` says so), and with ``run.synth`` (as the ``synth`` stage decides it) its RTL
synthesized with Yosys for the target unless it exceeds ``run.synth_max_macs`` (``synthesis``: the totals, or
why not). Written:
``baselines/<name>/model.pt`` (a model file like a trial's), ``baselines/<name>/export/`` (the verified
artefacts), ``baselines/<name>/synth/`` and ``baselines/<name>.json`` last, so a killed stage resumes baseline by
baseline: a record whose training settings (``settings``: seed, task, training) and measuring settings
(``measured``: hardware, verification) match is kept (and synthesized then if ``run.synth`` now runs and it was
not); with only the measuring settings changed, the trained model is measured and verified again, not
retrained. A verification mismatch fails the stage like ``verify`` does. Report layout: docs/run.md (*Baselines*).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hwnas.errors import EXIT_FAILED, HwnasError
from hwnas.runpaths import read_record, record_path

__all__ = ["BaselineStageError", "baseline_dir", "baseline_record", "train_baselines"]


class BaselineStageError(HwnasError, RuntimeError):
    """A baseline cannot be built for the task, or its exported artefact disagrees with torch."""


def baseline_dir(experiment: Any, name: str) -> Path:
    """``<output>/baselines/<name>``: the baseline's model file and verified artefacts."""
    return experiment.output_dir() / "baselines" / name


def baseline_record(experiment: Any, name: str) -> Path:
    """``<output>/baselines/<name>.json``: what the stage measured (docs/run.md, *Baselines*)."""
    return experiment.output_dir() / "baselines" / f"{name}.json"


def _settings(experiment: Any, name: str) -> str:
    """Hash of what a baseline's training depends on: its name, the seed, the task and the training section."""
    from hwnas.config import payload_digest

    dump = experiment.model_dump()
    return payload_digest({"name": name, "seed": dump["seed"], "task": dump["task"], "training": dump["training"]})


def _measured(experiment: Any) -> str:
    """Hash of what a trained baseline's figures depend on: the hardware section and the verification settings."""
    from hwnas.config import payload_digest

    dump = experiment.model_dump()
    return payload_digest({"hardware": dump["hardware"], "verify": dump["run"]["verify"],
                           "verify_samples": dump["run"]["verify_samples"], "hls4ml": dump["run"]["hls4ml"],
                           "rtl": _rtl_hashed(dump["run"]["rtl"])})


def _rtl_hashed(rtl: dict[str, Any]) -> dict[str, Any]:
    """``run.rtl`` as the measuring hash holds it: ``optimize: full`` (the default) left out, as records before it."""
    return {k: v for k, v in rtl.items() if not (k == "optimize" and v == "full")}


def train_baselines(experiment: Any, *, progress: bool = False,
                    log: Callable[[str], None] = print) -> dict[str, dict[str, Any]] | str:
    """Train, measure and verify every ``run.baselines`` model; their records, or why the stage did nothing."""
    names = list(experiment.run.baselines)
    if not names:
        return "run.baselines is empty"
    from hwnas.runpaths import resolve_path

    results: dict[str, dict[str, Any]] = {}
    todo: dict[str, dict[str, Any] | None] = {}  # name → the record whose trained model is re-measured, or None
    for name in names:
        old = read_record(baseline_record(experiment, name))
        trained = (isinstance(old, dict) and old.get("settings") == _settings(experiment, name)
                   and resolve_path(old.get("model", ""), experiment.output_dir()).is_file())
        if trained and old.get("measured") == _measured(experiment):
            log(f"[baselines] {name}: trained and measured earlier; kept")
            results[name] = _synthesis_now(experiment, name, old, log)
        else:
            todo[name] = old if trained else None
    if not todo:
        return results
    from hwnas.pipeline import ModelProgress
    from hwnas.search.objective import TrialContext

    ctx = TrialContext.create(experiment, progress=False, save_models=False)
    step = ModelProgress("[baselines]", len(todo), log)  # [baselines] vgg10-32f-8b (1 of 2, 0.0 s elapsed)
    for name, old in todo.items():
        step(name)
        results[name] = _one(experiment, ctx, name, progress, log, old)
    return {n: results[n] for n in names}


def _synthesis(experiment: Any, name: str, model: Any, shape: tuple[int, ...],
               log: Callable[[str], None]) -> dict[str, Any] | str:
    """Yosys totals of ``model`` (:func:`hwnas.pipeline.synthesize_model`), or why it is not synthesized."""
    from hwnas.pipeline import synth_too_large, synth_unavailable, synthesize_model

    why_not = synth_unavailable(experiment) or synth_too_large(experiment, model, shape)
    if why_not is not None:
        return why_not
    log(f"[baselines] {name}: RTL + Yosys for {experiment.device().name}")
    return synthesize_model(experiment, model, shape, baseline_dir(experiment, name) / "synth")


def _synthesis_now(experiment: Any, name: str, record: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """A kept record, synthesized now when ``run.synth`` runs and it was not synthesized before (no retraining)."""
    from hwnas.export import load_model
    from hwnas.pipeline import synth_unavailable
    from hwnas.runpaths import resolve_path
    from hwnas.search.run import write_json

    if isinstance(record.get("synthesis"), dict) or isinstance(record.get("verification"), str):
        return record  # synthesized already, or a float model (never synthesized)
    if synth_unavailable(experiment) is not None:
        return record
    bundle = load_model(resolve_path(record["model"], experiment.output_dir()))
    synthesis = _synthesis(experiment, name, bundle.model, tuple(bundle.input_shape), log)
    if synthesis != record.get("synthesis"):
        record = {**record, "synthesis": synthesis}
        write_json(baseline_record(experiment, name), record)
    return record


def _one(experiment: Any, ctx: Any, name: str, progress: bool, log: Callable[[str], None],
         trained: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``name``, then measure, verify and synthesize it and write its record.

    ``trained``: a record with the same training settings whose model is measured again instead of training.
    """
    import torch

    from hwnas.cost import CostError
    from hwnas.export import ExportError, load_model, save_model
    from hwnas.export.graph import extract
    from hwnas.export.verify import verify_model
    from hwnas.pipeline_export import path_options
    from hwnas.runpaths import resolve_path
    from hwnas.search.objective import TrialDivergedError, measure
    from hwnas.search.run import write_json
    from hwnas.tasks.baselines import NAMED, build_named
    from hwnas.train import Trainer

    t0 = time.perf_counter()
    data, task, out = ctx.data, ctx.task, experiment.output_dir()
    shape = tuple(data.input_shape)
    seed = int(experiment.seed)
    if trained is not None:  # the hardware or verification settings changed: re-measure, do not retrain
        log(f"[baselines] {name}: trained earlier; measuring again (hardware or verification settings changed)")
        model = load_model(resolve_path(trained["model"], out)).model
        epochs, train_seconds = int(trained.get("epochs") or 0), float(trained.get("train_seconds") or 0.0)
    else:
        torch.manual_seed(seed)
        try:
            model = build_named(name, shape, data.n_classes)
        except ValueError as err:
            raise BaselineStageError(f"run.baselines: {name!r} does not fit task {experiment.task.name!r}: "
                                     f"{err}") from err
        log(f"[baselines] {name}: training {experiment.training.epochs} epoch(s) on {len(data.train.y)} samples")
        history = Trainer(model, experiment.train_config(seed, progress=progress)).fit(data.train.pair,
                                                                                       data.val.pair)
        epochs, train_seconds = len(history.records), round(time.perf_counter() - t0, 1)
    unpriced = None
    try:
        metrics, estimate = measure(model, ctx)
    except TrialDivergedError as err:
        raise BaselineStageError(f"run.baselines: {name!r}: {err}") from err
    except CostError as err:  # e.g. a float model on a fixed-point dataflow target: accuracy and model figures only
        unpriced = f"not priced by hardware.model {experiment.hardware.model}: {err}"
        log(f"[baselines] {name}: {unpriced}")
        metrics, estimate = measure(model, ctx, hardware=False)
    model.eval()
    per_snr = task.evaluate(model, data.test, classes=data.classes).get("accuracy_per_snr") or {}
    folder = baseline_dir(experiment, name)
    n = min(int(experiment.run.verify_samples), len(data.test.y))
    x, y = data.test.x[:n], data.test.y[:n]
    accuracy = None
    verification: list[dict[str, Any]] | str | None = None
    try:
        extract(model, shape)  # a float model has no fixed-point graph: nothing to verify bit for bit
    except ExportError as err:
        verification = f"not verified: {err}"
    if experiment.run.verify and verification is None:
        log(f"[baselines] {name}: verifying {', '.join(experiment.run.verify)} on {n} test samples")
        report = verify_model(model, x, input_shape=shape, paths=list(experiment.run.verify),
                              output_dir=folder / "export", samples=n, seed=seed,
                              options=path_options(experiment, model, shape))
        verification = [r.as_dict() for r in report.results]
        if report.failures:
            bad = ", ".join(f"{r.path}: {r.error or f'{r.mismatches} of {r.samples} mismatching'}"
                            for r in report.failures)
            mismatch = BaselineStageError(f"baselines: {name}: the exported artefact disagrees with torch ({bad}); "
                                          f"see {folder / 'export'}")
            mismatch.exit_code = EXIT_FAILED  # the work ran and failed its check
            raise mismatch
        if task.loss == "ce":
            accuracy = report.accuracy(y)
    synthesis = ("not synthesized: no fixed-point graph (a float model)" if isinstance(verification, str)
                 else _synthesis(experiment, name, model, shape, log))
    model_file = save_model(model, folder / "model.pt", shape, test_inputs=data.test.x[:256],
                            metadata={"experiment": experiment.name, "baseline": name, "metrics": metrics,
                                      "task_options": dict(experiment.task.options)})
    record = {"name": name, "description": NAMED[name].description, "settings": _settings(experiment, name),
              "measured": _measured(experiment), "model": record_path(model_file, out), "metrics": metrics,
              "estimate": estimate, "accuracy_per_snr": {str(int(k)): float(v) for k, v in per_snr.items()},
              "accuracy": accuracy, "verification": verification, "unpriced": unpriced, "synthesis": synthesis,
              "epochs": epochs, "train_seconds": train_seconds, "seconds": round(time.perf_counter() - t0, 1)}
    write_json(baseline_record(experiment, name), record)
    return record
