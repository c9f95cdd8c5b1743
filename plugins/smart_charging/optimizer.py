"""The charging plan: how much power each vehicle gets in each 15-minute slot of the next 24-48 h.

A linear program on HiGHS over the site's whole electrical tree; pure, blocking, hub-independent.

    p[v,t] >= 0      kW of vehicle v in slot t, only in the whole slots it is plugged in; <= its
                     ceiling (its max_kw and every static limit on its path, taken alone)
    unmet[v] >= 0    kWh it still lacks at departure (or at the plan's end, if it stays longer)
    imp[t], exp[t]   grid import / export at the site root; peak >= peak_so_far_kw
    energy    sum_t p[v,t] dt + unmet[v] = energy_kwh[v]               (never more than asked)
    balance   imp[t] - exp[t] - sum_v p[v,t] = base_load_kw[t];  exp[t] <= max(0, -base[t])
    site      imp[t] <= max(base[t], min(site max_power_kw, site cap[t]))
    nodes     for each node n, slot t and each of its limits k in {kW, L1, L2, L3}:
              sum_v share[v,k] p[v,t] <= min(rating, cap[t]) (- base share at the root), in kW
    peak      imp[t] <= peak                                           (only with a demand charge)
    minimise  sum_t dt (import_price[t] imp[t] - export_price[t] exp[t]) + demand_charge (peak -
              peak_so_far) + sum_v penalty[v] unmet[v] + earliest-first among equal prices

Per-phase amps become kW rows: a vehicle drawing p kW on n grid phases puts p/n on each, so
`sum share p <= amps * voltage / 1000` per node and grid phase. A single-phase charger (or a
single-phase car on a three-phase charger: its first phase) loads only the grid phase its rotation
names; a DC charger draws evenly from its phases. The base load sits at the root, even over the
site's phases; above a limit it leaves the EVs nothing (not an infeasible LP). A row is written
only where the vehicles under the node could exceed it at their ceilings: the rest are implied.

The penalty (default 1000x the price scale, times the vehicle's priority) is far above any price:
goals are met whenever physically possible, and what cannot be met is a `Shortfall` naming the
vehicle, the kWh and why (its own time at its ceiling, the plan's end, or the limits and caps that
were tight in its slots). The AC minimum current would need integers: the LP ignores `min_kw` and
the allocator pauses or rounds up a vehicle planned below it. An export price above the import
price is clamped to it (the cost would not be convex). `plan()` is stateless: the plugin re-plans
from "now" when a vehicle arrives or leaves, prices or caps change, and at each slot boundary. If
HiGHS fails, stops early or is not optimal, the least-laxity-first plan (`heuristics.py`) is
returned with status "heuristic" and the reason in `detail`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import highspy

from hub.charging.site import ChargerNode, Node, Site

if TYPE_CHECKING:
    from plugins.smart_charging.hedge import Hedge

SLOT = timedelta(minutes=15)
SHORT_KWH = 0.01  # less unmet energy than this is rounding, not a shortfall
PENALTY_FACTOR = 1000.0  # default unmet-energy penalty, in units of the problem's price scale
TIE_BREAK = 1e-5  # per kWh and earlier slot of the same price, x (1 + the highest price)
_TOL = 1e-6
Binding = Callable[[int], Mapping[int, list[int]]]  # vehicle -> {limit block: slots it held it}


@dataclass(frozen=True, kw_only=True)
class VehicleNeed:
    """One vehicle's goal: `energy_kwh` more on `charger` between arrival and departure."""

    id: str
    charger: str  # a ChargerNode id (or its entity id) in the site
    arrival: datetime
    departure: datetime
    energy_kwh: float  # still needed (ISO 15118 needs, a fleet schedule, a user's goal, a default)
    max_kw: float  # what the vehicle takes at most
    min_kw: float = 0.0  # AC minimum; relaxed in the LP (see the module docstring)
    phases: int | None = None  # grid phases the vehicle draws on; None: all of the charger's
    priority: float = 1.0  # multiplies the unmet-energy penalty


