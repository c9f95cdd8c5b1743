"""Plain data for pages and the API from the hub's live state: the electrical tree with each node's
load against its limit, charger tiles, price and plan curves. No HTML here and no plugin import.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from hub.charging.signals import SignalStore
from hub.charging.site import ChargerNode, Node
from hub.states import State

if TYPE_CHECKING:
    from hub.core import Hub

ACTIVE = ("charging", "suspended_ev", "suspended_evse", "preparing", "finishing")
# The empty tile pages keep in a <template>: the page's script fills a copy for a new charger.
BLANK_TILE: dict[str, Any] = {
    "entity_id": "", "name": "", "status": "", "power_kw": 0.0, "session_id": None,
    "id_tag": None, "soc": None, "limit": None, "limit_reason": None, "error_code": None,
    "vehicle": None,
}  # fmt: skip


def _phase_amps(state: State | None) -> list[float]:
    raw = state.attributes.get("current_a") if state is not None else None
    if not isinstance(raw, list | tuple):
        return [0.0, 0.0, 0.0]
    amps = [float(a) if isinstance(a, int | float) else 0.0 for a in raw[:3]]
    return amps + [0.0] * (3 - len(amps))


def _power_w(state: State | None) -> float:
    value = state.attributes.get("power_w") if state is not None else None
    return float(value) if isinstance(value, int | float) else 0.0


def site_tree(hub: Hub) -> list[dict[str, Any]]:
    """Every node of the site tree, parents first: load per grid phase against its limit.

    A charger's phase currents are mapped to grid phases through its wiring (phase rotation)
    and summed up the tree, the way the breakers see them.
    """
    if hub.site is None:
        return []
    loads: dict[str, list[float]] = {}
    power: dict[str, float] = {}

    def visit(node: Node) -> tuple[list[float], float]:
        if isinstance(node, ChargerNode):
            state = hub.states.get(node.entity) if node.entity else None
            grid = [0.0, 0.0, 0.0]
            for i, amps in enumerate(_phase_amps(state)):
                if i < len(node.phase_rotation):
                    grid[node.phase_rotation[i].index] += amps
            total = (grid, _power_w(state))
        else:
            grid, watts = [0.0, 0.0, 0.0], 0.0
            for child in node.children:
                c_grid, c_watts = visit(child)
                grid = [a + b for a, b in zip(grid, c_grid, strict=True)]
                watts += c_watts
            total = (grid, watts)
        loads[node.id], power[node.id] = total
        return total

    visit(hub.site.root)
    out = []
    for node in hub.site.walk():
        depth = sum(1 for _ in node.ancestors())
        limits = list(node.max_current)
        amps = loads[node.id]
        used = [a / lim for a, lim in zip(amps, limits, strict=True) if lim]
        if node.max_power_kw:
            used.append(power[node.id] / 1000 / node.max_power_kw)
        out.append(
            {
                "id": node.id,
                "name": node.name,
                "kind": str(node.kind),
                "depth": depth,
                "entity_id": node.entity if isinstance(node, ChargerNode) else None,
                "current_a": [round(a, 1) for a in amps],
                "max_current_a": limits,
                "power_kw": round(power[node.id] / 1000, 2),
                "max_power_kw": node.max_power_kw,
                "utilization": round(max(used), 3) if used else None,
                "limit_text": _limit_text(limits, node.max_power_kw),
            }
        )
    return out


def _limit_text(amps: list[float | None], kw: float | None) -> str:
    """ "32 A" when every phase has the same rating, else "32 / 32 / 16 A"; then any kW cap."""
    known = [a for a in amps if a is not None]
    if not known:
        text = "no amp limit"
    elif len(set(amps)) == 1:
        text = f"{known[0]:g} A"
    else:
        text = " / ".join("-" if a is None else f"{a:g}" for a in amps) + " A"
    return f"{text}, {kw:g} kW" if kw else text


def charger_tile(state: State) -> dict[str, Any]:
    """What a charger tile shows, from its state alone (any protocol)."""
    a: Mapping[str, Any] = state.attributes
    limit = a.get("limit") if isinstance(a.get("limit"), Mapping) else None
    return {
        "entity_id": state.entity_id,
        "name": a.get("friendly_name") or state.entity_id,
        "status": state.state,
        "active": state.state in ACTIVE,
        "power_kw": round(_power_w(state) / 1000, 2),
        "session_id": a.get("session_id"),
        "id_tag": a.get("id_tag"),
        "soc": a.get("soc"),
        "limit": f"{limit['value']:g} {limit['unit']}" if limit else None,
        "limit_reason": a.get("limit_reason"),
        "vendor": a.get("vendor"),
        "model": a.get("model"),
        "error_code": a.get("error_code"),
        "charge_point_id": a.get("charge_point_id"),
        "connector": a.get("connector"),
        "ocpp": a.get("ocpp_version"),
        "capabilities": list(a.get("capabilities") or ()),
    }


def vehicle_at(hub: Hub, entity_id: str) -> str | None:
    """The vehicle entity that says it is at this charger (a fleet plugin may provide them)."""
    for state in hub.states.all("vehicle"):
        if state.attributes.get("charger") == entity_id:
            return str(state.attributes.get("friendly_name") or state.entity_id)
    return None


def chargers(hub: Hub) -> list[dict[str, Any]]:
    tiles = []
    for state in sorted(hub.states.all("charger"), key=lambda s: s.entity_id):
        tile = charger_tile(state)
        tile["vehicle"] = vehicle_at(hub, state.entity_id)
        tiles.append(tile)
    return tiles


def series(
    hub: Hub, name: str, start: datetime | None = None, end: datetime | None = None
) -> dict[str, Any] | None:
    """A published signal (`prices.grid_import`, `plan.site`) as slots for a chart or the API."""
    found = SignalStore.of(hub).get(name)
    if found is None:
        return None
    slots = found.slots_between(start, end) if start and end else list(found)
    return {
        "name": name,
        "unit": found.unit,
        "source": found.source,
        "slots": [
            {"start": s.start.isoformat(), "end": s.end.isoformat(), "value": s.value}
            for s in slots
        ],
    }


def price_and_plan(hub: Hub, hours: int = 24) -> dict[str, Any]:
    """The first price signal and every plan/cap signal over the next `hours` for the overview."""
    store = SignalStore.of(hub)
    now = hub.now()
    start, end = now - timedelta(hours=2), now + timedelta(hours=hours)
    prices = [series(hub, n, start, end) for n in store.names("prices.*")[:1]]
    plans = [series(hub, n, start, end) for n in store.names("plan.*") + store.names("caps.*")]
    return {
        "now": now.isoformat(),
        "prices": [p for p in prices if p],
        "plans": [p for p in plans if p],
        "currency": hub.currency,
    }
