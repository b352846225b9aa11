"""The task registry: a task name gives seeded train/val/test data, its metric, its loss and a baseline model.

Contract:

* :func:`get_task` returns a registered :class:`Task`; :func:`task_names` lists them; :func:`register_task`
  adds one (an existing name is an error unless ``replace=True``). :func:`load_task_module` imports a module of
  the user's that registers tasks (an experiment's ``task.module``; docs/extending.md) and returns their names;
  nothing else imports user code.
* ``task.load(seed=..., **options)`` returns :class:`TaskData`: three :class:`Split` s (torch tensors,
  float32 inputs, int64 labels; ``snr`` per frame where the task has one), the class names and an ``info``
  dict saying how the data was made. Options a task does not know are an error naming the option and the
  task; the same seed and options give identical tensors.
* ``task.input_shape(**options)`` gives the per-sample input shape the options produce without loading any data
  (tasks that declare a ``shape`` function; the search space uses it when ``space.task_options`` searches
  options); invalid options (e.g. a readout window past the end of the trace) are a :class:`TaskError`.
* ``task.baseline(data)`` builds the task's default baseline model (hwnas layers, untrained) for the data's
  input shape and class count; ``task.evaluate(model, split)`` returns the task metric and, where the split
  has SNRs, accuracy per SNR, plus the confusion matrix.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError

from . import metrics as _metrics

__all__ = ["Split", "Task", "TaskData", "TaskError", "get_task", "load_task_module", "register_task", "task_names"]


class TaskError(HwnasError, ValueError):
    """Unknown task, unknown or invalid task option (the message names it)."""


@dataclass(frozen=True)
class Split:
    """One part of a task's data: inputs ``x`` (N, ...) float32, labels ``y`` (N,) int64, optional SNR (dB)."""

    x: torch.Tensor
    y: torch.Tensor
    snr: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise TaskError(f"split: {self.x.shape[0]} inputs but {self.y.shape[0]} labels")
        if self.snr is not None and len(self.snr) != self.y.shape[0]:
            raise TaskError(f"split: {len(self.snr)} SNR values for {self.y.shape[0]} labels")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def pair(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)``, the form :meth:`hwnas.train.Trainer.fit` takes."""
        return self.x, self.y


@dataclass(frozen=True)
class TaskData:
    """A task's seeded data: train/val/test splits, class names and how it was made (``info``)."""

    train: Split
    val: Split
    test: Split
    classes: tuple[str, ...]
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample."""
        return tuple(self.train.x.shape[1:])

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)


@dataclass(frozen=True)
class Task:
    """A named task: a loader, its option defaults, metric, loss and baseline builder.

    ``loader(seed, **options)`` must return :class:`TaskData`; ``baseline_builder(input_shape, n_classes)``
    an ``nn.Module``. ``metric`` is ``"accuracy"`` or ``"fidelity"`` (binary: 1 − [P(1|0) + P(0|1)]/2).
    ``shape(options)`` (optional) returns the per-sample input shape of the complete option dict without
    loading anything and raises :class:`TaskError` for options the loader would reject; without it the task's
    options cannot be search variables.
    """

    name: str
    description: str
    loader: Callable[..., TaskData]
    baseline_builder: Callable[[tuple[int, ...], int], nn.Module]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    metric: str = "accuracy"
    loss: str = "ce"
    option_docs: Mapping[str, str] = field(default_factory=dict)
    shape: Callable[[Mapping[str, Any]], tuple[int, ...]] | None = None

    def __post_init__(self) -> None:
        if self.metric not in _METRICS:
            raise TaskError(f"{self.name}: metric {self.metric!r} unknown; available {sorted(_METRICS)}")
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    def options(self, **options: Any) -> dict[str, Any]:
        """The defaults updated with ``options``; an unknown option is a :class:`TaskError` naming it."""
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise TaskError(f"task {self.name!r}: unknown option(s) {unknown}; options are {sorted(self.defaults)}")
        return {**self.defaults, **options}

    def load(self, seed: int = 0, **options: Any) -> TaskData:
        """Seeded train/val/test data; see :attr:`option_docs` for the options.

        Raises :class:`TaskError` naming the task and its options when a split comes out empty (too few
        samples for the split fractions), before any training would fail on it.
        """
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TaskError(f"task {self.name!r}: seed must be an int, got {seed!r}")
        chosen = self.options(**options)
        data = self.loader(seed, **chosen)
        empty = [name for name in ("train", "val", "test") if len(getattr(data, name).y) == 0]
        if empty:
            splits = " and ".join(empty) + (" splits are" if len(empty) > 1 else " split is")
            raise TaskError(f"task {self.name!r}: the {splits} empty with options {chosen}: more samples per "
                            "class (or larger split fractions) needed")
        return data

    def input_shape(self, **options: Any) -> tuple[int, ...]:
        """Per-sample input shape of the data ``load(**options)`` would give, without loading it.

        Raises :class:`TaskError` for an unknown or invalid option, or when the task declares no ``shape``.
        """
        if self.shape is None:
            raise TaskError(f"task {self.name!r} cannot tell its input shape without loading its data, so its "
                            "options cannot be searched")
        return tuple(int(d) for d in self.shape(self.options(**options)))

    def baseline(self, data: TaskData | None = None, *, input_shape: tuple[int, ...] | None = None,
                 n_classes: int | None = None) -> nn.Module:
        """The default baseline model for ``data`` (or an explicit input shape and class count)."""
        if data is not None:
            input_shape, n_classes = data.input_shape, data.n_classes
        if input_shape is None or n_classes is None:
            raise TaskError(f"task {self.name!r}: baseline needs data or input_shape and n_classes")
        return self.baseline_builder(tuple(input_shape), int(n_classes))

    def score(self, pred: Any, labels: Any) -> float:
        """The task metric of predictions (class indices or scores) against labels."""
        return _METRICS[self.metric](pred, labels)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: Split, *, batch_size: int = 4096,
                 classes: tuple[str, ...] | None = None) -> dict[str, Any]:
        """Task metric, confusion matrix and (if the split has SNRs) accuracy per SNR of ``model`` on ``split``.

        Each batch runs on the model's device (:func:`hwnas.nn.base.module_device`); the predictions come back to
        the CPU.
        """
        from hwnas.nn.base import module_device

        was = model.training
        model.eval()
        dev = module_device(model)
        try:
            pred = torch.cat([model(split.x[i:i + batch_size].to(dev)).argmax(dim=1).cpu()
                              for i in range(0, len(split), batch_size)]).numpy()
        finally:
            model.train(was)
        y = split.y.numpy()
        n = len(classes) if classes is not None else int(max(pred.max(), y.max()) + 1)
        out: dict[str, Any] = {self.metric: self.score(pred, y),
                               "confusion": _metrics.confusion_matrix(pred, y, n)}
        if split.snr is not None:
            out["accuracy_per_snr"] = _metrics.accuracy_per_snr(pred, y, split.snr)
        return out


def _fidelity(pred: Any, labels: Any) -> float:
    from .qubit import fidelity

    return fidelity(_metrics.to_classes(pred), np.asarray(labels).reshape(-1))


_METRICS: dict[str, Callable[[Any, Any], float]] = {"accuracy": _metrics.accuracy, "fidelity": _fidelity}

_REGISTRY: dict[str, Task] = {}

_OWN_COMMAND: dict[str, str] = {
    "ofdm-receiver": "the neural receiver trains on link batches simulated per step (Sionna), not on an in-memory "
                     "data set; its study and its architecture/mixed-precision search are `hwnas receiver study` "
                     "and `hwnas receiver search` (docs/tasks_receiver.md)",
}
"""Tasks that run through a command of their own, with the message an experiment naming them gets."""


def register_task(task: Task, *, replace: bool = False) -> Task:
    """Add ``task`` to the registry under ``task.name``."""
    if task.name in _REGISTRY and not replace:
        raise TaskError(f"task {task.name!r} is already registered (pass replace=True to override)")
    _REGISTRY[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The registered task ``name``; an unknown name is a :class:`TaskError` listing the known ones."""
    _ensure_builtin()
    if name not in _REGISTRY and name in _OWN_COMMAND:
        raise TaskError(f"task: {name!r} is not a data-set task of hwnas run: {_OWN_COMMAND[name]}")
    if name not in _REGISTRY:
        raise TaskError(f"task: unknown task {name!r}; available {task_names()}")
    return _REGISTRY[name]


