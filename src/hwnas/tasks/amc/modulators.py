"""Transmitters: complex baseband of every class, vectorized over frames.

Every transmitter fills a buffer of ``n`` frames × ``length`` samples (``length`` a multiple of the samples
per symbol) with a *circular* steady-state signal: pulse shaping and other filters are applied in the
frequency domain to a periodic data sequence, so the buffer holds no filter transients at all (the period,
``length`` samples, is longer than a frame plus the channel's guard; the channel picks a random window that
never wraps around, so phase-accumulating modulations stay continuous). Frequencies are in cycles/sample.

Digital (``sps`` samples per symbol, random equiprobable symbols from :data:`.constellations.CONSTELLATIONS`):

* linear (PSK, PAM/ASK, OOK, QAM, APSK): symbols on an impulse train, root-raised-cosine pulse with roll-off
  ``β`` (frequency response ``H(f) = 1`` for ``|f| ≤ (1−β)/(2·sps)``, ``cos(π·sps/(2β)·(|f| − (1−β)/(2·sps)))``
  up to ``(1+β)/(2·sps)``, 0 above: the exact (aliased) RRC, zero ISI after a matched filter);
* OQPSK: QPSK whose Q branch is delayed by half a symbol (``sps/2`` samples) before the same RRC pulse;
* CPM (GFSK, CPFSK, GMSK): NRZ ±1 symbols, optionally Gaussian-filtered (3-dB bandwidth ``BT/sps``,
  ``G(f) = exp(−ln2/2·(f·sps/BT)²)``), phase ``φ[k] = π·h/sps · Σ_{i≤k} f[i]``, signal ``exp(jφ)``:
  GFSK ``h = 0.8/π ≈ 0.255``, BT 0.35 (GNU Radio ``gfsk_mod(sps=8, sensitivity=0.1, bt=0.35)`` as in
  RadioML 2016); CPFSK ``h = 0.5``, no Gaussian filter (``cpfsk_bc(k=0.5)``); GMSK ``h = 0.5``, BT 0.3.

Analog, from a seeded band-limited random message ``m`` (real; independent complex Gaussian coefficients on
the FFT bins ``1 … ⌊B·length⌋``, ``B =`` :data:`AUDIO_BANDWIDTH`, zero mean, scaled to ``max|m| = 1``
per frame; ``a = m + j·Ĥ{m}`` its analytic signal, exact because ``m`` is periodic):

* AM-DSB-WC ``1 + μ·m``; AM-DSB-SC ``m``; AM-SSB-WC ``1 + μ·a``; AM-SSB-SC ``a`` (upper sideband),
  ``μ =`` :data:`AM_INDEX`;
* FM / WBFM ``exp(j·2π·Δf·Σ m)``, peak deviation ``Δf =`` :data:`FM_DEVIATION`.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

import numpy as np
from scipy import fft as sfft

from .constellations import CONSTELLATIONS
from .streams import Streams

__all__ = ["AM_INDEX", "AUDIO_BANDWIDTH", "CPM_PARAMS", "FM_DEVIATION", "TRANSMITTERS", "analog_message",
           "cpm", "gaussian_response", "linear", "oqpsk", "rrc_response"]

AUDIO_BANDWIDTH = 0.04
"""Bandwidth of the analog message in cycles/sample (8 kHz at RadioML's 200 kHz sample rate)."""
AM_INDEX = 0.5
"""Modulation index ``μ`` of AM with carrier (the message peak is 1, so the envelope stays ≥ 0.5)."""
FM_DEVIATION = 0.2
"""Peak frequency deviation of FM in cycles/sample (40 kHz at 200 kHz; Carson bandwidth 0.48)."""
CPM_PARAMS: MappingProxyType[str, tuple[float, float | None]] = MappingProxyType({
    "GFSK": (0.8 / np.pi, 0.35), "CPFSK": (0.5, None), "GMSK": (0.5, 0.3),
})
"""``(modulation index h, Gaussian BT or None)`` of the continuous-phase classes."""

Transmitter = Callable[[int, int, int, np.ndarray, Streams], np.ndarray]
"""``tx(n, length, sps, rolloff, streams) -> complex128 (n, length)``; ``rolloff`` has shape (n,)."""


def rrc_response(length: int, sps: int, rolloff: np.ndarray | float) -> np.ndarray:
    """Root-raised-cosine frequency response on the ``length``-point FFT grid (per frame if ``rolloff`` is (n,))."""
    f = np.abs(sfft.fftfreq(length))
    beta = np.asarray(rolloff, dtype=np.float64)[..., None]
    if np.any(beta <= 0) or np.any(beta > 1):
        raise ValueError(f"rolloff: must be in (0, 1], got {rolloff}")
    f1 = (1 - beta) / (2 * sps)
    f2 = (1 + beta) / (2 * sps)
    edge = np.cos(np.pi * sps / (2 * beta) * np.clip(f - f1, 0.0, None))
    return np.where(f <= f1, 1.0, np.where(f <= f2, edge, 0.0))


def gaussian_response(length: int, sps: int, bt: float) -> np.ndarray:
    """Gaussian filter response, 3-dB bandwidth ``bt/sps`` cycles/sample, on the real-FFT grid (DC gain 1)."""
    f = sfft.rfftfreq(length)
    return np.exp(-np.log(2) / 2 * (f * sps / bt) ** 2)


def _symbol_spectrum(symbols: np.ndarray, sps: int) -> np.ndarray:
    """FFT of the impulse train carrying ``symbols`` (n, nsym) at ``sps``: the symbol FFT repeated ``sps`` times."""
    return np.tile(sfft.fft(symbols, axis=-1), (1, sps))


def linear(symbols: np.ndarray, sps: int, rolloff: np.ndarray | float) -> np.ndarray:
    """RRC pulse-shaped impulse train of ``symbols`` (n, nsym) → (n, nsym·sps), circular (no transients)."""
    length = symbols.shape[-1] * sps
    return sfft.ifft(_symbol_spectrum(symbols, sps) * rrc_response(length, sps, rolloff), axis=-1)


def oqpsk(symbols: np.ndarray, sps: int, rolloff: np.ndarray | float) -> np.ndarray:
    """Offset QPSK: like :func:`linear`, with the Q branch delayed by ``sps/2`` samples."""
    length = symbols.shape[-1] * sps
    h = rrc_response(length, sps, rolloff)
    delay = np.exp(-2j * np.pi * sfft.fftfreq(length) * (sps / 2))
    spec = _symbol_spectrum(symbols.real, sps) + 1j * _symbol_spectrum(symbols.imag, sps) * delay
    return sfft.ifft(spec * h, axis=-1)


def cpm(bits: np.ndarray, sps: int, h: float, bt: float | None) -> np.ndarray:
    """Binary continuous-phase modulation of ``bits`` (n, nsym) in {0, 1}: ``exp(jφ)``, (n, nsym·sps)."""
    freq = np.repeat(2.0 * bits - 1.0, sps, axis=-1)
    if bt is not None:
        length = freq.shape[-1]
        freq = sfft.irfft(sfft.rfft(freq, axis=-1) * gaussian_response(length, sps, bt), n=length, axis=-1)
    phase = (np.pi * h / sps) * np.cumsum(freq, axis=-1)
    return np.exp(1j * phase)


def analog_message(n: int, length: int, rng: np.random.Generator,
                   bandwidth: float = AUDIO_BANDWIDTH) -> tuple[np.ndarray, np.ndarray]:
    """A band-limited periodic random message and its analytic signal, both scaled so ``max|m| = 1``.

    Returns ``(m, a)``: ``m`` real (n, length), ``a = m + j·Hilbert(m)`` complex (n, length).
    """
    kmax = max(1, int(bandwidth * length))
    coef = rng.standard_normal((n, kmax, 2)) @ np.array([1.0, 1j])
    spec = np.zeros((n, length), dtype=np.complex128)
    spec[:, 1: kmax + 1] = coef
    analytic = sfft.ifft(spec, axis=-1) * 2.0  # one-sided spectrum: m + j·Ĥm with m = Re(analytic)
    m = analytic.real
    scale = 1.0 / np.max(np.abs(m), axis=-1, keepdims=True)
    return m * scale, analytic * scale


# ------------------------------------------------------------------------------------------ registry
def _linear_tx(name: str) -> Transmitter:
    alphabet = CONSTELLATIONS[name]

    def tx(n: int, length: int, sps: int, rolloff: np.ndarray, streams: Streams) -> np.ndarray:
        idx = streams("symbols").integers(0, len(alphabet), size=(n, length // sps))
        return linear(alphabet[idx], sps, rolloff)

    return tx


def _oqpsk_tx(n: int, length: int, sps: int, rolloff: np.ndarray, streams: Streams) -> np.ndarray:
    alphabet = CONSTELLATIONS["OQPSK"]
    idx = streams("symbols").integers(0, len(alphabet), size=(n, length // sps))
    return oqpsk(alphabet[idx], sps, rolloff)


def _cpm_tx(name: str) -> Transmitter:
    h, bt = CPM_PARAMS[name]

    def tx(n: int, length: int, sps: int, rolloff: np.ndarray, streams: Streams) -> np.ndarray:
        bits = streams("symbols").integers(0, 2, size=(n, length // sps))
        return cpm(bits, sps, h, bt)

    return tx


def _am_tx(carrier: bool, ssb: bool) -> Transmitter:
    def tx(n: int, length: int, sps: int, rolloff: np.ndarray, streams: Streams) -> np.ndarray:
        m, a = analog_message(n, length, streams("message"))
        base = a if ssb else m.astype(np.complex128)
        return 1.0 + AM_INDEX * base if carrier else base

    return tx


def _fm_tx(n: int, length: int, sps: int, rolloff: np.ndarray, streams: Streams) -> np.ndarray:
    m, _ = analog_message(n, length, streams("message"))
    return np.exp(2j * np.pi * FM_DEVIATION * np.cumsum(m, axis=-1))


def _build() -> dict[str, Transmitter]:
    table: dict[str, Transmitter] = {}
    for name in CONSTELLATIONS:
        table[name] = _oqpsk_tx if name == "OQPSK" else _linear_tx(name)
    for name in CPM_PARAMS:
        table[name] = _cpm_tx(name)
    table.update({
        "AM-DSB-WC": _am_tx(True, False), "AM-DSB-SC": _am_tx(False, False),
        "AM-SSB-WC": _am_tx(True, True), "AM-SSB-SC": _am_tx(False, True),
        # RadioML 2016's AM classes add a constant 1 to the audio (transmitters.py: add_const 1.0): with carrier.
        "AM-DSB": _am_tx(True, False), "AM-SSB": _am_tx(True, True),
        "FM": _fm_tx, "WBFM": _fm_tx,
    })
    return table


TRANSMITTERS: MappingProxyType[str, Transmitter] = MappingProxyType(_build())
"""Transmitter of every known class name (both presets' names)."""
