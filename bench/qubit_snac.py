"""SNAC-Pack qubit readout (seed 004, Tables 3 and 4): the seed's baseline beside the model ``hwnas run`` chose.

1. **Baseline**: the seed's MLP 800-32-16-2 (ReLU) on the window 100+400 (I then Q: 800 inputs), trained on the
   same simulated shots as the experiment (its ``task.options`` and seed, the same 70/15/15 split) with
   hwnas's public API: ``hwnas.tasks.baselines.mlp(..., bits=None)`` made fixed point by
   ``hwnas.train.local_search.to_fixed_point`` — ``ap_fixed<16,6>`` (hls4ml's default precision, how such a
   baseline is deployed without further compression) on weights, biases and every layer input —, then
   quantization-aware training with the experiment's optimizer settings for ``--epochs`` epochs (batch 128)
   on the training split. Fidelity on the validation and test splits; BOPs; the hls4ml model's estimate at
   the experiment's reuse factor (8) as the trials are priced (average resources in % of the ZCU102, cycles);
   with ``--alkaid`` the alkaid estimate (the RTL export's design; slow for this size). The model, an hls4ml
   project and — with ``--rtl`` — the RTL (alkaid, pipelined as ``run.rtl`` says) are written to ``--out``;
   ``--synth`` runs Yosys on the RTL like the run's synth stage, unless the estimated LUTs exceed
   ``--max-synth-luts`` (the step is then recorded as skipped with the reason). With ``--local`` the baseline
   also goes through the run's local search (``run.local``: precision pairs + pruning, kept by the same rule),
   and that model is estimated (alkaid, with ``--synth``) and synthesized the same way.
2. **Selected models**: read from the experiment's run folder (``selection.json``; the local search's model
   when it ran, ``local/trial_<n>.json``; ``synth/trial_<n>.json``; the synthesized RTL's latency from
   ``synth/trial_<n>_work/rtl/hwnas_rtl.json``), evaluated again on their own window's validation and test
   shots, priced by the same hls4ml model.
3. Prints the Table 3 / Table 4 style comparison with ratios (selected ÷ baseline) beside the seed's figures,
   and writes ``--out``/``summary.json`` and ``summary.md``.

    OMP_NUM_THREADS=1 .venv/bin/python bench/qubit_snac.py [--experiment examples/qubit_snac.yaml]
        [--out runs/qubit-snac-baseline] [--epochs 30] [--precision 16,6] [--alkaid] [--rtl] [--synth] [--local]

A second call reuses ``--out``/``baseline.pt`` (and the recorded estimates) unless ``--retrain``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]

SEED = {  # seed 004, Tables 3 and 4 (hls4ml, Vivado post-route on a ZCU102, reuse factor 8)
    "baseline": {"fidelity": 96.06, "bops": 3_487_250, "avg_resource": 0.79, "est_cycles": 948.67, "luts": 15045,
                 "ffs": 3656, "dsps": 0, "bram": 0, "cycles": 6},
    "snac": {"fidelity": 95.21, "bops": 1_026_048, "avg_resource": 0.61, "est_cycles": 810.36, "luts": 6996,
             "ffs": 2330, "dsps": 0, "bram": 0, "cycles": 4},
}
BASELINE_WINDOW = {"window_start": 100, "window_size": 400}


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _hls4ml_estimate(model: torch.nn.Module, exp: Any, shape: tuple[int, ...]) -> dict[str, float]:
    from hwnas.cost import estimate
    from hwnas.pipeline_export import reuse_per_layer

    rf = exp.run.hls4ml.reuse_factor  # each layer: the largest valid one not above it, as the run exports it
    e = estimate(model, exp.device(), input_shape=shape, kind="hls4ml",
                 reuse_factor=reuse_per_layer(model, shape, rf, "Latency"), clock_mhz=exp.hardware.clock())
    return {"luts": float(e.totals["luts"]), "dsps": float(e.totals["dsps"]), "avg_resource": float(e.avg_resource),
            "cycles": float(e.latency_cycles), "reuse_factor": rf}


def _alkaid_estimate(model: torch.nn.Module, exp: Any, shape: tuple[int, ...]) -> dict[str, float]:
    from hwnas.cost import estimate

    cutoff = exp.run.rtl.latency_cutoff_ns
    t0 = time.perf_counter()
    e = estimate(model, exp.device(), input_shape=shape, kind="alkaid", clock_mhz=exp.hardware.clock(),
                 latency_cutoff_ns=cutoff if cutoff > 0 else None)
    return {"luts": float(e.totals["luts"]), "ffs": float(e.totals["ffs"]), "avg_resource": float(e.avg_resource),
            "cycles": float(e.latency_cycles), "seconds": round(time.perf_counter() - t0, 1)}


def _bops(model: torch.nn.Module, shape: tuple[int, ...]) -> float:
    from hwnas.cost.metrics import model_metrics

    return float(model_metrics(model, shape).bops)


def _eff_bops(model: torch.nn.Module) -> float:
    """BOPs over the nonzero weights (pruned ones free): what the local search ranks by."""
    from hwnas.train.local_search import effective_bops

    return float(effective_bops(model))


def _fidelity(task: Any, model: torch.nn.Module, data: Any) -> dict[str, float]:
    return {"val": float(task.evaluate(model, data.val, classes=data.classes)[task.metric]),
            "test": float(task.evaluate(model, data.test, classes=data.classes)[task.metric])}


def _synth(model: torch.nn.Module, shape: tuple[int, ...], exp: Any, work: Path) -> dict[str, Any]:
    """RTL + Yosys exactly as the run's synth stage does it (``hwnas.pipeline.synthesize_selected``)."""
    from hwnas.export.rtl import export_rtl
    from hwnas.export.synth import synthesize
    from hwnas.pipeline_export import path_options

    t0 = time.perf_counter()
    project = export_rtl(model, shape, work / "rtl", **path_options(exp)["rtl"])
    rtl_s = time.perf_counter() - t0
    result = synthesize(project, target=exp.device(), output_dir=work / "synth", progress=False)
    return {"totals": dict(result.totals), "cycles": int(project.latency), "rtl_seconds": round(rtl_s, 1),
            "seconds": round(result.seconds, 1), "summary": result.summary()}


