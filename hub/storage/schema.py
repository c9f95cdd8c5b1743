"""The recorder's database: tables (SQLAlchemy Core), row mapping and engines for SQLite/PostgreSQL.

Alembic migrations in `migrations/versions/` create exactly these tables; a test keeps them equal.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    insert,
    select,
)
from sqlalchemy import event as sa_event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import TypeDecorator

from hub.bus import EVENT_STATE_CHANGED

if TYPE_CHECKING:
    from hub.bus import Event

_LOGGER = logging.getLogger(__name__)

SCHEMA_VERSION = "0001"  # the Alembic head this code expects

# Deterministic constraint names, so later migrations can drop/alter them by name on both engines.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# SQLite only aliases the rowid (and so autoincrements) for a column declared exactly INTEGER.
ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")


def json_default(obj: Any) -> Any:
    """Make anything a plugin puts in a state or event storable instead of failing the row."""
    as_dict = getattr(obj, "as_dict", None)
    if callable(as_dict):  # Context, State, Event
        return as_dict()
    if isinstance(obj, datetime | date | time):
        return obj.isoformat()
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Mapping):  # MappingProxyType in State.attributes / Event.data
        return dict(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if isinstance(obj, Decimal):
        return float(obj)
    return str(obj)


def json_dumps(value: Any) -> str:
    return json.dumps(value, default=json_default, separators=(",", ":"), ensure_ascii=False)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on SQLite (naive UTC text) and PostgreSQL (timestamptz).

    Naive datetimes are refused: guessing their zone is how billing periods go wrong.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} cannot be stored: add a tzinfo")
        value = value.astimezone(UTC)
        # SQLite compares the text form, so every row must be in the same zone and format.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class JSONText(TypeDecorator[Any]):
    """JSON kept as plain text on both engines; values that JSON can't hold are stringified."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else json_dumps(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


events = Table(
    "events",
    metadata,
    Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    Column("event_type", String(64), nullable=False),
    Column("data", JSONText()),
    Column("origin", String(16)),
    Column("time_fired", UTCDateTime(), nullable=False),
    Column("context_id", String(64)),
    Column("context_parent_id", String(64)),
    Column("context_user_id", String(64)),
    Index(None, "event_type"),
    Index(None, "time_fired"),
)

