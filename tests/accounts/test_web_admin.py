"""The accounts admin page of the web UI (`/plugins/accounts/`): viewers read (token ids masked),
admins change through the `accounts.*` services with the page's CSRF token, everything escaped."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.clock import SimClock
from hub.core import CoreState
from plugins.accounts.directory import Directory
from tests.accounts.conftest import StartHub
from tests.accounts.support import write_config
from tests.web.conftest import Web

PAGE = "/plugins/accounts/"
HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
async def web(tmp_path: Path, clock: SimClock, start_hub: StartHub) -> AsyncIterator[Web]:
    hub = await start_hub(write_config(tmp_path / "config", http={"port": 0}))
    assert hub.http is not None
    w = Web(hub, hub.http, clock, hub.http.url)
    await w.user("owner")
    yield w
    for session in w.sessions:
        await session.close()
    if hub.state is not CoreState.STOPPED:
        await hub.stop()


def directory(w: Web) -> Directory:
    return w.hub.data["accounts"].directory


def page_csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "no CSRF token in the page's forms"
    return found.group(1)


async def test_a_viewer_reads_masked_ids_and_may_not_change(web: Web) -> None:
    session, csrf = await web.browser("watcher", "viewer")
    answer = await session.get(PAGE)
    assert answer.status == 200
    page = await answer.text()
    assert f'href="{PAGE}"' in page and "Drivers" in page  # linked in the navigation
    assert "ACME Logistics" in page and "Van 17 driver" in page and "disabled" in page
    assert "****B2C3" in page and "04A1B2C3" not in page  # masked, never the raw id
    assert "<form" not in page.split('class="plugin"', 1)[1]  # no admin forms
    for path, data in (
        ("accounts", {"name": "Mallory"}),
        ("tokens/block", {"id": "04A1B2C3"}),
    ):
        refused = await session.post(
            PAGE + path, data={**data, "csrf_token": csrf}, allow_redirects=False
        )
        assert refused.status == 403
    assert "04A1B2C3" in directory(web).snap.tokens
    assert not directory(web).snap.tokens["04A1B2C3"].blocked
    assert all(a.name != "Mallory" for a in directory(web).snap.accounts.values())


async def test_an_admin_creates_an_account_adds_and_blocks_a_token(web: Web) -> None:
    session, _ = await web.browser("boss", "admin")
    page = await (await session.get(PAGE)).text()
    csrf = page_csrf(page)
    assert "04A1B2C3" in page  # admins see raw ids

    created = await session.post(
        PAGE + "accounts",
        data={"id": "anna", "name": "Anna Driver", "organisation": "acme", "csrf_token": csrf},
        allow_redirects=False,
    )
    assert created.status == 303 and created.headers["Location"] == PAGE
    account = directory(web).snap.accounts["anna"]
    assert account.name == "Anna Driver" and account.organisation_id == "acme"

    added = await session.post(
        PAGE + "tokens",
        data={"id": "ABCD1234", "account": "anna", "csrf_token": csrf},
        allow_redirects=False,
    )
    assert added.status == 303
    assert directory(web).snap.tokens["ABCD1234"].account_id == "anna"

    blocked = await session.post(
        PAGE + "tokens/block", data={"id": "ABCD1234", "csrf_token": csrf}, allow_redirects=False
    )
    assert blocked.status == 303
    assert directory(web).snap.tokens["ABCD1234"].blocked
    after = await (await session.get(PAGE)).text()
    assert "Token blocked." in after and f'action="{PAGE}tokens/unblock"' in after

    unblocked = await session.post(
        PAGE + "tokens/unblock", data={"id": "ABCD1234", "csrf_token": csrf},
        allow_redirects=False,
    )  # fmt: skip
    assert unblocked.status == 303
    assert not directory(web).snap.tokens["ABCD1234"].blocked

    # Without the page's CSRF token nothing changes; a service error is shown, not a 500.
    forged = await session.post(PAGE + "tokens/block", data={"id": "ABCD1234"})
    assert forged.status == 403 and not directory(web).snap.tokens["ABCD1234"].blocked
    unknown = await session.post(PAGE + "tokens/block", data={"id": "NOPE0000", "csrf_token": csrf})
    assert unknown.status == 200 and 'class="plugin"' in await unknown.text()


async def test_a_hostile_account_name_is_escaped(web: Web) -> None:
    session, _ = await web.browser("boss", "admin")
    csrf = page_csrf(await (await session.get(PAGE)).text())
    await session.post(PAGE + "accounts", data={"id": "evil", "name": HOSTILE, "csrf_token": csrf})
    assert directory(web).snap.accounts["evil"].name == HOSTILE
    for who in ("boss", "watcher"):
        if who == "watcher":
            session, _ = await web.browser("watcher", "viewer")
        page = await (await session.get(PAGE)).text()
        assert HOSTILE not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
