"""hwnas.nn.convert: plain-torch models become hwnas models with the same float function."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import hwnas.nn as hn
from hwnas.errors import HwnasError
from hwnas.export.graph import extract

# wide static fixed point: 24 bits, integer bits from the data → a relative error of about 2^-20
WIDE = dict(bits=24, learnable=False, granularity="tensor", round_mode="RND", overflow_mode="SAT")
WIDE_SPECS = dict(weight=WIDE, bias=WIDE, activation=WIDE, table_input=WIDE)


def _randomize_bn(model: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters, so folding is really tested."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.3)


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _check_same_function(model: nn.Module, x: torch.Tensor, **kw) -> nn.Module:
    """Convert with wide quantizers; the converted model matches the original (eval) and the original is untouched."""
    model.eval()
    before = _snapshot(model)
    with torch.no_grad():
        expect = model(x)
    converted = hn.convert(model, **{**WIDE_SPECS, **kw})
    converted.eval()
    with torch.no_grad():
        got = converted(x)
    assert got.shape == expect.shape
    assert torch.allclose(got, expect, rtol=1e-4, atol=1e-4), float((got - expect).abs().max())
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    return converted


def test_mlp_converts_with_batchnorm_folded_and_input_quantized():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2),
                          nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 4), nn.Sigmoid(), nn.Linear(4, 3))
    _randomize_bn(model)
    q = _check_same_function(model, torch.randn(32, 3, 4) * 2, input_shape=(3, 4))
    assert not any(isinstance(m, hn.QLayer) for m in model.modules())  # the user's model is not converted
    # the leading Flatten is preceded by the model-input quantizer; the first Linear reads it unchanged
    assert isinstance(q[0], nn.Sequential) and isinstance(q[0][0], hn.QActivation) and isinstance(q[0][1], nn.Flatten)
    assert q[0][0].input_quantizer is not None and q[1].input_quantizer is None
    assert isinstance(q[1], hn.QLinear) and isinstance(q[2], nn.Identity)  # BatchNorm folded
    assert q[3].kind == "relu" and isinstance(q[4], nn.Dropout)
    assert q[5].input_quantizer is not None  # every later Linear quantizes its input (activation spec)
    assert (q[6].kind, q[6].mode, q[8].kind, q[8].mode) == ("tanh", "table", "sigmoid", "table")
    # weights are exact copies (the fold changed only the one before the BatchNorm)
    assert torch.equal(q[5].weight, model[5].weight) and torch.equal(q[9].bias, model[9].bias)
    # input_shape sized everything: the model is copyable, costed and exportable before any data
    copy.deepcopy(q)
    assert hn.macs(q) == 12 * 16 + 16 * 8 + 8 * 4 + 4 * 3
    nodes = extract(q, (3, 4)).nodes
    assert type(nodes[0]).__name__ == "Quantize" and nodes[0].slot == "input"


def test_default_specs_are_hgq_and_first_layer_quantizes_the_input():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    q = hn.convert(model)
    assert q[0].input_quantizer.learnable and q[0].weight_quantizer.learnable
    assert q[0].weight_quantizer.overflow_mode.name == "WRAP" and q[0].bias_quantizer.init_bits == 12
    assert q[1].input_quantizer is None and q[2].input_quantizer is not None
    custom = hn.convert(model, input=dict(bits=6, learnable=False), activation=None)
    assert custom[0].input_quantizer.init_bits == 6 and custom[2].input_quantizer is None
    assert q(torch.randn(3, 5)).shape == (3, 2)


def test_cnn_1d_and_2d_with_batchnorm_pooling_and_conv_settings():
    torch.manual_seed(1)
    cnn2 = nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, (3, 1), stride=(1, 2), padding=(1, 0)), nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(8, 4, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 4 * 2, 3))
    _randomize_bn(cnn2)
    q2 = _check_same_function(cnn2, torch.randn(8, 2, 16, 16))
    assert isinstance(q2[0], hn.QConv2d) and q2[0].bias is not None  # the fold created the bias
    assert q2[0].input_quantizer is not None and isinstance(q2[1], nn.Identity)
    assert isinstance(q2[3], hn.QMaxPool2d) and isinstance(q2[7], hn.QAvgPool2d)
    assert q2[4].stride == (1, 2) and q2[4].padding == (1, 0) and q2[8].padding_mode == "reflect"

    cnn1 = nn.Sequential(nn.Conv1d(3, 8, 5, padding="same"), nn.BatchNorm1d(8), nn.ReLU(), nn.MaxPool1d(2),
                         nn.Conv1d(8, 8, 3, padding="valid", dilation=2),
                         nn.Sigmoid(), nn.AvgPool1d(2, stride=2), nn.Flatten(), nn.Linear(8 * 2, 2))
    _randomize_bn(cnn1)
    q1 = _check_same_function(cnn1, torch.randn(8, 3, 16), input_shape=(3, 16))
    assert q1[0].padding == (2,) and q1[4].padding == (0,) and q1[4].dilation == (2,)  # padding as integers
    assert [type(n).__name__ for n in extract(q1, (3, 16)).nodes][:2] == ["Quantize", "Conv"]


def test_grouped_and_depthwise_convolutions():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 8, 1), nn.ReLU(), nn.Identity(),
                          nn.Conv2d(8, 6, 3, groups=2), nn.Flatten(), nn.Linear(6 * 4 * 4, 2))
    _randomize_bn(model)
    q = _check_same_function(model, torch.randn(4, 4, 6, 6))
    assert q[0].groups == 4 and q[6].groups == 2 and isinstance(q[5], nn.Identity)


class _Residual(nn.Module):
    """A custom module: conv → BN → relu → conv → BN, plus a skip, then a concat and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv1d(2, 4, 3, padding=1)
        self.conv1 = nn.Conv1d(4, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(4)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv1d(4, 4, 3, padding=1)
        self.bn2 = nn.BatchNorm1d(4)
        self.side = nn.Conv1d(4, 2, 1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(6 * 8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        h = self.act(self.bn1(self.conv1(x)))
        y = self.act(self.bn2(self.conv2(h)) + x)
        return self.head(torch.cat([y, self.side(y)], dim=1))


def test_custom_module_with_residual_add_and_concat():
    torch.manual_seed(3)
    model = _Residual()
    _randomize_bn(model)
    q = _check_same_function(model, torch.randn(8, 2, 8))
    assert type(q) is _Residual and q.act is not model.act
    assert isinstance(q.bn1, nn.Identity) and isinstance(q.bn2, nn.Identity)
    assert q.stem.input_quantizer is not None and isinstance(q.head[1], hn.QLinear)
    assert isinstance(q.conv1, hn.QConv1d) and isinstance(q.side, hn.QConv1d)


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU())
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 1e9:  # data-dependent control flow: torch.fx cannot trace it
            x = x * 0
        return self.out(self.body(x))


def test_untraceable_model_falls_back_to_registration_order():
    torch.manual_seed(4)
    model = _Untraceable()
    _randomize_bn(model)
    q = _check_same_function(model, torch.randn(8, 4))
    assert isinstance(q.body[1], nn.Identity) and q.body[0].input_quantizer is not None


def test_already_hwnas_layers_are_kept_and_a_following_batchnorm_folded():
    torch.manual_seed(5)
    kept = hn.QLinear(4, 6, input_quantizer=WIDE, weight_quantizer=WIDE, bias_quantizer=WIDE)
    model = nn.Sequential(kept, nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    _randomize_bn(model)
    x = torch.randn(8, 4)
    model.eval()
    model(x)  # settle the kept layer's input quantizer so it can be copied
    q = _check_same_function(model, x)
    assert type(q[0]) is hn.QLinear and q[0] is not kept  # a copy: the user's layer is never shared or modified
    assert isinstance(q[1], nn.Identity) and isinstance(q[3], hn.QLinear)
    # a model that is only hwnas layers comes back unchanged
    qmodel = nn.Sequential(hn.QLinear(4, 3, input_quantizer=WIDE, weight_quantizer=WIDE), hn.QActivation("relu"))
    qmodel(x)
    again = hn.convert(qmodel)
    assert [type(m) for m in again] == [hn.QLinear, hn.QActivation]
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), qmodel.state_dict().values(),
                                                 strict=True))


