"""The site under load in a what-if simulation: what each node carries and what it costs
(`Meter`), what it has left (`Room`), and a plan's quarter made into targets cars can take.

Pure and hub-independent, like `whatif.py`, which runs the policies on top of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from hub.charging.site import ChargerNode

if TYPE_CHECKING:
    from plugins.smart_charging.whatif import Scenario, Visit

QUARTER = timedelta(minutes=15)
READY_KWH = 0.1  # a vehicle this close to its goal is ready: rounding, not a shortfall
EPS = 1e-9
_QUARTER_H = QUARTER / timedelta(hours=1)


# --- metrics --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Overload:
    """One step x node x limit over its rating."""

    node: str
    phase: str  # "L1".."L3" for an amp rating, "kW" for a power rating
    time: datetime
    load: float
    limit: float

    @property
    def unit(self) -> str:
        return "kW" if self.phase == "kW" else "A"

    @property
    def over_pct(self) -> float:
        return 100 * (self.load / self.limit - 1)


@dataclass(frozen=True, kw_only=True)
class PolicyResult:
    """What one policy did to the site and what it cost."""

    policy: str
    foresight: bool
    start: datetime
    step: timedelta
    peak_kw: Mapping[str, float]  # node id -> highest 15-minute average kW
    overloads: int
    worst: Overload | None
    energy_cost: float
    demand_charge: float
    energy_requested_kwh: float
    energy_delivered_kwh: float
    vehicles_ready: int
    vehicles_total: int
    not_ready: tuple[str, ...]
    no_charger: tuple[str, ...]  # sessions that never got a charger
    site_kw: tuple[float, ...]  # per step, energy / step
    plans: int = 0  # how many times the planner ran

    @property
    def total_cost(self) -> float:
        return self.energy_cost + self.demand_charge


class Meter:
    """Loads through each node per step, overloads, and what each vehicle got."""

    def __init__(self, scenario: Scenario, visits: Sequence[Visit]) -> None:
        site = scenario.site
        self.scenario, self.visits, self.volts = scenario, visits, site.voltage
        self.nodes = [n for n in site.walk() if not isinstance(n, ChargerNode)]
        index = {n.id: i for i, n in enumerate(self.nodes)}
        self.paths = [
            [index[n.id] for n in site.path_to(v.charger)[:-1]] if v.charger else [] for v in visits
        ]
        self.grid = [
            [p.index for p in v.charger.phase_rotation] if v.charger else [] for v in visits
        ]
        self.dt = scenario.step / timedelta(hours=1)
        self.kw = [[0.0] * scenario.steps for _ in self.nodes]  # energy-averaged
        self.delivered = [0.0] * len(visits)
        self.overloads = 0
        self.worst: Overload | None = None
        self.per_quarter = QUARTER // scenario.step
        self.peak_so_far = 0.0  # site, over the quarters completed

    def record(
        self,
        k: int,
        draws: Mapping[int, tuple[float, float]],
        moments: Sequence[Mapping[int, float]] | None = None,
    ) -> None:
        """Step k: visit index -> (kW drawn while charging, kWh delivered). Overloads are judged
        on the kW drawn or, where power changed within the step (the hub-based policies), on
        each of `moments` (visit index -> kW from an instant on): each node x limit counts once
        per step, at its worst moment."""
        for v, (_p, e) in draws.items():
            self.delivered[v] += e
            for n in self.paths[v]:
                self.kw[n][k] += e / self.dt
        if moments is None:
            moments = [{v: p for v, (p, _e) in draws.items()}]
        amps, kw = self._loads(moments[0]) if moments else self._loads({})
        for moment in moments[1:]:
            at_amps, at_kw = self._loads(moment)
            for n in range(len(self.nodes)):
                kw[n] = max(kw[n], at_kw[n])
                amps[n] = [max(a, b) for a, b in zip(amps[n], at_amps[n], strict=True)]
        t = self.scenario.start + k * self.scenario.step
        for n, node in enumerate(self.nodes):
            checks = [(f"L{g + 1}", amps[n][g], node.max_current[g]) for g in range(3)]
            for phase, load, limit in [*checks, ("kW", kw[n], node.max_power_kw)]:
                if limit is not None and load > limit * (1 + 1e-9) + 1e-6:
                    self.overloads += 1
                    over = Overload(node.id, phase, t, load, limit)
                    if self.worst is None or over.over_pct > self.worst.over_pct + 1e-9:
                        self.worst = over
        if (k + 1) % self.per_quarter == 0:
            self.peak_so_far = max(self.peak_so_far, self._quarter(0, k // self.per_quarter))

    def _loads(self, powers: Mapping[int, float]) -> tuple[list[list[float]], list[float]]:
        """Amps per grid phase and kW through each node for these draws (visit index -> kW)."""
        amps = [[0.0, 0.0, 0.0] for _ in self.nodes]
        kw = [0.0] * len(self.nodes)
        for v, p in powers.items():
            per_phase = p * 1000 / (len(self.grid[v]) * self.volts)
            for n in self.paths[v]:
                kw[n] += p
                for g in self.grid[v]:
                    amps[n][g] += per_phase
        return amps, kw

    def _quarter(self, n: int, q: int) -> float:
        row = self.kw[n][q * self.per_quarter : (q + 1) * self.per_quarter]
        return sum(row) / len(row)

    def result(self, policy: str, plans: int = 0) -> PolicyResult:
        sc = self.scenario
        quarters = sc.steps // self.per_quarter
        peaks = {
            node.id: max((self._quarter(n, q) for q in range(quarters)), default=0.0)
            for n, node in enumerate(self.nodes)
        }
        site = self.kw[0]
        requested = [v.request.energy_kwh for v in self.visits]
        ready = [
            got >= want - READY_KWH for got, want in zip(self.delivered, requested, strict=True)
        ]
        return PolicyResult(
            policy=policy,
            foresight=sc.foresight,
            start=sc.start,
            step=sc.step,
            peak_kw=peaks,
            overloads=self.overloads,
            worst=self.worst,
            energy_cost=sum(p * kw * self.dt for p, kw in zip(sc.step_prices, site, strict=True)),
            demand_charge=sc.demand_charge * peaks[self.nodes[0].id],
            energy_requested_kwh=sum(requested),
            energy_delivered_kwh=sum(self.delivered),
            vehicles_ready=sum(ready),
            vehicles_total=len(self.visits),
            not_ready=tuple(
                v.request.id for v, ok in zip(self.visits, ready, strict=True) if not ok
            ),
            no_charger=tuple(v.request.id for v in self.visits if v.charger is None),
            site_kw=tuple(site),
            plans=plans,
        )


class Room:
    """What each node of the tree has left for a set of targets: the limits allocate() enforces
    (amps per grid phase, kW), so that moving power between cars never makes it trim one."""

    def __init__(self, meter: Meter) -> None:
        self.m = meter
        self.amps = [[0.0, 0.0, 0.0] for _ in meter.nodes]
        self.kw = [0.0] * len(meter.nodes)

    def add(self, i: int, kw: float) -> None:
        per_phase = kw * 1000 / (len(self.m.grid[i]) * self.m.volts)
        for n in self.m.paths[i]:
            self.kw[n] += kw
            for g in self.m.grid[i]:
                self.amps[n][g] += per_phase

    def free(self, i: int) -> float:
        """kW vehicle i could add without a node on its path going over."""
        most, width = math.inf, len(self.m.grid[i]) * self.m.volts / 1000
        for n in self.m.paths[i]:
            node = self.m.nodes[n]
            if node.max_power_kw is not None:
                most = min(most, node.max_power_kw - self.kw[n])
            for g in self.m.grid[i]:
                if (amps := node.max_current[g]) is not None:
                    most = min(most, (amps - self.amps[n][g]) * width)
        return max(0.0, most)


def take_turns(
    planned: Mapping[int, float],
    ranges: Mapping[int, tuple[float, float]],
    owed: Mapping[int, float],
    floor: Mapping[int, float],
    room: Room,
    headroom: float = 0.0,
) -> dict[int, float]:
    """One quarter's targets (kW) from a plan that ignores minimums: nobody between 0 and its
    minimum, no node over, the plan's total kept. To give a car its minimum the total may grow
    by `headroom` (up to a peak paid anyway), and beyond it only for a car that would otherwise
    miss its goal.

    `ranges[i]` is (minimum, most it can use now), `owed[i]` the kWh the plans gave it and it
    has not had, `floor[i]` the kW it needs now to finish at full power afterwards (0: it can
    wait). Vehicles planned below their minimum take turns at it, those that cannot wait first,
    then the most owed; room for one more is made by others charging less, never below their
    minimum or floor; what is left goes to those charging, most urgent first."""
    targets: dict[int, float] = {}
    for i, kw in planned.items():
        if kw > EPS and kw >= min(ranges[i]) - 1e-9:
            targets[i] = kw
            room.add(i, max(kw, ranges[i][0]))  # allocate() raises a plan to the minimum
    budget = sum(planned.values()) - sum(targets.values())
    waiting = [i for i in planned if i not in targets and owed[i] > EPS]
    waiting.sort(key=lambda i: (-floor[i], -owed[i], i))
    for i in waiting:
        low = ranges[i][0]
        eat = min(low, ranges[i][1])  # it draws `low` until full: on average no more than that
        if budget + headroom >= eat - 1e-9 and room.free(i) >= low - 1e-9:
            targets[i] = low
            room.add(i, low)
            headroom -= max(0.0, eat - max(budget, 0.0))
            budget -= eat
            continue
        if floor[i] <= 0 and owed[i] < low / 8:
            continue  # not worth moving others for so little: it waits for a bigger share
        taken: dict[int, float] = {}
        for j in sorted(targets, key=lambda j: (floor[j], -targets[j], j)):
            short = max(eat - budget - headroom, low - room.free(i))
            if short <= 1e-9:
                break
            give = min(targets[j] - max(ranges[j][0], floor[j]), short)
            if give <= EPS:
                continue
            before = room.free(i)
            targets[j] -= give
            room.add(j, -give)
            if budget + headroom >= eat - 1e-9 and room.free(i) <= before + 1e-9:
                targets[j] += give  # not on its path: no help where it is short
                room.add(j, give)
                continue
            budget += give
            taken[j] = give
        # One that would miss its goal otherwise goes over the plan's total (never a limit):
        # the plans put a car's goal before any price, and so does this.
        must = floor[i] * _QUARTER_H > READY_KWH / 2
        if (budget + headroom < eat - 1e-9 and not must) or room.free(i) < low - 1e-9:
            for j, give in taken.items():
                targets[j] += give
                room.add(j, give)
                budget -= give
            continue
        targets[i] = low
        room.add(i, low)
        headroom -= max(0.0, eat - max(budget, 0.0))
        budget -= eat
    for i in sorted(targets, key=lambda i: (-floor[i], -owed[i], i)):
        more = min(budget, ranges[i][1] - targets[i], room.free(i))
        if more > EPS:
            targets[i] += more
            room.add(i, more)
            budget -= more
    return targets
