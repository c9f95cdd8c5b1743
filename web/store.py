"""Users, login sessions and API tokens in the recorder database (Alembic branch `auth`).

Every function takes a Connection: the hub runs them as recorder facts, the CLI in its own engine.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    select,
    update,
)

from hub.storage.schema import NAMING_CONVENTION, UTCDateTime

BRANCH = "auth"
MIGRATIONS = Path(__file__).parent / "migrations" / "versions"

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# Must match what migrations/versions/ creates; a test compares the two.
users = Table(
    "auth_users",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),  # stored lower case
    Column("role", String(16), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("disabled", Boolean(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("password_changed_at", UTCDateTime(), nullable=False),
)

# A login session: the browser holds the random id, the table only its sha256.
sessions = Table(
    "auth_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", String(32), ForeignKey("auth_users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_seen", UTCDateTime(), nullable=False),
    Column("address", String(64)),
    Column("user_agent", String(255)),
    Index(None, "user_id"),
)

# A long-lived API token: shown once, kept as sha256 (it has 256 random bits; see docs/web.md).
tokens = Table(
    "auth_tokens",
    metadata,
    Column("id", String(32), primary_key=True),  # public: names the token to revoke it
    Column("user_id", String(32), ForeignKey("auth_users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_used_at", UTCDateTime()),
)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str
    role: str
    disabled: bool
    created_at: datetime
    password_changed_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "disabled": self.disabled,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    user_id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    user_name: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "user": self.user_name,
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
        }


def _user(row: Mapping[str, Any]) -> User:
    return User(
        row["id"],
        row["name"],
        row["role"],
        bool(row["disabled"]),
        row["created_at"],
        row["password_changed_at"],
    )


# --- users --------------------------------------------------------------------------------
def count_users(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(users)).scalar_one())


def list_users(conn: Connection) -> list[User]:
    return [_user(r) for r in conn.execute(select(users).order_by(users.c.name)).mappings()]


def user_by_name(conn: Connection, name: str) -> tuple[User, str] | None:
    """(user, password hash) or None."""
    row = conn.execute(select(users).where(users.c.name == name.lower())).mappings().first()
    return None if row is None else (_user(row), row["password_hash"])


def user_by_id(conn: Connection, user_id: str) -> tuple[User, str] | None:
    row = conn.execute(select(users).where(users.c.id == user_id)).mappings().first()
    return None if row is None else (_user(row), row["password_hash"])


def insert_user(
    conn: Connection, name: str, role: str, password_hash: str, now: datetime, *, first: bool
) -> User | None:
    """Add a user; with `first`, only while there is no user at all (the setup page's race).

    Returns None when `first` and someone else was first; raises ValueError for a taken name.
    """
    if first and count_users(conn):
        return None
    if user_by_name(conn, name) is not None:
        raise ValueError(f"user {name!r} exists")
    row = {
        "id": new_id(),
        "name": name.lower(),
        "role": role,
        "password_hash": password_hash,
        "disabled": False,
        "created_at": now,
        "password_changed_at": now,
    }
    conn.execute(insert(users).values(row))
    return _user(row)


def update_user(conn: Connection, user_id: str, **values: Any) -> None:
    """Change role, disabled or password_hash (+ password_changed_at); sessions go too."""
    if not conn.execute(update(users).where(users.c.id == user_id).values(values)).rowcount:
        raise LookupError("no such user")
    conn.execute(delete(sessions).where(sessions.c.user_id == user_id))


def delete_user(conn: Connection, user_id: str) -> None:
    # Explicit: SQLite enforces ON DELETE CASCADE only with foreign keys on, and belt and braces.
    conn.execute(delete(sessions).where(sessions.c.user_id == user_id))
    conn.execute(delete(tokens).where(tokens.c.user_id == user_id))
    conn.execute(delete(users).where(users.c.id == user_id))


def count_admins(conn: Connection) -> int:
    query = select(func.count()).where(users.c.role == "admin", users.c.disabled.is_(False))
    return int(conn.execute(query).scalar_one())


# --- sessions -----------------------------------------------------------------------------
def insert_session(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(insert(sessions).values(row))


def session_with_user(conn: Connection, id_hash: str) -> dict[str, Any] | None:
    query = (
        select(sessions, users.c.name, users.c.role, users.c.disabled)
        .join(users, users.c.id == sessions.c.user_id)
        .where(sessions.c.id_hash == id_hash)
    )
    row = conn.execute(query).mappings().first()
    return None if row is None else dict(row)


def delete_session(conn: Connection, id_hash: str) -> None:
    conn.execute(delete(sessions).where(sessions.c.id_hash == id_hash))


def delete_sessions_before(conn: Connection, created: datetime, seen: datetime) -> int:
    """Purge sessions past their absolute age or idle for too long."""
    gone = delete(sessions).where((sessions.c.created_at < created) | (sessions.c.last_seen < seen))
    return int(conn.execute(gone).rowcount or 0)


def touch_session(conn: Connection, id_hash: str, seen: datetime) -> None:
    conn.execute(update(sessions).where(sessions.c.id_hash == id_hash).values(last_seen=seen))


def sessions_of(conn: Connection, user_id: str) -> list[dict[str, Any]]:
    query = select(sessions).where(sessions.c.user_id == user_id).order_by(sessions.c.created_at)
    return [dict(r) for r in conn.execute(query).mappings()]


# --- tokens -------------------------------------------------------------------------------
def insert_token(conn: Connection, user_id: str, name: str, secret: str, now: datetime) -> Token:
    row = {
        "id": new_id(),
        "user_id": user_id,
        "name": name,
        "token_hash": digest(secret),
        "created_at": now,
        "last_used_at": None,
    }
    conn.execute(insert(tokens).values(row))
    return Token(row["id"], user_id, name, now, None)


def token_with_user(conn: Connection, token_hash: str) -> dict[str, Any] | None:
    query = (
        select(tokens, users.c.name.label("user_name"), users.c.role, users.c.disabled)
        .join(users, users.c.id == tokens.c.user_id)
        .where(tokens.c.token_hash == token_hash)
    )
    row = conn.execute(query).mappings().first()
    return None if row is None else dict(row)


def list_tokens(conn: Connection, user_id: str | None = None) -> list[Token]:
    query = select(tokens, users.c.name.label("user_name")).join(
        users, users.c.id == tokens.c.user_id
    )
    if user_id is not None:
        query = query.where(tokens.c.user_id == user_id)
    rows = conn.execute(query.order_by(tokens.c.created_at, tokens.c.id)).mappings()
    return [
        Token(r["id"], r["user_id"], r["name"], r["created_at"], r["last_used_at"], r["user_name"])
        for r in rows
    ]


def delete_token(conn: Connection, token_id: str, user_id: str | None = None) -> bool:
    query = delete(tokens).where(tokens.c.id == token_id)
    if user_id is not None:
        query = query.where(tokens.c.user_id == user_id)
    return bool(conn.execute(query).rowcount)


def touch_token(conn: Connection, token_id: str, used: datetime) -> None:
    conn.execute(update(tokens).where(tokens.c.id == token_id).values(last_used_at=used))
