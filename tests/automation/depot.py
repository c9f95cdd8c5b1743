"""A simulated depot for the day-long automation tests: chargers that obey the limits the
smart-charging engine sends, vehicles that take energy up to what they need, and a grid meter.

The hub around it is the real one (tariffs, smart_charging, notify plugins and the automations);
only the hardware is simulated, one step per simulated minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub.charging.charger import (
    ChargerCapability,
    ChargerData,
    ChargerEntity,
    ChargingSchedule,
    CommandResult,
    ConnectorStatus,
    RateUnit,
)
from hub.charging.session import EVENT_SESSION_STARTED, EVENT_SESSION_STOPPED
from hub.core import Hub

VOLTS = 230.0


@dataclass
class Vehicle:
    """What the fleet integration would publish as `vehicle.<id>` (when `entity` is set)."""

    name: str
    max_kw: float
    need_kwh: float
    capacity_kwh: float = 100.0
    soc: float = 50.0
    entity: str | None = None  # vehicle.van_17; None for a guest nobody knows
    departure: datetime | None = None
    reserve: float | None = None
    charge_kw: float | None = None
    delivered_kwh: float = 0.0

    def publish(self, hub: Hub, charger: str | None) -> None:
        if self.entity is None:
            return
        attrs: dict[str, Any] = {"friendly_name": self.name, "charger": charger}
        if self.departure is not None:
            attrs["departure"] = self.departure.isoformat()
            attrs["energy_needed_kwh"] = round(self.need_kwh, 3)
        if self.charge_kw is not None:
            attrs["charge_kw"] = self.charge_kw
        if self.reserve is not None:
            attrs["operating_reserve"] = self.reserve
        hub.states.set(self.entity, round(self.soc, 2), attrs, unit="%")


class DepotCharger(ChargerEntity):
    """Draws what its limit allows and its vehicle takes; a DC charger takes its limit in W."""

    supported = frozenset({ChargerCapability.LIMIT_AMPS, ChargerCapability.LIMIT_WATTS})

    def __init__(self, key: str, phases: int = 3, dc: bool = False) -> None:
        super().__init__(key, key, data=ChargerData(status=ConnectorStatus.AVAILABLE))
        self.phases, self.dc = phases, dc
        self.limit_kw = 0.0
        self.vehicle: Vehicle | None = None
        self.sessions = 0
        self.data.energy_wh = 0.0

    def suggested_object_id(self) -> str:
        return self.unique_id or ""

    async def _do_set_limit(self, schedule: ChargingSchedule) -> CommandResult:
        limit = schedule.periods[0].limit
        if schedule.unit is RateUnit.WATTS:
            self.limit_kw = limit / 1000
        else:
            self.limit_kw = limit * self.phases * VOLTS / 1000
        return CommandResult(True, "Accepted")

    @property
    def power_kw(self) -> float:
        return (self.data.power_w or 0.0) / 1000

    def plug(self, hub: Hub, vehicle: Vehicle, id_tag: str = "04A1B2C3") -> None:
        self.sessions += 1
        self.vehicle = vehicle
        session = f"{self.unique_id}-{self.sessions}"
        self.update(status="charging", session_id=session, id_tag=id_tag, phases=self.phases,
                    current_a=(0.0, 0.0, 0.0), power_w=0.0)  # fmt: skip
        vehicle.publish(hub, self.entity_id)
        hub.bus.fire(EVENT_SESSION_STARTED, {"entity_id": self.entity_id, "session_id": session,
                                             "id_tag": id_tag})  # fmt: skip

    def unplug(self, hub: Hub) -> None:
        session, vehicle = self.data.session_id, self.vehicle
        self.vehicle = None
        self.update(status="available", session_id=None, id_tag=None, power_w=0.0,
                    current_a=(0.0, 0.0, 0.0))  # fmt: skip
        if vehicle is not None:
            vehicle.publish(hub, None)
        hub.bus.fire(EVENT_SESSION_STOPPED, {"entity_id": self.entity_id, "session_id": session})

    def step(self, hub: Hub, minutes: float = 1.0) -> None:
        """One simulated interval: draw, meter, and the vehicle's state of charge."""
        vehicle = self.vehicle
        if vehicle is None or self.data.status in ("faulted", "offline"):
            return
        kw = min(self.limit_kw, vehicle.max_kw) if vehicle.need_kwh > 1e-6 else 0.0
        kwh = min(kw * minutes / 60, vehicle.need_kwh)
        vehicle.need_kwh -= kwh
        vehicle.delivered_kwh += kwh
        vehicle.soc = min(100.0, vehicle.soc + 100 * kwh / vehicle.capacity_kwh)
        amps = kw * 1000 / (self.phases * VOLTS)
        per_phase = tuple(amps if p < self.phases else 0.0 for p in range(3))
        status = (
            "charging" if kw > 0 else "suspended_evse" if vehicle.need_kwh > 0 else "suspended_ev"
        )
        self.update(status=status, power_w=kw * 1000, current_a=per_phase,
                    energy_wh=(self.data.energy_wh or 0.0) + kwh * 1000)  # fmt: skip
        vehicle.publish(hub, self.entity_id)


def site_kw(chargers: list[DepotCharger]) -> float:
    return sum(c.power_kw for c in chargers)
