"""Shared fixtures: a hub on the simulated clock, and databases (SQLite, a real PostgreSQL)."""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from hub.clock import SimClock
from hub.core import CoreState, Hub

SIM_START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # a Monday


@pytest.fixture
def clock() -> SimClock:
    return SimClock(start=SIM_START)


@pytest.fixture
async def hub(tmp_path: Path, clock: SimClock) -> AsyncIterator[Hub]:
    """A started hub with no plugins and no recorder, in a temporary config dir."""
    h = Hub(tmp_path, clock=clock)
    await h.start()
    yield h
    if h.state is not CoreState.STOPPED:
        await h.stop()


# --- databases: every recorder test runs on SQLite and on a real PostgreSQL server -------------


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster in a temp dir, reachable only through its unix socket."""

    bindir: Path
    base: Path
    port: int
    run_as: list[str]  # ["runuser", "-u", "postgres", "--"] when we are root

    def url(self, database: str) -> str:
        query = {"host": str(self.base), "port": str(self.port)}
        url = URL.create("postgresql+psycopg", username="postgres", database=database, query=query)
        return url.render_as_string(hide_password=False)

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host=str(self.base), port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql)

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        self._admin(f'CREATE DATABASE "{name}" STRATEGY FILE_COPY')
        return name

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def pg(self, tool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
        cmd = [*self.run_as, str(self.bindir / tool), *map(str, args)]
        return subprocess.run(cmd, cwd=self.base, capture_output=True, text=True, timeout=60)

    def stop(self) -> None:
        try:
            self.pg("pg_ctl", "-D", self.base / "data", "-m", "immediate", "-w", "stop")
        except (OSError, subprocess.SubprocessError):
            pass  # nothing was started, or it is gone already
        shutil.rmtree(self.base, ignore_errors=True)


def _pg_bindir() -> Path | None:
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    versions = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "pg_ctl").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return versions[-1] if versions else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_postgres() -> tuple[PostgresServer | None, str]:
    """Start a cluster, or return (None, the reason it could not be started)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return None, "psycopg is not installed (pip install 'evhub[test]')"
    bindir = _pg_bindir()
    if bindir is None:
        return None, (
            "PostgreSQL is not installed: no initdb/pg_ctl on PATH or in "
            "/usr/lib/postgresql/*/bin (run `make system-deps`)"
        )
    run_as: list[str] = []
    # A short path: the socket name must fit in 107 bytes.
    base = Path(tempfile.mkdtemp(prefix="evhub-pg-", dir="/tmp" if Path("/tmp").is_dir() else None))
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base, ignore_errors=True)
            return None, "running as root and there is no `postgres` OS user to run the server"
        os.chown(base, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    server = PostgresServer(bindir, base, _free_port(), run_as)
    try:
        init = server.pg(
            "initdb",
            "-D",
            base / "data",
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
    except (OSError, subprocess.SubprocessError) as err:
        shutil.rmtree(base, ignore_errors=True)
        return None, f"could not run initdb: {err}"
    if init.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        return None, f"initdb failed ({init.returncode}): {init.stderr.strip() or init.stdout}"
    # Test data is disposable: no fsync, and no TCP listener (the socket is all tests need).
    options = (
        f"-k {shlex.quote(str(base))} -p {server.port} -c listen_addresses='' -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
    )
    log = base / "server.log"
    try:
        start = server.pg("pg_ctl", "-D", base / "data", "-l", log, "-o", options, "-w", "start")
    except (OSError, subprocess.SubprocessError) as err:
        server.stop()
        return None, f"could not run pg_ctl: {err}"
    if start.returncode != 0:
        detail = log.read_text(errors="replace") if log.exists() else ""
        server.stop()
        return None, f"pg_ctl start failed ({start.returncode}): {start.stderr.strip()} {detail}"
    return server, ""


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server, reason = _start_postgres()
    if server is None:
        pytest.skip(f"no PostgreSQL for the tests: {reason}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: an SQLite file, then a database of its own on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'evhub.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)
