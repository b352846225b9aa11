"""Bipolar ±1 quantization (MONAS-LQ's 1-bit, FINN's BIPOLAR): numerics, training, costs, exports, search space.

The torch quantizer equals the NumPy reference and qonnx's ``BipolarQuant`` executor bit for bit; a tiny bipolar
MLP trains above chance; BOPs, EBOPs and the FINN XNOR-popcount MVAU match hand-computed numbers; every export
path that runs reproduces torch with zero mismatches.
"""

from __future__ import annotations

import importlib.util
import math
import shutil

import numpy as np
import pytest
import torch
from torch import nn

import hwnas.nn as hn
from hwnas.cost.finn import finn_estimate, mvau_luts
from hwnas.cost.hls4ml_model import hls4ml_estimate
from hwnas.errors import HwnasError
from hwnas.export.graph import Quantize, Table, extract, run_reference
from hwnas.export.qonnx import SOURCE_KEY, export_qonnx, verify_qonnx
from hwnas.export.verify import verify_model
from hwnas.quant import BipolarQuantizer, FixedPointQuantizer, QuantizationError, calibrate
from hwnas.quant.reference import quantize_bipolar_np
from hwnas.space import Point, SearchSpace, SpaceConfig
from hwnas.train.trainer import TrainConfig, Trainer, accuracy

B = {"kind": "bipolar"}
S = {"bits": 6, "learnable": False, "granularity": "tensor", "round_mode": "RND", "overflow_mode": "SAT"}
S8 = {**S, "bits": 8}


def mlp() -> nn.Sequential:
    """Fixed-point input → bipolar weights; bipolar input and weights; a bipolar output quantizer feeding a layer."""
    torch.manual_seed(0)
    return nn.Sequential(
        hn.QLinear(6, 16, input_quantizer=S, weight_quantizer=B, bias_quantizer=S8),
        hn.QLinear(16, 8, input_quantizer=B, weight_quantizer=B, bias_quantizer=S8),
        hn.QActivation("identity", output_quantizer=B),
        hn.QLinear(8, 3, bias=False, input_quantizer=None, weight_quantizer=B),
    ).eval()


def cnn() -> nn.Sequential:
    """Bipolar conv weights, a padded conv over a bipolar input, pooling, flatten, a bipolar dense layer."""
    torch.manual_seed(0)
    return nn.Sequential(
        hn.QConv1d(2, 4, 3, padding=1, input_quantizer=S, weight_quantizer=B, bias_quantizer=S8),
        hn.QMaxPool1d(2),
        hn.QConv1d(4, 4, 3, padding=1, input_quantizer=B, weight_quantizer=B, bias_quantizer=S8),
        hn.Flatten(),
        hn.QLinear(16, 3, input_quantizer=B, weight_quantizer=B, bias_quantizer=S8),
    ).eval()


# ---------------------------------------------------------------------------------------------- numerics
def test_bipolar_matches_the_reference_and_qonnx_bit_for_bit() -> None:
    from qonnx.custom_op.general.bipolar_quant import binary_quant

    special = [0.0, -0.0, 1e-45, -1e-45, 1e-30, -1e-30, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 1e30, -1e30,
               np.inf, -np.inf, np.nan]
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        x = np.concatenate([np.array(special), rng.normal(0, 2, 1000), rng.normal(0, 1e-6, 200)]).astype(dtype)
        got = BipolarQuantizer()(torch.from_numpy(x)).numpy()
        ref = quantize_bipolar_np(x)
        q = binary_quant(x, np.ones((), dtype=dtype))
        assert got.dtype == ref.dtype == dtype
        assert np.array_equal(got, ref) and np.array_equal(got, q)
        assert set(np.unique(got)) == {-1.0, 1.0}
        assert got[0] == got[1] == 1.0 and got[3] == -1.0 and got[-1] == -1.0  # 0, -0.0 → +1; -tiny, NaN → -1
    assert quantize_bipolar_np(np.array([-2, 0, 5])).tolist() == [-1.0, 1.0, 1.0]  # integers give float64


