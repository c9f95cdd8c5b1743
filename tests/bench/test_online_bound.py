"""How much of the online gap any policy must pay: the fleet week against the same week with only
the vans that are back by a moment of the first evening (a smaller fleet looks the same till then).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from plugins.smart_charging import whatif
from tests.bench.cost_scenarios import week_on_tou_ev_4
from tests.bench.online_bound import lower_bound

pytestmark = pytest.mark.timeout(600)

BACK = 12  # vans back on the first evening when the two weeks part


def test_the_online_policy_is_no_better_than_the_bound_and_the_bound_is_small() -> None:
    full = week_on_tou_ev_4().scenario
    evening = sorted((s for s in full.sessions if s.id.endswith("day 0")), key=lambda s: s.arrival)
    until = evening[BACK].arrival
    vans = {s.id.split()[0] for s in evening[:BACK]}
    fewer = replace(full, sessions=[s for s in full.sessions if s.id.split()[0] in vans])
    cases = [(sc, whatif.assign(sc)) for sc in (full, fewer)]
    bound = lower_bound(cases, until)
    ratios = []
    for (sc, visits), optimum in zip(cases, bound.optima, strict=True):
        ratios.append(whatif.simulate(sc, "smart", visits).total_cost / optimum)
    print(
        f"\n== online bound: 24 vans vs the {BACK} back by {until:%H:%M} on the first evening, "
        f"{bound.tied} powers tied: no online policy is better than {bound.ratio - 1:+.2%} on "
        f"both; smart online: {ratios[0] - 1:+.2%} and {ratios[1] - 1:+.2%}"
    )
    assert bound.tied > 0
    # smart online is an online policy: the bound holds for it too (LP tolerance aside).
    assert max(ratios) >= bound.ratio - 1e-6
    # ...and it is far below the 3 % target: the gap measured there is not the price of not
    # knowing the future on this pair, it is the policy's.
    assert bound.ratio - 1 < 0.03
