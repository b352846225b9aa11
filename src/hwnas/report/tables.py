"""The report's tables in the layout of seed 000 (MONAS-LQ): Table II, Table III, per-layer latency, the Pareto front.

Contract: :func:`table_rows` lists the models the tables compare — the feasible Pareto-front trials, best first on
the last objective (``MLQ 1``, ``MLQ 2``, … with ``search.strategy: monas_lq``, else ``front 1``, …), then the
baselines in ``run.baselines`` order — and :func:`table2`, :func:`table3`, :func:`layer_table` and
:func:`pareto_table` turn plain data into ``(header, rows)`` of strings (a missing metric is an empty cell, never an
error). :func:`write_tables` writes them into a report folder: ``table2.csv``/``.md`` (resources against the
device's capacity, MAC load against the reference), ``table3.csv``/``.md`` (expected latency at the estimate's
clock, energy, test accuracy, exported accuracy against torch on the same samples), ``layers.csv`` (cycles per
layer, seed 000's Fig. 4) and ``pareto.csv`` (every complete trial). :func:`hypervolume_curve` gives the search's
convergence: the hypervolume of the feasible front found up to each trial. No torch needed, nothing else written.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["HV_EXACT_OBJECTIVES", "HV_MARGIN", "HV_SAMPLES", "TableRow", "baseline_table", "exported_path",
           "hypervolume", "hypervolume_curve", "layer_table", "mac_reference", "markdown", "pareto_table",
           "report_rows", "table2", "table3", "table_rows", "write_tables"]

Table = tuple[list[str], list[list[str]]]
"""A table: its header and its rows of cells (strings; empty for a missing value)."""

_PREFERRED_PATH = {"finn": "qonnx", "hls4ml": "hls4ml", "alkaid": "rtl", "surrogate": "rtl"}
"""The exported path Table III shows for each cost model (what that hardware flow ingests)."""


@dataclass(frozen=True)
class TableRow:
    """One model of the tables: a searched front trial or a baseline."""

    name: str
    kind: str
    """``searched``, ``local`` (a selected trial's local-search model) or ``baseline``."""
    trial: int | None
    metrics: Mapping[str, float]
    layers: tuple[Mapping[str, Any], ...] = ()
    """The hardware estimate's rows (name, type, cycles, luts, bram18, dsps); empty without an estimate."""
    exported: Mapping[str, Any] | None = None
    """``{"samples": N, "torch": a, "<path>": b, ...}`` from verification; None when no path ran."""
    clock_mhz: float | None = None
    """The estimate's clock."""


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _cell(v: Any) -> str:
    """A number as a cell: whole numbers without decimals, others to 6 significant digits; missing: empty."""
    x = _number(v)
    if x is None:
        return ""
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.6g}"


def _pct(part: Any, whole: Any, digits: int = 1) -> str:
    p, w = _number(part), _number(whole)
    return "" if p is None or not w else f"{100 * p / w:.{digits}f}"


def _half(v: Any) -> float | None:
    x = _number(v)
    return None if x is None else x / 2


def _estimate_parts(estimate: Mapping[str, Any] | None) -> tuple[tuple[Mapping[str, Any], ...], float | None]:
    est = estimate or {}
    return tuple(est.get("rows") or ()), _number(est.get("clock_mhz"))


