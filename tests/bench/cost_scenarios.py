"""Scenarios for the cost benchmark: real fleets' sessions on real tariffs, as `evhub plan` takes
them: the what-if tests' week and depot_days.py's depot days, on SCE and Nord Pool prices.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

import pytest

from hub.charging.signals import Slot, TimeSeries
from plugins.smart_charging.optimizer import SLOT, PlanProblem
from plugins.smart_charging.whatif import Scenario, SessionRequest
from plugins.tariffs.acnportal import rules_from_acnportal
from plugins.tariffs.tou import TouRules, expand
from tests.bench.depot_days import DATA, depot_day, quarter_hour_prices
from tests.smart_charging.test_whatif import LA, depot, fleet_week

ACNPORTAL = DATA / "tariffs" / "acnportal"
MARGIN = timedelta(hours=1)  # prices a little beyond the sessions: the period is quarter-aligned


@dataclass(frozen=True)
class CostScenario:
    """A scenario with what the report says about it."""

    name: str
    title: str
    currency: str
    scenario: Scenario


def _tariff(file: str) -> TouRules:
    path = ACNPORTAL / file
    if not path.is_file():
        pytest.skip(f"reference data missing: {path} (the benchmark reads ../shared/data)")
    return TouRules.from_config(rules_from_acnportal(json.loads(path.read_text())))


def _tou_prices(rules: TouRules, sessions: list[SessionRequest], zone: tzinfo) -> TimeSeries:
    start = min(s.arrival for s in sessions) - MARGIN
    end = max(s.departure for s in sessions) + MARGIN
    return expand(rules, start, end, zone, step=SLOT)


def _sessions(problem: PlanProblem, zone: tzinfo | None = None) -> list[SessionRequest]:
    """A depot day's vehicles as sessions on their own bays; `zone`: the same wall-clock times
    there (a US tariff is read in its utility's zone, so the fleet's evening meets its evening)."""

    def local(t: datetime) -> datetime:
        return t if zone is None else t.replace(tzinfo=zone)

    return [
        SessionRequest(
            id=v.id,
            arrival=local(v.arrival),
            departure=local(v.departure),
            energy_kwh=v.energy_kwh,
            max_kw=v.max_kw,
            charger=v.charger,
        )
        for v in problem.vehicles
    ]


def _energy(sessions: list[SessionRequest]) -> float:
    return sum(s.energy_kwh for s in sessions)


def week_on_tou_ev_4() -> CostScenario:
    """The 24-van week of the what-if tests, on SCE TOU-EV-4 (March 2019) and its demand charge."""
    rules = _tariff("sce_tou_ev_4_march_2019.json")
    sessions = fleet_week(24)
    # 15.51 $/kW charged once on the week's peak, as the what-if test and `--demand-charge` do.
    rate = max(c.rate for c in rules.demand_charges)
    sc = Scenario(
        site=depot(24),
        sessions=sessions,
        prices=_tou_prices(rules, sessions, LA),
        demand_charge=rate,
    )
    title = (
        f"24 vans x 7 nights ({len(sessions)} sessions, {_energy(sessions):,.0f} kWh), depot of "
        f"24 x 22 kW on a 160 kW grid; SCE TOU-EV-4 (winter), {rate:g} $/kW on the week's peak"
    )
    return CostScenario("week_tou_ev_4", title, "$", sc)


def depot_day_on_tou_ev_8(vehicles: int = 50, grid_share: float = 0.25) -> CostScenario:
    """A depot day on SCE TOU-EV-8 (June 2019 file; its winter rates in November): no demand charge.

    The grid is sized at a quarter of the chargers' sum: without a demand charge only the limits
    keep every car from the same cheap quarters, so they must bind for the comparison to mean
    anything (depot_days' default 60 % never binds at 50 vehicles).
    """
    rules = _tariff("sce_tou_ev_8_june_2019.json")
    problem = depot_day(vehicles, grid_share=grid_share)
    sessions = _sessions(problem, LA)
    rate = max((c.rate for c in rules.demand_charges), default=0.0)
    sc = Scenario(
        site=problem.site,
        sessions=sessions,
        prices=_tou_prices(rules, sessions, LA),
        demand_charge=rate,
    )
    grid = problem.site.root.max_power_kw or 0.0
    title = (
        f"depot day, {vehicles} vehicles ({_energy(sessions):,.0f} kWh; golfs stay to Thursday), "
        f"grid {grid:.0f} kW ({grid_share:.0%} of the chargers); SCE TOU-EV-8 (winter), "
        "no demand charge"
    )
    return CostScenario(f"depot{vehicles}_tou_ev_8", title, "$", sc)


def depot_day_on_dayahead(vehicles: int = 100) -> CostScenario:
    """A depot day on Nord Pool SE3 day-ahead prices with the planning bench's demand charge."""
    problem = depot_day(vehicles)
    sessions = _sessions(problem)
    last = max(s.departure for s in sessions) + MARGIN
    slots = -((problem.start - last) // SLOT)
    # One day of prices: the helper repeats it for the second night (a typical day).
    prices = quarter_hour_prices(problem.start, slots)
    series = TimeSeries(
        Slot(problem.start + i * SLOT, problem.start + (i + 1) * SLOT, p)
        for i, p in enumerate(prices)
    )
    sc = Scenario(
        site=problem.site, sessions=sessions, prices=series, demand_charge=problem.demand_charge
    )
    grid = problem.site.root.max_power_kw or 0.0
    title = (
        f"depot day, {vehicles} vehicles ({_energy(sessions):,.0f} kWh; golfs stay to Thursday), "
        f"grid {grid:.0f} kW; Nord Pool SE3 day-ahead 2024-11-05 (SEK/kWh), "
        f"{problem.demand_charge:g} per kW on the period's peak (the planning bench's rate)"
    )
    return CostScenario(f"depot{vehicles}_dayahead", title, "SEK", sc)


SCENARIOS: dict[str, Callable[[], CostScenario]] = {
    "week_tou_ev_4": week_on_tou_ev_4,
    "depot50_tou_ev_8": depot_day_on_tou_ev_8,
    "depot100_dayahead": depot_day_on_dayahead,
}
