"""Bring an existing plain-torch model into hwnas: :func:`convert` (docs/models.md).

Contract: ``convert(model)`` returns a new model (a deep copy; ``model`` is never modified) in which every
supported torch leaf is replaced, at the same attribute path, by its hwnas layer carrying the given quantizer
specs — ``nn.Linear`` → :class:`~hwnas.nn.QLinear`, ``nn.Conv1d/2d`` → ``QConv1d/2d`` (stride, padding,
dilation, groups, bias and padding mode carried over), ``nn.ReLU`` → ``QActivation("relu")``,
``nn.Tanh``/``nn.Sigmoid`` → a ``QActivation`` lookup table (``mode="table"``, exported exactly),
``nn.MaxPool*``/``nn.AvgPool*`` → ``QMaxPool*``/``QAvgPool*`` — with weights and biases copied exactly. A
``BatchNorm1d/2d`` directly after a Linear/Conv is folded into it (the original's eval-mode function);
``Flatten``, ``Identity``, ``Dropout`` and hwnas layers are kept. Containers (any module with children,
including custom modules whose ``forward`` adds or concatenates) are recursed into; any other leaf raises
:class:`ConversionError` naming its dotted path (``strict=False`` keeps it unconverted, in float). So does
compute that no layer carries and that hwnas would neither quantize nor count (``bops``/``macs`` would silently
leave it out): a recursed-into module with parameters of its own (``F.linear(x, self.w)`` in its ``forward``),
and, where the model traces, a multiply-accumulate call in a ``forward`` (``torch.matmul``, ``@``, ``einsum``,
``bmm``, ``F.linear``, ``F.conv*``), named by the module whose ``forward`` makes it. The
first layer in execution order quantizes the model input (``input`` spec), so the input is fixed point.
Execution order and "directly after" come from a :mod:`torch.fx` trace of the model; a model that cannot be
traced falls back to registration order (and BatchNorm folding to neighbours in an ``nn.Sequential``).
"""

from __future__ import annotations

import copy
import itertools
import operator
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
import torch.fx
from torch import nn

from hwnas.errors import HwnasError, first_line
from hwnas.quant import QuantizationError, Quantizer

from .activation import QActivation, QAvgPool1d, QAvgPool2d, QMaxPool1d, QMaxPool2d
from .base import QLayer, QuantizerSpec, make_quantizer
from .fold import _fold_pair
from .layers import DEFAULT_ACTIVATION, DEFAULT_BIAS, DEFAULT_WEIGHT, QConv1d, QConv2d, QLinear

__all__ = ["DEFAULT_TABLE_INPUT", "ConversionError", "convert"]

DEFAULT_TABLE_INPUT: dict = {"kind": "fixed", "bits": 8, "granularity": "tensor", "round_mode": "RND",
                             "overflow_mode": "SAT", "learnable": False}
"""Input quantizer of converted tanh/sigmoid tables: static (a table needs a finite input set), 8 bits, SAT."""


class ConversionError(HwnasError, ValueError):
    """A layer of the model has no hwnas equivalent or a setting hwnas does not support; names its dotted path."""


_PASS = (nn.Flatten, nn.Identity, nn.Dropout)  # kept as they are: exact reshapes / identities in eval
_ACTS = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}
_POOLS = {nn.MaxPool1d: QMaxPool1d, nn.MaxPool2d: QMaxPool2d, nn.AvgPool1d: QAvgPool1d, nn.AvgPool2d: QAvgPool2d}
_CONVS = {nn.Conv1d: QConv1d, nn.Conv2d: QConv2d}
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


# ------------------------------------------------------------------------------------------------ helpers
def _where(path: str) -> str:
    return path or "model"


def _plain(m: nn.Module, base: type) -> bool:
    """``m`` is a ``base`` whose forward is ``base``'s own (a subclass with its own compute is unknown)."""
    return isinstance(m, base) and not isinstance(m, QLayer) and type(m).forward is base.forward


def _base(m: nn.Module, table: dict) -> type | None:
    return next((b for b in table if _plain(m, b)), None)


def _is_unit(m: nn.Module) -> bool:
    """Judged as one layer (converted, kept or rejected) rather than recursed into."""
    if isinstance(m, QLayer | Quantizer) or not any(c is not None for c in m._modules.values()):
        return True
    # a torch layer made of sub-layers (LSTM, MultiheadAttention, Transformer...) is judged whole
    return type(m).__module__.startswith("torch.") and not isinstance(m, _CONTAINERS)


