"""``hwnas run``: search → select → local → export → verify → synth → report on one resumable output folder.

Contract:

* Stages, in order: ``search`` (:func:`hwnas.search.run.run_search`), ``select`` (the ``run.select`` rules over
  the feasible Pareto archive → ``selection.json``), ``local`` (``run.local``, when enabled: precision pairs +
  pruning, an HGQ β-sweep or a PTQ study on each selected model, :mod:`hwnas.pipeline_local` →
  ``local/trial_<n>/model.pt`` and ``local/trial_<n>.json``; the later stages then use that model), ``export``
  (``run.export``: QONNX / hls4ml / RTL artefacts, :mod:`hwnas.pipeline_export` → ``export/trial_<n>/`` and
  ``export/trial_<n>.json``), ``verify`` (every selected model along ``run.verify`` with
  :func:`hwnas.export.verify.verify_model`, its artefacts built in ``export/trial_<n>/`` with the export
  settings and checked unchanged against the export's digests → ``verify/trial_<n>.json``), ``synth``
  (``run.synth``: the RTL of every selected model synthesized with Yosys for the target, beside the
  distributed-arithmetic cost model → ``synth/trial_<n>.json``; ``auto`` skips it, recorded with the reason,
  when Yosys is absent; a model above ``run.synth_max_macs`` nonzero MACs is skipped with the reason in the
  log), ``baselines`` (``run.baselines``: reference models trained on the same data and priced and verified like
  the trials, :mod:`hwnas.pipeline_baselines` → ``baselines/<name>.json``) and ``report`` (:mod:`hwnas.report` →
  ``report/index.html``).
* ``<output>/stages.json`` records each finished stage with the time and a hash of the experiment settings
  it ran with. :func:`run_pipeline` skips a stage recorded with the same hash; a changed experiment, or
  ``force``, runs it again and every stage after it. A stage that runs clears the records of the stages
  after it, so running one stage alone (``hwnas export exp.yaml --force``) leaves the later ones to be
  redone. The search stage itself resumes its study; it counts as finished once no trial is waiting or
  running (or a pipeline stopped it early).
* Every file is written atomically (temporary file, then rename); a stage that fails is not recorded and
  raises, so the next run repeats it.
* Status lines (``log``; ``hwnas -q`` hides them): ``[<stage>] running`` when a stage starts, one line per model
  as a per-model loop (local, export, verify, synth, baselines) reaches it, with its place and the stage's
  elapsed time (``verify trial 12 (2 of 3, 41 s elapsed): qonnx, hls4ml, rtl``, :class:`ModelProgress`), and
  ``[<stage>] done in <elapsed>`` when it finishes (not after ``[<stage>] skipped: <why>``). When the run will
  synthesize because ``run.synth`` is ``auto`` and Yosys is installed, one line before the first stage says that
  this takes minutes and that ``run.synth: off`` skips it (:func:`synth_notice`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hwnas.errors import EXIT_FAILED, HwnasError
from hwnas.pipeline_export import (
    artefact_digest,
    artefact_names,
    export_dir,
    export_record,
    export_selected,
    path_options,
)
from hwnas.pipeline_local import local_dir, local_search_selected
from hwnas.runpaths import read_record, record_path, resolve_path
from hwnas.search.run import write_json as _write_json

__all__ = ["STAGES", "ModelProgress", "PipelineError", "PipelineFailedError", "elapsed", "export_selected",
           "local_search_selected", "model_path", "run_pipeline", "select_models", "synth_notice", "synth_too_large",
           "synth_unavailable", "synthesize_model", "synthesize_selected", "verify_selected"]

STAGES: tuple[str, ...] = ("search", "select", "local", "export", "verify", "synth", "baselines", "report")


class PipelineError(HwnasError, RuntimeError):
    """A stage cannot run (e.g. selection over a study without any feasible trial)."""


class PipelineFailedError(PipelineError):
    """A stage ran and failed (no feasible trial, a verification mismatch, a required tool missing): exit 1."""

    exit_code = EXIT_FAILED


def elapsed(seconds: float) -> str:
    """A duration in a status line: ``0.4 s``, ``42 s``, ``3 min 07 s``, ``1 h 02 min``."""
    if seconds < 9.95:
        return f"{max(0.0, seconds):.1f} s"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class ModelProgress:
    """The per-model status lines of a stage's loop: ``<label> <what> (<i> of <n>, <elapsed> elapsed): <detail>``.

    Called once as each model starts; the elapsed time runs from the object's creation (the loop's start).
    """

    def __init__(self, label: str, total: int, log: Callable[[str], None] | None) -> None:
        self.label, self.total, self.log = label, total, log
        self.count = 0
        self.t0 = time.perf_counter()

    def __call__(self, what: str, detail: str = "") -> None:
        """The line of the next model: ``what`` (``trial 12``, a baseline's name) and an optional ``detail``."""
        self.count += 1
        if self.log is None:
            return
        line = f"{self.label} {what} ({self.count} of {self.total}, {elapsed(time.perf_counter() - self.t0)} elapsed)"
        self.log(line + (f": {detail}" if detail else ""))


def _hashes(experiment: Any) -> list[str]:
    """The stage-mark hash of ``experiment`` (first), then its earlier forms (hwnas.config.hash_payload_forms)."""
    from hwnas.config import hash_payload_forms, payload_digest

    return [payload_digest(data) for data in hash_payload_forms(experiment)]


def _accepted(experiment: Any, marks: dict[str, Any]) -> tuple[str, set[str]]:
    """The current stage-mark hash and the recorded ones that stand for it (earlier forms looked up only then)."""
    from hwnas.config import hash_payload, payload_digest

    digest = payload_digest(hash_payload(experiment))
    other = {m.get("hash") for m in marks.values() if isinstance(m, dict)} - {digest}
    return digest, {digest} | (other & set(_hashes(experiment)[1:]) if other else set())


def select_models(experiment: Any, study: Any) -> list[dict[str, Any]]:
    """Apply ``run.select`` to the study's feasible trials; one entry per distinct trial, rules joined."""
    from hwnas.search.pareto import NoSelectionError, ParetoArchive

    objectives = [(o.metric, o.direction) for o in experiment.objectives]
    archive = ParetoArchive.from_study(study, objectives)
    if not archive.feasible:
        raise PipelineFailedError(f"select: study {study.study_name!r} has no feasible trial "
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


def model_path(experiment: Any, entry: dict[str, Any]) -> str:
    """The model a later stage uses for a selected trial: the local search's result, else the trial's.

    Recorded paths are relative to the output folder (:mod:`hwnas.runpaths`), so a moved or copied run folder
    uses its own files.
    """
    local = local_dir(experiment, int(entry["number"])) / "model.pt"
    if local.is_file():
        return str(local)
    if not entry.get("checkpoint"):
        raise PipelineError(f"trial {entry['number']} has no model file recorded (the search ran with models "
                            "not saved?)")
    return str(resolve_path(entry["checkpoint"], experiment.output_dir()))


def verify_selected(experiment: Any, selection: list[dict[str, Any]],
                    progress: Callable[[str], None] | None = None) -> dict[int, dict[str, Any]]:
    """Run ``run.verify`` on every selected model's test inputs; write ``verify/trial_<n>.json``.

    The inputs are the first ``run.verify_samples`` samples of the model's test split (its task data loaded
    with the options its model file records); for a classifier the record's ``accuracy`` holds the top-1
    accuracy of torch and of every path on them (``{"samples": N, "torch": a, "<path>": b}``). The artefacts
    are built in ``export/trial_<n>/`` with the export stage's settings; a path the export
    stage wrote gets ``same_as_export``: whether the verified artefact's source digest equals the exported one.
    """
    from hwnas.export import load_model
    from hwnas.export.verify import verify_model
    from hwnas.search.objective import model_task_data

    out = experiment.output_dir() / "verify"
    results = {}
    loaded: dict[str, Any] = {}  # task data per option set, shared by models with the same options
    step = ModelProgress("verify", len(selection), progress)
    for entry in selection:
        n = int(entry["number"])
        step(f"trial {n}", ", ".join(experiment.run.verify))
        source = model_path(experiment, entry)
        bundle = load_model(source)
        task, data, _ = model_task_data(experiment, bundle.metadata, loaded)
        x = data.test.x[: experiment.run.verify_samples]
        labels = data.test.y[: experiment.run.verify_samples] if task.loss == "ce" else None
        folder = export_dir(experiment, n)
        exported_file = export_record(experiment, n)
        exported = read_record(exported_file)
        if exported is not None and exported.get("model") != record_path(source, experiment.output_dir()):
            exported = None  # written for another model (e.g. before a local search): not comparable
        report = verify_model(bundle.model, x, input_shape=bundle.input_shape, paths=list(experiment.run.verify),
                              output_dir=folder, samples=experiment.run.verify_samples, seed=experiment.seed,
                              options=path_options(experiment, bundle.model, bundle.input_shape,
                                                   bundle.metadata.get("point")))
        digests = {p["path"]: p["digest"] for p in (exported or {}).get("paths", []) if p.get("digest")}
        artefacts = artefact_names()
        paths = []
        for p in report.results:
            row = p.as_dict()
            if p.path in digests and p.path in artefacts and p.skipped is None:
                row["same_as_export"] = artefact_digest(folder / artefacts[p.path]) == digests[p.path]
            paths.append(row)
        record = {"trial": n, "model": record_path(source, experiment.output_dir()), "passed": not report.failures,
                  "ran": [p.path for p in report.ran], "paths": paths,
                  "accuracy": None if labels is None else report.accuracy(labels)}
        _write_json(out / f"trial_{n:05d}.json", record)
        results[n] = record
    return results


def synthesize_selected(experiment: Any, selection: list[dict[str, Any]],
                        log: Callable[[str], None] = print) -> dict[int, dict[str, Any]] | str:
    """Synthesize every selected model (``run.synth``); the results, or why the stage was skipped."""
    from hwnas.export import load_model

    why_not = synth_unavailable(experiment)
    if why_not is not None:
        return why_not
    dev = experiment.device()
    out = experiment.output_dir() / "synth"
    results = {}
    step = ModelProgress("synth", len(selection), log)
    for entry in selection:
        n = int(entry["number"])
        bundle = load_model(model_path(experiment, entry))
        too_large = synth_too_large(experiment, bundle.model, bundle.input_shape)
        if too_large is not None:
            step(f"trial {n}", f"skipped ({too_large})")
            continue
        step(f"trial {n}", f"RTL + Yosys for {dev.name}")
        model_file = record_path(model_path(experiment, entry), experiment.output_dir())
        data = {"trial": n, "model": model_file,
                **synthesize_model(experiment, bundle.model, bundle.input_shape, out / f"trial_{n:05d}_work")}
        _write_json(out / f"trial_{n:05d}.json", data)
        results[n] = data
    return results


def synth_unavailable(experiment: Any) -> str | None:
    """Why ``run.synth`` synthesizes nothing (off, or ``auto`` without Yosys), or None when it runs.

    ``run.synth: on`` without Yosys raises :class:`PipelineError`.
    """
    from hwnas.export import ToolMissingError
    from hwnas.export.synth_tools import find_yosys

    mode = experiment.run.synth
    if mode == "off":
        return "run.synth is off"
    dev = experiment.device()
    try:
        find_yosys(command="synth_ecp5" if dev.yosys_family == "ecp5" else "synth_xilinx")
    except ToolMissingError as err:
        if mode == "on":
            raise PipelineFailedError(f"synth: run.synth is on but {err}") from err
        return f"Yosys is not installed ({err})"
    return None


def synth_notice(experiment: Any) -> str | None:
    """The up-front line of a run that synthesizes because ``run.synth`` is ``auto`` (not asked for), else None.

    ``auto`` synthesizes whenever Yosys is installed, which takes minutes (several per model with hidden layers on
    2 cores): the line says so and how to skip it. ``on`` (asked for) and ``off`` get no line, nor ``auto``
    without Yosys (the stage says it skipped).
    """
    if experiment.run.synth != "auto" or synth_unavailable(experiment) is not None:
        return None
    also = " and every run.baselines model" if experiment.run.baselines else ""
    return ("[synth] note: run.synth is auto and Yosys is installed, so the synth stage synthesizes every selected "
            f"model{also}: this takes minutes (seconds to several minutes per model); set run.synth: off in "
            "the experiment to skip it, or on to require it")


def synth_too_large(experiment: Any, model: Any, input_shape: tuple[int, ...]) -> str | None:
    """Why ``model`` is too large for the synth stage (``run.synth_max_macs``), or None."""
    from hwnas.cost import model_metrics

    limit = experiment.run.synth_max_macs
    if limit is None:
        return None
    m = model_metrics(model, tuple(input_shape))
    nonzero = round(m.macs * (1.0 - m.sparsity))
    if nonzero <= limit:
        return None
    return (f"{nonzero:,} nonzero MACs > run.synth_max_macs {limit:,}: the fully unrolled RTL trace and its Yosys "
            "run would take hours here; raise run.synth_max_macs to try")


def synthesize_model(experiment: Any, model: Any, input_shape: tuple[int, ...], work: Path) -> dict[str, Any]:
    """RTL (``run.rtl``) + Yosys for the target in ``work``; the totals beside the distributed-arithmetic estimate."""
    from hwnas.cost import CostError, estimate
    from hwnas.export.rtl import export_rtl
    from hwnas.export.synth import synthesize

    dev = experiment.device()
    project = export_rtl(model, input_shape, work / "rtl", **path_options(experiment)["rtl"])
    result = synthesize(project, target=dev, output_dir=work / "synth", progress=False)
    data: dict[str, Any] = {"device": dev.name, "totals": dict(result.totals), "fmax_mhz": result.fmax_mhz,
                            "seconds": round(result.seconds, 1), "summary": result.summary()}
    try:
        est = estimate(model, dev, input_shape=input_shape, kind="hls4ml", strategy="distributed_arithmetic")
        data["distributed_arithmetic"] = result.compare_with(est).as_dict()
    except (CostError, ValueError) as err:
        data["distributed_arithmetic"] = f"no comparison: {err}"
    return data


def _selection(out: Path) -> list[dict[str, Any]]:
    """The ``select`` stage's entries."""
    data = read_record(out / "selection.json", missing="run the select stage first (hwnas select EXPERIMENT, or "
                       "hwnas run)")
    if not isinstance(data, dict) or not isinstance(data.get("selected"), list):
        raise PipelineError(f"{out / 'selection.json'}: not a selection record; delete it and run hwnas select again")
    return data["selected"]


def _log_results(stage: str, results: dict[int, dict[str, Any]] | str, log: Callable[[str], None],
                 line: Callable[[dict[str, Any]], str]) -> None:
    """One line per trial, or why the stage did nothing (a string result)."""
    if isinstance(results, str):
        log(f"[{stage}] skipped: {results}")
        return
    for n, r in results.items():
        log(f"[{stage}] trial {n}: {line(r)}")


def _log_failures(study: Any, log: Callable[[str], None]) -> None:
    """``[select]``: how many trials failed and their most common reason (``hwnas pareto`` lists them all)."""
    from collections import Counter

    from optuna.trial import TrialState

    from hwnas.search.workers import failure_reason

    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    if failed:
        reason, count = Counter(failure_reason(t) for t in failed).most_common(1)[0]
        log(f"[select] {len(failed)} of {len(study.get_trials(deepcopy=False))} trials failed; most common reason "
            f"({count} of them): {reason}")


def run_pipeline(experiment: Any, *, stages: Sequence[str] | None = None, force: bool = False,
                 progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the stages of ``experiment``; returns what each stage produced (module docstring).

    One ``hwnas run`` at a time per output folder: a second one on the same folder stops at once with a
    :class:`PipelineError` naming the process that holds it (:func:`hwnas.runpaths.run_lock`); workers joining
    the search (``hwnas worker``) take no such lock.
    """
    from hwnas.runpaths import RunLockedError, run_lock

    try:
        with run_lock(experiment.output_dir()):
            return _run_pipeline(experiment, stages=stages, force=force, progress=progress, log=log)
    except RunLockedError as err:
        raise PipelineError(str(err)) from None


def _run_pipeline(experiment: Any, *, stages: Sequence[str] | None, force: bool, progress: bool,
                  log: Callable[[str], None]) -> dict[str, Any]:
    from hwnas.report import build_report
    from hwnas.search.guided import STOPPED_ATTR
    from hwnas.search.run import open_study, run_search

    wanted = list(STAGES if stages is None else stages)
    unknown = [s for s in wanted if s not in STAGES]
    if unknown:
        raise PipelineError(f"stages: unknown {unknown}; the stages are {list(STAGES)}")
    out = experiment.output_dir()
    marks_path = out / "stages.json"
    marks = read_record(marks_path) or {}
    if not isinstance(marks, dict):
        raise PipelineError(f"{marks_path}: not a stage record; delete it (every stage then runs again)")
    digest, digests = _accepted(experiment, marks)
    produced: dict[str, Any] = {}
    rerun = force
    if "synth" in wanted and wanted != ["synth"] and (force or marks.get("synth", {}).get("hash") not in digests):
        notice = synth_notice(experiment)  # up front: before the search, not after it
        if notice:
            log(notice)
    for stage in STAGES:
        if stage not in wanted:
            continue
        done = marks.get(stage, {}).get("hash") in digests
        if done and not rerun:
            log(f"[{stage}] done earlier ({marks[stage]['finished']}); skipped")
            continue
        rerun = True  # every later stage depends on this one
        t0 = time.perf_counter()
        log(f"[{stage}] running")
        if stage == "search":
            table = experiment.cpu_table_path()
            if table is not None and experiment.hardware.cpu_profile != "never" and not table.is_file():
                log(f"[search] profiling the CPU latency table ({experiment.hardware.cpu_profile} grid) into {table}")
            outcome = run_search(experiment, progress=progress)
            s = outcome.summary
            produced["search"] = s
            if s["remaining"] or s["running"]:
                if not outcome.study.user_attrs.get(STOPPED_ATTR):
                    log(f"[search] {s['remaining']} trials left (timeout or interrupted): not finished")
                    return produced
        elif stage == "select":
            study = open_study(experiment)
            _log_failures(study, log)
            selection = select_models(experiment, study)
            _write_json(out / "selection.json", {"selected": selection})
            produced["select"] = selection
            for e in selection:
                log(f"[select] trial {e['number']} ({e['rule']})")
        elif stage == "verify":
            results = verify_selected(experiment, _selection(out), progress=log)
            produced["verify"] = results
            for n, r in results.items():
                paths = ", ".join(f"{p['path']}: " + (
                    f"skipped ({p['skipped'][:60]})" if p["skipped"] else f"FAILED ({p['error'][:120]})"
                    if p.get("error") else f"{p['mismatches']} mismatching of {p['samples']}") for p in r["paths"])
                log(f"[verify] trial {n}: {paths}")
            if not all(r["passed"] for r in results.values()):
                raise PipelineFailedError("verify: a path disagrees with torch or failed (see verify/*.json)")
            changed = [f"trial {n} {p['path']}" for n, r in results.items() for p in r["paths"]
                       if p.get("same_as_export") is False]
            if changed:
                raise PipelineFailedError("verify: the verified artefact differs from the exported one "
                                          f"({', '.join(changed)}): the export is not deterministic")
        elif stage == "baselines":
            from hwnas.pipeline_baselines import train_baselines

            produced["baselines"] = train_baselines(experiment, progress=progress, log=log)
            if isinstance(produced["baselines"], str):
                log(f"[baselines] skipped: {produced['baselines']}")
            for name, r in ({} if isinstance(produced["baselines"], str) else produced["baselines"]).items():
                m = r["metrics"]
                acc = r.get("accuracy") or {}
                exported = ", ".join(f"{p} {v:.4f}" for p, v in acc.items() if p not in ("samples", "torch"))
                log(f"[baselines] {name}: test accuracy {m.get('test_accuracy', float('nan')):.4f}, "
                    f"QA-Score {m.get('qa_score', float('nan')):.3f}"
                    + (f", exported on {acc['samples']} samples: {exported}" if exported else ""))
        elif stage == "local":
            produced["local"] = local_search_selected(experiment, _selection(out), log=log)
            _log_results("local", produced["local"], log, lambda r: (
                f"kept {r['kept']}, sparsity {r['sparsity']:.2f}, "
                f"metric {r['metric']:.4f} (searched {r['searched_metric']:.4f})"))
        elif stage == "export":
            produced["export"] = export_selected(experiment, _selection(out), lambda e: model_path(experiment, e),
                                                 log=log)
            _log_results("export", produced["export"], log, lambda r: ", ".join(
                f"{p['path']}: " + (f"skipped ({p['skipped'][:60]})" if p["skipped"] else p["artefact"])
                for p in r["paths"]))
        elif stage == "synth":
            produced["synth"] = synthesize_selected(experiment, _selection(out), log=log)
            _log_results("synth", produced["synth"], log, lambda r: (
                f"{r['totals']['luts']:.0f} LUT, {r['totals']['ffs']:.0f} FF, {r['totals']['dsps']:.0f} DSP "
                f"on {r['device']}"))
        else:
            produced["report"] = build_report(experiment, open_study(experiment))
            log(f"[report] {Path(produced['report']).resolve()}")
        seconds = time.perf_counter() - t0
        if not isinstance(produced.get(stage), str):  # a skipped stage has said so
            log(f"[{stage}] done in {elapsed(seconds)}")
        marks[stage] = {"hash": digest, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                        "seconds": round(seconds, 1)}
        for later in STAGES[STAGES.index(stage) + 1:]:
            marks.pop(later, None)  # built on the previous result of this stage: no longer done
        _write_json(marks_path, marks)
    return produced
