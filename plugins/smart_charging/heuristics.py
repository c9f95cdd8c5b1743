"""Least laxity first: the plan `optimizer.plan()` falls back to when HiGHS fails or runs late.

Deterministic, solver-free, same limits and same `Plan` as the LP: charging never stops because
a solver did. It charges as soon as it can, so it costs more than the LP, never less.

Slot by slot, the vehicles plugged in are served by priority, then by laxity (the hours left in
their window minus the hours they still need at their ceiling): each gets as much as its ceiling,
its remaining energy and every limit above it (node kW and per-phase rows, caps, the site's
headroom over the base load) still allow, and what it takes is subtracted from those limits
before the next vehicle. Equal laxity goes to the vehicle whose remaining window is pricier on
average (waiting saves it least), then to the lower id. An AC vehicle offered less than its
`min_kw` (and needing more) gets nothing in that slot: the room stays with those that can use it.
"""

from __future__ import annotations

import itertools

from plugins.smart_charging.optimizer import Plan, PlanProblem, Prepared, make_plan, prepare

_TOL = 1e-9


def least_laxity_first(problem: PlanProblem, *, detail: str = "") -> Plan:
    """The heuristic plan for `problem` (status "heuristic")."""
    return from_prepared(prepare(problem), detail=detail)


def from_prepared(prep: Prepared, *, detail: str = "") -> Plan:
    """The same, from the problem `optimizer.prepare()` already resolved onto the site tree."""
    pb, dt, n = prep.problem, prep.dt, prep.problem.slots
    nv = len(pb.vehicles)
    remaining = list(prep.need)
    power = [[0.0] * n for _ in range(nv)]
    held: list[dict[int, list[int]]] = [{} for _ in range(nv)]  # block -> slots it held v back
    prices = [0.0, *itertools.accumulate(prep.price)]
    ids = [v.id for v in pb.vehicles]
    min_kw = [v.min_kw for v in pb.vehicles]

    def order(v: int, t: int) -> tuple[float, float, float, str]:
        slack = (prep.last[v] - t) * dt - remaining[v] / prep.ub[v]
        later = prep.last[v] - t - 1
        future = (prices[prep.last[v]] - prices[t + 1]) / later if later else prep.price[t]
        return (-pb.vehicles[v].priority, round(slack, 9), -future, ids[v])

    for t in range(n):
        room = [blk.headroom[t] for blk in prep.blocks]
        plugged = [
            v
            for v in range(nv)
            if prep.first[v] <= t < prep.last[v] and remaining[v] > _TOL and prep.ub[v] > 0
        ]
        for v in sorted(plugged, key=lambda v: order(v, t)):
            want = min(prep.ub[v], remaining[v] / dt)
            fits = max(0.0, min([want] + [room[b] / share for b, share in prep.terms[v]]))
            if fits < want - 1e-6:  # held back by every limit with no more room than that
                for b, share in prep.terms[v]:
                    if room[b] / share <= fits + 1e-6:
                        held[v].setdefault(b, []).append(t)
            # Below its AC minimum a vehicle would only pause: leave that room to the others.
            give = 0.0 if fits < min(min_kw[v], want) else fits
            if give <= _TOL:
                continue
            for b, share in prep.terms[v]:
                room[b] -= give * share
            power[v][t] = give
            remaining[v] -= give * dt
    return make_plan(prep, power, "heuristic", held.__getitem__, detail)
