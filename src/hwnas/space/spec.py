"""The ``space:`` section of an experiment file: what the search may choose (validated with pydantic).

Every searchable integer is an :data:`IntSpec`: a single value (fixed), a list (a set of choices, e.g.
``[2, 4, 8, 16]``) or a range ``{min: 1, max: 8, step: 1}`` (inclusive). Lists of strings/bools/floats are
sets of choices. Each field's description is its documentation (``hwnas config --defaults`` prints them).

``task_options`` makes options of the experiment's task search variables (e.g. the qubit readout window): each
maps to a list of choices or an integer range. Whether the task has such an option and whether every
combination is valid for it is checked with the task (:mod:`hwnas.config`, :class:`hwnas.space.SearchSpace`).

``family`` names a registered model family (:mod:`hwnas.space.family`): a built-in one (``cnn1d``, ``cnn2d``,
``mlp``) or a plug-in family that the Python module named in ``module`` registers when imported (imported before
``family`` is checked, like ``task.module``; looked up on Python's path, then in the experiment file's folder).
``family_options`` are a plug-in family's own options, checked against the family's ``defaults``.

``training`` (:class:`TrainingSpace`) makes training settings search variables (SNAC-Pack's learning rate and L1
strength): each is a number (fixed), a list of choices or a continuous range ``{min, max, log}``
(:class:`FloatRange`; only the define-by-run strategies can sample one, which :mod:`hwnas.config` checks).

What is checked here needs nothing but the section itself (value ranges, non-empty choice lists, settings
that need another one); what depends on the task's input shape (how many pooled blocks fit the input, the
input rank of a family) is checked by :class:`hwnas.space.SearchSpace`, whose errors name the same keys.
"""

from __future__ import annotations

import difflib
import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = ["FloatRange", "FloatSpec", "IntRange", "IntSpec", "MappingConfig", "PrecisionConfig", "SpaceConfig",
           "TaskOptionSpec", "TrainingSpace", "float_choices", "int_choices", "task_option_choices"]


def _fail_at(loc: str | tuple[str, ...], message: str, value: Any) -> None:
    """Raise one finished problem at ``loc`` inside the section (the config loader shows ``message`` as it is)."""
    where = (loc,) if isinstance(loc, str) else loc
    raise ValidationError.from_exception_data("SpaceConfig", [InitErrorDetails(
        type=PydanticCustomError("config", "{msg}", {"msg": message}), loc=where, input=value)])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IntRange(_Strict):
    """An inclusive integer range ``{min, max, step}``."""

    min: int = Field(description="smallest value")
    max: int = Field(description="largest value (inclusive)")
    step: int = Field(1, ge=1, description="spacing of the values")

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


IntSpec = int | list[int] | IntRange
"""A fixed integer, a set of choices, or an inclusive range."""


def int_choices(spec: IntSpec) -> list[int]:
    """Every value an :data:`IntSpec` allows, ascending, without duplicates."""
    if isinstance(spec, IntRange):
        return list(range(spec.min, spec.max + 1, spec.step))
    if isinstance(spec, int):
        return [spec]
    return sorted(set(spec))


def _check_ints(spec: IntSpec, low: int, high: int | None = None) -> IntSpec:
    """``spec`` when it has at least one value and every value lies in [low, high]; else a ValueError."""
    values = int_choices(spec)
    if not values:
        raise ValueError("needs at least one choice")
    bad = [v for v in values if v < low or (high is not None and v > high)]
    if bad:
        where = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"every value must be {where}; got {bad}")
    return spec


def _nonempty(values: list[Any]) -> list[Any]:
    if not values:
        raise ValueError("needs at least one choice")
    return values


TaskOptionSpec = Annotated[list[bool | int | float | str], AfterValidator(_nonempty)] | IntRange
"""The choices of one searched task option: a list of values, or an inclusive integer range."""


def task_option_choices(spec: TaskOptionSpec) -> tuple[bool | int | float | str, ...]:
    """The values a searched task option takes, without duplicates.

    A range, or a list of numbers (or of booleans), ascending; other lists in their order.
    """
    if isinstance(spec, IntRange):
        return tuple(int_choices(spec))
    seen: set[tuple[bool, bool, Any]] = set()
    plain = []
    for v in spec:  # 1 and 1.0 are one value; True and 1 are not
        key = (isinstance(v, bool), isinstance(v, str), v)
        if key not in seen:
            seen.add(key)
            plain.append(v)
    if all(isinstance(v, bool) for v in plain) or all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in plain):
        return tuple(sorted(plain))
    return tuple(plain)