def test_a_single_layer_converts_to_its_hwnas_layer():
    lin = nn.Linear(3, 2)
    q = hn.convert(lin, **WIDE_SPECS)
    assert type(q) is hn.QLinear and q.input_quantizer is not None and torch.equal(q.weight, lin.weight)


class _WithLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(4, 4), nn.GELU())])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks[0](self.enc(x))


@pytest.mark.parametrize("layer, path, name", [
    (nn.GELU(), "blocks.0.1", "GELU"),
    (nn.LSTM(4, 4), "blocks.0.1", "LSTM"),
    (nn.MultiheadAttention(4, 2), "blocks.0.1", "MultiheadAttention"),
])
def test_unsupported_leaf_raises_naming_its_dotted_path(layer, path, name):
    model = _WithLSTM()
    model.blocks[0][1] = layer
    with pytest.raises(hn.ConversionError) as info:
        hn.convert(model)
    msg = str(info.value)
    assert isinstance(info.value, HwnasError) and "\n" not in msg
    assert msg.startswith(f"{path}: {name} ") and "strict=False" in msg


def test_non_strict_keeps_unsupported_leaves_with_a_warning():
    model = _WithLSTM()
    with pytest.warns(UserWarning, match=r"blocks\.0\.1: GELU"):
        q = hn.convert(model, strict=False)
    assert isinstance(q.blocks[0][1], nn.GELU) and isinstance(q.blocks[0][0], hn.QLinear)


