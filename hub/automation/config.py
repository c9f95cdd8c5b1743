"""Automation configuration in two passes: the `automation:` block only has to be a list (so one
broken automation never stops the hub), then each automation is validated on its own.

An automation's errors name file, line and key (`automations.yaml:12: automation.3.triggers.0.to:
...`); `evhub check-config` reports them, `evhub run` logs them and shows the automation as
unavailable while the others run.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from hub.automation import cv
from hub.automation.registry import Platforms
from hub.automation.templates import is_template
from hub.config import ConfigError

if TYPE_CHECKING:
    from hub.plugins import PluginHost

DOMAIN = "automation"
MODES = ("single", "restart", "queued", "parallel")
LOG_LEVELS = ("silent", "debug", "info", "warning", "error", "critical")
DEFAULT_MAX = 10
DEFAULT_STORED_TRACES = 5

_TRIGGER_COMMON = ("platform", "trigger", "id", "enabled", "variables", "alias")
_CONDITION_COMMON = ("condition", "alias", "enabled")
_STEP_COMMON = ("alias", "enabled", "continue_on_error")
# The key that names an action step's kind, in the order they are looked for.
_STEP_KEYS = (
    ("service", "service"), ("action", "service"), ("delay", "delay"),
    ("wait_template", "wait_template"), ("wait_for_trigger", "wait_for_trigger"),
    ("event", "event"), ("choose", "choose"), ("if", "if"), ("repeat", "repeat"),
    ("variables", "variables"), ("stop", "stop"), ("parallel", "parallel"),
    ("sequence", "sequence"), ("condition", "condition"), ("notify", "notify"),
)  # fmt: skip
_SHORTHAND_CONDITIONS = ("and", "or", "not")

_ACTIVE: contextvars.ContextVar[Platforms] = contextvars.ContextVar("automation_platforms")


@contextlib.contextmanager
def using(platforms: Platforms) -> Iterator[None]:
    """Nested conditions and actions (`and:`, `choose:`) validate against these kinds."""
    token = _ACTIVE.set(platforms)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def _platforms() -> Platforms:
    try:
        return _ACTIVE.get()
    except LookupError:
        return Platforms.builtin()


@dataclass(frozen=True, slots=True)
class TriggerConfig:
    platform: str
    config: Mapping[str, Any]
    idx: int
    id: str | None = None
    alias: str | None = None
    enabled: bool = True
    variables: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConditionConfig:
    kind: str
    config: Mapping[str, Any]
    alias: str | None = None
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class StepConfig:
    kind: str
    config: Mapping[str, Any]
    alias: str | None = None
    enabled: bool = True
    continue_on_error: bool = False


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise vol.Invalid(f"expected {what} as a mapping, got {value!r}")
    return value


def _common(item: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """alias / enabled / continue_on_error, validated; what is left goes to the kind's schema."""
    found: dict[str, Any] = {}
    checks = {
        "alias": cv.string,
        "enabled": vol.Boolean(),
        "continue_on_error": vol.Boolean(),
        "id": cv.string,
        "variables": variables_schema,
    }
    for key in keys:
        if key in item and key in checks:
            try:
                found[key] = checks[key](item[key])
            except vol.Invalid as err:
                err.prepend([key])
                raise
    return found


def _validate_items(value: Any, one: Any) -> list[Any]:
    """Validate every item, collecting each one's errors with its index in the path."""
    errors: list[vol.Invalid] = []
    result = []
    for index, item in enumerate(cv.ensure_list(value)):
        try:
            result.append(one(item, index))
        except vol.Invalid as err:
            err.prepend([index])
            errors.extend(err.errors if isinstance(err, vol.MultipleInvalid) else [err])
    if errors:
        raise vol.MultipleInvalid(errors)
    return result


def _own(kind_schema: Any, item: Mapping[str, Any], common: Sequence[str]) -> Mapping[str, Any]:
    own = {k: v for k, v in item.items() if k not in common}
    validated = kind_schema(own)
    return validated


# --- triggers --------------------------------------------------------------------------------
def trigger(item: Any, idx: int) -> TriggerConfig:
    item = _mapping(item, "a trigger")
    platforms = _platforms()
    if "platform" in item and "trigger" in item:
        raise vol.Invalid("use `trigger:` or the older `platform:`, not both", path=["trigger"])
    key = "trigger" if "trigger" in item else "platform"
    if key not in item:
        raise vol.Invalid("a trigger needs `trigger:` (or `platform:`) naming its kind")
    name = item[key]
    if name not in platforms.triggers:
        known = ", ".join(sorted(platforms.triggers))
        raise vol.Invalid(f"unknown trigger {name!r} (known: {known})", path=[key])
    common = _common(item, _TRIGGER_COMMON)
    config = _own(platforms.triggers[name].schema, item, _TRIGGER_COMMON)
    return TriggerConfig(name, config, idx, **common)


