"""What a simulated grid meter measures: a building's daily load curve on the hub clock plus, per
grid phase, what the site's chargers draw; energy integrates as hub time passes.

Used by `modbus: simulate:` so `make demo` allocates under a measured, moving building load.
"""

from __future__ import annotations

import math
import random
from datetime import datetime
from typing import TYPE_CHECKING, Any

from plugins.modbus.profile import UNIT_FACTOR, Profile

if TYPE_CHECKING:
    from hub.core import Hub

PHASES = ("l1", "l2", "l3")


class SiteMeterModel:
    """`values()` -> {register key: value in the profile's units} at the hub's current time."""

    def __init__(self, hub: Hub, conf: dict[str, Any], profile: Profile) -> None:
        self.hub = hub
        self.profile = profile
        b = conf["building"]
        self.base_kw, self.peak_kw = b["base_kw"], b["peak_kw"]
        self.peak_hour, self.width = b["peak_hour"], b["width_hours"]
        self.split = b["phase_split"]
        self.noise = b["noise"]
        self.voltage = conf["voltage"]
        self.with_chargers = conf["chargers"]
        self._seed = b["seed"]
        self.import_kwh = conf["energy_import_kwh"]
        self.export_kwh = 0.0
        self._last: datetime | None = None
        self._last_kw = 0.0

    def building_kw(self, now: datetime) -> float:
        """Base load plus a bell around the peak hour (local time), with seeded minute noise."""
        local = now.astimezone(self.hub.time_zone)
        hour = local.hour + local.minute / 60 + local.second / 3600
        bell = math.exp(-(((hour - self.peak_hour) / self.width) ** 2))
        minute = int(now.timestamp() // 60)
        jitter = random.Random(self._seed * 1_000_003 + minute).uniform(-1, 1) * self.noise
        return max(0.0, (self.base_kw + (self.peak_kw - self.base_kw) * bell) * (1 + jitter))

    def _charger_amps(self) -> list[float]:
        """Amps the chargers draw on each grid phase, through each one's phase rotation."""
        amps = [0.0, 0.0, 0.0]
        site = self.hub.site
        if site is None or not self.with_chargers:
            return amps
        for node in site.chargers():
            state = self.hub.states.get(node.entity) if node.entity else None
            currents = state.attributes.get("current_a") if state is not None else None
            if not isinstance(currents, list | tuple):
                continue
            for charger_phase, grid_phase in enumerate(site.charger_phase_map(node)):
                if charger_phase < len(currents) and isinstance(
                    currents[charger_phase], int | float
                ):
                    amps[grid_phase.index] += float(currents[charger_phase])
        return amps

    def values(self) -> dict[str, float | str | None]:
        now = self.hub.now()
        kw = self.building_kw(now)
        ev = self._charger_amps()
        pf = 0.96
        # The building's kW is active power: its current is what that takes at its power factor.
        amps = [kw * 1000 * s / (self.voltage * pf) + ev[i] for i, s in enumerate(self.split)]
        minute = int(now.timestamp() // 60)
        wobble = random.Random(self._seed + minute).uniform(-1.5, 1.5)
        volts = [self.voltage + wobble + 0.4 * i for i in range(3)]
        watts = [a * v * pf for a, v in zip(amps, volts, strict=True)]
        total_kw = sum(watts) / 1000
        if self._last is not None:
            hours = max(0.0, (now - self._last).total_seconds()) / 3600
            self.import_kwh += (self._last_kw + total_kw) / 2 * hours  # trapezoid
        self._last, self._last_kw = now, total_kw
        readings: dict[str, float] = {
            "power": sum(watts), "frequency": 50.0 + wobble / 100, "power_factor": pf,
            "energy_import": self.import_kwh, "energy_export": self.export_kwh,
            "energy_total": self.import_kwh + self.export_kwh,
            "apparent_power": sum(a * v for a, v in zip(amps, volts, strict=True)),
            "reactive_power": sum(watts) * math.tan(math.acos(pf)),
            "current": sum(amps), "voltage": sum(volts) / 3,
        }  # fmt: skip
        for i, p in enumerate(PHASES):
            readings[f"voltage_{p}"], readings[f"current_{p}"] = volts[i], amps[i]
            readings[f"power_{p}"], readings[f"power_factor_{p}"] = watts[i], pf
            readings[f"energy_import_{p}"] = self.import_kwh * self.split[i]
            readings[f"energy_export_{p}"] = 0.0
        return {k: self._in_unit(k, v) for k, v in readings.items() if k in self.profile.registers}

    def _in_unit(self, key: str, value: float) -> float:
        """Readings are in W, Wh-as-kWh, A, V: convert to the register's declared unit."""
        reg = self.profile.registers[key]
        if reg.device_class == "energy":
            return value * 1e3 / UNIT_FACTOR.get(reg.unit or "kWh", 1e3)
        if reg.device_class in ("power", "apparent_power", "reactive_power"):
            return value / UNIT_FACTOR.get(reg.unit or "W", 1.0)
        if reg.device_class == "power_factor" and reg.unit == "%":
            return value * 100
        return value