class FloatRange(_Strict):
    """A continuous range ``{min, max, log}``: each trial draws a number in [min, max]."""

    min: float = Field(description="smallest value")
    max: float = Field(description="largest value (inclusive)")
    log: bool = Field(False, description="draw uniformly in log(value) rather than in value (needs min > 0)")

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if not (math.isfinite(self.min) and math.isfinite(self.max)):
            raise ValueError(f"min and max must be finite numbers, got {self.min} and {self.max}")
        if self.max <= self.min:
            raise ValueError(f"max ({self.max:g}) must be above min ({self.min:g}); a single value is a number, "
                             "not a range")
        if self.log and self.min <= 0:
            raise ValueError(f"log: a log range needs min > 0, got min {self.min:g}")
        return self


FloatSpec = float | list[float] | FloatRange
"""A fixed number, a set of choices, or a continuous range."""


def float_choices(spec: FloatSpec) -> tuple[float, ...] | FloatRange:
    """The values a :data:`FloatSpec` allows: its choices ascending without duplicates, or the range itself."""
    if isinstance(spec, FloatRange):
        return spec
    if isinstance(spec, int | float):
        return (float(spec),)
    return tuple(sorted({float(v) for v in spec}))


def _check_floats(spec: FloatSpec | None, low: float, strict: bool) -> FloatSpec | None:
    """``spec`` when every value is finite and above ``low`` (``strict``) or at least ``low``; else a ValueError."""
    if spec is None:
        return None
    values = float_choices(spec)
    if isinstance(values, FloatRange):
        values = (values.min, values.max)
    if not values:
        raise ValueError("needs at least one choice")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"every value must be a finite number; got {list(values)}")
    bad = [v for v in values if (v <= low if strict else v < low)]
    if bad:
        raise ValueError(f"every value must be {'>' if strict else '>='} {low:g}; got {bad}")
    return spec


class TrainingSpace(_Strict):
    """Training settings searched per trial (SNAC-Pack: learning rate and L1 strength)."""

    lr: FloatSpec | None = Field(
        None, description="learning rates (> 0) to choose from per trial: a number (fixed), a list of choices or "
        "{min, max, log} (a continuous range: nsga2, tpe and random only); each trial trains with its choice in "
        "place of training.lr (null: training.lr for every trial)")
    l1: FloatSpec | None = Field(
        None, description="L1 strengths (>= 0) to choose from per trial, like lr; each trial trains with its "
        "choice in place of training.l1 (null: training.l1 for every trial)")

    @field_validator("lr")
    @classmethod
    def _lr(cls, v: FloatSpec | None) -> FloatSpec | None:
        return _check_floats(v, 0.0, strict=True)

    @field_validator("l1")
    @classmethod
    def _l1(cls, v: FloatSpec | None) -> FloatSpec | None:
        return _check_floats(v, 0.0, strict=False)

    def searched(self) -> dict[str, tuple[float, ...] | FloatRange]:
        """The settings given, ``{name: choices or range}`` in field order (None ones left out)."""
        return {name: float_choices(spec) for name in type(self).model_fields
                if (spec := getattr(self, name)) is not None}


