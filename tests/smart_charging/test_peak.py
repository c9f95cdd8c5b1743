"""The billing period's peak: 15-minute averages on the hub clock, kept across restarts, handed to
the planner; and the one planning strategy the live hub and `evhub plan` share."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from hub.bootstrap import create_hub
from hub.clock import SimClock
from hub.core import Hub
from plugins.smart_charging.optimizer import PlanProblem
from plugins.smart_charging.peak import ENTITY_ID, PeakTracker
from plugins.smart_charging.strategy import peak_hint, plan_smart
from tests.smart_charging.test_engine import SITE, LabCharger, settle
from tests.smart_charging.test_optimizer import ev, given_, hourly, one_circuit_site

T0 = datetime(2026, 3, 31, 22, 0, tzinfo=UTC)  # the last evening of March, UTC


async def feed(hub: Hub, clock: SimClock, tracker: PeakTracker, kw: float, minutes: float) -> None:
    """`kw` for `minutes`, sampled every 5 s as the engine's rounds do."""
    for _ in range(int(minutes * 12)):
        tracker.sample(kw)
        await clock.advance(5)
    tracker.sample(kw)


async def test_the_peak_is_the_highest_quarter_hour_average_not_a_spike(hub: Hub) -> None:
    clock = hub.clock
    assert isinstance(clock, SimClock)
    tracker = PeakTracker(hub)
    await feed(hub, clock, tracker, 40.0, 15)  # 06:00-06:15 at 40 kW
    assert tracker.peak_kw == pytest.approx(40.0)
    await feed(hub, clock, tracker, 10.0, 14)  # 06:15-06:29 at 10 kW ...
    await feed(hub, clock, tracker, 100.0, 1)  # ... and a one-minute 100 kW spike
    await feed(hub, clock, tracker, 0.0, 1)  # into the next quarter
    # (14 x 10 + 100) / 15 = 16 kW for that quarter: below the first one's 40
    assert tracker.peak_kw == pytest.approx(40.0)
    assert tracker.peak_at == datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    state = hub.states.get(ENTITY_ID)
    assert state is not None and state.state == pytest.approx(40.0) and state.unit == "kW"
    await feed(hub, clock, tracker, 60.0, 30)  # 06:31-07:01: the 06:45 quarter is whole
    assert tracker.peak_kw == pytest.approx(60.0, abs=0.01)


async def test_a_hole_in_the_record_is_not_filled_with_a_guess(hub: Hub) -> None:
    clock = hub.clock
    assert isinstance(clock, SimClock)
    tracker = PeakTracker(hub)
    tracker.sample(80.0)
    await clock.advance(600)  # ten minutes without a sample: 80 kW is not assumed throughout
    await feed(hub, clock, tracker, 0.0, 10)
    assert tracker.peak_kw == 0.0


async def test_the_peak_survives_a_restart_and_a_new_period_starts_afresh(tmp_path: Path) -> None:
    clock = SimClock(start=T0)
    hub = Hub(tmp_path, clock=clock)  # UTC: the period turns at midnight UTC
    await hub.start()
    try:
        tracker = PeakTracker(hub)
        tracker.load()
        await feed(hub, clock, tracker, 50.0, 30)
        assert tracker.peak_kw == pytest.approx(50.0)
        await clock.advance(5)  # the store writes a moment later
        await hub.block_till_done()
        again = PeakTracker(hub)  # as after a restart
        again.load()
        assert again.peak_kw == pytest.approx(50.0) and again.last_period_peak_kw is None
        await clock.advance(2 * 3600)  # into April
        await feed(hub, clock, again, 20.0, 20)
        assert again.period_start == datetime(2026, 4, 1, tzinfo=UTC)
        assert again.peak_kw == pytest.approx(20.0, abs=0.2)  # its first 5 s unmeasured
        assert again.last_period_peak_kw == pytest.approx(50.0)
    finally:
        await hub.stop()


async def test_the_engine_measures_the_peak_and_plans_with_it(tmp_path: Path) -> None:
    config = {"site": SITE, "smart_charging": {"interval": 5, "demand_charge": 15.0}}
    (tmp_path / "configuration.yaml").write_text(yaml.safe_dump(config))
    clock = SimClock(start=T0)
    hub = create_hub(tmp_path, clock=clock)
    await hub.start()
    try:
        charger = LabCharger("bay_1")
        await hub.entities.add("lab", [charger])
        hub.states.set("sensor.grid_power", 30.0, unit="kW")  # the grid meter: 30 kW import
        for _ in range(200):  # 16 minutes of rounds
            await settle(hub, clock, 5)
        engine = hub.data["smart_charging"]
        assert engine.planner.peak.peak_kw == pytest.approx(30.0, abs=0.2)
        charger.plug("s1")
        await settle(hub, clock)
        problem = engine.planner.problem(engine.inputs())
        assert problem.peak_so_far_kw == pytest.approx(30.0, abs=0.2)
        assert hub.states.get(ENTITY_ID).state == pytest.approx(30.0, abs=0.2)
    finally:
        await hub.stop()


