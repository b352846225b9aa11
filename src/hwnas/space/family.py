"""Model families: the registry behind ``space.family``, and the contract a family of your own fulfils.

A **family** turns the ``space:`` section into a search space: the variables a search chooses, and the
:mod:`hwnas.nn` model a choice builds. ``cnn1d``, ``cnn2d`` and ``mlp`` are registered here at import;
a plug-in family is a :class:`ModelFamily` subclass that a module of yours registers with
:func:`register_family` when imported (an experiment names the module in ``space.module``;
docs/extending.md). :func:`make_space` asks the registry for ``space.family``'s search space.

Contract of :class:`ModelFamily` (what a family provides; every method gets a :class:`FamilyContext`
``ctx``: the per-sample ``input_shape``, ``n_classes`` and the family's ``options``):

* ``name: str`` — the ``space.family`` value; ``description: str``; ``defaults: Mapping[str, Any]`` — the
  family's options (``space.family_options`` updates them; an unknown option is a config error).
* ``vector: bool`` (default ``True``) — whether the strategies that search the space's integer vector
  (``pso``, ``monas_lq``, ``ha_nas``) may search this family; ``supernet: bool`` (default ``False``; only the
  built-ins, whose conv/dense layers the supernet shares) — whether ``search.strategy: supernet`` may. A
  strategy the family does not serve is a config error naming ``search.strategy`` and the family.
* ``variables(ctx) -> Mapping[str, Sequence[Any]]`` (required) — every architecture variable a model of the
  family may use, with its finite, non-empty tuple of distinct choices (numbers, strings or booleans; numbers
  ascending if you want a meaningful vector), in the order of the integer vector. Called once per space,
  with the experiment's own input shape. Names must not end in ``weight_bits``/``act_bits`` nor start with
  ``task.``/``training.`` (the space adds those). A variable with one choice is fixed (never asked).
* ``layers(ctx) -> Sequence[str]`` (required) — the label of every compute layer (one with weights) a model may
  have, in model order; the last is the output layer. With ``space.precision.mode: fixed`` the space adds the
  variables ``<label>.weight_bits`` for every label and ``<label>.act_bits`` (the width of the layer's output
  activation, i.e. of the input of the layers reading it) for every label but the last — or the shared
  ``weight_bits``/``act_bits`` when ``precision.per_layer`` is false — from ``space.precision``'s choices.
* ``choose(ask, ctx) -> Sequence[str]`` (optional) — define-by-run: call ``ask(name)`` for the variables this
  model uses, in order (a later question may depend on an earlier answer: ``for i in range(ask("blocks")):
  ask(f"block{i}.kernel")``), and return the labels of its compute layers (a subsequence of ``layers(ctx)``
  ending with the output layer). ``ask`` returns the value (the same one when asked twice) and raises for an
  undeclared name; let its exceptions propagate. NSGA-II/TPE/random ask Optuna through it (conditional
  parameters), the vector strategies read their vector through it (entries it does not ask are padding), and
  replaying a point checks it. Default: ask every variable; every model has every layer.
* ``build(arch, ctx, quant) -> nn.Module`` (required) — the untrained model of ``arch`` (``{name: value}`` of
  the variables ``choose`` asked) on inputs ``ctx.input_shape`` with ``ctx.n_classes`` logits, made of
  :mod:`hwnas.nn` layers (and ``nn.Sequential``/``Flatten``/``Dropout``/:class:`hwnas.nn.QResidualBlock`: what
  a model file may hold), its quantizers from ``quant`` (:class:`LayerQuant`): ``quant.model_input()`` for the
  first layer's input, ``quant.weight(label)``/``quant.bias()`` for each compute layer, ``quant.act(label,
  signed)`` for the input quantizer of a layer that reads ``label``'s output. With learned precision they
  are HGQ's quantizers, with fixed precision static fixed point at the point's widths. The space seeds torch
  around the call (same point and seed → same weights).
* ``check(ctx) -> None`` (optional) — raise ``ValueError`` for inputs the family cannot take (called for every
  input shape the space may see); the space reports it as a :class:`FamilyError` naming ``space.family``.
* ``space(cfg, input_shape, n_classes, *, shape_of=None)`` (advanced) — the search space itself. The default is
  :class:`FamilySpace` over the methods above; the built-in families return :class:`hwnas.space.SearchSpace`.
  A family that overrides it implements the whole ``SearchSpace`` API instead of ``variables``/``layers``/
  ``build``.

A point of a plug-in family is a :class:`hwnas.space.Point` with ``family`` = its name and ``arch`` = the
asked variables (no conv/dense layers); bits, searched task options (``space.task_options``) and training
settings (``space.training``) are as for the built-ins, and so are ``suggest``/``params``/``from_params``/
``encode``/``decode``/``bounds``/``sample``/``size``/``check``/``build``. A plug-in family searches no hardware
mapping (``space.mapping.folding: search`` is refused; ``auto`` prices the built model as it is).

Registry: :func:`register_family` adds a family (an instance, or a class it instantiates — so it also works as a
class decorator; an existing name is an error unless ``replace=True``; the built-in names cannot be replaced),
:func:`get_family` finds one (an unknown name is a :class:`FamilyError` listing the known ones),
:func:`family_names` lists them, and :func:`load_family_module` imports the module of an experiment's
``space.module`` — the only user code this package imports.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from hwnas.errors import first_line

from .build import _Quant
from .point import FAMILIES, Point, SpaceError
from .space import SearchSpace, _Source, _Var
from .spec import PrecisionConfig, SpaceConfig, task_option_choices

if TYPE_CHECKING:
    from hwnas.nn import QuantizerSpec

__all__ = ["Ask", "FamilyContext", "FamilyError", "FamilySpace", "LayerQuant", "ModelFamily", "family_names",
           "get_family", "load_family_module", "make_space", "register_family"]

Ask = Callable[[str], Any]
"""``ask(name) -> value``: the choice of a declared variable (:meth:`ModelFamily.choose`)."""

MAX_COUNTED_ARCHITECTURES = 100_000
"""The most architectures :meth:`FamilySpace.size` enumerates for a family with its own ``choose``."""


class FamilyError(SpaceError):
    """An unknown family, a family module that fails to load, or a family that breaks the contract."""


@dataclass(frozen=True)
class FamilyContext:
    """What every :class:`ModelFamily` method is told: the model's input, its outputs and the family's options."""

    input_shape: tuple[int, ...]
    """Per-sample input shape (e.g. ``(64,)`` or ``(1, 8, 8)``)."""
    n_classes: int
    """Number of output logits."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """The family's ``defaults`` updated with ``space.family_options``."""


