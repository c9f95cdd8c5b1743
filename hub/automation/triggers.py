"""Triggers on entity states and bus events: `state`, `numeric_state`, `event`, `template`, `hub`.

Each is a schema plus `attach(info, config, fire) -> detach`, as Home Assistant's triggers are;
`for:` waits on the hub clock and is cancelled when the state stops matching.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import voluptuous as vol

from hub.automation import cv
from hub.automation.registry import Detach, FireCallback, TriggerInfo, TriggerType
from hub.automation.templates import Template, TemplateError, TemplateTracker, render_complex
from hub.bus import EVENT_HUB_STARTED, EVENT_HUB_STOP, EVENT_STATE_CHANGED, Context, Event
from hub.clock import Timer
from hub.core import CoreState
from hub.states import State

_LOGGER = logging.getLogger(__name__)

MISSING: Any = object()  # an entity or attribute that does not exist
_TRUE = ("true", "on", "yes", "enable", "1")


# --- helpers shared with conditions -----------------------------------------------------------
def value_of(state: State | None, attribute: str | None) -> Any:
    if state is None:
        return MISSING
    if attribute is None:
        return state.state
    return state.attributes.get(attribute, MISSING)


def same(actual: Any, expected: Any) -> bool:
    """A state equals what YAML wrote: 7 == 7.0 == "7", and `on`/`off` read as booleans by YAML
    1.1 still match the strings "on"/"off"."""
    if actual is MISSING:
        return False
    if actual == expected and type(actual) is not bool and type(expected) is not bool:
        return True
    if isinstance(expected, bool) or isinstance(actual, bool):
        words = {True: ("true", "on"), False: ("false", "off")}
        if isinstance(expected, bool):
            return str(actual).lower() in words[expected]
        return str(expected).lower() in words[actual]
    if expected is None or actual is None:
        return actual is expected
    try:
        return float(actual) == float(expected)
    except (TypeError, ValueError):
        return str(actual) == str(expected)


def any_same(actual: Any, expected: list[Any]) -> bool:
    return any(same(actual, e) for e in expected)


def truthy(value: Any) -> bool:
    """A template's result as a boolean, as Home Assistant reads it."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return False


def as_number(value: Any) -> float | None:
    if value is MISSING or value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def render_duration(value: Any, variables: Mapping[str, Any], hub: Any) -> timedelta:
    """A `for:` / `delay:` / `timeout:` that may be a template, as a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, Template):
        value.hub = hub
        value = value.render(dict(variables))
    elif isinstance(value, Mapping):
        value = render_complex(value, dict(variables), hub)
    try:
        return cv.duration(value)
    except vol.Invalid as err:
        raise TemplateError(f"not a duration: {err}") from None


def state_values(value: Any) -> list[Any] | None:
    """`to: null` means any state (but a change of the state itself); a list means any of those."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        raise vol.Invalid(f"expected a state or a list of states, got {value!r}")
    return cv.ensure_list(value)


class Delayed:
    """The `for:` of one trigger: one timer per entity, on the hub clock."""

    def __init__(self, info: TriggerInfo, config: Mapping[str, Any], fire: FireCallback) -> None:
        self.info, self.period, self.fire = info, config.get("for"), fire
        self.timers: dict[str, Timer] = {}

    def start(self, key: str, data: dict[str, Any], context: Context | None) -> None:
        self.cancel(key)
        if self.period is None:
            self.fire(data, context)
            return
        try:
            delay = render_duration(self.period, {**self.info.variables, "trigger": data},
                                    self.info.hub)  # fmt: skip
        except TemplateError as err:
            _LOGGER.error("%s: `for` of a %s trigger: %s", self.info.name, data["platform"], err)
            return
        data["for"] = delay

        def due() -> None:
            self.timers.pop(key, None)
            self.fire(data, context)

        self.timers[key] = self.info.hub.clock.call_later(delay.total_seconds(), due)

    def cancel(self, key: str) -> None:
        timer = self.timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def pending(self, key: str) -> bool:
        return key in self.timers

    def cancel_all(self) -> None:
        for key in list(self.timers):
            self.cancel(key)


def _detach_all(*parts: Callable[[], None]) -> Detach:
    def detach() -> None:
        for part in parts:
            part()

    return detach


# --- state ------------------------------------------------------------------------------------
STATE_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Required("entity_id"): cv.entity_ids,
            vol.Optional("from"): state_values,
            vol.Optional("to"): state_values,
            vol.Optional("not_from"): vol.All(cv.ensure_list, [vol.Any(str, int, float, bool)]),
            vol.Optional("not_to"): vol.All(cv.ensure_list, [vol.Any(str, int, float, bool)]),
            vol.Optional("attribute"): str,
            vol.Optional("for"): cv.duration_or_template,
        }
    ),
    cv.exclusive("from", "not_from"),
    cv.exclusive("to", "not_to"),
)


