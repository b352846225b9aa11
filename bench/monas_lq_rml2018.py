"""examples/monas_lq_rml2018.yaml at a stated smaller scale, run end to end; prints where its tables are.

The scale knobs replace only what they name (frames per pair, trials, epochs, the stage-1/2 sizes); everything
else is the example's. The derived experiment is written into the output folder first, so the run can be
resumed or inspected with the ordinary commands (``hwnas run <output>/experiment.yaml``).

    OMP_NUM_THREADS=1 .venv/bin/python bench/monas_lq_rml2018.py --per-pair 40 --trials 24 --epochs 3 \\
        --output runs/monas-lq-rml2018-pp40

Results and the commands that made them: docs/reproductions.md (seed 000).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "monas_lq_rml2018.yaml"


def derive(per_pair: int | None, trials: int | None, epochs: int | None, hpo: int | None,
           bootstrap: int | None, workers: int | None, filters: list[int] | None = None,
           hgq_epochs: int | None = None, folding_ms: float | None = None) -> dict:
    """The example's document with the named knobs replaced."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["output"] = "."
    if filters is not None:
        doc["space"]["filters"] = filters
    if hgq_epochs is not None:  # beyond the seed: HGQ per-parameter bits from the searched layer-wise bits
        doc["run"]["local"] = {"enabled": True, "method": "beta_sweep", "sweep_epochs": hgq_epochs,
                               "beta0": 1e-9, "beta1": 1e-6, "max_drop": 0.01}
        doc["run"]["verify"] = ["hls4ml"]  # per-element activation widths: QONNX's Quant carries one per tensor
    if folding_ms is not None:  # beyond the seed: FINN PE/SIMD per layer searched under a latency budget
        doc["space"]["mapping"] = {"kind": "finn", "folding": "search"}
        doc["constraints"].append({"metric": "latency_ms", "max": folding_ms})
    if per_pair is not None:
        doc["task"]["options"]["per_pair"] = per_pair
    if workers is not None:
        doc["task"]["options"]["workers"] = workers
    if trials is not None:
        doc["search"]["n_trials"] = trials
    if epochs is not None:
        doc["training"]["epochs"] = epochs
    if hpo is not None:
        doc["search"]["options"]["hpo_trials"] = hpo
    if bootstrap is not None:
        doc["search"]["options"]["bootstrap_size"] = bootstrap
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", required=True, help="run folder (created; the derived experiment.yaml goes there)")
    ap.add_argument("--per-pair", type=int, help="frames per (class, SNR) pair (example: 410)")
    ap.add_argument("--trials", type=int, help="search.n_trials (example: 40)")
    ap.add_argument("--epochs", type=int, help="training.epochs of every trial and baseline (example: 3)")
    ap.add_argument("--hpo-trials", type=int, help="stage-1 trainings (example: 3)")
    ap.add_argument("--bootstrap", type=int, help="stage-2 trainings (example: 12)")
    ap.add_argument("--workers", type=int, help="generator processes of the task data")
    ap.add_argument("--filters", help="comma-separated backbone widths stage 1 chooses from (example: 16,32,64)")
    ap.add_argument("--hgq-epochs", type=int, help="beyond the seed: run.local beta_sweep of this many epochs on the "
                    "selected models (HGQ per-parameter bits from the searched layer-wise bits, β 1e-9 → 1e-6)")
    ap.add_argument("--folding-ms", type=float, help="beyond the seed: FINN PE/SIMD per layer as search variables "
                    "(space.mapping folding: search) under latency_ms <= this")
    ap.add_argument("--stages", help="comma-separated stages for hwnas run (default all)")
    args = ap.parse_args(argv)
    from hwnas.cli import main as hwnas

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "experiment.yaml"
    filters = [int(f) for f in args.filters.split(",")] if args.filters else None
    doc = derive(args.per_pair, args.trials, args.epochs, args.hpo_trials, args.bootstrap, args.workers, filters,
                 args.hgq_epochs, args.folding_ms)
    text = yaml.safe_dump(doc, sort_keys=False)
    if path.is_file() and path.read_text() != text:
        print(f"{path} exists with other settings; choose another --output", file=sys.stderr)
        return 2
    path.write_text(text)
    t0 = time.perf_counter()
    cmd = ["run", str(path), "--quiet"] + (["--stages", args.stages] if args.stages else [])
    rc = hwnas(cmd)
    print(f"hwnas {' '.join(cmd)}: exit {rc} after {(time.perf_counter() - t0) / 60:.1f} min")
    report = out / "report"
    for name in ("table2.md", "table3.md", "baselines.md"):
        if (report / name).is_file():
            print(f"\n{report / name}:\n{(report / name).read_text()}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
