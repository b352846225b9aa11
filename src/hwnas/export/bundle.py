"""Model files: a quantized module, its input shape, optional test inputs and metadata, readable without running code.

Contract (format :data:`FORMAT`, described in ``docs/export.md`` "Model files"): :func:`save_model` writes one
ZIP archive, atomically (temporary file, then rename), holding

* ``hwnas-model.json`` — ``format``, the writing ``hwnas`` version, ``input_shape``, JSON ``metadata`` (task,
  trial, metrics), whether test inputs are present, and ``payload_sha256``, the SHA-256 of the payload;
* ``payload.pt`` — ``torch.save`` of ``{"model": module, "test_inputs": tensor | None}``.

:func:`load_model` checks the format and the digest, then reads the payload with
``torch.load(weights_only=True)`` under an explicit allow-list of classes (:func:`safe_classes`: hwnas's
layers and quantizers, the ``torch.nn`` containers and modules hwnas models use, and classes a program
registered with :func:`allow_classes`). Anything else a file names — ``os.system``, ``builtins.eval``, a
class of another package — is refused with :class:`~hwnas.errors.UnsafeFileError` before anything is
constructed, so a file cannot run code. Files of the first format (``hwnas-model/1``, a plain
``torch.save`` pickle) are read the same way. ``trust=True`` (``--trust`` on the command line) also admits the
``nn.Module`` subclasses and enums a file names, imported from installed packages, still weights-only: never
a function (``builtins.exec``, ``os.system``) nor any other class. A missing, truncated, corrupt or tampered
file, or a model with non-finite weights, raises :class:`ModelFileError` naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError, UnsafeFileError, first_line

__all__ = ["FORMAT", "LEGACY_FORMAT", "ModelBundle", "ModelFileError", "allow_classes", "load_model",
           "safe_classes", "save_model"]

FORMAT = "hwnas-model/2"
"""Identifier stored in (and required from) every model file this version writes."""

LEGACY_FORMAT = "hwnas-model/1"
"""The first format: one ``torch.save`` pickle of a dict; still read (under the same allow-list)."""

MANIFEST = "hwnas-model.json"
PAYLOAD = "payload.pt"
MAX_MANIFEST_BYTES = 4 << 20
"""A manifest larger than this is refused (metadata is a few kB)."""

_extra_classes: list[type] = []


class ModelFileError(HwnasError, ValueError):
    """A model file that is missing, not an hwnas model file, corrupt or tampered with."""


@dataclass
class ModelBundle:
    """A loaded model file."""

    model: nn.Module
    input_shape: tuple[int, ...]
    test_inputs: torch.Tensor | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def allow_classes(*classes: type) -> None:
    """Let model files hold instances of ``classes`` (your own ``nn.Module`` subclasses, say).

    Call it before :func:`save_model` and before :func:`load_model` of such files, in every program that
    reads them: the allow-list is what keeps a model file from running code, so add only classes whose
    construction from stored attributes is harmless (plain modules are).
    """
    for cls in classes:
        if not isinstance(cls, type):
            raise TypeError(f"allow_classes: expected classes, got {cls!r}")
        if cls not in _extra_classes:
            _extra_classes.append(cls)


def safe_classes() -> list[Any]:
    """The allow-list of :func:`load_model`: every class (and callable) a model file may name."""
    from hwnas.nn import activation, blocks, layers, normalization
    from hwnas.quant import fixed_quantizer, granularity, modes, scaled

    own: list[Any] = [
        layers.QLinear, layers.QConv1d, layers.QConv2d,
        activation.QActivation, activation.QMaxPool1d, activation.QMaxPool2d, activation.QAvgPool1d,
        activation.QAvgPool2d, blocks.QResidualBlock, normalization.QSoftmax, normalization.QLayerNorm,
        normalization.FixedType, normalization.SoftmaxConfig, normalization.LayerNormConfig,
        fixed_quantizer.FixedPointQuantizer, scaled.ScaledIntQuantizer, scaled.Float16Quantizer,
        granularity.PerTensor, granularity.PerChannel, granularity.PerParameter,
        modes.RoundingMode, modes.OverflowMode,
    ]
    torch_modules: list[Any] = [
        nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout,
        nn.ReLU, nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.MaxPool1d, nn.MaxPool2d,
        nn.AvgPool1d, nn.AvgPool2d, nn.parameter.UninitializedParameter, nn.parameter.UninitializedBuffer,
    ]
    return [*own, *torch_modules, set, *_extra_classes]


def _jsonable(value: Any, where: str) -> Any:
    """``value`` as plain JSON types (tuples → lists, NumPy/torch scalars → numbers); others raise."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, torch.Tensor | np.ndarray | np.generic):
        return _jsonable(value.tolist(), where)
    raise ValueError(f"{where}: {type(value).__name__} is not JSON data (model file metadata is JSON)")