def _units(m: nn.Module, path: str = "") -> Iterator[tuple[str, nn.Module]]:
    """(dotted path, module) of every unit, in registration order, every path of a shared module."""
    if _is_unit(m):
        yield path, m
        return
    for name, child in m._modules.items():
        if child is not None:
            yield from _units(child, f"{path}.{name}" if path else name)


def _containers(m: nn.Module, path: str = "") -> Iterator[tuple[str, nn.Module]]:
    """(dotted path, module) of every module :func:`_units` recurses into (the root included)."""
    if _is_unit(m):
        return
    yield path, m
    for name, child in m._modules.items():
        if child is not None:
            yield from _containers(child, f"{path}.{name}" if path else name)


_F = torch.nn.functional
_MAC_FUNCTIONS = {torch.matmul, torch.mm, torch.bmm, torch.mv, torch.dot, torch.inner, torch.einsum, torch.tensordot,
                  torch.addmm, torch.addbmm, torch.baddbmm, torch.addmv, operator.matmul, _F.linear, _F.bilinear,
                  _F.conv1d, _F.conv2d, _F.conv3d, _F.conv_transpose1d, _F.conv_transpose2d, _F.conv_transpose3d}
_MAC_METHODS = {"matmul", "mm", "bmm", "mv", "dot", "inner", "addmm", "baddbmm", "__matmul__", "__rmatmul__"}


def _loose_macs(graph: torch.fx.Graph) -> Iterator[tuple[str, str]]:
    """(module path, call) of every multiply-accumulate a ``forward`` makes outside a layer (an fx graph's calls)."""
    for node in graph.nodes:
        if node.op == "call_function" and node.target in _MAC_FUNCTIONS:
            call = f"{getattr(node.target, '__module__', None) or 'torch'}.{node.target.__name__}"
            call = {"_operator.matmul": "@", "torch._C._nn.linear": "F.linear"}.get(call, call)
        elif node.op == "call_method" and node.target in _MAC_METHODS:
            call = "@" if "matmul__" in str(node.target) else f"Tensor.{node.target}"
        else:
            continue
        stack = node.meta.get("nn_module_stack") or {}
        yield (next(reversed(stack.values()))[0] if stack else ""), call


def _set(root: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, new)


def _fresh(spec: QuantizerSpec) -> QuantizerSpec:
    """A spec each layer can own: a Quantizer instance is copied per layer."""
    return copy.deepcopy(spec) if isinstance(spec, Quantizer) else spec


def _sized(spec: QuantizerSpec, shape: tuple[int, ...] | None) -> QuantizerSpec:
    """A dict fixed-point spec sized for samples of ``shape`` (when known), so it need not wait for data."""
    if shape is None or not isinstance(spec, dict) or spec.get("kind", "fixed") != "fixed":
        return spec
    return {"element_shape": shape, **spec}


class _Tracer(torch.fx.Tracer):
    def __init__(self, units: set[int]) -> None:
        super().__init__()
        self._unit_ids = units

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return id(m) in self._unit_ids


def _trace(model: nn.Module, units: set[int]) -> torch.fx.Graph | None:
    """The model's fx graph with the units as leaves, or None when it cannot be traced symbolically."""
    if id(model) in units:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _Tracer(units).trace(model)
    except Exception:  # data-dependent control flow, unsupported Python: fall back to registration order
        return None


# ------------------------------------------------------------------------------------------------ planning
def _foldable(m: nn.Module) -> bool:
    if isinstance(m, QLinear | QConv1d | QConv2d):
        return not getattr(m, "fused", False)
    return _plain(m, nn.Linear) or _base(m, _CONVS) is not None


