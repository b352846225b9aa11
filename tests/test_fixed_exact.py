"""Bit-exactness: torch quantizer == NumPy reference == ap_fixed compiled with g++."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from hwnas.quant import OverflowMode, RoundingMode, quantize_fixed
from hwnas.quant.reference import quantize_fixed_np

from .apfixed import ApType, ap_types_dir, run_ap_fixed

ROUNDS = [m.value for m in RoundingMode]
OVERFLOWS = [m.value for m in OverflowMode]


def _cases() -> list[ApType]:
    """Every rounding x overflow mode, widths 1-16, signed and unsigned, integer bits cycling over -3..W+3."""
    cases = []
    for width in range(1, 17):
        for k in (0, 1):
            for c, (r, o) in enumerate(itertools.product(ROUNDS, OVERFLOWS)):
                int_incl_sign = -3 + (c * 5 + width + 3 * k) % (width + 7)
                i = int_incl_sign - k
                f = width - k - i
                cases.append(ApType(k, i, f, r, o))
    return cases


def _inputs(t: ApType, rng: np.random.Generator) -> np.ndarray:
    """Exact ties, both range edges, values past them and random non-grid values."""
    w = t.k + t.i + t.f
    lsb = 2.0 ** -t.f
    span = 2 ** (w + 2)
    fine = rng.integers(-span, span + 1, size=300) * (lsb / 4)  # quarter-LSB grid: ties at .5
    ties = (rng.integers(-(2 ** w), 2 ** w, size=60) + 0.5) * lsb
    lo = -t.k * 2.0 ** t.i
    hi = 2.0 ** t.i - lsb
    edges = np.array([0.0, -0.0, lo, hi, lo - lsb / 2, hi + lsb / 2, lo - lsb, hi + lsb,
                      lo + lsb / 2, hi - lsb / 2, 2 * hi + 3 * lsb, 2 * lo - 3 * lsb, lsb / 2, -lsb / 2])
    rnd = rng.normal(0, max(abs(hi), lsb) * 1.5, size=100)
    return np.concatenate([fine, ties, edges, rnd])


@pytest.fixture(scope="module")
def ap_results():
    if ap_types_dir() is None:
        pytest.skip("hls4ml's ap_types headers are not installed (pip install hls4ml)")
    rng = np.random.default_rng(1234)
    cases = _cases()
    inputs = [_inputs(t, rng) for t in cases]
    outputs = run_ap_fixed(cases, inputs)
    return cases, inputs, outputs


def test_reference_matches_ap_fixed(ap_results):
    cases, inputs, outputs = ap_results
    assert len(cases) == 16 * 2 * len(ROUNDS) * len(OVERFLOWS)
    bad = []
    total = 0
    for t, x, y in zip(cases, inputs, outputs, strict=True):
        ref = quantize_fixed_np(x, t.k, t.i, t.f, t.round_mode, t.overflow_mode)
        mism = np.flatnonzero(ref != y)
        total += x.size
        if mism.size:
            j = mism[0]
            bad.append(f"{t.cpp()}: {mism.size} mismatches, x={x[j]!r} ap={y[j]!r} ref={ref[j]!r}")
    assert total > 400_000
    assert not bad, "\n".join(bad[:20])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch_matches_ap_fixed(ap_results, dtype):
    cases, inputs, outputs = ap_results
    bad = []
    for t, x, y in zip(cases, inputs, outputs, strict=True):
        if dtype is torch.float32:
            keep = np.float32(x).astype(np.float64) == x  # only inputs float32 holds exactly
            x, y = x[keep], y[keep]
        q = quantize_fixed(torch.tensor(x, dtype=dtype), t.k, t.i, t.f, t.round_mode, t.overflow_mode)
        q = q.double().numpy()
        mism = np.flatnonzero(q != y)
        if mism.size:
            j = mism[0]
            bad.append(f"{t.cpp()} [{dtype}]: {mism.size} mismatches, x={x[j]!r} ap={y[j]!r} torch={q[j]!r}")
    assert not bad, "\n".join(bad[:20])


def test_float32_round_half_edge():
    """0.5 - 2**-25 is the float32 value where floor(y + 0.5) rounds wrongly; ours must not."""
    x = torch.tensor([0.5 - 2.0 ** -25, -0.5 - 2.0 ** -24, 2.5, -2.5], dtype=torch.float32)
    for mode in ROUNDS:
        q = quantize_fixed(x, 1, 4, 0, mode, "SAT").double().numpy()
        ref = quantize_fixed_np(x.double().numpy(), 1, 4, 0, mode, "SAT")
        assert np.array_equal(q, ref), mode
    assert quantize_fixed(x[:1], 1, 4, 0, "RND", "SAT").item() == 0.0


def test_per_element_kif_broadcast():
    """Heterogeneous (k, i, f) per element equal the element-wise scalar results."""
    rng = np.random.default_rng(7)
    x = rng.normal(0, 3, size=(6, 40))
    k = rng.integers(0, 2, size=(6, 40))
    i = rng.integers(-2, 5, size=(6, 40))
    f = rng.integers(-1, 8, size=(6, 40))
    f = np.maximum(f, -k - i)  # widths >= 0, some exactly 0 (pruned)
    for r, o in [("RND", "SAT"), ("TRN", "WRAP"), ("RND_CONV", "SAT_SYM"), ("TRN_ZERO", "SAT_ZERO")]:
        q = quantize_fixed(torch.tensor(x), torch.tensor(k), torch.tensor(i), torch.tensor(f), r, o).numpy()
        ref = quantize_fixed_np(x, k, i, f, r, o)
        assert np.array_equal(q, ref)
        one = np.array([quantize_fixed_np(x.flat[j], k.flat[j], i.flat[j], f.flat[j], r, o)
                        for j in range(x.size)]).reshape(x.shape)
        assert np.array_equal(ref, one)
    pruned = (k + i + f) == 0
    assert pruned.any()
    assert np.all(quantize_fixed_np(x, k, i, f, "RND", "SAT")[pruned] == 0)
