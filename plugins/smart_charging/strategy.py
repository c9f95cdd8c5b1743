"""How the live planner and `evhub plan`'s smart policy turn the LP into a plan when the future is
unknown: the online hedge against vehicles not yet here, and the peak hint from the last period.

One function for both, so what a facility manager simulates is what the hub then does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

from plugins.smart_charging.hedge import Hedge
from plugins.smart_charging.optimizer import Plan, PlanProblem, plan

# Online, with a demand charge, a kWh delayed an hour costs demand_charge / HEDGE_HOURS: within
# the peak it pays anyway, energy goes as early as it can, since a quarter-hour's cheaper price
# is not worth the room a car not yet here may need (without it a period's peak crept up night
# after night as each evening's arrivals found the room taken).
HEDGE_HOURS = 24.0
# ...but only while that costs little: at most this share of what the peak costs in more energy
# cost per plan. Under time-of-use prices moving energy earlier within a night is nearly free and
# the hedge runs in full; under day-ahead prices it would buy the day's dearest hours (measured:
# 26 % above the offline optimum in full, 3.7 % so bounded, on the benchmark's day-ahead depot).
HEDGE_BUDGET = 0.005
# The share of the last billing period's peak planned as if paid (`peak_hint_factor`): below 1,
# so a hint no longer needed fades instead of keeping itself alive.
PEAK_HINT_FACTOR = 0.95
# ...of the lowest of the last few periods' peaks: a hint too high is paid in full at once, one too
# low only leaves part of the early room unused, so the estimate leans low. Measured on twelve
# synthetic workplace weeks in a row (optimum peaks 33-58 kW): 7.6 % above the optimum on average
# with the lowest of three, 17.4 % with the last alone, 11.4 % with no hint; a steady depot
# fleet: 1.1-1.2 % either way (5.1 % with no hint).
RECENT_PERIODS = 3


def peak_hint(recent_peaks_kw: Sequence[float], factor: float = PEAK_HINT_FACTOR) -> float:
    """The peak planned as if paid, from the last billing periods' peaks (oldest first)."""
    recent = [kw for kw in recent_peaks_kw[-RECENT_PERIODS:] if kw > 0]
    return factor * min(recent) if recent else 0.0


def plan_smart(
    problem: PlanProblem,
    *,
    online: bool = True,
    peak_hint_kw: float = 0.0,
    time_limit: float = 5.0,
) -> Plan:
    """The plan the hub follows.

    `peak_hint_kw`: a peak the period is expected to reach anyway (the last period's, scaled by
    the caller), planned as if already paid, so that early arrivals charge at the level the whole
    fleet will need instead of the lowest level the cars known so far need. Foresight (`online`
    False) knows every vehicle: one LP, no hedge.
    """
    real = problem
    if peak_hint_kw > problem.peak_so_far_kw:
        problem = replace(problem, peak_so_far_kw=peak_hint_kw)
    hedge = None
    if online:
        premium = problem.demand_charge / HEDGE_HOURS * (problem.slot / timedelta(hours=1))
        day = timedelta(hours=HEDGE_HOURS) / problem.slot
        hedge = Hedge(premium=premium, budget_share=HEDGE_BUDGET, day_slots=day)
    return _priced(plan(problem, time_limit=time_limit, hedge=hedge), real)


def _priced(result: Plan, problem: PlanProblem) -> Plan:
    """The plan's cost at the real prices and the period's real peak (not a hint's, nor the
    hedge's premium): what the site will pay if it follows the plan."""
    hours = problem.slot / timedelta(hours=1)
    export = problem.export_price or [0.0] * problem.slots
    energy = sum(
        (price * max(kw, 0.0) - sold * max(-kw, 0.0)) * hours
        for price, sold, kw in zip(problem.import_price, export, result.site_kw, strict=True)
    )
    peak = max([problem.peak_so_far_kw, *result.site_kw])
    demand = problem.demand_charge * max(0.0, peak - problem.peak_so_far_kw)
    penalty = result.objective - result.energy_cost - result.demand_charge
    return replace(
        result,
        energy_cost=energy,
        demand_charge=demand,
        peak_kw=peak,
        objective=energy + demand + penalty,
    )
