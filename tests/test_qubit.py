"""Simulated dispersive qubit readout: determinism, physics, window extraction, fidelity, matched filter."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

from hwnas.tasks.qubit import (
    MatchedFilter,
    ReadoutConfig,
    assignment_errors,
    cavity_field,
    fidelity,
    readout_window,
    simulate_readout,
)

N_SHOTS = 20000          # 10k train / 10k held-out: fidelity standard error ≈ 0.2 %


@pytest.fixture(scope="module")
def default_sim():
    return simulate_readout(N_SHOTS, seed=11)


def _fit_score(sim, start: int, size: int, kind: str = "matched") -> tuple[float, tuple[float, float]]:
    x = readout_window(sim.iq, start, size)
    half = len(sim) // 2
    mf = MatchedFilter(kind).fit(x[:half], sim.label[:half])
    pred = mf.predict(x[half:])
    return fidelity(pred, sim.label[half:]), assignment_errors(pred, sim.label[half:])


# ------------------------------------------------------------------------------------ simulation
def test_deterministic_shapes_dtypes_and_balance() -> None:
    a, b = simulate_readout(1001, seed=5), simulate_readout(1001, seed=5)
    c = simulate_readout(1001, seed=6)
    assert a.iq.shape == (1001, 2, 770) and a.iq.dtype == np.float32
    for arr in (a.label, a.initial_state, a.final_state):
        assert arr.dtype == np.int64 and arr.shape == (1001,)
    assert np.array_equal(a.iq, b.iq) and np.array_equal(a.label, b.label)
    assert np.array_equal(a.decay_time_us, b.decay_time_us)
    assert not np.array_equal(a.iq, c.iq) and not np.array_equal(a.label, c.label)
    assert (a.label == 0).sum() == 500 and (a.label == 1).sum() == 501 and len(a) == 1001
    assert 0 < (a.label[:100] == 1).sum() < 100                  # shuffled, not sorted
    assert np.isfinite(a.iq).all()


def test_chunking_does_not_change_results(monkeypatch) -> None:
    import hwnas.tasks.qubit.simulate as sim_mod

    ref = simulate_readout(300, seed=2)
    monkeypatch.setattr(sim_mod, "_CHUNK", 7)
    assert np.array_equal(simulate_readout(300, seed=2).iq, ref.iq)


def test_state_bookkeeping_prep_errors_and_t1() -> None:
    cfg = ReadoutConfig(prep_error=0.05, t1_us=5.0)
    sim = simulate_readout(40000, seed=1, config=cfg)
    flipped = sim.initial_state != sim.label
    assert abs(flipped.mean() - 0.05) < 0.006
    decayed = np.isfinite(sim.decay_time_us)
    assert not decayed[sim.initial_state == 0].any()              # only e decays
    assert np.array_equal(sim.final_state, np.where(decayed, 0, sim.initial_state))
    assert (sim.decay_time_us[decayed] < cfg.duration_us).all()
    p_decay = decayed[sim.initial_state == 1].mean()
    assert abs(p_decay - (1 - math.exp(-cfg.duration_us / cfg.t1_us))) < 0.01
    clean = simulate_readout(2000, seed=1, config=ReadoutConfig(prep_error=0.0, t1_us=math.inf))
    assert np.array_equal(clean.initial_state, clean.label) and np.array_equal(clean.final_state, clean.label)


def test_noise_level_and_mean_trajectory() -> None:
    cfg = ReadoutConfig(prep_error=0.0, t1_us=math.inf, gain=1.0, offset_i=0.5, offset_q=-0.25)
    sim = simulate_readout(4000, seed=3, config=cfg)
    g, e = cavity_field(cfg, np.array([0.0, np.inf])) * np.exp(1j * cfg.phase_rad)
    for state, field in ((0, g), (1, e)):
        shots = sim.iq[sim.label == state].astype(np.float64)
        resid = shots - np.stack([field.real + 0.5, field.imag - 0.25])[None]
        assert abs(resid.std() / cfg.noise_std - 1) < 0.01
        # the mean over 2000 shots matches the noise-free trajectory to within 5 standard errors
        assert np.abs(resid.mean(axis=0)).max() < 5 * cfg.noise_std / math.sqrt(len(shots))
    assert np.abs(sim.iq[:, :, :49]).mean() < 1.0 * cfg.noise_std      # before the drive (delay 100 ns): noise
    unit = simulate_readout(2000, seed=3, config=dataclasses.replace(cfg, gain=None, offset_i=0.0, offset_q=0.0))
    assert abs(unit.iq[:, :, :49].std() - 1.0) < 0.01                 # default gain: unit noise


def _stepped_field(cfg: ReadoutConfig, tau: float) -> np.ndarray:
    """Reference: the exact exponential update sample by sample, splitting the step that holds the switch."""
    lam_g, lam_e = cfg.decay_rates()
    eps, dt, t_on = 2 * math.pi * cfg.drive_mhz, cfg.dt_us, cfg.delay_ns * 1e-3

    def step(alpha: complex, lam: complex, h: float) -> complex:
        return alpha * np.exp(-lam * h) + eps / lam * (1 - np.exp(-lam * h))

    alpha, t, out = 0j, 0.0, []
    for _ in range(cfg.n_samples):
        edges = sorted({t, t + dt, *(p for p in (t_on, tau) if t < p < t + dt)})
        for a, b in itertools.pairwise(edges):
            if a >= t_on - 1e-15:
                alpha = step(alpha, lam_e if a < tau - 1e-15 else lam_g, b - a)
        t += dt
        out.append(alpha)
    return np.array(out)


@pytest.mark.parametrize("tau", [0.0, 0.0501, 0.4567, 1.2, math.inf])
def test_cavity_field_matches_stepwise_exact_update(tau: float) -> None:
    cfg = ReadoutConfig(n_samples=700, detuning_mhz=0.7)
    got = cavity_field(cfg, np.array([tau]))[0]
    ref = _stepped_field(cfg, tau)
    assert np.allclose(got, ref, rtol=0, atol=1e-9)
    if tau in (0.0, math.inf):                               # relaxed to the steady state ε/λ_s at the end
        assert abs(got[-1] - cfg.steady_state()[0 if tau == 0 else 1]) < 1e-6


def test_steady_states_and_photons() -> None:
    cfg = ReadoutConfig()
    a_g, a_e = cfg.steady_state()
    n_g, n_e = cfg.steady_state_photons()
    assert n_g == pytest.approx(n_e) and 0.5 < n_g < 2               # symmetric drive, ≈ 1 photon
    # χ = κ/2 at zero detuning: the states are 90° apart
    assert abs(math.remainder(np.angle(a_e) - np.angle(a_g), 2 * math.pi)) == pytest.approx(math.pi / 2)
    assert cfg.duration_us == pytest.approx(1.54)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("kappa_mhz", 0.0, "kappa_mhz"),
        ("chi_mhz", 0.0, "chi_mhz"),
        ("chi_mhz", -1.0, "chi_mhz"),
        ("efficiency", 1.5, "efficiency"),
        ("prep_error", 0.5, "prep_error"),
        ("t1_us", -3.0, "t1_us"),
        ("n_samples", 0, "n_samples"),
        ("n_samples", 10.0, "n_samples"),
        ("sample_period_ns", float("nan"), "sample_period_ns"),
        ("drive_mhz", float("inf"), "drive_mhz"),
        ("gain", "2", "gain"),
        ("delay_ns", -1.0, "delay_ns"),
        ("phase_rad", True, "phase_rad"),
    ],
)
def test_bad_config_names_the_field(field: str, value, match: str) -> None:
    with pytest.raises(ValueError, match=f"ReadoutConfig.{match}"):
        ReadoutConfig(**{field: value})


def test_config_is_frozen_and_t1_inf_allowed() -> None:
    cfg = ReadoutConfig(t1_us=math.inf)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.t1_us = 3.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        ReadoutConfig(t2_us=3.0)  # type: ignore[call-arg]


def test_bad_simulate_arguments() -> None:
    with pytest.raises(ValueError, match="n_shots"):
        simulate_readout(0, seed=0)
    with pytest.raises(ValueError, match="seed"):
        simulate_readout(10, seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ReadoutConfig"):
        simulate_readout(10, seed=0, config={"t1_us": 3})  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------- windows
def test_readout_window_is_i_then_q() -> None:
    iq = np.arange(3 * 2 * 10, dtype=np.float32).reshape(3, 2, 10)
    x = readout_window(iq, 2, 4)
    assert x.shape == (3, 8) and x.dtype == np.float32
    assert np.array_equal(x[1], [22, 23, 24, 25, 32, 33, 34, 35])
    assert np.array_equal(readout_window(iq, 2, 4, flatten=False), iq[:, :, 2:6])
    assert readout_window(iq, 0, 10).shape == (3, 20)
    sim = simulate_readout(8, seed=0)
    base = readout_window(sim.iq, 100, 400)
    assert base.shape == (8, 800)
    assert np.array_equal(base[:, :400], sim.iq[:, 0, 100:500]) and np.array_equal(base[:, 400:], sim.iq[:, 1, 100:500])


@pytest.mark.parametrize(
    ("start", "size", "match"),
    [(-1, 4, "start"), (10, 1, "start"), (8, 3, "size"), (0, 0, "size"), (0, 11, "size"), (1.0, 2, "start")],
)
def test_readout_window_errors_name_the_argument(start, size, match: str) -> None:
    iq = np.zeros((2, 2, 10), dtype=np.float32)
    with pytest.raises(ValueError, match=f"^{match}"):
        readout_window(iq, start, size)


def test_readout_window_rejects_bad_layout() -> None:
    with pytest.raises(ValueError, match=r"iq: expected shape \(N, 2, L\)"):
        readout_window(np.zeros((2, 10, 2)), 0, 2)


# -------------------------------------------------------------------------------------- fidelity
def test_fidelity_hand_cases() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert fidelity(y, y) == 1.0
    assert fidelity(1 - y, y) == 0.0
    p = np.array([0, 0, 0, 1, 1, 1, 0, 0])                 # P(e|g) = 1/4, P(g|e) = 1/2
    assert assignment_errors(p, y) == (0.25, 0.5)
    assert fidelity(p, y) == pytest.approx(1 - (0.25 + 0.5) / 2)
    assert fidelity(np.ones(8, dtype=np.int64), y) == 0.5    # always "e": no information
    # imbalanced classes: each state weighs the same
    assert fidelity([0, 1, 1, 1], [0, 1, 1, 0]) == pytest.approx(1 - (0.5 + 0) / 2)
    with pytest.raises(ValueError, match="binary"):
        fidelity(p, y + 1)
    with pytest.raises(ValueError, match="both states"):
        fidelity(p, np.zeros(8))
    with pytest.raises(ValueError, match="7 predictions for 8"):
        fidelity(p[:7], y)


# -------------------------------------------------------------------------------- matched filter
def test_matched_filter_default_fidelity_in_band(default_sim) -> None:
    f, (e_g, g_e) = _fit_score(default_sim, 100, 400)
    assert 0.94 <= f <= 0.96, f
    # prep errors (1 %) make both error kinds; T1 adds to P(g|e) only
    assert e_g > 0.01 and g_e > 0.01


def test_longer_windows_help_with_diminishing_returns(default_sim) -> None:
    f = {size: _fit_score(default_sim, 100, size)[0] for size in (25, 100, 200, 400, 670)}
    assert f[25] + 0.1 < f[100] < f[200] - 0.02 < f[400] - 0.04
    assert f[670] - f[400] < f[400] - f[200]                # diminishing returns


def test_t1_limits_the_window_and_causes_e_to_g_errors() -> None:
    # strong signal, short T1: decays dominate; past the optimum, longer windows collect decayed signal
    cfg = ReadoutConfig(efficiency=1.0, prep_error=0.0, t1_us=2.0)
    sim = simulate_readout(N_SHOTS, seed=4, config=cfg)
    f100, (e_g, g_e) = _fit_score(sim, 100, 100)
    f670, _ = _fit_score(sim, 100, 670)
    assert f670 < f100 - 0.01
    assert g_e > 3 * e_g
    # without T1 the same window and SNR is much better and its errors are symmetric (noise only)
    ideal = simulate_readout(N_SHOTS, seed=4, config=dataclasses.replace(cfg, t1_us=math.inf))
    f_ideal, (e_g, g_e) = _fit_score(ideal, 100, 100)
    assert f_ideal > f100 + 0.04 and f_ideal > 0.99
    assert abs(e_g - g_e) < 0.006


def test_matched_filter_kernels_threshold_and_errors() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 500)
    x = rng.normal(size=(1000, 2, 6)) + 3.0 * y[:, None, None] * np.array([1.0, -0.5])[None, :, None]
    mf = MatchedFilter().fit(x, y)
    k = mf.kernel.reshape(2, 6)
    assert np.allclose(k[0], 3.0, atol=0.25) and np.allclose(k[1], -1.5, atol=0.25)
    assert mf.score(x, y) > 0.99 and mf.predict(x).dtype == np.int64
    assert np.array_equal(mf.predict(x), mf.predict(x.reshape(1000, 12)))
    box = MatchedFilter("boxcar").fit(x.reshape(1000, 12), y)
    assert np.allclose(box.kernel.reshape(2, 6), box.kernel.reshape(2, 6)[:, :1])   # constant over time
    # the threshold maximizes the training fidelity: shifting it either way does not help
    s = mf.decision_function(x)
    best = fidelity((s > 0).astype(int), y)
    for shift in (-1.0, -0.3, 0.3, 1.0):
        assert fidelity((s > shift).astype(int), y) <= best
    with pytest.raises(RuntimeError, match="fit"):
        MatchedFilter().predict(x)
    with pytest.raises(ValueError, match="kind"):
        MatchedFilter("fft")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="10 features, the filter was fitted on 12"):
        mf.predict(np.zeros((3, 10)))
    with pytest.raises(ValueError, match="both states"):
        MatchedFilter().fit(x, np.zeros(1000))


def test_threshold_picks_the_best_cut_on_hand_scores() -> None:
    from hwnas.tasks.qubit.filters import _best_threshold

    scores = np.array([0.0, 1.0, 2.0, 3.0, 2.5, 4.0, 5.0, 6.0])
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    t = _best_threshold(scores, y)
    assert 2.0 < t < 2.5 or 3.0 < t < 4.0                  # both cuts give 7/8 correct
    assert fidelity((scores > t).astype(int), y) == pytest.approx(1 - (0 + 0.25) / 2) or \
        fidelity((scores > t).astype(int), y) == pytest.approx(1 - (0.25 + 0) / 2)
    tied = _best_threshold(np.array([1.0, 1.0, 1.0, 2.0]), np.array([0, 1, 0, 1]))
    assert 1.0 <= tied < 2.0


def test_package_doctest() -> None:
    import doctest

    import hwnas.tasks.qubit as q

    assert doctest.testmod(q).failed == 0
