"""What the training budget does to MONAS-LQ's headline: searched models vs the 8-bit VGG10 at equal training.

The search warm-starts every trial from its closest finished parent (``search.warm_start: closest``), so a late
trial's weights carry several trials' training while a baseline trains once. This script removes that
difference: it trains the run's selected architectures (or ``--trials``) and the named baselines **from scratch**
with the run's own training section and data, at each epoch count of ``--epochs``, and prints validation/test
accuracy and QA-Score side by side, with the warm-start chain each searched model had in the search.

    OMP_NUM_THREADS=1 .venv/bin/python bench/monas_lq_budget.py --run runs/mlq-pp32 --epochs 3,12,24

Every finished (model, epochs) row is appended to ``<run>/budget.json`` at once, so a killed run resumes where it
stopped; ``--per-pair`` trains on more generated frames (a separate row key). Results: docs/reproductions.md
(seed 000) and docs/benchmarks.md (*MONAS-LQ at reduced scale*).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path


def _chain(run: Path, number: int) -> list[int]:
    """Trial ``number`` and the trials it warm-started from, newest first."""
    from hwnas.export import load_model

    chain = [number]
    while True:
        path = run / "trials" / f"{chain[-1]:05d}" / "model.pt"
        parent = load_model(path).metadata.get("warm_start") if path.is_file() else None
        if parent is None or parent in chain:
            return chain
        chain.append(int(parent))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a finished MONAS-LQ run folder (experiment.yaml, selection.json)")
    ap.add_argument("--trials", help="comma-separated trial numbers (default: the run's selected models)")
    ap.add_argument("--baselines", default="vgg10-32f-8b,qcnn-32f", help="comma-separated run.baselines names")
    ap.add_argument("--epochs", default="3,12", help="comma-separated epoch counts, each trained from scratch")
    ap.add_argument("--per-pair", type=int, help="frames per (class, SNR) pair instead of the run's")
    ap.add_argument("--filters", type=int, help="also train each trial's architecture with every convolution at this "
                    "many filters (bits unchanged): what the backbone width stage 1 fixed costs")
    args = ap.parse_args(argv)

    import torch

    from hwnas.config import load_experiment
    from hwnas.search.objective import TrialContext, measure
    from hwnas.space.point import Point
    from hwnas.tasks.baselines import build_named
    from hwnas.train import Trainer

    run = Path(args.run)
    exp = load_experiment(run / "experiment.yaml")
    if args.per_pair is not None:
        exp = exp.model_copy(update={"task": exp.task.model_copy(
            update={"options": {**exp.task.options, "per_pair": args.per_pair}})})
    per_pair = int(exp.task.options.get("per_pair", 0))
    if args.trials:
        trials = [int(t) for t in args.trials.split(",")]
    else:
        trials = [int(s["number"]) for s in json.loads((run / "selection.json").read_text())["selected"]]
    baselines = [b for b in args.baselines.split(",") if b]  # "" for none
    epochs = [int(e) for e in args.epochs.split(",")]
    out = run / "budget.json"
    rows: list[dict] = json.loads(out.read_text()) if out.is_file() else []
    done = {(r["model"], r["epochs"], r["per_pair"]) for r in rows}

    t0 = time.perf_counter()
    ctx = TrialContext.create(exp, output=run, save_models=False)
    data = ctx.data
    print(f"data: {len(data.train.y)} training / {len(data.val.y)} validation / {len(data.test.y)} test frames "
          f"({per_pair} per pair), loaded in {time.perf_counter() - t0:.0f} s", flush=True)
    from hwnas.export import load_model

    models: list[tuple[str, int, object, list[int]]] = []  # (name, seed, builder, warm-start chain)
    for number in trials:
        meta = load_model(run / "trials" / f"{number:05d}" / "model.pt").metadata
        point = Point.from_dict(meta["point"])
        seed = exp.trial_seed(number)
        chain = _chain(run, number)
        if args.filters:  # the trial's bits on another backbone width (not a trial of the search)
            wide = Point.from_dict({**meta["point"], "conv": [{**c, "filters": args.filters}
                                                              for c in meta["point"]["conv"]]})
            models.append((f"trial {number} @{args.filters}f", seed,
                           (lambda p=wide, s=seed: ctx.space.build(p, seed=s)), []))
        else:
            models.append((f"trial {number}", seed, (lambda p=point, s=seed: ctx.space.build(p, seed=s)), chain))
    for name in baselines:
        models.append((name, int(exp.seed), (lambda n=name: build_named(n, tuple(data.input_shape),
                                                                         data.n_classes)), []))
    for n_epochs in epochs:
        for name, seed, build, chain in models:
            if (name, n_epochs, per_pair) in done:
                continue
            torch.manual_seed(seed)
            model = build()
            config = dataclasses.replace(exp.train_config(seed, progress=False), epochs=n_epochs)
            t1 = time.perf_counter()
            history = Trainer(model, config).fit(data.train.pair, data.val.pair)
            seconds = time.perf_counter() - t1
            metrics, _ = measure(model, ctx, hardware=False)
            row = {"model": name, "epochs": n_epochs, "per_pair": per_pair, "trained_epochs": len(history.records),
                   "val_accuracy": metrics["accuracy"], "test_accuracy": metrics["test_accuracy"],
                   "qa_score": metrics.get("qa_score"), "macs": metrics["macs"], "train_seconds": round(seconds, 1),
                   "search_chain": chain, "search_epochs": len(chain) * int(exp.training.epochs) if chain else None}
            rows.append(row)
            tmp = out.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(rows, indent=1))
            tmp.replace(out)
            print(f"{name:>14} {n_epochs:3d} epochs: val {row['val_accuracy']:.4f} test {row['test_accuracy']:.4f} "
                  f"QA {row['qa_score']:.3f} ({seconds / 60:.1f} min)", flush=True)

    print("\n| model | QA-Score | in the search | " + " | ".join(f"{e} epochs (val / test)" for e in epochs) + " |")
    print("|---|---|---|" + "---|" * len(epochs))
    for name, _, _, chain in models:
        got = {r["epochs"]: r for r in rows if r["model"] == name and r["per_pair"] == per_pair}
        qa = next((r["qa_score"] for r in got.values()), float("nan"))
        searched = (f"warm-started {' ← '.join(map(str, chain))} ({len(chain) * exp.training.epochs} epochs)"
                    if len(chain) > 1 else ("from scratch" if chain else
                                            "not searched" if name.startswith("trial") else "baseline"))
        cells = [f"{100 * got[e]['val_accuracy']:.2f} / {100 * got[e]['test_accuracy']:.2f} %" if e in got else "—"
                 for e in epochs]
        print(f"| {name} | {qa:.3f} | {searched} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
