"""The driver portal in a real Chromium on a phone-sized screen: a driver with an account and an
app token scans a connector's QR code (opens its URL), logs in with the code the hub e-mails
(read from a local aiosmtpd), sees the price, presses Start, and the simulated OCPP charger
starts a transaction for the driver's token; then Stop, and the session shows with its cost.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import yaml
from aiosmtpd.smtp import SMTP

from hub.bootstrap import create_hub
from tests.accounts.test_registration import Inbox
from tests.e2e.conftest import CHARGER_PASSWORD, Depot

pytestmark = pytest.mark.asyncio(loop_scope="module")

WAIT = 30_000  # ms
EMAIL, TOKEN = "anna@example.org", "APP00001"
ENTITY = "charger.bay_01_1"
LOGIN_CODE = re.compile(r"\b(\d{8})\b")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def portal_config(http_port: int, ocpp_port: int, smtp_port: int) -> dict[str, Any]:
    return {
        "hub": {"name": "Riverside depot", "time_zone": "Europe/Berlin", "currency": "EUR"},
        "http": {"host": "127.0.0.1", "port": http_port},
        "ocpp": {"host": "127.0.0.1", "port": ocpp_port, "ping_interval": 0,
                 "chargers": [{"id": "bay_01", "password": CHARGER_PASSWORD}]},
        "accounts": {
            "accounts": [{"id": "anna", "name": "Anna Driver", "email": EMAIL}],
            "tokens": [{"id": TOKEN, "account": "anna", "kind": "app", "type": "Central",
                        "label": "Anna's phone"}],
            "smtp": {"host": "127.0.0.1", "port": smtp_port, "sender": "hub@depot.example",
                     "security": "none"},
        },
        "billing": {"plans": {"public": {"name": "Public", "tax_rate": 19, "energy": 0.39}},
                    "assign": {"default": "public"},
                    "invoices": {"auto_issue_after_days": None}},
        "simulator": {
            "url": f"ws://127.0.0.1:{ocpp_port}/ocpp", "meter_interval": 2, "seed": 3,
            "arrivals": {"enabled": False},
            "chargers": [{"id": "bay_01", "ocpp": "1.6", "connectors": 1, "max_current": 16,
                          "password": CHARGER_PASSWORD}],
        },
    }  # fmt: skip


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def station(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Depot, Inbox]]:
    inbox = Inbox()
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(
        lambda: SMTP(inbox, hostname="mx.test", loop=loop), "127.0.0.1", 0
    )
    config_dir = tmp_path_factory.mktemp("portal")
    config = portal_config(_free_port(), _free_port(), smtp.sockets[0].getsockname()[1])
    (config_dir / "configuration.yaml").write_text(yaml.safe_dump(config))
    hub = create_hub(config_dir)
    await hub.start()
    try:
        assert hub.http is not None
        yield Depot(hub, hub.http.url), inbox
    finally:
        await hub.stop()
        smtp.close()
        await smtp.wait_closed()


async def _until(check: Any, what: str, seconds: float = 30) -> None:
    for _ in range(int(seconds * 10)):
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_driver_scans_logs_in_with_a_mailed_code_and_starts_and_stops(
    station: tuple[Depot, Inbox], browser: Any
) -> None:
    from playwright.async_api import expect

    depot, inbox = station
    hub = depot.hub

    def attrs() -> dict[str, Any]:
        state = hub.states.get(ENTITY)
        return dict(state.attributes) if state is not None else {}

    def status() -> str | None:
        state = hub.states.get(ENTITY)
        return state.state if state is not None else None

    await _until(lambda: status() == "available", "the simulated charger to be available")
    context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = await context.new_page()
    page.set_default_timeout(WAIT)
    violations: list[str] = []  # the portal has no script: nothing may be refused by the CSP
    page.on("console", lambda m: violations.append(m.text) if "Refused" in m.text else None)
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)

    # The QR code's URL, not logged in yet: the login comes first, then the charger.
    await page.goto(f"{depot.url}/portal/c/{ENTITY}")
    await page.wait_for_url(re.compile(r"/portal/login\?next="))
    await page.fill("input[name=email]", EMAIL)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Enter your code")
    to, _, body = await inbox.next()
    assert to == [EMAIL]
    code = LOGIN_CODE.search(body)[1]  # type: ignore[index]
    await page.fill("input[name=code]", code)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{depot.url}/portal/c/{ENTITY}")

    await expect(page.locator("#price")).to_contain_text("0.39 EUR/kWh")
    await expect(page.locator("#price")).to_contain_text("19 % VAT")
    await expect(page.locator("#status")).to_have_text("available")
    if path := depot.shot("portal_charger"):
        await page.screenshot(path=path, full_page=True)
    await page.click("#start")
    await page.wait_for_url(re.compile(r"\?done=started$"))
    await expect(page.locator(".flash.ok")).to_contain_text("Charging was started")

    # The simulated charger plugs a car in and starts a transaction for the driver's token.
    await _until(lambda: attrs().get("session_id") and attrs().get("id_tag") == TOKEN,
                 "a transaction for the app token")  # fmt: skip
    await page.reload()
    await expect(page.locator("#stop")).to_be_visible()
    await page.goto(f"{depot.url}/portal/")
    await expect(page.locator("#sessions tr[data-status=active]")).to_have_count(1)
    await expect(page.locator("#tokens")).to_contain_text("Anna's phone")

    await page.goto(f"{depot.url}/portal/c/{ENTITY}")
    await page.click("#stop")
    await page.wait_for_url(re.compile(r"\?done=stopped$"))
    await _until(lambda: not attrs().get("session_id"), "the transaction to stop")
    await page.goto(f"{depot.url}/portal/")
    row = page.locator("#sessions tbody tr").first
    await expect(row).to_have_attribute("data-status", "completed")
    await expect(row).to_contain_text("EUR")
    if path := depot.shot("portal_home"):
        await page.screenshot(path=path, full_page=True)
    assert violations == []
    assert [u for u in missing if not u.endswith("/favicon.ico")] == []
    await context.close()
