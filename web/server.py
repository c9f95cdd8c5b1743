"""The web server the hub runs when configuration.yaml has an `http:` block: builds the aiohttp app
(API, websocket, pages, static files, plugin routes), listens, and stops before the plugins do.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import ssl
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from aiohttp import web
from markupsafe import Markup
from sqlalchemy import Connection

from hub.storage.schema import json_dumps
from web import api, pages, portal, queries
from web.auth import Auth
from web.config import ROLES
from web.drivers import DriverSessions
from web.render import Renderer
from web.routes import (
    SERVER,
    Routes,
    add_security_headers,
    auth_middleware,
    client_middleware,
)
from web.websocket import Sockets

if TYPE_CHECKING:
    from hub.bus import Event
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

HERE = Path(__file__).parent
OPENAPI = HERE / "openapi.yaml"
EVENT_PENDING = "ocpp_charger_pending"  # fired by whichever plugin holds chargers for approval
PENDING_DECISIONS = ("approve_charger", "reject_charger")
MAX_BODY = 1024 * 1024


def version() -> str:
    try:
        return importlib.metadata.version("evhub")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def load_openapi() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    document["info"]["version"] = version()
    return document


class WebServer:
    """`hub.http`: started by the hub after its plugins, stopped before them."""

    def __init__(self, hub: Hub, conf: dict[str, Any]) -> None:
        self.hub = hub
        self.conf = conf
        self.version = version()
        self.auth = Auth(hub, conf)
        self.drivers = DriverSessions(hub, conf)
        self.renderer = Renderer(self)
        self.sockets = Sockets(self)
        self.app: web.Application | None = None
        self.routes: Routes | None = None
        self.port: int | None = None
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._openapi: dict[str, Any] | None = None
        self._plugin_paths: list[tuple[str, str, str]] = []  # (method, path, plugin)
        self._pending: dict[str, dict[str, Any]] = {}
        self._unsubscribe: list[Callable[[], None]] = []

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        await self.auth.start()
        self.auth.on_revoke(self.sockets.revoked)
        await self._load_pending()
        self.app = self.build_app()
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        context = None
        if "ssl_certificate" in self.conf:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.conf["ssl_certificate"], self.conf["ssl_key"])
        site = web.TCPSite(
            self._runner, self.conf["host"], self.conf["port"], ssl_context=context, backlog=256
        )
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.conf["port"]
        scheme = "https" if context else "http"
        self.url = f"{scheme}://{self.conf['host']}:{self.port}"
        if await self.auth.needs_setup():
            _LOGGER.warning(
                "no user yet: open %s/setup to create the owner account, or run "
                "`evhub user add NAME --role admin`", self.url,
            )  # fmt: skip
        _LOGGER.info("web UI and API on %s", self.url)

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        await self.sockets.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.auth.stop()

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        routes = self.routes = Routes(app)
        app.middlewares.extend(
            [client_middleware(self.conf["trusted_proxies"]), auth_middleware(routes, self.auth)]
        )
        app[SERVER] = self
        app.on_response_prepare.append(add_security_headers)
        for method, path, handler, role in api.ROUTES:
            routes.add(method, path, handler, role=role)
        routes.add("GET", "/api/websocket", self.sockets.handle, websocket=True)
        pages.register(routes)
        portal.register(routes)
        routes.static("/static", HERE / "static")
        self._add_plugin_routes(routes)
        return app

    # --- plugin routes --------------------------------------------------------------------
    def _add_plugin_routes(self, routes: Routes) -> None:
        if self.hub.plugins is None:
            return
        for plugin, args, kwargs in self.hub.plugins.collect_calls("hub_web_routes"):
            try:
                self._add_plugin_route(routes, plugin, *args, **kwargs)
            except (TypeError, ValueError) as err:
                _LOGGER.error("plugin %s: web route %s refused: %s", plugin, args[:2], err)

    def _add_plugin_route(
        self,
        routes: Routes,
        plugin: str,
        method: str,
        path: str,
        handler: Callable[[web.Request], Any],
        *,
        roles: Iterable[str] | None = None,
        page: str | None = None,
    ) -> None:
        # Plugins live in their own namespace and can never add a public route.
        allowed = (f"/api/plugins/{plugin}/", f"/plugins/{plugin}/")
        if not path.startswith(allowed) and path not in (a.rstrip("/") for a in allowed):
            raise ValueError(f"path must start with {allowed[0]} or {allowed[1]}")
        wanted = list(roles) if roles is not None else None
        if wanted is not None and (not wanted or any(r not in ROLES for r in wanted)):
            raise ValueError(f"roles must be some of {ROLES}")
        if wanted is None:
            role = "viewer" if method.upper() in ("GET", "HEAD") else "operator"
        else:
            role = min(wanted, key=ROLES.index)
        spec = routes.add(
            method, path, self._wrap_plugin(handler, page), role=role, plugin=plugin, page=page
        )
        self._plugin_paths.append((spec.method, spec.path, plugin))

    def _wrap_plugin(
        self, handler: Callable[[web.Request], Any], page: str | None
    ) -> Callable[[web.Request], Any]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            result = handler(request)
            if inspect.isawaitable(result):
                result = await result
            if isinstance(result, web.StreamResponse):
                return result
            if request.path.startswith("/api/"):
                return web.Response(text=json_dumps(result), content_type="application/json")
            # Plain strings are text (escaped); only Markup (`__html__`) goes in as HTML.
            body = result if hasattr(result, "__html__") else Markup.escape(str(result))
            return await self.renderer.page(request, "plugin.html", title=page or "", body=body)

        return wrapped

    # --- for handlers ---------------------------------------------------------------------
    async def read(self, fn: Callable[[Connection], T]) -> T:
        assert self.hub.recorder is not None
        return await self.hub.recorder.read(fn)

    def openapi_document(self) -> dict[str, Any]:
        """The document in web/openapi.yaml, plus a generic entry for each plugin API route."""
        if self._openapi is None:
            self._openapi = load_openapi()
        document = {**self._openapi, "paths": dict(self._openapi["paths"])}
        for method, path, plugin in self._plugin_paths:
            if not path.startswith("/api/"):
                continue
            entry = dict(document["paths"].get(path, {}))
            entry[method.lower()] = {
                "summary": f"added by the {plugin} plugin",
                "tags": ["plugins"],
                "responses": {"200": {"description": "see the plugin's documentation"}},
            }
            document["paths"][path] = entry
        return document

    # --- chargers waiting for approval ----------------------------------------------------
    async def _load_pending(self) -> None:
        """Chargers announced as pending (recorded events), less those decided since.

        No plugin is imported: the facts come from `ocpp_charger_pending` events and the
        `call_service` events of the approve/reject services, kept by the recorder.
        """
        since = self.hub.now() - timedelta(days=30)
        rows = await self.read(
            lambda c: queries.recent_events(c, [EVENT_PENDING, "call_service"], since, None, 5000)
        )
        for row in reversed(rows):  # oldest first, as they happened
            self._on_pending_fact(row["event_type"], row["data"], row["time_fired"])
        bus = self.hub.bus
        self._unsubscribe = [
            bus.listen(EVENT_PENDING, self._on_event),
            bus.listen("call_service", self._on_event),
        ]

    def _on_event(self, event: Event) -> None:
        self._on_pending_fact(event.event_type, event.data, event.time_fired)

    def _on_pending_fact(self, event_type: str, data: Any, when: Any) -> None:
        if event_type == EVENT_PENDING and data.get("charger_id"):
            charger_id = str(data["charger_id"])
            self._pending[charger_id] = {
                "charger_id": charger_id,
                "address": data.get("address"),
                "since": when.isoformat() if hasattr(when, "isoformat") else when,
            }
        elif event_type == "call_service" and data.get("service") in PENDING_DECISIONS:
            service_data = data.get("service_data") or {}
            self._pending.pop(str(service_data.get("charger_id")), None)

    async def pending_chargers(self) -> list[dict[str, Any]]:
        return sorted(self._pending.values(), key=lambda p: p["charger_id"])
