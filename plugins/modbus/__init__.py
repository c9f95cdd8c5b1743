"""Built-in `modbus` plugin: meters and chargers over Modbus TCP and RTU (pymodbus, async).

Devices are a profile (a YAML register map, see docs/devices.md) plus an address:

    modbus:
      devices:
        - {name: grid, profile: eastron_sdm630, host: 192.168.1.20, port: 502, unit_id: 1}
        - {name: bay_7, profile: heidelberg_energy_control, serial_port: /dev/ttyUSB0, unit_id: 3}
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from hub.core import Hub
from hub.plugins import hookimpl
from plugins.modbus.manager import ModbusManager

DOMAIN = "modbus"

_SLUG = vol.Match(r"^[a-z0-9_]+$", msg="use lower-case letters, digits and _")
_PORT = vol.All(int, vol.Range(min=0, max=65535))
_SECONDS = vol.All(vol.Coerce(float), vol.Range(min=0.05, max=86_400))
_AMPS = vol.All(vol.Coerce(float), vol.Range(min=0, max=1000))


def _one_link(conf: dict[str, Any]) -> dict[str, Any]:
    if ("host" in conf) == ("serial_port" in conf):
        raise vol.Invalid("give either `host` (Modbus TCP) or `serial_port` (Modbus RTU)")
    if "host" in conf:
        conf.setdefault("port", 502)
    return conf


DEVICE_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Required("name"): _SLUG,
            vol.Required("profile"): _SLUG,
            vol.Optional("host"): str,
            vol.Optional("port"): _PORT,
            vol.Optional("serial_port"): str,
            vol.Optional("baudrate"): vol.In([1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200]),
            vol.Optional("parity"): vol.In(["N", "E", "O"]),
            vol.Optional("stopbits"): vol.In([1, 2]),
            vol.Optional("bytesize"): vol.In([7, 8]),
            vol.Optional("framer"): vol.In(["socket", "rtu", "ascii"]),
            vol.Optional("unit_id", default=1): vol.All(int, vol.Range(min=0, max=255)),
            vol.Optional("interval", default=5.0): _SECONDS,
            vol.Optional("timeout", default=3.0): _SECONDS,
            vol.Optional("min_current"): _AMPS,  # chargers: what the installation allows
            vol.Optional("max_current"): _AMPS,
        }
    ),
    _one_link,
)


def _split(value: Any) -> list[float]:
    shares = [float(v) for v in value]
    if len(shares) != 3 or any(s < 0 for s in shares) or abs(sum(shares) - 1) > 1e-6:
        raise vol.Invalid("phase_split is three shares [L1, L2, L3] that add up to 1")
    return shares


SIMULATE_SCHEMA = vol.Schema(
    {
        vol.Required("profile"): _SLUG,
        vol.Optional("host", default="127.0.0.1"): str,
        vol.Required("port"): _PORT,
        vol.Optional("unit_id", default=1): vol.All(int, vol.Range(min=0, max=255)),
        vol.Optional("voltage", default=230.0): vol.All(vol.Coerce(float), vol.Range(100, 480)),
        vol.Optional("chargers", default=True): bool,  # add what the site's chargers draw
        vol.Optional("energy_import_kwh", default=10_000.0): vol.Coerce(float),
        vol.Optional("building", default={}): {
            vol.Optional("base_kw", default=4.0): vol.All(vol.Coerce(float), vol.Range(min=0)),
            vol.Optional("peak_kw", default=18.0): vol.All(vol.Coerce(float), vol.Range(min=0)),
            vol.Optional("peak_hour", default=12.5): vol.All(vol.Coerce(float), vol.Range(0, 24)),
            vol.Optional("width_hours", default=3.5): vol.All(
                vol.Coerce(float), vol.Range(min=0.1)
            ),
            vol.Optional("phase_split", default=[0.4, 0.35, 0.25]): _split,
            vol.Optional("noise", default=0.05): vol.All(vol.Coerce(float), vol.Range(0, 1)),
            vol.Optional("seed", default=1): int,
        },
    }
)


def _unique(devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    for i, dev in enumerate(devices):
        if dev["name"] in seen:
            raise vol.Invalid(f"device name {dev['name']!r} appears twice", [i, "name"])
        seen.add(dev["name"])
    return devices


CONFIG_SCHEMA = vol.Schema(
    {
        vol.Optional("profile_dirs", default=[]): [str],
        vol.Optional("devices", default=[]): vol.All([DEVICE_SCHEMA], _unique),
        vol.Optional("simulate", default=[]): [SIMULATE_SCHEMA],
    }
)


@hookimpl
def hub_config_schema() -> Mapping[str, Any]:
    return {DOMAIN: CONFIG_SCHEMA}


@hookimpl
async def hub_setup(hub: Hub, config: Mapping[str, Any]) -> None:
    # pymodbus logs every failed request itself; we log each device's changes once instead.
    # `logger: logs: {pymodbus: debug}` still shows its frames.
    noisy = logging.getLogger("pymodbus")
    if noisy.level == logging.NOTSET:
        noisy.setLevel(logging.CRITICAL)
    manager = ModbusManager(hub, dict(config[DOMAIN]))
    hub.data[DOMAIN] = manager
    try:
        await manager.start()
    except Exception:
        await manager.stop()
        raise


@hookimpl
async def hub_teardown(hub: Hub) -> None:
    manager: ModbusManager | None = hub.data.pop(DOMAIN, None)
    if manager is not None:
        await manager.stop()
