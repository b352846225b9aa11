"""Synthesis of generated RTL with Yosys (Xilinx families, Lattice ECP5) and place and route with nextpnr-ecp5.

Contract: :func:`synthesize` takes Verilog sources and a top module (plain paths, an alkaid project folder,
or any object with ``.sources`` and ``.top``, such as the RTL exporter's project) and a catalog device, and
runs, in a fresh folder:

* Xilinx families (``yosys_family`` ``xc7``, ``xcu``, ``xcup``, ...): ``synth_xilinx -family <family> -top
  <top>`` (``-flatten`` by default; ``-noiopad -noclkbuf`` for the out-of-context block alkaid's own Vivado
  flow builds), then ``stat -json``. No timing: Yosys has no Xilinx timing model.
* ECP5: ``synth_ecp5 -top <top>`` (flattens unless ``flatten=False``), ``stat -json``, ``write_json``, then
  ``nextpnr-ecp5`` (device, package and speed from the part, ``--freq`` from the clock, ``--report``), which
  gives a placed-and-routed Fmax for registered designs, or, for a purely combinational one (no clock, so
  no Fmax), the critical path in ns (pad to pad when the ports are on pins).

The cell counts become a :class:`~hwnas.cost.result.HardwareEstimate`, the structure the cost models return
(one row for a flat design, one per submodule the top instantiates otherwise; carry chains, LUTs by size,
muxes, I/O, unknown cells in ``extra``), inside a :class:`SynthesisResult` with the parsed report, the log
and report paths, Fmax or critical path, tool versions and run time. ``assumptions`` states tool, version,
script, family, part, flatten and out-of-context choices and how each resource is counted.
:meth:`SynthesisResult.compare_with` lines the totals up against a cost-model estimate.

Runs happen in a temporary folder that is moved to ``output_dir`` only when everything succeeded, under the
rule of :mod:`hwnas.export.folders` (a new or empty folder, or an earlier hwnas run, replaced unless
``replace=False``; a folder holding files hwnas did not write is refused before anything runs); a failing
tool raises :class:`SynthesisError` with the end of its log (also saved as ``<output_dir>.failed.log``); a
missing tool raises :class:`~hwnas.export.ToolMissingError`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from hwnas.cost.catalog import RESOURCES, Device, get_device
from hwnas.cost.power import power_watts
from hwnas.cost.result import HardwareEstimate, LayerRow
from hwnas.errors import EXIT_FAILED

from .errors import ExportError
from .folders import Staging, record
from .synth_parse import ECP5_PACKAGE_IOS, classify_cells, ecp5_device_args, parse_nextpnr, parse_stat
from .synth_tools import ToolRun, find_nextpnr_ecp5, find_yosys, run_tool, tool_version

__all__ = ["RTLSources", "ResourceComparison", "SynthesisComparison", "SynthesisError", "SynthesisResult",
           "alkaid_sources", "classify_cells", "parse_nextpnr", "parse_stat", "synthesize"]

log = logging.getLogger(__name__)

_XILINX_FAMILIES = ("xcup", "xcu", "xc7", "xc6s", "xc6v", "xc5v", "xc4v", "xc3sda", "xc3sa", "xc3se", "xc3s",
                    "xc2vp", "xc2v", "xcve", "xcv")
_VERILOG = {".v": "", ".vh": "", ".sv": "-sv", ".svh": "-sv"}
_HEADERS = {".vh", ".svh"}
_STAT = "stat.json"
_RESULT = "result.json"


class SynthesisError(ExportError):
    """Yosys or nextpnr failed on the design; the message ends with the tool's last log lines (exit 1, a failure)."""

    exit_code = EXIT_FAILED


@runtime_checkable
class RTLSources(Protocol):
    """Anything with Verilog ``sources`` and a ``top`` module name (the RTL exporter's project)."""

    sources: Sequence[Path]
    top: str


