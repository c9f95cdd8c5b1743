"""The pure price API other code builds on: price at an instant, cheapest slots and hours, the
next change, day statistics, adjustments (markup, VAT, fixed) and demand charges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.charging.signals import Slot, TimeSeries
from plugins.tariffs import prices

T0 = datetime(2026, 3, 2, tzinfo=UTC)
H = timedelta(hours=1)


def hourly(*values: float | None, start: datetime = T0) -> TimeSeries:
    """One slot per hour from `start`; None leaves a gap."""
    return TimeSeries(
        [
            Slot(start + i * H, start + (i + 1) * H, v)
            for i, v in enumerate(values)
            if v is not None
        ],
        unit="EUR/kWh",
    )


def test_price_at_and_gaps() -> None:
    series = hourly(0.3, None, 0.2)
    assert prices.price_at(series, T0 + H / 2) == 0.3
    assert prices.price_at(series, T0 + 1.5 * H) is None
    assert prices.price_at(None, T0) is None


def test_the_cheapest_slots_come_back_in_time_order_and_ties_go_early() -> None:
    series = hourly(0.30, 0.10, 0.25, 0.10, 0.05, 0.40)
    picked = prices.cheapest_slots(series, T0, T0 + 6 * H, 3)
    assert [(s.start.hour, s.value) for s in picked] == [(1, 0.10), (3, 0.10), (4, 0.05)]
    assert [s.start.hour for s in prices.cheapest_slots(series, T0, T0 + 4 * H, 1)] == [1]
    assert prices.cheapest_slots(series, T0, T0 + 6 * H, 0) == []
    # the window cuts the slots it overlaps
    (part,) = prices.cheapest_slots(series, T0 + 4.5 * H, T0 + 6 * H, 1)
    assert (part.start, part.end) == (T0 + 4.5 * H, T0 + 5 * H)


def test_the_cheapest_hours_add_up_exactly() -> None:
    quarter = TimeSeries(
        [Slot(T0 + i * H / 4, T0 + (i + 1) * H / 4, v) for i, v in enumerate([3, 1, 2, 1, 5, 1])]
    )
    picked = prices.cheapest_hours(quarter, T0, T0 + 2 * H, 0.6)
    assert sum((s.duration for s in picked), timedelta()) == timedelta(minutes=36)
    assert [s.value for s in picked] == [1, 1, 1]
    assert picked[-1].duration == timedelta(minutes=6)  # the last one shortened to fit
    assert len(prices.cheapest_hours(quarter, T0, T0 + 2 * H, 10)) == 6  # all there is


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(st.floats(-1, 1, allow_nan=False), min_size=1, max_size=48),
    count=st.integers(0, 50),
)
def test_no_other_choice_of_slots_is_cheaper(values: list[float], count: int) -> None:
    series = hourly(*values)
    picked = prices.cheapest_slots(series, T0, T0 + len(values) * H, count)
    assert len(picked) == min(count, len(values))
    assert sum(s.value for s in picked) == pytest.approx(sum(sorted(values)[:count]))
    assert [s.start for s in picked] == sorted(s.start for s in picked)


def test_upcoming_and_next_change() -> None:
    series = hourly(0.3, 0.3, 0.2, None, 0.4)
    now = T0 + H / 2
    assert [s.start for s in prices.upcoming(series, now)] == [T0, T0 + H, T0 + 2 * H, T0 + 4 * H]
    assert len(prices.upcoming(series, now, limit=2)) == 2
    assert prices.next_change(series, now) == T0 + 2 * H  # 0.3 -> 0.2
    assert prices.next_change(series, T0 + 2.5 * H) == T0 + 3 * H  # 0.2 -> unknown
    assert prices.next_change(series, T0 + 3.5 * H) == T0 + 4 * H  # unknown -> 0.4
    assert prices.next_change(series, T0 + 4.5 * H) == T0 + 5 * H  # the end of what is known
    assert prices.next_change(series, T0 + 9 * H) is None
    assert prices.upcoming(None, now) == [] and prices.next_change(None, now) is None


def test_stats_are_time_weighted() -> None:
    series = TimeSeries([Slot(T0, T0 + 3 * H, 0.1), Slot(T0 + 3 * H, T0 + 4 * H, 0.5)])
    assert prices.stats(series, T0, T0 + 24 * H) == {"min": 0.1, "max": 0.5, "mean": 0.2}
    assert prices.stats(series, T0 + 5 * H, T0 + 6 * H) == {"min": None, "max": None, "mean": None}


def test_adjust_adds_markup_before_vat_and_fixed_after() -> None:
    series = hourly(0.10, -0.02)
    adjusted = prices.adjust(series, markup=0.02, vat=0.19, fixed=0.05)
    assert [s.value for s in adjusted] == [pytest.approx(0.1928), pytest.approx(0.05)]
    assert adjusted.unit == "EUR/kWh"
    assert prices.adjust(series) is series
    assert prices.slot_dicts(adjusted)[0] == {
        "start": "2026-03-02T00:00:00+00:00", "end": "2026-03-02T01:00:00+00:00", "price": 0.1928
    }  # fmt: skip


def test_demand_cost_per_month_and_per_day_inside_windows() -> None:
    tz = ZoneInfo("Europe/Berlin")
    load = TimeSeries(
        [
            Slot(T0, T0 + 10 * H, 50.0),
            Slot(T0 + 10 * H, T0 + 10 * H + timedelta(minutes=5), 300.0),  # a 5-minute spike
            Slot(T0 + 24 * H, T0 + 30 * H, 40.0),
        ],
        unit="kW",
    )
    # the spike averages to 100 kW over its quarter hour
    assert prices.demand_peaks(load, "monthly", tz) == {datetime(2026, 3, 1, tzinfo=tz): 100.0}
    assert prices.demand_cost(load, 10.0, "monthly", tz) == pytest.approx(1000.0)
    assert prices.demand_cost(load, 10.0, "daily", tz) == pytest.approx(10 * (100 + 40))
    morning = [(T0, T0 + 6 * H), (T0 + 24 * H, T0 + 30 * H)]
    assert prices.demand_cost(load, 10.0, "daily", tz, morning) == pytest.approx(10 * (50 + 40))
    # T0 is 01:00 in Berlin: one month, but 2 March and 3 March are separate days
    assert len(prices.demand_peaks(load, "daily", tz)) == 2
