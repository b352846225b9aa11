"""What a report shows, gathered from a run's output folder: trials, selection, models, verification.

Contract: :func:`collect` reads only files the earlier stages wrote (the study through the experiment's
storage, ``selection.json``, the selected trials' model files — the local search's when it ran —,
``local/trial_<n>.json``, ``verify/<trial>.json``,
``synth/<trial>.json``, ``baselines/<name>.json`` of every ``run.baselines`` name, ``stages.json``) and evaluates the
selected models once more on the task's test split for the per-SNR accuracy (AMC tasks), each on its own
task data (the options its model file records: with ``space.task_options``, e.g. its readout window).
With ``hardware.cpu_table`` it also predicts each selected model's CPU latency per layer from that table
(:func:`hwnas.cost.cpu_latency.predict_latency`) and measures the whole model once with onnxruntime on this
machine (its float graph, exported in memory, with the table's session settings:
:func:`hwnas.cost.cpu_latency.measure_latency`). :func:`find_artefacts` lists the files and folders the run
folder holds for the report to link (models, QONNX files, hls4ml projects, RTL folders, synthesis logs, the
search's CSVs). Nothing is trained or written here. A missing optional file leaves its part of the report
out, with the reason in :attr:`ReportData.notes`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.runpaths import read_record, resolve_path

__all__ = ["Artefact", "BaselineResult", "ReportData", "SelectedModel", "collect", "find_artefacts"]


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


@dataclass(frozen=True)
class Artefact:
    """One file or folder of the run folder the report links to (relatively)."""

    group: str
    """What it belongs to: ``run``, ``trial #12 (knee)``, ``baseline vgg10-32f-8b``."""
    label: str
    """What it is: ``model file``, ``QONNX file``, ``hls4ml project``, ``synthesis log (yosys.log)``, ..."""
    path: Path
    """Its absolute path (the page links it relative to the report folder)."""


@dataclass
class ReportData:
    """Everything one report renders."""

    experiment: Any
    trials: list[dict[str, Any]]
    """Every COMPLETE trial: number, feasible, front, objectives (metric → value), metrics, estimate (the hardware
    estimate's summary or None) and checkpoint (its model file's absolute path, or None)."""
    selected: list[SelectedModel]
    capacity: dict[str, int]
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    cpu_table: dict[str, Any] | None = None
    """The CPU latency table the report priced with (path, operators, machine, threads, created, calibrated)."""
    baselines: list[BaselineResult] = field(default_factory=list)
    """The trained ``run.baselines``, in that order (one not trained yet is left out, with a note)."""
    output_dir: Path | None = None
    """The run folder (absolute); None for data built by hand (the page then links no run artefact)."""
    incomplete: list[dict[str, Any]] = field(default_factory=list)
    """Every trial that did not complete: number, state (``FAIL``, ``PRUNED``, ``RUNNING``, ...) and error."""
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``stages.json``: per finished stage its ``finished`` time and elapsed ``seconds``."""
    version: str = ""
    """The hwnas version that collected the report."""
    task_metric: str = "accuracy"
    """The task's metric (``accuracy`` or ``fidelity``): what the ``accuracy`` metric measures."""
    n_classes: int | None = None
    """The task's class count (from the selected models' task data); None when no model was evaluated."""
    artefacts: list[Artefact] = field(default_factory=list)
    """The run folder's files and folders the page links (:func:`find_artefacts`)."""


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
                   table: Any = None) -> tuple[str, int] | None:
    """Fill in the model's bit-widths, per-layer costs, per-SNR accuracy and CPU latency.

    Returns its task's metric and class count (None without a model file).
    """
    import torch

    from hwnas.export import load_model
    from hwnas.nn import bit_histogram
    from hwnas.nn.metrics import layer_costs
    from hwnas.search.objective import model_task_data

    if not sel.checkpoint or not Path(sel.checkpoint).is_file():
        notes.append(f"trial {sel.number}: no model file ({sel.checkpoint}); bit-widths and per-SNR accuracy left out")
        return None
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
    return str(task.metric), len(data.classes)


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
    incomplete = []
    for t in study.get_trials(deepcopy=False):
        if t.state != TrialState.COMPLETE:
            incomplete.append({"number": t.number, "state": t.state.name,
                               "error": str(t.user_attrs.get("error") or "")})
            continue
        metrics = dict(t.user_attrs.get("metrics") or {})
        ckpt = t.user_attrs.get("checkpoint")
        trials.append({"number": t.number, "feasible": t.number in feasible, "front": t.number in front,
                       "objectives": {m: metrics.get(m) for m, _ in objectives}, "metrics": metrics,
                       "estimate": t.user_attrs.get("estimate"),
                       "checkpoint": str(resolve_path(ckpt, out)) if ckpt else None})
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
    task_metric, n_classes = _task_metric(experiment), None
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
            found = _model_details(sel, experiment, loaded, notes, table)
            if found is not None:
                task_metric, n_classes = found
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
    from hwnas import __version__

    stages = _json(out / "stages.json")
    return ReportData(experiment, trials, selected, capacity, summary, notes, table_info, baselines,
                      output_dir=out.absolute(), incomplete=incomplete,
                      stages=stages if isinstance(stages, dict) else {}, version=__version__,
                      task_metric=task_metric, n_classes=n_classes,
                      artefacts=find_artefacts(out, trials, selected, baselines))


