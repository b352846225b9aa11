"""Exporters and their verification.

* :mod:`hwnas.export.graph` — the export graph every fixed-point exporter reads (:func:`extract`), with a
  float64 reference executor (:func:`run_reference`).
* QONNX (:func:`export_qonnx`), checked by executing the export with qonnx (:func:`verify_qonnx`); a QONNX file
  (Brevitas, QKeras, hwnas) back into hwnas layers with :func:`import_qonnx`, checked by
  :func:`verify_qonnx_import` (docs/extending.md).
* hls4ml projects (:func:`export_hls4ml`), checked by their g++ C emulation (:func:`verify_hls4ml`).
* RTL through alkaid (:func:`export_rtl`), checked with Verilator (:func:`verify_rtl`).
* Synthesis with Yosys / nextpnr-ecp5 (:func:`synthesize`).
* :mod:`hwnas.export.paths` — the registry of the export paths (each registered once; the command line, the
  experiment keys and verification read their names from it).
* :func:`hwnas.export.verify.verify_model` runs every path; :func:`save_model`/:func:`load_model` are the
  model files the command line reads.

The tool packages (hls4ml, alkaid, Verilator, YoWASP) are imported only when a path runs.
"""

from .bundle import ModelBundle, ModelFileError, allow_classes, load_model, save_model
from .errors import ExportError, ToolFailureError, ToolMissingError
from .graph import ExportGraph, FixedFormat, extract, float32_exact, run_reference
from .hls4ml import Hls4mlProject, export_hls4ml, verify_hls4ml
from .qonnx import QONNX_DOMAIN, execute_qonnx, export_qonnx, verify_qonnx
from .qonnx_import import import_qonnx, verify_qonnx_import
from .rtl import RtlProject, export_rtl, verify_rtl
from .synth import SynthesisComparison, SynthesisError, SynthesisResult, synthesize

__all__ = [
    "QONNX_DOMAIN",
    "ExportError",
    "ExportGraph",
    "FixedFormat",
    "Hls4mlProject",
    "ModelBundle",
    "ModelFileError",
    "RtlProject",
    "SynthesisComparison",
    "SynthesisError",
    "SynthesisResult",
    "ToolFailureError",
    "ToolMissingError",
    "allow_classes",
    "execute_qonnx",
    "export_hls4ml",
    "export_qonnx",
    "export_rtl",
    "extract",
    "float32_exact",
    "import_qonnx",
    "load_model",
    "run_reference",
    "save_model",
    "synthesize",
    "verify_hls4ml",
    "verify_qonnx",
    "verify_qonnx_import",
    "verify_rtl",
]