class LayerQuant:
    """The quantizer specs of one model's layers: the experiment's precision and the point's bit-widths."""

    def __init__(self, precision: PrecisionConfig, learned: bool, layers: Sequence[str],
                 weight_bits: Mapping[str, int], act_bits: Mapping[str, int]) -> None:
        self._q = _Quant(precision, learned)
        self.learned = learned
        """Learned (HGQ) precision: the specs are HGQ's, the bit-widths None."""
        self.layers = tuple(layers)
        """The model's compute layer labels, in model order (the output layer last)."""
        self._w, self._a = dict(weight_bits), dict(act_bits)

    def _known(self, layer: str, act: bool = False) -> None:
        if layer not in self.layers:
            raise FamilyError(f"layer {layer!r} is not one of this model's compute layers {list(self.layers)}")
        if act and layer == self.layers[-1]:
            raise FamilyError(f"layer {layer!r} is the output layer, which has no activation width")

    def weight_bits(self, layer: str) -> int | None:
        """The weight width of ``layer`` (None with learned precision)."""
        self._known(layer)
        return self._w.get(layer)

    def act_bits(self, layer: str) -> int | None:
        """The output activation width of ``layer`` (None with learned precision; the output layer has none)."""
        self._known(layer, act=True)
        return self._a.get(layer)

    @staticmethod
    def _sized(spec: QuantizerSpec, shape: Sequence[int] | None) -> QuantizerSpec:
        return spec if shape is None else {**spec, "element_shape": tuple(int(d) for d in shape)}

    def model_input(self, shape: Sequence[int] | None = None) -> QuantizerSpec:
        """The model input's quantizer (``space.precision.input_bits``, signed): the first layer's input.

        ``shape``: the per-sample shape of the tensor it quantizes (see :meth:`act`).
        """
        return self._sized(self._q.model_input(), shape)

    def weight(self, layer: str) -> QuantizerSpec:
        """The weight quantizer of ``layer`` (per output channel)."""
        return self._q.weight(self.weight_bits(layer))

    def bias(self) -> QuantizerSpec:
        """The bias quantizer (``space.precision.bias_bits``, per tensor)."""
        return self._q.bias()

    def act(self, layer: str, signed: bool = False, shape: Sequence[int] | None = None) -> QuantizerSpec:
        """The quantizer at ``layer``'s activation width: the input quantizer of a layer reading its output.

        ``signed``: False after ReLU (the usual), True when the values can be negative (no activation, tanh).
        ``shape``: the per-sample shape of the tensor it quantizes, for a layer that is not told its input shape
        (``QLinear`` knows it, ``QConv*d`` with ``input_shape=``; a :class:`hwnas.nn.QResidualBlock` or a
        ``QActivation`` needs it): a quantizer without one is sized by the first batch, and a model that holds
        such a quantizer cannot be copied before training (:meth:`FamilySpace.build` refuses it).
        """
        return self._sized(self._q.act(self.act_bits(layer), signed), shape)

    def table_input(self, shape: Sequence[int] | None = None) -> QuantizerSpec:
        """The input quantizer of a tanh/sigmoid lookup table (``space.precision.table_input_bits``, signed)."""
        return self._sized(self._q.table_input(), shape)

    def bipolar(self, layer: str) -> bool:
        """Whether ``layer``'s activation width means ±1 (``precision.one_bit: bipolar`` and 1 bit)."""
        return self._q.bipolar(self.act_bits(layer))


