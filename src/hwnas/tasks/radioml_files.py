"""Readers for the real RadioML files, for users who have them (nothing is downloaded here).

* RadioML 2018.01A (``GOLD_XYZ_OSC.0001_1024.hdf5``): datasets ``X`` (N, 1024, 2) float32 I/Q,
  ``Y`` (N, 24) one-hot, ``Z`` (N, 1) SNR in dB. The class order is the corrected one
  (:data:`RML2018_CLASSES`; the ``classes.txt`` shipped with the dataset lists them in a wrong order).
* RadioML 2016.10a (``RML2016.10a_dict.pkl``): a pickled dict ``{(modulation, snr): ndarray (N, 2, 128)}``,
  written by Python 2 (keys may be bytes). Frames are relabelled to :data:`RML2016_CLASSES`' order.

Both return an :class:`~hwnas.tasks.amc.AMCData` (x (N, 2, L) float32, y int64, snr int16, classes) like
the generator, so the same splits, metrics and training code apply. The pickle is read with an unpickler
that only admits NumPy arrays, dtypes and plain containers, so a malicious file cannot run code.
"""

from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from hwnas.errors import HwnasError, first_line

# RadioML 2018.01A's one-hot column order (the corrected one) and hwnas's class order for RadioML 2016.10a
# are the generator presets' orders, so real and generated data share labels.
from .amc.presets import RML2016_CLASSES, RML2018_CLASSES

__all__ = ["RML2016_CLASSES", "RML2018_CLASSES", "RadioMLFileError", "read_rml2016_pickle", "read_rml2018_hdf5",
           "rml2018_labels"]


class RadioMLFileError(HwnasError, ValueError):
    """A RadioML file is missing, unreadable or not in the expected format (the message names the file)."""


_F = TypeVar("_F", bound=Callable[..., Any])


def _file_errors(func: _F) -> _F:
    """Turn whatever a damaged file makes h5py / NumPy / the unpickler raise into a RadioMLFileError naming it."""

    @functools.wraps(func)
    def wrapper(path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> Any:
        try:
            return func(path, *args, **kwargs)
        except RadioMLFileError:
            raise
        except Exception as err:  # a corrupt file fails in many ways (KeyError, OSError, struct.error, …)
            raise RadioMLFileError(f"{path}: not a readable RadioML file ({type(err).__name__}: "
                                   f"{first_line(err)})") from err

    return wrapper  # type: ignore[return-value]


def _existing(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.is_file():
        raise RadioMLFileError(f"{p}: file not found")
    return p


def _open_rml2018(path: str | os.PathLike[str], keys: tuple[str, ...]) -> tuple[Path, Any]:
    """The open HDF5 file (caller closes it), after checking it has the datasets ``keys``."""
    import h5py

    p = _existing(path)
    try:
        f = h5py.File(p, "r")
    except OSError as err:
        raise RadioMLFileError(f"{p}: not an HDF5 file ({err})") from err
    missing = [k for k in keys if k not in f]
    if missing:
        f.close()
        raise RadioMLFileError(f"{p}: dataset {missing[0]!r} missing (RadioML 2018.01A has X, Y, Z)")
    return p, f


@_file_errors
def read_rml2018_hdf5(path: str | os.PathLike[str], *, indices: np.ndarray | None = None) -> Any:
    """Read RadioML 2018.01A from ``path``; ``indices`` (sorted or not) reads only those frames.

    Raises :class:`RadioMLFileError` naming the file and the dataset when ``X``, ``Y`` or ``Z`` is missing
    or has the wrong shape, or when ``Y`` is not one-hot.
    """
    from .amc import AMCData

    p, f = _open_rml2018(path, ("X", "Y", "Z"))
    with f:
        xd, yd, zd = f["X"], f["Y"], f["Z"]
        n = xd.shape[0]
        if len(xd.shape) != 3 or xd.shape[2] != 2:
            raise RadioMLFileError(f"{p}: dataset 'X' has shape {xd.shape}, expected (N, L, 2)")
        if yd.shape != (n, len(RML2018_CLASSES)):
            raise RadioMLFileError(f"{p}: dataset 'Y' has shape {yd.shape}, expected ({n}, {len(RML2018_CLASSES)})")
        if zd.shape not in ((n,), (n, 1)):
            raise RadioMLFileError(f"{p}: dataset 'Z' has shape {zd.shape}, expected ({n}, 1)")
        if indices is None:
            x, y, z = xd[...], yd[...], zd[...]
        else:
            idx = np.asarray(indices, dtype=np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise RadioMLFileError(f"{p}: indices outside 0..{n - 1}")
            order = np.argsort(idx, kind="stable")
            uniq, inverse = np.unique(idx[order], return_inverse=True)
            back = np.empty_like(order)
            back[order] = np.arange(order.size)
            pick = inverse[back]  # h5py needs increasing unique indices
            x, y, z = xd[uniq][pick], yd[uniq][pick], zd[uniq][pick]
    y = np.asarray(y)
    if y.size and not (np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1)):
        raise RadioMLFileError(f"{p}: dataset 'Y' is not one-hot")
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32).transpose(0, 2, 1))
    return AMCData(x=x, y=y.argmax(axis=1).astype(np.int64), snr=np.asarray(z).reshape(-1).astype(np.int16),
                   classes=RML2018_CLASSES)


