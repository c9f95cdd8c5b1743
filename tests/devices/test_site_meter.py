"""The demo's measured grid connection: a simulated SDM630 serving a building's daily load plus the
chargers' draw (through their phase rotation), read back by the hub as the site's grid meter.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

import plugins.modbus as modbus
from hub.charging.site import Site
from hub.clock import SimClock
from hub.config import load_configuration
from tests.devices.support import advance_until, plugin_hub

ROOT = Path(__file__).resolve().parents[2]
SITE = {
    "max_current": 100,
    "meters": {"grid": "sensor.grid_power"},
    "circuits": [
        {"id": "c1", "max_current": 32, "chargers": [
            {"entity": "charger.bay_1", "phases": 3, "phase_rotation": "L2L3L1"}]}
    ],
}  # fmt: skip
CONF = {
    "simulate": [{"profile": "eastron_sdm630", "port": 0, "building": {"noise": 0}}],
    "devices": [],
}


async def test_the_grid_meter_measures_the_building_and_the_chargers(tmp_path: Path) -> None:
    clock = SimClock(start=datetime(2026, 3, 2, 2, 0, tzinfo=UTC))  # 03:00 in Berlin: base load
    async with plugin_hub(tmp_path, clock, "modbus", modbus, CONF) as sim_hub:
        port = sim_hub.data["modbus"].simulated[0].bus.server.transport.sockets[0].getsockname()[1]
        sim_hub.site = Site.from_config(SITE)
        sim_hub.time_zone = __import__("zoneinfo").ZoneInfo("Europe/Berlin")
        device = {"name": "grid", "profile": "eastron_sdm630", "host": "127.0.0.1", "port": port,
                  "interval": 30}  # fmt: skip
        async with plugin_hub(
            tmp_path / "b", clock, "modbus", modbus, {"devices": [device]}
        ) as hub:
            manager = hub.data["modbus"]
            grid = manager.devices["grid"]
            await advance_until(clock, lambda: grid.online, manager.settle)
            night = float(hub.states.get("sensor.grid_power").state)  # type: ignore[union-attr]
            assert 3700 < night < 4300, "about the 4 kW base load"
            # A car on bay 1 draws 16 A on its charger phases L1..L3 = grid L2, L3, L1.
            sim_hub.states.set("charger.bay_1", "charging", {"current_a": [16.0, 10.0, 4.0]})
            before = list(hub.states.get("sensor.grid_power").attributes["current_a"])  # type: ignore[union-attr]
            await advance_until(clock, lambda: hub.states.get("sensor.grid_power").attributes[  # type: ignore[union-attr]
                "current_a"] != before, manager.settle)  # fmt: skip
            after = hub.states.get("sensor.grid_power").attributes["current_a"]  # type: ignore[union-attr]
            added = [round(a - b, 1) for a, b in zip(after, before, strict=True)]
            assert added == [pytest.approx(4.0, abs=0.3), pytest.approx(16.0, abs=0.3),
                             pytest.approx(10.0, abs=0.3)]  # fmt: skip
            # Midday: the building's peak shows in the meter, and energy has been counting.
            e0 = float(hub.states.get("sensor.grid_energy_import").state)  # type: ignore[union-attr]
            sim_hub.states.set("charger.bay_1", "available", {"current_a": [0.0, 0.0, 0.0]})
            await clock.advance_to(datetime(2026, 3, 2, 11, 30, tzinfo=UTC))

            def noon() -> float:
                state = hub.states.get("sensor.grid_power")
                return float(state.state) if state and state.state != "unavailable" else 0.0  # type: ignore[arg-type]

            await advance_until(clock, lambda: noon() > 3 * night, manager.settle, limit=300)
            assert float(hub.states.get("sensor.grid_energy_import").state) > e0 + 40  # type: ignore[union-attr]


def test_the_demo_reads_its_grid_meter_over_modbus() -> None:
    config, _ = load_configuration(ROOT / "config" / "demo")
    conf = modbus.CONFIG_SCHEMA(config["modbus"])
    assert conf["simulate"][0]["profile"] == conf["devices"][0]["profile"] == "eastron_sdm630"
    assert config["site"]["meters"]["grid"] == f"sensor.{conf['devices'][0]['name']}_power"
    assert yaml.safe_load((ROOT / "config" / "demo" / "site.yaml").read_text())["meters"]
