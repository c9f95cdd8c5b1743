"""An OpenEVSE on a serial port as a `ChargerEntity`: polled with $GS/$GG/$GE/$GU, limited with
$SC (volatile, so the EEPROM is not worn), paused with $FS, resumed with $FE, told by $AT.

A lost port or silent EVSE makes the entity unavailable (logged once); it reconnects with back-off.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
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
from plugins.openevse.rapi import Message, RapiError, RapiLink, RapiLost

if TYPE_CHECKING:
    from hub.clock import Timer
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

SLEEPING, DISABLED = 0xFE, 0xFF
FAULTS = range(0x04, 0x0F)  # D (vent required) and every fault state up to relay closure
BACKOFF = (1.0, 60.0)


def status_of(evse: int, pilot: int | None) -> ConnectorStatus:
    """EVSE_STATE_* (and the pilot, when sleeping) -> the hub's connector status."""
    if evse == 0x01:
        return ConnectorStatus.AVAILABLE
    if evse == 0x02:
        return ConnectorStatus.SUSPENDED_EV  # connected, the car does not ask for energy
    if evse == 0x03:
        return ConnectorStatus.CHARGING
    if evse in FAULTS:
        return ConnectorStatus.FAULTED
    if evse == SLEEPING:
        # Paused by us or its timer: a car may still be plugged in (pilot B or C).
        return ConnectorStatus.SUSPENDED_EVSE if pilot in (2, 3) else ConnectorStatus.AVAILABLE
    return ConnectorStatus.UNAVAILABLE  # disabled, or unknown


