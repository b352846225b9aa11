"""The ``export`` stage of ``hwnas run``: QONNX, hls4ml and RTL artefacts of every selected model.

Contract:

* For each selected model (the local search's when it ran) and each path in ``run.export`` (names of the
  registry :mod:`hwnas.export.paths`, whose ``export`` function writes it), the artefact is written into
  ``<output>/export/trial_<n>/`` under the name the verify stage uses for it (the path's ``artefact``):
  ``model.qonnx.onnx``, ``hls4ml/`` (project, not compiled), ``rtl/`` (alkaid project, not built). The settings
  come from ``run.hls4ml`` / ``run.rtl`` (:func:`path_options`); the same settings drive the verify and synth
  stages, so what is verified is what was exported.
* ``export/trial_<n>.json`` lists per path the artefact, a SHA-256 digest of its source files
  (:func:`artefact_digest`: build products such as compiled libraries and Verilator's ``obj_dir`` are left
  out) or why it was skipped (a model the format cannot express, a tool that is not installed). The verify
  stage recomputes the digest after it has compiled and run the artefact in the same folder and records
  whether it is unchanged (``same_as_export``).
* A model that a path cannot express is not an error (the reason is recorded); anything else raises.
* ``export/trial_<n>/`` is hwnas's own folder (:func:`hwnas.export.folders.claim_folder`, manifest
  ``.hwnas-export.json``): running the stage again replaces what hwnas wrote there, but a file someone else
  put there is never deleted: the stage stops with a :class:`~hwnas.export.folders.FolderError` naming it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hwnas.runpaths import record_path

__all__ = ["ARTEFACT_NAMES", "artefact_digest", "artefact_names", "export_dir", "export_record", "export_selected",
           "finn_folding", "path_options", "reuse_per_layer"]

ARTEFACT_NAMES: dict[str, str]
"""Where each path's artefact lives inside ``export/trial_<n>/`` (the names :func:`verify_model` writes):
:func:`artefact_names`, computed on each access."""


def artefact_names() -> dict[str, str]:
    """``{path: artefact name}`` of every registered path that writes an artefact (:mod:`hwnas.export.paths`)."""
    from hwnas.export import paths

    return {name: str(paths.get(name).artefact) for name in paths.names(exporters_only=True)}


def __getattr__(name: str) -> Any:
    if name == "ARTEFACT_NAMES":
        return artefact_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

_SOURCE_SUFFIXES = {".onnx", ".h", ".hh", ".hpp", ".c", ".cc", ".cpp", ".v", ".sv", ".vhd", ".vhdl", ".tcl", ".xdc",
                    ".sdc", ".txt", ".csv", ".md", ".json"}
_BUILD_DIRS = {"obj_dir", "build", "__pycache__", "tb_data", "verilator"}


def export_dir(experiment: Any, number: int) -> Path:
    """``<output>/export/trial_<n>/``: the artefacts of selected trial ``number``."""
    return experiment.output_dir() / "export" / f"trial_{int(number):05d}"


def export_record(experiment: Any, number: int) -> Path:
    """``<output>/export/trial_<n>.json``: what the export stage wrote for selected trial ``number``."""
    return experiment.output_dir() / "export" / f"trial_{int(number):05d}.json"


def artefact_digest(path: Path) -> str:
    """SHA-256 over the source files of an artefact (one file, or a folder's files by relative path).

    Build products (compiled libraries, object files, Verilator's ``obj_dir``, hidden files) are left out, so
    compiling a project in place keeps its digest.
    """
    h = hashlib.sha256()
    path = Path(path)
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _SOURCE_SUFFIXES
        and not any(part in _BUILD_DIRS or part.startswith(".") for part in p.relative_to(path).parts))
    for f in files:
        rel = f.name if f == path else f.relative_to(path).as_posix()
        h.update(rel.encode() + b"\0")
        h.update(f.read_bytes().replace(str(path.absolute()).encode(), b"<artefact>") + b"\0")
    return h.hexdigest()


def reuse_per_layer(model: Any, input_shape: tuple[int, ...], reuse_factor: int, strategy: str) -> dict[str, int]:
    """Per Dense/Conv layer: the largest reuse factor hls4ml accepts for it that is not above ``reuse_factor``."""
    import numpy as np

    from hwnas.export.graph import Conv, Dense, extract
    from hwnas.export.hls4ml_lower import undilate, valid_reuse_factors

    out = {}
    for node in extract(model, tuple(input_shape)).nodes:
        if isinstance(node, Dense | Conv):
            if isinstance(node, Conv):
                node = undilate(node)  # hls4ml multiplies over the zero-expanded kernel of a dilated conv
            n_out = int(node.weight.shape[0])
            n_in = int(np.prod(node.weight.shape[1:]))
            valid = valid_reuse_factors(n_in, n_out, strategy == "Resource")
            out[node.name] = max([v for v in valid if v <= reuse_factor] or [1])
    return out


def path_options(experiment: Any, model: Any = None, input_shape: tuple[int, ...] | None = None,
                 point: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Keyword arguments of each exporter from ``run.hls4ml`` / ``run.rtl`` and the hardware target.

    With ``model`` the hls4ml reuse factor becomes a per-layer dict (:func:`reuse_per_layer`) and, for a FINN
    target, the FINN path gets the folding the search priced (:func:`finn_folding`; ``point``: the trial's
    point as its model file records it).
    """
    dev = experiment.device()
    hls_cfg, rtl_cfg = experiment.run.hls4ml, experiment.run.rtl
    period = hls_cfg.clock_period_ns or 1000.0 / experiment.hardware.clock()
    reuse: Any = hls_cfg.reuse_factor
    if model is not None and input_shape is not None and reuse > 1:
        reuse = reuse_per_layer(model, input_shape, reuse, hls_cfg.strategy)
    hls = {"backend": hls_cfg.backend, "strategy": hls_cfg.strategy, "reuse_factor": reuse,
           "part": hls_cfg.part or dev.part, "clock_period": round(period, 4)}
    rtl = {"flavor": rtl_cfg.flavor, "latency_cutoff": rtl_cfg.latency_cutoff_ns, "clock_period": round(period, 4),
           "part_name": dev.part, "optimize": rtl_cfg.optimize}
    finn: dict[str, Any] = {"part": dev.part, "clock_period": round(period, 4), "target": dev.name}
    if model is not None and input_shape is not None and experiment.hardware.model == "finn":
        finn["folding"] = finn_folding(experiment, model, input_shape, point)
    return {"hls4ml": hls, "rtl": rtl, "finn": finn}


def finn_folding(experiment: Any, model: Any, input_shape: tuple[int, ...], point: dict[str, Any] | None = None
                 ) -> dict[str, list[int]]:
    """The PE/SIMD per layer that the search priced with the FINN cost model.

    A point with a searched mapping (``space.mapping.kind: finn``): its PE/SIMD; else with ``hardware.target_fps``
    or ``space.mapping.target_fps``: the cheapest folding reaching it; otherwise fully folded (PE = SIMD = 1, an
    empty dict).
    """
    import copy

    import torch

    from hwnas.cost import fold_for_throughput
    from hwnas.nn import fold_batchnorm

    if point and point.get("mapping"):
        from hwnas.space.build import module_names
        from hwnas.space.point import Point

        p = Point.from_dict(point)
        with torch.no_grad():
            n_classes = int(model.eval()(torch.zeros(1, *input_shape)).shape[-1])
        names = module_names(p, tuple(input_shape), n_classes)
        searched = {names[m.layer]: [int(m.pe), int(m.simd)] for m in p.mapping if m.pe is not None}
        if searched:
            return searched
    fps = experiment.hardware.target_fps or experiment.space.mapping.target_fps
    if not fps:
        return {}
    folded = fold_batchnorm(copy.deepcopy(model).eval())
    folding, _ = fold_for_throughput(folded, experiment.device(), tuple(input_shape), fps,
                                     clock_mhz=experiment.hardware.clock_mhz)
    return {name: [fo.pe, fo.simd] for name, fo in folding.items()}


def export_selected(experiment: Any, selection: list[dict[str, Any]], model_file: Callable[[dict[str, Any]], str],
                    log: Callable[[str], None] = print) -> dict[int, dict[str, Any]] | str:
    """Write ``run.export``'s artefacts of every selected model; the results, or why the stage did nothing."""
    from hwnas.export import ExportError, ToolFailureError, ToolMissingError, load_model
    from hwnas.export import paths as registry
    from hwnas.export.folders import FolderError, adopt_legacy, claim_folder
    from hwnas.pipeline import ModelProgress
    from hwnas.search.run import write_json

    if not experiment.run.export:
        return "run.export is empty"
    results = {}
    step = ModelProgress("export", len(selection), log)  # export trial 12 (1 of 2, 0.0 s elapsed): qonnx, ...
    for entry in selection:
        n = int(entry["number"])
        step(f"trial {n}", ", ".join(experiment.run.export))
        source = model_file(entry)
        bundle = load_model(source)
        folder = export_dir(experiment, n)
        adopt_legacy(folder, artefact_names().values())  # written by an hwnas before manifests: still hwnas's
        claim_folder(folder, replace=True)  # hwnas's own folder: refused when it holds files hwnas did not write
        options = path_options(experiment, bundle.model, bundle.input_shape, bundle.metadata.get("point"))
        paths = []
        for path in experiment.run.export:
            how = registry.get(path)
            if how.export is None:
                raise ExportError(f"run.export: {path!r} writes no artefact; export paths are: "
                                  f"{', '.join(registry.names(exporters_only=True))}")
            target = folder / str(how.artefact)
            row: dict[str, Any] = {"path": path, "artefact": None, "digest": None, "skipped": None, "error": None}
            try:
                how.export(bundle.model, bundle.input_shape, target, **options.get(path, {}))
            except FolderError:
                raise  # the folder, not the model: never recorded as "not expressible"
            except ToolFailureError as err:  # the tool broke on a model the path expresses: the stage fails below
                row["error"] = str(err)
            except ExportError as err:
                row["skipped"] = f"not expressible: {err}"
            except (ToolMissingError, ModuleNotFoundError) as err:
                row["skipped"] = f"tool missing: {err}"
            else:
                row["artefact"] = str(target)
                row["digest"] = artefact_digest(target)
            paths.append(row)
        data = {"trial": n, "model": record_path(source, experiment.output_dir()), "options": options,
                "paths": paths}
        write_json(export_record(experiment, n), data)
        results[n] = data
        broken = [f"{p['path']}: {p['error']}" for p in paths if p.get("error")]
        if broken:
            raise ToolFailureError(f"export: trial {n}: {'; '.join(broken)} (recorded in "
                                   f"{export_record(experiment, n)})")
    return results
