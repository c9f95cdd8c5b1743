"""A whole simulated day at the example depot: the shipped config/automations.yaml, the real
tariffs, smart-charging and notify plugins, and simulated chargers and vehicles. The rules shape
the site's load: the evening peak limit and a demand-response cap hold, vans charge in the cheap
hours before they leave, guests wait out the expensive hours, a van below its reserve goes first,
and the operator hears about a faulted charger and one offline for five minutes."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import plugins.notify as notify_plugin
import plugins.smart_charging as smart_charging_plugin
import plugins.tariffs as tariffs_plugin
from hub.automation import get_traces
from hub.bootstrap import create_hub
from hub.clock import SimClock
from hub.core import Hub
from hub.plugins import PluginHost
from tests.automation.depot import DepotCharger, Vehicle, site_kw

ROOT = Path(__file__).resolve().parents[2]
TZ_OFFSET = timedelta(hours=1)  # Europe/Berlin in March
DAY = datetime(2026, 3, 2)  # a Monday

CONFIGURATION = """
hub: {name: Example depot, time_zone: Europe/Berlin, currency: EUR}
site: !include site.yaml
automation: !include automations.yaml
notify:
  - {name: ops_log, platform: log, level: warning}
smart_charging: {interval: 30, plan: false, tariff: grid_import}
tariffs:
  - name: grid_import
    source:
      tou:
        periods:             # a day with a midday solar dip and an evening peak
          - {name: night, start: "00:00", end: "07:00", price: 0.18}
          - {name: morning, start: "07:00", end: "11:00", price: 0.34}
          - {name: solar, start: "11:00", end: "15:00", price: 0.20}
          - {name: evening, start: "15:00", end: "22:00", price: 0.38}
          - {name: late, price: 0.24}
