"""Quantized layers: forward semantics, MACs/BOPs/EBOPs by hand, folding, activations, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import hwnas.nn as hn
from hwnas.quant import FixedPointQuantizer, QuantizationError, calibrate
from hwnas.quant.reference import quantize_fixed_np


def static(i, f, k=1, gran="tensor", **kw):
    return dict(bits=None, i=i, f=f, signed=bool(k), learnable=False, granularity=gran, **kw)


def test_qlinear_forward_equals_reference_quantized_matmul():
    torch.manual_seed(1)
    lin = hn.QLinear(5, 3, input_quantizer=static(2, 3, round_mode="RND", overflow_mode="SAT"),
                     weight_quantizer=static(0, 4), bias_quantizer=static(1, 5),
                     output_quantizer=static(3, 2, round_mode="TRN", overflow_mode="WRAP"))
    x = torch.randn(7, 5) * 3
    y = lin(x).detach().double().numpy()
    xq = quantize_fixed_np(x.numpy(), 1, 2, 3, "RND", "SAT")
    wq = quantize_fixed_np(lin.weight.detach().numpy(), 1, 0, 4, "RND", "SAT")
    bq = quantize_fixed_np(lin.bias.detach().numpy(), 1, 1, 5, "RND", "SAT")
    acc = xq @ wq.T + bq
    expect = quantize_fixed_np(acc, 1, 3, 2, "TRN", "WRAP")
    assert np.array_equal(y, expect)


def test_linear_costs_by_hand():
    lin = hn.QLinear(3, 2, input_quantizer=static(2, 3),  # 6-bit inputs
                     weight_quantizer=dict(bits=None, i=0, f=2, learnable=False, granularity="parameter"),
                     bias_quantizer=static(1, 3))  # 5-bit bias
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.5, -0.25, 0.0], [0.75, 0.25, -0.5]]))
        lin.weight_quantizer.f.copy_(torch.tensor([[1.0, 2.0, 0.0], [2.0, 3.0, 1.0]]))
    wbits = torch.tensor([[2.0, 3.0, 1.0], [3.0, 4.0, 2.0]])  # k + i + f with i = 0
    assert torch.equal(lin.weight_quantizer.element_bits(), wbits)
    assert lin.macs() == 6
    mul = float((wbits * 6).sum())
    bias_add = max(3 + 6, 5) + max(4 + 6, 5)  # accumulator = widest product in the row
    assert float(lin.ebops()) == mul + bias_add
    assert lin.bops() == 6 * 4 * 6
    assert lin.weight_bits() == float(wbits.sum()) + 2 * 5


def test_conv1d_ebops_equals_brute_force_with_padding_and_groups():
    torch.manual_seed(0)
    conv = hn.QConv1d(4, 6, 3, padding=1, stride=2, groups=2, bias=False,
                      input_quantizer=dict(bits=5, granularity="parameter", learnable=True),
                      weight_quantizer=dict(bits=6, granularity="parameter"))
    x = torch.randn(2, 4, 9)
    conv(x)
    with torch.no_grad():  # make the bits heterogeneous
        conv.input_quantizer.f.add_(torch.randint(-2, 3, conv.input_quantizer.f.shape).float())
        conv.weight_quantizer.f.add_(torch.randint(-3, 2, conv.weight_quantizer.f.shape).float())
    bx = conv.input_quantizer.element_bits().detach().numpy()  # (4, 9)
    bw = conv.weight_quantizer.element_bits().detach().numpy()  # (6, 2, 3)
    total = 0.0
    l_out = (9 + 2 - 3) // 2 + 1
    for co in range(6):
        g = co // 3
        for ci_local in range(2):
            ci = g * 2 + ci_local
            for t in range(l_out):
                for kk in range(3):
                    pos = t * 2 - 1 + kk
                    if 0 <= pos < 9:
                        total += bw[co, ci_local, kk] * bx[ci, pos]
    assert float(conv.ebops().detach()) == pytest.approx(total)
    # the same conv with a float bias: each output position adds one 32-bit bias addition per channel
    conv_b = hn.QConv1d(4, 6, 3, padding=1, stride=2, groups=2, bias_quantizer=None,
                        input_quantizer=dict(bits=5, granularity="parameter", learnable=True),
                        weight_quantizer=dict(bits=6, granularity="parameter"))
    conv_b.weight.data.copy_(conv.weight.data)
    conv_b(x)
    conv_b.input_quantizer.load_state_dict(conv.input_quantizer.state_dict())
    conv_b.weight_quantizer.load_state_dict(conv.weight_quantizer.state_dict())
    assert conv_b.ebops().item() == pytest.approx(total + 32 * 6 * l_out)
    assert conv.macs() == l_out * 6 * 2 * 3
    assert conv.bops() == conv.macs() * bw.max() * bx.max()


def test_conv2d_depthwise_shapes_and_macs():
    conv = hn.QConv2d(3, 3, 3, padding=1, groups=3)
    y = conv(torch.randn(2, 3, 8, 8))
    assert y.shape == (2, 3, 8, 8)
    assert conv.macs() == 8 * 8 * 3 * 1 * 9


def test_ebops_is_differentiable_and_model_sums_layers():
    model = nn.Sequential(hn.QLinear(8, 4), hn.QActivation("relu"), hn.QLinear(4, 2))
    model(torch.randn(3, 8))
    e = hn.ebops(model)
    assert e.requires_grad
    e.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if n.endswith(".f")}
    for name in ("0.input_quantizer.f", "0.weight_quantizer.f", "2.input_quantizer.f", "2.weight_quantizer.f"):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    assert e.item() == pytest.approx(sum(r.ebops for r in hn.layer_costs(model)))
    assert hn.macs(model) == 8 * 4 + 4 * 2


def test_float_input_charged_32_bits_and_upstream_bits_propagate():
    model = nn.Sequential(
        hn.QLinear(4, 4, input_quantizer=None, weight_quantizer=static(0, 3), bias_quantizer=None,
                   output_quantizer=static(2, 2)),
        hn.QLinear(4, 2, input_quantizer=None, weight_quantizer=static(0, 3), bias_quantizer=None),
    )
    model(torch.randn(2, 4))
    rows = hn.layer_costs(model)
    assert rows[0].bops == 16 * 4 * 32  # float input
    assert rows[1].bops == 8 * 4 * 5  # sees the 5-bit output quantizer of layer 0


def test_table_tanh_is_a_function_of_the_quantized_input():
    act = hn.QActivation("tanh", input_quantizer=static(2, 4, round_mode="RND", overflow_mode="SAT"),
                         output_quantizer=static(0, 7, round_mode="RND", overflow_mode="SAT"))
    assert act.mode == "table" and act.exportable[0]
    x = torch.linspace(-5, 5, 301, dtype=torch.float64)
    y = act(x.unsqueeze(0)).squeeze(0).detach().numpy()
    xq = quantize_fixed_np(x.numpy(), 1, 2, 4, "RND", "SAT")
    assert np.array_equal(y, quantize_fixed_np(np.tanh(xq), 1, 0, 7, "RND", "SAT"))
    assert hn.QActivation("tanh").exportable[0] is False
    with pytest.raises(QuantizationError, match="input_quantizer"):
        hn.QActivation("tanh", input_quantizer=dict(bits=6), output_quantizer=static(0, 7))
    with pytest.raises(QuantizationError, match="kind"):
        hn.QActivation("gelu")


def test_pooling_exact_and_costed():
    pool = hn.QMaxPool1d(2, input_quantizer=static(1, 2))
    x = torch.randn(3, 4, 8)
    y = pool(x)
    assert torch.equal(y, torch.nn.functional.max_pool1d(pool.input_quantizer(x), 2))
    assert float(pool.ebops()) == 4 * 4 * 1 * 4  # 16 outputs × 1 comparison × 4 bits
    avg = hn.QAvgPool2d(2)
    avg(torch.randn(1, 2, 4, 4))
    assert float(avg.ebops(torch.tensor(6.0))) == 2 * 2 * 2 * 3 * 6


def test_fold_batchnorm_preserves_float_function_and_quantized_close():
    torch.manual_seed(0)
    model = nn.Sequential(hn.QConv1d(2, 4, 3, input_quantizer=None, weight_quantizer=None, bias_quantizer=None),
                          nn.BatchNorm1d(4), hn.QActivation("relu"))
    model.train()
    for _ in range(5):
        model(torch.randn(16, 2, 10) * 2 + 1)
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 2)
        model[1].bias.uniform_(-1, 1)
    model.eval()
    x = torch.randn(8, 2, 10)
    folded = hn.fold_batchnorm(model)
    assert isinstance(folded[1], nn.Identity)
    assert torch.allclose(folded(x), model(x), atol=1e-5)
    # quantized: 10-bit per-channel weights stay close after folding
    qmodel = nn.Sequential(hn.QConv1d(2, 4, 3, input_quantizer=None,
                                      weight_quantizer=dict(bits=10, granularity="channel")),
                           nn.BatchNorm1d(4))
    qmodel[0].weight.data.copy_(model[0].weight.data)
    qmodel[1].load_state_dict(model[1].state_dict())
    qmodel.eval()
    qfolded = hn.fold_batchnorm(qmodel)
    assert (qfolded(x) - qmodel(x)).abs().max() < 0.05 * qmodel(x).abs().max()


@pytest.mark.parametrize("nd", [1, 2])
def test_fused_batchnorm_trains_exactly_as_conv_then_batchnorm(nd: int):
    """Without quantizers a conv with batch_norm=True is conv → BatchNorm: outputs, running statistics and
    gradients (training mode, batch statistics), and eval outputs."""
    torch.manual_seed(0)
    conv_cls, ref_cls, bn_cls = ((hn.QConv1d, nn.Conv1d, nn.BatchNorm1d) if nd == 1 else
                                 (hn.QConv2d, nn.Conv2d, nn.BatchNorm2d))
    fused = conv_cls(3, 5, 3, padding=1, input_quantizer=None, weight_quantizer=None, bias_quantizer=None,
                     batch_norm=True)
    conv, bn = ref_cls(3, 5, 3, padding=1), bn_cls(5)
    with torch.no_grad():
        conv.weight.copy_(fused.weight)
        conv.bias.copy_(fused.bias)
        fused.bn.weight.uniform_(0.5, 2.0)
        fused.bn.bias.uniform_(-1.0, 1.0)
    bn.load_state_dict(fused.bn.state_dict())
    shape = (16, 3, 12) if nd == 1 else (16, 3, 6, 6)
    for _ in range(3):
        x = torch.randn(shape) * 2 + 0.5
        proj = torch.randn(shape[0], 5, *shape[2:])
        out, ref = fused(x), bn(conv(x))
        assert torch.allclose(out, ref, atol=1e-5)
        g_fused = torch.autograd.grad((out * proj).sum(), [fused.weight, fused.bn.weight])
        g_ref = torch.autograd.grad((ref * proj).sum(), [conv.weight, bn.weight])
        for a, b in zip(g_fused, g_ref, strict=True):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))
    assert torch.allclose(fused.bn.running_mean, bn.running_mean, atol=1e-6)
    assert torch.allclose(fused.bn.running_var, bn.running_var, rtol=1e-5)
    assert int(fused.bn.num_batches_tracked) == int(bn.num_batches_tracked) == 3
    fused.eval()
    bn.eval()
    x = torch.randn(shape)
    with torch.no_grad():
        assert torch.allclose(fused(x), bn(conv(x)), atol=1e-5)


def test_fused_batchnorm_folds_bit_exactly_and_exports():
    """A fixed-point model with fused BatchNorm, trained a few steps: folding gives a plain model with the same
    outputs bit for bit, and its QONNX export (and the export graph's reference) match it without folding first."""
    from hwnas.export.verify import verify_model

    torch.manual_seed(1)
    fixed = dict(bits=4, learnable=False, round_mode="RND", overflow_mode="SAT")
    model = nn.Sequential(
        hn.QConv1d(2, 6, 3, padding=1, input_quantizer=dict(fixed, bits=8),
                   weight_quantizer=dict(fixed, granularity="channel"), bias_quantizer=dict(fixed, bits=10),
                   batch_norm=True),
        hn.QActivation("relu"), hn.QMaxPool1d(2), hn.Flatten(),
        hn.QLinear(6 * 8, 4, input_quantizer=dict(fixed, bits=6, signed=False), weight_quantizer=fixed,
                   bias_quantizer=dict(fixed, bits=10)))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(5):
        loss = model(torch.randn(32, 2, 16)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x = torch.randn(64, 2, 16)
    folded = hn.fold_batchnorm(model)
    assert folded[0].bn is None and model[0].bn is not None  # the original keeps its BatchNorm
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    with torch.no_grad():
        assert torch.equal(folded(x), model(x))
        assert torch.equal(folded[0].quantized_weight(), model[0].quantized_weight())
        assert torch.equal(folded[0].quantized_bias(), model[0].quantized_bias())
    report = verify_model(model, x, paths=["qonnx"])
    assert [r.path for r in report.results] == ["reference", "qonnx"]
    assert all(r.skipped is None and r.mismatches == 0 for r in report.results), report.table()
    with pytest.raises(ValueError, match="bias=True"):
        hn.QConv1d(2, 4, 3, bias=False, batch_norm=True)


def test_quantizers_set_after_training_see_the_folded_batchnorm():
    """Post-training quantization of a fused conv sizes the weight scale on the folded weight (the one the
    layer quantizes), not on the raw one: nothing clips."""
    torch.manual_seed(2)
    model = nn.Sequential(hn.QConv1d(2, 4, 3, padding=1, input_quantizer=None, weight_quantizer=None,
                                     bias_quantizer=None, batch_norm=True), hn.QActivation("relu"), hn.Flatten())
    with torch.no_grad():
        model[0].bn.weight.copy_(torch.tensor([0.25, 1.0, 4.0, 9.0]))  # folded weights 0.25x ... 9x the raw ones
    model.train()
    for _ in range(4):
        model(torch.randn(32, 2, 8) * 0.5)
    model.eval()
    hn.set_quantizers(model, weight=dict(kind="scaled", bits=8, granularity="channel"), bias=None)
    layer = model[0]
    folded = layer.quantizer_input("weight")
    assert not torch.equal(folded, layer.weight)
    with torch.no_grad():
        err = (layer.quantized_weight() - folded).abs().amax(dim=(1, 2))
    assert torch.all(err <= layer.weight_quantizer.scale.flatten() / 2 + 1e-7)  # rounding only, never clipping


def test_bad_quantizer_specs_name_the_slot():
    with pytest.raises(QuantizationError, match=r"weight_quantizer\.kind"):
        hn.QLinear(2, 2, weight_quantizer=dict(kind="float8"))
    with pytest.raises(QuantizationError, match="input_quantizer"):
        hn.QLinear(2, 2, input_quantizer=dict(bits=8, rounding="RND"))
    with pytest.raises(QuantizationError, match=r"weight_quantizer\.bits"):
        hn.QLinear(2, 2, weight_quantizer=dict(bits=-3))
    conv = hn.QConv1d(2, 2, 3)
    with pytest.raises(QuantizationError, match="forward pass"):
        conv.macs()


def test_set_quantizers_and_calibrate_wrap_activation():
    torch.manual_seed(0)
    model = nn.Sequential(hn.QLinear(6, 4, input_quantizer=None, weight_quantizer=None, bias_quantizer=None),
                          hn.QActivation("relu"),
                          hn.QLinear(4, 3, input_quantizer=None, weight_quantizer=None, bias_quantizer=None))
    hn.set_quantizers(model, weight=dict(bits=6, learnable=False, granularity="channel"),
                      input=dict(bits=None, f=5, overflow_mode="WRAP", learnable=False, signed="auto",
                                 granularity="parameter"))
    assert isinstance(model[2].input_quantizer, FixedPointQuantizer)
    data = torch.randn(64, 6) * 4
    calibrate(model, data)
    # after calibration nothing wraps on the calibration data: the input quantizer is pure rounding
    x = data[:8]
    assert torch.equal(model[0].input_quantizer(x), torch.round(x * 32) / 32)
    assert model[2].input_quantizer.k.sum() == 0  # after ReLU: unsigned


def test_wrong_input_shape_names_the_layer():
    lin = hn.QLinear(8, 4)
    with pytest.raises(QuantizationError, match=r"QLinear: input sample shape \(6,\)"):
        lin(torch.randn(2, 6))
    conv = hn.QConv1d(2, 4, 3)  # per-parameter input bits: sized by the first input
    conv(torch.randn(2, 2, 16))
    with pytest.raises(QuantizationError, match="QConv1d"):
        conv(torch.randn(2, 2, 20))
    conv_t = hn.QConv1d(2, 4, 3, input_quantizer=dict(bits=6, granularity="tensor"))
    conv_t(torch.randn(2, 2, 16))
    assert conv_t(torch.randn(2, 2, 20)).shape == (2, 4, 18)  # per-tensor bits fit any length
    assert conv_t.macs() == 18 * 4 * 2 * 3
    conv_c = hn.QConv1d(2, 4, 3, input_quantizer=dict(bits=6, granularity="channel"))
    conv_c(torch.randn(2, 2, 16))
    assert conv_c(torch.randn(2, 2, 9)).shape == (2, 4, 7)  # per-channel bits too
