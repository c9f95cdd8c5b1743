"""Built-in `tariffs` plugin: energy prices from time-of-use rules and day-ahead feeds, published
as `prices.<name>` signals and `tariff.<name>` entities. docs/tariffs.md has the whole story.

    tariffs:
      - name: grid_import            # -> tariff.grid_import, signal prices.grid_import
        kind: import                 # import (default) | export
        currency: EUR                # default: the feed's own, else hub.currency
        source:                      # exactly one of:
          nordpool: {area: SE3, currency: SEK}
          # tou: {periods: [...]}    inline rules (see tou.py), or tou_file: rules.yaml
          # acnportal: sce_tou_ev_4.json
          # entsoe: {token: !secret entsoe, area: 10Y1001A1001A82H}
          # awattar: {country: at} | octopus: {product: ..., tariff_code: ...}
          # tibber: {token: !secret tibber} | energyzero: {}
          # json / csv: {url: ..., value_template: ..., time_template: ...}
        markup: 0.02                 # price = (spot + markup) * (1 + vat) + fixed
        vat: 0.19
        fixed: 0.0
        refresh: {at: ["13:15"], every: 1h, retry: 15min, backoff: 1min, timeout: 30}
        demand_charges: [{rate: 9.5, basis: monthly, days: [weekday], start: "08:00"}]

Every provider block takes `base_url` (default: the provider's real API). Service:
`tariffs.refresh` {name?}. Template functions: `price_at`, `cheapest_slots`. Events:
`tariff_fetch_failed`, `tariff_fetch_recovered`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import voluptuous as vol

from hub.charging.signals import SignalStore, TimeSeries
from hub.core import Hub
from hub.plugins import hookimpl
from hub.services import ServiceCall
from plugins.tariffs import prices
from plugins.tariffs.feeds import parse_time
from plugins.tariffs.fetch import EVENT_FETCH_FAILED, EVENT_FETCH_RECOVERED, Http, Tariff
from plugins.tariffs.providers import PROVIDERS
from plugins.tariffs.tou import BASES, DAY_NAMES, RULES_SCHEMA, as_list, time_of_day

DOMAIN = "tariffs"

__all__ = ["CONFIG_SCHEMA", "DOMAIN", "EVENT_FETCH_FAILED", "EVENT_FETCH_RECOVERED", "Tariffs"]

_DURATION = re.compile(r"^(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)min)?\s*(?:(\d+)s)?$")


def duration(value: Any) -> float:
    """Seconds, as a number or as '1h', '15min', '1h30min', '90s', '2d'."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value).strip()) if isinstance(value, str) else None
        if not match or not any(match.groups()):
            raise vol.Invalid(f"expected seconds or a duration like '15min' or '1h', got {value!r}")
        d, h, m, s = (int(g or 0) for g in match.groups())
        seconds = float(((d * 24 + h) * 60 + m) * 60 + s)
    if seconds <= 0:
        raise vol.Invalid("a duration must be positive")
    return seconds


def _at_least(minimum: float) -> Any:
    return vol.All(duration, vol.Range(min=minimum, msg=f"at least {minimum:g} seconds"))


REFRESH_SCHEMA = vol.Schema(
    {
        vol.Optional("at"): vol.All(as_list, [time_of_day]),
        vol.Optional("every"): _at_least(60),
        vol.Optional("retry", default=900.0): _at_least(10),
        vol.Optional("backoff", default=60.0): _at_least(1),
        vol.Optional("timeout", default=30.0): vol.All(vol.Coerce(float), vol.Range(1, 300)),
    }
)

OWN_DEMAND_CHARGE = vol.Schema(
    {
        vol.Optional("name"): str,
        vol.Required("rate"): vol.All(vol.Coerce(float), vol.Range(min=0, max=10_000)),
        vol.Optional("basis", default="monthly"): vol.In(BASES, msg=f"expected one of {BASES}"),
        vol.Optional("days"): [vol.In(("weekday", "weekend", *DAY_NAMES))],
        vol.Optional("start"): time_of_day,
        vol.Optional("end"): time_of_day,
    }
)

_SOURCES: dict[Any, Any] = {
    vol.Optional("tou"): RULES_SCHEMA,
    vol.Optional("tou_file"): vol.All(str, vol.Length(min=1)),
    vol.Optional("acnportal"): vol.All(str, vol.Length(min=1)),
    **{vol.Optional(name): vol.Schema(p.schema) for name, p in PROVIDERS.items()},
}


def _exactly_one(source: dict[str, Any]) -> dict[str, Any]:
    if len(source) != 1:
        names = ", ".join(str(k) for k in _SOURCES)
        found = ", ".join(source) or "none"
        raise vol.Invalid(f"give exactly one source of: {names} (found {found})")
    return source


def _check_tariff(conf: dict[str, Any]) -> dict[str, Any]:
    ((key, block),) = conf["source"].items()
    provider = PROVIDERS.get(key)
    own = provider.currency if provider else None
    own = own or (block.get("currency") if provider else None)
    if own and conf.get("currency", own) != own:
        raise vol.Invalid(f"{key} answers in {own}", path=["currency"])
    if provider is None and "refresh" in conf:
        raise vol.Invalid("static rules need no refresh (re-expanded every midnight)", ["refresh"])
    if conf["kind"] == "export" and key == "acnportal":
        raise vol.Invalid("acnportal tariffs have import prices only", path=["kind"])
    no_export = key == "tou" and not any("export_price" in p for p in block["periods"])
    if conf["kind"] == "export" and no_export:
        raise vol.Invalid("kind export, but no period has an export_price", ["source", "tou"])
    return conf


