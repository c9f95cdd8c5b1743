"""Every shipped profile, end to end: pymodbus' own TCP server holds realistic readings encoded with
the profile's types, scales and word orders; the hub must show the same values, units and classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import plugins.modbus as modbus
from hub.clock import SimClock
from plugins.modbus.profile import Profile, load_profiles, parse_profile
from plugins.modbus.sim import SimulatedDevice
from tests.devices.support import advance_until, plugin_hub

PROFILES = load_profiles()

# Readings a real site shows (a 3-phase load of ~8.5 kW), per standard key.
TYPICAL: dict[str, float] = {
    "voltage": 231.4, "voltage_l1": 231.4, "voltage_l2": 229.8, "voltage_l3": 232.6,
    "current": 37.21, "current_l1": 12.34, "current_l2": 11.87, "current_l3": 13.0,
    "power": 8512.4, "power_l1": 2795.1, "power_l2": 2658.7, "power_l3": 3058.6,
    "power_factor": 0.978, "power_factor_l1": 0.981, "power_factor_l2": 0.975,
    "power_factor_l3": 0.969, "frequency": 50.02, "temperature": 31.5,
    "apparent_power": 8704.2, "reactive_power": 1811.3,
}  # fmt: skip
POWERS = ("power", "apparent_power", "reactive_power")
ENERGY_KWH = {"energy_import": 48213.7, "energy_export": 1532.4, "energy_total": 49746.1}


def realistic(profile: Profile, **override: Any) -> dict[str, Any]:
    """A value per register, at a resolution the register can hold exactly."""
    out: dict[str, Any] = {}
    for key, reg in profile.registers.items():
        if reg.scale_factor is None and not reg.entity:
            continue
        if key in override:
            out[key] = override[key]
            continue
        if reg.spec.type == "string":
            continue
        base = key.rsplit("_l", 1)[0] if key[-3:-1] == "_l" else key
        if reg.device_class == "energy":
            kwh = ENERGY_KWH.get(key) or ENERGY_KWH.get(base) or 123.4
            value = kwh * 1000 if reg.unit == "Wh" else kwh
            value = round(value)  # whole Wh (or kWh) fit every energy register
        elif key in TYPICAL:
            value = TYPICAL[key]
            if reg.unit == "%":
                value = round(value * 100, 1)
        else:
            value = 1
        if not reg.spec.is_float and reg.scale_factor is None:
            step = reg.spec.scale
            value = round(round(value / step) * step, 6)
        elif reg.scale_factor is not None and reg.device_class in POWERS:
            value = round(value)  # int16 with one shared scale factor: kW-sized values in whole W
        out[key] = value
    return out


CHARGER_STATE = {"heidelberg_energy_control": 7, "alfen_ng9xx": "C2"}


@pytest.mark.parametrize("name", sorted(PROFILES))
async def test_profile_round_trip_over_tcp(name: str, tmp_path: Path) -> None:
    profile = PROFILES[name]
    extra = {}
    if profile.charger is not None:
        extra[profile.charger.status] = CHARGER_STATE[name]
    values = realistic(profile, **extra)
    sim = SimulatedDevice(profile, lambda: values, unit_id=3, common={"manufacturer": "Acme"})
    port = await sim.start_tcp()
    clock = SimClock()
    conf = {"devices": [{"name": "dev", "profile": name, "host": "127.0.0.1", "port": port,
                         "unit_id": 3, "interval": 2}]}  # fmt: skip
    try:
        async with plugin_hub(tmp_path, clock, "modbus", modbus, conf) as hub:
            manager = hub.data["modbus"]
            device = manager.devices["dev"]
            await advance_until(clock, lambda: device.online, manager.settle, what="online")
            checked = 0
            for key, reg in device.profile.registers.items():
                state = hub.states.get(f"sensor.dev_{key}")
                if not reg.entity or not reg.enabled:
                    assert state is None, f"{key} should not be published by default"
                    continue
                assert state is not None, key
                want = values[key]
                if isinstance(want, str):
                    assert state.state == want, key
                else:
                    assert state.state == pytest.approx(want, rel=1e-6), key
                assert state.unit == reg.unit, key
                assert state.attributes.get("device_class") == reg.device_class, key
                checked += 1
            assert checked >= 8
            assert device.value_errors == {}
            if profile.charger is not None:
                charger = hub.states.get("charger.dev")
                assert charger is not None and charger.state == "charging"
                assert charger.attributes["session_id"]
                assert charger.attributes["power_w"] == pytest.approx(values["power"])
            else:
                power = hub.states.get("sensor.dev_power")
                assert power is not None and "current_a" in power.attributes
    finally:
        await sim.stop()


def test_every_profile_says_where_its_map_came_from() -> None:
    for profile in PROFILES.values():
        assert profile.source and len(profile.source) > 40, profile.name
        assert profile.path is not None
        assert profile.path.read_text().startswith("#"), f"{profile.name}: a header comment"


def test_a_broken_profile_names_the_file_and_key(tmp_path: Path) -> None:
    bad = {"kind": "meter", "source": "a test", "registers": {"power": {"address": 70000}}}
    with pytest.raises(ValueError, match=r"site\.yaml: registers\.power\.address"):
        parse_profile(bad, "x", tmp_path / "site.yaml")
    no_source = {"kind": "meter", "registers": {"power": {"address": 1}}}
    with pytest.raises(ValueError, match="source"):
        parse_profile(no_source, "x")
    charger = {"kind": "charger", "source": "a test", "registers": {"a": {"address": 1}}}
    with pytest.raises(ValueError, match="charger"):
        parse_profile(charger, "x")


async def test_the_worked_example_in_the_docs_works(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "devices.md").read_text()
    section = text.split("## Adding a profile", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    site_dir = tmp_path / "config" / "modbus_profiles"
    site_dir.mkdir(parents=True)
    (site_dir / "eastron_sdm230.yaml").write_text(example)
    profile = load_profiles([site_dir])["eastron_sdm230"]
    values = realistic(profile, power=2795.1)  # power and power_l1 share a register
    sim = SimulatedDevice(profile, lambda: values)
    port = await sim.start_tcp()
    clock = SimClock()
    conf = {"devices": [{"name": "flat_3", "profile": "eastron_sdm230", "host": "127.0.0.1",
                         "port": port}]}  # fmt: skip
    try:
        async with plugin_hub(tmp_path, clock, "modbus", modbus, conf) as hub:
            manager = hub.data["modbus"]
            await advance_until(clock, lambda: manager.devices["flat_3"].online, manager.settle)
            assert hub.states.get("sensor.flat_3_energy_import").state == pytest.approx(
                values["energy_import"]
            )  # type: ignore[union-attr]
            assert hub.states.get("sensor.flat_3_power").state == pytest.approx(2795.1)  # type: ignore[union-attr]
    finally:
        await sim.stop()


def test_the_configuration_example_in_the_docs_validates() -> None:
    import yaml

    import plugins.openevse as openevse

    text = (Path(__file__).resolve().parents[2] / "docs" / "devices.md").read_text()
    example = yaml.safe_load(
        text.split("## Configuration", 1)[1].split("```yaml\n")[1].split("```")[0]
    )
    conf = modbus.CONFIG_SCHEMA(example["modbus"])
    assert {d["profile"] for d in conf["devices"]} <= set(PROFILES)
    assert openevse.CONFIG_SCHEMA(example["openevse"])["chargers"][0]["baudrate"] == 115200