class ModelFamily:
    """Base of every model family (the contract is the module docstring)."""

    name: str = ""
    description: str = ""
    defaults: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    vector: bool = True
    supernet: bool = False

    def check(self, ctx: FamilyContext) -> None:
        """Raise ``ValueError`` for inputs the family cannot take (default: every input)."""

    def variables(self, ctx: FamilyContext) -> Mapping[str, Sequence[Any]]:
        """Every architecture variable, name → choices, in vector order."""
        raise NotImplementedError

    def layers(self, ctx: FamilyContext) -> Sequence[str]:
        """Every compute layer label a model may have, in model order; the output layer last."""
        raise NotImplementedError

    def choose(self, ask: Ask, ctx: FamilyContext) -> Sequence[str]:
        """Ask the variables a model uses (define-by-run) and return its compute layers (default: all)."""
        for name in self.variables(ctx):
            ask(name)
        return list(self.layers(ctx))

    def build(self, arch: Mapping[str, Any], ctx: FamilyContext, quant: LayerQuant) -> nn.Module:
        """The untrained :mod:`hwnas.nn` model of ``arch``."""
        raise NotImplementedError

    def space(self, cfg: SpaceConfig, input_shape: tuple[int, ...], n_classes: int, *,
              shape_of: Callable[[Mapping[str, Any]], Sequence[int]] | None = None) -> SearchSpace:
        """The search space of ``cfg`` on the task (default: :class:`FamilySpace` over this family)."""
        return FamilySpace(self, cfg, input_shape, n_classes, shape_of=shape_of)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


