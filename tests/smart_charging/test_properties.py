"""Property-based tests of the allocator over random sites, sessions, loads and caps (hypothesis).

Random trees have random depth and breadth, per-phase amp limits (some None), kW limits,
rotations, 1- and 3-phase and DC chargers; sessions have random priorities, limits, plans,
measured draws, last commands and compliance; non-EV loads and kW caps are random too.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.charging.site import Site
from plugins.smart_charging.allocator import Allocation, Cap, SessionDemand, allocate

from .support import grid_phases, limit_violations, range_violations

ROTATIONS_3 = ["".join(p) for p in itertools.permutations(("L1", "L2", "L3"))]
FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BOOL = st.booleans()


# Strategies are built once: building one per draw costs more than the allocation under test.
@functools.cache
def _int(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.integers(lo, hi)


@functools.cache
def _pick(*options: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from(options)


def _maybe(*options: Any) -> st.SearchStrategy[Any]:
    return _pick(None, *options)


_AMPS = st.floats(0, 40, allow_nan=False).map(lambda x: round(x, 1))
_MEASURED = st.one_of(st.none(), st.tuples(_AMPS, _AMPS, _AMPS))
_LAST = st.one_of(st.none(), _AMPS)
# Mostly what a building draws beside the chargers; sometimes more than a node can carry.
_LOAD = st.one_of(*[st.floats(-5, 15, allow_nan=False)] * 6, st.floats(0, 160, allow_nan=False))
_LOADS = st.tuples(_LOAD, _LOAD, _LOAD)


def _amps(draw: st.DrawFn, ceiling: list[float | None], lo: int, hi: int) -> list[float | None]:
    """A per-phase rating that fits under `ceiling` (the tightest rating above, per phase)."""
    out: list[float | None] = []
    for top in ceiling:
        if draw(BOOL):
            out.append(None)
        else:
            out.append(float(draw(_int(lo, int(min(top or hi, hi))))))
    return out


def _tighter(ceiling: list[float | None], mine: list[float | None]) -> list[float | None]:
    return [m if m is not None else c for c, m in zip(ceiling, mine, strict=True)]


@st.composite
def sites(draw: st.DrawFn) -> dict[str, Any]:
    ids = itertools.count()
    site_phases = draw(_pick(3, 3, 3, 1))

    def kw(draw: st.DrawFn, top: float | None, lo: int = 20) -> float | None:
        if draw(_int(0, 2)):
            return None
        return float(draw(_int(min(lo, int(top or lo)), int(top) if top is not None else 300)))

    def charger(ceiling: list[float | None], kw_top: float | None) -> dict[str, Any]:
        dc = draw(_int(0, 5)) == 0 and site_phases == 3
        phases = 3 if dc else draw(_pick(1, 3) if site_phases == 3 else _pick(1))
        if phases == 3:
            rotation = draw(_pick(*ROTATIONS_3))
        else:
            rotation = draw(_pick(*["L1", "L2", "L3"][:site_phases]))
        wired = [ceiling[int(rotation[i + 1]) - 1] for i in range(0, len(rotation), 2)]
        top = min((c for c in wired if c is not None), default=80.0)
        conf: dict[str, Any] = {"id": f"ch{next(ids)}", "phases": phases}
        conf["phase_rotation"] = rotation
        conf["min_current"] = float(draw(_pick(6, 6, 6, 8)))
        if dc or draw(BOOL):
            conf["max_current"] = float(draw(_int(8, int(min(top, 80)))))
        if dc:
            conf["dc"] = True
            conf["max_power_kw"] = float(draw(_int(5, int(min(kw_top or 150, 150)))))
        elif (charger_kw := kw(draw, kw_top)) is not None:
            conf["max_power_kw"] = charger_kw
        return conf

    def rated(conf: dict[str, Any], ceiling: list[float | None], kw_top: float | None) -> tuple:
        # The grid connection is large, the nodes below it smaller: most limits can bind.
        root = ceiling == [None, None, None]
        amps = _amps(draw, ceiling, *((100, 400) if root else (10, 150)))
        conf["max_current"] = amps
        if (mine := kw(draw, kw_top)) is not None:
            conf["max_power_kw"] = kw_top = mine
        return _tighter(ceiling, amps), kw_top

    def panel(depth: int, ceiling: list[float | None], kw_top: float | None) -> dict[str, Any]:
        conf: dict[str, Any] = {"id": f"n{next(ids)}"}
        ceiling, kw_top = rated(conf, ceiling, kw_top)
        panels = draw(_int(0, 2)) if depth > 0 else 0
        conf["panels"] = [panel(depth - 1, ceiling, kw_top) for _ in range(panels)]
        conf["circuits"] = []
        for _ in range(draw(_int(0 if panels else 1, 3))):
            circuit: dict[str, Any] = {"id": f"n{next(ids)}"}
            inner, inner_kw = rated(circuit, ceiling, kw_top)
            circuit["chargers"] = [charger(inner, inner_kw) for _ in range(draw(_int(1, 5)))]
            conf["circuits"].append(circuit)
        return conf

    root = panel(draw(_int(0, 3)), [None, None, None], None)
    root.update(id="site", phases=site_phases, voltage=230.0)
    return root


@st.composite
def worlds(draw: st.DrawFn) -> tuple[Site, list[SessionDemand], dict, dict]:
    site = Site.from_config(draw(sites()))
    sessions = []
    for ch in site.chargers():
        if not draw(_int(0, 4)):
            continue
        sessions.append(
            SessionDemand(
                ch.id,
                priority=draw(_pick(0, 0, 0, 1, 2)),
                min_a=draw(_maybe(None, None, 6.0, 7.5, 10.0)),
                max_a=draw(_maybe(None, None, None, None, 5.0, 10.0, 16.0, 32.0)),
                max_kw=draw(_maybe(None, None, None, 3.7, 11.0, 50.0)),
                phases=draw(_pick(None, None, 1, 3)),
                measured_a=draw(_MEASURED),
                target_a=draw(_maybe(None, None, None, None, None, None, None, 0.0, 8.0, 16.0)),
                target_kw=draw(_maybe(None, None, None, None, None, None, 7.4)),
                last_command_a=draw(_LAST),
                under_draw_s=draw(_pick(0.0, 0.0, 120.0)),
                complying=draw(_int(0, 11)) > 0,
            )
        )
    nodes = [n.id for n in site.walk() if n not in site.chargers()]
    non_ev = {n: draw(_LOADS) for n in nodes if not draw(_int(0, 2))}
    caps: dict[str, float | Cap] = {}
    for n in [*nodes, *(c.id for c in site.chargers())]:
        if not draw(_int(0, 5)):
            caps[n] = Cap(float(draw(_int(0, 200))), "demand response")
    return site, sessions, non_ev, caps


def _run(world: tuple, **kw: Any) -> list[Allocation]:
    site, sessions, non_ev, caps = world
    return allocate(site, sessions, non_ev, caps, **kw)


@FAST
@given(worlds(), _pick(0.0, 0.5, 1.0, 2.0), st.randoms(use_true_random=False))
def test_no_node_limit_is_ever_exceeded_on_any_phase(
    world: tuple, hysteresis: float, rnd: Any
) -> None:
    """Non-EV + every charger's current (its max when not complying) fits every amp and kW limit
    of every node on every grid phase; where fixed load alone exceeds one, EVs add nothing to it.
    Every steered charger gets 0 or a value within its min and all its maxima. Both with random
    last commands and with last commands just around the new values, where the hysteresis keeps
    old values (a kept higher one must still fit).
    """
    site, sessions, non_ev, caps = world
    result = _run(world, hysteresis_a=hysteresis)
    assert limit_violations(site, sessions, non_ev, caps, result) == []
    assert range_violations(site, sessions, result) == []
    told = {a.charger: a.current_a for a in result}
    nudged = [
        replace(d, last_command_a=max(0.0, told[d.charger] + rnd.choice([-1.5, -0.4, 0.3, 0.9])))
        if d.complying
        else d
        for d in sessions
    ]
    again = allocate(site, nudged, non_ev, caps, hysteresis_a=hysteresis)
    assert limit_violations(site, nudged, non_ev, caps, again) == []
    assert range_violations(site, nudged, again) == []


def _touches(site: Site, a: Allocation, node: str, phase_index: int | None) -> bool:
    on_path = any(n.id == node for n in site.path_to(a.charger)[:-1])
    return on_path and (phase_index is None or phase_index in grid_phases(site, a))


@FAST
@given(worlds())
def test_priority_and_fair_sharing_on_a_shared_bottleneck(world: tuple) -> None:
    """Without hysteresis (no last commands), for two steered sessions H and L:

    - if H has a higher priority, charges, and is bound by a node limit (amps on a grid phase, or
      kW) that L also draws on, then L gets 0: it never takes from a bottleneck H could not fill;
    - if they have the same priority, no plan, are bound by the same node limit and both charge
      above their minimum (not held there), they get the same current.
    """
    site, sessions, non_ev, caps = world
    fresh = [replace(d, last_command_a=None, under_draw_s=0.0) for d in sessions]
    result = allocate(site, fresh, non_ev, caps)
    demand = {d.charger: d for d in fresh}
    steered = [a for a in result if demand[a.charger].complying]
    for h, low in itertools.permutations(steered, 2):
        dh, dl = demand[h.charger], demand[low.charger]
        if h.node is None or h.current_a <= 0:
            continue
        limit = (h.node, None if h.phase is None else h.phase.index)
        if dh.priority > dl.priority and _touches(site, low, *limit):
            assert low.current_a == 0, (h, low)
        planless = dh.target_a is dh.target_kw is dl.target_a is dl.target_kw is None
        if dh.priority == dl.priority and planless and (low.node, low.phase) == (h.node, h.phase):
            floor = max(_min(site, dh), _min(site, dl)) + 0.1
            if h.current_a > floor and low.current_a > floor:
                assert h.current_a == low.current_a, (h, low)


def _min(site: Site, d: SessionDemand) -> float:
    node = site.node(d.charger)
    return max(getattr(node, "min_current", 0.0), d.min_a or 0.0)


@FAST
@given(worlds(), st.randoms(use_true_random=False))
def test_deterministic_whatever_the_order_of_sessions(world: tuple, rnd: Any) -> None:
    site, sessions, non_ev, caps = world
    first = allocate(site, sessions, non_ev, caps)
    shuffled = list(sessions)
    rnd.shuffle(shuffled)
    assert allocate(site, shuffled, non_ev, caps) == first
    assert [a.charger for a in first] == sorted(a.charger for a in first)


@FAST
@given(worlds(), _pick(0.0, 1.0, 2.0))
def test_told_what_it_was_given_nothing_is_sent_again(world: tuple, hysteresis: float) -> None:
    site, sessions, non_ev, caps = world
    result = allocate(site, sessions, non_ev, caps, hysteresis_a=hysteresis)
    told = {a.charger: a.current_a for a in result}
    again = [replace(d, last_command_a=told[d.charger]) if d.complying else d for d in sessions]
    rerun = allocate(site, again, non_ev, caps, hysteresis_a=hysteresis)
    assert [a.send for a in rerun] == [False] * len(rerun)
    assert [a.current_a for a in rerun] == [a.current_a for a in result]
