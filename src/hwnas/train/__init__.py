"""Training: the seeded, resumable :class:`Trainer` with the HGQ loss, k-fold evaluation, HGQ β-sweeps."""

from .kfold import KFoldResult, kfold
from .sweep import EbopsController, ParetoCheckpoint, SweepResult, beta_sweep, exponential_beta
from .trainer import EpochRecord, History, TrainConfig, Trainer, TrainError, accuracy, evaluate

__all__ = [
    "EbopsController",
    "EpochRecord",
    "History",
    "KFoldResult",
    "ParetoCheckpoint",
    "SweepResult",
    "TrainConfig",
    "TrainError",
    "Trainer",
    "accuracy",
    "beta_sweep",
    "evaluate",
    "exponential_beta",
    "kfold",
]
