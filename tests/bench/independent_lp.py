"""The cost benchmark's yardstick: the offline optimum of a what-if scenario, as one LP on HiGHS.

Written here from the site tree and the sessions alone, sharing no code with optimizer.py.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import highspy

from hub.charging.site import ChargerNode, Node, Phase, Site
from plugins.smart_charging.allocator import AC_DEFAULT_MAX_A
from plugins.smart_charging.whatif import Scenario, Visit
from plugins.smart_charging.whatif_load import READY_KWH

QUARTER = timedelta(minutes=15)
DT = 0.25  # hours per quarter: what a utility meters demand over and what tariffs price
INF = highspy.kHighsInf


@dataclass(frozen=True, kw_only=True)
class Optimum:
    """The LP's solution, costed from its own columns."""

    total_cost: float
    energy_cost: float
    demand_charge: float
    peak_kw: float
    site_kw: tuple[float, ...]  # per quarter from scenario.start
    delivered_kwh: tuple[float, ...]  # per visit
    unmet_kwh: float
    reachable: frozenset[str]  # session ids it fills (within READY_KWH, as `evhub plan` counts)
    vehicles_total: int
    columns: int
    rows: int
    seconds: float


def quarter_prices(scenario: Scenario) -> list[float]:
    """Mean price of each quarter from the scenario's start: the integral of the series / 0.25 h."""
    n = (scenario.end - scenario.start) // QUARTER
    out = []
    for q in range(n):
        a = scenario.start + q * QUARTER
        parts = scenario.prices.slots_between(a, a + QUARTER)
        assert sum((s.duration for s in parts), timedelta(0)) == QUARTER, f"no price at {a}"
        out.append(scenario.prices.integral(a, a + QUARTER) / DT)
    return out


def charger_kw(site: Site, charger: ChargerNode) -> float:
    """What a charger can deliver: DC its kW; AC its amps on each of its phases, at most its kW."""
    kw = charger.max_power_kw if charger.max_power_kw is not None else math.inf
    if charger.dc:
        return kw
    # An AC charger with no rating of its own is still limited by the Type 2 connector.
    amps = charger.rated_current if charger.rated_current is not None else AC_DEFAULT_MAX_A
    return min(kw, amps * len(charger.phase_rotation) * site.voltage / 1000)


def _limits(node: Node) -> list[tuple[Phase | None, float]]:
    """Each rating of a node: amps on one grid phase, or (None) its kW."""
    out: list[tuple[Phase | None, float]] = [
        (phase, amps) for phase in Phase if (amps := node.max_current[phase.index]) is not None
    ]
    if node.max_power_kw is not None:
        out.append((None, node.max_power_kw))
    return out


@dataclass(eq=False)
class Model:
    """The offline LP of one scenario as columns and rows, before it is solved: online_bound.py
    stacks several of them into one LP."""

    cost: list[float]
    upper: list[float]
    rows: list[tuple[list[int], list[float], float, float]]  # (columns, coefs, low, high)
    col_of: dict[tuple[int, int], int]  # (visit, quarter) -> column
    windows: list[range]  # quarters each visit charges in
    unmet0: int  # column of visit 0's unmet kWh; the rest follow
    peak: int  # column of the peak kW
    prices: list[float]
    rate: float