def table_rows(trials: Sequence[Mapping[str, Any]], objectives: Sequence[tuple[str, str]],
               baselines: Iterable[Any] = (), *, strategy: str = "",
               exported: Mapping[int, Mapping[str, Any] | None] | None = None,
               local: Iterable[Mapping[str, Any]] = ()) -> list[TableRow]:
    """The models of Tables II and III: the feasible front trials, the local search's models, then ``baselines``.

    ``trials`` are :attr:`ReportData.trials` dicts (number, feasible, front, metrics, estimate); the front is
    ordered best first on the last objective (ascending when minimized; a trial without it last, ties by number)
    and named ``MLQ k`` when ``strategy`` is ``monas_lq``, else ``front k``. ``local`` are the local stage's
    records that priced their kept model (trial, method, metrics, estimate): each row is named after its trial's
    (``MLQ 3 → beta_sweep``) and takes that trial's ``exported`` record (the verified model is the local one).
    ``baselines`` have name, metrics, estimate and accuracy (:class:`~hwnas.report.collect.BaselineResult`);
    ``exported`` maps a trial number to its verification accuracy record.
    """
    metric, direction = objectives[-1]
    sign = 1.0 if direction == "minimize" else -1.0

    def key(t: Mapping[str, Any]) -> tuple[int, float, int]:
        v = _number((t.get("metrics") or {}).get(metric))
        return (1, 0.0, t["number"]) if v is None else (0, sign * v, t["number"])

    front = sorted((t for t in trials if t.get("front") and t.get("feasible")), key=key)
    prefix = "MLQ" if strategy == "monas_lq" else "front"
    refined = [r for r in local if isinstance(r.get("metrics"), Mapping)]
    moved = {int(r["trial"]) for r in refined}
    rows = []
    names = {}
    for k, t in enumerate(front, 1):
        layers, clock = _estimate_parts(t.get("estimate"))
        names[int(t["number"])] = f"{prefix} {k}"
        rows.append(TableRow(f"{prefix} {k}", "searched", int(t["number"]), dict(t.get("metrics") or {}), layers,
                             None if int(t["number"]) in moved else (exported or {}).get(int(t["number"])), clock))
    for r in refined:
        n = int(r["trial"])
        layers, clock = _estimate_parts(r.get("estimate"))
        rows.append(TableRow(f"{names.get(n, f'trial {n}')} → {r.get('method', 'local')}", "local", n,
                             dict(r["metrics"]), layers, (exported or {}).get(n), clock))
    for b in baselines:
        layers, clock = _estimate_parts(b.estimate)
        rows.append(TableRow(b.name, "baseline", None, dict(b.metrics or {}), layers, b.accuracy, clock))
    return rows


def report_rows(data: Any) -> list[TableRow]:
    """:func:`table_rows` of a :class:`~hwnas.report.collect.ReportData` (exported accuracy of its selected models)."""
    exp = data.experiment
    return table_rows(data.trials, [(o.metric, o.direction) for o in exp.objectives], data.baselines,
                      strategy=exp.search.strategy,
                      exported={s.number: s.exported_accuracy for s in data.selected},
                      local=[s.local for s in data.selected if s.local])


def mac_reference(rows: Sequence[TableRow]) -> TableRow | None:
    """The row MAC load is relative to: the baseline with the most MACs, else the row with the most MACs.

    Among equals the one the hardware model priced (with LUTs) wins, then the last listed: seed 000's reference,
    QCNN-64F, has the float VGG10's MACs.
    """
    for pool in ([r for r in rows if r.kind == "baseline"], list(rows)):
        with_macs = [(i, r) for i, r in enumerate(pool) if _number(r.metrics.get("macs")) is not None]
        if with_macs:
            return max(with_macs, key=lambda ir: (_number(ir[1].metrics["macs"]),
                                                  _number(ir[1].metrics.get("luts")) is not None, ir[0]))[1]
    return None


def table2(rows: Sequence[TableRow], capacity: Mapping[str, float], device: str) -> Table:
    """Seed 000's Table II: complexity (BOPs, weight bits, QA-Score, MACs, MAC load) and FPGA resources.

    The first row is ``<device> capacity``; BRAM is shown in 36 Kb blocks (BRAM18 / 2), registers are FFs;
    percentages have one decimal.
    """
    ref = mac_reference(rows)
    header = ["Model", "trial", "BOPs", "W_bits", "QA-Score", "Total MACs",
              f"MAC load [% of {ref.name}]" if ref else "MAC load [%]", "LUTs", "LUTs [%]", "Regs", "Regs [%]",
              "BRAM36", "BRAM36 [%]", "DSP", "DSP [%]"]
    cap = {"luts": _number(capacity.get("luts")), "ffs": _number(capacity.get("ffs")),
           "bram36": _half(capacity.get("bram18")), "dsps": _number(capacity.get("dsps"))}
    out = [[f"{device} capacity", "", "", "", "", "", "", _cell(cap["luts"]), "", _cell(cap["ffs"]), "",
            _cell(cap["bram36"]), "", _cell(cap["dsps"]), ""]]
    ref_macs = ref.metrics.get("macs") if ref else None
    for r in rows:
        m = r.metrics
        used = {"luts": m.get("luts"), "ffs": m.get("ffs"), "bram36": _half(m.get("bram18")), "dsps": m.get("dsps")}
        cells = [r.name, "" if r.trial is None else str(r.trial), _cell(m.get("bops")), _cell(m.get("wbits")),
                 _cell(m.get("qa_score")), _cell(m.get("macs")), _pct(m.get("macs"), ref_macs)]
        for res in ("luts", "ffs", "bram36", "dsps"):
            cells += [_cell(used[res]), _pct(used[res], cap[res])]
        out.append(cells)
    return header, out


