"""The double-entry ledger: every money movement is an entry whose postings sum to zero.

Debits are positive, credits negative; an entry that does not balance per currency is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Connection, func, insert, select

from plugins.billing.money import ZERO
from plugins.billing.tables import ledger_entries, ledger_postings

REVENUE = "revenue"  # income, net of tax
TAX_PAYABLE = "tax_payable"  # tax owed to the authority


def receivable(party: str) -> str:
    """What a customer (organisation, account, or an ad-hoc card payment) owes us."""
    return f"receivable:{party}"


def cash(provider: str) -> str:
    """Money held with a payment provider (bank account, card acquirer)."""
    return f"cash:{provider}"


class UnbalancedEntry(ValueError):
    """An entry whose debits and credits differ: a bug, never written."""


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    currency: str
    amount: Decimal  # debit > 0, credit < 0


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str  # invoice, credit_note, sale, payment, capture, refund, ...
    reference: str  # the invoice, CDR or payment it records
    postings: tuple[Posting, ...]
    memo: str = ""
    idempotency_key: str | None = None
    meta: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        totals: dict[str, Decimal] = {}
        for p in self.postings:
            if not isinstance(p.amount, Decimal):
                raise TypeError(f"posting to {p.account}: amounts are Decimal, not float")
            totals[p.currency] = totals.get(p.currency, ZERO) + p.amount
        unbalanced = {c: t for c, t in totals.items() if t != 0}
        if unbalanced:
            raise UnbalancedEntry(f"{self.kind} {self.reference}: off by {unbalanced}")

    @property
    def empty(self) -> bool:
        return not any(p.amount for p in self.postings)


def _entry(
    kind: str, reference: str, items: Iterable[tuple[str, str, Decimal]], **kw: str
) -> Entry:
    postings = tuple(Posting(a, c, x) for a, c, x in items if x)
    return Entry(kind, reference, postings, **kw)  # type: ignore[arg-type]


def sale(
    party: str,
    currency: str,
    net: Decimal,
    tax: Decimal,
    reference: str,
    kind: str = "invoice",
    key: str | None = None,
) -> Entry:
    """An invoice (or an ad-hoc session's receipt): the customer owes the gross."""
    return _entry(
        kind,
        reference,
        [
            (receivable(party), currency, net + tax),
            (REVENUE, currency, -net),
            (TAX_PAYABLE, currency, -tax),
        ],
        idempotency_key=key or f"{kind}:{reference}",
    )


def payment(
    party: str,
    provider: str,
    currency: str,
    amount: Decimal,
    reference: str,
    kind: str = "payment",
    key: str | None = None,
) -> Entry:
    """Money received from a customer (a transfer, a captured card payment)."""
    return _entry(
        kind,
        reference,
        [(cash(provider), currency, amount), (receivable(party), currency, -amount)],
        idempotency_key=key or f"{kind}:{reference}",
    )


def refund(
    party: str,
    provider: str,
    currency: str,
    amount: Decimal,
    reference: str,
    key: str | None = None,
) -> Entry:
    """Money paid back: it leaves the provider and the customer's balance goes up again, until
    the credit note or credit CDR that explains the refund brings it back down."""
    return _entry(
        "refund",
        reference,
        [(receivable(party), currency, amount), (cash(provider), currency, -amount)],
        idempotency_key=key or f"refund:{reference}",
    )


def write_entry(conn: Connection, entry: Entry, created_at: datetime) -> int | None:
    """Append an entry (inside the caller's transaction); an entry already written under the
    same idempotency key is not written again. Entries with nothing to post are skipped."""
    if entry.empty:
        return None
    if entry.idempotency_key is not None:
        existing = conn.execute(
            select(ledger_entries.c.id).where(
                ledger_entries.c.idempotency_key == entry.idempotency_key
            )
        ).scalar()
        if existing is not None:
            return int(existing)
    entry_id = conn.execute(
        insert(ledger_entries).values(
            kind=entry.kind,
            reference=entry.reference,
            memo=entry.memo[:255] or None,
            created_at=created_at,
            idempotency_key=entry.idempotency_key,
        )
    ).inserted_primary_key[0]
    conn.execute(
        insert(ledger_postings),
        [
            {"entry_id": entry_id, "account": p.account, "currency": p.currency, "amount": p.amount}
            for p in entry.postings
            if p.amount
        ],
    )
    return int(entry_id)


def balances(conn: Connection, prefix: str | None = None) -> dict[tuple[str, str], Decimal]:
    """(account, currency) -> balance, summed in Python: amounts are exact text in the database."""
    t = ledger_postings
    query = select(t.c.account, t.c.currency, t.c.amount)
    if prefix is not None:
        query = query.where(t.c.account.startswith(prefix, autoescape=True))
    result: dict[tuple[str, str], Decimal] = {}
    for account, currency, amount in conn.execute(query):
        key = (account, currency)
        result[key] = result.get(key, ZERO) + amount
    return result


def entry_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(ledger_entries)).scalar_one())


def trial_balance(conn: Connection) -> dict[str, Decimal]:
    """currency -> sum of every posting; zero for every currency in a consistent ledger."""
    totals: dict[str, Decimal] = {}
    for (_, currency), amount in balances(conn).items():
        totals[currency] = totals.get(currency, ZERO) + amount
    return totals
