"""Prices, caps and forecasts as time series, and the store plugins publish them on.

Scenarios first; then the invariants the planner relies on, as hypothesis properties.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.bus import Event
from hub.charging import EVENT_SIGNAL_UPDATED, SignalStore, Slot, TimeSeries
from hub.core import Hub

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
H = timedelta(hours=1)


def series(*slots: tuple[float, float, float], unit: str = "kW", source: str = "") -> TimeSeries:
    """Slots as (start hour, end hour, value) from midnight."""
    return TimeSeries(
        [Slot(T0 + a * H, T0 + b * H, v) for a, b, v in slots], unit=unit, source=source
    )


# --- scenarios ------------------------------------------------------------------------------
def test_given_hourly_prices_then_each_instant_has_its_slots_price() -> None:
    prices = series((0, 1, 0.30), (1, 2, 0.25), (3, 4, 0.40), unit="EUR/kWh")

    assert prices.value_at(T0) == 0.30
    assert prices.value_at(T0 + H - timedelta(microseconds=1)) == 0.30
    assert prices.value_at(T0 + H) == 0.25  # a slot holds on [start, end)
    assert prices.value_at(T0 + 2.5 * H) is None  # a gap: no price known
    assert prices.value_at(T0 - MIN) is None and prices.value_at(T0 + 4 * H) is None
    assert prices.slots_between(T0 + 0.5 * H, T0 + 3.5 * H) == [
        Slot(T0 + 0.5 * H, T0 + H, 0.30),
        Slot(T0 + H, T0 + 2 * H, 0.25),
        Slot(T0 + 3 * H, T0 + 3.5 * H, 0.40),
    ]
    assert prices.slots_between(T0 + 0.5 * H, T0 + H, clip=False) == [prices.slots[0]]


def test_given_hourly_prices_when_resampled_to_15_minutes_then_each_quarter_keeps_its_price() -> (
    None
):
    quarters = series((0, 1, 0.30), (1, 2, 0.25)).resample()

    assert len(quarters) == 8
    assert [s.value for s in quarters] == [0.30] * 4 + [0.25] * 4
    assert quarters.slots[1].start == T0 + 15 * MIN


def test_given_a_pv_forecast_when_resampled_to_hours_then_the_mean_is_weighted_by_overlap() -> None:
    pv = TimeSeries(
        [Slot(T0, T0 + 45 * MIN, 40.0), Slot(T0 + 45 * MIN, T0 + 75 * MIN, 80.0)], unit="kW"
    )

    hourly = pv.resample(H)
    assert [(s.start, s.end) for s in hourly] == [(T0, T0 + H), (T0 + H, T0 + 75 * MIN)]
    assert hourly.slots[0].value == pytest.approx((40 * 45 + 80 * 15) / 60)
    assert hourly.slots[1].value == 80.0
    assert pv.resample(H, "min").slots[0].value == 40.0
    assert pv.resample(H, "max").slots[0].value == 80.0
    assert hourly.integral() == pytest.approx(pv.integral()) == pytest.approx(70.0)


def test_given_a_site_cap_and_a_demand_response_cap_then_the_stricter_one_holds() -> None:
    site = series((0, 24, 277.0), source="site.yaml")
    dr = series((17, 19, 150.0), (19, 20, 300.0), source="openadr")

    cap = site.combine_min(dr)

    assert [(s.start, s.end, s.value) for s in cap] == [
        (T0, T0 + 17 * H, 277.0),
        (T0 + 17 * H, T0 + 19 * H, 150.0),
        (T0 + 19 * H, T0 + 24 * H, 277.0),  # 300 kW from the DR event is looser: merged away
    ]
    assert cap.source == "min(site.yaml,openadr)"


def test_given_day_ahead_prices_when_a_newer_feed_arrives_then_it_replaces_the_tail() -> None:
    day_ahead = series((0, 12, 0.30), (12, 24, 0.20), unit="EUR/kWh", source="entsoe")
    intraday = series((10, 14, 0.50), unit="EUR/kWh", source="intraday")

    updated = day_ahead.replace_from(T0 + 11 * H, intraday)

    assert updated.value_at(T0 + 10.5 * H) == 0.30  # before the cut: the old feed
    assert updated.value_at(T0 + 11.5 * H) == 0.50
    assert updated.value_at(T0 + 15 * H) is None  # the whole tail was replaced
    assert updated.source == "intraday"
    merged = day_ahead.merge(intraday)
    assert [merged.value_at(T0 + h * H) for h in (9, 10, 13, 15)] == [0.30, 0.50, 0.50, 0.20]


def test_malformed_series_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        series((0, 2, 1.0), (1, 3, 2.0))
    with pytest.raises(ValueError, match="timezone-aware"):
        Slot(datetime(2026, 3, 2), datetime(2026, 3, 2, 1), 1.0)
    with pytest.raises(ValueError, match="before it starts"):
        Slot(T0 + H, T0, 1.0)
    with pytest.raises(ValueError, match="NaN"):
        Slot(T0, T0 + H, math.nan)
    with pytest.raises(ValueError, match="EUR/kWh"):
        series((0, 1, 1.0), unit="kW").combine_min(series((0, 1, 1.0), unit="EUR/kWh"))
    with pytest.raises(ValueError, match="how="):
        series((0, 1, 1.0)).resample(how="median")  # type: ignore[arg-type]


async def test_given_a_store_when_a_plugin_publishes_then_subscribers_and_the_bus_hear(
    hub: Hub,
) -> None:
    store = SignalStore.of(hub)
    assert SignalStore.of(hub) is store
    events: list[Event] = []
    heard: list[tuple[str, float | None]] = []
    hub.bus.listen(EVENT_SIGNAL_UPDATED, events.append)
    stop_listening = store.subscribe("prices.*", lambda n, s: heard.append((n, s.value_at(T0))))

    store.publish("prices.grid_import", series((0, 24, 0.30), source="tariffs"))
    store.publish("caps.site", series((0, 24, 277.0)))
    store.publish("prices.grid_import", series((0, 1, 0.10)), replace_from=T0 + 12 * H)
    stop_listening()
    store.publish("prices.grid_export", series((0, 24, 0.08)))

    assert [e.data["name"] for e in events] == [
        "prices.grid_import",
        "caps.site",
        "prices.grid_import",
        "prices.grid_export",
    ]
    assert events[0].data["source"] == "tariffs"
    assert heard == [("prices.grid_import", 0.30), ("prices.grid_import", 0.30)]
    kept = store.get("prices.grid_import")
    assert kept is not None and kept.value_at(T0 + 13 * H) is None  # tail replaced by nothing
    assert store.names("prices.*") == ["prices.grid_export", "prices.grid_import"]
    assert "caps.site" in store and store.get("forecast.pv") is None
    with pytest.raises(ValueError, match="signal name"):
        store.publish("Prices", series((0, 1, 1.0)))


async def test_given_an_async_subscriber_then_it_runs_as_a_hub_task(hub: Hub) -> None:
    store = SignalStore.of(hub)
    got: list[str] = []

    async def replan(name: str, s: TimeSeries) -> None:
        got.append(f"{name}:{len(s)}")

    store.subscribe("forecast.pv", replan)
    store.publish("forecast.pv", series((6, 7, 5.0), (7, 8, 20.0)))
    await hub.block_till_done()

    assert got == ["forecast.pv:2"]


# --- properties ---------------------------------------------------------------------------------
Spec = Sequence[tuple[int, int, float]]  # (gap minutes, duration minutes, value) per slot


def from_spec(spec: Spec, offset: int = 0) -> TimeSeries:
    slots, cursor = [], T0 + offset * MIN
    for gap, duration, value in spec:
        cursor += gap * MIN
        slots.append(Slot(cursor, cursor + duration * MIN, value))
        cursor += duration * MIN
    return TimeSeries(slots, unit="kW")


def probes(*all_series: TimeSeries) -> list[datetime]:
    """Every boundary, just before it, and every midpoint: where a piecewise series can differ."""
    edges = sorted({t for s in all_series for slot in s for t in (slot.start, slot.end)})
    mids = [a + (b - a) / 2 for a, b in itertools.pairwise(edges)]
    return [*edges, *(t - timedelta(microseconds=1) for t in edges), *mids]


def check_combine_min(a: TimeSeries, b: TimeSeries) -> None:
    both = a.combine_min(b)
    for t in probes(a, b):
        va, vb, v = a.value_at(t), b.value_at(t), both.value_at(t)
        known = [x for x in (va, vb) if x is not None]
        assert v == (min(known) if known else None), t
        assert all(v is not None and v <= x for x in known)  # never looser than either cap


def check_resample(s: TimeSeries, step_minutes: int) -> None:
    step = step_minutes * MIN
    mean, low, high = s.resample(step), s.resample(step, "min"), s.resample(step, "max")
    scale = 1 + sum(abs(x.value) * x.duration.total_seconds() for x in s) / 3600
    assert math.isclose(mean.integral(), s.integral(), rel_tol=1e-9, abs_tol=1e-9 * scale)
    for out in (mean, low, high):
        for slot in out:  # each output slot lies inside one bucket
            bucket = T0 + ((slot.start - T0) // step) * step
            assert bucket <= slot.start < slot.end <= bucket + step
    for t in probes(s):
        v = s.value_at(t)
        if v is not None:
            assert low.value_at(t) <= v <= high.value_at(t)  # type: ignore[operator]
            assert low.value_at(t) <= mean.value_at(t) <= high.value_at(t)  # type: ignore[operator]


def check_replace_and_merge(old: TimeSeries, new: TimeSeries, cut: datetime) -> None:
    replaced, merged = old.replace_from(cut, new), old.merge(new)
    for t in [*probes(old, new), cut]:
        assert replaced.value_at(t) == (old.value_at(t) if t < cut else new.value_at(t))
        newer = new.value_at(t)
        assert merged.value_at(t) == (newer if newer is not None else old.value_at(t))


values = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)
specs = st.lists(st.tuples(st.integers(0, 90), st.integers(1, 240), values), max_size=10)
contiguous = st.lists(st.tuples(st.just(0), st.integers(1, 240), values), max_size=10)
offsets = st.integers(0, 120)


@settings(max_examples=300, deadline=None)
@given(specs, offsets, specs)
def test_property_combine_min_never_exceeds_either_input(a: Spec, offset: int, b: Spec) -> None:
    check_combine_min(from_spec(a, offset), from_spec(b))


@settings(max_examples=300, deadline=None)
@given(contiguous, offsets, st.sampled_from([5, 15, 30, 60]))
def test_property_resample_preserves_the_integral_and_bounds(
    spec: Spec, offset: int, step: int
) -> None:
    check_resample(from_spec(spec, offset), step)


@settings(max_examples=300, deadline=None)
@given(specs, specs, offsets, st.integers(-60, 900))
def test_property_replace_from_takes_the_newer_tail_and_merge_fills_gaps(
    old: Spec, new: Spec, offset: int, cut: int
) -> None:
    check_replace_and_merge(from_spec(old), from_spec(new, offset), T0 + cut * MIN)
