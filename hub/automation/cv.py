"""Validators shared by automation triggers, conditions and actions (entity ids, durations, times,
templates) and the conversion of a voluptuous error into a ConfigError naming file, line and key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import time, timedelta
from typing import Any

import voluptuous as vol

from hub.automation.templates import Template, is_template, template_value
from hub.config import ConfigError, NodeDict, NodeList, position
from hub.states import valid_entity_id

Validator = Callable[[Any], Any]

_DURATION_UNITS = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*min)?"
    r"\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$"
)
_CLOCK = re.compile(r"^\s*(-)?(\d{1,3}):([0-5]\d)(?::([0-5]\d(?:\.\d+)?))?\s*$")
_TIME_OF_DAY = re.compile(r"^\s*(\d{1,2}):([0-5]\d)(?::([0-5]\d))?\s*$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def ensure_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def entity_id(value: Any) -> str:
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text is None or not valid_entity_id(text):
        raise vol.Invalid(f"expected an entity id like charger.bay_1, got {value!r}")
    return text


def entity_ids(value: Any) -> list[str]:
    """One id, a list, or a comma-separated string, as Home Assistant accepts them."""
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    items = ensure_list(value)
    if not items:
        raise vol.Invalid("expected at least one entity id")
    return [entity_id(item) for item in items]


def string(value: Any) -> str:
    """Numbers and booleans become text, so `to: 0` and `to: "0"` mean the same state."""
    if value is None or isinstance(value, dict | list):
        raise vol.Invalid(f"expected a string, got {value!r}")
    return str(value)


def positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise vol.Invalid(f"expected a whole number, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise vol.Invalid(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise vol.Invalid("must be 1 or more")
    return number


def number(value: Any) -> float:
    if isinstance(value, bool):
        raise vol.Invalid(f"expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise vol.Invalid(f"expected a number, got {value!r}") from None


def parse_duration(value: Any) -> timedelta:
    """Seconds, 'HH:MM', 'HH:MM:SS(.fff)', '15min' / '2h' / '90s', or {hours:, minutes:, ...}."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    if isinstance(value, Mapping):
        units = ("days", "hours", "minutes", "seconds", "milliseconds")
        unknown = set(value) - set(units)
        if unknown or not value:
            raise vol.Invalid(f"a duration mapping takes {', '.join(units)}")
        try:
            return timedelta(**{k: float(v) for k, v in value.items()})
        except (TypeError, ValueError):
            raise vol.Invalid(f"expected numbers in the duration {dict(value)!r}") from None
    if isinstance(value, str):
        clock = _CLOCK.match(value)
        if clock:
            sign = -1 if clock[1] else 1
            seconds = int(clock[2]) * 3600 + int(clock[3]) * 60 + float(clock[4] or 0)
            return timedelta(seconds=sign * seconds)
        units = _DURATION_UNITS.match(value)
        if units and any(units.groups()):
            d, h, m, s = (float(g or 0) for g in units.groups())
            return timedelta(days=d, hours=h, minutes=m, seconds=s)
        try:
            return timedelta(seconds=float(value))
        except ValueError:
            pass
    raise vol.Invalid(
        f"expected a duration (seconds, 'HH:MM:SS', '15min' or {{minutes: 15}}), got {value!r}"
    )


def duration(value: Any) -> timedelta:
    result = parse_duration(value)
    if result < timedelta(0):
        raise vol.Invalid("a duration cannot be negative")
    return result


def duration_or_template(value: Any) -> Any:
    """A duration now, or a template rendered to one when it is needed."""
    if isinstance(value, str) and is_template(value):
        return template_string(value)
    if isinstance(value, Mapping) and any(
        isinstance(v, str) and is_template(v) for v in value.values()
    ):
        return {k: template_string(v) if isinstance(v, str) else v for k, v in value.items()}
    return duration(value)


