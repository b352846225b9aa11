"""Learned surrogate: LUTs, FFs, latency cycles (and ECP5 Fmax) of the RTL export's design from cheap features.

``hardware.model: surrogate`` prices a model without alkaid, without RTL and without synthesis: a handful of
figures per layer, read off the quantized weights and the quantizers' (k, i, f), go into gradient-boosted
trees trained on the design dataset (``bench/data/designs-v1.jsonl``: Yosys ``synth_xilinx -family xcup``
on ZCU104; for Fmax ``bench/data/designs-ecp5-v1.jsonl``: the same specs through Yosys ``synth_ecp5`` and
nextpnr-ecp5 on an ECP5-85), shipped as ``surrogate_v2.json`` beside this module.

Why gradient-boosted trees (scikit-learn's ``GradientBoostingRegressor``, trained by
``bench/train_surrogate.py``): the dataset is small (≈ 190 training designs) and tabular, trees need no
feature scaling, cope with the mixed counts/widths/flags, and train in seconds on a CPU with a fixed seed;
a small network would need far more designs. Trees cannot extrapolate, so each one learns a bounded
*correction*: the target is ``log(y / baseline)``, the baseline a power law ``a·x^b`` of one physical feature
fitted on the training split (LUTs on the CSD adder bits, FFs on the accumulator bits × the pipeline cuts
they cross), so a query beyond the data follows the power law, not a flat tree leaf — and says so (below).
Latency: a third target, alkaid's combinational delay (independent of the cut-off), gives
``max(ceil(delay / cut-off), 1)`` cycles. Uncertainty: two more boosted models per target trained with the
quantile loss at 10 % and 90 %, moved out by a margin from conformalized quantile regression (5-fold
cross-validation of the training split: quantile trees on ≈ 190 designs are over-confident), so each estimate
carries a 10–90 % interval per resource (held-out coverage in ``surrogate_v2.json`` and docs/benchmarks.md).
Why not an ensemble's spread: it measures disagreement between models, not the scatter of synthesis around
them, which dominates here. Alkaid's own traced figures as extra features were tried and left out: no better
than alkaid alone, and they would need the trace.

Accuracy on the dataset's 55 held-out designs (docs/benchmarks.md): LUT MAPE 7.7 % (Spearman 0.995), FF
17.5 % (0.972), latency 10.9 %; ECP5 Fmax on 20 held-out designs 10.7 % (0.689; the training median: 20.2 %);
0.02–0.1 s per estimate.

Features (:func:`surrogate_features`), per model, summed over its layers in order (a chain, such as the
``nn.Sequential`` the search builds): MACs, non-zero products, BOPs, EBOPs, weight bits, sparsity; the
canonical-signed-digit (CSD) digits of every quantized weight (the adders of a constant multiplication) and
those digits × the input width (adder bits); the accumulator widths from interval arithmetic over each
layer's input ranges and weights; the ReLU selects and max-pool comparisons with their widths; the
re-quantizations; adder-tree depth and a critical-path proxy; model input/output widths; and the pipelining
cut-off (``latency_cutoff_ns``, as for the alkaid model). Computing them takes milliseconds (no trace).

Out of range: a feature outside the training split's [min, max], a layer kind or quantizer the dataset never
had (tanh tables, average pooling, residual blocks, scaled-integer quantizers, ...), or a model that is not a
chain is listed in the estimate's ``assumptions["out_of_range"]`` (and each row's ``extra``) and logged as a
warning; the prediction is still returned (the trees' bounded correction on top of the power law), never
silently. :func:`surrogate_features` does not raise for them; :func:`surrogate_estimate` with
``strict=True`` raises :class:`~hwnas.cost.catalog.CostError` instead.

Not predicted: DSPs, BRAM18 and URAM are 0 in every design of the dataset (alkaid maps constant
multiplications to adders and tables to LUTs), so there is nothing to learn; the estimate reports them as 0
with that reason, exactly as the alkaid model does.

Fmax (format v2, optional in the file: ``targets["fmax_mhz"]``): nextpnr-ecp5's placed-and-routed Fmax of the
pipelined design on an ECP5-85 (speed 6), learned the same way (power law in the per-stage delay proxy
``stage_ns`` = min(delay proxy, cut-off), trees on the log ratio, conformalized 10–90 % interval) from its own
dataset, with its own training range (``feature_min``/``feature_max``/``kinds`` inside the target): excursions
from it are listed as ``fmax_mhz: ...`` in ``out_of_range``. The estimate carries it for ECP5 targets only
(``assumptions["fmax_mhz"]``, ``assumptions["interval"]["fmax_mhz"]``); for Xilinx targets
``assumptions["fmax_mhz"]`` is None and ``assumptions["fmax"]`` says why (Yosys gives no Xilinx timing and there
is no open Xilinx place and route, so there is nothing to learn from). A file without the target (v1) loads and
predicts no Fmax.

The model file is JSON (the trees' arrays); it is read with :mod:`json` and evaluated with numpy
(:class:`Forest`), never unpickled.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .catalog import CostError, Device, get_device
from .power import power_watts
from .result import HardwareEstimate, LayerRow

__all__ = ["FEATURES", "MODEL_FILE", "OPTIONAL", "TARGETS", "Forest", "Surrogate", "SurrogateFeatures", "csd_digits",
           "feature_column", "load_surrogate", "surrogate_estimate", "surrogate_features"]

log = logging.getLogger(__name__)

MODEL_FILE = Path(__file__).with_name("surrogate_v2.json")
"""The committed surrogate (made by ``bench/train_surrogate.py``)."""

FORMAT = "hwnas-surrogate"

TARGETS = ("luts", "ffs", "latency_cycles")
"""What the surrogate predicts (FFs and latency of the pipelined design; a combinational one has neither)."""

LEARNED = ("luts", "ffs", "delay_ns")
"""What its trees learn: the latency in cycles follows from the delay and the cut-off."""

OPTIONAL = ("fmax_mhz",)
"""Targets a file may add (format v2): nextpnr-ecp5's Fmax, learned on its own ECP5 dataset."""

