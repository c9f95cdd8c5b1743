"""Each feed parser on its answer: the recorded Nord Pool and EnergyZero answers
(../shared/data/tariffs/dayahead/), and for ENTSO-E, aWATTar, Octopus and Tibber payloads built
from their published API documentation (tests/tariffs/payloads.py; no recording exists)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.tariffs import feeds
from plugins.tariffs.feeds import FeedError
from tests.tariffs import payloads

BERLIN = ZoneInfo("Europe/Berlin")
H = timedelta(hours=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- recorded answers -------------------------------------------------------------------------
def test_nord_pool_sek_per_mwh_becomes_sek_per_kwh_for_the_chosen_area() -> None:
    body = payloads.NORDPOOL_FILE.read_bytes()
    se3 = feeds.parse_nordpool(body, "SE3")
    se4 = feeds.parse_nordpool(body, "SE4")

    assert se3.unit == "SEK/kWh" and se3.source == "nordpool"
    assert len(se3) == 24
    assert (se3.start, se3.end) == (utc(2024, 11, 4, 23), utc(2024, 11, 5, 23))
    assert se3.value_at(utc(2024, 11, 4, 23, 30)) == pytest.approx(0.25073)
    assert se3.value_at(utc(2024, 11, 5, 16)) == pytest.approx(2.51265)
    assert se4.value_at(utc(2024, 11, 5, 16)) == pytest.approx(3.53303)
    assert se4.value_at(utc(2024, 11, 5, 18)) == 0.0  # a zero price is a price, not a gap
    assert all(b.start == a.end for a, b in zip(se3, list(se3)[1:], strict=False))


def test_nord_pool_refuses_an_area_it_did_not_answer_for() -> None:
    with pytest.raises(FeedError, match=r"area NO1 not in the answer \(it has SE3, SE4\)"):
        feeds.parse_nordpool(payloads.NORDPOOL_FILE.read_bytes(), "NO1")


def test_energyzero_hourly_prices_as_given_including_vat() -> None:
    series = feeds.parse_energyzero(payloads.ENERGYZERO_FILE.read_bytes())

    assert series.unit == "EUR/kWh" and len(series) == 24
    assert (series.start, series.end) == (utc(2022, 12, 6, 23), utc(2022, 12, 7, 23))
    assert series.value_at(utc(2022, 12, 6, 23)) == 0.35
    assert series.value_at(utc(2022, 12, 7, 16, 59)) == 0.55  # the day's maximum
    assert series.value_at(utc(2022, 12, 7, 22, 59)) == 0.31
    assert sum(s.value for s in series) / 24 == pytest.approx(0.37, abs=0.005)  # "average"


# --- built from the providers' documentation --------------------------------------------------
DAY = utc(2026, 3, 1, 23)  # local midnight in Berlin
PRICES = [80.0, 80.0, 75.5, 75.5, 75.5, 90.0] + [100.0 + i for i in range(18)]


@pytest.mark.parametrize("curve", ["A01", "A03"])
def test_entsoe_a44_hourly_in_either_curve_type(curve: str) -> None:
    body = payloads.entsoe_a44(
        payloads.entsoe_period(DAY, PRICES, curve=curve), start=DAY, end=DAY + 24 * H
    )
    series = feeds.parse_entsoe(body)

    assert series.unit == "EUR/kWh" and (series.start, series.end) == (DAY, DAY + 24 * H)
    assert [series.value_at(DAY + i * H) for i in range(24)] == [p / 1000 for p in PRICES]
    if curve == "A03":  # left-out points hold the price before them: fewer, longer slots
        assert [s.duration / H for s in series][:3] == [2, 3, 1]


def test_entsoe_prefers_quarter_hours_where_a_zone_publishes_both() -> None:
    quarters = [50.0 + i for i in range(8)]  # the first two hours in 15-minute steps
    body = payloads.entsoe_a44(
        payloads.entsoe_period(DAY, PRICES, curve="A01"),
        payloads.entsoe_period(DAY, quarters, resolution="PT15M", curve="A01"),
        start=DAY,
        end=DAY + 24 * H,
    )
    series = feeds.parse_entsoe(body)

    assert series.value_at(DAY + timedelta(minutes=45)) == 0.053
    assert series.value_at(DAY + 2 * H) == 0.0755  # hourly fills the rest
    assert len(series) == 8 + 22


def test_entsoe_no_data_and_hostile_documents_are_feed_errors() -> None:
    with pytest.raises(FeedError, match="ENTSO-E refused: No matching data found"):
        feeds.parse_entsoe(payloads.entsoe_no_data())
    bomb = b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "bbbb">]><a>&b;</a>'
    with pytest.raises(FeedError, match="document type declaration"):
        feeds.parse_entsoe(bomb)
    with pytest.raises(FeedError, match="not XML"):
        feeds.parse_entsoe(b"<Publication_MarketDocument>")
    with pytest.raises(FeedError, match="unexpected document"):
        feeds.parse_entsoe(b"<html/>")


def test_awattar_example_from_its_documentation() -> None:
    body = json.dumps(
        {
            "object": "list",
            "data": [
                {"start_timestamp": 1561932000000, "end_timestamp": 1561935600000,
                 "marketprice": 28.98, "unit": "Eur/MWh"},
                {"start_timestamp": 1561935600000, "end_timestamp": 1561939200000,
                 "marketprice": 26.23, "unit": "Eur/MWh"},
            ],
            "url": "/at/v1/marketdata",
        }
    ).encode()  # fmt: skip
    series = feeds.parse_awattar(body)

    assert series.unit == "EUR/kWh"
    assert [(s.start, s.value) for s in series] == [
        (utc(2019, 6, 30, 22), 0.02898), (utc(2019, 6, 30, 23), 0.02623)
    ]  # fmt: skip
    assert len(feeds.parse_awattar(payloads.awattar(DAY, PRICES))) == 24


def test_octopus_agile_half_hours_newest_first_in_pence() -> None:
    body = payloads.octopus(DAY, [21.0, 18.9, -2.1, 30.45])
    series = feeds.parse_octopus(body)

    assert series.unit == "GBP/kWh"
    assert [(s.start, s.duration, s.value) for s in series][:2] == [
        (DAY, timedelta(minutes=30), 0.21), (DAY + H / 2, timedelta(minutes=30), 0.189)
    ]  # fmt: skip
    assert series.value_at(DAY + H) == pytest.approx(-0.021)  # plunge pricing: paid to use
    assert feeds.parse_octopus(body, include_vat=False).value_at(DAY) == pytest.approx(0.2)


def test_tibber_today_and_tomorrow_in_the_home_currency() -> None:
    today = payloads.tibber_entries(DAY, [0.30] * 24, BERLIN)
    tomorrow = payloads.tibber_entries(DAY + 24 * H, [0.25] * 96, BERLIN, step=H / 4)
    series = feeds.parse_tibber(payloads.tibber(today, tomorrow))

    assert series.unit == "EUR/kWh"
    assert (series.start, series.end) == (DAY, DAY + 48 * H)
    assert series.slots[23].duration == H and series.slots[24].duration == H / 4
    assert feeds.parse_tibber(payloads.tibber(today), field="energy").value_at(DAY) == 0.18


def test_tibber_errors_and_homes() -> None:
    denied = json.dumps({"errors": [{"message": "Context creation failed: invalid token"}]})
    with pytest.raises(FeedError, match="Tibber refused: Context creation failed"):
        feeds.parse_tibber(denied)
    with pytest.raises(FeedError, match="no home with a current subscription and id x"):
        feeds.parse_tibber(
            payloads.tibber(payloads.tibber_entries(DAY, [0.3], BERLIN)), home_id="x"
        )


# --- generic JSON and CSV ---------------------------------------------------------------------
def test_generic_json_through_templates() -> None:
    body = json.dumps(
        {"result": {"prices": [
            {"from": "2026-03-02T00:00:00", "eur_mwh": 91.5},
            {"from": "2026-03-02T00:15:00", "eur_mwh": 88.0},
        ]}}
    )  # fmt: skip
    spec = {
        "items": "result.prices",
        "time_template": "{{ item['from'] }}",
        "value_template": "{{ item.eur_mwh / 1000 }}",
        "resolution": timedelta(minutes=15),
    }
    series = feeds.parse_json(body, spec, BERLIN, "EUR/kWh")

    assert [(s.start, s.end, s.value) for s in series] == [
        (DAY, DAY + H / 4, 0.0915), (DAY + H / 4, DAY + H / 2, 0.088)
    ]  # fmt: skip
    with pytest.raises(FeedError, match="json item 0: UndefinedError"):
        feeds.parse_json(body, {**spec, "value_template": "{{ item.nope }}"}, BERLIN, "EUR/kWh")
    with pytest.raises(FeedError, match="SecurityError"):
        feeds.parse_json(body, {**spec, "value_template": "{{ item.__class__ }}"}, BERLIN, "")


def test_generic_csv_through_templates() -> None:
    body = "start;end;ct_kwh\n1772406000;1772409600;31,2\n1772409600;1772413200;29,9\n"
    spec = {
        "delimiter": ";",
        "time_template": "{{ row.start }}",
        "end_template": "{{ row.end }}",
        "value_template": "{{ row.ct_kwh | replace(',', '.') | float / 100 }}",
    }
    series = feeds.parse_csv(body.encode(), spec, BERLIN, "EUR/kWh")

    assert [(s.start, s.value) for s in series] == [(DAY, 0.312), (DAY + H, 0.299)]


# --- whatever arrives, a parser answers a series or a FeedError -------------------------------
PARSERS = {
    "nordpool": lambda b: feeds.parse_nordpool(b, "SE3"),
    "energyzero": feeds.parse_energyzero,
    "entsoe": feeds.parse_entsoe,
    "awattar": feeds.parse_awattar,
    "octopus": feeds.parse_octopus,
    "tibber": feeds.parse_tibber,
}


@pytest.mark.parametrize("name", sorted(PARSERS))
@pytest.mark.parametrize(
    "body",
    [b"", b"<html>busy</html>", b"{}", b"[]", b"null", b'{"data": 5}', b'{"Prices": [{}]}',
     b'{"results": [{"valid_from": "x"}]}', b'{"multiAreaEntries": "x", "deliveryAreas": ["SE3"]}'],
)  # fmt: skip
def test_garbage_is_a_feed_error(name: str, body: bytes) -> None:
    with pytest.raises(FeedError):
        PARSERS[name](body)


JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(
        st.sampled_from(["data", "Prices", "results", "multiAreaEntries", "deliveryAreas",
                         "entryPerArea", "price", "readingDate", "deliveryStart", "deliveryEnd",
                         "start_timestamp", "end_timestamp", "marketprice", "valid_from",
                         "value_inc_vat", "viewer", "homes", "currentSubscription", "priceInfo",
                         "today", "startsAt", "total", "currency", "SE3", "errors"]),
        inner,
        max_size=5,
    ),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    body=st.one_of(
        st.binary(max_size=200),
        JSON.map(lambda doc: json.dumps(doc).encode()),
    )
)
def test_no_parser_raises_anything_but_feed_error(body: bytes) -> None:
    for parse in PARSERS.values():
        try:
            parse(body)
        except FeedError:
            pass
