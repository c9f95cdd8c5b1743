"""The admin pages: chargers waiting for approval, users and roles (with every API token),
security events, and settings (hub, plugins, web server). All need the admin role.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from web import queries
from web.auth import AuthError
from web.config import ROLES
from web.routes import SERVER, principal_of

if TYPE_CHECKING:
    from web.routes import Routes

SECURITY_EVENTS = ["http_security_event", "ocpp_security_event"]
ATTEMPTS = "{per_account} per account, {per_address} per address in {window:g} s"


def _text(form: Any, name: str, limit: int = 1100) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


async def pending_page(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    return await server.renderer.page(
        request, "pending.html", title="Pending chargers",
        pending=await server.pending_chargers(),
        can_decide=server.hub.services.has("ocpp", "approve_charger"), return_to="/pending",
    )  # fmt: skip


async def users_page(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    users = await server.auth.users()
    tokens = await server.auth.tokens(None)
    return await server.renderer.page(
        request, "users.html", title="Users", users=users, roles=ROLES, tokens=tokens,
        me=principal_of(request),
    )  # fmt: skip


async def user_add(request: web.Request) -> web.StreamResponse:
    server = request.app[SERVER]
    me = principal_of(request)
    form = await request.post()
    password = _text(form, "password")
    if password != _text(form, "confirm"):
        server.renderer.flash(me, "error", "The two passwords differ.")
        raise web.HTTPSeeOther("/users")
    try:
        user = await server.auth.add_user(_text(form, "name", 64), _text(form, "role", 16),
                                          password, me)  # fmt: skip
    except AuthError as err:
        server.renderer.flash(me, "error", str(err))
    else:
        server.renderer.flash(me, "ok", f"User {user.name} added as {user.role}.")
    raise web.HTTPSeeOther("/users")


async def user_change(request: web.Request) -> web.StreamResponse:
    server = request.app[SERVER]
    me = principal_of(request)
    user_id = request.match_info["user_id"]
    form = await request.post()
    action = _text(form, "action", 16)
    try:
        if action == "role":
            await server.auth.change_user(user_id, me, role=_text(form, "role", 16))
        elif action in ("disable", "enable"):
            await server.auth.change_user(user_id, me, disabled=action == "disable")
        elif action == "delete":
            await server.auth.delete_user(user_id, me)
        else:
            raise AuthError("unknown action")
    except AuthError as err:
        server.renderer.flash(me, "error", str(err))
    else:
        server.renderer.flash(me, "ok", "User updated; their sessions were logged out.")
    raise web.HTTPSeeOther("/users")


async def security_page(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    since = server.hub.now() - timedelta(days=30)
    rows = await server.read(lambda c: queries.recent_events(c, SECURITY_EVENTS, since, None, 300))
    events = [{**r, "data": queries.redact(r["data"])} for r in rows]
    return await server.renderer.page(
        request, "security.html", title="Security events", events=events
    )


async def settings_page(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    hub = server.hub
    conf = server.conf
    http = {
        "listening on": server.url,
        "trusted proxies": ", ".join(conf["trusted_proxies"]) or "none",
        "secure cookies": conf["secure_cookies"],
        "session idle timeout": f"{conf['session_idle_timeout']:g} s",
        "session max age": f"{conf['session_max_age']:g} s",
        "login attempts": ATTEMPTS.format(**conf["login_attempts"]),
        "admin-only services": ", ".join(conf["admin_services"]),
    }
    recorder = ""
    if hub.recorder is not None:
        recorder = hub.recorder.engine.url.render_as_string(hide_password=True)
    return await server.renderer.page(
        request, "settings.html", title="Settings", version=server.version,
        plugins=hub.plugins.status() if hub.plugins else [],
        http=http, recorder=recorder, services=hub.services.catalog(),
    )  # fmt: skip


def register(routes: Routes) -> None:
    routes.add("GET", "/pending", pending_page, role="admin")
    routes.add("GET", "/users", users_page, role="admin")
    routes.add("POST", "/users", user_add, role="admin")
    routes.add("POST", "/users/{user_id}", user_change, role="admin")
    routes.add("GET", "/security", security_page, role="admin")
    routes.add("GET", "/settings", settings_page, role="admin")
