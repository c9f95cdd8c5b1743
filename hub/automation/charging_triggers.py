"""Charging triggers: `price` (a tariff's current or upcoming price above/below a threshold, or the
cheapest hours of a window), `session` (started/stopped/suspended) and `demand_response`.

docs/automations.md says exactly when each fires; the demand-response event contract is there too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import voluptuous as vol

from hub.automation import cv, prices
from hub.automation.registry import Detach, FireCallback, TriggerInfo, TriggerType
from hub.automation.triggers import attach_numeric_state, in_range, threshold
from hub.bus import EVENT_STATE_CHANGED, Event
from hub.charging.session import EVENT_SESSION_STARTED, EVENT_SESSION_STOPPED
from hub.charging.signals import EVENT_SIGNAL_UPDATED
from hub.clock import Timer

_LOGGER = logging.getLogger(__name__)

EVENT_DEMAND_RESPONSE = "demand_response"
DR_PHASES = ("received", "start", "end", "cancelled")
DR_KEYS = ("event_id", "node", "cap_kw", "level", "start", "end", "signal_name", "opt")
SUSPENDED = ("suspended_ev", "suspended_evse")


# --- price ------------------------------------------------------------------------------------
def _price_modes(config: Mapping[str, Any]) -> Mapping[str, Any]:
    config = prices.check_window(config)
    by_threshold = "above" in config or "below" in config
    if by_threshold == ("cheapest_hours" in config):
        raise vol.Invalid("a price trigger takes above/below, or cheapest_hours (not both)")
    if "cheapest_hours" in config and ("for" in config or "upcoming" in config):
        raise vol.Invalid("for and upcoming go with above/below, not with cheapest_hours")
    if "event" in config and "cheapest_hours" not in config:
        raise vol.Invalid("event (start/end) goes with cheapest_hours")
    if "upcoming" in config and "for" in config:
        raise vol.Invalid("use for with the current price, not with upcoming")
    return config


PRICE_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Optional("entity_id", default=prices.DEFAULT_TARIFF): cv.entity_id,
            vol.Optional("above"): threshold,
            vol.Optional("below"): threshold,
            vol.Optional("for"): cv.duration_or_template,
            vol.Optional("upcoming"): cv.duration,
            vol.Optional("event"): vol.In(("start", "end")),
            **prices.CHEAPEST_KEYS,
        }
    ),
    _price_modes,
)


def attach_price(info: TriggerInfo, config: Mapping[str, Any], fire: FireCallback) -> Detach:
    if "cheapest_hours" in config:
        return _attach_cheapest(info, config, fire)
    if "upcoming" in config:
        return _attach_upcoming(info, config, fire)
    entity_id = config["entity_id"]

    def crossed(data: dict[str, Any], context: Any) -> None:
        state = data["to_state"]
        fire(
            {
                **data,
                "platform": "price",
                "price": state.state if state else None,
                "description": f"price of {entity_id}",
            },
            context,
        )

    return attach_numeric_state(info, {**config, "entity_id": [entity_id]}, crossed)


def _listen_prices(info: TriggerInfo, entity_id: str, callback: Any) -> list[Any]:
    """Re-evaluate when the tariff entity changes or new prices are published."""
    bus = info.hub.bus
    return [
        bus.listen(
            EVENT_STATE_CHANGED, lambda _: callback(), lambda d: d["entity_id"] == entity_id
        ),
        bus.listen(EVENT_SIGNAL_UPDATED, lambda _: callback()),
    ]


def _attach_upcoming(info: TriggerInfo, config: Mapping[str, Any], fire: FireCallback) -> Detach:
    """The price `upcoming` from now crosses the threshold: evaluated whenever now + upcoming
    reaches a slot edge and whenever prices change."""
    hub, entity_id, ahead = info.hub, config["entity_id"], config["upcoming"]
    timer: dict[str, Timer | None] = {"t": None}

    def price_ahead() -> tuple[float | None, datetime]:
        when = hub.now() + ahead
        series = prices.series_of(hub, entity_id)
        return (series.value_at(when) if series else None), when

    armed = {"armed": not in_range(hub, price_ahead()[0], config)}

    def evaluate() -> None:
        price, when = price_ahead()
        if not in_range(hub, price, config):
            armed["armed"] = True
        elif armed["armed"]:
            armed["armed"] = False
            fire(
                {
                    "platform": "price",
                    "entity_id": entity_id,
                    "price": price,
                    "at": when.astimezone(hub.time_zone),
                    "upcoming": ahead,
                    "description": f"price of {entity_id} in {ahead}",
                },
                None,
            )
        arm()

    def arm() -> None:
        if timer["t"] is not None:
            timer["t"].cancel()
            timer["t"] = None
        series = prices.series_of(hub, entity_id)
        if series is None or series.end is None:
            return
        when = hub.now() + ahead
        edges = [
            e
            for s in series.slots_between(when, series.end, clip=False)
            for e in (s.start, s.end)
            if e > when
        ]
        if edges:
            timer["t"] = hub.clock.call_at(min(edges) - ahead, evaluate)

    removers = _listen_prices(info, entity_id, evaluate)
    arm()

    def detach() -> None:
        for remove in removers:
            remove()
        if timer["t"] is not None:
            timer["t"].cancel()

    return detach


def _attach_cheapest(info: TriggerInfo, config: Mapping[str, Any], fire: FireCallback) -> Detach:
    """`event: start` (default) at the start of each cheapest stretch, and at once (`late`) when
    the selection is made inside a stretch not yet announced; `event: end` at each one's end."""
    hub, kind = info.hub, config.get("event", "start")
    announced: set[datetime] = set()  # stretch edges already fired
    held: dict[str, Any] = {"timer": None, "tracked": []}

    def announce(stretch: prices.Stretch, stretches: list[prices.Stretch], late: bool) -> None:
        tz = hub.time_zone
        announced.add(stretch.start if kind == "start" else stretch.end)
        fire(
            {
                "platform": "price",
                "entity_id": config["entity_id"],
                "event": kind,
                **stretch.as_dict(tz),
                "slots": [s.as_dict(tz) for s in stretches],
                "late": late,
                "description": f"cheapest {config['cheapest_hours']:g} h: stretch {kind}",
            },
            None,
        )

    def plan() -> None:
        if held["timer"] is not None:
            held["timer"].cancel()
            held["timer"] = None
        now = hub.now()
        announced.difference_update({e for e in announced if e < now - timedelta(days=2)})
        stretches, window_end = prices.selection(hub, config)
        if kind == "start":
            for stretch in stretches:
                if stretch.start <= now < stretch.end and stretch.start not in announced:
                    announce(stretch, stretches, late=stretch.start < now)
            due = [s.start for s in stretches if s.start > now and s.start not in announced]
        else:
            # A stretch of the window that just closed still ends when it ends.
            running = {s.end: s for s in held["tracked"] if s.end > now}
            running.update({s.end: s for s in stretches})
            held["tracked"] = sorted(running.values(), key=lambda s: s.end)
            due = [s.end for s in held["tracked"] if s.end > now and s.end not in announced]
        if window_end is not None and window_end > now:
            due.append(window_end)  # the next window gets its own selection
        if due:
            held["timer"] = hub.clock.call_at(min(due), ring)

    def ring() -> None:
        held["timer"] = None
        if kind == "end":
            now = hub.now()
            for stretch in held["tracked"]:
                if stretch.end == now and stretch.end not in announced:
                    announce(stretch, held["tracked"], late=False)
        plan()

    removers = _listen_prices(info, config["entity_id"], plan)
    for part in ("window_end", "before"):
        spec = config.get(part)
        if isinstance(spec, str):
            removers.append(
                hub.bus.listen(
                    EVENT_STATE_CHANGED, lambda _: plan(), lambda d, e=spec: d["entity_id"] == e
                )
            )
    plan()

    def detach() -> None:
        for remove in removers:
            remove()
        if held["timer"] is not None:
            held["timer"].cancel()

    return detach


