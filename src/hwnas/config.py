"""The experiment file: one validated YAML document that names everything a search run needs.

Contract:

* :func:`load_experiment` (a file, or YAML text) and :func:`parse_experiment` (YAML text) return an
  :class:`Experiment` or raise one :class:`ConfigError` (a ``ValueError``) that lists **every** problem found,
  one per line, as ``<file>:<line>: <key.path[i].sub>: <what is wrong>``: YAML syntax errors (as
  ``<file>:<line>:<column>: YAML syntax error: ...``), duplicate keys, unknown keys, wrong types (the whole file,
  ``space`` included, is validated strictly: ``true`` is not a number, ``"8"`` is not an integer; ``1e-3`` is read
  as a number), values out of range, unknown metrics, tasks, task options,
  devices and strategy options, impossible constraints and budgets, and settings that need another one
  (``cpu_latency_ms`` needs ``hardware.cpu_table``, hardware metrics need a cost model). Lines come from the
  YAML node of the offending key (for a missing key, the line of the mapping that lacks it). Checks between
  sections run on every part that is valid by itself, so they are reported with the rest. Nothing is loaded,
  trained or written while validating: task options are checked against the task registry's declared
  defaults, devices against the catalog. The exceptions are ``task.module`` and ``space.module``: the Python
  module each names is imported (:func:`hwnas.tasks.load_task_module`, :func:`hwnas.space.load_family_module`)
  so that it registers the task or model family, before that is checked; ``parse_experiment(..., plugins=False)``
  refuses them instead (the MCP server imports no user code).
* Every field of every section carries a ``description``: that is the one place where the defaults are
  documented. :func:`defaults_yaml` prints the complete default experiment as commented YAML (``hwnas config
  --defaults``) and :func:`reference_markdown` the reference tables of ``docs/config.md``.
* Limits (``docs/config.md``, "Limits"): a file above :data:`MAX_FILE_BYTES`, a document above
  :data:`MAX_YAML_NODES` nodes written or with its aliases expanded (counted on the composed node graph, each
  node once, before anything is constructed: an alias bomb costs what its file costs), an alias cycle, and
  every count or size above its ceiling (``search.n_trials`` <= :data:`MAX_TRIALS`, epochs, batch sizes,
  populations, :data:`TASK_OPTION_LIMITS`, :data:`SPACE_LIMITS`, ranges of :data:`MAX_RANGE_VALUES`) are
  problems like any other. :meth:`Experiment.with_n_trials` checks a budget given on the command line.
* ``Experiment.to_yaml()`` round-trips: ``parse_experiment(e.to_yaml()) == e``. Equality compares the settings,
  not the folder the file was read from.
* Relative paths (``output``, ``hardware.cpu_table``, a ``sqlite:///`` or ``journal:///`` storage file) are
  relative to the experiment file's folder (the current directory for text without a file):
  :meth:`Experiment.output_dir`, :meth:`Experiment.cpu_table_path`, :meth:`Experiment.storage_url`.
* Constraints are hard budgets ``min <= metric <= max``; a bound ``'50%'`` is a share of the target device's
  capacity (LUTs, FFs, BRAM18, URAM, DSPs only). :meth:`Experiment.constraint_values` turns a trial's metrics
  into one float per constraint, **<= 0 when satisfied** (Optuna's convention): ``(value - max) / |max|`` and
  ``(min - value) / |min|`` (the raw difference where the bound is 0), the larger of the two when a constraint
  has both, so budgets in different units compare on one scale (0.1 = 10 % over budget).
"""

from __future__ import annotations

import contextvars
import copy
import difflib
import hashlib
import itertools
import json
import math
import os
import re
import textwrap
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from hwnas.errors import HwnasError
from hwnas.space.spec import IntRange, SpaceConfig, task_option_choices

if typing.TYPE_CHECKING:
    from hwnas.cost.catalog import Device
    from hwnas.train.trainer import TrainConfig

__all__ = [
    "CAPACITY_METRICS",
    "HARDWARE_METRICS",
    "HASH_NEUTRAL",
    "HASH_NEW_NEUTRAL",
    "MAX_FILE_BYTES",
    "MAX_FOLDS",
    "MAX_TRIALS",
    "MAX_YAML_NODES",
    "METRICS",
    "STRATEGY_OPTIONS",
    "VECTOR_STRATEGIES",
    "ConfigError",
    "Constraint",
    "Experiment",
    "HaNasOptions",
    "HardwareConfig",
    "LocalConfig",
    "MonasLqOptions",
    "Nsga2Options",
    "Objective",
    "Problem",
    "PsoOptions",
    "RandomOptions",
    "RunConfig",
    "SearchConfig",
    "StorageConfig",
    "StrategyOptions",
    "TaskConfig",
    "TpeOptions",
    "TrainingConfig",
    "defaults_yaml",
    "hash_payload",
    "hash_payload_forms",
    "load_experiment",
    "parse_experiment",
    "payload_digest",
    "reference_markdown",
]

METRICS: dict[str, str] = {
    "accuracy": "task metric on the validation split (fidelity for qubit readout), higher is better",
    "test_accuracy": "task metric on the test split (reported only; never an objective or constraint)",
    "accuracy_std": "standard deviation of the task metric over the folds of training.kfold (accuracy is their "
                    "mean); only with training.kfold",
    "loss": "validation loss",
    "bops": "Σ MACs·b_w·b_a",
    "ebops": "effective BOPs (HGQ)",
    "wbits": "Σ params·bits (pruned elements free)",
    "qa_score": "½·BOPs/BOPs_base + ½·Wbits/Wbits_base (MONAS-LQ), lower is better",
    "macs": "multiply-accumulates per sample",
    "params": "number of parameters",
    "memory_kb": "parameter memory in KiB at the quantized widths",
    "sparsity": "share of pruned (zero-width or zero) weights",
    "luts": "LUTs (hardware model)",
    "ffs": "flip-flops (hardware model)",
    "bram18": "18 Kb block RAMs (hardware model)",
    "uram": "UltraRAMs (hardware model)",
    "dsps": "DSP slices (hardware model)",
    "avg_resource": "SNAC-Pack's average resource utilization (seed 004, §3.1): the mean of the LUT, FF, BRAM18 "
                    "and DSP shares of the target device, in % (hardware model)",
    "latency_cycles": "first-sample latency in clock cycles (hardware model)",
    "latency_ms": "first-sample latency in ms at the clock",
    "initiation_interval": "cycles between samples",
    "throughput": "samples per second",
    "energy_mj": "energy per sample in mJ (power model × latency, an estimate)",
    "cpu_latency_ms": "CPU latency from the profiled operator table (hardware.cpu_table)",
}
"""Every metric a trial records, with its meaning; objectives and constraints must name one of them."""

CAPACITY_METRICS: tuple[str, ...] = ("luts", "ffs", "bram18", "uram", "dsps")
"""Metrics with a device capacity: the only ones a ``'50%'`` bound may be used on."""

HARDWARE_METRICS: frozenset[str] = frozenset(
    {*CAPACITY_METRICS, "avg_resource", "latency_cycles", "latency_ms", "initiation_interval", "throughput",
     "energy_mj"})
"""Metrics that only a hardware cost model measures (``hardware.model`` must not be ``none``)."""

_REPORTED_ONLY = frozenset({"test_accuracy"})
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHARE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*%\s*$")
_FILE_URL_RE = re.compile(r"^(sqlite|journal):///(.+)$")
_SERVER_URL_RE = re.compile(r"^(postgresql|mysql)(\+[A-Za-z0-9_]+)?://.+$")

# ----------------------------------------------------------------------------------------------- limits
# Sanity ceilings (docs/config.md, "Limits"): far above any real experiment, low enough that a typo (an extra
# zero run, 1e30) is an error naming the key instead of hours of work, a full disk or an exhausted memory.
MAX_FILE_BYTES = 1 << 20
"""Largest experiment file (1 MiB); a real one is a few KiB."""
MAX_YAML_NODES = 50_000
"""Most YAML nodes a document may have with its aliases expanded (a real experiment has a few hundred)."""
MAX_TRIALS = 100_000
"""Largest ``search.n_trials`` (and trial counts of strategy options): every budgeted trial is enqueued at once."""
MAX_EPOCHS = 10_000
"""Largest epoch count (``training.epochs``, schedules, local search, predictors)."""
MAX_BATCH_SIZE = 1 << 20
"""Largest ``training.batch_size`` (2^20 samples)."""
MAX_POPULATION = 10_000
"""Largest population or swarm of a strategy."""
MAX_CANDIDATES = 1_000_000
"""Largest number of predictor-scored candidates per round or generation."""
MAX_FOLDS = 100
"""Largest ``training.kfold`` (each trial trains once per fold)."""
MAX_RANGE_VALUES = 100_000
"""Most values one ``{min, max, step}`` range of the space may hold (each range is expanded to its values)."""
TASK_OPTION_LIMITS: dict[str, tuple[int, int]] = {
    "per_pair": (1, 100_000),  # AMC frames per (class, SNR) pair: the real RadioML sets have 1,000-6,000
    "n_shots": (1, 1_000_000),  # simulated qubit readout shots
    "workers": (1, 256),  # data generator processes
}
"""``(min, max)`` of the integer task options that size data or processes, by option name (any task)."""
SPACE_LIMITS: dict[str, int] = {"conv_blocks": 64, "dense_layers": 64, "filters": 65_536, "kernel": 1_024,
                                "dense_units": 65_536}
"""Largest value of each architecture size in ``space``."""


