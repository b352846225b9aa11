"""End-to-end behaviour on digits: HGQ training under EBOPs pressure, and post-training quantization."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import hwnas.nn as hn
from hwnas.quant import ScaledIntQuantizer
from hwnas.tasks import load_digits
from hwnas.train import TrainConfig, Trainer, TrainError, accuracy
from hwnas.train.ptq import layer_sensitivity, post_training_quantize, size_table, weight_statistics


def hgq_mlp() -> nn.Sequential:
    return nn.Sequential(
        hn.QLinear(64, 32),
        hn.QActivation("relu"),
        hn.QLinear(32, 10, input_quantizer=dict(hn.DEFAULT_ACTIVATION, signed=False)),
    )


def test_hgq_training_lowers_ebops_and_keeps_accuracy():
    data = load_digits(seed=0)
    torch.manual_seed(0)
    model = hgq_mlp()
    model(data.x_train[:2])
    e0 = hn.ebops(model).item()
    hist = Trainer(model, TrainConfig(epochs=30, beta=3e-6, gamma=1e-6, progress=False)).fit(
        (data.x_train, data.y_train))
    acc = accuracy(model, data.x_test, data.y_test)
    e1 = hn.ebops(model).item()
    assert acc >= 0.90
    assert e1 < 0.5 * e0, (e0, e1)
    assert hist.column("ebops")[-1] < hist.column("ebops")[0]
    hist_bits = hn.bit_histogram(model)
    assert len(hist_bits) > 3  # heterogeneous per-parameter widths


def test_same_seed_same_result():
    data = load_digits(seed=0)
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = hgq_mlp()
        Trainer(model, TrainConfig(epochs=2, beta=1e-6, seed=5, progress=False)).fit(
            (data.x_train[:300], data.y_train[:300]))
        outs.append(model(data.x_test[:50]))
    assert torch.equal(outs[0], outs[1])


def test_bad_training_data_is_rejected():
    model = hgq_mlp()
    x = torch.zeros(4, 64)
    x[1, 3] = float("nan")
    with pytest.raises(TrainError, match="train: inputs contain NaN"):
        Trainer(model, TrainConfig(epochs=1, progress=False)).fit((x, torch.zeros(4, dtype=torch.long)))


def float_cnn() -> nn.Sequential:
    f = dict(input_quantizer=None, weight_quantizer=None, bias_quantizer=None)
    return nn.Sequential(
        hn.QConv2d(1, 16, 3, padding=1, **f), hn.QActivation("relu"), hn.QMaxPool2d(2),
        hn.QConv2d(16, 24, 3, padding=1, **f), hn.QActivation("relu"), hn.QMaxPool2d(2),
        hn.Flatten(), hn.QLinear(24 * 4, 10, **f),
    )


@pytest.fixture(scope="module")
def trained_cnn():
    data = load_digits(seed=0, image=True)
    torch.manual_seed(0)
    model = float_cnn()
    Trainer(model, TrainConfig(epochs=25, progress=False)).fit((data.x_train, data.y_train))
    return model, data


def acc_of(data):
    return lambda m: accuracy(m, data.x_test, data.y_test)


def test_ptq_int8_per_channel_within_one_point_and_exact_size(trained_cnn):
    model, data = trained_cnn
    res = post_training_quantize(model, acc_of(data), data.x_train, weight_bits=8, granularity="channel",
                                 activation_bits=8, calibration_size=512)
    assert res.float_metric > 0.95
    assert res.quant_metric >= res.float_metric - 0.01, res.table()
    q = res.model
    assert isinstance(q[0].weight_quantizer, ScaledIntQuantizer) and q[0].bias_quantizer is None
    assert isinstance(q[3].input_quantizer, ScaledIntQuantizer)
    assert res.weight_compression == 4.0  # int8 codes vs float32, exactly
    weights = [r for r in res.sizes if r.kind == "weight"]
    assert [r.overhead_bits for r in weights] == [32 * 16, 32 * 24, 32 * 10]  # one float32 scale per channel
    total = sum(r.bits for r in res.sizes)
    expect = sum(8 * m.weight.numel() + 32 * m.weight.shape[0] + 32 * m.bias.numel()
                 for m in q if isinstance(m, hn.QLayer) and getattr(m, "weight", None) is not None)
    assert total == expect
    assert "4.00x smaller" in res.table()
    assert model[0].weight_quantizer is None  # the float model is untouched


def test_ptq_int4_per_channel_beats_per_tensor_on_uneven_channels(trained_cnn):
    model, data = trained_cnn
    uneven = copy.deepcopy(model)
    # rescale conv1's output channels by very different factors and undo it in conv2's inputs:
    # ReLU and max-pooling commute with positive scaling, so the float function is unchanged
    factors = torch.logspace(-2, 1, 16)
    with torch.no_grad():
        uneven[0].weight.mul_(factors.reshape(-1, 1, 1, 1))
        uneven[0].bias.mul_(factors)
        uneven[3].weight.div_(factors.reshape(1, -1, 1, 1))
    x = data.x_test
    assert torch.allclose(uneven(x), model(x), atol=1e-4)
    per_tensor = post_training_quantize(uneven, acc_of(data), data.x_train, weight_bits=4, granularity="tensor")
    per_channel = post_training_quantize(uneven, acc_of(data), data.x_train, weight_bits=4, granularity="channel")
    assert per_channel.quant_metric > per_tensor.quant_metric + 0.05, (per_tensor.quant_metric,
                                                                       per_channel.quant_metric)
    assert per_channel.weight_compression == 8.0


def test_ptq_fp16_and_sensitivity_and_statistics(trained_cnn):
    model, data = trained_cnn
    res = post_training_quantize(model, acc_of(data), data.x_train, weight_bits="fp16", activation_bits="fp16")
    assert abs(res.drop) <= 0.005 and res.weight_compression == 2.0
    sens = layer_sensitivity(model, acc_of(data), bits=2)
    assert [r["layer"] for r in sens] == ["0", "3", "7"]
    assert all(0.0 <= r["metric"] <= 1.0 for r in sens)
    assert min(r["metric"] for r in sens) < res.float_metric - 0.02  # 2-bit weights hurt some layer
    stats = weight_statistics(model)
    assert [r["layer"] for r in stats] == ["0", "3", "7"]
    w = model[0].weight.detach().double()
    assert stats[0]["std"] == pytest.approx(float(w.std())) and stats[0]["count"] == w.numel()


def test_size_table_counts_norm_layers_as_kept_float():
    model = nn.Sequential(hn.QConv1d(2, 4, 3, weight_quantizer=dict(kind="scaled", bits=4)), nn.BatchNorm1d(4))
    rows = {r.name: r for r in size_table(model)}
    assert rows["1"].kind == "norm" and rows["1"].elements == 4 * 4  # weight, bias, running mean, running var
    assert rows["1"].bits == 32 * 16
    assert rows["0.weight"].bits == 4 * 24 + 32


def test_ptq_bad_arguments(trained_cnn):
    model, data = trained_cnn
    with pytest.raises(TrainError, match="granularity"):
        post_training_quantize(model, acc_of(data), data.x_train, granularity="row")
    with pytest.raises(TrainError, match="weight_bits"):
        post_training_quantize(model, acc_of(data), data.x_train, weight_bits="int8")
    with pytest.raises(TrainError, match="bits"):
        post_training_quantize(model, acc_of(data), data.x_train, weight_bits=1)