"""


def local(hour: int, minute: int = 0, day: int = 0) -> datetime:
    """A local (Berlin) wall time on the simulated Monday (or `day` days later), in UTC."""
    return (DAY + timedelta(days=day, hours=hour, minutes=minute) - TZ_OFFSET).replace(tzinfo=UTC)


def at_local(hub: Hub) -> str:
    return hub.now_local().strftime("%H:%M")


@pytest.fixture
async def depot(tmp_path: Path) -> Any:
    shutil.copy(ROOT / "config" / "automations.yaml", tmp_path / "automations.yaml")
    shutil.copy(ROOT / "config" / "site.yaml", tmp_path / "site.yaml")
    (tmp_path / "configuration.yaml").write_text(CONFIGURATION)
    host = PluginHost()
    for name, module in (("tariffs", tariffs_plugin), ("smart_charging", smart_charging_plugin),
                         ("notify", notify_plugin)):  # fmt: skip
        host.register(name, module)
    clock = SimClock(start=local(6))
    hub = create_hub(tmp_path, clock=clock, host=host)
    chargers = {f"bay_0{n}": DepotCharger(f"bay_0{n}_1", phases=3 if n <= 3 else 1)
                for n in range(1, 7)}  # fmt: skip
    chargers |= {f"hpc_0{n}": DepotCharger(f"hpc_0{n}_1", dc=True) for n in (1, 2)}
    await hub.entities.add("depot", list(chargers.values()))
    hub.states.set("sensor.grid_power", 0.0, unit="kW")
    await hub.start()
    yield hub, clock, chargers
    await hub.stop()


async def test_a_day_shaped_by_the_example_rules(
    depot: Any, caplog: pytest.LogCaptureFixture
) -> None:
    hub, clock, chargers = depot
    caplog.set_level(logging.WARNING, "plugins.notify")
    van_17 = Vehicle("Van 17", max_kw=11, need_kwh=30, entity="vehicle.van_17",
                     departure=local(16), reserve=20, charge_kw=11, soc=50)  # fmt: skip
    van_21 = Vehicle("Van 21", max_kw=11, need_kwh=50, entity="vehicle.van_21",
                     departure=local(6, day=1), reserve=30, charge_kw=11, soc=20)  # fmt: skip
    guest = Vehicle("guest", max_kw=11, need_kwh=25)
    buses = [Vehicle(f"Bus {n}", max_kw=100, need_kwh=200, entity=f"vehicle.bus_{n}",
                     departure=local(18, 30)) for n in (1, 2)]  # fmt: skip
    for bus in buses:
        bus.need_kwh = 200  # publish() tells the need only with a departure; buses have no plan
    schedule: dict[str, Callable[[], None]] = {
        "07:30": lambda: chargers["bay_01"].plug(hub, van_17),
        "08:00": lambda: chargers["bay_03"].plug(hub, guest, id_tag="04C3D4E5"),
        "09:00": lambda: chargers["bay_02"].plug(hub, van_21, id_tag="04B2C3D4"),
        "12:00": lambda: chargers["bay_04"].update(status="faulted", error_code="GroundFailure"),
        "13:00": lambda: chargers["bay_05"].update(status="offline"),
        "13:03": lambda: chargers["bay_05"].update(status="available"),
        "14:00": lambda: chargers["bay_06"].update(status="offline"),
        "14:10": lambda: chargers["bay_06"].update(status="available"),
        "16:00": lambda: chargers["bay_01"].unplug(hub),
        "16:30": lambda: [chargers[f"hpc_0{n}"].plug(hub, buses[n - 1]) for n in (1, 2)],
        "17:00": lambda: chargers["bay_03"].unplug(hub),
        "18:00": lambda: demand_response(hub, "start", 80.0),
        "18:20": lambda: demand_response(hub, "end", 80.0),
        "18:30": lambda: [chargers[f"hpc_0{n}"].unplug(hub) for n in (1, 2)],
    }
    engine = hub.data["smart_charging"]
    load: dict[str, float] = {}
    energy: dict[str, dict[str, float]] = {}
    priority: dict[str, int] = {}
    end = local(6, day=1)
    while hub.now() < end:
        await clock.advance(60)
        now = at_local(hub)
        if now in schedule:
            schedule.pop(now)()
        for charger in chargers.values():
            charger.step(hub)
        load[now] = site_kw(list(chargers.values()))
        hub.states.set("sensor.grid_power", round(load[now], 3), unit="kW")
        energy[now] = {v.name: v.delivered_kwh for v in (van_17, van_21, guest)}
        tracked = engine.sessions.get("charger.bay_02_1")
        if tracked is not None:
            priority[now] = tracked.priority
    await hub.block_till_done()

    def window(a: str, b: str) -> list[float]:
        return [kw for t, kw in load.items() if a <= t <= b]

    # Before 17:00 the two buses draw what the DC panel allows (160 kW); from 17:00 the evening
    # peak limit holds the site at 150 kW, during the demand-response event at 80 kW, and after
    # the event the peak limit is back. At 21:00 the cap is lifted.
    assert max(window("16:35", "16:59")) == pytest.approx(160.0, abs=0.5)
    assert max(window("17:01", "17:59")) <= 150.0 + 1e-6
    assert max(window("17:01", "17:59")) >= 149.0
    assert max(window("18:01", "18:20")) <= 80.0 + 1e-6
    assert max(window("18:21", "18:29")) == pytest.approx(150.0, abs=0.5)
    assert engine.node_caps == {}
    # Van 17 waits for the solar dip (11:00-15:00), the cheapest hours before it leaves at 16:00.
    assert energy["10:59"]["Van 17"] == 0.0
    assert energy["14:00"]["Van 17"] == pytest.approx(30.0)
    # The guest waits out the expensive morning, charges in the cheap hours, and is done.
    assert energy["10:59"]["guest"] == 0.0
    assert energy["14:00"]["guest"] == pytest.approx(25.0)
    # Van 21, below its operating reserve, goes first (priority 10) and charges in the night,
    # the cheapest hours before its 06:00 departure; above its reserve it goes back to 0.
    assert priority["09:01"] == 10
    assert energy["23:59"]["Van 21"] == 0.0
    assert energy["05:59"]["Van 21"] == pytest.approx(50.0)
    assert priority["05:59"] == 0
    # The operator heard of the fault and of the charger offline for five minutes, nothing else.
    alerts = [r.getMessage() for r in caplog.records if r.name.startswith("plugins.notify")]
    faulted = [a for a in alerts if "charger.bay_04_1 is faulted" in a and "GroundFailure" in a]
    offline = [a for a in alerts if "offline for 5 minutes" in a]
    assert len(faulted) == 1 and len(offline) == 1 and "charger.bay_06_1" in offline[0]
    assert any("Demand response" in a for a in alerts)
    # Every rule ran and none of its runs failed.
    for rule in ("evening_peak_limit", "demand_response_cap", "cheapest_hours_before_departure",
                 "pause_when_expensive", "charger_alerts", "reserve_priority"):  # fmt: skip
        runs = get_traces(hub, rule)
        assert runs, rule
        assert all(t["script_execution"] not in ("error", None) for t in runs), (rule, runs[0])


def demand_response(hub: Hub, phase: str, cap_kw: float) -> None:
    """What the openadr plugin does at an event's start and end: its entities, then the event."""
    active = phase == "start"
    hub.states.set("binary_sensor.demand_response_active", active)
    hub.states.set("sensor.demand_response_cap", cap_kw if active else None, unit="kW")
    hub.bus.fire("demand_response", {
        "event_id": "utility-42", "phase": phase, "node": "site", "cap_kw": cap_kw, "level": None,
        "start": local(18).isoformat(), "end": local(18, 20).isoformat(),
    })  # fmt: skip
