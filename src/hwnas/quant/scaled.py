"""Scaled-integer quantizers for post-training quantization (PTQ).

A :class:`ScaledIntQuantizer` maps a float tensor onto ``b``-bit integer codes with a float scale and an
integer zero point, ``q = (clamp(round_half_even(x / scale) + zp, qmin, qmax) - zp) * scale``, exactly as
ONNX ``QuantizeLinear``/``DequantizeLinear`` and :func:`hwnas.quant.reference.quantize_scaled_np` do
(float32 arithmetic, bit for bit). The symmetric signed scale follows the PTQ neural-receiver paper:
``scale = max|x| / (2**(b-1) - 1)``.

Weights (``batch_dims == 0``) get their range from the weight tensor itself on the first forward, so PTQ of
weights needs no data. Activations (``batch_dims == 1``) record statistics while calibrating (see
:class:`hwnas.quant.base.Quantizer`) and must be calibrated before they quantize anything.

:class:`Float16Quantizer` is the trivial half-precision baseline: a cast to ``float16`` and back.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .base import Quantizer
from .granularity import Granularity, PerChannel, PerTensor, parse_granularity
from .modes import QuantizationError

__all__ = ["Float16Quantizer", "ScaledIntQuantizer"]

_CALIBRATIONS = ("minmax", "percentile", "mse")
_MSE_GRID = 100
_MSE_ALPHA_MIN = 0.2


class _FakeQuantSTE(torch.autograd.Function):
    """Scaled-integer fake quantization with a clipped straight-through gradient."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int
    ) -> torch.Tensor:
        codes = torch.round(x.to(torch.float32) / scale) + zero_point
        out = (codes.clamp(qmin, qmax) - zero_point) * scale
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward((codes >= qmin) & (codes <= qmax))
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        (inside,) = ctx.saved_tensors
        zero = torch.zeros((), dtype=grad.dtype, device=grad.device)
        return torch.where(inside, grad, zero), None, None, None, None


