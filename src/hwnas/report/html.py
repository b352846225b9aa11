"""The report page: static HTML beside its PNGs, CSV and Markdown tables, written atomically.

Contract: :func:`write_report` renders a :class:`~hwnas.report.collect.ReportData` into ``folder``
(default ``<output>/report``): ``index.html`` (self-contained but for the PNGs next to it; no script, no
network), ``figures/*.png``, ``selected.csv``/``selected.md`` (one row per selected model),
``verification.md`` and the tables in seed 000's layout (:mod:`hwnas.report.tables`: ``table2.csv``/``.md``,
``table3.csv``/``.md``, ``layers.csv``, ``pareto.csv``). The folder is built beside the target and renamed
into place, so a failed render leaves the previous report whole.
"""

from __future__ import annotations

import csv
import html
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from . import plots, tables
from .collect import ReportData

__all__ = ["write_report"]

_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;
text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}img{max-width:100%;margin:.3em}
.ok{color:#2b8a3e;font-weight:bold}.bad{color:#c92a2a;font-weight:bold}.note{color:#666;font-size:.85em}
.scroll{max-width:100%;overflow-x:auto}
@media (max-width:1150px){body{margin:1em}}"""

_SHOWN = ("accuracy", "accuracy_std", "test_accuracy", "bops", "ebops", "wbits", "qa_score", "luts", "dsps", "bram18",
          "avg_resource", "latency_cycles", "throughput", "energy_mj", "cpu_latency_ms", "memory_kb")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _table(header: list[str], rows: list[list[Any]], left: int = 1) -> str:
    head = "".join(f'<th class="l">{html.escape(h)}</th>' if i < left else f"<th>{html.escape(h)}</th>"
                   for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="l">{html.escape(_fmt(c))}</td>' if i < left
                                    else f"<td>{html.escape(_fmt(c))}</td>" for i, c in enumerate(r)) + "</tr>"
                   for r in rows)
    # a wide table scrolls inside its box instead of widening the page (checked at 1400 and 800 px in a test)
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


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


def _cpu_table_text(info: dict[str, Any]) -> str:
    text = (f"{info['path']}: {info['operators']} operators, {info['cpu_model']}, {info['threads']} thread(s), "
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


def _render(data: ReportData, folder: Path) -> None:
    exp = data.experiment
    fig = folder / "figures"
    objectives = [(o.metric, o.direction) for o in exp.objectives]
    selected = {s.number: s.rule for s in data.selected}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>hwnas report: {html.escape(exp.name)}"
             f"</title><style>{_CSS}</style></head><body>",
             f"<h1>hwnas report: {html.escape(exp.name)}</h1>",
             f"<p>{html.escape(exp.description)}</p>" if exp.description else "",
             _table(["setting", "value"], [
                 ["task", _task_text(exp)], ["strategy", exp.search.strategy], ["trials", exp.search.n_trials],
                 ["objectives", ", ".join(f"{m} ({d})" for m, d in objectives)],
                 ["constraints", "; ".join(f"{c.metric} {'≤ ' + str(c.max) if c.max is not None else ''}"
                                           f"{' ≥ ' + str(c.min) if c.min is not None else ''}"
                                           for c in exp.constraints) or "none"],
                 ["device", f"{exp.hardware.target} ({exp.hardware.model} cost model)" if exp.hardware.model != "none"
                  else "none (hardware.model: none; no FPGA cost model)"],
                 *([["CPU latency table", _cpu_table_text(data.cpu_table)]] if data.cpu_table else []),
                 ["seed", exp.seed]],
                    left=2)]
    states = data.summary.get("states", {})
    feasible = sum(t["feasible"] for t in data.trials)
    parts.append(f"<p>{len(data.trials)} complete trials ({feasible} feasible, "
                 f"{states.get('FAIL', 0)} failed); {sum(t['front'] for t in data.trials)} on the Pareto front.</p>")

    if data.summary.get("supernet"):
        parts.append("<h2>Supernet</h2>")
        parts.append(_table(["phase", "figure"], _supernet_rows(data.summary["supernet"]), left=2))

    parts.append("<h2>Pareto fronts</h2>")
    device = exp.device()
    budgets: dict[str, list[float | None]] = {}
    for c in exp.constraints:
        budgets.setdefault(c.metric, []).extend(c.absolute(device))
    for path in plots.pareto_pairs(data.trials, objectives, selected, fig, budgets):
        parts.append(_img(folder, path, path.stem))

    shown = [m for m in _SHOWN if any(m in s.metrics for s in data.selected)]
    options = list(exp.space.task_options)  # searched task options (e.g. the readout window): one column each
    header = ["trial", "rule", "point", *options, *shown]
    rows = [[f"#{s.number}", s.rule, s.point, *[s.task_options.get(o) for o in options],
             *[s.metrics.get(m) for m in shown]] for s in data.selected]
    parts.append("<h2>Selected models</h2>")
    parts.append(_table(header, rows, left=3) if rows else "<p class='note'>no model selected yet</p>")
    with open(folder / "selected.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    (folder / "selected.md").write_text(_markdown(header, rows))

    cap = data.capacity
    res_rows = []
    for s in data.selected:  # no estimate with hardware.model none: no section without a synthesis either
        totals = (s.estimate or {}).get("totals") or {}
        if totals:
            res_rows.append([f"#{s.number} estimate", *[f"{totals.get(r, 0):.0f} "
                                                         f"({100 * totals.get(r, 0) / cap[r]:.1f} %)" for r in cap]])
        if s.synthesis:
            synth = s.synthesis.get("totals", {})
            res_rows.append([f"#{s.number} synthesis", *[f"{synth.get(r, 0):.0f}" for r in cap]])
    if res_rows:
        parts.append("<h2>Resource utilization</h2>")
        res_rows.append(["device capacity", *[cap[r] for r in cap]])
        parts.append(_table(["", *cap], res_rows))
        parts.append(_img(folder, plots.resources(data.selected, cap, fig), "resources"))

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
                         f"{lo['metric']:.4f} vs {lo['searched_metric']:.4f} searched; BOPs {lo['bops']:.4g}, "
                         f"effective BOPs {lo['effective_bops']:.4g}, EBOPs {lo.get('ebops', float('nan')):.4g}. "
                         "The figures below show this model.</p>")
            parts.append("<pre>" + html.escape(lo["table"]) + "</pre>")
        if s.export:
            parts.append(_table(["exported", "artefact", "source digest"],
                                [[p["path"], p["artefact"] or (f"FAILED: {p['error']}" if p.get("error")
                                                               else f"skipped: {p['skipped']}"),
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
    if data.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in data.notes) + "</ul>")
    parts.append("</body></html>")
    (folder / "index.html").write_text("\n".join(p for p in parts if p))


def write_report(data: ReportData, folder: Path | None = None) -> Path:
    """Render the report into ``folder`` (default ``<output>/report``) and return ``index.html``'s path."""
    target = Path(folder) if folder is not None else data.experiment.output_dir() / "report"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        _render(data, tmp)
        old = target.with_name(f".{target.name}.old.{uuid.uuid4().hex[:8]}")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target / "index.html"
