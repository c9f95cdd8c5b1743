"""The operating pages: site overview, chargers and one charger, sessions and one session,
automations with their traces, and the one form handler every remote action posts to.
"""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from hub.charging.signals import SignalStore
from web import queries, views
from web.api import BadRequest, call_service, find_automation, parse_int, traces_of
from web.routes import SERVER, principal_of, safe_next

if TYPE_CHECKING:
    from web.routes import Routes
    from web.server import WebServer

TRIGGERS = ("StatusNotification", "MeterValues", "Heartbeat", "BootNotification",
            "DiagnosticsStatusNotification", "FirmwareStatusNotification")  # fmt: skip


def _day_start(server: WebServer) -> datetime:
    local = server.hub.now_local()
    return datetime.combine(local.date(), time(0), tzinfo=server.hub.time_zone)


async def overview(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    hub = server.hub
    names = SignalStore.of(hub).names("prices.*")
    prices = SignalStore.of(hub).get(names[0]) if names else None
    since = _day_start(server)
    kwh, cost = await server.read(lambda c: queries.energy_since(c, since, prices))
    return await server.renderer.page(
        request, "overview.html", title="Overview", nodes=views.site_tree(hub),
        chargers=views.chargers(hub), energy_kwh=kwh, cost=cost, blank=views.BLANK_TILE,
        curve=json.dumps(views.price_and_plan(hub)),
    )  # fmt: skip


async def chargers_page(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    status = request.query.get("status", "")
    text = request.query.get("q", "").strip().lower()
    tiles = [
        t for t in views.chargers(server.hub)
        if (not status or t["status"] == status)
        and (not text or text in t["entity_id"] or text in str(t["name"]).lower())
    ]  # fmt: skip
    statuses = sorted({s.state for s in server.hub.states.all("charger")})
    return await server.renderer.page(
        request, "chargers.html", title="Chargers", chargers=tiles, statuses=statuses,
        wanted=status, q=text,
    )  # fmt: skip


async def charger_page(request: web.Request, configuration: Any = None) -> web.Response:
    server = request.app[SERVER]
    hub = server.hub
    entity_id = request.match_info["entity_id"]
    state = hub.states.get(entity_id)
    if state is None or state.domain != "charger":
        raise web.HTTPNotFound(text="no such charger")
    tile = views.charger_tile(state)
    tile["vehicle"] = views.vehicle_at(hub, entity_id)
    assert hub.recorder is not None
    now = hub.now()
    history = await hub.recorder.history(entity_id, now - timedelta(hours=2), None)
    points = [
        {"t": row["last_updated"].isoformat(), "kw": round(row["attributes"]["power_w"] / 1000, 3)}
        for row in history
        if isinstance(row["attributes"].get("power_w"), int | float)
    ]
    sessions: list[Any] = []
    if tile["charge_point_id"]:
        cp, connector = str(tile["charge_point_id"]), tile["connector"]
        sessions = await server.read(
            lambda c: queries.list_sessions(c, charger_id=cp, connector=connector, limit=20)
        )
    services = hub.services.catalog()
    return await server.renderer.page(
        request, "charger.html", title=tile["name"], c=tile, state=state,
        attributes=sorted(state.attributes.items()), points=json.dumps(points),
        sessions=[queries.session_dict(s, queries.simple_energy(s)) for s in sessions],
        ocpp="ocpp" in services and bool(tile["charge_point_id"]), triggers=TRIGGERS,
        configuration=configuration, return_to=f"/chargers/{entity_id}",
    )  # fmt: skip


async def charger_configuration(request: web.Request) -> web.Response:
    """Read the charger's configuration keys (an OCPP call) and show them on its page."""
    server = request.app[SERVER]
    state = server.hub.states.get(request.match_info["entity_id"])
    cp = state.attributes.get("charge_point_id") if state else None
    if cp is None:
        raise web.HTTPNotFound(text="not an OCPP charger")
    status, body = await call_service(
        server, principal_of(request), "ocpp", "get_configuration", {"charger_id": cp}
    )
    if status != 200:
        server.renderer.flash(principal_of(request), "error", body.get("message", "failed"))
        raise web.HTTPSeeOther(request.path.rsplit("/", 1)[0])
    return await charger_page(request, configuration=_config_rows(body.get("result")))


def _config_rows(result: Any) -> list[tuple[str, str, bool]]:
    """(key, value, read-only) rows from a 1.6 GetConfiguration or 2.0.1 GetVariables answer."""
    rows = []
    if isinstance(result, dict):
        for item in result.get("configurationKey") or result.get("configuration_key") or []:
            readonly = bool(item.get("readonly"))
            rows.append((str(item.get("key")), str(item.get("value", "")), readonly))
        for item in result.get("getVariableResult") or result.get("get_variable_result") or []:
            key = f"{item.get('component', {}).get('name')}.{item.get('variable', {}).get('name')}"
            rows.append((key, str(item.get("attributeValue", "")), False))
    return rows


async def sessions_page(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    q = request.query
    filters = {k: q.get(k, "").strip() for k in ("charger_id", "id_tag", "status", "from", "to")}
    tz = server.hub.time_zone

    def day(value: str) -> datetime | None:
        try:
            return datetime.fromisoformat(value).replace(tzinfo=tz) if value else None
        except ValueError:
            return None

    start, end = day(filters["from"]), day(filters["to"])
    try:
        limit = parse_int(q.get("limit"), "limit", 100, 1, 1000)
    except BadRequest:
        limit = 100
    found = await server.read(
        lambda c: queries.list_sessions(
            c, charger_id=filters["charger_id"] or None, id_tag=filters["id_tag"] or None,
            status=filters["status"] if filters["status"] in ("active", "completed") else None,
            start=start, end=end + timedelta(days=1) if end else None, limit=limit,
        )
    )  # fmt: skip
    rows = [queries.session_dict(s, queries.simple_energy(s)) for s in found]
    return await server.renderer.page(
        request, "sessions.html", title="Sessions", sessions=rows, f=filters
    )


async def session_page(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    session_id = request.match_info["session_id"]
    found = await server.read(lambda c: queries.session_detail(c, session_id))
    if found is None:
        raise web.HTTPNotFound(text="no such session")
    session, readings = found
    curve = queries.meter_curve(session, readings)
    return await server.renderer.page(
        request, "session.html", title=f"Session {session.transaction_id}",
        s=queries.session_dict(session, curve["energy_wh"]), curve=curve,
        points=json.dumps(curve["points"]), readings=len(readings),
    )  # fmt: skip


async def automations_page(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    items = sorted(server.hub.states.all("automation"), key=lambda s: s.entity_id)
    return await server.renderer.page(
        request, "automations.html", title="Automations", automations=items,
        has_service=server.hub.services.has, return_to=request.path,
    )  # fmt: skip


async def automation_page(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    automation_id = request.match_info["automation_id"]
    state = find_automation(server, automation_id)
    if state is None:
        raise web.HTTPNotFound(text="no such automation")
    traces = traces_of(server, str(state.attributes.get("id") or automation_id))
    plain = [t.as_dict() if hasattr(t, "as_dict") else t for t in traces or []]
    return await server.renderer.page(
        request, "automation.html", title=str(state.attributes.get("friendly_name") or
                                              state.entity_id),
        a=state, traces=plain, traces_available=traces is not None,
        traces_json=[json.dumps(t, indent=1, default=str) for t in plain],
        has_service=server.hub.services.has, return_to=request.path,
    )  # fmt: skip


def _typed(raw: str, kind: str) -> Any:
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "bool":
        return raw.lower() in ("1", "true", "on", "yes")
    return raw


async def service_action(request: web.Request) -> web.StreamResponse:
    """Every action button posts here: domain, service and `data.<field>[:int|float|bool]`
    fields; the call goes through the same role checks as the API, the answer is flashed."""
    server = request.app[SERVER]
    me = principal_of(request)
    form = await request.post()
    domain, service = str(form.get("domain", "")), str(form.get("service", ""))
    back = safe_next(str(form.get("return_to", "/")))
    data: dict[str, Any] = {}
    try:
        for key, value in form.items():
            if not key.startswith("data.") or not isinstance(value, str):
                continue
            name, _, kind = key[5:].partition(":")
            if value == "" and kind != "bool":
                continue  # an empty optional field is left out
            data[name] = _typed(value, kind)
    except ValueError:
        server.renderer.flash(me, "error", "A number field holds something else.")
        raise web.HTTPSeeOther(back) from None
    status, body = await call_service(server, me, domain, service, data)
    if status == 200:
        result = body.get("result")
        accepted = not (isinstance(result, dict) and result.get("accepted") is False)
        detail = _summary(result)
        kind = "ok" if accepted else "error"
        verdict = "done" if accepted else "refused"
        server.renderer.flash(me, kind, f"{domain}.{service}: {verdict}{detail}")
    else:
        server.renderer.flash(me, "error", f"{domain}.{service}: {body.get('message', status)}")
    raise web.HTTPSeeOther(back)


def _summary(result: Any) -> str:
    if result is None:
        return ""
    if isinstance(result, dict):
        parts = [f"{k}={v}" for k, v in result.items() if isinstance(v, str | int | float | bool)]
        return f" ({', '.join(parts)[:200]})" if parts else ""
    return f" ({str(result)[:200]})"


def register(routes: Routes) -> None:
    routes.add("GET", "/", overview)
    routes.add("GET", "/chargers", chargers_page)
    routes.add("GET", "/chargers/{entity_id}", charger_page)
    routes.add("POST", "/chargers/{entity_id}/configuration", charger_configuration,
               role="operator")  # fmt: skip
    routes.add("GET", "/sessions", sessions_page)
    routes.add("GET", "/sessions/{session_id}", session_page)
    routes.add("GET", "/automations", automations_page)
    routes.add("GET", "/automations/{automation_id}", automation_page)
    routes.add("POST", "/actions/service", service_action, role="operator")
