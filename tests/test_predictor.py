"""MOLP predictor: fits synthetic architecture targets, deterministic, persists, rejects bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.search.predictor import MultiOutputPredictor

BOUNDS = [(1, 4)] + [(1, 8)] * 6


def synthetic(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Depth + per-layer bits vectors with smooth accuracy, multiplicative BOPs and their composite."""
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.integers(lo, hi + 1, n) for lo, hi in BOUNDS]).astype(float)
    depth, bits = x[:, 0], x[:, 1:]
    active = np.arange(6)[None, :] < (depth[:, None] + 2)
    mean_bits = (bits * active).sum(1) / active.sum(1)
    accuracy = 0.9 - 0.5 * np.exp(-0.6 * mean_bits) - 0.02 * (4 - depth)
    bops = (1e4 * (bits * active * np.roll(bits, 1, axis=1)).sum(1)) * (1 + depth)
    score = 0.5 * (1 - accuracy) + 0.5 * bops / bops.max()
    return x, {"accuracy": accuracy, "bops": bops, "score": score}


def test_fits_synthetic_targets_with_high_r2():
    x, y = synthetic(400, 0)
    pred = MultiOutputPredictor(bounds=BOUNDS, epochs=400, patience=60, seed=1)
    report = pred.fit(x, y)
    assert report.split == "validation" and report.n_validation == 80
    for target in ("accuracy", "bops", "score"):
        assert report.r2[target] > 0.9, (target, report.r2)
    xt, yt = synthetic(200, 99)  # fresh samples, never seen
    out = pred.predict(xt)
    for target in ("accuracy", "bops", "score"):
        ss_res = np.sum((yt[target] - out[target]) ** 2)
        ss_tot = np.sum((yt[target] - yt[target].mean()) ** 2)
        assert 1 - ss_res / ss_tot > 0.9, target
    # a constant predictor would not pass: the test can fail
    assert np.std(out["bops"]) > 0.3 * np.std(yt["bops"])


def test_same_seed_same_predictions_and_global_rng_untouched():
    x, y = synthetic(120, 3)
    torch.manual_seed(1234)
    before = torch.rand(1)
    torch.manual_seed(1234)
    a = MultiOutputPredictor(bounds=BOUNDS, epochs=50, seed=7)
    a.fit(x, y)
    after = torch.rand(1)
    assert torch.equal(before, after)
    b = MultiOutputPredictor(bounds=BOUNDS, epochs=50, seed=7)
    b.fit(x, y)
    c = MultiOutputPredictor(bounds=BOUNDS, epochs=50, seed=8)
    c.fit(x, y)
    pa, pb, pc = a.predict(x), b.predict(x), c.predict(x)
    assert all(np.array_equal(pa[t], pb[t]) for t in pa)
    assert not np.array_equal(pa["accuracy"], pc["accuracy"])


def test_save_load_roundtrip_and_ensemble_std(tmp_path):
    x, y = synthetic(100, 5)
    pred = MultiOutputPredictor(bounds=BOUNDS, epochs=40, ensemble=3, seed=2)
    pred.fit(x, y)
    mean, std = pred.predict(x, return_std=True)
    assert all((std[t] >= 0).all() for t in std) and std["accuracy"].max() > 0
    path = pred.save(tmp_path / "molp.pt")
    assert not (tmp_path / "molp.pt.tmp").exists()
    loaded = MultiOutputPredictor.load(path)
    m2, s2 = loaded.predict(x, return_std=True)
    assert all(np.array_equal(mean[t], m2[t]) and np.array_equal(std[t], s2[t]) for t in mean)
    assert loaded.report is not None and loaded.report.r2.keys() == pred.report.r2.keys()


def test_errors_name_the_argument(tmp_path):
    x, y = synthetic(20, 0)
    pred = MultiOutputPredictor(bounds=BOUNDS, epochs=2)
    with pytest.raises(RuntimeError, match="before fit"):
        pred.predict(x)
    with pytest.raises(ValueError, match="2-D"):
        pred.fit(x[0], y)
    with pytest.raises(ValueError, match=r"y\['bops'\] has 19 values"):
        pred.fit(x, {**y, "bops": y["bops"][:-1]})
    with pytest.raises(ValueError, match="missing targets"):
        pred.fit(x, {"accuracy": y["accuracy"]})
    with pytest.raises(ValueError, match=r"y\['bops'\] must be > 0"):
        pred.fit(x, {**y, "bops": -y["bops"]})
    bad = y["accuracy"].copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match=r"y\['accuracy'\] contains NaN"):
        pred.fit(x, {**y, "accuracy": bad})
    with pytest.raises(ValueError, match="bounds has 7 entries"):
        pred.fit(x[:, :5], y)
    pred.fit(x, y)
    with pytest.raises(ValueError, match="features"):
        pred.predict(x[:, :5])
    with pytest.raises(ValueError, match=r"not a hwnas\.molp"):
        torch.save({"x": 1}, tmp_path / "other.pt")
        MultiOutputPredictor.load(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="loss_weights"):
        MultiOutputPredictor(loss_weights={"latency": 1.0})
