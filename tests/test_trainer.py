"""Trainer: resume equals an uninterrupted run, schedules, early stopping, losses, k-fold, bad config."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import hwnas.nn as hn
from hwnas.tasks import load_digits
from hwnas.train import TrainConfig, Trainer, TrainError, evaluate, kfold


def hgq_mlp(hidden: int = 16) -> nn.Sequential:
    return nn.Sequential(hn.QLinear(64, hidden), hn.QActivation("relu"),
                         hn.QLinear(hidden, 10, input_quantizer=dict(hn.DEFAULT_ACTIVATION, signed=False)))


@pytest.fixture(scope="module")
def digits():
    return load_digits(seed=0)


class _KilledError(Exception):
    pass


def test_resume_after_kill_equals_uninterrupted_run(digits, tmp_path):
    cfg = TrainConfig(epochs=4, beta=2e-6, gamma=1e-6, schedule="cosine_restarts", restart_epochs=2,
                      seed=7, progress=False)
    train = (digits.x_train[:400], digits.y_train[:400])
    val = (digits.x_test[:100], digits.y_test[:100])

    torch.manual_seed(1)
    full = hgq_mlp()
    Trainer(full, cfg).fit(train, val)

    torch.manual_seed(1)
    model = hgq_mlp()

    def kill_after_epoch_2(trainer, record):
        if record.epoch == 1:
            raise _KilledError

    with pytest.raises(_KilledError):
        Trainer(model, cfg, checkpoint_dir=tmp_path, on_epoch_end=[kill_after_epoch_2]).fit(train, val)
    assert (tmp_path / "last.pt").exists()

    torch.manual_seed(99)  # a fresh process: nothing of the killed run survives but the checkpoint
    resumed = hgq_mlp()
    hist = Trainer(resumed, cfg, checkpoint_dir=tmp_path).fit(train, val, resume=True)
    assert [r.epoch for r in hist.records] == [0, 1, 2, 3]
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_resume_refuses_a_different_config(digits, tmp_path):
    train = (digits.x_train[:100], digits.y_train[:100])
    Trainer(hgq_mlp(), TrainConfig(epochs=1, progress=False), checkpoint_dir=tmp_path).fit(train)
    with pytest.raises(TrainError, match="lr"):
        Trainer(hgq_mlp(), TrainConfig(epochs=1, lr=0.1, progress=False), checkpoint_dir=tmp_path).fit(
            train, resume=True)


def test_cosine_with_restarts_schedule():
    t = Trainer(nn.Linear(2, 2), TrainConfig(schedule="cosine_restarts", restart_epochs=2, restart_mult=2,
                                             min_lr_ratio=0.0, progress=False))
    factors = [t._lr_factor(e) for e in range(7)]
    # periods: epochs 0-1, then 2-5 (twice as long), then 6-...
    assert factors[0] == 1.0 and factors[2] == 1.0 and factors[6] == 1.0
    assert factors[1] == pytest.approx(0.5)
    assert factors[3] == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert factors[5] < factors[4] < factors[3]


def test_early_stopping_stops_and_remembers_best(digits):
    cfg = TrainConfig(epochs=40, lr=0.3, optimizer="sgd", momentum=0.0, patience=2, progress=False)
    hist = Trainer(hgq_mlp(), cfg).fit((digits.x_train[:200], digits.y_train[:200]),
                                       (digits.x_test[:100], digits.y_test[:100]))
    assert hist.stopped_early
    assert len(hist.records) < 40
    metrics = hist.column("val_metric")
    assert hist.best_metric == max(metrics)
    assert len(metrics) - 1 - hist.best_epoch == 2  # stopped `patience` epochs after the best


def test_bce_and_mse_losses_train():
    torch.manual_seed(0)
    x = torch.randn(512, 8)
    w = torch.randn(8, 4)
    bits = (x @ w > 0).float()  # four binary targets (LLR-style outputs)
    model = nn.Sequential(hn.QLinear(8, 16), hn.QActivation("relu"), hn.QLinear(16, 4))
    hist = Trainer(model, TrainConfig(epochs=40, loss="bce", progress=False)).fit((x, bits), (x, bits))
    assert hist.records[-1].val_metric > 0.9  # bit accuracy
    reg = nn.Sequential(hn.QLinear(8, 16), hn.QActivation("relu"), hn.QLinear(16, 4))
    target = x @ w
    h2 = Trainer(reg, TrainConfig(epochs=15, loss="mse", progress=False)).fit((x, target), (x, target))
    assert h2.records[-1].val_metric > h2.records[0].val_metric  # -MSE increases
    metric, loss = evaluate(reg, x, target, loss="mse")
    assert metric == pytest.approx(-loss)


def test_kfold_averages_stratified_folds(digits):
    cfg = TrainConfig(epochs=12, progress=False)
    res = kfold(lambda: hgq_mlp(16), digits.x_train[:450], digits.y_train[:450], cfg, folds=3)
    assert len(res.fold_metrics) == 3
    assert res.mean == pytest.approx(sum(res.fold_metrics) / 3)
    assert all(0.7 < m <= 1.0 for m in res.fold_metrics), res.fold_metrics


@pytest.mark.parametrize("field, value", [
    ("epochs", 0), ("batch_size", -1), ("loss", "hinge"), ("optimizer", "lion"), ("lr", -1.0),
    ("schedule", "step"), ("beta", float("nan")), ("patience", 0), ("min_lr_ratio", 2.0),
])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(TrainError, match=field):
        Trainer(nn.Linear(2, 2), TrainConfig(**{field: value}))


def test_bad_data_is_rejected():
    t = Trainer(nn.Linear(3, 2), TrainConfig(epochs=1, progress=False))
    with pytest.raises(TrainError, match="train: 4 inputs but 3 targets"):
        t.fit((torch.zeros(4, 3), torch.zeros(3, dtype=torch.long)))
    with pytest.raises(TrainError, match="integer class labels"):
        t.fit((torch.zeros(4, 3), torch.zeros(4)))
    with pytest.raises(TrainError, match="val: targets contain NaN"):
        t.fit((torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)),
              (torch.zeros(2, 3), torch.tensor([0.0, float("nan")])))


def test_threads_apply_while_fitting_and_are_restored(digits):
    seen = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = hgq_mlp()
        cfg = TrainConfig(epochs=2, batch_size=64, seed=0, progress=False, threads=1)
        trainer = Trainer(model, cfg)
        trainer.on_epoch_end.append(lambda tr, rec: seen.append(torch.get_num_threads()))
        trainer.fit((digits.x_train, digits.y_train))
        assert seen == [1, 1] and torch.get_num_threads() == 2  # restored after fit
        again = hgq_mlp()
        Trainer(again, cfg).fit((digits.x_train, digits.y_train))  # same seed, same count: the same weights
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(),
                                                     strict=True))
        with pytest.raises(TrainError, match="threads"):
            Trainer(hgq_mlp(), TrainConfig(threads=0)).fit((digits.x_train, digits.y_train))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
