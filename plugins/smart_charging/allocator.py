"""The real-time allocator: shares what the site's electrical tree has left among active sessions,
per phase, and says for every charger why it got what it got.

Pure and hub-independent: `allocate(site, sessions, non_ev_load)` in, one `Allocation` per session
out (sorted by charger id). The smart_charging plugin calls it every few seconds and on every
relevant event, and sends the allocations whose `send` is set.

The rules, in the order they apply:

- Units. Everything is amps per phase. A limit in kW is P = V * (I_L1 + I_L2 + I_L3) / 1000 with V
  the site's nominal phase voltage, so a kW limit is a budget of "phase-amps" that a 3-phase
  session uses three times as fast as a 1-phase one. A DC charger's output power is taken as its
  AC input, spread evenly over the phases it is wired to; its `current_a` is that input current
  and `power_kw` the command to send (`dc=True`).
- Phases. A session draws on the grid phases `charger_phase_map` gives for the phases the vehicle
  uses (`SessionDemand.phases`, default the charger's): a 1-phase car on a charger wired L2L3L1
  loads L2 only. `measured_a` is per charger phase (L1.. of the charger, like
  `ChargerData.current_a`); non-EV loads are per grid phase.
- Fixed load first. `non_ev_load[node]` is everything through that node that is not an EV session
  (a meter reading): a parent's entry includes its children's, and a node counts the larger of its
  own entry and the sum of its children's. Negative readings (PV export) count as 0, because PV
  can vanish between two rounds. A charger that does not keep to its limit (`complying=False`) is
  counted at its maximum (the lower of charger and vehicle max, or its measured draw if higher),
  keeps its last command (`send` False; re-sending is the caller's policy) and says so.
- Each session's range is [min, cap]: min = the larger of the charger's `min_current` and the
  vehicle's `min_a`; cap = the lowest of the plan's target (a target between 0 and the min is
  raised to the min: the plan wants energy now), the under-draw hold, the vehicle's
  max (A or kW), the charger's max (A or kW) and any `caps_kw` on the charger, else 63 A (a Type 2
  connector's most). A session whose cap is below its min is paused (0), never given a value
  between 0 and its min: an AC charger below 6 A cannot charge, it pauses.
- Under-draw. A vehicle that has drawn clearly less than its last command for `UNDER_DRAW_AFTER_S`
  (`under_draw_s`, timed by the caller with `hysteresis.draws_less`) is held at its peak draw plus
  `RAMP_MARGIN_A` (never below its min): the rest goes to others, and the margin lets it show that
  it wants more, which ends the under-draw and gives it its full share on the next round.
- Order. Priority classes are served highest first; within a class, sessions with a plan come first
  (filled up to their target), then the rest share what is left. Each group is admitted one session
  at a time at its minimum (sessions already charging first, then by charger id; one whose minimum
  no longer fits under some limit is paused), then filled: all admitted sessions of the group rise
  together from 0 (each held at least at its min) and each stops at its cap or when a limit on its
  path is full (any node's amps on a grid phase it draws on, or the node's kW limit or cap). This
  is max-min fair sharing in amps per phase; ties are broken by charger id, so it is deterministic.
- Safety. Limits already exceeded by fixed load admit nobody who draws on them: sessions on that
  node's other phases keep charging unless the node's kW limit is the one exceeded. Currents are
  then rounded down to `resolution_a` (never below the min).
- Hysteresis. A command that moves by at most `hysteresis_a` keeps the last one (`send` False)
  when the last one is still in range and, if it is higher, still fits under every limit after
  the others' values; a pause or a resume is always sent. So re-running with every
  `last_command_a` set to the result sends nothing. Send decreases before increases.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field

from hub.charging.site import ChargerNode, Node, Phase, Site
from plugins.smart_charging.hysteresis import (
    DEFAULT_HYSTERESIS_A,
    RAMP_MARGIN_A,
    UNDER_DRAW_AFTER_S,
    apply_hysteresis,
    peak,
    round_down,
)

AC_DEFAULT_MAX_A = 63.0  # IEC 62196-2 Type 2, three-phase: the most an AC session can take
_EPS = 1e-9
_PENDING, _WAITING, _ACTIVE, _DONE = range(4)  # a session's state while its group is filled
_ACTIVATE, _CAP, _FULL = range(3)  # event kinds; at one level, in this order


@dataclass(frozen=True, slots=True)
class Cap:
    """An extra kW cap on a node: a demand-response event, `charging.set_site_limit`."""

    kw: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SessionDemand:
    """One active session on a charger, as the allocator needs to see it."""

    charger: str  # ChargerNode id or its entity id
    _: KW_ONLY
    priority: int = 0  # higher is served first
    min_a: float | None = None  # the vehicle's minimum; the charger's min_current applies anyway
    max_a: float | None = None  # the vehicle's max per phase
    max_kw: float | None = None  # the vehicle's max power (a DC car's acceptance)
    phases: int | None = None  # phases the vehicle draws on now; None: the charger's
    measured_a: tuple[float, ...] | None = None  # per charger phase, L1.. of the charger
    target_a: float | None = None  # the optimizer's plan for now, per phase
    target_kw: float | None = None  # the same in kW (the lower of the two applies)
    target_reason: str = ""  # why the plan says so: "price slot 17:00", "departure 07:30"
    last_command_a: float | None = None  # the limit in force on the charger; None: never told
    under_draw_s: float = 0.0  # how long it has drawn clearly less than its last command
    complying: bool = True  # False: it ignores its limit, so it is counted at its maximum


@dataclass(frozen=True, slots=True)
class Allocation:
    """What one charger gets and why."""

    charger: str
    current_a: float  # per phase: the limit in force after this round (0 = paused)
    phases: int
    power_kw: float  # current_a on `phases` phases at the site voltage; a DC charger's command
    binding: str  # what decided it: "panel panel_a L2 at 250 A", "vehicle max 16 A", ...
    send: bool  # the command must be sent (else the charger keeps its last one)
    counted_a: float  # what its path's limits reserve per phase (its max when not complying)
    dc: bool = False
    node: str | None = None  # the node whose limit binds, if one does
    phase: Phase | None = None  # that limit's grid phase; None for a kW limit

    @property
    def paused(self) -> bool:
        return self.current_a <= 0


@dataclass(eq=False, slots=True)
class _Limit:
    """One budget in phase-amps: a node's amps on one grid phase, or its kW."""

    label: str
    node: str
    phase: Phase | None
    volts: float | None  # kW limits only: to say how much is left in kW
    room: float  # left at level `ref` (after fixed load and what is given so far)
    over: bool  # fixed load alone exceeds it
    initial: float = 0.0  # room after fixed load only
    slope: float = 0.0  # phase-amps used per amp the rising sessions rise
    ref: float = 0.0
    version: int = 0
    members: list[int] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class _Session:
    demand: SessionDemand
    index: int
    phases: int
    grid: tuple[int, ...]
    dc: bool
    min_a: float
    cap_a: float
    cap_why: str
    hard_max_a: float
    planned: bool
    limits: list[tuple[int, float]] = field(default_factory=list)  # (limit index, weight)
    current: float = 0.0
    why: str = ""
    where: tuple[str | None, Phase | None] = (None, None)
    state: int = _PENDING
    send: bool = True


