"""Built-in `simulator` plugin: simulated chargers and vehicles that are real OCPP clients.

With a `simulator:` block the hub runs a site of them against its own OCPP server (the demo);
`evhub simulate` runs them standalone against any CSMS. They add no entities: the hub sees them
through OCPP like real chargers. `hub.data["simulator"].status()` shows their state for debugging.

    simulator:
      url: ws://127.0.0.1:9000/ocpp          # the charger id is appended: .../ocpp/bay_01
      meter_interval: 60
      seed: 1
      id_tags: [04A2B3C4D5, 04FFEE0011]
      arrivals: {first_within: 300, dwell: [1800, 14400]}
      chargers:
        - {id: "bay_{n:02d}", count: 4, ocpp: "1.6", connectors: 2, max_current: 32, phases: 3}
        - {id: depot_dc, ocpp: "2.0.1", connectors: 1, password: !secret depot_dc_password}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import voluptuous as vol

from hub.bus import EVENT_HUB_STARTED
from hub.core import CoreState, Hub
from hub.plugins import hookimpl
from plugins.simulator import cli
from plugins.simulator.site import DEFAULT_URL, SimulatedSite, expand_chargers

DOMAIN = "simulator"

_seconds = vol.All(vol.Coerce(float), vol.Range(min=0))


def _span(low: float, high: float) -> Any:
    def validate(value: Any) -> tuple[float, float]:
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise vol.Invalid("expected [min, max]")
        a, b = (vol.All(vol.Coerce(float), vol.Range(min=low, max=high))(v) for v in value)
        if a > b:
            raise vol.Invalid(f"min {a} is above max {b}")
        return (a, b)

    return validate


# OCPP 2.0.1's identity (identifierString, at most 48): safe in a URL path for 1.6 as well.
_IDENTITY = re.compile(r"^[A-Za-z0-9*\-_=:+|@.]{1,48}$")


def _unique_ids(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    try:
        specs = expand_chargers(entries)
    except (ValueError, KeyError, IndexError) as err:
        raise vol.Invalid(str(err)) from None
    for spec in specs:
        if not _IDENTITY.match(spec.id):
            raise vol.Invalid(f"charger id {spec.id!r}: use 1-48 of A-Z a-z 0-9 *-_=:+|@.")
    return entries


CHARGER_SCHEMA = vol.Schema(
    {
        vol.Required("id"): vol.All(str, vol.Length(min=1, max=48)),
        vol.Optional("ocpp", default="1.6"): vol.All(vol.Coerce(str), vol.In(["1.6", "2.0.1"])),
        vol.Optional("connectors", default=2): vol.All(int, vol.Range(min=1, max=32)),
        vol.Optional("max_current", default=32.0): vol.All(
            vol.Coerce(float), vol.Range(min=6, max=1000)
        ),
        vol.Optional("phases", default=3): vol.In([1, 3]),
        vol.Optional("password"): vol.All(str, vol.Length(min=1)),
        vol.Optional("count"): vol.All(int, vol.Range(min=1, max=100_000)),
    }
)

VEHICLE_SCHEMA = vol.Schema(
    {
        vol.Required("name"): str,
        vol.Required("battery_kwh"): vol.All(vol.Coerce(float), vol.Range(min=1, max=1000)),
        vol.Optional("max_ac_current", default=16.0): vol.All(
            vol.Coerce(float), vol.Range(min=6, max=63)
        ),
        vol.Optional("phases", default=3): vol.In([1, 3]),
        vol.Optional("max_dc_kw", default=50.0): vol.All(vol.Coerce(float), vol.Range(min=0)),
    }
)

ARRIVALS_SCHEMA = vol.Schema(
    {
        vol.Optional("enabled", default=True): bool,
        vol.Optional("first_within", default=600.0): _seconds,
        vol.Optional("gap", default=[900, 14_400]): _span(0, 7 * 86_400),
        vol.Optional("dwell", default=[1800, 28_800]): _span(60, 7 * 86_400),
        vol.Optional("soc", default=[10, 60]): _span(0, 100),
        vol.Optional("target_soc", default=[80, 100]): _span(0, 100),
        vol.Optional("remote_share", default=0.0): vol.All(vol.Coerce(float), vol.Range(0, 1)),
    }
)

CONFIG_SCHEMA = vol.Schema(
    {
        vol.Optional("url", default=DEFAULT_URL): vol.All(str, vol.Match(r"^wss?://")),
        vol.Required("chargers"): vol.All([CHARGER_SCHEMA], vol.Length(min=1), _unique_ids),
        vol.Optional("id_tags", default=[]): [vol.All(str, vol.Length(min=1, max=20))],
        vol.Optional("vehicles", default=[]): [VEHICLE_SCHEMA],
        vol.Optional("vehicle_specs"): str,
        vol.Optional("meter_interval", default=60.0): vol.All(vol.Coerce(float), vol.Range(min=1)),
        vol.Optional("heartbeat_interval", default=300.0): vol.All(
            vol.Coerce(float), vol.Range(min=1)
        ),
        vol.Optional("voltage", default=230.0): vol.All(vol.Coerce(float), vol.Range(100, 480)),
        vol.Optional("seed", default=1): int,
        vol.Optional("ramp", default=0.0): _seconds,
        vol.Optional("verify_ssl", default=True): bool,
        vol.Optional("ca_file"): str,
        vol.Optional("arrivals", default={}): ARRIVALS_SCHEMA,
    }
)


@hookimpl
def hub_config_schema() -> Mapping[str, Any]:
    return {DOMAIN: CONFIG_SCHEMA}


@hookimpl
def hub_setup(hub: Hub, config: Mapping[str, Any]) -> None:
    site = SimulatedSite.from_config(
        config[DOMAIN],
        clock=hub.clock,
        spawn=lambda coro, name: hub.create_task(coro, name, background=True),
        base_dir=hub.config_dir,
    )
    hub.data[DOMAIN] = site

    def start(_event: Any = None) -> None:
        hub.create_task(site.start(), "simulator start", background=True)

    # The hub's own OCPP server listens once every plugin is set up: connect after that.
    if hub.state is CoreState.RUNNING:
        start()
    else:
        hub.bus.listen_once(EVENT_HUB_STARTED, start)


@hookimpl
async def hub_teardown(hub: Hub) -> None:
    site = hub.data.pop(DOMAIN, None)
    if site is not None:
        await site.stop()


@hookimpl
def hub_cli_commands(register: Callable[..., None]) -> None:
    register("simulate", cli.HELP, cli.configure, cli.run)