# --------------------------------------------------------------------------------------------- sources
def alkaid_sources(project: str | os.PathLike[str]) -> tuple[list[Path], str]:
    """The Verilog files and top module of a project folder written by ``alkaid.codegen.RTLModel.write()``.

    Sources are ``src/*.v`` and ``src/static/*.v``; the top is ``metadata.json``'s ``top_module`` (the
    design itself, as alkaid's own Vivado script synthesizes it; ``<top>_wrapper`` only repacks the ports
    for Verilator and is ignored by Yosys' ``hierarchy -top``).
    """
    root = Path(project)
    meta = root / "metadata.json"
    if not meta.is_file():
        raise ExportError(f"{root}: not an alkaid RTL project (no metadata.json); pass the sources and top")
    info = json.loads(meta.read_text())
    top = str(info["top_module"])
    if info.get("flavor", "verilog") != "verilog":
        raise ExportError(f"{root}: a VHDL project; Yosys reads Verilog (export with flavor='verilog')")
    sources = sorted((root / "src").glob("*.v")) + sorted((root / "src" / "static").glob("*.v"))
    if not sources:
        raise ExportError(f"{root}: no Verilog files under src/")
    return sources, top


def _collect(design: Any, top: str | None) -> tuple[list[Path], str, dict[str, Any]]:
    """(sources, top, facts such as an alkaid latency) from any accepted design form."""
    facts: dict[str, Any] = {}
    if isinstance(design, str | os.PathLike) and Path(design).is_dir():
        sources, found = alkaid_sources(design)
        meta = json.loads((Path(design) / "metadata.json").read_text())
        if meta.get("latency") is not None:
            facts["latency_cycles"] = int(meta["latency"])
        top = top or found
    elif hasattr(design, "sources") and not isinstance(design, str | os.PathLike):
        sources = [Path(s) for s in design.sources]
        top = top or getattr(design, "top", None)
        latency = getattr(design, "latency", None)
        if isinstance(latency, int | float) and latency >= 0:
            facts["latency_cycles"] = int(latency)
    elif isinstance(design, str | os.PathLike):
        sources = [Path(design)]
    else:
        sources = [Path(s) for s in design]
    if not sources:
        raise ExportError("sources: no Verilog files given")
    if not top:
        raise ExportError("top: no top module given (pass top=, or an object with .top)")
    missing = [str(s) for s in sources if not s.is_file()]
    if missing:
        raise FileNotFoundError(f"sources: {len(missing)} file(s) do not exist: {', '.join(missing)}")
    bad = [s.name for s in sources if s.suffix.lower() not in _VERILOG]
    if bad:
        raise ExportError(f"sources: Yosys reads Verilog/SystemVerilog (.v, .sv, .vh, .svh); got {bad} "
                          "(VHDL needs the GHDL plugin; export alkaid RTL with flavor='verilog')")
    return sources, str(top), facts


def _copy_sources(sources: list[Path], dest: Path) -> list[str]:
    """Copy the sources into ``dest`` (YoWASP tools cannot see the host's /tmp); relative names, in order."""
    dest.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    for i, src in enumerate(sources):
        name = src.name if src.name not in names else f"{i:03d}_{src.name}"
        shutil.copy2(src, dest / name)
        names.append(name)
    return names


# ---------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class ResourceComparison:
    """One resource: synthesized count, cost-model estimate, and estimate ÷ synthesis."""

    resource: str
    synthesized: float
    estimated: float
    ratio: float | None
    """estimated / synthesized (>1: the cost model over-estimates); None when both are 0, inf when only the
    synthesis is 0."""


