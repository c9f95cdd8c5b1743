"""The hub's clocks: a simulated day runs in milliseconds, and the real clock really fires."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from hub.clock import RealClock, SimClock, Timer

START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


async def test_timers_fire_in_time_order_at_their_due_time(clock: SimClock) -> None:
    """Given timers at +30, +10 and +20 min, advancing an hour fires them in time order, each
    seeing the time it was due."""
    fired: list[tuple[str, datetime]] = []
    for name, minutes in (("c", 30), ("a", 10), ("b", 20)):
        clock.call_later(minutes * 60, lambda n=name: fired.append((n, clock.now())))

    await clock.advance(3600)

    assert fired == [("a", at(10)), ("b", at(20)), ("c", at(30))]
    assert clock.now() == at(60)
    assert clock.pending == 0


async def test_ties_fire_in_scheduling_order(clock: SimClock) -> None:
    fired: list[int] = []
    for n in range(5):
        clock.call_at(at(5), lambda n=n: fired.append(n))
    clock.call_later(300, lambda: fired.append(5))  # same instant via call_later

    await clock.advance(300)

    assert fired == [0, 1, 2, 3, 4, 5]


async def test_nothing_fires_before_its_time(clock: SimClock) -> None:
    fired: list[str] = []
    clock.call_later(60, lambda: fired.append("due"))

    await clock.advance(59.999)
    assert fired == []
    assert clock.next_due() == at(1)

    await clock.advance(0.001)
    assert fired == ["due"]


async def test_past_or_negative_timers_fire_at_now(clock: SimClock) -> None:
    fired: list[datetime] = []
    clock.call_at(START - timedelta(hours=1), lambda: fired.append(clock.now()))
    clock.call_later(-5, lambda: fired.append(clock.now()))

    await clock.advance(0)

    assert fired == [START, START]


async def test_cancelled_timer_never_fires_and_cancel_is_idempotent(clock: SimClock) -> None:
    fired: list[str] = []
    keep = clock.call_later(10, lambda: fired.append("keep"))
    drop = clock.call_later(5, lambda: fired.append("drop"))

    drop.cancel()
    drop.cancel()
    assert drop.cancelled
    assert clock.pending == 1
    await clock.advance(60)

    assert fired == ["keep"]
    assert keep.cancelled  # spent: cancelling after it fired is a harmless no-op
    keep.cancel()


async def test_timer_cancelled_by_an_earlier_timer_does_not_fire(clock: SimClock) -> None:
    fired: list[str] = []
    later: Timer = clock.call_later(20, lambda: fired.append("later"))
    clock.call_later(10, later.cancel)

    await clock.advance(30)

    assert fired == []


async def test_sleep_returns_when_sim_time_reaches_it(clock: SimClock) -> None:
    """Given a task sleeping 15 simulated minutes, it wakes exactly when advance() gets there."""
    woke: list[datetime] = []

    async def poller() -> None:
        await clock.sleep(900)
        woke.append(clock.now())

    task = asyncio.ensure_future(poller())
    await clock.advance(899)
    assert woke == [] and not task.done()

    await clock.advance(1)

    assert task.done()
    assert woke == [at(15)]


async def test_a_loop_of_sleeps_runs_once_per_period(clock: SimClock) -> None:
    ticks: list[datetime] = []

    async def poll_every_minute() -> None:
        while True:
            ticks.append(clock.now())
            await clock.sleep(60)

    task = asyncio.ensure_future(poll_every_minute())
    await clock.advance(10 * 60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert ticks == [at(m) for m in range(11)]
    assert clock.pending == 0  # the cancelled sleep took its timer with it


async def test_advance_to_moves_to_target_and_never_backwards(clock: SimClock) -> None:
    fired: list[datetime] = []
    clock.call_at(at(90), lambda: fired.append(clock.now()))

    await clock.advance_to(at(120))
    assert fired == [at(90)]
    assert clock.now() == at(120)
    assert clock.monotonic() == 7200.0

    await clock.advance_to(at(60))
    assert clock.now() == at(120)


async def test_timers_scheduled_by_timers_within_the_window_fire_in_same_advance(
    clock: SimClock,
) -> None:
    """Given a retry that re-arms itself 10 s later, one advance of a minute runs the chain."""
    fired: list[datetime] = []

    def retry() -> None:
        fired.append(clock.now())
        if len(fired) < 4:
            clock.call_later(10, retry)

    clock.call_later(10, retry)
    clock.call_later(45, lambda: clock.call_later(0, lambda: fired.append(clock.now())))
    await clock.advance(60)

    expected = [START + timedelta(seconds=s) for s in (10, 20, 30, 40, 45)]
    assert fired == expected


async def test_a_timer_scheduled_beyond_the_window_waits(clock: SimClock) -> None:
    fired: list[str] = []
    clock.call_later(50, lambda: clock.call_later(20, lambda: fired.append("late")))

    await clock.advance(60)
    assert fired == []
    assert clock.next_due() == START + timedelta(seconds=70)

    await clock.advance(10)
    assert fired == ["late"]


async def test_work_started_by_a_timer_sees_the_due_time(clock: SimClock) -> None:
    seen: list[datetime] = []

    async def job() -> None:
        await asyncio.sleep(0)
        seen.append(clock.now())

    clock.call_later(30, lambda: asyncio.ensure_future(job()))
    await clock.advance(3600)

    assert seen == [START + timedelta(seconds=30)]


async def test_a_simulated_day_of_500_timers_runs_in_well_under_a_second(
    clock: SimClock,
) -> None:
    """Given a 3-minute meter poll re-arming itself and 20 random one-shots, one simulated day
    (500 timers) takes well under a second of real time."""
    rng = random.Random(42)
    polls: list[datetime] = []
    one_shots: list[datetime] = []

    def poll() -> None:
        polls.append(clock.now())
        clock.call_later(173, poll)  # ~3 min

    clock.call_later(173, poll)
    for _ in range(20):
        clock.call_later(rng.uniform(0, 86_400), lambda: one_shots.append(clock.now()))

    started = time.perf_counter()
    await clock.advance(86_400)
    elapsed = time.perf_counter() - started

    assert len(polls) == 86_400 // 173 == 499
    assert len(polls) + len(one_shots) >= 500
    assert len(one_shots) == 20
    assert one_shots == sorted(one_shots)
    assert polls[-1] == START + timedelta(seconds=173 * 499)
    assert clock.now() == START + timedelta(days=1)
    assert elapsed < 1.0, f"a simulated day took {elapsed:.3f} s"


def test_sim_clock_requires_timezone_aware_start() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SimClock(start=datetime(2026, 3, 2, 6, 0))


def test_sim_clock_default_start_is_aware_utc() -> None:
    assert SimClock().now().tzinfo is UTC


async def test_sim_clock_rejects_naive_timer_and_target(clock: SimClock) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.call_at(datetime(2026, 3, 2, 7, 0), lambda: None)
    with pytest.raises(ValueError, match="timezone-aware"):
        await clock.advance_to(datetime(2026, 3, 2, 7, 0))
    assert clock.pending == 0


async def test_sim_clock_keeps_utc_when_given_local_times(clock: SimClock) -> None:
    """Given a timer at 08:00 Berlin (07:00 UTC), it fires at 07:00 UTC and now() stays UTC."""
    berlin = ZoneInfo("Europe/Berlin")
    seen: list[datetime] = []
    clock.call_at(datetime(2026, 3, 2, 8, 0, tzinfo=berlin), lambda: seen.append(clock.now()))

    await clock.advance_to(datetime(2026, 3, 2, 8, 0, tzinfo=berlin))

    assert seen == [at(60)]
    assert seen[0].tzinfo is UTC
    assert clock.now() == at(60)
    assert clock.now().tzinfo is UTC
    assert clock.now().isoformat() == "2026-03-02T07:00:00+00:00"


async def test_sim_clock_start_in_local_time_is_converted_to_utc() -> None:
    clock = SimClock(start=datetime(2026, 3, 2, 7, 0, tzinfo=ZoneInfo("Europe/Berlin")))

    assert clock.now() == START
    assert clock.now().tzinfo is UTC
    assert clock.monotonic() == 0.0


async def test_real_clock_call_later_fires() -> None:
    """The real clock's timer really fires (a short real delay: this tests the real clock)."""
    clock = RealClock()
    fired: asyncio.Future[datetime] = asyncio.get_running_loop().create_future()
    before = clock.now()

    timer = clock.call_later(0.01, lambda: fired.set_result(clock.now()))

    when = await asyncio.wait_for(fired, timeout=2.0)
    assert when >= before
    assert when.tzinfo is UTC
    assert timer.cancelled  # spent after firing


