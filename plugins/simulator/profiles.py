"""Smart charging inside a simulated charger: charging profiles, stacking, composite schedules.

Pure data and functions on explicit times (no sockets, no clock), shared by both OCPP versions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

CP_MAX, TX_DEFAULT, TX = "ChargePointMaxProfile", "TxDefaultProfile", "TxProfile"
# 2.0.1 renamed the station-wide purpose; one vocabulary inside the simulator.
_PURPOSE = {"ChargingStationMaxProfile": CP_MAX}
_RECURRENCE = {"Daily": 86_400.0, "Weekly": 604_800.0}


def parse_time(value: Any) -> datetime | None:
    """An OCPP timestamp (ISO 8601, usually with Z) as an aware UTC datetime."""
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Period:
    start: float  # seconds after the schedule's start
    limit: float  # in the profile's unit (A per phase or W)
    phases: int | None = None


@dataclass(frozen=True, slots=True)
class Limit:
    """What a charger may offer: per-phase amps and/or total watts (None: no limit)."""

    amps: float | None = None
    watts: float | None = None
    phases: int | None = None

    def __and__(self, other: Limit) -> Limit:
        return Limit(
            _min(self.amps, other.amps),
            _min(self.watts, other.watts),
            _min(self.phases, other.phases),
        )

    def offered(self, max_current: float, phases: int, voltage: float) -> float:
        """Per-phase amps the charger offers on `phases` phases under this limit."""
        amps = _min(max_current, self.amps) or 0.0
        if self.watts is not None:
            amps = min(amps, self.watts / (voltage * phases))
        return amps


def _min(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else min(a, b)


@dataclass(slots=True)
class ChargingProfile:
    id: int
    stack_level: int
    purpose: str
    kind: str = "Absolute"  # Absolute | Recurring | Relative
    unit: str = "A"
    periods: tuple[Period, ...] = ()
    start_schedule: datetime | None = None
    duration: float | None = None
    recurrency: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    transaction_id: Any = None
    installed: datetime | None = None

    @classmethod
    def from_ocpp(cls, data: Mapping[str, Any], installed: datetime) -> ChargingProfile:
        """Build from the snake_case dict the ocpp library hands a handler (1.6 or 2.0.1).

        1.6 SetChargingProfile floats arrive as Decimal (the library validates with Decimal), so
        every number goes through float()/int().
        """
        schedule = data["charging_schedule"]
        if isinstance(schedule, list):  # 2.0.1: up to three schedules; the first is the AC one
            schedule = schedule[0]
        periods = sorted(
            (
                Period(float(p["start_period"]), float(p["limit"]), _int(p.get("number_phases")))
                for p in schedule["charging_schedule_period"]
            ),
            key=lambda p: p.start,
        )
        duration = schedule.get("duration")
        return cls(
            id=int(data.get("charging_profile_id", data.get("id", 0))),
            stack_level=int(data["stack_level"]),
            purpose=_PURPOSE.get(
                data["charging_profile_purpose"], data["charging_profile_purpose"]
            ),
            kind=data.get("charging_profile_kind", "Absolute"),
            unit=schedule.get("charging_rate_unit", "A"),
            periods=tuple(periods),
            start_schedule=parse_time(schedule.get("start_schedule")),
            duration=None if duration is None else float(duration),
            recurrency=data.get("recurrency_kind"),
            valid_from=parse_time(data.get("valid_from")),
            valid_to=parse_time(data.get("valid_to")),
            transaction_id=data.get("transaction_id"),
            installed=installed,
        )

    def schedule_start(self, at: datetime, tx_start: datetime | None) -> datetime | None:
        if self.kind == "Relative":
            return tx_start
        base = self.start_schedule or self.installed
        if self.kind == "Recurring" and base is not None and at >= base:
            step = _RECURRENCE.get(self.recurrency or "Daily", 86_400.0)
            return base + timedelta(seconds=((at - base).total_seconds() // step) * step)
        return base

    def period_at(self, at: datetime, tx_start: datetime | None) -> Period | None:
        """The schedule period in force at `at`, or None when the profile is not active then."""
        if (self.valid_from and at < self.valid_from) or (self.valid_to and at >= self.valid_to):
            return None
        start = self.schedule_start(at, tx_start)
        if start is None or at < start:
            return None
        offset = (at - start).total_seconds()
        if self.duration is not None and offset >= self.duration:
            return None
        found = None
        for period in self.periods:
            if period.start > offset:
                break
            found = period
        return found

    def limit_at(self, at: datetime, tx_start: datetime | None) -> Limit | None:
        period = self.period_at(at, tx_start)
        if period is None:
            return None
        if self.unit == "W":
            return Limit(watts=period.limit, phases=period.phases)
        return Limit(amps=period.limit, phases=period.phases)

    def breakpoints(self, t0: datetime, t1: datetime, tx_start: datetime | None) -> set[datetime]:
        """Times in (t0, t1) where this profile's limit may change (for composite schedules)."""
        starts: list[datetime] = []
        first = self.schedule_start(t0, tx_start)
        if first is not None:
            starts.append(first)
            if self.kind == "Recurring":
                step = timedelta(seconds=_RECURRENCE.get(self.recurrency or "Daily", 86_400.0))
                while starts[-1] + step < t1:
                    starts.append(starts[-1] + step)
        points = {self.valid_from, self.valid_to}
        for start in starts:
            points.update(start + timedelta(seconds=p.start) for p in self.periods)
            if self.duration is not None:
                points.add(start + timedelta(seconds=self.duration))
        return {p for p in points if p is not None and t0 < p < t1}


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


