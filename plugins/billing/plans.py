"""Price plans (energy by time-of-use, time, idle, fees, limits, tax, subscriptions) and who gets
which: the most specific assignment wins (account, token group, organisation, charger, site).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, time
from decimal import Decimal
from typing import Any

import voluptuous as vol

from plugins.billing.money import HUNDRED, ZERO, dec, money_schema

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CHARGEABLE = ("energy", "time", "idle", "session_fee")


def _clock_time(value: Any) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 17:00 as the sexagesimal number 1020 (minutes).
        hours, minutes = divmod(value, 60)
        if hours > 24:
            raise vol.Invalid(f'{value!r} is not a time of day (write it quoted: "17:00")')
        return time(0, 0) if hours == 24 else time(hours, minutes)
    text = str(value).strip()
    if text in ("24:00", "24:00:00"):
        return time(0, 0)  # the end of the day is midnight
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise vol.Invalid(f'{value!r} is not a time of day like "17:00"') from None


def _days(value: Any) -> tuple[str, ...]:
    days = [str(d).strip().lower()[:3] for d in (value if isinstance(value, list) else [value])]
    unknown = [d for d in days if d not in DAYS]
    if unknown:
        raise vol.Invalid(f"unknown days {unknown}: use {', '.join(DAYS)}")
    return tuple(days)


PERIOD_SCHEMA = vol.Schema(
    {
        vol.Required("name"): str,
        vol.Required("start"): _clock_time,
        vol.Required("end"): _clock_time,
        vol.Optional("days", default=list(DAYS)): _days,
        vol.Required("price"): money_schema(),
    }
)


def _energy(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        value = {"price": value}
    return vol.Schema(
        {
            vol.Optional("price", default=ZERO): money_schema(),
            vol.Optional("periods", default=[]): [PERIOD_SCHEMA],
        }
    )(dict(value))


def _percent(value: Any) -> Decimal:
    result = money_schema()(value)
    if result > HUNDRED:
        raise vol.Invalid("a percentage is at most 100")
    return result


PLAN_SCHEMA = vol.Schema(
    {
        vol.Optional("name"): str,
        vol.Optional("currency"): vol.All(str, vol.Upper, vol.Match(r"^[A-Z]{3}$")),
        vol.Optional("tax_rate", default=ZERO): _percent,
        vol.Optional("prices_include_tax", default=False): bool,
        vol.Optional("session_fee", default=ZERO): money_schema(),
        vol.Optional("energy", default={}): _energy,
        vol.Optional("time", default={}): {
            vol.Optional("per_minute", default=ZERO): money_schema()
        },
        vol.Optional("idle", default={}): {
            vol.Optional("per_minute", default=ZERO): money_schema(),
            vol.Optional("grace_minutes", default=0): vol.All(vol.Coerce(float), vol.Range(min=0)),
            vol.Optional("max_amount"): money_schema(),
        },
        # Average power below which an interval between readings counts as not charging.
        vol.Optional("idle_power_w", default=50): vol.All(vol.Coerce(float), vol.Range(min=0)),
        vol.Optional("minimum"): money_schema(),
        vol.Optional("maximum"): money_schema(),
        vol.Optional("discounts", default=[]): [
            {
                vol.Required("percent"): _percent,
                vol.Optional("on", default="all"): vol.In((*CHARGEABLE, "all")),
                vol.Optional("name", default="Discount"): str,
            }
        ],
        vol.Optional("subscription"): {
            vol.Optional("monthly_fee", default=ZERO): money_schema(),
            vol.Optional("included_kwh", default=ZERO): money_schema(),
            vol.Optional("name"): str,
        },
    }
)

ASSIGN_SCHEMA = vol.Schema(
    {
        vol.Optional("default"): str,
        vol.Optional("sites", default={}): {str: str},
        vol.Optional("chargers", default={}): {str: str},
        vol.Optional("organisations", default={}): {str: str},
        vol.Optional("groups", default={}): {str: str},
        vol.Optional("accounts", default={}): {str: str},
    }
)


@dataclass(frozen=True, slots=True)
class TouPeriod:
    name: str
    start: time
    end: time
    days: tuple[str, ...]
    price: Decimal

    def matches(self, local: datetime) -> bool:
        """Whether a local wall-clock time falls in this period; a period across midnight
        belongs to the day it started on (Friday 22:00-06:00 includes Saturday 03:00)."""
        t, weekday = local.time(), local.weekday()
        if self.start == self.end:
            return DAYS[weekday] in self.days  # all day
        if self.start < self.end or self.end == time(0, 0):
            inside = t >= self.start and (self.end == time(0, 0) or t < self.end)
            return inside and DAYS[weekday] in self.days
        if t >= self.start:
            return DAYS[weekday] in self.days
        return t < self.end and DAYS[(weekday - 1) % 7] in self.days


@dataclass(frozen=True, slots=True)
class Discount:
    percent: Decimal
    on: str
    name: str


@dataclass(frozen=True, slots=True)
class Subscription:
    monthly_fee: Decimal
    included_kwh: Decimal
    name: str


@dataclass(frozen=True, slots=True)
class PricePlan:
    """One plan; amounts are net unless `prices_include_tax` (then every price is gross)."""

    name: str
    currency: str
    tax_rate: Decimal = ZERO  # percent
    prices_include_tax: bool = False
    session_fee: Decimal = ZERO
    energy_price: Decimal = ZERO  # per kWh outside every period
    periods: tuple[TouPeriod, ...] = ()
    time_per_minute: Decimal = ZERO
    idle_per_minute: Decimal = ZERO
    idle_grace_minutes: Decimal = ZERO
    idle_max: Decimal | None = None
    idle_power_w: Decimal = Decimal(50)
    minimum: Decimal | None = None
    maximum: Decimal | None = None
    discounts: tuple[Discount, ...] = ()
    subscription: Subscription | None = None
    label: str = ""

    def energy_period(self, local: datetime) -> tuple[str, Decimal]:
        """(period name, price per kWh) at a local time: the first matching period wins."""
        for period in self.periods:
            if period.matches(local):
                return period.name, period.price
        return "standard", self.energy_price

    @classmethod
    def from_config(cls, name: str, conf: Mapping[str, Any], currency: str) -> PricePlan:
        idle, sub = conf["idle"], conf.get("subscription")
        return cls(
            name=name,
            label=conf.get("name", name),
            currency=conf.get("currency", currency),
            tax_rate=conf["tax_rate"],
            prices_include_tax=conf["prices_include_tax"],
            session_fee=conf["session_fee"],
            energy_price=conf["energy"]["price"],
            periods=tuple(TouPeriod(**p) for p in conf["energy"]["periods"]),
            time_per_minute=conf["time"]["per_minute"],
            idle_per_minute=idle["per_minute"],
            idle_grace_minutes=dec(idle["grace_minutes"]),
            idle_max=idle.get("max_amount"),
            idle_power_w=dec(conf["idle_power_w"]),
            minimum=conf.get("minimum"),
            maximum=conf.get("maximum"),
            discounts=tuple(Discount(**d) for d in conf["discounts"]),
            subscription=(
                Subscription(sub["monthly_fee"], sub["included_kwh"], sub.get("name", name))
                if sub
                else None
            ),
        )

    def snapshot(self) -> dict[str, Any]:
        """The plan as plain JSON data: a CDR keeps the plan it was priced with."""
        return _plain(asdict(self))

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> PricePlan:
        d = dict(data)
        for key in (
            "tax_rate",
            "session_fee",
            "energy_price",
            "time_per_minute",
            "idle_per_minute",
            "idle_grace_minutes",
            "idle_power_w",
        ):
            d[key] = dec(d[key])
        for key in ("idle_max", "minimum", "maximum"):
            d[key] = None if d.get(key) is None else dec(d[key])
        d["periods"] = tuple(
            TouPeriod(
                p["name"],
                time.fromisoformat(p["start"]),
                time.fromisoformat(p["end"]),
                tuple(p["days"]),
                dec(p["price"]),
            )
            for p in d.get("periods", ())
        )
        d["discounts"] = tuple(
            Discount(dec(x["percent"]), x["on"], x["name"]) for x in d.get("discounts", ())
        )
        sub = d.get("subscription")
        d["subscription"] = (
            None
            if sub is None
            else Subscription(dec(sub["monthly_fee"]), dec(sub["included_kwh"]), sub["name"])
        )
        return cls(**d)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


FREE = "free"  # the plan used when nothing is assigned and no default is configured


@dataclass(frozen=True, slots=True)
class Who:
    """Whom a session is billed to, as the accounts plugin answered (or unknown)."""

    account_id: str | None = None
    organisation_id: str | None = None
    group: str | None = None
    plan: str | None = None
    name: str | None = None

    @property
    def known(self) -> bool:
        return self.account_id is not None

    @property
    def bill_to(self) -> str | None:
        """A fleet's sessions are invoiced to its organisation, a driver's to the account."""
        return self.organisation_id or self.account_id


@dataclass(slots=True)
class PlanBook:
    plans: dict[str, PricePlan]
    assign: Mapping[str, Any] = field(default_factory=dict)

    def resolve(self, who: Who, charger_id: str, entity_id: str | None, site: str | None) -> str:
        """The plan name for a session: account > token group > organisation > charger > site >
        default. A contract with the customer beats the list price of the place."""
        a = self.assign
        candidates = (
            who.plan if who.plan in self.plans else None,
            a.get("accounts", {}).get(who.account_id or ""),
            a.get("groups", {}).get(who.group or ""),
            a.get("organisations", {}).get(who.organisation_id or ""),
            a.get("chargers", {}).get(entity_id or "") or a.get("chargers", {}).get(charger_id),
            a.get("sites", {}).get(site or ""),
            a.get("default"),
        )
        for name in candidates:
            if name:
                return name
        return FREE

    def get(self, name: str, currency: str) -> PricePlan:
        plan = self.plans.get(name)
        return plan if plan is not None else PricePlan(FREE, currency, label="Free of charge")


def check_assignments(plans: Mapping[str, Any], assign: Mapping[str, Any]) -> list[str]:
    """Plan names an assignment refers to that no plan defines."""
    names = [assign.get("default")] if assign.get("default") else []
    for key in ("sites", "chargers", "organisations", "groups", "accounts"):
        names += list(assign.get(key, {}).values())
    return sorted({n for n in names if n not in plans and n != FREE})