def _bn_pairs(model: nn.Module, graph: torch.fx.Graph | None, paths: dict[int, list[str]]) -> dict[int, nn.Module]:
    """id(BatchNorm) → the Linear/Conv it directly follows (its only input, whose output only it reads)."""
    pairs: dict[int, nn.Module] = {}
    if graph is not None:
        nodes = [n for n in graph.nodes if n.op == "call_module"]
        calls = Counter(str(n.target) for n in nodes)
        for node in nodes:
            bn = model.get_submodule(str(node.target))
            if not isinstance(bn, _BN) or len(node.args) != 1 or node.kwargs or calls[str(node.target)] != 1:
                continue
            src = node.args[0]
            if not isinstance(src, torch.fx.Node) or src.op != "call_module" or len(src.users) != 1:
                continue
            layer = model.get_submodule(str(src.target))
            if _foldable(layer) and calls[str(src.target)] == 1:
                pairs[id(bn)] = layer
        return pairs
    for seq in model.modules():  # untraceable model: neighbours in a plain nn.Sequential
        if not isinstance(seq, nn.Sequential) or type(seq).forward is not nn.Sequential.forward:
            continue
        children = [c for c in seq._modules.values() if c is not None]
        for layer, bn in itertools.pairwise(children):
            if isinstance(bn, _BN) and _foldable(layer) and len(paths[id(layer)]) == 1 and len(paths[id(bn)]) == 1:
                pairs[id(bn)] = layer
    return pairs


def _pool_problem(m: nn.Module) -> str | None:
    """The first setting of a torch pooling layer that the hwnas pooling layer does not reproduce."""
    if getattr(m, "ceil_mode", False):
        return "ceil_mode=True (use ceil_mode=False)"
    if isinstance(m, nn.MaxPool1d | nn.MaxPool2d):
        dil = m.dilation if isinstance(m.dilation, tuple) else (m.dilation,)
        if any(d != 1 for d in dil):
            return f"dilation={m.dilation} (only 1)"
        if m.return_indices:
            return "return_indices=True"
        return None
    pad = m.padding if isinstance(m.padding, tuple) else (m.padding,)
    if not m.count_include_pad and any(p != 0 for p in pad):
        return "count_include_pad=False with padding (use count_include_pad=True or no padding)"
    if getattr(m, "divisor_override", None):
        return f"divisor_override={m.divisor_override}"
    return None


def _kind(m: nn.Module) -> str:
    """What becomes of a unit: linear, conv, act, pool, pass, bn, keep (hwnas) or unknown."""
    if isinstance(m, QLayer | Quantizer):
        return "keep"
    if _plain(m, nn.Linear):
        return "linear"
    if _base(m, _CONVS):
        return "conv"
    if _base(m, _ACTS):
        return "act"
    if _base(m, _POOLS):
        return "pool"
    if isinstance(m, _BN) and type(m).forward is nn.modules.batchnorm._BatchNorm.forward:
        return "bn"
    if type(m) in _PASS:
        return "pass"
    return "unknown"


def _check_bn(bn: nn.modules.batchnorm._BatchNorm, layer: nn.Module) -> str | None:
    if bn.running_mean is None or bn.running_var is None:
        return "it tracks no running statistics (track_running_stats=False)"
    if bn.num_features != layer.weight.shape[0]:
        return f"it has {bn.num_features} features but the layer before has {layer.weight.shape[0]} outputs"
    return None


