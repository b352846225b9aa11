"""NumPy reference implementations of every hwnas quantizer.

These functions are written for clarity, not speed: integer codes are computed in ``int64`` and every
rounding/overflow rule is spelled out, so they can be read against the ``ap_fixed`` documentation. The
torch implementations in :mod:`hwnas.quant.fixed`, :mod:`hwnas.quant.scaled` and :mod:`hwnas.quant.bipolar` are
tested bit for bit against them, and the fixed-point ones in turn against the real ``ap_fixed`` headers compiled
with g++ (the bipolar one against qonnx's ``BipolarQuant`` executor).
"""

from __future__ import annotations

import numpy as np

from .modes import OverflowMode, QuantizationError, RoundingMode, parse_overflow, parse_rounding

__all__ = ["fixed_codes_np", "quantize_bipolar_np", "quantize_fixed_np", "quantize_scaled_np"]

_MAX_WIDTH = 62


def _round_codes(y: np.ndarray, mode: RoundingMode) -> np.ndarray:
    """Round ``y`` (value in units of the LSB) to integer codes (int64) with an ``ap_fixed`` rounding mode."""
    fl = np.floor(y)
    r = y - fl  # exact for finite float64: the fractional part, 0 <= r < 1
    m = fl.astype(np.int64)
    if mode is RoundingMode.TRN:
        up = np.zeros(y.shape, dtype=bool)
    elif mode is RoundingMode.TRN_ZERO:
        up = (r > 0) & (y < 0)
    elif mode is RoundingMode.RND:
        up = r >= 0.5
    elif mode is RoundingMode.RND_MIN_INF:
        up = r > 0.5
    elif mode is RoundingMode.RND_ZERO:
        up = (r > 0.5) | ((r == 0.5) & (y < 0))
    elif mode is RoundingMode.RND_INF:
        up = (r > 0.5) | ((r == 0.5) & (y > 0))
    elif mode is RoundingMode.RND_CONV:
        up = (r > 0.5) | ((r == 0.5) & (m % 2 == 1))
    else:  # pragma: no cover - enum is closed
        raise QuantizationError(f"round_mode: unsupported {mode}")
    return m + up.astype(np.int64)


def fixed_codes_np(
    x: np.ndarray,
    k: np.ndarray | int,
    i: np.ndarray | int,
    f: np.ndarray | int,
    round_mode: str | RoundingMode = "TRN",
    overflow_mode: str | OverflowMode = "WRAP",
) -> np.ndarray:
    """Integer codes (int64, in units of ``2**-f``) of ``x`` quantized to ``ap_fixed`` with (k, i, f).

    ``k``, ``i``, ``f`` broadcast against ``x``. Elements with width ``k+i+f == 0`` are pruned (code 0).
    """
    rmode = parse_rounding(round_mode)
    omode = parse_overflow(overflow_mode)
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise QuantizationError("x: input contains NaN or infinity")
    k, i, f = (np.broadcast_to(np.asarray(v, dtype=np.int64), x.shape) for v in (k, i, f))
    if np.any((k != 0) & (k != 1)):
        raise QuantizationError("k: the sign bit must be 0 or 1")
    width = k + i + f
    if np.any(width < 0):
        raise QuantizationError("k+i+f: widths must be >= 0")
    if np.any(width > _MAX_WIDTH):
        raise QuantizationError(f"k+i+f: the reference supports widths up to {_MAX_WIDTH}")

    y = np.ldexp(x, f)  # x * 2**f, exact
    m = _round_codes(y, rmode)

    mag = i + f  # number of magnitude bits
    safe_mag = np.maximum(mag, 0)
    hi = (np.int64(1) << safe_mag) - 1
    lo = np.where(k == 1, -(np.int64(1) << safe_mag), np.int64(0))
    if omode is OverflowMode.SAT:
        m = np.clip(m, lo, hi)
    elif omode is OverflowMode.SAT_SYM:
        # the most negative code is excluded, except for a 1-bit signed type, where ap_fixed
        # saturates negatives to that code (its only non-zero value) like SAT does
        m = np.clip(m, np.where(k == 1, np.where(mag > 0, -hi, lo), 0), hi)
    elif omode is OverflowMode.SAT_ZERO:
        m = np.where((m > hi) | (m < lo), 0, m)
    elif omode is OverflowMode.WRAP:
        safe_w = np.maximum(width, 1)
        modulus = np.int64(1) << safe_w
        m = np.mod(m, modulus)  # in [0, 2**w)
        m = np.where((k == 1) & (m >= (modulus >> 1)), m - modulus, m)
    return np.where(width > 0, m, 0)


def quantize_fixed_np(
    x: np.ndarray,
    k: np.ndarray | int,
    i: np.ndarray | int,
    f: np.ndarray | int,
    round_mode: str | RoundingMode = "TRN",
    overflow_mode: str | OverflowMode = "WRAP",
) -> np.ndarray:
    """``x`` quantized to ``ap_fixed<k+i+f, k+i, round_mode, overflow_mode>`` (float64 values).

    Matches what assigning a double to an ``ap_fixed``/``ap_ufixed`` variable gives in C++.
    """
    f_arr = np.broadcast_to(np.asarray(f, dtype=np.int64), np.shape(x))
    codes = fixed_codes_np(x, k, i, f, round_mode, overflow_mode)
    return np.ldexp(codes.astype(np.float64), -f_arr)


def quantize_scaled_np(
    x: np.ndarray,
    scale: np.ndarray | float,
    zero_point: np.ndarray | int,
    qmin: int,
    qmax: int,
) -> np.ndarray:
    """Scaled-integer fake quantization: ``(clip(round_half_even(x/scale) + zp, qmin, qmax) - zp) * scale``.

    ``scale`` and ``zero_point`` broadcast against ``x``. The division is performed in float32 (as the
    torch quantizer and ONNX ``QuantizeLinear`` do) and the result is returned in float32.
    """
    x32 = np.asarray(x, dtype=np.float32)
    s32 = np.asarray(scale, dtype=np.float32)
    if np.any(~np.isfinite(s32)) or np.any(s32 <= 0):
        raise QuantizationError("scale: must be finite and > 0")
    zp = np.asarray(zero_point, dtype=np.float32)
    codes = np.clip(np.rint(x32 / s32) + zp, qmin, qmax)
    return ((codes - zp) * s32).astype(np.float32)


def quantize_bipolar_np(x: np.ndarray) -> np.ndarray:
    """Bipolar ±1: ``+1.0`` where ``x >= 0`` (0 and -0.0 included), ``-1.0`` elsewhere (NaN included).

    Exactly qonnx's ``BipolarQuant`` with scale 1 (``np.where(x >= 0, 1, -1)``). Float inputs keep their dtype,
    anything else gives float64.
    """
    x = np.asarray(x)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    return np.where(x >= 0, 1.0, -1.0).astype(dtype)
