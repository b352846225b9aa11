"""Search efficiency: the predictor-guided MONAS-LQ pipeline with N trainings vs NSGA-II and random with 10·N.

On a small AMC space (generated RadioML-2016-like frames at 0…18 dB, 1-D CNNs of 1–3 conv blocks with a
shared filter count of 8 or 16, 0–1 dense layers, layer-wise weight/activation bits 2–8) each strategy
runs as a real hwnas search (same experiment, same data, same training schedule, SQLite study in its own
folder). The (accuracy, BOPs) front of every run is measured by its hypervolume against one reference
point shared by all runs: accuracy 1/classes (chance) and 1.1 × the largest BOPs any run trained, with
BOPs divided by that reference so the volume lies in [0, 1]. Prints the hypervolume of each run and
the ratio guided ÷ each larger-budget run (project goal ≥ 0.95), plus the trainings each used; with a
random run, also the ratio random search reaches with N, 2N and 4N trainings (the mean over 200 random
subsets of its trained points: no extra training), the yardstick for how much the guidance buys; and when
the guided run's stage 1 fixed the filter count, the share of each larger run's hypervolume that its
trials of that width reach (the ceiling of any search that keeps that width and trains every model from
scratch). The same fronts (chosen on validation accuracy) are also measured at their test accuracy, where a
lucky validation draw is not rewarded twice. ``--warm-start closest`` runs the guided search with
``search.warm_start: closest`` (each training starts from the closest trained model of the same shapes),
``--baseline-warm-start closest`` the larger ones (then the width ceiling and the random-subset yardstick,
which treat the larger runs' trainings as independent draws, are left out). ``--retrain K`` re-trains every
front configuration K times from scratch: the fronts compared at their mean accuracies, and each repetition
alone against its run's recorded front — one fresh training per configuration, the most a search that found
exactly those configurations could expect (an oracle bound for searches that train from scratch).

    .venv/bin/python bench/search_efficiency.py [--n 16] [--factor 10] [--seed 0 [1 …]] [--epochs 5]
        [--per-pair 50] [--hpo 2] [--hpo-tolerance 0.02] [--hpo-keep widest] [--bootstrap 6] [--round-size 2]
        [--ensemble 1] [--lcb 1] [--accuracy-model gp] [--accuracy-features summary] [--bootstrap-design stratified]
        [--neighbours 0] [--trend none] [--acquisition bound] [--bootstrap-bits full] [--against nsga2 random]
        [--warm-start none] [--baseline-warm-start none] [--retrain 0] [--out /tmp/hwnas_search_bench]
        [--json FILE]

The defaults are the library's MONAS-LQ defaults except the stage sizes (``hpo_trials`` 2, ``bootstrap_size``
6, rounds of 2, for a budget of 16).

The studies are kept in ``--out``, one folder per strategy and budget: a second run with the same settings
resumes them (runs nothing), so e.g. ``--n 32 --factor 5`` reuses the 160-trial NSGA-II/random studies of
``--n 16 --factor 10``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from hwnas.config import parse_experiment
from hwnas.search.pareto import hypervolume
from hwnas.search.run import run_search

BASE = """\
name: {name}
seed: {seed}
output: {out}
task:
  name: amc-rml2016
  options: {{per_pair: {per_pair}, snrs: [0, 2, 4, 6, 8, 10, 12, 14, 16, 18], progress: false}}
space:
  family: cnn1d
  conv_blocks: {{min: 1, max: 3}}
  filters: [8, 16]
  share_filters: true
  kernel: [3]
  dense_layers: {{min: 0, max: 1}}
  dense_units: [16, 32]
  precision: {{weight_bits: {{min: 2, max: 8}}, act_bits: {{min: 2, max: 8}}}}
objectives:
  - {{metric: accuracy, direction: maximize}}
  - {{metric: bops, direction: minimize}}
hardware: {{target: xc7z020, model: none}}
training: {{epochs: {epochs}, batch_size: 64}}
search:
  strategy: {strategy}
  n_trials: {n_trials}
  warm_start: {warm_start}
  options: {options}