# ----------------------------------------------------------------------------------------------- errors
@dataclass(frozen=True)
class Problem:
    """One problem of an experiment file: where (file, line, key path) and what is wrong."""

    source: str
    line: int | None
    path: str
    message: str
    column: int | None = None

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        if self.column is not None:
            where += f":{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(HwnasError, ValueError):
    """An invalid experiment file; ``problems`` lists every problem, the message has one line per problem."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def _error(loc: tuple[str | int, ...], message: str, value: Any = None) -> InitErrorDetails:
    """One pydantic line error with a finished message (the loader passes ``config`` messages through)."""
    return InitErrorDetails(type=PydanticCustomError("config", "{msg}", {"msg": message}), loc=loc, input=value)


def _fail(title: str, errors: list[InitErrorDetails]) -> None:
    """Raise all ``errors`` at once (pydantic prefixes their locations with the enclosing model's)."""
    if errors:
        raise ValidationError.from_exception_data(title, errors)


def _custom(message: str) -> PydanticCustomError:
    return PydanticCustomError("config", "{msg}", {"msg": message})


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ----------------------------------------------------------------------------------------------- schema
class _Strict(BaseModel):
    """Base of every section: unknown keys are errors, values are never coerced across types, frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _check_metric(value: str) -> str:
    if value not in METRICS:
        close = difflib.get_close_matches(value, list(METRICS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _custom(f"unknown metric {value!r}{hint}; metrics are: {', '.join(METRICS)}")
    if value in _REPORTED_ONLY:
        raise _custom(f"{value!r} is measured on the test split and only reported: a search that selects on "
                      "it leaks the test set; use 'accuracy' (the validation split)")
    return value


_PLUGINS: contextvars.ContextVar[bool] = contextvars.ContextVar("hwnas_config_plugins", default=True)
"""Whether ``task.module`` and ``space.module`` may be imported (:func:`parse_experiment`'s ``plugins``)."""


def _import_plugin_module(title: str, data: Any, info: ValidationInfo, kind: Literal["task", "family"]) -> Any:
    """A ``mode="before"`` validator's body for ``task.module`` / ``space.module`` (``title``: the model's name).

    Imports ``data["module"]`` (only the one named there: :func:`hwnas.tasks.load_task_module` or
    :func:`hwnas.space.load_family_module`, which check the dotted name, from Python's path or the experiment's
    folder) before the task or family is checked against its registry; a problem is one error at ``module``.
    """
    module = data.get("module") if isinstance(data, dict) else None
    if not isinstance(module, str):
        return data  # absent, null, or a wrong type its field reports
    if not _PLUGINS.get():
        _fail(title, [_error(("module",), "modules of your own are not imported here (this reader imports no user "
                             f"code); use a built-in {kind}", module)])
    error: type[Exception]
    if kind == "task":
        from hwnas.tasks import TaskError, load_task_module

        load, error = load_task_module, TaskError
    else:
        from hwnas.space.family import FamilyError, load_family_module

        load, error = load_family_module, FamilyError
    try:
        load(module, (info.context or {}).get("base_dir"))
    except error as err:
        _fail(title, [_error(("module",), str(err), module)])
    return data


class TaskConfig(_Strict):
    """Which task (``hwnas tasks`` lists them) and its options."""

    name: str = Field(description="task name (hwnas tasks lists them), e.g. amc-rml2016, digits, qubit-readout")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="task options; hwnas tasks <name> lists them with their defaults")
    module: str | None = Field(None, description="a Python module of your own that registers the task (with "
                               "hwnas.tasks.register_task) when imported, e.g. my_pkg.my_task: a dotted name "
                               "importable from Python's path or the experiment file's folder, imported before the "
                               "task is looked up (docs/extending.md); null: a built-in task")

    @model_validator(mode="before")
    @classmethod
    def _import_module(cls, data: Any, info: ValidationInfo) -> Any:
        """Import ``module`` (only the one named here) before ``name`` is checked against the registry."""
        return _import_plugin_module("TaskConfig", data, info, "task")

    @field_validator("name")
    @classmethod
    def _known_task(cls, value: str) -> str:
        from hwnas.tasks import task_names

        names = task_names()
        if value not in names:
            close = difflib.get_close_matches(value, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _custom(f"unknown task {value!r}{hint}; tasks are: {', '.join(names)}")
        return value

    @model_validator(mode="after")
    def _known_options(self) -> TaskConfig:
        from hwnas.tasks import get_task

        defaults = get_task(self.name).defaults
        errors = []
        for key, value in self.options.items():
            if key not in defaults:
                close = difflib.get_close_matches(key, list(defaults), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                errors.append(_error(("options", key), f"task {self.name!r} has no option {key!r}{hint}; its "
                                     f"options are: {', '.join(defaults) or '(none)'}", value))
                continue
            wrong = _option_type_error(defaults[key], value) or _option_limit_error(key, value)
            if wrong:
                errors.append(_error(("options", key), wrong, value))
        _fail("TaskConfig", errors)
        return self


def _option_limit_error(name: str, value: Any) -> str | None:
    """A message when an integer task option ``name`` lies outside :data:`TASK_OPTION_LIMITS`, else None."""
    if name not in TASK_OPTION_LIMITS or isinstance(value, bool) or not isinstance(value, int):
        return None
    low, high = TASK_OPTION_LIMITS[name]
    if low <= value <= high:
        return None
    return f"must be in [{low:,}, {high:,}] (hwnas's limit for {name!r}), got {_show(value)}"


def _option_type_error(default: Any, value: Any) -> str | None:
    """A message when ``value`` cannot stand in for a task option whose default is ``default``, else None."""
    if default is None or value is None:
        return None
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, kind = isinstance(value, int | float) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, kind = isinstance(value, str), "a string"
    else:
        return None
    return None if ok else f"must be {kind} (default {default!r}), got {_show(value)}"


class Objective(_Strict):
    """One objective of the search (the study's directions follow the objectives' order)."""

    metric: str = Field(description="a metric name (see the metric list)")
    direction: Literal["minimize", "maximize"] = Field(description="minimize or maximize")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        return _check_metric(value)


def _bound(value: Any) -> float | str | None:
    """A constraint bound: a number, or a device share ``'N%'`` with 0 < N <= 100 (normalized to ``'N%'``)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise _custom(f"must be a number or a device share like '50%', got {value!r}")
    if isinstance(value, int | float):
        if (isinstance(value, int) and abs(value) > 1e300) or not math.isfinite(value):
            raise _custom(f"must be a finite number, got {_show(value)}")
        return float(value)
    if isinstance(value, str):
        m = _SHARE_RE.match(value)
        if not m:
            raise _custom(f"must be a number or a device share like '50%', got {value!r}")
        share = float(m.group(1))
        if not 0 < share <= 100:
            raise _custom(f"a device share must be in (0, 100] %, got {value!r}")
        return f"{share:g}%"
    raise _custom(f"must be a number or a device share like '50%', got {_show(value)}")


class Constraint(_Strict):
    """A hard budget ``min <= metric <= max``; a trial outside it is kept (COMPLETE) but infeasible."""

    metric: str = Field(description="a metric name (see the metric list)")
    max: float | str | None = Field(None, description="upper bound; a string like '50%' is that share of the "
                                    "target device's capacity (luts, ffs, bram18, uram, dsps only)")
    min: float | str | None = Field(None, description="lower bound (a number, or a device share like max)")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        return _check_metric(value)

    @field_validator("max", "min", mode="before")
    @classmethod
    def _parse_bound(cls, value: Any) -> float | str | None:
        return _bound(value)

    @model_validator(mode="after")
    def _consistent(self) -> Constraint:
        errors = []
        if self.max is None and self.min is None:
            errors.append(_error((), f"constraint on {self.metric!r} needs max, min or both"))
        for key in ("max", "min"):
            if isinstance(getattr(self, key), str) and self.metric not in CAPACITY_METRICS:
                errors.append(_error((key,), f"a device share ({getattr(self, key)}) needs a metric with a device "
                                     f"capacity ({', '.join(CAPACITY_METRICS)}); {self.metric!r} has none; give "
                                     "an absolute number", getattr(self, key)))
        if not errors and isinstance(self.min, float) == isinstance(self.max, float) and self.min is not None \
                and self.max is not None and _share_or_number(self.min) > _share_or_number(self.max):
            lo, hi = _bound_text(self.min), _bound_text(self.max)
            errors.append(_error(("min",), f"min ({lo}) is above max ({hi}): no trial can satisfy it", self.min))
        _fail("Constraint", errors)
        return self

    def absolute(self, device: Device | str) -> tuple[float | None, float | None]:
        """``(min, max)`` in the metric's units, device shares turned into counts of ``device``'s capacity."""
        from hwnas.cost.catalog import get_device

        dev = get_device(device)

        def resolve(bound: float | str | None) -> float | None:
            if not isinstance(bound, str):
                return bound
            return _share_or_number(bound) / 100.0 * dev.capacity(self.metric)

        return resolve(self.min), resolve(self.max)

    def value(self, measured: float, device: Device | str) -> float:
        """The normalized violation of ``measured`` (<= 0: satisfied); see the module docstring."""
        lo, hi = self.absolute(device)
        terms = []
        if hi is not None:
            terms.append((measured - hi) / abs(hi) if hi != 0 else measured - hi)
        if lo is not None:
            terms.append((lo - measured) / abs(lo) if lo != 0 else lo - measured)
        return max(terms)


def _bound_text(bound: float | str | None) -> str:
    return bound if isinstance(bound, str) else f"{bound:g}"


def _share_or_number(bound: float | str) -> float:
    return float(bound[:-1]) if isinstance(bound, str) else float(bound)


class HardwareConfig(_Strict):
    """The hardware target and the cost models that price each trial."""

    target: str = Field("XC7Z020", description="FPGA from the device catalog, by name or alias (case-insensitive), "
                        "e.g. XC7Z020 (PYNQ-Z1), ZCU104, VU13P")
    model: Literal["finn", "hls4ml", "alkaid", "surrogate", "none"] = Field(
        "finn", description="hardware cost model: finn (dataflow, PE/SIMD folding), hls4ml (reuse factor), alkaid "
        "(the RTL export's design traced by alkaid, calibrated on Yosys synthesis; pipelined at "
        "run.rtl.latency_cutoff_ns, else the clock period), surrogate (the same RTL design's LUTs, FFs and "
        "latency predicted by gradient-boosted trees trained on Yosys synthesis, from per-layer features, "
        "without alkaid; a 10-90 % interval, and a warning outside its training range) or none (no hardware "
        "metrics)")
    clock_mhz: float | None = Field(None, gt=0, le=10_000,
                                    description="clock in MHz (null: the device's default clock)")
    target_fps: float | None = Field(None, gt=0, le=1e12,
                                     description="throughput in samples/s the cost model's automatic "
                                     "folding must reach (null: the smallest design)")
    cpu_table: str | None = Field(None, description="CPU latency table (JSON from hwnas.cost.cpu_latency "
                                  "profiling) that prices cpu_latency_ms; relative to the experiment file's folder")
    cpu_profile: Literal["never", "default", "quick"] = Field(
        "never", description="when hardware.cpu_table does not exist yet: never (a config error; make it with "
        "hwnas profile-cpu), default or quick (profile that operator grid on this machine into it before the "
        "search: default 2-3 min on a quiet core, more on a busy one; quick a few seconds, for smoke runs)")
    cpu_precision: Literal["float", "deployed"] = Field(
        "float", description="what cpu_latency_ms prices: float (the float graph of the architecture, bit-widths "
        "ignored) or deployed (layers of <= 8-bit weights and inputs are priced with onnxruntime's int8 kernels, "
        "wider ones as float, with the float <-> int8 conversions between them; needs a table profiled with the "
        "int8 kinds)")

    @field_validator("target")
    @classmethod
    def _known_device(cls, value: str) -> str:
        from hwnas.cost.catalog import CostError, get_device

        try:
            get_device(value)
        except CostError as exc:
            raise _custom(str(exc).removeprefix("target: ")) from None
        return value

    def device(self) -> Device:
        """The target :class:`hwnas.cost.Device` from the catalog."""
        from hwnas.cost.catalog import get_device

        return get_device(self.target)

    def clock(self) -> float:
        """The clock in MHz: ``clock_mhz``, else the device's default."""
        return self.clock_mhz if self.clock_mhz is not None else self.device().clock_mhz


_DEVICE_SPEC = re.compile(r"auto|cpu|cuda(:(0|[1-9][0-9]{0,3}))?")
"""``training.device`` values (the same check as :func:`hwnas.train.device.check_device_spec`, without torch)."""


class TrainingConfig(_Strict):
    """The training schedule of every trial (fields of hwnas.train.TrainConfig; loss from the task)."""

    epochs: int = Field(5, ge=1, le=MAX_EPOCHS, description="epochs per trial")
    batch_size: int = Field(128, ge=1, le=MAX_BATCH_SIZE, description="samples per optimizer step")
    optimizer: Literal["adam", "sgd"] = Field("adam", description="optimizer: adam or sgd (with momentum)")
    lr: float = Field(3e-3, gt=0, description="learning rate of the weights")
    bits_lr: float | None = Field(None, gt=0, description="learning rate of learned bit-widths (precision mode "
                                  "learned; null: 10 × lr)")
    momentum: float = Field(0.9, ge=0, le=1, description="SGD momentum")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty on the weights (never on bit-widths)")
    l1: float = Field(0.0, ge=0, description="L1 penalty: l1 · Σ|w| over every weight matrix and kernel (not biases, "
                      "BatchNorm or bit-widths) is added to the loss (SNAC-Pack's L1 regularization); "
                      "space.training.l1 searches it")
    schedule: Literal["constant", "cosine_restarts"] = Field(
        "constant", description="learning-rate schedule: constant or cosine_restarts (SGDR)")
    restart_epochs: int = Field(10, ge=1, le=MAX_EPOCHS, description="first cosine period in epochs (cosine_restarts)")
    restart_mult: int = Field(1, ge=1, le=100, description="each cosine period is this many times the previous one")
    min_lr_ratio: float = Field(0.01, ge=0, le=1, description="cosine floor as a fraction of lr")
    patience: int | None = Field(None, ge=1, le=MAX_EPOCHS,
                                 description="stop after this many epochs without improvement of the "
                                 "validation metric (null: never)")
    min_delta: float = Field(0.0, ge=0, description="smallest change of the validation metric that counts as an "
                             "improvement")
    threads: int | None = Field(None, ge=1, le=1_024,
                                description="torch threads of a process while it trains (null: torch's "
                                "default, every core); several workers on one machine: cores / workers. Left out "
                                "of the study hash, so workers on machines of other sizes can join; float sums may "
                                "differ in the last bits between thread counts")
    kfold: int | None = Field(None, ge=2, le=MAX_FOLDS,
                              description="stratified k-fold per trial (SNAC-Pack): every trial trains k times, "
                              "on k stratified folds of the train and validation splits together; its accuracy is "
                              "the mean of the folds' task metrics on their held-out parts, accuracy_std their "
                              "standard deviation, and the model it keeps (test_accuracy, costs, checkpoint) is the "
                              "best fold's; every class needs at least k samples there (null: one training on the "
                              "train split, scored on the validation split)")
    device: str = Field("auto", description="where every training runs: auto (a CUDA GPU when torch sees one, else "
                        "the CPU), cpu, cuda (the current GPU: one worker per GPU with CUDA_VISIBLE_DEVICES) or "
                        "cuda:N; a GPU this machine does not have is an error when the run starts. Saved models, "
                        "checkpoints, costs and exports are CPU tensors whatever the device. Left out of the study "
                        "hash, so GPU and CPU workers can join one study; float sums differ in the last bits between "
                        "devices (fixed-point quantizers give the same codes)")

    @field_validator("device")
    @classmethod
    def _device_spec(cls, value: str) -> str:
        if not _DEVICE_SPEC.fullmatch(value):
            raise _custom(f"must be auto, cpu, cuda or cuda:N (N a GPU index), got {value!r}")
        return value

    def to_train_config(self, seed: int, progress: bool = True, *, loss: str = "ce", beta: float = 0.0,
                        gamma: float = 0.0, overrides: dict[str, float] | None = None) -> TrainConfig:
        """The :class:`hwnas.train.TrainConfig` of one trial (``seed``: the trial's training seed).

        ``overrides``: the trial's searched training settings (``space.training``: ``lr``, ``l1``), which replace
        this section's values.
        """
        from hwnas.train.trainer import TrainConfig

        fields = {**self.model_dump(exclude={"kfold"}), **(overrides or {})}
        return TrainConfig(**fields, loss=loss, beta=beta, gamma=gamma, seed=seed, progress=progress)


# ------------------------------------------------------------------------------------- strategy options
class StrategyOptions(_Strict):
    """Base of the per-strategy option sections (``search.options``)."""


class RandomOptions(StrategyOptions):
    """Random search: no options."""


class TpeOptions(StrategyOptions):
    """Tree-structured Parzen estimator (Optuna's TPE sampler)."""

    n_startup_trials: int = Field(10, ge=0, le=MAX_TRIALS, description="random trials before TPE models the results")
    multivariate: bool = Field(True, description="model the parameters jointly rather than one by one")


class Nsga2Options(StrategyOptions):
    """NSGA-II (Optuna's NSGA-II sampler, constraints through the trials' constraint values)."""

    population_size: int = Field(8, ge=2, le=MAX_POPULATION, description="individuals per generation")
    crossover_prob: float = Field(0.9, ge=0, le=1, description="probability that a child is made by crossover "
                                  "(otherwise it copies a parent)")
    mutation_prob: float | None = Field(None, ge=0, le=1, description="probability that a parameter mutates "
                                        "(null: 1 / number of parameters)")
    swapping_prob: float = Field(0.5, ge=0, le=1, description="probability that a parameter comes from the second "
                                 "parent in uniform crossover")


class PsoOptions(StrategyOptions):
    """Particle swarm optimization over the space's integer encoding."""

    swarm_size: int = Field(8, ge=2, le=MAX_POPULATION,
                            description="particles; each generation trains one trial per particle")
    generations: int | None = Field(None, ge=1, le=MAX_TRIALS,
                                    description="generations (null: until search.n_trials; the search "
                                    "stops at whichever comes first)")
    inertia: float = Field(0.7, ge=0, le=1, description="inertia weight w of the velocity update")
    c1: float = Field(1.5, ge=0, description="cognitive coefficient (pull towards the particle's own best)")
    c2: float = Field(1.5, ge=0, description="social coefficient (pull towards the swarm's best)")
    velocity_clamp: float = Field(0.25, gt=0, le=1, description="largest velocity per dimension as a fraction of "
                                  "that dimension's range")
    mutation: float = Field(0.05, ge=0, le=1, description="probability per particle and dimension that a move "
                            "resets the coordinate at random (counters integer stagnation)")
    hpo_tolerance: float = Field(0.02, ge=0, description="stage 1: of the backbones whose accuracy is within "
                                 "this of the best, the one with the most MACs is kept (0: the most accurate)")
    score_weight: float = Field(0.5, ge=0, le=1, description="w of the composite score w*(1 - accuracy) + "
                                "(1 - w)*qa_score the swarm minimizes when there are several objectives")


class MonasLqOptions(StrategyOptions):
    """MONAS-LQ: stage-1 HPO, then predictor-guided rounds on the fixed-length integer encoding."""

    hpo_trials: int = Field(4, ge=0, le=MAX_TRIALS,
                            description="stage 1: trials of the 8-bit backbone, one per filter count "
                            "(cycling through space.filters); the most accurate fixes the filter count the later "
                            "stages keep (0 or a space without filters: skip stage 1); they count towards "
                            "search.n_trials")
    hpo_tolerance: float = Field(0.02, ge=0, description="stage 1: of the backbones whose accuracy is within "
                                 "this of the best, the one with the most MACs is kept (0: the most accurate)")
    hpo_keep: Literal["widest", "close"] = Field(
        "widest", description="what stage 1 keeps of the filter counts within hpo_tolerance of the best backbone: "
        "widest (the one with the most MACs, fixed for every later trial, as in the paper) or close (every filter "
        "choice from the lowest to the highest of them stays a search value: a front that spans a wide cost "
        "range keeps the narrow backbones for its cheap end)")
    score_weight: float = Field(0.5, ge=0, le=1, description="w of the composite score w*(1 - accuracy) + "
                                "(1 - w)*qa_score (lower is better) the swarm minimizes")
    swarm_size: int = Field(20, ge=2, le=MAX_POPULATION,
                            description="particles of the stage-4 swarm that explores on the predictor")
    bootstrap_size: int = Field(16, ge=1, le=MAX_TRIALS,
                                description="random architectures trained fully to fit the first "
                                "predictor (count towards search.n_trials)")
    bootstrap_design: Literal["random", "stratified", "factorial"] = Field(
        "stratified", description="how the bootstrap vectors are drawn: random (independently), stratified (a "
        "Latin hypercube over the vector: every value range of every slot, e.g. every depth, is covered in equal "
        "shares, so the first predictor never extrapolates to a depth it has not seen) or factorial (stratified, "
        "and the depth slots - conv blocks, dense layers - crossed: every combination of depths equally often "
        "when there are no more combinations than bootstrap trials)")
    bootstrap_bits: Literal["full", "upper"] = Field(
        "full", description="the bit-width range a stratified or factorial bootstrap spreads over: full (every "
        "slot's whole range) or upper (the upper half of each range: the bootstrap measures the architectures "
        "near full precision and the rounds trade bits away from there)")
    predictor_epochs: int = Field(300, ge=1, le=100_000,
                                  description="training epochs of the multi-output predictor per round")
    predictor_hidden: list[Annotated[int, Field(ge=1, le=65_536)]] = Field(
        default_factory=lambda: [64, 64], min_length=1, max_length=16,
        description="hidden-layer widths of the predictor (each at most 65,536)")
    predictor_lr: float = Field(1e-3, gt=0, description="learning rate of the predictor")
    predictor_ensemble: int = Field(1, ge=1, le=100, description="members of the predictor ensemble (each from its own "
                                    "seed); their mean is the prediction, their spread its uncertainty")
    accuracy_model: Literal["molp", "gp"] = Field(
        "gp", description="what predicts the accuracy a round chooses its trainings by: molp (the multi-output "
        "predictor's accuracy head) or gp (a Gaussian process on the trained points, which reverts to their "
        "mean away from them; the MOLP still steers the swarm)")
    accuracy_lcb: float = Field(1.0, ge=0, description="a round chooses its trainings by predicted accuracy "
                                "minus this many standard deviations (of the ensemble, or of the GP; a lower "
                                "confidence bound; 0: the mean)")
    accuracy_acquisition: Literal["bound", "thompson", "ehvi"] = Field(
        "bound", description="how a round turns the gp accuracy model into choices: bound (every candidate at "
        "its mean - accuracy_lcb std; exploits what was trained), thompson (each training of the round chosen "
        "on its own joint draw from the gp posterior) or ehvi (expected hypervolume improvement under the gp's "
        "normal prediction, in closed form: an uncertain candidate counts for what it may add above the front; "
        "needs two objectives, the accuracy and one priced cost); thompson and ehvi need accuracy_model gp")
    accuracy_trend: Literal["none", "log_bops"] = Field(
        "none", description="mean of the gp accuracy model: none (the trained mean) or log_bops (a line in log2 "
        "BOPs fitted on the trained points, slope at least 0: away from the data a cheap candidate reverts to "
        "the accuracy typical of its cost)")
    accuracy_features: Literal["vector", "summary"] = Field(
        "summary", description="inputs of the gp accuracy model: vector (the integer vector) or summary (depth, "
        "widths and the active layers' bit-width minimum/mean/first/last, read from the decoded point: inactive "
        "slots drop out instead of looking like 2-bit layers)")
    front_neighbours: int = Field(0, ge=0, le=MAX_CANDIDATES,
                                  description="untrained vectors one move from the trained Pareto front "
                                  "(bit-widths one or two lower, one slot one step) added to each round's shortlist "
                                  "and priced exactly, cheapest moves first (0: the swarm's candidates only)")
    candidates_per_round: int = Field(1000, ge=1, le=MAX_CANDIDATES,
                                      description="candidates the swarm scores on the predictor per "
                                      "round (swarm_size particles over as many generations as it takes)")
    train_fraction: float = Field(0.01, gt=0, le=1, description="fraction of each round's candidates, best "
                                  "predicted first, that are trained fully")
    patience: int = Field(3, ge=1, le=MAX_EPOCHS, description="stop after this many rounds without a new Pareto point")

    @model_validator(mode="after")
    def _trains_some(self) -> MonasLqOptions:
        if self.accuracy_acquisition != "bound" and self.accuracy_model != "gp":
            _fail("MonasLqOptions", [_error(("accuracy_acquisition",), f"{self.accuracy_acquisition} needs the gp "
                                            f"accuracy model: set accuracy_model: gp (got {self.accuracy_model!r})",
                                            self.accuracy_acquisition)])
        if self.candidates_per_round * self.train_fraction < 1:
            _fail("MonasLqOptions", [_error(("train_fraction",), f"{self.train_fraction} of "
                                            f"{self.candidates_per_round} candidates_per_round trains no candidate "
                                            "per round (need at least 1)", self.train_fraction)])
        return self


class HaNasOptions(StrategyOptions):
    """HA-NAS: evolutionary search whose candidates an accuracy predictor screens before training."""

    warmup_trials: int = Field(10, ge=1, le=MAX_TRIALS,
                               description="random trials trained to warm up the predictor (count "
                               "towards search.n_trials)")
    candidates_per_generation: int = Field(200, ge=1, le=MAX_CANDIDATES,
                                           description="mutated and crossed-over candidates the "
                                           "predictor screens per generation")
    population_size: int = Field(8, ge=2, le=MAX_POPULATION,
                                 description="candidates trained per generation (the best predicted)")
    predictor_epochs: int = Field(200, ge=1, le=100_000, description="training epochs of the predictor per generation")

    @model_validator(mode="after")
    def _screens_enough(self) -> HaNasOptions:
        if self.population_size > self.candidates_per_generation:
            _fail("HaNasOptions", [_error(("population_size",), f"population_size ({self.population_size}) is "
                                          f"above candidates_per_generation ({self.candidates_per_generation})",
                                          self.population_size)])
        return self


class SupernetOptions(StrategyOptions):
    """One-shot search: train a weight-sharing supernet once, rank sub-nets on it, NSGA-II on a predictor."""

    epochs: int = Field(10, ge=1, le=MAX_EPOCHS, description="supernet training epochs (training.lr, batch_size, "
                        "optimizer and weight_decay apply; training.epochs does not)")
    warmup_epochs: int = Field(1, ge=0, le=MAX_EPOCHS, description="first epochs that train the largest sub-net "
                               "alone, before the sandwich rule")
    random_subnets: int = Field(2, ge=0, le=64, description="random sub-nets per batch besides the largest and the "
                                "smallest (the sandwich rule)")
    distill: bool = Field(True, description="the smaller sub-nets learn the largest one's soft predictions "
                          "(in-place distillation); false: the labels")
    kernel_transform: bool = Field(True, description="learn Once-for-All's kernel transformation per slot and "
                                   "kernel size (false: plain centre slices of the largest kernel)")
    sort_channels: bool = Field(True, description="after the warm-up, order every layer's channels by importance "
                                "(L1 norm) so narrow sub-nets keep the most important ones")
    calibration_batches: int = Field(4, ge=1, le=10_000, description="training batches a sub-net's BatchNorm "
                                     "statistics and activation ranges are measured on before it is evaluated")
    subnets: int = Field(1000, ge=2, le=MAX_CANDIDATES, description="random sub-nets evaluated on the validation "
                         "split with the shared weights (the predictor's training data)")
    eval_samples: int | None = Field(None, ge=1, description="validation samples each sub-net is evaluated on "
                                     "(null: the whole validation split)")
    predictor_epochs: int = Field(300, ge=1, le=100_000, description="training epochs of the accuracy predictor")
    predictor_hidden: list[Annotated[int, Field(ge=1, le=65_536)]] = Field(
        default_factory=lambda: [64, 64], min_length=1, max_length=16,
        description="hidden-layer widths of the accuracy predictor")
    population_size: int = Field(64, ge=2, le=MAX_POPULATION, description="NSGA-II population on the predictor")
    generations: int = Field(40, ge=1, le=MAX_EPOCHS, description="NSGA-II generations on the predictor (each "
                             "candidate priced exactly by the cost models)")
    finetune_epochs: int = Field(0, ge=0, le=MAX_EPOCHS, description="epochs each extracted front sub-net is "
                                 "fine-tuned before it is measured (0: the shared weights as they are)")


STRATEGY_OPTIONS: dict[str, type[StrategyOptions]] = {
    "nsga2": Nsga2Options, "random": RandomOptions, "tpe": TpeOptions, "pso": PsoOptions,
    "monas_lq": MonasLqOptions, "ha_nas": HaNasOptions, "supernet": SupernetOptions}
"""The options section of each search strategy."""

Strategy = Literal["nsga2", "random", "tpe", "pso", "monas_lq", "ha_nas", "supernet"]


class SearchConfig(_Strict):
    """The search strategy, its options and the trial budget."""

    strategy: Strategy = Field("nsga2", description="search strategy: nsga2, random, tpe, pso, monas_lq, ha_nas or "
                               "supernet")
    n_trials: int = Field(20, ge=1, le=MAX_TRIALS,
                          description="trials (full trainings) across all workers, counted on the "
                          "study; hwnas search --n-trials N raises an existing study's budget")
    warm_start: Literal["none", "closest"] = Field(
        "none", description="none: every trial trains from scratch; closest: a trial starts from the weights of "
        "the finished trial with the same tensor shapes closest to it in the search vector (mostly bit-widths; "
        "ties: the more accurate), its ranges re-calibrated for its own bits, then trains the full schedule "
        "(Lamarckian inheritance: a lineage accumulates epochs). With several workers the parent depends on "
        "which trials have finished")
    options: SerializeAsAny[StrategyOptions] = Field(
        default_factory=dict, validate_default=True,  # type: ignore[arg-type]
        description="options of the chosen strategy (see the strategy's table); unknown ones are errors")

    @field_validator("options", mode="before")
    @classmethod
    def _typed_options(cls, value: Any, info: ValidationInfo) -> StrategyOptions:
        strategy = info.data.get("strategy")
        if strategy is None:  # the strategy itself is invalid (reported); its options cannot be checked
            return StrategyOptions()
        target = STRATEGY_OPTIONS[strategy]
        if isinstance(value, target):
            return value
        if isinstance(value, BaseModel):
            value = value.model_dump()
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise _custom(f"must be a mapping of {strategy} options, got {_show(value)}")
        names = list(target.model_fields)
        errors = []
        for key in value:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                errors.append(_error((key,), f"strategy {strategy!r} has no option {key!r}{hint}; its options are: "
                                     f"{', '.join(names) or '(none)'}", value[key]))
        try:
            options = target.model_validate({k: v for k, v in value.items() if k in names})
        except ValidationError as exc:
            errors += [_error(tuple(e["loc"]), _message(e)[1], e.get("input")) for e in exc.errors()]
        _fail("SearchConfig", errors)
        return options

    @model_validator(mode="after")
    def _budget(self) -> SearchConfig:
        opts = self.options
        errors = []
        if isinstance(opts, MonasLqOptions) and opts.hpo_trials + opts.bootstrap_size >= self.n_trials:
            errors.append(_error(("options", "bootstrap_size"), f"hpo_trials + bootstrap_size "
                                 f"({opts.hpo_trials + opts.bootstrap_size}) leave none of the n_trials "
                                 f"({self.n_trials}) for predictor-guided rounds", opts.bootstrap_size))
        if isinstance(opts, HaNasOptions) and opts.warmup_trials >= self.n_trials:
            errors.append(_error(("options", "warmup_trials"), f"warmup_trials ({opts.warmup_trials}) leave none of "
                                 f"the n_trials ({self.n_trials}) for the evolution", opts.warmup_trials))
        _fail("SearchConfig", errors)
        return self


class StorageConfig(_Strict):
    """Where the study lives, so that many workers share it and an interrupted run resumes."""

    url: str | None = Field(None, description="sqlite:///file.db, journal:///file.log (relative to the experiment "
                            "file's folder; four slashes for an absolute path), postgresql://user@host/db or "
                            "mysql://user@host/db (null: sqlite file study.db in the output folder)")
    study_name: str | None = Field(None, description="study name in the storage (null: the experiment name)")
    heartbeat_s: float = Field(60.0, gt=0, le=86_400, description="seconds between a running trial's heartbeats")
    grace_s: float | None = Field(None, gt=0, le=7 * 86_400,
                                  description="a running trial silent this long becomes FAILED (its "
                                  "worker died); null: 2 × heartbeat_s")
    retry_failed: int = Field(0, ge=0, le=100,
                              description="re-run a FAILED trial (error, divergence, dead worker) up to "
                              "this many times with the same parameters")

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None or _FILE_URL_RE.match(value) or _SERVER_URL_RE.match(value):
            return value
        raise _custom(f"unsupported storage URL {value!r}; expected sqlite:///file.db, journal:///file.log, "
                      "postgresql://... or mysql://...")

    @model_validator(mode="after")
    def _grace_after_heartbeat(self) -> StorageConfig:
        if self.grace_s is not None and self.grace_s <= self.heartbeat_s:
            _fail("StorageConfig", [_error(("grace_s",), f"grace_s ({self.grace_s}) must exceed heartbeat_s "
                                           f"({self.heartbeat_s}), or every running trial looks dead", self.grace_s)])
        return self

    def resolved_url(self, base_dir: Path, output_dir: Path) -> str:
        """The URL with a relative ``sqlite``/``journal`` file made absolute against ``base_dir``."""
        if self.url is None:
            return f"sqlite:///{(output_dir / 'study.db').resolve()}"
        m = _FILE_URL_RE.match(self.url)
        if not m or m.group(2) == ":memory:":
            return self.url
        return f"{m.group(1)}:///{(base_dir / m.group(2)).resolve()}"


_PTQ_SCHEME = re.compile(r"^(int([1-9]|1[0-6])-(tensor|channel)|fp16)$")


class LocalConfig(_Strict):
    """Local search on each selected model: precision pairs + pruning, an HGQ β-sweep, or a PTQ study."""

    enabled: bool = Field(False, description="run the local search stage (off: verify the searched models as they are)")
    method: Literal["precision_pairs", "beta_sweep", "ptq"] = Field(
        "precision_pairs", description="precision_pairs: fixed-point QAT per pair + iterative magnitude pruning; "
        "beta_sweep: one HGQ training with β growing from beta0 to beta1, keeping the (metric, EBOPs) front "
        "(a fixed-precision model is first converted to learnable per-parameter bit-widths at its searched bits "
        "with hwnas.nn.to_learnable); ptq: post-training quantization of the trained model per "
        "ptq_schemes, with the per-layer sensitivity and model-size tables")
    beta0: float = Field(1e-7, gt=0, description="beta_sweep: β of the first epoch")
    beta1: float = Field(1e-4, gt=0, description="beta_sweep: β of the last epoch (exponential ramp)")
    sweep_epochs: int = Field(20, ge=2, le=MAX_EPOCHS, description="beta_sweep: training epochs of the sweep")
    ptq_schemes: list[str] = Field(
        default_factory=lambda: ["int8-channel", "int8-tensor", "int4-channel", "int4-tensor", "fp16"], min_length=1,
        max_length=64,
        description="ptq: weight formats tried, int<bits>-tensor, int<bits>-channel (symmetric scaled integers, "
                    "one scale per tensor or output channel) or fp16; biases stay float32")
    ptq_activation_bits: int | None = Field(None, ge=2, le=16, description="ptq: also quantize every layer input "
                                            "and the last layer's output (integer logits) to this many bits "
                                            "(per-tensor scales, percentile calibration on the training split); "
                                            "null: layer inputs keep the trained model's quantizers")
    sensitivity_bits: int = Field(4, ge=1, le=16, description="ptq: bits of the one-layer-at-a-time sensitivity "
                                  "table (per-tensor)")
    precisions: list[Annotated[list[Annotated[int, Field(ge=1, le=32)]], Field(min_length=2, max_length=2)]] = Field(
        default_factory=lambda: [[8, 3], [6, 2]], min_length=1, max_length=64,
        description="[total, integer] bits of the ap_fixed<total, integer> pairs tried on weights, biases and "
                    "layer inputs")
    warmup_epochs: int = Field(3, ge=1, le=MAX_EPOCHS, description="QAT epochs before pruning, per precision")
    iterations: int = Field(3, ge=1, le=1_000,
                            description="pruning iterations (each removes prune_rate of what is left, "
                            "trains, rewinds)")
    prune_rate: float = Field(0.2, gt=0, lt=1, description="share of the remaining weights pruned per iteration")
    epochs_per_iteration: int = Field(2, ge=1, le=MAX_EPOCHS, description="training epochs after each pruning step")
    max_drop: float = Field(0.01, ge=0, description="the cheapest result (precision_pairs: effective BOPs; "
                            "beta_sweep: EBOPs; ptq: stored bits) whose validation metric is at most this below "
                            "the searched model's is kept; none: the most accurate")

    @field_validator("ptq_schemes")
    @classmethod
    def _schemes(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not _PTQ_SCHEME.match(v)]
        if bad:
            raise _custom(f"unknown PTQ scheme(s) {bad}: use int<1-16>-tensor, int<1-16>-channel or fp16")
        return value


class Hls4mlExportConfig(_Strict):
    """Settings of the hls4ml projects the export stage writes (and the verify stage compiles)."""

    backend: Literal["Vitis", "Vivado"] = Field("Vitis", description="hls4ml backend of the project")
    reuse_factor: int = Field(1, ge=1, le=MAX_BATCH_SIZE,
                              description="reuse factor of every Dense/Conv layer (each layer takes the "
                              "largest divisor of its multiplications not above it)")
    strategy: Literal["Latency", "Resource"] = Field("Latency", description="hls4ml strategy of every Dense/Conv layer")
    part: str | None = Field(None, description="FPGA part of the project (null: the hardware target's part)")
    clock_period_ns: float | None = Field(None, gt=0, description="target clock period in ns (null: the hardware "
                                          "clock's period)")


class RtlExportConfig(_Strict):
    """Settings of the RTL projects (alkaid) the export, verify and synth stages write."""

    flavor: Literal["verilog", "vhdl"] = Field("verilog", description="HDL of the RTL project")
    latency_cutoff_ns: float = Field(-1, description="pipeline the design into stages of at most this delay in ns "
                                     "(alkaid's estimate); -1: combinational")
    optimize: Literal["full", "fast"] = Field("full", description="full: alkaid searches shared sub-expressions of "
                                              "the constant multiplications (fewest adders; hours beyond ~20k MACs); "
                                              "fast: each constant multiplication its own shift-add tree (seconds, "
                                              "more adders)")


@dataclass(frozen=True)
class _ExportPathNames:
    """Metadata of :data:`_ExportPathName`: the allowed values are the registry's artefact paths, read when used."""

    def names(self) -> tuple[str, ...]:
        from hwnas.export import paths

        return paths.names(exporters_only=True)

    def defaults(self) -> list[str]:
        from hwnas.export import paths

        return list(paths.names(exporters_only=True, default_only=True))


_EXPORT_PATHS = _ExportPathNames()


def _check_export_path(value: Any) -> Any:
    allowed = _EXPORT_PATHS.names()
    if not isinstance(value, str) or value not in allowed:
        shown = [repr(n) for n in allowed]
        options = ", ".join(shown[:-1]) + f" or {shown[-1]}" if len(shown) > 1 else "".join(shown)
        raise _custom(f"must be {options}, got {_show(value)}")
    return value


_ExportPathName = Annotated[str, _EXPORT_PATHS, BeforeValidator(_check_export_path)]
"""A path of :mod:`hwnas.export.paths` that writes an artefact (``qonnx``, ``hls4ml``, ``rtl`` and any registered
later); a bad one is reported like a bad ``Literal`` value, listing the allowed names."""


class RunConfig(_Strict):
    """What ``hwnas run`` does after the search: which models it selects and how it verifies them."""

    select: list[Literal["knee", "best", "cheapest"]] = Field(
        default_factory=lambda: ["knee", "best"], min_length=1,
        description="selection rules over the feasible trials: knee (the front's knee point), best (best on the "
                    "first objective), cheapest (best on the last objective, with accuracy_floor when set)")
    accuracy_floor: float | None = Field(None, description="cheapest: only trials whose first objective is at "
                                         "least this (null: the whole front)")
    local: LocalConfig = Field(default_factory=LocalConfig, description="local search on the selected models")
    export: list[_ExportPathName] = Field(
        default_factory=_EXPORT_PATHS.defaults,
        description="artefacts written for every selected model into export/trial_<n>/ (model.qonnx.onnx, "
                    "hls4ml/, rtl/); a path that cannot express the model is recorded as skipped with the reason")
    hls4ml: Hls4mlExportConfig = Field(default_factory=Hls4mlExportConfig, description="hls4ml project settings")
    rtl: RtlExportConfig = Field(default_factory=RtlExportConfig, description="RTL project settings")
    verify: list[_ExportPathName] = Field(
        default_factory=_EXPORT_PATHS.defaults,
        description="export paths executed and compared with torch for every selected model (a path whose tool "
                    "is absent, or that cannot express the model, is reported as skipped)")
    verify_samples: int = Field(200, ge=1, le=1_000_000, description="test samples each verification path runs")
    baselines: list[str] = Field(
        default_factory=list, max_length=16,
        description="reference models trained on the task's data with this training schedule and priced like the "
                    "trials (the baselines stage; names from hwnas.tasks.baselines.NAMED, e.g. vgg10-32f-8b, "
                    "qcnn-32f); the report puts them beside the selected models")
    synth_max_macs: int | None = Field(
        20_000, ge=1, description="the synth stage and the baselines stage skip a model whose nonzero MACs (MACs × "
        "(1 − weight sparsity)) exceed this, saying why: its fully unrolled RTL trace and Yosys run take hours on a "
        "2-core machine (null: no limit)")
    synth: Literal["auto", "on", "off"] = Field(
        "auto", description="synthesize every selected model's RTL with Yosys (nextpnr on ECP5) for the target: "
                            "auto (when Yosys is installed; hwnas run then says up front, before its first stage, "
                            "that synthesis takes minutes and that off skips it), on (an error without it), off "
                            "(YAML's bare on/off, true/false mean the same)")

    @field_validator("baselines")
    @classmethod
    def _known_baselines(cls, value: list[str]) -> list[str]:
        from hwnas.tasks.baselines import NAMED

        unknown = [v for v in value if v not in NAMED]
        if unknown:
            raise _custom(f"unknown baseline {unknown[0]!r}; known: {', '.join(sorted(NAMED))}")
        if len(set(value)) != len(value):
            raise _custom("names a baseline twice")
        return value

    @field_validator("synth", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: Any) -> Any:
        if isinstance(value, bool):  # YAML 1.1 reads a bare on/off as a boolean
            return "on" if value else "off"
        return value


class Experiment(_Strict):
    """One experiment file: the task, the space, what to optimize and within which budgets, and how."""

    name: str = Field(description="experiment name (letters, digits, . _ -): the default study name and output "
                      "folder runs/<name>")
    description: str = Field("", description="free text, kept with the results")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="seed of everything random: worker w samples with seed "
                      "+ 1000·w, trial n trains with seed + n")
    output: str | None = Field(None, description="output folder, relative to the experiment file's folder "
                               "(null: runs/<name>)")
    task: TaskConfig = Field(description="the task and its options")
    space: SpaceConfig = Field(default_factory=SpaceConfig, description="the search space")
    objectives: list[Objective] = Field(min_length=1, max_length=len(METRICS),
                                        description="what the search optimizes, in order")
    constraints: list[Constraint] = Field(default_factory=list, max_length=256,
                                          description="hard budgets; a trial outside is "
                                          "kept but never selected")
    hardware: HardwareConfig = Field(default_factory=HardwareConfig, description="hardware target and cost models")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="training of each trial")
    search: SearchConfig = Field(default_factory=SearchConfig, description="strategy and trial budget")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="study storage shared by workers")
    run: RunConfig = Field(default_factory=RunConfig, description="selection and verification after the search "
                           "(hwnas run)")

    _base_dir: Path | None = PrivateAttr(None)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if len(value) > 128:
            raise _custom(f"has {len(value)} characters; at most 128 (it names the output folder)")
        if not _NAME_RE.match(value):
            raise _custom(f"{value!r} must start with a letter or digit and use only letters, digits, '.', '_', '-' "
                          "(it names the output folder)")
        return value

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> Experiment:
        base = (info.context or {}).get("base_dir")
        if base is not None:
            self._base_dir = Path(base)
        _fail("Experiment", [_error(loc, msg, value) for loc, msg, value in _cross_problems(
            list(enumerate(self.objectives)), list(enumerate(self.constraints)), self.hardware, self.space,
            self.base_dir) + _task_option_problems(self.task, self.space) + _space_limit_problems(self.space)
            + _training_problems(list(enumerate(self.objectives)), list(enumerate(self.constraints)), self.space,
                                 self.training, self.search) + _family_problems(self.space, self.search)])
        return self

    def __eq__(self, other: object) -> bool:
        """Same settings (the folder the file was read from does not count)."""
        if not isinstance(other, Experiment):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]

    # ---------------------------------------------------------------------------------------- paths
    @property
    def base_dir(self) -> Path:
        """The folder relative paths are resolved against: the experiment file's (else the current) folder."""
        return self._base_dir if self._base_dir is not None else Path.cwd()

    def _resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def output_dir(self) -> Path:
        """The output folder (``output``, default ``runs/<name>``), relative ones against :attr:`base_dir`."""
        return self._resolve(self.output if self.output is not None else f"runs/{self.name}")

    def cpu_table_path(self) -> Path | None:
        """The CPU latency table file, or None."""
        return None if self.hardware.cpu_table is None else self._resolve(self.hardware.cpu_table)

    def storage_url(self) -> str:
        """The storage URL with relative files resolved (default: ``sqlite:///<output>/study.db``)."""
        return self.storage.resolved_url(self.base_dir, self.output_dir())

    def study_name(self) -> str:
        """The study name: ``storage.study_name``, else the experiment name."""
        return self.storage.study_name or self.name

    # ------------------------------------------------------------------------------------- helpers
    @property
    def directions(self) -> list[str]:
        """The objectives' directions, in order (what ``optuna.create_study(directions=...)`` takes)."""
        return [o.direction for o in self.objectives]

    def device(self) -> Device:
        """The hardware target from the catalog."""
        return self.hardware.device()

    def sampler_seed(self, worker: int) -> int:
        """Seed of worker ``worker``'s sampler: ``seed + 1000·worker``."""
        return self.seed + 1000 * worker

    def trial_seed(self, number: int) -> int:
        """Training seed of trial ``number``: ``seed + number``."""
        return self.seed + number

    def train_config(self, seed: int, progress: bool = True, overrides: dict[str, float] | None = None
                     ) -> TrainConfig:
        """The trainer settings of one trial: ``training``, the task's loss, HGQ β/γ from ``space.precision``.

        ``overrides``: the trial's searched training settings (its point's ``training``: ``lr``, ``l1``).
        """
        from hwnas.tasks import get_task

        prec = self.space.precision
        learned = prec.mode == "learned"
        return self.training.to_train_config(seed, progress, loss=get_task(self.task.name).loss,
                                             beta=prec.beta if learned else 0.0,
                                             gamma=prec.gamma if learned else 0.0, overrides=overrides)

    def constraint_values(self, metrics: dict[str, float], device: Device | str | None = None) -> list[float]:
        """One normalized violation per constraint, <= 0 when satisfied (see the module docstring).

        A constraint whose metric is missing from ``metrics`` or NaN is an error naming it.
        """
        dev = device if device is not None else self.device()
        out = []
        for i, con in enumerate(self.constraints):
            if con.metric not in metrics:
                raise ValueError(f"constraints[{i}]: metric {con.metric!r} is missing from the trial's metrics "
                                 f"({', '.join(sorted(metrics))})")
            value = float(metrics[con.metric])
            if math.isnan(value):
                raise ValueError(f"constraints[{i}]: metric {con.metric!r} is NaN")
            out.append(con.value(value, dev))
        return out

    def with_n_trials(self, n_trials: Any, source: str = "--n-trials") -> Experiment:
        """A copy whose ``search.n_trials`` is ``n_trials``, checked like the file's (range, strategy budgets).

        Raises :class:`ConfigError` naming ``source`` (the command-line flag) and ``search.n_trials``.
        """
        data = {**self.search.model_dump(), "n_trials": n_trials}
        try:
            search = SearchConfig.model_validate(data, strict=True)
        except ValidationError as exc:
            raise ConfigError([Problem(source, None, _path_text(("search", *err["loc"])), _message(err)[1])
                               for err in exc.errors(include_url=False)]) from None
        return self.model_copy(update={"search": search})

    def to_yaml(self, comments: bool = False) -> str:
        """The experiment as YAML (every key written); ``comments`` adds each key's description."""
        if comments:
            return _emit_commented(self)
        return yaml.dump(self.model_dump(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


# ----------------------------------------------------------------------------------------- cross-checks
_Loc = tuple[str | int, ...]


def _cross_problems(objectives: list[tuple[int, Objective]], constraints: list[tuple[int, Constraint]],
                    hardware: HardwareConfig | None, space: SpaceConfig | None, base_dir: Path
                    ) -> list[tuple[_Loc, str, Any]]:
    """Problems between sections, as ``(loc, message, value)``; pieces that are invalid themselves are left out.

    ``objectives``/``constraints`` are ``(index, item)`` pairs of the items that validated; ``hardware`` and
    ``space`` are None when their section is invalid.
    """
    out: list[tuple[_Loc, str, Any]] = []
    first: dict[str, int] = {}
    for i, obj in objectives:
        if obj.metric in first:
            out.append((("objectives", i, "metric"), f"{obj.metric!r} is already objectives[{first[obj.metric]}]",
                        obj.metric))
        first.setdefault(obj.metric, i)
    if hardware is None:
        return out
    uses: list[tuple[_Loc, str]] = [(("objectives", i, "metric"), o.metric) for i, o in objectives]
    uses += [(("constraints", i, "metric"), c.metric) for i, c in constraints]
    for loc, metric in uses:
        if metric == "cpu_latency_ms" and hardware.cpu_table is None:
            out.append((loc, "cpu_latency_ms needs hardware.cpu_table (a profiled CPU latency table)", metric))
        if metric in HARDWARE_METRICS and hardware.model == "none":
            out.append((loc, f"{metric!r} is measured by a hardware cost model, but hardware.model is none", metric))
    device = hardware.device()
    for i, con in constraints:
        shares = [k for k in ("max", "min") if isinstance(getattr(con, k), str)]
        if shares and device.capacity(con.metric) == 0:
            out.append((("constraints", i, shares[0]), f"{device.name} has no {con.metric}: a share of its "
                        "capacity is meaningless", getattr(con, shares[0])))
            continue
        lo, hi = con.absolute(device)
        if lo is not None and hi is not None and lo > hi:
            out.append((("constraints", i, "min"), f"min ({_bound_text(con.min)} = {lo:g}) is above max "
                        f"({_bound_text(con.max)} = {hi:g}) on {device.name}: no trial can satisfy it", con.min))
    if hardware.cpu_table is not None:
        table = Path(hardware.cpu_table).expanduser()
        table = table if table.is_absolute() else base_dir / table
        if table.exists() and not table.is_file():
            out.append((("hardware", "cpu_table"), f"{table} is not a file", hardware.cpu_table))
        elif not table.exists() and hardware.cpu_profile == "never":
            out.append((("hardware", "cpu_table"), f"no such file: {table} (profile it with `hwnas profile-cpu "
                        f"{table}`, or set hardware.cpu_profile: default to profile it before the search)",
                        hardware.cpu_table))
    elif hardware.cpu_profile != "never":
        out.append((("hardware", "cpu_profile"), f"{hardware.cpu_profile!r} needs hardware.cpu_table (the file to "
                    "profile into)", hardware.cpu_profile))
    if space is not None:
        mapping = space.mapping
        if mapping.kind != "none" and mapping.kind != hardware.model:
            out.append((("space", "mapping", "kind"), f"mapping {mapping.kind!r} does not fit hardware.model "
                        f"{hardware.model!r}", mapping.kind))
        if mapping.target_fps is not None and hardware.target_fps is not None \
                and mapping.target_fps != hardware.target_fps:
            out.append((("space", "mapping", "target_fps"), f"{mapping.target_fps} differs from hardware.target_fps "
                        f"({hardware.target_fps}); set one of them", mapping.target_fps))
    return out


def _task_option_problems(task: TaskConfig | None, space: SpaceConfig | None) -> list[tuple[_Loc, str, Any]]:
    """Problems of ``space.task_options`` against the task (empty when either section is invalid itself).

    Unknown options, options also fixed in ``task.options``, choices of the wrong type, and option sets the
    task rejects (each combination's input shape is computed without loading data).
    """
    if task is None or space is None or not space.task_options:
        return []
    from hwnas.space.space import MAX_TASK_OPTION_COMBINATIONS
    from hwnas.tasks import TaskError, get_task

    spec = get_task(task.name)
    defaults = spec.defaults
    out: list[tuple[_Loc, str, Any]] = []
    for name, choices in space.task_options.items():
        loc: _Loc = ("space", "task_options", name)
        if name not in defaults:
            close = difflib.get_close_matches(name, list(defaults), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            out.append((loc, f"task {task.name!r} has no option {name!r}{hint}; its options are: "
                        f"{', '.join(defaults) or '(none)'}", name))
        elif name in task.options:
            out.append((loc, f"also fixed in task.options ({_show(task.options[name])}); a searched option takes "
                        "each trial's choice: remove it from one of the two", name))
        elif isinstance(choices, IntRange):
            default = defaults[name]
            if isinstance(default, bool) or not (default is None or isinstance(default, int | float)):
                out.append((loc, f"a range {{min, max, step}} needs a numeric option; {name!r} defaults to "
                            f"{default!r}: give a list of choices", name))
        else:
            for value in choices:
                wrong = _option_type_error(defaults[name], value)
                if wrong:
                    out.append((loc, wrong, value))
        if name in defaults and name not in task.options:
            values = [choices.min, choices.max] if isinstance(choices, IntRange) else choices
            out += [(loc, wrong, v) for v in values if (wrong := _option_limit_error(name, v))][:1]
    if out:
        return out
    names = list(space.task_options)
    values = [task_option_choices(space.task_options[n]) for n in names]
    count = math.prod(len(v) for v in values)
    if count > MAX_TASK_OPTION_COMBINATIONS:
        return [(("space", "task_options"), f"{count:,} combinations of {', '.join(names)}; at most "
                 f"{MAX_TASK_OPTION_COMBINATIONS:,} (use fewer choices or a coarser step)", None)]
    for combo in itertools.product(*values):
        chosen = dict(zip(names, combo, strict=True))
        try:
            spec.input_shape(**{**task.options, **chosen})
        except TaskError as err:
            if spec.shape is None:
                return [(("space", "task_options"), str(err), None)]
            given = ", ".join(f"{k} {v!r}" for k, v in chosen.items())
            return [(("space", "task_options"), f"{given}: {err} (every combination of the choices must be "
                     "valid)", None)]
    return []


VECTOR_STRATEGIES = ("pso", "monas_lq", "ha_nas", "supernet")
"""Strategies that search the space's integer vector (no continuous ``space.training`` range)."""


def _training_problems(objectives: list[tuple[int, Objective]], constraints: list[tuple[int, Constraint]],
                       space: SpaceConfig | None, training: TrainingConfig | None, search: SearchConfig | None
                       ) -> list[tuple[_Loc, str, Any]]:
    """Searched training settings and k-fold against the strategy and the metrics (valid pieces only).

    A continuous ``space.training`` range with a strategy that searches the integer vector, and ``accuracy_std``
    (an objective or constraint) without ``training.kfold``.
    """
    from hwnas.space.spec import FloatRange

    out: list[tuple[_Loc, str, Any]] = []
    if space is not None and search is not None and search.strategy in VECTOR_STRATEGIES:
        for name, spec in space.training.searched().items():
            if isinstance(spec, FloatRange):
                out.append((("space", "training", name), f"a continuous range {{min, max}} cannot be searched by "
                            f"{search.strategy!r}, which searches the space's integer vector: give a list of choices "
                            "(e.g. [1e-3, 1.5e-3, 2e-3]) or use nsga2, tpe or random", None))
    if search is not None and search.strategy == "supernet":
        uses = [(("objectives", i, "metric"), o.metric) for i, o in objectives]
        uses += [(("constraints", i, "metric"), c.metric) for i, c in constraints]
        out += [(loc, f"search.strategy supernet predicts only the validation accuracy of its candidates; {metric} "
                 "cannot steer it (measure it after the search)", metric)
                for loc, metric in uses if metric in ("test_accuracy", "accuracy_std")]
        if training is not None and training.kfold:
            out.append((("training", "kfold"), "search.strategy supernet trains one supernet, not k folds per trial; "
                        "remove training.kfold", training.kfold))
        if search.warm_start != "none":
            out.append((("search", "warm_start"), "search.strategy supernet starts every trial from the supernet's "
                        "shared weights; set warm_start: none", search.warm_start))
        if space is not None and space.precision.mode == "learned":
            out.append((("space", "precision", "mode"), "search.strategy supernet switches fixed bit-widths over "
                        "shared weights; use mode: fixed (HGQ can refine a found model: run.local)", "learned"))
    if training is not None and training.kfold is None:
        uses = [(("objectives", i, "metric"), o.metric) for i, o in objectives]
        uses += [(("constraints", i, "metric"), c.metric) for i, c in constraints]
        out += [(loc, "accuracy_std is the spread over the folds of training.kfold, which is not set", metric)
                for loc, metric in uses if metric == "accuracy_std"]
    return out


def _family_problems(space: SpaceConfig | None, search: SearchConfig | None) -> list[tuple[_Loc, str, Any]]:
    """What ``space.family`` cannot serve: the strategy, a searched mapping (valid pieces only).

    A family without an integer vector (``ModelFamily.vector``) under pso/monas_lq/ha_nas, one the supernet cannot
    share (every plug-in family) under supernet, and ``space.mapping.folding: search`` with a plug-in family.
    """
    if space is None:
        return []
    from hwnas.space.family import FamilyError, ModelFamily, get_family

    try:
        family = get_family(space.family)
    except FamilyError:  # reported by the space section itself
        return []
    out: list[tuple[_Loc, str, Any]] = []
    name = family.name
    if search is not None and search.strategy in ("pso", "monas_lq", "ha_nas") and not family.vector:
        out.append((("search", "strategy"), f"{search.strategy} searches the space's integer vector, which family "
                    f"{name!r} (space.family) does not offer (its vector is False); use nsga2, tpe or random",
                    search.strategy))
    if search is not None and search.strategy == "supernet" and not family.supernet:
        others = "nsga2, tpe, random, pso, monas_lq or ha_nas" if family.vector else "nsga2, tpe or random"
        out.append((("search", "strategy"), f"supernet shares the weights of the built-in families' conv and dense "
                    f"layers, which family {name!r} (space.family) does not have; use {others}", search.strategy))
    if space.mapping.folding == "search" and type(family).space is ModelFamily.space:
        out.append((("space", "mapping", "folding"), f"search picks PE/SIMD or reuse factors per layer of the "
                    f"built-in families; the plug-in family {name!r} (space.family) has no such mapping; use "
                    "folding: auto", "search"))
    return out


def _space_limit_problems(space: SpaceConfig | None) -> list[tuple[_Loc, str, Any]]:
    """Architecture sizes of ``space`` above :data:`SPACE_LIMITS` (empty when the section is invalid itself)."""
    if space is None:
        return []
    from hwnas.space.spec import int_choices

    out: list[tuple[_Loc, str, Any]] = []
    for key, high in SPACE_LIMITS.items():
        spec = getattr(space, key, None)
        if spec is None:
            continue
        top = max(int_choices(spec))
        if top > high:
            out.append((("space", key), f"{top:,} is above hwnas's limit of {high:,} for {key}", top))
    return out


def _range_problems(data: Any, path: tuple[str | int, ...]) -> list[tuple[_Loc, str]]:
    """Every ``{min, max, step}`` range under ``data`` holding more than :data:`MAX_RANGE_VALUES` values.

    Runs on the raw data before validation, which expands each range into the list of its values.
    """
    out: list[tuple[_Loc, str]] = []
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, path)]
    while stack:
        node, where = stack.pop()
        if where == ("space", "training"):  # continuous {min, max, log} ranges: no values to expand
            continue
        if isinstance(node, dict):
            lo, hi, step = node.get("min"), node.get("max", None), node.get("step", 1)
            if all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi, step)) and step >= 1 \
                    and hi >= lo and (hi - lo) // step + 1 > MAX_RANGE_VALUES:
                out.append((where, f"the range {{min: {lo}, max: {hi}, step: {step}}} holds {(hi - lo) // step + 1:,} "
                                   f"values; at most {MAX_RANGE_VALUES:,} (a larger step, or a list of choices)"))
                continue
            stack += [(v, (*where, str(k))) for k, v in node.items()]
        elif isinstance(node, list):
            stack += [(v, (*where, i)) for i, v in enumerate(node)]
    return out