class PrecisionConfig(_Strict):
    """Per-layer weight and activation bit-widths, or learned (HGQ) widths."""

    mode: Literal["fixed", "learned"] = Field(
        "fixed", description="fixed: bits are search variables (static fixed-point quantizers); learned: HGQ "
        "per-parameter widths trained with the EBOPs regularizer (beta)")
    weight_bits: IntSpec = Field(default_factory=lambda: IntRange(min=2, max=8),
                                 description="weight bit-widths to choose from (mode fixed)")
    act_bits: IntSpec = Field(default_factory=lambda: IntRange(min=2, max=8),
                              description="activation bit-widths to choose from (mode fixed): the width of each "
                              "hidden layer's output activation, i.e. of the next layer's input")
    one_bit: Literal["fixed", "bipolar"] = Field(
        "fixed", description="what a width of 1 in weight_bits/act_bits means (mode fixed): fixed: signed 1-bit fixed "
        "point {-2^i, 0}; bipolar: +-1 (x >= 0 -> +1, FINN's XNOR-popcount; a 1-bit activation is then sign(x), "
        "which replaces the layer's relu/tanh/sigmoid)")
    per_layer: bool = Field(True, description="one choice per layer (MONAS-LQ layer-wise bits); false: one for all")
    input_bits: int = Field(8, ge=1, le=32, description="bit-width of the model input quantizer")
    bias_bits: int = Field(16, ge=1, le=32, description="bit-width of the bias quantizers (initial width in mode "
                           "learned)")
    table_input_bits: int = Field(8, ge=1, le=16, description="input width of tanh/sigmoid lookup tables "
                                  "(the table has 2^bits entries)")
    init_bits: int = Field(8, ge=1, le=32, description="initial width of learned quantizers (mode learned)")
    beta: float = Field(1e-5, ge=0, description="EBOPs weight in the loss (mode learned)")
    gamma: float = Field(1e-6, ge=0, description="bit-width L1 weight in the loss (mode learned; with fixed "
                         "widths, in a run.local beta_sweep)")

    @field_validator("weight_bits", "act_bits")
    @classmethod
    def _bits(cls, v: IntSpec) -> IntSpec:
        return _check_ints(v, 1, 32)

    @model_validator(mode="after")
    def _one_bit(self) -> PrecisionConfig:
        if self.one_bit == "bipolar" and self.mode == "learned":
            raise ValueError("one_bit: bipolar applies to searched bits (mode fixed); HGQ's learned widths (mode "
                             "learned) have no bipolar form")
        return self


class MappingConfig(_Strict):
    """How layers map onto hardware parallelism (FINN PE/SIMD or hls4ml reuse factor)."""

    kind: Literal["none", "finn", "hls4ml"] = Field(
        "none", description="none: the hardware model's defaults; finn: PE/SIMD per layer; hls4ml: reuse factor")
    folding: Literal["auto", "search"] = Field(
        "auto", description="auto: nothing is searched, the cost model picks (FINN: folding search for "
        "target_fps); search: per layer, FINN PE and SIMD (divisors of the layer's output channels and fan-in) "
        "or the hls4ml reuse factor (from reuse_factor) are search variables")
    target_fps: float | None = Field(None, gt=0, description="throughput the automatic folding must reach")
    reuse_factor: IntSpec = Field(1, description="hls4ml reuse factors to choose from (kind hls4ml, folding search; "
                                  "a layer takes the largest divisor of its multiplications not above the choice); "
                                  "with folding auto, one value is the reuse factor the hls4ml cost model prices "
                                  "every layer at (each the largest valid one not above it)")

    @field_validator("reuse_factor")
    @classmethod
    def _reuse(cls, v: IntSpec) -> IntSpec:
        return _check_ints(v, 1)

    @model_validator(mode="after")
    def _consistent(self) -> MappingConfig:
        if self.folding == "search" and self.kind == "none":
            raise ValueError("folding: 'search' needs kind finn (PE/SIMD) or hls4ml (reuse factor)")
        if len(int_choices(self.reuse_factor)) > 1 and not (self.kind == "hls4ml" and self.folding == "search"):
            raise ValueError("reuse_factor: several choices are only searched with kind hls4ml and folding search")
        return self