class _CastFloat16STE(torch.autograd.Function):
    """Round to float16 and back, with an identity gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return x.half().to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad


def _quantile(sorted_rows: torch.Tensor, q: float) -> torch.Tensor:
    """Row-wise ``q``-th percentile (0..100) of row-sorted data, interpolated like ``np.percentile``."""
    n = sorted_rows.shape[1]
    pos = q / 100.0 * (n - 1)
    i0 = min(math.floor(pos), n - 1)
    i1 = min(i0 + 1, n - 1)
    w = pos - i0
    a = sorted_rows[:, i0]
    b = sorted_rows[:, i1]
    return a + (b - a) * w


class ScaledIntQuantizer(Quantizer):
    """Fake quantization to ``bits``-bit integers with a float scale and an integer zero point.

    Args:
        bits: integer width, 2..16.
        signed: signed codes ``[-2**(b-1), 2**(b-1)-1]`` or unsigned ``[0, 2**b-1]``.
        symmetric: zero point 0 (signed: ``scale = max|x| / (2**(b-1)-1)``; unsigned: ``max(x) / qmax``);
            otherwise the range ``[min(x, 0), max(x, 0)]`` is mapped onto ``[qmin, qmax]`` with a zero point.
        narrow: signed codes only use ``[-(2**(b-1)-1), 2**(b-1)-1]`` (no effect on unsigned codes).
        granularity: ``"tensor"`` (one scale) or ``"channel"`` (one scale per index along ``axis``), or a
            :class:`~hwnas.quant.granularity.PerTensor` / :class:`~hwnas.quant.granularity.PerChannel`.
        axis: channel axis of the element tensor for per-channel scales.
        calibration: how the range is chosen: ``"minmax"`` (extremes), ``"percentile"`` (the ``percentile``
            of ``|x|``, or the ``(100-p, p)`` percentiles when asymmetric) or ``"mse"`` (grid search over
            clipping ratios minimizing the mean squared fake-quantization error).
        percentile: percentile in (0, 100] used by ``calibration="percentile"``.
        max_samples: values kept per parameter group for ``"percentile"``/``"mse"`` calibration (a
            deterministic, evenly strided sample of the stream once more data is seen).

    Buffers ``scale`` and ``zero_point`` (float32, parameter-shaped) are created at the first calibration or
    first forward, or when a state dict is loaded.
    """

    scale: torch.Tensor | None
    zero_point: torch.Tensor | None

    def __init__(
        self,
        bits: int,
        *,
        signed: bool = True,
        symmetric: bool = True,
        narrow: bool = False,
        granularity: str | Granularity = "tensor",
        axis: int = 0,
        calibration: str = "minmax",
        percentile: float = 99.99,
        max_samples: int = 2**20,
    ) -> None:
        super().__init__()
        if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
            raise QuantizationError(f"bits: must be an integer in 2..16, got {bits!r}")
        for name, value in (("signed", signed), ("symmetric", symmetric), ("narrow", narrow)):
            if not isinstance(value, bool):
                raise QuantizationError(f"{name}: must be a bool, got {value!r}")
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise QuantizationError(f"axis: must be an integer, got {axis!r}")
        gran = parse_granularity(granularity, axis, name="granularity")
        if not isinstance(gran, PerTensor | PerChannel):
            raise QuantizationError(
                "granularity: scaled-integer quantizers support 'tensor' or 'channel' scales, "
                f"got {gran.describe()!r}"
            )
        if not isinstance(calibration, str) or calibration.lower() not in _CALIBRATIONS:
            raise QuantizationError(
                f"calibration: unknown method {calibration!r}; expected one of {', '.join(_CALIBRATIONS)}"
            )
        try:
            pct = float(percentile)
        except (TypeError, ValueError):
            pct = math.nan
        if isinstance(percentile, bool) or not 0.0 < pct <= 100.0:
            raise QuantizationError(f"percentile: must be in (0, 100], got {percentile!r}")
        if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
            raise QuantizationError(f"max_samples: must be a positive integer, got {max_samples!r}")

        self.bits = bits
        self.signed = signed
        self.symmetric = symmetric
        self.narrow = narrow
        self.granularity = gran
        self.calibration = calibration.lower()
        self.percentile = pct
        self.max_samples = max_samples
        self.register_buffer("scale", None)
        self.register_buffer("zero_point", None)
        self._reset_stats()
        self._weight_done = False

    # ------------------------------------------------------------------ integer range
    @property
    def qmin(self) -> int:
        """Smallest integer code."""
        if not self.signed:
            return 0
        return -(2 ** (self.bits - 1)) + (1 if self.narrow else 0)

    @property
    def qmax(self) -> int:
        """Largest integer code."""
        return 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1

    @property
    def calibrated(self) -> bool:
        """True once ``scale`` and ``zero_point`` exist."""
        return self.scale is not None

    # ------------------------------------------------------------------ Quantizer contract
    def element_bits(self) -> torch.Tensor:
        """``bits`` in the parameter shape (a scalar tensor before the shape is known)."""
        if self.scale is None:
            return torch.tensor(float(self.bits))
        return torch.full_like(self.scale, float(self.bits))

    def max_bits(self) -> float:
        """``bits`` as a float."""
        return float(self.bits)

    def begin_calibration(self) -> None:
        """Reset statistics and start recording them in ``forward``."""
        super().begin_calibration()
        self._reset_stats()
        self._weight_done = False

    def end_calibration(self) -> None:
        """Stop recording and set ``scale``/``zero_point`` from the recorded statistics (if any)."""
        if self._run_min is not None:
            self._finalize()
        self._reset_stats()
        super().end_calibration()

    def describe(self) -> str:
        """For instance ``int8 symmetric per-channel(axis=0) minmax``."""
        kind = f"{'int' if self.signed else 'uint'}{self.bits}"
        sym = "symmetric" if self.symmetric else "asymmetric"
        narrow = " narrow" if self.narrow and self.signed else ""
        calib = f"percentile({self.percentile:g})" if self.calibration == "percentile" else self.calibration
        return f"{kind} {sym}{narrow} per-{self.granularity.describe()} {calib}"

    def extra_repr(self) -> str:
        """The :meth:`describe` line, shown by ``repr``."""
        return self.describe()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quantized ``x`` (same dtype), or ``x`` unchanged while an activation is calibrating."""
        if self.calibrating:
            if self.batch_dims == 0:
                if x.numel() == 0:
                    return x
                if not self._weight_done:
                    self._calibrate_weight(x)
                    self._weight_done = True
                return self._fake_quant(x)
            self._record(x)
            return x
        self._ensure_params(x)
        if x.numel() == 0:
            return x
        return self._fake_quant(x)

    def integer_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Integer codes (int32) of ``x``: ``clamp(round_half_even(x / scale) + zp, qmin, qmax)``."""
        if x.numel() == 0 and self.batch_dims == 0:
            return torch.zeros(x.shape, dtype=torch.int32, device=x.device)
        self._ensure_params(x)
        assert self.scale is not None and self.zero_point is not None
        if x.numel() == 0:
            return torch.zeros(x.shape, dtype=torch.int32, device=x.device)
        self._check_shape(x)
        codes = torch.round(x.detach().to(torch.float32) / self.scale) + self.zero_point
        return codes.clamp(self.qmin, self.qmax).to(torch.int32)

    # ------------------------------------------------------------------ quantization
    def _ensure_params(self, x: torch.Tensor) -> None:
        if self.scale is not None:
            return
        if self.batch_dims == 0:
            if x.numel() > 0:
                self._calibrate_weight(x)
            return
        raise QuantizationError(
            "scale: this activation quantizer has not been calibrated; run "
            "`hwnas.quant.calibrate(model, data)` first"
        )

    def _check_shape(self, x: torch.Tensor) -> None:
        assert self.scale is not None
        elem = tuple(x.shape[self.batch_dims :])
        pshape = tuple(self.scale.shape)
        if x.ndim < self.batch_dims or len(elem) != len(pshape) or any(
            p != 1 and p != n for p, n in zip(pshape, elem, strict=True)
        ):
            raise QuantizationError(
                f"x: element shape {elem} does not match the quantizer's parameter shape {pshape}"
            )

    def _fake_quant(self, x: torch.Tensor) -> torch.Tensor:
        self._check_shape(x)
        return _FakeQuantSTE.apply(x, self.scale, self.zero_point, self.qmin, self.qmax)

    def _params(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale and zero point (float32) for the range ``[lo, hi]`` (elementwise)."""
        qmin, qmax = self.qmin, self.qmax
        if self.symmetric and self.signed:
            amax = torch.maximum(-lo, hi).clamp(min=0)
            scale = amax / float(2 ** (self.bits - 1) - 1)
            zp = torch.zeros_like(scale)
        elif self.symmetric:
            scale = hi.clamp(min=0) / float(qmax)
            zp = torch.zeros_like(scale)
        else:
            lo = lo.clamp(max=0)
            hi = hi.clamp(min=0)
            scale = (hi - lo) / float(qmax - qmin)
            safe = torch.where(scale > 0, scale, torch.ones_like(scale))
            zp = torch.round(qmin - lo / safe).clamp(qmin, qmax)
        bad = ~(torch.isfinite(scale) & (scale > 0))
        scale = torch.where(bad, torch.ones_like(scale), scale)
        zp = torch.where(bad, torch.zeros_like(zp), zp)
        return scale, zp

    # ------------------------------------------------------------------ calibration
    def _reset_stats(self) -> None:
        self._run_min: torch.Tensor | None = None
        self._run_max: torch.Tensor | None = None
        self._pshape: tuple[int, ...] | None = None
        self._samples: torch.Tensor | None = None
        self._seen = 0
        self._stride = 1

    def _calibrate_weight(self, x: torch.Tensor) -> None:
        self._reset_stats()
        self._record(x)
        self._finalize()
        self._reset_stats()

    def _record(self, x: torch.Tensor) -> None:
        if x.ndim < self.batch_dims:
            raise QuantizationError(
                f"x: expected at least {self.batch_dims} batch dimension(s), got {x.ndim} dimension(s)"
            )
        if x.numel() == 0:
            return
        xd = x.detach().to(torch.float32)
        if not bool(torch.isfinite(xd).all()):
            raise QuantizationError("x: calibration data contains NaN or infinity")
        elem = tuple(xd.shape[self.batch_dims :])
        pshape = self.granularity.shape(elem)
        if self._pshape is not None and pshape != self._pshape:
            raise QuantizationError(
                f"x: element shape {elem} gives parameter shape {pshape}, earlier batches gave {self._pshape}"
            )
        lo = self.granularity.reduce(xd, "amin", self.batch_dims)
        hi = self.granularity.reduce(xd, "amax", self.batch_dims)
        if self._run_min is None or self._run_max is None:
            self._run_min, self._run_max, self._pshape = lo, hi, pshape
        else:
            self._run_min = torch.minimum(self._run_min, lo)
            self._run_max = torch.maximum(self._run_max, hi)
        if self.calibration != "minmax":
            kept = [self.batch_dims + d for d, p in enumerate(pshape) if p != 1]
            rest = [d for d in range(xd.ndim) if d not in kept]
            self._add_samples(xd.permute(*kept, *rest).reshape(math.prod(pshape), -1))

    def _add_samples(self, rows: torch.Tensor) -> None:
        """Keep every ``stride``-th value of the stream per group; double the stride when over the cap."""
        offset = (-self._seen) % self._stride
        new = rows[:, offset :: self._stride]
        self._samples = new.clone() if self._samples is None else torch.cat([self._samples, new], dim=1)
        self._seen += rows.shape[1]
        while self._samples.shape[1] > self.max_samples:
            self._stride *= 2
            self._samples = self._samples[:, ::2].contiguous()

    def _finalize(self) -> None:
        if self._run_min is None or self._run_max is None or self._pshape is None:
            return
        pshape = self._pshape
        lo = self._run_min.reshape(-1)
        hi = self._run_max.reshape(-1)
        if self.calibration == "percentile":
            lo, hi = self._percentile_range()
        elif self.calibration == "mse":
            lo, hi = self._mse_range(lo, hi)
        scale, zp = self._params(lo, hi)
        self.scale = scale.reshape(pshape).contiguous()
        self.zero_point = zp.reshape(pshape).contiguous()

    def _percentile_range(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._samples is not None
        p = self.percentile
        if self.symmetric and self.signed:
            amax = _quantile(self._samples.abs().sort(dim=1).values, p)
            return -amax, amax
        s = self._samples.sort(dim=1).values
        hi = _quantile(s, p)
        lo = _quantile(s, 100.0 - p) if not self.symmetric else torch.zeros_like(hi)
        return lo, hi

    def _mse_range(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._samples is not None
        data = self._samples
        if self.symmetric and self.signed:
            amax = torch.maximum(-lo, hi)
            lo, hi = -amax, amax
        elif self.symmetric:
            lo = torch.zeros_like(hi)
        best_err = torch.full_like(hi, math.inf)
        best_alpha = torch.ones_like(hi)
        alphas = torch.linspace(_MSE_ALPHA_MIN, 1.0, _MSE_GRID, dtype=torch.float32)
        buf = torch.empty_like(data)
        for alpha in alphas.tolist():
            scale, zp = self._params(lo * alpha, hi * alpha)
            s, z = scale[:, None], zp[:, None]
            # (clamp(round(x / s) + z, qmin, qmax) - z) * s - x, in place to spare memory traffic
            torch.div(data, s, out=buf)
            buf.round_().add_(z).clamp_(self.qmin, self.qmax).sub_(z).mul_(s).sub_(data)
            err = buf.square_().mean(dim=1)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_alpha = torch.where(better, torch.full_like(best_alpha, alpha), best_alpha)
        return lo * best_alpha, hi * best_alpha

    # ------------------------------------------------------------------ state dict
    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        for name in ("scale", "zero_point"):
            incoming = state_dict.get(prefix + name)
            if isinstance(incoming, torch.Tensor) and getattr(self, name) is None:
                setattr(self, name, torch.empty(incoming.shape, dtype=torch.float32, device=incoming.device))
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


class Float16Quantizer(Quantizer):
    """Half-precision baseline: ``x`` cast to ``float16`` and back, straight-through gradient."""

    def element_bits(self) -> torch.Tensor:
        """16 bits for every element (a scalar tensor)."""
        return torch.tensor(16.0)

    def max_bits(self) -> float:
        """16."""
        return 16.0

    def describe(self) -> str:
        """``fp16``."""
        return "fp16"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x.half().to(x.dtype)`` with an identity gradient."""
        return _CastFloat16STE.apply(x)
