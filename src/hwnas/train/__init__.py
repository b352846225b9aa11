"""Training: the seeded, resumable :class:`Trainer` with the HGQ loss, and k-fold evaluation."""

from .kfold import KFoldResult, kfold
from .trainer import EpochRecord, History, TrainConfig, Trainer, TrainError, accuracy, evaluate

__all__ = [
    "EpochRecord",
    "History",
    "KFoldResult",
    "TrainConfig",
    "TrainError",
    "Trainer",
    "accuracy",
    "evaluate",
    "kfold",
]
