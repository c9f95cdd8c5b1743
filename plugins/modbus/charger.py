"""A Modbus charger as a `ChargerEntity`: status from the vendor's state register, limits written
to its current register (clamped to the device's range, 0 = pause), re-sent when it forgets.

Sessions are derived from the plug state: a car connecting opens one, the plug leaving ends it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any

from hub.charging.charger import (
    ChargerCapability,
    ChargerEntity,
    ChargingLimit,
    ChargingSchedule,
    CommandResult,
    ConnectorStatus,
    RateUnit,
)
from hub.entities import slugify
from plugins.modbus.device import ModbusDevice
from plugins.modbus.link import LinkError
from plugins.modbus.profile import UNIT_FACTOR, ChargerMap

if TYPE_CHECKING:
    from hub.clock import Timer

_LOGGER = logging.getLogger(__name__)

CONNECTED = {
    ConnectorStatus.PREPARING,
    ConnectorStatus.CHARGING,
    ConnectorStatus.SUSPENDED_EV,
    ConnectorStatus.SUSPENDED_EVSE,
    ConnectorStatus.FINISHING,
}


class ModbusCharger(ChargerEntity):
    """`charger.<device name>`."""

    supported = frozenset({ChargerCapability.LIMIT_AMPS, ChargerCapability.METER_PER_PHASE})

    def __init__(self, device: ModbusDevice, cmap: ChargerMap) -> None:
        super().__init__(f"modbus-{device.name}-charger", device.name)
        self.device = device
        self.cmap = cmap
        self.written: float | None = None  # the current last written to the device
        self._schedule: ChargingSchedule | None = None
        self._applied_at: Any = None
        self._next: Timer | None = None
        self._refresh: Timer | None = None
        self._was_online = False
        self._lock = asyncio.Lock()
        self.data.vendor = device.template.manufacturer
        self.data.model = device.template.model
        self.data.phases = cmap.phases
        self.data.extra.update(device=device.name, profile=device.template.name)

    def suggested_object_id(self) -> str:
        return slugify(self.device.name)

    @property
    def available(self) -> bool:
        return self.device.online

    async def removed_from_hub(self) -> None:
        for timer in (self._next, self._refresh):
            if timer is not None:
                timer.cancel()

    # --- reading ------------------------------------------------------------------------------
    def refresh(self) -> None:
        """After each poll: map the registers into ChargerData and publish."""
        dev, data, ch = self.device, self.data, self.cmap
        if dev.online and not self._was_online and self.written is not None:
            # The device may have restarted into its own default or safe current.
            self.device.hub.create_task(self._rewrite(), f"{dev.name} re-apply limit")
        self._was_online = dev.online
        if not dev.online:
            self.write_state()
            return
        raw = dev.values.get(ch.status) if dev.available(ch.status) else None
        status = ch.status_map.get(raw) if raw is not None else None
        if status is None and isinstance(raw, float) and raw.is_integer():
            status = ch.status_map.get(int(raw))
        if raw is None:  # the state register itself is unreadable: no guess about the car
            status, data.error_code = ConnectorStatus.UNAVAILABLE, "state register unreadable"
        else:
            data.error_code = None if status is not None else f"vendor state {raw!r}"
        data.status = status or ConnectorStatus.FAULTED
        data.extra["vendor_state"] = raw
        data.power_w = self._scaled("power", "W")
        data.energy_wh = self._scaled("energy_import", "Wh")
        data.current_a = self._phases("current")
        data.voltage_v = self._phases("voltage")
        data.temperature = self._value("temperature")
        hw_min = self._value(ch.min_register) if ch.min_register else None
        hw_max = self._value(ch.max_register) if ch.max_register else None
        data.min_current_a = max(ch.min_current, hw_min or 0.0)
        data.max_current_a = min(ch.max_current, hw_max) if hw_max else ch.max_current
        if ch.phases_register and (phases := self._value(ch.phases_register)) in (1, 3):
            data.phases = int(phases)
        data.extra["current_setpoint_a"] = self._value(ch.limit)
        if data.status in CONNECTED and data.session_id is None:
            data.session_id = f"{dev.name}-{int(dev.hub.now().timestamp())}"
        elif data.status is ConnectorStatus.AVAILABLE:
            data.session_id = None
        self.write_state()

    def _value(self, key: str | None) -> float | None:
        if key is None or not self.device.available(key):
            return None
        value = self.device.values.get(key)
        return float(value) if isinstance(value, int | float) else None

    def _scaled(self, key: str, unit: str) -> float | None:
        value = self._value(key)
        reg = self.device.register(key)
        if value is None or reg is None:
            return None
        return value * UNIT_FACTOR.get(reg.unit or unit, 1.0) / UNIT_FACTOR[unit]

    def _phases(self, base: str) -> tuple[float | None, ...] | None:
        values = tuple(self._value(f"{base}_l{n}") for n in (1, 2, 3))
        return values if any(v is not None for v in values) else None

    # --- commands -----------------------------------------------------------------------------
    async def _do_set_limit(self, schedule: ChargingSchedule) -> CommandResult:
        self._schedule, self._applied_at = schedule, self.device.hub.now()
        return await self._apply()

    async def _apply(self) -> CommandResult:
        # One write at a time: a refresh racing a new limit must not restore the old one.
        async with self._lock:
            return await self._apply_locked()

    async def _apply_locked(self) -> CommandResult:
        if self._next is not None:
            self._next.cancel()
            self._next = None
        now = self.device.hub.now()
        limit = self._schedule.limit_at(now, self._applied_at) if self._schedule else None
        amps = limit.value if limit is not None else self.cmap.max_current
        value = self._clamp(amps)
        result = await self._write(value)
        if result.accepted:
            until = limit.until if limit is not None else None
            self.update(limit=ChargingLimit(value, RateUnit.AMPS, self.data.phases, until))
            if until is not None:
                delay = (until - now).total_seconds()
                self._next = self.device.hub.clock.call_later(delay, self._on_next_period)
        return result

    def _on_next_period(self) -> None:
        self._next = None
        self.device.hub.create_task(self._apply(), f"{self.device.name} next limit period")

    def _clamp(self, amps: float) -> float:
        """Inside the device's range, rounded down to its resolution; below its minimum: pause."""
        low = self.data.min_current_a or self.cmap.min_current
        high = self.data.max_current_a or self.cmap.max_current
        if amps < low:
            return self.cmap.pause
        value = min(amps, high)
        reg = self.device.register(self.cmap.limit)
        if reg is not None and not reg.spec.is_float:
            step = reg.spec.scale
            # Round down: a limit rounded up would let the car draw more than it was given.
            value = math.floor(value / step + 1e-9) * step
        return value

    async def _write(self, value: float) -> CommandResult:
        try:
            await self.device.write(self.cmap.limit, value, self.cmap.write_function)
        except LinkError as err:
            return CommandResult(False, err.reason)
        self.written = value
        self._arm_refresh()
        return CommandResult(True, f"{self.cmap.limit} = {value:g} A")

    def _arm_refresh(self) -> None:
        if self.cmap.refresh is None:
            return
        if self._refresh is not None:
            self._refresh.cancel()
        self._refresh = self.device.hub.clock.call_later(self.cmap.refresh, self._on_refresh)

    def _on_refresh(self) -> None:
        # The device falls back to its safe current unless told again within its validity time.
        self._refresh = None
        if self.written is not None:
            self.device.hub.create_task(self._rewrite(), f"{self.device.name} limit refresh")

    async def _rewrite(self) -> None:
        async with self._lock:
            if self.written is None:
                return
            result = await self._write(self.written)
        if not result.accepted:
            _LOGGER.debug("%s: limit refresh failed: %s", self.device.name, result.detail)
            self._arm_refresh()  # keep trying: the device wants to hear from us
