"""The jet-tagging tasks ``jets-hlf`` and ``jets-plf``: generated jets (:mod:`.generate`) → features (:mod:`.features`).

Contract: ``get_task("jets-hlf").load(seed=..., n_per_class=...)`` generates (or loads from the cache under
``data_dir``, ``$HWNAS_DATA`` or ``~/.cache/hwnas``) ``n_per_class`` jets of each class with the task's seed,
computes the features and returns a stratified train/val/test split; features are standardized with the training
split's mean and standard deviation unless ``standardize=False``. Jets whose groomed jet keeps one constituent
(HLF ratios 0/0, NaN as in fjcontrib) are dropped and counted in ``info["dropped"]``. See ``docs/tasks_jets.md``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .. import baselines
from ..registry import Split, Task, TaskData, TaskError, data_dir, register_task
from ..splits import stratified_split
from .features import HLF_NAMES, PLF_NAMES, JetFeatureError, hlf_features, plf_features
from .generate import CLASSES, DEFAULT_EVENTS_PER_SHARD, DEFAULT_PT_WINDOW, JetSample, JetsError, generate_jets

__all__ = ["CLASS_NAMES", "jet_sample", "jets_data_dir", "register_jet_tasks"]

CLASS_NAMES = {"g": "gluon", "q": "light quark", "w": "W", "z": "Z", "t": "top"}
"""Long names of the generator's class keys."""

_PLF_PARTICLES = (8, 16, 32, 64, 150)


def jets_data_dir(option: str | os.PathLike[str] | None) -> str:
    """Where the jet cache lives: the option, else ``$HWNAS_DATA``, else ``$XDG_CACHE_HOME/hwnas`` (``~/.cache``).

    Unlike the cheap generators, jets are always cached: generating them takes minutes to hours, and a search
    loads its task more than once (each stage, each worker).
    """
    chosen = data_dir(option)
    if chosen is not None:
        return chosen
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "hwnas")


def jet_sample(seed: int, o: Mapping[str, Any], task: str) -> JetSample:
    """The generated jets the task options ``o`` ask for (from or into the cache of :func:`jets_data_dir`)."""
    try:
        return generate_jets(o["n_per_class"], seed=seed, classes=o["classes"], pt_window=tuple(o["pt_window"]),
                             events_per_shard=o["events_per_shard"], workers=o["workers"], progress=o["progress"],
                             data_dir=jets_data_dir(o["data_dir"]))
    except JetsError as err:
        raise TaskError(f"task {task!r}: option {err.option!r}: {err.detail}") from None
    except TypeError as err:
        raise TaskError(f"task {task!r}: option 'pt_window': expected (pt_min, pt_max) in GeV ({err})") from None


def _splits(x: np.ndarray, y: np.ndarray, seed: int, o: Mapping[str, Any], standardize_axes: tuple[int, ...],
            mask: np.ndarray | None = None) -> tuple[Split, Split, Split, dict[str, Any]]:
    """Stratified val/test/train; standardization fitted on the training split only (padding stays zero)."""
    val, test, train = stratified_split(y, (o["val_fraction"], o["test_fraction"]), seed=seed)
    info: dict[str, Any] = {}
    if o["standardize"]:
        xt = x[train]
        if mask is None:
            mean = xt.mean(axis=standardize_axes, keepdims=True)
            std = xt.std(axis=standardize_axes, keepdims=True)
        else:  # per feature over real particles only; padded rows stay exactly zero
            m = mask[train][:, None, :]
            count = max(int(m.sum()), 1)
            mean = (xt * m).sum(axis=standardize_axes, keepdims=True) / count
            std = np.sqrt((((xt - mean) * m) ** 2).sum(axis=standardize_axes, keepdims=True) / count)
        std = np.where(std > 0, std, 1.0)
        x = (x - mean) / std
        if mask is not None:
            x = x * mask[:, None, :]
        info["standardization"] = {"mean": mean.reshape(-1).tolist(), "std": std.reshape(-1).tolist()}

    def part(idx: np.ndarray) -> Split:
        return Split(torch.from_numpy(np.ascontiguousarray(x[idx], dtype=np.float32)),
                     torch.from_numpy(np.asarray(y[idx], dtype=np.int64)))

    return part(train), part(val), part(test), info


