"""RTL export: a quantized hwnas model as a Verilog or VHDL project through alkaid, simulated with Verilator.

Contract:

* :func:`export_rtl` extracts the export graph (the one place precisions are read), traces the model with
  alkaid (:func:`hwnas.export.alkaid_plugin.trace_hwnas`: the hwnas replay handlers turn every layer into
  alkaid's fixed-point IR, exactly), optimizes the IR and writes alkaid's project into ``output_dir``
  atomically under the rule of :mod:`hwnas.export.folders` (a temporary folder, then a rename; a new or empty
  folder, or an earlier hwnas export, replaced unless ``replace=False``; a folder holding files hwnas did
  not write is refused). Without a
  ``latency_cutoff`` (or ``n_stages``) the design is one combinational block (latency 0); with one, alkaid
  cuts it into pipeline stages of at most that many estimated nanoseconds (registers at the input, between
  stages and at the output), and ``latency`` is the number of clock cycles from input to output.
* The circuit's input is the model input already quantized with the graph's input format (the first
  layer's input quantizer); its float-to-fixed conversion happens outside the circuit. Ports: one input
  vector ``model_inp`` and one output vector ``model_out`` holding the flattened (torch, C order) elements,
  each element in its own fixed-point width, plus ``clk`` when pipelined. The element layout is recorded in
  ``model/comb.json.gz`` (alkaid) and summarized in ``hwnas_rtl.json``.
* :class:`RtlProject` names the files: ``sources`` (the design: alkaid's static primitives, lookup tables,
  the per-stage ``logic*`` modules and the top ``<project_name>``, in that order), ``top`` (the design's top
  module, ``project_name``; feed exactly these to synthesis), ``wrapper`` (``<project_name>_wrapper``, a
  port-flattening wrapper that is only the simulation top). :meth:`RtlProject.compile` builds alkaid's
  Verilator emulator (tools from :mod:`hwnas.export.tools`; VHDL also needs GHDL) with hwnas's build settings
  (:data:`VERILATOR_FLAGS`, :data:`CXX_FLAGS`, :func:`build_jobs`, :data:`PARALLEL_BUILD_ADDERS`: a flattened
  design, unoptimized C++, every CPU; docs/export.md, *Verilator set-up*) and
  :meth:`RtlProject.predict` runs it on float inputs in torch layout (quantized with the input format
  first), returning float64 outputs in torch layout. :meth:`RtlProject.emulate` runs the same IR with
  alkaid's C++ interpreter (no Verilator).
* :func:`verify_rtl` exports, compiles, simulates and compares with the torch model (float64 values of its
  float32 forward) sample by sample; it returns :func:`~hwnas.export.result.skipped` with the reason when
  alkaid, Verilator, make or a C++ compiler (or GHDL for VHDL) is missing, and never fails for a missing tool.
* What cannot be exported raises :class:`~hwnas.export.errors.ExportError` naming the layer (and slot); an
  internal failure of alkaid (tracing, optimizing, writing the RTL) or of the Verilator build raises
  :class:`~hwnas.export.errors.ToolFailureError` with the tool's message: a failed path, never "not expressible".
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import ExportError, ToolFailureError, ToolMissingError
from .folders import Staging, recording
from .graph import ExportGraph, FixedFormat, Quantize, extract, layers_of
from .result import PathResult, compare, skipped
from .tools import find_ghdl, find_verilator, rtl_tools_missing

__all__ = ["CXX_FLAGS", "DEFAULT_PART", "PARALLEL_BUILD_ADDERS", "VERILATOR_FLAGS", "RtlProject", "RtlSummary",
           "build_jobs", "export_rtl", "verify_rtl"]

DEFAULT_PART = "xcvu13p-flga2577-2-e"
"""alkaid's default FPGA part (only written into its Vivado/Quartus project scripts)."""

_SUMMARY_FILE = "hwnas_rtl.json"
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# what an internal failure of alkaid raises (StopIteration: its cmvm on an all-constant product row); an
# ExportError (a ValueError) is passed through where it can occur
_TOOL_FAULTS = (AssertionError, ValueError, TypeError, IndexError, KeyError, ArithmeticError, StopIteration)
# alkaid IR opcodes: 0/1 add/sub, 4 add a constant, 6 multiplexer, 7 multiplier, 8 table lookup
_ADDERS, _MUX, _MUL, _LUT = (0, 1, 4), (6,), (7,), (8,)


