"""Training and compression: the resumable :class:`Trainer` (HGQ loss), k-fold, β-sweeps, PTQ, local search."""

from .device import DeviceError, resolve_device
from .kfold import KFoldResult, check_folds, kfold
from .local_search import (
    IterativePruner,
    LocalSearchResult,
    PrecisionResult,
    PruneIteration,
    effective_bops,
    local_search,
    to_fixed_point,
)
from .ptq import PTQResult, SizeRow, layer_sensitivity, post_training_quantize, size_table, weight_statistics
from .sweep import EbopsController, ParetoCheckpoint, SweepResult, beta_sweep, exponential_beta
from .trainer import EpochRecord, History, TrainConfig, Trainer, TrainError, accuracy, evaluate

__all__ = [
    "DeviceError",
    "EbopsController",
    "EpochRecord",
    "History",
    "IterativePruner",
    "KFoldResult",
    "LocalSearchResult",
    "PTQResult",
    "ParetoCheckpoint",
    "PrecisionResult",
    "PruneIteration",
    "SizeRow",
    "SweepResult",
    "TrainConfig",
    "TrainError",
    "Trainer",
    "accuracy",
    "beta_sweep",
    "check_folds",
    "effective_bops",
    "evaluate",
    "exponential_beta",
    "kfold",
    "layer_sensitivity",
    "local_search",
    "post_training_quantize",
    "resolve_device",
    "size_table",
    "to_fixed_point",
    "weight_statistics",
]
