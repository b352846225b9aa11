"""Cost models: catalog, FINN cycles/resources by hand, folding rules and search, QA-Score."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import hwnas.nn as hn
from hwnas.cost import (
    RESOURCES,
    CostError,
    Folding,
    devices,
    estimate,
    fold_for_resources,
    fold_for_throughput,
    get_device,
    model_metrics,
    qa_score,
    vgg10_amc,
)
from hwnas.cost.finn import accumulator_bits, mvau_bram18, mvau_dsps, mvau_luts, swg_cycles

Q8 = dict(bits=8, learnable=False, granularity="tensor")


def small_net() -> nn.Sequential:
    return nn.Sequential(
        hn.QConv1d(2, 4, 3, padding=1, input_quantizer=Q8, weight_quantizer=Q8, bias_quantizer=None),
        hn.QActivation("relu"),
        hn.QMaxPool1d(2),
        nn.Flatten(),
        hn.QLinear(32, 8, input_quantizer=Q8, weight_quantizer=Q8, bias_quantizer=None),
        hn.QActivation("relu"),
        hn.QLinear(8, 4, input_quantizer=Q8, weight_quantizer=Q8, bias_quantizer=None),
    )


def test_catalog_has_every_device_and_field():
    names = set(devices())
    assert {"XC7Z020", "ZCU102", "ZCU104", "VU13P", "VU9P", "U250", "ECP5-85K"} <= names
    for dev in devices().values():
        for res in RESOURCES:
            assert dev.capacity(res) >= 0
        assert dev.luts > 0 and dev.ffs > 0 and dev.bram18 > 0 and dev.dsps > 0 and dev.clock_mhz > 0
        assert set(dev.power) == {"static_w", "lut", "ff", "bram18", "uram", "dsp"}
    assert get_device("zc702").name == "XC7Z020"
    assert get_device("LFE5U-85F").family == "ecp5"
    with pytest.raises(CostError, match=r"unknown device 'KU040'.*XC7Z020"):
        get_device("KU040")


def test_finn_cycles_by_hand():
    est = estimate(small_net(), "ZC702", input_shape=(2, 16))
    cyc = {r.name: r.cycles for r in est.rows}
    assert cyc["0:pad"] == 18 * 2  # 18 padded positions x 2 channels / SIMD 1
    assert cyc["0:swg"] == 18 * 1 * 1 * 2 + 1 * max(16 * 3 * 1 * 2, 1 * 18 * 2)  # = 132
    assert cyc["0:mvau"] == 4 * 6 * 16  # MH=4, MW=2*3, 16 output positions
    assert cyc["1:thresh"] == 16 * 4
    assert cyc["2:pool"] == 16 * 4
    assert cyc["4:mvau"] == 8 * 32
    assert cyc["6:mvau"] == 4 * 8
    assert est.latency_cycles == sum(cyc.values())
    assert est.initiation_interval == max(cyc.values())
    assert est.latency_ms == pytest.approx(est.latency_cycles / 100e3)
    assert est.throughput == pytest.approx(100e6 / est.initiation_interval)
    shares = [s for _, _, s in est.latency_breakdown()]
    assert sum(shares) == pytest.approx(1.0)
    # folded: PE=2 over 4 outputs, SIMD=3 over 6 inputs
    f = estimate(small_net(), "ZC702", input_shape=(2, 16), folding={"0": Folding(2, 3), "4": Folding(4, 8)})
    cyc = {r.name: r.cycles for r in f.rows}
    assert cyc["0:mvau"] == 2 * 2 * 16 and cyc["4:mvau"] == 2 * 4
    assert cyc["0:swg"] == swg_cycles(2, (1, 18), (1, 16), (1, 3), (1, 1), (1, 1), 1)  # gcd(SIMD 3, 2 ch) = 1
    assert cyc["1:thresh"] == 16 * 2  # thresholds follow the MVAU's PE


def test_finn_resource_formulas_by_hand():
    # FINN-R LUTs: 300 + 1.1 * PE * (mult + adder + acc)
    acc = accumulator_bits(6, 8, 8)
    assert acc == math.ceil(math.log2(6) + 14 + math.log2(1 + 2 ** -(math.log2(6) + 14)) + 1) == 18
    assert mvau_luts(1, 1, 6, 4, 8, 8) == int(300 + 1.1 * (5 * 16 + 16 + 18)) == 425
    assert mvau_luts(1, 1, 6, 4, 8, 8, res_type="dsp") == int(300 + 1.1 * (16 + 18))
    # BRAM18: depth 24 x width 8 -> one RAMB18 in 2K x 9 mode; width 72 -> 36-bit words, two per row
    assert mvau_bram18(1, 1, 6, 4, 8) == 1
    assert mvau_bram18(3, 3, 36, 3072, 8) == math.ceil(36 * 3072 / 9 / 1024) * math.ceil(72 / 18)
    assert mvau_bram18(1, 1, 6, 4, 8, mem_style="distributed") == 0
    assert mvau_dsps(2, 4, 8, 8, res_type="dsp") == 8
    assert mvau_dsps(8, 6, 8, 8, variant="rtl", dsp_block="DSP58") == 16
    assert mvau_dsps(8, 6, 8, 8, variant="rtl", dsp_block="DSP48E2") == 12
    est = estimate(small_net(), "ZC702", input_shape=(2, 16))
    mv = next(r for r in est.rows if r.name == "0:mvau")
    assert mv.luts == 425 and mv.bram18 == 1 and mv.ffs == pytest.approx(1.8 * 425)


def test_more_parallelism_fewer_cycles_more_luts():
    prev_cycles, prev_luts = None, None
    for pe in (1, 2, 4, 8):
        est = estimate(small_net(), "ZC702", input_shape=(2, 16), folding={"4": Folding(pe, 1)})
        row = next(r for r in est.rows if r.name == "4:mvau")
        if prev_cycles is not None:
            assert row.cycles < prev_cycles and row.luts > prev_luts
        prev_cycles, prev_luts = row.cycles, row.luts


def test_invalid_folding_names_the_layer():
    with pytest.raises(CostError, match=r"layer 0: PE=3 must divide MH \(output channels\) = 4"):
        estimate(small_net(), "ZC702", input_shape=(2, 16), folding={"0": Folding(3, 1)})
    with pytest.raises(CostError, match="layer 4: SIMD=5"):
        estimate(small_net(), "ZC702", input_shape=(2, 16), folding={"4": Folding(1, 5)})
    with pytest.raises(CostError, match="no foldable layer named"):
        estimate(small_net(), "ZC702", input_shape=(2, 16), folding={"conv9": Folding()})


def test_unsupported_layers_and_options_are_named():
    model = nn.Sequential(hn.QLinear(4, 4, input_quantizer=Q8, weight_quantizer=Q8), nn.GELU())
    with pytest.raises(CostError, match="layer 1: GELU"):
        estimate(model, "ZC702", input_shape=(4,))
    grouped = nn.Sequential(hn.QConv1d(4, 4, 3, groups=2, input_quantizer=Q8, weight_quantizer=Q8))
    with pytest.raises(CostError, match="layer 0: grouped convolution"):
        estimate(grouped, "ZC702", input_shape=(4, 8))
    with pytest.raises(CostError, match="kind"):
        estimate(small_net(), "ZC702", input_shape=(2, 16), kind="vivado")
    with pytest.raises(CostError, match="res_type"):
        estimate(small_net(), "ZC702", input_shape=(2, 16), res_type="bram")


def test_vgg10_latency_matches_seed_and_feasibility():
    est = estimate(vgg10_amc(filters=32), "ZC702", input_shape=(2, 1024))
    assert est.latency_ms == pytest.approx(35.16, rel=0.1)  # seed 000 Table III, PE = SIMD = 1
    assert est.fits and est.verdict == "fits"
    assert 10 < est.energy_mj < 40  # the seed measured 19.6 mJ/sample on the ZC702
    conv1 = sum(r.cycles for r in est.rows if r.name.startswith("0:"))
    conv2 = sum(r.cycles for r in est.rows if r.name.startswith("4:"))
    assert conv2 > conv1  # where the cycles are: the early layers
    big = estimate(vgg10_amc(filters=256), "ZC702", input_shape=(2, 1024))
    assert not big.fits and "bram18" in big.verdict


def test_fold_for_throughput_and_for_resources():
    model = vgg10_amc(filters=32)
    folding, est = fold_for_throughput(model, "ZCU104", (2, 1024), target_fps=2000)
    assert est.assumptions["target_met"] and est.throughput >= 2000
    slow = estimate(model, "ZCU104", input_shape=(2, 1024))
    assert est.totals["luts"] > slow.totals["luts"]
    assert any(f.pe * f.simd > 1 for f in folding.values())
    _, est2 = fold_for_resources(model, "XC7Z020", (2, 1024), cap=0.9)
    assert all(u <= 0.9 for u in est2.utilization.values())
    assert est2.initiation_interval < slow.initiation_interval


def test_qa_score_and_model_metrics():
    assert qa_score(vgg10_amc(), (2, 1024)) == pytest.approx(1.0)
    small = vgg10_amc(filters=32, bits=4)
    score = qa_score(small, (2, 1024))
    m_small, m_base = model_metrics(small, (2, 1024)), model_metrics(vgg10_amc(), (2, 1024))
    assert score == pytest.approx(0.5 * m_small.bops / m_base.bops + 0.5 * m_small.weight_bits / m_base.weight_bits)
    assert score < 0.3
    conv_macs = sum(1024 // 2**j * 64 * (2 if j == 0 else 64) * 3 for j in range(7))
    assert m_base.macs == conv_macs + 512 * 128 + 128 * 128 + 128 * 24
    assert m_base.memory_bytes == m_base.weight_bits / 8
    with pytest.raises(CostError, match="baseline"):
        qa_score(small, (2, 1024), baseline="resnet")


def hgq_net() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(hn.QLinear(16, 32), hn.QActivation("relu"),
                          hn.QLinear(32, 5, input_quantizer=dict(hn.DEFAULT_ACTIVATION, signed=False)))
    model(torch.randn(4, 16))
    with torch.no_grad():  # make some operands wide enough for DSPs
        model[0].weight_quantizer.f[:4].add_(6)
        model[0].input_quantizer.f.add_(5)
    model(torch.randn(4, 16))  # weight integer bits follow the new fractional bits
    return model


def test_hls4ml_resources_follow_the_ebops_fits():
    model = hgq_net()
    eb = [layer.ebops().item() for layer in (model[0], model[2])]
    da = estimate(model, "VU13P", input_shape=(16,), kind="hls4ml", strategy="distributed_arithmetic")
    rows = {r.name: r for r in da.rows}
    assert rows["0"].luts == pytest.approx(eb[0] ** 0.985) and rows["0"].dsps == 0
    assert da.initiation_interval == 1
    for r in (1, 2, 4):
        est = estimate(model, "VU13P", input_shape=(16,), kind="hls4ml", reuse_factor=r)
        rows = {row.name: row for row in est.rows}
        assert rows["0"].luts + 55 * rows["0"].dsps == pytest.approx(eb[0] / r, abs=55)
        assert est.initiation_interval == r
        assert rows["0"].cycles == r + math.ceil(math.log2(16)) + 1
    assert {row.name: row for row in estimate(model, "VU13P", input_shape=(16,), kind="hls4ml").rows}["0"].dsps > 0


def test_hls4ml_reuse_factor_trades_resources_for_latency():
    model = hgq_net()
    a = estimate(model, "VU13P", input_shape=(16,), kind="hls4ml", reuse_factor=1)
    b = estimate(model, "VU13P", input_shape=(16,), kind="hls4ml", reuse_factor={"0": 8, "2": 4})
    assert b.totals["luts"] < a.totals["luts"] and b.latency_cycles > a.latency_cycles
    assert b.initiation_interval == 8
    with pytest.raises(CostError, match=r"layer 0: reuse factor 7"):
        estimate(model, "VU13P", input_shape=(16,), kind="hls4ml", reuse_factor=7)
    with pytest.raises(CostError, match="distributed arithmetic needs reuse factor 1"):
        estimate(model, "VU13P", input_shape=(16,), kind="hls4ml", strategy="distributed_arithmetic",
                 reuse_factor=2)
    with pytest.raises(CostError, match="strategy"):
        estimate(model, "VU13P", input_shape=(16,), kind="hls4ml", strategy="dataflow")


def test_hls4ml_a_reuse_factor_that_does_not_divide_names_the_layer_and_the_valid_one():
    from hwnas.tasks.baselines import mlp

    model = mlp((10,), 3, hidden=(7,), bits=8, bias_bits=16).eval()
    model(torch.zeros(1, 10))
    with pytest.raises(CostError, match=r"layer 0: reuse factor 4 must be a positive divisor of 70 .* the largest "
                                        r"valid one not above it is 2"):
        estimate(model, "ZCU102", input_shape=(10,), kind="hls4ml", reuse_factor=4)
    with pytest.raises(CostError, match=r"reuse factor 0 .* not above it is 1"):
        estimate(model, "ZCU102", input_shape=(10,), kind="hls4ml", reuse_factor=0)
    per_layer = {"0": 2, "2": 3}  # the dict form: each layer its own valid factor
    assert estimate(model, "ZCU102", input_shape=(10,), kind="hls4ml", reuse_factor=per_layer).latency_cycles > 0