# --- session ----------------------------------------------------------------------------------
SESSION_SCHEMA = vol.Schema(
    {
        vol.Required("event"): vol.All(
            cv.ensure_list, [vol.In(("started", "stopped", "suspended"))]
        ),
        vol.Optional("entity_id"): cv.entity_ids,
        vol.Optional("id_tag"): vol.All(cv.ensure_list, [cv.string]),
    }
)


def attach_session(info: TriggerInfo, config: Mapping[str, Any], fire: FireCallback) -> Detach:
    chargers = set(config.get("entity_id") or ())
    tags = set(config.get("id_tag") or ())

    def wanted(entity_id: Any, id_tag: Any) -> bool:
        return (not chargers or entity_id in chargers) and (not tags or id_tag in tags)

    def session_event(event: Event, kind: str) -> None:
        data = dict(event.data)
        if not wanted(data.get("entity_id"), data.get("id_tag")):
            return
        fire(
            {
                "platform": "session",
                "event": kind,
                "entity_id": data.get("entity_id"),
                "session_id": data.get("session_id"),
                "id_tag": data.get("id_tag"),
                "data": data,
                "description": f"session {kind} on {data.get('entity_id')}",
            },
            event.context,
        )

    def charger_changed(event: Event) -> None:
        old, new = event.data["old_state"], event.data["new_state"]
        if (
            new is None
            or new.state not in SUSPENDED
            or (old is not None and old.state == new.state)
        ):
            return
        attrs = new.attributes
        if not wanted(new.entity_id, attrs.get("id_tag")):
            return
        fire(
            {
                "platform": "session",
                "event": "suspended",
                "entity_id": new.entity_id,
                "session_id": attrs.get("session_id"),
                "id_tag": attrs.get("id_tag"),
                "reason": new.state,
                "from_state": old,
                "to_state": new,
                "description": f"session suspended on {new.entity_id} ({new.state})",
            },
            event.context,
        )

    bus, removers = info.hub.bus, []
    kinds = set(config["event"])
    if "started" in kinds:
        removers.append(bus.listen(EVENT_SESSION_STARTED, lambda e: session_event(e, "started")))
    if "stopped" in kinds:
        removers.append(bus.listen(EVENT_SESSION_STOPPED, lambda e: session_event(e, "stopped")))
    if "suspended" in kinds:
        removers.append(
            bus.listen(
                EVENT_STATE_CHANGED,
                charger_changed,
                lambda d: str(d["entity_id"]).startswith("charger."),
            )
        )

    def detach() -> None:
        for remove in removers:
            remove()

    return detach


