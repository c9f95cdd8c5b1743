"""The recorder: every state change and event, and the billing facts, in SQLite or PostgreSQL.

One writer thread owns the write connection and batches; a fact's caller resumes after its COMMIT.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Engine, delete, select

from hub.bus import EVENT_STATE_CHANGED, MATCH_ALL, Event
from hub.states import split_entity_id
from hub.storage.migrations import upgrade, upgrade_branch
from hub.storage.schema import (
    WRITER,
    create_recorder_engine,
    event_row,
    insert_rows,
    select_events,
    select_history,
    state_row,
)
from hub.storage.schema import events as events_table
from hub.storage.schema import states as states_table

if TYPE_CHECKING:
    from hub.clock import Timer
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

BATCH_ROWS = 1000  # commit once this many state/event rows are queued, interval or not
MAX_BACKLOG = 50_000  # queued items beyond which states/events are dropped (database down)
PURGE_CHUNK = 10_000  # rows per purge transaction, so facts never queue behind one huge DELETE
PURGE_AT = (4, 12)  # local hour and minute of the daily purge: after midnight, off the hour


@dataclass(slots=True)
class _Waiter:
    """A coroutine waiting for the next COMMIT; with `fn`, a fact that runs inside it."""

    future: asyncio.Future[Any]
    fn: Callable[[Connection], Any] | None = None
    result: Any = None
    error: BaseException | None = None


class _Stop(_Waiter):
    __slots__ = ()


@dataclass(slots=True)
class _Purge:
    cutoff: datetime
    future: asyncio.Future[Any]
    deleted: int = 0


_Item = Event | _Waiter | _Purge


class Recorder:
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
    ) -> None:
        self._hub = hub
        self.url = url
        self.purge_keep_days = purge_keep_days
        self.commit_interval = commit_interval
        self._exclude_domains = frozenset(exclude_domains)
        self._exclude_entities = frozenset(exclude_entities)
        self._exclude_event_types = frozenset(exclude_event_types)
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
        return self._loop.create_future()

    def _on_event(self, event: Event) -> None:
        if event.event_type in self._exclude_event_types:
            return
        if event.event_type == EVENT_STATE_CHANGED:
            entity_id = event.data.get("entity_id", "")
            if (
                entity_id in self._exclude_entities
                or split_entity_id(entity_id)[0] in self._exclude_domains
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

    # --- reads --------------------------------------------------------------------------
    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` on a read connection off the event loop (sees committed data only)."""
        engine, reader = self.engine, self._reader

        def run() -> T:
            with engine.connect() as conn:
                return fn(conn)

        return await asyncio.get_running_loop().run_in_executor(reader, run)

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

    # --- the writer thread --------------------------------------------------------------
    def _run(self) -> None:
        pending: list[Event] = []
        waiters: list[_Waiter] = []
        deadline = 0.0
        stopping = False
        try:
            while not stopping:
                # Real time is right here: this paces disk I/O, it says nothing about hub time.
                timeout = max(0.0, deadline - time.monotonic()) if pending else None
                try:
                    batch = [self._queue.get(timeout=timeout)]
                except queue.Empty:
                    self._commit(pending, waiters)
                    continue
                while len(batch) < BATCH_ROWS:  # group-commit whatever else is already waiting
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                for item in batch:
                    if isinstance(item, Event):
                        if not pending:
                            deadline = time.monotonic() + self.commit_interval
                        pending.append(item)
                    elif isinstance(item, _Waiter):
                        stopping = stopping or isinstance(item, _Stop)
                        if item.fn is not None:
                            self._run_fact(item)
                        waiters.append(item)
                    else:
                        self._commit(pending, waiters)
                        self._purge_step(item)
                if waiters or len(pending) >= BATCH_ROWS or stopping:
                    self._commit(pending, waiters)
        except BaseException:
            _LOGGER.critical("recorder writer thread died: nothing is recorded", exc_info=True)
            raise
        finally:
            self._running = False  # from now on write_fact raises instead of waiting forever
            self._close_connection(discard=False)
            self._fail_leftovers(waiters)

    def _connection(self) -> Connection:
        if self._conn is None:
            assert self._engine is not None
            self._conn = self._engine.connect().execution_options(**{WRITER: True})
        if not self._conn.in_transaction():
            self._conn.begin()
        return self._conn

    def _close_connection(self, *, discard: bool = True) -> None:
        # After a failure start afresh with a new connection: this one may be dead (PostgreSQL
        # restarted) or still inside a transaction its failed COMMIT left open (SQLITE_BUSY),
        # so it must not go back to the pool.
        if self._conn is not None:
            try:
                if discard:
                    self._conn.invalidate()
                self._conn.close()
            except Exception:
                _LOGGER.debug("closing the recorder connection failed", exc_info=True)
            self._conn = None

    def _run_fact(self, waiter: _Waiter) -> None:
        assert waiter.fn is not None
        try:
            with self._connection().begin_nested():
                waiter.result = waiter.fn(self._connection())
        except Exception as err:
            waiter.error = err

    def _commit(self, pending: list[Event], waiters: list[_Waiter]) -> None:
        if not pending and not waiters and not (self._conn and self._conn.in_transaction()):
            return
        try:
            conn = self._connection()
            if pending:
                self._insert(conn, pending)
            conn.commit()
        except Exception as err:
            _LOGGER.exception("recorder commit failed: %d states/events lost", len(pending))
            self._close_connection()
            for waiter in waiters:
                if waiter.error is None:
                    waiter.error = err
        pending.clear()
        for waiter in waiters:
            self._resolve(waiter.future, waiter.result, waiter.error)
        waiters.clear()

    def _insert(self, conn: Connection, pending: list[Event]) -> None:
        event_rows: list[dict[str, Any]] = []
        state_rows: list[dict[str, Any]] = []
        for ev in pending:
            try:
                event_rows.append(event_row(ev))
                if ev.event_type == EVENT_STATE_CHANGED:
                    state_rows.append(state_row(ev))
            except Exception:
                _LOGGER.warning(
                    "recorder skipped a malformed %s event", ev.event_type, exc_info=True
                )
        for table, rows in ((events_table, event_rows), (states_table, state_rows)):
            if rows:
                insert_rows(conn, table, rows)

    def _purge_step(self, job: _Purge) -> None:
        try:
            conn = self._connection()
            more = False
            for table, column in (
                (states_table, states_table.c.last_updated),
                (events_table, events_table.c.time_fired),
            ):
                ids = select(table.c.id).where(column < job.cutoff).limit(PURGE_CHUNK)
                count = conn.execute(delete(table).where(table.c.id.in_(ids))).rowcount
                job.deleted += count
                more = more or count >= PURGE_CHUNK
            conn.commit()
        except Exception as err:
            _LOGGER.exception("recorder purge failed")
            self._close_connection()
            self._resolve(job.future, None, err)
            return
        if more:
            self._queue.put(job)  # the rest after whatever queued meanwhile
        else:
            self._resolve(job.future, job.deleted, None)

    def _resolve(
        self, future: asyncio.Future[Any], result: Any, error: BaseException | None
    ) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(_set_future, future, result, error)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more

    def _fail_leftovers(self, waiters: list[_Waiter]) -> None:
        error = RuntimeError("recorder stopped")
        for waiter in waiters:
            self._resolve(waiter.future, waiter.result, waiter.error)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Purge):
                self._resolve(item.future, item.deleted, None)
            elif isinstance(item, _Waiter):
                self._resolve(item.future, None, error)


def _set_future(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _open_database(url: str) -> Engine:
    """Create the engine and migrate the schema to head (blocking: run it off the loop)."""
    engine = create_recorder_engine(url)
    try:
        upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine
