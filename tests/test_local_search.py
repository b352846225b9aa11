"""Local search: fixed-point conversion, IMP sparsity schedule, lottery-ticket rewind, per-precision best."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hwnas.nn as hn
from hwnas.quant import FixedPointQuantizer
from hwnas.tasks import load_digits
from hwnas.train import (
    IterativePruner,
    TrainConfig,
    Trainer,
    TrainError,
    effective_bops,
    evaluate,
    local_search,
    to_fixed_point,
)

OFF = dict(input_quantizer=None, weight_quantizer=None, bias_quantizer=None)


def float_cnn() -> nn.Sequential:
    return nn.Sequential(hn.QConv2d(1, 8, 3, padding=1, **OFF), hn.QActivation("relu"), hn.QMaxPool2d(2),
                         hn.Flatten(), hn.QLinear(8 * 16, 10, **OFF))


@pytest.fixture(scope="module")
def digits():
    return load_digits(seed=0, image=True)


def test_to_fixed_point_sets_ap_fixed_everywhere():
    seed = float_cnn()
    seed(torch.zeros(1, 1, 8, 8))  # the layers learn their input shapes
    q = to_fixed_point(seed, 8, 3)
    for layer in (q[0], q[4]):
        for slot in ("input_quantizer", "weight_quantizer", "bias_quantizer"):
            quant = getattr(layer, slot)
            assert isinstance(quant, FixedPointQuantizer) and not quant.learnable
            k, i, f = quant.kif()
            assert (k == 1).all() and (i == 2).all() and (f == 5).all()  # ap_fixed<8,3>
    with pytest.raises(TrainError, match="precision"):
        to_fixed_point(float_cnn(), 0, 0)


def test_sparsity_follows_geometric_schedule_and_rewind_restores_snapshot(digits):
    torch.manual_seed(0)
    model = to_fixed_point(float_cnn(), 10, 4)
    model(digits.x_train[:2])
    pruner = IterativePruner(model)
    pruner.take_snapshot()
    rate = 0.3
    train = (digits.x_train[:200], digits.y_train[:200])
    sizes = [layer.weight.numel() for _, layer in pruner.layers]
    for k in range(1, 5):
        pruner.prune(rate)
        Trainer(model, TrainConfig(epochs=1, progress=False), after_step=[pruner.apply_masks]).fit(train)
        # pruned weights stayed exactly zero through training
        for name, layer in pruner.layers:
            assert torch.all(layer.weight[pruner.masks[name] == 0] == 0)
        expect = 1 - (1 - rate) ** k
        assert abs(pruner.sparsity() - expect) <= k * len(sizes) / min(sizes)  # rounding per layer per step
        pruner.rewind()
        for name, layer in pruner.layers:
            snap = pruner.snapshot[f"{name}.weight"]
            mask = pruner.masks[name]
            assert torch.equal(layer.weight.detach(), snap * mask)
            assert torch.equal(layer.weight[mask == 1], snap[mask == 1])


def test_local_search_per_precision(digits):
    torch.manual_seed(0)
    seed_model = float_cnn()
    Trainer(seed_model, TrainConfig(epochs=6, progress=False)).fit((digits.x_train, digits.y_train))
    val = (digits.x_test, digits.y_test)
    res = local_search(seed_model, (digits.x_train, digits.y_train), val, [(12, 4), (6, 2)],
                       config=TrainConfig(progress=False), warmup_epochs=2, iterations=3, prune_rate=0.3,
                       epochs_per_iteration=1)
    assert [(r.total_bits, r.int_bits) for r in res.results] == [(12, 4), (6, 2)]
    for r in res.results:
        assert [round(it.sparsity, 2) for it in r.iterations] == pytest.approx([0.3, 0.51, 0.66], abs=0.02)
        bops = [it.effective_bops for it in r.iterations]
        assert bops[0] > bops[1] > bops[2]
        assert r.best_metric == max([r.warmup_metric] + [it.metric for it in r.iterations])
        assert r.best_metric > 0.85
        probe = to_fixed_point(float_cnn(), r.total_bits, r.int_bits)
        probe(digits.x_train[:2])
        probe.load_state_dict(r.best_state)
        assert evaluate(probe, *val)[0] == pytest.approx(r.best_metric)
        assert effective_bops(probe) > 0
    assert res.results[0].iterations[0].effective_bops > res.results[1].iterations[0].effective_bops
    table = res.table()
    assert "ap_fixed<12,4>" in table and "ap_fixed<6,2>" in table and table.count("\n") == 2 + 2 * 4 - 1
    assert seed_model[0].weight_quantizer is None  # the seed model is untouched