# --- demand_response --------------------------------------------------------------------------
DEMAND_RESPONSE_SCHEMA = vol.Schema(
    {
        vol.Optional("event", default=["start"]): vol.All(cv.ensure_list, [vol.In(DR_PHASES)]),
        vol.Optional("node"): vol.All(cv.ensure_list, [cv.string]),
    }
)


def attach_demand_response(
    info: TriggerInfo, config: Mapping[str, Any], fire: FireCallback
) -> Detach:
    phases, nodes = set(config["event"]), set(config.get("node") or ())

    def heard(event: Event) -> None:
        data = dict(event.data)
        if data.get("phase") not in phases or (nodes and data.get("node") not in nodes):
            return
        fire(
            {
                "platform": "demand_response",
                "event": data.get("phase"),
                **{k: data.get(k) for k in DR_KEYS},
                "data": data,
                "description": f"demand response {data.get('phase')}",
            },
            event.context,
        )

    return info.hub.bus.listen(EVENT_DEMAND_RESPONSE, heard)


TRIGGERS: dict[str, TriggerType] = {
    "price": TriggerType(PRICE_SCHEMA, attach_price),
    "session": TriggerType(SESSION_SCHEMA, attach_session),
    "demand_response": TriggerType(DEMAND_RESPONSE_SCHEMA, attach_demand_response),
}
