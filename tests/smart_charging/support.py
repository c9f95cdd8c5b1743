"""Test support for the allocator: scenario files, and an independent check of every limit.

The check recomputes each node's load from the site tree and the allocations alone, so the
scenarios and the property tests assert the safety property the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hub.charging.site import SITE_SCHEMA, ChargerNode, Node, Site
from plugins.smart_charging.allocator import Allocation, Cap, SessionDemand

SCENARIOS = Path(__file__).parent / "scenarios"
TOLERANCE = 1e-6


@dataclass
class Scenario:
    name: str
    description: str
    site: Site
    sessions: list[SessionDemand]
    non_ev_load: dict[str, tuple[float, float, float]]
    caps_kw: dict[str, float | Cap]
    hysteresis_a: float
    expect: dict[str, dict[str, Any]]


def load_scenario(path: Path) -> Scenario:
    raw = yaml.safe_load(path.read_text())
    site = Site.from_config(SITE_SCHEMA(raw["site"]))
    sessions = []
    for item in raw.get("sessions", []):
        fields = dict(item)
        if fields.get("measured_a") is not None:
            fields["measured_a"] = tuple(fields["measured_a"])
        sessions.append(SessionDemand(fields.pop("charger"), **fields))
    caps: dict[str, float | Cap] = {}
    for node, cap in (raw.get("caps_kw") or {}).items():
        caps[node] = Cap(**cap) if isinstance(cap, dict) else float(cap)
    expect = {
        charger: want if isinstance(want, dict) else {"current_a": want}
        for charger, want in raw["expect"].items()
    }
    return Scenario(
        name=path.stem,
        description=raw["description"],
        site=site,
        sessions=sessions,
        non_ev_load={k: tuple(v) for k, v in (raw.get("non_ev_load") or {}).items()},
        caps_kw=caps,
        hysteresis_a=float(raw.get("hysteresis_a", 1.0)),
        expect=expect,
    )


def effective_non_ev(site: Site, loads: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    """A node carries the larger of its own reading and the sum of its children's, per phase."""
    out: dict[str, list[float]] = {}

    def visit(node: Node) -> list[float]:
        own = [max(0.0, a) for a in loads.get(node.id, (0.0, 0.0, 0.0))]
        kids = [visit(c) for c in node.children if not isinstance(c, ChargerNode)]
        out[node.id] = [max(own[p], sum(k[p] for k in kids)) for p in range(3)]
        return out[node.id]

    visit(site.root)
    return out


def grid_phases(site: Site, allocation: Allocation) -> list[int]:
    node = site.node(allocation.charger)
    assert isinstance(node, ChargerNode)
    return [p.index for p in site.charger_phase_map(node)[: allocation.phases]]


def limit_violations(
    site: Site,
    sessions: Sequence[SessionDemand],
    non_ev_load: Mapping[str, Sequence[float]],
    caps_kw: Mapping[str, float | Cap],
    allocations: Sequence[Allocation],
) -> list[str]:
    """Every node limit (amps per grid phase, kW, kW caps) that the result breaks.

    Load = non-EV + each allocation's `counted_a` (its current, or the max of a non-complying
    charger) on the grid phases it draws on. Where non-EV and non-complying load alone already
    exceed a limit, the allocator cannot help it: there it must add nothing.
    """
    demands = {site.node(d.charger).id: d for d in sessions}
    fixed = effective_non_ev(site, non_ev_load)
    ev: dict[str, list[float]] = {n.id: [0.0, 0.0, 0.0] for n in site.walk()}
    for a in allocations:
        steered = demands[site.node(a.charger).id].complying
        for node in site.path_to(a.charger)[:-1]:
            for g in grid_phases(site, a):
                if steered:
                    ev[node.id][g] += a.counted_a
                else:
                    fixed[node.id][g] += a.counted_a
    kw_caps = {k: c.kw if isinstance(c, Cap) else float(c) for k, c in caps_kw.items()}
    problems = []
    for node in site.walk():
        if isinstance(node, ChargerNode):
            continue
        for p in range(site.phases):
            limit = node.max_current[p]
            if limit is None:
                continue
            base, added = fixed[node.id][p], ev[node.id][p]
            if base + added > max(limit, base) + TOLERANCE or (base > limit and added > 0):
                problems.append(f"{node.id} L{p + 1}: {base:g} + {added:g} A > {limit:g} A")
        kws = [k for k in (node.max_power_kw, kw_caps.get(node.id)) if k is not None]
        if kws:
            base_kw = sum(fixed[node.id][: site.phases]) * site.voltage / 1000
            added_kw = sum(ev[node.id][: site.phases]) * site.voltage / 1000
            if base_kw + added_kw > max(min(kws), base_kw) + TOLERANCE or (
                base_kw > min(kws) and added_kw > 0
            ):
                problems.append(f"{node.id}: {base_kw:g} + {added_kw:g} kW > {min(kws):g} kW")
    return problems


def range_violations(
    site: Site, sessions: Sequence[SessionDemand], allocs: Sequence[Allocation]
) -> list[str]:
    """A steered session gets 0 or a value within its min and every max it is under."""
    problems = []
    by_id = {a.charger: a for a in allocs}
    for d in sessions:
        a = by_id[d.charger]
        if not d.complying or a.current_a == 0:
            continue
        node = site.node(d.charger)
        assert isinstance(node, ChargerNode)
        volts, low = site.voltage, max(node.min_current, d.min_a or 0)
        targets = [d.target_a]
        if d.target_kw is not None:
            targets.append(d.target_kw * 1000 / (a.phases * volts))
        # a plan between 0 and the minimum is raised to the minimum (the plan wants energy now)
        highs = [node.rated_current, d.max_a]
        highs += [max(t, low) if 0 < t < low else t for t in targets if t is not None]
        kws = [node.max_power_kw, d.max_kw]
        highs += [kw * 1000 / (a.phases * volts) for kw in kws if kw is not None]
        high = min((h for h in highs if h is not None), default=63.0)
        if not low - TOLERANCE <= a.current_a <= high + TOLERANCE:
            problems.append(f"{d.charger}: {a.current_a:g} A outside [{low:g}, {high:g}]")
    return problems