def _valid(cls: type[BaseModel], value: Any) -> Any:
    """``value`` validated as ``cls``, or None when it is invalid (its own errors are reported elsewhere)."""
    try:
        return cls.model_validate(value, strict=True)
    except (ValidationError, TypeError, ValueError):
        return None


def _raw_cross_problems(data: dict[str, Any], base_dir: Path, root: yaml.Node, source: str) -> list[Problem]:
    """:func:`_cross_problems` on raw data whose full validation failed: the valid pieces still get checked."""
    def items(key: str, cls: type[BaseModel]) -> list[tuple[int, Any]]:
        raw = data.get(key)
        if not isinstance(raw, list):
            return []
        return [(i, v) for i, v in ((i, _valid(cls, item)) for i, item in enumerate(raw)) if v is not None]

    hardware = _valid(HardwareConfig, data.get("hardware", {}))
    space = _valid(SpaceConfig, data.get("space", {}))
    found = _cross_problems(items("objectives", Objective), items("constraints", Constraint), hardware, space,
                            base_dir)
    found += _task_option_problems(_valid(TaskConfig, data.get("task")), space) + _space_limit_problems(space)
    found += _training_problems(items("objectives", Objective), items("constraints", Constraint), space,
                                _valid(TrainingConfig, data.get("training", {})),
                                _valid(SearchConfig, data.get("search", {})))
    found += _family_problems(space, _valid(SearchConfig, data.get("search", {})))
    return [Problem(source, _line_of(root, list(loc)), _path_text(loc), msg) for loc, msg, _ in found]