def allocate(
    site: Site,
    sessions: Sequence[SessionDemand],
    non_ev_load: Mapping[str, Sequence[float]],
    caps_kw: Mapping[str, float | Cap] | None = None,
    *,
    hysteresis_a: float = DEFAULT_HYSTERESIS_A,
    resolution_a: float = 0.1,
) -> list[Allocation]:
    """Share the tree's capacity among `sessions`; see the module docstring for the rules.

    `non_ev_load` maps node ids to measured non-EV amps per grid phase (at least the site root:
    the grid meter minus the EVs' draw). It is required so that no caller forgets it.
    """
    caps = {key: c if isinstance(c, Cap) else Cap(float(c)) for key, c in (caps_kw or {}).items()}
    _check_inputs(site, sessions, non_ev_load, caps)
    volts = site.voltage
    prepared = [
        _prepare(site, demand, i, caps.get(site.node(demand.charger).id), volts)
        for i, demand in enumerate(sorted(sessions, key=lambda d: d.charger))
    ]
    fixed = _fixed_load(site, non_ev_load, prepared)
    limits, by_node = _limits(site, fixed, caps)
    for s in prepared:
        for node in site.path_to(s.demand.charger)[:-1]:
            for key, idx in by_node.get(node.id, {}).items():
                if key is None:
                    s.limits.append((idx, float(s.phases)))
                elif key in s.grid:
                    s.limits.append((idx, 1.0))
        # Non-complying and paused sessions are no members: they do not rise with the others.
        if s.state == _PENDING:
            for idx, _w in s.limits:
                limits[idx].members.append(s.index)

    groups: dict[tuple[int, bool], list[_Session]] = {}
    for s in prepared:
        if s.state == _PENDING:
            groups.setdefault((-s.demand.priority, not s.planned), []).append(s)
    for key in sorted(groups):
        admitted = _admit(groups[key], limits)
        _fill(admitted, prepared, limits)

    round_down(prepared, resolution_a)
    apply_hysteresis(prepared, limits, hysteresis_a)
    return [
        Allocation(
            charger=s.demand.charger,
            current_a=s.current,
            phases=s.phases,
            power_kw=math.floor(s.current * s.phases * volts + 1e-6) / 1000,  # whole watts
            binding=s.why,
            send=s.send,
            counted_a=s.hard_max_a if not s.demand.complying else s.current,
            dc=s.dc,
            node=s.where[0],
            phase=s.where[1],
        )
        for s in prepared
    ]


