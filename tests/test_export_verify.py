"""Verification runner, model files and the ``hwnas export/verify`` commands (QONNX and reference paths)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import hwnas.nn as hn
from hwnas.cli import main
from hwnas.export import ExportError, extract, load_model, save_model
from hwnas.export.result import compare, output_lsb, skipped
from hwnas.export.verify import default_inputs, verify_model


def fixed(bits: int, **kw) -> dict:
    return dict(bits=bits, learnable=False, **kw)


def qonnx_friendly() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        hn.QLinear(16, 24, input_quantizer=fixed(6, round_mode="RND_CONV"),
                   weight_quantizer=fixed(5, granularity="channel"), bias_quantizer=fixed(8)),
        hn.QActivation("relu"),
        hn.QLinear(24, 5, input_quantizer=fixed(5, signed=False, round_mode="TRN"), weight_quantizer=fixed(4),
                   bias_quantizer=fixed(6), output_quantizer=fixed(10, round_mode="RND_CONV")),
    )
    model(torch.randn(64, 16))
    return model.eval()


def hgq_model() -> nn.Module:
    """Per-parameter weight widths: fixed point only (QONNX carries one width per tensor or channel)."""
    torch.manual_seed(1)
    model = nn.Sequential(hn.QLinear(16, 8, input_quantizer=fixed(6)), hn.QActivation("relu"), hn.QLinear(8, 3))
    model(torch.randn(64, 16))
    return model.eval()


def test_compare_counts_samples_and_lsbs() -> None:
    ref = np.array([[0.5, 1.0], [0.25, -1.0], [0.0, 0.0]])
    got = ref.copy()
    got[1, 1] += 0.25
    got[2, 0] -= 0.5
    r = compare("x", ref, got, lsb=0.125)
    assert (r.samples, r.mismatches, r.first_mismatch) == (3, 2, 1)
    assert r.max_lsb == 4.0 and r.max_abs_diff == 0.5 and not r.passed
    same = compare("x", ref, ref.copy(), lsb=0.125)
    assert same.passed and same.mismatches == 0 and same.first_mismatch is None
    nan = got.copy()
    nan[0, 0] = np.nan
    assert compare("x", ref, nan).mismatches == 3
    assert output_lsb(ref) == 0.25 and np.all(output_lsb(ref, [3, 4]) == [0.125, 0.0625])
    with pytest.raises(ValueError, match="outputs for"):
        compare("x", ref, got[:2])
    s = skipped("rtl", "no verilator")
    assert not s.passed and s.skipped == "no verilator"


def test_default_inputs_are_seeded_and_cover_the_format() -> None:
    graph = extract(qonnx_friendly(), (16,))
    a, b = default_inputs(graph, 128, seed=3), default_inputs(graph, 128, seed=3)
    assert torch.equal(a, b) and not torch.equal(a, default_inputs(graph, 128, seed=4))
    fmt = graph.input_format
    hi = float(2.0 ** fmt.i.max())
    assert float(a.abs().max()) > hi  # some samples saturate
    assert float((a.abs() < hi).float().mean()) > 0.5
    with pytest.raises(ValueError, match="at least one"):
        default_inputs(graph, 0)


def test_verify_qonnx_and_reference_pass() -> None:
    model = qonnx_friendly()
    seen = []
    report = verify_model(model, input_shape=(16,), paths=["qonnx"], progress=seen.append)
    assert seen == ["reference", "qonnx"]
    assert [r.path for r in report.results] == ["reference", "qonnx"]
    assert all(r.skipped is None and r.mismatches == 0 for r in report.results)
    assert report.passed and report.samples == 256
    text = report.table()
    assert "qonnx" in text and "ok" in text
    assert report.as_dict()["passed"] is True


def wide_model() -> nn.Module:
    """16-bit inputs and weights over a fan-in of 96: sums need more than float32's 24 significant bits."""
    torch.manual_seed(2)
    model = nn.Sequential(
        hn.QLinear(96, 12, input_quantizer=fixed(16), weight_quantizer=fixed(16, granularity="channel"),
                   bias_quantizer=fixed(16)),
        hn.QActivation("relu"),
        hn.QLinear(12, 4, input_quantizer=fixed(16, signed=False), weight_quantizer=fixed(16),
                   bias_quantizer=fixed(16)),
    )
    model(torch.randn(64, 96))
    return model.eval()


