"""Charging physics of the simulator: what a vehicle draws under a limit, taper, battery full.

Pure data and functions (no sockets, no clock); profiles.py says what limit applies when.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from plugins.simulator.profiles import Limit

MIN_CURRENT = 6.0  # IEC 61851-1: a pilot below 6 A means "do not charge"
TAPER_START = 80.0  # % SoC where constant current turns into the falling constant-voltage phase
TAPER_FLOOR = 0.2  # share of its maximum a vehicle still accepts just below 100 %
CHARGE_EFFICIENCY = 0.9  # grid -> battery; evspecs.json's fallback battery_charging_eff

CHARGING, SUSPENDED_EV, SUSPENDED_EVSE = "Charging", "SuspendedEV", "SuspendedEVSE"


@dataclass(slots=True)
class Vehicle:
    """One EV at one connector: battery, on-board charger, when it comes and goes, its RFID tag."""

    id: str
    model: str
    battery_kwh: float
    soc: float  # %
    target_soc: float = 100.0
    max_ac_current: float = 16.0  # per phase
    phases: int = 3
    max_dc_kw: float = 50.0
    arrival: datetime | None = None
    departure: datetime | None = None
    id_tag: str | None = None  # None: the driver starts by app (a remote start)

    @property
    def full(self) -> bool:
        return self.soc >= self.target_soc - 1e-6

    def wh_to_target(self) -> float:
        """Grid energy (Wh) until target_soc, losses included."""
        return max(
            0.0, (self.target_soc - self.soc) / 100 * self.battery_kwh * 1000 / CHARGE_EFFICIENCY
        )

    def charge(self, grid_wh: float) -> None:
        self.soc = min(100.0, self.soc + grid_wh * CHARGE_EFFICIENCY / (self.battery_kwh * 10))

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "soc": round(self.soc, 1),
            "target_soc": self.target_soc,
            "departure": self.departure.isoformat() if self.departure else None,
            "id_tag": self.id_tag,
        }


def acceptance(soc: float) -> float:
    """Share of its maximum current a battery accepts at `soc` (CC up to 80 %, then a taper)."""
    if soc <= TAPER_START:
        return 1.0
    return max(TAPER_FLOOR, 1.0 - (1.0 - TAPER_FLOOR) * (soc - TAPER_START) / (100.0 - TAPER_START))


@dataclass(frozen=True, slots=True)
class Draw:
    amps: float  # per phase
    phases: int
    state: str  # CHARGING | SUSPENDED_EV | SUSPENDED_EVSE


def draw(
    vehicle: Vehicle, *, max_current: float, phases: int, limit: Limit, voltage: float
) -> Draw:
    """What `vehicle` draws from a charger offering `limit` (min of charger, profile, vehicle)."""
    used = max(1, min(phases, vehicle.phases, limit.phases or phases))
    offered = limit.offered(max_current, used, voltage)
    if offered < MIN_CURRENT:
        return Draw(0.0, used, SUSPENDED_EVSE)
    if vehicle.full:
        return Draw(0.0, used, SUSPENDED_EV)
    amps = min(offered, vehicle.max_ac_current) * acceptance(vehicle.soc)
    return Draw(round(amps, 2), used, CHARGING)


def share(draws: list[Draw], station: Limit, voltage: float) -> list[Draw]:
    """Scale the connectors' draws down so together they fit the charger-wide limit.

    Every vehicle uses L1 (no phase rotation), so the per-phase cap applies to the sum of amps.
    """
    total_amps = sum(d.amps for d in draws)
    total_watts = sum(d.amps * d.phases * voltage for d in draws)
    scale = 1.0
    if station.amps is not None and total_amps > station.amps:
        scale = station.amps / total_amps
    if station.watts is not None and total_watts > station.watts:
        scale = min(scale, station.watts / total_watts)
    if scale >= 1.0:
        return draws
    out = []
    for d in draws:
        amps = d.amps * scale
        out.append(
            replace(d, amps=round(amps, 2))
            if amps >= MIN_CURRENT or not d.amps
            else Draw(0.0, d.phases, SUSPENDED_EVSE)
        )
    return out
