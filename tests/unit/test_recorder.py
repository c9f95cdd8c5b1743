"""The recorder and the session store, on SQLite and on a real PostgreSQL (the `db_url` fixture).

Time is the hub's SimClock; tests wait for the database only by awaiting flush() or a fact.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, insert, inspect, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.pool import NullPool

from hub.bus import Context
from hub.charging.session import MeterReading, Session, SessionStatus
from hub.clock import SimClock
from hub.core import Hub
from hub.storage.migrations import HERE as MIGRATIONS
from hub.storage.recorder import Recorder
from hub.storage.schema import (
    SCHEMA_VERSION,
    TABLES,
    create_recorder_engine,
    metadata,
    sessions,
)
from hub.storage.sessions import SessionStore

DAY = 86400.0


@pytest.fixture
async def recorder(hub: Hub, db_url: str) -> AsyncIterator[Recorder]:
    rec = Recorder(
        hub,
        db_url,
        exclude_domains=["camera"],
        exclude_entities=["sensor.secret"],
        exclude_event_types=["noisy"],
    )
    await rec.start()
    hub.recorder = rec  # the hub stops it too, as in production
    yield rec
    await rec.stop()


@pytest.fixture
def other(db_url: str) -> Iterator[Engine]:
    """A separate engine: sees only what the recorder has committed."""
    engine = create_engine(db_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def count(engine: Engine, table: str, where: str = "1=1") -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table} WHERE {where}")).scalar_one())


def a_session(n: int, at: datetime, **kw: object) -> Session:
    fields: dict[str, object] = {"id_tag": "RFID-1", "meter_start_wh": 1000.0 * n} | kw
    return Session(f"s{n}", "depot_a_01", 1, f"tx{n}", at, **fields)  # type: ignore[arg-type]


# --- states and events ----------------------------------------------------------------------


async def test_state_changes_and_events_are_recorded(
    hub: Hub, clock: SimClock, recorder: Recorder
) -> None:
    start = hub.now()
    ctx = Context(user_id="manager")
    hub.states.set("sensor.site_power", 42.5, {"phases": 3, "since": start}, unit="kW", context=ctx)
    hub.states.set("camera.gate", "idle")  # excluded domain
    hub.states.set("sensor.secret", 1)  # excluded entity
    hub.bus.fire("noisy", {"x": 1})  # excluded event type
    hub.bus.fire("ocpp_boot", {"charger": "depot_a_01", "at": start, "ctx": ctx})
    await clock.advance(60)
    hub.states.set("sensor.site_power", 50.0, unit="kW")
    hub.states.set("charger.depot_a_01_1", "charging")
    hub.states.remove("charger.depot_a_01_1")
    await recorder.flush()

    history = await recorder.history("sensor.site_power", start)
    assert [(h["state"], h["unit"]) for h in history] == [(42.5, "kW"), (50.0, "kW")]
    assert history[0]["attributes"] == {"phases": 3, "since": start.isoformat()}
    assert history[0]["context_id"] == ctx.id
    assert history[1]["last_updated"] == start + timedelta(seconds=60)
    assert history[1]["last_updated"].tzinfo is not None
    assert await recorder.history("sensor.site_power", start, start + timedelta(seconds=1)) == [
        history[0]
    ]
    removed = await recorder.history("charger.depot_a_01_1", start)
    assert [(h["state"], h["removed"]) for h in removed] == [("charging", False), (None, True)]
    assert await recorder.history("camera.gate", start) == []
    assert await recorder.history("sensor.secret", start) == []

    recorded = await recorder.events(None, start)
    types = [e["event_type"] for e in recorded]
    assert "noisy" not in types
    assert "state_changed" not in types  # state changes are states rows, not events again
    (boot,) = await recorder.events("ocpp_boot", start)
    assert boot["data"] == {"charger": "depot_a_01", "at": start.isoformat(), "ctx": ctx.as_dict()}
    assert boot["context"]["id"] != ctx.id
    assert boot["time_fired"] == start
    hub.bus.fire("ocpp_boot", {"charger": "depot_a_02"})
    await recorder.flush()
    assert len(await recorder.events(None, start, limit=1)) == 1
    assert len(await recorder.events(None, start)) == 2


async def test_unstorable_values_cost_only_their_own_row(hub: Hub, recorder: Recorder) -> None:
    start = hub.now()
    loop: list[object] = []
    loop.append(loop)  # JSON can't encode a cycle
    hub.states.set("sensor.odd", "x", {"d": Decimal("1.5"), "s": {2}, "o": object(), "st": None})
    hub.states.set("sensor.cyclic", 1, {"loop": loop})
    hub.states.set("sensor.fine", 2)
    await recorder.flush()

    (odd,) = await recorder.history("sensor.odd", start)
    assert odd["attributes"]["d"] == 1.5 and odd["attributes"]["s"] == [2]
    assert odd["attributes"]["o"].startswith("<object object")
    assert await recorder.history("sensor.cyclic", start) == []
    assert [h["state"] for h in await recorder.history("sensor.fine", start)] == [2]


async def test_scheduled_purge_follows_the_sim_clock_and_keeps_billing_facts(
    hub: Hub, clock: SimClock, recorder: Recorder
) -> None:
    start = hub.now()
    store = SessionStore(recorder)
    hub.states.set("sensor.site_power", 10.0)
    hub.bus.fire("ocpp_boot", {"charger": "depot_a_01"})
    await store.start_session(a_session(1, start))
    await store.add_readings(
        [MeterReading("depot_a_01", 1, start, "Power.Active.Import", 7, "kW", session_id="s1")]
    )

    await clock.advance(9 * DAY)
    await hub.block_till_done()
    assert len(await recorder.history("sensor.site_power", start)) == 1  # only 9 days old
    assert len(await recorder.events("ocpp_boot", start)) == 1

    await clock.advance(2 * DAY)  # the daily purge at 04:12 now finds it 10+ days old
    await hub.block_till_done()
    hub.states.set("sensor.site_power", 11.0)
    await recorder.flush()
    assert [h["state"] for h in await recorder.history("sensor.site_power", start)] == [11.0]
    assert await recorder.events("ocpp_boot", start) == []
    assert await store.get("s1") is not None  # billing facts are the billing plugin's to purge
    assert [r.value for r in await store.readings("s1")] == [7]


async def test_purge_returns_rows_deleted(hub: Hub, clock: SimClock, recorder: Recorder) -> None:
    hub.states.set("sensor.a", 1)  # one states row
    hub.bus.fire("ocpp_boot", {})  # one events row
    await clock.advance(3 * DAY)
    hub.states.set("sensor.a", 2)
    await recorder.flush()
    # hub_start/hub_started came before the recorder existed; only these two are old.
    assert await recorder.purge(keep_days=2) == 2
    assert await recorder.purge(keep_days=2) == 0
    history = await recorder.history("sensor.a", hub.now() - timedelta(days=5))
    assert [h["state"] for h in history] == [2]


# --- migrations -----------------------------------------------------------------------------


async def test_fresh_database_is_migrated_to_exactly_the_schema(
    hub: Hub, db_url: str, other: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="alembic")
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head == SCHEMA_VERSION
    for upgrades in (1, 0):  # the second start finds the schema at head: a no-op
        caplog.clear()
        rec = Recorder(hub, db_url)
        await rec.start()
        await rec.start()  # starting a running recorder does nothing
        await rec.stop()
        assert sum("Running upgrade" in m for m in caplog.messages) == upgrades

        with other.connect() as conn:
            assert set(inspect(conn).get_table_names()) == {"alembic_version", *TABLES}
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [(head,)]
            # What the migration built is what schema.py declares (types, indexes, constraints).
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_sqlite_is_set_up_for_durability(tmp_path: Path) -> None:
    engine = create_recorder_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        pragmas = {
            p: conn.exec_driver_sql(f"PRAGMA {p}").scalar()
            for p in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }
    engine.dispose()
    assert pragmas == dict(journal_mode="wal", synchronous=2, foreign_keys=1, busy_timeout=15000)
    with pytest.raises(ValueError, match="SQLite file"):
        create_recorder_engine("sqlite://")


# --- facts ----------------------------------------------------------------------------------


def _insert_session(conn: Connection, n: int, at: datetime) -> None:
    conn.execute(
        insert(sessions).values(
            id=f"s{n}",
            charger_id="depot_a_01",
            connector=1,
            transaction_id=f"tx{n}",
            started_at=at,
            status="active",
            data={},
        )
    )


async def test_write_fact_returns_only_after_commit(
    hub: Hub, recorder: Recorder, other: Engine
) -> None:
    seen_inside: list[int] = []

    def fact(conn: Connection) -> str:
        _insert_session(conn, 1, hub.now())
        seen_inside.append(count(other, "sessions"))  # another connection: not committed yet
        return "done"

    assert await recorder.write_fact(fact) == "done"
    assert seen_inside == [0]
    assert count(other, "sessions", "id = 's1'") == 1  # right after the await: committed

    # Hold the writer thread at its next COMMIT: the fact has run, its caller must still wait.
    at_commit, release = threading.Event(), threading.Event()

    def hold(conn: Connection) -> None:  # runs in the writer thread just before COMMIT
        at_commit.set()
        release.wait(10)

    event.listen(recorder.engine, "commit", hold, once=True)
    waiting = asyncio.ensure_future(
        recorder.write_fact(lambda conn: _insert_session(conn, 2, hub.now()))
    )
    try:
        assert await asyncio.to_thread(at_commit.wait, 10)
        for _ in range(5):
            await asyncio.sleep(0)  # run whatever the writer may (wrongly) have scheduled already
        assert not waiting.done()
        assert count(other, "sessions") == 1
    finally:
        release.set()
    await waiting
    assert count(other, "sessions") == 2


async def test_failing_fact_raises_and_queued_states_still_commit(
    hub: Hub, recorder: Recorder, other: Engine
) -> None:
    hub.states.set("sensor.a", 1)
    hub.states.set("sensor.b", 2)

    def bad(conn: Connection) -> None:
        _insert_session(conn, 1, hub.now())
        raise ValueError("charger sent nonsense")

    with pytest.raises(ValueError, match="nonsense"):
        await recorder.write_fact(bad)
    # No flush: the failed fact's batch committed the queued states, and none of the fact.
    assert count(other, "states", "entity_id IN ('sensor.a', 'sensor.b')") == 2
    assert count(other, "sessions") == 0

    # A database error inside one fact (a duplicate key) doesn't poison the facts around it.
    await recorder.write_fact(lambda conn: _insert_session(conn, 2, hub.now()))
    results = await asyncio.gather(
        recorder.write_fact(lambda conn: _insert_session(conn, 2, hub.now())),
        recorder.write_fact(lambda conn: _insert_session(conn, 3, hub.now())),
        return_exceptions=True,
    )
    assert isinstance(results[0], IntegrityError) and results[1] is None
    assert count(other, "sessions") == 2


async def test_a_failed_commit_is_reported_and_the_writer_carries_on(
    hub: Hub, recorder: Recorder, other: Engine
) -> None:
    await recorder.write_fact(lambda conn: _insert_session(conn, 1, hub.now()))
    if other.dialect.name == "postgresql":  # the server drops the writer's connection
        with other.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        with pytest.raises(OperationalError, match="terminat"):
            await recorder.write_fact(lambda conn: _insert_session(conn, 2, hub.now()))

    def disk_full(conn: Connection) -> None:
        raise OSError("disk full")

    event.listen(recorder.engine, "commit", disk_full, once=True)
    hub.states.set("sensor.lost", 1)
    with pytest.raises(OSError, match="disk full"):  # so the caller does not acknowledge
        await recorder.write_fact(lambda conn: _insert_session(conn, 2, hub.now()))
    assert count(other, "sessions") == 1

    await recorder.write_fact(lambda conn: _insert_session(conn, 2, hub.now()))  # the retry
    hub.states.set("sensor.kept", 2)
    await recorder.flush()
    assert count(other, "sessions") == 2
    assert count(other, "states", "entity_id = 'sensor.kept'") == 1
    assert [h["state"] for h in await recorder.history("sensor.kept", hub.now())] == [2]


async def test_stop_commits_what_is_queued_and_is_idempotent(
    hub: Hub, recorder: Recorder, other: Engine
) -> None:
    hub.states.set("sensor.a", 1)
    await asyncio.gather(recorder.stop(), recorder.stop())
    await recorder.stop()
    assert count(other, "states", "entity_id = 'sensor.a'") == 1
    with pytest.raises(RuntimeError, match="not running"):
        await recorder.write_fact(lambda conn: None)


# --- sessions -------------------------------------------------------------------------------


async def test_session_start_retries_return_the_first_session(hub: Hub, recorder: Recorder) -> None:
    store = SessionStore(recorder)
    first, created = await store.start_session(a_session(1, hub.now(), idempotency_key="k1"))
    assert created and first.status is SessionStatus.ACTIVE and first.started_at == hub.now()

    # The same request again (a retried RemoteStart), and the charger's own retry.
    again, created_again = await store.start_session(a_session(2, hub.now(), idempotency_key="k1"))
    assert (again, created_again) == (first, False)
    same_tx = Session("s9", "depot_a_01", 1, "tx1", hub.now())
    assert await store.start_session(same_tx) == (first, False)

    assert await store.list() == [first]
    assert await store.find("depot_a_01", "tx1") == first
    assert await store.active("depot_a_01") == [first]
    assert await store.active("elsewhere") == []
    assert await store.get("s2") is None


async def test_stop_session_is_idempotent(hub: Hub, clock: SimClock, recorder: Recorder) -> None:
    store = SessionStore(recorder)
    started = hub.now()
    await store.start_session(a_session(1, started, data={"plan": "fleet"}))
    await clock.advance(3600)

    stopped = await store.stop_session("s1", hub.now(), 12_345.0, "EVDisconnected")
    assert stopped.status is SessionStatus.COMPLETED
    assert stopped.stopped_at == started + timedelta(hours=1)
    assert (stopped.meter_stop_wh, stopped.stop_reason) == (12_345.0, "EVDisconnected")
    assert stopped.data == {"plan": "fleet"}
    retried = await store.stop_session("s1", hub.now() + timedelta(minutes=5), 99.0, "Other")
    assert retried == stopped
    assert await store.active() == []
    with pytest.raises(KeyError):
        await store.stop_session("nope", hub.now(), None, None)


async def test_readings_roundtrip_with_aware_datetimes(hub: Hub, recorder: Recorder) -> None:
    store = SessionStore(recorder)
    await store.start_session(a_session(1, hub.now()))
    local = timezone(timedelta(hours=2))
    t0 = hub.now().astimezone(local)
    energy = "Energy.Active.Import.Register"
    later = MeterReading("depot_a_01", 1, t0 + timedelta(minutes=1), energy, 1500.5, "Wh", "s1",
                         "L1", "Outlet", "Sample.Periodic", "OCMF|{...}")  # fmt: skip
    begin = MeterReading("depot_a_01", 1, t0, energy, 1000, "Wh", "s1", context="Transaction.Begin")
    readings = [later, begin]
    await store.add_readings(readings)

    back = await store.readings("s1")
    assert back == [begin, later]  # in time order, same instants, every field
    assert all(r.timestamp.utcoffset() == timedelta(0) for r in back)

    with pytest.raises(ValueError, match="naive"):
        await store.add_readings([MeterReading("depot_a_01", 1, datetime(2026, 3, 2), "V", 1, "V")])
    orphan = MeterReading("depot_a_01", 1, t0, "Voltage", 230.0, "V", session_id="missing")
    with pytest.raises(IntegrityError):  # readings belong to a known session (foreign key)
        await store.add_readings([orphan])


async def test_list_filters_newest_first(hub: Hub, recorder: Recorder) -> None:
    store = SessionStore(recorder)
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    for n in range(5):
        tag = "RFID-1" if n % 2 == 0 else "RFID-2"
        await store.start_session(a_session(n, t0 + timedelta(hours=n), id_tag=tag))
    ids = [s.id for s in await store.list()]
    assert ids == ["s4", "s3", "s2", "s1", "s0"]
    assert [s.id for s in await store.list(id_tag="RFID-2")] == ["s3", "s1"]
    window = await store.list(start=t0 + timedelta(hours=1), end=t0 + timedelta(hours=3))
    assert [s.id for s in window] == ["s2", "s1"]
    assert [s.id for s in await store.list(limit=2)] == ["s4", "s3"]
    assert await store.list(charger_id="other") == []


async def test_attribute_only_changes_are_thinned_but_state_changes_never(
    hub: Hub, clock: SimClock, db_url: str
) -> None:
    rec = Recorder(hub, db_url, attribute_interval=60)
    await rec.start()
    try:
        start = hub.now()
        for second in range(0, 150, 10):  # power every 10 s for 150 s
            hub.states.set("charger.bay_1", "charging", {"power_w": 1000 + second})
            await clock.advance(10)
        hub.states.set("charger.bay_1", "finishing", {"power_w": 0})  # the state itself changes
        await rec.flush()
        rows = await rec.history("charger.bay_1", start)
        assert [(r["state"], r["attributes"]["power_w"]) for r in rows] == [
            ("charging", 1000), ("charging", 1060), ("charging", 1120), ("finishing", 0),
        ]  # fmt: skip
    finally:
        await rec.stop()
