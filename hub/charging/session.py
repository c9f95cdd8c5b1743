"""Charging sessions (transactions) and their meter readings: the facts a bill depends on.

Raw readings are immutable; a session's energy is always derived from them, never stored alone.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

# Bus events a charger plugin fires when a session starts and stops (data: session_id,
# charger_id, connector, transaction_id, entity_id, id_tag; energy_wh on stop). The `session`
# automation trigger listens to them.
EVENT_SESSION_STARTED = "session_started"
EVENT_SESSION_STOPPED = "session_stopped"


class SessionStatus(enum.StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"


class MeterReading(NamedTuple):
    """One sampled value as the charger sent it (never rewritten).

    A NamedTuple, not a frozen dataclass: a charger sends nine of these every few seconds and a
    frozen dataclass costs ~3 us each to build, a tuple a fraction of that.
    """

    charger_id: str
    connector: int
    timestamp: datetime
    # OCPP measurand names: "Energy.Active.Import.Register", "Power.Active.Import", ...
    measurand: str
    value: float
    unit: str  # "Wh", "kWh", "W", "kW", "A", "V", "Percent", "Celsius"
    session_id: str | None = None
    phase: str | None = None  # "L1", "L2", "L3", "L1-N", ...
    location: str | None = None  # "Outlet", "Inlet", "EV", ...
    context: str | None = None  # "Sample.Periodic", "Transaction.Begin", ...
    signed_data: str | None = None  # OCMF or other signed meter value, kept verbatim


@dataclass(frozen=True, slots=True)
class Session:
    """A charging session as recorded; `transaction_id` is what the charger protocol calls it."""

    id: str
    charger_id: str
    connector: int
    transaction_id: str
    started_at: datetime
    id_tag: str | None = None
    id_tag_type: str | None = None
    meter_start_wh: float | None = None
    stopped_at: datetime | None = None
    meter_stop_wh: float | None = None
    stop_reason: str | None = None
    status: SessionStatus = SessionStatus.ACTIVE
    idempotency_key: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


# --- energy: derived from the raw readings, never stored alone ----------------------------------
REGISTER = "Energy.Active.Import.Register"
INTERVAL = "Energy.Active.Import.Interval"
# A first reading, a post-reset reading or a meter stop is believed to count from 0 only if it
# could have been delivered in the time elapsed at the fastest plausible rate and fits in one
# session; anything larger is an absolute register (an offline start or a frame change).
MAX_PLAUSIBLE_POWER_W = 400_000.0
MAX_SESSION_WH = 250_000.0
PLAUSIBLE_SLACK_WH = 1_000.0  # covers coarse timestamps (a Transaction.Begin sample at t=0)
_WH_PER_UNIT = {"wh": 1.0, "kwh": 1000.0, "": 1.0}  # OCPP's default unit is Wh


class EnergyMethod(enum.StrEnum):
    REGISTER = "register"  # cumulative meter: last - first (or meter start/stop)
    SESSION_RELATIVE = "session_relative"  # charger counts from 0 at session start
    INTERVAL_SUM = "interval_sum"  # sum of Energy.Active.Import.Interval samples
    METER_START_STOP = "meter_start_stop"  # no samples: meter_stop - meter_start
    NONE = "none"  # nothing to go on: 0 with a warning


class EnergyInterval(NamedTuple):
    """Energy delivered in (start, end]; billing prices each by its tariff slot."""

    start: datetime
    end: datetime
    wh: float


@dataclass(frozen=True, slots=True)
class EnergyResult:
    energy_wh: float
    method: EnergyMethod
    warnings: tuple[str, ...] = ()
    intervals: tuple[EnergyInterval, ...] = ()


def derive_energy(session: Session, readings: Sequence[MeterReading]) -> EnergyResult:
    """A session's delivered energy from its readings: pure, deterministic, never negative.

    Uses the total import register at the outlet (phase None), else interval samples, else the
    session's meter start/stop. Anything surprising (an offline start, a meter reset, a unit it
    cannot read) is handled and reported in `warnings` so a human can check the bill.
    """
    warnings: list[str] = []
    registers = _samples(session, readings, REGISTER, warnings)
    if registers:
        return _from_register(session, registers, warnings)
    intervals = _samples(session, readings, INTERVAL, warnings)
    if intervals:
        return _from_intervals(session, intervals, warnings)
    return _from_start_stop(session, warnings)


def _samples(
    session: Session, readings: Sequence[MeterReading], measurand: str, warnings: list[str]
) -> list[tuple[datetime, float]]:
    """(timestamp, Wh) of the session's total outlet readings of one measurand, sorted, deduped."""
    seen: set[tuple[datetime, float]] = set()
    for r in readings:
        if r.measurand != measurand or r.phase is not None or r.location not in (None, "Outlet"):
            continue
        if r.session_id is not None and r.session_id not in (session.id, session.transaction_id):
            continue
        factor = _WH_PER_UNIT.get(r.unit.strip().lower())
        if factor is None:
            warnings.append(f"ignored {measurand} reading at {r.timestamp} in unit {r.unit!r}")
            continue
        if not math.isfinite(r.value) or r.value < 0:
            warnings.append(f"ignored {measurand} reading at {r.timestamp}: value {r.value}")
            continue
        seen.add((r.timestamp, round(r.value * factor, 3)))
    return sorted(seen)


