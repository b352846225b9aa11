"""What a report shows, gathered from a run's output folder: trials, selection, models, verification.

Contract: :func:`collect` reads only files the earlier stages wrote (the study through the experiment's
storage, ``selection.json``, the selected trials' model files — the local search's when it ran —,
``local/trial_<n>.json``, ``verify/<trial>.json``,
``synth/<trial>.json``) and evaluates the selected models once more on the task's test split for the
per-SNR accuracy (AMC tasks). Nothing is trained or exported here. A missing optional file leaves its part
of the report out, with the reason in :attr:`ReportData.notes`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ReportData", "SelectedModel", "collect"]


@dataclass
class SelectedModel:
    """One selected trial and everything the report shows about it."""

    number: int
    rule: str
    metrics: dict[str, float]
    point: str
    checkpoint: str | None
    estimate: dict[str, Any] | None
    weight_bits: dict[int, int] = field(default_factory=dict)
    act_bits: dict[int, int] = field(default_factory=dict)
    layer_bits: list[dict[str, Any]] = field(default_factory=list)
    accuracy_per_snr: dict[int, float] = field(default_factory=dict)
    local: dict[str, Any] | None = None
    """The local search's result (``local/trial_<n>.json``) when it ran; the figures then show its model."""
    verification: list[dict[str, Any]] | None = None
    export: dict[str, Any] | None = None
    """The export stage's record (``export/trial_<n>.json``) when it ran."""
    synthesis: dict[str, Any] | None = None


@dataclass
class ReportData:
    """Everything one report renders."""

    experiment: Any
    trials: list[dict[str, Any]]
    """Every COMPLETE trial: number, feasible, front, objectives (metric → value), metrics."""
    selected: list[SelectedModel]
    capacity: dict[str, int]
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _describe(point: Any) -> str:
    from hwnas.space import Point

    try:
        return Point.from_dict(point).describe()
    except Exception:  # a point of another version: show the raw dict
        return json.dumps(point)


def _model_details(sel: SelectedModel, task: Any, data: Any, notes: list[str]) -> None:
    import torch

    from hwnas.export import load_model
    from hwnas.nn import bit_histogram
    from hwnas.nn.metrics import layer_costs

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
    result = task.evaluate(model, data.test, classes=data.classes)
    sel.accuracy_per_snr = {int(k): float(v) for k, v in (result.get("accuracy_per_snr") or {}).items()}


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
                       "objectives": {m: metrics.get(m) for m, _ in objectives}, "metrics": metrics})
    notes: list[str] = []
    selection = _json(out / "selection.json") or {"selected": []}
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    selected = []
    task = data = None
    if details and selection["selected"]:
        from hwnas.tasks import get_task

        task = get_task(experiment.task.name)
        data = task.load(seed=experiment.seed, **experiment.task.options)
    for entry in selection["selected"]:
        t = by_number.get(int(entry["number"]))
        if t is None:
            notes.append(f"selection.json names trial {entry['number']}, which is not in the study")
            continue
        ua = t.user_attrs
        sel = SelectedModel(number=t.number, rule=str(entry.get("rule", "")), metrics=dict(ua.get("metrics") or {}),
                            point=_describe(ua.get("point")), checkpoint=ua.get("checkpoint"),
                            estimate=ua.get("estimate"))
        sel.local = _json(out / "local" / f"trial_{t.number:05d}.json")
        if sel.local:
            sel.checkpoint = sel.local["checkpoint"]
        if details:
            _model_details(sel, task, data, notes)
        ver = _json(out / "verify" / f"trial_{t.number:05d}.json")
        sel.verification = ver["paths"] if ver else None
        sel.synthesis = _json(out / "synth" / f"trial_{t.number:05d}.json")
        sel.export = _json(out / "export" / f"trial_{t.number:05d}.json")
        selected.append(sel)
    dev = experiment.device()
    capacity = {r: int(dev.capacity(r)) for r in ("luts", "ffs", "bram18", "dsps")}
    summary = _json(out / "search.json") or {}
    return ReportData(experiment, trials, selected, capacity, summary, notes)
