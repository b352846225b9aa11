"""QActivation (ReLU, identity, tanh, sigmoid) and pooling layers with quantizer slots.

What exports bit-exactly: ReLU and identity are exact in fixed point. ``tanh``/``sigmoid`` in
``mode="table"`` are a lookup table — a deterministic function of the quantized input (the input quantizer
must be a static, non-learnable fixed-point quantizer so the table is finite) followed by the output
quantizer — which the hls4ml and RTL exporters reproduce exactly. ``mode="float"`` evaluates the float
function and is *not* bit-exact exportable (``exportable`` is False and says why).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.quant import FixedPointQuantizer, QuantizationError

from .base import QLayer, QuantizerSpec, bits_of, module_device

__all__ = ["QActivation", "QAvgPool1d", "QAvgPool2d", "QMaxPool1d", "QMaxPool2d"]

_FUNCS = {
    "relu": torch.relu,
    "identity": lambda x: x,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
}
_TABLE_OK = {"tanh", "sigmoid"}


class QActivation(QLayer):
    """Element-wise activation with optional input and output quantizers.

    Args:
        kind: ``relu``, ``identity``, ``tanh`` or ``sigmoid``.
        mode: ``"exact"`` (relu/identity), ``"table"`` or ``"float"`` (tanh/sigmoid); see the module doc.
        input_quantizer, output_quantizer: quantizer specs (see :mod:`hwnas.nn.base`).
    """

    def __init__(
        self,
        kind: str = "relu",
        *,
        mode: str | None = None,
        input_quantizer: QuantizerSpec = None,
        output_quantizer: QuantizerSpec = None,
    ) -> None:
        super().__init__()
        self.passes_through = kind != "tanh" and kind != "sigmoid"
        if kind not in _FUNCS:
            raise QuantizationError(f"kind: unknown activation {kind!r}; expected one of {sorted(_FUNCS)}")
        self.kind = kind
        default_mode = "table" if kind in _TABLE_OK and output_quantizer is not None else (
            "float" if kind in _TABLE_OK else "exact")
        self.mode = mode or default_mode
        if kind in _TABLE_OK and self.mode not in ("table", "float"):
            raise QuantizationError(f"mode: {kind} supports 'table' or 'float', got {self.mode!r}")
        if kind not in _TABLE_OK and self.mode != "exact":
            raise QuantizationError(f"mode: {kind} is exact in fixed point; mode must be 'exact', got {self.mode!r}")
        self._init_quantizers(input_quantizer, None, None, output_quantizer)
        if self.mode == "table":
            iq = self.input_quantizer
            if not isinstance(iq, FixedPointQuantizer) or iq.learnable:
                raise QuantizationError(
                    "input_quantizer: a table activation needs a static (learnable=False) fixed-point input "
                    "quantizer so the table has a finite size"
                )
            if self.output_quantizer is None:
                raise QuantizationError("output_quantizer: a table activation needs an output quantizer")

    @property
    def exportable(self) -> tuple[bool, str]:
        """(True, "") when exporters can reproduce this layer bit for bit, else (False, reason)."""
        if self.mode == "float":
            return False, f"{self.kind} in float mode; use mode='table' with static input/output quantizers"
        return True, ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the activation to the quantized input, then the output quantizer."""
        x = self._qin(x)
        if self.mode == "table":
            # evaluate in float64 so the table entry is the correctly rounded function value
            exact = _FUNCS[self.kind](x.double()).to(x.dtype)
            if torch.is_grad_enabled() and x.requires_grad:  # keep the true derivative for training
                smooth = _FUNCS[self.kind](x)
                y = smooth + (exact - smooth).detach()
            else:
                y = exact
        else:
            y = _FUNCS[self.kind](x)
        return self._qout(y)


class _QPool(QLayer):
    """Pooling with optional input/output quantizers; EBOPs charge the comparisons/additions."""

    passes_through = True

    def _init_pool(self, input_quantizer: QuantizerSpec, output_quantizer: QuantizerSpec) -> None:
        self._init_quantizers(input_quantizer, None, None, output_quantizer)

    def _window(self) -> int:
        k = self.kernel_size  # type: ignore[attr-defined]
        return math.prod(k) if isinstance(k, tuple) else int(k) ** self._spatial

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool the quantized input, then apply the output quantizer."""
        return self._qout(self._pool(self._qin(x)))

    def ebops(self, upstream: torch.Tensor | None = None) -> torch.Tensor:
        """(window − 1) two-input max/add operations per output element, at the input width."""
        shape = self._require_shape()
        bx = bits_of(self.input_quantizer, shape, upstream,
                     device=module_device(self, None if upstream is None else upstream.device))
        with torch.no_grad():
            n_out = self._pool(torch.zeros((1, *shape), device=bx.device)).numel()
        return bx.max() * float(n_out * (self._window() - 1))


class QMaxPool1d(_QPool, nn.MaxPool1d):
    """``nn.MaxPool1d`` with quantizer slots (max pooling is exact on fixed-point values)."""

    _spatial = 1

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0, *,
                 input_quantizer: QuantizerSpec = None, output_quantizer: QuantizerSpec = None) -> None:
        nn.MaxPool1d.__init__(self, kernel_size, stride, padding)
        self._init_pool(input_quantizer, output_quantizer)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool1d(x, self.kernel_size, self.stride, self.padding)


class QMaxPool2d(_QPool, nn.MaxPool2d):
    """``nn.MaxPool2d`` with quantizer slots (max pooling is exact on fixed-point values)."""

    _spatial = 2

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                 padding: int = 0, *, input_quantizer: QuantizerSpec = None,
                 output_quantizer: QuantizerSpec = None) -> None:
        nn.MaxPool2d.__init__(self, kernel_size, stride, padding)
        self._init_pool(input_quantizer, output_quantizer)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class QAvgPool1d(_QPool, nn.AvgPool1d):
    """``nn.AvgPool1d`` with quantizer slots; exact in fixed point when the window is a power of two."""

    _spatial = 1

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0, *,
                 input_quantizer: QuantizerSpec = None, output_quantizer: QuantizerSpec = None) -> None:
        nn.AvgPool1d.__init__(self, kernel_size, stride, padding)
        self._init_pool(input_quantizer, output_quantizer)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool1d(x, self.kernel_size, self.stride, self.padding)


class QAvgPool2d(_QPool, nn.AvgPool2d):
    """``nn.AvgPool2d`` with quantizer slots; exact in fixed point when the window is a power of two."""

    _spatial = 2

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                 padding: int = 0, *, input_quantizer: QuantizerSpec = None,
                 output_quantizer: QuantizerSpec = None) -> None:
        nn.AvgPool2d.__init__(self, kernel_size, stride, padding)
        self._init_pool(input_quantizer, output_quantizer)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)
