"""RadioML-like automatic-modulation-classification data: a vectorized NumPy generator and its cache.

>>> from hwnas.tasks.amc import generate
>>> data = generate("rml2016", 10, seed=0, progress=False)     # 11 classes × 20 SNRs × 10 frames
>>> data.x.shape, data.y.dtype, data.snr.dtype
((2200, 2, 128), dtype('int64'), dtype('int16'))

Modules: :mod:`.constellations` (symbol alphabets), :mod:`.modulators` (transmitters), :mod:`.channel`
(SRO, CFO, multipath fading), :mod:`.generator` (frames, SNR, normalization), :mod:`.cache` (``.npy`` cache),
:mod:`.presets` (``rml2016``, ``rml2018``). See ``docs/tasks_amc.md``.
"""

from .cache import generate_cached
from .channel import ChannelConfig
from .generator import (
    AMPLITUDES,
    GENERATOR_VERSION,
    NORMALIZATIONS,
    AMCData,
    AMCError,
    FrameComponents,
    generate,
    generate_components,
    normalize,
)
from .presets import PRESETS, RML2016_CLASSES, RML2018_CLASSES, AMCPreset

__all__ = [
    "AMPLITUDES",
    "GENERATOR_VERSION",
    "NORMALIZATIONS",
    "PRESETS",
    "RML2016_CLASSES",
    "RML2018_CLASSES",
    "AMCData",
    "AMCError",
    "AMCPreset",
    "ChannelConfig",
    "FrameComponents",
    "generate",
    "generate_cached",
    "generate_components",
    "normalize",
]