DERIVED = ("stage_ns",)
"""Baseline columns computed from :data:`FEATURES`: ``stage_ns`` = min(delay_ns, cutoff_ns) (delay_ns if 0)."""

NO_XILINX_FMAX = ("no Fmax for Xilinx targets: the training data's Yosys synth_xilinx gives no timing and there is "
                  "no open Xilinx place and route; the surrogate's Fmax is learned from nextpnr-ecp5 on ECP5 only")

FEATURES = (
    "cutoff_ns", "layers", "dense_layers", "conv_layers", "macs", "nnz_products", "bops", "ebops", "weight_bits",
    "sparsity", "csd_digits", "csd_bits", "in_elems", "in_bits", "out_elems", "out_bits", "acc_elems", "acc_bits",
    "acc_bits_max", "relu_elems", "relu_bits", "pool_cmp", "pool_bits", "requant_elems", "requant_bits",
    "tree_depth", "path_bits", "delay_ns", "stages", "cut_in_bits", "cut_acc_bits",
    "fan_in_max", "w_bits_max", "x_bits_max",
    "table_elems",
)
"""The model-level feature vector, in the order the trees read it."""


# ------------------------------------------------------------------------------------------------ features
def _adder_ns(width: float) -> float:
    """The delay alkaid gives one adder of ``width`` bits (``alkaid.trace.passes.surrogate.cost_lat_add``, carry 1)."""
    return 1.09375 + 0.025390625 * max(width - 1.0, 0.0)

def csd_digits(codes: torch.Tensor) -> torch.Tensor:
    """Non-zero digits of each integer's canonical signed-digit (non-adjacent) form: ``popcount((3n ^ n) >> 1)``."""
    n = codes.abs().to(torch.int64)
    x = ((3 * n) ^ n) >> 1
    count = torch.zeros_like(x)
    while bool(x.any()):
        count += x & 1
        x = x >> 1
    return count


def _kind(mod: nn.Module) -> str:
    """The layer kind as the training data names it, e.g. ``QLinear``, ``QActivation(relu)``."""
    name = type(mod).__name__
    if name == "QActivation":
        mode = getattr(mod, "mode", "exact")
        return f"QActivation({mod.kind})" if mode == "exact" else f"QActivation({mod.kind},{mode})"
    return name


def _quantizer_kind(q: Any) -> str:
    from hwnas.quant.fixed_quantizer import FixedPointQuantizer

    if q is None:
        return "none"
    if isinstance(q, FixedPointQuantizer):
        return f"fixed({getattr(q.overflow_mode, 'name', q.overflow_mode)})"
    return type(q).__name__


def _fixed_range(q: Any, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lo, hi, bits, f) per element of a fixed-point quantizer's output: ``ap_fixed<k+i+f, k+i>``."""
    k, i, f = (t.detach().double().expand(shape) for t in q.kif())
    bits = (k + i + f).clamp(min=0)
    hi = torch.exp2(i) - torch.exp2(-f)
    lo = -k * torch.exp2(i)
    pruned = bits <= 0
    return lo.masked_fill(pruned, 0.0), hi.masked_fill(pruned, 0.0), bits, f.masked_fill(pruned, 0.0)


