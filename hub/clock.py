"""The hub's only source of time: a real clock for production, a simulated one for tests/planning.

Every module asks `hub.clock` for now() and for timers, so a simulated day runs in milliseconds.

    >>> import asyncio
    >>> async def demo() -> list[str]:
    ...     clock = SimClock(start=datetime(2026, 1, 1, tzinfo=UTC))
    ...     fired: list[str] = []
    ...     clock.call_later(3600, lambda: fired.append(clock.now().isoformat()))
    ...     await clock.advance(7200)
    ...     return fired
    >>> asyncio.run(demo())
    ['2026-01-01T01:00:00+00:00']
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

__all__ = ["Clock", "RealClock", "SimClock", "Timer", "with_timeout"]

_LOGGER = logging.getLogger(__name__)

QUIESCE_LIMIT = 5.0  # s of real time a simulated clock waits for threads before moving on anyway


class Timer:
    """A scheduled callback; `cancel()` is idempotent and safe after it fired."""

    __slots__ = ("_cancelled", "_handle", "callback", "when")

    def __init__(self, when: datetime, callback: Callable[[], Any]) -> None:
        self.when = when
        self.callback = callback
        self._cancelled = False
        self._handle: asyncio.TimerHandle | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        self._cancelled = True
        if self._handle is not None:
            self._handle.cancel()


class Clock(Protocol):
    """What the hub needs of time. All datetimes are timezone-aware UTC."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    def call_at(self, when: datetime, callback: Callable[[], Any]) -> Timer: ...

    def call_later(self, delay: float, callback: Callable[[], Any]) -> Timer: ...

    async def sleep(self, seconds: float) -> None: ...


def _utc(when: datetime) -> datetime:
    """Timers and targets must be timezone-aware; the clock keeps everything in UTC."""
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when.isoformat()}: the clock needs timezone-aware times")
    return when.astimezone(UTC)


def _run_timer(timer: Timer) -> None:
    if not timer.cancelled:
        timer._cancelled = True  # a fired timer is spent; cancel() afterwards is a no-op
        try:
            timer.callback()
        except Exception:
            # As asyncio does for a failing call_later: log it; the clock and other timers go on.
            _LOGGER.exception("timer callback %r failed", timer.callback)


class RealClock:
    """Wall-clock time; timers ride on the asyncio loop's monotonic scheduler."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def call_at(self, when: datetime, callback: Callable[[], Any]) -> Timer:
        when = _utc(when)
        return self.call_later((when - self.now()).total_seconds(), callback, _when=when)

    def call_later(
        self, delay: float, callback: Callable[[], Any], *, _when: datetime | None = None
    ) -> Timer:
        timer = Timer(_when or self.now() + timedelta(seconds=delay), callback)
        loop = asyncio.get_running_loop()
        timer._handle = loop.call_later(max(0.0, delay), _run_timer, timer)
        return timer

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class SimClock:
    """Deterministic virtual time that moves only when told to.

    `advance(seconds)` fires due timers in time order (ties in scheduling order), moving now() to
    each timer's time and letting the event loop settle between them, so work a timer starts sees
    the time at which it was due. Nothing waits in real time, except for work registered with
    `add_busy` (the recorder's commits and reads): time does not run ahead of what the hub is
    still waiting for.
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("SimClock start must be timezone-aware")
        self._now = start.astimezone(UTC)
        self._origin = self._now
        self._queue: list[tuple[datetime, int, Timer]] = []
        self._seq = itertools.count()
        self._busy: list[Callable[[], bool]] = []

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return (self._now - self._origin).total_seconds()

    def call_at(self, when: datetime, callback: Callable[[], Any]) -> Timer:
        timer = Timer(max(_utc(when), self._now), callback)
        heapq.heappush(self._queue, (timer.when, next(self._seq), timer))
        return timer

    def call_later(self, delay: float, callback: Callable[[], Any]) -> Timer:
        return self.call_at(self._now + timedelta(seconds=max(0.0, delay)), callback)

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self.call_later(seconds, lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            timer.cancel()

    @property
    def pending(self) -> int:
        """Timers still scheduled (cancelled ones excluded)."""
        return sum(1 for _, _, t in self._queue if not t.cancelled)

    def next_due(self) -> datetime | None:
        while self._queue and self._queue[0][2].cancelled:
            heapq.heappop(self._queue)
        return self._queue[0][0] if self._queue else None

    def add_busy(self, probe: Callable[[], bool]) -> Callable[[], None]:
        """Register work done in real time (a commit in a thread the hub awaits before it
        answers a charger): time does not move while `probe()` is true. Returns its remover."""
        self._busy.append(probe)
        return lambda: self._busy.remove(probe) if probe in self._busy else None

    async def _quiesce(self) -> None:
        # A thread's work takes real time however fast simulated time runs: moving on meanwhile
        # would expire a call whose answer is only waiting for that commit.
        deadline = time.monotonic() + QUIESCE_LIMIT
        while any(probe() for probe in self._busy) and time.monotonic() < deadline:
            await asyncio.sleep(0.0005)
            await _settle()

    async def advance(self, seconds: float) -> None:
        await self.advance_to(self._now + timedelta(seconds=seconds))

    async def advance_to(self, target: datetime) -> None:
        """Move time forward to `target`, firing every timer due on the way."""
        target = _utc(target)
        await _settle()
        await self._quiesce()
        while True:
            due = self.next_due()
            if due is None or due > target:
                break
            self._now = due
            # Every timer due at this instant fires before the loop settles once: a thousand
            # simulated chargers sampling on the same tick cost one settle, not a thousand.
            while self._queue and self._queue[0][0] == due:
                _run_timer(heapq.heappop(self._queue)[2])
            await _settle()
            await self._quiesce()
        self._now = max(self._now, target)
        await _settle()
        await self._quiesce()


async def _settle(rounds: int = 8) -> None:
    """Let ready callbacks and the tasks they wake run before time moves on."""
    for _ in range(rounds):
        await asyncio.sleep(0)


T = TypeVar("T")


async def with_timeout(clock: Clock, coro: Coroutine[Any, Any, T], seconds: float) -> T:
    """Await `coro`, cancelling it after `seconds` of hub time (TimeoutError)."""
    task = asyncio.ensure_future(coro)
    expired = False

    def expire() -> None:
        nonlocal expired
        if not task.done():
            expired = True
            task.cancel()

    timer = clock.call_later(seconds, expire)
    try:
        return await task
    except asyncio.CancelledError:
        if expired:
            raise TimeoutError(f"no answer within {seconds:g} s") from None
        raise
    finally:
        timer.cancel()
        if not task.done():
            task.cancel()
