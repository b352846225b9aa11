"""A stated, rough FPGA power model for energy-per-sample estimates.

``P = static_w + f_MHz · (lut·LUTs + ff·FFs + bram18·BRAM18 + uram·URAMs + dsp·DSPs)`` watts, with
per-device coefficients in ``devices.yaml``. The 7-series (XC7Z020) coefficients were chosen so that a
design of ~15 k LUTs, ~30 k FFs, ~80 BRAM18 and ~8 DSPs at 100 MHz draws ~0.47 W in the fabric, the
order of magnitude seed 000 measured on a ZC702 (≈19.5 mJ per ≈41 ms sample, VCCINT+VCCAUX+VCCBRAM);
UltraScale+ coefficients are scaled by the process (≈0.6×) with larger static power. It ignores toggle
rates, routing and I/O: results are estimates for ranking designs, not sign-off numbers.
"""

from __future__ import annotations

from .catalog import Device

__all__ = ["power_watts"]


def power_watts(device: Device, clock_mhz: float, luts: float, ffs: float, bram18: float, uram: float,
                dsps: float) -> float:
    """Estimated fabric power in watts for the given resource counts at ``clock_mhz``."""
    p = device.power
    dynamic = clock_mhz * (p["lut"] * luts + p["ff"] * ffs + p["bram18"] * bram18 + p["uram"] * uram
                           + p["dsp"] * dsps)
    return p["static_w"] + dynamic