def _task_metric(experiment: Any) -> str:
    """The task's metric name (``accuracy`` when the task cannot be looked up here)."""
    try:
        from hwnas.tasks import get_task

        return str(get_task(experiment.task.name).metric)
    except Exception:  # a plug-in task whose module is not imported: the usual metric
        return "accuracy"


_EXPORT_LABELS = {"qonnx": "QONNX file", "hls4ml": "hls4ml project", "rtl": "RTL folder", "finn": "FINN build"}


def find_artefacts(out: Path, trials: list[dict[str, Any]], selected: list[SelectedModel],
                   baselines: list[BaselineResult]) -> list[Artefact]:
    """The files and folders of the run folder ``out`` that a report links, each once and only when it exists.

    Run: the study database, ``search.json``, ``selection.json``, ``stages.json``, ``pareto/trials.csv``,
    ``pareto/pareto.csv``, ``pareto/pareto.json``. Per selected trial: its searched model file, its
    ``pareto/trial_<n>`` copy, the local search's model and record, the export record and every exported artefact
    (QONNX file, hls4ml project, RTL folder, ...), the verify record, the synth record, the synthesized RTL and every
    synthesis log (``synth/trial_<n>_work/**/*.log``). Per baseline: its model file, record and folder.
    """
    out = Path(out).absolute()
    found: list[Artefact] = []
    seen: set[Path] = set()

    def add(group: str, label: str, path: Any) -> None:
        if not path:
            return
        p = Path(path)
        p = p if p.is_absolute() else out / p
        if p in seen or not p.exists():
            return
        seen.add(p)
        found.append(Artefact(group, label, p))

    run = [("study.db", "study database (SQLite)"), ("search.json", "search summary"),
           ("selection.json", "selection"), ("stages.json", "stage record (times)"),
           ("pareto/trials.csv", "every trial (CSV)"), ("pareto/pareto.csv", "Pareto front (CSV)"),
           ("pareto/pareto.json", "Pareto front (JSON)")]
    for rel, label in run:
        add("run", label, out / rel)
    by_number = {int(t["number"]): t for t in trials}
    for s in selected:
        n = s.number
        group = f"trial #{n} ({s.rule})" if s.rule else f"trial #{n}"
        trial = by_number.get(n) or {}
        add(group, "searched model file", trial.get("checkpoint") or out / "trials" / f"{n:05d}" / "model.pt")
        add(group, "Pareto front copy", out / "pareto" / f"trial_{n:05d}")
        if s.local:
            add(group, "local search model file", resolve_path(s.local["checkpoint"], out)
                if s.local.get("checkpoint") else None)
            add(group, "local search record", out / "local" / f"trial_{n:05d}.json")
        add(group, "model file", s.checkpoint)
        add(group, "export record", out / "export" / f"trial_{n:05d}.json")
        for p in (s.export or {}).get("paths") or []:
            if p.get("artefact"):
                add(group, _EXPORT_LABELS.get(p["path"], f"{p['path']} export"), resolve_path(p["artefact"], out))
        folder = out / "export" / f"trial_{n:05d}"
        if folder.is_dir():  # artefacts the record does not name (an older record, a hand-made file)
            for entry in sorted(e for e in folder.iterdir() if not e.name.startswith(".")):
                kind = ("qonnx" if entry.name.endswith(".onnx") else entry.name if entry.name in _EXPORT_LABELS
                        else None)
                add(group, _EXPORT_LABELS[kind] if kind else f"exported {entry.name}", entry)
        add(group, "verify record", out / "verify" / f"trial_{n:05d}.json")
        add(group, "synth record", out / "synth" / f"trial_{n:05d}.json")
        work = out / "synth" / f"trial_{n:05d}_work"
        if work.is_dir():
            add(group, "synthesized RTL", work / "rtl")
            for log in sorted(work.rglob("*.log")):
                add(group, f"synthesis log ({log.name})", log)
    for b in baselines:
        group = f"baseline {b.name}"
        add(group, "model file", b.model)
        add(group, "baseline record", out / "baselines" / f"{b.name}.json")
        add(group, "baseline folder", out / "baselines" / b.name)
        if (out / "baselines" / b.name).is_dir():
            for log in sorted((out / "baselines" / b.name).rglob("*.log")):
                add(group, f"synthesis log ({log.name})", log)
    return found