def build(scenario: Scenario, visits: Sequence[Visit]) -> Model:
    """The offline optimum's LP: see `solve`."""
    site, volts = scenario.site, scenario.site.voltage
    prices = quarter_prices(scenario)
    n, rate = len(prices), scenario.demand_charge
    # Any kWh is worth less than this: its price plus the 4 kW of peak it could add in a quarter.
    penalty = 1000.0 * (max(map(abs, prices), default=0.0) + rate / DT + 1.0)
    cost: list[float] = []
    upper: list[float] = []
    col_of: dict[tuple[int, int], int] = {}
    windows: list[range] = []
    for v, visit in enumerate(visits):
        ch = visit.charger
        if ch is None:
            windows.append(range(0))
            continue
        a = -((scenario.start - visit.plug) // QUARTER)  # the first whole quarter it is plugged
        b = (visit.unplug - scenario.start) // QUARTER
        windows.append(range(max(a, 0), min(b, n)))
        top = min(visit.request.max_kw, charger_kw(site, ch))
        for t in windows[v]:
            col_of[v, t] = len(cost)
            cost.append(prices[t] * DT)
            upper.append(top)
    unmet0 = len(cost)
    for visit in visits:
        cost.append(penalty)
        upper.append(visit.request.energy_kwh)
    peak = len(cost)
    cost.append(rate)
    upper.append(INF if rate > 0 else 0.0)

    rows: list[tuple[list[int], list[float], float, float]] = []  # (columns, coefs, low, high)
    for v, visit in enumerate(visits):
        cols = [col_of[v, t] for t in windows[v]]
        e = visit.request.energy_kwh
        rows.append(([*cols, unmet0 + v], [DT] * len(cols) + [1.0], e, e))
    # Which vehicles each node carries, and on which grid phases and with what share.
    under: dict[str, list[tuple[int, dict[Phase, float]]]] = {}
    for v, visit in enumerate(visits):
        if visit.charger is None:
            continue
        grid = visit.charger.phase_rotation
        amps = {g: 1000 / (volts * len(grid)) for g in grid}  # A per kW on each grid phase
        for node in [visit.charger, *visit.charger.ancestors()]:
            under.setdefault(node.id, []).append((v, amps))
    for node in site.walk():
        for phase, rating in _limits(node):
            for t in range(n):
                cols, coefs = [], []
                for v, amps in under.get(node.id, ()):
                    if (v, t) not in col_of:
                        continue
                    share = 1.0 if phase is None else amps.get(phase, 0.0)
                    if share:
                        cols.append(col_of[v, t])
                        coefs.append(share)
                if cols:
                    rows.append((cols, coefs, -INF, rating))
    if rate > 0:
        for t in range(n):
            cols = [col_of[v, t] for v in range(len(visits)) if (v, t) in col_of]
            if cols:
                rows.append(([*cols, peak], [1.0] * len(cols) + [-1.0], -INF, 0.0))

    return Model(cost, upper, rows, col_of, windows, unmet0, peak, prices, rate)


def solve(scenario: Scenario, visits: Sequence[Visit], *, time_limit: float = 300.0) -> Optimum:
    """Minimise energy cost + demand charge x peak over every quarter, every session known.

    p[v,t] in [0, min(vehicle, charger)] in the whole quarters v is plugged in (from `visits`,
    so that both sides charge on the same chargers in the same windows); per vehicle
    sum_t p dt + unmet = energy, unmet penalised far above any price; per node, quarter and limit
    sum p x coefficient <= rating, where a charger on k grid phases draws p x 1000 / (V k) A on
    each of them; peak >= sum_v p[v,t]; minimise sum_t price dt sum_v p + rate x peak.
    """
    model = build(scenario, visits)
    cost, upper, rows = model.cost, model.upper, model.rows
    col_of, windows, unmet0 = model.col_of, model.windows, model.unmet0
    prices, rate, n = model.prices, model.rate, len(model.prices)

    x, seconds = run_lp(cost, [0.0] * len(cost), upper, rows, time_limit)

    site_kw = [0.0] * n
    delivered = []
    for v in range(len(visits)):
        got = 0.0
        for t in windows[v]:
            p = max(0.0, x[col_of[v, t]])
            site_kw[t] += p
            got += p * DT
        delivered.append(got)
    energy = sum(price * kw * DT for price, kw in zip(prices, site_kw, strict=True))
    top = max(site_kw, default=0.0)
    reachable = frozenset(
        visit.request.id
        for visit, got in zip(visits, delivered, strict=True)
        if got >= visit.request.energy_kwh - READY_KWH
    )
    return Optimum(
        total_cost=energy + rate * top,
        energy_cost=energy,
        demand_charge=rate * top,
        peak_kw=top,
        site_kw=tuple(site_kw),
        delivered_kwh=tuple(delivered),
        unmet_kwh=sum(max(0.0, x[unmet0 + v]) for v in range(len(visits))),
        reachable=reachable,
        vehicles_total=len(visits),
        columns=len(cost),
        rows=len(rows),
        seconds=seconds,
    )


def run_lp(
    cost: Sequence[float],
    lower: Sequence[float],
    upper: Sequence[float],
    rows: Sequence[tuple[list[int], list[float], float, float]],
    time_limit: float,
) -> tuple[list[float], float]:
    """Minimise cost . x on HiGHS; the solution and the seconds it took (optimal or it asserts)."""
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = len(cost), len(rows)
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = list(cost), list(lower), list(upper)
    lp.row_lower_ = [r[2] for r in rows]
    lp.row_upper_ = [r[3] for r in rows]
    matrix = lp.a_matrix_
    matrix.format_ = highspy.MatrixFormat.kRowwise
    matrix.num_col_, matrix.num_row_ = lp.num_col_, lp.num_row_
    starts, index, value = [0], [], []
    for cols, coefs, _, _ in rows:
        index.extend(cols)
        value.extend(coefs)
        starts.append(len(index))
    matrix.start_, matrix.index_, matrix.value_ = starts, index, value
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("time_limit", time_limit)
    t0 = time.perf_counter()
    highs.passModel(lp)
    highs.run()
    seconds = time.perf_counter() - t0
    status = highs.modelStatusToString(highs.getModelStatus())
    assert status == "Optimal", f"independent LP: HiGHS says {status}"
    return list(highs.getSolution().col_value), seconds
