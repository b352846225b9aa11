"""The jets-hlf / jets-plf tasks: generated jets → features → splits (docs/tasks_jets.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.tasks import TaskError, get_task
from hwnas.tasks.jets.features import HLF_NAMES, hlf_features
from hwnas.tasks.jets.task import jet_sample

_OPTS = {"n_per_class": 16, "classes": ("q", "w", "z", "t"), "events_per_shard": 40, "workers": 1,
         "progress": False}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("jets-cache"))


def test_hlf_task_shapes_standardization_and_determinism(cache: str) -> None:
    task = get_task("jets-hlf")
    assert task.input_shape() == (16,)
    data = task.load(seed=3, data_dir=cache, **_OPTS)
    assert data.classes == ("q", "w", "z", "t") and data.input_shape == (16,)
    n = len(data.train) + len(data.val) + len(data.test)
    assert n + data.info["dropped"] == 4 * 16
    assert data.info["features"] == list(HLF_NAMES)
    assert torch.isfinite(data.train.x).all()
    # standardized on the training split only
    assert torch.allclose(data.train.x.mean(0), torch.zeros(16), atol=1e-4)
    # every class in every split (stratified)
    for split in (data.train, data.val, data.test):
        assert set(split.y.tolist()) == {0, 1, 2, 3}
    again = task.load(seed=3, data_dir=cache, **_OPTS)
    assert torch.equal(again.train.x, data.train.x) and torch.equal(again.test.y, data.test.y)
    raw = task.load(seed=3, data_dir=cache, standardize=False, **_OPTS)
    mult = raw.train.x[:, HLF_NAMES.index("multiplicity")]
    assert (mult >= 2).all() and (mult == mult.round()).all()


def test_groomed_mass_peaks_in_each_window(cache: str) -> None:
    """The mMDT mass of W, Z and top jets sits at the particle's mass; light-quark jets sit far below."""
    task = get_task("jets-hlf")
    s = jet_sample(3, task.options(data_dir=cache, **_OPTS), "jets-hlf")
    mass = hlf_features(s.constituents, s.n_constituents, jet=s.jet)[:, HLF_NAMES.index("mass_mmdt")]
    med = {c: float(np.nanmedian(mass[s.y == k])) for k, c in enumerate(s.classes)}
    assert 65 < med["w"] < 95, med
    assert 75 < med["z"] < 105, med
    assert 145 < med["t"] < 195, med
    assert med["q"] < 50, med


def test_plf_task_layout_padding_and_min_pt(cache: str) -> None:
    task = get_task("jets-plf")
    assert task.input_shape(n_particles=8) == (16, 8)
    data = task.load(seed=3, data_dir=cache, n_particles=64, **_OPTS)
    assert data.input_shape == (16, 64)
    x = data.train.x
    real = (x != 0).any(dim=1)  # (N, particles)
    # zero padding after the real particles, never before
    assert torch.equal(real, real.cummin(dim=1).values)
    cut = task.load(seed=3, data_dir=cache, n_particles=64, min_pt=8.0, **_OPTS)
    assert (cut.train.x != 0).any(dim=1).sum() < real.sum()


@pytest.mark.parametrize(("task", "options", "needle"), [
    ("jets-hlf", {"n_per_class": 0}, "n_per_class"),
    ("jets-hlf", {"classes": ("q", "x")}, "classes"),
    ("jets-hlf", {"pt_window": (900.0, 800.0)}, "pt_window"),
    ("jets-hlf", {"val_fraction": 1.5}, "val_fraction"),
    ("jets-plf", {"n_particles": 0}, "n_particles"),
    ("jets-plf", {"n_particles": 151}, "n_particles"),
    ("jets-plf", {"min_pt": -1.0}, "min_pt"),
    ("jets-hlf", {"pt_max": 5.0}, "pt_max"),
])
def test_bad_options_name_the_option(task: str, options: dict, needle: str, tmp_path) -> None:
    with pytest.raises(TaskError, match=needle):
        get_task(task).load(seed=0, data_dir=str(tmp_path), progress=False, **options)
