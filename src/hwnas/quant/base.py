"""The contract every hwnas quantizer module fulfils.

A quantizer is a ``torch.nn.Module`` that fake-quantizes its input (returns float values that lie exactly
on the quantization grid) and reports the bit-width of every element it produces. Layers, cost models
and exporters only talk to quantizers through this interface:

* ``forward(x)`` — quantized ``x``; gradients flow by straight-through estimation.
* ``batch_dims`` — 0 for a weight/bias quantizer (the whole tensor is the element tensor), 1 for an
  activation quantizer (dimension 0 is the batch). Set by the owning layer.
* ``element_bits()`` — bit-width per element (parameter-shaped, broadcastable to one element tensor;
  differentiable for learnable quantizers). Pruned elements have 0 bits.
* ``max_bits()`` — the widest element as a Python float (the datapath width used by BOPs).
* ``begin_calibration()`` / ``end_calibration()`` — while calibrating, ``forward`` records statistics of
  its input and returns it unchanged where the quantizer's range is not known yet; ``end_calibration``
  turns the statistics into ranges. :func:`hwnas.quant.calibrate` drives this for a whole model.
* ``describe()`` — one line for tables and reports.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Quantizer"]


class Quantizer(nn.Module):
    """Base class of hwnas quantizers (see the module docstring for the contract)."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_dims: int = 0
        self.calibrating: bool = False

    @property
    def learnable(self) -> bool:
        """True when some quantization parameter (bit-width) is trained by gradient descent."""
        return False

    def element_bits(self) -> torch.Tensor:
        """Bit-width per element, in the parameter shape (broadcastable to one element tensor)."""
        raise NotImplementedError

    def max_bits(self) -> float:
        """Width of the widest element (0 when everything is pruned)."""
        return float(self.element_bits().detach().max())

    def begin_calibration(self) -> None:
        """Reset statistics and start recording them in ``forward``."""
        self.calibrating = True

    def end_calibration(self) -> None:
        """Stop recording and set the quantizer's ranges from what was recorded."""
        self.calibrating = False

    def describe(self) -> str:
        """One line describing the quantizer for tables and reports."""
        return type(self).__name__