class SpaceConfig(_Strict):
    """The architecture, precision and mapping choices of one search."""

    family: str = Field(
        "cnn1d", description="cnn1d (I/Q frames, RadioML), cnn2d (images) or mlp (feature vectors; the conv "
        "settings are ignored), or a plug-in family registered by space.module (docs/extending.md; of the "
        "settings here only precision, mapping, task_options and training apply to it)")
    module: str | None = Field(
        None, description="a Python module of your own that registers the family named in space.family (with "
        "hwnas.space.register_family) when imported, e.g. my_pkg.my_families: a dotted name importable from "
        "Python's path or the experiment file's folder, imported before the family is looked up "
        "(docs/extending.md); null: a built-in family (or one a task.module registers)")
    family_options: dict[str, Any] = Field(
        default_factory=dict, description="options of a plug-in family (its defaults updated with these; an "
        "unknown option is an error), e.g. the choices of its own search variables; built-in families have none")
    conv_blocks: IntSpec = Field(default_factory=lambda: IntRange(min=1, max=4),
                                 description="number of conv blocks (conv -> [BN] -> activation -> [pool])")
    filters: IntSpec = Field(default_factory=lambda: [8, 16, 32, 64], description="filters per conv block")
    share_filters: bool = Field(False, description="one filter count for every block (MONAS-LQ backbone width)")
    kernel: IntSpec = Field(default_factory=lambda: [3, 5], description="kernel sizes per conv block (zero "
                            "padding kernel//2: odd kernels keep the length)")
    pooling: list[Literal["max", "avg", "none"]] = Field(default_factory=lambda: ["max"],
                                                        description="pooling after each block (window 2)")
    activation: list[Literal["relu", "tanh", "sigmoid"]] = Field(
        default_factory=lambda: ["relu"], description="activation of every conv block and hidden dense layer "
        "(tanh/sigmoid run as exact lookup tables)")
    batch_norm: list[bool] = Field(default_factory=lambda: [False], description="BatchNorm after each conv, fused "
                                   "into it and trained fold-aware (the deployed model is the trained one)")
    separable: list[bool] = Field(default_factory=lambda: [False],
                                  description="depthwise-separable convolutions (depthwise + pointwise)")
    dense_layers: IntSpec = Field(default_factory=lambda: IntRange(min=0, max=2),
                                  description="hidden dense layers before the classifier")
    dense_units: IntSpec = Field(default_factory=lambda: [16, 32, 64, 128], description="units per hidden layer")
    dropout: list[float] = Field(default_factory=lambda: [0.0], description="dropout rate (one per model) before "
                                 "each dense layer, the classifier included")
    precision: PrecisionConfig = Field(default_factory=PrecisionConfig, description="bit-widths")
    mapping: MappingConfig = Field(default_factory=MappingConfig, description="hardware mapping")
    task_options: dict[str, TaskOptionSpec] = Field(
        default_factory=dict, description="task options searched with the model (SNAC-Pack: the readout window): "
        "option name -> list of choices or {min, max, step}; each trial loads the task data with task.options "
        "overridden by its choices, and the input size follows (e.g. {window_start: {min: 0, max: 300, step: "
        "20}, window_size: [50, 100, 200]})")
    training: TrainingSpace = Field(
        default_factory=TrainingSpace, description="training settings searched with the model (SNAC-Pack: "
        "learning rate and L1 strength); each trial trains with training overridden by its choices")

    @model_validator(mode="before")
    @classmethod
    def _import_module(cls, data: Any, info: ValidationInfo) -> Any:
        """Import ``module`` (only the one named here) before ``family`` is checked against the registry."""
        from hwnas.config import _import_plugin_module  # hwnas.config imports this module

        return _import_plugin_module("SpaceConfig", data, info, "family")

    @field_validator("family")
    @classmethod
    def _known_family(cls, value: str) -> str:
        from hwnas.space.family import family_names

        names = family_names()
        if value not in names:
            close = difflib.get_close_matches(value, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            shown = repr(value) if len(value) <= 60 else repr(value[:57]) + "..."
            raise ValueError(f"unknown family {shown}{hint}; families are: {', '.join(names)}; a family of your "
                             "own: name the module that registers it in space.module (docs/extending.md)")
        return value

    @model_validator(mode="after")
    def _known_family_options(self) -> SpaceConfig:
        from hwnas.space.family import get_family

        defaults = get_family(self.family).defaults
        for key, value in self.family_options.items():
            if key not in defaults:
                close = difflib.get_close_matches(str(key), list(defaults), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                _fail_at(("family_options", key), f"family {self.family!r} has no option {key!r}{hint}; its options "
                         f"are: {', '.join(defaults) or '(none)'}", value)
        return self

    @field_validator("conv_blocks", "dense_layers")
    @classmethod
    def _depth(cls, v: IntSpec) -> IntSpec:
        return _check_ints(v, 0)

    @field_validator("filters", "kernel", "dense_units")
    @classmethod
    def _positive(cls, v: IntSpec) -> IntSpec:
        return _check_ints(v, 1)

    @field_validator("pooling", "activation", "batch_norm", "separable")
    @classmethod
    def _choices(cls, v: list[Any]) -> list[Any]:
        return _nonempty(v)

    @field_validator("dropout")
    @classmethod
    def _rates(cls, v: list[float]) -> list[float]:
        bad = [r for r in _nonempty(v) if not 0.0 <= r < 1.0]
        if bad:
            raise ValueError(f"every rate must be in [0, 1); got {bad}")
        return v
