"""`site_headroom()` for templates: the room left on a node of the site's electrical tree.

The smart-charging engine publishes every node as `site_node.<id>` (caps set by services
included); without it, ratings and `caps.<node>` signals minus what the meters and chargers read.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING

from hub.automation.template_functions import _need, pass_hub, read_state, track_signal, track_time
from hub.charging.site import ChargerNode, Node

if TYPE_CHECKING:
    from hub.core import Hub


@pass_hub
def site_headroom(hub: Hub | None, node: str = "site", unit: str = "kW") -> float | None:
    """What is left below `node` and every node above it: kW a balanced three-phase load could
    still add, or with unit="A" the smallest per-phase amps."""
    hub = _need(hub, "site_headroom()")
    site = hub.site
    if site is None:
        raise RuntimeError("site_headroom() needs the site's electrical tree (site: in config)")
    if unit not in ("kW", "A"):
        raise ValueError(f"site_headroom unit {unit!r}: expected kW or A")
    target = site.root if node in ("site", site.root.id) else site.node(node)
    chain = [read_state(hub, f"site_node.{n.id}") for n in (target, *target.ancestors())]
    if all(s is not None and s.available for s in chain):
        if unit == "kW":
            return chain[0].attributes.get("available_kw")  # type: ignore[union-attr]
        amps = [a for s in chain for a in s.attributes.get("headroom_a") or () if a is not None]  # type: ignore[union-attr]
        return round(builtins.min(amps), 3) if amps else None
    return _from_ratings(hub, target, unit)


def _from_ratings(hub: Hub, target: Node, unit: str) -> float | None:
    site = hub.site
    assert site is not None
    store = hub.data.get("signals")
    amps_left: list[float] = []
    kw_left: list[float] = []
    for n in (target, *target.ancestors()):
        measured = _grid_load(hub) if n is site.root else None
        phase_a, load_kw = measured or _charger_load(hub, n)
        amps_left += [r - a for r, a in zip(n.max_current, phase_a, strict=True) if r is not None]
        limits = [n.max_power_kw]
        cap = f"caps.{'site' if n is site.root else n.id}"
        track_signal(cap)
        if store is not None and (series := store.get(cap)) is not None:
            track_time()
            limits.append(series.value_at(hub.now()))
        kw_left += [k - load_kw for k in limits if k is not None]
    if unit == "A":
        return round(builtins.min(amps_left), 3) if amps_left else None
    if amps_left:
        kw_left.append(builtins.min(amps_left) * 3 * site.voltage / 1000)
    return round(builtins.min(kw_left), 3) if kw_left else None


def _charger_load(hub: Hub, node: Node) -> tuple[list[float], float]:
    """Grid-phase amps and kW drawn by the chargers at or below `node`, from their states."""
    amps, kw = [0.0, 0.0, 0.0], 0.0
    site = hub.site
    assert site is not None
    for charger in (n for n in node.walk() if isinstance(n, ChargerNode) and n.entity):
        state = read_state(hub, charger.entity or "")
        if state is None or not state.available:
            continue
        per_phase = [a or 0.0 for a in state.attributes.get("current_a") or ()]
        for i, phase in enumerate(charger.phase_rotation):
            if i < len(per_phase):
                amps[phase.index] += per_phase[i]
        power = state.attributes.get("power_w")
        kw += power / 1000 if power is not None else sum(per_phase) * site.voltage / 1000
    return amps, kw


def _grid_load(hub: Hub) -> tuple[list[float], float] | None:
    """Per-phase amps and kW at the grid connection from the site's grid meter, when it reads."""
    site = hub.site
    meter = site.meters.get("grid") if site is not None else None
    state = read_state(hub, meter) if meter else None
    if site is None or state is None or not state.available or state.state is None:
        return None
    try:
        kw = builtins.float(state.state) / (1 if state.unit == "kW" else 1000)
    except (TypeError, ValueError):
        return None  # a meter reporting nonsense: count the chargers instead
    per_phase = state.attributes.get("current_a")
    if isinstance(per_phase, list | tuple) and len(per_phase) == 3:
        return [builtins.float(a or 0) for a in per_phase], kw
    return [kw * 1000 / (3 * site.voltage)] * 3, kw