def triggers_schema(value: Any) -> list[TriggerConfig]:
    return _validate_items(value, trigger)


# --- conditions ------------------------------------------------------------------------------
def condition(item: Any, index: int = 0) -> ConditionConfig:
    platforms = _platforms()
    if isinstance(item, str):  # `- "{{ is_state('charger.bay_1', 'charging') }}"`
        return ConditionConfig("template", {"value_template": cv.template_string(item)})
    item = _mapping(item, "a condition")
    shorthand = [k for k in _SHORTHAND_CONDITIONS if k in item]
    if "condition" not in item and shorthand:  # `- or: [...]`
        key = shorthand[0]
        rest = {k: v for k, v in item.items() if k not in (key, "alias", "enabled")}
        if rest or len(shorthand) > 1:
            raise vol.Invalid(f"`{key}:` takes a list of conditions and nothing else")
        common = _common(item, ("alias", "enabled"))
        nested = conditions_schema(item[key])
        return ConditionConfig(key, {"conditions": nested}, **common)
    if "condition" not in item:
        raise vol.Invalid("a condition needs `condition:` naming its kind")
    name = item["condition"]
    if isinstance(name, str) and is_template(name):  # `- condition: "{{ ... }}"`
        return ConditionConfig("template", {"value_template": cv.template_string(name)})
    if name not in platforms.conditions:
        known = ", ".join(sorted(platforms.conditions))
        raise vol.Invalid(f"unknown condition {name!r} (known: {known})", path=["condition"])
    common = _common(item, ("alias", "enabled"))
    config = _own(platforms.conditions[name].schema, item, _CONDITION_COMMON)
    return ConditionConfig(name, config, **common)


def conditions_schema(value: Any) -> list[ConditionConfig]:
    """A list of conditions, or one: a mapping or a template string."""
    return _validate_items(value, condition)


# --- actions ---------------------------------------------------------------------------------
def step(item: Any, index: int = 0) -> StepConfig:
    item = _mapping(item, "an action")
    platforms = _platforms()
    if "service" in item and "action" in item:
        raise vol.Invalid("use `action:` or the older `service:`, not both", path=["action"])
    kind = next((kind for key, kind in _STEP_KEYS if key in item), None)
    if kind is None:
        kind = next((name for name in platforms.actions if name in item), None)
    if kind is None or kind not in platforms.actions:
        known = sorted({key for key, _ in _STEP_KEYS} | set(platforms.actions))
        raise vol.Invalid(f"unknown kind of action; an action has one of: {', '.join(known)}")
    common = _common(item, _STEP_COMMON)
    config = _own(platforms.actions[kind].schema, item, _STEP_COMMON)
    return StepConfig(kind, config, **common)


def actions_schema(value: Any) -> list[StepConfig]:
    return _validate_items(value, step)


