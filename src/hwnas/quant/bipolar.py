"""The bipolar quantizer: 1-bit values ±1 (BinaryNet; Brevitas/FINN/QONNX ``BipolarQuant``, FINN ``BIPOLAR``).

Contract (the :class:`~hwnas.quant.base.Quantizer` one, plus):

* ``forward(x)`` is ``+1`` where ``x >= 0`` and ``-1`` elsewhere, in ``x``'s dtype: 0 and -0.0 give +1 (sign with
  0 → +1), NaN gives -1. That is exactly qonnx's ``BipolarQuant`` executor with scale 1
  (``np.where(x >= 0, 1, -1) * scale``) and :func:`hwnas.quant.reference.quantize_bipolar_np`, which the tests
  compare with it bit for bit. The scale is always 1.
* Backward: the straight-through estimator clipped to ``|x| <= 1`` (BinaryNet's hardtanh STE): the incoming
  gradient where ``|x| <= 1``, 0 elsewhere.
* ``element_bits()`` is 1 for every element (a scalar tensor), ``max_bits()`` 1: BOPs, EBOPs and weight bits
  count one bit. Nothing is learnable and nothing is calibrated (the range is fixed), so ``calibrate`` leaves
  it as it is and it quantizes while calibrating too.
* HGQ's learnable bit-widths have no bipolar form: ``learnable=True`` raises
  :class:`~hwnas.quant.modes.QuantizationError` (an :class:`hwnas.errors.HwnasError`).

In a layer it is the ``{"kind": "bipolar"}`` quantizer spec (:mod:`hwnas.nn.base`); docs/quantization.md says
which export paths carry it.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import Quantizer
from .modes import QuantizationError

__all__ = ["BipolarQuantizer", "bipolar"]


class _BipolarSTE(torch.autograd.Function):
    """``where(x >= 0, 1, -1)`` with the hardtanh straight-through gradient (1 where ``|x| <= 1``)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(x.abs() <= 1)
        one = torch.ones((), dtype=x.dtype, device=x.device)
        return torch.where(x >= 0, one, -one)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (inside,) = ctx.saved_tensors
        return torch.where(inside, grad, torch.zeros((), dtype=grad.dtype, device=grad.device))


def bipolar(x: torch.Tensor) -> torch.Tensor:
    """Functional bipolar quantization: ``+1`` where ``x >= 0``, else ``-1`` (hardtanh straight-through gradient)."""
    return _BipolarSTE.apply(x)


class BipolarQuantizer(Quantizer):
    """1-bit bipolar quantizer: ``x >= 0 → +1``, ``x < 0 → -1`` (module docstring).

    Args:
        learnable: must be False (kept so that a spec asking for HGQ bit-widths is refused with a clear message).
    """

    def __init__(self, *, learnable: bool = False) -> None:
        super().__init__()
        if learnable is not False:
            raise QuantizationError("learnable: a bipolar quantizer has a fixed width of 1 bit (±1); HGQ's learnable "
                                    "bit-widths have no bipolar form: use kind 'fixed' for learnable widths")
        self.label = "BipolarQuantizer"

    def element_bits(self) -> torch.Tensor:
        """1 bit for every element (a scalar tensor)."""
        return torch.tensor(1.0)

    def max_bits(self) -> float:
        """1."""
        return 1.0

    def describe(self) -> str:
        """``bipolar ±1``."""
        return "bipolar ±1"

    def extra_repr(self) -> str:
        """The :meth:`describe` line, shown by ``repr``."""
        return self.describe()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``+1`` where ``x >= 0``, else ``-1`` (same dtype), with the clipped straight-through gradient."""
        return _BipolarSTE.apply(x)
