"""One point of a search space: a concrete architecture, its precision and its hardware mapping.

Contract:

* :class:`Point` is a frozen, hashable dataclass (tuples of frozen dataclasses all the way down): two points
  are equal exactly when every choice is equal, so points serve as dictionary keys and set members (caches,
  de-duplication of proposals).
* Layout: ``conv`` (one :class:`ConvBlock` per conv block, empty for ``mlp``), ``dense`` (one
  :class:`DenseLayer` per hidden dense layer), then the classifier (implicit: its width is the task's class
  count). Precision: ``weight_bits`` has one entry per compute layer in that order (conv blocks, hidden dense
  layers, classifier) and ``act_bits`` one per hidden layer (conv blocks, hidden dense layers): the width of
  that layer's output activation, which is the next layer's input. Both are empty when ``learned`` (HGQ
  per-parameter widths). ``mapping`` is empty unless the space searches the hardware mapping; then it holds one
  :class:`LayerMapping` per hardware compute layer, in model order, labelled ``conv{i}.dw`` (the depthwise
  half of a separable block), ``conv{i}``, ``dense{j}`` and ``classifier``. ``task_options`` is empty unless the
  space searches task options (``space.task_options``); then it holds one ``(option, value)`` pair per searched
  option, sorted by name: the task data of this point is loaded with them (e.g. the qubit readout window).
  ``training`` is empty unless the space searches training settings (``space.training``); then it holds one
  ``(setting, value)`` pair per searched setting (``lr``, ``l1``), sorted by name: the point's model trains with
  them in place of the experiment's ``training`` values.
* A point of a plug-in family (:mod:`hwnas.space.family`; ``family`` is not one of :data:`FAMILIES`) has no
  ``conv``, ``dense``, ``dropout`` or ``mapping``: its architecture is ``arch``, one ``(variable, value)`` pair per
  variable the family asked for (sorted by name; values are numbers, strings or booleans), which must not be
  empty. ``weight_bits`` has one entry per compute layer of the model (the family's labels, in model order, the
  output layer last) and ``act_bits`` one per layer but the output layer. Built-in points have no ``arch``.
* :meth:`Point.to_dict` gives plain JSON/YAML types (the ``"point"`` user attribute of a trial) and
  :meth:`Point.from_dict` reads it back (``Point.from_dict(p.to_dict()) == p``); a malformed dict is a
  :class:`SpaceError` naming the key. Whether a point belongs to a given space is
  :meth:`hwnas.space.SearchSpace.check`.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, fields
from typing import Any

from hwnas.errors import HwnasError

__all__ = ["ConvBlock", "DenseLayer", "LayerMapping", "Point", "SpaceError"]

FAMILIES = ("cnn1d", "cnn2d", "mlp")
"""The built-in families (conv blocks and dense layers); any other name is a plug-in family's."""
_FAMILY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
POOLINGS = ("max", "avg", "none")
ACTIVATIONS = ("relu", "tanh", "sigmoid")


class SpaceError(HwnasError, ValueError):
    """A search space that does not fit the task, or a point, parameter set or vector outside the space."""


