"""Workers on a real PostgreSQL server (issue 30): the budget exact with 4 processes, a `kill -9`'d worker's trial
failed by the others, the server restarted under running workers, and a resume that finishes the study."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hwnas.search.storage import StorageError, resolve_storage
from hwnas.search.workers import create_study, run_worker, study_summary
from tests.pgserver import PgServer
from tests.test_search_workers import WORKER

pytestmark = pytest.mark.skipif(PgServer.available() is not None, reason=str(PgServer.available()))
optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def server():
    pg = PgServer().start()
    yield pg
    pg.stop()


def _study(pg: PgServer, tmp: Path, name: str, budget: int, grace: float) -> tuple[str, object]:
    """A fresh database schema per test: the study lives in its own database."""
    url = pg.database(name)
    storage = resolve_storage(url, tmp, heartbeat_s=1.0, grace_s=grace)
    create_study("toy", storage, ["minimize"], budget=budget, metadata={"experiment": "toy"})
    return url, storage


def _spawn(tmp: Path, url: str, worker: int, *, budget: int, sleep: float, barrier: list[int], grace: float,
           retry: int = 0, hang: Path | None = None) -> subprocess.Popen:
    """A worker process on the toy study (the worker script of tests/test_search_workers.py)."""
    script = tmp / "worker.py"
    if not script.exists():
        script.write_text(WORKER)
    cfg = {"url": url, "out": str(tmp), "hb": 1.0, "grace": grace, "study": "toy", "budget": budget,
           "worker": worker, "seed": 1000 * worker, "sleep": sleep, "report": str(tmp / f"report_{worker}.json"),
           "barrier": barrier, "retry": retry, "hang_marker": str(hang) if hang else None}
    return subprocess.Popen([sys.executable, str(script), json.dumps(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _reports(tmp: Path) -> dict[int, dict]:
    return {int(p.stem.split("_")[1]): json.loads(p.read_text()) for p in tmp.glob("report_*.json")}


def test_four_workers_run_exactly_the_budget(server, tmp_path) -> None:
    budget = 24
    url, storage = _study(server, tmp_path, "four", budget, grace=30.0)
    t0 = time.monotonic()
    procs = [_spawn(tmp_path, url, w, budget=budget, sleep=0.02, barrier=[0, 1, 2, 3], grace=30.0) for w in range(4)]
    for proc in procs:
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, out
    wall = time.monotonic() - t0
    trials = optuna.load_study(study_name="toy", storage=storage).get_trials()
    assert sorted(t.number for t in trials) == list(range(budget))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    ran = [set(r["trials"]) for r in _reports(tmp_path).values()]
    assert len(ran) == 4 and sum(len(r) for r in ran) == budget  # none run twice, none lost
    assert set().union(*ran) == set(range(budget))
    assert sum(1 for r in ran if r) >= 2, "one worker ran everything"
    print(f"4 workers on PostgreSQL: {budget} trials in {wall:.1f} s")


def test_a_killed_worker_and_a_server_restart_lose_and_duplicate_nothing(server, tmp_path) -> None:
    """Worker 0 hangs in its first trial and is `kill -9`'d; the server restarts while workers 1-2 run; whatever
    they did then, a resumed worker finishes the study: the budget exact, one FAIL (the dead worker's trial,
    retried once), every other trial complete, no trial run twice."""
    budget, grace = 24, 3.0
    url, storage = _study(server, tmp_path, "faults", budget, grace=grace)
    marker = tmp_path / "hanging"
    dead = _spawn(tmp_path, url, 0, budget=budget, sleep=0.0, barrier=[0], grace=grace, retry=1, hang=marker)
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), dead.stdout.read()
    hung = int(marker.read_text())
    os.kill(dead.pid, signal.SIGKILL)
    dead.wait(timeout=10)
    dead.stdout.close()
    live = [_spawn(tmp_path, url, w, budget=budget, sleep=0.15, barrier=[1, 2], grace=grace, retry=1)
            for w in (1, 2)]
    time.sleep(2.0)  # a few trials in
    server.restart()
    outs = []
    for proc in live:
        out, _ = proc.communicate(timeout=180)
        outs.append((proc.returncode, out))
    for rc, out in outs:  # each live worker either rode out the restart or stopped with one clear line
        if rc != 0:
            assert "Traceback" not in out and out.strip().splitlines()[-1].startswith("error: "), out
    report = run_worker("toy", resolve_storage(url, tmp_path, heartbeat_s=1.0, grace_s=grace),
                        lambda t: (t.suggest_float("x", -10, 10) - 1.0) ** 2,
                        sampler=optuna.samplers.RandomSampler(seed=9), budget=budget, worker_id=3, progress=False,
                        retry_failed=1)
    assert report.stopped_by == "budget"
    study = optuna.load_study(study_name="toy", storage=storage)
    trials = study.get_trials()
    states = [t.state for t in trials]
    assert states.count(TrialState.RUNNING) == 0
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert hung in {t.number for t in failed}, [(t.number, t.state.name, t.user_attrs.get("error")) for t in trials]
    summary = study_summary(study)
    assert summary["remaining"] == 0 and summary["states"]["COMPLETE"] == budget - len(failed), summary
    ran = [set(r["trials"]) for r in _reports(tmp_path).values()] + [set(report.trials)]
    assert sum(len(r) for r in ran) == len(set().union(*ran)), "a trial was run by two workers"


def test_a_server_gone_mid_trial_stops_the_worker_with_one_line_and_a_restart_resumes(server, tmp_path) -> None:
    budget, grace = 4, 2.0
    url, storage = _study(server, tmp_path, "gone", budget, grace=grace)

    def objective(trial):
        x = trial.suggest_float("x", -10, 10)
        if trial.number == 1:
            server.stop(remove=False)  # the server goes away while this trial runs
        return x * x

    with pytest.raises(StorageError, match="database failed mid-search") as info:
        run_worker("toy", storage, objective, sampler=optuna.samplers.RandomSampler(seed=1), budget=budget,
                   worker_id=1, progress=False)
    assert "\n" not in str(info.value) and "start the worker again" in str(info.value)
    server.start()
    report = run_worker("toy", resolve_storage(url, tmp_path, heartbeat_s=1.0, grace_s=grace),
                        lambda t: t.suggest_float("x", -10, 10) ** 2, sampler=optuna.samplers.RandomSampler(seed=2),
                        budget=budget, worker_id=2, progress=False)
    trials = optuna.load_study(study_name="toy", storage=storage).get_trials()
    assert report.stopped_by == "budget" and len(trials) == budget
    assert [t.state for t in trials].count(TrialState.COMPLETE) >= budget - 1
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)


def test_the_cluster_recipe_on_loopback(server, tmp_path) -> None:
    """docs/cluster.md's steps with the real commands: workers started before the study exists wait for it
    (`--wait`), `hwnas search` creates it and runs worker 0, all share the budget on PostgreSQL; a worker
    preempted with SIGTERM mid-trial hands its trial back (exit 130, no FAILED trial, no budget lost)."""
    from tests.experiments import tiny_mlp

    url = server.database("recipe")
    exp = tmp_path / "exp.yaml"
    exp.write_text(tiny_mlp(trials=8, extra=f"storage: {{url: '{url}', heartbeat_s: 5}}\n")
                   .replace("epochs: 1", "epochs: 3"))  # trials long enough for all three processes to get some
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "hwnas", "-q"]
    workers = {w: subprocess.Popen([*cmd, "worker", str(exp), "--worker", str(w), "--wait", "120"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
               for w in (1, 2)}
    time.sleep(1.0)  # the workers are up and waiting: no study yet
    search = subprocess.Popen([*cmd, "search", str(exp)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=env)
    storage = None
    deadline = time.time() + 120
    preempted = None
    while time.time() < deadline and preempted is None and workers[2].poll() is None:  # SIGTERM it mid-trial
        time.sleep(0.1)
        try:
            storage = storage or resolve_storage(url, tmp_path, heartbeat_s=5.0)
            trials = optuna.load_study(study_name="tiny", storage=storage).get_trials(states=(TrialState.RUNNING,))
        except Exception:  # the study is not created yet
            continue
        mine = [t for t in trials if t.user_attrs.get("worker", {}).get("id") == 2]
        if mine:
            preempted = mine[0].number
            workers[2].send_signal(signal.SIGTERM)
    assert preempted is not None, "worker 2 never ran a trial"
    outs = {w: p.communicate(timeout=300)[0] for w, p in workers.items()}
    s_out, _ = search.communicate(timeout=300)
    assert search.returncode == 0, s_out
    assert workers[1].returncode == 0, outs[1]
    assert workers[2].returncode == 130 and "interrupted" in outs[2] and "Traceback" not in outs[2], outs[2]
    trials = optuna.load_study(study_name="tiny", storage=storage).get_trials()
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials), \
        [(t.number, t.state.name) for t in trials]
    assert trials[preempted].user_attrs["worker"]["id"] != 2  # handed back, then run by another worker
    assert {t.user_attrs["worker"]["id"] for t in trials} <= {0, 1}
    models = list((tmp_path / "out" / "trials").rglob("*.pt"))
    assert len(models) >= 8, models  # every worker wrote into the shared output folder
