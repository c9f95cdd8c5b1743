"""Plugin-owned tables: a plugin's own Alembic branch next to the core's, on SQLite and PostgreSQL.

Given a recorder database, when a plugin migrates its branch, then its tables exist, the core's
revision and the plugin's share `alembic_version`, and later core upgrades still work.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.pool import NullPool

from hub.core import Hub
from hub.storage.migrations import CORE_VERSIONS, MigrationError, upgrade
from hub.storage.recorder import Recorder
from hub.storage.schema import SCHEMA_VERSION, TABLES, create_recorder_engine

REVISION = '''\
"""{message}"""

import sqlalchemy as sa
from alembic import op

revision = {revision!r}
down_revision = {down!r}
branch_labels = {labels!r}
depends_on = {depends!r}


def upgrade() -> None:
{body}


def downgrade() -> None:
    pass
'''


def write_revision(
    folder: Path,
    revision: str,
    body: str,
    *,
    down: str | None = None,
    labels: tuple[str, ...] | None = None,
    depends: str | None = None,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text_ = REVISION.format(
        message=f"{revision} for a test plugin",
        revision=revision,
        down=down,
        labels=labels,
        depends=depends,
        body="    " + dedent(body).strip().replace("\n", "\n    "),
    )
    (folder / f"{revision}.py").write_text(text_)


def parking_plugin(root: Path) -> Path:
    """A plugin whose branch `parking` has two revisions: a table, then a column on it."""
    versions = root / "parking" / "migrations" / "versions"
    write_revision(
        versions,
        "parking_0001",
        """
        op.create_table(
            "parking_bays",
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("label", sa.String(64), nullable=False),
        )
        """,
        labels=("parking",),
    )
    write_revision(
        versions,
        "parking_0002",
        'op.add_column("parking_bays", sa.Column("covered", sa.Boolean(), nullable=True))',
        down="parking_0001",
    )
    return versions


@pytest.fixture
def other(db_url: str) -> Iterator[Engine]:
    engine = create_engine(db_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def versions_in(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))}


def columns(engine: Engine, table: str) -> set[str]:
    with engine.connect() as conn:
        return {c["name"] for c in inspect(conn).get_columns(table)}


async def started(hub: Hub, db_url: str) -> Recorder:
    recorder = Recorder(hub, db_url)
    await recorder.start()
    return recorder


async def test_a_plugin_branch_creates_its_tables_once_next_to_the_core(
    hub: Hub, db_url: str, other: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="alembic")
    versions = parking_plugin(tmp_path)
    for runs in (2, 0):  # the second start finds the branch at head: nothing runs
        recorder = await started(hub, db_url)
        caplog.clear()
        await recorder.migrate(versions, "parking")
        await recorder.migrate(versions, "parking")  # twice in one run: still a no-op
        await recorder.stop()
        assert sum("Running upgrade" in m for m in caplog.messages) == runs

        assert columns(other, "parking_bays") == {"id", "label", "covered"}
        assert versions_in(other) == {SCHEMA_VERSION, "parking_0002"}
        with other.connect() as conn:
            assert set(inspect(conn).get_table_names()) == {
                "alembic_version",
                "parking_bays",
                *TABLES,
            }


async def test_data_in_a_plugin_table_survives_the_next_start(
    hub: Hub, db_url: str, other: Engine, tmp_path: Path
) -> None:
    versions = parking_plugin(tmp_path)
    recorder = await started(hub, db_url)
    await recorder.migrate(versions, "parking")
    await recorder.write_fact(
        lambda conn: conn.execute(text("INSERT INTO parking_bays (id, label) VALUES ('b1', 'A')"))
    )
    await recorder.stop()

    recorder = await started(hub, db_url)
    await recorder.migrate(versions, "parking")
    rows = await recorder.read(
        lambda c: c.execute(text("SELECT id, label FROM parking_bays")).all()
    )
    await recorder.stop()
    assert [tuple(r) for r in rows] == [("b1", "A")]


async def test_two_plugins_and_the_core_each_keep_their_own_row(
    hub: Hub, db_url: str, other: Engine, tmp_path: Path
) -> None:
    parking = parking_plugin(tmp_path)
    tariffs = tmp_path / "tariffs" / "migrations" / "versions"
    write_revision(
        tariffs,
        "tariffs_0001",
        'op.create_table("tariff_rules", sa.Column("id", sa.Integer(), primary_key=True))',
        labels=("tariffs",),
    )
    recorder = await started(hub, db_url)
    await recorder.migrate(parking, "parking")
    await recorder.migrate(tariffs, "tariffs")
    await recorder.stop()
    assert versions_in(other) == {SCHEMA_VERSION, "parking_0002", "tariffs_0001"}

    # Next start: only `parking` is installed now. The tariffs row is not its business, and the
    # core's upgrade at start must not trip over either plugin's row.
    recorder = await started(hub, db_url)
    await recorder.migrate(parking, "parking")
    await recorder.stop()
    assert versions_in(other) == {SCHEMA_VERSION, "parking_0002", "tariffs_0001"}


async def test_a_new_core_revision_upgrades_while_plugin_branches_exist(
    hub: Hub, db_url: str, other: Engine, tmp_path: Path
) -> None:
    recorder = await started(hub, db_url)
    await recorder.migrate(parking_plugin(tmp_path), "parking")
    await recorder.stop()

    # A later evhub release ships core revision 0002 on top of 0001.
    newer_core = tmp_path / "core_next"
    write_revision(
        newer_core,
        "0002",
        'op.add_column("sessions", sa.Column("tariff", sa.String(64), nullable=True))',
        down=SCHEMA_VERSION,
    )
    engine = create_recorder_engine(db_url)
    try:
        locations = (CORE_VERSIONS, newer_core)
        upgrade(engine, version_locations=locations)
        upgrade(engine, version_locations=locations)  # at head: a no-op
    finally:
        engine.dispose()
    assert "tariff" in columns(other, "sessions")
    assert versions_in(other) == {"0002", "parking_0002"}
    assert "covered" in columns(other, "parking_bays")


async def test_a_plugin_table_may_refer_to_core_tables(
    hub: Hub, db_url: str, other: Engine, tmp_path: Path
) -> None:
    versions = tmp_path / "receipts" / "migrations" / "versions"
    write_revision(
        versions,
        "receipts_0001",
        """
        op.create_table(
            "receipts",
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("session_id", sa.String(64), sa.ForeignKey("sessions.id"), nullable=False),
        )
        """,
        labels=("receipts",),
    )
    recorder = await started(hub, db_url)
    await recorder.migrate(versions, "receipts")
    await recorder.stop()
    assert versions_in(other) == {SCHEMA_VERSION, "receipts_0001"}
    with other.connect() as conn:
        (fk,) = inspect(conn).get_foreign_keys("receipts")
    assert fk["referred_table"] == "sessions"


async def test_a_database_newer_than_the_plugin_is_refused_clearly(
    hub: Hub, db_url: str, other: Engine, tmp_path: Path
) -> None:
    versions = parking_plugin(tmp_path)
    recorder = await started(hub, db_url)
    await recorder.migrate(versions, "parking")
    # The plugin is downgraded: its newest revision file is gone, the database still has it.
    (versions / "parking_0002.py").unlink()
    with pytest.raises(MigrationError, match=r"parking_0002.*newer version"):
        await recorder.migrate(versions, "parking")
    await recorder.stop()
    assert versions_in(other) == {SCHEMA_VERSION, "parking_0002"}


PARKING = ("parking",)


@pytest.mark.parametrize(
    ("revision", "declared", "message"),
    [
        ("0001_parking", {"labels": PARKING}, "must be 'parking_'"),
        ("parking_first_one", {"labels": PARKING}, "must be 'parking_'"),
        ("parking_0001", {}, "branch_labels"),
        ("parking_0001", {"labels": PARKING, "depends": SCHEMA_VERSION}, "depends_on"),
        pytest.param(
            "parking_0001",
            {"labels": PARKING, "down": SCHEMA_VERSION},
            "outside the branch",
            marks=pytest.mark.filterwarnings("ignore:Revision 0001 referenced"),
        ),
    ],
)
async def test_a_badly_formed_branch_is_refused_before_anything_runs(
    hub: Hub, tmp_path: Path, revision: str, declared: dict[str, Any], message: str
) -> None:
    db_url = f"sqlite:///{tmp_path / 'evhub.db'}"
    versions = tmp_path / "parking" / "versions"
    write_revision(
        versions, revision, 'op.create_table("x", sa.Column("id", sa.Integer()))', **declared
    )
    recorder = await started(hub, db_url)
    try:
        with pytest.raises(MigrationError, match=message):
            await recorder.migrate(versions, "parking")
        with pytest.raises(MigrationError, match="no migrations folder"):
            await recorder.migrate(tmp_path / "missing", "parking")
    finally:
        await recorder.stop()
    engine = create_engine(db_url, poolclass=NullPool)
    try:
        assert versions_in(engine) == {SCHEMA_VERSION}
        assert "x" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()