def task_names() -> list[str]:
    """Names of all registered tasks, sorted."""
    _ensure_builtin()
    return sorted(_REGISTRY)


def _ensure_builtin() -> None:
    from . import builtin  # noqa: F401  (registers the built-in tasks on first use)


_MODULE_TASKS: dict[str, tuple[str, ...]] = {}


def load_task_module(module: str, search_dir: str | os.PathLike[str] | None = None) -> tuple[str, ...]:
    """Import ``module`` (a dotted name) for the tasks it registers; their names, sorted.

    The module is looked up on Python's path, then in ``search_dir`` (an experiment file's folder), which is on
    the path only while the module is imported. It must call :func:`register_task` when imported. A second call
    for the same module returns the same names without importing it again. Raises :class:`TaskError` (one line)
    for a name that is not a dotted module name, a module that is not found or fails to import, and one that
    registers no task.
    """
    from hwnas.plugins import import_user_module

    _ensure_builtin()
    if isinstance(module, str) and module in _MODULE_TASKS:
        return _MODULE_TASKS[module]
    before = dict(_REGISTRY)
    import_user_module(module, search_dir, TaskError, "my_pkg.my_task")
    names = sorted(n for n, t in _REGISTRY.items() if before.get(n) is not t)
    if not names:  # imported earlier by other code: the tasks whose loader it defines
        names = sorted(n for n, t in _REGISTRY.items() if getattr(t.loader, "__module__", "") == module)
    if not names:
        raise TaskError(f"importing {module!r} registered no task; it must call hwnas.tasks.register_task(Task(...)) "
                        "when imported (docs/extending.md)")
    _MODULE_TASKS[module] = tuple(names)
    return _MODULE_TASKS[module]


def data_dir(option: str | os.PathLike[str] | None) -> str | None:
    """The data folder: the option, else ``$HWNAS_DATA``, else ``None`` (no caching)."""
    if option is not None:
        return os.fspath(option)
    return os.environ.get("HWNAS_DATA") or None
