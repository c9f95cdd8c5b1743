"""A simulated charger: connection life (connect, boot, heartbeat, reconnect) and fault injection.

Sessions and CSMS commands are mixins; v16.py and v201.py add the messages of their version.
"""

from __future__ import annotations

import asyncio
import logging
import random
import zlib
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp

from hub.clock import Clock
from plugins.simulator.commands import Commands
from plugins.simulator.connector import Connector, Sample, Status, Transaction
from plugins.simulator.link import Closed, Message, Outbox, Outgoing, WsConnection
from plugins.simulator.profiles import ProfileStore
from plugins.simulator.sessions import Sessions
from plugins.simulator.vehicles import VisitPlanner

_LOGGER = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]
MAX_BACKOFF = 300.0  # s between reconnect attempts when the CSMS stays down
RECONNECT = 5.0  # s before reconnecting after the CSMS closed the socket
BOOT_RETRY = 60.0  # s when a Pending/Rejected boot names no interval
WS_TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0)


@dataclass(frozen=True, slots=True)
class ChargerSpec:
    id: str
    ocpp: str = "1.6"
    connectors: int = 2
    max_current: float = 32.0  # per phase
    phases: int = 3
    password: str | None = None  # OCPP security profile 1: HTTP Basic auth


@dataclass(slots=True)
class SiteContext:
    """What every charger of a site shares (one aiohttp session, one clock, one planner)."""

    clock: Clock
    url: str
    spawn: Spawn
    planner: VisitPlanner
    meter_interval: float = 60.0
    heartbeat_interval: float = 300.0  # when the CSMS's boot answer says 0
    voltage: float = 230.0
    response_timeout: float = 30.0  # real seconds the ocpp library waits for an answer
    reboot_seconds: float = 5.0
    ssl: Any = True
    validate: bool = False  # validate our own outgoing messages against the OCPP schemas
    session: aiohttp.ClientSession | None = None
    _changed: asyncio.Event | None = None

    def notify(self) -> None:
        """A charger's connection state changed (connected, refused, offline)."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def changed(self) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        await self._changed.wait()


@dataclass(slots=True)
class ChargerStats:
    connects: int = 0
    connect_errors: int = 0
    boots: int = 0
    boots_refused: int = 0
    accepted: int = 0
    tx_started: int = 0
    tx_stopped: int = 0


class SimCharger(Sessions, Commands):
    version: ClassVar[str] = ""
    subprotocol: ClassVar[str] = ""
    peer_class: ClassVar[Any] = None
    assigns_tx_ids: ClassVar[bool] = False  # 2.0.1: the charger names transactions; 1.6: the CSMS
    # The settings behind 1.6 configuration keys and 2.0.1 variables. Class defaults: an
    # untouched charger stores none of them (thousands of chargers in a load test).
    authorize_remote: bool = False
    local_authorize_offline: bool = True
    local_pre_authorize: bool = False
    allow_offline_unknown: bool = False
    stop_on_invalid_id: bool = True
    local_list_enabled: bool = True
    heartbeat_interval: float = 0.0  # 0: as the CSMS said at boot

    def __init__(self, spec: ChargerSpec, ctx: SiteContext) -> None:
        self.spec, self.ctx, self.id, self.clock = spec, ctx, spec.id, ctx.clock
        rng = random.Random(f"{ctx.planner.seed}/{spec.id}")
        now = self.clock.now()
        crc = zlib.crc32(spec.id.encode())
        self.serial = f"SIM{crc:08X}"
        self._tx_prefix = f"{crc:08x}"
        self.voltages: tuple[float, float, float] = tuple(  # type: ignore[assignment]
            round(ctx.voltage + rng.uniform(-2.5, 2.5), 1) for _ in range(3)
        )
        # A meter that has seen years of use: the register starts anywhere from 100 kWh to 20 MWh.
        self.connectors = [
            Connector(i, rng.uniform(100e3, 20e6), now) for i in range(1, spec.connectors + 1)
        ]
        self.meter_interval = ctx.meter_interval
        self.boot_interval = 0.0
        self.profiles = ProfileStore()
        self.local_list: dict[str, str] = {}
        self.local_list_version = 0
        self.auth_cache: dict[str, str] = {}
        self.stats = ChargerStats()
        self.outbox = Outbox(spec.id, ctx.spawn, ctx.clock, ctx.validate)
        self.online = False  # connected and the boot was accepted
        self.last_error: str | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._peer: Any = None  # the library ChargePoint of the current connection
        self._task: asyncio.Task[Any] | None = None
        self._hb_timer: Any = None
        self._meter_timer: Any = None
        self._offline_until: datetime | None = None
        self._boot_reason = "PowerUp"
        self._followups: list[Callable[[], None]] = []
        self._stopping = False
        self._tx_count = 0

    # --- what each OCPP version provides --------------------------------------------------
    def boot_payload(self) -> Message: ...
    def heartbeat_payload(self) -> Message: ...
    def authorize_payload(self, id_tag: str) -> Message: ...
    def authorize_status(self, result: Any) -> str: ...
    def status_changed(self, conn: Connector, old: Status) -> None: ...
    def report_all_statuses(self) -> None: ...
    def tx_started(self, conn: Connector, tx: Transaction, trigger: str) -> None: ...
    def tx_sample(self, conn: Connector, tx: Transaction, sample: Sample) -> None: ...
    def tx_ended(self, conn: Connector, tx: Transaction, sample: Sample, reason: str) -> None: ...

    # --- life -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{self.ctx.url.rstrip('/')}/{quote(self.id, safe='')}"

    def start(self, delay: float = 0.0) -> None:
        if self._task is not None:
            return
        if delay > 0:
            self._offline_until = self.clock.now() + timedelta(seconds=delay)
        self._task = self.ctx.spawn(self._run(), f"simulator {self.id}")
        if self.ctx.planner.arrivals.enabled:
            for conn in self.connectors:
                first = self.ctx.planner.first_arrival(self._key(conn), self.clock.now())
                self._schedule_arrival(conn, first)

    async def stop(self) -> None:
        self._stopping = True
        for timer in (self._hb_timer, self._meter_timer):
            if timer is not None:
                timer.cancel()
        for conn in self.connectors:
            for timer in (conn.visit_timer, conn.depart_timer):
                if timer is not None:
                    timer.cancel()
        self.online = False
        self.outbox.go_offline()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            while self._offline_until is not None:
                wait = (self._offline_until - self.clock.now()).total_seconds()
                if wait <= 0:
                    self._offline_until = None
                else:
                    await self.clock.sleep(wait)
            assert self.ctx.session is not None, "the site opens the aiohttp session"
            headers = (
                {"Authorization": aiohttp.encode_basic_auth(self.id, self.spec.password)}
                if self.spec.password
                else None
            )
            try:
                ws = await self.ctx.session.ws_connect(
                    self.url, protocols=(self.subprotocol,), headers=headers, ssl=self.ctx.ssl,
                    timeout=WS_TIMEOUT, autoping=True,
                )  # fmt: skip
            except Exception as err:  # refused, 401, TLS, DNS, timeout: all mean "try later"
                failures += 1
                self.stats.connect_errors += 1
                self.last_error = f"connect: {type(err).__name__}: {err}"
                log = _LOGGER.warning if failures == 1 else _LOGGER.debug
                log("%s: cannot connect to %s: %s", self.id, self.url, self.last_error)
                jitter = 0.5 + (zlib.crc32(f"{self.id}/{failures}".encode()) % 1000) / 1000
                delay = min(MAX_BACKOFF, 2.0 ** min(failures, 9)) * jitter
                self._offline_until = self.clock.now() + timedelta(seconds=delay)
                self.ctx.notify()
                continue
            failures = 0
            await self._serve(ws)
            if self._offline_until is None and not self._stopping:
                self._offline_until = self.clock.now() + timedelta(seconds=RECONNECT)

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self.stats.connects += 1
        if ws.protocol != self.subprotocol:
            _LOGGER.warning("%s: server agreed to subprotocol %r", self.id, ws.protocol)
        peer = self._peer = self.peer_class(self, WsConnection(ws))
        booter = self.ctx.spawn(self._boot(peer), f"simulator {self.id} boot")
        try:
            await peer.start()
        except Closed:
            pass
        except Exception as err:  # e.g. RecursionError on a hostile frame: reconnect
            self.last_error = f"connection: {type(err).__name__}: {err}"
            _LOGGER.exception("%s: connection failed", self.id)
        finally:
            booter.cancel()
            self._went_offline()
            self._ws = self._peer = None
            if not ws.closed:
                await ws.close()

    async def _boot(self, peer: Any) -> None:
        while True:
            try:
                result = await peer.send_call(*self.boot_payload(), self.ctx.validate)
                status, interval = str(result.status), int(result.interval)
            except (ConnectionError, aiohttp.ClientError):
                return
            except Exception as err:  # CALLERROR, no answer, an answer we cannot read
                status, interval = "Error", 0
                self.last_error = f"boot: {type(err).__name__}: {err}"
            if peer is not self._peer:  # the line dropped meanwhile (a swallowed cancel)
                return
            self.stats.boots += 1
            if status == "Accepted":
                self._accepted(peer, interval)
                return
            self.stats.boots_refused += 1
            self.ctx.notify()  # the retry timer exists before anyone woken by this runs
            await self.clock.sleep(interval if interval > 0 else BOOT_RETRY)

    def _accepted(self, peer: Any, interval: int) -> None:
        self.online = True
        self.stats.accepted += 1
        self.ctx.notify()
        self.boot_interval = float(interval)
        self._boot_reason = "Unknown"  # a later connection without a reboot
        self._schedule_heartbeat()
        self.outbox.go_online(peer)  # what was queued offline goes first, in its order
        self.report_all_statuses()
        for conn in self.connectors:
            vehicle = conn.vehicle
            if vehicle and vehicle.id_tag and conn.tx is None and not conn.finished:
                self._authorize(conn, vehicle.id_tag)

    def _went_offline(self) -> None:
        if self.online:
            self.ctx.notify()
        self.online = False
        self._peer = None  # an answer still arriving for the old line is ignored
        if self._hb_timer is not None:
            self._hb_timer.cancel()
            self._hb_timer = None
        self.outbox.go_offline()

    def _schedule_heartbeat(self) -> None:
        if self._hb_timer is not None:
            self._hb_timer.cancel()
        self._hb_timer = self.clock.call_later(self.heartbeat, self._heartbeat)

    def _heartbeat(self) -> None:
        self._hb_timer = None
        if self.online:
            self.outbox.put(Outgoing(self.heartbeat_payload))
            self._schedule_heartbeat()

    @property
    def heartbeat(self) -> float:
        """The interval in force: set by configuration, else the boot answer's, else the site's."""
        return self.heartbeat_interval or self.boot_interval or self.ctx.heartbeat_interval

    @heartbeat.setter
    def heartbeat(self, seconds: float) -> None:
        self.heartbeat_interval = seconds
        if self.online:
            self._schedule_heartbeat()

    def after_reply(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the answer to the CSMS's current call has been sent."""
        self._followups.append(callback)

    def run_followups(self) -> None:
        followups, self._followups = self._followups, []
        for callback in followups:
            try:
                callback()
            except Exception:
                _LOGGER.exception("%s: follow-up %r failed", self.id, callback)

    # --- fault injection --------------------------------------------------------------------
    def disconnect(self, for_seconds: float = 60.0) -> None:
        """Drop the socket; stay offline `for_seconds` of clock time, queuing transaction
        messages (replayed in order with their original timestamps after the next boot)."""
        self._offline_until = self.clock.now() + timedelta(seconds=for_seconds)
        self._went_offline()
        ws = self._ws
        if ws is not None and not ws.closed:
            self.ctx.spawn(ws.close(code=aiohttp.WSCloseCode.GOING_AWAY), f"{self.id} drop")

    # --- debugging ------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ocpp": self.version,
            "url": self.url,
            "online": self.online,
            "queued": len(self.outbox.queue),
            "last_error": self.last_error,
            "stats": {**asdict(self.stats), **asdict(self.outbox.stats)},
            "connectors": [c.as_dict(self.voltages) for c in self.connectors],  # type: ignore[arg-type]
        }
