"""The REST API under /api: states, history, services, sessions, chargers, events, automations,
signals and the caller's own tokens. Every answer is JSON and described in web/openapi.yaml.
"""

from __future__ import annotations

import fnmatch
import importlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from hub.bus import Context
from hub.charging.charger import NotSupported
from hub.charging.signals import SignalStore
from hub.services import ServiceNotFound, ServiceValidationError
from hub.storage.schema import json_dumps
from web import queries, views
from web.auth import AuthError, Principal
from web.queries import SECURITY_EVENT_SUFFIX, redact
from web.routes import SERVER, json_error, principal_of

if TYPE_CHECKING:
    from web.server import WebServer

_LOGGER = logging.getLogger(__name__)

MAX_HISTORY = timedelta(days=31)
MAX_LIMIT = 1000


class BadRequest(Exception):
    pass


def ok(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json_dumps(data), content_type="application/json")


def parse_time(value: str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise BadRequest(
            f"{name}: expected an ISO 8601 time like 2026-03-02T06:00:00+00:00"
        ) from None
    if parsed.tzinfo is None:
        raise BadRequest(f"{name}: give a time zone offset (Z or +01:00)")
    return parsed


def parse_int(value: str | None, name: str, default: int, lo: int, hi: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"{name}: expected a whole number") from None
    if not lo <= number <= hi:
        raise BadRequest(f"{name}: must be between {lo} and {hi}")
    return number


def may_call(principal: Principal, domain: str, service: str, admin_services: list[str]) -> bool:
    """Operators call services; the ones that change trust or the hub itself need an admin."""
    if not principal.may("operator"):
        return False
    name = f"{domain}.{service}"
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in admin_services):
        return principal.may("admin")
    return True


async def call_service(
    server: WebServer, principal: Principal, domain: str, service: str, data: Any
) -> tuple[int, Any]:
    """(HTTP status, body) of a service call made by `principal`: shared by REST and forms."""
    domain, service = domain.lower(), service.lower()
    if not server.hub.services.has(domain, service):
        return 404, {"message": f"service {domain}.{service} is not registered"}
    if not may_call(principal, domain, service, server.conf["admin_services"]):
        return 403, {"message": f"{principal.role} may not call {domain}.{service}"}
    if not isinstance(data, dict):
        return 400, {"message": "service data must be a JSON object"}
    context = Context(user_id=principal.user_id)
    try:
        result = await server.hub.services.call(domain, service, data, context)
    except ServiceNotFound as err:
        return 404, {"message": str(err)}
    except ServiceValidationError as err:
        return 400, {"message": str(err), "fields": err.fields}
    except NotSupported as err:
        return 400, {"message": str(err)}
    except ConnectionError as err:
        return 409, {"message": str(err) or "the device is not connected"}
    except (LookupError, ValueError, TypeError) as err:
        return 400, {"message": str(err)}
    except Exception:
        _LOGGER.exception("service %s.%s failed for %s", domain, service, principal.name)
        return 500, {"message": f"{domain}.{service} failed; the hub log says why"}
    return 200, {"result": result, "context_id": context.id}


