"""hls4ml-style estimates (io_parallel): timing from the reuse factor, resources from EBOPs.

Per conv/linear layer with reuse factor ``R`` (each multiplier is reused R times):

* Latency strategy: ``II = R``; latency ``R + ceil(log2(n_in)) + 1`` cycles (R multiply cycles, a
  pipelined adder tree over the n_in terms of each dot product, one output register).
* Resource strategy: the same II; latency ``R + ceil(log2(n_in)) + 3`` (extra load/accumulate stages).
* Distributed arithmetic (da4ml, ``strategy="distributed_arithmetic"``): constant multiplications become
  adder graphs; ``R`` must be 1, II = 1, latency ``ceil(log2(n_in)) + 2``.

Resources are *fits* from seed 001 (HGQ, Fig. 3 and §5.2), labelled as such and replaceable by a
calibrated surrogate:

* plain hls4ml (Latency/Resource): ``LUT + 55·DSP ≈ EBOPs / R``. Multiplications whose operands are both
  wider than ``dsp_threshold`` bits (default 9) are counted as DSPs (one DSP per R of them); the rest of
  the EBOPs are LUTs.
* distributed arithmetic: ``LUT ≈ EBOPs^0.985``, no DSPs.

ReLU costs one LUT per output bit (a mux), pooling the EBOPs of its comparisons/additions; BRAM18 is 0
for io_parallel Latency (weights are constants in logic) and, for the Resource strategy, the weight
bits spread over RAMB18 blocks. FFs are not modelled (reported as 0, stated in ``assumptions``).

Models beyond a chain (:mod:`hwnas.cost.graph`): an element-wise ``add`` (hls4ml's ``Merge``/``Add``) is one
adder per output element and extra operand at the widest operand width — one LUT per bit with the carry
chain — in one cycle; a global pool (``GlobalPooling``) is ``positions − 1`` adders (comparators for max) per
channel at the operand width, an adder tree of ``ceil(log2 positions)`` cycles; a ``concat`` is wiring (no
LUTs, no cycles). io_parallel branches run concurrently, so the latency is the longest path through the
data-flow graph (the sum of the rows for a chain).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from hwnas.nn import FLOAT_BITS
from hwnas.nn.base import bits_of

from .catalog import CostError, Device, get_device
from .graph import INPUT, critical_path, describe_model
from .power import power_watts
from .result import HardwareEstimate, LayerRow

__all__ = ["hls4ml_estimate"]

_STRATEGIES = ("latency", "resource", "distributed_arithmetic")
DA_EXPONENT = 0.985
DSP_EQUIV_LUTS = 55.0


def _dsp_mults(layer: Any, up: float, threshold: float) -> float:
    """Number of multiplications whose two operands are both wider than ``threshold`` bits."""
    bx = bits_of(layer.input_quantizer, layer.input_shape, torch.tensor(float(up)))
    bw = bits_of(layer.weight_quantizer, tuple(layer.weight.shape))
    wide_x = (bx > threshold).float().unsqueeze(0)
    wide_w = (bw > threshold).float()
    return float(layer._op(wide_x, wide_w).sum())


def hls4ml_estimate(model: Any, target: str | Device, input_shape: tuple[int, ...], *,
                    reuse_factor: int | dict[str, int] = 1, strategy: str = "latency",
                    clock_mhz: float | None = None, dsp_threshold: float = 9.0) -> HardwareEstimate:
    """Estimate ``model`` as an hls4ml io_parallel project (see the module docstring for every formula).

    ``reuse_factor`` is one value or a dict per layer name; it must divide each layer's multiplications
    per output (hls4ml's rule: R ≤ n_in·n_out and n_in·n_out % R == 0 for dense layers).
    """
    device = get_device(target)
    if strategy not in _STRATEGIES:
        raise CostError(f"strategy: unknown {strategy!r}; expected one of {_STRATEGIES}")
    layers = describe_model(model, input_shape)
    names = {li.name for li in layers}
    if isinstance(reuse_factor, dict):
        unknown = sorted(set(reuse_factor) - names)
        if unknown:
            raise CostError(f"reuse_factor: no layer named {unknown}")
    rows: list[LayerRow] = []
    iis: list[int] = []
    with torch.no_grad():
        for li in layers:
            m = li.module
            row = LayerRow(li.name, li.type_name, li.in_shape, li.out_shape, macs=li.macs,
                           weight_bits=li.weight_bits, act_bits=li.act_bits)
            if li.kind in ("conv", "linear"):
                r = reuse_factor.get(li.name, 1) if isinstance(reuse_factor, dict) else reuse_factor
                n_in = math.prod(m.weight.shape[1:])
                n_mult = m.weight.numel()
                if isinstance(r, bool) or not isinstance(r, int) or r < 1 or n_mult % r:
                    raise CostError(f"layer {li.name}: reuse factor {r!r} must be a positive divisor of "
                                    f"{n_mult} (multiplications per output position)")
                if strategy == "distributed_arithmetic" and r != 1:
                    raise CostError(f"layer {li.name}: distributed arithmetic needs reuse factor 1, got {r}")
                if li.act_bits >= FLOAT_BITS or li.weight_bits >= FLOAT_BITS:
                    raise CostError(f"layer {li.name}: float operands have no fixed-point hardware cost; "
                                    "quantize its input and weights")
                eb = float(m.ebops(torch.tensor(li.act_bits)))
                depth = math.ceil(math.log2(max(n_in, 2)))
                if strategy == "distributed_arithmetic":
                    row.luts = eb ** DA_EXPONENT
                    row.cycles = depth + 2
                    ii = 1
                else:
                    n_dsp = _dsp_mults(m, li.act_bits, dsp_threshold)
                    row.dsps = math.ceil(n_dsp / r)
                    row.luts = max(eb / r - DSP_EQUIV_LUTS * row.dsps, 0.0)
                    row.cycles = r + depth + (1 if strategy == "latency" else 3)
                    if strategy == "resource":
                        wbits = float(m.weight_quantizer.element_bits().expand(m.weight.shape).sum())
                        row.bram18 = math.ceil(wbits / (18 * 1024)) if r > 1 else 0
                    ii = r
                row.extra.update({"reuse_factor": r, "ebops": eb, "ii": ii})
                iis.append(ii)
            elif li.kind == "act":
                row.luts = math.prod(li.out_shape) * min(li.act_bits, FLOAT_BITS)
                row.cycles = 1
            elif li.kind == "pool":
                row.luts = float(m.ebops(torch.tensor(li.act_bits)))
                row.cycles = 1
            elif li.kind == "add":
                adders = li.elements * (len(li.inputs) - 1)
                row.luts = adders * min(li.act_bits, FLOAT_BITS)
                row.cycles = 1
                row.extra.update({"adders": adders, "adder_bits": li.act_bits})
            elif li.kind == "gpool":
                adders = li.elements * (li.positions - 1)
                row.luts = adders * min(li.act_bits, FLOAT_BITS)
                row.cycles = max(math.ceil(math.log2(max(li.positions, 1))), 1)
                row.extra.update({"adders": adders, "adder_bits": li.act_bits})
            rows.append(row)
    index = {li.name: i for i, li in enumerate(layers)}
    latency = critical_path([r.cycles for r in rows],
                            [tuple(index[s] for s in li.inputs if s != INPUT) for li in layers])
    f = float(clock_mhz or device.clock_mhz)
    est = HardwareEstimate(f"hls4ml io_parallel ({strategy})", device, f, rows, latency,
                           max(iis, default=1), assumptions={
                               "model": "hls4ml-style io_parallel estimate",
                               "strategy": strategy, "reuse_factor": reuse_factor, "device": device.name,
                               "clock_mhz": f,
                               "resources": ("fit LUT + 55·DSP ≈ EBOPs/R (seed 001 Fig. 3)"
                                             if strategy != "distributed_arithmetic"
                                             else "fit LUT ≈ EBOPs^0.985 (seed 001 Fig. 3)"),
                               "dsp_threshold_bits": dsp_threshold,
                               "ff": "not modelled (0)",
                           })
    if any(li.kind in ("add", "concat", "gpool") for li in layers):
        est.assumptions["graph"] = ("add: one adder per element at the widest operand width, 1 cycle; global pool: "
                                    "positions−1 adders per channel, ceil(log2 positions) cycles; concat: wiring; "
                                    "latency = longest path through the data flow")
    t = est.totals
    est.power_w = power_watts(device, f, t["luts"], t["ffs"], t["bram18"], t["uram"], t["dsps"])
    return est
