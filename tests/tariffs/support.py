"""Test support: a local aiohttp server that answers like the price feeds (real HTTP on
127.0.0.1), and hubs built by `create_hub` from a config dir on the simulated clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from hub.bootstrap import create_hub
from hub.clock import SimClock
from hub.core import Hub

Answer = Callable[[web.Request], web.StreamResponse]


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class FeedServer:
    """Answers per path prefix; `mode` breaks every answer ("500", "garbage") on demand."""

    answers: dict[str, Answer] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    mode: str = "ok"
    port: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def requests_to(self, prefix: str) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith(prefix)]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            Seen(request.method, request.path, dict(request.query), dict(request.headers), body)
        )
        if self.mode == "500":
            return web.Response(status=500, text="Internal Server Error")
        if self.mode == "garbage":
            return web.Response(status=200, text="<html><body>maintenance</body></html>")
        for prefix, answer in self.answers.items():
            if request.path.startswith(prefix):
                return answer(request)
        return web.Response(status=404, text="no such feed")


def json_answer(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


def write_config(config_dir: Path, config: dict[str, Any]) -> Path:
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "configuration.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return config_dir


async def start_hub(config_dir: Path, clock: SimClock) -> Hub:
    hub = create_hub(config_dir, clock=clock)
    await hub.start()
    await hub.block_till_done()  # the first fetches
    return hub
