"""On-disk cache of generated frames: ``x.npy``, ``y.npy``, ``snr.npy`` and ``manifest.json`` per data set.

A data set lives in ``data_dir/amc-<preset>-seed<seed>-pp<per_pair>-<key>``, ``key`` a hash of every option
that changes the frames (the preset's full definition, seed, per_pair, classes, SNRs, normalization,
amplitude and :data:`.generator.GENERATOR_VERSION`). :func:`generate_cached` reuses the folder when its
manifest records exactly these options and the arrays have the recorded shapes and dtypes; otherwise (no
folder, unreadable or truncated files, another generator version) it regenerates. Writing is atomic: the
files go to a temporary folder in ``data_dir`` that is renamed into place only when complete, so an
interrupted run leaves no half-written data set under the final name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .generator import (
    AMPLITUDES,
    GENERATOR_VERSION,
    NORMALIZATIONS,
    AMCData,
    AMCError,
    _check_choice,
    _check_int,
    _select,
    generate,
    resolve_preset,
)

__all__ = ["MANIFEST", "cache_folder", "generate_cached"]

MANIFEST = "manifest.json"
"""Name of the manifest file in a cache folder."""
_FILES = ("x", "y", "snr")


def _options(preset: Any, per_pair: int, seed: int, classes: Sequence[str] | None, snrs: Sequence[int] | None,
             normalization: str, amplitude: str) -> dict[str, Any]:
    p = resolve_preset(preset)
    per_pair = _check_int("per_pair", per_pair, 1)
    seed = _check_int("seed", seed, 0)
    _check_choice("normalization", normalization, NORMALIZATIONS)
    _check_choice("amplitude", amplitude, AMPLITUDES)
    names, snr_values = _select(p, classes, snrs)
    definition = dataclasses.asdict(p)
    opts = {"version": GENERATOR_VERSION, "preset": p.name, "preset_definition": definition, "seed": seed,
            "per_pair": per_pair, "classes": names, "snrs": snr_values, "normalization": normalization,
            "amplitude": amplitude}
    return json.loads(json.dumps(opts))  # tuples → lists, as they come back from the manifest


def cache_folder(data_dir: str | os.PathLike[str], options: dict[str, Any]) -> Path:
    """The folder of the data set described by ``options`` (see the module docstring)."""
    key = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:12]
    return Path(data_dir) / f"amc-{options['preset']}-seed{options['seed']}-pp{options['per_pair']}-{key}"


def _load(folder: Path, options: dict[str, Any]) -> AMCData | None:
    """The cached data set in ``folder`` if it matches ``options`` and is intact, else None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        if manifest.get("options") != options:
            return None
        arrays = {}
        for name in _FILES:
            a = np.load(folder / f"{name}.npy", allow_pickle=False)
            spec = manifest["files"][f"{name}.npy"]
            if list(a.shape) != spec["shape"] or str(a.dtype) != spec["dtype"]:
                return None
            arrays[name] = a
        n = len(options["classes"]) * len(options["snrs"]) * options["per_pair"]
        if manifest["counts"]["frames"] != n or len(arrays["x"]) != n:
            return None
        return AMCData(x=arrays["x"], y=arrays["y"], snr=arrays["snr"], classes=tuple(manifest["classes"]))
    except (OSError, ValueError, KeyError, TypeError, AMCError):
        return None


def _write(folder: Path, data: AMCData, options: dict[str, Any]) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        files = {}
        for name in _FILES:
            a = getattr(data, name)
            np.save(tmp / f"{name}.npy", a, allow_pickle=False)
            files[f"{name}.npy"] = {"shape": list(a.shape), "dtype": str(a.dtype)}
        counts = {"frames": len(data), "classes": len(data.classes), "snrs": len(options["snrs"]),
                  "per_pair": options["per_pair"],
                  "per_class": {c: int(np.sum(data.y == i)) for i, c in enumerate(data.classes)}}
        manifest = {"format": "hwnas-amc-cache", "options": options, "classes": list(data.classes),
                    "counts": counts, "files": files, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(folder, old)
        try:
            os.rename(tmp, folder)
        except OSError:
            if _load(folder, options) is None:  # another process did not just write a good copy
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def generate_cached(preset: Any, per_pair: int, *, seed: int, data_dir: str | os.PathLike[str],
                    snrs: Sequence[int] | None = None, classes: Sequence[str] | None = None,
                    normalization: str = "unit_power", amplitude: str = "snr", progress: bool = True,
                    workers: int = 1) -> AMCData:
    """Like :func:`.generator.generate`, through the cache folder in ``data_dir`` (created if needed).

    A matching, intact cache is loaded; otherwise the data are generated and written atomically.
    ``progress`` and ``workers`` do not change the data and are not part of the cache key.
    """
    options = _options(preset, per_pair, seed, classes, snrs, normalization, amplitude)
    folder = cache_folder(data_dir, options)
    cached = _load(folder, options)
    if cached is not None:
        return cached
    data = generate(preset, per_pair, seed=seed, snrs=snrs, classes=classes, normalization=normalization,
                    amplitude=amplitude, progress=progress, workers=workers)
    _write(folder, data, options)
    return data
