"""The best any online policy can do: scenarios that look the same to the hub until a moment, and
the smallest ratio to their offline optima that one sequence of decisions can keep on all of them.

A policy that sees vehicles only when they arrive must act identically on two weeks whose arrivals
agree so far; an LP over both weeks at once, with their powers tied before that moment, finds the
least worst-case ratio any such policy (however clever) can reach on them: a lower bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from plugins.smart_charging.whatif import Scenario, Visit
from tests.bench.independent_lp import INF, build, run_lp

QUARTER = timedelta(minutes=15)


@dataclass(frozen=True)
class Bound:
    """No online policy is within `ratio` - 1 of the optimum on every one of the scenarios."""

    ratio: float  # the least worst case over the scenarios of cost / optimum
    optima: tuple[float, ...]  # each scenario's offline optimum (its LP objective)
    until: tuple[
        datetime, ...
    ]  # scenario i agrees with scenario 0 on every arrival before until[i - 1]
    tied: int  # (vehicle, quarter) powers tied between the scenarios


def lower_bound(
    cases: Sequence[tuple[Scenario, Sequence[Visit]]], until: datetime | Sequence[datetime]
) -> Bound:
    """The LP: each scenario's offline model side by side, one column eps, cost_i(x_i) <=
    (1 + eps) x optimum_i for each, p_0[v, t] = p_i[v, t] for every vehicle both know in every
    quarter before scenario i parts from scenario 0 (`until`: one moment for all, or one per
    scenario after the first; two that part from the first later than each other agree with each
    other too, through it); minimise eps. Every arrival before its moment must be the same session
    on the same charger in both (ValueError otherwise), so a policy cannot tell them apart."""
    untils = [until] * (len(cases) - 1) if isinstance(until, datetime) else list(until)
    if len(untils) != len(cases) - 1:
        raise ValueError("one moment per scenario after the first")
    starts = {sc.start for sc, _ in cases}
    if len(starts) != 1:
        raise ValueError("the scenarios must start in the same quarter")
    start = starts.pop()
    models = [build(sc, vis) for sc, vis in cases]
    optima = []
    for m in models:
        x, _ = run_lp(m.cost, [0.0] * len(m.cost), m.upper, m.rows, 300.0)
        optima.append(sum(c * v for c, v in zip(m.cost, x, strict=True)))

    def seen(vis: Sequence[Visit], until: datetime) -> dict[str, int]:
        return {v.request.id: i for i, v in enumerate(vis) if v.request.arrival < until}

    cost: list[float] = []
    upper: list[float] = []
    rows: list[tuple[list[int], list[float], float, float]] = []
    offsets = []
    for m in models:
        off = len(cost)
        offsets.append(off)
        cost += [0.0] * len(m.cost)
        upper += m.upper
        for cols, coefs, lo, hi in m.rows:
            rows.append(([c + off for c in cols], coefs, lo, hi))
    eps = len(cost)
    cost.append(1.0)
    upper.append(INF)
    for m, off, opt in zip(models, offsets, optima, strict=True):
        cols = [off + j for j, c in enumerate(m.cost) if c]
        coefs = [c for c in m.cost if c]
        rows.append(([*cols, eps], [*coefs, -opt], -INF, opt))
    tied = 0
    for (_sc, vis), m, off, moment in zip(cases[1:], models[1:], offsets[1:], untils, strict=True):
        first, mine = seen(cases[0][1], moment), seen(vis, moment)
        cut = -((start - moment) // QUARTER)  # quarters that begin before the moment
        if mine.keys() != first.keys() or any(
            vis[mine[k]].charger != cases[0][1][first[k]].charger for k in first
        ):
            raise ValueError(f"the scenarios do not agree on the arrivals before {moment}")
        for k, v0 in first.items():
            vi = mine[k]
            for t in range(cut):
                a, b = models[0].col_of.get((v0, t)), m.col_of.get((vi, t))
                if a is not None and b is not None:
                    rows.append(([a, off + b], [1.0, -1.0], 0.0, 0.0))
                    tied += 1
    x, _ = run_lp(cost, [0.0] * len(cost), upper, rows, 600.0)
    return Bound(1 + x[eps], tuple(optima), tuple(untils), tied)
