"""Charging sessions and meter readings in the recorder database: the facts a bill depends on.

Every write is a recorder fact (on disk before the call returns) and is safe to retry.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from hub.charging.session import MeterReading, Session, SessionStatus
from hub.storage.schema import meter_readings, sessions

if TYPE_CHECKING:
    from hub.storage.recorder import Recorder


class SessionStore:
    """Sessions over a Recorder. A retried start (same idempotency key, or the same charger and
    transaction id) returns the first session; a retried stop returns the completed one."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder

    # --- writes (durable) ---------------------------------------------------------------
    async def start_session(self, session: Session) -> tuple[Session, bool]:
        """Record a session; returns (stored, created). Never writes a second row for a retry."""
        _require_aware(session.started_at, session.stopped_at)
        values = _session_values(session)

        def fact(conn: Connection) -> tuple[Session, bool]:
            existing = _existing(conn, session)
            if existing is not None:
                return existing, False
            try:
                with conn.begin_nested():
                    conn.execute(insert(sessions).values(values))
            except IntegrityError:
                # Another writer (a second process on this database) got there in between.
                existing = _existing(conn, session)
                if existing is None:
                    raise  # a clash on the session id itself: a caller bug, say so
                return existing, False
            stored = _get(conn, session.id)
            assert stored is not None
            return stored, True

        return await self._recorder.write_fact(fact)

    async def add_readings(self, readings: Sequence[MeterReading]) -> None:
        """Append raw readings as sent (never rewritten; energy is derived from them later)."""
        if not readings:
            return
        _require_aware(*(r.timestamp for r in readings))
        rows = [_reading_values(r) for r in readings]

        await self._recorder.write_rows(meter_readings, rows)

    def queue_readings(self, readings: Sequence[MeterReading]) -> None:
        """Readings outside any session: kept with the next batch, not worth a commit each."""
        if not readings:
            return
        _require_aware(*(r.timestamp for r in readings))
        rows = [_reading_values(r) for r in readings]
        self._recorder.queue_write(lambda conn: conn.execute(insert(meter_readings), rows))

    async def stop_session(
        self,
        session_id: str,
        stopped_at: datetime,
        meter_stop_wh: float | None,
        reason: str | None,
    ) -> Session:
        """Complete a session; stopping a completed session returns it unchanged.

        Raises KeyError for an unknown session id.
        """
        _require_aware(stopped_at)

        def fact(conn: Connection) -> Session:
            current = _get(conn, session_id)
            if current is None:
                raise KeyError(f"unknown session {session_id!r}")
            if current.status is SessionStatus.COMPLETED:
                return current
            conn.execute(
                update(sessions)
                .where(sessions.c.id == session_id)
                .values(
                    stopped_at=stopped_at,
                    meter_stop_wh=meter_stop_wh,
                    stop_reason=reason,
                    status=SessionStatus.COMPLETED.value,
                )
            )
            stored = _get(conn, session_id)
            assert stored is not None
            return stored

        return await self._recorder.write_fact(fact)

    # --- reads --------------------------------------------------------------------------
    async def get(self, session_id: str) -> Session | None:
        return await self._recorder.read(lambda conn: _get(conn, session_id))

    async def find(self, charger_id: str, transaction_id: str) -> Session | None:
        query = select(sessions).where(
            sessions.c.charger_id == charger_id, sessions.c.transaction_id == transaction_id
        )
        return await self._recorder.read(lambda conn: _one(conn, query))

    async def active(self, charger_id: str | None = None) -> builtins.list[Session]:
        query = select(sessions).where(sessions.c.status == SessionStatus.ACTIVE.value)
        if charger_id is not None:
            query = query.where(sessions.c.charger_id == charger_id)
        query = query.order_by(sessions.c.started_at, sessions.c.id)
        return await self._recorder.read(lambda conn: _all(conn, query))

    async def readings(self, session_id: str) -> builtins.list[MeterReading]:
        """A session's readings in the order they were taken (then recorded)."""
        t = meter_readings
        query = select(t).where(t.c.session_id == session_id).order_by(t.c.timestamp, t.c.id)

        def run(conn: Connection) -> builtins.list[MeterReading]:
            return [_to_reading(row) for row in conn.execute(query).mappings()]

        return await self._recorder.read(run)

    async def list(
        self,
        *,
        charger_id: str | None = None,
        id_tag: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 100,
    ) -> builtins.list[Session]:
        """Sessions started in [start, end), newest first."""
        query = select(sessions)
        if charger_id is not None:
            query = query.where(sessions.c.charger_id == charger_id)
        if id_tag is not None:
            query = query.where(sessions.c.id_tag == id_tag)
        if start is not None:
            query = query.where(sessions.c.started_at >= start)
        if end is not None:
            query = query.where(sessions.c.started_at < end)
        query = query.order_by(sessions.c.started_at.desc(), sessions.c.id.desc()).limit(limit)
        return await self._recorder.read(lambda conn: _all(conn, query))