def test_gradient_is_the_hardtanh_straight_through_estimator() -> None:
    x = torch.tensor([-2.0, -1.0, -0.3, 0.0, 0.7, 1.0, 1.5], requires_grad=True)
    y = BipolarQuantizer()(x)
    y.backward(torch.arange(1.0, 8.0))
    assert y.tolist() == [-1, -1, -1, 1, 1, 1, 1]
    assert x.grad.tolist() == [0, 2, 3, 4, 5, 6, 0]  # passed where |x| <= 1, zero outside


def test_bipolar_is_a_static_one_bit_quantizer_in_every_slot() -> None:
    lin = hn.QLinear(4, 3, input_quantizer=B, weight_quantizer=B, bias_quantizer=None)
    conv1 = hn.QConv1d(2, 3, 3, input_quantizer=B, weight_quantizer=B, bias_quantizer=None)
    conv2 = hn.QConv2d(2, 3, 3, input_quantizer=B, weight_quantizer=B, bias_quantizer=None)
    act = hn.QActivation("identity", input_quantizer=B, output_quantizer=B)
    for layer in (lin, conv1, conv2, act):
        assert all(isinstance(q, BipolarQuantizer) for q in (layer.input_quantizer, layer.output_quantizer,
                                                             layer.weight_quantizer) if q is not None)
    for layer in (lin, conv1, conv2):
        assert set(layer.quantized_weight().unique().tolist()) <= {-1.0, 1.0}
    q = lin.weight_quantizer
    assert q.max_bits() == 1.0 and float(q.element_bits()) == 1.0 and not q.learnable
    assert q.describe() == "bipolar ±1"
    x = torch.randn(8, 4)
    calibrate(lin, x)  # no range to measure: nothing changes
    signs = torch.where(x >= 0, 1.0, -1.0)
    assert torch.equal(lin(x), signs @ lin.quantized_weight().T + lin.bias)
    assert hn.to_learnable(nn.Sequential(lin))[0].weight_quantizer.__class__ is BipolarQuantizer  # left as is
    with pytest.raises(QuantizationError, match=r"^weight_quantizer\.learnable: a bipolar quantizer") as err:
        hn.QLinear(4, 3, weight_quantizer={"kind": "bipolar", "learnable": True})
    assert isinstance(err.value, HwnasError) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------- training
def test_tiny_bipolar_mlp_trains_above_chance() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(768, 8, generator=g)
    y = ((x[:, 0] + x[:, 1] - x[:, 2]) > 0).long()
    torch.manual_seed(0)
    model = nn.Sequential(hn.QLinear(8, 32, input_quantizer=S, weight_quantizer=B, bias_quantizer=S8),
                          hn.QLinear(32, 2, input_quantizer=B, weight_quantizer=B, bias_quantizer=S8))
    before = accuracy(model.eval(), x[512:], y[512:])
    Trainer(model, TrainConfig(epochs=15, batch_size=64, lr=1e-2, progress=False, seed=0)).fit(
        (x[:512], y[:512]), (x[512:], y[512:]))
    after = accuracy(model.eval(), x[512:], y[512:])
    assert after > 0.75 and after > before + 0.1, (before, after)
    assert set(model[1].quantized_weight().unique().tolist()) == {-1.0, 1.0}


# ---------------------------------------------------------------------------------------------- costs
def test_bops_ebops_and_weight_bits_count_one_bit() -> None:
    model = nn.Sequential(hn.QLinear(16, 8, input_quantizer=B, weight_quantizer=B, bias_quantizer=S8)).eval()
    model(torch.zeros(1, 16))
    assert hn.macs(model) == 128
    assert hn.bops(model) == 128 * 1 * 1
    # Σ b_x·b_w = 128·1·1, plus per output max(b_acc = 1 + 1, b_bias = 8) = 8
    assert float(hn.ebops(model)) == 128 + 8 * 8
    assert hn.weight_bits(model) == 128 * 1 + 8 * 8
    est = hls4ml_estimate(model, "ZC702", (16,))
    assert est.rows[0].extra["ebops"] == 128 + 8 * 8 and est.rows[0].dsps == 0


