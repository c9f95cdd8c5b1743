"""Built-in `openevse` plugin: OpenEVSE controllers over their RAPI serial protocol.

openevse:
  chargers:
    - {name: garage, serial_port: /dev/ttyUSB0, baudrate: 115200, interval: 5}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from hub.core import Hub
from hub.plugins import hookimpl
from plugins.openevse.charger import OpenEvseCharger

DOMAIN = "openevse"
PLATFORM = "openevse"

_SECONDS = vol.All(vol.Coerce(float), vol.Range(min=0.05, max=3600))
_AMPS = vol.All(vol.Coerce(float), vol.Range(min=6, max=80))


def _unique(chargers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    for i, conf in enumerate(chargers):
        for key in ("name", "serial_port"):
            if (key, conf[key]) in seen:
                raise vol.Invalid(f"{key} {conf[key]!r} appears twice", [i, key])
            seen.add((key, conf[key]))  # type: ignore[arg-type]
    return chargers


CHARGER_SCHEMA = vol.Schema(
    {
        vol.Required("name"): vol.Match(r"^[a-z0-9_]+$", msg="use lower-case letters, digits, _"),
        vol.Required("serial_port"): str,
        vol.Optional("baudrate", default=115200): vol.In([9600, 19200, 38400, 57600, 115200]),
        vol.Optional("interval", default=5.0): _SECONDS,
        vol.Optional("timeout", default=2.0): _SECONDS,
        # RAPI 3.0+ echoes a sequence id; older firmware would take it for a parameter.
        vol.Optional("sequence_ids", default=False): bool,
        vol.Optional("phases", default=1): vol.In([1, 3]),
        vol.Optional("voltage", default=230.0): vol.All(vol.Coerce(float), vol.Range(90, 480)),
        vol.Optional("min_current"): _AMPS,
        vol.Optional("max_current"): _AMPS,
    }
)
CONFIG_SCHEMA = vol.Schema(
    {vol.Optional("chargers", default=[]): vol.All([CHARGER_SCHEMA], _unique)}
)


@hookimpl
def hub_config_schema() -> Mapping[str, Any]:
    return {DOMAIN: CONFIG_SCHEMA}


@hookimpl
async def hub_setup(hub: Hub, config: Mapping[str, Any]) -> None:
    chargers = [OpenEvseCharger(hub, conf) for conf in config[DOMAIN]["chargers"]]
    hub.data[DOMAIN] = chargers
    await hub.entities.add(PLATFORM, chargers)
    for charger in chargers:
        charger.start()


@hookimpl
async def hub_teardown(hub: Hub) -> None:
    for charger in hub.data.pop(DOMAIN, []):
        await charger.shutdown()
