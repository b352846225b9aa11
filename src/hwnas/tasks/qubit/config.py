"""Physical parameters of the simulated dispersive readout (:class:`ReadoutConfig`).

Units: frequencies are given as ordinary frequencies in MHz (``kappa_mhz`` is κ/2π), times in µs or ns as the
field name says; internally rates are angular (rad/µs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

__all__ = ["ReadoutConfig"]

_TWO_PI = 2.0 * math.pi


@dataclass(frozen=True)
class ReadoutConfig:
    """Parameters of one simulated readout experiment (frozen; every field is validated on construction).

    The cavity field α (in units of √photons) obeys dα/dt = −(κ/2 + iΔ_s)α + ε from α = 0 when the drive starts,
    with Δ_g = Δ0 − χ and Δ_e = Δ0 + χ. A recorded I/Q sample is ``gain · (e^{iφ} α + ξ) + offset`` with complex
    Gaussian amplifier noise ξ (heterodyne detection with efficiency η: std ``1/√(2ηκ·dt)`` per quadrature, so a
    matched filter over a time τ separates the steady states with SNR ``|α_e − α_g|·√(2ηκτ)``).

    Attributes:
        kappa_mhz: cavity linewidth κ/2π [MHz] (default 5).
        chi_mhz: dispersive shift χ/2π [MHz]; the two states' resonances are 2χ apart (default κ/2, the
            SNR-optimal choice).
        detuning_mhz: drive detuning Δ0/2π from the midpoint of the two resonances [MHz] (default 0).
        drive_mhz: drive amplitude ε/2π [MHz]; the steady state holds |ε|²/(κ²/4 + Δ_s²) photons
            (default 3.5: ≈ 1 photon).
        efficiency: measurement efficiency η in (0, 1]; sets the noise (default tuned so that the matched-filter
            fidelity of the window start 100, size 400 is ≈ 95 %).
        t1_us: qubit energy relaxation time T1 [µs]; shots in |e⟩ decay to |g⟩ at an exponentially distributed
            time (``math.inf``: no decay).
        prep_error: probability that a shot is prepared in the other state than its label says (both ways).
        n_samples: recorded I/Q samples per shot (default 770).
        sample_period_ns: time between samples [ns] (default 2: 770 samples = 1.54 µs).
        delay_ns: time from the start of the recording to the start of the drive (cable and electronics
            latency) [ns]; the field is 0 before. T1 decay is counted from the start of the recording.
        phase_rad: rotation φ of the recorded I/Q plane (default 0.5 rad, so both I and Q carry signal).
        gain: scale of the recorded samples; ``None`` (default): ``1/noise_std``, so the noise has unit standard
            deviation per quadrature (inputs of order 1 for networks); ``1.0``: units of √photons of the
            intracavity field.
        offset_i: constant added to every I sample.
        offset_q: constant added to every Q sample.
    """

    kappa_mhz: float = 5.0
    chi_mhz: float = 2.5
    detuning_mhz: float = 0.0
    drive_mhz: float = 3.5
    efficiency: float = 0.13
    t1_us: float = 50.0
    prep_error: float = 0.01
    n_samples: int = 770
    sample_period_ns: float = 2.0
    delay_ns: float = 100.0
    phase_rad: float = 0.5
    gain: float | None = None
    offset_i: float = 0.0
    offset_q: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "gain" and value is None:
                continue
            if f.name == "n_samples":
                if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                    raise ValueError(f"ReadoutConfig.n_samples: must be a positive int, got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
                raise ValueError(f"ReadoutConfig.{f.name}: must be a number, got {value!r}")
            if math.isnan(value) or (math.isinf(value) and f.name != "t1_us"):
                raise ValueError(f"ReadoutConfig.{f.name}: must be finite, got {value!r}")
        for name in ("kappa_mhz", "sample_period_ns", "gain", "t1_us"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"ReadoutConfig.{name}: must be > 0, got {getattr(self, name)!r}")
        for name in ("chi_mhz", "drive_mhz", "delay_ns"):
            if getattr(self, name) < 0:
                raise ValueError(f"ReadoutConfig.{name}: must be >= 0, got {getattr(self, name)!r}")
        if self.chi_mhz == 0:
            raise ValueError("ReadoutConfig.chi_mhz: must be > 0 (χ = 0 makes the states indistinguishable)")
        if not 0.0 < self.efficiency <= 1.0:
            raise ValueError(f"ReadoutConfig.efficiency: must be in (0, 1], got {self.efficiency!r}")
        if not 0.0 <= self.prep_error < 0.5:
            raise ValueError(f"ReadoutConfig.prep_error: must be in [0, 0.5), got {self.prep_error!r}")

    # ------------------------------------------------------------------------------------ derived
    @property
    def kappa(self) -> float:
        """κ [rad/µs]."""
        return _TWO_PI * self.kappa_mhz

    @property
    def dt_us(self) -> float:
        """Sample period [µs]."""
        return self.sample_period_ns * 1e-3

    @property
    def duration_us(self) -> float:
        """Length of the recording [µs]."""
        return self.n_samples * self.dt_us

    @property
    def noise_std(self) -> float:
        """Standard deviation of the amplifier noise per quadrature and sample, before ``gain`` [√photons]."""
        return 1.0 / math.sqrt(2.0 * self.efficiency * self.kappa * self.dt_us)

    @property
    def output_gain(self) -> float:
        """The gain applied to the recorded samples (``gain``, or ``1/noise_std`` where ``gain`` is None)."""
        return 1.0 / self.noise_std if self.gain is None else float(self.gain)

    def decay_rates(self) -> tuple[complex, complex]:
        """λ_s = κ/2 + iΔ_s [rad/µs] for s = g, e."""
        half = self.kappa / 2.0
        d0, chi = _TWO_PI * self.detuning_mhz, _TWO_PI * self.chi_mhz
        return complex(half, d0 - chi), complex(half, d0 + chi)

    def steady_state(self) -> tuple[complex, complex]:
        """Steady-state fields ε/λ_g, ε/λ_e [√photons] (before the I/Q rotation and gain)."""
        eps = _TWO_PI * self.drive_mhz
        lam_g, lam_e = self.decay_rates()
        return eps / lam_g, eps / lam_e

    def steady_state_photons(self) -> tuple[float, float]:
        """Mean photon numbers |α_g|², |α_e|² of the steady states."""
        a_g, a_e = self.steady_state()
        return abs(a_g) ** 2, abs(a_e) ** 2

    def times_us(self) -> np.ndarray:
        """Time of every sample [µs] from the start of the recording: sample k is the field at (k + 1)·dt."""
        return (np.arange(self.n_samples) + 1.0) * self.dt_us
