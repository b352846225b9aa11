"""A saved model the command line can export and verify: the module, its input shape, optional test inputs.

Contract: :func:`save_model` writes one file (``torch.save`` of a dict with ``format`` =
:data:`FORMAT`): the model object in eval mode (pickled with its quantizers, so it needs hwnas to load),
the per-sample ``input_shape``, optional ``test_inputs`` (a float tensor, N × input_shape) used by
``hwnas verify`` when no data file is given, and free-form ``metadata`` (task, trial, metrics). The file is
written atomically. :func:`load_model` checks the format and the shapes and returns a :class:`ModelBundle`.
Loading unpickles Python objects: only load files you trust (as with any ``torch.load(weights_only=False)``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["FORMAT", "ModelBundle", "load_model", "save_model"]

FORMAT = "hwnas-model/1"
"""Identifier stored in (and required from) every saved model file."""


@dataclass
class ModelBundle:
    """A loaded model file."""

    model: nn.Module
    input_shape: tuple[int, ...]
    test_inputs: torch.Tensor | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def save_model(model: nn.Module, path: str | os.PathLike[str], input_shape: tuple[int, ...], *,
               test_inputs: torch.Tensor | None = None, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (eval mode) with its input shape, optional test inputs and metadata to ``path``."""
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"input_shape: must be positive sizes, got {input_shape!r}")
    if test_inputs is not None:
        test_inputs = torch.as_tensor(test_inputs, dtype=torch.float32).detach().cpu()
        if tuple(test_inputs.shape[1:]) != shape:
            raise ValueError(f"test_inputs: samples of shape {tuple(test_inputs.shape[1:])}, expected {shape}")
        if not torch.isfinite(test_inputs).all():
            raise ValueError("test_inputs: contain NaN or infinity")
    model.eval()
    with torch.no_grad():
        model(torch.zeros((1, *shape)))  # fails here, naming the problem, rather than at load time
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save({"format": FORMAT, "model": model, "input_shape": list(shape), "test_inputs": test_inputs,
                    "metadata": dict(metadata or {})}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_model(path: str | os.PathLike[str]) -> ModelBundle:
    """Read a file written by :func:`save_model`; a missing file or another format raises ``ValueError``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such model file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ValueError(f"{path}: not a readable hwnas model file ({err})") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} model file (save it with hwnas.export.save_model)")
    model = data.get("model")
    if not isinstance(model, nn.Module):
        raise ValueError(f"{path}: the 'model' entry is not a torch module")
    shape = tuple(int(d) for d in data.get("input_shape", ()))
    if not shape:
        raise ValueError(f"{path}: the 'input_shape' entry is missing")
    model.eval()
    return ModelBundle(model, shape, data.get("test_inputs"), dict(data.get("metadata") or {}), path)
