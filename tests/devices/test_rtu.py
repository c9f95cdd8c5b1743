"""Modbus RTU over a socat pseudo-terminal pair: a meter and a wallbox share one bus (one client,
one lock), a CRC fault on one leaves the other alone, and pulling the cable recovers by itself.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import plugins.modbus as modbus
from hub.charging.charger import ChargingSchedule
from hub.clock import SimClock
from plugins.modbus.profile import load_profiles
from plugins.modbus.sim import SimulatedBus, SimulatedDevice
from tests.devices.support import SocatPair, advance_until, plugin_hub
from tests.devices.test_profiles import realistic

PROFILES = load_profiles()
# Parity N: Linux ptys refuse a second tcsetattr with PARENB set (EINVAL), which pyserial does
# right after opening; a real RS485 adapter takes the wallbox's 8E1.
LINE = {"baudrate": 19200, "parity": "N", "stopbits": 1, "bytesize": 8}


def _conf(port: str) -> dict[str, Any]:
    return {
        "devices": [
            {"name": "meter", "profile": "eastron_sdm630", "serial_port": port, "unit_id": 1,
             "interval": 2, "timeout": 1, **LINE},
            {"name": "wallbox", "profile": "heidelberg_energy_control", "serial_port": port,
             "unit_id": 2, "interval": 2, "timeout": 1, "max_current": 16, **LINE},
        ]
    }  # fmt: skip


async def test_two_devices_share_one_bus_and_survive_faults_and_unplugging(
    tmp_path: Path, socat_pair: SocatPair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "plugins.modbus")
    meter_values = realistic(PROFILES["eastron_sdm630"])
    box_values = realistic(PROFILES["heidelberg_energy_control"], charging_state=7,
                           max_current_hw=16, min_current_hw=6)  # fmt: skip
    meter = SimulatedDevice(PROFILES["eastron_sdm630"], lambda: meter_values, unit_id=1)
    box = SimulatedDevice(PROFILES["heidelberg_energy_control"], lambda: box_values, unit_id=2)
    box.on_write = lambda key, value: box_values.__setitem__(key, value)
    bus = SimulatedBus([meter, box])
    await bus.start_serial(socat_pair.b, **LINE)
    clock = SimClock()
    try:
        async with plugin_hub(tmp_path, clock, "modbus", modbus, _conf(socat_pair.a)) as hub:
            manager = hub.data["modbus"]
            devices = manager.devices

            def state(entity_id: str) -> Any:
                s = hub.states.get(entity_id)
                return None if s is None else s.state

            def both_up() -> bool:
                return state("sensor.meter_power") == pytest.approx(meter_values["power"]) and \
                    state("charger.wallbox") == "charging"  # fmt: skip

            await advance_until(clock, both_up, manager.settle, what="both devices read")
            assert len(manager.links) == 1, "one client per serial port"
            assert state("sensor.wallbox_current_l1") == pytest.approx(12.3)
            charger = hub.entities.live("charger.wallbox")
            assert charger.data.max_current_a == 16 and charger.data.min_current_a == 6  # type: ignore[union-attr]

            # The allocator's limits, as the wallbox's 0.1 A register takes them (FC06).
            for amps, written in ((10.57, 10.5), (3.0, 0.0), (40.0, 16.0)):
                result = await charger.set_limit(ChargingSchedule.constant(amps))  # type: ignore[union-attr]
                assert result.accepted, result.detail
                assert box.writes["max_current"] == pytest.approx(written)
                assert hub.states.get("charger.wallbox").attributes["limit"]["value"] == written  # type: ignore[union-attr]

            # A bad CRC from the wallbox: it goes unavailable, the meter on the same bus does not.
            box.set_fault("crc")
            await advance_until(clock, lambda: state("charger.wallbox") == "unavailable",
                                manager.settle, what="wallbox unavailable")  # fmt: skip
            assert "bad CRC" in (devices["wallbox"].error or "")
            assert state("sensor.meter_power") == pytest.approx(meter_values["power"])
            box.set_fault(None)
            await advance_until(clock, both_up, manager.settle, what="wallbox back", limit=120)
            # Back online, it is told its limit again (it may have fallen back to failsafe).
            assert box_values["max_current"] == pytest.approx(16.0)

            # Pull the cable: both devices go, with the reason; plug it back: both return.
            socat_pair.stop()
            await bus.stop()
            await advance_until(
                clock, lambda: state("sensor.meter_power") == "unavailable"
                and state("charger.wallbox") == "unavailable", manager.settle, what="unplugged",
            )  # fmt: skip
            assert devices["meter"].error and "serial" in devices["meter"].error
            socat_pair.start()
            bus = SimulatedBus([meter, box])
            await bus.start_serial(socat_pair.b, **LINE)
            took = await advance_until(clock, both_up, manager.settle, what="replugged", limit=120)
            assert took <= 65
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert sum("modbus device meter unavailable" in w for w in warnings) == 1
    finally:
        await bus.stop()