def train_baseline(exp: Any, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Train (or reload) the fixed-point baseline; estimate, export and synthesize it as asked."""
    from dataclasses import replace

    from hwnas.export import load_model, save_model
    from hwnas.export.hls4ml import export_hls4ml
    from hwnas.pipeline_export import path_options
    from hwnas.tasks import baselines, get_task
    from hwnas.train import Trainer
    from hwnas.train.local_search import to_fixed_point

    total, integer = (int(v) for v in args.precision.split(","))
    task = get_task(exp.task.name)
    options = {**exp.task.options, **BASELINE_WINDOW}
    data = task.load(seed=exp.seed, **options)
    shape = tuple(data.input_shape)
    path = out / "baseline.pt"
    rec_path = out / "baseline.json"
    record: dict[str, Any] = _read(rec_path) or {}
    if path.is_file() and not args.retrain:
        model = load_model(path).model.eval()
        print(f"[baseline] reusing {path}")
    else:
        record = {}
        torch.manual_seed(exp.seed)
        model = to_fixed_point(baselines.mlp(shape, data.n_classes, hidden=(32, 16), bits=None), total, integer)
        config = replace(exp.train_config(exp.seed, progress=False), epochs=args.epochs, batch_size=args.batch_size)
        t0 = time.perf_counter()
        history = Trainer(model, config).fit(data.train.pair, data.val.pair)
        model.eval()
        record["train_seconds"] = round(time.perf_counter() - t0, 1)
        record["val_per_epoch"] = [round(float(r.val_metric), 4) for r in history.records]
        save_model(model, path, shape, test_inputs=data.test.x[:256],
                   metadata={"task_options": {k: v for k, v in options.items() if k != "config"},
                             "precision": [total, integer], "epochs": args.epochs})
        print(f"[baseline] trained {args.epochs} epochs in {record['train_seconds']} s")
    record.update(model="MLP 800-32-16-2 (ReLU)", window=BASELINE_WINDOW, precision=[total, integer],
                  epochs=args.epochs if "epochs" not in record else record["epochs"])
    record.setdefault("epochs", args.epochs)
    record["fidelity"] = _fidelity(task, model, data)
    record["bops"] = _bops(model, shape)
    record["effective_bops"] = _eff_bops(model)
    record["hls4ml"] = _hls4ml_estimate(model, exp, shape)
    print(f"[baseline] fidelity val {record['fidelity']['val']:.4f}, test {record['fidelity']['test']:.4f}; "
          f"hls4ml model: {record['hls4ml']}")
    _write(rec_path, record)
    if args.alkaid and "alkaid" not in record:
        print("[baseline] alkaid estimate (slow for this size) ...", flush=True)
        record["alkaid"] = _alkaid_estimate(model, exp, shape)
        print(f"[baseline] alkaid: {record['alkaid']}")
        _write(rec_path, record)
    if "hls4ml_project" not in record:
        opts = path_options(exp, model, shape)["hls4ml"]
        export_hls4ml(model, shape, out / "hls4ml", **opts)
        record["hls4ml_project"] = str((out / "hls4ml").relative_to(ROOT) if out.is_relative_to(ROOT) else out)
        _write(rec_path, record)
    if args.synth and "synth" not in record:
        alk = record.get("alkaid")
        est = alk["luts"] if alk else record["hls4ml"]["luts"]
        source = "alkaid" if alk else f"hls4ml model at reuse factor {record['hls4ml']['reuse_factor']}"
        if est > args.max_synth_luts:
            record["synth"] = {"skipped": f"estimated {est:,.0f} LUTs ({source}) > --max-synth-luts "
                               f"{args.max_synth_luts:,}; the RTL export unrolls every multiplication, so its design "
                               f"is larger still: beyond Yosys here and the {exp.device().name}'s "
                               f"{exp.device().luts:,} LUTs"}
        else:
            print("[baseline] RTL + Yosys ...", flush=True)
            record["synth"] = _synth(model, shape, exp, out / "synth")
        print(f"[baseline] synth: {record['synth'].get('totals', record['synth'].get('skipped'))}")
        _write(rec_path, record)
    elif args.rtl and "rtl" not in record and "synth" not in record:
        from hwnas.export.rtl import export_rtl

        t0 = time.perf_counter()
        project = export_rtl(model, shape, out / "rtl", **path_options(exp)["rtl"])
        record["rtl"] = {"cycles": int(project.latency), "seconds": round(time.perf_counter() - t0, 1),
                         "summary": project.summary.as_dict()}
        _write(rec_path, record)
    if args.local:
        record["local"] = local_baseline(exp, args, out, model, task, data, record)
        _write(rec_path, record)
    return record


def _nonzero_weights(model: torch.nn.Module) -> int:
    """Nonzero weights of the conv/linear layers after quantization (what alkaid turns into adders)."""
    from hwnas.nn import QLayer

    n = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, QLayer) and isinstance(getattr(m, "weight", None), torch.nn.Parameter):
                w = m.weight_quantizer(m.weight) if getattr(m, "weight_quantizer", None) is not None else m.weight
                n += int((w != 0).sum())
    return n


def local_baseline(exp: Any, args: argparse.Namespace, out: Path, model: torch.nn.Module, task: Any, data: Any,
                   record: dict[str, Any]) -> dict[str, Any]:
    """The baseline through the run's local search (``run.local``: precision pairs + pruning), kept by its rule.

    The cheapest candidate (effective BOPs) whose validation fidelity is at most ``run.local.max_drop`` below the
    baseline's; none: the most accurate (``hwnas.pipeline_local``). Then estimated, exported and synthesized like
    the baseline (``--synth``, ``--max-synth-luts``).
    """
    from hwnas.export import load_model, save_model
    from hwnas.train.local_search import effective_bops, local_search, to_fixed_point

    shape = tuple(data.input_shape)
    path = out / "local" / "model.pt"
    rec: dict[str, Any] = dict(record.get("local") or {})
    if path.is_file() and not args.retrain:
        best = load_model(path).model.eval()
        rec = {**(_read(out / "local" / "local.json") or {}), **rec}
        print(f"[baseline local] reusing {path}")
    else:
        cfg = exp.run.local
        t0 = time.perf_counter()
        found = local_search(model, data.train.pair, data.val.pair, [tuple(p) for p in cfg.precisions],
                             config=exp.train_config(exp.seed, progress=False), warmup_epochs=cfg.warmup_epochs,
                             iterations=cfg.iterations, prune_rate=cfg.prune_rate,
                             epochs_per_iteration=cfg.epochs_per_iteration)
        base = record["fidelity"]["val"]
        cands = []
        for r in found.results:
            q = to_fixed_point(model, r.total_bits, r.int_bits)
            q.load_state_dict(r.best_state)
            q.eval()
            fid = float(task.evaluate(q, data.val, classes=data.classes)[task.metric])
            cands.append((q, fid, float(effective_bops(q)), f"ap_fixed<{r.total_bits},{r.int_bits}> "
                          f"(pruning iteration {r.best_iteration})"))
        within = [c for c in cands if c[1] >= base - cfg.max_drop]
        best, _, _, kept = min(within, key=lambda c: c[2]) if within else max(cands, key=lambda c: c[1])
        with torch.no_grad():
            best(data.test.x[:1])
        save_model(best, path, shape, test_inputs=data.test.x[:256], metadata={"local_search": kept})
        rec = {"kept": kept, "within_max_drop": bool(within), "seconds": round(time.perf_counter() - t0, 1),
               "candidates": [{"kept": c[3], "fidelity_val": c[1], "effective_bops": c[2]} for c in cands],
               "table": found.table()}
        print(f"[baseline local] kept {kept} ({rec['seconds']} s)")
        _write(out / "local" / "local.json", rec)
    from hwnas.cost.metrics import model_metrics

    rec["fidelity"] = _fidelity(task, best, data)
    rec["bops"] = _bops(best, shape)
    rec["effective_bops"] = _eff_bops(best)
    rec["sparsity"] = float(model_metrics(best, shape).sparsity)
    rec["hls4ml"] = _hls4ml_estimate(best, exp, shape)
    rec["nonzero_weights"] = _nonzero_weights(best)
    if rec["nonzero_weights"] > args.max_rtl_weights:
        why = (f"{rec['nonzero_weights']:,} nonzero weights > --max-rtl-weights {args.max_rtl_weights:,}: alkaid's "
               "trace (the estimate and the RTL export) of a design this size takes too long here")
        rec.setdefault("synth", {"skipped": why})
        print(f"[baseline local] alkaid + Yosys skipped: {why}")
    if (args.alkaid or args.synth) and "alkaid" not in rec and "skipped" not in rec.get("synth", {}):
        print("[baseline local] alkaid estimate ...", flush=True)  # the synthesis gate; costs what the RTL export costs
        rec["alkaid"] = _alkaid_estimate(best, exp, shape)
        print(f"[baseline local] alkaid: {rec['alkaid']}")
    if args.synth and "synth" not in rec:
        est = rec.get("alkaid", {}).get("luts", rec["hls4ml"]["luts"])
        if est > args.max_synth_luts:
            rec["synth"] = {"skipped": f"estimated {est:,.0f} LUTs > --max-synth-luts {args.max_synth_luts:,}"}
        else:
            print("[baseline local] RTL + Yosys ...", flush=True)
            rec["synth"] = _synth(best, shape, exp, out / "local" / "synth")
        print(f"[baseline local] synth: {rec['synth'].get('totals', rec['synth'].get('skipped'))}")
    return rec


def selected_models(exp: Any) -> list[dict[str, Any]]:
    """The run's selected models with their figures (what the run recorded, and evaluated again here)."""
    from hwnas.export import load_model
    from hwnas.pipeline import model_path
    from hwnas.search.objective import model_task_data

    run = exp.output_dir()
    selection = _read(run / "selection.json")
    if selection is None:
        raise SystemExit(f"{run / 'selection.json'} is missing: run `hwnas run {exp.name}` first")
    rows = []
    for entry in selection["selected"]:
        n = int(entry["number"])
        bundle = load_model(model_path(exp, entry))
        task, data, options = model_task_data(exp, bundle.metadata)
        shape = tuple(bundle.input_shape)
        searched = entry.get("metrics") or {}
        local = _read(run / "local" / f"trial_{n:05d}.json")
        synth = _read(run / "synth" / f"trial_{n:05d}.json")
        rtl = _read(run / "synth" / f"trial_{n:05d}_work" / "rtl" / "hwnas_rtl.json")
        verify = _read(run / "verify" / f"trial_{n:05d}.json")
        row = {"trial": n, "rule": entry["rule"],
               "window": {k: options[k] for k in ("window_start", "window_size")},
               "point": (bundle.metadata or {}).get("point"),
               "searched": {k: searched.get(k) for k in ("accuracy", "accuracy_std", "test_accuracy", "bops",
                                                         "avg_resource", "latency_cycles", "luts")},
               "local": None if local is None else {k: local.get(k) for k in ("kept", "metric", "searched_metric",
                                                                              "sparsity", "bops", "effective_bops")},
               "fidelity": _fidelity(task, bundle.model, data), "bops": _bops(bundle.model, shape),
               "effective_bops": _eff_bops(bundle.model),
               "hls4ml": _hls4ml_estimate(bundle.model, exp, shape)}
        if synth is not None:
            row["synth"] = {"totals": synth["totals"], "seconds": synth.get("seconds"),
                            "cycles": None if rtl is None else rtl["summary"]["latency"]}
        if verify is not None:
            row["verify"] = [{k: p.get(k) for k in ("path", "samples", "mismatches", "skipped")}
                             for p in verify["paths"]]
        rows.append(row)
    return rows


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str))