def time_of_day(value: Any) -> time:
    """'HH:MM' or 'HH:MM:SS'. YAML 1.1 reads an unquoted 17:00 as 1020 (base 60): the minutes
    after midnight; an unquoted 7:30:15 as 27015: the seconds. Both are taken as meant."""
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if 60 <= value < 1440:
            return time(value // 60, value % 60)
        if 3600 <= value < 86400:
            return time(value // 3600, value // 60 % 60, value % 60)
    match = _TIME_OF_DAY.match(value) if isinstance(value, str) else None
    if match and int(match[1]) < 24:
        return time(int(match[1]), int(match[2]), int(match[3] or 0))
    raise vol.Invalid(f"expected a time of day 'HH:MM' or 'HH:MM:SS', got {value!r}")


def time_or_entity(value: Any) -> time | str:
    """A time of day, or the id of an entity whose state holds one (or a date and time)."""
    if isinstance(value, str) and "." in value and ":" not in value:
        return entity_id(value)
    return time_of_day(value)


def weekdays(value: Any) -> list[str]:
    days = [str(day).lower()[:3] for day in ensure_list(value)]
    bad = [day for day in days if day not in WEEKDAYS]
    if bad or not days:
        raise vol.Invalid(f"expected weekdays from {', '.join(WEEKDAYS)}, got {value!r}")
    return days


def template_string(value: Any) -> Template:
    """A jinja2 template, compiled now so a syntax error is reported with its line."""
    return template_value(value)


def check_templates(value: Any) -> Any:
    """Data that may hold templates anywhere (service data, event data): each is compiled to catch
    syntax errors, and the data is kept as written (render_complex renders it at run time)."""
    if isinstance(value, str):
        if is_template(value):
            template_string(value)
        return value
    if isinstance(value, Mapping):
        for key, item in value.items():
            try:
                check_templates(item)
            except vol.Invalid as err:
                err.prepend([key])
                raise
        return value
    if isinstance(value, list):
        for index, item in enumerate(value):
            try:
                check_templates(item)
            except vol.Invalid as err:
                err.prepend([index])
                raise
    return value


def templated(validator: Validator) -> Validator:
    """`validator` for a plain value; a template string is compiled and rendered at run time."""

    def validate(value: Any) -> Any:
        if isinstance(value, str) and is_template(value):
            return template_string(value)
        return validator(value)

    return validate


def has_at_least_one(*keys: str) -> Validator:
    def validate(value: Mapping[str, Any]) -> Mapping[str, Any]:
        if not any(key in value for key in keys):
            raise vol.Invalid(f"needs at least one of: {', '.join(keys)}")
        return value

    return validate


def exclusive(*keys: str) -> Validator:
    def validate(value: Mapping[str, Any]) -> Mapping[str, Any]:
        found = [key for key in keys if key in value]
        if len(found) > 1:
            raise vol.Invalid(f"use only one of: {', '.join(found)}")
        return value

    return validate


# --- where an error is ---------------------------------------------------------------------
def locate(raw: Any, path: Sequence[Any]) -> tuple[str | None, int | None]:
    """File and line of the deepest node on `path` in the loaded YAML that knows its position."""
    node, best = raw, position(raw) if isinstance(raw, NodeDict | NodeList) else (None, None)
    for part in path:
        here = position(node, part)
        if here[0] is not None:
            best = here
        inside = (isinstance(node, Mapping) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        )
        if not inside:
            break
        node = node[part]
    return best


def config_errors(
    error: vol.Invalid, raw: Any, prefix: Sequence[Any], base: Sequence[Any] = ()
) -> list[ConfigError]:
    """Every error in `error` as a ConfigError; `raw` is the node at `base`, `prefix` the dotted
    key of `raw` from the top of the configuration."""
    errors = error.errors if isinstance(error, vol.MultipleInvalid) else [error]
    found = []
    for err in errors:
        path = [*base, *err.path]
        unknown = err.msg == "extra keys not allowed" and path
        message = f"unknown key '{path[-1]}'" if unknown else err.msg
        file, line = locate(raw, path)
        key = ".".join(str(part) for part in (*prefix, *path))
        found.append(ConfigError(message, file, line, key))
    return found
