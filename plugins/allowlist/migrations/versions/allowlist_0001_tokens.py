"""Allow-list tables: run-time tokens and the local-list version.

Revision ID: allowlist_0001
Revises:
Create Date: 2026-03-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "allowlist_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("allowlist",)
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from plugins.allowlist.store: a migration must keep creating
# what it created the day it was written. UTC-aware DateTime and JSON-as-text are Python-side.
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "allowlist_tokens",
        sa.Column("id_token", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("group_id", sa.String(64), nullable=True),
        sa.Column("expiry", _TS, nullable=True),
        sa.Column("blocked", sa.Boolean(), nullable=False),
        sa.Column("chargers", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id_token", name="pk_allowlist_tokens"),
    )
    op.create_table(
        "allowlist_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("config_fingerprint", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_allowlist_state"),
    )


def downgrade() -> None:
    op.drop_table("allowlist_state")
    op.drop_table("allowlist_tokens")