states = Table(
    "states",
    metadata,
    Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    Column("entity_id", String(255), nullable=False),
    # The native value as JSON text ("21.5", "\"charging\"", "null"); SQL NULL = entity removed.
    Column("state", Text),
    Column("unit", String(32)),
    Column("attributes", JSONText()),
    Column("last_changed", UTCDateTime(), nullable=False),
    Column("last_updated", UTCDateTime(), nullable=False),
    Column("context_id", String(64)),
    # history() asks for one entity over a time range: entity first, then time.
    Index(None, "entity_id", "last_updated"),
    Index(None, "last_updated"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("charger_id", String(255), nullable=False),
    Column("connector", Integer, nullable=False),
    Column("transaction_id", String(64), nullable=False),
    Column("id_tag", String(255)),
    Column("id_tag_type", String(32)),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("stopped_at", UTCDateTime()),
    Column("meter_start_wh", Float),
    Column("meter_stop_wh", Float),
    Column("stop_reason", String(64)),
    Column("status", String(16), nullable=False),
    Column("idempotency_key", String(255), unique=True),
    Column("data", JSONText(), nullable=False),
    UniqueConstraint("charger_id", "transaction_id"),
)

meter_readings = Table(
    "meter_readings",
    metadata,
    Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    Column("session_id", String(64), ForeignKey("sessions.id")),
    Column("charger_id", String(255), nullable=False),
    Column("connector", Integer, nullable=False),
    Column("timestamp", UTCDateTime(), nullable=False),
    Column("measurand", String(64), nullable=False),
    Column("phase", String(16)),
    Column("location", String(16)),
    Column("context", String(32)),
    Column("value", Float, nullable=False),
    Column("unit", String(32), nullable=False),
    Column("signed_data", Text),
    Index(None, "session_id"),
    Index(None, "timestamp"),
)

TABLES = ("events", "states", "sessions", "meter_readings")


# --- rows <-> hub objects -----------------------------------------------------------------
def event_row(event: Event) -> dict[str, Any]:
    data: Mapping[str, Any] = event.data
    if event.event_type == EVENT_STATE_CHANGED:
        data = {"entity_id": data["entity_id"]}  # the states row holds the rest
    ctx = event.context
    return {
        "event_type": event.event_type,
        "data": dict(data),
        "origin": event.origin,
        "time_fired": event.time_fired,
        "context_id": ctx.id,
        "context_parent_id": ctx.parent_id,
        "context_user_id": ctx.user_id,
    }


def state_row(event: Event) -> dict[str, Any]:
    """The states row for a state_changed event; a removed entity is a row with state NULL."""
    new = event.data.get("new_state")
    row: dict[str, Any] = {
        "entity_id": event.data["entity_id"],
        "state": None,
        "unit": None,
        "attributes": None,
        "last_changed": event.time_fired,
        "last_updated": event.time_fired,
        "context_id": event.context.id,
    }
    if new is not None:
        row["state"] = json_dumps(new.state)
        row["unit"] = new.unit
        row["attributes"] = dict(new.attributes)
        row["last_changed"] = new.last_changed
        row["last_updated"] = new.last_updated
    return row


def select_history(
    conn: Connection, entity_id: str, start: datetime, end: datetime | None
) -> list[dict[str, Any]]:
    t = states
    query = select(t).where(t.c.entity_id == entity_id, t.c.last_updated >= start)
    if end is not None:
        query = query.where(t.c.last_updated < end)
    rows = conn.execute(query.order_by(t.c.last_updated, t.c.id)).mappings()
    return [state_dict(row) for row in rows]


def select_events(
    conn: Connection, event_type: str | None, start: datetime, end: datetime | None, limit: int
) -> list[dict[str, Any]]:
    t = events
    query = select(t).where(t.c.time_fired >= start)
    if event_type is not None:
        query = query.where(t.c.event_type == event_type)
    if end is not None:
        query = query.where(t.c.time_fired < end)
    rows = conn.execute(query.order_by(t.c.time_fired, t.c.id).limit(limit)).mappings()
    return [event_dict(row) for row in rows]


def state_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "entity_id": row["entity_id"],
        "state": None if row["state"] is None else json.loads(row["state"]),
        "removed": row["state"] is None,
        "unit": row["unit"],
        "attributes": row["attributes"] or {},
        "last_changed": row["last_changed"],
        "last_updated": row["last_updated"],
        "context_id": row["context_id"],
    }


def event_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "event_type": row["event_type"],
        "data": row["data"] or {},
        "origin": row["origin"],
        "time_fired": row["time_fired"],
        "context": {
            "id": row["context_id"],
            "parent_id": row["context_parent_id"],
            "user_id": row["context_user_id"],
        },
    }


def insert_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows in one statement, inside a savepoint so a failure harms nothing else."""
    if _try_insert(conn, table, rows) is None:
        return
    # One bad row (a unit too long for PostgreSQL, say) must not cost the whole batch.
    errors = [e for e in (_try_insert(conn, table, [row]) for row in rows) if e is not None]
    if errors:
        _LOGGER.warning(
            "recorder skipped %d of %d %s rows: %s", len(errors), len(rows), table.name, errors[0]
        )


def _try_insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> Exception | None:
    try:
        with conn.begin_nested():
            conn.execute(insert(table), rows)
    except Exception as err:
        if isinstance(err, DBAPIError) and err.connection_invalidated:
            raise  # the connection is gone: retrying row by row can't help
        return err
    return None


# --- engines ------------------------------------------------------------------------------
SQLITE_BUSY_TIMEOUT_MS = 15_000
WRITER = "evhub_writer"  # execution option marking the one write connection


def create_recorder_engine(url: str) -> Engine:
    """An engine for a recorder URL: SQLite (a file) tuned for durability, or PostgreSQL."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    database = parsed.database or ""
    if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
        raise ValueError("the recorder needs an SQLite file: readers use their own connections")
    if not parsed.query.get("uri"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    sa_event.listen(engine, "connect", _sqlite_connect)
    sa_event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin (savepoints work).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA synchronous=FULL")  # a committed fact survives power loss
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # The writer takes the write lock up front: a read-then-write fact can't hit SQLITE_BUSY
    # halfway through when another process (the CLI, say) writes too.
    writer = conn.get_execution_options().get(WRITER, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")
