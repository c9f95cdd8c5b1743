"""Test support: a hub with the OCPP plugin on loopback, and chargers built on the `ocpp` library.

The charger side is the real `ocpp` library over a real aiohttp websocket, as a field charger
running that library would be.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v201 import ChargePoint as ChargePoint201

from hub.bootstrap import create_hub
from hub.clock import SimClock
from hub.core import Hub

PASSWORD = "correct-horse-battery-staple"


def basic_auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class WsAdapter:
    """The `send`/`recv` interface the ocpp library expects, over an aiohttp client websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.subprotocol = ws.protocol

    async def send(self, text: str) -> None:
        await self.ws.send_str(text)

    async def recv(self) -> str:
        msg = await self.ws.receive()
        if msg.type is aiohttp.WSMsgType.TEXT:
            return msg.data
        raise ConnectionError(f"websocket closed ({msg.type.name})")


def write_config(config_dir: Path, ocpp: dict[str, Any], **extra: Any) -> None:
    config = {
        "hub": {"name": "test depot", "time_zone": "Europe/Berlin"},
        "ocpp": {"host": "127.0.0.1", "port": 0, "ping_interval": 0, **ocpp},
        **extra,
    }
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "configuration.yaml").write_text(yaml.safe_dump(config))


@contextlib.asynccontextmanager
async def running_hub(
    config_dir: Path, ocpp: dict[str, Any], clock: SimClock | None = None, **extra: Any
) -> AsyncIterator[Hub]:
    write_config(config_dir, ocpp, **extra)
    hub = create_hub(config_dir, clock=clock or SimClock())
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


def ocpp_url(hub: Hub, charger_id: str, prefix: str = "/ocpp") -> str:
    port = hub.data["ocpp"].ports[0]
    return f"ws://127.0.0.1:{port}{prefix}/{charger_id}"


@contextlib.asynccontextmanager
async def charger(
    hub: Hub,
    charger_id: str,
    cp_class: type = ChargePoint16,
    *,
    protocol: str = "ocpp1.6",
    password: str | None = PASSWORD,
    url: str | None = None,
) -> AsyncIterator[Any]:
    """A connected ocpp-library charge point whose `start()` loop runs in the background."""
    headers = basic_auth(charger_id, password) if password else {}
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            url or ocpp_url(hub, charger_id), protocols=[protocol], headers=headers
        ) as ws,
    ):
        cp = cp_class(charger_id, WsAdapter(ws), response_timeout=10)
        loop_task = asyncio.create_task(cp.start())
        try:
            yield cp
        finally:
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await loop_task


__all__ = [
    "PASSWORD",
    "ChargePoint16",
    "ChargePoint201",
    "basic_auth",
    "charger",
    "ocpp_url",
    "running_hub",
]
