"""The demand-response record: every event with its opt decision and compliance, and a log of what
happened to each, in the plugin's own tables (Alembic branch `openadr`) of the recorder database.

Writes are recorder facts (committed before they count); with no recorder (tests, a bare hub)
the record lives in memory only, and the report reads from there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Connection,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
    update,
)

from hub.storage.schema import ID_TYPE, NAMING_CONVENTION, JSONText, UTCDateTime
from plugins.openadr.model import DrEvent, Opt, Status, slots_from_rows

if TYPE_CHECKING:
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

BRANCH = "openadr"
MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
_COMPLIANCE = ("max_kw", "avg_kw", "seconds_over", "measured_seconds", "max_over_kw", "energy_kwh")

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# Must match what migrations/versions/ creates; a test compares the two.
events = Table(
    "openadr_events",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("source", String(64), nullable=False),
    Column("node", String(64), nullable=False),
    Column("signal_name", String(128), nullable=False),
    Column("signal_type", String(128), nullable=False),
    Column("level", Float()),
    Column("cap_kw", Float()),
    Column("start", UTCDateTime(), nullable=False),
    Column("end", UTCDateTime(), nullable=False),
    Column("modification", Integer(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("opt", String(8), nullable=False),
    Column("opt_by", String(16), nullable=False),
    Column("received_at", UTCDateTime()),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("slots", JSONText()),
    Column("max_kw", Float()),
    Column("avg_kw", Float()),
    Column("seconds_over", Float()),
    Column("measured_seconds", Float()),
    Column("max_over_kw", Float()),
    Column("energy_kwh", Float()),
    Column("detail", JSONText()),
)

log = Table(
    "openadr_log",
    metadata,
    Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    Column("time", UTCDateTime(), nullable=False),
    Column("event_id", String(128), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("detail", JSONText()),
)


def event_row(event: DrEvent, now: datetime, compliance: dict[str, Any] | None) -> dict[str, Any]:
    data = event.as_dict()
    row = {k: data[k] for k in ("event_id", "source", "node", "signal_name", "signal_type")}
    row.update(
        level=event.level, cap_kw=event.cap_kw, start=event.start, end=event.end,
        modification=event.modification, status=str(event.status), opt=str(event.opt),
        opt_by=event.opt_by, received_at=event.received_at, updated_at=now, slots=data["slots"],
        detail={"market_context": event.market_context, "priority": event.priority,
                "test_event": event.test_event, **event.detail},
    )  # fmt: skip
    for key in _COMPLIANCE:
        if compliance is not None:
            row[key] = compliance.get(key)
    return row


def _upsert(conn: Connection, row: dict[str, Any]) -> None:
    key = events.c.event_id == row["event_id"]
    if conn.execute(update(events).where(key).values(row)).rowcount == 0:
        conn.execute(insert(events).values(row))


def _event_from_row(row: Any) -> DrEvent:
    detail = dict(row["detail"] or {})
    return DrEvent(
        event_id=row["event_id"], source=row["source"], node=row["node"],
        signal_name=row["signal_name"], signal_type=row["signal_type"],
        start=row["start"], end=row["end"], slots=slots_from_rows(row["slots"] or []),
        level=row["level"], modification=row["modification"], status=Status(row["status"]),
        opt=Opt(row["opt"]), opt_by=row["opt_by"], received_at=row["received_at"],
        market_context=detail.pop("market_context", None), priority=detail.pop("priority", 0),
        test_event=bool(detail.pop("test_event", False)), detail=detail,
    )  # fmt: skip


def _report_row(row: Any) -> dict[str, Any]:
    out = dict(row)
    for key in ("start", "end", "received_at", "updated_at"):
        if isinstance(out.get(key), datetime):
            out[key] = out[key].isoformat()
    return out


class Journal:
    """Events and their history, in the recorder's database when there is one."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.rows: dict[str, dict[str, Any]] = {}  # event_id -> row, when there is no recorder
        self.entries: list[dict[str, Any]] = []
        self._pending: set[asyncio.Task[None]] = set()  # facts not yet committed

    async def start(self) -> None:
        if self.hub.recorder is not None:
            await self.hub.recorder.migrate(MIGRATIONS, BRANCH)

    def _write(self, fn: Callable[[Connection], Any], what: str) -> None:
        recorder = self.hub.recorder
        if recorder is None:
            return

        async def fact() -> None:
            try:
                await recorder.write_fact(fn)
            except Exception:
                _LOGGER.exception("demand response: could not record %s", what)

        task = self.hub.create_task(fact(), f"openadr record {what}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def flush(self) -> None:
        """Wait until everything recorded so far is committed (a report reads after it)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def save(self, event: DrEvent, compliance: dict[str, Any] | None = None) -> None:
        row = event_row(event, self.hub.now(), compliance)
        if self.hub.recorder is None:
            keep = {k: v for k, v in self.rows.get(event.event_id, {}).items() if k in _COMPLIANCE}
            self.rows[event.event_id] = {**keep, **{k: v for k, v in row.items() if v is not None}}
            return
        self._write(lambda conn: _upsert(conn, row), f"event {event.event_id}")

    def log(self, event_id: str, kind: str, detail: dict[str, Any] | None = None) -> None:
        entry = {"time": self.hub.now(), "event_id": event_id, "kind": kind, "detail": detail}
        if self.hub.recorder is None:
            self.entries.append(entry)
            return
        self._write(lambda conn: conn.execute(insert(log).values(entry)), f"{kind} {event_id}")

    async def open_events(self, now: datetime) -> list[DrEvent]:
        """Events that have not ended and were not cancelled: what a restart must keep obeying."""
        if self.hub.recorder is None:
            return []
        await self.flush()

        def read(conn: Connection) -> list[DrEvent]:
            query = select(events).where(
                events.c.end > now, events.c.status.in_(("pending", "active"))
            )
            return [_event_from_row(r) for r in conn.execute(query).mappings()]

        return await self.hub.recorder.read(read)

    async def report(self, since: datetime | None, until: datetime | None) -> list[dict[str, Any]]:
        """Every event overlapping [since, until), oldest first, with its compliance and history."""
        if self.hub.recorder is None:
            rows = [
                dict(r) for r in self.rows.values()
                if (since is None or r["end"] > since) and (until is None or r["start"] < until)
            ]  # fmt: skip
            history = self.entries
        else:
            await self.flush()

            def read(conn: Connection) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
                query = select(events).order_by(events.c.start)
                if since is not None:
                    query = query.where(events.c.end > since)
                if until is not None:
                    query = query.where(events.c.start < until)
                found = [dict(r) for r in conn.execute(query).mappings()]
                ids = [r["event_id"] for r in found]
                entries = conn.execute(
                    select(log).where(log.c.event_id.in_(ids)).order_by(log.c.id)
                ).mappings()
                return found, [dict(e) for e in entries]

            rows, history = await self.hub.recorder.read(read)
        by_event: dict[str, list[dict[str, Any]]] = {}
        for entry in history:
            item = {"time": entry["time"].isoformat(), "kind": entry["kind"]}
            by_event.setdefault(entry["event_id"], []).append({**item, "detail": entry["detail"]})
        out = []
        for row in sorted(rows, key=lambda r: r["start"]):
            item = _report_row(row)
            item["history"] = by_event.get(row["event_id"], [])
            out.append(item)
        return out