def _check_common(task: str, o: Mapping[str, Any]) -> None:
    n = o["n_per_class"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise TaskError(f"task {task!r}: option 'n_per_class' must be a positive int, got {n!r}")
    for name in ("val_fraction", "test_fraction"):
        v = o[name]
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 < v < 1.0:
            raise TaskError(f"task {task!r}: option {name!r} must be in (0, 1), got {v!r}")


def _info(sample: JetSample, o: Mapping[str, Any], features: tuple[str, ...], dropped: int) -> dict[str, Any]:
    return {"source": "hwnas.tasks.jets.generate_jets (Pythia 8 + FastJet anti-kT R=0.8)",
            "classes": [CLASS_NAMES[c] for c in sample.classes], "n_per_class": o["n_per_class"],
            "pt_window": list(o["pt_window"]), "features": list(features), "dropped": dropped,
            "cache": jets_data_dir(o["data_dir"])}


def _load_hlf(seed: int, **o: Any) -> TaskData:
    _check_common("jets-hlf", o)
    sample = jet_sample(seed, o, "jets-hlf")
    x = hlf_features(sample.constituents, sample.n_constituents, jet=sample.jet)
    x[:, HLF_NAMES.index("multiplicity")] = sample.n_total  # all constituents, also beyond max_particles
    keep = np.isfinite(x).all(axis=1)
    x, y = x[keep], sample.y[keep]
    train, val, test, info = _splits(x, y, seed, o, (0,))
    return TaskData(train, val, test, sample.classes,
                    {**_info(sample, o, HLF_NAMES, int((~keep).sum())), **info})


def _check_plf(o: Mapping[str, Any]) -> None:
    n, pt = o["n_particles"], o["min_pt"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise TaskError(f"task 'jets-plf': option 'n_particles' must be a positive int (8, 32, 64 or 150 as in "
                        f"the seeds), got {n!r}")
    if n > 150:
        raise TaskError(f"task 'jets-plf': option 'n_particles' {n} is above the 150 constituents stored per jet")
    if isinstance(pt, bool) or not isinstance(pt, int | float) or not pt >= 0:
        raise TaskError(f"task 'jets-plf': option 'min_pt' must be a number >= 0 (GeV), got {pt!r}")


def _plf_shape(o: Mapping[str, Any]) -> tuple[int, ...]:
    """``(16, n_particles)``; a TaskError for invalid options."""
    _check_plf(o)
    return (len(PLF_NAMES), o["n_particles"])


def _load_plf(seed: int, **o: Any) -> TaskData:
    _check_common("jets-plf", o)
    _check_plf(o)
    sample = jet_sample(seed, o, "jets-plf")
    try:
        x = plf_features(sample.constituents, sample.n_constituents, n_particles=o["n_particles"],
                         min_pt=float(o["min_pt"]), jet=sample.jet)
    except JetFeatureError as err:
        raise TaskError(f"task 'jets-plf': {err}") from None
    x = np.transpose(x, (0, 2, 1)).astype(np.float64)  # (N, 16 features, particles): channels first
    mask = np.any(x != 0.0, axis=1)  # (N, particles) real particles
    y = sample.y
    train, val, test, info = _splits(x, y, seed, o, (0, 2), mask=mask)
    return TaskData(train, val, test, sample.classes,
                    {**_info(sample, o, PLF_NAMES, 0), **info, "layout": "(features, particles)",
                     "n_particles": o["n_particles"], "min_pt": o["min_pt"]})


_COMMON_DOCS = {
    "n_per_class": "jets per class (generated once, then loaded from the cache under data_dir)",
    "classes": "class keys out of g, q, w, z, t (labels index them in this order)",
    "pt_window": "(pt_min, pt_max) of the jets in GeV",
    "val_fraction": "share of every class for validation",
    "test_fraction": "share of every class for testing",
    "standardize": "subtract the training split's mean, divide by its standard deviation (per feature)",
    "data_dir": "folder for the jet cache (None: $HWNAS_DATA, else $XDG_CACHE_HOME/hwnas or ~/.cache/hwnas)",
    "events_per_shard": "Pythia events per cache shard (part of the cache key: another value gives other jets; "
                        "small shards suit tiny samples)",
    "workers": "generator processes (the jets do not depend on it)",
    "progress": "show a progress bar while generating",
}


def _common_defaults(n_per_class: int) -> dict[str, Any]:
    return {"n_per_class": n_per_class, "classes": CLASSES, "pt_window": DEFAULT_PT_WINDOW, "val_fraction": 0.1,
            "test_fraction": 0.2, "standardize": True, "data_dir": None, "events_per_shard": DEFAULT_EVENTS_PER_SHARD,
            "workers": min(2, os.cpu_count() or 1),
            "progress": True}


def _hlf_baseline(input_shape: tuple[int, ...], n_classes: int) -> torch.nn.Module:
    return baselines.mlp(input_shape, n_classes, hidden=(64, 32, 32))


def _plf_baseline(input_shape: tuple[int, ...], n_classes: int) -> torch.nn.Module:
    return baselines.mlp(input_shape, n_classes, hidden=(64, 32, 32))


def register_jet_tasks() -> None:
    """Register ``jets-hlf`` and ``jets-plf`` (called by :mod:`hwnas.tasks.builtin`)."""
    register_task(Task("jets-hlf", "generated jets (Pythia 8 + FastJet): g/q/W/Z/top from the 16 high-level "
                       "features of the hls4ml jet dataset", _load_hlf, _hlf_baseline, _common_defaults(2000),
                       option_docs=_COMMON_DOCS, shape=lambda o: (len(HLF_NAMES),)))
    register_task(Task("jets-plf", "generated jets (Pythia 8 + FastJet): g/q/W/Z/top from up to n_particles "
                       "constituents × 16 features, (features, particles)", _load_plf, _plf_baseline,
                       {**_common_defaults(2000), "n_particles": 32, "min_pt": 0.0},
                       option_docs={**_COMMON_DOCS, "n_particles": "constituents per jet, pT-ordered, zero-padded "
                                    f"(seeds: {', '.join(map(str, _PLF_PARTICLES))})",
                                    "min_pt": "drop constituents below this pT in GeV first (seed 001 §5.1.1: 8)"},
                       shape=_plf_shape))
