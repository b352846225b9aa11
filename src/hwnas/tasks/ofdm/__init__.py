"""OFDM SIMO uplink of the seed paper's neural receiver (issue 23): a Sionna-simulated link, baselines, BLER.

>>> from hwnas.tasks.ofdm import LinkConfig, OfdmLink
>>> link = OfdmLink(LinkConfig.from_options("small"))          # needs the ``receiver`` extra (sionna-no-rt)
>>> batch = link.sample(16, seed=0, split="test", ebno_db=5.0, speed_group="low")
>>> x = link.receiver_input(batch)                            # (16, 2·Nr + 1, S, F) float32
>>> bits, mask = link.targets(batch)                          # (16, m, S, F), (S, F)
>>> b_hat = link.decode(link.ls_lmmse_llr(batch), batch)      # (16, k)

The neural receiver (issue 23, seed 002): :func:`deeprx` (DeepRx-style residual CNN of hwnas layers),
:func:`train_receiver` (fresh link batches per step, seeded, resumable), :func:`run_study` (the seed's PTQ
study; ``hwnas receiver study``).

Importing this package does not import Sionna; :class:`OfdmLink` loads it when built.
See ``docs/tasks_receiver.md``.
"""

from __future__ import annotations

from .config import CDL_MODELS, MAX_SPEED_MPS, MODULATIONS, PRESETS, SPEED_GROUPS, LinkConfig
from .evaluate import Gap, bler_curve, gap_at_bler, read_curves_csv, write_curves_csv
from .link import LinkBatch, OfdmLink
from .receiver import DeepRx, deeprx
from .study import PTQ_VARIANTS, StudyError, StudyOptions, StudyResult, run_study
from .train import (
    ReceiverHistory,
    ReceiverRecord,
    ValidationSet,
    bmd_rate,
    train_receiver,
    validate_receiver,
    validation_set,
)

__all__ = [
    "CDL_MODELS",
    "MAX_SPEED_MPS",
    "MODULATIONS",
    "PRESETS",
    "PTQ_VARIANTS",
    "SPEED_GROUPS",
    "DeepRx",
    "Gap",
    "LinkBatch",
    "LinkConfig",
    "OfdmLink",
    "ReceiverHistory",
    "ReceiverRecord",
    "StudyError",
    "StudyOptions",
    "StudyResult",
    "ValidationSet",
    "bler_curve",
    "bmd_rate",
    "deeprx",
    "gap_at_bler",
    "read_curves_csv",
    "run_study",
    "train_receiver",
    "validate_receiver",
    "validation_set",
    "write_curves_csv",
]