# ----------------------------------------------------------------------------------------------- loader
class _TooManyNodesError(Exception):
    """More than :data:`MAX_YAML_NODES` nodes written in the document (counted while composing)."""


class _Loader(yaml.SafeLoader):
    """Safe YAML loader that also reads ``1e-3`` (no dot) as a float, like YAML 1.2.

    It stops composing after :data:`MAX_YAML_NODES` nodes, so a huge flat document costs no more than that.
    """

    _composed = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self._composed += 1
        if self._composed > MAX_YAML_NODES:
            raise _TooManyNodesError
        return super().compose_node(parent, index)  # type: ignore[misc]


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


class _Dumper(yaml.SafeDumper):
    """Safe YAML dumper writing lists of scalars on one line."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(isinstance(v, str | int | float | bool) or v is None for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def _key_text(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else "<complex key>"


def _duplicate_keys(node: yaml.Node, path: tuple[str | int, ...], source: str) -> list[Problem]:
    """Duplicate keys of every mapping in the node graph, each node visited once (aliases are not expanded).

    A mapping reached through several aliases is reported once, under the path where it first appears.
    """
    problems: list[Problem] = []
    visited: set[int] = set()
    stack: list[tuple[yaml.Node, tuple[str | int, ...]]] = [(node, path)]
    while stack:
        node, path = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        children: list[tuple[yaml.Node, tuple[str | int, ...]]] = []
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in node.value:
                text = _key_text(key)
                if text in seen and text != "<<":
                    problems.append(Problem(source, key.start_mark.line + 1, _path_text((*path, text)),
                                            f"duplicate key (first at line {seen[text]})"))
                seen.setdefault(text, key.start_mark.line + 1)
                children.append((value, (*path, text)))
        elif isinstance(node, yaml.SequenceNode):
            children = [(item, (*path, i)) for i, item in enumerate(node.value)]
        stack += reversed(children)  # document order: an aliased mapping is reported where it is defined
    return problems


class _AliasCycleError(Exception):
    """A YAML node that contains itself through an alias."""

    def __init__(self, node: yaml.Node) -> None:
        super().__init__()
        self.node = node


def _node_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _expanded_size(root: yaml.Node, limit: int) -> tuple[int, int]:
    """``(distinct, expanded)`` node counts of a composed document, capped at ``limit + 1``.

    ``expanded`` counts a node once per alias that refers to it, as the constructed data holds it; both take
    one visit per distinct node (memoized by identity), so an alias bomb costs as much as its file. A node that
    contains itself raises :class:`_AliasCycleError`.
    """
    memo: dict[int, int] = {}
    active: set[int] = set()  # the nodes on the path from the root to the current one
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            active.discard(key)
            memo[key] = min(limit + 1, 1 + sum(memo[id(c)] for c in _node_children(node)))
            continue
        if key in memo:
            continue
        if key in active:
            raise _AliasCycleError(node)
        active.add(key)
        stack.append((node, True))
        stack += [(c, False) for c in _node_children(node) if id(c) not in memo]
    return min(len(memo), limit + 1), memo[id(root)]


def _check_size(root: yaml.Node, source: str) -> None:
    """Refuse a document with more than :data:`MAX_YAML_NODES` nodes, aliases expanded, or an alias cycle."""
    try:
        distinct, expanded = _expanded_size(root, MAX_YAML_NODES)
    except _AliasCycleError as cycle:
        raise ConfigError([Problem(source, cycle.node.start_mark.line + 1, "", "YAML alias cycle: this node "
                                   "contains itself through an alias")]) from None
    if distinct > MAX_YAML_NODES:
        raise ConfigError([Problem(source, None, "", f"the YAML document has more than {MAX_YAML_NODES:,} nodes "
                                   "(a real experiment has a few hundred)")])
    if expanded > MAX_YAML_NODES:
        raise ConfigError([Problem(source, None, "", f"YAML aliases expand to more than {MAX_YAML_NODES:,} nodes "
                                   f"({distinct:,} written): refusing an alias bomb; write the values out")])


def _line_of(root: yaml.Node, path: list[str | int]) -> int:
    """Line (1-based) of the key at ``path``; for a key that is not there, the line of its parent."""
    node, line = root, root.start_mark.line + 1
    for elem in path:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if _key_text(k) == str(elem)), None)
            if match is None:
                return line
            node, line = match[1], match[0].start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(elem, int) and 0 <= elem < len(node.value):
            node = node.value[elem]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _path_text(path: tuple[str | int, ...] | list[str | int]) -> str:
    out = ""
    for elem in path:
        if isinstance(elem, int):
            out += f"[{elem}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", str(elem)):
            out += f".{elem}" if out else str(elem)
        else:
            out += f"[{str(elem)!r}]"
    return out


# --- pydantic locations: which elements are keys/indices and which are union branch labels
def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
            continue
        if origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _branches(tp: Any) -> list[Any]:
    return [a for a in get_args(tp) if a is not type(None)]


def _label(tp: Any) -> str:
    tp = _unwrap(tp)
    if isinstance(tp, type):
        return tp.__name__
    origin = get_origin(tp)
    if origin is not None:
        return f"{origin.__name__}[{','.join(_label(a) for a in get_args(tp))}]"
    return str(tp)


def _pick_branch(tp: Any, tag: Any) -> Any:
    for arg in _branches(tp):
        label = _label(arg)
        if str(tag) == label or (isinstance(_unwrap(arg), type) and re.search(rf"\b{re.escape(label)}\b", str(tag))):
            return arg
    return None


def _segments(root: Any, loc: tuple[Any, ...]) -> list[tuple[str, Any]]:
    """``loc`` split into ``("key"|"index"|"tag", element)`` by walking the schema's types along it."""
    tp, out = root, []
    for elem in loc:
        tp = _unwrap(tp) if tp is not None else None
        if tp is not None and _is_union(tp):
            out.append(("tag", elem))
            tp = _pick_branch(tp, elem)
            continue
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            fld = tp.model_fields.get(elem) if isinstance(elem, str) else None
            out.append(("key", elem))
            tp = fld.annotation if fld is not None else None
            continue
        origin = get_origin(tp)
        if origin in (list, tuple, set, frozenset) and isinstance(elem, int):
            out.append(("index", elem))
            args = get_args(tp)
            tp = args[0] if args else None
            continue
        if elem == "[key]":  # pydantic's marker of an invalid mapping key
            out.append(("keytag", elem))
            continue
        if origin is dict:
            out.append(("key", elem))
            tp = get_args(tp)[1] if get_args(tp) else None
            continue
        out.append(("index" if isinstance(elem, int) else "key", elem))
        tp = None
    return out


def _type_at(root: Any, path: list[Any]) -> Any:
    tp = root
    for elem in path:
        tp = _unwrap(tp)
        if _is_union(tp):  # a union with exactly one section branch (IntSpec: its range) continues there
            models = [a for a in map(_unwrap, _branches(tp)) if isinstance(a, type) and issubclass(a, BaseModel)]
            if len(models) == 1 and isinstance(elem, str):
                tp = models[0]
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            fld = tp.model_fields.get(elem)
            if fld is None:
                return None
            tp = fld.annotation
        elif get_origin(tp) in (list, tuple):
            tp = get_args(tp)[0]
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        else:
            return None
    return tp


def _describe(tp: Any) -> str:
    tp = _unwrap(tp)
    simple = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if tp in simple:
        return simple[tp]
    if get_origin(tp) is list:
        if _is_union(_unwrap(get_args(tp)[0])):  # space.task_options: values of any scalar type
            return "a list of choices"
        inner = _describe(get_args(tp)[0]).removeprefix("an ").removeprefix("a ")
        return f"a list of {inner}s"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "a mapping {" + ", ".join(tp.model_fields) + "}"
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    return _label(tp)


_SHAPE = re.compile(r".*_(type|parsing)$|^(model_attributes_type|literal_error|union_tag_invalid)$")


