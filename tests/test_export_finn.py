"""The FINN path: hwnas's thresholds (NumPy, everywhere) and FINN's own front end and execution (where finn-plus
is installed: `make test` runs this file again in .venv-finn, beside finn-plus 1.6.1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import hwnas.nn as hn
from hwnas.export import ExportError, paths
from hwnas.export.finn import FINN_HINT, finn_missing, thresholds
from hwnas.export.graph import FixedFormat
from hwnas.export.verify import verify_model

ROUND_MODES = ["RND", "RND_CONV", "TRN", "TRN_ZERO", "RND_INF", "RND_ZERO", "RND_MIN_INF"]
needs_finn = pytest.mark.skipif(finn_missing() is not None, reason=FINN_HINT)


def fixed(bits: int, round_mode: str = "RND", overflow_mode: str = "SAT", **kw) -> dict:
    return dict(bits=bits, learnable=False, round_mode=round_mode, overflow_mode=overflow_mode, **kw)


def fmt_of(k: int, i: int, f: int, mode: str, overflow: str = "SAT", channels: int = 1) -> FixedFormat:
    def full(v: int) -> np.ndarray:
        return np.full((channels,), v, dtype=np.int64)
    return FixedFormat(full(k), full(i), full(f), mode, overflow, "test")


# ------------------------------------------------------------------------------- thresholds (no FINN needed)
@pytest.mark.parametrize("mode", ROUND_MODES)
@pytest.mark.parametrize("signed,overflow", [(1, "SAT"), (0, "SAT"), (1, "SAT_SYM")])
def test_thresholds_count_every_grid_value_to_its_code(mode: str, signed: int, overflow: str) -> None:
    """count(x >= T) + cmin == the quantizer's code, for every value of a finer grid across and beyond the range."""
    fmt = fmt_of(signed, 2, 2, mode, overflow)
    d = 2.0 ** -5  # the input grid: 3 bits finer than the LSB (ties and near-ties on it)
    t, cmin = thresholds(fmt, np.array([d]))
    x = np.arange(-12.0, 12.0, d)
    codes = (x[:, None] >= t[0][None, :]).sum(axis=1) + cmin
    expect = fmt.quantize(x.reshape(-1, 1) * np.ones((1, 1))).reshape(-1) * 4
    np.testing.assert_array_equal(codes, expect)
    # the thresholds sit half a grid step between grid values, whatever scale FINN divides out
    assert np.all(np.mod(t / d, 1.0) == 0.5)


@pytest.mark.parametrize("mode", ROUND_MODES)
def test_float32_input_thresholds_are_exact_at_ties_and_next_to_them(mode: str) -> None:
    fmt = fmt_of(1, 3, 3, mode)
    t, cmin = thresholds(fmt, None)
    base = np.arange(-80, 80) / 16.0  # every half LSB
    x = np.concatenate([base, np.nextafter(base.astype(np.float32), np.float32(np.inf)).astype(np.float64),
                        np.nextafter(base.astype(np.float32), np.float32(-np.inf)).astype(np.float64)])
    codes = (x.astype(np.float32)[:, None] >= t[0].astype(np.float32)[None, :]).sum(axis=1) + cmin
    np.testing.assert_array_equal(codes, fmt.quantize(x.reshape(-1, 1)).reshape(-1) * 8)


def test_thresholds_refuse_what_finn_cannot_carry() -> None:
    with pytest.raises(ExportError, match="overflow mode WRAP"):
        thresholds(fmt_of(1, 2, 2, "RND", "WRAP"), None)
    with pytest.raises(ExportError, match="17-bit activation"):
        thresholds(fmt_of(1, 8, 8, "RND"), None)


def test_the_path_is_registered_and_skipped_with_the_install_hint_without_finn() -> None:
    path = paths.get("finn")
    assert path.artefact == "finn" and not path.default
    if finn_missing() is None:
        pytest.skip("finn-plus is installed here")
    torch.manual_seed(0)
    model = nn.Sequential(hn.QLinear(8, 4, input_quantizer=fixed(6), weight_quantizer=fixed(4)))
    model(torch.randn(16, 8))
    report = verify_model(model.eval(), torch.randn(8, 8), paths=["finn"])
    (res,) = [r for r in report.results if r.path == "finn"]
    assert res.skipped is not None and "finn-plus is not installed" in res.skipped


