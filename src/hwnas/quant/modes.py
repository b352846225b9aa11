"""Rounding and overflow modes of ``ap_fixed`` and the validation of (k, i, f) triples.

The names follow the Vivado/Vitis HLS ``ap_fixed`` header (``AP_RND`` → ``RND`` ...).  Every other part of
:mod:`hwnas` (quantizers, exporters, cost models) reads modes through :func:`parse_rounding` and
:func:`parse_overflow`, so a typo fails in one place with one message.
"""

from __future__ import annotations

import enum
import math
from typing import Any

from hwnas.errors import HwnasError


class QuantizationError(HwnasError, ValueError):
    """A quantizer was configured with an invalid parameter; the message names the parameter."""


class QuantizationWarning(UserWarning):
    """A quantizer produces a suspicious result (for instance a whole tensor quantized to zero)."""


class RoundingMode(enum.StrEnum):
    """How the bits below the least significant kept bit are removed (``ap_fixed`` quantization modes)."""

    TRN = "TRN"
    """Truncate towards minus infinity (floor)."""
    TRN_ZERO = "TRN_ZERO"
    """Truncate towards zero."""
    RND = "RND"
    """Round to nearest, ties towards plus infinity."""
    RND_ZERO = "RND_ZERO"
    """Round to nearest, ties towards zero."""
    RND_MIN_INF = "RND_MIN_INF"
    """Round to nearest, ties towards minus infinity."""
    RND_INF = "RND_INF"
    """Round to nearest, ties away from zero."""
    RND_CONV = "RND_CONV"
    """Round to nearest, ties to even (convergent rounding)."""

    @property
    def ap_name(self) -> str:
        """The C++ enumerator used by the ``ap_fixed`` headers (``AP_RND`` ...)."""
        return "AP_" + self.value


class OverflowMode(enum.StrEnum):
    """What happens to values outside the representable range (``ap_fixed`` overflow modes)."""

    WRAP = "WRAP"
    """Two's complement wrap-around: keep the low bits."""
    SAT = "SAT"
    """Saturate to the minimum/maximum representable value."""
    SAT_ZERO = "SAT_ZERO"
    """Set overflowing values to zero."""
    SAT_SYM = "SAT_SYM"
    """Saturate symmetrically: signed values are limited to ±max, the most negative code is never used."""

    @property
    def ap_name(self) -> str:
        """The C++ enumerator used by the ``ap_fixed`` headers (``AP_SAT`` ...)."""
        return "AP_" + self.value


_ROUND_ALIASES = {"AP_" + m.value: m for m in RoundingMode} | {m.value: m for m in RoundingMode}
_OVERFLOW_ALIASES = {"AP_" + m.value: m for m in OverflowMode} | {m.value: m for m in OverflowMode}


def parse_rounding(value: str | RoundingMode, name: str = "round_mode") -> RoundingMode:
    """Return the :class:`RoundingMode` for ``value`` (``"RND"``, ``"AP_RND"``, case-insensitive).

    Raises :class:`QuantizationError` naming ``name`` and listing the valid modes for anything else.
    """
    if isinstance(value, RoundingMode):
        return value
    if isinstance(value, str) and value.upper() in _ROUND_ALIASES:
        return _ROUND_ALIASES[value.upper()]
    valid = ", ".join(m.value for m in RoundingMode)
    raise QuantizationError(f"{name}: unknown rounding mode {value!r}; expected one of {valid}")


def parse_overflow(value: str | OverflowMode, name: str = "overflow_mode") -> OverflowMode:
    """Return the :class:`OverflowMode` for ``value`` (``"SAT"``, ``"AP_SAT"``, case-insensitive).

    Raises :class:`QuantizationError` naming ``name`` and listing the valid modes for anything else.
    """
    if isinstance(value, OverflowMode):
        return value
    if isinstance(value, str) and value.upper() in _OVERFLOW_ALIASES:
        return _OVERFLOW_ALIASES[value.upper()]
    valid = ", ".join(m.value for m in OverflowMode)
    raise QuantizationError(f"{name}: unknown overflow mode {value!r}; expected one of {valid}")


def _is_integral(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    try:
        fv = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(fv) and fv == int(fv)


def check_kif(k: Any, i: Any, f: Any, where: str = "quantizer") -> tuple[int, int, int]:
    """Validate one scalar (k, i, f) triple and return it as Python ints.

    ``k`` is the sign bit (0 or 1), ``i`` the integer bits excluding the sign, ``f`` the fractional bits;
    the width is ``k + i + f`` and must not be negative (a width of 0 means the value is pruned to 0).
    ``i`` and ``f`` may individually be negative (``ap_fixed<4, -2>`` and ``ap_fixed<4, 6>`` are valid).
    """
    if not (isinstance(k, bool) or _is_integral(k)) or int(k) not in (0, 1):
        raise QuantizationError(f"{where}: k (sign bit) must be 0 or 1, got {k!r}")
    if not _is_integral(i):
        raise QuantizationError(f"{where}: i (integer bits) must be an integer, got {i!r}")
    if not _is_integral(f):
        raise QuantizationError(f"{where}: f (fractional bits) must be an integer, got {f!r}")
    k, i, f = int(k), int(i), int(f)
    if k + i + f < 0:
        raise QuantizationError(
            f"{where}: width k+i+f = {k}+{i}+{f} = {k + i + f} is negative; bits must be >= 0"
        )
    return k, i, f


def ap_type_name(k: int, i: int, f: int, round_mode: RoundingMode | str = "TRN",
                 overflow_mode: OverflowMode | str = "WRAP") -> str:
    """The HLS C++ type of a (k, i, f) fixed-point number, e.g. ``ap_fixed<8,3,AP_RND,AP_SAT>``.

    Raises :class:`QuantizationError` for a width of 0 (a pruned value has no C++ type).
    """
    k, i, f = check_kif(k, i, f)
    r = parse_rounding(round_mode)
    o = parse_overflow(overflow_mode)
    width = k + i + f
    if width == 0:
        raise QuantizationError("ap_type_name: a width of 0 (pruned value) has no ap_fixed type")
    base = "ap_fixed" if k else "ap_ufixed"
    return f"{base}<{width},{k + i},{r.ap_name},{o.ap_name}>"
