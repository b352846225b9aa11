"""Parsers for the synthesis flow: Yosys ``stat -json`` cell counts and nextpnr-ecp5 reports.

Contract: :func:`classify_cells` maps a {cell type: count} table of one architecture (``"xilinx"`` or
``"ecp5"``) onto the cost models' resources (``luts``, ``ffs``, ``bram18``, ``uram``, ``dsps``) and an
``extra`` dict (LUTs by size, carry chains, wide-function muxes, LUTRAM/SRL, I/O and clock buffers, ...);
every cell type lands somewhere: a type the tables do not know is kept in ``extra["other_cells"]``, never
dropped. :func:`parse_stat` reads Yosys' JSON statistics (a dict, JSON text, or text with the JSON inside),
finds the top module, and returns per-instance totals for the design and for each submodule the top
instantiates (so a hierarchical run gives one row per submodule). :func:`parse_nextpnr` reads nextpnr's
``--report`` JSON (falling back on its log) into Fmax per clock, critical paths and placed utilization.
Everything here is pure Python, with no tool run, so it is unit-tested on hand-written snippets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["ARCHES", "classify_cells", "ecp5_device_args", "parse_nextpnr", "parse_stat"]

ARCHES = ("xilinx", "ecp5")
"""Architectures whose primitive cells :func:`classify_cells` knows."""

_RES = ("luts", "ffs", "bram18", "uram", "dsps")

# ------------------------------------------------------------------------------------------- Xilinx
_X_LUT = {f"LUT{n}": 1 for n in range(1, 7)} | {"LUT6_2": 1, "INV": 1}
"""Logic LUTs; ``INV`` is Xilinx' LUT1 inverter macro (Vivado implements it in a LUT1 or absorbs it)."""
_X_LUTRAM = {"SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1, "RAM16X1S": 1, "RAM16X1D": 2, "RAM32X1S": 1,
             "RAM32X1D": 2, "RAM64X1S": 1, "RAM64X1D": 2, "RAM128X1S": 2, "RAM128X1D": 4, "RAM256X1S": 4,
             "RAM256X1D": 8, "RAM512X1S": 8, "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8,
             "RAM32X16DR8": 8, "RAM64X8SW": 8}
"""LUTs used as shift registers or distributed RAM: LUT sites per cell."""
_X_FF = {"FDRE", "FDSE", "FDCE", "FDPE", "FDRE_1", "FDSE_1", "FDCE_1", "FDPE_1", "FD", "FDE", "FDR", "FDS", "FDC",
         "FDP"}
_X_LATCH = {"LDCE", "LDPE", "LDCE_1", "LDPE_1"}
_X_DSP = {"DSP48E1", "DSP48E2", "DSP48A1", "DSP48", "DSP48E"}
_X_BRAM18 = {"RAMB18E1": 1.0, "RAMB18E2": 1.0, "RAMB18": 1.0, "RAMB16BWER": 1.0, "RAMB16": 1.0, "FIFO18E1": 1.0,
             "FIFO18E2": 1.0, "RAMB36E1": 2.0, "RAMB36E2": 2.0, "RAMB36": 2.0, "FIFO36E1": 2.0, "FIFO36E2": 2.0,
             "RAMB8BWER": 0.5}
"""Block RAMs in 18 Kb units: a 36 Kb block counts as two BRAM18 (as in the device catalog)."""
_X_URAM = {"URAM288", "URAM288_BASE"}
_X_CARRY = {"CARRY4", "CARRY8", "MUXCY", "XORCY"}
_X_MUX = {"MUXF5", "MUXF6", "MUXF7", "MUXF8", "MUXF9"}
_X_IO = {"IBUF", "OBUF", "IOBUF", "OBUFT", "IBUFG", "IBUFDS", "OBUFDS", "INBUF", "IBUFCTRL", "IBUF_IBUFDISABLE",
         "IBUF_INTERMDISABLE", "IOBUFDS"}
_X_CLOCK = {"BUFG", "BUFGCE", "BUFGCTRL", "BUFGMUX", "BUFH", "BUFHCE", "BUFR", "BUFIO", "BUFG_GT", "BUFGCE_DIV",
            "MMCME2_ADV", "MMCME2_BASE", "MMCME4_ADV", "PLLE2_ADV", "PLLE2_BASE", "PLLE4_ADV"}
