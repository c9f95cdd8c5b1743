"""Built-in `system` plugin: the hub watching itself (loop lag, plugin health) and admin services.

Enabled by a `system:` key in configuration.yaml; registered through the same entry point group
as any third-party plugin.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import voluptuous as vol

from hub.core import Hub
from hub.entities import DescribedEntity, ValueDescription
from hub.plugins import PluginStatus, hookimpl
from hub.services import ServiceCall

DOMAIN = "system"
_LOGGER = logging.getLogger(__name__)

CONFIG_SCHEMA = vol.Schema(
    {vol.Optional("interval", default=30): vol.All(vol.Coerce(float), vol.Range(min=1, max=3600))}
)

LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass(slots=True)
class HubHealth:
    """What the system sensors read; refreshed every `interval` seconds of hub time."""

    loop_lag_ms: float | None = None
    failed_plugins: list[str] = field(default_factory=list)
    tasks: int = 0


DESCRIPTIONS: tuple[ValueDescription[HubHealth], ...] = (
    ValueDescription(
        key="loop_lag",
        name="event loop lag",
        unit="ms",
        state_class="measurement",
        value_fn=lambda h: h.loop_lag_ms,
    ),
    ValueDescription(
        key="failed_plugins",
        name="failed plugins",
        value_fn=lambda h: len(h.failed_plugins),
        attrs_fn=lambda h: {"plugins": list(h.failed_plugins)},
    ),
    ValueDescription(key="tasks", name="running tasks", value_fn=lambda h: h.tasks),
)


class SystemMonitor:
    def __init__(self, hub: Hub, interval: float) -> None:
        self.hub = hub
        self.interval = interval
        self.health = HubHealth()
        self.entities = [
            DescribedEntity(lambda: self.health, d, "hub", device_name="hub") for d in DESCRIPTIONS
        ]
        self._timer: Any = None

    async def start(self) -> None:
        await self.hub.entities.add(DOMAIN, self.entities)
        self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _schedule(self) -> None:
        self._timer = self.hub.clock.call_later(self.interval, self._tick)

    def _tick(self) -> None:
        self._schedule()
        loop = asyncio.get_running_loop()
        # Lag is a real-time quantity by nature: how late the loop runs a callback asked for now.
        asked = loop.time()
        loop.call_soon(self._measured, loop, asked)

    def _measured(self, loop: asyncio.AbstractEventLoop, asked: float) -> None:
        host = self.hub.plugins
        self.health.loop_lag_ms = round((loop.time() - asked) * 1000, 2)
        self.health.failed_plugins = (
            [r.name for r in host.records.values() if r.status is PluginStatus.FAILED]
            if host
            else []
        )
        self.health.tasks = len(asyncio.all_tasks())
        for entity in self.entities:
            entity.write_state()


@hookimpl
def hub_config_schema() -> Mapping[str, Any]:
    return {DOMAIN: CONFIG_SCHEMA}


@hookimpl
async def hub_setup(hub: Hub, config: Mapping[str, Any]) -> None:
    monitor = SystemMonitor(hub, config[DOMAIN]["interval"])
    hub.data[DOMAIN] = monitor
    await monitor.start()


@hookimpl
def hub_teardown(hub: Hub) -> None:
    monitor = hub.data.pop(DOMAIN, None)
    if monitor is not None:
        monitor.stop()


@hookimpl
def hub_register_services(hub: Hub, register: Callable[..., None]) -> None:
    def set_log_level(call: ServiceCall) -> None:
        logging.getLogger(call.data["logger"]).setLevel(call.data["level"].upper())
        _LOGGER.info("log level of %s set to %s", call.data["logger"], call.data["level"])

    async def purge_recorder(call: ServiceCall) -> int:
        if hub.recorder is None:
            raise RuntimeError("no recorder is running")
        return await hub.recorder.purge(call.data.get("keep_days"))

    register(
        DOMAIN,
        "set_log_level",
        set_log_level,
        {vol.Required("logger"): str, vol.Required("level"): vol.In(LEVELS)},
        "Change a module's log level at run time (logger '' is the root).",
    )
    register(
        DOMAIN,
        "purge_recorder",
        purge_recorder,
        {vol.Optional("keep_days"): vol.All(int, vol.Range(min=1))},
        "Delete state and event history older than keep_days now.",
    )
