"""Price feed providers as data: each one's configuration schema, real API address, the requests
that fetch today and tomorrow, and the parser for the answers (feeds.py).

Every provider block takes `base_url` to point it elsewhere (a proxy, or a test server).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

import jinja2
import voluptuous as vol

from hub.charging.signals import TimeSeries
from plugins.tariffs import feeds


@dataclass(frozen=True, slots=True)
class Window:
    """What to ask for: local today and tomorrow, as UTC instants and local dates."""

    start: datetime
    end: datetime
    days: tuple[date, ...]

    @classmethod
    def around(cls, now: datetime, tz: tzinfo, days: int = 2) -> Window:
        today = now.astimezone(tz).date()
        dates = tuple(today + timedelta(days=i) for i in range(days))
        start = datetime.combine(today, datetime.min.time(), tzinfo=tz).astimezone(UTC)
        end_day = today + timedelta(days=days)
        end = datetime.combine(end_day, datetime.min.time(), tzinfo=tz).astimezone(UTC)
        return cls(start, end, dates)


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    params: Mapping[str, str] = field(default_factory=dict)
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None


Requests = Callable[[Mapping[str, Any], Window], list[Request]]
Parser = Callable[[bytes, Mapping[str, Any], tzinfo, str], TimeSeries]


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    base_url: str
    schema: Mapping[Any, Any]
    requests: Requests
    parse: Parser
    currency: str | None = None  # the currency its answers are in, when it has only one
    secrets: tuple[str, ...] = ()  # configuration keys never to show
    describe: Callable[[Mapping[str, Any]], str] = lambda conf: ""
    default_at: tuple[int, ...] = (13 * 60 + 15,)  # local minutes: day-ahead appears ~13:00 CET
    default_every: float | None = None  # seconds


def _zulu(t: datetime, fmt: str = "%Y-%m-%dT%H:%M:%SZ") -> str:
    return t.astimezone(UTC).strftime(fmt)


def _base(conf: Mapping[str, Any], provider: str) -> str:
    return str(conf.get("base_url") or PROVIDERS[provider].base_url).rstrip("/")


# --- ENTSO-E ---------------------------------------------------------------------------------
def _entsoe_requests(conf: Mapping[str, Any], window: Window) -> list[Request]:
    params = {
        "securityToken": conf["token"],
        "documentType": "A44",
        "in_Domain": conf["area"],
        "out_Domain": conf["area"],
        "periodStart": _zulu(window.start, "%Y%m%d%H%M"),
        "periodEnd": _zulu(window.end, "%Y%m%d%H%M"),
    }
    return [Request(_base(conf, "entsoe"), params)]


# --- Nord Pool -------------------------------------------------------------------------------
def _nordpool_requests(conf: Mapping[str, Any], window: Window) -> list[Request]:
    # One delivery day per request; a day not yet auctioned answers 204 No Content.
    return [
        Request(
            _base(conf, "nordpool"),
            {
                "date": day.isoformat(),
                "market": "DayAhead",
                "deliveryArea": conf["area"],
                "currency": conf["currency"],
            },
        )
        for day in window.days
    ]


# --- aWATTar ---------------------------------------------------------------------------------
def _awattar_requests(conf: Mapping[str, Any], window: Window) -> list[Request]:
    base = conf.get("base_url") or f"https://api.awattar.{conf['country']}/v1/marketdata"
    ms = {"start": window.start, "end": window.end}
    return [Request(base.rstrip("/"), {k: str(int(t.timestamp() * 1000)) for k, t in ms.items()})]


# --- Octopus ---------------------------------------------------------------------------------
def _octopus_requests(conf: Mapping[str, Any], window: Window) -> list[Request]:
    path = (
        f"/v1/products/{conf['product']}/electricity-tariffs/{conf['tariff_code']}"
        "/standard-unit-rates/"
    )
    params = {
        "period_from": _zulu(window.start),
        "period_to": _zulu(window.end),
        "page_size": "1500",  # two days of half hours fit in one page: no paging
    }
    return [Request(_base(conf, "octopus") + path, params)]


# --- Tibber ----------------------------------------------------------------------------------
TIBBER_QUERY = """{ viewer { homes { id currentSubscription { priceInfo%s {
  today { total energy tax startsAt currency }
  tomorrow { total energy tax startsAt currency } } } } } }"""


def _tibber_requests(conf: Mapping[str, Any], window: Window) -> list[Request]:
    resolution = conf.get("resolution")
    query = TIBBER_QUERY % (f"(resolution: {resolution.upper()})" if resolution else "")
    headers = {"Authorization": f"Bearer {conf['token']}"}
    return [Request(_base(conf, "tibber"), {}, "POST", headers, {"query": query})]


# --- EnergyZero ------------------------------------------------------------------------------
def _energyzero_requests(conf: Mapping[str, Any], window: Window) -> list[Request]:
    params = {
        "fromDate": _zulu(window.start, "%Y-%m-%dT%H:%M:%S.000Z"),
        "tillDate": _zulu(window.end - timedelta(milliseconds=1), "%Y-%m-%dT%H:%M:%S.999Z"),
        "interval": "4",  # hours
        "usageType": "1",  # electricity
        "inclBtw": "true" if conf["vat_included"] else "false",
    }
    return [Request(_base(conf, "energyzero"), params)]


# --- generic ---------------------------------------------------------------------------------
def _generic_requests(conf: Mapping[str, Any], window: Window) -> list[Request]:
    body = conf.get("body")
    return [Request(conf["url"], conf["params"], conf["method"], conf["headers"], body)]


def template(value: Any) -> str:
    """A jinja2 template string, checked for syntax now (it runs sandboxed later)."""
    if not isinstance(value, str) or not value.strip():
        raise vol.Invalid("expected a template string")
    try:
        feeds.compile_template(value)
    except jinja2.TemplateSyntaxError as err:
        raise vol.Invalid(f"template syntax error: {err.message} (line {err.lineno})") from None
    return value


_URL = vol.All(str, vol.Match(r"^https?://\S+$", msg="expected an http:// or https:// URL"))
_BASE = {vol.Optional("base_url"): _URL}
_GENERIC = {
    vol.Required("url"): _URL,
    vol.Optional("method", default="GET"): vol.In(("GET", "POST")),
    vol.Optional("headers", default={}): {str: vol.Coerce(str)},
    vol.Optional("params", default={}): {str: vol.Coerce(str)},
    vol.Optional("body"): vol.Any(dict, list),
    vol.Required("value_template"): template,
    vol.Required("time_template"): template,
    vol.Optional("end_template"): template,
    vol.Optional("resolution"): vol.All(
        int, vol.Range(min=1, max=1440), lambda minutes: timedelta(minutes=minutes)
    ),
}
_EIC = vol.All(str, vol.Match(r"^[0-9A-Z][0-9A-Z\-]{15}$", msg="expected a 16-character EIC code"))
_CURRENCY = vol.All(str, vol.Match(r"^[A-Z]{3}$", msg="expected a currency code like EUR"))


def _parse_json(body: bytes, conf: Mapping[str, Any], tz: tzinfo, unit: str) -> TimeSeries:
    return feeds.parse_json(body, conf, tz, unit)


def _parse_csv(body: bytes, conf: Mapping[str, Any], tz: tzinfo, unit: str) -> TimeSeries:
    return feeds.parse_csv(body, conf, tz, unit)


PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider(
            "entsoe",
            "https://web-api.tp.entsoe.eu/api",
            {vol.Required("token"): vol.Coerce(str), vol.Required("area"): _EIC, **_BASE},
            _entsoe_requests,
            lambda body, conf, tz, unit: feeds.parse_entsoe(body),
            "EUR",
            ("token",),
            lambda conf: f"entsoe {conf['area']}",
        ),
        Provider(
            "nordpool",
            "https://dataportal-api.nordpoolgroup.com/api/DayAheadPrices",
            {
                vol.Required("area"): vol.All(str, vol.Match(r"^[A-Z0-9\-]{2,12}$")),
                vol.Optional("currency", default="EUR"): _CURRENCY,
                **_BASE,
            },
            _nordpool_requests,
            lambda body, conf, tz, unit: feeds.parse_nordpool(body, conf["area"]),
            describe=lambda conf: f"nordpool {conf['area']}",
        ),
        Provider(
            "awattar",
            "https://api.awattar.at/v1/marketdata",
            {vol.Required("country"): vol.In(("at", "de")), **_BASE},
            _awattar_requests,
            lambda body, conf, tz, unit: feeds.parse_awattar(body),
            "EUR",
            describe=lambda conf: f"awattar {conf['country']}",
        ),
        Provider(
            "octopus",
            "https://api.octopus.energy",
            {
                vol.Required("product"): vol.All(str, vol.Match(r"^[A-Za-z0-9\-_]+$")),
                vol.Required("tariff_code"): vol.All(str, vol.Match(r"^[A-Za-z0-9\-_]+$")),
                vol.Optional("include_vat", default=True): bool,
                **_BASE,
            },
            _octopus_requests,
            lambda body, conf, tz, unit: feeds.parse_octopus(body, include_vat=conf["include_vat"]),
            "GBP",
            describe=lambda conf: f"octopus {conf['tariff_code']}",
            default_at=(16 * 60 + 15,),  # Agile prices for tomorrow appear after 16:00 UK time
        ),
        Provider(
            "tibber",
            "https://api.tibber.com/v1-beta/gql",
            {
                vol.Required("token"): vol.Coerce(str),
                vol.Optional("home_id"): str,
                vol.Optional("price", default="total"): vol.In(("total", "energy")),
                vol.Optional("resolution"): vol.In(("hourly", "quarter_hourly")),
                **_BASE,
            },
            _tibber_requests,
            lambda body, conf, tz, unit: feeds.parse_tibber(
                body, home_id=conf.get("home_id"), field=conf["price"]
            ),
            secrets=("token",),
            describe=lambda conf: "tibber",
        ),
        Provider(
            "energyzero",
            "https://api.energyzero.nl/v1/energyprices",
            {vol.Optional("vat_included", default=True): bool, **_BASE},
            _energyzero_requests,
            lambda body, conf, tz, unit: feeds.parse_energyzero(body),
            "EUR",
            describe=lambda conf: "energyzero" + (" incl. VAT" if conf["vat_included"] else ""),
        ),
        Provider(
            "json",
            "",
            {**_GENERIC, vol.Optional("items", default=""): str},
            _generic_requests,
            _parse_json,
            secrets=("headers", "params"),
            describe=lambda conf: "json",
            default_at=(),
            default_every=3600.0,
        ),
        Provider(
            "csv",
            "",
            {**_GENERIC, vol.Optional("delimiter", default=","): vol.All(str, vol.Length(1, 1))},
            _generic_requests,
            _parse_csv,
            secrets=("headers", "params"),
            describe=lambda conf: "csv",
            default_at=(),
            default_every=3600.0,
        ),
    )
}


def secret_values(provider: Provider, conf: Mapping[str, Any]) -> list[str]:
    """Strings that must never reach a log line, an event or an attribute."""
    values: list[str] = []
    for key in provider.secrets:
        value = conf.get(key)
        items = value.values() if isinstance(value, Mapping) else [value]
        values += [str(v) for v in items if v is not None and len(str(v)) >= 4]
    return values