# ----------------------------------------------------------------------------- FINN's front end (finn-plus)
def mlp(mode: str) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        hn.QLinear(16, 8, input_quantizer=fixed(6, mode), weight_quantizer=fixed(4, granularity="channel"),
                   bias_quantizer=fixed(8)),
        hn.QActivation("relu"),
        hn.QLinear(8, 4, input_quantizer=fixed(4, mode, signed=False), weight_quantizer=fixed(4),
                   bias_quantizer=fixed(6), output_quantizer=fixed(8, mode)),
    )
    model(torch.randn(64, 16))
    return model.eval()


def inputs(n: int, features: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ties = torch.round(torch.randn(n // 4, features, generator=g) * 64) / 64  # on the half-LSB grid of 6-bit inputs
    return torch.cat([torch.randn(n // 2, features, generator=g), ties,
                      torch.randn(n - n // 2 - n // 4, features, generator=g) * 4])


@needs_finn
@pytest.mark.parametrize("mode", ROUND_MODES)
def test_mlp_is_bit_exact_through_finn_for_every_rounding_mode(mode: str, tmp_path) -> None:
    report = verify_model(mlp(mode), inputs(96, 16, 1), paths=["finn"], output_dir=tmp_path / "v")
    (res,) = [r for r in report.results if r.path == "finn"]
    assert res.skipped is None and res.error is None, res
    assert res.samples == 96 and res.mismatches == 0, report.table()


@needs_finn
def test_amc_cnn_with_searched_folding_matches_and_writes_finn_files(tmp_path) -> None:
    """A 1-D CNN of the MONAS-LQ space (written as 2-D, height 1) with a folding: FINN's ApplyConfig gives each
    MVAU the PE/SIMD asked for, the execution matches torch, the folder holds the build files."""
    from finn.transformation.general import ApplyConfig
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from hwnas.export.finn import export_finn, export_finn_onnx, finn_front_end
    from hwnas.space.build import build_model
    from hwnas.space.point import ConvBlock, DenseLayer, Point

    point = Point(family="cnn1d", conv=(ConvBlock(8, 3), ConvBlock(8, 3)), dense=(DenseLayer(16),),
                  weight_bits=(4, 3, 4, 6), act_bits=(4, 3, 5))
    model = build_model(point, (2, 32), 5, seed=0)
    model(torch.randn(32, 2, 32))
    model.eval()
    folding = {"0": (2, 3), "3": (4, 8), "7": (8, 16), "9": (5, 2)}
    report = verify_model(model, torch.randn(40, 2, 32), paths=["finn"], output_dir=tmp_path / "v",
                          options={"finn": {"folding": folding, "target": "ZC702"}})
    (res,) = [r for r in report.results if r.path == "finn"]
    assert res.error is None and res.skipped is None and res.mismatches == 0, report.table()
    folder = tmp_path / "v" / "finn"
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    assert {"model.qonnx.onnx", "folding_config.json", "dataflow_build_config.json", "hwnas_finn.json"} <= set(names)
    record = json.loads((folder / "hwnas_finn.json").read_text())
    assert set(record["layers"]) == set(folding)
    assert record["finn_exp_cycles"] and record["finn_resources"] and record["hwnas"]
    # the folding file is what build_dataflow's step_apply_folding_config reads after step_specialize_layers:
    # FINN's ApplyConfig on a fresh specialized front end sets the PE/SIMD chosen, under those node names
    config = json.loads((folder / "folding_config.json").read_text())
    build = finn_front_end(export_finn_onnx(model, (2, 32)), layers=list(folding))
    m = build.specialized.transform(ApplyConfig(config))
    assert isinstance(m, ModelWrapper)
    for layer, (pe, simd) in folding.items():
        node = m.get_node_from_name(record["layers"][layer])
        assert node.op_type.startswith("MVAU_")  # MVAU_hls / MVAU_rtl: what FINN specializes for the part
        inst = getCustomOp(node)
        assert (inst.get_nodeattr("PE"), inst.get_nodeattr("SIMD")) == (pe, simd)
        # FINN's MVAU cycle formula and hwnas's FINN cost model agree on the matrix layers
        hw = [row["cycles"] for name, row in record["hwnas"].items() if name.startswith(f"{layer}:mvau")]
        assert hw == [record["finn_exp_cycles"][node.name]], (layer, hw, record["finn_exp_cycles"])
    cfg = json.loads((folder / "dataflow_build_config.json").read_text())
    assert cfg["folding_config_file"] == "folding_config.json"
    # export_finn writes the same folder for `hwnas export --to finn` / run.export
    line = export_finn(model, (2, 32), tmp_path / "e" / "finn", folding=folding)
    assert "FINN folder written" in line and (tmp_path / "e" / "finn" / "folding_config.json").exists()
    with pytest.raises(ExportError, match="PE=3"):
        export_finn(model, (2, 32), tmp_path / "bad", folding={"0": (3, 1)})


@needs_finn
def test_bipolar_layers_become_xnor_popcount_mvaus_and_match(tmp_path) -> None:
    """±1 weights and activations: FINN's XNOR-popcount MVAU (binaryXnorMode) on the bipolar×bipolar layers, an
    unpadded bipolar CNN exact; a padded convolution over a bipolar input is refused with FINN's reason."""
    from qonnx.custom_op.registry import getCustomOp

    from hwnas.export.finn import export_finn_onnx, finn_front_end

    b, s = {"kind": "bipolar"}, fixed(6)
    torch.manual_seed(0)
    mlp_b = nn.Sequential(
        hn.QLinear(6, 16, input_quantizer=s, weight_quantizer=b, bias_quantizer=fixed(8)),
        hn.QLinear(16, 8, input_quantizer=b, weight_quantizer=b, bias_quantizer=fixed(8)),
        hn.QActivation("identity", output_quantizer=b),
        hn.QLinear(8, 3, bias=False, input_quantizer=None, weight_quantizer=b)).eval()
    cnn_b = nn.Sequential(
        hn.QConv1d(2, 4, 3, padding=1, input_quantizer=s, weight_quantizer=b, bias_quantizer=fixed(8)),
        hn.QMaxPool1d(2),
        hn.QConv1d(4, 4, 3, padding=0, input_quantizer=b, weight_quantizer=b, bias_quantizer=fixed(8)),
        hn.Flatten(),
        hn.QLinear(8, 3, input_quantizer=b, weight_quantizer=b, bias_quantizer=fixed(8))).eval()
    for name, model, shape in (("mlp", mlp_b, (6,)), ("cnn", cnn_b, (2, 8))):
        model(torch.randn(16, *shape))
        report = verify_model(model, torch.randn(64, *shape) * 2, paths=["finn"], output_dir=tmp_path / name)
        (res,) = [r for r in report.results if r.path == "finn"]
        assert res.error is None and res.skipped is None and res.mismatches == 0, (name, report.table())
    build = finn_front_end(export_finn_onnx(mlp_b, (6,)), layers=["0", "1", "3"])
    xnor = {layer: getCustomOp(build.specialized.get_node_from_name(node)).get_nodeattr("binaryXnorMode")
            for layer, node in build.layer_nodes.items()}
    assert xnor == {"0": 0, "1": 1, "3": 1}  # layer 0 reads the 6-bit input: a plain MVAU
    padded = nn.Sequential(*[m for m in cnn_b])
    padded[2] = hn.QConv1d(4, 4, 3, padding=1, input_quantizer=b, weight_quantizer=b)
    padded[4] = hn.QLinear(16, 3, input_quantizer=b, weight_quantizer=b)
    padded(torch.randn(4, 2, 8))
    with pytest.raises(ExportError, match="padded convolution over a bipolar"):
        export_finn_onnx(padded.eval(), (2, 8))


def test_wide_activations_finn_would_round_half_up_are_refused_unless_their_thresholds_are_even() -> None:
    """FINN makes a Requant layer (floor(x·s + b + ½)) of a ≥ 9-bit MultiThreshold whose steps agree within 1 %;
    RND and TRN thresholds are exactly even there (exact), RND_CONV's alternate by half a step of an input grid
    2^13 times finer than the LSB (refused)."""
    from hwnas.export.finn import export_finn_onnx

    def model(mode: str) -> nn.Module:
        torch.manual_seed(0)
        m = nn.Sequential(hn.QLinear(8, 4, input_quantizer=fixed(8, "RND"), weight_quantizer=fixed(8),
                                     bias=False, output_quantizer=fixed(10, mode, i=9, f=0)))
        m(torch.randn(32, 8))
        return m.eval()

    for mode in ("RND", "TRN"):
        export_finn_onnx(model(mode), (8,))
    with pytest.raises(ExportError, match="Requant layer"):
        export_finn_onnx(model("RND_CONV"), (8,))


def test_run_hands_the_finn_path_the_folding_the_search_priced() -> None:
    """`hwnas run`'s export/verify stages: a point's searched PE/SIMD per layer, else the cheapest folding for the
    target frame rate (the cost model's own), else fully folded."""
    from hwnas.config import parse_experiment
    from hwnas.pipeline_export import path_options
    from hwnas.space.build import build_model
    from hwnas.space.point import DenseLayer, LayerMapping, Point

    text = ("name: f\ntask: {name: digits}\nobjectives: [{metric: accuracy, direction: maximize}]\n"
            "space: {family: mlp}\nhardware: {target: ZC702, model: finn%s}\n")
    point = Point(family="mlp", dense=(DenseLayer(16),), weight_bits=(4, 4), act_bits=(4,),
                  mapping=(LayerMapping("dense0", pe=4, simd=2), LayerMapping("classifier", pe=1, simd=4)))
    model = build_model(point, (64,), 10, seed=0)
    model(torch.randn(8, 64))
    exp = parse_experiment(text % "")
    names = [n for n, m in model.named_children() if isinstance(m, hn.QLinear)]
    opts = path_options(exp, model.eval(), (64,), point.to_dict())["finn"]
    assert opts["folding"] == {names[0]: [4, 2], names[1]: [1, 4]}
    assert opts["part"] and opts["target"] == exp.device().name
    assert path_options(exp, model, (64,))["finn"]["folding"] == {}  # no point, no frame rate: fully folded
    fast = path_options(parse_experiment(text % ", target_fps: 1.0e6"), model, (64,))["finn"]["folding"]
    assert set(fast) == set(names) and any(pe * simd > 1 for pe, simd in fast.values())


@needs_finn
def test_hwnas_run_exports_and_verifies_the_finn_folder_of_the_selected_model(tmp_path) -> None:
    """`hwnas run` with `run.export/verify: [finn]` on a FINN target: the selected model's finn/ folder carries the
    folding the search priced (cheapest for the target frame rate), and FINN's execution matches torch."""
    from hwnas.cli import main
    from hwnas.config import load_experiment
    from tests.experiments import tiny_mlp

    path = tmp_path / "exp.yaml"
    path.write_text(tiny_mlp(name="tiny-finn", trials=2, bits="{min: 3, max: 6}", dense_min=1).replace(
        "{metric: bops, direction: minimize}", "{metric: luts, direction: minimize}").replace(
        "hardware: {target: zcu104, model: hls4ml}", "hardware: {target: ZC702, model: finn, target_fps: 2.0e6}")
        + "run: {select: [best], export: [finn], verify: [finn], verify_samples: 40, synth: off, "
          "local: {enabled: false}}\n")
    assert main(["run", str(path), "--quiet"]) == 0
    out = load_experiment(path).output_dir()
    verified = json.loads(next((out / "verify").glob("trial_*.json")).read_text())
    (row,) = [p for p in verified["paths"] if p["path"] == "finn"]
    assert row["mismatches"] == 0 and row["samples"] == 40, row
    folder = next((out / "export").glob("trial_*/finn"))
    record = json.loads((folder / "hwnas_finn.json").read_text())
    assert record["folding"] and any(v["PE"] * v["SIMD"] > 1 for k, v in record["folding"].items() if "MVAU" in k)