"""


def experiment(strategy: str, n_trials: int, args: argparse.Namespace) -> object:
    """The benchmark experiment of one strategy (its own output folder)."""
    if strategy == "monas_lq":
        rounds_budget = n_trials - args.hpo - args.bootstrap
        if rounds_budget < 2:
            raise SystemExit(f"--n {n_trials} leaves no trials for the guided rounds ({args.hpo} stage-1 + "
                             f"{args.bootstrap} bootstrap)")
        options = (f"{{hpo_trials: {args.hpo}, hpo_tolerance: {args.hpo_tolerance}, hpo_keep: {args.hpo_keep}, "
                   f"bootstrap_size: {args.bootstrap}, candidates_per_round: 400, "
                   f"train_fraction: {args.round_size / 400}, patience: 100, predictor_epochs: 300, swarm_size: 20, "
                   f"predictor_ensemble: {args.ensemble}, accuracy_lcb: {args.lcb}, "
                   f"accuracy_model: {args.accuracy_model}, bootstrap_design: {args.bootstrap_design}, "
                   f"accuracy_features: {args.accuracy_features}, front_neighbours: {args.neighbours}, "
                   f"accuracy_trend: {args.trend}, accuracy_acquisition: {args.acquisition}, "
                   f"bootstrap_bits: {args.bootstrap_bits}}}")
    elif strategy == "nsga2":
        options = "{population_size: 16}"
    else:
        options = "{}"
    warm = args.warm_start if strategy == "monas_lq" else args.baseline_warm_start
    tag = ""
    if strategy == "monas_lq":  # one folder per setting: flags at their historical default add nothing
        tag = f"_hpo{args.hpo}t{args.hpo_tolerance:g}_b{args.bootstrap}_r{args.round_size}"
        if args.ensemble > 1 or args.lcb > 0:
            tag += f"_e{args.ensemble}_k{args.lcb:g}"
        for value, neutral, label in ((args.accuracy_model, "molp", args.accuracy_model),
                                      (args.accuracy_features, "vector", args.accuracy_features),
                                      (args.bootstrap_design, "random", args.bootstrap_design),
                                      (args.neighbours, 0, f"nb{args.neighbours}"),
                                      (args.trend, "none", args.trend),
                                      (args.acquisition, "bound", args.acquisition),
                                      (args.bootstrap_bits, "full", f"bits{args.bootstrap_bits}"),
                                      (args.hpo_keep, "widest", f"keep{args.hpo_keep}")):
            if value != neutral:
                tag += f"_{label}"
    if warm != "none":
        tag += f"_warm{warm}"
    out = Path(args.out) / f"{strategy}_{n_trials}_s{args.seed}{tag}"
    text = BASE.format(name=f"bench-{strategy}", seed=args.seed, out=out, per_pair=args.per_pair,
                       epochs=args.epochs, strategy=strategy, n_trials=n_trials, options=options,
                       warm_start=warm)
    return parse_experiment(text, source=f"<{strategy}>")


def parser() -> argparse.ArgumentParser:
    """The command line of this benchmark."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="trainings of the guided pipeline (default 16)")
    ap.add_argument("--factor", type=int, default=10, help="budget multiple of NSGA-II and random (default 10)")
    ap.add_argument("--hpo", type=int, default=2, help="MONAS-LQ stage-1 trainings (default 2: one per filter "
                    "count; 0 keeps the filter count a search variable)")
    ap.add_argument("--hpo-tolerance", type=float, default=0.02, help="MONAS-LQ stage 1: the widest backbone "
                    "within this accuracy of the best is kept (default 0.02)")
    ap.add_argument("--hpo-keep", default="widest", choices=("widest", "close"),
                    help="MONAS-LQ hpo_keep: stage 1 fixes the widest close backbone, or keeps every close width")
    ap.add_argument("--bootstrap", type=int, default=6, help="MONAS-LQ bootstrap trainings (default 6)")
    ap.add_argument("--round-size", type=int, default=2, help="trainings per guided round (default 2)")
    ap.add_argument("--ensemble", type=int, default=1, help="MONAS-LQ predictor ensemble members (default 1)")
    ap.add_argument("--lcb", type=float, default=1.0, help="MONAS-LQ accuracy lower-confidence bound in ensemble "
                    "standard deviations (default 0: the mean)")
    ap.add_argument("--accuracy-model", default="gp", choices=("molp", "gp"),
                    help="MONAS-LQ round accuracy predictor (default gp)")
    ap.add_argument("--accuracy-features", default="summary", choices=("vector", "summary"),
                    help="inputs of the gp accuracy model (default summary)")
    ap.add_argument("--bootstrap-design", default="stratified", choices=("random", "stratified", "factorial"),
                    help="MONAS-LQ bootstrap vectors (default stratified)")
    ap.add_argument("--neighbours", type=int, default=0, help="MONAS-LQ front_neighbours (default 0)")
    ap.add_argument("--trend", default="none", choices=("none", "log_bops"), help="MONAS-LQ accuracy_trend of "
                    "the gp accuracy model (default none)")
    ap.add_argument("--acquisition", default="bound", choices=("bound", "thompson", "ehvi"),
                    help="MONAS-LQ accuracy_acquisition (default bound)")
    ap.add_argument("--bootstrap-bits", default="full", choices=("full", "upper"),
                    help="MONAS-LQ bootstrap_bits (default full)")
    ap.add_argument("--warm-start", default="none", choices=("none", "closest"),
                    help="search.warm_start of the guided run (default none: every training from scratch)")
    ap.add_argument("--baseline-warm-start", default="none", choices=("none", "closest"),
                    help="search.warm_start of the NSGA-II and random runs (default none)")
    ap.add_argument("--against", nargs="+", default=["nsga2", "random"], choices=("nsga2", "random"),
                    help="the larger-budget searches to compare with (default: nsga2 random)")
    ap.add_argument("--seed", type=int, nargs="+", default=[0], help="one or more seeds (default 0); with several, "
                    "the per-seed ratios and their means are printed at the end")
    ap.add_argument("--epochs", type=int, default=5, help="training epochs per trial (default 5)")
    ap.add_argument("--per-pair", type=int, default=50, help="frames per (class, SNR) pair (default 50)")
    ap.add_argument("--out", default="/tmp/hwnas_search_bench", help="folder of the studies")
    ap.add_argument("--retrain", type=int, default=0, help="also re-train every front model this many times with "
                    "fresh seeds, from scratch, and compare the fronts at their mean accuracies; each repetition "
                    "alone, against the run's recorded front, is the oracle bound of a search that found exactly those "
                    "configurations (default 0: off)")
    ap.add_argument("--json", help="also write the results to this file")
    return ap


