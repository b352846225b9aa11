"""One-shot search over a weight-sharing supernet (seed 003, HA-NAS; Once-for-All style): docs/supernet.md.

:mod:`hwnas.supernet.model` holds the shared weights and extracts sub-nets, :mod:`hwnas.supernet.training` trains
them once with the sandwich rule, :mod:`hwnas.supernet.search` is the ``search.strategy: supernet`` pipeline.
"""

from .model import SHARED_VARIABLES, SubNet, Supernet, SupernetError, check_space
from .training import SupernetHistory, SupernetTrainConfig, load_supernet, train_supernet

__all__ = ["SHARED_VARIABLES", "SubNet", "Supernet", "SupernetError", "SupernetHistory", "SupernetTrainConfig",
           "check_space", "load_supernet", "train_supernet"]