def test_exact_paths_compare_with_float64_torch_where_float32_rounds(tmp_path) -> None:
    from hwnas.export.verify import _torch_outputs, _torch_outputs_float64

    model = wide_model()
    x = torch.randn(64, 96) * 4
    y32, y64 = _torch_outputs(model, x), _torch_outputs_float64(model, x)
    assert not np.array_equal(y32, y64)  # float32 torch really rounds here: the case is real
    report = verify_model(model, x, paths=["qonnx", "hls4ml"], output_dir=tmp_path)
    assert report.inexact_layers
    rows = {r.path: r for r in report.results}
    # the exact artefacts equal torch in float64, the float32 executor torch in float32: all bit for bit
    assert all(r.skipped is None and r.mismatches == 0 for r in rows.values()), report.table()
    assert report.passed and "float64" in report.table()


def test_a_path_that_cannot_express_the_model_is_skipped_with_the_reason() -> None:
    report = verify_model(hgq_model(), input_shape=(16,), paths=["qonnx"])
    qonnx = report.results[1]
    assert qonnx.skipped is not None and "not expressible" in qonnx.skipped and "0.weight_quantizer" in qonnx.skipped
    assert report.results[0].passed  # the reference still ran
    assert not report.passed  # no artefact path ran
    with pytest.raises(ExportError, match="unknown verification path"):
        verify_model(hgq_model(), input_shape=(16,), paths=["vhdl"])
    with pytest.raises(ExportError, match="NaN"):
        verify_model(hgq_model(), torch.full((4, 16), float("nan")), paths=["qonnx"])
    with pytest.raises(ExportError, match=r"x: samples of shape \(15,\)"):
        verify_model(hgq_model(), torch.zeros(4, 15), input_shape=(16,), paths=["qonnx"])


def test_model_file_round_trip_and_errors(tmp_path) -> None:
    model = qonnx_friendly()
    x = torch.randn(20, 16)
    path = save_model(model, tmp_path / "m.pt", (16,), test_inputs=x, metadata={"task": "toy"})
    bundle = load_model(path)
    assert bundle.input_shape == (16,) and bundle.metadata == {"task": "toy"}
    assert torch.equal(bundle.test_inputs, x)
    with torch.no_grad():
        assert torch.equal(bundle.model(x), model(x))
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError, match="test_inputs"):
        save_model(model, tmp_path / "bad.pt", (16,), test_inputs=torch.zeros(3, 15))
    with pytest.raises(ValueError, match="no such model file"):
        load_model(tmp_path / "missing.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an hwnas model file"):
        load_model(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_text("not a pickle")
    with pytest.raises(ValueError, match=r"not a readable|not an hwnas model file"):
        load_model(tmp_path / "junk.pt")


def test_cli_verify_and_export(tmp_path, capsys) -> None:
    path = save_model(qonnx_friendly(), tmp_path / "m.pt", (16,))
    out_json = tmp_path / "v.json"
    assert main(["verify", str(path), "--paths", "qonnx", "--samples", "64", "--json", str(out_json), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "64 samples" in text and "PASS" in text and "qonnx" in text
    assert json.loads(out_json.read_text())["passed"] is True
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(10, 16)).astype(np.float32))
    assert main(["verify", str(path), "--paths", "qonnx", "--data", str(tmp_path / "x.npy"), "--quiet"]) == 0
    assert "10 samples from" in capsys.readouterr().out
    np.save(tmp_path / "bad.npy", np.zeros((10, 15), dtype=np.float32))
    assert main(["verify", str(path), "--data", str(tmp_path / "bad.npy")]) == 2
    assert "--data: samples of shape (15,)" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "nope.pt")]) == 2
    # a model no artefact path can express: exit 1 with the reason
    hgq = save_model(hgq_model(), tmp_path / "hgq.pt", (16,))
    assert main(["verify", str(hgq), "--paths", "qonnx", "--quiet"]) == 1
    captured = capsys.readouterr().out
    assert "not expressible" in captured and "FAIL: no export path could run" in captured
    assert main(["export", str(path), "--to", "qonnx", "--out", str(tmp_path / "q")]) == 0
    assert (tmp_path / "q" / "model.qonnx.onnx").is_file()
    assert main(["export", str(hgq), "--to", "qonnx", "--out", str(tmp_path / "q2")]) == 2
    assert "0.weight_quantizer" in capsys.readouterr().err


