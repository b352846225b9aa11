"""``hwnas run``: search → select → verify → report on one resumable output folder.

Contract:

* Stages, in order: ``search`` (:func:`hwnas.search.run.run_search`), ``select`` (the ``run.select`` rules over
  the feasible Pareto archive → ``selection.json``), ``verify`` (every selected model along ``run.verify``
  with :func:`hwnas.export.verify_model` → ``verify/trial_<n>.json``) and ``report``
  (:mod:`hwnas.report` → ``report/index.html``).
* ``<output>/stages.json`` records each finished stage with the time and a hash of the experiment settings
  it ran with. :func:`run_pipeline` skips a stage recorded with the same hash; a changed experiment, or
  ``force``, runs it again and every stage after it. The search stage itself resumes its study; it counts
  as finished once no trial is waiting or running (or a pipeline stopped it early).
* Every file is written atomically (temporary file, then rename); a stage that fails is not recorded and
  raises, so the next run repeats it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["STAGES", "PipelineError", "run_pipeline", "select_models", "verify_selected"]

STAGES: tuple[str, ...] = ("search", "select", "verify", "report")


class PipelineError(RuntimeError):
    """A stage cannot run (e.g. selection over a study without any feasible trial)."""


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def _hash(experiment: Any) -> str:
    import hashlib

    data = experiment.model_dump()
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def select_models(experiment: Any, study: Any) -> list[dict[str, Any]]:
    """Apply ``run.select`` to the study's feasible trials; one entry per distinct trial, rules joined."""
    from hwnas.search.pareto import NoSelectionError, ParetoArchive

    objectives = [(o.metric, o.direction) for o in experiment.objectives]
    archive = ParetoArchive.from_study(study, objectives)
    if not archive.feasible:
        raise PipelineError(f"select: study {study.study_name!r} has no feasible trial "
                            f"({len(archive.infeasible)} infeasible); relax constraints or search longer")
    chosen: dict[int, list[str]] = {}
    first, last = objectives[0], objectives[-1]
    for rule in experiment.run.select:
        try:
            if rule == "knee":
                t = archive.knee_point()
            elif rule == "best":
                t = archive.best_under_budgets(first[0], first[1], {})
            else:
                floor = experiment.run.accuracy_floor
                if floor is not None and len(objectives) > 1 and first[1] == "maximize" and last[1] == "minimize":
                    t = archive.cheapest_above(last[0], first[0], floor)
                else:
                    t = archive.best_under_budgets(last[0], last[1], {})
        except NoSelectionError as err:
            raise PipelineError(f"select: rule {rule!r}: {err}") from err
        chosen.setdefault(t.number, []).append(rule)
    return [{"number": n, "rule": "+".join(rules), "metrics": study.trials[n].user_attrs.get("metrics"),
             "checkpoint": study.trials[n].user_attrs.get("checkpoint")} for n, rules in chosen.items()]


def verify_selected(experiment: Any, selection: list[dict[str, Any]],
                    progress: Callable[[str], None] | None = None) -> dict[int, dict[str, Any]]:
    """Run ``run.verify`` on every selected model's test inputs; write ``verify/trial_<n>.json``."""
    from hwnas.export import load_model
    from hwnas.export.verify import verify_model

    out = experiment.output_dir() / "verify"
    results = {}
    for entry in selection:
        n = int(entry["number"])
        bundle = load_model(entry["checkpoint"])
        x = bundle.test_inputs
        if x is not None:
            x = x[: experiment.run.verify_samples]
        if progress:
            progress(f"verify trial {n}: {', '.join(experiment.run.verify)}")
        report = verify_model(bundle.model, x, input_shape=bundle.input_shape, paths=list(experiment.run.verify),
                              output_dir=out / f"trial_{n:05d}_artefacts", samples=experiment.run.verify_samples,
                              seed=experiment.seed)
        data = {"trial": n, "passed": not report.failures, "ran": [p.path for p in report.ran],
                "paths": [p.as_dict() for p in report.results]}
        _write_json(out / f"trial_{n:05d}.json", data)
        results[n] = data
    return results


def run_pipeline(experiment: Any, *, stages: Sequence[str] | None = None, force: bool = False,
                 progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the stages of ``experiment``; returns what each stage produced (module docstring)."""
    from hwnas.report import build_report
    from hwnas.search.guided import STOPPED_ATTR
    from hwnas.search.run import open_study, run_search

    wanted = list(STAGES if stages is None else stages)
    unknown = [s for s in wanted if s not in STAGES]
    if unknown:
        raise PipelineError(f"stages: unknown {unknown}; the stages are {list(STAGES)}")
    out = experiment.output_dir()
    marks_path = out / "stages.json"
    marks = json.loads(marks_path.read_text()) if marks_path.is_file() else {}
    digest = _hash(experiment)
    produced: dict[str, Any] = {}
    rerun = force
    for stage in STAGES:
        if stage not in wanted:
            continue
        done = marks.get(stage, {}).get("hash") == digest
        if done and not rerun:
            log(f"[{stage}] done earlier ({marks[stage]['finished']}); skipped")
            continue
        rerun = True  # every later stage depends on this one
        t0 = time.perf_counter()
        log(f"[{stage}] running")
        if stage == "search":
            outcome = run_search(experiment, progress=progress)
            s = outcome.summary
            produced["search"] = s
            if s["remaining"] or s["running"]:
                if not outcome.study.user_attrs.get(STOPPED_ATTR):
                    log(f"[search] {s['remaining']} trials left (timeout or interrupted): not finished")
                    return produced
        elif stage == "select":
            selection = select_models(experiment, open_study(experiment))
            _write_json(out / "selection.json", {"selected": selection})
            produced["select"] = selection
            for e in selection:
                log(f"[select] trial {e['number']} ({e['rule']})")
        elif stage == "verify":
            sel = json.loads((out / "selection.json").read_text())["selected"]
            results = verify_selected(experiment, sel, progress=log)
            produced["verify"] = results
            for n, r in results.items():
                paths = ", ".join(f"{p['path']}: " + (f"skipped ({p['skipped'][:60]})" if p["skipped"] else
                                                      f"{p['mismatches']} mismatching of {p['samples']}")
                                  for p in r["paths"])
                log(f"[verify] trial {n}: {paths}")
            if not all(r["passed"] for r in results.values()):
                raise PipelineError("verify: a path disagrees with torch (see verify/*.json)")
        else:
            produced["report"] = build_report(experiment, open_study(experiment))
            log(f"[report] {produced['report']}")
        marks[stage] = {"hash": digest, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                        "seconds": round(time.perf_counter() - t0, 1)}
        _write_json(marks_path, marks)
    return produced
