"""Time-of-use tariff rules (seasons, day types, holidays, periods, demand charges) and their
expansion into a price TimeSeries for any window, in any time zone, across DST changes.

The rule format, as written in YAML (inline under `tou:` or in a `tou_file:`):

    time_zone: America/Los_Angeles   # optional; the hub's time zone by default
    holidays:                        # optional
      calendar: us_utility           # named calendars: de, at, us_utility (one or a list)
      dates: [2026-12-24, "12-31"]   # a date once, or MM-DD every year
    seasons:                         # optional; MM-DD, both ends included, may wrap the year
      summer: {start: "06-01", end: "09-30"}
      winter: {start: "10-01", end: "05-31"}
    periods:                         # the first period that matches an instant sets its price
      - name: on_peak
        seasons: [summer]            # default: all year
        days: [weekday]              # weekday | weekend | holiday | mon..sun; default: every day
        start: "16:00"               # local wall time; default 00:00
        end: "21:00"                 # default 24:00; end before start wraps past midnight
        price: 0.49                  # currency/kWh bought (import)
        export_price: 0.05           # currency/kWh sold (export); optional
      - name: off_peak
        price: 0.13
    demand_charges:
      - name: on_peak_demand
        rate: 15.51                  # currency per kW of the highest 15-minute demand
        basis: monthly               # monthly | daily (local calendar month / day)
        periods: [on_peak]           # optional: only demand while these periods are in force
                                     # counts; `seasons`/`days`/`start`/`end` narrow it too

`weekday` is Monday to Friday unless a holiday; `weekend` is Saturday and Sunday; `holiday` is any
listed holiday; day names match whatever the holiday list says. Days and seasons are those of the
instant itself, so a 22:00-06:00 period on `weekday` covers Friday 22:00 to Saturday 00:00 and
Monday 00:00 to 06:00. A wall time that a DST change skips never happens; one it repeats happens
twice (a 01:00-02:00 period lasts two hours on the night clocks go back).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import voluptuous as vol

from hub.charging.signals import Slot, TimeSeries
from plugins.tariffs.holidays import CALENDARS, Holidays
from plugins.tariffs.prices import split

DAY = 1440  # minutes
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_TYPES = ("weekday", "weekend", "holiday", *DAY_NAMES)
BASES = ("monthly", "daily")
_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")
_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")
_MMDD = re.compile(r"^(\d{1,2})-(\d{1,2})$")


# --- validators ------------------------------------------------------------------------------
def time_of_day(value: Any) -> int:
    """'HH:MM' (00:00 to 24:00) as minutes after midnight.

    YAML 1.1 reads an unquoted 16:00 as the integer 960 (base 60), which is exactly the minutes,
    so both spellings work; it never does that below 1:00, so a small integer is a mistake.
    """
    if isinstance(value, int) and not isinstance(value, bool) and 60 <= value <= DAY:
        return value
    match = _HHMM.match(str(value).strip()) if isinstance(value, str) else None
    if match:
        hours, minutes = int(match[1]), int(match[2])
        if minutes < 60 and (hours < 24 or (hours, minutes) == (24, 0)):
            return hours * 60 + minutes
    raise vol.Invalid(f"expected a time of day 'HH:MM' (00:00 to 24:00), got {value!r}")


def month_day(value: Any) -> tuple[int, int]:
    """'MM-DD' (any year, 02-29 allowed) as (month, day)."""
    match = _MMDD.match(value.strip()) if isinstance(value, str) else None
    if match:
        try:
            date(2000, int(match[1]), int(match[2]))  # a leap year: 02-29 is a valid MM-DD
            return int(match[1]), int(match[2])
        except ValueError:
            pass
    raise vol.Invalid(f"expected a date 'MM-DD', got {value!r}")


def holiday_date(value: Any) -> date | tuple[int, int]:
    """A date (YYYY-MM-DD, once) or an every-year 'MM-DD'."""
    if isinstance(value, datetime):
        raise vol.Invalid(f"expected a date, not a date and time: {value!r}")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    try:
        return month_day(value)
    except vol.Invalid:
        raise vol.Invalid(f"expected a date YYYY-MM-DD or MM-DD, got {value!r}") from None


def time_zone(value: Any) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise vol.Invalid(f"unknown time zone {value!r} (IANA, like Europe/Berlin)") from None
    return str(value)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _list_of(validator: Any) -> Any:
    """A list of `validator`, or one bare value meaning a list of one."""
    return vol.All(as_list, [validator])


_WINDOW = {
    vol.Optional("seasons"): _list_of(str),
    vol.Optional("days"): _list_of(vol.In(DAY_TYPES, msg=f"expected one of {DAY_TYPES}")),
    vol.Optional("start"): time_of_day,
    vol.Optional("end"): time_of_day,
}
PRICE = vol.All(vol.Coerce(float), vol.Range(min=-100, max=100))
RATE = vol.All(vol.Coerce(float), vol.Range(min=0, max=10_000))

PERIOD_SCHEMA = vol.Schema(
    {
        vol.Optional("name"): vol.All(str, vol.Match(_NAME, msg="letters, digits, _ and - only")),
        **_WINDOW,
        vol.Optional("price"): PRICE,
        vol.Optional("export_price"): PRICE,
    }
)
DEMAND_CHARGE_SCHEMA = vol.Schema(
    {
        vol.Optional("name"): str,
        vol.Required("rate"): RATE,
        vol.Optional("basis", default="monthly"): vol.In(BASES, msg=f"expected one of {BASES}"),
        vol.Optional("periods"): _list_of(str),
        **_WINDOW,
    }
)
SEASON_SCHEMA = vol.Schema({vol.Required("start"): month_day, vol.Required("end"): month_day})
HOLIDAYS_SCHEMA = vol.Schema(
    {
        vol.Optional("calendar"): _list_of(
            vol.In(tuple(CALENDARS), msg=f"unknown calendar: known are {', '.join(CALENDARS)}")
        ),
        vol.Optional("dates", default=[]): _list_of(holiday_date),
    }
)


def _check_references(rules: dict[str, Any]) -> dict[str, Any]:
    """Names used must be defined, and every period must say something."""
    seasons = set(rules.get("seasons", {}))
    names = {p["name"] for p in rules["periods"] if "name" in p}
    entries = [("periods", i, p) for i, p in enumerate(rules["periods"])]
    entries += [("demand_charges", i, c) for i, c in enumerate(rules.get("demand_charges", []))]
    for key, i, entry in entries:
        for season in entry.get("seasons", []):
            if season not in seasons:
                known = ", ".join(sorted(seasons)) or "none defined"
                raise vol.Invalid(f"unknown season {season!r} ({known})", path=[key, i, "seasons"])
        span = (entry.get("start", 0), entry.get("end", DAY))
        if span != (0, DAY) and span[0] % DAY == span[1] % DAY:
            raise vol.Invalid("start and end are the same time", path=[key, i, "end"])
        for period in entry.get("periods", []):
            if period not in names:
                raise vol.Invalid(f"no period is named {period!r}", path=[key, i, "periods"])
        if key == "periods" and "price" not in entry and "export_price" not in entry:
            raise vol.Invalid("a period needs a price or an export_price", path=[key, i])
    return rules


RULES_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Optional("time_zone"): time_zone,
            vol.Optional("holidays"): HOLIDAYS_SCHEMA,
            vol.Optional("seasons", default={}): {str: SEASON_SCHEMA},
            vol.Required("periods"): vol.All([PERIOD_SCHEMA], vol.Length(min=1)),
            vol.Optional("demand_charges", default=[]): [DEMAND_CHARGE_SCHEMA],
        }
    ),
    _check_references,
)


# --- the model -------------------------------------------------------------------------------
def _in_season(md: tuple[int, int], start: tuple[int, int], end: tuple[int, int]) -> bool:
    return start <= md <= end if start <= end else md >= start or md <= end


@dataclass(frozen=True, slots=True)
class When:
    """When an entry applies: seasons, day types and a wall-clock window (minutes)."""

    seasons: frozenset[str] = frozenset()  # empty: all year
    days: frozenset[str] = frozenset()  # empty: every day
    start: int = 0
    end: int = DAY

    @classmethod
    def from_config(cls, conf: Mapping[str, Any]) -> When:
        return cls(
            frozenset(conf.get("seasons", ())),
            frozenset(conf.get("days", ())),
            conf.get("start", 0),
            conf.get("end", DAY),
        )

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.seasons:
            out["seasons"] = sorted(self.seasons)
        if self.days:
            out["days"] = sorted(self.days, key=DAY_TYPES.index)
        if (self.start, self.end) != (0, DAY):
            out["start"], out["end"] = _hhmm(self.start), _hhmm(self.end)
        return out

    def matches_minute(self, minute: int) -> bool:
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end  # wraps past midnight


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True, slots=True)
class Period:
    name: str
    when: When
    price: float | None = None
    export_price: float | None = None


@dataclass(frozen=True, slots=True)
class DemandCharge:
    """Money per kW of the highest demand in each billing period (local month or day)."""

    rate: float
    basis: str = "monthly"
    name: str = ""
    when: When = When()
    periods: tuple[str, ...] = ()  # demand counts only while one of these periods is in force

    @classmethod
    def from_config(cls, conf: Mapping[str, Any], index: int = 0) -> DemandCharge:
        return cls(
            conf["rate"],
            conf.get("basis", "monthly"),
            conf.get("name") or f"demand_{index + 1}",
            When.from_config(conf),
            tuple(conf.get("periods", ())),
        )

    @property
    def always(self) -> bool:
        return not self.periods and self.when == When()

    def describe(self) -> dict[str, Any]:
        window = self.when.describe()
        if self.periods:
            window["periods"] = list(self.periods)
        return {"name": self.name, "rate": self.rate, "basis": self.basis, "window": window or None}


@dataclass(frozen=True, slots=True)
class TouRules:
    periods: tuple[Period, ...]
    seasons: Mapping[str, tuple[tuple[int, int], tuple[int, int]]]
    holidays: Holidays = field(default_factory=Holidays)
    demand_charges: tuple[DemandCharge, ...] = ()
    time_zone: str | None = None

    @classmethod
    def from_config(cls, conf: Mapping[str, Any]) -> TouRules:
        """Build from a mapping that passed RULES_SCHEMA."""
        hol = conf.get("holidays") or {}
        dates = hol.get("dates", [])
        holidays = Holidays(
            tuple(hol.get("calendar", ())),
            frozenset(d for d in dates if isinstance(d, date)),
            frozenset(d for d in dates if isinstance(d, tuple)),
        )
        periods = tuple(
            Period(
                p.get("name") or f"period_{i + 1}",
                When.from_config(p),
                p.get("price"),
                p.get("export_price"),
            )
            for i, p in enumerate(conf["periods"])
        )
        charges = conf.get("demand_charges", [])
        return cls(
            periods,
            {n: (s["start"], s["end"]) for n, s in conf.get("seasons", {}).items()},
            holidays,
            tuple(DemandCharge.from_config(c, i) for i, c in enumerate(charges)),
            conf.get("time_zone"),
        )

    def zone(self, default: tzinfo) -> tzinfo:
        return ZoneInfo(self.time_zone) if self.time_zone else default

    def has(self, field: str) -> bool:
        return any(getattr(p, field) is not None for p in self.periods)

    def edges(self) -> list[int]:
        """Every wall-clock minute at which some entry starts or ends (midnight included)."""
        whens = [p.when for p in self.periods] + [c.when for c in self.demand_charges]
        return sorted({0} | {m % DAY for w in whens for m in (w.start, w.end)})

    def matches(self, when: When, local: datetime) -> bool:
        day = local.date()
        if when.seasons:
            md = (day.month, day.day)
            if not any(_in_season(md, *self.seasons[s]) for s in when.seasons):
                return False
        if when.days and not self._day_matches(when.days, day):
            return False
        return when.matches_minute(local.hour * 60 + local.minute)

    def _day_matches(self, days: frozenset[str], day: date) -> bool:
        holiday = day in self.holidays
        weekday = day.weekday()
        return (
            DAY_NAMES[weekday] in days
            or ("holiday" in days and holiday)
            or ("weekend" in days and weekday >= 5)
            or ("weekday" in days and weekday < 5 and not holiday)
        )

    def period_at(self, local: datetime, field: str = "price") -> Period | None:
        """The first period that defines `field` and matches the local time `local`."""
        for period in self.periods:
            if getattr(period, field) is not None and self.matches(period.when, local):
                return period
        return None

    def counts_for(self, charge: DemandCharge, local: datetime) -> bool:
        """Does demand at `local` count towards `charge`'s peak?"""
        if not self.matches(charge.when, local):
            return False
        if not charge.periods:
            return True
        period = self.period_at(local, "price")
        return period is not None and period.name in charge.periods


