"""Vectorized generation of RadioML-like frames: transmitter → channel → AWGN → per-frame normalization.

Frames are made per (class, SNR) pair in blocks of :data:`BLOCK` frames; each block draws its random numbers
from named streams seeded by ``[seed, class index in the preset, SNR + 1000, block index, stream]`` (see
:mod:`.streams`). So the same seed gives bit-identical arrays whatever ``workers`` is, a subset of classes or
SNRs gives exactly the frames of those pairs in the full set, and a smaller ``per_pair`` gives a prefix of
every pair's frames.

SNR (``amplitude="snr"``, the default): the transmitted frame is scaled to unit mean power, passed through
the channel, and complex white Gaussian noise of variance ``σ² = P_s / 10^(snr/10)`` is added, where
``P_s = mean_k |s[k]|²`` is the measured power of that frame's post-fading signal over its ``L`` samples. The
label is thus the signal-to-noise power ratio in the sampled band (the whole ``fs`` band), per frame.

``amplitude="rml2016"`` reproduces RadioML 2016's convention (``generate_RML2016.10a.py``): the transmitted
signal has unit mean power before the channel, the channel's path gains are not normalized (mean gain
``Σ a_p² = 1.73`` for the default paths) and the noise is GNU Radio's ``fastnoise_source_c`` with amplitude
``noise_amp = 10^(−snr/10)``, i.e. complex noise of variance ``noise_amp² = 10^(−snr/5)``. The frames' true
SNR is then about ``2·snr + 2.4`` dB, not ``snr``; use it to mimic the original data set's difficulty.

Normalization of each final frame ``x`` (after the noise): ``"unit_power"`` ``x / sqrt(mean|x|²)``;
``"rml2016_l1"`` ``x / Σ_k |x[k]|`` (RadioML 2016's ``sampled_vector / np.sum(np.abs(sampled_vector))``, so
``Σ|x| = 1`` and samples are ~1/L); ``"none"`` leaves the scale of the channel output.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from hwnas.errors import HwnasError

from .channel import apply_channel, buffer_length
from .modulators import TRANSMITTERS
from .presets import PRESETS, AMCPreset
from .streams import Streams

__all__ = ["AMPLITUDES", "BLOCK", "GENERATOR_VERSION", "NORMALIZATIONS", "AMCData", "AMCError", "FrameComponents",
           "generate", "generate_components", "normalize", "resolve_preset"]

BLOCK = 512
"""Frames per random-stream block (fixed: changing it changes the data)."""
GENERATOR_VERSION = 1
"""Bumped whenever a change to the generator changes the frames a seed gives (cache manifests record it)."""
NORMALIZATIONS = ("unit_power", "rml2016_l1", "none")
"""Per-frame normalizations."""
AMPLITUDES = ("snr", "rml2016")
"""Noise-amplitude conventions."""
_SNR_CODE = 1000


class AMCError(HwnasError, ValueError):
    """Invalid generator input; the message names the argument."""


@dataclass(frozen=True)
class AMCData:
    """A set of I/Q frames.

    ``x`` (N, 2, L) float32 (I, Q channels), ``y`` (N,) int64 labels into ``classes``, ``snr`` (N,) int16 dB.
    """

    x: np.ndarray
    y: np.ndarray
    snr: np.ndarray
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        if self.x.ndim != 3 or self.x.shape[1] != 2:
            raise AMCError(f"x: expected shape (N, 2, L), got {self.x.shape}")
        if self.y.shape != (len(self.x),) or self.snr.shape != (len(self.x),):
            raise AMCError(f"y, snr: expected shape ({len(self.x)},), got {self.y.shape} and {self.snr.shape}")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def frame_length(self) -> int:
        """Complex samples per frame."""
        return int(self.x.shape[2])


@dataclass(frozen=True)
class FrameComponents:
    """Signal and noise of frames before normalization (``signal + noise`` is the noisy frame), complex (n, L)."""

    signal: np.ndarray
    noise: np.ndarray

    def measured_snr_db(self) -> np.ndarray:
        """Per-frame ``10·log10(mean|signal|² / mean|noise|²)``."""
        ps = np.mean(np.abs(self.signal) ** 2, axis=-1)
        pn = np.mean(np.abs(self.noise) ** 2, axis=-1)
        with np.errstate(divide="ignore"):
            return 10 * np.log10(ps / pn)


# ------------------------------------------------------------------------------------------- input
def resolve_preset(preset: str | AMCPreset) -> AMCPreset:
    """The :class:`AMCPreset` named ``preset`` (or ``preset`` itself)."""
    if isinstance(preset, AMCPreset):
        return preset
    if preset not in PRESETS:
        raise AMCError(f"preset: unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    return PRESETS[preset]


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise AMCError(f"{name}: unknown value {value!r}; expected one of {', '.join(choices)}")


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise AMCError(f"{name}: must be an integer >= {low}, got {value!r}")
    return int(value)


def _select(p: AMCPreset, classes: Sequence[str] | None, snrs: Sequence[int] | None) -> tuple[list[str], list[int]]:
    names = list(p.classes) if classes is None else [str(c) for c in ([classes] if isinstance(classes, str)
                                                                      else classes)]
    unknown = [c for c in names if c not in p.classes]
    if unknown or not names or len(set(names)) != len(names):
        raise AMCError(f"classes: need distinct classes of preset {p.name!r} ({', '.join(p.classes)}); got {names}")
    values = list(p.snrs) if snrs is None else list(snrs)
    if not values or len(set(values)) != len(values):
        raise AMCError(f"snrs: need distinct integer SNRs in dB, got {values}")
    for s in values:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not -100 <= s <= 100:
            raise AMCError(f"snrs: need integers in [-100, 100] dB, got {s!r}")
    return names, sorted(int(s) for s in values)


# ------------------------------------------------------------------------------------------ frames
def _components(p: AMCPreset, name: str, snr: int, block: int, count: int, seed: int,
                amplitude: str) -> FrameComponents:
    """Signal and noise of frames ``block·BLOCK … block·BLOCK + count − 1`` of pair (``name``, ``snr``)."""
    streams = Streams(seed, p.classes.index(name), snr + _SNR_CODE, block)
    size = buffer_length(p.frame_length, p.channel, p.sps)
    if isinstance(p.rolloff, tuple):
        rolloff: np.ndarray | float = streams("rolloff").uniform(*p.rolloff, size=count)
    else:
        rolloff = float(p.rolloff)
    x = TRANSMITTERS[name](count, size, p.sps, rolloff, streams)
    x /= np.sqrt(np.mean(np.abs(x) ** 2, axis=-1, keepdims=True))
    s = apply_channel(x, p.frame_length, p.channel, streams)
    if not p.channel.awgn:
        return FrameComponents(s, np.zeros_like(s))
    if amplitude == "snr":
        var = np.mean(np.abs(s) ** 2, axis=-1, keepdims=True) / 10 ** (snr / 10)
    else:
        var = np.full((count, 1), 10 ** (-snr / 5))
    noise = streams("noise").standard_normal((count, p.frame_length, 2)).view(np.complex128)[..., 0]
    return FrameComponents(s, noise * np.sqrt(var / 2))


def normalize(x: np.ndarray, normalization: str) -> np.ndarray:
    """Per-frame normalization of complex frames ``x`` (n, L): see the module docstring."""
    _check_choice("normalization", normalization, NORMALIZATIONS)
    if normalization == "unit_power":
        return x / np.sqrt(np.mean(np.abs(x) ** 2, axis=-1, keepdims=True))
    if normalization == "rml2016_l1":
        return x / np.sum(np.abs(x), axis=-1, keepdims=True)
    return x


def _frames(task: tuple[AMCPreset, str, int, int, int, int, str, str]) -> np.ndarray:
    p, name, snr, block, count, seed, amplitude, normalization = task
    c = _components(p, name, snr, block, count, seed, amplitude)
    x = normalize(c.signal + c.noise, normalization)
    out = np.empty((count, 2, p.frame_length), dtype=np.float32)
    out[:, 0] = x.real
    out[:, 1] = x.imag
    return out


def generate_components(preset: str | AMCPreset, class_name: str, snr: int, count: int, *, seed: int,
                        amplitude: str = "snr") -> FrameComponents:
    """Signal and noise, separately, of the first ``count`` frames :func:`generate` makes for one pair.

    ``normalize(signal + noise, normalization)`` equals those frames of :func:`generate` (up to float32).
    """
    p = resolve_preset(preset)
    (name,), (snr,) = _select(p, [class_name], [snr])
    count = _check_int("count", count, 1)
    seed = _check_int("seed", seed, 0)
    _check_choice("amplitude", amplitude, AMPLITUDES)
    parts = [_components(p, name, snr, b, min(BLOCK, count - b * BLOCK), seed, amplitude)
             for b in range(-(-count // BLOCK))]
    return FrameComponents(np.concatenate([c.signal for c in parts]), np.concatenate([c.noise for c in parts]))


def _run(tasks: list[tuple], workers: int) -> Iterator[np.ndarray]:
    if workers == 1 or len(tasks) == 1:
        yield from map(_frames, tasks)
        return
    # fork (where available) reuses the parent's imports; the workers run NumPy/SciPy code only.
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx) as pool:
        yield from pool.map(_frames, tasks)


def generate(preset: str | AMCPreset, per_pair: int, *, seed: int, snrs: Sequence[int] | None = None,
             classes: Sequence[str] | None = None, normalization: str = "unit_power", amplitude: str = "snr",
             progress: bool = True, workers: int = 1) -> AMCData:
    """Generate ``per_pair`` frames for every (class, SNR) pair of ``preset``.

    Args:
        preset: ``"rml2016"``, ``"rml2018"`` or an :class:`AMCPreset`.
        per_pair: frames per (class, SNR) pair (>= 1).
        seed: non-negative integer; the same seed gives bit-identical arrays (whatever ``workers``).
        snrs: SNRs in dB to generate (default: the preset's); returned sorted ascending.
        classes: class names to generate (default: the preset's); labels index them in the order given.
        normalization: ``"unit_power"``, ``"rml2016_l1"`` or ``"none"`` (per frame).
        amplitude: ``"snr"`` (noise from the measured signal power) or ``"rml2016"`` (RadioML 2016's convention).
        progress: show a tqdm progress bar.
        workers: processes (>= 1); more than 1 uses a spawn-based process pool over blocks.

    Returns:
        :class:`AMCData` ordered by class, then SNR ascending, then frame.
    """
    p = resolve_preset(preset)
    per_pair = _check_int("per_pair", per_pair, 1)
    seed = _check_int("seed", seed, 0)
    workers = _check_int("workers", workers, 1)
    _check_choice("normalization", normalization, NORMALIZATIONS)
    _check_choice("amplitude", amplitude, AMPLITUDES)
    names, snr_values = _select(p, classes, snrs)
    tasks, offsets = [], []
    for ci, name in enumerate(names):
        for si, snr in enumerate(snr_values):
            first = (ci * len(snr_values) + si) * per_pair
            for b in range(-(-per_pair // BLOCK)):
                count = min(BLOCK, per_pair - b * BLOCK)
                tasks.append((p, name, snr, b, count, seed, amplitude, normalization))
                offsets.append(first + b * BLOCK)
    total = len(names) * len(snr_values) * per_pair
    x = np.empty((total, 2, p.frame_length), dtype=np.float32)
    with tqdm(total=total, desc=f"AMC {p.name}", unit="frame", disable=not progress) as bar:
        for off, frames in zip(offsets, _run(tasks, workers), strict=True):
            x[off: off + len(frames)] = frames
            bar.update(len(frames))
    y = np.repeat(np.arange(len(names), dtype=np.int64), len(snr_values) * per_pair)
    snr = np.tile(np.repeat(np.asarray(snr_values, dtype=np.int16), per_pair), len(names))
    return AMCData(x=x, y=y, snr=snr, classes=tuple(names))