# ------------------------------------------------------------------------------------------------ the space
class _Branch(Exception):  # noqa: N818 (control flow of FamilySpace.size, not an error)
    def __init__(self, n: int) -> None:
        self.n = n


def _plain(value: Any, where: str) -> bool | int | float | str:
    if hasattr(value, "item") and not isinstance(value, bool | int | float | str):
        value = value.item()  # NumPy / torch scalars
    if isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(float(value)):
        return float(value)
    raise FamilyError(f"{where}: choices are numbers, strings or booleans, got {value!r}")


class FamilySpace(SearchSpace):
    """The search space of a plug-in :class:`ModelFamily` (the ``SearchSpace`` API; module docstring)."""

    _plugin = True

    def __init__(self, family: ModelFamily, cfg: SpaceConfig, input_shape: tuple[int, ...], n_classes: int, *,
                 shape_of: Callable[[Mapping[str, Any]], Sequence[int]] | None = None) -> None:
        if not isinstance(family, ModelFamily):
            raise FamilyError(f"space.family: expected a ModelFamily, got {type(family).__name__}")
        if not isinstance(cfg, SpaceConfig):
            raise SpaceError(f"space: expected a SpaceConfig, got {type(cfg).__name__}")
        if cfg.family != family.name:
            raise FamilyError(f"space.family: {cfg.family!r} is not the family {family.name!r}")
        unknown = sorted(set(cfg.family_options) - set(family.defaults))
        if unknown:
            raise FamilyError(f"space.family_options: family {family.name!r} has no option {unknown[0]!r}; its "
                              f"options are: {', '.join(family.defaults) or '(none)'}")
        if cfg.mapping.folding == "search":
            raise FamilyError(f"space.mapping.folding: search picks PE/SIMD or reuse factors per layer of the "
                              f"built-in families; the plug-in family {family.name!r} has no such mapping (use "
                              "folding: auto)")
        self.plugin = family
        """The :class:`ModelFamily` this space searches."""
        self.options: Mapping[str, Any] = MappingProxyType({**family.defaults, **cfg.family_options})
        """The family's options (its defaults updated with ``space.family_options``)."""
        super().__init__(cfg, input_shape, n_classes, shape_of=shape_of)

    def _ctx(self, shape: tuple[int, ...]) -> FamilyContext:
        return FamilyContext(tuple(shape), self.n_classes, self.options)

    def _where(self, method: str) -> str:
        return f"space.family: {self.family!r} ({type(self.plugin).__module__}.{type(self.plugin).__name__}" \
               f".{method})"

    # ------------------------------------------------------------------ validation and variables
    def _check_one_shape(self, shape: tuple[int, ...]) -> None:
        try:
            self.plugin.check(self._ctx(shape))
        except SpaceError:
            raise
        except ValueError as err:
            raise FamilyError(f"space.family: {self.family!r} cannot take the task's samples of shape {shape}: "
                              f"{first_line(err)}") from None

    def _define(self) -> None:
        self.max_conv = self.max_dense = 0  # no conv blocks or dense layers of the built-in kind
        ctx = self._ctx(self.input_shape)
        declared = self.plugin.variables(ctx)
        if not isinstance(declared, Mapping) or not declared:
            raise FamilyError(f"{self._where('variables')}: must return a non-empty mapping name -> choices, got "
                              f"{declared!r}")
        for name, choices in declared.items():
            if not isinstance(name, str) or not name:
                raise FamilyError(f"{self._where('variables')}: variable names are non-empty strings, got {name!r}")
            if name.endswith(("weight_bits", "act_bits")) or name.startswith(("task.", "training.")):
                raise FamilyError(f"{self._where('variables')}: {name!r} is a name the space gives its own "
                                  "variables (bits, task options, training settings); rename it")
            if isinstance(choices, str | bytes) or not isinstance(choices, Sequence | range):
                raise FamilyError(f"{self._where('variables')}: {name!r} needs a sequence of choices, got "
                                  f"{choices!r}")
            values = tuple(_plain(c, f"{self._where('variables')}: {name!r}") for c in choices)
            if len({(isinstance(v, bool), isinstance(v, str), v) for v in values}) != len(values):
                raise FamilyError(f"{self._where('variables')}: {name!r} lists a choice twice: {list(values)}")
            self._add(name, f"{self.family}.{name}", values)
        self._arch = list(declared)
        labels = list(self.plugin.layers(ctx))
        if not labels or not all(isinstance(x, str) and x for x in labels) or len(set(labels)) != len(labels):
            raise FamilyError(f"{self._where('layers')}: must return distinct non-empty labels, the output layer "
                              f"last, got {labels!r}")
        self._labels = labels
        if not self.learned:
            kw, ka = "space.precision.weight_bits", "space.precision.act_bits"
            if self.cfg.precision.per_layer:
                for label in labels:
                    self._add(f"{label}.weight_bits", kw, self._c["weight_bits"])
                for label in labels[:-1]:
                    self._add(f"{label}.act_bits", ka, self._c["act_bits"])
            else:
                self._add("weight_bits", kw, self._c["weight_bits"])
                self._add("act_bits", ka, self._c["act_bits"])
        for name in self.task_option_names:
            self._add(f"task.{name}", f"space.task_options.{name}", task_option_choices(self.cfg.task_options[name]))
        for name, choices in self.cfg.training.searched().items():
            self._add(f"training.{name}", f"space.training.{name}", choices)
        self._layout.sort(key=self._layout_rank)

    def _layout_rank(self, name: str) -> tuple[int, ...]:
        """Vector order: the family's variables (declared order), weight bits, activation bits, task, training."""
        if name in self._arch:
            return (0, self._arch.index(name))
        if name.startswith("task."):
            return (3, self.task_option_names.index(name[5:]))
        if name.startswith("training."):
            return (4, self.training_names.index(name[9:]))
        label, _, kind = name.rpartition(".")
        group = 1 if kind == "weight_bits" else 2
        return (group, self._labels.index(label) if label else -1)

    # ------------------------------------------------------------------ assembly
    def _declared(self, name: Any) -> _Var:
        if not isinstance(name, str) or name not in self._vars or name not in self._arch:
            raise FamilyError(f"{self._where('choose')}: asked for {name!r}, which variables() does not declare "
                              f"(it declares {self._arch})")
        return self._vars[name]

    def _choose(self, ask: Ask, ctx: FamilyContext) -> list[str]:
        """The family's ``choose`` (or the default: every variable, every layer), its layers checked."""
        if type(self.plugin).choose is ModelFamily.choose:
            for name in self._arch:
                ask(name)
            return list(self._labels)
        layers = self.plugin.choose(ask, ctx)
        got = list(layers) if isinstance(layers, Sequence) and not isinstance(layers, str) else None
        order = [self._labels.index(x) for x in got if x in self._labels] if got is not None else []
        if not got or len(order) != len(got) or order != sorted(set(order)) or got[-1] != self._labels[-1]:
            raise FamilyError(f"{self._where('choose')}: must return the model's compute layers, a subsequence of "
                              f"layers() {self._labels} ending with {self._labels[-1]!r}, got {layers!r}")
        return got

    def _assemble(self, src: _Source) -> Point:
        v = self._vars
        task = {name: src.plain(v[f"task.{name}"]) for name in self.task_option_names}
        shape = self._shapes[tuple(task.values())]
        arch: dict[str, Any] = {}

        def ask(name: str) -> Any:
            if name not in arch:
                arch[name] = src.plain(self._declared(name))
            return arch[name]

        layers = self._choose(ask, self._ctx(shape))
        if not arch:
            raise FamilyError(f"{self._where('choose')}: asked for no variable; a model is described by the "
                              "variables it asks")
        weight_bits: list[int] = []
        act_bits: list[int] = []
        if not self.learned:
            shared = not self.cfg.precision.per_layer
            shared_w = src.plain(v["weight_bits"]) if shared else None
            shared_a = src.plain(v["act_bits"]) if shared and len(layers) > 1 else None
            for i, label in enumerate(layers):
                weight_bits.append(shared_w if shared else src.plain(v[f"{label}.weight_bits"]))
                if i < len(layers) - 1:
                    act_bits.append(shared_a if shared else src.plain(v[f"{label}.act_bits"]))
        training = {name: src.plain(v[f"training.{name}"]) for name in self.training_names}
        return Point(self.family, learned=self.learned, weight_bits=tuple(weight_bits), act_bits=tuple(act_bits),
                     task_options=tuple(task.items()), training=tuple(training.items()), arch=tuple(arch.items()))

    def _layers_of(self, point: Point) -> list[str]:
        """The compute layers of ``point``'s model (the family's ``choose`` replayed on its ``arch``)."""
        given = point.arch_dict()

        def ask(name: str) -> Any:
            var = self._declared(name)
            if name not in given:
                raise SpaceError(f"point: has no value for {name!r} ({var.key}); it does not fit this space")
            return var.canonical(given[name], f"point {name}")

        return self._choose(ask, self._ctx(self.input_shape_of(point)))

    def _flat(self, point: Point) -> dict[str, Any]:
        out: dict[str, Any] = dict(point.arch)
        layers = self._layers_of(point)
        for label, b in zip(layers, point.weight_bits, strict=False):
            out[f"{label}.weight_bits"] = b
        for label, b in zip(layers[:-1], point.act_bits, strict=False):
            out[f"{label}.act_bits"] = b
        if point.weight_bits:
            out["weight_bits"] = point.weight_bits[0]
        if point.act_bits:
            out["act_bits"] = point.act_bits[0]
        for name, value in point.task_options:
            out[f"task.{name}"] = value
        for name, value in point.training:
            out[f"training.{name}"] = value
        return out

    # ------------------------------------------------------------------ size, building, mapping
    def _size_for(self, shape: tuple[int, ...]) -> int:
        """Architectures × bit-width choices on inputs of ``shape`` (enumerated through ``choose``)."""
        nw, na = len(self._c["weight_bits"]), len(self._c["act_bits"])

        def bits(n_layers: int) -> int:
            if self.learned:
                return 1
            if self.cfg.precision.per_layer:
                return nw ** n_layers * na ** (n_layers - 1)
            return nw * (na if n_layers > 1 else 1)

        if type(self.plugin).choose is ModelFamily.choose:
            return math.prod(len(self._vars[n].choices) for n in self._arch) * bits(len(self._labels))
        ctx, total, leaves = self._ctx(shape), 0, 0
        stack: list[list[int]] = [[]]
        while stack:
            prefix = stack.pop()
            asked: dict[str, Any] = {}
            pos = 0

            def ask(name: str, prefix: list[int] = prefix, asked: dict[str, Any] = asked) -> Any:
                nonlocal pos
                if name not in asked:
                    var = self._declared(name)
                    if var.fixed:
                        asked[name] = var.choices[0]
                    elif pos < len(prefix):
                        asked[name] = var.choices[prefix[pos]]
                        pos += 1
                    else:
                        raise _Branch(len(var.choices))
                return asked[name]

            try:
                layers = self._choose(ask, ctx)
            except _Branch as b:
                stack.extend([*prefix, k] for k in range(b.n))
                continue
            leaves += 1
            if leaves > MAX_COUNTED_ARCHITECTURES:
                raise SpaceError(f"space.family: {self.family!r} has more than {MAX_COUNTED_ARCHITECTURES:,} "
                                 "architectures; its size is not counted")
            total += bits(len(layers))
        return total

    def build(self, point: Point, seed: int | None = None) -> nn.Module:
        """The family's model of ``point`` (:meth:`ModelFamily.build`); ``seed`` fixes the initial weights."""
        self.check(point)
        ctx = self._ctx(self.input_shape_of(point))
        layers = self._layers_of(point)
        w = dict(zip(layers, point.weight_bits, strict=False))
        a = dict(zip(layers[:-1], point.act_bits, strict=False))
        quant = LayerQuant(self.cfg.precision, self.learned, layers, w, a)
        if seed is None:
            model = self.plugin.build(point.arch_dict(), ctx, quant)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                model = self.plugin.build(point.arch_dict(), ctx, quant)
        if not isinstance(model, nn.Module):
            raise FamilyError(f"{self._where('build')}: must return an nn.Module, got {type(model).__name__}")
        lazy = [n for n, t in (*model.named_parameters(), *model.named_buffers())
                if isinstance(t, nn.parameter.UninitializedParameter | nn.parameter.UninitializedBuffer)]
        if lazy:
            raise FamilyError(f"{self._where('build')}: {lazy[0].rsplit('.', 1)[0]} is sized only by the first "
                              "batch, so the model cannot be copied before training; pass the per-sample shape "
                              "(quant.act(label, shape=...), quant.model_input(shape=...), or the layer's "
                              "input_shape=)")
        return model

    def module_names(self, point: Point) -> dict[str, str]:
        """Empty: a plug-in family's modules are its own, and it searches no per-layer mapping."""
        return {}

    def layers(self, point: Point) -> list[str]:
        """The compute layer labels of ``point``'s model, in model order (the output layer last)."""
        self.check(point)
        return self._layers_of(point)

    def describe(self) -> str:
        """A short summary: family, input, number of points (when countable) and vector length."""
        try:
            return super().describe()
        except SpaceError:
            return (f"{self.family} space on inputs {self.input_shape} → {self.n_classes} classes: more than "
                    f"{MAX_COUNTED_ARCHITECTURES:,} architectures, {len(self._layout)}-entry vector, precision "
                    f"{self.cfg.precision.mode}")