def handler(fn: Callable[[WebServer, web.Request], Any]) -> Callable[[web.Request], Any]:
    """Bad query parameters answer 400 with a message instead of a 500."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await fn(request.app[SERVER], request)
        except BadRequest as err:
            return json_error(400, str(err))
        except AuthError as err:
            return json_error(400, str(err))
        return response

    wrapped.__name__ = fn.__name__
    return wrapped


# --- handlers ---------------------------------------------------------------------------------
@handler
async def get_config(server: WebServer, request: web.Request) -> web.Response:
    hub, me = server.hub, principal_of(request)
    return ok(
        {
            "name": hub.name,
            "version": server.version,
            "time_zone": str(hub.time_zone),
            "currency": hub.currency,
            "now": hub.now().isoformat(),
            "user": {"name": me.name, "role": me.role, "via": me.via},
        }
    )


@handler
async def get_states(server: WebServer, request: web.Request) -> web.Response:
    domain = request.query.get("domain") or None
    return ok([s.as_dict() for s in server.hub.states.all(domain)])


@handler
async def get_state(server: WebServer, request: web.Request) -> web.Response:
    state = server.hub.states.get(request.match_info["entity_id"])
    if state is None:
        return json_error(404, "no such entity")
    return ok(state.as_dict())


@handler
async def get_history(server: WebServer, request: web.Request) -> web.Response:
    entity_id = request.match_info["entity_id"]
    asked_end = parse_time(request.query.get("end"), "end")
    end = asked_end or server.hub.now()
    start = parse_time(request.query.get("start"), "start") or end - timedelta(days=1)
    if end <= start or end - start > MAX_HISTORY:
        raise BadRequest(f"start must be before end, at most {MAX_HISTORY.days} days apart")
    assert server.hub.recorder is not None
    # Without an end, up to now inclusive: a state set this very moment is part of the answer.
    rows = await server.hub.recorder.history(entity_id, start, asked_end)
    return ok({"entity_id": entity_id, "start": start, "end": end, "states": rows})


@handler
async def get_services(server: WebServer, request: web.Request) -> web.Response:
    me, admin = principal_of(request), server.conf["admin_services"]
    catalog = server.hub.services.catalog()
    return ok(
        [
            {"domain": d, "service": s, "description": text, "allowed": may_call(me, d, s, admin)}
            for d, services in sorted(catalog.items())
            for s, text in sorted(services.items())
        ]
    )


@handler
async def post_service(server: WebServer, request: web.Request) -> web.Response:
    try:
        data = await request.json() if request.can_read_body else {}
    except ValueError:
        return json_error(400, "the body must be JSON")
    info = request.match_info
    status, body = await call_service(
        server, principal_of(request), info["domain"], info["service"], data
    )
    return ok(body, status)


@handler
async def get_sessions(server: WebServer, request: web.Request) -> web.Response:
    q = request.query
    status = q.get("status") or None
    if status not in (None, "active", "completed"):
        raise BadRequest("status: active or completed")
    filters: dict[str, Any] = {
        "charger_id": q.get("charger_id") or None,
        "connector": parse_int(q.get("connector"), "connector", 0, 0, 1000) or None,
        "id_tag": q.get("id_tag") or None,
        "status": status,
        "start": parse_time(q.get("start"), "start"),
        "end": parse_time(q.get("end"), "end"),
        "limit": parse_int(q.get("limit"), "limit", 100, 1, MAX_LIMIT),
    }
    found = await server.read(lambda c: queries.list_sessions(c, **filters))
    return ok([queries.session_dict(s, queries.simple_energy(s)) for s in found])


@handler
async def get_session(server: WebServer, request: web.Request) -> web.Response:
    session_id = request.match_info["session_id"]
    found = await server.read(lambda c: queries.session_detail(c, session_id))
    if found is None:
        return json_error(404, "no such session")
    session, readings = found
    curve = queries.meter_curve(session, readings)
    return ok({**queries.session_dict(session, curve["energy_wh"]), "curve": curve})


@handler
async def get_chargers(server: WebServer, request: web.Request) -> web.Response:
    return ok(views.chargers(server.hub))


@handler
async def get_site(server: WebServer, request: web.Request) -> web.Response:
    return ok({"nodes": views.site_tree(server.hub), "chargers": views.chargers(server.hub)})


@handler
async def get_events(server: WebServer, request: web.Request) -> web.Response:
    q, me = request.query, principal_of(request)
    types = [t for t in q.getall("event_type", []) if t] or None
    # Security events name users and addresses: for admins only.
    security = types and any(t.endswith(SECURITY_EVENT_SUFFIX) for t in types)
    if security and not me.may("admin"):
        return json_error(403, "security events need the admin role")
    start = parse_time(q.get("start"), "start")
    end = parse_time(q.get("end"), "end")
    limit = parse_int(q.get("limit"), "limit", 100, 1, MAX_LIMIT)
    rows = await server.read(lambda c: queries.recent_events(c, types, start, end, limit * 2))
    if not me.may("admin"):
        rows = [r for r in rows if not r["event_type"].endswith(SECURITY_EVENT_SUFFIX)]
    return ok([{**r, "data": redact(r["data"])} for r in rows[:limit]])


@handler
async def get_automations(server: WebServer, request: web.Request) -> web.Response:
    return ok([s.as_dict() for s in server.hub.states.all("automation")])


def traces_of(server: WebServer, automation_id: str) -> list[Any] | None:
    """The automation engine's traces (hub/automation), or None while the hub has no engine."""
    try:
        module = importlib.import_module("hub.automation")
    except ImportError:
        return None
    get_traces = getattr(module, "get_traces", None)
    if get_traces is None:
        return None
    try:
        return list(get_traces(server.hub, automation_id) or [])
    except LookupError:  # the engine does not know it (yet)
        return []


