"""The report page: static HTML beside its PNGs, CSV and Markdown tables, written atomically.

Contract: :func:`write_report` renders a :class:`~hwnas.report.collect.ReportData` into ``folder``
(default ``<output>/report``): ``index.html`` (self-contained but for the PNGs next to it; no network, one small
inline script that sorts the trials table when a header is clicked), ``figures/*.png``,
``selected.csv``/``selected.md`` (one row per selected model), ``verification.md``, ``hypervolume.csv`` (the
convergence curve) and the tables in seed 000's layout (:mod:`hwnas.report.tables`: ``table2.csv``/``.md``,
``table3.csv``/``.md``, ``layers.csv``, ``pareto.csv``) and, when the run synthesized models, seed 001's LUTs vs
EBOPs (:mod:`hwnas.report.lut_ebops`: ``figures/lut_vs_ebops.png``, ``lut_ebops.csv``). Every artefact of the run
folder is linked by a path relative to the report folder (``../export/trial_00012/hls4ml/``), so the page works when
the run folder is moved; no absolute path of the run folder is written into the page. Numbers are shown rounded,
with units, never in exponent notation (the CSV files keep full precision). The folder is built beside the target
and renamed into place, so a failed render leaves the previous report whole.
"""

from __future__ import annotations

import csv
import html
import math
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import lut_ebops, plots, tables
from .collect import ReportData

__all__ = ["NEAR_CHANCE", "chance_warning", "metric_header", "metric_text", "readable", "write_report"]