def test_finn_prices_bipolar_by_bipolar_layers_as_xnor_popcount() -> None:
    model = nn.Sequential(hn.QLinear(16, 8, bias=False, input_quantizer={**S, "bits": 4}, weight_quantizer=B),
                          hn.QActivation("identity"),
                          hn.QLinear(8, 4, bias=False, input_quantizer=B, weight_quantizer=B))
    rows = {r.name: r for r in finn_estimate(model, "ZC702", (16,)).rows}
    # bipolar weights x 4-bit input: an ordinary MVAU, W = 1, A = 4: mult 1·(2·1-1)·5 = 5, adder 5·(2-1) = 5,
    # acc = ceil(log2 16 + 1 + 4 - 1 - 1 + log2(1 + 2^-7) + 1) = 9 -> 300 + 1.1·(5 + 5 + 9) = 320.9
    assert rows["0:mvau"].luts == 320 and "xnor" not in rows["0:mvau"].extra
    # the sign: one threshold per channel on the 9-bit accumulator: 100 + 1·1·9 + ceil(8·1·9/64) = 111
    assert rows["1:thresh"].luts == 111 and rows["1:thresh"].extra["thresholds_per_channel"] == 1
    # bipolar x bipolar: XNOR (1 LUT per lane), popcount tree 2·1-1 = 1, popcount ceil(log2 9) = 4 bits
    xnor = rows["2:mvau"]
    assert xnor.extra["xnor"] and xnor.extra["acc_bits"] == 4
    assert xnor.luts == math.floor(300 + 1.1 * (1 + 1 + 4)) == 306 and xnor.cycles == 32
    assert mvau_luts(1, 1, 8, 4, 1, 1) == math.floor(300 + 1.1 * (2 + 2 + 5)) == 309  # W + A = 2 without XNOR
    for opts in ({"res_type": "dsp"}, {"mvau_variant": "rtl"}):  # no multipliers: no DSPs, HLS LUTs on both
        r = {r.name: r for r in finn_estimate(model, "ZC702", (16,), **opts).rows}["2:mvau"]
        assert r.dsps == 0 and r.luts == 306


# ---------------------------------------------------------------------------------------------- exports
def test_graph_and_qonnx_carry_bipolar_exactly() -> None:
    for make, shape in ((mlp, (6,)), (cnn, (2, 8))):
        model = make()
        x = torch.randn(96, *shape) * 2
        graph = extract(model, shape)
        tables = [n for n in graph.nodes if isinstance(n, Table)]
        assert tables and all(t.kind == "bipolar" for t in tables)
        values = [n for n in graph.nodes if isinstance(n, Quantize) and n.fmt.bipolar]
        assert len(values) == len(tables) and all(v.fmt.describe() == "fixed<2,2,TRN,SAT>" for v in values)
        assert np.array_equal(run_reference(graph, x), model(x).detach().double().numpy())
        report = verify_model(model, x, paths=["reference", "qonnx"])
        assert report.passed and not report.failures, report.table()
        ops = [n.op_type for n in export_qonnx(model, shape).graph.node]
        n_weights = sum(isinstance(m, BipolarQuantizer) for m in model.modules())
        assert ops.count("BipolarQuant") == n_weights  # every bipolar slot, weights and activations
    # the chain walker (a scaled-int model) writes BipolarQuant too
    walker = nn.Sequential(hn.QLinear(6, 8, bias=False, input_quantizer={"kind": "scaled", "bits": 8},
                                      weight_quantizer=B),
                           hn.QLinear(8, 3, bias=False, input_quantizer=B, weight_quantizer=B))
    x = torch.randn(64, 6)
    calibrate(walker, x)
    proto = export_qonnx(walker, (6,))
    assert [n.op_type for n in proto.graph.node] == ["Quant", "BipolarQuant", "MatMul", "BipolarQuant",
                                                     "BipolarQuant", "MatMul"]
    assert dict((p.key, p.value) for p in proto.metadata_props)[SOURCE_KEY].startswith("chain walker")
    assert verify_qonnx(walker, x)["mismatches"] == 0


