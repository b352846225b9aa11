"""Exporters and their verification.

* :mod:`hwnas.export.graph` — the export graph every fixed-point exporter reads (:func:`extract`), with a
  float64 reference executor (:func:`run_reference`).
* QONNX (:func:`export_qonnx`), checked by executing the export with qonnx (:func:`verify_qonnx`).
"""

from .bundle import ModelBundle, load_model, save_model
from .errors import ExportError, ToolMissingError
from .graph import ExportGraph, FixedFormat, extract, float32_exact, run_reference
from .qonnx import QONNX_DOMAIN, execute_qonnx, export_qonnx, verify_qonnx

__all__ = [
    "QONNX_DOMAIN",
    "ExportError",
    "ExportGraph",
    "FixedFormat",
    "ModelBundle",
    "ToolMissingError",
    "execute_qonnx",
    "export_qonnx",
    "extract",
    "float32_exact",
    "load_model",
    "run_reference",
    "save_model",
    "verify_qonnx",
]