class ProfileStore:
    """The charging profiles a charger holds, per connector (0 = the whole charger)."""

    __slots__ = ("_profiles",)

    def __init__(self) -> None:
        self._profiles: dict[int, list[ChargingProfile]] = {}

    def install(self, connector_id: int, profile: ChargingProfile) -> None:
        # OCPP: a profile replaces one with the same id anywhere, and one with the same
        # stackLevel and purpose on the same connector.
        for cid, profiles in self._profiles.items():
            profiles[:] = [
                p
                for p in profiles
                if p.id != profile.id
                and not (
                    cid == connector_id
                    and (p.stack_level, p.purpose) == (profile.stack_level, profile.purpose)
                )
            ]
        self._profiles.setdefault(connector_id, []).append(profile)

    def clear(
        self,
        *,
        profile_id: int | None = None,
        connector_id: int | None = None,
        purpose: str | None = None,
        stack_level: int | None = None,
    ) -> int:
        """Remove by id, or every profile matching all given criteria; returns how many."""
        purpose = _PURPOSE.get(purpose or "", purpose)
        removed = 0
        for cid, profiles in self._profiles.items():
            keep = []
            for p in profiles:
                if profile_id is not None:
                    match = p.id == profile_id
                else:
                    match = (
                        (connector_id is None or connector_id == cid)
                        and (purpose is None or purpose == p.purpose)
                        and (stack_level is None or stack_level == p.stack_level)
                    )
                if match:
                    removed += 1
                else:
                    keep.append(p)
            profiles[:] = keep
        return removed

    def drop_tx_profiles(self, connector_id: int) -> None:
        """A TxProfile lives as long as its transaction."""
        if connector_id in self._profiles:
            self._profiles[connector_id] = [
                p for p in self._profiles[connector_id] if p.purpose != TX
            ]

    def all(self) -> Iterable[tuple[int, ChargingProfile]]:
        return ((cid, p) for cid, ps in self._profiles.items() for p in ps)

    def _winner(
        self,
        candidates: Iterable[tuple[int, ChargingProfile]],
        at: datetime,
        tx_start: datetime | None,
    ) -> Limit | None:
        """Highest stackLevel that is active at `at`; a connector's own profile wins a tie."""
        best: tuple[int, int, Limit] | None = None
        for cid, profile in candidates:
            limit = profile.limit_at(at, tx_start)
            if limit is not None:
                rank = (profile.stack_level, 1 if cid else 0)
                if best is None or rank > best[:2]:
                    best = (*rank, limit)
        return best[2] if best else None

    def connector_limit(
        self, connector_id: int, at: datetime, tx_start: datetime | None, tx_id: Any = None
    ) -> Limit:
        """TxProfile if one is active for this transaction, else TxDefaultProfile (charger-wide
        or this connector's). ChargePointMaxProfile is applied across connectors separately."""
        if tx_start is not None:
            own = self._profiles.get(connector_id, ())
            tx = self._winner(
                (
                    (connector_id, p)
                    for p in own
                    if p.purpose == TX and _same_tx(p.transaction_id, tx_id)
                ),
                at,
                tx_start,
            )
            if tx is not None:
                return tx
        defaults = [
            (cid, p)
            for cid in (0, connector_id)
            for p in self._profiles.get(cid, ())
            if p.purpose == TX_DEFAULT
        ]
        return self._winner(defaults, at, tx_start) or Limit()

    def station_limit(self, at: datetime) -> Limit:
        profiles = [(0, p) for p in self._profiles.get(0, ()) if p.purpose == CP_MAX]
        return self._winner(profiles, at, None) or Limit()

    def composite(
        self,
        connector_id: int,
        start: datetime,
        duration: float,
        *,
        unit: str,
        tx_start: datetime | None,
        tx_id: Any,
        max_current: float,
        phases: int,
        voltage: float,
    ) -> list[tuple[float, float]]:
        """[(start offset s, limit in `unit`)] over [start, start+duration): what the connector
        (0: the whole charger) may draw, hardware maximum included."""
        end = start + timedelta(seconds=duration)
        points = {start}
        for _, profile in self.all():
            points |= profile.breakpoints(start, end, tx_start or start)
        periods: list[tuple[float, float]] = []
        for at in sorted(points):
            limit = self.station_limit(at)
            if connector_id:
                limit = limit & self.connector_limit(connector_id, at, tx_start or start, tx_id)
            used = limit.phases or phases
            amps = limit.offered(max_current, used, voltage)
            value = round(amps * voltage * used if unit == "W" else amps, 1)
            if not periods or periods[-1][1] != value:
                periods.append(((at - start).total_seconds(), value))
        return periods


def _same_tx(profile_tx: Any, tx_id: Any) -> bool:
    return profile_tx is None or tx_id is None or str(profile_tx) == str(tx_id)
