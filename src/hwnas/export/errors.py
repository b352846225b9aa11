"""Errors shared by the exporters."""

from __future__ import annotations

from hwnas.errors import HwnasError

__all__ = ["ExportError", "ToolMissingError"]


class ExportError(HwnasError, ValueError):
    """The model cannot be exported to this format; the message names the layer (and slot)."""


class ToolMissingError(HwnasError, RuntimeError):
    """An external tool an export or verification path needs (g++, Verilator, Yosys, ...) is not available."""
