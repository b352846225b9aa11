"""Stratified k-fold training with averaged metrics (SNAC-Pack evaluates candidates with 3 folds).

:func:`kfold` trains a fresh model per fold and returns each fold's metric (the trainer's best validation
metric, or ``score(model, x_val, y_val)`` of the trained model when given) with their mean and standard
deviation; ``keep_models=True`` also returns the trained models. :func:`check_folds` says, before any training,
whether every class has enough samples for the folds (a :class:`TrainError` naming the smallest class).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from .trainer import History, TrainConfig, Trainer, TrainError

__all__ = ["KFoldResult", "check_folds", "kfold"]


@dataclass(frozen=True)
class KFoldResult:
    """Per-fold metrics and their mean and standard deviation (and the trained models, when kept)."""

    fold_metrics: tuple[float, ...]
    histories: tuple[History, ...]
    models: tuple[nn.Module, ...] = field(default=(), compare=False, repr=False)
    """The trained model of each fold (``kfold(..., keep_models=True)``; empty otherwise)."""

    @property
    def mean(self) -> float:
        """Mean of the fold metrics."""
        return statistics.fmean(self.fold_metrics)

    @property
    def std(self) -> float:
        """Population standard deviation of the fold metrics."""
        return statistics.pstdev(self.fold_metrics)

    @property
    def best(self) -> int:
        """Index of the fold with the highest metric (the first of equals)."""
        return max(range(len(self.fold_metrics)), key=lambda j: (self.fold_metrics[j], -j))


def check_folds(y: torch.Tensor | Sequence[int], folds: int, classes: Sequence[str] | None = None,
                where: str = "folds") -> None:
    """Raise :class:`TrainError` (naming ``where``) unless every class of ``y`` has at least ``folds`` samples.

    Stratified folds put a share of every class into each held-out part: a class with fewer samples than folds
    leaves some fold without it. ``classes`` names the class indices in the message.
    """
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise TrainError(f"{where}: must be an integer >= 2, got {folds!r}")
    labels = torch.as_tensor(y).reshape(-1).long()
    if len(labels) < folds:
        raise TrainError(f"{where}: {folds} folds need at least {folds} samples, got {len(labels)}")
    counts = torch.bincount(labels)
    present = [int(c) for c in torch.nonzero(counts).reshape(-1)]
    smallest = min(present, key=lambda c: (int(counts[c]), c))
    if int(counts[smallest]) < folds:
        name = classes[smallest] if classes is not None and smallest < len(classes) else str(smallest)
        raise TrainError(f"{where}: {folds} stratified folds need at least {folds} samples of every class; class "
                         f"{name!r} has {int(counts[smallest])} (use fewer folds or more data)")


def kfold(
    build: Callable[[], nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    folds: int = 3,
    *,
    score: Callable[[nn.Module, torch.Tensor, torch.Tensor], float] | None = None,
    keep_models: bool = False,
) -> KFoldResult:
    """Train a fresh ``build()`` model on each of ``folds`` stratified splits; return the fold metrics.

    Folds are stratified by class for ``ce`` and plain (shuffled) for regression, seeded by
    ``config.seed``; fold ``j`` trains with seed ``config.seed + j`` (the global torch seed is set to it before
    ``build()``). A fold's metric is the trainer's best validation metric, or with ``score`` the value of
    ``score(model, x_val, y_val)`` for the fold's trained model (on the device it trained on, ``config.device``;
    ``x_val`` stays on the CPU). ``keep_models`` keeps the trained models, where they trained.
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
    models: list[nn.Module] = []
    for j, (tr, va) in enumerate(splits):
        torch.manual_seed(config.seed + j)
        model = build()
        cfg = replace(config, seed=config.seed + j)
        tr_t, va_t = torch.as_tensor(tr), torch.as_tensor(va)
        hist = Trainer(model, cfg).fit((x[tr_t], y[tr_t]), (x[va_t], y[va_t]))
        metrics.append(float(score(model, x[va_t], y[va_t]) if score is not None else hist.best_metric))
        histories.append(hist)
        if keep_models:
            models.append(model)
    return KFoldResult(tuple(metrics), tuple(histories), tuple(models))