@pytest.mark.skipif(importlib.util.find_spec("alkaid") is None, reason="alkaid is not installed (RTL path)")
def test_rtl_ir_carries_bipolar_exactly(tmp_path) -> None:
    from hwnas.export.rtl import export_rtl

    for make, shape in ((mlp, (6,)), (cnn, (2, 8))):
        model = make()
        x = torch.randn(96, *shape) * 2
        project = export_rtl(model, shape, tmp_path / make.__name__)
        assert np.array_equal(project.emulate(x), model(x).detach().double().numpy())


@pytest.mark.skipif(shutil.which("g++") is None or importlib.util.find_spec("hls4ml") is None,
                    reason="hls4ml's C emulation needs hls4ml and g++")
def test_hls4ml_c_emulation_carries_bipolar_exactly() -> None:
    model = cnn()
    report = verify_model(model, torch.randn(64, 2, 8) * 2, paths=["reference", "hls4ml"])
    assert report.passed and not report.failures and [r.path for r in report.ran] == ["hls4ml"], report.table()


# ---------------------------------------------------------------------------------------------- search space
def _space(one_bit: str | None) -> SearchSpace:
    prec = {"weight_bits": [1, 4], "act_bits": [1, 3]} | ({"one_bit": one_bit} if one_bit else {})
    cfg = SpaceConfig.model_validate({"family": "cnn1d", "conv_blocks": 1, "filters": [4], "kernel": [3],
                                      "dense_layers": 1, "dense_units": [8], "batch_norm": [True],
                                      "precision": prec})
    return SearchSpace(cfg, (2, 16), 3)


def test_space_one_bit_chooses_bipolar_or_fixed_at_one_bit() -> None:
    point = {"family": "cnn1d", "conv": [{"filters": 4, "kernel": 3, "pooling": "max", "batch_norm": True,
                                          "separable": False, "activation": "relu"}],
             "dense": [{"units": 8, "activation": "relu"}], "dropout": 0.0, "learned": False,
             "weight_bits": [1, 4, 1], "act_bits": [1, 3], "mapping": []}
    fixed = _space(None).build(Point.from_dict(point), seed=0)  # the default keeps 1-bit fixed point
    assert not any(isinstance(m, BipolarQuantizer) for m in fixed.modules())
    assert isinstance(fixed[0].weight_quantizer, FixedPointQuantizer) and fixed[1].kind == "relu"
    space = _space("bipolar")
    model = space.build(Point.from_dict(point), seed=0)
    assert isinstance(model[0].weight_quantizer, BipolarQuantizer)  # conv0: 1-bit weights
    assert model[1].kind == "identity" and isinstance(model[4].input_quantizer, BipolarQuantizer)  # sign(x)
    assert isinstance(model[4].weight_quantizer, FixedPointQuantizer) and model[5].kind == "relu"  # 4/3 bits
    assert isinstance(model[6].weight_quantizer, BipolarQuantizer)  # the classifier
    model.train()
    model(torch.randn(16, 2, 16))
    report = verify_model(model.eval(), torch.randn(48, 2, 16), paths=["reference", "qonnx"])
    assert report.passed and not report.failures, report.table()
    with pytest.raises(ValueError, match="one_bit: bipolar applies to searched bits"):
        SpaceConfig.model_validate({"precision": {"mode": "learned", "one_bit": "bipolar"}})