@_file_errors
def rml2018_labels(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """(class indices int64, SNR int16) of every frame of a RadioML 2018.01A file, without reading ``X``."""
    p, f = _open_rml2018(path, ("Y", "Z"))
    with f:
        y, z = np.asarray(f["Y"][...]), np.asarray(f["Z"][...])
    if y.ndim != 2 or y.shape[1] != len(RML2018_CLASSES) or z.reshape(-1).shape[0] != y.shape[0]:
        raise RadioMLFileError(f"{p}: datasets 'Y' {y.shape} / 'Z' {z.shape} are not (N, 24) / (N, 1)")
    return y.argmax(axis=1).astype(np.int64), z.reshape(-1).astype(np.int16)


class _SafeUnpickler(pickle.Unpickler):
    """Admits only what a pickled dict of NumPy arrays needs."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("builtins", "tuple"), ("__builtin__", "tuple"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a RadioML 2016 file")


@_file_errors
def read_rml2016_pickle(path: str | os.PathLike[str]) -> Any:
    """Read RadioML 2016.10a (or 2016.04c / 2016.10b) from its pickled dict.

    Frames are ordered by class (in :data:`RML2016_CLASSES` order), then SNR ascending, then file order.
    Raises :class:`RadioMLFileError` naming the file for a missing file, a non-dict pickle, an unknown
    modulation key or frames that are not (N, 2, L).
    """
    from .amc import AMCData

    p = _existing(path)
    try:
        with open(p, "rb") as fh:
            obj = _SafeUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, ImportError) as err:
        raise RadioMLFileError(f"{p}: not a RadioML 2016 pickle ({err})") from err
    if not isinstance(obj, dict) or not obj:
        raise RadioMLFileError(f"{p}: expected a non-empty dict {{(modulation, snr): frames}}, "
                               f"got {type(obj).__name__}")
    index = {c: i for i, c in enumerate(RML2016_CLASSES)}
    entries = []
    length = None
    for key, frames in obj.items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise RadioMLFileError(f"{p}: key {key!r} is not a (modulation, snr) pair")
        mod, snr = key
        mod = mod.decode("latin1") if isinstance(mod, bytes) else str(mod)
        if mod not in index:
            raise RadioMLFileError(f"{p}: unknown modulation {mod!r}; expected one of {list(RML2016_CLASSES)}")
        a = np.asarray(frames)
        if a.ndim != 3 or a.shape[1] != 2 or (length is not None and a.shape[2] != length):
            raise RadioMLFileError(f"{p}: frames for {key!r} have shape {a.shape}, expected (N, 2, {length or 'L'})")
        length = a.shape[2]
        entries.append((index[mod], int(snr), a.astype(np.float32, copy=False)))
    entries.sort(key=lambda e: (e[0], e[1]))
    x = np.concatenate([e[2] for e in entries])
    y = np.concatenate([np.full(len(e[2]), e[0], dtype=np.int64) for e in entries])
    snr = np.concatenate([np.full(len(e[2]), e[1], dtype=np.int16) for e in entries])
    return AMCData(x=np.ascontiguousarray(x), y=y, snr=snr, classes=RML2016_CLASSES)
