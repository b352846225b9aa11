"""The run report: Pareto projections, per-layer latency, bit-width histograms, resources, verification.

* :mod:`hwnas.report.collect` — gather what the report shows from the output folder and the study.
* :mod:`hwnas.report.plots` — the PNG figures (matplotlib, Agg).
* :mod:`hwnas.report.tables` — seed 000's Table II / Table III, per-layer latency and the Pareto CSV.
* :mod:`hwnas.report.lut_ebops` — seed 001's LUTs vs EBOPs on the run's synthesized models, with the fit.
* :mod:`hwnas.report.html` — the static page and its CSV/Markdown tables, written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .collect import BaselineResult, ReportData, SelectedModel, collect
from .html import write_report

__all__ = ["BaselineResult", "ReportData", "SelectedModel", "build_report", "collect", "write_report"]


def build_report(experiment: Any, study: Any, folder: Path | None = None) -> Path:
    """Collect and render the report of ``experiment`` (default ``<output>/report/index.html``)."""
    return write_report(collect(experiment, study), folder)
