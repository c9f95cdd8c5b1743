"""A started hub with a recorder and the web server on a loopback port, on the simulated clock,
and browser-less clients: a cookie-keeping session that logs in, bearer-token callers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.clock import SimClock
from hub.core import CoreState, Hub
from hub.plugins import PluginHost
from hub.storage.recorder import Recorder
from web import config
from web.auth import Principal
from web.server import WebServer

PASSWORD = "correct horse battery"
SYSTEM = Principal("system", "test", "admin", "token", "-")


@dataclass
class Web:
    hub: Hub
    server: WebServer
    clock: SimClock
    url: str
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)

    def client(self, **headers: str) -> aiohttp.ClientSession:
        # unsafe: the cookie jar must keep cookies of an IP-address host (127.0.0.1).
        session = aiohttp.ClientSession(
            self.url, cookie_jar=aiohttp.CookieJar(unsafe=True), headers=headers
        )
        self.sessions.append(session)
        return session

    async def user(self, name: str, role: str = "admin", password: str = PASSWORD) -> None:
        await self.server.auth.add_user(name, role, password, SYSTEM)

    async def token(self, name: str, role: str = "admin") -> str:
        await self.user(name, role)
        users = {u.name: u for u in await self.server.auth.users()}
        who = Principal(users[name].id, name, role, "token", "-")
        _, secret = await self.server.auth.create_token(who, f"{name} token")
        return secret

    def bearer(self, token: str) -> aiohttp.ClientSession:
        return self.client(Authorization=f"Bearer {token}")

    async def browser(self, name: str, role: str = "admin") -> tuple[aiohttp.ClientSession, str]:
        """A logged-in cookie session and its CSRF token."""
        await self.user(name, role)
        session = self.client()
        await login(session, name)
        page = await (await session.get("/account")).text()
        return session, csrf_of(page)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]*)"', page)
    assert found, "no csrf meta tag on the page"
    return found.group(1)


def pre_token(page: str) -> str:
    found = re.search(r'name="pre_token" value="([^"]*)"', page)
    assert found, "no pre_token on the form"
    return found.group(1)


async def login(
    session: aiohttp.ClientSession, name: str, password: str = PASSWORD
) -> aiohttp.ClientResponse:
    page = await (await session.get("/login")).text()
    return await session.post(
        "/login",
        data={"name": name, "password": password, "pre_token": pre_token(page), "next": "/"},
        allow_redirects=False,
    )


async def start_web(
    tmp_path: Path, clock: SimClock, plugins: dict[str, Any] | None = None, **conf: Any
) -> Web:
    hub = Hub(tmp_path, clock=clock, config={"hub": {"name": "Test depot"}})
    hub.recorder = Recorder(hub, f"sqlite:///{tmp_path / 'evhub.db'}")
    host = PluginHost()
    for name, plugin in (plugins or {}).items():
        host.register(name, plugin)
    hub.plugins, host.hub = host, hub
    hub.http = WebServer(hub, config.validate({"port": 0, **conf}))
    await hub.start()
    return Web(hub, hub.http, clock, hub.http.url)


@pytest.fixture
async def web(tmp_path: Path, clock: SimClock) -> AsyncIterator[Web]:
    w = await start_web(tmp_path, clock)
    yield w
    for session in w.sessions:
        await session.close()
    if w.hub.state is not CoreState.STOPPED:
        await w.hub.stop()