@torch.no_grad()
def _fold_float(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Fold ``bn`` (eval statistics) into a plain torch Linear/Conv in place (hwnas.nn.fold_batchnorm's formula)."""
    w = layer.weight
    gamma = bn.weight if bn.affine else torch.ones_like(bn.running_mean)
    beta = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
    scale = gamma / torch.sqrt(bn.running_var + bn.eps)
    w.mul_(scale.reshape((-1,) + (1,) * (w.dim() - 1)).to(w.dtype))
    old = layer.bias if layer.bias is not None else torch.zeros_like(scale)
    new = ((old - bn.running_mean) * scale + beta).to(w.dtype)
    if layer.bias is None:
        layer.bias = nn.Parameter(new, requires_grad=w.requires_grad)
    else:
        layer.bias.copy_(new)


def _record_shapes(model: nn.Module, units: list[nn.Module], input_shape: tuple[int, ...],
                   ) -> dict[int, tuple[tuple[int, ...], tuple[int, ...] | None]]:
    """Per-sample (input, output) shape of each unit, from one eval-mode pass over a zero sample."""
    shapes: dict[int, tuple[tuple[int, ...], tuple[int, ...] | None]] = {}

    def hook(mod: nn.Module, args: tuple, out: Any) -> None:
        if id(mod) not in shapes and args and isinstance(args[0], torch.Tensor):
            shapes[id(mod)] = (tuple(args[0].shape[1:]), tuple(out.shape[1:]) if isinstance(out, torch.Tensor)
                               else None)

    param = next(model.parameters(), None)
    x = torch.zeros((1, *input_shape), dtype=param.dtype if param is not None and param.is_floating_point()
                    else torch.float32, device=param.device if param is not None else None)
    modes = [(m, m.training) for m in model.modules()]
    handles = [u.register_forward_hook(hook) for u in {id(u): u for u in units}.values()]
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    except Exception as err:
        raise ConversionError(f"input_shape: the model cannot run on samples of shape {tuple(input_shape)}: "
                              f"{first_line(err)}") from err
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode
    return shapes


# ------------------------------------------------------------------------------------------------ building
def _weighted(new: QLayer, old: nn.Module, weight: QuantizerSpec, bias: QuantizerSpec) -> QLayer:
    """Copy ``old``'s parameters into ``new`` exactly, then give it weight/bias quantizers set from them."""
    w = old.weight
    new.to(device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if old.bias is not None:
            new.bias.copy_(old.bias)
    for kind, spec in (("weight", weight), ("bias", bias)):
        p = getattr(new, kind)
        if p is None:
            continue
        p.requires_grad_(getattr(old, kind).requires_grad)
        q = make_quantizer(_fresh(spec), slot=f"{kind}_quantizer", batch_dims=0, element_shape=tuple(p.shape))
        setattr(new, f"{kind}_quantizer", q)
        if q is not None:
            q.to(p.device)
            with torch.no_grad():
                q(p)  # ranges from the copied (folded) values, as set_quantizers does
    return new


def _conv_padding(m: nn.Module) -> Any:
    """``m``'s padding; ``"valid"``/symmetric ``"same"`` as integers (what the exporters take)."""
    pad = m.padding
    if pad == "valid":
        return 0
    if pad == "same":
        total = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size, strict=True)]
        if all(t % 2 == 0 for t in total):
            return tuple(t // 2 for t in total)
    return pad


def _build(m: nn.Module, kind: str, iq: QuantizerSpec, specs: dict[str, QuantizerSpec],
           shape: tuple[int, ...] | None) -> nn.Module:
    """The hwnas layer for unit ``m`` with input quantizer spec ``iq`` (``shape``: per-sample input, if known)."""
    if kind == "linear":
        new = QLinear(m.in_features, m.out_features, m.bias is not None, input_quantizer=_sized(_fresh(iq), shape),
                      weight_quantizer=None, bias_quantizer=None)
        if shape is not None:
            new.input_shape = shape
        return _weighted(new, m, specs["weight"], specs["bias"])
    if kind == "conv":
        cls = _CONVS[_base(m, _CONVS)]  # type: ignore[index]
        new = cls(m.in_channels, m.out_channels, m.kernel_size, m.stride, _conv_padding(m), m.dilation, m.groups,
                  m.bias is not None, input_quantizer=_fresh(iq), weight_quantizer=None, bias_quantizer=None,
                  input_shape=shape)
        new.padding_mode = m.padding_mode  # torch's _conv_forward applies it
        return _weighted(new, m, specs["weight"], specs["bias"])
    if kind == "act":
        act = _ACTS[_base(m, _ACTS)]  # type: ignore[index]
        if act == "relu":
            new = QActivation("relu", input_quantizer=_sized(_fresh(iq), shape))
        else:
            table = specs["table_input"] is not None and specs["activation"] is not None
            new = QActivation(act, mode="table" if table else "float",
                              input_quantizer=_sized(_fresh(specs["table_input"] if table else iq), shape),
                              output_quantizer=_sized(_fresh(specs["activation"]), shape))
    else:  # pool
        cls = _POOLS[_base(m, _POOLS)]  # type: ignore[index]
        new = cls(m.kernel_size, m.stride, m.padding, input_quantizer=_sized(_fresh(iq), shape))
    new.input_shape = shape
    return new


# ------------------------------------------------------------------------------------------------ entry point
def convert(
    model: nn.Module,
    *,
    weight: QuantizerSpec = DEFAULT_WEIGHT,
    bias: QuantizerSpec = DEFAULT_BIAS,
    activation: QuantizerSpec = DEFAULT_ACTIVATION,
    input: QuantizerSpec = None,
    table_input: QuantizerSpec = DEFAULT_TABLE_INPUT,
    fold_batchnorm: bool = True,
    strict: bool = True,
    input_shape: tuple[int, ...] | None = None,
) -> nn.Module:
    """Return a copy of the plain-torch ``model`` made of hwnas layers (module docstring; docs/models.md).

    Args:
        model: any ``nn.Module``; it is deep-copied and never modified.
        weight: spec (see :mod:`hwnas.nn.base`) of every converted Linear/Conv's weight quantizer, initialized
            from the copied (folded) weight. A :class:`~hwnas.quant.Quantizer` instance is copied per layer.
        bias: spec of every converted Linear/Conv's bias quantizer, initialized from the copied (folded) bias.
        activation: spec of every converted Linear/Conv's input quantizer (the activations between layers)
            and of the output quantizer of tanh/sigmoid tables.
        input: spec of the model input's quantizer, on the first layer in execution order; ``None`` (default)
            means the ``activation`` spec. When that first layer is a ``Flatten``/``Dropout``/``Identity``, a
            ``QActivation("identity")`` carrying it is put in front (``Flatten`` at path ``p`` becomes
            ``nn.Sequential(QActivation, Flatten)`` at ``p``) and the next Linear/Conv takes the quantized
            input as it is; when it is a tanh/sigmoid, the table's input quantizer quantizes the input.
        table_input: static fixed-point spec of the input quantizer of tanh/sigmoid lookup tables
            (``mode="table"``, exported bit-exactly). With ``table_input`` or ``activation`` ``None`` the
            activation is evaluated in float (``mode="float"``, not exportable).
        fold_batchnorm: fold each BatchNorm1d/2d that directly follows a Linear/Conv (its only input, whose
            output only it reads) into that layer, using the running statistics; ``False`` refuses BatchNorm.
        strict: raise :class:`ConversionError` for a leaf that cannot be converted (unknown layer, unsupported
            setting, BatchNorm that cannot be folded); ``False`` keeps it unconverted (float, not exportable)
            with a warning.
        input_shape: per-sample input shape; when given the model is run once on a zero sample to size every
            converted layer and dict-spec activation quantizer, so the result can be copied and costed before
            any data is seen (integer bits of activation quantizers still come from the first real batch).

    Returns:
        The converted model, in the original's train/eval mode. Without ``input_shape``, activation quantizers
        take their shapes at the first forward pass (the model cannot be deep-copied before that).

    Raises:
        ConversionError: a leaf without hwnas equivalent, an unsupported setting or an unfoldable BatchNorm
            (``strict``), a bad quantizer spec, or a model that cannot be copied; the message names the
            layer's dotted path.
    """
    try:
        new_model = copy.deepcopy(model)
    except Exception as err:
        raise ConversionError(f"model: cannot be copied ({first_line(err)}); run one forward pass first if it "
                              "has layers whose quantizers or parameters are still uninitialized") from err
    param = next(new_model.parameters(), None)
    device = param.device if param is not None and param.device.type != "cpu" else None
    specs = {"weight": weight, "bias": bias, "activation": activation, "table_input": table_input}
    in_spec = activation if input is None else input

    paths: dict[int, list[str]] = {}
    mods: dict[int, nn.Module] = {}
    for path, m in _units(new_model):
        paths.setdefault(id(m), []).append(path)
        mods[id(m)] = m
    for uid, m in mods.items():
        if any(isinstance(p, nn.parameter.UninitializedParameter) for p in m.parameters()) and not isinstance(
                m, QLayer):
            raise ConversionError(f"{_where(paths[uid][0])}: {type(m).__name__} has uninitialized (lazy) "
                                  "parameters; run one forward pass before converting")

    graph = _trace(new_model, set(mods))
    pairs = _bn_pairs(new_model, graph, paths)

    def refuse(uid: int, why: str, fix: str) -> str:
        where = _where(paths[uid][0])
        if strict:
            raise ConversionError(f"{where}: {why}; {fix}, or pass strict=False to keep it unconverted (float, "
                                  "not exportable)")
        warnings.warn(f"{where}: {why}; kept unconverted (float, not exportable)", stacklevel=3)
        return "unknown"

    def refuse_compute(where: str, why: str) -> None:
        where = _where(where)
        if strict:
            raise ConversionError(f"{where}: {why}, which hwnas would neither quantize nor count in bops/macs; move "
                                  "it into an nn.Linear/nn.Conv* child, or pass strict=False to keep it (float, "
                                  "uncounted, not exportable)")
        warnings.warn(f"{where}: {why}; kept in float, uncounted in bops/macs, not exportable", stacklevel=3)

    for path, m in _containers(new_model):
        own = [name for name, p in m._parameters.items() if p is not None]
        if own:
            refuse_compute(path, f"{type(m).__name__} computes with parameter(s) of its own ({', '.join(own)})")
    if graph is not None:
        for path, call in dict.fromkeys(_loose_macs(graph)):
            refuse_compute(path, f"its forward calls {call}, a multiply-accumulate outside any layer")

    kinds: dict[int, str] = {}
    for uid, m in mods.items():
        kind = _kind(m)
        name = type(m).__name__
        if kind == "unknown":
            refuse(uid, f"{name} has no hwnas equivalent", "replace it with a supported layer (docs/models.md)")
        elif kind == "pool" and (problem := _pool_problem(m)):
            kind = refuse(uid, f"{name} with {problem} is not supported by hwnas pooling", "change the setting")
        elif kind == "bn":
            layer = pairs.get(uid)
            if not fold_batchnorm:
                kind = refuse(uid, f"{name} is not converted with fold_batchnorm=False (hwnas has no BatchNorm "
                                   "layer)", "pass fold_batchnorm=True to fold it into the Linear/Conv before it")
            elif layer is None:
                kind = refuse(uid, f"{name} cannot be folded: it does not directly follow a Linear/Conv whose "
                                   "output only it reads", "move it right after one or remove it")
            elif problem := _check_bn(m, layer):
                kind = refuse(uid, f"{name} cannot be folded: {problem}", "fix or remove it")
        kinds[uid] = kind

    shapes = _record_shapes(new_model, list(mods.values()), tuple(input_shape)) if input_shape is not None else {}

    for uid, kind in kinds.items():  # fold (weights only: quantizers are made afterwards from folded values)
        if kind != "bn":
            continue
        layer = pairs[uid]
        if isinstance(layer, QLayer):
            _fold_pair(layer, mods[uid], _where(paths[uid][0]))  # type: ignore[arg-type]
        else:
            _fold_float(layer, mods[uid])  # type: ignore[arg-type]
        for path in paths[uid]:
            _set(new_model, path, nn.Identity())

    # execution order: the trace's calls, then units never called, in registration order
    order = [id(new_model.get_submodule(str(n.target))) for n in graph.nodes if n.op == "call_module"] if graph \
        else []
    order = list(dict.fromkeys([u for u in order if u in mods] + list(mods)))
    input_quant: dict[int, QuantizerSpec] = {}
    wrap_input: int | None = None
    if in_spec is not None:
        live = [u for u in order if kinds[u] not in ("bn", "unknown")]
        if live and kinds[live[0]] != "keep":
            first = live[0]
            if kinds[first] == "pass":
                wrap_input = first
                for u in live[1:]:  # the quantized input reaches the next compute layer unchanged
                    if kinds[u] in ("linear", "conv"):
                        input_quant[u] = None
                    if kinds[u] != "pass":
                        break
            else:
                input_quant[first] = in_spec

    for uid, kind in kinds.items():
        m = mods[uid]
        where = _where(paths[uid][0])
        shape = shapes.get(uid, (None, None))[0]
        if kind in ("linear", "conv", "act", "pool"):
            iq = input_quant.get(uid, activation if kind in ("linear", "conv") else None)
            try:
                new = _build(m, kind, iq, specs, shape)
            except QuantizationError as err:
                raise ConversionError(f"{where}.{first_line(err)}" if paths[uid][0] else first_line(err)) from err
        elif uid == wrap_input:
            try:
                head = QActivation("identity", input_quantizer=_sized(_fresh(in_spec), shape))
            except QuantizationError as err:
                raise ConversionError(f"input.{first_line(err)}") from err
            head.input_shape = shape
            new = head if type(m) is nn.Identity else nn.Sequential(head, m)
        else:
            continue
        if device is not None and kind in ("act", "pool", "pass"):
            new.to(device)  # weighted layers follow their own parameters
        new.train(m.training)
        if not paths[uid][0]:
            return new  # the model is itself one convertible layer
        for path in paths[uid]:
            _set(new_model, path, new)
    return new_model
