"""The in-loop estimators against Yosys on the models real searches selected (not the design dataset's samples).

For every model an ``hwnas run`` synthesized (``<output>/synth/trial_<n>.json``: the local search's or the trial's
model file, the target, the Yosys totals) the script prices the same model file with the estimators a search can
use — ``alkaid`` (calibrated trace), ``surrogate`` (trees, no trace), the hls4ml distributed-arithmetic model —
at the experiment's ``run.rtl.latency_cutoff_ns`` and prints each one's LUT and FF error against Yosys and its
time. These models lie far outside the design dataset (≤ 500 MACs): the held-out figures of
``bench/estimator_accuracy.py`` say how the estimators do inside it, this says how they do where the examples'
searches go.

    OMP_NUM_THREADS=1 .venv/bin/python bench/estimator_real_runs.py examples/qubit_snac.yaml examples/snac_jets.yaml

Results: docs/benchmarks.md (*Estimator accuracy*, "On the examples' selected models").
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def _pct(est: float, ref: float) -> str:
    return f"{100 * (est - ref) / ref:+.0f} %" if ref else "—"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiments", nargs="+", help="experiment files whose output folders hold synth records")
    args = ap.parse_args(argv)

    from hwnas.config import load_experiment
    from hwnas.cost import CostError, estimate
    from hwnas.export import load_model
    from hwnas.runpaths import resolve_path

    print("| model | MACs | Yosys LUT / FF | estimator | LUT (error) | FF (error) | seconds |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for path in args.experiments:
        exp = load_experiment(path)
        out = exp.output_dir()
        cutoff = exp.run.rtl.latency_cutoff_ns
        for record_path in sorted((out / "synth").glob("trial_*.json")):
            rec = json.loads(record_path.read_text())
            bundle = load_model(resolve_path(rec["model"], out))
            shape = tuple(bundle.input_shape)
            ref = rec["totals"]
            name = f"{exp.name} #{rec.get('trial', record_path.stem)}"
            macs = bundle.metadata.get("metrics", {}).get("macs", float("nan"))
            for kind, options in (("alkaid", {"latency_cutoff_ns": cutoff}),
                                  ("surrogate", {"latency_cutoff_ns": cutoff}),
                                  ("hls4ml", {"strategy": "distributed_arithmetic"})):
                t0 = time.perf_counter()
                try:
                    est = estimate(bundle.model, rec["device"], input_shape=shape, kind=kind, **options).totals
                except (CostError, ValueError) as err:
                    print(f"| {name} | {macs:,.0f} | {ref['luts']:,.0f} / {ref['ffs']:,.0f} | {kind} | {err} | | |")
                    continue
                seconds = time.perf_counter() - t0
                ff = (f"{est.get('ffs', 0):,.0f} ({_pct(est.get('ffs', 0), ref['ffs'])})" if ref["ffs"]
                      else f"{est.get('ffs', 0):,.0f} (combinational)")
                print(f"| {name} | {macs:,.0f} | {ref['luts']:,.0f} / {ref['ffs']:,.0f} | {kind} | "
                      f"{est['luts']:,.0f} ({_pct(est['luts'], ref['luts'])}) | {ff} | {seconds:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
