"""Sanity of the generated AMC task: a small CNN learns it at high SNR, not at −20 dB, and confuses QAM16/QAM64."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hwnas.tasks import confusion_matrix, get_task, most_confused
from hwnas.train import TrainConfig, Trainer


def test_small_cnn_on_rml2016_behaves_like_radioml() -> None:
    task = get_task("amc-rml2016")
    data = task.load(seed=0, per_pair=250, snrs=(-20, 0, 10, 18), progress=False)
    assert (len(data.train), len(data.val), len(data.test)) == (8800, 1100, 1100)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(2, 32, 7, padding=3), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(32, 32, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2),
        nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 11),
    )
    Trainer(model, TrainConfig(epochs=12, batch_size=128, lr=2e-3, seed=0, progress=False)).fit(data.train.pair)
    result = task.evaluate(model, data.test, classes=data.classes)
    per_snr = result["accuracy_per_snr"]
    chance = 1 / 11
    assert per_snr[18] > 4 * chance and per_snr[10] > 4 * chance      # clearly learnt at high SNR
    assert per_snr[-20] < 2 * chance                                    # near chance at −20 dB
    high = torch.from_numpy(data.test.snr >= 10)
    with torch.no_grad():
        pred = model(data.test.x[high]).argmax(dim=1)
    cm = confusion_matrix(pred, data.test.y[high], 11)
    pairs = most_confused(cm, data.classes, k=55)
    rank = next(i for i, (a, b, _) in enumerate(pairs) if {a, b} == {"QAM16", "QAM64"})
    rates = np.array([r for *_, r in pairs])
    assert rank < 6, pairs[:8]                                          # among the most confused pairs
    assert pairs[rank][2] > 3 * np.median(rates)