def _matcher(config: Mapping[str, Any], wanted: str, unwanted: str) -> Callable[[Any], bool]:
    if wanted in config:
        values = config[wanted]
        return (lambda v: True) if values is None else (lambda v: any_same(v, values))
    if unwanted in config:
        return lambda v: not any_same(v, config[unwanted])
    return lambda v: True


def attach_state(info: TriggerInfo, config: Mapping[str, Any], fire: FireCallback) -> Detach:
    ids, attribute = set(config["entity_id"]), config.get("attribute")
    filtered = any(k in config for k in ("from", "to", "not_from", "not_to"))
    to_ok = _matcher(config, "to", "not_to")
    from_ok = _matcher(config, "from", "not_from")
    watches_to = ("to" in config and config["to"] is not None) or "not_to" in config
    delayed = Delayed(info, config, fire)

    def changed(event: Event) -> None:
        entity_id = event.data["entity_id"]
        old, new = event.data["old_state"], event.data["new_state"]
        old_value, new_value = value_of(old, attribute), value_of(new, attribute)
        if attribute is None:
            moved = old is None or new is None or old.state != new.state
        else:
            moved = old_value != new_value
        if delayed.pending(entity_id) and moved and (not watches_to or not to_ok(new_value)):
            delayed.cancel(entity_id)  # it did not stay as wanted for the whole `for`
        if attribute is None and filtered and not moved:
            return  # an attribute-only change: a trigger with from/to is about the state itself
        if attribute is not None and not moved:
            return
        if not (from_ok(old_value) and to_ok(new_value)):
            return
        data = {
            "platform": "state", "entity_id": entity_id, "from_state": old, "to_state": new,
            "attribute": attribute, "for": None,
            "description": f"state of {entity_id}" + (f" ({attribute})" if attribute else ""),
        }  # fmt: skip
        delayed.start(entity_id, data, event.context)

    remove = info.hub.bus.listen(
        EVENT_STATE_CHANGED, changed, lambda data: data["entity_id"] in ids
    )
    return _detach_all(remove, delayed.cancel_all)