def variables_schema(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    value = _mapping(value, "variables")
    for key in value:
        if not isinstance(key, str) or not key.isidentifier():
            raise vol.Invalid(f"variable name {key!r} is not a valid name", path=[key])
    return dict(cv.check_templates(value))


# --- automations -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AutomationConfig:
    index: int
    id: str | None
    alias: str | None
    description: str
    mode: str
    max: int
    max_exceeded: str
    triggers: list[TriggerConfig]
    conditions: list[ConditionConfig]
    actions: list[StepConfig]
    variables: dict[str, Any]
    trigger_variables: dict[str, Any]
    initial_state: bool | None
    stored_traces: int
    raw: Any  # as written (plain data), to tell whether a reload changed it


@dataclass(frozen=True, slots=True)
class BrokenAutomation:
    index: int
    id: str | None
    alias: str | None
    errors: list[ConfigError]
    raw: Any


_SECTIONS: dict[str, tuple[tuple[str, ...], Any, bool]] = {
    # name: (the keys users write, validator, required)
    "triggers": (("triggers", "trigger"), triggers_schema, True),
    "conditions": (("conditions", "condition"), conditions_schema, False),
    "actions": (("actions", "action"), actions_schema, True),
}
_SCALARS: dict[str, Any] = {
    "id": cv.string,
    "alias": cv.string,
    "description": cv.string,
    "mode": vol.In(MODES),
    "max": cv.positive_int,
    "max_exceeded": vol.All(vol.Lower, vol.In(LOG_LEVELS)),
    "variables": variables_schema,
    "trigger_variables": variables_schema,
    "initial_state": vol.Boolean(),
    "stored_traces": vol.All(int, vol.Range(min=0, max=100)),
    "trace": vol.Schema({vol.Optional("stored_traces"): vol.All(int, vol.Range(min=0, max=100))}),
}


def plain(value: Any) -> Any:
    """The loaded YAML as ordinary dicts and lists (NodeDict carries positions)."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _validate(raw: Mapping[str, Any]) -> dict[str, Any]:
    errors: list[vol.Invalid] = []
    out: dict[str, Any] = {}
    known = {k for keys, _, _ in _SECTIONS.values() for k in keys} | set(_SCALARS)
    for key in raw:
        if key not in known:
            errors.append(vol.Invalid("extra keys not allowed", path=[key]))
    for name, (keys, validator, required) in _SECTIONS.items():
        present = [k for k in keys if k in raw]
        if len(present) > 1:
            errors.append(vol.Invalid(f"use `{keys[0]}:` or `{keys[1]}:`, not both", [keys[1]]))
            continue
        if not present:
            if required:
                errors.append(vol.Invalid(f"required key not provided ({keys[0]})", [keys[0]]))
            out[name] = []
            continue
        try:
            out[name] = validator(raw[present[0]])
        except vol.Invalid as err:
            err.prepend([present[0]])
            errors.extend(err.errors if isinstance(err, vol.MultipleInvalid) else [err])
    for key, validator in _SCALARS.items():
        if key in raw:
            try:
                out[key] = validator(raw[key])
            except vol.Invalid as err:
                err.prepend([key])
                errors.extend(err.errors if isinstance(err, vol.MultipleInvalid) else [err])
    if errors:
        raise vol.MultipleInvalid(errors)
    return out


def validate_automation(
    raw: Any, index: int, platforms: Platforms
) -> AutomationConfig | BrokenAutomation:
    """Second pass, one automation: its config, or every error in it."""
    prefix = [DOMAIN, index]
    ident = raw.get("id") if isinstance(raw, Mapping) else None
    alias = raw.get("alias") if isinstance(raw, Mapping) else None
    ident = str(ident) if isinstance(ident, str | int) and not isinstance(ident, bool) else None
    alias = alias if isinstance(alias, str) else None
    if not isinstance(raw, Mapping):
        error = vol.Invalid(f"expected an automation (a mapping), got {type(raw).__name__}")
        return BrokenAutomation(index, None, None, cv.config_errors(error, raw, prefix), raw)
    try:
        with using(platforms):
            found = _validate(raw)
    except vol.Invalid as err:
        return BrokenAutomation(index, ident, alias, cv.config_errors(err, raw, prefix), plain(raw))
    mode = found.get("mode", "single")
    traces = found.get("stored_traces", found.get("trace", {}).get("stored_traces"))
    return AutomationConfig(
        index=index,
        id=found.get("id"),
        alias=found.get("alias"),
        description=found.get("description", ""),
        mode=mode,
        max=found.get("max", DEFAULT_MAX),
        max_exceeded=found.get("max_exceeded", "warning"),
        triggers=found["triggers"],
        conditions=found["conditions"],
        actions=found["actions"],
        variables=found.get("variables", {}),
        trigger_variables=found.get("trigger_variables", {}),
        initial_state=found.get("initial_state"),
        stored_traces=DEFAULT_STORED_TRACES if traces is None else traces,
        raw=plain(raw),
    )


def validate_automations(
    block: Any, platforms: Platforms
) -> list[AutomationConfig | BrokenAutomation]:
    """Every automation of the block; a repeated id makes the later one broken."""
    results: list[AutomationConfig | BrokenAutomation] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(block or []):
        result = validate_automation(raw, index, platforms)
        if isinstance(result, AutomationConfig) and result.id is not None:
            if result.id in seen:
                file, line = cv.locate(raw, ["id"])
                message = f"duplicate id {result.id!r} (also automation {seen[result.id]})"
                error = ConfigError(message, file, line, f"{DOMAIN}.{index}.id")
                result = BrokenAutomation(index, result.id, result.alias, [error], result.raw)
            else:
                seen[result.id] = index
        results.append(result)
    return results


def automation_block(value: Any) -> Any:
    """First pass (the core schema of `automation:`): a list, kept as loaded so each automation
    still knows its file and line for the second pass."""
    if value is None or (isinstance(value, Mapping) and not value):
        return []
    if isinstance(value, Mapping):
        return [value]
    if not isinstance(value, list):
        raise vol.Invalid("expected a list of automations (automation: !include automations.yaml)")
    return value


def check_automations(block: Any, host: PluginHost | None) -> list[ConfigError]:
    """What `evhub check-config` reports about automations (the second pass, for all of them)."""
    platforms = Platforms.for_host(host, loaded=True)
    errors: list[ConfigError] = []
    for result in validate_automations(block, platforms):
        if isinstance(result, BrokenAutomation):
            errors.extend(result.errors)
    return errors
