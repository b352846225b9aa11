"""Tests of hwnas.quant.scaled (scaled-integer and float16 quantizers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.quant.modes import QuantizationError
from hwnas.quant.reference import quantize_scaled_np
from hwnas.quant.scaled import Float16Quantizer, ScaledIntQuantizer


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _data(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Random float32 data with per-channel (axis 0 and 1) scale differences."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    if len(shape) >= 2:
        x = x * torch.logspace(-1, 1, shape[0]).reshape(-1, *([1] * (len(shape) - 1)))
        x = x * torch.linspace(0.5, 2.0, shape[1]).reshape(1, -1, *([1] * (len(shape) - 2)))
    return x.to(torch.float32)


def _with_ties(x: torch.Tensor, q: ScaledIntQuantizer, dim: int) -> torch.Tensor:
    """``x`` with .5 ties (in units of the scale) and values far outside the range appended along ``dim``."""
    assert q.scale is not None
    s = q.scale.expand_as(x)
    g = torch.Generator().manual_seed(1)
    k = torch.randint(-10, 10, x.shape, generator=g).to(torch.float32)
    ties = (k + 0.5) * s  # exactly representable for a power-of-two scale; near-ties otherwise
    outside = torch.sign(x) * (s * (2 ** (q.bits + 1))) + x
    out = torch.cat([x, ties, outside], dim=dim)
    y = _np(out) / _np(q.scale)  # float32 division, as in the reference
    assert np.sum(y - np.floor(y) == 0.5) > 10  # plenty of exact ties
    return out


CONFIGS = [
    dict(bits=8),
    dict(bits=8, narrow=True),
    dict(bits=4, symmetric=False),
    dict(bits=3, signed=False),
    dict(bits=6, signed=False, symmetric=False),
    dict(bits=2),
    dict(bits=16, symmetric=False, narrow=True),
    dict(bits=8, granularity="channel", axis=0),
    dict(bits=8, granularity="channel", axis=1),
    dict(bits=4, granularity="channel", axis=1, symmetric=False),
    dict(bits=5, granularity="channel", axis=0, signed=False, narrow=True),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_bit_exact_vs_reference_weights(cfg):
    q = ScaledIntQuantizer(**cfg)
    w = _data((6, 5, 7))
    q(w)  # first forward sets the range from the weight itself
    x = _with_ties(w, q, dim=-1)
    ref = quantize_scaled_np(_np(x), _np(q.scale), _np(q.zero_point), q.qmin, q.qmax)
    out = q(x)
    assert out.dtype == torch.float32
    assert np.array_equal(_np(out), ref), f"{np.sum(_np(out) != ref)} mismatches"


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_bit_exact_vs_reference_activations(cfg):
    q = ScaledIntQuantizer(**cfg)
    q.batch_dims = 1
    q.begin_calibration()
    for seed in range(3):
        x = _data((4, 5, 9), seed)
        assert q(x) is x  # calibration returns the input unchanged
    q.end_calibration()
    assert q.scale is not None and q.scale.shape == ScaledIntQuantizer(**cfg).granularity.shape((5, 9))
    x = _with_ties(_data((4, 5, 9), 7), q, dim=0)
    ref = quantize_scaled_np(_np(x), _np(q.scale), _np(q.zero_point), q.qmin, q.qmax)
    assert np.array_equal(_np(q(x)), ref)


def test_exact_half_ties_power_of_two_scale():
    q = ScaledIntQuantizer(8)
    q(torch.tensor([127.0 / 16]))  # scale = 1/16 exactly
    assert float(q.scale) == 1.0 / 16
    k = torch.arange(-140, 140, dtype=torch.float32)
    x = (k + 0.5) / 16  # exact ties: half-to-even
    out = q(x)
    ref = quantize_scaled_np(_np(x), 1.0 / 16, 0, -128, 127)
    assert np.array_equal(_np(out), ref)
    codes = q.integer_codes(x)
    assert codes.dtype == torch.int32
    expected = np.clip(np.rint(_np(k) + 0.5), -128, 127)
    assert np.array_equal(_np(codes), expected)
    assert torch.equal(codes[:5], torch.tensor([-128, -128, -128, -128, -128], dtype=torch.int32))
    assert torch.equal(q.integer_codes(torch.tensor([0.5, 1.5, 2.5, -0.5]) / 16), torch.tensor([0, 2, 2, 0],
                                                                                              dtype=torch.int32))


def test_dtype_preserved_and_float64_matches_reference():
    q = ScaledIntQuantizer(8, symmetric=False)
    x = _data((3, 4, 5)).to(torch.float64) * 1.2345678901
    out = q(x)
    assert out.dtype == torch.float64
    ref = quantize_scaled_np(_np(x), _np(q.scale), _np(q.zero_point), q.qmin, q.qmax)
    assert np.array_equal(_np(out).astype(np.float32), ref)
    xh = x.to(torch.bfloat16)
    assert q(xh).dtype == torch.bfloat16


@pytest.mark.parametrize("bits", [2, 4, 8, 16])
@pytest.mark.parametrize("narrow", [False, True])
def test_paper_scale_formula(bits, narrow):
    w = _data((8, 16), 3)
    q = ScaledIntQuantizer(bits, narrow=narrow)
    q(w)
    expected = np.float32(np.abs(_np(w)).max()) / np.float32(2 ** (bits - 1) - 1)
    assert q.scale.shape == (1, 1)
    assert float(q.scale) == float(expected)  # same float32 division as numpy
    assert float(q.zero_point) == 0.0
    qc = ScaledIntQuantizer(bits, narrow=narrow, granularity="channel")
    qc(w)
    exp_c = np.abs(_np(w)).max(axis=1, keepdims=True) / np.float32(2 ** (bits - 1) - 1)
    np.testing.assert_allclose(_np(qc.scale), exp_c, rtol=1e-6)
    # the largest magnitude is exactly representable (code ±(2^(b-1)-1))
    i = int(np.abs(_np(w)).argmax())
    wmax = w.reshape(-1)[i]
    assert abs(float(q(wmax.reshape(1, 1))) - float(wmax)) <= 1e-6 * abs(float(wmax))


def test_qmin_qmax():
    assert (ScaledIntQuantizer(8).qmin, ScaledIntQuantizer(8).qmax) == (-128, 127)
    assert (ScaledIntQuantizer(8, narrow=True).qmin, ScaledIntQuantizer(8, narrow=True).qmax) == (-127, 127)
    assert (ScaledIntQuantizer(4, signed=False).qmin, ScaledIntQuantizer(4, signed=False).qmax) == (0, 15)
    u = ScaledIntQuantizer(4, signed=False, narrow=True)
    assert (u.qmin, u.qmax) == (0, 15)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("bits", [4, 8])
def test_asymmetric_zero_point(signed, bits):
    g = torch.Generator().manual_seed(5)
    x = torch.rand(1000, generator=g) * 5.0 - 1.3  # [-1.3, 3.7)
    q = ScaledIntQuantizer(bits, signed=signed, symmetric=False)
    q(x)
    s, zp = float(q.scale), float(q.zero_point)
    assert s == pytest.approx((float(x.max()) - float(x.min())) / (q.qmax - q.qmin), rel=1e-6)
    assert zp == round(zp) and q.qmin <= zp <= q.qmax
    codes = q.integer_codes(torch.stack([x.min(), x.max(), torch.tensor(0.0)]))
    assert abs(int(codes[0]) - q.qmin) <= 1
    assert abs(int(codes[1]) - q.qmax) <= 1
    assert int(codes[2]) == zp
    assert float(q(torch.tensor([0.0]))) == 0.0  # zero exactly representable
    out = q(torch.stack([x.min(), x.max()]))
    assert torch.all((out - torch.stack([x.min(), x.max()])).abs() <= s)


def test_asymmetric_one_sided_range_contains_zero():
    x = torch.linspace(2.0, 5.0, 100)
    q = ScaledIntQuantizer(8, symmetric=False)
    q(x)
    assert float(q.zero_point) == q.qmin  # min clipped to 0
    assert float(q.scale) == pytest.approx(5.0 / 255, rel=1e-6)
    assert float(q(torch.tensor([0.0]))) == 0.0


def test_symmetric_unsigned():
    x = torch.tensor([-3.0, 0.0, 1.0, 2.55])
    q = ScaledIntQuantizer(8, signed=False)
    q(x)
    assert float(q.scale) == pytest.approx(2.55 / 255, rel=1e-6)
    assert float(q.zero_point) == 0.0
    out = q(x)
    assert float(out[0]) == 0.0 and float(out[3]) == pytest.approx(2.55, rel=1e-6)


def test_zero_range_gives_unit_scale():
    for cfg in (dict(), dict(symmetric=False), dict(signed=False), dict(granularity="channel")):
        q = ScaledIntQuantizer(8, **cfg)
        w = torch.zeros(3, 4)
        if cfg.get("granularity"):
            w[0] = torch.linspace(-1, 1, 4)
        out = q(w)
        assert torch.all(torch.isfinite(q.scale)) and torch.all(q.scale > 0)
        assert torch.equal(out[1:], torch.zeros(2, 4))
        if cfg.get("granularity"):
            assert torch.equal(q.scale[1:], torch.ones(2, 1))
        else:
            assert float(q.scale) == 1.0 and torch.equal(out, torch.zeros(3, 4))


def test_percentile_clips_outlier():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, generator=g)
    x[123] = 1000.0
    qm = ScaledIntQuantizer(8)
    qp = ScaledIntQuantizer(8, calibration="percentile", percentile=99.9)
    qm(x)
    qp(x)
    assert float(qm.scale) == pytest.approx(1000.0 / 127)
    assert float(qp.scale) < float(qm.scale) / 100
    expected = np.percentile(np.abs(_np(x)), 99.9) / 127
    assert float(qp.scale) == pytest.approx(expected, rel=1e-5)
    # asymmetric: the (100-p, p) percentiles
    qa = ScaledIntQuantizer(8, symmetric=False, calibration="percentile", percentile=99.0)
    qa(x)
    lo, hi = np.percentile(_np(x), [1.0, 99.0])
    assert float(qa.scale) == pytest.approx((hi - lo) / 255, rel=1e-5)


def test_percentile_per_channel_activation():
    q = ScaledIntQuantizer(8, granularity="channel", calibration="percentile", percentile=95.0)
    q.batch_dims = 1
    x = _data((64, 3, 10), 2)
    q.begin_calibration()
    q(x[:32])
    q(x[32:])
    q.end_calibration()
    a = np.abs(_np(x)).transpose(1, 0, 2).reshape(3, -1)
    expected = np.percentile(a, 95.0, axis=1) / 127
    np.testing.assert_allclose(_np(q.scale).reshape(-1), expected, rtol=1e-5)
    assert q.scale.shape == (3, 1)


def _mse(q: ScaledIntQuantizer, x: torch.Tensor) -> float:
    return float((q(x) - x).square().mean())


def _rel_mse(q: ScaledIntQuantizer, x: torch.Tensor, dim: int) -> float:
    """Mean over channels (``dim``) of the per-channel error relative to the channel's power."""
    other = [d for d in range(x.ndim) if d != dim]
    return float(((q(x) - x).square().mean(dim=other) / x.square().mean(dim=other)).mean())


