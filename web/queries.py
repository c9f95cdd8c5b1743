"""What the pages and the API read from the recorder: sessions with their energy, recent events,
today's energy and cost. Pure functions over a Connection, run in the recorder's reader threads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, or_, select

from hub.charging.session import MeterReading, Session, derive_energy
from hub.charging.signals import TimeSeries

# Event data without credentials, for the pages and the API (they import it from here). The hub
# masks new `call_service` events already; rows recorded before it did, and any other event data,
# are masked here by the same rule.
from hub.services import redact as redact
from hub.storage.schema import event_dict, events, meter_readings, sessions
from hub.storage.sessions import _to_reading, _to_session

SECURITY_EVENT_SUFFIX = "_security_event"


def session_dict(s: Session, energy_wh: float | None = None) -> dict[str, Any]:
    return {
        "id": s.id,
        "charger_id": s.charger_id,
        "connector": s.connector,
        "transaction_id": s.transaction_id,
        "id_tag": s.id_tag,
        "started_at": s.started_at.isoformat(),
        "stopped_at": s.stopped_at.isoformat() if s.stopped_at else None,
        "meter_start_wh": s.meter_start_wh,
        "meter_stop_wh": s.meter_stop_wh,
        "energy_wh": energy_wh,
        "stop_reason": s.stop_reason,
        "status": str(s.status),
    }


def simple_energy(s: Session) -> float | None:
    """A list's energy figure: stop - start when both are known (detail pages derive it fully)."""
    if s.meter_start_wh is None or s.meter_stop_wh is None:
        return None
    return max(0.0, s.meter_stop_wh - s.meter_start_wh)


def list_sessions(
    conn: Connection,
    *,
    charger_id: str | None = None,
    connector: int | None = None,
    id_tag: str | None = None,
    status: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 100,
) -> list[Session]:
    """Sessions started in [start, end), newest first, filtered by what was given."""
    t = sessions
    query = select(t)
    if charger_id is not None:
        query = query.where(t.c.charger_id == charger_id)
    if connector is not None:
        query = query.where(t.c.connector == connector)
    if id_tag is not None:
        query = query.where(t.c.id_tag == id_tag)
    if status is not None:
        query = query.where(t.c.status == status)
    if start is not None:
        query = query.where(t.c.started_at >= start)
    if end is not None:
        query = query.where(t.c.started_at < end)
    query = query.order_by(t.c.started_at.desc(), t.c.id.desc()).limit(limit)
    return [_to_session(r) for r in conn.execute(query).mappings()]


def session_detail(conn: Connection, session_id: str) -> tuple[Session, list[MeterReading]] | None:
    row = conn.execute(select(sessions).where(sessions.c.id == session_id)).mappings().first()
    if row is None:
        return None
    t = meter_readings
    query = select(t).where(t.c.session_id == session_id).order_by(t.c.timestamp, t.c.id)
    return _to_session(row), [_to_reading(r) for r in conn.execute(query).mappings()]


def recent_events(
    conn: Connection,
    event_types: list[str] | None,
    start: datetime | None,
    end: datetime | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Recorded events, newest first (a page wants the latest, not the oldest of a window)."""
    t = events
    query = select(t)
    if event_types:
        query = query.where(t.c.event_type.in_(event_types))
    if start is not None:
        query = query.where(t.c.time_fired >= start)
    if end is not None:
        query = query.where(t.c.time_fired < end)
    query = query.order_by(t.c.time_fired.desc(), t.c.id.desc()).limit(limit)
    return [event_dict(r) for r in conn.execute(query).mappings()]


def energy_since(
    conn: Connection, since: datetime, prices: TimeSeries | None
) -> tuple[float, float | None]:
    """(kWh delivered since `since`, its cost at the prices of each interval's slot or None).

    Energy is derived from each session's raw readings, the way billing derives it.
    """
    t = sessions
    query = select(t).where(or_(t.c.stopped_at.is_(None), t.c.stopped_at >= since))
    total_wh, cost, priced = 0.0, 0.0, prices is not None
    for row in conn.execute(query).mappings():
        session = _to_session(row)
        q = select(meter_readings).where(meter_readings.c.session_id == session.id)
        ordered = q.order_by(meter_readings.c.timestamp, meter_readings.c.id)
        readings = [_to_reading(r) for r in conn.execute(ordered).mappings()]
        result = derive_energy(session, readings)
        if not result.intervals:
            if session.started_at >= since:
                total_wh += result.energy_wh
                priced = False
            continue
        for interval in result.intervals:
            if interval.end <= since:
                continue
            total_wh += interval.wh
            price = prices.value_at(interval.end) if prices is not None else None
            if price is None:
                priced = False
            else:
                cost += interval.wh / 1000 * price
    return total_wh / 1000, (cost if priced else None)


def meter_curve(session: Session, readings: list[MeterReading]) -> dict[str, Any]:
    """The session's energy as billing derives it, and the curve for a chart: per interval the
    cumulative kWh and the average kW (power samples are not facts; energy readings are)."""
    result = derive_energy(session, readings)
    points, total = [], 0.0
    for iv in result.intervals:
        total += iv.wh
        hours = (iv.end - iv.start).total_seconds() / 3600
        kw = iv.wh / 1000 / hours if hours > 0 else 0.0
        points.append({"t": iv.end.isoformat(), "kwh": round(total / 1000, 4), "kw": round(kw, 3)})
    return {
        "energy_wh": result.energy_wh,
        "method": str(result.method),
        "warnings": list(result.warnings),
        "points": points,
    }
