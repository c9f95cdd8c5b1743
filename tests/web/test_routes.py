"""Every route of the app, core and plugin, refuses a caller who has not logged in; roles decide
the rest. The routes are enumerated from the running app, so a new one cannot slip through."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from markupsafe import Markup

from hub.clock import SimClock
from hub.plugins import hookimpl
from tests.web.conftest import Web, start_web

# The explicit allow-list: everything else needs a user.
PUBLIC = {("GET", "/login"), ("POST", "/login"), ("GET", "/setup"), ("POST", "/setup")}
# The driver portal's own group (drivers are not users): public are its login forms and a
# charger's landing page (which sends a driver without a session to the login); the rest needs
# a driver session (tests/web/test_portal.py).
PORTAL = {
    ("GET", "/portal/login", "public"),
    ("POST", "/portal/login", "public"),
    ("POST", "/portal/login/code", "public"),
    ("GET", "/portal/c/{entity_id}", "public"),
    ("GET", "/portal/", "driver"),
    ("POST", "/portal/logout", "driver"),
    ("POST", "/portal/c/{entity_id}/start", "driver"),
    ("POST", "/portal/c/{entity_id}/stop", "driver"),
}
PORTAL_PUBLIC = {(m, p) for m, p, kind in PORTAL if kind == "public"}
HOSTILE = "<script>alert(1)</script>"


class HelloPlugin:
    """A plugin that adds an API route, a page and an admin-only action, and tries a few
    routes it must not get."""

    @hookimpl
    def hub_web_routes(self, register: Callable[..., None]) -> None:
        async def data(request: web.Request) -> Any:
            return {"hello": "world"}

        def page(request: web.Request) -> Any:
            return HOSTILE  # plain text: escaped

        def markup(request: web.Request) -> Any:
            return Markup("<p id='hello'>made by the plugin</p>")

        async def act(request: web.Request) -> Any:
            return {"done": True}

        register("GET", "/api/plugins/hello/data", data)
        register("GET", "/plugins/hello", page, page="Hello")
        register("GET", "/plugins/hello/markup", markup)
        register("POST", "/api/plugins/hello/act", act, roles=["admin"])
        register("GET", "/api/states/hijack", data)  # outside its namespace: refused
        register("GET", "/plugins/other/page", data)  # another plugin's namespace: refused
        register("GET", "/api/plugins/hello/x", data, roles=["root"])  # no such role: refused


@pytest.fixture
async def web_with_plugin(tmp_path: Path, clock: SimClock) -> AsyncIterator[Web]:
    w = await start_web(tmp_path, clock, plugins={"hello": HelloPlugin()})
    yield w
    for s in w.sessions:
        await s.close()
    await w.hub.stop()


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def _all_routes(w: Web) -> list[tuple[str, str]]:
    assert w.server.app is not None
    found = []
    for route in w.server.app.router.routes():
        info = route.get_info()
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        found.append((route.method, path))
    return found


async def test_every_route_refuses_an_anonymous_caller(web_with_plugin: Web) -> None:
    w = web_with_plugin
    await w.user("owner")  # with no user at all, pages would send everyone to /setup
    anonymous = w.client()
    routes = _all_routes(w)
    assert len(routes) > 40 and ("GET", "/api/plugins/hello/data") in routes
    checked = 0
    for method, path in routes:
        if method == "HEAD" or (method, path) in PUBLIC | PORTAL_PUBLIC:
            continue
        url = _concrete(path)
        if path.startswith("/static"):
            continue  # the static files are public (checked below)
        answer = await anonymous.request(method, url, allow_redirects=False,
                                         data=b"{}" if method != "GET" else None)  # fmt: skip
        if path.startswith("/api"):
            assert answer.status == 401, (method, path, answer.status)
            assert (await answer.json())["message"]
        else:
            assert answer.status == 303, (method, path, answer.status)
            portal = (method, path, "driver") in PORTAL
            login = "/portal/login?next=" if portal else "/login?next="
            assert answer.headers["Location"].startswith(login), (method, path)
        checked += 1
    assert checked >= 40
    # A forged bearer token or session cookie is no better than none.
    for headers in ({"Authorization": "Bearer evhub_forged"}, {"Cookie": "evhub_session=forged"}):
        assert (await w.client(**headers).get("/api/states")).status == 401
    assert (await anonymous.get("/static/app.js")).status == 200


async def test_the_allow_lists_are_login_setup_static_and_the_portal_group(
    web_with_plugin: Web,
) -> None:
    routes = web_with_plugin.server.routes
    assert routes is not None
    public = {(s.method, s.path) for s in routes.specs.values() if s.role is None and not s.portal}
    assert public == PUBLIC
    portal = {(s.method, s.path, s.portal) for s in routes.specs.values() if s.portal}
    assert portal == PORTAL
    assert all(s.role is None for s in routes.specs.values() if s.portal)
    websocket = [s.path for s in routes.specs.values() if s.websocket]
    assert websocket == ["/api/websocket"]
    for route in web_with_plugin.server.app.router.routes():  # type: ignore[union-attr]
        static = route.get_info().get("prefix") == "/static"
        assert route in routes.specs or static or route.method == "HEAD"


async def test_a_plugin_gets_its_routes_in_its_own_namespace_only(web_with_plugin: Web) -> None:
    w = web_with_plugin
    token = await w.token("integrator", "operator")
    api = w.bearer(token)
    assert await (await api.get("/api/plugins/hello/data")).json() == {"hello": "world"}
    assert (await api.post("/api/plugins/hello/act")).status == 403  # admin only
    assert (await api.get("/api/states/hijack")).status == 404
    assert (await api.get("/plugins/other/page")).status == 404
    assert (await api.get("/api/plugins/hello/x")).status == 404
    document = await (await api.get("/api/openapi.json")).json()
    assert "get" in document["paths"]["/api/plugins/hello/data"]

    admin, _ = await w.browser("boss")
    page = await (await admin.get("/plugins/hello")).text()
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '<a href="/plugins/hello"' in page  # in the navigation, by its page title
    assert (
        "<p id='hello'>made by the plugin</p>"
        in await (await admin.get("/plugins/hello/markup")).text()
    )


async def test_a_route_added_behind_the_table_is_refused(web: Web) -> None:
    assert web.server.app is not None
    router = web.server.app.router

    async def sneaky(request: web.Request) -> web.Response:
        return web.Response(text="secret")

    router._frozen = False  # what a careless plugin reaching into the app would do
    try:
        router.add_get("/sneaky", sneaky)
    finally:
        router._frozen = True
    await web.user("owner")
    browser, _ = await web.browser("boss")
    assert (await browser.get("/sneaky")).status == 403


async def test_roles_decide_who_may_call_which_service(web: Web) -> None:
    calls: list[str] = []
    web.hub.services.register("charger", "probe", lambda c: calls.append("charger") or "ok")
    web.hub.services.register("ocpp", "approve_charger", lambda c: calls.append("approve"))
    viewer = web.bearer(await web.token("watcher", "viewer"))
    operator = web.bearer(await web.token("ops", "operator"))
    admin = web.bearer(await web.token("boss", "admin"))

    assert (await viewer.post("/api/services/charger/probe", json={})).status == 403
    assert (await operator.post("/api/services/charger/probe", json={})).status == 200
    denied = await operator.post("/api/services/ocpp/approve_charger", json={})
    assert denied.status == 403 and "may not call" in (await denied.json())["message"]
    assert (await admin.post("/api/services/ocpp/approve_charger", json={})).status == 200
    assert calls == ["charger", "approve"]
    listed = {(s["domain"], s["service"]): s["allowed"]
              for s in await (await operator.get("/api/services")).json()}  # fmt: skip
    assert listed[("charger", "probe")] and not listed[("ocpp", "approve_charger")]
    assert (await viewer.get("/api/pending_chargers")).status == 403
    assert (await viewer.get("/api/events?event_type=http_security_event")).status == 403
    assert (await admin.get("/api/events?event_type=http_security_event")).status == 200


async def test_a_viewer_sees_no_action_and_cannot_forge_one(web: Web) -> None:
    viewer, csrf = await web.browser("watcher", "viewer")
    for page in ("/users", "/security", "/settings", "/pending"):
        assert (await viewer.get(page)).status == 403
    forged = await viewer.post(
        "/actions/service",
        data={"csrf_token": csrf, "domain": "charger", "service": "stop"},
        allow_redirects=False,
    )
    assert forged.status == 403
