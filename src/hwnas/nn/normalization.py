"""QSoftmax and QLayerNorm: hls4ml's ``softmax_stable`` and ``LayerNormalization`` as exact fixed-point layers.

Both layers compute, in their torch forward, exactly the steps of hls4ml's C++ (``nnet_activation.h``
``softmax_stable``; ``nnet_layernorm.h`` ``layernorm_1d``) with every intermediate ``ap_fixed`` type a
constructor argument (:class:`FixedType`: ``(k, i, f, round_mode, overflow_mode)``, or an hls4ml type string
such as ``"ap_ufixed<16,1,AP_RND,AP_SAT>"``). Tables are built the way hls4ml builds them (float32
arithmetic, then a cast to the table type with its rounding and overflow modes), by the NumPy functions
here, which the export graph's reference (:mod:`hwnas.export.graph`) and the RTL path reuse, so torch, the
reference, the RTL circuit and hls4ml's C++ agree bit for bit (``tests/test_softmax_layernorm.py``).

Softmax (over the last axis), ``x`` quantized by a *static* per-tensor fixed-point input quantizer (data_T):

1. ``x_max = max_j x_j``; ``d_j = inp_norm_t(x_max − x_j)``;
2. ``exp_res_j = accum_t(exp_table[idx(d_j)])``: the index is the top ``log2(exp_table_size)`` bits of
   ``d_j``'s code; entry ``i`` is ``exp_table_t(expf(−float(v_i)·exp_scale))`` with ``v_i`` the value whose
   top bits are ``i`` (float32 product, float32 ``exp``);
3. ``sum = reduce(exp_res)`` with hls4ml's balanced adder tree, every partial sum cast to ``accum_t``;
4. ``inv = inv_table[idx(inv_inp_t(sum))]``, entries ``inv_table_t(1.0f / float(v_i))`` (``1/0 = inf``:
   the type's saturation value, or 0 with WRAP);
5. ``y_j = exp_res_j · inv`` (exact product), then the output quantizer (res_T).

LayerNorm (over the last axis, ``gamma``/``beta`` through the weight/bias quantizers, scale_t/bias_t):
``xa = accum_t(x)``; ``sum`` and ``sum2`` accumulated *in order* in ``accum_t``; ``k_inv = accum_t(1.0/n)``;
``mean = accum_t(sum·k_inv)``; ``diff = accum_t(xa − mean)``; ``sum2 += accum_t(diff²)``;
``var = accum_t(sum2·k_inv)``; ``index = clamp(trunc(var·table_size·2**table_range_power2), 0, size−1)``;
``y = diff · table[index] · gamma + beta`` (exact), then the output quantizer. The table holds
``table_t(1.0 / sqrtf(10**-eps_p + step·j))`` with ``step = 2**-table_range_power2 / table_size`` (float32),
so it covers variances in ``[0, 2**-table_range_power2)`` and clamps above, as hls4ml does. A feature count
that is not a power of two is fine: ``1/n`` is quantized to ``accum_t`` first, as in hls4ml, and that
constant is part of the layer's exact semantics.

Exactness: the torch forward evaluates these steps in float64 (every intermediate here has at most 53
significant bits; the layer checks it and raises :class:`~hwnas.quant.QuantizationError` naming the type
otherwise) and returns the output quantizer's values in the input's dtype. ``exp`` is the correctly rounded
float32 exponential (float64 ``exp`` rounded to float32, near-ties settled in decimal); glibc's ``expf``
differs from it in about 3 in 10**4 float inputs, by one float32 ulp, which moves a table entry only if the
table type keeps ~24 significant bits (no entry differed over 19 million checks with ≤ 18-bit types).
Gradients are straight-through to the float function (``softmax(exp_scale·x)``, ``layer_norm``), like
:class:`~hwnas.nn.QActivation`'s table mode.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwnas.quant import FixedPointQuantizer, PerTensor, QuantizationError, quantize_fixed
from hwnas.quant.modes import ap_type_name, check_kif, parse_overflow, parse_rounding
from hwnas.quant.reference import quantize_fixed_np

from .base import QLayer, QuantizerSpec, module_device
from .layers import DEFAULT_ACTIVATION, DEFAULT_BIAS, DEFAULT_WEIGHT

__all__ = [
    "DEFAULT_SOFTMAX_INPUT",
    "DEFAULT_SOFTMAX_OUTPUT",
    "MAX_TABLE_SIZE",
    "FixedType",
    "LayerNormConfig",
    "QLayerNorm",
    "QSoftmax",
    "SoftmaxConfig",
    "expf",
    "hls_reduce",
    "layernorm_elementwise",
    "layernorm_np",
    "layernorm_table",
    "softmax_elementwise",
    "softmax_exp_table",
    "softmax_inv_table",
    "softmax_np",
]

MAX_TABLE_SIZE = 1 << 16
"""Most entries a table of these layers may have (the RTL path's lookup limit)."""

DEFAULT_SOFTMAX_INPUT: dict = {"kind": "fixed", "bits": 10, "i": 3, "round_mode": "RND", "overflow_mode": "SAT",
                               "learnable": False}
"""QSoftmax's default data_T: ``ap_fixed<10,4,AP_RND,AP_SAT>`` (logits in [-8, 8), step 1/64)."""

DEFAULT_SOFTMAX_OUTPUT: dict = {"kind": "fixed", "bits": 12, "i": 1, "signed": False, "round_mode": "RND",
                                "overflow_mode": "SAT", "learnable": False}
"""QSoftmax's default res_T: ``ap_ufixed<12,1,AP_RND,AP_SAT>`` (holds 1.0, step 2**-11)."""

_MANTISSA = 53


# ------------------------------------------------------------------------------------------------ types
_TYPE_RE = re.compile(r"^\s*(?:ap_)?(u?)fixed\s*<\s*(-?\d+)\s*,\s*(-?\d+)\s*(?:,\s*(\w+)\s*)?(?:,\s*(\w+)\s*)?"
                      r"(?:,\s*\d+\s*)?>\s*$")


@dataclass(frozen=True)
class FixedType:
    """One scalar ``ap_fixed`` type: sign bit ``k``, integer bits ``i`` (without the sign), fractional bits ``f``.

    ``ap_fixed<k+i+f, k+i, round_mode, overflow_mode>`` (``ap_ufixed`` when ``k == 0``); the modes are
    hwnas's names (``"RND"``, ``"SAT"``...), defaulting to ap_fixed's own (``TRN``, ``WRAP``).
    """

    k: int
    i: int
    f: int
    round_mode: str = "TRN"
    overflow_mode: str = "WRAP"

    def __post_init__(self) -> None:
        k, i, f = check_kif(self.k, self.i, self.f, "type")
        if k + i + f < 1:
            raise QuantizationError(f"type: width k+i+f = {k + i + f}; an ap_fixed type needs at least 1 bit")
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "i", i)
        object.__setattr__(self, "f", f)
        object.__setattr__(self, "round_mode", parse_rounding(self.round_mode).value)
        object.__setattr__(self, "overflow_mode", parse_overflow(self.overflow_mode).value)

    @classmethod
    def parse(cls, spec: Any, where: str) -> FixedType:
        """A type from a :class:`FixedType`, ``(k, i, f[, round, overflow])`` or ``"ap_[u]fixed<W,I[,Q[,O]]>"``.

        Errors are :class:`QuantizationError` naming ``where`` (the constructor argument).
        """
        try:
            if isinstance(spec, FixedType):
                return spec
            if isinstance(spec, str):
                m = _TYPE_RE.match(spec)
                if m is None:
                    raise QuantizationError(f"cannot read {spec!r}; write e.g. 'ap_fixed<16,6,AP_RND,AP_SAT>'")
                unsigned, width, integer, rnd, ovf = m.groups()
                k = 0 if unsigned else 1
                return cls(k, int(integer) - k, int(width) - int(integer), rnd or "TRN", ovf or "WRAP")
            if isinstance(spec, tuple | list) and len(spec) in (3, 5):
                return cls(*spec)
        except QuantizationError as err:
            raise QuantizationError(f"{where}: {str(err).removeprefix('type: ')}") from err
        raise QuantizationError(f"{where}: expected a FixedType, (k, i, f[, round_mode, overflow_mode]) or an "
                                f"'ap_fixed<W,I,...>' string, got {spec!r}")

    @property
    def width(self) -> int:
        """Total bits ``k + i + f``."""
        return self.k + self.i + self.f

    @property
    def max_value(self) -> float:
        """Largest representable value."""
        return 2.0 ** self.i - 2.0 ** -self.f

    @property
    def min_value(self) -> float:
        """Smallest representable value (SAT_SYM types never produce the most negative code)."""
        if not self.k:
            return 0.0
        return -self.max_value if self.overflow_mode == "SAT_SYM" and self.i + self.f > 0 else -(2.0 ** self.i)

    @property
    def max_abs(self) -> float:
        """Largest magnitude of a representable value."""
        return max(self.max_value, -self.min_value)

    def cpp(self) -> str:
        """The C++ type, e.g. ``ap_fixed<10,4,AP_RND,AP_SAT>``."""
        return ap_type_name(self.k, self.i, self.f, self.round_mode, self.overflow_mode)

    def quantize(self, x: np.ndarray | float) -> np.ndarray:
        """``x`` assigned to this type, as C++ does it (float64 values; ±inf and huge values as ap_fixed does)."""
        x = np.array(x, dtype=np.float64, copy=True)
        if np.isnan(x).any():
            raise QuantizationError(f"{self.cpp()}: NaN has no fixed-point value")
        span = 2.0 ** (self.k + self.i)  # the wrap-around period, a power of two
        big = np.abs(x) >= 2.0 * span
        if big.any():
            if self.overflow_mode == "WRAP":  # a multiple of the period vanishes: reduce exactly (fmod is exact)
                with np.errstate(invalid="ignore"):
                    x[big] = np.where(np.isfinite(x[big]), np.fmod(x[big], span), 0.0)
            else:  # saturating modes: any value this far out saturates (or zeroes) the same way
                x[big] = np.sign(x[big]) * 2.0 * span
        return quantize_fixed_np(x, self.k, self.i, self.f, self.round_mode, self.overflow_mode)

    def quantize_torch(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (float64, exact values below 2**53 codes) assigned to this type; no gradient."""
        return quantize_fixed(x, float(self.k), float(self.i), float(self.f), self.round_mode, self.overflow_mode)

    def sliced(self, bits: int) -> FixedType:
        """The value of the top ``bits`` bits of this type (lower bits zero): the same range on a coarser grid."""
        return FixedType(self.k, self.i, self.f - (self.width - bits), "TRN", "WRAP")

    def index(self, values: np.ndarray, bits: int) -> np.ndarray:
        """hls4ml's table index of values of this type: the top ``bits`` bits of the code, read unsigned."""
        codes = np.rint(np.ldexp(np.asarray(values, dtype=np.float64), self.f)).astype(np.int64)
        return (codes >> (self.width - bits)) & ((1 << bits) - 1)

    def index_torch(self, values: torch.Tensor, bits: int) -> torch.Tensor:
        """:meth:`index` for a float64 tensor of values of this type."""
        codes = torch.round(values * 2.0 ** self.f).to(torch.int64)
        return (codes >> (self.width - bits)) & ((1 << bits) - 1)

    def index_values(self, bits: int) -> np.ndarray:
        """The value of every index ``0 .. 2**bits - 1`` (hls4ml's ``softmax_real_val_from_idx``), float64."""
        idx = np.arange(1 << bits, dtype=np.int64)
        if self.k:
            idx = np.where(idx >= 1 << (bits - 1), idx - (1 << bits), idx)
        return np.ldexp(idx.astype(np.float64), -self.sliced(bits).f)


def _fraction_bits(values: np.ndarray) -> int:
    """The most fractional bits any of ``values`` needs (0 for integers)."""
    v = np.abs(np.asarray(values, dtype=np.float64)).ravel()
    v = v[v != 0]
    for f in range(1100):
        if not np.any(np.mod(np.ldexp(v, f), 1.0)):
            return f
    raise QuantizationError("values: not finite")  # pragma: no cover - finite float64 need <= 1074 bits


def _check_exact(bits: float, what: str, where: str) -> None:
    if bits > _MANTISSA:
        raise QuantizationError(f"{where}: {what} needs {bits:.0f} significant bits, more than float64's 53, so the "
                                "reference and the torch forward could not be exact; narrow the types")


# ------------------------------------------------------------------------------------------------ float32 maths
def expf(x: np.ndarray) -> np.ndarray:
    """The correctly rounded float32 ``exp`` of float32 ``x`` (what a correctly rounded ``std::exp(float)`` gives).

    float64 ``exp`` rounded to float32; the rare results within a few float64 ulps of a float32 midpoint are
    decided with 60-digit decimal arithmetic, so no double rounding can occur.
    """
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore", under="ignore"):
        d = np.exp(x.astype(np.float64))
        r = d.astype(np.float32)
    r64 = r.astype(np.float64)
    ok = np.isfinite(r) & (r > 0) & (d != r64)
    toward = np.where(d > r64, np.float32(np.inf), np.float32(0.0)).astype(np.float32)
    other = np.nextafter(r, toward)
    mid = (r64 + other.astype(np.float64)) / 2.0
    close = ok & (np.abs(d - mid) <= np.abs(d) * 2.0 ** -48)
    flat_r, flat_o, flat_x = r.reshape(-1), other.reshape(-1), x.reshape(-1)
    for j in np.flatnonzero(close.reshape(-1)):
        with localcontext() as ctx:
            ctx.prec = 60
            exact = Decimal(float(flat_x[j])).exp()
            if abs(exact - Decimal(float(flat_o[j]))) < abs(exact - Decimal(float(flat_r[j]))):
                flat_r[j] = flat_o[j]
    return r


# ------------------------------------------------------------------------------------------------ softmax
def hls_reduce(items: Sequence[Any], op: Callable[[Any, Any], Any]) -> Any:
    """hls4ml's ``nnet::reduce``: a balanced tree, left part the largest power of two below ``len(items)``."""
    n = len(items)
    if n == 1:
        return items[0]
    if n == 2:
        return op(items[0], items[1])
    left = 1 << ((n - 1).bit_length() - 1)
    return op(hls_reduce(items[:left], op), hls_reduce(items[left:], op))


def _log2_size(size: int) -> int:
    return int(size).bit_length() - 1


@functools.lru_cache(maxsize=64)
def softmax_exp_table(inp_norm_t: FixedType, size: int, exp_scale: float, exp_table_t: FixedType) -> np.ndarray:
    """hls4ml's ``init_exp_table<inp_norm_t, CONFIG_T>(table, negative=true)``: ``size`` values, index order."""
    v = inp_norm_t.index_values(_log2_size(size)).astype(np.float32)  # exact: at most 16 significant bits
    with np.errstate(over="ignore"):
        arg = -(v * np.float32(exp_scale))  # float32 product, as C++ computes it
    out = exp_table_t.quantize(expf(arg).astype(np.float64))
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=64)
def softmax_inv_table(inv_inp_t: FixedType, size: int, inv_table_t: FixedType) -> np.ndarray:
    """hls4ml's ``init_invert_table<inv_inp_t, CONFIG_T>(table)``: ``inv_table_t(1 / float(v))`` per index."""
    v = inv_inp_t.index_values(_log2_size(size)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.float32(1.0) / v  # float32 division; 1/0 = +inf, which the cast saturates (or wraps to 0)
    out = inv_table_t.quantize(inv.astype(np.float64))
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class SoftmaxConfig:
    """Every type and size of one hls4ml ``softmax_stable`` instance (all resolved, checked by :meth:`check`)."""

    n: int
    """Features per softmax (hls4ml's ``n_slice``)."""
    data_t: FixedType
    inp_norm_t: FixedType
    exp_table_t: FixedType
    accum_t: FixedType
    inv_inp_t: FixedType
    inv_table_t: FixedType
    exp_table_size: int
    inv_table_size: int
    exp_scale: float

    def check(self) -> None:
        """Raise :class:`QuantizationError` naming the argument that makes the layer impossible or inexact."""
        for name, size, t in (("exp_table_size", self.exp_table_size, self.inp_norm_t),
                              ("inv_table_size", self.inv_table_size, self.inv_inp_t)):
            _check_table_size(name, size, power_of_two=True)
            if _log2_size(size) > t.width:
                what = "inp_norm_t" if name.startswith("exp") else "inv_inp_t"
                raise QuantizationError(f"{name}: {size} entries need {_log2_size(size)} index bits but {what} "
                                        f"({t.cpp()}) has {t.width}; use at most 2**{t.width} entries")
        _check_exact(self.data_t.width + 1, "x_max - x", "data_t")
        _check_exact(self.accum_t.width + 1, "a partial sum", "accum_t")
        _check_exact(self.accum_t.width + self.inv_table_t.width, f"exp_res * inv ({self.accum_t.cpp()} x "
                     f"{self.inv_table_t.cpp()})", "accum_t")

    @property
    def exp_bits(self) -> int:
        """Index bits of the exp table."""
        return _log2_size(self.exp_table_size)

    @property
    def inv_bits(self) -> int:
        """Index bits of the inversion table."""
        return _log2_size(self.inv_table_size)

    def exp_table(self) -> np.ndarray:
        """The exp table as hls4ml holds it (``exp_table_t`` values, index order)."""
        return softmax_exp_table(self.inp_norm_t, self.exp_table_size, self.exp_scale, self.exp_table_t)

    def exp_table_accum(self) -> np.ndarray:
        """The exp table entries as ``exp_res`` holds them (cast to ``accum_t``)."""
        return _exp_accum(self)

    def inv_table(self) -> np.ndarray:
        """The inversion table as hls4ml holds it (``inv_table_t`` values, index order)."""
        return softmax_inv_table(self.inv_inp_t, self.inv_table_size, self.inv_table_t)


@functools.lru_cache(maxsize=64)
def _exp_accum(cfg: SoftmaxConfig) -> np.ndarray:
    out = cfg.accum_t.quantize(cfg.exp_table())
    out.setflags(write=False)
    return out


def softmax_np(x: np.ndarray, cfg: SoftmaxConfig) -> np.ndarray:
    """``softmax_stable`` over the last axis of ``x`` (values of ``data_t``), before res_T: ``exp_res * inv``."""
    x = np.asarray(x, dtype=np.float64)
    d = cfg.inp_norm_t.quantize(x.max(axis=-1, keepdims=True) - x)
    e = cfg.exp_table_accum()[cfg.inp_norm_t.index(d, cfg.exp_bits)]
    total = hls_reduce([e[..., j] for j in range(e.shape[-1])], lambda a, b: cfg.accum_t.quantize(a + b))
    s = cfg.inv_inp_t.quantize(total)
    inv = cfg.inv_table()[cfg.inv_inp_t.index(s, cfg.inv_bits)]
    return e * inv[..., None]


def softmax_elementwise(row: Sequence[Any], cfg: SoftmaxConfig, q: Callable[[Any, FixedType], Any],
                        lookup: Callable[[Any, Callable[[np.ndarray], np.ndarray]], Any],
                        maximum: Callable[[Any, Any], Any]) -> list[Any]:
    """``softmax_stable`` on one row of scalar-like values (symbolic variables of the RTL path, or floats).

    The operations are injected: ``q(v, t)`` casts to a :class:`FixedType`, ``lookup(v, fn)`` maps ``v`` through
    ``fn`` (a NumPy function of the values ``v`` can take), ``maximum(a, b)``; ``+``, ``-`` and ``*`` are the
    values' own. Tables are indexed by values quantized to the top bits (:meth:`FixedType.sliced`), so a
    lookup has at most ``exp_table_size`` / ``inv_table_size`` entries.
    """
    x_max = functools.reduce(maximum, row)
    exp_acc, norm = cfg.exp_table_accum(), cfg.inp_norm_t
    top = norm.sliced(cfg.exp_bits)
    e = [lookup(q(q(x_max - v, norm), top), lambda vals: exp_acc[norm.index(vals, cfg.exp_bits)]) for v in row]
    total = hls_reduce(e, lambda a, b: q(a + b, cfg.accum_t))
    inv_tab, inv_in = cfg.inv_table(), cfg.inv_inp_t
    key = q(q(total, inv_in), inv_in.sliced(cfg.inv_bits))
    inv = lookup(key, lambda vals: inv_tab[inv_in.index(vals, cfg.inv_bits)])
    return [ej * inv for ej in e]


def _softmax_torch(x: torch.Tensor, cfg: SoftmaxConfig, exp_acc: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
    """:func:`softmax_np` in torch (float64 ``x``; tables already on ``x``'s device)."""
    d = cfg.inp_norm_t.quantize_torch(x.amax(dim=-1, keepdim=True) - x)
    e = exp_acc[cfg.inp_norm_t.index_torch(d, cfg.exp_bits)]
    total = hls_reduce(list(e.unbind(-1)), lambda a, b: cfg.accum_t.quantize_torch(a + b))
    s = cfg.inv_inp_t.quantize_torch(total)
    return e * inv[cfg.inv_inp_t.index_torch(s, cfg.inv_bits)].unsqueeze(-1)


def _check_table_size(name: str, size: Any, power_of_two: bool) -> int:
    if isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise QuantizationError(f"{name}: must be an integer, got {size!r}")
    size = int(size)
    low = 2 if power_of_two else 1
    if size < low or (power_of_two and size & (size - 1)):
        need = "a power of two >= 2 (its index is the top log2(size) bits of a code)" if power_of_two else ">= 1"
        raise QuantizationError(f"{name}: {size} entries; must be {need}")
    if size > MAX_TABLE_SIZE:
        raise QuantizationError(f"{name}: {size} entries is too large a table (at most {MAX_TABLE_SIZE}); use a "
                                "smaller size")
    return size


def _static_input(q: Any, layer: str) -> None:
    if not isinstance(q, FixedPointQuantizer) or q.learnable:
        raise QuantizationError(f"input_quantizer: {layer} needs a static (learnable=False) fixed-point input "
                                "quantizer (hls4ml's data_T), so its tables are finite and fixed")
    if not isinstance(q.granularity, PerTensor):
        raise QuantizationError(f"input_quantizer: {layer} needs one input type for every element "
                                "(granularity='tensor'), as hls4ml's data_T is")


def _scalar_type(q: FixedPointQuantizer) -> FixedType:
    k, i, f = (int(t.reshape(-1)[0]) for t in q.kif())
    return FixedType(k, i, f, q.round_mode.value, q.overflow_mode.value)


def _rows(shape: tuple[int, ...]) -> int:
    return math.prod(shape[:-1]) if shape else 1


class QSoftmax(QLayer):
    """Softmax over the last axis, exactly hls4ml's ``softmax_stable`` (module docstring).

    Args (types: :class:`FixedType`, ``(k, i, f[, round, overflow])`` or ``"ap_[u]fixed<W,I,...>"``; None
    derives the default from data_T and the feature count ``n``):
        inp_norm_t: ``x_max − x``. Default: exact, ``ap_ufixed<W_data, I_data>`` (TRN, WRAP), i.e. ``k+i``
            integer bits and data_T's ``f`` (hls4ml's own default drops one integer bit of a signed input,
            wrapping large differences; pass it explicitly to reproduce that).
        exp_table_t: the exp table's entries. Default ``ap_ufixed<16,1,AP_RND,AP_SAT>``.
        accum_t: ``exp_res`` and the adder tree. Default: exact, exp_table_t widened by ``ceil(log2 n)`` integer
            bits (TRN, WRAP), so the sum never rounds or overflows.
        inv_inp_t: the sum as the inversion table reads it. Default ``ap_ufixed<12, I_accum>`` (RND, SAT).
        inv_table_t: the inversion table's entries. Default ``ap_ufixed<18,1,AP_RND,AP_SAT>``.
        exp_table_size, inv_table_size: powers of two, at most ``2**width`` of inp_norm_t/inv_inp_t and
            :data:`MAX_TABLE_SIZE`; smaller tables are indexed by the top bits (hls4ml's slicing). Default:
            ``min(2**width, 4096)``.
        exp_scale: ``exp(−exp_scale·(x_max − x))`` (float32, hls4ml's ``exp_scale``). Default 1.
        input_quantizer: data_T; a static per-tensor fixed-point quantizer. Default
            :data:`DEFAULT_SOFTMAX_INPUT`.
        output_quantizer: res_T (required). Default :data:`DEFAULT_SOFTMAX_OUTPUT`.
    """

    def __init__(
        self,
        dim: int = -1,
        *,
        inp_norm_t: Any = None,
        exp_table_t: Any = (0, 1, 15, "RND", "SAT"),
        accum_t: Any = None,
        inv_inp_t: Any = None,
        inv_table_t: Any = (0, 1, 17, "RND", "SAT"),
        exp_table_size: int | None = None,
        inv_table_size: int | None = None,
        exp_scale: float = 1.0,
        input_quantizer: QuantizerSpec = DEFAULT_SOFTMAX_INPUT,
        output_quantizer: QuantizerSpec = DEFAULT_SOFTMAX_OUTPUT,
    ) -> None:
        super().__init__()
        if dim != -1:
            raise QuantizationError(f"dim: QSoftmax works over the last axis (dim=-1), got {dim}; move the axis last")
        self.dim = -1
        self.inp_norm_t = None if inp_norm_t is None else FixedType.parse(inp_norm_t, "inp_norm_t")
        self.exp_table_t = FixedType.parse(exp_table_t, "exp_table_t")
        self.accum_t = None if accum_t is None else FixedType.parse(accum_t, "accum_t")
        self.inv_inp_t = None if inv_inp_t is None else FixedType.parse(inv_inp_t, "inv_inp_t")
        self.inv_table_t = FixedType.parse(inv_table_t, "inv_table_t")
        self.exp_table_size = None if exp_table_size is None else _check_table_size("exp_table_size",
                                                                                    exp_table_size, True)
        self.inv_table_size = None if inv_table_size is None else _check_table_size("inv_table_size",
                                                                                    inv_table_size, True)
        scale = float(np.float32(exp_scale))
        if not math.isfinite(scale) or scale <= 0:
            raise QuantizationError(f"exp_scale: must be a positive finite float32, got {exp_scale!r}")
        self.exp_scale = scale
        self._init_quantizers(input_quantizer, None, None, output_quantizer)
        _static_input(self.input_quantizer, "QSoftmax")
        if self.output_quantizer is None:
            raise QuantizationError("output_quantizer: QSoftmax needs an output quantizer (hls4ml's res_T); the "
                                    "exact product exp_res * inv is too wide to leave unquantized")
        self._configs: dict[tuple[Any, ...], SoftmaxConfig] = {}
        self._tables: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor]] = {}

    def config(self, sample: tuple[int, ...] | None = None) -> SoftmaxConfig:
        """The resolved, checked configuration for per-sample shape ``sample`` (default: the last one seen)."""
        shape = sample if sample is not None else self._require_shape()
        if not shape:
            raise QuantizationError("QSoftmax: the input needs a feature axis")
        q = self.input_quantizer
        assert isinstance(q, FixedPointQuantizer)
        if not q.materialized:
            raise QuantizationError("QSoftmax: input_quantizer not sized yet; run one forward pass first")
        data_t = _scalar_type(q)
        key = (data_t, shape[-1])
        cfg = self._configs.get(key)
        if cfg is None:
            cfg = self._resolve(data_t, shape[-1])
            self._configs[key] = cfg
        return cfg

    def _resolve(self, data_t: FixedType, n: int) -> SoftmaxConfig:
        norm = self.inp_norm_t or FixedType(0, data_t.i + data_t.k, data_t.f, "TRN", "WRAP")
        e = self.exp_table_t
        grow = max(n - 1, 0).bit_length()  # ceil(log2 n)
        acc = self.accum_t or FixedType(e.k, e.i + grow, e.f, "TRN", "WRAP")
        inv_in = self.inv_inp_t or FixedType(0, acc.i + acc.k, 12 - acc.i - acc.k, "RND", "SAT")
        cfg = SoftmaxConfig(
            n=n, data_t=data_t, inp_norm_t=norm, exp_table_t=e, accum_t=acc, inv_inp_t=inv_in,
            inv_table_t=self.inv_table_t,
            exp_table_size=self.exp_table_size or min(1 << norm.width, 4096),
            inv_table_size=self.inv_table_size or min(1 << inv_in.width, 4096),
            exp_scale=self.exp_scale)
        cfg.check()
        return cfg

    def _device_tables(self, cfg: SoftmaxConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (cfg, str(device))
        if key not in self._tables:
            self._tables[key] = (torch.as_tensor(np.array(cfg.exp_table_accum()), dtype=torch.float64, device=device),
                                 torch.as_tensor(np.array(cfg.inv_table()), dtype=torch.float64, device=device))
        return self._tables[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The quantized input through ``softmax_stable``, then the output quantizer (module docstring)."""
        x = self._qin(x)
        cfg = self.config(tuple(x.shape[1:]))
        exp_acc, inv = self._device_tables(cfg, x.device)
        with torch.no_grad():
            y = _softmax_torch(x.detach().to(torch.float64), cfg, exp_acc, inv)
        if torch.is_grad_enabled() and x.requires_grad:  # straight-through to the float softmax
            smooth = torch.softmax(x * cfg.exp_scale, dim=-1).to(torch.float64)
            y = y + (smooth - smooth.detach())
        return self._qout(y).to(x.dtype)

    # -------------------------------------------------------------- costs
    def macs(self) -> int:
        """One multiplication per element (``exp_res · inv``)."""
        return math.prod(self._require_shape())

    def ebops(self, upstream: torch.Tensor | None = None) -> torch.Tensor:
        """Effective bit operations per sample (the table lookups are not counted, as for table activations).

        Per row: n−1 comparisons and n subtractions at data_T's width, n−1 additions at accum_t's, and n
        products accum_t × inv_table_t.
        """
        shape = self._require_shape()
        cfg = self.config(shape)
        n = cfg.n
        per_row = (2 * n - 1) * cfg.data_t.width + (n - 1) * cfg.accum_t.width \
            + n * cfg.accum_t.width * cfg.inv_table_t.width
        return torch.tensor(float(per_row * _rows(shape)), device=module_device(self))

    def bops(self, upstream: torch.Tensor | None = None) -> float:
        """MACs × accum_t width × inv_table_t width."""
        cfg = self.config()
        return float(self.macs() * cfg.accum_t.width * cfg.inv_table_t.width)


# ------------------------------------------------------------------------------------------------ layernorm
@functools.lru_cache(maxsize=64)
def layernorm_table(size: int, table_range_power2: int, epsilon_power_of_10: int, table_t: FixedType) -> np.ndarray:
    """hls4ml's ``init_invert_sqr_table``: ``table_t(1.0 / sqrtf(min_val + step·j))`` (float32 ``in_val``)."""
    min_val = np.float32(10.0 ** -int(epsilon_power_of_10))  # pow(10.0f, -p): a double pow rounded to float
    max_val = np.float32(2.0 ** -int(table_range_power2))
    step = np.float32(max_val / np.float32(size))
    in_val = min_val + step * np.arange(size, dtype=np.float32)  # float32 product and sum
    out = table_t.quantize(1.0 / np.sqrt(in_val).astype(np.float64))  # sqrtf, then a double division
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class LayerNormConfig:
    """Every type and size of one hls4ml ``layernorm_1d`` instance."""

    n: int
    """Features normalized together (hls4ml's ``n_in / seq_len``)."""
    accum_t: FixedType
    table_t: FixedType
    table_size: int
    table_range_power2: int
    epsilon_power_of_10: int

    def check(self) -> None:
        """Raise :class:`QuantizationError` naming the argument that makes the layer inexact."""
        _check_table_size("table_size", self.table_size, power_of_two=False)
        _check_exact(2 * self.accum_t.width, f"a product of two {self.accum_t.cpp()}", "accum_t")
        reach = self.accum_t.max_abs * self.table_size * 2.0 ** self.table_range_power2
        if reach >= 2.0 ** 31:
            raise QuantizationError(f"accum_t: var * table_size * 2**table_range_power2 can reach {reach:.3g}, beyond "
                                    "the C int hls4ml stores the table index in; narrow accum_t or the table")

    def check_params(self, scale: np.ndarray, bias: np.ndarray) -> None:
        """Raise when ``diff · table · scale + bias`` could need more than 53 significant bits."""
        f_total = max(self.accum_t.f + self.table_t.f + _fraction_bits(scale), _fraction_bits(bias))
        reach = self.accum_t.max_abs * self.table_t.max_abs * float(np.max(np.abs(scale), initial=0.0)) \
            + float(np.max(np.abs(bias), initial=0.0))
        bits = math.log2(reach) + f_total + 1 if reach > 0 else 0
        _check_exact(bits, "diff * table * scale + bias", "weight_quantizer")

    def table(self) -> np.ndarray:
        """The 1/sqrt table as hls4ml holds it (``table_t`` values)."""
        return layernorm_table(self.table_size, self.table_range_power2, self.epsilon_power_of_10, self.table_t)

    def k_inv(self) -> float:
        """``accum_t(1.0 / n)``."""
        return float(self.accum_t.quantize(1.0 / self.n))


def _sequential_sum(cols: Sequence[Any], q: Callable[[Any], Any]) -> Any:
    total = cols[0]
    for c in cols[1:]:
        total = q(total + c)
    return total


def layernorm_np(x: np.ndarray, cfg: LayerNormConfig, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``layernorm_1d`` over the last axis of ``x``, before res_T: ``diff · table[index] · scale + bias``."""
    a = cfg.accum_t
    xa = a.quantize(np.asarray(x, dtype=np.float64))
    k_inv = cfg.k_inv()
    mean = a.quantize(_sequential_sum([xa[..., j] for j in range(cfg.n)], a.quantize) * k_inv)
    diff = a.quantize(xa - mean[..., None])
    sq = a.quantize(diff * diff)
    var = a.quantize(_sequential_sum([sq[..., j] for j in range(cfg.n)], a.quantize) * k_inv)
    index = np.clip(np.trunc(var * (cfg.table_size * 2.0 ** cfg.table_range_power2)), 0, cfg.table_size - 1)
    deno = cfg.table()[index.astype(np.int64)]
    return diff * deno[..., None] * scale + bias


def layernorm_elementwise(row: Sequence[Any], cfg: LayerNormConfig, scale: np.ndarray, bias: np.ndarray,
                          q: Callable[[Any, FixedType], Any],
                          lookup: Callable[[Any, Callable[[np.ndarray], np.ndarray]], Any]) -> list[Any]:
    """``layernorm_1d`` on one row of scalar-like values with injected operations (see :func:`softmax_elementwise`).

    The table index ``clamp(trunc(var·S), 0, size−1)`` is computed as ``var·S`` cast to an unsigned integer
    type that saturates (the same value for every ``var``), then looked up with the clamp to ``size−1``.
    """
    a = cfg.accum_t
    xa = [q(v, a) for v in row]
    k_inv = cfg.k_inv()
    mean = q(_sequential_sum(xa, lambda v: q(v, a)) * k_inv, a)
    diff = [q(v - mean, a) for v in xa]
    sq = [q(d * d, a) for d in diff]
    var = q(_sequential_sum(sq, lambda v: q(v, a)) * k_inv, a)
    table, size = cfg.table(), cfg.table_size
    bits = (size - 1).bit_length()
    if bits == 0:  # one entry: a constant
        deno: Any = float(table[0])
    else:
        idx = q(var * float(size * 2.0 ** cfg.table_range_power2), FixedType(0, bits, 0, "TRN", "SAT"))
        deno = lookup(idx, lambda vals: table[np.minimum(np.rint(vals).astype(np.int64), size - 1)])
    return [d * deno * float(g) + float(b) for d, g, b in zip(diff, scale, bias, strict=True)]


def _layernorm_torch(x: torch.Tensor, cfg: LayerNormConfig, table: torch.Tensor, scale: torch.Tensor,
                     bias: torch.Tensor) -> torch.Tensor:
    """:func:`layernorm_np` in torch (float64 tensors on one device)."""
    a = cfg.accum_t
    xa = a.quantize_torch(x)
    k_inv = cfg.k_inv()
    mean = a.quantize_torch(_sequential_sum(xa.unbind(-1), a.quantize_torch) * k_inv)
    diff = a.quantize_torch(xa - mean.unsqueeze(-1))
    sq = a.quantize_torch(diff * diff)
    var = a.quantize_torch(_sequential_sum(sq.unbind(-1), a.quantize_torch) * k_inv)
    index = torch.trunc(var * (cfg.table_size * 2.0 ** cfg.table_range_power2)).clamp(0, cfg.table_size - 1)
    return diff * table[index.to(torch.int64)].unsqueeze(-1) * scale + bias


class QLayerNorm(QLayer):
    """LayerNorm over the last axis, exactly hls4ml's ``LayerNormalization`` (module docstring).

    Args:
        normalized_shape: features normalized together (the last axis).
        eps: read as hls4ml's ``epsilon_power_of_10 = -round(log10(eps))`` (>= 1); the table's first entry is
            ``1/sqrt(10**-p)``.
        accum_t: every intermediate (sum, mean, differences, squares, variance). Default
            ``ap_fixed<18,6,AP_RND,AP_SAT>`` (hls4ml's default is ``ap_fixed<14,4,AP_RND_CONV,AP_SAT>``).
        table_t: the 1/sqrt table's entries. Default ``ap_ufixed<18,9,AP_RND,AP_SAT>`` (hls4ml's:
            ``ap_ufixed<8,5,AP_RND_CONV,AP_SAT>``).
        table_size: entries (any count >= 1, at most :data:`MAX_TABLE_SIZE`). Default 4096 (hls4ml's).
        table_range_power2: the table covers variances in ``[0, 2**-table_range_power2)``; larger ones use the
            last entry. Default 0 (hls4ml's).
        input_quantizer (data_T), weight_quantizer (gamma: scale_t), bias_quantizer (beta: bias_t),
        output_quantizer (res_T): quantizer specs; defaults as :class:`~hwnas.nn.QLinear`'s, with an output
            quantizer (``DEFAULT_ACTIVATION``) since the exact output is too wide for float32.
    """

    def __init__(
        self,
        normalized_shape: int,
        eps: float = 1e-5,
        *,
        accum_t: Any = (1, 5, 12, "RND", "SAT"),
        table_t: Any = (0, 9, 9, "RND", "SAT"),
        table_size: int = 4096,
        table_range_power2: int = 0,
        input_quantizer: QuantizerSpec = DEFAULT_ACTIVATION,
        weight_quantizer: QuantizerSpec = DEFAULT_WEIGHT,
        bias_quantizer: QuantizerSpec = DEFAULT_BIAS,
        output_quantizer: QuantizerSpec = DEFAULT_ACTIVATION,
    ) -> None:
        super().__init__()
        if isinstance(normalized_shape, tuple | list):
            if len(normalized_shape) != 1:
                raise QuantizationError(f"normalized_shape: QLayerNorm normalizes the last axis only, got "
                                        f"{tuple(normalized_shape)}")
            normalized_shape = normalized_shape[0]
        n = int(normalized_shape)
        if n < 1:
            raise QuantizationError(f"normalized_shape: must be >= 1, got {normalized_shape!r}")
        self.normalized_shape = (n,)
        if not (isinstance(eps, int | float) and 0 < eps < 1):
            raise QuantizationError(f"eps: must be in (0, 1), got {eps!r}")
        p = -round(math.log10(eps))
        if p < 1:
            raise QuantizationError(f"eps: {eps!r} rounds to 10**{-p}; hls4ml needs eps <= 10**-1")
        self.epsilon_power_of_10 = int(p)
        self.eps = 10.0 ** -p
        if isinstance(table_range_power2, bool) or not isinstance(table_range_power2, int) or table_range_power2 < 0:
            raise QuantizationError(f"table_range_power2: must be an integer >= 0, got {table_range_power2!r}")
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n))
        self.layer_config = LayerNormConfig(
            n=n, accum_t=FixedType.parse(accum_t, "accum_t"), table_t=FixedType.parse(table_t, "table_t"),
            table_size=_check_table_size("table_size", table_size, power_of_two=False),
            table_range_power2=int(table_range_power2), epsilon_power_of_10=self.epsilon_power_of_10)
        self.layer_config.check()
        self._init_quantizers(input_quantizer, weight_quantizer, bias_quantizer, output_quantizer)
        self._tables: dict[str, torch.Tensor] = {}

    def _accepts_shape(self, shape: tuple[int, ...]) -> bool:
        return bool(shape) and shape[-1] == self.normalized_shape[0] and super()._accepts_shape(shape)

    def config(self) -> LayerNormConfig:
        """The layer's types and sizes."""
        return self.layer_config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The quantized input through ``layernorm_1d``, then the output quantizer (module docstring)."""
        if x.shape[-1] != self.normalized_shape[0]:
            raise QuantizationError(f"QLayerNorm: the last axis has {x.shape[-1]} features, expected "
                                    f"{self.normalized_shape[0]}")
        x = self._qin(x)
        w = self.quantized_weight()
        b = self.quantized_bias()
        assert w is not None and b is not None
        cfg = self.layer_config
        key = str(x.device)
        if key not in self._tables:
            self._tables[key] = torch.as_tensor(np.array(cfg.table()), dtype=torch.float64, device=x.device)
        with torch.no_grad():
            y = _layernorm_torch(x.detach().to(torch.float64), cfg, self._tables[key],
                                 w.detach().to(torch.float64), b.detach().to(torch.float64))
        if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad or b.requires_grad):
            smooth = F.layer_norm(x, self.normalized_shape, w, b, self.eps).to(torch.float64)
            y = y + (smooth - smooth.detach())  # straight-through to the float LayerNorm
        return self._qout(y).to(x.dtype)

    # -------------------------------------------------------------- costs
    def macs(self) -> int:
        """Per row: n squares, 2n output products and the two products by 1/n."""
        shape = self._require_shape()
        return _rows(shape) * (3 * shape[-1] + 2)

    def ebops(self, upstream: torch.Tensor | None = None) -> torch.Tensor:
        """Effective bit operations per sample (the table lookup is not counted).

        Per row: squares and sums at accum_t's width, the two products by 1/n, diff × table,
        (diff·table) × gamma (each element's width) and the bias additions.
        """
        shape = self._require_shape()
        cfg = self.layer_config
        a, t = cfg.accum_t.width, cfg.table_t.width
        n = shape[-1]
        bw = (self.weight_quantizer.element_bits().expand(n) if self.weight_quantizer is not None
              else torch.full((n,), 32.0, device=self.weight.device))
        per_row = (n * a * a + 2 * n * a + 2 * a * a + n * a * t) + ((a + t) * bw).sum() + n * (a + t)
        return per_row * _rows(shape)

    def bops(self, upstream: torch.Tensor | None = None) -> float:
        """MACs × accum_t width × the widest of table_t and gamma."""
        cfg = self.layer_config
        bw = float(self.weight_quantizer.element_bits().detach().max()) if self.weight_quantizer is not None else 32.0
        return float(self.macs() * cfg.accum_t.width * max(cfg.table_t.width, bw))
