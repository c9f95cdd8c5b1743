"""The route table and the guards every request passes: client address, authentication, role, CSRF,
and the security headers on every response. A route not added through `Routes` is refused.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import AbstractRoute

from web.auth import Principal
from web.config import ROLES
from web.drivers import DRIVER_COOKIE, Driver

if TYPE_CHECKING:
    from web.auth import Auth
    from web.server import WebServer

_LOGGER = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SERVER: web.AppKey[WebServer] = web.AppKey("evhub_web_server")
PRINCIPAL = web.RequestKey("evhub_principal", Principal)
DRIVER = web.RequestKey("evhub_driver", Driver)
CLIENT_ADDRESS = web.RequestKey("evhub_client_address", str)
CLIENT_SECURE = web.RequestKey("evhub_client_secure", bool)
SESSION_COOKIE = "evhub_session"
PRE_COOKIE = "evhub_pre"  # double-submit token of the login and setup forms (no session yet)
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# What the browser may load: our own origin only, no inline script, never inside a frame.
CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """How a route is guarded. `role` None = public (the explicit allow-list)."""

    method: str
    path: str
    role: str | None
    api: bool  # JSON answers and 401; otherwise pages (a redirect to the login page)
    websocket: bool = False  # authenticates inside the protocol (first message)
    plugin: str | None = None
    page: str | None = None  # a title: the page is linked in the navigation
    # The driver portal's own allow-list group (role None): "public" (login, a charger's
    # landing page) or "driver" (needs a driver session, web/drivers.py).
    portal: str | None = None


class Routes:
    """Every route of the app, added here with its guard; `spec_for` answers the middleware."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.specs: dict[AbstractRoute, RouteSpec] = {}
        self.static_prefixes: list[str] = []

    def add(
        self,
        method: str,
        path: str,
        handler: Handler,
        *,
        role: str | None = "viewer",
        websocket: bool = False,
        plugin: str | None = None,
        page: str | None = None,
        portal: str | None = None,
    ) -> RouteSpec:
        if role is not None and role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        if portal is not None and (
            portal not in ("public", "driver") or role is not None or plugin is not None
            or not path.startswith("/portal/")
        ):  # fmt: skip
            raise ValueError(f"portal route {path!r}: a /portal/ path, public or driver, no role")
        method = method.upper()
        api = path == "/api" or path.startswith("/api/")
        route = self.app.router.add_route(method, path, handler)
        spec = RouteSpec(method, path, role, api, websocket, plugin, page, portal)
        self.specs[route] = spec
        return spec

    def static(self, prefix: str, directory: Any) -> None:
        self.app.router.add_static(prefix, directory, append_version=False)
        self.static_prefixes.append(prefix.rstrip("/") + "/")

    def spec_for(self, request: web.Request) -> RouteSpec | None:
        route = request.match_info.route
        spec = self.specs.get(route)
        if spec is None and request.path.startswith(tuple(self.static_prefixes)):
            return RouteSpec(request.method, request.path, None, False)
        return spec

    def pages(self) -> Iterable[RouteSpec]:
        return (s for s in self.specs.values() if s.page)


# --- helpers handlers use ---------------------------------------------------------------------
def principal_of(request: web.Request) -> Principal:
    principal = request.get(PRINCIPAL)
    if principal is None:  # a handler of a public route asked: a programming error
        raise web.HTTPUnauthorized()
    return principal


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    body = json.dumps({"message": message, **extra})
    return web.Response(status=status, text=body, content_type="application/json")


def safe_next(value: str | None) -> str:
    """Only a path on this site: never `//evil.example` or `https://...` (open redirects)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def client_address(request: web.Request) -> str:
    return request.get(CLIENT_ADDRESS) or request.remote or "?"


def is_secure(request: web.Request) -> bool:
    return request.get(CLIENT_SECURE, request.secure)


def set_session_cookie(request: web.Request, response: web.StreamResponse, secret: str) -> None:
    conf = request.app[SERVER].conf
    secure = is_secure(request) or conf["secure_cookies"] == "always"
    # No max-age: the cookie dies with the browser; the server enforces idle and absolute limits.
    response.set_cookie(
        SESSION_COOKIE, secret, httponly=True, samesite="Strict", secure=secure, path="/"
    )


def clear_session_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/")


# --- middlewares ------------------------------------------------------------------------------
def client_middleware(trusted: list[str]) -> Any:
    """The browser's address and scheme: X-Forwarded-* only from a configured trusted proxy."""
    networks = [ipaddress.ip_network(n) for n in trusted]

    def is_trusted(address: str | None) -> bool:
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        return any(ip in net for net in networks)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        address, secure = request.remote, request.secure
        if networks and is_trusted(address):
            hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
            hops = [h for h in hops if h]
            # The right-most address no trusted proxy vouches for is the client.
            while hops and is_trusted(hops[-1]):
                address = hops.pop()
            if hops:
                address = hops[-1]
            proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
            secure = secure or proto == "https"
        request[CLIENT_ADDRESS] = address or "?"
        request[CLIENT_SECURE] = secure
        return await handler(request)

    return middleware


