"""alkaid replay handlers for hwnas layers: trace a quantized hwnas model into alkaid's fixed-point IR.

Contract:

* alkaid's torch tracer loads this module through the ``alkaid_torch`` entry point ``hwnas`` (declared in
  ``pyproject.toml``) the first time it meets a module whose top-level package is ``hwnas``, and calls
  :func:`register`. Importing this module defines one replay handler (a subclass of alkaid's
  ``ReplayModuleBase``, registered by its metaclass) for :class:`~hwnas.nn.QLinear`, ``QConv1d``/``2d``
  (grouped and depthwise too), :class:`~hwnas.nn.QActivation` (relu, identity, tanh/sigmoid tables) and the
  max/average pooling layers, so ``torch.fx`` treats them as leaves and
  ``alkaid.converter.trace_model(model, inputs=FVArray)`` works on hwnas models. torch's ``Flatten``,
  ``ReLU``, ``Identity`` and ``Dropout`` are alkaid's own.
* A handler turns its layer into export-graph nodes with :func:`hwnas.export.graph.layer_nodes` (the one
  place precisions are read) and applies each node to the symbolic array (:func:`apply_nodes`), exactly:

  - ``Quantize``: per element ``(k, i, f)`` with the slot's rounding and overflow mode. alkaid's own
    ``quantize`` carries TRN, RND, RND_CONV and WRAP, SAT, SAT_SYM; TRN_ZERO, RND_ZERO, RND_MIN_INF, RND_INF
    are built from those (negation and a sign-selected pair of roundings) and SAT_ZERO from comparisons and
    a multiplexer, so every ``ap_fixed`` mode is exact. Round first (without overflow), then overflow, as
    ``ap_fixed`` does. Pruned elements (width 0) are the constant 0.
  - ``Dense``/``Conv``: constant matrix-vector products of the already-quantized weights (exact), plus bias.
  - ``ReLU``: ``max(x, 0)``; ``Pool``: max (torch's ``-inf`` padding) or average (sum times ``1/window``,
    padding counted, a power of two, so exact).
  - ``Table``: a lookup table over every code the (quantized) input element can take, built from
    :meth:`Table.apply` followed by the layer's output quantizer (which it therefore absorbs); a table
    activation needs that output quantizer, and at most 2**16 input codes. A bipolar quantizer's two-entry
    table absorbs its ±1 ``Quantize`` (input or output slot).

* What cannot be traced raises :class:`~hwnas.export.errors.ExportError` naming the layer (and the slot).
  :func:`trace_hwnas` is the entry used by :mod:`hwnas.export.rtl`: it extracts the export graph (a DAG:
  residual adds, concatenations, global pooling too), builds the symbolic input in the graph's input format
  and applies the graph to it (:func:`apply_graph`) — the graph, not the torch model, is what is traced.

Requires ``alkaid`` (the ``export`` extra).
"""

from __future__ import annotations

import contextlib
import functools
import math
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from alkaid.converter.builtin.torch.layers.functional import conv_nd_replay, pool_nd_replay
from alkaid.converter.builtin.torch.layers.modules import ReplayModuleBase, _modules_map
from alkaid.trace import FVariable, FVArray, HWConfig
from alkaid.trace.ops import extract_patches
from alkaid.trace.ops import relu as _relu
from torch import nn

from hwnas.nn import QActivation, QConv1d, QConv2d, QLinear
from hwnas.nn.activation import QAvgPool1d, QAvgPool2d, QMaxPool1d, QMaxPool2d
from hwnas.nn.normalization import layernorm_elementwise, softmax_elementwise
from hwnas.quant.reference import quantize_fixed_np

from .errors import ExportError, ToolFailureError
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
    chain,
    extract,
    layer_nodes,
)

__all__ = [
    "DEFAULT_HWCONF",
    "HANDLED_LAYERS",
    "MAX_TABLE_SIZE",
    "ReplayHwnasLayer",
    "apply_graph",
    "apply_nodes",
    "input_array",
    "layer_names",
    "quantize_array",
    "quantize_values",
    "quantize_variable",
    "register",
    "trace_hwnas",
]