_X_CONST = {"GND", "VCC"}

# --------------------------------------------------------------------------------------------- ECP5
_E_LUT = {"LUT4": 1}
_E_CARRY = {"CCU2C": 2, "CCU2D": 2}
"""Carry cells: one CCU2C is two LUT4s plus their carry logic (one slice), counted as 2 LUT4 equivalents."""
_E_LUTRAM = {"TRELLIS_DPR16X4": 4, "DPR16X4": 4, "SPR16X4": 4}
"""Distributed RAM (16×4 bits, the 64 bits of four LUT4s), counted as 4 LUT4 equivalents."""
_E_FF = {"TRELLIS_FF"} | {f"FD1{k}3{t}X" for k in "SP" for t in "ABDIJ"}
_E_DSP = {"MULT18X18D", "MULT9X9D"}
_E_DSP_OTHER = {"ALU54B", "ALU24B"}
_E_BRAM18 = {"DP16KD": 1.0, "PDPW16KD": 1.0}
_E_MUX = {"PFUMX", "L6MUX21"}
_E_IO = {"TRELLIS_IO", "IB", "OB", "BB", "OBZ", "IOLOGIC", "SIOLOGIC"}
_E_CLOCK = {"DCCA", "DCSC", "EHXPLLL", "CLKDIVF", "ECLKSYNCB", "ECLKBRIDGECS", "OSCG"}
_E_CONST = {"VLO", "VHI"}

_IGNORED = {"$scopeinfo"}
"""Yosys bookkeeping cells (hierarchy scope records after flattening): no hardware, kept in extra."""


def _bump(d: dict[str, Any], key: str, n: float) -> None:
    d[key] = d.get(key, 0) + n


def classify_cells(cells: Mapping[str, float], arch: str) -> tuple[dict[str, float], dict[str, Any]]:
    """Map primitive cell counts of ``arch`` ("xilinx" or "ecp5") to resources and an ``extra`` breakdown.

    Returns ``(resources, extra)``: ``resources`` has ``luts``, ``ffs``, ``bram18``, ``uram``, ``dsps``;
    ``extra`` has ``cells`` (every count, as given), ``lut_by_size``, ``carry`` (by type) and
    ``carry_cells``, ``muxes``, ``lutram``, ``latches``, ``io``, ``clock``, ``const``, ``dsp_other``,
    ``ignored_cells`` (Yosys bookkeeping) and ``other_cells`` (types not in the tables; not counted in
    any resource), each only when non-empty.
    """
    if arch not in ARCHES:
        raise ValueError(f"arch: unknown {arch!r}; expected one of {ARCHES}")
    res = dict.fromkeys(_RES, 0.0)
    extra: dict[str, Any] = {"cells": {k: cells[k] for k in sorted(cells)}}
    groups: dict[str, dict[str, float]] = {}

    def put(group: str, cell: str, n: float) -> None:
        _bump(groups.setdefault(group, {}), cell, n)

    for cell, n in cells.items():
        if not n:
            continue
        if cell in _IGNORED:
            put("ignored_cells", cell, n)
        elif arch == "xilinx":
            if cell in _X_LUT:
                res["luts"] += _X_LUT[cell] * n
                put("lut_by_size", cell, n)
            elif cell in _X_LUTRAM:
                res["luts"] += _X_LUTRAM[cell] * n
                put("lutram", cell, n)
            elif cell in _X_FF:
                res["ffs"] += n
            elif cell in _X_LATCH:
                res["ffs"] += n
                put("latches", cell, n)
            elif cell in _X_DSP:
                res["dsps"] += n
            elif cell in _X_BRAM18:
                res["bram18"] += _X_BRAM18[cell] * n
            elif cell in _X_URAM:
                res["uram"] += n
            elif cell in _X_CARRY:
                put("carry", cell, n)
            elif cell in _X_MUX:
                put("muxes", cell, n)
            elif cell in _X_IO:
                put("io", cell, n)
            elif cell in _X_CLOCK:
                put("clock", cell, n)
            elif cell in _X_CONST:
                put("const", cell, n)
            else:
                put("other_cells", cell, n)
        else:  # ecp5
            if cell in _E_LUT:
                res["luts"] += n
                put("lut_by_size", cell, n)
            elif cell in _E_CARRY:
                res["luts"] += _E_CARRY[cell] * n
                put("carry", cell, n)
            elif cell in _E_LUTRAM:
                res["luts"] += _E_LUTRAM[cell] * n
                put("lutram", cell, n)
            elif cell in _E_FF:
                res["ffs"] += n
            elif cell in _E_DSP:
                res["dsps"] += n
            elif cell in _E_DSP_OTHER:
                put("dsp_other", cell, n)
            elif cell in _E_BRAM18:
                res["bram18"] += _E_BRAM18[cell] * n
            elif cell in _E_MUX:
                put("muxes", cell, n)
            elif cell in _E_IO:
                put("io", cell, n)
            elif cell in _E_CLOCK:
                put("clock", cell, n)
            elif cell in _E_CONST:
                put("const", cell, n)
            else:
                put("other_cells", cell, n)
    for group in sorted(groups):
        extra[group] = {k: groups[group][k] for k in sorted(groups[group])}
    if "carry" in extra:
        extra["carry_cells"] = sum(extra["carry"].values())
    return res, extra


