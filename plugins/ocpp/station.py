"""One OCPP charging station as the hub sees it: its connection, boot data and connector entities.

Version-specific code (v16.py, v201.py) fills a Station; the connector entities turn the
protocol-neutral ChargerEntity commands into that version's calls.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from hub.charging.charger import (
    ChargerCapability,
    ChargerData,
    ChargerEntity,
    ChargingSchedule,
    CommandResult,
    ConnectorStatus,
)

if TYPE_CHECKING:
    from hub.core import Hub
    from plugins.ocpp.rpc import RpcEndpoint

_LOGGER = logging.getLogger(__name__)

PLATFORM = "ocpp"


class Commands(Protocol):
    """What a protocol version does for the protocol-neutral charger operations."""

    async def set_limit(self, connector: int, schedule: ChargingSchedule) -> CommandResult: ...
    async def start(self, connector: int, id_tag: str | None) -> CommandResult: ...
    async def stop(self, connector: int) -> CommandResult: ...
    async def unlock(self, connector: int) -> CommandResult: ...
    async def reset(self, hard: bool) -> CommandResult: ...
    async def set_available(self, connector: int, available: bool) -> CommandResult: ...


@dataclass(slots=True)
class BootInfo:
    vendor: str | None = None
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None
    booted_at: datetime | None = None


@dataclass(slots=True)
class Station:
    """Runtime state of one charge point id; survives reconnects, not restarts."""

    id: str
    hub: Hub
    version: str = ""
    endpoint: RpcEndpoint | None = None
    commands: Commands | None = None
    boot: BootInfo = field(default_factory=BootInfo)
    accepted: bool = False  # answered BootNotification with Accepted
    address: str | None = None
    last_seen: datetime | None = None
    configuration: dict[str, Any] = field(default_factory=dict)
    rate_units: tuple[str, ...] = ("A", "W")  # what SetChargingProfile may use (probed)
    connectors: dict[int, OcppConnector] = field(default_factory=dict)
    local_list_version: int | None = None
    ev_needs: dict[int, Mapping[str, Any]] = field(default_factory=dict)  # 2.0.1, per EVSE
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def connected(self) -> bool:
        return self.endpoint is not None

    async def connector(self, number: int) -> OcppConnector:
        """The entity of connector (1.6) or EVSE (2.0.1) `number`, created on first mention."""
        entity = self.connectors.get(number)
        if entity is None:
            entity = OcppConnector(self, number)
            self._fill(entity)
            self.connectors[number] = entity
            await self.hub.entities.add(PLATFORM, [entity])
        return entity

    async def call(self, action: str, payload: dict[str, Any], timeout: float | None = None) -> Any:
        if self.endpoint is None:
            raise ConnectionError(f"charger {self.id} is offline")
        return await self.endpoint.call(action, payload, timeout)

    def heartbeat(self) -> datetime:
        """Note a heartbeat on every connector (published with their next state change)."""
        now = self.hub.now()
        for entity in self.connectors.values():
            entity.data.last_heartbeat = now
        return now

    def publish(self) -> None:
        """Push station-wide facts (boot data, online) into every connector's state."""
        for entity in self.connectors.values():
            self._fill(entity)
            entity.write_state()

    def _fill(self, entity: OcppConnector) -> None:
        data = entity.data
        data.vendor, data.model = self.boot.vendor, self.boot.model
        data.serial, data.firmware = self.boot.serial, self.boot.firmware
        data.extra["ocpp_version"] = self.version
        data.extra["connected"] = self.connected

    def went_offline(self) -> None:
        for entity in self.connectors.values():
            entity.data.extra["status_before_offline"] = str(entity.data.status)
            entity.data.status = ConnectorStatus.OFFLINE
        self.publish()


class OcppConnector(ChargerEntity):
    """A connector (1.6) or EVSE (2.0.1) of an OCPP station."""

    supported = frozenset(
        {
            ChargerCapability.LIMIT_AMPS,
            ChargerCapability.LIMIT_WATTS,
            ChargerCapability.START_STOP,
            ChargerCapability.UNLOCK,
            ChargerCapability.RESET,
            ChargerCapability.AVAILABILITY,
            ChargerCapability.SOC,
            ChargerCapability.METER_PER_PHASE,
        }
    )

    def __init__(self, station: Station, number: int) -> None:
        super().__init__(f"{station.id}-{number}", f"{station.id} {number}", data=ChargerData())
        self.station = station
        self.number = number
        self.data.extra["charge_point_id"] = station.id
        self.data.extra["connector"] = number

    def suggested_object_id(self) -> str:
        return f"{self.station.id}_{self.number}"

    def _commands(self) -> Commands:
        if self.station.commands is None or not self.station.connected:
            raise ConnectionError(f"charger {self.station.id} is offline")
        return self.station.commands

    async def _do_set_limit(self, schedule: ChargingSchedule) -> CommandResult:
        return await self._commands().set_limit(self.number, schedule)

    async def _do_start(self, id_tag: str | None) -> CommandResult:
        return await self._commands().start(self.number, id_tag)

    async def _do_stop(self) -> CommandResult:
        return await self._commands().stop(self.number)

    async def _do_unlock(self) -> CommandResult:
        return await self._commands().unlock(self.number)

    async def _do_reset(self, hard: bool) -> CommandResult:
        return await self._commands().reset(hard)

    async def _do_set_available(self, available: bool) -> CommandResult:
        return await self._commands().set_available(self.number, available)