def _f(v: Any, fmt: str = "{:,.0f}") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return fmt.format(v)


def _ratio(a: Any, b: Any) -> str:
    return "–" if a is None or b in (None, 0) else f"{a / b:.2f}"


def _entries(base: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per table row: the baseline, its local-search result (if any), the selected models."""
    p = base["precision"]
    keys = ("fidelity", "bops", "effective_bops", "hls4ml", "alkaid", "synth")
    out = [{"name": f"baseline MLP 800-32-16-2, ap_fixed<{p[0]},{p[1]}>", "short": "baseline", "window": "100+400",
            **{k: base.get(k) for k in keys}}]
    if base.get("local"):
        lo = base["local"]
        out.append({"name": f"baseline + local search: {lo['kept']}, sparsity {lo['sparsity']:.2f}",
                    "short": "baseline + local search", "window": "100+400", **{k: lo.get(k) for k in keys}})
    for r in rows:
        w = r["window"]
        kept = (r.get("local") or {}).get("kept")
        out.append({"name": f"trial {r['trial']} ({r['rule']}) {r.get('point_desc', '')}".strip()
                    + (f", local search: {kept}" if kept else ""),
                    "short": f"trial {r['trial']}", "window": f"{w['window_start']}+{w['window_size']}",
                    "selected": True, **{k: r.get(k) for k in keys}})
    return out


def tables(base: dict[str, Any], rows: list[dict[str, Any]], exp: Any) -> str:
    dev = exp.device()
    entries = _entries(base, rows)
    b0 = entries[0]
    lines = [
        f"Table 3 style (estimates: hwnas's hls4ml model at reuse factor {base['hls4ml']['reuse_factor']}, {dev.name}; "
        "the seed: rule4ml):", "",
        "| model | window | fidelity val [%] | fidelity test [%] | BOPs | eff. BOPs | est. avg resources [%] | "
        "est. cycles |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for e in entries:
        lines.append(f"| {e['name']} | {e['window']} | {100 * e['fidelity']['val']:.2f} | "
                     f"{100 * e['fidelity']['test']:.2f} | {_f(e['bops'])} | {_f(e.get('effective_bops'))} | "
                     f"{e['hls4ml']['avg_resource']:.3f} | {_f(e['hls4ml']['cycles'])} |")
    for e in entries[1:]:
        lines.append(f"| ratio {e['short']} ÷ baseline | | "
                     f"{_ratio(e['fidelity']['val'], b0['fidelity']['val'])} | "
                     f"{_ratio(e['fidelity']['test'], b0['fidelity']['test'])} | {_ratio(e['bops'], b0['bops'])} | "
                     f"{_ratio(e.get('effective_bops'), b0.get('effective_bops'))} | "
                     f"{_ratio(e['hls4ml']['avg_resource'], b0['hls4ml']['avg_resource'])} | "
                     f"{_ratio(e['hls4ml']['cycles'], b0['hls4ml']['cycles'])} |")
    s, b = SEED["snac"], SEED["baseline"]
    lines += [f"| seed: baseline | 100+400 | {b['fidelity']} | – | {b['bops']:,} | – | {b['avg_resource']} | "
              f"{b['est_cycles']} |",
              f"| seed: SNAC-Pack | not given | {s['fidelity']} | – | {s['bops']:,} | – | {s['avg_resource']} | "
              f"{s['est_cycles']} |",
              f"| seed ratio SNAC-Pack ÷ baseline | | {s['fidelity'] / b['fidelity']:.3f} | | "
              f"{s['bops'] / b['bops']:.2f} | | {s['avg_resource'] / b['avg_resource']:.2f} | "
              f"{s['est_cycles'] / b['est_cycles']:.2f} |", "",
              f"Table 4 style (Yosys synth_xilinx for the {dev.name} of the alkaid RTL, pipelined at "
              f"{exp.run.rtl.latency_cutoff_ns} ns; the seed: Vivado post-route of the hls4ml project at reuse "
              "factor 8):",
              "", "| model | LUT | FF | DSP | BRAM18 | latency [cycles] | Yosys [s] |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    synthesized: dict[str, dict[str, Any]] = {}
    for e in entries:
        sy = e.get("synth") or {}
        t = sy.get("totals")
        if t:
            synthesized[e["name"]] = {"luts": t["luts"], "ffs": t["ffs"], "cycles": sy.get("cycles"),
                                      "short": e["short"]}
            lines.append(f"| {e['name']} | {_f(t['luts'])} | {_f(t['ffs'])} | {_f(t['dsps'])} | {_f(t['bram18'])} | "
                         f"{_f(sy.get('cycles'))} | {_f(sy.get('seconds'), '{}')} |")
            continue
        alk = e.get("alkaid")
        if alk:
            lines.append(f"| {e['name']} (alkaid estimate) | {_f(alk['luts'])} | {_f(alk['ffs'])} | 0 | 0 | "
                         f"{_f(alk['cycles'])} | – |")
        lines.append(f"| {e['name']}: Yosys | {sy.get('skipped', 'not run')} | | | | | |")
    names = list(synthesized)
    for sel in [e for e in entries if e.get("selected") and e["name"] in synthesized]:
        for ref in [n for n in names if not n.startswith("trial")]:
            a, r = synthesized[sel["name"]], synthesized[ref]
            lines.append(f"| ratio {sel['short']} ÷ {r['short']} | "
                         f"{_ratio(a['luts'], r['luts'])} | {_ratio(a['ffs'], r['ffs'])} | | | "
                         f"{_ratio(a['cycles'], r['cycles'])} | |")
    lines += [f"| seed: baseline | {b['luts']:,} | {b['ffs']:,} | 0 | 0 | {b['cycles']} | |",
              f"| seed: SNAC-Pack | {s['luts']:,} | {s['ffs']:,} | 0 | 0 | {s['cycles']} | |",
              f"| seed ratio SNAC-Pack ÷ baseline | {s['luts'] / b['luts']:.2f} | {s['ffs'] / b['ffs']:.2f} | | | "
              f"{s['cycles'] / b['cycles']:.2f} | |"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiment", default=str(ROOT / "examples" / "qubit_snac.yaml"))
    p.add_argument("--out", default=str(ROOT / "runs" / "qubit-snac-baseline"))
    p.add_argument("--epochs", type=int, default=30, help="baseline QAT epochs (batch --batch-size)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--precision", default="16,6", help="ap_fixed<total,integer> of the baseline (default 16,6)")
    p.add_argument("--alkaid", action="store_true", help="also the alkaid estimate of the baseline (slow)")
    p.add_argument("--rtl", action="store_true", help="export the baseline's RTL (alkaid; slow for this size)")
    p.add_argument("--synth", action="store_true", help="RTL + Yosys for the baseline, as the run's synth stage")
    p.add_argument("--max-synth-luts", type=int, default=300_000,
                   help="skip Yosys when the estimate (alkaid, else the hls4ml model) is above this")
    p.add_argument("--max-rtl-weights", type=int, default=8000,
                   help="skip alkaid and Yosys for a local-search baseline with more nonzero weights than this")
    p.add_argument("--local", action="store_true", help="also the baseline through the run's local search "
                   "(run.local: precision pairs + pruning), estimated and synthesized the same way")
    p.add_argument("--retrain", action="store_true", help="train the baseline again even if --out has it")
    args = p.parse_args(argv)

    from hwnas.config import load_experiment

    exp = load_experiment(args.experiment)
    out = Path(args.out)
    t0 = time.perf_counter()
    base = train_baseline(exp, args, out)
    rows = selected_models(exp)
    for r in rows:
        pt = r.get("point") or {}
        dense = "-".join(str(d["units"]) for d in pt.get("dense", []))
        r["point_desc"] = f"MLP {2 * r['window']['window_size']}-{dense}-2 " if dense else ""
    text = tables(base, rows, exp)
    print(text)
    _write(out / "summary.json", {"baseline": base, "selected": rows, "seed": SEED,
                                  "experiment": str(args.experiment), "seconds": round(time.perf_counter() - t0, 1)})
    (out / "summary.md").write_text(text + "\n")
    print(f"written: {out / 'summary.json'}, {out / 'summary.md'} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