def one_seed(args: argparse.Namespace) -> dict:
    """Run (or resume) the searches of ``args.seed`` and print their hypervolumes and ratios."""
    runs = [("monas_lq", args.n)] + [(other, args.factor * args.n) for other in args.against]
    fronts: dict[str, np.ndarray] = {}
    front_trials: dict[str, tuple] = {}
    feasible: dict[str, list] = {}
    rows = []
    for strategy, n in runs:
        exp = experiment(strategy, n, args)
        t0 = time.perf_counter()
        outcome = run_search(exp, progress=True)
        seconds = time.perf_counter() - t0
        pts = np.array([[t.user_attrs["metrics"]["accuracy"], t.user_attrs["metrics"]["bops"]]
                        for t in outcome.archive.feasible])
        fronts[strategy] = pts
        front_trials[strategy] = (exp, list(outcome.archive.front))
        feasible[strategy] = list(outcome.archive.feasible)
        done = outcome.summary["states"]["COMPLETE"]
        rows.append((strategy, n, done, seconds))
        print(f"{strategy}: {done} trainings in {seconds:.0f} s, front of {len(outcome.archive.front)}", flush=True)
    chance = 1.0 / 11
    bops_ref = 1.1 * max(float(p[:, 1].max()) for p in fronts.values() if len(p))
    hv = {strategy: volume(pts, bops_ref, chance) for strategy, pts in fronts.items()}
    print(f"\nseed {args.seed}: reference point accuracy {chance:.4f}, BOPs {bops_ref:.4g} (normalized to 1)")
    print(f"{'strategy':10s} {'trainings':>9s} {'seconds':>8s} {'hypervolume':>12s} {'best acc':>9s}")
    for strategy, _budget, done, seconds in rows:
        best = float(fronts[strategy][:, 0].max()) if len(fronts[strategy]) else float("nan")
        print(f"{strategy:10s} {done:9d} {seconds:8.0f} {hv[strategy]:12.4f} {best:9.4f}")
    results: dict = {"seed": args.seed, "hypervolume": hv,
                     "runs": [dict(zip(("strategy", "budget", "trainings", "seconds"), r, strict=True)) for r in rows],
                     "reference": {"accuracy": chance, "bops": bops_ref}}
    for other in args.against:
        ratio = hv["monas_lq"] / hv[other] if hv[other] > 0 else float("inf")
        results[f"ratio_vs_{other}"] = ratio
        print(f"guided ({args.n} trainings) / {other} ({args.factor * args.n} trainings): {ratio:.3f}  "
              f"(goal >= 0.95)")
    # the same fronts (chosen on validation accuracy) at their test accuracy: no selection luck in the measure
    hv_test = {s: test_hypervolume(front_trials[s][1], bops_ref, chance) for s in fronts}
    results["test_hypervolume"] = hv_test
    for other in args.against:
        if hv_test[other] > 0:
            results[f"test_ratio_vs_{other}"] = hv_test["monas_lq"] / hv_test[other]
            print(f"  the same fronts at their test accuracy: guided / {other}: "
                  f"{results[f'test_ratio_vs_{other}']:.3f}")
    for strategy in fronts:  # what a warm start costs: seconds per training with and without a parent
        warm = [t.user_attrs["seconds"] for t in feasible[strategy] if t.user_attrs.get("warm_start") is not None]
        cold = [t.user_attrs["seconds"] for t in feasible[strategy] if t.user_attrs.get("warm_start") is None]
        if warm and cold:
            results.setdefault("warm_seconds_ratio", {})[strategy] = float(np.mean(warm) / np.mean(cold))
            print(f"  {strategy}: {len(warm)} of {len(warm) + len(cold)} trainings warm-started, "
                  f"{np.mean(warm):.2f} s each vs {np.mean(cold):.2f} s from scratch "
                  f"(ratio {np.mean(warm) / np.mean(cold):.3f})")
    # the two yardsticks below treat the larger runs' trainings as independent draws: not so when warm-started
    independent = args.baseline_warm_start == "none"
    widths = stage1_widths(feasible["monas_lq"])
    if widths is not None and independent:
        # the most a search confined to the stage-1 width can reach: each larger run's trials of that width
        results["width_ceiling"] = {}
        for other in args.against:
            kept = np.array([p for p, t in zip(fronts[other], feasible[other], strict=True)
                             if {c["filters"] for c in t.user_attrs["point"]["conv"]} <= widths]).reshape(-1, 2)
            vol = volume(kept, bops_ref, chance)
            results["width_ceiling"][other] = vol / hv[other] if hv[other] > 0 else float("nan")
            print(f"{other}'s trials of the stage-1 width ({sorted(widths)} filters; {len(kept)} of "
                  f"{len(feasible[other])}): {results['width_ceiling'][other]:.3f} of its hypervolume (the ceiling "
                  "of a search that keeps that width and trains from scratch)")
    if "random" in fronts and len(fronts["random"]) and independent:
        # what random search reaches with fewer trainings: subsets of the random study's trained points
        rng = np.random.default_rng([args.seed, 5])
        pts = fronts["random"]
        results["random_subsets"] = {}
        print(f"random search with k trainings (mean of 200 random subsets of the {len(pts)} random trainings):")
        for k in (args.n, 2 * args.n, 4 * args.n):
            if k >= len(pts):
                continue
            vols = [volume(sub, bops_ref, chance)
                    for sub in (pts[rng.choice(len(pts), k, replace=False)] for _ in range(200))]
            row = {other: float(np.mean(vols) / hv[other]) for other in args.against if hv[other] > 0}
            results["random_subsets"][k] = row
            print(f"  k = {k:4d}: " + ", ".join(f"/ {o} {v:.3f}" for o, v in row.items()))
    if args.retrain:
        results["retrained"] = retrained(args, front_trials, bops_ref, chance, hv)
    return results


