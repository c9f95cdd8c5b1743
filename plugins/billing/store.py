"""Reads and writes on the billing tables; every function takes a Connection and runs in the
recorder's threads (a durable fact or a read). Nothing here updates a CDR, invoice or posting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, case, insert, select, update
from sqlalchemy.exc import IntegrityError

from hub.storage.schema import sessions
from plugins.billing.cdr import Cdr
from plugins.billing.tables import (
    cdrs,
    invoice_files,
    invoice_items,
    invoices,
    sequences,
    state,
)

# Records of one moment in their natural order: the charge, its credit, its replacement.
_ORDER = (
    cdrs.c.stopped_at,
    cdrs.c.created_at,
    case({"cdr": 0, "credit": 1, "correction": 2}, value=cdrs.c.kind, else_=3),
    cdrs.c.id,
)


class BillingError(Exception):
    """A billing request that cannot be done as asked (the message says why)."""


class AlreadyInvoiced(BillingError):
    """The party's period has its invoice (another hub on the database may have just made it)."""


# --- CDRs -----------------------------------------------------------------------------------
def insert_cdr(conn: Connection, cdr: Cdr) -> tuple[Cdr, bool]:
    """Write a session's CDR once: (stored, created). A second CDR for the same session returns
    the first, whoever wrote it (a replayed stop, a restart's catch-up, another hub)."""
    if cdr.origin_session_id is not None:
        existing = _cdr_where(conn, cdrs.c.origin_session_id == cdr.origin_session_id)
        if existing is not None:
            return existing, False
    try:
        with conn.begin_nested():
            conn.execute(insert(cdrs).values(cdr.row()))
    except IntegrityError:
        if cdr.origin_session_id is None:
            raise
        existing = _cdr_where(conn, cdrs.c.origin_session_id == cdr.origin_session_id)
        if existing is None:
            raise
        return existing, False
    return cdr, True


def insert_correction(conn: Connection, credit: Cdr, correction: Cdr | None) -> None:
    """A credit for an earlier CDR and (optionally) the record that replaces it, together."""
    try:
        with conn.begin_nested():
            conn.execute(insert(cdrs).values(credit.row()))
            if correction is not None:
                conn.execute(insert(cdrs).values(correction.row()))
    except IntegrityError:
        raise BillingError(f"CDR {credit.credit_of} was already credited") from None


def get_cdr(conn: Connection, cdr_id: str) -> Cdr | None:
    return _cdr_where(conn, cdrs.c.id == cdr_id)


def cdrs_of_session(conn: Connection, session_id: str) -> list[Cdr]:
    query = select(cdrs).where(cdrs.c.session_id == session_id).order_by(cdrs.c.created_at)
    return [Cdr.from_row(r) for r in conn.execute(query).mappings()]


def is_credited(conn: Connection, cdr_id: str) -> bool:
    return _cdr_where(conn, cdrs.c.credit_of == cdr_id) is not None


def list_cdrs(
    conn: Connection,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    charger_id: str | None = None,
    bill_to: str | None = None,
    limit: int | None = None,
) -> list[Cdr]:
    """CDRs whose session stopped in [start, end), oldest first."""
    query = select(cdrs)
    if start is not None:
        query = query.where(cdrs.c.stopped_at >= start)
    if end is not None:
        query = query.where(cdrs.c.stopped_at < end)
    if charger_id is not None:
        query = query.where(cdrs.c.charger_id == charger_id)
    if bill_to is not None:
        query = query.where(cdrs.c.bill_to == bill_to)
    query = query.order_by(*_ORDER)
    if limit is not None:
        query = query.limit(limit)
    return [Cdr.from_row(r) for r in conn.execute(query).mappings()]


def uninvoiced(conn: Connection, bill_to: str, currency: str, before: datetime) -> list[Cdr]:
    """A party's CDRs not on any invoice yet whose session stopped before `before`: a session
    replayed after its month was invoiced lands on the next invoice, never on none or two."""
    query = (
        select(cdrs)
        .outerjoin(invoice_items, invoice_items.c.cdr_id == cdrs.c.id)
        .where(
            invoice_items.c.cdr_id.is_(None),
            cdrs.c.bill_to == bill_to,
            cdrs.c.currency == currency,
            cdrs.c.stopped_at < before,
        )
        .order_by(*_ORDER)
    )
    return [Cdr.from_row(r) for r in conn.execute(query).mappings()]


def parties_to_invoice(conn: Connection, before: datetime) -> list[tuple[str, str]]:
    """(bill_to, currency) of every party with uninvoiced CDRs stopped before `before`."""
    query = (
        select(cdrs.c.bill_to, cdrs.c.currency)
        .outerjoin(invoice_items, invoice_items.c.cdr_id == cdrs.c.id)
        .where(
            invoice_items.c.cdr_id.is_(None),
            cdrs.c.bill_to.is_not(None),
            cdrs.c.stopped_at < before,
        )
        .distinct()
        .order_by(cdrs.c.bill_to, cdrs.c.currency)
    )
    return [(row[0], row[1]) for row in conn.execute(query)]


def sessions_to_bill(conn: Connection, since: datetime, limit: int = 500) -> list[str]:
    """Completed sessions stopped since `since` that have no CDR (a crash between the stop and
    its CDR, or a hub that was down): the catch-up at start bills them."""
    query = (
        select(sessions.c.id)
        .outerjoin(cdrs, cdrs.c.origin_session_id == sessions.c.id)
        .where(
            cdrs.c.id.is_(None),
            sessions.c.status == "completed",
            sessions.c.stopped_at >= since,
        )
        .order_by(sessions.c.stopped_at)
        .limit(limit)
    )
    return [row[0] for row in conn.execute(query)]


