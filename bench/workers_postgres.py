"""Workers on a real PostgreSQL server: trials per minute with 1, 2 and 4 workers, and faults.

Starts a PostgreSQL server on loopback (Debian's initdb/pg_ctl, as tests/pgserver.py does), then for each
objective — ``sleep`` (0.2 s of waiting per trial: what the database and the claims allow) and ``cpu`` (0.2 s of
single-threaded NumPy work per trial: what the cores allow) — runs a 48-trial study with 1, 2 and 4 worker
processes and reports trials/min against the ideal (N × one worker's rate; for ``cpu`` at most the number of
cores). Then the fault runs: one worker ``kill -9``'d in its first trial and the server restarted under the
others, a resumed worker finishing the study; lost (not COMPLETE/FAIL at the end, or missing) and duplicated
(run by two workers) trials are counted over all runs.

    OMP_NUM_THREADS=1 .venv/bin/python bench/workers_postgres.py [--trials 48] [--faults 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).parents[1]))
from tests.pgserver import PgServer

from hwnas.search.storage import resolve_storage
from hwnas.search.workers import create_study, run_worker

WORKER = r'''
import json, os, sys, time
from pathlib import Path
import numpy as np
import optuna
from hwnas.errors import HwnasError
from hwnas.search.storage import resolve_storage
from hwnas.search.workers import run_worker

optuna.logging.set_verbosity(optuna.logging.WARNING)
cfg = json.loads(sys.argv[1])
storage = resolve_storage(cfg["url"], Path(cfg["out"]), heartbeat_s=1.0, grace_s=3.0)
Path(cfg["out"], f"ready_{cfg['worker']}").touch()
while not all(Path(cfg["out"], f"ready_{w}").exists() for w in cfg["barrier"]):
    time.sleep(0.01)
a = np.random.default_rng(0).standard_normal((96, 96))

def objective(trial):
    x = trial.suggest_float("x", -10, 10)
    hang = cfg.get("hang")
    if hang and not os.path.exists(hang):
        Path(hang).write_text(str(trial.number))
        time.sleep(600)
    if cfg["kind"] == "sleep":
        time.sleep(0.2)
    else:
        t0 = time.process_time()
        while time.process_time() - t0 < 0.2:
            a @ a
    return x * x

try:
    report = run_worker("toy", storage, objective, sampler=optuna.samplers.RandomSampler(seed=cfg["worker"]),
                        budget=cfg["budget"], worker_id=cfg["worker"], progress=False, retry_failed=1)
    Path(cfg["out"], f"report_{cfg['worker']}.json").write_text(json.dumps(report.to_dict()))
except HwnasError as err:
    print(f"error: {err}")
    sys.exit(1)
'''


def spawn(out: Path, url: str, worker: int, kind: str, budget: int, barrier: list[int], hang: Path | None = None
          ) -> subprocess.Popen:
    script = out / "worker.py"
    if not script.exists():
        script.write_text(WORKER)
    cfg = {"url": url, "out": str(out), "worker": worker, "kind": kind, "budget": budget, "barrier": barrier,
           "hang": str(hang) if hang else None}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script), json.dumps(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def counts(out: Path, url: str, extra: list[list[int]] = ()) -> tuple[int, int]:
    """(lost, duplicated) trials of the study."""
    study = optuna.load_study(study_name="toy", storage=resolve_storage(url, out, heartbeat_s=1.0, grace_s=3.0))
    trials = study.get_trials()
    budget = int(study.user_attrs["hwnas:budget"]) if "hwnas:budget" in study.user_attrs else len(trials)
    unfinished = sum(1 for t in trials if t.state not in (TrialState.COMPLETE, TrialState.FAIL))
    lost = unfinished + max(0, budget - len(trials))
    ran = [json.loads(p.read_text())["trials"] for p in out.glob("report_*.json")] + list(extra)
    flat = [n for r in ran for n in r]
    return lost, len(flat) - len(set(flat))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=48)
    ap.add_argument("--faults", type=int, default=3)
    args = ap.parse_args(argv)
    why = PgServer.available()
    if why:
        print(why, file=sys.stderr)
        return 1
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pg = PgServer().start()
    total_lost = total_dup = 0
    runs = 0
    try:
        print(f"# bench/workers_postgres.py --trials {args.trials} --faults {args.faults}; {os.cpu_count()} cores")
        print(f"{'objective':9s} {'workers':>7s} {'trials/min':>10s} {'ideal':>8s} {'ratio':>6s} {'lost':>4s} "
              f"{'dup':>4s}")
        db = 0
        for kind in ("sleep", "cpu"):
            base = None
            for n in (1, 2, 4):
                db += 1
                with tempfile.TemporaryDirectory() as tmp:
                    out = Path(tmp)
                    url = pg.database(f"b{db}")
                    create_study("toy", resolve_storage(url, out, heartbeat_s=1.0, grace_s=3.0), ["minimize"],
                                 budget=args.trials, metadata={"experiment": "toy"})
                    procs = [spawn(out, url, w, kind, args.trials, list(range(n))) for w in range(n)]
                    while not all((out / f"ready_{w}").exists() for w in range(n)):
                        time.sleep(0.01)
                    t0 = time.monotonic()
                    for p in procs:
                        p.communicate(timeout=900)
                    rate = args.trials / (time.monotonic() - t0) * 60
                    lost, dup = counts(out, url)
                    runs += 1
                    total_lost, total_dup = total_lost + lost, total_dup + dup
                base = base or rate
                ideal = base * (n if kind == "sleep" else min(n, os.cpu_count() or 1))
                print(f"{kind:9s} {n:7d} {rate:10.1f} {ideal:8.1f} {rate / ideal:6.2f} {lost:4d} {dup:4d}")
        for f in range(args.faults):
            db += 1
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp)
                url = pg.database(f"f{db}")
                create_study("toy", resolve_storage(url, out, heartbeat_s=1.0, grace_s=3.0), ["minimize"],
                             budget=24, metadata={"experiment": "toy"})
                hang = out / "hang"
                dead = spawn(out, url, 0, "sleep", 24, [0], hang)
                while not hang.exists():
                    time.sleep(0.05)
                os.kill(dead.pid, signal.SIGKILL)
                dead.communicate()
                live = [spawn(out, url, w, "sleep", 24, [1, 2]) for w in (1, 2)]
                time.sleep(1.0 + 0.5 * f)
                pg.restart()
                rcs = [p.communicate(timeout=300)[0] for p in live]
                resumed = run_worker("toy", resolve_storage(url, out, heartbeat_s=1.0, grace_s=3.0),
                                     lambda t: t.suggest_float("x", -10, 10) ** 2,
                                     sampler=optuna.samplers.RandomSampler(seed=9), budget=24, worker_id=3,
                                     progress=False, retry_failed=1)
                lost, dup = counts(out, url, [resumed.trials])
                runs += 1
                total_lost, total_dup = total_lost + lost, total_dup + dup
                stopped = sum(1 for o in rcs if o.strip().startswith("error:"))
                print(f"fault run {f}: kill -9 + server restart; {stopped} of 2 live workers stopped with one line; "
                      f"lost {lost}, duplicated {dup}")
        print(f"lost/duplicated trials over {runs} runs: {total_lost}/{total_dup}")
    finally:
        pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
