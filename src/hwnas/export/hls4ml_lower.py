"""Lowering of an :class:`~hwnas.export.graph.ExportGraph` to hls4ml layer dictionaries with exact types.

Contract (used by :mod:`hwnas.export.hls4ml`; no hls4ml import here, so it is testable without it):

* :func:`lower` walks the graph once, in its topological order, following tensors (not list positions), and
  returns a :class:`Lowered`: the list of hls4ml layer dictionaries (``ModelGraph.from_layer_list`` format,
  channels last), one :class:`HlsLayer` record per dictionary with every type it needs (``result``,
  ``weight``, ``bias``, ``accum``, ``table``) as an :class:`ApType` and the hls4ml layers it reads
  (``inputs``; written into the dictionary where it is not simply the previous layer, so a chain's
  dictionaries are unchanged), and the layout maps between torch's flat order and hls4ml's.
* Every type is derived from value ranges, never guessed: a tensor is tracked as per-element bounds and
  fractional bits (:class:`ValueRange`, torch layout). A quantizer's output has its format's range; a
  Dense/Conv accumulates ``bias + Σ w·x`` with interval arithmetic on the real weights and the finest grid
  of any product; pooling takes the window's max/sum; a table its values. Accumulators and results that
  are not re-quantized get the narrowest ``ap_[u]fixed`` holding every reachable value exactly (WRAP/TRN,
  so intermediate wrap-around in a sum is harmless: the final sum fits).
* A uniform quantizer becomes the ``result_t`` of the layer producing its input (with its rounding and
  overflow modes: hls4ml casts the exact accumulator/value to ``result_t``) only when it is the only reader
  of that tensor (through in-place flattens): a tensor also read by another branch (a residual skip) keeps
  its exact value there. Otherwise, and for a heterogeneous quantizer (per channel or per element), it
  becomes an hls4ml ``FixedPointQuantizer`` layer: a generated function casting every element to its own
  ``ap_fixed<W,I,mode,mode>``; its output type is the union of the element formats. Identical quantizers of
  one tensor (a block input read by a conv and a skip conv) are one layer.
* Graph nodes: ``Add`` → ``Merge`` (``op: add``; more operands: a cascade). hls4ml adds in the operand types
  (``ap_fixed`` ``+`` is full precision: the finer grid, one more integer bit) and casts the sum once to
  ``result_t``, which is the exact sum's range on the finer grid (or the quantizer that reads it). ``Concat``
  → ``Concatenate`` (torch axis 0, channels, is hls4ml's last axis; a spatial axis ``a`` is ``a - 1``), each
  operand cast to the union of the operand types (exact; or to the quantizer that reads it), the permutation
  of the result composed from the operands' (so a Flatten after it, or a rank-1 concatenation of flattened
  tensors, stays right).
  ``GlobalPool`` → ``GlobalAverage/MaxPooling1D/2D``: the average sums in ``accum_t`` (the exact sum with the
  input grid plus ``log2(size)`` fractional bits) and divides by the power-of-two size (a shift: exact in
  that type); max keeps the input type.
* ``Softmax`` → hls4ml ``Softmax`` (``implementation: stable``, ``softmax_stable``; every type of the node —
  ``inp_norm_t``, ``exp_table_t``, ``accum_t``, ``inv_inp_t``, ``inv_table_t`` — written as a layer attribute
  with its modes, both table sizes and ``exp_scale`` set, so hls4ml derives nothing: setting ``inv_table_size``
  also keeps its ``fix_softmax_table_size`` pass off). The rows (torch's last axis) are found in hls4ml's
  layout (:func:`row_layout`): a row strided by the channels-last layout is ``softmax_multidim``'s
  ``n_outer``/``n_inner`` split. ``LayerNorm`` → ``LayerNormalization`` (``layernormalize``; ``seq_len`` rows
  of ``n``, which must be contiguous in hls4ml's layout; gamma/beta as ``scale``/``bias`` weights typed by the
  narrowest exact types, ``accum_t``/``table_t`` the node's). Both compute exactly the node's algorithm on
  the input values (its type does not matter); the output is the exact final expression (``exp_res · inv``;
  ``diff · table · gamma + beta``) cast to ``result_t``: the output quantizer, or the exact product's range.
  A row whose elements reach hls4ml in another order (a flattened channels-last tensor) is exact only when the
  sums cannot depend on the order: a WRAP ``accum_t`` (the summands lie on its grid); gamma/beta follow the
  order.
* Channels last: conv weights are transposed to (K…, Cin, Cout), per-element formats to channels last, and a
  Dense after ``Flatten`` gets its input rows permuted (torch flattens channel-major).
* Dilated convolutions (1-D, 2-D with a dilation per axis, depthwise too; hls4ml has none) become the equal
  undilated convolution (:func:`undilate`): ``k`` taps at dilation ``d`` are ``d·(k-1)+1`` taps with zeros
  between the original ones, same stride and padding. Exact, with the same types (a zero tap adds nothing
  to the interval bounds and has no grid). hls4ml instantiates the expanded kernel: in the Latency strategy
  the zero products are constants that HLS folds away (no multiplier, no adder input), in the Resource
  strategy (reuse factor > 1) they are stored and multiplied like any weight; reuse factors count the
  expanded kernel's multiplications.
* What hls4ml cannot do exactly raises :class:`~hwnas.export.errors.ExportError` naming the layer:
  grouped (non-depthwise) convolutions, depthwise with a channel multiplier, a Dense on a tensor of rank
  > 1, a table whose input type exceeds :data:`MAX_TABLE_BITS`, depthwise convolutions with the Resource
  strategy, reuse factors that do not divide a layer's multiplications, an ``Add`` whose operands reach hls4ml
  in different element orders (a flattened channels-last tensor and one in torch order), a ``LayerNorm`` whose
  rows are strided in hls4ml's layout (it normalizes contiguous rows only), a ``Softmax``/``LayerNorm`` row in
  another element order with a saturating ``accum_t``, and node kinds it has no layer for.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hwnas.nn.normalization import FixedType
from hwnas.quant.reference import quantize_fixed_np

from .errors import ExportError
from .graph import (
    INPUT,
    Add,
    Concat,
    Conv,
    Dense,
    ExportGraph,
    FixedFormat,
    Flatten,
    GlobalPool,
    LayerNorm,
    Node,
    Pool,
    Quantize,
    ReLU,
    Softmax,
    Table,
    value_format,
)

__all__ = ["MAX_TABLE_BITS", "ApType", "HlsLayer", "Lowered", "ValueRange", "fixed_type", "lower", "row_layout",
           "undilate", "valid_reuse_factors"]

MAX_TABLE_BITS = 16
"""Widest table input (2**16 entries): a lookup table indexed by every code of its input type."""

_NOF = -(1 << 20)
"""Fractional-bit sentinel of an element that is always 0 (it needs no grid)."""

_OTHER_PATH = "the RTL export (hwnas.export, alkaid) has no such restriction"


# ------------------------------------------------------------------------------------------------- types
@dataclass(frozen=True)
class ApType:
    """One ``ap_[u]fixed<width, integer, round, overflow>`` type (``integer`` includes the sign bit)."""

    signed: bool
    width: int
    integer: int
    round_mode: str = "TRN"
    overflow_mode: str = "WRAP"

    @property
    def fractional(self) -> int:
        """Fractional bits ``width - integer`` (may be negative)."""
        return self.width - self.integer

    def cpp(self) -> str:
        """The C++ spelling, modes only when they are not the TRN/WRAP default."""
        base = f"ap_{'' if self.signed else 'u'}fixed<{self.width},{self.integer}"
        if self.round_mode == "TRN" and self.overflow_mode == "WRAP":
            return base + ">"
        return f"{base},AP_{self.round_mode},AP_{self.overflow_mode}>"

    def hls(self) -> str:
        """The spelling hls4ml's precision parser reads back to the same type."""
        return (f"ap_{'' if self.signed else 'u'}fixed<{self.width},{self.integer},AP_{self.round_mode},"
                f"AP_{self.overflow_mode},0>")

    def codes(self) -> np.ndarray:
        """The value of every bit pattern, indexed by the raw pattern (two's complement when signed)."""
        n = 1 << self.width
        raw = np.arange(n, dtype=np.int64)
        if self.signed:
            raw = np.where(raw >= n // 2, raw - n, raw)
        return np.ldexp(raw.astype(np.float64), -self.fractional)


def fixed_type(t: FixedType) -> ApType:
    """The :class:`ApType` of a :class:`~hwnas.nn.normalization.FixedType` (same bits and modes)."""
    return ApType(bool(t.k), t.width, t.k + t.i, t.round_mode, t.overflow_mode)


def format_type(fmt: FixedFormat, index: int = 0) -> ApType:
    """The type of one element of a format, with the format's rounding and overflow modes."""
    k, i, f = int(fmt.k.flat[index]), int(fmt.i.flat[index]), int(fmt.f.flat[index])
    return ApType(bool(k), k + i + f, k + i, fmt.round_mode, fmt.overflow_mode)


# ------------------------------------------------------------------------------------------------ ranges
@dataclass(frozen=True, eq=False)
class ValueRange:
    """Reachable values of a tensor: per element ``lo <= x <= hi`` on the grid ``2**-f`` (torch layout)."""

    lo: np.ndarray
    hi: np.ndarray
    f: np.ndarray

    @staticmethod
    def of_format(fmt: FixedFormat) -> ValueRange:
        """The range of a quantizer's output: its format's full range (pruned elements are 0)."""
        alive = fmt.width > 0
        k, i, f = (a.astype(np.float64) for a in (fmt.k, fmt.i, fmt.f))
        lo = np.where(alive, -k * np.exp2(i), 0.0)
        hi = np.where(alive, np.exp2(i) - np.exp2(-f), 0.0)
        return ValueRange(lo, hi, np.where(alive, fmt.f, _NOF).astype(np.int64))

    @staticmethod
    def of_values(values: np.ndarray) -> ValueRange:
        """The (degenerate) range of constants, with the fractional bits each needs."""
        v = np.asarray(values, dtype=np.float64)
        f = value_format(v).f
        return ValueRange(v.copy(), v.copy(), np.where(v != 0, f, _NOF).astype(np.int64))

    def alive(self) -> np.ndarray:
        """Elements that are not always zero."""
        return (self.lo != 0) | (self.hi != 0)

    def reshape(self, shape: tuple[int, ...]) -> ValueRange:
        """The same range for the tensor reshaped (C order)."""
        return ValueRange(self.lo.reshape(shape), self.hi.reshape(shape), self.f.reshape(shape))

    def union_type(self, signed: bool = False) -> ApType:
        """The narrowest ``ap_[u]fixed`` (TRN, WRAP) holding every reachable value of every element exactly."""
        alive = self.alive() & (self.f > _NOF)
        if not alive.any():
            return ApType(True, 2, 2) if signed else ApType(False, 1, 1)
        f = int(self.f[alive].max())
        lo = float(self.lo.min())
        hi = float(self.hi.max())
        c_lo, c_hi = math.ldexp(lo, f), math.ldexp(hi, f)
        lo_i, hi_i = math.floor(c_lo), math.ceil(c_hi)
        k = 1 if (lo_i < 0 or signed) else 0
        m = max(max(hi_i, 0).bit_length(), (-lo_i - 1).bit_length() if lo_i < 0 else 0)
        if max(abs(c_lo), abs(c_hi)) >= 2.0**52:  # float64 bounds may be rounded: one bit of margin
            m += 1
        m = max(m, 1 - k)
        return ApType(bool(k), k + m, k + m - f)


def _torch(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))[None]


