"""The Hub's lifecycle as an operator sees it: it starts, runs tasks, and stops cleanly."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hub import core as hub_core
from hub.bus import EVENT_HUB_START, EVENT_HUB_STARTED, EVENT_HUB_STOP, Event
from hub.clock import SimClock
from hub.core import CoreState, Hub


async def test_start_and_stop_walk_through_the_states(tmp_path: Path, clock: SimClock) -> None:
    """Given a fresh hub, listeners see start, started and stop with the hub's state at each."""
    h = Hub(tmp_path, clock=clock)
    seen: list[tuple[str, CoreState]] = []
    for event_type in (EVENT_HUB_START, EVENT_HUB_STARTED, EVENT_HUB_STOP):
        h.bus.listen(event_type, lambda e: seen.append((e.event_type, h.state)))
    assert h.state is CoreState.NOT_RUNNING

    await h.start()
    assert h.state is CoreState.RUNNING
    await h.stop()

    assert h.state is CoreState.STOPPED
    assert seen == [
        (EVENT_HUB_START, CoreState.STARTING),
        (EVENT_HUB_STARTED, CoreState.RUNNING),
        (EVENT_HUB_STOP, CoreState.STOPPING),
    ]


async def test_hub_cannot_start_twice(hub: Hub) -> None:
    with pytest.raises(RuntimeError, match="cannot start"):
        await hub.start()
    assert hub.state is CoreState.RUNNING


async def test_stopped_hub_cannot_restart(hub: Hub) -> None:
    await hub.stop()

    with pytest.raises(RuntimeError, match="cannot start"):
        await hub.start()


async def test_created_tasks_are_tracked_and_block_till_done_waits(hub: Hub) -> None:
    """Given a task waiting for a charger's reply, block_till_done returns only after it ends,
    including a follow-up task it starts."""
    reply: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    log: list[str] = []

    async def follow_up() -> None:
        await asyncio.sleep(0)
        log.append("follow-up")

    async def send_command() -> str:
        answer = await reply
        log.append(answer)
        hub.create_task(follow_up(), "follow up")
        return answer

    task = hub.create_task(send_command(), "send command")
    waiter = asyncio.ensure_future(hub.block_till_done(timeout=5))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiter.done()

    reply.set_result("Accepted")
    await waiter

    assert log == ["Accepted", "follow-up"]
    assert task.result() == "Accepted"
    assert task.get_name() == "send command"


async def test_block_till_done_ignores_background_tasks(hub: Hub) -> None:
    forever = asyncio.Event()
    server = hub.create_task(forever.wait(), "server", background=True)

    await asyncio.wait_for(hub.block_till_done(), timeout=2)

    assert not server.done()


async def test_block_till_done_times_out_naming_the_stuck_task(hub: Hub) -> None:
    never = asyncio.Event()
    hub.create_task(never.wait(), "stuck poll")

    with pytest.raises(TimeoutError, match="stuck poll"):
        await hub.block_till_done(timeout=0.01)
    never.set()
    await hub.block_till_done()


async def test_block_till_done_from_inside_a_tracked_task_does_not_wait_for_itself(
    hub: Hub,
) -> None:
    async def inner() -> str:
        await hub.block_till_done(timeout=1)
        return "done"

    task = hub.create_task(inner())

    await asyncio.wait_for(hub.block_till_done(), timeout=2)
    assert task.result() == "done"


async def test_failing_task_is_logged(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise RuntimeError("poll failed")

    with caplog.at_level(logging.ERROR, logger="hub.core"):
        hub.create_task(broken(), "meter poll")
        await hub.block_till_done()

    assert "task meter poll failed" in caplog.text
    assert "poll failed" in caplog.text


async def test_background_tasks_are_cancelled_at_stop(hub: Hub) -> None:
    """Given a server running in the background, stopping the hub cancels it and lets it clean
    up."""
    cleaned: list[str] = []

    async def server() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append("closed")

    task = hub.create_task(server(), "ocpp server", background=True)
    await asyncio.sleep(0)

    await asyncio.wait_for(hub.stop(), timeout=2)

    assert task.cancelled()
    assert cleaned == ["closed"]


async def test_stop_waits_for_ordinary_tasks_to_finish(hub: Hub) -> None:
    finished: list[str] = []

    async def save() -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        finished.append("saved")

    task = hub.create_task(save(), "final save")

    await hub.stop()

    assert finished == ["saved"]
    assert not task.cancelled()


async def test_stop_cancels_a_task_that_outlives_stop_timeout(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(hub_core, "STOP_TIMEOUT", 0.02)
    never = asyncio.Event()
    task = hub.create_task(never.wait(), "slow upload")

    with caplog.at_level(logging.WARNING, logger="hub.core"):
        await asyncio.wait_for(hub.stop(), timeout=2)

    assert task.cancelled()
    assert "cancelling task slow upload at shutdown" in caplog.text
    assert hub.state is CoreState.STOPPED


async def test_task_ignoring_cancellation_does_not_hang_stop(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a badly written plugin task that swallows cancellation, stop still completes."""
    monkeypatch.setattr(hub_core, "STOP_TIMEOUT", 0.02)
    release = asyncio.Event()
    cancels: list[str] = []

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                cancels.append("ignored")

    task = hub.create_task(stubborn(), "stubborn", background=True)
    await asyncio.sleep(0)

    await asyncio.wait_for(hub.stop(), timeout=3)

    assert hub.state is CoreState.STOPPED
    assert cancels  # it was asked to stop (and refused)
    assert not task.done()
    release.set()
    await asyncio.wait_for(task, timeout=1)


async def test_stop_is_idempotent_and_concurrent_calls_share_one_shutdown(hub: Hub) -> None:
    stops: list[Event] = []
    hub.bus.listen(EVENT_HUB_STOP, stops.append)

    await asyncio.gather(hub.stop(), hub.stop())
    await hub.stop()
    await asyncio.wait_for(hub.wait_stopped(), timeout=1)

    assert len(stops) == 1
    assert hub.state is CoreState.STOPPED


async def test_stop_flushes_the_entity_registry(hub: Hub) -> None:
    path = hub.config_dir / ".storage" / "entity_registry.json"  # type: ignore[operator]
    assert not path.exists()

    await hub.stop()

    assert path.exists()


async def test_now_local_uses_the_configured_time_zone() -> None:
    """Given a hub in Berlin on the sim clock, local time is CET in winter and CEST in summer."""
    winter = SimClock(start=datetime(2026, 3, 2, 6, 0, tzinfo=UTC))
    h = Hub(clock=winter, config={"hub": {"time_zone": "Europe/Berlin"}})

    local = h.now_local()
    assert (local.hour, local.utcoffset().total_seconds()) == (7, 3600)  # type: ignore[union-attr]
    assert local == h.now()

    await winter.advance(30 * 86_400)  # past the last Sunday of March
    local = h.now_local()
    assert (local.hour, local.utcoffset().total_seconds()) == (8, 7200)  # type: ignore[union-attr]
    assert str(local.tzinfo) == "Europe/Berlin"


async def test_hub_defaults_to_utc_and_reads_name_from_config(clock: SimClock) -> None:
    h = Hub(clock=clock, config={"hub": {"name": "garage hub"}})

    assert h.name == "garage hub"
    assert h.now_local().utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert h.now() == clock.now()
