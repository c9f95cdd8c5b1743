"""The event bus as a plugin sees it: fire, listen, unsubscribe, failures that stay contained."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from hub.bus import MATCH_ALL, Context, Event
from hub.clock import SimClock
from hub.core import Hub


async def test_listener_receives_fired_event_with_its_data(hub: Hub) -> None:
    """Given a listener on `charger_plugged`, when it is fired with data, the listener gets it."""
    seen: list[Event] = []
    hub.bus.listen("charger_plugged", seen.append)

    returned = hub.bus.fire("charger_plugged", {"connector": 1})

    assert [e.event_type for e in seen] == ["charger_plugged"]
    assert seen[0].data == {"connector": 1}
    assert seen[0] is returned


async def test_listener_does_not_receive_other_event_types(hub: Hub) -> None:
    seen: list[Event] = []
    hub.bus.listen("charger_plugged", seen.append)

    hub.bus.fire("charger_unplugged")

    assert seen == []


async def test_remove_callable_unsubscribes_and_is_idempotent(hub: Hub) -> None:
    """Given a subscription, when its remove callable is called (twice), no more events arrive."""
    seen: list[Event] = []
    other: list[Event] = []
    remove = hub.bus.listen("tick", seen.append)
    hub.bus.listen("tick", other.append)
    hub.bus.fire("tick")

    remove()
    remove()  # a second call is harmless and must not drop the other listener
    hub.bus.fire("tick")

    assert len(seen) == 1
    assert len(other) == 2
    assert hub.bus.listener_count().get("tick") == 1


async def test_removing_last_listener_forgets_the_event_type(hub: Hub) -> None:
    remove = hub.bus.listen("rare_event", lambda e: None)
    assert hub.bus.listener_count()["rare_event"] == 1

    remove()

    assert "rare_event" not in hub.bus.listener_count()


async def test_wildcard_listener_receives_every_event(hub: Hub) -> None:
    """Given a `*` listener (like a recorder), every event type reaches it, after typed ones."""
    order: list[str] = []
    hub.bus.listen(MATCH_ALL, lambda e: order.append(f"*:{e.event_type}"))
    hub.bus.listen("a", lambda e: order.append("a"))

    hub.bus.fire("a")
    hub.bus.fire("b", {"x": 1})

    assert order == ["a", "*:a", "*:b"]


async def test_event_filter_decides_before_the_listener_runs(hub: Hub) -> None:
    """Given a filter on connector 2, only events for connector 2 reach the listener."""
    seen: list[int] = []
    hub.bus.listen(
        "charger_plugged",
        lambda e: seen.append(e.data["connector"]),
        event_filter=lambda data: data.get("connector") == 2,
    )

    for connector in (1, 2, 3, 2):
        hub.bus.fire("charger_plugged", {"connector": connector})

    assert seen == [2, 2]


async def test_failing_event_filter_is_logged_and_skips_only_that_listener(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Event] = []

    def broken_filter(data: object) -> bool:
        raise KeyError("boom")

    hub.bus.listen("x", lambda e: pytest.fail("filtered listener must not run"), broken_filter)
    hub.bus.listen("x", seen.append)

    with caplog.at_level(logging.ERROR, logger="hub.bus"):
        hub.bus.fire("x")

    assert len(seen) == 1
    assert "event filter for x failed" in caplog.text


async def test_listen_once_fires_a_single_time(hub: Hub) -> None:
    """Given a one-shot listener, when the event fires three times, it runs exactly once."""
    seen: list[Event] = []
    remove = hub.bus.listen_once("hub_test", seen.append)

    for _ in range(3):
        hub.bus.fire("hub_test")

    assert len(seen) == 1
    assert "hub_test" not in hub.bus.listener_count()
    remove()  # removing a spent one-shot listener is a no-op


async def test_listen_once_is_not_reentered_when_it_refires_the_event(hub: Hub) -> None:
    calls: list[int] = []

    def refire(event: Event) -> None:
        calls.append(event.data["n"])
        if event.data["n"] < 3:
            hub.bus.fire("chain", {"n": event.data["n"] + 1})

    hub.bus.listen_once("chain", refire)
    hub.bus.fire("chain", {"n": 1})

    assert calls == [1]


async def test_listen_once_removed_before_the_event_never_runs(hub: Hub) -> None:
    seen: list[Event] = []
    remove = hub.bus.listen_once("later", seen.append)

    remove()
    hub.bus.fire("later")

    assert seen == []


async def test_sync_listeners_run_inline_in_subscription_order(hub: Hub) -> None:
    """Given three sync listeners, when fire() returns they have all run, in subscription order."""
    order: list[int] = []
    for n in range(3):
        hub.bus.listen("ordered", lambda e, n=n: order.append(n))

    hub.bus.fire("ordered")

    assert order == [0, 1, 2]  # no await needed: they ran inside fire()


async def test_async_listener_runs_as_a_tracked_task(hub: Hub) -> None:
    """Given an async listener that waits for a charger reply, block_till_done waits for it."""
    reply: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    handled: list[str] = []

    async def on_event(event: Event) -> None:
        handled.append(await reply)

    hub.bus.listen("needs_reply", on_event)
    hub.bus.fire("needs_reply")
    await asyncio.sleep(0)

    assert handled == []  # not inline: it is a task, and it is waiting
    waiter = asyncio.ensure_future(hub.block_till_done(timeout=5))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not waiter.done()  # block_till_done knows about the listener task

    reply.set_result("Accepted")
    await waiter

    assert handled == ["Accepted"]


async def test_failing_sync_and_async_listeners_are_logged_and_others_still_run(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    """Given a broken sync and a broken async listener, the healthy ones still get the event."""
    seen: list[str] = []

    def broken_sync(event: Event) -> None:
        raise RuntimeError("sync listener exploded")

    async def broken_async(event: Event) -> None:
        raise RuntimeError("async listener exploded")

    async def healthy_async(event: Event) -> None:
        seen.append("async")

    hub.bus.listen("meter_value", broken_sync)
    hub.bus.listen("meter_value", broken_async)
    hub.bus.listen("meter_value", lambda e: seen.append("sync"))
    hub.bus.listen("meter_value", healthy_async)

    with caplog.at_level(logging.ERROR):
        hub.bus.fire("meter_value", {"kw": 7.2})  # must not raise
        await hub.block_till_done()

    assert sorted(seen) == ["async", "sync"]
    assert "sync listener exploded" in caplog.text
    assert "async listener exploded" in caplog.text
    failures = [r for r in caplog.records if "for meter_value failed" in r.getMessage()]
    assert len(failures) == 2


async def test_sync_listener_returning_a_failing_awaitable_is_logged(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode() -> None:
        raise RuntimeError("late failure")

    hub.bus.listen("x", lambda e: explode())

    with caplog.at_level(logging.ERROR):
        hub.bus.fire("x")
        await hub.block_till_done()

    assert "late failure" in caplog.text


async def test_listener_unsubscribing_itself_during_fire(hub: Hub) -> None:
    """Given a listener that removes itself on first call, the others still get this event."""
    seen: list[str] = []
    remove_self = None

    def once_by_hand(event: Event) -> None:
        seen.append("self")
        assert remove_self is not None
        remove_self()

    remove_self = hub.bus.listen("e", once_by_hand)
    hub.bus.listen("e", lambda e: seen.append("next"))

    hub.bus.fire("e")
    hub.bus.fire("e")

    assert seen == ["self", "next", "next"]


async def test_listener_unsubscribing_a_later_listener_during_fire(hub: Hub) -> None:
    """A listener removed by an earlier one during the same fire is not called."""
    seen: list[str] = []
    removers: dict[str, Callable[[], None]] = {}

    def first(event: Event) -> None:
        seen.append("first")
        removers["second"]()

    hub.bus.listen("e", first)
    removers["second"] = hub.bus.listen("e", lambda e: seen.append("second"))
    hub.bus.listen("e", lambda e: seen.append("third"))

    hub.bus.fire("e")

    assert seen == ["first", "third"]


async def test_listener_subscribed_during_fire_only_sees_later_events(hub: Hub) -> None:
    late: list[Event] = []

    def subscribe_more(event: Event) -> None:
        if not late and event.data["n"] == 1:
            hub.bus.listen("e", late.append)

    hub.bus.listen("e", subscribe_more)
    hub.bus.fire("e", {"n": 1})
    hub.bus.fire("e", {"n": 2})

    assert [e.data["n"] for e in late] == [2]


async def test_event_carries_context_and_sim_time(hub: Hub, clock: SimClock) -> None:
    """Given a user-caused event at a simulated time, listeners see who caused it and when."""
    await clock.advance(90)
    ctx = Context(user_id="alice")
    seen: list[Event] = []
    hub.bus.listen("user_action", seen.append)

    hub.bus.fire("user_action", {"what": "pause"}, context=ctx)

    event = seen[0]
    assert event.context is ctx
    assert event.context.user_id == "alice"
    assert event.time_fired == clock.now() == datetime(2026, 3, 2, 6, 1, 30, tzinfo=UTC)
    assert event.as_dict()["context"] == {"id": ctx.id, "parent_id": None, "user_id": "alice"}


async def test_event_without_context_gets_a_fresh_one(hub: Hub) -> None:
    first = hub.bus.fire("x")
    second = hub.bus.fire("x")

    assert first.context.id and second.context.id
    assert first.context.id != second.context.id
    assert first.context.parent_id is None and first.context.user_id is None


async def test_time_fired_follows_the_sim_clock(hub: Hub, clock: SimClock) -> None:
    before = hub.bus.fire("x").time_fired

    await clock.advance(3600)

    assert hub.bus.fire("x").time_fired - before == timedelta(hours=1)


def test_context_child_keeps_parent_linkage_and_user() -> None:
    """Given a user's click, a command it triggers can be traced back to the click."""
    click = Context(user_id="bob")

    command = click.child()
    reply = command.child()

    assert command.parent_id == click.id
    assert reply.parent_id == command.id
    assert command.user_id == reply.user_id == "bob"
    assert len({click.id, command.id, reply.id}) == 3


async def test_event_data_is_read_only_and_detached_from_the_caller(hub: Hub) -> None:
    """A listener cannot change what the next listener sees, nor can the firer after fire()."""
    data = {"kw": 11.0}
    seen: list[Event] = []

    def meddle(event: Event) -> None:
        with pytest.raises(TypeError):
            event.data["kw"] = 0.0  # type: ignore[index]
        seen.append(event)

    hub.bus.listen("meter", meddle)
    hub.bus.listen("meter", seen.append)
    hub.bus.fire("meter", data)
    data["kw"] = 99.0

    assert [e.data["kw"] for e in seen] == [11.0, 11.0]
    with pytest.raises(TypeError):
        seen[0].data["extra"] = 1  # type: ignore[index]


async def test_event_without_data_has_empty_read_only_data(hub: Hub) -> None:
    event = hub.bus.fire("x")

    assert dict(event.data) == {}
    with pytest.raises(TypeError):
        event.data["k"] = 1  # type: ignore[index]