def _dense_range(r: ValueRange, w: np.ndarray, b: np.ndarray | None) -> ValueRange:
    wp, wn = np.maximum(w, 0.0), np.minimum(w, 0.0)
    hi = wp @ r.hi + wn @ r.lo
    lo = wp @ r.lo + wn @ r.hi
    fx = np.where(r.alive(), r.f, _NOF)
    fw = value_format(w).f
    terms = np.where((w != 0) & (fx[None, :] > _NOF), fx[None, :] + fw, _NOF)
    fo = terms.max(axis=1) if terms.size else np.full(w.shape[0], _NOF)
    if b is not None:
        fo = np.where(b != 0, np.maximum(fo, value_format(b).f), fo)
        lo, hi = lo + b, hi + b
    return ValueRange(lo, hi, fo.astype(np.int64))


def _conv_range(node: Conv, r: ValueRange) -> ValueRange:
    fn = F.conv1d if node.dims == 1 else F.conv2d
    wp, wn = torch.from_numpy(np.maximum(node.weight, 0.0)), torch.from_numpy(np.minimum(node.weight, 0.0))
    args = (None, node.stride, node.padding, node.dilation, node.groups)
    x_lo, x_hi = _torch(r.lo), _torch(r.hi)
    hi = (fn(x_hi, wp, *args) + fn(x_lo, wn, *args))[0].numpy()
    lo = (fn(x_lo, wp, *args) + fn(x_hi, wn, *args))[0].numpy()
    cin = r.lo.shape[0]
    fx = np.where(r.alive(), r.f, _NOF).reshape(cin, -1).max(axis=1)  # finest grid per input channel
    cout, cin_g = node.weight.shape[:2]
    group = np.arange(cout) // (cout // node.groups)
    fx_w = fx[group[:, None] * cin_g + np.arange(cin_g)[None, :]]  # (Cout, Cin/groups)
    fx_w = fx_w.reshape(fx_w.shape + (1,) * node.dims)
    fw = value_format(node.weight).f
    terms = np.where((node.weight != 0) & (fx_w > _NOF), fx_w + fw, _NOF)
    fo = terms.reshape(cout, -1).max(axis=1)
    if node.bias is not None:
        b = node.bias
        fo = np.where(b != 0, np.maximum(fo, value_format(b).f), fo)
        bias = b.reshape((-1,) + (1,) * node.dims)
        lo, hi = lo + bias, hi + bias
    f = np.broadcast_to(fo.reshape((-1,) + (1,) * node.dims), lo.shape).astype(np.int64)
    return ValueRange(lo, hi, f.copy())