def auth_middleware(routes: Routes, auth: Auth) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.http_exception is not None:
            return await handler(request)  # 404 / 405 from the router itself
        spec = routes.spec_for(request)
        if spec is None:
            _LOGGER.error("refusing %s %s: route was not added through Routes", request.method,
                          request.path)  # fmt: skip
            raise web.HTTPForbidden(text="route without an access rule")
        if spec.portal is not None:
            return await _portal(request, spec, handler)
        if spec.role is None:
            return await handler(request)
        if spec.websocket:
            if request.headers.get(hdrs.UPGRADE, "").lower() != "websocket":
                return json_error(401, "authenticate over the websocket protocol")
            origin = request.headers.get(hdrs.ORIGIN)
            if origin is not None and not _same_origin(request, origin):
                return json_error(403, "cross-origin websocket refused")
            return await handler(request)
        principal = await authenticate(request, auth)
        if principal is None:
            if spec.api:
                return _unauthorized()
            target = quote(safe_next(request.path_qs), safe="/?=&")
            raise web.HTTPSeeOther(f"/login?next={target}")
        if not principal.may(spec.role):
            if spec.api:
                return json_error(403, f"needs the {spec.role} role")
            raise web.HTTPForbidden(text=f"This page needs the {spec.role} role.")
        # A session rides on a cookie the browser adds by itself: a state-changing request
        # must also prove it came from our page. A bearer token is never sent by itself.
        unsafe = request.method not in SAFE_METHODS and principal.via == "session"
        if unsafe and not await _csrf_ok(request, principal.csrf):
            _LOGGER.warning("CSRF check failed for %s %s", request.method, request.path)
            if spec.api:
                return json_error(403, "missing or wrong CSRF token")
            raise web.HTTPForbidden(text="The form expired: go back, reload and try again.")
        request[PRINCIPAL] = principal
        return await handler(request)

    return middleware


async def _portal(request: web.Request, spec: RouteSpec, handler: Handler) -> web.StreamResponse:
    """Driver portal routes: drivers are not users; their session is a cookie of its own."""
    driver = request.app[SERVER].drivers.get(request.cookies.get(DRIVER_COOKIE))
    if driver is not None:
        request[DRIVER] = driver
    if spec.portal == "public":
        return await handler(request)  # the login forms check their own double-submit token
    if driver is None:
        target = quote(safe_next(request.path_qs), safe="/?=&")
        raise web.HTTPSeeOther(f"/portal/login?next={target}")
    if request.method not in SAFE_METHODS and not await _csrf_ok(request, driver.csrf):
        _LOGGER.warning("CSRF check failed for %s %s", request.method, request.path)
        raise web.HTTPForbidden(text="The form expired: go back, reload and try again.")
    return await handler(request)


def _unauthorized() -> web.Response:
    response = json_error(401, "authentication required")
    response.headers["WWW-Authenticate"] = 'Bearer realm="evhub"'
    return response


async def authenticate(request: web.Request, auth: Auth) -> Principal | None:
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    if header:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return await auth.token(secret.strip())
    cookie = request.cookies.get(SESSION_COOKIE)
    return await auth.session(cookie) if cookie else None


async def _csrf_ok(request: web.Request, expected: str | None) -> bool:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await request.post()  # cached by aiohttp: the handler reads it again for free
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    return bool(sent) and expected is not None and hmac.compare_digest(sent, expected)


def _same_origin(request: web.Request, origin: str) -> bool:
    host = origin.split("://", 1)[-1].rstrip("/")
    return host == request.host


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer (pages, API, errors, static files) gets the headers."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if is_secure(request):
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
