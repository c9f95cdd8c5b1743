"""The accounts plugin's own tables in the recorder database, and the reads and writes on them.

Every function takes a Connection and runs in the recorder's threads (a fact or a read).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
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

from hub.storage.schema import ID_TYPE, NAMING_CONVENTION, JSONText, UTCDateTime
from plugins.accounts.model import Account, Organisation, Token, Window

BRANCH = "accounts"
MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
# The first local-list version this plugin hands out. Chargers that got their list from another
# authorizer (the allow-list counts from 1) must never find their version "up to date" here.
VERSION_BASE = 1_000_000

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# Must match what migrations/versions/ creates; a test compares the two.
organisations = Table(
    "accounts_organisations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("group_id", String(64)),
    Column("plan", String(64)),
    Column("blocked", Boolean(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

accounts = Table(
    "accounts_accounts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255)),  # NULL once erased
    Column("email", String(254), unique=True),  # lower-case; NULL when none or erased
    Column("organisation_id", String(64)),  # no foreign key: organisations may be YAML-only
    Column("plan", String(64)),
    Column("status", String(16), nullable=False),
    Column("verified_at", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("erased_at", UTCDateTime()),
)

tokens = Table(
    "accounts_tokens",
    metadata,
    Column("id_token", String(64), primary_key=True),  # normalised
    Column("type", String(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("account_id", String(64)),
    Column("organisation_id", String(64)),
    Column("label", String(255)),
    Column("group_id", String(64)),
    Column("expiry", UTCDateTime()),
    Column("blocked", Boolean(), nullable=False),
    Column("blocked_reason", String(255)),
    Column("max_concurrent", Integer()),
    Column("chargers", JSONText()),
    Column("sites", JSONText()),
    Column("hours", JSONText()),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Blocks of tokens seeded in configuration.yaml: the seed is read-only, but a lost or cloned card
# must be blockable at once, not after an edit and a restart.
blocks = Table(
    "accounts_blocks",
    metadata,
    Column("id_token", String(64), primary_key=True),
    Column("reason", String(255)),
    Column("blocked_at", UTCDateTime(), nullable=False),
)

# One live verification code per account, hashed; single use, expiring, attempts counted.
codes = Table(
    "accounts_codes",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("code_hash", String(64), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("attempts", Integer(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

# What billing still needs about a token whose driver was erased: the pseudonym the sessions now
# carry, and the account, organisation, group and plan it was billed to.
erased_tokens = Table(
    "accounts_erased_tokens",
    metadata,
    Column("pseudonym", String(32), primary_key=True),
    Column("account_id", String(64)),
    Column("organisation_id", String(64)),
    Column("group_id", String(64)),
    Column("plan", String(64)),
    Column("type", String(32)),
    Column("erased_at", UTCDateTime(), nullable=False),
)

# Administrative actions and security events, without personal data (pseudonyms and ids only).
audit = Table(
    "accounts_audit",
    metadata,
    Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    Column("time", UTCDateTime(), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("account_id", String(64)),
    Column("token", String(32)),  # pseudonym
    Column("user_id", String(64)),  # who asked (the service call's context), if known
    Column("detail", JSONText()),
)

list_state = Table(
    "accounts_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger(), nullable=False),
    Column("config_fingerprint", String(64)),
)


@dataclass(slots=True)
class Loaded:
    version: int
    fingerprint: str | None
    organisations: list[Organisation]
    accounts: list[Account]
    tokens: list[Token]
    blocks: dict[str, str | None]


def load(conn: Connection) -> Loaded:
    state = conn.execute(select(list_state).where(list_state.c.id == 1)).mappings().first()
    orgs = [_org(r) for r in conn.execute(select(organisations)).mappings()]
    accts = [_account(r) for r in conn.execute(select(accounts)).mappings()]
    toks = [_token(r) for r in conn.execute(select(tokens)).mappings()]
    blocked = {r.id_token: r.reason for r in conn.execute(select(blocks))}
    version = int(state["version"]) if state else VERSION_BASE - 1
    return Loaded(
        version, state["config_fingerprint"] if state else None, orgs, accts, toks, blocked
    )


def bump_version(conn: Connection, fingerprint: str | None = None) -> int:
    """The next list version (and, when given, the fingerprint of the YAML seed it goes with)."""
    values: dict[str, Any] = {"version": list_state.c.version + 1}
    if fingerprint is not None:
        values["config_fingerprint"] = fingerprint
    changed = conn.execute(update(list_state).where(list_state.c.id == 1).values(values))
    if changed.rowcount == 0:
        conn.execute(
            insert(list_state).values(id=1, version=VERSION_BASE, config_fingerprint=fingerprint)
        )
    return int(conn.execute(select(list_state.c.version).where(list_state.c.id == 1)).scalar_one())


# --- writes ------------------------------------------------------------------------------------


def _upsert(conn: Connection, table: Table, key: str, row: dict[str, Any]) -> None:
    values = {k: v for k, v in row.items() if k != "created_at"}
    done = conn.execute(update(table).where(table.c[key] == row[key]).values(values))
    if done.rowcount == 0:
        conn.execute(insert(table).values(row))


def save_organisation(conn: Connection, org: Organisation) -> None:
    _upsert(
        conn,
        organisations,
        "id",
        {
            "id": org.id,
            "name": org.name,
            "group_id": org.group_id,
            "plan": org.plan,
            "blocked": org.blocked,
            "created_at": org.created_at,
            "updated_at": org.updated_at,
        },
    )


def save_account(conn: Connection, account: Account) -> None:
    _upsert(
        conn,
        accounts,
        "id",
        {
            "id": account.id,
            "name": account.name,
            "email": account.email,
            "organisation_id": account.organisation_id,
            "plan": account.plan,
            "status": account.status,
            "verified_at": account.verified_at,
            "created_at": account.created_at,
            "updated_at": account.updated_at,
            "erased_at": account.erased_at,
        },
    )


def save_token(conn: Connection, token: Token) -> None:
    hours = None
    if token.hours is not None:
        hours = [{"days": list(w.days), "start": w.start, "end": w.end} for w in token.hours]
    _upsert(
        conn,
        tokens,
        "id_token",
        {
            "id_token": token.id,
            "type": token.type,
            "kind": token.kind,
            "account_id": token.account_id,
            "organisation_id": token.organisation_id,
            "label": token.label,
            "group_id": token.group_id,
            "expiry": token.expiry,
            "blocked": token.blocked,
            "blocked_reason": token.blocked_reason,
            "max_concurrent": token.max_concurrent,
            "chargers": _list(token.chargers),
            "sites": _list(token.sites),
            "hours": hours,
            "created_at": token.created_at,
            "updated_at": token.updated_at,
        },
    )


def delete_token(conn: Connection, token_id: str) -> None:
    conn.execute(delete(tokens).where(tokens.c.id_token == token_id))
    conn.execute(delete(blocks).where(blocks.c.id_token == token_id))


def set_block(conn: Connection, token_id: str, reason: str | None, now: datetime | None) -> None:
    """Block a configured token (`now` given) or lift that block (`now` None)."""
    conn.execute(delete(blocks).where(blocks.c.id_token == token_id))
    if now is not None:
        conn.execute(insert(blocks).values(id_token=token_id, reason=reason, blocked_at=now))


def put_code(
    conn: Connection, account_id: str, code_hash: str, expires: datetime, now: datetime
) -> None:
    conn.execute(delete(codes).where(codes.c.account_id == account_id))
    conn.execute(
        insert(codes).values(
            account_id=account_id,
            code_hash=code_hash,
            expires_at=expires,
            attempts=0,
            created_at=now,
        )
    )


def get_code(conn: Connection, account_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(codes).where(codes.c.account_id == account_id)).mappings().first()
    return dict(row) if row else None


def count_attempt(conn: Connection, account_id: str) -> None:
    conn.execute(
        update(codes).where(codes.c.account_id == account_id).values(attempts=codes.c.attempts + 1)
    )


def delete_code(conn: Connection, account_id: str) -> None:
    conn.execute(delete(codes).where(codes.c.account_id == account_id))


def add_audit(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(insert(audit).values(row))


def audit_of(conn: Connection, account_id: str, pseudonyms: list[str]) -> list[dict[str, Any]]:
    query = (
        select(audit)
        .where((audit.c.account_id == account_id) | audit.c.token.in_(pseudonyms))
        .order_by(audit.c.time, audit.c.id)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def erased_token(conn: Connection, pseudonym: str) -> dict[str, Any] | None:
    query = select(erased_tokens).where(erased_tokens.c.pseudonym == pseudonym)
    row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def erased_of(conn: Connection, account_id: str) -> list[dict[str, Any]]:
    query = select(erased_tokens).where(erased_tokens.c.account_id == account_id)
    return [dict(r) for r in conn.execute(query).mappings()]


def add_erased(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(delete(erased_tokens).where(erased_tokens.c.pseudonym == row["pseudonym"]))
    conn.execute(insert(erased_tokens).values(row))


# --- rows -> objects ---------------------------------------------------------------------------


def _list(value: tuple[str, ...] | None) -> list[str] | None:
    return list(value) if value is not None else None


def _org(row: Any) -> Organisation:
    return Organisation(
        id=row["id"],
        name=row["name"],
        group_id=row["group_id"],
        plan=row["plan"],
        blocked=bool(row["blocked"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _account(row: Any) -> Account:
    return Account(
        id=row["id"],
        name=row["name"],
        email=row["email"],
        organisation_id=row["organisation_id"],
        plan=row["plan"],
        status=row["status"],
        verified_at=row["verified_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        erased_at=row["erased_at"],
    )


def _token(row: Any) -> Token:
    hours = row["hours"]
    return Token(
        id=row["id_token"],
        type=row["type"],
        kind=row["kind"],
        account_id=row["account_id"],
        organisation_id=row["organisation_id"],
        label=row["label"],
        group_id=row["group_id"],
        expiry=row["expiry"],
        blocked=bool(row["blocked"]),
        blocked_reason=row["blocked_reason"],
        max_concurrent=row["max_concurrent"],
        chargers=tuple(row["chargers"]) if row["chargers"] is not None else None,
        sites=tuple(row["sites"]) if row["sites"] is not None else None,
        hours=tuple(Window(tuple(w["days"]), w["start"], w["end"]) for w in hours)
        if hours is not None
        else None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
