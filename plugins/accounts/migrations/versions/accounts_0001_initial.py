"""Accounts tables: organisations, drivers, tokens, blocks, codes, erased tokens, audit, version.

Revision ID: accounts_0001
Revises:
Create Date: 2026-03-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "accounts_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("accounts",)
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from plugins.accounts.store: a migration must keep creating
# what it created the day it was written. UTC-aware DateTime and JSON-as-text are Python-side.
_TS = sa.DateTime(timezone=True)
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "accounts_organisations",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("group_id", sa.String(64), nullable=True),
        sa.Column("plan", sa.String(64), nullable=True),
        sa.Column("blocked", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_accounts_organisations"),
    )
    op.create_table(
        "accounts_accounts",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("organisation_id", sa.String(64), nullable=True),
        sa.Column("plan", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("verified_at", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("erased_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_accounts_accounts"),
        sa.UniqueConstraint("email", name="uq_accounts_accounts_email"),
    )
    op.create_table(
        "accounts_tokens",
        sa.Column("id_token", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=True),
        sa.Column("organisation_id", sa.String(64), nullable=True),
        sa.Column("label", sa.String(255), nullable=True),
        sa.Column("group_id", sa.String(64), nullable=True),
        sa.Column("expiry", _TS, nullable=True),
        sa.Column("blocked", sa.Boolean(), nullable=False),
        sa.Column("blocked_reason", sa.String(255), nullable=True),
        sa.Column("max_concurrent", sa.Integer(), nullable=True),
        sa.Column("chargers", sa.Text(), nullable=True),
        sa.Column("sites", sa.Text(), nullable=True),
        sa.Column("hours", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id_token", name="pk_accounts_tokens"),
    )
    op.create_table(
        "accounts_blocks",
        sa.Column("id_token", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(255), nullable=True),
        sa.Column("blocked_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id_token", name="pk_accounts_blocks"),
    )
    op.create_table(
        "accounts_codes",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_accounts_codes"),
    )
    op.create_table(
        "accounts_erased_tokens",
        sa.Column("pseudonym", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=True),
        sa.Column("organisation_id", sa.String(64), nullable=True),
        sa.Column("group_id", sa.String(64), nullable=True),
        sa.Column("plan", sa.String(64), nullable=True),
        sa.Column("type", sa.String(32), nullable=True),
        sa.Column("erased_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("pseudonym", name="pk_accounts_erased_tokens"),
    )
    op.create_table(
        "accounts_audit",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("time", _TS, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=True),
        sa.Column("token", sa.String(32), nullable=True),
        sa.Column("user_id", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_accounts_audit"),
    )
    op.create_table(
        "accounts_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("config_fingerprint", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_accounts_state"),
    )


def downgrade() -> None:
    for table in ("accounts_state", "accounts_audit", "accounts_erased_tokens", "accounts_codes",
                  "accounts_blocks", "accounts_tokens", "accounts_accounts",
                  "accounts_organisations"):  # fmt: skip
        op.drop_table(table)
