"""Built-in `smart_charging` plugin: keeps every charger inside the site's electrical tree, follows
the optimizer's plan (prices, demand charges, caps, departures) and explains every limit it sets.

    smart_charging:
      interval: 5              # s between allocation rounds (events trigger extra rounds)
      hysteresis_a: 1.0        # a limit moves only by more than this (charger flash wear)
      tariff: grid_import      # the price signal `prices.grid_import` and entity tariff.grid_import
      horizon_hours: 24
      default_energy_kwh: 30   # a session's goal until a driver, fleet or ISO 15118 says otherwise
      default_dwell_hours: 8
      demand_period: month     # the demand charge bills the highest 15-min average per month|day
      peak_hint_factor: 0.95   # plan as if this share of the last 3 periods' lowest peak were paid
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import voluptuous as vol

from hub.core import Hub
from hub.plugins import hookimpl
from plugins.smart_charging import cli
from plugins.smart_charging.engine import Engine
from plugins.smart_charging.services import register_services
from plugins.smart_charging.strategy import PEAK_HINT_FACTOR

DOMAIN = "smart_charging"

_POSITIVE = vol.All(vol.Coerce(float), vol.Range(min=0))
CONFIG_SCHEMA = vol.Schema(
    {
        vol.Optional("interval", default=5.0): vol.All(vol.Coerce(float), vol.Range(min=1)),
        vol.Optional("hysteresis_a", default=1.0): _POSITIVE,
        vol.Optional("tolerance_a", default=1.0): _POSITIVE,
        vol.Optional("plan", default=True): bool,
        vol.Optional("plan_time_limit", default=10.0): vol.All(
            vol.Coerce(float), vol.Range(min=0.1)
        ),
        vol.Optional("tariff", default="grid_import"): vol.Match(r"^[a-z0-9_]+$"),
        vol.Optional("export_tariff", default="grid_export"): vol.Match(r"^[a-z0-9_]+$"),
        vol.Optional("demand_charge"): _POSITIVE,
        vol.Optional("demand_period", default="month"): vol.In(("month", "day")),
        vol.Optional("peak_hint_factor", default=PEAK_HINT_FACTOR): vol.All(
            vol.Coerce(float), vol.Range(min=0, max=1)
        ),
        vol.Optional("horizon_hours", default=24): vol.All(int, vol.Range(min=1, max=72)),
        vol.Optional("default_energy_kwh", default=30.0): _POSITIVE,
        vol.Optional("default_dwell_hours", default=8.0): vol.All(
            vol.Coerce(float), vol.Range(min=0.25)
        ),
    }
)


@hookimpl
def hub_config_schema() -> Mapping[str, Any]:
    return {DOMAIN: CONFIG_SCHEMA}


@hookimpl
def hub_setup(hub: Hub, config: Mapping[str, Any]) -> None:
    if hub.site is None:
        raise RuntimeError("smart_charging needs the site's electrical tree: add `site:`")
    engine = Engine(hub, hub.site, config[DOMAIN])
    hub.data[DOMAIN] = engine
    engine.start()


@hookimpl
def hub_teardown(hub: Hub) -> None:
    engine: Engine | None = hub.data.pop(DOMAIN, None)
    if engine is not None:
        engine.stop()


@hookimpl
def hub_register_services(hub: Hub, register: Callable[..., None]) -> None:
    register_services(hub.data[DOMAIN], register)


@hookimpl
def hub_cli_commands(register: Callable[..., None]) -> None:
    cli.register_commands(register)
