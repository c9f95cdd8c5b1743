"""What a node of the site draws (a configured meter, the site's grid meter, or the sum of its
chargers) and how an event's cap was kept: maximum, time-weighted average, seconds over the cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hub.charging.site import ChargerNode
from hub.states import STATE_UNAVAILABLE

if TYPE_CHECKING:
    from hub.core import Hub

_TO_KW = {"W": 0.001, "kW": 1.0, "MW": 1000.0}


class LoadMeter:
    """The measured load of one node in kW, and the entities whose changes move it."""

    def __init__(self, hub: Hub, node: str, entity: str | None = None) -> None:
        self.hub = hub
        self.node = node
        self.entity = entity
        self.chargers: list[str] = []
        if entity is None and hub.site is not None:
            root = hub.site.root
            tree = root if node in ("site", root.id) else _find(hub, node)
            grid = hub.site.meters.get("grid") if tree is root else None
            if grid:
                self.entity = grid
            elif tree is not None:
                self.chargers = [
                    n.entity for n in tree.walk() if isinstance(n, ChargerNode) and n.entity
                ]

    @property
    def entities(self) -> list[str]:
        return [self.entity] if self.entity else list(self.chargers)

    @property
    def describe(self) -> str:
        if self.entity:
            return self.entity
        return f"sum of {len(self.chargers)} chargers" if self.chargers else "nothing"

    def kw(self) -> float | None:
        """The load now; None when nothing reads it."""
        if self.entity:
            return _sensor_kw(self.hub, self.entity)
        total, seen = 0.0, False
        for entity_id in self.chargers:
            state = self.hub.states.get(entity_id)
            if state is None or state.state == STATE_UNAVAILABLE:
                continue
            seen = True
            watts = state.attributes.get("power_w")
            if isinstance(watts, int | float):
                total += watts / 1000
        return round(total, 3) if seen else None


def _find(hub: Hub, node: str) -> Any:
    assert hub.site is not None
    try:
        return hub.site.node(node)
    except KeyError:
        return None


def _sensor_kw(hub: Hub, entity_id: str) -> float | None:
    state = hub.states.get(entity_id)
    if state is None or isinstance(state.state, bool):
        return None
    try:
        value = float(state.state)
    except (TypeError, ValueError):
        return None
    return value * _TO_KW.get(state.unit or "kW", 1.0)


@dataclass(slots=True)
class Tally:
    """Time-weighted: each reading holds until the next point (a change of load or of cap)."""

    tolerance_kw: float = 0.0
    last_t: datetime | None = None
    last_kw: float | None = None
    last_cap: float | None = None
    seconds: float = 0.0  # measured seconds
    kw_seconds: float = 0.0
    seconds_over: float = 0.0
    max_kw: float | None = None
    max_over_kw: float = 0.0

    def point(self, t: datetime, kw: float | None, cap: float | None) -> None:
        if self.last_t is not None and self.last_kw is not None and t > self.last_t:
            dt = (t - self.last_t).total_seconds()
            self.seconds += dt
            self.kw_seconds += self.last_kw * dt
            if self.last_cap is not None and self.last_kw > self.last_cap + self.tolerance_kw:
                self.seconds_over += dt
        if kw is not None:
            self.max_kw = kw if self.max_kw is None else max(self.max_kw, kw)
            if cap is not None:
                self.max_over_kw = max(self.max_over_kw, kw - cap)
        self.last_t, self.last_kw, self.last_cap = t, kw, cap

    def result(self) -> dict[str, Any]:
        return {
            "max_kw": None if self.max_kw is None else round(self.max_kw, 3),
            "avg_kw": round(self.kw_seconds / self.seconds, 3) if self.seconds else None,
            "seconds_over": round(self.seconds_over, 1),
            "max_over_kw": round(self.max_over_kw, 3),
            "measured_seconds": round(self.seconds, 1),
            "energy_kwh": round(self.kw_seconds / 3600, 4),
        }
