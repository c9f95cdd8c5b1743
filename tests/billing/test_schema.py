"""The billing tables are exactly what the billing Alembic branch builds, on SQLite and
PostgreSQL, next to the core's tables in the one recorder database."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from hub.storage.migrations import upgrade, upgrade_branch
from hub.storage.schema import create_recorder_engine
from plugins.billing import tables


def only_billing_tables(name: str | None, kind: str, _parent: object) -> bool:
    return kind != "table" or bool(name and name.startswith("billing_"))


def test_the_tables_are_exactly_what_the_migrations_build(db_url: str) -> None:
    engine = create_recorder_engine(db_url)
    try:
        upgrade(engine)
        upgrade_branch(engine, tables.MIGRATIONS, tables.BRANCH)
        upgrade_branch(engine, tables.MIGRATIONS, tables.BRANCH)  # at head: nothing to do
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_name": only_billing_tables})
            assert compare_metadata(context, tables.metadata) == []
    finally:
        engine.dispose()
