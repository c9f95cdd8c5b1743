"""Billing tables: CDRs, invoices and their numbering, the ledger, payments, webhooks.

Revision ID: billing_0001
Revises:
Create Date: 2026-03-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "billing_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("billing",)
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from plugins.billing.tables: a migration must keep creating
# what it created the day it was written. UTC-aware DateTime, JSON and Decimal-as-text are
# Python-side types over these SQL types.
_TS = sa.DateTime(timezone=True)
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_MONEY = sa.String(40)

APPEND_ONLY = (
    "billing_cdrs",
    "billing_invoices",
    "billing_invoice_items",
    "billing_invoice_files",
    "billing_ledger_entries",
    "billing_ledger_postings",
)


def upgrade() -> None:
    op.create_table(
        "billing_cdrs",
        sa.Column("id", sa.String(39), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("origin_session_id", sa.String(64), nullable=True),
        sa.Column("credit_of", sa.String(39), nullable=True),
        sa.Column("replaces", sa.String(39), nullable=True),
        sa.Column("bill_to", sa.String(64), nullable=True),
        sa.Column("account_id", sa.String(64), nullable=True),
        sa.Column("token", sa.String(32), nullable=True),
        sa.Column("charger_id", sa.String(255), nullable=False),
        sa.Column("connector", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(64), nullable=True),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("stopped_at", _TS, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("energy_wh", _MONEY, nullable=False),
        sa.Column("net", _MONEY, nullable=False),
        sa.Column("tax", _MONEY, nullable=False),
        sa.Column("gross", _MONEY, nullable=False),
        sa.Column("plan", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_billing_cdrs"),
        sa.UniqueConstraint("origin_session_id", name="uq_billing_cdrs_origin_session_id"),
        sa.UniqueConstraint("credit_of", name="uq_billing_cdrs_credit_of"),
    )
    op.create_index("ix_billing_cdrs_bill_to_stopped_at", "billing_cdrs", ["bill_to", "stopped_at"])
    op.create_index(
        "ix_billing_cdrs_charger_id_stopped_at", "billing_cdrs", ["charger_id", "stopped_at"]
    )
    op.create_index("ix_billing_cdrs_stopped_at", "billing_cdrs", ["stopped_at"])
    op.create_index("ix_billing_cdrs_session_id", "billing_cdrs", ["session_id"])

    op.create_table(
        "billing_invoices",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("number", sa.String(64), nullable=False),
        sa.Column("series", sa.String(48), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("credit_of", sa.String(32), nullable=True),
        sa.Column("period_key", sa.String(128), nullable=True),
        sa.Column("bill_to", sa.String(64), nullable=False),
        sa.Column("period_start", _TS, nullable=False),
        sa.Column("period_end", _TS, nullable=False),
        sa.Column("issued_at", _TS, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("net", _MONEY, nullable=False),
        sa.Column("tax", _MONEY, nullable=False),
        sa.Column("gross", _MONEY, nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_billing_invoices"),
        sa.UniqueConstraint("number", name="uq_billing_invoices_number"),
        sa.UniqueConstraint("period_key", name="uq_billing_invoices_period_key"),
        sa.UniqueConstraint("series", "seq", name="uq_billing_invoices_series_seq"),
    )
    op.create_index(
        "ix_billing_invoices_bill_to_period_start", "billing_invoices", ["bill_to", "period_start"]
    )

    op.create_table(
        "billing_invoice_items",
        sa.Column("cdr_id", sa.String(39), nullable=False),
        sa.Column("invoice_id", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(
            ["cdr_id"], ["billing_cdrs.id"], name="fk_billing_invoice_items_cdr_id_billing_cdrs"
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["billing_invoices.id"],
            name="fk_billing_invoice_items_invoice_id_billing_invoices",
        ),
        sa.PrimaryKeyConstraint("cdr_id", name="pk_billing_invoice_items"),
    )
    op.create_index("ix_billing_invoice_items_invoice_id", "billing_invoice_items", ["invoice_id"])

    op.create_table(
        "billing_invoice_files",
        sa.Column("invoice_id", sa.String(32), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["billing_invoices.id"],
            name="fk_billing_invoice_files_invoice_id_billing_invoices",
        ),
        sa.PrimaryKeyConstraint("invoice_id", "format", name="pk_billing_invoice_files"),
    )

    op.create_table(
        "billing_sequences",
        sa.Column("series", sa.String(48), nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("series", name="pk_billing_sequences"),
    )

    op.create_table(
        "billing_ledger_entries",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("reference", sa.String(64), nullable=False),
        sa.Column("memo", sa.String(255), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_billing_ledger_entries"),
        sa.UniqueConstraint("idempotency_key", name="uq_billing_ledger_entries_idempotency_key"),
    )
    op.create_table(
        "billing_ledger_postings",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("entry_id", _ID, nullable=False),
        sa.Column("account", sa.String(96), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount", _MONEY, nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["billing_ledger_entries.id"],
            name="fk_billing_ledger_postings_entry_id_billing_ledger_entries",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_billing_ledger_postings"),
    )
    op.create_index("ix_billing_ledger_postings_account", "billing_ledger_postings", ["account"])
    op.create_index("ix_billing_ledger_postings_entry_id", "billing_ledger_postings", ["entry_id"])

    op.create_table(
        "billing_payments",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("bill_to", sa.String(64), nullable=True),
        sa.Column("invoice_id", sa.String(32), nullable=True),
        sa.Column("session_id", sa.String(64), nullable=True),
        sa.Column("id_tag", sa.String(64), nullable=True),
        sa.Column("external_id", sa.String(255), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("authorized", _MONEY, nullable=True),
        sa.Column("amount", _MONEY, nullable=False),
        sa.Column("refunded", _MONEY, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_billing_payments"),
        sa.UniqueConstraint("id_tag", name="uq_billing_payments_id_tag"),
        sa.UniqueConstraint("external_id", name="uq_billing_payments_external_id"),
    )
    op.create_index("ix_billing_payments_invoice_id", "billing_payments", ["invoice_id"])

    op.create_table(
        "billing_webhooks",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(32), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("next_attempt_at", _TS, nullable=True),
        sa.Column("delivered_at", _TS, nullable=True),
        sa.Column("last_error", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_billing_webhooks"),
        sa.UniqueConstraint("delivery_id", name="uq_billing_webhooks_delivery_id"),
    )
    op.create_index(
        "ix_billing_webhooks_status_next_attempt_at",
        "billing_webhooks",
        ["status", "next_attempt_at"],
    )

    op.create_table(
        "billing_stripe_events",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_billing_stripe_events"),
    )
    op.create_table(
        "billing_state",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_billing_state"),
    )
    _append_only()


def _append_only() -> None:
    """Records a bill rests on are never changed: the database itself refuses, whoever asks."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION billing_append_only() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'billing records are append-only: % on % refused', "
            "TG_OP, TG_TABLE_NAME; END; $$ LANGUAGE plpgsql"
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION billing_append_only()"
            )
        return
    for table in APPEND_ONLY:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'billing records are append-only: {action} on "
                f"{table} refused'); END"
            )


def downgrade() -> None:
    for table in (
        "billing_state",
        "billing_stripe_events",
        "billing_webhooks",
        "billing_payments",
        "billing_ledger_postings",
        "billing_ledger_entries",
        "billing_sequences",
        "billing_invoice_files",
        "billing_invoice_items",
        "billing_invoices",
        "billing_cdrs",
    ):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS billing_append_only()")
