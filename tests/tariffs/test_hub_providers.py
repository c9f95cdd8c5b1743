"""Every provider end to end: a hub asks the local server the way it would ask the real API, and
the entity shows the right price. EnergyZero answers with its recorded answer; ENTSO-E, aWATTar,
Octopus and Tibber with payloads built from their API documentation (payloads.py), since no
recording of theirs exists. API tokens never show up in logs, states or events."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from hub.bus import Event
from hub.clock import SimClock
from tests.tariffs import payloads
from tests.tariffs.conftest import MakeHub
from tests.tariffs.support import FeedServer, Seen, json_answer

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # 07:00 in Berlin, a Monday
MIDNIGHT = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)  # 00:00 in Berlin
H = timedelta(hours=1)
HOURLY = [60.0 + 5 * i for i in range(24)]  # EUR/MWh: 07:00 local is hour 7 -> 95.0
TOKEN = "tok-3f9a8b7c6d5e4f3a2b1c"
AGILE_PENCE = [10.5 + i for i in range(96)]


@dataclass
class Case:
    source: dict[str, Any]
    prefix: str
    answer: Callable[[web.Request], web.StreamResponse]
    price: float  # expected at NOW
    check: Callable[[Seen], None]
    now: datetime = NOW
    time_zone: str = "Europe/Berlin"
    extra: dict[str, Any] | None = None


def entsoe(request: web.Request) -> web.StreamResponse:
    if request.query.get("securityToken") != TOKEN:
        return web.Response(status=401, text="Unauthorized")
    body = payloads.entsoe_a44(
        payloads.entsoe_period(MIDNIGHT, HOURLY), start=MIDNIGHT, end=MIDNIGHT + 24 * H
    )
    return web.Response(body=body, content_type="text/xml")


def check_entsoe(seen: Seen) -> None:
    assert seen.query == {
        "securityToken": TOKEN,
        "documentType": "A44",
        "in_Domain": "10Y1001A1001A82H",
        "out_Domain": "10Y1001A1001A82H",
        "periodStart": "202603012300",
        "periodEnd": "202603032300",
    }


def check_awattar(seen: Seen) -> None:
    assert seen.query == {"start": str(int(MIDNIGHT.timestamp() * 1000)),
                          "end": str(int((MIDNIGHT + 48 * H).timestamp() * 1000))}  # fmt: skip


def check_octopus(seen: Seen) -> None:
    assert seen.path == "/octopus/v1/products/AGILE-24-10-01/electricity-tariffs/" \
        "E-1R-AGILE-24-10-01-C/standard-unit-rates/"  # fmt: skip
    assert (seen.query["period_from"], seen.query["period_to"]) == (
        "2026-03-02T00:00:00Z",
        "2026-03-04T00:00:00Z",
    )  # fmt: skip  (midnight in London)


def tibber(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Authorization") != f"Bearer {TOKEN}":
        return json_answer(json.dumps({"errors": [{"message": "invalid token"}]}).encode())
    today = payloads.tibber_entries(MIDNIGHT, [0.20 + i / 100 for i in range(24)], BERLIN)
    return json_answer(payloads.tibber(today))


def check_tibber(seen: Seen) -> None:
    assert seen.method == "POST" and "priceInfo" in json.loads(seen.body)["query"]


def check_energyzero(seen: Seen) -> None:
    assert seen.query == {
        "fromDate": "2022-12-06T23:00:00.000Z", "tillDate": "2022-12-08T22:59:59.999Z",
        "interval": "4", "usageType": "1", "inclBtw": "true",
    }  # fmt: skip


GENERIC_JSON = json.dumps(
    {"prices": [{"t": (MIDNIGHT + i * H).isoformat(), "ct": 20 + i} for i in range(24)]}
).encode()
GENERIC_CSV = "from,eur_mwh\n" + "".join(
    f"{(MIDNIGHT + i * H).astimezone(BERLIN).replace(tzinfo=None).isoformat()},{100 + i}\n"
    for i in range(24)
)  # local times without an offset: read in the hub's time zone

CASES = {
    "entsoe": Case(
        {"entsoe": {"token": TOKEN, "area": "10Y1001A1001A82H"}}, "/entsoe", entsoe, 0.095,
        check_entsoe,
    ),
    "awattar": Case(
        {"awattar": {"country": "de"}}, "/awattar",
        lambda r: json_answer(payloads.awattar(MIDNIGHT, HOURLY, "de")),
        round((0.095 + 0.02) * 1.19, 6), check_awattar, extra={"markup": 0.02, "vat": 0.19},
    ),
    "octopus": Case(
        {"octopus": {"product": "AGILE-24-10-01", "tariff_code": "E-1R-AGILE-24-10-01-C"}},
        "/octopus", lambda r: json_answer(payloads.octopus(MIDNIGHT, AGILE_PENCE)),
        0.245, check_octopus, time_zone="Europe/London", now=MIDNIGHT + 7 * H,
    ),
    "tibber": Case({"tibber": {"token": TOKEN}}, "/tibber", tibber, 0.27, check_tibber),
    "energyzero": Case(
        {"energyzero": {}}, "/energyzero",
        lambda r: json_answer(payloads.ENERGYZERO_FILE.read_bytes()), 0.46, check_energyzero,
        now=datetime(2022, 12, 7, 8, 30, tzinfo=UTC), time_zone="Europe/Amsterdam",
    ),
    "json": Case(
        {"json": {"url": "", "items": "prices", "time_template": "{{ item.t }}",
                  "value_template": "{{ item.ct / 100 }}"}},
        "/generic.json", lambda r: json_answer(GENERIC_JSON), 0.27,
        lambda seen: None,
    ),
    "csv": Case(
        {"csv": {"url": "", "time_template": "{{ row['from'] }}",
                 "value_template": "{{ row.eur_mwh | float / 1000 }}",
                 "headers": {"X-Api-Key": TOKEN}}},
        "/generic.csv", lambda r: web.Response(text=GENERIC_CSV, content_type="text/csv"), 0.107,
        lambda seen: None,
    ),
}  # fmt: skip


def configure(case: Case, server: FeedServer) -> dict[str, Any]:
    (name, block), = case.source.items()  # fmt: skip
    key = "url" if name in ("json", "csv") else "base_url"
    block = {**block, key: server.url(case.prefix)}
    currency = "GBP" if name == "octopus" else "EUR"
    tariff = {"name": "grid_import", "source": {name: block}, **(case.extra or {})}
    return {"hub": {"time_zone": case.time_zone, "currency": currency}, "tariffs": [tariff]}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_each_provider_through_a_hub(
    name: str, make_hub: MakeHub, server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    case = CASES[name]
    server.answers[case.prefix] = case.answer
    hub = await make_hub(configure(case, server), SimClock(case.now))

    state = hub.states.get("tariff.grid_import")
    assert state is not None and state.attributes["stale"] is False, state.attributes
    assert state.state == pytest.approx(case.price)
    (seen,) = server.requests_to(case.prefix)
    case.check(seen)
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("name", ["entsoe", "tibber", "csv"])
async def test_tokens_never_reach_logs_states_or_events(
    name: str, make_hub: MakeHub, server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    case = CASES[name]
    server.answers[case.prefix] = case.answer
    hub = await make_hub(configure(case, server), SimClock(case.now))
    seen: list[Event] = []
    for event_type in ("tariff_fetch_failed", "state_changed", "call_service"):
        hub.bus.listen(event_type, seen.append)

    for mode in ("500", "garbage"):
        server.mode = mode
        result = await hub.services.call("tariffs", "refresh")
        assert result["grid_import"]["ok"] is False
    await server.stop()  # and the server goes away
    result = await hub.services.call("tariffs", "refresh")

    assert result["grid_import"]["error"]
    assert TOKEN not in caplog.text
    assert TOKEN not in repr([s.as_dict() for s in hub.states.all()])
    assert TOKEN not in repr([e.as_dict() for e in seen])
