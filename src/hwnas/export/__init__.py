"""Exporters. So far: QONNX (:func:`export_qonnx`), checked by executing the export (:func:`verify_qonnx`)."""

from .qonnx import QONNX_DOMAIN, ExportError, execute_qonnx, export_qonnx, verify_qonnx

__all__ = ["QONNX_DOMAIN", "ExportError", "execute_qonnx", "export_qonnx", "verify_qonnx"]
