"""A driver's right to their data: everything the hub holds about them as JSON, and erasure.

Erasure keeps what a bill needs (sessions, readings, the account id) under the card's pseudonym.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Table, Text, func, or_, select, type_coerce, update

from hub.bus import Context
from hub.charging.session import SessionStatus
from hub.storage.schema import events, sessions, states
from plugins.accounts import store
from plugins.accounts.directory import AccountsError, Directory
from plugins.accounts.model import erased_marker as marker

_LOGGER = logging.getLogger(__name__)

EVENT_ERASED = "accounts_driver_erased"
EVENT_EXPORTED = "accounts_driver_exported"
EXPORT_FORMAT = "evhub.accounts.driver/1"
ERASED = "<erased>"


def _session_rows(conn: Connection, ids: Iterable[str]) -> list[dict[str, Any]]:
    wanted = list(ids)
    if not wanted:
        return []
    s = sessions.c
    query = (
        select(
            s.id,
            s.charger_id,
            s.connector,
            s.transaction_id,
            s.id_tag,
            s.started_at,
            s.stopped_at,
            s.meter_start_wh,
            s.meter_stop_wh,
            s.stop_reason,
            s.status,
        )
        .where(func.upper(func.trim(s.id_tag)).in_(wanted))
        .order_by(s.started_at)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


class Privacy:
    def __init__(self, directory: Directory) -> None:
        self.d = directory

    def _account(self, account_id: str) -> Any:
        account = self.d.snap.accounts.get(account_id)
        if account is None:
            raise AccountsError("account_id: no account with this id")
        return account

    async def export(self, account_id: str, raw_ids: bool, context: Context) -> dict[str, Any]:
        account = self._account(account_id)
        snap = self.d.snap
        own = [t for t in snap.tokens.values() if t.account_id == account_id]
        ids = {t.id: self.d.pseudonym(t.id) for t in own}

        def read(conn: Connection) -> tuple[list[Any], list[Any], list[Any], Any]:
            erased = store.erased_of(conn, account_id)
            marked = [marker(e["pseudonym"]) for e in erased]
            rows = _session_rows(conn, [*ids, *marked])
            audit = store.audit_of(
                conn, account_id, [*ids.values(), *(e["pseudonym"] for e in erased)]
            )
            return erased, rows, audit, store.get_code(conn, account_id)

        erased, rows, audit, code = await self.d.recorder.read(read)
        by_id = {k.upper(): v for k, v in ids.items()}
        for row in rows:
            raw = (row.pop("id_tag") or "").strip().upper()
            row["token"] = raw if raw_ids and raw in by_id else by_id.get(raw, raw)
        org = snap.organisations.get(account.organisation_id or "")
        row = {
            "time": self.d.hub.now(),
            "kind": "driver_exported",
            "account_id": account_id,
            "token": None,
            "user_id": context.user_id,
            "detail": {"raw_ids": raw_ids},
        }
        await self.d.recorder.write_fact(lambda c: store.add_audit(c, row))
        self.d.hub.bus.fire(EVENT_EXPORTED, {"account_id": account_id, "raw_ids": raw_ids}, context)
        return _jsonable(
            {
                "format": EXPORT_FORMAT,
                "exported_at": self.d.hub.now(),
                "hub": self.d.hub.name,
                "account": account.as_dict(),
                "organisation": {"id": org.id, "name": org.name} if org else None,
                "tokens": [self.d.token_view(t, raw_ids) for t in own],
                "erased_tokens": [
                    {"pseudonym": e["pseudonym"], "type": e["type"], "erased_at": e["erased_at"]}
                    for e in erased
                ],
                "pending_verification": {"expires_at": code["expires_at"]} if code else None,
                "sessions": rows,
                "audit": [{k: a[k] for k in ("time", "kind", "token", "detail")} for a in audit],
            }
        )

    async def erase(self, account_id: str, context: Context) -> dict[str, Any]:
        return await self.d.shielded(self._erase(account_id, context))

    async def _erase(self, account_id: str, context: Context) -> dict[str, Any]:
        async with self.d.lock:
            account = self._account(account_id)
            if account.status == "erased":
                return {"version": self.d.version, "account_id": account_id, "tokens": []}
            self.d.writable("accounts", account_id)
            snap, now = self.d.snap, self.d.hub.now()
            own = [t for t in snap.tokens.values() if t.account_id == account_id]
            if seeded := [t for t in own if t.id in self.d.yaml_ids["tokens"]]:
                raise AccountsError(
                    f"account_id: {len(seeded)} of this driver's tokens are in "
                    "configuration.yaml; remove them there and restart first"
                )
            ids = [t.id for t in own]
            active = await self.d.recorder.read(
                lambda c: [
                    r for r in _session_rows(c, ids) if r["status"] == SessionStatus.ACTIVE.value
                ]
            )
            if active:
                raise AccountsError(
                    f"account_id: {len(active)} session(s) of this driver are "
                    "still running; stop them first"
                )
            owner = snap.owner(own[0]) if own else None
            org = owner.organisation if owner else None
            replacements = {t.id: marker(self.d.pseudonym(t.id)) for t in own}
            erased_rows = [
                {
                    "pseudonym": self.d.pseudonym(t.id),
                    "account_id": account_id,
                    "organisation_id": org.id if org else None,
                    "group_id": t.group_id or (org.group_id if org else None),
                    "plan": account.plan or (org.plan if org else None),
                    "type": t.type,
                    "erased_at": now,
                }
                for t in own
            ]
            erased = replace(
                account, name=None, email=None, status="erased", erased_at=now, updated_at=now
            )
            # Only the address is searched for in history: a name is too common a word to
            # replace blindly, and this plugin's own events never carry one (see validate.py).
            personal = [account.email] if account.email else []

            await self.d.recorder.flush()  # history still queued must be searched too
            found = await self.d.recorder.read(lambda c: find_history(c, replacements, personal))

            def write(conn: Connection) -> None:
                counts = rewrite_history(conn, replacements, found)
                for row in erased_rows:
                    store.add_erased(conn, row)
                for token_id in ids:
                    store.delete_token(conn, token_id)
                store.delete_code(conn, account_id)
                store.save_account(conn, erased)
                _LOGGER.info(
                    "accounts: erased driver %s (%d tokens; history rows rewritten: %s)",
                    account_id,
                    len(ids),
                    counts,
                )

            new = snap.with_(
                accounts={**snap.accounts, account_id: erased},
                tokens={k: v for k, v in snap.tokens.items() if k not in replacements},
            )
            audit = [
                {
                    "kind": "driver_erased",
                    "account_id": account_id,
                    "token": None,
                    "detail": {"tokens": [r["pseudonym"] for r in erased_rows]},
                }
            ]
            version = await self.d.apply(new, write, context, audit)
            markers = sorted(replacements.values())
            self.d.hub.bus.fire(
                EVENT_ERASED, {"account_id": account_id, "tokens": markers}, context
            )
            return {"version": version, "account_id": account_id, "tokens": markers}


Rewrite = tuple[Table, str, Any, Any]  # table, column, row id, new value


def find_history(
    conn: Connection, replacements: dict[str, str], personal: list[str]
) -> list[Rewrite]:
    """The rows of the recorder's history (events, states, session data and keys) that hold the
    driver's card ids or address, rewritten with pseudonyms. A read: the scan of big history
    tables must not hold up the writer, which commits the facts chargers wait for."""
    needles = dict(replacements)
    needles.update({p: ERASED for p in personal})
    if not needles:
        return []
    pattern = re.compile(
        "|".join(re.escape(n) for n in sorted(needles, key=len, reverse=True)), re.IGNORECASE
    )

    def swap(text: str) -> str:
        return pattern.sub(lambda m: needles.get(m[0].upper(), needles.get(m[0], ERASED)), text)

    found: list[Rewrite] = []
    targets = ((events, "data"), (states, "attributes"), (sessions, "data"),
               (sessions, "idempotency_key"))  # fmt: skip
    for table, name in targets:
        column = type_coerce(table.c[name], Text)
        matches = or_(*(column.ilike(f"%{_like(n)}%", escape="\\") for n in needles))
        for row_id, text in conn.execute(select(table.c.id, column).where(matches)).all():
            if text is None:
                continue
            swapped = swap(text)
            if name == "idempotency_key":
                found.append((table, name, row_id, swapped))
            elif _valid_json(swapped):  # else a needle inside an escape: leave the row whole
                found.append((table, name, row_id, json.loads(swapped)))
    return found


def rewrite_history(
    conn: Connection, replacements: dict[str, str], found: list[Rewrite]
) -> dict[str, int]:
    """Sessions get the pseudonym marker as their id tag; the rows `find_history` found get
    their rewritten values. Runs in the writer's thread, in the erasure's transaction."""
    counts: dict[str, int] = {}
    s = sessions.c
    for raw, mark in replacements.items():
        done = conn.execute(
            update(sessions).where(func.upper(func.trim(s.id_tag)) == raw).values(id_tag=mark)
        )
        counts["sessions"] = counts.get("sessions", 0) + done.rowcount
    for table, name, row_id, value in found:
        conn.execute(update(table).where(table.c.id == row_id).values({name: value}))
        counts[table.name] = counts.get(table.name, 0) + 1
    return counts


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _valid_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _jsonable(value: Any) -> Any:
    """Plain JSON types: datetimes as ISO 8601 text."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
