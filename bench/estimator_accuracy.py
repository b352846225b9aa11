"""Estimator accuracy against Yosys synthesis on the design dataset's held-out designs.

Reads ``bench/data/designs-v1.jsonl`` (made by ``bench/design_dataset.py``), splits it by each design's key
(a fixed 25 % held-out split: ``int(key, 16) % 4 == 0``; never fitted on), fits what needs fitting on the
training split only, and prints per estimator and resource (LUT, FF) the MAPE, Spearman's rank correlation and
the worst relative error on the held-out designs, with the time per estimate:

* LUT: EBOPs; EBOPs^0.985 (seed 001's relation); a·EBOPs^b fitted (log-log least squares); the hls4ml model
  (Latency strategy, and distributed arithmetic); the FINN model folded for II = 1; BOPs; alkaid's
  ``comb.cost`` raw and × a factor fitted on the training split; the factor shipped in
  :data:`hwnas.cost.alkaid_model.CALIBRATION`.
* FF (pipelined designs only; combinational ones have none): the FINN model; alkaid's register bits raw,
  fitted, shipped. hls4ml's model has no FFs.
* Both: the learned surrogate (``hardware.model: surrogate``, :mod:`hwnas.cost.surrogate`, trained by
  ``bench/train_surrogate.py`` on this training split), its point estimate and the share of held-out designs
  inside its 10–90 % interval; its latency in cycles against alkaid's pipeline.
* Fmax (``--ecp5-data``, default ``bench/data/designs-ecp5-v1.jsonl``: the same specs placed and routed by
  nextpnr-ecp5 on an ECP5-85, pipelined designs only; same split by key): the median Fmax of the training split
  (the trivial baseline), alkaid's delay model ``1000 / (delay_ns / stages)`` (its mean stage delay) raw and ×
  a factor fitted on the training split, and the surrogate's ``fmax_mhz`` with its 10–90 % interval.
* rule4ml (seed 004's surrogate) is not run: see :data:`RULE4ML`.

Times: the hls4ml/FINN/alkaid seconds recorded per design, and ``--time K`` re-runs the full in-loop
estimate (``hwnas.cost.estimate(kind=...)``, and ``model_metrics`` for EBOPs/BOPs) on K held-out designs rebuilt
from their specs, checking that alkaid's cost reproduces the stored value.

    OMP_NUM_THREADS=1 .venv/bin/python bench/estimator_accuracy.py [--data FILE] [--time 20] [--fit]

``--fit`` prints the ``CALIBRATION`` constant fitted on the training split.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).parent))
from design_dataset import DEFAULT_FILE, ECP5_FILE, ECP5_TARGET, XILINX_TARGET, build_model, read_designs

GOAL_MAPE, GOAL_SPEARMAN, GOAL_SECONDS = 0.10, 0.97, 1.0

RULE4ML = ("rule4ml 0.2.0 (PyPI) not run: it imports tensorflow>=2.15.1, keras, keras_tuner, optuna, torch and "
           "torch-geometric at load; resolving it in a scratch venv pulls tensorflow (a wheel of over 500 MB) and "
           "PyPI's CUDA torch (nvidia-cudnn/cublas/nccl-cu13, triton: several GB), so it was stopped; and it "
           "predicts hls4ml HLS projects (uniform ap_fixed, reuse factor, Vivado, pynq-z2/zcu102/alveo), not "
           "these alkaid RTL designs with per-element HGQ widths")
"""Why rule4ml has no row (docs/benchmarks.md)."""


def synthesized(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Designs with a synthesis result (no error)."""
    return [r for r in recs if "error" not in r and XILINX_TARGET in r.get("synth", {})]


