"""Demand-response tables: every event with its opt decision and compliance, and a log of what
happened to each (received, modified, opt, start, end, cancelled).

Revision ID: openadr_0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "openadr_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("openadr",)
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from plugins.openadr.store: a migration must keep creating
# what it created the day it was written. UTC-aware DateTime and JSON-as-text are Python-side.
_TS = sa.DateTime(timezone=True)
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "openadr_events",
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("signal_name", sa.String(128), nullable=False),
        sa.Column("signal_type", sa.String(128), nullable=False),
        sa.Column("level", sa.Float(), nullable=True),
        sa.Column("cap_kw", sa.Float(), nullable=True),
        sa.Column("start", _TS, nullable=False),
        sa.Column("end", _TS, nullable=False),
        sa.Column("modification", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("opt", sa.String(8), nullable=False),
        sa.Column("opt_by", sa.String(16), nullable=False),
        sa.Column("received_at", _TS, nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("slots", sa.Text(), nullable=True),
        sa.Column("max_kw", sa.Float(), nullable=True),
        sa.Column("avg_kw", sa.Float(), nullable=True),
        sa.Column("seconds_over", sa.Float(), nullable=True),
        sa.Column("measured_seconds", sa.Float(), nullable=True),
        sa.Column("max_over_kw", sa.Float(), nullable=True),
        sa.Column("energy_kwh", sa.Float(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name="pk_openadr_events"),
    )
    op.create_table(
        "openadr_log",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("time", _TS, nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_openadr_log"),
    )
    op.create_index("ix_openadr_log_event_id", "openadr_log", ["event_id"])


def downgrade() -> None:
    op.drop_index("ix_openadr_log_event_id", table_name="openadr_log")
    op.drop_table("openadr_log")
    op.drop_table("openadr_events")