def exported_path(accuracy: Mapping[str, Any] | None, prefer: str | None = None) -> str | None:
    """The path of a verification accuracy record Table III shows: ``prefer`` when it ran, else the last one."""
    paths = [k for k, v in (accuracy or {}).items() if k not in ("samples", "torch") and _number(v) is not None]
    if not paths:
        return None
    return prefer if prefer in paths else paths[-1]


def table3(rows: Sequence[TableRow], prefer: str | None = None) -> Table:
    """Seed 000's Table III: expected latency, energy, test accuracy and the exported model's accuracy.

    Latency is the cost model's (``latency_ms``, else ``latency_cycles`` at the estimate's clock), not measured;
    test accuracy is torch's on the whole test split (``test_accuracy``); the exported columns compare one path
    (``prefer`` when it ran, else the last that ran) with torch on the same N samples (ΔAcc in points). Accuracies
    in % with two decimals.
    """
    header = ["Model", "trial", "expected latency [ms/sample]", "clock [MHz]", "energy [mJ/sample]",
              "test accuracy [%]", "exported accuracy [%]", "torch on the same samples [%]", "ΔAcc [points]",
              "path", "samples"]
    out = []
    for r in rows:
        m = r.metrics
        latency = _number(m.get("latency_ms"))
        cycles = _number(m.get("latency_cycles"))
        if latency is None and cycles is not None and r.clock_mhz:
            latency = cycles / (r.clock_mhz * 1e3)
        acc = _number(m.get("test_accuracy"))
        cells = [r.name, "" if r.trial is None else str(r.trial), _cell(latency), _cell(r.clock_mhz),
                 _cell(m.get("energy_mj")), "" if acc is None else f"{100 * acc:.2f}"]
        path = exported_path(r.exported, prefer)
        if path is None:
            cells += ["", "", "", "", ""]
        else:
            ex, ref = _number(r.exported[path]), _number(r.exported.get("torch"))
            cells += [f"{100 * ex:.2f}", "" if ref is None else f"{100 * ref:.2f}",
                      "" if ref is None else f"{100 * (ex - ref):+.2f}", path, _cell(r.exported.get("samples"))]
        out.append(cells)
    return header, out


def layer_table(rows: Sequence[TableRow]) -> Table:
    """Cycles per layer of every row with an estimate (seed 000's Fig. 4).

    Each layer's share of the model's summed cycles (%, two decimals) and its milliseconds at the estimate's clock.
    """
    header = ["model", "trial", "layer", "type", "cycles", "share [%]", "ms"]
    out = []
    for r in rows:
        total = sum(_number(layer.get("cycles")) or 0.0 for layer in r.layers)
        for layer in r.layers:
            cycles = _number(layer.get("cycles"))
            ms = None if cycles is None or not r.clock_mhz else cycles / (r.clock_mhz * 1e3)
            out.append([r.name, "" if r.trial is None else str(r.trial), str(layer.get("name", "")),
                        str(layer.get("type", "")), _cell(cycles), _pct(cycles, total, 2), _cell(ms)])
    return header, out