def _unsafe_names(model: nn.Module) -> list[str]:
    """Classes in ``model`` that :func:`load_model` would refuse (so :func:`save_model` refuses them first)."""
    allowed = set(safe_classes())
    bad = sorted({f"{name or '<model>'} ({type(m).__module__}.{type(m).__qualname__})"
                  for name, m in model.named_modules() if type(m) not in allowed})
    return bad


def save_model(model: nn.Module, path: str | os.PathLike[str], input_shape: tuple[int, ...], *,
               test_inputs: torch.Tensor | None = None, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (eval mode) with its input shape, optional test inputs and metadata to ``path``.

    Raises ``ValueError`` for bad shapes or inputs, non-JSON metadata, or a module of a class outside the
    allow-list (:func:`allow_classes` adds yours).
    """
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"input_shape: must be positive sizes, got {input_shape!r}")
    if test_inputs is not None:
        test_inputs = torch.as_tensor(test_inputs, dtype=torch.float32).detach().cpu()
        if tuple(test_inputs.shape[1:]) != shape:
            raise ValueError(f"test_inputs: samples of shape {tuple(test_inputs.shape[1:])}, expected {shape}")
        if not torch.isfinite(test_inputs).all():
            raise ValueError("test_inputs: contain NaN or infinity")
    bad = _unsafe_names(model)
    if bad:
        raise ValueError(f"model: {', '.join(bad[:3])} {'is' if len(bad) == 1 else 'are'} not a class a model "
                         "file may hold (hwnas layers and torch.nn containers); register your own classes with "
                         "hwnas.export.allow_classes")
    meta = _jsonable(dict(metadata or {}), "metadata")
    model.eval()
    with torch.no_grad():
        model(torch.zeros((1, *shape)))  # fails here, naming the problem, rather than at load time
    buf = io.BytesIO()
    torch.save({"model": model, "test_inputs": test_inputs}, buf)
    payload = buf.getvalue()
    from hwnas import __version__

    manifest = {"format": FORMAT, "hwnas_version": __version__, "input_shape": list(shape),
                "test_inputs": None if test_inputs is None else list(test_inputs.shape),
                "payload_sha256": hashlib.sha256(payload).hexdigest(), "metadata": meta}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as z:
            z.writestr(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
            z.writestr(PAYLOAD, payload)
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _read_container(path: Path) -> tuple[dict[str, Any], bytes] | None:
    """(manifest, payload) of a :data:`FORMAT` file; ``None`` for a file of the first format."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if MANIFEST not in names:
                return None  # torch's own archive: the first format (or not a model file at all)
            info = z.getinfo(MANIFEST)
            if info.file_size > MAX_MANIFEST_BYTES:
                raise ModelFileError(f"{path}: the manifest is {info.file_size} bytes, over the "
                                     f"{MAX_MANIFEST_BYTES} allowed")
            manifest = json.loads(z.read(MANIFEST).decode("utf-8"))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                found = manifest.get("format") if isinstance(manifest, dict) else None
                raise ModelFileError(f"{path}: format {found!r}, this hwnas reads {FORMAT} (and {LEGACY_FORMAT}); "
                                     "a newer hwnas wrote it?")
            if PAYLOAD not in names:
                raise ModelFileError(f"{path}: the archive has no {PAYLOAD}; the file is incomplete")
            payload = z.read(PAYLOAD)
    except ModelFileError:
        raise
    except zipfile.BadZipFile:
        return None
    except (zipfile.LargeZipFile, OSError, UnicodeDecodeError, json.JSONDecodeError, EOFError) as err:
        raise ModelFileError(f"{path}: a corrupt model file ({_brief(err)})") from err
    except Exception as err:  # zlib errors and other malformed-archive errors (CRC mismatch is BadZipFile)
        raise ModelFileError(f"{path}: a corrupt model file ({_brief(err)})") from err
    digest = hashlib.sha256(payload).hexdigest()
    if manifest.get("payload_sha256") != digest:
        raise ModelFileError(f"{path}: the payload's SHA-256 does not match the manifest's: the file was "
                             "altered or damaged after it was written")
    return manifest, payload


def _brief(err: BaseException) -> str:
    """The informative line of an error (torch's weights-only refusals put theirs after a long preamble)."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        return first_line(ValueError(text.split("WeightsUnpickler error:", 1)[1]))
    return first_line(err)


def _trusted_classes(path: Path, names: list[str]) -> list[type]:
    """``--trust``: the module classes (and enums) a file names, imported from installed packages; never a function.

    Even a trusted file is read weights-only: what it names must be a ``torch.nn.Module`` subclass or an enum, so
    ``builtins.exec``, ``os.system`` or ``subprocess.Popen`` are refused whatever the flag says.
    """
    import enum
    import importlib

    out = []
    for name in names:
        module, _, attr = name.rpartition(".")
        try:
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError, ValueError) as err:
            raise ModelFileError(f"{path}: names {name}, which cannot be imported here ({_brief(err)})") from err
        if not (isinstance(obj, type) and issubclass(obj, nn.Module | enum.Enum)):
            raise UnsafeFileError(f"{path}: names {name}, which is not a module class: a model file never needs it "
                                  "and it may carry code; refused even with --trust")
        out.append(obj)
    return out


def _load_payload(path: Path, source: str | os.PathLike[str] | io.BytesIO, trust: bool) -> Any:
    """``torch.load(weights_only=True)`` of a payload under the allow-list (with ``trust``: plus the file's classes)."""
    if isinstance(source, io.BytesIO):
        source.seek(0)
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(source)
    except Exception:  # not a torch archive at all (or a legacy non-zip pickle): weights_only decides below
        unsafe = None
    allowed = {f"{c.__module__}.{c.__qualname__}" for c in safe_classes()} | {"builtins.set", "__builtin__.set"}
    foreign = sorted(set(unsafe or ()) - allowed)
    extra: list[type] = []
    if foreign and trust:
        extra = _trusted_classes(path, foreign)
    elif foreign:
        raise UnsafeFileError(
            f"{path}: names {', '.join(foreign[:4])}{' …' if len(foreign) > 4 else ''}, which an hwnas model "
            "file never needs: it may carry code and is not loaded (if you wrote this file yourself with your "
            "own module classes, register them with hwnas.export.allow_classes, or pass --trust / trust=True)")
    if isinstance(source, io.BytesIO):
        source.seek(0)
    try:
        with torch.serialization.safe_globals([*safe_classes(), *extra]):
            return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # the unpickler's refusal, or a truncated / malformed archive
        text = str(err)
        if "Unsupported global" in text or "Unsupported class" in text:
            raise UnsafeFileError(f"{path}: holds objects a model file never needs: it may carry code and is not "
                                  f"loaded ({_brief(err)})") from err
        raise ModelFileError(f"{path}: not a readable hwnas model file ({_brief(err)})") from err


def _check_finite(model: nn.Module, path: Path) -> None:
    for name, p in model.named_parameters():
        if p.is_floating_point() and not isinstance(p, nn.parameter.UninitializedParameter) \
                and not torch.isfinite(p).all():
            raise ModelFileError(f"{path}: parameter {name} holds NaN or infinity; the model cannot be quantized, "
                                 "exported or verified")
    for name, b in model.named_buffers():
        if b.is_floating_point() and not isinstance(b, nn.parameter.UninitializedBuffer) and torch.isnan(b).any():
            raise ModelFileError(f"{path}: buffer {name} holds NaN")


def load_model(path: str | os.PathLike[str], *, trust: bool = False) -> ModelBundle:
    """Read a file written by :func:`save_model` (either format); see the module docstring.

    Raises:
        ModelFileError: missing, not a model file, corrupt, tampered with (digest), non-finite weights.
        UnsafeFileError: the file names classes outside the allow-list (it could run code), without ``trust``.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    container = _read_container(path)
    if container is not None:
        manifest, payload = container
        data = _load_payload(path, io.BytesIO(payload), trust)
        if not isinstance(data, dict):
            raise ModelFileError(f"{path}: the payload is not a model record")
        shape_src: Iterable[Any] = manifest.get("input_shape") or ()
        metadata = manifest.get("metadata") or {}
    else:
        data = _load_payload(path, path, trust)
        if not isinstance(data, dict) or data.get("format") != LEGACY_FORMAT:
            raise ModelFileError(f"{path}: not an hwnas model file (save it with hwnas.export.save_model)")
        shape_src = data.get("input_shape", ())
        metadata = data.get("metadata") or {}
    model = data.get("model")
    if not isinstance(model, nn.Module):
        raise ModelFileError(f"{path}: the 'model' entry is not a torch module")
    try:
        shape = tuple(int(d) for d in shape_src)
    except (TypeError, ValueError):
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise ModelFileError(f"{path}: the input shape is missing or malformed")
    x = data.get("test_inputs")
    if x is not None and (not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != shape):
        raise ModelFileError(f"{path}: the test inputs do not match the input shape {shape}")
    if x is not None and not torch.isfinite(x).all():
        raise ModelFileError(f"{path}: the test inputs contain NaN or infinity")
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{path}: the metadata is not a mapping")
    _check_finite(model, path)
    model.eval()
    return ModelBundle(model, shape, x, dict(metadata), path)

