"""In a real Chromium: an owner sets the hub up, watches simulated chargers arrive live, stops a
session from a charger's page and sees the tile change on the overview; a viewer cannot act;
logging out ends the session on the server."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from tests.e2e.conftest import CHARGERS, Depot
from web.auth import Principal

pytestmark = pytest.mark.asyncio(loop_scope="module")

OWNER, OWNER_PASSWORD = "owner", "owner-passphrase-1"
WAIT = 30_000  # ms: real sockets and a real clock on a busy 2-core machine


async def _new_page(browser: Any, **options: Any) -> Any:
    context = await browser.new_context(**options)
    page = await context.new_page()
    page.set_default_timeout(WAIT)
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    return page


async def _login(page: Any, depot: Depot, name: str, password: str) -> None:
    await page.goto(f"{depot.url}/login")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{depot.url}/")


async def test_the_owner_sets_up_watches_chargers_and_stops_a_session(
    depot: Depot, browser: Any
) -> None:
    from playwright.async_api import expect

    page = await _new_page(browser, viewport={"width": 1280, "height": 900})
    await page.goto(f"{depot.url}/")
    await page.wait_for_url(re.compile(r"/setup$"))  # no user yet: the owner account first
    if path := depot.shot("setup"):
        await page.screenshot(path=path)
    await page.fill("input[name=name]", OWNER)
    await page.fill("input[name=password]", OWNER_PASSWORD)
    await page.fill("input[name=confirm]", OWNER_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{depot.url}/")
    await expect(page.locator("#live.on")).to_have_count(1)

    # The simulated chargers connect and their cars start charging: tiles appear and change live.
    await expect(page.locator(".tile")).to_have_count(CHARGERS)
    charging = page.locator(".tile.status-charging")
    await expect(charging.first).to_be_visible()
    await expect(page.locator(".tile .reason").first).not_to_be_empty()  # why this limit
    if path := depot.shot("overview"):
        await page.wait_for_timeout(5000)  # a few meter values: today's energy and its cost
        await page.reload()
        await expect(page.locator("#live.on")).to_have_count(1)
        await page.screenshot(path=path, full_page=True)

    entity = await charging.first.get_attribute("data-entity")
    tile = page.locator(f'.tile[data-entity="{entity}"]')
    charger = await _new_page(browser, viewport={"width": 1280, "height": 900},
                              storage_state=await page.context.storage_state())  # fmt: skip
    await charger.goto(f"{depot.url}/chargers/{entity}")
    await expect(charger.locator("h1 [data-field=status]")).to_have_text("charging")
    if path := depot.shot("charger"):
        await charger.wait_for_timeout(2500)
        await charger.screenshot(path=path, full_page=True)
    await charger.click('button[data-action="charger.stop"]')  # confirms in a dialog
    await expect(charger.locator(".flash.ok")).to_contain_text("charger.stop: done")
    await expect(charger.locator("h1 [data-field=status]")).not_to_have_text("charging")
    # The overview, open in the other tab all along, changed without a reload.
    await expect(tile).not_to_have_class(re.compile(r"status-charging"))
    await expect(tile.locator("[data-field=session]")).to_have_text("—")

    if depot.shot("sessions"):
        for name, url in (("sessions", "/sessions"), ("users", "/users")):
            await charger.goto(f"{depot.url}{url}")
            await charger.screenshot(path=depot.shot(name), full_page=True)
        await charger.goto(f"{depot.url}/sessions")
        await charger.click("table.sessions tbody tr a")
        await charger.wait_for_timeout(500)
        await charger.screenshot(path=depot.shot("session"), full_page=True)
        phone = await _new_page(browser, viewport={"width": 390, "height": 844},
                                device_scale_factor=2, is_mobile=True,
                                storage_state=await page.context.storage_state())  # fmt: skip
        await phone.goto(f"{depot.url}/")
        await expect(phone.locator(".tile")).to_have_count(CHARGERS)
        await phone.screenshot(path=depot.shot("phone"), full_page=False)
        await phone.context.close()

    # Logging out ends the session on the server, not just in this browser.
    cookie = next(c for c in await page.context.cookies() if c["name"] == "evhub_session")
    await page.click("#logout")
    await page.wait_for_url(re.compile(r"/login(\?next=.*)?$"))
    await page.goto(f"{depot.url}/chargers")
    await page.wait_for_url(re.compile(r"/login\?next=/chargers$"))
    if path := depot.shot("login"):
        await page.screenshot(path=path)
    replay = await page.context.request.get(
        f"{depot.url}/api/auth/me", headers={"Cookie": f"evhub_session={cookie['value']}"}
    )
    assert replay.status == 401
    # The other tab's session was its own copy of the same cookie: it is gone too.
    await charger.reload()
    await charger.wait_for_url(re.compile(r"/login"))
    await page.context.close()
    await charger.context.close()


async def test_a_viewer_sees_the_site_but_cannot_act(depot: Depot, browser: Any) -> None:
    from playwright.async_api import expect

    auth = depot.hub.http.auth  # type: ignore[union-attr]
    by = Principal("-", "test", "admin", "token", "-")
    await auth.add_user("watcher", "viewer", "viewer-passphrase-1", by)
    page = await _new_page(browser, viewport={"width": 1280, "height": 900})
    await _login(page, depot, "watcher", "viewer-passphrase-1")
    await expect(page.locator(".tile")).to_have_count(CHARGERS)
    entity = await page.locator(".tile").first.get_attribute("data-entity")
    await page.goto(f"{depot.url}/chargers/{entity}")
    await expect(page.locator("h1")).to_be_visible()
    assert await page.locator("#actions").count() == 0
    assert await page.locator('a[href="/users"]').count() == 0
    # Even a request forged from the page itself (with its CSRF token) is refused.
    status = await page.evaluate(
        """async (entity) => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const r = await fetch("/api/services/charger/stop", {method: "POST",
                headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
                body: JSON.stringify({entity_id: entity})});
            return r.status;
        }""",
        entity,
    )
    assert status == 403
    assert (await page.goto(f"{depot.url}/users")).status == 403
    await page.context.close()


async def test_no_page_breaks_the_content_security_policy(depot: Depot, browser: Any) -> None:
    page = await _new_page(browser, viewport={"width": 1280, "height": 900})
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if m.type == "error" else None)
    await _login(page, depot, OWNER, OWNER_PASSWORD)
    for url in ("/", "/chargers", "/sessions", "/automations", "/pending", "/users",
                "/security", "/settings", "/account"):  # fmt: skip
        await page.goto(f"{depot.url}{url}")
        await page.wait_for_load_state("networkidle")
    assert violations == []
    await page.context.close()
