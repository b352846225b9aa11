"""Seed 001's LUTs vs EBOPs in the report (issue 25): the power-law fit, the points read from the run's synthesis
records, the figure and ``lut_ebops.csv``, and the design dataset shipped as package data. Hand-made data only: no
training, no Yosys."""

from __future__ import annotations

import csv
import fnmatch
import math
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from hwnas.report import lut_ebops, plots
from hwnas.report.collect import BaselineResult, SelectedModel
from hwnas.report.lut_ebops import LutEbopsPoint, fit_power_law

ROOT = Path(__file__).parents[1]


def test_fit_recovers_the_exponent_and_needs_three_distinct_ebops() -> None:
    xs = [120.0, 900.0, 4000.0, 25000.0, 310000.0]
    fit = fit_power_law(xs, [0.4 * x ** 0.9 for x in xs])
    assert fit is not None and fit.n == 5
    assert fit.a == pytest.approx(0.4, rel=1e-9) and fit.b == pytest.approx(0.9, rel=1e-9)
    assert fit(1000.0) == pytest.approx(0.4 * 1000.0 ** 0.9) and fit.text() == "0.400·EBOPs^0.900"
    assert fit_power_law(xs[:2], [1.0, 2.0]) is None  # fewer than 3 points
    assert fit_power_law([100.0, 100.0, 200.0], [10.0, 12.0, 20.0]) is None  # 3 points, 2 distinct EBOPs
    # a point not above 0 has no logarithm: left out, and then too few remain
    assert fit_power_law([0.0, 100.0, 200.0], [5.0, 10.0, 20.0]) is None
    fit = fit_power_law([*xs, 50.0], [0.4 * x ** 0.9 for x in xs] + [0.0])
    assert fit is not None and fit.n == 5 and fit.b == pytest.approx(0.9)


def test_points_come_from_the_synthesis_records_with_the_synthesized_models_ebops() -> None:
    local = {"checkpoint": "local/trial_00007/model.pt", "ebops": 800.0}
    selected = [
        # synthesized the local search's model: the local record's EBOPs, not the trial's
        SelectedModel(7, "best", {"ebops": 1000.0}, "p", None, None, local=local,
                      synthesis={"model": "local/trial_00007/model.pt", "device": "ZCU104", "totals": {"luts": 500.0}}),
        # synthesized before the local search ran: the trial's model and EBOPs
        SelectedModel(3, "knee", {"ebops": 300.0}, "p", None, None, local={"checkpoint": "local/x.pt", "ebops": 1.0},
                      synthesis={"model": "trials/00003/model.pt", "device": "ZCU104", "totals": {"luts": 250.0}}),
        SelectedModel(5, "max", {}, "p", None, None, synthesis={"totals": {"luts": 90.0}}),  # no EBOPs
        SelectedModel(6, "min", {"ebops": 50.0}, "p", None, None),  # not synthesized
    ]
    baselines = [BaselineResult("mlp-8b", metrics={"ebops": 2000.0}, synthesis={"totals": {"luts": 1500.0}}),
                 BaselineResult("big", metrics={"ebops": 9e6}, synthesis="above run.synth_max_macs")]
    points, missing = lut_ebops.lut_ebops_points(SimpleNamespace(selected=selected, baselines=baselines))
    assert [(p.name, p.kind, p.ebops, p.luts) for p in points] == [
        ("#7 best (local search)", "local", 800.0, 500.0), ("#3 knee", "selected", 300.0, 250.0),
        ("mlp-8b", "baseline", 2000.0, 1500.0)]
    assert missing == ["#5 max: no EBOPs recorded"]


def test_figure_and_csv_from_hand_made_points(tmp_path, monkeypatch) -> None:
    points = [LutEbopsPoint("#1 knee", "selected", 1000.0, 0.4 * 1000.0 ** 0.9, "ZCU104", 1),
              LutEbopsPoint("#2 best (local search)", "local", 8000.0, 0.4 * 8000.0 ** 0.9, "ZCU104", 2),
              LutEbopsPoint("mlp-8b", "baseline", 50000.0, 0.4 * 50000.0 ** 0.9, "ZCU104")]
    fit = fit_power_law([p.ebops for p in points], [p.luts for p in points])
    ref = {"dataset": "toy", "designs": [(100.0, 30.0, "fixed"), (1000.0, 200.0, "hgq"), (5000.0, 900.0, "fixed")]}
    from matplotlib.axes import Axes

    labels: list[str] = []
    legend = Axes.legend

    def spy(self, *args, **kwargs):
        labels.extend(t.get_text() for t in legend(self, *args, **kwargs).get_texts())
        return self.get_legend()

    monkeypatch.setattr(Axes, "legend", spy)
    path = plots.lut_vs_ebops(points, tmp_path / "figures", fit, ref, fit_power_law([100, 1000, 5000], [30, 200, 900]))
    assert path == tmp_path / "figures" / "lut_vs_ebops.png" and path.stat().st_size > 1000
    assert "this run (3 models): LUT = 0.400·EBOPs^0.900" in labels
    assert "seed 001 (HGQ): LUT = EBOPs^0.985" in labels and any(t.startswith("toy fit: LUT = ") for t in labels)
    labels.clear()
    assert plots.lut_vs_ebops(points[:2], tmp_path / "two", None, None) is not None  # no fit, no background
    assert labels == ["seed 001 (HGQ): LUT = EBOPs^0.985", "selected (Yosys)", "local search (Yosys)"]
    assert plots.lut_vs_ebops([], tmp_path / "none") is None and not (tmp_path / "none").exists()

    lut_ebops.write_csv(points, tmp_path / "lut_ebops.csv", fit)
    with open(tmp_path / "lut_ebops.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["model"] for r in rows] == ["#1 knee", "#2 best (local search)", "mlp-8b"]
    assert rows[2]["trial"] == "" and rows[0]["trial"] == "1" and rows[0]["device"] == "ZCU104"
    assert float(rows[0]["seed_luts"]) == pytest.approx(1000.0 ** 0.985)
    assert float(rows[1]["luts_over_seed"]) == pytest.approx(0.4 * 8000.0 ** 0.9 / 8000.0 ** 0.985)
    assert float(rows[2]["fit_luts"]) == pytest.approx(float(rows[2]["luts_yosys"]))


def test_the_design_dataset_ships_as_package_data() -> None:
    lut_ebops.load_reference.cache_clear()
    ref = lut_ebops.load_reference()
    assert ref is not None and ref["dataset"] == "designs-v1" and ref["device"] == "ZCU104"
    assert ref["yosys"].startswith("Yosys 0.70") and "synth_xilinx -family xcup" in ref["synthesis"]
    assert "bench/lut_ebops_reference.py" in ref["header"] and ref["designs_in_dataset"] == 254
    assert len(ref["designs"]) == 250 and {k for _, _, k in ref["designs"]} == {"fixed", "hgq"}
    assert all(x > 0 and y > 0 for x, y, _ in ref["designs"])
    fits = lut_ebops.reference_fits(ref)
    assert set(fits) == {"all", "fixed", "hgq"} and 0.9 < fits["all"].b < 1.2 and fits["all"].n == 250
    # the wheel carries it: pyproject's package-data names it
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["hwnas"]
    rel = lut_ebops.REFERENCE_FILE.relative_to(ROOT / "src" / "hwnas").as_posix()
    assert any(fnmatch.fnmatch(rel, p) for p in patterns)
    assert lut_ebops.load_reference(ROOT / "no-such-file.json") is None
    assert math.isclose(lut_ebops.SEED_EXPONENT, 0.985)