# ------------------------------------------------------------------------------------------------ registry
class _BuiltinFamily(ModelFamily):
    """``cnn1d``, ``cnn2d``, ``mlp``: conv blocks and dense layers, searched by :class:`SearchSpace`."""

    supernet = True

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description

    def space(self, cfg: SpaceConfig, input_shape: tuple[int, ...], n_classes: int, *,
              shape_of: Callable[[Mapping[str, Any]], Sequence[int]] | None = None) -> SearchSpace:
        return SearchSpace(cfg, input_shape, n_classes, shape_of=shape_of)


_REGISTRY: dict[str, ModelFamily] = {}
_MODULE_FAMILIES: dict[str, tuple[str, ...]] = {}
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def register_family(family: ModelFamily | type[ModelFamily], *, replace: bool = False) -> Any:
    """Add ``family`` (an instance, or a class instantiated without arguments) under its ``name``; returns it.

    Raises :class:`FamilyError` for a name that is not an identifier-like string, a built-in name, a name
    already registered (unless ``replace``), and a family that implements neither ``space`` nor all of
    ``variables``, ``layers`` and ``build``.
    """
    instance = family() if isinstance(family, type) and issubclass(family, ModelFamily) else family
    if not isinstance(instance, ModelFamily):
        raise FamilyError(f"register_family: expected a ModelFamily (instance or subclass), got {family!r}")
    name = instance.name
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise FamilyError(f"register_family: {type(instance).__name__}.name must be a name like 'my_family' "
                          f"(letters, digits, _ . -), got {name!r}")
    if name in FAMILIES and not isinstance(instance, _BuiltinFamily):
        raise FamilyError(f"family {name!r} is built in; give yours another name")
    if name in _REGISTRY and not replace:
        raise FamilyError(f"family {name!r} is already registered (pass replace=True to override)")
    cls = type(instance)
    if cls.space is ModelFamily.space:
        missing = [m for m in ("variables", "layers", "build") if getattr(cls, m) is getattr(ModelFamily, m)]
        if missing:
            raise FamilyError(f"family {name!r}: {cls.__name__} must define {', '.join(missing)} "
                              "(hwnas.space.family's contract)")
    if not isinstance(instance.defaults, Mapping) or not all(isinstance(k, str) for k in instance.defaults):
        raise FamilyError(f"family {name!r}: defaults must be a mapping option name -> default value")
    for flag in ("vector", "supernet"):
        if not isinstance(getattr(instance, flag), bool):
            raise FamilyError(f"family {name!r}: {flag} must be True or False")
    _REGISTRY[name] = instance
    return family