def problem_for(demand_charge: float, peak_so_far: float = 0.0) -> PlanProblem:
    """Two vans over four hours of falling prices: the LP alone charges them last."""
    return given_(
        ev("a", "bay_1", 0, 4, kwh=11.0, kw=22.0),
        ev("b", "bay_2", 0, 4, kwh=11.0, kw=22.0),
        slots=16,
        price=hourly([0.23, 0.22, 0.21, 0.20]),
        site=one_circuit_site(grid=100),
        base_load_kw=[10.0] * 16,
        demand_charge=demand_charge,
        peak_so_far_kw=peak_so_far,
    )


def test_the_hedge_moves_energy_earlier_within_the_same_peak() -> None:
    problem = problem_for(demand_charge=10.0, peak_so_far=40.0)
    straight = plan_smart(problem, online=False)
    hedged = plan_smart(problem, online=True)
    assert hedged.peak_kw == pytest.approx(straight.peak_kw, abs=1e-3)
    assert not hedged.shortfalls and not straight.shortfalls

    def mean_slot(p: object) -> float:
        total = [sum(kw) for kw in zip(*p.power_kw.values(), strict=True)]  # type: ignore[attr-defined]
        return sum(t * kw for t, kw in enumerate(total)) / sum(total)

    assert mean_slot(straight) > 12  # the last hour, the cheapest
    assert mean_slot(hedged) < 4  # the first hour: room for whoever comes next
    # and its cost is told at the real prices, which a hedge can only raise
    assert hedged.energy_cost >= straight.energy_cost - 1e-6


def test_a_peak_hint_is_planned_as_paid_but_not_billed() -> None:
    problem = problem_for(demand_charge=10.0)
    hinted = plan_smart(problem, peak_hint_kw=1_000.0, online=False)
    assert hinted.demand_charge == pytest.approx(10.0 * hinted.peak_kw)  # billed from 0 kW
    assert hinted.energy_cost <= plan_smart(problem, online=False).energy_cost + 1e-6


async def test_the_last_three_periods_are_kept_and_the_hint_takes_the_lowest(
    tmp_path: Path,
) -> None:
    clock = SimClock(start=T0)
    hub = Hub(tmp_path, clock=clock)
    # A file from before the hub kept several periods: it has the last one only.
    old = {"period_start": "2026-03-01T00:00:00+00:00", "peak_kw": 50.0, "peak_at": None,
           "last_period_peak_kw": 70.0}  # fmt: skip
    (tmp_path / ".storage").mkdir()
    (tmp_path / ".storage" / "smart_charging.peak.json").write_text(
        json.dumps({"version": 1, "data": old})
    )
    await hub.start()
    try:
        tracker = PeakTracker(hub)
        tracker.load()
        assert tracker.recent_peaks_kw == [70.0] and tracker.peak_kw == 50.0
        # 31 days on from each: May (March's 50 kept), June, July (May's and June's kept).
        for month_peak in (40.0, 90.0, 60.0):
            await clock.advance(31 * 24 * 3600)
            await feed(hub, clock, tracker, month_peak, 40)  # two whole quarters at least
        assert tracker.recent_peaks_kw == pytest.approx([50.0, 40.0, 90.0], abs=0.5)
        assert tracker.peak_kw == pytest.approx(60.0, abs=0.5)  # July's, not yet a last period
        assert len(tracker.recent_peaks_kw) == 3
        assert tracker.last_period_peak_kw == tracker.recent_peaks_kw[-1]
        assert peak_hint(tracker.recent_peaks_kw) == pytest.approx(0.95 * 40.0, abs=0.5)
        attrs = hub.states.get(ENTITY_ID).attributes
        assert attrs["recent_peaks_kw"] == tracker.recent_peaks_kw
    finally:
        await hub.stop()


def test_the_peak_hint_leans_low() -> None:
    assert peak_hint([]) == 0.0
    assert peak_hint([80.0]) == pytest.approx(76.0)
    assert peak_hint([30.0, 80.0, 90.0, 85.0]) == pytest.approx(0.95 * 80.0)  # the last three
    assert peak_hint([0.0, 50.0], factor=1.0) == 50.0  # a period with no load says nothing


def test_the_cars_that_leave_first_charge_first_within_a_paid_peak() -> None:
    # Same energy, same price all along; a leaves after 2 h, b after 4 h; 11 kW already paid.
    problem = given_(
        ev("a", "bay_1", 0, 2, kwh=11.0, kw=22.0),
        ev("b", "bay_2", 0, 4, kwh=11.0, kw=22.0),
        slots=16,
        price=hourly([0.20, 0.20, 0.20, 0.20]),
        site=one_circuit_site(grid=100),
        demand_charge=10.0,
        peak_so_far_kw=11.0,
    )
    result = plan_smart(problem, online=True)
    assert result.peak_kw == pytest.approx(11.0, abs=1e-3) and not result.shortfalls
    a, b = result.power_kw["a"], result.power_kw["b"]
    # a first, at the whole paid peak, then b: the room is free early for whoever comes next
    assert sum(a[:4]) * 0.25 == pytest.approx(11.0, abs=1e-3)
    assert sum(b[4:8]) * 0.25 == pytest.approx(11.0, abs=1e-3)