# --- inputs -------------------------------------------------------------------------------------
def _check_inputs(
    site: Site,
    sessions: Sequence[SessionDemand],
    non_ev_load: Mapping[str, Sequence[float]],
    caps: Mapping[str, Cap],
) -> None:
    seen: dict[str, str] = {}
    for demand in sessions:
        node = site.node(demand.charger)  # a KeyError names an unknown charger
        if not isinstance(node, ChargerNode):
            raise ValueError(f"session on {demand.charger!r}: that node is not a charger")
        if node.id in seen:
            raise ValueError(f"two sessions on charger {node.id!r} ({seen[node.id]!r} and here)")
        seen[node.id] = demand.charger
        if demand.phases is not None and demand.phases not in (1, 2, 3):
            raise ValueError(f"session on {demand.charger!r}: phases must be 1, 2 or 3")
        numbers = [demand.min_a, demand.max_a, demand.max_kw, demand.target_a, demand.target_kw]
        numbers += [demand.last_command_a, demand.under_draw_s, *(demand.measured_a or ())]
        if any(v is not None and not math.isfinite(v) for v in numbers):
            raise ValueError(f"session on {demand.charger!r}: numbers must be finite")
    for key, amps in non_ev_load.items():
        if isinstance(site.node(key), ChargerNode):
            raise ValueError(f"non_ev_load names charger {key!r}: its draw is its session's")
        if len(amps) != 3 or not all(math.isfinite(a) for a in amps):
            raise ValueError(f"non_ev_load[{key!r}] must be three finite amps [L1, L2, L3]")
    for key, cap in caps.items():
        site.node(key)
        if not math.isfinite(cap.kw) or cap.kw < 0:
            raise ValueError(f"caps_kw[{key!r}] must be a finite number >= 0")


