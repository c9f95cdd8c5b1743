"""Alembic migrations of the recorder database; `upgrade()` is what the recorder runs at start.

A package so that env.py ships in the wheel; developers use alembic.ini in this folder.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from hub.storage.schema import WRITER

HERE = Path(__file__).parent


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to `revision` in one transaction; a no-op when already there (blocking)."""
    config = Config()  # built in code: no alembic.ini needed at runtime
    config.set_main_option("script_location", str(HERE).replace("%", "%%"))
    with engine.connect() as conn:
        conn.execution_options(**{WRITER: True})
        with conn.begin():
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