def _int(value: Any, where: str, low: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SpaceError(f"{where}: expected an integer, got {value!r}")
    v = int(value)
    if low is not None and v < low:
        raise SpaceError(f"{where}: must be >= {low}, got {v}")
    return v


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise SpaceError(f"{where}: expected true or false, got {value!r}")
    return value


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise SpaceError(f"{where}: expected one of {list(allowed)}, got {value!r}")
    return str(value)


def _keys(d: Any, where: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise SpaceError(f"{where}: expected a mapping, got {type(d).__name__}")
    unknown = sorted(set(d) - required - optional)
    if unknown:
        raise SpaceError(f"{where}: unknown key(s) {unknown}; expected {sorted(required | optional)}")
    missing = sorted(required - set(d))
    if missing:
        raise SpaceError(f"{where}: missing key(s) {missing}")
    return d


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise SpaceError(f"{where}: expected a list, got {type(value).__name__}")
    return list(value)


@dataclass(frozen=True)
class ConvBlock:
    """One conv block: conv (or depthwise + pointwise) → [BatchNorm] → activation → [pool 2]."""

    filters: int
    kernel: int
    pooling: str = "max"
    batch_norm: bool = False
    separable: bool = False
    activation: str = "relu"

    def __post_init__(self) -> None:
        _int(self.filters, "filters", 1)
        _int(self.kernel, "kernel", 1)
        _choice(self.pooling, POOLINGS, "pooling")
        _bool(self.batch_norm, "batch_norm")
        _bool(self.separable, "separable")
        _choice(self.activation, ACTIVATIONS, "activation")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the block."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Any, where: str = "conv") -> ConvBlock:
        """Read a block written by :meth:`to_dict`."""
        d = _keys(d, where, {"filters", "kernel"}, {"pooling", "batch_norm", "separable", "activation"})
        try:
            return cls(**d)
        except SpaceError as err:
            raise SpaceError(f"{where}.{err}") from None


@dataclass(frozen=True)
class DenseLayer:
    """One hidden dense layer: [dropout] → linear → activation."""

    units: int
    activation: str = "relu"

    def __post_init__(self) -> None:
        _int(self.units, "units", 1)
        _choice(self.activation, ACTIVATIONS, "activation")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the layer."""
        return {"units": self.units, "activation": self.activation}

    @classmethod
    def from_dict(cls, d: Any, where: str = "dense") -> DenseLayer:
        """Read a layer written by :meth:`to_dict`."""
        d = _keys(d, where, {"units"}, {"activation"})
        try:
            return cls(**d)
        except SpaceError as err:
            raise SpaceError(f"{where}.{err}") from None


@dataclass(frozen=True)
class LayerMapping:
    """Hardware parallelism of one compute layer: FINN ``pe``/``simd`` or the hls4ml ``reuse_factor``."""

    layer: str
    pe: int | None = None
    simd: int | None = None
    reuse_factor: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.layer, str) or not self.layer:
            raise SpaceError(f"layer: expected a layer label such as 'conv0', got {self.layer!r}")
        for name in ("pe", "simd", "reuse_factor"):
            if getattr(self, name) is not None:
                _int(getattr(self, name), name, 1)
        if (self.pe is None) != (self.simd is None):
            raise SpaceError(f"{self.layer}: pe and simd are given together")
        if self.pe is None and self.reuse_factor is None:
            raise SpaceError(f"{self.layer}: give pe and simd (FINN) or reuse_factor (hls4ml)")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict; unset fields are left out."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, d: Any, where: str = "mapping") -> LayerMapping:
        """Read a mapping written by :meth:`to_dict`."""
        d = _keys(d, where, {"layer"}, {"pe", "simd", "reuse_factor"})
        try:
            return cls(**d)
        except SpaceError as err:
            raise SpaceError(f"{where}.{err}") from None


@dataclass(frozen=True)
class Point:
    """A concrete architecture + precision + mapping (see the module docstring for the layout)."""

    family: str
    conv: tuple[ConvBlock, ...] = ()
    dense: tuple[DenseLayer, ...] = ()
    dropout: float = 0.0
    learned: bool = False
    weight_bits: tuple[int, ...] = ()
    act_bits: tuple[int, ...] = ()
    mapping: tuple[LayerMapping, ...] = ()
    task_options: tuple[tuple[str, bool | int | float | str], ...] = ()
    training: tuple[tuple[str, float], ...] = ()
    arch: tuple[tuple[str, bool | int | float | str], ...] = ()

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            self._check_plugin()
        train = self.training
        if not isinstance(train, tuple) or not all(isinstance(o, tuple) and len(o) == 2 for o in train):
            raise SpaceError("point.training: expected a tuple of (setting, value) pairs")
        for name, value in train:
            if not isinstance(name, str) or not name:
                raise SpaceError(f"point.training: setting names are strings, got {name!r}")
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
                raise SpaceError(f"point.training.{name}: expected a finite number, got {value!r}")
        if len({name for name, _ in train}) != len(train):
            raise SpaceError(f"point.training: a setting is given twice in {[n for n, _ in train]}")
        object.__setattr__(self, "training", tuple(sorted(((n, float(v)) for n, v in train), key=lambda o: o[0])))
        opts = self.task_options
        if not isinstance(opts, tuple) or not all(isinstance(o, tuple) and len(o) == 2 for o in opts):
            raise SpaceError("point.task_options: expected a tuple of (option, value) pairs")
        for name, value in opts:
            if not isinstance(name, str) or not name:
                raise SpaceError(f"point.task_options: option names are strings, got {name!r}")
            if not isinstance(value, bool | numbers.Real | str):
                raise SpaceError(f"point.task_options.{name}: expected a number, string or boolean, got {value!r}")
        if len({name for name, _ in opts}) != len(opts):
            raise SpaceError(f"point.task_options: an option is given twice in {[n for n, _ in opts]}")
        object.__setattr__(self, "task_options", tuple(sorted(opts, key=lambda o: o[0])))  # one canonical order
        for name, kind in (("conv", ConvBlock), ("dense", DenseLayer), ("mapping", LayerMapping)):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(isinstance(x, kind) for x in value):
                raise SpaceError(f"point.{name}: expected a tuple of {kind.__name__}")
        if self.family == "mlp" and self.conv:
            raise SpaceError("point.conv: an mlp has no conv blocks")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, numbers.Real) \
                or not 0.0 <= float(self.dropout) < 1.0:
            raise SpaceError(f"point.dropout: expected a rate in [0, 1), got {self.dropout!r}")
        _bool(self.learned, "point.learned")
        for name in ("weight_bits", "act_bits"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                raise SpaceError(f"point.{name}: expected a tuple of integers")
            for i, b in enumerate(value):
                _int(b, f"point.{name}[{i}]", 1)
        if self.arch:
            self._check_plugin_bits()
            return
        hidden = len(self.conv) + len(self.dense)
        want = (0, 0) if self.learned else (hidden + 1, hidden)
        got = (len(self.weight_bits), len(self.act_bits))
        if got != want:
            what = "learned precision has no fixed bits" if self.learned else \
                f"{hidden + 1} weight widths (conv blocks, dense layers, classifier) and {hidden} activation widths"
            raise SpaceError(f"point.weight_bits/act_bits: expected {what}, got {got[0]} and {got[1]}")
        labels = [m.layer for m in self.mapping]
        if self.mapping and labels != self.compute_layers():
            raise SpaceError(f"point.mapping: expected one entry per compute layer {self.compute_layers()}, "
                             f"got {labels}")

    def _check_plugin(self) -> None:
        """``family`` names a plug-in family and ``arch`` holds its architecture (module docstring)."""
        if not isinstance(self.family, str) or not _FAMILY_NAME.fullmatch(self.family):
            raise SpaceError(f"point.family: expected one of {list(FAMILIES)} or a plug-in family's name, "
                             f"got {self.family!r}")
        arch = self.arch
        if not isinstance(arch, tuple) or not all(isinstance(o, tuple) and len(o) == 2 for o in arch):
            raise SpaceError("point.arch: expected a tuple of (variable, value) pairs")
        if not arch:
            raise SpaceError(f"point.family: {self.family!r} is not a built-in family ({', '.join(FAMILIES)}); a "
                             "plug-in family's point names its architecture in point.arch, which is empty")
        for name, value in arch:
            if not isinstance(name, str) or not name:
                raise SpaceError(f"point.arch: variable names are strings, got {name!r}")
            number = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if not isinstance(value, bool | numbers.Real | str) or (number and not math.isfinite(float(value))):
                raise SpaceError(f"point.arch.{name}: expected a number, string or boolean, got {value!r}")
        if len({name for name, _ in arch}) != len(arch):
            raise SpaceError(f"point.arch: a variable is given twice in {[n for n, _ in arch]}")
        object.__setattr__(self, "arch", tuple(sorted(arch, key=lambda o: o[0])))
        for name in ("conv", "dense", "mapping"):
            if getattr(self, name):
                raise SpaceError(f"point.{name}: a point of the plug-in family {self.family!r} has none (its "
                                 "architecture is point.arch)")

    def _check_plugin_bits(self) -> None:
        if self.family in FAMILIES:
            raise SpaceError(f"point.arch: a point of the built-in family {self.family!r} has none (its "
                             "architecture is point.conv and point.dense)")
        if isinstance(self.dropout, bool) or float(self.dropout) != 0.0:
            raise SpaceError(f"point.dropout: a point of the plug-in family {self.family!r} has none (a family's "
                             "own dropout is a variable in point.arch)")
        got = (len(self.weight_bits), len(self.act_bits))
        if self.learned and got != (0, 0):
            raise SpaceError(f"point.weight_bits/act_bits: learned precision has no fixed bits, got {got[0]} and "
                             f"{got[1]}")
        if not self.learned and (got[0] < 1 or got[1] != got[0] - 1):
            raise SpaceError(f"point.weight_bits/act_bits: expected one weight width per compute layer and one "
                             f"activation width per layer but the output layer, got {got[0]} and {got[1]}")

    # ------------------------------------------------------------------ structure
    @property
    def hidden_layers(self) -> int:
        """Conv blocks + hidden dense layers (the layers with an output activation width)."""
        return len(self.conv) + len(self.dense)

    def compute_layers(self) -> list[str]:
        """Labels of the hardware compute layers in model order (``conv{i}.dw``, ``conv{i}``, ...)."""
        out: list[str] = []
        for i, block in enumerate(self.conv):
            if block.separable:
                out.append(f"conv{i}.dw")
            out.append(f"conv{i}")
        out += [f"dense{j}" for j in range(len(self.dense))] + ["classifier"]
        return out

    def task_option_dict(self) -> dict[str, bool | int | float | str]:
        """The searched task options of this point, ``{option: value}`` (empty when none are searched)."""
        return dict(self.task_options)

    def training_dict(self) -> dict[str, float]:
        """The searched training settings of this point, ``{setting: value}`` (empty when none are searched)."""
        return dict(self.training)

    def arch_dict(self) -> dict[str, bool | int | float | str]:
        """A plug-in family's architecture, ``{variable: value}`` (empty for the built-in families)."""
        return dict(self.arch)

    def layer_mapping(self, label: str) -> LayerMapping | None:
        """The mapping of the compute layer ``label``, or None when the mapping is not searched."""
        return next((m for m in self.mapping if m.layer == label), None)

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML types: ``Point.from_dict(p.to_dict()) == p`` (``task_options``, ``training`` if searched)."""
        out = {
            "family": self.family,
            "conv": [b.to_dict() for b in self.conv],
            "dense": [d.to_dict() for d in self.dense],
            "dropout": float(self.dropout),
            "learned": self.learned,
            "weight_bits": list(self.weight_bits),
            "act_bits": list(self.act_bits),
            "mapping": [m.to_dict() for m in self.mapping],
        }
        if self.task_options:
            out["task_options"] = self.task_option_dict()
        if self.training:
            out["training"] = self.training_dict()
        if self.arch:
            out["arch"] = self.arch_dict()
        return out

    @classmethod
    def from_dict(cls, d: Any) -> Point:
        """Read a point written by :meth:`to_dict`; errors name the key (``point.conv[1].kernel``)."""
        d = _keys(d, "point", {"family"}, {"conv", "dense", "dropout", "learned", "weight_bits", "act_bits",
                                           "mapping", "task_options", "training", "arch"})
        opts = d.get("task_options", {})
        if not isinstance(opts, dict):
            raise SpaceError(f"point.task_options: expected a mapping option -> value, got {type(opts).__name__}")
        train = d.get("training", {})
        if not isinstance(train, dict):
            raise SpaceError(f"point.training: expected a mapping setting -> value, got {type(train).__name__}")
        arch = d.get("arch", {})
        if not isinstance(arch, dict):
            raise SpaceError(f"point.arch: expected a mapping variable -> value, got {type(arch).__name__}")
        conv = tuple(ConvBlock.from_dict(b, f"point.conv[{i}]")
                     for i, b in enumerate(_list(d.get("conv", []), "point.conv")))
        dense = tuple(DenseLayer.from_dict(b, f"point.dense[{i}]")
                      for i, b in enumerate(_list(d.get("dense", []), "point.dense")))
        mapping = tuple(LayerMapping.from_dict(m, f"point.mapping[{i}]")
                        for i, m in enumerate(_list(d.get("mapping", []), "point.mapping")))
        dropout = d.get("dropout", 0.0)
        if isinstance(dropout, numbers.Integral) and not isinstance(dropout, bool):
            dropout = float(dropout)
        return cls(
            family=d["family"], conv=conv, dense=dense, dropout=dropout, learned=d.get("learned", False),
            weight_bits=tuple(_list(d.get("weight_bits", []), "point.weight_bits")),
            act_bits=tuple(_list(d.get("act_bits", []), "point.act_bits")),
            mapping=mapping, task_options=tuple(opts.items()), training=tuple(train.items()),
            arch=tuple(arch.items()),
        )

    def describe(self) -> str:
        """One line, e.g. ``cnn1d conv[16k3/relu/max, 32k5/tanh/-] dense[64/relu] w[4,8,2,8] a[4,4,6]``.

        Searched task options come last: ``task[window_size=50,window_start=120]``, then searched training
        settings: ``train[l1=1e-05,lr=0.002]``. A plug-in family's point shows its architecture as
        ``arch[blocks=2,width=8]`` in place of ``conv[...]``/``dense[...]``.
        """
        def block(b: ConvBlock) -> str:
            tags = ["sep" if b.separable else "", "bn" if b.batch_norm else "", b.activation,
                    "-" if b.pooling == "none" else b.pooling]
            return f"{b.filters}k{b.kernel}/" + "/".join(t for t in tags if t)

        parts = [self.family]
        if self.arch:
            parts.append("arch[" + ",".join(f"{k}={v}" for k, v in self.arch) + "]")
        else:
            if self.conv:
                parts.append("conv[" + ", ".join(block(b) for b in self.conv) + "]")
            parts.append("dense[" + ", ".join(f"{d.units}/{d.activation}" for d in self.dense) + "]")
        if self.dropout:
            parts.append(f"drop {self.dropout:g}")
        if self.learned:
            parts.append("bits learned")
        else:
            parts.append("w[" + ",".join(map(str, self.weight_bits)) + "] a[" + ",".join(map(str, self.act_bits))
                         + "]")
        if self.mapping:
            def fold(m: LayerMapping) -> str:
                return f"{m.pe}x{m.simd}" if m.pe is not None else f"R{m.reuse_factor}"
            parts.append("map[" + ",".join(fold(m) for m in self.mapping) + "]")
        if self.task_options:
            parts.append("task[" + ",".join(f"{k}={v}" for k, v in self.task_options) + "]")
        if self.training:
            parts.append("train[" + ",".join(f"{k}={v:.4g}" for k, v in self.training) + "]")
        return " ".join(parts)
