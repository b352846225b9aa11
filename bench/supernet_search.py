"""One-shot supernet search vs per-trial searches at equal wall-clock, rank fidelity, joint vs 8-bit search.

Issue 27's benchmark, per task (``amc``: generated RadioML-2016-like frames at 0…18 dB, 1-D CNNs; ``image``:
scikit-learn's 8×8 digits, 2-D CNNs). One joint space per task: 1–3 (AMC) / 1–2 (digits) conv blocks with
per-layer filters 8/16 and kernels 3/5, BatchNorm, max pooling, ReLU, 0–1 dense layers of 16/32 units,
per-layer weight and activation bits 2–8; objectives accuracy (max) and BOPs (min), FINN cost model on the
ZC702 (LUTs ≤ 100 % of the device as a constraint). Every run is a real ``hwnas`` search in its own folder:

1. **supernet** (``search.strategy: supernet``): train the supernet once, evaluate ``--subnets`` sub-nets on the
   shared weights, fit the predictor, NSGA-II on it, measure the ``--trials`` front sub-nets as trials. Its
   wall-clock ``W`` (around :func:`hwnas.search.run.run_search`) is the budget of the per-trial runs. One run per
   ``--finetune-epochs`` value (default 0 and 1: the front sub-nets measured on the shared weights, or each
   fine-tuned for an epoch first), each a complete run from scratch with its own per-trial runs at its ``W``.
2. **nsga2** (every trial trained from scratch) and **monas_lq** (``search.warm_start: closest``; no stage 1,
   see :func:`experiment`), same space, data and training schedule, ``run_search(..., timeout_s=W)`` with a
   budget of trials the timeout cuts.
3. Hypervolume of each run's feasible (accuracy, BOPs) trials (validation accuracy; and the validation front at
   its test accuracy) against one reference per task: accuracy 1/classes, 1.1 × the largest BOPs any run measured
   (BOPs normalized by it). Ratio supernet ÷ each per-trial run (goal ≥ 0.95). Architectures ranked per CPU-hour:
   the supernet's evaluated sub-nets (its predictor's data) ÷ its CPU hours against the per-trial runs' trainings ÷
   theirs (goal ≥ 10×; CPU time of this process, ``getrusage``).
4. **Rank fidelity**: ``--tau-subnets`` random points of the joint space, each extracted from the trained
   supernet (``SupernetSearch.loaded_supernet().extract`` + ``score``), fine-tuned from there for 1 and for 2
   epochs (:class:`hwnas.train.Trainer`, the experiment's training settings), and trained stand-alone from scratch
   with the experiment's schedule (:func:`hwnas.search.objective.train_and_measure`); Kendall τ and Spearman ρ of
   each against the stand-alone validation accuracy (same validation samples).
5. **Joint vs architecture-only**: the same supernet run with ``weight_bits: [8]``, ``act_bits: [8]``; the best
   validation accuracy each run's measured sub-nets reach under a shared budget, the median of the joint front's
   LUTs (primary: the FPGA resource FINN prices from both the architecture and the bits), BOPs and FINN latency;
   and the 8-bit run's measured sub-nets scored on the joint supernet (what sharing weights across bit-widths
   costs the same 8-bit models).

    OMP_NUM_THREADS=1 .venv/bin/python bench/supernet_search.py [--task amc|image|both] [--seed 0]
        [--out /tmp/hwnas_supernet_bench] [--epochs E] [--subnets K] [--trials N] [--trial-epochs T]
        [--tau-subnets 24] [--finetune-epochs 0 1] [--per-pair 50] [--json FILE]

Each run lives in its own subfolder of ``--out`` (named by the settings): a second invocation reuses finished
runs (``bench_run.json``: their recorded seconds) and resumes unfinished ones (the per-trial runs only for the
rest of their budget); the rank-fidelity rows are kept in ``tau.jsonl``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import resource
import shlex
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.config import parse_experiment
from hwnas.search.run import open_study, run_search, write_results

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_efficiency import test_hypervolume, volume  # the shared hypervolume helpers

SNRS = "[0, 2, 4, 6, 8, 10, 12, 14, 16, 18]"

TASKS: dict[str, dict[str, Any]] = {
    "amc": {"task": "{{name: amc-rml2016, options: {{per_pair: {per_pair}, snrs: " + SNRS + ", progress: false}}}}",
            "family": "cnn1d", "conv_max": 3, "trial_epochs": 5, "epochs": 30, "warmup": 5, "subnets": 2000},
    "image": {"task": "{{name: digits-image}}", "family": "cnn2d", "conv_max": 2, "trial_epochs": 10, "epochs": 60,
              "warmup": 10, "subnets": 2000},
}

BASE = """\
name: {name}
seed: {seed}
output: {out}
task: {task}
space:
  family: {family}
  conv_blocks: {{min: 1, max: {conv_max}}}
  filters: [8, 16]
  share_filters: false
  kernel: [3, 5]
  pooling: [max]
  activation: [relu]
  batch_norm: [true]
  separable: [false]
  dropout: [0.0]
  dense_layers: {{min: 0, max: 1}}
  dense_units: [16, 32]
  precision: {{weight_bits: {bits}, act_bits: {bits}}}