def test_mse_beats_minmax_on_laplace():
    x = torch.distributions.Laplace(0.0, 1.0).sample((20000,))
    x = x.to(torch.float32)
    qm = ScaledIntQuantizer(4)
    qe = ScaledIntQuantizer(4, calibration="mse")
    qm(x)
    qe(x)
    assert float(qe.scale) < float(qm.scale)
    assert _mse(qe, x) < 0.8 * _mse(qm, x)
    qa = ScaledIntQuantizer(4, symmetric=False, calibration="mse")
    qa(x)
    qam = ScaledIntQuantizer(4, symmetric=False)
    qam(x)
    assert _mse(qa, x) < _mse(qam, x)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_per_channel_beats_per_tensor():
    w = torch.randn(8, 64) * torch.logspace(-3, 1, 8)[:, None]
    qt = ScaledIntQuantizer(8)
    qc = ScaledIntQuantizer(8, granularity="channel")
    assert _rel_mse(qc, w, 0) < 0.01 * _rel_mse(qt, w, 0)
    assert _mse(qc, w) < _mse(qt, w)
    # per-channel on the second axis of an activation sample
    qa = ScaledIntQuantizer(8, granularity="channel", axis=1)
    qa.batch_dims = 1
    x = torch.randn(16, 5, 4) * torch.logspace(-3, 1, 4)
    qa.begin_calibration()
    qa(x)
    qa.end_calibration()
    assert qa.scale.shape == (1, 4)
    qta = ScaledIntQuantizer(8)
    qta.batch_dims = 1
    qta.begin_calibration()
    qta(x)
    qta.end_calibration()
    assert _rel_mse(qa, x, 2) < 0.01 * _rel_mse(qta, x, 2)
    assert _mse(qa, x) < _mse(qta, x)


