"""Symbol alphabets of the digital modulations, each scaled to unit mean power.

* PSK: ``M`` points ``exp(j(2πk/M + offset))``; QPSK uses ``offset = π/4`` (GNU Radio's (±1±j)/√2).
* PAM / ASK: ``M`` real levels ``±1, ±3, …, ±(M−1)`` (symmetric, no carrier); OOK: levels ``{0, 1}``.
* Square QAM (16, 64, 256): the ``√M × √M`` grid of odd integers.
* Cross QAM: 32 = 6×6 grid minus its 4 corner points; 128 = 12×12 grid minus a 2×2 block in each corner.
* APSK: concentric rings, ``(points, relative radius, phase offset)`` per ring, listed in :data:`APSK_RINGS`:

  - 16APSK (DVB-S2, 4+12): radii 1 : 2.85 (DVB-S2's ratio for code rate 3/4), offsets π/4, π/12.
  - 32APSK (DVB-S2, 4+12+16): radii 1 : 2.84 : 5.27 (code rate 3/4), offsets π/4, π/12, 0.
  - 64APSK (DVB-S2X-like, 8+16+20+20): radii 1 : 2.2 : 3.6 : 5.2, offsets π/8, π/16, π/20, 0.
  - 128APSK (DVB-S2X-like, 16+16+16+16+16+48): radii 1 : 1.715 : 2.118 : 2.681 : 2.75 : 3.25,
    offsets alternating 0 and π/16 on the 16-point rings, π/48 on the outer ring.

Every alphabet is divided by the root of its mean power, so a uniformly drawn symbol has ``E|s|² = 1``.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

__all__ = ["APSK_RINGS", "CONSTELLATIONS", "apsk", "cross_qam", "ook", "pam", "psk", "square_qam"]


def _unit_power(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.complex128)
    return points / np.sqrt(np.mean(np.abs(points) ** 2))


def psk(m: int, offset: float = 0.0) -> np.ndarray:
    """``m``-PSK: ``exp(j(2πk/m + offset))`` for ``k = 0 … m−1``."""
    return _unit_power(np.exp(1j * (2 * np.pi * np.arange(m) / m + offset)))


def pam(m: int) -> np.ndarray:
    """``m``-PAM (= symmetric ``m``-ASK): real levels ``−(m−1), …, −1, 1, …, m−1``, unit mean power."""
    return _unit_power(np.arange(-(m - 1), m, 2).astype(np.complex128))


def ook() -> np.ndarray:
    """On-off keying: levels 0 and √2 (unit mean power over equiprobable symbols)."""
    return _unit_power(np.array([0.0, 1.0], dtype=np.complex128))


def _grid(side: int) -> np.ndarray:
    levels = np.arange(-(side - 1), side, 2, dtype=np.float64)
    return (levels[:, None] + 1j * levels[None, :]).ravel()


def square_qam(m: int) -> np.ndarray:
    """Square ``m``-QAM (``m`` a power of 4): the ``√m × √m`` grid of odd integers, unit mean power."""
    side = round(np.sqrt(m))
    if side * side != m:
        raise ValueError(f"m: square QAM needs a perfect square, got {m}")
    return _unit_power(_grid(side))


def cross_qam(m: int) -> np.ndarray:
    """Cross QAM for ``m`` = 32 (6×6 minus 4 corners) or 128 (12×12 minus a 2×2 block per corner)."""
    if m == 32:
        side, corner = 6, 1
    elif m == 128:
        side, corner = 12, 2
    else:
        raise ValueError(f"m: cross QAM is defined here for 32 and 128, got {m}")
    pts = _grid(side)
    edge = side - 1 - 2 * (corner - 1)  # |coordinate| from which a point lies in a corner block
    keep = ~((np.abs(pts.real) >= edge) & (np.abs(pts.imag) >= edge))
    pts = pts[keep]
    assert len(pts) == m
    return _unit_power(pts)


def apsk(rings: tuple[tuple[int, float, float], ...]) -> np.ndarray:
    """APSK from ``(points, relative radius, phase offset)`` per ring, unit mean power."""
    pts = [r * np.exp(1j * (2 * np.pi * np.arange(k) / k + off)) for k, r, off in rings]
    return _unit_power(np.concatenate(pts))


APSK_RINGS: MappingProxyType[str, tuple[tuple[int, float, float], ...]] = MappingProxyType({
    "16APSK": ((4, 1.0, np.pi / 4), (12, 2.85, np.pi / 12)),
    "32APSK": ((4, 1.0, np.pi / 4), (12, 2.84, np.pi / 12), (16, 5.27, 0.0)),
    "64APSK": ((8, 1.0, np.pi / 8), (16, 2.2, np.pi / 16), (20, 3.6, np.pi / 20), (20, 5.2, 0.0)),
    "128APSK": ((16, 1.0, 0.0), (16, 1.715, np.pi / 16), (16, 2.118, 0.0), (16, 2.681, np.pi / 16),
                (16, 2.75, 0.0), (48, 3.25, np.pi / 48)),
})
"""APSK ring structure: ``(points, radius relative to the inner ring, phase offset in rad)`` per ring."""


def _build() -> dict[str, np.ndarray]:
    table = {
        "BPSK": psk(2), "QPSK": psk(4, np.pi / 4), "8PSK": psk(8), "16PSK": psk(16), "32PSK": psk(32),
        "PAM4": pam(4), "4ASK": pam(4), "8ASK": pam(8), "OOK": ook(),
        "QAM16": square_qam(16), "QAM64": square_qam(64),
        "16QAM": square_qam(16), "64QAM": square_qam(64), "256QAM": square_qam(256),
        "32QAM": cross_qam(32), "128QAM": cross_qam(128),
        "OQPSK": psk(4, np.pi / 4),
    }
    table.update({name: apsk(rings) for name, rings in APSK_RINGS.items()})
    for arr in table.values():
        arr.setflags(write=False)
    return table


CONSTELLATIONS: MappingProxyType[str, np.ndarray] = MappingProxyType(_build())
"""Symbol alphabet (read-only complex128 array, unit mean power) of every linearly modulated class."""
