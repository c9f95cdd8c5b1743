"""Price data for the `price` trigger and condition: a tariff entity's series, the window of a
`cheapest_hours` rule, and the cheapest stretches in it. Pure where it can be.

The series comes from the signal the tariff entity names (`signal` attribute, in the SignalStore)
or, when there is none, from the entity's `slots` attribute: no plugin is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from hub.automation import cv
from hub.automation.time_triggers import parse_moment
from hub.charging.signals import SignalStore, Slot, TimeSeries

if TYPE_CHECKING:
    from hub.core import Hub

DEFAULT_TARIFF = "tariff.grid_import"


def series_of(hub: Hub, entity_id: str) -> TimeSeries | None:
    state = hub.states.get(entity_id)
    if state is None:
        return None
    signal = state.attributes.get("signal")
    if isinstance(signal, str):
        series = SignalStore.of(hub).get(signal)
        if series is not None:
            return series
    slots = []
    for item in state.attributes.get("slots") or ():
        try:
            start = datetime.fromisoformat(str(item["start"]))
            end = datetime.fromisoformat(str(item["end"]))
            slots.append(Slot(start, end, float(item["price"])))
        except (KeyError, TypeError, ValueError):
            continue
    try:
        return TimeSeries(slots, source=entity_id) if slots else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Stretch:
    """Adjacent cheapest slots taken together: one start, one end, their mean price."""

    start: datetime
    end: datetime
    price: float

    def as_dict(self, tz: tzinfo) -> dict[str, Any]:
        return {
            "start": self.start.astimezone(tz).isoformat(),
            "end": self.end.astimezone(tz).isoformat(),
            "price": round(self.price, 6),
        }


def cheapest_stretches(
    series: TimeSeries, start: datetime, end: datetime, hours: float
) -> list[Stretch]:
    """The cheapest `hours` of [start, end), cheapest slots first (the earlier of equal prices),
    the last one taken shortened from its end; adjacent pieces joined, in time order."""
    need = timedelta(hours=hours)
    slots = series.slots_between(start, end)
    taken: list[Slot] = []
    for i in sorted(range(len(slots)), key=lambda i: (slots[i].value, i)):
        if need <= timedelta(0):
            break
        slot = slots[i]
        if slot.duration > need:
            slot = Slot(slot.start, slot.start + need, slot.value)
        taken.append(slot)
        need -= slot.duration
    taken.sort(key=lambda s: s.start)
    stretches: list[tuple[datetime, datetime, float]] = []  # start, end, price x seconds
    for slot in taken:
        weight = slot.value * slot.duration.total_seconds()
        if stretches and stretches[-1][1] == slot.start:
            first, _, total = stretches[-1]
            stretches[-1] = (first, slot.end, total + weight)
        else:
            stretches.append((slot.start, slot.end, weight))
    return [Stretch(a, b, total / (b - a).total_seconds()) for a, b, total in stretches]


# --- the window of a cheapest_hours rule ------------------------------------------------------
def _end_value(value: Any) -> time | str:
    return cv.time_or_entity(value)


CHEAPEST_KEYS = {
    vol.Optional("cheapest_hours"): vol.All(cv.number, vol.Range(min=0.25, max=48)),
    vol.Optional("window_start"): cv.time_of_day,
    vol.Optional("window_end"): _end_value,
    vol.Optional("before"): _end_value,
}


def check_window(config: Mapping[str, Any]) -> Mapping[str, Any]:
    window = [k for k in ("window_start", "window_end", "before") if k in config]
    if "cheapest_hours" not in config:
        if window:
            raise vol.Invalid(f"{window[0]} is only for cheapest_hours")
        return config
    if "window_end" in config and "before" in config:
        raise vol.Invalid("use window_end or before, not both")
    if "window_end" not in config and "before" not in config:
        raise vol.Invalid("cheapest_hours needs window_end (or before): when must it be done?")
    return config


def _combine(day: Any, at: time, tz: tzinfo) -> datetime:
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def window(hub: Hub, config: Mapping[str, Any]) -> tuple[datetime, datetime] | None:
    """[start, end) of the window now in force or the next one (UTC); None when the end is an
    entity that says nothing usable (or a moment already past)."""
    tz, now = hub.time_zone, hub.now()
    end_spec = config.get("window_end", config.get("before"))
    if isinstance(end_spec, str):
        state = hub.states.get(end_spec)
        moment = parse_moment(state.state if state else None, tz)
        if moment is None:
            return None
        if isinstance(moment, datetime):
            end = moment.astimezone(UTC)
            if end <= now:
                return None
            start_at = config.get("window_start")
            start = end - timedelta(days=1)
            if start_at is not None:
                local_end = end.astimezone(tz)
                start = _combine(local_end.date(), start_at, tz)
                if start >= end:
                    start = _combine(local_end.date() - timedelta(days=1), start_at, tz)
            return start, end
        end_spec = moment
    local = now.astimezone(tz)
    end = _combine(local.date(), end_spec, tz)
    if end <= now:
        end = _combine(local.date() + timedelta(days=1), end_spec, tz)
    start_at = config.get("window_start", end_spec)
    local_end = end.astimezone(tz)
    start = _combine(local_end.date(), start_at, tz)
    if start >= end:
        start = _combine(local_end.date() - timedelta(days=1), start_at, tz)
    return start, end


def selection(hub: Hub, config: Mapping[str, Any]) -> tuple[list[Stretch], datetime | None]:
    """The cheapest stretches of the window in force (or next), and when that window ends."""
    bounds = window(hub, config)
    series = series_of(hub, config.get("entity_id", DEFAULT_TARIFF))
    if bounds is None or series is None:
        return [], bounds[1] if bounds else None
    start, end = bounds
    return cheapest_stretches(series, start, end, config["cheapest_hours"]), end


def in_cheapest(hub: Hub, config: Mapping[str, Any]) -> Stretch | None:
    now = hub.now()
    stretches, _ = selection(hub, config)
    return next((s for s in stretches if s.start <= now < s.end), None)