def _plausible_from_zero(wh: float, t0: datetime, t1: datetime | None) -> bool:
    ceiling = MAX_SESSION_WH
    if t1 is not None:
        hours = max(0.0, (t1 - t0).total_seconds()) / 3600
        ceiling = min(ceiling, PLAUSIBLE_SLACK_WH + MAX_PLAUSIBLE_POWER_W * hours)
    return wh <= ceiling


def _result(
    method: EnergyMethod, intervals: list[EnergyInterval], warnings: list[str]
) -> EnergyResult:
    total = round(sum(i.wh for i in intervals), 3)
    return EnergyResult(total, method, tuple(warnings), tuple(intervals))


def _from_register(
    session: Session, samples: list[tuple[datetime, float]], warnings: list[str]
) -> EnergyResult:
    start = session.meter_start_wh
    first_t, first_v = samples[0]
    prev_t, prev_v = session.started_at, 0.0
    if start is not None and start > 0:
        method, prev_v = EnergyMethod.REGISTER, start
    elif _plausible_from_zero(first_v, session.started_at, first_t):
        method = EnergyMethod.SESSION_RELATIVE
    else:
        # The charger started the session offline (meterStart 0) or never said: the energy
        # before the first reading is unknown, and counting the register from 0 would bill
        # the charger's whole lifetime.
        method, prev_t, prev_v = EnergyMethod.REGISTER, first_t, first_v
        said = "0" if start == 0 else "unknown"
        warnings.append(
            f"meter start {said} but the first register reading is {first_v:g} Wh at "
            f"{first_t.isoformat()}: likely an offline start; counted from that reading"
        )
    points = [(t, v, False) for t, v in samples]
    if session.meter_stop_wh is not None:
        last_t = samples[-1][0]
        points.append((max(session.stopped_at or last_t, last_t), session.meter_stop_wh, True))
    intervals: list[EnergyInterval] = []
    # Where the meter stood before it first went back (time, Wh, intervals and warnings so far):
    # a later value at or above that level shows the drop was no reset but a glitch (a one-off
    # 0 from a failed meter read) or readings in another frame than meter start/stop.
    dropped: tuple[datetime, float, int, int] | None = None
    for t, v, is_stop in points:
        t0, wh = prev_t, v - prev_v
        if dropped is not None and v >= dropped[1]:
            t0, level, kept, note = dropped
            del intervals[kept:]
            wh, dropped = v - level, None
            warnings[note] = (
                f"meter went back from {level:g} Wh but read {v:g} Wh at {t.isoformat()}: "
                "a glitch or a frame change, not a reset; counted across it"
            )
        elif is_stop and v < prev_v:
            warnings.append(f"meter stop {v:g} Wh is below the last reading {prev_v:g} Wh; ignored")
            continue
        elif is_stop and not _plausible_from_zero(wh, prev_t, t):
            warnings.append(
                f"meter stop {v:g} Wh jumps from the last reading {prev_v:g} Wh faster than "
                "any charger delivers; ignored"
            )
            continue
        elif v < prev_v:
            # A reset or rollover: the meter restarted near 0, so the new value is what was
            # delivered since; summing segments keeps the total from going negative.
            if dropped is None:
                dropped = (prev_t, prev_v, len(intervals), len(warnings))
            wh = v if _plausible_from_zero(v, prev_t, t) else 0.0
            warnings.append(
                f"meter went back from {prev_v:g} to {v:g} Wh at {t.isoformat()}: a reset; "
                + ("energy summed per segment" if wh else "energy between the two unknown")
            )
        if (wh := round(wh, 3)) > 0:  # mWh: below that is float noise, not energy
            intervals.append(EnergyInterval(min(t0, t), t, wh))
        prev_t, prev_v = t, v
    return _result(method, intervals, warnings)


def _from_intervals(
    session: Session, samples: list[tuple[datetime, float]], warnings: list[str]
) -> EnergyResult:
    # An interval sample is the energy of the sample period ending at its timestamp.
    intervals: list[EnergyInterval] = []
    prev_t = session.started_at
    for t, wh in samples:
        if wh > 0:
            intervals.append(EnergyInterval(min(prev_t, t), t, wh))
        prev_t = t
    return _result(EnergyMethod.INTERVAL_SUM, intervals, warnings)


def _from_start_stop(session: Session, warnings: list[str]) -> EnergyResult:
    start, stop = session.meter_start_wh, session.meter_stop_wh
    if start is None or stop is None:
        warnings.append("no energy readings and no meter start/stop: energy unknown, counted as 0")
        return _result(EnergyMethod.NONE, [], warnings)
    wh = round(stop - start, 3)
    if wh < 0:
        warnings.append(f"meter stop {stop:g} Wh is below meter start {start:g} Wh: counted as 0")
        wh = 0.0
    elif start == 0 and not _plausible_from_zero(wh, session.started_at, session.stopped_at):
        warnings.append(
            f"meter start 0 but meter stop {stop:g} Wh is more than the session could deliver: "
            "likely an offline start; energy unknown, counted as 0"
        )
        wh = 0.0
    end = session.stopped_at or session.started_at
    intervals = [EnergyInterval(session.started_at, end, wh)] if wh > 0 else []
    return _result(EnergyMethod.METER_START_STOP, intervals, warnings)
