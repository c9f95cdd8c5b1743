"""The online hedge: a second pass over the plan's LP that holds its peak and moves energy
earlier, the cars that leave first going first, within an energy-cost budget.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import highspy

from plugins.smart_charging.optimizer import Plan, Prepared, _extract, _Layout, _run

HEDGE_WEIGHTS = (1.0, 1 / 16)  # of the premium; each try is a warm-started re-solve
# A car's premium per slot of delay is the hedge's x (a day / the slots it has left), within
# these: the cars that leave first go first within the peak (earliest deadline first), and those
# staying longer may wait for cheaper hours.
URGENCY = (0.25, 8.0)


@dataclass(frozen=True)
class Hedge:
    """A second pass over the same LP: the first pass's peak held, energy moved earlier by a
    premium of `premium` per kWh and slot of delay for a car with `day_slots` slots left (more
    for one leaving sooner, less for one staying longer: URGENCY), so long as the energy cost
    rises by at most `budget_share` x demand charge x peak (a sixteenth of the premium when the
    whole would cost more, else none: a dear hour now is not worth the room a later car might
    need)."""

    premium: float
    budget_share: float
    day_slots: float = 96.0


def hedged(prep: Prepared, layout: _Layout, highs: highspy.Highs, first: Plan, h: Hedge) -> Plan:
    """Re-solve from the first pass's basis (a warm start: costs and one bound change only)."""
    peak_col = layout.lp.num_col_ - 1
    highs.changeColBounds(peak_col, first.peak_kw, first.peak_kw + 1e-6)
    # From the first pass's optimal basis a few dozen simplex iterations do; presolve would
    # throw that basis away and cost as much as the first solve.
    highs.setOptionValue("presolve", "off")
    budget = h.budget_share * prep.problem.demand_charge * first.peak_kw
    # Within a held peak the order matters, not only the volume: with one premium for all, the
    # LP may fill the peak with cars that stay till evening and leave those going at noon for
    # when the late arrivals need the room (measured: 2.9-7.8 % above the optimum with the
    # optimum's own peak held, 0.3-1.7 % with the premium by urgency).
    low, high = URGENCY
    cols: list[int] = []
    slope: list[float] = []
    for v, c in enumerate(layout.col0):
        a, d = prep.first[v], prep.last[v]
        if d > a:
            u = min(high, max(low, h.day_slots / (d - a)))
            cols.extend(range(c, c + d - a))
            slope.extend(u * t for t in range(a, d))
    base = layout.lp.col_cost_  # the first pass's: tie-breaks only, on these columns
    base = [base[i] for i in cols]
    for weight in HEDGE_WEIGHTS:
        k = weight * h.premium * prep.dt
        highs.changeColsCost(len(cols), cols, [b + k * s for b, s in zip(base, slope, strict=True)])
        solved = _run(highs)
        if isinstance(solved, str):
            return first
        second = _extract(prep, layout, *solved)
        if second.energy_cost <= first.energy_cost + budget:
            return replace(second, solve_seconds=first.solve_seconds + second.solve_seconds)
    return first
