"""The smart-charging engine on a real hub: sessions on chargers of the site tree get limits that
fit every breaker, explained; caps, pauses, the emergency stop and the plan steer them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.bootstrap import create_hub
from hub.charging.charger import (
    ChargerCapability,
    ChargerData,
    ChargerEntity,
    ChargingSchedule,
    CommandResult,
    ConnectorStatus,
)
from hub.charging.signals import SignalStore, Slot, TimeSeries
from hub.clock import SimClock
from hub.core import Hub
from plugins.smart_charging.planning import CEILING_MARGIN

START = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)
SITE = {
    "id": "depot",
    "max_current": 100,
    "meters": {"grid": "sensor.grid_power"},
    "circuits": [
        {
            "id": "row_1",
            "max_current": 32,
            "chargers": [
                {"entity": f"charger.bay_{n}", "id": f"bay_{n}", "phases": 3,
                 "phase_rotation": rotation, "max_current": 32}
                for n, rotation in ((1, "L1L2L3"), (2, "L2L3L1"), (3, "L3L1L2"))
            ],
        }
    ],
}  # fmt: skip


class LabCharger(ChargerEntity):
    """A charger that does what it is told (or, with `obey=False`, keeps drawing its max)."""

    supported = frozenset({ChargerCapability.LIMIT_AMPS, ChargerCapability.LIMIT_WATTS})

    def __init__(self, name: str) -> None:
        super().__init__(name, name, data=ChargerData(status=ConnectorStatus.AVAILABLE))
        self.commands: list[float] = []
        self.obey = True

    def suggested_object_id(self) -> str:
        return self.unique_id or ""

    async def _do_set_limit(self, schedule: ChargingSchedule) -> CommandResult:
        amps = schedule.periods[0].limit
        self.commands.append(amps)
        if self.obey:
            self.data.current_a = (amps, amps, amps)
        return CommandResult(True, "Accepted")

    def plug(self, session: str) -> None:
        self.update(status="charging", session_id=session, energy_wh=1_000_000.0,
                    current_a=(0.0, 0.0, 0.0), phases=3)  # fmt: skip

    @property
    def amps(self) -> float:
        return self.commands[-1] if self.commands else 0.0


@pytest.fixture
async def depot(tmp_path: Path) -> AsyncIterator[tuple[Hub, SimClock, list[LabCharger]]]:
    config = {"site": SITE, "smart_charging": {"interval": 5, "plan": False}}
    (tmp_path / "configuration.yaml").write_text(yaml.safe_dump(config))
    clock = SimClock(start=START)
    hub = create_hub(tmp_path, clock=clock)
    await hub.start()
    chargers = [LabCharger(f"bay_{n}") for n in (1, 2, 3)]
    await hub.entities.add("lab", chargers)
    hub.states.set("sensor.grid_power", 0.0, unit="kW")
    yield hub, clock, chargers
    await hub.stop()


async def settle(hub: Hub, clock: SimClock, seconds: float = 6) -> None:
    await clock.advance(seconds)
    await hub.block_till_done()


async def test_sessions_share_the_circuit_and_say_why(depot: Any) -> None:
    hub, clock, (a, b, c) = depot
    a.plug("s1")
    await settle(hub, clock)
    assert a.amps == 32.0
    b.plug("s2")
    c.plug("s3")
    await settle(hub, clock)
    # 3-phase sessions on one 32 A circuit: ~10.6 A each, never more than 32 A on any phase
    assert sum(x.amps for x in (a, b, c)) <= 32.0 + 1e-9
    assert min(x.amps for x in (a, b, c)) >= 10.0
    reason = hub.states.get("charger.bay_2").attributes["limit_reason"]
    assert "row_1" in reason


async def test_site_limit_pause_and_emergency_stop(depot: Any) -> None:
    hub, clock, chargers = depot
    for n, charger in enumerate(chargers):
        charger.plug(f"s{n}")
    await settle(hub, clock)
    await hub.services.call("charging", "set_site_limit", {"limit_kw": 11.0})
    await settle(hub, clock)
    total_kw = sum(x.amps for x in chargers) * 3 * 230 / 1000
    assert total_kw <= 11.0 + 1e-6
    assert "site limit 11 kW" in hub.states.get("charger.bay_1").attributes["limit_reason"]

    await hub.services.call("charging", "set_site_limit", {"limit_kw": None})
    await hub.services.call("charging", "pause", {"entity_id": "charger.bay_1"})
    await settle(hub, clock)
    assert chargers[0].amps == 0.0
    assert hub.states.get("charger.bay_1").attributes["limit_reason"] == "paused by charging.pause"
    assert chargers[1].amps == pytest.approx(16.0, abs=0.2)  # the other two share 32 A

    await hub.services.call("charging", "emergency_stop")
    assert [x.amps for x in chargers] == [0.0, 0.0, 0.0]
    await settle(hub, clock, 30)
    assert [x.amps for x in chargers] == [0.0, 0.0, 0.0]  # held
    await hub.services.call("charging", "release")
    await hub.services.call("charging", "resume", {"entity_id": "charger.bay_1"})
    await settle(hub, clock)
    assert all(x.amps >= 10.0 for x in chargers)


async def test_a_charger_that_ignores_its_limit_is_counted_at_its_max(depot: Any) -> None:
    hub, clock, (a, b, _) = depot
    a.plug("s1")
    b.plug("s2")
    await settle(hub, clock)
    b.obey = False
    for n in range(8):  # draws its max whatever it is told, and reports it every 5 s
        b.update(current_a=(32.0, 32.0, 32.0), energy_wh=1_000_000.0 + 100 * n)
        await settle(hub, clock, 5)
    assert a.amps == 0.0  # the circuit is full with the rogue charger counted at 32 A
    assert "not" in hub.states.get("charger.bay_2").attributes["limit_reason"].lower()
    b.obey = True
    for n in range(8):
        b.update(current_a=(b.amps,) * 3, energy_wh=1_001_000.0 + 100 * n)
        await settle(hub, clock, 5)
    assert a.amps > 0


async def test_non_ev_load_from_the_grid_meter_is_left_alone(depot: Any) -> None:
    hub, clock, (a, _, _) = depot
    a.plug("s1")
    await settle(hub, clock)
    # 80 A per phase of building load (55.2 kW) on a 100 A connection: 20 A left for the car
    hub.states.set("sensor.grid_power", 55.2 + a.amps * 3 * 0.23, unit="kW")
    await settle(hub, clock)
    assert a.amps == pytest.approx(20.0, abs=0.3)


@pytest.fixture
async def priced(tmp_path: Path) -> AsyncIterator[tuple[Hub, SimClock, LabCharger]]:
    """A planned site, expensive until 22:00 UTC and cheap after, a car plugged in at 16:00."""
    config = {"site": SITE, "smart_charging": {"interval": 5, "tariff": "grid_import"}}
    (tmp_path / "configuration.yaml").write_text(yaml.safe_dump(config))
    clock = SimClock(start=START)
    hub = create_hub(tmp_path, clock=clock)
    await hub.start()
    slots = [Slot(START + timedelta(hours=h), START + timedelta(hours=h + 1),
                  0.40 if h < 6 else 0.10) for h in range(24)]  # fmt: skip
    SignalStore.of(hub).publish("prices.grid_import", TimeSeries(slots, unit="EUR/kWh"))
    charger = LabCharger("bay_1")
    await hub.entities.add("lab", [charger])
    hub.states.set("sensor.grid_power", 0.0, unit="kW")
    charger.plug("s1")
    await settle(hub, clock)
    yield hub, clock, charger
    await hub.stop()


async def test_the_plan_moves_charging_to_cheap_slots(priced: Any) -> None:
    hub, clock, charger = priced
    # 6 hours of cheap energy for 10 kWh is plenty
    await hub.services.call(
        "charging", "set_vehicle_goal",
        {"entity_id": "charger.bay_1", "energy_kwh": 10,
         "departure": (START + timedelta(hours=12)).isoformat()},
    )  # fmt: skip
    await settle(hub, clock)
    assert charger.amps == 0.0
    assert "plan: 0.0 kW" in hub.states.get("charger.bay_1").attributes["limit_reason"]
    await clock.advance(6 * 3600 + 60)
    await hub.block_till_done()
    assert charger.amps > 6.0
    assert "plan:" in hub.states.get("charger.bay_1").attributes["limit_reason"]


async def test_the_vehicles_own_needs_are_its_goal_until_someone_sets_one(priced: Any) -> None:
    hub, clock, charger = priced
    engine = hub.data["smart_charging"]
    (need,) = engine.inputs().vehicles
    assert need.energy_kwh == 30  # the default (smart_charging.default_energy_kwh)
    # ISO 15118: the car asks for 12 kWh at up to 7.4 kW by 12 hours from now
    charger.update(ev_energy_wh=12_000.0, ev_departure=START + timedelta(hours=12),
                   ev_max_power_w=7_400.0)  # fmt: skip
    await settle(hub, clock)
    (need,) = engine.inputs().vehicles
    assert need.energy_kwh == pytest.approx(12.0)
    assert need.departure == START + timedelta(hours=12)
    # planned a little below what it takes: the room to catch up (planning.CEILING_MARGIN)
    assert need.max_kw == pytest.approx(7.4 * (1 - CEILING_MARGIN))
    assert charger.amps == 0.0  # cheap hours come before it leaves: the plan waits
    await clock.advance(6 * 3600 + 60)
    await hub.block_till_done()
    assert charger.amps > 6.0
    # a goal set by hand wins over the car's
    await hub.services.call("charging", "set_vehicle_goal",
                            {"entity_id": "charger.bay_1", "energy_kwh": 3})  # fmt: skip
    (need,) = engine.inputs().vehicles
    delivered = engine.delivered_kwh(engine.sessions["charger.bay_1"])
    assert need.energy_kwh == pytest.approx(3.0 - delivered)
    assert need.departure == START + timedelta(hours=12)


async def test_every_node_shows_its_load_its_limits_and_the_room_left(depot: Any) -> None:
    hub, clock, (a, _, _) = depot
    a.plug("s1")
    await settle(hub, clock)
    a.update(current_a=(a.amps,) * 3)
    # 10 A per phase of building load on top of the car, seen by the grid meter
    hub.states.set("sensor.grid_power", (10 + a.amps) * 3 * 0.23, unit="kW")
    await hub.services.call("charging", "set_site_limit", {"limit_kw": 60})
    await settle(hub, clock)
    amps = a.amps
    row = hub.states.get("site_node.row_1")
    assert row is not None and row.unit == "kW"
    assert row.attributes["current_a"] == [round(amps, 1)] * 3
    assert row.attributes["max_current"] == [32, 32, 32]
    assert row.attributes["headroom_a"] == [round(32 - amps, 1)] * 3
    assert row.attributes["parent"] == "depot" and row.attributes["kind"] == "circuit"
    site = hub.states.get("site_node.depot")
    assert site is not None
    assert site.attributes["current_a"] == [pytest.approx(10 + amps, abs=0.1)] * 3
    assert site.state == pytest.approx((10 + amps) * 3 * 0.23, abs=0.1)
    assert site.attributes["cap_kw"] == 60 and "60 kW" in site.attributes["cap_reason"]
    # the circuit's room is its own or the site's, whichever is less
    assert row.attributes["available_kw"] == pytest.approx(
        min(row.attributes["headroom_kw"], site.attributes["headroom_kw"]), abs=0.01
    )


async def test_a_cap_applies_at_its_start_to_the_second_and_releases_at_its_end(
    depot: Any,
) -> None:
    hub, clock, (a, _, _) = depot
    a.plug("s1")
    await settle(hub, clock)
    assert a.amps == 32.0
    start = hub.now() + timedelta(seconds=601)  # between two of the engine's 5 s rounds
    cap = TimeSeries([Slot(start, start + timedelta(minutes=10), 6.9)], unit="kW")
    SignalStore.of(hub).publish("caps.site", cap)
    await clock.advance_to(start - timedelta(seconds=1))
    await hub.block_till_done()
    assert a.amps == 32.0
    await clock.advance_to(start)
    await hub.block_till_done()
    assert a.amps == pytest.approx(10.0, abs=0.1)  # 6.9 kW / (3 x 230 V), at the second
    await clock.advance_to(start + timedelta(minutes=10))
    await hub.block_till_done()
    assert a.amps == 32.0
