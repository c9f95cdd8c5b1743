"""Triggers on the hub clock: `time` (at a time of day, or the time an entity holds) and
`time_pattern` (every N hours/minutes/seconds). Local wall-clock times in the hub's time zone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

import voluptuous as vol

from hub.automation import cv
from hub.automation.registry import Detach, FireCallback, TriggerInfo, TriggerType
from hub.bus import EVENT_STATE_CHANGED
from hub.clock import Timer

_LOGGER = logging.getLogger(__name__)

SECOND = timedelta(seconds=1)


def next_time_of_day(now: datetime, at: time, tz: tzinfo) -> datetime:
    """The next instant after `now` at which local wall-clock time is `at` (aware, UTC)."""
    local = now.astimezone(tz)
    for days in range(3):
        candidate = datetime.combine(local.date() + timedelta(days=days), at, tzinfo=tz)
        if candidate.astimezone(UTC) > now:
            return candidate.astimezone(UTC)
    raise AssertionError("unreachable: a time of day comes back within two days")


def parse_moment(value: Any, tz: tzinfo) -> time | datetime | None:
    """What an entity's state says: a time of day ('07:30', '07:30:00'), or a date and time
    (ISO 8601; naive means local). None when it says neither."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    if isinstance(value, time):
        return value
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        return cv.time_of_day(text)
    except vol.Invalid:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


# --- time -------------------------------------------------------------------------------------
def _at(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return vol.Schema(
            {vol.Required("entity_id"): cv.entity_id, vol.Optional("offset"): cv.parse_duration}
        )(dict(value))
    found = cv.time_or_entity(value)
    return {"entity_id": found} if isinstance(found, str) else {"time": found}


TIME_SCHEMA = vol.Schema(
    {
        vol.Required("at"): vol.All(cv.ensure_list, vol.Length(min=1), [_at]),
        vol.Optional("weekday"): cv.weekdays,
    }
)


class _Schedule:
    """One `at:` of a time trigger: a timer to the next time, re-armed after it fires and, for an
    entity, whenever the entity changes."""

    def __init__(self, info: TriggerInfo, at: Mapping[str, Any], fire: Callable[..., None]):
        self.info, self.at, self.fire = info, at, fire
        self.timer: Timer | None = None
        self.remove: Callable[[], None] | None = None
        entity = at.get("entity_id")
        if entity is not None:
            self.remove = info.hub.bus.listen(
                EVENT_STATE_CHANGED, lambda _: self.arm(), lambda d: d["entity_id"] == entity
            )
        self.arm()

    def target(self) -> datetime | None:
        hub = self.info.hub
        now = hub.now()
        if "time" in self.at:
            return next_time_of_day(now, self.at["time"], hub.time_zone)
        state = hub.states.get(self.at["entity_id"])
        moment = parse_moment(state.state if state else None, hub.time_zone)
        offset = self.at.get("offset") or timedelta(0)
        if isinstance(moment, time):
            due = next_time_of_day(now - offset, moment, hub.time_zone) + offset
            return due if due > now else due + timedelta(days=1)
        if isinstance(moment, datetime):
            due = moment.astimezone(UTC) + offset
            return due if due > now else None  # a moment in the past has gone
        return None

    def arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        due = self.target()
        if due is not None:
            self.timer = self.info.hub.clock.call_at(due, self.due)

    def due(self) -> None:
        self.timer = None
        self.fire(self.at.get("entity_id"))
        self.arm()

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.remove is not None:
            self.remove()


def attach_time(info: TriggerInfo, config: Mapping[str, Any], fire: FireCallback) -> Detach:
    days = config.get("weekday")
    hub = info.hub

    def ring(entity_id: str | None) -> None:
        now = hub.now_local()
        if days is not None and cv.WEEKDAYS[now.weekday()] not in days:
            return
        what = f"time of {entity_id}" if entity_id else f"time {now:%H:%M:%S}"
        fire({"platform": "time", "now": now, "entity_id": entity_id, "description": what}, None)

    schedules = [_Schedule(info, at, ring) for at in config["at"]]

    def detach() -> None:
        for schedule in schedules:
            schedule.stop()

    return detach


# --- time_pattern -----------------------------------------------------------------------------
def _pattern(maximum: int) -> Callable[[Any], Any]:
    def validate(value: Any) -> Any:
        text = str(value).strip()
        if text == "*":
            return "*"
        if text.startswith("/"):
            step = text[1:]
            if step.isdigit() and 1 <= int(step) <= maximum:
                return f"/{int(step)}"
        elif text.isdigit() and 0 <= int(text) <= maximum:
            return int(text)
        raise vol.Invalid(f"expected *, /N or a value from 0 to {maximum}, got {value!r}")

    return validate


TIME_PATTERN_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Optional("hours"): _pattern(23),
            vol.Optional("minutes"): _pattern(59),
            vol.Optional("seconds"): _pattern(59),
        }
    ),
    cv.has_at_least_one("hours", "minutes", "seconds"),
)


def _values(spec: Any, maximum: int) -> list[int]:
    if spec == "*":
        return list(range(maximum + 1))
    if isinstance(spec, str):
        step = int(spec[1:])
        return list(range(0, maximum + 1, step))
    return [spec]


def pattern_sets(config: Mapping[str, Any]) -> tuple[list[int], list[int], list[int]]:
    """As in Home Assistant: units smaller than the largest one given default to 0, larger to *."""
    hours, minutes, seconds = (config.get(k) for k in ("hours", "minutes", "seconds"))
    if seconds is None:
        seconds = 0 if (hours is not None or minutes is not None) else "*"
    if minutes is None:
        minutes = 0 if hours is not None else "*"
    if hours is None:
        hours = "*"
    return _values(hours, 23), _values(minutes, 59), _values(seconds, 59)


def next_pattern(
    now: datetime, tz: tzinfo, sets: tuple[Iterable[int], Iterable[int], Iterable[int]]
) -> datetime:
    """The first local wall-clock time after `now` whose hour, minute and second match."""
    hours, minutes, seconds = (sorted(s) for s in sets)
    after = now.astimezone(tz).replace(microsecond=0, tzinfo=None)
    for days in range(3):
        day: date = after.date() + timedelta(days=days)
        for h in hours:
            if datetime.combine(day, time(h, 59, 59)) <= after:
                continue
            for m in minutes:
                if datetime.combine(day, time(h, m, 59)) <= after:
                    continue
                for s in seconds:
                    candidate = datetime.combine(day, time(h, m, s))
                    # A wall-clock time a DST change skips maps back before `now`: skip it too.
                    due = candidate.replace(tzinfo=tz).astimezone(UTC)
                    if candidate > after and due > now:
                        return due
    raise AssertionError("unreachable: a pattern with values matches within two days")


def attach_time_pattern(info: TriggerInfo, config: Mapping[str, Any], fire: FireCallback) -> Detach:
    hub, sets = info.hub, pattern_sets(config)
    holder: dict[str, Timer] = {}

    def arm() -> None:
        holder["timer"] = hub.clock.call_at(next_pattern(hub.now(), hub.time_zone, sets), ring)

    def ring() -> None:
        arm()
        now = hub.now_local()
        fire({"platform": "time_pattern", "now": now,
              "description": f"time pattern at {now:%H:%M:%S}"}, None)  # fmt: skip

    arm()
    return lambda: holder["timer"].cancel()


TRIGGERS: dict[str, TriggerType] = {
    "time": TriggerType(TIME_SCHEMA, attach_time),
    "time_pattern": TriggerType(TIME_PATTERN_SCHEMA, attach_time_pattern),
}
