"""Background jobs of the MCP server: ``hwnas run`` (all stages or one) detached, with its state on disk.

Contract (``docs/agent.md``, tools ``start_job``, ``job_status``, ``list_jobs``, ``stop_job``):

* A job lives in ``<root>/.hwnas-mcp/jobs/<id>/``: ``job.json`` (what was started, the runner's pid and
  process start time; written by the server), ``command.json`` (the fixed ``hwnas run`` arguments),
  ``experiment.yaml`` (the experiment as validated at start, for status), ``output.log`` (the run's stdout and
  stderr), ``exit.json`` (exit status; written by the runner), ``stop.json`` (a stop request). Every JSON file
  is written atomically (temporary file, then rename) and each has one writer.
* :meth:`JobStore.start` validates the experiment (confined to the root, :mod:`hwnas.agent.experiments`) and
  starts ``python -m hwnas.agent.jobs <job folder>`` in a new session; that runner starts ``python -m hwnas run
  <experiment> --quiet [--stages S] [--force]`` (nothing else can run), waits for it and records its exit
  status. The call returns at once with the job id. Jobs are independent of the server process: they outlive a
  client disconnect and a server restart, which lists them again from disk. At most ``max_running`` jobs run at
  once and never two on one output folder (checked under a file lock, also across servers on one root).
* :meth:`JobStore.status`: ``state`` is ``running``, ``stopping``, ``done`` (exit 0), ``failed`` (another exit
  status), ``stopped`` (by :meth:`JobStore.stop`) or ``lost`` (the runner ended without recording an exit status,
  e.g. the machine rebooted); ``progress`` gives each stage's state (from the run's ``[stage]`` log lines and the
  output folder's ``stages.json``), the study's trial counts against its budget and its current feasible Pareto
  front (objective values, knee marked), plus the log's last lines.
* :meth:`JobStore.stop` sends SIGINT to the job's process group (hwnas keeps finished work; the running trial or
  stage is repeated on the next run), then SIGTERM and SIGKILL if it does not end within the grace time.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import resource
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hwnas.agent.files import STATE_DIR, AgentError, Root

__all__ = ["JOB_ID_RE", "STAGES", "JobStore"]

STAGES: tuple[str, ...] = ("search", "select", "local", "export", "verify", "synth", "baselines", "report")
"""hwnas.pipeline.STAGES (repeated: the runner imports nothing heavy; a test keeps them equal)."""

JOB_ID_RE = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
_STAGE_LINE = re.compile(r"^\[([a-z]+)\] (running|done earlier)")
_MAX_LOG = 4 * 1024 * 1024  # bytes of output.log parsed for progress (the tail, when longer)
_MAX_FRONT = 100  # Pareto front rows returned by status


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks) of a Linux process, or None where /proc does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _alive(pid: Any, start: Any) -> bool:
    """Whether process ``pid`` runs and is the one started at ``start`` (not a reused pid, not a zombie)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    stat = _proc_stat(pid)
    if stat is not None:
        return stat[0] not in ("Z", "X") and (start is None or stat[1] == start)
    if Path("/proc/self/stat").exists():
        return False  # /proc works here: the process is gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, limit: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