@dataclass(frozen=True)
class RtlSummary:
    """Size and timing estimates of an exported design (alkaid's cost model, before synthesis)."""

    cost: float
    """alkaid's area estimate of the combinational logic (roughly LUTs)."""
    adders: int
    """Two-input adders/subtractors (incl. constant additions) in the IR before ternary-adder fusion."""
    multiplexers: int
    lookups: int
    """Table lookups (tanh/sigmoid activations), one per activation element."""
    tables: int
    """Distinct lookup tables."""
    reg_bits: int
    """Pipeline register bits (0 when combinational)."""
    latency: int
    """Clock cycles from input to output (0 when combinational)."""
    stages: int
    """Combinational blocks (pipeline stages)."""
    delay_ns: float
    """alkaid's estimate of the whole combinational path before pipelining, in ns."""
    inputs: int
    input_bits: int
    outputs: int
    output_bits: int

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON, tables)."""
        return asdict(self)


VERILATOR_SPLIT = "--output-split 3000 --output-split-cfuncs 300"
"""Verilator flags that split the generated C++ of a large combinational design into many small files and
functions: g++'s time grows faster than linearly with a function's size (a 1,478-adder MLP: 71 s of g++ for its
one eval function at ``-O``, 3 s split; docs/export.md, *Verilator set-up*)."""

VERILATOR_FLAGS = f"--flatten {VERILATOR_SPLIT}"
"""hwnas's Verilator flags for the emulator build (after alkaid's lint flags): :data:`VERILATOR_SPLIT` plus
``--flatten``. alkaid writes every adder as an instance of a parameterized module (``shift_adder``,
``ternary_adder``); without ``--flatten`` Verilator keeps the many-times-instantiated ones as C++ classes with
one symbol-table entry each: on the demo's knee CNN (57,369 adders) 875 C++ files, 250 compiler runs and 239 s
of g++ CPU at ``-O``; flattened, 9 compiler runs and 72 s (46 s at ``-O0``). Verilator's own time does not
change (about 90 s CPU there)."""

CXX_FLAGS = "-std=c++17 -fPIC -O0"
"""Compiler flags of the emulator's C++ (alkaid's makefile has ``-std=c++17 -fPIC -O``; hwnas replaces them
through ``MAKEFLAGS``, whose command-line ``CFLAGS`` wins over the makefile's). The emulator only runs the test
inputs once, so optimizing the C++ costs more time than it saves."""


PARALLEL_BUILD_ADDERS = 20_000
"""Above this many adders the emulator's C++ is compiled file by file in parallel (Verilator's default, with a
precompiled header per kind of file); up to it as one translation unit (``VM_PARALLEL_BUILDS=0``), which skips
the two precompiled headers and the repeated header parsing: half the compiler time of a small design (a
5,039-adder MLP: 10 s of g++ instead of 17 s, wall and CPU; docs/export.md, *Verilator set-up*)."""


def build_jobs() -> int:
    """Parallel compiler jobs for the emulator build: the CPUs this process may run on.

    alkaid's makefile asks ``nproc``, which honours ``OMP_NUM_THREADS``, so a session that pins torch to one
    thread (as the benchmarks and tests do) used to build serially and in one C++ file (Verilator groups the
    model's files into as many as there are jobs).
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _make_flags(base: str, cxx_flags: str, parallel: bool = True) -> str:
    """``MAKEFLAGS``: ``base``, ``CFLAGS=<cxx_flags>`` (spaces escaped), ``VM_PARALLEL_BUILDS=0`` unless ``parallel``.

    make hands these command-line variables on to Verilator's own make, where they win over its makefiles' values.
    """
    value = "\\ ".join(cxx_flags.split())
    return f"{base} CFLAGS={value}{'' if parallel else ' VM_PARALLEL_BUILDS=0'}".strip()


@dataclass
class RtlProject:
    """An exported RTL project (see the module docstring for the meaning of the files)."""

    path: Path
    flavor: str
    top: str
    """Top module of the design (``project_name``): what synthesis elaborates."""
    sources: list[Path]
    """HDL files of the design, dependencies first (static primitives, tables, stage logic, top)."""
    wrapper: Path
    """``<top>_wrapper``: Verilator's top for simulation, not part of the design."""
    latency: int
    """Clock cycles from input to output (0: combinational)."""
    summary: RtlSummary
    graph: ExportGraph
    latency_cutoff: float = -1
    n_stages: int = -1
    clock_period: float = 5.0
    part_name: str = DEFAULT_PART
    comb: Any = field(default=None, repr=False)
    """alkaid's ``CombLogic`` of the design."""
    _rtl: Any = field(default=None, repr=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample input shape (torch layout)."""
        return self.graph.input_shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Per-sample output shape (torch layout)."""
        return self.graph.output_shape

    @property
    def input_format(self) -> FixedFormat:
        """The fixed-point format of the circuit's input (floats are quantized with it before they enter)."""
        return self.graph.input_format

    @property
    def compiled(self) -> bool:
        """Whether :meth:`compile` has built the emulator in this process."""
        return self._rtl is not None

    def _model(self) -> Any:
        from alkaid.codegen import RTLModel

        return RTLModel(self.comb, self.path, self.top, flavor=self.flavor, n_stages=self.n_stages,
                        latency_cutoff=self.latency_cutoff, print_latency=True, part_name=self.part_name,
                        clock_period=self.clock_period)

    def compile(self, *, verbose: bool = False, jobs: int | None = None, openmp: bool = True,
                verilator_flags: str = VERILATOR_FLAGS, cxx_flags: str = CXX_FLAGS,
                parallel: bool | None = None) -> RtlProject:
        """Build alkaid's Verilator emulator of the project (in ``path/sim``); returns ``self``.

        ``jobs``: parallel compiler jobs (default :func:`build_jobs`); ``verilator_flags`` follow alkaid's lint
        flags (default :data:`VERILATOR_FLAGS`); ``cxx_flags`` are the C++ compiler's (default :data:`CXX_FLAGS`);
        ``parallel``: compile the C++ file by file (default: above :data:`PARALLEL_BUILD_ADDERS` adders) or as one
        translation unit.
        Raises :class:`ToolMissingError` when Verilator (or GHDL for VHDL) is missing and
        :class:`ToolFailureError` (a ``RuntimeError``) when the build fails (``verbose`` shows the compiler output).
        """
        tool = find_verilator()
        if self.flavor == "vhdl" and find_ghdl() is None:
            raise ToolMissingError("simulating the VHDL project needs GHDL on PATH (alkaid converts it to Verilog "
                                   "with ghdl synth); export flavor='verilog' to simulate without it")
        from alkaid.codegen.rtl._utils import verilator_warn_suppression

        rtl = self._model()
        with tool.activated() as env, recording(self.path):
            if self.flavor == "vhdl":
                # ghdl synth's Verilog trips Verilator lint warnings (COMBDLY) that are errors by default; the
                # netlist is machine-written, so the lint is not ours to fix: keep the warnings, not fatal
                flags = "-Wno-fatal -Wno-UNUSEDSIGNAL -Wno-COMBDLY -Wno-ALWNEVER"
            else:
                flags = f"-Wall {verilator_warn_suppression()}"  # alkaid's own flags for its Verilog
            if parallel is None:
                parallel = self.summary.adders > PARALLEL_BUILD_ADDERS
            make = _make_flags(env.get("MAKEFLAGS", os.environ.get("MAKEFLAGS", "")), cxx_flags, parallel)
            env = {**env, "VERILATOR_FLAGS": f"{flags} {verilator_flags}".strip(), "MAKEFLAGS": make}
            try:
                rtl.compile(verbose=verbose, openmp=openmp, nproc=jobs or build_jobs(), _env=env)
            except (RuntimeError, AttributeError, OSError, *_TOOL_FAULTS) as err:
                raise ToolFailureError(f"{self.top}: the Verilator build in {self.path / 'sim'} failed ({err}); "
                                       "rerun compile(verbose=True) for the compiler output") from err
        self._rtl = rtl
        return self

    def _flat_inputs(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        from .alkaid_plugin import quantize_values

        h = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
        if h.shape[1:] != self.input_shape:
            raise ExportError(f"input: expected samples of shape {self.input_shape}, got {h.shape[1:]}")
        if not np.all(np.isfinite(h)):
            raise ExportError("input: contains NaN or infinity")
        fmt = self.input_format
        q = quantize_values(h, fmt.k, fmt.i, fmt.f, fmt.round_mode, fmt.overflow_mode)
        return np.ascontiguousarray(q.reshape(len(h), -1))

    def predict(self, x: np.ndarray | torch.Tensor, *, threads: int = 1) -> np.ndarray:
        """Simulate the RTL on a batch ``x`` (N, *input_shape) of floats; (N, *output_shape) float64.

        ``x`` is quantized with :attr:`input_format` first (as the first layer's input quantizer does).
        Needs :meth:`compile`; ``threads`` > 1 uses alkaid's OpenMP batch runner.
        """
        if self._rtl is None:
            raise RuntimeError(f"{self.top}: call compile() before predict()")
        flat = self._flat_inputs(x)
        if not len(flat):
            return np.zeros((0, *self.output_shape))
        out = np.asarray(self._rtl.predict(flat, n_threads=threads), dtype=np.float64)
        return out.reshape((len(flat), *self.output_shape))

    def emulate(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """The design's IR run by alkaid's C++ interpreter (no Verilator) on ``x``; like :meth:`predict`."""
        flat = self._flat_inputs(x)
        out = np.asarray(self.comb.predict(flat, n_threads=1), dtype=np.float64)
        return out.reshape((len(flat), *self.output_shape))

    def describe(self) -> str:
        """A few lines: files, top, latency and the size estimate."""
        s = self.summary
        return (f"RTL project {self.path} ({self.flavor}): top {self.top}, {len(self.sources)} sources, latency "
                f"{self.latency} cycles ({s.stages} stages), cost ~{s.cost:.0f} LUT, {s.adders} adders, "
                f"{s.lookups} lookups, {s.reg_bits} register bits; {s.inputs} inputs ({s.input_bits} bits) -> "
                f"{s.outputs} outputs ({s.output_bits} bits)")


# ------------------------------------------------------------------------------------------------ export
def _sources(path: Path, top: str, flavor: str) -> tuple[list[Path], Path]:
    suffix = "v" if flavor == "verilog" else "vhd"
    src = path / "src"
    wrapper = src / f"{top}_wrapper.{suffix}"
    static = sorted((src / "static").glob(f"*.{suffix}"))
    tables = sorted(src.glob(f"{top}_tables.{suffix}"))
    logic = sorted((p for p in src.glob(f"logic*.{suffix}") if re.fullmatch(r"logic\d+", p.stem)),
                   key=lambda p: int(p.stem[5:]))
    top_file = src / f"{top}.{suffix}"
    known = {wrapper, top_file, *tables, *logic}
    others = sorted(p for p in src.glob(f"*.{suffix}") if p not in known)
    return [*static, *tables, *logic, *others, top_file], wrapper


def _summary(comb: Any, rtl: Any) -> RtlSummary:
    ops = Counter(op.opcode for op in comb.ops)
    in_bits = sum(int(max(sum(q.kif), 0)) for q in comb.inp_qint)
    out_bits = sum(int(max(sum(q.kif), 0)) for q in comb.out_qint)
    latency = rtl.latency
    return RtlSummary(
        cost=float(comb.cost), adders=sum(ops[c] for c in _ADDERS), multiplexers=sum(ops[c] for c in _MUX),
        lookups=sum(ops[c] for c in _LUT), tables=len(comb.lookup_tables or ()), reg_bits=int(rtl.reg_bits),
        latency=int(latency or 0), stages=len(rtl.fsm.logic), delay_ns=float(comb.latency[1]),
        inputs=int(comb.shape[0]), input_bits=in_bits, outputs=int(comb.shape[1]), output_bits=out_bits)


def _check_stable(model: nn.Module) -> None:
    """Raise :class:`ExportError` naming the slot when a layer's quantized weight or bias changes between calls.

    The replay handlers read the parameters again while tracing, so an unstable quantizer would make the
    circuit, the export graph and the torch forward disagree.
    """
    for name, layer in layers_of(model):
        for kind in ("weight", "bias"):
            q = getattr(layer, f"{kind}_quantizer", None)
            if getattr(layer, kind, None) is None or q is None:
                continue
            get = layer.quantized_weight if kind == "weight" else layer.quantized_bias
            with torch.no_grad():
                seen = [get().detach().clone() for _ in range(3)]
            if not all(torch.equal(seen[0], v) for v in seen[1:]):
                raise ExportError(
                    f"{name}.{kind}_quantizer: the quantized {kind} changes from call to call (its integer bits are "
                    "re-derived from the rounded values and alternate), so the model has no single fixed-point "
                    "form; give the quantizer i=... or make it learnable")


OPTIMIZE = ("full", "fast")
"""The values of ``run.rtl.optimize`` / :func:`export_rtl`'s ``optimize``."""

FAST_SOLVER: dict[str, Any] = {"method0": "dummy", "search_all_decompose_dc": False}
"""alkaid solver options of ``optimize="fast"``: no common-subexpression search and no search over decompositions
(a 800-32-16-2 8-bit MLP, 25.7 k MACs: traced in ~17 s instead of not finishing in 35 min)."""


def export_rtl(model: nn.Module, input_shape: tuple[int, ...], output_dir: str | os.PathLike[str], *,
               flavor: str = "verilog", latency_cutoff: float = -1, n_stages: int = -1, clock_period: float = 5.0,
               part_name: str | None = None, project_name: str = "hwnas_model",
               hwconf: tuple[int, int, int] = (1, 1, -1), solver_options: dict[str, Any] | None = None,
               optimize: str = "full", replace: bool = True) -> RtlProject:
    """Export ``model`` (per-sample ``input_shape``) as an alkaid RTL project in ``output_dir``.

    ``flavor`` ``"verilog"`` or ``"vhdl"``; ``latency_cutoff`` (ns per pipeline stage, alkaid's delay
    estimate) or ``n_stages`` pipelines the design, ``-1`` keeps it combinational; ``clock_period`` and
    ``part_name`` go into alkaid's timing constraints and vendor project scripts; ``project_name`` is the
    top module's name; ``hwconf`` and ``solver_options`` are passed to alkaid's tracer (its defaults).
    ``optimize``: ``"full"`` (alkaid's search for shared sub-expressions of the constant multiplications) or
    ``"fast"`` (:data:`FAST_SOLVER`: each constant multiplication its own shift-add tree; seconds instead of
    hours for layers of tens of thousands of MACs, more adders; docs/export.md); ``solver_options`` win over it.
    ``output_dir`` is new, empty or an earlier hwnas export (replaced; ``replace=False`` refuses it), else
    :class:`~hwnas.export.folders.FolderError` (:mod:`hwnas.export.folders`).
    Raises :class:`ExportError` naming the layer for anything that has no exact fixed-point circuit.
    """
    flavor = flavor.lower()
    if flavor not in ("verilog", "vhdl"):
        raise ExportError(f"flavor: {flavor!r} is not an RTL flavor; use 'verilog' or 'vhdl'")
    if not _IDENT.fullmatch(project_name) or "__" in project_name:
        raise ExportError(f"project_name: {project_name!r} is not a valid module name (a letter, then letters, "
                          "digits or single underscores)")
    try:
        from alkaid.codegen import RTLModel
        from alkaid.trace import HWConfig, trace

        from .alkaid_plugin import trace_hwnas
    except ImportError as err:
        raise ToolMissingError("the RTL export needs alkaid; install the export extra "
                               "(pip install 'hwnas[export]')") from err

    if optimize not in OPTIMIZE:
        raise ExportError(f"optimize: {optimize!r} is not an RTL optimization; use {' or '.join(map(repr, OPTIMIZE))}")
    if optimize == "fast":
        solver_options = {**FAST_SOLVER, **(solver_options or {})}
    graph = extract(model, input_shape)
    _check_stable(model)
    inp, out, graph = trace_hwnas(model, graph.input_shape, hwconf=HWConfig(*hwconf),
                                  solver_options=solver_options, graph=graph)
    try:
        comb = trace(inp, out)
    except (*_TOOL_FAULTS, RuntimeError) as err:
        raise ToolFailureError(f"model: alkaid failed inside while optimizing the traced circuit "
                               f"({type(err).__name__}: {err})") from err
    wide = [sum(q.kif) for q in (*comb.inp_qint, *comb.out_qint)]
    if wide and max(wide) > 64:
        raise ExportError(f"model: an input or output element needs {max(wide)} bits; alkaid's simulator carries "
                          "at most 64 per element; give the last layer an output quantizer")

    stage = Staging(output_dir, replace=replace)  # refuses a foreign folder before anything is written
    tmp, final = stage.path, stage.final
    part = part_name or DEFAULT_PART
    try:
        try:
            rtl = RTLModel(comb, tmp, project_name, flavor=flavor, n_stages=n_stages, latency_cutoff=latency_cutoff,
                           print_latency=True, part_name=part, clock_period=clock_period)
            rtl.write()
            summary = _summary(comb, rtl)
        except _TOOL_FAULTS as err:  # alkaid's pipelining or code generation broke: the path failed
            if isinstance(err, ExportError):
                raise
            raise ToolFailureError(f"model: alkaid failed inside while writing the RTL ({type(err).__name__}: "
                                   f"{err})") from err
        rel_sources, rel_wrapper = _sources(tmp, project_name, flavor)
        meta = {
            "top": project_name, "flavor": flavor, "wrapper": str(rel_wrapper.relative_to(tmp)),
            "sources": [str(p.relative_to(tmp)) for p in rel_sources],
            "input_shape": list(graph.input_shape), "output_shape": list(graph.output_shape),
            "input_format": graph.input_format.describe(), "latency_cutoff": latency_cutoff, "n_stages": n_stages,
            "clock_period": clock_period, "part_name": part, "summary": summary.as_dict(),
        }
        (tmp / _SUMMARY_FILE).write_text(json.dumps(meta, indent=2))
        stage.publish()
    except BaseException:
        stage.discard()
        raise
    sources, wrapper = _sources(final, project_name, flavor)
    return RtlProject(path=final, flavor=flavor, top=project_name, sources=sources, wrapper=wrapper,
                      latency=summary.latency, summary=summary, graph=graph, latency_cutoff=latency_cutoff,
                      n_stages=n_stages, clock_period=clock_period, part_name=part, comb=comb)


# ------------------------------------------------------------------------------------------------ verify
def _output_lsb(graph: ExportGraph) -> np.ndarray | None:
    last = graph.nodes[-1]
    if isinstance(last, Quantize) and last.slot == "output":
        return np.exp2(-last.fmt.f.astype(np.float64))
    return None


def verify_rtl(model: nn.Module, x: torch.Tensor, output_dir: str | os.PathLike[str] | None = None, *,
               reference: np.ndarray | None = None, **export_kwargs: Any) -> PathResult:
    """Export ``model`` to RTL, build it with Verilator, simulate ``x`` and compare with torch (zero mismatches).

    ``reference``: torch's outputs to compare with (default: ``model(x)`` in float32; :func:`hwnas.export.verify.
    verify_model` passes torch's float64 outputs where float32 rounds).

    ``export_kwargs`` go to :func:`export_rtl`. Without ``output_dir`` the project lives in a temporary folder
    that is removed afterwards. A missing tool gives a skipped result with the reason, never an error.
    """
    start = time.perf_counter()
    flavor = str(export_kwargs.get("flavor", "verilog")).lower()
    missing = rtl_tools_missing(flavor)
    if missing is not None:
        return skipped("rtl", missing, samples=len(x))
    with tempfile.TemporaryDirectory(prefix="hwnas-rtl-") as scratch:
        target = Path(output_dir) if output_dir is not None else Path(scratch) / "rtl"
        project = export_rtl(model, tuple(x.shape[1:]), target, **export_kwargs)  # also puts the model in eval
        with torch.no_grad():
            ref = model(x).detach().double().numpy() if reference is None else np.asarray(reference, np.float64)
        try:
            project.compile()
        except ToolMissingError as err:
            return skipped("rtl", str(err), samples=len(x))
        got = project.predict(x)
        lsb = _output_lsb(project.graph)
        return compare("rtl", ref, got, lsb=lsb, seconds=time.perf_counter() - start,
                       artefact=str(project.path) if output_dir is not None else None)
