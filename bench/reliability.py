"""Reliability under crashes: worker processes killed at random times lose, duplicate or corrupt nothing.

A tiny search (task ``digits``, MLPs, 1 epoch, random strategy, ``--trials`` budget) runs in a temporary folder
once per storage: the default SQLite study ``<output>/study.db`` and a ``journal:///study.log`` file, with short
heartbeats (``storage.heartbeat_s`` 1 s, ``grace_s`` 3 s) so that a dead worker's trial is reclaimed quickly,
and ``storage.retry_failed`` 2 so that a trial failed by a kill is re-run. ``--workers`` OS processes run it
(``hwnas search`` as worker 0, ``hwnas worker --worker k`` for the others, ``OMP_NUM_THREADS=1``); once the
study is ready, one running worker (drawn at random among those that hold a RUNNING trial, if any, read from
the study without writing) receives SIGKILL (or, for a ``--sigint`` share of them, SIGINT = Ctrl-C) after each of
``--kills`` random gaps, and is restarted after a random pause, until the budget is spent. The schedule (gaps,
victims, signals, pauses) is drawn from ``--seed`` alone, so both storages get the same one; what it hits
depends on the timing. Afterwards the study is opened with plain Optuna and with hwnas (``hwnas pareto`` must
exit 0) and every figure below is computed from the study, its files and the workers' logs:

* **lost**: budget slots not finished at the end (WAITING or RUNNING trials, missing trial numbers), plus failed
  configurations never completed although a retry was due: a configuration is a trial and its retries
  (``failed_trial``); it counts as lost when none of its attempts is COMPLETE, its last attempt had retries left
  (fewer than ``retry_failed`` in ``retry_history``) and a fresh budget slot (a trial that is no retry) was
  claimed after that attempt failed, i.e. a slot was there for the retry and went to a new configuration.
  Configurations whose retries were spent, or that failed when no slot was left to claim, are allowed losses.
* **duplicated**: trials beyond the budget or repeated trial numbers, a configuration COMPLETE more than once,
  a failed trial retried more than once (two trials with the same ``retry_of``), a retry of a COMPLETE trial.
* **files lost**: a COMPLETE trial whose recorded ``checkpoint`` (resolved against the output folder) is missing,
  does not load with :func:`hwnas.export.load_model`, or is shared with another COMPLETE trial.
* the journal: whether its last line is complete JSON (no torn tail), lines that are not JSON, torn tails that
  hwnas cut off (``study.log.torn-*.bak`` backups) and a lock file left behind; SQLite: ``PRAGMA
  integrity_check``. "optuna" says whether a fresh ``optuna.load_study`` on a plain ``JournalStorage`` /
  ``RDBStorage`` reads the study, with the same trials as hwnas's view.
* for information: journal lock breaks (a writer killed holding the lock stalls every worker ~30 s), trials
  failed as stale while their worker lived, and fresh trials of a restarted worker that re-drew an earlier
  trial's parameters (its sampler is seeded the same at every start).

The project goal (docs/reliability.md): trials lost / duplicated 0 / 0, files lost 0. Exit status 1 when any
of them is above 0, a study is unreadable, ``hwnas pareto`` fails or the wall-time cap was hit.

    OMP_NUM_THREADS=1 .venv/bin/python bench/reliability.py --seed 0 [--workers 3] [--kills 8]
        [--storage both|sqlite|journal] [--trials 16] [--max-minutes 10] [--sigint 0.25] [--gap 2 6]
        [--retry-failed 2] [--heartbeat 1] [--grace 3] [--strategy random|nsga2] [--out DIR] [--keep]

The scenario folders (experiment, study, models, one log per worker start) are deleted at the end unless
``--keep``/``--out`` is given or something failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXPERIMENT = """\
name: reliability
seed: {seed}
output: out
task: {{name: digits}}
space:
  family: mlp
  dense_layers: {{min: 1, max: 3}}
  dense_units: [64, 128, 256]
  precision: {{weight_bits: {{min: 2, max: 6}}, act_bits: {{min: 2, max: 6}}}}
objectives:
  - {{metric: accuracy, direction: maximize}}
  - {{metric: bops, direction: minimize}}