def volume(pts: np.ndarray, bops_ref: float, chance: float) -> float:
    """Hypervolume of (accuracy, BOPs) rows against the shared reference (chance accuracy, ``bops_ref``)."""
    pts = np.asarray(pts, dtype=float).reshape(-1, 2)
    return hypervolume(np.column_stack([-pts[:, 0], pts[:, 1] / bops_ref]), [-chance, 1.0])


def test_hypervolume(front: list, bops_ref: float, chance: float) -> float:
    """Hypervolume of a run's front (chosen on validation accuracy) with each model at its test accuracy."""
    pts = [[t.user_attrs["metrics"].get("test_accuracy", np.nan), t.user_attrs["metrics"]["bops"]] for t in front]
    if not pts or np.isnan(np.asarray(pts)[:, 0]).any():
        return float("nan")
    return volume(np.asarray(pts), bops_ref, chance)


def stage1_widths(trials: list) -> set[int] | None:
    """The conv filter counts the guided run trained after its stage 1, or None (no stage 1, or it kept several)."""
    later = [t for t in trials if t.user_attrs.get("guided", {}).get("stage") != "hpo"]
    if len(later) == len(trials):
        return None
    widths = {c["filters"] for t in later for c in t.user_attrs["point"]["conv"]}
    return widths if len(widths) == 1 else None


