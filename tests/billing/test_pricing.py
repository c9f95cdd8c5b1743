"""Pricing against amounts computed by hand: time-of-use boundaries, idle fees, time and session
fees, minimums and maximums, discounts, net and gross prices, rounding, other currencies.

The site is in Europe/Berlin: in early March local time is UTC+1, so 17:00 local is 16:00 UTC.
Every amount below is worked out in the comment next to it; the rounding rule is half-up to the
cent per line, tax once on the session's total.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.charging.session import EnergyInterval
from plugins.billing.money import round_money, to_minor
from plugins.billing.pricing import split_energy
from tests.billing.support import plan, priced, registers, session

BERLIN = ZoneInfo("Europe/Berlin")
D = Decimal

TOU = {
    "tax_rate": 19,
    "energy": {
        "price": 0.30,
        "periods": [
            {
                "name": "peak",
                "start": "17:00",
                "end": "21:00",
                "days": ["mon", "tue", "wed", "thu", "fri"],
                "price": 0.45,
            }
        ],
    },
}


def local(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


def lines(b: object) -> dict[str, Decimal]:
    return {x.description: x.amount for x in b.lines}  # type: ignore[attr-defined]


def test_a_reading_on_the_peak_boundary_splits_the_energy_exactly() -> None:
    # Monday 2 March, 16:00-18:00 local; the register reads every 30 minutes.
    start = local(2, 16)
    s = session(start, local(2, 18), meter_start=1_000_000, meter_stop=1_012_000)
    readings = registers(
        s,
        [
            (local(2, 16, 30), 1_003_000),
            (local(2, 17), 1_007_000),
            (local(2, 17, 30), 1_010_500),
            (local(2, 18), 1_012_000),
        ],
    )
    b = priced(plan(TOU), s, readings, BERLIN)
    # 16:00-17:00: 1,007,000 - 1,000,000 = 7,000 Wh = 7 kWh x 0.30 = 2.10
    # 17:00-18:00: 1,012,000 - 1,007,000 = 5,000 Wh = 5 kWh x 0.45 = 2.25
    assert lines(b) == {"Energy (standard)": D("2.10"), "Energy (peak)": D("2.25")}
    # net 4.35; VAT 19 % = 0.8265 -> 0.83; gross 5.18
    assert (b.net, b.tax, b.gross) == (D("4.35"), D("0.83"), D("5.18"))
    assert [(seg.period, seg.wh) for seg in b.segments] == [
        ("standard", D("7000.000")),
        ("peak", D("5000.000")),
    ]
    assert b.segments[1].start == local(2, 17)


def test_an_interval_across_the_boundary_is_split_in_proportion_to_time() -> None:
    s = session(local(2, 16, 30), local(2, 17, 40), meter_start=500_000, meter_stop=509_500)
    readings = registers(
        s, [(local(2, 16, 50), 503_000), (local(2, 17, 10), 505_000), (local(2, 17, 40), 509_500)]
    )
    b = priced(plan(TOU), s, readings, BERLIN)
    # 16:30-16:50: 3,000 Wh standard
    # 16:50-17:10: 2,000 Wh, half the time before 17:00: 1,000 standard + 1,000 peak
    # 17:10-17:40: 4,500 Wh peak
    # standard 4.000 kWh x 0.30 = 1.20; peak 5.500 kWh x 0.45 = 2.475 -> 2.48 (half-up)
    assert lines(b) == {"Energy (standard)": D("1.20"), "Energy (peak)": D("2.48")}
    # net 3.68; VAT 3.68 x 0.19 = 0.6992 -> 0.70; gross 4.38
    assert (b.net, b.tax, b.gross) == (D("3.68"), D("0.70"), D("4.38"))


def test_an_uneven_split_keeps_every_milliwatt_hour() -> None:
    s = session(local(2, 16, 59), local(2, 17, 2), meter_start=100, meter_stop=1_100)
    readings = registers(s, [(local(2, 17, 2), 1_100)])
    b = priced(plan(TOU), s, readings, BERLIN)
    # 1,000 Wh in 3 minutes, 1 of them before 17:00: 1000/3 = 333.333 Wh, the rest 666.667
    assert [seg.wh for seg in b.segments] == [D("333.333"), D("666.667")]
    # 0.333333 kWh x 0.30 = 0.0999999 -> 0.10; 0.666667 x 0.45 = 0.30000015 -> 0.30
    assert (b.net, b.tax, b.gross) == (D("0.40"), D("0.08"), D("0.48"))


def test_a_night_period_across_midnight_belongs_to_the_day_it_started() -> None:
    night = {
        "energy": {
            "price": 0.30,
            "periods": [
                {"name": "night", "start": "22:00", "end": "06:00", "days": ["fri"], "price": 0.20}
            ],
        }
    }
    # Friday 6 March 21:00 to Saturday 01:00, 3 kWh an hour
    s = session(local(6, 21), local(7, 1), meter_start=10_000, meter_stop=22_000)
    readings = registers(
        s,
        [
            (local(6, 22), 13_000),
            (local(6, 23), 16_000),
            (local(7, 0), 19_000),
            (local(7, 1), 22_000),
        ],
    )
    b = priced(plan(night), s, readings, BERLIN)
    # 21-22 standard 3 kWh x 0.30 = 0.90; 22-01 (Saturday 0-1 is Friday's night) 9 x 0.20 = 1.80
    assert lines(b) == {"Energy (standard)": D("0.90"), "Energy (night)": D("1.80")}
    assert b.net == D("2.70") and b.tax == D("0.00")


def test_the_peak_follows_local_time_on_the_day_clocks_go_forward() -> None:
    # Sunday 29 March 2026 clocks go to CEST (UTC+2): 17:00 local is 15:00 UTC that day.
    sunday = {
        "energy": {
            "price": 0.30,
            "periods": [{"name": "peak", "start": "17:00", "end": "21:00", "price": 0.45}],
        }
    }
    s = session(local(29, 16), local(29, 18), meter_start=1_000, meter_stop=5_000)
    assert s.started_at == datetime(2026, 3, 29, 14, 0, tzinfo=UTC)
    readings = registers(s, [(local(29, 17), 3_000), (local(29, 18), 5_000)])
    b = priced(plan(sunday), s, readings, BERLIN)
    # 2 kWh standard 0.60 + 2 kWh peak 0.90
    assert lines(b) == {"Energy (standard)": D("0.60"), "Energy (peak)": D("0.90")}


IDLE = {"tax_rate": 19, "energy": 0.40, "idle": {"per_minute": 0.10, "grace_minutes": 30}}


def test_idle_fee_after_the_grace_period_once_charging_ended() -> None:
    start = local(2, 10)
    s = session(start, local(2, 13), meter_start=0, meter_stop=11_010)
    m = [(30, 5_000), (60, 10_000), (90, 11_000), (120, 11_000), (150, 11_010), (180, 11_010)]
    readings = registers(s, [(start + timedelta(minutes=t), wh) for t, wh in m])
    b = priced(plan(IDLE), s, readings, BERLIN)
    # Charging ends with the 11:30 reading (the last interval drawing >= 50 W); 12:00-12:30 adds
    # 10 Wh (20 W average: a trickle, not charging). Idle 11:30-13:00 = 90 min, 30 of them grace.
    assert b.charging_end == local(2, 11, 30)
    assert b.idle_s == D(90 * 60) and b.billable_idle_s == D(60 * 60)
    # energy 11.010 kWh x 0.40 = 4.404 -> 4.40; idle 60 min x 0.10 = 6.00
    assert lines(b) == {"Energy": D("4.40"), "Idle fee after 30 min grace": D("6.00")}
    # net 10.40; VAT 1.976 -> 1.98; gross 12.38
    assert (b.net, b.tax, b.gross) == (D("10.40"), D("1.98"), D("12.38"))
    assert b.parking_s == D(90 * 60)  # OCPI total_parking_time: 3 h total - 1.5 h charging


def test_idle_fee_is_capped() -> None:
    capped = {**IDLE, "idle": {"per_minute": 0.10, "grace_minutes": 30, "max_amount": 5}}
    start = local(2, 10)
    s = session(start, local(2, 13), meter_start=0, meter_stop=11_000)
    readings = registers(s, [(start + timedelta(minutes=90), 11_000)])
    b = priced(plan(capped), s, readings, BERLIN)
    # 90 idle minutes - 30 grace = 60 x 0.10 = 6.00, capped at 5.00
    assert lines(b)["Idle fee after 30 min grace"] == D("5.00")


def test_time_fee_session_fee_and_the_minimum() -> None:
    p = plan(
        {
            "tax_rate": 19,
            "session_fee": 0.50,
            "energy": 0.30,
            "time": {"per_minute": 0.02},
            "minimum": 2.00,
        }
    )
    start = local(2, 8)
    s = session(start, local(2, 8, 5), meter_start=0, meter_stop=500)
    b = priced(p, s, registers(s, [(local(2, 8, 5), 500)]), BERLIN)
    # energy 0.5 kWh x 0.30 = 0.15; charging 5 min x 0.02 = 0.10; session fee 0.50 -> 0.75
    # below the 2.00 minimum: + 1.25
    assert lines(b) == {
        "Energy": D("0.15"),
        "Charging time": D("0.10"),
        "Session fee": D("0.50"),
        "Minimum charge per session": D("1.25"),
    }
    # net 2.00; VAT 0.38; gross 2.38
    assert (b.net, b.tax, b.gross) == (D("2.00"), D("0.38"), D("2.38"))


def test_the_maximum_caps_a_long_session() -> None:
    p = plan({"tax_rate": 19, "energy": 0.50, "maximum": 10})
    s = session(local(2, 8), local(2, 11), meter_start=0, meter_stop=30_000)
    b = priced(p, s, registers(s, [(local(2, 11), 30_000)]), BERLIN)
    # 30 kWh x 0.50 = 15.00, capped at 10.00: -5.00; VAT 1.90; gross 11.90
    assert lines(b)["Maximum charge per session"] == D("-5.00")
    assert (b.net, b.tax, b.gross) == (D("10.00"), D("1.90"), D("11.90"))


def test_gross_prices_keep_the_quoted_total_and_extract_the_tax() -> None:
    p = plan({"tax_rate": 19, "prices_include_tax": True, "energy": 0.49})
    s = session(local(2, 8), local(2, 9), meter_start=0, meter_stop=12_345)
    b = priced(p, s, registers(s, [(local(2, 9), 12_345)]), BERLIN)
    # 12.345 kWh x 0.49 = 6.04905 -> 6.05 gross; net 6.05 / 1.19 = 5.0840... -> 5.08; VAT 0.97
    assert (b.gross, b.net, b.tax) == (D("6.05"), D("5.08"), D("0.97"))


def test_a_subscription_discount_on_energy() -> None:
    p = plan(
        {
            "tax_rate": 19,
            "energy": 0.40,
            "session_fee": 1,
            "discounts": [{"on": "energy", "percent": 10, "name": "Fleet"}],
        }
    )
    s = session(local(2, 8), local(2, 10), meter_start=0, meter_stop=20_000)
    b = priced(p, s, registers(s, [(local(2, 10), 20_000)]), BERLIN)
    # energy 20 x 0.40 = 8.00; -10 % of 8.00 = -0.80; fee 1.00 -> net 8.20; VAT 1.558 -> 1.56
    assert lines(b) == {"Energy": D("8.00"), "Session fee": D("1.00"), "Fleet (10%)": D("-0.80")}
    assert (b.net, b.tax, b.gross) == (D("8.20"), D("1.56"), D("9.76"))


def test_a_failed_plug_in_pays_no_fee_and_no_minimum_but_idles() -> None:
    p = plan(
        {
            "session_fee": 0.50,
            "minimum": 2,
            "energy": 0.30,
            "idle": {"per_minute": 0.10, "grace_minutes": 5},
        }
    )
    s = session(local(2, 8), local(2, 8, 10), meter_start=0, meter_stop=0)
    b = priced(p, s, registers(s, [(local(2, 8, 10), 0)]), BERLIN)
    # no energy: no session fee, no minimum; 10 min connected, 5 of them grace: 5 x 0.10
    assert lines(b) == {"Idle fee after 5 min grace": D("0.50")}


def test_half_a_cent_rounds_up_not_to_even() -> None:
    p = plan({"tax_rate": 19, "energy": 0.35})
    s = session(local(2, 8), local(2, 9), meter_start=0, meter_stop=1_500)
    b = priced(p, s, registers(s, [(local(2, 9), 1_500)]), BERLIN)
    # 1.5 kWh x 0.35 = 0.525 -> 0.53 (half-even would say 0.52); VAT 0.1007 -> 0.10
    assert (b.net, b.tax, b.gross) == (D("0.53"), D("0.10"), D("0.63"))
    assert round_money(D("-0.525"), "EUR") == D("-0.53")  # a credit mirrors its charge


def test_a_currency_without_cents() -> None:
    p = plan({"tax_rate": 10, "energy": 35}, currency="JPY")
    s = session(local(2, 8), local(2, 9), meter_start=0, meter_stop=11_000)
    b = priced(p, s, registers(s, [(local(2, 9), 11_000)]), BERLIN)
    # 11 kWh x 35 = 385 JPY; tax 38.5 -> 39; 424
    assert (b.net, b.tax, b.gross) == (D("385"), D("39"), D("424"))
    assert to_minor(D("424"), "JPY") == 424 and to_minor(D("12.34"), "EUR") == 1234


@settings(max_examples=200, deadline=None)
@given(
    starts=st.lists(st.integers(0, 48 * 60), min_size=1, max_size=6, unique=True),
    lengths=st.lists(st.integers(0, 300), min_size=6, max_size=6),
    energies=st.lists(st.integers(0, 50_000_000), min_size=6, max_size=6),
)
def test_splitting_never_loses_or_invents_energy(
    starts: list[int], lengths: list[int], energies: list[int]
) -> None:
    p = plan(TOU)
    base = local(2, 0)
    intervals = [
        EnergyInterval(
            base + timedelta(minutes=m),
            base + timedelta(minutes=m + lengths[i]),
            energies[i] / 1000,
        )
        for i, m in enumerate(sorted(starts))
    ]
    segments = split_energy(p, intervals, BERLIN)
    assert sum(s.wh for s in segments) == sum(D(str(i.wh)).quantize(D("0.001")) for i in intervals)
    for seg in segments:  # no segment crosses a boundary: one price from start to end
        a, b = (
            seg.start.astimezone(BERLIN),
            (seg.end - timedelta(microseconds=1)).astimezone(BERLIN),
        )
        if seg.end > seg.start:
            assert p.energy_period(a) == p.energy_period(b) == (seg.period, seg.price)