hardware: {{target: zcu104, model: hls4ml}}
training: {{epochs: 1, batch_size: 4}}
search: {{strategy: {strategy}, n_trials: {trials}{options}}}
storage: {{url: {url}, heartbeat_s: {heartbeat}, grace_s: {grace}, retry_failed: {retry}}}
"""
# batch_size 4 and wide layers make one trial last a few seconds, so that kills land inside trials.

URLS = {"sqlite": "null", "journal": "'journal:///study.log'"}
NORMAL_EXIT = (0, 1)  # hwnas search/worker: 0 done, 1 done without a feasible trial
SIGINT_WAIT_S = 15.0  # a worker that ignores Ctrl-C this long gets SIGKILL
MAX_UNEXPECTED = 3  # restarts after exits nobody caused, per worker


@dataclass
class Kill:
    gap: float
    pick: float
    sig: signal.Signals
    pause: float


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen | None = None
    starts: int = 0
    restart_at: float | None = None
    sent: signal.Signals | None = None
    sent_at: float = 0.0
    finished: bool = False
    unexpected: int = 0
    pause: float = 1.0
    logs: list[Path] = field(default_factory=list)


def schedule(seed: int, n: int, gap: tuple[float, float], p_sigint: float) -> list[Kill]:
    rng = random.Random(seed)
    ctrl_c = set(rng.sample(range(n), min(n, round(n * p_sigint))))  # exactly this share, at random places
    return [Kill(rng.uniform(*gap), rng.random(), signal.SIGINT if i in ctrl_c else signal.SIGKILL,
                 rng.uniform(0.5, 3.0)) for i in range(n)]


def hwnas_command() -> list[str]:
    script = Path(sys.executable).with_name("hwnas")
    return [str(script)] if script.exists() else [sys.executable, "-m", "hwnas"]


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("      | " + line for line in text[-lines:])


def study_ready(kind: str, folder: Path) -> bool:
    """Whether hwnas marked the study ready (all budget trials enqueued), read without writing anything."""
    if kind == "journal":
        path = folder / "study.log"
        try:
            return b'"hwnas:ready"' in path.read_bytes()
        except OSError:
            return False
    path = folder / "out" / "study.db"
    if not path.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)) as con:
            row = con.execute("SELECT 1 FROM study_user_attributes WHERE key = 'hwnas:ready'").fetchone()
            return row is not None
    except sqlite3.Error:
        return False


class BusyPids:
    """Pids of the workers that hold a RUNNING trial now, read without writing (to aim kills into trials)."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind, self.folder = kind, folder
        self.offset, self.owner, self.finished = 0, {}, set()

    def __call__(self) -> set[int]:
        try:
            return self._journal() if self.kind == "journal" else self._sqlite()
        except (OSError, sqlite3.Error, ValueError):
            return set()

    def _sqlite(self) -> set[int]:
        query = ("SELECT a.value_json FROM trials t JOIN trial_user_attributes a ON a.trial_id = t.trial_id "
                 "AND a.key = 'worker' WHERE t.state = 'RUNNING'")
        with contextlib.closing(sqlite3.connect(f"file:{self.folder / 'out' / 'study.db'}?mode=ro", uri=True,
                                                timeout=1)) as con:
            return {json.loads(v).get("pid") for (v,) in con.execute(query).fetchall()}

    def _journal(self) -> set[int]:
        with open(self.folder / "study.log", "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].splitlines():
            op = json.loads(line)
            if op.get("op_code") == 8 and "worker" in op.get("user_attr", {}):  # SET_TRIAL_USER_ATTR
                self.owner[op["trial_id"]] = op["user_attr"]["worker"].get("pid")
            elif op.get("op_code") == 6 and op.get("state") in (1, 2, 3):  # SET_TRIAL_STATE_VALUES, finished
                self.finished.add(op["trial_id"])
        return {pid for trial, pid in self.owner.items() if trial not in self.finished}


class Scenario:
    def __init__(self, kind: str, folder: Path, args: argparse.Namespace) -> None:
        self.kind, self.folder, self.args = kind, folder, args
        self.exp = folder / "exp.yaml"
        self.logs = folder / "logs"
        self.logs.mkdir(parents=True)
        options = ", options: {population_size: 4}" if args.strategy == "nsga2" else ""
        self.exp.write_text(EXPERIMENT.format(seed=args.seed, strategy=args.strategy, trials=args.trials,
                                              options=options, url=URLS[kind], heartbeat=args.heartbeat,
                                              grace=args.grace, retry=args.retry_failed))
        self.workers = [Worker(i) for i in range(args.workers)]
        self.kills: list[dict[str, Any]] = []
        self.unexpected: list[str] = []
        self.escalated = 0
        self.timed_out = False
        self.t0 = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def start(self, w: Worker) -> None:
        w.starts += 1
        log = self.logs / f"worker{w.index}_start{w.starts}.log"
        w.logs.append(log)
        cmd = hwnas_command()
        cmd += ["search", str(self.exp)] if w.index == 0 else ["worker", str(self.exp), "--worker", str(w.index)]
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        with open(log, "wb") as f:
            w.proc = subprocess.Popen([*cmd, "--quiet", "--verbose"], stdout=f, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=env, cwd=self.folder, start_new_session=True)
        w.sent, w.restart_at = None, None

    def reap(self, w: Worker, now: float) -> None:
        assert w.proc is not None
        rc = w.proc.returncode
        if w.sent is not None:
            for k in reversed(self.kills):
                if k["pid"] == w.proc.pid:
                    k["rc"] = rc
                    break
            w.restart_at = now + w.pause
        elif rc in NORMAL_EXIT:
            w.finished = True
        else:
            w.unexpected += 1
            self.unexpected.append(f"worker {w.index} (pid {w.proc.pid}, start {w.starts}) exited with {rc} at "
                                   f"{self.elapsed():.1f} s, unasked; log {w.logs[-1]}:\n{tail(w.logs[-1])}")
            if w.unexpected <= MAX_UNEXPECTED:
                w.restart_at = now + 2.0
            else:
                w.finished = True
        w.proc = None

    def run(self) -> float:
        args = self.args
        plan = schedule(args.seed, args.kills, tuple(args.gap), args.sigint)
        self.t0 = time.monotonic()
        deadline = self.t0 + 60 * args.max_minutes
        self.start(self.workers[0])
        ready_at: float | None = None
        next_kill = 0
        busy = BusyPids(self.kind, self.folder)
        kill_at = 0.0
        try:
            while True:
                now = time.monotonic()
                if now > deadline:
                    self.timed_out = True
                    break
                for w in self.workers:
                    if w.proc is not None and w.proc.poll() is not None:
                        self.reap(w, now)
                    elif w.proc is not None and w.sent == signal.SIGINT and now - w.sent_at > SIGINT_WAIT_S:
                        w.proc.send_signal(signal.SIGKILL)  # Ctrl-C ignored: as a user would, kill it
                        w.sent, self.escalated = signal.SIGKILL, self.escalated + 1
                if ready_at is None:
                    if study_ready(self.kind, self.folder) or now - self.t0 > 120:
                        ready_at = now
                        for w in self.workers[1:]:
                            self.start(w)
                        kill_at = now + plan[0].gap if plan else float("inf")
                for w in self.workers:
                    if w.proc is None and w.restart_at is not None and now >= w.restart_at and not w.finished:
                        self.start(w)
                alive = [w for w in self.workers if w.proc is not None and w.sent is None]
                if ready_at is not None and next_kill < len(plan) and now >= kill_at and alive:
                    k = plan[next_kill]
                    pids = busy()  # aim at workers inside a trial when there are any
                    alive = [w for w in alive if w.proc is not None and w.proc.pid in pids] or alive
                    victim = alive[min(int(k.pick * len(alive)), len(alive) - 1)]
                    assert victim.proc is not None
                    victim.proc.send_signal(k.sig)
                    victim.sent, victim.sent_at, victim.pause = k.sig, now, k.pause
                    self.kills.append({"t": round(now - self.t0, 1), "worker": victim.index, "pid": victim.proc.pid,
                                       "start": victim.starts, "signal": k.sig.name, "rc": None,
                                       "in_trial": victim.proc.pid in pids})
                    next_kill += 1
                    kill_at = now + plan[next_kill].gap if next_kill < len(plan) else float("inf")
                if ready_at is not None and all(w.finished for w in self.workers):
                    break
                time.sleep(0.1)
        finally:
            for w in self.workers:
                if w.proc is not None and w.proc.poll() is None:
                    w.proc.send_signal(signal.SIGKILL)
                    w.proc.wait()
        return self.elapsed()


# ------------------------------------------------------------------------------------------- analysis
def open_plain(kind: str, exp: Any, folder: Path) -> tuple[Any, str]:
    """The study through plain Optuna (no hwnas code), or None and the error."""
    import optuna

    try:
        if kind == "journal":
            from optuna.storages.journal import JournalFileBackend

            storage: Any = optuna.storages.JournalStorage(JournalFileBackend(str(folder / "study.log")))
        else:
            storage = optuna.storages.RDBStorage(exp.storage_url())
        study = optuna.load_study(study_name=exp.study_name(), storage=storage)
        study.get_trials(deepcopy=False)
        return study, ""
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"


def journal_checks(folder: Path) -> dict[str, Any]:
    path = folder / "study.log"
    data = path.read_bytes() if path.exists() else b""
    lines = data.split(b"\n")
    bad = 0
    for line in lines[:-1]:
        try:
            json.loads(line)
        except ValueError:
            bad += 1
    last = lines[-2] if data.endswith(b"\n") and len(lines) > 1 else lines[-1]
    try:
        json.loads(last)
        last_ok = data.endswith(b"\n")
    except ValueError:
        last_ok = False
    return {"tail_ok": last_ok, "bad_lines": bad, "lines": len(lines) - 1,
            "torn_cut": len(list(folder.glob("study.log.torn-*.bak"))),
            "lock_left": (folder / "study.log.lock").exists()}


def sqlite_checks(path: Path) -> dict[str, Any]:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as con:
            result = [r[0] for r in con.execute("PRAGMA integrity_check").fetchall()]
        return {"integrity": "ok" if result == ["ok"] else "; ".join(result[:3])}
    except sqlite3.Error as exc:
        return {"integrity": f"{type(exc).__name__}: {exc}"}


LOG_EVENTS = {
    "lock_waits": "It is taking longer than",  # Optuna: a journal lock held > 10 s
    "lock_breaks": "Forcibly releasing the lock file",  # Optuna: a dead writer's journal lock broken
    "starved": "was failed by another worker while this one ran it",  # hwnas: a live worker's trial failed
    "unretried": "no trial left in the budget to retry",  # hwnas: pending retries dropped
}


def scan_logs(sc: Scenario) -> tuple[dict[str, int], list[str]]:
    """Counts of notable log lines of every worker start, and the tracebacks of starts nobody signalled."""
    signalled = {f"worker{k['worker']}_start{k['start']}.log" for k in sc.kills}
    counts, tracebacks = dict.fromkeys(LOG_EVENTS, 0), []
    for log in sorted(sc.logs.glob("*.log")):
        text = log.read_text(errors="replace")
        for key, pattern in LOG_EVENTS.items():
            counts[key] += text.count(pattern)
        if "Traceback (most recent call last)" in text and log.name not in signalled:
            tracebacks.append(f"{log}:\n{tail(log, 25)}")
    return counts, tracebacks


def analyse(sc: Scenario, wall: float) -> dict[str, Any]:
    import optuna
    from optuna.trial import TrialState

    from hwnas.config import load_experiment
    from hwnas.export import load_model

    try:
        from hwnas.runpaths import resolve_path
    except ImportError:  # older versions record absolute paths
        def resolve_path(recorded: Any, output_dir: Any) -> Path:
            p = Path(recorded)
            return p if p.is_absolute() else Path(output_dir) / p

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    exp = load_experiment(sc.exp)
    out = exp.output_dir()
    budget, retry_max = exp.search.n_trials, exp.storage.retry_failed
    r: dict[str, Any] = {"storage": sc.kind, "budget": budget, "wall_s": wall, "timed_out": sc.timed_out,
                         "kills": len(sc.kills), "sigint": sum(k["signal"] == "SIGINT" for k in sc.kills),
                         "escalated": sc.escalated, "unexpected": sc.unexpected, "kill_log": sc.kills,
                         "notes": [], "problems": []}

    pareto = subprocess.run([*hwnas_command(), "pareto", str(sc.exp)], capture_output=True, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=sc.folder)
    r["pareto_rc"] = pareto.returncode
    if pareto.returncode != 0:
        r["problems"].append(f"hwnas pareto exit {pareto.returncode}:\n{pareto.stdout[-2000:]}{pareto.stderr[-3000:]}")

    if sc.kind == "journal":
        r["file"] = journal_checks(sc.folder)
    else:
        r["file"] = sqlite_checks(out / "study.db")
    r["log"], tracebacks = scan_logs(sc)
    r["problems"] += [f"traceback in the log of a worker nobody signalled: {t}" for t in tracebacks]
    if r["log"]["lock_breaks"] or r["log"]["lock_waits"]:
        r["notes"].append(f"journal lock: {r['log']['lock_waits']} waits over 10 s, {r['log']['lock_breaks']} "
                          "forced releases (a writer killed while holding the lock stalls every worker until "
                          "Optuna breaks the lock)")
    if r["log"]["starved"]:
        r["notes"].append(f"{r['log']['starved']} trial(s) failed as stale while their worker still ran them")
    if r["log"]["unretried"]:
        r["notes"].append(f"{r['log']['unretried']} worker(s) dropped pending retries: 'no trial left in the budget "
                          "to retry failed trials'")

    study, error = open_plain(sc.kind, exp, sc.folder)
    if study is None:
        r["optuna"] = False
        r["problems"].append(f"plain optuna cannot read the study: {error}")
        return r
    trials = study.get_trials(deepcopy=False)
    try:
        from hwnas.search.run import open_study

        own = open_study(exp).get_trials(deepcopy=False)
        same = [(t.number, t.state) for t in own] == [(t.number, t.state) for t in trials]
    except Exception as exc:
        same = False
        r["problems"].append(f"hwnas cannot open the study: {type(exc).__name__}: {exc}")
    r["optuna"] = same
    if not same and study is not None:
        r["problems"].append("plain optuna and hwnas see different trials")

    states = Counter(t.state for t in trials)
    numbers = [t.number for t in trials]
    r["trials"], r["complete"] = len(trials), states[TrialState.COMPLETE]
    r["failed"], r["pruned"] = states[TrialState.FAIL], states[TrialState.PRUNED]
    unfinished = [t.number for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING)]
    missing = sorted(set(range(budget)) - set(numbers))
    killed = {k["pid"]: k["signal"] for k in sc.kills}
    r["hit"] = sum(t.state == TrialState.FAIL and (t.user_attrs.get("worker") or {}).get("pid") in killed
                   for t in trials)

    # configurations: a trial and its retries
    chains: dict[int, list[Any]] = defaultdict(list)
    for t in trials:
        chains[t.system_attrs.get("failed_trial", t.number)].append(t)
    fresh_starts = [t.datetime_start for t in trials if "retry_of" not in t.user_attrs and t.datetime_start]
    lost_configs, allowed = [], Counter()
    for root, attempts in sorted(chains.items()):
        if any(t.state in (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING) for t in attempts):
            continue
        last = max(attempts, key=lambda t: (t.datetime_complete or t.datetime_start or 0, t.number))
        done = last.datetime_complete
        error = str(last.user_attrs.get("error", ""))
        cause = ("killed" if error.startswith("worker lost") else "ctrl-c" if error.startswith("KeyboardInterrupt")
                 else "pruned" if last.state == TrialState.PRUNED else "error")
        if cause == "pruned":
            continue
        if not retry_max or len(last.system_attrs.get("retry_history", [])) >= retry_max:
            allowed["retries spent"] += 1
        elif done is None or not any(s > done for s in fresh_starts):
            allowed["no slot left"] += 1
        else:
            later = sorted(t.number for t in trials if "retry_of" not in t.user_attrs and t.datetime_start
                           and t.datetime_start > done)
            m = re.search(r"marked FAILED by worker pid (\d+)", error)
            by = int(m.group(1)) if m else (last.user_attrs.get("worker") or {}).get("pid")
            fate = [f"{k['signal']} at t={k['t']:.1f} s" for k in sc.kills if k["pid"] == by]
            same = sorted(t.number for t in trials if t.state == TrialState.COMPLETE and t.params == last.params
                          and t.number not in {a.number for a in attempts} and last.params)
            instead = sorted(f"{t.number} (of {t.user_attrs['retry_of']})" for t in trials
                             if "retry_of" in t.user_attrs and (t.user_attrs.get("worker") or {}).get("pid") == by
                             and t.datetime_start and t.datetime_start > done)
            lost_configs.append(
                f"configuration of trial {root}: its last attempt, trial {last.number}, failed ({cause}), marked "
                f"FAILED by pid {by}{' (that process then got ' + ', '.join(fate) + ')' if fate else ''}, and was "
                f"never retried (retries left); fresh trials claimed after: {later}"
                + (f"; pid {by} ran other retries after it: {', '.join(instead)}" if instead else "")
                + (f"; same parameters completed by unrelated trial(s) {same}" if same else ""))
    r["lost"] = len(unfinished) + len(missing) + len(lost_configs)
    r["allowed"] = dict(allowed)
    r["retried"] = sum("retry_of" in t.user_attrs for t in trials)
    r["recovered"] = sum(len(a) > 1 and any(t.state == TrialState.COMPLETE for t in a) for a in chains.values())
    cap = " (wall-time cap hit)" if sc.timed_out else ""
    r["lost_details"] = lost_configs + ([f"unfinished trials {unfinished}{cap}"] if unfinished else []) + (
        [f"missing trial numbers {missing}"] if missing else [])

    dup: set[str] = set()
    extra = max(0, len(trials) - budget) + (len(numbers) - len(set(numbers)))
    for attempts in chains.values():
        done_ = sorted(t.number for t in attempts if t.state == TrialState.COMPLETE)
        dup.update(f"trial {n}: configuration already COMPLETE in trial {done_[0]}" for n in done_[1:])
    by_target: dict[int, list[int]] = defaultdict(list)
    for t in trials:
        if "retry_of" in t.user_attrs:
            by_target[t.user_attrs["retry_of"]].append(t.number)
    by_number = {t.number: t for t in trials}
    for target, retries in by_target.items():
        dup.update(f"trial {n}: second retry of trial {target} (first {retries[0]})" for n in sorted(retries)[1:])
        if target in by_number and by_number[target].state == TrialState.COMPLETE:
            dup.update(f"trial {n}: retry of COMPLETE trial {target}" for n in retries)
    r["duplicated"] = extra + len(dup)
    r["dup_details"] = ([f"{extra} trials beyond the budget or repeated numbers"] if extra else []) + sorted(dup)

    # configurations sampled twice by distinct (non-retry) trials: e.g. a restarted worker's re-seeded sampler
    first: dict[str, Any] = {}
    redrawn, other = [], []
    for t in sorted(trials, key=lambda t: t.number):
        key = json.dumps(t.params, sort_keys=True)
        if t.params and "retry_of" not in t.user_attrs and key in first:
            me, then = t.user_attrs.get("worker") or {}, first[key].user_attrs.get("worker") or {}
            text = (f"trial {t.number} ({t.state.name}, worker {me.get('id')} pid {me.get('pid')}) = trial "
                    f"{first[key].number} ({first[key].state.name}, worker {then.get('id')} pid {then.get('pid')})")
            same_stream = me.get("id") == then.get("id") and me.get("pid") != then.get("pid")
            (redrawn if same_stream else other).append(text)
        first.setdefault(key, t)
    r["repeated_configs"] = len(redrawn)
    if redrawn:
        r["notes"].append("fresh trials of a restarted worker that re-drew the parameters of an earlier trial of the "
                          "same worker index (its sampler's seed is the same at every start): " + "; ".join(redrawn))
    if other:
        r["notes"].append("fresh trials with the parameters of an earlier trial of another worker or the same "
                          "process (chance): " + "; ".join(other))

    missing_files, unreadable, paths = [], [], Counter()
    for t in trials:
        if t.state != TrialState.COMPLETE:
            continue
        recorded = t.user_attrs.get("checkpoint")
        if not recorded:
            missing_files.append(f"trial {t.number}: no checkpoint recorded")
            continue
        path = resolve_path(recorded, out)
        paths[str(Path(path).resolve())] += 1
        if not Path(path).is_file():
            missing_files.append(f"trial {t.number}: {recorded} -> {path} missing")
            continue
        try:
            load_model(path)
        except Exception as exc:
            unreadable.append(f"trial {t.number}: {path}: {type(exc).__name__}: {exc}")
    shared = [f"{p} recorded by {c} COMPLETE trials" for p, c in paths.items() if c > 1]
    r["files_missing"], r["files_unreadable"], r["files_shared"] = missing_files, unreadable, shared
    r["files_lost"] = len(missing_files) + len(unreadable) + sum(paths[p] - 1 for p in paths if paths[p] > 1)
    stray = [t.number for t in trials if t.state == TrialState.FAIL and (out / "trials" / f"{t.number:05d}").is_dir()
             and any((out / "trials" / f"{t.number:05d}").iterdir())]
    if stray:
        r["notes"].append(f"FAIL trials with files in trials/: {stray} (written by a worker that was then killed, "
                          "or that outlived its trial's grace period)")
    return r