def undilate(node: Conv) -> Conv:
    """The undilated convolution equal to ``node`` (``node`` itself when it is not dilated).

    Per spatial axis, ``k`` taps at dilation ``d`` become ``d·(k-1)+1`` taps, the original ones at multiples of
    ``d`` and zeros between them (same stride, padding and groups). Exact, value for value: an inserted tap
    multiplies its input by 0. The derived types do not change either: a zero weight is a tap that contributes
    nothing to the interval bounds and has no grid (:func:`_conv_range` skips it,
    :meth:`ValueRange.union_type` ignores always-zero elements), and the per-element weight format gets width-0
    entries (a pruned weight) at the inserted taps. hls4ml has no dilated convolution in io_parallel (its im2col
    generator takes a dilation, its ``GenerateConvIm2col`` pass never passes one), hence the expansion; see
    ``_Lowerer.conv`` for what the zeros cost.
    """
    if all(d == 1 for d in node.dilation):
        return node
    full = tuple(d * (k - 1) + 1 for d, k in zip(node.dilation, node.kernel, strict=True))
    taps = (slice(None), slice(None), *(slice(None, None, d) for d in node.dilation))
    weight = np.zeros(node.weight.shape[:2] + full, dtype=node.weight.dtype)
    weight[taps] = node.weight
    fmt = node.weight_format
    kif = []
    for a in (fmt.k, fmt.i, fmt.f):
        out = np.zeros(weight.shape, dtype=np.int64)
        out[taps] = np.broadcast_to(a, node.weight.shape)
        kif.append(out)
    wf = FixedFormat(*kif, fmt.round_mode, fmt.overflow_mode, fmt.where)
    return replace(node, weight=weight, dilation=(1,) * node.dims, weight_format=wf)


def _pool_range(node: Pool, r: ValueRange) -> tuple[ValueRange, ValueRange | None]:
    """Output range and, for average pooling, the range of the window sums (the accumulator)."""
    maxp = F.max_pool1d if node.dims == 1 else F.max_pool2d
    f_in = torch.from_numpy(np.where(r.alive(), r.f, _NOF).astype(np.float64))[None]
    f_out = maxp(f_in, node.kernel, node.stride, node.padding)[0].numpy().astype(np.int64)
    if node.kind == "max":
        lo = maxp(_torch(r.lo), node.kernel, node.stride, node.padding)[0].numpy()
        hi = maxp(_torch(r.hi), node.kernel, node.stride, node.padding)[0].numpy()
        return ValueRange(lo, hi, f_out), None
    avgp = F.avg_pool1d if node.dims == 1 else F.avg_pool2d
    n = math.prod(node.kernel)
    shift = n.bit_length() - 1
    lo = avgp(_torch(r.lo), node.kernel, node.stride, node.padding)[0].numpy()
    hi = avgp(_torch(r.hi), node.kernel, node.stride, node.padding)[0].numpy()
    f = np.where(f_out > _NOF, f_out + shift, _NOF)
    return ValueRange(lo, hi, f), ValueRange(lo * n, hi * n, f)


# ------------------------------------------------------------------------------------------------ layers
@dataclass(eq=False)
class HlsLayer:
    """One hls4ml layer: its dictionary, the types it is given and where it comes from in the graph."""

    name: str
    """hls4ml layer name (a C++ identifier)."""
    source: str
    """The hwnas layer it implements (``"input"`` for the model input)."""
    kind: str
    """What it does, for reports: ``input``, ``quantizer``, ``dense``, ``conv1d``, ``relu``, ``table`` ..."""
    attrs: dict[str, Any]
    node_index: int
    """Index in ``graph.nodes`` of the last node whose output this layer produces (-1: the raw input, or a step
    of a merge of more than two tensors)."""
    hls_shape: tuple[int, ...]
    perm: np.ndarray
    """hls4ml flat position → torch flat index of the layer's output."""
    types: dict[str, ApType] = field(default_factory=dict)
    same_as: HlsLayer | None = None
    """For in-place layers (Flatten): the layer whose output type this one shares."""
    foldable: bool = True
    """Whether its output is a cast of an exact value (so a following uniform quantizer can be its result_t)."""
    reuse_factor: int = 1
    strategy: str = "Latency"
    note: str = ""
    inputs: list[str] = field(default_factory=list)
    """The hls4ml layers whose outputs it reads (the producers of its input tensors)."""
    attr_types: tuple[str, ...] = ()
    """Keys of ``types`` that hls4ml reads as layer attributes (``<key>_t``, e.g. a Softmax's ``exp_table_t``):
    the exporter writes them into the dictionary with their rounding and overflow modes."""

    @property
    def result(self) -> ApType:
        """The output type (resolved through ``same_as``)."""
        return self.same_as.result if self.same_as is not None else self.types["result"]


@dataclass(eq=False)
class Lowered:
    """The lowered graph (see the module docstring)."""

    layers: list[HlsLayer]
    input_perm: np.ndarray
    output_perm: np.ndarray
    input_hls_shape: tuple[int, ...]
    output_hls_shape: tuple[int, ...]
    output_layer: str = ""
    """The hls4ml layer producing the model output (the last one of ``layers``)."""

    @property
    def output(self) -> HlsLayer:
        """The layer producing the model output."""
        return next((layer for layer in self.layers if layer.name == self.output_layer), self.layers[-1])

    def layer_list(self) -> list[dict[str, Any]]:
        """The dictionaries for ``ModelGraph.from_layer_list``."""
        return [dict(layer.attrs) for layer in self.layers]

    def layer_config(self) -> dict[str, dict[str, Any]]:
        """hls4ml ``HLSConfig['LayerName']``: precisions, reuse factor, strategy, tracing, per layer."""
        out: dict[str, dict[str, Any]] = {}
        for layer in self.layers:
            prec = {key: t.hls() for key, t in layer.types.items() if key != "result"}
            prec["result"] = layer.result.hls()
            out[layer.name] = {"Precision": prec, "ReuseFactor": layer.reuse_factor, "Strategy": layer.strategy,
                               "Trace": True}
        return out


def _hls_layout(shape: tuple[int, ...]) -> tuple[tuple[int, ...], np.ndarray]:
    """Channels-last shape of a torch (C, *S) tensor and the flat permutation hls position → torch index."""
    idx = np.arange(math.prod(shape)).reshape(shape)
    if len(shape) == 1:
        return shape, idx
    moved = np.moveaxis(idx, 0, -1)
    return tuple(moved.shape), moved.ravel()


def _to_hls(arr: np.ndarray, perm: np.ndarray, hls_shape: tuple[int, ...]) -> np.ndarray:
    return np.asarray(arr).ravel()[perm].reshape(hls_shape)


