"""Generic grid signals from a local HTTP/JSON endpoint: a list of events, or one held value,
through the same caps; a feed that fails or talks nonsense leaves known events in force."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from hub.bootstrap import create_hub
from hub.bus import Event
from hub.charging.signals import SignalStore
from hub.clock import SimClock
from hub.core import CoreState, Hub
from plugins.openadr.grid_signal import parse_feed
from plugins.openadr.mapping import DrInputError
from tests.conftest import SIM_START
from tests.openadr.support import SITE, free_port

MIN = timedelta(minutes=1)


class Feed:
    """A tiny aggregator API: GET /limits answers whatever the test put in `body`."""

    def __init__(self) -> None:
        self.body: Any = {"events": []}
        self.status = 200
        self.hits = 0
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def limits(request: web.Request) -> web.Response:
            self.hits += 1
            if isinstance(self.body, str):
                return web.Response(text=self.body, status=self.status)
            return web.json_response(self.body, status=self.status)

        app = web.Application()
        app.router.add_get("/limits", limits)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/limits"


@pytest.fixture
async def feed() -> AsyncIterator[Feed]:
    f = Feed()
    await f.start()
    yield f
    await f.stop()


async def start_hub(tmp_path: Path, signal: dict[str, Any]) -> tuple[Hub, SimClock, list[Event]]:
    config = {"site": SITE, "openadr": {"lead": 0, "grid_signals": [signal]}}
    (tmp_path / "configuration.yaml").write_text(yaml.safe_dump(config))
    clock = SimClock(start=SIM_START)
    hub = create_hub(tmp_path, clock=clock)
    phases: list[Event] = []
    hub.bus.listen("demand_response", phases.append)
    await hub.start()
    await hub.block_till_done()
    return hub, clock, phases


async def poll(hub: Hub, clock: SimClock, seconds: float = 60) -> None:
    """Polls happen every hour on their own (`every: 3600`); the test polls when it wants."""
    await clock.advance(seconds)
    await hub.data["openadr"].grid_signals[0].poll()


def cap(hub: Hub, minutes: float = 0) -> float | None:
    series = SignalStore.of(hub).get("caps.site")
    return None if series is None else series.value_at(hub.now() + minutes * MIN)


async def test_a_list_of_events_becomes_caps_and_a_withdrawn_one_is_released(
    tmp_path: Path, feed: Feed
) -> None:
    first = {"id": "e1", "limit": 30, "from": (SIM_START + 10 * MIN).isoformat(),
             "to": (SIM_START + 40 * MIN).isoformat()}  # fmt: skip
    second = {"id": "e2", "limit": 20, "from": (SIM_START + 20 * MIN).isoformat(),
              "to": (SIM_START + 30 * MIN).isoformat()}  # fmt: skip
    feed.body = {"data": {"events": [first, second]}}
    hub, clock, phases = await start_hub(tmp_path, {
        "name": "flexco", "url": feed.url, "every": 3600, "items": "data.events",
        "cap_kw": "{{ item.limit }}", "start": "{{ item.from }}", "end": "{{ item.to }}",
        "id": "{{ item.id }}"})  # fmt: skip
    try:
        await poll(hub, clock)
        assert cap(hub, 10) == 30 and cap(hub, 21) == 20 and cap(hub, 35) == 30
        assert {e.data["event_id"] for e in phases} == {"grid_signal.flexco:e1",
                                                       "grid_signal.flexco:e2"}  # fmt: skip
        feed.body = {"data": {"events": [first]}}
        await poll(hub, clock)
        assert cap(hub, 21) == 30
        assert phases[-1].data["phase"] == "cancelled"
        await poll(hub, clock)
        assert len(phases) == 3  # repeating an unchanged list changes nothing
    finally:
        await hub.stop()


async def test_a_held_value_is_extended_while_it_repeats_and_replaced_when_it_changes(
    tmp_path: Path, feed: Feed
) -> None:
    feed.body = {"limit_kw": 25}
    hub, clock, phases = await start_hub(tmp_path, {
        "name": "dso", "url": feed.url, "every": 3600, "hold": 180,
        "cap_kw": "{{ value.limit_kw }}"})  # fmt: skip
    try:
        await poll(hub, clock, 0)
        assert cap(hub) == 25 and cap(hub, 2.9) == 25 and cap(hub, 3.1) is None
        await poll(hub, clock)
        assert cap(hub, 2.9) == 25 and cap(hub, 3.1) is None  # three more minutes from now
        assert len(phases) == 2  # received + start: extending is quiet
        feed.body = {"limit_kw": 40}
        await poll(hub, clock)
        assert cap(hub) == 40
        assert [e.data["phase"] for e in phases] == ["received", "start", "cancelled",
                                                     "received", "start"]  # fmt: skip
        feed.body = {"limit_kw": None}
        await poll(hub, clock)
        assert cap(hub) is None  # the aggregator lifted its limit
    finally:
        await hub.stop()


async def test_a_failing_or_garbled_feed_keeps_known_events(
    tmp_path: Path, feed: Feed, caplog: pytest.LogCaptureFixture
) -> None:
    feed.body = {"limit_kw": 25}
    hub, clock, _ = await start_hub(tmp_path, {
        "name": "dso", "url": feed.url, "every": 3600, "hold": 600,
        "cap_kw": "{{ value.limit_kw }}"})  # fmt: skip
    failures: list[Event] = []
    hub.bus.listen("grid_signal_fetch_failed", failures.append)
    try:
        await poll(hub, clock, 0)
        feed.body = "<html>maintenance</html>"
        await poll(hub, clock)
        feed.body, feed.status = {"error": "boom"}, 503
        await poll(hub, clock)
        feed.body, feed.status = {"limit_kw": "lots"}, 200
        await poll(hub, clock)
        await feed.stop()
        await poll(hub, clock)
        assert cap(hub) == 25  # still the last known value
        errors = [e.data["error"] for e in failures]
        assert "not JSON" in errors[0] and "HTTP 503" in errors[1]
        assert "not a number" in errors[2] and "ClientConnectorError" in errors[3]
        assert "known events stay in force" in caplog.text
        assert hub.state is CoreState.RUNNING
    finally:
        await hub.stop()


def test_parse_feed_shapes() -> None:
    conf = {"items": "rows", "cap_kw": "{{ item[1] * 1000 }}", "start": "{{ item[0] }}"}
    doc = {"rows": [[1767225600, 0.05]]}  # epoch seconds, MW
    (entry,) = parse_feed(doc, conf, SIM_START, SIM_START.tzinfo)  # type: ignore[arg-type]
    assert entry["cap_kw"] == 50.0 and entry["start"].isoformat() == "2026-01-01T00:00:00+00:00"
    with pytest.raises(DrInputError, match="no 'rows'"):
        parse_feed({"other": 1}, conf, SIM_START, SIM_START.tzinfo)  # type: ignore[arg-type]
    bad = {"cap_kw": "{{ item.x }}", "start": "{{ item.a }}", "end": "{{ item.b }}"}
    with pytest.raises(DrInputError, match="before it starts"):
        parse_feed({"x": 1, "a": "2026-01-02T00:00:00Z", "b": "2026-01-01T00:00:00Z"}, bad,
                   SIM_START, SIM_START.tzinfo)  # type: ignore[arg-type]  # fmt: skip
    with pytest.raises(DrInputError, match="template"):
        parse_feed({}, {"cap_kw": "{{ item.__class__.__mro__ }}{% x %}"}, SIM_START,
                   SIM_START.tzinfo)  # type: ignore[arg-type]  # fmt: skip
