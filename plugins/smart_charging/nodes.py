"""Every node of the site's electrical tree as a state (`site_node.<id>`): its load per grid phase
against its ratings and caps, and the room left, for the UI, the API and templates.

Loads are what the chargers under a node report (mapped onto grid phases by their rotation),
plus, at the grid connection, the non-EV load its meter shows; nothing is estimated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hub.charging.site import ChargerNode, Node, Site

if TYPE_CHECKING:
    from hub.core import Hub
    from plugins.smart_charging.allocator import Cap

DOMAIN = "site_node"


def node_loads(
    site: Site,
    charger_amps: Mapping[str, tuple[float, ...]],
    root_extra: tuple[float, float, float],
) -> dict[str, list[float]]:
    """Amps per grid phase through each node: chargers' readings (by node id) plus the root's
    non-EV load."""
    loads: dict[str, list[float]] = {}

    def visit(node: Node) -> list[float]:
        total = [0.0, 0.0, 0.0]
        if isinstance(node, ChargerNode):
            amps = charger_amps.get(node.id, ())
            for charger_phase, grid_phase in enumerate(node.phase_rotation):
                if charger_phase < len(amps):
                    total[grid_phase.index] += amps[charger_phase]
            return total
        for child in node.children:
            for i, a in enumerate(visit(child)):
                total[i] += a
        loads[node.id] = total
        return total

    visit(site.root)
    root = loads[site.root.id]
    loads[site.root.id] = [max(0.0, a + b) for a, b in zip(root, root_extra, strict=True)]
    return loads


def publish(
    hub: Hub,
    site: Site,
    loads: Mapping[str, list[float]],
    caps: Mapping[str, Cap],
) -> None:
    """One state per non-charger node; `available_kw` also counts every node above it."""
    volts = site.voltage
    own: dict[str, float | None] = {}
    for node in site.walk():
        if isinstance(node, ChargerNode):
            continue
        amps = loads.get(node.id, [0.0, 0.0, 0.0])
        kw = sum(amps) * volts / 1000
        cap = caps.get(node.id)
        limits_kw = [v for v in (node.max_power_kw, cap.kw if cap else None) if v is not None]
        # The phase with the least room decides: a three-phase car needs it on every phase.
        ratings = zip(node.max_current, amps, strict=True)
        phase_room = [None if r is None else r - a for r, a in ratings]
        room = [
            *(limit - kw for limit in limits_kw),
            *(3 * r * volts / 1000 for r in phase_room if r is not None),
        ]
        own[node.id] = min(room) if room else None
        attributes: dict[str, Any] = {
            "friendly_name": node.name or node.id,
            "kind": str(node.kind),
            "parent": node.parent.id if node.parent else None,
            "current_a": [round(a, 1) for a in amps],
            "max_current": list(node.max_current),
            "max_power_kw": node.max_power_kw,
            "cap_kw": cap.kw if cap else None,
            "cap_reason": cap.reason if cap else None,
            "headroom_a": [None if r is None else round(r, 1) for r in phase_room],
            "headroom_kw": None if own[node.id] is None else round(own[node.id] or 0.0, 2),
        }
        above = [own.get(a.id) for a in node.ancestors()]
        chain = [v for v in (own[node.id], *above) if v is not None]
        attributes["available_kw"] = round(min(chain), 2) if chain else None
        hub.states.set(f"{DOMAIN}.{node.id}", round(kw, 2), attributes, unit="kW")