def _cdr_where(conn: Connection, condition: Any) -> Cdr | None:
    row = conn.execute(select(cdrs).where(condition)).mappings().first()
    return None if row is None else Cdr.from_row(row)


# --- invoices -------------------------------------------------------------------------------
def next_seq(conn: Connection, series: str) -> int:
    """The next number of a series, inside the caller's transaction: if that transaction rolls
    back, so does the number, which is what keeps invoice numbers free of gaps. The UPDATE's row
    lock (PostgreSQL) or the write lock (SQLite) makes concurrent writers take turns."""
    for _ in range(3):
        bumped = conn.execute(
            update(sequences).where(sequences.c.series == series).values(last=sequences.c.last + 1)
        )
        if bumped.rowcount == 1:
            value = conn.execute(
                select(sequences.c.last).where(sequences.c.series == series)
            ).scalar_one()
            return int(value)
        try:
            with conn.begin_nested():
                conn.execute(insert(sequences).values(series=series, last=1))
            return 1
        except IntegrityError:
            continue  # another hub created the series meanwhile: bump it instead
    raise BillingError(f"could not take a number in series {series!r}")


def insert_invoice(conn: Connection, row: Mapping[str, Any], cdr_ids: Sequence[str]) -> None:
    try:
        with conn.begin_nested():
            conn.execute(insert(invoices).values(dict(row)))
    except IntegrityError:
        if row.get("period_key") is None:
            raise
        raise AlreadyInvoiced(f"{row['bill_to']} is invoiced for {row['period_key']}") from None
    if cdr_ids:
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(invoice_items),
                    [{"cdr_id": c, "invoice_id": row["id"]} for c in cdr_ids],
                )
        except IntegrityError:
            raise AlreadyInvoiced("a CDR of this invoice is on another invoice already") from None


def get_invoice(conn: Connection, key: str) -> dict[str, Any] | None:
    """An invoice by id or by number."""
    query = select(invoices).where((invoices.c.id == key) | (invoices.c.number == key))
    row = conn.execute(query).mappings().first()
    return None if row is None else dict(row)


def list_invoices(
    conn: Connection,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    bill_to: str | None = None,
) -> list[dict[str, Any]]:
    """Invoices and credit notes issued in [start, end), in number order."""
    query = select(invoices)
    if start is not None:
        query = query.where(invoices.c.issued_at >= start)
    if end is not None:
        query = query.where(invoices.c.issued_at < end)
    if bill_to is not None:
        query = query.where(invoices.c.bill_to == bill_to)
    query = query.order_by(invoices.c.series, invoices.c.seq)
    return [dict(r) for r in conn.execute(query).mappings()]


def invoice_cdrs(conn: Connection, invoice_id: str) -> list[Cdr]:
    query = (
        select(cdrs)
        .join(invoice_items, and_(invoice_items.c.cdr_id == cdrs.c.id))
        .where(invoice_items.c.invoice_id == invoice_id)
        .order_by(*_ORDER)
    )
    return [Cdr.from_row(r) for r in conn.execute(query).mappings()]


def invoice_of_cdr(conn: Connection, cdr_id: str) -> str | None:
    query = select(invoice_items.c.invoice_id).where(invoice_items.c.cdr_id == cdr_id)
    return conn.execute(query).scalar()


def credit_notes_of(conn: Connection, invoice_id: str) -> list[dict[str, Any]]:
    query = select(invoices).where(invoices.c.credit_of == invoice_id).order_by(invoices.c.seq)
    return [dict(r) for r in conn.execute(query).mappings()]


def put_file(conn: Connection, invoice_id: str, fmt: str, content: bytes) -> None:
    """Archive a rendered invoice once; the first rendering stays (files are append-only)."""
    if get_file(conn, invoice_id, fmt) is not None:
        return
    digest = hashlib.sha256(content).hexdigest()
    try:
        with conn.begin_nested():
            conn.execute(
                insert(invoice_files).values(
                    invoice_id=invoice_id, format=fmt, content=content, sha256=digest
                )
            )
    except IntegrityError:
        pass  # rendered by someone else meanwhile: theirs is the archived one


def get_file(conn: Connection, invoice_id: str, fmt: str) -> bytes | None:
    query = select(invoice_files.c.content).where(
        invoice_files.c.invoice_id == invoice_id, invoice_files.c.format == fmt
    )
    value = conn.execute(query).scalar()
    return None if value is None else bytes(value)


# --- plugin state ---------------------------------------------------------------------------
def state_get(conn: Connection, key: str) -> Any:
    return conn.execute(select(state.c.value).where(state.c.key == key)).scalar()


def state_setdefault(conn: Connection, key: str, value: Any) -> Any:
    """The stored value, or `value` stored now when there is none."""
    current = state_get(conn, key)
    if current is not None:
        return current
    conn.execute(insert(state).values(key=key, value=value))
    return value


def state_set(conn: Connection, key: str, value: Any) -> None:
    if conn.execute(update(state).where(state.c.key == key).values(value=value)).rowcount == 0:
        conn.execute(insert(state).values(key=key, value=value))
