"""Stratified k-fold training with averaged metrics (SNAC-Pack evaluates candidates with 3 folds)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from .trainer import History, TrainConfig, Trainer, TrainError

__all__ = ["KFoldResult", "kfold"]


@dataclass(frozen=True)
class KFoldResult:
    """Per-fold best validation metrics and their mean and standard deviation."""

    fold_metrics: tuple[float, ...]
    histories: tuple[History, ...]

    @property
    def mean(self) -> float:
        """Mean of the fold metrics."""
        return statistics.fmean(self.fold_metrics)

    @property
    def std(self) -> float:
        """Population standard deviation of the fold metrics."""
        return statistics.pstdev(self.fold_metrics)


def kfold(
    build: Callable[[], nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    folds: int = 3,
) -> KFoldResult:
    """Train a fresh ``build()`` model on each of ``folds`` stratified splits; return the best metrics.

    Folds are stratified by class for ``ce`` and plain (shuffled) for regression, seeded by
    ``config.seed``; fold ``j`` trains with seed ``config.seed + j``.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise TrainError(f"folds: must be an integer >= 2, got {folds!r}")
    if len(x) != len(y):
        raise TrainError(f"y: {len(y)} targets for {len(x)} inputs")
    if config.loss == "ce":
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.seed)
        splits = splitter.split(x.numpy().reshape(len(x), -1), y.numpy())
    else:
        splits = KFold(n_splits=folds, shuffle=True, random_state=config.seed).split(x.numpy().reshape(len(x), -1))
    metrics: list[float] = []
    histories: list[History] = []
    for j, (tr, va) in enumerate(splits):
        torch.manual_seed(config.seed + j)
        model = build()
        cfg = replace(config, seed=config.seed + j)
        tr_t, va_t = torch.as_tensor(tr), torch.as_tensor(va)
        hist = Trainer(model, cfg).fit((x[tr_t], y[tr_t]), (x[va_t], y[va_t]))
        metrics.append(float(hist.best_metric))
        histories.append(hist)
    return KFoldResult(tuple(metrics), tuple(histories))
