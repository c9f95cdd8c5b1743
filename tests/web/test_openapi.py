"""The API answers what web/openapi.yaml says: every registered /api route is in the document and
every documented operation exists; every operation is called and each answer is validated."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import aiohttp
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from hub.charging.session import MeterReading, Session
from hub.charging.signals import SignalStore, Slot, TimeSeries
from hub.storage.sessions import SessionStore
from tests.conftest import SIM_START
from tests.web.conftest import Web
from web.server import load_openapi

DOC = load_openapi()
METHODS = ("get", "post", "put", "patch", "delete")
_REGISTRY = Registry().with_resource(
    "urn:evhub:openapi", Resource.from_contents(DOC, default_specification=DRAFT202012)
)


def _absolute(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: ("urn:evhub:openapi" + v if k == "$ref" and v.startswith("#") else _absolute(v))
                for k, v in schema.items()}  # fmt: skip
    if isinstance(schema, list):
        return [_absolute(v) for v in schema]
    return schema


def _operation(method: str, path: str) -> dict[str, Any]:
    return DOC["paths"][path][method.lower()]  # type: ignore[no-any-return]


def _response_schema(method: str, path: str, status: int) -> dict[str, Any] | None:
    responses = _operation(method, path)["responses"]
    assert str(status) in responses, f"{method} {path} answered {status}, not documented"
    response = responses[str(status)]
    if "$ref" in response:
        response = DOC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    content = response.get("content", {}).get("application/json")
    return None if content is None else content.get("schema", {})


class Checked:
    """Calls the API and validates every answer against the document; remembers what it called."""

    def __init__(self, client: aiohttp.ClientSession) -> None:
        self.client = client
        self.called: set[tuple[str, str]] = set()

    async def __call__(self, method: str, template: str, status: int, **kw: Any) -> Any:
        url = template.format(**kw.pop("path", {}))
        answer = await self.client.request(method, url, **kw)
        assert answer.status == status, (method, url, answer.status, await answer.text())
        self.called.add((method.upper(), template))
        schema = _response_schema(method, template, status)
        if schema is None:
            return None
        assert answer.content_type == "application/json"
        body = await answer.json()
        validator = Draft202012Validator(
            _absolute(schema), registry=_REGISTRY, format_checker=FormatChecker()
        )
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
        assert not errors, f"{method} {url}: {errors[0].message} at {list(errors[0].path)}"
        return body


def test_the_document_is_openapi_3_1_and_every_ref_resolves() -> None:
    assert DOC["openapi"].startswith("3.1")
    refs = re.findall(r"'\$ref': '#/([^']+)'", str(DOC))
    for ref in refs:
        node: Any = DOC
        for part in ref.split("/"):
            node = node[part]
    Draft202012Validator.check_schema({"$defs": DOC["components"]["schemas"]})


async def test_every_api_route_is_documented_and_every_documented_route_exists(web: Web) -> None:
    assert web.server.routes is not None
    registered = {
        (spec.method, spec.path)
        for spec in web.server.routes.specs.values()
        if spec.api and spec.plugin is None
    }
    documented = {
        (method.upper(), path)
        for path, item in DOC["paths"].items()
        for method in item
        if method in METHODS
    }
    assert registered == documented


async def _world(web: Web) -> str:
    """A charger, a finished session with readings, a price signal, an automation."""
    hub = web.hub
    hub.states.set("charger.bay_01_1", "charging", {
        "friendly_name": "Bay 1", "power_w": 7200.0, "current_a": [10.0, 10.5, 10.0],
        "session_id": "s1", "id_tag": "04A1B2C3", "limit": {"value": 16, "unit": "A",
        "phases": None, "until": None}, "limit_reason": "site.main L2 at limit",
        "charge_point_id": "bay_01", "connector": 1, "capabilities": ["start_stop"],
    })  # fmt: skip
    hub.states.set("automation.cheap_night", "on", {"id": "cheap_night", "friendly_name": "Night"})
    assert hub.recorder is not None
    store = SessionStore(hub.recorder)
    session = Session("s1", "bay_01", 1, "42", SIM_START, id_tag="04A1B2C3", meter_start_wh=1000.0)
    await store.start_session(session)
    await store.add_readings([
        MeterReading("bay_01", 1, SIM_START + timedelta(minutes=m), "Energy.Active.Import.Register",
                     1000.0 + 120 * m, "Wh", session_id="s1") for m in range(0, 31, 10)
    ])  # fmt: skip
    await store.stop_session("s1", SIM_START + timedelta(minutes=30), 4600.0, "Local")
    slots = [Slot(SIM_START + timedelta(hours=h), SIM_START + timedelta(hours=h + 1), 0.2 + h / 100)
             for h in range(24)]  # fmt: skip
    SignalStore.of(hub).publish("prices.grid_import", TimeSeries(slots, unit="EUR/kWh"))
    await hub.recorder.flush()
    return "s1"


async def test_every_operation_answers_as_documented(web: Web) -> None:
    session_id = await _world(web)
    admin = Checked(web.bearer(await web.token("boss", "admin")))
    viewer = Checked(web.bearer(await web.token("watcher", "viewer")))
    anonymous = Checked(web.client())
    web.hub.services.register("test", "echo", lambda c: {"echo": dict(c.data)})
    start = SIM_START.isoformat()
    end = (SIM_START + timedelta(hours=2)).isoformat()

    await admin("GET", "/api/config", 200)
    states = await admin("GET", "/api/states", 200)
    assert {s["entity_id"] for s in states} >= {"charger.bay_01_1", "automation.cheap_night"}
    await admin("GET", "/api/states", 200, params={"domain": "charger"})
    await admin("GET", "/api/states/{entity_id}", 200, path={"entity_id": "charger.bay_01_1"})
    await admin("GET", "/api/states/{entity_id}", 404, path={"entity_id": "charger.nope"})
    history = await admin("GET", "/api/history/{entity_id}", 200,
                          path={"entity_id": "charger.bay_01_1"})  # fmt: skip
    assert history["states"][0]["state"] == "charging"
    await admin("GET", "/api/history/{entity_id}", 400, path={"entity_id": "charger.bay_01_1"},
                params={"start": "yesterday"})  # fmt: skip
    await admin("GET", "/api/services", 200)
    echoed = await admin("POST", "/api/services/{domain}/{service}", 200,
                         path={"domain": "test", "service": "echo"}, json={"a": 1})  # fmt: skip
    assert echoed["result"] == {"echo": {"a": 1}}
    await admin("POST", "/api/services/{domain}/{service}", 404,
                path={"domain": "test", "service": "nope"}, json={})  # fmt: skip
    await admin("POST", "/api/services/{domain}/{service}", 400,
                path={"domain": "charger", "service": "stop"},
                json={"entity_id": "bad id"})  # fmt: skip
    await viewer("POST", "/api/services/{domain}/{service}", 403,
                 path={"domain": "test", "service": "echo"}, json={})  # fmt: skip
    sessions = await admin("GET", "/api/sessions", 200, params={"charger_id": "bay_01"})
    assert [s["energy_wh"] for s in sessions] == [3600.0]
    await admin("GET", "/api/sessions", 400, params={"limit": "0"})
    detail = await admin("GET", "/api/sessions/{session_id}", 200, path={"session_id": session_id})
    assert detail["curve"]["energy_wh"] == 3600.0 and len(detail["curve"]["points"]) == 3
    await admin("GET", "/api/sessions/{session_id}", 404, path={"session_id": "nope"})
    chargers = await admin("GET", "/api/chargers", 200)
    assert chargers[0]["limit_reason"] == "site.main L2 at limit"
    await admin("GET", "/api/site", 200)
    await admin("POST", "/api/services/{domain}/{service}", 200,
                path={"domain": "test", "service": "echo"},
                json={"password": "hunter2-hunter2"})  # fmt: skip
    await web.hub.recorder.flush()  # type: ignore[union-attr]
    events = await admin("GET", "/api/events", 200, params={"start": start})
    calls = [e["data"] for e in events if e["event_type"] == "call_service"]
    assert {"domain": "test", "service": "echo", "service_data": {"password": "***"}} in calls
    await admin("GET", "/api/events", 200, params={"event_type": "http_security_event"})
    await viewer("GET", "/api/events", 403, params={"event_type": "http_security_event"})
    await admin("GET", "/api/events", 400, params={"limit": "many"})
    await admin("GET", "/api/automations", 200)
    await admin("GET", "/api/automations/{automation_id}/traces", 200,
                path={"automation_id": "cheap_night"})  # fmt: skip
    await admin("GET", "/api/automations/{automation_id}/traces", 404,
                path={"automation_id": "nope"})  # fmt: skip
    assert await admin("GET", "/api/signals", 200) == ["prices.grid_import"]
    cut = await admin("GET", "/api/signals/{name}", 200, path={"name": "prices.grid_import"},
                      params={"start": start, "end": end})  # fmt: skip
    assert len(cut["slots"]) == 2
    await admin("GET", "/api/signals/{name}", 400, path={"name": "prices.grid_import"},
                params={"start": start})  # fmt: skip
    await admin("GET", "/api/signals/{name}", 404, path={"name": "prices.none"})
    await admin("GET", "/api/auth/me", 200)
    made = await admin("POST", "/api/auth/tokens", 201, json={"name": "ci"})
    await admin("POST", "/api/auth/tokens", 400, json={"name": ""})
    listed = await admin("GET", "/api/auth/tokens", 200)
    assert made["id"] in {t["id"] for t in listed}
    await admin("GET", "/api/auth/tokens", 200, params={"all": "true"})
    await viewer("DELETE", "/api/auth/tokens/{token_id}", 404, path={"token_id": made["id"]})
    await admin("DELETE", "/api/auth/tokens/{token_id}", 204, path={"token_id": made["id"]})
    await admin("GET", "/api/pending_chargers", 200)
    await viewer("GET", "/api/pending_chargers", 403)
    document = await admin("GET", "/api/openapi.json", 200)
    assert document["paths"].keys() == DOC["paths"].keys()
    await anonymous("GET", "/api/websocket", 401)
    await anonymous("GET", "/api/states", 401)

    called = admin.called | viewer.called | anonymous.called
    documented = {(m.upper(), p) for p, item in DOC["paths"].items() for m in item if m in METHODS}
    assert documented - called == set()
