"""Fixed-point quantization in (k, i, f) form, exact to ``ap_fixed``, with HGQ surrogate gradients.

``quantize_fixed(x, k, i, f, round_mode, overflow_mode)`` returns the value ``x`` takes when assigned to
``ap_fixed<k+i+f, k+i, round_mode, overflow_mode>`` (``ap_ufixed`` when ``k == 0``); ``k``, ``i``, ``f``
are tensors broadcastable to ``x`` and may hold non-integer values, which are rounded half-to-even first.
Elements whose width ``k+i+f`` is 0 or less are pruned: they quantize to 0.

Exactness: results equal ``ap_fixed`` whenever ``x * 2**f`` is exactly representable in ``x``'s dtype and
below 2**24 (float32) or 2**53 (float64) in magnitude, which covers every input a width ≤ 24 quantizer can
keep. The reference and the g++ check live in :mod:`hwnas.quant.reference` and ``tests/``.

Gradients (HGQ, Sun et al., §3.1–3.2):

* ``x``: straight-through inside the representable range, 0 where a SAT mode clips.
* ``f``: the surrogate ∂δ/∂f = −ln2·δ with δ = x − q(x), i.e. ∂q/∂f = ln2·δ; elements clipped by a SAT
  bound pass none (their error is governed by ``i``).
* ``i``: only through the SAT bounds (∂2^i/∂i = ln2·2^i); WRAP gives none (ranges come from calibration).
* pruned elements (width ≤ 0) pass the surrogate gradient to ``f`` with δ = x, so bits can grow back.
"""

from __future__ import annotations

import math
import os
import warnings

import torch

from .modes import OverflowMode, RoundingMode, parse_overflow, parse_rounding

__all__ = [
    "code_integer_bits",
    "minimal_integer_bits",
    "quantize_fixed",
    "round_to_codes",
    "sign_mode",
    "use_compiled_kernels",
]

_LN2 = math.log(2.0)


def _round_half_up(y: torch.Tensor) -> torch.Tensor:
    """Nearest integer, ties towards +inf, exactly: ``floor(2y) - floor(y)``.

    Equal to ``floor(y) + floor(2·frac(y))``; every step is exact in floating point (doubling is), unlike
    ``floor(y + 0.5)``, which rounds the largest float below 0.5 up to 1. Only arithmetic ops, no boolean
    masks: those vectorize well on CPU.
    """
    return torch.floor(y * 2.0) - torch.floor(y)


def round_to_codes(y: torch.Tensor, mode: RoundingMode) -> torch.Tensor:
    """Round ``y`` (a value in units of the LSB) to integers with an ``ap_fixed`` rounding mode (exact)."""
    if mode is RoundingMode.TRN:
        return torch.floor(y)
    if mode is RoundingMode.RND:
        return _round_half_up(y)
    if mode is RoundingMode.RND_CONV:
        return torch.round(y)  # half to even, exact
    if mode is RoundingMode.TRN_ZERO:
        return torch.trunc(y)
    if mode is RoundingMode.RND_MIN_INF:  # ties towards -inf: the mirror image, ceil(2y) - ceil(y)
        return torch.ceil(y * 2.0) - torch.ceil(y)
    if mode is RoundingMode.RND_INF:  # ties away from zero: ties-up on |y|, sign restored
        return torch.sign(y) * _round_half_up(y.abs())
    if mode is RoundingMode.RND_ZERO:  # ties towards zero: ties-down on |y|, sign restored
        return torch.sign(y) * -_round_half_up(-y.abs())
    raise AssertionError(mode)  # pragma: no cover - enum is closed