HANDLED_LAYERS: tuple[type[nn.Module], ...] = (
    QLinear, QConv1d, QConv2d, QActivation, QMaxPool1d, QMaxPool2d, QAvgPool1d, QAvgPool2d)
"""The hwnas layer types the replay handler covers."""

MAX_TABLE_SIZE = 1 << 16
"""Most input codes a table activation may have (its input quantizer's width is at most 16 bits)."""

_NATIVE_ROUND = ("TRN", "RND", "RND_CONV")
_NATIVE_OVERFLOW = ("WRAP", "SAT", "SAT_SYM")
DEFAULT_HWCONF = HWConfig(1, 1, -1)
"""alkaid's default tracing configuration (adder size, carry size, no latency cutoff while tracing)."""
_NAMES: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()


# ------------------------------------------------------------------------------------------ registration
def register() -> None:
    """Entry point alkaid calls (zero arguments): make sure the hwnas replay handlers are registered.

    Importing this module already registers them (alkaid's metaclass, at the class statement); this keeps a
    handler registered elsewhere for one of the types and is idempotent.
    """
    for t in HANDLED_LAYERS:
        _modules_map.setdefault(t, ReplayHwnasLayer)


@contextlib.contextmanager
def layer_names(model: nn.Module) -> Iterator[None]:
    """Within the block, handlers name the layers of ``model`` as the export graph does (``"0"``, ``"a.1"``).

    Outside it (a plain ``trace_model`` call) a layer is named by its class.
    """
    named: list[nn.Module] = []
    try:
        pairs = chain(model)
    except ExportError:
        pairs = [(n, m) for n, m in model.named_modules() if n]
    for name, module in pairs:
        _NAMES[module] = name
        named.append(module)
    try:
        yield
    finally:
        for module in named:
            _NAMES.pop(module, None)


def _name(module: nn.Module) -> str:
    return _NAMES.get(module, type(module).__name__)


# ------------------------------------------------------------------------------------------ quantization
def quantize_values(x: np.ndarray, k: Any, i: Any, f: Any, round_mode: str, overflow_mode: str) -> np.ndarray:
    """Numbers ``x`` quantized to ``ap_fixed`` (k, i, f) (broadcast); a width ``k+i+f <= 0`` gives 0.

    Like :func:`hwnas.quant.reference.quantize_fixed_np`, but also for negative widths (trained HGQ
    quantizers prune an element by driving ``f`` below ``-k-i``; torch clamps the width at 0).
    """
    x = np.asarray(x, dtype=np.float64)
    k, i, f = (np.broadcast_to(np.asarray(a, dtype=np.int64), x.shape) for a in (k, i, f))
    pruned = k + i + f <= 0
    return quantize_fixed_np(x, np.where(pruned, 0, k), np.where(pruned, 0, i), np.where(pruned, 0, f),
                             round_mode, overflow_mode)


def _const(value: float, hwconf: HWConfig) -> FVariable:
    return FVariable.from_const(float(value), hwconf)


def _on_grid(v: FVariable, f: int) -> bool:
    """Whether every value ``v`` can take is a multiple of ``2**-f`` (no rounding needed)."""
    step = 2.0 ** -f
    return float(v.step) >= step and float(v.step / step).is_integer() and float(v.low / step).is_integer()


def _wide(v: FVariable) -> int:
    """Integer bits that hold ``v``, its negation and one more rounding step without overflow."""
    return int(v.kif[1]) + 2


def _select_negative(v: FVariable, if_negative: FVariable, otherwise: FVariable) -> FVariable:
    """``if_negative`` where ``v < 0``, else ``otherwise`` (a multiplexer on the sign bit of signed ``v``)."""
    return v.msb_mux(if_negative, otherwise)


def _round(v: FVariable, f: int, mode: str) -> FVariable:
    """``v`` rounded to ``f`` fractional bits with an ``ap_fixed`` rounding mode, never overflowing."""
    if _on_grid(v, f):
        return v
    wide = _wide(v)
    if mode in _NATIVE_ROUND:
        return v.quantize(1, wide, f, "WRAP", mode)
    if mode == "RND_MIN_INF":  # ties towards -inf: -round_half_up(-v)
        return -((-v).quantize(1, wide, f, "WRAP", "RND"))
    if mode == "CEIL":
        return -((-v).quantize(1, wide, f, "WRAP", "TRN"))
    pair = {"TRN_ZERO": ("CEIL", "TRN"), "RND_ZERO": ("RND", "RND_MIN_INF"), "RND_INF": ("RND_MIN_INF", "RND")}
    if mode not in pair:
        raise ValueError(f"rounding mode {mode} is unknown")
    neg, pos = pair[mode]
    return _select_negative(v, _round(v, f, neg), _round(v, f, pos))


