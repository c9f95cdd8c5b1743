"""Time series of prices, limits and forecasts, and the store plugins publish them on.

A tariff feed publishes `prices.grid_import`, a DR client `caps.site`, a forecaster `forecast.pv`;
the planner reads them and subscribes, and every publish fires `signal_updated` on the bus.

    >>> from datetime import UTC, datetime, timedelta
    >>> t0, h = datetime(2026, 3, 2, tzinfo=UTC), timedelta(hours=1)
    >>> cap = TimeSeries([Slot(t0, t0 + 2 * h, 100.0)], unit="kW")
    >>> dr = TimeSeries([Slot(t0 + h, t0 + 3 * h, 60.0)], unit="kW")
    >>> [(s.start.hour, s.end.hour, s.value) for s in cap.combine_min(dr)]
    [(0, 1, 100.0), (1, 3, 60.0)]
"""

from __future__ import annotations

import bisect
import fnmatch
import itertools
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from hub.bus import Context

if TYPE_CHECKING:
    from hub.bus import EventBus
    from hub.core import Hub

EVENT_SIGNAL_UPDATED = "signal_updated"
DEFAULT_STEP = timedelta(minutes=15)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # buckets align to it, so 15-minute slots start on :00
_NAME = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")


def _aware(t: datetime, what: str) -> None:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what} {t.isoformat()} must be timezone-aware")


@dataclass(frozen=True, slots=True)
class Slot:
    """`value` holds on [start, end)."""

    start: datetime
    end: datetime
    value: float

    def __post_init__(self) -> None:
        _aware(self.start, "slot start")
        _aware(self.end, "slot end")
        if self.end <= self.start:
            raise ValueError(f"slot ends ({self.end}) before it starts ({self.start})")
        if math.isnan(self.value):
            raise ValueError(f"slot {self.start} has no value (NaN)")

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def clip(self, a: datetime | None = None, b: datetime | None = None) -> Slot | None:
        """The part of this slot inside [a, b); None when nothing is left."""
        start = self.start if a is None else max(self.start, a)
        end = self.end if b is None else min(self.end, b)
        if end <= start:
            return None
        return self if (start, end) == (self.start, self.end) else Slot(start, end, self.value)


