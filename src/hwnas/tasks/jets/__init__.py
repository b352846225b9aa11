"""Jet tagging (g, q, W, Z, top) on jets generated here: Pythia 8 events clustered with FastJet, nothing downloaded.

>>> from hwnas.tasks.jets import generate_jets
>>> sample = generate_jets(100, seed=0, data_dir="data", workers=4)   # 100 jets per class, cached, resumable
>>> sample.constituents.shape, sample.classes                          # (500, 150, 4) px, py, pz, E in GeV
((500, 150, 4), ('g', 'q', 'w', 'z', 't'))

Contract: the same options and seed give byte-identical jets whatever ``workers`` is; a killed run resumes from
its finished shards. Modules: :mod:`.generate` (events, jets, truth labels, cache), re-exported here and imported
on first use, so that other modules of this package load without Pythia and FastJet. See ``docs/tasks_jets.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .generate import (
        CLASSES,
        DEFAULT_ETA_MAX,
        DEFAULT_EVENTS_PER_SHARD,
        DEFAULT_MATCH_DR,
        DEFAULT_MAX_PARTICLES,
        DEFAULT_PT_WINDOW,
        DEFAULT_RADIUS,
        GENERATOR_VERSION,
        PTHAT_FRACTION,
        SQRT_S,
        JetOptions,
        JetSample,
        JetsError,
        generate_jets,
        jets_cache_folder,
        pythia_seed,
        pythia_settings,
    )

__all__ = [
    "CLASSES",
    "DEFAULT_ETA_MAX",
    "DEFAULT_EVENTS_PER_SHARD",
    "DEFAULT_MATCH_DR",
    "DEFAULT_MAX_PARTICLES",
    "DEFAULT_PT_WINDOW",
    "DEFAULT_RADIUS",
    "GENERATOR_VERSION",
    "PTHAT_FRACTION",
    "SQRT_S",
    "JetOptions",
    "JetSample",
    "JetsError",
    "generate_jets",
    "jets_cache_folder",
    "pythia_seed",
    "pythia_settings",
]
_FROM_GENERATE = frozenset(__all__)


def __getattr__(name: str) -> object:
    """The generator's public names, imported from :mod:`.generate` on first use."""
    if name in _FROM_GENERATE:
        value = getattr(importlib.import_module(".generate", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _FROM_GENERATE)