def test_int8_error_bound():
    w = torch.randn(32, 32)
    q = ScaledIntQuantizer(8, granularity="channel")
    out = q(w)
    err = (out - w).abs()
    assert torch.all(err <= q.scale / 2 * (1 + 1e-5))
    assert torch.all(err <= w.abs().amax(dim=1, keepdim=True) / 254 * (1 + 1e-5))


def test_activation_minmax_accumulates_batches():
    q = ScaledIntQuantizer(8, symmetric=False)
    q.batch_dims = 1
    q.begin_calibration()
    q(torch.tensor([[0.5, 1.0]]))
    q(torch.tensor([[-2.0, 0.0]]))
    q(torch.tensor([[3.0, 0.1]]))
    q.end_calibration()
    assert float(q.scale) == pytest.approx(5.0 / 255)
    assert q.scale.shape == (1,)


def test_sample_cap_is_deterministic_and_bounded():
    def run() -> ScaledIntQuantizer:
        q = ScaledIntQuantizer(8, calibration="percentile", percentile=90.0, max_samples=100)
        q.batch_dims = 1
        q.begin_calibration()
        for i in range(10):
            q(torch.arange(i * 37, (i + 1) * 37, dtype=torch.float32).reshape(1, 37))
        assert q._samples is not None
        n = q._samples.shape[1]
        assert 50 < n <= 100
        # evenly strided over the whole stream
        assert torch.equal(q._samples[0], torch.arange(0, 370, q._stride, dtype=torch.float32)[:n])
        q.end_calibration()
        return q

    a, b = run(), run()
    assert torch.equal(a.scale, b.scale)
    assert float(a.scale) == pytest.approx(np.percentile(np.arange(370), 90.0) / 127, rel=0.02)