def pareto_table(trials: Sequence[Mapping[str, Any]]) -> Table:
    """Every complete trial: number, feasible, front, then every metric any trial has (sorted by name)."""
    names = sorted({k for t in trials for k in (t.get("metrics") or {})})
    header = ["number", "feasible", "front", *names]
    out = []
    for t in sorted(trials, key=lambda t: t["number"]):
        m = t.get("metrics") or {}
        out.append([str(t["number"]), str(bool(t.get("feasible"))).lower(), str(bool(t.get("front"))).lower(),
                    *["" if m.get(k) is None else (repr(float(m[k])) if _number(m[k]) is not None else str(m[k]))
                      for k in names]])
    return header, out


HV_MARGIN = 0.1
"""The hypervolume's reference point lies this share of each objective's range beyond its worst feasible value."""
HV_EXACT_OBJECTIVES = 3
"""Up to this many objectives :func:`hypervolume_curve` is exact; with more it is a Monte Carlo estimate."""
HV_SAMPLES = 50_000
"""Seeded uniform points of the Monte Carlo estimate (standard error ≤ 0.0023 of the box)."""


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """The volume dominated by ``points`` (every objective minimized) up to ``reference`` (exact, by slicing).

    A point not strictly better than the reference in every objective adds nothing.
    """
    pts = [tuple(float(v) for v in p) for p in points if all(v < r for v, r in zip(p, reference, strict=True))]
    if not pts:
        return 0.0
    ref = [float(r) for r in reference]
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in pts)
    if len(ref) == 2:  # a sweep along the first objective
        pts.sort()
        volume, low = 0.0, ref[1]
        for i, p in enumerate(pts):
            low = min(low, p[1])
            volume += ((pts[i + 1][0] if i + 1 < len(pts) else ref[0]) - p[0]) * (ref[1] - low)
        return volume
    pts.sort(key=lambda p: p[-1])
    volume = 0.0
    slab: list[tuple[float, ...]] = []  # the points so far projected on the other objectives, non-dominated only
    for i, p in enumerate(pts):  # the slab between this point's last objective and the next one's
        q = p[:-1]
        if not any(all(a <= b for a, b in zip(o, q, strict=True)) for o in slab):
            slab = [o for o in slab if not all(a <= b for a, b in zip(q, o, strict=True))] + [q]
        upper = pts[i + 1][-1] if i + 1 < len(pts) else ref[-1]
        if upper > p[-1]:
            volume += (upper - p[-1]) * hypervolume(slab, ref[:-1])
    return volume


def hypervolume_curve(trials: Sequence[Mapping[str, Any]], objectives: Sequence[tuple[str, str]]
                      ) -> tuple[dict[str, float], list[tuple[int, bool, float]]]:
    """The search's convergence: ``(reference, [(trial, feasible, hypervolume so far), ...])`` in trial order.

    Every feasible complete trial with all objectives counts (an infeasible one leaves the value unchanged). Each
    objective is scaled to [0, 1] between its best and worst feasible value (maximized ones flipped), the
    reference point lies :data:`HV_MARGIN` of the range beyond the worst value (``reference`` gives it in the
    metrics' own units), and the hypervolume is the dominated share of the box from the best values to the
    reference point (0 … 1): exact up to :data:`HV_EXACT_OBJECTIVES` objectives, else the share of
    :data:`HV_SAMPLES` seeded uniform points of the box that the front dominates (the exact volume grows as
    trials^(objectives − 1)). No feasible trial: ``({}, [])``.
    """
    names = [m for m, _ in objectives]

    def values(t: Mapping[str, Any]) -> list[float] | None:
        m = t.get("metrics") or {}
        vs = [_number(m.get(k)) for k in names]
        return None if any(v is None for v in vs) else vs  # type: ignore[return-value]

    ordered = sorted(trials, key=lambda t: t["number"])
    usable = [values(t) if t.get("feasible") else None for t in ordered]
    pool = [v for v in usable if v is not None]
    if not pool:
        return {}, []
    scale = []
    reference: dict[str, float] = {}
    for i, (name, direction) in enumerate(objectives):
        col = [v[i] for v in pool]
        best, worst = (min(col), max(col)) if direction == "minimize" else (max(col), min(col))
        span = abs(worst - best) or (abs(worst) or 1.0)
        sign = 1.0 if direction == "minimize" else -1.0
        scale.append((best, sign, span))
        reference[name] = worst + sign * HV_MARGIN * span
    ref = [1.0 + HV_MARGIN] * len(names)
    box = (1.0 + HV_MARGIN) ** len(names)
    samples = dominated = None
    if len(names) > HV_EXACT_OBJECTIVES:
        import numpy as np

        samples = np.random.default_rng(0).uniform(0.0, 1.0 + HV_MARGIN, size=(HV_SAMPLES, len(names)))
        dominated = np.zeros(HV_SAMPLES, dtype=bool)
    front: list[tuple[float, ...]] = []
    curve = []
    hv = 0.0
    for t, v in zip(ordered, usable, strict=True):
        if v is not None:
            p = tuple(sign * (x - best) / span for x, (best, sign, span) in zip(v, scale, strict=True))
            # not weakly dominated by the front so far: it joins, the points it dominates leave
            if not any(all(a <= b for a, b in zip(q, p, strict=True)) for q in front):
                front = [q for q in front if not all(a <= b for a, b in zip(p, q, strict=True))] + [p]
                if samples is None:
                    hv = hypervolume(front, ref) / box
                else:
                    dominated |= (samples >= np.asarray(p)).all(axis=1)
                    hv = float(dominated.mean())
        curve.append((int(t["number"]), v is not None, hv))
    return reference, curve


