"""The Hub: one object that owns the clock, bus, states, services, entity registry and plugins.

It starts and stops them in order and tracks every task it runs, so shutdown leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Coroutine, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from hub.bus import EVENT_HUB_START, EVENT_HUB_STARTED, EVENT_HUB_STOP, EventBus
from hub.charging.services import register_charger_services
from hub.clock import Clock, RealClock
from hub.entities import EntityRegistry
from hub.services import ServiceRegistry
from hub.states import StateMachine

if TYPE_CHECKING:
    from hub.charging.site import Site
    from hub.plugins import PluginHost
    from hub.storage.recorder import Recorder
    from web.server import WebServer

_LOGGER = logging.getLogger(__name__)

STOP_TIMEOUT = 4.0  # seconds for teardown before remaining tasks are cancelled


class CoreState(enum.StrEnum):
    NOT_RUNNING = "not_running"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Hub:
    """Build with `hub.bootstrap.create_hub` (validated config) or directly in tests."""

    def __init__(
        self,
        config_dir: Path | str | None = None,
        *,
        clock: Clock | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.config_dir = Path(config_dir) if config_dir is not None else None
        self.config: dict[str, Any] = dict(config or {})
        core = self.config.get("hub", {})
        self.name: str = core.get("name", "evhub")
        self.time_zone = ZoneInfo(core.get("time_zone", "UTC"))
        self.currency: str = core.get("currency", "EUR")
        self.clock: Clock = clock or RealClock()
        self.state = CoreState.NOT_RUNNING
        self._tasks: set[asyncio.Task[Any]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self.bus = EventBus(self.clock, self.create_task)
        self.states = StateMachine(self.bus, self.clock)
        self.services = ServiceRegistry(self.bus)
        self.entities = EntityRegistry(self)
        self.plugins: PluginHost | None = None
        self.recorder: Recorder | None = None
        self.site: Site | None = None
        # The web UI and API (`http:` in configuration.yaml): started after the plugins, so
        # their routes are collected, and stopped before them.
        self.http: WebServer | None = None
        # Shared per-domain data a plugin keeps on the hub (the HA `hass.data` idea, namespaced).
        self.data: dict[str, Any] = {}
        self._stopped = asyncio.Event()

    # --- time ---------------------------------------------------------------------------
    def now(self) -> datetime:
        return self.clock.now()

    def now_local(self) -> datetime:
        return self.clock.now().astimezone(self.time_zone)

    # --- tasks --------------------------------------------------------------------------
    def create_task(
        self, coro: Coroutine[Any, Any, Any], name: str = "", *, background: bool = False
    ) -> asyncio.Task[Any]:
        """Run a coroutine as a tracked task.

        Background tasks (servers, pollers) are cancelled at stop; the others are awaited by
        `block_till_done` and given STOP_TIMEOUT at shutdown.
        """
        task = asyncio.get_running_loop().create_task(coro, name=name or None)
        bucket = self._background if background else self._tasks
        bucket.add(task)
        task.add_done_callback(bucket.discard)
        task.add_done_callback(_log_task_failure)
        return task

    async def block_till_done(self, timeout: float = 30.0) -> None:
        """Wait until every non-background task (and those they start) has finished."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for _ in range(3):
                await asyncio.sleep(0)
            pending = [t for t in self._tasks if not t.done() and t is not asyncio.current_task()]
            if not pending:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"tasks still running: {[t.get_name() for t in pending]}")
            await asyncio.wait(pending, timeout=remaining)

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        if self.state is not CoreState.NOT_RUNNING:
            raise RuntimeError(f"hub cannot start from state {self.state}")
        self.state = CoreState.STARTING
        _LOGGER.info("starting %s", self.name)
        if self.recorder is not None:
            await self.recorder.start()
        self.bus.fire(EVENT_HUB_START)
        register_charger_services(self)
        if self.plugins is not None:
            await self.plugins.setup_all(self.config)
        if "automation" in self.config:
            # After the plugins: their services, trigger kinds and entities exist by now.
            from hub.automation.component import setup_automations

            await setup_automations(self, self.config["automation"])
        if self.http is not None:
            try:
                await self.http.start()
            except Exception:
                # Charging goes on without the UI (a port in use, a bad certificate).
                _LOGGER.exception("the web server did not start")
        self.state = CoreState.RUNNING
        self.bus.fire(EVENT_HUB_STARTED)
        _LOGGER.info(
            "%s running: %d entities, %d services, plugins %s",
            self.name,
            len(self.states.all()),
            sum(len(s) for s in self.services.catalog().values()),
            ", ".join(self.plugins.loaded_names()) if self.plugins else "none",
        )

    async def stop(self) -> None:
        """Tear plugins down, drain tasks, flush the recorder and the registry. Idempotent."""
        if self.state in (CoreState.STOPPING, CoreState.STOPPED):
            await self._stopped.wait()
            return
        self.state = CoreState.STOPPING
        _LOGGER.info("stopping %s", self.name)
        try:
            self.bus.fire(EVENT_HUB_STOP)
            if self.http is not None:
                await self.http.stop()
            if self.plugins is not None:
                await self.plugins.teardown_all()
            await self._drain_tasks()
        finally:
            # Even when stop() itself is cancelled, what was recorded reaches the disk and a
            # later stop() does not wait forever.
            try:
                if self.recorder is not None:
                    await self.recorder.stop()
                self.entities.flush()
            finally:
                self.state = CoreState.STOPPED
                self._stopped.set()
                _LOGGER.info("%s stopped", self.name)

    async def _drain_tasks(self) -> None:
        for task in list(self._background):
            task.cancel()
        pending = {t for t in self._tasks | self._background if not t.done()}
        if not pending:
            return
        _, still = await asyncio.wait(pending, timeout=STOP_TIMEOUT)
        for task in still:
            _LOGGER.warning("cancelling task %s at shutdown", task.get_name())
            task.cancel()
        if still:
            # A task that swallows cancellation gets a moment more, then is abandoned.
            await asyncio.wait(still, timeout=min(1.0, STOP_TIMEOUT))

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


def _log_task_failure(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        _LOGGER.error("task %s failed", task.get_name(), exc_info=exc)
