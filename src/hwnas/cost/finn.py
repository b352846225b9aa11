"""FINN streaming-dataflow model: cycles per stage with PE/SIMD folding, resources, folding search.

Every layer becomes one or more FINN stages, as in seed 000 eq. (3):
``Latency(L) = CYC_pad + CYC_CIG + CYC_MVAU + CYC_thresh + CYC_pool``.

* MVAU (conv with groups=1, linear): ``cycles = (MH/PE)·(MW/SIMD)·vectors`` with MH = C_out, MW = C_in·K^d,
  vectors = output positions (1 for linear) — FINN ``MVAU.get_exp_cycles``. PE must divide MH and SIMD
  must divide MW.
* VVAU (depthwise conv, groups = C): ``cycles = (C/PE)·(K^d/SIMD)·positions`` — FINN ``VVAU``.
* XNOR-popcount MVAU (FINN ``binaryXnorMode``): a conv/linear layer whose weights and input are both bipolar ±1
  (:class:`~hwnas.quant.BipolarQuantizer`; an input without a quantizer of its own counts when its producer's
  output quantizer is bipolar). Same cycles; each product is one XNOR (a 1-bit match) and the accumulator a
  popcount of ``ceil(log2(MW + 1))`` bits (its range is 0..MW), so the FINN-R LUT formula is evaluated with the
  1-bit XNOR product in place of the ``W + A``-bit multiplier (:func:`mvau_luts`, ``xnor=True``), no DSPs, and
  the thresholds after it compare popcounts. FINN builds XNOR MVAUs in HLS only (its RTL MVU has no XNOR mode),
  so ``mvau_variant="rtl"`` prices them as HLS MVAUs. (An hwnas adaptation: FINN's own estimator has no XNOR
  case and would charge the 2-bit ``W + A`` of the BIPOLAR × BIPOLAR datatypes.)
* ConvolutionInputGenerator (sliding window): FINN's formula (finn-hlslib ``slidingwindow.h``):
  ``IFM_W·K_h·dil_h·C/SIMD + OFM_H·max(OFM_W·K_w·K_h·C/SIMD, stride_w·IFM_W·C/SIMD)``; 1-D convolutions are
  the 2-D case with height 1.
* FMPadding: one cycle per padded output pixel and SIMD-group of channels.
* Thresholding (the activation after a conv/linear): ``positions·C/PE`` cycles.
* Pooling (StreamingMaxPool): ``input pixels·C/PE`` cycles.

Models beyond a chain (:mod:`hwnas.cost.graph`) map to FINN's stream operators, folded at PE = 1:

* Residual add → ``AddStreams``: ``positions·C/PE`` cycles (FINN ``AddStreams.get_exp_cycles``); the sum is one
  bit wider than the operands (FINN's output datatype rule). LUTs: one adder lane at the operand width plus
  ~50 LUTs of stream control (hwnas approximation; FINN has no LUT estimate for it).
* Global average pooling → ``GlobalAccPool``: ``positions·C/PE + C/PE`` cycles (FINN
  ``GlobalAccPool.get_exp_cycles``); it accumulates, so its output is ``ceil(log2 positions)`` bits wider, and
  the ``1/positions`` scale goes into the next layer (FINN streamlining). LUTs: an accumulator lane plus the C
  partial sums in LUTRAM (hwnas approximation).
* Concatenation → ``StreamingConcat``: one output vector per cycle, ``positions`` cycles, no compute (0 LUTs).
* A tensor read by several layers → ``DuplicateStreams`` after its producer: ``positions·C`` cycles, no compute.

Softmax and layer normalization (``QSoftmax``, ``QLayerNorm``) have no FINN layer: a model containing one raises
:class:`~hwnas.cost.catalog.CostError` naming it (never a zero cost).

First-sample latency = Σ stage cycles along the longest path of the dataflow graph (branches run
concurrently; for a chain, the sum of every stage); initiation interval = max stage cycles; throughput = f / II.

Resources (sources in each function): MVAU LUT/BRAM18/URAM/DSP from FINN's estimators (FINN-R, Blott et
al. 2018, as implemented in ``MVAU_hls.lut_estimation``, ``MVAU.bram_estimation``, ``uram_estimation``,
``dsp_estimation``; the RTL MVAU DSP formula from ``MVAU_rtl.dsp_estimation``). FFs are not modelled by
FINN; hwnas reports ``FF ≈ 1.8·LUT``, the register/LUT ratio of seed 000 Table II (a heuristic).
Sliding-window, padding, pooling and thresholding resources are hwnas approximations stated where
they are computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hwnas.nn.layers import QConv1d, QConv2d
from hwnas.quant import BipolarQuantizer

from .catalog import RESOURCES, CostError, Device, get_device
from .graph import INPUT, LayerInfo, critical_path, describe_model
from .power import power_watts
from .result import HardwareEstimate, LayerRow

__all__ = ["Folding", "finn_estimate", "fold_for_resources", "fold_for_throughput", "mvau_bram18", "mvau_cycles",
           "mvau_dsps", "mvau_luts", "popcount_bits", "swg_cycles"]

FF_PER_LUT = 1.8
_BRAM18_BITS = 18 * 1024


@dataclass(frozen=True)
class Folding:
    """Parallelism of one compute stage: PE output channels and SIMD input lanes per cycle."""

    pe: int = 1
    simd: int = 1


# ----------------------------------------------------------------------------------------- formulas
def mvau_cycles(mh: int, mw: int, pe: int, simd: int, vectors: int) -> int:
    """FINN ``MVAU.get_exp_cycles``: (MH/PE)·(MW/SIMD)·vectors."""
    return (mh // pe) * (mw // simd) * vectors


def swg_cycles(channels: int, ifm: tuple[int, int], ofm: tuple[int, int], kernel: tuple[int, int],
               stride: tuple[int, int], dilation: tuple[int, int], simd: int) -> int:
    """FINN ``ConvolutionInputGenerator.get_exp_cycles`` (finn-hlslib sliding window, mmv = 1)."""
    ifm_w = ifm[1]
    (ofm_h, ofm_w), (k_h, k_w) = ofm, kernel
    folds = channels / simd
    write_block = ofm_w * k_w * k_h * folds
    read_block = stride[1] * ifm_w * folds
    return int(ifm_w * k_h * dilation[0] * folds + ofm_h * max(write_block, read_block))


def accumulator_bits(mw: int, w: float, a: float, signed_input: bool = True) -> int:
    """Minimal accumulator width for an MW-term dot product (the bound FINN uses, arXiv:2301.13376)."""
    alpha = math.log2(max(mw, 1)) + w + a - 1 - int(signed_input)
    return math.ceil(alpha + math.log2(1 + 2 ** -alpha) + 1)


def popcount_bits(mw: int) -> int:
    """Width of an XNOR-popcount accumulator over MW terms: ``ceil(log2(MW + 1))`` (it counts 0..MW matches)."""
    return max(math.ceil(math.log2(mw + 1)), 1)


def mvau_luts(pe: int, simd: int, mw: int, mh: int, w: float, a: float, *, res_type: str = "lut",
              mem_style: str = "block", out_bits: float | None = None, xnor: bool = False) -> int:
    """FINN-R LUT estimate (``MVAU_hls.lut_estimation``): c0 + c1·PE·(mult + adder tree + acc + thresholds) + c2.

    c0 = 300, c1 = 1.1; multipliers ``SIMD·(2·ceil((W+A)/6) − 1)·(W+A)`` unless mapped to DSPs; adder tree
    ``(W+A)·(2·SIMD − 1)``; accumulator = its width; distributed weight memory adds
    ``c2 = PE·SIMD·W·ceil(WMEM/64)``; distributed thresholds ``(2^B − 1)·acc·ceil(TMEM/64)`` plus as many
    comparator LUTs when the MVAU applies an activation of ``out_bits`` = B.

    ``xnor`` (bipolar weights and inputs, FINN's ``binaryXnorMode``): the product is a 1-bit XNOR, so the same
    terms with a 1-bit product in place of ``W + A`` (``SIMD`` XNOR LUTs whatever ``res_type``, a popcount tree of
    ``2·SIMD − 1``) and the popcount accumulator of :func:`popcount_bits`.
    """
    wa = 1 if xnor else w + a
    mult = 0 if res_type == "dsp" and not xnor else simd * (2 * math.ceil(wa / 6) - 1) * wa
    adder = wa * (2 * simd - 1)
    acc = popcount_bits(mw) if xnor else accumulator_bits(mw, w, a)
    wmem = mw * mh // (pe * simd)
    c2 = pe * simd * w * math.ceil(wmem / 64) if mem_style == "distributed" else 0
    thr = comp = 0.0
    if out_bits is not None:
        tmem = mh // pe
        thr = (2 ** out_bits - 1) * acc * math.ceil(tmem / 64)
        comp = (2 ** out_bits - 1) * acc
    return int(300 + 1.1 * pe * (mult + adder + acc + thr + comp) + c2)


def mvau_bram18(pe: int, simd: int, mw: int, mh: int, w: float, mem_style: str = "block") -> int:
    """FINN ``MVAU.bram_estimation`` (SDP RAMB18 aspect ratios, UG573 Table 1-10); 0 unless ``block``."""
    if mem_style != "block":
        return 0
    omega = (mw * mh) / (pe * simd)  # memory depth
    width = simd * w * pe
    if width <= 1:
        return math.ceil(omega / 16384)
    if width <= 2:
        return math.ceil(omega / 8192)
    if width <= 4:
        return math.ceil(omega / 4096) * math.ceil(width / 4)
    if width <= 9:
        return math.ceil(omega / 2048) * math.ceil(width / 9)
    if width <= 18 or omega > 512:
        return math.ceil(omega / 1024) * math.ceil(width / 18)
    return math.ceil(omega / 512) * math.ceil(width / 36)


def mvau_uram(pe: int, simd: int, mw: int, mh: int, w: float, mem_style: str = "block") -> int:
    """FINN ``MVAU.uram_estimation``: ceil(width/72)·ceil(depth/4096) when weights live in URAM."""
    if mem_style != "ultra":
        return 0
    return math.ceil(simd * w * pe / 72) * math.ceil((mw * mh) / (pe * simd) / 4096)


def mvau_dsps(pe: int, simd: int, w: float, a: float, *, res_type: str = "lut", variant: str = "hls",
              dsp_block: str = "DSP48E2", xnor: bool = False) -> int:
    """FINN DSP estimate (``MVAU_hls``/``MVAU_rtl.dsp_estimation``).

    HLS: ``PE·SIMD·ceil((W+A)/48)`` when ``res_type='dsp'``, else 0. RTL packs several products per DSP:
    DSP58 ``PE·ceil(SIMD/3)``, DSP48 ``ceil(PE/4)·SIMD``. An XNOR-popcount MVAU (``xnor``) uses none.
    """
    if xnor:
        return 0
    if variant == "rtl":
        if dsp_block == "DSP58":
            return int(pe * math.ceil(simd / 3))
        return int(math.ceil(pe / 4) * simd)
    return int(pe * simd * math.ceil((w + a) / 48)) if res_type == "dsp" else 0


# ----------------------------------------------------------------------------------------- stages
@dataclass
class _Stage:
    """One FINN stage with its folding space and a function from folding to a LayerRow."""

    layer: str
    kind: str  # mvau | vvau | swg | pad | thresh | pool | add | gpool | concat | dup
    info: LayerInfo
    params: dict[str, Any]
    after: tuple[int, ...] = ()
    """Indices of the stages this one reads from (the dataflow edges, for the longest-path latency)."""

    @property
    def foldable(self) -> bool:
        return self.kind in ("mvau", "vvau")

    def bounds(self) -> tuple[int, int]:
        """(dimension PE must divide, dimension SIMD must divide)."""
        p = self.params
        return (p["mh"], p["mw"]) if self.kind == "mvau" else (p["channels"], p["kk"])


def _spatial(shape: tuple[int, ...]) -> tuple[int, int]:
    """(H, W) of a (C, L) or (C, H, W) feature map; 1-D maps have height 1."""
    return (1, shape[1]) if len(shape) == 2 else (shape[1], shape[2])


def _pair(v: Any, nd: int) -> tuple[int, int]:
    t = tuple(v) if isinstance(v, tuple | list) else (v,) * nd
    return (1, int(t[0])) if nd == 1 else (int(t[0]), int(t[1]))


def _split(shape: tuple[int, ...]) -> tuple[int, int]:
    """(channels, positions) of a per-sample shape: (C, *spatial), or (N,) for a vector (N channels, 1 position)."""
    return shape[0] if shape else 1, math.prod(shape[1:]) if len(shape) > 1 else 1


def _stages(layers: list[LayerInfo]) -> list[_Stage]:
    stages: list[_Stage] = []
    readers: dict[str, list[int]] = {}
    for idx, li in enumerate(layers):
        for src in li.inputs:
            readers.setdefault(src, []).append(idx)
    first = next((li for li in layers if INPUT in li.inputs), None)
    # per tensor: width of the values streaming out of it, the stages its readers wait for, and the compute
    # layer whose PE a thresholding stage reading it inherits
    stream: dict[str, float] = {INPUT: first.act_bits if first is not None else 0.0}
    bipolar: dict[str, bool] = {INPUT: False}  # whether the values streaming out of a tensor are bipolar ±1
    last: dict[str, tuple[int, ...]] = {INPUT: ()}
    follow: dict[str, str | None] = {INPUT: None}

    def push(li: LayerInfo, kind: str, params: dict[str, Any], after: tuple[int, ...]) -> tuple[int, ...]:
        stages.append(_Stage(li.name, kind, li, params, after))
        return (len(stages) - 1,)

    def fork(name: str, li: LayerInfo, shape: tuple[int, ...]) -> None:
        """FINN duplicates a stream read by several layers (DuplicateStreams after its producer)."""
        copies = len(readers.get(name, ()))
        if copies > 1:
            channels, positions = _split(shape)
            stages.append(_Stage(name, "dup", li, {"channels": channels, "positions": positions, "copies": copies,
                                                   "bits": stream[name], "shape": shape}, last[name]))
            last[name] = (len(stages) - 1,)

    def next_compute(idx: int) -> LayerInfo | None:
        """The first compute layer (in execution order) downstream of layer ``idx`` in the data flow."""
        found: list[int] = []
        todo, seen = list(readers.get(layers[idx].name, ())), set()
        while todo:
            j = todo.pop()
            if j in seen:
                continue
            seen.add(j)
            if layers[j].kind in ("conv", "linear"):
                found.append(j)
            else:
                todo += readers.get(layers[j].name, ())
        return layers[min(found)] if found else None

    def latest(names: tuple[str, ...]) -> str:
        """Of several operands, the one produced last (its compute layer sets a later thresholding's PE)."""
        return max(names, key=lambda n: max(last[n], default=-1))

    if first is not None:
        fork(INPUT, first, first.in_shape)
    for idx, li in enumerate(layers):
        src = li.inputs[0]
        after = tuple(sorted({i for s in li.inputs for i in last[s]}))
        stream[li.name], last[li.name], follow[li.name] = stream[src], after, follow[src]
        bipolar[li.name] = bipolar[src] and li.kind in ("pool", "flatten", "norm")
        if li.kind in ("conv", "linear"):
            m = li.module
            iq = getattr(m, "input_quantizer", None)
            xnor = _is_bipolar(getattr(m, "weight_quantizer", None)) and (
                _is_bipolar(iq) or (iq is None and bipolar[src]))
            bipolar[li.name] = _is_bipolar(getattr(m, "output_quantizer", None))
        if li.kind == "conv":
            m = li.module
            nd = 1 if isinstance(m, QConv1d) else 2
            assert isinstance(m, QConv1d | QConv2d)
            cin, cout = m.in_channels, m.out_channels
            k = _pair(m.kernel_size, nd)
            stride = _pair(m.stride, nd)
            dil = _pair(m.dilation, nd)
            if isinstance(m.padding, str):
                raise CostError(f"layer {li.name}: padding={m.padding!r} is not mapped to FINN; give explicit sizes")
            pad = _pair(m.padding, nd) if nd == 2 else (0, int(m.padding[0]))
            ifm = _spatial(li.in_shape)
            padded = (ifm[0] + 2 * pad[0], ifm[1] + 2 * pad[1])
            ofm = _spatial(li.out_shape)
            if any(pad):
                after = push(li, "pad", {"channels": cin, "pixels": padded[0] * padded[1]}, after)
            after = push(li, "swg", {"channels": cin, "ifm": padded, "ofm": ofm, "kernel": k, "stride": stride,
                                     "dilation": dil}, after)
            kk = k[0] * k[1]
            stream[li.name] = accumulator_bits(cin // m.groups * kk, li.weight_bits, li.act_bits)
            follow[li.name] = li.name
            if m.groups == 1:
                if xnor:
                    stream[li.name] = popcount_bits(cin * kk)
                last[li.name] = push(li, "mvau", {"mh": cout, "mw": cin * kk, "vectors": ofm[0] * ofm[1],
                                                  "xnor": xnor}, after)
            elif m.groups == cin == cout:
                last[li.name] = push(li, "vvau", {"channels": cin, "kk": kk, "vectors": ofm[0] * ofm[1]}, after)
            else:
                raise CostError(f"layer {li.name}: grouped convolution (groups={m.groups}) has no FINN mapping; "
                                "use groups=1 or depthwise (groups=channels)")
        elif li.kind == "linear":
            m = li.module
            stream[li.name] = popcount_bits(m.in_features) if xnor else accumulator_bits(
                m.in_features, li.weight_bits, li.act_bits)
            follow[li.name] = li.name
            last[li.name] = push(li, "mvau", {"mh": m.out_features, "mw": m.in_features, "vectors": 1,
                                              "xnor": xnor}, after)
        elif li.kind == "act":
            # the precision an activation must produce is the input precision of the next compute layer
            nxt = next_compute(idx)
            shape = li.in_shape
            channels = shape[0]
            positions = math.prod(shape[1:]) if len(shape) > 1 else 1
            out_bits = nxt.act_bits if nxt is not None else li.out_bits
            if out_bits >= 32:
                raise CostError(f"layer {li.name}: FINN maps activations to thresholds, which needs a quantized "
                                "output; give the next layer an input quantizer (or this one an output quantizer)")
            last[li.name] = push(li, "thresh", {"channels": channels, "positions": positions, "out_bits": out_bits,
                                                "acc_bits": stream[src], "follow": follow[src]}, after)
            stream[li.name] = out_bits
            bipolar[li.name] = (nxt is not None and _is_bipolar(getattr(nxt.module, "input_quantizer", None))) or \
                _is_bipolar(getattr(li.module, "output_quantizer", None))
        elif li.kind == "pool":
            shape = li.in_shape
            last[li.name] = push(li, "pool", {"channels": shape[0], "pixels": math.prod(shape[1:]),
                                              "bits": stream[src]}, after)
        elif li.kind in ("add", "concat"):
            bits = max(stream[s] for s in li.inputs)
            channels, positions = _split(li.out_shape)
            last[li.name] = push(li, li.kind, {"channels": channels, "positions": positions, "bits": bits,
                                               "operands": len(li.inputs)}, after)
            stream[li.name] = bits + 1 if li.kind == "add" else bits
            follow[li.name] = follow[latest(li.inputs)]
        elif li.kind == "gpool":
            channels, positions = _split(li.in_shape)
            acc = stream[src] + math.ceil(math.log2(max(positions, 1)))
            last[li.name] = push(li, "gpool", {"channels": channels, "positions": positions, "bits": stream[src],
                                               "acc_bits": acc}, after)
            stream[li.name] = acc
        elif li.kind in ("softmax", "layernorm"):
            what = "softmax" if li.kind == "softmax" else "layer normalization"
            raise CostError(f"layer {li.name}: {li.type_name} ({what}) cannot be built by FINN: its streaming "
                            "dataflow has no softmax or layer-normalization layer (only MVAU/VVAU, thresholding, "
                            "pooling and stream operators), so it has no FINN cost; use the hls4ml model "
                            "(hls4ml_estimate) or the RTL path for it")
        # flatten and (folded) batch norm cost nothing in the dataflow
        fork(li.name, li, li.out_shape)
    return stages


def _is_bipolar(q: Any) -> bool:
    return isinstance(q, BipolarQuantizer)


def _check_folding(stage: _Stage, fold: Folding) -> None:
    mh, mw = stage.bounds()
    what = ("MH (output channels)", "MW (inputs per output)") if stage.kind == "mvau" else ("channels", "K^d")
    if fold.pe < 1 or mh % fold.pe:
        raise CostError(f"layer {stage.layer}: PE={fold.pe} must divide {what[0]} = {mh}")
    if fold.simd < 1 or mw % fold.simd:
        raise CostError(f"layer {stage.layer}: SIMD={fold.simd} must divide {what[1]} = {mw}")


def _row(stage: _Stage, fold: Folding, opts: dict[str, Any], device: Device) -> LayerRow:
    li, p = stage.info, stage.params
    w, a = li.weight_bits, li.act_bits
    row = LayerRow(f"{stage.layer}:{stage.kind}", stage.kind.upper(), li.in_shape, li.out_shape,
                   weight_bits=w, act_bits=a)
    res_type, mem_style, variant = opts["res_type"], opts["mem_style"], opts["mvau_variant"]
    if stage.kind == "mvau":
        xnor = bool(p.get("xnor"))
        row.macs = li.macs
        row.cycles = mvau_cycles(p["mh"], p["mw"], fold.pe, fold.simd, p["vectors"])
        row.luts = 0 if variant == "rtl" and not xnor else mvau_luts(fold.pe, fold.simd, p["mw"], p["mh"], w, a,
                                                                     res_type=res_type, mem_style=mem_style, xnor=xnor)
        row.bram18 = mvau_bram18(fold.pe, fold.simd, p["mw"], p["mh"], w, mem_style)
        row.uram = mvau_uram(fold.pe, fold.simd, p["mw"], p["mh"], w, mem_style)
        row.dsps = mvau_dsps(fold.pe, fold.simd, w, a, res_type=res_type, variant=variant, dsp_block=device.dsp_block,
                             xnor=xnor)
        if xnor:
            row.extra.update({"xnor": True, "acc_bits": popcount_bits(p["mw"])})
    elif stage.kind == "vvau":
        # FINN VVAU: (C/PE)·(K^d/SIMD)·positions cycles; LUTs with the MVAU formula over one K^d-term dot
        # product per channel (MW = K^d), weights C·K^d deep (hwnas approximation of VVAU's estimators)
        row.macs = li.macs
        row.cycles = (p["channels"] // fold.pe) * (p["kk"] // fold.simd) * p["vectors"]
        row.luts = mvau_luts(fold.pe, fold.simd, p["kk"], p["channels"], w, a, res_type=res_type, mem_style=mem_style)
        row.bram18 = mvau_bram18(fold.pe, fold.simd, p["kk"], p["channels"], w, mem_style)
        row.dsps = mvau_dsps(fold.pe, fold.simd, w, a, res_type=res_type)
    elif stage.kind == "swg":
        row.cycles = swg_cycles(p["channels"], p["ifm"], p["ofm"], p["kernel"], p["stride"], p["dilation"],
                                fold.simd)
        # line buffer of K_h rows × padded width × channels × A bits: BRAM18 when over 4 Kib, else LUTRAM
        # (64 bits per LUT), plus ~100 LUTs of address logic (hwnas approximation)
        bits = p["kernel"][0] * p["ifm"][1] * p["channels"] * a
        if bits > 4096:
            row.bram18 = math.ceil(bits / _BRAM18_BITS) * math.ceil(fold.simd * a / 36)
            row.luts = 100
        else:
            row.luts = 100 + math.ceil(bits / 64)
    elif stage.kind == "pad":
        row.cycles = p["pixels"] * (p["channels"] // fold.simd)
        row.luts = 50 + fold.simd * a  # a mux per lane (hwnas approximation)
    elif stage.kind == "thresh":
        # MultiThreshold: 2^B − 1 thresholds per channel at accumulator width; binary-search evaluation
        # (FINN Thresholding_rtl) costs one acc-bit comparator per output bit per PE. Threshold memory goes
        # to BRAM18 above 18 Kib, else LUTRAM at 64 bits per LUT (hwnas approximation of FINN's estimates).
        row.cycles = p["positions"] * (p["channels"] // fold.pe)
        b, acc = p["out_bits"], p["acc_bits"]
        row.act_bits = acc
        steps = 2 ** int(b) - 1
        tbits = p["channels"] * steps * acc
        row.luts = 100 + fold.pe * b * acc + (0 if tbits > _BRAM18_BITS else math.ceil(tbits / 64))
        row.bram18 = math.ceil(tbits / _BRAM18_BITS) if tbits > _BRAM18_BITS else 0
        row.extra.update({"thresholds_per_channel": steps, "out_bits": b})
    elif stage.kind == "pool":
        row.cycles = p["pixels"] * (p["channels"] // fold.pe)
        row.act_bits = p["bits"]
        row.luts = 50 + fold.pe * p["bits"] * 2  # comparator + register per lane (hwnas approximation)
    elif stage.kind == "add":
        # FINN AddStreams: positions·C/PE cycles; an adder lane at the operand width per PE plus ~50 LUTs of
        # stream control (hwnas approximation: FINN has no LUT estimate for AddStreams)
        row.cycles = p["positions"] * (p["channels"] // fold.pe) * (p["operands"] - 1)
        row.act_bits = p["bits"]
        row.luts = 50 + fold.pe * p["bits"] * (p["operands"] - 1)
        row.extra.update({"adders_per_cycle": fold.pe * (p["operands"] - 1), "out_bits": p["bits"] + 1})
    elif stage.kind == "gpool":
        # FINN GlobalAccPool: positions·C/PE + C/PE cycles; an accumulator lane of acc bits per PE plus the C
        # partial sums in LUTRAM at 64 bits per LUT and ~50 LUTs of control (hwnas approximation)
        row.cycles = p["positions"] * (p["channels"] // fold.pe) + p["channels"] // fold.pe
        row.act_bits = p["bits"]
        row.luts = 50 + fold.pe * p["acc_bits"] + math.ceil(p["channels"] * p["acc_bits"] / 64)
        row.extra.update({"out_bits": p["acc_bits"]})
    elif stage.kind == "concat":
        # FINN StreamingConcat: one output vector (every channel) per cycle; data movement only, no compute
        row.cycles = p["positions"]
        row.act_bits = p["bits"]
    elif stage.kind == "dup":
        # FINN DuplicateStreams (inserted where a tensor feeds several layers): positions·C cycles, no compute
        row.in_shape = row.out_shape = p["shape"]
        row.weight_bits = 0.0
        row.cycles = p["positions"] * p["channels"]
        row.act_bits = p["bits"]
        row.extra.update({"copies": p["copies"]})
    row.ffs = FF_PER_LUT * row.luts
    row.extra.update({"pe": fold.pe, "simd": fold.simd})
    return row


# ----------------------------------------------------------------------------------------- public API
def _opts(options: dict[str, Any]) -> dict[str, Any]:
    opts = {"res_type": "lut", "mem_style": "block", "mvau_variant": "hls"}
    unknown = set(options) - set(opts)
    if unknown:
        raise CostError(f"finn options: unknown {sorted(unknown)}; expected {sorted(opts)}")
    opts.update(options)
    for key, allowed in (("res_type", ("lut", "dsp")), ("mem_style", ("block", "distributed", "ultra")),
                         ("mvau_variant", ("hls", "rtl"))):
        if opts[key] not in allowed:
            raise CostError(f"finn option {key}: {opts[key]!r} not in {allowed}")
    return opts


def _derived_folding(stages: list[_Stage], folding: dict[str, Folding]) -> dict[int, Folding]:
    """Per stage: compute stages take the layer's folding; helpers follow their compute stage."""
    out: dict[int, Folding] = {}
    for idx, st in enumerate(stages):
        fold = folding.get(st.layer, Folding())
        if st.foldable:
            _check_folding(st, fold)
            out[idx] = fold
        elif st.kind in ("swg", "pad"):
            # the sliding window feeds SIMD input channels per cycle to the MVAU that follows
            comp = next(s for s in stages[idx:] if s.foldable and s.layer == st.layer)
            cf = folding.get(comp.layer, Folding())
            out[idx] = Folding(1, math.gcd(cf.simd, st.params["channels"]))
        elif st.kind == "thresh":
            # the thresholds follow the PE of the compute layer upstream of them in the data flow
            prev = st.params.get("follow")
            pe = folding.get(prev, Folding()).pe if prev is not None else 1
            out[idx] = Folding(math.gcd(pe, st.params["channels"]), 1)
        else:
            out[idx] = Folding()
    return out


def finn_estimate(model: Any, target: str | Device, input_shape: tuple[int, ...], *,
                  folding: dict[str, Folding] | None = None, clock_mhz: float | None = None,
                  **options: Any) -> HardwareEstimate:
    """Estimate the FINN dataflow accelerator of ``model`` on ``target`` with per-layer ``folding``.

    ``folding`` maps layer names (as in ``model.named_modules()``) to :class:`Folding`; layers not named
    run at PE = SIMD = 1 (fully folded, as in seed 000). Options: ``res_type`` (``lut``/``dsp`` multipliers),
    ``mem_style`` (``block``/``distributed``/``ultra`` weight memory), ``mvau_variant`` (``hls``/``rtl``).
    """
    device = get_device(target)
    stages = _stages(describe_model(model, input_shape))
    return _estimate(stages, dict(folding or {}), device, clock_mhz, _opts(options))


def _estimate(stages: list[_Stage], folding: dict[str, Folding], device: Device, clock_mhz: float | None,
              opts: dict[str, Any]) -> HardwareEstimate:
    known = {s.layer for s in stages if s.foldable}
    unknown = sorted(set(folding) - known)
    if unknown:
        raise CostError(f"folding: no foldable layer named {unknown}; foldable layers are {sorted(known)}")
    folds = _derived_folding(stages, folding)
    rows = [_row(st, folds[i], opts, device) for i, st in enumerate(stages)]
    f = float(clock_mhz or device.clock_mhz)
    latency = critical_path([r.cycles for r in rows], [st.after for st in stages])
    ii = max((r.cycles for r in rows), default=1)
    est = HardwareEstimate("FINN dataflow", device, f, rows, latency, ii, assumptions={
        "model": "FINN streaming dataflow (seed 000 eq. 2-3; FINN get_exp_cycles and FINN-R resource formulas)",
        "device": device.name, "part": device.part, "clock_mhz": f,
        "folding": {s.layer: (folds[i].pe, folds[i].simd) for i, s in enumerate(stages) if s.foldable},
        **opts,
        "ff": f"FF ≈ {FF_PER_LUT}·LUT (seed 000 Table II ratio; FINN does not estimate FFs)",
        "power": "hwnas.cost.power: static + per-resource dynamic × f (rough, see devices.yaml)",
    })
    t = est.totals
    est.power_w = power_watts(device, f, t["luts"], t["ffs"], t["bram18"], t["uram"], t["dsps"])
    return est


def _options_for(stage: _Stage) -> list[Folding]:
    mh, mw = stage.bounds()
    pes = [d for d in range(1, mh + 1) if mh % d == 0]
    simds = [d for d in range(1, mw + 1) if mw % d == 0]
    return sorted((Folding(p, s) for p in pes for s in simds), key=lambda fo: (fo.pe * fo.simd, fo.pe))


def fold_for_throughput(model: Any, target: str | Device, input_shape: tuple[int, ...], target_fps: float, *,
                        clock_mhz: float | None = None, **options: Any) -> tuple[dict[str, Folding], HardwareEstimate]:
    """Cheapest folding (least PE·SIMD per layer) whose slowest stage reaches ``target_fps`` samples/s.

    Each MVAU/VVAU gets the smallest parallelism whose cycles fit the target initiation interval. Stages
    that cannot be folded (sliding window with the SIMD they inherit, pooling) can still bound the II:
    the returned estimate says whether the target was met (``assumptions['target_met']``).
    """
    device = get_device(target)
    f = float(clock_mhz or device.clock_mhz)
    if not target_fps > 0:
        raise CostError(f"target_fps: must be > 0, got {target_fps!r}")
    budget = f * 1e6 / target_fps  # cycles per sample
    opts = _opts(options)
    stages = _stages(describe_model(model, input_shape))
    folding: dict[str, Folding] = {}
    for st in stages:
        if not st.foldable:
            continue
        p = st.params
        choice = None
        for fo in _options_for(st):
            cyc = (mvau_cycles(p["mh"], p["mw"], fo.pe, fo.simd, p["vectors"]) if st.kind == "mvau"
                   else (p["channels"] // fo.pe) * (p["kk"] // fo.simd) * p["vectors"])
            if cyc <= budget:
                choice = fo
                break
        folding[st.layer] = choice or _options_for(st)[-1]
    est = _estimate(stages, folding, device, f, opts)
    est.assumptions["target_fps"] = target_fps
    est.assumptions["target_met"] = est.throughput >= target_fps
    return folding, est


def fold_for_resources(model: Any, target: str | Device, input_shape: tuple[int, ...], *, cap: float = 0.8,
                       clock_mhz: float | None = None, max_steps: int = 10_000,
                       **options: Any) -> tuple[dict[str, Folding], HardwareEstimate]:
    """Fastest folding found greedily within ``cap`` × every device resource.

    Starting fully folded, repeatedly give the slowest compute stage its next larger parallelism (spend
    parallelism where the cycles are), keeping a step only if every resource stays under the cap.
    """
    device = get_device(target)
    if not 0 < cap <= 1:
        raise CostError(f"cap: must be in (0, 1], got {cap!r}")
    opts = _opts(options)
    all_stages = _stages(describe_model(model, input_shape))
    stages = [s for s in all_stages if s.foldable]
    folding: dict[str, Folding] = {s.layer: Folding() for s in stages}
    est = _estimate(all_stages, folding, device, clock_mhz, opts)
    if not all(u <= cap for u in est.utilization.values()):
        raise CostError(f"cap: even the fully folded design needs more than {cap:.0%} of {device.name} "
                        f"({est.verdict})")
    frozen: set[str] = set()
    for _ in range(max_steps):
        rows = {r.name.split(":")[0]: r for r in est.rows if r.type in ("MVAU", "VVAU")}
        candidates = [s for s in stages if s.layer not in frozen]
        if not candidates:
            break
        slow = max(candidates, key=lambda s: rows[s.layer].cycles)
        cur = folding[slow.layer]
        cur_cycles = rows[slow.layer].cycles
        upgrade = None
        for fo in _options_for(slow):
            trial = dict(folding)
            trial[slow.layer] = fo
            t_est = _estimate(all_stages, trial, device, clock_mhz, opts)
            new_cycles = next(r.cycles for r in t_est.rows if r.name.split(":")[0] == slow.layer
                              and r.type in ("MVAU", "VVAU"))
            if fo.pe * fo.simd > cur.pe * cur.simd and new_cycles < cur_cycles:
                upgrade = (fo, t_est)
                break
        if upgrade is None or not all(u <= cap for u in upgrade[1].utilization.values()):
            frozen.add(slow.layer)
            continue
        folding[slow.layer], est = upgrade
    est.assumptions["resource_cap"] = cap
    return folding, est


def resources_of(est: HardwareEstimate) -> dict[str, float]:
    """Totals of :data:`~hwnas.cost.catalog.RESOURCES` of an estimate (convenience for budgets)."""
    return {r: est.total(r) for r in RESOURCES}
