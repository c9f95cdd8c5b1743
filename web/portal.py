"""The driver portal (`/portal/...`, docs/web.md): a driver logs in with a code the accounts plugin
e-mails, sees their tokens, sessions, costs and invoices, and starts or stops charging on the
charger whose QR code they scanned, with the price shown before starting.

Drivers are accounts of the accounts plugin, not users of the web UI: their routes are a separate
allow-list group of the route table (web/routes.py), their sessions live in web/drivers.py. Every
answer about them comes from services (`accounts.*`, `billing.*`, `charger.*`): web/ imports no
plugin. No script on any portal page: forms only.
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import segno
from aiohttp import web

from hub.bus import Context
from web import queries, views
from web.drivers import DRIVER_COOKIE, DRIVER_PRE_COOKIE, Driver
from web.routes import DRIVER, SERVER, client_address, is_secure

if TYPE_CHECKING:
    from hub.core import Hub
    from web.routes import Routes

_LOGGER = logging.getLogger(__name__)

HOME = "/portal/"
NOTICES = {  # ?done= after a form: fixed texts, nothing the request says is echoed
    "started": ("ok", "Charging was started. It can take a moment until the car draws power."),
    "stopped": ("ok", "Charging was stopped."),
    "refused": ("error", "The charger refused: try again, or ask the operator."),
    "notoken": ("error", "You have no token that may charge here."),
    "notyours": ("error", "This charger is not charging for you."),
}


def _field(form: Any, name: str, limit: int = 200) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def _next(value: str | None) -> str:
    """Only a portal page: never another site, never the operator UI."""
    if not value or not value.startswith("/portal/") or "//" in value or "\\" in value:
        return HOME
    return value


async def _call(hub: Hub, domain: str, service: str, data: dict[str, Any]) -> Any:
    """A service call on the driver's behalf, or None when no plugin offers the service."""
    if not hub.services.has(domain, service):
        return None
    return await hub.services.call(domain, service, data, Context())


async def _page(request: web.Request, template: str, status: int = 200, **context: Any) -> Any:
    driver = request.get(DRIVER)
    return await request.app[SERVER].renderer.page(
        request, template, status=status, driver=driver,
        driver_csrf=driver.csrf if driver else "", **context,
    )  # fmt: skip


# --- logging in -----------------------------------------------------------------------------
async def _anonymous(request: web.Request, template: str, status: int = 200, **context: Any) -> Any:
    token = secrets.token_urlsafe(24)
    response = await _page(request, template, status, pre_token=token, **context)
    response.set_cookie(DRIVER_PRE_COOKIE, token, httponly=True, samesite="Strict",
                        secure=is_secure(request), path="/portal/")  # fmt: skip
    return response


def _pre_ok(request: web.Request, form: Any) -> bool:
    cookie = request.cookies.get(DRIVER_PRE_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie, _field(form, "pre_token", 100))


async def login_page(request: web.Request) -> web.StreamResponse:
    target = _next(request.query.get("next"))
    if request.get(DRIVER) is not None:
        raise web.HTTPSeeOther(target)
    return await _anonymous(request, "portal_login.html", next=target, email="", error="")


async def login_post(request: web.Request) -> web.StreamResponse:
    hub = request.app[SERVER].hub
    form = await request.post()
    target, email = _next(_field(form, "next", 500)), _field(form, "email", 254)
    if not _pre_ok(request, form):
        return await _anonymous(request, "portal_login.html", 403, next=target, email=email,
                                error="The form expired. Please try again.")  # fmt: skip
    try:
        answer = await _call(hub, "accounts", "login_code", {"email": email})
    except ValueError as err:  # a bad address, too many requests, mail not sent
        return await _anonymous(request, "portal_login.html", 400, next=target, email=email,
                                error=_reason(err))  # fmt: skip
    if answer is None:
        return await _anonymous(request, "portal_login.html", 503, next=target, email=email,
                                error="Driver login is not available here.")  # fmt: skip
    return await _anonymous(request, "portal_code.html", next=target, email=email, error="")


