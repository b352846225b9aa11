"""The registry of export paths: each path (``qonnx``, ``hls4ml``, ``rtl``, the verify-only ``reference``) once.

Contract:

* An :class:`ExportPath` is a frozen record: its name, a one-line summary (``--help``, the docs), what it can
  express, whether it reads the fixed-point export graph, the function that writes its artefact (``None`` for a
  verify-only path), the artefact's name inside an export folder, the function that runs the artefact and
  compares it with torch, an optional check of the external tools it needs, and whether it is in the default
  path lists.
* :func:`register` adds a path (a second one of the same name is a ``ValueError`` unless ``replace=True``, which
  substitutes it in place); :func:`unregister` removes one; :func:`get` returns one (an unknown name is an
  :class:`~hwnas.export.errors.ExportError` naming it and the known ones); :func:`names` lists them in
  registration order. Every list of path names in hwnas reads this registry: ``hwnas export --to``,
  ``hwnas verify --paths``, the ``run.export`` / ``run.verify`` keys of an experiment,
  :func:`hwnas.export.verify.verify_model` and the export/verify stages of ``hwnas run``.
* The built-in paths are registered when this module is imported, in the order verification runs them:
  ``reference``, ``qonnx``, ``hls4ml``, ``rtl``, then ``finn`` (not in the default lists: it needs finn-plus,
  :mod:`hwnas.export.finn`). Their functions import the tool packages (onnx, qonnx, hls4ml,
  alkaid) only when called.

The two functions of a path:

* ``export(model, input_shape, out, *, replace=True, **options) -> str`` writes the artefact at ``out`` (the
  rule of :mod:`hwnas.export.folders`; ``replace`` as there) and returns one line saying what it wrote (the
  command line prints it). ``options`` are the path's settings (``run.hls4ml`` / ``run.rtl`` or the command
  line's options; none for other paths). It raises :class:`~hwnas.export.errors.ExportError` for a model it
  cannot express, :class:`~hwnas.export.errors.ToolMissingError` when a tool is absent.
* ``verify(model, x, graph, ref, lsb, workdir, options) -> PathResult`` exports ``model`` under ``workdir`` (its
  artefact named as :attr:`ExportPath.artefact`), runs it on the inputs ``x`` and compares with ``ref`` (torch's
  outputs as float64) through :func:`hwnas.export.result.compare`. ``graph`` is the fixed-point export graph,
  or the text saying why the model has none (then a path with ``needs_graph`` is skipped without being
  called); ``lsb`` is the output's least significant bit (None when unknown). Errors are turned into skipped
  or failed results by :func:`~hwnas.export.verify.verify_model`.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ExportError
from .result import PathResult, compare

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from .graph import ExportGraph

__all__ = ["REFERENCE", "ExportFunction", "ExportPath", "VerifyFunction", "get", "names", "register", "unregister"]

ExportFunction = Callable[..., str]
"""``export(model, input_shape, out, *, replace=True, **options) -> str`` (module docstring)."""

VerifyFunction = Callable[..., PathResult]
"""``verify(model, x, graph, ref, lsb, workdir, options) -> PathResult`` (module docstring)."""

REFERENCE = "reference"
"""The path :func:`~hwnas.export.verify.verify_model` always runs first: the export graph itself against torch."""

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True, kw_only=True)
class ExportPath:
    """One export path, registered once with :func:`register`."""

    name: str
    """What users write: ``hwnas export --to NAME``, ``hwnas verify --paths NAME``, ``run.export: [NAME]``
    (lower case letters, digits and ``_``)."""
    summary: str
    """One line: the artefact and how it is checked (``--help``, the docs)."""
    expresses: str
    """One line: which models it can express (the rest are skipped as "not expressible")."""
    needs_graph: bool
    """Whether it reads the fixed-point export graph (:func:`hwnas.export.graph.extract`); a model without one
    (e.g. scaled-integer quantizers) is then skipped without calling :attr:`verify`."""
    verify: VerifyFunction
    """Runs the artefact on test inputs and compares with torch (module docstring)."""
    export: ExportFunction | None = None
    """Writes the artefact (module docstring); None for a verify-only path such as ``reference``."""
    artefact: str | None = None
    """The artefact's file or folder name inside an export folder (``export/trial_<n>/``, ``hwnas verify
    --out``); required with :attr:`export`."""
    tool_check: Callable[[], str | None] | None = None
    """None when the external tools the path needs are present, else why not (one line); None: needs none."""
    default: bool = False
    """In the default path lists (``run.export``, ``run.verify``, ``hwnas verify --paths``)."""
    arithmetic: str = "exact"
    """``exact``: the artefact computes the exact fixed-point result (integer arithmetic: the reference, hls4ml,
    RTL); ``float32``: it executes in float32 like torch (the QONNX executor). Where torch's float32 forward
    rounds (:func:`hwnas.export.graph.float32_exact`), an exact path is compared with torch run in float64."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"export path name {self.name!r}: use lower case letters, digits and _ "
                             "(starting with a letter)")
        for key in ("summary", "expresses"):
            text = getattr(self, key)
            if not isinstance(text, str) or not text.strip() or "\n" in text:
                raise ValueError(f"export path {self.name!r}: {key} must be one non-empty line")
        if not callable(self.verify):
            raise TypeError(f"export path {self.name!r}: verify must be callable")
        if self.export is not None and not callable(self.export):
            raise TypeError(f"export path {self.name!r}: export must be callable or None")
        if self.arithmetic not in ("exact", "float32"):
            raise ValueError(f"export path {self.name!r}: arithmetic must be 'exact' or 'float32', "
                             f"got {self.arithmetic!r}")
        if self.tool_check is not None and not callable(self.tool_check):
            raise TypeError(f"export path {self.name!r}: tool_check must be callable or None")
        if self.export is not None and (not self.artefact or "/" in self.artefact or self.artefact in (".", "..")):
            raise ValueError(f"export path {self.name!r}: an exporter needs an artefact name (one file or folder "
                             f"name), got {self.artefact!r}")

    def tools_missing(self) -> str | None:
        """:attr:`tool_check`'s answer (None when the path needs no external tool)."""
        return self.tool_check() if self.tool_check is not None else None


