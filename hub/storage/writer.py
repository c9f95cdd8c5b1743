"""The recorder's writer thread: one connection, group commits, durable facts and rows.

A mixin of Recorder (it uses the recorder's queue, engine and loop); kept apart to stay readable.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, delete, insert, select

from hub.bus import EVENT_STATE_CHANGED, Event
from hub.storage.schema import (
    WRITER,
    event_row,
    insert_rows,
    state_row,
)
from hub.storage.schema import events as events_table
from hub.storage.schema import states as states_table

_LOGGER = logging.getLogger("hub.storage.recorder")

BATCH_ROWS = 1000  # commit once this many state/event rows are queued, interval or not
PURGE_CHUNK = 10_000  # rows per purge transaction, so facts never queue behind one huge DELETE


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
class _Rows(_Waiter):
    """Durable rows for one table: the writer inserts all queued rows of a table at once."""

    table: Table | None = None
    rows: list[dict[str, Any]] | None = None


@dataclass(slots=True)
class _Deferred:
    """A write that rides with the next batch commit; nobody waits for it."""

    fn: Callable[[Connection], Any]


@dataclass(slots=True)
class _Purge:
    cutoff: datetime
    future: asyncio.Future[Any]
    deleted: int = 0


_Item = Event | _Waiter | _Purge | _Deferred


class WriterThread:
    """The loop of the recorder's one writer thread and what it does to the database."""

    commit_interval: float
    _engine: Engine | None
    _loop: asyncio.AbstractEventLoop | None
    _queue: queue.SimpleQueue[_Item]
    _conn: Connection | None
    _running: bool

    def _run(self) -> None:
        pending: list[Event] = []
        waiters: list[_Waiter] = []
        rows: list[_Rows] = []
        deadline = 0.0
        stopping = False
        deferred = False  # a deferred write is in the open transaction, not yet committed
        try:
            while not stopping:
                # Real time is right here: this paces disk I/O, it says nothing about hub time.
                dirty = pending or deferred
                timeout = max(0.0, deadline - time.monotonic()) if dirty else None
                try:
                    batch = [self._queue.get(timeout=timeout)]
                except queue.Empty:
                    self._commit(pending, waiters)
                    deferred = False
                    continue
                while len(batch) < BATCH_ROWS:  # group-commit whatever else is already waiting
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                for item in batch:
                    if isinstance(item, Event):
                        if not pending and not deferred:
                            deadline = time.monotonic() + self.commit_interval
                        pending.append(item)
                    elif isinstance(item, _Deferred):
                        if not pending and not deferred:
                            deadline = time.monotonic() + self.commit_interval
                        self._run_deferred(item)
                        deferred = True
                    elif isinstance(item, _Rows):
                        rows.append(item)
                        waiters.append(item)
                    elif isinstance(item, _Waiter):
                        stopping = stopping or isinstance(item, _Stop)
                        if item.fn is not None:
                            self._insert_rows(rows)  # a fact may depend on rows queued before it
                            self._run_fact(item)
                        waiters.append(item)
                    else:
                        self._commit(pending, waiters)
                        self._purge_step(item)
                if waiters or len(pending) >= BATCH_ROWS or stopping:
                    self._insert_rows(rows)
                    self._commit(pending, waiters)
                    deferred = False
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

    def _insert_rows(self, queued: list[_Rows]) -> None:
        """One INSERT per table for every queued row; on failure, each caller's rows alone."""
        if not queued:
            return
        by_table: dict[Table, list[_Rows]] = {}
        for item in queued:
            assert item.table is not None
            by_table.setdefault(item.table, []).append(item)
        queued.clear()
        conn = self._connection()
        for table, items in by_table.items():
            try:
                with conn.begin_nested():
                    conn.execute(insert(table), [r for item in items for r in item.rows or ()])
                continue
            except Exception:
                _LOGGER.debug("batched insert into %s failed; row by caller", table.name)
            for item in items:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(table), item.rows)
                except Exception as err:
                    item.error = err

    def _run_deferred(self, item: _Deferred) -> None:
        try:
            with self._connection().begin_nested():
                item.fn(self._connection())
        except Exception:
            _LOGGER.warning("recorder: a deferred write failed", exc_info=True)

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
        if waiters:
            done = [(w.future, w.result, w.error) for w in waiters]
            waiters.clear()
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(_set_futures, done)
            except RuntimeError:
                pass  # the loop is closed: nobody is waiting any more

    def _insert(self, conn: Connection, pending: list[Event]) -> None:
        event_rows: list[dict[str, Any]] = []
        state_rows: list[dict[str, Any]] = []
        for ev in pending:
            try:
                # A state change is a states row; repeating it as an events row doubles the
                # writes of the busiest event for nothing (Home Assistant learned the same).
                if ev.event_type == EVENT_STATE_CHANGED:
                    state_rows.append(state_row(ev))
                else:
                    event_rows.append(event_row(ev))
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


def _set_futures(done: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in done:
        _set_future(future, result, error)


def _set_future(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
