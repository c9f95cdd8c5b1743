"""The kinds of trigger, condition and action automations know: the built-in ones and those plugins
add through `hub_register_triggers/conditions/actions`, each a schema plus what runs it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from hub.bus import Context

if TYPE_CHECKING:
    from hub.automation.script import Step
    from hub.core import Hub
    from hub.plugins import PluginHost

_LOGGER = logging.getLogger(__name__)

Validator = Callable[[Any], Any]
Detach = Callable[[], None]
FireCallback = Callable[[dict[str, Any], Context | None], None]
Checker = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True, slots=True)
class TriggerInfo:
    """What a trigger platform gets when it is attached to an automation (or a wait)."""

    hub: Hub
    name: str  # the automation, for log lines
    variables: Mapping[str, Any]  # trigger_variables, for templates in the trigger
    platforms: Platforms


@dataclass(frozen=True, slots=True)
class TriggerType:
    """`schema` validates the trigger's own keys; `attach(info, config, fire)` starts listening and
    returns the callable that stops it. `fire(data, context)` runs the automation; `data` becomes
    `trigger.*` (platform, id and idx are added)."""

    schema: Validator
    attach: Callable[[TriggerInfo, Mapping[str, Any], FireCallback], Detach]


@dataclass(frozen=True, slots=True)
class ConditionType:
    """`build(builder, config, path)` returns a checker `variables -> bool`."""

    schema: Validator
    build: Callable[[Any, Mapping[str, Any], str], Checker]


@dataclass(frozen=True, slots=True)
class ActionType:
    """`run(step, config)` performs the action; what it returns is the step's traced result."""

    schema: Validator
    run: Callable[[Step, Mapping[str, Any]], Awaitable[Any]]


def _any_mapping(value: Any) -> Any:
    if not isinstance(value, Mapping):
        raise vol.Invalid(f"expected a mapping, got {value!r}")
    return value


def _condition_from_factory(factory: Callable[..., Any]) -> ConditionType:
    """docs/plugins.md: a plugin may register a bare `factory(hub, config) -> checker`."""

    def build(builder: Any, config: Mapping[str, Any], path: str) -> Checker:
        checker = factory(builder.hub, config)
        return lambda variables: bool(checker(variables))

    return ConditionType(_any_mapping, build)


def _action_from_factory(factory: Callable[..., Any]) -> ActionType:
    """A bare `factory(hub, config) -> run(variables, context)` (plain or async)."""

    async def run(step: Step, config: Mapping[str, Any]) -> Any:
        result = factory(step.hub, config)(dict(step.variables), step.child_context())
        return await result if inspect.isawaitable(result) else result

    return ActionType(_any_mapping, run)


@dataclass
class Platforms:
    triggers: dict[str, TriggerType] = field(default_factory=dict)
    conditions: dict[str, ConditionType] = field(default_factory=dict)
    actions: dict[str, ActionType] = field(default_factory=dict)

    @classmethod
    def builtin(cls) -> Platforms:
        # Imported here: the kinds themselves validate nested conditions and actions through a
        # Platforms instance, so this module cannot import them at its top.
        from hub.automation import actions, charging_triggers, conditions, flow, time_triggers
        from hub.automation import triggers as state_triggers

        found = cls()
        for module in (state_triggers, time_triggers, charging_triggers):
            found.triggers.update(module.TRIGGERS)
        found.conditions.update(conditions.CONDITIONS)
        found.actions.update(actions.ACTIONS)
        found.actions.update(flow.ACTIONS)
        return found

    @classmethod
    def for_host(cls, host: PluginHost | None, *, loaded: bool = False) -> Platforms:
        """Built-ins plus what plugins register. `loaded=True` asks every imported plugin (for
        check-config, where nothing is set up); otherwise only the plugins that are set up."""
        found = cls.builtin()
        if host is None:
            return found
        for hook, add in (
            ("hub_register_triggers", found.add_trigger),
            ("hub_register_conditions", found.add_condition),
            ("hub_register_actions", found.add_action),
        ):
            for plugin, args, kwargs in host.collect_calls(hook, loaded=loaded):
                try:
                    add(*args, **kwargs)
                except (TypeError, ValueError) as err:
                    _LOGGER.error("plugin %s: %s: %s", plugin, hook, err)
        return found

    def add_trigger(self, name: str, kind: Any) -> None:
        if not (
            callable(getattr(kind, "attach", None)) and callable(getattr(kind, "schema", None))
        ):
            raise TypeError(f"trigger {name!r} needs `schema` and `attach`")
        self._add(self.triggers, "trigger", name, TriggerType(kind.schema, kind.attach))

    def add_condition(self, name: str, kind: Any) -> None:
        made = kind if isinstance(kind, ConditionType) else _condition_from_factory(kind)
        self._add(self.conditions, "condition", name, made)

    def add_action(self, name: str, kind: Any) -> None:
        made = kind if isinstance(kind, ActionType) else _action_from_factory(kind)
        self._add(self.actions, "action", name, made)

    @staticmethod
    def _add(table: dict[str, Any], what: str, name: str, kind: Any) -> None:
        if name in table:
            raise ValueError(f"{what} {name!r} exists already")
        table[name] = kind
