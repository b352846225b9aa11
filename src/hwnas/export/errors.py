"""Errors shared by the exporters."""

from __future__ import annotations

from hwnas.errors import EXIT_FAILED, HwnasError

__all__ = ["ExportError", "ToolFailureError", "ToolMissingError"]


class ExportError(HwnasError, ValueError):
    """The model cannot be exported to this format; the message names the layer (and slot)."""


class ToolFailureError(HwnasError, RuntimeError):
    """A tool (alkaid's tracer or optimizer, hls4ml, a compiler) failed inside on a model its path expresses.

    The path failed (verification FAIL, exit 1): never "not expressible", never a pass.
    """

    exit_code = EXIT_FAILED


class ToolMissingError(HwnasError, RuntimeError):
    """An external tool an export or verification path needs (g++, Verilator, Yosys, ...) is not available.

    A failure, not a usage error: the command line exits 1.
    """

    exit_code = EXIT_FAILED
