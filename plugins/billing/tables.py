"""The billing plugin's tables in the recorder database (its own Alembic branch `billing`).

CDRs, invoices and the ledger are append-only: database triggers refuse UPDATE and DELETE.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

from hub.storage.schema import ID_TYPE, NAMING_CONVENTION, JSONText, UTCDateTime

BRANCH = "billing"
MIGRATIONS = Path(__file__).parent / "migrations" / "versions"

# The tables whose rows are never changed or removed once written (see the migration's triggers).
APPEND_ONLY = (
    "billing_cdrs",
    "billing_invoices",
    "billing_invoice_items",
    "billing_invoice_files",
    "billing_ledger_entries",
    "billing_ledger_postings",
)

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class DecimalText(TypeDecorator[Decimal]):
    """An exact Decimal stored as its text: SQLite has no decimal type and would keep a float."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"amounts are Decimal, not {type(value).__name__}")
        return format(value, "f")

    def process_result_value(self, value: str | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


# Must match what migrations/versions/ creates; a test compares the two.
cdrs = Table(
    "billing_cdrs",
    metadata,
    Column("id", String(39), primary_key=True),
    Column("kind", String(16), nullable=False),  # cdr | credit | correction
    Column("session_id", String(64), nullable=False),  # sessions.id of the core
    # Set on a session's first CDR only (NULL is never equal to NULL): a session is billed once.
    Column("origin_session_id", String(64), unique=True),
    Column("credit_of", String(39), unique=True),  # a CDR is credited at most once
    Column("replaces", String(39)),
    Column("bill_to", String(64)),  # organisation or account; NULL: nobody known
    Column("account_id", String(64)),
    Column("token", String(32)),  # the token's pseudonym, never the raw id
    Column("charger_id", String(255), nullable=False),
    Column("connector", Integer, nullable=False),
    Column("site", String(64)),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("stopped_at", UTCDateTime(), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("energy_wh", DecimalText(), nullable=False),
    Column("net", DecimalText(), nullable=False),
    Column("tax", DecimalText(), nullable=False),
    Column("gross", DecimalText(), nullable=False),
    Column("plan", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("doc", JSONText(), nullable=False),
    Index(None, "bill_to", "stopped_at"),
    Index(None, "charger_id", "stopped_at"),
    Index(None, "stopped_at"),
    Index(None, "session_id"),
)

invoices = Table(
    "billing_invoices",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("number", String(64), nullable=False, unique=True),
    Column("series", String(48), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("kind", String(16), nullable=False),  # invoice | credit_note
    Column("credit_of", String(32)),
    # "<party>|<currency>|<period>" on invoices (NULL on credit notes): one invoice per period,
    # even when two hubs on one database run the month at the same time.
    Column("period_key", String(128), unique=True),
    Column("bill_to", String(64), nullable=False),
    Column("period_start", UTCDateTime(), nullable=False),
    Column("period_end", UTCDateTime(), nullable=False),
    Column("issued_at", UTCDateTime(), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("net", DecimalText(), nullable=False),
    Column("tax", DecimalText(), nullable=False),
    Column("gross", DecimalText(), nullable=False),
    Column("doc", JSONText(), nullable=False),
    UniqueConstraint("series", "seq"),
    Index(None, "bill_to", "period_start"),
)

invoice_items = Table(
    "billing_invoice_items",
    metadata,
    # The primary key makes a CDR appear on one invoice at most.
    Column("cdr_id", String(39), ForeignKey("billing_cdrs.id"), primary_key=True),
    Column("invoice_id", String(32), ForeignKey("billing_invoices.id"), nullable=False),
    Index(None, "invoice_id"),
)

invoice_files = Table(
    "billing_invoice_files",
    metadata,
    Column("invoice_id", String(32), ForeignKey("billing_invoices.id"), primary_key=True),
    Column("format", String(8), primary_key=True),  # html | pdf
    Column("content", LargeBinary(), nullable=False),
    Column("sha256", String(64), nullable=False),
)

sequences = Table(
    "billing_sequences",
    metadata,
    Column("series", String(48), primary_key=True),
    Column("last", Integer, nullable=False),
)

ledger_entries = Table(
    "billing_ledger_entries",
    metadata,
    Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("reference", String(64), nullable=False),
    Column("memo", String(255)),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("idempotency_key", String(128), unique=True),
)

ledger_postings = Table(
    "billing_ledger_postings",
    metadata,
    Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    Column(
        "entry_id",
        BigInteger().with_variant(Integer(), "sqlite"),
        ForeignKey("billing_ledger_entries.id"),
        nullable=False,
    ),
    Column("account", String(96), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", DecimalText(), nullable=False),  # debit > 0, credit < 0
    Index(None, "account"),
    Index(None, "entry_id"),
)

payments = Table(
    "billing_payments",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("provider", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("bill_to", String(64)),
    Column("invoice_id", String(32)),
    Column("session_id", String(64)),
    Column("id_tag", String(64), unique=True),  # the ad-hoc token a pre-authorization starts
    Column("external_id", String(255), unique=True),
    Column("currency", String(3), nullable=False),
    Column("authorized", DecimalText()),
    Column("amount", DecimalText(), nullable=False),
    Column("refunded", DecimalText(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("doc", JSONText(), nullable=False),
    Index(None, "invoice_id"),
)

webhooks = Table(
    "billing_webhooks",
    metadata,
    Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    Column("delivery_id", String(32), nullable=False, unique=True),
    Column("target", String(64), nullable=False),
    Column("event", String(64), nullable=False),
    Column("payload", JSONText(), nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("next_attempt_at", UTCDateTime()),
    Column("delivered_at", UTCDateTime()),
    Column("last_error", String(255)),
    Index(None, "status", "next_attempt_at"),
)

stripe_events = Table(
    "billing_stripe_events",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("type", String(64), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
)

state = Table(
    "billing_state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", JSONText()),
)