def _message(err: dict[str, Any]) -> tuple[str, str]:
    """``(kind, text)`` of a pydantic error; ``kind`` is its type."""
    kind, msg, value = err["type"], err["msg"], err.get("input")
    if kind == "config":
        return kind, msg
    if kind == "missing":
        return kind, "required key is missing"
    if kind == "value_error":
        return kind, msg.removeprefix("Value error, ")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return kind, f"must be a mapping, got {_show(value)}"
    if kind == "list_type":
        return kind, f"must be a list, got {_show(value)}"
    if kind == "too_short":
        return kind, f"needs at least {err.get('ctx', {}).get('min_length', 1)} item(s), got {_show(value)}"
    text = re.sub(r"^Input should be", "must be", msg.split(", unable to parse")[0])
    text = re.sub(r"^Input", "value", text)
    return kind, f"{text}, got {_show(value)}"


def _problems_from(exc: ValidationError, root: yaml.Node | None, source: str) -> list[Problem]:
    found: list[tuple[list[Any], str, str]] = []  # (path, kind, message)
    unions: dict[tuple[Any, ...], list[tuple[dict[str, Any], int, list[Any]]]] = {}
    for err in exc.errors(include_url=False):
        segs = _segments(Experiment, tuple(err["loc"]))
        path = [elem for kind, elem in segs if kind not in ("tag", "keytag")]
        tag_at = next((i for i, (kind, _) in enumerate(segs) if kind == "tag"), None)
        if tag_at is None:
            kind, text = _message(err)
            found.append((path, kind, "the key " + text if segs and segs[-1][0] == "keytag" else text))
        else:
            unions.setdefault(tuple(err["loc"][:tag_at]), []).append((err, tag_at, path))
    for prefix, items in unions.items():
        meant = [(e, p) for e, t, p in items if not (len(e["loc"]) == t + 1 and _SHAPE.match(e["type"]))]
        if meant:
            found += [(p, *_message(e)) for e, p in meant]
            continue
        tp = _unwrap(_type_at(Experiment, list(prefix)))
        options = [_describe(a) for a in _branches(tp)] if tp is not None and _is_union(tp) else []
        expected = ", ".join(options[:-1]) + f" or {options[-1]}" if len(options) > 1 else "".join(options)
        found.append((list(prefix), "union", f"must be {expected or 'a valid value'}, got "
                                             f"{_show(items[0][0].get('input'))}"))
    problems = []
    for path, kind, message in found:
        if kind == "extra_forbidden":
            owner = _unwrap(_type_at(Experiment, path[:-1]))
            names = list(owner.model_fields) if isinstance(owner, type) and issubclass(owner, BaseModel) else []
            close = difflib.get_close_matches(str(path[-1]), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            message = f"unknown key{hint}" + (f"; keys here are: {', '.join(names)}" if names else "")
        line = _line_of(root, path) if root is not None else None
        problems.append(Problem(source, line, _path_text(path) or "(top level)", message))
    return problems


def _sorted_unique(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in sorted(problems, key=lambda p: (p.line or 0, p.path)):
        if str(p) not in seen:
            seen.add(str(p))
            out.append(p)
    return out


def parse_experiment(text: str, source: str = "<string>", base_dir: str | os.PathLike[str] | None = None,
                     *, plugins: bool = True) -> Experiment:
    """Validate YAML ``text`` into an :class:`Experiment` or raise :class:`ConfigError` listing every problem.

    ``source`` names the text in messages; ``base_dir`` is the folder relative paths are resolved against
    (None: the current directory) and where ``task.module`` and ``space.module`` are looked for after Python's
    path. ``plugins=False`` makes either a problem instead of importing it (readers that must not run user code).
    """
    token = _PLUGINS.set(plugins)
    try:
        return _parse_experiment(text, source, base_dir)
    finally:
        _PLUGINS.reset(token)


def _parse_experiment(text: str, source: str, base_dir: str | os.PathLike[str] | None) -> Experiment:
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError([Problem(source, None, "", f"the experiment has {len(text):,} characters; at most "
                                   f"{MAX_FILE_BYTES:,} (1 MiB; a real one is a few KiB)")])
    try:
        loader = _Loader(text)  # reads the stream at once: a control character is refused here
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(source, None, "", f"YAML error: {' '.join(str(exc).split())}")]) from None
    try:
        root = loader.get_single_node()
        if root is not None:
            _check_size(root, source)  # before constructing: merge keys (<<) are expanded while constructing
        data = loader.construct_document(root) if root is not None else None
    except ConfigError:
        raise
    except _TooManyNodesError:
        raise ConfigError([Problem(source, None, "", f"the YAML document has more than {MAX_YAML_NODES:,} nodes "
                                   "(a real experiment has a few hundred)")]) from None
    except RecursionError:
        raise ConfigError([Problem(source, None, "", "the YAML document is nested too deeply")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(s for s in (exc.context, exc.problem) if s)
        raise ConfigError([Problem(source, mark.line + 1 if mark else None, "", f"YAML syntax error: {what}",
                                   column=mark.column + 1 if mark else None)]) from None
    except (yaml.YAMLError, ValueError, OverflowError) as exc:  # ValueError: e.g. an int of 5,000 digits
        raise ConfigError([Problem(source, None, "", f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    if root is None:
        raise ConfigError([Problem(source, 1, "", "the experiment file is empty")])
    if not isinstance(data, dict):
        raise ConfigError([Problem(source, root.start_mark.line + 1, "(top level)",
                                   f"must be a mapping of sections, got {type(data).__name__}")])
    problems = _duplicate_keys(root, (), source)
    ranges = _range_problems(data.get("space"), ("space",))
    if ranges:  # validation would expand them: report them (and what was found so far) alone
        raise ConfigError(_sorted_unique(problems + [Problem(source, _line_of(root, list(loc)), _path_text(loc), msg)
                                                     for loc, msg in ranges]))
    context = {"base_dir": Path(base_dir) if base_dir is not None else None}
    try:
        experiment = Experiment.model_validate(data, context=context, strict=True)
    except ValidationError as exc:
        problems += _problems_from(exc, root, source)
        problems += _raw_cross_problems(data, context["base_dir"] or Path.cwd(), root, source)
    if problems:
        raise ConfigError(_sorted_unique(problems))
    return experiment


def load_experiment(path_or_text: str | os.PathLike[str]) -> Experiment:
    """Load an experiment from a file (a path, or a string naming a ``.yaml``/``.yml`` or existing file) or text.

    Relative paths inside are resolved against the file's folder. Every problem is a :class:`ConfigError`.
    """
    if isinstance(path_or_text, str) and ("\n" in path_or_text or not (
            path_or_text.endswith((".yaml", ".yml")) or _is_file(path_or_text))):
        return parse_experiment(path_or_text)
    path = Path(path_or_text)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)  # never more: a device or a huge file is refused, not read
        if len(raw) > MAX_FILE_BYTES:
            raise ConfigError([Problem(str(path), None, "", f"the experiment file is larger than {MAX_FILE_BYTES:,} "
                                       "bytes (1 MiB; a real one is a few KiB)")])
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ConfigError([Problem(str(path), None, "", f"cannot read the experiment file: {reason}")]) from None
    return parse_experiment(text, source=str(path), base_dir=path.resolve().parent)


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


# ------------------------------------------------------------------------------------- documentation
_EXAMPLE_REQUIRED: dict[str, Any] = {
    "name": "my-search",
    "task": {"name": "digits"},
    "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": "luts", "direction": "minimize"}],
}


def _default_experiment() -> Experiment:
    return Experiment.model_validate(_EXAMPLE_REQUIRED)


def _flow(value: Any) -> str:
    """One YAML value on one line."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    text = yaml.safe_dump([value], default_flow_style=True, width=10**6, allow_unicode=True, sort_keys=False).strip()
    return text[1:-1]


def _comment(text: str, pad: str) -> list[str]:
    return [f"{pad}# {line}" for line in textwrap.wrap(text, 100 - len(pad) - 2)]


def _field_comment(info: Any, pad: str) -> list[str]:
    desc = info.description or ""
    if info.is_required():
        desc += " (required)"
    return _comment(desc, pad)


def _emit_model(model: BaseModel, pad: str) -> list[str]:
    lines: list[str] = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        lines += _field_comment(info, pad)
        if name == "objectives" and isinstance(model, Experiment):
            lines += [f"{pad}# metrics (for objectives and constraints):"]
            lines += [f"{pad}#   {k}: {v}" for k, v in METRICS.items()]
        if isinstance(value, BaseModel) and not _is_union(_unwrap(info.annotation)) and type(value).model_fields:
            lines.append(f"{pad}{name}:")
            lines += _emit_model(value, pad + "  ")
        elif isinstance(value, BaseModel) and not type(value).model_fields:
            lines.append(f"{pad}{name}: {{}}")
        elif isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value):
            lines.append(f"{pad}{name}:")
            lines += _emit_items(value, type(value[0]), pad + "  ")
        elif isinstance(value, list) and not value and _item_model(info.annotation) is not None:
            item = _item_model(info.annotation)
            lines += [f"{pad}# each item:", *_item_docs(item, pad + "#   ")]
            lines.append(f"{pad}{name}: []")
            if item is Constraint:
                lines += [f"{pad}#   - {{metric: luts, max: '50%'}}",
                          f"{pad}#   - {{metric: latency_cycles, max: 500}}"]
        else:
            lines.append(f"{pad}{name}: {_flow(value)}")
        if isinstance(model, SearchConfig) and name == "options":
            lines += _other_strategies(model.strategy, pad)
    return lines


def _item_model(annotation: Any) -> type[BaseModel] | None:
    tp = _unwrap(annotation)
    if get_origin(tp) is list:
        inner = _unwrap(get_args(tp)[0])
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return None


def _item_docs(item: type[BaseModel], pad: str) -> list[str]:
    lines = []
    for name, info in item.model_fields.items():
        default = "required" if info.is_required() else f"default {_flow(info.get_default(call_default_factory=True))}"
        lines += _comment(f"{name}: {info.description} ({default})", pad)
    return lines


def _emit_items(items: list[BaseModel], item: type[BaseModel], pad: str) -> list[str]:
    lines = _item_docs(item, pad)
    for value in items:
        body = _emit_plain(value, pad + "  ")
        lines.append(pad + "- " + body[0].lstrip())
        lines += body[1:]
    return lines


def _emit_plain(model: BaseModel, pad: str) -> list[str]:
    return [f"{pad}{name}: {_flow(getattr(model, name))}" for name in type(model).model_fields]


def _other_strategies(current: str, pad: str) -> list[str]:
    lines = _comment("options of the other strategies, with their defaults:", pad)
    for strategy, cls in STRATEGY_OPTIONS.items():
        if strategy == current:
            continue
        if not cls.model_fields:
            lines.append(f"{pad}#   {strategy}: no options")
            continue
        lines.append(f"{pad}#   {strategy}:")
        for name, info in cls.model_fields.items():
            lines += _comment(info.description or "", f"{pad}#     ")
            lines.append(f"{pad}#     {name}: {_flow(info.get_default(call_default_factory=True))}")
    return lines


def _emit_commented(experiment: Experiment) -> str:
    head = ["# hwnas experiment file: every key with its description and default value.",
            "# Relative paths are relative to this file's folder. Validate with `hwnas config <file>`."]
    return "\n".join(head + _emit_model(experiment, "")) + "\n"


def defaults_yaml() -> str:
    """The complete default experiment as commented YAML (the required keys filled with an example)."""
    return _emit_commented(_default_experiment())


def _type_text(tp: Any) -> str:
    if get_origin(tp) is Annotated and _EXPORT_PATHS in get_args(tp)[1:]:
        return " \\| ".join(_EXPORT_PATHS.names())
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    nullable = _is_union(tp) and type(None) in get_args(tp)
    tp_u = _unwrap(tp)
    if _is_union(tp_u):
        text = " \\| ".join(_type_text(a) for a in _branches(tp_u))
    elif get_origin(tp_u) is Literal:
        text = " \\| ".join(str(a) for a in get_args(tp_u))
    elif get_origin(tp_u) is list:
        text = f"list of {_type_text(get_args(tp_u)[0])}"
    elif get_origin(tp_u) is dict:
        text = "mapping"
    elif isinstance(tp_u, type) and issubclass(tp_u, BaseModel):
        text = "{" + ", ".join(tp_u.model_fields) + "}" if tp_u.__name__ in ("IntRange", "FloatRange") else "section"
    elif isinstance(tp_u, type):
        text = {"int": "int", "float": "number", "str": "string", "bool": "bool"}.get(tp_u.__name__, tp_u.__name__)
    else:
        text = str(tp_u)
    return text + " \\| null" if nullable else text


def _md(text: str) -> str:
    """``text`` for a Markdown table cell: ``|`` escaped, ``<``/``>`` escaped outside code spans."""
    parts = text.replace("``", "`").replace("|", "\\|").split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;").replace(">", "&gt;") for i, p in enumerate(parts))


def _table(cls: type[BaseModel], prefix: str) -> list[str]:
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for name, info in cls.model_fields.items():
        tp = _unwrap(info.annotation)
        if info.is_required():
            default = "required"
        elif cls is SearchConfig and name == "options":
            default = "the strategy's (below)"
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and not _is_union(info.annotation):
            default = f"see `{prefix}{name}`"
        else:
            default = f"`{_flow(info.get_default(call_default_factory=True))}`"
        type_text = "list of mappings (below)" if _item_model(info.annotation) else _type_text(info.annotation)
        type_text += _bounds_text(info)
        rows.append(f"| `{prefix}{name}` | {type_text} | {default} | {_md(info.description or '')} |")
    return rows


def _bounds_text(info: Any) -> str:
    """The range and length limits of a field for the reference table, e.g. `` (≥ 1, ≤ 10,000)``."""
    parts = []
    for meta in info.metadata:
        for attr, sign in (("gt", "> {}"), ("ge", "≥ {}"), ("lt", "< {}"), ("le", "≤ {}"),
                           ("max_length", "at most {} items")):
            value = getattr(meta, attr, None)
            if isinstance(value, int | float) and not isinstance(value, bool):
                parts.append(sign.format(f"{value:,}" if isinstance(value, int) else f"{value:g}"))
    return f" ({', '.join(parts)})" if parts else ""


def _sections(cls: type[BaseModel], prefix: str) -> list[tuple[str, type[BaseModel], str]]:
    out = [(prefix.rstrip("."), cls, prefix)]
    for name, info in cls.model_fields.items():
        tp = _unwrap(info.annotation)
        item = _item_model(info.annotation)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and tp is not StrategyOptions \
                and tp.__name__ not in ("IntRange", "FloatRange"):
            out += _sections(tp, f"{prefix}{name}.")
        elif item is not None:
            out += _sections(item, f"{prefix}{name}[].")
    return out


HASH_NEUTRAL: dict[tuple[str, ...], Any] = {
    ("hardware", "cpu_profile"): None,  # how a missing CPU table is made, not what trials measure: any value
    ("training", "threads"): None,  # how many cores a worker uses, not what it trains: any value
    ("search", "options", "accuracy_acquisition"): "bound",
    ("search", "options", "accuracy_trend"): "none",
    ("search", "options", "front_neighbours"): 0,
    ("search", "options", "bootstrap_bits"): "full",
    ("space", "task_options"): {},
    ("search", "options", "hpo_keep"): "widest",
    ("search", "warm_start"): "none",
}
"""Keys the experiment hashes leave out (a study or stage made before a key existed still matches).

A key maps to the value that reproduces what experiments did before it existed, or to ``None`` when no value
changes a result; at that value (or always, for ``None``) it is dropped from :func:`hash_payload`.
"""

HASH_NEW_NEUTRAL: dict[tuple[str, ...], Any] = {
    ("task", "module"): None,
    ("space", "module"): None,
    ("space", "family_options"): {},
    ("space", "training"): {"lr": None, "l1": None},
    ("training", "l1"): 0.0,
    ("training", "kfold"): None,
    ("run", "baselines"): [],
    ("run", "synth_max_macs"): 20_000,
    ("hardware", "cpu_precision"): "float",
    ("run", "rtl", "optimize"): "full",
}
"""Keys dropped from :func:`hash_payload` at their neutral value like :data:`HASH_NEUTRAL`'s, but neutral from the
day they were added: no stored hash ever held them, so :func:`hash_payload_forms` has no earlier forms of them.
(``None`` here is the neutral value itself, e.g. ``training.kfold: null``.)
"""


HASH_NEVER: tuple[tuple[str, ...], ...] = (("training", "device"),)
"""Keys no hash holds, whatever their value, and no hash ever held (so no earlier forms): where a worker runs,
not what it computes (``training.device``: workers on GPUs and on CPUs join one study)."""


def hash_payload(experiment: Experiment) -> dict[str, Any]:
    """The experiment as the study and stage hashes see it: its dump without :data:`HASH_NEUTRAL` keys."""
    data = experiment.model_dump()
    for path in HASH_NEVER:
        node = _lookup(data, path[:-1])
        if isinstance(node, dict):
            node.pop(path[-1], None)
    for path, neutral in HASH_NEW_NEUTRAL.items():
        node = _lookup(data, path[:-1])
        if isinstance(node, dict) and path[-1] in node and node[path[-1]] == neutral:
            node.pop(path[-1])
    for path, neutral in HASH_NEUTRAL.items():
        node = _lookup(data, path[:-1])
        if isinstance(node, dict) and path[-1] in node and (neutral is None or node[path[-1]] == neutral):
            node.pop(path[-1])
    return data


def payload_digest(data: dict[str, Any]) -> str:
    """The short SHA-256 (16 hex digits) of a JSON-able payload, keys sorted: what studies and stages record."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def hash_payload_forms(experiment: Experiment) -> list[dict[str, Any]]:
    """:func:`hash_payload` and every earlier form of it a stored hash may have been computed from.

    Before a key joined :data:`HASH_NEUTRAL` it was hashed like any other, so a study or stage mark made in
    between recorded it at its neutral value: each subset of the neutral keys this experiment has at their
    neutral value may be in a recorded hash (2^k payloads for k such keys; the current one first).
    """
    full, current = experiment.model_dump(), hash_payload(experiment)
    dropped = [(path, value) for path in HASH_NEUTRAL
               if (value := _lookup(full, path)) is not _MISSING and _lookup(current, path) is _MISSING]
    forms = []
    for r in range(len(dropped) + 1):
        for kept in itertools.combinations(dropped, r):
            data = copy.deepcopy(current)
            for path, value in kept:
                _lookup(data, path[:-1])[path[-1]] = value
            forms.append(data)
    return forms


_MISSING = object()


def _lookup(data: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path`` of nested dicts, or ``_MISSING``."""
    for key in path:
        data = data.get(key, _MISSING) if isinstance(data, dict) else _MISSING
    return data


def reference_markdown() -> str:
    """The reference tables of every section and key, generated from the schema's descriptions."""
    lines: list[str] = []
    for title, cls, prefix in _sections(Experiment, ""):
        heading = f"### `{title}`" if title else "### Top level"
        lines += [heading, "", _md((cls.__doc__ or "").strip().splitlines()[0]), "", *_table(cls, prefix), ""]
        if cls is SearchConfig:
            for strategy, opts in STRATEGY_OPTIONS.items():
                lines += [f"#### `search.options` for `strategy: {strategy}`", "",
                          _md((opts.__doc__ or "").strip().splitlines()[0]), ""]
                lines += [*_table(opts, "search.options."), ""] if opts.model_fields else ["No options.", ""]
    lines += ["### Metrics", "", "| metric | meaning |", "|---|---|"]
    lines += [f"| `{k}` | {_md(v)} |" for k, v in METRICS.items()]
    return "\n".join(lines) + "\n"
