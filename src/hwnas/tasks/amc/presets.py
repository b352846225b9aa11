"""Data-set presets: RadioML 2016.10a-like (``rml2016``) and RadioML 2018.01A-like (``rml2018``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

from .channel import ChannelConfig
from .modulators import TRANSMITTERS

__all__ = ["PRESETS", "RML2016_CLASSES", "RML2018_CLASSES", "AMCPreset"]

RML2016_CLASSES: tuple[str, ...] = (
    "BPSK", "QPSK", "8PSK", "PAM4", "QAM16", "QAM64", "GFSK", "CPFSK", "WBFM", "AM-DSB", "AM-SSB",
)
"""The ``rml2016`` classes, in hwnas's label order."""

RML2018_CLASSES: tuple[str, ...] = (
    "OOK", "4ASK", "8ASK", "BPSK", "QPSK", "8PSK", "16PSK", "32PSK", "16APSK", "32APSK", "64APSK", "128APSK",
    "16QAM", "32QAM", "64QAM", "128QAM", "256QAM", "AM-SSB-WC", "AM-SSB-SC", "AM-DSB-WC", "AM-DSB-SC", "FM",
    "GMSK", "OQPSK",
)
"""The ``rml2018`` classes, in RadioML 2018.01A's (corrected) one-hot order."""


@dataclass(frozen=True)
class AMCPreset:
    """A generated data set's definition.

    Attributes:
        name: preset name (used in cache manifests).
        classes: class names in label order (each a key of :data:`.modulators.TRANSMITTERS`).
        frame_length: complex samples per frame.
        snrs: SNRs in dB (integers).
        sps: samples per symbol of the digital classes.
        rolloff: RRC roll-off, a number or a ``(lo, hi)`` range drawn uniformly per frame.
        channel: the channel impairments.
    """

    name: str
    classes: tuple[str, ...]
    frame_length: int
    snrs: tuple[int, ...]
    sps: int = 8
    rolloff: float | tuple[float, float] = 0.35
    channel: ChannelConfig = field(default_factory=ChannelConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "snrs", tuple(int(s) for s in self.snrs))
        if isinstance(self.rolloff, list):
            object.__setattr__(self, "rolloff", tuple(self.rolloff))
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes: need distinct class names, got {self.classes}")
        unknown = [c for c in self.classes if c not in TRANSMITTERS]
        if unknown:
            raise ValueError(f"classes: no transmitter for {unknown}; known: {sorted(TRANSMITTERS)}")
        if self.frame_length < 1:
            raise ValueError(f"frame_length: must be >= 1, got {self.frame_length}")
        if not self.snrs or len(set(self.snrs)) != len(self.snrs) or not all(-100 <= s <= 100 for s in self.snrs):
            raise ValueError(f"snrs: need distinct integers in [-100, 100] dB, got {self.snrs}")
        if self.sps < 2 or self.sps % 2:
            raise ValueError(f"sps: must be an even integer >= 2, got {self.sps}")
        lo, hi = self.rolloff if isinstance(self.rolloff, tuple) else (self.rolloff, self.rolloff)
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"rolloff: must be in (0, 1] (a range lo <= hi), got {self.rolloff}")


PRESETS: MappingProxyType[str, AMCPreset] = MappingProxyType({
    "rml2016": AMCPreset("rml2016", RML2016_CLASSES, 128, tuple(range(-20, 20, 2)), sps=8, rolloff=0.35),
    "rml2018": AMCPreset("rml2018", RML2018_CLASSES, 1024, tuple(range(-20, 32, 2)), sps=8, rolloff=(0.2, 0.5)),
})
"""The built-in presets by name."""