def test_batchnorm_and_setting_errors_name_the_layer():
    bn_model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.BatchNorm1d(3), nn.ReLU())
    with pytest.raises(hn.ConversionError, match=r"^1: BatchNorm1d .*fold_batchnorm=False"):
        hn.convert(bn_model, fold_batchnorm=False)
    with pytest.raises(hn.ConversionError, match=r"^0: BatchNorm1d cannot be folded: it does not directly follow"):
        hn.convert(nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 2)))
    with pytest.raises(hn.ConversionError, match=r"^1: MaxPool2d with ceil_mode=True"):
        hn.convert(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2, ceil_mode=True)))
    with pytest.raises(hn.ConversionError, match=r"^0: AvgPool1d with count_include_pad=False"):
        hn.convert(nn.Sequential(nn.AvgPool1d(2, padding=1, count_include_pad=False), nn.Linear(3, 2)))
    with pytest.raises(hn.ConversionError, match=r"^0\.weight_quantizer"):
        hn.convert(nn.Sequential(nn.Linear(3, 2)), weight=dict(kind="nope"))
    with pytest.raises(hn.ConversionError, match=r"^1\.input_quantizer: a table activation needs a static"):
        hn.convert(nn.Sequential(nn.Linear(3, 2), nn.Tanh()), table_input=dict(bits=8, learnable=True))
    with pytest.raises(hn.ConversionError, match=r"^model: cannot be copied"):
        hn.convert(nn.Sequential(hn.QConv1d(2, 3, 3)))  # a fresh hwnas conv: its input quantizer is unsized


class _OwnWeight(nn.Module):
    """A custom block computing with a parameter of its own (F.linear), beside a child layer."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 6))
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(nn.functional.linear(x, self.w)))


class _Bilinear(nn.Module):
    """A forward that multiplies two activations (torch.matmul): MACs no layer carries."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        return torch.matmul(h.unsqueeze(2), h.unsqueeze(1)).flatten(1)


def test_compute_outside_layers_is_refused_not_costed_as_zero():
    """Before: these converted with the hidden products left out of macs/bops, silently."""
    with pytest.raises(hn.ConversionError, match=r"^blk: _OwnWeight computes with parameter\(s\) of its own \(w\)"):
        hn.convert(_Wrap(_OwnWeight()))
    with pytest.raises(hn.ConversionError, match=r"^model: its forward calls torch.matmul, a multiply-accumulate"):
        hn.convert(_Bilinear())
    with pytest.warns(UserWarning, match=r"^model: its forward calls torch.matmul"):
        kept = hn.convert(_Bilinear(), strict=False, input_shape=(6,))
    assert hn.macs(kept) == 24  # the linear layer only: the warning said the matmul is not counted


def test_unconverted_torch_layers_are_refused_by_the_cost_figures_not_counted_as_zero():
    """Before: a plain torch model got macs 0 / bops 0 (issue 29); now one line naming the layer and the fix."""
    from hwnas.cost import model_metrics

    cnn = nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(24, 3))
    with pytest.raises(hn.ConversionError) as info:
        hn.macs(cnn)
    msg = str(info.value)
    assert isinstance(info.value, HwnasError) and "\n" not in msg
    assert msg.startswith("layer '0' is a plain torch.nn.Conv1d") and "hwnas.nn.convert(model)" in msg
    for figure in (hn.bops, hn.weight_bits, hn.sparsity, hn.layer_costs, hn.bit_histogram):
        with pytest.raises(hn.ConversionError, match=r"^layer '0' is a plain torch.nn.Conv1d"):
            figure(cnn)
    with pytest.raises(hn.ConversionError, match=r"^layer 'blk.1' is a plain torch.nn.Linear"):
        model_metrics(_Wrap(nn.Sequential(hn.QActivation("relu"), nn.Linear(4, 2))), (4,))
    with pytest.raises(hn.ConversionError, match=r"^the model is a plain torch.nn.Conv2d"):
        hn.macs(nn.Conv2d(1, 2, 3))
    # converted: the real count; ebops stays a training term (the trainer records it for plain models too)
    assert hn.macs(hn.convert(cnn, input_shape=(2, 8))) == 6 * 4 * 2 * 3 + 24 * 3
    assert float(hn.ebops(cnn)) == 0.0


class _Wrap(nn.Module):
    def __init__(self, blk: nn.Module) -> None:
        super().__init__()
        self.blk = blk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blk(x)