# --- numeric_state --------------------------------------------------------------------------
def threshold(value: Any) -> float | str:
    """A number, or the id of an entity holding one (`input_number.peak_limit`)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return cv.entity_id(value)
    return cv.number(value)


NUMERIC_STATE_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Required("entity_id"): cv.entity_ids,
            vol.Optional("above"): threshold,
            vol.Optional("below"): threshold,
            vol.Optional("value_template"): cv.template_string,
            vol.Optional("attribute"): str,
            vol.Optional("for"): cv.duration_or_template,
        }
    ),
    cv.has_at_least_one("above", "below"),
)


def numeric_value(
    hub: Any, state: State | None, config: Mapping[str, Any], variables: Mapping[str, Any]
) -> float | None:
    """The number a numeric_state trigger or condition compares; None when there is none."""
    if state is None or not state.available:
        return None
    template = config.get("value_template")
    if template is not None:
        template.hub = hub
        try:
            return as_number(template.render({**variables, "state": state}))
        except TemplateError as err:
            _LOGGER.warning("numeric_state value_template for %s: %s", state.entity_id, err)
            return None
    return as_number(value_of(state, config.get("attribute")))


def threshold_value(hub: Any, value: float | str | None) -> float | None:
    if value is None or isinstance(value, float | int):
        return value
    state = hub.states.get(value)
    return as_number(state.state) if state is not None else None


def in_range(hub: Any, number: float | None, config: Mapping[str, Any]) -> bool:
    if number is None:
        return False
    above = threshold_value(hub, config.get("above"))
    below = threshold_value(hub, config.get("below"))
    if ("above" in config and above is None) or ("below" in config and below is None):
        return False  # a threshold entity without a number: nothing can be above it
    return (above is None or number > above) and (below is None or number < below)


def attach_numeric_state(
    info: TriggerInfo, config: Mapping[str, Any], fire: FireCallback
) -> Detach:
    hub, ids = info.hub, list(config["entity_id"])
    delayed = Delayed(info, config, fire)

    def matches(state: State | None) -> bool:
        return in_range(hub, numeric_value(hub, state, config, info.variables), config)

    # Armed: not in range now. Only a move from out of range into it fires, as in Home
    # Assistant: a value already above the threshold at start-up does not fire.
    armed = {eid for eid in ids if not matches(hub.states.get(eid))}

    def changed(event: Event) -> None:
        entity_id, new = event.data["entity_id"], event.data["new_state"]
        if not matches(new):
            armed.add(entity_id)
            delayed.cancel(entity_id)
            return
        if entity_id not in armed:
            return
        armed.discard(entity_id)
        data = {
            "platform": "numeric_state", "entity_id": entity_id,
            "from_state": event.data["old_state"], "to_state": new,
            "above": config.get("above"), "below": config.get("below"),
            "attribute": config.get("attribute"), "for": None,
            "description": f"numeric state of {entity_id}",
        }  # fmt: skip
        delayed.start(entity_id, data, event.context)

    remove = hub.bus.listen(EVENT_STATE_CHANGED, changed, lambda d: d["entity_id"] in ids)
    return _detach_all(remove, delayed.cancel_all)


# --- event ------------------------------------------------------------------------------------
EVENT_SCHEMA = vol.Schema(
    {
        vol.Required("event_type"): vol.All(cv.ensure_list, [cv.string]),
        vol.Optional("event_data"): dict,
        vol.Optional("context"): {
            vol.Optional(key): vol.All(cv.ensure_list, [cv.string])
            for key in ("id", "parent_id", "user_id")
        },
    }
)


def data_matches(actual: Any, expected: Any) -> bool:
    """`event_data` is a subset: every key written must be there with that value."""
    if isinstance(expected, Mapping):
        return isinstance(actual, Mapping) and all(
            key in actual and data_matches(actual[key], value) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list | tuple)
            and len(actual) == len(expected)
            and all(data_matches(a, e) for a, e in zip(actual, expected, strict=True))
        )
    return same(actual, expected)


def attach_event(info: TriggerInfo, config: Mapping[str, Any], fire: FireCallback) -> Detach:
    wanted_data = config.get("event_data") or {}
    wanted_context = config.get("context") or {}

    def heard(event: Event) -> None:
        if wanted_data and not data_matches(dict(event.data), wanted_data):
            return
        for key, allowed in wanted_context.items():
            if getattr(event.context, key) not in allowed:
                return
        fire({"platform": "event", "event": event,
              "description": f"event '{event.event_type}'"}, event.context)  # fmt: skip

    removers = [info.hub.bus.listen(event_type, heard) for event_type in config["event_type"]]
    return _detach_all(*removers)


# --- template ---------------------------------------------------------------------------------
TEMPLATE_SCHEMA = vol.Schema(
    {
        vol.Required("value_template"): cv.template_string,
        vol.Optional("for"): cv.duration_or_template,
    }
)


def attach_template(info: TriggerInfo, config: Mapping[str, Any], fire: FireCallback) -> Detach:
    template: Template = config["value_template"]
    template.hub = info.hub
    delayed = Delayed(info, config, fire)
    state = {"true": True}  # until the first render says otherwise: it must become true

    def rendered(result: Any, previous: Any = None) -> None:
        if isinstance(result, TemplateError):
            _LOGGER.warning("%s: template trigger: %s", info.name, result)
            result = False
        if not truthy(result):
            state["true"] = False
            delayed.cancel("template")
            return
        if state["true"]:
            return
        state["true"] = True
        data = {"platform": "template", "value": result, "for": None,
                "description": "template became true"}  # fmt: skip
        delayed.start("template", data, None)

    tracker = TemplateTracker(info.hub, template, dict(info.variables), rendered)
    tracker.start()  # renders once without calling back: true at attach does not fire
    first = tracker.result
    state["true"] = not isinstance(first, TemplateError) and truthy(first)
    return _detach_all(tracker.stop, delayed.cancel_all)


# --- hub --------------------------------------------------------------------------------------
HUB_SCHEMA = vol.Schema({vol.Required("event"): vol.In(("start", "shutdown"))})


def attach_hub(info: TriggerInfo, config: Mapping[str, Any], fire: FireCallback) -> Detach:
    kind = config["event"]
    if kind == "start" and info.hub.state is not CoreState.STARTING:
        return lambda: None  # attached later (a reload): the hub started long ago

    def heard(event: Event) -> None:
        fire({"platform": "hub", "event": kind, "description": f"hub {kind}"}, event.context)

    event_type = EVENT_HUB_STARTED if kind == "start" else EVENT_HUB_STOP
    return info.hub.bus.listen(event_type, heard, once=True)


TRIGGERS: dict[str, TriggerType] = {
    "state": TriggerType(STATE_SCHEMA, attach_state),
    "numeric_state": TriggerType(NUMERIC_STATE_SCHEMA, attach_numeric_state),
    "event": TriggerType(EVENT_SCHEMA, attach_event),
    "template": TriggerType(TEMPLATE_SCHEMA, attach_template),
    "hub": TriggerType(HUB_SCHEMA, attach_hub),
}
