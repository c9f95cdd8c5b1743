"""Billing facts survive kill -9: whatever a SessionStore call returned for is in the database.

A child hub records sessions and readings and says so after each await; we SIGKILL it mid-stream.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

from hub.storage.schema import meter_readings, sessions

ROOT = Path(__file__).resolve().parents[2]
ACKED = 200  # sessions the child must report before it is killed
READINGS_PER_SESSION = 3

CHILD = """
import asyncio, sys
from datetime import timedelta
from hub.charging.session import MeterReading, Session
from hub.clock import SimClock
from hub.core import Hub
from hub.storage.recorder import Recorder
from hub.storage.sessions import SessionStore

async def main(url: str, per_session: int) -> None:
    hub = Hub(clock=SimClock())
    hub.recorder = Recorder(hub, url)
    await hub.start()
    store = SessionStore(hub.recorder)
    n = 0
    while True:  # until killed
        now = hub.now()
        session, _ = await store.start_session(
            Session(f"s{n}", f"cp{n % 7}", 1, f"tx{n}", now, id_tag="RFID", meter_start_wh=0.0)
        )
        await store.add_readings([
            MeterReading(session.charger_id, 1, now + timedelta(seconds=i),
                         "Energy.Active.Import.Register", 10.0 * i, "Wh", session_id=session.id)
            for i in range(per_session)
        ])
        print("committed", session.id, flush=True)  # the "acknowledgement"
        hub.states.set("sensor.site_power", float(n))  # batched, non-critical traffic alongside
        await hub.clock.advance(1)
        n += 1

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def test_acknowledged_sessions_and_readings_survive_sigkill(db_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", CHILD, db_url, str(READINGS_PER_SESSION)]
    acked: list[str] = []
    with (
        (tmp_path / "child.err").open("w+") as stderr,
        subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=tmp_path
        ) as child,
    ):
        watchdog = threading.Timer(60, child.kill)  # a hung child fails the test, not the suite
        watchdog.start()
        try:
            assert child.stdout is not None
            while len(acked) < ACKED:
                line = child.stdout.readline()
                if not line:
                    stderr.seek(0)
                    raise AssertionError(f"child died after {len(acked)}:\n{stderr.read()}")
                word, session_id = line.split()
                assert word == "committed"
                acked.append(session_id)
            child.send_signal(signal.SIGKILL)
            assert child.wait() == -signal.SIGKILL
        finally:
            watchdog.cancel()
            child.kill()  # no-op when it is dead already

    engine = create_engine(db_url, poolclass=NullPool)  # a fresh connection: recovery included
    try:
        with engine.connect() as conn:
            stored = set(conn.scalars(select(sessions.c.id)))
            per_session = dict(
                conn.execute(
                    select(meter_readings.c.session_id, func.count()).group_by(
                        meter_readings.c.session_id
                    )
                ).all()
            )
    finally:
        engine.dispose()
    missing = [s for s in acked if s not in stored]
    assert not missing, f"acknowledged but lost: {missing[:10]}"
    short = {s: n for s in acked if (n := per_session.get(s, 0)) != READINGS_PER_SESSION}
    assert not short, f"acknowledged readings lost: {short}"
