"""Cost and hardware models: every figure a search optimizes, with per-layer rows and stated assumptions.

* :func:`estimate` — ``estimate(model, target, model="finn", input_shape=..., **options)`` returns a
  :class:`HardwareEstimate` (rows, totals, utilization, SNAC-Pack's average resource utilization, feasibility
  verdict, latency, throughput, energy).
* :mod:`~hwnas.cost.catalog` — the device catalog (``devices.yaml``).
* :mod:`~hwnas.cost.finn` — FINN dataflow model with PE/SIMD folding and folding search.
* :mod:`~hwnas.cost.hls4ml_model` — hls4ml io_parallel estimates (reuse factor, EBOPs fits).
* :mod:`~hwnas.cost.alkaid_model` — the RTL export's design traced by alkaid (LUTs, register bits, cycles),
  calibrated against Yosys synthesis.
* :mod:`~hwnas.cost.surrogate` — the same design's LUTs, FFs and latency predicted by gradient-boosted trees
  trained on Yosys synthesis, from per-layer features (no trace), with a 10–90 % interval and out-of-range warnings.
* :mod:`~hwnas.cost.metrics` — MACs, BOPs, EBOPs, weight bits, memory, sparsity, QA-Score.
* :mod:`~hwnas.cost.cpu_latency` — CPU latency lookup tables profiled with onnxruntime (HA-NAS style),
  calibrated on measured models; :mod:`~hwnas.cost.latency_zoo` — a seeded zoo of models for that.
"""

from typing import Any

from torch import nn

from .alkaid_model import CALIBRATION, AlkaidCalibration, AlkaidTrace, alkaid_estimate, alkaid_trace
from .catalog import RESOURCES, CostError, Device, devices, get_device
from .cpu_latency import (
    LatencyPrediction,
    LatencyRow,
    LatencyTable,
    NodeTiming,
    Operator,
    UnsupportedLayerError,
    calibrate,
    default_grid,
    machine_description,
    measure_latencies,
    measure_latency,
    measure_node_cost,
    measure_nodes,
    predict_latency,
    profile_operators,
    quick_grid,
    session_options,
)
from .finn import Folding, finn_estimate, fold_for_resources, fold_for_throughput
from .hls4ml_model import hls4ml_estimate
from .metrics import BASELINES, ModelMetrics, model_metrics, qa_score, vgg10_amc
from .result import AVG_RESOURCES, HardwareEstimate, LayerRow, average_resource
from .surrogate import Surrogate, SurrogateFeatures, load_surrogate, surrogate_estimate, surrogate_features

__all__ = [
    "AVG_RESOURCES",
    "BASELINES",
    "CALIBRATION",
    "RESOURCES",
    "AlkaidCalibration",
    "AlkaidTrace",
    "CostError",
    "Device",
    "Folding",
    "HardwareEstimate",
    "LatencyPrediction",
    "LatencyRow",
    "LatencyTable",
    "LayerRow",
    "ModelMetrics",
    "NodeTiming",
    "Operator",
    "Surrogate",
    "SurrogateFeatures",
    "UnsupportedLayerError",
    "alkaid_estimate",
    "alkaid_trace",
    "average_resource",
    "calibrate",
    "default_grid",
    "devices",
    "estimate",
    "finn_estimate",
    "fold_for_resources",
    "fold_for_throughput",
    "get_device",
    "hls4ml_estimate",
    "load_surrogate",
    "machine_description",
    "measure_latencies",
    "measure_latency",
    "measure_node_cost",
    "measure_nodes",
    "model_metrics",
    "predict_latency",
    "profile_operators",
    "qa_score",
    "quick_grid",
    "session_options",
    "surrogate_estimate",
    "surrogate_features",
    "vgg10_amc",
]

_MODELS = {"finn": finn_estimate, "hls4ml": hls4ml_estimate, "alkaid": alkaid_estimate,
           "surrogate": surrogate_estimate}


def estimate(model: nn.Module, target: str | Device, *, input_shape: tuple[int, ...], kind: str = "finn",
             **options: Any) -> HardwareEstimate:
    """Estimate ``model`` on ``target`` with the hardware model ``kind``: finn, hls4ml, alkaid or surrogate.

    ``options`` go to the model (FINN: ``folding``, ``clock_mhz``, ``res_type``, ``mem_style``,
    ``mvau_variant``; hls4ml: ``reuse_factor``, ``strategy``, ``clock_mhz``, ``dsp_threshold``; alkaid:
    ``clock_mhz``, ``latency_cutoff_ns``, ``calibration``; surrogate: ``clock_mhz``, ``latency_cutoff_ns``,
    ``surrogate``, ``strict``). The result
    carries per-layer rows, totals and its assumptions.
    """
    if kind not in _MODELS:
        raise CostError(f"kind: unknown hardware model {kind!r}; available {sorted(_MODELS)}")
    return _MODELS[kind](model, target, input_shape, **options)
