"""Server-side rendering: one jinja2 environment with autoescape on, the page layout's context
(navigation by role, CSRF token, flash messages) and the filters templates format values with.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web

from web.auth import Principal
from web.routes import PRINCIPAL

if TYPE_CHECKING:
    from web.server import WebServer

HERE = Path(__file__).parent

# (path, title, role needed): the core pages in the navigation.
NAV = (
    ("/", "Overview", "viewer"),
    ("/chargers", "Chargers", "viewer"),
    ("/sessions", "Sessions", "viewer"),
    ("/automations", "Automations", "viewer"),
    ("/pending", "Pending", "admin"),
    ("/users", "Users", "admin"),
    ("/security", "Security", "admin"),
    ("/settings", "Settings", "admin"),
    ("/account", "Account", "viewer"),
)
MAX_FLASH_KEYS = 10_000


class Renderer:
    def __init__(self, server: WebServer) -> None:
        self.server = server
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,  # every {{ value }} is escaped; only Markup passes through
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(time=self.format_time, num=format_number)
        self.env.globals["static"] = self.static_url
        self._versions: dict[str, str] = {}
        self._flash: OrderedDict[str, list[tuple[str, str]]] = OrderedDict()

    def static_url(self, name: str) -> str:
        """`/static/app.js?v=<content hash>`: a new release is never served from a stale cache."""
        version = self._versions.get(name)
        if version is None:
            data = (HERE / "static" / name).read_bytes()
            version = self._versions[name] = hashlib.sha256(data).hexdigest()[:10]
        return f"/static/{name}?v={version}"

    def format_time(self, value: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
        if value is None or value == "":
            return ""
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                return value
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(self.server.hub.time_zone).strftime(fmt)
        return str(value)

    # --- flash messages -----------------------------------------------------------------
    def flash(self, principal: Principal, kind: str, text: str) -> None:
        """A message for the user's next page (after the redirect that follows a form)."""
        messages = self._flash.setdefault(principal.key, [])
        messages.append((kind, text[:500]))
        del messages[:-5]
        self._flash.move_to_end(principal.key)
        while len(self._flash) > MAX_FLASH_KEYS:
            self._flash.popitem(last=False)

    def take_flash(self, principal: Principal | None) -> list[tuple[str, str]]:
        return self._flash.pop(principal.key, []) if principal else []

    # --- pages --------------------------------------------------------------------------
    def nav(self, principal: Principal | None, path: str) -> list[dict[str, Any]]:
        if principal is None:
            return []
        items = [(p, t) for p, t, role in NAV if principal.may(role)]
        routes = self.server.routes
        if routes is not None:
            items += [(s.path, s.page or "") for s in routes.pages()
                      if s.role and principal.may(s.role) and "{" not in s.path]  # fmt: skip
        return [
            {"href": p, "title": t, "active": p == path or (p != "/" and path.startswith(p + "/"))}
            for p, t in items
        ]

    async def page(
        self, request: web.Request, template: str, *, status: int = 200, **context: Any
    ) -> web.Response:
        principal: Principal | None = request.get(PRINCIPAL)
        hub = self.server.hub
        body = self.env.get_template(template).render(
            hub_name=hub.name,
            user=principal,
            csrf_token=principal.csrf if principal and principal.csrf else "",
            nav=self.nav(principal, request.path),
            flashes=self.take_flash(principal),
            path=request.path,
            now=hub.now_local(),
            currency=hub.currency,
            time_zone=str(hub.time_zone),
            **context,
        )
        return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def format_number(value: Any, digits: int = 1, unit: str = "") -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}" if unit else text
