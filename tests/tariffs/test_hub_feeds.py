"""Day-ahead feeds through a real hub: `create_hub` from a config dir, the simulated clock, and a
local aiohttp server on 127.0.0.1 answering with the recorded Nord Pool answer (and, for the
providers with no recording, payloads built from their API documentation: payloads.py).

Given a hub that fetches Nord Pool SE3 at 06:30 in Stockholm on 5 November 2024 ...
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from hub.bus import Event
from hub.charging.signals import EVENT_SIGNAL_UPDATED, SignalStore
from hub.clock import SimClock
from hub.core import Hub
from hub.services import ServiceValidationError
from plugins.tariffs import EVENT_FETCH_FAILED, EVENT_FETCH_RECOVERED
from tests.tariffs import payloads
from tests.tariffs.conftest import MakeHub
from tests.tariffs.support import FeedServer, json_answer

START = datetime(2024, 11, 5, 5, 30, tzinfo=UTC)  # 06:30 in Stockholm
ENTITY = "tariff.grid_import"


def nordpool(server: FeedServer, published: dict[str, bytes]) -> dict[str, Any]:
    """Serve Nord Pool's DayAheadPrices: the answer for each published date, else 204."""

    def answer(request: web.Request) -> web.StreamResponse:
        query = request.query
        if query.get("market") != "DayAhead" or query.get("deliveryArea") != "SE3":
            return web.Response(status=400, text="bad request")
        body = published.get(query.get("date", ""))
        return json_answer(body) if body else web.Response(status=204)

    server.answers["/nordpool"] = answer
    return {
        "hub": {"time_zone": "Europe/Stockholm", "currency": "SEK"},
        "tariffs": [
            {
                "name": "grid_import",
                "source": {
                    "nordpool": {
                        "area": "SE3",
                        "currency": "SEK",
                        "base_url": server.url("/nordpool/api/DayAheadPrices"),
                    }
                },
            }
        ],
    }


@pytest.fixture
def published() -> dict[str, bytes]:
    return {"2024-11-05": payloads.NORDPOOL_FILE.read_bytes()}


@pytest.fixture
async def hub(make_hub: MakeHub, server: FeedServer, published: dict[str, bytes]) -> Hub:
    return await make_hub(nordpool(server, published), SimClock(START))


def events(hub: Hub, event_type: str) -> list[Event]:
    seen: list[Event] = []
    hub.bus.listen(event_type, seen.append)
    return seen


async def settle(hub: Hub, clock: Any, seconds: float) -> None:
    """Let hub time pass, then wait for the fetches it started (real HTTP)."""
    await clock.advance(seconds)
    await hub.block_till_done()


async def test_the_entity_shows_the_current_price_in_sek_per_kwh(
    hub: Hub, server: FeedServer
) -> None:
    state = hub.states.get(ENTITY)

    assert state is not None and state.state == 0.99628  # 996.28 SEK/MWh, 05:00-06:00 UTC
    assert state.unit == "SEK/kWh"
    attrs = state.attributes
    assert (attrs["currency"], attrs["unit"], attrs["source"]) == ("SEK", "SEK/kWh", "nordpool SE3")
    assert attrs["slots"][0] == {
        "start": "2024-11-05T05:00:00+00:00", "end": "2024-11-05T06:00:00+00:00", "price": 0.99628
    }  # fmt: skip
    assert len(attrs["slots"]) == 18  # the rest of the day: tomorrow is not published yet
    assert attrs["next_change"] == "2024-11-05T06:00:00+00:00"
    assert (attrs["today_min"], attrs["today_max"]) == (0.06169, 2.51265)
    assert attrs["today_mean"] == pytest.approx(0.90074, abs=1e-5)  # Nord Pool's own average
    assert (attrs["stale"], attrs["last_error"]) == (False, None)
    assert attrs["last_updated_from_source"] == START.isoformat()
    assert attrs["demand_charges"] == []
    series = SignalStore.of(hub).get("prices.grid_import")
    assert series is not None and len(series) == 24 and series.unit == "SEK/kWh"
    asked = [(r.query["date"], r.query["currency"]) for r in server.requests_to("/nordpool")]
    assert asked == [("2024-11-05", "SEK"), ("2024-11-06", "SEK")]


async def test_the_price_moves_on_at_each_slot_boundary(hub: Hub) -> None:
    clock: SimClock = hub.clock  # type: ignore[assignment]
    changes = events(hub, "state_changed")

    await clock.advance_to(datetime(2024, 11, 5, 5, 59, 59, tzinfo=UTC))
    assert hub.states.get(ENTITY).state == 0.99628
    await clock.advance(1)
    assert hub.states.get(ENTITY).state == 1.40614
    assert hub.states.get(ENTITY).last_changed == datetime(2024, 11, 5, 6, tzinfo=UTC)
    await clock.advance_to(datetime(2024, 11, 5, 16, tzinfo=UTC))
    assert hub.states.get(ENTITY).state == 2.51265  # the evening peak
    prices = [
        e.data["new_state"].state
        for e in changes
        if e.data["entity_id"] == ENTITY and e.data["old_state"].state != e.data["new_state"].state
    ]
    assert len(prices) == 11  # one change an hour (the 13:15 refresh only touched attributes)


