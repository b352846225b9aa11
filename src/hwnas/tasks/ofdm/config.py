"""Parameters of the simulated OFDM SIMO uplink (:class:`LinkConfig`) and its presets ``seed`` and ``small``.

The ``seed`` preset holds the numbers of the seed paper's Tables II and III ("Efficient Deep Neural Receiver with
Post-Training Quantization"); where the paper is silent the choice is ours and says so in the field's
description (and in ``docs/tasks_receiver.md``). This module does not import Sionna: a configuration can be
built and validated without the ``receiver`` extra installed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import Any

from hwnas.tasks.registry import TaskError

__all__ = [
    "CDL_MODELS",
    "MAX_SPEED_MPS",
    "MODULATIONS",
    "PRESETS",
    "SPEED_GROUPS",
    "LinkConfig",
]

CDL_MODELS: tuple[str, ...] = ("A", "B", "C", "D", "E")
"""The CDL profiles of 3GPP TR 38.901 that Sionna implements (A–C non-line-of-sight, D–E line-of-sight)."""

MODULATIONS: Mapping[str, int] = MappingProxyType({"QPSK": 2, "16QAM": 4, "64QAM": 6})
"""Supported modulations and their bits per symbol (Gray-labelled square QAM, unit average energy)."""

SPEED_GROUPS: tuple[str, ...] = ("low", "medium", "high")
"""The UE speed groups of the seed's evaluation (Fig. 2 a–c)."""

MAX_SPEED_MPS = 140.0
"""Largest accepted UE speed [m/s] (≈ 500 km/h, the top speed of 3GPP's high-speed-train scenarios)."""

MAX_DELAY_SPREAD_NS = 1000.0
"""Largest accepted RMS delay spread [ns] (TR 38.901's "very long delay spread")."""

SUBCARRIER_SPACINGS_HZ: tuple[float, ...] = (15e3, 30e3, 60e3, 120e3, 240e3)
"""5G NR numerologies μ = 0…4."""

MAX_INFO_BITS = 8448
"""Largest 5G LDPC code block (base graph 1); Sionna's LDPC5GEncoder does no code-block segmentation."""

NR_CP_RATIO = 144 / 2048
"""5G NR normal cyclic prefix length relative to the FFT size (144 samples at FFT 2048)."""


def _err(name: str, msg: str) -> TaskError:
    return TaskError(f"ofdm link option {name}: {msg}")


def _is_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(float(v))


def _range(name: str, value: Any, *, lo: float | None = None, hi: float | None = None) -> tuple[float, float]:
    """A ``(low, high)`` pair of finite numbers with ``low <= high`` inside ``[lo, hi]`` (a number is ``(v, v)``)."""
    if _is_number(value):
        value = (value, value)
    if isinstance(value, str) or not isinstance(value, tuple | list) or len(value) != 2:
        raise _err(name, f"must be a (low, high) pair of numbers, got {value!r}")
    if not all(_is_number(v) for v in value):
        raise _err(name, f"must be finite numbers, got {value!r}")
    a, b = float(value[0]), float(value[1])
    if a > b:
        raise _err(name, f"low {a:g} > high {b:g}")
    if lo is not None and a < lo:
        raise _err(name, f"{a:g} is below the minimum {lo:g}")
    if hi is not None and b > hi:
        raise _err(name, f"{b:g} is above the maximum {hi:g}")
    return a, b


def _cdl(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, tuple | list) or not value:
        raise _err(name, f"must be a non-empty list of CDL models {list(CDL_MODELS)}, got {value!r}")
    out: list[str] = []
    for v in value:
        letter = normalize_cdl_model(v, name)
        if letter in out:
            raise _err(name, f"CDL-{letter} is listed twice")
        out.append(letter)
    return tuple(out)


def normalize_cdl_model(value: Any, name: str = "cdl_model") -> str:
    """``"A"``, ``"cdl-a"``, ``"CDL_A"`` → ``"A"``; anything else is a :class:`TaskError` naming ``name``."""
    if isinstance(value, str):
        v = value.strip().upper().replace("_", "-")
        v = v.removeprefix("CDL-").removeprefix("CDL")
        if v in CDL_MODELS:
            return v
    raise _err(name, f"unknown CDL model {value!r}; known: {', '.join('CDL-' + m for m in CDL_MODELS)}")


