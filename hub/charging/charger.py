"""The protocol-neutral charger: what every charger plugin (OCPP, Modbus, serial) implements.

A plugin keeps a `ChargerData` current and overrides the `_do_*` hooks for what its device can do.
"""

from __future__ import annotations

import bisect
import enum
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, ClassVar

from hub.bus import Context
from hub.entities import Entity, EntityDescription


class ConnectorStatus(enum.StrEnum):
    """The OCPP 1.6 connector states plus Offline; values are snake_case like every state."""

    AVAILABLE = "available"
    PREPARING = "preparing"
    CHARGING = "charging"
    SUSPENDED_EV = "suspended_ev"
    SUSPENDED_EVSE = "suspended_evse"
    FINISHING = "finishing"
    RESERVED = "reserved"
    UNAVAILABLE = "unavailable"
    FAULTED = "faulted"
    OFFLINE = "offline"

    @classmethod
    def _missing_(cls, value: object) -> ConnectorStatus | None:
        # Protocols spell these "SuspendedEV" or "Suspended EV"; accept any spelling of a name.
        key = re.sub(r"[^a-z]", "", str(value).lower())
        return next((m for m in cls if m.name.replace("_", "").lower() == key), None)


class ChargerCapability(enum.StrEnum):
    LIMIT_AMPS = "limit_amps"
    LIMIT_WATTS = "limit_watts"
    START_STOP = "start_stop"
    UNLOCK = "unlock"
    RESET = "reset"
    AVAILABILITY = "availability"
    PHASE_SWITCH = "phase_switch"
    SOC = "soc"
    METER_PER_PHASE = "meter_per_phase"


class RateUnit(enum.StrEnum):
    AMPS = "A"
    WATTS = "W"


class NotSupported(Exception):
    """The charger lacks a capability an operation needs."""

    def __init__(self, entity_id: str, capability: ChargerCapability, operation: str) -> None:
        super().__init__(f"{entity_id or 'charger'} does not support {capability} ({operation})")
        self.capability = capability


@dataclass(frozen=True, slots=True)
class SchedulePeriod:
    offset: timedelta  # from the schedule's start; the first period starts at 0
    limit: float  # in the schedule's unit, per phase for amps, total for watts
    phases: int | None = None  # None: whatever the charger uses now


@dataclass(frozen=True, slots=True)
class ChargingLimit:
    """The limit in force at one moment; what `ChargerData.limit` shows."""

    value: float
    unit: RateUnit
    phases: int | None = None
    until: datetime | None = None  # when the schedule moves to its next period


@dataclass(frozen=True, slots=True)
class ChargingSchedule:
    """Limit periods in one unit: OCPP's ChargingSchedule; a Modbus plugin writes `limit_at(now)`.

    `start` None means "from when the charger receives it"; the last period holds until `duration`
    ends (or forever).
    """

    periods: tuple[SchedulePeriod, ...]
    unit: RateUnit = RateUnit.AMPS
    start: datetime | None = None
    duration: timedelta | None = None

    def __post_init__(self) -> None:
        offsets = [p.offset for p in self.periods]
        if not offsets or offsets[0] != timedelta(0):
            raise ValueError("a charging schedule needs periods, the first at offset 0")
        if any(b <= a for a, b in itertools.pairwise(offsets)):
            raise ValueError("charging schedule periods must be in increasing offset order")
        if any(p.limit < 0 or p.phases not in (None, 1, 2, 3) for p in self.periods):
            raise ValueError("a period's limit must be >= 0 and its phases 1, 2 or 3")
        if self.start is not None and self.start.tzinfo is None:
            raise ValueError("a charging schedule's start must be timezone-aware")
        object.__setattr__(self, "unit", RateUnit(self.unit))

    @classmethod
    def constant(
        cls, limit: float, unit: RateUnit | str = RateUnit.AMPS, phases: int | None = None
    ) -> ChargingSchedule:
        return cls((SchedulePeriod(timedelta(0), limit, phases),), RateUnit(unit))

    @classmethod
    def from_absolute(
        cls, unit: RateUnit | str, periods: Sequence[tuple[datetime, float, int | None]]
    ) -> ChargingSchedule:
        """Build from (start datetime, limit, phases) triples, anchored at the first start."""
        ordered = sorted(periods, key=lambda p: p[0])
        anchor = ordered[0][0] if ordered else None
        steps = tuple(SchedulePeriod(t - ordered[0][0], lim, ph) for t, lim, ph in ordered)
        return cls(steps, RateUnit(unit), anchor)

    def limit_at(self, when: datetime, applied_at: datetime | None = None) -> ChargingLimit | None:
        """The limit at `when`; None before the start or after the duration."""
        origin = self.start or applied_at or when
        elapsed = when - origin
        if elapsed < timedelta(0) or (self.duration is not None and elapsed >= self.duration):
            return None
        i = bisect.bisect_right([p.offset for p in self.periods], elapsed) - 1
        current, nxt = self.periods[i], self.periods[i + 1] if i + 1 < len(self.periods) else None
        until = origin + nxt.offset if nxt else (origin + self.duration if self.duration else None)
        return ChargingLimit(current.limit, self.unit, current.phases, until)


@dataclass(frozen=True, slots=True)
class CommandResult:
    accepted: bool
    detail: str = ""

    def __bool__(self) -> bool:
        return self.accepted


