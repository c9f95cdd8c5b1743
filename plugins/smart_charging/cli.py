"""`evhub plan`: the what-if planner's command line, reading the site, sessions and prices.
Bad input ends with a message naming the file, line and column, and exit code 2.

The tariff reader is a documented subset of the tariffs plugin's formats (plugins may not import
each other and no hub runs here): a TOU rules file (`time_zone`, `seasons`, `periods` with
`seasons`/`days`/`start`/`end`/`price`, `demand_charges` without windows), the same under a
`tou:` key, or an acnportal JSON tariff. Holidays and windowed demand charges are refused with
a hint rather than priced wrong. `automations:NAME` policies are found, checked and run by
`whatif_automations`. See docs/planning.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import voluptuous as vol

from hub.charging.signals import Slot, TimeSeries
from hub.charging.site import SITE_SCHEMA, Site
from hub.config import ConfigError, load_yaml, validate_configuration
from plugins.smart_charging import whatif, whatif_automations, whatif_report
from plugins.smart_charging.whatif import QUARTER, Scenario, SessionRequest

HELP = "what-if planner: simulate the site under charging policies, before a roll-out"
POLICY_CHOICES = (*whatif.POLICIES, "offline")
DEFAULT_POLICIES = ("uncontrolled", "smart")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_SETS = {"weekday": set(_DAYS[:5]), "weekend": set(_DAYS[5:])} | {d: {d} for d in _DAYS}
_ACN_DAYS = {"ALL": set(_DAYS), "WEEKDAYS": set(_DAYS[:5]), "WEEKENDS": set(_DAYS[5:])}


class InputError(Exception):
    """Bad input: the message says where and what; the command exits with code 2."""


def register_commands(register: Callable[..., None]) -> None:
    register("plan", HELP, configure, run)


def configure(parser: argparse.ArgumentParser) -> None:
    site = parser.add_argument_group("the site: --site, or a quick look")
    site.add_argument("--site", type=Path, metavar="SITE.yaml", help="a site.yaml tree")
    site.add_argument("--grid-kw", type=float, metavar="N", help="quick look: grid kW")
    site.add_argument("--chargers", type=int, metavar="N", help="quick look: how many")
    site.add_argument("--charger-kw", type=float, metavar="X", help="quick look: kW each")
    parser.add_argument(
        "--sessions", type=Path, required=True, metavar="FILE.csv",
        help="arrival,departure,energy_kwh,max_kw[,vehicle_id][,charger]; ISO 8601 with offset",
    )  # fmt: skip
    prices = parser.add_argument_group("prices (none given: energy costs nothing)")
    prices.add_argument("--tariff", type=Path, metavar="FILE", help="TOU rules YAML or acnportal")
    prices.add_argument("--prices", type=Path, metavar="FILE.csv", help="start,end,price_per_kwh")
    prices.add_argument(
        "--demand-charge", type=float, metavar="PRICE_PER_KW",
        help="charged once on the highest 15-minute average kW of the period",
    )  # fmt: skip
    prices.add_argument(
        "--time-zone", help="for a tariff that names none (IANA, e.g. Europe/Berlin)"
    )
    prices.add_argument(
        "--last-peaks", default="", metavar="KW[,KW...]",
        help="the site's peaks in its last billing periods, oldest first: planned with as the "
        "live hub plans (0.95 x the lowest of the last three as if paid); default none",
    )  # fmt: skip
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--online", dest="foresight", action="store_false", help="(the default)")
    mode.add_argument("--foresight", dest="foresight", action="store_true")
    parser.set_defaults(foresight=False)
    parser.add_argument(
        "--policy", action="append", metavar="NAME",
        help=f"{', '.join(POLICY_CHOICES)} or automations:NAME; repeat or comma-separate "
        f"(default: {','.join(DEFAULT_POLICIES)})",
    )  # fmt: skip
    parser.add_argument("--step", type=int, default=15, metavar="MINUTES", help="1, 3, 5 or 15")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the metrics as JSON")
    parser.add_argument("--chart", type=Path, metavar="PREFIX", help="write PREFIX.png/.html")


def run(args: argparse.Namespace) -> int:
    try:
        policies = _policies(args.policy)
        site = _site(args)
        sessions = read_sessions(args.sessions)
        scenario, tariff_zone = _scenario(args, site, sessions)
        rules = {
            name: whatif_automations.load(name, args.site)
            for name in policies
            if name.startswith(whatif_automations.PREFIX)
        }
        zone = _hub_zone(args, tariff_zone, scenario)
    except (InputError, whatif_automations.AutomationsError) as err:
        print(f"evhub plan: {err}", file=sys.stderr)
        return 2
    visits = whatif.assign(scenario)
    results, notes = [], []
    for name in policies:
        if name in rules:
            result, summary = whatif_automations.simulate_automations(
                scenario, rules[name], zone, visits
            )
            notes += whatif_automations.describe(summary, name, zone)
        elif name == "offline":
            result = whatif.offline_optimum(scenario, visits)
        else:
            result = whatif.simulate(scenario, name, visits)
        results.append(result)
    print(whatif_report.table(scenario, results, source=_source(args)))
    for note in notes:
        print(note)
    if args.json is not None:
        data = {r.policy: whatif_report.as_json(r) for r in results}
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    if args.chart is not None:
        for path in whatif_report.write_charts(args.chart, scenario, results):
            print(f"chart: {path}")
    return 0


def _policies(given: Sequence[str] | None) -> list[str]:
    names = [n.strip() for item in given or DEFAULT_POLICIES for n in item.split(",") if n.strip()]
    for name in names:
        if name not in POLICY_CHOICES and not name.startswith(whatif_automations.PREFIX):
            raise InputError(
                f"unknown policy {name!r}: expected {', '.join(POLICY_CHOICES)} or automations:FILE"
            )
    return list(dict.fromkeys(names))


def _source(args: argparse.Namespace) -> str:
    if args.tariff is not None:
        return f"tariff {args.tariff}"
    return f"prices {args.prices}" if args.prices is not None else "no prices"


# --- the site -------------------------------------------------------------------------------
def _site(args: argparse.Namespace) -> Site:
    quick = (args.grid_kw, args.chargers, args.charger_kw)
    if args.site is not None:
        if any(v is not None for v in quick):
            raise InputError("give --site or --grid-kw/--chargers/--charger-kw, not both")
        return load_site(args.site)
    if any(v is None for v in quick):
        raise InputError("give --site SITE.yaml, or all of --grid-kw, --chargers, --charger-kw")
    return quick_site(*quick)


def load_site(path: Path) -> Site:
    """A site.yaml (as config/site.yaml, or a configuration with a `site:` block)."""
    try:
        raw = load_yaml(path)
    except ConfigError as err:
        raise InputError(str(err)) from None
    if isinstance(raw, Mapping) and isinstance(raw.get("site"), Mapping):
        raw = raw["site"]
    if not isinstance(raw, Mapping):
        raise InputError(f"{path}: expected a site tree (id, max_current, panels, ...)")
    validated, errors = validate_configuration({"site": raw}, {"site": SITE_SCHEMA})
    if errors:
        first = errors[0]
        key = (first.key or "").removeprefix("site").lstrip(".") or None
        raise InputError(str(ConfigError(first.message, first.file or str(path), first.line, key)))
    return Site.from_config(validated["site"])


def quick_site(grid_kw: float, chargers: int, charger_kw: float) -> Site:
    """One grid connection of `grid_kw` and `chargers` identical chargers of `charger_kw`:
    three-phase AC (kW / 3 x 230 V per phase), or DC above 22 kW."""
    if not (grid_kw > 0 and math.isfinite(grid_kw)) or not 1 <= chargers <= 10_000:
        raise InputError("--grid-kw must be > 0 and --chargers between 1 and 10000")
    if not (charger_kw > 0 and math.isfinite(charger_kw)):
        raise InputError("--charger-kw must be > 0")
    width = len(str(chargers))
    if charger_kw > 22:
        kind: dict[str, Any] = {"dc": True, "max_power_kw": charger_kw}
    else:
        kind = {"phases": 3, "max_current": round(charger_kw * 1000 / (3 * 230), 3)}
    config = {
        "id": "site",
        "max_power_kw": grid_kw,
        "circuits": [
            {
                "id": "chargers",
                "chargers": [{"id": f"c{n:0{width}d}", **kind} for n in range(1, chargers + 1)],
            }
        ],
    }
    try:
        return Site.from_config(config)
    except vol.Invalid as err:
        raise InputError(f"quick-look site: {err}") from None


# --- sessions and prices --------------------------------------------------------------------
def _rows(path: Path, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read: {err}") from None
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in required if c not in columns]
    if missing:
        raise InputError(f"{path}:1: missing column(s) {', '.join(missing)} (has: {columns})")
    reader.fieldnames = columns
    return [(reader.line_num, row) for row in reader]


def _cell(path: Path, line: int, row: Mapping[str, Any], column: str) -> str:
    value = row.get(column)
    if value is None or not str(value).strip():
        raise InputError(f"{path}:{line}: column {column}: no value")
    return str(value).strip()


def _time(path: Path, line: int, row: Mapping[str, Any], column: str) -> datetime:
    text = _cell(path, line, row, column)
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{path}:{line}: column {column}: {text!r} is no ISO 8601 time") from None
    if t.utcoffset() is None:
        raise InputError(
            f"{path}:{line}: column {column}: {text!r} has no UTC offset "
            "(write e.g. 2026-03-02T18:00:00+01:00)"
        )
    return t


def _number(
    path: Path, line: int, row: Mapping[str, Any], column: str, ok: Callable[[float], bool]
) -> float:
    text = _cell(path, line, row, column)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and ok(value)):
        want = {"max_kw": "a number > 0", "energy_kwh": "a number >= 0"}.get(column, "a number")
        raise InputError(f"{path}:{line}: column {column}: {text!r} is not {want}")
    return value


def read_sessions(path: Path) -> list[SessionRequest]:
    """Sessions from CSV: arrival,departure,energy_kwh,max_kw[,vehicle_id][,charger]."""
    out = []
    for line, row in _rows(path, ("arrival", "departure", "energy_kwh", "max_kw")):
        arrival, departure = _time(path, line, row, "arrival"), _time(path, line, row, "departure")
        if departure <= arrival:
            raise InputError(f"{path}:{line}: column departure: departs before it arrives")
        vehicle = (row.get("vehicle_id") or "").strip()
        out.append(
            SessionRequest(
                id=f"{vehicle} (line {line})" if vehicle else f"line {line}",
                arrival=arrival,
                departure=departure,
                energy_kwh=_number(path, line, row, "energy_kwh", lambda x: x >= 0),
                max_kw=_number(path, line, row, "max_kw", lambda x: x > 0),
                charger=(row.get("charger") or "").strip() or None,
                vehicle=vehicle or None,
            )
        )
    if not out:
        raise InputError(f"{path}: no sessions")
    return out


def read_prices(path: Path) -> TimeSeries:
    """Prices from CSV: start,end,price_per_kwh (ISO 8601 with offset, non-overlapping)."""
    slots = []
    for line, row in _rows(path, ("start", "end", "price_per_kwh")):
        start, end = _time(path, line, row, "start"), _time(path, line, row, "end")
        if end <= start:
            raise InputError(f"{path}:{line}: column end: not after start")
        slots.append(Slot(start, end, _number(path, line, row, "price_per_kwh", math.isfinite)))
    try:
        return TimeSeries(slots, unit="currency/kWh", source=str(path))
    except ValueError as err:
        raise InputError(f"{path}: {err}") from None


def _scenario(
    args: argparse.Namespace, site: Site, sessions: list[SessionRequest]
) -> tuple[Scenario, tzinfo | None]:
    """The scenario, and the time zone the tariff was read in (None without a tariff)."""
    if args.tariff is not None and args.prices is not None:
        raise InputError("give --tariff or --prices, not both")
    start = whatif.floor_to(min(s.arrival for s in sessions), QUARTER)
    end = whatif.ceil_to(max(s.departure for s in sessions), QUARTER)
    demand, zone = 0.0, None
    if args.tariff is not None:
        zone = _zone(args.time_zone, sessions[0].arrival.tzinfo)
        prices, demand, zone = read_tariff(args.tariff, start, end, zone)
    elif args.prices is not None:
        prices = read_prices(args.prices)
    else:
        prices = TimeSeries([Slot(start, end, 0.0)], unit="currency/kWh", source="none")
    if args.demand_charge is not None:
        if not (args.demand_charge >= 0 and math.isfinite(args.demand_charge)):
            raise InputError("--demand-charge must be a number >= 0")
        demand = args.demand_charge
    try:
        last_peaks = tuple(float(kw) for kw in args.last_peaks.split(",") if kw.strip())
    except ValueError:
        raise InputError(f"--last-peaks {args.last_peaks!r}: kW numbers, comma-separated") from None
    if args.step <= 0 or 15 % args.step:
        raise InputError(f"--step {args.step}: must divide 15 minutes (1, 3, 5 or 15)")
    try:
        scenario = Scenario(
            site=site,
            sessions=sessions,
            prices=prices,
            demand_charge=demand,
            step=timedelta(minutes=args.step),
            foresight=bool(args.foresight),
            last_peaks_kw=last_peaks,
        )
        return scenario, zone
    except (ValueError, KeyError) as err:
        raise InputError(str(err).strip("'\"")) from None


def _zone(name: str | None, fallback: tzinfo | None) -> tzinfo:
    if name is None:
        return fallback or ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"--time-zone {name!r}: unknown (IANA, like Europe/Berlin)") from None


def _hub_zone(args: argparse.Namespace, tariff_zone: tzinfo | None, scenario: Scenario) -> tzinfo:
    """Local time for the automations: --time-zone, else the configuration's `hub: time_zone`
    (a configuration.yaml as --site), else the tariff's, else the first arrival's UTC offset."""
    if args.time_zone is not None:
        return _zone(args.time_zone, None)
    named = whatif_automations.site_time_zone(args.site)
    if named is not None:
        try:
            return ZoneInfo(named)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return tariff_zone or scenario.tz


# --- a minimal TOU reader -------------------------------------------------------------------
Rule = tuple[tuple[tuple[int, int], tuple[int, int]] | None, set[str], int, int, float]


def read_tariff(
    path: Path, start: datetime, end: datetime, zone: tzinfo
) -> tuple[TimeSeries, float, tzinfo]:
    """Quarter-hour import prices over [start, end), the demand charge per kW and the zone they
    were read in (the tariff's own, else `zone`), from a TOU rules YAML (the supported subset,
    see the module docstring) or an acnportal JSON tariff."""
    try:
        doc = json.loads(path.read_text()) if path.suffix == ".json" else load_yaml(path)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read: {err}") from None
    except ConfigError as err:
        raise InputError(str(err)) from None
    if isinstance(doc, Mapping) and isinstance(doc.get("tou"), Mapping):
        doc = doc["tou"]
    if not isinstance(doc, Mapping):
        raise InputError(f"{path}: expected TOU rules (periods: ...) or an acnportal tariff")
    try:
        rules, demand, tz_name = (_acnportal if "schedule" in doc else _tou)(doc)
        if tz_name is not None:
            zone = ZoneInfo(tz_name)
    except (
        AttributeError,
        IndexError,
        KeyError,
        TypeError,
        ValueError,
        ZoneInfoNotFoundError,
    ) as err:
        raise InputError(f"{path}: {str(err).strip(chr(34) + chr(39))}") from None
    slots, t = [], start
    while t < end:
        local = t.astimezone(zone)
        price = next((r[4] for r in rules if _matches(r, local)), None)
        if price is None:
            raise InputError(f"{path}: no period gives a price at {local.isoformat()}")
        slots.append(Slot(t, t + QUARTER, price))
        t += QUARTER
    return TimeSeries(slots, unit="currency/kWh", source=str(path)), demand, zone


def _matches(rule: Rule, local: datetime) -> bool:
    season, days, begin, finish, _ = rule
    if season is not None:
        (a, b), md = season, (local.month, local.day)
        if not (a <= md <= b if a <= b else md >= a or md <= b):
            return False
    minute = local.hour * 60 + local.minute
    inside = begin <= minute < finish if begin < finish else minute >= begin or minute < finish
    return _DAYS[local.weekday()] in days and inside


def _mmdd(text: Any) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{1,2})-(\d{1,2})", str(text).strip())
    if not match:
        raise ValueError(f"expected a date 'MM-DD', got {text!r}")
    date(2000, int(match[1]), int(match[2]))  # raises ValueError when there is no such day
    return int(match[1]), int(match[2])


def _minutes(value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, int) and 60 <= value <= 1440:  # YAML 1.1 reads 16:00 as 960 (base 60)
        minutes = value
    else:
        match = re.fullmatch(r"(\d{1,2}):(\d{2})", str(value).strip())
        if not match:
            raise ValueError(f"expected a time 'HH:MM', got {value!r}")
        minutes = int(match[1]) * 60 + int(match[2])
    if minutes % 15 or not 0 <= minutes <= 1440:
        raise ValueError(f"time {value!r}: evhub plan needs quarter hours from 00:00 to 24:00")
    return minutes


def _tou(doc: Mapping[str, Any]) -> tuple[list[Rule], float, str | None]:
    if doc.get("holidays"):
        raise ValueError("holidays are not supported by evhub plan: use --prices for such weeks")
    seasons = {n: (_mmdd(s["start"]), _mmdd(s["end"])) for n, s in doc.get("seasons", {}).items()}
    rules: list[Rule] = []
    for i, p in enumerate(doc["periods"]):
        if p.get("price") is None:
            continue  # an export-only period
        days = set()
        for d in p.get("days") or ["weekday", "weekend"]:
            if d not in _DAY_SETS:
                raise ValueError(f"periods[{i}]: days {d!r} is not supported by evhub plan")
            days |= _DAY_SETS[d]
        begin, finish = _minutes(p.get("start"), 0), _minutes(p.get("end"), 1440)
        for name in p.get("seasons") or [None]:
            if name is not None and name not in seasons:
                raise ValueError(f"periods[{i}]: unknown season {name!r}")
            season = seasons[name] if name is not None else None
            rules.append((season, days, begin, finish, float(p["price"])))
    demand = 0.0
    for i, charge in enumerate(doc.get("demand_charges", [])):
        if set(charge) - {"name", "rate", "basis"}:
            raise ValueError(
                f"demand_charges[{i}]: windows are not supported by evhub plan, which charges "
                "one rate on the period's peak: give --demand-charge instead"
            )
        demand += float(charge["rate"])
    return rules, demand, doc.get("time_zone")


def _acnportal(doc: Mapping[str, Any]) -> tuple[list[Rule], float, str | None]:
    rules: list[Rule] = []
    demand = 0.0
    for entry in doc["schedule"]:
        season = (_mmdd(entry["effective_start"]), _mmdd(entry["effective_end"]))
        days = _ACN_DAYS[entry["dow_mask"]]
        times = [round(float(h) * 60) for h in entry["times"]]
        for k, price in enumerate(entry["tariffs"]):
            finish = times[k + 1] if k + 1 < len(times) else 1440
            rules.append((season, days, times[k], finish, float(price)))
        demand = max(demand, float(entry.get("demand_charge", 0.0)))
    return rules, demand, None
