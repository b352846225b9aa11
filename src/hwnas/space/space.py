"""SearchSpace: a ``space:`` section bound to a task's input shape — suggestion, encodings, sampling, building.

Contract:

* ``SearchSpace(cfg, input_shape, n_classes)`` checks the space against the task (input rank of the family,
  how many pooled blocks the input length allows, ...) and raises :class:`SpaceError` naming the key
  (``space.conv_blocks: ...``). Every point the space can produce is then valid and builds. It serves the
  built-in families (``cnn1d``, ``cnn2d``, ``mlp``); a plug-in family's space is a subclass
  (:class:`hwnas.space.family.FamilySpace`, same API) that :func:`hwnas.space.make_space` picks from the
  family registry, and ``SearchSpace`` itself refuses such a family.
* One set of **variables** describes the space. A variable has a stable name and a finite tuple of choices:
  ``conv_blocks``, ``dense_layers``, ``filters`` (with ``share_filters``), ``dropout``, per conv block ``i``
  ``conv{i}.filters``, ``conv{i}.kernel``, ``conv{i}.pooling``, ``conv{i}.batch_norm``, ``conv{i}.separable``,
  ``conv{i}.activation``, per hidden dense layer ``j`` ``dense{j}.units``, ``dense{j}.activation``; precision
  (mode fixed) ``conv{i}.weight_bits``, ``dense{j}.weight_bits``, ``classifier.weight_bits``,
  ``conv{i}.act_bits``, ``dense{j}.act_bits`` (or the shared ``weight_bits``/``act_bits`` when
  ``precision.per_layer`` is false); mapping (``mapping.folding: search``) ``<layer>.pe``/``<layer>.simd``
  (FINN) or ``<layer>.reuse_factor`` (hls4ml) for ``conv{i}``, ``dense{j}``, ``classifier``, and
  ``conv{i}.dw_pe``/``dw_simd``/``dw_reuse_factor`` for the depthwise half of a separable block. A variable
  with one choice is fixed: it is never asked for and is not part of ``params``.
* Folding variables are **levels** ``0 … L-1`` (a fixed range per name, so Optuna's distributions never change
  between trials): level ``l`` picks divisor number ``round(l·(n-1)/(L-1))`` of the ascending divisors of the
  layer's dimension (PE: output channels / units; SIMD: fan-in ``c_in·k^d``; depthwise: channels and
  ``k^d``), so 0 is fully folded (1) and ``L-1`` fully parallel, and every divisor is reachable. Reuse
  factors are the configured choices; a layer takes the largest divisor of its multiplications (the weight
  count) that does not exceed the choice (hls4ml's rule), so every choice is valid for every layer.
* Define-by-run (:meth:`SearchSpace.suggest`): the depths first, then only the variables of layers that exist
  (conditional parameters). Integer choices that form an arithmetic progression are ``suggest_int`` (with
  ``step``), everything else ``suggest_categorical``. :meth:`params` gives the parameters that produce a
  point (for ``study.enqueue_trial``), :meth:`from_params` reads them back; ``from_params(params(p)) == p``.
* The integer vector (MONAS-LQ's encoding, :meth:`encode`/:meth:`decode`/:meth:`bounds`/:meth:`layout`):
  depth first (``conv_blocks`` for CNNs, then ``dense_layers``, always present), then the other variables
  that have more than one choice for the **maximum** depth, in the order: global architecture (``filters``
  when shared, ``dropout``), per conv slot (filters, kernel, pooling, batch_norm, separable, activation), per
  dense slot (units, activation), all weight bits (conv slots, dense slots, classifier), all activation bits,
  then the mapping per layer, then the task options. An entry is the value itself when the choices are
  consecutive integers (bits ``1..8`` encode as 1..8, depths as themselves, folding levels as levels), else the
  index into the ascending choices. Entries of layers the depth does not reach are padding: encoded as the
  lower bound, ignored when decoding. Every in-bounds vector decodes to a valid point and ``decode(encode(p)) == p``.
* Task options (``space.task_options``, e.g. the qubit readout window) are variables ``task.<option>`` with the
  configured choices. ``SearchSpace(..., shape_of=f)`` is then required: ``f(options)`` gives the input shape of
  the task data loaded with those options (:meth:`hwnas.tasks.Task.input_shape`) and is called once per
  combination when the space is built (an invalid combination is a SpaceError naming ``space.task_options``).
  A point's ``task_options`` fix its input shape (:meth:`input_shape_of`): the shape checks, the folding levels,
  :meth:`size`, :meth:`build` and the mapping hold for every combination. They are asked first in
  define-by-run and come last in the vector.
* Training settings (``space.training``: ``lr``, ``l1``) are variables ``training.<setting>``: a list of choices
  is an ordinary variable (asked last in define-by-run, after the task options in the vector: an index into the
  ascending choices); a continuous range ``{min, max, log}`` is ``suggest_float`` (log-uniform with ``log``),
  drawn uniformly (in log with ``log``) by :meth:`sample`, and has no vector entry: :meth:`decode` refuses such a
  space (the vector strategies cannot search it), :meth:`encode` leaves it out, and :meth:`size` raises (there
  are infinitely many points). A point's ``training`` values replace the experiment's ``training`` settings of
  its trial; the model :meth:`build` makes does not depend on them.
* :meth:`sample` draws every variable uniformly (same generator state → same point); :meth:`size` counts the
  distinct points exactly (Python integer, may be huge).
* :meth:`build` returns the :mod:`hwnas.nn` model (recipe in :mod:`hwnas.space.build`); :meth:`folding` and
  :meth:`reuse_factors` give a point's mapping keyed by the built model's module names, as
  :func:`hwnas.cost.finn_estimate` and :func:`hwnas.cost.hls4ml_estimate` take them.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from .build import build_model, conv_out, module_names, pool_out
from .point import FAMILIES, ConvBlock, DenseLayer, LayerMapping, Point, SpaceError
from .spec import FloatRange, SpaceConfig, int_choices, task_option_choices

if TYPE_CHECKING:
    from optuna.trial import BaseTrial

    from hwnas.cost.finn import Folding

__all__ = ["MAX_TASK_OPTION_COMBINATIONS", "SearchSpace", "VectorSlot"]

MAX_TASK_OPTION_COMBINATIONS = 100_000
"""The most combinations of searched task options a space takes (each one's input shape is computed)."""


# ------------------------------------------------------------------------------------------------ helpers
@cache
def _divisors(n: int) -> tuple[int, ...]:
    small, large = [], []
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            small.append(d)
            if d != n // d:
                large.append(n // d)
    return tuple(small + large[::-1])


def _level_index(level: int, levels: int, n: int) -> int:
    """Divisor index of ``level`` out of ``levels`` when there are ``n`` divisors (round half up)."""
    if levels <= 1:
        return 0
    return (2 * level * (n - 1) + (levels - 1)) // (2 * (levels - 1))


def _effective_reuse(r: int, n_mult: int) -> int:
    """The largest divisor of ``n_mult`` that is <= ``r``."""
    return max(d for d in _divisors(n_mult) if d <= r)


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _dedupe(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class VectorSlot:
    """One entry of the integer vector: its variable, bounds and meaning."""

    name: str
    low: int
    high: int
    encoding: str
    """``"value"``: the entry is the value itself; ``"index"``: an index into ``choices``."""
    choices: tuple[Any, ...]


class _Var:
    """A named variable with a finite, ordered tuple of choices (see the module docstring)."""

    def __init__(self, name: str, key: str, choices: Iterable[Any]) -> None:
        self.name = name
        self.key = key
        self.choices = tuple(choices)
        if not self.choices:
            raise SpaceError(f"{key}: needs at least one choice")
        c = self.choices
        ints = all(_is_int(v) for v in c)
        self.step = 0
        if ints and len(c) > 1:
            steps = {b - a for a, b in itertools.pairwise(c)}
            if len(steps) == 1 and min(steps) > 0:
                self.step = steps.pop()
        self.contiguous = self.step == 1

    @property
    def fixed(self) -> bool:
        return len(self.choices) == 1

    def bounds(self) -> tuple[int, int]:
        if self.contiguous:
            return int(self.choices[0]), int(self.choices[-1])
        return 0, len(self.choices) - 1

    def canonical(self, value: Any, where: str) -> Any:
        """The choice equal to ``value`` (same kind: a bool is not an integer), else a SpaceError."""
        for c in self.choices:
            if isinstance(c, bool) or isinstance(value, bool):
                if isinstance(c, bool) and isinstance(value, bool) and c == value:
                    return c
            elif isinstance(c, str) or isinstance(value, str):
                if c == value:
                    return c
            elif isinstance(value, numbers.Real) and float(value) == float(c):
                return c
        raise SpaceError(f"{where}: {value!r} is not a choice of {self.key} {list(self.choices)}")

    def to_vec(self, value: Any) -> int:
        if self.contiguous:
            return int(value)
        return self.choices.index(self.canonical(value, self.name))

    def from_vec(self, entry: int) -> Any:
        return self.choices[entry - self.choices[0]] if self.contiguous else self.choices[entry]

    def suggest(self, trial: BaseTrial) -> Any:
        if self.step:
            return trial.suggest_int(self.name, int(self.choices[0]), int(self.choices[-1]), step=self.step)
        return trial.suggest_categorical(self.name, list(self.choices))

    def draw(self, rng: np.random.Generator) -> Any:
        """A uniform random choice."""
        return self.choices[int(rng.integers(len(self.choices)))]


class _RangeVar(_Var):
    """A continuous variable ``[low, high]`` (``space.training`` ranges): ``suggest_float``, no vector entry."""

    def __init__(self, name: str, key: str, spec: FloatRange) -> None:
        self.name, self.key = name, key
        self.low, self.high, self.log = float(spec.min), float(spec.max), bool(spec.log)
        self.choices = ()
        self.step = 0
        self.contiguous = False

    @property
    def fixed(self) -> bool:
        return False

    def _no_vector(self) -> SpaceError:
        return SpaceError(f"{self.key}: a continuous range {{min, max}} has no integer vector entry; the vector "
                          "strategies (pso, monas_lq, ha_nas) need a list of choices")

    def bounds(self) -> tuple[int, int]:
        raise self._no_vector()

    def canonical(self, value: Any, where: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not self.low <= float(value) <= self.high:
            raise SpaceError(f"{where}: {value!r} is not in the range [{self.low:g}, {self.high:g}] of {self.key}")
        return float(value)

    def to_vec(self, value: Any) -> int:
        raise self._no_vector()

    def from_vec(self, entry: int) -> Any:
        raise self._no_vector()

    def suggest(self, trial: BaseTrial) -> Any:
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def draw(self, rng: np.random.Generator) -> Any:
        """Uniform in [low, high] (in log with ``log``)."""
        if self.log:
            return float(min(max(math.exp(rng.uniform(math.log(self.low), math.log(self.high))), self.low), self.high))
        return float(rng.uniform(self.low, self.high))


# ------------------------------------------------------------------------------------------------ sources
class _Source:
    """Where the assembler's choices come from; subclasses give the raw value of a non-fixed variable."""

    def raw(self, var: _Var) -> Any:
        raise NotImplementedError

    def plain(self, var: _Var) -> Any:
        return var.choices[0] if var.fixed else self.raw(var)

    def divisor(self, var: _Var, divisors: tuple[int, ...]) -> int:
        level = var.choices[0] if var.fixed else self.raw(var)
        return divisors[_level_index(level, len(var.choices), len(divisors))]

    def reuse(self, var: _Var, n_mult: int) -> int:
        return _effective_reuse(self.plain(var), n_mult)


class _TrialSource(_Source):
    def __init__(self, trial: BaseTrial) -> None:
        self.trial = trial

    def raw(self, var: _Var) -> Any:
        return var.canonical(var.suggest(self.trial), f"trial parameter {var.name!r}")


class _DictSource(_Source):
    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = params
        self.used: set[str] = set()

    def raw(self, var: _Var) -> Any:
        if var.name not in self.params:
            raise SpaceError(f"params: missing {var.name!r} (a choice of {var.key})")
        self.used.add(var.name)
        return var.canonical(self.params[var.name], f"params[{var.name!r}]")


class _VectorSource(_Source):
    def __init__(self, vector: list[int], index: dict[str, int]) -> None:
        self.vector = vector
        self.index = index

    def raw(self, var: _Var) -> Any:
        return var.from_vec(self.vector[self.index[var.name]])


class _RngSource(_Source):
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def raw(self, var: _Var) -> Any:
        return var.draw(self.rng)


class _PointSource(_Source):
    """Replays a point: returns its values and records the raw value of every variable asked for."""

    def __init__(self, flat: dict[str, Any]) -> None:
        self.flat = flat
        self.record: dict[str, Any] = {}

    def _value(self, var: _Var) -> Any:
        if var.name not in self.flat:
            raise SpaceError(f"point: has no value for {var.name!r} ({var.key}); "
                             + ("the space searches the hardware mapping" if var.key.startswith("space.mapping")
                                else "it does not fit this space"))
        return self.flat[var.name]

    def plain(self, var: _Var) -> Any:
        value = var.canonical(self._value(var), f"point {var.name}")
        self.record[var.name] = value
        return value

    def divisor(self, var: _Var, divisors: tuple[int, ...]) -> int:
        value = self._value(var)
        if value not in divisors:
            raise SpaceError(f"point {var.name}: {value!r} does not divide the layer's dimension "
                             f"(divisors {list(divisors)}; FINN: PE | MH, SIMD | MW)")
        idx = divisors.index(value)
        levels = len(var.choices)
        self.record[var.name] = next(lv for lv in range(levels) if _level_index(lv, levels, len(divisors)) == idx)
        return int(value)

    def reuse(self, var: _Var, n_mult: int) -> int:
        value = self._value(var)
        for c in var.choices:
            if _effective_reuse(c, n_mult) == value:
                self.record[var.name] = c
                return int(value)
        raise SpaceError(f"point {var.name}: reuse factor {value!r} is not what any choice of {var.key} "
                         f"{list(var.choices)} gives this layer ({n_mult} multiplications)")


def _flat(point: Point) -> dict[str, Any]:
    """A point as variable name → value (per-layer names; shared names read the first layer)."""
    out: dict[str, Any] = {"dense_layers": len(point.dense), "dropout": point.dropout}
    if point.family != "mlp":
        out["conv_blocks"] = len(point.conv)
    for i, b in enumerate(point.conv):
        for field in ("filters", "kernel", "pooling", "batch_norm", "separable", "activation"):
            out[f"conv{i}.{field}"] = getattr(b, field)
    for j, d in enumerate(point.dense):
        out[f"dense{j}.units"] = d.units
        out[f"dense{j}.activation"] = d.activation
    if point.conv:
        out["filters"] = point.conv[0].filters
    if not point.learned:
        labels = [f"conv{i}" for i in range(len(point.conv))] + [f"dense{j}" for j in range(len(point.dense))]
        for label, b in zip([*labels, "classifier"], point.weight_bits, strict=True):
            out[f"{label}.weight_bits"] = b
        for label, b in zip(labels, point.act_bits, strict=True):
            out[f"{label}.act_bits"] = b
        out["weight_bits"] = point.weight_bits[0]
        if point.act_bits:
            out["act_bits"] = point.act_bits[0]
    for m in point.mapping:
        base, prefix = (m.layer[:-3], "dw_") if m.layer.endswith(".dw") else (m.layer, "")
        for field in ("pe", "simd", "reuse_factor"):
            if getattr(m, field) is not None:
                out[f"{base}.{prefix}{field}"] = getattr(m, field)
    for name, value in point.task_options:
        out[f"task.{name}"] = value
    for name, value in point.training:
        out[f"training.{name}"] = value
    return out


# ------------------------------------------------------------------------------------------------ the space
class SearchSpace:
    """A :class:`SpaceConfig` bound to a task's per-sample ``input_shape`` and class count (module docstring)."""

    _plugin = False
    """Whether this class serves plug-in families (:class:`hwnas.space.family.FamilySpace`); the built-in one not."""

    def __init__(self, cfg: SpaceConfig, input_shape: tuple[int, ...], n_classes: int, *,
                 shape_of: Callable[[Mapping[str, Any]], Sequence[int]] | None = None) -> None:
        """Bind ``cfg`` to the task (module docstring).

        Args:
            cfg: the ``space:`` section.
            input_shape: per-sample input shape of the task data (of the experiment's own task options).
            n_classes: number of classes.
            shape_of: with ``cfg.task_options``: the input shape of the task data for a dict of searched options
                (the task's other options fixed); required then, unused otherwise.
        """
        if not isinstance(cfg, SpaceConfig):
            raise SpaceError(f"space: expected a SpaceConfig, got {type(cfg).__name__}")
        if cfg.family not in FAMILIES and not self._plugin:
            raise SpaceError(f"space.family: {cfg.family!r} is a plug-in family; make its space with "
                             "hwnas.space.make_space(cfg, input_shape, n_classes), which asks the family registry")
        shape = tuple(input_shape)
        if not shape or any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1 for d in shape):
            raise SpaceError(f"input_shape: expected positive integers, got {input_shape!r}")
        if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < 1:
            raise SpaceError(f"n_classes: expected a positive integer, got {n_classes!r}")
        self.cfg = cfg
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in shape)
        self.n_classes = int(n_classes)
        self.family = cfg.family
        self.nd = {"cnn1d": 1, "cnn2d": 2}.get(cfg.family, 0)
        self.learned = cfg.precision.mode == "learned"
        self.map_kind = cfg.mapping.kind if cfg.mapping.folding == "search" else "none"
        p = cfg.precision
        self._c = {
            "conv_blocks": int_choices(cfg.conv_blocks) if self.nd else [0],
            "dense_layers": int_choices(cfg.dense_layers),
            "filters": int_choices(cfg.filters),
            "kernel": int_choices(cfg.kernel),
            "pooling": _dedupe(cfg.pooling),
            "batch_norm": tuple(sorted(set(cfg.batch_norm))),
            "separable": tuple(sorted(set(cfg.separable))),
            "activation": _dedupe(cfg.activation),
            "dense_units": int_choices(cfg.dense_units),
            "dropout": tuple(sorted({float(r) for r in cfg.dropout})),
            "weight_bits": int_choices(p.weight_bits),
            "act_bits": int_choices(p.act_bits),
            "reuse_factor": int_choices(cfg.mapping.reuse_factor),
        }
        self.task_option_names: list[str] = list(cfg.task_options)
        """The searched task options, in the order of ``space.task_options``."""
        self.training_names: list[str] = list(cfg.training.searched())
        """The searched training settings (``space.training``: ``lr``, ``l1``), in field order."""
        self._shapes = self._task_shapes(shape_of)
        self.input_shapes: list[tuple[int, ...]] = sorted(set(self._shapes.values()))
        """Every input shape a point of this space may have (one unless task options are searched)."""
        self._check_shape()
        self.max_conv = max(self._c["conv_blocks"])
        self.max_dense = max(self._c["dense_layers"])
        self._vars: dict[str, _Var] = {}
        self._layout: list[str] = []
        self._define()

    # ------------------------------------------------------------------ validation against the task
    def _task_shapes(self, shape_of: Callable[[Mapping[str, Any]], Sequence[int]] | None
                     ) -> dict[tuple[Any, ...], tuple[int, ...]]:
        """Input shape per combination of searched task options (values in ``task_option_names`` order)."""
        names = self.task_option_names
        if not names:
            return {(): self.input_shape}
        if shape_of is None:
            raise SpaceError("space.task_options: searching task options needs the task's input shape per option "
                             "set (SearchSpace(..., shape_of=...))")
        choices = [task_option_choices(self.cfg.task_options[n]) for n in names]
        count = math.prod(len(c) for c in choices)
        if count > MAX_TASK_OPTION_COMBINATIONS:
            raise SpaceError(f"space.task_options: {count:,} combinations of {', '.join(names)}; at most "
                             f"{MAX_TASK_OPTION_COMBINATIONS:,} (use fewer choices or a coarser step)")
        out = {}
        for combo in itertools.product(*choices):
            opts = dict(zip(names, combo, strict=True))
            try:
                shape = tuple(shape_of(opts))
            except ValueError as err:  # TaskError, SpaceError: an option set the task rejects
                given = ", ".join(f"{k} {v!r}" for k, v in opts.items())
                raise SpaceError(f"space.task_options: {given}: {err}") from None
            if not shape or any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1 for d in shape):
                raise SpaceError(f"space.task_options: shape_of({opts}) gave {shape!r}, not a shape")
            out[combo] = tuple(int(d) for d in shape)
        return out

    def _check_shape(self) -> None:
        for shape in self.input_shapes:
            self._check_one_shape(shape)

    def _check_one_shape(self, shape: tuple[int, ...]) -> None:
        fam = self.family
        if fam == "cnn1d" and len(shape) != 2:
            raise SpaceError(f"space.family: cnn1d needs (channels, length) inputs; the task's samples are {shape}")
        if fam == "cnn2d" and len(shape) != 3:
            raise SpaceError(f"space.family: cnn2d needs (channels, height, width) inputs; the task's samples are "
                             f"{shape}")
        if not self.nd:
            return
        spatial = shape[1:]
        if any(pl != "none" for pl in self._c["pooling"]):
            fit = min(n.bit_length() - 1 for n in spatial)  # floor(log2 n), exactly
            most = max(self._c["conv_blocks"])
            if most > fit:
                raise SpaceError(f"space.conv_blocks: up to {most} blocks, each of which may pool by 2, do not fit "
                                 f"the input's spatial size {spatial} (at most {fit} pooled blocks fit); lower "
                                 "conv_blocks or use pooling: [none]"
                                 + (" (or use larger inputs in space.task_options)" if self.task_option_names
                                    else ""))

    # ------------------------------------------------------------------ variables
    def _add(self, name: str, key: str, choices: Iterable[Any] | FloatRange, in_vector: bool | None = None) -> None:
        var = _RangeVar(name, key, choices) if isinstance(choices, FloatRange) else _Var(name, key, choices)
        self._vars[name] = var
        if isinstance(var, _RangeVar):
            return  # no vector entry
        if in_vector if in_vector is not None else not var.fixed:
            self._layout.append(name)

    @property
    def continuous(self) -> list[str]:
        """The variables with a continuous range (``space.training`` ``{min, max}``): no vector entry, no size."""
        return [name for name, var in self._vars.items() if isinstance(var, _RangeVar)]

    def _reachable(self) -> tuple[list[set[int]], set[int]]:
        """Per conv slot the possible input channels, and the possible flattened feature counts."""
        c = self._c
        if not self.nd:
            return [], {math.prod(s) for s in self.input_shapes}
        states = {(s[0], s[1:]) for s in self.input_shapes}
        cins: list[set[int]] = []
        flat: set[int] = set()
        for i in range(self.max_conv + 1):
            if i in c["conv_blocks"]:
                flat |= {ch * math.prod(sp) for ch, sp in states}
            if i == self.max_conv:
                break
            cins.append({ch for ch, _ in states})
            nxt = set()
            for _, sp in states:
                for k in c["kernel"]:
                    after = conv_out(sp, k)
                    for pl in c["pooling"]:
                        out = pool_out(after) if pl != "none" else after
                        nxt |= {(f, out) for f in c["filters"]}
            states = nxt
        return cins, flat

    def _levels(self, dims: Iterable[int]) -> range:
        return range(max(len(_divisors(d)) for d in dims))

    def _mapping_vars(self, label: str, prefix: str, mh: Iterable[int], mw: Iterable[int]) -> None:
        key_f = "space.mapping.folding"
        if self.map_kind == "finn":
            self._add(f"{label}.{prefix}pe", key_f, self._levels(mh))
            self._add(f"{label}.{prefix}simd", key_f, self._levels(mw))
        elif self.map_kind == "hls4ml":
            self._add(f"{label}.{prefix}reuse_factor", "space.mapping.reuse_factor", self._c["reuse_factor"])

    def _define(self) -> None:
        c, cfg = self._c, self.cfg
        if self.nd:
            self._add("conv_blocks", "space.conv_blocks", c["conv_blocks"], in_vector=True)
        self._add("dense_layers", "space.dense_layers", c["dense_layers"], in_vector=True)
        if self.nd and cfg.share_filters:
            self._add("filters", "space.filters", c["filters"])
        self._add("dropout", "space.dropout", c["dropout"])
        for i in range(self.max_conv):
            if not cfg.share_filters:
                self._add(f"conv{i}.filters", "space.filters", c["filters"])
            for field in ("kernel", "pooling", "batch_norm", "separable", "activation"):
                self._add(f"conv{i}.{field}", f"space.{field}", c[field])
        for j in range(self.max_dense):
            self._add(f"dense{j}.units", "space.dense_units", c["dense_units"])
            self._add(f"dense{j}.activation", "space.activation", c["activation"])
        convs = [f"conv{i}" for i in range(self.max_conv)]
        denses = [f"dense{j}" for j in range(self.max_dense)]
        if not self.learned:
            kw, ka = "space.precision.weight_bits", "space.precision.act_bits"
            if cfg.precision.per_layer:
                for label in [*convs, *denses, "classifier"]:
                    self._add(f"{label}.weight_bits", kw, c["weight_bits"])
                for label in [*convs, *denses]:
                    self._add(f"{label}.act_bits", ka, c["act_bits"])
            else:
                self._add("weight_bits", kw, c["weight_bits"])
                self._add("act_bits", ka, c["act_bits"])
        if self.map_kind != "none":
            self._define_mapping(convs, denses)
        for name in self.task_option_names:
            self._add(f"task.{name}", f"space.task_options.{name}", task_option_choices(self.cfg.task_options[name]))
        for name, choices in self.cfg.training.searched().items():
            self._add(f"training.{name}", f"space.training.{name}", choices)
        self._layout.sort(key=self._layout_rank)  # the documented order (a block's depthwise mapping first)

    def _define_mapping(self, convs: list[str], denses: list[str]) -> None:
        c = self._c
        cins, flat = self._reachable()
        kk = {k ** self.nd for k in c["kernel"]}
        for i, label in enumerate(convs):
            fan_in = set()
            if False in c["separable"]:
                fan_in |= {ch * k for ch in cins[i] for k in kk}
            if True in c["separable"]:
                fan_in |= cins[i]
                self._mapping_vars(label, "dw_", cins[i], kk)
            self._mapping_vars(label, "", c["filters"], fan_in)
        units = set(c["dense_units"])
        for j, label in enumerate(denses):
            self._mapping_vars(label, "", units, flat if j == 0 else units)
        cls_in = (flat if 0 in c["dense_layers"] else set()) | (units if self.max_dense else set())
        self._mapping_vars("classifier", "", {self.n_classes}, cls_in)

    def _layout_rank(self, name: str) -> tuple[int, ...]:
        """Sort key of the vector order (module docstring); stable within a group."""
        head = {"conv_blocks": 0, "dense_layers": 1, "filters": 2, "dropout": 3, "weight_bits": 6, "act_bits": 8}
        if name in head:
            return (head[name], 0, 0, 0)
        if name.startswith("task."):
            return (11, self.task_option_names.index(name[5:]), 0, 0)
        if name.startswith("training."):
            return (12, self.training_names.index(name[9:]), 0, 0)
        label, field = name.split(".", 1)
        if label == "classifier":
            slot = 10_000
        else:
            slot = int(label[4:]) if label.startswith("conv") else 1000 + int(label[5:])
        if field == "weight_bits":
            return (6, slot, 0, 0)
        if field == "act_bits":
            return (8, slot, 0, 0)
        mapping = ("dw_pe", "dw_simd", "dw_reuse_factor", "pe", "simd", "reuse_factor")
        if field in mapping:
            return (9, slot, mapping.index(field), 0)
        arch = ("filters", "kernel", "pooling", "batch_norm", "separable", "activation", "units")
        return (4, slot, arch.index(field), 0)

    # ------------------------------------------------------------------ assembly (the one place a point is made)
    def _assemble(self, src: _Source) -> Point:
        v, c, nd = self._vars, self.cfg, self.nd
        task = {name: src.plain(v[f"task.{name}"]) for name in self.task_option_names}
        shape = self._shapes[tuple(task.values())]
        n_conv = src.plain(v["conv_blocks"]) if nd else 0
        n_dense = src.plain(v["dense_layers"])
        hidden = n_conv + n_dense
        shared_f = src.plain(v["filters"]) if nd and c.share_filters and n_conv else None
        dropout = src.plain(v["dropout"])
        shared_bits = not self.learned and not c.precision.per_layer
        shared_w = src.plain(v["weight_bits"]) if shared_bits else None
        shared_a = src.plain(v["act_bits"]) if shared_bits and hidden else None
        weight_bits: list[int] = []
        act_bits: list[int] = []
        mapping: list[LayerMapping] = []

        def bits(label: str, act: bool) -> None:
            if self.learned:
                return
            weight_bits.append(shared_w if shared_bits else src.plain(v[f"{label}.weight_bits"]))
            if act:
                act_bits.append(shared_a if shared_bits else src.plain(v[f"{label}.act_bits"]))

        def mapped(label: str, prefix: str, mh: int, mw: int, n_mult: int, tag: str) -> None:
            if self.map_kind == "finn":
                pe = src.divisor(v[f"{label}.{prefix}pe"], _divisors(mh))
                simd = src.divisor(v[f"{label}.{prefix}simd"], _divisors(mw))
                mapping.append(LayerMapping(tag, pe=pe, simd=simd))
            elif self.map_kind == "hls4ml":
                mapping.append(LayerMapping(tag, reuse_factor=src.reuse(v[f"{label}.{prefix}reuse_factor"], n_mult)))

        blocks: list[ConvBlock] = []
        cin, spatial = (shape[0], shape[1:]) if nd else (0, ())
        for i in range(n_conv):
            label = f"conv{i}"
            f = shared_f if shared_f is not None else src.plain(v[f"{label}.filters"])
            k = src.plain(v[f"{label}.kernel"])
            pooling = src.plain(v[f"{label}.pooling"])
            bn = src.plain(v[f"{label}.batch_norm"])
            sep = src.plain(v[f"{label}.separable"])
            act = src.plain(v[f"{label}.activation"])
            blocks.append(ConvBlock(f, k, pooling, bn, sep, act))
            bits(label, True)
            kk = k ** nd
            if sep:
                mapped(label, "dw_", cin, kk, cin * kk, f"{label}.dw")
                mapped(label, "", f, cin, f * cin, label)
            else:
                mapped(label, "", f, cin * kk, f * cin * kk, label)
            spatial = conv_out(spatial, k)
            if pooling != "none":
                spatial = pool_out(spatial)
            cin = f
        fin = cin * math.prod(spatial) if nd else math.prod(shape)
        dense: list[DenseLayer] = []
        for j in range(n_dense):
            label = f"dense{j}"
            units = src.plain(v[f"{label}.units"])
            dense.append(DenseLayer(units, src.plain(v[f"{label}.activation"])))
            bits(label, True)
            mapped(label, "", units, fin, units * fin, label)
            fin = units
        bits("classifier", False)
        mapped("classifier", "", self.n_classes, fin, self.n_classes * fin, "classifier")
        training = {name: src.plain(v[f"training.{name}"]) for name in self.training_names}
        return Point(self.family, tuple(blocks), tuple(dense), dropout, self.learned, tuple(weight_bits),
                     tuple(act_bits), tuple(mapping), tuple(task.items()), tuple(training.items()))

    # ------------------------------------------------------------------ public API
    @property
    def names(self) -> list[str]:
        """Every variable name of the space (fixed ones included), in definition order."""
        return list(self._vars)

    def choices(self, name: str) -> tuple[Any, ...]:
        """The choices of variable ``name`` (ascending for numbers); a SpaceError for an unknown name."""
        if name not in self._vars:
            raise SpaceError(f"space: no variable {name!r}; the space has {sorted(self._vars)}")
        return tuple(self._vars[name].choices)

    def extreme(self, largest: bool = True) -> Point:
        """The point with every numeric variable at its largest (``largest``) or smallest choice.

        Depths, widths, kernels and bit-widths at the end of their range; a variable of non-integer choices
        (dropout, pooling, ...) and every hardware-mapping level at its first choice; a continuous training range
        at its lower bound.
        """
        class _Extreme(_Source):
            def raw(self, var: _Var) -> Any:
                if isinstance(var, _RangeVar):
                    return var.low
                mapping = var.key.startswith("space.mapping")
                if mapping or not all(_is_int(c) for c in var.choices):
                    return var.choices[0]
                return max(var.choices) if largest else min(var.choices)

        return self._assemble(_Extreme())

    def layout(self) -> list[VectorSlot]:
        """The integer vector's entries, in order."""
        out = []
        for name in self._layout:
            var = self._vars[name]
            lo, hi = self._slot_bounds(name)
            value = var.contiguous or (var.fixed and _is_int(var.choices[0]))
            out.append(VectorSlot(name, lo, hi, "value" if value else "index", var.choices))
        return out

    def bounds(self) -> list[tuple[int, int]]:
        """Inclusive (low, high) of every vector entry."""
        return [self._slot_bounds(n) for n in self._layout]

    def _slot_bounds(self, name: str) -> tuple[int, int]:
        var = self._vars[name]
        if var.fixed and _is_int(var.choices[0]):
            return int(var.choices[0]), int(var.choices[0])  # a fixed depth encodes as its value
        return var.bounds()

    def check(self, point: Point) -> Point:
        """``point`` when it belongs to this space; else a SpaceError naming the first offending choice."""
        self._replay(point)
        return point

    def _replay(self, point: Point) -> dict[str, Any]:
        if not isinstance(point, Point):
            raise SpaceError(f"point: expected a Point, got {type(point).__name__}")
        if point.family != self.family:
            raise SpaceError(f"point.family: {point.family!r} does not match space.family {self.family!r}")
        if point.learned != self.learned:
            raise SpaceError(f"point.learned: {point.learned} does not match space.precision.mode "
                             f"{self.cfg.precision.mode!r}")
        if sorted(point.task_option_dict()) != sorted(self.task_option_names):
            raise SpaceError(f"point.task_options: the point has {sorted(point.task_option_dict()) or 'none'}, the "
                             f"space searches {sorted(self.task_option_names) or 'none'} (space.task_options)")
        if sorted(point.training_dict()) != sorted(self.training_names):
            raise SpaceError(f"point.training: the point has {sorted(point.training_dict()) or 'none'}, the space "
                             f"searches {sorted(self.training_names) or 'none'} (space.training)")
        src = _PointSource(self._flat(point))
        again = self._assemble(src)
        if again != point:
            mine, theirs = self._flat(again), self._flat(point)
            for key in sorted(set(mine) | set(theirs)):
                if mine.get(key) != theirs.get(key):
                    hint = {"filters": "space.share_filters is on", "weight_bits": "precision.per_layer is off",
                            "act_bits": "precision.per_layer is off"}.get(key.rsplit(".", 1)[-1], "")
                    raise SpaceError(f"point {key}: {theirs.get(key)!r} is not what this space allows here "
                                     f"(expected {mine.get(key)!r}{'; ' + hint if hint else ''})")
            raise SpaceError("point: does not belong to this space")
        return src.record

    def _flat(self, point: Point) -> dict[str, Any]:
        """``point`` as variable name → value, what :meth:`_replay` replays (a plug-in family's space differs)."""
        return _flat(point)

    def params(self, point: Point) -> dict[str, Any]:
        """The define-by-run parameters that produce ``point`` (fixed variables left out)."""
        return {k: val for k, val in self._replay(point).items() if not self._vars[k].fixed}

    def from_params(self, params: Mapping[str, Any], strict: bool = True) -> Point:
        """The point of a parameter dict (``trial.params``); ``strict``: unknown keys are an error."""
        src = _DictSource(params)
        point = self._assemble(src)
        extra = sorted(set(params) - src.used)
        if strict and extra:
            raise SpaceError(f"params: {extra} are not parameters of this point (known: {self.names})")
        return point

    def suggest(self, trial: BaseTrial) -> Point:
        """Ask ``trial`` (Optuna, define-by-run) for a point; only existing layers' parameters are asked."""
        return self._assemble(_TrialSource(trial))

    def encode(self, point: Point) -> list[int]:
        """The fixed-length integer vector of ``point`` (module docstring)."""
        record = self._replay(point)
        vec = [lo for lo, _ in self.bounds()]
        for n, name in enumerate(self._layout):
            if name in record:
                var = self._vars[name]
                vec[n] = var.to_vec(record[name]) if not var.fixed else vec[n]
        return vec

    def decode(self, vector: Iterable[Any]) -> Point:
        """The point of an in-bounds integer vector (padding ignored); a space with a continuous range has none."""
        if self.continuous:
            raise self._vars[self.continuous[0]]._no_vector()  # type: ignore[attr-defined]
        vec = list(vector)
        bounds = self.bounds()
        if len(vec) != len(bounds):
            raise SpaceError(f"vector: expected {len(bounds)} entries ({', '.join(self._layout)}), got {len(vec)}")
        clean = []
        for n, (x, (lo, hi)) in enumerate(zip(vec, bounds, strict=True)):
            name = self._layout[n]
            if isinstance(x, bool) or not isinstance(x, numbers.Real) or float(x) != int(x):
                raise SpaceError(f"vector[{n}] ({name}): expected an integer, got {x!r}")
            if not lo <= int(x) <= hi:
                raise SpaceError(f"vector[{n}] ({name}): {int(x)} is outside [{lo}, {hi}]")
            clean.append(int(x))
        return self._assemble(_VectorSource(clean, {name: n for n, name in enumerate(self._layout)}))

    def sample(self, rng: np.random.Generator) -> Point:
        """A random point: every variable uniform over its choices."""
        return self._assemble(_RngSource(rng))

    def size(self) -> int:
        """Number of distinct points (exact).

        Per input shape, its architectures × its task option sets, times the training choices. A space with a
        continuous range (``space.training``) raises a SpaceError.
        """
        if self.continuous:
            key = self._vars[self.continuous[0]].key
            raise SpaceError(f"{key}: a continuous range has infinitely many values, so the space has infinitely "
                             "many points")
        training = math.prod(len(self._vars[f"training.{n}"].choices) for n in self.training_names)
        return training * sum(n * self._size_for(shape) for shape, n in Counter(self._shapes.values()).items())

    def _size_for(self, shape: tuple[int, ...]) -> int:
        """Number of distinct architectures (precision, mapping) on inputs of ``shape``."""
        c, nd = self._c, self.nd
        learned, per_layer = self.learned, self.cfg.precision.per_layer
        w_f = len(c["weight_bits"]) if not learned and per_layer else 1
        a_f = len(c["act_bits"]) if not learned and per_layer else 1

        def mcount(mh: int, mw: int, n_mult: int) -> int:
            if self.map_kind == "finn":
                return len(_divisors(mh)) * len(_divisors(mw))
            if self.map_kind == "hls4ml":
                return len({_effective_reuse(r, n_mult) for r in c["reuse_factor"]})
            return 1

        per_block = len(c["batch_norm"]) * len(c["activation"]) * w_f * a_f

        @cache
        def dense(j: int, n_dense: int, fin: int) -> int:
            if j == n_dense:
                return w_f * mcount(self.n_classes, fin, self.n_classes * fin)
            return sum(len(c["activation"]) * w_f * a_f * mcount(u, fin, u * fin) * dense(j + 1, n_dense, u)
                       for u in c["dense_units"])

        @cache
        def conv(i: int, n_conv: int, n_dense: int, cin: int, spatial: tuple[int, ...], shared: int | None) -> int:
            if i == n_conv:
                return dense(0, n_dense, cin * math.prod(spatial) if nd else math.prod(shape))
            total = 0
            for f in ([shared] if shared is not None else c["filters"]):
                for k in c["kernel"]:
                    kk = k ** nd
                    after = conv_out(spatial, k)
                    for pl in c["pooling"]:
                        out = pool_out(after) if pl != "none" else after
                        rest = conv(i + 1, n_conv, n_dense, f, out, shared)
                        for sep in c["separable"]:
                            m = (mcount(cin, kk, cin * kk) * mcount(f, cin, f * cin) if sep
                                 else mcount(f, cin * kk, f * cin * kk))
                            total += per_block * m * rest
            return total

        total = 0
        start = (shape[0], shape[1:]) if nd else (0, ())
        for n_conv in c["conv_blocks"]:
            for n_dense in c["dense_layers"]:
                hidden = n_conv + n_dense
                shared_bits = 1
                if not learned and not per_layer:
                    shared_bits = len(c["weight_bits"]) * (len(c["act_bits"]) if hidden else 1)
                shares = c["filters"] if nd and self.cfg.share_filters and n_conv else [None]
                for s in shares:
                    total += shared_bits * len(c["dropout"]) * conv(0, n_conv, n_dense, *start, s)
        return total

    def build(self, point: Point, seed: int | None = None) -> nn.Sequential:
        """The :mod:`hwnas.nn` model of ``point`` (recipe: :mod:`hwnas.space.build`); ``seed`` fixes the weights."""
        self.check(point)
        return build_model(point, self.input_shape_of(point), self.n_classes, self.cfg.precision, seed)

    def input_shape_of(self, point: Point | None = None) -> tuple[int, ...]:
        """Per-sample input shape of ``point``'s model.

        Set by the point's task options when they are searched; else (and for ``None``) :attr:`input_shape`.
        """
        if point is None or not self.task_option_names:
            return self.input_shape
        opts = point.task_option_dict()
        key = []
        for name in self.task_option_names:
            if name not in opts:
                raise SpaceError(f"point.task_options: has no value for {name!r} (space.task_options.{name})")
            key.append(self._vars[f"task.{name}"].canonical(opts[name], f"point.task_options.{name}"))
        return self._shapes[tuple(key)]

    def module_names(self, point: Point) -> dict[str, str]:
        """Layer label (``conv0``, ``conv0.dw``, ``dense0``, ``classifier``, ...) → module name in the built model."""
        return module_names(point, self.input_shape_of(point), self.n_classes)

    def folding(self, point: Point) -> dict[str, Folding]:
        """The point's FINN PE/SIMD per module name (for ``finn_estimate(folding=...)``); empty when not searched."""
        from hwnas.cost.finn import Folding

        names = self.module_names(point)
        return {names[m.layer]: Folding(m.pe, m.simd) for m in point.mapping if m.pe is not None}

    def reuse_factors(self, point: Point) -> dict[str, int]:
        """The point's hls4ml reuse factor per module name (for ``hls4ml_estimate(reuse_factor=...)``)."""
        names = self.module_names(point)
        return {names[m.layer]: m.reuse_factor for m in point.mapping if m.reuse_factor is not None}

    def describe(self) -> str:
        """A short summary: family, input, number of points and vector length."""
        inputs = str(self.input_shape)
        if self.task_option_names:
            shapes = self.input_shapes
            inputs = (f"{shapes[0]} … {shapes[-1]}" if len(shapes) > 1 else str(shapes[0])) + \
                f" (task options {', '.join(self.task_option_names)})"
        points = f"{self.size():,}" if not self.continuous else \
            f"infinitely many (continuous {', '.join(self.continuous)})"
        return (f"{self.family} space on inputs {inputs} → {self.n_classes} classes: {points} points, "
                f"{len(self._layout)}-entry vector, precision {self.cfg.precision.mode}, mapping {self.map_kind}")

