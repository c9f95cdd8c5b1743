"""Alembic environment: migrates the connection the recorder hands in, or a URL for developers.

At runtime the recorder passes an open connection in `config.attributes["connection"]`.
"""

from __future__ import annotations

import os
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from sqlalchemy import Connection, text
from sqlalchemy.types import TypeDecorator

from hub.storage.schema import WRITER, create_recorder_engine, metadata

# Any constant will do; it only has to be the same for every hub migrating this database.
_PG_MIGRATION_LOCK = 0x65766875  # "evhu"

config = context.config


def _url() -> str:
    return os.environ.get("EVHUB_DB_URL") or config.get_main_option("sqlalchemy.url") or ""


def _render_item(kind: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    # Autogenerate writes our Python-side types (UTCDateTime, JSONText) as their SQL types, so a
    # migration never imports hub.storage.schema.
    if kind == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl_instance!r}"
    return False


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        render_item=_render_item,
        # SQLite can't ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Two hubs (or a hub and a developer) starting at once must not both create tables.
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # Developer CLI: only here may Alembic configure logging (at runtime the hub owns logging).
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    engine = create_recorder_engine(_url())  # WAL and foreign keys on SQLite, as at runtime
    try:
        with engine.connect() as conn:
            conn.execution_options(**{WRITER: True})
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
