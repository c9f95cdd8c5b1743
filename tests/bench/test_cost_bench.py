"""What the hub's smart charging costs on real fleets and tariffs, against an offline LP optimum
solved independently here (independent_lp.py), uncontrolled, least laxity first and greedy.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import pytest

from hub.charging.site import Site
from plugins.smart_charging import whatif
from plugins.smart_charging.whatif_load import PolicyResult
from tests.bench import independent_lp
from tests.bench.cost_scenarios import SCENARIOS, CostScenario

pytestmark = pytest.mark.timeout(600)  # tests/bench is outside testpaths: `make test` skips it

# The targets (issue 4, point 8), as fractions above the optimum's total cost.
FORESIGHT_TARGET = 0.005
ONLINE_TARGET = 0.03
AGREEMENT = 1e-6  # relative: the independent LP against whatif.offline_optimum
# A car the LP plans below its AC minimum charges in whole quarters at that minimum
# (whatif_load.take_turns), so it can end up to about one such quarter short of its goal: the
# what-if week test allows 4 of its 168 cars that (2.4 %), a few tenths of a kWh each.
MISSES_SHARE = 0.025
POLICIES = ("uncontrolled", "llf", "greedy", "smart", "foresight")
WITHIN_LIMITS = ("llf", "greedy", "smart", "foresight")  # all go through allocate()
MEET_GOALS = ("llf", "smart", "foresight")  # the hub's plans (llf: its fallback); greedy: shown


@dataclass(repr=False)  # pytest prints a failing test's arguments: the name is enough
class Outcome:
    case: CostScenario
    results: dict[str, PolicyResult]
    seconds: dict[str, float]
    optimum: independent_lp.Optimum
    offline: PolicyResult  # whatif.offline_optimum: the optimizer's LP over the whole period

    def __repr__(self) -> str:
        return f"<Outcome {self.name}>"

    @property
    def name(self) -> str:
        return self.case.name

    def gap(self, policy: str) -> float:
        return self.results[policy].total_cost / self.optimum.total_cost - 1

    def agreement(self) -> float:
        return abs(self.offline.total_cost / self.optimum.total_cost - 1)

    def misses(self, policy: str) -> list[str]:
        """Goals the optimum meets and the policy does not."""
        return [i for i in self.results[policy].not_ready if i in self.optimum.reachable]

    def excess_shortfall_kwh(self, policy: str) -> float:
        r = self.results[policy]
        # Clamped: both sides fill a goal exactly, and their float sums differ in the last bits.
        return max(0.0, r.energy_requested_kwh - r.energy_delivered_kwh - self.optimum.unmet_kwh)


def quarter_at_minimum_kwh(site: Site) -> float:
    """The most energy one quarter hour at an AC charger's minimum current is."""
    kw = [
        c.min_current * len(c.phase_rotation) * site.voltage / 1000
        for c in site.chargers()
        if not c.dc
    ]
    return max(kw, default=0.0) * 0.25


def run(case: CostScenario) -> Outcome:
    sc = case.scenario
    visits = whatif.assign(sc)  # one assignment: every policy and both LPs see the same windows
    results, seconds = {}, {}
    for policy in POLICIES:
        t0 = time.perf_counter()
        if policy == "foresight":
            results[policy] = whatif.simulate(replace(sc, foresight=True), "smart", visits)
        else:
            results[policy] = whatif.simulate(sc, policy, visits)
        seconds[policy] = time.perf_counter() - t0
    optimum = independent_lp.solve(sc, visits)
    t0 = time.perf_counter()
    offline = whatif.offline_optimum(sc, visits)
    seconds["offline"] = time.perf_counter() - t0
    return Outcome(case, results, seconds, optimum, offline)


def goals(out: Outcome) -> tuple[str, list[str]]:
    """A line on the goals the optimum meets and each policy misses, and the policies that miss
    more than AC-minimum rounding explains."""
    reachable = len(out.optimum.reachable)
    allowed = math.floor(MISSES_SHARE * reachable)
    quarter = quarter_at_minimum_kwh(out.case.scenario.site)
    failed = []
    for policy in MEET_GOALS:
        missed, short = out.misses(policy), out.excess_shortfall_kwh(policy)
        if len(missed) > allowed or short > max(1, len(missed)) * quarter:
            failed.append(f"{policy}: {len(missed)} missed {missed[:5]}, {short:.2f} kWh short")
    each = ", ".join(
        f"{p} {len(out.misses(p))} ({out.excess_shortfall_kwh(p):.2f} kWh)"
        for p in (*MEET_GOALS, "greedy")
    )
    line = (
        f"goals: the optimum meets {reachable} of {out.optimum.vehicles_total}; missed of those: "
        f"{each}; allowed {allowed}, each up to {quarter:.3f} kWh (a quarter at the AC minimum)"
    )
    return line, failed


