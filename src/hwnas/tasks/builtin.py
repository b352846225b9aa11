"""The built-in tasks (registered on first use of :func:`hwnas.tasks.get_task`).

==================  =====================================================================================
name                data
==================  =====================================================================================
``digits``          scikit-learn's 8×8 digits, flattened (64,), stratified 60/20/20 split
``digits-image``    the same as (1, 8, 8) images
``fashion-mnist``   Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (official test set; val from train)
``amc-rml2016``     generated RadioML-2016-like frames (11 classes, 2×128), splits per (class, SNR) pair
``amc-rml2018``     generated RadioML-2018-like frames (24 classes, 2×1024), splits per (class, SNR) pair
``radioml2018``     the real RadioML 2018.01A HDF5 file (option ``path``), optional homogeneous subset
``radioml2016``     the real RadioML 2016.10a pickle (option ``path``)
``qubit-readout``   simulated dispersive qubit readout, I/Q window flattened; metric: readout fidelity
``jets-hlf``        generated jets (Pythia 8 + FastJet), 5 classes, the 16 high-level features (docs/tasks_jets.md)
``jets-plf``        the same jets as (16 features, n_particles constituents)
==================  =====================================================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from . import baselines
from .registry import Split, Task, TaskData, TaskError, data_dir, register_task
from .splits import homogeneous_subset, split_per_pair, stratified_split

__all__: list[str] = []


def _split(x: np.ndarray, y: np.ndarray, idx: np.ndarray, snr: np.ndarray | None = None) -> Split:
    return Split(torch.from_numpy(np.ascontiguousarray(x[idx], dtype=np.float32)),
                 torch.from_numpy(np.asarray(y[idx], dtype=np.int64)),
                 None if snr is None else np.asarray(snr[idx]))


def _three_way(x: np.ndarray, y: np.ndarray, snr: np.ndarray | None, *, val_fraction: float, test_fraction: float,
               seed: int) -> tuple[Split, Split, Split]:
    """Test, then validation frames taken per (class, SNR) group; the rest is training data."""
    val, test, train = stratified_split(y, (val_fraction, test_fraction), seed=seed, snr=snr)
    return _split(x, y, train, snr), _split(x, y, val, snr), _split(x, y, test, snr)


def _check_positive(task: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TaskError(f"task {task!r}: option {name!r} must be a positive int, got {value!r}")


# --------------------------------------------------------------------------------------------- images
def _load_digits(seed: int, *, val_fraction: float, test_fraction: float, image: bool) -> TaskData:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    if image:
        x = x.reshape(-1, 1, 8, 8)
    train, val, test = _three_way(x, y, None, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    return TaskData(train, val, test, tuple(str(d) for d in range(10)),
                    {"source": "sklearn.datasets.load_digits", "pixels": "value/16 (exact 4 fractional bits)"})


def _digits_shape(o: Mapping[str, Any]) -> tuple[int, ...]:
    return (1, 8, 8) if o["image"] else (64,)


def _digits_baseline(input_shape: tuple[int, ...], n_classes: int) -> torch.nn.Module:
    if len(input_shape) == 3:
        return baselines.image_cnn(input_shape, n_classes, channels=(8, 16))
    return baselines.mlp(input_shape, n_classes, hidden=(32,))


def _load_fashion(seed: int, *, root: str | None, val_fraction: float, flatten: bool) -> TaskData:
    from .images import load_fashion_mnist

    d = load_fashion_mnist(root=root)
    x_tr, y_tr, x_te, y_te = d.x_train, d.y_train, d.x_test, d.y_test
    shape = (-1, 28 * 28) if flatten else (-1, 1, 28, 28)
    x_tr, x_te = x_tr.reshape(shape), x_te.reshape(shape)
    val, train = stratified_split(y_tr, (val_fraction,), seed=seed)
    return TaskData(_split(x_tr, y_tr, train), _split(x_tr, y_tr, val),
                    _split(x_te, y_te, np.arange(len(y_te))), tuple(d.classes),
                    {"source": str(d.source), "test": "official 10,000-image test set"})


# ------------------------------------------------------------------------------------------------ AMC
def _amc_loader(preset: str) -> Any:
    """The loader of the generated AMC task for ``preset``."""

    def _load(seed: int, **o: Any) -> TaskData:
        from .amc import generate, generate_cached

        _check_positive(f"amc-{preset}", "per_pair", o["per_pair"])
        kw = dict(seed=seed, snrs=o["snrs"], classes=o["classes"], normalization=o["normalization"],
                  amplitude=o["amplitude"], progress=o["progress"], workers=o["workers"])
        folder = data_dir(o["data_dir"])
        data = (generate_cached(preset, o["per_pair"], data_dir=folder, **kw) if folder
                else generate(preset, o["per_pair"], **kw))
        info = {"source": f"hwnas.tasks.amc.generate({preset!r})", "per_pair": o["per_pair"],
                "normalization": o["normalization"], "amplitude": o["amplitude"], "cache": folder}
        return _file_splits(data, seed, o["val_fraction"], o["test_fraction"], 2018, info)

    return _load


_AMC_DOCS = {
    "per_pair": "frames per (class, SNR) pair",
    "snrs": "SNRs in dB to generate (None: the preset's full range)",
    "classes": "class names to generate (None: all of the preset's)",
    "normalization": "'unit_power', 'rml2016_l1' or 'none' (per frame)",
    "amplitude": "'snr' (noise from the measured signal power) or 'rml2016' (RadioML 2016's convention)",
    "val_fraction": "share of every (class, SNR) pair used for validation",
    "test_fraction": "share of every (class, SNR) pair used for testing (RadioML challenge: 0.1)",
    "data_dir": "folder for the .npy cache (None: $HWNAS_DATA, else no cache)",
    "progress": "show a progress bar while generating",
    "workers": "generator processes (the data do not depend on it)",
}


def _amc_defaults(per_pair: int) -> dict[str, Any]:
    return {"per_pair": per_pair, "snrs": None, "classes": None, "normalization": "unit_power",
            "amplitude": "snr", "val_fraction": 0.1, "test_fraction": 0.1, "data_dir": None, "progress": True,
            "workers": min(2, os.cpu_count() or 1)}


def _amc_baseline(input_shape: tuple[int, ...], n_classes: int) -> torch.nn.Module:
    return baselines.amc_vgg(input_shape, n_classes)


# --------------------------------------------------------------------------------------- RadioML files
def _require_path(task: str, path: Any) -> str:
    if path is None:
        raise TaskError(f"task {task!r}: option 'path' is required (the dataset file; nothing is downloaded)")
    return str(path)


def _load_rml2018(seed: int, *, path: Any, subset_fraction: Any, val_fraction: float, test_fraction: float,
                  split_seed: int) -> TaskData:
    from .radioml_files import read_rml2018_hdf5, rml2018_labels

    path = _require_path("radioml2018", path)
    idx = None
    if subset_fraction is not None:
        y, snr = rml2018_labels(path)
        idx = homogeneous_subset(y, snr, fraction=subset_fraction, seed=seed)
    data = read_rml2018_hdf5(path, indices=idx)
    return _file_splits(data, seed, val_fraction, test_fraction, split_seed,
                        {"source": path, "subset_fraction": subset_fraction})


def _load_rml2016(seed: int, *, path: Any, val_fraction: float, test_fraction: float, split_seed: int) -> TaskData:
    from .radioml_files import read_rml2016_pickle

    path = _require_path("radioml2016", path)
    return _file_splits(read_rml2016_pickle(path), seed, val_fraction, test_fraction, split_seed, {"source": path})


def _file_splits(data: Any, seed: int, val_fraction: float, test_fraction: float, split_seed: int,
                 info: dict[str, Any]) -> TaskData:
    trainval, test = split_per_pair(data.y, data.snr, test_fraction=test_fraction, seed=split_seed)
    val_rel = val_fraction / (1.0 - test_fraction)
    val_local, train_local = split_per_pair(data.y[trainval], data.snr[trainval], test_fraction=val_rel,
                                            seed=seed)[::-1]
    train, val = trainval[train_local], trainval[val_local]
    return TaskData(_split(data.x, data.y, train, data.snr), _split(data.x, data.y, val, data.snr),
                    _split(data.x, data.y, test, data.snr), tuple(data.classes), info)


# ---------------------------------------------------------------------------------------- qubit readout
def _load_qubit(seed: int, *, n_shots: int, window_start: int, window_size: int, val_fraction: float,
                test_fraction: float, config: Any) -> TaskData:
    from .qubit import ReadoutConfig, readout_window, simulate_readout

    _check_positive("qubit-readout", "n_shots", n_shots)
    _qubit_shape({"config": config, "window_start": window_start, "window_size": window_size})
    cfg = config if isinstance(config, ReadoutConfig) else ReadoutConfig(**(config or {}))
    sim = simulate_readout(n_shots, seed=seed, config=cfg)
    x = readout_window(sim.iq, window_start, window_size)
    train, val, test = _three_way(x, sim.label, None, val_fraction=val_fraction, test_fraction=test_fraction,
                                  seed=seed)
    return TaskData(train, val, test, ("g", "e"),
                    {"source": "hwnas.tasks.qubit.simulate_readout", "window": (window_start, window_size),
                     "config": cfg})


def _qubit_shape(o: Mapping[str, Any]) -> tuple[int, ...]:
    """``(2·window_size,)``; a TaskError when the window does not lie inside a shot's samples."""
    from .qubit import ReadoutConfig

    try:
        cfg = o["config"] if isinstance(o["config"], ReadoutConfig) else ReadoutConfig(**(o["config"] or {}))
    except (TypeError, ValueError) as err:
        raise TaskError(f"task 'qubit-readout': option 'config': {err}") from None
    n, start, size = cfg.n_samples, o["window_start"], o["window_size"]
    for name, value in (("window_start", start), ("window_size", size)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TaskError(f"task 'qubit-readout': option {name!r} must be an int, got {value!r}")
    if not 0 <= start < n:
        raise TaskError(f"task 'qubit-readout': window_start {start} is outside the {n} samples of a shot "
                        f"(0 … {n - 1})")
    if size < 1:
        raise TaskError(f"task 'qubit-readout': window_size must be >= 1, got {size}")
    if start + size > n:
        raise TaskError(f"task 'qubit-readout': window_start {start} + window_size {size} = {start + size} runs past "
                        f"the {n} samples of a shot")
    return (2 * int(size),)


def _qubit_baseline(input_shape: tuple[int, ...], n_classes: int) -> torch.nn.Module:
    return baselines.mlp(input_shape, n_classes, hidden=(32, 16))


def _register() -> None:
    split_docs = {"val_fraction": "share of every class for validation", "test_fraction": "share for testing"}
    register_task(Task("digits", "scikit-learn's 8×8 digits, flattened to 64 features", _load_digits,
                       _digits_baseline, {"val_fraction": 0.2, "test_fraction": 0.2, "image": False},
                       option_docs={**split_docs, "image": "(1, 8, 8) images instead of 64 features"},
                       shape=_digits_shape))
    register_task(Task("digits-image", "scikit-learn's 8×8 digits as (1, 8, 8) images", _load_digits,
                       _digits_baseline, {"val_fraction": 0.2, "test_fraction": 0.2, "image": True},
                       option_docs={**split_docs, "image": "(1, 8, 8) images instead of 64 features"},
                       shape=_digits_shape))
    register_task(Task("fashion-mnist", "Fashion-MNIST (Debian dataset-fashion-mnist), (1, 28, 28) images",
                       _load_fashion, lambda s, n: baselines.image_cnn(s, n) if len(s) == 3 else baselines.mlp(s, n),
                       {"root": None, "val_fraction": 0.1, "flatten": False},
                       option_docs={"root": "folder with the IDX files (None: $HWNAS_FASHION_MNIST, then Debian's)",
                                    "val_fraction": "share of every class of the training set for validation",
                                    "flatten": "784 features instead of (1, 28, 28) images"},
                       shape=lambda o: (784,) if o["flatten"] else (1, 28, 28)))
    register_task(Task("amc-rml2016", "generated RadioML-2016-like AMC frames: 11 classes, 2×128, −20…18 dB",
                       _amc_loader("rml2016"), _amc_baseline, _amc_defaults(1000), option_docs=_AMC_DOCS,
                       shape=lambda o: (2, 128)))
    register_task(Task("amc-rml2018", "generated RadioML-2018-like AMC frames: 24 classes, 2×1024, −20…30 dB "
                       "(default 410 per pair ≈ MONAS-LQ's homogeneous 10 % of RadioML 2018.01A)",
                       _amc_loader("rml2018"), _amc_baseline, _amc_defaults(410), option_docs=_AMC_DOCS,
                       shape=lambda o: (2, 1024)))
    file_docs = {"path": "the dataset file (required)", "val_fraction": "share of every (class, SNR) pair for "
                 "validation", "test_fraction": "share of every (class, SNR) pair for testing",
                 "split_seed": "seed of the test split (RadioML challenge convention: 2018)"}
    register_task(Task("radioml2018", "RadioML 2018.01A from its HDF5 file", _load_rml2018, _amc_baseline,
                       {"path": None, "subset_fraction": None, "val_fraction": 0.1, "test_fraction": 0.1,
                        "split_seed": 2018},
                       option_docs={**file_docs, "subset_fraction": "homogeneous subset of every (class, SNR) "
                                    "pair, e.g. 0.1 (MONAS-LQ); None: all frames"}))
    register_task(Task("radioml2016", "RadioML 2016.10a from its pickle", _load_rml2016, _amc_baseline,
                       {"path": None, "val_fraction": 0.1, "test_fraction": 0.1, "split_seed": 2018},
                       option_docs=file_docs))
    register_task(Task("qubit-readout", "simulated dispersive readout of a superconducting qubit (I/Q window)",
                       _load_qubit, _qubit_baseline,
                       {"n_shots": 20000, "window_start": 100, "window_size": 400, "val_fraction": 0.15,
                        "test_fraction": 0.15, "config": None},
                       metric="fidelity",
                       option_docs={"n_shots": "simulated shots (half prepared in g, half in e)",
                                    "window_start": "first I/Q sample of the window (SNAC-Pack baseline: 100)",
                                    "window_size": "samples in the window; the input is I then Q: 2·size features",
                                    "val_fraction": "share of every class for validation",
                                    "test_fraction": "share of every class for testing",
                                    "config": "a ReadoutConfig or a dict of its fields (None: physical defaults)"},
                       shape=_qubit_shape))
    from .jets.task import register_jet_tasks

    register_jet_tasks()


_register()