# ------------------------------------------------------------------------------------------- report
def yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def print_table(results: list[dict[str, Any]]) -> None:
    head = ["storage", "kills", "SIGINT", "hit", "trials", "complete", "failed", "retried", "recovered", "lost",
            "dup", "files lost", "redrawn", "optuna", "file check", "pareto", "wall s"]
    rows = []
    for r in results:
        f = r.get("file", {})
        if r["storage"] == "journal":
            check = ("tail ok" if f.get("tail_ok") else "TORN TAIL") + (f", {f['bad_lines']} bad" if f.get(
                "bad_lines") else "") + (f", {f['torn_cut']} cut" if f.get("torn_cut") else "") + (
                f", {r['log']['lock_breaks']} lock break" if r.get("log", {}).get("lock_breaks") else "")
        else:
            check = f"integrity {f.get('integrity')}"
        files = "/".join(str(len(r.get(k, []))) for k in ("files_missing", "files_unreadable", "files_shared"))
        rows.append([r["storage"], str(r["kills"]), str(r["sigint"]), str(r.get("hit", "-")),
                     f"{r.get('trials', '-')}/{r['budget']}", str(r.get("complete", "-")), str(r.get("failed", "-")),
                     str(r.get("retried", "-")), str(r.get("recovered", "-")), str(r.get("lost", "-")),
                     str(r.get("duplicated", "-")), f"{r.get('files_lost', '-')} ({files})",
                     str(r.get("repeated_configs", "-")), yes(r.get("optuna", False)), check,
                     f"rc {r.get('pareto_rc', '-')}", f"{r['wall_s']:.0f}" + (" CAP" if r["timed_out"] else "")])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


