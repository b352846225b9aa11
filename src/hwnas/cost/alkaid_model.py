"""alkaid estimate: the design the RTL export would build, traced (not emitted) and priced by alkaid.

The model is traced exactly as :func:`hwnas.export.rtl.export_rtl` traces it
(:func:`hwnas.export.alkaid_plugin.trace_hwnas`, then ``alkaid.trace.trace``: constant multiplications become
adder graphs, distributed arithmetic), but no RTL is written. Read from the traced design:

* **LUTs** = ``lut·comb.cost + lut_per_mux·multiplexers`` (``comb.cost``: alkaid's own LUT-equivalent cost of
  its adders, multiplexers and tables; multiplexers: its ReLU/max-pool selects, which synthesis makes dearer
  than alkaid counts), the two :data:`CALIBRATION` factors fitted against Yosys ``synth_xilinx -family xcup``
  on the design dataset (``bench/data/designs-v1.jsonl``, training split; least squares on relative errors).
* **FFs**: the register bits of the pipelined design. The design is cut into stages by alkaid's own pipeliner
  (``alkaid.trace.pipeline.to_pipeline`` after the same passes ``alkaid.codegen.RTLModel`` runs: ternary-adder
  fusion, dead-code elimination, surrogate costs), so the register bits are exactly those
  :class:`~hwnas.export.rtl.RtlSummary` reports, without writing files; × the FF factor of :data:`CALIBRATION`.
  The cut-off is ``latency_cutoff_ns`` (alkaid's delay estimate per stage; the experiment's
  ``run.rtl.latency_cutoff_ns``), or the clock period when it is not positive: a combinational block has no
  cycle latency, and a deployed design registers at the clock.
* **DSPs** 0: alkaid maps every constant multiplication to adders (it has no multiplier unless both operands
  are variables, which no hwnas layer produces). **BRAM/URAM** 0: tables become LUT logic.
* **latency** in cycles from the pipeline schedule (input and output registered); II = 1 (fully unrolled).

Models alkaid cannot trace (float or scaled-integer quantizers, float tanh, average pooling over a window that
is not a power of two, ...) raise :class:`~hwnas.cost.catalog.CostError` with the export error's message,
which names the layer and slot, so the search treats them like any other model a cost model refuses.
Requires ``alkaid`` (the ``export`` extra).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from torch import nn

from hwnas.errors import tool_missing

from .catalog import CostError, Device, get_device
from .power import power_watts
from .result import HardwareEstimate, LayerRow

__all__ = ["CALIBRATION", "AlkaidCalibration", "AlkaidTrace", "alkaid_estimate", "alkaid_trace"]


@dataclass(frozen=True)
class AlkaidCalibration:
    """Synthesis ÷ alkaid factors, and where they come from."""

    lut: float
    """LUTs per unit of ``comb.cost``."""
    lut_per_mux: float
    """LUTs per alkaid multiplexer (ReLU, max pooling) on top: alkaid's cost under-counts them."""
    ff: float
    """Yosys FFs ÷ register bits of the pipelined design."""
    dataset: str
    """The design dataset file the factors were fitted on."""
    designs: int
    """Designs in its training split."""
    tool: str
    """The synthesis tool and flow."""


CALIBRATION = AlkaidCalibration(lut=1.1724, lut_per_mux=6.996, ff=0.9057, dataset="designs-v1.jsonl", designs=195,
                                tool="Yosys 0.70 (git sha1 28ba3cb92) synth_xilinx -family xcup")
"""The factors in use (refit with ``bench/estimator_accuracy.py --fit``)."""

@dataclass(frozen=True)
class AlkaidTrace:
    """The raw figures of one traced design (before calibration)."""

    cost: float
    """``comb.cost``: alkaid's LUT-equivalent cost."""
    reg_bits: int
    """Register bits of the design pipelined at ``latency_cutoff_ns``."""
    latency_cycles: int
    stages: int
    delay_ns: float
    """alkaid's estimate of the combinational critical path."""
    latency_cutoff_ns: float
    adders: int
    multiplexers: int
    multipliers: int
    lookups: int
    seconds: float
    """Wall time of the trace, optimization and pipelining."""


