"""Test support for demand response: a real openleadr VTN on loopback that records what the VEN
tells it, a charger double that does what it is told, and a small depot."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from openleadr import OpenADRServer
from openleadr.messaging import parse_message

from hub.charging.charger import (
    ChargerCapability,
    ChargerData,
    ChargerEntity,
    ChargingSchedule,
    CommandResult,
    ConnectorStatus,
)

VOLTS = 230.0
SITE = {
    "id": "depot",
    "max_current": 100,
    "max_power_kw": 60,
    "meters": {},
    "circuits": [
        {"id": "row_1", "max_current": 100, "chargers": [
            {"entity": f"charger.bay_{n}", "id": f"bay_{n}", "phases": 3, "max_current": 32}
            for n in (1, 2, 3)]},
    ],
}  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> None:
    """Wait in real time for openleadr (which polls on the wall clock); never for hub time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.02)


class LabCharger(ChargerEntity):
    """A three-phase charger that draws exactly what it is allowed (when a car is plugged in)."""

    supported = frozenset({ChargerCapability.LIMIT_AMPS, ChargerCapability.LIMIT_WATTS})

    def __init__(self, name: str) -> None:
        super().__init__(name, name, data=ChargerData(status=ConnectorStatus.AVAILABLE))
        self.plugged = False

    def suggested_object_id(self) -> str:
        return self.unique_id or ""

    async def _do_set_limit(self, schedule: ChargingSchedule) -> CommandResult:
        amps = min(schedule.periods[0].limit, 32.0) if self.plugged else 0.0
        self.update(current_a=(amps, amps, amps), power_w=amps * 3 * VOLTS)
        return CommandResult(True, "Accepted")

    def plug(self, session: str) -> None:
        self.plugged = True
        self.update(status="charging", session_id=session, energy_wh=1_000_000.0,
                    current_a=(0.0, 0.0, 0.0), power_w=0.0, phases=3)  # fmt: skip


@dataclass
class Vtn:
    """openleadr's own VTN server, with a record of registrations, opts and reports."""

    port: int
    server: OpenADRServer
    ven_id: str = "ven_evhub"
    registrations: list[str] = field(default_factory=list)
    opts: list[tuple[str, str]] = field(default_factory=list)  # (event_id, opt) as first answered
    created: list[tuple[str, str, int]] = field(default_factory=list)  # every oadrCreatedEvent
    reports: list[tuple[datetime, float]] = field(default_factory=list)
    running: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/OpenADR2/Simple/2.0b"

    def add_event(self, **kwargs: Any) -> str:
        def answered(ven_id: str, event_id: str, opt_type: str) -> None:
            self.opts.append((event_id, opt_type))

        kwargs.setdefault("callback", answered)
        return str(self.server.add_event(ven_id=self.ven_id, **kwargs))

    def stored(self, event_id: str) -> Any:
        return next(
            e for e in self.server.events[self.ven_id] if e.event_descriptor.event_id == event_id
        )

    async def stop(self) -> None:
        if self.running:
            self.running = False
            await self.server.stop()


async def start_vtn(poll: timedelta = timedelta(seconds=1), port: int | None = None) -> Vtn:
    port = port or free_port()
    server = OpenADRServer(
        vtn_id="TESTVTN", http_host="127.0.0.1", http_port=port, requested_poll_freq=poll,
        show_fingerprint=False,
    )  # fmt: skip
    vtn = Vtn(port, server)

    async def on_create_party_registration(info: dict[str, Any]) -> tuple[str, str]:
        vtn.registrations.append(info["ven_name"])
        return vtn.ven_id, f"reg_{len(vtn.registrations)}"

    async def on_register_report(
        ven_id: str, resource_id: str, measurement: str, unit: str, scale: str,
        min_sampling_interval: timedelta, max_sampling_interval: timedelta,
    ) -> tuple[Any, timedelta]:  # fmt: skip
        return vtn.reports.extend, max(min_sampling_interval, timedelta(seconds=1))

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.endswith("/EiEvent"):
            kind, payload = parse_message(await request.read())
            if kind == "oadrCreatedEvent":
                vtn.created += [
                    (r["event_id"], r["opt_type"], r["modification_number"])
                    for r in payload.get("event_responses", [])
                ]
        return await handler(request)

    server.add_handler("on_create_party_registration", on_create_party_registration)
    server.add_handler("on_register_report", on_register_report)
    server.app.middlewares.append(record)
    await server.run()
    vtn.running = True
    return vtn