@dataclass
class SynthesisComparison:
    """Synthesis totals next to a cost model's, resource by resource (:meth:`SynthesisResult.compare_with`)."""

    synthesis: str
    estimate: str
    rows: list[ResourceComparison]
    notes: list[str] = field(default_factory=list)

    @property
    def ratios(self) -> dict[str, float | None]:
        """Ratio estimate ÷ synthesis per resource."""
        return {r.resource: r.ratio for r in self.rows}

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON, report tables)."""
        return {"synthesis": self.synthesis, "estimate": self.estimate, "notes": list(self.notes),
                "rows": [vars(r).copy() for r in self.rows]}

    def table(self) -> str:
        """Markdown table: resource, synthesized, estimated, ratio; then the notes."""
        lines = [f"| resource | synthesis ({self.synthesis}) | estimate ({self.estimate}) | estimate / synthesis |",
                 "|---|---:|---:|---:|"]
        for r in self.rows:
            ratio = "—" if r.ratio is None else ("∞" if r.ratio == float("inf") else f"{r.ratio:.2f}")
            lines.append(f"| {r.resource} | {r.synthesized:,.0f} | {r.estimated:,.0f} | {ratio} |")
        if self.notes:
            lines += ["", *(f"- {n}" for n in self.notes)]
        return "\n".join(lines)


@dataclass
class SynthesisResult:
    """A synthesis (and for ECP5 place-and-route) run: the estimate-shaped counts plus the raw material."""

    estimate: HardwareEstimate
    """Resources in the cost models' structure; ``assumptions`` say tool, script, family, part, choices."""
    report: dict[str, Any]
    """Parsed reports: ``{"yosys": parse_stat(...), "nextpnr": parse_nextpnr(...) or None}``."""
    output_dir: Path
    log_path: Path
    """The Yosys log."""
    report_path: Path
    """The raw Yosys ``stat -json`` report."""
    fmax_mhz: float | None
    """nextpnr's achieved Fmax of the slowest clock (None: no P&R, or no clocked path)."""
    critical_path_ns: float | None
    """The longest path nextpnr reports (reg→reg for registered designs, pad→pad for combinational ones)."""
    seconds: float
    tool_versions: dict[str, str]
    pnr_log_path: Path | None = None
    pnr_report_path: Path | None = None
    netlist_path: Path | None = None

    @property
    def totals(self) -> dict[str, float]:
        """LUT, FF, BRAM18, URAM, DSP (and MACs, always 0 here) over the design."""
        return self.estimate.totals

    @property
    def extra(self) -> dict[str, Any]:
        """Design-wide breakdown: carry chains, LUTs by size, muxes, I/O, unknown cells, ..."""
        return self.report["yosys"]["extra"]

    @property
    def placed(self) -> dict[str, int] | None:
        """Placed counts from nextpnr (``luts`` = TRELLIS_COMB, ``ffs``, ``dsps``, ``bram18``, ``io``), if it ran."""
        pnr = self.report.get("nextpnr")
        return dict(pnr["placed"]) if pnr else None

    def summary(self) -> str:
        """One paragraph: tool, device, totals, carry, timing."""
        a = self.estimate.assumptions
        t = self.totals
        extra = self.extra
        parts = [f"{a['tool_version']} `{a['synth_command']}` on {a['device']} ({a['part']}): "
                 f"{t['luts']:,.0f} LUT, {t['ffs']:,.0f} FF, {t['bram18']:g} BRAM18, {t['uram']:g} URAM, "
                 f"{t['dsps']:g} DSP"]
        if extra.get("carry"):
            parts.append("carry " + ", ".join(f"{n:g} {c}" for c, n in extra["carry"].items()))
        if extra.get("other_cells"):
            parts.append("unclassified cells " + ", ".join(f"{n:g} {c}" for c, n in extra["other_cells"].items()))
        if self.fmax_mhz is not None:
            parts.append(f"Fmax {self.fmax_mhz:.1f} MHz (nextpnr, target {self.estimate.clock_mhz:g} MHz)")
        elif self.critical_path_ns is not None:
            parts.append(f"no clock: critical path {self.critical_path_ns:.2f} ns ({a.get('timing', '')})")
        else:
            parts.append(f"timing: {a.get('timing', 'not analysed')}")
        parts.append(f"{self.seconds:.1f} s")
        return "; ".join(parts) + "."

    def table(self) -> str:
        """The estimate's Markdown table followed by :meth:`summary`."""
        return f"{self.estimate.table()}\n\n{self.summary()}"

    def compare_with(self, estimate: HardwareEstimate) -> SynthesisComparison:
        """Line the synthesis totals up against a cost-model estimate: one row per resource with the ratio."""
        mine, theirs = self.estimate.totals, estimate.totals
        rows = []
        for res in RESOURCES:
            s, e = float(mine[res]), float(theirs[res])
            ratio = None if s == 0 and e == 0 else (float("inf") if s == 0 else e / s)
            rows.append(ResourceComparison(res, s, e, ratio))
        notes = []
        if estimate.device.name != self.estimate.device.name:
            notes.append(f"different devices: synthesis for {self.estimate.device.name}, estimate for "
                         f"{estimate.device.name}")
        if (estimate.device.yosys_family == "ecp5") != (self.estimate.device.yosys_family == "ecp5"):
            notes.append("LUT sizes differ: Lattice ECP5 LUTs have 4 inputs, Xilinx LUTs 6")
        if theirs["ffs"] == 0 and mine["ffs"] > 0:
            notes.append("the estimate has no flip-flops (not every cost model estimates FFs)")
        if self.fmax_mhz is not None:
            notes.append(f"achieved Fmax {self.fmax_mhz:.1f} MHz vs the estimate's clock {estimate.clock_mhz:g} MHz")
        notes.append("Yosys counts are pre-placement (Vivado's LUT/FF packing and optimization differ)"
                     if self.report.get("nextpnr") is None else "resources are Yosys' post-synthesis counts")
        return SynthesisComparison(synthesis=f"{self.estimate.model}, {self.estimate.device.name}",
                                   estimate=f"{estimate.model}, {estimate.device.name}", rows=rows, notes=notes)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict: totals, rows, timing, paths, versions, assumptions and the parsed report."""
        return {
            "model": self.estimate.model, "device": self.estimate.device.name,
            "clock_mhz": self.estimate.clock_mhz, "totals": self.totals,
            "rows": [r.as_dict() for r in self.estimate.rows], "fmax_mhz": self.fmax_mhz,
            "critical_path_ns": self.critical_path_ns, "seconds": self.seconds, "tool_versions": self.tool_versions,
            "output_dir": str(self.output_dir), "log_path": str(self.log_path), "report_path": str(self.report_path),
            "pnr_log_path": None if self.pnr_log_path is None else str(self.pnr_log_path),
            "pnr_report_path": None if self.pnr_report_path is None else str(self.pnr_report_path),
            "netlist_path": None if self.netlist_path is None else str(self.netlist_path),
            "assumptions": self.estimate.assumptions, "report": self.report,
        }


# --------------------------------------------------------------------------------------------- the flow
def _family(device: Device) -> str:
    fam = device.yosys_family.lower()
    if fam == "ecp5" or fam in _XILINX_FAMILIES:
        return fam
    raise ExportError(f"target: {device.name} has yosys_family {device.yosys_family!r}; supported: ecp5, "
                      f"{', '.join(_XILINX_FAMILIES)} (synth_xilinx -family)")


def _short_version(text: str) -> str:
    """``Yosys 0.70 (git sha1 28ba3cb92, Release, Clang ...)`` → ``Yosys 0.70 (git sha1 28ba3cb92)``."""
    m = re.match(r"\s*(Yosys\s+\S+)(?:\s+\((git sha1 [0-9a-f]+))?", text)
    if not m:
        return text.strip()
    return f"{m.group(1)} ({m.group(2)})" if m.group(2) else m.group(1)


def _classic_abc(synth_xilinx: str, lut6: bool) -> str:
    """``synth_xilinx`` with its ``map_luts`` step (ABC9) replaced by classic ABC; same LUT sizes and clean-up."""
    return "\n".join([
        f"{synth_xilinx} -run :map_luts",
        "opt_expr -mux_undef -noclkinv",
        "abc -luts 2:2,3,6:5,10,20" if lut6 else "abc -lut 4",
        "clean",
        f"techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH={6 if lut6 else 4}",
        "xilinx_dffopt",
        "opt_lut_ins -tech xilinx",
        f"{synth_xilinx} -run finalize:check",
    ])


def _script(names: list[str], top: str, synth_cmd: str, ecp5: bool) -> str:
    lines = ["# hwnas.export.synth: generated Yosys script"]
    for n in names:
        if Path(n).suffix.lower() in _HEADERS:
            continue  # include files: copied next to the sources (found through -Isrc), not read on their own
        flag = _VERILOG[Path(n).suffix.lower()]
        lines.append(" ".join(x for x in ("read_verilog", flag, "-Isrc", f"src/{n}") if x))
    lines += [f"hierarchy -check -top {top}", synth_cmd, f"tee -q -o {_STAT} stat -json", "tee -q -o stat.txt stat"]
    if ecp5:
        lines.append("write_json netlist.json")
    return "\n".join(lines) + "\n"


def _fail(what: str, run: ToolRun, output_dir: Path | None) -> SynthesisError:
    saved = ""
    if output_dir is not None:
        keep = output_dir.parent / f"{output_dir.name}.failed.log"
        try:
            shutil.copy2(run.log_path, keep)
            saved = f" (full log: {keep})"
            record(keep.parent, [keep.name])  # hwnas's own file when the parent is an hwnas folder
        except OSError:
            pass
    why = f"timed out after {run.seconds:.0f} s" if run.timed_out else f"exit status {run.returncode}"
    return SynthesisError(f"{what} failed ({why}){saved}; last log lines:\n{run.tail()}")


def _finish(stage: Staging | None, output_dir: Path | None) -> None:
    """Move the finished run folder to ``output_dir`` (replacing an earlier hwnas run there)."""
    if stage is None or output_dir is None:
        return
    stage.publish()
    failed = output_dir.parent / f"{output_dir.name}.failed.log"
    failed.unlink(missing_ok=True)


def synthesize(sources: Sequence[str | os.PathLike[str]] | str | os.PathLike[str] | RTLSources,
               top: str | None = None, target: str | Device = "ZCU104", *,
               output_dir: str | os.PathLike[str] | None = None, flatten: bool = True,
               clock_mhz: float | None = None, place_and_route: bool | None = None,
               out_of_context: bool | None = None, yosys: str | os.PathLike[str] | Sequence[str] | None = None,
               nextpnr: str | os.PathLike[str] | Sequence[str] | None = None, nextpnr_args: Sequence[str] = (),
               latency_cycles: int | None = None, initiation_interval: int = 1, name: str | None = None,
               timeout_s: float = 3600.0, progress: bool = True, lut_mapper: str = "abc",
               replace: bool = True) -> SynthesisResult:
    """Synthesize Verilog with Yosys for ``target`` (and place and route it with nextpnr-ecp5 on ECP5).

    Args:
        sources: Verilog/SystemVerilog files, one file, an alkaid project folder (``RTLModel.write()``
            output: ``src/*.v`` + ``src/static/*.v``, top from ``metadata.json``), or an object with
            ``.sources`` and ``.top`` (the RTL exporter's project).
        top: top module name (default: the object's ``.top`` or the alkaid project's ``top_module``).
        target: catalog device name/alias or :class:`~hwnas.cost.catalog.Device`; its ``yosys_family``
            picks ``synth_xilinx -family ...`` or ``synth_ecp5``.
        output_dir: where the run folder ends up (atomically, on success); default a new temp folder. New, empty
            or an earlier hwnas run (:mod:`hwnas.export.folders`; other files there raise ``FolderError``).
        flatten: flatten the hierarchy before synthesis (one row); ``False`` keeps it (a row per submodule
            the top instantiates; cross-boundary optimization is lost, so totals are usually higher).
        clock_mhz: target clock (nextpnr ``--freq`` and the estimate's clock); default the device's.
        place_and_route: run nextpnr-ecp5 (default: True on ECP5; Xilinx P&R is not available).
        out_of_context: synthesize a block without I/O buffers. Default: Xilinx always (``-noiopad
            -noclkbuf``); ECP5 only when the top's port bits exceed the package's user I/Os (nextpnr
            ``--out-of-context``: then a combinational design gets no timing at all).
        yosys: explicit Yosys (path or command list); default discovery as in :mod:`hwnas.export.synth_tools`.
        nextpnr: explicit nextpnr-ecp5, likewise.
        nextpnr_args: extra nextpnr-ecp5 arguments (``["--seed", "3"]``).
        latency_cycles: the design's latency for the estimate (default: the alkaid project's or the object's
            ``latency``, else 0).
        initiation_interval: the estimate's II (default 1, a fully parallel design).
        name: the estimate's model name (default ``"Yosys <synth command> (<top>)"``).
        timeout_s: limit per tool run.
        progress: show a tqdm line with the current tool pass.
        lut_mapper: Xilinx LUT mapping: ``"abc"`` (default: classic ABC with synth_xilinx's LUT sizes, the
            ``map_luts`` step replaced) or ``"abc9"`` (synth_xilinx's own, timing-driven). Measured here on a
            combinational 16-24-5 MLP from alkaid: ABC9 had not finished after 10 minutes, classic ABC took 8 s.
        replace: replace an earlier hwnas run in ``output_dir``; False refuses it (the command line without
            ``--force``).

    Raises:
        CostError: unknown device (the message lists the catalog).
        FileNotFoundError: a source file does not exist.
        ToolMissingError: no Yosys (or nextpnr-ecp5 when P&R is requested) can run.
        SynthesisError: a tool failed or timed out (the message carries its last log lines).
    """
    t0 = time.monotonic()
    device = get_device(target)
    fam = _family(device)
    if lut_mapper not in ("abc", "abc9"):
        raise ExportError(f"lut_mapper: expected 'abc' or 'abc9', got {lut_mapper!r}")
    ecp5 = fam == "ecp5"
    files, top, facts = _collect(sources, top)
    if place_and_route is None:
        place_and_route = ecp5
    if place_and_route and not ecp5:
        raise ExportError(f"place_and_route: only ECP5 targets have an open P&R flow (nextpnr-ecp5); {device.name} "
                          f"is {device.family}: use Vivado (alkaid writes build_vivado_prj.tcl) for Xilinx timing")
    clock = float(clock_mhz if clock_mhz is not None else device.clock_mhz)
    if clock <= 0:
        raise ExportError(f"clock_mhz: must be positive, got {clock_mhz}")
    pnr_dev_args, package = ecp5_device_args(device.part) if ecp5 and place_and_route else ([], "")
    yosys_cmd = find_yosys(yosys, command="synth_ecp5" if ecp5 else "synth_xilinx")
    nextpnr_cmd = find_nextpnr_ecp5(nextpnr) if place_and_route else None

    if ecp5:
        synth_cmd = f"synth_ecp5 -top {top}" + ("" if flatten else " -noflatten")
        ooc_synth = False  # synth_ecp5 inserts no I/O buffers; nextpnr does unless --out-of-context
    else:
        ooc_synth = True if out_of_context is None else bool(out_of_context)
        synth_cmd = (f"synth_xilinx -family {fam} -top {top}" + (" -flatten" if flatten else "")
                     + (" -noiopad -noclkbuf" if ooc_synth else ""))
        if lut_mapper == "abc":
            synth_cmd = _classic_abc(synth_cmd, lut6=fam in ("xcup", "xcu", "xc7", "xc6s", "xc6v", "xc5v"))

    out = None if output_dir is None else Path(output_dir).resolve()
    stage = None
    if out is not None:
        stage = Staging(out, replace=replace)  # refuses a folder holding files hwnas did not write
        work = stage.path
    else:
        work = Path(tempfile.mkdtemp(prefix="hwnas-synth-"))
        work.chmod(0o755)  # mkdtemp makes it private; the result folder should read like any other
    final = out if out is not None else work
    try:
        names = _copy_sources(files, work / "src")
        script = _script(names, top, synth_cmd, ecp5)
        (work / "synth.ys").write_text(script)
        log.info("yosys: %s on %d file(s) for %s", synth_cmd, len(names), device.name)
        yrun = run_tool([*yosys_cmd, "-s", "synth.ys"], work, work / "yosys.log", timeout_s=timeout_s,
                        label=f"yosys {synth_cmd.split()[0]}", kind="yosys", progress=progress)
        if yrun.returncode != 0 or yrun.timed_out or not (work / _STAT).is_file():
            raise _fail(f"yosys ({synth_cmd})", yrun, out)
        log.info("yosys: done in %.1f s", yrun.seconds)
        parsed = parse_stat((work / _STAT).read_text(), "ecp5" if ecp5 else "xilinx", top)
        versions = {"yosys": _short_version(parsed["creator"] or tool_version(yosys_cmd, "-V"))}

        pnr = None
        pnr_info: dict[str, Any] = {}
        if place_and_route:
            assert nextpnr_cmd is not None
            io_limit = ECP5_PACKAGE_IOS.get(package, 197)
            ooc = (parsed["port_bits"] > io_limit) if out_of_context is None else bool(out_of_context)
            args = [*pnr_dev_args, "--json", "netlist.json", "--top", top, "--freq", f"{clock:g}",
                    "--report", "nextpnr_report.json", "--timing-allow-fail", "--lpf-allow-unconstrained",
                    *(["--out-of-context"] if ooc else []), *nextpnr_args]
            log.info("nextpnr-ecp5: %s", " ".join(args))
            prun = run_tool([*nextpnr_cmd, *args], work, work / "nextpnr.log", timeout_s=timeout_s,
                            label="nextpnr-ecp5", kind="nextpnr", progress=progress)
            if prun.returncode != 0 or prun.timed_out:
                raise _fail("nextpnr-ecp5", prun, out)
            log.info("nextpnr-ecp5: done in %.1f s", prun.seconds)
            report_file = work / "nextpnr_report.json"
            pnr = parse_nextpnr(report_file.read_text() if report_file.is_file() else None,
                                (work / "nextpnr.log").read_text(errors="replace"))
            versions["nextpnr-ecp5"] = tool_version(nextpnr_cmd, "--version")
            pnr_info = {"command": f"nextpnr-ecp5 {' '.join(args)}", "tool": " ".join(nextpnr_cmd),
                        "out_of_context": ooc, "package": package,
                        "port_bits": parsed["port_bits"], "package_user_ios": io_limit, "placed": pnr["placed"],
                        "timing_met": pnr["timing_met"]}

        result = _result(parsed, pnr, pnr_info, versions, device=device, fam=fam, ecp5=ecp5, clock=clock, top=top,
                         flatten=flatten, ooc_synth=ooc_synth, synth_cmd=synth_cmd, script=script, names=names,
                         yosys_cmd=yosys_cmd, place_and_route=place_and_route, final=final, facts=facts,
                         latency_cycles=latency_cycles, initiation_interval=initiation_interval, name=name,
                         seconds=time.monotonic() - t0, has_pnr_report=(work / "nextpnr_report.json").is_file())
        (work / _RESULT).write_text(json.dumps(result.as_dict(), indent=1, default=str))
        _finish(stage, out)
    except BaseException:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
        raise
    log.info("synthesis: %s", result.summary())
    return result


def _result(parsed: dict[str, Any], pnr: dict[str, Any] | None, pnr_info: dict[str, Any], versions: dict[str, str],
            *, device: Device, fam: str, ecp5: bool, clock: float, top: str, flatten: bool, ooc_synth: bool,
            synth_cmd: str, script: str, names: list[str], yosys_cmd: list[str], place_and_route: bool,
            final: Path, facts: dict[str, Any], latency_cycles: int | None, initiation_interval: int,
            name: str | None, seconds: float, has_pnr_report: bool) -> SynthesisResult:
    """Build the :class:`SynthesisResult` (estimate rows, assumptions) from the parsed reports."""
    latency = latency_cycles if latency_cycles is not None else facts.get("latency_cycles", 0)
    fmax = pnr["fmax_mhz"] if pnr else None
    crit = pnr["critical_path_ns"] if pnr else None
    if not place_and_route:
        timing = ("not analysed: Yosys has no Xilinx timing model; run Vivado (alkaid's build_vivado_prj.tcl) "
                  "for Fmax" if not ecp5 else "not analysed (place_and_route=False)")
    elif fmax is not None:
        timing = f"nextpnr-ecp5 placed-and-routed Fmax {fmax:.2f} MHz (slowest clock; target {clock:g} MHz)"
    elif crit is not None:
        timing = ("combinational design: no clock, so no Fmax; the figure is nextpnr's longest pad-to-pad path "
                  "(includes I/O buffers and pad routing); export with registered I/O for an Fmax")
    else:
        timing = ("combinational design placed out of context: no clock and no pads, so nextpnr times no path; "
                  "export with registered I/O for an Fmax")
    if latency_cycles is not None:
        latency_note = f"{latency} cycles (given)"
    elif "latency_cycles" in facts:
        latency_note = f"{latency} cycles (from the RTL project)"
    else:
        latency_note = "0: not known from the netlist (pass latency_cycles=)"
    arch_luts = ("LUT4 + 2 per CCU2C carry cell (two LUT4s each) + 4 per 16×4 distributed RAM" if ecp5 else
                 "LUT1–LUT6 (LUT6_2 as one) + INV (a LUT1) + LUT sites of SRL/distributed-RAM cells")
    assumptions: dict[str, Any] = {
        "model": "Yosys synthesis" + (" + nextpnr-ecp5 place and route" if place_and_route else ""),
        "tool": "yosys", "tool_version": versions["yosys"], "tool_command": f"{' '.join(yosys_cmd)} -s synth.ys",
        "synth_command": synth_cmd.splitlines()[0].replace(" -run :map_luts", "")
        + (" (LUTs mapped by classic abc)" if "\nabc " in synth_cmd else ""),
        "script": script, "device": device.name, "family": device.family,
        "yosys_family": fam, "part": device.part, "clock_mhz": clock, "top": top, "flatten": flatten,
        "out_of_context": pnr_info.get("out_of_context", ooc_synth), "sources": names,
        "report_path": str(final / _STAT), "log_path": str(final / "yosys.log"),
        "luts": arch_luts, "ffs": "flip-flops and latches" + (" (TRELLIS_FF)" if ecp5 else " (FD*, LD*)"),
        "bram18": "18 Kb units (DP16KD EBR = 1)" if ecp5 else "18 Kb units (RAMB18 = 1, RAMB36 = 2)",
        "dsps": "MULT18X18D" if ecp5 else "DSP48E1/DSP48E2",
        "extra": "carry chains, LUTs by size, muxes, LUTRAM, I/O, clock, unclassified cells per row",
        "latency": latency_note, "initiation_interval": initiation_interval, "timing": timing, "fmax_mhz": fmax,
        "critical_path_ns": crit,
        "power": "hwnas.cost.power on the synthesized counts at clock_mhz (rough, see devices.yaml)",
        "hierarchy": "one row per submodule the top instantiates (× instances) plus the top's own cells"
                     if parsed["hierarchical"] else "one row for the (flattened) design",
    }
    if pnr_info:
        assumptions["nextpnr"] = {**pnr_info, "version": versions["nextpnr-ecp5"],
                                  "report_path": str(final / "nextpnr_report.json"),
                                  "log_path": str(final / "nextpnr.log")}
    hier = parsed["hierarchical"]
    rows = []
    for r in parsed["rows"]:
        res = r["resources"]
        rows.append(LayerRow(name=r["name"], type="module" if hier else "design", in_shape=(), out_shape=(),
                             cycles=0 if hier else int(latency), luts=res["luts"], ffs=res["ffs"],
                             bram18=res["bram18"], uram=res["uram"], dsps=res["dsps"],
                             extra={**r["extra"], "module": r["module"], "instances": r["instances"]}))
    tot = parsed["resources"]
    est = HardwareEstimate(model=name or f"Yosys {synth_cmd.split()[0]} ({top})", device=device, clock_mhz=clock,
                           rows=rows, latency_cycles=int(latency), initiation_interval=int(initiation_interval),
                           assumptions=assumptions,
                           power_w=power_watts(device, clock, tot["luts"], tot["ffs"], tot["bram18"], tot["uram"],
                                               tot["dsps"]))
    return SynthesisResult(
        estimate=est, report={"yosys": parsed, "nextpnr": pnr}, output_dir=final, log_path=final / "yosys.log",
        report_path=final / _STAT, fmax_mhz=fmax, critical_path_ns=crit, seconds=seconds, tool_versions=versions,
        pnr_log_path=final / "nextpnr.log" if pnr else None,
        pnr_report_path=final / "nextpnr_report.json" if pnr and has_pnr_report else None,
        netlist_path=final / "netlist.json" if ecp5 else None)