objectives:
  - {{metric: accuracy, direction: maximize}}
  - {{metric: bops, direction: minimize}}
constraints:
  - {{metric: luts, max: '100%'}}
hardware: {{target: ZC702, model: finn}}
training: {{epochs: {trial_epochs}, batch_size: 64}}
search:
  strategy: {strategy}
  n_trials: {n_trials}
  warm_start: {warm_start}
  options: {options}
"""

JOINT_BITS = "{min: 2, max: 8}"
FIXED_BITS = "[8]"


def baseline_trials(budget_s: float) -> int:
    """The per-trial runs' budget: more trials than fit in ``budget_s`` (none takes under a second), so the
    timeout binds; not far more, since a study holds its whole budget as waiting trials (claims slow down)."""
    return max(50, math.ceil(budget_s))


# ---------------------------------------------------------------------------------------------------- settings
def settings(task: str, args: argparse.Namespace) -> dict[str, Any]:
    """The task's sizes: its defaults, overridden by the command line."""
    d = TASKS[task]
    s = {"trial_epochs": args.trial_epochs or d["trial_epochs"], "epochs": args.epochs or d["epochs"],
         "subnets": args.subnets or d["subnets"], "trials": args.trials, "per_pair": args.per_pair}
    s["warmup"] = min(d["warmup"], max(1, s["epochs"] // 6))
    return s


def task_folder(task: str, args: argparse.Namespace) -> Path:
    """The folder of one task's runs (named by what every run of the task shares)."""
    s = settings(task, args)
    pp = f"_pp{s['per_pair']}" if task == "amc" else ""
    return Path(args.out) / f"{task}_s{args.seed}_te{s['trial_epochs']}{pp}"


def supernet_tag(task: str, args: argparse.Namespace, finetune: int) -> str:
    """The name of one supernet setting (the per-trial runs of its wall-clock budget carry it too)."""
    s = settings(task, args)
    ft = f"_ft{finetune}" if finetune else ""
    return f"e{s['epochs']}w{s['warmup']}_k{s['subnets']}_n{s['trials']}{ft}"


def experiment(task: str, kind: str, args: argparse.Namespace, folder: Path, budget_s: float = 0.0,
               finetune: int = 0) -> Any:
    """The experiment of one run: ``kind`` in supernet (joint bits), supernet8 (8-bit), nsga2, monas_lq
    (``budget_s``: the wall-clock budget of the per-trial runs; ``finetune``: the supernet's finetune_epochs)."""
    s = settings(task, args)
    d = TASKS[task]
    bits = FIXED_BITS if kind == "supernet8" else JOINT_BITS
    warm = "none"
    if kind in ("supernet", "supernet8"):
        strategy, n_trials = "supernet", s["trials"]
        options = (f"{{epochs: {s['epochs']}, warmup_epochs: {s['warmup']}, random_subnets: 2, distill: true, "
                   f"kernel_transform: true, sort_channels: true, calibration_batches: 4, subnets: {s['subnets']}, "
                   f"eval_samples: null, predictor_epochs: 300, predictor_hidden: [64, 64], population_size: 64, "
                   f"generations: 40, finetune_epochs: {finetune}}}")
    elif kind == "nsga2":
        strategy, n_trials, options = "nsga2", baseline_trials(budget_s), "{population_size: 16}"
    elif kind == "monas_lq":
        # search_efficiency.py's settings (the library's defaults but the stage sizes), without stage 1: with
        # per-layer filters (share_filters: false) a stage 1 that keeps a filter count above the lowest makes every
        # guided round fail in hwnas.search.guided (a trained vector's inactive filter slots canonicalize to the
        # lowest choice, outside the narrowed bounds: "ValueError: initial_positions has a position outside
        # bounds" from ParticleSwarm); the filter counts stay search variables and the bootstrap takes stage 1's 2
        strategy, n_trials, warm = "monas_lq", baseline_trials(budget_s), "closest"
        options = ("{hpo_trials: 0, bootstrap_size: 8, candidates_per_round: 400, "
                   "train_fraction: 0.005, patience: 100, predictor_epochs: 300, swarm_size: 20}")
    else:
        raise ValueError(kind)
    text = BASE.format(name=f"bench-supernet-{task}-{kind}", seed=args.seed, out=folder,
                       task=d["task"].format(per_pair=s["per_pair"]), family=d["family"], conv_max=d["conv_max"],
                       bits=bits, trial_epochs=s["trial_epochs"], strategy=strategy, n_trials=n_trials,
                       warm_start=warm, options=options)
    return parse_experiment(text, source=f"<{task}-{kind}>")


# ---------------------------------------------------------------------------------------------------- runs
def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed_run(exp: Any, folder: Path, timeout: float | None, label: str) -> dict[str, Any]:
    """Run (or resume, or reuse) one search; wall and CPU seconds summed over the invocations that ran it."""
    marker = folder / "bench_run.json"
    state = json.loads(marker.read_text()) if marker.is_file() else {"seconds": 0.0, "cpu_seconds": 0.0,
                                                                     "finished": False, "invocations": 0}
    if not state["finished"]:
        remaining = None if timeout is None else max(0.0, timeout - state["seconds"])
        print(f"[{label}] running in {folder}" + ("" if remaining is None else f" for {remaining:.0f} s"),
              flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        t0, c0 = time.perf_counter(), _cpu()
        try:
            run_search(exp, progress=False, timeout_s=remaining)
            state["finished"] = True
        finally:
            state["seconds"] += time.perf_counter() - t0
            state["cpu_seconds"] += _cpu() - c0
            state["invocations"] += 1
            state["timeout_s"] = timeout
            marker.write_text(json.dumps(state, indent=1))
    else:
        print(f"[{label}] reusing {folder} ({state['seconds']:.0f} s recorded)", flush=True)
    outcome = write_results(exp, open_study(exp))
    done = outcome.summary["states"]["COMPLETE"]
    failed = outcome.summary["states"].get("FAIL", 0)
    print(f"[{label}] {done} trials ({failed} failed), {state['seconds']:.0f} s wall, {state['cpu_seconds']:.0f} s "
          f"CPU, front of {len(outcome.archive.front)}, stopped: {outcome.summary.get('stopped')}", flush=True)
    return {"exp": exp, "folder": folder, "outcome": outcome, "seconds": state["seconds"],
            "cpu_seconds": state["cpu_seconds"], "trials": done, "failed": failed}


def points(run: dict[str, Any], key: str = "accuracy") -> np.ndarray:
    """(accuracy, BOPs) of a run's feasible trials."""
    return np.array([[t.user_attrs["metrics"][key], t.user_attrs["metrics"]["bops"]]
                     for t in run["outcome"].archive.feasible]).reshape(-1, 2)


# ---------------------------------------------------------------------------------------------------- rank fidelity
def rank_fidelity(ctx: Any, joint: dict[str, Any], args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Supernet-evaluated (and fine-tuned) vs stand-alone-trained accuracy of random sub-nets (module docstring)."""
    import torch
    from scipy.stats import kendalltau, spearmanr

    from hwnas.search.objective import TrialContext, train_and_measure
    from hwnas.supernet.search import SupernetSearch
    from hwnas.train import Trainer

    exp = joint["exp"]
    search = SupernetSearch(ctx)
    sn = search.loaded_supernet()
    calib = search.calibration_inputs()
    tau_ctx = TrialContext.create(exp, output=folder / "tau", save_models=False, data=ctx.data)
    rng = np.random.default_rng([args.seed, 99])
    pts: dict[Any, None] = {}
    while len(pts) < args.tau_subnets:
        pts.setdefault(ctx.space.sample(rng), None)
    path = folder / "tau.jsonl"
    done: dict[int, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[int(row["index"])] = row
    data = ctx.data
    with open(path, "a") as fh:
        for i, point in enumerate(pts):
            if i in done and done[i]["point"] == point.to_dict():
                continue
            row: dict[str, Any] = {"index": i, "point": point.to_dict(), "describe": point.describe()}
            t0 = time.perf_counter()
            model = sn.extract(point, calib)
            row["supernet"] = search.score(model)
            row["supernet_seconds"] = time.perf_counter() - t0
            for ft in (1, 2):
                t0 = time.perf_counter()
                tuned = copy.deepcopy(model)
                seed = exp.trial_seed(200_000 + i)
                config = replace(exp.train_config(seed, progress=False), epochs=ft)
                torch.manual_seed(seed)
                Trainer(tuned, config).fit(data.train.pair, data.val.pair)
                row[f"finetune{ft}"] = search.score(tuned)
                row[f"finetune{ft}_seconds"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            result = train_and_measure(point, tau_ctx, 100_000 + i)
            row["standalone"] = float(result.metrics["accuracy"])
            row["standalone_test"] = float(result.metrics["test_accuracy"])
            row["bops"] = float(result.metrics["bops"])
            row["standalone_seconds"] = time.perf_counter() - t0
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            done[i] = row
            print(f"  tau sub-net {i:2d}: supernet {row['supernet']:.3f}  ft1 {row['finetune1']:.3f}  ft2 "
                  f"{row['finetune2']:.3f}  stand-alone {row['standalone']:.3f}  {row['describe']}", flush=True)
    rows = [done[i] for i in range(len(pts))]
    ref = np.array([r["standalone"] for r in rows])
    out: dict[str, Any] = {"subnets": len(rows), "rows": rows}
    for key in ("supernet", "finetune1", "finetune2"):
        vals = np.array([r[key] for r in rows])
        tau = kendalltau(vals, ref)
        out[key] = {"kendall_tau": float(tau.statistic), "p_value": float(tau.pvalue),
                    "spearman": float(spearmanr(vals, ref).statistic), "mean_accuracy": float(vals.mean()),
                    "mean_gap_to_standalone": float((vals - ref).mean()),
                    "seconds_per_subnet": float(np.mean([r[f"{key}_seconds"] for r in rows]))}
    out["standalone"] = {"mean_accuracy": float(ref.mean()),
                         "seconds_per_subnet": float(np.mean([r["standalone_seconds"] for r in rows]))}
    return out


# ---------------------------------------------------------------------------------------------------- joint vs 8-bit
def budget_comparison(joint: dict[str, Any], fixed: dict[str, Any]) -> dict[str, Any]:
    """Best validation accuracy of each run's measured feasible sub-nets under the joint front's median cost."""
    out: dict[str, Any] = {}
    front = joint["outcome"].archive.front
    for metric in ("luts", "bops", "latency_ms"):
        vals = [float(t.user_attrs["metrics"][metric]) for t in front]
        if not vals:
            continue
        budget = float(np.median(vals))
        row: dict[str, Any] = {"budget": budget}
        for name, run in (("joint", joint), ("fixed8", fixed)):
            ok = [t for t in run["outcome"].archive.feasible if float(t.user_attrs["metrics"][metric]) <= budget]
            if ok:
                best = max(ok, key=lambda t: t.user_attrs["metrics"]["accuracy"])
                m = best.user_attrs["metrics"]
                row[name] = {"accuracy": float(m["accuracy"]), "test_accuracy": float(m["test_accuracy"]),
                             metric: float(m[metric]), "trial": best.number, "within_budget": len(ok),
                             "point": best.user_attrs.get("point")}
            else:
                row[name] = None
        if row["joint"] and row["fixed8"]:
            row["difference_points"] = 100 * (row["joint"]["accuracy"] - row["fixed8"]["accuracy"])
            row["difference_points_test"] = 100 * (row["joint"]["test_accuracy"] - row["fixed8"]["test_accuracy"])
        row["spread"] = {name: [float(min(v)), float(max(v))] if v else None for name, v in
                         (("joint", [t.user_attrs["metrics"][metric] for t in joint["outcome"].archive.feasible]),
                          ("fixed8", [t.user_attrs["metrics"][metric] for t in fixed["outcome"].archive.feasible]))}
        out[metric] = row
    return out


def same_points(ctx: Any, joint: dict[str, Any], fixed: dict[str, Any]) -> dict[str, Any]:
    """The 8-bit run's measured sub-nets scored on the joint supernet: what sharing the weights across bit-widths
    costs the very same 8-bit models (both on the shared weights, no fine-tuning: the first setting's runs)."""
    from hwnas.space.point import Point
    from hwnas.supernet.search import SupernetSearch

    search = SupernetSearch(ctx)
    sn, calib = search.loaded_supernet(), search.calibration_inputs()
    rows = []
    for t in fixed["outcome"].archive.feasible:
        point = Point.from_dict(t.user_attrs["point"])
        rows.append({"point": point.describe(), "fixed8_supernet": float(t.user_attrs["metrics"]["accuracy"]),
                     "joint_supernet": search.score(sn.extract(point, calib))})
    gap = np.array([r["fixed8_supernet"] - r["joint_supernet"] for r in rows])
    return {"subnets": len(rows), "mean_gap": float(gap.mean()), "min_gap": float(gap.min()),
            "max_gap": float(gap.max()), "rows": rows}


# ---------------------------------------------------------------------------------------------------- one task
def supernet_report(run: dict[str, Any]) -> dict[str, Any]:
    return json.loads((run["folder"] / "supernet" / "report.json").read_text())


def one_task(task: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every run of one task, then its figures (module docstring)."""
    from scipy.stats import kendalltau

    from hwnas.search.objective import TrialContext

    folder = task_folder(task, args)
    print(f"\n=== task {task}: {folder} ===", flush=True)
    runs: dict[str, dict[str, Any]] = {}
    groups = []
    for ft in args.finetune_epochs:
        sfx = f"_ft{ft}" if ft else ""
        tag = supernet_tag(task, args, ft)
        f = folder / f"supernet_{tag}"
        label = f"supernet{sfx}"
        runs[label] = timed_run(experiment(task, "supernet", args, f, finetune=ft), f, None,
                                f"{task} {name(label)}")
        budget = runs[label]["seconds"]
        for kind in ("nsga2", "monas_lq"):
            f = folder / f"{'monas_lq_hpo0' if kind == 'monas_lq' else kind}_eq_{tag}"
            runs[f"{kind}{sfx}"] = timed_run(experiment(task, kind, args, f, budget), f, budget,
                                             f"{task} {kind} (budget of {label})")
        groups.append((ft, sfx))
    ft0, sfx0 = groups[0]
    f = folder / f"supernet8_{supernet_tag(task, args, ft0)}"
    runs["supernet8"] = timed_run(experiment(task, "supernet8", args, f, finetune=ft0), f, None,
                                  f"{task} supernet (8-bit)")

    ctx = TrialContext.create(runs[f"supernet{sfx0}"]["exp"], output=runs[f"supernet{sfx0}"]["folder"],
                              save_models=False)
    chance = 1.0 / ctx.data.n_classes
    val = {k: points(r) for k, r in runs.items()}
    bops_ref = 1.1 * max(float(p[:, 1].max()) for p in val.values() if len(p))
    hv = {k: volume(p, bops_ref, chance) for k, p in val.items()}
    hv_test = {k: test_hypervolume(list(r["outcome"].archive.front), bops_ref, chance) for k, r in runs.items()}
    reports = {k: supernet_report(r) for k, r in runs.items() if k.startswith("supernet")}
    res: dict[str, Any] = {"task": task, "folder": str(folder), "settings": settings(task, args),
                           "reference": {"accuracy": chance, "bops": bops_ref}, "runs": {}, "ratios": {}}
    for k, r in runs.items():
        n = reports[k]["evaluate"]["subnets"] if k in reports else r["trials"]
        best = float(val[k][:, 0].max()) if len(val[k]) else float("nan")
        res["runs"][k] = {"trials": r["trials"], "failed": r["failed"], "seconds": r["seconds"],
                          "cpu_seconds": r["cpu_seconds"], "hypervolume": hv[k], "test_hypervolume": hv_test[k],
                          "best_accuracy": best, "front": len(r["outcome"].archive.front), "ranked": n,
                          "per_cpu_hour": n / (r["cpu_seconds"] / 3600), "per_hour": n / (r["seconds"] / 3600),
                          "folder": str(r["folder"])}
    for k, rep in reports.items():
        epochs = rep["train"]["epochs"]
        res["runs"][k]["report"] = {
            "train_seconds": rep["train"]["seconds"],
            "epoch_seconds": {p: float(np.mean([e["seconds"] for e in epochs if e["phase"] == p]))
                              for p in ("warmup", "sandwich") if any(e["phase"] == p for e in epochs)},
            "plain_epoch_seconds": rep["plain_epoch_seconds"], "evaluate": rep["evaluate"],
            "predictor": {x: rep["predictor"].get(x) for x in ("kendall_tau", "spearman", "r2", "fitted_on",
                                                                  "held_out", "seconds")},
            "search": rep["search"], "plan_seconds": rep["seconds"]}
        feasible = runs[k]["outcome"].archive.feasible
        pred = [(t.user_attrs["supernet"]["predicted_accuracy"], t.user_attrs["metrics"]["accuracy"])
                for t in feasible if t.user_attrs.get("supernet")]
        if len(pred) >= 3:
            res["runs"][k]["front_predicted_vs_measured_tau"] = float(kendalltau(*zip(*pred, strict=True)).statistic)
    for _ft, sfx in groups:
        for other in ("nsga2", "monas_lq"):
            a, b = f"supernet{sfx}", f"{other}{sfx}"
            res["ratios"][f"{a}/{b}"] = {
                "hypervolume": hv[a] / hv[b] if hv[b] > 0 else float("inf"),
                "test_hypervolume": hv_test[a] / hv_test[b] if hv_test[b] and hv_test[b] > 0 else float("nan"),
                "ranked_per_cpu_hour": res["runs"][a]["per_cpu_hour"] / res["runs"][b]["per_cpu_hour"]}
    res["rank_fidelity"] = rank_fidelity(ctx, runs[f"supernet{sfx0}"], args, folder)
    res["joint_vs_8bit"] = budget_comparison(runs[f"supernet{sfx0}"], runs["supernet8"])
    if not ft0:  # on the shared weights only (a fine-tuned 8-bit run measured other weights)
        res["same_8bit_points"] = same_points(ctx, runs[f"supernet{sfx0}"], runs["supernet8"])
    print_task(res)
    return res


# ---------------------------------------------------------------------------------------------------- printing
NAMES = {"supernet": "supernet (joint)", "nsga2": "NSGA-II, scratch", "monas_lq": "MONAS-LQ, warm",
         "supernet8": "supernet (8-bit)"}


def name(key: str) -> str:
    """A run's label: ``nsga2_ft1`` is NSGA-II at the budget of the supernet run fine-tuned for 1 epoch."""
    base, _, ft = key.partition("_ft")
    return NAMES[base] + (f" [ft{ft}]" if ft else "")


def print_task(res: dict[str, Any]) -> None:
    ref = res["reference"]
    print(f"\n--- {res['task']}: reference accuracy {ref['accuracy']:.4f}, BOPs {ref['bops']:.4g} (normalized to 1)")
    print(f"{'run':24s} {'trials':>7s} {'ranked':>6s} {'wall s':>7s} {'CPU s':>7s} {'HV val':>7s} {'HV test':>7s} "
          f"{'best acc':>8s} {'ranked/CPU-h':>12s}")
    for k, r in res["runs"].items():
        print(f"{name(k):24s} {r['trials']:7d} {r['ranked']:6d} {r['seconds']:7.0f} {r['cpu_seconds']:7.0f} "
              f"{r['hypervolume']:7.4f} {r['test_hypervolume']:7.4f} {r['best_accuracy']:8.4f} "
              f"{r['per_cpu_hour']:12.0f}")
    for pair, r in res["ratios"].items():
        a, b = pair.split("/")
        print(f"{name(a)} / {name(b)}: hypervolume {r['hypervolume']:.3f} (test {r['test_hypervolume']:.3f}; goal "
              f">= 0.95), ranked per CPU-hour {r['ranked_per_cpu_hour']:.1f}x (goal >= 10x)")
    for k in (k for k in res["runs"] if "report" in res["runs"][k]):
        rep = res["runs"][k]["report"]
        ep = ", ".join(f"{p} {s:.1f} s" for p, s in rep["epoch_seconds"].items())
        p = rep["predictor"]
        print(f"{name(k)}: train {rep['train_seconds']:.0f} s (per epoch: {ep}; plain epoch of the largest "
              f"{rep['plain_epoch_seconds']:.1f} s), evaluate {rep['evaluate']['subnets']} sub-nets "
              f"{rep['evaluate']['seconds_per_subnet'] * 1000:.0f} ms each, predictor held-out tau "
              f"{_f(p['kendall_tau'])} rho {_f(p['spearman'])} R2 {_f(p['r2'])}, NSGA-II "
              f"{rep['search']['candidates']} candidates in {rep['search']['seconds']:.0f} s; predicted vs measured "
              f"accuracy of its {res['runs'][k]['trials']} measured sub-nets: tau "
              f"{_f(res['runs'][k].get('front_predicted_vs_measured_tau'))}")
    rf = res["rank_fidelity"]
    print(f"rank fidelity on {rf['subnets']} random sub-nets vs stand-alone training "
          f"(mean stand-alone val accuracy {rf['standalone']['mean_accuracy']:.3f}, "
          f"{rf['standalone']['seconds_per_subnet']:.1f} s each):")
    for key, label in (("supernet", "shared weights"), ("finetune1", "fine-tuned 1 epoch"),
                       ("finetune2", "fine-tuned 2 epochs")):
        r = rf[key]
        print(f"  {label:20s} Kendall tau {r['kendall_tau']:.3f} (p {r['p_value']:.2g})  Spearman "
              f"{r['spearman']:.3f}  mean accuracy {r['mean_accuracy']:.3f} ({r['mean_gap_to_standalone']:+.3f} "
              f"vs stand-alone), {r['seconds_per_subnet']:.2f} s each")
    print("joint vs 8-bit supernet search, best validation (test) accuracy of the measured sub-nets under the "
          "median cost of the joint front (primary: LUTs, the FPGA resource FINN prices from architecture and "
          "bits; latency_ms is FINN's, set by the folding and MACs, not the bits):")
    same = res.get("same_8bit_points")
    if same:
        print(f"  the 8-bit run's {same['subnets']} measured sub-nets on the joint supernet: "
              f"{100 * same['mean_gap']:.1f} points less accurate on average (from {100 * same['min_gap']:+.1f} to "
              f"{100 * same['max_gap']:+.1f}) than on the 8-bit supernet")
    for metric, row in res["joint_vs_8bit"].items():
        j, e = row.get("joint"), row.get("fixed8")
        js = f"{j['accuracy']:.4f} ({j['test_accuracy']:.4f})" if j else "none"
        es = f"{e['accuracy']:.4f} ({e['test_accuracy']:.4f})" if e else "none"
        diff = (f"{row['difference_points']:+.1f} points (test {row['difference_points_test']:+.1f})"
                if "difference_points" in row else "n/a")
        print(f"  {metric:10s} <= {row['budget']:<10.4g} joint {js}  8-bit {es}  joint - 8-bit {diff}  "
              f"(8-bit range {row['spread']['fixed8']})")


def _f(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


# ---------------------------------------------------------------------------------------------------- main
def parser() -> argparse.ArgumentParser:
    """The command line of this benchmark."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="both", choices=("amc", "image", "both"), help="which task (default both)")
    ap.add_argument("--seed", type=int, default=0, help="experiment seed (default 0)")
    ap.add_argument("--out", default="/tmp/hwnas_supernet_bench", help="folder of the runs")
    ap.add_argument("--epochs", type=int, help="supernet training epochs (default: amc 30, image 60)")
    ap.add_argument("--subnets", type=int, help="sub-nets evaluated on the shared weights (default 2000)")
    ap.add_argument("--trials", type=int, default=24, help="front sub-nets extracted and measured (default 24)")
    ap.add_argument("--trial-epochs", type=int, help="epochs of every per-trial and stand-alone training "
                    "(default: amc 5, image 10)")
    ap.add_argument("--per-pair", type=int, default=50, help="AMC frames per (class, SNR) pair (default 50)")
    ap.add_argument("--tau-subnets", type=int, default=24, help="random sub-nets of the rank-fidelity check "
                    "(default 24)")
    ap.add_argument("--finetune-epochs", type=int, nargs="+", default=[0, 1], help="search.options.finetune_epochs "
                    "of the joint supernet runs, one run (and its equal-wall-clock per-trial runs) each (default 0 1: "
                    "the front sub-nets measured on the shared weights, and fine-tuned for 1 epoch); the first is "
                    "the one of the rank-fidelity check and the 8-bit comparison")
    ap.add_argument("--json", help="also write the results to this file")
    return ap


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    return v


def main(argv: list[str] | None = None) -> int:
    """Run (or reuse) every run of the chosen tasks, print and optionally write the figures."""
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still records the seconds spent
    import torch

    print("command:", shlex.join([sys.executable, *sys.argv]), flush=True)
    print(f"torch threads: {torch.get_num_threads()}", flush=True)
    tasks = ["amc", "image"] if args.task == "both" else [args.task]
    t0 = time.perf_counter()
    results = {"args": vars(args), "tasks": {t: one_task(t, args) for t in tasks}}
    results["seconds"] = time.perf_counter() - t0
    print(f"\ntotal {results['seconds']:.0f} s this invocation", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(_jsonable(results), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