def test_weight_recalibration_with_begin_end():
    q = ScaledIntQuantizer(8)
    w = torch.randn(4, 4)
    q(w)
    first = q.scale.clone()
    w2 = w * 3
    assert torch.equal(q.scale, first)
    q.begin_calibration()
    out = q(w2)  # weights quantize while calibrating
    q.end_calibration()
    assert torch.allclose(q.scale, first * 3, rtol=1e-6)
    assert torch.equal(out, q(w2))


@pytest.mark.parametrize(
    "cfg",
    [dict(bits=8, granularity="channel", symmetric=False), dict(bits=4, calibration="mse"), dict(bits=6)],
)
def test_state_dict_round_trip(cfg):
    src = ScaledIntQuantizer(**cfg)
    src.batch_dims = 1
    x = torch.randn(8, 3, 5) * 2
    src.begin_calibration()
    src(x)
    src.end_calibration()
    sd = src.state_dict()
    assert set(sd) == {"scale", "zero_point"}
    dst = ScaledIntQuantizer(**cfg)
    dst.batch_dims = 1
    dst.load_state_dict(sd)
    assert torch.equal(dst(x), src(x))
    assert torch.equal(dst.integer_codes(x), src.integer_codes(x))
    # weights: loaded parameters win over the weight's own range
    w_src = ScaledIntQuantizer(**cfg)
    w_src(torch.randn(3, 5) * 10)
    w_dst = ScaledIntQuantizer(**cfg)
    w_dst.load_state_dict(w_src.state_dict())
    w = torch.randn(3, 5)
    assert torch.equal(w_dst(w), w_src(w))
    # inside a parent module
    parent = torch.nn.Sequential(ScaledIntQuantizer(**cfg))
    parent.load_state_dict(torch.nn.Sequential(w_src).state_dict())
    assert torch.equal(parent(w), w_src(w))


def test_fresh_state_dict_is_empty():
    assert ScaledIntQuantizer(8).state_dict() == {}


