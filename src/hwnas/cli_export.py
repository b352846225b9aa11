"""``hwnas export``, ``hwnas verify`` and ``hwnas synth``: the export paths on a saved model file.

A model file is written by :func:`hwnas.export.save_model` (the module, its input shape, optional test
inputs). Given an experiment file (``.yaml``/``.yml``) instead, each command runs that stage of
``hwnas run`` on the experiment's output folder (:mod:`hwnas.pipeline`). Exit status (:mod:`hwnas.errors`): 0
success (verify: every path that ran matches torch on every sample), 1 a failure (a verification mismatch, a tool
that failed or is not installed, a failed synthesis), 2 bad input (missing file, malformed data, a model a path
cannot express), 130 interrupted. For a model file ``export --to/--out`` and ``synth --target/--out`` are
required (the usage line says so); an experiment takes them from its ``run:`` section.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwnas.errors import first_line

__all__ = ["add_export_commands"]


def _error(message: str, code: int = 2) -> int:
    print(f"hwnas: error: {message}", file=sys.stderr)
    return code


def _load_inputs(path: str, expected: tuple[int, ...]) -> torch.Tensor:
    """Test inputs from ``.npy``, ``.npz`` (key ``x`` or the only array) or ``.pt`` (tensor or dict with ``x``)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--data: no such file {p}")
    try:
        arr = _read_array(p)
        x = torch.as_tensor(np.asarray(arr, dtype=np.float32))
    except Exception as err:  # a truncated, corrupt or foreign file: numpy/torch/zip errors of every kind
        if isinstance(err, ValueError) and str(err).startswith("--data:"):
            raise
        raise ValueError(f"--data: {p} is not a readable {p.suffix} file of inputs ({first_line(err)})") from err
    if tuple(x.shape[1:]) != expected:
        raise ValueError(f"--data: samples of shape {tuple(x.shape[1:])}, the model expects {expected}")
    if len(x) == 0:
        raise ValueError(f"--data: {p} holds no samples")
    if not torch.isfinite(x).all():
        raise ValueError(f"--data: {p} contains NaN or infinity")
    return x


def _read_array(p: Path) -> Any:
    """The array of an inputs file (without pickles: ``allow_pickle=False``, ``weights_only=True``)."""
    if p.suffix == ".npy":
        arr: Any = np.load(p, allow_pickle=False)
    elif p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            keys = list(z.keys())
            if "x" not in keys and len(keys) != 1:
                raise ValueError(f"--data: {p} holds {keys}; name the inputs 'x'")
            arr = z["x" if "x" in keys else keys[0]]
    elif p.suffix in (".pt", ".pth"):
        obj = torch.load(p, map_location="cpu", weights_only=True)
        arr = obj.get("x") if isinstance(obj, dict) else obj
        if arr is None:
            raise ValueError(f"--data: {p} is a dict without an 'x' entry")
    else:
        raise ValueError(f"--data: unsupported file type {p.suffix!r} (use .npy, .npz or .pt)")
    return arr


def _path_options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    hls = {"backend": args.backend, "strategy": args.strategy, "reuse_factor": args.reuse_factor,
           "clock_period": args.clock_period}
    if args.part:
        hls["part"] = args.part
    rtl = {"flavor": args.flavor, "latency_cutoff": args.latency_cutoff, "clock_period": args.clock_period,
           "optimize": args.rtl_optimize}
    return {"hls4ml": hls, "rtl": rtl}


def _add_path_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("hls4ml options")
    g.add_argument("--backend", default="Vitis", choices=("Vitis", "Vivado"), help="hls4ml backend (default Vitis)")
    g.add_argument("--strategy", default="Latency", choices=("Latency", "Resource"),
                   help="hls4ml strategy (default Latency)")
    g.add_argument("--reuse-factor", type=int, default=1, help="hls4ml reuse factor for every layer (default 1)")
    g.add_argument("--part", default=None, help="FPGA part for the HLS project (default: the part of the experiment's "
                   "target recorded in a trial's model file, else the backend's)")
    g.add_argument("--clock-period", type=float, default=5.0, help="clock period in ns (default 5)")
    r = p.add_argument_group("RTL options")
    r.add_argument("--flavor", default="verilog", choices=("verilog", "vhdl"), help="HDL to emit (default verilog)")
    r.add_argument("--latency-cutoff", type=float, default=-1.0,
                   help="pipeline the RTL so each stage's delay stays under this cutoff (default: combinational)")
    r.add_argument("--rtl-optimize", default="full", choices=("full", "fast"),
                   help="full: alkaid shares sub-expressions of the constant multiplications (default; hours beyond "
                   "~20k MACs); fast: one shift-add tree per multiplication (seconds, more adders)")