def _write_csv(path: Path, table: Table) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(table[0])
        w.writerows(table[1])


def markdown(table: Table) -> str:
    """A table as Markdown (a ``|`` inside a cell escaped)."""
    header, rows = table
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def baseline_table(baselines: Sequence[Any]) -> Table:
    """The baselines as trained here, one row per :class:`~hwnas.report.collect.BaselineResult`.

    Accuracy (validation, test, exported on N samples), estimated and synthesized resources, epochs and seconds.
    """
    header = ["Model", "description", "epochs", "val accuracy [%]", "test accuracy [%]", "exported accuracy [%]",
              "path", "samples", "LUTs (estimate)", "LUTs (Yosys)", "FFs (Yosys)", "DSPs (Yosys)", "seconds"]
    out = []
    for b in baselines:
        m = b.metrics
        acc = b.accuracy or {}
        path = exported_path(acc) if acc else None
        synth = b.synthesis if isinstance(b.synthesis, dict) else {}
        totals = synth.get("totals") or {}
        out.append([b.name, b.description, _cell(b.epochs), _pct(m.get("accuracy"), 1, 2),
                    _pct(m.get("test_accuracy"), 1, 2), _pct(acc.get(path), 1, 2) if path else "", path or "",
                    _cell(acc.get("samples")) if path else "", _cell(m.get("luts")), _cell(totals.get("luts")),
                    _cell(totals.get("ffs")), _cell(totals.get("dsps")), _cell(b.seconds)])
    return header, out


def write_tables(data: Any, folder: Path, rows: Sequence[TableRow] | None = None) -> dict[str, Table]:
    """Write the tables of a :class:`~hwnas.report.collect.ReportData` into ``folder``; return them by file stem.

    Files: ``table2.csv``/``.md``, ``table3.csv``/``.md``, ``layers.csv``, ``pareto.csv`` and, with baselines,
    ``baselines.csv``/``.md`` (:func:`baseline_table`). ``rows``: :func:`report_rows` of ``data`` when the caller
    has them already.
    """
    exp = data.experiment
    rows = report_rows(data) if rows is None else rows
    tables = {"table2": table2(rows, data.capacity, exp.hardware.target),
              "table3": table3(rows, _PREFERRED_PATH.get(exp.hardware.model)),
              "layers": layer_table(rows), "pareto": pareto_table(data.trials)}
    if data.baselines:
        tables["baselines"] = baseline_table(data.baselines)
    folder = Path(folder)
    for stem, table in tables.items():
        _write_csv(folder / f"{stem}.csv", table)
        if stem in ("table2", "table3", "baselines"):
            (folder / f"{stem}.md").write_text(markdown(table), encoding="utf-8")
    return tables