async def test_a_failing_feed_keeps_the_last_prices_and_raises_one_alert(
    hub: Hub, server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="plugins.tariffs")
    clock: SimClock = hub.clock  # type: ignore[assignment]
    failed, recovered = events(hub, EVENT_FETCH_FAILED), events(hub, EVENT_FETCH_RECOVERED)
    updates = events(hub, EVENT_SIGNAL_UPDATED)

    server.mode = "500"
    result = await hub.services.call("tariffs", "refresh", {"name": "grid_import"})

    assert result == {"grid_import": {"ok": False, "error": "HTTP 500 Internal Server Error",
                                      "slots": 24}}  # fmt: skip
    state = hub.states.get(ENTITY)
    assert state.state == 0.99628 and state.attributes["stale"] is True
    assert state.attributes["last_error"] == "HTTP 500 Internal Server Error"
    assert [(e.data["failures"], e.data["prices_until"]) for e in failed] == [
        (1, "2024-11-05T23:00:00+00:00")
    ]
    assert SignalStore.of(hub).get("prices.grid_import") is not None and updates == []

    # retries back off on the hub clock: 60 s, then 120 s
    server.mode = "garbage"
    asked = len(server.seen)
    await settle(hub, clock, 60)
    assert len(server.seen) == asked + 1  # the first request failed: the attempt stops there
    assert failed[-1].data["failures"] == 2 and "not JSON" in failed[-1].data["error"]
    await settle(hub, clock, 119)
    assert len(server.seen) == asked + 1
    await settle(hub, clock, 1)
    assert len(server.seen) == asked + 2 and len(failed) == 3

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # one log line for the whole streak
    assert "keeping the last prices (known until 2024-11-05T23:00:00+00:00)" in warnings[0].message

    server.mode = "ok"
    await settle(hub, clock, 240)
    state = hub.states.get(ENTITY)
    assert (state.attributes["stale"], state.attributes["last_error"]) == (False, None)
    assert [e.data["failures"] for e in recovered] == [3]
    assert state.state == 0.99628
    assert [e.data["name"] for e in updates] == ["prices.grid_import"]


async def test_a_day_ahead_feed_refreshes_at_13_15_and_retries_until_tomorrow_is_there(
    hub: Hub, server: FeedServer, published: dict[str, bytes]
) -> None:
    clock: SimClock = hub.clock  # type: ignore[assignment]
    assert len(server.seen) == 2  # at start-up: today and (not yet) tomorrow

    await settle(hub, clock, (datetime(2024, 11, 5, 12, 14, tzinfo=UTC) - START).total_seconds())
    assert len(server.seen) == 2  # nobody asks again before 13:15 local
    await settle(hub, clock, 60)
    assert len(server.seen) == 4  # 13:15: tomorrow still missing (204) ...
    await settle(hub, clock, 15 * 60)
    assert len(server.seen) == 6  # ... so again every 15 minutes
    published["2024-11-06"] = payloads.shifted_nordpool(days=1)
    await settle(hub, clock, 15 * 60)
    assert len(server.seen) == 8
    state = hub.states.get(ENTITY)
    slots = state.attributes["slots"]
    assert slots[-1]["end"] == "2024-11-06T23:00:00+00:00" and len(slots) == 11 + 24
    await settle(hub, clock, 3 * 3600)
    assert len(server.seen) == 8  # complete: no more retries until tomorrow 13:15


async def test_the_refresh_service_and_its_schema(hub: Hub, server: FeedServer) -> None:
    assert await hub.services.call("tariffs", "refresh") == {
        "grid_import": {"ok": True, "error": None, "slots": 24}
    }
    assert len(server.seen) == 4
    with pytest.raises(ServiceValidationError, match="name"):
        await hub.services.call("tariffs", "refresh", {"name": "gas"})


async def test_a_feed_that_never_answered_leaves_the_price_unknown(
    make_hub: MakeHub, server: FeedServer
) -> None:
    config = nordpool(server, {})
    server.mode = "500"
    hub = await make_hub(config, SimClock(START))

    state = hub.states.get(ENTITY)
    assert state.state is None and state.attributes["stale"] is True
    assert state.attributes["slots"] == [] and state.attributes["today_mean"] is None
    assert SignalStore.of(hub).get("prices.grid_import") is None


async def test_a_feed_server_that_is_gone_is_a_failure_too(
    make_hub: MakeHub, server: FeedServer
) -> None:
    config = nordpool(server, {})
    config["tariffs"][0]["source"]["nordpool"]["base_url"] = "http://127.0.0.1:9/api"
    config["tariffs"][0]["refresh"] = {"timeout": 2}
    hub = await make_hub(config, SimClock(START))

    error = hub.states.get(ENTITY).attributes["last_error"]
    assert error.startswith("ClientConnectorError")