def _is_experiment(path: str) -> bool:
    return Path(path).suffix.lower() in (".yaml", ".yml")


def _stage(args: argparse.Namespace) -> int:
    """``hwnas export|verify|synth experiment.yaml``: that stage of ``hwnas run`` on the experiment's folder."""
    from hwnas.cli_search import _pipeline

    return _pipeline(argparse.Namespace(experiment=args.model, command=args.command, force=args.force,
                                        quiet=args.quiet, stages=None))


def _export(args: argparse.Namespace) -> int:
    from hwnas.export import ExportError, ToolMissingError, load_model, paths

    if _is_experiment(args.model):
        return _stage(args)
    if args.to is None or args.out is None:
        return _error("export: --to and --out are needed for a model file")
    try:
        bundle = load_model(args.model, trust=args.trust)
    except ValueError as err:
        return _error(str(err))
    out = Path(args.out)
    try:
        path = paths.get(args.to)
        if path.export is None:
            return _error(f"export: {args.to!r} writes no artefact; --to is one of "
                          f"{', '.join(paths.names(exporters_only=True))}")
        options = _path_options(args).get(args.to, {})
        meta = getattr(bundle, "metadata", None)
        part = meta.get("part") if isinstance(meta, dict) else None
        if args.to == "hls4ml" and not args.part and isinstance(part, str) and part:
            options["part"] = part  # the experiment's target, recorded in a trial's model file
            print(f"part {part} (the target {meta.get('target', '?')} of the model's experiment; "
                  "--part overrides it)")
        # the path's export (hwnas.export.paths): qonnx writes one file for --out *.onnx, else a folder
        print(path.export(bundle.model, bundle.input_shape, out, replace=args.force, **options))
    except (ExportError, ToolMissingError) as err:
        return _error(str(err), err.exit_code)  # 1: a tool is missing; 2: the model or options are at fault
    return 0


def _verify(args: argparse.Namespace) -> int:
    from hwnas.export import ExportError, load_model
    from hwnas.export.verify import verify_model

    if _is_experiment(args.model):
        return _stage(args)
    try:
        bundle = load_model(args.model, trust=args.trust)
        if args.data:
            x = _load_inputs(args.data, bundle.input_shape)
            source = args.data
        elif bundle.test_inputs is not None and not args.random:
            x = bundle.test_inputs
            source = "the model file's test inputs"
        else:
            x = None
            source = f"{args.samples} seeded inputs over the input format (seed {args.seed})"
    except ValueError as err:
        return _error(str(err))
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]

    def progress(path: str) -> None:
        if not args.quiet:  # a status line (hwnas.cli_util.say: stdout, above a progress bar)
            from hwnas.cli_util import say

            say(f"verifying: {path} ...")

    try:
        report = verify_model(bundle.model, x, input_shape=bundle.input_shape, paths=paths, output_dir=args.out,
                              options=_path_options(args), samples=args.samples, seed=args.seed, progress=progress,
                              replace=args.force)
    except ExportError as err:
        return _error(str(err))
    print(f"model {args.model}: {report.samples} samples from {source}")
    print(report.table())
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=1) + "\n")
    if report.passed:
        print("PASS: every path that ran matches torch on every sample")
        return 0
    if not report.ran:
        print("FAIL: no export path could run (see the reasons above)")
        return 1
    first = report.failures[0]
    if first.error is not None:
        print(f"FAIL: {first.path} failed: {first.error}")
        return 1
    where = f", first differing layer {first.first_layer}" if first.first_layer else ""
    print(f"FAIL: {first.path} differs from torch on {first.mismatches}/{first.samples} samples; first differing "
          f"sample {first.first_mismatch}{where}")
    return 1


def _synth(args: argparse.Namespace) -> int:
    from hwnas.export import ExportError, ToolMissingError, load_model

    if _is_experiment(args.model):
        return _stage(args)
    if args.target is None or args.out is None:
        return _error("synth: --target and --out are needed for a model file")
    try:
        bundle = load_model(args.model, trust=args.trust)
    except ValueError as err:
        return _error(str(err))
    try:
        from hwnas.export.folders import check_folder, claim_folder
        from hwnas.export.rtl import export_rtl
        from hwnas.export.synth import synthesize

        out = Path(args.out)
        check_folder(out, replace=args.force)  # hwnas.export.folders: refused before anything is written
        project = export_rtl(bundle.model, bundle.input_shape, out / "rtl", **_path_options(args)["rtl"])
        claim_folder(out, replace=True)  # rtl/, synth/ (and synth.failed.log) are hwnas's
        result = synthesize(project, target=args.target, output_dir=out / "synth", progress=not args.quiet)
    except (ExportError, ToolMissingError, ValueError) as err:
        return _error(str(err), getattr(err, "exit_code", 2))  # 1: Yosys missing or failed
    print(result.table())
    # the cost model that matches alkaid's RTL: hls4ml-style distributed arithmetic (LUT ≈ EBOPs^0.985)
    from hwnas.cost import CostError, estimate

    try:
        est = estimate(bundle.model, args.target, input_shape=bundle.input_shape, kind="hls4ml",
                       strategy="distributed_arithmetic")
    except (CostError, ValueError) as err:
        print(f"(no cost-model comparison: {err})")
        return 0
    print("\nsynthesis vs the distributed-arithmetic cost model (LUT ≈ EBOPs^0.985):")
    print(result.compare_with(est).table())
    return 0


