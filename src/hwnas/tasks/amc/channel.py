"""The propagation channel of RadioML's GNU Radio generator, vectorized over frames.

RadioML 2016 passes every transmitter through ``gr::channels::dynamic_channel_model(200e3, 0.01, 50, 0.01,
500, 8, 1, True, 4, [0, 0.9, 1.7], [1, 0.8, 0.3], 8, noise_amp, seed)``. :class:`ChannelConfig` holds the
same parameters (its defaults are exactly these) and :func:`apply_channel` applies, in this order:

1. **Random start and sample-rate offset (SRO).** Output sample ``k`` is the input evaluated at
   ``t_k = s + μ₀ + k + Σ_{i<k} r_i`` with a random integer start ``s``, a random fractional start ``μ₀``
   (uniform in [0, 1) when the SRO is on, else 0) and the rate deviation ``r_i = v_i/fs`` of a random walk
   ``v_i = clip(v₀ + Σ_{j≤i} e_j, ±sro_max_hz)``, ``e_j ~ N(0, sro_std_hz²)`` (GNU Radio's ``sro_model``).
   Fractional positions are interpolated by a 16-tap Kaiser-windowed sinc (β = 8, 512 phases; error
   ≤ −60 dB for components within ±0.25 cycles/sample, which holds every class here, −56 dB at 0.35).
2. **Carrier-frequency offset (CFO).** Multiply by ``exp(j(φ₀ + 2π Σ_{i<k} c_i/fs))`` with ``φ₀`` uniform and
   ``c_i`` the same kind of random walk with ``cfo_std_hz``, ``cfo_max_hz`` (``cfo_model``).
3. **Multipath fading.** ``y[k] = Σ_p a_p · g_p[k] · z(k − τ_p)`` with delays ``τ_p`` (fractional delays by
   the same windowed-sinc interpolator), gains ``a_p`` and independent sum-of-sinusoids fading processes
   (GNU Radio's ``flat_fader``, Zheng & Xiao's model): ``g[k] = N^{-1/2} Σ_{n=1}^{N} [cos(2π f_D k cos α_n + ψ_n)
   + j cos(2π f_D k sin α_n + φ_n)]``, ``α_n = (2πn − π + θ)/(4N)``, ``θ, ψ_n, φ_n`` uniform, ``E|g|² = 1``.
   The first path is Rician: ``g₀ ← g₀/√(K+1) + √(K/(K+1))·exp(j(2π f_D k cos θ_L + ψ_L))``. ``f_D`` is
   ``doppler_hz / sample_rate_hz``; ``g`` is evaluated exactly every ``D`` samples, ``D`` the largest step with
   ``2π f_D D ≤ 0.02``, and linearly interpolated in between (relative error < 5·10⁻⁵).

AWGN is added by the generator (it needs the post-fading signal power; see :mod:`.generator`).

Two deliberate differences from GNU Radio: the walks start at a uniform random point of ``±max`` (the
stationary distribution of the bounded walk, as if the frame were cut from a long stream; GNU Radio starts at
0 and RadioML 2016 ran a fresh flowgraph for every burst of ~10⁴–10⁵ samples, so its offsets stayed within a
few Hz — ``stationary_start=False`` reproduces that) and a walk is accumulated with one cumulative sum and then
clipped, which equals per-step clipping unless the walk leaves a bound and comes back within one frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from scipy import fft as sfft

from .streams import Streams

__all__ = ["INTERP_TAPS", "ChannelConfig", "apply_channel", "buffer_length", "fading", "fractional_kernel"]

INTERP_TAPS = 16
"""Taps of the windowed-sinc fractional interpolator (SRO resampling, fractional path delays)."""
_HALF = INTERP_TAPS // 2
_PHASES = 512
_KAISER_BETA = 8.0


@dataclass(frozen=True)
class ChannelConfig:
    """Channel impairments; the defaults are RadioML 2016's GNU Radio ``dynamic_channel_model`` arguments.

    Attributes:
        sample_rate_hz: sample rate the Hz values below refer to (200 kHz).
        sro: apply the sample-rate-offset random walk (and a random fractional start).
        sro_std_hz: standard deviation of the SRO walk's step per sample (0.01 Hz).
        sro_max_hz: bound of the SRO walk (50 Hz, i.e. a rate deviation of at most 2.5·10⁻⁴).
        cfo: apply the carrier-frequency-offset random walk and a random carrier phase.
        cfo_std_hz: standard deviation of the CFO walk's step per sample (0.01 Hz).
        cfo_max_hz: bound of the CFO walk (500 Hz = 2.5·10⁻³ cycles/sample).
        stationary_start: start both walks uniformly in ±max (True) or at 0 like a fresh GNU Radio flowgraph.
        multipath: apply multipath fading (False: a single unfaded path).
        delays: path delays in samples (0, 0.9, 1.7).
        gains: path amplitudes (1, 0.8, 0.3); not normalized, as in GNU Radio.
        rician_k: Rician K factor of the first path (4); ``None`` makes it Rayleigh.
        doppler_hz: maximum Doppler frequency of the fading (1 Hz, i.e. 5·10⁻⁶ cycles/sample).
        sinusoids: sinusoids per fading process (8).
        awgn: add white Gaussian noise at the requested SNR (False: noiseless frames).
    """

    sample_rate_hz: float = 200e3
    sro: bool = True
    sro_std_hz: float = 0.01
    sro_max_hz: float = 50.0
    cfo: bool = True
    cfo_std_hz: float = 0.01
    cfo_max_hz: float = 500.0
    stationary_start: bool = True
    multipath: bool = True
    delays: tuple[float, ...] = (0.0, 0.9, 1.7)
    gains: tuple[float, ...] = (1.0, 0.8, 0.3)
    rician_k: float | None = 4.0
    doppler_hz: float = 1.0
    sinusoids: int = 8
    awgn: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "delays", tuple(float(d) for d in self.delays))
        object.__setattr__(self, "gains", tuple(float(g) for g in self.gains))
        if not self.sample_rate_hz > 0:
            raise ValueError(f"sample_rate_hz: must be > 0, got {self.sample_rate_hz}")
        for name in ("sro_std_hz", "sro_max_hz", "cfo_std_hz", "cfo_max_hz", "doppler_hz"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if not self.delays or len(self.delays) != len(self.gains):
            raise ValueError(f"delays, gains: need the same non-zero length, got {self.delays} and {self.gains}")
        if min(self.delays) < 0 or max(self.delays) > 64:
            raise ValueError(f"delays: must be in [0, 64] samples, got {self.delays}")
        if self.rician_k is not None and not self.rician_k >= 0:
            raise ValueError(f"rician_k: must be >= 0 or None, got {self.rician_k}")
        if int(self.sinusoids) != self.sinusoids or self.sinusoids < 1:
            raise ValueError(f"sinusoids: must be an integer >= 1, got {self.sinusoids}")
        if self.sro_max_hz / self.sample_rate_hz > 0.01:
            raise ValueError(f"sro_max_hz: at most 1 % of the sample rate, got {self.sro_max_hz}")

    @classmethod
    def off(cls, **changes: object) -> ChannelConfig:
        """A channel with every impairment switched off (only the random start remains); ``changes`` override."""
        base = {"sro": False, "cfo": False, "multipath": False, "awgn": False}
        base.update(changes)
        return cls(**base)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, object]:
        """The fields as a JSON-friendly dict."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