@dataclass(frozen=True, kw_only=True)
class PlanProblem:
    """Everything a plan depends on; per-slot sequences have exactly `slots` entries."""

    start: datetime
    slots: int
    site: Site
    import_price: Sequence[float]  # currency per kWh
    vehicles: Sequence[VehicleNeed] = ()
    slot: timedelta = SLOT
    export_price: Sequence[float] | None = None  # None: exported energy earns nothing
    base_load_kw: Sequence[float] | None = None  # non-EV load at the root; negative with PV
    caps_kw: Mapping[str, Sequence[float | None]] = field(default_factory=dict)  # node -> caps
    demand_charge: float = 0.0  # currency per kW of the billing period's peak import
    peak_so_far_kw: float = 0.0  # the period's peak already reached: only more than it costs
    unmet_penalty: float | None = None  # currency per kWh short; None: PENALTY_FACTOR x scale

    def __post_init__(self) -> None:
        times = [self.start, *(t for v in self.vehicles for t in (v.arrival, v.departure))]
        if any(t.utcoffset() is None for t in times):
            raise ValueError("the plan's start and every arrival and departure need a timezone")
        if self.slots < 1 or self.slot <= timedelta(0):
            raise ValueError("a plan needs at least one slot of positive length")
        series = {f"caps_kw[{k}]": v for k, v in self.caps_kw.items()} | {
            "import_price": self.import_price,
            "export_price": self.export_price,
            "base_load_kw": self.base_load_kw,
        }
        for name, values in series.items():
            if values is not None and len(values) != self.slots:
                raise ValueError(f"{name} has {len(values)} values for {self.slots} slots")
        if self.demand_charge < 0 or self.peak_so_far_kw < 0:
            raise ValueError("demand_charge and peak_so_far_kw cannot be negative")
        ids = [v.id for v in self.vehicles]
        if len(set(ids)) != len(ids):
            raise ValueError(f"vehicle ids must be unique: {sorted(ids)}")

    @property
    def end(self) -> datetime:
        return self.start + self.slots * self.slot


@dataclass(frozen=True)
class Shortfall:
    """A goal the plan cannot meet: which vehicle, by how many kWh, and why."""

    vehicle_id: str
    missing_kwh: float
    reason: str
    kind: str  # "window" | "time" | "horizon" | "limit" | "cap" | "cost": the first reason's


@dataclass(frozen=True, kw_only=True)
class Plan:
    """kW per vehicle per slot from `start`, with what it costs and the goals it misses."""

    start: datetime
    slot: timedelta
    power_kw: Mapping[str, tuple[float, ...]]
    status: str  # "optimal" (HiGHS) or "heuristic" (least laxity first)
    objective: float  # energy_cost + demand_charge + the penalty for unmet energy
    energy_cost: float  # the site's, base load included; export earnings subtracted
    demand_charge: float  # only what exceeds the billing period's peak so far
    peak_kw: float  # highest grid import: the period's peak so far or this plan's
    site_kw: tuple[float, ...]  # net grid power per slot (import > 0)
    shortfalls: tuple[Shortfall, ...] = ()
    detail: str = ""  # why the heuristic ran
    solve_seconds: float = 0.0  # HiGHS's own run time

    def power_at(self, vehicle_id: str, t: datetime) -> float:
        """Planned kW at `t`: 0 outside the plan; KeyError for a vehicle the plan never saw."""
        row = self.power_kw[vehicle_id]
        i = (t - self.start) // self.slot
        return row[i] if self.start <= t and i < len(row) else 0.0

    def energy_kwh(self, vehicle_id: str) -> float:
        return sum(self.power_kw[vehicle_id]) * self.slot.total_seconds() / 3600

    def shortfall(self, vehicle_id: str) -> Shortfall | None:
        return next((s for s in self.shortfalls if s.vehicle_id == vehicle_id), None)


# --- the problem as limits: shared by the LP and the heuristic ----------------------------------
@dataclass(eq=False)
class Block:
    """One limit of one node (its kW or one grid phase) as kW left for vehicles in each slot."""

    node: Node
    kind: str  # "kW", "L1", "L2" or "L3"
    rating: float | None  # kW, before caps and base load
    caps: Sequence[float | None] | None
    headroom: list[float]  # math.inf: no limit in that slot


@dataclass(eq=False)
class Prepared:
    """The problem in slot indices and kW, ready for either planner."""

    problem: PlanProblem
    dt: float  # hours per slot
    price: list[float]
    export: list[float]
    base: list[float]
    need: list[float] = field(default_factory=list)  # kWh per vehicle
    first: list[int] = field(default_factory=list)  # it may charge in slots first..last-1
    last: list[int] = field(default_factory=list)
    ub: list[float] = field(default_factory=list)  # its ceiling: every static limit, alone
    ub_why: list[str] = field(default_factory=list)
    penalty: list[float] = field(default_factory=list)  # per kWh unmet
    blocks: list[Block] = field(default_factory=list)
    terms: list[list[tuple[int, float]]] = field(default_factory=list)  # (block, share of kW)
    root_kw: int = 0  # the block of the site's kW limit


