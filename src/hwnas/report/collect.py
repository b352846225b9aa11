"""What a report shows, gathered from a run's output folder: trials, selection, models, verification.

Contract: :func:`collect` reads only files the earlier stages wrote (the study through the experiment's
storage, ``selection.json``, the selected trials' model files — the local search's when it ran —,
``local/trial_<n>.json``, ``verify/<trial>.json``,
``synth/<trial>.json``, ``baselines/<name>.json`` of every ``run.baselines`` name) and evaluates the
selected models once more on the task's test split for the per-SNR accuracy (AMC tasks), each on its own
task data (the options its model file records: with ``space.task_options``, e.g. its readout window).
With ``hardware.cpu_table`` it also predicts each selected model's CPU latency per layer from that table
(:func:`hwnas.cost.cpu_latency.predict_latency`) and measures the whole model once with onnxruntime on this
machine (its float graph, exported in memory, with the table's session settings:
:func:`hwnas.cost.cpu_latency.measure_latency`). Nothing is trained or written here. A missing optional file
leaves its part of the report out, with the reason in :attr:`ReportData.notes`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.runpaths import read_record, resolve_path

__all__ = ["BaselineResult", "ReportData", "SelectedModel", "collect"]


@dataclass
class SelectedModel:
    """One selected trial and everything the report shows about it."""

    number: int
    rule: str
    metrics: dict[str, float]
    point: str
    checkpoint: str | None
    estimate: dict[str, Any] | None
    task_options: dict[str, Any] = field(default_factory=dict)
    """The trial's searched task options (``space.task_options``), e.g. its readout window; empty otherwise."""
    weight_bits: dict[int, int] = field(default_factory=dict)
    act_bits: dict[int, int] = field(default_factory=dict)
    layer_bits: list[dict[str, Any]] = field(default_factory=list)
    accuracy_per_snr: dict[int, float] = field(default_factory=dict)
    local: dict[str, Any] | None = None
    """The local search's result (``local/trial_<n>.json``) when it ran; the figures then show its model."""
    verification: list[dict[str, Any]] | None = None
    exported_accuracy: dict[str, Any] | None = None
    """The verify record's ``accuracy`` when it has one: ``{"samples": N, "torch": a, "<path>": b, ...}``, the top-1
    accuracy of torch and of each path that ran on the same N test samples."""
    export: dict[str, Any] | None = None
    """The export stage's record (``export/trial_<n>.json``) when it ran."""
    synthesis: dict[str, Any] | None = None
    cpu_latency: dict[str, Any] | None = None
    """With ``hardware.cpu_table``: ``rows`` (layer, op, shape, us) predicted from the table, ``overhead_us``,
    ``total_us``, and ``measured_us`` (onnxruntime on this machine; None when it could not run, ``measured_note``
    says why or that the timing was disturbed by other load)."""


@dataclass
class BaselineResult:
    """One reference model of ``run.baselines`` as the baselines stage recorded it (``baselines/<name>.json``)."""

    name: str
    description: str = ""
    model: str | None = None
    """Its model file, resolved against the output folder."""
    metrics: dict[str, float] = field(default_factory=dict)
    estimate: dict[str, Any] | None = None
    """The hardware estimate in a trial's format (model, device, clock_mhz, totals, latency_cycles, rows)."""
    accuracy_per_snr: dict[float, float] = field(default_factory=dict)
    """Test accuracy per SNR (dB; whole numbers as ``int``); empty for tasks without SNR labels."""
    accuracy: dict[str, Any] | None = None
    """``{"samples": N, "torch": a, "<path>": b, ...}`` like :attr:`SelectedModel.exported_accuracy`."""
    seconds: float = 0.0
    epochs: int = 0
    synthesis: dict[str, Any] | str | None = None
    """Yosys totals (``device``, ``totals``, ``fmax_mhz``, ...) when the stage synthesized it, else why not."""
    unpriced: str | None = None
    """Why the hardware model could not price it (e.g. a float model on FINN); None when it did."""


