"""The web's own tables come from its Alembic branch `auth` and match web/store.py, on SQLite and
PostgreSQL; users and tokens made with `evhub user` / `evhub token` work in a running hub."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from hub.clock import SimClock
from hub.storage.migrations import upgrade, upgrade_branch
from hub.storage.schema import create_recorder_engine
from tests.web.conftest import PASSWORD, login, start_web
from web import store


def only_auth_tables(name: str | None, kind: str, _parent: object) -> bool:
    return kind != "table" or bool(name and name.startswith("auth_"))


def test_the_tables_are_exactly_what_the_migrations_build(db_url: str) -> None:
    engine = create_recorder_engine(db_url)
    try:
        upgrade(engine)
        upgrade_branch(engine, store.MIGRATIONS, store.BRANCH)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_name": only_auth_tables})
            assert compare_metadata(context, store.metadata) == []
    finally:
        engine.dispose()


def evhub(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args, "-c", str(config)],
        input=stdin, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def test_the_command_line_adds_users_and_tokens_a_running_hub_accepts(
    tmp_path: Path, clock: SimClock
) -> None:
    (tmp_path / "configuration.yaml").write_text("hub: {name: cli}\nhttp: {}\n")
    added = evhub(tmp_path, "user", "add", "Owner", "--role", "admin", "--password-stdin",
                  stdin=PASSWORD + "\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert PASSWORD not in added.stdout + added.stderr
    short = evhub(tmp_path, "user", "add", "bob", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "10 to 1024" in short.stderr
    created = evhub(tmp_path, "token", "create", "ci")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("evhub_") and len(token) > 40

    w = await start_web(tmp_path, clock)
    try:
        assert not await w.server.auth.needs_setup()
        assert (await login(w.client(), "owner")).status == 303
        api = w.bearer(token)
        assert (await (await api.get("/api/auth/me")).json())["role"] == "admin"
        listed = evhub(tmp_path, "token", "list")
        assert "ci\towner" in listed.stdout and token not in listed.stdout
        assert evhub(tmp_path, "token", "revoke", "ci").returncode == 0
        await clock.advance(16)  # the hub checks a cached token again after 15 s
        assert (await api.get("/api/auth/me")).status == 401
    finally:
        for s in w.sessions:
            await s.close()
        await w.hub.stop()
