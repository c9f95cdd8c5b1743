"""The automation component: builds the automations from `automation:`, keeps them in
`hub.data["automation"]`, and offers `automation.reload/turn_on/turn_off/toggle/trigger`.

`automation.reload` reads configuration.yaml (and what it includes) again and replaces only the
automations whose configuration changed; the others keep running, with their traces.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from hub.automation import cv
from hub.automation.config import (
    DOMAIN,
    AutomationConfig,
    BrokenAutomation,
    automation_block,
    validate_automations,
)
from hub.automation.engine import AutomationEntity
from hub.automation.registry import Platforms
from hub.automation.trace import TraceStore
from hub.bus import EVENT_HUB_STOP, EVENT_STATE_CHANGED, MATCH_ALL, Event
from hub.config import ConfigError, load_configuration
from hub.services import ServiceCall
from hub.storage.store import JsonStore

if TYPE_CHECKING:
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

EVENT_AUTOMATION_RELOADED = "automation_reloaded"
STORAGE_KEY = "automation_state"


class Automations:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.platforms = Platforms.for_host(hub.plugins)
        self.by_key: dict[str, AutomationEntity] = {}
        self.traces = TraceStore()
        self._store = JsonStore(hub, STORAGE_KEY, 1, 1.0)
        self._remembered: dict[str, bool] = dict(self._store.load() or {})
        self._unsubscribe = [
            hub.bus.listen(EVENT_HUB_STOP, self._hub_stopping),
            hub.bus.listen(MATCH_ALL, self._observe),
        ]

    # --- identity ---------------------------------------------------------------------------
    @staticmethod
    def key_of(config: AutomationConfig | BrokenAutomation) -> str:
        return config.id if config.id is not None else f"automation_{config.index}"

    def trace_key(self, automation: str) -> str:
        """An automation's id (or its entity id) -> the key its traces are kept under."""
        for key, entity in self.by_key.items():
            if automation in (key, entity.entity_id):
                return key
        return automation

    def get(self, automation: str) -> AutomationEntity | None:
        return self.by_key.get(self.trace_key(automation))

    # --- building -------------------------------------------------------------------------
    async def load(self, block: Any) -> None:
        """Create, keep or replace automations so they match `block` (pass 1 already done)."""
        results = validate_automations(automation_block(block), self.platforms)
        wanted: dict[str, AutomationConfig | BrokenAutomation] = {}
        for result in results:
            if isinstance(result, BrokenAutomation):
                for error in result.errors:
                    _LOGGER.error("automation not loaded: %s", error)
            wanted[self.key_of(result)] = result
        for key in [k for k in self.by_key if k not in wanted]:
            await self._remove(key)
        added: list[AutomationEntity] = []
        for key, config in wanted.items():
            current = self.by_key.get(key)
            if current is not None and _same(current.config, config):
                continue
            if current is not None:
                await self._remove(key)
            entity = AutomationEntity(self, config)
            if isinstance(config, AutomationConfig):
                initial = config.initial_state
                entity.is_on = self._remembered.get(key, True) if initial is None else initial
            self.by_key[key] = entity
            added.append(entity)
        for entity in added:
            await self.hub.entities.add(DOMAIN, [entity])
            if entity.is_on:
                entity.attach()
        _LOGGER.info("%d automations (%d with errors)", len(self.by_key),
                     sum(1 for e in self.by_key.values() if e.broken))  # fmt: skip

    async def _remove(self, key: str) -> None:
        entity = self.by_key.pop(key)
        if entity.entity_id and self.hub.entities.live(entity.entity_id) is entity:
            await self.hub.entities.remove(entity.entity_id)
        else:
            await entity.removed_from_hub()

    def remember(self, entity: AutomationEntity) -> None:
        """On/off survives a restart (unless the automation sets initial_state)."""
        self._remembered[entity.key] = entity.is_on
        self._store.schedule_save(lambda: dict(self._remembered))

    async def reload(self) -> None:
        if self.hub.config_dir is None:
            raise RuntimeError("automation.reload needs the hub's configuration directory")
        try:
            raw, _ = load_configuration(self.hub.config_dir)
        except ConfigError as err:
            raise RuntimeError(f"configuration not reloaded: {err}") from None
        block = raw.get(DOMAIN)
        try:
            block = automation_block(block)
        except vol.Invalid as err:
            file, line = cv.locate(raw, [DOMAIN])
            raise RuntimeError(str(ConfigError(err.msg, file, line, DOMAIN))) from None
        # Plugins set up since start may have brought trigger, condition or action kinds.
        self.platforms = Platforms.for_host(self.hub.plugins)
        await self.load(block)
        self.hub.bus.fire(EVENT_AUTOMATION_RELOADED, {"count": len(self.by_key)})

    # --- the hub stops; events a run caused ----------------------------------------------------
    def _hub_stopping(self, event: Event) -> None:
        # Runs the shutdown started (hub trigger, event: shutdown) keep going; nothing new fires.
        self.hub.create_task(self.stop(), "automations stop")

    async def stop(self) -> None:
        for remove in self._unsubscribe:
            remove()
        self._unsubscribe = []
        for entity in self.by_key.values():
            entity.detach()
        self._store.flush()

    def _observe(self, event: Event) -> None:
        """Attach to a run's trace every event its context (or a child of it) caused: the
        service calls it made and what they changed, down to the chargers."""
        trace = self.traces.owner(event.context)
        if trace is None:
            return
        entity_id = str(event.data.get("entity_id", ""))
        if event.event_type == EVENT_STATE_CHANGED and entity_id.startswith("automation."):
            return  # the automation's own last_triggered and current: noise in its trace
        trace.record_event(event)
        self.traces.link(event.context.id, trace)


def _same(old: AutomationConfig | BrokenAutomation, new: AutomationConfig | BrokenAutomation):
    if type(old) is not type(new) or old.raw != new.raw:
        return False
    if isinstance(old, BrokenAutomation) and isinstance(new, BrokenAutomation):
        return [str(e) for e in old.errors] == [str(e) for e in new.errors]
    return True


# --- services ---------------------------------------------------------------------------------
def _targets(component: Automations, call: ServiceCall) -> list[AutomationEntity]:
    found = []
    for entity_id in call.data["entity_id"]:
        entity = component.get(entity_id)
        if entity is None:
            raise LookupError(f"{entity_id} is not an automation")
        found.append(entity)
    return found


def register_services(component: Automations) -> None:
    register = component.hub.services.register
    # An automation by its entity id or by its `id`, one or a list.
    target = {vol.Required("entity_id"): vol.All(cv.ensure_list, vol.Length(min=1), [cv.string])}

    async def reload(call: ServiceCall) -> None:
        await component.reload()

    async def turn_on(call: ServiceCall) -> None:
        for entity in _targets(component, call):
            await entity.turn_on()

    async def turn_off(call: ServiceCall) -> None:
        for entity in _targets(component, call):
            await entity.turn_off(stop_actions=call.data["stop_actions"])

    async def toggle(call: ServiceCall) -> None:
        for entity in _targets(component, call):
            await (entity.turn_off() if entity.is_on else entity.turn_on())

    async def trigger(call: ServiceCall) -> list[str | None]:
        runs = []
        for entity in _targets(component, call):
            trace = entity.run(
                {"platform": None, "description": "automation.trigger"}, call.context,
                variables=call.data["variables"], skip_condition=call.data["skip_condition"],
            )  # fmt: skip
            runs.append(trace.run_id if trace is not None else None)
        return runs

    services: Sequence[tuple[str, Any, Mapping[Any, Any], str]] = (
        ("reload", reload, {}, "Read the automations again; only changed ones restart."),
        ("turn_on", turn_on, target, "Let an automation's triggers fire again."),
        ("turn_off", turn_off,
         {**target, vol.Optional("stop_actions", default=True): vol.Boolean()},
         "Stop an automation's triggers (and its running actions unless stop_actions: false)."),
        ("toggle", toggle, target, "Turn an automation on when off, off when on."),
        ("trigger", trigger,
         {**target, vol.Optional("skip_condition", default=True): vol.Boolean(),
          vol.Optional("variables", default={}): dict},
         "Run an automation's actions now (its conditions too with skip_condition: false)."),
    )  # fmt: skip
    for name, handler, schema, text in services:
        register(DOMAIN, name, handler, schema, text)


async def setup_automations(hub: Hub, block: Any) -> Automations:
    """Called by the hub at start when configuration.yaml has `automation:`."""
    component = Automations(hub)
    hub.data[DOMAIN] = component
    register_services(component)
    await component.load(block)
    return component