async def test_real_clock_cancel_prevents_firing() -> None:
    clock = RealClock()
    fired: list[str] = []
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    timer = clock.call_later(0.01, lambda: fired.append("cancelled one"))
    clock.call_later(0.02, lambda: done.set_result(None))
    timer.cancel()

    await asyncio.wait_for(done, timeout=2.0)
    assert fired == []


async def test_real_clock_call_at_fires_and_rejects_naive_times() -> None:
    clock = RealClock()
    fired: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    when = clock.now() + timedelta(seconds=0.01)

    timer = clock.call_at(when, lambda: fired.set_result(None))

    assert timer.when == when
    await asyncio.wait_for(fired, timeout=2.0)
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.call_at(datetime(2026, 3, 2, 7, 0), lambda: None)


async def test_a_failing_timer_is_logged_and_later_timers_still_fire(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = SimClock(start=datetime(2026, 3, 2, 6, 0, tzinfo=UTC))
    fired: list[str] = []

    def explode() -> None:
        raise RuntimeError("meter poll failed")

    clock.call_later(10, explode)
    clock.call_later(20, lambda: fired.append("after"))
    with caplog.at_level(logging.ERROR):
        await clock.advance(30)
    assert fired == ["after"]
    assert "meter poll failed" in caplog.text


async def test_simulated_time_waits_for_work_registered_as_busy() -> None:
    # A thread the hub awaits (a commit) takes real time: the clock must not run past it. Busy
    # is judged as the recorder judges it, by the future the hub awaits (done once the loop has
    # its result), not by the thread's own flag, which is set before the awaiting task can run.
    import threading

    clock = SimClock(start=datetime(2026, 1, 1, tzinfo=UTC))
    done = threading.Event()
    commit = asyncio.ensure_future(asyncio.to_thread(done.wait, 5))
    remove = clock.add_busy(lambda: not commit.done())
    seen: list[datetime] = []

    async def commit_then_note() -> None:
        await commit
        seen.append(clock.now())

    threading.Timer(0.05, done.set).start()
    task = asyncio.create_task(commit_then_note())
    await clock.advance(60)
    await task
    assert seen == [datetime(2026, 1, 1, tzinfo=UTC)]  # time had not moved when it finished
    assert clock.now() == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    remove()