def retrained(args: argparse.Namespace, front_trials: dict[str, tuple], bops_ref: float, chance: float,
              recorded: dict[str, float]) -> dict:
    """Hypervolume of each run's front with every front model re-trained ``--retrain`` times (mean accuracy).

    A front of many trainings is partly the luck of its trainings (the best of many noisy draws); re-training
    its configurations with fresh seeds (trial numbers from 100000 on: seeds no search used) measures the
    configurations the search found rather than the draws it kept. Each repetition alone is also measured
    against the run's ``recorded`` hypervolume: one fresh training of every front configuration is what a
    search that knew exactly those configurations would reach with that many trainings (an oracle bound;
    from scratch, as the re-trainings are).
    """
    from hwnas.search.objective import TrialContext, train_and_measure

    hv, out = {}, {}
    for strategy, (exp, front) in front_trials.items():
        ctx = TrialContext.create(exp, output=Path(args.out) / "retrain", save_models=False)
        pts, spread, draws = [], [], []
        for i, t in enumerate(front):
            vec = t.user_attrs.get("vector")
            point = ctx.space.decode(list(vec)) if vec is not None else ctx.space.from_params(t.params)
            accs = [train_and_measure(point, ctx, 100000 + 1000 * i + j).metrics["accuracy"]
                    for j in range(args.retrain)]
            draws.append(accs)
            pts.append([float(np.mean(accs)), float(t.user_attrs["metrics"]["bops"])])
            spread.append(float(np.std(accs, ddof=1)) if len(accs) > 1 else float("nan"))
        pts_a = np.array(pts).reshape(-1, 2)
        hv[strategy] = volume(pts_a, bops_ref, chance)
        top = max(range(len(front)), key=lambda i: front[i].user_attrs["metrics"]["accuracy"]) if front else None
        # repetition j alone: every front configuration trained once more (the oracle bound, docstring)
        once = [volume(np.array([[draws[i][j], pts[i][1]] for i in range(len(front))]).reshape(-1, 2), bops_ref,
                       chance) / recorded[strategy] if recorded.get(strategy, 0) > 0 else float("nan")
                for j in range(args.retrain)]
        out[strategy] = {"hypervolume": hv[strategy], "front": pts, "std": spread}
        print(f"{strategy}: front of {len(front)} re-trained {args.retrain}x: hypervolume {hv[strategy]:.4f}, best "
              f"mean accuracy {pts_a[:, 0].max():.4f}", flush=True)
        if exp.search.warm_start == "none":  # a warm-started front's models are lineages, not configurations
            out[strategy]["once_ratio"] = once
            print(f"  each configuration trained once more ({len(front)} trainings), per repetition: "
                  + " ".join(f"{x:.3f}" for x in once) + f" of its recorded hypervolume (mean {np.mean(once):.3f}: "
                  "what a search that found exactly these configurations reaches with one training each)", flush=True)
        if top is not None:  # the luck in the recorded front: its most accurate model against its re-trainings
            print(f"  its most accurate model: {front[top].user_attrs['metrics']['accuracy']:.4f} recorded, "
                  f"{pts[top][0]:.4f} ± {spread[top]:.4f} re-trained (std between trainings; mean over front "
                  f"models {np.nanmean(spread):.4f})", flush=True)
    for other in args.against:
        if other in hv and hv[other] > 0:
            out[f"ratio_vs_{other}"] = hv["monas_lq"] / hv[other]
            print(f"re-trained fronts: guided / {other}: {out[f'ratio_vs_{other}']:.3f}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the searches of every seed, print hypervolumes and ratios per seed and their means."""
    args = parser().parse_args(argv)
    print("command:", shlex.join([sys.executable, *sys.argv]), flush=True)
    per_seed = [one_seed(argparse.Namespace(**{**vars(args), "seed": seed})) for seed in args.seed]
    summary: dict = {"args": vars(args), "seeds": per_seed}
    if len(per_seed) > 1:
        print(f"\n{len(per_seed)} seeds: guided ({args.n} trainings) / larger budget ({args.factor * args.n})")
        for other in args.against:
            ratios = [r[f"ratio_vs_{other}"] for r in per_seed]
            summary[f"mean_ratio_vs_{other}"] = float(np.mean(ratios))
            print(f"  / {other:6s} " + " ".join(f"{x:.3f}" for x in ratios) + f"   mean {np.mean(ratios):.3f}")
        for other in args.against:
            vals = [r[f"test_ratio_vs_{other}"] for r in per_seed if f"test_ratio_vs_{other}" in r]
            if vals:
                print(f"  at test accuracy / {other}: " + " ".join(f"{x:.3f}" for x in vals)
                      + f"   mean {np.mean(vals):.3f}")
        for other in args.against:
            key = f"ratio_vs_{other}"
            vals = [r["retrained"][key] for r in per_seed if key in r.get("retrained", {})]
            if vals:
                print(f"  re-trained fronts / {other}: " + " ".join(f"{x:.3f}" for x in vals)
                      + f"   mean {np.mean(vals):.3f}")
        for other in args.against:  # the oracle bound of each larger run (retrained's docstring)
            vals = [float(np.mean(r["retrained"][other]["once_ratio"])) for r in per_seed
                    if "once_ratio" in r.get("retrained", {}).get(other, {})]
            if vals:
                print(f"  {other}'s front configurations trained once more / its recorded front: "
                      + " ".join(f"{x:.3f}" for x in vals) + f"   mean {np.mean(vals):.3f}")
        for k in (args.n, 2 * args.n, 4 * args.n):
            for other in args.against:
                vals = [r["random_subsets"][k][other] for r in per_seed if k in r.get("random_subsets", {})]
                if vals:
                    print(f"  random with {k} trainings / {other}: mean {np.mean(vals):.3f} over {len(vals)} seeds")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