def _prepare(
    site: Site, demand: SessionDemand, index: int, cap: Cap | None, volts: float
) -> _Session:
    """A session's phases, grid phases and range [min, cap], each bound with its reason."""
    node = site.node(demand.charger)
    assert isinstance(node, ChargerNode)
    phases = node.phases if node.dc else min(demand.phases or node.phases, node.phases)
    rotation = site.charger_phase_map(node)

    def amps(kw: float) -> float:
        return kw * 1000 / (phases * volts)

    hard: list[tuple[float, str]] = []  # what the hardware can draw: counts a non-complying one
    if demand.max_a is not None:
        hard.append((demand.max_a, f"vehicle max {demand.max_a:g} A"))
    if demand.max_kw is not None:
        hard.append((amps(demand.max_kw), f"vehicle max {demand.max_kw:g} kW"))
    if node.rated_current is not None:
        hard.append((node.rated_current, f"charger max {node.rated_current:g} A"))
    if node.max_power_kw is not None:
        hard.append((amps(node.max_power_kw), f"charger max {node.max_power_kw:g} kW"))
    if hard:
        hard_max = min(a for a, _ in hard)
    else:
        # Nothing rated: the node limits above it bind with their own names, but a charger that
        # ignores its limit is counted at the tightest breaker it is wired to (or a Type 2 plug).
        hard.append((AC_DEFAULT_MAX_A, f"no max known: Type 2 plug {AC_DEFAULT_MAX_A:g} A"))
        grid = [p.index for p in rotation[:phases]]
        wiring = [r for n in site.path_to(node)[:-1] for g in grid if (r := n.max_current[g])]
        hard_max = min(wiring, default=AC_DEFAULT_MAX_A)

    soft: list[tuple[float, str]] = []
    min_a = max(node.min_current, demand.min_a or 0.0)
    why = f" ({demand.target_reason})" if demand.target_reason else ""
    planned = []
    if demand.target_a is not None:
        planned.append((demand.target_a, f"plan: {demand.target_a:g} A{why}"))
    if demand.target_kw is not None:
        planned.append((amps(demand.target_kw), f"plan: {demand.target_kw:g} kW{why}"))
    for target, text in planned:
        # The LP knows no minimum: a plan of 4 A means "some energy now", and pausing would
        # lose it for good. The least an AC car can take is given instead (limits still apply).
        if 0 < target < min_a - _EPS:
            target, text = min_a, f"{text}, raised to the {min_a:g} A minimum"
        soft.append((target, text))
    if demand.measured_a and demand.under_draw_s >= UNDER_DRAW_AFTER_S:
        drawn = peak(demand.measured_a, phases)
        held = max(min_a, drawn + RAMP_MARGIN_A)
        soft.append((held, f"vehicle draws only {drawn:.1f} A: held at {held:.1f} A"))
    if cap is not None:
        text = f"charger cap {cap.kw:g} kW" + (f" ({cap.reason})" if cap.reason else "")
        soft.append((amps(cap.kw), text))
    cap_a, cap_why = min([*soft, *hard], key=lambda c: c[0])
    cap_a, min_a = float(cap_a), float(min_a)

    s = _Session(
        demand=demand,
        index=index,
        phases=phases,
        grid=tuple(p.index for p in rotation[:phases]),
        dc=node.dc,
        min_a=min_a,
        cap_a=cap_a,
        cap_why=cap_why,
        hard_max_a=float(max(hard_max, peak(demand.measured_a, phases))),
        planned=demand.target_a is not None or demand.target_kw is not None,
    )
    if not demand.complying:
        s.state, s.send = _DONE, False
        s.current = max(float(demand.last_command_a or 0.0), 0.0)
        s.why = f"charger not complying: counted at {s.hard_max_a:g} A"
    elif cap_a <= 0:
        s.state, s.why = _DONE, f"paused: {cap_why}"
    elif cap_a < min_a - _EPS:
        s.state, s.why = _DONE, f"paused: {cap_why} is below the {min_a:g} A minimum"
    return s


def _fixed_load(
    site: Site, non_ev_load: Mapping[str, Sequence[float]], sessions: list[_Session]
) -> dict[str, list[float]]:
    """Amps per grid phase through each node that the allocator cannot steer."""
    fixed: dict[str, list[float]] = {}

    def visit(node: Node) -> list[float]:
        own = [max(0.0, float(a)) for a in non_ev_load.get(node.id, (0.0, 0.0, 0.0))]
        kids = [visit(c) for c in node.children if not isinstance(c, ChargerNode)]
        fixed[node.id] = [max(own[p], sum(k[p] for k in kids)) for p in range(3)]
        return fixed[node.id]

    visit(site.root)
    for s in sessions:
        if not s.demand.complying:
            for node in site.path_to(s.demand.charger)[:-1]:
                for g in s.grid:
                    fixed[node.id][g] += s.hard_max_a
    return fixed


def _limits(
    site: Site, fixed: Mapping[str, list[float]], caps: Mapping[str, Cap]
) -> tuple[list[_Limit], dict[str, dict[int | None, int]]]:
    """Every budget in the tree, and per node: grid phase index (None: kW) -> its index."""
    limits: list[_Limit] = []
    by_node: dict[str, dict[int | None, int]] = {}
    for node in site.walk():
        if isinstance(node, ChargerNode):
            continue  # a charger's own ratings are part of its session's cap
        mine = by_node.setdefault(node.id, {})
        for phase in list(Phase)[: site.phases]:
            rating = node.max_current[phase.index]
            if rating is not None:
                mine[phase.index] = len(limits)
                room = rating - fixed[node.id][phase.index]
                label = f"{node.kind} {node.id} {phase} at {rating:g} A"
                limits.append(_Limit(label, node.id, phase, None, room, room < -_EPS, room))
        kw, cap = node.max_power_kw, caps.get(node.id)
        label = f"{node.kind} {node.id} at {kw:g} kW" if kw is not None else ""
        if cap is not None and (kw is None or cap.kw < kw):
            kw = cap.kw
            label = f"{node.kind} {node.id} cap {cap.kw:g} kW"
            label += f" ({cap.reason})" if cap.reason else ""
        if kw is not None:
            mine[None] = len(limits)
            room = kw * 1000 / site.voltage - sum(fixed[node.id][: site.phases])
            limits.append(_Limit(label, node.id, None, site.voltage, room, room < -_EPS, room))
    return limits, by_node


