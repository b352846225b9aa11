"""Export a quantized hwnas model to an hls4ml project whose C emulation is bit-exact to torch.

Contract:

* :func:`export_hls4ml` reads the model once through :func:`hwnas.export.graph.extract` (the one place
  precisions come from), lowers the graph (:mod:`hwnas.export.hls4ml_lower`) to hls4ml layers with every
  type derived from the quantizer formats and the real weights — weight/bias types holding every weight
  exactly, accumulators and unquantized results wide enough for every reachable value, a uniform quantizer
  as the producing layer's ``result_t`` (``ap_fixed<W,I,round,overflow>``), a heterogeneous one (per
  channel or per element) as an hls4ml ``FixedPointQuantizer`` layer casting each element to its own
  ``ap_fixed`` — and builds the ``ModelGraph`` with ``ModelGraph.from_layer_list`` (hls4ml's own passes
  then only write code; its bit-exact type inference is not used, every type is set explicitly). tanh and
  sigmoid become an explicit lookup table (``UnaryLUT``) over every code of their input type, filled from
  :meth:`hwnas.export.graph.Table.apply` (and the output quantizer), so they are exact. Layout is channels
  last: conv weights, per-element formats and the rows of a Dense after ``Flatten`` are permuted. A dilated
  convolution (hls4ml has none) becomes the equal undilated one with zeros between the kernel taps
  (:func:`hwnas.export.hls4ml_lower.undilate`; exact, same types; HLS folds the zero products away in the
  Latency strategy, the Resource strategy stores and multiplies them). ``QSoftmax``/``QLayerNorm`` (graph
  nodes ``Softmax``/``LayerNorm``) become hls4ml's ``Softmax`` (``stable``) and ``LayerNormalization`` with
  every intermediate type, table size and constant of the node written explicitly (the types hls4ml reads
  as attributes, ``exp_table_t`` ..., with their rounding/overflow modes); the build is checked to keep them
  (sizes, ``exp_scale``, and the ``mult`` product for LayerNorm, which hls4ml picks from the types).
* Graphs (residual connections, concatenations, global pooling) are lowered tensor by tensor: each hls4ml
  layer names the layers producing its inputs; ``Add`` becomes a ``Merge`` (``op: add``) typed for the exact
  sum, ``Concat`` a ``Concatenate`` (channels: the last hls4ml axis) typed as the union of its operands,
  ``GlobalPool`` a ``GlobalAverage/MaxPooling1D/2D`` with an exact accumulator; a quantizer becomes its
  producer's ``result_t`` only when it is that tensor's only reader (a tensor read by two branches keeps its
  exact value).
* The project is written to a temporary folder and moved into ``output_dir`` only when complete, under the
  rule of :mod:`hwnas.export.folders`: a new or empty folder, or an earlier hwnas export (replaced only with
  ``replace=True``, the default); a folder holding files hwnas did not write is refused. It is hls4ml's
  project (``build_prj.tcl``, firmware, test bench) plus ``README.md`` (how to synthesize, part, clock,
  strategy, reuse factors, precision table), ``hwnas_precisions.csv`` and the manifest ``.hwnas-export.json``.
* :class:`Hls4mlProject` compiles the C emulation with g++ (``compile``), runs it (``predict``: torch-layout
  float input, quantized in Python with the graph's input format first, transposed to channels last and fed
  as float64; torch-layout float64 output), traces it per layer (``trace``) and compares with torch
  (``check``). :func:`verify_hls4ml` does export + compile + predict + compare and returns a
  :class:`~hwnas.export.result.PathResult` (``path="hls4ml"``; skipped with the reason when g++ or hls4ml
  is missing; on a mismatch ``first_layer`` is the first layer whose traced output differs from the exact
  float64 reference :func:`~hwnas.export.graph.run_reference`).
* Refused with :class:`~hwnas.export.errors.ExportError` naming the layer (or the option): everything
  :func:`~hwnas.export.graph.extract` refuses, grouped (non-depthwise) convolutions, depthwise
  with a channel multiplier or with the Resource strategy, a Dense on a rank > 1 tensor, tables over more
  than 16-bit inputs, an ``Add`` of a flattened (channels-last order) tensor and one in torch order, a
  ``LayerNorm`` over rows strided in the channels-last layout, a softmax/LayerNorm row reordered by a flatten
  with a saturating ``accum_t``, reuse
  factors that do not divide a layer's multiplications or that hls4ml's Resource kernels reject, reuse
  factors/strategies for layers that have no multiplications or do not exist, unknown backends, strategies
  and IO types (only ``io_parallel``: heterogeneous quantizers need it).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import os
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import ExportError, ToolMissingError
from .folders import Staging, recording
from .graph import Conv, Dense, ExportGraph, Quantize, extract, float32_exact, run_reference
from .hls4ml_lower import ApType, HlsLayer, Lowered, lower
from .result import PathResult, compare, output_lsb, skipped

__all__ = ["BACKENDS", "STRATEGIES", "Hls4mlProject", "LayerPrecision", "export_hls4ml", "verify_hls4ml"]

BACKENDS = ("Vitis", "Vivado")
STRATEGIES = ("Latency", "Resource")
_DEFAULT_PART = "xcvu13p-flga2577-2-e"
_PATH = "hls4ml"


@dataclass(frozen=True)
class LayerPrecision:
    """One row of the precision table: the C++ types of one hls4ml layer."""

    layer: str
    """The hwnas layer (``"input"`` for the model input)."""
    hls_layer: str
    kind: str
    result: str
    weight: str = ""
    bias: str = ""
    accum: str = ""
    table: str = ""
    reuse_factor: int = 1
    strategy: str = ""
    note: str = ""


def _precision_rows(lowered: Lowered) -> list[LayerPrecision]:
    def t(layer: HlsLayer, key: str) -> str:
        ap = layer.types.get(key)
        return ap.cpp() if ap is not None else ""

    rows = []
    for layer in lowered.layers:
        mac = layer.kind.startswith(("dense", "conv", "depthwise"))
        rows.append(LayerPrecision(layer.source, layer.name, layer.kind, layer.result.cpp(),
                                   t(layer, "weight") or t(layer, "scale"),
                                   t(layer, "bias"), t(layer, "accum"), t(layer, "table"), layer.reuse_factor,
                                   layer.strategy if mac else "", layer.note))
    return rows


def _markdown(rows: list[LayerPrecision]) -> str:
    head = ["layer", "hls4ml layer", "kind", "weight_t", "bias_t", "accum_t", "table_t", "result_t", "RF", "strategy"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.layer, r.hls_layer, r.kind, r.weight, r.bias, r.accum, r.table, r.result,
                 str(r.reuse_factor) if r.strategy else "", r.strategy]
        lines.append("| " + " | ".join(f"`{c}`" if "fixed" in c else c for c in cells) + " |")
    return "\n".join(lines)


@dataclass(eq=False)
class Hls4mlProject:
    """A written hls4ml project of a hwnas model (see the module docstring)."""

    path: Path
    model: Any
    """The hls4ml ``ModelGraph``."""
    graph: ExportGraph
    lowered: Lowered
    backend: str
    strategy: dict[str, str]
    """Strategy per Dense/Conv layer (hwnas layer name)."""
    reuse_factor: dict[str, int]
    """Reuse factor per Dense/Conv layer (hwnas layer name)."""
    part: str
    clock_period: float
    project_name: str
    io_type: str = "io_parallel"
    compiled: bool = False
    log: list[str] = field(default_factory=list)
    """What hls4ml printed while converting, writing and compiling."""

    @property
    def precisions(self) -> list[LayerPrecision]:
        """Per hls4ml layer: the weight, bias, accumulator, table and result types (for reports)."""
        return _precision_rows(self.lowered)

    def precision_table(self) -> str:
        """The precision table as Markdown."""
        return _markdown(self.precisions)

    def compile(self) -> None:
        """Build the C emulation library with g++ (hls4ml's ``build_lib.sh``) and load it.

        Raises :class:`ToolMissingError` when g++ is not on PATH and ``RuntimeError`` (with g++'s output) when
        the build fails.
        """
        if shutil.which("g++") is None:
            raise ToolMissingError("g++ is not on PATH: hls4ml's C emulation needs a C++ compiler")
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf), warnings.catch_warnings(), recording(self.path):
                warnings.simplefilter("ignore")
                self.model._compile()
        except Exception as err:
            raise RuntimeError(f"hls4ml: compiling {self.path} failed:\n{buf.getvalue()[-4000:]}") from err
        finally:
            self.log.append(buf.getvalue())
        self.compiled = True

    def _inputs(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        a = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
        if a.shape[1:] != self.graph.input_shape:
            raise ValueError(f"input: expected samples of shape {self.graph.input_shape}, got {a.shape[1:]}")
        if not np.all(np.isfinite(a)):
            raise ValueError("input: contains NaN or infinity")
        q = self.graph.input_format.quantize(a)
        return np.ascontiguousarray(q.reshape(len(a), -1)[:, self.lowered.input_perm])

    def _to_torch(self, y: np.ndarray, perm: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        flat = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        out = np.empty_like(flat)
        out[:, perm] = flat
        return out.reshape((len(y), *shape))

    def predict(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Run the C emulation on a batch in torch layout ``(N, *input_shape)``; returns ``(N, *output_shape)``.

        The input is quantized with the graph's input format in Python first (so it is exact whatever the
        input type's modes), transposed to channels last and passed as float64; compiles first if needed.
        """
        xh = self._inputs(x)
        if len(xh) == 0:
            return np.zeros((0, *self.graph.output_shape))
        if not self.compiled:
            self.compile()
        with contextlib.redirect_stdout(io.StringIO()):
            y = self.model.predict(xh)
        y = np.asarray(y, dtype=np.float64).reshape(len(xh), -1)
        return self._to_torch(y, self.lowered.output_perm, self.graph.output_shape)

    def trace(self, x: np.ndarray | torch.Tensor) -> list[tuple[HlsLayer, np.ndarray]]:
        """Every traced hls4ml layer's output on ``x``, in torch layout, in layer order.

        Recompiles the emulation with hls4ml's tracing (a second g++ build).
        """
        xh = self._inputs(x)
        if shutil.which("g++") is None:
            raise ToolMissingError("g++ is not on PATH: hls4ml's C emulation needs a C++ compiler")
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), warnings.catch_warnings(), recording(self.path):
            warnings.simplefilter("ignore")
            _, traces = self.model.trace(xh)
        self.log.append(buf.getvalue())
        self.compiled = True
        out = []
        for layer in self.lowered.layers:
            if layer.name not in traces or layer.node_index < 0:
                continue
            shape = self.graph.shapes[layer.node_index]
            data = np.asarray(traces[layer.name], dtype=np.float64).reshape(len(xh), -1)
            out.append((layer, self._to_torch(data, layer.perm, shape)))
        return out

    def first_differing_layer(self, x: np.ndarray | torch.Tensor) -> str | None:
        """The first hwnas layer whose traced hls4ml output differs from the exact reference on ``x``."""
        xr = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
        steps = run_reference(self.graph, xr, trace=True)
        for layer, got in self.trace(xr):
            ref = steps[layer.node_index][1]
            if not np.array_equal(ref.reshape(len(xr), -1), got.reshape(len(xr), -1)):
                return layer.source
        return None

    def check(self, x: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor, *,
              seconds: float = 0.0) -> PathResult:
        """Predict ``x`` and compare with ``reference`` (torch's outputs) sample by sample.

        On a mismatch, ``first_layer`` names the first layer whose traced output differs from the exact
        reference (or, when the emulation matches the reference, the layer where torch's float32 is not
        exact).
        """
        t0 = time.perf_counter()
        ref = reference.detach().cpu().double().numpy() if isinstance(reference, torch.Tensor) else np.asarray(
            reference, dtype=np.float64)
        got = self.predict(x)
        last = self.graph.nodes[-1]
        lsb = output_lsb(ref, last.fmt.f) if isinstance(last, Quantize) else None
        result = compare(_PATH, ref, got, lsb=lsb, artefact=str(self.path))
        first = None
        if result.mismatches:
            bad = np.flatnonzero(np.any((got != ref.reshape(got.shape)).reshape(len(got), -1), axis=1))[:16]
            xs = x[torch.as_tensor(bad)] if isinstance(x, torch.Tensor) else np.asarray(x)[bad]
            first = self.first_differing_layer(xs)
            if first is None:
                inexact = float32_exact(self.graph, xs)
                first = f"{inexact[0][0]} (torch float32 is not exact there)" if inexact else None
        return compare(_PATH, ref, got, lsb=lsb, first_layer=first, artefact=str(self.path),
                       seconds=seconds + time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------- options
def _choice(value: str, options: tuple[str, ...], what: str) -> str:
    for opt in options:
        if isinstance(value, str) and value.lower() == opt.lower():
            return opt
    raise ExportError(f"{what}: unknown {what} {value!r}; expected one of {', '.join(options)}")


def _per_layer(value: Any, mac: list[str], what: str, default: Any, check: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        unknown = [k for k in value if k not in mac]
        if unknown:
            raise ExportError(f"{what}: {unknown[0]!r} is not a Dense/Conv layer of the model (the setting applies "
                              f"to layers with multiplications: {', '.join(mac) or 'none'})")
        return {name: check(value.get(name, default), f"{what}[{name!r}]") for name in mac}
    v = check(value, what)
    return dict.fromkeys(mac, v)


def _check_rf(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ExportError(f"{what}: the reuse factor must be an integer >= 1, got {value!r}")
    return int(value)


def _check_strategy(value: Any, what: str) -> str:
    return _choice(value, STRATEGIES, "strategy") if isinstance(value, str) else _choice(str(value), STRATEGIES,
                                                                                          what)


def _hls_layers(lowered: Lowered, fixed_type: Any) -> list[dict[str, Any]]:
    layers = lowered.layer_list()
    for attrs, layer in zip(layers, lowered.layers, strict=True):
        if layer.kind == "table":
            t = layer.types["table"]
            attrs["table_t"] = fixed_type(t.width, t.integer, t.signed)
        for key in layer.attr_types:  # Softmax/LayerNormalization types hls4ml reads as attributes, with modes
            t = layer.types[key]
            attrs[f"{key}_t"] = fixed_type(t.width, t.integer, t.signed, t.round_mode, t.overflow_mode)
    return layers


def _same(got: Any, want: ApType) -> bool:
    fields = (getattr(got, "width", None), getattr(got, "integer", None), bool(getattr(got, "signed", False)),
              str(getattr(got, "rounding_mode", "")), str(getattr(got, "saturation_mode", "")))
    return fields == (want.width, want.integer, want.signed, want.round_mode, want.overflow_mode)


def _check_built(model: Any, lowered: Lowered) -> None:
    """hls4ml must have kept every type and reuse factor (it silently changes invalid reuse factors)."""
    graph = model.graph
    for layer in lowered.layers:
        node = graph.get(layer.name)
        if node is None:  # removed by hls4ml (a final Reshape): nothing to check
            continue
        if layer.kind.startswith(("dense", "conv", "depthwise")):
            rf = node.get_attr("reuse_factor")
            if rf != layer.reuse_factor:
                raise ExportError(f"{layer.source}: hls4ml changed the reuse factor {layer.reuse_factor} to {rf}")
        found = {"result": node.get_output_variable().type.precision}
        for key in layer.types:
            if key == "result":
                continue
            var = node.weights.get(key)
            if var is not None:
                found[key] = var.type.precision
            elif node.get_attr(f"{key}_t") is not None:
                found[key] = node.get_attr(f"{key}_t").precision
            elif key in layer.attr_types:
                raise ExportError(f"{layer.source}: hls4ml layer {layer.name} has no {key}_t (internal: the export "
                                  "would not be exact)")
        for key, got in found.items():
            want = layer.result if key == "result" else layer.types[key]
            if not _same(got, want):
                raise ExportError(f"{layer.source}: hls4ml layer {layer.name} has {key}_t {got}, expected "
                                  f"{want.cpp()} (internal: the export would not be exact)")
        if layer.kind in ("softmax", "layernorm"):
            _check_normalization(model, node, layer)


def _check_normalization(model: Any, node: Any, layer: HlsLayer) -> None:
    """hls4ml must run a Softmax/LayerNormalization as lowered: no pass may change its sizes or products."""
    attrs = layer.attrs
    keys = (("implementation", "n_in", "n_outer", "n_inner", "exp_table_size", "inv_table_size", "skip")
            if layer.kind == "softmax" else ("n_in", "seq_len", "table_size", "table_range_power2",
                                             "epsilon_power_of_10"))
    for key in keys:
        got = node.get_attr(key)
        if got != attrs[key] and str(got) != str(attrs[key]):
            raise ExportError(f"{layer.source}: hls4ml changed {key} of {layer.name} from {attrs[key]!r} to {got!r} "
                              "(the export would not be exact)")
    if layer.kind == "softmax" and node.get_attr("exp_scale") != attrs["exp_scale"]:
        raise ExportError(f"{layer.source}: hls4ml changed exp_scale of {layer.name} (the export would not be exact)")
    if layer.kind == "layernorm":
        product = model.config.backend.product_type(node.get_input_variable().type.precision,
                                                    node.get_weights("scale").type.precision)
        if product != "mult":
            raise ExportError(f"{layer.source}: hls4ml would compute {layer.name}'s products with its {product!r} "
                              "kernel (it picks it from the input and scale types, and uses it for the mean and "
                              "variance too), which is not exact here; a wider scale type is needed")


def _readme(project: str, backend: str, part: str, clock: float, rows: list[LayerPrecision],
            graph: ExportGraph, lowered: Lowered) -> str:
    strategies = sorted({r.strategy for r in rows if r.strategy}) or ["Latency"]
    rfs = ", ".join(f"{r.layer}: {r.reuse_factor}" for r in rows if r.strategy) or "none (no Dense/Conv layer)"
    tool = ("vitis_hls -f build_prj.tcl   # Vitis HLS <= 2023.2; Vitis 2024.1+: vitis-run --mode hls --tcl "
            "build_prj.tcl (options in build_opt.tcl)") if backend == "Vitis" else (
        'vivado_hls -f build_prj.tcl "csim=1 synth=1 cosim=0 export=0"')
    first = lowered.layers[0].result.cpp()
    last = lowered.output.result.cpp()
    return f"""# {project} — hls4ml project exported by hwnas

Backend {backend}, part `{part}`, clock period {clock:g} ns, io_parallel, strategy {'/'.join(strategies)},
reuse factors: {rfs}.

## Synthesize

```sh
cd <this folder>
{tool}
```

or from Python: `project.model.build(csim=True, synth=True)` (hls4ml's `ModelGraph.build`, which also
parses the report). The C simulation (`csim`) runs `{project}_test.cpp` on `tb_data/` when files are there.

## Interface

`{project}(input_t x[{int(np.prod(lowered.input_hls_shape))}], result_t y[{int(np.prod(lowered.output_hls_shape))}])`:
input shape {tuple(graph.input_shape)} in torch layout, fed channels last (hls4ml order
{tuple(lowered.input_hls_shape)}), `input_t = {first}`; output shape {tuple(graph.output_shape)}
(hls4ml order {tuple(lowered.output_hls_shape)}), `result_t = {last}`. Heterogeneous input formats are applied
by the first `FixedPointQuantizer` layer, so the input port only needs values of `input_t`.

## Bit-exactness

Every type below was derived by hwnas from the model's quantizers and weights: the C emulation
(`hls4ml` `compile()` + `predict()`) reproduces the torch model bit for bit (checked by
`hwnas.export.verify_hls4ml`). Changing a type (or enabling hls4ml's own type inference) breaks that.

{_markdown(rows)}
"""


def _write_csv(path: Path, rows: list[LayerPrecision]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        fields = list(LayerPrecision.__dataclass_fields__)
        w.writerow(fields)
        for r in rows:
            w.writerow([getattr(r, k) for k in fields])


def export_hls4ml(model: nn.Module | ExportGraph, input_shape: tuple[int, ...], output_dir: str | os.PathLike[str],
                  *, backend: str = "Vitis", strategy: str | dict[str, str] = "Latency",
                  reuse_factor: int | dict[str, int] = 1, part: str | None = None, clock_period: float = 5.0,
                  project_name: str = "hwnas_model", io_type: str = "io_parallel",
                  replace: bool = True) -> Hls4mlProject:
    """Write the hls4ml project of ``model`` (per-sample ``input_shape``) to ``output_dir`` (module docstring).

    Args:
        model: a model of hwnas layers — an ``nn.Sequential`` chain or a ``forward`` with residual adds,
            concatenations and global pooling (:func:`~hwnas.export.graph.extract`) — or an already extracted
            :class:`ExportGraph`.
        input_shape: per-sample input shape in torch layout, e.g. ``(2, 128)``.
        output_dir: the project folder: new, empty or an earlier hwnas export (:mod:`hwnas.export.folders`;
            a folder holding other files raises :class:`~hwnas.export.folders.FolderError`).
        backend: ``"Vitis"`` or ``"Vivado"``.
        strategy: ``"Latency"`` or ``"Resource"`` for every Dense/Conv layer, or a dict layer name → strategy
            (layers not named use Latency).
        reuse_factor: for every Dense/Conv layer, or a dict layer name → reuse factor (others use 1); it must
            divide the layer's multiplications (and satisfy hls4ml's Resource kernels).
        part: the FPGA part (hls4ml's default ``xcvu13p-flga2577-2-e`` when None).
        clock_period: target clock period in ns.
        project_name: the top function's name (a C++ identifier).
        io_type: ``"io_parallel"`` (the only one heterogeneous quantizers support).
        replace: replace an earlier hwnas export in ``output_dir`` (only once the new project is complete);
            False refuses it (the command line without ``--force``).

    Returns:
        The :class:`Hls4mlProject` (not yet compiled).
    """
    backend = _choice(backend, BACKENDS, "backend")
    if io_type != "io_parallel":
        raise ExportError(f"io_type: {io_type!r} is not supported; only 'io_parallel' (hls4ml's per-element "
                          "FixedPointQuantizer layers, which carry heterogeneous bit-widths, need it)")
    if not re.fullmatch(r"[A-Za-z_]\w*", project_name or ""):
        raise ExportError(f"project_name: {project_name!r} is not a C++ identifier")
    if not (isinstance(clock_period, int | float) and clock_period > 0):
        raise ExportError(f"clock_period: must be a positive number of ns, got {clock_period!r}")
    graph = model if isinstance(model, ExportGraph) else extract(model, tuple(input_shape))
    mac = [name for name in graph.layers() if any(isinstance(n, Dense | Conv) and n.name == name for n in graph.nodes)]
    strategies = _per_layer(strategy, mac, "strategy", "Latency", _check_strategy)
    reuse = _per_layer(reuse_factor, mac, "reuse_factor", 1, _check_rf)
    lowered = lower(graph, reuse, strategies)
    try:
        import hls4ml
        from hls4ml.model import ModelGraph
        from hls4ml.model.types import FixedPrecisionType
    except ImportError as err:  # pragma: no cover - hls4ml is a test dependency
        raise ToolMissingError("hls4ml is not installed (pip install 'hwnas[export]')") from err
    part = part or _DEFAULT_PART
    stage = Staging(output_dir, replace=replace)  # refuses a foreign folder before anything is written
    tmp, final = stage.path, stage.final
    log = io.StringIO()
    try:
        config = hls4ml.utils.config.create_config(output_dir=str(tmp), project_name=project_name, backend=backend,
                                                    part=part, clock_period=clock_period, io_type=io_type)
        config["HLSConfig"] = {
            "Model": {"Precision": "ap_fixed<16,6>", "ReuseFactor": 1, "Strategy": "Latency", "BitExact": False},
            "LayerName": lowered.layer_config(),
        }
        with contextlib.redirect_stdout(log), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hls_model = ModelGraph.from_layer_list(config, _hls_layers(lowered, FixedPrecisionType),
                                                   outputs=[lowered.output.name])
            _check_built(hls_model, lowered)
            hls_model.write()
        rows = _precision_rows(lowered)
        (tmp / "README.md").write_text(_readme(project_name, backend, part, clock_period, rows, graph, lowered))
        _write_csv(tmp / "hwnas_precisions.csv", rows)
        yml = tmp / "hls4ml_config.yml"
        if yml.exists():
            yml.write_text(yml.read_text().replace(str(tmp), str(final)))
        stage.publish()
    except BaseException:
        stage.discard()
        raise
    hls_model.config.config["OutputDir"] = str(final)
    return Hls4mlProject(final, hls_model, graph, lowered, backend, strategies, reuse, part, float(clock_period),
                         project_name, io_type, log=[log.getvalue()])


def verify_hls4ml(model: nn.Module, x: torch.Tensor | np.ndarray, output_dir: str | os.PathLike[str] | None = None,
                  *, reference: np.ndarray | None = None, **export_kwargs: Any) -> PathResult:
    """Export ``model``, compile and run its C emulation on ``x`` and compare with torch (expected: 0 mismatches).

    ``reference``: torch's outputs to compare with (default: ``model(x)`` in float32; :func:`hwnas.export.verify.
    verify_model` passes torch's float64 outputs where float32 rounds). ``export_kwargs`` go to
    :func:`export_hls4ml`. Without ``output_dir`` the project is written to a
    temporary folder that is removed afterwards (``artefact`` is then None). Returns a skipped result when
    g++ or hls4ml is missing.
    """
    t0 = time.perf_counter()
    xt = torch.as_tensor(x).float()  # what the torch model sees; the emulation gets the same values
    if shutil.which("g++") is None:
        return skipped(_PATH, "g++ is not on PATH: hls4ml's C emulation (compile/predict) needs a C++ compiler",
                       samples=len(xt))
    try:
        import hls4ml  # noqa: F401
    except ImportError:  # pragma: no cover - hls4ml is a test dependency
        return skipped(_PATH, "hls4ml is not installed (pip install 'hwnas[export]')", samples=len(xt))
    tmp = None
    if output_dir is None:
        tmp = tempfile.mkdtemp(prefix="hwnas-hls4ml-")
        output_dir = Path(tmp) / "project"
    try:
        project = export_hls4ml(model, tuple(xt.shape[1:]), output_dir, **export_kwargs)
        with torch.no_grad():
            ref = model(xt).detach().double().numpy() if reference is None else np.asarray(reference, np.float64)
        project.compile()
        result = project.check(xt, ref, seconds=time.perf_counter() - t0)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if tmp is not None:
        result = dataclasses.replace(result, artefact=None)
    return result