@dataclass(slots=True)
class ChargerData:
    """What a plugin knows about one charger (connector); it mutates this, then `write_state()`."""

    status: ConnectorStatus = ConnectorStatus.OFFLINE
    power_w: float | None = None
    energy_wh: float | None = None  # the meter register (cumulative), not the session's energy
    current_a: tuple[float | None, ...] | None = None  # per phase, L1..L3 of the charger
    voltage_v: tuple[float | None, ...] | None = None
    soc: float | None = None
    temperature: float | None = None
    vendor: str | None = None
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None
    last_heartbeat: datetime | None = None
    error_code: str | None = None
    phases: int | None = None  # phases in use now
    session_id: str | None = None
    id_tag: str | None = None
    limit: ChargingLimit | None = None
    limit_reason: str | None = None  # why this limit, e.g. "site.main L2 at limit"
    min_current_a: float | None = None
    max_current_a: float | None = None
    max_power_w: float | None = None
    # What the vehicle itself asked for (ISO 15118 charging needs, or a vendor's equivalent):
    # the smart-charging engine plans with it wherever nobody set a goal by hand.
    ev_energy_wh: float | None = None  # energy requested when the needs were sent
    ev_departure: datetime | None = None
    ev_max_power_w: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # vendor specifics shown as attributes


_FIELDS = tuple(f.name for f in fields(ChargerData) if f.name not in ("status", "extra"))


def _plain(value: Any) -> Any:
    """Attributes hold JSON-friendly values: what the recorder, MQTT and the web API can carry."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, ChargingLimit):
        return {k: _plain(v) for k, v in asdict(value).items()}
    return value


class ChargerEntity(Entity):
    """A charger connector as an entity: state is its status, attributes its data.

    Callers use `set_limit`, `start`, `stop`, ...; each checks the capability first and raises
    `NotSupported` naming it. Subclasses set `supported` (or override `capabilities` when they learn
    it from the device) and override the matching `_do_*` hook.
    """

    domain: ClassVar[str] = "charger"
    supported: ClassVar[frozenset[ChargerCapability]] = frozenset()

    def __init__(
        self,
        unique_id: str | None,
        name: str | None = None,
        *,
        data: ChargerData | None = None,
        description: EntityDescription | None = None,
    ) -> None:
        super().__init__(unique_id, name, description=description)
        self.data = data or ChargerData()

    @property
    def capabilities(self) -> frozenset[ChargerCapability]:
        return self.supported

    def supports(self, capability: ChargerCapability) -> bool:
        return capability in self.capabilities

    # --- state ----------------------------------------------------------------------------
    def native_state(self) -> str:
        return str(self.data.status)

    def state_attributes(self) -> Mapping[str, Any]:
        attrs = {name: _plain(getattr(self.data, name)) for name in _FIELDS}
        attrs["capabilities"] = sorted(self.capabilities)
        return {**self.data.extra, **attrs}

    def update(self, context: Context | None = None, **changes: Any) -> None:
        """Set data fields and publish once: `charger.update(status="Charging", power_w=7200)`."""
        if "status" in changes:
            changes["status"] = ConnectorStatus(changes["status"])
        for key, value in changes.items():
            if key not in ChargerData.__dataclass_fields__:
                raise AttributeError(f"ChargerData has no field {key!r}")
            setattr(self.data, key, value)
        self.write_state(context)

    # --- commands -------------------------------------------------------------------------
    def _require(self, capability: ChargerCapability, operation: str) -> None:
        if capability not in self.capabilities:
            raise NotSupported(self.entity_id, capability, operation)

    async def set_limit(self, schedule: ChargingSchedule) -> CommandResult:
        if schedule.unit is RateUnit.WATTS:
            self._require(ChargerCapability.LIMIT_WATTS, "set_limit in W")
        else:
            self._require(ChargerCapability.LIMIT_AMPS, "set_limit in A")
        # Asking for a phase count other than the one in use is a phase switch; when the plugin
        # does not know the phases in use yet, the charger itself will judge.
        now = self.data.phases
        if now is not None and any(p.phases not in (None, now) for p in schedule.periods):
            self._require(ChargerCapability.PHASE_SWITCH, "set_limit with a phase count")
        return await self._do_set_limit(schedule)

    async def start(self, id_tag: str | None = None) -> CommandResult:
        self._require(ChargerCapability.START_STOP, "start")
        return await self._do_start(id_tag)

    async def stop(self) -> CommandResult:
        self._require(ChargerCapability.START_STOP, "stop")
        return await self._do_stop()

    async def unlock(self) -> CommandResult:
        self._require(ChargerCapability.UNLOCK, "unlock")
        return await self._do_unlock()

    async def reset(self, hard: bool = False) -> CommandResult:
        self._require(ChargerCapability.RESET, "reset")
        return await self._do_reset(hard)

    async def set_available(self, available: bool) -> CommandResult:
        self._require(ChargerCapability.AVAILABILITY, "set_available")
        return await self._do_set_available(available)

    # --- hooks: a subclass overrides those it declared in `supported` ----------------------
    async def _do_set_limit(self, schedule: ChargingSchedule) -> CommandResult:
        cap = ChargerCapability.LIMIT_WATTS if schedule.unit is RateUnit.WATTS else None
        raise NotSupported(self.entity_id, cap or ChargerCapability.LIMIT_AMPS, "set_limit")

    async def _do_start(self, id_tag: str | None) -> CommandResult:
        raise NotSupported(self.entity_id, ChargerCapability.START_STOP, "start")

    async def _do_stop(self) -> CommandResult:
        raise NotSupported(self.entity_id, ChargerCapability.START_STOP, "stop")

    async def _do_unlock(self) -> CommandResult:
        raise NotSupported(self.entity_id, ChargerCapability.UNLOCK, "unlock")

    async def _do_reset(self, hard: bool) -> CommandResult:
        raise NotSupported(self.entity_id, ChargerCapability.RESET, "reset")

    async def _do_set_available(self, available: bool) -> CommandResult:
        raise NotSupported(self.entity_id, ChargerCapability.AVAILABILITY, "set_available")