async def code_post(request: web.Request) -> web.StreamResponse:
    server = request.app[SERVER]
    form = await request.post()
    target, email = _next(_field(form, "next", 500)), _field(form, "email", 254)
    if not _pre_ok(request, form):
        return await _anonymous(request, "portal_code.html", 403, next=target, email=email,
                                error="The form expired. Please try again.")  # fmt: skip
    try:
        account_id = await _call(server.hub, "accounts", "login_verify",
                                 {"email": email, "code": _field(form, "code", 64)})  # fmt: skip
    except ValueError:
        account_id = None
    if not isinstance(account_id, str):
        server.auth.security_event("driver_login_failed", None, client_address(request))
        return await _anonymous(request, "portal_code.html", 401, next=target, email=email,
                                error="The code is wrong, used or expired.")  # fmt: skip
    secret = server.drivers.open(account_id, old=request.cookies.get(DRIVER_COOKIE))
    server.auth.security_event("driver_login", account_id, client_address(request))
    response = web.HTTPSeeOther(target)
    secure = is_secure(request) or server.conf["secure_cookies"] == "always"
    # Lax, not Strict: a QR code scanned with the phone's camera is a navigation from outside,
    # and must arrive logged in. Every POST carries the CSRF token all the same.
    response.set_cookie(DRIVER_COOKIE, secret, httponly=True, samesite="Lax", secure=secure,
                        path="/portal/")  # fmt: skip
    response.del_cookie(DRIVER_PRE_COOKIE, path="/portal/")
    raise response


async def logout_post(request: web.Request) -> web.StreamResponse:
    secret = request.cookies.get(DRIVER_COOKIE)
    if secret:
        request.app[SERVER].drivers.end(secret)
    response = web.HTTPSeeOther("/portal/login")
    response.del_cookie(DRIVER_COOKIE, path="/portal/")
    raise response


def _reason(err: Exception) -> str:
    text = str(err).split("\n")[0]
    return text.partition(": ")[2] or "The request was refused."


# --- what the driver sees -------------------------------------------------------------------
async def _account(request: web.Request) -> dict[str, Any]:
    """The driver's account with raw token ids (server side only), or a new login."""
    driver: Driver | None = request.get(DRIVER)
    server = request.app[SERVER]
    account = None
    if driver is not None:
        account = await _call(server.hub, "accounts", "get_account",
                              {"id": driver.account_id, "raw_ids": True})  # fmt: skip
    if not account or account.get("status") != "active":
        if driver is not None:
            server.drivers.end_account(driver.account_id)
        raise web.HTTPSeeOther(f"/portal/login?next={quote(request.path, safe='/')}")
    return dict(account)


def _tokens(account: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in account.get("tokens") or () if t.get("id")]


def _start_token(account: dict[str, Any]) -> str | None:
    """The token a start from the portal charges with: an app token first, then a card."""
    usable = [t for t in _tokens(account) if t.get("status") == "Accepted"]
    usable.sort(key=lambda t: t.get("kind") != "app")
    return str(usable[0]["id"]) if usable else None


async def home(request: web.Request) -> web.StreamResponse:
    server = request.app[SERVER]
    account = await _account(request)
    ids = [str(t["id"]) for t in _tokens(account)]

    def read(conn: Any) -> list[Any]:
        found = [s for i in ids for s in queries.list_sessions(conn, id_tag=i, limit=20)]
        return sorted(found, key=lambda s: s.started_at, reverse=True)[:20]

    sessions = []
    for s in await server.read(read) if ids else []:
        row = queries.session_dict(s, queries.simple_energy(s))
        row["cost"] = await _cost(server.hub, s.id)
        sessions.append(row)
    return await _page(request, "portal_home.html", title="My charging", account=account,
                       tokens=_tokens(account), sessions=sessions,
                       invoices=await _invoices(server.hub, account["id"]))  # fmt: skip


async def _cost(hub: Hub, session_id: str) -> str:
    try:
        estimate = await _call(hub, "billing", "estimate", {"session_id": session_id})
    except Exception:  # a session billing cannot price (yet) shows no cost, not an error
        _LOGGER.debug("no estimate for session %s", session_id, exc_info=True)
        return ""
    return f"{estimate['total']} {estimate['currency']}" if estimate else ""


async def _invoices(hub: Hub, account_id: str) -> list[dict[str, Any]]:
    try:
        text = await _call(hub, "billing", "export_invoices", {"format": "json"})
    except Exception:
        _LOGGER.exception("billing.export_invoices failed")
        return []
    rows = json.loads(text) if isinstance(text, str) else []
    return [r for r in rows if r.get("bill_to") == account_id][-24:][::-1]