def valid_reuse_factors(n_in: int, n_out: int, resource: bool) -> list[int]:
    """Reuse factors hls4ml accepts for a layer of ``n_in × n_out`` multiplications.

    Every reuse factor must divide the multiplications; the Resource kernels also need hls4ml's own
    conditions (``FPGABackend._validate_reuse_factor``, restated here).
    """
    out = []
    total = n_in * n_out
    small = [d for d in range(1, math.isqrt(total) + 1) if total % d == 0]
    for rf in sorted(set(small) | {total // d for d in small}):
        if resource:
            mult_limit = math.ceil(total / min(n_in, rf))
            if not (mult_limit % n_out == 0 or rf >= n_in) or not (rf % n_in == 0 or rf < n_in):
                continue
        out.append(rf)
    return out


def _ident(text: str) -> str:
    return re.sub(r"\W", "_", text)


def _fmt_key(fmt: FixedFormat) -> tuple[Any, ...]:
    """Identity of a quantizer's effect (per-element k, i, f in C order and the modes)."""
    return (fmt.k.size, fmt.k.tobytes(), fmt.i.tobytes(), fmt.f.tobytes(), fmt.round_mode, fmt.overflow_mode)


def _max_padded(node: Node) -> bool:
    """Whether ``node`` is a padded max pooling (hls4ml pads with its input type's minimum)."""
    return isinstance(node, Pool) and node.kind == "max" and any(node.padding)


@dataclass(eq=False)
class _Tensor:
    """A graph tensor as hls4ml holds it: the layer whose output variable it is, its range and layout."""

    layer: HlsLayer
    range: ValueRange
    shape: tuple[int, ...]
    """Per-sample shape in torch layout."""
    hls_shape: tuple[int, ...]
    perm: np.ndarray
    """hls4ml flat position → torch flat index."""

    @property
    def owner(self) -> HlsLayer:
        """The layer whose ``result_t`` is this tensor's type (through an in-place Reshape)."""
        return self.layer.same_as if self.layer.same_as is not None else self.layer


class _Lowerer:
    def __init__(self, graph: ExportGraph, reuse: dict[str, int], strategy: dict[str, str]) -> None:
        self.graph = graph
        self.reuse = reuse
        self.strategy = strategy
        self.layers: list[HlsLayer] = []
        self.names: set[str] = set()
        self.tensors: dict[str, _Tensor] = {}
        self.owned: dict[int, list[str]] = {}
        """id(layer) → the tensors whose type is that layer's result_t."""
        self.skip: set[int] = set()
        """Indices of nodes implemented by another layer (a table's output quantizer, a duplicate quantizer)."""
        self.rename: dict[str, str] = {}
        self._dedupe()
        self.readers: dict[str, list[tuple[int, Node]]] = {}
        for index, node in enumerate(graph.nodes):
            if index not in self.skip:
                for t in self.inputs_of(node):
                    self.readers.setdefault(t, []).append((index, node))
        self.output = self.rename.get(graph.output or graph.nodes[-1].output, graph.output or graph.nodes[-1].output)

    # -------------------------------------------------------------- graph helpers
    def _dedupe(self) -> None:
        """Identical quantizers of one tensor (a block input read by a conv and a skip conv) are one layer."""
        seen: dict[tuple[Any, ...], str] = {}
        for index, node in enumerate(self.graph.nodes):
            if isinstance(node, Quantize):
                key = (self.inputs_of(node)[0], *_fmt_key(node.fmt))
                if key in seen:
                    self.rename[node.output] = seen[key]
                    self.skip.add(index)
                else:
                    seen[key] = node.output

    def inputs_of(self, node: Node) -> tuple[str, ...]:
        return tuple(self.rename.get(t, t) for t in node.inputs)

    def consumers(self, tensor: str) -> list[Node]:
        return [node for _, node in self.readers.get(tensor, [])]

    def only_read_by(self, tensor: str, node: Node) -> bool:
        """Whether ``node`` is the only reader of ``tensor`` (through in-place flattens), so its value may change."""
        if tensor == self.output:
            return False
        for c in self.consumers(tensor):
            if isinstance(c, Flatten):
                if not self.only_read_by(c.output, node):
                    return False
            elif c is not node:
                return False
        return True

    # -------------------------------------------------------------- helpers
    def name(self, kind: str, source: str) -> str:
        base = f"{kind}_{_ident(source)}"
        name, n = base, 1
        while name in self.names:
            n += 1
            name = f"{base}_{n}"
        self.names.add(name)
        return name

    def emit(self, kind: str, source: str, attrs: dict[str, Any], index: int, inputs: list[_Tensor],
             hls_shape: tuple[int, ...], perm: np.ndarray, **kw: Any) -> HlsLayer:
        name = self.name(kind, source)
        attrs = {"name": name, **attrs}
        names = [t.layer.name for t in inputs]
        if names and (not self.layers or names != [self.layers[-1].name]):
            attrs["inputs"] = names  # hls4ml defaults to the previous layer of the list
        layer = HlsLayer(name, source, kind, attrs, index, hls_shape, perm, **kw)
        layer.inputs = names
        self.layers.append(layer)
        return layer

    def put(self, tensor: str, layer: HlsLayer, r: ValueRange, shape: tuple[int, ...],
            hls_shape: tuple[int, ...] | None = None, perm: np.ndarray | None = None) -> _Tensor:
        """Record ``tensor`` as the output of ``layer`` (layout: the layer's unless given)."""
        rec = _Tensor(layer, r, shape, layer.hls_shape if hls_shape is None else hls_shape,
                      layer.perm if perm is None else perm)
        self.tensors[tensor] = rec
        self.owned.setdefault(id(rec.owner), []).append(tensor)
        return rec

    def needs_signed(self, tensors: list[str]) -> bool:
        """Whether any reader of ``tensors`` is a padded max pooling (hls4ml pads with the type's minimum)."""
        return any(_max_padded(c) for t in tensors for c in self.consumers(t))

    def close(self, rec: _Tensor) -> ApType:
        """Give the layer holding ``rec`` the exact type of its output (signed where a padded max pooling reads it)."""
        owner = rec.owner
        signed = self.needs_signed(self.owned.get(id(owner), []))
        if "result" not in owner.types:
            owner.types["result"] = rec.range.union_type(signed)
            if signed and not rec.range.union_type().signed:
                owner.note = "signed: hls4ml pads max pooling with the type's minimum"
        elif signed and not owner.result.signed:  # pragma: no cover - guarded by the quantizer fold
            raise ExportError(f"{owner.source}: internal: unsigned input to a padded max pooling")
        return owner.result

    def rf_strategy(self, node: Node, n_in: int, n_out: int, kind: str) -> tuple[int, str]:
        rf = self.reuse.get(node.name, 1)
        strategy = self.strategy.get(node.name, "Latency")
        resource = strategy == "Resource"
        if kind.startswith("depthwise") and resource:
            raise ExportError(f"{node.name}: hls4ml has no Resource strategy for depthwise convolutions "
                              "(its kernel asserts); give this layer strategy 'Latency'")
        if kind.startswith("depthwise"):
            n_in, n_out = n_in // n_out, n_out  # one product per kernel tap and channel
        total = n_in * n_out
        valid = valid_reuse_factors(n_in, n_out, resource)
        if rf not in valid:
            shown = ", ".join(str(v) for v in valid[:16]) + (", ..." if len(valid) > 16 else "")
            raise ExportError(f"{node.name}: reuse factor {rf} is not valid for this {kind} layer "
                              f"({n_in}×{n_out} = {total} multiplications, {strategy} strategy); valid: {shown}")
        return rf, strategy

    # -------------------------------------------------------------- nodes
    def run(self) -> Lowered:
        graph = self.graph
        fmt = graph.input_format
        shape = graph.input_shape
        hls_shape, perm = _hls_layout(shape)
        inp = self.emit("hwnas", "input", {"class_name": "InputLayer", "input_shape": list(hls_shape)}, -1, [],
                        hls_shape, perm, note="the model input (quantized by predict with the input format)")
        inp.kind = "input"
        self.put(INPUT, inp, ValueRange.of_format(fmt), shape)
        handlers = {Quantize: self.quantize, Dense: self.dense, Conv: self.conv, ReLU: self.relu, Table: self.table,
                    Pool: self.pool, Flatten: self.flatten, Add: self.add, Concat: self.concat,
                    GlobalPool: self.global_pool, Softmax: self.softmax, LayerNorm: self.layernorm}
        for index, node in enumerate(graph.nodes):
            if index in self.skip:
                continue
            handler = handlers.get(type(node))
            if handler is None:
                raise ExportError(f"{node.name}: {type(node).__name__} is not supported by the hls4ml exporter; "
                                  f"{_OTHER_PATH}")
            handler(index, node, *(self.tensors[t] for t in self.inputs_of(node)))
        out = self.tensors[self.output]
        self.close(out)
        return Lowered(self.layers, perm, out.perm, hls_shape, out.hls_shape, out.layer.name)

    def quantize(self, index: int, node: Quantize, rec: _Tensor) -> None:
        fmt = node.fmt
        new_range = ValueRange.of_format(fmt)
        owner = rec.owner
        width = fmt.width
        only_node = owner.kind == "input" and index == len(self.graph.nodes) - 1
        fold = ("result" not in owner.types and owner.foldable and fmt.uniform and fmt.k.size > 0 and not only_node
                and int(width.flat[0]) > 0 and not (self.needs_signed([node.output]) and int(fmt.k.flat[0]) == 0)
                and self.only_read_by(self.owned[id(owner)][0], node))
        if fold:
            owner.types["result"] = format_type(fmt)
            owner.node_index = index
            owner.note = (owner.note + "; " if owner.note else "") + f"result_t is {fmt.where}"
            self.put(node.output, rec.layer, new_range, rec.shape, rec.hls_shape, rec.perm)
            return
        self.close(rec)
        alive = width > 0
        k = np.where(alive, fmt.k, 0)
        b = np.where(alive, fmt.k + fmt.i + fmt.f, 0)
        i = np.where(alive, fmt.k + fmt.i, 0)
        mask = tuple(_to_hls(a, rec.perm, rec.hls_shape).astype(np.int16)[None] for a in (k, b, i))
        desc = fmt.describe() if not fmt.uniform else f"uniform {fmt.describe()}"
        layer = self.emit("quant", f"{node.name}_{node.slot}", {
            "class_name": "FixedPointQuantizer", "mask_kbi": mask, "SAT": fmt.overflow_mode,
            "RND": fmt.round_mode, "fusible": None, "overrides": {}}, index, [rec], rec.hls_shape, rec.perm,
            note=f"{fmt.where}: {desc}, one ap_fixed per element")
        layer.source = node.name
        self.put(node.output, layer, new_range, rec.shape)

    @staticmethod
    def _spatial(node: Node, dims: int, rec: _Tensor) -> None:
        if len(rec.shape) != dims + 1:
            raise ExportError(f"{node.name}: expects a {dims}-D (channels, ...) input, got shape {rec.shape}")

    def dense(self, index: int, node: Dense, rec: _Tensor) -> None:
        if len(rec.shape) != 1:
            raise ExportError(f"{node.name}: a Dense on a tensor of shape {rec.shape}: torch applies it to the "
                              "last axis, hls4ml (channels last) to the channels; flatten the input first")
        self.close(rec)
        n_out, n_in = node.weight.shape
        rf, strategy = self.rf_strategy(node, n_in, n_out, "dense")
        weight = node.weight[:, rec.perm].T  # rows in hls4ml's input order
        r = _dense_range(rec.range.reshape((n_in,)), node.weight, node.bias)
        types = {"weight": ValueRange.of_values(node.weight).union_type(),
                 "accum": r.union_type()}
        if node.bias is not None:
            types["bias"] = ValueRange.of_values(node.bias).union_type()
        shape = (n_out,)
        hls_shape, perm = _hls_layout(shape)
        layer = self.emit("dense", node.name, {
            "class_name": "Dense", "n_in": n_in, "n_out": n_out, "weight_data": np.ascontiguousarray(weight),
            "bias_data": None if node.bias is None else node.bias.copy(), "data_format": "channels_last"}, index,
            [rec], hls_shape, perm, types=types, reuse_factor=rf, strategy=strategy)
        self.put(node.output, layer, r, shape)

    def conv(self, index: int, node: Conv, rec: _Tensor) -> None:
        self._spatial(node, node.dims, rec)
        dilated = node
        node = undilate(node)  # hls4ml has no dilated convolution: the zero-expanded kernel (exact)
        cout, cin_g = node.weight.shape[:2]
        cin = rec.shape[0]
        depthwise = node.groups > 1
        if depthwise and not (node.groups == cin and cin_g == 1):
            raise ExportError(f"{node.name}: grouped convolution (groups={node.groups}, {cin} channels) is not "
                              f"supported by hls4ml; only groups == channels (depthwise) or 1; {_OTHER_PATH}")
        if depthwise and cout != cin:
            raise ExportError(f"{node.name}: depthwise convolution with a channel multiplier ({cout} outputs for "
                              f"{cin} channels) is not supported by the hls4ml export; {_OTHER_PATH}")
        self.close(rec)
        r = _conv_range(node, rec.range)
        out_shape = tuple(r.lo.shape)
        kind = ("depthwise" if depthwise else "conv") + f"{node.dims}d"
        n_in = cin_g * math.prod(node.kernel) if not depthwise else cin * math.prod(node.kernel)
        rf, strategy = self.rf_strategy(node, n_in, cout, kind)
        note = ""
        if node is not dilated:
            # What the inserted zero taps cost. hls4ml does not prune zero weights itself: its weight array is
            # the expanded kernel, its im2col buffer the expanded window, and reuse factors count the expanded
            # multiplications (checked above). Latency strategy (hls4ml 1.3 conv_1d/2d_latency_cl): every
            # product is unrolled and reads a constant of a completely partitioned weight array, so HLS
            # constant-folds ``x * 0`` away (no multiplier, no adder input, as for pruned weights; hls4ml counts
            # on it: its ``multiplier_limit`` subtracts ``n_zeros / reuse_factor``). What remains is wiring of
            # the wider window and longer HLS runs. Resource strategy (conv_*_resource_cl, reuse factor > 1): a
            # multiplier reads a different weight from memory each cycle, so the zeros are stored and
            # multiplied like any weight: for the same multipliers, (d·(k-1)+1)/k times the cycles and weight
            # memory per axis.
            extra = math.prod(node.kernel) - math.prod(dilated.kernel)
            note = (f"dilation {dilated.dilation}: kernel {dilated.kernel} expanded to {node.kernel}, {extra} of "
                    f"its {math.prod(node.kernel)} taps zero (exact; " + (
                        "HLS folds the zero products away in the Latency strategy)" if strategy == "Latency" else
                        "the Resource strategy stores and multiplies the zeros)"))
        w = node.weight
        if node.dims == 1:
            kernel = np.transpose(w, (2, 1, 0))  # (K, Cin, Cout); depthwise (K, C, 1)
            geometry = {"filt_width": node.kernel[0], "stride_width": node.stride[0], "pad_left": node.padding[0],
                        "pad_right": node.padding[0], "in_width": rec.shape[1], "out_width": out_shape[1]}
        else:
            kernel = np.transpose(w, (2, 3, 1, 0))  # (KH, KW, Cin, Cout); depthwise (KH, KW, C, 1)
            geometry = {"filt_height": node.kernel[0], "filt_width": node.kernel[1],
                        "stride_height": node.stride[0], "stride_width": node.stride[1],
                        "pad_top": node.padding[0], "pad_bottom": node.padding[0], "pad_left": node.padding[1],
                        "pad_right": node.padding[1], "in_height": rec.shape[1], "in_width": rec.shape[2],
                        "out_height": out_shape[1], "out_width": out_shape[2]}
        if depthwise:
            kernel = np.transpose(w, (2, 0, 1) if node.dims == 1 else (2, 3, 0, 1))  # (K..., C, 1)
        attrs: dict[str, Any] = {
            "class_name": ("DepthwiseConv" if depthwise else "Conv") + f"{node.dims}D", **geometry,
            "n_chan": cin, "n_filt": cout, "data_format": "channels_last",
            "weight_data": np.ascontiguousarray(kernel), "bias_data": None if node.bias is None else node.bias.copy()}
        if depthwise:
            attrs.update(depthwise_data=attrs["weight_data"], depth_multiplier=1)
        types = {"weight": ValueRange.of_values(w).union_type(), "accum": r.union_type()}
        if node.bias is not None:
            types["bias"] = ValueRange.of_values(node.bias).union_type()
        hls_shape, perm = _hls_layout(out_shape)
        layer = self.emit(kind, node.name, attrs, index, [rec], hls_shape, perm, types=types, reuse_factor=rf,
                          strategy=strategy, note=note)
        self.put(node.output, layer, r, out_shape)

    def relu(self, index: int, node: ReLU, rec: _Tensor) -> None:
        self.close(rec)
        r = rec.range
        layer = self.emit("relu", node.name, {"class_name": "Activation", "activation": "relu"}, index, [rec],
                          rec.hls_shape, rec.perm)
        self.put(node.output, layer, ValueRange(np.maximum(r.lo, 0.0), np.maximum(r.hi, 0.0), r.f), rec.shape)

    def pool(self, index: int, node: Pool, rec: _Tensor) -> None:
        self._spatial(node, node.dims, rec)
        t_in = self.close(rec)
        r, acc = _pool_range(node, rec.range)
        out_shape = tuple(r.lo.shape)
        shape = rec.shape
        if node.dims == 1:
            geometry = {"pool_width": node.kernel[0], "stride_width": node.stride[0], "pad_left": node.padding[0],
                        "pad_right": node.padding[0], "n_in": shape[1], "n_out": out_shape[1],
                        "in_width": shape[1], "out_width": out_shape[1]}
        else:
            geometry = {"pool_height": node.kernel[0], "pool_width": node.kernel[1],
                        "stride_height": node.stride[0], "stride_width": node.stride[1],
                        "pad_top": node.padding[0], "pad_bottom": node.padding[0], "pad_left": node.padding[1],
                        "pad_right": node.padding[1], "in_height": shape[1], "in_width": shape[2],
                        "out_height": out_shape[1], "out_width": out_shape[2]}
        op = "Max" if node.kind == "max" else "Average"
        types = {"accum": acc.union_type() if acc is not None else t_in}
        kind = f"{node.kind}pool{node.dims}d"
        hls_shape, perm = _hls_layout(out_shape)
        layer = self.emit(kind, node.name, {
            "class_name": f"{op}Pooling{node.dims}D", **geometry, "n_filt": out_shape[0], "count_pad": True,
            "data_format": "channels_last"}, index, [rec], hls_shape, perm, types=types)
        self.put(node.output, layer, r, out_shape)

    def global_pool(self, index: int, node: GlobalPool, rec: _Tensor) -> None:
        self._spatial(node, node.dims, rec)
        t_in = self.close(rec)
        size = tuple(rec.shape[1:])
        count = math.prod(size)
        if node.kind == "avg" and count & (count - 1):  # pragma: no cover - extraction refuses it first
            raise ExportError(f"{node.name}: global average pooling over {count} positions divides by a "
                              "non-power of two, which fixed point cannot do exactly")
        window = Pool(node.name, node.kind, node.dims, size, size, (0,) * node.dims)
        r, acc = _pool_range(window, rec.range)
        channels = rec.shape[0]
        r = r.reshape((channels,))
        op = "Max" if node.kind == "max" else "Average"
        geometry = {"n_in": size[0]} if node.dims == 1 else {"in_height": size[0], "in_width": size[1]}
        types = {"accum": acc.union_type() if acc is not None else t_in}
        hls_shape, perm = _hls_layout((channels,))
        layer = self.emit(f"g{node.kind}pool{node.dims}d", node.name, {
            "class_name": f"Global{op}Pooling{node.dims}D", **geometry, "n_filt": channels,
            "data_format": "channels_last"}, index, [rec], hls_shape, perm, types=types,
            note=f"global {node.kind} over {count} positions" + (
                f": exact sum in accum_t, then a shift by {count.bit_length() - 1}" if node.kind == "avg" else ""))
        self.put(node.output, layer, r, (channels,))

    def add(self, index: int, node: Add, *recs: _Tensor) -> None:
        first = recs[0]
        for other in recs[1:]:
            if other.shape != first.shape:  # pragma: no cover - extraction refuses broadcasting
                raise ExportError(f"{node.name}: adds tensors of shapes {first.shape} and {other.shape}")
            if not np.array_equal(other.perm, first.perm):
                raise ExportError(f"{node.name}: its operands reach hls4ml in different element orders (a tensor "
                                  "flattened from channels-last layout added to one in torch order); hls4ml adds "
                                  "element by element and has no exact reorder here; add before flattening, or "
                                  "use the RTL export (hwnas.export, alkaid)")
        for rec in recs:
            self.close(rec)
        acc = first
        for j, rec in enumerate(recs[1:], start=2):
            a, b = acc.range, rec.range
            r = ValueRange(a.lo + b.lo, a.hi + b.hi, np.maximum(a.f, b.f))
            last = j == len(recs)
            layer = self.emit("add", node.name, {"class_name": "Merge", "op": "add"}, index if last else -1,
                              [acc, rec], first.hls_shape, first.perm,
                              note="exact sum: operands aligned on the finer grid, one more integer bit")
            if not last:  # the final sum stays open: a following quantizer may become its result_t
                layer.types["result"] = r.union_type()
            acc = self.put(node.output if last else f"{node.output}#{j}", layer, r, first.shape)

    def concat(self, index: int, node: Concat, *recs: _Tensor) -> None:
        rank = len(recs[0].shape)
        axis = node.axis
        for rec in recs[1:]:
            if len(rec.shape) != rank:  # pragma: no cover - torch.cat refuses it first
                raise ExportError(f"{node.name}: concatenates tensors of ranks {rank} and {len(rec.shape)}")
        if rank > 3:  # pragma: no cover - hwnas tensors have at most (C, H, W)
            raise ExportError(f"{node.name}: hls4ml concatenates tensors of rank <= 3, got {rank}")
        for rec in recs:
            self.close(rec)
        hls_axis = 0 if rank == 1 else (rank - 1 if axis == 0 else axis - 1)
        acc = recs[0]
        for j, rec in enumerate(recs[1:], start=2):
            shape, hls_shape, perm = _concat_layout(acc, rec, axis, hls_axis)
            a, b = acc.range, rec.range
            r = ValueRange(np.concatenate([a.lo, b.lo], axis), np.concatenate([a.hi, b.hi], axis),
                           np.concatenate([a.f, b.f], axis))
            last = j == len(recs)
            layer = self.emit("concat", node.name, {
                "class_name": "Concatenate", "op": f"concatenate{rank}d",
                "axis": -1 if hls_axis == rank - 1 else hls_axis + 1}, index if last else -1, [acc, rec],
                hls_shape, perm, note="values unchanged: the union of the operand types")
            if not last:
                layer.types["result"] = r.union_type()
            acc = self.put(node.output if last else f"{node.output}#{j}", layer, r, shape)

    def table(self, index: int, node: Table, rec: _Tensor) -> None:
        t_in = self.close(rec)
        if t_in.width > MAX_TABLE_BITS:
            raise ExportError(f"{node.name}: {node.kind} table over a {t_in.width}-bit input type ({t_in.cpp()}) "
                              f"would have 2^{t_in.width} entries; hls4ml tables are limited here to "
                              f"{MAX_TABLE_BITS}-bit inputs: narrow the input quantizer of {node.name}")
        values = node.apply(t_in.codes())
        readers = self.readers.get(node.output, []) if node.output != self.output else []
        nxt_index, nxt = readers[0] if len(readers) == 1 else (-1, None)
        out_type: ApType | None = None
        note = f"{node.kind} over all {1 << t_in.width} codes of {t_in.cpp()}"
        if (isinstance(nxt, Quantize) and nxt.name == node.name and nxt.fmt.uniform and nxt.fmt.k.size
                and int(nxt.fmt.width.flat[0]) > 0 and not self.needs_signed([nxt.output])):
            fmt = nxt.fmt
            k, i, f = (int(a.flat[0]) for a in (fmt.k, fmt.i, fmt.f))  # uniform: one format for all elements
            values = quantize_fixed_np(values, k, i, f, fmt.round_mode, fmt.overflow_mode)
            out_type = format_type(fmt)
            note += f", {fmt.where} applied in the table"
        table_range = ValueRange.of_values(values)
        table_t = table_range.union_type()
        layer = self.emit("table", node.name, {
            "class_name": "UnaryLUT", "table_data": values, "activation": "unary_lut"}, index, [rec],
            rec.hls_shape, rec.perm, types={"table": table_t}, note=note)
        shape = rec.shape
        if out_type is not None:
            assert isinstance(nxt, Quantize)
            layer.types["result"] = out_type
            layer.node_index = nxt_index
            self.skip.add(nxt_index)
            self.put(nxt.output, layer, ValueRange.of_format(nxt.fmt), shape)
        else:
            r = ValueRange(np.full(shape, values.min()), np.full(shape, values.max()),
                           np.full(shape, int(table_range.f.max()), dtype=np.int64))
            self.put(node.output, layer, r, shape)

    def _rows(self, node: Node, rec: _Tensor, n: int, what: str) -> tuple[int, int, bool, np.ndarray]:
        """hls4ml's view of the rows (torch's last axis, ``n`` elements) of ``rec`` (:func:`row_layout`)."""
        if not rec.shape or rec.shape[-1] != n:  # pragma: no cover - extraction sizes the node from the input
            raise ExportError(f"{node.name}: expects rows of {n} elements, got shape {rec.shape}")
        layout = row_layout(rec.perm, n)
        if layout is None:
            raise ExportError(f"{node.name}: {what} over the last axis of a {rec.shape} tensor: hls4ml holds it as "
                              f"{rec.hls_shape} (channels last), where the rows are not (outer, row, inner) blocks; "
                              f"{_OTHER_PATH}")
        n_outer, n_inner, pos = layout
        in_order = bool(np.all(pos == np.arange(n)[None, :, None]))
        return n_outer, n_inner, in_order, pos

    @staticmethod
    def _order_free(node: Node, accum: FixedType, what: str) -> None:
        """Refuse a row that hls4ml sums in another order than torch unless the sum cannot depend on the order."""
        if accum.overflow_mode != "WRAP":
            raise ExportError(f"{node.name}: the elements of each {what} row reach hls4ml in another order than "
                              f"torch's (a tensor flattened from channels-last layout) and accum_t {accum.cpp()} "
                              f"saturates, so hls4ml's sum could differ from torch's; a WRAP accum_t (the summands "
                              f"are on its grid, so the sum does not depend on the order) or the {what} before the "
                              f"flatten makes it exact; {_OTHER_PATH}")

    def softmax(self, index: int, node: Softmax, rec: _Tensor) -> None:
        self.close(rec)  # any input type holding data_t's values: softmax_stable only uses the values
        cfg = node.config
        n_outer, n_inner, in_order, _ = self._rows(node, rec, node.n, "softmax")
        if not in_order:
            self._order_free(node, cfg.accum_t, "softmax")  # max and the products are element-wise
        shape = rec.shape
        lo, hi, f = _product_bounds(np.asarray(cfg.exp_table_accum()), np.asarray(cfg.inv_table()))
        r = ValueRange(np.full(shape, lo), np.full(shape, hi), np.full(shape, f, dtype=np.int64))
        types = {"exp_table": fixed_type(cfg.exp_table_t), "inv_table": fixed_type(cfg.inv_table_t),
                 "accum": fixed_type(cfg.accum_t), "inv_inp": fixed_type(cfg.inv_inp_t),
                 "inp_norm": fixed_type(cfg.inp_norm_t)}
        axis = -1
        if n_inner > 1:  # hls4ml's axis (batch axis 0), for reports only: softmax_multidim reads n_outer/n_inner
            sizes = np.cumprod((1, *rec.hls_shape))
            axis = next((a + 1 for a in range(len(rec.hls_shape)) if sizes[a] == n_outer
                         and rec.hls_shape[a] == node.n), -1)
        attrs = {"class_name": "Softmax", "activation": "softmax", "implementation": "stable",
                 "n_in": math.prod(shape), "n_outer": n_outer, "n_inner": n_inner, "axis": axis,
                 "exp_table_size": cfg.exp_table_size, "inv_table_size": cfg.inv_table_size,
                 "table_size": cfg.exp_table_size, "exp_scale": float(cfg.exp_scale),
                 "parallelization_factor": n_outer * n_inner, "skip": False}
        note = (f"softmax_stable over {node.n} elements, {n_outer * n_inner} row(s)"
                + (f" (n_outer {n_outer}, n_inner {n_inner})" if n_outer * n_inner > 1 else "")
                + f"; inp_norm_t {cfg.inp_norm_t.cpp()}, exp table {cfg.exp_table_size} x {cfg.exp_table_t.cpp()}, "
                f"inv_inp_t {cfg.inv_inp_t.cpp()}, inversion table {cfg.inv_table_size} x {cfg.inv_table_t.cpp()}, "
                f"exp_scale {cfg.exp_scale!r}")
        layer = self.emit("softmax", node.name, attrs, index, [rec], rec.hls_shape, rec.perm, types=types,
                          attr_types=tuple(types), note=note)
        self.put(node.output, layer, r, shape)

    def layernorm(self, index: int, node: LayerNorm, rec: _Tensor) -> None:
        self.close(rec)  # layernorm_1d casts the input to accum_t first: only the values matter
        cfg = node.config
        n_outer, n_inner, in_order, pos = self._rows(node, rec, node.n, "LayerNorm")
        if n_inner != 1:
            raise ExportError(f"{node.name}: LayerNorm over the last axis of a {rec.shape} tensor: hls4ml holds it "
                              f"as {rec.hls_shape} (channels last), where each row is strided, and its "
                              "LayerNormalization normalizes contiguous rows only; normalize a rank-1 tensor (or "
                              f"the channels); {_OTHER_PATH}")
        order = pos[0, :, 0]
        if not in_order:
            if not np.all(pos == order[None, :, None]):  # pragma: no cover - one permutation per row in practice
                raise ExportError(f"{node.name}: the rows reach hls4ml in different element orders, so one "
                                  f"gamma/beta array cannot serve them; {_OTHER_PATH}")
            self._order_free(node, cfg.accum_t, "LayerNorm")
        scale = np.ascontiguousarray(node.scale[order], dtype=np.float64)  # hls4ml's row order
        bias = np.ascontiguousarray(node.bias[order], dtype=np.float64)
        scale_t = ValueRange.of_values(scale).union_type()
        if scale_t.fractional <= 0 and scale_t.width <= 2:
            # hls4ml's product_type reads a 1-bit or signed 2-bit integer scale as binary/ternary and would use
            # that product for the mean and variance too: one more fractional bit keeps it 'mult' (same values)
            scale_t = replace(scale_t, width=scale_t.width + 1)
        types = {"scale": scale_t, "bias": ValueRange.of_values(bias).union_type(),
                 "accum": fixed_type(cfg.accum_t), "table": fixed_type(cfg.table_t)}
        shape = rec.shape
        table = np.asarray(cfg.table())
        a = cfg.accum_t
        p_lo, p_hi, p_f = _product_bounds(np.array([a.min_value, a.max_value]), table, f_a=a.f)
        s, b = node.scale, node.bias  # torch order (the range is kept in torch layout)
        lo = np.minimum(p_lo * s, p_hi * s) + b
        hi = np.maximum(p_lo * s, p_hi * s) + b
        fs, fb = value_format(s).f, value_format(b).f
        f = np.where((s != 0) & (p_f > _NOF), p_f + fs, _NOF)
        f = np.where(b != 0, np.maximum(f, fb), f)
        r = ValueRange(np.broadcast_to(lo, shape).copy(), np.broadcast_to(hi, shape).copy(),
                       np.broadcast_to(f, shape).astype(np.int64))
        attrs = {"class_name": "LayerNormalization", "n_in": math.prod(shape), "seq_len": n_outer, "axis": 2,
                 "epsilon_power_of_10": cfg.epsilon_power_of_10, "table_range_power2": cfg.table_range_power2,
                 "table_size": cfg.table_size, "gamma_data": scale, "beta_data": bias}
        note = (f"layernorm_1d over {node.n} elements, {n_outer} row(s); 1/sqrt table {cfg.table_size} x "
                f"{cfg.table_t.cpp()}, epsilon 1e-{cfg.epsilon_power_of_10}, range 2^-{cfg.table_range_power2}")
        layer = self.emit("layernorm", node.name, attrs, index, [rec], rec.hls_shape, rec.perm, types=types,
                          attr_types=("accum", "table"), note=note)
        self.put(node.output, layer, r, shape)

    def flatten(self, index: int, node: Flatten, rec: _Tensor) -> None:
        n = math.prod(rec.shape)
        r = rec.range.reshape((n,))
        if len(rec.shape) == 1:
            self.put(node.output, rec.layer, r, rec.shape, rec.hls_shape, rec.perm)
            return
        producer = rec.layer
        # hls4ml's flat order is the channels-last order: the permutation carries over
        layer = self.emit("flatten", node.name, {"class_name": "Reshape", "target_shape": [n]}, index, [rec], (n,),
                          rec.perm, same_as=rec.owner, foldable=False)
        layer.node_index = producer.node_index
        self.put(node.output, layer, r, (n,))


def row_layout(perm: np.ndarray, n: int) -> tuple[int, int, np.ndarray] | None:
    """How hls4ml holds the rows of ``n`` elements (torch's last axis) of a tensor with layout ``perm``.

    ``perm`` maps hls4ml's flat positions to torch flat indices. Returns ``(n_outer, n_inner, pos)`` such that
    hls4ml's position ``i·n·n_inner + j·n_inner + k`` (hls4ml's ``softmax_multidim`` indexing) holds element
    ``pos[i, j, k]`` of one torch row, the same row for every ``j`` — the smallest such ``n_inner`` — or None
    when no split keeps the rows apart. ``pos[i, :, k]`` is ``0..n-1`` when the row is in torch's order.
    """
    size = perm.size
    rows = size // n
    for n_inner in (d for d in range(1, rows + 1) if rows % d == 0):
        p = perm.reshape(rows // n_inner, n, n_inner)
        if np.all(p // n == p[:, :1, :] // n):
            return rows // n_inner, n_inner, p % n
    return None


def _frac(values: np.ndarray) -> int:
    """The most fractional bits any nonzero element of ``values`` needs (:data:`_NOF` when all are 0)."""
    v = np.asarray(values, dtype=np.float64)
    nz = v != 0
    return int(value_format(v).f[nz].max()) if nz.any() else _NOF


def _product_bounds(a: np.ndarray, b: np.ndarray, f_a: int | None = None) -> tuple[float, float, int]:
    """Bounds and grid of ``x·y`` for ``x`` between the extremes of ``a`` and ``y`` one of the values of ``b``.

    ``f_a`` is ``x``'s grid when it is a type's (not only the values in ``a``).
    """
    corners = [float(x) * float(y) for x in (a.min(), a.max()) for y in (b.min(), b.max())]
    fa = _frac(a) if f_a is None else f_a
    fb = _frac(b)
    f = fa + fb if fa > _NOF and fb > _NOF else _NOF
    return min(corners), max(corners), f


def _concat_layout(a: _Tensor, b: _Tensor, axis: int, hls_axis: int) -> tuple[tuple[int, ...], tuple[int, ...],
                                                                             np.ndarray]:
    """Torch shape, hls4ml shape and permutation of ``cat([a, b], axis)`` as hls4ml concatenates (``hls_axis``)."""
    shape = list(a.shape)
    shape[axis] += b.shape[axis]
    idx = np.arange(math.prod(shape)).reshape(shape)
    part_a, part_b = np.split(idx, [a.shape[axis]], axis=axis)
    hls_a = part_a.ravel()[a.perm].reshape(a.hls_shape)  # hls position → torch index of the result
    hls_b = part_b.ravel()[b.perm].reshape(b.hls_shape)
    joined = np.concatenate([hls_a, hls_b], axis=hls_axis)
    return tuple(shape), tuple(joined.shape), joined.ravel()


def lower(graph: ExportGraph, reuse: dict[str, int], strategy: dict[str, str]) -> Lowered:
    """Lower ``graph`` (module docstring); ``reuse``/``strategy`` map layer names to their settings."""
    return _Lowerer(graph, reuse, strategy).run()