def _sat_zero(r: FVariable, k: int, i: int, f: int) -> FVariable:
    """``r`` (on the grid of ``f``) in ``ap_fixed`` (k, i, f) with SAT_ZERO: 0 when it does not fit."""
    step = 2.0 ** -f
    hi, lo = 2.0 ** i - step, -(2.0 ** i) * k
    if r.low > hi or r.high < lo:
        return _const(0.0, r.hwconf)
    w = r.quantize(k, i, f, "WRAP", "TRN")  # equal to r wherever r fits
    zero = _const(0.0, r.hwconf)
    if r.high > hi:  # r <= hi  <=>  r - (hi + step) < 0
        w = _select_negative(r - (hi + step), w, zero)
    if r.low < lo:  # r < lo  <=>  r - lo < 0
        w = _select_negative(r - lo, zero, w)
    return w


def quantize_variable(v: FVariable, k: int, i: int, f: int, round_mode: str, overflow_mode: str) -> FVariable:
    """One symbolic value quantized to ``ap_fixed`` (k, i, f) with any ``ap_fixed`` rounding/overflow mode."""
    k, i, f = int(k), int(i), int(f)
    hwconf = v.hwconf
    if k + i + f <= 0:
        return _const(0.0, hwconf)
    if overflow_mode == "SAT_SYM" and (k == 0 or i + f == 0):
        overflow_mode = "SAT"  # unsigned, or a signed 1-bit type: ap_fixed saturates like SAT
    if v.low == v.high:
        value = quantize_fixed_np(np.array([float(v.low)]), k, i, f, round_mode, overflow_mode)[0]
        return _const(float(value), hwconf)
    step = 2.0 ** -f
    hi = 2.0 ** i - step
    lo = -hi if overflow_mode == "SAT_SYM" else -(2.0 ** i) * k
    if _on_grid(v, f):
        if lo <= v.low and v.high <= hi:
            return v
        round_mode = "TRN"  # nothing to round
    if v.low >= 0:  # no negative values: the modes that treat signs differently reduce to native ones
        round_mode = {"TRN_ZERO": "TRN", "RND_ZERO": "RND_MIN_INF", "RND_INF": "RND"}.get(round_mode, round_mode)
    elif v.high <= 0:
        round_mode = {"TRN_ZERO": "CEIL", "RND_ZERO": "RND", "RND_INF": "RND_MIN_INF"}.get(round_mode, round_mode)
    if round_mode in _NATIVE_ROUND and overflow_mode in _NATIVE_OVERFLOW:
        return v.quantize(k, i, f, overflow_mode, round_mode)
    r = _round(v, f, round_mode)
    if lo <= r.low and r.high <= hi:
        return r
    if overflow_mode == "SAT_ZERO":
        return _sat_zero(r, k, i, f)
    return r.quantize(k, i, f, overflow_mode, "TRN")


