"""Sensor entities for a Modbus device's registers: one per register, declared from the profile.

The `power` sensor also carries per-phase lists (`current_a`, `voltage_v`, `power_w`): what the
smart-charging engine reads from the site's grid meter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hub.entities import Entity, EntityDescription, slugify
from plugins.modbus.device import ModbusDevice
from plugins.modbus.profile import Register

PLATFORM = "modbus"
PHASES = ("l1", "l2", "l3")


class RegisterSensor(Entity):
    """`sensor.<device>_<key>`: one register's value, unavailable with its device or value."""

    domain = "sensor"

    def __init__(self, device: ModbusDevice, reg: Register) -> None:
        description = EntityDescription(
            key=reg.key,
            name=reg.name,
            unit=reg.unit,
            device_class=reg.device_class,
            state_class=reg.state_class,
            enabled_default=reg.enabled,
        )
        super().__init__(
            f"{PLATFORM}-{device.name}-{reg.key}",
            f"{device.name} {reg.name}",
            description=description,
        )
        self.device = device
        self.key = reg.key

    def suggested_object_id(self) -> str:
        return slugify(f"{self.device.name}_{self.key}")

    @property
    def available(self) -> bool:
        return self.device.available(self.key)

    def native_state(self) -> Any:
        return self.device.values.get(self.key)

    def state_attributes(self) -> Mapping[str, Any]:
        attrs: dict[str, Any] = {"device": self.device.name}
        if self.key == "power":
            attrs.update(phase_lists(self.device))
            attrs.update({k: v for k, v in self.device.info.items() if isinstance(v, str | int)})
        return attrs


def phase_lists(device: ModbusDevice) -> dict[str, list[float]]:
    """Per-phase readings, only when every phase has a valid one."""
    out: dict[str, list[float]] = {}
    for attr, base in (("voltage_v", "voltage"), ("power_w", "power"), ("current_a", "current")):
        keys = [f"{base}_{p}" for p in PHASES]
        if not all(device.available(k) for k in keys):
            continue
        regs = [device.register(k) for k in keys]
        factor = 1000.0 if base == "power" and regs[0] is not None and regs[0].unit == "kW" else 1
        out[attr] = [float(device.values[k]) * factor for k in keys]
    # Meters report phase currents as magnitudes; a phase that exports must count as negative
    # load, so the current takes the sign of that phase's power.
    if "current_a" in out and "power_w" in out:
        out["current_a"] = [
            -abs(a) if w < 0 else abs(a)
            for a, w in zip(out["current_a"], out["power_w"], strict=True)
        ]
    return out
