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

import torch

from .modes import OverflowMode, RoundingMode, parse_overflow, parse_rounding

__all__ = ["minimal_integer_bits", "quantize_fixed", "round_to_codes"]

_LN2 = math.log(2.0)


def round_to_codes(y: torch.Tensor, mode: RoundingMode) -> torch.Tensor:
    """Round ``y`` (a value in units of the LSB) to integers with an ``ap_fixed`` rounding mode.

    Written as floor + fractional-part decisions, which is exact in floating point (``y + 0.5`` is not).
    """
    if mode is RoundingMode.TRN:
        return torch.floor(y)
    if mode is RoundingMode.RND_CONV:
        return torch.round(y)  # half to even, exact
    fl = torch.floor(y)
    r = y - fl
    if mode is RoundingMode.RND:
        up = r >= 0.5
    elif mode is RoundingMode.RND_MIN_INF:
        up = r > 0.5
    elif mode is RoundingMode.TRN_ZERO:
        up = (r > 0) & (y < 0)
    elif mode is RoundingMode.RND_ZERO:
        up = (r > 0.5) | ((r == 0.5) & (y < 0))
    elif mode is RoundingMode.RND_INF:
        up = (r > 0.5) | ((r == 0.5) & (y > 0))
    else:  # pragma: no cover - enum is closed
        raise AssertionError(mode)
    return torch.where(up, fl + 1.0, fl)


def _sum_to(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a broadcast result back to ``shape`` (the inverse of broadcasting, for gradients)."""
    if t.shape == shape:
        return t
    return t.sum_to_size(shape) if len(shape) else t.sum()


class _FixedQuant(torch.autograd.Function):
    """Fake quantization with the HGQ surrogate gradients (see module docstring).

    Written for eager-mode speed: everything shaped like the (small) parameter tensors is computed
    separately from the few passes over the (large) data tensor; backward recomputes masks from the
    saved input and output instead of storing them.
    """

    @staticmethod
    def forward(ctx, x, k, i_raw, f_raw, rmode, omode):  # type: ignore[override]
        # ---- parameter-shaped (small) tensors
        i = torch.round(i_raw)
        f = torch.round(f_raw)
        mag = i + f  # magnitude bits
        keep = (k + mag) > 0
        scale = torch.exp2(f)
        inv_scale = torch.reciprocal(scale)
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        # ---- data-shaped (large) tensors
        m = round_to_codes(x * scale, rmode)
        if omode is OverflowMode.WRAP:
            modulus = torch.exp2(k + mag)
            half = modulus * 0.5 * k
            m = m - modulus * torch.floor((m + half) / modulus)
            q = torch.where(keep, m * inv_scale, zero)
        else:
            two_i = torch.exp2(i)
            hi = torch.where(keep, two_i - inv_scale, zero)
            if omode is OverflowMode.SAT_SYM:
                # ap_fixed<1,..> keeps its one negative code under SAT_SYM (see reference.py)
                lo = torch.where(mag > 0, -k * hi, torch.where(keep, -k * two_i, zero))
            else:
                lo = torch.where(keep, -k * two_i, zero)
            q_round = m * inv_scale
            if omode is OverflowMode.SAT_ZERO:
                q = torch.where((q_round > hi) | (q_round < lo), zero, q_round)
            else:
                q = torch.clamp(q_round, lo, hi)
        if any(ctx.needs_input_grad):
            ctx.omode = omode
            ctx.shapes = (i_raw.shape, f_raw.shape)
            # SAT: over > 0 clipped at the top, < 0 at the bottom, 0 inside
            over = q_round - q if omode in (OverflowMode.SAT, OverflowMode.SAT_SYM) else None
            ctx.save_for_backward(x, q, keep, over, i, k)
        return q

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        x, q, keep, over, i, k = ctx.saved_tensors
        i_shape, f_shape = ctx.shapes
        omode = ctx.omode
        zero = torch.zeros((), dtype=g.dtype, device=g.device)
        gx = gi = gf = None
        if omode is OverflowMode.WRAP or omode is OverflowMode.SAT_ZERO:
            # no clipping: x passes straight through; f gets the surrogate ln2·(x − q) everywhere
            # (for a pruned element q = 0, so δ = x and the bits can grow back)
            if ctx.needs_input_grad[0]:
                gx = g
            if ctx.needs_input_grad[3]:
                gf = _sum_to(g * (x - q), f_shape) * _LN2
            return gx, None, None, gf, None, None
        # SAT / SAT_SYM: an element is clipped when its rounded value differs from its output
        clipped = (over != 0) & keep
        if ctx.needs_input_grad[0]:
            gx = torch.where(clipped, zero, g)
        if ctx.needs_input_grad[3]:
            gf = _sum_to(torch.where(clipped, zero, g * (x - q)), f_shape) * _LN2
        if ctx.needs_input_grad[2]:
            # ∂hi/∂i = ln2·2^i at the top, ∂lo/∂i = −k·ln2·2^i at the bottom
            side = torch.where(over > 0, 1.0, torch.where(over < 0, -k, zero))
            gi = _sum_to(torch.where(keep, g * side, zero), i_shape) * (_LN2 * torch.exp2(i))
        return gx, None, gi, gf, None, None


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
    return _FixedQuant.apply(x, k, i, f, rmode, omode)


def minimal_integer_bits(
    x: torch.Tensor,
    k: torch.Tensor,
    f: torch.Tensor,
    round_mode: str | RoundingMode = "TRN",
    prune_zeros: bool = False,
) -> torch.Tensor:
    """Per element, the smallest ``i`` for which ``x`` (rounded with ``f`` fractional bits) does not overflow.

    For a non-negative rounded value ``q`` that is ``ceil(log2(q + 2**-f))``; for a negative one (signed
    only) ``ceil(log2(-q))``. Computed from the exact binary exponent, without floating-point ``log2``.
    Unsigned elements (``k == 0``) that are negative are not representable at all: they saturate or wrap,
    so their magnitude is ignored here. With ``prune_zeros`` an element that rounds to 0 gets
    ``i = -f - k`` (width 0: pruned) instead of the ``i = -f`` that merely represents 0.
    """
    f = torch.round(f)
    q = round_to_codes(x * torch.exp2(f), parse_rounding(round_mode)) * torch.exp2(-f)
    pos = torch.clamp(q, min=0.0) + torch.exp2(-f)
    neg = torch.where(k > 0, torch.clamp(-q, min=0.0), torch.zeros((), dtype=x.dtype))
    v = torch.maximum(pos, neg)
    mant, exp = torch.frexp(v)  # v = mant * 2**exp, 0.5 <= mant < 1
    need = torch.where(mant == 0.5, exp - 1, exp).to(x.dtype)
    if prune_zeros:
        need = torch.where(q == 0, -f - k, need)
    return need
