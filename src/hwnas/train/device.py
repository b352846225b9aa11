"""Where training runs: ``training.device`` (``auto``, ``cpu``, ``cuda`` or ``cuda:N``) on this machine.

Contract:

* :func:`check_device_spec` says whether a value is well formed (the experiment file's check: no torch call, so an
  experiment asking for ``cuda`` still parses on a machine without one, e.g. the login node of a cluster).
* :func:`resolve_device` turns a spec into the ``torch.device`` this machine trains on: ``auto`` is the current
  CUDA device when ``torch.cuda.is_available()``, else the CPU; ``cuda`` the current CUDA device (``cuda:0``
  under ``CUDA_VISIBLE_DEVICES=<one GPU>``); ``cuda:N`` that device. A CUDA device this machine does not have
  is a :class:`DeviceError` (one line, naming the field and what the machine has), raised before any work.
* :func:`module_device` is the device a model's tensors are on (its first materialized parameter or buffer; the
  CPU for a model without any): evaluation and calibration move their batches there.
* Everything that leaves a trial — saved models, checkpoints, cost models, exports — is on the CPU: trainers
  write CPU tensors (:func:`to_cpu`) and the trial moves its model back before pricing and saving it.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from hwnas.errors import HwnasError
from hwnas.nn.base import module_device

__all__ = ["DEVICE_CHOICES", "DeviceError", "check_device_spec", "module_device", "resolve_device", "to_cpu"]

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
"""The accepted values, in words (messages and docs)."""

_SPEC = re.compile(r"auto|cpu|cuda(:(0|[1-9][0-9]{0,3}))?")  # as hwnas.config's training.device check


class DeviceError(HwnasError, ValueError):
    """A device this machine does not have, or a malformed device name; the message names the field."""


def check_device_spec(value: Any) -> str:
    """``value`` if it is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; else a ``ValueError`` saying what is accepted."""
    if not isinstance(value, str):
        raise ValueError(f"must be one of {DEVICE_CHOICES}, got {value!r}")
    if _SPEC.fullmatch(value) is None:
        raise ValueError(f"must be one of {DEVICE_CHOICES}, got {value!r}")
    return value


def _cuda_summary() -> str:
    """What this machine has, in words (for the error of a missing CUDA device)."""
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is built without CUDA"
    if not torch.cuda.is_available():
        return f"no CUDA GPU is visible (torch {torch.__version__}, CUDA {torch.version.cuda})"
    n = torch.cuda.device_count()
    return f"this machine has {n} CUDA device{'s' if n != 1 else ''} (cuda:0{f'..cuda:{n - 1}' if n > 1 else ''})"


def resolve_device(spec: str | torch.device | None, where: str = "device") -> torch.device:
    """The ``torch.device`` that ``spec`` names on this machine (module docstring); None is ``auto``.

    Raises:
        DeviceError: naming ``where``, for a malformed spec or a CUDA device this machine does not have.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    if spec is None:
        spec = "auto"
    try:
        check_device_spec(spec)
    except ValueError as err:
        raise DeviceError(f"{where}: {err}") from None
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"{where}: {spec!r} asks for a CUDA GPU, but {_cuda_summary()}; use auto or cpu")
    index = int(spec.split(":")[1]) if ":" in spec else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise DeviceError(f"{where}: {spec!r} is not a device of this machine: {_cuda_summary()}")
    return torch.device("cuda", index)


def _has_device_tensor(obj: Any) -> bool:
    if isinstance(obj, torch.Tensor):
        return obj.device.type != "cpu"
    if isinstance(obj, dict):
        return any(_has_device_tensor(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return any(_has_device_tensor(v) for v in obj)
    return False


def _cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        out = type(obj)()
        for k, v in obj.items():
            out[k] = _cpu(v)
        if hasattr(obj, "_metadata"):  # a module state_dict's version record
            out._metadata = obj._metadata  # type: ignore[attr-defined]
        return out
    if isinstance(obj, list):
        return [_cpu(v) for v in obj]
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(_cpu(v) for v in obj)
    return obj


def to_cpu(obj: Any) -> Any:
    """``obj`` (tensors in dicts, lists and tuples, e.g. a state dict) with every tensor on the CPU.

    ``obj`` itself when it holds no tensor elsewhere, so what a CPU training writes is unchanged byte for byte.
    """
    return _cpu(obj) if _has_device_tensor(obj) else obj
