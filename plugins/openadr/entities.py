"""The demand-response entities, declared as data: whether an event is active, its level, the cap
in force now and the next event. Their states are rewritten at every phase and cap edge.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hub.entities import DescribedEntity, Entity, ValueDescription

if TYPE_CHECKING:
    from plugins.openadr.manager import DemandResponse

UPCOMING = 10  # events listed in the next-event sensor's attributes


def _level(dr: DemandResponse) -> float | None:
    active = dr.active()
    if not active:
        return 0
    levels = [e.level for e in active if e.level is not None]
    return max(levels) if levels else None


def _cap(dr: DemandResponse) -> float | None:
    value = dr.caps_now().get(dr.settings.node)
    return None if value is None else round(value, 3)


def _active_attrs(dr: DemandResponse) -> Mapping[str, Any]:
    return {
        "events": [e.event_id for e in dr.active()],
        "opted_out": [e.event_id for e in dr.events.values() if e.status == "active"
                      and e.opt == "out"],
    }  # fmt: skip


def _cap_attrs(dr: DemandResponse) -> Mapping[str, Any]:
    return {"node": dr.settings.node, "caps_kw": dr.caps_now()}


def _next(dr: DemandResponse) -> str | None:
    start = dr.next_start()
    return None if start is None else start.isoformat()


def _next_attrs(dr: DemandResponse) -> Mapping[str, Any]:
    upcoming = dr.upcoming()
    first = upcoming[0].as_dict() if upcoming else {}
    first.pop("slots", None)
    return {
        **first,
        "upcoming": [
            {k: e.as_dict()[k] for k in ("event_id", "start", "end", "cap_kw", "level", "opt")}
            for e in upcoming[:UPCOMING]
        ],
    }


DESCRIPTIONS: tuple[tuple[str, ValueDescription[DemandResponse]], ...] = (
    ("binary_sensor", ValueDescription(
        key="active", name="active", device_class="running",
        value_fn=lambda dr: bool(dr.active()), attrs_fn=_active_attrs)),
    ("sensor", ValueDescription(
        key="level", name="level", value_fn=_level,
        attrs_fn=lambda dr: {"events": {e.event_id: e.level for e in dr.active()}})),
    ("sensor", ValueDescription(
        key="cap", name="cap", unit="kW", device_class="power", state_class="measurement",
        value_fn=_cap, attrs_fn=_cap_attrs)),
    ("sensor", ValueDescription(
        key="next_event", name="next event", device_class="timestamp", value_fn=_next,
        attrs_fn=_next_attrs)),
)  # fmt: skip


class _Binary(DescribedEntity["DemandResponse"]):
    domain = "binary_sensor"


def build_entities(dr: DemandResponse) -> list[Entity]:
    """binary_sensor.demand_response_active; sensor.demand_response_level, _cap, _next_event."""
    out: list[Entity] = []
    for domain, description in DESCRIPTIONS:
        cls = _Binary if domain == "binary_sensor" else DescribedEntity
        out.append(cls(lambda: dr, description, "demand_response", device_name="demand response"))
    return out
