"""Parsers for day-ahead price feeds: each turns one answer (bytes) into a TimeSeries in
currency/kWh with aware UTC slots, or raises FeedError saying what was wrong with it.

ENTSO-E (A44 XML), Nord Pool (Data Portal API v2), aWATTar, Octopus Agile, Tibber (GraphQL),
EnergyZero, and generic JSON / CSV answers read through jinja2 templates. No I/O here.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from hub.charging.signals import Slot, TimeSeries

HOUR = timedelta(hours=1)
_DURATION = re.compile(r"^P(?:T(?:(\d+)H)?(?:(\d+)M)?|(1)D)$")


class FeedError(ValueError):
    """An answer we cannot use; the message says why without quoting secrets."""


# --- shared helpers --------------------------------------------------------------------------
def load_json(body: bytes | str, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise FeedError(f"{what}: not JSON ({err})") from None


def parse_time(value: Any, tz: tzinfo = UTC) -> datetime:
    """ISO 8601 (naive means `tz`), or seconds / milliseconds since the epoch, as aware UTC."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if abs(value) > 1e11 else value  # 1e11 s is the year 5138
        return datetime.fromtimestamp(seconds, UTC)
    text = str(value).strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return parse_time(float(text), tz)
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise FeedError(f"not a time: {text[:40]!r}") from None
    return (t if t.tzinfo else t.replace(tzinfo=tz)).astimezone(UTC)