def _width(lo: torch.Tensor, hi: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Bits holding every value in [lo, hi] at resolution 2^-f (0 for a constant: no logic)."""
    lsb = torch.exp2(-f)
    mag = torch.maximum(-lo, hi + lsb) / lsb
    bits = torch.ceil(torch.log2(mag.clamp(min=1.0))) + (lo < 0).double()
    return torch.where(lo == hi, torch.zeros_like(bits), bits)


def _layers(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The hwnas layers and other modules of a chain, in order: ``nn.Sequential`` is descended, nothing else.

    A layer's quantizers are not listed; a block that is not a chain (a residual block, a custom module) is one
    opaque entry.
    """
    import hwnas.nn as hn

    out = []
    for name, child in module.named_children():
        full = f"{prefix}.{name}" if prefix else name
        if isinstance(child, hn.QLayer) or not isinstance(child, nn.Sequential):
            if not isinstance(child, nn.Identity | nn.Dropout):
                out.append((full, child))
        else:
            out.extend(_layers(child, full))
    return out


@dataclass
class SurrogateFeatures:
    """The feature vector of one model, the layer kinds it has, and what the training data never had."""

    values: dict[str, float]
    kinds: tuple[str, ...]
    unsupported: list[str] = field(default_factory=list)
    """Structures the features cannot describe faithfully (not a chain, a quantizer kind, ...)."""
    seconds: float = 0.0

    def vector(self) -> np.ndarray:
        """The values in :data:`FEATURES` order."""
        return np.array([self.values[n] for n in FEATURES], dtype=np.float64)


@dataclass
class _Step:
    """One layer on the walk: its value ranges in and out; ``live_*`` (set backwards) mark what reaches an output."""

    name: str
    mod: nn.Module
    op: str  # weighted | relu | pool | flatten | table | other
    lo: torch.Tensor  # the input after the input quantizer
    hi: torch.Tensor
    f: torch.Tensor
    bits: torch.Tensor
    out_bits: torch.Tensor  # the output after the output quantizer
    drop: torch.Tensor | None = None  # bits the input quantizer drops per element
    acc_bits: torch.Tensor | None = None  # weighted: the accumulators' widths (before an output quantizer)
    digits: torch.Tensor | None = None  # weighted: CSD digits per weight
    wbits: torch.Tensor | None = None
    active: torch.Tensor | None = None  # relu: elements whose input range spans 0
    live_in: torch.Tensor | None = None
    live_out: torch.Tensor | None = None


def _float_state(shape: tuple[int, ...] | torch.Size) -> tuple[torch.Tensor, ...]:
    """The stand-in range of float data: ±2^15 at 2^-16, 32 bits."""
    hi = torch.full(tuple(shape), 2.0**15, dtype=torch.float64)
    return -hi, hi, torch.full_like(hi, 16.0), torch.full_like(hi, 32.0)


def _requantize(q: Any, shape: tuple[int, ...], state: tuple[torch.Tensor, ...] | None
                ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]:
    """``state`` (lo, hi, f, bits) through the fixed-point quantizer ``q``: saturated, rounded; and the bits dropped.

    A value that comes out constant (a pruned element, or a range inside one quantization step) has width 0.
    """
    qlo, qhi, qbits, qf = _fixed_range(q, shape)
    if state is None:
        return (qlo, qhi, qf, qbits), None
    lo, hi, _, bits = state
    lsb = torch.exp2(-qf)
    nlo = torch.round(torch.minimum(torch.maximum(lo, qlo), qhi) / lsb) * lsb
    nhi = torch.round(torch.minimum(torch.maximum(hi, qlo), qhi) / lsb) * lsb
    nbits = _width(nlo, nhi, qf)
    return (nlo, nhi, qf, nbits), (bits - nbits).clamp(min=0)


def _transpose(fn: Any, live_out: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
    """Which inputs of the linear map ``fn`` (a sample without batch axis) reach a live output: ``fnᵀ·live > 0``."""
    with torch.enable_grad():
        x = torch.zeros(in_shape, dtype=torch.float64, requires_grad=True)
        y = fn(x)
        (g,) = torch.autograd.grad((y * live_out.to(y.dtype)).sum(), x)
    return g > 0


def surrogate_features(model: nn.Module, input_shape: tuple[int, ...], latency_cutoff_ns: float
                       ) -> SurrogateFeatures:
    """The model-level features of ``model`` (module docstring); ``latency_cutoff_ns`` ≤ 0: combinational.

    One forward pass on a zero sample (to learn each layer's input shape); a walk over the layers in order,
    carrying each element's value range, resolution and width (interval arithmetic, as alkaid does); a walk
    back marking what reaches a non-constant output (logic that reaches none is removed by synthesis); then
    the sums over what is live.
    """
    import hwnas.nn as hn
    from hwnas.nn.layers import _QWeighted
    from hwnas.quant.fixed_quantizer import FixedPointQuantizer

    t0 = time.perf_counter()
    was = model.training
    model.eval()
    v = dict.fromkeys(FEATURES, 0.0)
    v["cutoff_ns"] = float(latency_cutoff_ns) if latency_cutoff_ns > 0 else 0.0
    kinds: list[str] = []
    unsupported: list[str] = []
    if not isinstance(model, nn.Sequential):
        unsupported.append(f"model: {type(model).__name__} is not an nn.Sequential chain (trained on chains)")
    steps: list[_Step] = []
    with torch.no_grad():
        model(torch.zeros((1, *input_shape)))
        state: tuple[torch.Tensor, ...] | None = None  # (lo, hi, f, bits) per element; None: float / unknown
        for name, mod in _layers(model):
            kinds.append(_kind(mod))
            if isinstance(mod, nn.Flatten):
                if state is not None:
                    shape = tuple(state[0].shape)
                    out = tuple(t.reshape(-1) if mod.start_dim == 1 else t for t in state)
                    steps.append(_Step(name, mod, "flatten", *state, out_bits=out[3], live_in=None))
                    steps[-1].drop = torch.zeros(shape, dtype=torch.float64)
                    state = out
                continue
            if not isinstance(mod, hn.QLayer):  # a plain torch module or a block: its output is not followed
                if list(mod.children()):
                    unsupported.append(f"{name}: {type(mod).__name__} is a block, not a chain of hwnas layers")
                state = None
                continue
            layer_shape = tuple(mod.input_shape) if mod.input_shape is not None else tuple(input_shape)
            for slot in ("input_quantizer", "weight_quantizer", "bias_quantizer", "output_quantizer"):
                q = getattr(mod, slot, None)
                if q is not None and not isinstance(q, FixedPointQuantizer):
                    unsupported.append(f"{name}.{slot}: {type(q).__name__} (trained on fixed-point quantizers)")
            if state is not None and state[0].numel() == math.prod(layer_shape):
                state = tuple(t.reshape(layer_shape) for t in state)
            elif state is not None:
                unsupported.append(f"{name}: input of {math.prod(layer_shape)} elements after "
                                   f"{state[0].numel()} (not a chain)")
                state = None
            drop = None
            if isinstance(mod.input_quantizer, FixedPointQuantizer):
                state, drop = _requantize(mod.input_quantizer, layer_shape, state)
            if state is None:
                state = _float_state(layer_shape)
                unsupported.append(f"{name}: float input (trained on fixed-point inputs)")
            lo, hi, f, bits = state
            if drop is None:
                drop = torch.zeros_like(bits)
            step = _Step(name, mod, "other", lo, hi, f, bits, out_bits=bits, drop=drop)
            if isinstance(mod, _QWeighted):
                step.op = "weighted"
                state = _weighted(mod, step)
            elif isinstance(mod, hn.QActivation) and mod.kind in ("relu", "identity"):
                step.op = "relu" if mod.kind == "relu" else "other"
                if mod.kind == "relu":
                    step.active = (lo < 0) & (hi > 0)
                    lo, hi = lo.clamp(min=0), hi.clamp(min=0)
                state = (lo, hi, f, _width(lo, hi, f))
            elif isinstance(mod, hn.QMaxPool1d | hn.QMaxPool2d):
                step.op = "pool"
                plo, phi, pf = (mod._pool(t.unsqueeze(0)).squeeze(0) for t in (lo, hi, f))
                state = (plo, phi, pf, _width(plo, phi, pf))
            else:  # tables, average pooling, softmax, layer norm, ...: kinds the data never had
                step.op = "table" if isinstance(mod, hn.QActivation) else "other"
                state = _float_state(mod(torch.zeros((1, *layer_shape))).shape[1:])
            if isinstance(mod.output_quantizer, FixedPointQuantizer):
                state, _ = _requantize(mod.output_quantizer, tuple(state[0].shape), state)
            step.out_bits = state[3]
            steps.append(step)
    # backwards: what reaches a non-constant model output
    live = steps[-1].out_bits > 0 if steps else None
    for step in reversed(steps):
        if live is None or live.numel() != step.out_bits.numel():  # after a module the walk did not follow
            live = torch.ones(step.out_bits.shape, dtype=torch.bool)
        step.live_out = live.reshape(step.out_bits.shape)
        in_shape = tuple(step.bits.shape)
        if step.op == "weighted":
            nz = (step.digits > 0).double()
            mod = step.mod
            step.live_in = _transpose(lambda x, m=mod, k=nz: m._op(x.unsqueeze(0), k).squeeze(0), step.live_out,
                                      in_shape)
        elif step.op == "pool":
            pool = {1: torch.nn.functional.avg_pool1d, 2: torch.nn.functional.avg_pool2d}[step.mod._spatial]
            m = step.mod
            step.live_in = _transpose(lambda x, m=m, p=pool: p(x.unsqueeze(0), m.kernel_size, m.stride,
                                                                m.padding).squeeze(0), step.live_out, in_shape)
        elif step.op in ("relu", "flatten"):
            step.live_in = step.live_out.reshape(in_shape)
        else:
            step.live_in = torch.ones(in_shape, dtype=torch.bool)
        step.live_in = step.live_in & (step.bits > 0)
        live = step.live_in
    _sum_features(steps, v)
    if v["cutoff_ns"] > 0:  # the pipeline alkaid would cut: stages, and the bits crossing the cuts
        v["stages"] = max(math.ceil(v["delay_ns"] / v["cutoff_ns"]), 1)
        v["cut_in_bits"] /= v["cutoff_ns"]
        v["cut_acc_bits"] /= v["cutoff_ns"]
    else:
        v["cut_in_bits"] = v["cut_acc_bits"] = 0.0
    v["sparsity"] = 1.0 - v["nnz_products"] / v["macs"] if v["macs"] else 0.0
    with torch.no_grad():  # the figures of hwnas.cost.model_metrics (data-flow widths, pooling included)
        v["bops"], v["ebops"], v["weight_bits"] = hn.bops(model), float(hn.ebops(model)), hn.weight_bits(model)
    model.train(was)
    return SurrogateFeatures(v, tuple(kinds), unsupported, time.perf_counter() - t0)


def _weighted(mod: Any, step: _Step) -> tuple[torch.Tensor, ...]:
    """A Dense/Conv layer: its weights' CSD digits, and the range, resolution and width of its accumulators."""
    from hwnas.quant.fixed_quantizer import FixedPointQuantizer

    w = mod.quantized_weight().detach().double()
    b = mod.quantized_bias()
    wq = mod.weight_quantizer
    if isinstance(wq, FixedPointQuantizer):
        _, _, wbits, wf = _fixed_range(wq, tuple(w.shape))
    else:
        wbits = torch.full(w.shape, 32.0, dtype=torch.float64)
        wf = torch.full(w.shape, 16.0, dtype=torch.float64)
    nz = w != 0
    step.digits = csd_digits(torch.round(w * torch.exp2(wf))).double()
    step.wbits = torch.where(nz, wbits, torch.zeros_like(wbits))

    def op(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return mod._op(x.unsqueeze(0).to(k.dtype), k).squeeze(0)

    wp, wn = w.clamp(min=0), w.clamp(max=0)
    acc_hi = op(step.hi, wp) + op(step.lo, wn)
    acc_lo = op(step.lo, wp) + op(step.hi, wn)
    bshape = (-1,) + (1,) * (acc_hi.dim() - 1)
    if b is not None:
        bb = b.detach().double().reshape(bshape)
        acc_hi = acc_hi + bb
        acc_lo = acc_lo + bb
    # resolution: the finest product reaching each output channel
    wf_max = torch.where(nz, wf, torch.full_like(wf, -64.0)).reshape(w.shape[0], -1).amax(dim=1)
    acc_f = (wf_max + float(step.f.max())).clamp(min=0).reshape(bshape).expand(acc_hi.shape).clone()
    step.acc_bits = _width(acc_lo, acc_hi, acc_f)
    return acc_lo, acc_hi, acc_f, step.acc_bits


def _sum_features(steps: list[_Step], v: dict[str, float]) -> None:
    """Add every step's live figures to ``v``."""
    first = next((s for s in steps if s.op != "flatten"), None)
    if first is not None:
        v["in_elems"] = float(first.live_in.sum())
        v["in_bits"] = float(first.bits[first.live_in].sum())
    if steps:
        last = steps[-1]
        v["out_elems"] = float(last.live_out.sum())
        v["out_bits"] = float(last.out_bits[last.live_out].sum())
    for s in steps:
        live_in, live_out = s.live_in.double(), s.live_out.double()
        if s.op != "flatten":
            dropped = s.drop * live_in
            v["requant_elems"] += float((dropped > 0).sum())
            v["requant_bits"] += float(dropped.sum())
            if bool(s.live_in.any()):
                v["x_bits_max"] = max(v["x_bits_max"], float(s.bits[s.live_in].max()))
        if s.op == "weighted":
            mod = s.mod

            def op(x: torch.Tensor, k: torch.Tensor, m: Any = mod) -> torch.Tensor:
                return m._op(x.unsqueeze(0), k).squeeze(0)

            nz = (s.digits > 0).double()
            v["layers"] += 1
            v["dense_layers" if isinstance(mod, nn.Linear) else "conv_layers"] += 1
            v["macs"] += float(mod.macs())
            v["nnz_products"] += float((op(live_in, nz) * live_out).sum())
            per_out = op(live_in, s.digits) * live_out
            v["csd_digits"] += float(per_out.sum())
            v["csd_bits"] += float((op(s.bits * live_in, s.digits) * live_out).sum())
            acc = s.acc_bits * live_out
            v["acc_elems"] += float(live_out.sum())
            v["acc_bits"] += float(acc.sum())
            v["acc_bits_max"] = max(v["acc_bits_max"], float(acc.max()))
            v["fan_in_max"] = max(v["fan_in_max"], float(math.prod(s.digits.shape[1:])))
            v["w_bits_max"] = max(v["w_bits_max"], float(s.wbits.max()))
            depth = math.ceil(math.log2(float(per_out.max()) + 1.0)) if float(per_out.max()) > 0 else 0
            v["tree_depth"] += depth
            v["path_bits"] += depth * float(acc.max())
            delay = depth * _adder_ns(float(acc.max()))
            v["delay_ns"] += delay
            v["cut_in_bits"] += delay * float((s.bits * live_in).sum())
            v["cut_acc_bits"] += delay * float(acc.sum())
        elif s.op == "relu":
            active = s.active & s.live_in
            v["relu_elems"] += float(active.sum())
            v["relu_bits"] += float(s.bits[active].sum())
            if bool(active.any()):
                delay = _adder_ns(float(s.bits[active].max()))
                v["delay_ns"] += delay
                v["cut_in_bits"] += delay * float((s.bits * live_in).sum())
        elif s.op == "pool":
            window = s.mod._window()
            pooled = s.mod._pool(s.bits.unsqueeze(0)).squeeze(0)
            v["pool_cmp"] += float(live_out.sum() * (window - 1))
            v["pool_bits"] += float((pooled * live_out).sum() * (window - 1))
            levels = 2 * math.ceil(math.log2(window)) if bool(s.live_out.any()) else 0
            delay = levels * _adder_ns(float(pooled.max()))
            v["delay_ns"] += delay
            v["cut_in_bits"] += delay * float((s.bits * live_in).sum())
        elif s.op == "table":
            v["table_elems"] += float(live_in.sum())


def feature_column(x: np.ndarray, name: str) -> np.ndarray:
    """The column ``name`` of feature rows ``x``: one of :data:`FEATURES` or :data:`DERIVED`."""
    if name == "stage_ns":  # the delay of one pipeline stage: the cut-off bounds it (0: combinational)
        delay, cut = x[:, FEATURES.index("delay_ns")], x[:, FEATURES.index("cutoff_ns")]
        return np.where(cut > 0, np.minimum(delay, cut), delay)
    return x[:, FEATURES.index(name)]


# ------------------------------------------------------------------------------------------------ the trees
class Forest:
    """A boosted ensemble rebuilt from its arrays: ``init + learning_rate · Σ tree(x)`` (scikit-learn's sum).

    Every tree is stored as parallel arrays (``feature``, ``threshold``, ``left``, ``right``, ``value``; -1 for
    the children of a leaf), padded to one node count so all trees descend together. scikit-learn's trees
    compare float32 features with float64 thresholds that lie between two float32 values; the file stores the
    float32 just below each threshold, which sends every float32 feature the same way (and is short in JSON).
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        trees = spec["trees"]
        n = max(len(t["left"]) for t in trees)

        def pad(key: str, fill: float, dtype: Any) -> np.ndarray:
            return np.array([list(t[key]) + [fill] * (n - len(t[key])) for t in trees], dtype=dtype)

        self.init = float(spec["init"])
        self.learning_rate = float(spec["learning_rate"])
        self.feature = pad("feature", 0, np.int64)
        self.threshold = pad("threshold", 0.0, np.float32)
        self.left = pad("left", -1, np.int64)
        self.right = pad("right", -1, np.int64)
        self.value = pad("value", 0.0, np.float64)
        self.depth = int(spec.get("max_depth", 32))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions for the rows of ``x`` (samples × features)."""
        x = np.asarray(x, dtype=np.float32)
        n_trees, n = self.feature.shape[0], x.shape[0]
        rows = np.arange(n_trees)[:, None]
        cols = np.arange(n)[None, :]
        node = np.zeros((n_trees, n), dtype=np.int64)
        for _ in range(self.depth + 1):
            left = self.left[rows, node]
            leaf = left < 0
            if leaf.all():
                break
            go_left = x[cols, self.feature[rows, node]] <= self.threshold[rows, node]
            node = np.where(leaf, node, np.where(go_left, left, self.right[rows, node]))
        out = np.full(n, self.init)
        for t in range(n_trees):  # sum in stage order, as scikit-learn does
            out += self.learning_rate * self.value[t, node[t]]
        return out

    @staticmethod
    def from_sklearn(gbr: Any) -> dict[str, Any]:
        """The JSON-able arrays of a fitted ``GradientBoostingRegressor`` (training script only)."""
        init = gbr.init_
        base = 0.0 if isinstance(init, str) else float(np.ravel(init.constant_)[0])
        trees = []
        for est in gbr.estimators_[:, 0]:
            tr = est.tree_
            leaf = tr.children_left < 0
            thr = tr.threshold.astype(np.float32)
            below = thr.astype(np.float64) > tr.threshold  # rounded up: take the float32 below
            thr[below] = np.nextafter(thr[below], np.float32(-np.inf))
            trees.append({"feature": np.where(leaf, 0, tr.feature).astype(int).tolist(),
                          "threshold": [0.0 if lf else float(str(t)) for t, lf in zip(thr, leaf, strict=True)],
                          "left": tr.children_left.astype(int).tolist(),
                          "right": tr.children_right.astype(int).tolist(),
                          "value": [float(f"{val:.10g}") if lf else 0.0
                                    for val, lf in zip(tr.value[:, 0, 0], leaf, strict=True)]})
        return {"init": float(f"{base:.17g}"), "learning_rate": float(gbr.learning_rate),
                "max_depth": int(gbr.max_depth), "trees": trees}


@dataclass
class Surrogate:
    """A loaded surrogate: per target a power-law baseline and three forests (``point``, ``p10``, ``p90``).

    Targets (:data:`LEARNED`): ``luts`` and ``ffs`` (Yosys), ``delay_ns`` (alkaid's combinational critical path,
    which does not depend on the cut-off); the latency in cycles is ``max(ceil(delay_ns / cutoff), 1)``.
    """

    spec: dict[str, Any]
    forests: dict[str, dict[str, Forest]]

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Surrogate:
        """Rebuild from the JSON object (checks the format and the feature list)."""
        if spec.get("format") != FORMAT:
            raise CostError(f"surrogate: not a {FORMAT} file (format {spec.get('format')!r})")
        if tuple(spec["features"]) != FEATURES:
            raise CostError("surrogate: the file's feature list differs from this hwnas version's; retrain it "
                            "with bench/train_surrogate.py")
        have = set(spec["targets"])
        if not set(LEARNED) <= have or not have <= set(LEARNED) | set(OPTIONAL):
            raise CostError(f"surrogate: the file's targets {sorted(spec['targets'])} are not {list(LEARNED)} "
                            f"(and optionally {list(OPTIONAL)})")
        forests = {t: {q: Forest(m) for q, m in spec["targets"][t]["models"].items()}
                   for t in (*LEARNED, *OPTIONAL) if t in have}
        return cls(spec, forests)

    @classmethod
    def load(cls, path: str | Path) -> Surrogate:
        """Read a surrogate JSON file (plain JSON, no pickle)."""
        try:
            spec = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CostError(f"surrogate: cannot read {path}: {err}") from err
        return cls.from_spec(spec)

    def save(self, path: str | Path) -> None:
        """Write the JSON file."""
        Path(path).write_text(json.dumps(self.spec, separators=(",", ":")) + "\n")

    @property
    def name(self) -> str:
        """The model's name and version, e.g. ``surrogate_v2``."""
        return str(self.spec.get("name", "surrogate"))

    @property
    def has_fmax(self) -> bool:
        """Whether the file has the (ECP5) Fmax target."""
        return "fmax_mhz" in self.forests

    def out_of_range(self, feats: SurrogateFeatures, target: str | None = None) -> list[str]:
        """Why this query lies outside the training data (empty: inside).

        ``target``: the range of that target's own dataset (``fmax_mhz``), where the target records one.
        """
        src = self.spec["targets"][target] if target is not None else self.spec
        src = src if "feature_min" in src else self.spec
        out = list(feats.unsupported)
        known = set(src.get("kinds", self.spec["kinds"]))
        for kind in dict.fromkeys(feats.kinds):
            if kind not in known:
                out.append(f"layer kind {kind} never seen in training (seen: {', '.join(sorted(known))})")
        lo, hi = src["feature_min"], src["feature_max"]
        for i, name in enumerate(FEATURES):
            x = feats.values[name]
            if x < lo[i] - 1e-9 * abs(lo[i]) or x > hi[i] + 1e-9 * abs(hi[i]):
                out.append(f"{name} = {x:.4g} outside the training range [{lo[i]:.4g}, {hi[i]:.4g}]")
        return out

    def baseline(self, target: str, x: np.ndarray) -> np.ndarray:
        """The power law ``a·max(feature, 1)^b`` the trees of ``target`` correct."""
        base = self.spec["targets"][target]["baseline"]
        col = feature_column(x, base["feature"])
        return base["a"] * np.maximum(col, 1.0) ** base["b"]

    def predict_matrix(self, x: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """``{target: {"point", "p10", "p90": values}}`` for the rows of ``x`` (feature vectors, :data:`FEATURES`).

        ``point`` is the squared-error model (a geometric mean, as it fits logs); ``p10``/``p90`` the quantile
        models, each moved out by the target's ``widen`` (conformalized on the training split's cross-validation,
        so that about 80 % of designs fall inside), and widened to contain the point where they do not.
        """
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        out: dict[str, dict[str, np.ndarray]] = {}
        for target, models in self.forests.items():
            base = self.baseline(target, x)
            widen = float(self.spec["targets"][target].get("widen", 0.0))
            point = base * np.exp(models["point"].predict(x))
            p10 = base * np.exp(models["p10"].predict(x) - widen)
            p90 = base * np.exp(models["p90"].predict(x) + widen)
            out[target] = {"point": point, "p10": np.minimum(np.minimum(p10, p90), point),
                           "p90": np.maximum(np.maximum(p10, p90), point)}
        return out

    def predict(self, feats: SurrogateFeatures) -> dict[str, dict[str, float]]:
        """``{target: {"point", "p10", "p90"}}`` for one model: :data:`TARGETS`, ``delay_ns`` (and ``fmax_mhz``).

        ``fmax_mhz`` where the file has it (nextpnr-ecp5 on ECP5). A combinational design (``cutoff_ns`` 0) has no
        FFs, no latency and no Fmax (no clock).
        """
        res = self.predict_matrix(feats.vector()[None, :])
        out = {t: {q: float(v[0]) for q, v in r.items()} for t, r in res.items()}
        cutoff = feats.values["cutoff_ns"]
        if cutoff > 0:
            out["latency_cycles"] = {q: float(max(math.ceil(d / cutoff), 1)) for q, d in out["delay_ns"].items()}
        else:
            out["ffs"] = dict.fromkeys(("point", "p10", "p90"), 0.0)
            out["latency_cycles"] = dict.fromkeys(("point", "p10", "p90"), 0.0)
            out.pop("fmax_mhz", None)
        return out


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float) -> Surrogate:
    return Surrogate.load(path)


def load_surrogate(path: str | Path | None = None) -> Surrogate:
    """The surrogate in ``path`` (default :data:`MODEL_FILE`), cached while the file is unchanged."""
    p = Path(path) if path is not None else MODEL_FILE
    if not p.is_file():
        raise CostError(f"surrogate: model file {p} not found; make it with bench/train_surrogate.py")
    return _load_cached(str(p), p.stat().st_mtime)


_WARNED: set[tuple[str, tuple[str, ...]]] = set()
"""Excursions already logged as warnings in this process (later ones are logged at debug level)."""


def surrogate_estimate(model: nn.Module, target: str | Device, input_shape: tuple[int, ...], *,
                       clock_mhz: float | None = None, latency_cutoff_ns: float | None = None,
                       surrogate: Surrogate | str | Path | None = None, strict: bool = False) -> HardwareEstimate:
    """Estimate ``model`` with the learned surrogate (module docstring).

    ``latency_cutoff_ns`` ≤ 0 or None: pipelined at the clock period, as the alkaid model does. The estimate
    has one row (the whole design) whose ``extra`` holds the 10–90 % interval per target and the features;
    ``assumptions`` holds ``interval`` (``{target: [p10, p90]}``) and ``out_of_range`` (a list of reasons, empty
    inside the training data). ``strict``: raise :class:`CostError` for a query outside the training range
    instead of warning.
    """
    t0 = time.perf_counter()
    device = get_device(target)
    f = float(clock_mhz or device.clock_mhz)
    cutoff = float(latency_cutoff_ns) if latency_cutoff_ns is not None and latency_cutoff_ns > 0 else 1000.0 / f
    sur = surrogate if isinstance(surrogate, Surrogate) else load_surrogate(surrogate)
    try:
        feats = surrogate_features(model, tuple(input_shape), cutoff)
    except (RuntimeError, ValueError, TypeError) as err:
        raise CostError(f"model: the surrogate cannot read this model's features ({type(err).__name__}: {err})"
                        ) from err
    oor = sur.out_of_range(feats)
    ecp5 = device.yosys_family == "ecp5"
    fmax_wanted = ecp5 and sur.has_fmax
    if fmax_wanted:  # the Fmax trees' own (smaller) dataset: excursions beyond what is already listed
        fmax_spec = sur.spec["targets"]["fmax_mhz"]
        oor += [f"fmax_mhz: {m}" for m in sur.out_of_range(feats, "fmax_mhz") if m not in oor]
        trained_on = fmax_spec.get("device")
        if trained_on and get_device(trained_on).name != device.name:
            oor.append(f"fmax_mhz: learned on {trained_on}, not {device.name}")
    if oor and strict:
        raise CostError("model: outside the surrogate's training range: " + "; ".join(oor))
    if oor:  # a warning per kind of excursion (which features, layer kinds); the estimate always carries it
        key = (sur.name, tuple(m.split(" ", 1)[0] if " = " in m else m for m in oor))
        level = logging.DEBUG if key in _WARNED else logging.WARNING
        _WARNED.add(key)
        log.log(level, "surrogate %s: query outside its training range, the estimate extrapolates (its 10-90 %% "
                "interval is calibrated inside the range only): %s", sur.name, "; ".join(oor))
    pred = sur.predict(feats)
    cycles = int(pred["latency_cycles"]["point"])
    interval = {t: [pred[t]["p10"], pred[t]["p90"]] for t in TARGETS}
    fmax = pred.get("fmax_mhz") if fmax_wanted else None
    if fmax is not None:
        interval["fmax_mhz"] = [fmax["p10"], fmax["p90"]]
        ft = sur.spec["targets"]["fmax_mhz"]
        fmax_note = (f"nextpnr-ecp5 placed-and-routed Fmax ({ft.get('tool', 'nextpnr-ecp5')} on {ft.get('device')}, "
                     f"{ft.get('train_designs')} designs of {ft.get('dataset')}): trees × "
                     f"{ft['baseline']['feature']} power law; the design pipelined at {cutoff:g} ns")
    elif not ecp5:
        fmax_note = NO_XILINX_FMAX
    else:
        fmax_note = f"not predicted: the surrogate file {sur.name} has no Fmax target (retrain with an ECP5 dataset)"
    from hwnas.nn import macs

    row = LayerRow(name="design", type="surrogate", in_shape=tuple(input_shape), out_shape=(), macs=int(macs(model)),
                   cycles=cycles, luts=pred["luts"]["point"], ffs=pred["ffs"]["point"], dsps=0.0, bram18=0.0,
                   uram=0.0, weight_bits=feats.values["weight_bits"],
                   extra={"interval": interval, "delay_ns": pred["delay_ns"], "out_of_range": oor,
                          "fmax_mhz": fmax, "features": dict(feats.values)})
    seconds = time.perf_counter() - t0
    targets = sur.spec["targets"]
    est = HardwareEstimate(f"surrogate ({sur.name})", device, f, [row], cycles, 1, assumptions={
        "model": f"learned surrogate {sur.name}: gradient-boosted trees on per-layer features, trained on "
                 f"{sur.spec.get('designs')} designs of {sur.spec.get('dataset')} ({sur.spec.get('tool')}); "
                 "no trace, no RTL",
        "device": device.name, "clock_mhz": f, "latency_cutoff_ns": cutoff,
        "luts": f"trees × {targets['luts']['baseline']['feature']} power law (Yosys LUTs of the RTL design)"
                + (" — Xilinx LUT6 counts (synth_xilinx xcup); ECP5 LUT4s are not learned" if ecp5 else ""),
        "ffs": f"trees × {targets['ffs']['baseline']['feature']} power law (Yosys FFs of the design pipelined at "
               "the cut-off)",
        "latency_cycles": "ceil(predicted combinational delay / cut-off), at least 1 (alkaid's pipeline)",
        "fmax_mhz": None if fmax is None else fmax["point"], "fmax": fmax_note,
        "interval": interval, "out_of_range": oor,
        "dsps": "0: every design of the training data has 0 DSPs (constant multiplications become adders)",
        "bram18": "0: every design of the training data has 0 BRAM (no memories)",
        "ii": 1, "seconds": seconds})
    t = est.totals
    est.power_w = power_watts(device, f, t["luts"], t["ffs"], t["bram18"], t["uram"], t["dsps"])
    return est