def get_family(name: str) -> ModelFamily:
    """The registered family ``name``; an unknown name is a :class:`FamilyError` listing the known ones."""
    if name not in _REGISTRY:
        raise FamilyError(f"space.family: unknown family {name!r}; families are: {', '.join(family_names())}; a "
                          "family of your own: name the module that registers it in space.module "
                          "(docs/extending.md)")
    return _REGISTRY[name]


def family_names() -> list[str]:
    """Names of all registered families: the built-in ones first, then the rest sorted."""
    return [*FAMILIES, *sorted(n for n in _REGISTRY if n not in FAMILIES)]


def make_space(cfg: SpaceConfig, input_shape: tuple[int, ...], n_classes: int, *,
               shape_of: Callable[[Mapping[str, Any]], Sequence[int]] | None = None) -> SearchSpace:
    """The search space of ``cfg`` on the task: ``get_family(cfg.family).space(...)``."""
    if not isinstance(cfg, SpaceConfig):
        raise SpaceError(f"space: expected a SpaceConfig, got {type(cfg).__name__}")
    return get_family(cfg.family).space(cfg, input_shape, n_classes, shape_of=shape_of)


def plugins_allowed() -> bool:
    """Whether the experiment reader may import user modules (``parse_experiment(..., plugins=False)``: no)."""
    from hwnas import config

    return bool(config._PLUGINS.get())