def _number(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FeedError(f"{what}: not a number: {str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise FeedError(f"{what}: not a finite number: {value!r}")
    return number


def per_kwh(value: float, per: float) -> float:
    """A price per MWh (per=1000) or per 100 (pence) as per kWh, without float noise."""
    return round(value / per, 9)


def build_series(
    points: Iterable[tuple[datetime, datetime | None, float]],
    unit: str,
    source: str,
    step: timedelta | None = None,
) -> TimeSeries:
    """Slots from (start, end or None, value). An open end is the next start (at most `step`
    when one is given); the last one lasts as long as the one before it. A repeated start keeps
    the last value; slots that overlap otherwise mean a broken answer."""
    by_start: dict[datetime, tuple[datetime | None, float]] = {}
    for start, end, value in points:
        by_start[start] = (end, value)
    starts = sorted(by_start)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    common = max(set(gaps), key=gaps.count) if gaps else HOUR
    # Without a stated resolution, a distance of more than an hour (or the usual one) to the
    # next start is a hole in the answer, not a long slot.
    limit = step or max(common, HOUR)
    slots = []
    for i, start in enumerate(starts):
        end, value = by_start[start]
        if end is None:
            nxt = starts[i + 1] if i + 1 < len(starts) else None
            if nxt is not None and nxt - start <= limit:
                end = nxt
            elif step is not None:
                end = start + step
            else:
                before = gaps[i - 1] if i > 0 else common
                end = start + (before if before <= limit else common)
        try:
            slots.append(Slot(start, end, value))
        except ValueError as err:
            raise FeedError(f"{source}: {err}") from None
    try:
        return TimeSeries(slots, unit=unit, source=source)
    except ValueError as err:
        raise FeedError(str(err)) from None


def _get(doc: Any, *path: str | int) -> Any:
    node = doc
    for key in path:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            where = ".".join(str(p) for p in path)
            raise FeedError(f"answer has no {where}") from None
    return node


def _items(doc: Any, *path: str | int) -> list[dict[str, Any]]:
    """The list of objects at `path` (a FeedError when it is anything else)."""
    items = _get(doc, *path) if path else doc
    where = ".".join(str(p) for p in path) or "the answer"
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise FeedError(f"{where} is not a list of objects")
    return items


# --- ENTSO-E ---------------------------------------------------------------------------------
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(node: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in node if _local(c.tag) == name), None)


def _text(node: ET.Element, *names: str) -> str | None:
    for name in names:
        found = _child(node, name)
        if found is None:
            return None
        node = found
    return (node.text or "").strip()


def _resolution(text: str | None) -> timedelta:
    match = _DURATION.match(text or "")
    if not match or not any(match.groups()):
        raise FeedError(f"ENTSO-E: unknown resolution {text!r}")
    if match[3]:
        return timedelta(days=1)
    return timedelta(hours=int(match[1] or 0), minutes=int(match[2] or 0))


def parse_entsoe(body: bytes | str) -> TimeSeries:
    """A Publication_MarketDocument (A44 day-ahead prices, EUR/MWh) as EUR/kWh.

    Curve type A03 omits a point whose price equals the one before (it holds until the next
    position); A01 lists every position. Where a zone publishes 15- and 60-minute series side by
    side, the finer one wins and the coarser only fills its gaps.
    """
    raw = body.encode() if isinstance(body, str) else body
    if b"<!DOCTYPE" in raw[:4096].upper() or b"<!ENTITY" in raw.upper():
        raise FeedError("ENTSO-E: a document type declaration is not accepted")
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as err:
        raise FeedError(f"ENTSO-E: not XML ({err})") from None
    if _local(root.tag) == "Acknowledgement_MarketDocument":
        reason = _text(root, "Reason", "text") or _text(root, "Reason", "code") or "no reason"
        raise FeedError(f"ENTSO-E refused: {reason[:300]}")
    if _local(root.tag) != "Publication_MarketDocument":
        raise FeedError(f"ENTSO-E: unexpected document {_local(root.tag)!r}")
    by_step: dict[timedelta, dict[datetime, Slot]] = {}
    currencies: set[str] = set()
    for ts in (c for c in root if _local(c.tag) == "TimeSeries"):
        currencies.add(_text(ts, "currency_Unit.name") or "EUR")
        measure = (_text(ts, "price_Measure_Unit.name") or "MWH").upper()
        scale = {"MWH": 1000.0, "KWH": 1.0}.get(measure)
        if scale is None:
            raise FeedError(f"ENTSO-E: unknown price unit {measure!r}")
        curve = _text(ts, "curveType") or "A01"
        for period in (c for c in ts if _local(c.tag) == "Period"):
            start = parse_time(_text(period, "timeInterval", "start"))
            end = parse_time(_text(period, "timeInterval", "end"))
            step = _resolution(_text(period, "resolution"))
            count = round((end - start) / step)
            points = sorted(
                (
                    int(_number(_text(p, "position"), "ENTSO-E position")),
                    _number(_text(p, "price.amount"), "ENTSO-E price.amount"),
                )
                for p in period
                if _local(p.tag) == "Point"
            )
            slots = by_step.setdefault(step, {})
            for i, (position, price) in enumerate(points):
                if not 1 <= position <= count:
                    raise FeedError(f"ENTSO-E: position {position} outside 1..{count}")
                upto = position + 1
                if curve == "A03":
                    upto = points[i + 1][0] if i + 1 < len(points) else count + 1
                a = start + (position - 1) * step
                try:
                    slots[a] = Slot(a, start + (upto - 1) * step, per_kwh(price, scale))
                except ValueError as err:  # a position listed twice
                    raise FeedError(f"ENTSO-E: {err}") from None
    if len(currencies) > 1:
        raise FeedError(f"ENTSO-E: several currencies in one answer: {sorted(currencies)}")
    unit = f"{currencies.pop() if currencies else 'EUR'}/kWh"
    merged = TimeSeries(unit=unit, source="entsoe")
    for step in sorted(by_step, reverse=True):  # coarse first: each finer series overrides it
        try:
            merged = merged.merge(TimeSeries(by_step[step].values(), unit=unit, source="entsoe"))
        except ValueError as err:
            raise FeedError(f"ENTSO-E: {err}") from None
    return merged


# --- Nord Pool -------------------------------------------------------------------------------
def parse_nordpool(body: bytes | str, area: str) -> TimeSeries:
    """Data Portal API v2 `DayAheadPrices` (currency/MWh per delivery area) for one area."""
    doc = load_json(body, "Nord Pool")
    areas = doc.get("deliveryAreas", []) if isinstance(doc, dict) else []
    if not isinstance(areas, list) or area not in areas:
        listed = ", ".join(map(str, areas)) if isinstance(areas, list) else "none"
        raise FeedError(f"Nord Pool: area {area} not in the answer (it has {listed})")
    currency = str(_get(doc, "currency"))
    points = []
    for i, entry in enumerate(_items(doc, "multiAreaEntries")):
        per_area = _get(entry, "entryPerArea")
        price = per_area.get(area) if isinstance(per_area, dict) else None
        if price is None:
            continue  # an area without a price for one slot: a gap, not an error
        points.append(
            (
                parse_time(_get(entry, "deliveryStart")),
                parse_time(_get(entry, "deliveryEnd")),
                per_kwh(_number(price, f"Nord Pool entry {i}"), 1000),
            )
        )
    return build_series(points, f"{currency}/kWh", "nordpool")


# --- aWATTar ---------------------------------------------------------------------------------
def parse_awattar(body: bytes | str) -> TimeSeries:
    """`/v1/marketdata`: epoch-millisecond slots with a market price in EUR/MWh."""
    doc = load_json(body, "aWATTar")
    points = []
    for i, entry in enumerate(_items(doc, "data")):
        unit = str(entry.get("unit", "Eur/MWh")).lower()
        scale = {"eur/mwh": 1000.0, "eur/kwh": 1.0}.get(unit)
        if scale is None:
            raise FeedError(f"aWATTar: unknown unit {entry.get('unit')!r}")
        points.append(
            (
                parse_time(_get(entry, "start_timestamp")),
                parse_time(_get(entry, "end_timestamp")),
                per_kwh(_number(_get(entry, "marketprice"), f"aWATTar entry {i}"), scale),
            )
        )
    return build_series(points, "EUR/kWh", "awattar")


# --- Octopus ---------------------------------------------------------------------------------
def parse_octopus(body: bytes | str, *, include_vat: bool = True) -> TimeSeries:
    """`standard-unit-rates`: half-hour rates in pence/kWh (newest first) as GBP/kWh."""
    doc = load_json(body, "Octopus")
    key = "value_inc_vat" if include_vat else "value_exc_vat"
    points = []
    for i, entry in enumerate(_items(doc, "results")):
        end = entry.get("valid_to")
        points.append(
            (
                parse_time(_get(entry, "valid_from")),
                None if end is None else parse_time(end),
                per_kwh(_number(_get(entry, key), f"Octopus result {i}"), 100),
            )
        )
    return build_series(points, "GBP/kWh", "octopus", step=timedelta(minutes=30))


# --- Tibber ----------------------------------------------------------------------------------
def parse_tibber(
    body: bytes | str, *, home_id: str | None = None, field: str = "total"
) -> TimeSeries:
    """The GraphQL `priceInfo` of one home (the first, or `home_id`): today and tomorrow."""
    doc = load_json(body, "Tibber")
    if isinstance(doc, dict) and doc.get("errors"):
        errors = doc["errors"] if isinstance(doc["errors"], list) else [doc["errors"]]
        texts = (e.get("message", e) if isinstance(e, dict) else e for e in errors)
        messages = "; ".join(str(t)[:200] for t in texts)
        raise FeedError(f"Tibber refused: {messages}")
    homes = _items(doc, "data", "viewer", "homes")
    if home_id is not None:
        homes = [h for h in homes if h.get("id") == home_id]
    subscribed = [h for h in homes if h.get("currentSubscription")]
    if not subscribed:
        raise FeedError(
            "Tibber: no home with a current subscription"
            + (f" and id {home_id}" if home_id else "")
        )
    info = _get(subscribed[0], "currentSubscription", "priceInfo")
    if not isinstance(info, dict):
        raise FeedError("Tibber: priceInfo is not an object")
    entries = [
        *_items(info.get("today") or []),
        *_items(info.get("tomorrow") or []),
    ]
    currencies = {str(e.get("currency", "")) for e in entries}
    if len(currencies) > 1:
        raise FeedError(f"Tibber: several currencies in one answer: {sorted(currencies)}")
    points = [
        (parse_time(_get(e, "startsAt")), None, _number(_get(e, field), f"Tibber {field}"))
        for e in entries
    ]
    return build_series(points, f"{currencies.pop() if currencies else 'EUR'}/kWh", "tibber")


# --- EnergyZero ------------------------------------------------------------------------------
def parse_energyzero(body: bytes | str) -> TimeSeries:
    """`/v1/energyprices`: hourly EUR/kWh, with or without VAT as requested (`inclBtw`)."""
    doc = load_json(body, "EnergyZero")
    points = [
        (parse_time(_get(e, "readingDate")), None, _number(_get(e, "price"), "EnergyZero price"))
        for e in _items(doc, "Prices")
    ]
    return build_series(points, "EUR/kWh", "energyzero", step=HOUR)


# --- generic JSON / CSV ----------------------------------------------------------------------
_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


@functools.lru_cache(maxsize=128)
def compile_template(source: str) -> jinja2.Template:
    """Compile once (raises jinja2.TemplateSyntaxError); templates run sandboxed."""
    return _ENV.from_string(source)


def _render(template: str, what: str, **variables: Any) -> str:
    try:
        return compile_template(template).render(**variables).strip()
    except jinja2.TemplateError as err:
        raise FeedError(f"{what}: {type(err).__name__}: {err}") from None
    except (ArithmeticError, TypeError, ValueError, LookupError) as err:
        raise FeedError(f"{what}: {type(err).__name__}: {err}") from None


def _from_templates(
    rows: Sequence[Any], name: str, spec: Mapping[str, Any], tz: tzinfo, unit: str
) -> TimeSeries:
    points = []
    for i, row in enumerate(rows):
        what = f"{spec['kind']} item {i}"
        start = parse_time(_render(spec["time_template"], what, **{name: row}), tz)
        end_template = spec.get("end_template")
        end = parse_time(_render(end_template, what, **{name: row}), tz) if end_template else None
        value = _number(_render(spec["value_template"], what, **{name: row}), what)
        points.append((start, end, value))
    step = spec.get("resolution")
    return build_series(points, unit, spec["kind"], step=step)


def parse_json(body: bytes | str, spec: Mapping[str, Any], tz: tzinfo, unit: str) -> TimeSeries:
    """A JSON answer: `items` (a dotted path, empty for the top level) is a list; for each
    `item`, `time_template` renders its start, `value_template` its price in currency/kWh and
    the optional `end_template` its end (else the next start, at most `resolution`)."""
    doc = load_json(body, "JSON feed")
    path = [int(p) if p.isdigit() else p for p in spec.get("items", "").split(".") if p]
    rows = _get(doc, *path) if path else doc
    if not isinstance(rows, list):
        raise FeedError(f"JSON feed: {spec.get('items') or 'the answer'} is not a list")
    return _from_templates(rows, "item", {**spec, "kind": "json"}, tz, unit)


def parse_csv(body: bytes | str, spec: Mapping[str, Any], tz: tzinfo, unit: str) -> TimeSeries:
    """A CSV answer with a header line; each `row` (a mapping by column name) through the same
    templates as JSON."""
    text = body.decode("utf-8-sig", errors="replace") if isinstance(body, bytes) else body
    try:
        rows = list(csv.DictReader(io.StringIO(text), delimiter=spec.get("delimiter", ",")))
    except csv.Error as err:
        raise FeedError(f"CSV feed: {err}") from None
    return _from_templates(rows, "row", {**spec, "kind": "csv"}, tz, unit)
