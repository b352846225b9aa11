"""``hwnas jets generate``: Pythia 8 + FastJet jets (g, q, w, z, t) into a resumable cache (:mod:`hwnas.tasks.jets`).

Exit status: 0 success, 1 Pythia 8 or FastJet not installed (pip install 'hwnas[jets]'), 2 bad input (an option
out of range, an unknown class, a cache folder of other options), 130 interrupted (finished shards are kept: the
next run resumes). Every error is one line naming the option.
See ``docs/tasks_jets.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from hwnas.cli_util import one_line_errors

__all__ = ["add_jets_commands"]

_FLAGS = {"n_per_class": "--per-class", "seed": "--seed", "classes": "--classes", "pt_window": "--pt-min/--pt-max",
          "eta_max": "--eta-max", "radius": "--radius", "match_dr": "--match-dr", "max_particles": "--max-particles",
          "events_per_shard": "--events-per-shard", "pthat_min": "--pthat-min", "workers": "--workers",
          "data_dir": "--out"}


def _generate(args: argparse.Namespace) -> int:
    import numpy as np

    from hwnas.tasks.jets import generate as gen

    given = {"eta_max": gen.DEFAULT_ETA_MAX, "radius": gen.DEFAULT_RADIUS, "match_dr": gen.DEFAULT_MATCH_DR,
             "events_per_shard": gen.DEFAULT_EVENTS_PER_SHARD, "pthat_min": None}
    given.update({k: getattr(args, k) for k in given if getattr(args, k) is not None})
    pt_min = gen.DEFAULT_PT_WINDOW[0] if args.pt_min is None else args.pt_min
    pt_max = gen.DEFAULT_PT_WINDOW[1] if args.pt_max is None else args.pt_max
    max_particles = gen.DEFAULT_MAX_PARTICLES if args.max_particles is None else args.max_particles
    start = time.perf_counter()
    try:
        sample = gen.generate_jets(args.per_class, seed=args.seed, classes=args.classes, pt_window=(pt_min, pt_max),
                                   max_particles=max_particles, workers=args.workers, progress=not args.quiet,
                                   data_dir=args.out, **given)
        folder = gen.jets_cache_folder(args.out, gen.JetOptions(seed=args.seed, pt_min=pt_min, pt_max=pt_max,
                                                                **given))
    except gen.JetsError as err:
        print(f"hwnas: error: {_FLAGS.get(err.option, err.option)} ({err.option}): {err.detail}", file=sys.stderr)
        return err.exit_code  # 2, or 1 when the generator is not installed (hwnas.errors.tool_missing)
    seconds = time.perf_counter() - start
    print(f"cache: {folder}")
    print(f"{'class':5s} {'jets':>7s} {'mass mean':>9s} {'p10':>6s} {'p50':>6s} {'p90':>6s} GeV  "
          f"{'constituents':>12s}")
    mass = sample.mass
    for label, name in enumerate(sample.classes):
        m = mass[sample.y == label]
        p10, p50, p90 = np.percentile(m, [10, 50, 90])
        n_const = float(np.mean(sample.n_total[sample.y == label]))
        print(f"{name:5s} {len(m):7d} {np.mean(m):9.1f} {p10:6.1f} {p50:6.1f} {p90:6.1f}      {n_const:12.1f}")
    print(f"{len(sample)} jets in {seconds:.1f} s ({len(sample) / max(seconds, 1e-9):.1f} jets/s, shards loaded "
          "from the cache included)")
    return 0


def add_jets_commands(sub: Any) -> None:
    """Register ``jets`` (with ``jets generate``) on the ``hwnas`` sub-command parser."""
    jets = sub.add_parser("jets", help="jet tagging (g, q, W, Z, top): Pythia 8 + FastJet jet generation")
    one_line_errors(jets)
    jsub = jets.add_subparsers(dest="jets_command", required=True)
    p = jsub.add_parser("generate", help="generate labelled anti-kT jets into a cache folder (resumes a killed "
                        "run; a rerun with the same options loads it)")
    one_line_errors(p)
    p.add_argument("--per-class", dest="per_class", type=int, default=1000, help="jets per class (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", default="data", help="folder holding the cache folder (default ./data)")
    p.add_argument("--classes", default="g,q,w,z,t", help="comma list of classes (default g,q,w,z,t)")
    p.add_argument("--pt-min", dest="pt_min", type=float,
                   help="lowest jet pT in GeV (default 800)")
    p.add_argument("--pt-max", dest="pt_max", type=float,
                   help="jet pT below this in GeV (default 1200)")
    p.add_argument("--eta-max", dest="eta_max", type=float,
                   help="jets keep |eta| below this (default 1.7)")
    p.add_argument("--radius", type=float, help="anti-kT R (default 0.8)")
    p.add_argument("--match-dr", dest="match_dr", type=float,
                   help="largest jet-axis to truth-object distance (default 0.6)")
    p.add_argument("--max-particles", dest="max_particles", type=int,
                   help="constituent rows per jet (default 150)")
    p.add_argument("--events-per-shard", dest="events_per_shard", type=int,
                   help="Pythia events per shard (default 500; changes which jets a seed gives)")
    p.add_argument("--pthat-min", dest="pthat_min", type=float,
                   help="Pythia's PhaseSpace:pTHatMin in GeV (default 0.8 x --pt-min)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes (default: all CPUs; the jets do not depend on it)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_generate)