# ------------------------------------------------------------------------------------- Yosys stat
def _load_json(obj: Mapping[str, Any] | str | bytes) -> dict[str, Any]:
    """A dict from a dict, JSON text, or log text that contains one JSON object (first ``{`` onwards)."""
    if isinstance(obj, Mapping):
        return dict(obj)
    text = obj.decode(errors="replace") if isinstance(obj, bytes) else str(obj)
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object in the text")
    value, _ = json.JSONDecoder().raw_decode(text[start:])
    if not isinstance(value, dict):
        raise ValueError("the JSON is not an object")
    return value


def _strip(name: str) -> str:
    return name[1:] if name.startswith("\\") else name


def display_name(module: str) -> str:
    r"""A readable module name: ``\foo`` → ``foo``; ``$paramod$<hash>\foo`` → ``foo#<hash[:8]>``."""
    name = _strip(module)
    if name.startswith("$paramod"):
        parts = name.split("\\")
        base = parts[1] if len(parts) > 1 else name
        tag = name[len("$paramod"):].split("\\")[0].lstrip("$")
        params = ",".join(parts[2:])
        return f"{base}#{tag[:8]}" if tag else (f"{base}({params})" if params else base)
    return name


def parse_stat(stat: Mapping[str, Any] | str | bytes, arch: str, top: str | None = None) -> dict[str, Any]:
    r"""Parse Yosys ``stat -json`` output into design totals and per-submodule rows.

    Module keys may carry Yosys' leading backslash (``\top``); a cell type naming a module of the design
    is a submodule instance. Totals are per instance (a module instantiated three times counts three
    times). Returns ``{"creator", "top", "hierarchical", "port_bits", "cells" (primitive totals),
    "resources", "extra", "rows", "modules"}`` where ``rows`` holds one entry per distinct submodule the top
    instantiates (``name``, ``module``, ``instances``, ``cells``, ``resources``, ``extra``) plus one for the
    top's own cells, or a single row for the top of a flat design.
    """
    data = _load_json(stat)
    modules_raw = data.get("modules")
    if not isinstance(modules_raw, Mapping) or not modules_raw:
        design = data.get("design")
        if not isinstance(design, Mapping):
            raise ValueError("Yosys stat JSON has neither 'modules' nor 'design'")
        modules_raw = {top or "design": design}
    modules = {_strip(k): v for k, v in modules_raw.items()}
    for name, entry in modules.items():
        if not isinstance(entry, Mapping):
            raise ValueError(f"Yosys stat JSON: module {name!r} is not an object")

    def cell_table(entry: Mapping[str, Any]) -> dict[str, float]:
        raw = entry.get("num_cells_by_type", entry.get("cells_by_type", {})) or {}
        return {str(k): float(v) for k, v in raw.items()}

    own: dict[str, dict[str, float]] = {}
    subs: dict[str, dict[str, float]] = {}
    for name, entry in modules.items():
        prim, sub = {}, {}
        for cell, n in cell_table(entry).items():
            key = _strip(cell)
            if key in modules and key != name:
                sub[key] = n
            else:
                prim[cell] = n
        own[name], subs[name] = prim, sub

    if top is not None:
        top_key = _strip(top)
        if top_key not in modules:
            raise ValueError(f"Yosys stat JSON: top module {top!r} not found; modules: {sorted(modules)}")
    else:
        used = {s for sub in subs.values() for s in sub}
        roots = [m for m in modules if m not in used]
        if len(roots) != 1:
            raise ValueError(f"Yosys stat JSON: cannot tell the top module among {roots or sorted(modules)}; "
                             "pass top=")
        top_key = roots[0]

    memo: dict[str, dict[str, float]] = {}

    def flat(name: str, stack: tuple[str, ...] = ()) -> dict[str, float]:
        if name in memo:
            return memo[name]
        if name in stack:
            raise ValueError(f"Yosys stat JSON: recursive hierarchy through {name!r}")
        out = dict(own[name])
        for sub, count in subs[name].items():
            for cell, n in flat(sub, (*stack, name)).items():
                _bump(out, cell, n * count)
        memo[name] = out
        return out

    def row(name: str, module: str, instances: float, cells: Mapping[str, float]) -> dict[str, Any]:
        scaled = {k: v * instances for k, v in cells.items()}
        res, extra = classify_cells(scaled, arch)
        return {"name": name, "module": module, "instances": instances, "cells": scaled, "resources": res,
                "extra": extra}

    totals = flat(top_key)
    resources, extra = classify_cells(totals, arch)
    hierarchical = bool(subs[top_key])
    if hierarchical:
        rows = [row(display_name(s), s, n, flat(s)) for s, n in sorted(subs[top_key].items())]
        if own[top_key]:
            rows.append(row(f"{display_name(top_key)} (top level)", top_key, 1, own[top_key]))
    else:
        rows = [row(display_name(top_key), top_key, 1, totals)]
    top_entry = modules[top_key]
    return {
        "creator": data.get("creator", ""),
        "top": top_key,
        "hierarchical": hierarchical,
        "port_bits": int(top_entry.get("num_port_bits", 0) or 0),
        "cells": totals,
        "resources": resources,
        "extra": extra,
        "rows": rows,
        "modules": {m: {"cells": own[m], "submodules": subs[m]} for m in sorted(modules)},
    }