class OpenEvseCharger(ChargerEntity):
    """`charger.<name>`: one OpenEVSE controller."""

    supported = frozenset(
        {
            ChargerCapability.LIMIT_AMPS,
            ChargerCapability.START_STOP,
            ChargerCapability.AVAILABILITY,
            ChargerCapability.RESET,
        }
    )

    def __init__(self, hub: Hub, conf: dict[str, Any]) -> None:
        super().__init__(f"openevse-{conf['name']}", conf["name"])
        self.hub_ref = hub
        self.conf = conf
        self.name_ = conf["name"]
        self.link = RapiLink(
            hub.clock,
            conf["serial_port"],
            baudrate=conf["baudrate"],
            timeout=conf["timeout"],
            sequence_ids=conf["sequence_ids"],
            on_notify=self._notified,
            on_lost=self._lost,
        )
        self.online = False
        self.error: str | None = "not polled yet"
        self.evse_state: int | None = None
        self.pilot: int | None = None
        self.written: float | None = None  # amps last set; None: never limited by us
        self.paused = False
        self._schedule: ChargingSchedule | None = None
        self._applied_at: datetime | None = None
        self._timer: Timer | None = None
        self._next: Timer | None = None
        self._polling = False
        self.polls = 0
        self.idle = asyncio.Event()  # set between polls: tests and tools wait on it
        self.idle.set()
        self._delay = 0.0
        self._retry_at = 0.0
        self.data.vendor, self.data.model = "OpenEVSE", "OpenEVSE"
        self.data.phases = conf["phases"]
        self.data.extra.update(serial_port=conf["serial_port"])

    def suggested_object_id(self) -> str:
        return slugify(self.name_)

    @property
    def available(self) -> bool:
        return self.online

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._timer = self.hub_ref.clock.call_later(0, self._tick)

    async def shutdown(self) -> None:
        for timer in (self._timer, self._next):
            if timer is not None:
                timer.cancel()
        await self.link.close()

    def _tick(self) -> None:
        self._timer = self.hub_ref.clock.call_later(self.conf["interval"], self._tick)
        if not self._polling:
            self.hub_ref.create_task(self.poll(), f"openevse poll {self.name_}", background=True)

    # --- polling --------------------------------------------------------------------------------
    async def poll(self) -> None:
        self.polls += 1
        self._polling = True
        self.idle.clear()
        try:
            if not self.link.open:
                await self._connect()
            await self._read()
        except RapiError as err:
            await self._failed(err)
        else:
            self._succeeded()
        finally:
            self._polling = False
            self.idle.set()
        self.write_state()

    async def _connect(self) -> None:
        now = self.hub_ref.clock.monotonic()
        if now < self._retry_at:
            raise RapiLost(f"{self.error}; next attempt in {self._retry_at - now:.0f} s")
        try:
            await self.link.connect()
            params = await self.link.command("GV")
            self.data.firmware = params[0] if params else None
            low, _hw_max, _pilot, configured = (float(p) for p in (await self.link.command("GC")))
        except (RapiError, ValueError) as err:
            await self.link.close()
            self._delay = min(BACKOFF[1], max(BACKOFF[0], self._delay * 2))
            self._retry_at = self.hub_ref.clock.monotonic() + self._delay
            raise RapiLost(getattr(err, "reason", str(err))) from None
        self._delay = 0.0
        self.data.min_current_a = max(low, self.conf.get("min_current", low))
        self.data.max_current_a = min(configured, self.conf.get("max_current", configured))
        if self.written is not None or self.paused:
            await self._reapply()  # it may have rebooted, forgetting a volatile $SC

    async def _read(self) -> None:
        state = await self.link.command("GS")
        self.evse_state, self.pilot = int(state[0], 16), int(state[2], 16)
        self.data.extra["elapsed_s"] = int(state[1])
        milliamps, millivolts = (int(p) for p in (await self.link.command("GG"))[:2])
        amps_setting, flags = (await self.link.command("GE"))[:2]
        watt_seconds, wh_total = (int(p) for p in (await self.link.command("GU"))[:2])
        amps = max(milliamps, 0) / 1000
        self.data.current_a = (amps,) * self.conf["phases"]
        volts = millivolts / 1000 if millivolts > 0 else self.conf["voltage"]
        self.data.voltage_v = (volts,) * self.conf["phases"]
        self.data.power_w = amps * volts * self.conf["phases"]
        self.data.extra.update(current_capacity_a=int(amps_setting), flags=flags)
        self._status()
        in_session = self.data.session_id is not None
        # Whacc grows when a session ends; during one, its watt-seconds are not in it yet.
        self.data.energy_wh = wh_total + (watt_seconds / 3600 if in_session else 0.0)

    def _status(self) -> None:
        if self.evse_state is None:
            return
        self.data.status = status_of(self.evse_state, self.pilot)
        self.data.error_code = f"evse state 0x{self.evse_state:02X}" if (
            self.data.status is ConnectorStatus.FAULTED) else None  # fmt: skip
        self.data.extra["evse_state"] = self.evse_state
        plugged = self.pilot in (2, 3) or self.evse_state in (2, 3)
        if plugged and self.data.session_id is None:
            self.data.session_id = f"{self.name_}-{int(self.hub_ref.now().timestamp())}"
        elif not plugged and self.evse_state == 0x01:
            self.data.session_id = None

    async def _failed(self, err: RapiError) -> None:
        if not isinstance(err, RapiLost) and self.link.open:
            # No answer or a garbled one: reopen next time, after the back-off.
            await self.link.close()
            self._delay = min(BACKOFF[1], max(BACKOFF[0], self._delay * 2))
            self._retry_at = self.hub_ref.clock.monotonic() + self._delay
        if self.online or self.error == "not polled yet":
            _LOGGER.warning("openevse %s unavailable: %s", self.name_, err.reason)
        self.online, self.error = False, err.reason

    def _succeeded(self) -> None:
        if not self.online:
            _LOGGER.info("openevse %s online (firmware %s)", self.name_, self.data.firmware)
        self.online, self.error = True, None

    def _lost(self, reason: str) -> None:
        if self.online:
            _LOGGER.warning("openevse %s unavailable: serial port lost: %s", self.name_, reason)
            self.online, self.error = False, f"serial port lost: {reason}"
            self.write_state()

    def _notified(self, msg: Message) -> None:
        """Asynchronous messages: a state change now, not at the next poll; a reboot."""
        try:
            if msg.kind in ("AT", "ST") and msg.params:
                self.evse_state = int(msg.params[0], 16)
                if msg.kind == "AT" and len(msg.params) > 1:
                    self.pilot = int(msg.params[1], 16)
                self._status()
                self.write_state()
            elif msg.kind == "AB":
                _LOGGER.info("openevse %s restarted (post code %s)", self.name_, msg.params[:1])
                if self.written is not None or self.paused:
                    self.hub_ref.create_task(self._reapply_logged(), f"{self.name_} re-apply")
        except ValueError:
            _LOGGER.debug("openevse %s: odd notification %s", self.name_, msg)

    # --- commands -------------------------------------------------------------------------------
    async def _command(self, command: str) -> CommandResult:
        try:
            params = await self.link.command(command)
        except RapiError as err:
            return CommandResult(False, err.reason)
        return CommandResult(True, f"${command}: $OK {' '.join(params)}".strip())

    async def _do_set_limit(self, schedule: ChargingSchedule) -> CommandResult:
        self._schedule, self._applied_at = schedule, self.hub_ref.now()
        return await self._apply()

    async def _apply(self) -> CommandResult:
        if self._next is not None:
            self._next.cancel()
            self._next = None
        now = self.hub_ref.now()
        limit = self._schedule.limit_at(now, self._applied_at) if self._schedule else None
        high = self.data.max_current_a or self.conf.get("max_current", 32.0)
        amps = limit.value if limit is not None else high
        low = self.data.min_current_a or 6.0
        if amps < low:
            result = await self._pause()
            value = 0.0
        else:
            value = float(int(min(amps, high)))  # whole amps, rounded down
            result = await self._set_current(value)
        if result.accepted:
            until = limit.until if limit is not None else None
            self.update(limit=ChargingLimit(value, RateUnit.AMPS, self.data.phases, until))
            if until is not None:
                delay = (until - now).total_seconds()
                self._next = self.hub_ref.clock.call_later(delay, self._on_next_period)
        return result

    def _on_next_period(self) -> None:
        self._next = None
        self.hub_ref.create_task(self._apply(), f"{self.name_} next limit period")

    async def _pause(self) -> CommandResult:
        result = await self._command("FS")
        if result.accepted:
            self.paused = True
        return result

    async def _set_current(self, amps: float) -> CommandResult:
        # V: volatile, so a limit changing every few seconds never wears out the EEPROM.
        result = await self._command(f"SC {int(amps)} V")
        if not result.accepted:
            return result
        self.written = amps
        if self.paused or self.evse_state in (SLEEPING, DISABLED):
            resumed = await self._command("FE")
            if not resumed.accepted:
                return resumed
            self.paused = False
        return result

    async def _reapply(self) -> None:
        if self.paused:
            await self.link.command("FS")
        elif self.written is not None:
            await self.link.command(f"SC {int(self.written)} V")

    async def _reapply_logged(self) -> None:
        try:
            await self._reapply()
        except RapiError as err:
            _LOGGER.warning("openevse %s: limit not re-applied after restart: %s",
                            self.name_, err.reason)  # fmt: skip

    async def _do_start(self, id_tag: str | None) -> CommandResult:
        result = await self._command("FE")
        if result.accepted:
            self.paused = False
        return result

    async def _do_stop(self) -> CommandResult:
        return await self._pause()

    async def _do_set_available(self, available: bool) -> CommandResult:
        return await self._command("FE" if available else "FD")

    async def _do_reset(self, hard: bool) -> CommandResult:
        return await self._command("FR")
