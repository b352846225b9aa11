"""The device catalog: FPGA capacities, default clocks and power coefficients, from ``devices.yaml``."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import yaml

from hwnas.errors import HwnasError

__all__ = ["RESOURCES", "CostError", "Device", "devices", "get_device"]

RESOURCES = ("luts", "ffs", "bram18", "uram", "dsps")
"""Resource names, in the order tables show them."""

_FIELDS = ("part", "family", "yosys_family", *RESOURCES, "dsp_block", "clock_mhz", "power")
_POWER_TERMS = ("static_w", "lut", "ff", "bram18", "uram", "dsp")


class CostError(HwnasError, ValueError):
    """A cost model got an invalid input; the message names the layer, device or option."""


@dataclass(frozen=True)
class Device:
    """One FPGA: capacities (LUT, FF, BRAM18, URAM, DSP), default clock, DSP block type, power terms."""

    name: str
    part: str
    family: str
    yosys_family: str
    luts: int
    ffs: int
    bram18: int
    uram: int
    dsps: int
    dsp_block: str
    clock_mhz: float
    power: dict[str, float] = field(hash=False)
    aliases: tuple[str, ...] = ()

    def capacity(self, resource: str) -> int:
        """Capacity of ``resource`` (one of :data:`RESOURCES`)."""
        if resource not in RESOURCES:
            raise CostError(f"resource: unknown {resource!r}; expected one of {RESOURCES}")
        return int(getattr(self, resource))


@cache
def devices() -> dict[str, Device]:
    """Every device in the catalog by canonical name (validated: every field present and sane)."""
    text = resources.files("hwnas.cost").joinpath("devices.yaml").read_text()
    raw = yaml.safe_load(text)["devices"]
    out: dict[str, Device] = {}
    for name, entry in raw.items():
        missing = [f for f in _FIELDS if f not in entry]
        if missing:
            raise CostError(f"devices.yaml: {name} lacks {missing}")
        power = {k: float(entry["power"][k]) for k in _POWER_TERMS}
        dev = Device(name=name, part=str(entry["part"]), family=str(entry["family"]),
                     yosys_family=str(entry["yosys_family"]), luts=int(entry["luts"]), ffs=int(entry["ffs"]),
                     bram18=int(entry["bram18"]), uram=int(entry["uram"]), dsps=int(entry["dsps"]),
                     dsp_block=str(entry["dsp_block"]), clock_mhz=float(entry["clock_mhz"]), power=power,
                     aliases=tuple(str(a) for a in entry.get("aliases", ())))
        if min(dev.luts, dev.ffs, dev.dsps) <= 0 or dev.clock_mhz <= 0:
            raise CostError(f"devices.yaml: {name} has a non-positive capacity or clock")
        out[name] = dev
    return out


def get_device(name: str | Device) -> Device:
    """Look a device up by name or alias (case-insensitive); the error lists the known names."""
    if isinstance(name, Device):
        return name
    key = str(name).upper()
    for dev in devices().values():
        if key == dev.name.upper() or key in (a.upper() for a in dev.aliases):
            return dev
    known = ", ".join(f"{d.name} ({', '.join(d.aliases)})" for d in devices().values())
    raise CostError(f"target: unknown device {name!r}; known: {known}")
