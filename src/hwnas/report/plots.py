"""The report's figures as PNG files (matplotlib, Agg backend; no display needed).

Each function writes one PNG and returns its path, or None when there is nothing to draw (then the page
leaves the figure out). Figures: every pair of objectives with feasible, infeasible and front trials, the
selected models, the baselines (green stars, by name) and the budgets on those objectives marked; the
hypervolume of the front found so far over the trials (convergence); per-layer latency (cycles) of a selected
model; per-layer CPU latency (µs, from the CPU latency table); weight and activation bit-width histograms;
resource use against the device's capacity (estimate, and synthesis hatched beside it); accuracy per SNR
(selected models, baselines dashed); cycles per layer of every model of the report's tables as one stacked bar
each; LUTs against EBOPs of the synthesized models (seed 001's power law, the run's fit and the design dataset).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Patch

__all__ = ["accuracy_per_snr", "bit_histograms", "cpu_layer_latency", "hypervolume", "layer_latency",
           "layer_latency_models", "lut_vs_ebops", "metric_value", "pareto_pairs", "resource_series", "resources"]

_DPI = 110


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


_LOG_AXES = ("bops", "ebops", "macs", "luts", "wbits", "params", "cpu_latency_ms")


def metric_value(metrics: Any, name: str) -> float | None:
    """``metrics[name]`` as a finite float, else None."""
    v = (metrics or {}).get(name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or abs(v) == float("inf"):
        return None
    return float(v)


def pareto_pairs(trials: list[dict[str, Any]], objectives: list[tuple[str, str]], selected: dict[int, str],
                 folder: Path, budgets: dict[str, list[float | None]] | None = None,
                 baselines: Sequence[Any] = ()) -> list[Path]:
    """One scatter per objective pair (a single objective: against trial number).

    ``budgets`` (metric → the absolute bounds of its constraints; None: no bound) are drawn as dashed lines
    on the axes of those metrics. ``baselines`` (name, metrics: :class:`~hwnas.report.collect.BaselineResult`)
    with both metrics of a pair are green stars labelled with their name (a single objective: a dotted line).
    """
    names = [m for m, _ in objectives]
    pairs = list(itertools.combinations(names, 2)) if len(names) > 1 else [("trial", names[0])]
    out = []
    for a, b in pairs:
        fig, ax = plt.subplots(figsize=(5.2, 4.0))

        def xy(rows: list[dict[str, Any]], a: str = a, b: str = b) -> tuple[list[float], list[float]]:
            xs = [r["number"] if a == "trial" else r["objectives"][a] for r in rows]
            return xs, [r["objectives"][b] for r in rows]

        groups = (("infeasible", [t for t in trials if not t["feasible"]], dict(c="#bbbbbb", marker="x", s=18)),
                  ("feasible", [t for t in trials if t["feasible"] and not t["front"]], dict(c="#6b8fc9", s=14)),
                  ("Pareto front", [t for t in trials if t["front"]], dict(c="#d9480f", s=26)))
        for label, rows, style in groups:
            if rows:
                ax.scatter(*xy(rows), label=label, **style)
        for t in trials:
            if t["number"] in selected:
                x, y = xy([t])
                ax.scatter(x, y, s=140, facecolors="none", edgecolors="black", linewidths=1.5)
                ax.annotate(f"#{t['number']} {selected[t['number']]}", (x[0], y[0]), xytext=(6, 6),
                            textcoords="offset points", fontsize=8)
        starred = False
        for ref in baselines:
            y = metric_value(ref.metrics, b)
            if a == "trial":
                if y is not None:
                    ax.axhline(y, color="#2b8a3e", linestyle=":", linewidth=1.2)
                    ax.annotate(f"baseline {ref.name}", (0, y), xycoords=("axes fraction", "data"), xytext=(4, 3),
                                textcoords="offset points", fontsize=8, color="#2b8a3e")
                continue
            x = metric_value(ref.metrics, a)
            if x is None or y is None or (a in _LOG_AXES and x <= 0) or (b in _LOG_AXES and y <= 0):
                continue
            ax.scatter([x], [y], marker="*", s=190, c="#2b8a3e", edgecolors="black", linewidths=0.7, zorder=5,
                       label=None if starred else "baseline")
            starred = True
            ax.annotate(ref.name, (x, y), xytext=(7, -11), textcoords="offset points", fontsize=8, color="#2b8a3e")
        for metric, line in ((a, ax.axvline), (b, ax.axhline)):
            for bound in (budgets or {}).get(metric, ()):
                if bound is not None:
                    line(bound, color="#888888", linestyle="--", linewidth=1)
        ax.set_xlabel(a)
        ax.set_ylabel(b)
        if b in _LOG_AXES:
            ax.set_yscale("log")
        if a in _LOG_AXES:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        out.append(_save(fig, folder / f"pareto_{a}_{b}.png"))
    return out


def layer_latency(number: int, estimate: dict[str, Any] | None, folder: Path) -> Path | None:
    """Cycles per hardware stage of the estimate (FINN: the slowest stage sets the throughput)."""
    rows = (estimate or {}).get("rows") or []
    rows = [r for r in rows if r.get("cycles", 0) > 0]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.0, 0.35 * len(rows) + 1.4))
    names = [f"{r['name']} ({r['type']})" for r in rows]
    cycles = [r["cycles"] for r in rows]
    worst = max(cycles)
    ax.barh(names, cycles, color=["#d9480f" if c == worst else "#6b8fc9" for c in cycles])
    ax.invert_yaxis()
    ax.set_xlabel("cycles per sample")
    ax.set_title(f"trial {number}: per-layer latency ({estimate.get('model', '')}, {estimate.get('device', '')})",
                 fontsize=9)
    return _save(fig, folder / f"latency_{number:05d}.png")


def cpu_layer_latency(number: int, cpu: dict[str, Any] | None, folder: Path) -> Path | None:
    """Predicted µs per layer on the CPU (the session overhead as its own grey bar; the slowest layer orange)."""
    rows = [r for r in (cpu or {}).get("rows") or [] if r["us"] > 0]
    if not rows:
        return None
    names = [f"{r['layer']} ({r['op']})" for r in rows] + ["(session overhead)"]
    us = [r["us"] for r in rows]
    worst = max(us)
    colors = ["#d9480f" if u == worst else "#6b8fc9" for u in us] + ["#aaaaaa"]
    fig, ax = plt.subplots(figsize=(6.0, 0.35 * len(names) + 1.4))
    ax.barh(names, [*us, cpu["overhead_us"]], color=colors)
    ax.invert_yaxis()
    ax.set_xlabel("µs per inference (predicted)")
    title = f"trial {number}: CPU latency per layer, total {cpu['total_us']:.1f} µs"
    if cpu.get("measured_us") is not None:
        title += f" (measured {cpu['measured_us']:.1f} µs)"
    ax.set_title(title, fontsize=9)
    return _save(fig, folder / f"cpu_latency_{number:05d}.png")


def bit_histograms(number: int, weight: dict[int, int], act: dict[int, int], folder: Path) -> Path | None:
    """Element counts per bit-width, weights (and biases) beside activations."""
    if not weight and not act:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.0))
    for ax, data, title in ((axes[0], weight, "weights and biases"), (axes[1], act, "activations")):
        if data:
            keys = sorted(data)
            ax.bar(keys, [data[k] for k in keys], color="#6b8fc9")
            ax.set_xticks(keys)
        ax.set_xlabel("bits")
        ax.set_ylabel("elements")
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"trial {number}: bit-width histogram", fontsize=10)
    return _save(fig, folder / f"bits_{number:05d}.png")


def resource_series(selected: Sequence[Any]) -> list[tuple[str, int, dict[str, Any]]]:
    """The bars of :func:`resources`: ``(kind, trial, totals)`` with kind ``estimate`` or ``synthesis``."""
    series = []
    for s in selected:
        est = (s.estimate or {}).get("totals") or {}
        syn = (s.synthesis or {}).get("totals") if isinstance(s.synthesis, dict) else None
        if est:
            series.append(("estimate", s.number, est))
        if syn:
            series.append(("synthesis", s.number, syn))
    return series


def resources(selected: list[Any], capacity: dict[str, int], folder: Path) -> Path | None:
    """Share of each device resource used by every selected model.

    The cost model's estimate and, when the synth stage ran, the synthesized counts beside it (hatched, the same
    colour).
    """
    series = resource_series(selected)
    if not series:
        return None
    res = [r for r in ("luts", "ffs", "bram18", "dsps") if capacity.get(r)]
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    width = 0.8 / len(series)
    cmap = plt.get_cmap("tab10")
    numbers = list(dict.fromkeys(n for _, n, _ in series))
    for k, (kind, number, totals) in enumerate(series):
        shares = [100.0 * float(totals.get(r, 0.0) or 0.0) / capacity[r] for r in res]
        color = cmap(numbers.index(number) % 10)
        ax.bar([i + k * width for i in range(len(res))], shares, width, color=color,
               hatch="//" if kind == "synthesis" else None, edgecolor="white" if kind == "synthesis" else color,
               label=f"#{number} {'synthesis (Yosys)' if kind == 'synthesis' else 'estimate'}")
    ax.axhline(100, color="black", linewidth=0.8)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(res))])
    ax.set_xticklabels(res)
    ax.set_ylabel("% of device")
    ax.legend(fontsize=8)
    synthesized = any(kind == "synthesis" for kind, _, _ in series)
    ax.set_title("resource utilization (cost model" + (" and synthesis)" if synthesized else ")"), fontsize=9)
    return _save(fig, folder / "resources.png")


def hypervolume(curve: Sequence[tuple[int, bool, float]], folder: Path) -> Path | None:
    """Hypervolume of the feasible front found so far against the trial number (a step line; a dot where it grew)."""
    if not curve:
        return None
    xs = [n for n, _, _ in curve]
    ys = [hv for _, _, hv in curve]
    fig, ax = plt.subplots(figsize=(5.6, 3.2))
    ax.step(xs, ys, where="post", color="#6b8fc9")
    grew = [k for k, y in enumerate(ys) if y > (ys[k - 1] if k else 0.0)]
    if grew:
        ax.scatter([xs[k] for k in grew], [ys[k] for k in grew], s=16, c="#d9480f", zorder=3, label="front grew")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume (share of the box)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title("convergence: hypervolume of the front found so far", fontsize=9)
    return _save(fig, folder / "hypervolume.png")


def accuracy_per_snr(selected: list[Any], folder: Path, baselines: Sequence[Any] = ()) -> Path | None:
    """Test accuracy against SNR of every selected model and baseline (dashed, by name; tasks with SNR labels)."""
    rows = [s for s in selected if s.accuracy_per_snr]
    refs = [b for b in baselines if b.accuracy_per_snr]
    if not rows and not refs:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for s in rows:
        snrs = sorted(s.accuracy_per_snr)
        ax.plot(snrs, [s.accuracy_per_snr[k] for k in snrs], marker="o", label=f"#{s.number}")
    for b in refs:
        snrs = sorted(b.accuracy_per_snr)
        ax.plot(snrs, [b.accuracy_per_snr[k] for k in snrs], linestyle="--", marker=".", label=b.name)
    ax.set_xlabel("SNR (dB)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, folder / "accuracy_per_snr.png")


_MAX_MODELS = 20


def layer_latency_models(rows: Sequence[Any], folder: Path) -> Path | None:
    """Cycles per layer of each model as one horizontal bar of its layers in order, coloured by layer type.

    ``rows`` have ``name`` and the estimate's ``layers`` (e.g. :class:`~hwnas.report.tables.TableRow`); the first 20
    with an estimate are drawn.
    """
    rows = [r for r in rows if any(layer.get("cycles", 0) > 0 for layer in r.layers)][:_MAX_MODELS]
    if not rows:
        return None
    types = list(dict.fromkeys(str(layer.get("type", "")) for r in rows for layer in r.layers))
    cmap = plt.get_cmap("tab10")
    colors = {t: cmap(i % 10) for i, t in enumerate(types)}
    fig, ax = plt.subplots(figsize=(7.0, 0.4 * len(rows) + 1.6))
    for y, r in enumerate(rows):
        left = 0.0
        for layer in r.layers:
            cycles = float(layer.get("cycles", 0))
            if cycles > 0:
                ax.barh(y, cycles, left=left, color=colors[str(layer.get("type", ""))], edgecolor="white",
                        linewidth=0.6)
                left += cycles
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r.name for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("cycles per sample (layers in order)")
    ax.legend(handles=[Patch(color=colors[t], label=t) for t in types], fontsize=7,
              loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("per-layer latency of the tables' models (cost model)", fontsize=9)
    return _save(fig, folder / "layer_latency_models.png")


_POINT_STYLE = {"selected": dict(c="#d9480f", marker="o", s=46), "local": dict(c="#d9480f", marker="D", s=40),
                "baseline": dict(c="#2b8a3e", marker="*", s=150)}


def lut_vs_ebops(points: Sequence[Any], folder: Path, fit: Any = None, reference: dict[str, Any] | None = None,
                 reference_fit: Any = None, seed_exponent: float = 0.985, min_fit: int = 3) -> Path | None:
    """Yosys LUTs against EBOPs of the run's synthesized models (log-log), labelled; None without a point.

    ``points`` have name, kind (``selected``, ``local``, ``baseline``), ebops and luts
    (:class:`~hwnas.report.lut_ebops.LutEbopsPoint`); ``fit`` and ``reference_fit`` are
    :class:`~hwnas.report.lut_ebops.PowerLaw` or None. Drawn: the design dataset ``reference`` (its ``designs``:
    ebops, luts, kind) in grey (circles fixed widths, triangles HGQ) with its fit dashed, the seed's
    LUT = EBOPs^``seed_exponent`` dotted, the run's points and its fit solid; the legend gives a and b. Without a
    fit the title says it needs ``min_fit`` synthesized models.
    """
    if not points:
        return None
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    designs = list((reference or {}).get("designs") or ())
    xs_all = [p.ebops for p in points] + [d[0] for d in designs]
    lo, hi = min(xs_all) / 1.5, max(xs_all) * 1.5
    name = (reference or {}).get("dataset", "design dataset")
    for kind, marker, label in (("fixed", "o", "fixed widths"), ("hgq", "^", "HGQ widths")):
        rows = [d for d in designs if d[2] == kind]
        if rows:
            ax.scatter([d[0] for d in rows], [d[1] for d in rows], s=10, marker=marker, c="#bdbdbd", alpha=0.7,
                       linewidths=0, label=f"{name}, {label} ({len(rows)})", zorder=1)
    grid = np.geomspace(lo, hi, 50)
    if reference_fit is not None:
        ax.plot(grid, [reference_fit(x) for x in grid], color="#888888", linestyle="--", linewidth=1.2, zorder=2,
                label=f"{name} fit: LUT = {reference_fit.text()}")
    ax.plot(grid, grid ** seed_exponent, color="black", linestyle=":", linewidth=1.4, zorder=2,
            label=f"seed 001 (HGQ): LUT = EBOPs^{seed_exponent}")
    for kind, style in _POINT_STYLE.items():
        rows = [p for p in points if p.kind == kind]
        if rows:
            ax.scatter([p.ebops for p in rows], [p.luts for p in rows], edgecolors="black", linewidths=0.7, zorder=4,
                       label={"selected": "selected (Yosys)", "local": "local search (Yosys)",
                              "baseline": "baseline (Yosys)"}[kind], **style)
    span = math.log(hi / lo)
    for k, p in enumerate(sorted(points, key=lambda p: p.ebops)):  # right-hand labels to the left; up, down, up
        left = math.log(p.ebops / lo) > 0.7 * span
        ax.annotate(p.name, (p.ebops, p.luts), xytext=(-7 if left else 7, 5 if k % 2 == 0 else -12),
                    textcoords="offset points", fontsize=8, zorder=5, ha="right" if left else "left",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75})
    if fit is not None:
        xs = np.geomspace(min(p.ebops for p in points), max(p.ebops for p in points), 30)
        ax.plot(xs, [fit(x) for x in xs], color="#d9480f", linewidth=1.8, zorder=3,
                label=f"this run ({fit.n} models): LUT = {fit.text()}")
        title = f"LUTs vs EBOPs: {len(points)} synthesized models, fitted exponent {fit.b:.3f}"
    else:
        title = (f"LUTs vs EBOPs: {len(points)} synthesized model{'s' if len(points) != 1 else ''} "
                 f"(a fit needs ≥ {min_fit})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("EBOPs")
    ax.set_ylabel("LUTs (Yosys)")
    ax.grid(alpha=0.3, which="both", linewidth=0.5)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(title, fontsize=9)
    return _save(fig, folder / "lut_vs_ebops.png")
