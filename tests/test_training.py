"""End-to-end behaviour on digits: HGQ training under EBOPs pressure, and post-training quantization."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import hwnas.nn as hn
from hwnas.quant import ScaledIntQuantizer, calibrate
from hwnas.tasks import load_digits
from hwnas.train import TrainConfig, Trainer, TrainError, accuracy


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


def ptq(model, data, bits, granularity, activations=True):
    q = copy.deepcopy(model)
    hn.set_quantizers(q, weight=dict(kind="scaled", bits=bits, granularity=granularity))
    if activations:
        hn.set_quantizers(q, input=dict(kind="scaled", bits=bits, calibration="percentile", percentile=99.99))
        calibrate(q, data.x_train)
    return q


def test_ptq_int8_per_channel_within_one_point(trained_cnn):
    model, data = trained_cnn
    acc_float = accuracy(model, data.x_test, data.y_test)
    assert acc_float > 0.95
    q = ptq(model, data, 8, "channel")
    assert isinstance(q[0].weight_quantizer, ScaledIntQuantizer)
    assert isinstance(q[3].input_quantizer, ScaledIntQuantizer)
    acc_q = accuracy(q, data.x_test, data.y_test)
    assert acc_q >= acc_float - 0.01, (acc_float, acc_q)
    assert hn.weight_bits(q) == pytest.approx(
        sum(8 * layer.weight.numel() + 32 * layer.bias.numel() for layer in q if isinstance(layer, hn.QLayer)
            and getattr(layer, "weight", None) is not None)
    )


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
    acc_tensor = accuracy(ptq(uneven, data, 4, "tensor", activations=False), x, data.y_test)
    acc_channel = accuracy(ptq(uneven, data, 4, "channel", activations=False), x, data.y_test)
    assert acc_channel > acc_tensor + 0.05, (acc_tensor, acc_channel)