def add_export_commands(sub: Any) -> None:
    """Register ``export``, ``verify`` and ``synth`` on the ``hwnas`` sub-command parser.

    The path names (``--to`` choices, ``--paths`` default) come from the registry :mod:`hwnas.export.paths`.
    """
    from hwnas.export import paths

    exporters = paths.names(exporters_only=True)
    defaults = ",".join(paths.names(exporters_only=True, default_only=True))
    model_help = ("model file written by hwnas.export.save_model, or an experiment YAML: then this stage of "
                  "hwnas run on its output folder (the other options come from the experiment's run: section)")
    exp = sub.add_parser("export", help="export a saved model to QONNX, an hls4ml project or RTL (or an "
                         "experiment's selected models)",
                         usage=f"%(prog)s MODEL --to {{{','.join(exporters)}}} --out OUT [options]\n"
                               "       %(prog)s EXPERIMENT.yaml [--force] [--quiet]")
    exp.add_argument("model", help=model_help)
    need = exp.add_argument_group("required for a model file (an experiment takes them from its run: section)")
    need.add_argument("--to", choices=exporters, help="export path: " + "; ".join(
        f"{name}: {paths.get(name).summary}" for name in exporters).replace("%", "%%"))
    need.add_argument("--out", help="output folder (new, empty, or an earlier hwnas export with --force), or .onnx "
                      "file for --to qonnx")
    _add_path_options(exp)
    exp.set_defaults(func=_export)

    ver = sub.add_parser("verify", help="run every export path on test data and count mismatches against torch")
    ver.add_argument("model", help=model_help)
    ver.add_argument("--paths", default=defaults, help=f"comma-separated paths, of {', '.join(paths.names())} "
                     f"(default {defaults})")
    ver.add_argument("--data", help="test inputs: .npy, .npz (key x) or .pt (default: the model file's, else seeded)")
    ver.add_argument("--random", action="store_true", help="use seeded inputs even if the model file has test inputs")
    ver.add_argument("--samples", type=int, default=256, help="number of seeded inputs (default 256)")
    ver.add_argument("--seed", type=int, default=0, help="seed of the generated inputs (default 0)")
    ver.add_argument("--out", help="keep the exported artefacts in this folder: new, empty, or an earlier hwnas "
                     "one with --force (default: a temporary one)")
    ver.add_argument("--json", help="also write the results as JSON to this file")
    ver.add_argument("--quiet", action="store_true", help="no progress lines")
    _add_path_options(ver)
    ver.set_defaults(func=_verify)

    syn = sub.add_parser("synth", help="export RTL and synthesize it with Yosys (and nextpnr for ECP5)",
                         usage="%(prog)s MODEL --target TARGET --out OUT [options]\n"
                               "       %(prog)s EXPERIMENT.yaml [--force] [--quiet]")
    syn.add_argument("model", help=model_help)
    need = syn.add_argument_group("required for a model file (an experiment takes them from its run: section)")
    need.add_argument("--target", help="device from the catalog, e.g. ZCU104, XC7Z020, ECP5-85K")
    need.add_argument("--out", help="output folder, rtl/ and synth/ inside: new, empty, or an earlier hwnas one "
                      "with --force")
    syn.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_path_options(syn)
    syn.set_defaults(func=_synth)
    for p in (exp, ver, syn):
        p.add_argument("--force", action="store_true",
                       help="model file: replace an earlier hwnas export in --out (never files hwnas did not write); "
                       "experiment: run the stage again even if done")
        p.add_argument("--trust", action="store_true",
                       help="model file: also admit the torch.nn.Module subclasses the file names (imported from "
                       "installed packages; still weights-only, never a function): for a file you wrote yourself")
    exp.add_argument("--quiet", action="store_true", help="experiment: no progress bars")