_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;
text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}td:not(.l){white-space:nowrap}img{max-width:100%;margin:.3em}
.ok{color:#2b8a3e;font-weight:bold}.bad{color:#c92a2a;font-weight:bold}.note{color:#666;font-size:.85em}
.scroll{max-width:100%;overflow-x:auto}.tall{max-height:34em;overflow-y:auto}
table.sortable th{cursor:pointer;position:sticky;top:0}table.sortable th[data-dir=asc]::after{content:" ▲"}
table.sortable th[data-dir=desc]::after{content:" ▼"}.meta{color:#555;font-size:.9em}
.warn{background:#fff3bf;border:1px solid #f08c00;padding:.6em .9em;margin:1em 0}
ul.files{columns:2 24em;font-size:.9em}
@media (max-width:1150px){body{margin:1em}}"""

_SORT_SCRIPT = """document.querySelectorAll('table.sortable').forEach(function(t){
var hs=t.tHead.rows[0].cells;[].forEach.call(hs,function(th,i){th.title='click to sort';
th.addEventListener('click',function(){var asc=th.dataset.dir!=='asc',b=t.tBodies[0],rows=[].slice.call(b.rows);
[].forEach.call(hs,function(h){h.removeAttribute('data-dir');});th.dataset.dir=asc?'asc':'desc';
function key(r){var c=r.cells[i],v=c.hasAttribute('data-v')?c.getAttribute('data-v'):c.textContent,n=Number(v);
return v===''?null:(isNaN(n)?v.toLowerCase():n);}
rows.sort(function(x,y){var a=key(x),c=key(y);if(a===null)return c===null?0:1;if(c===null)return -1;
if(typeof a!==typeof c){a=String(a);c=String(c);}return (a<c?-1:a>c?1:0)*(asc?1:-1);});
rows.forEach(function(r){b.appendChild(r);});});});});"""
"""Sorts a ``table.sortable`` by the clicked column (numbers by their ``data-v``, empty cells last); no network."""

_SHOWN = ("accuracy", "accuracy_std", "test_accuracy", "bops", "ebops", "wbits", "qa_score", "luts", "dsps", "bram18",
          "avg_resource", "latency_cycles", "latency_ms", "throughput", "energy_mj", "cpu_latency_ms", "memory_kb")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _sig(x: float, digits: int = 4) -> str:
    """``x`` to ``digits`` significant digits, positional (never an exponent), thousands grouped, no trailing zeros."""
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    decimals = min(12, max(0, digits - 1 - math.floor(math.log10(abs(x)))))
    text = f"{x:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def readable(v: Any) -> str:
    """A number as a person reads it, never in exponent notation (``1.878e+04``).

    Whole numbers grouped (``18,780``), others to four significant digits (``0.02336``, ``1.051``, ``4,667``).
    Anything else as text.
    """
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "" if v is None else str(v)
    x = float(v)
    if math.isfinite(x) and x.is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    return _sig(x)


_NUMBER_RE = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")


def _display(v: Any) -> str:
    """A table cell's text: numbers :func:`readable`, other text as it is.

    A number written as text (the seed tables' full-precision cells: ``40000000``, ``4667.4``, ``0.0157244``) is made
    readable too; a signed one (``+1.00``, a difference) is kept as written.
    """
    if isinstance(v, str):
        return readable(float(v)) if _NUMBER_RE.match(v) else v
    return readable(v)


def _scaled(x: float, units: tuple[tuple[str, float], ...]) -> str:
    """``x`` (in the last unit's scale of 1) in the largest unit it reaches: ``(("s", 1), ("ms", 1e-3), ...)``."""
    if x == 0:
        return f"0 {units[1][0]}"
    for unit, scale in units:
        if abs(x) >= scale:
            return f"{_sig(x / scale)} {unit}"
    unit, scale = units[-1]
    return f"{_sig(x / scale)} {unit}"


_TIME = (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9))
_ENERGY = (("J", 1.0), ("mJ", 1e-3), ("µJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12))
_PERCENT_OF_ONE = ("accuracy", "test_accuracy", "accuracy_std", "sparsity")
_COUNT_UNITS = {"luts": "LUT", "ffs": "FF", "bram18": "BRAM18", "uram": "URAM", "dsps": "DSP",
                "latency_cycles": "cycles", "initiation_interval": "cycles", "wbits": "bit", "macs": "MACs",
                "bops": "BOPs", "ebops": "EBOPs", "params": "params"}
"""Metrics that count something, with the unit (a count of a million or more gets a prefix: ``1.708 M BOPs``)."""


def _count(x: float, unit: str = "") -> str:
    """A count: grouped (``18,780``) below a million, then ``1.708 M``/``G``/``T``; small fractions to 4 digits."""
    if abs(x) >= 1e6:
        for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6)):
            if abs(x) >= scale:
                text = f"{_sig(x / scale)} {prefix}"
                break
    else:
        text = f"{round(x):,}" if abs(x) >= 100 or float(x).is_integer() else _sig(x)
    return f"{text} {unit}" if unit else text


def metric_header(metric: str) -> str:
    """A metric's column header: its name, with the unit of a count its name does not say (``wbits [bit]``).

    Other units are in the cells (``61.55 %``, ``1.051 ms``, ``211.2 µJ``).
    """
    return f"{metric} [{_COUNT_UNITS[metric]}]" if metric in ("wbits", "latency_cycles", "initiation_interval") \
        else metric


def metric_text(metric: str, v: Any, unit: bool = True) -> str:
    """A metric's value with its unit, e.g. ``61.54 %`` (accuracy), ``18,780 LUT``, ``1.051 ms``, ``211.2 µJ``.

    Counts of a million or more with a prefix (``1.708 M BOPs``); ``unit=False`` leaves a count's unit out (it is
    in the header, :func:`metric_header`); an unknown metric :func:`readable`; a missing one empty.
    """
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        return "" if v is None else str(v)
    x = float(v)
    if metric in _PERCENT_OF_ONE:
        return f"{100 * x:.2f} %"
    if metric == "avg_resource":
        return f"{_sig(x, 3)} %"
    if metric in ("latency_ms", "cpu_latency_ms"):
        return _scaled(x * 1e-3, _TIME)
    if metric == "energy_mj":
        return _scaled(x * 1e-3, _ENERGY)
    if metric == "throughput":
        return f"{_count(x)} samples/s"
    if metric == "memory_kb":
        return f"{_sig(x)} KiB"
    if metric in _COUNT_UNITS:
        return _count(x, _COUNT_UNITS[metric] if unit else "")
    return readable(x)


class _Raw(str):
    """A table cell that is HTML already (a link); written as it is."""


def _cell_html(c: Any) -> str:
    return str(c) if isinstance(c, _Raw) else html.escape(_display(c))


def _table(header: list[str], rows: list[list[Any]], left: int = 1, keep: tuple[str, ...] = ("trial",)) -> str:
    """A table in a box that scrolls; numbers made readable, but for the columns named in ``keep`` (identifiers)."""
    head = "".join(f'<th class="l">{html.escape(h)}</th>' if i < left else f"<th>{html.escape(h)}</th>"
                   for i, h in enumerate(header))
    raw = {i for i, h in enumerate(header) if h in keep}

    def cell(c: Any, i: int) -> str:
        return html.escape(c) if i in raw and isinstance(c, str) else _cell_html(c)

    body = "".join("<tr>" + "".join(f'<td class="l">{cell(c, i)}</td>' if i < left
                                    else f"<td>{cell(c, i)}</td>" for i, c in enumerate(r)) + "</tr>"
                   for r in rows)
    # a wide table scrolls inside its box instead of widening the page (checked at 1400 and 800 px in a test)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _plain(x: float) -> str:
    """A number for a ``data-v`` sort key: full precision, positional."""
    import numpy as np

    return np.format_float_positional(float(x), unique=True, trim="-")


def _href(path: Path, base: Path) -> str:
    """``path`` relative to the report folder ``base``, URL-quoted; a folder ends in ``/``."""
    rel = Path(os.path.relpath(Path(path).absolute(), Path(base).absolute())).as_posix()
    return quote(rel, safe="/._-~") + ("/" if Path(path).is_dir() else "")


def _link(path: Path, base: Path, text: str) -> _Raw:
    return _Raw(f'<a href="{html.escape(_href(path, base))}">{html.escape(text)}</a>')


def _run_relative(path: Any, data: ReportData) -> str:
    """``path`` as the run folder names it (``export/trial_00012/hls4ml``); a path outside it: its name."""
    p = Path(str(path))
    if data.output_dir is not None:
        try:
            return p.absolute().relative_to(Path(data.output_dir).absolute()).as_posix()
        except ValueError:
            pass
    return p.name if p.is_absolute() else p.as_posix()


NEAR_CHANCE = 0.15
"""A task metric m is near chance c when (m − c) / (1 − c) ≤ this: it got at most 15 % of the way from chance to
perfect (accuracy c = 1/classes: ≤ 23.5 % on 10 classes; fidelity c = 0.5: F ≤ 0.575, i.e. 1 − P(e|g) − P(g|e) ≤
0.15)."""


def chance_warning(data: ReportData) -> str | None:
    """The warning text when the best trial's task metric (``accuracy``, validation) is near chance, else None.

    Chance is 1/classes for accuracy (:attr:`ReportData.n_classes`; unknown: no warning) and 0.5 for the readout
    fidelity F = 1 − [P(e|g) + P(g|e)] / 2; near means within :data:`NEAR_CHANCE` of the way from chance to 1.
    """
    scored = [(float(t["metrics"]["accuracy"]), t["number"]) for t in data.trials
              if isinstance((t.get("metrics") or {}).get("accuracy"), (int, float))
              and math.isfinite(float(t["metrics"]["accuracy"]))]
    if not scored:
        return None
    best, number = max(scored, key=lambda s: (s[0], -s[1]))
    if data.task_metric == "fidelity":
        chance, what = 0.5, "a guess's readout fidelity F = 1 − [P(e|g) + P(g|e)] / 2 = 50 %"
    elif data.n_classes:
        chance, what = 1.0 / data.n_classes, f"chance = 1/{data.n_classes} classes = {100 / data.n_classes:.1f} %"
    else:
        return None
    if chance >= 1.0:
        return None
    skill = (best - chance) / (1.0 - chance)
    if skill > NEAR_CHANCE:
        return None
    return (f"Near chance: the best model (trial #{number}) reaches {data.task_metric} {100 * best:.1f} % on the "
            f"validation split, against {what}. It got {100 * max(skill, 0.0):.1f} % of the way from chance to "
            f"perfect; this page calls a model near chance at {100 * NEAR_CHANCE:.0f} % or less, i.e. "
            f"{data.task_metric} ≤ {100 * (chance + NEAR_CHANCE * (1 - chance)):.1f} %. The models have barely "
            "learned the task: train longer (training.epochs), check the data and labels, or widen the search space "
            "before reading the hardware figures below.")


def _img(folder: Path, path: Path | None, alt: str) -> str:
    if path is None:
        return ""
    return f'<img src="{html.escape(str(path.relative_to(folder)))}" alt="{html.escape(alt)}">'


def _markdown(header: list[str], rows: list[list[Any]]) -> str:
    return tables.markdown((header, [[_fmt(c) for c in r] for r in rows]))


def _verification_rows(data: ReportData) -> list[list[Any]]:
    rows = []
    for s in data.selected:
        for p in s.verification or []:
            status = ("skipped: " + p["skipped"] if p.get("skipped") else "FAILED: " + p["error"] if p.get("error")
                      else "ok" if p["mismatches"] == 0 else "MISMATCH")
            same = {True: "yes", False: "NO"}.get(p.get("same_as_export"), "-")
            rows.append([f"#{s.number}", p["path"], p["samples"], p["mismatches"], p["max_lsb"], status, same])
    return rows


def _cpu_table_text(info: dict[str, Any], data: ReportData | None = None) -> str:
    path = str(info["path"])  # an input shared between runs (hardware.cpu_table): named where it lies
    if data is not None and data.output_dir is not None and Path(path).is_relative_to(data.output_dir):
        path = _run_relative(path, data)
    text = (f"{path}: {info['operators']} operators, {info['cpu_model']}, {info['threads']} thread(s), "
            f"profiled {info['created'] or '(date unknown)'}")
    if info.get("disturbed_timings"):
        text += f", {info['disturbed_timings']} timings disturbed while profiling (retried)"
    if info.get("calibrated"):
        text += ", calibrated"
    if not info.get("same_machine", True):
        text += "; profiled on another machine than this report's"
    return text


def _cpu_latency_html(number: int, cpu: dict[str, Any], folder: Path, fig: Path) -> str:
    """The CPU latency breakdown of one selected model: text, figure and per-layer table."""
    total = cpu["total_us"]
    text = (f"CPU latency (onnxruntime, predicted from the latency table): {total:.1f} µs per inference = "
            f"session overhead {cpu['overhead_us']:.1f} µs + layers")
    if cpu.get("measured_us") is not None:
        text += (f"; measured on this machine: {cpu['measured_us']:.1f} µs (float graph exported with torch.onnx, "
                 f"same session settings; prediction {100 * (total / cpu['measured_us'] - 1):+.0f} %)")
    if cpu.get("measured_note"):
        text += f" ({cpu['measured_note']})"
    rows = [[r["layer"], r["op"], r["shape"], r["us"], f"{100 * r['us'] / total:.0f} %" if total > 0 else ""]
            for r in cpu["rows"]]
    rows.append(["(session overhead)", "", "", cpu["overhead_us"],
                 f"{100 * cpu['overhead_us'] / total:.0f} %" if total > 0 else ""])
    return (f"<p>{html.escape(text)}.</p>" + _img(folder, plots.cpu_layer_latency(number, cpu, fig),
                                                   f"cpu latency {number}")
            + _table(["layer", "operator", "input shape", "µs", "share"], rows, left=3))


def _estimate_error(estimate: float | None, synthesis: float | None) -> str:
    """The cost model's signed relative error against Yosys (``+12 %``), or ``—`` where there is nothing to divide."""
    if estimate is None or not synthesis:
        return "—"
    return f"{100 * (float(estimate) - float(synthesis)) / float(synthesis):+.0f} %"


def _lut_ebops_html(data: ReportData, folder: Path, fig: Path) -> str:
    """Seed 001's LUTs-vs-EBOPs figure on the run's synthesized models, its fit and ``lut_ebops.csv``.

    Empty when no model was synthesized; without EBOPs on any synthesized model a note says so.
    """
    points, missing = lut_ebops.lut_ebops_points(data)
    if not points and not missing:
        return ""
    parts = ["<h2>LUTs vs EBOPs (seed 001)</h2>"]
    skipped = (f"<p class='note'>Synthesized but not drawn: {html.escape('; '.join(missing))}.</p>"
               if missing else "")
    if not points:
        return parts[0] + skipped
    fit = lut_ebops.fit_power_law([p.ebops for p in points], [p.luts for p in points])
    ref = lut_ebops.load_reference()
    ref_fits = lut_ebops.reference_fits(ref)
    lut_ebops.write_csv(points, folder / "lut_ebops.csv", fit)
    parts.append(_img(folder, plots.lut_vs_ebops(points, fig, fit, ref, ref_fits.get("all"), lut_ebops.SEED_EXPONENT,
                                                 lut_ebops.MIN_FIT_POINTS), "LUTs vs EBOPs"))
    devices = ", ".join(dict.fromkeys(p.device for p in points if p.device)) or "the run's device"
    text = (f"Each point is a model of this run synthesized with Yosys for {html.escape(devices)} (selected models "
            "by the synth stage, the local search's model when it ran, baselines by the baselines stage): its EBOPs "
            "against its LUTs, on log axes. ")
    if fit is not None:
        text += (f"Least squares on log(LUT) = log(a) + b·log(EBOPs) over the {fit.n} models: "
                 f"<b>a = {_sig(fit.a, 3)}, b = {fit.b:.3f}</b> "
                 f"(LUT = {html.escape(fit.text())}, solid). ")
    else:
        text += (f"<b>No fit:</b> a fit needs ≥ {lut_ebops.MIN_FIT_POINTS} synthesized models with distinct EBOPs; "
                 f"this run has {len(points)}. ")
    text += (f"Seed 001 (HGQ, Vivado on its jet, SVHN and muon models) reports LUT ≈ EBOPs^{lut_ebops.SEED_EXPONENT} "
             "with a prefactor of about 1 (dotted).")
    if ref and "all" in ref_fits:
        kinds = "; ".join(f"{name}: {ref_fits[k].text()}" for k, name in (("fixed", "fixed widths"),
                                                                            ("hgq", "HGQ widths")) if k in ref_fits)
        name, yosys, synth, device = (html.escape(str(ref.get(k, ""))) for k in ("dataset", "yosys", "synthesis",
                                                                                   "device"))
        text += (f" Grey: the design dataset {name} ({len(ref['designs'])} small MLPs and CNNs, {yosys} "
                 f"<code>{synth}</code> for {device}), fitted the same way: "
                 f"LUT = {html.escape(ref_fits['all'].text())} (dashed"
                 + (f"; {html.escape(kinds)}" if kinds else "") + ").")
    else:
        text += " The design dataset shipped with hwnas (lut_ebops_designs.json) could not be read: no background."
    parts.append(f"<p class='note'>{text} File: <a href=\"lut_ebops.csv\">lut_ebops.csv</a>.</p>")
    rows = [[p.name, metric_text("ebops", p.ebops), metric_text("luts", p.luts),
             _sig(p.luts / p.ebops ** lut_ebops.SEED_EXPONENT, 3),
             "" if fit is None else _sig(p.luts / fit(p.ebops), 3)] for p in points]
    parts.append(_table(["model", "EBOPs", "LUTs (Yosys)", f"LUTs / EBOPs^{lut_ebops.SEED_EXPONENT}",
                         "LUTs / fit"], rows))
    return "".join(parts) + skipped


def _seed_tables_html(data: ReportData, folder: Path, fig: Path) -> str:
    """Write the tables of :mod:`hwnas.report.tables` into ``folder`` and return their section."""
    exp = data.experiment
    rows = tables.report_rows(data)
    written = tables.write_tables(data, folder, rows)
    dev = exp.device()
    model = exp.hardware.model
    files = ", ".join(f'<a href="{n}">{n}</a>' for n in ("table2.csv", "table2.md", "table3.csv", "table3.md",
                                                          "layers.csv", "pareto.csv"))
    parts = ["<h2>Tables in the seed's layout (Table II, Table III, per-layer latency)</h2>",
             f"<p>Device: {html.escape(exp.hardware.target)} ({html.escape(dev.name)}, {html.escape(dev.part)}), "
             f"{html.escape(model)} cost model. Models: the feasible Pareto-front trials, best first on the last "
             "objective, the local search's models of the selected trials (named after their trial, with the "
             "method), then the baselines (run.baselines). Files: " + files + ".</p>"]
    if not rows:
        parts.append("<p class='note'>no feasible front trial and no trained baseline yet</p>")
    parts.append("<h3>Table II: complexity and FPGA resources (estimate)</h3>" + _table(*written["table2"]))
    parts.append("<h3>Table III: latency, energy and accuracy</h3>" + _table(*written["table3"]))
    parts.append(f"<p class='note'>FPGA-measured latency is not available here: the expected latency is the "
                 f"{html.escape(model)} cost model's cycles at the estimate's clock. Test accuracy is torch's on the "
                 "whole test split; the exported accuracy is the verified path's on its samples, beside torch's on "
                 "the same samples (ΔAcc in points).</p>")
    parts.append(_img(folder, plots.layer_latency_models(rows, fig), "per-layer latency of the models"))
    if "baselines" in written:
        parts.append("<h3>Baselines trained on the same data</h3>" + _table(*written["baselines"], left=2)
                     + "<p class='note'>Trained with the experiment's training section on the trials' splits "
                     "(files: <a href=\"baselines.csv\">baselines.csv</a>, <a href=\"baselines.md\">baselines.md"
                     "</a>); LUTs (Yosys) when run.synth synthesized them.</p>")
        parts += [f"<p class='note'>{html.escape(b.name)}: {html.escape(b.unpriced)}</p>"
                  for b in data.baselines if b.unpriced]
    return "".join(parts)


def _task_text(exp: Any) -> str:
    """The task, its fixed options and its searched ones (``space.task_options``)."""
    from hwnas.space import IntRange

    text = exp.task.name
    if exp.task.options:
        text += " (" + ", ".join(f"{k}: {v}" for k, v in exp.task.options.items()) + ")"
    searched = [f"{k} {spec.min}…{spec.max} step {spec.step}" if isinstance(spec, IntRange) else f"{k} {list(spec)}"
                for k, spec in exp.space.task_options.items()]
    return text + ("; searched: " + ", ".join(searched) if searched else "")


def _supernet_rows(rep: dict[str, Any]) -> list[list[Any]]:
    """The supernet strategy's phase report (``search.json``'s ``supernet``) as table rows."""
    rows: list[list[Any]] = []
    train = rep.get("train") or {}
    epochs = train.get("epochs") or []
    if epochs:
        per = sum(e["seconds"] for e in epochs) / len(epochs)
        plain = rep.get("plain_epoch_seconds")
        ratio = f" ({per / plain:.1f}× one epoch of the largest sub-net alone, {plain:.1f} s)" if plain else ""
        rows.append(["training", f"{len(epochs)} epochs, {per:.1f} s per epoch{ratio}; last loss "
                                 f"{epochs[-1]['loss']:.4f}"])
    ev = rep.get("evaluate") or {}
    if ev:
        rows.append(["sub-nets ranked", f"{ev['subnets']} on {ev['samples']} validation samples, "
                                        f"{ev['seconds_per_subnet']:.3f} s each"])
    pred = rep.get("predictor") or {}
    if pred:
        tau, rho = pred.get("kendall_tau"), pred.get("spearman")
        rows.append(["accuracy predictor", f"Kendall τ {tau if tau is None else f'{tau:.3f}'}, Spearman ρ "
                                           f"{rho if rho is None else f'{rho:.3f}'} on {pred['held_out']} held-out "
                                           f"sub-nets (fitted on {pred['fitted_on']})"])
    srch = rep.get("search") or {}
    if srch:
        rows.append(["NSGA-II on the predictor", f"{srch['nsga2_trials']} candidates, {srch['candidates']} distinct "
                                                 f"({srch['feasible']} feasible), {srch['seconds']:.1f} s"])
    return rows


def _bound(v: Any) -> str:
    return readable(v) if isinstance(v, (int, float)) else str(v)


def _duration(seconds: float) -> str:
    """``12.3 s``, ``7 min 08 s``, ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def _artefact_cell(p: dict[str, Any], data: ReportData, base: Path) -> Any:
    """An export record's artefact: a relative link when it is in the run folder, else why there is none."""
    if not p.get("artefact"):
        return f"FAILED: {p['error']}" if p.get("error") else f"skipped: {p['skipped']}"
    if data.output_dir is None:
        return Path(str(p["artefact"])).name
    from hwnas.runpaths import resolve_path

    path = resolve_path(p["artefact"], data.output_dir)
    shown = _run_relative(path, data)
    return _link(path, base, shown) if path.exists() else f"{shown} (missing)"


def _meta_html(data: ReportData) -> str:
    """The header line: hwnas version, when the report was written and when the run's stages finished."""
    from hwnas import __version__

    finished = [str(v.get("finished")) for v in data.stages.values() if isinstance(v, dict) and v.get("finished")]
    run = (f"; run {finished[0]}" + (f" … {finished[-1]}" if finished[-1] != finished[0] else "")) if finished else ""
    folder = f"; run folder {data.output_dir.name}" if data.output_dir is not None else ""
    return (f"<p class='meta'>hwnas {html.escape(data.version or __version__)}; report written "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}{html.escape(run + folder)}</p>")


def _stages_html(data: ReportData) -> str:
    """The run's stages (``stages.json``): when each finished and how long it took."""
    rows = [[name, str(rec.get("finished", "")), _duration(float(rec.get("seconds") or 0.0))]
            for name, rec in data.stages.items() if isinstance(rec, dict)]
    if not rows:
        return ""
    total = sum(float(rec.get("seconds") or 0.0) for rec in data.stages.values() if isinstance(rec, dict))
    rows.append(["total", "", _duration(total)])
    return ("<h2>Stages</h2>" + _table(["stage", "finished", "elapsed"], rows, left=2)
            + "<p class='note'>From the run's stages.json (hwnas run); a stage run again replaces its line.</p>")


def _baselines_on_plots(data: ReportData, objectives: list[tuple[str, str]]) -> str:
    """Which baselines the Pareto plots show (green stars) and which lack an objective's metric."""
    if not data.baselines:
        return ""
    names = [m for m, _ in objectives]
    has = {b.name: [m for m in names if plots.metric_value(b.metrics, m) is not None] for b in data.baselines}
    shown = [n for n, ms in has.items() if len(ms) >= min(2, len(names))]
    missing = [f"{n} (no {', '.join(m for m in names if m not in ms)})" for n, ms in has.items()
               if len(ms) < len(names)]
    text = ("Baselines (run.baselines) are the green stars" + (" (a dotted line against the trial number)"
                                                               if len(names) == 1 else "")
            + ", labelled with their name" + (f": {', '.join(shown)}" if shown else ": none has these metrics"))
    if missing:
        text += f"; not drawn on a plot whose metric it lacks: {', '.join(missing)}"
    return f"<p class='note'>{html.escape(text)}.</p>"


def _convergence_html(data: ReportData, objectives: list[tuple[str, str]], folder: Path, fig: Path) -> str:
    """The hypervolume-over-trials plot, its caption with the reference point, and ``hypervolume.csv``."""
    reference, curve = tables.hypervolume_curve(data.trials, objectives)
    with open(folder / "hypervolume.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["trial", "feasible", "hypervolume"])
        w.writerows([[n, str(ok).lower(), repr(hv)] for n, ok, hv in curve])
    parts = ["<h2>Convergence</h2>"]
    if not curve:
        return parts[0] + "<p class='note'>no feasible trial with every objective yet: no hypervolume</p>"
    parts.append(_img(folder, plots.hypervolume(curve, fig), "hypervolume over trials"))
    ref = ", ".join(f"{m} {metric_text(m, reference[m])} ({d})" for m, d in objectives)
    parts.append(f"<p class='note'>Hypervolume of the feasible Pareto front found up to each trial (trials in "
                 f"number order; an infeasible trial leaves it unchanged), on the objectives "
                 f"{html.escape(', '.join(f'{m} ({d})' for m, d in objectives))}. Each objective is scaled between "
                 f"its best and worst feasible value; the reference point lies {100 * tables.HV_MARGIN:.0f} % of that "
                 f"range beyond the worst value: {html.escape(ref)}. The value is the dominated share of the box from "
                 f"the best values to the reference point (1 = one trial best on every objective)"
                 + (f", estimated from {tables.HV_SAMPLES:,} seeded uniform points of the box (more than "
                    f"{tables.HV_EXACT_OBJECTIVES} objectives)" if len(objectives) > tables.HV_EXACT_OBJECTIVES else "")
                 + ". Final: "
                 f"{curve[-1][2]:.3f}. File: <a href=\"hypervolume.csv\">hypervolume.csv</a>.</p>")
    return "".join(parts)


def _trials_html(data: ReportData, objectives: list[tuple[str, str]], base: Path) -> str:
    """Every trial as a table sorted by clicking a header (the inline script); failed ones with their error."""
    names = [m for m, _ in objectives]
    metrics = names + [m for m in _SHOWN if m not in names and any(m in (t.get("metrics") or {}) for t in data.trials)]
    selected = {s.number: s.rule for s in data.selected}
    header = ["trial", "state", "feasible", "front", "selected", *[metric_header(m) for m in metrics], "model / error"]
    rows = []
    for t in data.trials:
        m = t.get("metrics") or {}
        ckpt = t.get("checkpoint")
        model = ""
        if ckpt and Path(ckpt).exists():
            model = str(_link(Path(ckpt), base, "model"))
        cells = [(f"#{t['number']}", t["number"]), ("COMPLETE", None), ("yes" if t["feasible"] else "no", None),
                 ("yes" if t["front"] else "", None), (selected.get(t["number"], ""), None)]
        cells += [(html.escape(metric_text(k, m.get(k), unit=False)), m.get(k)) for k in metrics]
        rows.append([(html.escape(c) if i < 5 else c, v) for i, (c, v) in enumerate(cells)] + [(model, None)])
    for t in data.incomplete:
        rows.append([(f"#{t['number']}", t["number"]), (html.escape(t["state"]), None), ("", None), ("", None),
                     ("", None), *[("", None)] * len(metrics), (html.escape((t.get("error") or "")[:200]), None)])
    rows.sort(key=lambda r: r[0][1])

    def td(text: str, key: Any, i: int) -> str:
        cls = ' class="l"' if i in (1, 4) or i == len(header) - 1 else ""
        ok = isinstance(key, (int, float)) and not isinstance(key, bool) and math.isfinite(float(key))
        return f'<td{cls} data-v="{_plain(key)}">{text}</td>' if ok else f"<td{cls}>{text}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(td(c, v, i) for i, (c, v) in enumerate(r)) + "</tr>" for r in rows)
    note = (f"{len(data.trials)} complete" + (f", {len(data.incomplete)} not complete (failed, pruned or running; "
                                               "with their error)" if data.incomplete else "")
            + ". Click a header to sort by it (again to reverse). The same trials with full-precision values: "
            "<a href=\"pareto.csv\">pareto.csv</a>")
    if data.output_dir is not None and (data.output_dir / "pareto" / "trials.csv").is_file():
        note += ", " + _link(data.output_dir / "pareto" / "trials.csv", base, "pareto/trials.csv")
    return ("<h2>All trials</h2>"
            f'<div class="scroll tall"><table class="sortable" id="trials"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div><p class='note'>{note}.</p>")


_REPORT_FILES = (("selected.csv", "selected models"), ("selected.md", "selected models"),
                 ("pareto.csv", "every complete trial"), ("hypervolume.csv", "convergence"),
                 ("table2.csv", "Table II"), ("table2.md", "Table II"), ("table3.csv", "Table III"),
                 ("table3.md", "Table III"), ("layers.csv", "cycles per layer"), ("baselines.csv", "baselines"),
                 ("baselines.md", "baselines"), ("verification.md", "verification"),
                 ("lut_ebops.csv", "LUTs vs EBOPs"))


def _files_html(data: ReportData, folder: Path, base: Path) -> str:
    """Relative links to the report's own tables and to every artefact of the run folder."""
    own = [f'<li><a href="{n}">{n}</a> ({what})</li>' for n, what in _REPORT_FILES if (folder / n).is_file()]
    parts = ["<h2>Files</h2><p>Links are relative to this page: they keep working when the run folder is moved or "
             "copied whole.</p><h3>This report's tables</h3><ul class='files'>" + "".join(own) + "</ul>"]
    if not data.artefacts:
        parts.append("<p class='note'>no run folder artefact found</p>")
    groups: dict[str, list[Any]] = {}
    for a in data.artefacts:
        groups.setdefault(a.group, []).append(a)
    for group, items in groups.items():
        parts.append(f"<h3>{html.escape(group)}</h3><ul class='files'>" + "".join(
            f"<li>{html.escape(a.label)}: {_link(a.path, base, _run_relative(a.path, data))}</li>" for a in items)
            + "</ul>")
    return "".join(parts)


def _render(data: ReportData, folder: Path, final: Path | None = None) -> None:
    exp = data.experiment
    final = folder if final is None else final  # where the page will live: links are relative to it
    fig = folder / "figures"
    objectives = [(o.metric, o.direction) for o in exp.objectives]
    selected = {s.number: s.rule for s in data.selected}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>hwnas report: {html.escape(exp.name)}"
             f"</title><style>{_CSS}</style></head><body>",
             f"<h1>hwnas report: {html.escape(exp.name)}</h1>", _meta_html(data),
             (f"<div class='warn' id='near-chance'><b>Warning.</b> {html.escape(warning)}</div>"
              if (warning := chance_warning(data)) else ""),
             f"<p>{html.escape(exp.description)}</p>" if exp.description else "",
             _table(["setting", "value"], [
                 ["task", _task_text(exp)], ["strategy", exp.search.strategy], ["trials", exp.search.n_trials],
                 ["objectives", ", ".join(f"{m} ({d})" for m, d in objectives)],
                 ["constraints", "; ".join(f"{c.metric} {'≤ ' + _bound(c.max) if c.max is not None else ''}"
                                           f"{' ≥ ' + _bound(c.min) if c.min is not None else ''}"
                                           for c in exp.constraints) or "none"],
                 ["device", f"{exp.hardware.target} ({exp.hardware.model} cost model)" if exp.hardware.model != "none"
                  else "none (hardware.model: none; no FPGA cost model)"],
                 *([["CPU latency table", _cpu_table_text(data.cpu_table, data)]] if data.cpu_table else []),
                 ["seed", exp.seed]],
                    left=2)]
    states = data.summary.get("states", {})
    feasible = sum(t["feasible"] for t in data.trials)
    parts.append(f"<p>{len(data.trials)} complete trials ({feasible} feasible, "
                 f"{states.get('FAIL', 0)} failed); {sum(t['front'] for t in data.trials)} on the Pareto front.</p>")
    parts.append(_stages_html(data))

    if data.summary.get("supernet"):
        parts.append("<h2>Supernet</h2>")
        parts.append(_table(["phase", "figure"], _supernet_rows(data.summary["supernet"]), left=2))

    parts.append("<h2>Pareto fronts</h2>")
    device = exp.device()
    budgets: dict[str, list[float | None]] = {}
    for c in exp.constraints:
        budgets.setdefault(c.metric, []).extend(c.absolute(device))
    for path in plots.pareto_pairs(data.trials, objectives, selected, fig, budgets, data.baselines):
        parts.append(_img(folder, path, path.stem))
    parts.append(_baselines_on_plots(data, objectives))
    parts.append(_convergence_html(data, objectives, folder, fig))

    shown = [m for m in _SHOWN if any(m in s.metrics for s in data.selected)]
    options = list(exp.space.task_options)  # searched task options (e.g. the readout window): one column each
    header = ["trial", "rule", "point", *options, *shown]
    rows = [[f"#{s.number}", s.rule, s.point, *[s.task_options.get(o) for o in options],
             *[s.metrics.get(m) for m in shown]] for s in data.selected]
    parts.append("<h2>Selected models</h2>")
    k = 3 + len(options)
    shown_rows = [[*r[:k], *[metric_text(m, v, unit=False) for m, v in zip(shown, r[k:], strict=True)]]
                  for r in rows]
    parts.append(_table([*header[:k], *[metric_header(m) for m in shown]], shown_rows, left=3) if rows
                 else "<p class='note'>no model selected yet</p>")
    with open(folder / "selected.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    (folder / "selected.md").write_text(_markdown(header, rows))
    parts.append(_trials_html(data, objectives, final))

    cap = data.capacity
    res_rows = []
    for s in data.selected:  # no estimate with hardware.model none: no section without a synthesis either
        totals = (s.estimate or {}).get("totals") or {}
        if totals:
            res_rows.append([f"#{s.number} estimate", *[f"{metric_text(r, totals.get(r, 0))} "
                                                         f"({100 * totals.get(r, 0) / cap[r]:.1f} %)" if cap[r] else
                                                         metric_text(r, totals.get(r, 0)) for r in cap]])
        if s.synthesis:
            synth = s.synthesis.get("totals", {})
            res_rows.append([f"#{s.number} synthesis (Yosys)", *[
                f"{metric_text(r, synth.get(r, 0))} ({100 * synth.get(r, 0) / cap[r]:.1f} %)" if cap[r] else
                metric_text(r, synth.get(r, 0)) for r in cap]])
            if totals:
                res_rows.append([f"#{s.number} estimate error", *[_estimate_error(totals.get(r), synth.get(r))
                                                                  for r in cap]])
    if res_rows:
        parts.append("<h2>Resource utilization</h2>")
        if any(row[0].endswith("estimate error") for row in res_rows):
            parts.append("<p class='note'>Estimate error: (estimate − synthesis) / synthesis per resource; "
                         "“—” where Yosys counted none.</p>")
        res_rows.append(["device capacity", *[metric_text(r, cap[r]) for r in cap]])
        parts.append(_table(["", *cap], res_rows))
        series = plots.resource_series(data.selected)
        parts.append(_img(folder, plots.resources(data.selected, cap, fig), "resources"))
        synthesized = [f"#{n}" for kind, n, _ in series if kind == "synthesis"]
        parts.append("<p class='note'>Bars: the cost model's estimate" + (
            f", and beside it (hatched) the counts Yosys synthesized for {', '.join(synthesized)}"
            if synthesized else "; no synthesized counts (run.synth did not synthesize these models)") + ".</p>")
    parts.append(_lut_ebops_html(data, folder, fig))

    parts.append(_seed_tables_html(data, folder, fig))

    snr = plots.accuracy_per_snr(data.selected, fig, data.baselines)
    if snr is not None:
        parts.append("<h2>Accuracy per SNR</h2>" + _img(folder, snr, "accuracy per SNR"))

    for s in data.selected:
        parts.append(f"<h2>Trial #{s.number} ({html.escape(s.rule)})</h2><p>{html.escape(s.point)}</p>")
        parts.append(_img(folder, plots.layer_latency(s.number, s.estimate, fig), f"latency {s.number}"))
        if s.cpu_latency:
            parts.append(_cpu_latency_html(s.number, s.cpu_latency, folder, fig))
        parts.append(_img(folder, plots.bit_histograms(s.number, s.weight_bits, s.act_bits, fig), f"bits {s.number}"))
        if s.local:
            lo = s.local
            kept = lo.get("kept") or f"ap_fixed<{lo['precision'][0]},{lo['precision'][1]}>"
            parts.append(f"<p>local search ({html.escape(str(lo.get('method', 'precision_pairs')))}): kept "
                         f"{html.escape(kept)}, sparsity {lo['sparsity']:.2f}: validation "
                         f"{lo['metric']:.4f} vs {lo['searched_metric']:.4f} searched; "
                         f"{metric_text('bops', lo['bops'])}, effective {metric_text('bops', lo['effective_bops'])}, "
                         f"{metric_text('ebops', lo.get('ebops', float('nan')))}. "
                         "The figures below show this model.</p>")
            parts.append("<pre>" + html.escape(lo["table"]) + "</pre>")
        if s.export:
            parts.append(_table(["exported", "artefact", "source digest"],
                                [[p["path"], _artefact_cell(p, data, final),
                                  (p["digest"] or "")[:16]] for p in s.export["paths"]], left=2))
        syn = s.synthesis or {}
        comp = syn.get("distributed_arithmetic")
        if syn:
            parts.append(f"<p>synthesis: {html.escape(str(syn.get('summary', '')))}</p>")
        if isinstance(comp, dict):
            parts.append(_table(["resource", "synthesis", "estimate (distributed arithmetic)", "estimate / synthesis"],
                                [[r["resource"], r["synthesized"], r["estimated"], r["ratio"]] for r in comp["rows"]]))
        elif comp:
            parts.append(f"<p class='note'>{html.escape(str(comp))}</p>")
        if s.layer_bits:
            parts.append(_table(["layer", "type", "MACs", "BOPs", "weight bits", "params"],
                                [[r["layer"], r["type"], r["macs"], r["bops"], r["weight_bits"], r["params"]]
                                 for r in s.layer_bits], left=2))

    parts.append("<h2>Verification</h2>")
    vrows = _verification_rows(data)
    vheader = ["trial", "path", "samples", "mismatching", "max diff (LSB)", "status", "artefact = export"]
    if vrows:
        cells = []
        for r in vrows:
            cls = "ok" if r[-2] == "ok" else ("bad" if r[-2] == "MISMATCH" else "note")
            cells.append("<tr>" + "".join(f'<td class="l">{html.escape(_fmt(c))}</td>' for c in r[:2])
                         + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r[2:-2])
                         + f'<td class="l {cls}">{html.escape(r[-2])}</td><td>{html.escape(r[-1])}</td></tr>')
        parts.append('<div class="scroll"><table><tr>' + "".join(f"<th>{h}</th>" for h in vheader) + "</tr>"
                     + "".join(cells) + "</table></div>")
    else:
        parts.append("<p class='note'>not verified yet (hwnas verify)</p>")
    (folder / "verification.md").write_text(_markdown(vheader, vrows))
    parts.append(_files_html(data, folder, final))
    if data.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in data.notes) + "</ul>")
    parts.append(f"<script>{_SORT_SCRIPT}</script></body></html>")
    page = "\n".join(p for p in parts if p)
    if data.output_dir is not None:  # no absolute path of the run folder (notes, summaries): run-relative names
        root = str(Path(data.output_dir).absolute())
        page = re.sub(re.escape(root) + r"(?![\w.-])", ".", page.replace(root + os.sep, ""))
    (folder / "index.html").write_text(page)


def write_report(data: ReportData, folder: Path | None = None) -> Path:
    """Render the report into ``folder`` (default ``<output>/report``) and return ``index.html``'s path."""
    target = Path(folder) if folder is not None else data.experiment.output_dir() / "report"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        _render(data, tmp, target)
        old = target.with_name(f".{target.name}.old.{uuid.uuid4().hex[:8]}")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target / "index.html"
