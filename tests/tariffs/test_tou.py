"""Time-of-use rules expanded into price series: TOU and season boundaries, weekends, holidays,
and the nights clocks change (Europe/Berlin and America/Los_Angeles), in 15-minute slots too.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import voluptuous as vol

from hub.charging.signals import TimeSeries
from plugins.tariffs.holidays import Holidays, calendar_dates, easter
from plugins.tariffs.tou import (
    RULES_SCHEMA,
    TouRules,
    demand_windows,
    expand,
    offset_changes,
)

BERLIN = ZoneInfo("Europe/Berlin")
LA = ZoneInfo("America/Los_Angeles")
Q = timedelta(minutes=15)


def rules(**conf: Any) -> TouRules:
    return TouRules.from_config(RULES_SCHEMA(conf))


def local_day(day: date, tz: ZoneInfo, days: int = 1) -> tuple[datetime, datetime]:
    start = datetime.combine(day, datetime.min.time(), tzinfo=tz)
    return start.astimezone(UTC), (start + timedelta(days=days)).astimezone(UTC)


def at(series: TimeSeries, tz: ZoneInfo, *wall: int, fold: int = 0) -> float | None:
    return series.value_at(datetime(*wall, tzinfo=tz, fold=fold).astimezone(UTC))


COMMERCIAL = rules(
    holidays={"calendar": "de", "dates": ["12-24", date(2026, 12, 31)]},
    seasons={
        "summer": {"start": "06-01", "end": "09-30"},
        "winter": {"start": "10-01", "end": "05-31"},
    },
    periods=[
        {"name": "holiday", "days": ["holiday"], "price": 0.15},
        {
            "name": "summer_peak",
            "seasons": "summer",
            "days": ["weekday"],
            "start": "12:00",
            "end": "18:00",
            "price": 0.45,
        },
        {
            "name": "winter_peak",
            "seasons": ["winter"],
            "days": ["weekday"],
            "start": "12:00",
            "end": "18:00",
            "price": 0.35,
        },
        {"name": "weekend", "days": ["weekend"], "price": 0.18, "export_price": 0.06},
        {"name": "base", "price": 0.25, "export_price": 0.07},
    ],
)


def test_given_a_noon_boundary_then_the_price_changes_at_exactly_12_00_local() -> None:
    start, end = local_day(date(2026, 3, 2), BERLIN)  # a Monday in winter (UTC+1)
    series = expand(COMMERCIAL, start, end, BERLIN, unit="EUR/kWh")

    assert at(series, BERLIN, 2026, 3, 2, 11, 59, 59) == 0.25
    assert at(series, BERLIN, 2026, 3, 2, 12, 0) == 0.35
    assert at(series, BERLIN, 2026, 3, 2, 17, 59) == 0.35
    assert at(series, BERLIN, 2026, 3, 2, 18, 0) == 0.25
    assert [(s.start.hour, s.end.hour, s.value) for s in series] == [
        (23, 11, 0.25),  # UTC hours: local 00:00-12:00
        (11, 17, 0.35),
        (17, 23, 0.25),
    ]
    assert series.unit == "EUR/kWh" and series.start == start and series.end == end


def test_given_seasons_then_the_peak_price_switches_at_the_first_of_june() -> None:
    start, end = local_day(date(2026, 5, 29), BERLIN, days=7)
    series = expand(COMMERCIAL, start, end, BERLIN)

    assert at(series, BERLIN, 2026, 5, 29, 13, 0) == 0.35  # Friday, winter
    assert at(series, BERLIN, 2026, 6, 1, 13, 0) == 0.45  # Monday, summer
    assert at(series, BERLIN, 2026, 5, 31, 23, 59) == 0.18  # Sunday night: weekend
    assert at(series, BERLIN, 2026, 6, 1, 0, 0) == 0.25


def test_a_season_may_wrap_the_year() -> None:
    start, end = local_day(date(2026, 12, 28), BERLIN, days=10)
    series = expand(COMMERCIAL, start, end, BERLIN)

    assert at(series, BERLIN, 2026, 12, 28, 12, 0) == 0.35
    assert at(series, BERLIN, 2027, 1, 5, 12, 0) == 0.35  # still winter in January


def test_given_a_weekend_then_no_peak() -> None:
    start, end = local_day(date(2026, 3, 7), BERLIN, days=2)
    series = expand(COMMERCIAL, start, end, BERLIN)

    assert {s.value for s in series} == {0.18}
    assert len(series) == 1  # one price all weekend: one slot


def test_given_holidays_then_calendar_and_listed_dates_take_the_holiday_price() -> None:
    start, end = local_day(date(2026, 4, 2), BERLIN, days=5)
    series = expand(COMMERCIAL, start, end, BERLIN)

    assert at(series, BERLIN, 2026, 4, 2, 13, 0) == 0.35  # Maundy Thursday: a working day
    assert at(series, BERLIN, 2026, 4, 3, 13, 0) == 0.15  # Good Friday
    assert at(series, BERLIN, 2026, 4, 6, 13, 0) == 0.15  # Easter Monday
    for day in (date(2026, 12, 24), date(2027, 12, 24), date(2026, 12, 31)):
        s, e = local_day(day, BERLIN)
        assert {x.value for x in expand(COMMERCIAL, s, e, BERLIN)} == {0.15}, day
    s, e = local_day(date(2027, 12, 31), BERLIN)  # listed once, for 2026 only
    assert at(expand(COMMERCIAL, s, e, BERLIN), BERLIN, 2027, 12, 31, 13, 0) == 0.35


def test_weekday_excludes_holidays_but_day_names_do_not() -> None:
    friday = rules(
        holidays={"calendar": "de"},
        periods=[
            {"days": ["fri"], "price": 1.0},
            {"days": ["weekday"], "price": 2.0},
            {"price": 3.0},
        ],
    )
    s, e = local_day(date(2026, 4, 2), BERLIN, days=2)
    series = expand(friday, s, e, BERLIN)

    assert at(series, BERLIN, 2026, 4, 2, 10, 0) == 2.0
    assert at(series, BERLIN, 2026, 4, 3, 10, 0) == 1.0  # Good Friday is still a Friday


def test_export_prices_come_from_the_first_period_that_has_one() -> None:
    start, end = local_day(date(2026, 3, 2), BERLIN)
    series = expand(COMMERCIAL, start, end, BERLIN, field="export_price")

    assert {s.value for s in series} == {0.07}  # the peak periods have no export price


def test_a_period_past_midnight_uses_the_day_of_each_instant() -> None:
    night = rules(
        periods=[
            {"days": "weekday", "start": "22:00", "end": "06:00", "price": 0.1},
            {"price": 0.3},
        ]
    )
    start, end = local_day(date(2026, 3, 6), BERLIN, days=4)  # Friday to Monday
    series = expand(night, start, end, BERLIN)

    assert at(series, BERLIN, 2026, 3, 6, 5, 59) == 0.1
    assert at(series, BERLIN, 2026, 3, 6, 23, 0) == 0.1  # Friday night
    assert at(series, BERLIN, 2026, 3, 7, 1, 0) == 0.3  # Saturday is not a weekday
    assert at(series, BERLIN, 2026, 3, 9, 1, 0) == 0.1  # Monday early morning


# --- DST --------------------------------------------------------------------------------------
NIGHT = rules(
    periods=[
        {"name": "skipped", "start": "02:00", "end": "02:30", "price": 0.99},
        {"name": "late", "start": "02:30", "end": "04:00", "price": 0.50},
        {"name": "night", "start": "00:00", "end": "06:00", "price": 0.20},
        {"name": "day", "price": 0.30},
    ]
)


def test_spring_forward_in_berlin_the_skipped_hour_has_no_price() -> None:
    start, end = local_day(date(2026, 3, 29), BERLIN)  # 02:00 CET -> 03:00 CEST
    series = expand(NIGHT, start, end, BERLIN, step=Q)

    assert end - start == timedelta(hours=23)
    assert len(series) == 23 * 4
    assert all(b.start - a.start == Q for a, b in zip(series, list(series)[1:], strict=False))
    assert 0.99 not in {s.value for s in series}
    jump = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert series.value_at(jump - Q) == 0.20  # 01:45 CET
    assert series.value_at(jump) == 0.50  # 03:00 CEST is inside 02:30-04:00
    assert at(series, BERLIN, 2026, 3, 29, 4, 0) == 0.20
    assert at(series, BERLIN, 2026, 3, 29, 6, 0) == 0.30
    for slot in series:  # every quarter carries the price of its own wall-clock time
        local = slot.start.astimezone(BERLIN)
        expected = NIGHT.period_at(local)
        assert expected is not None and slot.value == expected.price, local


def test_fall_back_in_berlin_the_repeated_hour_is_priced_twice() -> None:
    start, end = local_day(date(2026, 10, 25), BERLIN)  # 03:00 CEST -> 02:00 CET
    series = expand(NIGHT, start, end, BERLIN, step=Q)

    assert len(series) == 25 * 4
    skipped = [s for s in series if s.value == 0.99]
    assert len(skipped) == 4  # 02:00-02:30, twice
    assert [s.start.strftime("%H:%M") for s in skipped] == ["00:00", "00:15", "01:00", "01:15"]
    assert at(series, BERLIN, 2026, 10, 25, 2, 45, fold=0) == 0.50
    assert at(series, BERLIN, 2026, 10, 25, 2, 45, fold=1) == 0.50


SCE_LIKE = rules(
    periods=[
        {"name": "one_am", "start": "01:00", "end": "02:00", "price": 0.11},
        {"name": "two_am", "start": "02:00", "end": "03:00", "price": 0.22},
        {"name": "on_peak", "days": "weekday", "start": "16:00", "end": "21:00", "price": 0.49},
        {"name": "off_peak", "price": 0.12},
    ]
)


def test_spring_forward_in_los_angeles() -> None:
    start, end = local_day(date(2026, 3, 8), LA)  # Sunday: 02:00 PST -> 03:00 PDT
    series = expand(SCE_LIKE, start, end, LA, step=Q)

    assert len(series) == 23 * 4
    assert 0.22 not in {s.value for s in series}
    assert [s.value for s in series.slots_between(*local_day(date(2026, 3, 8), LA))][4:9] == [
        0.11, 0.11, 0.11, 0.11, 0.12,
    ]  # fmt: skip
    weekday = expand(SCE_LIKE, *local_day(date(2026, 3, 9), LA), LA)
    assert at(weekday, LA, 2026, 3, 9, 16, 0) == 0.49
    assert weekday.value_at(datetime(2026, 3, 9, 23, 0, tzinfo=UTC)) == 0.49  # 16:00 PDT


def test_fall_back_in_los_angeles() -> None:
    start, end = local_day(date(2026, 11, 1), LA)  # 02:00 PDT -> 01:00 PST
    series = expand(SCE_LIKE, start, end, LA)

    one_am = [s for s in series if s.value == 0.11]
    assert [(s.start.hour, s.end.hour) for s in one_am] == [(8, 10)]  # two hours, 08-10 UTC
    assert at(series, LA, 2026, 11, 1, 2, 30) == 0.22
    assert sum((s.duration for s in series), timedelta()) == timedelta(hours=25)


def test_offset_changes_are_found_to_the_second() -> None:
    start, end = local_day(date(2026, 1, 1), BERLIN, days=365)
    assert offset_changes(BERLIN, start, end) == [
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 0, tzinfo=UTC),
    ]


def test_rules_may_carry_their_own_time_zone() -> None:
    pacific = rules(
        time_zone="America/Los_Angeles", periods=[{"start": "16:00", "end": "21:00", "price": 1.0}]
    )
    series = expand(pacific, *local_day(date(2026, 3, 2), BERLIN), BERLIN)
    assert series.value_at(datetime(2026, 3, 2, 0, 0, tzinfo=UTC)) == 1.0  # 16:00 PST


# --- demand charge windows --------------------------------------------------------------------
def test_demand_windows_follow_the_named_periods_and_their_own_filters() -> None:
    tou = rules(
        periods=[
            {"name": "peak", "days": ["weekday"], "start": "16:00", "end": "21:00", "price": 0.4},
            {"name": "base", "price": 0.2},
        ],
        demand_charges=[
            {"rate": 15.51, "basis": "monthly"},
            {"name": "peak_demand", "rate": 8.0, "basis": "daily", "periods": ["peak"]},
            {"rate": 2.0, "days": ["weekend"], "start": "10:00", "end": "14:00"},
        ],
    )
    always, peak, weekend = tou.demand_charges
    start, end = local_day(date(2026, 3, 6), LA, days=2)  # Friday and Saturday

    assert always.always and always.describe()["window"] is None
    assert peak.describe() == {
        "name": "peak_demand", "rate": 8.0, "basis": "daily", "window": {"periods": ["peak"]}
    }  # fmt: skip
    assert demand_windows(tou, peak, start, end, LA) == [
        (datetime(2026, 3, 7, 0, 0, tzinfo=UTC), datetime(2026, 3, 7, 5, 0, tzinfo=UTC))
    ]
    assert [(a.hour, b.hour) for a, b in demand_windows(tou, weekend, start, end, LA)] == [(18, 22)]


# --- validation -------------------------------------------------------------------------------
ONE = [{"price": 1}]
BAD_RULES = [
    ({"periods": [{"seasons": ["summer"], "price": 1}]}, "periods.0.seasons", "unknown season"),
    ({"periods": [{"start": "25:00", "price": 1}]}, "periods.0.start", "HH:MM"),
    ({"periods": [{"start": 8, "price": 1}]}, "periods.0.start", "HH:MM"),
    ({"periods": [{"start": "08:00", "end": "08:00", "price": 1}]}, "periods.0.end", "same time"),
    ({"periods": [{"start": "08:00"}]}, "periods.0", "needs a price"),
    ({"periods": [{"days": ["someday"], "price": 1}]}, "periods.0.days.0", "expected one of"),
    ({"periods": ONE, "holidays": {"calendar": "xx"}}, "holidays.calendar.0", "unknown calendar"),
    (
        {"periods": ONE, "seasons": {"s": {"start": "02-30", "end": "03-01"}}},
        "seasons.s.start",
        "MM-DD",
    ),
    (
        {"periods": ONE, "demand_charges": [{"rate": 1, "periods": ["nope"]}]},
        "demand_charges.0.periods",
        "no period",
    ),
    (
        {"periods": ONE, "demand_charges": [{"rate": 1, "basis": "yearly"}]},
        "demand_charges.0.basis",
        "expected one of",
    ),
    ({"periods": []}, "periods", "length"),
]


@pytest.mark.parametrize(("conf", "key", "message"), BAD_RULES)
def test_bad_rules_are_rejected_naming_the_key(conf: dict, key: str, message: str) -> None:
    with pytest.raises(vol.Invalid) as caught:
        RULES_SCHEMA(conf)
    err = caught.value
    found = [(".".join(map(str, e.path)), e.msg) for e in getattr(err, "errors", [err])]
    assert any(k == key and message in msg for k, msg in found), found


def test_yaml_reads_unquoted_times_as_minutes_and_they_still_work() -> None:
    conf = RULES_SCHEMA({"periods": [{"start": 960, "end": "24:00", "price": 1.0}]})  # 16:00
    assert (conf["periods"][0]["start"], conf["periods"][0]["end"]) == (960, 1440)


# --- holidays ---------------------------------------------------------------------------------
def test_easter_and_the_named_calendars() -> None:
    assert [easter(y) for y in (2024, 2025, 2026, 2038)] == [
        date(2024, 3, 31), date(2025, 4, 20), date(2026, 4, 5), date(2038, 4, 25)
    ]  # fmt: skip
    assert date(2026, 5, 14) in calendar_dates("de", 2026)  # Ascension
    assert date(2026, 5, 25) in calendar_dates("de", 2026)  # Whit Monday
    assert date(2026, 6, 4) in calendar_dates("at", 2026)  # Corpus Christi
    assert date(2026, 6, 4) not in calendar_dates("de", 2026)  # regional in Germany
    us = Holidays(("us_utility",))
    assert date(2022, 12, 26) in us and date(2022, 12, 25) not in us  # Sunday -> Monday
    assert date(2026, 7, 4) in us and date(2026, 7, 3) not in us  # Saturday: not moved
    assert {date(2026, 2, 16), date(2026, 5, 25), date(2026, 9, 7), date(2026, 11, 26)} <= set(
        calendar_dates("us_utility", 2026)
    )
