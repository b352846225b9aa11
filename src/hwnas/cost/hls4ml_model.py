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

ReLU costs one LUT per output bit (a mux), an identity activation without quantizers nothing (hls4ml has no layer
for it; it is what a bipolar activation leaves, whose sign is the next layer's input quantizer), pooling the
EBOPs of its comparisons/additions; BRAM18 is 0 for io_parallel Latency (weights are constants in logic) and,
for the Resource strategy, the weight bits spread over RAMB18 blocks. FFs are not modelled (reported as 0,
stated in ``assumptions``).

Models beyond a chain (:mod:`hwnas.cost.graph`): an element-wise ``add`` (hls4ml's ``Merge``/``Add``) is one
adder per output element and extra operand at the widest operand width — one LUT per bit with the carry
chain — in one cycle; a global pool (``GlobalPooling``) is ``positions − 1`` adders (comparators for max) per
channel at the operand width, an adder tree of ``ceil(log2 positions)`` cycles; a ``concat`` is wiring (no
LUTs, no cycles). io_parallel branches run concurrently, so the latency is the longest path through the
data-flow graph (the sum of the rows for a chain).

Softmax and LayerNorm (:mod:`hwnas.nn.normalization`, hls4ml's ``softmax_stable`` and ``layernorm_1d``, every
row in parallel as io_parallel unrolls them) are costed from their structure, with the intermediate types of
the layer:

* arithmetic: the layer's EBOPs with the same fit (``LUT + 55·DSP ≈ EBOPs``): softmax per row ``n−1``
  comparators and ``n`` subtractors at the input width, an ``n−1``-adder tree at ``accum_t``, ``n`` products
  ``accum_t × inv_table_t``; LayerNorm per row ``n`` squares, two sums of ``n`` at ``accum_t``, two products by
  ``1/n``, ``n`` products by the table entry and ``n`` by gamma, ``n`` bias adders. A product is a DSP when both
  operands are wider than ``dsp_threshold``;
* tables (``entries × entry width`` bits, in ``extra["tables"]``): softmax's exp table is read once per element,
  its inversion table once per row, LayerNorm's 1/sqrt table once per row. A table of at least
  :data:`BRAM_MIN_ENTRIES` entries is a block-RAM ROM (RAMB18s in the best aspect ratio, one copy per two reads:
  two ports), a smaller one a LUT ROM (``ceil(entries/64)·width`` LUT6s per read);
* latency: an *approximation* of the HLS pipeline depth, not hls4ml's report: one cycle per comparator or
  adder-tree level, :data:`ADDS_PER_CYCLE` chained additions per cycle for LayerNorm's in-order sums (hls4ml's
  ``AP_SAT``/``AP_RND`` sums are not rebalanced), 1 cycle per LUT product and 3 per DSP product, 1 (LUT ROM) or
  2 (block RAM) per table read, 1 for the output. Both layers are fully pipelined (II = 1).
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
BRAM_MIN_ENTRIES = 1024
"""Tables with at least this many entries are costed as block-RAM ROMs, smaller ones as LUT ROMs."""
ADDS_PER_CYCLE = 4
"""Chained (in-order) additions per clock cycle in the LayerNorm latency approximation."""
_BRAM18_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
"""RAMB18 depth × width aspect ratios (UG573)."""


def _table_cost(name: str, entries: int, width: int, reads: int) -> dict[str, Any]:
    """One lookup table read ``reads`` times per sample: its bits, where it lives, and its copies' cost."""
    out: dict[str, Any] = {"table": name, "entries": entries, "width": width, "bits": entries * width,
                           "reads": reads}
    if entries >= BRAM_MIN_ENTRIES:
        copies = math.ceil(reads / 2)  # two ports per block RAM
        per_copy = min(math.ceil(entries / d) * math.ceil(width / w) for d, w in _BRAM18_SHAPES)
        out.update(memory="BRAM", copies=copies, bram18=copies * per_copy, luts=0, cycles=2)
    else:
        out.update(memory="LUTROM", copies=reads, bram18=0, luts=reads * math.ceil(entries / 64) * width, cycles=1)
    return out


def _levels(n: int) -> int:
    return math.ceil(math.log2(n)) if n > 1 else 0


def _normalization_row(row: LayerRow, li: Any, threshold: float) -> None:
    """Fill ``row`` for a QSoftmax/QLayerNorm (module docstring: arithmetic, tables, approximate latency)."""
    m = li.module
    rows = li.rows

    def mult(wa: float, wb: float) -> tuple[int, int]:  # (DSPs, cycles) of one product
        return (1, 3) if wa > threshold and wb > threshold else (0, 1)

    eb = float(m.ebops())
    if li.kind == "softmax":
        cfg = m.config(li.in_shape)
        n = cfg.n
        dsp, mcyc = mult(cfg.accum_t.width, cfg.inv_table_t.width)
        dsps = rows * n * dsp
        tables = [_table_cost("exp", cfg.exp_table_size, cfg.exp_table_t.width, rows * n),
                  _table_cost("inv", cfg.inv_table_size, cfg.inv_table_t.width, rows)]
        cycles = (_levels(n) + 1 + tables[0]["cycles"] + _levels(n) + tables[1]["cycles"] + mcyc + 1)
        row.extra.update({"comparators": rows * (n - 1), "subtractors": rows * n, "adders": rows * (n - 1),
                          "adder_bits": cfg.accum_t.width, "multipliers": rows * n})
    else:
        cfg = m.config()
        n = cfg.n
        a, t = cfg.accum_t.width, cfg.table_t.width
        bw = (m.weight_quantizer.element_bits().expand(n).tolist() if m.weight_quantizer is not None
              else [32.0] * n)
        sq, sq_c = mult(a, a)
        tab, tab_c = mult(a, t)
        gam = [mult(a + t, float(b)) for b in bw]
        dsps = rows * (n * sq + 2 * sq + n * tab + sum(d for d, _ in gam))
        tables = [_table_cost("invsqrt", cfg.table_size, t, rows)]
        chain = math.ceil(n / ADDS_PER_CYCLE)
        cycles = (chain + sq_c + 1 + sq_c + chain + sq_c + 1 + tables[0]["cycles"] + tab_c
                  + max(c for _, c in gam) + 1)
        row.extra.update({"adders": rows * 3 * n, "adder_bits": a, "multipliers": rows * (3 * n + 2)})
    row.dsps = dsps
    row.luts = max(eb - DSP_EQUIV_LUTS * dsps, 0.0) + sum(tb["luts"] for tb in tables)
    row.bram18 = sum(tb["bram18"] for tb in tables)
    row.cycles = cycles
    row.extra.update({"ebops": eb, "rows": rows, "row_elements": n, "tables": tables, "ii": 1,
                      "latency": "approximate pipeline depth (not an hls4ml report)"})


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
                    below = [d for d in range(1, n_mult + 1) if not n_mult % d
                             and (not isinstance(r, int) or isinstance(r, bool) or d <= r)]
                    raise CostError(f"layer {li.name}: reuse factor {r!r} must be a positive divisor of "
                                    f"{n_mult} (multiplications per output position); the largest valid one not "
                                    f"above it is {below[-1] if below else 1} (pass a per-layer dict; "
                                    "hwnas.pipeline_export.reuse_per_layer picks them as the export does)")
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
                if not (getattr(m, "kind", None) == "identity" and m.input_quantizer is None
                        and m.output_quantizer is None):  # a quantizer-less identity is no hardware
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
            elif li.kind in ("softmax", "layernorm"):
                _normalization_row(row, li, dsp_threshold)
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
    if any(li.kind in ("softmax", "layernorm") for li in layers):
        est.assumptions["normalization"] = (
            "softmax/LayerNorm: arithmetic from the layer's EBOPs (same fit), tables as BRAM18 (>= "
            f"{BRAM_MIN_ENTRIES} entries, one copy per two reads) or LUT ROMs; latency an approximate HLS pipeline "
            "depth (levels of comparators/adders, products, table reads), not an hls4ml report")
    t = est.totals
    est.power_w = power_watts(device, f, t["luts"], t["ffs"], t["bram18"], t["uram"], t["dsps"])
    return est
