"""The fixed-point quantizer module: (k, i, f) per group, static or learnable (HGQ).

Which elements share one (k, i, f) is decided by a :class:`~hwnas.quant.granularity.Granularity`; the
math lives in :func:`~hwnas.quant.fixed.quantize_fixed`. This module only owns the parameters, their
initialization from data, their constraints and the calibration of ranges.

Parameters and modes
--------------------
* ``f`` (fractional bits) is an ``nn.Parameter`` when ``learnable`` — trained with the HGQ surrogate
  gradient — and a buffer otherwise.
* ``i`` (integer bits) of an *activation* quantizer is trainable in the SAT modes when ``learnable``
  (gradients from the clipping bounds). In WRAP mode it is never trained: during training it grows to
  the smallest value that avoids any wrap-around on the data seen, and :func:`hwnas.quant.calibrate`
  sets it exactly from a data set. A *weight* quantizer's ``i`` (unless given) is re-derived from the
  weight on every call: the range of a constant is known, so it is never trained nor clipped.
* ``k`` (sign bit) is a buffer: ``signed=True``/``False``, or ``"auto"`` to take it from calibration data
  (1 where any negative value was seen).
* Initialization: unless ``i`` is given, it comes from the data the quantizer first sees (the weight at
  construction, the first activation batch otherwise) as the smallest ``i`` that holds the group's
  largest magnitude (per-parameter quantizers use the whole tensor's largest magnitude, so every element
  starts with headroom); then ``f = bits - k - i`` unless ``f`` is given. So a standard-initialized weight
  keeps ``bits`` significant bits per group and never collapses to zero by accident. A
  :class:`~hwnas.quant.modes.QuantizationWarning` is emitted when a whole non-zero tensor still
  quantizes to zero (checked at initialization and after calibration).
* A width ``k+i+f <= 0`` prunes the element (it quantizes to 0 and costs 0 bits).
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import torch
from torch import nn

from .base import Quantizer
from .fixed import _FixedQuant, _RoundQuant, code_integer_bits, minimal_integer_bits, quantize_fixed, sign_mode
from .granularity import Granularity, PerParameter, PerTensor, parse_granularity
from .modes import OverflowMode, QuantizationError, QuantizationWarning, parse_overflow, parse_rounding

__all__ = ["FixedPointQuantizer"]

Signed = bool | Literal["auto"]


def _check_int(value: Any, name: str, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or float(value) != int(value):
        raise QuantizationError(f"{name}: must be an integer, got {value!r}")
    v = int(value)
    if low is not None and v < low:
        raise QuantizationError(f"{name}: must be >= {low}, got {v}")
    if high is not None and v > high:
        raise QuantizationError(f"{name}: must be <= {high}, got {v}")
    return v


class _Width(torch.autograd.Function):
    """``relu(k + round(i) + round(f))`` with a straight-through gradient (1 where the width is positive)."""

    @staticmethod
    def forward(ctx, k, i, f):  # type: ignore[override]
        width = torch.relu(k + torch.round(i) + torch.round(f))
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            ctx.save_for_backward(width > 0)
        return width

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (alive,) = ctx.saved_tensors
        gw = g * alive
        return None, (gw if ctx.needs_input_grad[1] else None), (gw if ctx.needs_input_grad[2] else None)


class FixedPointQuantizer(Quantizer):
    """Fixed-point (k, i, f) quantizer exact to ``ap_fixed``; optionally learnable bit-widths (HGQ).

    Args:
        bits: initial total width ``k+i+f`` per group (used when ``f`` is not given), 0–32.
        i: integer bits excluding the sign; ``None`` derives it from the data first seen.
        f: fractional bits; ``None`` derives it as ``bits - k - i``.
        signed: sign bit ``k``: True, False, or ``"auto"`` (from calibration; 1 until then).
        round_mode: an ``ap_fixed`` rounding mode (``RND``, ``TRN``, ``RND_CONV`` ...).
        overflow_mode: ``SAT``, ``SAT_SYM``, ``SAT_ZERO`` or ``WRAP``.
        granularity: ``"tensor"``, ``"channel"`` (along ``axis``) or ``"parameter"``, or a Granularity.
        axis: channel axis of the element tensor for ``"channel"``.
        learnable: train ``f`` (and ``i`` in SAT modes) by gradient descent.
        f_range: inclusive bounds applied to ``f`` in the forward pass (learnable bits stay in range).
        i_range: inclusive bounds applied to ``i``.
        element_shape: shape of one element tensor, when known in advance (else taken at first use).
        batch_dims: 0 for weights, 1 for activations (normally set by the owning layer).
    """

    def __init__(
        self,
        bits: int | None = 8,
        *,
        i: int | None = None,
        f: int | None = None,
        signed: Signed = True,
        round_mode: str = "RND",
        overflow_mode: str = "SAT",
        granularity: str | Granularity = "tensor",
        axis: int = 0,
        learnable: bool = True,
        f_range: tuple[int, int] = (-16, 24),
        i_range: tuple[int, int] = (-24, 24),
        element_shape: tuple[int, ...] | None = None,
        batch_dims: int = 0,
    ) -> None:
        super().__init__()
        self.round_mode = parse_rounding(round_mode)
        self.overflow_mode = parse_overflow(overflow_mode)
        self.granularity = parse_granularity(granularity, axis)
        if signed not in (True, False, "auto"):
            raise QuantizationError(f"signed: must be True, False or 'auto', got {signed!r}")
        self.signed: Signed = signed
        if bits is None and f is None:
            raise QuantizationError("bits: give the initial width `bits` or the fractional bits `f`")
        self.init_bits = None if bits is None else _check_int(bits, "bits", 0, 32)
        self.init_i = None if i is None else _check_int(i, "i", -64, 64)
        self.init_f = None if f is None else _check_int(f, "f", -64, 64)
        k0 = 0 if signed is False else 1
        if self.init_i is not None and self.init_f is not None and k0 + self.init_i + self.init_f < 0:
            raise QuantizationError(
                f"i, f: width k+i+f = {k0}+{self.init_i}+{self.init_f} is negative; bits must be >= 0"
            )
        if self.init_bits is not None and self.init_f is not None and self.init_i is not None:
            if self.init_bits != k0 + self.init_i + self.init_f:
                raise QuantizationError(
                    f"bits: {self.init_bits} disagrees with k+i+f = {k0}+{self.init_i}+{self.init_f}"
                )
        self.f_range = (_check_int(f_range[0], "f_range[0]"), _check_int(f_range[1], "f_range[1]"))
        self.i_range = (_check_int(i_range[0], "i_range[0]"), _check_int(i_range[1], "i_range[1]"))
        if self.f_range[0] > self.f_range[1] or self.i_range[0] > self.i_range[1]:
            raise QuantizationError("f_range/i_range: lower bound above upper bound")
        self.is_learnable = bool(learnable)
        self.train_i = self.is_learnable and self.overflow_mode is not OverflowMode.WRAP
        self.batch_dims = _check_int(batch_dims, "batch_dims", 0, 1)
        self.label = "FixedPointQuantizer"
        self._checked = False
        if self.is_learnable:
            self.f = nn.UninitializedParameter()
        else:
            self.register_buffer("f", nn.UninitializedBuffer())
        if self.train_i:
            self.i = nn.UninitializedParameter()
        else:
            self.register_buffer("i", nn.UninitializedBuffer())
        self.register_buffer("k", nn.UninitializedBuffer())
        self._k_mode = 2  # see hwnas.quant.fixed.sign_mode; set whenever k changes
        self._calib_i: torch.Tensor | None = None
        self._calib_neg: torch.Tensor | None = None
        if element_shape is not None:
            self._materialize(tuple(element_shape))

    # ------------------------------------------------------------------ state
    @property
    def learnable(self) -> bool:
        """True when ``f`` is trained by gradient descent."""
        return self.is_learnable

    @property
    def materialized(self) -> bool:
        """True once the parameter tensors have a shape."""
        return not isinstance(self.k, nn.parameter.UninitializedTensorMixin)

    def _settle_i(self) -> None:
        """Decide, once the role is known, whether ``i`` is trained: only for SAT-mode activations.

        A weight's range is known exactly from the weight, so a weight quantizer's ``i`` always follows
        the weight (unless given) instead of being trained and clipping the weight as it grows.
        """
        self.train_i = self.is_learnable and self.overflow_mode is not OverflowMode.WRAP and self.batch_dims == 1
        current = self._parameters.get("i")
        if current is None:
            current = self._buffers["i"]
        is_param = isinstance(current, nn.Parameter)
        if self.train_i == is_param:
            return
        if isinstance(current, nn.parameter.UninitializedTensorMixin):
            where = {"device": current.device, "dtype": current.dtype}
            new = nn.UninitializedParameter(**where) if self.train_i else nn.UninitializedBuffer(**where)
        else:
            new = nn.Parameter(current.detach().clone()) if self.train_i else current.detach().clone()
        self._parameters.pop("i", None)
        self._buffers.pop("i", None)
        if self.train_i:
            self.i = new
        else:
            self.register_buffer("i", new)

    def _materialize(self, element_shape: tuple[int, ...], device: torch.device | None = None) -> None:
        """Shape ``k``, ``i``, ``f`` for elements of ``element_shape`` (on ``device``; None: where they are)."""
        self._settle_i()
        pshape = self.granularity.shape(element_shape)
        for name in ("f", "i", "k"):
            getattr(self, name).materialize(pshape, device=device)
        with torch.no_grad():
            self.k.fill_(0.0 if self.signed is False else 1.0)
            self.i.fill_(float(self.init_i) if self.init_i is not None else 0.0)
            if self.init_f is not None:
                self.f.fill_(float(self.init_f))
        self._needs_data_init = self.init_i is None or self.init_f is None
        self._k_mode = sign_mode(self.k)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):  # type: ignore[override]
        if not self.materialized and prefix + "k" in state_dict:
            pshape = tuple(state_dict[prefix + "k"].shape)
            self._settle_i()
            for name in ("f", "i", "k"):
                getattr(self, name).materialize(pshape)
        self._needs_data_init = False
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if self.materialized:
            self._k_mode = sign_mode(self.k)

    @torch.no_grad()
    def _init_from_data(self, x: torch.Tensor) -> None:
        """Set ``i`` (and ``f`` from ``bits``) from the magnitudes in ``x``."""
        k = self.k
        if self.init_i is None:
            # smallest i holding the group's largest magnitude at the finest f we could use
            # per-parameter groups start from the whole tensor's range: a weight initialized at its own
            # magnitude would saturate as soon as training grows it
            init_gran = PerTensor() if isinstance(self.granularity, PerParameter) else self.granularity
            absmax = init_gran.reduce(x.detach().abs(), "amax", self.batch_dims).to(self.k.dtype)
            absmax = absmax.expand(self.k.shape)
            f_probe = torch.full_like(absmax, float(self.f_range[1]))
            i_new = minimal_integer_bits(absmax, torch.zeros_like(k), f_probe, self.round_mode)
            i_new = torch.where(absmax > 0, i_new, torch.zeros_like(i_new))  # all-zero group: range ±1
            self.i.copy_(i_new.clamp(*self.i_range))
        if self.init_f is None:
            self.f.copy_((float(self.init_bits) - k - self.i).clamp(*self.f_range))
        self._needs_data_init = False

    # ------------------------------------------------------------------ numerics
    def _kif(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(k, i, f), with trained parameters first projected into ``i_range``/``f_range``.

        The projection is in place, like a Keras constraint: a bit-width pushed past its bound stays at
        the bound instead of drifting where no gradient can bring it back.
        """
        with torch.no_grad():
            if self.is_learnable:
                self.f.clamp_(*self.f_range)
            if self.train_i:
                self.i.clamp_(*self.i_range)
        return self.k, self.i, self.f

    def kif(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Integer-valued (k, i, f) tensors in the parameter shape, as deployed (detached).

        For a weight quantizer whose ``i`` follows the weight, ``i`` is the one derived at the last call:
        run the layer (or ``layer.quantized_weight()``) after changing the weight and before reading it.
        """
        k, i, f = self._kif()
        return k.detach().clone(), torch.round(i.detach()), torch.round(f.detach())

    def element_bits(self) -> torch.Tensor:
        """Width ``max(k+i+f, 0)`` per group; differentiable in ``i``/``f`` (straight-through rounding)."""
        k, i, f = self._kif()
        return _Width.apply(k, i, f)

    @property
    def tracks_i(self) -> bool:
        """True when ``i`` follows the data (not given, not trained): WRAP mode or a static quantizer."""
        return self.init_i is None and not self.train_i

    @property
    def _moves_f_with_i(self) -> bool:
        """A static quantizer of total width ``bits`` whose ``f`` is not given: ``f = bits - k - i``."""
        return not self.is_learnable and self.init_f is None and self.init_bits is not None

    def _static_f(self, k: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """The fractional bits of a static quantizer (:attr:`_moves_f_with_i`) with ``k`` and ``i``."""
        return (float(self.init_bits) - k - i).clamp(*self.f_range)

    def _static_integer_bits(self, x: torch.Tensor, k: torch.Tensor, floor: torch.Tensor | None) -> torch.Tensor:
        """The smallest ``i`` (per group, at least ``floor``) that holds ``x`` once rounded at ``f = bits-k-i``.

        i and f move together, so the answer comes from the data alone: the integer bits of the exact values,
        then one more where rounding at the resulting f carries into a new power of two. It never depends on
        the quantizer's current f (rounding at a stale f can flush small values to 0, or carry, and
        mis-measure; repeated calls could flip i back and forth).
        """
        raw = minimal_integer_bits(x, k, torch.full_like(k, 60.0), "TRN", prune_zeros=True)
        raw = self.granularity.reduce(raw, "amax", self.batch_dims)
        if floor is not None:
            raw = torch.maximum(floor, raw)
        raw = raw.clamp(*self.i_range)
        need = minimal_integer_bits(x, k, self._static_f(k, raw), self.round_mode, prune_zeros=True)
        return torch.maximum(raw, self.granularity.reduce(need, "amax", self.batch_dims)).clamp(*self.i_range)

    def _track(self, x: torch.Tensor, grow_only: bool) -> None:
        """Set ``i`` to the smallest value that holds ``x`` (never below its current value if ``grow_only``).

        A static quantizer keeps its total width ``bits`` by moving ``f`` with ``i``.
        """
        with torch.no_grad():
            k, _, f = self._kif()
            x = x.detach()
            if self._moves_f_with_i:
                self.i.copy_(self._static_integer_bits(x, k, self.i if grow_only else None))
                self.f.copy_(self._static_f(self.k, self.i))
                return
            need = minimal_integer_bits(x, k, f, self.round_mode, prune_zeros=True)
            need = self.granularity.reduce(need, "amax", self.batch_dims)
            if grow_only:
                need = torch.maximum(self.i, need)
            self.i.copy_(need.clamp(*self.i_range))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quantize ``x`` (see :func:`hwnas.quant.quantize_fixed`).

        A weight quantizer (``batch_dims == 0``) whose ``i`` follows the data re-derives it from the
        weight on every call, so the range always matches the current weight, in training and in eval.
        """
        if not self.materialized:
            if x.dim() < self.batch_dims:
                raise QuantizationError(f"{self.label}: input has no batch dimension (shape {tuple(x.shape)})")
            self._materialize(tuple(x.shape[self.batch_dims:]), device=x.device)  # where the data is
        if self._needs_data_init:
            self._init_from_data(x)
        if self.tracks_i and self.batch_dims == 0:
            if self.is_learnable:
                q = self._weight_forward(x)
                if q is not None:
                    return q
            self._track(x, grow_only=False)
        elif self.calibrating:
            k, f = self._observe(x)
            # ranges are being measured: round only (at the f this batch implies), never wrap or clip
            return quantize_fixed(x, torch.ones_like(k), torch.full_like(k, 60.0), f, self.round_mode, "SAT")
        elif self.tracks_i and self.training:
            self._track(x, grow_only=True)
        k, i, f = self._kif()
        q = _FixedQuant.apply(x, k, i, f, self.round_mode, self.overflow_mode, self._k_mode)
        if not self._checked:
            self._checked = True
            self._check_collapse(x, q)
        return q

    def _weight_forward(self, x: torch.Tensor) -> torch.Tensor | None:
        """Fast path for a learnable weight whose ``i`` follows it: round once, derive ``i`` from the codes.

        With ``i`` the smallest value that holds every element, no element can overflow, so quantization
        is rounding alone. Returns None (use the general path) when ``i_range`` would cut that ``i``.
        """
        k, _, f = self._kif()
        q, m = _RoundQuant.apply(x, f, self.round_mode)
        with torch.no_grad():
            need = code_integer_bits(m, k, torch.round(f.detach()), self._k_mode)
            need = self.granularity.reduce(need, "amax", 0)
            clipped = need.clamp(*self.i_range)
            if not torch.equal(clipped, need):
                return None
            self.i.copy_(need)
        if not self._checked:
            self._checked = True
            self._check_collapse(x, q)
        return q

    def _check_collapse(self, x: torch.Tensor, q: torch.Tensor) -> None:
        with torch.no_grad():
            if bool((q == 0).all()) and bool((x != 0).any()):
                warnings.warn(
                    f"{self.label}: every element of a non-zero tensor quantizes to 0 "
                    f"(bits={self.element_bits().max().item():.0f}); check i/f or the data range",
                    QuantizationWarning,
                    stacklevel=3,
                )

    # ------------------------------------------------------------------ calibration
    def begin_calibration(self) -> None:
        """Start recording the range needed by the data (sets ``i`` in WRAP mode, ``k`` when auto)."""
        super().begin_calibration()
        self._calib_i = None
        self._calib_neg = None

    @torch.no_grad()
    def _observe(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Record the integer bits and signs ``x`` needs; return the (k, f) to round this batch at.

        A static quantizer whose range follows the data measures ``i`` with its own rule (f moves with i), so
        one calibration pass gives the final range whatever f it started from, and its output is rounded at
        the f this batch implies (downstream quantizers then measure values close to the calibrated ones).
        Anything else is measured at its current f.
        """
        if not bool(torch.isfinite(x).all()):
            raise QuantizationError(f"{self.label}: calibration data contains NaN or infinity")
        k, _, f = self._kif()
        kk = torch.ones_like(k) if self.signed == "auto" else k
        if self.tracks_i and self._moves_f_with_i:
            need = self._static_integer_bits(x, kk, None)
            f = self._static_f(kk, need)
        else:
            need = minimal_integer_bits(x, kk, f, self.round_mode, prune_zeros=True)
            need = self.granularity.reduce(need, "amax", self.batch_dims)
        neg = self.granularity.reduce((x < 0).to(x.dtype), "amax", self.batch_dims)
        self._calib_i = need if self._calib_i is None else torch.maximum(self._calib_i, need)
        self._calib_neg = neg if self._calib_neg is None else torch.maximum(self._calib_neg, neg)
        return k, f

    @torch.no_grad()
    def end_calibration(self) -> None:
        """Apply the recorded ranges: ``k`` when ``signed="auto"``; ``i`` unless it was given or is trained.

        WRAP quantizers and static quantizers get the smallest ``i`` that avoids overflow on the data (a
        static one keeps its total width ``bits``). Learnable SAT quantizers keep their trained ``i``.
        """
        super().end_calibration()
        if self._calib_i is None:
            return
        if self.signed == "auto":
            self.k.copy_(self._calib_neg)
            self._k_mode = sign_mode(self.k)
        if self.tracks_i:
            # WRAP, or a static quantizer whose range was only guessed from the first batch
            self.i.copy_(self._calib_i.clamp(*self.i_range))
            if not self.is_learnable and self.init_f is None:
                self.f.copy_(self._static_f(self.k, self.i))
        self._calib_i = None
        self._calib_neg = None
        self._checked = False

    def describe(self) -> str:
        """E.g. ``fixed RND/SAT per-parameter, bits 3.2±1.1 (0–8), learnable``."""
        if not self.materialized:
            return f"fixed {self.round_mode.value}/{self.overflow_mode.value} {self.granularity.describe()}"
        b = self.element_bits().detach()
        return (
            f"fixed {self.round_mode.value}/{self.overflow_mode.value} {self.granularity.describe()}, "
            f"bits {b.float().mean():.2f}±{b.float().std() if b.numel() > 1 else 0:.2f} "
            f"({b.min():.0f}–{b.max():.0f}){', learnable' if self.is_learnable else ''}"
        )
