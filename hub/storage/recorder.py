"""The recorder: every state change and event, and the billing facts, in SQLite or PostgreSQL.

One writer thread owns the write connection and batches; a fact's caller resumes after its COMMIT.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Engine, Table

from hub.bus import EVENT_STATE_CHANGED, MATCH_ALL, Event
from hub.states import split_entity_id
from hub.storage.migrations import upgrade, upgrade_branch
from hub.storage.schema import (
    create_recorder_engine,
    select_events,
    select_history,
)
from hub.storage.writer import (
    WriterThread,
    _Deferred,
    _Item,
    _Purge,
    _Rows,
    _Stop,
    _Waiter,
)

if TYPE_CHECKING:
    from hub.clock import Timer
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

MAX_BACKLOG = 50_000  # queued items beyond which states/events are dropped (database down)
PURGE_AT = (4, 12)  # local hour and minute of the daily purge: after midnight, off the hour


class Recorder(WriterThread):
    """Assign before the hub starts (`hub.recorder = Recorder(hub, "sqlite:///evhub.db")`); the
    hub starts it first and stops it last.

    States and events are committed in batches every `commit_interval` real seconds (or 1000
    rows) and may be lost in a crash; `write_fact` is for what a bill depends on and is on disk
    before it returns. Reads use their own connections in a small thread pool. Datetimes go in
    and come out timezone-aware UTC. An excluded domain or entity has neither states rows nor
    state_changed events recorded.
    """

    def __init__(
        self,
        hub: Hub,
        url: str,
        *,
        purge_keep_days: int = 10,
        commit_interval: float = 1.0,
        exclude_domains: Iterable[str] = (),
        exclude_entities: Iterable[str] = (),
        exclude_event_types: Iterable[str] = (),
        attribute_interval: float = 0.0,
    ) -> None:
        self._hub = hub
        self.url = url
        self.purge_keep_days = purge_keep_days
        self.commit_interval = commit_interval
        self._exclude_domains = frozenset(exclude_domains)
        self._exclude_entities = frozenset(exclude_entities)
        self._exclude_event_types = frozenset(exclude_event_types)
        # An attribute-only change (a charger's power every 10 s) is recorded at most once per
        # `attribute_interval` seconds of hub time per entity; a change of the state itself
        # always is. Billing facts never pass through here.
        self.attribute_interval = attribute_interval
        self._last_row: dict[str, datetime] = {}
        self._engine: Engine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._conn: Connection | None = None  # owned by the writer thread
        self._running = False
        self._shedding = False
        self._unsubscribe: Callable[[], None] | None = None
        self._purge_timer: Timer | None = None
        self._stopping: asyncio.Future[None] | None = None
        self._in_flight = 0  # futures callers await from the writer thread and the readers
        self._not_busy: Callable[[], None] | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("recorder is not started")
        return self._engine

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._engine = await asyncio.to_thread(_open_database, self.url)
        self._reader = ThreadPoolExecutor(max_workers=2, thread_name_prefix="recorder-read")
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="recorder-writer", daemon=True)
        self._running = True
        self._thread.start()
        self._unsubscribe = self._hub.bus.listen(MATCH_ALL, self._on_event)
        add_busy = getattr(self._hub.clock, "add_busy", None)  # only a simulated clock has it
        self._not_busy = add_busy(lambda: self._in_flight > 0) if add_busy else None
        self._schedule_purge()
        _LOGGER.info("recorder writing to %s", self._engine.url.render_as_string())

    async def stop(self) -> None:
        """Commit everything queued, stop the writer, close every connection. Idempotent."""
        if self._thread is None or self._loop is None:
            return
        if self._stopping is not None:
            await asyncio.shield(self._stopping)
            return
        self._stopping = self._loop.create_future()
        try:
            self._running = False
            if self._unsubscribe is not None:
                self._unsubscribe()
            if self._not_busy is not None:
                self._not_busy()
            if self._purge_timer is not None:
                self._purge_timer.cancel()
            if self._thread.is_alive():
                stop = _Stop(self._loop.create_future())
                self._queue.put(stop)
                await stop.future
            await asyncio.to_thread(self._thread.join)
            if self._reader is not None:
                await asyncio.to_thread(self._reader.shutdown, True)
            if self._engine is not None:
                await asyncio.to_thread(self._engine.dispose)
        finally:
            self._thread = self._reader = self._engine = None
            self._stopping.set_result(None)
            self._stopping = None

    async def migrate(self, versions_dir: Path, branch: str) -> None:
        """Bring a plugin's own tables to the head of its Alembic branch (call from hub_setup).

        `versions_dir` is the plugin's `migrations/versions/` folder; its first revision carries
        `branch_labels = (branch,)`. Runs in a thread, in one transaction, and is a no-op when the
        branch is at head; see `hub.storage.migrations` for the rules a branch follows.
        """
        await asyncio.to_thread(upgrade_branch, self.engine, Path(versions_dir), branch)

    # --- writes -------------------------------------------------------------------------
    async def write_fact(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in the writer's next transaction; return its result once COMMIT returned.

        `fn` runs in a savepoint: if it raises, only its own changes roll back and the
        exception reaches the caller (after the batch's COMMIT, with the states queued before).
        `fn` must not commit, and should be idempotent: if the caller is cancelled, it still runs.
        """
        waiter = _Waiter(self._new_future(), fn)
        self._queue.put(waiter)
        result: T = await waiter.future
        return result

    async def write_rows(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """Insert rows durably: like write_fact, but rows of many callers share one INSERT.

        The cheap path for frequent facts (meter readings): no closure, no savepoint each.
        """
        waiter = _Rows(self._new_future(), table=table, rows=rows)
        self._queue.put(waiter)
        await waiter.future

    def queue_write(self, fn: Callable[[Connection], Any]) -> None:
        """Run `fn` in the writer's current batch, committed with the states and events.

        For history that may be lost in a crash (not for what a bill depends on: that is
        write_fact). A failing `fn` is logged and rolled back alone.
        """
        self._queue.put(_Deferred(fn))

    async def flush(self) -> None:
        """Commit everything queued so far."""
        waiter = _Waiter(self._new_future())
        self._queue.put(waiter)
        await waiter.future

    async def purge(self, keep_days: int | None = None) -> int:
        """Delete states and events older than keep_days (hub time); never sessions or readings."""
        days = self.purge_keep_days if keep_days is None else keep_days
        job = _Purge(self._hub.clock.now() - timedelta(days=days), self._new_future())
        self._queue.put(job)
        deleted: int = await job.future
        return deleted

    def _new_future(self) -> asyncio.Future[Any]:
        if not self._running or self._loop is None:
            raise RuntimeError("recorder is not running")
        return self._track(self._loop.create_future())

    def _track(self, future: asyncio.Future[T]) -> asyncio.Future[T]:
        """Count what callers await from the threads (a simulated clock waits for it)."""
        self._in_flight += 1

        def done(_: asyncio.Future[T]) -> None:
            self._in_flight -= 1

        future.add_done_callback(done)
        return future

    def _on_event(self, event: Event) -> None:
        if event.event_type in self._exclude_event_types:
            return
        if event.event_type == EVENT_STATE_CHANGED:
            entity_id = event.data.get("entity_id", "")
            if (
                entity_id in self._exclude_entities
                or split_entity_id(entity_id)[0] in self._exclude_domains
                or self._too_soon(entity_id, event)
            ):
                return
        if self._queue.qsize() >= MAX_BACKLOG:
            # The database is not keeping up (or is gone): keep the hub alive, lose history.
            if not self._shedding:
                _LOGGER.error("recorder backlog over %d: dropping states and events", MAX_BACKLOG)
                self._shedding = True
            return
        self._shedding = False
        self._queue.put(event)

    def _too_soon(self, entity_id: str, event: Event) -> bool:
        if self.attribute_interval <= 0:
            return False
        old, new = event.data.get("old_state"), event.data.get("new_state")
        now = event.time_fired
        if old is None or new is None or old.state != new.state or old.unit != new.unit:
            self._last_row[entity_id] = now
            return False
        last = self._last_row.get(entity_id)
        if last is not None and (now - last).total_seconds() < self.attribute_interval:
            return True
        self._last_row[entity_id] = now
        return False

    # --- reads --------------------------------------------------------------------------
    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` on a read connection off the event loop (sees committed data only)."""
        engine, reader = self.engine, self._reader

        def run() -> T:
            with engine.connect() as conn:
                return fn(conn)

        return await self._track(asyncio.get_running_loop().run_in_executor(reader, run))

    async def history(
        self, entity_id: str, start: datetime, end: datetime | None = None
    ) -> list[dict[str, Any]]:
        """States of one entity with start <= last_updated < end, oldest first."""
        return await self.read(lambda conn: select_history(conn, entity_id, start, end))

    async def events(
        self,
        event_type: str | None,
        start: datetime,
        end: datetime | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Events (of one type, or all) with start <= time_fired < end, oldest first."""
        return await self.read(lambda conn: select_events(conn, event_type, start, end, limit))

    # --- purge schedule -----------------------------------------------------------------
    def _schedule_purge(self) -> None:
        now = self._hub.now_local()
        run = now.replace(hour=PURGE_AT[0], minute=PURGE_AT[1], second=0, microsecond=0)
        if run <= now:
            run += timedelta(days=1)
        self._purge_timer = self._hub.clock.call_at(run.astimezone(UTC), self._on_purge_timer)

    def _on_purge_timer(self) -> None:
        self._schedule_purge()  # first, so a failing purge never ends the schedule
        self._hub.create_task(self._scheduled_purge(), "recorder purge")

    async def _scheduled_purge(self) -> None:
        try:
            deleted = await self.purge()
        except Exception:
            _LOGGER.exception("recorder purge failed")
        else:
            _LOGGER.info("recorder purge removed %d rows", deleted)


def _open_database(url: str) -> Engine:
    """Create the engine and migrate the schema to head (blocking: run it off the loop)."""
    engine = create_recorder_engine(url)
    try:
        upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine
