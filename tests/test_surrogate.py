"""The learned surrogate (hwnas.cost.surrogate, hardware.model: surrogate)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import hwnas.nn as hn
from hwnas.config import ConfigError, parse_experiment
from hwnas.cost import CostError, estimate
from hwnas.cost.surrogate import (
    FEATURES,
    LEARNED,
    MODEL_FILE,
    NO_XILINX_FMAX,
    Forest,
    Surrogate,
    load_surrogate,
    surrogate_features,
)

# Six held-out designs of bench/data/designs-v1.jsonl (int(key, 16) % 4 == 0, never trained on), as
# `bench/train_surrogate.py --fixture 6` prints them: the spec rebuilds the model, then Yosys's counts.
FIXTURE = [
    {"spec": {"arch": {"dims": [8, 16, 12, 5], "family": "mlp"}, "index": 1, "latency_cutoff_ns": 5.0,
              "max_macs": 500, "prune": 0.32, "quant": {"act_bits": 5, "kind": "fixed", "weight_bits": 3},
              "seed": 1}, "luts": 1304.0, "ffs": 281.0, "ebops": 5964.0},
    {"spec": {"arch": {"dims": [8, 16, 4, 6], "family": "mlp"}, "index": 51, "latency_cutoff_ns": 5.0,
              "max_macs": 500, "prune": 0.0, "quant": {"act_bits": 8, "kind": "hgq", "weight_bits": 2}, "seed": 1},
     "luts": 120.0, "ffs": 43.0, "ebops": 840.0},
    {"spec": {"arch": {"dims": [14, 24, 4, 4], "family": "mlp"}, "index": 93, "latency_cutoff_ns": 2.0,
              "max_macs": 500, "prune": 0.49, "quant": {"act_bits": 7, "kind": "hgq", "weight_bits": 3},
              "seed": 1}, "luts": 81.0, "ffs": 89.0, "ebops": 1093.0},
    {"spec": {"arch": {"dims": [9, 4, 32, 2], "family": "mlp"}, "index": 128, "latency_cutoff_ns": -1.0,
              "max_macs": 500, "prune": 0.58, "quant": {"act_bits": 5, "kind": "fixed", "weight_bits": 5},
              "seed": 1}, "luts": 698.0, "ffs": 0.0, "ebops": 6080.0},
    {"spec": {"arch": {"channels": 1, "family": "cnn2d", "filters": 2, "out": 2, "size": 6}, "index": 168,
              "latency_cutoff_ns": 2.0, "max_macs": 500, "prune": 0.26,
              "quant": {"act_bits": 5, "kind": "hgq", "weight_bits": 5}, "seed": 1},
     "luts": 979.0, "ffs": 847.0, "ebops": 3293.0},
    {"spec": {"arch": {"channels": 3, "family": "cnn1d", "filters": 3, "out": 2, "size": 16}, "index": 192,
              "latency_cutoff_ns": 2.0, "max_macs": 500, "prune": 0.29,
              "quant": {"act_bits": 4, "kind": "hgq", "weight_bits": 3}, "seed": 1},
     "luts": 468.0, "ffs": 418.0, "ebops": 2619.0},
]

# Held-out pipelined designs of bench/data/designs-ecp5-v1.jsonl (the same specs placed and routed by nextpnr-ecp5
# 0.11.1 on an ECP5-85 at --freq 100), as `bench/train_surrogate.py --fixture 6` prints them: nextpnr's Fmax.
FIXTURE_ECP5 = [
    {"spec": {"arch": {"dims": [8, 16, 12, 5], "family": "mlp"}, "index": 1, "latency_cutoff_ns": 5.0,
              "max_macs": 500, "prune": 0.32, "quant": {"act_bits": 5, "kind": "fixed", "weight_bits": 3},
              "seed": 1}, "fmax_mhz": 56.918},
    {"spec": {"arch": {"channels": 1, "family": "cnn1d", "filters": 2, "out": 3, "size": 12}, "index": 37,
              "latency_cutoff_ns": 2.0, "max_macs": 500, "prune": 0.47,
              "quant": {"act_bits": 7, "kind": "hgq", "weight_bits": 2}, "seed": 1}, "fmax_mhz": 122.205},
    {"spec": {"arch": {"dims": [12, 6, 24, 7], "family": "mlp"}, "index": 57, "latency_cutoff_ns": 2.0,
              "max_macs": 500, "prune": 0.0, "quant": {"act_bits": 6, "kind": "fixed", "weight_bits": 5},
              "seed": 1}, "fmax_mhz": 66.216},
    {"spec": {"arch": {"dims": [15, 6, 3], "family": "mlp"}, "index": 65, "latency_cutoff_ns": 5.0,
              "max_macs": 500, "prune": 0.41, "quant": {"act_bits": 7, "kind": "hgq", "weight_bits": 8},
              "seed": 1}, "fmax_mhz": 55.454},
    {"spec": {"arch": {"dims": [14, 24, 4, 4], "family": "mlp"}, "index": 93, "latency_cutoff_ns": 2.0,
              "max_macs": 500, "prune": 0.49, "quant": {"act_bits": 7, "kind": "hgq", "weight_bits": 3},
              "seed": 1}, "fmax_mhz": 91.408},
    {"spec": {"arch": {"dims": [9, 4, 7], "family": "mlp"}, "index": 98, "latency_cutoff_ns": 2.0,
              "max_macs": 500, "prune": 0.35, "quant": {"act_bits": 4, "kind": "hgq", "weight_bits": 5},
              "seed": 1}, "fmax_mhz": 78.438},
]
FMAX_MEDIAN = 67.7
"""The median Fmax of the ECP5 training split (the trivial baseline bench/estimator_accuracy.py scores)."""

EBOPS_FIT = (0.2288, 1.0453)
"""LUT ≈ a·EBOPs^b fitted on the same training split (bench/estimator_accuracy.py prints it)."""


@pytest.fixture(scope="module")
def fixture_features(dataset):
    out = []
    for row in FIXTURE:
        model, shape = dataset.build_model(row["spec"])
        cut = row["spec"]["latency_cutoff_ns"]
        out.append(surrogate_features(model, shape, cut if cut > 0 else 0.0))
    return out


@pytest.fixture(scope="module")
def ecp5_features(dataset):
    return [surrogate_features(*dataset.build_model(row["spec"]), row["spec"]["latency_cutoff_ns"])
            for row in FIXTURE_ECP5]


def fixed(bits: int, **kw) -> dict:
    return dict(bits=bits, learnable=False, **kw)


def test_the_committed_file_is_plain_json_that_round_trips(tmp_path: Path, fixture_features, ecp5_features) -> None:
    spec = json.loads(MODEL_FILE.read_text())  # JSON, never a pickle
    assert spec["format"] == "hwnas-surrogate" and spec["features"] == list(FEATURES)
    assert set(spec["targets"]) == {*LEARNED, "fmax_mhz"} and spec["seed"] == 0
    assert spec["targets"]["fmax_mhz"]["device"] == "ECP5-85" and spec["name"] == "surrogate_v2"
    sur = load_surrogate()
    x = np.stack([f.vector() for f in fixture_features + ecp5_features])
    sur.save(tmp_path / "again.json")
    again = Surrogate.load(tmp_path / "again.json")
    a, b = sur.predict_matrix(x), again.predict_matrix(x)
    for target in (*LEARNED, "fmax_mhz"):
        for q in ("point", "p10", "p90"):
            assert np.array_equal(a[target][q], b[target][q])
        assert np.all(a[target]["p10"] <= a[target]["point"]) and np.all(a[target]["point"] <= a[target]["p90"])
    with pytest.raises(CostError, match="not a hwnas-surrogate file"):
        Surrogate.from_spec({"format": "pickle"})


@pytest.mark.parametrize("loss", ["squared_error", "quantile"])
def test_forest_arrays_reproduce_scikit_learn(loss: str) -> None:
    from sklearn.ensemble import GradientBoostingRegressor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4)) * [1.0, 10.0, 1e3, 0.1]
    y = np.sin(x[:, 0]) + 0.01 * x[:, 1] + rng.normal(size=80) * 0.1
    gbr = GradientBoostingRegressor(loss=loss, alpha=0.9, n_estimators=15, max_depth=3, random_state=0).fit(x, y)
    spec = json.loads(json.dumps(Forest.from_sklearn(gbr)))  # through JSON text, as the file stores it
    probe = np.vstack([x, rng.normal(size=(40, 4)) * [1.0, 10.0, 1e3, 0.1]])
    assert np.max(np.abs(Forest(spec).predict(probe) - gbr.predict(probe))) < 1e-9


def test_beats_the_ebops_relation_on_held_out_designs(fixture_features) -> None:
    sur = load_surrogate()
    true = np.array([r["luts"] for r in FIXTURE])
    ebops = np.array([r["ebops"] for r in FIXTURE])
    for f, row in zip(fixture_features, FIXTURE, strict=True):
        assert f.values["ebops"] == pytest.approx(row["ebops"])  # the features see the model the dataset measured
        assert not sur.out_of_range(f), sur.out_of_range(f)
    pred = sur.predict_matrix(np.stack([f.vector() for f in fixture_features]))["luts"]["point"]

    def mape(est: np.ndarray) -> float:
        return float(np.mean(np.abs(est / true - 1)))

    a, b = EBOPS_FIT
    assert mape(pred) < 0.15
    assert mape(pred) < mape(a * ebops**b) / 2 and mape(pred) < mape(ebops**0.985) / 5
    piped = np.array([r["spec"]["latency_cutoff_ns"] > 0 for r in FIXTURE])
    preds = [sur.predict(f) for f in fixture_features]
    ff = np.array([p["ffs"]["point"] for p in preds])
    true_ff = np.array([r["ffs"] for r in FIXTURE])
    assert np.all(ff[~piped] == 0) and np.mean(np.abs(ff[piped] / true_ff[piped] - 1)) < 0.3


def test_out_of_range_queries_warn_in_the_estimate_and_the_log(caplog, monkeypatch) -> None:
    import hwnas.cost.surrogate as surrogate

    monkeypatch.setattr(surrogate, "_WARNED", set())  # warned once per kind of excursion and process
    torch.manual_seed(0)
    big = nn.Sequential(hn.QLinear(64, 64, input_quantizer=fixed(6), weight_quantizer=fixed(6),
                                   bias_quantizer=fixed(8)),
                        hn.QActivation("relu"),
                        hn.QLinear(64, 10, input_quantizer=fixed(6, signed=False), weight_quantizer=fixed(6),
                                   bias_quantizer=fixed(8)))
    big(torch.randn(32, 64))
    with caplog.at_level(logging.WARNING, logger="hwnas.cost.surrogate"):
        est = estimate(big.eval(), "ZCU104", input_shape=(64,), kind="surrogate", latency_cutoff_ns=5.0)
    oor = est.assumptions["out_of_range"]
    assert any(m.startswith("macs = 4736 outside the training range [") for m in oor), oor
    assert est.rows[0].extra["out_of_range"] == oor
    assert "surrogate surrogate_v2: query outside its training range, the estimate extrapolates" in caplog.text
    assert "macs = 4736 outside the training range [32, 500]" in caplog.text
    lo, hi = est.assumptions["interval"]["luts"]
    assert lo <= est.totals["luts"] <= hi and math.isfinite(hi) and est.totals["dsps"] == 0
    with pytest.raises(CostError, match=r"^model: outside the surrogate's training range: .*macs = 4736"):
        estimate(big, "ZCU104", input_shape=(64,), kind="surrogate", latency_cutoff_ns=5.0, strict=True)
    # a layer kind the dataset never had
    table = nn.Sequential(hn.QLinear(4, 4, input_quantizer=fixed(6), weight_quantizer=fixed(4),
                                     bias_quantizer=fixed(6)),
                          hn.QActivation("tanh", input_quantizer=fixed(6), output_quantizer=fixed(5)),
                          hn.QLinear(4, 2, weight_quantizer=fixed(4), bias_quantizer=fixed(6)))
    table(torch.randn(16, 4))
    est = estimate(table.eval(), "ZCU104", input_shape=(4,), kind="surrogate", latency_cutoff_ns=5.0)
    assert any(m.startswith("layer kind QActivation(tanh,table) never seen in training")
               for m in est.assumptions["out_of_range"])
    # a block that is not a chain: its logic is not followed, and the estimate says so
    block = nn.Sequential(hn.QResidualBlock(1, 2, 4, input_quantizer=fixed(6), activation_quantizer=fixed(6),
                                            weight_quantizer=fixed(4), bias_quantizer=fixed(6)),
                          nn.Flatten(), hn.QLinear(32, 2, input_quantizer=fixed(6), weight_quantizer=fixed(4)))
    block(torch.randn(16, 2, 8))
    est = estimate(block.eval(), "ZCU104", input_shape=(2, 8), kind="surrogate", latency_cutoff_ns=5.0)
    assert "0: QResidualBlock is a block, not a chain of hwnas layers" in est.assumptions["out_of_range"]


def test_in_range_estimate_is_quiet_and_cutoff_sets_latency(caplog, dataset) -> None:
    model, shape = dataset.build_model(FIXTURE[0]["spec"])
    with caplog.at_level(logging.WARNING, logger="hwnas.cost.surrogate"):
        est = estimate(model, "ZCU104", input_shape=shape, kind="surrogate", latency_cutoff_ns=5.0)
    assert est.assumptions["out_of_range"] == [] and "outside" not in caplog.text
    delay = est.rows[0].extra["delay_ns"]["point"]
    assert est.latency_cycles == max(math.ceil(delay / 5.0), 1) and est.initiation_interval == 1
    assert est.assumptions["seconds"] < 1.0


def test_config_and_a_trials_pricing_use_the_surrogate(tmp_path: Path) -> None:
    from hwnas.nn import fold_batchnorm
    from hwnas.search.objective import TrialContext, price

    base = ("name: tiny\nseed: 3\noutput: out\ntask: {name: digits}\nspace:\n  family: mlp\n"
            "  dense_layers: {min: 1, max: 1}\n  dense_units: [8]\n"
            "  precision: {weight_bits: {min: 3, max: 3}, act_bits: {min: 4, max: 4}}\n"
            "objectives:\n  - {metric: accuracy, direction: maximize}\n  - {metric: luts, direction: minimize}\n"
            "run: {rtl: {latency_cutoff_ns: 5}}\n")
    exp = parse_experiment(base + "hardware: {target: zcu104, model: surrogate}\n", base_dir=tmp_path)
    assert exp.hardware.model == "surrogate"
    with pytest.raises(ConfigError, match=r"hardware\.model"):
        parse_experiment(base + "hardware: {target: zcu104, model: surogate}\n", base_dir=tmp_path)
    ctx = TrialContext.create(exp, save_models=False)
    point = ctx.space.sample(np.random.default_rng(0))
    metrics = price(point, ctx, seed=1)
    model = fold_batchnorm(ctx.space.build(point, seed=1).eval())
    est = estimate(model, "ZCU104", input_shape=ctx.input_shape_of(point), kind="surrogate", latency_cutoff_ns=5.0)
    assert metrics["luts"] == est.totals["luts"] > 0 and metrics["ffs"] == est.totals["ffs"]
    assert metrics["latency_cycles"] == est.latency_cycles >= 1


def test_fmax_for_an_ecp5_target_and_why_not_for_xilinx(dataset, ecp5_features) -> None:
    sur = load_surrogate()
    true = np.array([r["fmax_mhz"] for r in FIXTURE_ECP5])
    pred = np.array([sur.predict(f)["fmax_mhz"]["point"] for f in ecp5_features])
    mape = float(np.mean(np.abs(pred / true - 1)))  # held-out designs, never trained on
    assert mape < 0.10 and mape < float(np.mean(np.abs(FMAX_MEDIAN / true - 1))) / 2
    row = FIXTURE_ECP5[0]
    model, shape = dataset.build_model(row["spec"])
    cut = row["spec"]["latency_cutoff_ns"]
    est = estimate(model, "ECP5-85", input_shape=shape, kind="surrogate", latency_cutoff_ns=cut)
    fmax = est.assumptions["fmax_mhz"]
    lo, hi = est.assumptions["interval"]["fmax_mhz"]
    assert fmax == pytest.approx(pred[0]) and lo <= fmax <= hi and est.rows[0].extra["fmax_mhz"]["point"] == fmax
    assert est.assumptions["out_of_range"] == [] and "nextpnr-ecp5" in est.assumptions["fmax"]
    xil = estimate(model, "ZCU104", input_shape=shape, kind="surrogate", latency_cutoff_ns=cut)
    assert xil.assumptions["fmax_mhz"] is None and xil.assumptions["fmax"] == NO_XILINX_FMAX
    assert "fmax_mhz" not in xil.assumptions["interval"] and xil.totals["luts"] == est.totals["luts"]
    # combinational: no clock, no Fmax
    assert "fmax_mhz" not in sur.predict(surrogate_features(model, shape, 0.0))
    # a v1 file (no Fmax target) still loads; the estimate says why there is no Fmax
    spec = json.loads(MODEL_FILE.read_text())
    del spec["targets"]["fmax_mhz"]
    v1 = Surrogate.from_spec(spec)
    est = estimate(model, "ECP5-85", input_shape=shape, kind="surrogate", latency_cutoff_ns=cut, surrogate=v1)
    assert est.assumptions["fmax_mhz"] is None and "has no Fmax target" in est.assumptions["fmax"]