def load_family_module(module: str, search_dir: str | os.PathLike[str] | None = None) -> tuple[str, ...]:
    """Import ``module`` (a dotted name) for the families it registers; their names, sorted.

    Looked up on Python's path, then in ``search_dir`` (an experiment file's folder), which is on the path only
    while the module is imported. It must call :func:`register_family` when imported (a module that registers
    tasks too may also be the experiment's ``task.module``). A second call returns the same names without
    importing again. Raises :class:`FamilyError` (one line) for a name that is not a dotted module name, a
    module that is not found or fails to import, and one that registers no family.
    """
    from hwnas.plugins import import_user_module

    if isinstance(module, str) and module in _MODULE_FAMILIES:
        return _MODULE_FAMILIES[module]
    before = dict(_REGISTRY)
    import_user_module(module, search_dir, FamilyError, "my_pkg.my_families")
    names = sorted(n for n, f in _REGISTRY.items() if before.get(n) is not f)
    if not names:  # imported earlier (e.g. as task.module): the families its classes define
        names = sorted(n for n, f in _REGISTRY.items() if type(f).__module__ == module)
    if not names:
        raise FamilyError(f"importing {module!r} registered no family; it must call "
                          "hwnas.space.register_family(...) when imported (docs/extending.md)")
    _MODULE_FAMILIES[module] = tuple(names)
    return _MODULE_FAMILIES[module]


for _name, _text in (("cnn1d", "conv blocks over (channels, length) inputs (I/Q frames), then dense layers"),
                     ("cnn2d", "conv blocks over (channels, height, width) inputs (images), then dense layers"),
                     ("mlp", "dense layers over feature vectors (other inputs are flattened)")):
    register_family(_BuiltinFamily(_name, _text))