class JobStore:
    """The jobs of one root (module docstring); thread-safe, state on disk."""

    def __init__(self, root: Root, *, max_running: int = 2) -> None:
        if max_running < 1:
            raise AgentError(f"--max-jobs must be >= 1, got {max_running}")
        self.root = root
        self.folder = root.path / STATE_DIR / "jobs"
        self.max_running = max_running
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------- records
    def _dir(self, job_id: Any) -> tuple[Path, dict[str, Any]]:
        if not isinstance(job_id, str) or not JOB_ID_RE.match(job_id):
            raise AgentError(f"job_id: {str(job_id)[:80]!r} is not a job id (list_jobs lists them)")
        folder = self.folder / job_id
        spec = _read_json(folder / "job.json")
        if not isinstance(spec, dict):
            raise AgentError(f"job_id: no job {job_id!r} under {self.root.rel(self.folder)} (list_jobs lists them)")
        return folder, spec

    def _state(self, job_id: str, folder: Path, spec: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        proc = self._procs.get(job_id)
        if proc is not None and proc.poll() is not None:
            self._procs.pop(job_id, None)  # reaped
        ended = _read_json(folder / "exit.json")
        stopped = (folder / "stop.json").exists()
        if ended is None:
            if _alive(spec.get("pid"), spec.get("pid_start")):
                return ("stopping" if stopped else "running"), None
            ended = _read_json(folder / "exit.json")  # it may have finished in between
            if ended is None:
                return ("stopped" if stopped else "lost"), None
        if stopped:
            return "stopped", ended
        return ("done" if ended.get("returncode") == 0 else "failed"), ended

    def ids(self) -> list[str]:
        """Every job id on disk, oldest first."""
        if not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.iterdir() if JOB_ID_RE.match(p.name) and (p / "job.json").is_file())

    # ------------------------------------------------------------------------------------------- start
    def start(self, experiment_path: Path, *, stage: str | None = None, force: bool = False) -> dict[str, Any]:
        """Validate the experiment and start its job (module docstring); the new job's status at once."""
        from hwnas.agent import experiments

        if stage is not None and stage not in STAGES:
            raise AgentError(f"stage: {stage!r} is not a stage; the stages are {', '.join(STAGES)} (none: all)")
        exp, text, source = experiments.load(self.root, experiment_path)
        output = self.root.rel(exp.output_dir())
        self.folder.mkdir(parents=True, exist_ok=True)
        # one start at a time, also across servers sharing the root (the check below must see every job)
        with self._lock, (self.folder / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            running = [s for s in (self.status(i, detail=False) for i in self.ids())
                       if s["state"] in ("running", "stopping")]
            busy = [s["job_id"] for s in running if s["output"] == output]
            if busy:
                raise AgentError(f"job {busy[0]} is still running on the output folder {output}; wait for it or "
                                 "stop it first")
            if len(running) >= self.max_running:
                raise AgentError(f"{len(running)} jobs are running (at most {self.max_running}: hwnas mcp "
                                 f"--max-jobs): {', '.join(s['job_id'] for s in running)}; wait or stop one")
            job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            folder = self.folder / job_id
            folder.mkdir(parents=True)
            args = ["run", source, "--quiet"] + (["--stages", stage] if stage else []) + (["--force"] if force else [])
            _write_json(folder / "command.json", {"args": args, "cwd": str(self.root.path)})
            (folder / "experiment.yaml").write_text(text, encoding="utf-8")
            spec: dict[str, Any] = {
                "id": job_id, "experiment": source, "output": output, "stage": stage,
                "stages": [stage] if stage else list(STAGES), "force": force, "command": "hwnas " + " ".join(args),
                "created": _now(), "created_ts": time.time()}
            _write_json(folder / "job.json", spec)
            with (folder / "runner.log").open("ab") as log:
                proc = subprocess.Popen(  # fixed module, arguments validated above; never a user-given command
                    [sys.executable, "-m", "hwnas.agent.jobs", str(folder)], cwd=self.root.path,
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    close_fds=True)
            stat = _proc_stat(proc.pid)
            spec.update(pid=proc.pid, pid_start=stat[1] if stat else None)
            _write_json(folder / "job.json", spec)
            self._procs[job_id] = proc
        return self.status(job_id, detail=False)

    # ------------------------------------------------------------------------------------------- status
    def status(self, job_id: str, *, detail: bool = True, log_lines: int = 20) -> dict[str, Any]:
        """The job's state; with ``detail`` its progress (stages, trials, Pareto front) and last log lines."""
        folder, spec = self._dir(job_id)
        state, ended = self._state(job_id, folder, spec)
        end_ts = (ended or {}).get("finished_ts") or time.time()
        out: dict[str, Any] = {
            "job_id": job_id, "state": state, "returncode": (ended or {}).get("returncode"),
            "experiment": spec.get("experiment"), "output": spec.get("output"), "stage": spec.get("stage"),
            "command": spec.get("command"), "created": spec.get("created"),
            "finished": (ended or {}).get("finished"),
            "elapsed_s": round(max(0.0, end_ts - float(spec.get("created_ts", end_ts))), 1),
            "cpu_s": (ended or {}).get("cpu_s")}
        if state == "lost":
            out["reason"] = ("the job's process ended without recording an exit status (killed, or the machine "
                             "restarted)")
        if detail:
            log = _tail(folder / "output.log", _MAX_LOG)
            out["progress"] = self._progress(folder, spec, state, log)
            lines = [line[:400] for line in log.splitlines() if line.strip()]
            out["log_tail"] = lines[-max(0, min(int(log_lines), 200)):] if log_lines else []
            out["log"] = self.root.rel(folder / "output.log")
        return out

    def _progress(self, folder: Path, spec: dict[str, Any], state: str, log: str) -> dict[str, Any]:
        wanted = [s for s in spec.get("stages") or STAGES if s in STAGES]
        stages = {s: "pending" for s in wanted}
        current = None
        for line in log.splitlines():
            m = _STAGE_LINE.match(line)
            if m is None or m.group(1) not in stages:
                continue
            if current is not None and stages[current] == "running":
                stages[current] = "done"
            stages[m.group(1)] = "running" if m.group(2) == "running" else "done earlier"
            current = m.group(1) if m.group(2) == "running" else None
        if current is not None and state not in ("running", "stopping"):
            stages[current] = {"done": "done", "stopped": "stopped"}.get(state, "failed")
        output = self.root.path / str(spec.get("output", ""))
        marks = _read_json(output / "stages.json") if self.root.inside(output) else None
        records = {s: {k: v for k, v in m.items() if k != "hash"} for s, m in (marks or {}).items()
                   if s in stages and isinstance(m, dict)} if isinstance(marks, dict) else {}
        progress: dict[str, Any] = {"stages": stages, "current_stage": current if state == "running" else None,
                                    "stage_records": records}
        progress.update(self._study(folder, spec))
        return progress

    def _study(self, folder: Path, spec: dict[str, Any]) -> dict[str, Any]:
        """Trial counts and the feasible Pareto front of the job's study (read-only; nothing is created)."""
        from hwnas.config import parse_experiment
        from hwnas.search.pareto import ParetoArchive
        from hwnas.search.run import open_study
        from hwnas.search.storage import StudyNotFoundError
        from hwnas.search.workers import BUDGET_ATTR

        try:
            text = (folder / "experiment.yaml").read_text(encoding="utf-8")
            exp = parse_experiment(text, source=str(spec.get("experiment")),
                                   base_dir=(self.root.path / str(spec.get("experiment"))).parent, plugins=False)
        except Exception as err:  # a status never fails on its progress part: it says why instead
            return {"trials": None, "pareto_front": None, "note": f"experiment unreadable: {err}"}
        budget = exp.search.n_trials
        study = None
        try:
            study = open_study(exp)
            trials = study.get_trials(deepcopy=False)
            counts = {"budget": budget, "complete": 0, "failed": 0, "running": 0, "waiting": 0, "pruned": 0}
            for t in trials:
                key = {"FAIL": "failed"}.get(t.state.name, t.state.name.lower())
                counts[key] = counts.get(key, 0) + 1
            recorded = study.user_attrs.get(BUDGET_ATTR)
            counts["budget"] = recorded if isinstance(recorded, int) else max(budget, len(trials))
            metrics = [o.metric for o in exp.objectives]
            archive = ParetoArchive.from_study(study, [(o.metric, o.direction) for o in exp.objectives])
            knee = archive.knee_point().number if archive.front else None
            front = [{"trial": t.number, **dict(zip(metrics, archive.values(t), strict=True)), "knee": t.number == knee}
                     for t in archive.front[:_MAX_FRONT]]
        except StudyNotFoundError:
            return {"trials": {"budget": budget, "complete": 0, "failed": 0, "running": 0, "waiting": 0},
                    "pareto_front": [], "note": "no study yet (the search has not started)"}
        except Exception as err:  # e.g. "database is locked" while a trial is written: say so, ask again later
            return {"trials": None, "pareto_front": None, "note": f"study unreadable now: {' '.join(str(err).split())}"}
        finally:  # close the study's database connections now, not at garbage collection
            engine = getattr(getattr(getattr(study, "_storage", None), "_backend", None), "engine", None)
            if engine is not None:
                engine.dispose()
        return {"trials": counts, "objectives": [f"{o.metric}:{o.direction}" for o in exp.objectives],
                "pareto_front": front, "pareto_front_size": len(archive.front), "feasible": len(archive.feasible)}

    # ------------------------------------------------------------------------------------------- stop
    def stop(self, job_id: str, *, grace_s: float = 10.0) -> dict[str, Any]:
        """Stop a running job (module docstring); its status afterwards, with a ``message``."""
        folder, spec = self._dir(job_id)
        state, _ = self._state(job_id, folder, spec)
        if state not in ("running", "stopping"):
            return {**self.status(job_id, detail=False), "message": f"job {job_id} is not running ({state})"}
        if not (folder / "stop.json").exists():
            _write_json(folder / "stop.json", {"requested": _now()})
        pid, start = spec.get("pid"), spec.get("pid_start")
        for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if not _alive(pid, start):
                break
            try:
                os.killpg(pid, sig)  # the runner leads its own session: its process group is the job
            except (ProcessLookupError, PermissionError):
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                proc = self._procs.get(job_id)
                if proc is not None:
                    proc.poll()
                if not _alive(pid, start):
                    break
                time.sleep(0.1)
        return {**self.status(job_id, detail=False), "message": f"job {job_id} stopped"}


# ----------------------------------------------------------------------------------------------- runner
def _run_job(folder: Path) -> int:
    """The detached runner: run the job's fixed ``hwnas`` command, wait for it, record its exit status."""
    command = _read_json(folder / "command.json")
    args = command.get("args") if isinstance(command, dict) else None
    if not (isinstance(args, list) and args[:1] == ["run"] and all(isinstance(a, str) for a in args)):
        _write_json(folder / "exit.json", {"returncode": 2, "finished": _now(), "finished_ts": time.time(),
                                           "error": "command.json is not an hwnas run command"})
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)  # the run decides how to end; the runner outlives it to record that
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with (folder / "output.log").open("ab") as log:
        try:
            child = subprocess.Popen([sys.executable, "-m", "hwnas", *args], cwd=command.get("cwd"),
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        except OSError as err:
            log.write(f"hwnas mcp: cannot start the job: {err}\n".encode())
            returncode = 127
        else:
            returncode = child.wait()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    _write_json(folder / "exit.json", {"returncode": returncode, "finished": _now(), "finished_ts": time.time(),
                                       "cpu_s": round(usage.ru_utime + usage.ru_stime, 1)})
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m hwnas.agent.jobs <job folder>  (started by hwnas mcp)")
    sys.exit(_run_job(Path(sys.argv[1])))
