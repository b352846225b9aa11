"""The common result of every hardware model: per-layer rows, totals, utilization, assumptions."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .catalog import RESOURCES, Device

__all__ = ["AVG_RESOURCES", "HardwareEstimate", "LayerRow", "average_resource"]

AVG_RESOURCES = ("luts", "ffs", "bram18", "dsps")
"""The resources SNAC-Pack's average-resource objective averages (seed 004, §3.1: LUT, FF, BRAM, DSP)."""


def average_resource(utilization: dict[str, float]) -> float:
    """SNAC-Pack's average resource utilization in % of the device.

    100 × the mean of the LUT, FF, BRAM18 and DSP shares (:data:`AVG_RESOURCES`) of ``utilization`` (shares,
    1.0 = full; URAM is not part of it).
    """
    return 100.0 * sum(float(utilization[r]) for r in AVG_RESOURCES) / len(AVG_RESOURCES)


@dataclass
class LayerRow:
    """One hardware stage (a layer, or a helper stage such as padding or a sliding-window generator)."""

    name: str
    type: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    macs: int = 0
    weight_bits: float = 0.0
    act_bits: float = 0.0
    cycles: int = 0
    luts: float = 0.0
    ffs: float = 0.0
    bram18: float = 0.0
    uram: float = 0.0
    dsps: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for tables, CSV and JSON."""
        return asdict(self)


@dataclass
class HardwareEstimate:
    """Per-layer rows plus totals; ``assumptions`` says which model, device, clock and formulas produced it."""

    model: str
    device: Device
    clock_mhz: float
    rows: list[LayerRow]
    latency_cycles: int
    initiation_interval: int
    assumptions: dict[str, Any]
    power_w: float | None = None

    def total(self, resource: str) -> float:
        """Sum of one resource over all rows."""
        return float(sum(getattr(r, resource) for r in self.rows))

    @property
    def totals(self) -> dict[str, float]:
        """Every resource summed, plus MACs."""
        out = {res: self.total(res) for res in RESOURCES}
        out["macs"] = float(sum(r.macs for r in self.rows))
        return out

    @property
    def utilization(self) -> dict[str, float]:
        """Share of the device's capacity per resource (1.0 = full; inf if the device has none)."""
        out = {}
        for res in RESOURCES:
            cap = self.device.capacity(res)
            used = self.total(res)
            out[res] = used / cap if cap else (0.0 if used == 0 else float("inf"))
        return out

    @property
    def avg_resource(self) -> float:
        """SNAC-Pack's average resource utilization in %: the mean of the LUT, FF, BRAM18 and DSP shares.

        :func:`average_resource`; a resource the device lacks but the design uses makes it infinite.
        """
        return average_resource(self.utilization)

    @property
    def overflows(self) -> list[str]:
        """Resources whose estimate exceeds the device capacity."""
        return [res for res, u in self.utilization.items() if u > 1.0]

    @property
    def fits(self) -> bool:
        """True when no resource overflows."""
        return not self.overflows

    @property
    def verdict(self) -> str:
        """``fits`` or ``overflows: LUT 143%, DSP 120%``."""
        if self.fits:
            return "fits"
        util = self.utilization
        return "overflows: " + ", ".join(f"{r} {100 * util[r]:.0f}%" for r in self.overflows)

    @property
    def latency_ms(self) -> float:
        """First-sample latency in milliseconds at the estimate's clock."""
        return self.latency_cycles / (self.clock_mhz * 1e3)

    @property
    def throughput(self) -> float:
        """Samples per second in steady state (clock ÷ initiation interval)."""
        return self.clock_mhz * 1e6 / max(self.initiation_interval, 1)

    @property
    def energy_mj(self) -> float | None:
        """Energy per sample (mJ) = power × first-sample latency; an estimate from a stated power model."""
        return None if self.power_w is None else self.power_w * self.latency_ms

    def latency_breakdown(self) -> list[tuple[str, int, float]]:
        """(stage, cycles, share of the summed cycles) per row, ready for a bar chart."""
        total = sum(r.cycles for r in self.rows) or 1
        return [(r.name, r.cycles, r.cycles / total) for r in self.rows]

    def table(self) -> str:
        """Markdown table of the rows and totals."""
        head = ("| stage | type | in | out | MACs | W bits | A bits | cycles | LUT | FF | BRAM18 | URAM | DSP |\n"
                "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        lines = [head]
        for r in self.rows:
            lines.append(f"| {r.name} | {r.type} | {r.in_shape} | {r.out_shape} | {r.macs:,} | {r.weight_bits:g} | "
                         f"{r.act_bits:g} | {r.cycles:,} | {r.luts:,.0f} | {r.ffs:,.0f} | {r.bram18:g} | "
                         f"{r.uram:g} | {r.dsps:g} |")
        t = self.totals
        util = self.utilization
        lines.append(f"| total | | | | {t['macs']:,.0f} | | | {self.latency_cycles:,} | {t['luts']:,.0f} "
                     f"({100 * util['luts']:.1f}%) | {t['ffs']:,.0f} ({100 * util['ffs']:.1f}%) | "
                     f"{t['bram18']:g} ({100 * util['bram18']:.1f}%) | {t['uram']:g} | {t['dsps']:g} "
                     f"({100 * util['dsps']:.1f}%) |")
        energy = "" if self.energy_mj is None else f", energy ≈ {self.energy_mj:.3g} mJ/sample (estimate)"
        lines.append(f"\n{self.model} on {self.device.name} @ {self.clock_mhz:g} MHz: latency "
                     f"{self.latency_ms:.4g} ms, {self.throughput:,.0f} samples/s, {self.verdict}{energy}")
        return "\n".join(lines)