def _int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _err(name, f"must be an int, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise _err(name, f"must be in [{lo}, {hi if hi is not None else '∞'}], got {value}")
    return int(value)


@dataclass(frozen=True)
class LinkConfig:
    """One OFDM SIMO uplink: waveform, code, pilots and the channel/SNR draws of the train and test splits.

    Frozen; every field is validated (and normalized: lists → tuples, ``"cdl-a"`` → ``"A"``, ``"64qam"`` →
    ``"64QAM"``) on construction; an invalid value is a :class:`~hwnas.tasks.registry.TaskError` whose message
    names the option. Ranges are ``(low, high)`` pairs drawn uniformly per frame; a single number means a
    fixed value.

    Attributes:
        preset: name of the preset this configuration started from (informational).
        carrier_frequency_hz: carrier frequency [Hz] (seed: 3.5 GHz).
        subcarrier_spacing_hz: subcarrier spacing [Hz] (seed: 30 kHz).
        num_ofdm_symbols: OFDM symbols per slot (seed: 14).
        n_prb: physical resource blocks of 12 subcarriers (seed preset: 11 = 132 subcarriers, ours: the seed
            does not give its bandwidth; 11 PRBs is the whole-PRB grid closest to the 128 subcarriers of
            Sionna's OFDM SIMO neural-receiver tutorial, which the seed's link follows).
        num_rx_ant: base-station receive antennas (seed: 2, one dual-polarized element); the UE sends with one
            antenna (SIMO, not configurable).
        pilot_symbols: 0-based OFDM symbol indices carrying pilots on every subcarrier (seed: "3rd and 12th
            symbol" = ``(2, 11)``).
        pilot_seed: seed of the fixed QPSK pilot sequence (ours).
        modulation: ``"QPSK"``, ``"16QAM"`` or ``"64QAM"`` (seed: 64-QAM).
        code_rate: 5G LDPC code rate (seed: 0.5); ``k = floor(code_rate · n)``.
        ldpc_iterations: belief-propagation iterations of the LDPC decoder (ours: Sionna's default 20).
        train_cdl_models: CDL profiles drawn (uniformly per frame) in the train split (seed: A, B, C).
        train_delay_spread_ns: RMS delay spread range of the train split [ns] (seed: 10–100).
        train_speed_mps: UE speed range of the train split [m/s] (seed: 0–50).
        train_snr_db: per-RE SNR range of the train split [dB] (seed: −2…15).
        test_cdl_models: CDL profiles of the test split (seed: D, E).
        test_delay_spread_ns: RMS delay spread range of the test split [ns] (seed: 0–50).
        test_speed_mps: UE speed range of the test split when no speed group is asked for [m/s] (ours: the span
            of the three groups).
        test_ebno_db: Eb/N0 range of the test split [dB] when no Eb/N0 is given (seed: 0–10).
        speed_low_mps: "low" speed group [m/s] (ours: 0–5; the seed's values are missing from its text).
        speed_medium_mps: "medium" speed group [m/s] (ours: 10–20).
        speed_high_mps: "high" speed group [m/s] (ours: 30–50).
    """

    preset: str = "seed"
    carrier_frequency_hz: float = 3.5e9
    subcarrier_spacing_hz: float = 30e3
    num_ofdm_symbols: int = 14
    n_prb: int = 11
    num_rx_ant: int = 2
    pilot_symbols: tuple[int, ...] = (2, 11)
    pilot_seed: int = 0
    modulation: str = "64QAM"
    code_rate: float = 0.5
    ldpc_iterations: int = 20
    train_cdl_models: tuple[str, ...] = ("A", "B", "C")
    train_delay_spread_ns: tuple[float, float] = (10.0, 100.0)
    train_speed_mps: tuple[float, float] = (0.0, 50.0)
    train_snr_db: tuple[float, float] = (-2.0, 15.0)
    test_cdl_models: tuple[str, ...] = ("D", "E")
    test_delay_spread_ns: tuple[float, float] = (0.0, 50.0)
    test_speed_mps: tuple[float, float] = (0.0, 50.0)
    test_ebno_db: tuple[float, float] = (0.0, 10.0)
    speed_low_mps: tuple[float, float] = (0.0, 5.0)
    speed_medium_mps: tuple[float, float] = (10.0, 20.0)
    speed_high_mps: tuple[float, float] = (30.0, 50.0)

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if not isinstance(self.preset, str) or not self.preset:
            raise _err("preset", f"must be a non-empty string, got {self.preset!r}")
        fc = self.carrier_frequency_hz
        if not _is_number(fc) or not 0.5e9 <= fc <= 100e9:
            raise _err("carrier_frequency_hz", f"must be in [0.5e9, 100e9] Hz (TR 38.901), got {fc!r}")
        put("carrier_frequency_hz", float(self.carrier_frequency_hz))
        scs = self.subcarrier_spacing_hz
        if not _is_number(scs) or float(scs) not in SUBCARRIER_SPACINGS_HZ:
            raise _err("subcarrier_spacing_hz", f"must be one of {SUBCARRIER_SPACINGS_HZ}, got {scs!r}")
        put("subcarrier_spacing_hz", float(self.subcarrier_spacing_hz))
        _int("num_ofdm_symbols", self.num_ofdm_symbols, 2, 28)
        _int("n_prb", self.n_prb, 1, 275)
        if self.num_rx_ant not in (1, 2, 4, 8) or isinstance(self.num_rx_ant, bool):
            raise _err("num_rx_ant", f"must be 1, 2, 4 or 8, got {self.num_rx_ant!r}")
        pilots = self.pilot_symbols
        if isinstance(pilots, int) and not isinstance(pilots, bool):
            pilots = (pilots,)
        if not isinstance(pilots, tuple | list) or not pilots:
            raise _err("pilot_symbols", f"must be a non-empty list of OFDM symbol indices, got {pilots!r}")
        for p in pilots:
            _int("pilot_symbols", p, 0, self.num_ofdm_symbols - 1)
        if len(set(pilots)) != len(pilots) or list(pilots) != sorted(pilots):
            raise _err("pilot_symbols", f"must be distinct and ascending, got {pilots!r}")
        if len(pilots) >= self.num_ofdm_symbols:
            raise _err("pilot_symbols", "leave at least one OFDM symbol for data")
        put("pilot_symbols", tuple(int(p) for p in pilots))
        _int("pilot_seed", self.pilot_seed, 0)
        mod = self.modulation
        key = mod.strip().upper().replace("-", "").replace("_", "") if isinstance(mod, str) else None
        key = {"QAM16": "16QAM", "QAM64": "64QAM", "4QAM": "QPSK"}.get(key, key) if key else key
        if key not in MODULATIONS:
            raise _err("modulation", f"unknown modulation {mod!r}; known: {', '.join(MODULATIONS)}")
        put("modulation", key)
        if not _is_number(self.code_rate) or not 0.1 <= self.code_rate <= 0.95:
            raise _err("code_rate", f"must be in [0.1, 0.95] (5G LDPC), got {self.code_rate!r}")
        put("code_rate", float(self.code_rate))
        _int("ldpc_iterations", self.ldpc_iterations, 1, 1000)
        put("train_cdl_models", _cdl("train_cdl_models", self.train_cdl_models))
        put("test_cdl_models", _cdl("test_cdl_models", self.test_cdl_models))
        for name in ("train_delay_spread_ns", "test_delay_spread_ns"):
            put(name, _range(name, getattr(self, name), lo=0.0, hi=MAX_DELAY_SPREAD_NS))
        for name in ("train_speed_mps", "test_speed_mps", "speed_low_mps", "speed_medium_mps", "speed_high_mps"):
            put(name, _range(name, getattr(self, name), lo=0.0, hi=MAX_SPEED_MPS))
        for name in ("train_snr_db", "test_ebno_db"):
            put(name, _range(name, getattr(self, name), lo=-50.0, hi=100.0))
        if self.k < 12:
            raise _err("n_prb", f"the code carries only k={self.k} information bits (5G LDPC needs >= 12)")
        if self.k > MAX_INFO_BITS:
            raise _err(
                "n_prb",
                f"{self.n_prb} PRBs × {self.modulation} × rate {self.code_rate:g} give k={self.k} information bits, "
                f"more than one 5G LDPC code block ({MAX_INFO_BITS}; no code-block segmentation): use fewer PRBs",
            )

    # ------------------------------------------------------------------ derived quantities
    @property
    def bits_per_symbol(self) -> int:
        """Coded bits per QAM symbol ``m`` (2, 4 or 6)."""
        return MODULATIONS[self.modulation]

    @property
    def num_subcarriers(self) -> int:
        """Subcarriers of the grid (``12 · n_prb``; no guard or DC carriers: frequency-domain simulation)."""
        return 12 * self.n_prb

    @property
    def cyclic_prefix_length(self) -> int:
        """Cyclic prefix in samples at FFT size = ``num_subcarriers``: 5G NR's normal-CP ratio 144/2048, rounded.

        It sets the OFDM symbol duration (the time step of the channel's evolution) and the CP energy overhead
        in the Eb/N0 → N0 conversion, as in Sionna's ``ebnodb2no``.
        """
        return max(1, round(self.num_subcarriers * NR_CP_RATIO))

    @property
    def num_data_re(self) -> int:
        """Data resource elements per slot (all REs outside the pilot symbols)."""
        return (self.num_ofdm_symbols - len(self.pilot_symbols)) * self.num_subcarriers

    @property
    def n(self) -> int:
        """Coded bits per slot (one LDPC codeword fills the data REs)."""
        return self.num_data_re * self.bits_per_symbol

    @property
    def k(self) -> int:
        """Information bits per codeword, ``floor(code_rate · n)``."""
        return math.floor(self.code_rate * self.n + 1e-9)

    @property
    def speed_groups(self) -> Mapping[str, tuple[float, float]]:
        """``{"low": (lo, hi), "medium": …, "high": …}`` [m/s]."""
        return MappingProxyType(
            {"low": self.speed_low_mps, "medium": self.speed_medium_mps, "high": self.speed_high_mps}
        )

    def speed_range(self, speed_group: str | None, split: str) -> tuple[float, float]:
        """The speed range drawn for ``speed_group`` (``None``: the split's own range)."""
        if speed_group is None:
            return self.train_speed_mps if split == "train" else self.test_speed_mps
        if speed_group not in SPEED_GROUPS:
            raise _err("speed_group", f"unknown speed group {speed_group!r}; known: {', '.join(SPEED_GROUPS)}")
        return self.speed_groups[speed_group]

    def to_dict(self) -> dict[str, Any]:
        """All fields plus the derived sizes (for ``info`` dicts, run records and documentation)."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(
            bits_per_symbol=self.bits_per_symbol,
            num_subcarriers=self.num_subcarriers,
            cyclic_prefix_length=self.cyclic_prefix_length,
            num_data_re=self.num_data_re,
            n=self.n,
            k=self.k,
        )
        return out

    # ------------------------------------------------------------------ construction from options
    @classmethod
    def from_options(cls, preset: str = "seed", **overrides: Any) -> LinkConfig:
        """A preset (``"seed"`` or ``"small"``) with some fields replaced; unknown names are a :class:`TaskError`."""
        if preset not in PRESETS:
            raise _err("preset", f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        known = {f.name for f in fields(cls)} - {"preset"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise _err(unknown[0], f"unknown option; known: {', '.join(sorted(known))}")
        return replace(PRESETS[preset], **overrides)


PRESETS: Mapping[str, LinkConfig] = MappingProxyType(
    {
        # The seed paper's Tables II/III (our choices where it is silent: see LinkConfig's field descriptions).
        "seed": LinkConfig(),
        # Tests and quick runs: 2 PRBs (24 subcarriers), 16-QAM, n = 1152, k = 576; same pilots and channels.
        "small": LinkConfig(preset="small", n_prb=2, modulation="16QAM"),
    }
)
"""Named configurations: ``seed`` (the paper) and ``small`` (2 PRBs, 16-QAM: a 1152-bit codeword)."""