def usable(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Synthesized designs with logic: a design pruned to constant outputs (0 LUTs) has no relative error."""
    return [r for r in synthesized(recs) if r["synth"][XILINX_TARGET]["luts"] > 0 and r["alkaid"]["cost"] > 0
            and r["features"]["ebops"] > 0]


def fmax_usable(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ECP5 designs with a placed-and-routed Fmax (pipelined: a combinational design has no clock)."""
    return [r for r in recs if "error" not in r and (r.get("synth", {}).get(ECP5_TARGET) or {}).get("fmax_mhz")
            and r["spec"]["latency_cutoff_ns"] > 0 and r["alkaid"]["delay_ns"] > 0]


def held_out(rec: dict[str, Any]) -> bool:
    """The fixed held-out split: a quarter of the designs, by key."""
    return int(rec["key"], 16) % 4 == 0


def _est(rec: dict[str, Any], name: str, field: str) -> float:
    e = rec["estimates"].get(name, {})
    return float(e[field]) if field in e else math.nan


def fit_power(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``y ≈ a·x^b`` by least squares on logs: (a, b)."""
    b, loga = np.polyfit(np.log(x), np.log(y), 1)
    return float(math.exp(loga)), float(b)


def fit_factor(x: np.ndarray, y: np.ndarray) -> float:
    """``y ≈ c·x``: c the geometric mean of y/x (least squares on the log ratio)."""
    return float(np.exp(np.mean(np.log(y / x))))


def fit_lut(cost: np.ndarray, mux: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``y ≈ a·cost + b·mux``, least squares on relative errors: (a, b)."""
    w = 1.0 / y
    a, b = np.linalg.lstsq(np.stack([cost, mux], axis=1) * w[:, None], y * w, rcond=None)[0]
    return float(a), float(b)


def scores(est: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MAPE, Spearman, worst relative error (signed) over the designs where the estimator answered."""
    ok = np.isfinite(est)
    e, t = est[ok], true[ok]
    if len(e) < 2:
        return {"n": len(e), "mape": math.nan, "spearman": math.nan, "worst": math.nan}
    rel = (e - t) / t
    worst = rel[np.argmax(np.abs(rel))]
    return {"n": len(e), "mape": float(np.mean(np.abs(rel))), "spearman": float(spearmanr(e, t)[0]),
            "worst": float(worst)}


def surrogate_predictions(recs: list[dict[str, Any]], target: str = XILINX_TARGET) -> dict[str, dict[str, float]]:
    """The shipped surrogate on each design, rebuilt from its spec at its own cut-off (combinational: 0).

    ``{key: {"luts", "luts_p10", "luts_p90", "ffs", ..., "latency_cycles", "seconds"}}``; ``seconds``: features
    and prediction. ``target``: an ECP5 target adds ``fmax_mhz`` (where the surrogate has it); the resources do
    not depend on it.
    """
    from hwnas.cost.catalog import get_device
    from hwnas.cost.surrogate import load_surrogate, surrogate_features

    sur = load_surrogate()
    ecp5 = get_device(target).yosys_family == "ecp5"
    out: dict[str, dict[str, float]] = {}
    for rec in recs:
        if rec["key"] in out:
            continue
        model, shape = build_model(rec["spec"])
        cut = rec["spec"]["latency_cutoff_ns"]
        t = time.perf_counter()
        pred = sur.predict(surrogate_features(model, shape, cut if cut > 0 else 0.0))
        if not ecp5:
            pred.pop("fmax_mhz", None)
        row = {"seconds": time.perf_counter() - t}
        for target, q in pred.items():
            row.update({target: q["point"], f"{target}_p10": q["p10"], f"{target}_p90": q["p90"]})
        out[rec["key"]] = row
    return out


def evaluate(recs: list[dict[str, Any]], surrogate: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """Fit on the training split, score on the held-out split: ``{"lut": {name: scores}, "ff": {...}, ...}``.

    ``surrogate``: :func:`surrogate_predictions` of (at least) the held-out designs, scored beside the others.
    """
    from hwnas.cost.alkaid_model import CALIBRATION

    train = [r for r in recs if not held_out(r)]
    test = [r for r in recs if held_out(r)]

    def col(rs: list[dict[str, Any]], fn: Any) -> np.ndarray:
        return np.array([fn(r) for r in rs], dtype=np.float64)

    def lut(r: dict[str, Any]) -> float:
        return r["synth"][XILINX_TARGET]["luts"]

    def ff(r: dict[str, Any]) -> float:
        return r["synth"][XILINX_TARGET]["ffs"]

    def ebops(r: dict[str, Any]) -> float:
        return r["features"]["ebops"]

    def cost(r: dict[str, Any]) -> float:
        return r["alkaid"]["cost"]

    def regs(r: dict[str, Any]) -> float:
        return r["alkaid"]["reg_bits"]

    a, b = fit_power(col(train, ebops), col(train, lut))
    c_lut = fit_factor(col(train, cost), col(train, lut))
    pa, pb = fit_power(col(train, cost), col(train, lut))

    def mux(r: dict[str, Any]) -> float:
        return r["alkaid"]["multiplexers"]

    la, lb = fit_lut(col(train, cost), col(train, mux), col(train, lut))
    piped_train = [r for r in train if ff(r) > 0 and regs(r) > 0]
    piped_test = [r for r in test if ff(r) > 0]
    c_ff = fit_factor(col(piped_train, regs), col(piped_train, ff)) if piped_train else math.nan
    true_lut, true_ff = col(test, lut), col(piped_test, ff)
    lut_est = {
        "EBOPs": col(test, ebops),
        "EBOPs^0.985 (seed 001)": col(test, ebops) ** 0.985,
        f"{a:.3g}·EBOPs^{b:.3f} (fitted)": a * col(test, ebops) ** b,
        "hls4ml model (Latency)": col(test, lambda r: _est(r, "hls4ml_latency", "luts")),
        "hls4ml model (DA)": col(test, lambda r: _est(r, "hls4ml_da", "luts")),
        "FINN model (II = 1)": col(test, lambda r: _est(r, "finn", "luts")),
        "BOPs": col(test, lambda r: r["features"]["bops"]),
        "alkaid raw (comb.cost)": col(test, cost),
        f"alkaid × {c_lut:.3f} (fitted)": c_lut * col(test, cost),
        f"alkaid {pa:.3g}·cost^{pb:.3f} (fitted)": pa * col(test, cost) ** pb,
        f"alkaid {la:.3f}·cost + {lb:.2f}·mux (fitted)": la * col(test, cost) + lb * col(test, mux),
        f"alkaid {CALIBRATION.lut:.3f}·cost + {CALIBRATION.lut_per_mux:.2f}·mux (shipped)":
            CALIBRATION.lut * col(test, cost) + CALIBRATION.lut_per_mux * col(test, mux),
    }
    ff_est = {
        "FINN model (II = 1)": col(piped_test, lambda r: _est(r, "finn", "ffs")),
        "alkaid raw (register bits)": col(piped_test, regs),
        f"alkaid × {c_ff:.3f} (fitted)": c_ff * col(piped_test, regs),
        f"alkaid × {CALIBRATION.ff:.3f} (shipped)": CALIBRATION.ff * col(piped_test, regs),
    }
    extra: dict[str, Any] = {}
    if surrogate is not None:
        def sur(rs: list[dict[str, Any]], field: str) -> np.ndarray:
            return col(rs, lambda r: surrogate[r["key"]][field])

        lut_est["surrogate (hwnas.cost.surrogate)"] = sur(test, "luts")
        ff_est["surrogate (hwnas.cost.surrogate)"] = sur(piped_test, "ffs")
        inside = {
            "lut": float(np.mean((true_lut >= sur(test, "luts_p10")) & (true_lut <= sur(test, "luts_p90")))),
            "ff": float(np.mean((true_ff >= sur(piped_test, "ffs_p10")) & (true_ff <= sur(piped_test, "ffs_p90"))))}
        cycles = col(piped_test, lambda r: r["alkaid"]["latency_cycles"])
        est_cycles = sur(piped_test, "latency_cycles")
        extra["surrogate"] = {"coverage": inside, "latency": {**scores(est_cycles, cycles),
                                                              "exact": float(np.mean(est_cycles == cycles))},
                              "seconds": float(np.median([surrogate[r["key"]]["seconds"] for r in test]))}
    return {**extra, "train": len(train), "test": len(test), "ff_test": len(piped_test), "ff_train": len(piped_train),
            "fit": {"lut_factor": c_lut, "ff_factor": c_ff, "ebops_a": a, "ebops_b": b, "cost_a": pa, "cost_b": pb,
                    "lut_cost": la, "lut_mux": lb},
            "lut": {k: scores(v, true_lut) for k, v in lut_est.items()},
            "ff": {k: scores(v, true_ff) for k, v in ff_est.items()}}


def evaluate_fmax(recs: list[dict[str, Any]], surrogate: dict[str, dict[str, float]] | None = None
                  ) -> dict[str, Any]:
    """Fmax (nextpnr-ecp5) on the held-out ECP5 designs: the baselines fitted on the training split, the surrogate.

    ``recs``: :func:`fmax_usable` designs of the ECP5 file.
    """
    train = [r for r in recs if not held_out(r)]
    test = [r for r in recs if held_out(r)]

    def col(rs: list[dict[str, Any]], fn: Any) -> np.ndarray:
        return np.array([fn(r) for r in rs], dtype=np.float64)

    def fmax(r: dict[str, Any]) -> float:
        return r["synth"][ECP5_TARGET]["fmax_mhz"]

    def alkaid(r: dict[str, Any]) -> float:  # alkaid's mean stage delay (its model of the fabric, not ECP5's)
        return 1000.0 / (r["alkaid"]["delay_ns"] / max(r["alkaid"]["stages"], 1))

    true = col(test, fmax)
    med = float(np.median(col(train, fmax)))
    c = fit_factor(col(train, alkaid), col(train, fmax))
    est = {f"median of the training split ({med:.1f} MHz)": np.full(len(test), med),
           "alkaid raw 1000/(delay/stages)": col(test, alkaid),
           f"alkaid × {c:.3f} (fitted)": c * col(test, alkaid)}
    extra: dict[str, Any] = {}
    if surrogate is not None and all("fmax_mhz" in surrogate[r["key"]] for r in test):
        p = col(test, lambda r: surrogate[r["key"]]["fmax_mhz"])
        est["surrogate (hwnas.cost.surrogate)"] = p
        lo = col(test, lambda r: surrogate[r["key"]]["fmax_mhz_p10"])
        hi = col(test, lambda r: surrogate[r["key"]]["fmax_mhz_p90"])
        extra["coverage"] = float(np.mean((true >= lo) & (true <= hi)))
    rows = {}
    for k, v in est.items():
        if np.ptp(v) == 0:  # a constant ranks nothing (and scipy would warn)
            rel = (v - true) / true
            rows[k] = {"n": len(v), "mape": float(np.mean(np.abs(rel))), "spearman": math.nan,
                       "worst": float(rel[np.argmax(np.abs(rel))])}
        else:
            rows[k] = scores(v, true)
    fam: dict[str, dict[str, float]] = {}
    for name, v in est.items():
        for f in sorted({r["spec"]["arch"]["family"] for r in test}):
            m = np.array([r["spec"]["arch"]["family"] == f for r in test])
            fam.setdefault(name, {})[f] = float(np.mean(np.abs(v[m] / true[m] - 1))) if m.any() else math.nan
    return {**extra, "train": len(train), "test": len(test), "median": med, "factor": c, "fmax": rows,
            "by_family": fam, "range": [float(np.min(col(recs, fmax))), float(np.max(col(recs, fmax)))],
            "seconds": float(np.median([r["synth"][ECP5_TARGET]["seconds"] for r in recs]))}


def time_estimates(recs: list[dict[str, Any]], k: int) -> dict[str, Any]:
    """Seconds per in-loop estimate on ``k`` held-out designs rebuilt from their specs (median, max)."""
    from hwnas.cost import estimate
    from hwnas.cost.metrics import model_metrics

    times: dict[str, list[float]] = {"alkaid": [], "surrogate": [], "hls4ml": [], "EBOPs/BOPs (model_metrics)": []}
    mismatches = 0
    for rec in [r for r in recs if held_out(r)][:k]:
        model, shape = build_model(rec["spec"])
        t = time.perf_counter()
        model_metrics(model, shape)
        times["EBOPs/BOPs (model_metrics)"].append(time.perf_counter() - t)
        t = time.perf_counter()
        estimate(model, XILINX_TARGET, input_shape=shape, kind="hls4ml")
        times["hls4ml"].append(time.perf_counter() - t)
        cut = rec["spec"]["latency_cutoff_ns"]
        t = time.perf_counter()
        est = estimate(model, XILINX_TARGET, input_shape=shape, kind="alkaid",
                       latency_cutoff_ns=cut if cut > 0 else None)
        times["alkaid"].append(time.perf_counter() - t)
        t = time.perf_counter()
        estimate(model, XILINX_TARGET, input_shape=shape, kind="surrogate",
                 latency_cutoff_ns=cut if cut > 0 else None)
        times["surrogate"].append(time.perf_counter() - t)
        mismatches += abs(est.rows[0].extra["cost"] - rec["alkaid"]["cost"]) > 1e-6
    return {"designs": min(k, len(times["alkaid"])), "cost_mismatches": int(mismatches),
            **{name: {"median": float(np.median(v)), "max": float(np.max(v))} for name, v in times.items() if v}}


def recorded_times(recs: list[dict[str, Any]]) -> dict[str, float]:
    """Median seconds recorded in the dataset per estimator."""
    out = {"alkaid (trace + pipeline)": float(np.median([r["alkaid"]["seconds"] for r in recs]))}
    for name in ("hls4ml_latency", "hls4ml_da", "finn"):
        vals = [r["estimates"][name]["seconds"] for r in recs if "seconds" in r["estimates"].get(name, {})]
        if vals:
            out[name] = float(np.median(vals))
    out["Yosys synth_xilinx"] = float(np.median([r["synth"][XILINX_TARGET]["seconds"] for r in recs]))
    return out


def table(res: dict[str, Any], resource: str) -> str:
    lines = [f"| estimator ({resource.upper()}) | designs | MAPE | Spearman | worst |", "|---|---:|---:|---:|---:|"]
    for name, s in res[resource].items():
        rho = "—" if math.isnan(s["spearman"]) else f"{s['spearman']:.3f}"
        lines.append(f"| {name} | {s['n']} | {100 * s['mape']:.1f} % | {rho} | "
                     f"{100 * s['worst']:+.0f} % |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_FILE))
    parser.add_argument("--ecp5-data", default=str(ECP5_FILE), help="the ECP5 file for the Fmax rows ('' for none)")
    parser.add_argument("--time", type=int, default=20, help="re-time the in-loop estimates on this many designs")
    parser.add_argument("--fit", action="store_true", help="print the CALIBRATION constant fitted on the train split")
    args = parser.parse_args(argv)
    all_recs = read_designs(args.data)
    recs = usable(all_recs)
    n_synth = len(synthesized(all_recs))
    if len(recs) < 8:
        raise SystemExit(f"{args.data}: {len(recs)} synthesized designs; make more with bench/design_dataset.py")
    res = evaluate(recs, surrogate_predictions([r for r in recs if held_out(r)]))
    versions = recs[0]["versions"]
    tools = recs[0]["synth"][XILINX_TARGET]["tool_versions"]
    print(f"dataset {args.data}: {len(all_recs)} designs, {n_synth} synthesized, {n_synth - len(recs)} of them "
          f"constant (0 LUTs, left out); train {res['train']}, "
          f"held out {res['test']} ({res['ff_test']} pipelined for FF); {tools}, alkaid {versions.get('alkaid')}")
    fit = res["fit"]
    print(f"fitted on the training split: LUT = {fit['lut_factor']:.4f}·comb.cost or {fit['lut_cost']:.4f}·comb.cost "
          f"+ {fit['lut_mux']:.3f}·multiplexers, FF = "
          f"{fit['ff_factor']:.4f}·reg_bits, LUT = {fit['ebops_a']:.4g}·EBOPs^{fit['ebops_b']:.4f}")
    print()
    print(table(res, "lut"))
    print()
    print(table(res, "ff"))
    print()
    s = res["surrogate"]
    print(f"surrogate: 10-90 % interval holds {100 * s['coverage']['lut']:.0f} % of the held-out LUT counts, "
          f"{100 * s['coverage']['ff']:.0f} % of the FF counts; latency in cycles vs alkaid's pipeline on "
          f"{s['latency']['n']} pipelined designs: MAPE {100 * s['latency']['mape']:.1f} %, Spearman "
          f"{s['latency']['spearman']:.3f}, exact {100 * s['latency']['exact']:.0f} %, worst "
          f"{100 * s['latency']['worst']:+.0f} %; {1e3 * s['seconds']:.1f} ms per estimate (median)")
    print(RULE4ML)
    print()
    ecp5_all = read_designs(args.ecp5_data) if args.ecp5_data else []
    frecs = fmax_usable(ecp5_all)
    if len(frecs) >= 8:
        fres = evaluate_fmax(frecs, surrogate_predictions([r for r in frecs if held_out(r)], target=ECP5_TARGET))
        tv = frecs[0]["synth"][ECP5_TARGET]["tool_versions"]
        print(f"ECP5 dataset {args.ecp5_data}: {len(ecp5_all)} designs, {len(frecs)} with an Fmax (nextpnr-ecp5 "
              f"{tv.get('nextpnr-ecp5')}, {tv.get('yosys')} synth_ecp5; {fres['range'][0]:.1f}–"
              f"{fres['range'][1]:.1f} MHz; median {fres['seconds']:.1f} s per design); train {fres['train']}, "
              f"held out {fres['test']}")
        print()
        print(table(fres, "fmax"))
        if "coverage" in fres:
            print(f"surrogate Fmax: 10-90 % interval holds {100 * fres['coverage']:.0f} % of the held-out designs")
        print("Fmax MAPE by family: " + "; ".join(
            f"{name}: " + ", ".join(f"{f} {100 * v:.1f} %" for f, v in fam.items())
            for name, fam in fres["by_family"].items()))
        print()
    else:
        print(f"no Fmax rows: {len(frecs)} ECP5 designs with an Fmax in {args.ecp5_data!r} "
              "(bench/design_dataset.py --ecp5-only)")
        print()
    print("median seconds per estimate recorded in the dataset:",
          ", ".join(f"{k} {v:.3g}" for k, v in recorded_times(recs).items()))
    if args.time > 0:
        t = time_estimates(recs, args.time)
        print(f"in-loop estimate re-timed on {t['designs']} held-out designs (cost reproduced: "
              f"{t['designs'] - t['cost_mismatches']}/{t['designs']}):",
              ", ".join(f"{k} median {v['median']:.3g} s, max {v['max']:.3g} s" for k, v in t.items()
                        if isinstance(v, dict)))
    for label, suffix in (("the shipped alkaid factor", "(shipped)"), ("the surrogate", "(hwnas.cost.surrogate)")):
        best = {r: res[r][next(k for k in res[r] if k.endswith(suffix))] for r in ("lut", "ff")}
        for r, s in best.items():
            met = s["mape"] <= GOAL_MAPE and s["spearman"] >= GOAL_SPEARMAN
            print(f"goal {r.upper()} (MAPE ≤ {100 * GOAL_MAPE:.0f} %, Spearman ≥ {GOAL_SPEARMAN}) with {label}: "
                  f"{'MET' if met else 'NOT MET'} on {s['n']} held-out designs "
                  f"(MAPE {100 * s['mape']:.1f} %, Spearman {s['spearman']:.3f})")
    if args.fit:
        from hwnas.cost.alkaid_model import AlkaidCalibration

        cal = AlkaidCalibration(lut=round(res["fit"]["lut_cost"], 4), lut_per_mux=round(res["fit"]["lut_mux"], 3),
                                ff=round(res["fit"]["ff_factor"], 4),
                                dataset=Path(args.data).name, designs=res["train"],
                                tool=f"{tools.get('yosys')} synth_xilinx -family xcup")
        print(f"\nCALIBRATION = {cal!r}")


if __name__ == "__main__":
    main()