@dataclass
class ReportData:
    """Everything one report renders."""

    experiment: Any
    trials: list[dict[str, Any]]
    """Every COMPLETE trial: number, feasible, front, objectives (metric → value), metrics, estimate (the hardware
    estimate's summary or None)."""
    selected: list[SelectedModel]
    capacity: dict[str, int]
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    cpu_table: dict[str, Any] | None = None
    """The CPU latency table the report priced with (path, operators, machine, threads, created, calibrated)."""
    baselines: list[BaselineResult] = field(default_factory=list)
    """The trained ``run.baselines``, in that order (one not trained yet is left out, with a note)."""


def _json(path: Path) -> Any:
    return read_record(path)


def _snr_key(key: Any) -> float:
    value = float(key)
    return int(value) if value.is_integer() else value


def _baselines(experiment: Any, out: Path, notes: list[str]) -> list[BaselineResult]:
    """The records of ``run.baselines`` (``baselines/<name>.json``), in that order."""
    found = []
    for name in experiment.run.baselines:
        rec = _json(out / "baselines" / f"{name}.json")
        if rec is None:
            notes.append(f"baseline {name}: not trained yet (run the baselines stage)")
            continue
        found.append(BaselineResult(
            name=str(rec.get("name") or name), description=str(rec.get("description") or ""),
            model=str(resolve_path(rec["model"], out)) if rec.get("model") else None,
            metrics=dict(rec.get("metrics") or {}), estimate=rec.get("estimate"),
            accuracy_per_snr={_snr_key(k): float(v) for k, v in (rec.get("accuracy_per_snr") or {}).items()},
            accuracy=rec.get("accuracy"), seconds=float(rec.get("seconds") or 0.0),
            epochs=int(rec.get("epochs") or 0), synthesis=rec.get("synthesis"), unpriced=rec.get("unpriced")))
    return found


def _describe(point: Any) -> str:
    from hwnas.space import Point

    try:
        return Point.from_dict(point).describe()
    except Exception:  # a point of another version: show the raw dict
        return json.dumps(point)


def _cpu_latency(model: Any, input_shape: tuple[int, ...], table: Any) -> dict[str, Any]:
    """Predicted per-layer CPU latency of ``model`` from ``table`` and its measured onnxruntime latency here."""
    import copy
    import warnings

    from hwnas.cost.cpu_latency import measure_latency, predict_latency
    from hwnas.nn import set_quantizers

    pred = predict_latency(model, input_shape, table)
    out: dict[str, Any] = {
        "rows": [{"layer": r.name, "op": r.kind, "shape": "x".join(map(str, r.shape)), "us": float(r.us)}
                 for r in pred.rows],
        "overhead_us": float(pred.overhead_us), "total_us": float(pred.total_us),
        "measured_us": None, "measured_note": ""}
    threads = int(table.machine.get("threads", 1))
    try:
        float_model = set_quantizers(copy.deepcopy(model), input=None, weight=None, bias=None, output=None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out["measured_us"] = 1e3 * measure_latency(float_model.eval(), tuple(input_shape), threads=threads,
                                                       floor_us=table.session.get("probe_floor_us"),
                                                       max_seconds=5.0)
        if any(issubclass(w.category, RuntimeWarning) for w in caught):
            out["measured_note"] = "disturbed: the CPU was busy during the timing"
    except Exception as err:  # onnx/onnxruntime missing or the export failed: the prediction still stands
        out["measured_note"] = f"not measured: {type(err).__name__}: {err}"[:200]
    return out


def _table_summary(path: Path, table: Any) -> dict[str, Any]:
    m, s = table.machine, table.session
    return {"path": str(path.resolve()), "operators": len(table), "cpu_model": m.get("cpu_model", "unknown"),
            "threads": int(m.get("threads", 1)), "created": table.created, "calibrated": bool(table.calibration),
            "pinned_cpu": s.get("pinned_cpu"), "disturbed_timings": s.get("disturbed_timings", 0),
            "same_machine": table.same_machine()}


def _model_details(sel: SelectedModel, experiment: Any, loaded: dict[str, Any], notes: list[str],
                   table: Any = None) -> None:
    import torch

    from hwnas.export import load_model
    from hwnas.nn import bit_histogram
    from hwnas.nn.metrics import layer_costs
    from hwnas.search.objective import model_task_data

    if not sel.checkpoint or not Path(sel.checkpoint).is_file():
        notes.append(f"trial {sel.number}: no model file ({sel.checkpoint}); bit-widths and per-SNR accuracy left out")
        return
    bundle = load_model(sel.checkpoint)
    model = bundle.model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *bundle.input_shape))
    sel.weight_bits = {int(k): int(v) for k, v in bit_histogram(model, "weight").items()}
    sel.act_bits = {int(k): int(v) for k, v in bit_histogram(model, "activation").items()}
    sel.layer_bits = [{"layer": c.name, "type": c.type, "macs": int(c.macs), "bops": float(c.bops),
                       "weight_bits": float(c.weight_bits), "params": int(c.params)} for c in layer_costs(model)]
    task, data, _ = model_task_data(experiment, bundle.metadata, loaded)  # the trial's own task options
    result = task.evaluate(model, data.test, classes=data.classes)
    sel.accuracy_per_snr = {int(k): float(v) for k, v in (result.get("accuracy_per_snr") or {}).items()}
    if table is not None:
        try:
            sel.cpu_latency = _cpu_latency(model, tuple(bundle.input_shape), table)
        except ValueError as err:  # e.g. UnsupportedLayerError naming the layer
            notes.append(f"trial {sel.number}: no CPU latency breakdown ({err})")


