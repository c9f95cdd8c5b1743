"""The US utility tariffs shipped with acnportal (../shared/data/tariffs/acnportal/) load as our
TOU rules with demand charges, and price the hours their tariff sheets say."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import voluptuous as vol

from hub.charging.signals import Slot, TimeSeries
from hub.config import ConfigError
from plugins.tariffs.acnportal import rules_from_acnportal
from plugins.tariffs.prices import demand_cost
from plugins.tariffs.static import load_acnportal_file
from plugins.tariffs.tou import TouRules, expand
from tests.tariffs.payloads import ACNPORTAL_DIR

LA = ZoneInfo("America/Los_Angeles")
FILES = sorted(p.name for p in ACNPORTAL_DIR.glob("*.json"))


def load(name: str) -> TouRules:
    return load_acnportal_file(ACNPORTAL_DIR, name)


def price(rules: TouRules, *wall: int) -> float | None:
    t = datetime(*wall, tzinfo=LA)
    day = datetime.combine(t.date(), datetime.min.time(), tzinfo=LA)
    series = expand(rules, day.astimezone(UTC), (day + timedelta(days=1)).astimezone(UTC), LA)
    return series.value_at(t.astimezone(UTC))


def test_all_four_files_are_there_and_load() -> None:
    assert FILES == [
        "sce_tou_ev_4_march_2019.json",
        "sce_tou_ev_4_march_2019_tou_periods_shifted.json",
        "sce_tou_ev_8_june_2019.json",
        "sce_tou_ev_8_oct_2018.json",
    ]
    for name in FILES:
        rules = load(name)
        assert set(rules.seasons) == {"summer", "winter"}
        # every hour of a summer and a winter weekday and weekend day has exactly one price
        for day in (date(2019, 7, 1), date(2019, 7, 6), date(2019, 1, 7), date(2019, 1, 5)):
            start = datetime.combine(day, datetime.min.time(), tzinfo=LA).astimezone(UTC)
            series = expand(rules, start, start + timedelta(days=1), LA)
            assert sum((s.duration for s in series), timedelta()) == timedelta(days=1), name


def test_sce_tou_ev_4_prices_and_its_summer_demand_charge() -> None:
    rules = load("sce_tou_ev_4_march_2019.json")

    assert price(rules, 2019, 7, 1, 7, 59) == 0.05623  # summer weekday
    assert price(rules, 2019, 7, 1, 8, 0) == 0.0925
    assert price(rules, 2019, 7, 1, 12, 0) == 0.26668
    assert price(rules, 2019, 7, 1, 17, 59) == 0.26668
    assert price(rules, 2019, 7, 1, 18, 0) == 0.0925
    assert price(rules, 2019, 7, 1, 23, 0) == 0.05623
    assert price(rules, 2019, 7, 6, 13, 0) == 0.05623  # summer Saturday
    assert price(rules, 2019, 9, 30, 13, 0) == 0.26668  # last day of summer
    assert price(rules, 2019, 10, 1, 13, 0) == 0.0869  # winter weekday
    assert price(rules, 2019, 1, 5, 13, 0) == 0.06087  # winter weekend, across New Year

    (charge,) = rules.demand_charges
    assert (charge.rate, charge.basis, charge.always) == (15.51, "monthly", True)
    july = datetime(2019, 7, 1, tzinfo=LA).astimezone(UTC)
    load_kw = TimeSeries(
        [
            Slot(july, july + timedelta(days=10), 20.0),
            Slot(july + timedelta(days=10), july + timedelta(days=10, hours=1), 80.0),
        ],
        unit="kW",
    )
    assert demand_cost(load_kw, charge.rate, charge.basis, LA) == pytest.approx(15.51 * 80)


def test_sce_tou_ev_8_and_the_shifted_variant() -> None:
    june = load("sce_tou_ev_8_june_2019.json")
    assert price(june, 2019, 7, 1, 16, 0) == 0.49619  # summer weekday on-peak
    assert price(june, 2019, 7, 6, 16, 0) == 0.25563  # summer weekend on-peak
    assert price(june, 2019, 1, 8, 9, 0) == 0.07724  # winter, all days, 08-16
    assert price(june, 2019, 1, 8, 21, 0) == 0.13568
    assert june.demand_charges == ()

    october = load("sce_tou_ev_8_oct_2018.json")
    assert price(october, 2019, 8, 3, 16, 30) == 0.17698
    assert price(october, 2019, 12, 25, 8, 0) == 0.03964

    shifted = load("sce_tou_ev_4_march_2019_tou_periods_shifted.json")
    assert price(shifted, 2019, 7, 1, 20, 59) == 0.26668
    assert price(shifted, 2019, 7, 6, 16, 0) == 0.0925
    assert price(shifted, 2019, 11, 4, 16, 0) == 0.0869
    assert [c.rate for c in shifted.demand_charges] == [15.51]


def test_demand_charges_that_differ_by_season_get_a_season_window() -> None:
    doc = json.loads((ACNPORTAL_DIR / "sce_tou_ev_8_oct_2018.json").read_text())
    doc["schedule"][0]["demand_charge"] = 12.0  # summer only
    rules = TouRules.from_config(rules_from_acnportal(doc))

    (charge,) = rules.demand_charges
    assert charge.describe()["window"] == {"seasons": ["summer"]}


def _schedule(i: int, **changes: object):
    return lambda doc: doc["schedule"][i].update(changes)


BROKEN = [
    (lambda doc: doc["schedule"][1]["tariffs"].pop(), "schedule.1.tariffs", "one price per time"),
    (_schedule(0, dow_mask="SUNDAYS"), "schedule.0.dow_mask", "expected"),
    (_schedule(0, times=[0, 21, 16]), "schedule.0.times", "must rise"),
    (_schedule(0, effective_end="13-01"), "schedule.0.effective_end", "MM-DD"),
    (lambda doc: doc.pop("schedule"), "schedule", "required"),
]


@pytest.mark.parametrize(("change", "key", "message"), BROKEN)
def test_a_broken_file_names_the_file_and_key(
    tmp_path: Path, change, key: str, message: str
) -> None:
    doc = json.loads((ACNPORTAL_DIR / "sce_tou_ev_8_oct_2018.json").read_text())
    change(doc)
    (tmp_path / "tariff.json").write_text(json.dumps(doc))

    with pytest.raises(ConfigError) as caught:
        load_acnportal_file(tmp_path, "tariff.json")
    assert (caught.value.file, caught.value.key) == ("tariff.json", key)
    assert message in caught.value.message


def test_not_json_and_missing_files_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"name": "x",\n "schedule": [}')
    with pytest.raises(ConfigError, match=r"bad.json:2: not JSON"):
        load_acnportal_file(tmp_path, "bad.json")
    with pytest.raises(ConfigError, match="file not found"):
        load_acnportal_file(tmp_path, "nope.json")
    with pytest.raises(vol.Invalid):
        rules_from_acnportal(["not", "a", "tariff"])