def test_element_bits_and_describe():
    q = ScaledIntQuantizer(8, granularity="channel")
    assert float(q.element_bits()) == 8.0
    q(torch.randn(4, 3))
    eb = q.element_bits()
    assert eb.shape == (4, 1) and eb.dtype == torch.float32 and torch.all(eb == 8)
    assert q.max_bits() == 8.0
    assert not q.learnable
    assert q.describe() == "int8 symmetric per-channel(axis=0) minmax"
    uq = ScaledIntQuantizer(4, signed=False, symmetric=False)
    assert uq.describe() == "uint4 asymmetric per-tensor minmax"
    assert "percentile(99.9)" in ScaledIntQuantizer(8, calibration="percentile", percentile=99.9).describe()


def test_ste_gradient():
    q = ScaledIntQuantizer(8)
    q(torch.tensor([-1.27, 1.27]))  # scale = 0.01, range [-1.28, 1.27]
    x = torch.tensor([-5.0, -1.2, 0.0, 0.3, 1.26, 1.3, 5.0], requires_grad=True)
    q(x).sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]))
    qa = ScaledIntQuantizer(4, symmetric=False, granularity="channel")
    w = torch.tensor([[0.0, 1.0], [-2.0, 2.0]])
    qa(w)
    xw = torch.tensor([[-0.5, 0.5], [1.0, 9.0]], requires_grad=True)
    (qa(xw) * 3).sum().backward()
    assert torch.equal(xw.grad, torch.tensor([[0.0, 3.0], [3.0, 0.0]]))


def test_float16_quantizer():
    q = Float16Quantizer()
    x = torch.randn(1000) * torch.logspace(-8, 5, 1000)
    x[0] = 1e6  # overflows to inf, like numpy
    out = q(x)
    assert out.dtype == torch.float32
    with np.errstate(over="ignore"):
        assert np.array_equal(_np(out), _np(x).astype(np.float16).astype(np.float32))
    assert torch.isinf(out[0])
    x64 = x.to(torch.float64).requires_grad_(True)
    out64 = q(x64)
    assert out64.dtype == torch.float64
    with np.errstate(over="ignore"):
        assert np.array_equal(_np(out64), _np(x64).astype(np.float16).astype(np.float64))
    out64.sum().backward()
    assert torch.equal(x64.grad, torch.ones_like(x64))
    assert float(q.element_bits()) == 16.0 and q.max_bits() == 16.0
    assert q.describe() == "fp16"
    q.begin_calibration()
    q.end_calibration()
    assert not q.calibrating


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(bits=1), "bits"),
        (dict(bits=17), "bits"),
        (dict(bits=8.0), "bits"),
        (dict(bits=8, granularity="parameter"), "granularity"),
        (dict(bits=8, granularity="foo"), "granularity"),
        (dict(bits=8, calibration="foo"), "calibration"),
        (dict(bits=8, percentile=0.0), "percentile"),
        (dict(bits=8, percentile=100.5), "percentile"),
        (dict(bits=8, max_samples=0), "max_samples"),
    ],
)
def test_invalid_config(kwargs, match):
    with pytest.raises(QuantizationError, match=match):
        ScaledIntQuantizer(**kwargs)


def test_uncalibrated_activation_raises():
    q = ScaledIntQuantizer(8)
    q.batch_dims = 1
    with pytest.raises(QuantizationError, match=r"hwnas\.quant\.calibrate\(model, data\)"):
        q(torch.randn(2, 3))
    with pytest.raises(QuantizationError, match="calibrate"):
        q.integer_codes(torch.randn(2, 3))
    q.begin_calibration()
    q.end_calibration()  # nothing recorded: still uncalibrated
    with pytest.raises(QuantizationError, match="calibrate"):
        q(torch.randn(2, 3))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_calibration_data(bad):
    w = torch.randn(3, 3)
    w[1, 1] = bad
    with pytest.raises(QuantizationError, match="x"):
        ScaledIntQuantizer(8)(w)
    q = ScaledIntQuantizer(8)
    q.batch_dims = 1
    q.begin_calibration()
    with pytest.raises(QuantizationError, match=r"^x: .*NaN"):
        q(w)


def test_shape_mismatch_raises():
    q = ScaledIntQuantizer(8, granularity="channel")
    q(torch.randn(4, 3))
    with pytest.raises(QuantizationError, match="x"):
        q(torch.randn(5, 3))
