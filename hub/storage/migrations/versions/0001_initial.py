"""Initial schema: events, states, sessions, meter_readings.

Revision ID: 0001
Revises:
Create Date: 2026-03-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from hub.storage.schema: a migration must keep creating what
# it created the day it was written. UTC-aware DateTime and JSON-as-text are Python-side types.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("data", sa.Text(), nullable=True),
        sa.Column("origin", sa.String(16), nullable=True),
        sa.Column("time_fired", _TS, nullable=False),
        sa.Column("context_id", sa.String(64), nullable=True),
        sa.Column("context_parent_id", sa.String(64), nullable=True),
        sa.Column("context_user_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_event_type", "events", ["event_type"])
    op.create_index("ix_events_time_fired", "events", ["time_fired"])

    op.create_table(
        "states",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("entity_id", sa.String(255), nullable=False),
        sa.Column("state", sa.Text(), nullable=True),
        sa.Column("unit", sa.String(32), nullable=True),
        sa.Column("attributes", sa.Text(), nullable=True),
        sa.Column("last_changed", _TS, nullable=False),
        sa.Column("last_updated", _TS, nullable=False),
        sa.Column("context_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_states"),
    )
    op.create_index("ix_states_entity_id_last_updated", "states", ["entity_id", "last_updated"])
    op.create_index("ix_states_last_updated", "states", ["last_updated"])

    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("charger_id", sa.String(255), nullable=False),
        sa.Column("connector", sa.Integer(), nullable=False),
        sa.Column("transaction_id", sa.String(64), nullable=False),
        sa.Column("id_tag", sa.String(255), nullable=True),
        sa.Column("id_tag_type", sa.String(32), nullable=True),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("stopped_at", _TS, nullable=True),
        sa.Column("meter_start_wh", sa.Float(), nullable=True),
        sa.Column("meter_stop_wh", sa.Float(), nullable=True),
        sa.Column("stop_reason", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.UniqueConstraint("idempotency_key", name="uq_sessions_idempotency_key"),
        sa.UniqueConstraint(
            "charger_id", "transaction_id", name="uq_sessions_charger_id_transaction_id"
        ),
    )

    op.create_table(
        "meter_readings",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(64), nullable=True),
        sa.Column("charger_id", sa.String(255), nullable=False),
        sa.Column("connector", sa.Integer(), nullable=False),
        sa.Column("timestamp", _TS, nullable=False),
        sa.Column("measurand", sa.String(64), nullable=False),
        sa.Column("phase", sa.String(16), nullable=True),
        sa.Column("location", sa.String(16), nullable=True),
        sa.Column("context", sa.String(32), nullable=True),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("signed_data", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_meter_readings"),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_meter_readings_session_id_sessions"
        ),
    )
    op.create_index("ix_meter_readings_session_id", "meter_readings", ["session_id"])
    op.create_index("ix_meter_readings_timestamp", "meter_readings", ["timestamp"])


def downgrade() -> None:
    op.drop_table("meter_readings")
    op.drop_table("sessions")
    op.drop_table("states")
    op.drop_table("events")
