"""FixedPointQuantizer: gradients, initialization, calibration, granularity, errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from hwnas.quant import (
    FixedPointQuantizer,
    PerChannel,
    PerParameter,
    PerTensor,
    QuantizationError,
    QuantizationWarning,
    ap_type_name,
    calibrate,
    check_kif,
    minimal_integer_bits,
    parse_granularity,
    quantize_fixed,
)
from hwnas.quant.reference import quantize_fixed_np

LN2 = math.log(2.0)


def test_f_gradient_is_hgq_surrogate():
    """∂q/∂f = ln2·(x − q) for elements inside the range (δ = x − q, ∂δ/∂f = −ln2·δ)."""
    x = torch.tensor([0.30, -0.70, 0.11, 0.52, 0.2499])
    f = torch.full((5,), 3.0, requires_grad=True)
    q = quantize_fixed(x, 1, torch.full((5,), 2.0), f, "RND", "SAT")
    q.sum().backward()
    delta = (x - q).detach()
    assert torch.allclose(f.grad, LN2 * delta)
    # sign: elements rounded down (delta > 0) want more bits to reduce |delta| under a loss pushing q up
    assert torch.all(torch.sign(f.grad[delta != 0]) == torch.sign(delta[delta != 0]))


def test_f_gradient_reduced_per_tensor_and_channel():
    x = torch.randn(4, 6, dtype=torch.float64)
    for f_shape in [(), (1, 1), (4, 1), (1, 6)]:
        f = torch.full(f_shape, 2.0, dtype=torch.float64, requires_grad=True)
        q = quantize_fixed(x, 1, 4, f, "RND", "SAT")
        g = torch.randn_like(x)
        (q * g).sum().backward()
        expect = (g * LN2 * (x - q.detach())).sum_to_size(f_shape) if f_shape else (g * LN2 * (x - q.detach())).sum()
        assert torch.allclose(f.grad, expect)


def test_x_gradient_straight_through_and_clipping():
    x = torch.tensor([0.3, 5.0, -5.0, -0.2], requires_grad=True)
    i = torch.tensor(1.0, requires_grad=True)
    q = quantize_fixed(x, 1, i, 4.0, "RND", "SAT")
    q.sum().backward()
    assert x.grad.tolist() == [1.0, 0.0, 0.0, 1.0]
    # i gradient: +ln2·2^i from the upper bound, −ln2·2^i from the lower bound: they cancel here
    assert i.grad.item() == pytest.approx(0.0)
    i.grad = None
    x2 = torch.tensor([5.0, 6.0, 0.1])
    quantize_fixed(x2, 1, i, 4.0, "RND", "SAT").sum().backward()
    assert i.grad.item() == pytest.approx(2 * LN2 * 2.0)


def test_wrap_mode_passes_x_gradient_and_no_i_gradient():
    x = torch.tensor([0.3, 5.0], requires_grad=True)
    i = torch.tensor(1.0, requires_grad=True)
    q = quantize_fixed(x, 1, i, 2.0, "TRN", "WRAP")
    q.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0]
    assert i.grad is None or i.grad.item() == 0.0
    assert q[1].item() == quantize_fixed_np(5.0, 1, 1, 2, "TRN", "WRAP")


def test_pruned_elements_output_zero_and_keep_gradient():
    x = torch.tensor([0.8, -0.6])
    f = torch.tensor([-1.0, 2.0], requires_grad=True)
    q = quantize_fixed(x, 1, torch.tensor([0.0, 0.0]), f, "RND", "SAT")  # widths 0 and 3
    assert q[0].item() == 0.0
    q.sum().backward()
    assert f.grad[0].item() == pytest.approx(LN2 * 0.8)  # delta = x for a pruned element


def test_bits_move_in_training_and_fall_under_ebops_pressure():
    torch.manual_seed(0)
    w_true = torch.randn(16, 8)
    x = torch.randn(256, 8)
    y = x @ w_true.T
    quant = FixedPointQuantizer(bits=4, granularity="parameter", element_shape=(16, 8))
    w = torch.nn.Parameter(torch.randn(16, 8) * 0.1)
    quant(w)
    b0 = quant.element_bits().detach().clone()
    opt = torch.optim.Adam([w, *quant.parameters()], lr=0.02)
    for _ in range(200):
        loss = ((x @ quant(w).T - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    b1 = quant.element_bits().detach()
    assert (b1 != b0).float().mean() > 0.5  # bits really moved
    err = ((x @ quant(w).T - y) ** 2).mean()
    assert err < 0.05 * (y**2).mean()
    # now an EBOPs-like pressure on the bits alone shrinks them
    opt = torch.optim.Adam(quant.parameters(), lr=0.05)
    for _ in range(100):
        loss = 1e-2 * quant.element_bits().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert quant.element_bits().sum() < b1.sum() * 0.7


def test_init_from_statistics_never_collapses_small_weights():
    torch.manual_seed(0)
    lin = torch.nn.Linear(512, 256)  # kaiming-uniform: |w| < 1/sqrt(512) ≈ 0.044
    for gran in ["tensor", "channel", "parameter"]:
        q = FixedPointQuantizer(bits=6, granularity=gran, element_shape=tuple(lin.weight.shape))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            qw = q(lin.weight)
        assert (qw != 0).float().mean() > 0.9, gran
        rel = (qw - lin.weight).abs().max() / lin.weight.abs().max()
        assert rel < 2 ** -4, gran


def test_warning_when_whole_tensor_quantizes_to_zero():
    q = FixedPointQuantizer(None, i=0, f=2, learnable=False, element_shape=(10,))
    with pytest.warns(QuantizationWarning, match="quantizes to 0"):
        q(torch.full((10,), 0.01))


def test_granularity_shapes_and_reduce():
    assert PerTensor().shape((4, 3, 5)) == (1, 1, 1)
    assert PerChannel(0).shape((4, 3, 5)) == (4, 1, 1)
    assert PerChannel(-1).shape((4, 3, 5)) == (1, 1, 5)
    assert PerParameter().shape((4, 3)) == (4, 3)
    t = torch.arange(24.0).reshape(2, 3, 4)
    r = PerChannel(0).reduce(t, "amax", batch_dims=1)
    assert r.shape == (3, 1) and r.flatten().tolist() == [15.0, 19.0, 23.0]
    with pytest.raises(QuantizationError, match="granularity"):
        PerChannel(3).shape((4, 3))
    with pytest.raises(QuantizationError, match="granularity"):
        parse_granularity("per-row")


def test_channel_quantizer_activation_shape():
    q = FixedPointQuantizer(bits=6, granularity="channel", axis=0, batch_dims=1)
    x = torch.randn(8, 3, 10) * torch.tensor([0.1, 1.0, 10.0]).reshape(1, 3, 1)
    out = q(x)
    assert q.f.shape == (3, 1)
    assert out.shape == x.shape
    _, i, _ = q.kif()
    assert i[0] < i[1] < i[2]


def test_wrap_calibration_sets_integer_bits_from_data():
    q = FixedPointQuantizer(bits=None, f=4, overflow_mode="WRAP", round_mode="TRN", batch_dims=1,
                            granularity="parameter", learnable=False)
    model = torch.nn.Sequential(q)
    data = torch.tensor([[0.5, -3.2, 0.0], [1.9, 2.0, 0.0], [-0.1, 7.9, 0.0]])
    calibrate(model, data, batch_size=2)
    _, i, _ = q.kif()
    expect = minimal_integer_bits(data, torch.ones(3), torch.full((3,), 4.0), "TRN", prune_zeros=True).amax(0)
    assert torch.equal(i, expect)
    assert i.tolist() == [1.0, 3.0, -5.0]  # the always-zero feature is pruned (width 0)
    out = q(data)  # no element wraps after calibration
    assert torch.equal(out, torch.floor(data * 16) / 16)


def _static_integer_bits_np(x: np.ndarray, bits: int, k: int) -> int:
    """Reference: the smallest i whose codes at f = bits-k-i (round half up) hold every value without clipping."""
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if k else (0, 2 ** bits - 1)
    for i in range(-24, 25):
        codes = np.floor(x.astype(np.float64) * 2.0 ** (bits - k - i) + 0.5)
        if codes.min() >= lo and codes.max() <= hi:
            return i
    raise AssertionError("no i holds the data")


@pytest.mark.parametrize("start_scale", [1e3, 1.0, 1e-3])
def test_static_calibration_is_exact_in_one_pass_from_any_start(start_scale: float):
    """A static quantizer (bits fixed, f = bits-k-i) calibrates to the reference i whatever range it started
    with, in one pass: a far-off start used to round the data at a stale f (flushing it to 0) and under-measure.
    Downstream quantizers see values rounded at the new f, so a second pass changes nothing."""
    g = torch.Generator().manual_seed(11)
    data = torch.randn(300, 5, generator=g) * 0.05
    data[7, 2] = 0.2495  # rounds up into a new power of two at the f the data implies
    first = FixedPointQuantizer(bits=6, round_mode="RND", batch_dims=1, learnable=False)
    second = FixedPointQuantizer(bits=4, round_mode="RND", batch_dims=1, learnable=False)
    model = torch.nn.Sequential(first, torch.nn.Linear(5, 3), second)
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(3, 5, generator=g))
        model[1].bias.zero_()
        model(torch.randn(8, 5, generator=g) * start_scale)  # materialize on far-off data
    calibrate(model, data, batch_size=64)
    want = _static_integer_bits_np(data.numpy(), 6, 1)
    assert first.kif()[1].item() == want
    assert first.kif()[2].item() == 6 - 1 - want
    with torch.no_grad():
        hidden = model[1](first(data)).numpy()
    assert second.kif()[1].item() == _static_integer_bits_np(hidden, 4, 1)
    state = [t.clone() for t in (first.i, first.f, second.i, second.f)]
    calibrate(model, data, batch_size=64)
    assert all(torch.equal(a, b) for a, b in zip(state, (first.i, first.f, second.i, second.f), strict=True))
    ref = quantize_fixed_np(data.numpy(), 1, want, 6 - 1 - want, "RND", "SAT")
    with torch.no_grad():
        assert np.array_equal(first(data).numpy(), ref)


def test_signed_auto_calibration():
    q = FixedPointQuantizer(bits=6, signed="auto", batch_dims=1, granularity="parameter", learnable=False)
    calibrate(torch.nn.Sequential(q), torch.tensor([[0.5, -1.0], [0.25, 2.0]]))
    assert q.k.tolist() == [0.0, 1.0]


def test_calibrate_rejects_nan_and_changes_nothing():
    q = FixedPointQuantizer(bits=None, f=4, overflow_mode="WRAP", batch_dims=1, learnable=False)
    model = torch.nn.Sequential(q)
    calibrate(model, torch.ones(4, 3))
    before = q.i.clone()
    with pytest.raises(QuantizationError, match="NaN"):
        calibrate(model, torch.tensor([[100.0, float("nan"), 1.0]]))
    assert torch.equal(q.i, before)
    assert not q.calibrating


def test_state_dict_round_trip_into_fresh_quantizer():
    q = FixedPointQuantizer(bits=5, granularity="parameter", batch_dims=1)
    x = torch.randn(16, 7)
    y = q(x)
    fresh = FixedPointQuantizer(bits=5, granularity="parameter", batch_dims=1)
    fresh.load_state_dict(q.state_dict())
    assert torch.equal(fresh(x), y)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(bits=-1), "bits"),
        (dict(bits=3.5), "bits"),
        (dict(bits=8, round_mode="ROUND_UP"), "round_mode"),
        (dict(bits=8, overflow_mode="CLAMP"), "overflow_mode"),
        (dict(bits=8, signed="yes"), "signed"),
        (dict(bits=None, i=2, f=-5), "width"),
        (dict(bits=8, granularity="row"), "granularity"),
        (dict(bits=None), "bits"),
    ],
)
def test_bad_configuration_names_the_parameter(kwargs, match):
    with pytest.raises(QuantizationError, match=match):
        FixedPointQuantizer(**kwargs)


def test_check_kif_and_type_names():
    assert check_kif(1, 3, 4) == (1, 3, 4)
    with pytest.raises(QuantizationError, match="k"):
        check_kif(2, 3, 4)
    with pytest.raises(QuantizationError, match="i"):
        check_kif(1, 2.5, 4)
    with pytest.raises(QuantizationError, match="negative"):
        check_kif(0, -3, 1)
    assert ap_type_name(1, 3, 4, "RND", "SAT") == "ap_fixed<8,4,AP_RND,AP_SAT>"
    assert ap_type_name(0, 2, 6) == "ap_ufixed<8,2,AP_TRN,AP_WRAP>"
    with pytest.raises(QuantizationError, match="width of 0"):
        ap_type_name(0, 0, 0)


def test_reference_rejects_bad_input():
    with pytest.raises(QuantizationError, match="k"):
        quantize_fixed_np(np.ones(3), 2, 1, 1)
    with pytest.raises(QuantizationError, match="widths"):
        quantize_fixed_np(np.ones(3), 0, -2, 1)
    with pytest.raises(QuantizationError, match="NaN"):
        quantize_fixed_np(np.array([np.nan]), 1, 1, 1)
    with pytest.raises(QuantizationError, match="round_mode"):
        quantize_fixed(torch.ones(2), 1, 1, 1, "NEAREST")


@pytest.mark.slow
def test_compiled_kernels_equal_eager_forward_and_backward():
    """The torch.compile-fused kernels give the same values and gradients as the eager ones."""
    from hwnas.quant import use_compiled_kernels

    torch.manual_seed(0)
    x = torch.randn(64, 40, 16) * 4
    g = torch.randn_like(x)
    cases = [("RND", "SAT", 1.0), ("TRN", "WRAP", 1.0), ("RND_CONV", "SAT_SYM", 1.0), ("RND", "SAT", 0.0)]
    f_values = [torch.randint(0, 5, (40, 1)).float() for _ in cases]
    results = []
    for compiled in (False, True):
        use_compiled_kernels(compiled, min_numel=1)
        try:
            outs = []
            for (r, o, k), f0 in zip(cases, f_values, strict=True):
                xr = x.clone().requires_grad_()
                f = f0.clone().requires_grad_()
                i = torch.full((40, 1), 2.0, requires_grad=True)
                q = quantize_fixed(xr, torch.full((40, 1), k), i, f, r, o)
                q.backward(g)
                outs.append((q.detach(), xr.grad, f.grad, i.grad))
            if compiled:
                from hwnas.quant.fixed import _COMPILE

                if not _COMPILE["enabled"]:
                    pytest.skip("torch.compile is unavailable here (hwnas fell back to eager kernels)")
            results.append(outs)
        finally:
            use_compiled_kernels(False)
    for eager, fused in zip(*results, strict=True):
        for a, b in zip(eager, fused, strict=True):
            assert (a is None and b is None) or torch.equal(a, b)


def test_i_gradient_with_mixed_sign_bits():
    """Clipped at the bottom: signed elements pull i up (−ln2·2^i), unsigned ones (bound 0) do not."""
    x = torch.tensor([[-9.0, -9.0, 9.0, 0.5]])
    k = torch.tensor([1.0, 0.0, 0.0, 1.0])
    i = torch.full((4,), 2.0, requires_grad=True)
    q = quantize_fixed(x, k, i, torch.full((4,), 3.0), "RND", "SAT")
    assert q.tolist() == [[-4.0, 0.0, 4.0 - 1 / 8, 0.5]]
    q.sum().backward()
    expect = LN2 * 4.0 * torch.tensor([-1.0, 0.0, 1.0, 0.0])
    assert torch.allclose(i.grad, expect)


def test_minimal_integer_bits_is_the_smallest_that_does_not_overflow():
    """Check against brute force: i is minimal such that SAT quantization changes nothing but rounding."""
    rng = np.random.default_rng(3)
    x = rng.normal(0, 4, size=400) * rng.choice([1e-3, 1, 30], size=400)
    for k in (0.0, 1.0):
        for f in (-2, 0, 3, 7):
            need = minimal_integer_bits(torch.tensor(x), torch.tensor(k), torch.tensor(float(f)), "RND").numpy()
            for j in range(0, 400, 7):
                rounded = quantize_fixed_np(x[j], int(k), 40, f, "RND", "SAT")
                if k == 0 and rounded < 0:
                    continue
                i = int(need[j])
                assert quantize_fixed_np(x[j], int(k), i, f, "RND", "SAT") == rounded
                if int(k) + i - 1 + f >= 1:
                    assert quantize_fixed_np(x[j], int(k), i - 1, f, "RND", "SAT") != rounded


def test_static_weight_quantizer_is_stable_across_calls() -> None:
    """A static quantizer whose i follows the weight gives the same weight on every call (i from the data alone).

    Regression: i used to be derived from values rounded at the *previous* f, so a channel whose maximum rounds
    up into the next power of two at one f but not at the other alternated between two formats.
    """
    import hwnas.nn as hn

    for seed in range(12):
        torch.manual_seed(seed)
        layer = hn.QLinear(8, 12, weight_quantizer=dict(bits=4, learnable=False, granularity="channel"))
        first = layer.quantized_weight().detach().clone()
        kif = [t.clone() for t in layer.weight_quantizer.kif()]
        for _ in range(3):
            assert torch.equal(layer.quantized_weight(), first)
            assert all(torch.equal(a, b) for a, b in zip(layer.weight_quantizer.kif(), kif, strict=True))
        k, i, f = kif
        assert torch.all(k + i + f == 4)
        # minimal: one integer bit fewer (one fractional bit more) overflows some element of every channel
        w = layer.weight.detach()
        q = quantize_fixed(w, k, i - 1, f + 1, "RND", "SAT")
        r = quantize_fixed(w, k, i - 1, f + 1, "RND", "WRAP")
        assert torch.all(torch.any((q != r) | (q.abs() >= torch.exp2(i - 1)), dim=1))
