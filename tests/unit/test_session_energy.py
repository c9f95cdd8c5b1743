"""Session energy from raw meter readings: every way real chargers get it wrong, with numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.charging import EnergyInterval, EnergyMethod, MeterReading, Session, derive_energy
from hub.charging.session import INTERVAL, REGISTER

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def session(
    meter_start: float | None = None, meter_stop: float | None = None, stop_min: float = 45
) -> Session:
    return Session(
        id="s-1",
        charger_id="depot_a_01",
        connector=1,
        transaction_id="4711",
        started_at=T0,
        id_tag="RFID-42",
        meter_start_wh=meter_start,
        stopped_at=at(stop_min) if meter_stop is not None else None,
        meter_stop_wh=meter_stop,
    )


def reading(minutes: float, value: float, unit: str = "Wh", **kw: object) -> MeterReading:
    fields: dict = {"measurand": REGISTER, "session_id": "s-1", **kw}
    return MeterReading("depot_a_01", 1, at(minutes), value=value, unit=unit, **fields)


REGISTER_READINGS = [reading(15, 12_347_500), reading(30, 12_350_000)]


def test_given_a_register_meter_then_energy_is_stop_minus_start_split_by_interval() -> None:
    result = derive_energy(session(12_345_000, 12_352_000), REGISTER_READINGS)

    assert result.energy_wh == 7_000
    assert result.method is EnergyMethod.REGISTER
    assert result.warnings == ()
    assert result.intervals == (
        EnergyInterval(at(0), at(15), 2_500),
        EnergyInterval(at(15), at(30), 2_500),
        EnergyInterval(at(30), at(45), 2_000),
    )


def test_given_an_active_session_then_energy_runs_to_the_last_reading() -> None:
    result = derive_energy(session(12_345_000), REGISTER_READINGS)

    assert result.energy_wh == 5_000
    assert result.method is EnergyMethod.REGISTER


def test_given_a_session_relative_meter_then_energy_counts_from_zero() -> None:
    readings = [reading(0, 0, context="Transaction.Begin"), reading(15, 1_800), reading(30, 3_600)]

    result = derive_energy(session(0, 4_200, stop_min=40), readings)

    assert result.energy_wh == 4_200
    assert result.method is EnergyMethod.SESSION_RELATIVE
    assert result.warnings == ()
    assert [i.wh for i in result.intervals] == [1_800, 1_800, 600]


def test_given_an_offline_start_with_meter_start_zero_then_the_first_reading_is_the_start() -> None:
    # The charger lost its uplink, reported meterStart 0, then a real register of 12 MWh.
    readings = [reading(1, 12_345_500), reading(30, 12_350_000)]

    result = derive_energy(session(0, 12_352_000), readings)

    assert result.energy_wh == 6_500  # not 12,352,000 Wh
    assert result.method is EnergyMethod.REGISTER
    assert len(result.warnings) == 1 and "offline start" in result.warnings[0]
    assert result.intervals[0] == EnergyInterval(at(1), at(30), 4_500)


def test_given_no_meter_start_and_a_large_first_reading_then_it_is_the_start() -> None:
    result = derive_energy(session(None), REGISTER_READINGS)

    assert result.energy_wh == 2_500
    assert "meter start unknown" in result.warnings[0]


def test_given_a_meter_reset_mid_session_then_segments_are_summed() -> None:
    readings = [reading(15, 6_000), reading(30, 7_000), reading(45, 500), reading(60, 1_500)]

    result = derive_energy(session(5_000, 2_000, stop_min=70), readings)

    # 5,000 -> 7,000 is 2,000; the meter restarted: 0 -> 500 -> 1,500 -> 2,000 is 2,000 more.
    assert result.energy_wh == 4_000
    assert len(result.warnings) == 1 and "reset" in result.warnings[0]
    assert EnergyInterval(at(30), at(45), 500) in result.intervals


def test_given_a_one_off_zero_reading_then_it_is_a_glitch_not_a_reset() -> None:
    # A failed meter read reported as 0: counting the next reading "from 0" would bill 12 MWh.
    readings = [reading(15, 12_347_500), reading(20, 0), reading(30, 12_350_000)]

    result = derive_energy(session(12_345_000, 12_352_000), readings)

    assert result.energy_wh == 7_000
    assert len(result.warnings) == 1 and "glitch" in result.warnings[0]
    assert EnergyInterval(at(15), at(30), 2_500) in result.intervals


def test_given_session_relative_readings_but_register_start_stop_then_start_stop_wins() -> None:
    # Seen in the field: meterStart/meterStop from the register, MeterValues since session start.
    readings = [reading(15, 500), reading(30, 1_500)]

    result = derive_energy(session(12_345_000, 12_347_000), readings)

    assert result.energy_wh == 2_000
    assert result.intervals == (EnergyInterval(at(0), at(45), 2_000),)
    assert "frame change" in result.warnings[0]


def test_given_kwh_readings_then_they_are_converted_to_wh() -> None:
    readings = [reading(15, 12_347.5, "kWh"), reading(30, 12_350.0, unit="kWh")]

    result = derive_energy(session(12_345_000, 12_352_000), readings)

    assert result.energy_wh == 7_000


def test_given_readings_out_of_order_then_they_are_sorted_by_time() -> None:
    result = derive_energy(session(12_345_000, 12_352_000), list(reversed(REGISTER_READINGS)))

    assert result.energy_wh == 7_000
    assert [i.end for i in result.intervals] == [at(15), at(30), at(45)]


def test_given_duplicate_readings_then_each_counts_once() -> None:
    readings = [*REGISTER_READINGS, reading(15, 12_347_500), reading(30, 12_350.0, "kWh")]

    result = derive_energy(session(12_345_000, 12_352_000), [*readings, *readings])

    assert result.energy_wh == 7_000
    assert len(result.intervals) == 3


def test_given_other_measurands_phases_and_locations_then_they_are_ignored() -> None:
    noise = [
        reading(15, 7_400, "W", measurand="Power.Active.Import"),
        reading(20, 4_000_000, phase="L1"),
        reading(20, 99_999_999, location="EV"),
        reading(25, 1_000, measurand="Energy.Active.Export.Register"),
        reading(25, 16, "A", measurand="Current.Import", phase="L2"),
        reading(25, 1, session_id="another-session"),
    ]

    result = derive_energy(session(12_345_000, 12_352_000), [*REGISTER_READINGS, *noise])

    assert result.energy_wh == 7_000
    assert result.warnings == ()


def test_given_outlet_readings_then_they_count() -> None:
    readings = [reading(15, 12_347_500, location="Outlet"), reading(30, 12_350_000)]

    assert derive_energy(session(12_345_000), readings).energy_wh == 5_000


def test_given_only_interval_readings_then_they_are_summed() -> None:
    readings = [
        reading(15, 1_000, measurand=INTERVAL),
        reading(30, 1.2, "kWh", measurand=INTERVAL),
        reading(45, 800, measurand=INTERVAL),
    ]

    result = derive_energy(session(0, 0), readings)

    assert result.energy_wh == 3_000
    assert result.method is EnergyMethod.INTERVAL_SUM
    assert result.intervals[1] == EnergyInterval(at(15), at(30), 1_200)


def test_given_register_and_interval_readings_then_the_register_wins() -> None:
    readings = [*REGISTER_READINGS, reading(30, 50_000, measurand=INTERVAL)]

    result = derive_energy(session(12_345_000, 12_352_000), readings)

    assert (result.energy_wh, result.method) == (7_000, EnergyMethod.REGISTER)


def test_given_no_readings_then_meter_stop_minus_start() -> None:
    result = derive_energy(session(12_345_000, 12_352_000), [])

    assert (result.energy_wh, result.method) == (7_000, EnergyMethod.METER_START_STOP)
    assert result.intervals == (EnergyInterval(at(0), at(45), 7_000),)


def test_given_nothing_at_all_then_zero_with_a_warning() -> None:
    result = derive_energy(session(12_345_000), [])

    assert (result.energy_wh, result.method) == (0, EnergyMethod.NONE)
    assert "no energy readings" in result.warnings[0]


@pytest.mark.parametrize(
    ("start", "stop", "why"),
    [
        (12_352_000, 12_345_000, "below meter start"),  # meter swapped or reset: unknown
        (0, 12_352_000, "offline start"),  # 12 MWh in 45 minutes is no charging session
    ],
)
def test_given_impossible_meter_start_stop_then_zero_with_a_warning(
    start: float, stop: float, why: str
) -> None:
    result = derive_energy(session(start, stop), [])

    assert result.energy_wh == 0
    assert why in result.warnings[0]


def test_given_a_meter_stop_below_the_last_reading_then_it_is_ignored() -> None:
    # Some chargers send meterStop 0 when they lose the meter at the end.
    result = derive_energy(session(12_345_000, 0), REGISTER_READINGS)

    assert result.energy_wh == 5_000
    assert "meter stop 0 Wh is below the last reading" in result.warnings[0]


def test_given_unreadable_values_then_they_are_skipped_with_a_warning() -> None:
    readings = [*REGISTER_READINGS, reading(20, 5, "varh"), reading(25, float("nan"))]

    result = derive_energy(session(12_345_000), readings)

    assert result.energy_wh == 5_000
    assert len(result.warnings) == 2


energy_readings = st.lists(
    st.builds(
        lambda minutes, value, unit, measurand: reading(minutes, value, unit, measurand=measurand),
        st.floats(-5, 120),
        st.one_of(st.just(0.0), st.floats(0, 1e4), st.floats(0, 1e8)),
        st.sampled_from(["Wh", "kWh"]),
        st.sampled_from([REGISTER, INTERVAL]),
    ),
    max_size=8,
)
meter = st.one_of(st.none(), st.just(0.0), st.floats(0, 1e8))


@settings(max_examples=300, deadline=None)
@given(energy_readings, meter, meter)
def test_whatever_the_readings_energy_is_never_negative_and_adds_up(
    readings: list[MeterReading], start: float | None, stop: float | None
) -> None:
    result = derive_energy(session(start, stop), readings)

    assert result.energy_wh >= 0
    assert all(i.wh > 0 and i.start <= i.end for i in result.intervals)
    assert result.energy_wh == pytest.approx(sum(i.wh for i in result.intervals), abs=1e-2)
    assert derive_energy(session(start, stop), list(reversed(readings))) == result
