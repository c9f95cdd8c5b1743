"""A site of simulated chargers sharing one clock, one aiohttp session and one visit planner.

Built from the `simulator:` configuration block (plugin) or from `evhub simulate`'s arguments.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from hub.clock import Clock
from plugins.simulator.charger import ChargerSpec, SimCharger, SiteContext, Spawn
from plugins.simulator.v16 import Charger16
from plugins.simulator.v201 import Charger201
from plugins.simulator.vehicles import (
    EVSPECS,
    ArrivalConfig,
    VehicleModel,
    VisitPlanner,
    load_models,
)

_LOGGER = logging.getLogger(__name__)

DEFAULT_URL = "ws://127.0.0.1:9000/ocpp"
CHARGER_CLASSES: dict[str, type[SimCharger]] = {"1.6": Charger16, "2.0.1": Charger201}


def expand_chargers(entries: Iterable[Mapping[str, Any]]) -> list[ChargerSpec]:
    """Config entries -> one spec per charger; `count: 4` with id `bay_{n:02d}` makes bay_01..04.

    Raises ValueError on a duplicate id.
    """
    specs: list[ChargerSpec] = []
    for entry in entries:
        template, count = str(entry["id"]), entry.get("count")
        if count is None:
            ids = [template]
        elif "{" in template:
            ids = [template.format(n=n) for n in range(1, count + 1)]
        else:
            ids = [f"{template}_{n:02d}" for n in range(1, count + 1)]
        specs += [
            ChargerSpec(
                id=charger_id,
                ocpp=str(entry.get("ocpp", "1.6")),
                connectors=int(entry.get("connectors", 2)),
                max_current=float(entry.get("max_current", 32.0)),
                phases=int(entry.get("phases", 3)),
                password=entry.get("password"),
            )
            for charger_id in ids
        ]
    seen: set[str] = set()
    for spec in specs:
        if spec.id in seen:
            raise ValueError(f"charger id {spec.id!r} appears twice")
        seen.add(spec.id)
    return specs


def ssl_for(url: str, verify: bool = True, ca_file: str | None = None) -> Any:
    if not url.startswith("wss://"):
        return True  # aiohttp's default; unused for ws://
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:  # a test CSMS with a self-signed certificate
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class SimulatedSite:
    """N simulated chargers (mixed OCPP versions allowed) against one CSMS URL."""

    def __init__(
        self,
        specs: Iterable[ChargerSpec],
        *,
        clock: Clock,
        url: str = DEFAULT_URL,
        seed: int = 1,
        meter_interval: float = 60.0,
        heartbeat_interval: float = 300.0,
        voltage: float = 230.0,
        id_tags: Iterable[str] = (),
        vehicles: Iterable[VehicleModel] = (),
        vehicle_specs: Path | None = EVSPECS,
        arrivals: ArrivalConfig | None = None,
        ramp: float = 0.0,
        ssl_context: Any = None,
        response_timeout: float = 30.0,
        validate: bool = False,
        spawn: Spawn | None = None,
    ) -> None:
        self.clock = clock
        self.ramp = ramp
        self._own_tasks: set[asyncio.Task[Any]] = set()
        self._vehicles = tuple(vehicles)
        self._vehicle_specs = vehicle_specs
        planner = VisitPlanner(seed, self._vehicles, tuple(id_tags), arrivals or ArrivalConfig())
        self.ctx = SiteContext(
            clock=clock,
            url=url,
            spawn=spawn or self._spawn,
            planner=planner,
            meter_interval=meter_interval,
            heartbeat_interval=heartbeat_interval,
            voltage=voltage,
            response_timeout=response_timeout,
            ssl=ssl_context if ssl_context is not None else ssl_for(url),
            validate=validate,
        )
        self.chargers: dict[str, SimCharger] = {}
        for spec in specs:
            if spec.ocpp not in CHARGER_CLASSES:
                raise ValueError(f"{spec.id}: OCPP {spec.ocpp} is not simulated (1.6 or 2.0.1)")
            self.chargers[spec.id] = CHARGER_CLASSES[spec.ocpp](spec, self.ctx)
        self.started = False

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        clock: Clock,
        spawn: Spawn | None = None,
        base_dir: Path | None = None,
    ) -> SimulatedSite:
        """From a validated `simulator:` block; relative paths are relative to `base_dir`."""

        def path(value: str | None) -> Path | None:
            if value is None:
                return None
            p = Path(value)
            return p if p.is_absolute() or base_dir is None else base_dir / p

        arrivals = dict(config.get("arrivals") or {})
        for key in ("gap", "dwell", "soc", "target_soc"):
            if key in arrivals:
                arrivals[key] = tuple(arrivals[key])
        url = config.get("url", DEFAULT_URL)
        ca_file = path(config.get("ca_file"))
        return cls(
            expand_chargers(config["chargers"]),
            clock=clock,
            url=url,
            seed=config.get("seed", 1),
            meter_interval=config.get("meter_interval", 60.0),
            heartbeat_interval=config.get("heartbeat_interval", 300.0),
            voltage=config.get("voltage", 230.0),
            id_tags=config.get("id_tags", ()),
            vehicles=[VehicleModel(**v) for v in config.get("vehicles", ())],
            vehicle_specs=path(config.get("vehicle_specs")) or EVSPECS,
            arrivals=ArrivalConfig(**arrivals),
            ramp=config.get("ramp", 0.0),
            ssl_context=ssl_for(
                url, config.get("verify_ssl", True), str(ca_file) if ca_file else None
            ),
            spawn=spawn,
        )

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Task tracking when no hub does it (the standalone `evhub simulate`)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._own_tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._own_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _LOGGER.error("task %s failed", task.get_name(), exc_info=task.exception())

    async def start(self) -> None:
        """Open the session and start every charger (spread over `ramp` seconds if set)."""
        if self.started:
            return
        self.started = True
        if not self._vehicles:
            loop = asyncio.get_running_loop()
            models = await loop.run_in_executor(None, load_models, self._vehicle_specs)
            self.ctx.planner.models = models
        self.ctx.session = aiohttp.ClientSession(
            # No pool limit: every charger holds its websocket for as long as it runs.
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=None, connect=30, sock_connect=30),
        )
        count = len(self.chargers)
        for i, charger in enumerate(self.chargers.values()):
            charger.start(delay=self.ramp * i / count if self.ramp and count else 0.0)
        _LOGGER.info("simulating %d chargers against %s", count, self.ctx.url)

    async def stop(self) -> None:
        """Close every socket and the session; safe to call twice."""
        if not self.started:
            return
        self.started = False
        stops = [c.stop() for c in self.chargers.values()]
        try:
            await asyncio.wait_for(asyncio.gather(*stops, return_exceptions=True), timeout=10)
        except TimeoutError:
            _LOGGER.warning("simulated chargers did not close within 10 s")
        for task in list(self._own_tasks):
            task.cancel()
        if self._own_tasks:
            await asyncio.gather(*self._own_tasks, return_exceptions=True)
        if self.ctx.session is not None:
            await self.ctx.session.close()
            self.ctx.session = None

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait (no polling) until `predicate()` holds after some charger's connection changed."""
        while not predicate():
            await self.ctx.changed()

    def charger(self, charger_id: str) -> SimCharger:
        return self.chargers[charger_id]

    def totals(self) -> dict[str, int]:
        chargers = self.chargers.values()
        return {
            "chargers": len(self.chargers),
            "online": sum(c.online for c in chargers),
            "ever_accepted": sum(c.stats.accepted > 0 for c in chargers),
            "transactions_started": sum(c.stats.tx_started for c in chargers),
            "transactions_stopped": sum(c.stats.tx_stopped for c in chargers),
            "messages": sum(c.outbox.stats.sent for c in chargers),
            "errors": sum(c.outbox.stats.errors + c.stats.connect_errors for c in chargers),
        }

    def summary(self) -> str:
        t = self.totals()
        return (
            f"{t['chargers']} chargers: {t['ever_accepted']} connected ({t['online']} online at "
            f"the end), {t['transactions_started']} transactions started, "
            f"{t['transactions_stopped']} stopped, {t['messages']} messages, {t['errors']} errors"
        )

    def status(self) -> dict[str, Any]:
        """For debugging: the totals and every charger's state."""
        return {
            "url": self.ctx.url,
            "totals": self.totals(),
            "chargers": [c.status() for c in self.chargers.values()],
        }