async def charger(request: web.Request) -> web.StreamResponse:
    """The page a connector's QR code opens: status, price, and Start or Stop."""
    entity_id = request.match_info["entity_id"]
    if request.get(DRIVER) is None:
        raise web.HTTPSeeOther(f"/portal/login?next={quote(request.path, safe='/')}")
    server = request.app[SERVER]
    hub = server.hub
    account = await _account(request)
    state = hub.states.get(entity_id)
    if state is None or state.domain != "charger":
        raise web.HTTPNotFound(text="No such charger.")
    tile = views.charger_tile(state)
    token = _start_token(account)
    price = None
    try:
        data = {"entity_id": entity_id, **({"id_token": token} if token else {})}
        price = await _call(hub, "billing", "quote", data)
    except Exception:
        _LOGGER.exception("billing.quote failed for %s", entity_id)
    mine = {str(t["id"]) for t in _tokens(account)}
    charging_for_me = bool(tile["session_id"]) and str(tile["id_tag"] or "") in mine
    notice = NOTICES.get(request.query.get("done", ""))
    return await _page(request, "portal_charger.html", title=tile["name"], c=tile,
                       quote=price, token=token, mine=charging_for_me,
                       busy=bool(tile["session_id"]) and not charging_for_me,
                       notice=notice)  # fmt: skip


async def start_post(request: web.Request) -> web.StreamResponse:
    entity_id = request.match_info["entity_id"]
    account = await _account(request)
    token = _start_token(account)
    back = f"/portal/c/{entity_id}"
    if token is None:
        raise web.HTTPSeeOther(f"{back}?done=notoken")
    result = await _charger_call(request, "start", {"entity_id": entity_id, "id_tag": token})
    raise web.HTTPSeeOther(f"{back}?done={'started' if result else 'refused'}")


async def stop_post(request: web.Request) -> web.StreamResponse:
    entity_id = request.match_info["entity_id"]
    account = await _account(request)
    back = f"/portal/c/{entity_id}"
    state = request.app[SERVER].hub.states.get(entity_id)
    tag = str(state.attributes.get("id_tag") or "") if state is not None else ""
    if not tag or tag not in {str(t["id"]) for t in _tokens(account)}:
        raise web.HTTPSeeOther(f"{back}?done=notyours")
    result = await _charger_call(request, "stop", {"entity_id": entity_id})
    raise web.HTTPSeeOther(f"{back}?done={'stopped' if result else 'refused'}")


async def _charger_call(request: web.Request, service: str, data: dict[str, Any]) -> bool:
    hub = request.app[SERVER].hub
    if hub.states.get(data["entity_id"]) is None:
        raise web.HTTPNotFound(text="No such charger.")
    try:
        result = await _call(hub, "charger", service, data)
    except Exception as err:
        _LOGGER.warning("portal: charger.%s on %s failed: %s", service, data["entity_id"], err)
        return False
    return isinstance(result, dict) and bool(result.get("accepted"))


# --- the QR code printed for each connector -------------------------------------------------
async def qr_code(request: web.Request) -> web.StreamResponse:
    """An SVG QR code of the connector's portal URL (operator UI: to print and stick on it)."""
    entity_id = request.match_info["entity_id"]
    state = request.app[SERVER].hub.states.get(entity_id)
    if state is None or state.domain != "charger":
        raise web.HTTPNotFound(text="No such charger.")
    scheme = "https" if is_secure(request) else "http"
    url = f"{scheme}://{request.host}/portal/c/{entity_id}"
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="svg", scale=8, border=4, title=url)
    return web.Response(body=out.getvalue(), content_type="image/svg+xml")


def register(routes: Routes) -> None:
    # The portal's own allow-list: public are only the login forms and a charger's landing page
    # (which itself sends a driver without a session to the login); the rest needs a driver.
    routes.add("GET", "/portal/login", login_page, role=None, portal="public")
    routes.add("POST", "/portal/login", login_post, role=None, portal="public")
    routes.add("POST", "/portal/login/code", code_post, role=None, portal="public")
    routes.add("GET", "/portal/c/{entity_id}", charger, role=None, portal="public")
    routes.add("GET", "/portal/", home, role=None, portal="driver")
    routes.add("POST", "/portal/logout", logout_post, role=None, portal="driver")
    routes.add("POST", "/portal/c/{entity_id}/start", start_post, role=None, portal="driver")
    routes.add("POST", "/portal/c/{entity_id}/stop", stop_post, role=None, portal="driver")
    # For the operator UI (a charger's page links it): any logged-in user may print it.
    routes.add("GET", "/portal/qr/{entity_id}.svg", qr_code, role="viewer")
