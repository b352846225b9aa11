"""Quantization numerics: fixed-point (k, i, f) exact to ``ap_fixed``, learnable bit-widths, scaled-int PTQ, bipolar.

Public entry points:

* :func:`quantize_fixed` — functional ``ap_fixed`` quantization with HGQ surrogate gradients.
* :class:`FixedPointQuantizer` — module with per-tensor/channel/parameter (k, i, f), static or learnable.
* :class:`ScaledIntQuantizer`, :class:`Float16Quantizer` — post-training quantization.
* :class:`BipolarQuantizer` — 1-bit bipolar ±1 (``x >= 0 → +1``), hardtanh straight-through gradient.
* :func:`calibrate` — measure ranges on data for every quantizer in a model.
* :mod:`hwnas.quant.reference` — NumPy references the torch code is tested against.
"""

from .base import Quantizer
from .bipolar import BipolarQuantizer
from .calibrate import calibrate
from .fixed import minimal_integer_bits, quantize_fixed, use_compiled_kernels
from .fixed_quantizer import FixedPointQuantizer
from .granularity import Granularity, PerChannel, PerParameter, PerTensor, parse_granularity
from .modes import (
    OverflowMode,
    QuantizationError,
    QuantizationWarning,
    RoundingMode,
    ap_type_name,
    check_kif,
    parse_overflow,
    parse_rounding,
)
from .scaled import Float16Quantizer, ScaledIntQuantizer

__all__ = [
    "BipolarQuantizer",
    "FixedPointQuantizer",
    "Float16Quantizer",
    "Granularity",
    "OverflowMode",
    "PerChannel",
    "PerParameter",
    "PerTensor",
    "QuantizationError",
    "QuantizationWarning",
    "Quantizer",
    "RoundingMode",
    "ScaledIntQuantizer",
    "ap_type_name",
    "calibrate",
    "check_kif",
    "minimal_integer_bits",
    "parse_granularity",
    "parse_overflow",
    "parse_rounding",
    "quantize_fixed",
    "use_compiled_kernels",
]