def find_automation(server: WebServer, automation_id: str) -> Any:
    """The automation entity by its configured id or its entity id."""
    return next(
        (s for s in server.hub.states.all("automation")
         if automation_id in (s.attributes.get("id"), s.entity_id)),
        None,
    )  # fmt: skip


@handler
async def get_traces(server: WebServer, request: web.Request) -> web.Response:
    state = find_automation(server, request.match_info["automation_id"])
    if state is None:
        return json_error(404, "no such automation")
    traces = traces_of(server, str(state.attributes.get("id") or state.entity_id))
    if traces is None:
        return json_error(404, "this hub keeps no automation traces")
    return ok([t.as_dict() if hasattr(t, "as_dict") else t for t in traces])


@handler
async def get_signals(server: WebServer, request: web.Request) -> web.Response:
    return ok(SignalStore.of(server.hub).names())


@handler
async def get_signal(server: WebServer, request: web.Request) -> web.Response:
    start = parse_time(request.query.get("start"), "start")
    end = parse_time(request.query.get("end"), "end")
    if (start is None) != (end is None):
        raise BadRequest("give both start and end, or neither")
    found = views.series(server.hub, request.match_info["name"], start, end)
    return ok(found) if found is not None else json_error(404, "no such signal")


@handler
async def get_me(server: WebServer, request: web.Request) -> web.Response:
    me = principal_of(request)
    return ok({"id": me.user_id, "name": me.name, "role": me.role, "via": me.via})


@handler
async def get_tokens(server: WebServer, request: web.Request) -> web.Response:
    me = principal_of(request)
    every = request.query.get("all") == "true" and me.may("admin")
    tokens = await server.auth.tokens(None if every else me.user_id)
    return ok([t.as_dict() for t in tokens])


@handler
async def post_token(server: WebServer, request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return json_error(400, "the body must be JSON")
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str):
        raise BadRequest("name: required")
    token, secret = await server.auth.create_token(principal_of(request), name)
    return ok({**token.as_dict(), "user": principal_of(request).name, "token": secret}, 201)


@handler
async def delete_token(server: WebServer, request: web.Request) -> web.StreamResponse:
    me = principal_of(request)
    gone = await server.auth.revoke_token(request.match_info["token_id"], me, me.may("admin"))
    return web.Response(status=204) if gone else json_error(404, "no such token")


@handler
async def get_pending(server: WebServer, request: web.Request) -> web.Response:
    return ok(await server.pending_chargers())


@handler
async def get_openapi(server: WebServer, request: web.Request) -> web.Response:
    return ok(server.openapi_document())


ROUTES: list[tuple[str, str, Any, str]] = [
    ("GET", "/api/config", get_config, "viewer"),
    ("GET", "/api/states", get_states, "viewer"),
    ("GET", "/api/states/{entity_id}", get_state, "viewer"),
    ("GET", "/api/history/{entity_id}", get_history, "viewer"),
    ("GET", "/api/services", get_services, "viewer"),
    ("POST", "/api/services/{domain}/{service}", post_service, "operator"),
    ("GET", "/api/sessions", get_sessions, "viewer"),
    ("GET", "/api/sessions/{session_id}", get_session, "viewer"),
    ("GET", "/api/chargers", get_chargers, "viewer"),
    ("GET", "/api/site", get_site, "viewer"),
    ("GET", "/api/events", get_events, "viewer"),
    ("GET", "/api/automations", get_automations, "viewer"),
    ("GET", "/api/automations/{automation_id}/traces", get_traces, "viewer"),
    ("GET", "/api/signals", get_signals, "viewer"),
    ("GET", "/api/signals/{name}", get_signal, "viewer"),
    ("GET", "/api/auth/me", get_me, "viewer"),
    ("GET", "/api/auth/tokens", get_tokens, "viewer"),
    ("POST", "/api/auth/tokens", post_token, "viewer"),
    ("DELETE", "/api/auth/tokens/{token_id}", delete_token, "viewer"),
    ("GET", "/api/pending_chargers", get_pending, "admin"),
    ("GET", "/api/openapi.json", get_openapi, "viewer"),
]