def _sum_to(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a broadcast result back to ``shape`` (the inverse of broadcasting, for gradients)."""
    if t.shape == shape:
        return t
    return t.sum_to_size(shape) if len(shape) else t.sum()


# ---------------------------------------------------------------------------------------------------
# Data-shaped kernels. Pure functions of tensors (plus constant modes), so the same code runs eagerly or,
# when enabled with :func:`use_compiled_kernels`, fused by ``torch.compile`` into one loop per call.


def _k_sat_forward(x, scale, inv_scale, lo, hi, rmode: RoundingMode):
    q_round = round_to_codes(x * scale, rmode) * inv_scale
    q = torch.clamp(q_round, lo, hi)
    return q, q_round - q  # over: > 0 clipped at the top, < 0 at the bottom, 0 inside


def _k_wrap_forward(x, scale, inv_scale_keep, modulus, half, rmode: RoundingMode):
    m = round_to_codes(x * scale, rmode)
    m = m - modulus * torch.floor((m + half) / modulus)
    return m * inv_scale_keep


def _k_sat_backward(g, x, q, over, keep, k, k_mode: int):
    # side: +1 clipped at the top, -1 at the bottom, 0 inside or pruned
    side = torch.sign(over) * keep
    g_inside = g * (1.0 - side.abs())
    g_f = g_inside * (x - q)
    if k_mode == 1:  # all signed: ∂lo/∂i = -ln2·2^i
        d_side = side
    elif k_mode == 0:  # all unsigned: the bottom bound is 0 and does not move
        d_side = torch.relu(side)
    else:
        d_side = torch.relu(side) - k * torch.relu(-side)
    return g_inside, g_f, g * d_side


_COMPILE = {"enabled": os.environ.get("HWNAS_COMPILE_QUANT", "0") == "1", "min_numel": 1 << 15}
_COMPILED: dict[object, object] = {}


def use_compiled_kernels(enabled: bool = True, min_numel: int = 1 << 15) -> None:
    """Fuse the quantizer's data-shaped work with ``torch.compile`` (off by default; env HWNAS_COMPILE_QUANT=1).

    Only tensors with at least ``min_numel`` elements use the fused kernels (below that, a compiled call
    costs more than it saves). The first call of each kernel compiles it (~10 s, cached on disk by
    torch's inductor); results are identical to the eager kernels. If compilation fails (no C++
    compiler), hwnas warns once and stays eager.
    """
    _COMPILE["enabled"] = bool(enabled)
    _COMPILE["min_numel"] = int(min_numel)


def _run(kernel, x: torch.Tensor, *args):
    if _COMPILE["enabled"] and x.numel() >= _COMPILE["min_numel"]:
        fused = _COMPILED.get(kernel)
        if fused is None:
            fused = _COMPILED[kernel] = torch.compile(kernel, dynamic=True)
        try:
            return fused(x, *args)
        except Exception as err:
            warnings.warn(f"hwnas: fused quantizer kernels unavailable ({type(err).__name__}: {err}); "
                          "using eager kernels", RuntimeWarning, stacklevel=2)
            _COMPILE["enabled"] = False
    return kernel(x, *args)


class _FixedQuant(torch.autograd.Function):
    """Fake quantization with the HGQ surrogate gradients (see module docstring).

    Written for speed on CPU: everything shaped like the (small) parameter tensors is computed apart
    from the few passes over the (large) data tensor, and data-shaped work uses only arithmetic ops
    (boolean masks and ``torch.where`` are several times slower per element than a multiply).
    """

    @staticmethod
    def forward(ctx, x, k, i_raw, f_raw, rmode, omode, k_mode):  # type: ignore[override]
        # ---- parameter-shaped (small) tensors
        i = torch.round(i_raw)
        f = torch.round(f_raw)
        mag = i + f  # magnitude bits
        keep = ((k + mag) > 0).to(x.dtype)  # 0 for pruned elements
        scale = torch.exp2(f)
        inv_scale = torch.reciprocal(scale)
        over = None
        if omode is OverflowMode.WRAP:
            modulus = torch.exp2(k + mag)
            q = _run(_k_wrap_forward, x, scale, inv_scale * keep, modulus, modulus * 0.5 * k, rmode)
        else:
            two_i = torch.exp2(i)
            hi = (two_i - inv_scale) * keep
            if omode is OverflowMode.SAT_SYM:
                # ap_fixed<1,..> keeps its one negative code under SAT_SYM (see reference.py)
                lo = torch.where(mag > 0, -k * hi, -k * two_i * keep)
            else:
                lo = -k * two_i * keep
            if omode is OverflowMode.SAT_ZERO:
                q_round = round_to_codes(x * scale, rmode) * inv_scale
                q = torch.where((q_round > hi) | (q_round < lo), torch.zeros((), dtype=x.dtype, device=x.device),
                                q_round)
            else:
                q, over = _run(_k_sat_forward, x, scale, inv_scale, lo, hi, rmode)
        if any(ctx.needs_input_grad):
            ctx.shapes = (i_raw.shape, f_raw.shape)
            ctx.k_mode = k_mode
            ctx.save_for_backward(x, q, keep, over, i, k)
        return q

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        x, q, keep, over, i, k = ctx.saved_tensors
        i_shape, f_shape = ctx.shapes
        gx = gi = gf = None
        if over is None:
            # WRAP / SAT_ZERO: nothing clips; x passes straight through and f gets ln2·(x − q) everywhere
            # (for a pruned element q = 0, so δ = x and its bits can grow back)
            if ctx.needs_input_grad[0]:
                gx = g
            if ctx.needs_input_grad[3]:
                gf = _sum_to(g * (x - q), f_shape) * _LN2
            return gx, None, None, gf, None, None, None
        g_inside, g_f, g_i = _run(_k_sat_backward, g, x, q, over, keep, k, ctx.k_mode)
        if ctx.needs_input_grad[0]:
            gx = g_inside
        if ctx.needs_input_grad[3]:
            gf = _sum_to(g_f, f_shape) * _LN2
        if ctx.needs_input_grad[2]:
            # ∂hi/∂i = ln2·2^i at the top, ∂lo/∂i = −k·ln2·2^i at the bottom
            gi = _sum_to(g_i, i_shape) * (_LN2 * torch.exp2(i))
        return gx, None, gi, gf, None, None, None


class _RoundQuant(torch.autograd.Function):
    """Rounding to ``f`` fractional bits with no overflow handling, for ranges known to hold every element.

    Returns the quantized values and (non-differentiable) the integer codes. Gradients: straight-through
    for ``x``, HGQ's surrogate ln2·(x − q) for ``f``.
    """

    @staticmethod
    def forward(ctx, x, f_raw, rmode):  # type: ignore[override]
        scale = torch.exp2(torch.round(f_raw))
        m = round_to_codes(x * scale, rmode)
        q = m / scale
        ctx.mark_non_differentiable(m)
        if any(ctx.needs_input_grad):
            ctx.f_shape = f_raw.shape
            ctx.save_for_backward(x, q)
        return q, m

    @staticmethod
    def backward(ctx, g, _gm):  # type: ignore[override]
        x, q = ctx.saved_tensors
        gf = _sum_to(g * (x - q), ctx.f_shape) * _LN2 if ctx.needs_input_grad[1] else None
        return g, gf, None


def sign_mode(k: torch.Tensor) -> int:
    """1 when every sign bit in ``k`` is 1, 0 when every one is 0, 2 when mixed (lets kernels specialize)."""
    if bool((k == 1).all()):
        return 1
    return 0 if bool((k == 0).all()) else 2


def code_integer_bits(m: torch.Tensor, k: torch.Tensor, f: torch.Tensor, k_mode: int = 2) -> torch.Tensor:
    """Smallest ``i`` per element that holds integer code ``m`` (value ``m·2^-f``) with sign bit ``k``.

    A code of 0 gets ``i = -f - k`` (width 0: pruned). Negative codes of unsigned elements are ignored
    (they are not representable). Uses the exact binary exponent of the code, no floating-point log.
    ``k_mode`` (see :func:`sign_mode`) only selects a shorter formula; the result is the same.
    """
    # bit length of m >= 0 is its binary exponent; a negative code needs the bit length of -m - 1
    if k_mode == 1:
        v = (m + 0.5).abs() - 0.5
    elif k_mode == 0:
        v = torch.relu(m)
    else:
        v = k * ((m + 0.5).abs() - 0.5) + (1.0 - k) * torch.relu(m)
    bitlen = torch.frexp(v).exponent.to(m.dtype)
    if k_mode == 0:
        return bitlen - f
    return bitlen - f - k * (m == 0).to(m.dtype)


def quantize_fixed(
    x: torch.Tensor,
    k: torch.Tensor | float,
    i: torch.Tensor | float,
    f: torch.Tensor | float,
    round_mode: str | RoundingMode = "TRN",
    overflow_mode: str | OverflowMode = "WRAP",
) -> torch.Tensor:
    """Quantize ``x`` to ``ap_fixed<k+i+f, k+i, round_mode, overflow_mode>`` (see the module docstring).

    ``k``, ``i``, ``f`` broadcast against ``x``; gradients reach ``x``, ``i`` and ``f`` when they require it.
    """
    rmode = parse_rounding(round_mode)
    omode = parse_overflow(overflow_mode)
    dt = x.dtype
    k, i, f = (torch.as_tensor(v, dtype=dt, device=x.device) for v in (k, i, f))
    return _FixedQuant.apply(x, k, i, f, rmode, omode, sign_mode(k))


def minimal_integer_bits(
    x: torch.Tensor,
    k: torch.Tensor,
    f: torch.Tensor,
    round_mode: str | RoundingMode = "TRN",
    prune_zeros: bool = False,
) -> torch.Tensor:
    """Per element, the smallest ``i`` for which ``x`` (rounded with ``f`` fractional bits) does not overflow.

    For a non-negative rounded value ``q`` that is ``ceil(log2(q + 2**-f))``; for a negative one (signed
    only) ``ceil(log2(-q))``; computed from the integer codes by :func:`code_integer_bits`.
    Unsigned elements (``k == 0``) that are negative are not representable at all: they saturate or wrap,
    so their magnitude is ignored here. With ``prune_zeros`` an element that rounds to 0 gets
    ``i = -f - k`` (width 0: pruned) instead of the ``i = -f`` that merely represents 0.
    """
    f = torch.round(f)
    k = torch.as_tensor(k, dtype=x.dtype, device=x.device)
    m = round_to_codes(x * torch.exp2(f), parse_rounding(round_mode))
    need = code_integer_bits(m, k, f)
    if not prune_zeros:
        need = need + k * (m == 0).to(x.dtype)  # a 0 only needs to be representable: i = -f
    return need
