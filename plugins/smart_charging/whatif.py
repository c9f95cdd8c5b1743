"""What-if simulation of a charging site under a policy, on simulated time: `evhub plan`'s engine.
Pure and hub-independent: a site tree, sessions and prices in; metrics per policy out.

The rules (docs/planning.md explains them to facility managers):

- Time. Steps of `step` (15 min by default; any whole-minute divisor of 15 min) from the quarter
  hour at or before the first arrival to the one at or after the last departure: a loop over step
  times, never the wall clock. Power is constant within a step.
- Chargers. A session naming a `charger` waits for it; any other takes the first free charger by
  id, or queues (first come, first served) for the first one freed. A vehicle keeps its charger
  until it departs, full or not; one still waiting at its departure never gets a charger. The
  assignment (`assign`) is the same for every policy, so policies differ only in power.
- Whole steps. A vehicle charges from the first step that starts at or after it plugs in to the
  last that ends by its departure. The planners work in quarter hours, like the optimizer and
  tariffs: they plan and act from the first whole quarter it is plugged in.
- `uncontrolled`: min(vehicle max_kw, charger max) from plug-in until full or gone. Nothing is
  enforced: overloads are counted, which is the point.
- `smart`, `llf`, `greedy`: a receding horizon. At a quarter hour where a vehicle became known
  (online: at plug-in; foresight: all from the start), one is more than DEVIATION_KWH behind its
  plan, or the plan is REPLAN_EVERY old, the planner plans the known vehicles plugging in within
  HORIZON, up to the last of their departures (a horizon that cut a night in two would plan a
  peak at its end, and a planned peak is free to fill), with the period's peak so far. Departures
  trigger nothing: they were known at arrival.
  smart = `strategy.plan_smart`, the HiGHS LP as the live planner runs it. Online with a demand
  charge it runs twice: the first pass chooses the peak with the real prices, the second
  re-plans under that peak with a premium of demand_charge / HEDGE_HOURS per kWh and hour of
  delay, so energy goes as early as the peak allows: a cheaper quarter later is not worth the
  room a car not yet here may need (without it the week's peak crept up night after night).
  With foresight nobody is unknown: one pass.
  llf = `heuristics.least_laxity_first`; greedy = each vehicle alone at its ceiling in its
  cheapest quarters, blind to the others and to the demand charge.
- Acting on a plan. The LP is continuous, but an AC car pauses below its minimum (~6 A; the
  allocator raises a smaller target to it): `whatif_load.take_turns` has the cars planned below
  it take turns at it, keeping the plan's total (unless a car would miss its goal) and every
  node limit. Then `allocate()` enforces the tree per phase, as in the live engine, cars that
  cannot wait first, with exact currents (a charger's 0.1 A steps are a 0.3 % effect that would
  only blur the comparison).
- Energy. A vehicle drawing p kW in a step gets min(p x step, what it still needs).
- Metrics (`whatif_load.Meter`). Peak per node: the highest 15-minute average kW (energy per
  clock quarter / 0.25 h). Overloads: each step x node x limit (amps on one grid phase, or the
  node's kW) where the power drawn exceeds the rating; drawn, not averaged, since a car that
  fills up mid-step drew its power until then. Energy cost: price x energy per step. Demand
  charge: rate x the highest 15-minute average site kW of the whole period. Ready: delivered >=
  requested - READY_KWH.
- `offline_optimum`: one LP over the whole period with every session known, the bound the online
  planner is measured against (tests/smart_charging/test_whatif.py). Like the optimizer it
  relaxes AC minimum currents, so where they bind it is below what any schedule can reach.
- `automations:NAME` policies run the hub itself on the same visits: `whatif_automations.py`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from hub.charging.signals import TimeSeries
from hub.charging.site import ChargerNode, Site
from plugins.smart_charging.allocator import AC_DEFAULT_MAX_A, SessionDemand, allocate
from plugins.smart_charging.heuristics import least_laxity_first
from plugins.smart_charging.optimizer import PlanProblem, VehicleNeed, plan, prepare
from plugins.smart_charging.strategy import peak_hint, plan_smart
from plugins.smart_charging.whatif_load import (
    EPS,
    QUARTER,
    Meter,
    PolicyResult,
    Room,
    take_turns,
)

HORIZON = timedelta(hours=24)
REPLAN_EVERY = timedelta(hours=1)
DEVIATION_KWH = 0.05  # this far behind its plan in one quarter: re-plan at the next
POLICIES = ("uncontrolled", "smart", "llf", "greedy")
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # quarters start at :00, :15, ...

Planner = Callable[[PlanProblem], Mapping[str, Sequence[float]]]


def floor_to(t: datetime, step: timedelta) -> datetime:
    return _EPOCH + ((t - _EPOCH) // step) * step


def ceil_to(t: datetime, step: timedelta) -> datetime:
    return _EPOCH - ((_EPOCH - t) // step) * step


@dataclass(frozen=True, kw_only=True)
class SessionRequest:
    """One vehicle visit: arrives, wants `energy_kwh` at up to `max_kw`, departs."""

    id: str
    arrival: datetime
    departure: datetime
    energy_kwh: float
    max_kw: float
    charger: str | None = None  # a ChargerNode id (or entity id); None: the first free one
    vehicle: str | None = None  # the CSV's vehicle_id: one vehicle may come back day after day


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """Everything a simulation depends on; checked on construction (ValueError)."""

    site: Site
    sessions: Sequence[SessionRequest]
    prices: TimeSeries  # import price per kWh; must cover the whole period
    demand_charge: float = 0.0  # per kW of the period's highest 15-minute average import
    step: timedelta = QUARTER
    foresight: bool = False
    horizon: timedelta = HORIZON
    # The site's peaks in its last billing periods, oldest first (what `sensor.site_peak_demand`
    # kept): smart and the hub-based policies plan with them as the live hub does
    # (`strategy.peak_hint`). Empty: a hub that starts with no history.
    last_peaks_kw: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.sessions:
            raise ValueError("no sessions to simulate")
        if self.step <= timedelta(0) or QUARTER % self.step or self.step % timedelta(minutes=1):
            raise ValueError("the step must be whole minutes dividing 15 minutes (1, 3, 5, 15)")
        if not all(0 <= kw < math.inf for kw in self.last_peaks_kw):
            raise ValueError("the last periods' peaks must be numbers >= 0")
        if self.demand_charge < 0 or self.horizon < QUARTER:
            raise ValueError("the demand charge must be >= 0 and the horizon >= 15 minutes")
        seen: set[str] = set()
        for s in self.sessions:
            if s.arrival.utcoffset() is None or s.departure.utcoffset() is None:
                raise ValueError(f"session {s.id}: times need a UTC offset")
            if s.departure <= s.arrival:
                raise ValueError(f"session {s.id}: departure is not after arrival")
            if not (s.energy_kwh >= 0 and s.max_kw > 0) or math.inf in (s.energy_kwh, s.max_kw):
                raise ValueError(f"session {s.id}: energy_kwh >= 0 and max_kw > 0, both finite")
            if s.id in seen:
                raise ValueError(f"session id {s.id!r} is used twice")
            seen.add(s.id)
            if s.charger is not None and not isinstance(self.site.node(s.charger), ChargerNode):
                raise ValueError(f"session {s.id}: {s.charger!r} is not a charger")
        self.quarter_prices  # noqa: B018 - fail now, not in the middle of a simulation

    @property
    def start(self) -> datetime:
        return floor_to(min(s.arrival for s in self.sessions), QUARTER)

    @property
    def end(self) -> datetime:
        return ceil_to(max(s.departure for s in self.sessions), QUARTER)

    @property
    def steps(self) -> int:
        return (self.end - self.start) // self.step

    @property
    def tz(self) -> tzinfo:
        """Where the sessions' times are (the first arrival's zone): for reports."""
        return self.sessions[0].arrival.tzinfo or UTC

    @functools.cached_property
    def step_prices(self) -> tuple[float, ...]:
        return _mean_prices(self.prices, self.start, self.step, self.steps)

    @functools.cached_property
    def quarter_prices(self) -> tuple[float, ...]:
        return _mean_prices(self.prices, self.start, QUARTER, (self.end - self.start) // QUARTER)


def _mean_prices(prices: TimeSeries, start: datetime, step: timedelta, n: int) -> tuple[float, ...]:
    out = []
    for k in range(n):
        a, b = start + k * step, start + (k + 1) * step
        parts = prices.slots_between(a, b)
        covered = sum((p.duration for p in parts), timedelta(0))
        if covered < b - a:
            raise ValueError(f"no price for {a.isoformat()} to {b.isoformat()}: prices must cover "
                             "every step from the first arrival to the last departure")  # fmt: skip
        out.append(sum(p.value * (p.duration / (b - a)) for p in parts))
    return tuple(out)


# --- chargers -------------------------------------------------------------------------------
def charger_max_kw(site: Site, node: ChargerNode) -> float:
    if node.dc:
        return float(node.max_power_kw or 0.0)
    amps = node.rated_current or AC_DEFAULT_MAX_A
    return min(amps * node.phases * site.voltage / 1000, node.max_power_kw or math.inf)


def charger_min_kw(site: Site, node: ChargerNode) -> float:
    return 0.0 if node.dc else node.min_current * node.phases * site.voltage / 1000


@dataclass(frozen=True)
class Visit:
    """A session as plugged in: its charger and its charging window on the step grid."""

    request: SessionRequest
    charger: ChargerNode | None  # None: it never got one
    plug: datetime  # the first step it charges in (plug >= unplug: it cannot charge)
    unplug: datetime
    max_kw: float = 0.0  # the vehicle's and the charger's
    min_kw: float = 0.0


def assign(scenario: Scenario) -> list[Visit]:
    """Chargers for the sessions (in the sessions' order): see the module docstring."""
    site, step, sessions = scenario.site, scenario.step, scenario.sessions
    chargers = sorted(site.chargers(), key=lambda c: c.id)
    free = {c.id: scenario.start for c in chargers}  # when each is next free
    out: list[Visit | None] = [None] * len(sessions)
    for i in sorted(range(len(sessions)), key=lambda i: (sessions[i].arrival, i)):
        s = sessions[i]
        options = chargers if s.charger is None else [site.node(s.charger)]
        # The first free by id, else the first to be freed: min() keeps the first of equals.
        node = next((c for c in options if free[c.id] <= s.arrival), None)
        node = node or min(options, key=lambda c: free[c.id])
        assert isinstance(node, ChargerNode)
        plugged = max(s.arrival, free[node.id])
        if plugged >= s.departure:
            out[i] = Visit(s, None, s.departure, s.departure)
            continue
        free[node.id] = s.departure
        out[i] = Visit(
            s,
            node,
            ceil_to(plugged, step),
            floor_to(s.departure, step),
            min(s.max_kw, charger_max_kw(site, node)),
            charger_min_kw(site, node),
        )
    return [v for v in out if v is not None]


# --- policies -------------------------------------------------------------------------------
def greedy_plan(problem: PlanProblem) -> dict[str, tuple[float, ...]]:
    """Each vehicle alone at its ceiling in its cheapest quarters, earliest first among equals."""
    prep = prepare(problem)
    out = {}
    for v, need in enumerate(problem.vehicles):
        row, left = [0.0] * problem.slots, prep.need[v]
        for t in sorted(range(prep.first[v], prep.last[v]), key=lambda t: (prep.price[t], t)):
            if left <= EPS:
                break
            row[t] = min(prep.ub[v], left / prep.dt)
            left -= row[t] * prep.dt
        out[need.id] = tuple(row)
    return out


def _smart(problem: PlanProblem, peak_hint_kw: float = 0.0) -> Mapping[str, Sequence[float]]:
    return plan_smart(problem, online=True, peak_hint_kw=peak_hint_kw).power_kw


def _llf(problem: PlanProblem) -> Mapping[str, Sequence[float]]:
    return least_laxity_first(problem).power_kw


def _smart_foresight(problem: PlanProblem) -> Mapping[str, Sequence[float]]:
    return plan_smart(problem, online=False).power_kw  # nobody unknown to leave room for


PLANNERS: dict[str, Planner] = {"smart": _smart, "llf": _llf, "greedy": greedy_plan}


def simulate(
    scenario: Scenario, policy: str, visits: Sequence[Visit] | None = None
) -> PolicyResult:
    """Run `policy` (one of POLICIES) over the whole period; see the module docstring."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: expected one of {', '.join(POLICIES)}")
    visits = assign(scenario) if visits is None else visits
    meter = Meter(scenario, visits)
    if policy == "uncontrolled":
        left = [v.request.energy_kwh for v in visits]
        for k in range(scenario.steps):
            t = scenario.start + k * scenario.step
            draws = {
                i: (v.max_kw, min(v.max_kw * meter.dt, left[i]))
                for i, v in enumerate(visits)
                if v.charger is not None and v.plug <= t < v.unplug and left[i] > EPS
            }
            for i, (_p, e) in draws.items():
                left[i] -= e
            meter.record(k, draws)
        return meter.result(policy)
    planner = _smart_foresight if policy == "smart" and scenario.foresight else PLANNERS[policy]
    if policy == "smart" and not scenario.foresight and scenario.last_peaks_kw:
        hint = peak_hint(scenario.last_peaks_kw)
        planner = functools.partial(_smart, peak_hint_kw=hint)
    return _Receding(scenario, visits, meter, planner).run(policy)


class _Receding:
    """A planner re-run over a moving horizon, its first quarter applied through allocate()."""

    def __init__(
        self, scenario: Scenario, visits: Sequence[Visit], meter: Meter, planner: Planner
    ) -> None:
        self.sc, self.visits, self.meter, self.planner = scenario, visits, meter, planner
        self.left = [v.request.energy_kwh for v in visits]
        self.rows: Mapping[str, Sequence[float]] = {}
        self.plan_start = scenario.start
        self.planned_at: datetime | None = None
        self.plans = 0
        self.known: set[int] = set()
        self.credit = [0.0] * len(visits)  # kWh the plan gave it minus kWh it got, since planned
        self.targets: dict[int, float] = {}  # kW for this quarter
        self.due: set[int] = set()
        self.peak = 0.0  # the site peak the plan pays for: the period's so far or its own
        self._cache: tuple[Any, dict[int, float]] | None = None

    def run(self, policy: str) -> PolicyResult:
        sc, meter = self.sc, self.meter
        plugged = [i for i, v in enumerate(self.visits) if v.charger and v.plug < v.unplug]
        for k in range(sc.steps):
            t = sc.start + k * sc.step
            if k % meter.per_quarter == 0:
                self._quarter(t, plugged)
            draws = {}
            for i, p in self._powers(t).items():
                e = min(p * meter.dt, self.left[i])
                self.left[i] -= e
                self.credit[i] -= e
                draws[i] = (p, e)
            meter.record(k, draws)
        return meter.result(policy, self.plans)

    def _quarter(self, t: datetime, plugged: list[int]) -> None:
        """At a quarter hour: learn arrivals, judge the last quarter, re-plan if needed."""
        hours = QUARTER / timedelta(hours=1)
        visits = self.visits
        behind = any(c > DEVIATION_KWH for c in self.credit)
        new = {i for i in plugged if self.sc.foresight or visits[i].plug <= t} - self.known
        self.known |= new
        active = [i for i in sorted(self.known) if visits[i].unplug > t and self.left[i] > EPS]
        stale = self.planned_at is None or t - self.planned_at >= REPLAN_EVERY
        if not active:
            self.rows, self.planned_at = {}, None
        elif new or behind or stale:
            self._plan(t, active)
        q = (t - self.plan_start) // QUARTER
        planned = {
            i: row[q]
            for i in active
            if (row := self.rows.get(str(i))) is not None and q < len(row) and visits[i].plug <= t
        }
        floor = {}
        for i, kw in planned.items():
            self.credit[i] += kw * hours
            v = visits[i]
            later = ((v.unplug - t) / timedelta(hours=1) - hours) * v.max_kw
            floor[i] = max(0.0, (self.left[i] - later) / hours)
        self.due = {i for i, kw in floor.items() if kw > 0}
        self.targets = take_turns(
            planned,
            # A car that needs less than a quarter at its minimum draws it and stops.
            {i: (visits[i].min_kw, min(visits[i].max_kw, self.left[i] / hours)) for i in planned},
            {i: self.credit[i] for i in planned},
            floor,
            Room(self.meter),
            # Above the plan's total only up to a peak paid anyway (any, without a demand charge).
            math.inf if self.sc.demand_charge <= 0 else self.peak - sum(planned.values()),
        )

    def _plan(self, t: datetime, active: list[int]) -> None:
        sc, horizon = self.sc, t + self.sc.horizon
        # Whole visits only, the plan reaching to the last departure among them: a horizon that
        # cut a night in two would plan a peak at its end, and a peak once planned is free to
        # fill, so the LP would charge early and pay for it.
        needs = [
            VehicleNeed(
                id=str(i),
                charger=v.charger.id,
                arrival=v.plug,
                departure=v.unplug,
                energy_kwh=self.left[i],
                max_kw=v.max_kw,
                min_kw=v.min_kw,
            )
            for i in active
            if (v := self.visits[i]).charger is not None and v.plug < horizon
        ]
        end = min(max([horizon, *(n.departure for n in needs)]), sc.end)
        q0, slots = (t - sc.start) // QUARTER, -((t - end) // QUARTER)
        problem = PlanProblem(
            start=t,
            slots=slots,
            site=sc.site,
            import_price=sc.quarter_prices[q0 : q0 + slots],
            vehicles=needs,
            demand_charge=sc.demand_charge,
            peak_so_far_kw=self.meter.peak_so_far,
        )
        self.rows, self.plan_start, self.planned_at = self.planner(problem), t, t
        totals = [sum(kw) for kw in zip(*self.rows.values(), strict=True)]
        self.peak = max([self.meter.peak_so_far, *totals])
        self.credit = [0.0] * len(self.visits)  # the new plan starts from what is left
        self.plans += 1

    def _powers(self, t: datetime) -> dict[int, float]:
        """kW per charging vehicle in the step at `t`: the quarter's targets through allocate()."""
        targets = {
            i: kw
            for i, kw in self.targets.items()
            if self.left[i] > EPS and self.visits[i].unplug > t
        }
        key = (tuple(sorted(targets.items())), frozenset(self.due))
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        by_charger, demands = {}, []
        for i, kw in targets.items():
            v = self.visits[i]
            assert v.charger is not None
            by_charger[v.charger.id] = i
            # Cars that cannot wait come first where a limit binds (take_turns moved power).
            due = int(i in self.due)
            demands.append(SessionDemand(v.charger.id, max_kw=v.max_kw, target_kw=kw, priority=due))
        root = {self.sc.site.root.id: (0.0, 0.0, 0.0)}
        # Exact currents: the 0.1 A a charger is told in is a 0.3 % effect that would only blur
        # the comparison with the plan (and leave cars planned at their maximum short).
        allocations = allocate(self.sc.site, demands, root, hysteresis_a=0.0, resolution_a=0.0)
        powers = {by_charger[a.charger]: a.power_kw for a in allocations if a.power_kw > 0}
        self._cache = (key, powers)
        return powers


# --- the bound ------------------------------------------------------------------------------
def offline_optimum(
    scenario: Scenario, visits: Sequence[Visit] | None = None, *, time_limit: float = 120.0
) -> PolicyResult:
    """One LP over the whole period, every session known from the start, its plan replayed as
    drawn (no allocator rounding, no AC minimum): the bound an online planner can approach."""
    visits = assign(scenario) if visits is None else visits
    quarters = len(scenario.quarter_prices)
    needs = [
        VehicleNeed(
            id=str(i),
            charger=v.charger.id,
            arrival=v.plug,
            departure=v.unplug,
            energy_kwh=v.request.energy_kwh,
            max_kw=v.max_kw,
        )
        for i, v in enumerate(visits)
        if v.charger is not None and v.plug < v.unplug
    ]
    problem = PlanProblem(
        start=scenario.start,
        slots=quarters,
        site=scenario.site,
        import_price=scenario.quarter_prices,
        vehicles=needs,
        demand_charge=scenario.demand_charge,
    )
    result = plan(problem, time_limit=time_limit)
    meter = Meter(scenario, visits)
    left = [v.request.energy_kwh for v in visits]
    for k in range(scenario.steps):
        t = scenario.start + k * scenario.step
        q = (t - scenario.start) // QUARTER
        draws = {}
        for need in needs:
            i, p = int(need.id), result.power_kw[need.id][q]
            if p > EPS and left[i] > EPS:
                draws[i] = (p, min(p * meter.dt, left[i]))
                left[i] -= draws[i][1]
        meter.record(k, draws)
    return meter.result("offline", 1)


def site_limit_kw(site: Site) -> float | None:
    """The grid connection's rating in kW (the lower of its kW and its amps), if it has one."""
    root, limits = site.root, []
    if root.max_power_kw is not None:
        limits.append(root.max_power_kw)
    amps = [a for a in root.max_current[: site.phases] if a is not None]
    if len(amps) == site.phases:
        limits.append(sum(amps) * site.voltage / 1000)
    return min(limits, default=None)