class TimeSeries:
    """Sorted, non-overlapping slots (gaps allowed: no value known there) with a unit and source."""

    __slots__ = ("_slots", "_starts", "source", "unit")

    def __init__(self, slots: Iterable[Slot] = (), *, unit: str = "", source: str = "") -> None:
        ordered = sorted(slots, key=lambda s: s.start)
        for a, b in itertools.pairwise(ordered):
            if b.start < a.end:
                raise ValueError(
                    f"slots overlap: [{a.start}, {a.end}) and [{b.start}, {b.end}) ({source})"
                )
        self._slots: tuple[Slot, ...] = tuple(ordered)
        self._starts = [s.start for s in ordered]
        self.unit = unit
        self.source = source

    @property
    def slots(self) -> tuple[Slot, ...]:
        return self._slots

    @property
    def start(self) -> datetime | None:
        return self._slots[0].start if self._slots else None

    @property
    def end(self) -> datetime | None:
        return self._slots[-1].end if self._slots else None

    def __len__(self) -> int:
        return len(self._slots)

    def __iter__(self) -> Iterator[Slot]:
        return iter(self._slots)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TimeSeries):
            return NotImplemented
        return (self._slots, self.unit, self.source) == (other._slots, other.unit, other.source)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        span = f"{self.start} .. {self.end}" if self._slots else "empty"
        return f"<TimeSeries {self.source or '?'} [{self.unit}] {len(self)} slots {span}>"

    def _derived(self, slots: Iterable[Slot], source: str | None = None) -> TimeSeries:
        return TimeSeries(slots, unit=self.unit, source=self.source if source is None else source)

    # --- reading --------------------------------------------------------------------------
    def value_at(self, t: datetime) -> float | None:
        """The value in force at `t`; None in a gap or outside the series."""
        i = bisect.bisect_right(self._starts, t) - 1
        if i >= 0 and t < self._slots[i].end:
            return self._slots[i].value
        return None

    def slots_between(self, a: datetime, b: datetime, *, clip: bool = True) -> list[Slot]:
        """Slots overlapping [a, b), cut to that window unless `clip=False`."""
        i = max(0, bisect.bisect_right(self._starts, a) - 1)
        out: list[Slot] = []
        for slot in self._slots[i:]:
            if slot.start >= b:
                break
            part = slot.clip(a, b)
            if part is not None:
                out.append(part if clip else slot)
        return out

    def integral(self, a: datetime | None = None, b: datetime | None = None) -> float:
        """Value x hours over [a, b) (kW -> kWh); gaps count as nothing."""
        slots = self.slots_between(a or _EPOCH, b or datetime.max.replace(tzinfo=UTC))
        return sum(s.value * s.duration.total_seconds() for s in slots) / 3600

    # --- deriving -------------------------------------------------------------------------
    def resample(
        self, step: timedelta = DEFAULT_STEP, how: Literal["mean", "min", "max"] = "mean"
    ) -> TimeSeries:
        """One slot per `step` bucket (aligned to the epoch, so to :00/:15/...).

        The mean is weighted by overlap and taken over the covered time only: a partly covered
        bucket's slot is narrowed to what was covered, so the integral is preserved for a series
        whose gaps fall on bucket edges.
        """
        if step <= timedelta(0):
            raise ValueError("resample step must be positive")
        if how not in ("mean", "min", "max"):
            raise ValueError(f"resample how={how!r}: expected 'mean', 'min' or 'max'")
        # bucket -> [weighted sum, covered seconds, first covered, last covered, min, max]
        acc: dict[datetime, list[Any]] = {}
        for slot in self._slots:
            bucket = _EPOCH + ((slot.start - _EPOCH) // step) * step
            while bucket < slot.end:
                part = slot.clip(bucket, bucket + step)
                assert part is not None  # the bucket overlaps the slot by construction
                seconds = part.duration.total_seconds()
                a = acc.get(bucket)
                if a is None:
                    acc[bucket] = [part.value * seconds, seconds, part.start, part.end] + [
                        part.value
                    ] * 2
                else:
                    a[0] += part.value * seconds
                    a[1] += seconds
                    a[3] = part.end
                    a[4], a[5] = min(a[4], part.value), max(a[5], part.value)
                bucket += step
        pick: dict[str, Callable[[list[Any]], float]] = {
            # Clamped: float rounding must not put a mean outside its own min..max.
            "mean": lambda a: min(max(a[0] / a[1], a[4]), a[5]),
            "min": lambda a: a[4],
            "max": lambda a: a[5],
        }
        return self._derived(Slot(a[2], a[3], pick[how](a)) for a in acc.values())

    def combine_min(self, other: TimeSeries) -> TimeSeries:
        """The stricter of two caps at every instant; where only one has a value, that one."""
        unit = _same_unit(self, other)
        edges = sorted({t for s in (*self._slots, *other._slots) for t in (s.start, s.end)})
        out: list[Slot] = []
        for t0, t1 in itertools.pairwise(edges):
            values = [v for v in (self.value_at(t0), other.value_at(t0)) if v is not None]
            if not values:
                continue
            value = min(values)
            if out and out[-1].end == t0 and out[-1].value == value:
                out[-1] = Slot(out[-1].start, t1, value)  # coalesce: a cap is one slot, not many
            else:
                out.append(Slot(t0, t1, value))
        return TimeSeries(out, unit=unit, source=f"min({self.source},{other.source})")

    def merge(self, newer: TimeSeries) -> TimeSeries:
        """`newer` wherever it has a value; this series fills its gaps."""
        unit = _same_unit(self, newer)
        pieces = list(newer)
        for old in self._slots:
            cursor = old.start
            for cover in newer.slots_between(old.start, old.end):
                if cover.start > cursor:
                    pieces.append(Slot(cursor, cover.start, old.value))
                cursor = max(cursor, cover.end)
            if cursor < old.end:
                pieces.append(Slot(cursor, old.end, old.value))
        return TimeSeries(pieces, unit=unit, source=newer.source or self.source)

    def replace_from(self, t: datetime, newer: TimeSeries) -> TimeSeries:
        """This series before `t`, `newer` from `t` on: a fresh feed replaces the whole tail."""
        _aware(t, "replace_from time")
        unit = _same_unit(self, newer)
        head = [p for s in self._slots if (p := s.clip(None, t)) is not None]
        tail = [p for s in newer if (p := s.clip(t, None)) is not None]
        return TimeSeries([*head, *tail], unit=unit, source=newer.source or self.source)


def _same_unit(a: TimeSeries, b: TimeSeries) -> str:
    if a.unit and b.unit and a.unit != b.unit:
        raise ValueError(f"cannot combine {a.source or 'a series'} in {a.unit} with {b.unit}")
    return a.unit or b.unit


SignalListener = Callable[[str, TimeSeries], Any]


class SignalStore:
    """Named series plugins publish (`prices.grid_import`) and readers subscribe to.

    Readers get the series itself; the bus event only says which name changed, so the recorder
    and automations see a small event.
    """

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._series: dict[str, TimeSeries] = {}

    @classmethod
    def of(cls, hub: Hub) -> SignalStore:
        """The hub's store, created on first use (kept in `hub.data["signals"]`)."""
        store = hub.data.get("signals")
        if store is None:
            store = hub.data["signals"] = cls(hub.bus)
        return store

    def publish(
        self,
        name: str,
        series: TimeSeries,
        *,
        replace_from: datetime | None = None,
        context: Context | None = None,
    ) -> TimeSeries:
        """Store `series` under `name` (or, with `replace_from`, only its tail) and announce it."""
        if not _NAME.match(name):
            raise ValueError(f"signal name {name!r}: expected dotted lower case like caps.site")
        old = self._series.get(name)
        if replace_from is not None and old is not None:
            series = old.replace_from(replace_from, series)
        self._series[name] = series
        data = {"name": name, "source": series.source, "unit": series.unit}
        self._bus.fire(EVENT_SIGNAL_UPDATED, data, context)
        return series

    def get(self, name: str) -> TimeSeries | None:
        return self._series.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._series

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._series if fnmatch.fnmatchcase(n, pattern))

    def subscribe(self, pattern: str, callback: SignalListener) -> Callable[[], None]:
        """Call `callback(name, series)` on each publish matching `pattern` (`prices.*`).

        Returns the unsubscribe callable. A coroutine callback runs as a tracked hub task.
        """

        def deliver(event: Any) -> Any:
            name = event.data["name"]
            return callback(name, self._series[name])

        return self._bus.listen(
            EVENT_SIGNAL_UPDATED,
            deliver,
            event_filter=lambda data: fnmatch.fnmatchcase(data["name"], pattern),
        )
