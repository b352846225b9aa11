"""LUTs against EBOPs on the run's own synthesized models: seed 001's (HGQ) LUT ≈ EBOPs^0.985, checked.

Contract: :func:`lut_ebops_points` lists every model of a :class:`~hwnas.report.collect.ReportData` that Yosys
synthesized — a selected model (``synth/trial_<n>.json``; the local search's model when the synth stage synthesized
that one, with the local record's EBOPs) and a baseline (``baselines/<name>.json``'s ``synthesis``) — as
``(name, EBOPs, LUTs)``, and why a synthesized model has no point (no EBOPs, or a count not above 0).
:func:`fit_power_law` fits log(LUT) = log(a) + b·log(EBOPs) by least squares when at least
:data:`MIN_FIT_POINTS` points have distinct EBOPs. :func:`load_reference` reads the design dataset shipped as
package data (``lut_ebops_designs.json``, written by ``bench/lut_ebops_reference.py``): the figure's grey
background. :func:`write_csv` writes ``lut_ebops.csv``. Nothing is trained or synthesized here.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["MIN_FIT_POINTS", "REFERENCE_FILE", "SEED_EXPONENT", "LutEbopsPoint", "PowerLaw", "fit_power_law",
           "load_reference", "lut_ebops_points", "reference_fits", "write_csv"]

SEED_EXPONENT = 0.985
"""Seed 001 (HGQ), Fig. 3: LUT ≈ EBOPs^0.985 (prefactor 1; Vivado on the seed's jet, SVHN and muon models)."""

MIN_FIT_POINTS = 3
"""The fewest points with distinct EBOPs a power law is fitted on."""

REFERENCE_FILE = Path(__file__).with_name("lut_ebops_designs.json")
"""The design dataset's (EBOPs, Yosys LUTs, kind) shipped as package data (``bench/lut_ebops_reference.py``)."""


@dataclass(frozen=True)
class LutEbopsPoint:
    """One synthesized model of the run."""

    name: str
    """``#12 knee``, ``#12 knee (local search)`` or the baseline's name."""
    kind: str
    """``selected``, ``local`` (a selected trial's local-search model) or ``baseline``."""
    ebops: float
    luts: float
    """Yosys LUTs (the synthesis record's ``totals``)."""
    device: str = ""
    trial: int | None = None


@dataclass(frozen=True)
class PowerLaw:
    """LUT = a · EBOPs^b, fitted by least squares on the logarithms of ``n`` points."""

    a: float
    b: float
    n: int

    def __call__(self, ebops: float) -> float:
        """The fitted LUTs at ``ebops``."""
        return self.a * float(ebops) ** self.b

    def text(self) -> str:
        """``0.229·EBOPs^1.045`` (a to 3 significant digits, never in exponent notation; b to 3 decimals)."""
        return f"{_plain(self.a)}·EBOPs^{self.b:.3f}"


def _plain(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits, positional: ``0.0703``, ``1.23``, ``1230``."""
    if not math.isfinite(x) or x == 0:
        return str(x)
    decimals = min(12, max(0, digits - 1 - math.floor(math.log10(abs(x)))))
    return f"{round(x, decimals):.{decimals}f}"


def _positive(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    x = float(v)
    return x if math.isfinite(x) and x > 0 else None


def fit_power_law(ebops: Sequence[float], luts: Sequence[float]) -> PowerLaw | None:
    """LUT = a·EBOPs^b fitted on ``log(luts) = log(a) + b·log(ebops)`` by least squares, or None.

    Pairs with a value not above 0 are left out; None when fewer than :data:`MIN_FIT_POINTS` distinct EBOPs remain.
    """
    pairs = [(x, y) for x, y in zip(ebops, luts, strict=True)
             if _positive(x) is not None and _positive(y) is not None]
    if len({float(x) for x, _ in pairs}) < MIN_FIT_POINTS:
        return None
    lx = [math.log(float(x)) for x, _ in pairs]
    ly = [math.log(float(y)) for _, y in pairs]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    b = sum((x - mx) * (y - my) for x, y in zip(lx, ly, strict=True)) / sum((x - mx) ** 2 for x in lx)
    return PowerLaw(a=math.exp(my - b * mx), b=b, n=len(pairs))


def _totals(synthesis: Any) -> dict[str, Any] | None:
    return synthesis.get("totals") if isinstance(synthesis, dict) and isinstance(synthesis.get("totals"), dict) \
        else None


def _same_file(a: Any, b: Any) -> bool:
    return a is not None and b is not None and Path(str(a)).as_posix() == Path(str(b)).as_posix()


def lut_ebops_points(data: Any) -> tuple[list[LutEbopsPoint], list[str]]:
    """The run's synthesized models as points, and why a synthesized model is not one.

    A selected model's EBOPs are its trial's (``metrics.ebops``), or the local search's (``local/trial_<n>.json``)
    when the synthesis record names the local search's model file (an old record without ``model`` next to a local
    search: the synth stage synthesizes the local model when there is one); a baseline's are its record's metrics'.
    """
    points: list[LutEbopsPoint] = []
    missing: list[str] = []

    def add(name: str, kind: str, ebops: Any, synthesis: Any, trial: int | None = None) -> None:
        totals = _totals(synthesis)
        if totals is None:
            return
        x, y = _positive(ebops), _positive(totals.get("luts"))
        if x is None:
            missing.append(f"{name}: no EBOPs recorded")
        elif y is None:
            missing.append(f"{name}: {totals.get('luts')} LUTs (no logic left)")
        else:
            points.append(LutEbopsPoint(name, kind, x, y, str(synthesis.get("device") or ""), trial))

    for s in data.selected:
        local = s.local if isinstance(s.local, dict) else None
        synthesis = s.synthesis if isinstance(s.synthesis, dict) else None
        model = (synthesis or {}).get("model")
        if local is not None and (model is None or _same_file(model, local.get("checkpoint"))):
            ebops = local.get("ebops", (local.get("metrics") or {}).get("ebops"))
            add(f"#{s.number} {s.rule} (local search)", "local", ebops, synthesis, s.number)
        else:
            add(f"#{s.number} {s.rule}", "selected", (s.metrics or {}).get("ebops"), synthesis, s.number)
    for b in data.baselines:
        add(b.name, "baseline", (b.metrics or {}).get("ebops"), b.synthesis)
    return points, missing


@cache
def load_reference(path: Path = REFERENCE_FILE) -> dict[str, Any] | None:
    """The shipped design dataset, or None when the file is missing or not of its form (then no background).

    Its keys: ``dataset``, ``yosys``, ``synthesis``, ``device``, ... and ``designs``, ``(ebops, luts, kind)`` rows
    with both numbers above 0. The result is cached: do not change it.
    """
    try:
        ref = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    rows = ref.get("designs") if isinstance(ref, dict) else None
    if not isinstance(rows, list):
        return None
    ref["designs"] = [(float(r[0]), float(r[1]), str(r[2])) for r in rows
                      if isinstance(r, list) and len(r) == 3 and _positive(r[0]) and _positive(r[1])]
    return ref


def reference_fits(ref: dict[str, Any] | None) -> dict[str, PowerLaw]:
    """The power law of the whole design dataset (``all``) and of each quantization kind (``fixed``, ``hgq``)."""
    if not ref:
        return {}
    rows = ref["designs"]
    fits = {"all": fit_power_law([r[0] for r in rows], [r[1] for r in rows])}
    for kind in dict.fromkeys(r[2] for r in rows):
        fits[kind] = fit_power_law([r[0] for r in rows if r[2] == kind], [r[1] for r in rows if r[2] == kind])
    return {k: v for k, v in fits.items() if v is not None}


def write_csv(points: Sequence[LutEbopsPoint], path: Path, fit: PowerLaw | None = None) -> Path:
    """``lut_ebops.csv``: per point its EBOPs, Yosys LUTs, the seed's EBOPs^0.985 and LUTs over it, the run's fit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "kind", "trial", "device", "ebops", "luts_yosys", "seed_luts", "luts_over_seed",
                    "fit_luts"])
        for p in points:
            seed = p.ebops ** SEED_EXPONENT
            w.writerow([p.name, p.kind, "" if p.trial is None else p.trial, p.device, repr(p.ebops), repr(p.luts),
                        repr(seed), repr(p.luts / seed), "" if fit is None else repr(fit(p.ebops))])
    return path
