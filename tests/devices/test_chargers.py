"""Modbus chargers as ChargerEntities (Alfen NG9xx over TCP) and SunSpec discovery.

Given a wallbox on pymodbus' server, when the hub limits it, the register holds the limit, it is
rewritten before the station's validity time runs out, and schedules step on the hub clock.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import plugins.modbus as modbus
from hub.charging.charger import ChargingSchedule, SchedulePeriod
from hub.clock import SimClock
from plugins.modbus.profile import load_profiles
from plugins.modbus.sim import SimulatedDevice
from tests.devices.support import advance_until, plugin_hub
from tests.devices.test_profiles import realistic

PROFILES = load_profiles()


async def test_alfen_status_limits_refresh_and_schedules(tmp_path: Path) -> None:
    profile = PROFILES["alfen_ng9xx"]
    values = realistic(profile, mode3_state="A", max_current=16.0, phases_in_use=3)
    sim = SimulatedDevice(profile, lambda: values, unit_id=1)
    written: list[tuple[float, float]] = []
    clock = SimClock()

    def on_write(key: str, value: Any) -> None:
        values[key] = value
        written.append((clock.monotonic(), value))

    sim.on_write = on_write
    port = await sim.start_tcp()
    conf = {"devices": [{"name": "eve", "profile": "alfen_ng9xx", "host": "127.0.0.1",
                         "port": port, "interval": 5, "max_current": 25}]}  # fmt: skip
    try:
        async with plugin_hub(tmp_path, clock, "modbus", modbus, conf) as hub:
            manager = hub.data["modbus"]

            def status() -> Any:
                state = hub.states.get("charger.eve")
                return state.state if state is not None else None

            await advance_until(clock, lambda: status() == "available", manager.settle)
            state = hub.states.get("charger.eve")
            assert state is not None and state.attributes["session_id"] is None
            assert state.attributes["max_current_a"] == 25  # the installer's limit narrows 32 A

            values["mode3_state"] = "B2"  # a car plugs in and waits
            await advance_until(clock, lambda: status() == "suspended_ev", manager.settle)
            session = hub.states.get("charger.eve").attributes["session_id"]  # type: ignore[union-attr]
            assert session
            values["mode3_state"] = "C2"
            await advance_until(clock, lambda: status() == "charging", manager.settle)
            assert hub.states.get("charger.eve").attributes["session_id"] == session  # type: ignore[union-attr]

            charger = hub.entities.live("charger.eve")
            assert charger is not None
            # Two periods: 11 A now, 7.5 A in ten minutes (the station takes float amps).
            schedule = ChargingSchedule(
                (SchedulePeriod(timedelta(0), 11.0), SchedulePeriod(timedelta(minutes=10), 7.5))
            )
            result = await charger.set_limit(schedule)  # type: ignore[attr-defined]
            assert result.accepted and values["max_current"] == 11.0
            start = clock.monotonic()
            await advance_until(clock, lambda: values["max_current"] == 7.5, manager.settle,
                                limit=700)  # fmt: skip
            assert clock.monotonic() - start == pytest.approx(600, abs=1)
            # Rewritten well within the 60 s validity time, whatever the allocator does.
            gaps = [b - a for (a, _), (b, _) in itertools.pairwise(written)]
            assert gaps and max(gaps) <= 25.5
            for _ in range(120):  # a refresh and the new period never race back to 11 A
                await clock.advance(0.5)
                await manager.settle()
            assert values["max_current"] == 7.5
            assert hub.states.get("charger.eve").attributes["limit"]["value"] == 7.5  # type: ignore[union-attr]

            result = await charger.set_limit(ChargingSchedule.constant(4.0))  # type: ignore[attr-defined]
            assert result.accepted and values["max_current"] == 0.0, "below 6 A: pause"

            values["mode3_state"] = "A"
            await advance_until(clock, lambda: status() == "available", manager.settle)
            assert hub.states.get("charger.eve").attributes["session_id"] is None  # type: ignore[union-attr]
    finally:
        await sim.stop()


async def test_a_refused_write_is_a_refused_command_not_a_crash(tmp_path: Path) -> None:
    profile = PROFILES["alfen_ng9xx"]
    values = realistic(profile, mode3_state="C2")
    sim = SimulatedDevice(profile, lambda: values)
    port = await sim.start_tcp()
    clock = SimClock()
    conf = {"devices": [{"name": "eve", "profile": "alfen_ng9xx", "host": "127.0.0.1",
                         "port": port}]}  # fmt: skip
    try:
        async with plugin_hub(tmp_path, clock, "modbus", modbus, conf) as hub:
            manager = hub.data["modbus"]
            await advance_until(clock, lambda: manager.devices["eve"].online, manager.settle)
            sim.set_fault("exception")
            charger = hub.entities.live("charger.eve")
            result = await charger.set_limit(ChargingSchedule.constant(10))  # type: ignore[union-attr]
            assert not result.accepted
            assert "exception response 4" in result.detail
    finally:
        await sim.stop()


@pytest.mark.parametrize(("base", "model"), [(40000, 203), (0, 201), (50000, 204)])
async def test_sunspec_meter_is_found_wherever_its_header_is(
    tmp_path: Path, base: int, model: int
) -> None:
    profile = PROFILES["sunspec_meter"]
    values = realistic(profile)
    values["w_sf"] = None  # the simulator picks the scale factors
    sim = SimulatedDevice(profile, lambda: values, sunspec_model=model, sunspec_base=base,
                          common={"manufacturer": "Acme", "serial_number": "SN-1"})  # fmt: skip
    port = await sim.start_tcp()
    clock = SimClock()
    conf = {"devices": [{"name": "ss", "profile": "sunspec_meter", "host": "127.0.0.1",
                         "port": port}]}  # fmt: skip
    try:
        async with plugin_hub(tmp_path, clock, "modbus", modbus, conf) as hub:
            manager = hub.data["modbus"]
            device = manager.devices["ss"]
            await advance_until(clock, lambda: device.online, manager.settle)
            assert device.info["sunspec_model"] == model
            assert device.info["sunspec_base"] == base
            power = hub.states.get("sensor.ss_power")
            assert power is not None and power.state == pytest.approx(values["power"])
            assert power.attributes["manufacturer"] == "Acme"
            assert hub.states.get("sensor.ss_current_l1").state == pytest.approx(12.34)  # type: ignore[union-attr]
            assert hub.states.get("sensor.ss_energy_import").unit == "Wh"  # type: ignore[union-attr]
    finally:
        await sim.stop()


async def test_no_sunspec_header_is_a_clear_reason(tmp_path: Path) -> None:
    sdm = PROFILES["eastron_sdm630"]
    sim = SimulatedDevice(sdm, lambda: realistic(sdm))
    port = await sim.start_tcp()
    clock = SimClock()
    conf = {"devices": [{"name": "ss", "profile": "sunspec_meter", "host": "127.0.0.1",
                         "port": port}]}  # fmt: skip
    try:
        async with plugin_hub(tmp_path, clock, "modbus", modbus, conf) as hub:
            manager = hub.data["modbus"]
            device = manager.devices["ss"]
            await advance_until(clock, lambda: device.polls > 0, manager.settle)
            assert not device.online
            assert device.error == "no SunSpec header 'SunS' at 40000, 0, 50000"
    finally:
        await sim.stop()
