"""Pure functions over price series: the price at an instant, the cheapest slots of a window,
day statistics, price adjustments and demand charges. No hub, no I/O: easy to test and reuse.

    >>> from datetime import UTC, datetime, timedelta
    >>> t0, h = datetime(2026, 3, 2, tzinfo=UTC), timedelta(hours=1)
    >>> s = TimeSeries([Slot(t0 + i * h, t0 + (i + 1) * h, p) for i, p in enumerate([3, 1, 2, 1])])
    >>> [slot.start.hour for slot in cheapest_slots(s, t0, t0 + 4 * h, 2)]
    [1, 3]
    >>> price_at(s, t0 + 2.5 * h)
    2
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from hub.charging.signals import Slot, TimeSeries

QUARTER = timedelta(minutes=15)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def price_at(series: TimeSeries | None, t: datetime) -> float | None:
    """The price in force at `t`; None when unknown there."""
    return None if series is None else series.value_at(t)


def cheapest_slots(series: TimeSeries, start: datetime, end: datetime, count: int) -> list[Slot]:
    """The `count` cheapest slots overlapping [start, end) (cut to it), in time order.

    Among equal prices the earlier slot wins, so the answer is stable.
    """
    if count <= 0:
        return []
    slots = series.slots_between(start, end)
    ranked = sorted(range(len(slots)), key=lambda i: (slots[i].value, i))[:count]
    return [slots[i] for i in sorted(ranked)]


def cheapest_hours(series: TimeSeries, start: datetime, end: datetime, hours: float) -> list[Slot]:
    """The cheapest stretches of [start, end) adding up to `hours`, in time order.

    Slots are taken cheapest first; the last one taken is shortened (from its end) so the total
    is exactly `hours`. Fewer hours come back when the window has fewer with a known price.
    """
    need = timedelta(hours=hours)
    slots = series.slots_between(start, end)
    taken: list[tuple[int, Slot]] = []
    for i in sorted(range(len(slots)), key=lambda i: (slots[i].value, i)):
        if need <= timedelta(0):
            break
        slot = slots[i]
        if slot.duration > need:
            slot = Slot(slot.start, slot.start + need, slot.value)
        taken.append((i, slot))
        need -= slot.duration
    return [slot for _, slot in sorted(taken, key=lambda pair: pair[0])]


def upcoming(series: TimeSeries | None, now: datetime, limit: int = 200) -> list[Slot]:
    """The slot in force at `now` and those after it, at most `limit`."""
    if series is None:
        return []
    far = series.end or now
    return series.slots_between(now, max(far, now), clip=False)[:limit]


def next_change(series: TimeSeries | None, now: datetime) -> datetime | None:
    """When the price next differs from the one at `now` (or becomes known or unknown)."""
    if series is None or series.end is None:
        return None
    current = series.value_at(now)
    cursor = now
    for slot in series.slots_between(now, series.end, clip=False):
        if slot.start > cursor:  # a gap: the price is unknown from cursor to slot.start
            return cursor if current is not None else slot.start
        if slot.value != current:
            return max(slot.start, now)
        cursor = slot.end
    return cursor if current is not None and cursor > now else None


def stats(series: TimeSeries | None, start: datetime, end: datetime) -> dict[str, float | None]:
    """min, max and time-weighted mean of the known prices in [start, end)."""
    slots = [] if series is None else series.slots_between(start, end)
    if not slots:
        return {"min": None, "max": None, "mean": None}
    seconds = sum(s.duration.total_seconds() for s in slots)
    mean = sum(s.value * s.duration.total_seconds() for s in slots) / seconds
    return {
        "min": min(s.value for s in slots),
        "max": max(s.value for s in slots),
        "mean": round(mean, 6),
    }


def adjust(
    series: TimeSeries, *, markup: float = 0.0, vat: float = 0.0, fixed: float = 0.0
) -> TimeSeries:
    """(price + markup) * (1 + vat) + fixed on every slot: markup before tax, fixed after it."""
    if (markup, vat, fixed) == (0.0, 0.0, 0.0):
        return series
    return TimeSeries(
        (Slot(s.start, s.end, round((s.value + markup) * (1 + vat) + fixed, 6)) for s in series),
        unit=series.unit,
        source=series.source,
    )


def slot_dicts(slots: Iterable[Slot], digits: int = 6) -> list[dict[str, Any]]:
    """Slots as JSON-friendly dicts (ISO times) for entity attributes and template results."""
    return [
        {"start": s.start.isoformat(), "end": s.end.isoformat(), "price": round(s.value, digits)}
        for s in slots
    ]


# --- demand charges --------------------------------------------------------------------------
def _billing_period(t: datetime, basis: str, tz: tzinfo) -> datetime:
    local = t.astimezone(tz)
    if basis == "daily":
        return local.replace(hour=0, minute=0, second=0, microsecond=0)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def demand_peaks(
    load: TimeSeries,
    basis: str,
    tz: tzinfo,
    windows: Sequence[tuple[datetime, datetime]] | None = None,
) -> dict[datetime, float]:
    """The highest 15-minute average demand (kW) per billing period (local month or day), as a
    utility's meter measures it: energy in each quarter hour / 0.25 h, a gap counting as zero.
    Only quarters overlapping `windows` count (None: all of them)."""
    allowed = None if windows is None else TimeSeries(Slot(a, b, 1.0) for a, b in windows)
    energy: dict[datetime, float] = {}  # quarter start -> kW x seconds
    for slot in load:
        for part in split(slot, QUARTER):
            quarter = _EPOCH + ((part.start - _EPOCH) // QUARTER) * QUARTER
            seconds = part.duration.total_seconds()
            energy[quarter] = energy.get(quarter, 0.0) + part.value * seconds
    peaks: dict[datetime, float] = {}
    for quarter, kws in energy.items():
        if allowed is not None and not allowed.slots_between(quarter, quarter + QUARTER):
            continue
        demand = kws / QUARTER.total_seconds()
        period = _billing_period(quarter, basis, tz)
        peaks[period] = max(peaks.get(period, demand), demand)
    return peaks


def split(slot: Slot, step: timedelta) -> list[Slot]:
    """`slot` cut at every multiple of `step` since the epoch (15-minute boundaries at :00)."""
    parts, t = [], slot.start
    while t < slot.end:
        nxt = min(_EPOCH + ((t - _EPOCH) // step + 1) * step, slot.end)
        parts.append(Slot(t, nxt, slot.value))
        t = nxt
    return parts


def demand_cost(
    load: TimeSeries,
    rate: float,
    basis: str,
    tz: tzinfo,
    windows: Sequence[tuple[datetime, datetime]] | None = None,
) -> float:
    """What a demand charge of `rate` per kW costs for `load` (kW): rate x each period's peak."""
    return rate * sum(max(peak, 0.0) for peak in demand_peaks(load, basis, tz, windows).values())
