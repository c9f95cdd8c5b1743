"""Conditions: `state`, `numeric_state`, `time`, `template`, `and`/`or`/`not`, `trigger` and
`price`. Each is config in, checker out (`variables -> bool`); every result goes to the run's trace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, time
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from hub.automation import cv, prices
from hub.automation.config import ConditionConfig, conditions_schema
from hub.automation.registry import Checker, ConditionType, Platforms
from hub.automation.templates import Template, TemplateError
from hub.automation.time_triggers import parse_moment
from hub.automation.trace import current_trace
from hub.automation.triggers import (
    any_same,
    in_range,
    numeric_value,
    render_duration,
    state_values,
    threshold,
    truthy,
    value_of,
)

if TYPE_CHECKING:
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)


class ConditionBuilder:
    """Turns validated conditions into checkers that record their result at their trace path."""

    def __init__(self, hub: Hub, platforms: Platforms, name: str = "") -> None:
        self.hub, self.platforms, self.name = hub, platforms, name

    def build(self, config: ConditionConfig, path: str) -> Checker:
        if not config.enabled:
            return lambda variables: True  # a disabled condition is left out, as if not written
        kind = self.platforms.conditions[config.kind]
        checker = kind.build(self, config.config, path)

        def check(variables: Mapping[str, Any]) -> bool:
            trace = current_trace()
            try:
                result = bool(checker(variables))
            except (TemplateError, ValueError, TypeError, LookupError) as err:
                _LOGGER.warning("%s: condition %s (%s) failed: %s", self.name, path,
                                config.kind, err)  # fmt: skip
                if trace is not None:
                    trace.record_condition(path, config.kind, False, error=str(err))
                return False
            if trace is not None:
                trace.record_condition(path, config.kind, result, alias=config.alias)
            return result

        return check

    def build_all(self, configs: Sequence[ConditionConfig], prefix: str) -> Checker:
        checkers = [self.build(c, f"{prefix}/{i}") for i, c in enumerate(configs)]
        return lambda variables: all(check(variables) for check in checkers)


# --- state ------------------------------------------------------------------------------------
STATE_SCHEMA = vol.Schema(
    {
        vol.Required("entity_id"): cv.entity_ids,
        vol.Required("state"): vol.All(state_values, vol.Length(min=1)),
        vol.Optional("attribute"): str,
        vol.Optional("for"): cv.duration_or_template,
        vol.Optional("match", default="all"): vol.In(("all", "any")),
    }
)


def build_state(builder: ConditionBuilder, config: Mapping[str, Any], path: str) -> Checker:
    hub, attribute, wanted = builder.hub, config.get("attribute"), config["state"]

    def one(entity_id: str, variables: Mapping[str, Any]) -> bool:
        state = hub.states.get(entity_id)
        if not any_same(value_of(state, attribute), wanted):
            return False
        if "for" in config and state is not None:
            held = render_duration(config["for"], variables, hub)
            return hub.now() - state.last_changed >= held
        return True

    combine = all if config["match"] == "all" else any
    return lambda variables: combine(one(e, variables) for e in config["entity_id"])


# --- numeric_state ----------------------------------------------------------------------------
NUMERIC_STATE_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Required("entity_id"): cv.entity_ids,
            vol.Optional("above"): threshold,
            vol.Optional("below"): threshold,
            vol.Optional("value_template"): cv.template_string,
            vol.Optional("attribute"): str,
        }
    ),
    cv.has_at_least_one("above", "below"),
)


def build_numeric_state(builder: ConditionBuilder, config: Mapping[str, Any], path: str) -> Checker:
    hub = builder.hub

    def check(variables: Mapping[str, Any]) -> bool:
        return all(
            in_range(hub, numeric_value(hub, hub.states.get(e), config, variables), config)
            for e in config["entity_id"]
        )

    return check


# --- time -------------------------------------------------------------------------------------
TIME_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Optional("after"): cv.time_or_entity,
            vol.Optional("before"): cv.time_or_entity,
            vol.Optional("weekday"): cv.weekdays,
        }
    ),
    cv.has_at_least_one("after", "before", "weekday"),
)


def _time_of(hub: Hub, spec: time | str) -> time | None:
    if isinstance(spec, time):
        return spec
    state = hub.states.get(spec)
    moment = parse_moment(state.state if state else None, hub.time_zone)
    if isinstance(moment, datetime):
        return moment.astimezone(hub.time_zone).time()
    return moment


def build_time(builder: ConditionBuilder, config: Mapping[str, Any], path: str) -> Checker:
    """after is included, before is not; after later than before means across midnight."""
    hub = builder.hub

    def check(variables: Mapping[str, Any]) -> bool:
        now = hub.now_local()
        if "weekday" in config and cv.WEEKDAYS[now.weekday()] not in config["weekday"]:
            return False
        after = _time_of(hub, config["after"]) if "after" in config else None
        before = _time_of(hub, config["before"]) if "before" in config else None
        if ("after" in config and after is None) or ("before" in config and before is None):
            return False
        clock = now.time().replace(tzinfo=None)
        if after is not None and before is not None and after > before:
            return clock >= after or clock < before
        return (after is None or clock >= after) and (before is None or clock < before)

    return check


# --- template ---------------------------------------------------------------------------------
TEMPLATE_SCHEMA = vol.Schema({vol.Required("value_template"): cv.template_string})


def build_template(builder: ConditionBuilder, config: Mapping[str, Any], path: str) -> Checker:
    template: Template = config["value_template"]
    template.hub = builder.hub
    return lambda variables: truthy(template.render(dict(variables)))


# --- and / or / not ---------------------------------------------------------------------------
GROUP_SCHEMA = vol.Schema({vol.Required("conditions"): conditions_schema})


def _group(combine: Callable[[Any], bool], negate: bool = False) -> Any:
    def build(builder: ConditionBuilder, config: Mapping[str, Any], path: str) -> Checker:
        checkers = [
            builder.build(c, f"{path}/conditions/{i}") for i, c in enumerate(config["conditions"])
        ]

        def check(variables: Mapping[str, Any]) -> bool:
            # Every member is evaluated (no short cut), so the trace shows each one's result.
            results = [checker(variables) for checker in checkers]
            result = combine(results)
            return not result if negate else result

        return check

    return build


# --- trigger ----------------------------------------------------------------------------------
TRIGGER_SCHEMA = vol.Schema({vol.Required("id"): vol.All(cv.ensure_list, [cv.string])})


def build_trigger(builder: ConditionBuilder, config: Mapping[str, Any], path: str) -> Checker:
    ids = set(config["id"])

    def check(variables: Mapping[str, Any]) -> bool:
        trigger = variables.get("trigger") or {}
        return str(trigger.get("id")) in ids if isinstance(trigger, Mapping) else False

    return check


# --- price ------------------------------------------------------------------------------------
PRICE_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Optional("entity_id", default=prices.DEFAULT_TARIFF): cv.entity_id,
            vol.Optional("above"): threshold,
            vol.Optional("below"): threshold,
            **prices.CHEAPEST_KEYS,
        }
    ),
    prices.check_window,
    cv.has_at_least_one("above", "below", "cheapest_hours"),
)


def build_price(builder: ConditionBuilder, config: Mapping[str, Any], path: str) -> Checker:
    """True while the current price is in range, or while now is in one of the cheapest hours."""
    hub = builder.hub

    def check(variables: Mapping[str, Any]) -> bool:
        if "cheapest_hours" in config:
            return prices.in_cheapest(hub, config) is not None
        state = hub.states.get(config["entity_id"])
        price = state.state if state is not None and state.available else None
        number = None if price is None else float(price)
        return in_range(hub, number, config)

    return check


CONDITIONS: dict[str, ConditionType] = {
    "state": ConditionType(STATE_SCHEMA, build_state),
    "numeric_state": ConditionType(NUMERIC_STATE_SCHEMA, build_numeric_state),
    "time": ConditionType(TIME_SCHEMA, build_time),
    "template": ConditionType(TEMPLATE_SCHEMA, build_template),
    "and": ConditionType(GROUP_SCHEMA, _group(all)),
    "or": ConditionType(GROUP_SCHEMA, _group(any)),
    "not": ConditionType(GROUP_SCHEMA, _group(any, negate=True)),
    "trigger": ConditionType(TRIGGER_SCHEMA, build_trigger),
    "price": ConditionType(PRICE_SCHEMA, build_price),
}
