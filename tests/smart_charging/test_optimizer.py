"""The optimizer: given a site, prices and vehicles, the plan charges cheaply within every limit.

Each limit is checked here independently of the optimizer's own bookkeeping: node kW, per-phase
amps (with the base load at the site root), caps, each vehicle's maximum and plugged-in window.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import highspy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.charging.site import ChargerNode, Site
from plugins.smart_charging import optimizer
from plugins.smart_charging.heuristics import least_laxity_first
from plugins.smart_charging.optimizer import Plan, PlanProblem, VehicleNeed, build_lp, plan

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
SLOT = timedelta(minutes=15)
TOL = 1e-6
SHARED = Path(__file__).resolve().parents[3] / "shared"
NORDPOOL = SHARED / "data" / "tariffs" / "dayahead" / "nordpool_dayahead_2024-11-05.json"


def at(hour: float) -> datetime:
    return T0 + timedelta(hours=hour)


def slot_of(hour: float) -> int:
    return int(hour * 4)


def hourly(prices: Sequence[float]) -> list[float]:
    """One price per hour -> one per 15-minute slot."""
    return [p for p in prices for _ in range(4)]


def one_circuit_site(grid: float = 63, **circuit: Any) -> Site:
    """Grid 63 A -> circuit c1 -> three-phase chargers bay_1..bay_4, unless overridden."""
    chargers = circuit.pop("chargers", None) or [{"id": f"bay_{i}"} for i in range(1, 5)]
    return Site.from_config(
        {"max_current": grid, "circuits": [{"id": "c1", **circuit, "chargers": chargers}]}
    )


def ev(vid: str, charger: str, arrive: float, leave: float, kwh: float, kw: float = 11.0, **kw_):
    need = {"energy_kwh": kwh, "max_kw": kw, **kw_}
    return VehicleNeed(id=vid, charger=charger, arrival=at(arrive), departure=at(leave), **need)


def given_(*vehicles: VehicleNeed, slots: int = 8, price: Any = 0.2, **kw: Any) -> PlanProblem:
    """A plan problem from T0 on the one-circuit site, flat prices, unless told otherwise."""
    prices = [price] * slots if isinstance(price, float) else price
    kw.setdefault("site", one_circuit_site())
    return PlanProblem(start=T0, slots=slots, import_price=prices, vehicles=vehicles, **kw)


def violations(problem: PlanProblem, result: Plan) -> list[str]:
    """Every limit the plan breaks, recomputed from the site tree and the plan alone."""
    site, n, volts = problem.site, problem.slots, problem.site.voltage
    base = list(problem.base_load_kw or [0.0] * n)
    out = []
    per_phase: dict[str, list[tuple[int, float]]] = {}  # vehicle -> (grid phase, share)
    for v in problem.vehicles:
        row = result.power_kw[v.id]
        charger = site.node(v.charger)
        assert isinstance(charger, ChargerNode)
        used = charger.phase_rotation
        if not charger.dc and v.phases is not None:
            used = used[: v.phases]
        per_phase[v.id] = [(p.index, 1 / len(used)) for p in used]
        for t, p in enumerate(row):
            begins = problem.start + t * problem.slot
            if p < -TOL or p > v.max_kw + TOL:
                out.append(f"{v.id} at slot {t}: {p} kW outside [0, {v.max_kw}]")
            if p > TOL and not (v.arrival <= begins and begins + problem.slot <= v.departure):
                out.append(f"{v.id} charges at slot {t}, while not plugged in")
        if result.energy_kwh(v.id) > max(0.0, v.energy_kwh) + TOL:
            out.append(f"{v.id} gets {result.energy_kwh(v.id)} kWh, more than it needs")
    for node in site.walk():
        under = [v for v in problem.vehicles if node in site.path_to(v.charger)]
        caps = problem.caps_kw.get(node.id)
        for t in range(n):
            kw = sum(result.power_kw[v.id][t] for v in under)
            amps = [0.0, 0.0, 0.0]
            for v in under:
                for phase, share in per_phase[v.id]:
                    amps[phase] += result.power_kw[v.id][t] * share * 1000 / volts
            base_kw = base[t] if node is site.root else 0.0
            limit_kw = min(
                node.max_power_kw or float("inf"),
                caps[t] if caps and caps[t] is not None else float("inf"),
            )
            # A base load above a limit is not the plan's doing: the vehicles then get nothing.
            if kw > max(0.0, limit_kw - base_kw) + TOL:
                out.append(f"{node.id} slot {t}: {kw:.3f} kW + base {base_kw} > {limit_kw}")
            for i, rating in enumerate(node.max_current):
                base_a = base_kw * 1000 / volts / site.phases if i < site.phases else 0.0
                if rating is not None and amps[i] > max(0.0, rating - base_a) + TOL:
                    out.append(f"{node.id} L{i + 1} slot {t}: {amps[i]:.3f} A > {rating} A")
    return out


def charged_slots(result: Plan, vid: str) -> list[int]:
    return [t for t, p in enumerate(result.power_kw[vid]) if p > TOL]


# --- prices, demand charges, PV ------------------------------------------------------------------
def test_one_vehicle_charges_in_the_price_valley() -> None:
    prices = [0.30] * 8
    prices[2] = 0.10  # 02:00-03:00 is cheapest
    result = plan(given_(ev("van", "bay_1", 0, 8, kwh=11.0), slots=32, price=hourly(prices)))
    assert result.status == "optimal"
    assert charged_slots(result, "van") == [8, 9, 10, 11]
    assert result.energy_kwh("van") == pytest.approx(11.0)
    assert result.energy_cost == pytest.approx(11.0 * 0.10)
    assert result.shortfalls == ()
    assert result.power_at("van", at(2.5)) == pytest.approx(11.0)
    assert result.power_at("van", at(5)) == 0.0
    assert result.power_at("van", at(99)) == 0.0  # after the plan: nothing planned
    with pytest.raises(KeyError):
        result.power_at("stranger", at(2))


def _two_vans(demand_charge: float, peak_so_far: float = 0.0) -> PlanProblem:
    return given_(
        ev("a", "bay_1", 0, 4, kwh=22.0, kw=22.0),
        ev("b", "bay_2", 0, 4, kwh=22.0, kw=22.0),
        slots=16,
        price=hourly([0.20, 0.21, 0.22, 0.23]),
        site=one_circuit_site(grid=100),
        base_load_kw=[10.0] * 16,
        demand_charge=demand_charge,
        peak_so_far_kw=peak_so_far,
    )


def test_a_demand_charge_spreads_two_vans_over_their_window() -> None:
    cheap = plan(_two_vans(demand_charge=0.0))
    flat = plan(_two_vans(demand_charge=15.0))
    # Without a demand charge both charge at full power in the cheapest hour: 10 + 44 kW.
    assert cheap.peak_kw == pytest.approx(54.0)
    # With one, 44 kWh spread evenly over 4 h: 11 kW on top of the 10 kW base load.
    assert flat.peak_kw == pytest.approx(21.0)
    assert flat.demand_charge == pytest.approx(15.0 * 21.0)
    assert flat.energy_cost > cheap.energy_cost  # it pays a little more for energy ...
    assert flat.objective < cheap.energy_cost + 15.0 * cheap.peak_kw  # ... and far less in all
    assert flat.shortfalls == cheap.shortfalls == ()


def test_a_peak_already_paid_for_this_period_is_free_to_use() -> None:
    result = plan(_two_vans(demand_charge=15.0, peak_so_far=60.0))
    assert result.peak_kw == pytest.approx(60.0)  # the period's peak, not exceeded
    assert result.demand_charge == pytest.approx(0.0)
    assert charged_slots(result, "a") == charged_slots(result, "b") == [0, 1, 2, 3]


def test_charging_soaks_up_the_pv_surplus_before_exporting_it() -> None:
    base = [2.0] * 96
    for t in range(slot_of(10), slot_of(14)):
        base[t] = -10.0  # PV: 10 kW more than the building uses, 10:00-14:00
    car = ev("car", "bay_1", 6, 20, kwh=20.0)
    problem = given_(car, slots=96, price=0.30, export_price=[0.05] * 96, base_load_kw=base)
    result = plan(problem)
    assert result.energy_kwh("car") == pytest.approx(20.0)
    slots = charged_slots(result, "car")
    assert slots and all(slot_of(10) <= t < slot_of(14) for t in slots)
    assert max(result.site_kw) == pytest.approx(2.0)  # never imports more for the car
    # 20 h x 2 kW imported at 0.30; of 40 kWh PV surplus, 20 go to the car, 20 exported at 0.05.
    assert result.energy_cost == pytest.approx(20 * 2.0 * 0.30 - 20.0 * 0.05)


# --- limits --------------------------------------------------------------------------------------
def test_a_circuit_limit_makes_two_vans_take_turns() -> None:
    # c1 is rated 16 A per phase: 11.04 kW three-phase, one van at full power at a time.
    vans = ev("a", "bay_1", 0, 2, kwh=11.0), ev("b", "bay_2", 0, 2, kwh=11.0)
    problem = given_(*vans, site=one_circuit_site(max_current=16), price=hourly([0.10, 0.30]))
    result = plan(problem)
    assert violations(problem, result) == []
    assert result.shortfalls == ()
    for t in range(8):
        assert result.power_kw["a"][t] + result.power_kw["b"][t] <= 11.04 + TOL
    assert result.energy_cost == pytest.approx(11.04 * 0.10 + (22.0 - 11.04) * 0.30)


def test_per_phase_limits_follow_each_chargers_rotation() -> None:
    # Three single-phase chargers on a circuit rated 16 A per phase: two on L1, one on L2.
    chargers = [
        {"id": "l1_a", "phases": 1, "phase_rotation": "L1"},
        {"id": "l1_b", "phases": 1, "phase_rotation": "L1"},
        {"id": "l2", "phases": 1, "phase_rotation": "L2"},
    ]
    problem = given_(
        ev("a", "l1_a", 0, 2, kwh=7.36, kw=7.4),
        ev("b", "l1_b", 0, 2, kwh=7.36, kw=7.4),
        ev("c", "l2", 0, 2, kwh=7.36, kw=7.4),
        site=one_circuit_site(max_current=16, chargers=chargers),
    )
    result = plan(problem)
    assert violations(problem, result) == []
    # L2 carries c alone at 16 A = 3.68 kW for 2 h: exactly its 7.36 kWh.
    assert result.energy_kwh("c") == pytest.approx(7.36)
    # a and b share L1's 16 A: 7.36 kWh between them, 7.36 kWh short in all.
    assert result.energy_kwh("a") + result.energy_kwh("b") == pytest.approx(7.36)
    assert sum(s.missing_kwh for s in result.shortfalls) == pytest.approx(7.36, abs=0.01)
    for short in result.shortfalls:
        assert short.vehicle_id in ("a", "b")
        assert short.kind == "limit"
        assert "circuit c1 L1 limit 16 A in 00:00-02:00" in short.reason


def test_a_single_phase_car_on_a_three_phase_charger_loads_one_grid_phase() -> None:
    chargers = [{"id": "bay_1", "phase_rotation": "L2L3L1"}, {"id": "bay_2"}]
    problem = given_(
        ev("one_phase", "bay_1", 0, 1, kwh=10.0, kw=7.4, phases=1),
        ev("three_phase", "bay_2", 0, 1, kwh=10.0, kw=11.0),
        slots=4,
        site=one_circuit_site(max_current=16, chargers=chargers),
    )
    result = plan(problem)
    assert violations(problem, result) == []
    # The 1-phase car is on grid L2 only; L1 and L3 have room for 16 A of the other.
    a, b = result.power_kw["one_phase"][0], result.power_kw["three_phase"][0]
    assert a / 230 * 1000 + b / 3 / 230 * 1000 == pytest.approx(16.0)  # L2 is full
    assert a + b > 3.68 + TOL  # more than one phase's worth gets through


def test_a_demand_response_cap_holds_the_site_in_its_window() -> None:
    prices = [0.30] * 24
    prices[17] = prices[18] = 0.05  # the cheapest hours fall in the DR window
    caps: list[float | None] = [None] * 96
    for t in range(slot_of(17), slot_of(19)):
        caps[t] = 8.0
    problem = given_(
        ev("a", "bay_1", 16, 22, kwh=22.0),
        ev("b", "bay_2", 16, 22, kwh=22.0),
        slots=96,
        price=hourly(prices),
        base_load_kw=[3.0] * 96,
        caps_kw={"site": caps},
    )
    result = plan(problem)
    assert violations(problem, result) == []
    assert result.shortfalls == ()
    for t in range(slot_of(17), slot_of(19)):
        assert result.site_kw[t] <= 8.0 + TOL
        assert result.site_kw[t] == pytest.approx(8.0)  # all the cap allows, it's cheap


def test_a_cap_that_starves_a_vehicle_is_named_in_its_shortfall() -> None:
    caps: list[float | None] = [None] * 16
    for t in range(4, 12):
        caps[t] = 0.0  # 01:00-03:00: nothing for the chargers
    result = plan(given_(ev("van", "bay_1", 0, 3, kwh=20.0), slots=16, caps_kw={"c1": caps}))
    short = result.shortfall("van")
    assert short is not None
    assert short.missing_kwh == pytest.approx(20.0 - 11.0)  # only 00:00-01:00 was usable
    assert short.kind == "cap"
    assert short.reason == "circuit c1 cap 0 kW in 01:00-03:00"


# --- goals that cannot be met -------------------------------------------------------------------
def test_a_goal_out_of_reach_names_the_vehicle_the_kwh_and_why() -> None:
    late, fine = ev("late", "bay_1", 1, 3, kwh=30.0, kw=7.4), ev("fine", "bay_2", 1, 3, 5.0)
    result = plan(given_(late, fine, slots=32))
    assert [s.vehicle_id for s in result.shortfalls] == ["late"]
    short = result.shortfalls[0]
    assert short.missing_kwh == pytest.approx(30.0 - 2 * 7.4)
    assert short.kind == "time"
    assert short.reason.startswith("departs before enough time at max power: 14.8 kWh")
    assert "at 7.4 kW (its maximum) by departure at 03:00" in short.reason
    assert result.energy_kwh("late") == pytest.approx(14.8)  # it still gets all it can


def test_priority_decides_who_gets_a_scarce_circuit() -> None:
    problem = given_(
        ev("ambulance", "bay_1", 0, 2, kwh=20.0, priority=10.0),
        ev("pool_car", "bay_2", 0, 2, kwh=20.0),
        site=one_circuit_site(max_current=16),
    )
    for result in (plan(problem), least_laxity_first(problem)):
        assert result.energy_kwh("ambulance") == pytest.approx(20.0)
        short = result.shortfall("pool_car")
        assert short is not None
        assert short.missing_kwh == pytest.approx(40.0 - 2 * 11.04)
        assert short.reason == "circuit c1 L1/L2/L3 limit 16 A in 00:00-02:00"


def test_a_penalty_below_the_price_leaves_the_vehicle_uncharged_and_says_so() -> None:
    # A kWh short costs less than a kWh bought: charging it is not worth it.
    result = plan(given_(ev("optional", "bay_1", 0, 2, kwh=5.0), price=0.30, unmet_penalty=0.10))
    assert result.energy_kwh("optional") == 0.0
    short = result.shortfall("optional")
    assert short is not None and short.kind == "cost"
    assert result.objective == pytest.approx(5.0 * 0.10)


def test_windows_outside_the_plan_or_upside_down() -> None:
    problem = given_(
        ev("backwards", "bay_1", 3, 1, kwh=5.0),
        ev("gone", "bay_2", -5, -1, kwh=5.0),
        ev("already_here", "bay_3", -2, 1, kwh=5.0),  # plugged in before the plan starts
        ev("stays_on", "bay_4", 2, 30, kwh=40.0),  # leaves after the plan ends
        slots=16,
    )
    result = plan(problem)
    assert violations(problem, result) == []
    assert result.power_kw["backwards"] == (0.0,) * 16
    reasons = {s.vehicle_id: s for s in result.shortfalls}
    assert reasons["backwards"].kind == "window"
    assert reasons["backwards"].reason == "departs (01:00) before it arrives (03:00)"
    assert reasons["gone"].reason == "not plugged in during the plan"
    assert result.energy_kwh("already_here") == pytest.approx(5.0)
    assert charged_slots(result, "already_here")[0] == 0
    # 2 h at 11 kW before the plan ends: the rest is for the next plan, and says so.
    assert reasons["stays_on"].kind == "horizon"
    assert reasons["stays_on"].missing_kwh == pytest.approx(40.0 - 22.0)
    assert "by the plan's end at 04:00" in reasons["stays_on"].reason


def test_bad_input_is_a_clear_error_not_a_fallback() -> None:
    with pytest.raises(ValueError, match="import_price has 3 values for 8 slots"):
        given_(price=[0.1] * 3)
    with pytest.raises(ValueError, match="unique"):
        given_(ev("a", "bay_1", 0, 1, 1.0), ev("a", "bay_2", 0, 1, 1.0))
    with pytest.raises(ValueError, match="timezone"):
        given_(replace(ev("a", "bay_1", 0, 1, 1.0), arrival=datetime(2026, 3, 2)))
    with pytest.raises(ValueError, match="not a charger"):
        plan(given_(ev("a", "c1", 0, 1, 1.0)))
    with pytest.raises(KeyError, match="no node 'panel_9'"):
        plan(given_(caps_kw={"panel_9": [1.0] * 8}))


# --- the LP against the heuristic ---------------------------------------------------------------
@st.composite
def problems(draw: st.DrawFn) -> PlanProblem:
    """A small random site (grid -> panels -> chargers), prices, base load, caps and vehicles."""
    rotations = ["L1L2L3", "L2L3L1", "L3L1L2"]
    panels, chargers = [], []
    for p in range(draw(st.integers(1, 2))):
        bays, amps = [], draw(st.sampled_from([None, 16, 25, 32]))
        for _ in range(draw(st.integers(1, 3))):
            cid = f"bay_{len(chargers)}"
            if draw(st.booleans()):
                conf = {"id": cid, "phases": 1, "phase_rotation": draw(st.sampled_from("123"))}
                conf["phase_rotation"] = "L" + conf["phase_rotation"]
            else:
                conf = {"id": cid, "phase_rotation": draw(st.sampled_from(rotations))}
            conf["max_current"] = draw(st.sampled_from([16, amps or 32]))
            bays.append(conf)
            chargers.append(cid)
        panel: dict[str, Any] = {"id": f"panel_{p}", "chargers": bays}
        if amps is not None:
            panel["max_current"] = amps
        if draw(st.booleans()):
            panel["max_power_kw"] = draw(st.sampled_from([8.0, 15.0, 20.0]))
        panels.append({"id": f"feeder_{p}", "circuits": [panel]})
    site = Site.from_config(
        {
            "max_current": [draw(st.sampled_from([32, 40, 63])) for _ in range(3)],
            "max_power_kw": draw(st.sampled_from([20.0, 30.0, 45.0])),
            "panels": panels,
        }
    )
    n = draw(st.integers(4, 16))
    money = st.floats(0.0, 0.5, allow_nan=False)
    prices = draw(st.lists(money, min_size=n, max_size=n))
    export = [p * draw(st.floats(0.0, 1.0)) for p in prices]
    base = draw(st.lists(st.floats(-15.0, 15.0), min_size=n, max_size=n))
    caps: dict[str, list[float | None]] = {}
    if draw(st.booleans()):
        target = draw(st.sampled_from(["site", "panel_0"]))
        caps[target] = draw(st.lists(st.none() | st.floats(0.0, 30.0), min_size=n, max_size=n))
    vehicles = []
    for i, charger in enumerate(chargers):
        if draw(st.booleans()):
            arrive, stay = draw(st.integers(-2, n)) / 4, draw(st.integers(-1, n + 2)) / 4
            kwh, kw = draw(st.floats(0.0, 25.0)), draw(st.sampled_from([3.7, 7.4, 11.0, 22.0]))
            more = {"phases": draw(st.sampled_from([None, None, 1]))}
            more["priority"] = draw(st.sampled_from([1.0, 1.0, 5.0]))
            vehicles.append(ev(f"ev_{i}", charger, arrive, arrive + stay, kwh, kw, **more))
    return given_(
        *vehicles,
        slots=n,
        price=prices,
        site=site,
        export_price=export,
        base_load_kw=base,
        caps_kw=caps,
        demand_charge=draw(st.sampled_from([0.0, 0.0, 8.0])),
        peak_so_far_kw=draw(st.sampled_from([0.0, 10.0])),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_the_lp_never_costs_more_than_the_heuristic_and_neither_breaks_a_limit(
    problem: PlanProblem,
) -> None:
    best = plan(problem)
    fallback = least_laxity_first(problem)
    assert best.status == "optimal", best.detail
    assert fallback.status == "heuristic"
    assert violations(problem, best) == []
    assert violations(problem, fallback) == []
    # The same bill for both; the LP may lose only its tie-break among equal prices, and what
    # the solver's tolerance (1e-7 kW) costs at the unmet-energy penalty.
    ties = optimizer.TIE_BREAK * (1 + max(problem.import_price)) * problem.slots
    slack = ties * sum(v.energy_kwh for v in problem.vehicles) + 1e-7 * abs(fallback.objective)
    assert best.objective <= fallback.objective + slack + 1e-3


# --- when the solver fails ----------------------------------------------------------------------
def _easy_depot() -> PlanProblem:
    return given_(
        ev("a", "bay_1", 0, 12, kwh=30.0),
        ev("b", "bay_2", 1, 6, kwh=20.0, kw=7.4, min_kw=4.1),
        ev("c", "bay_3", 2, 4, kwh=15.0, kw=11.0),
        ev("d", "bay_4", 0, 3, kwh=40.0, kw=11.0),  # cannot: 33 kWh at most
        slots=48,
        price=hourly([0.3] * 4 + [0.1] * 4 + [0.3] * 4),
        site=one_circuit_site(max_current=32),
        base_load_kw=[2.0] * 48,
    )


def _assert_safe_fallback(problem: PlanProblem, result: Plan, detail: str) -> None:
    assert result.status == "heuristic"
    assert detail in result.detail
    assert violations(problem, result) == []
    assert [s.vehicle_id for s in result.shortfalls] == ["d"]
    assert result.shortfalls[0].missing_kwh == pytest.approx(40.0 - 33.0)
    assert result.shortfalls[0].kind == "time"


def test_a_solver_that_raises_falls_back_to_least_laxity_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: highspy.Highs) -> None:
        raise RuntimeError("solver crashed")

    monkeypatch.setattr(highspy.Highs, "run", broken)
    problem = _easy_depot()
    _assert_safe_fallback(problem, plan(problem), "HiGHS failed: RuntimeError('solver crashed')")


def test_a_solver_that_is_not_optimal_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    infeasible = highspy.HighsModelStatus.kInfeasible
    monkeypatch.setattr(highspy.Highs, "getModelStatus", lambda self: infeasible)
    problem = _easy_depot()
    _assert_safe_fallback(problem, plan(problem), "HiGHS stopped: Infeasible")


def test_a_solver_out_of_time_falls_back() -> None:
    problem = _easy_depot()
    _assert_safe_fallback(problem, plan(problem, time_limit=0.0), "Time limit reached")


def test_the_heuristic_is_deterministic_and_serves_the_least_laxity_first() -> None:
    # c1 at 16 A: one van at a time. b must leave at 01:00, a can wait: b goes first.
    vans = ev("a", "bay_1", 0, 3, kwh=11.0), ev("b", "bay_2", 0, 1, kwh=11.0)
    problem = given_(*vans, slots=12, site=one_circuit_site(max_current=16))
    first, again = least_laxity_first(problem), least_laxity_first(problem)
    assert first == again
    assert charged_slots(first, "b") == [0, 1, 2, 3]
    assert first.shortfalls == ()
    assert violations(problem, first) == []


# --- scale and real prices ----------------------------------------------------------------------
def depot(vehicles: int, seed: int = 7) -> PlanProblem:
    """Panels of five 125 A circuits of ten 32 A bays; mixed single- and three-phase."""
    rnd = random.Random(seed)
    panels, per_panel = [], 50
    for p in range(-(-vehicles // per_panel)):
        circuits = []
        for c in range(5):
            bays = []
            for k in range(p * per_panel + c * 10, min(vehicles, p * per_panel + c * 10 + 10)):
                one = k % 3 == 0
                rotation = ["L1", "L2", "L3"][k // 3 % 3] if one else ["L1L2L3", "L2L3L1"][k % 2]
                bays.append(
                    {"id": f"bay_{k}", "phases": 1 if one else 3, "phase_rotation": rotation}
                )
            if bays:
                circuits.append({"id": f"p{p}_c{c}", "max_current": 125, "chargers": bays})
        panels.append({"id": f"panel_{p}", "max_current": 400, "circuits": circuits})
    site = Site.from_config({"max_current": 2000, "max_power_kw": 1200, "panels": panels})
    prices = hourly([0.25 if 17 <= h < 21 else 0.12 + 0.01 * (h % 5) for h in range(24)])
    needs = []
    for i in range(vehicles):  # the evening shift comes back between 14:00 and 22:00
        arrive, kw = 14 + rnd.randrange(0, 32) / 4, rnd.choice([7.4, 11.0, 22.0])
        needs.append(ev(f"van_{i}", f"bay_{i}", arrive, arrive + rnd.uniform(4, 16), 50.0, kw))
        needs[-1] = replace(needs[-1], energy_kwh=rnd.uniform(5, 50))
    base = [40 + 20 * rnd.random() for _ in range(96)]
    return given_(
        *needs,
        slots=96,
        price=prices,
        site=site,
        base_load_kw=base,
        demand_charge=9.0,
        peak_so_far_kw=150.0,
    )


def test_two_hundred_vehicles_over_a_day_plan_within_every_limit() -> None:
    problem = depot(200)
    lp = build_lp(problem)
    assert lp.num_col_ > 200 * 16 and lp.num_row_ > 200
    result = plan(problem, time_limit=60.0)
    assert result.status == "optimal"
    assert violations(problem, result) == []
    assert result.objective <= least_laxity_first(problem).objective
    for short in result.shortfalls:  # short for want of time (or of horizon), never of power
        assert short.kind in ("time", "horizon")


def test_the_bare_lp_solves_to_the_plans_bill() -> None:
    problem = _two_vans(demand_charge=15.0)
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.passModel(build_lp(problem))
    highs.run()
    assert highs.getModelStatus() == highspy.HighsModelStatus.kOptimal
    # The LP's objective is the bill plus the tie-break among equal prices, which is tiny.
    assert highs.getObjectiveValue() == pytest.approx(plan(problem).objective, rel=1e-5)


def test_a_workplace_day_on_real_nord_pool_prices() -> None:
    if not NORDPOOL.exists():
        pytest.skip(f"Nord Pool day-ahead sample not found at {NORDPOOL}")
    data = json.loads(NORDPOOL.read_text())
    entries = sorted(data["multiAreaEntries"], key=lambda e: e["deliveryStart"])
    start = datetime.fromisoformat(entries[0]["deliveryStart"].replace("Z", "+00:00"))
    sek_per_kwh = [e["entryPerArea"]["SE3"] / 1000 for e in entries]  # SEK/MWh -> SEK/kWh
    assert len(sek_per_kwh) == 24  # hourly, 2024-11-05 CET
    # Six cars arrive at 08:00 CET and leave at 17:00; 20 kWh each at 11 kW, on a 32 A circuit:
    # 22.08 kW for all of them, so about 5.5 h of charging across their 9 h.
    car = {"arrival": start + timedelta(hours=8), "departure": start + timedelta(hours=17)}
    car |= {"energy_kwh": 20.0, "max_kw": 11.0}
    cars = [VehicleNeed(id=f"car_{i}", charger=f"bay_{i}", **car) for i in range(1, 7)]
    garage = one_circuit_site(max_current=32, chargers=[{"id": f"bay_{i}"} for i in range(1, 7)])
    problem = PlanProblem(
        start=start, slots=96, site=garage, import_price=hourly(sek_per_kwh), vehicles=cars
    )
    result = plan(problem)
    assert result.status == "optimal"
    assert result.shortfalls == ()
    assert violations(problem, result) == []
    # One window for all: the cheapest slots in it, filled at the circuit's 22.08 kW, are optimal.
    need, lower_bound = 120.0, 0.0
    for price in sorted(problem.import_price[32:68]):
        kwh = min(need, 22.08 / 4)
        lower_bound, need = lower_bound + kwh * price, need - kwh
    assert result.energy_cost == pytest.approx(lower_bound)
    # The dearest hours the cars are there, 08:00 (1.35) and 16:00 CET (1.82 SEK/kWh): unused.
    assert all(result.site_kw[t] == 0.0 for t in [*range(32, 36), *range(64, 68)])
    assert result.energy_cost < least_laxity_first(problem).energy_cost
