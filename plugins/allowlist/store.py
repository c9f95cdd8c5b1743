"""The allow-list's own tables in the recorder database, and the reads and writes on them.

Every function takes a Connection and runs in the recorder's threads (a fact or a read).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)

from hub.storage.schema import NAMING_CONVENTION, JSONText, UTCDateTime
from plugins.allowlist.tokens import TokenEntry

BRANCH = "allowlist"
MIGRATIONS = Path(__file__).parent / "migrations" / "versions"

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# Must match what migrations/versions/ creates; a test compares the two.
tokens = Table(
    "allowlist_tokens",
    metadata,
    Column("id_token", String(64), primary_key=True),  # normalised
    Column("type", String(32), nullable=False),
    Column("name", String(255)),
    Column("group_id", String(64)),
    Column("expiry", UTCDateTime()),
    Column("blocked", Boolean(), nullable=False),
    Column("chargers", JSONText()),  # a list of entity ids; NULL = every charger
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# One row (id 1): the local-list version chargers sync against, and the fingerprint of the YAML
# tokens it was computed with (an edited configuration.yaml is a change too).
list_state = Table(
    "allowlist_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger(), nullable=False),
    Column("config_fingerprint", String(64)),
)


def load(conn: Connection) -> tuple[int, str | None, list[TokenEntry]]:
    """(version, YAML fingerprint, run-time tokens); version 0 on a fresh database."""
    state = conn.execute(select(list_state).where(list_state.c.id == 1)).mappings().first()
    rows = conn.execute(select(tokens).order_by(tokens.c.id_token)).mappings()
    entries = [_entry(row) for row in rows]
    if state is None:
        return 0, None, entries
    return int(state["version"]), state["config_fingerprint"], entries


def bump_version(conn: Connection, fingerprint: str | None = None) -> int:
    """The next list version (and, when given, the YAML fingerprint it goes with)."""
    values: dict[str, Any] = {"version": list_state.c.version + 1}
    if fingerprint is not None:
        values["config_fingerprint"] = fingerprint
    changed = conn.execute(update(list_state).where(list_state.c.id == 1).values(values))
    if changed.rowcount == 0:
        conn.execute(insert(list_state).values(id=1, version=1, config_fingerprint=fingerprint))
    return int(conn.execute(select(list_state.c.version).where(list_state.c.id == 1)).scalar_one())


def insert_token(conn: Connection, entry: TokenEntry) -> None:
    conn.execute(insert(tokens).values(_row(entry)))


def update_token(conn: Connection, entry: TokenEntry) -> None:
    row = _row(entry)
    del row["created_at"]
    result = conn.execute(update(tokens).where(tokens.c.id_token == entry.id).values(row))
    if result.rowcount != 1:
        raise LookupError("the token is no longer in the database")


def delete_token(conn: Connection, token_id: str) -> None:
    conn.execute(delete(tokens).where(tokens.c.id_token == token_id))


def _row(entry: TokenEntry) -> dict[str, Any]:
    return {
        "id_token": entry.id,
        "type": entry.type,
        "name": entry.name,
        "group_id": entry.group_id,
        "expiry": entry.expiry,
        "blocked": entry.blocked,
        "chargers": list(entry.chargers) if entry.chargers is not None else None,
        "created_at": entry.created_at,
        "updated_at": entry.updated_at,
    }


def _entry(row: Any) -> TokenEntry:
    chargers = row["chargers"]
    return TokenEntry(
        id=row["id_token"],
        type=row["type"],
        name=row["name"],
        group_id=row["group_id"],
        expiry=row["expiry"],
        blocked=bool(row["blocked"]),
        chargers=tuple(chargers) if chargers is not None else None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