DEFINITIONS = """\
kills: signals injected (SIGINT: how many were Ctrl-C); hit: FAIL trials run by a signalled worker process.
trials: trials in the study / budget; failed: FAIL trials; retried: trials that re-ran a failed one (retry_of);
recovered: configurations that failed and then completed in a retry.
lost: budget slots not finished (WAITING/RUNNING or missing numbers) + failed configurations never completed
  although their last attempt had retries left and a fresh budget slot was claimed after it failed.
  Allowed (not counted): configurations whose retry_failed retries were spent, or that failed after the last
  slot was claimed.
dup: trials beyond the budget / repeated numbers + configurations COMPLETE twice + failed trials retried twice
  + retries of COMPLETE trials.
files lost: COMPLETE trials whose recorded model is missing / does not load with hwnas.export.load_model / is
  shared with another COMPLETE trial (missing/unreadable/shared in brackets).
redrawn (information, not a goal): fresh (non-retry) trials of a restarted worker whose parameters equal those
  of an earlier trial of the same worker index (same sampler seed at every start).
optuna: a fresh optuna.load_study on plain JournalStorage/RDBStorage reads the study, same trials as hwnas.
file check: journal last line complete JSON (bad: lines that are not JSON; cut: torn tails hwnas cut; lock
  break: a dead writer's lock file forcibly released by Optuna after 30 s, every worker stalled meanwhile);
  SQLite PRAGMA integrity_check. pareto: exit status of hwnas pareto exp.yaml. wall s: CAP = --max-minutes hit.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="experiment seed and kill schedule")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--kills", type=int, default=8, help="signals to inject per storage (fewer if the budget ends)")
    ap.add_argument("--storage", choices=["sqlite", "journal", "both"], default="both")
    ap.add_argument("--trials", type=int, default=16, help="the study's budget")
    ap.add_argument("--max-minutes", type=float, default=10.0, help="wall-time cap per storage")
    ap.add_argument("--sigint", type=float, default=0.25, help="share of the kills that are SIGINT (Ctrl-C)")
    ap.add_argument("--gap", type=float, nargs=2, default=[2.0, 6.0], metavar=("MIN", "MAX"),
                    help="seconds between kills, drawn uniformly")
    ap.add_argument("--retry-failed", type=int, default=2, help="storage.retry_failed")
    ap.add_argument("--heartbeat", type=float, default=1.0, help="storage.heartbeat_s")
    ap.add_argument("--grace", type=float, default=3.0, help="storage.grace_s")
    ap.add_argument("--strategy", choices=["random", "nsga2"], default="random")
    ap.add_argument("--out", type=Path, default=None, help="folder for the scenarios (kept); default: a temp folder")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args()
    if args.workers < 1 or args.trials < 1 or args.kills < 0:
        ap.error("--workers and --trials must be >= 1, --kills >= 0")

    root = args.out if args.out is not None else Path(tempfile.mkdtemp(prefix="hwnas_reliability_"))
    root.mkdir(parents=True, exist_ok=True)
    kinds = ["sqlite", "journal"] if args.storage == "both" else [args.storage]
    print(f"hwnas reliability: seed {args.seed}, {args.workers} workers, {args.kills} kills planned per storage "
          f"(SIGINT share {args.sigint:g}, gaps {args.gap[0]:g}-{args.gap[1]:g} s), budget {args.trials}, cap "
          f"{args.max_minutes:g} min, folder {root}")
    plan = schedule(args.seed, args.kills, tuple(args.gap), args.sigint)
    print("kill schedule: " + ", ".join(f"+{k.gap:.1f}s {k.sig.name}@{k.pick:.2f} (restart {k.pause:.1f}s)"
                                        for k in plan))
    results = []
    for kind in kinds:
        folder = root / kind
        if folder.exists():
            shutil.rmtree(folder)
        sc = Scenario(kind, folder, args)
        print(f"\n=== {kind}: experiment {sc.exp}\n{sc.exp.read_text()}", flush=True)
        wall = sc.run()
        for k in sc.kills:
            print(f"  t={k['t']:6.1f}s  {k['signal']:7s} worker {k['worker']} (pid {k['pid']}, start {k['start']}, "
                  f"{'in a trial' if k['in_trial'] else 'no trial seen'}) -> exit {k['rc']}")
        r = analyse(sc, wall)
        results.append(r)
        starts = ", ".join(f"worker {w.index}: {w.starts}" for w in sc.workers)
        print(f"  starts: {starts}; allowed losses: {r.get('allowed') or 'none'}; Ctrl-C escalated to SIGKILL: "
              f"{r['escalated']}")
        for label, items in (("LOST", r.get("lost_details", [])), ("DUPLICATED", r.get("dup_details", [])),
                             ("MODEL MISSING", r.get("files_missing", [])),
                             ("MODEL UNREADABLE", r.get("files_unreadable", [])),
                             ("MODEL SHARED", r.get("files_shared", [])), ("PROBLEM", r["problems"]),
                             ("UNEXPECTED EXIT", r["unexpected"]), ("note", r["notes"])):
            for item in items:
                print(f"  {label}: {item}")
        if r.get("file", {}).get("lock_left"):
            print("  note: study.log.lock left behind (a writer killed while holding the journal lock)")
    print(f"\n{DEFINITIONS}")
    print_table(results)
    bad = [r for r in results if r.get("lost", 1) or r.get("duplicated", 1) or r.get("files_lost", 1)
           or not r.get("optuna") or r.get("pareto_rc") != 0 or r["timed_out"]
           or (r["storage"] == "journal" and not r.get("file", {}).get("tail_ok"))]
    goal = "met" if not bad else "NOT met (" + ", ".join(r["storage"] for r in bad) + ")"
    print(f"\ngoal lost 0 / duplicated 0 / files lost 0: {goal}")
    if bad or args.keep or args.out is not None:
        print(f"scenario folders kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