def _static_kw(node: Node, kind: str, volts: float) -> float | None:
    if kind == "kW":
        return node.max_power_kw
    amps = node.max_current[int(kind[1]) - 1]  # "L2" -> 1
    return None if amps is None else amps * volts / 1000


def _where(node: Node, kind: str = "", what: str = "limit") -> str:
    """How a shortfall names a limit: "site limit", "circuit c1 L2 limit", "panel p1 cap"."""
    where = "site" if node.parent is None else f"{node.kind} {node.id}"
    return f"{where} {what}" if kind in ("", "kW") else f"{where} {kind} {what}"


def _shares(node: ChargerNode, need: VehicleNeed) -> dict[str, float]:
    used = node.phase_rotation
    if not node.dc and need.phases is not None:
        used = used[: max(1, min(need.phases, len(used)))]
    return {"kW": 1.0} | {phase.value: 1 / len(used) for phase in used}


def prepare(problem: PlanProblem) -> Prepared:
    """Resolve vehicles onto the tree and keep only the limits that can bind."""
    site, n, step = problem.site, problem.slots, problem.slot
    root, volts = site.root, site.voltage
    price = [float(x) for x in problem.import_price]
    export = [float(x) for x in problem.export_price or [0.0] * n]
    base = [float(x) for x in problem.base_load_kw or [0.0] * n]
    dt = step.total_seconds() / 3600
    scale = max(map(abs, price + export + [problem.demand_charge / dt]), default=0.0) + 1.0
    unit = problem.unmet_penalty if problem.unmet_penalty is not None else PENALTY_FACTOR * scale
    prep = Prepared(problem, dt, price, export, base)
    caps = {site.node(k).id: v for k, v in problem.caps_kw.items()}
    paths = []
    load: dict[tuple[Node, str], float] = {(root, "kW"): 0.0}  # sum of share x ceiling
    for v in problem.vehicles:
        node = site.node(v.charger)
        if not isinstance(node, ChargerNode):
            raise ValueError(f"vehicle {v.id}: {v.charger!r} is not a charger of the site")
        shares, path = _shares(node, v), site.path_to(node)
        hops = list(itertools.product(path, shares.items()))
        ceiling, because = max(0.0, v.max_kw), "its maximum"
        for hop, (kind, share) in hops:
            lim = _static_kw(hop, kind, volts)
            if lim is not None and lim / share < ceiling:
                ceiling, because = lim / share, _where(hop, kind)
        # Whole slots only: a plan hands a vehicle over full at departure, not a slot later.
        a = min(max(0, -((problem.start - v.arrival) // step)), n)
        d = min(max(0, (v.departure - problem.start) // step), n)
        d = max(a, d) if v.energy_kwh > 0 else a
        prep.need.append(max(0.0, v.energy_kwh))
        prep.first.append(a)
        prep.last.append(d)
        prep.ub.append(ceiling)
        prep.ub_why.append(because)
        prep.penalty.append(unit * max(0.0, v.priority))
        paths.append(hops)
        for hop, (kind, share) in hops:
            load[hop, kind] = load.get((hop, kind), 0.0) + (share * ceiling if d > a else 0.0)
    index: dict[tuple[Node, str], int] = {}
    for (node, kind), most in load.items():
        static = _static_kw(node, kind, volts)
        cap = caps.get(node.id) if kind == "kW" else None
        at_root = node is root and (kind == "kW" or static is not None)
        if not (at_root or cap is not None or (static is not None and most > static)):
            continue  # the vehicles' ceilings already keep this limit
        top = math.inf if static is None else static
        room = [top if c is None else min(top, c) for c in cap or [None] * n]
        if node is root:  # the base load, spread evenly over the site's phases
            share = 1.0 if kind == "kW" else 1 / site.phases
            room = [max(0.0, lim - b * share) for lim, b in zip(room, base, strict=True)]
        index[node, kind] = len(prep.blocks)
        prep.blocks.append(Block(node, kind, static, cap, room))
    prep.root_kw = index[root, "kW"]
    prep.terms = [[(index[h, k], s) for h, (k, s) in hops if (h, k) in index] for hops in paths]
    return prep


# --- the LP --------------------------------------------------------------------------------------
@dataclass(eq=False)
class _Layout:
    """Where each vehicle's columns and each limit's rows are, to read the solution back."""

    lp: highspy.HighsLp
    col0: list[int]  # column of p[v, first[v]]
    imp0: int
    imp_upper: list[float]
    row_ids: list[list[int] | None]  # per block: its row in each slot, -1 where implied


def build_lp(problem: PlanProblem) -> highspy.HighsLp:
    """The LP alone (column-wise, in one pass), e.g. to time a bare HiGHS solve of it."""
    return _build(prepare(problem)).lp


def _build(prep: Prepared) -> _Layout:
    pb, n, dt, inf = prep.problem, prep.problem.slots, prep.dt, highspy.kHighsInf
    nv, demand = len(pb.vehicles), pb.demand_charge > 0
    # rows: energy per vehicle, balance per slot, peak per slot, then the limits that can bind
    row_lo = [*prep.need, *prep.base] + ([-inf] * n if demand else [])
    row_hi = [*prep.need, *prep.base] + ([0.0] * n if demand else [])
    diffs = [[0.0] * (n + 1) for _ in prep.blocks]
    for v, terms in enumerate(prep.terms):
        for b, share in terms:
            diffs[b][prep.first[v]] += share * prep.ub[v]
            diffs[b][prep.last[v]] -= share * prep.ub[v]
    row_ids: list[list[int] | None] = [None] * len(prep.blocks)
    for b, blk in enumerate(prep.blocks):
        if b == prep.root_kw:
            continue  # a bound on imp[t], not a row
        ids, at_most = [-1] * n, 0.0
        for t in range(n):
            at_most += diffs[b][t]
            if at_most > blk.headroom[t]:  # no slack: a limit is a limit
                ids[t] = len(row_hi)
                row_lo.append(-inf)
                row_hi.append(blk.headroom[t])
        if max(ids) >= 0:
            row_ids[b] = ids
    start, index, value = [0], [], []
    cost: list[float] = []
    upper: list[float] = []  # every lower bound is 0 but the peak's

    def column(rows: Sequence[int], coefs: Sequence[float], c: float, hi: float) -> None:
        index.extend(rows)
        value.extend(coefs)
        start.append(len(index))
        cost.append(c)
        upper.append(hi)

    col0 = []
    # Among slots of one price the earlier is cheaper: big enough for HiGHS to see, and only
    # between equal prices (a ramp over the horizon that big would outweigh real differences).
    tie, ranks = [], dict.fromkeys(prep.price, 0)
    unit = TIE_BREAK * (1 + max(map(abs, prep.price), default=0.0)) * dt
    for p in prep.price:
        tie.append(unit * ranks[p])
        ranks[p] += 1
    for v, terms in enumerate(prep.terms):  # p[v, t]: inline, this loop is the hot one
        a, d = prep.first[v], prep.last[v]
        col0.append(len(cost))
        rows = [(ids, share) for b, share in terms if (ids := row_ids[b]) is not None]
        for t in range(a, d):
            index += (v, nv + t)
            value += (dt, -1.0)
            for ids, share in rows:
                if (r := ids[t]) >= 0:
                    index.append(r)
                    value.append(share)
            start.append(len(index))
        cost += tie[a:d]
        upper += [prep.ub[v]] * (d - a)
    for v in range(nv):
        column((v,), (1.0,), prep.penalty[v], prep.need[v])  # unmet[v]
    imp0, root = len(cost), prep.blocks[prep.root_kw].headroom
    imp_upper = [b + r if r < math.inf else inf for b, r in zip(prep.base, root, strict=True)]
    for t in range(n):  # imp[t], also in its peak row
        rows = (nv + t, nv + n + t)[: 1 + demand]
        column(rows, (1.0, 1.0)[: 1 + demand], prep.price[t] * dt, imp_upper[t])
    for t in range(n):  # exp[t]: only a PV surplus; vehicles never feed back
        earns = min(prep.export[t], prep.price[t]) * dt
        column((nv + t,), (-1.0,), -earns, max(0.0, -prep.base[t]))
    lower = [0.0] * len(cost)
    if demand:  # peak, from the period's peak so far
        column(range(nv + n, nv + 2 * n), [-1.0] * n, pb.demand_charge, inf)
        lower.append(pb.peak_so_far_kw)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = len(cost), len(row_hi)
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = cost, lower, upper
    lp.row_lower_, lp.row_upper_ = row_lo, row_hi
    lp.offset_ = -pb.demand_charge * pb.peak_so_far_kw if demand else 0.0
    matrix = lp.a_matrix_
    matrix.format_ = highspy.MatrixFormat.kColwise
    matrix.num_col_, matrix.num_row_ = lp.num_col_, lp.num_row_
    matrix.start_, matrix.index_, matrix.value_ = start, index, value
    return _Layout(lp, col0, imp0, imp_upper, row_ids)


def plan(problem: PlanProblem, *, time_limit: float = 5.0, hedge: Hedge | None = None) -> Plan:
    """The cheapest plan that meets every goal it can; blocking (run it in an executor)."""
    # Imported here: the heuristic and the hedge build on this module's types.
    from plugins.smart_charging.hedge import hedged
    from plugins.smart_charging.heuristics import from_prepared

    prep = prepare(problem)  # bad input is the caller's bug: it raises, no fallback hides it
    try:
        layout = _build(prep)
        highs = highspy.Highs()
        highs.setOptionValue("output_flag", False)
        highs.setOptionValue("time_limit", float(time_limit))
        if highs.passModel(layout.lp) != highspy.HighsStatus.kOk:
            return from_prepared(prep, detail="HiGHS rejected the model")
        solved = _run(highs)
        if isinstance(solved, str):
            return from_prepared(prep, detail=solved)
        first = _extract(prep, layout, *solved)
        if hedge is None or not problem.demand_charge > 0:
            return first
        return hedged(prep, layout, highs, first, hedge)
    except Exception as err:  # whatever the solver does, charging must go on
        return from_prepared(prep, detail=f"HiGHS failed: {err!r}")


def _run(highs: highspy.Highs) -> tuple[list[float], list[float], float] | str:
    highs.run()
    status = highs.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        return f"HiGHS stopped: {highs.modelStatusToString(status)}"
    solution = highs.getSolution()
    return list(solution.col_value), list(solution.row_value), highs.getRunTime()


def _extract(
    prep: Prepared, layout: _Layout, x: list[float], rows: list[float], seconds: float
) -> Plan:
    problem = prep.problem
    power = []
    for v, c in enumerate(layout.col0):  # solver noise below 1e-7 kW is no charging
        a, d, top = prep.first[v], prep.last[v], prep.ub[v]
        got = [min(p, top) if p > 1e-7 else 0.0 for p in x[c : c + d - a]]
        power.append([0.0] * a + got + [0.0] * (problem.slots - d))

    upper = layout.lp.row_upper_
    near = [hi - _TOL * (1 + abs(hi)) for hi in upper]  # at its limit, give or take tolerance
    tight = {r for r, (y, hi) in enumerate(zip(rows, near, strict=True)) if y >= hi}
    full = {t for t, hi in enumerate(layout.imp_upper) if x[layout.imp0 + t] >= hi - _TOL * hi}

    def binding(v: int) -> dict[int, list[int]]:
        """The limits that were tight in the slots where vehicle v stayed below its ceiling."""
        out: dict[int, list[int]] = {}
        mine = [(b, ids) for b, _ in prep.terms[v] if (ids := layout.row_ids[b]) is not None]
        for t in range(prep.first[v], prep.last[v]):
            if power[v][t] < prep.ub[v] - _TOL:
                for b, ids in [(prep.root_kw, None)] * (t in full) + mine:
                    if ids is None or ids[t] in tight:
                        out.setdefault(b, []).append(t)
        return out

    return replace(make_plan(prep, power, "optimal", binding), solve_seconds=seconds)


# --- what a plan costs and why a goal falls short: the same for both planners -------------------
def make_plan(
    prep: Prepared, power: list[list[float]], status: str, binding: Binding, detail: str = ""
) -> Plan:
    """Cost `power` (kW per vehicle per slot) as billed, and explain each goal it misses."""
    from plugins.smart_charging.shortfalls import explain  # it reads this module's types

    pb, dt = prep.problem, prep.dt
    net = [sum(column) for column in zip(prep.base, *power, strict=True)]
    energy = dt * sum(
        p * g if g > 0 else e * g for p, e, g in zip(prep.price, prep.export, net, strict=True)
    )
    peak = max(pb.peak_so_far_kw, *net)
    demand = pb.demand_charge * (peak - pb.peak_so_far_kw)
    shortfalls, penalty = [], 0.0
    for v, row in enumerate(power):
        missing = max(0.0, prep.need[v] - sum(row) * dt)
        penalty += prep.penalty[v] * missing  # as the LP counts it, however little
        if missing > SHORT_KWH:
            shortfalls.append(explain(prep, v, missing, binding(v)))
    return Plan(
        start=pb.start,
        slot=pb.slot,
        power_kw={v.id: tuple(row) for v, row in zip(pb.vehicles, power, strict=True)},
        status=status,
        objective=energy + demand + penalty,
        energy_cost=energy,
        demand_charge=demand,
        peak_kw=peak,
        site_kw=tuple(net),
        shortfalls=tuple(shortfalls),
        detail=detail,
    )
