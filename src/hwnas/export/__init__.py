"""Exporters and their verification.

* :mod:`hwnas.export.graph` — the export graph every fixed-point exporter reads (:func:`extract`), with a
  float64 reference executor (:func:`run_reference`).
* QONNX (:func:`export_qonnx`), checked by executing the export with qonnx (:func:`verify_qonnx`).
"""

from .errors import ExportError, ToolMissingError
from .graph import ExportGraph, FixedFormat, extract, float32_exact, run_reference
from .qonnx import QONNX_DOMAIN, execute_qonnx, export_qonnx, verify_qonnx

__all__ = [
    "QONNX_DOMAIN",
    "ExportError",
    "ExportGraph",
    "FixedFormat",
    "ToolMissingError",
    "execute_qonnx",
    "export_qonnx",
    "extract",
    "float32_exact",
    "run_reference",
    "verify_qonnx",
]