TARIFF_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Required("name"): vol.All(
                str, vol.Match(r"^[a-z0-9_]+$", msg="lower case letters, digits and _ only")
            ),
            vol.Optional("kind", default="import"): vol.In(("import", "export")),
            vol.Optional("currency"): vol.All(str, vol.Match(r"^[A-Z]{3}$", msg="like EUR")),
            vol.Required("source"): vol.All(vol.Schema(_SOURCES), _exactly_one),
            vol.Optional("markup", default=0.0): vol.Coerce(float),
            vol.Optional("vat", default=0.0): vol.All(
                vol.Coerce(float), vol.Range(min=0, max=1, msg="a fraction: 0.19 for 19 %")
            ),
            vol.Optional("fixed", default=0.0): vol.Coerce(float),
            vol.Optional("refresh"): REFRESH_SCHEMA,
            vol.Optional("demand_charges", default=[]): [OWN_DEMAND_CHARGE],
        }
    ),
    _check_tariff,
)


def _unique_names(tariffs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    for i, tariff in enumerate(tariffs):
        if tariff["name"] in seen:
            raise vol.Invalid(f"a second tariff named {tariff['name']!r}", path=[i, "name"])
        seen.add(tariff["name"])
    return tariffs


CONFIG_SCHEMA = vol.All(
    lambda value: [] if value in (None, {}) else value, [TARIFF_SCHEMA], _unique_names
)


class Tariffs:
    """The plugin's state on one hub: its tariffs and their shared HTTP session."""

    def __init__(self, hub: Hub, conf: list[Mapping[str, Any]]) -> None:
        self.hub = hub
        self.http = Http()
        self.tariffs = {t["name"]: Tariff(hub, t, self.http) for t in conf}

    async def start(self) -> None:
        for tariff in self.tariffs.values():
            tariff.load()  # a broken rules file stops set-up with its file, line and key
        await self.hub.entities.add(DOMAIN, [t.entity for t in self.tariffs.values()])
        for tariff in self.tariffs.values():
            tariff.start()

    async def stop(self) -> None:
        for tariff in self.tariffs.values():
            await tariff.stop()
        await self.http.close()


# --- template functions: the template environment binds `hub` (they carry pass_hub) ----------
def _pass_hub(function: Callable[..., Any]) -> Callable[..., Any]:
    function.pass_hub = True  # type: ignore[attr-defined]
    return function


def _series(hub: Hub, entity_id: str) -> TimeSeries | None:
    state = hub.states.get(entity_id)
    signal = state.attributes.get("signal") if state is not None else None
    return SignalStore.of(hub).get(signal) if isinstance(signal, str) else None


def _instant(hub: Hub, when: datetime | str | None) -> datetime:
    """Now, an aware or naive (local) datetime, or an ISO string (naive: local)."""
    if when is None:
        return hub.now()
    if isinstance(when, datetime):
        return when if when.tzinfo else when.replace(tzinfo=hub.time_zone)
    return parse_time(when, hub.time_zone)


@_pass_hub
def template_price_at(hub: Hub, entity_id: str, when: datetime | str | None = None) -> float | None:
    """`price_at('tariff.grid_import', when)`: the price at `when` (default now), or None."""
    return prices.price_at(_series(hub, entity_id), _instant(hub, when))


@_pass_hub
def template_cheapest_slots(
    hub: Hub, entity_id: str, hours: float = 1, within_hours: float = 24
) -> list[dict[str, Any]]:
    """`cheapest_slots('tariff.grid_import', 3, 12)`: the cheapest `hours` in the next
    `within_hours`, in time order, as [{start, end, price}] (local times)."""
    series = _series(hub, entity_id)
    if series is None:
        return []
    now = hub.now()
    picked = prices.cheapest_hours(series, now, now + timedelta(hours=within_hours), hours)
    tz = hub.time_zone
    return [
        {"start": s.start.astimezone(tz), "end": s.end.astimezone(tz), "price": s.value}
        for s in picked
    ]


# --- hooks -----------------------------------------------------------------------------------
@hookimpl
def hub_config_schema() -> Mapping[str, Any]:
    return {DOMAIN: CONFIG_SCHEMA}


@hookimpl
async def hub_setup(hub: Hub, config: Mapping[str, Any]) -> None:
    plugin = Tariffs(hub, config[DOMAIN])
    hub.data[DOMAIN] = plugin
    await plugin.start()


@hookimpl
async def hub_teardown(hub: Hub) -> None:
    plugin: Tariffs | None = hub.data.pop(DOMAIN, None)
    if plugin is not None:
        await plugin.stop()


@hookimpl
def hub_register_services(hub: Hub, register: Callable[..., None]) -> None:
    plugin: Tariffs = hub.data[DOMAIN]

    async def refresh(call: ServiceCall) -> dict[str, Any]:
        names = [call.data["name"]] if "name" in call.data else list(plugin.tariffs)
        return {name: await plugin.tariffs[name].refresh() for name in names}

    register(
        DOMAIN,
        "refresh",
        refresh,
        {vol.Optional("name"): vol.In(sorted(plugin.tariffs))},
        "Fetch (or re-expand) the prices of one tariff, or of all, now.",
    )


@hookimpl
def hub_template_functions(register: Callable[..., None]) -> None:
    # `price_at` and `cheapest_slots` are the core's (hub/automation/template_functions.py);
    # these give a tariff's view: periods with their prices, in local time.
    register("tariff_price", template_price_at)
    register("cheapest_periods", template_cheapest_slots)