# --- admission and filling ----------------------------------------------------------------------
def _admit(group: list[_Session], limits: list[_Limit]) -> list[_Session]:
    """Give each session its minimum while it fits; pause the ones that no longer fit."""
    # Sessions already charging go first, so that a tight site does not flap between cars.
    order = sorted(group, key=lambda s: (not (s.demand.last_command_a or 0) > 0, s.demand.charger))
    admitted = []
    for s in order:
        short = next((i for i, w in s.limits if limits[i].room < s.min_a * w - _EPS), None)
        if short is not None:
            s.state, s.current, s.why = _DONE, 0.0, _short_text(limits[short], s)
            s.where = (limits[short].node, limits[short].phase)
            continue
        for i, w in s.limits:
            limits[i].room -= s.min_a * w
        s.state, s.current = _WAITING, s.min_a
        admitted.append(s)
    return sorted(admitted, key=lambda s: s.index)


def _short_text(limit: _Limit, s: _Session) -> str:
    if limit.over:
        return f"paused: {limit.label} is already exceeded by non-EV and non-complying load"
    if limit.volts is None:
        left = f"{max(limit.room, 0.0):.1f} A"
        return f"paused: {limit.label} has {left} left, below its {s.min_a:g} A minimum"
    left, need = (
        max(limit.room, 0.0) * limit.volts / 1000,
        s.min_a * s.phases * limit.volts / 1000,
    )
    return f"paused: {limit.label} has {left:.1f} kW left, below its {need:.1f} kW minimum"


def _fill(admitted: list[_Session], sessions: list[_Session], limits: list[_Limit]) -> None:
    """Progressive filling: raise every admitted session together until its cap or a full limit.

    The level rises continuously; events are where something changes (a session reaches its
    minimum and starts rising, reaches its cap, or a limit fills up), processed in level order.
    A limit's fill level is tracked lazily: room at `ref` and the slope since then.
    """
    heap: list[tuple[float, int, int, int]] = []
    for s in admitted:
        heap.append((s.min_a, _ACTIVATE, s.index, 0))
        heap.append((s.cap_a, _CAP, s.index, 0))
    heapq.heapify(heap)

    def reslope(i: int, level: float, delta: float) -> None:
        lim = limits[i]
        lim.room -= lim.slope * (level - lim.ref)
        lim.ref, lim.slope, lim.version = level, lim.slope + delta, lim.version + 1
        if lim.slope > _EPS:
            full_at = level + max(lim.room, 0.0) / lim.slope
            heapq.heappush(heap, (full_at, _FULL, i, lim.version))
        else:
            lim.slope = 0.0

    def freeze(group: list[_Session], level: float, why: str, where: tuple) -> None:
        deltas: dict[int, float] = {}
        for s in group:
            if s.state == _ACTIVE:
                s.current = level
                for i, w in s.limits:
                    deltas[i] = deltas.get(i, 0.0) - w
            s.state, s.why, s.where = _DONE, why, where
        for i in sorted(deltas):
            reslope(i, level, deltas[i])

    while heap:
        level, kind, key, version = heapq.heappop(heap)
        if kind == _FULL:
            lim = limits[key]
            if lim.version != version:
                continue
            hit = [sessions[m] for m in lim.members if sessions[m].state in (_WAITING, _ACTIVE)]
            freeze(hit, level, lim.label, (lim.node, lim.phase))
            continue
        s = sessions[key]
        if kind == _ACTIVATE and s.state == _WAITING:
            s.state = _ACTIVE
            for i, w in s.limits:
                reslope(i, level, w)
        elif kind == _CAP and s.state in (_WAITING, _ACTIVE):
            freeze([s], level, s.cap_why, (None, None))