def report(out: Outcome) -> str:
    sc, opt, cur = out.case.scenario, out.optimum, out.case.currency
    root = sc.site.root.id
    lines = [
        f"\n== {out.name}: {out.case.title}",
        f"independent LP: {opt.columns:,} columns x {opt.rows:,} rows, solved in "
        f"{opt.seconds:.2f} s: {opt.total_cost:.4f} {cur}; whatif.offline_optimum "
        f"{out.offline.total_cost:.4f} {cur} in {out.seconds['offline']:.2f} s (relative "
        f"difference {out.agreement():.1e})",
        f"{'policy':<13} {'total':>9} {'energy':>8} {'demand':>8} {'peak kW':>8} "
        f"{'overloads':>9} {'ready':>9} {'x optimum':>9} {'plans':>5} {'run s':>6}",
    ]
    for policy in POLICIES:
        r = out.results[policy]
        lines.append(
            f"{policy:<13} {r.total_cost:>9.2f} {r.energy_cost:>8.2f} {r.demand_charge:>8.2f} "
            f"{r.peak_kw[root]:>8.1f} {r.overloads:>9} "
            f"{f'{r.vehicles_ready}/{r.vehicles_total}':>9} {1 + out.gap(policy):>9.4f} "
            f"{r.plans:>5} {out.seconds[policy]:>6.1f}"
        )
    ready = f"{len(opt.reachable)}/{opt.vehicles_total}"
    lines.append(
        f"{'optimum (LP)':<13} {opt.total_cost:>9.2f} {opt.energy_cost:>8.2f} "
        f"{opt.demand_charge:>8.2f} {opt.peak_kw:>8.1f} {'-':>9} {ready:>9} {1:>9.4f}"
    )
    verdicts = [
        f"foresight {out.gap('foresight'):+.2%} (target <= {FORESIGHT_TARGET:.1%}) "
        + ("ok" if out.gap("foresight") <= FORESIGHT_TARGET else "MISSED"),
        f"online {out.gap('smart'):+.2%} (target <= {ONLINE_TARGET:.0%}) "
        + ("ok" if out.gap("smart") <= ONLINE_TARGET else "MISSED"),
    ]
    lines.append(goals(out)[0])
    lines.append(f"{cur}; targets: " + "; ".join(verdicts))
    return "\n".join(lines)


@pytest.fixture(scope="module", params=list(SCENARIOS))
def outcome(request: pytest.FixtureRequest) -> Outcome:
    out = run(SCENARIOS[request.param]())
    print(report(out))
    return out


def test_the_independent_lp_agrees_with_the_planners_offline_optimum(outcome: Outcome) -> None:
    assert outcome.agreement() <= AGREEMENT, (
        f"{outcome.name}: independent LP {outcome.optimum.total_cost:.6f}, "
        f"whatif.offline_optimum {outcome.offline.total_cost:.6f}"
    )
    assert outcome.offline.overloads == 0


def test_no_limit_is_exceeded_on_any_phase(outcome: Outcome) -> None:
    over = {p: r.overloads for p in WITHIN_LIMITS if (r := outcome.results[p]).overloads}
    worst = {p: outcome.results[p].worst for p in over}
    assert not over, f"{outcome.name}: step x node x limit over its rating: {over}; worst {worst}"


def test_every_reachable_goal_is_met(outcome: Outcome) -> None:
    _, failed = goals(outcome)
    assert not failed, f"{outcome.name}: " + "; ".join(failed)


def test_with_foresight_within_half_a_percent_of_the_optimum(outcome: Outcome) -> None:
    gap = outcome.gap("foresight")
    assert gap <= FORESIGHT_TARGET, (
        f"{outcome.name}: smart with foresight costs {gap:.2%} above the independent optimum "
        f"({outcome.results['foresight'].total_cost:.2f} against "
        f"{outcome.optimum.total_cost:.2f}); target {FORESIGHT_TARGET:.1%}"
    )


def test_online_within_3_percent_of_the_optimum(outcome: Outcome) -> None:
    gap = outcome.gap("smart")
    assert gap <= ONLINE_TARGET, (
        f"{outcome.name}: smart online costs {gap:.2%} above the independent optimum "
        f"({outcome.results['smart'].total_cost:.2f} against "
        f"{outcome.optimum.total_cost:.2f}); target {ONLINE_TARGET:.0%}"
    )