def _broadcast_format(fmt: FixedFormat, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        return tuple(np.broadcast_to(a, shape).ravel() for a in (fmt.k, fmt.i, fmt.f))  # type: ignore[return-value]
    except ValueError as err:
        raise ExportError(f"{fmt.where}: format of shape {fmt.shape} does not fit the tensor shape {shape}") from err


def _rebuild(values: Sequence[Any], like: FVArray, shape: tuple[int, ...] | None = None) -> FVArray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = list(values)
    return FVArray(arr.reshape(like.shape if shape is None else shape), like.solver_options, hwconf=like.hwconf)


def quantize_array(x: FVArray, fmt: FixedFormat) -> FVArray:
    """``x`` (batch axis first) quantized element-wise to ``fmt`` (any ``ap_fixed`` mode, exactly)."""
    k, i, f = _broadcast_format(fmt, tuple(x.shape))
    rnd, ovf = fmt.round_mode.upper(), fmt.overflow_mode.upper()
    flat = np.asarray(x).ravel()
    out = [quantize_variable(v, kk, ii, ff, rnd, ovf) for v, kk, ii, ff in zip(flat, k, i, f, strict=True)]
    return _rebuild(out, x)


# ------------------------------------------------------------------------------------------------ tables
def _table(x: FVArray, node: Table, out: Quantize | None) -> FVArray:
    """Lookup tables over every input code of each element: the activation, then the output quantizer."""
    shape = tuple(x.shape)
    if out is not None:
        k, i, f = _broadcast_format(out.fmt, shape)
        rnd, ovf = out.fmt.round_mode, out.fmt.overflow_mode
    else:
        raise ExportError(f"{node.name}.output_quantizer: a {node.kind} table needs an output quantizer (its "
                          "float32 values have no narrow fixed-point form); give the layer one")
    cache: dict[tuple[float, float, float, int, int, int], Any] = {}
    result = []
    for v, kk, ii, ff in zip(np.asarray(x).ravel(), k, i, f, strict=True):
        low, high, step = float(v.low), float(v.high), float(v.step)
        if low == high:
            value = quantize_values(node.apply(np.array([low])), kk, ii, ff, rnd, ovf)[0]
            result.append(_const(float(value), v.hwconf))
            continue
        n = round((high - low) / step) + 1
        if n > MAX_TABLE_SIZE:
            raise ExportError(f"{node.name}.input_quantizer: the {node.kind} table would have {n} entries (more than "
                              f"{MAX_TABLE_SIZE}); narrow the input quantizer to at most 16 bits")
        key = (low, high, step, int(kk), int(ii), int(ff))
        if key not in cache:
            codes = low + step * np.arange(n, dtype=np.float64)
            cache[key] = quantize_values(node.apply(codes), kk, ii, ff, rnd, ovf)
        values = cache[key]
        if np.all(values == values[0]):
            result.append(_const(float(values[0]), v.hwconf))
        else:
            result.append(v.lookup(values.copy()))
    return _rebuild(result, x)


# ------------------------------------------------------------------------------------------------ others
def _avg_pool(x: FVArray, node: Pool) -> FVArray:
    window = math.prod(node.kernel)
    xl = np.moveaxis(x, 1, -1)  # channels last
    ch = xl.shape[-1]
    patches = extract_patches(xl, node.kernel, node.stride, 1, node.padding, pad_value=0)
    patches = patches.reshape((*patches.shape[:-1], -1, ch))
    out = np.sum(patches, axis=-2) * (1.0 / window)  # window is a power of two: exact
    return np.moveaxis(out, -1, 1)


def _signed_bits_safe(x: FVArray) -> FVArray:
    """``x`` with alkaid's 1-bit partial-sum tables switched off when an element is a signed 1-bit value.

    alkaid lowers constant products over 1-bit inputs to tables addressed by the inputs' codes, assuming each
    takes the values {0, step}. A signed 1-bit element takes {-step, 0} (an HGQ quantizer that learned one bit
    with its sign), which addresses the table with negative codes and fails the trace ("Original quantization
    interval (0.0, 63.0, 1.0) does not cover all values of the variable QInterval(min=-63.0, ...)"). Such
    products go through alkaid's adder graph instead: exact, without the table shortcut.
    """
    if x.solver_options.get("binary_lut") is False:
        return x
    if any(isinstance(v, FVariable) and sum(v.kif) == 1 and v.low < 0 for v in np.asarray(x).ravel()):
        return FVArray(np.asarray(x), {**x.solver_options, "binary_lut": False}, hwconf=x.hwconf)
    return x


def _offload_constant_only(user: Any) -> Any:
    """An alkaid ``offload_fn`` that hands a product row whose weights all meet constant inputs to ``mmm``.

    alkaid's constant matrix-vector solver (``cmvm``) gathers its partial results into an ``FVArray`` without
    a hardware configuration, which it takes from the first symbolic element; when every non-zero weight of
    a row multiplies a constant input (a convolution window over the zero padding whose only non-pruned
    weights sit on the padding, seen on pruned HGQ 1-D CNNs), no element is symbolic and the trace dies with a
    bare ``StopIteration``. Offloading those products to alkaid's element-wise ``mmm`` gives the same
    constants (exact: constants times constants) as symbolic elements, so the row traces. Other rows are
    left to ``user`` (the caller's own ``offload_fn``, if any) and the solver, unchanged.
    """

    def offload(cm: np.ndarray, v: Any) -> np.ndarray | None:
        mask = user(cm, v) if user is not None else None
        rest = cm != 0 if mask is None else (cm != 0) & ~np.asarray(mask, dtype=np.bool_)
        const = np.array([float(e.low) == float(e.high) for e in np.asarray(v).ravel()], dtype=np.bool_)
        if not np.any(rest) or np.any(rest[~const]):
            return mask  # a symbolic input carries a weight (or nothing is left): the solver's usual case
        return rest if mask is None else np.asarray(mask, dtype=np.bool_) | rest

    offload.hwnas_constant_only = True  # type: ignore[attr-defined]
    return offload


def _product_safe(x: FVArray) -> FVArray:
    """``x`` ready for a constant product: :func:`_signed_bits_safe`, plus :func:`_offload_constant_only`."""
    x = _signed_bits_safe(x)
    user = x.solver_options.get("offload_fn")
    if getattr(user, "hwnas_constant_only", False):
        return x
    return FVArray(np.asarray(x), {**x.solver_options, "offload_fn": _offload_constant_only(user)}, hwconf=x.hwconf)


def _with_options(y: FVArray, like: FVArray) -> FVArray:
    """``y`` carrying ``like``'s solver options (undoes :func:`_signed_bits_safe` for the layers after)."""
    return y if y.solver_options == like.solver_options else FVArray(np.asarray(y), like.solver_options,
                                                                      hwconf=like.hwconf)


@functools.singledispatch
def _apply_one(node: Node, x: FVArray, *rest: FVArray) -> FVArray:
    """One export-graph node on symbolic arrays (one implementation per node kind, singledispatch)."""
    raise ExportError(f"{node.name}: {type(node).__name__} nodes are not supported by the RTL path")


@_apply_one.register
def _(node: Add, x: FVArray, *rest: FVArray) -> FVArray:
    total = x
    for other in rest:
        total = total + other
    return total


@_apply_one.register
def _(node: Concat, x: FVArray, *rest: FVArray) -> FVArray:
    parts = [np.asarray(a) for a in (x, *rest)]
    return FVArray(np.concatenate(parts, axis=node.axis + 1), x.solver_options, hwconf=x.hwconf)


@_apply_one.register
def _(node: GlobalPool, x: FVArray) -> FVArray:
    axes = tuple(range(2, x.ndim))
    if node.kind == "max":
        return x.max(axis=axes)
    return np.sum(x, axis=axes) * (1.0 / math.prod(node.size))  # a power of two: exact


@_apply_one.register
def _(node: Quantize, x: FVArray) -> FVArray:
    return quantize_array(x, node.fmt)


@_apply_one.register
def _(node: Dense, x: FVArray) -> FVArray:
    y = _product_safe(x) @ node.weight.T
    return _with_options(y + node.bias if node.bias is not None else y, x)


@_apply_one.register
def _(node: Conv, x: FVArray) -> FVArray:
    y = conv_nd_replay(_product_safe(x), node.weight, node.bias, stride=node.stride, padding=node.padding,
                       dilation=node.dilation, groups=node.groups)
    return _with_options(y, x)


@_apply_one.register
def _(node: ReLU, x: FVArray) -> FVArray:
    return _relu(x)


@_apply_one.register
def _(node: Pool, x: FVArray) -> FVArray:
    if node.kind == "max":
        return pool_nd_replay(x, node.kernel, node.stride, node.padding, 1, mode="max")
    return _avg_pool(x, node)


@_apply_one.register
def _(node: Flatten, x: FVArray) -> FVArray:
    return x.reshape(x.shape[0], -1)


@_apply_one.register(Softmax)
@_apply_one.register(LayerNorm)
def _(node: Softmax | LayerNorm, x: FVArray) -> FVArray:
    # hls4ml's algorithm on each row of the last axis (hwnas.nn.normalization), with alkaid's exact operations:
    # casts to the node's ap_fixed types, lookup tables over every value a (top-bits) index can take,
    # max, adder trees and variable products
    def cast(v: FVariable, t: Any) -> FVariable:
        return quantize_variable(v, t.k, t.i, t.f, t.round_mode, t.overflow_mode)

    def lookup(v: FVariable, fn: Any) -> FVariable:
        low, high, step = float(v.low), float(v.high), float(v.step)
        if low == high:
            return _const(float(fn(np.array([low]))[0]), v.hwconf)
        count = round((high - low) / step) + 1
        if count > MAX_TABLE_SIZE:
            raise ExportError(f"{node.name}: a {type(node).__name__} lookup would have {count} entries (more than "
                              f"{MAX_TABLE_SIZE}); narrow accum_t")
        values = np.asarray(fn(low + step * np.arange(count, dtype=np.float64)), dtype=np.float64)
        if np.all(values == values[0]):
            return _const(float(values[0]), v.hwconf)
        return v.lookup(values.copy())

    rows = np.asarray(x).reshape(-1, x.shape[-1])
    if isinstance(node, Softmax):
        cfg = node.config
        out = [softmax_elementwise(list(r), cfg, cast, lookup, lambda a, b: a.max_of(b)) for r in rows]
    else:
        ln = node.config
        out = [layernorm_elementwise(list(r), ln, node.scale, node.bias, cast, lookup) for r in rows]
    return _rebuild([v for r in out for v in r], x)


def _guarded(node: Node, fn: Any, *args: Any) -> FVArray:
    """``fn(*args)`` for ``node``, with alkaid's failures named: not expressible, or a tool failure."""
    try:
        return fn(*args)
    except ExportError:
        raise
    except NotImplementedError as err:  # an operation alkaid does not offer: the path cannot express it
        where = f"{node.name}.{node.slot}_quantizer" if isinstance(node, Quantize) else node.name
        raise ExportError(f"{where}: alkaid cannot trace this {type(node).__name__} node: {err}") from err
    except (AssertionError, ValueError, TypeError, IndexError, ArithmeticError, StopIteration) as err:
        # StopIteration: seen in alkaid's constant matrix-vector solver on pruned HGQ products
        where = f"{node.name}.{node.slot}_quantizer" if isinstance(node, Quantize) else node.name
        raise ToolFailureError(f"{where}: alkaid failed inside while tracing this {type(node).__name__} node "
                               f"({type(err).__name__}: {err}); the RTL path failed on a model it should "
                               "express") from err


def _absorbed_quantize(nodes: Sequence[Node], idx: int, readers: dict[str, int] | None) -> Quantize | None:
    """The output ``Quantize`` of the table at ``nodes[idx]`` when it directly follows and alone reads it.

    A bipolar quantizer's table absorbs the ±1 ``Quantize`` that follows it in either slot (graph module doc).
    """
    node = nodes[idx]
    nxt = nodes[idx + 1] if idx + 1 < len(nodes) else None
    bipolar = isinstance(node, Table) and node.kind == "bipolar"
    if not (isinstance(nxt, Quantize) and nxt.name == node.name and (nxt.slot == "output" or bipolar)):
        return None
    if readers is not None and (nxt.inputs != (node.output,) or readers.get(node.output, 0) != 1):
        return None
    return nxt


def apply_nodes(nodes: Sequence[Node], x: FVArray) -> FVArray:
    """Apply a chain of export-graph nodes (module docstring) to a symbolic batch ``x`` (torch layout, batch first).

    A ``Table`` absorbs the output ``Quantize`` of its layer that follows it. Errors name the layer.
    """
    idx = 0
    while idx < len(nodes):
        node = nodes[idx]
        if isinstance(node, Table):
            out = _absorbed_quantize(nodes, idx, None)
            x = _guarded(node, _table, x, node, out)
            idx += 2 if out is not None else 1
            continue
        x = _guarded(node, _apply_one, node, x)
        idx += 1
    return x


def apply_graph(graph: ExportGraph, x: FVArray) -> FVArray:
    """The whole export graph (a DAG) applied to the symbolic model input ``x`` (batch axis first): its output.

    Every node reads its input tensors by name; a ``Table`` absorbs the output ``Quantize`` of its layer when
    that is the table's only reader. Errors name the node.
    """
    env: dict[str, FVArray] = {INPUT: x}
    readers: dict[str, int] = {}
    for node in graph.nodes:
        for t in node.inputs:
            readers[t] = readers.get(t, 0) + 1
    nodes = graph.nodes
    idx = 0
    while idx < len(nodes):
        node = nodes[idx]
        ins = [env[t] for t in node.inputs]
        if isinstance(node, Table):
            out = _absorbed_quantize(nodes, idx, readers)
            y = _guarded(node, _table, ins[0], node, out)
            env[node.output if out is None else out.output] = y
            idx += 2 if out is not None else 1
            continue
        env[node.output] = _guarded(node, _apply_one, node, *ins)
        idx += 1
    return env[graph.output or nodes[-1].output]


# ------------------------------------------------------------------------------------------------ handler
def _out_shape(module: nn.Module, sample: tuple[int, ...], name: str) -> tuple[int, ...]:
    was = module.training
    module.eval()
    try:
        with torch.no_grad():
            return tuple(module(torch.zeros((1, *sample))).shape[1:])
    except Exception as err:
        raise ExportError(f"{name}: cannot run on an input of shape {sample}: {err}") from err
    finally:
        module.train(was)


class ReplayHwnasLayer(ReplayModuleBase):
    """alkaid replay of one hwnas layer: its export-graph nodes applied to the symbolic input."""

    handles = HANDLED_LAYERS

    def call(self, x: FVArray) -> FVArray:
        """The layer applied to a symbolic batch ``x`` (torch layout)."""
        name = _name(self.module)
        sample = tuple(int(d) for d in x.shape[1:])
        nodes = layer_nodes(name, self.module, sample, _out_shape(self.module, sample, name))
        return apply_nodes(nodes, x)


# ------------------------------------------------------------------------------------------------ tracing
def input_array(fmt: FixedFormat, hwconf: HWConfig | tuple[int, int, int] = DEFAULT_HWCONF,
                solver_options: dict[str, Any] | None = None, batch: int = 1) -> FVArray:
    """Symbolic model input (``batch``, *fmt.shape) whose elements take every value of ``fmt`` (pruned: 0).

    Signed SAT_SYM formats exclude the most negative code (the float input is quantized with ``fmt`` before
    it enters the circuit, so that code never appears).
    """
    k, i, f = (np.asarray(a, dtype=np.int64) for a in (fmt.k, fmt.i, fmt.f))
    width = k + i + f
    step = np.exp2(-f.astype(np.float64))
    high = np.exp2(i.astype(np.float64)) - step
    sym = fmt.overflow_mode.upper() == "SAT_SYM"
    low = np.where(k == 1, np.where(sym & (i + f > 0), -high, -np.exp2(i.astype(np.float64))), 0.0)
    pruned = width <= 0
    low, high, step = np.where(pruned, 0.0, low), np.where(pruned, 0.0, high), np.where(pruned, 1.0, step)
    shape = (batch, *fmt.shape)
    return FVArray.from_lhs(np.broadcast_to(low, shape), np.broadcast_to(high, shape), np.broadcast_to(step, shape),
                            HWConfig(*hwconf), solver_options=solver_options)


def trace_hwnas(model: nn.Module, input_shape: tuple[int, ...], *,
                hwconf: HWConfig | tuple[int, int, int] = DEFAULT_HWCONF,
                solver_options: dict[str, Any] | None = None,
                graph: ExportGraph | None = None) -> tuple[FVArray, FVArray, ExportGraph]:
    """Trace ``model`` with alkaid: ``(inputs, outputs, graph)``, both arrays flat in torch (C) order.

    The input is symbolic in the graph's input format (:func:`input_array`); the export graph is applied to it
    (:func:`apply_graph`). Raises :class:`ExportError` naming the node for what cannot be traced.
    """
    graph = graph if graph is not None else extract(model, input_shape)
    x = input_array(graph.input_format, hwconf, solver_options)
    y = apply_graph(graph, x)
    inp = FVArray(np.asarray(x).reshape(-1), x.solver_options, hwconf=x.hwconf)
    out = FVArray(np.asarray(y).reshape(-1), y.solver_options, hwconf=y.hwconf)
    return inp, out, graph
