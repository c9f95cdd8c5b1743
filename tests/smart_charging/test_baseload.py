"""The non-EV load profile: learned per quarter of the week on the hub clock, kept across
restarts, and what the plan assumes for the building in each future slot."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from hub.bootstrap import create_hub
from hub.clock import SimClock
from hub.core import Hub
from plugins.smart_charging.baseload import BaseLoadProfile
from tests.smart_charging.test_engine import SITE, LabCharger, settle
from tests.smart_charging.test_peak import T0

WEEK = timedelta(days=7)


async def run(clock: SimClock, profile: BaseLoadProfile, kw: float, minutes: float) -> None:
    for _ in range(int(minutes * 12)):
        profile.sample(kw)
        await clock.advance(5)
    profile.sample(kw)


async def test_a_quarter_is_learned_then_smoothed_week_over_week(hub: Hub) -> None:
    clock = hub.clock
    assert isinstance(clock, SimClock)
    start = hub.now()  # Monday 06:00
    profile = BaseLoadProfile(hub)
    await run(clock, profile, 10.0, 16)  # 06:00-06:16
    times = [start + WEEK + k * timedelta(minutes=15) for k in range(3)]
    # slot 0 is "now" (the load measured now); 06:15 is not learned yet (one minute of it)
    assert profile.forecast([hub.now(), *times], now_kw=4.0) == pytest.approx([4.0, 10.0, 4.0, 4.0])
    await clock.advance((WEEK - timedelta(minutes=16, seconds=5)).total_seconds())
    await run(clock, profile, 20.0, 16)  # the next Monday: 20 kW
    learned = profile.forecast([hub.now(), start + 2 * WEEK], now_kw=0.0)[1]
    assert learned == pytest.approx(10.0 + 0.3 * (20.0 - 10.0))


async def test_a_mostly_unmeasured_quarter_teaches_nothing(hub: Hub) -> None:
    clock = hub.clock
    assert isinstance(clock, SimClock)
    start = hub.now()
    profile = BaseLoadProfile(hub)
    await clock.advance(10 * 60)  # the hub started at 06:10: 5 minutes of the quarter seen
    await run(clock, profile, 50.0, 6)
    assert profile.forecast([hub.now(), start + WEEK], now_kw=1.0) == [1.0, 1.0]


async def test_the_planner_sees_the_buildings_noon_peak_coming(tmp_path: Path) -> None:
    config = {"site": SITE, "smart_charging": {"interval": 60}}
    (tmp_path / "configuration.yaml").write_text(yaml.safe_dump(config))
    clock = SimClock(start=T0)
    hub = create_hub(tmp_path, clock=clock)
    await hub.start()
    try:
        charger = LabCharger("bay_1")
        await hub.entities.add("lab", [charger])
        for _ in range(24 * 60):  # a day: 5 kW, but 40 kW over the 12:00 (UTC) quarter
            kw = 40.0 if hub.now().hour == 12 and hub.now().minute < 15 else 5.0
            hub.states.set("sensor.grid_power", kw, unit="kW")
            await settle(hub, clock, 60)
        engine = hub.data["smart_charging"]
        await hub.stop()  # the profile is kept: a restart does not forget it
        hub = create_hub(tmp_path, clock=clock)
        await hub.start()
        engine = hub.data["smart_charging"]
        await clock.advance((WEEK - timedelta(days=1)).total_seconds())
        await hub.block_till_done()
        charger = LabCharger("bay_1")
        await hub.entities.add("lab", [charger])
        hub.states.set("sensor.grid_power", 5.0, unit="kW")
        charger.plug("s1")
        await settle(hub, clock)
        problem = engine.planner.problem(engine.inputs())
        noon = next(
            i for i in range(problem.slots)
            if (problem.start + i * problem.slot).hour == 12
            and (problem.start + i * problem.slot).minute == 0
        )  # fmt: skip
        # The meter read 40 kW from just after the 12:00 round: 1 minute at 5, 14 at 40.
        assert problem.base_load_kw[noon] == pytest.approx((5 + 14 * 40) / 15, abs=0.05)
        assert problem.base_load_kw[noon + 1] == pytest.approx((40 + 14 * 5) / 15, abs=0.05)
        assert problem.base_load_kw[noon + 4] == pytest.approx(5.0)
    finally:
        await hub.stop()