EMPTY_RULES = TouRules((), {})


# --- expansion -------------------------------------------------------------------------------
def _utc(t: datetime, what: str) -> datetime:
    if t.tzinfo is None:
        raise ValueError(f"{what} {t.isoformat()} must be timezone-aware")
    return t.astimezone(UTC)


def offset_changes(tz: tzinfo, start: datetime, end: datetime) -> list[datetime]:
    """Instants in (start, end) at which `tz`'s UTC offset changes (DST), to the second."""
    found: list[datetime] = []
    t, offset = start, start.astimezone(tz).utcoffset()
    while t < end:
        nxt = min(t + timedelta(hours=1), end)
        new = nxt.astimezone(tz).utcoffset()
        if new != offset:
            lo, hi = 0, int((nxt - t).total_seconds())
            while hi - lo > 1:  # invariant: offset at t+lo is the old one, at t+hi the new one
                mid = (lo + hi) // 2
                if (t + timedelta(seconds=mid)).astimezone(tz).utcoffset() == offset:
                    lo = mid
                else:
                    hi = mid
            found.append(t + timedelta(seconds=hi))
            offset = new
        t = nxt
    return found


def _instants(rules: TouRules, start: datetime, end: datetime, tz: tzinfo) -> list[datetime]:
    """Every instant in [start, end] at which some rule may change: each rule edge on each local
    day, in both folds (a repeated hour crosses it twice), and each change of UTC offset (a
    skipped hour jumps over edges without crossing them)."""
    points = {start, end, *offset_changes(tz, start, end)}
    edges = [time(m // 60, m % 60) for m in rules.edges()]
    day = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date() + timedelta(days=1)
    while day <= last:
        for edge in edges:
            wall = datetime.combine(day, edge, tzinfo=tz)
            for fold in (0, 1):
                t = wall.replace(fold=fold).astimezone(UTC)
                if start < t < end:
                    points.add(t)
        day += timedelta(days=1)
    return sorted(points)


def segments(
    rules: TouRules,
    start: datetime,
    end: datetime,
    tz: tzinfo,
    value_fn: Callable[[datetime], Any],
) -> list[tuple[datetime, datetime, Any]]:
    """[start, end) cut where `value_fn(local time)` may change; equal neighbours coalesced."""
    start, end = _utc(start, "start"), _utc(end, "end")
    out: list[tuple[datetime, datetime, Any]] = []
    for a, b in itertools.pairwise(_instants(rules, start, end, tz)):
        value = value_fn(a.astimezone(tz))
        if out and out[-1][1] == a and out[-1][2] == value:
            out[-1] = (out[-1][0], b, value)
        else:
            out.append((a, b, value))
    return out


def expand(
    rules: TouRules,
    start: datetime,
    end: datetime,
    tz: tzinfo,
    *,
    field: str = "price",
    unit: str = "",
    source: str = "tou",
    step: timedelta | None = None,
) -> TimeSeries:
    """The price (`field`: price or export_price) in force over [start, end) as a TimeSeries.

    Slots are as long as a price holds, or cut into `step` slots aligned to the hour (a 15-minute
    series for a planner). Where no period defines `field` the series has a gap.
    """
    zone = rules.zone(tz)

    def price(local: datetime) -> float | None:
        period = rules.period_at(local, field)
        return None if period is None else getattr(period, field)

    slots = [Slot(a, b, v) for a, b, v in segments(rules, start, end, zone, price) if v is not None]
    if step is not None:
        slots = [part for slot in slots for part in split(slot, step)]
    return TimeSeries(slots, unit=unit, source=source)


def demand_windows(
    rules: TouRules, charge: DemandCharge, start: datetime, end: datetime, tz: tzinfo
) -> list[tuple[datetime, datetime]]:
    """The stretches of [start, end) during which demand counts towards `charge`."""
    zone = rules.zone(tz)
    parts = segments(rules, start, end, zone, lambda local: rules.counts_for(charge, local))
    return [(a, b) for a, b, counts in parts if counts]