# ---------------------------------------------------------------------------------------- nextpnr
_NEXTPNR_PLACED = {"luts": "TRELLIS_COMB", "ffs": "TRELLIS_FF", "dsps": "MULT18X18D", "bram18": "DP16KD",
                   "io": "TRELLIS_IO", "lutram": "TRELLIS_RAMW"}
"""Our names for the nextpnr-ecp5 bel types the summary picks out of its utilization table."""

_FMAX_LOG = re.compile(r"Max frequency for clock '([^']+)': ([0-9.]+) MHz \((PASS|FAIL) at ([0-9.]+) MHz\)")
_PATH_LOG = re.compile(r"Critical path report for (?:clock '([^']+)'|cross-domain path '([^']+)' -> '([^']+)')")
_DELAY_LOG = re.compile(r"([0-9.]+) ns logic, ([0-9.]+) ns routing")
_UTIL_LOG = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)


def parse_nextpnr(report: Mapping[str, Any] | str | None, log: str | None = None) -> dict[str, Any]:
    """Parse nextpnr-ecp5's ``--report`` JSON (and, where it lacks something, its log).

    Returns ``{"fmax": {clock: {"achieved", "constraint"}}, "fmax_mhz" (the slowest clock or None),
    "timing_met", "critical_paths": [{"from", "to", "delay_ns", "logic_ns", "routing_ns", "steps"}],
    "critical_path_ns" (the longest register-to-register path, else the longest path, else None),
    "utilization": {bel: {"used", "available"}}, "placed": {luts, ffs, ...}}``.
    A design without clocked paths has an empty ``fmax`` and, when its ports are on pads, an
    ``<async> -> <async>`` pad-to-pad path.
    """
    data = _load_json(report) if report else {}
    fmax: dict[str, dict[str, float]] = {}
    for clk, entry in (data.get("fmax") or {}).items():
        fmax[str(clk)] = {"achieved": float(entry.get("achieved", 0.0)),
                          "constraint": float(entry.get("constraint", 0.0))}
    paths: list[dict[str, Any]] = []
    for cp in data.get("critical_paths") or []:
        steps = cp.get("path") or []
        by_type: dict[str, float] = {}
        for step in steps:
            _bump(by_type, str(step.get("type", "")), float(step.get("delay", 0.0)))
        total = sum(by_type.values())
        paths.append({"from": cp.get("from", ""), "to": cp.get("to", ""), "delay_ns": total,
                      "logic_ns": by_type.get("logic", 0.0), "routing_ns": by_type.get("routing", 0.0),
                      "steps": len(steps)})
    util = {str(k): {"used": int(v.get("used", 0)), "available": int(v.get("available", 0))}
            for k, v in (data.get("utilization") or {}).items()}

    if log:
        if not fmax:
            for clk, got, _verdict, want in _FMAX_LOG.findall(log):
                fmax[clk] = {"achieved": float(got), "constraint": float(want)}  # the last (final) one wins
        if not paths:
            heads = list(_PATH_LOG.finditer(log))
            for i, head in enumerate(heads):
                end = heads[i + 1].start() if i + 1 < len(heads) else len(log)
                delays = _DELAY_LOG.findall(log[head.end():end])
                if not delays:
                    continue
                logic, routing = (float(x) for x in delays[0])
                src = f"posedge {head.group(1)}" if head.group(1) else head.group(2)
                dst = f"posedge {head.group(1)}" if head.group(1) else head.group(3)
                paths.append({"from": src, "to": dst, "delay_ns": logic + routing, "logic_ns": logic,
                              "routing_ns": routing, "steps": 0})
        if not util:
            for bel, used, avail in _UTIL_LOG.findall(log):
                util[bel] = {"used": int(used), "available": int(avail)}

    achieved = [v["achieved"] for v in fmax.values() if v["achieved"] > 0]
    placed = {ours: util[bel]["used"] for ours, bel in _NEXTPNR_PLACED.items() if bel in util}
    return {
        "fmax": fmax,
        "fmax_mhz": min(achieved) if achieved else None,
        "timing_met": all(v["achieved"] >= v["constraint"] for v in fmax.values()) if fmax else None,
        "critical_paths": paths,
        "critical_path_ns": _critical(paths),
        "utilization": util,
        "placed": placed,
    }