def test_a_mismatch_is_located_at_the_first_differing_layer(monkeypatch) -> None:
    from hwnas.export import verify as verify_mod
    from hwnas.export.graph import Dense, run_reference

    calls = []

    def broken(model, x, graph, ref, lsb, workdir, options):
        # a deliberately wrong "artefact": the second Dense layer (layer "2") adds one LSB to output 0
        calls.append(len(graph.layers()))
        got = run_reference(graph, x)
        if any(isinstance(n, Dense) and n.name == "2" for n in graph.nodes):
            got = got.copy()
            got[:, 0] += 2.0 ** -6
        return compare("broken", ref, got, lsb=lsb)

    monkeypatch.setitem(verify_mod._RUNNERS, "broken", broken)
    torch.manual_seed(4)
    model = nn.Sequential(hn.QLinear(8, 8, input_quantizer=fixed(6)), hn.QActivation("relu"),
                          hn.QLinear(8, 8), hn.QActivation("relu"), hn.QLinear(8, 2))
    model(torch.randn(32, 8))
    report = verify_model(model, input_shape=(8,), paths=["broken"], samples=16)
    r = report.results[1]
    assert r.mismatches == 16 and r.first_mismatch == 0 and r.first_layer == "2"
    assert not report.passed and report.failures == [r]
    assert "first differing layer 2" in report.table()
    assert len(calls) <= 1 + 3  # the full run plus a bisection over 5 layers
    clean = verify_model(model, input_shape=(8,), paths=["broken"], samples=4, locate=False)
    assert clean.results[1].first_layer is None


@pytest.mark.slow
def test_cli_every_path_and_synth(tmp_path, capsys) -> None:
    pytest.importorskip("hls4ml")
    pytest.importorskip("alkaid")
    from hwnas.export.tools import rtl_tools_missing

    if rtl_tools_missing("verilog"):
        pytest.skip(f"RTL tools missing: {rtl_tools_missing('verilog')}")
    path = save_model(qonnx_friendly(), tmp_path / "m.pt", (16,))
    code = main(["verify", str(path), "--samples", "64", "--quiet", "--out", str(tmp_path / "art"),
                 "--strategy", "Resource", "--reuse-factor", "2", "--latency-cutoff", "3"])
    text = capsys.readouterr().out
    assert code == 0, text
    for p in ("reference", "qonnx", "hls4ml", "rtl"):
        assert any(line.startswith(p) and line.rstrip().endswith("ok") for line in text.splitlines()), (p, text)
    assert (tmp_path / "art" / "hls4ml").is_dir() and (tmp_path / "art" / "rtl").is_dir()
    # VHDL: tests/test_export_rtl.py::test_vhdl_files_are_written (written and run in GHDL)
    assert main(["export", str(path), "--to", "hls4ml", "--out", str(tmp_path / "bad"), "--reuse-factor", "7"]) == 2
    assert "reuse" in capsys.readouterr().err.lower()
    try:
        from hwnas.export.synth_tools import find_yosys

        find_yosys()
    except Exception as err:
        pytest.skip(f"no Yosys: {err}")
    assert main(["synth", str(path), "--target", "ZCU104", "--out", str(tmp_path / "syn"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "LUT" in out and "estimate / synthesis" in out


@pytest.mark.slow
def test_fused_batchnorm_model_is_bit_exact_on_every_path(tmp_path) -> None:
    """A CNN whose conv trained a fused BatchNorm exports as it is: QONNX, the hls4ml C emulation and the RTL in
    Verilator equal torch on every sample (a path whose tool is missing is reported skipped)."""
    torch.manual_seed(1)
    q = dict(bits=4, learnable=False, round_mode="RND", overflow_mode="SAT")
    model = nn.Sequential(
        hn.QConv1d(2, 4, 3, padding=1, input_quantizer=dict(q, bits=6), weight_quantizer=dict(q, granularity="channel"),
                   bias_quantizer=dict(q, bits=8), batch_norm=True),
        hn.QActivation("relu"), hn.QMaxPool1d(2), hn.Flatten(),
        hn.QLinear(4 * 4, 3, input_quantizer=dict(q, bits=5, signed=False), weight_quantizer=q,
                   bias_quantizer=dict(q, bits=8)))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(5):  # moves the weights and the BatchNorm statistics away from their initial values
        loss = model(torch.randn(32, 2, 8)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    report = verify_model(model, torch.randn(64, 2, 8), paths=["qonnx", "hls4ml", "rtl"], output_dir=tmp_path)
    assert {r.path for r in report.ran} >= {"qonnx"}
    assert all(r.mismatches == 0 for r in report.results if r.skipped is None), report.table()
    assert report.passed


def test_export_of_a_trial_model_takes_its_experiments_part(tmp_path, capsys) -> None:
    """A trial's model file records the experiment's target part; ``export --to hls4ml`` uses it unless --part."""
    pytest.importorskip("hls4ml")
    path = save_model(qonnx_friendly(), tmp_path / "m.pt", (16,), metadata={"target": "XC7Z020",
                                                                            "part": "xc7z020clg484-1"})
    assert main(["export", str(path), "--to", "hls4ml", "--out", str(tmp_path / "a")]) == 0
    assert "part xc7z020clg484-1 (the target XC7Z020" in capsys.readouterr().out
    assert "xc7z020clg484-1" in (tmp_path / "a" / "hls4ml_config.yml").read_text()