def collect(experiment: Any, study: Any, *, details: bool = True) -> ReportData:
    """Gather the report of ``experiment`` from its output folder and ``study``."""
    from optuna.trial import TrialState

    from hwnas.search.pareto import ParetoArchive

    out = experiment.output_dir()
    objectives = [(o.metric, o.direction) for o in experiment.objectives]
    archive = ParetoArchive.from_study(study, objectives)
    front = {t.number for t in archive.front}
    feasible = {t.number for t in archive.feasible}
    trials = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        metrics = dict(t.user_attrs.get("metrics") or {})
        trials.append({"number": t.number, "feasible": t.number in feasible, "front": t.number in front,
                       "objectives": {m: metrics.get(m) for m, _ in objectives}, "metrics": metrics,
                       "estimate": t.user_attrs.get("estimate")})
    notes: list[str] = []
    selection = _json(out / "selection.json") or {"selected": []}
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    selected = []
    table = None
    loaded: dict[str, Any] = {}  # task data per option set, shared by models with the same options
    searched = list(experiment.space.task_options)
    table_info = None
    table_path = experiment.cpu_table_path()
    if table_path is not None:
        from hwnas.cost.cpu_latency import LatencyTable

        try:
            table = LatencyTable.load(table_path)
            table_info = _table_summary(table_path, table)
        except (ValueError, OSError) as err:
            notes.append(f"CPU latency table {table_path} not readable ({err}); CPU latency per layer left out")
    for entry in selection["selected"]:
        t = by_number.get(int(entry["number"]))
        if t is None:
            notes.append(f"selection.json names trial {entry['number']}, which is not in the study")
            continue
        ua = t.user_attrs
        sel = SelectedModel(number=t.number, rule=str(entry.get("rule", "")), metrics=dict(ua.get("metrics") or {}),
                            point=_describe(ua.get("point")),
                            checkpoint=str(resolve_path(ua["checkpoint"], out)) if ua.get("checkpoint") else None,
                            estimate=ua.get("estimate"))
        options = ua.get("task_options") or {}
        sel.task_options = {k: options[k] for k in searched if k in options}
        sel.local = _json(out / "local" / f"trial_{t.number:05d}.json")
        if sel.local:
            sel.checkpoint = str(resolve_path(sel.local["checkpoint"], out))
        if details:
            _model_details(sel, experiment, loaded, notes, table)
        ver = _json(out / "verify" / f"trial_{t.number:05d}.json")
        sel.verification = ver["paths"] if ver else None
        sel.exported_accuracy = ver.get("accuracy") if ver else None
        sel.synthesis = _json(out / "synth" / f"trial_{t.number:05d}.json")
        sel.export = _json(out / "export" / f"trial_{t.number:05d}.json")
        selected.append(sel)
    dev = experiment.device()
    capacity = {r: int(dev.capacity(r)) for r in ("luts", "ffs", "bram18", "dsps")}
    summary = _json(out / "search.json") or {}
    baselines = _baselines(experiment, out, notes)
    return ReportData(experiment, trials, selected, capacity, summary, notes, table_info, baselines)