_REGISTRY: dict[str, ExportPath] = {}


def register(path: ExportPath, *, replace: bool = False) -> None:
    """Add ``path``; a name already registered is a ``ValueError`` unless ``replace`` (then it takes its place)."""
    if not isinstance(path, ExportPath):
        raise TypeError(f"register: expected an ExportPath, got {type(path).__name__}")
    if path.name in _REGISTRY and not replace:
        raise ValueError(f"export path {path.name!r} is already registered; each path is registered once "
                         "(replace=True substitutes it)")
    _REGISTRY[path.name] = path  # a replaced path keeps its place in the order


def unregister(name: str) -> ExportPath:
    """Remove the path ``name`` and return it (unknown: :class:`ExportError`, as :func:`get`)."""
    path = get(name)
    del _REGISTRY[name]
    return path


def get(name: str) -> ExportPath:
    """The path registered as ``name``; an unknown one is an :class:`ExportError` naming it and the known ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ExportError(f"unknown export path {name!r}; known paths: {', '.join(_REGISTRY)}") from None


def names(*, exporters_only: bool = False, default_only: bool = False) -> tuple[str, ...]:
    """Registered path names in registration order.

    ``exporters_only``: those that write an artefact; ``default_only``: those in the default lists
    (:attr:`ExportPath.default`).
    """
    return tuple(n for n, p in _REGISTRY.items()
                 if (p.export is not None or not exporters_only) and (p.default or not default_only))


# ------------------------------------------------------------------------------------------- built-in paths
def _packages_missing(*packages: str) -> str | None:
    """Why the Python ``packages`` cannot be imported (found without importing them), or None."""
    for name in packages:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"the Python package {name!r} is not installed (pip install 'hwnas[export]')"
    return None


def _verify_reference(model: nn.Module, x: torch.Tensor, graph: ExportGraph, ref: np.ndarray, lsb: Any,
                      workdir: Path, options: dict[str, Any]) -> PathResult:
    from .graph import run_reference

    t0 = time.perf_counter()
    got = run_reference(graph, x)
    return compare(REFERENCE, ref, got, lsb=lsb, seconds=time.perf_counter() - t0)


def _export_qonnx(model: nn.Module, input_shape: tuple[int, ...], out: str | Path, *, replace: bool = True,
                  **options: Any) -> str:
    from .folders import check_folder, claim_folder, write_file
    from .qonnx import export_qonnx

    out = Path(out)
    if out.suffix == ".onnx":  # one file: an existing one is overwritten only with replace
        target = out
        export_qonnx(model, tuple(input_shape), target, replace=replace, **options)
    else:  # a folder (hwnas.export.folders): checked first, claimed only once the export worked
        check_folder(out, replace=replace)
        proto = export_qonnx(model, tuple(input_shape), **options)
        target = claim_folder(out, replace=replace) / "model.qonnx.onnx"
        write_file(target, proto.SerializeToString())
    return f"QONNX model written to {target}"


def _verify_qonnx(model: nn.Module, x: torch.Tensor, graph: ExportGraph | str, ref: np.ndarray, lsb: Any,
                  workdir: Path, options: dict[str, Any]) -> PathResult:
    from .graph import ExportGraph
    from .qonnx import execute_qonnx, export_qonnx

    t0 = time.perf_counter()
    path = workdir / "model.qonnx.onnx"
    proto = export_qonnx(model, tuple(x.shape[1:]), path, graph=graph if isinstance(graph, ExportGraph) else None)
    got = execute_qonnx(proto, x.detach().numpy())
    return compare("qonnx", ref, got, lsb=lsb, seconds=time.perf_counter() - t0, artefact=str(path))


def _qonnx_tools() -> str | None:
    return _packages_missing("onnx", "qonnx")


def _export_hls4ml(model: nn.Module, input_shape: tuple[int, ...], out: str | Path, *, replace: bool = True,
                   **options: Any) -> str:
    from .hls4ml import export_hls4ml

    project = export_hls4ml(model, tuple(input_shape), out, replace=replace, **options)
    return f"hls4ml project written to {project.path}"


def _verify_hls4ml(model: nn.Module, x: torch.Tensor, graph: ExportGraph, ref: np.ndarray, lsb: Any,
                   workdir: Path, options: dict[str, Any]) -> PathResult:
    from .hls4ml import verify_hls4ml

    return verify_hls4ml(model, x, output_dir=workdir / "hls4ml", reference=ref, **options)


def _hls4ml_tools() -> str | None:
    if shutil.which("g++") is None:  # what verify_hls4ml checks before it runs
        return "g++ is not on PATH: hls4ml's C emulation (compile/predict) needs a C++ compiler"
    return _packages_missing("hls4ml")


def _export_rtl(model: nn.Module, input_shape: tuple[int, ...], out: str | Path, *, replace: bool = True,
                **options: Any) -> str:
    from .rtl import export_rtl

    project = export_rtl(model, tuple(input_shape), out, replace=replace, **options)
    return f"RTL project written to {project.path} (top module {project.top})"


def _verify_rtl(model: nn.Module, x: torch.Tensor, graph: ExportGraph, ref: np.ndarray, lsb: Any,
                workdir: Path, options: dict[str, Any]) -> PathResult:
    from .rtl import verify_rtl

    return verify_rtl(model, x, output_dir=workdir / "rtl", reference=ref, **options)


def _rtl_tools() -> str | None:
    from .tools import rtl_tools_missing

    return rtl_tools_missing("verilog")


def _export_finn(model: nn.Module, input_shape: tuple[int, ...], out: str | Path, *, replace: bool = True,
                 **options: Any) -> str:
    from .finn import export_finn

    return export_finn(model, tuple(input_shape), out, replace=replace, **options)


def _verify_finn(model: nn.Module, x: torch.Tensor, graph: ExportGraph, ref: np.ndarray, lsb: Any,
                 workdir: Path, options: dict[str, Any]) -> PathResult:
    from .finn import verify_finn

    return verify_finn(model, x, graph, ref, lsb, workdir, options)


def _finn_tools() -> str | None:
    from .finn import finn_missing

    return finn_missing()


register(ExportPath(
    name=REFERENCE, summary="the float64 executor of the export graph (no artefact): checks the graph every "
    "fixed-point exporter reads against torch", expresses="every model the export graph reads (fixed-point "
    "quantizers only)", needs_graph=True, verify=_verify_reference, default=True))
register(ExportPath(
    name="qonnx", summary="ONNX with QONNX Quant nodes (what FINN ingests), executed with qonnx",
    expresses="per-tensor/per-channel fixed point, scaled integers and float16 (one width per tensor or channel), "
    "chains and DAGs (residual adds, concatenations, global pooling)",
    needs_graph=False, export=_export_qonnx, artefact="model.qonnx.onnx", verify=_verify_qonnx,
    tool_check=_qonnx_tools, default=True, arithmetic="float32"))
register(ExportPath(
    name="hls4ml", summary="hls4ml project (Vitis/Vivado, io_parallel), checked by its g++ C emulation",
    expresses="every fixed-point quantizer, per-parameter widths, tables", needs_graph=True,
    export=_export_hls4ml, artefact="hls4ml", verify=_verify_hls4ml, tool_check=_hls4ml_tools, default=True))
register(ExportPath(
    name="rtl", summary="Verilog/VHDL from alkaid, simulated with Verilator",
    expresses="every fixed-point quantizer alkaid can express, per-parameter widths, tables", needs_graph=True,
    export=_export_rtl, artefact="rtl", verify=_verify_rtl, tool_check=_rtl_tools, default=True))
register(ExportPath(
    name="finn", summary="FINN folder (QONNX with hwnas thresholds, folding_config.json, build_dataflow config), "
    "checked by FINN's front end and Python execution of its HW layers", expresses="chains of Dense/Conv/ReLU/"
    "pooling/Flatten with per-tensor or per-channel fixed point, 1 to 16-bit saturating activations, bipolar",
    needs_graph=True, export=_export_finn, artefact="finn", verify=_verify_finn, tool_check=_finn_tools,
    arithmetic="float32"))