def _critical(paths: list[dict[str, Any]]) -> float | None:
    """The longest register-to-register path when there is one (what limits Fmax), else the longest path."""
    clocked = [p["delay_ns"] for p in paths
               if str(p["from"]).startswith(("posedge", "negedge")) and str(p["to"]).startswith(("posedge", "negedge"))]
    if clocked:
        return max(clocked)
    return max((p["delay_ns"] for p in paths), default=None)


# ---------------------------------------------------------------------------------- ECP5 part names
_ECP5_PART = re.compile(r"^LFE5(UM5G|UM|U)-(12|25|45|85)F(?:-(\d)([A-Z]{2}\d+)[A-Z]?)?$", re.I)
_ECP5_PACKAGES = {"BG256": "CABGA256", "BG381": "CABGA381", "BG554": "CABGA554", "BG756": "CABGA756",
                  "MG285": "CSFBGA285"}
ECP5_PACKAGE_IOS = {"CABGA256": 197, "CABGA381": 197, "CABGA554": 245, "CABGA756": 365, "CSFBGA285": 118}
"""User I/Os per ECP5 package (the smallest over device sizes; Lattice FPGA-DS-02012 pinout tables)."""


def ecp5_device_args(part: str) -> tuple[list[str], str]:
    """nextpnr-ecp5 device arguments for a Lattice part name, and the package chosen.

    ``LFE5U-85F`` → ``["--85k", "--package", "CABGA381", "--speed", "6"]``; a full ordering code such as
    ``LFE5UM-45F-8BG554C`` selects its speed grade and package. Without them nextpnr's defaults (CABGA381,
    speed 6) are used and stated.
    """
    m = _ECP5_PART.match(part.strip())
    if not m:
        raise ValueError(f"part: {part!r} is not an ECP5 part name (LFE5U-85F, LFE5UM-45F-8BG554C, ...)")
    kind, size, speed, pkg = m.groups()
    prefix = {"U": "", "UM": "um-", "UM5G": "um5g-"}[kind.upper()]
    package = _ECP5_PACKAGES.get((pkg or "").upper(), "CABGA381")
    return [f"--{prefix}{size}k", "--package", package, "--speed", speed or "6"], package
