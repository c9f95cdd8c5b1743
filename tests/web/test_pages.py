"""The pages render what the hub knows, and whatever a charger sends stays inert text: given a
charger whose vendor, error and DataTransfer strings are markup, no page carries it as HTML."""

from __future__ import annotations

import re
from datetime import timedelta

import aiohttp

from hub.charging.session import MeterReading, Session
from hub.storage.sessions import SessionStore
from tests.conftest import SIM_START
from tests.web.conftest import Web

HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
PAGES = ("/", "/chargers", "/chargers/charger.evil_1", "/sessions", "/sessions/evil-session",
         "/automations", "/automations/evil", "/pending", "/users", "/security", "/settings",
         "/account")  # fmt: skip


async def _hostile_world(web: Web) -> None:
    hub = web.hub
    hub.states.set("charger.evil_1", "faulted", {
        "friendly_name": HOSTILE, "vendor": HOSTILE, "model": '"><img src=x onerror=alert(1)>',
        "error_code": HOSTILE, "id_tag": HOSTILE, "session_id": "evil-session",
        "limit_reason": HOSTILE, "vendor_info": HOSTILE, "data_transfer": {"data": HOSTILE},
        "charge_point_id": HOSTILE, "connector": 1, "capabilities": ["start_stop", "reset"],
        "power_w": 1000.0,
    })  # fmt: skip
    hub.states.set("automation.evil", "on", {"id": "evil", "friendly_name": HOSTILE})
    hub.bus.fire("ocpp_charger_pending", {"charger_id": HOSTILE, "address": HOSTILE})
    hub.bus.fire("ocpp_security_event", {"charger_id": HOSTILE, "type": HOSTILE,
                                         "detail": HOSTILE, "address": "192.0.2.7"})  # fmt: skip
    assert hub.recorder is not None
    store = SessionStore(hub.recorder)
    await store.start_session(Session("evil-session", HOSTILE, 1, HOSTILE, SIM_START,
                                      id_tag=HOSTILE, meter_start_wh=0.0))  # fmt: skip
    await store.add_readings([MeterReading(HOSTILE, 1, SIM_START + timedelta(minutes=10),
                                           "Energy.Active.Import.Register", 1500.0, "Wh",
                                           session_id="evil-session")])  # fmt: skip
    await hub.recorder.flush()


def _scripts(page: str) -> list[str]:
    return re.findall(r"<script[^>]*>", page)


async def test_hostile_strings_from_chargers_are_escaped_on_every_page(web: Web) -> None:
    await _hostile_world(web)
    admin, _ = await web.browser("boss")
    for path in PAGES:
        answer = await admin.get(path)
        page = await answer.text()
        assert answer.status == 200, (path, answer.status, page[:300])
        assert HOSTILE not in page, path
        assert "<img src=x" not in page, path
        # Only our own script files, by src: no inline script on any page.
        for tag in _scripts(page):
            assert re.fullmatch(r'<script src="/static/[a-z]+\.js\?v=[0-9a-f]+" defer>', tag), tag
        assert "style=" not in page, path  # CSP has no 'unsafe-inline' for styles either
    charger = await (await admin.get("/chargers/charger.evil_1")).text()
    assert ESCAPED in charger
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in charger
    pending = await (await admin.get("/pending")).text()
    assert ESCAPED in pending
    security = await (await admin.get("/security")).text()
    assert ESCAPED in security


async def test_the_api_returns_hostile_strings_as_json_data_not_html(web: Web) -> None:
    await _hostile_world(web)
    api = web.bearer(await web.token("integrator", "viewer"))
    answer = await api.get("/api/chargers")
    assert answer.content_type == "application/json"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert (await answer.json())[0]["name"] == HOSTILE


async def test_the_overview_shows_tree_tiles_and_todays_energy(web: Web) -> None:
    from hub.charging.site import Site

    web.hub.site = Site.from_config({
        "id": "yard", "max_current": 63,
        "circuits": [{"id": "row", "max_current": 32, "chargers": [
            {"entity": "charger.bay_01_1", "phases": 3, "max_current": 32,
             "phase_rotation": "L2L3L1"}]}],
    })  # fmt: skip
    web.hub.states.set("charger.bay_01_1", "charging", {
        "friendly_name": "Bay 1", "current_a": [16.0, 8.0, 0.0], "power_w": 5500.0,
        "limit_reason": "row L1 at limit", "session_id": "s1", "id_tag": "04A1B2C3",
    })  # fmt: skip
    admin, _ = await web.browser("boss")
    page = await (await admin.get("/")).text()
    assert "row L1 at limit" in page and "Bay 1" in page
    site = await (await admin.get("/api/site")).json()
    row = next(n for n in site["nodes"] if n["id"] == "row")
    assert row["current_a"] == [0.0, 16.0, 8.0]  # charger L1 is wired to grid L2
    assert row["utilization"] == 0.5


async def test_a_viewer_gets_pages_without_any_action_form(web: Web) -> None:
    await _hostile_world(web)
    viewer, _ = await web.browser("watcher", "viewer")
    for path in ("/", "/chargers", "/chargers/charger.evil_1", "/automations"):
        page = await (await viewer.get(path)).text()
        assert "/actions/service" not in page, path
    nav = await (await viewer.get("/")).text()
    assert 'href="/users"' not in nav and 'href="/account"' in nav


async def test_an_operator_stops_a_session_from_the_charger_page(web: Web) -> None:
    from hub.charging.charger import ChargerCapability, ChargerEntity, CommandResult

    class Charger(ChargerEntity):
        supported = frozenset({ChargerCapability.START_STOP})
        stopped = False

        async def _do_stop(self) -> CommandResult:
            Charger.stopped = True
            self.update(status="finishing")
            return CommandResult(True, "Accepted")

    await web.hub.entities.add("test", [Charger("bay-1", "Bay 1")])
    entity_id = web.hub.states.entity_ids("charger")[0]
    operator, csrf = await web.browser("ops", "operator")
    page = await (await operator.get(f"/chargers/{entity_id}")).text()
    assert 'data-action="charger.stop"' in page
    done = await operator.post(
        "/actions/service",
        data={"csrf_token": csrf, "domain": "charger", "service": "stop",
              "data.entity_id": entity_id, "return_to": f"/chargers/{entity_id}"},
        allow_redirects=False,
    )  # fmt: skip
    assert (done.status, done.headers["Location"]) == (303, f"/chargers/{entity_id}")
    assert Charger.stopped and web.hub.states.get(entity_id).state == "finishing"  # type: ignore[union-attr]
    after = await (await operator.get(f"/chargers/{entity_id}")).text()
    assert "charger.stop: done" in after


async def test_static_files_are_served_with_a_content_hash(web: Web) -> None:
    admin, _ = await web.browser("boss")
    page = await (await admin.get("/")).text()
    for url in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
        answer = await admin.get(url)
        assert answer.status == 200, url
    assert isinstance(admin, aiohttp.ClientSession)