# --------------------------------------------------------------------------------------- geometry
def _guards(cfg: ChannelConfig) -> tuple[int, int]:
    """Samples the multipath stage needs before and after the frame."""
    if not cfg.multipath:
        return 0, 0
    return math.ceil(max(cfg.delays)) + _HALF, _HALF


def _drift_bound(grid: int, cfg: ChannelConfig) -> int:
    return math.ceil(grid * cfg.sro_max_hz / cfg.sample_rate_hz) + 1 if cfg.sro else 0


def buffer_length(frame_length: int, cfg: ChannelConfig, sps: int) -> int:
    """Transmit buffer length for ``frame_length`` output samples.

    Guards plus at least 8 symbols of random start; a multiple of ``sps`` with an FFT-friendly symbol count.
    """
    left, right = _guards(cfg)
    grid = frame_length + left + right
    needed = grid + 2 * (_HALF + _drift_bound(grid, cfg) + 2) + 8 * sps
    return sps * sfft.next_fast_len(-(-needed // sps))


# ---------------------------------------------------------------------------------- interpolation
def fractional_kernel(mu: np.ndarray) -> np.ndarray:
    """Windowed-sinc weights (…, 16) so that ``x(b + μ) ≈ Σ_j w_j x[b + j − 7]`` for ``μ`` in [0, 1]."""
    t = np.arange(-_HALF + 1, _HALF + 1) - np.asarray(mu, dtype=np.float64)[..., None]
    window = np.i0(_KAISER_BETA * np.sqrt(np.clip(1 - (t / _HALF) ** 2, 0.0, None))) / np.i0(_KAISER_BETA)
    w = np.sinc(t) * window
    return w / w.sum(axis=-1, keepdims=True)


_TABLE = fractional_kernel(np.arange(_PHASES + 1) / _PHASES)
_TABLE_T = np.ascontiguousarray(_TABLE.T)


def _resample(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``x`` (n, N) evaluated at positions ``t`` (n, K) by the windowed sinc (positions must stay inside)."""
    base = np.floor(t)
    phase = np.rint((t - base) * _PHASES).astype(np.intp)
    flat = base.astype(np.intp) + (np.arange(x.shape[0]) * x.shape[1])[:, None]
    xf = x.ravel()
    out = np.zeros(t.shape, dtype=np.complex128)
    for j in range(INTERP_TAPS):
        out += _TABLE_T[j][phase] * xf[flat + (j - _HALF + 1)]
    return out


def _delay(z: np.ndarray, tau: float, left: int, length: int) -> np.ndarray:
    """``z(k − τ)`` for ``k = left … left + length − 1`` (fractional ``τ`` by the windowed sinc)."""
    c = math.ceil(tau)
    mu = c - tau
    if mu == 0:
        return z[:, left - c: left - c + length]
    w = fractional_kernel(np.array(mu))
    out = np.zeros((z.shape[0], length), dtype=np.complex128)
    for j in range(INTERP_TAPS):
        start = left - c + j - _HALF + 1
        out += w[j] * z[:, start: start + length]
    return out


# ---------------------------------------------------------------------------------------- walks
def _walk(streams: Streams, name: str, n: int, steps: int, std: float, bound: float, stationary: bool) -> np.ndarray:
    """Bounded Gaussian random walk in Hz, (n, steps)."""
    start = streams(name + "_start").uniform(-bound, bound, size=(n, 1)) if stationary else np.zeros((n, 1))
    walk = start + np.cumsum(streams(name + "_steps").standard_normal((n, steps)) * std, axis=-1)
    return np.clip(walk, -bound, bound)


def _exclusive_cumsum(v: np.ndarray) -> np.ndarray:
    out = np.zeros_like(v)
    np.cumsum(v[:, :-1], axis=-1, out=out[:, 1:])
    return out


# --------------------------------------------------------------------------------------- fading
def fading(n: int, length: int, doppler: float, sinusoids: int, rician_k: float | None,
           rng: np.random.Generator) -> np.ndarray:
    """Sum-of-sinusoids fading gains (n, length), ``E|g|² = 1``; Rician with factor ``rician_k`` unless None.

    ``doppler`` is the normalized maximum Doppler frequency (cycles/sample).
    """
    u = rng.uniform(-np.pi, np.pi, size=(n, 2 * sinusoids + 3))
    theta, theta_los, psi_los = u[:, :1], u[:, 1], u[:, 2]
    psi, phi = u[:, 3: 3 + sinusoids], u[:, 3 + sinusoids:]
    alpha = (2 * np.pi * np.arange(1, sinusoids + 1) - np.pi + theta) / (4 * sinusoids)
    w = 2 * np.pi * doppler
    step = max(1, int(0.02 / w)) if w > 0 else max(1, length)
    step = min(step, max(1, length - 1))
    kc = np.arange(-(-(length - 1) // step) + 1) * float(step)
    gi = np.cos((w * np.cos(alpha))[:, :, None] * kc + psi[:, :, None]).sum(axis=1)
    gq = np.cos((w * np.sin(alpha))[:, :, None] * kc + phi[:, :, None]).sum(axis=1)
    g = (gi + 1j * gq) / np.sqrt(sinusoids)
    if rician_k is not None:
        los = np.exp(1j * (w * np.cos(theta_los)[:, None] * kc + psi_los[:, None]))
        g = g / np.sqrt(rician_k + 1) + np.sqrt(rician_k / (rician_k + 1)) * los
    if step == 1:
        return g[:, :length]
    k = np.arange(length)
    i, frac = k // step, (k % step) / step
    return g[:, i] * (1 - frac) + g[:, np.minimum(i + 1, g.shape[1] - 1)] * frac


# -------------------------------------------------------------------------------------- channel
def apply_channel(x: np.ndarray, frame_length: int, cfg: ChannelConfig, streams: Streams) -> np.ndarray:
    """Random window of the transmit buffer ``x`` (n, N) through SRO, CFO and multipath → (n, frame_length).

    ``N`` must be at least :func:`buffer_length`. Noise is not added here.
    """
    n, size = x.shape
    left, right = _guards(cfg)
    grid = frame_length + left + right
    drift = _drift_bound(grid, cfg)
    lo = _HALF + drift + 1
    hi = size - grid - _HALF - drift - 2
    if hi < lo:
        raise ValueError(f"x: buffer of {size} samples is too short for frames of {frame_length}")
    start = streams("start").integers(lo, hi + 1, size=(n, 1))
    k = np.arange(grid)
    if cfg.sro:
        rate = _walk(streams, "sro", n, grid, cfg.sro_std_hz, cfg.sro_max_hz, cfg.stationary_start)
        t = start + streams("sro_mu").random((n, 1)) + k + _exclusive_cumsum(rate / cfg.sample_rate_hz)
        z = _resample(x, t)
    else:
        z = np.take_along_axis(x, start + k, axis=-1)
    if cfg.cfo:
        freq = _walk(streams, "cfo", n, grid, cfg.cfo_std_hz, cfg.cfo_max_hz, cfg.stationary_start)
        phase = streams("cfo_phase").uniform(0, 2 * np.pi, size=(n, 1))
        z = z * np.exp(1j * (phase + 2 * np.pi * _exclusive_cumsum(freq / cfg.sample_rate_hz)))
    if not cfg.multipath:
        return z
    doppler = cfg.doppler_hz / cfg.sample_rate_hz
    y = np.zeros((n, frame_length), dtype=np.complex128)
    for p, (tau, gain) in enumerate(zip(cfg.delays, cfg.gains, strict=True)):
        g = fading(n, frame_length, doppler, cfg.sinusoids, cfg.rician_k if p == 0 else None, streams(f"fading{p}"))
        y += gain * g * _delay(z, tau, left, frame_length)
    return y
