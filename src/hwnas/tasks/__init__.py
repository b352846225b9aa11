"""Datasets as tasks: a task name gives seeded train/val/test data, its metric and a baseline model.

>>> from hwnas.tasks import get_task
>>> task = get_task("digits")
>>> data = task.load(seed=0)                 # TaskData: train/val/test Splits, classes, info
>>> model = task.baseline(data)              # the task's default baseline (hwnas layers)

Built-in tasks (:mod:`hwnas.tasks.builtin`): ``digits``, ``digits-image``, ``fashion-mnist``,
``amc-rml2016``, ``amc-rml2018`` (generated), ``radioml2018``, ``radioml2016`` (real files), ``qubit-readout``.
A task of your own: :func:`register_task` in a module an experiment names as ``task.module`` (docs/extending.md).
"""

from .digits import DigitsSplit, load_digits
from .metrics import accuracy, accuracy_per_snr, confusion_matrix, most_confused
from .radioml_files import RadioMLFileError, read_rml2016_pickle, read_rml2018_hdf5
from .registry import Split, Task, TaskData, TaskError, get_task, load_task_module, register_task, task_names
from .splits import homogeneous_subset, split_per_pair, stratified_split

__all__ = [
    "DigitsSplit",
    "RadioMLFileError",
    "Split",
    "Task",
    "TaskData",
    "TaskError",
    "accuracy",
    "accuracy_per_snr",
    "confusion_matrix",
    "get_task",
    "homogeneous_subset",
    "load_digits",
    "load_task_module",
    "most_confused",
    "read_rml2016_pickle",
    "read_rml2018_hdf5",
    "register_task",
    "split_per_pair",
    "stratified_split",
    "task_names",
]
