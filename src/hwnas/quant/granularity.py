"""Granularity: which elements of a tensor share one quantization parameter.

A granularity knows nothing about quantization math. It maps the shape of one *element tensor* (a weight
tensor, or one sample of an activation without its batch dimension) to the shape of the parameter tensor
(bit-widths, scales, ...) and reduces statistics of the data to that shape. Parameter tensors always have
the same number of dimensions as the element tensor, with 1 on every shared axis, so they broadcast
against the data (and against a leading batch dimension) without reshaping.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from .modes import QuantizationError

__all__ = ["Granularity", "PerChannel", "PerParameter", "PerTensor", "parse_granularity"]


class Granularity(ABC):
    """Maps an element shape to a parameter shape; see the module docstring for the contract."""

    @abstractmethod
    def shape(self, element_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the parameter tensor for elements of ``element_shape`` (same ndim, 1 on shared axes)."""

    def reduce(self, t: torch.Tensor, op: str, batch_dims: int = 0) -> torch.Tensor:
        """Reduce ``t`` (shape ``batch + element``) to the parameter shape with ``op`` in {amax, amin, sum}.

        ``batch_dims`` leading dimensions are always reduced.
        """
        element_shape = tuple(t.shape[batch_dims:])
        pshape = self.shape(element_shape)
        dims = list(range(batch_dims)) + [
            batch_dims + d for d, (n, p) in enumerate(zip(element_shape, pshape, strict=True)) if p == 1 and n != 1
        ]
        if not dims:
            out = t
        elif op == "amax":
            out = t.amax(dim=dims, keepdim=True)
        elif op == "amin":
            out = t.amin(dim=dims, keepdim=True)
        elif op == "sum":
            out = t.sum(dim=dims, keepdim=True)
        else:
            raise QuantizationError(f"reduce: unknown op {op!r}")
        return out.reshape(pshape)

    def describe(self) -> str:
        """A short human-readable name (``tensor``, ``channel(axis=0)``, ``parameter``)."""
        return type(self).__name__


@dataclass(frozen=True)
class PerTensor(Granularity):
    """One parameter for the whole tensor."""

    def shape(self, element_shape: tuple[int, ...]) -> tuple[int, ...]:
        """All ones: one shared parameter."""
        return (1,) * len(element_shape)

    def describe(self) -> str:
        """``tensor``."""
        return "tensor"


@dataclass(frozen=True)
class PerChannel(Granularity):
    """One parameter per index along ``axis`` of the element tensor (negative axes count from the end).

    For weights the default axis 0 is the output channel; for a (C, L) or (C, H, W) activation sample it is
    the channel.
    """

    axis: int = 0

    def shape(self, element_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Ones except along ``axis``."""
        nd = len(element_shape)
        if not -nd <= self.axis < nd:
            raise QuantizationError(
                f"granularity: channel axis {self.axis} is out of range for element shape {element_shape}"
            )
        ax = self.axis % nd
        return tuple(n if d == ax else 1 for d, n in enumerate(element_shape))

    def describe(self) -> str:
        """``channel(axis=N)``."""
        return f"channel(axis={self.axis})"


@dataclass(frozen=True)
class PerParameter(Granularity):
    """One parameter per element (HGQ's finest granularity: per weight, per activation feature)."""

    def shape(self, element_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The element shape itself."""
        return tuple(element_shape)

    def describe(self) -> str:
        """``parameter``."""
        return "parameter"


def parse_granularity(value: str | Granularity, axis: int = 0, name: str = "granularity") -> Granularity:
    """Return a :class:`Granularity` for ``"tensor"``, ``"channel"`` (with ``axis``) or ``"parameter"``."""
    if isinstance(value, Granularity):
        return value
    if isinstance(value, str):
        v = value.lower()
        if v in ("tensor", "per_tensor", "per-tensor"):
            return PerTensor()
        if v in ("channel", "per_channel", "per-channel"):
            return PerChannel(axis)
        if v in ("parameter", "per_parameter", "per-parameter", "element"):
            return PerParameter()
    raise QuantizationError(f"{name}: unknown granularity {value!r}; expected 'tensor', 'channel' or 'parameter'")
