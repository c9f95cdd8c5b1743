"""The driver portal's guards, with the services it asks stood in for: every `/portal/*` route but
the login forms and a charger's landing page refuses a caller without a driver session (an
operator's session is not one), every POST needs the driver's CSRF token, codes are checked by
the accounts service, and redirects stay inside the portal."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.web.conftest import Web, pre_token
from tests.web.test_routes import PORTAL, _concrete

EMAIL, CODE, TOKEN = "anna@example.org", "12345678", "APP00001"
CHARGER = "charger.bay_01_1"
ACCOUNT = {
    "id": "anna",
    "name": "Anna",
    "status": "active",
    "tokens": [{"id": TOKEN, "kind": "app", "status": "Accepted", "masked": "****0001",
                "label": None}],
}  # fmt: skip


class Fakes:
    def __init__(self, w: Web) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        services = w.hub.services
        services.register("accounts", "login_code", self._record("login_code", {"ok": 1}))
        services.register("accounts", "login_verify", self._verify)
        services.register("accounts", "get_account", self._record("get_account", ACCOUNT))
        services.register("charger", "start", self._record("start", {"accepted": True}))
        services.register("charger", "stop", self._record("stop", {"accepted": True}))
        w.hub.states.set(CHARGER, "available", attributes={"friendly_name": "Bay 1 <b>"})

    def _record(self, name: str, answer: Any) -> Any:
        def handler(call: Any) -> Any:
            self.calls.append((name, dict(call.data)))
            return answer

        return handler

    def _verify(self, call: Any) -> Any:
        ok = call.data["email"] == EMAIL and call.data["code"] == CODE
        return "anna" if ok else None


@pytest.fixture
async def portal(web: Web) -> AsyncIterator[tuple[Web, Fakes]]:
    await web.user("owner")
    yield web, Fakes(web)


def driver_csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "no driver CSRF token on the page"
    return found.group(1)


async def log_in(
    session: aiohttp.ClientSession, code: str = CODE, next_: str = "/portal/"
) -> aiohttp.ClientResponse:
    page = await (await session.get(f"/portal/login?next={next_}")).text()
    sent = await session.post("/portal/login", data={"email": EMAIL, "pre_token": pre_token(page),
                                                      "next": next_})  # fmt: skip
    assert sent.status == 200
    form = await sent.text()
    assert "Enter your code" in form
    return await session.post(
        "/portal/login/code",
        data={"email": EMAIL, "code": code, "pre_token": pre_token(form), "next": next_},
        allow_redirects=False,
    )


async def test_portal_routes_refuse_a_caller_without_a_driver_session(
    portal: tuple[Web, Fakes],
) -> None:
    w, fakes = portal
    operator, csrf = await w.browser("ops", "admin")  # a user's session is not a driver's
    callers = [w.client(), w.client(Cookie="evhub_driver=forged"), operator]
    assert w.server.routes is not None
    driver_routes = [(m, p) for m, p, kind in PORTAL if kind == "driver"]
    for caller in callers:
        for method, path in driver_routes:
            answer = await caller.request(method, _concrete(path), allow_redirects=False,
                                          data={"csrf_token": csrf})  # fmt: skip
            assert answer.status == 303, (method, path)
            assert answer.headers["Location"].startswith("/portal/login?next="), (method, path)
        landing = await caller.get(f"/portal/c/{CHARGER}", allow_redirects=False)
        assert landing.status == 303
        assert landing.headers["Location"] == f"/portal/login?next=/portal/c/{CHARGER}"
    assert not [c for c in fakes.calls if c[0] in ("start", "stop")]
    # The QR code is for the operator UI: a driver session does not open it either.
    driver = w.client()
    assert (await log_in(driver)).status == 303
    qr = await driver.get(f"/portal/qr/{CHARGER}.svg", allow_redirects=False)
    assert qr.status == 303 and qr.headers["Location"].startswith("/login?next=")


async def test_a_driver_logs_in_with_a_code_and_starts_and_stops_with_csrf(
    portal: tuple[Web, Fakes],
) -> None:
    w, fakes = portal
    driver = w.client()
    assert (await log_in(driver, code="00000000")).status == 401
    answer = await log_in(driver, next_=f"/portal/c/{CHARGER}")
    assert answer.status == 303 and answer.headers["Location"] == f"/portal/c/{CHARGER}"
    cookie = answer.headers.getall("Set-Cookie")
    (session_cookie,) = [c for c in cookie if c.startswith("evhub_driver=")]
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie
    assert ("login_code", {"email": EMAIL}) in fakes.calls

    page = await (await driver.get(f"/portal/c/{CHARGER}")).text()
    assert "Bay 1 &lt;b&gt;" in page and "Price not configured" in page  # no billing here
    assert "<script" not in page
    csrf = driver_csrf(page)
    start = f"/portal/c/{CHARGER}/start"
    for data in ({}, {"csrf_token": "forged"}):
        assert (await driver.post(start, data=data, allow_redirects=False)).status == 403
    assert not [c for c in fakes.calls if c[0] == "start"]
    started = await driver.post(start, data={"csrf_token": csrf}, allow_redirects=False)
    assert started.headers["Location"] == f"/portal/c/{CHARGER}?done=started"
    assert ("start", {"entity_id": CHARGER, "id_tag": TOKEN}) in fakes.calls

    # Stop only what charges for this driver.
    stop = f"/portal/c/{CHARGER}/stop"
    refused = await driver.post(stop, data={"csrf_token": csrf}, allow_redirects=False)
    assert refused.headers["Location"].endswith("?done=notyours")
    w.hub.states.set(CHARGER, "charging", attributes={"session_id": "s1", "id_tag": TOKEN})
    page = await (await driver.get(f"/portal/c/{CHARGER}")).text()
    assert 'id="stop"' in page and 'id="start"' not in page
    stopped = await driver.post(stop, data={"csrf_token": csrf}, allow_redirects=False)
    assert stopped.headers["Location"].endswith("?done=stopped")
    assert ("stop", {"entity_id": CHARGER}) in fakes.calls

    home = await (await driver.get("/portal/")).text()
    assert "****0001" in home and TOKEN not in home  # tokens shown masked
    assert (await driver.post("/portal/logout", data={}, allow_redirects=False)).status == 403
    out = await driver.post("/portal/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert out.headers["Location"] == "/portal/login"
    again = await driver.get("/portal/", allow_redirects=False)
    assert again.status == 303 and again.headers["Location"].startswith("/portal/login")


async def test_login_forms_need_their_token_and_redirects_stay_in_the_portal(
    portal: tuple[Web, Fakes],
) -> None:
    w, fakes = portal
    driver = w.client()
    forged = await driver.post("/portal/login", data={"email": EMAIL, "pre_token": "x"})
    assert forged.status == 403 and not fakes.calls
    for target in ("//evil.example/", "https://evil.example/", "/settings"):
        answer = await log_in(w.client(), next_=target)
        assert answer.headers["Location"] == "/portal/", target


async def test_the_qr_code_encodes_the_connector_portal_url(portal: tuple[Web, Fakes]) -> None:
    w, _ = portal
    viewer, _ = await w.browser("watcher", "viewer")
    answer = await viewer.get(f"/portal/qr/{CHARGER}.svg")
    assert answer.status == 200 and answer.content_type == "image/svg+xml"
    svg = await answer.text()
    assert svg.lstrip().startswith(("<?xml", "<svg")) and f"/portal/c/{CHARGER}" in svg
    assert (await viewer.get("/portal/qr/charger.nope.svg")).status == 404
    page = await (await viewer.get(f"/chargers/{CHARGER}")).text()
    assert f'href="/portal/qr/{CHARGER}.svg"' in page
