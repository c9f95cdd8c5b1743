"""Bad devices over Modbus TCP: each fault makes that device (or value) unavailable with a reason
logged once, the other device and the hub carry on, and it recovers by itself without a restart.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import plugins.modbus as modbus
from hub.clock import SimClock
from hub.core import Hub
from plugins.modbus.manager import ModbusManager
from plugins.modbus.profile import load_profiles
from plugins.modbus.sim import SimulatedDevice
from tests.devices.support import advance_until, plugin_hub
from tests.devices.test_profiles import realistic

SDM630 = load_profiles()["eastron_sdm630"]


class Site:
    """Two SDM630 meters on their own TCP servers: `grid` gets the faults, `pv` must not care."""

    def __init__(self, hub: Hub, sims: dict[str, SimulatedDevice], values: dict[str, Any]) -> None:
        self.hub, self.sims, self.values = hub, sims, values
        self.manager: ModbusManager = hub.data["modbus"]
        self.clock: SimClock = hub.clock  # type: ignore[assignment]

    def state(self, entity_id: str) -> Any:
        state = self.hub.states.get(entity_id)
        return None if state is None else state.state

    async def until(self, predicate: Any, what: str, limit: float = 300) -> float:
        return await advance_until(self.clock, predicate, self.manager.settle, limit=limit,
                                   what=what)  # fmt: skip

    async def run(self, seconds: float) -> None:
        """Let hub time pass with real I/O between steps: the healthy meter keeps answering."""
        for _ in range(int(seconds / 0.5)):
            await self.clock.advance(0.5)
            await self.manager.settle()

    def grid_up(self) -> bool:
        return self.state("sensor.grid_power") == pytest.approx(self.values["grid"]["power"])

    def grid_down(self) -> bool:
        return self.state("sensor.grid_power") == "unavailable"

    def pv_fine(self) -> bool:
        return self.state("sensor.pv_power") == pytest.approx(self.values["pv"]["power"])


@asynccontextmanager
async def two_meters(tmp_path: Path, timeout: float = 1.0) -> AsyncIterator[Site]:
    values = {"grid": realistic(SDM630), "pv": realistic(SDM630, power=-4200.5)}
    sims = {name: SimulatedDevice(SDM630, (lambda n=name: values[n])) for name in values}
    ports = {name: await sim.start_tcp() for name, sim in sims.items()}
    conf = {
        "devices": [
            {"name": name, "profile": "eastron_sdm630", "host": "127.0.0.1", "port": port,
             "interval": 2, "timeout": timeout}
            for name, port in ports.items()
        ]
    }  # fmt: skip
    try:
        async with plugin_hub(tmp_path, SimClock(), "modbus", modbus, conf) as hub:
            site = Site(hub, sims, values)
            await site.until(lambda: site.grid_up() and site.pv_fine(), "both meters read")
            yield site
    finally:
        for sim in sims.values():
            await sim.stop()


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and text in r.getMessage()]  # fmt: skip


async def test_server_down_then_back_recovers_without_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "plugins.modbus")
    async with two_meters(tmp_path) as site:
        grid = site.sims["grid"]
        port = grid.port
        await grid.stop()
        await site.until(site.grid_down, "grid unavailable")
        assert site.pv_fine()
        # Down for ten minutes of hub time: the hub keeps trying with back-off, logging once.
        await site.run(600)
        assert len(_warnings(caplog, "modbus device grid unavailable")) == 1
        link = site.manager.devices["grid"].link
        assert link._delay == 60.0, "reconnect back-off grows to its cap"
        assert "cannot connect to 127.0.0.1" in (site.manager.devices["grid"].error or "")
        await grid.start_tcp(port=port or 0)
        took = await site.until(site.grid_up, "grid back", limit=120)
        assert took <= 62
        assert site.pv_fine()
        assert any("modbus device grid online" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("exception", "exception response 4 (server device failure)"),
        ("silent", "no answer within 1 s"),
        ("garbage", "unreadable answer to reading"),
    ],
)
async def test_faults_make_one_device_unavailable_and_it_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fault: str, reason: str
) -> None:
    async with two_meters(tmp_path) as site:
        site.sims["grid"].set_fault(fault)
        await site.until(site.grid_down, f"grid unavailable on {fault}")
        assert site.pv_fine()
        assert reason in (site.manager.devices["grid"].error or "")
        await site.run(60)  # a minute of failing polls: still one warning
        assert len(_warnings(caplog, "modbus device grid unavailable")) == 1
        assert site.pv_fine()
        site.sims["grid"].set_fault(None)
        await site.until(site.grid_up, "grid back", limit=180)
        assert site.manager.devices["grid"].error is None


async def test_unplugged_mid_read_fails_at_once_not_at_the_timeout(tmp_path: Path) -> None:
    async with two_meters(tmp_path, timeout=30) as site:
        grid = site.sims["grid"]
        grid.set_fault("silent")  # the next read hangs on the wire...
        await site.clock.advance(2)
        assert site.manager.devices["grid"].link.busy
        await grid.stop()  # ...and the cable is pulled while it waits
        await site.manager.settle()
        await site.until(site.grid_down, "grid unavailable", limit=2)
        assert "lost during reading" in (site.manager.devices["grid"].error or "")
        assert site.pv_fine()


async def test_bad_values_make_only_that_value_unavailable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with two_meters(tmp_path) as site:
        grid = site.values["grid"]
        good_energy = grid["energy_import"]
        grid.update(voltage_l1=math.nan, frequency=math.inf, current_l2=-2e6,
                    energy_import=good_energy + 5e6)  # fmt: skip
        await site.until(lambda: site.state("sensor.grid_voltage_l1") == "unavailable", "NaN")
        errors = site.manager.devices["grid"].value_errors
        assert "no value (NaN)" in errors["voltage_l1"]
        assert "not a number" in errors["frequency"]
        assert "outside the plausible range" in errors["current_l2"]
        assert "implausible jump" in errors["energy_import"]
        assert site.grid_up(), "the meter's other values stay available"
        assert site.state("sensor.grid_frequency") == "unavailable"
        assert "current_a" not in site.hub.states.get("sensor.grid_power").attributes  # type: ignore[union-attr]
        await site.run(30)
        assert len(_warnings(caplog, "grid: voltage_l1 unavailable")) == 1
        grid.update(voltage_l1=230.1, frequency=49.98, current_l2=11.5, energy_import=good_energy)
        await site.until(lambda: not site.manager.devices["grid"].value_errors, "values valid")
        assert site.state("sensor.grid_voltage_l1") == pytest.approx(230.1)


async def test_a_meter_reset_is_accepted_once_it_stays(tmp_path: Path) -> None:
    async with two_meters(tmp_path) as site:
        site.values["grid"]["energy_import"] = 3.5  # a replaced meter starts near zero
        device = site.manager.devices["grid"]
        await site.until(lambda: "energy_import" in device.value_errors, "drop rejected once")
        assert "went backwards" in device.value_errors["energy_import"]
        await site.until(lambda: "energy_import" not in device.value_errors, "new level kept")
        assert site.state("sensor.grid_energy_import") == pytest.approx(3.5)


async def test_a_register_the_device_lacks_is_unavailable_the_rest_works(tmp_path: Path) -> None:
    # An SDM72D (no -M) answers only its totals; the profile's per-phase registers are refused.
    profile = load_profiles()["eastron_sdm72d"]
    values = {k: v for k, v in realistic(profile).items() if not k[-1].isdigit()}
    sim = SimulatedDevice(profile, lambda: values)
    port = await sim.start_tcp()
    conf = {"devices": [{"name": "sub", "profile": "eastron_sdm72d", "host": "127.0.0.1",
                         "port": port}]}  # fmt: skip
    try:
        async with plugin_hub(tmp_path, SimClock(), "modbus", modbus, conf) as hub:
            manager = hub.data["modbus"]
            device = manager.devices["sub"]
            await advance_until(hub.clock, lambda: device.online, manager.settle)  # type: ignore[arg-type]
            assert hub.states.get("sensor.sub_power").state == pytest.approx(values["power"])  # type: ignore[union-attr]
            assert hub.states.get("sensor.sub_voltage_l1").state == "unavailable"  # type: ignore[union-attr]
            assert "illegal data address" in device.value_errors["voltage_l1"]
    finally:
        await sim.stop()