def alkaid_trace(model: nn.Module, input_shape: tuple[int, ...], latency_cutoff_ns: float) -> AlkaidTrace:
    """Trace ``model`` with alkaid and pipeline it (no files): the raw cost, register bits, latency.

    Raises :class:`CostError` naming the layer for what cannot be traced, or when alkaid is missing.
    """
    t0 = time.perf_counter()
    try:
        from alkaid.trace import trace
        from alkaid.trace.passes import add_surrogate, dead_code_elimin, fuse_ternary_adders
        from alkaid.trace.pipeline import to_pipeline

        from hwnas.export.alkaid_plugin import trace_hwnas
        from hwnas.export.errors import ExportError, ToolFailureError
        from hwnas.export.graph import extract
        from hwnas.export.rtl import _ADDERS, _LUT, _MUL, _MUX, _check_stable
    except ImportError as err:
        raise tool_missing(CostError("model: the alkaid cost model needs alkaid; install the export extra "
                                     "(pip install 'hwnas[export]')")) from err
    if latency_cutoff_ns <= 0:
        raise CostError(f"latency_cutoff_ns: must be positive, got {latency_cutoff_ns}")
    internal = (AssertionError, ValueError, RuntimeError, TypeError, IndexError, StopIteration)
    try:
        graph = extract(model, tuple(input_shape))
        _check_stable(model)
        inp, out, graph = trace_hwnas(model, graph.input_shape, graph=graph)
    except ExportError as err:
        raise CostError(f"{err} (the alkaid cost model prices only what the RTL export can build)") from err
    except ToolFailureError as err:  # seen: StopIteration in alkaid's cmvm when a product has only constant terms
        cause = err.__cause__ or err
        raise CostError(f"model: alkaid failed inside while tracing ({type(cause).__name__}: {cause}); this is a "
                        "tool failure, not an inexpressible model") from err
    try:
        comb = trace(inp, out)
        fused = add_surrogate(dead_code_elimin(fuse_ternary_adders(comb)), _skip_op8_cost=True)
        fsm = to_pipeline(fused, latency_cutoff=latency_cutoff_ns, verbose=False)
    except internal as err:
        raise CostError(f"model: alkaid failed inside while optimizing the traced circuit "
                        f"({type(err).__name__}: {err}); this is a tool failure, not an inexpressible model") from err
    ops = Counter(op.opcode for op in comb.ops)
    reg_bits = sum(int(sig.width) for sig in fsm.signals.values() if sig.reg)
    sched = [sig.schedule.bias - sig.reg for sig in fsm.out_signals if sig.schedule is not None]
    return AlkaidTrace(cost=float(comb.cost), reg_bits=int(reg_bits), latency_cycles=int(max(sched, default=0)),
                       stages=len(fsm.logic), delay_ns=float(comb.latency[1]),
                       latency_cutoff_ns=float(latency_cutoff_ns),
                       adders=sum(ops[c] for c in _ADDERS), multiplexers=sum(ops[c] for c in _MUX),
                       multipliers=sum(ops[c] for c in _MUL), lookups=sum(ops[c] for c in _LUT),
                       seconds=time.perf_counter() - t0)


def alkaid_estimate(model: nn.Module, target: str | Device, input_shape: tuple[int, ...], *,
                    clock_mhz: float | None = None, latency_cutoff_ns: float | None = None,
                    calibration: AlkaidCalibration | None = None) -> HardwareEstimate:
    """Estimate ``model`` as the alkaid RTL design (see the module docstring).

    ``latency_cutoff_ns`` ≤ 0 or None: pipeline at the clock period (``1000 / clock_mhz``). ``calibration``
    defaults to :data:`CALIBRATION`. One row (the whole design; alkaid optimizes across layers), with the raw
    figures in ``extra``.
    """
    device = get_device(target)
    f = float(clock_mhz or device.clock_mhz)
    cal = calibration or CALIBRATION
    cutoff = float(latency_cutoff_ns) if latency_cutoff_ns is not None and latency_cutoff_ns > 0 else 1000.0 / f
    tr = alkaid_trace(model, input_shape, cutoff)
    from hwnas.nn import macs

    row = LayerRow(name="design", type="alkaid", in_shape=tuple(input_shape), out_shape=(), macs=int(macs(model)),
                   cycles=tr.latency_cycles,
                   luts=tr.cost * cal.lut + tr.multiplexers * cal.lut_per_mux, ffs=tr.reg_bits * cal.ff,
                   dsps=0.0, bram18=0.0, uram=0.0,
                   extra={"cost": tr.cost, "reg_bits": tr.reg_bits, "stages": tr.stages, "delay_ns": tr.delay_ns,
                          "adders": tr.adders, "multiplexers": tr.multiplexers, "multipliers": tr.multipliers,
                          "lookups": tr.lookups, "seconds": tr.seconds})
    est = HardwareEstimate("alkaid (traced design)", device, f, [row], tr.latency_cycles, 1, assumptions={
        "model": "alkaid trace of the RTL export's design (no RTL written)", "device": device.name, "clock_mhz": f,
        "latency_cutoff_ns": cutoff,
        "luts": f"comb.cost × {cal.lut:.4g} + multiplexers × {cal.lut_per_mux:.4g} (fitted on {cal.designs} designs "
                f"of {cal.dataset}, {cal.tool})",
        "ffs": f"register bits of alkaid's pipeline × {cal.ff:.4g} (same fit)",
        "dsps": "0: alkaid maps constant multiplications to adders",
        "bram18": "0: tables are LUT logic", "ii": 1, "seconds": tr.seconds})
    t = est.totals
    est.power_w = power_watts(device, f, t["luts"], t["ffs"], t["bram18"], t["uram"], t["dsps"])
    return est
