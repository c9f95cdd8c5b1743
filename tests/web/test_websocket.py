"""The live websocket: authenticate with a token or a session cookie plus its CSRF token, subscribe
to entities and events, call services under the same role rules, and keep slow clients bounded."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType

from tests.web.conftest import Web
from web.websocket import Connection

TIMEOUT = 5.0


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=TIMEOUT)
    assert msg.type is WSMsgType.TEXT, msg
    return msg.json()  # type: ignore[no-any-return]


async def connect(session: aiohttp.ClientSession, **auth: str) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect("/api/websocket")
    assert (await receive(ws))["type"] == "auth_required"
    await ws.send_json({"type": "auth", **auth})
    answer = await receive(ws)
    assert answer["type"] == "auth_ok", answer
    return ws


async def test_a_token_client_follows_entities_and_events(web: Web) -> None:
    token = await web.token("integrator", "viewer")
    ws = await connect(web.client(), access_token=token)
    web.hub.states.set("charger.bay_01_1", "available", {"power_w": 0.0})
    web.hub.states.set("sensor.site_power", 1.0)
    await ws.send_json({"id": 1, "type": "subscribe_entities", "entity_ids": ["charger.*"]})
    assert (await receive(ws))["success"]
    initial = await receive(ws)
    assert list(initial["added"]) == ["charger.bay_01_1"]
    web.hub.states.set("sensor.site_power", 2.0)  # not subscribed: nothing arrives for it
    web.hub.states.set("charger.bay_01_1", "charging", {"power_w": 7200.0})
    changed = await receive(ws)
    assert changed["id"] == 1 and changed["changed"]["charger.bay_01_1"]["state"] == "charging"

    await ws.send_json({"id": 2, "type": "subscribe_events", "event_type": "my_event"})
    assert (await receive(ws))["success"]
    web.hub.bus.fire("my_event", {"answer": 42, "secret_key": "s3cr3t"})
    event = await receive(ws)
    assert event["event"]["data"] == {"answer": 42, "secret_key": "***"}
    await ws.send_json({"id": 3, "type": "unsubscribe_events", "subscription": 2})
    assert (await receive(ws))["success"]
    await ws.send_json({"id": 4, "type": "ping"})
    assert await receive(ws) == {"id": 4, "type": "pong"}
    await ws.send_json({"id": 5, "type": "get_states"})
    assert len((await receive(ws))["result"]) == 2
    await ws.close()


async def test_a_browser_authenticates_with_its_cookie_and_csrf_token(web: Web) -> None:
    browser, csrf = await web.browser("ops", "operator")
    ws = await connect(browser, csrf_token=csrf)
    await ws.close()
    # The cookie alone (what a cross-site page could make the browser send) is not enough.
    ws = await browser.ws_connect("/api/websocket")
    await receive(ws)
    await ws.send_json({"type": "auth", "csrf_token": "0" * 64})
    assert (await receive(ws))["type"] == "auth_invalid"
    assert (await ws.receive(timeout=TIMEOUT)).type in (WSMsgType.CLOSE, WSMsgType.CLOSED)


@pytest.mark.parametrize(
    "first",
    [{"type": "auth", "access_token": "evhub_forged"}, {"type": "ping", "id": 1}, "not json"],
)
async def test_anything_but_valid_credentials_first_is_refused(web: Web, first: Any) -> None:
    ws = await web.client().ws_connect("/api/websocket")
    await receive(ws)
    await (ws.send_str(first) if isinstance(first, str) else ws.send_json(first))
    assert (await receive(ws))["type"] == "auth_invalid"
    assert (await ws.receive(timeout=TIMEOUT)).type in (WSMsgType.CLOSE, WSMsgType.CLOSED)


async def test_a_cross_site_page_cannot_open_the_socket(web: Web) -> None:
    answer = await web.client(Origin="https://evil.example").get(
        "/api/websocket", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                   "Sec-WebSocket-Key": "x3JJHMbDL1EzLkh9GBhXDw==",
                                   "Sec-WebSocket-Version": "13"})  # fmt: skip
    assert answer.status == 403


async def test_service_calls_follow_the_roles(web: Web) -> None:
    web.hub.services.register("charger", "probe", lambda c: "probed")
    viewer = await connect(web.client(), access_token=await web.token("watcher", "viewer"))
    await viewer.send_json({"id": 1, "type": "call_service", "domain": "charger",
                            "service": "probe"})  # fmt: skip
    answer = await receive(viewer)
    assert not answer["success"] and answer["error"]["code"] == "unauthorized"
    operator = await connect(web.client(), access_token=await web.token("ops", "operator"))
    await operator.send_json({"id": 1, "type": "call_service", "domain": "charger",
                              "service": "probe", "service_data": {}})  # fmt: skip
    answer = await receive(operator)
    assert answer["success"] and answer["result"]["result"] == "probed"
    await operator.send_json({"id": 2, "type": "subscribe_events",
                              "event_type": "http_security_event"})  # fmt: skip
    assert (await receive(operator))["error"]["code"] == "unauthorized"


async def test_logging_out_closes_the_sockets_of_that_session(web: Web) -> None:
    browser, csrf = await web.browser("ops", "operator")
    ws = await connect(browser, csrf_token=csrf)
    await browser.post("/logout", data={"csrf_token": csrf})
    closed = await ws.receive(timeout=TIMEOUT)
    assert closed.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)


async def test_a_socket_closes_when_its_session_reaches_its_maximum_age(web: Web) -> None:
    browser, csrf = await web.browser("ops", "operator")
    ws = await connect(browser, csrf_token=csrf)
    await web.clock.advance(43_201)
    closed = await ws.receive(timeout=TIMEOUT)
    assert closed.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)


async def test_a_client_that_never_authenticates_is_dropped_on_the_hub_clock(web: Web) -> None:
    ws = await web.client().ws_connect("/api/websocket")
    await receive(ws)
    await web.clock.advance(11)
    assert (await receive(ws))["type"] == "auth_invalid"


class _StuckSocket:
    """A peer that never reads: every send waits forever."""

    closed = False

    async def send_str(self, data: str) -> None:
        await asyncio.Event().wait()

    async def close(self, **kw: Any) -> None:
        self.closed = True


async def test_a_slow_client_is_disconnected_not_buffered_without_bound(web: Web) -> None:
    request = SimpleNamespace(get=lambda key, default=None: "192.0.2.1", remote="192.0.2.1")
    conn = Connection(web.server, _StuckSocket(), request)  # type: ignore[arg-type]
    writer = asyncio.get_running_loop().create_task(conn.writer())
    for n in range(web.server.conf["websocket_queue"] + 50):
        conn.send({"n": n})
    await web.hub.block_till_done()
    assert conn.closing and conn.ws.closed  # type: ignore[attr-defined]
    assert conn.queue.qsize() <= 1
    writer.cancel()
