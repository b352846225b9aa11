"""HGQ β-sweep: Pareto checkpoints, recalibrated EBOPs, table and plot; closed-loop β."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import hwnas.nn as hn
from hwnas.tasks import load_digits
from hwnas.train import EbopsController, TrainConfig, TrainError, beta_sweep, exponential_beta
from hwnas.train.trainer import History, load_saved

WRAP_UNSIGNED = dict(hn.DEFAULT_ACTIVATION, overflow_mode="WRAP", signed=False)


def mlp() -> nn.Sequential:
    return nn.Sequential(hn.QLinear(64, 32), hn.QActivation("relu"), hn.QLinear(32, 10, input_quantizer=WRAP_UNSIGNED))


@pytest.fixture(scope="module")
def digits():
    return load_digits(seed=0)


def test_beta_sweep_pareto_front(digits, tmp_path):
    torch.manual_seed(0)
    model = mlp()
    train = (digits.x_train[:1000], digits.y_train[:1000])
    val = (digits.x_train[1000:], digits.y_train[1000:])
    res = beta_sweep(model, train, val, tmp_path, config=TrainConfig(epochs=30, gamma=1e-6, progress=False),
                     beta0=1e-7, beta1=1e-4)
    front = res.checkpoints
    assert len(front) >= 4
    e = [c.ebops for c in front]
    assert all(a > b for a, b in itertools.pairwise(e))  # strictly decreasing EBOPs
    m = [c.metric for c in front]
    assert all(a > b for a, b in itertools.pairwise(m))  # and strictly decreasing metric
    assert max(m) > 0.9
    betas = res.history.column("beta")
    assert betas[0] == pytest.approx(1e-7) and betas[-1] == pytest.approx(1e-4)
    for c in front:
        assert c.path.exists()
        assert c.ebops_calibrated is not None and c.ebops_calibrated > 0
        assert c.metric_calibrated is not None
        # the stored checkpoint is the calibrated model: reloading reproduces the recomputed figures
        probe = mlp()
        probe(digits.x_train[:2])
        probe.load_state_dict(load_saved(c.path))
        assert hn.ebops(probe).item() == pytest.approx(c.ebops_calibrated)
    # only front models keep files
    assert sorted(p.name for p in (tmp_path / "pareto").iterdir()) == sorted(c.path.name for c in front)
    table = (tmp_path / "pareto.md").read_text()
    assert table.count("\n") == len(front) + 2 and "EBOPs (calibrated)" in table
    png = (tmp_path / "pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_exponential_beta_schedule():
    s = exponential_beta(1e-6, 1e-3, 4)
    assert [s(e, History()) for e in range(4)] == pytest.approx([1e-6, 1e-5, 1e-4, 1e-3])
    with pytest.raises(TrainError, match="beta0"):
        exponential_beta(0.0, 1e-3, 4)


def test_closed_loop_beta_reaches_the_budget(digits, tmp_path):
    torch.manual_seed(0)
    target = 5000.0
    res = beta_sweep(mlp(), (digits.x_train[:1000], digits.y_train[:1000]),
                     (digits.x_train[1000:], digits.y_train[1000:]), tmp_path,
                     config=TrainConfig(epochs=30, gamma=1e-6, progress=False), beta0=1e-6, target_ebops=target)
    ebops = res.history.column("ebops")
    betas = res.history.column("beta")
    assert ebops[0] > 4 * target
    assert target / 1.5 < ebops[-1] < target * 1.5
    assert max(betas) > betas[0] and betas[-1] < max(betas)  # pushed up over budget, relaxed under it


def test_controller_validates():
    with pytest.raises(TrainError, match="target_ebops"):
        EbopsController(target=0)
    ctl = EbopsController(target=100.0, beta_start=1e-5, gain=1.0, max_step=2.0)
    h = History()
    assert ctl(0, h) == 1e-5
    from hwnas.train import EpochRecord

    h.records.append(EpochRecord(0, 1.0, 0.5, 1.0, 10_000.0, 1e-5, 1e-3))
    assert ctl(1, h) == pytest.approx(2e-5)  # 100x over budget, but at most 2x per epoch