def _require_aware(*values: datetime | None) -> None:
    # Checked here, before queueing, so the caller gets a plain ValueError at once.
    for value in values:
        if value is not None and value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: facts need a timezone")


def _existing(conn: Connection, session: Session) -> Session | None:
    if session.idempotency_key is not None:
        by_key = _one(
            conn, select(sessions).where(sessions.c.idempotency_key == session.idempotency_key)
        )
        if by_key is not None:
            return by_key
    return _one(
        conn,
        select(sessions).where(
            sessions.c.charger_id == session.charger_id,
            sessions.c.transaction_id == session.transaction_id,
        ),
    )


def _get(conn: Connection, session_id: str) -> Session | None:
    return _one(conn, select(sessions).where(sessions.c.id == session_id))


def _one(conn: Connection, query: Any) -> Session | None:
    row = conn.execute(query).mappings().first()
    return None if row is None else _to_session(row)


def _all(conn: Connection, query: Any) -> builtins.list[Session]:
    return [_to_session(row) for row in conn.execute(query).mappings()]


def _session_values(s: Session) -> dict[str, Any]:
    return {
        "id": s.id,
        "charger_id": s.charger_id,
        "connector": s.connector,
        "transaction_id": s.transaction_id,
        "id_tag": s.id_tag,
        "id_tag_type": s.id_tag_type,
        "started_at": s.started_at,
        "stopped_at": s.stopped_at,
        "meter_start_wh": s.meter_start_wh,
        "meter_stop_wh": s.meter_stop_wh,
        "stop_reason": s.stop_reason,
        "status": SessionStatus(s.status).value,
        "idempotency_key": s.idempotency_key,
        "data": dict(s.data),
    }


def _to_session(row: Mapping[str, Any]) -> Session:
    return Session(
        id=row["id"],
        charger_id=row["charger_id"],
        connector=row["connector"],
        transaction_id=row["transaction_id"],
        started_at=row["started_at"],
        id_tag=row["id_tag"],
        id_tag_type=row["id_tag_type"],
        meter_start_wh=row["meter_start_wh"],
        stopped_at=row["stopped_at"],
        meter_stop_wh=row["meter_stop_wh"],
        stop_reason=row["stop_reason"],
        status=SessionStatus(row["status"]),
        idempotency_key=row["idempotency_key"],
        data=row["data"] or {},
    )


def _reading_values(r: MeterReading) -> dict[str, Any]:
    return {
        "session_id": r.session_id,
        "charger_id": r.charger_id,
        "connector": r.connector,
        "timestamp": r.timestamp,
        "measurand": r.measurand,
        "phase": r.phase,
        "location": r.location,
        "context": r.context,
        "value": float(r.value),
        "unit": r.unit,
        "signed_data": r.signed_data,
    }


def _to_reading(row: Mapping[str, Any]) -> MeterReading:
    return MeterReading(
        charger_id=row["charger_id"],
        connector=row["connector"],
        timestamp=row["timestamp"],
        measurand=row["measurand"],
        value=row["value"],
        unit=row["unit"],
        session_id=row["session_id"],
        phase=row["phase"],
        location=row["location"],
        context=row["context"],
        signed_data=row["signed_data"],
    )
